/* Buffer queue: Core Media's CMBufferQueue in a segment, for many processes.
 *
 * Layout. A header (capacity, order, policy), a line of rarely written
 * queue state (end-of-data flag, trigger count, statistics), the wait words
 * of blocking dequeuers, a journal for sorted insertion, two "sides" — the
 * producer side (tail) and the consumer side (head), each on its own pair
 * of cache lines — the trigger table, and a power-of-two array of 64-byte
 * slots indexed by monotonic 64-bit head and tail counters (with, beside it,
 * an array of the rare entries' full times: see struct bq_slot).
 *
 * Locking. Each side has its own slock. An enqueue takes only the tail
 * lock and a dequeue only the head lock, so with one producer and one
 * consumer neither lock is ever contended: the producer and the consumer
 * share no lock, only the head/tail counters, and with each side's bias
 * held (struct bslock) an operation makes no atomic read-modify-write at
 * all. Several producers
 * (or consumers) serialise on their side's lock. Operations that need the
 * whole queue — dropping the oldest entry when full, reset, call-for-each,
 * the scanning getters, trigger changes, and the mutations that must
 * evaluate an installed trigger (those on the side where its condition can
 * turn true and near its threshold: see trig_eval_locked and
 * trig_sides_locked in bq_trigger.c) — take both, always tail first.
 *
 * Each side also caches the other's counter in process memory (see struct
 * bq), so that a producer and a consumer that keep pace touch each other's
 * lines only to hand over entries.
 *
 * Totals. Each side keeps running sums (bytes, duration) of everything that
 * passed it, under a sequence counter; count = tail - head, the queue's total
 * size and duration are the producer's sums minus the consumer's, read as a
 * consistent snapshot (double collect). Non-numeric durations count as zero.
 *
 * Sorted queues (by PTS or DTS, stable among equal keys). A producer only
 * appends, under the tail lock alone, whatever the key: it never waits for
 * the consumer. Whoever holds the head lock next (a dequeue, a getter of the
 * head, or anything under both locks) first "settles" the entries appended
 * since: each one below its predecessor is moved down past the larger keys,
 * so the head is always the least and mostly-ordered input costs O(1)
 * amortised. Only entries below the tail the settler has seen move, and
 * producers write only at the tail, so the two sides never touch the same
 * slot. head.order_mark says how far the entries are in order; the tail
 * side notes where producers appended out of order, which lets the repair
 * tell such entries from a scribble. An enqueue that holds both locks anyway
 * (triggers installed, dropping the oldest) inserts in place instead. Both
 * kinds of move are journalled so that a process dying mid-shift is rolled
 * forward.
 *
 * Crashes. A lock taken over from a dead owner (SLOCK_RECOVERED) marks the
 * queue for repair; the repair runs under both locks: it completes a
 * journalled insertion, checks head/tail (a queue whose counters are out of
 * range is emptied and reported), rebuilds the side sums from the live
 * entries, restores the sort order (reporting only entries out of order
 * where no producer appended one), and rebuilds the trigger table.
 *
 * Untrusted memory. capacity, order and policy are copied at attach and
 * never re-read; every counter read from the segment is range-checked before
 * it indexes anything (a side's cached copy of the other's counter is checked
 * when it is reloaded, so a scribbled head is noticed by the producer only
 * once the queue looks full to it, or it appends out of order to a sorted
 * queue); buffer handles are checked by the pool that owns them.
 *
 * Buffers are opaque (pool_id, handle) pairs here: the process-local hooks
 * (struct bq_hooks) retain and release them, and report readiness. */
#ifndef MBQ_SHM_BQ_H
#define MBQ_SHM_BQ_H

#include "lock.h"
#include "seg.h"

#include <mbq/time.h>
#include <stdbool.h>
#include <stdint.h>

#define BQ_MAX_CAPACITY (1u << 20)
#define BQ_DEFAULT_CAPACITY 1024u /* what capacity 0 (Core Media: unbounded) gives */
/* The capacity a queue asked with capacity cap gets (the one place 0 turns
 * into the default; <mbq/mbq.h>'s MBQ_BUFFER_QUEUE_DEFAULT_CAPACITY is
 * checked to agree in client/abi_twins.c). */
