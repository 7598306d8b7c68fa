/* Blocking operations of a buffer queue: enqueue that waits for room,
 * dequeue that waits for an entry, and their cancel.
 *
 * Role: the sleeping and spinning around the non-blocking bq_enqueue and
 * bq_dequeue (bq.c), which do all the queue's work; nothing here touches an
 * entry.
 *
 * Invariants:
 *  - a sleeper counts itself (data_waiters or space_waiters), arms its
 *    futex word (data_seq or space_seq, futex.h) and runs the heavy
 *    barrier, unless the other side's runner word shows its mover on this
 *    very CPU (bq_sleep_barrier), before it re-checks the queue; its waker
 *    stores its index, notes itself in its side's runner word, then reads
 *    the word (wake_sleepers): one of the two always sees the other, so no
 *    wake-up is lost. The waker that finds the word armed disarms it and
 *    wakes; the ones after it find it disarmed and make no call until the
 *    sleeper, awake, has re-armed it;
 *  - a sleeper names itself in a slot when one is free, so that a waker can
 *    tell one killed asleep from a live one (futex.h);
 *  - every sleep is a slice of at most 100 ms (futex_wait_slice), so a
 *    waker that died before waking, or a scribbled word, costs a bounded
 *    delay, never a hang;
 *  - a wait reads the cancel epoch before its first try: a cancel from then
 *    on makes it return -ECANCELED;
 *  - "producer lost" is read after a try found the queue empty, then the
 *    queue is tried once more: mbqd sets it only after the last producer's
 *    process is gone, so an entry it enqueued is always delivered before
 *    -EPIPE.
 * Limits: the spin before a dequeue sleeps is BQ_SPIN_NS, adaptive (see
 * dequeue_spin_ns) unless bq_set_spin fixed it; a dequeuer woken with
 * nothing to take (bq_wake_ahead) spins up to BQ_AHEAD_SPIN_NS more. */
#include "bq_internal.h"

#include <mbq/status.h>

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <time.h>

/* A blocking dequeuer going to sleep: counted (data_waiters, which
 * producers read), then named in a slot if one is free (-1: none). */
static int waiter_enter(struct bq_shared *sh)
{
    return futex_sleepers_enter(&sh->data_waiters, sh->waiter_tid, BQ_WAITER_SLOTS, slock_self());
}

static void waiter_leave(struct bq_shared *sh, int slot)
{
    futex_sleepers_leave(&sh->data_waiters, sh->waiter_tid, slot, slock_self());
}

/* ---- the sleeper's barrier ------------------------------------------------ */

void bq_runner_claim(_Atomic uint64_t *runner, uint64_t cur, uint64_t want)
{
    uint32_t self = (uint32_t)(want >> 32);
    for (;;) {
        uint32_t owner = (uint32_t)(cur >> 32);
        uint64_t next = cur == 0 || owner == self || !slock_tid_alive(owner) ? want
                                                                             : BQ_RUNNER_SHARED;
        /* A locked instruction, failed or not: the full barrier that the
         * argument in bq_sleep_barrier counts on. */
        if (atomic_compare_exchange_strong_explicit(runner, &cur, next, memory_order_seq_cst,
                                                    memory_order_seq_cst) ||
            cur == BQ_RUNNER_SHARED)
            break;
    }
    atomic_thread_fence(memory_order_seq_cst);
}

