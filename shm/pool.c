/* Memory pools: the blocks of one sealed memfd, shared by processes.
 *
 * Role: the allocator behind mbq buffers (see pool.h for the contract). The
 * segment holds the header, the client slots, the per-client holdings, the
 * block descriptors and the page-aligned data area, in that order, at
 * offsets that follow from (block_size, block_count) alone, so a process that
 * attaches recomputes them and rejects a header that disagrees. Blocks are
 * whole pages, or, below a page, packed at a multiple of a cache line
 * (pool_block_size_round); a block's descriptor and ref word live in the
 * descriptor table, never beside its payload, so packing changes no
 * rule of the accounting, only what a punch may return (pool_punch).
 *
 * This file: the layout, create/attach, the lock, the free lists, freeing,
 * the fast half of the client caches, and allocate/retain/release — what a
 * buffer's life runs through. The other parts: pool_intent.c (intents and
 * hand-overs), pool_cache.c (the caches' slow half), pool_age.c (age-out,
 * flush, invalidate), pool_repair.c (list rebuild and check), pool_client.c
 * (client slots, recount, reclaim), pool_meta.c (metadata, formats,
 * attachments); what they share is in pool_internal.h.
 *
 * Invariants, for a consistent pool, under the pool lock:
 *  - every block is in exactly one place: the warm list (state WARM,
 *    refcount 0, pages resident), the cold list (COLD, refcount 0, pages
 *    returned or never touched), in use (USED, refcount > 0, on no list), in
 *    a client's cache (USED, on no list, refcount field POOL_RC_CACHED |
 *    slot: see "Client caches" in pool.h), or
 *    being aged (AGING, refcount 0, on no list, reserved0 = the id of the
 *    thread punching its pages outside the lock, which puts it back on the
 *    cold list afterwards);
 *  - transiently, a block whose last reference was just dropped is USED with
 *    refcount 0 until its releaser takes the lock; the releaser re-checks the
 *    state and ref word under the lock, so a repair that already moved the
 *    block is never undone and a block is never listed twice;
 *  - the warm list is ordered by freed_at_ns (head newest), so age-out only
 *    looks at the tail; warm_count/cold_count/used_count match the lists.
 * The refcount and generation change only by CAS on the 64-bit ref word, so
 * retain/release need no lock; only the free lists do.
 *
 * Reference accounting (pool.h "Accounting"): a live block's refcount is
 * the sum of the slots' holdings, the queue entries naming it and the moves
 * in flight, each of those under an intent record of its mover; a move
 * raises the refcount before it records the new holder and removes a
 * holder before it lowers the refcount, so a death leaves the refcount too
 * high, never too low, and the recount of a dead slot's intents
 * (pool_audit) drops the excess. A recount's audit bit in the ref word is
 * cleared by every change of the word, so it never acts on a count that
 * moved under it. Every index read from
 * the segment is read once and bounds-checked: a corrupt list is detected
 * (-EUCLEAN internally) and rebuilt from the descriptors by
 * pool_repair_locked(), never followed out of range or around a cycle. */
#include "pool_internal.h"

#include <mbq/status.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* ---- layout ---- */

_Static_assert(sizeof(struct pool_block) == 192, "pool_block is three cache lines");
_Static_assert(offsetof(struct pool_block, ref) == 0, "pool_block layout");
_Static_assert(offsetof(struct pool_block, state) == 8, "pool_block layout");
_Static_assert(offsetof(struct pool_block, prev) == 12, "pool_block layout");
_Static_assert(offsetof(struct pool_block, next) == 16, "pool_block layout");
_Static_assert(offsetof(struct pool_block, reserved0) == 20, "pool_block layout");
_Static_assert(offsetof(struct pool_block, freed_at_ns) == 24, "pool_block layout");
_Static_assert(offsetof(struct pool_block, data_size) == 32, "pool_block layout");
_Static_assert(offsetof(struct pool_block, ready) == 40, "pool_block layout");
_Static_assert(offsetof(struct pool_block, dts) == 48, "pool_block layout");
_Static_assert(offsetof(struct pool_block, pts) == 72, "pool_block layout");
_Static_assert(offsetof(struct pool_block, duration) == 96, "pool_block layout");
_Static_assert(offsetof(struct pool_block, attachments) == 120, "pool_block layout");
_Static_assert(offsetof(struct pool_block, flags) == 44, "pool_block layout");
_Static_assert(offsetof(struct pool_block, frozen) == 152, "pool_block layout");
_Static_assert(offsetof(struct pool_block, attach_len) == 156, "pool_block layout");
_Static_assert(offsetof(struct pool_block, format) == 160, "pool_block layout");
_Static_assert(offsetof(struct pool_block, pad) == 168, "pool_block layout");
_Static_assert(sizeof(struct pool_format) == 4096, "pool_format is a page");
_Static_assert(sizeof(struct pool_intent) == 32, "pool_intent is half a cache line");
_Static_assert(sizeof(struct pool_run) == 320, "pool_run is five cache lines");
_Static_assert(sizeof(struct pool_outbox) == 256, "pool_outbox is four cache lines");
_Static_assert(offsetof(struct pool_outbox, head) == 64 && offsetof(struct pool_outbox, idx) == 128,
               "pool_outbox layout");
_Static_assert((POOL_OUTBOX & (POOL_OUTBOX - 1)) == 0, "POOL_OUTBOX is a power of two");
_Static_assert(sizeof(struct pool_client) == 128 + 32 * POOL_INTENTS + 320 * POOL_RUNS + 256,
               "pool_client layout");
_Static_assert(offsetof(struct pool_client, outbox) == 128 + 32 * POOL_INTENTS + 320 * POOL_RUNS,
               "pool_client layout");
_Static_assert(offsetof(struct pool_client, run) == 128 + 32 * POOL_INTENTS, "pool_client layout");
_Static_assert(offsetof(struct pool_client, allocs) == 8, "pool_client layout");
_Static_assert(offsetof(struct pool_client, intent_overflow) == 24, "pool_client layout");
_Static_assert(offsetof(struct pool_client, cache) == 64, "pool_client layout");
_Static_assert(offsetof(struct pool_client, intent) == 128, "pool_client layout");
_Static_assert((POOL_RC_AUDIT & POOL_RC_CACHED) == 0 && POOL_MAX_CLIENTS <= POOL_RC_AUDIT,
               "the audit bit is neither a cache owner nor a cached marker");
_Static_assert(sizeof(struct pool_shared) == 320, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, free_seq) == 256, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, outbox_slots) == 304 && POOL_MAX_CLIENTS <= 64,
               "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, block_size) == 64, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, block_count) == 72, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, flags) == 76, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, age_out_ns) == 80, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, clients_off) == 88, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, data_off) == 112, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, lock) == 128, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, lists) == 132, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, used_count) == 152, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, nclasses) == 156, "pool_shared layout");
_Static_assert(sizeof(struct pool_lists) == 20, "pool_lists layout");
_Static_assert(sizeof(struct pool_class_shared) == 48, "pool_class_shared layout");
_Static_assert(offsetof(struct pool_class_shared, data_off) == 16, "pool_class_shared layout");
_Static_assert(offsetof(struct pool_class_shared, lists) == 24, "pool_class_shared layout");
_Static_assert(POOL_CLASSES_OFF >= sizeof(struct pool_shared) && POOL_CLASSES_OFF % 64 == 0,
               "the class table follows the header");
_Static_assert(offsetof(struct pool_shared, allocs) == 160, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, reclaimed) == 192, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, audited) == 200, "pool_shared layout");
_Static_assert(offsetof(struct pool_shared, spill_hint) == 208, "pool_shared layout");

struct pool_layout {
    uint64_t clients_off, holdings_off, blocks_off, formats_off, attach_off, data_off, total;
    uint64_t cdata_off[POOL_MAX_CLASSES]; /* each class's data (cdata_off[0] == data_off) */
    uint32_t cfirst[POOL_MAX_CLASSES];
    uint32_t count; /* every class's blocks */
};

/* The classes of a pool, as pool_params gives them or a header and class
 * table say: ncls 1..POOL_MAX_CLASSES, each a size and a count. */
struct pool_classes {
    uint32_t n;
    uint64_t size[POOL_MAX_CLASSES];
    uint32_t count[POOL_MAX_CLASSES];
};

static uint64_t pool_page_size(void)
{
    long v = sysconf(_SC_PAGESIZE);
    return v > 0 ? (uint64_t)v : 4096u;
}

