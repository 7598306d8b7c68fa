#!/bin/bash
# A consumer killed (SIGKILL) in the middle of a stream; what the producer
# does follows its queue's full policy:
#  1. drop-oldest, live capture: it goes on to the end (exit 0), the queue
#     dropping what nobody takes; the blocks in use are exactly those the
#     queue holds.
#  2. block, live capture with timeout=100 ms: each frame that finds the
#     queue full waits at most 100 ms and is dropped (with a warning); the
#     capture finishes (exit 0), bounded.
#  2b. the same with fewer blocks than the queue holds, so that the pool
#     runs dry before the queue fills: the producer's buffer pool waits for
#     a block no longer than the timeout either, then hands out ordinary
#     memory, which the sink drops for want of a block; capture finishes.
#  3. block, capture not live: it waits for room without a limit (a file
#     source must not lose data) - the queue full, capture alive; Ctrl-C
#     (SIGINT) ends it within seconds.
# Then, every process gone, the blocks in use are exactly those the queues
# still hold (nobody dequeues them; they go back when the queues are reset
# or destroyed).
. "$(dirname "$0")/common.sh"
need videotestsrc
caps=video/x-raw,format=I420,width=320,height=240,framerate=30/1
kill_consumer_after() { # QUEUE N PID GSTPID: once N frames were taken from QUEUE, SIGKILL GSTPID
    mbq_wait_until 30 stat_at_least "$1" dequeued "$2" || fail "$1: fewer than $2 frames taken"
    kill -9 "$4"
    reap "$3"
    [ "$RC" = 137 ] || fail "the consumer of $1 was not killed (exit status $RC)"
    note "$1: consumer killed after $(mbq_stat "$1" dequeued) frames"
}

# 1. drop-oldest
gst consumer1 60 mbqsrc queue=q/drop timeout=30000000000 ! fakesink
c=$LAST_PID cg=$GST_PID
gst capture1 60 videotestsrc is-live=true num-buffers=60 ! $caps \
    ! mbqsink queue=q/drop pool=p/drop blocks=8 capacity=4 full-policy=drop-oldest
p=$LAST_PID pg=$GST_PID
kill_consumer_after q/drop 10 "$c" "$cg"
expect_exit capture1 "$p" 0
[ "$(mbq_stat q/drop enqueued)" = 60 ] || fail "q/drop took $(mbq_stat q/drop enqueued) frames, not 60"
stat_at_least q/drop dropped 1 || fail "q/drop dropped nothing"
held=$(mbq_stat q/drop count)
mbq_wait_until 10 test "$(mbq_stat p/drop blocks_used)" = "$held" ||
    fail "p/drop: $(mbq_stat p/drop blocks_used) blocks in use, the queue holds $held"
note "1. drop-oldest: capture finished; q/drop dropped $(mbq_stat q/drop dropped), holds $held, blocks in use $held"

# 2. block, live, bounded wait
gst consumer2 60 mbqsrc queue=q/live timeout=30000000000 ! fakesink
c=$LAST_PID cg=$GST_PID
gst capture2 60 videotestsrc is-live=true num-buffers=60 ! $caps \
    ! mbqsink queue=q/live pool=p/live blocks=8 capacity=4 full-policy=block timeout=100000000
p=$LAST_PID pg=$GST_PID
kill_consumer_after q/live 10 "$c" "$cg"
mark=$(mbq_now_ms)
expect_exit capture2 "$p" 0
note "2. block, live, timeout 100 ms: capture finished $(since "$mark") ms after the kill;" \
     "q/live took $(mbq_stat q/live enqueued) of 60 frames, holds $(mbq_stat q/live count)"

# 2b. block, live, bounded wait, the pool runs dry first (nothing consumes)
gst capture2b 60 videotestsrc is-live=true num-buffers=30 ! $caps \
    ! mbqsink queue=q/dry pool=p/dry blocks=4 capacity=8 full-policy=block timeout=50000000
p=$LAST_PID
expect_exit capture2b "$p" 0
[ "$(mbq_stat q/dry count)" = 4 ] || fail "q/dry holds $(mbq_stat q/dry count) frames, not its pool's 4 blocks"
note "2b. block, live, 4 blocks for a queue of 8 and no consumer: capture finished;" \
     "q/dry holds $(mbq_stat q/dry count)"

# 3. block, not live: unbounded wait, ended by SIGINT
gst consumer3 60 mbqsrc queue=q/file timeout=30000000000 ! fakesink
c=$LAST_PID cg=$GST_PID
gst capture3 60 videotestsrc num-buffers=100000 ! $caps \
    ! mbqsink queue=q/file pool=p/file blocks=8 capacity=4 full-policy=block
p=$LAST_PID pg=$GST_PID
kill_consumer_after q/file 10 "$c" "$cg"
mbq_wait_until 10 stat_at_least q/file count 4 || fail "q/file did not fill up"
! mbq_gone "$p" || fail "capture3 ended instead of waiting for room"
enq=$(mbq_stat q/file enqueued)
mark=$(mbq_now_ms)
kill -INT "$pg"
mbq_wait_until 10 mbq_gone "$p" || fail "capture3 still waiting 10 s after SIGINT"
reap "$p"
note "3. block, not live: capture waited with the queue full ($enq frames in), SIGINT ended it" \
     "in $(since "$mark") ms (exit status $RC)"

# Every process gone: the queues' frames are their only references.
for k in drop live dry file; do
    held=$(mbq_stat q/$k count)
    [ "$(mbq_stat p/$k blocks_used)" = "$held" ] ||
        fail "p/$k: $(mbq_stat p/$k blocks_used) blocks in use, q/$k holds $held"
done
echo PASS
