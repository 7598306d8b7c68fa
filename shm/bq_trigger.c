/* Triggers: CMBufferQueue triggers on a queue in shared memory.
 *
 * Role: the trigger table (install, remove, test, fds), the evaluation
 * that runs under both locks after a mutation that may fire one, and the
 * bookkeeping (trigger_sides, the count gates) that keeps every other
 * enqueue and dequeue on its single-lock path.
 *
 * Invariants:
 *  - the trigger set (state, condition, gen of each slot; trigger_count,
 *    trigger_hi, trigger_sides, enq_gate, deq_gate) changes only under both
 *    locks, and trig_sides_locked recomputes the derived words after every
 *    change (install, remove, repair);
 *  - every mutation that could take an installed level condition from false
 *    to true is evaluated under both locks, with the state before it taken
 *    under the same hold (trig_eval_locked has the argument); the others
 *    can only take it from true to false, so an edge is never lost or
 *    counted twice;
 *  - data readiness (7) alone keeps a stored level, and with it installed
 *    every operation evaluates, so that level is never stale;
 *  - a fired trigger is signalled only after both locks are let go; a
 *    process that lacks its eventfd leaves it pending for one that has it;
 *  - a token names a slot and its generation under the queue's nonce: a
 *    stale or forged one names nothing (token_slot).
 * Limits: BQ_MAX_TRIGGERS (128) per queue; an evaluation scans the slots up
 * to the highest in use, and the PTS-change conditions scan every entry. */
#include "bq_internal.h"

#include <mbq/status.h>

#include <errno.h>
#include <limits.h>
#include <unistd.h>

static bool cond_uses_time(int32_t c)
{
    return (c >= 1 && c <= 4) || c == 12;
}

static bool cond_is_event(int32_t c)
{
    return c == BQ_TRIGGER_MIN_PTS_CHANGES || c == BQ_TRIGGER_MAX_PTS_CHANGES ||
           c == BQ_TRIGGER_RESET;
}

/* Scans the live entries for the numeric PTS extremes; non-numeric ones are
 * skipped so that one invalid PTS cannot win "max" (it sorts above +inf). */
void scan_pts(struct bq *q, uint64_t head, uint64_t tail, mbq_time *min, mbq_time *max,
              mbq_time *end)
{
    mbq_time lo = MBQ_TIME_INVALID, hi = MBQ_TIME_INVALID, en = MBQ_TIME_INVALID;
    for (uint64_t i = head; i != tail; i++) {
        const mbq_time pts = slot_time(q, i, SLOT_PTS);
        if (!mbq_time_is_numeric(pts))
            continue;
        if (!mbq_time_is_valid(lo) || mbq_time_compare(pts, lo) < 0)
            lo = pts;
        if (!mbq_time_is_valid(hi) || mbq_time_compare(pts, hi) > 0)
            hi = pts;
        if (end) {
            const mbq_time d = slot_time(q, i, SLOT_DURATION);
            mbq_time x = mbq_time_is_numeric(d) ? mbq_time_add(pts, d) : pts;
            if (!mbq_time_is_valid(en) || mbq_time_compare(x, en) > 0)
                en = x;
        }
    }
    if (min)
        *min = lo;
    if (max)
        *max = hi;
    if (end)
        *end = en;
}

static bool head_ready_locked(struct bq *q, uint64_t head, uint64_t tail)
{
    if (head == tail)
        return false;
    if (!q->hooks.is_ready)
        return true;
    const struct bq_slot *e = &q->slots[head & q->mask];
    return q->hooks.is_ready(q->hooks.ctx, e->pool_id, e->handle);
}

/* Count, duration and end of data, from the side indices head and tail. */
static inline void state_counts_locked(struct bq *q, uint64_t head, uint64_t tail,
                                       struct bq_state *st)
{
    struct bq_shared *sh = q->sh;
    st->count = tail - head;
    mbq_time a = side_duration_load(&sh->tail), b = side_duration_load(&sh->head);
    st->duration = st->count ? mbq_time_subtract(a, b) : MBQ_TIME_ZERO;
    st->eod = atomic_load_explicit(&sh->flags, memory_order_relaxed) & BQ_F_END_OF_DATA;
}

static void state_locked(struct bq *q, struct bq_state *st, bool want_pts)
{
    struct bq_shared *sh = q->sh;
    uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&sh->tail.index, memory_order_relaxed);
    state_counts_locked(q, head, tail, st);
    st->head_ready = head_ready_locked(q, head, tail);
    st->have_pts = want_pts;
    if (want_pts)
        scan_pts(q, head, tail, &st->min_pts, &st->max_pts, NULL);
}

