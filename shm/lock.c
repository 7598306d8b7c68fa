/* slock implementation; see lock.h for the protocol. */
#include "lock.h"

#include "futex.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Thread_local uint32_t slock_tid_cache;
static pthread_once_t slock_once = PTHREAD_ONCE_INIT;

static void slock_atfork_child(void)
{
    slock_tid_cache = 0; /* the child is a new thread with a new id */
}

static void slock_register_atfork(void)
{
    pthread_atfork(NULL, NULL, slock_atfork_child);
}

uint32_t slock_self(void)
{
    if (__builtin_expect(slock_tid_cache == 0, 0)) {
        pthread_once(&slock_once, slock_register_atfork);
        slock_tid_cache = (uint32_t)syscall(SYS_gettid) & SLOCK_TID_MASK;
    }
    return slock_tid_cache;
}

bool slock_tid_alive(uint32_t tid)
{
    if (tid == 0)
        return false;
    /* kill() resolves any task id, thread or process; EPERM means it exists. */
    if (kill((pid_t)tid, 0) < 0 && errno == ESRCH)
        return false;
    /* A killed process stays a zombie until its parent reaps it, and kill()
     * still finds it: ask /proc for its state. */
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%u/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno != ENOENT;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return true;
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the name may contain anything */
    if (!p || p[1] != ' ')
        return true;
    return p[2] != 'Z' && p[2] != 'X';
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

int slock_lock(struct slock *l)
{
    uint32_t self = slock_self();
    uint32_t w = 0;
    if (__builtin_expect(atomic_compare_exchange_strong_explicit(
                             &l->word, &w, self, memory_order_acquire, memory_order_relaxed),
                         1))
        return SLOCK_ACQUIRED;

    for (int i = 0; i < SLOCK_SPIN; i++) {
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
        if (!(w & SLOCK_WAITERS) &&
            !atomic_compare_exchange_weak_explicit(&l->word, &w, w | SLOCK_WAITERS,
                                                   memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        struct timespec dl = mono_deadline_after_ns(SLOCK_RECHECK_NS);
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
