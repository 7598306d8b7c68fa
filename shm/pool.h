/* Memory pools and buffers: Core Media's CMMemoryPool, shared by processes.
 *
 * A pool is one segment: a header, a table of client slots, a table of
 * per-client holdings, a table of block descriptors, then the blocks
 * themselves. All blocks of a pool have the same size, fixed at creation
 * (a frame pool): from a page on, each block is a page-aligned run of whole
 * pages; below a page (small messages), blocks are packed one after the
 * other at a multiple of POOL_BLOCK_ALIGN (a cache line), so 64 blocks of
 * 64 B share one page instead of taking 64 (pool_block_size_round).
 * Packing changes one rule: age-out returns only the whole pages that a
 * run of blocks aged out together covers; a page shared with a block that
 * is not aging stays resident (see pool_punch). Every other rule below is
 * the same for both forms.
 *
 * A buffer is an allocated block. Its descriptor carries a 64-bit word
 * {generation:32, refcount:32}; a handle is (generation << 32 | index + 1),
 * so a handle whose block was freed and reused is detected (-ESTALE), never
 * dereferenced. retain/release change the refcount with one CAS; the release
 * that drops it to zero bumps the generation in the same CAS and puts the
 * block in the releasing thread's cache ("Client caches" below) or, without
 * one, on the pool's warm list.
 *
 * Freed blocks stay mapped and faulted on the warm list (LIFO, so the most
 * recently used pages are reused first) and are aged out after the pool's
 * age-out period: pool_age_out() (called off the hot path, by the daemon's
 * timer) returns their pages with fallocate(PUNCH_HOLE) and moves them to the
 * cold list, from which they are handed out only when no warm block is left.
 * Flush ages out every warm block now; invalidate stops recycling: blocks
 * freed afterwards go straight back to the kernel; existing buffers stay
 * valid. The free lists are guarded by the pool's slock; the segment's pages
 * are pre-faulted at creation, so a cached alloc+free makes no system call.
 *
 * Accounting: each attached process has a client slot, and the pool counts
 * per slot how many references it holds on each block. References held by
 * queues are not counted per client: they belong to the queue's entries.
 * For every live block X:
 *
 *     refcount(X) = sum over slots of holdings[slot][X]
 *                 + queue entries naming X at its generation
 *                 + moves in flight on X,
 *
 * and every move in flight is covered by an intent record of its mover
 * naming X (struct pool_intent): outside an intent the sum is exact. A move
 * raises the refcount before it records the new holder, and removes a
 * holder before it lowers the refcount, so a death inside an intent leaves
 * X's refcount too high, never too low. When a process dies, its slot's
 * holdings are released and each block its intents name is recounted
 * (pool_audit): the excess is dropped, and the block freed if nothing
 * holds it. So a kill -9 at any instruction leaks nothing; a recount that
 * cannot be done safely now (a live process is moving the same block, a
 * queue is mid-shift) is retried later, never guessed. See "Reclaim" in
 * docs/DATAPLANE.md for the argument, op by op.
 *
 * Client caches. The pool lock is shared by every process, so taking it per
 * allocate and per free makes a producer and a consumer pull its cache line
 * back and forth, and contend, on every buffer. Instead each process keeps up
 * to POOL_CACHE_MAX free blocks of its own, used by one of its threads, the
 * first to allocate or free (another thread takes the cache over once that
 * one has exited; a pool of fewer than 16 blocks has no caches; the limit is
 * block_count / 2):
 * a free drops the block into the releasing thread's cache, an allocation
 * takes the most recently cached block, and the lock is taken once per
 * batch of half a cache — to refill an empty cache from the warm list, or to
 * give back half of a full one.
 *
 * Whose a cached block is, is in its ref word alone: refcount field
 * POOL_RC_CACHED | slot, generation already bumped. Every change to it is
 * one CAS of that word, so the owner, another claimant, a flush and a
 * repair can never both win: the last release goes from (gen, 1) straight
 * to (gen + 1, cached by me); a claim goes from cached to (gen + 1, 1); a
 * take-back goes to (gen + 2, 0) and files the block on the warm list.
 *  - An allocation that finds the lists empty takes a block from another
 *    client's cache: the ones each slot publishes, then (at most once a
 *    millisecond per process) any cached block it can find, so it does not
 *    fail while a block is free in some cache.
 *  - Flush, invalidate and the reclaim of a dead client take cached blocks
 *    back; an invalidated pool caches nothing.
 *  - Age-out stamps a cached block the first time it sees it and takes it
 *    back one age-out period later, so a block left in an idle process's
 *    cache still returns its pages (after two to three periods, not one).
 *  - A repair takes back the cached blocks no live client lists.
 * The statistics count cached blocks as warm (free and resident) and as
 * cached.
 *
 * Outboxes. A consumer that releases what a producer in another process
 * allocates would fill its cache, spill it to the warm list under the
 * lock, and the producer would refill from there under the lock: four
 * lock rounds per 16 buffers, and every block linked into a list and out
 * again. So a release run (pool_release_run) in a pool of one class (a
 * pool of classes has none: an outbox run mixes classes) puts the blocks it frees,
 * cached by their releaser as above, into the releaser's outbox (struct
 * pool_outbox in its client slot: a ring of 32 indices written by the
 * cache's owner alone) and publishes it once per run; an allocation that
 * finds its own cache empty takes a whole outbox's worth at once — from
 * the outbox it last took from (at first its own), else from the first
 * other one that has any, among the slots whose outboxes were ever used
 * (the header's outbox_slots: a pool whose clients never release by runs
 * costs an allocation one load) — before it goes to the lock: a CAS of the outbox's head, then one CAS per block
 * that makes the block cached by the taker (POOL_RC_CACHED | its slot).
 * The blocks then cross between the processes as the floor's return ring
 * makes them: the ring's lines once per run, each block's ref word once.
 *  - An outbox's entries are hints like a cache's published ones: the
 *    block's ref word says whose it is, so a stale or scribbled entry (a
 *    block taken back by a flush, stolen, or reused since) fails its CAS
 *    and is skipped; indices are bounds-checked, and an outbox whose
 *    counters are more than 32 apart is ignored (its owner then caches as
 *    before).
 *  - A block is only ever cached by one slot, whether listed in its cache,
 *    in its outbox, or in neither (a taker killed between its head CAS and
 *    the block's CAS, or a releaser between its CAS and its entry): every
 *    rule above for cached blocks holds for those in outboxes — a steal
 *    (once the lists are empty), a flush, the reclaim of a dead owner
 *    (which looks at every descriptor) and a repair find them by their ref
 *    word; steal, age-out and repair also read the outboxes' live entries
 *    as they read the caches' published ones. Age-out reads only those
 *    entries: blocks a killed taker left listed nowhere are not aged out
 *    but stay free for a steal, a flush or their owner's exit.
 *  - A full outbox (takers behind by 32) sends the rest of a run to the
 *    cache; an invalidated pool puts nothing in outboxes.
 *
 * Size classes. A pool may have up to POOL_MAX_CLASSES classes of block
 * sizes (strictly ascending, each rounded as pool_block_size_round, each
 * with its own block count), so that one pool serves allocations of any
 * size up to the largest class (CMMemoryPool serves any size). The classes
 * share the segment, the lock, the client slots, the holdings, the
 * descriptors, the formats and every rule above; what is per class is the
 * run of block indices (class 0 first), the data (each class's at a page
 * boundary, packed below a page as above), and the warm and cold lists.
 *  - An allocation of n bytes takes a block of the smallest class whose
 *    size is >= n; when that class has no free block (lists and caches),
 *    it falls back to the next larger class, and so on: it fails only when
 *    no class that fits has a free block. A buffer's capacity is its
 *    block's size (pool_block_span's len), not n.
 *  - A client's cache is shared by the classes (POOL_CACHE_MAX blocks in
 *    all, the limit half of every class's blocks together, as above): a
 *    free drops the block into it whatever its class, an allocation takes
 *    the newest cached block of the class it asks for, a refill fills from
 *    that class's warm list (at most half the class's blocks), a spill
 *    returns blocks to their own class's list.
 *  - Age-out, flush and invalidate work per class's warm list; a punch
 *    never spans two classes.
 * A pool of one class (nclasses 0 or 1) has no class table and the layout
 * of a pool without classes. */
