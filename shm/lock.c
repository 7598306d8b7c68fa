/* slock implementation; see lock.h for the protocol. */
#include "lock_layout.h"

#include "futex.h"

#include "common/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

_Thread_local uint32_t slock_tid_cache;
static pthread_once_t slock_once = PTHREAD_ONCE_INIT;

/* The process's client identity (slock_set_identity), and who set it: a
 * fork child has another pid and falls back to thread ids. */
static _Atomic uint32_t slock_cid;
static _Atomic pid_t slock_cid_pid;
static const struct slock_ids *_Atomic slock_ids_map;
/* Thread indices in use in this process (an owner word must be unique
 * among the live threads: the bias fast path enters on equality), each
 * given back by its thread's exit through slock_index_key's destructor. */
static _Atomic uint64_t slock_index_used[(SLOCK_INDEX_MASK + 1) / 64];
static pthread_key_t slock_index_key; /* index + 1 */

void slock_set_identity(uint32_t id, const struct slock_ids *ids)
{
    if (id == 0 || id > SLOCK_CID_MAX)
        return;
    atomic_store(&slock_ids_map, ids);
    atomic_store(&slock_cid_pid, getpid());
    atomic_store(&slock_cid, id);
    slock_tid_cache = 0; /* the calling thread takes the new form at once */
}

uint32_t slock_identity(void)
{
    return atomic_load(&slock_cid_pid) == getpid() ? atomic_load(&slock_cid) : 0;
}

_Thread_local uint32_t slock_ktid_cache;

static void slock_atfork_child(void)
{
    slock_tid_cache = 0; /* the child is a new thread with a new id */
    slock_ktid_cache = 0;
    /* one thread, no identity: none of the parent's indices is in use */
    for (size_t i = 0; i < sizeof(slock_index_used) / sizeof(slock_index_used[0]); i++)
        atomic_store_explicit(&slock_index_used[i], 0, memory_order_relaxed);
    pthread_setspecific(slock_index_key, NULL);
}

static void slock_index_release(void *v)
{
    uint32_t i = (uint32_t)(uintptr_t)v - 1;
    atomic_fetch_and(&slock_index_used[i / 64], ~(1ull << (i % 64)));
}

static void slock_register_atfork(void)
{
    pthread_key_create(&slock_index_key, slock_index_release);
    pthread_atfork(NULL, NULL, slock_atfork_child);
}

/* This thread's index: the one it has, else the lowest free (-1: none). */
static int slock_index(void)
{
    uintptr_t v = (uintptr_t)pthread_getspecific(slock_index_key);
    if (v)
        return (int)(v - 1);
    for (uint32_t w = 0; w < sizeof(slock_index_used) / sizeof(slock_index_used[0]); w++) {
        uint64_t m = atomic_load_explicit(&slock_index_used[w], memory_order_relaxed);
        while (m != ~0ull) {
            int b = __builtin_ctzll(~m);
            if (atomic_compare_exchange_weak(&slock_index_used[w], &m, m | 1ull << b)) {
                uint32_t i = w * 64 + (uint32_t)b;
                pthread_setspecific(slock_index_key, (void *)(uintptr_t)(i + 1));
                return (int)i;
            }
        }
    }
    return -1;
}

uint32_t slock_kernel_tid_slow(void)
{
    pthread_once(&slock_once, slock_register_atfork);
    slock_ktid_cache = (uint32_t)syscall(SYS_gettid);
    return slock_ktid_cache;
}

uint32_t slock_self_slow(void)
{
    pthread_once(&slock_once, slock_register_atfork);
    uint32_t id = slock_identity();
    int index = id ? slock_index() : -1;
    if (index >= 0)
        slock_tid_cache = SLOCK_CID | id << SLOCK_CID_SHIFT | (uint32_t)index;
    else
        slock_tid_cache = (uint32_t)syscall(SYS_gettid) & SLOCK_TID_MASK;
    return slock_tid_cache;
}

