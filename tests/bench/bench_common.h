/* Helpers shared by the cross-process benchmarks (header-only).
 *
 * A benchmark forks a child that shares anonymous memory (or fds, or mbq
 * segments created before the fork) with its parent. bench_run_pair pins the
 * parent to CPU 0 and the child to CPU 1, runs one function on each side and
 * fails loudly: a child that exits non-zero or dies takes the parent down at
 * once (SIGCHLD), a pair that hangs is killed after BENCH_PAIR_TIMEOUT_S, and
 * a child whose parent dies is killed by the kernel (PR_SET_PDEATHSIG).
 * Times come from the TSC (lfence;rdtsc;lfence, calibrated against
 * CLOCK_MONOTONIC) where it is invariant, else from CLOCK_MONOTONIC; a timer
 * pair costs ~20 ns with the TSC and ~100 ns with clock_gettime, and that cost
 * is included in every per-iteration figure. Figures are printed as
 * "RESULT key=value unit" lines. */
#ifndef MBQ_BENCH_COMMON_H
#define MBQ_BENCH_COMMON_H

/* CPU affinity needs _GNU_SOURCE (the build defines it; include this header
 * first otherwise). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

#define BENCH_PARENT_CPU 0
#define BENCH_CHILD_CPU 1
#ifndef BENCH_PAIR_TIMEOUT_S
#define BENCH_PAIR_TIMEOUT_S 60u
#endif

/* Prints "bench: <message>" on stderr and exits 1. */
__attribute__((format(printf, 1, 2), noreturn)) static inline void bench_die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Restricts the calling process to one CPU. 0 or -errno. */
static inline int bench_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

/* Zeroed memory shared with children forked afterwards, pre-faulted so that
 * no timed loop takes a first-touch fault. Dies on failure. */
static inline void *bench_shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        bench_die("mmap(%zu bytes, MAP_SHARED|MAP_ANONYMOUS): %s", size, strerror(errno));
    memset(p, 0, size);
    return p;
}

static inline void bench_shared_free(void *p, size_t size)
{
    if (p)
        munmap(p, size);
}

/* ---- timer ---- */

static inline uint64_t bench_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int bench_tsc_usable(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u)
        return 0;
    __get_cpuid(0x80000007u, &a, &b, &c, &d);
    return (d >> 8) & 1; /* invariant TSC */
#else
    return 0;
#endif
}

/* 1 if bench_ticks reads the TSC, 0 if it reads CLOCK_MONOTONIC in ns;
 * decided once per process (a forked child inherits the answer). */
static inline int bench_use_tsc(void)
{
    static int use = -1;
    if (use < 0)
        use = bench_tsc_usable();
    return use;
}

/* A timestamp in ticks, ordered with respect to the surrounding loads and
 * stores (the lfences keep rdtsc from running ahead of or behind them). */
static inline uint64_t bench_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (bench_use_tsc()) {
        _mm_lfence();
        uint64_t t = __rdtsc();
        _mm_lfence();
        return t;
    }
#endif
    return bench_mono_ns();
}

/* Nanoseconds per tick; calibrated on first use over ~50 ms. Call it once
 * before forking so the child does not calibrate again. */
static inline double bench_ns_per_tick(void)
{
    static double ns_per_tick;
    if (ns_per_tick > 0)
        return ns_per_tick;
    if (!bench_use_tsc()) {
        ns_per_tick = 1.0;
        return ns_per_tick;
    }
    uint64_t n0 = bench_mono_ns(), t0 = bench_ticks();
    while (bench_mono_ns() - n0 < 50000000u)
        ;
    uint64_t n1 = bench_mono_ns(), t1 = bench_ticks();
    ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
    return ns_per_tick;
}

static inline double bench_ticks_to_ns(uint64_t ticks)
{
    return (double)ticks * bench_ns_per_tick();
}

/* ---- statistics ---- */

struct bench_pct {
    size_t n;
    double min, p50, p99, p999, max, mean; /* in ns */
};