#define BQ_CAPACITY_OR_DEFAULT(cap) ((cap) ? (cap) : BQ_DEFAULT_CAPACITY)
#define BQ_MAX_TRIGGERS 128
#define BQ_SPIN_NS 25000u /* blocking dequeue spins this long before sleeping */
#define BQ_AHEAD_SPIN_NS 50000u /* and this long after a wake ahead found it empty */
#define BQ_AHEAD_CPU_UNKNOWN 0xffffffffu /* a wake ahead from a thread whose CPU is unknown */
#define BQ_PRODUCER_PIDS 6 /* producers' pids a queue's header remembers */
#define BQ_WAITER_SLOTS 16 /* sleeping dequeuers a producer can check on */
#define BQ_SPACE_WAITER_SLOTS 8 /* sleeping enqueuers a consumer can check on */

enum bq_order { BQ_ORDER_FIFO = 0, BQ_ORDER_PTS = 1, BQ_ORDER_DTS = 2 };
enum bq_full_policy { BQ_FULL_FAIL = 0, BQ_FULL_DROP_OLDEST = 1 };

/* Trigger conditions, with Core Media's numbers. */
enum bq_trigger_condition {
    BQ_TRIGGER_DURATION_LESS_THAN = 1,
    BQ_TRIGGER_DURATION_LESS_THAN_OR_EQUAL = 2,
    BQ_TRIGGER_DURATION_GREATER_THAN = 3,
    BQ_TRIGGER_DURATION_GREATER_THAN_OR_EQUAL = 4,
    BQ_TRIGGER_MIN_PTS_CHANGES = 5,
    BQ_TRIGGER_MAX_PTS_CHANGES = 6,
    BQ_TRIGGER_DATA_BECOMES_READY = 7,
    BQ_TRIGGER_END_OF_DATA_REACHED = 8,
    BQ_TRIGGER_RESET = 9,
    BQ_TRIGGER_COUNT_LESS_THAN = 10,
    BQ_TRIGGER_COUNT_GREATER_THAN = 11,
    BQ_TRIGGER_DURATION_GE_AND_COUNT_GT = 12,
};

/* An entry as the queue's operations take and give it.
 *
 * Its times travel one way: the library copies them from the block at
 * enqueue, after freezing the block's metadata (docs/DATAPLANE.md), and the
 * slot keeps that copy unchanged until the entry leaves. The queue needs
 * its own copy: it orders a sorted queue, sums durations and evaluates
 * triggers in shared memory, in whichever process holds its lock, which
 * need not map the buffer's pool (a pool is a process-local mapping; shm/
 * queues name buffers by handle only). A dequeue hands the copy back in
 * the entry because it reads the slot's line anyway (the duration leaves
 * the sums), so unpacking the times costs a few register moves; a consumer
 * of the library reads the buffer's metadata from its block, which the
 * freeze keeps equal to the copy. */
struct bq_entry {
    uint64_t handle; /* non-zero */
    uint64_t seq;    /* tail + 1 at enqueue: unique, increasing; in a FIFO queue
                      * entry i reads i + 1 once published (written last) */
    mbq_time dts, pts, duration;
    uint64_t size;
    uint32_t pool_id;
    uint32_t flags;
    uint8_t attachments[24];
};
_Static_assert(sizeof(struct bq_entry) == 128, "bq_entry layout");

/* The shared layout (bq_layout.h), known to shm/ alone. */
struct bq_shared;
struct bq_slot;
struct bq_wide;

/* Process-local callbacks for the buffers a queue references. Each may be
 * NULL: then buffers are not reference counted and always ready. */