static inline uint64_t round_up64(uint64_t n, uint64_t align)
{
    return (n + align - 1) / align * align;
}

/* Whether one class is what pool_block_size_round makes, and nothing
 * else: a forged size between the two forms (not a cache-line multiple
 * below a page, not whole pages above) is refused, so no block straddles
 * what the rules say it does. */
static bool pool_class_ok(uint64_t block_size, uint32_t count, uint64_t page)
{
    return block_size != 0 && block_size % (block_size < page ? POOL_BLOCK_ALIGN : page) == 0 &&
           count != 0 && count <= POOL_MAX_BLOCKS;
}

/* Where each class's data goes, from data_off: 0 and the end in *end, or
 * -1 on overflow. */
static int pool_layout_data(const struct pool_classes *k, uint64_t page, struct pool_layout *l,
                            uint64_t *end)
{
    uint64_t off = l->data_off;
    for (uint32_t c = 0; c < k->n; c++) {
        uint64_t len;
        l->cdata_off[c] = off;
        /* Packed sub-page blocks may end inside a page: the next class,
         * and the segment's end, are still on one. */
        if (__builtin_mul_overflow(k->size[c], (uint64_t)k->count[c], &len) ||
            len > UINT64_MAX - page || __builtin_add_overflow(off, round_up64(len, page), &off))
            return -1;
    }
    *end = off;
    return 0;
}

/* The layout for these classes, or -1 when they are out of range (sizes
 * not strictly ascending, a bad size or count, too many blocks) or the
 * segment would not fit in an address space. */
static int pool_layout_of(const struct pool_classes *k, uint64_t page, struct pool_layout *l)
{
    if (k->n == 0 || k->n > POOL_MAX_CLASSES)
        return -1;
    uint64_t total = 0;
    for (uint32_t c = 0; c < k->n; c++) {
        if (!pool_class_ok(k->size[c], k->count[c], page) ||
            (c && k->size[c] <= k->size[c - 1]))
            return -1;
        l->cfirst[c] = (uint32_t)total;
        total += k->count[c];
    }
    if (total > POOL_MAX_BLOCKS)
        return -1;
    const uint32_t count = (uint32_t)total;
    l->count = count;
    l->clients_off = k->n == 1 ? round_up64(sizeof(struct pool_shared), 64)
                               : round_up64(POOL_CLASSES_OFF + (uint64_t)k->n *
                                                                   sizeof(struct pool_class_shared),
                                            64);
    l->holdings_off = l->clients_off + POOL_MAX_CLIENTS * sizeof(struct pool_client);
    l->blocks_off = round_up64(l->holdings_off + (uint64_t)POOL_MAX_CLIENTS * count *
                                                     sizeof(uint32_t), 64);
    l->formats_off = round_up64(l->blocks_off + (uint64_t)count * sizeof(struct pool_block), 64);
    l->attach_off = l->formats_off + POOL_FORMATS * (uint64_t)sizeof(struct pool_format);
    l->data_off = round_up64(l->attach_off + (uint64_t)count * POOL_ATTACH_MAX, page);
    if (pool_layout_data(k, page, l, &l->total) < 0 || l->total > (uint64_t)PTRDIFF_MAX)
        return -1;
    return 0;
}

uint64_t pool_block_size_round(uint64_t block_size)
{
    const uint64_t page = pool_page_size();
    if (block_size == 0 || block_size > UINT64_MAX - page)
        return 0;
    return block_size < page ? round_up64(block_size, POOL_BLOCK_ALIGN)
                             : round_up64(block_size, page);
}

/* Returns the pages of count adjacent blocks from first to the kernel: the
 * whole pages inside their span only. With page-sized blocks that is all of
 * it; with packed sub-page blocks a page the span shares with a block
 * outside it stays resident (that block may be in use, and a punch would
 * zero its bytes under its holder), so a lone small block returns nothing. */
int pool_punch(struct pool *p, uint32_t first, uint32_t count)
{
    const uint64_t page = pool_page_size();
    /* A run of one class (the callers cut theirs at class boundaries);
     * never past its class's end. */
    const uint32_t c = pool_class_of(p, first);
    const struct pool_cls *k = &p->cls[c];
    if (count > k->first + k->count - first)
        count = k->first + k->count - first;
    uint64_t lo = (uint64_t)(k->data - (uint8_t *)p->seg.base) + (uint64_t)(first - k->first) * k->size;
    uint64_t hi = lo + (uint64_t)count * k->size;
    lo = round_up64(lo, page);
    hi = hi / page * page;
    if (hi <= lo)
        return 0;
    if (fallocate(p->seg.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)lo,
                  (off_t)(hi - lo)) < 0)
        return -errno;
    return 0;
}

/* ---- lock ---- */

/* 0 with the lock held (repaired first if a dead owner left it, or if a
 * caller that could not get the lock left work for a repair), or -EBUSY:
 * a live owner kept it past the wait limit (see slock_lock); not held. */
int pool_lock(struct pool *p)
{
    int r = slock_lock(&p->sh->lock);
    if (__builtin_expect(r < 0, 0))
        return r;
    if (r == SLOCK_RECOVERED || (READ_ONCE(p->sh->flags) & POOL_F_NEEDS_REPAIR)) {
        /* Cleared first: a request made while the repair runs (a release
         * that read its block as referenced, then failed to get the lock)
         * stays for the next holder instead of being cleared with this. */
        __atomic_fetch_and(&p->sh->flags, ~POOL_F_NEEDS_REPAIR, __ATOMIC_SEQ_CST);
        pool_repair_locked(p);
    }
    return 0;
}

/* A step that needed the lock and could not get it left a block for the
 * repair to file (a freed block still marked used): the next holder runs it. */
void pool_mark_repair(struct pool *p)
{
    /* release: the repair that clears the request (acquire) reads what
     * the step did before asking */
    __atomic_fetch_or(&p->sh->flags, POOL_F_NEEDS_REPAIR, __ATOMIC_RELEASE);
}

/* A block we punched while AGING, that we cannot file cold for want of the
 * lock: it is given up as an ager's that died (no ager), which the repair
 * files cold. Nobody else writes an AGING block whose ager is alive. */
void pool_orphan_aging(struct pool *p, uint32_t idx, uint32_t tid)
{
    struct pool_block *b = &p->blocks[idx];
    if (READ_ONCE(b->state) == POOL_BLOCK_AGING && READ_ONCE(b->reserved0) == tid)
        __atomic_store_n(&b->reserved0, 0, __ATOMIC_RELAXED);
    pool_mark_repair(p);
}

/* ---- free lists (pool lock held) ----
 * Each operation checks everything it will rely on before it changes
 * anything, and returns -EUCLEAN without a change when the list is corrupt;
 * the caller then repairs. One convention for every operation here (and in
 * pool_age.c and pool_cache.c) that looks for a block: it returns how many
 * it took — 1, or 0 when there is none — or -errno. */

/* Unlinks class c's warm head into *out: 1, or 0 with *out POOL_NONE when the
 * list is empty, or -EUCLEAN. */
int pool_pop_warm_locked(struct pool *p, uint32_t c, uint32_t *out)
{
    /* Copied: the stores below may alias p's fields for all the compiler knows. */
    const uint32_t lo = p->cls[c].first, n = p->cls[c].count;
    struct pool_lists *L = p->cls[c].lists;
    uint32_t h = READ_ONCE(L->warm_head), cnt = READ_ONCE(L->warm_count);
    *out = POOL_NONE;
    if (h == POOL_NONE)
        return READ_ONCE(L->warm_tail) == POOL_NONE && cnt == 0 ? 0 : -EUCLEAN;
    if (h - lo >= n || cnt == 0)
        return -EUCLEAN;
    struct pool_block *b = &p->blocks[h];
    if (READ_ONCE(b->state) != POOL_BLOCK_WARM || READ_ONCE(b->prev) != POOL_NONE)
        return -EUCLEAN;
    uint32_t nx = READ_ONCE(b->next);
    if (nx == POOL_NONE) {
        if (READ_ONCE(L->warm_tail) != h)
            return -EUCLEAN;
    } else if (nx - lo >= n || nx == h || READ_ONCE(p->blocks[nx].state) != POOL_BLOCK_WARM ||
               READ_ONCE(p->blocks[nx].prev) != h) {
        return -EUCLEAN;
    }
    L->warm_head = nx;
    if (nx == POOL_NONE)
        L->warm_tail = POOL_NONE;
    else
        p->blocks[nx].prev = POOL_NONE;
    L->warm_count = cnt - 1;
    b->next = POOL_NONE;
    *out = h;
    return 1;
}

