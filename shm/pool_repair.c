/* Repair of a memory pool: the free lists and counters rebuilt from the
 * block descriptors alone, the check that tells whether they need it, and
 * the breaking of a lock whose owner does not answer.
 *
 * Role: pool_repair_locked (run by pool_lock when a dead owner left the
 * lock or a step asked for it, and by any list operation that found a list
 * corrupt), pool_lists_ok_locked, pool_lock_owner, pool_break_lock.
 *
 * What a consistent pool is (pool.c has the whole list) — what the repair
 * restores, each from the descriptors, never by following a link:
 *  - a block with references is USED and on no list; a cached block stays
 *    in its owner's cache while the owner lives and lists it, else it is
 *    taken back and filed free (repair_file_block);
 *  - a free block is WARM (recyclable, pages resident) or COLD (pages
 *    returned): WARM if it was, or if it was just released (USED with
 *    refcount 0) into a pool not invalidated; an AGING block stays with a
 *    live ager, goes cold if its ager is gone;
 *  - the warm list is linked oldest first, so that age-out keeps working
 *    from the tail (repair_link_warm); the counters match the lists.
 * Limits: O(block_count), and a sort of the warm blocks; without memory for
 * it the warm list is linked in index order (age-out may stop early at a
 * young tail until the next flush: a delay, not an error). */
#include "pool_internal.h"

#include <errno.h>
#include <stdlib.h>

/* Whether cached block idx (ref word r) is in the cache of the client its
 * refcount field names: that client is alive (it may take the block at any
 * moment) and lists the block among its published entries or in its
 * outbox's live part. */
static bool pool_cache_holds(const struct pool *p, uint32_t idx, uint64_t r)
{
    uint32_t slot = rc_owner(ref_count(r));
    if (slot >= POOL_MAX_CLIENTS)
        return false;
    const struct pool_client *c = &p->clients[slot];
    uint32_t n = atomic_load_explicit(&c->cached, memory_order_acquire);
    n = n > POOL_CACHE_MAX ? POOL_CACHE_MAX : n;
    bool listed = false;
    for (uint32_t i = 0; i < n && !listed; i++)
        listed = atomic_load_explicit(&c->cache[i], memory_order_relaxed) == idx;
    uint32_t h;
    n = pool_outbox_span(&c->outbox, &h);
    for (uint32_t i = 0; i < n && !listed; i++)
        listed = atomic_load_explicit(&c->outbox.idx[(h + i) & (POOL_OUTBOX - 1)],
                                      memory_order_relaxed) == idx;
    return listed && pool_task_alive(atomic_load_explicit(&c->pid, memory_order_acquire));
}

struct pool_warm_ent {
    uint64_t freed_at;
    uint32_t idx;
};

static int pool_warm_cmp(const void *a, const void *b)
{
    const struct pool_warm_ent *x = a, *y = b;
    if (x->freed_at != y->freed_at)
        return x->freed_at < y->freed_at ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Where repair_file_block puts a block. */
enum repair_place { PLACE_USED, PLACE_WARM, PLACE_COLD, PLACE_AGER };

/* Decides block k's place from its descriptor alone, and sets its state
 * (and freed_at for a warm one) accordingly; unlinks it. A block with
 * references is USED; a cached one stays in its owner's cache (counted
 * used: off the lists) while the owner lives and lists it, else is taken
 * back and goes warm. A free block goes warm if it was WARM, or was just
 * released (still USED, refcount 0) into a pool not invalidated; else
 * cold, its pages returned if it was just released. An AGING block whose
 * ager lives stays off the lists (the ager files it); one whose ager is
 * gone goes cold: its punch may not have happened, which costs memory,
 * not correctness. */
static enum repair_place repair_file_block(struct pool *p, uint32_t k, uint64_t now, bool inv)
{
    struct pool_block *b = &p->blocks[k];
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire);
    uint32_t st = READ_ONCE(b->state);
    b->prev = POOL_NONE;
    b->next = POOL_NONE;
    if (rc_cached(ref_count(r))) {
        if (pool_cache_holds(p, k, r)) {
            b->state = POOL_BLOCK_USED; /* off the lists */
            return PLACE_USED;
        }
        if (pool_uncache_one(p, k, r)) {
            st = POOL_BLOCK_WARM; /* no live cache lists it: free it */
            b->freed_at_ns = now;
        }
        r = atomic_load_explicit(&b->ref, memory_order_acquire);
    }
    if (ref_count(r) > 0) {
        b->state = POOL_BLOCK_USED;
        return PLACE_USED;
    }
    if (st == POOL_BLOCK_AGING && pool_task_alive(READ_ONCE(b->reserved0)))
        return PLACE_AGER;
    if (st == POOL_BLOCK_WARM || (st == POOL_BLOCK_USED && !inv)) {
        uint64_t f = READ_ONCE(b->freed_at_ns);
        if (st == POOL_BLOCK_USED || f > now)
            b->freed_at_ns = now;
        b->state = POOL_BLOCK_WARM;
        return PLACE_WARM;
    }
    if (st == POOL_BLOCK_USED)
        (void)pool_punch(p, k, 1); /* released into an invalidated pool */
    b->state = POOL_BLOCK_COLD;
    return PLACE_COLD;
}

