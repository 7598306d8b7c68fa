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

/* Sleepers on a futex word that wakers check before making a system call.
 * A sleeper raises *count, then names itself (its lock-owner id) in a free
 * entry of tids[n] if there is one; it leaves in the opposite order. A
 * sleeper killed asleep leaves *count raised, which would cost every later
 * waker a futex_wake for nobody: after enough wakes in a row that woke
 * nobody, a waker reaps the entries of dead owners and their count
 * (futex_sleepers_reap). An entry is taken after the count is raised and
 * given back before it is lowered, so the count never drops below the
 * sleepers it covers. */
int futex_sleepers_enter(_Atomic uint32_t *count, _Atomic uint32_t *tids, unsigned n,
                         uint32_t self);
void futex_sleepers_leave(_Atomic uint32_t *count, _Atomic uint32_t *tids, int slot,
                          uint32_t self);
void futex_sleepers_reap(_Atomic uint32_t *count, _Atomic uint32_t *tids, unsigned n,
                         bool (*alive)(uint32_t owner));
/* The waker's slow half: bumps *seq and wakes every sleeper on it; after
 * FUTEX_IDLE_WAKES wakes in a row (*idle, process-local) that woke nobody,
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
