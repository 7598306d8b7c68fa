/* slock: mbq's process-shared lock — spin, then futex, with a dead-owner check.
 *
 * The lock word holds the owner's thread id (0 when free) and a waiters bit.
 * An uncontended lock/unlock is one compare-and-swap and one exchange on a
 * cache line, with no system call; a waiter spins for a few microseconds
 * before it sleeps on the word, and unlock wakes only when the waiters bit
 * is set. A waiter about to sleep checks whether the owner thread still
 * exists; if it died holding the lock, the waiter takes the lock over and is
 * told so (SLOCK_RECOVERED), and must then repair the structure the lock
 * guards before using it. Sleepers wake periodically to repeat that check,
 * so a holder's death never wedges anyone for longer than SLOCK_RECHECK_NS.
 *
 * Limits: owners are identified by thread id, so processes sharing a lock
 * must share a pid namespace; a thread id reused by a new process in the
 * window before the check would look alive (pid_max makes that rare). */
#ifndef MBQ_SHM_LOCK_H
#define MBQ_SHM_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SLOCK_WAITERS 0x80000000u
#define SLOCK_TID_MASK 0x3fffffffu
#define SLOCK_SPIN 1000            /* ~25 us of pause on this class of machine */
#define SLOCK_RECHECK_NS 20000000u /* 20 ms */

struct slock {
    _Atomic uint32_t word;
};

enum {
    SLOCK_ACQUIRED = 0,
    SLOCK_RECOVERED = 1, /* the previous owner died holding it: repair first */
};

/* The calling thread's id, cached (and refreshed in a fork child). */
uint32_t slock_self(void);
/* Whether the thread with this id exists and is not a zombie. */
bool slock_tid_alive(uint32_t tid);

/* Blocks until the lock is held. Returns SLOCK_ACQUIRED or SLOCK_RECOVERED. */
int slock_lock(struct slock *l);
/* Takes the lock if it is free, or if its owner is dead (then returns
 * SLOCK_RECOVERED); returns -EBUSY otherwise. Never sleeps. */
int slock_trylock(struct slock *l);
void slock_unlock(struct slock *l);
/* Whether the calling thread holds the lock. */
bool slock_held_by_self(const struct slock *l);

#endif
