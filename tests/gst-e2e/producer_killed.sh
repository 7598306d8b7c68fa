#!/bin/bash
# A producer killed (SIGKILL) in the middle of a stream. mbq keeps a queue
# open and its contents valid when a producer dies: nothing marks end of
# data, so a consumer cannot tell a dead producer from a slow one, and an
# mbqsrc without a bound waits for the next frame for ever. What a consumer
# can do is bound the silence: here one consumer has GStreamer's watchdog
# element (timeout=1000 ms) after mbqsrc and must fail with its error within
# a few seconds of the kill; the other, without it, is still waiting when the
# first has given up (the honest default). Once both are gone, every block
# comes back (mbqd reclaims the dead producer's references).
. "$(dirname "$0")/common.sh"
need videotestsrc watchdog

# Capture first: the watchdog counts from the consumer's start, and a
# capture still starting up (a loaded machine, a sanitizer build) must not
# look like a dead one.
gst capture 60 videotestsrc is-live=true num-buffers=100000 \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! mbqsink queue=cam/a,cam/b pool=cam/frames blocks=8 capacity=4 full-policy=drop-oldest
p=$LAST_PID pg=$GST_PID
mbq_wait_until 30 stat_at_least cam/a enqueued 2 || fail "capture made no frames"
gst guarded 60 mbqsrc queue=cam/a timeout=30000000000 ! watchdog timeout=1000 ! fakesink
g=$LAST_PID
gst waiting 60 mbqsrc queue=cam/b timeout=30000000000 ! fakesink
w=$LAST_PID wg=$GST_PID

mbq_wait_until 30 stat_at_least cam/a dequeued 15 || fail "cam/a: fewer than 15 frames taken"
kill -9 "$pg"
mark=$(mbq_now_ms)
reap "$p"
note "capture killed after $(mbq_stat cam/a enqueued) frames"
mbq_wait_until 15 mbq_gone "$g" || fail "the consumer with a watchdog still runs 15 s after the kill"
took=$(since "$mark")
reap "$g"
[ "$RC" != 0 ] || fail "the consumer with a watchdog exited with status 0"
grep -qi "watchdog" "$T/guarded.log" || fail "the consumer with a watchdog did not say why it stopped"
note "consumer with watchdog timeout=1000: failed $took ms after the kill (exit status $RC):"
grep -i "error" "$T/guarded.log" | head -2 | sed 's/^/    /'
! mbq_gone "$w" || fail "the consumer without a watchdog ended (status: see waiting.log)"
note "consumer without it: still waiting for a frame $(since "$mark") ms after the kill; stopped by SIGINT"
kill -INT "$wg"
mbq_wait_until 10 mbq_gone "$w" || fail "the waiting consumer did not stop on SIGINT"
reap "$w"
# What the queues still hold is theirs; everything else must come back.
want=$(( $(mbq_stat cam/a count) + $(mbq_stat cam/b count) ))
mbq_wait_until 10 test "$(mbq_stat cam/frames blocks_used)" -le "$want" ||
    fail "cam/frames: $(mbq_stat cam/frames blocks_used) blocks in use, the queues hold $want"
echo PASS