struct bq_hooks {
    void *ctx;
    /* The queue takes a reference (enqueue) or the caller gets one (copy head). */
    int (*retain)(void *ctx, uint32_t pool_id, uint64_t handle, bool by_client);
    /* The queue drops a reference (reset, drop-oldest). */
    void (*release)(void *ctx, uint32_t pool_id, uint64_t handle);
    /* A reference of the entry's buffer is about to change hands (see
     * "Accounting" in pool.h): called before the entry leaves the queue
     * (dequeue, drop-oldest, reset), or before the retain of an enqueue;
     * move_end once its new holder has it. which: 0, or 1 for the drop
     * nested in an enqueue. A non-zero return (dequeue only) fails the
     * operation before it changes anything. */
    int (*move_begin)(void *ctx, uint32_t pool_id, uint64_t handle, unsigned which);
    void (*move_end)(void *ctx, uint32_t pool_id, unsigned which);
    bool (*is_ready)(void *ctx, uint32_t pool_id, uint64_t handle);
    /* CMBufferQueueSetValidationCallback: non-zero rejects the enqueue. */
    int (*validate)(void *ctx, const struct bq_entry *e);
    /* bq_dequeue_run: the references of handles[0..n) (all of pool_id)
     * are about to leave the queue: one intent for the run (pool.h,
     * pool_run_begin), which the caller ends once it holds them all. A
     * non-zero return changes nothing, and the caller takes the head
     * alone (bq_dequeue). NULL: no runs. Called under the head lock. */
    int (*run_begin)(void *ctx, uint32_t pool_id, const uint64_t *handles, uint32_t n);
};

struct bq {
    struct seg seg;
    struct bq_shared *sh;
    struct bq_slot *slots;  /* [mask + 1] */
    struct bq_wide *wide;   /* [mask + 1], read only for wide slots */
    uint32_t capacity, mask, order, full_policy; /* copied at attach */
    /* This process's last view of the other side's counter. Both counters
     * only grow, so a stale view is a safe bound: a producer that sees room
     * by its cached head has room; a consumer that sees entries by its
     * cached tail has entries. Reloading only when the view says full (or
     * empty) keeps each side off the other's cache lines, as a ring does. */
    _Atomic uint64_t head_cache, tail_cache;
    _Atomic uint32_t empty_polls; /* FIFO consumer: see consumer_tail() */
    _Atomic uint32_t idle_wakes;  /* producer: wakes that woke nobody, in a row */
    _Atomic uint32_t idle_space_wakes; /* consumer: the same for blocked enqueuers */
    _Atomic uint32_t woken_ahead; /* consumer: entries its spin after a wake ahead took */
    /* Blocking calls' spin before sleeping, in ns: < 0 adaptive (up to
     * BQ_SPIN_NS, none with the producer on this CPU or after spins that
     * found nothing), 0 never, > 0 that long whenever the peer is elsewhere. */
    _Atomic int64_t spin_ns;
    _Atomic bool ignore_lost; /* bq_set_ignore_lost */
    struct bq_hooks hooks;
    /* eventfds this process signals: generation << 32 | fd (fd -1: none) */
    _Atomic uint64_t trigger_fd[BQ_MAX_TRIGGERS];
};

struct bq_params {
    uint32_t capacity; /* 0: BQ_DEFAULT_CAPACITY */
    uint32_t order;    /* enum bq_order */
    uint32_t full_policy;
    uint64_t object_id;
};

struct bq_stats {
    uint32_t capacity, order, full_policy, triggers;
    uint64_t count, enqueued, dequeued, dropped, rejected_full, high_water, repairs,
        corruptions, total_size;
    mbq_time duration;
    bool end_of_data;
    bool approximate; /* a lock stayed held: figures read without it, possibly torn */
};

/* Creation and attachment. create: 0, MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING,
 * -EINVAL (bad order/policy/capacity), MBQ_BQ_ERR_ALLOCATION_FAILED.
 * attach: 0, -EBADMSG (not a valid queue segment), -errno. */
int bq_create(const struct bq_params *params, struct bq *out);
int bq_attach(int fd, struct bq *out);
void bq_detach(struct bq *q);
void bq_set_hooks(struct bq *q, const struct bq_hooks *hooks);

/* Enqueue a copy of *e (e->seq is assigned). 0,
 * MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING (q, e or handle 0),
 * MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA, MBQ_BQ_ERR_QUEUE_IS_FULL (policy
 * fail), the validation hook's status, the retain hook's status,
 * MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK, -EUCLEAN. */