static inline int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static inline uint64_t bench_rank(const uint64_t *sorted, size_t n, double p)
{
    size_t k = (size_t)ceil(p * (double)n);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return sorted[k - 1];
}

/* Sorts v (n latencies in ticks) in place and summarises it in ns. */
static inline struct bench_pct bench_percentiles(uint64_t *v, size_t n)
{
    struct bench_pct r = {.n = n};
    if (n == 0)
        return r;
    qsort(v, n, sizeof(*v), bench_cmp_u64);
    long double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    r.min = bench_ticks_to_ns(v[0]);
    r.p50 = bench_ticks_to_ns(bench_rank(v, n, 0.50));
    r.p99 = bench_ticks_to_ns(bench_rank(v, n, 0.99));
    r.p999 = bench_ticks_to_ns(bench_rank(v, n, 0.999));
    r.max = bench_ticks_to_ns(v[n - 1]);
    r.mean = (double)(sum / n) * bench_ns_per_tick();
    return r;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (mean of the middle two when n is even); v is sorted in
 * place. */
static inline double bench_median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- output ---- */

static inline void bench_result(const char *key, double value, const char *unit)
{
    printf("RESULT %s=%.6g %s\n", key, value, unit);
}

/* The same line for a figure measured in several runs: value is the median,
 * followed by the spread ("RESULT key=value unit min=.. max=.. runs=N"). */
static inline void bench_result_range(const char *key, double median, double min, double max,
                                      int runs, const char *unit)
{
    printf("RESULT %s=%.6g %s min=%.6g max=%.6g runs=%d\n", key, median, unit, min, max, runs);
}

/* ---- system-call-free indicators ---- */

struct bench_ctxsw {
    long voluntary;   /* the process blocked (futex sleep, read, ...) */
    long involuntary; /* the process was preempted */
};

/* who: RUSAGE_SELF, or RUSAGE_CHILDREN (children already waited for). */
static inline struct bench_ctxsw bench_ctxsw_read(int who)
{
    struct rusage ru;
    if (getrusage(who, &ru) != 0)
        bench_die("getrusage: %s", strerror(errno));
    return (struct bench_ctxsw){.voluntary = ru.ru_nvcsw, .involuntary = ru.ru_nivcsw};
}

static inline struct bench_ctxsw bench_ctxsw_sub(struct bench_ctxsw a, struct bench_ctxsw b)
{
    return (struct bench_ctxsw){.voluntary = a.voluntary - b.voluntary,
                                .involuntary = a.involuntary - b.involuntary};
}

/* Time the host took from the benchmark's two vCPUs (the "steal" column of
 * /proc/stat for BENCH_PARENT_CPU and BENCH_CHILD_CPU), in ms since boot; -1
 * if unknown. A run with steal time was disturbed by the host. */
static inline double bench_steal_ms(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    char line[512];
    unsigned long long total = 0;
    int seen = 0;
    while (fgets(line, sizeof(line), f)) {
        int cpu;
        unsigned long long v[8];
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 9 &&
            (cpu == BENCH_PARENT_CPU || cpu == BENCH_CHILD_CPU)) {
            total += v[7];
            seen++;
        }
    }
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (seen != 2 || hz <= 0)
        return -1;
    return (double)total * 1000.0 / (double)hz;
}

/* ---- parent/child pairs ---- */

typedef int (*bench_side_fn)(void *arg);

struct bench_pair_stats {
    struct bench_ctxsw parent; /* during the parent's function */
    struct bench_ctxsw child;  /* over the child's whole life */
};

static volatile sig_atomic_t bench_child_pid_;
static volatile sig_atomic_t bench_child_reaped_;
static volatile sig_atomic_t bench_child_status_;

static inline void bench_write_stderr(const char *s)
{
    ssize_t r = write(STDERR_FILENO, s, strlen(s));
    (void)r;
}

/* A child that fails ends the benchmark now: its peer may be spinning on a
 * ring that will never move. */