static int pool_pop_cold_locked(struct pool *p, uint32_t c, uint32_t *out)
{
    /* Copied: the stores below may alias p's fields for all the compiler knows. */
    const uint32_t lo = p->cls[c].first, n = p->cls[c].count;
    struct pool_lists *L = p->cls[c].lists;
    uint32_t h = READ_ONCE(L->cold_head), cnt = READ_ONCE(L->cold_count);
    *out = POOL_NONE;
    if (h == POOL_NONE)
        return cnt == 0 ? 0 : -EUCLEAN;
    if (h - lo >= n || cnt == 0)
        return -EUCLEAN;
    struct pool_block *b = &p->blocks[h];
    if (READ_ONCE(b->state) != POOL_BLOCK_COLD)
        return -EUCLEAN;
    uint32_t nx = READ_ONCE(b->next);
    if (nx != POOL_NONE &&
        (nx - lo >= n || nx == h || READ_ONCE(p->blocks[nx].state) != POOL_BLOCK_COLD))
        return -EUCLEAN;
    L->cold_head = nx;
    L->cold_count = cnt - 1;
    b->next = POOL_NONE;
    *out = h;
    return 1;
}

/* Puts a free block that is on no list at the warm head. On a corrupt list
 * the block is marked WARM and the lists are rebuilt, which links it. */
void pool_push_warm_locked(struct pool *p, uint32_t idx, uint64_t now)
{
    const uint32_t c = pool_class_of(p, idx), lo = p->cls[c].first, n = p->cls[c].count;
    struct pool_lists *L = p->cls[c].lists;
    struct pool_block *b = &p->blocks[idx];
    uint32_t h = READ_ONCE(L->warm_head), cnt = READ_ONCE(L->warm_count);
    bool ok = h == POOL_NONE
                  ? READ_ONCE(L->warm_tail) == POOL_NONE && cnt == 0
                  : h - lo < n && h != idx && READ_ONCE(p->blocks[h].state) == POOL_BLOCK_WARM &&
                        READ_ONCE(p->blocks[h].prev) == POOL_NONE && cnt < n;
    b->state = POOL_BLOCK_WARM;
    b->freed_at_ns = now;
    if (!ok) {
        pool_repair_locked(p);
        return;
    }
    b->prev = POOL_NONE;
    b->next = h;
    if (h == POOL_NONE)
        L->warm_tail = idx;
    else
        p->blocks[h].prev = idx;
    L->warm_head = idx;
    L->warm_count = cnt + 1;
}

void pool_push_cold_locked(struct pool *p, uint32_t idx)
{
    const uint32_t c = pool_class_of(p, idx), lo = p->cls[c].first, n = p->cls[c].count;
    struct pool_lists *L = p->cls[c].lists;
    struct pool_block *b = &p->blocks[idx];
    uint32_t h = READ_ONCE(L->cold_head), cnt = READ_ONCE(L->cold_count);
    bool ok = h == POOL_NONE ? cnt == 0
                             : h - lo < n && h != idx &&
                                   READ_ONCE(p->blocks[h].state) == POOL_BLOCK_COLD && cnt < n;
    b->state = POOL_BLOCK_COLD;
    if (!ok) {
        pool_repair_locked(p);
        return;
    }
    b->prev = POOL_NONE;
    b->next = h;
    L->cold_head = idx;
    L->cold_count = cnt + 1;
}

/* Takes a free block of class c (warm first, then cold) and gives it its
 * first reference. 1 with the index and generation, 0 when there is none,
 * -EUCLEAN. */
static int pool_take_locked(struct pool *p, uint32_t c, struct pool_itok t, uint32_t *idx_out,
                            uint32_t *gen_out)
{
    uint32_t idx;
    int e = pool_pop_warm_locked(p, c, &idx);
    if (e == 0)
        e = pool_pop_cold_locked(p, c, &idx);
    if (e <= 0)
        return e;
    /* The block is off its list but still says WARM/COLD: if its ref word is
     * wrong, the repair that follows files it by its refcount. */
    struct pool_block *b = &p->blocks[idx];
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire);
    if (ref_count(r) != 0)
        return -EUCLEAN;
    uint32_t gen = ref_gen(r) ? ref_gen(r) : 1;
    pool_intent_point(t, handle_make(gen, idx)); /* before the reference exists */
    /* Nothing else writes the ref word of a listed block (retain, reclaim
     * and the caches leave a zero refcount alone), but a CAS costs nothing
     * here and keeps that a check rather than an assumption. */
    if (!atomic_compare_exchange_strong_explicit(&b->ref, &r, ref_make(gen, 1),
                                                 memory_order_acq_rel, memory_order_relaxed))
        return -EUCLEAN;
    MBQ_TRACE(idx, TR_CLAIM, r, ref_make(gen, 1));
    b->state = POOL_BLOCK_USED;
    p->sh->used_count = READ_ONCE(p->sh->used_count) + 1;
    *idx_out = idx;
    *gen_out = gen;
    return 1;
}

/* ---- freeing ---- */

/* After the CAS that dropped idx's refcount to zero and made its ref word
 * expect: files the block as free. */
void pool_free_block(struct pool *p, uint32_t idx, uint64_t expect)
{
    struct pool_shared *sh = p->sh;
    struct pool_block *b = &p->blocks[idx];
    MBQ_TRACE(idx, TR_FREE, expect, 0);
    if (pool_lock(p) < 0) {
        pool_mark_repair(p); /* unreferenced but not filed: the repair files it */
        return;
    }
    sh->frees++;
    /* A repair between our CAS and our lock may have filed the block, and it
     * may even have been allocated since: then it is not ours to file. */
    if (READ_ONCE(b->state) != POOL_BLOCK_USED ||
        atomic_load_explicit(&b->ref, memory_order_acquire) != expect) {
        pool_unlock(p);
        return;
    }
    pool_used_dec_locked(p);
    if (!(READ_ONCE(sh->flags) & POOL_F_INVALIDATED)) {
        pool_push_warm_locked(p, idx, pool_clock_ns());
        pool_unlock(p);
        pool_wake_allocators(p);
        return;
    }
    /* Invalidated: no recycling. The punch runs outside the lock, with the
     * block AGING so that nobody allocates it meanwhile. */
    uint32_t tid = slock_self();
    b->state = POOL_BLOCK_AGING;
    b->reserved0 = tid;
    pool_unlock(p);
    (void)pool_punch(p, idx, 1);
    if (pool_lock(p) < 0) {
        pool_orphan_aging(p, idx, tid);
        return;
    }
    if (READ_ONCE(b->state) == POOL_BLOCK_AGING && READ_ONCE(b->reserved0) == tid &&
        atomic_load_explicit(&b->ref, memory_order_acquire) == expect)
        pool_push_cold_locked(p, idx);
    pool_unlock(p);
    pool_wake_allocators(p);
}

/* Drops up to k references on idx whatever its generation (for holdings,
 * which are counted per block, not per handle). Returns how many. */
uint32_t pool_drop_refs(struct pool *p, uint32_t idx, uint32_t k)
{
    struct pool_block *b = &p->blocks[idx];
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire), nr;
    uint32_t take;
    do {
        uint32_t rc = ref_count(r);
        if (!rc_live(rc))
            return 0; /* free, or cached: no references to drop */
        take = rc < k ? rc : k;
        nr = take == rc ? ref_make(gen_next(ref_gen(r)), 0) : ref_plain(r) - take;
    } while (!atomic_compare_exchange_weak_explicit(&b->ref, &r, nr, memory_order_acq_rel,
                                                    memory_order_acquire));
    MBQ_TRACE(idx, TR_DROPREFS, nr, take);
    if (ref_count(nr) == 0)
        pool_free_block(p, idx, nr);
    return take;
}

/* ---- client caches (see pool.h) ---- */

/* Whether the calling thread may use this process's cache: it is the
 * cache's owner, or becomes it (pool_cache_adopt). False also when the
 * pool has no caches or is invalidated. */
static inline bool pool_cache_enter(struct pool *p)
{
    if (!p->cache.max || (READ_ONCE(p->sh->flags) & POOL_F_INVALIDATED))
        return false;
    /* the kernel id: the owner is checked with tgkill within this process */
    uint32_t self = slock_kernel_tid(), o = atomic_load_explicit(&p->cache.owner, memory_order_relaxed);
    if (__builtin_expect(o == self, 1))
        return true;
    return pool_cache_adopt(p, self, o);
}

