/* Clients of a memory pool: their slots, what each holds, and what is
 * done for one that died — its holdings released, its intents recounted.
 *
 * Role: claiming and finishing a client slot (attach, detach), the recount
 * of a block a dead mover may have left too high (pool_audit), and the
 * reclaim of dead clients (pool_reclaim_*), run by mbqd or by any attacher.
 *
 * Invariants (see "Accounting" in pool.h):
 *  - a live block's refcount is the sum of the slots' holdings, the queue
 *    entries naming it and the moves in flight; a death leaves it too high,
 *    never too low;
 *  - a slot's holdings are released only once its owner is dead (the pid
 *    word says so, or carries POOL_PID_RECLAIMING | the reclaimer's id, so
 *    that two reclaimers never release the same holdings);
 *  - a recount acts on a block only when no live mover names it and its
 *    ref word did not move (the audit bit, cleared by every change of the
 *    word, makes the final CAS fail otherwise); a slot whose intents could
 *    not all be resolved stays PENDING and is retried (pool_audit_retry).
 * Limits: POOL_MAX_CLIENTS slots per pool; a reclaim is O(block_count) per
 * dead slot. */
#include "pool_internal.h"

#include <mbq/status.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- client slots ---- */

/* Releases every reference recorded for slot, which the caller has claimed
 * (its pid word is ours), and zeroes its holdings. */
uint64_t pool_reclaim_holdings(struct pool *p, uint32_t slot)
{
    uint64_t released = 0;
    for (uint32_t i = 0; i < p->block_count; i++) {
        _Atomic uint32_t *h = pool_holding(p, slot, i);
        /* Load first: most rows are zero, and writing them would fault in
         * pages nobody needs. */
        if (atomic_load_explicit(h, memory_order_relaxed) == 0)
            continue;
        /* Holding first, refcount second, under our own intent: a
         * reclaimer that dies in between is reclaimed in turn. */
        uint64_t r = atomic_load_explicit(&p->blocks[i].ref, memory_order_relaxed);
        const struct pool_itok t = pool_intent_open(p, handle_make(ref_gen(r), i));
        pool_intent_fence(p, i);
        uint32_t k = atomic_exchange_explicit(h, 0, memory_order_acq_rel);
        MBQ_TRACE(i, TR_RECLAIM_HOLD, slot, k);
        if (k)
            released += pool_drop_refs(p, i, k);
        pool_intent_close(t);
    }
    return released;
}

/* Finishes the reclaim of a client slot whose holdings were released (n
 * references): takes back the blocks it cached and folds its counters into
 * the pool's, before the slot is freed or reused. */
void pool_finish_slot(struct pool *p, uint32_t slot, uint64_t n)
{
    if (pool_lock(p) < 0) {
        /* Cached blocks of the slot stay cached until a repair finds no
         * live cache holds them; the counters are lost. */
        pool_mark_repair(p);
        return;
    }
    p->sh->reclaimed += n;
    pool_uncache_locked(p, slot, true, pool_clock_ns(), 0);
    pool_fold_counters_locked(p, slot);
    pool_unlock(p);
}