#ifndef MBQ_SHM_POOL_H
#define MBQ_SHM_POOL_H

#include "lock.h"
#include "seg.h"

#include <mbq/time.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POOL_MAX_CLIENTS 64
#define POOL_MAX_BLOCKS (1u << 20)
#define POOL_DEFAULT_AGE_OUT_NS 500000000ull
#define POOL_NONE 0xffffffffu

/* A sub-page block's size is a multiple of this (a cache line), and so
 * is its offset in the data area. */
#define POOL_BLOCK_ALIGN 64u

/* Size classes per pool (see "Size classes" above). */
#define POOL_MAX_CLASSES 8

struct pool_params {
    uint64_t block_size;  /* bytes, > 0; see pool_block_size_round (nclasses <= 1) */
    uint32_t block_count; /* 1..POOL_MAX_BLOCKS (nclasses <= 1) */
    /* 2..POOL_MAX_CLASSES: the classes instead of block_size/block_count,
     * sizes strictly ascending after rounding, counts >= 1, the total at
     * most POOL_MAX_BLOCKS. 0 or 1: one class (class_size[0] and
     * class_count[0] when 1). */
    uint32_t nclasses;
    uint64_t class_size[POOL_MAX_CLASSES];
    uint32_t class_count[POOL_MAX_CLASSES];
    uint64_t age_out_ns;  /* 0: POOL_DEFAULT_AGE_OUT_NS */
    bool prefault;        /* fault every page in at creation (default for frames) */
};

