#!/bin/bash
# An encoder slower than the camera (identity sleeps 30 ms a frame before
# x264enc): capture, not live, with full-policy=block, must wait for room
# rather than lose anything. The queue fills to its capacity while capture
# is still running (it is waiting), nothing is dropped, and the file holds
# every frame. (The queue's "rejected full" counter does not show such waits
# reliably: a blocking enqueue counts a refusal only when a 100 ms slice of
# its wait runs out, so the test prints it and does not rely on it.)
. "$(dirname "$0")/common.sh"
need videotestsrc x264enc mp4mux identity

gst encode 80 mbqsrc queue=cam/encode timeout=30000000000 ! identity sleep-time=30000 \
    ! videoconvert ! x264enc speed-preset=ultrafast tune=zerolatency ! mp4mux \
    ! filesink location="$T/out.mp4"
enc=$LAST_PID
gst capture 80 videotestsrc num-buffers=60 \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! mbqsink queue=cam/encode pool=cam/frames blocks=8 capacity=4 full-policy=block
cap=$LAST_PID

# The queue full while capture has not finished: capture is held back.
full_and_capturing() { stat_at_least cam/encode count 4 && ! mbq_gone "$cap"; }
mbq_wait_until 60 full_and_capturing || fail "cam/encode never filled up while capture ran"
note "cam/encode full ($(mbq_stat cam/encode count)/4) after $(mbq_stat cam/encode enqueued) frames, capture still running"
expect_exit capture "$cap" 0
expect_exit encode "$enc" 0

mbq_check_video "$T/out.mp4" 60 2.000 || fail "out.mp4: $MBQ_CHECK_RESULT"
note "out.mp4: $MBQ_CHECK_RESULT"
[ "$(mbq_stat cam/encode dropped)" = 0 ] || fail "cam/encode dropped $(mbq_stat cam/encode dropped) frames"
[ "$(mbq_stat cam/encode high_water)" = 4 ] || fail "cam/encode's high water is $(mbq_stat cam/encode high_water), not 4"
note "cam/encode: enqueued $(mbq_stat cam/encode enqueued), dropped 0, rejected full $(mbq_stat cam/encode rejected_full), high water 4"
mbq_wait_until 10 mbq_pool_idle cam/frames || fail "cam/frames: blocks never came back"
echo PASS
