/* Repair of a buffer queue: whatever a dead process or a scribbler left
 * behind, brought back to a consistent queue under both locks.
 *
 * Role: bq_repair_locked (run by bq_lock_full when a lock came back from a
 * dead owner, the queue was marked for repair, or its counters are out of
 * range), bq_check, and the breaking of a lock whose owner does not answer.
 *
 * What a consistent queue is — the invariants the repair restores, each in
 * one step of its own:
 *  - no journalled move is half done: an insertion or settle left active is
 *    rolled forward, or reported if its record does not fit the counters
 *    (repair_journal);
 *  - a FIFO entry whose publish mark is stored is in the queue: a producer
 *    that died between the mark and the tail store has its append
 *    completed (repair_fifo_publish);
 *  - 0 <= tail - head <= capacity; counters out of range cannot locate the
 *    contents, which are dropped and reported, both indices moved on past
 *    any value a process may have cached (repair_counters);
 *  - a sorted queue's entries are in key order from head, except where a
 *    producer appended one out of order since the last settle (order_mark
 *    on either side); any other inversion is a scribble, reported, and the
 *    entries are sorted again (repair_order);
 *  - each side's sums are those of the live entries (the head side's are
 *    zero, the tail side's the live entries' sums), rewritten with both
 *    sequence counters odd (repair_sums);
 *  - every installed trigger has a known condition and a 0/1 level, the
 *    count matches the table, and the derived words are recomputed
 *    (repair_triggers).
 * The repair moves entries, so it runs with journal.moves odd (see
 * bq_count_refs). It never follows an index it has not range-checked.
 * Limits: restoring the order needs memory for a copy of the entries; out
 * of memory, the order is left for bq_settle (the queue stays usable). */
#include "bq_internal.h"

#include <mbq/status.h>

#include <errno.h>
#include <stdlib.h>