/* The sleeper's half of the Dekker pair, run after it armed its futex word
 * (a locked or, so its own store is ordered before its loads). The heavy
 * barrier is there for one case: a waker on another CPU whose index store
 * still sits in its store buffer while its load of the futex word already
 * read it disarmed. It is skipped when the other side's runner word names
 * this CPU. "L sees us" below means L reads our arming, or the value of a
 * waker that disarmed it after our arming: that waker wakes us, and we arm
 * again before any further sleep, after L in the word's order, so the pair
 * holds for that arming. Why the skip is safe (x86-TSO; a context switch is
 * a full barrier, in the scheduler as for membarrier itself): take any
 * waker W and its window, from its index store S through bq_note_runner to
 * its load L of the futex word.
 *  1. W was switched out or in within the window, or bq_note_runner took
 *     bq_runner_claim: a full barrier lies between S and L, and with the
 *     sleeper's locked arming that is a plain Dekker pair.
 *  2. Otherwise W ran the whole window on one CPU c, without a switch, and
 *     found the word equal to (W, c) or shared. If shared, we read it
 *     shared or read an older value, before it became shared: W's load of
 *     the word came later and L later still, after our arming — L sees us.
 *     Else:
 *     a. c is this CPU (the one sched_getcpu returned while we ran on it):
 *        the window did not overlap our time on it, so it ended before we
 *        were switched in (S drained by that switch: we see S) or began
 *        after we ran here, after our arming (L sees us).
 *     b. c is another CPU, yet we read a value naming this one. If it came
 *        before the (W, c) W found, in the word's order, we read it
 *        before W's claim wrote (W, c), which preceded L: L sees us. The
 *        values after (W, c) are W's own or shared (a live W's name is
 *        never taken over; anyone else finding it makes it shared), so W
 *        wrote it in a later window, on this CPU: after migrating (a
 *        switch, S drained) and after S in store order — and we read the
 *        word before the index: we see S.
 * Elsewhere than x86 (weaker ordering of loads) the barrier always runs. */
static void bq_sleep_barrier(_Atomic uint64_t *runner)
{
#if defined(__x86_64__) || defined(__i386__)
    uint64_t r = atomic_load_explicit(runner, memory_order_acquire);
    int cpu = bq_cpu();
    if (r != BQ_RUNNER_SHARED && cpu >= 0 && (uint32_t)r == (uint32_t)cpu + 1) {
        atomic_signal_fence(memory_order_seq_cst);
        return;
    }
#endif
    slock_heavy_barrier();
}

/* ---- blocking enqueue ------------------------------------------------------ */

/* Full for a blocking enqueue's purposes, read without a lock: the real
 * head (a stale cached one would say full when it is not), a policy that
 * rejects, and no end of data (which the enqueue must report). */
static bool bq_looks_full(struct bq *q)
{
    struct bq_shared *sh = q->sh;
    if (q->full_policy != BQ_FULL_FAIL ||
        (atomic_load_explicit(&sh->flags, memory_order_relaxed) & BQ_F_END_OF_DATA))
        return false;
    uint64_t tail = atomic_load_explicit(&sh->tail.index, memory_order_acquire);
    uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_acquire);
    atomic_store_explicit(&q->head_cache, head, memory_order_relaxed);
    return tail - head >= q->capacity && head <= tail;
}

static inline bool bq_cancelled(const struct bq *q, uint32_t epoch)
{
    return atomic_load_explicit(&q->sh->cancel_epoch, memory_order_seq_cst) != epoch;
}

/* Sleeps until a dequeue makes room (see wake_producers), then enqueues.
 * No spin: a consumer frees room at its own pace, and a producer that
 * waited for room has time to spare. */
static int enqueue_wait_slow(struct bq *q, const struct bq_entry *e, bool take, uint32_t epoch,
                             uint64_t deadline)
{
    struct bq_shared *sh = q->sh;
    for (;;) {
        int slot = futex_sleepers_enter(&sh->space_waiters, sh->space_tid,
                                        BQ_SPACE_WAITER_SLOTS, slock_self());
        uint32_t seq = futex_seq_arm(&sh->space_seq);
        bq_sleep_barrier(&sh->head.runner); /* our half of the pair: see wake_producers */
        int r = MBQ_BQ_ERR_QUEUE_IS_FULL;
        if (bq_cancelled(q, epoch))
            r = -ECANCELED;
        else if (!bq_looks_full(q))
            r = enqueue_impl(q, e, take, true);
        /* In slices (futex_wait_slice): a consumer that died before
         * waking us (or a scribbled word) costs a bounded delay. */
        if (r != MBQ_BQ_ERR_QUEUE_IS_FULL ||
            futex_wait_slice(&sh->space_seq, seq, deadline) == -ETIMEDOUT) {
            futex_sleepers_leave(&sh->space_waiters, sh->space_tid, slot, slock_self());
            if (r == MBQ_BQ_ERR_QUEUE_IS_FULL)
                atomic_fetch_add_explicit(&sh->tail.rejected_full, 1, memory_order_relaxed);
            return r;
        }
        futex_sleepers_leave(&sh->space_waiters, sh->space_tid, slot, slock_self());
    }
}

