/* Buffer queue: the ring, its locks, and the operations that change it
 * (create/attach, enqueue, dequeue, copy of the head, end of data, reset,
 * for-each, runs of entries); the layout, locking and repair rules are in bq.h.
 *
 * The other parts: bq_sorted.c (settle and journalled shifts of sorted
 * queues), bq_trigger.c (triggers), bq_inspect.c (counts, sums, times,
 * statistics), bq_wait.c (blocking calls), bq_repair.c (repair); what they
 * share is in bq_internal.h.
 *
 * Invariants of a sound queue (bq_repair_locked restores each one):
 *  - head and tail only grow; 0 <= tail - head <= capacity; entry n lives
 *    in slot n & mask while head <= n < tail (mask + 1 >= capacity);
 *  - only the holder of the tail lock writes tail, the tail side's sums and
 *    the slots at tail and beyond; only the holder of the head lock writes
 *    head, the head side's sums, and (settling a sorted queue) the slots
 *    below the tail it has seen; whatever needs the whole queue takes both,
 *    tail first;
 *  - a FIFO entry is published by the release store of its slot's seq
 *    (tail + 1), before tail moves: a consumer may take it from then on
 *    (consumer_tail), so a dequeuer can be one past the tail index, and
 *    that is an empty queue (tail_seen); a run (bq_enqueue_run) stores its
 *    entries' marks after its index instead, so that this stays one;
 *  - each side's sums (bytes, duration, ops) cover every entry that passed
 *    it, and change under its sequence counter, the index last;
 *  - the process-local copies of the other side's counter (head_cache,
 *    tail_cache) only lag, so they err towards full (producer) or empty
 *    (consumer), and are range-checked whenever they are reloaded;
 *  - an entry's buffer reference is the queue's from before the entry is
 *    in until after it is out, and every hand-over of it runs under a move
 *    intent (struct bq_hooks; pool.h "Accounting");
 *  - a lock that comes back from a dead owner marks the queue for repair,
 *    which runs under both locks before anything reads the entries;
 *  - triggers fire from under both locks and are signalled after them;
 *    an operation in a trigger callback on its own queue is refused.
 * Limits: one queue's producers (consumers) serialise on their side's lock;
 * a queue holds at most BQ_MAX_CAPACITY entries. */
#include "bq_internal.h"

#include <errno.h>
#include <limits.h>
#include <mbq/status.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static _Thread_local const struct bq_shared *bq_in_callback;

void bq_callback_scope(const struct bq *q)
{
    bq_in_callback = q ? q->sh : NULL;
}

/* Called once q->sh is known non-null, so one compare says it (NULL, the
 * common value, never equals it). */
static bool bq_in_own_callback(const struct bq *q)
{
    return __builtin_expect(bq_in_callback == q->sh, 0);
}

/* ---- slots --------------------------------------------------------------- */

void bq_slot_write(struct bq *q, uint64_t i, const struct bq_entry *e)
{
    slot_store(q, i, e, e->seq);
}

void bq_slot_read(const struct bq *q, uint64_t i, struct bq_entry *out)
{
    slot_read(q, i, out);
}

/* ---- locking ------------------------------------------------------------ */

/* Takes both locks, tail first. Everything that walks the entries does so
 * under these, so the counters are checked here once: a walk never starts
 * from a scribbled range. A sorted queue is settled here, so that whatever
 * runs under both locks finds its entries in order. Returns 0, or -EBUSY
 * (see slock_lock) with neither lock held; a tail lock recovered from a
 * dead owner and let go unrepaired leaves the queue marked for repair. */
int bq_lock_full(struct bq *q, struct bq_held *out)
{
    struct bq_held h = {bslock_lock(&q->sh->tail.lock), 0};
    if (h.tail < 0)
        return h.tail;
    h.head = bslock_lock(&q->sh->head.lock);
    if (h.head < 0) {
        if (h.tail == SLOCK_RECOVERED)
            bq_mark_repair(q);
        bslock_unlock(&q->sh->tail.lock, h.tail);
        return h.head;
    }
    uint64_t head = atomic_load_explicit(&q->sh->head.index, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&q->sh->tail.index, memory_order_relaxed);
    if (h.tail == SLOCK_RECOVERED || h.head == SLOCK_RECOVERED || bq_needs_repair(q) ||
        !bq_range_ok(q, head, tail))
        bq_repair_locked(q); /* leaves the queue settled */
    else
        bq_settle(q, head, tail);
    *out = h;
    return 0;
}

void bq_unlock_full(struct bq *q, struct bq_held h)
{
    bslock_unlock(&q->sh->head.lock, h.head);
    bslock_unlock(&q->sh->tail.lock, h.tail);
}

/* bq_lock_side's rare half: the lock came back from a dead owner (or the
 * queue is marked for repair); it is let go and the repair done under both
 * locks, then taken again. */
int bq_lock_side_repair(struct bq *q, struct bq_side *s, int r)
{
    for (;;) {
        if (r < 0)
            return r;
        if (r != SLOCK_RECOVERED && !bq_needs_repair(q))
            return r;
        bq_mark_repair(q);
        bslock_unlock(&s->lock, r);
        struct bq_held h;
        int e = bq_lock_full(q, &h);
        if (e < 0)
            return e;
        bq_unlock_full(q, h);
        r = bslock_lock(&s->lock);
    }
}

/* ---- create / attach ------------------------------------------------------ */

static size_t bq_entries_offset(void)
{
    return seg_round_up(sizeof(struct bq_shared), 128);
}