/* Clears the intent records of a slot being reused. */
void pool_intents_forget(struct pool *p, uint32_t slot)
{
    struct pool_client *c = &p->clients[slot];
    for (unsigned i = 0; i < POOL_INTENTS; i++) {
#ifdef MBQ_POOL_TRACE
        for (unsigned w = 0; w < 2; w++) {
            uint64_t th = atomic_load_explicit(&c->intent[i].h[w], memory_order_relaxed);
            if (th)
                MBQ_TRACE((uint32_t)th - 1, TR_INTENT_FORGET, th, slot);
        }
#endif
        atomic_store_explicit(&c->intent[i].h[0], 0, memory_order_relaxed);
        atomic_store_explicit(&c->intent[i].h[1], 0, memory_order_relaxed);
        atomic_store_explicit(&c->intent[i].owner, 0, memory_order_relaxed);
    }
    for (unsigned i = 0; i < POOL_RUNS; i++) {
        atomic_store_explicit(&c->run[i].n, 0, memory_order_relaxed);
        atomic_store_explicit(&c->run[i].owner, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&c->intent_overflow, 0, memory_order_release);
}

/* Claims a client slot for this process: a free one, else one whose process
 * is dead, after releasing what that process held. The slot is marked as
 * being reclaimed by us first, so that no other reclaimer touches holdings
 * that are already ours. */
int pool_claim_slot(struct pool *p)
{
    uint32_t self = pool_self_id();
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
        uint32_t v = 0;
        if (atomic_compare_exchange_strong(&p->clients[s].pid, &v, self)) {
            p->slot = s;
            p->pid = self;
            pool_outbox_init(p);
            return 0;
        }
    }
    /* A slot whose intents wait for a recount is taken last: reusing it
     * drops them (a leak, never a wrong free). */
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
            uint32_t v = atomic_load(&p->clients[s].pid);
            if (v == 0 || (pass == 0 && v == POOL_PID_PENDING) || pool_task_alive(v) ||
                !atomic_compare_exchange_strong(&p->clients[s].pid, &v,
                                                self | POOL_PID_RECLAIMING))
                continue;
            pool_finish_slot(p, s, pool_reclaim_holdings(p, s));
            pool_intents_forget(p, s);
            atomic_store(&p->clients[s].pid, self);
            p->slot = s;
            p->pid = self;
            pool_outbox_init(p);
            return 0;
        }
    return -EUSERS;
}

static int pool_clamp_int(uint64_t v)
{
    return v > INT_MAX ? INT_MAX : (int)v;
}

/* ---- recount ---- */

/* The handles a run record names now: its count, bounded (a scribbled
 * count reads as a full run). */
static uint32_t pool_run_count(const struct pool_run *run)
{
    uint32_t n = atomic_load_explicit(&run->n, memory_order_acquire);
    return n > POOL_RUN_MAX ? POOL_RUN_MAX : n;
}

/* Whether run names block idx. Read after the recount's barrier: a run
 * begun before it is seen whole (its handles precede its count); one begun
 * after it sees the audit bit at its begin and spoils the recount; a run
 * that ended meanwhile has made all its steps, which the count after this
 * sees. */
static bool pool_run_names(const struct pool_run *run, uint32_t idx)
{
    uint32_t n = pool_run_count(run);
    for (uint32_t k = 0; k < n; k++) {
        uint64_t h = atomic_load_explicit(&run->h[k], memory_order_acquire);
        if (h && (uint32_t)h - 1 == idx)
            return true;
    }
    return false;
}

/* Whether a live process may be moving block idx: a live slot (other than
 * those we are reclaiming) has an intent naming it, or has moves whose
 * blocks are unknown. */
static bool pool_intent_live(struct pool *p, uint32_t idx)
{
    const uint32_t mine = pool_self_id() | POOL_PID_RECLAIMING;
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
        struct pool_client *c = &p->clients[s];
        uint32_t v = atomic_load_explicit(&c->pid, memory_order_acquire);
        if (v == 0 || v == mine || !pool_task_alive(v))
            continue;
        if (atomic_load_explicit(&c->intent_overflow, memory_order_acquire))
            return true;
        for (unsigned i = 0; i < POOL_INTENTS; i++)
            for (unsigned w = 0; w < 2; w++) {
                uint64_t h = atomic_load_explicit(&c->intent[i].h[w], memory_order_acquire);
                if (h && (uint32_t)h - 1 == idx)
                    return true;
            }
        for (unsigned i = 0; i < POOL_RUNS; i++)
            if (pool_run_names(&c->run[i], idx))
                return true;
    }
    return false;
}

/* Step 3 of a recount: what holds references to block idx — every slot's
 * holding, every queue entry (count, when given). -EAGAIN when the queues
 * could not be counted now. */
