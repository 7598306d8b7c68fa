/* The buffer queue's shared layout: known to shm/ alone (see bq.h for the
 * queue's contract and docs/DATAPLANE.md for the layout's reasons). */
#ifndef MBQ_SHM_BQ_LAYOUT_H
#define MBQ_SHM_BQ_LAYOUT_H

#include "bq.h"
#include "lock_layout.h"
#include "seg_layout.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* How an entry is stored: one cache line per slot, so that handing an entry
 * over moves one line between the cores, not two. The three times keep
 * their values here and share one timescale (each time's flags byte has
 * BQ_SLOT_TS_ZERO when its timescale is 0, as for an invalid time), which
 * is what a stream's timestamps do. An entry that does not fit — times of
 * different timescales or with an epoch, flags beyond CMTime's five, or
 * non-zero attachments — is stored "wide": the slot says so and the full
 * times and attachments are in the wide array at the same index. */
struct bq_slot {
    uint64_t handle;
    uint64_t seq; /* as bq_entry.seq: the FIFO publish mark, stored last */
    int64_t dts, pts, duration; /* values (compact slots) */
    uint64_t size;
    uint32_t pool_id;
    uint32_t flags;
    int32_t timescale; /* of every time with a timescale (compact slots) */
    uint8_t dts_flags, pts_flags, duration_flags;
    uint8_t wide; /* BQ_SLOT_WIDE: times and attachments in bq.wide[i] */
};
_Static_assert(sizeof(struct bq_slot) == 64, "bq_slot is one cache line");
_Static_assert(offsetof(struct bq_slot, seq) == 8, "bq_slot layout");

#define BQ_SLOT_TS_ZERO 0x80u
#define BQ_SLOT_WIDE 1u

struct bq_wide {
    mbq_time dts, pts, duration;
    uint8_t attachments[24];
};
_Static_assert(sizeof(struct bq_wide) == 96, "bq_wide layout");

/* One side of the queue. The index — the only field the other side reads
 * on the fast path — sits alone in its own pair of cache lines, written
 * once per operation; everything else the side writes (its lock, sequence
 * counter, sums, counters) is in the next pair, which the other side never
 * touches on the fast path. Sharing a line between them would make a
 * spinning peer pull it away between each of the writer's stores. */
#define BQ_RUNNER_SHARED UINT64_MAX

struct bq_side {
    _Atomic uint64_t index; /* tail or head: monotonic */
    /* Who moves this side and where, on the line the side writes anyway:
     * the thread that moved it last (its lock-owner id, high half) and the
     * CPU it ran on (+1, low half; 0 unknown), or BQ_RUNNER_SHARED once two
     * live threads have moved it (for good: from then on every sleeper on
     * the other side pays the heavy barrier). A thread about to sleep on
     * the other side reads it to tell whether it may skip that barrier
     * (bq_sleep_barrier in bq_wait.c). Written only when it changes, with
     * a full barrier; 0 in a new queue. */
    _Atomic uint64_t runner;
    uint8_t pad0[112];
    struct bslock lock;
    _Atomic uint32_t seq;   /* odd while the sums below are being changed */
    _Atomic uint64_t bytes; /* sum of sizes that passed this side */
    _Atomic int64_t dur_value;
    _Atomic uint64_t dur_scale_flags; /* timescale | flags << 32 */
    _Atomic int64_t dur_epoch;
    _Atomic uint64_t ops; /* enqueued / dequeued (drops and resets excluded) */
    /* Producer-side counters (unused on the consumer side). */
    _Atomic uint64_t rejected_full, dropped, high_water;
    /* Sorted queues (see "Sorted queues" above). Head side: the entries in
     * [head, order_mark) are in order. Tail side: one past the last index
     * appended with a key below its predecessor's (0: none), and the key of
     * the last entry appended. */
    _Atomic uint64_t order_mark;
    mbq_time last_key;
};
_Static_assert(sizeof(struct bq_side) == 256, "bq_side is two pairs of cache lines");
_Static_assert(offsetof(struct bq_side, lock) == 128, "bq_side layout");

struct bq_trigger {
    _Atomic uint32_t state; /* 0 free, 1 installed */
    uint32_t condition;
    uint32_t gen;   /* bumped at each install of this slot */
    uint32_t level; /* last evaluated level */
    mbq_time time;
    int64_t threshold;
    _Atomic uint64_t fired;   /* times it fired */
    _Atomic uint32_t pending; /* fired while the signalling process lacked its fd */
    uint32_t owner_pid;       /* the installer */
    uint8_t pad[8];
};
_Static_assert(sizeof(struct bq_trigger) == 72, "bq_trigger layout");

/* What an active journal records: entry goes to pos, the entries in
 * [pos, tail) each move up one slot (from the top down). */
#define BQ_JOURNAL_INSERT 1u /* a producer's insertion; tail then becomes tail + 1 */
#define BQ_JOURNAL_SETTLE 2u /* a consumer moving the appended entry at index tail down */

struct bq_journal {
    _Atomic uint32_t active; /* 0, or what is in progress: BQ_JOURNAL_* */
    /* Bumped by 2 as a journalled move begins; odd while a repair runs. A
     * reader that scans the entries without the locks (bq_count_refs) sees
     * it unchanged and even, and active 0, on both sides of its scan, or
     * an entry may have moved under it. */
    _Atomic uint32_t moves;
    uint64_t pos;               /* absolute index the entry goes to */
    uint64_t tail;              /* tail when the insertion began (settle: the index moved) */
    _Atomic uint64_t progress;  /* slots above this one are already shifted */
    uint64_t ops;               /* the producer's ops count when it began */
    uint8_t pad[24];
    struct bq_entry entry;
};
_Static_assert(sizeof(struct bq_journal) == 192, "bq_journal layout");