/* Takes the newest block of class c in our cache (a pool of several
 * classes: see pool_cache_pop). Out of line: a pool of one class never
 * runs it. */
static __attribute__((noinline)) bool pool_cache_pop_class(struct pool *p, uint32_t c, struct pool_itok t,
                                 uint32_t *idx_out, uint32_t *gen_out)
{
    const uint32_t mine = POOL_RC_CACHED | p->slot;
    for (uint32_t k = p->cache.n; k-- > 0;) {
        uint32_t idx = p->cache.idx[k], gen = p->cache.gen[k];
        if (!pool_in_class(p, c, idx))
            continue;
        /* Out of the cache whether we win it or not (someone took it);
         * the ones above move down (none, when it was the newest). */
        p->cache.n--;
        for (uint32_t j = k; j < p->cache.n; j++) {
            p->cache.idx[j] = p->cache.idx[j + 1];
            p->cache.gen[j] = p->cache.gen[j + 1];
        }
        pool_cache_publish(p, k);
        if (pool_claim_cached(p, t, idx, ref_make(gen, mine))) {
            *idx_out = idx;
            *gen_out = gen;
            return true;
        }
    }
    return false;
}

/* Takes the newest block of our cache that nobody took meanwhile (of
 * class c, in a pool of several). */
static bool pool_cache_pop(struct pool *p, uint32_t c, struct pool_itok t, uint32_t *idx_out,
                           uint32_t *gen_out)
{
    const uint32_t mine = POOL_RC_CACHED | p->slot;
    if (__builtin_expect(p->nclasses > 1, 0))
        return pool_cache_pop_class(p, c, t, idx_out, gen_out);
    while (p->cache.n) {
        uint32_t k = --p->cache.n;
        uint32_t idx = p->cache.idx[k], gen = p->cache.gen[k];
        if (pool_claim_cached(p, t, idx, ref_make(gen, mine))) {
            pool_cache_publish(p, k);
            if (k) {
                /* The next allocation's block was most likely freed by
                 * another process: fetch its descriptor and the head of its
                 * data for writing now, off that allocation's path. */
                uint32_t nx = p->cache.idx[k - 1];
                __builtin_prefetch(&p->blocks[nx], 1);
                __builtin_prefetch((const uint8_t *)&p->blocks[nx] + 64, 1);
                if (p->nclasses <= 1) /* one class: no lookup for a hint */
                    __builtin_prefetch(p->data + (size_t)nx * p->block_size, 1);
            }
            *idx_out = idx;
            *gen_out = gen;
            return true;
        }
    }
    pool_cache_publish(p, 0);
    return false;
}

/* Files idx, just made a block of our cache by our CAS (ref word now r),
 * in the cache. The cache's publication, the frees counter and the
 * allocators' wake-up are the caller's (pool_cache_keep; a release run does
 * them once at its end, pool_release_run): the published entries are a hint
 * (the ref word says whose a block is), and the wake-up's Dekker pair needs
 * only that every block is filed before the load of free_seq. *first:
 * the lowest cache entry changed since the last publication. Returns whether
 * the block went into the cache (else it went back to the lists).
 *
 * Our CAS, then the flag; invalidate sets the flag, then flushes. The two
 * must not pass each other: the CAS and this load are seq_cst, and
 * invalidate fences after its store (on x86 the CAS's lock prefix already
 * orders them, and this load is a plain one). */
static bool pool_cache_keep_run(struct pool *p, uint32_t idx, uint64_t r, uint32_t *first)
{
    bool to_lists =
        __atomic_load_n(&p->sh->flags, __ATOMIC_SEQ_CST) & POOL_F_INVALIDATED;
    if (!to_lists && p->cache.n >= p->cache.max) {
        pool_cache_spill(p); /* publishes the whole cache */
        *first = p->cache.n;
        to_lists = p->cache.n >= p->cache.max; /* the pool lock stayed held */
    }
    if (__builtin_expect(to_lists, 0)) {
        /* Back to the lists (an invalidated pool caches nothing; a full
         * cache that could not spill has no room): pool_free_block leaves
         * it to a repair if it cannot take the lock either. */
        uint64_t freed = ref_make(ref_gen(r), 0);
        if (atomic_compare_exchange_strong_explicit(&p->blocks[idx].ref, &r, freed,
                                                    memory_order_acq_rel, memory_order_relaxed))
            pool_free_block(p, idx, freed);
        return false;
    }
    if (p->cache.n < *first)
        *first = p->cache.n;
    p->cache.idx[p->cache.n] = idx;
    p->cache.gen[p->cache.n] = ref_gen(r);
    p->cache.n++;
    return true;
}

/* After the CAS that made idx a block of our cache (ref word now r): lists
 * it — unless the pool was invalidated meanwhile (an invalidated pool
 * recycles nothing), or the cache is full and its spill could not take the
 * pool lock (a peer stopped holding it): then the block goes back to the
 * lists at once, counted as freed there. */
static void pool_cache_keep(struct pool *p, uint32_t idx, uint64_t r)
{
    uint32_t first = p->cache.n;
    if (!pool_cache_keep_run(p, idx, r, &first))
        return;
    pool_cache_publish(p, first);
    pool_counter_add(&pool_self(p)->frees, 1);
    pool_wake_allocators(p); /* another process's allocation can take it from the cache */
}

/* ---- create / attach / detach ---- */

/* How many free blocks a client may keep (see pool.h): half the pool, at
 * most POOL_CACHE_MAX. The lock is taken once per half a cache, so a small
 * cache would take it nearly as often as none: pools under 16 blocks have
 * no caches. (Caches cannot starve anyone: an allocation that finds the
 * lists empty takes from them.) */
static uint32_t pool_cache_max(uint32_t block_count)
{
    uint32_t m = block_count / 2;
    m = m > POOL_CACHE_MAX ? POOL_CACHE_MAX : m;
    return m >= 8 ? m : 0;
}

/* Faults a new pool's data in (pool_params.prefault): len bytes from the
 * first class's. 0, or -ENOMEM when the kernel cannot (touching would only
 * crash). */
