/* What the parts of the memory pool share (pool.c, pool_intent.c,
 * pool_cache.c, pool_age.c, pool_repair.c, pool_client.c, pool_meta.c):
 * known to those files alone.
 *
 * Role: the pool's private vocabulary — the ref word and handles, the
 * intent records a move opens and closes, the clock and the wake-up of
 * allocators — and the prototypes by which one part calls another. What
 * an allocation, a retain or a release runs on its fast path is here as
 * static inline or stays in pool.c, so that the split costs it no call.
 *
 * Invariants these helpers keep (for the whole list see pool.c):
 *  - a live block's ref word changes only by CAS, and every change starts
 *    from ref_plain (the audit bit cleared), so a recount that saw the old
 *    word fails its own CAS;
 *  - a handle is (generation << 32 | index + 1): 0 is never one, and
 *    pool_decode bounds the index before anything is read through it;
 *  - a move stores its block's handle in its record (pool_intent_open,
 *    pool_intent_point) before its first step and clears it with release
 *    after its last (pool_intent_close); with no record free it raises the
 *    slot's overflow count instead. */
#ifndef MBQ_SHM_POOL_INTERNAL_H
#define MBQ_SHM_POOL_INTERNAL_H

#include "pool_layout.h"

#include "futex.h"
#include "trace.h"

#include "common/macro.h" /* READ_ONCE */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* Functions one part of the pool calls in another: hidden, so that they
 * stay out of libmbq's symbol table and the compiler may inline them in
 * their own file (see BQ_INTERNAL in bq_internal.h). */
#define POOL_INTERNAL __attribute__((visibility("hidden")))

#define POOL_RC_MASK 0xffffffffull

/* A client slot whose pid has this bit is being reclaimed by that pid. */
#define POOL_PID_RECLAIMING 0x80000000u

/* A dead client's slot whose holdings are released but whose intents wait
 * for a recount (pool_reclaim_dead_ex retries them): the bit alone, no pid,
 * so it names no live task. */
#define POOL_PID_PENDING POOL_PID_RECLAIMING

#define POOL_AUDIT64 ((uint64_t)POOL_RC_AUDIT)

/* Blocks detached per round of age-out: bounds the stack and the time any
 * block spends AGING. */
#define POOL_AGE_BATCH 64

/* ---- ref word and handles ---- */

static inline uint64_t ref_make(uint32_t gen, uint32_t rc)
{
    return (uint64_t)gen << 32 | rc;
}

static inline uint32_t ref_gen(uint64_t r)
{
    return (uint32_t)(r >> 32);
}

/* The refcount field without the audit bit (see POOL_RC_AUDIT). */
static inline uint32_t ref_count(uint64_t r)
{
    return (uint32_t)(r & POOL_RC_MASK) & ~POOL_RC_AUDIT;
}

/* r with the audit bit cleared: what every change of a live ref word
 * starts from, so that it makes a recount's final CAS fail. */
static inline uint64_t ref_plain(uint64_t r)
{
    return r & ~POOL_AUDIT64;
}

/* A refcount field of POOL_RC_CACHED | slot: free, in that client's cache
 * (see "Client caches" in pool.h). Never a count of references: retain
 * stops below it. */
static inline bool rc_cached(uint32_t rc)
{
    return rc >= POOL_RC_CACHED;
}

static inline bool rc_live(uint32_t rc)
{
    return rc != 0 && rc < POOL_RC_CACHED;
}

static inline uint32_t rc_owner(uint32_t rc)
{
    return rc & ~POOL_RC_CACHED;
}

/* Generation 0 never appears in a handle, so that 0 is never a valid one. */
static inline uint32_t gen_next(uint32_t g)
{
    return g + 1 ? g + 1 : 1;
}

static inline bool pool_decode(const struct pool *p, uint64_t h, uint32_t *idx, uint32_t *gen)
{
    uint32_t lo = (uint32_t)h, g = (uint32_t)(h >> 32);
    if (lo == 0 || g == 0 || lo - 1 >= p->block_count)
        return false;
    *idx = lo - 1;
    *gen = g;
    return true;
}