enum pool_block_state {
    POOL_BLOCK_WARM = 1,  /* free, pages resident, on the warm list */
    POOL_BLOCK_COLD = 2,  /* free, pages returned, on the cold list */
    POOL_BLOCK_USED = 3,  /* refcount > 0 */
    POOL_BLOCK_AGING = 4, /* free, off the lists while its pages are punched */
};

/* Blocks a client keeps free for itself (see "Client caches" above). */
#define POOL_CACHE_MAX 16

/* The shared layout (pool_layout.h), known to shm/ alone. */
struct pool_shared;
struct pool_client;
struct pool_block;
struct pool_format;
struct pool_lists;
struct pool_run;
#define POOL_F_NEEDS_REPAIR 2u /* a step could not take the lock: repair at the next */

struct pool {
    struct seg seg;
    struct pool_shared *sh;
    struct pool_client *clients;
    _Atomic uint32_t *holdings; /* [POOL_MAX_CLIENTS][block_count] */
    struct pool_block *blocks;
    struct pool_format *formats; /* [POOL_FORMATS] */
    uint8_t *attach;             /* [block_count][POOL_ATTACH_MAX] */
    uint8_t *data;
    uint64_t block_size; /* copied at attach: never re-read from shm; the largest class's */
    uint32_t block_count; /* every class's */
    uint32_t nclasses;    /* 1 for a pool of one class */
    /* Per class, copied at attach: its block size, its blocks [first,
     * first + count), its data, its free lists in the segment. */
    struct pool_cls {
        uint64_t size;
        uint32_t first, count;
        uint8_t *data;
        struct pool_lists *lists;
    } cls[POOL_MAX_CLASSES];
    uint32_t slot;       /* this process's client slot */
    uint32_t pid;        /* the process that claimed it */
    uint64_t last_scan_ns; /* see pool_steal_locked */
    _Atomic uint32_t idle_wakes; /* wakes of allocators that woke nobody, in a row */
    /* This process's cache (see "Client caches"): blocks idx[0..n) with the
     * generation each had when it was cached, newest last. It belongs to
     * one thread, the first to allocate or free through it (owner, a tid):
     * other threads use the lists, so the cache needs no atomic operation
     * of its own. */
    struct {
        _Atomic uint32_t owner;
        _Atomic uint64_t checked_ns; /* when another thread last checked the owner */
        uint32_t n, max;
        uint32_t idx[POOL_CACHE_MAX], gen[POOL_CACHE_MAX];
    } cache;
    /* This process's outbox (see "Outboxes"), written by the cache's
     * owner: the next entry to fill (tail), the takers' head as last read
     * (reloaded only when the outbox looks full), and the slot whose
     * outbox an empty cache last refilled from (where it looks first). */
    struct {
        uint32_t tail, head_c, from;
        bool announced; /* our slot's bit set in outbox_slots */
    } obox;
    /* The intent record of the first thread to move a reference through
     * this mapping (irec_tid), found without a thread-local lookup. */
    struct pool_intent *irec;
    _Atomic uint32_t irec_tid;
    /* The same for run records (pool_run_begin). */
    struct pool_run *rrec;
    _Atomic uint32_t rrec_tid;
};