static int pool_prefault(struct pool *p, uint64_t len, uint64_t page)
{
    if (madvise(p->data, (size_t)len, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno != EINVAL)
        return -ENOMEM;
    for (size_t off = 0; off < len; off += (size_t)page) /* kernel < 5.14 */
        ((volatile uint8_t *)p->data)[off] = 0;
    return 0;
}

/* A new pool's descriptors and lists: every block free, on its class's
 * warm list if its pages were faulted in (warm), else on the cold list.
 * The memfd is zero: times are already MBQ_TIME_INVALID and sizes 0. Each
 * class's warm list runs from its first block at the head, the cold list
 * likewise. */
static void pool_init_lists(struct pool *p, bool warm)
{
    struct pool_shared *sh = p->sh;
    const uint64_t now = mono_ns();
    const uint32_t state = warm ? POOL_BLOCK_WARM : POOL_BLOCK_COLD;
    for (uint32_t c = 0; c < p->nclasses; c++) {
        const uint32_t lo = p->cls[c].first, hi = lo + p->cls[c].count;
        for (uint32_t i = lo; i < hi; i++) {
            struct pool_block *b = &p->blocks[i];
            atomic_init(&b->ref, ref_make(1, 0));
            b->state = state;
            b->prev = warm && i > lo ? i - 1 : POOL_NONE;
            b->next = i + 1 < hi ? i + 1 : POOL_NONE;
            b->freed_at_ns = now;
        }
        struct pool_lists *L = p->cls[c].lists;
        *L = (struct pool_lists){.warm_head = POOL_NONE, .warm_tail = POOL_NONE,
                                 .cold_head = POOL_NONE};
        if (warm) {
            L->warm_head = lo;
            L->warm_tail = hi - 1;
            L->warm_count = hi - lo;
        } else {
            L->cold_head = lo;
            L->cold_count = hi - lo;
        }
    }
    for (uint32_t i = 0; i < POOL_CACHE_MAX / 2; i++)
        sh->spill_hint[i] = POOL_NONE;
    atomic_init(&sh->lock.word, 0);
}

/* The classes params asks for, rounded (pool_block_size_round; a size that
 * cannot be rounded becomes 0, which pool_layout_of refuses). */
static int pool_params_classes(const struct pool_params *params, struct pool_classes *k)
{
    if (params->nclasses > POOL_MAX_CLASSES)
        return -1;
    if (params->nclasses == 0) {
        *k = (struct pool_classes){.n = 1, .size = {pool_block_size_round(params->block_size)},
                                   .count = {params->block_count}};
        return 0;
    }
    k->n = params->nclasses;
    for (uint32_t c = 0; c < k->n; c++) {
        k->size[c] = pool_block_size_round(params->class_size[c]);
        k->count[c] = params->class_count[c];
    }
    return 0;
}

/* The class table of a pool of several classes. */
static struct pool_class_shared *pool_class_table(void *base)
{
    return (struct pool_class_shared *)((uint8_t *)base + POOL_CLASSES_OFF);
}

/* The process-local view of a mapped segment whose layout l (for classes
 * k) was checked. */
static struct pool pool_view(struct seg seg, const struct pool_layout *l,
                             const struct pool_classes *k)
{
    uint8_t *base = seg.base;
    struct pool p = {
        .seg = seg,
        .sh = seg.base,
        .clients = (struct pool_client *)(base + l->clients_off),
        .holdings = (_Atomic uint32_t *)(base + l->holdings_off),
        .blocks = (struct pool_block *)(base + l->blocks_off),
        .formats = (struct pool_format *)(base + l->formats_off),
        .attach = base + l->attach_off,
        .data = base + l->data_off,
        .block_size = k->size[k->n - 1],
        .block_count = l->count,
        .nclasses = k->n,
        /* The cache is shared by the classes: its limit is the whole
         * pool's (a refill takes at most half a class: see
         * pool_cache_fill_locked). */
        .cache.max = pool_cache_max(l->count),
    };
    for (uint32_t c = 0; c < k->n; c++) {
        p.cls[c] = (struct pool_cls){
            .size = k->size[c],
            .first = l->cfirst[c],
            .count = k->count[c],
            .data = base + l->cdata_off[c],
            .lists = c ? &pool_class_table(base)[c].lists : &p.sh->lists,
        };
    }
    return p;
}

int pool_params_check(const struct pool_params *params, char *why, size_t n)
{
    const uint64_t page = pool_page_size();
    struct pool_classes k;
    struct pool_layout l;
    if (params->nclasses > POOL_MAX_CLASSES) {
        snprintf(why, n, "%u size classes, at most %u", params->nclasses, POOL_MAX_CLASSES);
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    }
    (void)pool_params_classes(params, &k);
    uint64_t total = 0;
    for (uint32_t c = 0; c < k.n; c++) {
        const uint64_t asked = params->nclasses ? params->class_size[c] : params->block_size;
        const char *cls = k.n > 1 ? "class " : "";
        char num[16] = "";
        if (k.n > 1)
            snprintf(num, sizeof(num), "%u: ", c);
        if (asked == 0 || k.count[c] == 0) {
            snprintf(why, n, "%s%sblock size and count must be > 0", cls, num);
            return MBQ_POOL_ERR_INVALID_PARAMETER;
        }
        if (k.size[c] == 0 || !pool_class_ok(k.size[c], k.count[c], page)) {
            snprintf(why, n, "%s%sblock size %" PRIu64 " or count %u too large", cls, num,
                     asked, k.count[c]);
            return MBQ_POOL_ERR_INVALID_PARAMETER;
        }
        if (c && k.size[c] <= k.size[c - 1]) {
            snprintf(why, n,
                     "class %u: block size %" PRIu64 " (%" PRIu64 " rounded) is not above "
                     "class %u's %" PRIu64 ": sizes must ascend",
                     c, asked, k.size[c], c - 1, k.size[c - 1]);
            return MBQ_POOL_ERR_INVALID_PARAMETER;
        }
        total += k.count[c];
    }
    if (total > POOL_MAX_BLOCKS) {
        snprintf(why, n, "%" PRIu64 " blocks in all, at most %u", total, POOL_MAX_BLOCKS);
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    }
    if (pool_layout_of(&k, page, &l) < 0) {
        snprintf(why, n, "the segment would be too large");
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    }
    return 0;
}

int pool_create(const struct pool_params *params, struct pool *out)
{
    if (!params || !out)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    const uint64_t page = pool_page_size();
    struct pool_classes k;
    struct pool_layout l;
    if (pool_params_classes(params, &k) < 0 || pool_layout_of(&k, page, &l) < 0)
        return MBQ_POOL_ERR_INVALID_PARAMETER;

    struct seg seg;
    if (seg_create("mbq-pool", (size_t)l.total, SEG_KIND_POOL, &seg) < 0)
        return MBQ_POOL_ERR_ALLOCATION_FAILED;
    struct pool p = pool_view(seg, &l, &k);
    struct pool_shared *sh = p.sh;
    sh->block_size = k.size[0];
    sh->block_count = l.count;
    sh->nclasses = k.n > 1 ? k.n : 0;
    for (uint32_t c = 0; k.n > 1 && c < k.n; c++)
        pool_class_table(seg.base)[c] = (struct pool_class_shared){
            .block_size = k.size[c],
            .first = l.cfirst[c],
            .count = k.count[c],
            .data_off = l.cdata_off[c],
        };
    sh->flags = 0;
    sh->age_out_ns = params->age_out_ns ? params->age_out_ns : POOL_DEFAULT_AGE_OUT_NS;
    sh->clients_off = l.clients_off;
    sh->holdings_off = l.holdings_off;
    sh->blocks_off = l.blocks_off;
    sh->data_off = l.data_off;
    /* Fault the client table in now: its slots are scanned for cached
     * blocks, and a read of a hole would allocate its page later. */
    memset(p.clients, 0, POOL_MAX_CLIENTS * sizeof(struct pool_client));

    if (params->prefault && pool_prefault(&p, l.total - l.data_off, page) < 0) {
        seg_close(&seg);
        return MBQ_POOL_ERR_ALLOCATION_FAILED;
    }
    pool_init_lists(&p, params->prefault);

    slock_membarrier_register(); /* see pool_intent_fence */
    if (pool_claim_slot(&p) < 0) { /* cannot happen on a fresh table */
        seg_close(&seg);
        return MBQ_POOL_ERR_ALLOCATION_FAILED;
    }
    *out = p;
    return 0;
}

/* The classes a mapped header (and class table) says, each field read
 * once: -1 when the table does not fit in the mapping. */
static int pool_read_classes(const struct seg *seg, struct pool_classes *k)
{
    const struct pool_shared *sh = seg->base;
    const uint32_t n = READ_ONCE(sh->nclasses);
    if (n <= 1) {
        *k = (struct pool_classes){.n = 1, .size = {READ_ONCE(sh->block_size)},
                                   .count = {READ_ONCE(sh->block_count)}};
        return 0;
    }
    if (n > POOL_MAX_CLASSES ||
        POOL_CLASSES_OFF + (uint64_t)n * sizeof(struct pool_class_shared) > seg->size)
        return -1;
    const struct pool_class_shared *t = pool_class_table(seg->base);
    k->n = n;
    for (uint32_t c = 0; c < n; c++) {
        k->size[c] = READ_ONCE(t[c].block_size);
        k->count[c] = READ_ONCE(t[c].count);
    }
    return 0;
}

/* Whether the class table agrees with the layout computed from it (the
 * sizes and counts were checked by pool_layout_of). */
static bool pool_class_table_ok(const struct seg *seg, const struct pool_classes *k,
                                const struct pool_layout *l)
{
    const struct pool_shared *sh = seg->base;
    if (k->n == 1)
        return true;
    const struct pool_class_shared *t = pool_class_table(seg->base);
    if (READ_ONCE(sh->block_size) != k->size[0] || READ_ONCE(sh->block_count) != l->count)
        return false;
    for (uint32_t c = 0; c < k->n; c++)
        if (READ_ONCE(t[c].first) != l->cfirst[c] || READ_ONCE(t[c].data_off) != l->cdata_off[c])
            return false;
    return true;
}

int pool_attach(int fd, struct pool *out)
{
    if (!out)
        return -EINVAL;
    struct seg seg;
    int r = seg_map(fd, SEG_KIND_POOL, sizeof(struct pool_shared), &seg);
    if (r < 0)
        return r;
    const struct pool_shared *sh = seg.base;
    /* One read of each field; from here on only the local copies count. */
    struct pool_classes k;
    const uint64_t co = READ_ONCE(sh->clients_off), ho = READ_ONCE(sh->holdings_off);
    const uint64_t bo = READ_ONCE(sh->blocks_off), dof = READ_ONCE(sh->data_off);
    struct pool_layout l;
    if (pool_read_classes(&seg, &k) < 0 || pool_layout_of(&k, pool_page_size(), &l) < 0 ||
        co != l.clients_off || ho != l.holdings_off || bo != l.blocks_off ||
        dof != l.data_off || l.total > seg.size || !pool_class_table_ok(&seg, &k, &l)) {
        seg_close(&seg);
        return -EBADMSG;
    }
    struct pool p = pool_view(seg, &l, &k);
    slock_membarrier_register(); /* see pool_intent_fence */
    r = pool_claim_slot(&p);
    if (r < 0) {
        seg_close(&seg);
        return r;
    }
    *out = p;
    return 0;
}

void pool_detach(struct pool *p)
{
    if (!p || !p->sh)
        return;
    uint32_t self = pool_self_id();
    uint32_t v = self;
    /* Only our own slot: a fork child that inherited this struct must not
     * release its parent's references. */
    if (p->slot < POOL_MAX_CLIENTS &&
        atomic_compare_exchange_strong(&p->clients[p->slot].pid, &v,
                                       self | POOL_PID_RECLAIMING)) {
        pool_finish_slot(p, p->slot, pool_reclaim_holdings(p, p->slot));
        pool_intents_forget(p, p->slot);
        atomic_store(&p->clients[p->slot].pid, 0);
    }
    seg_close(&p->seg);
    memset(p, 0, sizeof(*p));
    p->seg.fd = -1;
}

/* ---- buffers ---- */

/* An allocation from this process's cache (refilled from the warm list
 * when empty): true with the block's index and generation, its holding
 * recorded. *lr gets the lock's error if the refill could not have it. */
static inline bool pool_alloc_cached(struct pool *p, uint32_t c, struct pool_itok t,
                                     uint32_t *idx, uint32_t *gen, int *lr)
{
    bool cached = pool_cache_pop(p, c, t, idx, gen);
    /* Empty (a pool of one class: the outboxes hold blocks of any class, and
     * taking them for one class would strand the others here): a run of
     * blocks some release handed back, without the lock (pool.h
     * "Outboxes"), before the lists under it. */
    if (!cached && p->nclasses <= 1 && pool_outbox_take(p))
        cached = pool_cache_pop(p, c, t, idx, gen);
    if (!cached && (*lr = pool_lock(p)) == 0) {
        /* Checked again under the lock, which invalidate sets the flag
         * under: a pool invalidated since pool_cache_enter() (and
         * flushed already, maybe) must not have its blocks cached. */
        if (!(READ_ONCE(p->sh->flags) & POOL_F_INVALIDATED) && pool_cache_fill_locked(p, c))
            cached = pool_cache_pop(p, c, t, idx, gen);
        pool_unlock(p);
    }
    if (cached) {
        /* The holding right after the claim (the intent covers the two). A
         * store, not an increment: the block was free, so this process held
         * no reference to it (holdings never exceed references), and no
         * other thread can take one before its handle is published. */
        atomic_store_explicit(pool_holding(p, p->slot, *idx), 1, memory_order_relaxed);
        MBQ_TRACE(*idx, TR_HOLD_SET, p->slot, 1);
        pool_counter_add(&pool_self(p)->allocs, 1);
    }
    return cached;
}

/* A block of class c0, or else of the next larger class that has one
 * (pool.h "Size classes"): from the lists, then from other clients'
 * caches. 1, 0 (none in any), -EUCLEAN. Lock held. */
static int pool_take_any_locked(struct pool *p, uint32_t c0, struct pool_itok t, uint32_t *idx,
                                uint32_t *gen)
{
    int e = 0;
    for (uint32_t c = c0; e == 0 && c < p->nclasses; c++) {
        e = pool_take_locked(p, c, t, idx, gen);
        if (e == 0 && p->cache.max) /* no caches in this pool: nothing to take */
            e = pool_steal_locked(p, c, t, idx, gen);
    }
    return e;
}

/* An allocation from the lists (then other clients' caches) under the
 * lock: 0 with the block's index and generation, its holding recorded;
 * MBQ_POOL_ERR_ALLOCATION_FAILED when there is none; -EUCLEAN when the
 * lists are still corrupt after a rebuild (no loop). Lock held. */
static int pool_alloc_listed_locked(struct pool *p, uint32_t c, struct pool_itok t,
                                    uint32_t *idx, uint32_t *gen, bool quiet)
{
    struct pool_shared *sh = p->sh;
    for (int attempt = 0;; attempt++) {
        int e = pool_take_any_locked(p, c, t, idx, gen);
        if (e > 0)
            break;
        if (e == 0) {
            if (!quiet) /* a blocking allocation counts once, when it gives up */
                sh->alloc_failures++;
            return MBQ_POOL_ERR_ALLOCATION_FAILED;
        }
        if (attempt > 0) /* still corrupt after a rebuild: give up, do not loop */
            return -EUCLEAN;
        pool_repair_locked(p);
    }
    sh->allocs++;
    atomic_fetch_add_explicit(pool_holding(p, p->slot, *idx), 1, memory_order_relaxed);
    MBQ_TRACE(*idx, TR_HOLD_SET, p->slot, 0x101);
    return 0;
}

/* A block just allocated, ours alone until its handle is published: its
 * metadata reset to a new buffer's. */
static inline void pool_block_init(struct pool_block *b, uint64_t size)
{
    b->data_size = size;
    atomic_store_explicit(&b->ready, 1, memory_order_relaxed);
    atomic_store_explicit(&b->frozen, 0, memory_order_relaxed);
    b->flags = POOL_FLAGS_DEFAULT;
    b->format = 0;
    b->attach_len = 0;
    /* One constant stored three times: a chained assignment reloads each
     * stored value, a store-forwarding stall per field. */
    const mbq_time invalid = MBQ_TIME_INVALID;
    b->dts = invalid;
    b->pts = invalid;
    b->duration = invalid;
    memset(b->attachments, 0, sizeof(b->attachments));
}

static inline uint32_t pool_class_for_inline(const struct pool *p, uint64_t size)
{
    uint32_t c = 0;
    while (size > p->cls[c].size)
        c++; /* ends: the last class's size is block_size, >= size */
    return c;
}

uint32_t pool_class_for(const struct pool *p, uint64_t size)
{
    if (!p || !p->sh || size == 0 || size > p->block_size)
        return POOL_NONE;
    uint32_t c = 0;
    while (size > p->cls[c].size)
        c++; /* ends: the last class's size is block_size */
    return c;
}

static int pool_alloc_impl(struct pool *p, uint64_t size, uint64_t *handle_out, bool quiet)
{
    if (!p || !p->sh || !handle_out || size == 0 || size > p->block_size)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    const uint32_t c = __builtin_expect(p->nclasses > 1, 0) ? pool_class_for_inline(p, size) : 0;
    uint32_t idx = 0, gen = 0;
    /* The intent names each block before the CAS that claims it, and is
     * cleared once the holding records the reference. */
    const struct pool_itok t = pool_intent_open(p, 0);
    int lr = 0;
    bool cached = pool_cache_enter(p) && pool_alloc_cached(p, c, t, &idx, &gen, &lr);
    if (!cached) {
        if (lr < 0 || (lr = pool_lock(p)) < 0) {
            pool_intent_close(t);
            return lr;
        }
        int r = pool_alloc_listed_locked(p, c, t, &idx, &gen, quiet);
        pool_unlock(p);
        if (r) {
            pool_intent_close(t);
            return r;
        }
    }
    pool_intent_close(t);
    pool_block_init(&p->blocks[idx], size);
    *handle_out = (uint64_t)gen << 32 | (idx + 1);
    return 0;
}

int pool_alloc(struct pool *p, uint64_t size, uint64_t *handle_out)
{
    return pool_alloc_impl(p, size, handle_out, false);
}

static inline bool pool_cancelled(const struct pool *p, uint32_t epoch)
{
    return atomic_load_explicit(&p->sh->cancel_epoch, memory_order_seq_cst) != epoch;
}

int pool_alloc_wait(struct pool *p, uint64_t size, uint64_t *handle_out, int64_t timeout_ns)
{
    if (!p || !p->sh)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    struct pool_shared *sh = p->sh;
    uint32_t epoch = atomic_load_explicit(&sh->cancel_epoch, memory_order_seq_cst);
    int r = pool_alloc_impl(p, size, handle_out, timeout_ns != 0);
    if (r != MBQ_POOL_ERR_ALLOCATION_FAILED || timeout_ns == 0)
        return r;
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : mono_ns() + (uint64_t)timeout_ns;
    uint64_t prev = slock_set_deadline(timeout_ns < 0 ? 0 : deadline);
    for (;;) {
        int slot = futex_sleepers_enter(&sh->alloc_waiters, sh->alloc_tid,
                                        POOL_ALLOC_WAITER_SLOTS, slock_self());
        uint32_t seq = futex_seq_arm(&sh->free_seq);
        slock_heavy_barrier(); /* the releaser's half: see pool_wake_allocators */
        r = pool_cancelled(p, epoch) ? -ECANCELED : pool_alloc_impl(p, size, handle_out, true);
        /* In slices (futex_wait_slice): a releaser that died before waking
         * us costs a bounded delay, not a hang. */
        if (r != MBQ_POOL_ERR_ALLOCATION_FAILED ||
            futex_wait_slice(&sh->free_seq, seq, deadline) == -ETIMEDOUT) {
            futex_sleepers_leave(&sh->alloc_waiters, sh->alloc_tid, slot, slock_self());
            break;
        }
        futex_sleepers_leave(&sh->alloc_waiters, sh->alloc_tid, slot, slock_self());
    }
    slock_set_deadline(prev);
    if (r == MBQ_POOL_ERR_ALLOCATION_FAILED && pool_lock(p) == 0) {
        sh->alloc_failures++;
        pool_unlock(p);
    }
    return r;
}

int pool_cancel_waits(struct pool *p)
{
    if (!p || !p->sh)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    /* The epoch, then the word the sleepers compare (see bq_cancel_waits). */
    atomic_fetch_add_explicit(&p->sh->cancel_epoch, 1, memory_order_seq_cst);
    futex_seq_bump(&p->sh->free_seq);
    futex_wake(&p->sh->free_seq, INT_MAX);
    return 0;
}

int pool_retain(struct pool *p, uint64_t handle, bool by_client)
{
    uint32_t idx, gen;
    if (!p || !p->sh || !pool_decode(p, handle, &idx, &gen))
        return -EINVAL;
    struct pool_block *b = &p->blocks[idx];
    /* Refcount first, holding second, under an intent (a queue's retain has
     * no holding: its enqueue's intent covers it until the entry is in). */
    const struct pool_itok t = pool_intent_open(p, handle);
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_relaxed);
    do {
        if (ref_gen(r) != gen || !rc_live(ref_count(r))) {
            pool_intent_close(t);
            return -ESTALE;
        }
        if (ref_count(r) >= POOL_RC_AUDIT - 1) {
            pool_intent_close(t);
            return -EINVAL; /* as many references as a refcount can count */
        }
    } while (!atomic_compare_exchange_weak_explicit(&b->ref, &r, ref_plain(r) + 1,
                                                    memory_order_acq_rel, memory_order_relaxed));
    MBQ_TRACE(idx, TR_RETAIN, ref_plain(r) + 1, by_client | p->slot << 8);
    if (by_client)
        atomic_fetch_add_explicit(pool_holding(p, p->slot, idx), 1, memory_order_relaxed);
    pool_intent_close(t);
    return 0;
}