int bq_enqueue(struct bq *q, const struct bq_entry *e);
/* As bq_enqueue, but the queue takes over a reference the caller holds
 * instead of taking a new one (no retain hook; on failure the caller still
 * holds it). */
int bq_enqueue_take(struct bq *q, const struct bq_entry *e);
/* Dequeue the head into *out; the queue's reference passes to the caller,
 * whose move_begin hook ran before the entry left (the caller ends the
 * move once it holds the reference). 0, -EAGAIN (empty; for if_ready also:
 * head not ready), -12766 from a trigger callback, -EUCLEAN, or the
 * move_begin hook's status. */
int bq_dequeue(struct bq *q, struct bq_entry *out);
int bq_dequeue_if_ready(struct bq *q, struct bq_entry *out);
/* Runs: several entries in one lock round, with one index store, one
 * update of the side's sums, one trigger evaluation and one wake-up check
 * for all of them (at most BQ_RUN_MAX).
 *
 * bq_enqueue_run: bq_enqueue_take of e[0..n) in order (the queue takes
 * over the caller's references). *done says how many went in, a prefix:
 * 0 with *done == n; 0 with *done < n when the rest needs room that only
 * dropping the oldest can make (the caller enqueues the next one alone,
 * which drops); or the error that stopped the run at e[*done] (as
 * bq_enqueue: a full queue, end of data, the validation hook's status...).
 * A sorted queue notes each entry as an append (its consumer settles), or
 * with a trigger installed settles before the evaluation.
 *
 * bq_dequeue_run: the head entries, up to max and as long as they name
 * the head's pool, into out: the count, -EAGAIN (empty), or as bq_dequeue;
 * 0 when the run_begin hook refused them (nothing changed: take the head
 * alone with bq_dequeue, which sorts out an unmapped or unbound pool). */
#define BQ_RUN_MAX 32
int bq_enqueue_run(struct bq *q, const struct bq_entry *e, uint32_t n, uint32_t *done);
int bq_dequeue_run(struct bq *q, struct bq_entry *out, uint32_t max);
/* Blocks until an entry can be dequeued or timeout_ns passes (< 0: forever):
 * spins (see bq_set_spin), then sleeps on a futex. 0, -ETIMEDOUT, -ENODATA
 * (empty and end-of-data marked: nothing will come), -EPIPE (empty, no end
 * of data, and every declared producer gone: see bq_producers_set; unless
 * bq_set_ignore_lost), -ECANCELED (bq_cancel_waits), or as bq_dequeue. */
int bq_dequeue_wait(struct bq *q, struct bq_entry *out, int64_t timeout_ns);
/* Blocking enqueue: as bq_enqueue (or bq_enqueue_take), but a full queue
 * (policy fail) waits until a dequeue, a reset or end of data makes room,
 * or until timeout_ns passes (< 0: forever): MBQ_BQ_ERR_QUEUE_IS_FULL on
 * timeout, -ECANCELED after bq_cancel_waits. A full queue is seen without
 * taking a reference or a lock, and counts once in rejected_full, on
 * timeout. The wait sleeps on a futex; dequeuers make a system call only
 * while an enqueuer sleeps. */
int bq_enqueue_wait(struct bq *q, const struct bq_entry *e, int64_t timeout_ns);
int bq_enqueue_take_wait(struct bq *q, const struct bq_entry *e, int64_t timeout_ns);
/* The wait of a blocking enqueue alone, for a caller that must do work
 * between the wait and the enqueue (the library moves a reference under an
 * intent, which it should not hold asleep): returns 0 once the queue looks
 * not full (or at end of data, or with a policy that never rejects), and
 * MBQ_BQ_ERR_QUEUE_IS_FULL on timeout (not counted: bq_note_rejected
 * counts a give-up), -ECANCELED once the cancel epoch differs from epoch
 * (bq_cancel_epoch, read when the caller's call began). The enqueue that
 * follows may still find the queue full (another producer): wait again. */
