#!/bin/bash
# mbqd killed (SIGKILL) in the middle of a stream and started again on the
# same socket, as a supervisor would without systemd. The new daemon has no
# store to restore objects from (that is systemd's fd store, docs/SYSTEMD.md;
# tests/systemd/nspawn restarts mbqd under a real systemd with one): it
# knows nothing of the queue and pool. mbqsink notices before its next
# buffer that its connection is lost for good, connects again and creates
# its queue and pool again with the same options; mbqsrc drains the old
# queue, notices once it stays quiet, and opens the new one. Frames in the
# old queue are delivered. The frame the sink was enqueueing as the daemon
# went may be lost: counted when its enqueue needed the daemon (a pool's
# first into a queue), silently when it reached the old queue after the
# consumer had left it (the capture stopped between its check and its
# enqueue: case 2 can do that). So the file must hold every frame or all
# but one, in order, and the daemon must list the re-created objects.
#  1. frames flowing when the daemon goes;
#  2. the queue quiet (capture stopped with SIGSTOP across the restart):
#     mbqsrc notices first and waits for the queue, which the sink creates
#     again when the capture goes on;
#  3. the capture killed (SIGKILL) just after it re-created its objects,
#     and the consumer too: the new daemon gets back every block but those
#     the queue still holds;
#  4. the daemon does not come back: the sink gives up after its
#     reconnect-timeout (1 s here) with an error that says so.
# After 1 and 2 too, the re-created pool has every block back.
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
listed() { "$MBQCTL" list 2>/dev/null | grep -q "$1"; }
# check_stream N NAME POOL FRAMES FILE: capture and encoder both ended
# well, the sink reconnected, the source left the old queue, the daemon
# lists the re-created objects and has every block of the pool back, and
# FILE holds FRAMES, or FRAMES - 1 (then its duration is not checked).
check_stream() {
    local n=$1 name=$2 pool=$3 frames=$4 file=$5 lost dur all
    grep -q "reconnected to mbqd" "$T/capture$n.log" ||
        fail "$n: the sink did not reconnect: $(grep -m1 -i 'error\|warn' "$T/capture$n.log")"
    grep -q "queue $name lost" "$T/encode$n.log" || fail "$n: the encoder never left the old queue"
    listed "$name" || fail "$n: the new mbqd does not list the re-created queue $name"
    mbq_wait_until 10 mbq_pool_idle "$pool" ||
        fail "$n: the re-created pool $pool: $(mbq_stat "$pool" blocks_used) blocks still used"
    lost=$(grep -c "buffer lost" "$T/capture$n.log" || true)
    [ "$lost" -le 1 ] || fail "$n: the sink lost $lost frames (at most 1 allowed)"
    dur=$(awk -v f="$frames" 'BEGIN { printf "%.3f", f / 30 }')
    if [ "$lost" = 0 ] && mbq_check_video "$file" "$frames" "$dur"; then
        lost=none
    else
        all=$MBQ_CHECK_RESULT
        mbq_check_video "$file" $((frames - 1)) "" || fail "$n: $file: $all; $MBQ_CHECK_RESULT"
        lost="one ($([ "$lost" = 1 ] && echo 'counted by the sink' || echo 'into the old queue'))"
    fi
    note "   $(grep -m1 -o 'reconnected to mbqd.*' "$T/capture$n.log"); frames lost: $lost;" \
         "$(basename "$file"): $MBQ_CHECK_RESULT"
}
# GST_DEBUG for both: the sink's reconnection (warnings), the source's
# leaving of the old queue (info and warnings).
export GST_DEBUG=mbq:4

# 1. frames flowing
gst encode1 80 mbqsrc queue=cam/encode timeout=5000000000 ! videoconvert \
    ! x264enc speed-preset=ultrafast tune=zerolatency ! mp4mux ! filesink location="$T/out.mp4"
enc=$LAST_PID
# A live sink drops a frame when its bounded wait for room runs out: 3 s
# here, so that an encoder slowed by a loaded machine (or waiting for the
# new queue) costs no frame.
gst capture1 80 videotestsrc is-live=true num-buffers=120 ! $caps \
    ! mbqsink queue=cam/encode pool=cam/frames blocks=16 capacity=8 full-policy=block timeout=3000000000
