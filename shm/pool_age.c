/* Age-out: the pages of blocks that stayed free a whole period go back to
 * the kernel; flush returns every free block's, invalidate stops recycling.
 *
 * Role: pool_age_out (mbqd's timer), pool_flush, pool_invalidate, and the
 * list operation only they use (detaching the warm tail).
 *
 * Invariants:
 *  - the warm list is ordered by freed_at_ns, newest at the head, so
 *    age-out looks only at the tail and stops at the first block too young;
 *  - a block being punched is AGING, on no list, refcount 0, reserved0 =
 *    the ager's tid: nobody allocates it, and the repair leaves it to a
 *    live ager (an ager that died leaves it for the repair to file cold);
 *  - the punch runs outside the lock; the block is filed cold afterwards
 *    only if it is still ours (AGING, our tid, ref word unchanged) — a
 *    repair meanwhile may have filed it already;
 *  - cached blocks are taken back first (flush: all; age-out: those cached
 *    a whole period), so a cache cannot keep pages resident forever.
 * Limits: POOL_AGE_BATCH blocks per round under the lock, and at most
 * block_count per call, so a peer freeing as fast as we age cannot keep
 * us here; a lock that stays held fails the call (-EBUSY), which mbqd
 * retries on its next tick. */
#include "pool_internal.h"

#include <errno.h>
#include <string.h>

/* Unlinks class c's warm tail if it was freed at least age ns before now (any
 * age when force) and marks it AGING for this thread. 1 with *out and its
 * ref word, 0 when there is nothing (old enough), -EUCLEAN. */
static int pool_detach_tail_locked(struct pool *p, uint32_t c, uint64_t now, uint64_t age,
                                   bool force, uint32_t tid, uint32_t *out, uint64_t *ref_out)
{
    struct pool_lists *L = p->cls[c].lists;
    uint32_t t = READ_ONCE(L->warm_tail), cnt = READ_ONCE(L->warm_count);
    if (t == POOL_NONE)
        return READ_ONCE(L->warm_head) == POOL_NONE && cnt == 0 ? 0 : -EUCLEAN;
    if (!pool_in_class(p, c, t) || cnt == 0)
        return -EUCLEAN;
    struct pool_block *b = &p->blocks[t];
    if (READ_ONCE(b->state) != POOL_BLOCK_WARM || READ_ONCE(b->next) != POOL_NONE)
        return -EUCLEAN;
    if (!force) {
        uint64_t f = READ_ONCE(b->freed_at_ns);
        if (now < f || now - f < age)
            return 0; /* the tail is the oldest: nothing older to age out */
    }
    uint32_t pv = READ_ONCE(b->prev);
    if (pv == POOL_NONE) {
        if (READ_ONCE(L->warm_head) != t)
            return -EUCLEAN;
    } else if (!pool_in_class(p, c, pv) || pv == t || READ_ONCE(p->blocks[pv].state) != POOL_BLOCK_WARM ||
               READ_ONCE(p->blocks[pv].next) != t) {
        return -EUCLEAN;
    }
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire);
    if (ref_count(r) != 0)
        return -EUCLEAN;
    L->warm_tail = pv;
    if (pv == POOL_NONE)
        L->warm_head = POOL_NONE;
    else
        p->blocks[pv].next = POOL_NONE;
    L->warm_count = cnt - 1;
    b->prev = POOL_NONE;
    b->state = POOL_BLOCK_AGING;
    b->reserved0 = tid;
    *out = t;
    *ref_out = r;
    return 1;
}