/* The segment: header, slots, then the wide array. */
static size_t bq_segment_size(uint32_t slots)
{
    return bq_entries_offset() + (size_t)slots * (sizeof(struct bq_slot) + sizeof(struct bq_wide));
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static void bq_init_local(struct bq *q, struct seg *s, uint32_t capacity, uint32_t slots,
                          uint32_t order, uint32_t policy)
{
    slock_membarrier_register(); /* see wake_consumers */
    *q = (struct bq){.seg = *s,
                     .sh = s->base,
                     .slots = (struct bq_slot *)((char *)s->base + bq_entries_offset()),
                     .wide = (struct bq_wide *)((char *)s->base + bq_entries_offset() +
                                                (size_t)slots * sizeof(struct bq_slot)),
                     .capacity = capacity,
                     .mask = slots - 1,
                     .order = order,
                     .full_policy = policy,
                     .spin_ns = -1};
    for (int i = 0; i < BQ_MAX_TRIGGERS; i++)
        atomic_init(&q->trigger_fd[i], trigger_fd_pack(-1, 0));
}

int bq_create(const struct bq_params *p, struct bq *out)
{
    if (!p || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    uint32_t cap = p->capacity ? p->capacity : BQ_DEFAULT_CAPACITY;
    if (cap > BQ_MAX_CAPACITY || p->order > BQ_ORDER_DTS || p->full_policy > BQ_FULL_DROP_OLDEST)
        return -EINVAL;
    uint32_t slots = pow2_at_least(cap);
    struct seg s;
    int r = seg_create("mbq-bq", bq_segment_size(slots),
                       SEG_KIND_BUFFER_QUEUE, &s);
    if (r < 0)
        return r == -ENOMEM ? MBQ_BQ_ERR_ALLOCATION_FAILED : r;
    struct bq_shared *sh = s.base;
    sh->hdr.object_id = p->object_id;
    sh->capacity = cap;
    sh->slots = slots;
    sh->order = p->order;
    sh->full_policy = p->full_policy;
    sh->entry_size = sizeof(struct bq_slot);
    sh->entries_off = bq_entries_offset();
    uint32_t nonce = 0;
    while (nonce == 0 && getrandom(&nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
        ;
    sh->nonce = nonce ? nonce : 1;
    side_duration_store(&sh->tail, MBQ_TIME_ZERO);
    side_duration_store(&sh->head, MBQ_TIME_ZERO);
    sh->tail.last_key = MBQ_TIME_NEGATIVE_INFINITY;
    bq_init_local(out, &s, cap, slots, p->order, p->full_policy);
    return 0;
}

int bq_attach(int fd, struct bq *out)
{
    if (!out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct seg s;
    int r = seg_map(fd, SEG_KIND_BUFFER_QUEUE, sizeof(struct bq_shared), &s);
    if (r < 0)
        return r;
    const struct bq_shared *sh = s.base;
    uint32_t cap = sh->capacity, slots = sh->slots, order = sh->order, pol = sh->full_policy;
    if (cap == 0 || cap > BQ_MAX_CAPACITY || slots != pow2_at_least(cap) ||
        order > BQ_ORDER_DTS || pol > BQ_FULL_DROP_OLDEST ||
        sh->entry_size != sizeof(struct bq_slot) || sh->entries_off != bq_entries_offset() ||
        bq_segment_size(slots) > s.size) {
        seg_close(&s);
        return -EBADMSG;
    }
    bq_init_local(out, &s, cap, slots, order, pol);
    return 0;
}

void bq_detach(struct bq *q)
{
    if (!q)
        return;
    seg_close(&q->seg);
    *q = (struct bq){.seg = {.fd = -1}};
}

void bq_set_hooks(struct bq *q, const struct bq_hooks *hooks)
{
    q->hooks = hooks ? *hooks : (struct bq_hooks){0};
}

/* ---- enqueue -------------------------------------------------------------- */

/* Called with the count bounded by the cached head (an upper bound): the
 * exact count is worked out only when that bound beats the mark, which
 * stops happening once the mark is reached. */
static void bump_high_water(struct bq *q, uint64_t tail_after)
{
    struct bq_side *t = &q->sh->tail;
    uint64_t hw = atomic_load_explicit(&t->high_water, memory_order_relaxed);
    if (__builtin_expect(tail_after - atomic_load_explicit(&q->head_cache, memory_order_relaxed) <= hw, 1))
        return;
    uint64_t hc = load_index(&q->sh->head);
    atomic_store_explicit(&q->head_cache, hc, memory_order_relaxed);
    uint64_t count = tail_after - hc;
    if (count > q->capacity)
        return; /* a corrupt head: the next operation reports it */
    while (count > hw && !atomic_compare_exchange_weak_explicit(
                             &t->high_water, &hw, count, memory_order_relaxed,
                             memory_order_relaxed))
        ;
}

/* Drops the head entry to make room; both locks held. Returns its handle so
 * the caller releases it after unlocking. */
static struct bq_entry drop_oldest_locked(struct bq *q, uint64_t head)
{
    struct bq_entry old;
    bq_slot_read(q, head, &old);
    /* Nested in the enqueue's own move (which 1); a pool this process has
     * not mapped cannot hold an intent, and the drop goes ahead without. */
    if (q->hooks.move_begin)
        (void)q->hooks.move_begin(q->hooks.ctx, old.pool_id, old.handle, 1);
    MBQ_TRACE((uint32_t)old.handle - 1, TR_TAKE, old.handle, BQ_TAG(q) | head << 16 | 2 << 12);
    side_pass(&q->sh->head, &old, head + 1, false);
    atomic_fetch_add_explicit(&q->sh->tail.dropped, 1, memory_order_relaxed);
    return old;
}

/* With the tail lock held, takes the head lock too (the lock order allows
 * it), repairing if it comes back from a dead owner, and settles a sorted
 * queue (an out-of-range queue is left to the caller, which re-reads it).
 * Returns 0 or -EBUSY (the head lock not held). */
static int lock_head_after_tail(struct bq *q, int *how)
{
    *how = bslock_lock(&q->sh->head.lock);
    if (*how < 0)
        return *how;
    uint64_t head = atomic_load_explicit(&q->sh->head.index, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&q->sh->tail.index, memory_order_relaxed);
    if (*how == SLOCK_RECOVERED || bq_needs_repair(q))
        bq_repair_locked(q);
    else if (bq_range_ok(q, head, tail))
        bq_settle(q, head, tail);
    return 0;
}

/* Writes e into the free slot at tail, seq = tail + 1 (the publish mark). */
static inline void write_slot(struct bq *q, const struct bq_entry *e, uint64_t tail)
{
    slot_store(q, tail, e, tail + 1);
}

/* Sorted queues: whether e's key is below that of the entry appended last. */
static inline bool append_out_of_order(const struct bq *q, const struct bq_entry *e)
{
    const mbq_time *key = q->order == BQ_ORDER_DTS ? &e->dts : &e->pts;
    return key_compare(key, &q->sh->tail.last_key) < 0;
}

/* Sorted queues: notes e, appended at tail, as the last entry appended, and
 * whether it came out of order. Nothing depends on this but the repair's
 * verdict on an out-of-order entry (a producer's or a scribble's; see
 * bq_repair_locked), and the repair resets last_key, so a death in between
 * does no harm. */
static inline void note_append(struct bq *q, const struct bq_entry *e, uint64_t tail, bool ooo)
{
    struct bq_side *t = &q->sh->tail;
    if (ooo)
        atomic_store_explicit(&t->order_mark, tail + 1, memory_order_relaxed);
    t->last_key = q->order == BQ_ORDER_DTS ? e->dts : e->pts;
}

/* An enqueue, step by step: check the call (enqueue_check), take the
 * queue's reference (enqueue_take_ref), take the locks it needs
 * (enqueue_lock), then either append under the tail lock alone
 * (enqueue_append_fast) or, with both locks or a full queue, make room
 * (enqueue_room_locked), put the entry in its place (enqueue_place_locked)
 * and evaluate the triggers; enqueue_finish lets go of everything. */

/* The checks that need no lock: arguments, the trigger callback's own
 * queue, the validation hook. */
static inline int enqueue_check(struct bq *q, const struct bq_entry *e)
{
    if (!q || !q->sh || !e || !e->handle)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (bq_in_own_callback(q))
        return MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK;
    if (q->hooks.validate)
        return q->hooks.validate(q->hooks.ctx, e);
    return 0;
}

/* How the enqueue holds the entry's reference: retained, it took a new one
 * for the queue (to give back on failure); moving, under a move intent
 * (to end in every case). */
struct enq_ref {
    bool retained, moving;
};

/* The queue's reference is taken before locking, so the critical section
 * stays short; every failure gives it back. With take, the caller's
 * reference becomes the queue's instead. The new reference is covered by
 * a move intent from before the retain until the entry is in (or the
 * reference given back). */
static inline int enqueue_take_ref(struct bq *q, const struct bq_entry *e, bool take,
                                   struct enq_ref *ref)
{
    ref->retained = !take && q->hooks.retain;
    ref->moving = ref->retained && q->hooks.move_begin;
    if (!ref->retained)
        return 0;
    int v = ref->moving ? q->hooks.move_begin(q->hooks.ctx, e->pool_id, e->handle, 0) : 0;
    if (!v)
        v = q->hooks.retain(q->hooks.ctx, e->pool_id, e->handle, false);
    if (v && ref->moving && q->hooks.move_end)
        q->hooks.move_end(q->hooks.ctx, e->pool_id, 0);
    return v;
}

static inline void enqueue_move_end(struct bq *q, const struct bq_entry *e, struct enq_ref ref)
{
    if (ref.moving && q->hooks.move_end)
        q->hooks.move_end(q->hooks.ctx, e->pool_id, 0);
}

/* With the tail lock held: whether an installed trigger may turn true on
 * this enqueue after all — one installed while we waited for the lock, a
 * count gate this tail does not pass, or a duration that could lower the
 * queue's. Under the tail lock the trigger set cannot change (it changes
 * only under both locks) and the tail is known. */
static inline bool enqueue_must_evaluate(struct bq *q, const struct bq_entry *e)
{
    struct bq_shared *sh = q->sh;
    uint32_t sides = atomic_load_explicit(&sh->trigger_sides, memory_order_relaxed);
    if (__builtin_expect(sides == 0, 1))
        return false;
    return ((sides & BQ_TRIG_ENQ) &&
            !enq_gated(q, atomic_load_explicit(&sh->tail.index, memory_order_relaxed))) ||
           ((sides & BQ_TRIG_ENQ_DUR) && !dur_monotone(&sh->tail, &e->duration));
}

/* Takes the locks this enqueue needs: both, with an evaluation, only when
 * an installed trigger can turn true on it (see trig_eval_locked and
 * trig_sides_locked) — straight away when no count gate can spare it, else
 * as judged under the tail lock. Returns 0 with *full_lock saying which,
 * or -EBUSY with nothing held. */
static inline int enqueue_lock(struct bq *q, const struct bq_entry *e, struct bq_held *held,
                               bool *full_lock)
{
    struct bq_shared *sh = q->sh;
    uint32_t sides = atomic_load_explicit(&sh->trigger_sides, memory_order_relaxed);
    *full_lock = __builtin_expect(sides != 0, 0) && (sides & BQ_TRIG_ENQ) &&
                 atomic_load_explicit(&sh->enq_gate, memory_order_relaxed) == INT64_MIN;
    *held = (struct bq_held){0, 0};
    if (*full_lock)
        return bq_lock_full(q, held);
    int lr = held->tail = bq_lock_side(q, &sh->tail);
    if (lr >= 0 && enqueue_must_evaluate(q, e)) {
        bslock_unlock(&sh->tail.lock, held->tail);
        *full_lock = true;
        return bq_lock_full(q, held);
    }
    return lr < 0 ? lr : 0;
}

/* The common case, FIFO or sorted, with the tail lock alone: room by the
 * cached head (a lower bound, so a stale one errs towards the slow path),
 * not at end of data — an append. Lets go of the tail lock and returns
 * true once the entry is in; false (nothing changed, lock held) sends the
 * enqueue to the slow path. */
static inline __attribute__((always_inline)) bool
enqueue_append_fast(struct bq *q, const struct bq_entry *e, int how)
{
    struct bq_shared *sh = q->sh;
    uint64_t tail = atomic_load_explicit(&sh->tail.index, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&q->head_cache, memory_order_relaxed);
    /* An entry out of order is left for the consumer to move (see
     * bq_settle), but the real head is read for it: a scribbled head is
     * then noticed here, as it is when the queue looks full. */
    bool ooo = q->order != BQ_ORDER_FIFO && append_out_of_order(q, e);
    /* A cache that says full is reloaded here rather than on the slow path:
     * a producer ahead of its consumer finds it so once per lap of the
     * ring. The reload is range-checked as the slow path's is (a head past
     * tail fails the test below, and the slow path reports it). */
    if (ooo || __builtin_expect(tail - head >= q->capacity, 0)) {
        head = load_index(&sh->head);
        atomic_store_explicit(&q->head_cache, head, memory_order_relaxed);
    }
    if (__builtin_expect(tail - head >= q->capacity ||
                             (atomic_load_explicit(&sh->flags, memory_order_relaxed) &
                              BQ_F_END_OF_DATA),
                         0))
        return false;
    write_slot(q, e, tail);
    if (q->order != BQ_ORDER_FIFO)
        note_append(q, e, tail, ooo);
    side_pass(&sh->tail, e, tail + 1, true);
    bump_high_water(q, tail + 1);
    bslock_unlock_inline(&sh->tail.lock, how);
    return true;
}

/* What the slow path holds and carries from step to step. */
struct enq_slow {
    struct bq_held held;
    bool full_lock, have_head, dropped;
    uint64_t head, tail;
    struct bq_entry old; /* the entry dropped to make room */
    struct bq_state before;
};

/* Under the tail lock: the tail, and a head to judge room for n more by.
 * The cached head is a lower bound; it is reloaded when it leaves no room
 * for n, when it is out of range (another producer moved tail on), and
 * whenever the head lock is held anyway (reload). 0, -EUCLEAN (a corrupt
 * pair, marked for repair) or the error of an enqueue after end of data. */
static int producer_counters_locked(struct bq *q, bool reload, uint64_t n, uint64_t *head_out,
                                    uint64_t *tail_out)
{
    struct bq_shared *sh = q->sh;
    uint64_t tail = atomic_load_explicit(&sh->tail.index, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&q->head_cache, memory_order_relaxed);
    if (reload || head > tail || tail - head + n > q->capacity) {
        head = load_index(&sh->head);
        atomic_store_explicit(&q->head_cache, head, memory_order_relaxed);
    }
    if (!bq_range_ok(q, head, tail)) {
        bq_mark_repair(q);
        return -EUCLEAN;
    }
    if (atomic_load_explicit(&sh->flags, memory_order_relaxed) & BQ_F_END_OF_DATA)
        return MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA;
    *head_out = head;
    *tail_out = tail;
    return 0;
}

/* Re-reads the counters under the locks held and makes sure there is room:
 * 0 with c->head and c->tail set (the oldest entry dropped if the policy
 * says so), ENQ_AGAIN when it just took the head lock too (everything must
 * be read again), or the enqueue's error. */
#define ENQ_AGAIN 1
static int enqueue_room_locked(struct bq *q, struct enq_slow *c, bool quiet)
{
    struct bq_shared *sh = q->sh;
    if (c->full_lock)
        state_before_locked(q, &c->before);
    uint64_t head, tail;
    int r = producer_counters_locked(q, c->have_head, 1, &head, &tail);
    if (r != 0)
        return r;
    if (tail - head >= q->capacity) {
        if (q->full_policy != BQ_FULL_DROP_OLDEST) {
            if (!quiet) /* a blocking enqueue counts once, when it gives up */
                atomic_fetch_add_explicit(&sh->tail.rejected_full, 1, memory_order_relaxed);
            return MBQ_BQ_ERR_QUEUE_IS_FULL;
        }
        if (!c->have_head) {
            r = lock_head_after_tail(q, &c->held.head);
            if (r < 0)
                return r;
            c->have_head = true;
            return ENQ_AGAIN;
        }
        c->old = drop_oldest_locked(q, head);
        c->dropped = true;
        head++;
    }
    c->head = head;
    c->tail = tail;
    return 0;
}

/* Puts e in its place and moves tail: appended, or — both locks held
 * anyway, and taking them settled the queue — inserted in order in a sorted
 * queue, through the journal, rather than left for a consumer to move. */
static void enqueue_place_locked(struct bq *q, const struct bq_entry *e,
                                 const struct enq_slow *c)
{
    struct bq_shared *sh = q->sh;
    uint64_t tail = c->tail, pos = tail;
    if (c->have_head && q->order != BQ_ORDER_FIFO)
        pos = sorted_position(q, q->order == BQ_ORDER_DTS ? &e->dts : &e->pts, tail, c->head);
    if (pos == tail) {
        write_slot(q, e, tail);
        if (q->order != BQ_ORDER_FIFO)
            note_append(q, e, tail, append_out_of_order(q, e));
    } else {
        sh->journal.entry = *e;
        sh->journal.entry.seq = tail + 1;
        journal_shift_in(q, BQ_JOURNAL_INSERT, tail, pos,
                         atomic_load_explicit(&sh->tail.ops, memory_order_relaxed));
    }
    side_pass(&sh->tail, e, tail + 1, true);
    if (pos != tail) {
        atomic_store_explicit(&sh->journal.active, 0, memory_order_release);
        atomic_store_explicit(&sh->head.order_mark, tail + 1, memory_order_relaxed);
    }
    bump_high_water(q, tail + 1);
}

/* Lets go of the locks, then of what the enqueue held: on success the
 * consumers are woken, on failure the queue's new reference goes back; the
 * move intents end, the dropped entry's reference goes, and the fired
 * triggers are signalled. Returns r. */
static int enqueue_finish(struct bq *q, const struct bq_entry *e, int r, struct enq_ref ref,
                          const struct enq_slow *c, struct tmask fired)
{
    struct bq_shared *sh = q->sh;
    if (c->have_head)
        bslock_unlock(&sh->head.lock, c->held.head);
    bslock_unlock(&sh->tail.lock, c->held.tail);
    if (r == 0) {
        wake_consumers(q);
    } else if (ref.retained && q->hooks.release) {
        q->hooks.release(q->hooks.ctx, e->pool_id, e->handle);
    }
    enqueue_move_end(q, e, ref);
    if (c->dropped && q->hooks.release)
        q->hooks.release(q->hooks.ctx, c->old.pool_id, c->old.handle);
    if (c->dropped && q->hooks.move_end)
        q->hooks.move_end(q->hooks.ctx, c->old.pool_id, 1);
    if (tmask_any(&fired))
        trig_signal(q, fired);
    return r;
}

/* Everything but the common append: a full queue, end of data, a corrupt
 * head, or both locks held for a trigger evaluation. */
static __attribute__((noinline)) int enqueue_slow(struct bq *q, const struct bq_entry *e,
                                                  bool quiet, struct enq_ref ref,
                                                  struct bq_held held, bool full_lock)
{
    /* Field by field: old and before are read only once written (dropped,
     * full_lock), and zeroing them would cost 200 bytes of stores here. */
    struct enq_slow c;
    c.held = held;
    c.full_lock = full_lock;
    c.have_head = full_lock;
    c.dropped = false;
    struct tmask fired = {{0}};
    int r;
    while ((r = enqueue_room_locked(q, &c, quiet)) == ENQ_AGAIN)
        ;
    if (r == 0) {
        enqueue_place_locked(q, e, &c);
        if (c.full_lock)
            fired = trig_eval_locked(q, false, &c.before);
    }
    return enqueue_finish(q, e, r, ref, &c, fired);
}

/* The enqueue, in line in each entry point below (their constant take and
 * quiet fold away, and the public call pays one call, not two). */
static inline __attribute__((always_inline)) int enqueue_body(struct bq *q,
                                                              const struct bq_entry *e,
                                                              bool take, bool quiet)
{
    int r = enqueue_check(q, e);
    if (r)
        return r;
    struct enq_ref ref;
    r = enqueue_take_ref(q, e, take, &ref);
    if (r)
        return r;
    struct bq_held held;
    bool full_lock;
    r = enqueue_lock(q, e, &held, &full_lock);
    if (__builtin_expect(r < 0, 0)) {
        if (ref.retained && q->hooks.release)
            q->hooks.release(q->hooks.ctx, e->pool_id, e->handle);
        enqueue_move_end(q, e, ref); /* the reference is given back: the move is over */
        return r;
    }
    if (__builtin_expect(!full_lock, 1) && enqueue_append_fast(q, e, held.tail)) {
        enqueue_move_end(q, e, ref);
        wake_consumers(q);
        return 0;
    }
    return enqueue_slow(q, e, quiet, ref, held, full_lock);
}

int enqueue_impl(struct bq *q, const struct bq_entry *e, bool take, bool quiet)
{
    return enqueue_body(q, e, take, quiet);
}

int bq_enqueue(struct bq *q, const struct bq_entry *e)
{
    return enqueue_body(q, e, false, false);
}

int bq_enqueue_take(struct bq *q, const struct bq_entry *e)
{
    return enqueue_body(q, e, true, false);
}

/* ---- dequeue -------------------------------------------------------------- */

/* A dequeue, step by step: the lock-free empty answer, the locks it needs
 * (the head lock alone, or both when an installed trigger can turn true on
 * it), then under them dequeue_take_locked — counters, settle, read the
 * head entry, the gates' verdict — and dequeue_hand_over_locked, which
 * moves head once the entry's reference is covered by an intent. */

/* dequeue_take_locked's answer when this dequeue must be evaluated after
 * all: the caller lets go of the head lock and starts again with both. */
#define DEQ_EVALUATE 1

/* With the head lock held and out read: whether an installed trigger may
 * turn true on this dequeue — it may leave few enough entries (the count
 * gate, judged with tail a lower bound), or its duration could raise the
 * queue's. */
static inline bool dequeue_must_evaluate(struct bq *q, uint32_t sides, uint64_t head,
                                         uint64_t tail, const struct bq_entry *out)
{
    return ((sides & BQ_TRIG_DEQ) && !deq_gated(q, head, tail)) ||
           ((sides & BQ_TRIG_DEQ_DUR) && !dur_monotone(&q->sh->head, &out->duration));
}

/* Hands the entry read at head over to the caller: not if it is not ready
 * (if_ready), nor without an intent covering its reference (the entry then
 * stays); else head moves past it, evaluated if both locks are held. */
static inline int dequeue_hand_over_locked(struct bq *q, const struct bq_entry *out,
                                           bool if_ready, bool full_lock, uint64_t head,
                                           struct tmask *fired)
{
    if (if_ready && q->hooks.is_ready &&
        !q->hooks.is_ready(q->hooks.ctx, out->pool_id, out->handle))
        return -EAGAIN;
    if (q->hooks.move_begin) {
        int r = q->hooks.move_begin(q->hooks.ctx, out->pool_id, out->handle, 0);
        if (r != 0)
            return r;
    }
    struct bq_state before;
    if (full_lock)
        state_before_locked(q, &before);
    MBQ_TRACE((uint32_t)out->handle - 1, TR_TAKE, out->handle, BQ_TAG(q) | head << 16 | 1 << 12);
    side_pass(&q->sh->head, out, head + 1, true);
    if (full_lock)
        *fired = trig_eval_locked(q, false, &before);
    return 0;
}

/* Under the head lock (and the tail lock if full_lock): 0 with the head
 * entry in out and head moved, -EAGAIN (empty, or not ready), -EUCLEAN (a
 * corrupt pair of counters, marked for repair), a move_begin error, or
 * DEQ_EVALUATE with nothing changed. */
static inline __attribute__((always_inline)) int
dequeue_take_locked(struct bq *q, struct bq_entry *out, bool if_ready, bool full_lock,
                    uint32_t sides, struct tmask *fired)
{
    struct bq_shared *sh = q->sh;
    uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_relaxed);
    uint64_t tail;
    if (full_lock) {
        tail = load_index(&sh->tail);
        atomic_store_explicit(&q->tail_cache, tail, memory_order_relaxed);
    } else {
        tail = consumer_tail(q, head);
    }
    if (!bq_range_ok(q, head, tail)) {
        bq_mark_repair(q);
        return -EUCLEAN;
    }
    if (head == tail)
        return -EAGAIN;
    bq_settle(q, head, tail);
    slot_read(q, head, out);
    if (__builtin_expect(!full_lock && sides != 0, 0) &&
        dequeue_must_evaluate(q, sides, head, tail, out))
        return DEQ_EVALUATE;
    return dequeue_hand_over_locked(q, out, if_ready, full_lock, head, fired);
}

/* The dequeue, in line in each entry point below (as enqueue_body). */
static inline __attribute__((always_inline)) int dequeue_body(struct bq *q,
                                                              struct bq_entry *out,
                                                              bool if_ready)
{
    if (!q || !q->sh || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (bq_in_own_callback(q))
        return MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK;
    struct bq_shared *sh = q->sh;
    /* An empty queue is answered without the lock: head read before tail,
     * both only grow, so equal values mean it was empty when tail was read. */
    uint64_t h = atomic_load_explicit(&sh->head.index, memory_order_acquire);
    if (consumer_tail(q, h) == h)
        return -EAGAIN;
    /* As in enqueue: both locks only when an installed trigger can turn
     * true on this dequeue (the hint here taken again under the head lock,
     * the count gate judged once the tail is known). */
    uint32_t sides = atomic_load_explicit(&sh->trigger_sides, memory_order_relaxed);
    bool full_lock = __builtin_expect(sides != 0, 0) && (sides & BQ_TRIG_DEQ) &&
                     atomic_load_explicit(&sh->deq_gate, memory_order_relaxed) == INT64_MAX;
    for (;;) {
        struct bq_held held = {0, 0};
        int r = full_lock ? bq_lock_full(q, &held) : (held.head = bq_lock_side(q, &sh->head));
        if (__builtin_expect(r < 0, 0))
            return r;
        if (!full_lock)
            sides = atomic_load_explicit(&sh->trigger_sides, memory_order_relaxed);
        struct tmask fired = {{0}};
        r = dequeue_take_locked(q, out, if_ready, full_lock, sides, &fired);
        if (r == DEQ_EVALUATE) {
            bslock_unlock(&sh->head.lock, held.head);
            full_lock = true;
            continue;
        }
        if (full_lock)
            bq_unlock_full(q, held);
        else
            bslock_unlock_inline(&sh->head.lock, held.head);
        if (r == 0)
            wake_producers(q);
        if (tmask_any(&fired))
            trig_signal(q, fired);
        return r;
    }
}

int dequeue_common(struct bq *q, struct bq_entry *out, bool if_ready)
{
    return dequeue_body(q, out, if_ready);
}

int bq_dequeue(struct bq *q, struct bq_entry *out)
{
    return dequeue_body(q, out, false);
}

int bq_dequeue_if_ready(struct bq *q, struct bq_entry *out)
{
    return dequeue_body(q, out, true);
}

int bq_copy_head(struct bq *q, struct bq_entry *out)
{
    if (!q || !q->sh || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_shared *sh = q->sh;
    int how = bq_lock_side(q, &sh->head);
    if (how < 0)
        return how;
    int r = 0;
    uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_relaxed);
    uint64_t tail = tail_seen(q, head, load_index(&sh->tail));
    if (!bq_range_ok(q, head, tail)) {
        bq_mark_repair(q);
        r = -EUCLEAN;
    } else if (head == tail) {
        r = -EAGAIN;
    } else {
        bq_settle(q, head, tail);
        bq_slot_read(q, head, out);
        if (q->hooks.retain)
            r = q->hooks.retain(q->hooks.ctx, out->pool_id, out->handle, true);
    }
    bslock_unlock(&sh->head.lock, how);
    return r;
}

/* ---- end of data, reset, for-each ----------------------------------------- */

int bq_mark_end_of_data(struct bq *q)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (bq_in_own_callback(q))
        return MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK;
    struct bq_held held;
    int lr = bq_lock_full(q, &held);
    if (lr < 0)
        return lr;
    struct bq_state before;
    state_before_locked(q, &before);
    atomic_fetch_or_explicit(&q->sh->flags, BQ_F_END_OF_DATA, memory_order_relaxed);
    struct tmask fired = trig_eval_locked(q, false, &before);
    bq_unlock_full(q, held);
    /* Blocked dequeuers return -ENODATA, blocked enqueuers fail (enqueue
     * after end of data); the fetch_or above is the waker's barrier. */
    wake_after_rmw(q, true);
    trig_signal(q, fired);
    return 0;
}

int bq_reset(struct bq *q, void (*cb)(const struct bq_entry *e, void *ctx), void *ctx)
{
    return bq_reset_if(q, NULL, cb, ctx);
}

int bq_reset_if(struct bq *q, bool (*ready)(const struct bq_entry *e, void *ctx),
                void (*cb)(const struct bq_entry *e, void *ctx), void *ctx)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (bq_in_own_callback(q))
        return MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK;
    struct bq_shared *sh = q->sh;
    struct bq_held held;
    int lr = bq_lock_full(q, &held);
    if (lr < 0)
        return lr;
    uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&sh->tail.index, memory_order_relaxed);
    /* Every entry is judged before anything moves: a caller that needs
     * something for each entry's release (libmbq: the pool mapped and known
     * bound, so that the release runs under the move's intent) gets what
     * it lacks unlocked, and tries again. */
    bool all_ready = true;
    for (uint64_t i = head; ready && i != tail; i++) {
        struct bq_entry e;
        bq_slot_read(q, i, &e);
        all_ready &= ready(&e, ctx); /* on through the rest: the caller lists them all */
    }
    if (!all_ready) {
        bq_unlock_full(q, held);
        return -EAGAIN;
    }
    struct bq_state before;
    state_before_locked(q, &before);
    for (uint64_t i = head; i != tail; i++) {
        struct bq_entry e;
        bq_slot_read(q, i, &e);
        if (cb)
            cb(&e, ctx);
        /* The entry leaves, then its reference goes, under an intent (a
         * death in between leaves the refcount one too high, for the
         * reclaimer's recount, never a queue naming a freed buffer). */
        if (q->hooks.move_begin)
            (void)q->hooks.move_begin(q->hooks.ctx, e.pool_id, e.handle, 0);
        MBQ_TRACE((uint32_t)e.handle - 1, TR_TAKE, e.handle, BQ_TAG(q) | i << 16 | 3 << 12);
        side_pass(&sh->head, &e, i + 1, false);
        if (q->hooks.release)
            q->hooks.release(q->hooks.ctx, e.pool_id, e.handle);
        if (q->hooks.move_end)
            q->hooks.move_end(q->hooks.ctx, e.pool_id, 0);
    }
    atomic_fetch_and_explicit(&sh->flags, ~BQ_F_END_OF_DATA, memory_order_relaxed);
    struct tmask fired = trig_eval_locked(q, true, &before);
    bq_unlock_full(q, held);
    wake_after_rmw(q, false); /* room for blocked enqueuers (the fetch_and fences) */
    trig_signal(q, fired);
    return 0;
}

int bq_for_each(struct bq *q, int (*cb)(struct bq_entry *e, void *ctx), void *ctx)
{
    if (!q || !q->sh || !cb)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_held held;
    int r = bq_lock_full(q, &held);
    if (r < 0)
        return r;
    uint64_t head = atomic_load_explicit(&q->sh->head.index, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&q->sh->tail.index, memory_order_relaxed);
    for (uint64_t i = head; i != tail && r == 0; i++) {
        struct bq_entry e, before;
        bq_slot_read(q, i, &e);
        before = e;
        r = cb(&e, ctx);
        /* only the attachments may change: store them, nothing else */
        if (memcmp(e.attachments, before.attachments, sizeof(e.attachments)) != 0) {
            memcpy(before.attachments, e.attachments, sizeof(e.attachments));
            bq_slot_write(q, i, &before);
        }
    }
    bq_unlock_full(q, held);
    return r;
}

/* ---- runs (bq_enqueue_run, bq_dequeue_run) -------------------------------- */

/* The prefix of e[0..n) the run may take: entries with a handle that the
 * validation hook accepts. *err: why it stops short. */
static uint32_t run_valid_prefix(struct bq *q, const struct bq_entry *e, uint32_t n, int *err)
{
    *err = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (!e[k].handle)
            *err = MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
        else if (q->hooks.validate)
            *err = q->hooks.validate(q->hooks.ctx, &e[k]);
        if (*err)
            return k;
    }
    return n;
}

/* Writes e[0..k) at tail on, then moves tail once. In a FIFO queue an
 * entry's publish mark (seq, which a consumer polls: consumer_tail) is set
 * after the index: a consumer that follows the marks is then never more
 * than the one entry tail_seen allows past the index, however long the
 * run. Until then each slot keeps the mark of its previous lap, which
 * names another index. A sorted queue notes each append as
 * enqueue_append_fast does (its consumer settles). */
static void run_place_locked(struct bq *q, const struct bq_entry *e, uint32_t k, uint64_t tail)
{
    struct bq_side *t = &q->sh->tail;
    const bool fifo = q->order == BQ_ORDER_FIFO;
    for (uint32_t i = 0; i < k; i++) {
        uint64_t at = tail + i;
        if (fifo) {
            slot_store(q, at, &e[i], __atomic_load_n(&q->slots[at & q->mask].seq,
                                                     __ATOMIC_RELAXED));
        } else {
            bool ooo = append_out_of_order(q, &e[i]);
            write_slot(q, &e[i], at);
            note_append(q, &e[i], at, ooo);
        }
    }
    side_pass_run(t, e, k, tail + k);
    if (fifo)
        for (uint32_t i = 0; i < k; i++)
            __atomic_store_n(&q->slots[(tail + i) & q->mask].seq, tail + i + 1,
                             __ATOMIC_RELEASE);
}

/* Under the locks held: room for how many of n (0..n) at the tail read
 * now, or the run's error. */
static int run_room_locked(struct bq *q, uint32_t n, bool full_lock, uint64_t *tail_out,
                           uint64_t *head_out, uint32_t *k_out)
{
    uint64_t head, tail;
    int r = producer_counters_locked(q, full_lock, n, &head, &tail);
    if (r != 0)
        return r;
    uint64_t room = q->capacity - (tail - head);
    *k_out = room < n ? (uint32_t)room : n;
    *tail_out = tail;
    *head_out = head;
    return 0;
}

/* The locks of a run: its side's (the tail's for an enqueue), or both when
 * a trigger is installed — one evaluation for the run: a run only adds or
 * only takes away, so a condition it crosses is crossed once. The set is
 * looked at again under the side's lock (it changes only under both), so
 * one installed while we waited is evaluated too. 0 or -EBUSY. */
static int run_lock(struct bq *q, bool tail_side, struct bq_held *held, bool *full_lock)
{
    struct bq_shared *sh = q->sh;
    struct bq_side *side = tail_side ? &sh->tail : &sh->head;
    int *how = tail_side ? &held->tail : &held->head;
    *held = (struct bq_held){0, 0};
    *full_lock = atomic_load_explicit(&sh->trigger_sides, memory_order_relaxed) != 0;
    if (*full_lock)
        return bq_lock_full(q, held);
    *how = bq_lock_side(q, side);
    if (*how < 0 || atomic_load_explicit(&sh->trigger_sides, memory_order_relaxed) == 0)
        return *how < 0 ? *how : 0;
    bslock_unlock(&side->lock, *how);
    *full_lock = true;
    return bq_lock_full(q, held);
}

static void run_unlock(struct bq *q, bool tail_side, struct bq_held held, bool full_lock)
{
    if (full_lock)
        bq_unlock_full(q, held);
    else if (tail_side)
        bslock_unlock(&q->sh->tail.lock, held.tail);
    else
        bslock_unlock(&q->sh->head.lock, held.head);
}

int bq_enqueue_run(struct bq *q, const struct bq_entry *e, uint32_t n, uint32_t *done)
{
    if (done)
        *done = 0;
    if (!q || !q->sh || !e || !done || n == 0 || n > BQ_RUN_MAX)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (bq_in_own_callback(q))
        return MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK;
    int verr;
    n = run_valid_prefix(q, e, n, &verr);
    if (n == 0)
        return verr;
    struct bq_shared *sh = q->sh;
    struct bq_held held;
    bool full_lock;
    int r = run_lock(q, true, &held, &full_lock);
    if (r < 0)
        return r;
    struct bq_state before;
    if (full_lock)
        state_before_locked(q, &before);
    uint64_t tail = 0, head = 0;
    uint32_t k = 0;
    r = run_room_locked(q, n, full_lock, &tail, &head, &k);
    struct tmask fired = {{0}};
    if (r == 0 && k) {
        run_place_locked(q, e, k, tail);
        if (full_lock && q->order != BQ_ORDER_FIFO)
            bq_settle(q, head, tail + k); /* evaluated on the queue in order */
        bump_high_water(q, tail + k);
        if (full_lock)
            fired = trig_eval_locked(q, false, &before);
    }
    if (r == 0 && k < n && q->full_policy != BQ_FULL_DROP_OLDEST) {
        atomic_fetch_add_explicit(&sh->tail.rejected_full, 1, memory_order_relaxed);
        r = MBQ_BQ_ERR_QUEUE_IS_FULL;
    }
    run_unlock(q, true, held, full_lock);
    if (k)
        wake_consumers(q);
    if (tmask_any(&fired))
        trig_signal(q, fired);
    *done = k;
    /* All the valid prefix went in: the run stops at the entry refused. */
    return r == 0 && k == n ? verr : r;
}

/* Under the head lock: the tail a run may take up to. The consumer's view
 * (consumer_tail) may show a single entry by its mark; a run wants what the
 * producer has published, so the index is read when that view is short. */
static uint64_t run_tail_locked(struct bq *q, uint64_t head, uint32_t max, bool full_lock)
{
    if (full_lock) {
        uint64_t t = load_index(&q->sh->tail);
        atomic_store_explicit(&q->tail_cache, t, memory_order_relaxed);
        return t;
    }
    uint64_t tail = consumer_tail(q, head);
    if (tail - head < max) {
        uint64_t t = tail_seen(q, head, load_index(&q->sh->tail));
        if (t - head > tail - head && t - head <= q->capacity) {
            tail = t;
            atomic_store_explicit(&q->tail_cache, t, memory_order_relaxed);
        }
    }
    return tail;
}

/* Under the locks: reads the run at head (entries of the head's pool, up
 * to max) into out and hands it over, or nothing when the hook refuses.
 * The count, 0, or -EAGAIN / -EUCLEAN. */
static int run_take_locked(struct bq *q, struct bq_entry *out, uint32_t max, bool full_lock,
                           struct tmask *fired)
{
    struct bq_shared *sh = q->sh;
    uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_relaxed);
    uint64_t tail = run_tail_locked(q, head, max, full_lock);
    if (!bq_range_ok(q, head, tail)) {
        bq_mark_repair(q);
        return -EUCLEAN;
    }
    if (head == tail)
        return -EAGAIN;
    bq_settle(q, head, tail);
    uint32_t k = tail - head < max ? (uint32_t)(tail - head) : max;
    uint64_t handles[BQ_RUN_MAX];
    for (uint32_t i = 0; i < k; i++) {
        bq_slot_read(q, head + i, &out[i]);
        if (out[i].pool_id != out[0].pool_id) {
            k = i;
            break;
        }
        handles[i] = out[i].handle;
    }
    if (q->hooks.run_begin(q->hooks.ctx, out[0].pool_id, handles, k) != 0)
        return 0;
    struct bq_state before;
    if (full_lock)
        state_before_locked(q, &before);
    for (uint32_t i = 0; i < k; i++)
        MBQ_TRACE((uint32_t)out[i].handle - 1, TR_TAKE, out[i].handle,
                  BQ_TAG(q) | (head + i) << 16 | 3 << 12);
    side_pass_run(&sh->head, out, k, head + k);
    if (full_lock)
        *fired = trig_eval_locked(q, false, &before);
    return (int)k;
}

int bq_dequeue_run(struct bq *q, struct bq_entry *out, uint32_t max)
{
    if (!q || !q->sh || !out || max == 0 || max > BQ_RUN_MAX)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (bq_in_own_callback(q))
        return MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK;
    if (!q->hooks.run_begin)
        return 0;
    struct bq_shared *sh = q->sh;
    uint64_t h = atomic_load_explicit(&sh->head.index, memory_order_acquire);
    if (consumer_tail(q, h) == h)
        return -EAGAIN;
    struct bq_held held;
    bool full_lock;
    int r = run_lock(q, false, &held, &full_lock);
    if (r < 0)
        return r;
    struct tmask fired = {{0}};
    r = run_take_locked(q, out, max, full_lock, &fired);
    run_unlock(q, false, held, full_lock);
    if (r > 0)
        wake_producers(q);
    if (tmask_any(&fired))
        trig_signal(q, fired);
    return r;
}
