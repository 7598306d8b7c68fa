/* Client caches, the slow half: adoption of a process's cache by another
 * of its threads, filling from the lists, spilling back, refilling from
 * the outboxes, stealing from other caches, and taking cached blocks back
 * (see "Client caches" and "Outboxes" in pool.h). The fast half — pop on allocate, keep on release — is in pool.c.
 *
 * Role: what moves blocks between the free lists and the caches, and
 * between caches, under the pool lock or by CAS of the ref word.
 *
 * Invariants:
 *  - a cached block is USED, on no list, with refcount field
 *    POOL_RC_CACHED | slot (its owner's): never a count of references, so
 *    retain stops below it; it leaves the cache only by one CAS of its ref
 *    word — to refcount 1 (claimed by an allocation, the owner's or a
 *    thief's) or to 0 with the next generation (taken back) — so exactly
 *    one claimant wins;
 *  - only the cache's owner thread writes p->cache and publishes it in its
 *    client slot (entries first, then the count, with release); others
 *    only read the published copy, and a block it lists may already be
 *    gone (the CAS decides);
 *  - an invalidated pool caches nothing: fill checks the flag under the
 *    lock, and a spill that finds it set hands its blocks to the flush.
 * Limits: POOL_CACHE_MAX entries per cache, half filled or spilled at a
 * time; a cache whose owner died is taken back by the reclaim. */
#include "pool_internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Not the owner: becomes it if there is none yet, or if the owner thread
 * has exited (checked at most every 10 ms, since other threads of the
 * process come here on every call). A thread that exited is not in the
 * middle of a cache operation, and the cache's state is in struct pool, so
 * it can be taken over as it is. A fork child's copy of the struct is
 * never its own (p->pid). */
bool pool_cache_adopt(struct pool *p, uint32_t self, uint32_t o)
{
    if (o != 0) {
        uint64_t now = pool_clock_ns(),
                 last = atomic_load_explicit(&p->cache.checked_ns, memory_order_relaxed);
        if (now - last < 10000000u)
            return false;
        atomic_store_explicit(&p->cache.checked_ns, now, memory_order_relaxed);
    }
    if (pool_self_id() != p->pid)
        return false;
    if (o != 0 && !(syscall(SYS_tgkill, getpid(), (pid_t)o, 0) < 0 && errno == ESRCH))
        return false; /* the owner lives */
    return atomic_compare_exchange_strong_explicit(&p->cache.owner, &o, self,
                                                   memory_order_acq_rel, memory_order_relaxed);
}

/* Moves up to half a cache of free blocks of class c from its lists into
 * our cache (pool lock held), as many as there is room for (the classes
 * share the cache) and at most half the class. Warm blocks only: a cold one's pages are gone, and it
 * is handed out only when nothing else is left. Returns how many. */
uint32_t pool_cache_fill_locked(struct pool *p, uint32_t c)
{
    struct pool_shared *sh = p->sh;
    const uint32_t first = p->cache.n, room = p->cache.max - p->cache.n;
    uint32_t want = p->cache.max / 2 < room ? p->cache.max / 2 : room;
    /* A class's blocks are not all taken into one cache: at most half of
     * them a refill (a pool of one class: its cache's half, as always). */
    if (p->cls[c].count / 2 < want)
        want = p->cls[c].count / 2;
    uint32_t got = 0;
    /* The blocks most likely at the warm head: the last spill's. */
    for (uint32_t i = 0; i < POOL_CACHE_MAX / 2; i++) {
        uint32_t h = READ_ONCE(sh->spill_hint[i]);
        if (h < p->block_count)
            __builtin_prefetch(&p->blocks[h], 1);
    }
    while (got < want) {
        uint32_t idx;
        if (pool_pop_warm_locked(p, c, &idx) <= 0)
            break; /* empty (or corrupt: the caller's slow path repairs) */
        struct pool_block *b = &p->blocks[idx];
        b->state = POOL_BLOCK_USED; /* off the lists, whatever follows */
        b->freed_at_ns = 0;         /* age-out stamps it when it first sees it cached */
        sh->used_count = READ_ONCE(sh->used_count) + 1;
        uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire);
        uint32_t gen = ref_gen(r) ? ref_gen(r) : 1;
        if (ref_count(r) != 0 ||
            !atomic_compare_exchange_strong_explicit(&b->ref, &r,
                                                     ref_make(gen, POOL_RC_CACHED | p->slot),
                                                     memory_order_acq_rel, memory_order_relaxed))
            break; /* a listed block with a refcount: a repair files it */
        MBQ_TRACE(idx, TR_CACHE, ref_make(gen, 0), ref_make(gen, POOL_RC_CACHED | p->slot));
        p->cache.idx[p->cache.n] = idx;
        p->cache.gen[p->cache.n] = gen;
        p->cache.n++;
        got++;
    }
    pool_cache_publish(p, first);
    return got;
}

