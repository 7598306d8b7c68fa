#!/bin/bash
# 600 frames of 720p30 from a capture process through mbq into an encoder
# process (x264enc, mp4mux): the file has every frame, lasts exactly 20 s,
# with strictly increasing timestamps; the queue dropped nothing; every
# block of the pool came back once both processes were gone.
. "$(dirname "$0")/common.sh"
need videotestsrc x264enc mp4mux

gst encode 150 mbqsrc queue=cam/encode timeout=30000000000 ! videoconvert \
    ! x264enc speed-preset=ultrafast tune=zerolatency ! mp4mux ! filesink location="$T/out.mp4"
enc=$LAST_PID
gst capture 150 videotestsrc num-buffers=600 \
    ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
    ! mbqsink queue=cam/encode pool=cam/frames blocks=12 capacity=8 full-policy=block
cap=$LAST_PID
expect_exit capture "$cap" 0
expect_exit encode "$enc" 0

mbq_check_video "$T/out.mp4" 600 20.000 || fail "out.mp4: $MBQ_CHECK_RESULT"
note "out.mp4: $MBQ_CHECK_RESULT"
[ "$(mbq_stat cam/encode enqueued)" = 600 ] || fail "cam/encode took $(mbq_stat cam/encode enqueued) frames"
[ "$(mbq_stat cam/encode dropped)" = 0 ] || fail "cam/encode dropped frames"
mbq_wait_until 10 mbq_pool_idle cam/frames ||
    fail "cam/frames: $(mbq_stat cam/frames blocks_used) blocks never came back"
note "cam/frames: $(mbq_stat cam/frames allocations) allocations, every block back"
echo PASS
