#!/bin/bash
# An encoder that holds many frames (x264enc rc-lookahead=40 with B-frames)
# behind a source that may hand it only 4 blocks (mbqsrc max-held=4: beyond
# that it copies and releases the block at once), from a pool of 8 blocks:
# capture is never starved of blocks, the run finishes, and every frame is
# in the file in presentation order. Without max-held, the encoder would sit
# on every block of the pool waiting for more input while capture waits for
# a free block.
. "$(dirname "$0")/common.sh"
need videotestsrc x264enc mp4mux

gst encode 80 mbqsrc queue=cam/encode timeout=30000000000 max-held=4 ! videoconvert \
    ! x264enc speed-preset=ultrafast rc-lookahead=40 bframes=2 ! mp4mux \
    ! filesink location="$T/out.mp4"
enc=$LAST_PID
gst capture 80 videotestsrc num-buffers=120 \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! mbqsink queue=cam/encode pool=cam/frames blocks=8 capacity=2 full-policy=block
cap=$LAST_PID
expect_exit capture "$cap" 0
expect_exit encode "$enc" 0

mbq_check_video "$T/out.mp4" 120 4.000 || fail "out.mp4: $MBQ_CHECK_RESULT"
note "out.mp4: $MBQ_CHECK_RESULT"
[ "$(mbq_stat cam/encode dropped)" = 0 ] || fail "cam/encode dropped frames"
mbq_wait_until 10 mbq_pool_idle cam/frames || fail "cam/frames: blocks never came back"
echo PASS