static int enqueue_wait_impl(struct bq *q, const struct bq_entry *e, bool take,
                             int64_t timeout_ns)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    uint32_t epoch = atomic_load_explicit(&q->sh->cancel_epoch, memory_order_seq_cst);
    /* A queue that looks full is not tried: a failed try would cost a
     * reference round trip (retain, release) and a rejected_full count. */
    if (!bq_looks_full(q)) {
        int r = enqueue_impl(q, e, take, true);
        if (r != MBQ_BQ_ERR_QUEUE_IS_FULL)
            return r;
    }
    if (timeout_ns == 0) {
        atomic_fetch_add_explicit(&q->sh->tail.rejected_full, 1, memory_order_relaxed);
        return MBQ_BQ_ERR_QUEUE_IS_FULL;
    }
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : mono_ns() + (uint64_t)timeout_ns;
    uint64_t prev = slock_set_deadline(timeout_ns < 0 ? 0 : deadline);
    int r = enqueue_wait_slow(q, e, take, epoch, deadline);
    slock_set_deadline(prev);
    return r;
}

int bq_enqueue_wait(struct bq *q, const struct bq_entry *e, int64_t timeout_ns)
{
    return enqueue_wait_impl(q, e, false, timeout_ns);
}

int bq_enqueue_take_wait(struct bq *q, const struct bq_entry *e, int64_t timeout_ns)
{
    return enqueue_wait_impl(q, e, true, timeout_ns);
}

int bq_wait_room(struct bq *q, uint32_t epoch, int64_t timeout_ns)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (bq_cancelled(q, epoch))
        return -ECANCELED;
    if (!bq_looks_full(q))
        return 0;
    if (timeout_ns == 0)
        return MBQ_BQ_ERR_QUEUE_IS_FULL;
    struct bq_shared *sh = q->sh;
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : mono_ns() + (uint64_t)timeout_ns;
    for (;;) {
        int slot = futex_sleepers_enter(&sh->space_waiters, sh->space_tid,
                                        BQ_SPACE_WAITER_SLOTS, slock_self());
        uint32_t seq = futex_seq_arm(&sh->space_seq);
        bq_sleep_barrier(&sh->head.runner); /* our half of the pair: see wake_producers */
        int r = bq_cancelled(q, epoch) ? -ECANCELED : bq_looks_full(q) ? 1 : 0;
        if (r != 1 || futex_wait_slice(&sh->space_seq, seq, deadline) == -ETIMEDOUT) {
            futex_sleepers_leave(&sh->space_waiters, sh->space_tid, slot, slock_self());
            return r == 1 ? MBQ_BQ_ERR_QUEUE_IS_FULL : r;
        }
        futex_sleepers_leave(&sh->space_waiters, sh->space_tid, slot, slock_self());
    }
}

/* ---- cancel, spin ------------------------------------------------------------ */

void bq_note_rejected(struct bq *q)
{
    atomic_fetch_add_explicit(&q->sh->tail.rejected_full, 1, memory_order_relaxed);
}

int bq_cancel_waits(struct bq *q)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_shared *sh = q->sh;
    /* The epoch first, then the words the sleepers compare: a sleeper that
     * read a word before our bump returns from futex_wait at once, and one
     * that read it after sees the new epoch. Woken unconditionally: the
     * sleepers' counts are hints, and a cancel is rare. */
    atomic_fetch_add_explicit(&sh->cancel_epoch, 1, memory_order_seq_cst);
    futex_seq_bump(&sh->data_seq);
    futex_seq_bump(&sh->space_seq);
    futex_wake(&sh->data_seq, INT_MAX);
    futex_wake(&sh->space_seq, INT_MAX);
    return 0;
}