/* Gives the older half of a full cache back to the warm list. */
void pool_cache_spill(struct pool *p)
{
    const uint32_t k = p->cache.n / 2, mine = POOL_RC_CACHED | p->slot;
    if (pool_lock(p) < 0)
        return; /* the cache stays full: the next free goes to the pool */
    const uint64_t now = pool_clock_ns(); /* under the lock: the warm list stays in order */
    for (uint32_t i = 0; i < k; i++) {
        uint32_t idx = p->cache.idx[i];
        uint64_t r = ref_make(p->cache.gen[i], mine);
        /* Ours unless someone took it (or a flush took it back). */
        if (atomic_compare_exchange_strong_explicit(&p->blocks[idx].ref, &r,
                                                    ref_make(p->cache.gen[i], 0),
                                                    memory_order_acq_rel, memory_order_relaxed)) {
            MBQ_TRACE(idx, TR_CACHE, ref_make(p->cache.gen[i], mine), ref_make(p->cache.gen[i], 0));
            pool_used_dec_locked(p);
            pool_push_warm_locked(p, idx, now);
        }
    }
    for (uint32_t i = 0; i < POOL_CACHE_MAX / 2; i++)
        p->sh->spill_hint[i] = i < k ? p->cache.idx[i] : POOL_NONE;
    memmove(p->cache.idx, p->cache.idx + k, (p->cache.n - k) * sizeof(p->cache.idx[0]));
    memmove(p->cache.gen, p->cache.gen + k, (p->cache.n - k) * sizeof(p->cache.gen[0]));
    p->cache.n -= k;
    pool_cache_publish(p, 0);
    const bool invalidated = READ_ONCE(p->sh->flags) & POOL_F_INVALIDATED;
    pool_unlock(p);
    /* Invalidated since our caller looked (and flushed already, maybe):
     * what we just listed as warm would wait for age-out. Return it now. */
    if (__builtin_expect(invalidated, 0))
        (void)pool_flush(p);
}

/* Claims idx for an allocation of class c if it is cached by anyone. */
static bool pool_steal_one(struct pool *p, uint32_t c, struct pool_itok t, uint32_t idx,
                           uint32_t *idx_out, uint32_t *gen_out)
{
    if (!pool_in_class(p, c, idx))
        return false;
    uint64_t r = atomic_load_explicit(&p->blocks[idx].ref, memory_order_acquire);
    if (!pool_claim_cached(p, t, idx, r))
        return false;
    *idx_out = idx;
    *gen_out = ref_gen(r);
    return true;
}

/* Takes a block from some client's cache (pool lock held): the last resort
 * of an allocation that found the lists empty. The clients' published
 * entries first; then, at most once a millisecond per process, every
 * descriptor, so that a cached block nobody lists (a release between its
 * CAS and its publication, or a cache whose owner lost track) is found too.
 * Blocks of class k only. 1 with its index and generation (and the first
 * reference), 0 when none. */
