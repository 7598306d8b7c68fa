#!/bin/bash
# The bridge of bridge_rtp.sh over SRT instead (loopback in a private network
# namespace): sender mbqsrc ! x264enc ! h264parse ! mpegtsmux ! srtsink
# (caller), receiver srtsrc (listener) ! tsdemux ! h264parse ! mbqsink,
# writer mbqsrc ! mp4mux. SRT is a connection: when the sender's stream ends
# it closes it, the receiver's srtsrc ends its stream (EOS), mbqsink marks end
# of data and the writer finishes the file - no supervisor needed. SRT's live
# mode does not linger at close and the receiver joins at the first complete
# transport-stream packet: a frame or two at either end may be lost (the test
# allows 5 of 90); the frames that arrive must be in order.
# mpegtsmux alignment=7: SRT's live mode sends messages of at most 1316
# bytes (7 TS packets); larger buffers are refused, which loses whole frames.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/common.sh"
need videotestsrc x264enc h264parse mpegtsmux tsdemux srtsink srtsrc mp4mux
frames=90 port=7001

gst receiver 80 srtsrc uri="srt://:$port?mode=listener" ! tsdemux ! h264parse \
    ! video/x-h264,stream-format=avc,alignment=au \
    ! mbqsink queue=remote/encoded pool=remote/pool block-size=1048576 blocks=16 capacity=16
recv=$LAST_PID
bound() { ss -Hulnp 2>/dev/null | grep -q ":$port "; }
mbq_wait_until 20 bound || fail "the receiver does not listen on UDP port $port"
gst writer 80 mbqsrc queue=remote/encoded timeout=30000000000 ! h264parse ! mp4mux \
    ! filesink location="$T/out.mp4"
wr=$LAST_PID
gst sender 80 mbqsrc queue=cam/encode timeout=30000000000 ! videoconvert \
    ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=30 \
    ! h264parse config-interval=-1 ! mpegtsmux alignment=7 \
    ! srtsink uri="srt://127.0.0.1:$port?mode=caller"
snd=$LAST_PID
gst capture 80 videotestsrc is-live=true num-buffers=$frames \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! mbqsink queue=cam/encode pool=cam/frames blocks=12 capacity=8
cap=$LAST_PID
expect_exit capture "$cap" 0
expect_exit sender "$snd" 0
mark=$(mbq_now_ms)
expect_exit receiver "$recv" 0
note "the receiver got end of stream $(since "$mark") ms after the sender exited"
expect_exit writer "$wr" 0
got=$(mbq_stat remote/encoded enqueued)
note "$got of $frames frames crossed the network"
[ "$got" -ge $((frames - 5)) ] || fail "only $got of $frames frames crossed the network"
mbq_check_video "$T/out.mp4" "$got" "" || fail "out.mp4: $MBQ_CHECK_RESULT"
note "out.mp4: $MBQ_CHECK_RESULT"
echo PASS
