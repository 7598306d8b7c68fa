/* What one sleep and one wake cost on a shared CPU, by primitive.
 *
 * Two processes pinned to CPU 0 pass a turn back and forth: each hop is one
 * wake system call by the side whose turn ends and one blocking wait by
 * the side that waits for its turn, and a context switch. The primitives:
 *   eventfd      write / read on an eventfd per direction (the raw ring's
 *                "ring+eventfd");
 *   futex        FUTEX_WAKE / FUTEX_WAIT without a timeout, on a word in a
 *                MAP_SHARED mapping (the floor's);
 *   futex-slice  the same with the 100 ms absolute slice every mbq sleep
 *                takes (FUTEX_WAIT_BITSET on CLOCK_MONOTONIC), which bounds
 *                the delay a waker that died before waking can cause.
 * It prints, per round trip (two hops), the CPU time both processes used
 * (user + system), which a machine shared with other work disturbs less
 * than the wall time it also prints. Rounds alternate the primitives.
 *
 *   bench_sleep [round trips per measurement [rounds]]   (200000, 5) */
#include "bench_common.h"

#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum prim { P_EVENTFD, P_FUTEX, P_FUTEX_SLICE, P_N };
static const char *const prim_name[P_N] = {"eventfd", "futex", "futex-slice"};

struct turn {
    _Atomic uint32_t word[2]; /* bumped when it is side i's turn */
    uint32_t pad[14];
};

static void pin0(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    (void)sched_setaffinity(0, sizeof set, &set);
}

static void wait_turn(enum prim p, _Atomic uint32_t *w, uint32_t old, int efd)
{
    uint64_t v;
    switch (p) {
    case P_EVENTFD:
        if (read(efd, &v, sizeof v) < 0)
            perror("read");
        return;
    case P_FUTEX:
        while (atomic_load(w) == old)
            syscall(SYS_futex, w, FUTEX_WAIT, old, NULL, NULL, 0);
        return;
    default:
        while (atomic_load(w) == old) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 100000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            syscall(SYS_futex, w, FUTEX_WAIT_BITSET, old, &ts, NULL, FUTEX_BITSET_MATCH_ANY);
        }
        return;
    }
}

static void give_turn(enum prim p, _Atomic uint32_t *w, int efd)
{
    if (p == P_EVENTFD) {
        uint64_t one = 1;
        if (write(efd, &one, sizeof one) < 0)
            perror("write");
        return;
    }
    atomic_fetch_add(w, 1);
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static double cpu_us(int who)
{
    struct rusage u;
    getrusage(who, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

/* One measurement in a fresh pair of processes; CPU and wall time per round
 * trip in microseconds. */
static int measure(enum prim p, long n, double *cpu, double *wall)
{
    struct turn *t = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int efd[2] = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC)};
    if (t == MAP_FAILED || efd[0] < 0 || efd[1] < 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    int me = pid == 0; /* side 0 starts each round trip, side 1 answers */
    pin0();
    double c0 = cpu_us(RUSAGE_SELF);
    uint64_t t0 = bench_mono_ns();
    for (long i = 0; i < n; i++) {
        if (me == 0) {
            give_turn(p, &t->word[1], efd[1]);
            wait_turn(p, &t->word[0], (uint32_t)i, efd[0]);
        } else {
            wait_turn(p, &t->word[1], (uint32_t)i, efd[1]);
            give_turn(p, &t->word[0], efd[0]);
        }
    }
    if (pid == 0)
        _exit(0);
    uint64_t t1 = bench_mono_ns();
    double c1 = cpu_us(RUSAGE_SELF);
    double cc0 = cpu_us(RUSAGE_CHILDREN);
    int st;
    waitpid(pid, &st, 0);
    double child = cpu_us(RUSAGE_CHILDREN) - cc0;
    *cpu = (c1 - c0 + child) / (double)n;
    *wall = (double)(t1 - t0) / 1e3 / (double)n;
    close(efd[0]);
    close(efd[1]);
    munmap(t, 4096);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    printf("# per round trip on one CPU (2 hops: 2 wakes, 2 waits, 2 switches); %ld each\n", n);
    printf("# %-12s %10s %10s\n", "primitive", "cpu us", "wall us");
    for (int r = 0; r < rounds; r++)
        for (int p = 0; p < P_N; p++) {
            double cpu, wall;
            if (measure((enum prim)p, n, &cpu, &wall) < 0) {
                perror("measure");
                return 1;
            }
            printf("  %-12s %10.3f %10.3f\n", prim_name[p], cpu, wall);
        }
    return 0;
}
