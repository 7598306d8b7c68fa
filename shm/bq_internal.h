/* What the parts of the buffer queue share (bq.c, bq_sorted.c, bq_trigger.c,
 * bq_inspect.c, bq_wait.c, bq_repair.c): known to those files alone.
 *
 * Role: the queue's private vocabulary — how an entry is stored in a slot
 * and read back, each side's running sums under its sequence counter, the
 * lock helpers, and the prototypes by which one part calls another. What
 * the fast path (enqueue, dequeue) calls is here as static inline, so that
 * splitting the queue into files costs it no call: the rule for this header
 * is that nothing a FIFO enqueue or dequeue runs without triggers lives in
 * another translation unit.
 *
 * Invariants these helpers keep (for the whole list see bq.c):
 *  - a slot is written by slot_store only, every field first and seq last
 *    with release (the FIFO publish mark, see consumer_tail); a FIFO run
 *    stores it with the slot's previous mark and sets the marks after its
 *    index (bq.c, run_place_locked);
 *  - a side's sums change only between side_begin and side_end, and its
 *    index last, with release (side_pass);
 *  - a counter pair read from the segment indexes nothing before
 *    bq_range_ok said yes (tail_seen is the one allowed excess: a FIFO
 *    consumer one past the tail index, which is an empty queue). */
#ifndef MBQ_SHM_BQ_INTERNAL_H
#define MBQ_SHM_BQ_INTERNAL_H

#include "bq_layout.h"

#include "futex.h"
#include "trace.h"

#include "common/macro.h" /* READ_ONCE */

#include <sched.h>
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#endif
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Functions one part of the queue calls in another: hidden, so that they
 * stay out of libmbq's symbol table and the compiler may inline them in
 * their own file (a default-visibility function in position-independent
 * code is interposable, and is then never inlined). */
#define BQ_INTERNAL __attribute__((visibility("hidden")))

/* ---- times ---------------------------------------------------------------- */

static inline mbq_time side_duration_load(const struct bq_side *s)
{
    uint64_t sf = atomic_load_explicit(&s->dur_scale_flags, memory_order_relaxed);
    return (mbq_time){
        .value = atomic_load_explicit(&s->dur_value, memory_order_relaxed),
        .timescale = (int32_t)(uint32_t)sf,
        .flags = (uint32_t)(sf >> 32),
        .epoch = atomic_load_explicit(&s->dur_epoch, memory_order_relaxed),
    };
}

static inline void side_duration_store(struct bq_side *s, mbq_time t)
{
    atomic_store_explicit(&s->dur_value, t.value, memory_order_relaxed);
    atomic_store_explicit(&s->dur_scale_flags,
                          (uint64_t)(uint32_t)t.timescale | (uint64_t)t.flags << 32,
                          memory_order_relaxed);
    atomic_store_explicit(&s->dur_epoch, t.epoch, memory_order_relaxed);
}

/* sum + d, where a non-numeric d counts as zero. The common case — equal
 * timescales, epoch 0, no overflow — stays out of mbq_time_add. */
static inline mbq_time duration_accumulate(mbq_time sum, mbq_time d)
{
    if (!mbq_time_is_numeric(d))
        return sum;
    int64_t v;
    if (sum.timescale == d.timescale && sum.epoch == 0 && d.epoch == 0 &&
        sum.flags == MBQ_TIME_FLAG_VALID && d.flags == MBQ_TIME_FLAG_VALID &&
        !__builtin_add_overflow(sum.value, d.value, &v)) {
        sum.value = v;
        return sum;
    }
    if (!mbq_time_is_numeric(sum))
        sum = MBQ_TIME_ZERO;
    return mbq_time_add(sum, d);
}

static inline mbq_time entry_key(const struct bq *q, const struct bq_entry *e)
{
    return q->order == BQ_ORDER_DTS ? e->dts : e->pts;
}

/* mbq_time_compare, with the common case — both plain numeric values on
 * the same timescale and epoch — compared in line. */
