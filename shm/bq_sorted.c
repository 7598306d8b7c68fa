/* Sorted queues: the settle that puts appended entries in order, and the
 * journalled shift that both it and an in-place insertion use.
 *
 * Role: everything that moves an entry of a sorted queue from one slot to
 * another (bq_repair_locked excepted, which rolls these moves forward).
 *
 * Invariants, for a sorted queue, with the head lock held:
 *  - the entries in [head, head.order_mark) are in key order, stable among
 *    equal keys (by seq); order_mark is a hint: out of range, everything
 *    from head is checked again, never trusted;
 *  - producers only append at tail and beyond (under the tail lock), and
 *    only entries below the settler's view of tail move, so a settle and an
 *    append never touch the same slot;
 *  - every move is journalled before its first slot changes (journal.moves
 *    bumped by 2, then active, then the slots), so that a death half-way is
 *    rolled forward and a lock-free reader of the slots (bq_count_refs)
 *    can tell that an entry may have moved under it;
 *  - journal.progress only falls, from the index moved towards pos: the
 *    slots above it are already shifted.
 * Limits: an entry below its predecessor costs a shift of the entries
 * between its place and its index (O(n) for input in reverse order; nothing
 * for in-order input). */
#include "bq_internal.h"

/* Moves the entries [pos, from) up one slot and writes the journal's entry
 * (the caller fills it) at pos, journalled as kind with ops so that a death
 * half-way is rolled forward (bq_repair_locked). The journal stays active:
 * the caller clears it once the step it belongs to is complete. */
void journal_shift_in(struct bq *q, uint32_t kind, uint64_t from, uint64_t pos,
                             uint64_t ops)
{
    struct bq_journal *j = &q->sh->journal;
    j->pos = pos;
    j->tail = from;
    j->ops = ops;
    atomic_store_explicit(&j->progress, from, memory_order_relaxed);
    /* moves first, then active, then the slots (bq_count_refs) */
    atomic_store_explicit(&j->moves, atomic_load_explicit(&j->moves, memory_order_relaxed) + 2,
                          memory_order_relaxed);
    atomic_store_explicit(&j->active, kind, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (uint64_t k = from; k != pos; k--) {
        slot_move(q, k, k - 1);
        atomic_store_explicit(&j->progress, k - 1, memory_order_release);
    }
    bq_slot_write(q, pos, &j->entry);
}

/* Sorted queues: puts the entries appended since the last call in order,
 * so that the head is the least. Call with the head lock held, head and
 * tail range-checked, tail no later than the real one (a consumer's view).
 *
 * Producers only append (under the tail lock), so they never wait for the
 * consumer; whoever holds the head lock moves each entry that arrived below
 * its predecessor down past the larger keys — nothing for in-order input, a
 * short shift for mostly-ordered input. Only entries below tail move, and
 * producers write only at tail and beyond, so the two never meet. The move
 * is journalled (BQ_JOURNAL_SETTLE) and rolled forward if the mover dies.
 * head.order_mark records how far the entries are in order; it is only a
 * hint (out of range: everything from head is checked again). */
void bq_settle_sorted(struct bq *q, uint64_t head, uint64_t tail)
{
    struct bq_shared *sh = q->sh;
    uint64_t s = atomic_load_explicit(&sh->head.order_mark, memory_order_relaxed);
    if (s - head > tail - head) {
        /* Beyond our view of tail: another consumer saw further and
         * settled up to s, which covers our view — unless s is not below
         * the real tail either (a scribble): then check everything. */
        if (s - head <= q->capacity && s - head <= load_index(&sh->tail) - head)
            return;
        s = head;
    }
    if (s == tail)
        return;
    if (s == head)
        s++; /* the head alone is in order */
    for (; s != tail; s++) {
        /* the common case judged on the slots' raw values (slot_in_order);
         * else the keys compared in full. The entry at s - 1 is always the
         * largest key so far: after a shift it is the one moved up. */
        if (__builtin_expect(slot_in_order(q, s), 1))
            continue;
        mbq_time key = slot_key(q, s), prev = slot_key(q, s - 1);
        if (key_compare(&key, &prev) >= 0)
            continue;
        bq_slot_read(q, s, &sh->journal.entry);
        journal_shift_in(q, BQ_JOURNAL_SETTLE, s, sorted_position(q, &key, s - 1, head), 0);
        /* [head, s] is in order now. Say so before the journal lets go: the
         * entry at s + 1 may be below the largest key just moved up to s
         * although no producer noted it (it was not below its own
         * predecessor), which the repair accepts only at order_mark. A
         * death before this store leaves the journal active, and the
         * repair's roll-forward sets the mark instead. */
        atomic_store_explicit(&sh->head.order_mark, s + 1, memory_order_relaxed);
        atomic_store_explicit(&sh->journal.active, 0, memory_order_release);
    }
    atomic_store_explicit(&sh->head.order_mark, tail, memory_order_relaxed);
}