bool slock_tid_alive(uint32_t tid)
{
    if (tid == 0)
        return false;
    if (tid & SLOCK_CID) {
        const struct slock_ids *ids = atomic_load_explicit(&slock_ids_map, memory_order_relaxed);
        uint32_t id = (tid >> SLOCK_CID_SHIFT) & SLOCK_CID_MAX;
        if (!ids)
            return false; /* see lock.h: only a scribble names one here */
        return id != 0 && atomic_load_explicit(&ids->live[id], memory_order_acquire) != 0;
    }
    /* The one rule for "is this task gone" (common/proc.h): no such task,
     * a zombie, or past PF_EXITING, which runs no more user code. */
    return proc_state((pid_t)tid) == PROC_ALIVE;
}

/* Takes over a lock word w whose owner is dead; true if we now hold it. */
static bool slock_take_over(struct slock *l, uint32_t w, uint32_t self)
{
    return atomic_compare_exchange_strong_explicit(&l->word, &w, self | (w & SLOCK_WAITERS),
                                                   memory_order_acquire,
                                                   memory_order_relaxed);
}

int slock_trylock(struct slock *l)
{
    uint32_t self = slock_self();
    uint32_t w = 0;
    if (atomic_compare_exchange_strong_explicit(&l->word, &w, self, memory_order_acquire,
                                                memory_order_relaxed))
        return SLOCK_ACQUIRED;
    if (!slock_tid_alive(w & SLOCK_TID_MASK) && (w & SLOCK_TID_MASK) != self &&
        slock_take_over(l, w, self))
        return SLOCK_RECOVERED;
    return -EBUSY;
}

int slock_take_from(struct slock *l, uint32_t owner)
{
    uint32_t w = atomic_load_explicit(&l->word, memory_order_relaxed);
    /* owner may be our own id: a forger may write it, and the caller, which
     * knows it holds no lock now, judged it not entitled */
    if ((w & SLOCK_TID_MASK) != owner || owner == 0 || !slock_take_over(l, w, slock_self()))
        return -EBUSY;
    return SLOCK_RECOVERED;
}

/* ---- wait limits ------------------------------------------------------------ */

static _Atomic uint64_t slock_limit_ns = SLOCK_WAIT_DEFAULT_NS;
static _Thread_local uint64_t slock_deadline_tls;

void slock_set_wait_limit(uint64_t ns)
{
    atomic_store_explicit(&slock_limit_ns, ns, memory_order_relaxed);
}

uint64_t slock_wait_limit(void)
{
    return atomic_load_explicit(&slock_limit_ns, memory_order_relaxed);
}

uint64_t slock_set_deadline(uint64_t deadline_ns)
{
    uint64_t old = slock_deadline_tls;
    slock_deadline_tls = deadline_ns;
    return old;
}

/* The stuck-lock memo (slock_set_stuck_memo): locks whose wait timed out
 * lately, with the word they showed. Per thread, a few entries, replaced
 * oldest first. */
#define SLOCK_MEMO 16
static uint64_t slock_memo_ttl;
static _Thread_local struct {
    const void *addr;
    uint32_t word;
    uint64_t until;
} slock_memo[SLOCK_MEMO];
static _Thread_local unsigned slock_memo_next;

void slock_set_stuck_memo(uint64_t ttl_ns)
{
    slock_memo_ttl = ttl_ns;
}

static bool slock_memo_hit(const void *addr, uint32_t word)
{
    if (!slock_memo_ttl)
        return false;
    for (unsigned i = 0; i < SLOCK_MEMO; i++)
        if (slock_memo[i].addr == addr) {
            if (slock_memo[i].word == word && mono_ns() < slock_memo[i].until)
                return true;
            slock_memo[i].addr = NULL;
        }
    return false;
}