static inline int32_t key_compare(const mbq_time *a, const mbq_time *b)
{
    if (__builtin_expect(a->flags == MBQ_TIME_FLAG_VALID && b->flags == MBQ_TIME_FLAG_VALID &&
                             a->timescale == b->timescale && a->timescale > 0 &&
                             a->epoch == b->epoch,
                         1))
        return (a->value > b->value) - (a->value < b->value);
    return mbq_time_compare(*a, *b);
}

/* ---- slots: entries as stored (see struct bq_slot) ------------------------- */

/* Whether t can be stored compact with the slot's timescale *ts (which the
 * first time with a timescale sets). */
static inline bool time_fits(const mbq_time *t, int32_t *ts)
{
    if (t->epoch != 0 || t->flags >= BQ_SLOT_TS_ZERO)
        return false;
    if (t->timescale == 0 || t->timescale == *ts)
        return true;
    if (*ts != 0)
        return false;
    *ts = t->timescale;
    return true;
}

static inline uint8_t time_flags_byte(const mbq_time *t)
{
    return (uint8_t)(t->flags | (t->timescale == 0 ? BQ_SLOT_TS_ZERO : 0));
}

static inline mbq_time time_unpack(int64_t value, int32_t ts, uint8_t f)
{
    return (mbq_time){.value = value,
                      .timescale = f & BQ_SLOT_TS_ZERO ? 0 : ts,
                      .flags = f & (BQ_SLOT_TS_ZERO - 1),
                      .epoch = 0};
}

static inline bool attachments_zero(const uint8_t *a)
{
    uint64_t w[3];
    memcpy(w, a, sizeof(w));
    return (w[0] | w[1] | w[2]) == 0;
}

/* Whether e's three times are plain: one timescale ts (not 0) for all,
 * epoch 0, flags below BQ_SLOT_TS_ZERO — the common case, which a slot
 * stores and gives back with no work per time (a media stream's times all
 * share its timescale). */
static inline bool times_plain(const struct bq_entry *e, int32_t ts)
{
    return ts != 0 && e->pts.timescale == ts && e->duration.timescale == ts &&
           (e->dts.epoch | e->pts.epoch | e->duration.epoch) == 0 &&
           (e->dts.flags | e->pts.flags | e->duration.flags) < BQ_SLOT_TS_ZERO;
}

/* A queue's tag in the trace (shm/trace.h): its order and capacity. */
#define BQ_TAG(q) ((uint64_t)((q)->order | (q)->capacity << 4) & 0xfff)

/* Stores e at index i with the given seq (e->seq is ignored): every field
 * straight into the slot, in one burst, then seq with release — a FIFO
 * consumer polls the slot's mark (see consumer_tail). (Built in a local
 * first and copied, the slot cost a store-forwarding stall per 16 bytes.) */
static inline void slot_store(struct bq *q, uint64_t i, const struct bq_entry *e, uint64_t seq)
{
    MBQ_TRACE((uint32_t)e->handle - 1, TR_PUB, e->handle,
              BQ_TAG(q) | i << 16 | (uint64_t)(seq == i + 1) << 12);
    struct bq_slot *sl = &q->slots[i & q->mask];
    int32_t ts = e->dts.timescale;
    uint8_t df, pf, uf, wide = 0;
    if (__builtin_expect(times_plain(e, ts) && attachments_zero(e->attachments), 1)) {
        /* the flags as they are: below BQ_SLOT_TS_ZERO, timescale not 0 */
        df = (uint8_t)e->dts.flags;
        pf = (uint8_t)e->pts.flags;
        uf = (uint8_t)e->duration.flags;
    } else {
        ts = 0;
        bool compact = time_fits(&e->dts, &ts) && time_fits(&e->pts, &ts) &&
                       time_fits(&e->duration, &ts) && attachments_zero(e->attachments);
        if (__builtin_expect(!compact, 0)) {
            struct bq_wide *w = &q->wide[i & q->mask];
            w->dts = e->dts;
            w->pts = e->pts;
            w->duration = e->duration;
            memcpy(w->attachments, e->attachments, sizeof(w->attachments));
            wide = BQ_SLOT_WIDE;
        }
        df = time_flags_byte(&e->dts);
        pf = time_flags_byte(&e->pts);
        uf = time_flags_byte(&e->duration);
    }
    sl->handle = e->handle;
    sl->dts = e->dts.value;
    sl->pts = e->pts.value;
    sl->duration = e->duration.value;
    sl->size = e->size;
    sl->pool_id = e->pool_id;
    sl->flags = e->flags;
    sl->timescale = ts;
    sl->dts_flags = df;
    sl->pts_flags = pf;
    sl->duration_flags = uf;
    sl->wide = wide;
    __atomic_store_n(&sl->seq, seq, __ATOMIC_RELEASE);
}