int pool_steal_locked(struct pool *p, uint32_t k, struct pool_itok t, uint32_t *idx_out,
                      uint32_t *gen_out)
{
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
        const struct pool_client *c = &p->clients[s];
        uint32_t n = atomic_load_explicit(&c->cached, memory_order_acquire);
        n = n > POOL_CACHE_MAX ? POOL_CACHE_MAX : n;
        for (uint32_t i = 0; i < n; i++)
            if (pool_steal_one(p, k, t, atomic_load_explicit(&c->cache[i], memory_order_relaxed),
                               idx_out, gen_out))
                return 1;
        uint32_t h;
        n = pool_outbox_span(&c->outbox, &h);
        for (uint32_t i = 0; i < n; i++)
            if (pool_steal_one(p, k, t,
                               atomic_load_explicit(&c->outbox.idx[(h + i) & (POOL_OUTBOX - 1)],
                                                    memory_order_relaxed),
                               idx_out, gen_out))
                return 1;
    }
    uint64_t now = pool_clock_ns();
    if (p->last_scan_ns && now - p->last_scan_ns < 1000000u)
        return 0;
    const uint32_t lo = p->cls[k].first, hi = lo + p->cls[k].count;
    for (uint32_t idx = lo; idx < hi; idx++) {
        if (pool_steal_one(p, k, t, idx, idx_out, gen_out)) {
            p->last_scan_ns = 0;
            return 1;
        }
    }
    p->last_scan_ns = now;
    return 0;
}

/* ---- outboxes (pool.h "Outboxes") ---- */

/* After the slot is claimed: the owner's view of its outbox. A reused
 * slot's entries are left as they are: hints, checked by every taker. */
void pool_outbox_init(struct pool *p)
{
    const struct pool_outbox *o = &p->clients[p->slot].outbox;
    p->obox.tail = atomic_load_explicit(&o->tail, memory_order_relaxed);
    p->obox.head_c = atomic_load_explicit(&o->head, memory_order_relaxed);
    p->obox.from = p->slot;
    p->obox.announced = false;
}

/* Takes up to room blocks from outbox o into our cache: the entries, then
 * the head's CAS that makes them ours to try (a taker that loses it tries
 * again, a few times), then each block's CAS from cached (by anyone) to
 * cached by us. The entries read before a successful CAS are the ones the
 * owner wrote: it refills a slot only after it sees the head past it.
 * Returns how many blocks it cached. */