static void slock_memo_add(const void *addr, uint32_t word)
{
    if (!slock_memo_ttl)
        return;
    unsigned i = slock_memo_next++ % SLOCK_MEMO;
    slock_memo[i].addr = addr;
    slock_memo[i].word = word;
    slock_memo[i].until = mono_ns() + slock_memo_ttl;
}

/* When a wait starting now must end (mono_ns() scale). */
static uint64_t slock_wait_deadline(void)
{
    uint64_t now = mono_ns(), limit = slock_wait_limit();
    uint64_t d = now + limit < now ? UINT64_MAX : now + limit;
    if (slock_deadline_tls && slock_deadline_tls < d)
        d = slock_deadline_tls;
    return d;
}

int slock_lock(struct slock *l)
{
    uint32_t self = slock_self();
    uint32_t w = 0;
    if (__builtin_expect(atomic_compare_exchange_strong_explicit(
                             &l->word, &w, self, memory_order_acquire, memory_order_relaxed),
                         1))
        return SLOCK_ACQUIRED;

    if (__builtin_expect(slock_memo_ttl != 0, 0) &&
        slock_memo_hit(l, w & SLOCK_TID_MASK) && slock_tid_alive(w & SLOCK_TID_MASK))
        return -EBUSY;
    const uint64_t deadline = slock_wait_deadline();
    /* A process that must not wait (limit 0) only tries. The spin is
     * bounded in time, not in PAUSEs (whose length differs between CPUs by
     * an order of magnitude): the clock is read every 64 rounds. */
    const uint64_t spin_end = slock_wait_limit() != 0 ? mono_ns() + SLOCK_SPIN_NS : 0;
    for (unsigned i = 0; spin_end; i++) {
        if ((i & 63) == 63 && mono_ns() >= spin_end)
            break;
        cpu_relax();
        w = atomic_load_explicit(&l->word, memory_order_relaxed);
        if (w == 0 && atomic_compare_exchange_weak_explicit(&l->word, &w, self,
                                                            memory_order_acquire,
                                                            memory_order_relaxed))
            return SLOCK_ACQUIRED;
    }

    for (;;) {
        w = atomic_load_explicit(&l->word, memory_order_relaxed);
        if (w == 0) {
            /* Someone else may be asleep: keep the waiters bit so that our
             * unlock wakes them. */
            if (atomic_compare_exchange_weak_explicit(&l->word, &w, self | SLOCK_WAITERS,
                                                      memory_order_acquire,
                                                      memory_order_relaxed))
                return SLOCK_ACQUIRED;
            continue;
        }
        uint32_t owner = w & SLOCK_TID_MASK;
        if (owner != self && !slock_tid_alive(owner)) {
            if (slock_take_over(l, w, self))
                return SLOCK_RECOVERED;
            continue;
        }
        uint64_t now = mono_ns();
        if (now >= deadline) {
            slock_memo_add(l, owner);
            return -EBUSY; /* a waiters bit we set costs the owner one wake */
        }
        if (!(w & SLOCK_WAITERS) &&
            !atomic_compare_exchange_weak_explicit(&l->word, &w, w | SLOCK_WAITERS,
                                                   memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        uint64_t until = deadline - now < SLOCK_RECHECK_NS ? deadline : now + SLOCK_RECHECK_NS;
        struct timespec dl = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        futex_wait(&l->word, w | SLOCK_WAITERS, &dl);
    }
}

void slock_unlock(struct slock *l)
{
    uint32_t w = atomic_exchange_explicit(&l->word, 0, memory_order_release);
    if (__builtin_expect(w & SLOCK_WAITERS, 0))
        futex_wake(&l->word, 1);
}

bool slock_held_by_self(const struct slock *l)
{
    return (atomic_load_explicit(&l->word, memory_order_relaxed) & SLOCK_TID_MASK) ==
           slock_self();
}

/* ---- bslock ---------------------------------------------------------------- */

#include <linux/membarrier.h>

static int bslock_membarrier_ok = -1; /* -1 unknown, 0 no, 1 yes */
static pid_t bslock_registered_pid;
int slock_membarrier_state; /* see slock_membarrier_ready() */

bool slock_membarrier_register(void)
{
    if (bslock_membarrier_ok < 0) {
        long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
        bslock_membarrier_ok = q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
                               (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
    }
    if (!bslock_membarrier_ok)
        return false;
    /* Registration belongs to the process; a fork child registers again. */
    pid_t pid = getpid();
    if (bslock_registered_pid != pid) {
        if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0)
            return false;
        bslock_registered_pid = pid;
        __atomic_store_n(&slock_membarrier_state, 1, __ATOMIC_RELAXED);
    }
    return true;
}

/* Waits for a revoked bias holder to leave its section, at most the wait
 * limit (without wait: not at all). The deadline is read from the clock only
 * once there is something to wait for: most revokes find no bias. */
static int bslock_revoke_until(struct bslock *b, bool wait)
{
    uint64_t deadline = 0;
    const uint32_t v = atomic_load_explicit(&b->bias, memory_order_relaxed);
    if (v == 0)
        return SLOCK_ACQUIRED;
    const uint32_t holder = v & SLOCK_TID_MASK;
    if (__builtin_expect(slock_memo_ttl != 0, 0) &&
        atomic_load_explicit(&b->busy, memory_order_relaxed) && slock_memo_hit(&b->busy, holder))
        return -EBUSY; /* timed out on this holder lately: not again so soon */
    if (!(v & BSLOCK_REVOKED)) {
        /* The word keeps naming the holder (for the next revoker, should we
         * give up, and for mbqd's watch), but no longer equals its id. */
        atomic_store_explicit(&b->bias, holder | BSLOCK_REVOKED, memory_order_relaxed);
        /* After this, the holder either saw the bias gone or shows busy. */
        if (syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0)
            atomic_thread_fence(memory_order_seq_cst); /* cannot fail once registered */
    }
    int r = SLOCK_ACQUIRED;
    /* Spin as for an slock, then sleep in growing slices (the holder does
     * not wake us: its exit is a plain store, so we poll), checking between
     * slices whether the holder died inside its section. */
    uint64_t slice = 50000;
    uint64_t spin_end = wait ? mono_ns() + SLOCK_SPIN_NS : 0;
    for (unsigned i = 0; atomic_load_explicit(&b->busy, memory_order_acquire); i++) {
        if (spin_end && ((i & 63) != 63 || mono_ns() < spin_end)) {
            cpu_relax();
            continue;
        }
        spin_end = 0;
        if (!slock_tid_alive(holder)) {
            atomic_store_explicit(&b->busy, 0, memory_order_relaxed);
            r = SLOCK_RECOVERED;
            break;
        }
        if (wait && deadline == 0)
            deadline = slock_wait_deadline();
        uint64_t now = mono_ns();
        if (now >= deadline) {
            /* Still inside, alive: give up. The bias stays revoked and
             * naming the holder, so the next revoker waits for it (and
             * checks its liveness) again. */
            slock_memo_add(&b->busy, holder);
            return -EBUSY;
        }
        uint64_t until = deadline - now < slice ? deadline : now + slice;
        struct timespec dl = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        futex_wait(&b->busy, 1, &dl);
        if (slice < SLOCK_RECHECK_NS)
            slice *= 2;
    }
    atomic_store_explicit(&b->bias, 0, memory_order_relaxed); /* under the slock, as every write */
    b->revoked = r == SLOCK_RECOVERED ? 0 : holder; /* it may still be between its looks */
    uint32_t t = b->threshold ? b->threshold : BSLOCK_STREAK;
    b->threshold = t < BSLOCK_STREAK_MAX ? t * 2 : t;
    b->streak = 0;
    return r;
}

int bslock_revoke_locked(struct bslock *b)
{
    return bslock_revoke_until(b, true);
}

/* After the slock came back as r: revokes the bias (waiting or not) and
 * counts the streak; the outcome for the caller (the slock is released on
 * -EBUSY). */
static int bslock_enter_locked(struct bslock *b, int r, bool wait, uint32_t self)
{
    int v = bslock_revoke_until(b, wait);
    if (v < 0) {
        slock_unlock(&b->lock);
        return v;
    }
    if (v == SLOCK_RECOVERED)
        r = SLOCK_RECOVERED;
    if (b->revoked == self)
        b->revoked = 0; /* it is past its looks at the bias */
    if (b->streak_tid == self) {
        b->streak++;
    } else {
        b->streak_tid = self;
        b->streak = 1;
    }
    return r;
}

int bslock_trylock(struct bslock *b)
{
    int r = slock_trylock(&b->lock);
    if (r < 0)
        return r;
    return bslock_enter_locked(b, r, false, slock_self());
}

int bslock_lock(struct bslock *b)
{
    uint32_t self = slock_self();
    if (bslock_bias_looks_mine(b, self) && bslock_bias_enter(b, self))
        return BSLOCK_BIASED;
    int r = slock_lock(&b->lock);
    if (r < 0)
        return r;
    return bslock_enter_locked(b, r, true, self);
}

/* Whether no revoked holder may still be between its two looks at the
 * bias (see lock.h): none recorded, or the one recorded has died. */
static bool bslock_no_stale_holder(struct bslock *b)
{
    if (b->revoked != 0 && slock_tid_alive(b->revoked))
        return false;
    b->revoked = 0;
    return true;
}

void bslock_unlock(struct bslock *b, int how)
{
    if (how == BSLOCK_BIASED) {
        atomic_store_explicit(&b->busy, 0, memory_order_release);
        return;
    }
    uint32_t t = b->threshold ? b->threshold : BSLOCK_STREAK;
    if (b->streak >= t && b->streak_tid == slock_self() &&
        !(atomic_load_explicit(&b->lock.word, memory_order_relaxed) & SLOCK_WAITERS)) {
        b->streak = 0; /* given or not, the next try is a streak away */
        if (bslock_no_stale_holder(b) && slock_membarrier_register())
            atomic_store_explicit(&b->bias, b->streak_tid, memory_order_relaxed);
    }
    slock_unlock(&b->lock);
}

void slock_heavy_barrier(void)
{
    if (!slock_membarrier_register() ||
        syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0)
        atomic_thread_fence(memory_order_seq_cst);
}

/* ---- the liveness table ---------------------------------------------------- */

uint32_t slock_owner(const struct slock *l)
{
    return atomic_load_explicit(&((struct slock *)l)->word, memory_order_relaxed) &
           SLOCK_TID_MASK;
}

size_t slock_ids_size(void)
{
    return sizeof(struct slock_ids);
}

void slock_ids_set(struct slock_ids *ids, uint32_t id, bool alive, uint32_t pid)
{
    if (id > SLOCK_CID_MAX)
        return;
    if (alive) {
        ids->pid[id] = pid; /* before the id reads as alive */
        atomic_store_explicit(&ids->live[id], 1, memory_order_release);
    } else {
        atomic_store_explicit(&ids->live[id], 0, memory_order_release);
    }
}

bool slock_ids_alive(const struct slock_ids *ids, uint32_t id)
{
    return id <= SLOCK_CID_MAX &&
           atomic_load_explicit(&((struct slock_ids *)ids)->live[id], memory_order_acquire) != 0;
}

uint32_t slock_ids_pid(const struct slock_ids *ids, uint32_t id)
{
    return id <= SLOCK_CID_MAX ? *(const volatile uint32_t *)&ids->pid[id] : 0;
}

void slock_ids_clear_pid(struct slock_ids *ids, uint32_t id)
{
    if (id <= SLOCK_CID_MAX)
        ids->pid[id] = 0;
}