static inline _Atomic uint32_t *pool_holding(const struct pool *p, uint32_t slot, uint32_t idx)
{
    return &p->holdings[(size_t)slot * p->block_count + idx];
}

static inline uint64_t pool_data_off(const struct pool *p)
{
    return (uint64_t)(p->data - (uint8_t *)p->seg.base);
}

/* ---- size classes (pool.h "Size classes") ----
 * A pool of one class takes the first branch of each: the class is 0,
 * the data p->data, the size p->block_size. */

/* The class of block idx (< block_count). */
static inline uint32_t pool_class_of(const struct pool *p, uint32_t idx)
{
    uint32_t c = 0;
    if (__builtin_expect(p->nclasses > 1, 0))
        while (c + 1 < p->nclasses && idx >= p->cls[c + 1].first)
            c++;
    return c;
}

/* A pool of several classes: out of line, so that a pool of one class
 * pays one test for them (pool.c). */
POOL_INTERNAL uint64_t pool_blk_size_classed(const struct pool *p, uint32_t idx);
POOL_INTERNAL uint8_t *pool_blk_data_classed(const struct pool *p, uint32_t idx);

static inline uint64_t pool_blk_size(const struct pool *p, uint32_t idx)
{
    if (__builtin_expect(p->nclasses <= 1, 1))
        return p->block_size;
    return pool_blk_size_classed(p, idx);
}

static inline uint8_t *pool_blk_data(const struct pool *p, uint32_t idx)
{
    if (__builtin_expect(p->nclasses <= 1, 1))
        return p->data + (size_t)idx * p->block_size;
    return pool_blk_data_classed(p, idx);
}

/* Whether idx is a block of class c (a list of c may link no other). */
static inline bool pool_in_class(const struct pool *p, uint32_t c, uint32_t idx)
{
    return idx - p->cls[c].first < p->cls[c].count;
}

/* ---- who we are, whether a task lives, the clock ---- */

/* How this process names itself in its client slot: by its client id where
 * it has one (shm/lock.h), so that the slot means the same process in every
 * pid namespace, else by its pid. */
static inline uint32_t pool_self_id(void)
{
    uint32_t id = slock_identity();
    return id ? SLOCK_CID | id << SLOCK_CID_SHIFT : (uint32_t)getpid();
}

/* A pid, tid or client id from the segment names a live task. Values that
 * cannot be owners count as dead, so a scribbled slot is reclaimed, not kept. */
static inline bool pool_task_alive(uint32_t v)
{
    v &= ~POOL_PID_RECLAIMING;
    if (v == 0 || v > SLOCK_TID_MASK)
        return false;
    return slock_tid_alive(v); /* a zombie (killed, not yet reaped) is dead */
}

/* The time a block joins the warm list. CLOCK_MONOTONIC_COARSE is the same
 * clock as mono_ns() read at tick resolution (1-10 ms, far below any useful
 * age-out period) and costs a third of it here (10 vs 30 ns through the
 * vDSO): with mono_ns() the clock read was 40% of an alloc+free pair. A
 * coarse stamp lags the precise clock by at most a tick, so a block may be
 * aged out that much early, which is harmless. */
static inline uint64_t pool_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- intents (the records; their rules in pool_intent.c) ---- */

/* What a move holds: the record word it set (w), or the slot's overflow
 * count it raised (ovf), or neither (nested in a move of the same block). */
struct pool_itok {
    _Atomic uint64_t *w;
    _Atomic uint32_t *ovf;
};

/* The cold halves of the intent helpers below (pool_intent.c). */
POOL_INTERNAL struct pool_intent *pool_intent_rec_slow(struct pool *p, uint32_t tid);
POOL_INTERNAL struct pool_itok pool_intent_overflow(struct pool *p);
POOL_INTERNAL void pool_audit_spoil(_Atomic uint64_t *ref, uint64_t r);

/* The calling thread's record in this process's slot, NULL when all are
 * taken. The mapping's first mover (usually its only one) finds it in
 * struct pool: two loads, no thread-local lookup. */
static inline struct pool_intent *pool_intent_rec(struct pool *p)
{
    uint32_t tid = slock_self();
    if (__builtin_expect(atomic_load_explicit(&p->irec_tid, memory_order_relaxed) == tid, 1)) {
        struct pool_intent *rec = p->irec;
        if (__builtin_expect(atomic_load_explicit(&rec->owner, memory_order_relaxed) == tid, 1))
            return rec;
    }
    return pool_intent_rec_slow(p, tid);
}