/* trigger_sides: an enqueue (dequeue) takes both locks and evaluates when
 * an installed condition can become true on it (ENQ, DEQ), or when its
 * entry's duration could move the total the way an installed duration
 * condition turns true on (ENQ_DUR: the enqueue lowers it, DEQ_DUR: the
 * dequeue raises it — a negative, rounded or rescaled duration). */
#define BQ_TRIG_ENQ 1u
#define BQ_TRIG_DEQ 2u
#define BQ_TRIG_ENQ_DUR 4u
#define BQ_TRIG_DEQ_DUR 8u

#define BQ_F_END_OF_DATA 1u
#define BQ_F_NEEDS_REPAIR 2u
/* Every declared producer is gone (set and cleared by mbqd alone; see
 * bq_producers_set). */
#define BQ_F_PRODUCER_LOST 4u

struct bq_shared {
    struct seg_header hdr;
    uint32_t capacity, slots, order, full_policy;
    uint32_t entry_size, nonce;
    uint64_t entries_off;
    uint8_t pad0[32];
    /* 128: queue state */
    _Atomic uint32_t flags;
    _Atomic uint32_t trigger_count;
    _Atomic uint32_t trigger_gen; /* bumped when the trigger set changes */
    /* Which operations must take both locks and evaluate the triggers
     * (BQ_TRIG_*): derived from the installed conditions, changed only under
     * both locks, read by each enqueue and dequeue. */
    _Atomic uint32_t trigger_sides;
    _Atomic uint64_t repairs, corruptions;
    /* Count gates (see trig_sides_locked): an enqueue that leaves at most
     * enq_gate entries, or a dequeue that leaves at least deq_gate, cannot
     * turn any installed trigger true and needs no evaluation. */
    _Atomic int64_t enq_gate, deq_gate;
    _Atomic uint32_t trigger_hi; /* one past the highest trigger slot in use */
    /* Declared producers as mbqd counts them, and the pids of up to
     * BQ_PRODUCER_PIDS of them (0: free) so that a restarted mbqd knows
     * whose exit to wait for. Written by mbqd alone (bq_producers_set). */
    _Atomic uint32_t producers;
    mbq_time last_min_pts, last_max_pts; /* for the PTS-change triggers */
    _Atomic uint32_t producer_pid[BQ_PRODUCER_PIDS];
    /* 256: blocking dequeuers' futex word (armed by a sleeper, disarmed
     * and bumped by the producer that wakes it: futex.h) and their count */
    _Alignas(128) _Atomic uint32_t data_seq;
    _Atomic uint32_t data_waiters;
    /* The tids of blocking dequeuers asleep (0: free), so that a producer
     * can tell one that died asleep from a live one (see wake_consumers). */
    _Atomic uint32_t waiter_tid[BQ_WAITER_SLOTS];
    /* Blocking enqueuers' futex word, armed by them and disarmed by the
     * consumer that wakes them, and their sleepers (as above). Consumers
     * read space_seq on every dequeue, producers data_seq on every enqueue:
     * the line is written only around a sleep, so on the fast path both
     * keep it shared. */
    _Atomic uint32_t space_seq;
    _Atomic uint32_t space_waiters;
    _Atomic uint32_t space_tid[BQ_SPACE_WAITER_SLOTS];
    /* Bumped by bq_cancel_waits: every blocked call that began before
     * returns -ECANCELED. */
    _Atomic uint32_t cancel_epoch;
    /* The CPU (+ 1; BQ_AHEAD_CPU_UNKNOWN) the last bq_wake_ahead ran on,
     * until a dequeuer it woke takes it (exchange for 0): that one, not on
     * the producer's CPU, spins for the entry; 0 none pending (the field
     * once held the CPU of the last enqueue, which tail.runner now says). A
     * hint only; it shares the line the wake writes anyway. */
    _Atomic uint32_t ahead_cpu;
    uint8_t pad2[120 - 4 * BQ_WAITER_SLOTS - 16 - 4 * BQ_SPACE_WAITER_SLOTS];
    /* 384 */
    _Alignas(128) struct bq_journal journal;
    _Alignas(128) struct bq_side tail;
    _Alignas(128) struct bq_side head;
    _Alignas(128) struct bq_trigger triggers[BQ_MAX_TRIGGERS];
    /* entries at entries_off */
};
_Static_assert(offsetof(struct bq_shared, flags) == 128, "bq layout");
_Static_assert(offsetof(struct bq_shared, data_seq) == 256, "bq layout");
_Static_assert(offsetof(struct bq_shared, producer_pid) + 4 * BQ_PRODUCER_PIDS <= 256, "bq layout");
_Static_assert(offsetof(struct bq_shared, journal) == 384, "bq layout");
_Static_assert(offsetof(struct bq_shared, cancel_epoch) < 384, "bq layout");
_Static_assert(offsetof(struct bq_shared, tail) == 640, "bq layout");
_Static_assert(offsetof(struct bq_shared, head) == 896, "bq layout");
_Static_assert(offsetof(struct bq_shared, triggers) == 1152, "bq layout");

#endif
