/* The pool's shared layout: known to shm/ alone (see pool.h for the
 * pool's contract, pool.c for its invariants). */
#ifndef MBQ_SHM_POOL_LAYOUT_H
#define MBQ_SHM_POOL_LAYOUT_H

#include "lock_layout.h"
#include "pool.h"
#include "seg_layout.h"

#include <mbq/time.h>
#include <stdatomic.h>
#include <stdint.h>

#define POOL_ALLOC_WAITER_SLOTS 8

/* A block's refcount field POOL_RC_CACHED | slot: free, in the cache of the
 * client in that slot (its state stays USED: off the lists). */
#define POOL_RC_CACHED 0xff000000u
/* A refcount bit set by a recount in progress (pool_audit): every change of
 * the ref word clears it, so the recount's final CAS fails if anything
 * moved. Never part of a count: a block holds at most POOL_RC_AUDIT - 1
 * references. */
#define POOL_RC_AUDIT 0x00800000u

/* Per-block descriptor: refcount, state, free-list links, and the buffer's
 * metadata that queues copy at enqueue. The metadata (size, timing, flags)
 * is frozen by the first enqueue (frozen != 0) until the block is freed, so
 * that what a consumer reads on the block is what the queue copied. */
struct pool_block {
    _Atomic uint64_t ref;   /* generation << 32 | refcount */
    uint32_t state;         /* enum pool_block_state; under the pool lock */
    uint32_t prev, next;    /* free-list links (block indices), POOL_NONE ends */
    uint32_t reserved0;     /* while AGING: the id of the task punching it */
    uint64_t freed_at_ns;   /* CLOCK_MONOTONIC when it joined the warm list */
    uint64_t data_size;     /* bytes of payload the producer filled in */
    _Atomic uint32_t ready; /* data-ready flag (CMBufferQueue's isDataReady) */
    uint32_t flags;         /* MBQ_BUFFER_FLAG_* (mbq.h): opaque here */
    mbq_time dts, pts, duration;
    uint8_t attachments[32];
    _Atomic uint32_t frozen; /* non-zero once enqueued: setters refuse */
    uint32_t attach_len;     /* bytes of its attachment area in use */
    uint64_t format;         /* a format id (pool_format_intern), 0: none */
    uint8_t pad[24];         /* to 192 bytes: three cache lines */
};


/* Intent records per client slot: one per thread that moves references of
 * the pool (see "Accounting"). */
#define POOL_INTENTS 16

/* One thread's intent record, written only by that thread (owner, a tid):
 * the handles of the blocks whose references it is moving, 0 when none.
 * h[0] covers a single operation; h[1] a second move nested in it (an
 * enqueue that drops the oldest entry to make room). Half a cache line, so
 * that a thread's stores stay on a line it already owns. */
struct pool_intent {
    _Atomic uint32_t owner; /* tid; 0: free */
    uint32_t reserved;
    _Atomic uint64_t h[2];
    uint64_t pad;
};

/* Run records per client slot, and the moves one covers: a thread that
 * moves the references of a run of blocks of the pool at once (a batch of
 * enqueues, dequeues or releases, client/batch.c) names them all in one
 * record instead of opening an intent per block. h[0..n) are handles, set
 * before n (release); n is set before the first step of any of the moves
 * and cleared (release) after the last, so each handle in it is an intent
 * (struct pool_intent) that lasts the whole run. A recount reads a live
 * slot's runs as it reads its intents, and recounts every block a dead
 * slot's run names (shm/pool_client.c). Five cache lines. */
#define POOL_RUNS 2
#define POOL_RUN_MAX 32

struct pool_run {
    _Atomic uint32_t owner; /* as pool_intent.owner; 0: free */
    _Atomic uint32_t n;     /* handles named, 0..POOL_RUN_MAX; 0: no run */
    _Atomic uint64_t h[POOL_RUN_MAX];
    uint64_t pad[7];
};

/* A client's outbox: free blocks its release runs hand to whoever
 * allocates next, in any process (see "Outboxes" in pool.h). A ring of
 * block indices with monotonic counters: the slot's cache owner appends
 * at tail (entries first, then tail, with release, once per run); a taker
 * reads the entries in [head, tail), then advances head by CAS, and makes
 * each block its own by a CAS of the block's ref word. The entries are
 * hints, as a cache's published ones: a block in an outbox is cached by
 * its releaser (refcount field POOL_RC_CACHED | slot), and its ref word
 * alone says whose it is. Tail, head and the entries are on lines of their
 * own, so that one run moves each between the cores once. Four cache
 * lines. */
#define POOL_OUTBOX 32 /* a power of two */

struct pool_outbox {
    _Atomic uint32_t tail; /* written by the owner */
    uint32_t pad0[15];
    _Atomic uint32_t head; /* advanced by takers (CAS) */
    uint32_t pad1[15];
    _Atomic uint32_t idx[POOL_OUTBOX];
};

/* A client slot, written only by its owner (and by whoever reclaims it once
 * the owner is gone), but for its outbox's head. */
