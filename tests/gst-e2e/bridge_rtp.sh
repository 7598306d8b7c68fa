#!/bin/bash
# A pipeline across machines, with the network as loopback in a private
# network namespace: capture -> cam/encode -> [sender: mbqsrc ! x264enc !
# rtph264pay ! udpsink] -> UDP -> [receiver: udpsrc ! rtpjitterbuffer !
# rtph264depay ! h264parse ! mbqsink] -> remote/encoded -> [writer: mbqsrc !
# mp4mux ! filesink]. Every frame must reach the file, with strictly
# increasing timestamps.
#
# RTP carries no end of stream: when the sender's stream ends, the receiver
# just stops getting packets. Here the supervisor (this script) ends it, the
# way an application would: once the sender has exited and every frame has
# arrived in remote/encoded, it sends the receiver SIGINT; gst-launch -e turns
# that into EOS, mbqsink marks end of data, and the writer finishes the file.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/common.sh"
need videotestsrc x264enc rtph264pay udpsink udpsrc rtpjitterbuffer rtph264depay h264parse mp4mux
frames=90 port=5004

gst receiver 80 -e udpsrc port=$port \
    caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96" \
    ! rtpjitterbuffer latency=100 ! rtph264depay ! h264parse \
    ! video/x-h264,stream-format=avc,alignment=au \
    ! mbqsink queue=remote/encoded pool=remote/pool block-size=1048576 blocks=16 capacity=16
recv=$LAST_PID recvg=$GST_PID
bound() { ss -Hulnp 2>/dev/null | grep -q ":$port "; }
mbq_wait_until 20 bound || fail "the receiver does not listen on UDP port $port"
gst writer 80 mbqsrc queue=remote/encoded timeout=30000000000 ! h264parse ! mp4mux \
    ! filesink location="$T/out.mp4"
wr=$LAST_PID
gst sender 80 mbqsrc queue=cam/encode timeout=30000000000 ! videoconvert \
    ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=30 \
    ! rtph264pay config-interval=-1 pt=96 ! udpsink host=127.0.0.1 port=$port
snd=$LAST_PID
gst capture 80 videotestsrc is-live=true num-buffers=$frames \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! mbqsink queue=cam/encode pool=cam/frames blocks=12 capacity=8
cap=$LAST_PID
expect_exit capture "$cap" 0
expect_exit sender "$snd" 0
mbq_wait_until 10 stat_at_least remote/encoded enqueued $frames ||
    note "only $(mbq_stat remote/encoded enqueued) of $frames frames arrived within 10 s of the sender's end"
got=$(mbq_stat remote/encoded enqueued)
kill -INT "$recvg"
expect_exit receiver "$recv" 0
expect_exit writer "$wr" 0
[ "$got" = "$frames" ] || fail "$got of $frames frames crossed the network"
# Timestamps are the receiver's: arrival times smoothed by the jitter
# buffer, so the duration is not exactly frames / rate.
mbq_check_video "$T/out.mp4" "$frames" "" || fail "out.mp4: $MBQ_CHECK_RESULT"
note "out.mp4: $MBQ_CHECK_RESULT"
echo PASS