/* Opens an intent for handle (0: the block is not chosen yet; the caller
 * names it with pool_intent_point before its first step). */
static inline struct pool_itok pool_intent_open(struct pool *p, uint64_t handle)
{
    struct pool_intent *rec = pool_intent_rec(p);
    if (__builtin_expect(rec != NULL, 1)) {
        uint64_t h0 = atomic_load_explicit(&rec->h[0], memory_order_relaxed);
        uint64_t h1 = atomic_load_explicit(&rec->h[1], memory_order_relaxed);
        if (handle && (h0 == handle || h1 == handle))
            return (struct pool_itok){NULL, NULL}; /* nested: the outer move covers it */
        _Atomic uint64_t *w = h0 == 0 ? &rec->h[0] : h1 == 0 ? &rec->h[1] : NULL;
        if (w) {
            if (handle) {
                atomic_store_explicit(w, handle, memory_order_relaxed);
                MBQ_TRACE((uint32_t)handle - 1, TR_INTENT_SET, handle,
                          (w - &rec->h[0]) | p->slot << 8);
            }
            return (struct pool_itok){w, NULL};
        }
    }
    return pool_intent_overflow(p);
}

static inline void pool_intent_point(struct pool_itok t, uint64_t handle)
{
    MBQ_TRACE((uint32_t)handle - 1, TR_INTENT_SET, handle, t.w ? 0xaa : 0xbb);
    if (t.w)
        atomic_store_explicit(t.w, handle, memory_order_relaxed);
}

/* After the move's last step: what it did is visible before the record is
 * clear. */
static inline void pool_intent_close(struct pool_itok t)
{
#ifdef MBQ_POOL_TRACE
    if (t.w) {
        uint64_t th = atomic_load_explicit(t.w, memory_order_relaxed);
        MBQ_TRACE((uint32_t)th - 1, TR_INTENT_CLR, th, 0xcc);
    }
#endif
    if (t.w)
        atomic_store_explicit(t.w, 0, memory_order_release);
    else if (t.ovf)
        atomic_fetch_sub_explicit(t.ovf, 1, memory_order_release);
}

/* Before a first step that is not a CAS of idx's ref word (a holding's
 * decrement, a queue's removal of an entry): the intent's store, then a
 * look at the ref word; a recount in progress is made to fail now, before
 * the step can change what it counts. */
static inline void pool_intent_fence(struct pool *p, uint32_t idx)
{
    if (__builtin_expect(slock_membarrier_ready(), 1))
        atomic_signal_fence(memory_order_seq_cst); /* slock_heavy_barrier fences us */
    else
        atomic_thread_fence(memory_order_seq_cst);
    _Atomic uint64_t *ref = &p->blocks[idx].ref;
    uint64_t r = atomic_load_explicit(ref, memory_order_relaxed);
    if (__builtin_expect((r & POOL_AUDIT64) != 0, 0))
        pool_audit_spoil(ref, r);
}

static inline uint64_t handle_make(uint32_t gen, uint32_t idx)
{
    return (uint64_t)gen << 32 | (idx + 1);
}

/* ---- the lock ---- */

static inline void pool_unlock(struct pool *p)
{
    slock_unlock(&p->sh->lock);
}

/* ---- freeing and the client caches ---- */

/* Takes cached block idx back from whichever cache has it, if its ref word
 * is still r: refcount 0 and the next generation in one CAS, so that its
 * owner's claim fails. The caller files it (pool lock held). */
static inline bool pool_uncache_one(struct pool *p, uint32_t idx, uint64_t r)
{
    uint64_t r0 = r;
    bool ok = rc_cached(ref_count(r)) &&
              atomic_compare_exchange_strong_explicit(&p->blocks[idx].ref, &r,
                                                      ref_make(gen_next(ref_gen(r)), 0),
                                                      memory_order_acq_rel, memory_order_relaxed);
    if (ok)
        MBQ_TRACE(idx, TR_CACHE, r0, ref_make(gen_next(ref_gen(r0)), 0));
    (void)r0;
    return ok;
}