struct pool_client {
    _Atomic uint32_t pid;    /* 0: free slot; POOL_PID_PENDING: see pool_internal.h */
    _Atomic uint32_t cached; /* entries of cache[] in use (a hint) */
    /* Allocations and frees this client made through its cache; the pool's
     * totals are the header's counters plus these. */
    _Atomic uint64_t allocs, frees;
    /* Moves in flight by threads that found no free intent record: their
     * blocks are unknown, so while it is non-zero no block is recounted,
     * and a death with it non-zero may leak (a 17th concurrent thread). */
    _Atomic uint32_t intent_overflow;
    uint8_t pad[36];
    _Atomic uint32_t cache[POOL_CACHE_MAX]; /* the cached blocks' indices (a hint) */
    struct pool_intent intent[POOL_INTENTS];
    struct pool_run run[POOL_RUNS];
    struct pool_outbox outbox;
};

/* A class's free lists (pool lock held): warm (head = most recently
 * freed, ordered by freed_at_ns) and cold, each linking blocks of that
 * class only. */
struct pool_lists {
    uint32_t warm_head, warm_tail;
    uint32_t cold_head;
    uint32_t warm_count, cold_count;
};

struct pool_shared {
    struct seg_header hdr;
    uint64_t block_size;
    uint32_t block_count;
    uint32_t flags; /* POOL_F_*; set with atomic or, some without the lock */
    uint64_t age_out_ns;
    uint64_t clients_off, holdings_off, blocks_off, data_off; /* from segment start */
    uint64_t format_clock; /* interns so far (under the lock): the formats' LRU clock */
    _Alignas(64) struct slock lock;
    /* The first class's free lists (a pool of one class: all), also by
     * their own names. */
    union {
        struct pool_lists lists;
        struct {
            uint32_t warm_head, warm_tail; /* warm list: head = most recently freed */
            uint32_t cold_head;
            uint32_t warm_count, cold_count;
        };
    };
    uint32_t used_count;
    /* Classes after the first are described in the class table at
     * POOL_CLASSES_OFF (struct pool_class_shared); 0 or 1: one class, no
     * table (the layout of a pool without classes). */
    uint32_t nclasses;
    /* statistics */
    uint64_t allocs, frees, aged_out, alloc_failures, reclaimed;
    uint64_t audited; /* references dropped by recounts (pool_audit) */
    /* The blocks a cache last gave back (POOL_NONE: none), under the lock:
     * a hint for the next refill, which fetches them all at once instead of
     * one miss after another down the list. */
    uint32_t spill_hint[POOL_CACHE_MAX / 2];
    /* 256: blocking allocators. free_seq is their futex word, armed by a
     * sleeper and disarmed and bumped by the free that finds it armed;
     * sleepers count themselves in alloc_waiters and name themselves in
     * alloc_tid (futex.h). Written only around a sleep, so every release
     * reads the line without moving it. */
    _Alignas(64) _Atomic uint32_t free_seq;
    _Atomic uint32_t alloc_waiters;
    /* Bumped by pool_cancel_waits: blocked allocations return -ECANCELED. */
    _Atomic uint32_t cancel_epoch;
    _Atomic uint32_t alloc_tid[POOL_ALLOC_WAITER_SLOTS];
    uint32_t pad_wait;
    /* The client slots whose outboxes have been used (bit s: slot s; set
     * by an owner's first append, never cleared): where an allocation
     * with an empty cache looks, so that a pool whose clients never
     * release by runs costs it one load. A hint: a slot missing from it
     * loses no block (steal, age-out and flush still find them). */
    _Atomic uint64_t outbox_slots;
    uint8_t pad_line[8];
};

/* The format area, between the descriptors and the data: POOL_FORMATS
 * slots, each an interned format description (pool_format_intern). A slot
 * is a seqlock written under the pool lock: seq odd while being written
 * (or forever, if its writer died: the next intern reuses it), even and
 * non-zero when it holds bytes; a format id names the slot and the seq it
 * was interned at, so a recycled slot is detected. Readers take nothing
 * and check every length (a peer may have scribbled any of it). */
struct pool_format {
    _Atomic uint32_t seq;
    uint32_t len;   /* 1..POOL_FORMAT_MAX */
    uint64_t hash;  /* FNV-1a of bytes, to find it again */
    uint64_t stamp; /* format_clock when last interned: the oldest is recycled */
    uint64_t reserved;
    uint8_t bytes[POOL_FORMAT_MAX];
};

/* A pool of several size classes (pool.h "Size classes") has this table
 * right after its header: per class, its block size, its run of block
 * indices [first, first + count), the offset of its data (page-aligned)
 * and its free lists (the first class's in the header; its entry here
 * holds none). Written at creation; attach recomputes every field from the
 * sizes and counts and refuses a table that disagrees. */
struct pool_class_shared {
    uint64_t block_size;
    uint32_t first, count;
    uint64_t data_off;
    struct pool_lists lists;
    uint32_t pad;
};

#define POOL_CLASSES_OFF 320u

#define POOL_F_INVALIDATED 1u

#endif