static bool trig_level(const struct bq_trigger *t, const struct bq_state *st)
{
    switch (t->condition) {
    case 1: return mbq_time_compare(st->duration, t->time) < 0;
    case 2: return mbq_time_compare(st->duration, t->time) <= 0;
    case 3: return mbq_time_compare(st->duration, t->time) > 0;
    case 4: return mbq_time_compare(st->duration, t->time) >= 0;
    case 7: return st->head_ready;
    case 8: return st->eod && st->count == 0;
    case 10: return (int64_t)st->count < t->threshold;
    case 11: return (int64_t)st->count > t->threshold;
    case 12:
        return mbq_time_compare(st->duration, t->time) >= 0 &&
               (int64_t)st->count > t->threshold;
    default: return false; /* events */
    }
}

/* One past the highest slot in use (install takes the lowest free one, so
 * a queue with few triggers scans few slots). Under both locks. */
static inline int trig_hi(const struct bq *q)
{
    uint32_t hi = atomic_load_explicit(&q->sh->trigger_hi, memory_order_relaxed);
    return hi < BQ_MAX_TRIGGERS ? (int)hi : BQ_MAX_TRIGGERS;
}

static bool needs_pts_scan(struct bq *q)
{
    for (int i = 0, hi = trig_hi(q); i < hi; i++) {
        const struct bq_trigger *t = &q->sh->triggers[i];
        if (atomic_load_explicit(&t->state, memory_order_relaxed) == 1 &&
            (t->condition == 5 || t->condition == 6))
            return true;
    }
    return false;
}

/* Which operations a condition's false->true edge can happen on (BQ_TRIG_*
 * in bq_layout.h). An enqueue adds one entry and, if its duration is a
 * plain non-negative one in the sum's timescale, adds to the duration; a
 * dequeue does the opposite. So "count below N", "duration below T" and
 * "end of data reached" can only turn true on a dequeue, "count above N",
 * "duration above T" and 12 only on an enqueue; the PTS changes and data
 * readiness on either; reset on neither (only bq_reset, which, like
 * end-of-data and drop-oldest, always takes both locks and evaluates). */
static uint32_t cond_sides(uint32_t c)
{
    switch (c) {
    case 1: case 2: return BQ_TRIG_DEQ | BQ_TRIG_ENQ_DUR;
    case 3: case 4: case 12: return BQ_TRIG_ENQ | BQ_TRIG_DEQ_DUR;
    case 8: case 10: return BQ_TRIG_DEQ;
    case 11: return BQ_TRIG_ENQ;
    case 9: return 0;
    default: return BQ_TRIG_ENQ | BQ_TRIG_DEQ; /* 5, 6, 7 */
    }
}

/* Recomputes trigger_sides and the count gates from the installed
 * triggers. Under both locks.
 *
 * The gates spare most evaluations of the side that can turn a count
 * trigger true. "count above N" (and 12, which needs it too) is false after
 * an enqueue that leaves at most N entries; the enqueuer holds the tail
 * lock, knows the tail, and its cached head is a lower bound of the head,
 * so tail + 1 - cached head bounds the count from above: at most the
 * smallest such N (enq_gate) and the enqueue cannot fire any of them.
 * Likewise "count below N" is false after a dequeue that leaves at least N
 * (and "end of data reached" after one that leaves at least 1); the
 * dequeuer's cached tail bounds the count from below. A change that leaves
 * the level false is not an edge, and the edge argument of
 * trig_eval_locked holds unchanged (it needs only that every change that
 * could take the level from false to true is evaluated). A condition of the
 * side without a count gate sets the gate so that nothing passes it. */
void trig_sides_locked(struct bq *q)
{
    struct bq_shared *sh = q->sh;
    uint32_t m = 0;
    int64_t enq_gate = INT64_MAX, deq_gate = INT64_MIN;
    uint32_t hi = 0;
    for (int i = 0; i < BQ_MAX_TRIGGERS; i++) {
        const struct bq_trigger *t = &sh->triggers[i];
        if (atomic_load_explicit(&t->state, memory_order_relaxed) != 1)
            continue;
        hi = (uint32_t)i + 1;
        uint32_t c = t->condition, cs = cond_sides(c);
        m |= cs;
        if (cs & BQ_TRIG_ENQ) {
            int64_t g = c == 11 || c == 12 ? t->threshold : INT64_MIN;
            enq_gate = g < enq_gate ? g : enq_gate;
        }
        if (cs & BQ_TRIG_DEQ) {
            int64_t g = c == 10 ? t->threshold : c == 8 ? 1 : INT64_MAX;
            deq_gate = g > deq_gate ? g : deq_gate;
        }
    }
    /* An enqueue that drops the oldest entry is also a dequeue. */
    if (sh->full_policy == BQ_FULL_DROP_OLDEST && (m & (BQ_TRIG_DEQ | BQ_TRIG_DEQ_DUR))) {
        m |= BQ_TRIG_ENQ;
        enq_gate = INT64_MIN;
    }
    atomic_store_explicit(&sh->trigger_hi, hi, memory_order_relaxed);
    atomic_store_explicit(&sh->enq_gate, enq_gate, memory_order_relaxed);
    atomic_store_explicit(&sh->deq_gate, deq_gate, memory_order_relaxed);
    atomic_store_explicit(&sh->trigger_sides, m, memory_order_relaxed);
}