struct pool_stats {
    uint64_t block_size;
    uint32_t block_count, used, warm, cold;
    uint32_t cached; /* free blocks in client caches (counted in warm too) */
    uint64_t allocs, frees, aged_out, alloc_failures, reclaimed;
    bool invalidated;
    bool approximate; /* the pool lock stayed held: figures read without it */
    uint32_t audits_pending; /* dead slots whose intents wait for a recount */
    uint64_t audited;        /* references dropped by recounts */
    uint32_t nclasses;       /* 1 for a pool of one class */
};

/* One class's figures (pool_class_stats): cached blocks counted in warm
 * too, as in pool_stats. Counters of allocations are per pool, not per
 * class. */
struct pool_class_stats {
    uint64_t block_size;
    uint32_t block_count, used, warm, cold, cached;
};

/* The block size a pool made with block_size has: below a page, rounded
 * up to a multiple of POOL_BLOCK_ALIGN (packed); from a page on, rounded up
 * to whole pages. 0 for 0 or a size that cannot be rounded. */
uint64_t pool_block_size_round(uint64_t block_size);

/* 0 when pool_create would accept params' classes, sizes and counts, else
 * MBQ_POOL_ERR_INVALID_PARAMETER with the first problem in why (n bytes):
 * a size or count of 0, a size too large, sizes not ascending after
 * rounding, too many classes or blocks, a segment too large. */
int pool_params_check(const struct pool_params *params, char *why, size_t n);
/* The capacity of handle's block (its class's block size), 0 for a stale
 * or bad handle. */
uint64_t pool_block_capacity(struct pool *p, uint64_t handle);
/* pool_data, and the block's capacity in *cap, in one lookup. */
void *pool_data_cap(struct pool *p, uint64_t handle, uint64_t *cap);
/* Creates a pool and attaches the caller as its first client.
 * MBQ_POOL_ERR_INVALID_PARAMETER for bad params, MBQ_POOL_ERR_ALLOCATION_FAILED
 * when the segment cannot be made. */
int pool_create(const struct pool_params *params, struct pool *out);
/* Maps a pool segment and claims a client slot for this process (reusing
 * one that names a dead process). -EBADMSG for a bad segment, -EUSERS when
 * every slot is taken by a live process. */
int pool_attach(int fd, struct pool *out);
/* Releases every reference this process still holds, frees its slot, unmaps. */
void pool_detach(struct pool *p);

/* Allocates a block of at least size bytes (size <= block_size, the
 * largest class's; the class as in "Size classes") with one reference held
 * by the caller. 0; MBQ_POOL_ERR_INVALID_PARAMETER (size 0 or
 * too big, handle_out NULL); MBQ_POOL_ERR_ALLOCATION_FAILED (no free block). */
int pool_alloc(struct pool *p, uint64_t size, uint64_t *handle_out);
/* As pool_alloc, but an empty pool waits until a block is freed (by any
 * process, or by the reclaim of a dead holder) or timeout_ns passes (< 0:
 * forever; 0: pool_alloc): MBQ_POOL_ERR_ALLOCATION_FAILED on timeout
 * (counted once in alloc_failures), -ECANCELED after pool_cancel_waits.
 * Sleeps on a futex in the segment; releases make a system call only while
 * an allocator sleeps. */
int pool_alloc_wait(struct pool *p, uint64_t size, uint64_t *handle_out, int64_t timeout_ns);
/* Every pool_alloc_wait on p, in every process, that began before this
 * returns -ECANCELED at once. Takes no lock. */