/* Takes one reference off a holding: false if it holds none. */
static inline bool pool_holding_take(_Atomic uint32_t *hold)
{
    uint32_t h = atomic_load_explicit(hold, memory_order_relaxed);
    do {
        if (h == 0)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(hold, &h, h - 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

int pool_release(struct pool *p, uint64_t handle, bool by_client)
{
    uint32_t idx, gen;
    if (!p || !p->sh || !pool_decode(p, handle, &idx, &gen))
        return -EINVAL;
    struct pool_block *b = &p->blocks[idx];
    /* Holding first, refcount second (the mirror of acquire), under an
     * intent that lasts until the block is filed. A process cannot release
     * a reference it does not hold. The intent's fence (for the holding's
     * decrement, which is not a CAS of the ref word) comes with the load. */
    _Atomic uint32_t *hold = by_client ? pool_holding(p, p->slot, idx) : NULL;
    const struct pool_itok t = pool_intent_open(p, handle);
    if (hold)
        pool_intent_fence(p, idx);
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire);
    if (ref_gen(r) != gen || !rc_live(ref_count(r))) {
        pool_intent_close(t);
        return -ESTALE;
    }
    if (hold && !pool_holding_take(hold)) {
        pool_intent_close(t);
        return -EINVAL;
    }
    /* The last release bumps the generation in the same CAS, so every
     * outstanding handle is stale from this instant; with a cache it also
     * makes the block ours, cached (see pool.h). */
    const bool cache = pool_cache_enter(p);
    const uint32_t free_rc = cache ? POOL_RC_CACHED | p->slot : 0;
    if (cache && ref_count(r) == 1)
        b->freed_at_ns = 0; /* while it is ours: age-out stamps it when it first sees it cached */
    uint64_t nr;
    do {
        if (ref_gen(r) != gen || !rc_live(ref_count(r))) {
            if (hold)
                atomic_fetch_add_explicit(hold, 1, memory_order_relaxed);
            pool_intent_close(t);
            return -ESTALE;
        }
        nr = ref_count(r) == 1 ? ref_make(gen_next(gen), free_rc) : ref_plain(r) - 1;
    } while (!atomic_compare_exchange_weak_explicit(&b->ref, &r, nr, memory_order_seq_cst,
                                                    memory_order_acquire));
    MBQ_TRACE(idx, TR_RELEASE, nr, by_client | p->slot << 8);
    if (ref_count(nr) == 0)
        pool_free_block(p, idx, nr);
    else if (rc_cached(ref_count(nr)))
        pool_cache_keep(p, idx, nr);
    pool_intent_close(t);
    return 0;
}

struct pool_block *pool_block_of(struct pool *p, uint64_t handle)
{
    uint32_t idx, gen;
    if (!p || !p->sh || !pool_decode(p, handle, &idx, &gen))
        return NULL;
    uint64_t r = atomic_load_explicit(&p->blocks[idx].ref, memory_order_acquire);
    if (ref_gen(r) != gen || !rc_live(ref_count(r)))
        return NULL;
    return &p->blocks[idx];
}

void *pool_data(struct pool *p, uint64_t handle)
{
    if (!pool_block_of(p, handle))
        return NULL;
    return pool_blk_data(p, (uint32_t)handle - 1);
}

uint64_t pool_block_capacity(struct pool *p, uint64_t handle)
{
    return pool_block_of(p, handle) ? pool_blk_size(p, (uint32_t)handle - 1) : 0;
}

void *pool_data_cap(struct pool *p, uint64_t handle, uint64_t *cap)
{
    if (!pool_block_of(p, handle))
        return NULL;
    const uint32_t idx = (uint32_t)handle - 1;
    *cap = pool_blk_size(p, idx);
    return pool_blk_data(p, idx);
}

__attribute__((noinline)) uint64_t pool_blk_size_classed(const struct pool *p, uint32_t idx)
{
    return p->cls[pool_class_of(p, idx)].size;
}

__attribute__((noinline)) uint8_t *pool_blk_data_classed(const struct pool *p, uint32_t idx)
{
    const struct pool_cls *k = &p->cls[pool_class_of(p, idx)];
    return k->data + (size_t)(idx - k->first) * k->size;
}

/* ---- inspection ---- */

int pool_stats(struct pool *p, struct pool_stats *out)
{
    if (!p || !p->sh || !out)
        return -EINVAL;
    struct pool_shared *sh = p->sh;
    /* Cached blocks are counted from the descriptors, without the lock:
     * caches change without it anyway. */
    uint32_t cached = 0;
    for (uint32_t i = 0; i < p->block_count; i++)
        cached += rc_cached(ref_count(atomic_load_explicit(&p->blocks[i].ref, memory_order_relaxed)));
    /* mbqd asks: a lock that stays held gives figures read without it
     * rather than no answer. */
    bool locked = pool_lock(p) == 0;
    uint64_t allocs = READ_ONCE(sh->allocs), frees = READ_ONCE(sh->frees);
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
        allocs += atomic_load_explicit(&p->clients[s].allocs, memory_order_relaxed);
        frees += atomic_load_explicit(&p->clients[s].frees, memory_order_relaxed);
    }
    uint32_t used = READ_ONCE(sh->used_count), warm = 0, cold = 0;
    if (cached > used)
        cached = used;
    for (uint32_t c = 0; c < p->nclasses; c++) {
        warm += READ_ONCE(p->cls[c].lists->warm_count);
        cold += READ_ONCE(p->cls[c].lists->cold_count);
    }
    *out = (struct pool_stats){
        .block_size = p->block_size,
        .block_count = p->block_count,
        .used = used - cached,
        .warm = warm + cached,
        .cold = cold,
        .cached = cached,
        .allocs = allocs,
        .frees = frees,
        .aged_out = READ_ONCE(sh->aged_out),
        .alloc_failures = READ_ONCE(sh->alloc_failures),
        .reclaimed = READ_ONCE(sh->reclaimed),
        .invalidated = (READ_ONCE(sh->flags) & POOL_F_INVALIDATED) != 0,
        .approximate = !locked,
        .audited = READ_ONCE(sh->audited),
        .nclasses = p->nclasses,
    };
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++)
        out->audits_pending +=
            atomic_load_explicit(&p->clients[s].pid, memory_order_relaxed) == POOL_PID_PENDING;
    if (locked)
        pool_unlock(p);
    return 0;
}

