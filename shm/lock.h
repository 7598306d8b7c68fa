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
 * Nobody waits forever: a holder that is alive but does not let go (stopped,
 * looping, or a forged owner a peer wrote into the word) is waited for at
 * most the caller's wait limit, after which the lock call fails with -EBUSY
 * and the lock is not held. The limit is per process (slock_set_wait_limit;
 * SLOCK_WAIT_DEFAULT_NS for clients, a few milliseconds in mbqd, which must
 * never wait on shared memory) and can be shortened per thread by a
 * deadline (slock_set_deadline; a blocking call with a timeout sets its
 * own). Only the slow path reads either: the uncontended lock is unchanged.
 *
 * Owners. A lock word names its owner in one of two forms. A process
 * connected to mbqd has a client id that the daemon assigned (at Hello) and
 * whose liveness it publishes in a table the process maps read-only: its
 * threads own locks as SLOCK_CID | id << SLOCK_CID_SHIFT | a per-process
 * thread index, and "is the owner dead" is one load from that table — the
 * daemon's decision, the same in every pid namespace. A process without a
 * connection (shm/-only tools and tests, the daemon-less demo, a fork child
 * that did not connect, a thread that took a lock before its process
 * connected) owns locks by kernel thread id, judged with kill() and /proc,
 * which only works within one pid namespace; thread ids never reach
 * SLOCK_CID (pid_max is at most 2^22). A process that never had a table
 * (it never connected, nor did the process it was forked from) sees every
 * client-id owner as dead: it can only share segments with processes like
 * itself, so such a word is a scribble.
 *
 * Limits: a thread id reused by a new process in the window before the
 * check would look alive (pid_max makes that rare); the daemon never gives
 * out again an id that a lock word still names (see daemon/identity.c). */
#ifndef MBQ_SHM_LOCK_H
#define MBQ_SHM_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLOCK_WAITERS 0x80000000u
#define SLOCK_TID_MASK 0x3fffffffu /* the owner, either form */
#define SLOCK_CID 0x20000000u      /* the owner is a client id (else a thread id) */
#define SLOCK_CID_SHIFT 16
#define SLOCK_CID_MAX 0x1fffu      /* ids 1..SLOCK_CID_MAX; 1 is mbqd's own */
#define SLOCK_INDEX_MASK 0xffffu   /* the thread index within the process: unique
                                    * among its live threads (a 65537th
                                    * concurrent thread uses its thread id) */

/* The liveness table mbqd writes and clients map read-only (layout in
 * lock_layout.h): which client ids are alive, and the daemon's view of
 * each one's pid. */
struct slock_ids;
/* Its size in bytes: the memfd that holds it has exactly this size. */
size_t slock_ids_size(void);
/* Marks id alive as process pid, or dead (pid 0 keeps the recorded pid). */
void slock_ids_set(struct slock_ids *ids, uint32_t id, bool alive, uint32_t pid);
bool slock_ids_alive(const struct slock_ids *ids, uint32_t id);
uint32_t slock_ids_pid(const struct slock_ids *ids, uint32_t id);
/* Forgets the pid recorded for id. */
void slock_ids_clear_pid(struct slock_ids *ids, uint32_t id);
#define SLOCK_SPIN_NS 25000        /* spin this long (ns) before sleeping or failing */
#define SLOCK_RECHECK_NS 20000000u /* 20 ms */
#define SLOCK_WAIT_DEFAULT_NS 1000000000u /* 1 s: a client's bound on one lock */

struct slock;  /* lock_layout.h */
struct bslock; /* lock_layout.h */

enum {
    SLOCK_ACQUIRED = 0,
    SLOCK_RECOVERED = 1, /* the previous owner died holding it: repair first */
};

/* The calling thread's id, cached (and refreshed in a fork child). Inline:
 * every data-plane operation asks for it, some twice. */
extern _Thread_local uint32_t slock_tid_cache;
uint32_t slock_self_slow(void);
static inline uint32_t slock_self(void)
{
    uint32_t t = slock_tid_cache;
    return __builtin_expect(t != 0, 1) ? t : slock_self_slow();
}
/* The calling thread's kernel id, cached, for what stays within one process
 * (which thread owns a process-local cache); never stored in a segment. */
extern _Thread_local uint32_t slock_ktid_cache;
uint32_t slock_kernel_tid_slow(void);
static inline uint32_t slock_kernel_tid(void)
{
    uint32_t t = slock_ktid_cache;
    return __builtin_expect(t != 0, 1) ? t : slock_kernel_tid_slow();
}
/* Whether the owner a lock word names is alive: for a client id, what the
 * liveness table says; for a thread id, whether that thread exists and is
 * not a zombie. */
bool slock_tid_alive(uint32_t owner);
/* This process is client id of mbqd, whose liveness table ids (mapped
 * read-only, never unmapped) says who is alive: threads that take their
 * first lock from now on (and the calling thread) own locks as that id. A
 * fork child goes back to thread ids until it connects itself. */
void slock_set_identity(uint32_t id, const struct slock_ids *ids);
/* The client id this process owns locks as (0: none). */
uint32_t slock_identity(void);

/* The longest this process waits for any one lock (ns; 0: never waits,
 * only tries). Set once at start-up (mbqd) or left at the default. */