static int audit_count_holders(struct pool *p, uint32_t idx, uint64_t handle,
                               pool_count_fn count, void *ctx, uint64_t *n_out)
{
    uint64_t n = 0;
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++)
        n += atomic_load_explicit(pool_holding(p, s, idx), memory_order_acquire);
    if (count) {
        uint64_t q = 0;
        if (count(ctx, handle, &q) < 0)
            return -EAGAIN;
        n += q;
    }
    *n_out = n;
    return 0;
}

static inline __attribute__((always_inline)) int
pool_audit_impl(struct pool *p, uint64_t handle, pool_count_fn count, void *ctx);
int pool_audit(struct pool *p, uint64_t handle, pool_count_fn count, void *ctx)
{
    int res = pool_audit_impl(p, handle, count, ctx);
#ifdef MBQ_POOL_TRACE
    uint32_t ti, tg;
    if (p && p->sh && pool_decode(p, handle, &ti, &tg))
        MBQ_TRACE(ti, TR_AUDIT, atomic_load(&p->blocks[ti].ref),
                  (uint64_t)(int64_t)res << 8 | 0xee);
#endif
    return res;
}

/* (Inlined: pool_audit without the trace is this.) */
static inline __attribute__((always_inline)) int
pool_audit_impl(struct pool *p, uint64_t handle, pool_count_fn count, void *ctx)
{
    uint32_t idx, gen;
    if (!p || !p->sh)
        return -EINVAL;
    if (!pool_decode(p, handle, &idx, &gen))
        return 0; /* a scribbled record names no block */
    struct pool_block *b = &p->blocks[idx];
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire);
    uint32_t rc = ref_count(r);
    if (rc == 0 && ref_gen(r) == gen_next(gen) && READ_ONCE(b->state) == POOL_BLOCK_USED) {
        /* A last release that died between its CAS and filing the block.
         * pool_free_block files it only if it is still so, under the lock;
         * a live releaser in that instant would file it itself. */
        if (pool_intent_live(p, idx))
            return -EAGAIN;
        pool_free_block(p, idx, r);
        return 0;
    }
    if (ref_gen(r) != gen || !rc_live(rc))
        return 0; /* freed since (or cached): no reference of that generation is left */

    /* 1. The audit bit: from here, any change of the ref word fails our
     * final CAS. 2. A barrier on every CPU: a mover that stored its intent
     * before it is seen below; one that did not sees the bit before its
     * first step and clears it. */
    if (!(r & POOL_AUDIT64)) {
        uint64_t ra = r | POOL_AUDIT64;
        if (!atomic_compare_exchange_strong_explicit(&b->ref, &r, ra, memory_order_seq_cst,
                                                     memory_order_relaxed))
            return -EAGAIN;
        r = ra;
    }
    slock_heavy_barrier();
    uint64_t n = 0;
    if (pool_intent_live(p, idx) || audit_count_holders(p, idx, handle, count, ctx, &n) < 0)
        goto busy;
    MBQ_TRACE(idx, TR_AUDIT, rc | n << 32, r);
    if (n >= rc) {
        /* Exact (the dead mover finished, or had not begun), but only if
         * nothing moved: a live move during the count (a copy into a queue:
         * holding read before, entry read after) raises n past the rc read
         * before it while the excess is still there. Then the word moved,
         * our CAS fails, and the recount is retried. */
        if (!atomic_compare_exchange_strong_explicit(&b->ref, &r, ref_plain(r),
                                                     memory_order_acq_rel, memory_order_relaxed))
            return -EAGAIN;
        return 0;
    }
    /* 4. The excess goes, if nothing moved meanwhile. */
    uint64_t nr = n == 0 ? ref_make(gen_next(gen), 0) : ref_make(gen, (uint32_t)n);
    if (!atomic_compare_exchange_strong_explicit(&b->ref, &r, nr, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return -EAGAIN;
    __atomic_fetch_add(&p->sh->audited, (uint64_t)(rc - n), __ATOMIC_RELAXED);
    if (n == 0)
        pool_free_block(p, idx, nr);
    return 1;
busy:
    atomic_compare_exchange_strong_explicit(&b->ref, &r, ref_plain(r), memory_order_acq_rel,
                                            memory_order_relaxed);
    return -EAGAIN;
}

/* ---- reclaim of dead clients ---- */

/* The same for a dead slot's run record: every block it names is recounted
 * as if an intent named it (a run is an intent on each of its blocks for
 * its whole length, so a death at any point of it leaves each of them
 * exact or one too high). Each settled handle is cleared; the run is over
 * once all are. Returns how many must be retried. */
static unsigned pool_resolve_run(struct pool *p, struct pool_run *run, uint32_t slot,
                                 pool_count_fn count, void *ctx)
{
    uint32_t n = pool_run_count(run);
    unsigned left = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t h = atomic_load_explicit(&run->h[k], memory_order_acquire);
        if (!h)
            continue;
        if (count && pool_audit(p, h, count, ctx) == -EAGAIN) {
            left++;
            continue;
        }
        MBQ_TRACE((uint32_t)h - 1, TR_INTENT_FORGET, h, slot | 0x200);
        atomic_store_explicit(&run->h[k], 0, memory_order_relaxed);
    }
    (void)slot;
    if (!left)
        atomic_store_explicit(&run->n, 0, memory_order_relaxed);
    return left;
}