int pool_cancel_waits(struct pool *p);
/* Adds a reference. by_client: counted as held by this process (false for a
 * reference a queue entry holds). 0, -ESTALE, -EINVAL. */
int pool_retain(struct pool *p, uint64_t handle, bool by_client);
/* Drops a reference; the last one frees the block. 0, -ESTALE, -EINVAL. */
int pool_release(struct pool *p, uint64_t handle, bool by_client);
/* A reference moved from a queue entry to this process (dequeue): counts it
 * as held by this process without changing the refcount. Call it inside the
 * move's intent (pool_move_begin before the entry left the queue,
 * pool_move_end after this). */
int pool_adopt(struct pool *p, uint64_t handle);
/* The opposite: a reference this process holds moves to a queue entry
 * (an enqueue that takes over the caller's reference). The refcount stays;
 * the holding drops. 0, -ESTALE, -EINVAL (not held by this process). A
 * failed hand-over is undone with pool_adopt. Call it inside the move's
 * intent (pool_move_begin before, pool_move_end once the entry is in). */
int pool_disown(struct pool *p, uint64_t handle);

/* The block's descriptor and data for a live handle, or NULL (stale/bad). */
struct pool_block *pool_block_of(struct pool *p, uint64_t handle);
void *pool_data(struct pool *p, uint64_t handle);

/* A live buffer's metadata, read or written by the process that holds it
 * (what a queue copies at enqueue). Each returns 0, or -ESTALE for a stale
 * or bad handle. The size read is clamped to the block: a peer may have
 * scribbled it. Any pointer may be NULL. */
int pool_read_meta(struct pool *p, uint64_t handle, uint64_t *size, mbq_time *dts,
                   mbq_time *pts, mbq_time *duration);
int pool_set_timing(struct pool *p, uint64_t handle, mbq_time dts, mbq_time pts,
                    mbq_time duration);
/* -EINVAL when size exceeds the block. The setters of size, timing and
 * flags return -EPERM once the buffer was enqueued (pool_freeze): its
 * metadata is then fixed until the block is freed, so that a consumer reads
 * on the block what the queue copied. Readiness is not frozen. */
int pool_set_data_size(struct pool *p, uint64_t handle, uint64_t size);
/* The buffer's flags word (MBQ_BUFFER_FLAG_*, opaque here); a new buffer's
 * is POOL_FLAGS_DEFAULT (sync). */
#define POOL_FLAGS_DEFAULT 1u
int pool_set_flags(struct pool *p, uint64_t handle, uint32_t flags);
int pool_get_flags(struct pool *p, uint64_t handle, uint32_t *flags);
/* Format descriptions (an opaque byte string: caps, codec parameters),
 * interned in the pool's format area so that a buffer carries only an id.
 * POOL_FORMATS slots; a new format takes an empty slot or the least
 * recently interned one that no live buffer carries (-ENOSPC when every
 * slot is carried). An id whose slot was recycled reads -ESTALE: one kept
 * aside while no buffer carried it, or (a narrow race) one set on a buffer
 * while another process recycled its slot. */
#define POOL_FORMATS 16
#define POOL_FORMAT_MAX 4064
/* Interns bytes[0..len) (1..POOL_FORMAT_MAX), under the pool lock: the id
 * of an identical format already there, or of a slot written now. 0,
 * -EINVAL, -ENOSPC (every slot carried by a live buffer), -EBUSY (the lock
 * stays held). */
int pool_format_intern(struct pool *p, const void *bytes, uint32_t len, uint64_t *id_out);
/* Whether id names a format the area holds now (no lock). */
bool pool_format_current(const struct pool *p, uint64_t id);
/* Copies format id into buf (cap bytes) and its length into *len_out. 0;
 * -ERANGE (cap too small: *len_out says how much is needed); -ESTALE (the
 * slot was recycled, or is being written); -EBADMSG (an id that names no
 * slot, or a slot whose length is out of range: forged or scribbled). */
int pool_format_read(const struct pool *p, uint64_t id, void *buf, uint32_t cap,
                     uint32_t *len_out);