/* A block goes back on a list (pool lock held). */
static inline void pool_used_dec_locked(struct pool *p)
{
    uint32_t used = READ_ONCE(p->sh->used_count);
    p->sh->used_count = used ? used - 1 : 0;
}

/* Wakes blocking allocators, if one armed free_seq (futex.h) and no one
 * woke them since: a Dekker pair — releaser: file the block (list or
 * cache), load free_seq; allocator: arm free_seq, heavy barrier, try
 * again — asymmetric as the queues' (see wake_consumers in bq_internal.h),
 * so a release pays a load. */
static inline void pool_wake_allocators(struct pool *p)
{
    struct pool_shared *sh = p->sh;
    if (__builtin_expect(!slock_membarrier_ready(), 0))
        atomic_thread_fence(memory_order_seq_cst);
    else
        atomic_signal_fence(memory_order_seq_cst);
    if (__builtin_expect(futex_seq_armed(&sh->free_seq), 0))
        futex_sleepers_wake(&sh->free_seq, &sh->alloc_waiters, sh->alloc_tid,
                            POOL_ALLOC_WAITER_SLOTS, &p->idle_wakes, slock_tid_alive);
}

static inline struct pool_client *pool_self(const struct pool *p)
{
    return &p->clients[p->slot];
}

static inline void pool_counter_add(_Atomic uint64_t *ctr, uint64_t k)
{
    atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + k,
                          memory_order_relaxed);
}

/* Publishes the cache (count and entries) in our client slot, where
 * allocators that find the lists empty, age-out and repair look for it:
 * the entries from first on, then the count. */
static inline void pool_cache_publish(struct pool *p, uint32_t first)
{
    struct pool_client *c = pool_self(p);
    for (uint32_t i = first; i < p->cache.n; i++)
        atomic_store_explicit(&c->cache[i], p->cache.idx[i], memory_order_relaxed);
    atomic_store_explicit(&c->cached, p->cache.n, memory_order_release);
}

/* ---- outboxes (pool.h "Outboxes") ---- */

/* The live part of an outbox: [*head, *head + n). 0 when empty, or when
 * its counters are more than POOL_OUTBOX apart (scribbled: ignored). */
static inline uint32_t pool_outbox_span(const struct pool_outbox *o, uint32_t *head)
{
    uint32_t t = atomic_load_explicit(&o->tail, memory_order_acquire);
    uint32_t h = atomic_load_explicit(&o->head, memory_order_acquire);
    *head = h;
    return t - h <= POOL_OUTBOX ? t - h : 0;
}

/* Appends idx, just made a block of our cache by our CAS, to our outbox
 * (the cache's owner only; published by pool_outbox_publish): false when
 * it is full, the pool invalidated, or a pool of several classes, whose
 * allocations take no outbox runs (the caller caches the block, or frees
 * it). The flag is read after our CAS, as pool_cache_keep_run does. */
static inline bool pool_outbox_put(struct pool *p, uint32_t idx)
{
    if (__builtin_expect(p->nclasses > 1, 0))
        return false;
    struct pool_outbox *o = &p->clients[p->slot].outbox;
    if (__builtin_expect(p->obox.tail - p->obox.head_c >= POOL_OUTBOX, 0)) {
        uint32_t h = atomic_load_explicit(&o->head, memory_order_acquire);
        /* A head that no taker could have made (scribbled): the outbox
         * starts again at our tail, its entries left as stale hints. */
        if (p->obox.tail - h > POOL_OUTBOX &&
            atomic_compare_exchange_strong_explicit(&o->head, &h, p->obox.tail,
                                                    memory_order_acq_rel, memory_order_acquire))
            h = p->obox.tail;
        p->obox.head_c = h;
        if (p->obox.tail - h >= POOL_OUTBOX)
            return false; /* full (or scribbled again meanwhile) */
    }
    if (__atomic_load_n(&p->sh->flags, __ATOMIC_SEQ_CST) & POOL_F_INVALIDATED)
        return false;
    if (__builtin_expect(!p->obox.announced, 0)) {
        atomic_fetch_or_explicit(&p->sh->outbox_slots, 1ull << p->slot, memory_order_relaxed);
        p->obox.announced = true;
    }
    atomic_store_explicit(&o->idx[p->obox.tail & (POOL_OUTBOX - 1)], idx, memory_order_relaxed);
    p->obox.tail++;
    return true;
}