/* Recounts the blocks the intents of slot (a dead client's, claimed by us)
 * name, and clears each record that is settled. Returns how many must be
 * retried. Without count, nothing is recounted: the records are cleared
 * and a reference a move left behind leaks. Moves whose block is unknown
 * (intent_overflow) leak likewise. */
static unsigned pool_resolve_intents(struct pool *p, uint32_t slot, pool_count_fn count,
                                     void *ctx)
{
    struct pool_client *c = &p->clients[slot];
    unsigned left = 0;
    for (unsigned i = 0; i < POOL_INTENTS; i++)
        for (unsigned w = 0; w < 2; w++) {
            uint64_t h = atomic_load_explicit(&c->intent[i].h[w], memory_order_acquire);
            if (!h)
                continue;
            if (count && pool_audit(p, h, count, ctx) == -EAGAIN)
                left++;
            else {
                MBQ_TRACE((uint32_t)h - 1, TR_INTENT_FORGET, h, slot | 0x100);
                atomic_store_explicit(&c->intent[i].h[w], 0, memory_order_relaxed);
            }
        }
    for (unsigned i = 0; i < POOL_RUNS; i++)
        left += pool_resolve_run(p, &c->run[i], slot, count, ctx);
    atomic_store_explicit(&c->intent_overflow, 0, memory_order_relaxed);
    return left;
}

/* Reclaims slot, which the caller has claimed (its pid word is ours):
 * holdings, intents, cache. The slot is then free, or pending when a
 * recount must be retried. Returns the references released. */
static uint64_t pool_reclaim_claimed(struct pool *p, uint32_t slot, pool_count_fn count,
                                     void *ctx)
{
    uint64_t n = pool_reclaim_holdings(p, slot);
    unsigned left = pool_resolve_intents(p, slot, count, ctx);
    pool_finish_slot(p, slot, n);
    if (left) {
        atomic_store(&p->clients[slot].pid, POOL_PID_PENDING);
        return n;
    }
    pool_intents_forget(p, slot);
    atomic_store(&p->clients[slot].pid, 0);
    return n;
}