/* The buffer's format id (0: none); setting it is frozen by an enqueue like
 * the rest of the metadata. set: 0, -ESTALE (buffer, or id not current),
 * -EBADMSG (id names no slot), -EPERM (frozen). */
int pool_set_format(struct pool *p, uint64_t handle, uint64_t id);
int pool_get_format(struct pool *p, uint64_t handle, uint64_t *id);
/* The bytes of the format area (what a pool costs besides its blocks). */
uint64_t pool_format_area_size(void);

/* Attachments (CMSampleBuffer attachments): per block, up to
 * POOL_ATTACH_MAX bytes of key -> bytes records in the attachment area,
 * keys NUL-free strings of 1..POOL_ATTACH_KEY_MAX bytes, each record
 * marked propagate or not. Writes are frozen by an enqueue like the rest of
 * the metadata. A malformed area (scribbled, or a holder killed while
 * writing it) reads -EBADMSG, never out of bounds.
 * set: replaces key's record; 0, -EINVAL, -ENOSPC (area full), -ESTALE,
 * -EPERM, -EBADMSG. get: 0 (value copied, *vlen its length), -ENOENT,
 * -ERANGE (cap too small: *vlen needed), -ESTALE, -EBADMSG. remove (key
 * NULL: all): 0, -ENOENT, ... propagate: copies src's propagating records
 * onto dst (replacing the same keys). count: records, or -errno. */
#define POOL_ATTACH_MAX 256
#define POOL_ATTACH_KEY_MAX 64
int pool_attachment_set(struct pool *p, uint64_t handle, const char *key, const void *val,
                    uint32_t vlen, bool propagate);
int pool_attachment_get(struct pool *p, uint64_t handle, const char *key, void *buf, uint32_t cap,
                    uint32_t *vlen, bool *propagate);
int pool_attachment_remove(struct pool *p, uint64_t handle, const char *key);
int pool_attachment_propagate(struct pool *dp, uint64_t dst, struct pool *sp, uint64_t src);
int pool_attachment_count(struct pool *p, uint64_t handle);

/* Freezes the metadata (the library calls it at enqueue, before reading
 * what the queue copies): 1 when this call froze it, 0 when it was frozen
 * already, -ESTALE. pool_thaw undoes a freeze whose enqueue failed (so a
 * refused buffer stays mutable; two threads enqueueing the same buffer at
 * once, one failing, may leave it thawed while queued: the documented
 * race of concurrent use). */
int pool_freeze(struct pool *p, uint64_t handle);
void pool_thaw(struct pool *p, uint64_t handle);
/* pool_freeze, then pool_read_meta, in one lookup (the enqueue's): 1, 0
 * as pool_freeze, or -ESTALE. Every output is required. */
int pool_freeze_read_meta(struct pool *p, uint64_t handle, uint64_t *size, mbq_time *dts,
                          mbq_time *pts, mbq_time *duration);
bool pool_is_frozen(struct pool *p, uint64_t handle);
/* The segment's fd (borrowed: owned by the mapping) and the block's offset
 * and length in it, for a consumer that maps the payload itself: the
 * offset is page-aligned for page blocks, a multiple of POOL_BLOCK_ALIGN
 * for sub-page ones (whose page holds other blocks too). 0,
 * -ESTALE, -EBADF (the mapping kept no fd). */
int pool_block_span(struct pool *p, uint64_t handle, int *fd, uint64_t *offset, uint64_t *len);
int pool_set_ready(struct pool *p, uint64_t handle, bool ready);
/* False for a stale handle too. */
bool pool_is_ready(struct pool *p, uint64_t handle);

/* For the daemon, read without the lock (hints, never trusted for an
 * index): the raw owner word of a client slot (a pid, or a client id in
 * the form of shm/lock.h, with POOL_PID_RECLAIMING while being reclaimed),
 * the references that slot holds, a counter that moves with every
 * operation under the pool lock, and the bytes of descriptors and
 * holdings a pool needs per block besides its pages. */
uint32_t pool_slot_owner(const struct pool *p, uint32_t slot);
/* Blocks with a live reference (held, queued or being moved; cached free
 * blocks do not count), from the descriptors without the lock: a hint
 * (mbqd keeps an unlinked pool nobody has open while it is non-zero). */