/* Links the nwarm WARM blocks of class c oldest first, each at the head
 * (warm: them, sorted here; NULL: found by index, in index order). Returns
 * how many it linked, with the list's ends. */
static uint32_t repair_link_warm(struct pool *p, uint32_t c, struct pool_warm_ent *warm,
                                 uint32_t nwarm, uint32_t *head_out, uint32_t *tail_out)
{
    const uint32_t n = p->cls[c].first + p->cls[c].count;
    uint32_t head = POOL_NONE, tail = POOL_NONE, linked = 0;
    if (warm)
        qsort(warm, nwarm, sizeof(*warm), pool_warm_cmp);
    for (uint32_t j = 0, k = p->cls[c].first; j < nwarm; j++) {
        uint32_t idx;
        if (warm) {
            idx = warm[j].idx;
        } else {
            while (k < n && READ_ONCE(p->blocks[k].state) != POOL_BLOCK_WARM)
                k++;
            if (k >= n)
                break;
            idx = k++;
        }
        struct pool_block *b = &p->blocks[idx];
        b->prev = POOL_NONE;
        b->next = head;
        if (head != POOL_NONE)
            p->blocks[head].prev = idx;
        else
            tail = idx;
        head = idx;
        linked++;
    }
    *head_out = head;
    *tail_out = tail;
    return linked;
}

/* Rebuilds the free lists and counters from the block descriptors alone,
 * without following any link: after a lock holder died (its update may be
 * half done) or when a list was found corrupt. Each block is filed by
 * repair_file_block; the cold list is linked as it goes (descending index:
 * the head ends up lowest), the warm list afterwards in freed_at order so
 * that age-out keeps working from the tail. Without memory to sort, index
 * order: age-out may then stop early at a young tail until the next flush,
 * which is a delay, not an error. Class by class: each class's lists link
 * its own blocks only. Returns the class's blocks in use. */
static uint32_t repair_class_locked(struct pool *p, uint32_t c, struct pool_warm_ent *warm,
                                    uint64_t now, bool inv)
{
    uint32_t nwarm = 0, ncold = 0, nused = 0, cold_head = POOL_NONE;
    const uint32_t lo = p->cls[c].first;

    for (uint32_t k = lo + p->cls[c].count; k-- > lo;) {
        switch (repair_file_block(p, k, now, inv)) {
        case PLACE_USED: nused++; break;
        case PLACE_AGER: break;
        case PLACE_WARM:
            if (warm)
                warm[nwarm] = (struct pool_warm_ent){.freed_at = p->blocks[k].freed_at_ns,
                                                     .idx = k};
            nwarm++;
            break;
        case PLACE_COLD:
            p->blocks[k].next = cold_head;
            cold_head = k;
            ncold++;
            break;
        }
    }
    uint32_t head, tail;
    uint32_t linked = repair_link_warm(p, c, warm, nwarm, &head, &tail);
    *p->cls[c].lists = (struct pool_lists){.warm_head = head, .warm_tail = tail,
                                           .cold_head = cold_head, .warm_count = linked,
                                           .cold_count = ncold};
    return nused;
}

void pool_repair_locked(struct pool *p)
{
    struct pool_shared *sh = p->sh;
    const uint64_t now = mono_ns();
    const bool inv = (READ_ONCE(sh->flags) & POOL_F_INVALIDATED) != 0;
    struct pool_warm_ent *warm = malloc((size_t)p->block_count * sizeof(*warm));
    uint32_t nused = 0;
    for (uint32_t c = 0; c < p->nclasses; c++)
        nused += repair_class_locked(p, c, warm, now, inv);
    free(warm);
    sh->used_count = nused;
}