static int cmp_entry_seq(const void *a, const void *b, void *arg)
{
    const struct bq *q = arg;
    const struct bq_entry *x = a, *y = b;
    if (q) {
        int32_t c = mbq_time_compare(entry_key(q, x), entry_key(q, y));
        if (c)
            return c;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void bq_repair_entries_locked(struct bq *q);

/* Runs with both locks held. Brings the queue back to a consistent state
 * whatever a dead process or a scribbler left behind. It moves entries, so
 * it runs with journal.moves odd (see bq_count_refs). */
void bq_repair_locked(struct bq *q)
{
    _Atomic uint32_t *m = &q->sh->journal.moves;
    atomic_store_explicit(m, atomic_load_explicit(m, memory_order_relaxed) | 1,
                          memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    bq_repair_entries_locked(q);
    atomic_store_explicit(m, (atomic_load_explicit(m, memory_order_relaxed) | 1) + 1,
                          memory_order_release);
}

/* Step 1a: a settle that died half-way (a consumer moving the entry at
 * journal.tail down to journal.pos; tail does not change): finish the
 * shift from where its progress says. Returns true if the record does not
 * fit the counters (reported; the entries stay where they are). */
static bool repair_settle_journal(struct bq *q, uint64_t head, uint64_t tail)
{
    struct bq_journal *j = &q->sh->journal;
    uint64_t jt = j->tail, pos = j->pos;
    uint64_t prog = atomic_load_explicit(&j->progress, memory_order_relaxed);
    if (!(bq_range_ok(q, head, tail) && jt - head < tail - head && pos - head <= jt - head &&
          prog - pos <= jt - pos))
        return true;
    for (uint64_t k = prog; k != pos; k--)
        slot_move(q, k, k - 1);
    bq_slot_write(q, pos, &j->entry);
    /* the settle had [head, jt) in order and now [head, jt] is: the entry
     * past jt may be below the key moved up to jt, unnoted, which
     * repair_order accepts only at the mark */
    atomic_store_explicit(&q->sh->head.order_mark, jt + 1, memory_order_relaxed);
    return false;
}

/* Step 1b: a sorted insertion that died half-way (a producer shifting
 * [pos, tail) up to put its entry at pos): if tail has not moved yet,
 * finish the shift and publish the entry, counted from the ops the journal
 * recorded before it began (the dead writer may or may not have counted
 * it). Returns true if the record does not fit the counters. */
static bool repair_insert_journal(struct bq *q, uint64_t head, uint64_t *tail)
{
    struct bq_shared *sh = q->sh;
    struct bq_journal *j = &sh->journal;
    uint64_t jt = j->tail, pos = j->pos;
    uint64_t prog = atomic_load_explicit(&j->progress, memory_order_relaxed);
    if (*tail == jt + 1)
        return false; /* published already */
    if (!(*tail == jt && bq_range_ok(q, head, jt) && jt - head < q->capacity &&
          pos - head <= jt - head && prog - pos <= jt - pos))
        return true;
    for (uint64_t k = prog; k != pos; k--)
        slot_move(q, k, k - 1);
    bq_slot_write(q, pos, &j->entry);
    *tail = jt + 1;
    atomic_store_explicit(&sh->tail.ops, j->ops + 1, memory_order_relaxed);
    if (*tail - head > atomic_load_explicit(&sh->tail.high_water, memory_order_relaxed))
        atomic_store_explicit(&sh->tail.high_water, *tail - head, memory_order_relaxed);
    atomic_store_explicit(&sh->tail.index, *tail, memory_order_release);
    return false;
}

/* Step 1: rolls a journalled sorted insertion (or settling move) forward
 * and clears the journal. Returns true if it had to be reported. */
static bool repair_journal(struct bq *q, uint64_t head, uint64_t *tail)
{
    struct bq_journal *j = &q->sh->journal;
    uint32_t kind = atomic_load_explicit(&j->active, memory_order_acquire);
    if (!kind)
        return false;
    bool corrupt = kind == BQ_JOURNAL_SETTLE ? repair_settle_journal(q, head, *tail)
                                             : repair_insert_journal(q, head, tail);
    atomic_store_explicit(&j->active, 0, memory_order_release);
    return corrupt;
}

/* Step 2: a FIFO producer that died between storing its entry's publish
 * mark (which consumers act on at once: consumer_tail) and moving tail: the
 * entry is in the queue, and a consumer may have taken it already (head
 * one past tail). Complete the append, so that the next producer does not
 * write over it (losing its reference) and head never moves back over it
 * (handing it out twice). */
static void repair_fifo_publish(struct bq *q, uint64_t head, uint64_t *tail)
{
    struct bq_shared *sh = q->sh;
    uint64_t t = *tail;
    if (q->order != BQ_ORDER_FIFO ||
        __atomic_load_n(&q->slots[t & q->mask].seq, __ATOMIC_ACQUIRE) != t + 1 ||
        !(head == t + 1 || t - head < q->capacity))
        return;
    MBQ_TRACE((uint32_t)q->slots[t & q->mask].handle - 1, TR_COMPLETE,
              q->slots[t & q->mask].handle, BQ_TAG(q) | t << 16);
    *tail = ++t;
    atomic_store_explicit(&sh->tail.ops,
                          atomic_load_explicit(&sh->tail.ops, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&sh->tail.index, t, memory_order_release);
}

/* Step 3: counters out of range cannot locate the contents: drop them,
 * both indices set to one value past every value either may have had
 * before the scribble. Returns true if it had to.
 * Why not head = tail: the indices only grow, and each process keeps a
 * copy of the other side's (head_cache, tail_cache) trusted to lag. A tail
 * scribbled backwards (tail 2 under head 10) would move head back with it,
 * and a consumer's cached tail from before (up to head + capacity) would
 * then show entries in slots the queue no longer holds: an enqueued entry
 * is passed over for a stale one and head runs past tail. Of the two
 * indices the one further on (in wraparound order) is at least the true
 * head, and the true tail was at most capacity past it, so every cached
 * copy lags the new value. */
static bool repair_counters(struct bq *q, uint64_t *head, uint64_t *tail)
{
    if (bq_range_ok(q, *head, *tail))
        return false;
#ifdef MBQ_POOL_TRACE
    for (uint64_t di = *head; di != *tail && di - *head < 64; di++)
        MBQ_TRACE((uint32_t)q->slots[di & q->mask].handle - 1, TR_DROPALL,
                  q->slots[di & q->mask].handle, BQ_TAG(q) | di << 16);
#endif
    uint64_t top = (int64_t)(*tail - *head) < 0 ? *head : *tail;
    *head = *tail = top + q->capacity;
    atomic_store_explicit(&q->sh->tail.index, *tail, memory_order_release);
    atomic_store_explicit(&q->sh->head.index, *head, memory_order_release);
    return true;
}

/* Whether the n entries from head are in order; *corrupt when an inversion
 * sits where no producer could have left one: entries appended since the
 * last settle may be out of order, but only where a producer noted it (see
 * bq_settle) — at the first unsettled index, or below the tail side's
 * mark. */
static bool repair_order_scan(struct bq *q, uint64_t head, uint64_t n, bool *corrupt)
{
    struct bq_shared *sh = q->sh;
    uint64_t settled = atomic_load_explicit(&sh->head.order_mark, memory_order_relaxed);
    uint64_t ooo_end = atomic_load_explicit(&sh->tail.order_mark, memory_order_relaxed);
    if (settled - head > n)
        settled = head;
    if (ooo_end - head > n + 1) /* tail + 1: a producer died appending */
        ooo_end = head;
    bool sorted = true;
    struct bq_entry a, b;
    bq_slot_read(q, head, &b);
    for (uint64_t i = head + 1; i - head < n; i++) {
        a = b;
        bq_slot_read(q, i, &b);
        if (cmp_entry_seq(&a, &b, q) <= 0)
            continue;
        sorted = false;
        if (i - head < settled - head || (i != settled && i - head >= ooo_end - head)) {
            *corrupt = true;
            break;
        }
    }
    return sorted;
}

/* Sorts the n entries from head by key, then seq. False if out of memory. */
static bool repair_order_sort(struct bq *q, uint64_t head, uint64_t n)
{
    struct bq_entry *tmp = malloc(n * sizeof(*tmp));
    if (!tmp)
        return false;
    for (uint64_t i = 0; i < n; i++)
        bq_slot_read(q, head + i, &tmp[i]);
    qsort_r(tmp, n, sizeof(*tmp), cmp_entry_seq, q);
    for (uint64_t i = 0; i < n; i++)
        bq_slot_write(q, head + i, &tmp[i]);
    free(tmp);
    return true;
}

/* Step 4 (sorted queues): the entries in order, the whole queue settled,
 * and the tail side's last key that of the last entry (a producer that
 * died mid-append may have left another). Returns true if an inversion
 * was a scribble. */
static bool repair_order(struct bq *q, uint64_t head, uint64_t tail)
{
    if (q->order == BQ_ORDER_FIFO)
        return false;
    struct bq_shared *sh = q->sh;
    uint64_t n = tail - head;
    bool corrupt = false;
    if (n > 1) {
        bool sorted = repair_order_scan(q, head, n, &corrupt);
        if (!sorted)
            sorted = repair_order_sort(q, head, n);
        if (sorted) /* else out of memory: left for bq_settle */
            atomic_store_explicit(&sh->head.order_mark, tail, memory_order_relaxed);
    }
    if (n)
        sh->tail.last_key = slot_key(q, tail - 1);
    return corrupt;
}

/* Step 5: the side sums rebuilt from the live entries — the head side's
 * zero, the tail side's those of [head, tail) — written with both
 * sequence counters odd, so that no reader takes a half-written pair. */
static void repair_sums(struct bq *q, uint64_t head, uint64_t tail)
{
    struct bq_shared *sh = q->sh;
    uint64_t bytes = 0;
    mbq_time dur = MBQ_TIME_ZERO;
    for (uint64_t i = head; i != tail; i++) {
        bytes += q->slots[i & q->mask].size;
        dur = duration_accumulate(dur, slot_time(q, i, SLOT_DURATION));
    }
    uint32_t hs = atomic_load_explicit(&sh->head.seq, memory_order_relaxed);
    uint32_t ts = atomic_load_explicit(&sh->tail.seq, memory_order_relaxed);
    atomic_store_explicit(&sh->head.seq, (hs | 1) + 0, memory_order_relaxed);
    atomic_store_explicit(&sh->tail.seq, (ts | 1) + 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&sh->head.bytes, 0, memory_order_relaxed);
    side_duration_store(&sh->head, MBQ_TIME_ZERO);
    atomic_store_explicit(&sh->tail.bytes, bytes, memory_order_relaxed);
    side_duration_store(&sh->tail, dur);
    atomic_store_explicit(&sh->head.seq, (hs | 1) + 1, memory_order_release);
    atomic_store_explicit(&sh->tail.seq, (ts | 1) + 1, memory_order_release);
}

/* Step 6: the trigger table — a slot in an unknown state, with an unknown
 * condition or a level other than 0/1 is freed (reported), the count made
 * to match, and the derived words recomputed. Returns true if a slot was
 * freed. */
static bool repair_triggers(struct bq *q)
{
    struct bq_shared *sh = q->sh;
    bool corrupt = false;
    uint32_t count = 0;
    for (int i = 0; i < BQ_MAX_TRIGGERS; i++) {
        struct bq_trigger *t = &sh->triggers[i];
        uint32_t st = atomic_load_explicit(&t->state, memory_order_relaxed);
        if (st == 0)
            continue;
        if (st != 1 || t->condition < 1 || t->condition > 12 || t->level > 1) {
            atomic_store_explicit(&t->state, 0, memory_order_relaxed);
            corrupt = true;
            continue;
        }
        count++;
    }
    if (atomic_load_explicit(&sh->trigger_count, memory_order_relaxed) != count) {
        atomic_store_explicit(&sh->trigger_count, count, memory_order_relaxed);
        atomic_fetch_add_explicit(&sh->trigger_gen, 1, memory_order_relaxed);
    }
    trig_sides_locked(q);
    return corrupt;
}

/* The steps in order: each may rely on the ones before it (the journal
 * rolled forward before the counters are judged, the counters in range
 * before any entry is read). */
static void bq_repair_entries_locked(struct bq *q)
{
    struct bq_shared *sh = q->sh;
    uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&sh->tail.index, memory_order_relaxed);
    bool corrupt = repair_journal(q, head, &tail);
    repair_fifo_publish(q, head, &tail);
    corrupt |= repair_counters(q, &head, &tail);
    corrupt |= repair_order(q, head, tail);
    repair_sums(q, head, tail);
    corrupt |= repair_triggers(q);

    uint32_t f = atomic_load_explicit(&sh->flags, memory_order_relaxed);
    atomic_store_explicit(&sh->flags, f & (BQ_F_END_OF_DATA | BQ_F_PRODUCER_LOST),
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->repairs, 1, memory_order_relaxed);
    if (corrupt)
        atomic_fetch_add_explicit(&sh->corruptions, 1, memory_order_relaxed);
}

/* ---- locks others hold ----------------------------------------------------- */

int bq_lock_owners(const struct bq *q, uint32_t owner[BQ_LOCKS])
{
    if (!q || !q->sh)
        return -EINVAL;
    const struct bq_side *side[2] = {&q->sh->tail, &q->sh->head};
    for (int i = 0; i < 2; i++) {
        const struct bslock *b = &side[i]->lock;
        owner[2 * i] = slock_owner(&b->lock);
        /* A bias names who is inside only while busy is set (revoked or
         * not); a clear bias with busy set is a holder backing out, and
         * stops nobody. */
        uint32_t bias = atomic_load_explicit(&((struct bslock *)b)->bias, memory_order_relaxed);
        owner[2 * i + 1] = atomic_load_explicit(&((struct bslock *)b)->busy, memory_order_relaxed)
                               ? bias & SLOCK_TID_MASK
                               : 0;
    }
    return 0;
}

int bq_break_lock(struct bq *q, int which, uint32_t owner)
{
    if (!q || !q->sh || which < 0 || which >= BQ_LOCKS || owner == 0)
        return -EINVAL;
    struct bslock *b = which < 2 ? &q->sh->tail.lock : &q->sh->head.lock;
    if (which % 2 == 0) {
        if (slock_take_from(&b->lock, owner) != SLOCK_RECOVERED)
            return 0;
        bq_mark_repair(q); /* whatever the owner did under it */
        slock_unlock(&b->lock);
    } else {
        /* The bias: busy, written by the holder only, is given up for it.
         * The bias word names owner, revoked or not (a revoker holding the
         * slock may be waiting for owner to leave: clearing busy lets it in).
         * A bias granted to anyone else since names that one: left alone. */
        uint32_t bias = atomic_load_explicit(&b->bias, memory_order_relaxed);
        if (!atomic_load_explicit(&b->busy, memory_order_relaxed) ||
            (bias & SLOCK_TID_MASK) != owner ||
            !atomic_compare_exchange_strong_explicit(&b->bias, &bias, owner | BSLOCK_REVOKED,
                                                     memory_order_relaxed, memory_order_relaxed))
            return 0;
        bq_mark_repair(q);
        atomic_store_explicit(&b->busy, 0, memory_order_release);
    }
    /* The repair runs under both locks: now, if they can be had at once. */
    uint64_t prev = slock_set_deadline(mono_ns()); /* do not wait */
    struct bq_held h;
    if (bq_lock_full(q, &h) == 0)
        bq_unlock_full(q, h);
    slock_set_deadline(prev);
    return 1;
}

/* ---- checking ------------------------------------------------------------- */

int bq_check(struct bq *q)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    uint64_t before = atomic_load_explicit(&q->sh->corruptions, memory_order_relaxed);
    bq_mark_repair(q);
    struct bq_held held;
    int lr = bq_lock_full(q, &held);
    if (lr < 0)
        return lr;
    bq_unlock_full(q, held);
    return atomic_load_explicit(&q->sh->corruptions, memory_order_relaxed) == before ? 0
                                                                                    : -EUCLEAN;
}