/* The state a level condition reads, before a mutation (no PTS scan, no
 * readiness: those conditions keep their stored level, see below). */
void state_before_locked(struct bq *q, struct bq_state *st)
{
    struct bq_shared *sh = q->sh;
    uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&sh->tail.index, memory_order_relaxed);
    state_counts_locked(q, head, tail, st);
    st->head_ready = false;
    st->have_pts = false;
}

/* Evaluates every installed trigger after a change; returns the mask of the
 * ones that fired (false->true edge, or the event happened). before is the
 * state just before the change, taken under the same hold of both locks
 * (NULL: nothing but readiness changed).
 *
 * Why no edge is lost or doubled although only some operations get here
 * (trigger_sides): a level condition's edge is judged on the state before
 * and after this one change, not on a stored level. Between two evaluated
 * changes, only operations of the sides that cannot turn the condition
 * true ran (each holds its side's lock and is one step), so the condition
 * can only have gone true->false then; the evaluated change holds both
 * locks, so nothing moves between its before and after. The edges counted
 * are thus exactly the changes that take the level from false to true —
 * those the evaluation of every change under both locks counted. Data
 * readiness (7) can change without a mutation (a buffer made ready), so it
 * keeps its stored level; with it installed every operation is evaluated,
 * so that level is never stale. */
struct tmask trig_eval_locked(struct bq *q, bool reset_event, const struct bq_state *before)
{
    struct bq_shared *sh = q->sh;
    struct tmask mask = {{0}};
    if (atomic_load_explicit(&sh->trigger_count, memory_order_relaxed) == 0)
        return mask;
    struct bq_state st;
    bool pts = needs_pts_scan(q);
    state_locked(q, &st, pts);
    bool min_changed = false, max_changed = false;
    if (pts) {
        min_changed = mbq_time_compare(st.min_pts, sh->last_min_pts) != 0;
        max_changed = mbq_time_compare(st.max_pts, sh->last_max_pts) != 0;
        sh->last_min_pts = st.min_pts;
        sh->last_max_pts = st.max_pts;
    }
    if (!before)
        before = &st;
    for (int i = 0, hi = trig_hi(q); i < hi; i++) {
        struct bq_trigger *t = &sh->triggers[i];
        if (atomic_load_explicit(&t->state, memory_order_relaxed) != 1)
            continue;
        bool fire;
        switch (t->condition) {
        case 5: fire = min_changed; break;
        case 6: fire = max_changed; break;
        case 9: fire = reset_event; break;
        case 7: {
            bool level = trig_level(t, &st);
            fire = level && !t->level;
            t->level = level;
            break;
        }
        default: {
            bool level = trig_level(t, &st);
            fire = level && !trig_level(t, before);
            t->level = level;
        }
        }
        if (fire) {
            atomic_fetch_add_explicit(&t->fired, 1, memory_order_relaxed);
            tmask_set(&mask, (unsigned)i);
        }
    }
    return mask;
}

/* After unlocking: write the eventfd of each fired trigger this process
 * holds; leave the others pending for a process that holds theirs. */
void trig_signal(struct bq *q, struct tmask mask)
{
    for (unsigned k = 0; k < BQ_MAX_TRIGGERS / 64; k++) {
        while (mask.w[k]) {
            int i = (int)(k * 64) + __builtin_ctzll(mask.w[k]);
            mask.w[k] &= mask.w[k] - 1;
            struct bq_trigger *t = &q->sh->triggers[i];
            uint64_t fg = atomic_load_explicit(&q->trigger_fd[i], memory_order_acquire);
            int fd = (int)(uint32_t)fg;
            if (fd >= 0 && (uint32_t)(fg >> 32) == t->gen) {
                uint64_t one = 1;
                ssize_t w = write(fd, &one, sizeof(one));
                (void)w; /* EAGAIN: the counter is saturated, the reader will see it */
            } else {
                atomic_store_explicit(&t->pending, 1, memory_order_release);
            }
        }
    }
}

