#!/bin/bash
# mbqd killed (SIGKILL) in the middle of a stream and started again on the
# same socket, as a supervisor would without systemd. The data plane does not
# go through the daemon: capture and encoder keep their mappings, frames keep
# flowing, and the file must hold every frame in order. The new daemon has
# no store to restore objects from (that is systemd's fd store,
# docs/SYSTEMD.md), so it knows nothing of cam/encode or cam/frames: the
# test checks the stream, and reports what the new daemon sees.
. "$(dirname "$0")/common.sh"
need videotestsrc x264enc mp4mux

gst encode 80 mbqsrc queue=cam/encode timeout=30000000000 ! videoconvert \
    ! x264enc speed-preset=ultrafast tune=zerolatency ! mp4mux ! filesink location="$T/out.mp4"
enc=$LAST_PID
gst capture 80 videotestsrc is-live=true num-buffers=120 \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! mbqsink queue=cam/encode pool=cam/frames blocks=8 capacity=8 full-policy=block
cap=$LAST_PID

mbq_wait_until 30 stat_at_least cam/encode dequeued 20 || fail "fewer than 20 frames taken"
taken=$(mbq_stat cam/encode dequeued)
kill -9 "$MBQD_PID"
wait "$MBQD_PID" 2>/dev/null || true
note "mbqd killed when the encoder had taken $taken frames"
mark=$(mbq_now_ms)
mbq_daemon_start "$T" || fail "mbqd did not start again" # it removes its stale socket
note "mbqd serving again on the same socket after $(since "$mark") ms"
expect_exit capture "$cap" 0
expect_exit encode "$enc" 0
mbq_check_video "$T/out.mp4" 120 4.000 || fail "out.mp4: $MBQ_CHECK_RESULT"
note "out.mp4: $MBQ_CHECK_RESULT"
note "the new mbqd lists: $("$MBQCTL" list 2>&1 | tr '\n' ' ')"
echo PASS
