/* Thin wrappers over the futex system call on words in shared memory.
 * Shared (not PRIVATE) futexes, since waiter and waker are different
 * processes mapping the same segment. */
#ifndef MBQ_SHM_FUTEX_H
#define MBQ_SHM_FUTEX_H

#include "common/clock.h" /* mono_ns(), mono_deadline_after_ns() */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Sleeps while *word == expected, until woken or until the CLOCK_MONOTONIC
 * deadline (NULL: none). Returns 0 when woken or when the word differed,
 * -ETIMEDOUT, or -EINTR. */
int futex_wait(_Atomic uint32_t *word, uint32_t expected, const struct timespec *deadline);
/* Wakes up to n sleepers; returns how many were woken, or -errno. */
int futex_wake(_Atomic uint32_t *word, int n);

/* One slice of a blocking call's sleep on *word while it reads expected:
 * at most FUTEX_SLICE_NS, so that a waker that died before waking (or a
 * scribbled word) costs a bounded delay, never a hang; less if the
 * CLOCK_MONOTONIC deadline (UINT64_MAX: none) comes first. Without a
 * deadline it reads no clock (the slice is relative). Returns 0 after
 * sleeping (woken, timed out or interrupted: the caller checks again), or
 * -ETIMEDOUT, without sleeping, when the deadline has passed. */
#define FUTEX_SLICE_NS 100000000u
int futex_wait_slice(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline);
/* Sets the slice for this process (tests: a long slice turns a lost wake-up
 * from a 100 ms delay into a hang that a deadline catches). */
void futex_set_slice_ns(uint64_t ns);

/* Sleepers on a futex word (its "seq"), and the wakers that must reach them
 * without a system call when none is asleep.
 *
 * The word's low bit, FUTEX_SEQ_ARMED, says "a sleeper may be asleep on this
 * value and no one has woken it yet". A sleeper arms the word
 * (futex_seq_arm, a locked read-modify-write: its half of the Dekker pair,
 * followed by the caller's barrier), checks its condition once more, and
 * sleeps on the armed value. A waker changes its condition, loads the word,
 * and only when it is armed enters futex_sleepers_wake, which disarms it and
 * bumps the count in one compare-and-swap (s + 1 is even and new) and wakes
 * every sleeper on it. A waker that finds the word disarmed skips the call:
 * every sleeper that armed before was woken by the waker that disarmed it
 * (and re-checks, re-arming before it sleeps again), and one that arms later
 * re-checks after the waker's change (the Dekker pair). So one wake per
 * sleep: the wakers that follow while the woken sleeper waits for a CPU —
 * every one of them on a shared CPU — pay a load, not a futex_wake.
 *
 * A sleeper also raises *count, then names itself (its lock-owner id) in a
 * free entry of tids[n] if there is one; it leaves in the opposite order.
 * The count and names serve inspection and reaping, not the wakers'
 * decision. A sleeper killed asleep leaves the word armed: it costs the
 * next waker one futex_wake for nobody, and no one after. After
 * FUTEX_IDLE_WAKES wakes in a row (*idle, process-local) that woke nobody,
 * a waker reaps the entries of dead owners and their count
 * (futex_sleepers_reap). An entry is taken after the count is raised and
 * given back before it is lowered, so the count never drops below the
 * sleepers it covers.
 *
 * Limits. A waker stopped or killed between its disarming compare-and-swap
 * and its futex_wake leaves the sleepers of that value asleep, and the
 * wakers after it find the word disarmed and make no call: they wake at the
 * end of their slice (FUTEX_WAIT_SLICE_NS, 100 ms), re-check and go on — a
 * delay, never a hang. A sleeper that arms and then returns without
 * sleeping (its re-check found its condition, a timeout, a cancel) leaves
 * the word armed: the next waker pays one futex_wake for nobody. */
#define FUTEX_SEQ_ARMED 1u
int futex_sleepers_enter(_Atomic uint32_t *count, _Atomic uint32_t *tids, unsigned n,
                         uint32_t self);
void futex_sleepers_leave(_Atomic uint32_t *count, _Atomic uint32_t *tids, int slot,
                          uint32_t self);
void futex_sleepers_reap(_Atomic uint32_t *count, _Atomic uint32_t *tids, unsigned n,
                         bool (*alive)(uint32_t owner));

/* The sleeper's arming: returns the armed value to pass to futex_wait. A
 * locked instruction, so the sleeper's stores are ordered before its loads
 * that follow. */
static inline uint32_t futex_seq_arm(_Atomic uint32_t *seq)
{
    return atomic_fetch_or_explicit(seq, FUTEX_SEQ_ARMED, memory_order_seq_cst) |
           FUTEX_SEQ_ARMED;
}

/* The waker's fast-path test, after its change (and its half of the pair). */
static inline bool futex_seq_armed(_Atomic uint32_t *seq)
{
    return atomic_load_explicit(seq, memory_order_seq_cst) & FUTEX_SEQ_ARMED;
}

/* Changes the word (and disarms it) unconditionally, so that every sleeper
 * on any earlier value returns: for a cancel, which then wakes them all. */
void futex_seq_bump(_Atomic uint32_t *seq);

/* The waker's slow half, for an armed word: disarms and bumps it and wakes
 * every sleeper on it (nothing if another waker disarmed it first: that one
 * wakes them); after FUTEX_IDLE_WAKES wakes in a row that woke nobody,
 * reaps. */
#define FUTEX_IDLE_WAKES 64
void futex_sleepers_wake(_Atomic uint32_t *seq, _Atomic uint32_t *count, _Atomic uint32_t *tids,
                         unsigned n, _Atomic uint32_t *idle, bool (*alive)(uint32_t owner));

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#endif
}

#endif