uint32_t bq_cancel_epoch(const struct bq *q)
{
    return atomic_load_explicit(&q->sh->cancel_epoch, memory_order_seq_cst);
}

void bq_set_spin(struct bq *q, int64_t spin_ns)
{
    atomic_store_explicit(&q->spin_ns, spin_ns, memory_order_relaxed);
}

/* No pairing with the sleeper's barrier here: this wake is a hint. The
 * enqueue that follows wakes as always, so a sleeper that this one misses,
 * or that went back to sleep, is still woken by it; one this wake reached
 * has disarmed the word, so that enqueue then makes no call. */
void bq_wake_ahead(struct bq *q)
{
    struct bq_shared *sh = q->sh;
    if (!futex_seq_armed(&sh->data_seq))
        return;
    /* Where we run now, not where the last enqueue ran (tail.runner): at a
     * frame rate that was one frame ago, and either CPU since. */
    int cpu = bq_cpu();
    atomic_store_explicit(&sh->ahead_cpu, cpu < 0 ? BQ_AHEAD_CPU_UNKNOWN : (uint32_t)cpu + 1,
                          memory_order_relaxed);
    futex_sleepers_wake(&sh->data_seq, &sh->data_waiters, sh->waiter_tid, BQ_WAITER_SLOTS,
                        &q->idle_wakes, slock_tid_alive);
}

/* ---- producers --------------------------------------------------------------- */

void bq_producers_set(struct bq *q, uint32_t n, const uint32_t *pids, bool lost)
{
    struct bq_shared *sh = q->sh;
    for (uint32_t i = 0; i < BQ_PRODUCER_PIDS; i++)
        atomic_store_explicit(&sh->producer_pid[i], pids && i < n ? pids[i] : 0,
                              memory_order_relaxed);
    atomic_store_explicit(&sh->producers, n, memory_order_relaxed);
    if (n > 0 || !lost) {
        atomic_fetch_and_explicit(&sh->flags, ~BQ_F_PRODUCER_LOST, memory_order_seq_cst);
        return;
    }
    /* As bq_cancel_waits: the flag, then the word sleepers compare, so that
     * one that read the word before the bump returns from futex_wait at
     * once and one that read it after sees the flag. */
    atomic_fetch_or_explicit(&sh->flags, BQ_F_PRODUCER_LOST, memory_order_seq_cst);
    futex_seq_bump(&sh->data_seq);
    futex_wake(&sh->data_seq, INT_MAX);
}

uint32_t bq_producers_get(const struct bq *q, uint32_t pids[BQ_PRODUCER_PIDS])
{
    for (uint32_t i = 0; i < BQ_PRODUCER_PIDS; i++)
        pids[i] = atomic_load_explicit(&q->sh->producer_pid[i], memory_order_relaxed);
    return atomic_load_explicit(&q->sh->producers, memory_order_relaxed);
}

bool bq_producer_lost(const struct bq *q)
{
    if (!q || !q->sh)
        return false;
    return atomic_load_explicit(&q->sh->flags, memory_order_acquire) & BQ_F_PRODUCER_LOST;
}

void bq_set_ignore_lost(struct bq *q, bool ignore)
{
    atomic_store_explicit(&q->ignore_lost, ignore, memory_order_relaxed);
}

/* ---- blocking dequeue ------------------------------------------------------ */

static inline bool bq_looks_empty(struct bq *q)
{
    uint64_t head = atomic_load_explicit(&q->sh->head.index, memory_order_acquire);
    return consumer_tail(q, head) == head;
}

static uint64_t dequeue_spin_ns(struct bq *q);
static int dequeue_spin(struct bq *q, struct bq_entry *out, uint32_t epoch, uint64_t start,
                        uint64_t spin_end);
static int dequeue_sleep(struct bq *q, struct bq_entry *out, uint32_t epoch, uint64_t deadline);

/* After a try found the queue empty (-EAGAIN): -ENODATA at end of data;
 * -EPIPE if every producer is gone and one more try finds nothing (see the
 * invariants); else that try's result. */