uint32_t pool_blocks_in_use(const struct pool *p);
uint64_t pool_slot_held(const struct pool *p, uint32_t slot);
uint64_t pool_progress(const struct pool *p);
uint64_t pool_overhead_per_block(void);

/* Returns the pages of warm blocks freed more than the age-out period
 * before now_ns. Returns how many blocks were aged out, or -errno. */
int pool_age_out(struct pool *p, uint64_t now_ns);
/* Whether age-out may have work: warm blocks, or blocks in client caches.
 * Reads hints without the lock (for the daemon's timer). */
bool pool_age_out_due(const struct pool *p);
/* Ages out every warm block now, cached ones included. */
int pool_flush(struct pool *p);
/* Stops recycling for good and flushes. */
int pool_invalidate(struct pool *p);
/* Counts the queue entries that name the block of handle (at its
 * generation), in every queue that may hold buffers of this pool: 0 with
 * *n, or -EAGAIN when a queue is mid-move and cannot be counted now. */
typedef int (*pool_count_fn)(void *ctx, uint64_t handle, uint64_t *n);

/* Releases the references of client slots whose process is gone, and
 * recounts the blocks their intents name (count: the queues' entries; NULL
 * when no queue can hold this pool's buffers). A recount that must wait
 * leaves the slot marked pending, and a later call retries it. Returns how
 * many references were released. pool_reclaim_dead(p) is
 * pool_reclaim_dead_ex(p, NULL, NULL): without a way to count queue entries
 * it recounts nothing (a leak, never a wrong free); a caller that knows no
 * queue holds the pool's buffers passes a count that answers 0. */
int pool_reclaim_dead(struct pool *p);
int pool_reclaim_dead_ex(struct pool *p, pool_count_fn count, void *ctx);
/* Releases everything the client in slot holds (the daemon calls this when
 * it learns a client died) and recounts the blocks of its intents, as
 * pool_reclaim_dead_ex. */
int pool_reclaim_slot(struct pool *p, uint32_t slot);
int pool_reclaim_slot_ex(struct pool *p, uint32_t slot, pool_count_fn count, void *ctx);
/* Whether some slot waits for a recount. pool_audit_retry retries those
 * slots only (what the daemon's timer does): 0 when none is left pending,
 * -EAGAIN. */
bool pool_audit_pending(const struct pool *p);
int pool_audit_retry(struct pool *p, pool_count_fn count, void *ctx);
/* Recounts the references of handle's block and drops the excess over what
 * holdings and queue entries account for (freeing the block at zero).
 * Call only for a block some dead process's intent named. 1 when references
 * were dropped, 0 when the count was exact (or the block moved on),
 * -EAGAIN when it cannot be decided now: retry later. */
int pool_audit(struct pool *p, uint64_t handle, pool_count_fn count, void *ctx);

/* Intents for moves that span more than one pool call (a dequeue: the
 * queue's removal of the entry, then pool_adopt; a hand-over enqueue:
 * pool_disown, then the queue's insertion; a queue's release of an entry
 * it dropped). which: 0 for the operation, 1 for a move nested in it.
 * pool_retain and pool_release inside the span find the intent naming
 * their block and leave it alone; pool_adopt and pool_disown rely on it.
 * Called by one thread at a time per (thread, which); an intent must be
 * ended by the thread that began it. */
void pool_move_begin(struct pool *p, uint64_t handle, unsigned which);
void pool_move_end(struct pool *p, unsigned which);
/* The two ends of the library's hand-overs in one call each (one lookup of
 * the intent record instead of two): pool_move_begin(which 0) and
 * pool_disown (the intent is cleared again on failure); pool_adopt and
 * pool_move_end(which 0) (the intent is cleared whatever the result). */
int pool_disown_begin(struct pool *p, uint64_t handle);
/* A hand-over's first half in one lookup of the block (the enqueue that
 * takes the caller's reference): pool_disown_begin, then
 * pool_freeze_read_meta into *m. 1 or 0 as pool_freeze (the intent is
 * set and the holding moved), -ESTALE or -EINVAL (nothing changed). */