static uint32_t pool_outbox_take_from(struct pool *p, struct pool_outbox *o, uint32_t room)
{
    const uint32_t mine = POOL_RC_CACHED | p->slot;
    uint32_t idx[POOL_OUTBOX], h, n = 0;
    for (int tries = 0; tries < 4; tries++) {
        n = pool_outbox_span(o, &h);
        if (n == 0)
            return 0;
        n = n < room ? n : room;
        for (uint32_t i = 0; i < n; i++)
            idx[i] = atomic_load_explicit(&o->idx[(h + i) & (POOL_OUTBOX - 1)],
                                          memory_order_relaxed);
        if (atomic_compare_exchange_strong_explicit(&o->head, &h, h + n, memory_order_acq_rel,
                                                    memory_order_relaxed))
            break;
        n = 0;
    }
    uint32_t got = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (idx[i] >= p->block_count)
            continue; /* scribbled */
        _Atomic uint64_t *ref = &p->blocks[idx[i]].ref;
        uint64_t r = atomic_load_explicit(ref, memory_order_acquire);
        if (!rc_cached(ref_count(r)) ||
            !atomic_compare_exchange_strong_explicit(ref, &r, ref_make(ref_gen(r), mine),
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue; /* taken back, stolen or reused since: a stale entry */
        MBQ_TRACE(idx[i], TR_CACHE, r, ref_make(ref_gen(r), mine));
        p->cache.idx[p->cache.n] = idx[i];
        p->cache.gen[p->cache.n] = ref_gen(r);
        p->cache.n++;
        got++;
    }
    return got;
}

/* Refills our empty cache from the outboxes, without the lock (the cache's
 * owner thread only): the one it last took from first (at first its own),
 * then every other used one's (outbox_slots), stopping at the first that
 * gives any. Returns how many blocks it cached. */
uint32_t pool_outbox_take(struct pool *p)
{
    const uint32_t first = p->cache.n, room = p->cache.max - p->cache.n;
    uint64_t used = atomic_load_explicit(&p->sh->outbox_slots, memory_order_relaxed);
    if (room == 0 || used == 0)
        return 0;
    uint32_t from = p->obox.from < POOL_MAX_CLIENTS ? p->obox.from : p->slot, got = 0;
    /* the slots in used, from `from` on, wrapping around */
    used = (used >> from) | (from ? used << (64 - from) : 0);
    for (; used && got == 0; used &= used - 1) {
        uint32_t s = (from + (uint32_t)__builtin_ctzll(used)) % 64;
        if (s >= POOL_MAX_CLIENTS)
            break;
        got = pool_outbox_take_from(p, &p->clients[s].outbox, room);
        if (got)
            p->obox.from = s;
    }
    if (got)
        pool_cache_publish(p, first);
    return got;
}

/* Takes block idx back into the warm list if it is cached (by slot, or by
 * anyone: POOL_NONE), pool lock held. stamped_before (age-out; 0: take it
 * now): a block is stamped the first time it is seen cached and taken one
 * period later. Returns whether it was taken. */
static bool pool_uncache_if(struct pool *p, uint32_t idx, uint32_t slot, uint64_t now,
                            uint64_t stamped_before)
{
    if (idx >= p->block_count)
        return false;
    struct pool_block *b = &p->blocks[idx];
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire);
    uint32_t rc = ref_count(r);
    if (!rc_cached(rc) || (slot != POOL_NONE && rc_owner(rc) != slot))
        return false;
    if (stamped_before) {
        uint64_t f = READ_ONCE(b->freed_at_ns);
        if (f == 0 || f > now) {
            b->freed_at_ns = now; /* first seen: it goes one period from now */
            return false;
        }
        if (f > stamped_before)
            return false;
    }
    if (!pool_uncache_one(p, idx, r))
        return false;
    pool_used_dec_locked(p);
    pool_push_warm_locked(p, idx, now);
    return true;
}

/* Takes cached blocks back into the warm list (pool lock held): those of
 * client slot, or of every client (POOL_NONE), as pool_uncache_if. scan:
 * look at every descriptor (a dead client's published entries may be
 * stale; flush must miss nothing), else at the clients' published entries.
 * Returns how many. */
uint32_t pool_uncache_locked(struct pool *p, uint32_t slot, bool scan, uint64_t now,
                             uint64_t stamped_before)
{
    uint32_t taken = 0;
    if (scan) {
        for (uint32_t idx = 0; idx < p->block_count; idx++)
            taken += pool_uncache_if(p, idx, slot, now, stamped_before);
        return taken;
    }
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
        if (slot != POOL_NONE && s != slot)
            continue;
        const struct pool_client *c = &p->clients[s];
        uint32_t n = atomic_load_explicit(&c->cached, memory_order_acquire);
        n = n > POOL_CACHE_MAX ? POOL_CACHE_MAX : n;
        for (uint32_t i = 0; i < n; i++)
            taken += pool_uncache_if(p, atomic_load_explicit(&c->cache[i], memory_order_relaxed),
                                     slot, now, stamped_before);
        uint32_t h;
        n = pool_outbox_span(&c->outbox, &h);
        for (uint32_t i = 0; i < n; i++)
            taken += pool_uncache_if(
                p, atomic_load_explicit(&c->outbox.idx[(h + i) & (POOL_OUTBOX - 1)],
                                        memory_order_relaxed),
                slot, now, stamped_before);
    }
    return taken;
}

/* Folds a client slot's counters into the pool's (pool lock held), before
 * the slot is freed or reused. */
void pool_fold_counters_locked(struct pool *p, uint32_t slot)
{
    struct pool_client *c = &p->clients[slot];
    p->sh->allocs += atomic_exchange_explicit(&c->allocs, 0, memory_order_relaxed);
    p->sh->frees += atomic_exchange_explicit(&c->frees, 0, memory_order_relaxed);
    atomic_store_explicit(&c->cached, 0, memory_order_relaxed);
}