static uint64_t token_make(const struct bq *q, int slot, uint32_t gen)
{
    return (uint64_t)q->sh->nonce << 32 | (uint64_t)(gen & 0xffffff) << 8 | (uint64_t)slot;
}

/* The slot a token names, or -1. Call under the full lock. */
static int token_slot(const struct bq *q, uint64_t token)
{
    int slot = (int)(token & 0xff);
    if (slot >= BQ_MAX_TRIGGERS || (uint32_t)(token >> 32) != q->sh->nonce)
        return -1;
    const struct bq_trigger *t = &q->sh->triggers[slot];
    if (atomic_load_explicit(&t->state, memory_order_relaxed) != 1 ||
        (t->gen & 0xffffff) != (uint32_t)((token >> 8) & 0xffffff))
        return -1;
    return slot;
}

/* The lowest free trigger slot, or -1. Under both locks. */
static int trig_free_slot_locked(const struct bq *q)
{
    for (int i = 0; i < BQ_MAX_TRIGGERS; i++)
        if (atomic_load_explicit(&q->sh->triggers[i].state, memory_order_relaxed) == 0)
            return i;
    return -1;
}

/* Arms the trigger just written at slot: the PTS extremes a PTS-change
 * condition compares against, the current level of a level condition
 * (which, true already, fires at once), then
 * the slot installed. Returns the fired set. Under both locks. */
static struct tmask trig_arm_locked(struct bq *q, int slot)
{
    struct bq_shared *sh = q->sh;
    struct bq_trigger *t = &sh->triggers[slot];
    struct tmask fired = {{0}};
    if (t->condition == 5 || t->condition == 6) {
        uint64_t head = atomic_load_explicit(&sh->head.index, memory_order_relaxed);
        uint64_t tail = atomic_load_explicit(&sh->tail.index, memory_order_relaxed);
        scan_pts(q, head, tail, &sh->last_min_pts, &sh->last_max_pts, NULL);
    }
    if (!cond_is_event((int32_t)t->condition)) {
        struct bq_state st;
        state_locked(q, &st, false);
        t->level = trig_level(t, &st);
        if (t->level) {
            atomic_fetch_add_explicit(&t->fired, 1, memory_order_relaxed);
            tmask_set(&fired, (unsigned)slot);
        }
    }
    atomic_store_explicit(&t->state, 1, memory_order_release);
    return fired;
}

int bq_install_trigger(struct bq *q, int32_t condition, mbq_time time, int64_t threshold,
                       int efd, uint64_t *token_out)
{
    if (!q || !q->sh || !token_out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (condition < 1 || condition > 12)
        return MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION;
    if (cond_uses_time(condition) && (!mbq_time_is_numeric(time) || time.epoch != 0))
        return MBQ_BQ_ERR_BAD_TRIGGER_DURATION;
    struct bq_shared *sh = q->sh;
    struct bq_held held;
    int lr = bq_lock_full(q, &held);
    if (lr < 0)
        return lr;
    int slot = trig_free_slot_locked(q);
    if (slot < 0) {
        bq_unlock_full(q, held);
        return -ENOSPC;
    }
    struct bq_trigger *t = &sh->triggers[slot];
    uint32_t gen = ((t->gen + 1) & 0xffffff) ? t->gen + 1 : 1;
    *t = (struct bq_trigger){.condition = (uint32_t)condition,
                             .gen = gen,
                             .time = cond_uses_time(condition) ? time : MBQ_TIME_INVALID,
                             .threshold = threshold,
                             .owner_pid = (uint32_t)getpid()};
    struct tmask fired = trig_arm_locked(q, slot);
    atomic_fetch_add_explicit(&sh->trigger_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->trigger_gen, 1, memory_order_relaxed);
    trig_sides_locked(q);
    *token_out = token_make(q, slot, gen);
    atomic_store_explicit(&q->trigger_fd[slot], trigger_fd_pack(efd, gen), memory_order_release);
    bq_unlock_full(q, held);
    trig_signal(q, fired);
    return 0;
}

int bq_remove_trigger(struct bq *q, uint64_t token)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_held held;
    int lr = bq_lock_full(q, &held);
    if (lr < 0)
        return lr;
    int slot = token_slot(q, token);
    if (slot >= 0) {
        atomic_store_explicit(&q->sh->triggers[slot].state, 0, memory_order_relaxed);
        atomic_fetch_sub_explicit(&q->sh->trigger_count, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&q->sh->trigger_gen, 1, memory_order_relaxed);
        trig_sides_locked(q);
        atomic_store_explicit(&q->trigger_fd[slot], trigger_fd_pack(-1, 0), memory_order_release);
    }
    bq_unlock_full(q, held);
    return slot >= 0 ? 0 : MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
}