cap=$LAST_PID
mbq_wait_until 30 stat_at_least cam/encode dequeued 20 || fail "fewer than 20 frames taken"
note "1. mbqd killed while frames flow (the encoder had taken $(mbq_stat cam/encode dequeued))"
restart_daemon
expect_exit capture1 "$cap" 0
expect_exit encode1 "$enc" 0
check_stream 1 cam/encode cam/frames 120 "$T/out.mp4"

# 2. the queue quiet across the restart
gst encode2 80 mbqsrc queue=cam/two timeout=5000000000 ! videoconvert \
    ! x264enc speed-preset=ultrafast tune=zerolatency ! mp4mux ! filesink location="$T/two.mp4"
enc=$LAST_PID
gst capture2 80 videotestsrc is-live=true num-buffers=60 ! $caps \
    ! mbqsink queue=cam/two pool=cam/two-frames blocks=16 capacity=8 full-policy=block timeout=3000000000
cap=$LAST_PID capg=$GST_PID
mbq_wait_until 30 stat_at_least cam/two dequeued 10 || fail "fewer than 10 frames taken"
kill -STOP "$capg"
note "2. capture stopped, mbqd killed with the queue quiet"
restart_daemon
mbq_wait_until 20 grep -q "queue cam/two lost" "$T/encode2.log" ||
    fail "the encoder did not notice the daemon had gone"
note "   the encoder noticed: $(grep -m1 -o 'queue cam/two lost.*' "$T/encode2.log")"
kill -CONT "$capg"
expect_exit capture2 "$cap" 0
expect_exit encode2 "$enc" 0
check_stream 2 cam/two cam/two-frames 60 "$T/two.mp4"

# 3. the capture killed after its reconnection (the encoder waits on
# through the loss of its producer, to be killed holding its blocks)
gst encode3 60 mbqsrc queue=cam/kill timeout=5000000000 on-producer-lost=wait ! fakesink
enc=$LAST_PID encg=$GST_PID
gst capture3 60 videotestsrc is-live=true ! $caps \
    ! mbqsink queue=cam/kill pool=cam/kill-frames blocks=16 capacity=8 timeout=3000000000
cap=$LAST_PID capg=$GST_PID
mbq_wait_until 30 stat_at_least cam/kill dequeued 5 || fail "3: fewer than 5 frames taken"
note "3. mbqd killed; then the capture (SIGKILL) once it reconnected, and the consumer"
restart_daemon
mbq_wait_until 20 grep -q "reconnected to mbqd" "$T/capture3.log" || fail "3: the sink did not reconnect"
mbq_wait_until 30 stat_at_least cam/kill dequeued 5 || fail "3: fewer than 5 frames through the new queue"
kill -9 "$capg"
kill -STOP "$encg" # holding what it has: the blocks come back when it goes
used=$(mbq_stat cam/kill-frames blocks_used)
kill -9 "$encg"
reap "$cap"
reap "$enc"
# Only the queue's entries hold blocks now.
held_by_queue() { [ "$(mbq_stat cam/kill-frames blocks_used)" = "$(mbq_stat cam/kill count)" ]; }
mbq_wait_until 10 held_by_queue ||
    fail "3: capture and encoder killed: $(mbq_stat cam/kill-frames blocks_used) blocks of the re-created pool used, the queue holds $(mbq_stat cam/kill count)"
note "   blocks of the re-created pool in use: $used before the kills," \
     "$(mbq_stat cam/kill-frames blocks_used) after, all in the queue ($(mbq_stat cam/kill count) entries)"

# 4. no daemon comes back
gst capture4 60 videotestsrc is-live=true ! $caps \
    ! mbqsink queue=cam/three full-policy=drop-newest reconnect-timeout=1000000000
cap=$LAST_PID
mbq_wait_until 30 stat_at_least cam/three enqueued 5 || fail "4: fewer than 5 frames enqueued"
kill -9 "$MBQD_PID"
wait "$MBQD_PID" 2>/dev/null || true
MBQD_PID=
mark=$(mbq_now_ms)
reap "$cap"
took=$(since "$mark")
[ "$RC" != 0 ] && [ "$RC" != 124 ] || fail "4: capture ended with status $RC, expected an error"
grep -q "Cannot reconnect to mbqd" "$T/capture4.log" || fail "4: the capture failed without saying why"
[ "$took" -lt 10000 ] || fail "4: the capture took $took ms to give up (reconnect-timeout 1 s)"
note "4. no daemon: the capture failed after $took ms: $(grep -m1 'ERROR: from element' "$T/capture4.log")"
echo PASS
