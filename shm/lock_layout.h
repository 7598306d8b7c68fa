/* The shared layout of locks and of the liveness table: known to shm/
 * alone (see lock.h for the protocol). */
#ifndef MBQ_SHM_LOCK_LAYOUT_H
#define MBQ_SHM_LOCK_LAYOUT_H

#include "lock.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct slock {
    _Atomic uint32_t word;
};

struct bslock {
    struct slock lock;
    _Atomic uint32_t bias;      /* thread id holding the bias, 0 none; with
                                 * BSLOCK_REVOKED: revoked, and that thread
                                 * may still be inside (busy) */
    _Atomic uint32_t busy;      /* the bias holder is inside (written by it only) */
    uint32_t streak_tid;        /* these four: under the slock */
    uint32_t streak;
    uint32_t threshold;         /* 0: BSLOCK_STREAK */
    uint32_t revoked;           /* the last holder whose bias was taken back,
                                 * until it takes the slock itself (see
                                 * lock.h: no bias is given while it lives) */
};

/* The liveness table mbqd writes and clients map read-only: live[id] != 0
 * while the process that has id is alive (or may still be: the daemon
 * marks it dead only once it has exited). pid[] is the daemon's view of
 * that process's pid, for the daemon's own use across restarts. */
struct slock_ids {
    _Atomic uint32_t live[SLOCK_CID_MAX + 1];
    uint32_t pid[SLOCK_CID_MAX + 1];
};

/* The bias holder's entry (see lock.h), in its two steps: the first look
 * at the bias, then busy set and the second look, which backs out (busy
 * cleared) when the bias is no longer the caller's. Apart so that a test
 * can stop a thread between them, as a preemption there does. */
static inline bool bslock_bias_looks_mine(const struct bslock *b, uint32_t self)
{
    return atomic_load_explicit(&((struct bslock *)b)->bias, memory_order_relaxed) == self;
}

static inline bool bslock_bias_enter(struct bslock *b, uint32_t self)
{
    atomic_store_explicit(&b->busy, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst); /* the revoker's membarrier does the rest */
    if (__builtin_expect(atomic_load_explicit(&b->bias, memory_order_relaxed) == self, 1))
        return true;
    atomic_store_explicit(&b->busy, 0, memory_order_release);
    return false;
}

/* bslock_lock and bslock_unlock with the bias holder's path in line, for a
 * caller that takes the lock once per message (a queue's side). */
static inline int bslock_lock_inline(struct bslock *b)
{
    uint32_t self = slock_self();
    if (__builtin_expect(bslock_bias_looks_mine(b, self), 1) &&
        __builtin_expect(bslock_bias_enter(b, self), 1))
        return BSLOCK_BIASED;
    return bslock_lock(b);
}

static inline void bslock_unlock_inline(struct bslock *b, int how)
{
    if (__builtin_expect(how == BSLOCK_BIASED, 1))
        atomic_store_explicit(&b->busy, 0, memory_order_release);
    else
        bslock_unlock(b, how);
}

#endif