int bq_test_trigger(struct bq *q, uint64_t token)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_held held;
    int lr = bq_lock_full(q, &held);
    if (lr < 0)
        return lr;
    int slot = token_slot(q, token), r = MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
    if (slot >= 0) {
        struct bq_state st;
        state_locked(q, &st, false);
        r = trig_level(&q->sh->triggers[slot], &st);
    }
    bq_unlock_full(q, held);
    return r;
}

int bq_set_trigger_fd(struct bq *q, uint64_t token, int efd)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (efd < 0) {
        /* Forgetting is process-local and needs no lock (nor waits behind a
         * holder that does not let go): the slot's fd goes if it is still
         * this token's generation. */
        int slot = (int)(token & 0xff);
        if (slot >= BQ_MAX_TRIGGERS)
            return MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
        uint64_t fg = atomic_load_explicit(&q->trigger_fd[slot], memory_order_relaxed);
        if ((uint32_t)(fg >> 32) != (uint32_t)((token >> 8) & 0xffffff) ||
            !atomic_compare_exchange_strong_explicit(&q->trigger_fd[slot], &fg,
                                                     trigger_fd_pack(-1, 0),
                                                     memory_order_release, memory_order_relaxed))
            return MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
        return 0;
    }
    struct bq_held held;
    int lr = bq_lock_full(q, &held);
    if (lr < 0)
        return lr;
    int slot = token_slot(q, token);
    bool deliver = false;
    if (slot >= 0) {
        atomic_store_explicit(&q->trigger_fd[slot],
                              trigger_fd_pack(efd, q->sh->triggers[slot].gen),
                              memory_order_release);
        deliver = efd >= 0 &&
                  atomic_exchange_explicit(&q->sh->triggers[slot].pending, 0,
                                           memory_order_acq_rel);
    }
    bq_unlock_full(q, held);
    if (slot < 0)
        return MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
    if (deliver) {
        uint64_t one = 1;
        ssize_t w = write(efd, &one, sizeof(one));
        (void)w;
    }
    return 0;
}

bool bq_trigger_fds_complete(const struct bq *q)
{
    for (int i = 0; i < BQ_MAX_TRIGGERS; i++) {
        const struct bq_trigger *t = &q->sh->triggers[i];
        if (atomic_load_explicit(&t->state, memory_order_acquire) != 1)
            continue;
        uint64_t fg = atomic_load_explicit(&q->trigger_fd[i], memory_order_relaxed);
        if ((int)(uint32_t)fg < 0 || (uint32_t)(fg >> 32) != t->gen)
            return false;
    }
    return true;
}

int64_t bq_trigger_fired(struct bq *q, uint64_t token)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_held held;
    int lr = bq_lock_full(q, &held);
    if (lr < 0)
        return lr;
    int slot = token_slot(q, token);
    int64_t r = slot >= 0 ? (int64_t)atomic_load_explicit(&q->sh->triggers[slot].fired,
                                                           memory_order_relaxed)
                          : MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
    bq_unlock_full(q, held);
    return r;
}

int bq_note_data_ready(struct bq *q)
{
    if (!q || !q->sh)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (atomic_load_explicit(&q->sh->trigger_count, memory_order_relaxed) == 0)
        return 0;
    struct bq_held held;
    int lr = bq_lock_full(q, &held);
    if (lr < 0)
        return lr;
    struct tmask fired = trig_eval_locked(q, false, NULL);
    bq_unlock_full(q, held);
    trig_signal(q, fired);
    return 0;
}

uint32_t bq_trigger_gen(const struct bq *q)
{
    return atomic_load_explicit(&q->sh->trigger_gen, memory_order_acquire);
}

bool bq_trigger_pending_any(const struct bq *q)
{
    for (unsigned i = 0; i < BQ_MAX_TRIGGERS; i++)
        if (atomic_load_explicit(&q->sh->triggers[i].pending, memory_order_relaxed))
            return true;
    return false;
}

int bq_trigger_token_at(const struct bq *q, unsigned slot, uint64_t *token)
{
    if (slot >= BQ_MAX_TRIGGERS)
        return -EINVAL;
    const struct bq_trigger *t = &q->sh->triggers[slot];
    if (atomic_load_explicit(&((struct bq_trigger *)t)->state, memory_order_acquire) != 1)
        return 0;
    *token = token_make(q, (int)slot, READ_ONCE(t->gen));
    return 1;
}