int pool_reclaim_slot_ex(struct pool *p, uint32_t slot, pool_count_fn count, void *ctx)
{
    if (!p || !p->sh || slot >= POOL_MAX_CLIENTS)
        return -EINVAL;
    const uint32_t self = pool_self_id();
    _Atomic uint32_t *pid = &p->clients[slot].pid;
    uint32_t v = atomic_load(pid);
    for (;;) {
        if (v == 0)
            return 0;
        /* Another live process is reclaiming it: leave it to that one. */
        if ((v & POOL_PID_RECLAIMING) && v != (self | POOL_PID_RECLAIMING) &&
            pool_task_alive(v))
            return 0;
        if (atomic_compare_exchange_strong(pid, &v, self | POOL_PID_RECLAIMING))
            break;
    }
    return pool_clamp_int(pool_reclaim_claimed(p, slot, count, ctx));
}

int pool_reclaim_slot(struct pool *p, uint32_t slot)
{
    return pool_reclaim_slot_ex(p, slot, NULL, NULL);
}

/* Reclaims the slots whose process is gone (only the pending ones). */
static uint64_t pool_reclaim_dead_slots(struct pool *p, bool pending_only, pool_count_fn count,
                                        void *ctx)
{
    const uint32_t self = pool_self_id();
    uint64_t total = 0;
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
        _Atomic uint32_t *pid = &p->clients[s].pid;
        uint32_t v = atomic_load(pid);
        if (v == 0 || (pending_only && v != POOL_PID_PENDING) || pool_task_alive(v) ||
            !atomic_compare_exchange_strong(pid, &v, self | POOL_PID_RECLAIMING))
            continue;
        total += pool_reclaim_claimed(p, s, count, ctx);
    }
    return total;
}

bool pool_audit_pending(const struct pool *p)
{
    if (!p || !p->sh)
        return false;
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++)
        if (atomic_load_explicit(&p->clients[s].pid, memory_order_relaxed) == POOL_PID_PENDING)
            return true;
    return false;
}

int pool_audit_retry(struct pool *p, pool_count_fn count, void *ctx)
{
    if (!p || !p->sh)
        return -EINVAL;
    pool_reclaim_dead_slots(p, true, count, ctx);
    return pool_audit_pending(p) ? -EAGAIN : 0;
}

int pool_reclaim_dead_ex(struct pool *p, pool_count_fn count, void *ctx)
{
    if (!p || !p->sh)
        return -EINVAL;
    uint64_t total = pool_reclaim_dead_slots(p, false, count, ctx);
    /* The full check: blocks left AGING by an ager that died, and lists or
     * counters a peer scribbled on, are found here and the lists rebuilt.
     * (mbqd reclaims per client, with pool_reclaim_slot_ex, when a
     * connection drops; this sweep is for callers without a daemon.) */
    if (pool_lock(p) < 0)
        return pool_clamp_int(total);
    if (!pool_lists_ok_locked(p))
        pool_repair_locked(p);
    pool_unlock(p);
    return pool_clamp_int(total);
}

int pool_reclaim_dead(struct pool *p)
{
    return pool_reclaim_dead_ex(p, NULL, NULL);
}

/* ---- holdings, for the library and mbqd ---- */

uint64_t pool_held_by_self(struct pool *p)
{
    if (!p || !p->sh || p->slot >= POOL_MAX_CLIENTS)
        return 0;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < p->block_count; i++)
        sum += atomic_load_explicit(pool_holding(p, p->slot, i), memory_order_relaxed);
    return sum;
}

uint32_t pool_slot_owner(const struct pool *p, uint32_t slot)
{
    if (!p || !p->clients || slot >= POOL_MAX_CLIENTS)
        return 0;
    return atomic_load_explicit(&p->clients[slot].pid, memory_order_acquire);
}

uint64_t pool_slot_held(const struct pool *p, uint32_t slot)
{
    if (!p || !p->holdings || slot >= POOL_MAX_CLIENTS)
        return 0;
    const _Atomic uint32_t *row = p->holdings + (size_t)slot * p->block_count;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < p->block_count; i++)
        sum += atomic_load_explicit(&row[i], memory_order_relaxed);
    return sum;
}