/* Makes what pool_outbox_put appended visible to takers. */
static inline void pool_outbox_publish(struct pool *p)
{
    atomic_store_explicit(&p->clients[p->slot].outbox.tail, p->obox.tail, memory_order_release);
}

/* Gives cached block idx its first reference if its ref word is still r
 * (cached, by anyone): the one CAS that decides between the owner and any
 * other claimant. */
static inline bool pool_claim_cached(struct pool *p, struct pool_itok t, uint32_t idx,
                                     uint64_t r)
{
    if (!rc_cached(ref_count(r)))
        return false;
    /* Named before the CAS that makes the reference (release: the record is
     * visible to whoever sees the new ref word). */
    pool_intent_point(t, handle_make(ref_gen(r), idx));
    uint64_t r0 = r;
    bool ok = atomic_compare_exchange_strong_explicit(&p->blocks[idx].ref, &r,
                                                      ref_make(ref_gen(r), 1),
                                                      memory_order_acq_rel, memory_order_relaxed);
    if (ok)
        MBQ_TRACE(idx, TR_CLAIM, r0, ref_make(ref_gen(r0), 1) | 0x100000000000000ull);
    (void)r0;
    return ok;
}

/* ---- what the parts call in each other (hidden) ---- */

/* pool.c: the lock, the free lists, freeing. */
POOL_INTERNAL int pool_lock(struct pool *p);
POOL_INTERNAL void pool_mark_repair(struct pool *p);
POOL_INTERNAL void pool_orphan_aging(struct pool *p, uint32_t idx, uint32_t tid);
POOL_INTERNAL int pool_punch(struct pool *p, uint32_t first, uint32_t count);
POOL_INTERNAL int pool_pop_warm_locked(struct pool *p, uint32_t c, uint32_t *out);
POOL_INTERNAL void pool_push_warm_locked(struct pool *p, uint32_t idx, uint64_t now);
POOL_INTERNAL void pool_push_cold_locked(struct pool *p, uint32_t idx);
POOL_INTERNAL void pool_free_block(struct pool *p, uint32_t idx, uint64_t expect);
/* Drops up to k references on idx whatever its generation. */
POOL_INTERNAL uint32_t pool_drop_refs(struct pool *p, uint32_t idx, uint32_t k);

/* pool_cache.c: the client caches' slow half. */
POOL_INTERNAL bool pool_cache_adopt(struct pool *p, uint32_t self, uint32_t o);
POOL_INTERNAL uint32_t pool_cache_fill_locked(struct pool *p, uint32_t c);
POOL_INTERNAL void pool_cache_spill(struct pool *p);
POOL_INTERNAL int pool_steal_locked(struct pool *p, uint32_t c, struct pool_itok t, uint32_t *idx_out,
                                    uint32_t *gen_out);
POOL_INTERNAL uint32_t pool_uncache_locked(struct pool *p, uint32_t slot, bool scan, uint64_t now,
                                           uint64_t stamped_before);
POOL_INTERNAL void pool_fold_counters_locked(struct pool *p, uint32_t slot);
POOL_INTERNAL uint32_t pool_outbox_take(struct pool *p);
POOL_INTERNAL void pool_outbox_init(struct pool *p);

/* pool_repair.c: rebuild the lists and counters from the descriptors; tell
 * whether they describe the descriptors exactly. */
POOL_INTERNAL void pool_repair_locked(struct pool *p);
POOL_INTERNAL bool pool_lists_ok_locked(struct pool *p);

/* pool_client.c: client slots. */
POOL_INTERNAL int pool_claim_slot(struct pool *p);
POOL_INTERNAL uint64_t pool_reclaim_holdings(struct pool *p, uint32_t slot);
POOL_INTERNAL void pool_finish_slot(struct pool *p, uint32_t slot, uint64_t n);
POOL_INTERNAL void pool_intents_forget(struct pool *p, uint32_t slot);

#endif
