/* Inspections of a buffer queue: counts, running sums, times, statistics,
 * and the lock-free reference count the pool's recount asks for.
 *
 * Role: every read of a queue that changes nothing (bq_settle aside, which
 * the head lock's holder owes the queue anyway).
 *
 * Invariants:
 *  - count = tail - head, total size and duration = the tail side's sums
 *    minus the head side's, all from one consistent snapshot: each side
 *    read under its sequence counter (even and unchanged across the read),
 *    the head side read before and after the tail side and the pair taken
 *    only when the head did not move in between (snapshot);
 *  - a reader without a lock never indexes a slot with a pair of counters
 *    bq_range_ok rejected; a side stuck mid-update or a corrupt pair sends
 *    it to the locks, which repair (a side whose writer still holds its
 *    lock gets no exact answer: bq_stats says approximate);
 *  - bq_count_refs counts only while no journalled move or repair runs
 *    (journal.moves even and unchanged, active 0, on both sides of its
 *    scan), so an entry moving under it is never counted twice or missed.
 * Limits: the scanning getters (min/max PTS, min DTS, end PTS) take both
 * locks and walk every entry. */
#include "bq_internal.h"

#include <mbq/status.h>

#include <errno.h>

/* A consistent read of one side; false if it stayed mid-update (its writer
 * may have died: the caller falls back to the lock, which repairs). */
static bool side_read(const struct bq_side *s, struct side_snap *out)
{
    for (int tries = 0; tries < 1000; tries++) {
        uint32_t a = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (a & 1) {
            cpu_relax();
            continue;
        }
        out->index = atomic_load_explicit(&s->index, memory_order_relaxed);
        out->bytes = atomic_load_explicit(&s->bytes, memory_order_relaxed);
        out->ops = atomic_load_explicit(&s->ops, memory_order_relaxed);
        out->duration = side_duration_load(s);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == a)
            return true;
    }
    return false;
}

/* A read of one side without its sequence check, for when side_read cannot
 * get one: the fields may be from different moments. */
static void side_peek(const struct bq_side *s, struct side_snap *out)
{
    out->index = atomic_load_explicit(&s->index, memory_order_acquire);
    out->bytes = atomic_load_explicit(&s->bytes, memory_order_relaxed);
    out->ops = atomic_load_explicit(&s->ops, memory_order_relaxed);
    out->duration = side_duration_load(s);
}

/* ---- references (for the pool's recount) --------------------------------- */

int bq_count_refs(const struct bq *q, uint32_t pool_id, uint64_t handle, uint64_t *n)
{
    if (!q || !q->sh || !n)
        return -EINVAL;
    const struct bq_shared *sh = q->sh;
    const struct bq_journal *j = &sh->journal;
    uint32_t m = atomic_load_explicit(&j->moves, memory_order_acquire);
    if ((m & 1) || atomic_load_explicit(&j->active, memory_order_acquire))
        return -EAGAIN;
    uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&sh->tail.index, memory_order_acquire);
    uint64_t end = tail;
    /* In FIFO order an entry counts once its seq is stored, before tail
     * moves (consumer_tail): a producer that died there left it in. */
    if (q->order == BQ_ORDER_FIFO &&
        __atomic_load_n(&q->slots[tail & q->mask].seq, __ATOMIC_ACQUIRE) == tail + 1)
        end = tail + 1;
    uint64_t k = 0;
    if (head - tail != 1) { /* one past: empty (see dequeue) */
        if (end - head > q->capacity)
            return -EAGAIN; /* moving, or scribbled: not now */
        for (uint64_t i = head; i != end; i++) {
            const struct bq_slot *sl = &q->slots[i & q->mask];
            k += READ_ONCE(sl->handle) == handle && READ_ONCE(sl->pool_id) == pool_id;
        }
    }
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&j->moves, memory_order_relaxed) != m ||
        atomic_load_explicit(&j->active, memory_order_relaxed))
        return -EAGAIN;
    *n = k;
    return 0;
}

/* ---- counts and running sums, without a lock ------------------------------- */

