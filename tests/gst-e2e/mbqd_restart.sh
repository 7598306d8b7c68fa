#!/bin/bash
# mbqd killed (SIGKILL) in the middle of a stream and started again on the
# same socket, as a supervisor would without systemd. The new daemon has no
# store to restore objects from (that is systemd's fd store, docs/SYSTEMD.md):
# it knows nothing of the queue and pool, which stay mapped and working in
# the processes that have them. What the consumer does then depends on
# whether its queue was quiet when the daemon went:
#  1. frames flowing: the data plane does not go through the daemon, so
#     capture and encoder go on through their mappings; the file must hold
#     every frame in order, or - if the encoder happened to wait 100 ms for a
#     frame, when mbqsrc looks at its connection - the encoder must fail
#     clearly. The test says which happened.
#  2. the queue quiet (capture stopped with SIGSTOP across the restart):
#     mbqsrc sees its connection gone, drops the queue and waits for it to
#     appear on the new daemon; the producer, still attached to the old
#     queue, writes on into it unread. The encoder must fail clearly when
#     its wait (timeout=3 s) ends; capture must still finish.
. "$(dirname "$0")/common.sh"
need videotestsrc x264enc mp4mux
caps=video/x-raw,format=I420,width=320,height=240,framerate=30/1
restart_daemon() {
    kill -9 "$MBQD_PID"
    wait "$MBQD_PID" 2>/dev/null || true
    local mark=$(mbq_now_ms)
    mbq_daemon_start "$T" || fail "mbqd did not start again" # it removes its stale socket
    note "   mbqd serving again on the same socket after $(since "$mark") ms;" \
         "it lists $("$MBQCTL" list 2>/dev/null | tail -n +2 | wc -l) objects"
}

# 1. frames flowing
export GST_DEBUG=mbq:4
gst encode1 80 mbqsrc queue=cam/encode timeout=3000000000 ! videoconvert \
    ! x264enc speed-preset=ultrafast tune=zerolatency ! mp4mux ! filesink location="$T/out.mp4"
enc=$LAST_PID
unset GST_DEBUG
# A live sink drops a frame when its bounded wait for room runs out: 2 s
# here, so that an encoder slowed by a loaded machine costs no frame.
gst capture1 80 videotestsrc is-live=true num-buffers=120 ! $caps \
    ! mbqsink queue=cam/encode pool=cam/frames blocks=16 capacity=8 full-policy=block timeout=2000000000
cap=$LAST_PID
mbq_wait_until 30 stat_at_least cam/encode dequeued 20 || fail "fewer than 20 frames taken"
note "1. mbqd killed while frames flow (the encoder had taken $(mbq_stat cam/encode dequeued))"
restart_daemon
expect_exit capture1 "$cap" 0
reap "$enc"
if [ "$RC" = 0 ]; then
    mbq_check_video "$T/out.mp4" 120 4.000 || fail "out.mp4: $MBQ_CHECK_RESULT"
    note "   the encoder went on: out.mp4: $MBQ_CHECK_RESULT"
else
    grep -q "lost" "$T/encode1.log" && grep -q "ERROR" "$T/encode1.log" ||
        fail "the encoder failed (status $RC) without saying why"
    note "   the encoder saw its queue quiet, left it and failed (status $RC):" \
         "$(grep -m1 ERROR "$T/encode1.log")"
fi

# 2. the queue quiet across the restart
export GST_DEBUG=mbq:4
gst encode2 80 mbqsrc queue=cam/two timeout=3000000000 ! videoconvert \
    ! x264enc speed-preset=ultrafast tune=zerolatency ! mp4mux ! filesink location="$T/two.mp4"
enc=$LAST_PID
unset GST_DEBUG
gst capture2 80 videotestsrc is-live=true num-buffers=60 ! $caps \
    ! mbqsink queue=cam/two pool=cam/two-frames blocks=16 capacity=8 full-policy=block timeout=50000000
cap=$LAST_PID capg=$GST_PID
mbq_wait_until 30 stat_at_least cam/two dequeued 10 || fail "fewer than 10 frames taken"
kill -STOP "$capg"
note "2. capture stopped, mbqd killed with the queue quiet"
restart_daemon
mbq_wait_until 20 grep -q "lost" "$T/encode2.log" || fail "the encoder did not notice the daemon had gone"
note "   the encoder noticed: $(grep -m1 -o 'queue cam/two lost.*' "$T/encode2.log")"
kill -CONT "$capg"
expect_exit capture2 "$cap" 0
reap "$enc"
[ "$RC" != 0 ] || fail "the encoder ended with status 0 on a queue that no longer exists"
grep -q "ERROR" "$T/encode2.log" || fail "the encoder failed (status $RC) without saying why"
note "   capture finished; the encoder failed (status $RC): $(grep -m1 ERROR "$T/encode2.log")"
echo PASS