int pool_class_stats(const struct pool *p, uint32_t c, struct pool_class_stats *out)
{
    if (!p || !p->sh || !out || c >= p->nclasses)
        return -EINVAL;
    const struct pool_cls *k = &p->cls[c];
    *out = (struct pool_class_stats){.block_size = k->size, .block_count = k->count};
    for (uint32_t i = k->first; i < k->first + k->count; i++) {
        const struct pool_block *b = &p->blocks[i];
        uint32_t rc = ref_count(atomic_load_explicit(&b->ref, memory_order_relaxed));
        uint32_t st = READ_ONCE(b->state);
        if (rc_cached(rc)) {
            out->cached++;
            out->warm++;
        } else if (rc_live(rc) || st == POOL_BLOCK_USED) {
            out->used++;
        } else if (st == POOL_BLOCK_WARM) {
            out->warm++;
        } else {
            out->cold++; /* COLD, or AGING on its way there */
        }
    }
    return 0;
}

uint32_t pool_blocks_in_use(const struct pool *p)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->block_count; i++)
        n += rc_live(ref_count(atomic_load_explicit(&p->blocks[i].ref, memory_order_relaxed)));
    return n;
}

uint64_t pool_progress(const struct pool *p)
{
    const struct pool_shared *sh = p->sh;
    uint64_t warm = 0;
    for (uint32_t c = 0; c < p->nclasses; c++)
        warm += READ_ONCE(p->cls[c].lists->warm_count);
    return READ_ONCE(sh->allocs) + READ_ONCE(sh->frees) + READ_ONCE(sh->aged_out) + warm +
           READ_ONCE(sh->used_count);
}

