#!/bin/bash
# A producer killed (SIGKILL) in the middle of a stream. mbqsink declares
# itself the producer of its queues; when its process dies, mbqd marks them
# "producer lost", and an mbqsrc whose queue is then empty stops at once:
# with the default on-producer-lost=error it posts an error (the pipeline
# fails), with on-producer-lost=eos it ends the stream (the muxer can
# finish its file). Each must stop within a second of the kill, measured
# from the kill to the consumer's exit. Buffers still queued are pushed
# first: the EOS consumer's file holds every frame it dequeued. Once both
# are gone, every block comes back (mbqd reclaims the dead producer's
# references).
. "$(dirname "$0")/common.sh"
need videotestsrc

gst capture 60 videotestsrc is-live=true num-buffers=100000 \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! mbqsink queue=cam/a,cam/b pool=cam/frames blocks=8 capacity=4 full-policy=drop-oldest
p=$LAST_PID pg=$GST_PID
mbq_wait_until 30 stat_at_least cam/a enqueued 2 || fail "capture made no frames"
gst failing 60 mbqsrc queue=cam/a timeout=30000000000 ! fakesink
g=$LAST_PID
gst ending 60 mbqsrc queue=cam/b timeout=30000000000 on-producer-lost=eos ! fakesink
e=$LAST_PID

mbq_wait_until 30 stat_at_least cam/a dequeued 15 || fail "cam/a: fewer than 15 frames taken"
mbq_wait_until 30 stat_at_least cam/b dequeued 15 || fail "cam/b: fewer than 15 frames taken"
kill -9 "$pg"
mark=$(mbq_now_ms)
reap "$p"
note "capture killed after $(mbq_stat cam/a enqueued) frames"
mbq_wait_until 15 mbq_gone "$g" || fail "the consumer (on-producer-lost=error) still runs 15 s after the kill"
took_error=$(since "$mark")
reap "$g"
[ "$RC" != 0 ] || fail "the consumer with on-producer-lost=error exited with status 0"
grep -qi "producer of mbq queue cam/a is gone" "$T/failing.log" ||
    fail "the consumer with on-producer-lost=error did not say why it stopped"
note "consumer, on-producer-lost=error: failed $took_error ms after the kill (exit status $RC):"
grep -i "error" "$T/failing.log" | head -2 | sed 's/^/    /'
mbq_wait_until 15 mbq_gone "$e" || fail "the consumer (on-producer-lost=eos) still runs 15 s after the kill"
took_eos=$(since "$mark")
reap "$e"
[ "$RC" = 0 ] || fail "the consumer with on-producer-lost=eos exited with status $RC"
grep -q "EOS" "$T/ending.log" || fail "the consumer with on-producer-lost=eos got no EOS"
note "consumer, on-producer-lost=eos: ended (EOS, status 0) $took_eos ms after the kill"
[ "$took_error" -le 1000 ] || fail "on-producer-lost=error: $took_error ms from the kill to the exit (limit 1000)"
[ "$took_eos" -le 1000 ] || fail "on-producer-lost=eos: $took_eos ms from the kill to the exit (limit 1000)"
# What the queues still hold is theirs; everything else must come back.
want=$(( $(mbq_stat cam/a count) + $(mbq_stat cam/b count) ))
[ "$want" = 0 ] || fail "the queues still hold $want frames: the consumers did not take what was queued"
mbq_wait_until 10 test "$(mbq_stat cam/frames blocks_used)" -le "$want" ||
    fail "cam/frames: $(mbq_stat cam/frames blocks_used) blocks in use, the queues hold $want"
echo PASS