struct pool_meta {
    uint64_t size;
    mbq_time dts, pts, duration;
};
int pool_handover_begin(struct pool *p, uint64_t handle, struct pool_meta *m);
/* A move that must outlive its intent record (a reset's release of an
 * entry deferred past the queue's unlock, while the library asks the
 * daemon about the entry's pool): while held, no block of the pool is
 * recounted, as for a move without a record. A death while held may leak
 * the block, never free it. Every hold ends with one unhold. */
void pool_move_hold(struct pool *p);
void pool_move_unhold(struct pool *p);
int pool_adopt_end(struct pool *p, uint64_t handle);

/* Runs: one intent over the moves of up to POOL_RUN_MAX blocks of p (a
 * batch of hand-overs, dequeues or releases). pool_run_begin names every
 * handle in the calling thread's run record before the first step of any
 * of the moves (one fence for all of them); pool_run_end clears it after
 * the last. In between, the thread moves those references with the _run
 * calls below, or pool_adopt, which open no intent of their own; a death
 * anywhere in between leaves each named block's refcount too high, never
 * too low, and the reclaim recounts every one (as for an intent). One run
 * per thread and pool at a time. begin: 0; -EINVAL (n 0 or above
 * POOL_RUN_MAX); -EAGAIN when the thread has no run record (POOL_RUNS per
 * client slot: make the moves one by one instead) or is in a run already. */
#define POOL_RUN_LIMIT 32 /* POOL_RUN_MAX, for the callers outside shm/ */
int pool_run_begin(struct pool *p, const uint64_t *handles, uint32_t n);
void pool_run_end(struct pool *p);
/* Inside a run naming them: pool_disown for handles[0..n) in order,
 * stopping at the first that fails. Returns how many were handed over
 * (their holdings dropped); *err (may be NULL) the first failure's error. */
uint32_t pool_disown_run(struct pool *p, const uint64_t *handles, uint32_t n, int *err);
/* Inside a run naming them: pool_release(by_client) of each of
 * handles[0..n). 0, or the first error (that element's reference stays
 * where it was; the others are released). */
int pool_release_run(struct pool *p, const uint64_t *handles, uint32_t n);
/* Allocates up to n (1..POOL_RUN_MAX) blocks of size bytes into
 * handles[], as pool_alloc each, by runs of the calling thread's cache:
 * the blocks a refill brings (from the outboxes, else half a cache from
 * the warm list) are claimed under one run intent (pool_run_begin) that
 * names them all, with one publication of the cache and of the counters.
 * Where that cannot go (a pool of several classes, no cache for this
 * thread, no run record, a cache that no refill can fill: cold blocks
 * only) it allocates the rest as pool_alloc, one block at a time. Returns
 * how many (1..n; fewer when the pool ran short), MBQ_POOL_ERR_ALLOCATION_FAILED when it had none,
 * MBQ_POOL_ERR_INVALID_PARAMETER, or -EUCLEAN as pool_alloc. */
int pool_alloc_run(struct pool *p, uint64_t size, uint64_t *handles, uint32_t n);
int pool_stats(struct pool *p, struct pool_stats *out);
/* Class c's figures, from the descriptors without the lock (hints).
 * 0, -EINVAL (c >= nclasses). */
int pool_class_stats(const struct pool *p, uint32_t c, struct pool_class_stats *out);
/* The class whose blocks an allocation of size bytes tries first, or
 * POOL_NONE when size is 0 or larger than every class. */
uint32_t pool_class_for(const struct pool *p, uint64_t size);
/* The owner (thread id form, 0: none) the pool lock names now, for mbqd's
 * watch over owners that are not entitled to it. */
uint32_t pool_lock_owner(const struct pool *p);
/* Takes the pool lock from owner, whom the caller judged not entitled to it
 * (forged, scribbled, or gone), provided it still names owner; repairs the
 * pool and lets go (waking its waiters). 1 if broken, 0 if the lock moved
 * on meanwhile. Never waits. */
int pool_break_lock(struct pool *p, uint32_t owner);
/* References held by this process (sum of its holdings). */
uint64_t pool_held_by_self(struct pool *p);

#endif