uint64_t pool_overhead_per_block(void)
{
    return sizeof(struct pool_block) + POOL_MAX_CLIENTS * sizeof(uint32_t) + POOL_ATTACH_MAX;
}

/* ---- runs (pool.h, pool_run_begin) ---- */

/* pool_release(by_client) of one block inside a run naming it: the run's
 * record is the intent, and pool_run_begin made the look at the ref word
 * that the intent's fence makes. A block it frees, cached by us, goes to
 * our outbox for whoever allocates next (*boxed), else to our cache. */
static int pool_release_in_run(struct pool *p, uint64_t handle, bool cache, uint32_t *first,
                               uint32_t *kept, uint32_t *boxed)
{
    uint32_t idx, gen;
    if (!pool_decode(p, handle, &idx, &gen))
        return -EINVAL;
    struct pool_block *b = &p->blocks[idx];
    _Atomic uint32_t *hold = pool_holding(p, p->slot, idx);
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire);
    if (ref_gen(r) != gen || !rc_live(ref_count(r)))
        return -ESTALE;
    if (!pool_holding_take(hold))
        return -EINVAL;
    const uint32_t free_rc = cache ? POOL_RC_CACHED | p->slot : 0;
    if (cache && ref_count(r) == 1)
        b->freed_at_ns = 0;
    uint64_t nr;
    do {
        if (ref_gen(r) != gen || !rc_live(ref_count(r))) {
            atomic_fetch_add_explicit(hold, 1, memory_order_relaxed);
            return -ESTALE;
        }
        nr = ref_count(r) == 1 ? ref_make(gen_next(gen), free_rc) : ref_plain(r) - 1;
    } while (!atomic_compare_exchange_weak_explicit(&b->ref, &r, nr, memory_order_seq_cst,
                                                    memory_order_acquire));
    MBQ_TRACE(idx, TR_RELEASE, nr, 1 | p->slot << 8 | 0x20000);
    if (ref_count(nr) == 0) {
        pool_free_block(p, idx, nr);
    } else if (rc_cached(ref_count(nr))) {
        if (pool_outbox_put(p, idx))
            ++*kept, ++*boxed;
        else
            *kept += pool_cache_keep_run(p, idx, nr, first);
    }
    return 0;
}

int pool_release_run(struct pool *p, const uint64_t *handles, uint32_t n)
{
    if (!p || !p->sh || (n && !handles))
        return -EINVAL;
    const bool cache = n && pool_cache_enter(p);
    int err = 0;
    uint32_t first = POOL_CACHE_MAX, kept = 0, boxed = 0;
    for (uint32_t i = 0; i < n; i++) {
        int r = pool_release_in_run(p, handles[i], cache, &first, &kept, &boxed);
        if (r != 0 && err == 0)
            err = r;
    }
    if (boxed)
        pool_outbox_publish(p); /* one store of the tail for the run */
    if (kept) {
        if (kept > boxed)
            pool_cache_publish(p, first < p->cache.n ? first : p->cache.n);
        pool_counter_add(&pool_self(p)->frees, kept);
        pool_wake_allocators(p); /* another process's allocation can take them */
    }
    return err;
}

/* Claims the newest k blocks of our cache (a pool of one class) under one
 * run intent: handles[0..) gets those it won (a block stolen or taken back
 * since fails its CAS and is left out). Returns how many, or -EAGAIN when
 * the thread has no run record (nothing taken). */
static int pool_claim_run(struct pool *p, uint64_t size, uint64_t *handles, uint32_t k)
{
    const uint32_t mine = POOL_RC_CACHED | p->slot, top = p->cache.n;
    for (uint32_t i = 0; i < k; i++)
        handles[i] = handle_make(p->cache.gen[top - 1 - i], p->cache.idx[top - 1 - i]);
    /* Named before the CASes that make the references. */
    if (pool_run_begin(p, handles, k) != 0)
        return -EAGAIN;
    p->cache.n = top - k;
    uint32_t got = 0;
    for (uint32_t i = 0; i < k; i++) {
        const uint32_t idx = (uint32_t)handles[i] - 1, gen = (uint32_t)(handles[i] >> 32);
        if (!pool_claim_cached(p, (struct pool_itok){NULL, NULL}, idx, ref_make(gen, mine)))
            continue;
        /* A store, as in pool_alloc_cached: the block was free. */
        atomic_store_explicit(pool_holding(p, p->slot, idx), 1, memory_order_relaxed);
        MBQ_TRACE(idx, TR_HOLD_SET, p->slot, 2);
        pool_block_init(&p->blocks[idx], size);
        handles[got++] = handles[i];
    }
    pool_run_end(p);
    pool_cache_publish(p, p->cache.n);
    pool_counter_add(&pool_self(p)->allocs, got);
    return (int)got;
}

int pool_alloc_run(struct pool *p, uint64_t size, uint64_t *handles, uint32_t n)
{
    if (!p || !p->sh || !handles || n == 0 || n > POOL_RUN_MAX || size == 0 ||
        size > p->block_size)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    uint32_t got = 0;
    if (p->nclasses <= 1 && pool_cache_enter(p)) {
        while (got < n) {
            if (p->cache.n == 0 && !pool_outbox_take(p)) {
                /* Half a cache from the warm list, under the lock once. */
                if (pool_lock(p) < 0)
                    break;
                if (!(READ_ONCE(p->sh->flags) & POOL_F_INVALIDATED))
                    (void)pool_cache_fill_locked(p, 0);
                pool_unlock(p);
                if (p->cache.n == 0)
                    break;
            }
            uint32_t k = n - got < p->cache.n ? n - got : p->cache.n;
            int r = pool_claim_run(p, size, handles + got, k);
            if (r <= 0)
                break; /* no run record, or every claim lost: bounded */
            got += (uint32_t)r;
        }
    }
    /* The rest one by one, through the single allocation's every path (the
     * lists, cold blocks, other caches, a repair): the warm list running
     * dry is not the pool running short. */
    for (; got < n; got++) {
        int r = pool_alloc(p, size, &handles[got]);
        if (r != 0)
            return got ? (int)got : r;
    }
    return (int)got;
}