static inline void bench_on_sigchld(int sig)
{
    int saved = errno, st;
    pid_t pid = (pid_t)bench_child_pid_;
    (void)sig;
    if (pid > 0 && waitpid(pid, &st, WNOHANG) == pid) {
        bench_child_status_ = st;
        bench_child_reaped_ = 1;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            bench_write_stderr(WIFEXITED(st) ? "bench: child process exited with failure\n"
                                             : "bench: child process killed by a signal\n");
            _exit(1);
        }
    }
    errno = saved;
}

static inline void bench_on_sigalrm(int sig)
{
    pid_t pid = (pid_t)bench_child_pid_;
    (void)sig;
    bench_write_stderr("bench: parent/child pair timed out\n");
    if (pid > 0)
        kill(pid, SIGKILL);
    _exit(1);
}

/* Runs child_fn(child_arg) in a forked child pinned to CPU 1 and
 * parent_fn(parent_arg) in the calling process pinned to CPU 0 (it stays
 * pinned afterwards), then waits for the child. Each function returns 0 on
 * success. Returns 0 if both succeeded; a failing child ends the process with
 * exit status 1 as soon as it exits. stats, if not NULL, receives the
 * context switches of both sides. */
static inline int bench_run_pair(bench_side_fn parent_fn, void *parent_arg, bench_side_fn child_fn,
                                 void *child_arg, struct bench_pair_stats *stats)
{
    int r = bench_pin(BENCH_PARENT_CPU);
    if (r < 0)
        bench_die("pin parent to CPU %d: %s", BENCH_PARENT_CPU, strerror(-r));
    (void)bench_ns_per_tick(); /* calibrate once, before the child copies it */

    struct sigaction sa = {.sa_flags = SA_RESTART | SA_NOCLDSTOP}, old_chld, old_alrm;
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = bench_on_sigchld;
    sigaction(SIGCHLD, &sa, &old_chld);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = bench_on_sigalrm;
    sigaction(SIGALRM, &sa, &old_alrm);

    struct bench_ctxsw children0 = bench_ctxsw_read(RUSAGE_CHILDREN);
    bench_child_reaped_ = 0;
    pid_t parent = getpid();
    fflush(NULL); /* or the child would flush the parent's buffered output again */
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        signal(SIGCHLD, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(1);
        r = bench_pin(BENCH_CHILD_CPU);
        if (r < 0) {
            fprintf(stderr, "bench: pin child to CPU %d: %s\n", BENCH_CHILD_CPU, strerror(-r));
            _exit(1);
        }
        r = child_fn(child_arg);
        fflush(NULL);
        _exit(r == 0 ? 0 : 1);
    }
    bench_child_pid_ = pid;
    alarm(BENCH_PAIR_TIMEOUT_S);

    struct bench_ctxsw self0 = bench_ctxsw_read(RUSAGE_SELF);
    int prc = parent_fn(parent_arg);
    struct bench_ctxsw self1 = bench_ctxsw_read(RUSAGE_SELF);

    /* From here on the handler leaves the child to us. */
    bench_child_pid_ = 0;
    if (prc != 0 && !bench_child_reaped_)
        kill(pid, SIGKILL);
    int st = bench_child_status_;
    if (!bench_child_reaped_) {
        while (waitpid(pid, &st, 0) < 0) {
            if (errno != EINTR)
                bench_die("waitpid: %s", strerror(errno));
        }
    }
    alarm(0);
    sigaction(SIGCHLD, &old_chld, NULL);
    sigaction(SIGALRM, &old_alrm, NULL);
    if (stats) {
        stats->parent = bench_ctxsw_sub(self1, self0);
        stats->child = bench_ctxsw_sub(bench_ctxsw_read(RUSAGE_CHILDREN), children0);
    }
    if (prc != 0)
        return -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench: child process failed (status %#x)\n", (unsigned)st);
        return -1;
    }
    return 0;
}

#endif
