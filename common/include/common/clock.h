/* The one clock: CLOCK_MONOTONIC in nanoseconds. shm/ stamps ages and
 * deadlines in segments with it, so every process that compares against
 * them (daemon, library, tools) must read the same clock. */
#ifndef MBQ_COMMON_CLOCK_H
#define MBQ_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The absolute CLOCK_MONOTONIC time ns from now, as a timespec (futexes,
 * clock_nanosleep, timed waits). */
static inline struct timespec mono_deadline_after_ns(uint64_t ns)
{
    uint64_t t = mono_ns() + ns;
    return (struct timespec){.tv_sec = (time_t)(t / 1000000000u),
                             .tv_nsec = (long)(t % 1000000000u)};
}

#endif