void slock_set_wait_limit(uint64_t ns);
uint64_t slock_wait_limit(void);
/* For a process that must answer others while it waits (mbqd): once a
 * wait for a lock timed out, a lock that still shows the same live owner
 * fails at once for ttl_ns, so that a stopped holder costs the caller one
 * wait per ttl, not one per call. 0 (the default): off. */
void slock_set_stuck_memo(uint64_t ttl_ns);
/* A CLOCK_MONOTONIC deadline (mono_ns() scale; 0: none) that bounds this
 * thread's lock waits on top of the process limit; returns the previous
 * one, for the caller to restore. */
uint64_t slock_set_deadline(uint64_t deadline_ns);

/* Waits for the lock, at most the wait limit (see above). Returns
 * SLOCK_ACQUIRED, SLOCK_RECOVERED, or -EBUSY: a live owner kept it that
 * long; the lock is not held and nothing was changed. */
int slock_lock(struct slock *l);
/* Takes the lock if it is free, or if its owner is dead (then returns
 * SLOCK_RECOVERED); returns -EBUSY otherwise. Never sleeps. */
int slock_trylock(struct slock *l);
void slock_unlock(struct slock *l);
/* Whether the calling thread holds the lock. */
bool slock_held_by_self(const struct slock *l);
/* The owner recorded in the lock word (0: free). */
uint32_t slock_owner(const struct slock *l);
/* Takes the lock from an owner the caller has decided is not entitled to it
 * (a forged or scribbled word, judged by mbqd), provided the word still
 * holds owner. Returns SLOCK_RECOVERED (repair, then unlock, which wakes
 * the waiters) or -EBUSY if the word changed meanwhile. */
int slock_take_from(struct slock *l, uint32_t owner);

/* bslock: an slock with a bias, for locks that one thread takes over and
 * over (the producer side of a queue with one producer).
 *
 * A locked instruction per operation costs little by itself, but it is a
 * full barrier: the holder then waits for every store of the operation to
 * reach the other core before it can go on, which turned a queue hand-off
 * from ~20 ns into ~400 ns across the two vCPUs here. So a thread that has
 * taken the lock BSLOCK_STREAK times in a row, uncontended, is given the
 * bias: from then on it enters with two plain stores and a load (busy = 1,
 * check the bias is still its own; busy = 0 on the way out) — no atomic
 * read-modify-write, no barrier. Anyone else who wants the lock takes the
 * slock, clears the bias, and runs membarrier(GLOBAL_EXPEDITED): that forces
 * a barrier on every CPU running an mbq process, after which either the
 * holder sees the bias gone or the revoker sees busy set (and waits for it to
 * clear). A revoked lock needs twice as long a streak before it is biased
 * again, so two threads that alternate settle on the plain slock. A bias
 * holder that dies inside its section (busy stuck) is detected like a dead
 * slock owner: the revoker gets SLOCK_RECOVERED.
 *
 * busy is one word for whoever holds the bias, so a holder whose bias was
 * revoked while it stood between its first look at the bias and its store
 * to busy (preempted there, say) would, on backing out, clear busy under
 * the next holder's feet, and that holder's revoker would walk in beside
 * it. So the revoked holder is remembered (revoked) until it next passes
 * through the slock, which it does straight after backing out, and no new
 * bias is given meanwhile unless it has died: at most one holder is ever
 * between its two looks, and busy is then its alone.
 *
 * Processes that may hold a bias register for expedited membarrier once;
 * where the kernel lacks it, no bias is ever given and this is an slock. */
#define BSLOCK_STREAK 64u
#define BSLOCK_REVOKED 0x40000000u
#define BSLOCK_STREAK_MAX (1u << 20)


enum {
    BSLOCK_BIASED = 2, /* entered through the bias: unlock with it too */
};

/* Registers this process for expedited membarrier (once per process);
 * false where the kernel lacks it. */
bool slock_membarrier_register(void);
/* Whether this process is registered: its threads then receive the
 * barriers of slock_heavy_barrier() and may skip their own. Inline: every
 * enqueue asks. */
extern int slock_membarrier_state; /* 1 once registered (for this pid) */
static inline bool slock_membarrier_ready(void)
{
    return __atomic_load_n(&slock_membarrier_state, __ATOMIC_RELAXED) == 1;
}
/* A full barrier on every CPU running a registered process (the slow side
 * of an asymmetric Dekker pair); a local full fence where unavailable. */
void slock_heavy_barrier(void);

/* SLOCK_ACQUIRED, SLOCK_RECOVERED (repair first) or BSLOCK_BIASED; -EBUSY
 * when the slock's owner or a bias holder inside its section kept it past
 * the wait limit (nothing is held then). */
int bslock_lock(struct bslock *b);
/* As bslock_lock, but never waits for a live holder: -EBUSY at once. */
int bslock_trylock(struct bslock *b);
/* how: what bslock_lock returned. */
void bslock_unlock(struct bslock *b, int how);
/* Makes sure nobody holds the bias (for callers about to hold the slock a
 * long time, e.g. taking a whole queue). Call with the slock held. Returns
 * SLOCK_RECOVERED if the holder died inside its section, -EBUSY if a live
 * holder stayed inside past the wait limit (the slock is still held, the
 * bias is gone: the caller unlocks and gives up). */
int bslock_revoke_locked(struct bslock *b);

#endif