static int dequeue_empty_verdict(struct bq *q, struct bq_entry *out)
{
    if (bq_is_at_end_of_data(q))
        return -ENODATA;
    if (!bq_producer_lost(q) || atomic_load_explicit(&q->ignore_lost, memory_order_relaxed))
        return -EAGAIN;
    int r = dequeue_common(q, out, false);
    return r == -EAGAIN ? -EPIPE : r;
}

int bq_dequeue_wait(struct bq *q, struct bq_entry *out, int64_t timeout_ns)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    /* Read before the first try: a cancel from here on is seen. */
    uint32_t epoch = atomic_load_explicit(&q->sh->cancel_epoch, memory_order_seq_cst);
    int r = dequeue_common(q, out, false);
    if (r == -EAGAIN)
        r = dequeue_empty_verdict(q, out);
    if (r != -EAGAIN)
        return r;
    /* The clock only for a deadline or a spin: a wait with neither (no
     * timeout, the producer on this CPU) reads none. */
    uint64_t spin_ns = dequeue_spin_ns(q);
    uint64_t start = timeout_ns >= 0 || spin_ns ? mono_ns() : 0;
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : start + (uint64_t)timeout_ns;
    uint64_t spin_end = deadline - start > spin_ns ? start + spin_ns : deadline;
    /* From here on a lock held by someone who does not answer fails the call
     * by its own deadline, not the (longer) wait limit. */
    uint64_t prev = slock_set_deadline(timeout_ns < 0 ? 0 : deadline);
    r = dequeue_spin(q, out, epoch, start, spin_end);
    if (r == -EAGAIN)
        r = dequeue_sleep(q, out, epoch, deadline);
    slock_set_deadline(prev);
    return r;
}

/* The adaptive spin's memory, per thread: waits in a row whose spin found
 * nothing, and waits since the spin was last tried. */
static _Thread_local unsigned spin_misses, spin_tries;

/* How long a wait spins before it sleeps (0: not at all). A cross-vCPU
 * wake costs ~25 us each way, so waiting that long on the cache line is
 * cheaper than sleeping — unless the producer shares our CPU, when spinning
 * only delays it: then no spin at all (the tail's runner word names the
 * producer's CPU). Otherwise the spin adapts: after 8 waits in a row whose
 * spin found nothing, sleep at once, trying the spin on every 16th. A
 * budget set with bq_set_spin replaces the adaptive one (0: never spin). */
static uint64_t dequeue_spin_ns(struct bq *q)
{
    int64_t budget = atomic_load_explicit(&q->spin_ns, memory_order_relaxed);
    if (budget == 0 || (budget < 0 && spin_misses >= 8 && ++spin_tries % 16 != 0))
        return 0;
    int cpu = bq_cpu();
    uint64_t runner = atomic_load_explicit(&q->sh->tail.runner, memory_order_relaxed);
    if (cpu >= 0 && runner != BQ_RUNNER_SHARED && (uint32_t)runner == (uint32_t)cpu + 1)
        return 0;
    return budget < 0 ? BQ_SPIN_NS : (uint64_t)budget;
}

/* Spins until spin_end for an entry: the dequeue's result, or -EAGAIN if
 * none came (or a cancel ended the spin). */
static int spin_for_entry(struct bq *q, struct bq_entry *out, uint32_t epoch, uint64_t start,
                          uint64_t spin_end)
{
    for (unsigned i = 0; spin_end != start; i++) {
        if (!bq_looks_empty(q)) {
            int r = dequeue_common(q, out, false);
            if (r != -EAGAIN)
                return r;
        }
        cpu_relax();
        if ((i & 63) == 63 && (mono_ns() >= spin_end || bq_cancelled(q, epoch)))
            break;
    }
    return -EAGAIN;
}

/* The spin before sleeping, which the adaptive budget learns from. */
static int dequeue_spin(struct bq *q, struct bq_entry *out, uint32_t epoch, uint64_t start,
                        uint64_t spin_end)
{
    int r = spin_for_entry(q, out, epoch, start, spin_end);
    if (r != -EAGAIN)
        spin_misses = 0;
    else if (spin_end != start)
        spin_misses++;
    return r;
}