/* Reads entry i (every field; e->seq as stored). A compact slot whose times
 * all have the slot's timescale (no BQ_SLOT_TS_ZERO flag) is copied out
 * without unpacking each time. */
static inline void slot_read(const struct bq *q, uint64_t i, struct bq_entry *out)
{
    const struct bq_slot *sl = &q->slots[i & q->mask];
    out->handle = sl->handle;
    out->seq = sl->seq;
    out->size = sl->size;
    out->pool_id = sl->pool_id;
    out->flags = sl->flags;
    uint8_t df = sl->dts_flags, pf = sl->pts_flags, uf = sl->duration_flags;
    if (__builtin_expect(READ_ONCE(sl->wide) != BQ_SLOT_WIDE, 1)) {
        int32_t ts = sl->timescale;
        if (__builtin_expect(((df | pf | uf) & BQ_SLOT_TS_ZERO) == 0, 1)) {
            out->dts = (mbq_time){.value = sl->dts, .timescale = ts, .flags = df};
            out->pts = (mbq_time){.value = sl->pts, .timescale = ts, .flags = pf};
            out->duration = (mbq_time){.value = sl->duration, .timescale = ts, .flags = uf};
        } else {
            out->dts = time_unpack(sl->dts, ts, df);
            out->pts = time_unpack(sl->pts, ts, pf);
            out->duration = time_unpack(sl->duration, ts, uf);
        }
        memset(out->attachments, 0, sizeof(out->attachments));
    } else {
        const struct bq_wide *w = &q->wide[i & q->mask];
        out->dts = w->dts;
        out->pts = w->pts;
        out->duration = w->duration;
        memcpy(out->attachments, w->attachments, sizeof(out->attachments));
    }
}

/* Moves entry src to slot dst, wide part included. */
static inline void slot_move(struct bq *q, uint64_t dst, uint64_t src)
{
    MBQ_TRACE((uint32_t)q->slots[src & q->mask].handle - 1, TR_MOVE, q->slots[src & q->mask].handle,
              BQ_TAG(q) | dst << 16);
    q->slots[dst & q->mask] = q->slots[src & q->mask];
    if (q->slots[dst & q->mask].wide == BQ_SLOT_WIDE)
        q->wide[dst & q->mask] = q->wide[src & q->mask];
}

/* A time of entry i, without reading the rest. */
enum slot_time { SLOT_DTS, SLOT_PTS, SLOT_DURATION };

static inline mbq_time slot_time(const struct bq *q, uint64_t i, enum slot_time which)
{
    const struct bq_slot *sl = &q->slots[i & q->mask];
    if (__builtin_expect(sl->wide != BQ_SLOT_WIDE, 1)) {
        int32_t ts = sl->timescale;
        switch (which) {
        case SLOT_DTS: return time_unpack(sl->dts, ts, sl->dts_flags);
        case SLOT_PTS: return time_unpack(sl->pts, ts, sl->pts_flags);
        default: return time_unpack(sl->duration, ts, sl->duration_flags);
        }
    }
    const struct bq_wide *w = &q->wide[i & q->mask];
    return which == SLOT_DTS ? w->dts : which == SLOT_PTS ? w->pts : w->duration;
}

/* The sort key of entry i (absolute index) of a sorted queue. */
static inline mbq_time slot_key(const struct bq *q, uint64_t i)
{
    return slot_time(q, i, q->order == BQ_ORDER_DTS ? SLOT_DTS : SLOT_PTS);
}