int bq_wait_room(struct bq *q, uint32_t epoch, int64_t timeout_ns);
void bq_note_rejected(struct bq *q);
/* Every blocking call on q (dequeue and enqueue waits), in every process,
 * that began before this returns -ECANCELED at once; later calls are not
 * affected. Takes no lock. */
int bq_cancel_waits(struct bq *q);
/* The cancel epoch (for a caller that checks it itself) and the spin
 * budget of this process's blocking calls on q (see struct bq). */
uint32_t bq_cancel_epoch(const struct bq *q);
void bq_set_spin(struct bq *q, int64_t spin_ns);
/* A producer about to enqueue: wakes the dequeuers asleep on q now, so
 * that their wake-up (tens of microseconds across processes in a VM)
 * overlaps the producer's work before the enqueue. A dequeuer so woken
 * finds the queue empty and spins for the entry up to BQ_AHEAD_SPIN_NS
 * (none if its spin is 0 or the producer runs on its CPU), then sleeps
 * again. No system call when nobody sleeps. Takes no lock. */
void bq_wake_ahead(struct bq *q);
/* Producers (mbqd's side; docs/DATAPLANE.md "Producers"). set: records n
 * declared producers and their pids (up to BQ_PRODUCER_PIDS of pids[0..n)
 * are kept); n > 0 clears "producer lost", n == 0 with lost sets it and
 * wakes every blocked dequeuer, which then returns -EPIPE once the queue
 * is empty. Takes no lock (a client holding one cannot delay it). get:
 * the recorded count and pids (pids[BQ_PRODUCER_PIDS], 0 where free). */
void bq_producers_set(struct bq *q, uint32_t n, const uint32_t *pids, bool lost);
uint32_t bq_producers_get(const struct bq *q, uint32_t pids[BQ_PRODUCER_PIDS]);
bool bq_producer_lost(const struct bq *q);
/* This handle's blocking dequeues wait on through "producer lost" (a
 * consumer that waits for a producer to come back). */
void bq_set_ignore_lost(struct bq *q, bool ignore);
/* The head, with a new reference for the caller (retain hook, by_client). */
int bq_copy_head(struct bq *q, struct bq_entry *out);

int bq_mark_end_of_data(struct bq *q);
bool bq_contains_end_of_data(struct bq *q);
bool bq_is_at_end_of_data(struct bq *q);
bool bq_is_empty(struct bq *q);
int64_t bq_count(struct bq *q);
uint64_t bq_total_size(struct bq *q);
mbq_time bq_duration(struct bq *q);
mbq_time bq_first_dts(struct bq *q);
mbq_time bq_min_dts(struct bq *q);
mbq_time bq_first_pts(struct bq *q);
mbq_time bq_min_pts(struct bq *q);
mbq_time bq_max_pts(struct bq *q);
mbq_time bq_end_pts(struct bq *q);

/* Releases every entry (calling cb first for each, in dequeue order, if
 * given), empties the queue, clears end-of-data, fires reset triggers. */
int bq_reset(struct bq *q, void (*cb)(const struct bq_entry *e, void *ctx), void *ctx);
/* As bq_reset, but first, under the same locks, asks ready about every
 * entry; if it says false for any, nothing is changed and -EAGAIN is
 * returned (the caller gets what it lacks, unlocked, and tries again).
 * ready must not call into the queue. */
int bq_reset_if(struct bq *q, bool (*ready)(const struct bq_entry *e, void *ctx),
                void (*cb)(const struct bq_entry *e, void *ctx), void *ctx);
/* Calls cb for each entry in dequeue order under the queue lock; the first
 * non-zero return stops the walk and is returned. cb may change an entry's
 * attachments, nothing else, and must not call into the queue. */
int bq_for_each(struct bq *q, int (*cb)(struct bq_entry *e, void *ctx), void *ctx);

/* Triggers. install: time is used by conditions 1-4 and 12 (must be numeric,
 * epoch 0: else MBQ_BQ_ERR_BAD_TRIGGER_DURATION), threshold by 10-12. efd
 * (may be -1) is the eventfd this process signals for it; the process does
 * not own it. If the condition is already true the trigger fires at once.
 * Errors: MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION, MBQ_BQ_ERR_BAD_TRIGGER_DURATION,
 * MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, -ENOSPC (BQ_MAX_TRIGGERS installed). */