static bool lists_walk_ok(const struct pool *p, uint32_t c, uint32_t nwarm, uint32_t ncold);
static bool class_ok_locked(struct pool *p, uint32_t c, uint32_t *nused);

/* Whether the lists and counters describe the descriptors exactly, with no
 * orphaned AGING block (its ager gone). O(block_count). used_count counts
 * the USED blocks, cached ones included: everything off the lists. A USED block with
 * refcount 0 passes: it is a release between its CAS and the lock, which is
 * normal under load and must not cost a rebuild; if its releaser died in
 * that instant, its intent still names the block, and the recount files it
 * (pool_audit). */
bool pool_lists_ok_locked(struct pool *p)
{
    uint32_t nused = 0;
    for (uint32_t c = 0; c < p->nclasses; c++)
        if (!class_ok_locked(p, c, &nused))
            return false;
    return READ_ONCE(p->sh->used_count) == nused;
}

/* pool_lists_ok_locked for class c, adding its USED blocks to *nused. */
static bool class_ok_locked(struct pool *p, uint32_t c, uint32_t *nused)
{
    const struct pool_lists *L = p->cls[c].lists;
    const uint32_t n = p->cls[c].first + p->cls[c].count;
    uint32_t nwarm = 0, ncold = 0;

    for (uint32_t k = p->cls[c].first; k < n; k++) {
        struct pool_block *b = &p->blocks[k];
        uint32_t rc = ref_count(atomic_load_explicit(&b->ref, memory_order_acquire));
        uint32_t st = READ_ONCE(b->state);
        /* In use or cached: off the lists. (A cached block its owner does
         * not list yet is normal, between its release and its publication:
         * no reason to rebuild.) */
        if (rc > 0 && st != POOL_BLOCK_USED)
            return false;
        switch (st) {
        case POOL_BLOCK_WARM: nwarm++; break;
        case POOL_BLOCK_COLD: ncold++; break;
        case POOL_BLOCK_USED: (*nused)++; break;
        case POOL_BLOCK_AGING:
            if (!pool_task_alive(READ_ONCE(b->reserved0)))
                return false;
            break;
        default: return false;
        }
    }
    if (READ_ONCE(L->warm_count) != nwarm || READ_ONCE(L->cold_count) != ncold)
        return false;
    return lists_walk_ok(p, c, nwarm, ncold);
}

/* Whether walking the lists meets exactly the nwarm WARM and ncold COLD
 * blocks. A walk that ends within n steps cannot have revisited a node; if
 * every node it met has the list's state and it met as many as have that
 * state, the list holds exactly those blocks. */
static bool lists_walk_ok(const struct pool *p, uint32_t c, uint32_t nwarm, uint32_t ncold)
{
    const struct pool_lists *sh = p->cls[c].lists;
    uint32_t prev = POOL_NONE, cur = READ_ONCE(sh->warm_head), steps = 0;
    while (cur != POOL_NONE) {
        if (!pool_in_class(p, c, cur) || steps >= nwarm || READ_ONCE(p->blocks[cur].state) != POOL_BLOCK_WARM ||
            READ_ONCE(p->blocks[cur].prev) != prev)
            return false;
        prev = cur;
        cur = READ_ONCE(p->blocks[cur].next);
        steps++;
    }
    if (steps != nwarm || READ_ONCE(sh->warm_tail) != prev)
        return false;
    cur = READ_ONCE(sh->cold_head);
    steps = 0;
    while (cur != POOL_NONE) {
        if (!pool_in_class(p, c, cur) || steps >= ncold || READ_ONCE(p->blocks[cur].state) != POOL_BLOCK_COLD)
            return false;
        cur = READ_ONCE(p->blocks[cur].next);
        steps++;
    }
    return steps == ncold;
}

/* ---- locks others hold ---- */

uint32_t pool_lock_owner(const struct pool *p)
{
    return p && p->sh ? slock_owner(&p->sh->lock) : 0;
}

int pool_break_lock(struct pool *p, uint32_t owner)
{
    if (!p || !p->sh || owner == 0)
        return -EINVAL;
    if (slock_take_from(&p->sh->lock, owner) != SLOCK_RECOVERED)
        return 0;
    __atomic_fetch_and(&p->sh->flags, ~POOL_F_NEEDS_REPAIR, __ATOMIC_SEQ_CST); /* see pool_lock */
    pool_repair_locked(p);
    pool_unlock(p);
    return 1;
}