/* Whether entry i of a sorted queue is in order after entry i - 1 as far as
 * the slots alone tell: both compact, their keys plain valid values on one
 * positive timescale, and i's not below. False means "compare the keys"
 * (slot_key), not "out of order". */
static inline bool slot_in_order(const struct bq *q, uint64_t i)
{
    const struct bq_slot *a = &q->slots[(i - 1) & q->mask], *b = &q->slots[i & q->mask];
    bool dts = q->order == BQ_ORDER_DTS;
    uint8_t fa = dts ? a->dts_flags : a->pts_flags, fb = dts ? b->dts_flags : b->pts_flags;
    if (READ_ONCE(a->wide) == BQ_SLOT_WIDE || READ_ONCE(b->wide) == BQ_SLOT_WIDE ||
        fa != MBQ_TIME_FLAG_VALID || fb != MBQ_TIME_FLAG_VALID || a->timescale <= 0 ||
        a->timescale != b->timescale)
        return false;
    return (dts ? b->dts : b->pts) >= (dts ? a->dts : a->pts);
}

/* ---- sides: running sums under a sequence counter ------------------------- */

struct side_snap {
    uint64_t index, bytes, ops;
    mbq_time duration;
};

static inline void side_begin(struct bq_side *s)
{
    uint32_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, v + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static inline void side_end(struct bq_side *s)
{
    uint32_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, v + 1, memory_order_release);
}

/* Adds d to the side's duration sum. The common case — both numeric with
 * the same timescale and epoch 0, no overflow — touches only the value word
 * and builds no mbq_time on the stack (passing those by value costs a
 * store-forwarding stall per field here). */
static inline void side_add_duration(struct bq_side *s, const mbq_time *d)
{
    uint64_t sf = atomic_load_explicit(&s->dur_scale_flags, memory_order_relaxed);
    int64_t v = atomic_load_explicit(&s->dur_value, memory_order_relaxed), sum;
    /* d's timescale and flags as the sum stores them: equal to the sum's
     * and VALID, with a positive timescale, is one compare and a sign test */
    uint64_t dsf = (uint64_t)(uint32_t)d->timescale | (uint64_t)d->flags << 32;
    if (__builtin_expect(dsf == sf && (uint32_t)(sf >> 32) == MBQ_TIME_FLAG_VALID &&
                             (int32_t)(uint32_t)sf > 0 &&
                             (d->epoch | atomic_load_explicit(&s->dur_epoch,
                                                              memory_order_relaxed)) == 0 &&
                             !__builtin_add_overflow(v, d->value, &sum),
                         1)) {
        atomic_store_explicit(&s->dur_value, sum, memory_order_relaxed);
        return;
    }
    side_duration_store(s, duration_accumulate(side_duration_load(s), *d));
}

