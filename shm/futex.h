/* Thin wrappers over the futex system call on words in shared memory.
 * Shared (not PRIVATE) futexes, since waiter and waker are different
 * processes mapping the same segment. */
#ifndef MBQ_SHM_FUTEX_H
#define MBQ_SHM_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Sleeps while *word == expected, until woken or until the CLOCK_MONOTONIC
 * deadline (NULL: none). Returns 0 when woken or when the word differed,
 * -ETIMEDOUT, or -EINTR. */
int futex_wait(_Atomic uint32_t *word, uint32_t expected, const struct timespec *deadline);
/* Wakes up to n sleepers; returns how many were woken, or -errno. */
int futex_wake(_Atomic uint32_t *word, int n);

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#endif
}

/* Monotonic clock in nanoseconds. */
static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline struct timespec mono_deadline_after_ns(uint64_t ns)
{
    uint64_t t = mono_ns() + ns;
    return (struct timespec){.tv_sec = (time_t)(t / 1000000000u),
                             .tv_nsec = (long)(t % 1000000000u)};
}

#endif