/* A consistent snapshot of both sides without taking a lock: the consumer's
 * side is read before and after the producer's, and the pair is accepted
 * when the consumer's did not move in between. */
static bool snapshot(struct bq *q, struct side_snap *t, struct side_snap *h)
{
    for (int tries = 0; tries < 100; tries++) {
        struct side_snap h2;
        if (!side_read(&q->sh->head, h) || !side_read(&q->sh->tail, t) ||
            !side_read(&q->sh->head, &h2))
            break;
        t->index = tail_seen(q, h->index, t->index);
        if (h2.index == h->index && bq_range_ok(q, h->index, t->index))
            return true;
    }
    /* a side stuck mid-update or corrupt counters: repair under the lock
     * (a side stuck because its writer stopped keeps the lock: no answer) */
    bq_mark_repair(q);
    struct bq_held held;
    if (bq_lock_full(q, &held) < 0)
        return false;
    bool ok = side_read(&q->sh->head, h) && side_read(&q->sh->tail, t) &&
              bq_range_ok(q, h->index, t->index);
    bq_unlock_full(q, held);
    return ok;
}

int64_t bq_count(struct bq *q)
{
    if (!q || !q->sh)
        return 0;
    for (int tries = 0; tries < 100; tries++) {
        uint64_t h = atomic_load_explicit(&q->sh->head.index, memory_order_acquire);
        uint64_t t = tail_seen(q, h, atomic_load_explicit(&q->sh->tail.index,
                                                          memory_order_acquire));
        if (atomic_load_explicit(&q->sh->head.index, memory_order_acquire) == h &&
            bq_range_ok(q, h, t))
            return (int64_t)(t - h);
    }
    struct side_snap t, h;
    return snapshot(q, &t, &h) ? (int64_t)(t.index - h.index) : 0;
}

bool bq_is_empty(struct bq *q)
{
    return bq_count(q) == 0;
}

bool bq_contains_end_of_data(struct bq *q)
{
    if (!q || !q->sh)
        return true;
    return atomic_load_explicit(&q->sh->flags, memory_order_acquire) & BQ_F_END_OF_DATA;
}

bool bq_is_at_end_of_data(struct bq *q)
{
    if (!q || !q->sh)
        return true;
    return bq_contains_end_of_data(q) && bq_count(q) == 0;
}

uint64_t bq_total_size(struct bq *q)
{
    struct side_snap t, h;
    if (!q || !q->sh || !snapshot(q, &t, &h) || t.index == h.index)
        return 0;
    return t.bytes - h.bytes;
}

mbq_time bq_duration(struct bq *q)
{
    struct side_snap t, h;
    if (!q || !q->sh || !snapshot(q, &t, &h) || t.index == h.index)
        return MBQ_TIME_ZERO;
    return mbq_time_subtract(t.duration, h.duration);
}

/* ---- times of the entries -------------------------------------------------- */

static mbq_time head_time(struct bq *q, bool dts)
{
    if (!q || !q->sh)
        return MBQ_TIME_INVALID;
    mbq_time r = MBQ_TIME_INVALID;
    int how = bq_lock_side(q, &q->sh->head);
    if (how < 0)
        return r;
    uint64_t head = atomic_load_explicit(&q->sh->head.index, memory_order_relaxed);
    uint64_t tail = tail_seen(q, head, load_index(&q->sh->tail));
    if (head != tail && bq_range_ok(q, head, tail)) {
        bq_settle(q, head, tail);
        r = slot_time(q, head, dts ? SLOT_DTS : SLOT_PTS);
    }
    bslock_unlock(&q->sh->head.lock, how);
    return r;
}

mbq_time bq_first_dts(struct bq *q)
{
    return head_time(q, true);
}

mbq_time bq_first_pts(struct bq *q)
{
    return head_time(q, false);
}

enum scan_what { SCAN_MIN_DTS, SCAN_MIN_PTS, SCAN_MAX_PTS, SCAN_END_PTS };