/* Accounts for e passing side s and moves its index to new_index. */
static inline void side_pass(struct bq_side *s, const struct bq_entry *e, uint64_t new_index,
                             bool count_op)
{
    side_begin(s);
    atomic_store_explicit(&s->bytes, atomic_load_explicit(&s->bytes, memory_order_relaxed) +
                                         e->size,
                          memory_order_relaxed);
    side_add_duration(s, &e->duration);
    if (count_op)
        atomic_store_explicit(&s->ops, atomic_load_explicit(&s->ops, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    atomic_store_explicit(&s->index, new_index, memory_order_release);
    side_end(s);
}

/* side_pass for a run of n entries: the sums of all of them, and the
 * index moved once. */
/* Whether d can join a run's duration sum held in sum: both plain
 * non-negative values of one timescale and epoch 0, no overflow. Adding
 * such values one by one or summed first gives the same result. */
static inline bool run_duration_join(mbq_time *sum, const mbq_time *d)
{
    int64_t v;
    if (d->flags != MBQ_TIME_FLAG_VALID || d->epoch != 0 || d->value < 0 ||
        d->timescale != sum->timescale || __builtin_add_overflow(sum->value, d->value, &v))
        return false;
    sum->value = v;
    return true;
}

static inline void side_pass_run(struct bq_side *s, const struct bq_entry *e, uint32_t n,
                                 uint64_t new_index)
{
    uint64_t bytes = 0;
    mbq_time sum = e[0].duration;
    bool joined = sum.flags == MBQ_TIME_FLAG_VALID && sum.epoch == 0 && sum.value >= 0 &&
                  sum.timescale > 0;
    for (uint32_t i = 0; i < n; i++) {
        bytes += e[i].size;
        if (i > 0 && joined)
            joined = run_duration_join(&sum, &e[i].duration);
    }
    side_begin(s);
    if (joined)
        side_add_duration(s, &sum);
    else
        for (uint32_t i = 0; i < n; i++)
            side_add_duration(s, &e[i].duration);
    atomic_store_explicit(&s->bytes, atomic_load_explicit(&s->bytes, memory_order_relaxed) +
                                         bytes,
                          memory_order_relaxed);
    atomic_store_explicit(&s->ops, atomic_load_explicit(&s->ops, memory_order_relaxed) + n,
                          memory_order_relaxed);
    atomic_store_explicit(&s->index, new_index, memory_order_release);
    side_end(s);
}

static inline uint64_t load_index(const struct bq_side *s)
{
    return atomic_load_explicit(&s->index, memory_order_acquire);
}

/* The tail as a reader without the tail lock may count on it, given the
 * head it read before. A FIFO consumer takes an entry as soon as its
 * publish mark is set, which its producer does before it moves the tail
 * index (see consumer_tail): until it does, head is one past the index.
 * That is an empty queue, not a corrupt one. (Only one producer publishes
 * at a time, so it is never more than one.) */
static inline uint64_t tail_seen(const struct bq *q, uint64_t head, uint64_t tail)
{
    return q->order == BQ_ORDER_FIFO && tail + 1 == head ? head : tail;
}

/* ---- locking and repair ------------------------------------------------- */

static inline void bq_mark_repair(struct bq *q)
{
    atomic_fetch_or_explicit(&q->sh->flags, BQ_F_NEEDS_REPAIR, memory_order_relaxed);
}

static inline bool bq_needs_repair(struct bq *q)
{
    return atomic_load_explicit(&q->sh->flags, memory_order_relaxed) & BQ_F_NEEDS_REPAIR;
}

/* How each side's lock is held (what bslock_lock returned); the unlock
 * needs it, and it lives on the caller's stack because threads share a
 * struct bq. */
struct bq_held {
    int tail, head;
};

/* Both locks, tail first, the queue repaired or settled (bq.c): 0 or
 * -EBUSY with neither held. */
BQ_INTERNAL int bq_lock_full(struct bq *q, struct bq_held *out);
BQ_INTERNAL void bq_unlock_full(struct bq *q, struct bq_held h);
/* What bq_lock_side does when the lock came back from a dead owner or the
 * queue is marked for repair (bq.c); r is what bslock_lock returned. */
BQ_INTERNAL int bq_lock_side_repair(struct bq *q, struct bq_side *s, int r);

/* One side's lock: how it is held, or -EBUSY. A lock recovered from a dead
 * owner (or a queue already marked for repair) is handed back and the
 * repair done under both locks in order, so the tail-then-head order is
 * never broken (bq_lock_side_repair). Inline: every enqueue and dequeue
 * takes one. */
static inline int bq_lock_side(struct bq *q, struct bq_side *s)
{
    int r = bslock_lock_inline(&s->lock);
    if (__builtin_expect(r >= 0 && r != SLOCK_RECOVERED && !bq_needs_repair(q), 1))
        return r;
    return bq_lock_side_repair(q, s, r);
}

/* The non-blocking enqueue and dequeue (bq.c), which the blocking ones in
 * bq_wait.c retry. quiet: a full queue is not counted as rejected (the
 * blocking enqueue counts once, when it gives up). */
BQ_INTERNAL int enqueue_impl(struct bq *q, const struct bq_entry *e, bool take, bool quiet);
BQ_INTERNAL int dequeue_common(struct bq *q, struct bq_entry *out, bool if_ready);

/* Brings the queue back to a consistent state; both locks held
 * (bq_repair.c). Leaves a sorted queue settled. */
BQ_INTERNAL void bq_repair_locked(struct bq *q);

/* ---- sorted queues -------------------------------------------------------- */

/* Where an entry with this key goes in a sorted queue: below every entry
 * from pos down to head whose key is greater (stable: after equal keys). */
static inline uint64_t sorted_position(const struct bq *q, const mbq_time *key, uint64_t pos,
                                       uint64_t head)
{
    for (mbq_time k; pos != head && (k = slot_key(q, pos - 1), key_compare(key, &k) < 0);)
        pos--;
    return pos;
}

/* Moves the entries [pos, from) up one slot and writes the journal's entry
 * at pos, journalled as kind (bq_sorted.c). The journal stays active. */
BQ_INTERNAL void journal_shift_in(struct bq *q, uint32_t kind, uint64_t from, uint64_t pos,
                                  uint64_t ops);
/* The settle of a sorted queue (bq_sorted.c); see bq_settle. */
BQ_INTERNAL void bq_settle_sorted(struct bq *q, uint64_t head, uint64_t tail);

/* Puts the entries of a sorted queue appended since the last call in order
 * (see bq_settle_sorted); nothing for a FIFO queue, inline so that the
 * FIFO dequeue pays no call for it. */
static inline void bq_settle(struct bq *q, uint64_t head, uint64_t tail)
{
    if (q->order == BQ_ORDER_FIFO)
        return;
    /* settled up to this tail already: the call would return at once */
    if (atomic_load_explicit(&q->sh->head.order_mark, memory_order_relaxed) == tail)
        return;
    bq_settle_sorted(q, head, tail);
}

/* ---- the counters ---------------------------------------------------------- */

/* Index range check: the only way a corrupt counter could reach memory. */
static inline bool bq_range_ok(const struct bq *q, uint64_t head, uint64_t tail)
{
    return tail - head <= q->capacity;
}

/* ---- triggers: the state a condition reads, fired sets, the gates ------------ */

struct bq_state {
    uint64_t count;
    mbq_time duration;
    bool eod, head_ready;
    bool have_pts;
    mbq_time min_pts, max_pts;
};

/* A set of trigger slots (the ones that fired). */
struct tmask {
    uint64_t w[BQ_MAX_TRIGGERS / 64];
};

static inline void tmask_set(struct tmask *m, unsigned i)
{
    m->w[i / 64] |= 1ull << (i % 64);
}

static inline bool tmask_any(const struct tmask *m)
{
    uint64_t any = 0;
    for (unsigned k = 0; k < BQ_MAX_TRIGGERS / 64; k++)
        any |= m->w[k];
    return any != 0;
}

/* Evaluation and signalling (bq_trigger.c). */
BQ_INTERNAL void trig_sides_locked(struct bq *q);
BQ_INTERNAL void state_before_locked(struct bq *q, struct bq_state *st);
BQ_INTERNAL struct tmask trig_eval_locked(struct bq *q, bool reset_event,
                                          const struct bq_state *before);
BQ_INTERNAL void trig_signal(struct bq *q, struct tmask mask);
/* The numeric PTS extremes of the entries [head, tail) (and their end). */
BQ_INTERNAL void scan_pts(struct bq *q, uint64_t head, uint64_t tail, mbq_time *min,
                          mbq_time *max, mbq_time *end);

/* A process's record of a trigger's eventfd: fd and the generation it was
 * given for, in one word so that a signalling thread reads a matching pair. */
static inline uint64_t trigger_fd_pack(int fd, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint32_t)fd;
}

/* Whether an enqueue at tail (tail lock held) leaves few enough entries to
 * pass every enqueue trigger's gate (see trig_sides_locked). */
static inline bool enq_gated(struct bq *q, uint64_t tail)
{
    uint64_t head = atomic_load_explicit(&q->head_cache, memory_order_relaxed);
    int64_t gate = atomic_load_explicit(&q->sh->enq_gate, memory_order_relaxed);
    uint64_t after = tail + 1 - head; /* >= the real count after */
    return head <= tail && gate >= 0 && after <= (uint64_t)gate;
}

/* Whether a dequeue at head (head lock held), with tail a lower bound of the
 * tail, leaves enough entries to pass every dequeue trigger's gate. */
static inline bool deq_gated(struct bq *q, uint64_t head, uint64_t tail)
{
    int64_t gate = atomic_load_explicit(&q->sh->deq_gate, memory_order_relaxed);
    if (gate == INT64_MAX || tail <= head)
        return false;
    uint64_t after = tail - head - 1; /* <= the real count after */
    return gate <= 0 || after >= (uint64_t)gate;
}

/* Whether adding d to side s's duration sum cannot lower it: d is not
 * numeric (it counts as zero), or it is a plain non-negative value in the
 * sum's timescale that does not overflow (the sum then grows exactly, and
 * the queue's duration, the tail's sum minus the head's, moves by d). Any
 * other duration sends the operation to the locked evaluation. */
static inline bool dur_monotone(const struct bq_side *s, const mbq_time *d)
{
    if (!mbq_time_is_numeric(*d))
        return true;
    uint64_t sf = atomic_load_explicit(&s->dur_scale_flags, memory_order_relaxed);
    int64_t v = atomic_load_explicit(&s->dur_value, memory_order_relaxed), sum;
    return d->flags == MBQ_TIME_FLAG_VALID && d->epoch == 0 && d->timescale > 0 &&
           d->value >= 0 &&
           sf == ((uint64_t)(uint32_t)d->timescale | (uint64_t)MBQ_TIME_FLAG_VALID << 32) &&
           atomic_load_explicit(&s->dur_epoch, memory_order_relaxed) == 0 &&
           !__builtin_add_overflow(v, d->value, &sum);
}

/* ---- wake-ups and the consumer's view of tail ------------------------------ */

/* Sleepers (blocking dequeuers on data_seq, blocking enqueuers on
 * space_seq) count themselves, name themselves in a slot and arm their word:
 * see futex.h for why a waker calls futex_wake once per sleep, and why one
 * killed asleep costs its wakers at most one call. */

/* Wakes the sleepers on seq, if one armed it (futex.h) and no waker has
 * woken them since. This is a Dekker pair — waker: store its index, load
 * seq; sleeper: arm seq, load the index — made asymmetric: the sleeper runs
 * the heavy barrier (slock_heavy_barrier(), a barrier on every CPU running
 * a registered process) unless its side's runner word proves it needless
 * (bq_sleep_barrier in bq_wait.c, whose comment carries the argument), so
 * the waker needs none on its fast path. A process that could not register
 * fences here instead. waiters and tids are only for reaping. */
static inline void wake_sleepers(_Atomic uint32_t *seq, _Atomic uint32_t *waiters,
                                 _Atomic uint32_t *tids, unsigned n, _Atomic uint32_t *idle)
{
    if (__builtin_expect(!slock_membarrier_ready(), 0))
        atomic_thread_fence(memory_order_seq_cst);
    else
        atomic_signal_fence(memory_order_seq_cst);
    if (__builtin_expect(futex_seq_armed(seq), 0))
        futex_sleepers_wake(seq, waiters, tids, n, idle, slock_tid_alive);
}

/* A side's runner word: see bq_side.runner in bq_layout.h. */
/* The rare half of bq_note_runner (bq_wait.c): a full barrier, then the
 * word claimed for want or made BQ_RUNNER_SHARED. */
void bq_runner_claim(_Atomic uint64_t *runner, uint64_t cur, uint64_t want);

/* The CPU this thread runs on, from the rseq area glibc registers (what
 * sched_getcpu reads, without the call: the kernel rewrites the field
 * before the thread returns to user space on another CPU); sched_getcpu()
 * where glibc registered none. */
static inline int bq_cpu(void)
{
#if __has_include(<sys/rseq.h>) && (defined(__x86_64__) || defined(__i386__))
    if (__builtin_expect(__rseq_size != 0, 1)) {
        const volatile uint32_t *id = &((const struct rseq *)((const char *)
                                                                 __builtin_thread_pointer() +
                                                             __rseq_offset))
                                           ->cpu_id;
        int32_t c = (int32_t)*id;
        if (__builtin_expect(c >= 0, 1))
            return c;
    }
#endif
    return sched_getcpu();
}

/* Between a side's index store and its load of the other side's sleeper
 * count: records who runs it and where. Unchanged (the common case) it is
 * a load from the line the index store just wrote and one from the rseq
 * area, no barrier; changed, bq_runner_claim fences. */
static inline void bq_note_runner(_Atomic uint64_t *runner)
{
    int cpu = bq_cpu();
    uint64_t want = (uint64_t)slock_self() << 32 | (uint32_t)(cpu < 0 ? 0 : cpu + 1);
    uint64_t cur = atomic_load_explicit(runner, memory_order_relaxed);
    if (__builtin_expect(cur != want && cur != BQ_RUNNER_SHARED, 0))
        bq_runner_claim(runner, cur, want);
}

/* Blocking dequeuers, woken by a producer after it stored tail. */
static inline void wake_consumers(struct bq *q)
{
    struct bq_shared *sh = q->sh;
    bq_note_runner(&sh->tail.runner);
    wake_sleepers(&sh->data_seq, &sh->data_waiters, sh->waiter_tid, BQ_WAITER_SLOTS,
                  &q->idle_wakes);
}

/* Blocking enqueuers, woken by a consumer after it stored head. */
static inline void wake_producers(struct bq *q)
{
    struct bq_shared *sh = q->sh;
    bq_note_runner(&sh->head.runner);
    wake_sleepers(&sh->space_seq, &sh->space_waiters, sh->space_tid, BQ_SPACE_WAITER_SLOTS,
                  &q->idle_space_wakes);
}

/* The same for a caller whose last store to the queue was an atomic
 * read-modify-write (end of data, a reset): that is the full barrier the
 * pair needs, so it leaves the runner words to the sides' usual movers. */
static inline void wake_after_rmw(struct bq *q, bool consumers)
{
    struct bq_shared *sh = q->sh;
    if (consumers)
        wake_sleepers(&sh->data_seq, &sh->data_waiters, sh->waiter_tid, BQ_WAITER_SLOTS,
                      &q->idle_wakes);
    wake_sleepers(&sh->space_seq, &sh->space_waiters, sh->space_tid, BQ_SPACE_WAITER_SLOTS,
                  &q->idle_space_wakes);
}

/* The consumer's view of tail: the cached one while it shows entries past
 * head, else a fresh load. */
static inline uint64_t consumer_tail(struct bq *q, uint64_t head)
{
    uint64_t t = atomic_load_explicit(&q->tail_cache, memory_order_relaxed);
    if (t - head - 1 < q->capacity) /* the cache shows entries */
        return t;
    if (q->order == BQ_ORDER_FIFO) {
        /* In FIFO order entry i is published when its seq reads i + 1: the
         * consumer looks at the entry it wants instead of the producer's
         * index line, which then stays in the producer's cache. Every 64th
         * empty answer is checked against the index, so a scribbled mark
         * delays an entry, never strands it. */
        if (__atomic_load_n(&q->slots[head & q->mask].seq, __ATOMIC_ACQUIRE) == head + 1) {
            atomic_store_explicit(&q->tail_cache, head + 1, memory_order_relaxed);
            return head + 1;
        }
        uint32_t n = atomic_load_explicit(&q->empty_polls, memory_order_relaxed) + 1;
        atomic_store_explicit(&q->empty_polls, n, memory_order_relaxed);
        if (n & 63)
            return head;
    }
    t = tail_seen(q, head, load_index(&q->sh->tail));
    atomic_store_explicit(&q->tail_cache, t, memory_order_relaxed);
    return t;
}

#endif