int bq_install_trigger(struct bq *q, int32_t condition, mbq_time time, int64_t threshold,
                       int efd, uint64_t *token_out);
int bq_remove_trigger(struct bq *q, uint64_t token);
/* 1 or 0: the condition's current level (0 for the event conditions 5, 6, 9),
 * or MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN. */
int bq_test_trigger(struct bq *q, uint64_t token);
/* Records the eventfd this process signals for token (not owned), and
 * signals it at once if the trigger fired while no fd was known here. */
int bq_set_trigger_fd(struct bq *q, uint64_t token, int efd);
/* Reads or writes entry i (an absolute index; i & mask is used) in its
 * stored form: for the queue's own code, and for tests that play a process
 * dying mid-operation. write stores e->seq last (release). */
void bq_slot_read(const struct bq *q, uint64_t i, struct bq_entry *out);
void bq_slot_write(struct bq *q, uint64_t i, const struct bq_entry *e);

/* Counts the entries naming (pool_id, handle) without taking a lock: 0
 * with *n, or -EAGAIN when entries moved within the queue during the scan
 * (a sorted insertion, a settle, a repair) and the count may be short.
 * Entries that arrive or leave meanwhile are the callers' business: their
 * movers hold intents (pool.h). */
int bq_count_refs(const struct bq *q, uint32_t pool_id, uint64_t handle, uint64_t *n);

/* Whether this process holds the eventfd of every trigger installed now
 * (a process that does not would leave the firings it causes pending). */
bool bq_trigger_fds_complete(const struct bq *q);
/* Times the trigger has fired, or a negative status. */
int64_t bq_trigger_fired(struct bq *q, uint64_t token);
/* A buffer became ready: re-evaluates the data-ready trigger. */
int bq_note_data_ready(struct bq *q);

/* Marks the calling thread as running a trigger callback of q (NULL: none):
 * mutations of that queue then fail with -12766. */
void bq_callback_scope(const struct bq *q);

int bq_stats(struct bq *q, struct bq_stats *out);

/* The queue's locks as mbqd watches them for owners that are not entitled
 * to them: [0] the tail slock, [1] the tail's bias holder while inside,
 * [2] the head slock, [3] the head's bias holder while inside. */
#define BQ_LOCKS 4

/* Read without a lock, for the library and mbqd (hints: whatever they
 * return is checked again under the lock before anything depends on it):
 * the trigger generation (bumped when the trigger set changes), whether
 * some trigger fired in a process that lacked its fd, the queue's nonce
 * (which tokens carry), the token of the trigger installed in slot (1; 0
 * when the slot is free), a counter that moves with every operation under
 * one of the locks, and the owner of sleeping-dequeuer slot i (0: free). */
uint32_t bq_trigger_gen(const struct bq *q);
bool bq_trigger_pending_any(const struct bq *q);
uint32_t bq_nonce(const struct bq *q);
int bq_trigger_token_at(const struct bq *q, unsigned slot, uint64_t *token);
uint64_t bq_progress(const struct bq *q);
uint32_t bq_waiter_owner(const struct bq *q, unsigned i);
/* The owner (thread id form, 0: none) each lock names now. */
int bq_lock_owners(const struct bq *q, uint32_t owner[BQ_LOCKS]);
/* Takes lock `which` from owner, whom the caller judged not entitled to it
 * (forged, scribbled, or gone), provided it still names owner; marks the
 * queue for repair, lets go (waking its waiters) and runs the repair if
 * both locks are free. 1 if broken, 0 if the lock moved on meanwhile,
 * -EBUSY if a bias could not be cleared for want of the slock. Never
 * waits. */
int bq_break_lock(struct bq *q, int which, uint32_t owner);
/* Verifies every invariant under the queue lock (repairing what it can);
 * 0 when consistent, -EUCLEAN if something had to be repaired. */
int bq_check(struct bq *q);

#endif