/* Woken (the futex word moved) with nothing to take after a producer's
 * bq_wake_ahead, whose enqueue follows within microseconds: spin for it
 * rather than pay for another wake-up. Only a dequeuer that takes the wake
 * ahead's mark (ahead_cpu, exchanged for 0) spins: an ordinary wake that
 * found nothing (several consumers woken by one enqueue, a reset), or the
 * other sleepers one wake ahead woke, sleep again at once. Not at end of
 * data, for a lost producer or after a cancel (woken for those: the
 * caller's next try reports them), with the spin turned off, or on the CPU
 * the waking producer ran on. At most BQ_AHEAD_SPIN_NS, or the handle's
 * own spin budget if shorter. Left out of the adaptive budget: a wake ahead
 * says an entry is coming, whatever the spins before sleeping found. */
static int dequeue_spin_after_wake(struct bq *q, struct bq_entry *out, uint32_t epoch,
                                   uint64_t deadline)
{
    uint32_t flags = atomic_load_explicit(&q->sh->flags, memory_order_relaxed);
    int64_t budget = atomic_load_explicit(&q->spin_ns, memory_order_relaxed);
    if ((flags & (BQ_F_END_OF_DATA | BQ_F_PRODUCER_LOST)) || budget == 0 ||
        atomic_load_explicit(&q->sh->ahead_cpu, memory_order_relaxed) == 0)
        return -EAGAIN;
    uint32_t ahead = atomic_exchange_explicit(&q->sh->ahead_cpu, 0, memory_order_relaxed);
    int cpu = bq_cpu();
    if (ahead == 0 || (cpu >= 0 && ahead == (uint32_t)cpu + 1))
        return -EAGAIN;
    uint64_t spin = budget > 0 && (uint64_t)budget < BQ_AHEAD_SPIN_NS ? (uint64_t)budget
                                                                      : BQ_AHEAD_SPIN_NS;
    uint64_t start = mono_ns();
    if (start >= deadline)
        return -EAGAIN;
    uint64_t end = deadline - start > spin ? start + spin : deadline;
    int r = spin_for_entry(q, out, epoch, start, end);
    if (r == 0)
        atomic_fetch_add_explicit(&q->woken_ahead, 1, memory_order_relaxed);
    return r;
}

/* Sleeps until a producer wakes us (see wake_consumers), then dequeues;
 * -ENODATA at end of data, -ETIMEDOUT at the deadline, -ECANCELED. */
static int dequeue_sleep(struct bq *q, struct bq_entry *out, uint32_t epoch, uint64_t deadline)
{
    struct bq_shared *sh = q->sh;
    for (;;) {
        int slot = waiter_enter(sh);
        uint32_t seq = futex_seq_arm(&sh->data_seq);
        bq_sleep_barrier(&sh->tail.runner); /* our half of the pair: see wake_consumers */
        int r = bq_cancelled(q, epoch) ? -ECANCELED : dequeue_common(q, out, false);
        if (r == -EAGAIN)
            r = dequeue_empty_verdict(q, out);
        if (r != -EAGAIN) {
            waiter_leave(sh, slot);
            return r;
        }
        /* Sleep in slices (futex_wait_slice) so that a producer that died
         * before waking us (or a scribbled futex word) costs a bounded
         * delay, not a hang. */
        if (futex_wait_slice(&sh->data_seq, seq, deadline) == -ETIMEDOUT) {
            waiter_leave(sh, slot);
            return -ETIMEDOUT;
        }
        /* A waker disarms and bumps the word; a slice that ran out leaves
         * it as we armed it. */
        bool woken = atomic_load_explicit(&sh->data_seq, memory_order_relaxed) != seq;
        waiter_leave(sh, slot);
        if (bq_cancelled(q, epoch))
            return -ECANCELED;
        /* Woken (or a slice ended): the entry is most likely there. Take it
         * before re-arming, which costs a heavy barrier — in this VM about
         * as much as another wake-up. */
        r = dequeue_common(q, out, false);
        if (r == -EAGAIN && woken)
            r = dequeue_spin_after_wake(q, out, epoch, deadline);
        if (r != -EAGAIN)
            return r;
    }
}