static mbq_time scan_time(struct bq *q, enum scan_what what)
{
    if (!q || !q->sh)
        return MBQ_TIME_INVALID;
    mbq_time r = MBQ_TIME_INVALID;
    struct bq_held held;
    if (bq_lock_full(q, &held) < 0)
        return r;
    uint64_t head = atomic_load_explicit(&q->sh->head.index, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&q->sh->tail.index, memory_order_relaxed);
    if (what == SCAN_MIN_DTS) {
        for (uint64_t i = head; i != tail; i++) {
            mbq_time d = slot_time(q, i, SLOT_DTS);
            if (mbq_time_is_numeric(d) &&
                (!mbq_time_is_valid(r) || mbq_time_compare(d, r) < 0))
                r = d;
        }
    } else {
        mbq_time lo, hi, end;
        scan_pts(q, head, tail, &lo, &hi, &end);
        r = what == SCAN_MIN_PTS ? lo : what == SCAN_MAX_PTS ? hi : end;
    }
    bq_unlock_full(q, held);
    return r;
}

mbq_time bq_min_dts(struct bq *q)
{
    return scan_time(q, SCAN_MIN_DTS);
}

mbq_time bq_min_pts(struct bq *q)
{
    return scan_time(q, SCAN_MIN_PTS);
}

mbq_time bq_max_pts(struct bq *q)
{
    return scan_time(q, SCAN_MAX_PTS);
}

mbq_time bq_end_pts(struct bq *q)
{
    return scan_time(q, SCAN_END_PTS);
}

/* ---- statistics ----------------------------------------------------------- */

int bq_stats(struct bq *q, struct bq_stats *out)
{
    if (!q || !q->sh || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_shared *sh = q->sh;
    struct side_snap t, h;
    bool approximate = false;
    if (!snapshot(q, &t, &h)) {
        /* A side stuck mid-update whose writer still holds the lock (stopped,
         * or a forged owner), or counters the repair could not fix: answer
         * with what the counters say now, marked approximate, rather than
         * not at all. */
        if (!(slock_owner(&sh->tail.lock.lock) || slock_owner(&sh->head.lock.lock)))
            return -EUCLEAN;
        approximate = true;
        side_peek(&sh->tail, &t);
        side_peek(&sh->head, &h);
        if (!bq_range_ok(q, h.index, t.index))
            h.index = t.index;
    }
    *out = (struct bq_stats){
        .approximate = approximate,
        .capacity = q->capacity,
        .order = q->order,
        .full_policy = q->full_policy,
        .triggers = atomic_load_explicit(&sh->trigger_count, memory_order_relaxed),
        .count = t.index - h.index,
        .enqueued = t.ops,
        .dequeued = h.ops,
        .dropped = atomic_load_explicit(&sh->tail.dropped, memory_order_relaxed),
        .rejected_full = atomic_load_explicit(&sh->tail.rejected_full, memory_order_relaxed),
        .high_water = atomic_load_explicit(&sh->tail.high_water, memory_order_relaxed),
        .repairs = atomic_load_explicit(&sh->repairs, memory_order_relaxed),
        .corruptions = atomic_load_explicit(&sh->corruptions, memory_order_relaxed),
        .total_size = t.index == h.index ? 0 : t.bytes - h.bytes,
        .duration = t.index == h.index ? MBQ_TIME_ZERO
                                       : mbq_time_subtract(t.duration, h.duration),
        .end_of_data = atomic_load_explicit(&sh->flags, memory_order_relaxed) &
                       BQ_F_END_OF_DATA,
    };
    return 0;
}

/* ---- lock-free views for the library and mbqd ---- */

uint32_t bq_nonce(const struct bq *q)
{
    return READ_ONCE(q->sh->nonce);
}

uint64_t bq_progress(const struct bq *q)
{
    return (uint64_t)atomic_load_explicit(&q->sh->tail.seq, memory_order_relaxed) +
           atomic_load_explicit(&q->sh->head.seq, memory_order_relaxed) +
           atomic_load_explicit(&q->sh->trigger_gen, memory_order_relaxed);
}

uint32_t bq_waiter_owner(const struct bq *q, unsigned i)
{
    return i < BQ_WAITER_SLOTS ? atomic_load_explicit(&q->sh->waiter_tid[i], memory_order_relaxed)
                               : 0;
}