static void pool_sort_u32(uint32_t *v, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint32_t x = v[i], j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Step 1: the client caches first: flush takes every cached block back;
 * age-out the ones that sat in a cache a whole period (see pool.h).
 * -EBUSY when the lock stays held (mbqd retries on its next tick). */
static int age_uncache(struct pool *p, uint64_t now, bool force)
{
    if (pool_lock(p) < 0)
        return -EBUSY;
    const uint64_t period = READ_ONCE(p->sh->age_out_ns);
    if (force)
        pool_uncache_locked(p, POOL_NONE, true, pool_clock_ns(), 0); /* miss none */
    else if (now > period)
        pool_uncache_locked(p, POOL_NONE, false, now, now - period);
    pool_unlock(p);
    return 0;
}

/* One round's blocks: detached AGING under this thread's id, with the ref
 * word each had (so that filing them later can tell they are still ours). */
struct age_batch {
    uint32_t idx[POOL_AGE_BATCH];
    uint64_t ref[POOL_AGE_BATCH];
    uint32_t k;
};

/* Step 2, under the lock: detaches up to a batch (and up to room more
 * blocks) of old enough blocks from the warm tails, class by class. A corrupt list is
 * rebuilt once per call (*repaired) and the detach goes on; corrupt again,
 * *err is -EUCLEAN and the round ends. */
static void age_detach_locked(struct pool *p, uint64_t now, bool force, uint32_t tid,
                              uint32_t room, struct age_batch *a, bool *repaired, int *err)
{
    const uint64_t age = READ_ONCE(p->sh->age_out_ns);
    a->k = 0;
    for (uint32_t c = 0; c < p->nclasses && a->k < POOL_AGE_BATCH && a->k < room;) {
        int e = pool_detach_tail_locked(p, c, now, age, force, tid, &a->idx[a->k],
                                        &a->ref[a->k]);
        if (e > 0) {
            a->k++;
            continue;
        }
        if (e < 0 && !*repaired) {
            /* Blocks we already detached are AGING under our live tid:
             * the rebuild leaves them to us. */
            *repaired = true;
            pool_repair_locked(p);
            continue;
        }
        if (e < 0) {
            *err = -EUCLEAN;
            break;
        }
        c++; /* nothing (old enough) in this class */
    }
}

/* Step 3, outside the lock: returns the batch's pages, one fallocate per
 * run of adjacent blocks. Returns the first error, or 0. */
static int age_punch(struct pool *p, const struct age_batch *a)
{
    uint32_t sorted[POOL_AGE_BATCH];
    int err = 0;
    memcpy(sorted, a->idx, a->k * sizeof(a->idx[0]));
    pool_sort_u32(sorted, a->k);
    for (uint32_t i = 0; i < a->k;) {
        uint32_t j = i + 1;
        while (j < a->k && sorted[j] == sorted[j - 1] + 1 &&
               pool_class_of(p, sorted[j]) == pool_class_of(p, sorted[i]))
            j++; /* a run of one class: pool_punch spans no class boundary */
        int e = pool_punch(p, sorted[i], j - i);
        if (e < 0 && !err)
            err = e;
        i = j;
    }
    return err;
}

/* Step 4: files the batch cold, each block still ours unless a repair filed
 * it meanwhile. Without the lock the blocks are given up as a dead ager's,
 * for the repair to file: -EBUSY. */
static int age_file_cold(struct pool *p, uint32_t tid, const struct age_batch *a)
{
    if (pool_lock(p) < 0) {
        for (uint32_t i = 0; i < a->k; i++)
            pool_orphan_aging(p, a->idx[i], tid);
        return -EBUSY;
    }
    for (uint32_t i = 0; i < a->k; i++) {
        struct pool_block *b = &p->blocks[a->idx[i]];
        if (READ_ONCE(b->state) == POOL_BLOCK_AGING && READ_ONCE(b->reserved0) == tid &&
            atomic_load_explicit(&b->ref, memory_order_acquire) == a->ref[i])
            pool_push_cold_locked(p, a->idx[i]);
    }
    p->sh->aged_out += a->k;
    pool_unlock(p);
    return 0;
}

/* Ages out warm blocks in batches: detach from the tail under the lock,
 * punch outside it, file them cold under the lock. At most block_count
 * blocks per call, so a peer freeing blocks as fast as we age them cannot
 * keep us here. Returns how many, or the error when none. */
static int pool_age_out_impl(struct pool *p, uint64_t now, bool force)
{
    if (!p || !p->sh)
        return -EINVAL;
    const uint32_t tid = slock_self();
    uint32_t total = 0;
    int err = age_uncache(p, now, force);
    bool repaired = false;
    if (err < 0)
        return err;
    while (total < p->block_count) {
        struct age_batch a;
        if (pool_lock(p) < 0) {
            err = -EBUSY;
            break;
        }
        age_detach_locked(p, now, force, tid, p->block_count - total, &a, &repaired, &err);
        pool_unlock(p);
        if (a.k == 0)
            break;
        int e = age_punch(p, &a);
        if (e < 0 && !err)
            err = e;
        e = age_file_cold(p, tid, &a);
        if (e < 0) {
            err = e;
            break;
        }
        total += a.k;
        if (a.k < POOL_AGE_BATCH || err)
            break;
    }
    if (err && total == 0)
        return err;
    return (int)total;
}

int pool_age_out(struct pool *p, uint64_t now_ns)
{
    return pool_age_out_impl(p, now_ns, false);
}

int pool_flush(struct pool *p)
{
    return pool_age_out_impl(p, 0, true);
}

int pool_invalidate(struct pool *p)
{
    if (!p || !p->sh)
        return -EINVAL;
    int r = pool_lock(p);
    if (r < 0)
        return r;
    __atomic_fetch_or(&p->sh->flags, POOL_F_INVALIDATED, __ATOMIC_SEQ_CST); /* see pool_mark_repair */
    /* The other half of pool_cache_keep's ordering: the flag, then the
     * flush's reads of the ref words. */
    atomic_thread_fence(memory_order_seq_cst);
    pool_unlock(p);
    return pool_flush(p);
}

bool pool_age_out_due(const struct pool *p)
{
    for (uint32_t c = 0; c < p->nclasses; c++)
        if (READ_ONCE(p->cls[c].lists->warm_count) != 0)
            return true;
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++)
        if (atomic_load_explicit(&p->clients[s].cached, memory_order_relaxed) != 0)
            return true;
    return false;
}
