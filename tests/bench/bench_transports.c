/* mbq against the raw shared-memory ring, iceoryx, POSIX mq and Unix
 * SOCK_SEQPACKET, in one run: round trips, streaming, fan-out, blocking
 * wake-ups, pools, dead-client reclaim and memory footprint.
 *
 * How a run goes. The harness starts its own mbqd on a private socket and,
 * when built with iceoryx, its own RouDi (tests/bench/roudi.toml). Then, for
 * each repetition and each case (a "round"):
 *   1. it waits until the machine is quiet: CPU busy (/proc/stat, both
 *      CPUs) under --quiet-pct in two consecutive 0.5 s windows, waiting at
 *      most --gate-max seconds (and --gate-budget over the whole run); a round
 *      that could not get a quiet machine runs anyway and is marked;
 *   2. it probes the placement the host gave the two vCPUs (a cache-line
 *      ping-pong, near <100 ns, mid ~140 ns, far >300 ns round trip);
 *   3. it measures every transport of the case back to back, in an order
 *      rotated each repetition, each in a fresh process group (the measuring
 *      process on CPU 0, its peers on CPU 1, or all on CPU 0 for "same core");
 *   4. it compares the CPU time the machine spent during the round with the
 *      harness's own (rusage): foreign work over --foreign-pct of one CPU
 *      marks the round "disturbed".
 * A case's figure is the median over its quiet rounds when at least three
 * were quiet, else over all rounds (and the figure is flagged). Ratios
 * ("x ring") are taken per round, between transports measured minutes
 * apart at most, then their median is reported: they hold on a noisy machine
 * better than absolute figures do.
 *
 * Output (--out DIR): summary.md (the tables), results.tsv (every
 * measurement), *.dat (the plots' data; tests/bench/bench_plots.gp draws
 * them). Progress goes to stdout.
 *
 * Timing: lfence;rdtsc;lfence, calibrated against CLOCK_MONOTONIC
 * (bench_common.h); every latency includes the ~20 ns timer pair. Latencies
 * are nearest-rank percentiles of one run's iterations. */
#include "bench_common.h"

#include "transports.h"
#include "tx_kernel.h"
#include "tx_floor.h"
#include "tx_mbq.h"
#include "tx_ring.h"
#ifdef BENCH_HAVE_ICEORYX
#include "tx_iox.h"
#endif

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdbool.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>

/* ---- options ---- */

static struct {
    const char *out;
    const char *mbqd;
    const char *roudi;
    const char *roudi_config;
    int reps;
    double quiet_pct, foreign_pct;
    double gate_max_s, gate_budget_s;
    double placement_max_s, placement_budget_s;
    bool quick;
    const char *only; /* comma-separated case ids */
    const char *only_tx; /* comma-separated transport labels */
    bool no_iox;
} opt = {
    .out = "performance",
    .mbqd = "mbqd",
    .roudi = "iox-roudi",
    .reps = 9,
    .quiet_pct = 4,
    .foreign_pct = 5,
    .gate_max_s = 20,
    .gate_budget_s = 240,
    .placement_max_s = 3,
    .placement_budget_s = 150,
};

/* ---- jobs: one measurement, in shared memory ---- */

enum kind { K_RTT, K_STREAM, K_WAKE, K_POOL, K_RECLAIM, K_PROBE };

#define CDF_N 101

struct job {
    /* what */
    enum kind kind;
    const struct tx_ops *t;
    struct tx_spec spec[2]; /* rtt: request, response; otherwise [0] */
    int cpu_a, cpu_b;
    uint32_t warmup, iters;
    bool touch, unordered;
    uint64_t gap_ns;
    int sub;
    /* sides */
    _Alignas(128) _Atomic int ready;
    _Atomic int go;
    _Atomic int fail;
    _Alignas(128) _Atomic uint64_t flag;
    _Alignas(128) _Atomic uint64_t t_start;
    _Atomic uint64_t t_end[TX_MAX_FAN];
    /* results */
    int ok;
    char err[200];
    struct bench_pct pct;
    double rate;
    double value;
    double cdf[CDF_N];
    long vcsw, ivcsw;
    uint64_t msgs;
    char note[200];
};

static void job_fail(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_fail(struct job *j, const char *fmt, ...)
{
    if (atomic_exchange(&j->fail, 1))
        return; /* the first failure tells */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, sizeof(j->err), fmt, ap);
    va_end(ap);
}

static inline bool job_failed(struct job *j)
{
    return atomic_load_explicit(&j->fail, memory_order_relaxed) != 0;
}

/* Waits for v to reach want, giving up when the job failed or after 30 s. */
static bool wait_for(struct job *j, _Atomic int *v, int want)
{
    uint64_t t0 = bench_mono_ns();
    while (atomic_load(v) < want) {
        if (job_failed(j))
            return false;
        if (bench_mono_ns() - t0 > 30000000000ull) {
            job_fail(j, "a peer never became ready");
            return false;
        }
        usleep(200);
    }
    return true;
}

/* A message from a polling receive; NULL when the job failed meanwhile. */
static inline const void *recv_msg(struct job *j, const struct tx_ops *t, void *rx, bool yield)
{
    int err = 0;
    for (unsigned n = 1;; n++) {
        const void *p = t->recv(rx, &err);
        if (__builtin_expect(p != NULL, 1))
            return p;
        if (err != -EAGAIN) {
            job_fail(j, "%s: receive: %s", t->name, mbq_status_string(err));
            return NULL;
        }
        if (yield)
            sched_yield();
        if ((n & 0xffff) == 0 && job_failed(j))
            return NULL;
    }
}

static inline void *loan_msg(struct job *j, const struct tx_ops *t, void *tx)
{
    int err = 0;
    void *p = t->loan(tx, &err);
    if (!p)
        job_fail(j, "%s: loan: %s", t->name, mbq_status_string(err));
    return p;
}

static inline bool send_msg(struct job *j, const struct tx_ops *t, void *tx, void *p, uint64_t seq)
{
    int r = t->send(tx, p, seq);
    if (r != 0)
        job_fail(j, "%s: send: %s", t->name, mbq_status_string(r));
    return r == 0;
}

static void copy_note(struct job *j)
{
    for (int i = 0; i < 2; i++) {
        if (!j->spec[i].note[0] || strstr(j->note, j->spec[i].note))
            continue;
        size_t len = strlen(j->note);
        snprintf(j->note + len, sizeof(j->note) - len, "%s%s", len ? "; " : "", j->spec[i].note);
    }
}

/* ---- sides of the transport cases ---- */

static int side_open(struct job *j, int role, void **tx, void **rx)
{
    const struct tx_ops *t = j->t;
    struct tx_spec *s = &j->spec[0];
    int r = t->proc_init(s);
    if (r < 0) {
        job_fail(j, "%s: start: %s", t->name, mbq_status_string(r));
        return r;
    }
    *tx = *rx = NULL;
    if (j->kind == K_RTT) {
        /* publishers before subscribers, so neither side waits on the other */
        struct tx_spec *out = &j->spec[role == 0 ? 0 : 1], *in = &j->spec[role == 0 ? 1 : 0];
        r = t->open_tx(out, tx);
        if (r == 0)
            r = t->open_rx(in, 0, rx);
    } else if (role == 0) {
        r = t->open_tx(s, tx);
    } else {
        r = t->open_rx(s, (unsigned)role - 1, rx);
    }
    if (r < 0)
        job_fail(j, "%s: open: %s", t->name, mbq_status_string(r));
    return r;
}

static void side_close(struct job *j, void *tx, void *rx)
{
    if (tx)
        j->t->close_tx(tx);
    if (rx)
        j->t->close_rx(rx);
    j->t->proc_fini();
}

/* The producer side's start: every peer ready, every consumer attached. */
static bool side_start(struct job *j, void *tx, int peers)
{
    atomic_fetch_add(&j->ready, 1);
    if (!wait_for(j, &j->ready, peers + 1))
        return false;
    if (tx && j->t->connected) {
        uint64_t t0 = bench_mono_ns();
        while (!j->t->connected(tx)) {
            if (bench_mono_ns() - t0 > 30000000000ull) {
                job_fail(j, "%s: consumers never attached", j->t->name);
                return false;
            }
            usleep(500);
        }
    }
    atomic_store(&j->go, 1);
    return true;
}

static bool side_wait_go(struct job *j)
{
    atomic_fetch_add(&j->ready, 1);
    return wait_for(j, &j->go, 1);
}

/* Round trip: the parent sends i, the child answers i with a message of its
 * own; timed from the parent's loan to its release of the answer. */
static int rtt_side(struct job *j, int role)
{
    const struct tx_ops *t = j->t;
    const size_t size = j->spec[0].payload;
    const bool touch = j->touch, block = j->spec[0].wait == TX_BLOCK;
    const uint64_t n = (uint64_t)j->warmup + j->iters;
    void *tx, *rx;
    uint64_t *lat = NULL;
    int rc = -1;
    if (side_open(j, role, &tx, &rx) < 0)
        goto out;
    if (role == 0) {
        lat = calloc(j->iters ? j->iters : 1, sizeof(*lat));
        if (!lat || !side_start(j, tx, 1))
            goto out;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t t0 = bench_ticks();
            void *p = loan_msg(j, t, tx);
            if (!p)
                goto out;
            payload_write(p, size, i, touch);
            if (!send_msg(j, t, tx, p, i))
                goto out;
            const void *q = recv_msg(j, t, rx, false);
            if (!q)
                goto out;
            if (!payload_read(q, size, i, touch)) {
                job_fail(j, "%s: answer %" PRIu64 " damaged or out of order", t->name, i);
                goto out;
            }
            t->done(rx, q);
            uint64_t t1 = bench_ticks();
            if (i >= j->warmup)
                lat[i - j->warmup] = t1 - t0;
        }
        (void)block;
        j->pct = bench_percentiles(lat, j->iters);
        for (int k = 0; k < CDF_N; k++) {
            double q = k == CDF_N - 1 ? 0.999 : (double)k / (CDF_N - 1);
            j->cdf[k] = bench_ticks_to_ns(bench_rank(lat, j->iters, q > 0 ? q : 1e-9));
        }
        j->msgs = 2 * n;
    } else {
        if (!side_wait_go(j))
            goto out;
        for (uint64_t i = 0; i < n; i++) {
            const void *q = recv_msg(j, t, rx, false);
            if (!q)
                goto out;
            if (!payload_read(q, size, i, touch)) {
                job_fail(j, "%s: request %" PRIu64 " damaged or out of order", t->name, i);
                goto out;
            }
            t->done(rx, q);
            void *p = loan_msg(j, t, tx);
            if (!p)
                goto out;
            payload_write(p, size, i, touch);
            if (!send_msg(j, t, tx, p, i))
                goto out;
        }
    }
    rc = 0;
out:
    free(lat);
    side_close(j, tx, rx);
    return rc;
}

/* One way: the producer streams iters messages; the rate is iters over the
 * time from the first loan to the last consumer's last release. */
static int stream_side(struct job *j, int role)
{
    const struct tx_ops *t = j->t;
    const size_t size = j->spec[0].payload;
    const uint32_t fan = j->spec[0].fan;
    const uint64_t n = j->iters;
    void *tx, *rx;
    int rc = -1;
    if (side_open(j, role, &tx, &rx) < 0)
        goto out;
    if (role == 0) {
        if (!side_start(j, tx, (int)fan))
            goto out;
        atomic_store(&j->t_start, bench_mono_ns());
        for (uint64_t i = 0; i < n; i++) {
            void *p = loan_msg(j, t, tx);
            if (!p)
                goto out;
            payload_write(p, size, i, j->touch);
            if (!send_msg(j, t, tx, p, i))
                goto out;
        }
        j->msgs = n;
    } else {
        if (!side_wait_go(j))
            goto out;
        for (uint64_t i = 0; i < n; i++) {
            const void *q = recv_msg(j, t, rx, fan > 1);
            if (!q)
                goto out;
            /* a sorted queue may hand out later sequence numbers first */
            uint64_t seq = j->unordered ? *(const volatile uint64_t *)q : i;
            if (!payload_read(q, size, seq, j->touch) || seq >= n) {
                job_fail(j, "%s: message %" PRIu64 " damaged or out of order", t->name, i);
                goto out;
            }
            t->done(rx, q);
        }
        atomic_store(&j->t_end[role - 1], bench_mono_ns());
    }
    rc = 0;
out:
    side_close(j, tx, rx);
    return rc;
}

/* Wake-up after a real sleep: the parent keeps busy for gap_ns (longer than
 * any spin window, so the child is asleep in the kernel), then sends; the
 * child wakes, reads the message and raises a flag the parent spins on.
 * Timed from before the send to the flag: one kernel wake-up plus one
 * cache-line transfer, the same return path for every transport. */
static int wake_side(struct job *j, int role)
{
    const struct tx_ops *t = j->t;
    const size_t size = j->spec[0].payload;
    const uint64_t n = (uint64_t)j->warmup + j->iters;
    void *tx, *rx;
    uint64_t *lat = NULL;
    int rc = -1;
    if (side_open(j, role, &tx, &rx) < 0)
        goto out;
    if (role == 0) {
        lat = calloc(j->iters, sizeof(*lat));
        if (!lat || !side_start(j, tx, 1))
            goto out;
        for (uint64_t i = 0; i < n; i++) {
            spin_ns(j->gap_ns);
            uint64_t t0 = bench_ticks();
            void *p = loan_msg(j, t, tx);
            if (!p)
                goto out;
            payload_write(p, size, i, false);
            if (!send_msg(j, t, tx, p, i))
                goto out;
            for (unsigned k = 1; atomic_load_explicit(&j->flag, memory_order_acquire) != i + 1;
                 k++) {
                if ((k & 0xffff) == 0 && job_failed(j))
                    goto out;
            }
            uint64_t t1 = bench_ticks();
            if (i >= j->warmup)
                lat[i - j->warmup] = t1 - t0;
        }
        j->pct = bench_percentiles(lat, j->iters);
        for (int k = 0; k < CDF_N; k++) {
            double q = k == CDF_N - 1 ? 0.999 : (double)k / (CDF_N - 1);
            j->cdf[k] = bench_ticks_to_ns(bench_rank(lat, j->iters, q > 0 ? q : 1e-9));
        }
        j->msgs = n;
    } else {
        if (!side_wait_go(j))
            goto out;
        for (uint64_t i = 0; i < n; i++) {
            const void *q = recv_msg(j, t, rx, false);
            if (!q)
                goto out;
            if (!payload_read(q, size, i, false)) {
                job_fail(j, "%s: message %" PRIu64 " damaged or out of order", t->name, i);
                goto out;
            }
            t->done(rx, q);
            atomic_store_explicit(&j->flag, i + 1, memory_order_release);
        }
    }
    rc = 0;
out:
    free(lat);
    side_close(j, tx, rx);
    return rc;
}

/* ---- processes ---- */

typedef int (*side_fn)(struct job *j, int role);

static pid_t spawn_side(struct job *j, int cpu, side_fn fn, int role)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(1);
    if (bench_pin(cpu) < 0) {
        job_fail(j, "cannot pin to CPU %d", cpu);
        _exit(1);
    }
    int r = fn(j, role);
    fflush(NULL);
    _exit(r == 0 ? 0 : 1);
}

static void reap(struct job *j, pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        int st;
        while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            job_fail(j, "a peer process %s", WIFEXITED(st) ? "failed" : "was killed");
    }
}

/* In the measuring process: the transport cases. */
static void run_transport_job(struct job *j)
{
    int nspec = j->kind == K_RTT ? 2 : 1;
    for (int i = 0; i < nspec; i++) {
        int r = j->t->prepare(&j->spec[i]);
        if (r < 0) {
            job_fail(j, "%s: prepare: %s", j->t->name, mbq_status_string(r));
            for (int k = 0; k <= i; k++)
                j->t->unprepare(&j->spec[k]);
            copy_note(j);
            return;
        }
    }
    side_fn fn = j->kind == K_RTT ? rtt_side : j->kind == K_STREAM ? stream_side : wake_side;
    int peers = j->kind == K_STREAM ? (int)j->spec[0].fan : 1;
    pid_t pids[TX_MAX_FAN];
    struct bench_ctxsw self0 = bench_ctxsw_read(RUSAGE_SELF);
    for (int i = 0; i < peers; i++)
        pids[i] = spawn_side(j, j->cpu_b, fn, i + 1);
    int rc = fn(j, 0);
    if (rc != 0)
        for (int i = 0; i < peers; i++)
            kill(pids[i], SIGKILL);
    reap(j, pids, peers);
    struct bench_ctxsw self1 = bench_ctxsw_read(RUSAGE_SELF);
    struct bench_ctxsw kids = bench_ctxsw_read(RUSAGE_CHILDREN);
    j->vcsw = self1.voluntary - self0.voluntary + kids.voluntary;
    j->ivcsw = self1.involuntary - self0.involuntary + kids.involuntary;
    if (j->kind == K_STREAM && !job_failed(j)) {
        uint64_t end = 0;
        for (int i = 0; i < peers; i++)
            if (j->t_end[i] > end)
                end = j->t_end[i];
        j->rate = (double)j->iters * 1e9 / (double)(end - j->t_start);
    }
    for (int i = 0; i < nspec; i++)
        j->t->unprepare(&j->spec[i]);
    copy_note(j);
    if (!job_failed(j))
        j->ok = 1;
}

/* ---- placement probe: a cache line's round trip between the CPUs ---- */

struct probe_sh {
    _Alignas(128) _Atomic uint32_t ping;
    _Alignas(128) _Atomic uint32_t pong;
};

static void run_probe(struct job *j)
{
    struct probe_sh *sh = bench_shared_alloc(sizeof(*sh));
    uint32_t n = j->warmup + j->iters;
    uint64_t *lat = calloc(j->iters, sizeof(*lat));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        bench_pin(j->cpu_b);
        for (uint32_t i = 1; i <= n; i++) {
            while (atomic_load_explicit(&sh->ping, memory_order_acquire) != i)
                ;
            atomic_store_explicit(&sh->pong, i, memory_order_release);
        }
        _exit(0);
    }
    for (uint32_t i = 1; i <= n; i++) {
        uint64_t t0 = bench_ticks();
        atomic_store_explicit(&sh->ping, i, memory_order_release);
        while (atomic_load_explicit(&sh->pong, memory_order_acquire) != i)
            ;
        uint64_t t1 = bench_ticks();
        if (i > j->warmup)
            lat[i - j->warmup - 1] = t1 - t0;
    }
    waitpid(pid, NULL, 0);
    j->pct = bench_percentiles(lat, j->iters);
    free(lat);
    j->ok = 1;
}

/* ---- pool: allocate + free of 4 MiB, against malloc and a fresh mmap ---- */

enum { POOL_MBQ, POOL_MBQ_TOUCH, POOL_MALLOC, POOL_MALLOC_TOUCH, POOL_MMAP, POOL_MMAP_TOUCH };

#define POOL_SIZE (4u << 20)

static inline void touch_pages(void *p, size_t size)
{
    volatile uint8_t *b = p;
    for (size_t off = 0; off < size; off += 4096)
        b[off] = (uint8_t)off;
}

static void run_pool(struct job *j)
{
    uint64_t *lat = calloc(j->iters, sizeof(*lat));
    mbq_client *c = NULL;
    mbq_pool *pool = NULL;
    char name[96];
    bool mbq = j->sub == POOL_MBQ || j->sub == POOL_MBQ_TOUCH;
    bool touch = j->sub == POOL_MBQ_TOUCH || j->sub == POOL_MALLOC_TOUCH ||
                 j->sub == POOL_MMAP_TOUCH;
    if (!lat) {
        job_fail(j, "out of memory");
        return;
    }
    if (mbq) {
        snprintf(name, sizeof(name), "bench/%s/pool", j->spec[0].name);
        mbq_pool_options po = {.size = sizeof(po), .block_size = POOL_SIZE, .block_count = 4,
                               .exclusive = true};
        int r = mbq_connect(mbq_socket_path, "bench_pool", &c);
        if (r == 0)
            r = mbq_pool_create(c, name, &po, &pool);
        if (r < 0) {
            job_fail(j, "mbq pool: %s", mbq_status_string(r));
            mbq_disconnect(c);
            free(lat);
            return;
        }
    }
    uint32_t n = j->warmup + j->iters;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t t0 = bench_ticks();
        if (mbq) {
            mbq_buffer b;
            int r = mbq_pool_allocate(pool, POOL_SIZE, &b);
            if (r < 0) {
                job_fail(j, "mbq_pool_allocate: %s", mbq_status_string(r));
                break;
            }
            if (touch)
                touch_pages(mbq_buffer_get_data(b, NULL), POOL_SIZE);
            mbq_buffer_release(b);
        } else if (j->sub == POOL_MALLOC || j->sub == POOL_MALLOC_TOUCH) {
            void *p = malloc(POOL_SIZE);
            if (!p) {
                job_fail(j, "malloc failed");
                break;
            }
            if (touch)
                touch_pages(p, POOL_SIZE);
            __asm__ volatile("" : : "r"(p) : "memory"); /* keep the pair */
            free(p);
        } else {
            void *p = mmap(NULL, POOL_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
            if (p == MAP_FAILED) {
                job_fail(j, "mmap: %s", strerror(errno));
                break;
            }
            if (touch)
                touch_pages(p, POOL_SIZE);
            munmap(p, POOL_SIZE);
        }
        uint64_t t1 = bench_ticks();
        if (i >= j->warmup)
            lat[i - j->warmup] = t1 - t0;
    }
    if (!job_failed(j)) {
        j->pct = bench_percentiles(lat, j->iters);
        j->ok = 1;
    }
    free(lat);
    if (mbq) {
        mbq_pool_close(pool);
        mbq_unlink(c, name);
        mbq_disconnect(c);
    }
}

/* ---- dead-client reclaim ---- */

#define RECLAIM_BLOCKS 8u
#define RECLAIM_SIZE (64u << 10)
#define RECLAIM_TIMEOUT_NS 10000000000ull

struct reclaim_sh {
    _Atomic int state; /* 1 attached, 2 holding everything, -1 failed */
};

/* The dead process's own part of a reclaim: the kernel tears a killed
 * process down (its memory first, then its files, which is when a daemon
 * sees the end of its session) before any peer can learn that it died.
 * reclaim_watch() notes when the victim's pidfd became readable (it has
 * exited, a little after its files were closed); the job reports it next
 * to the reclaim time, in pct.p99. */
struct reclaim_watch {
    int pidfd;
    uint64_t k0, dead_ns; /* dead_ns: 0 until seen */
};

static void reclaim_watch_start(struct reclaim_watch *w, pid_t pid)
{
    w->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    w->k0 = bench_mono_ns();
    w->dead_ns = 0;
}

/* Polls the pidfd once (wait_ms 0) or until it is readable. */
static void reclaim_watch_poll(struct reclaim_watch *w, int wait_ms)
{
    if (w->pidfd < 0 || w->dead_ns)
        return;
    struct pollfd p = {.fd = w->pidfd, .events = POLLIN};
    if (poll(&p, 1, wait_ms) > 0)
        w->dead_ns = bench_mono_ns() - w->k0;
}

static void reclaim_watch_end(struct reclaim_watch *w, struct job *j)
{
    reclaim_watch_poll(w, 10000);
    j->pct.p99 = w->dead_ns ? (double)w->dead_ns : NAN;
    if (w->pidfd >= 0)
        close(w->pidfd);
}

static void run_reclaim_mbq(struct job *j)
{
    struct reclaim_sh *sh = bench_shared_alloc(sizeof(*sh));
    char name[96];
    snprintf(name, sizeof(name), "bench/%s/pool", j->spec[0].name);
    mbq_client *c = NULL;
    mbq_pool *pool = NULL;
    mbq_pool_options po = {.size = sizeof(po), .block_size = RECLAIM_SIZE,
                           .block_count = RECLAIM_BLOCKS, .exclusive = true};
    int r = mbq_connect(mbq_socket_path, "bench_reclaim", &c);
    if (r == 0)
        r = mbq_pool_create(c, name, &po, &pool);
    if (r < 0) {
        job_fail(j, "mbq pool: %s", mbq_status_string(r));
        mbq_disconnect(c);
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        bench_pin(j->cpu_b);
        mbq_client *hc;
        mbq_pool *hp;
        if (mbq_connect(mbq_socket_path, "bench_holder", &hc) < 0 ||
            mbq_pool_open(hc, name, &hp) < 0)
            _exit(1);
        for (unsigned i = 0; i < RECLAIM_BLOCKS; i++) {
            mbq_buffer b;
            if (mbq_pool_allocate(hp, RECLAIM_SIZE, &b) < 0)
                _exit(1);
        }
        atomic_store(&sh->state, 2);
        for (;;)
            pause();
    }
    uint64_t t0 = bench_mono_ns();
    while (atomic_load(&sh->state) != 2) {
        if (bench_mono_ns() - t0 > 10000000000ull || waitpid(pid, NULL, WNOHANG) == pid) {
            job_fail(j, "the holder never took the blocks");
            goto out;
        }
        usleep(100);
    }
    mbq_buffer b;
    if (mbq_pool_allocate(pool, RECLAIM_SIZE, &b) == 0) {
        job_fail(j, "the pool was not exhausted");
        goto out;
    }
    struct reclaim_watch w;
    reclaim_watch_start(&w, pid);
    uint64_t k0 = w.k0;
    kill(pid, SIGKILL);
    for (;;) {
        if (mbq_pool_allocate(pool, RECLAIM_SIZE, &b) == 0) {
            j->value = (double)(bench_mono_ns() - k0);
            mbq_buffer_release(b);
            j->ok = 1;
            break;
        }
        if (bench_mono_ns() - k0 > RECLAIM_TIMEOUT_NS) {
            job_fail(j, "blocks not reclaimed within 10 s");
            break;
        }
        reclaim_watch_poll(&w, 0);
        spin_ns(2000);
    }
    reclaim_watch_end(&w, j);
out:
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    mbq_pool_close(pool);
    mbq_unlink(c, name);
    mbq_disconnect(c);
}

#ifdef BENCH_HAVE_ICEORYX
#define IOX_RECLAIM_CHUNKS 16u /* the 66560-byte mempool of roudi.toml */

static void run_reclaim_iox(struct job *j)
{
    struct reclaim_sh *sh = bench_shared_alloc(sizeof(*sh));
    struct tx_spec *s = &j->spec[0];
    s->depth = IOX_RECLAIM_CHUNKS;
    s->payload = RECLAIM_SIZE;
    s->wait = TX_POLL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        bench_pin(j->cpu_b);
        void *rx;
        iox_proc_init(s);
        if (iox_open_rx(s, 0, &rx) < 0)
            _exit(1);
        atomic_store(&sh->state, 1);
        for (unsigned held = 0; held < IOX_RECLAIM_CHUNKS;) {
            int err;
            if (iox_recv(rx, &err))
                held++;
            else
                usleep(100);
        }
        atomic_store(&sh->state, 2);
        for (;;)
            pause();
    }
    void *tx = NULL;
    iox_proc_init(s);
    if (iox_open_tx(s, &tx) < 0) {
        job_fail(j, "iceoryx publisher");
        goto out;
    }
    uint64_t t0 = bench_mono_ns();
    while (atomic_load(&sh->state) < 1 || !iox_connected(tx)) {
        if (bench_mono_ns() - t0 > 30000000000ull || waitpid(pid, NULL, WNOHANG) == pid) {
            job_fail(j, "the iceoryx subscriber never attached");
            goto out;
        }
        usleep(500);
    }
    for (unsigned i = 0; i < IOX_RECLAIM_CHUNKS; i++) {
        int err;
        void *p = iox_loan(tx, &err);
        if (!p) {
            job_fail(j, "iceoryx loan %u failed", i);
            goto out;
        }
        payload_write(p, RECLAIM_SIZE, i, false);
        iox_send(tx, p, i);
    }
    while (atomic_load(&sh->state) != 2) {
        if (bench_mono_ns() - t0 > 30000000000ull) {
            job_fail(j, "the holder never took the chunks");
            goto out;
        }
        usleep(100);
    }
    /* iceoryx prints a line for every failed loan: keep them out of the log */
    int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    fflush(stderr);
    dup2(devnull, STDERR_FILENO);
    void *p = NULL;
    if (iox_pub_loan_chunk(((struct iox_end *)tx)->pub, &p, RECLAIM_SIZE) ==
        AllocationResult_SUCCESS) {
        job_fail(j, "the mempool was not exhausted");
    } else {
        struct reclaim_watch w;
        reclaim_watch_start(&w, pid);
        uint64_t k0 = w.k0;
        kill(pid, SIGKILL);
        for (;;) {
            if (iox_pub_loan_chunk(((struct iox_end *)tx)->pub, &p, RECLAIM_SIZE) ==
                AllocationResult_SUCCESS) {
                j->value = (double)(bench_mono_ns() - k0);
                iox_pub_release_chunk(((struct iox_end *)tx)->pub, p);
                j->ok = 1;
                break;
            }
            if (bench_mono_ns() - k0 > RECLAIM_TIMEOUT_NS) {
                job_fail(j, "chunks not reclaimed within 10 s");
                break;
            }
            reclaim_watch_poll(&w, 1); /* and a 1 ms pause */
        }
        reclaim_watch_end(&w, j);
    }
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(devnull);
out:
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (tx)
        iox_close_tx(tx);
    iox_proc_fini();
}
#endif

/* ---- running a job in its own process group ---- */

static void job_main(struct job *j)
{
    bench_pin(j->cpu_a);
    switch (j->kind) {
    case K_RTT:
    case K_STREAM:
    case K_WAKE:
        run_transport_job(j);
        break;
    case K_PROBE:
        run_probe(j);
        break;
    case K_POOL:
        run_pool(j);
        break;
    case K_RECLAIM:
#ifdef BENCH_HAVE_ICEORYX
        if (j->t == &tx_iox) {
            run_reclaim_iox(j);
            break;
        }
#endif
        run_reclaim_mbq(j);
        break;
    }
}

#define JOB_TIMEOUT_NS 120000000000ull

/* Runs the job in a fresh process group; false (with j->err) if it failed
 * or hung. */
static bool job_run(struct job *j)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(j->err, sizeof(j->err), "fork: %s", strerror(errno));
        return false;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        job_main(j);
        fflush(NULL);
        _exit(j->ok ? 0 : 1);
    }
    setpgid(pid, pid);
    uint64_t t0 = bench_mono_ns();
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (bench_mono_ns() - t0 > JOB_TIMEOUT_NS) {
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            if (!j->err[0])
                snprintf(j->err, sizeof(j->err), "timed out");
            j->ok = 0;
            break;
        }
        usleep(2000);
    }
    if (j->ok && !j->err[0])
        return true;
    kill(-pid, SIGKILL); /* whatever of the group is left */
    if (!j->err[0])
        snprintf(j->err, sizeof(j->err), "failed (status %#x)", (unsigned)st);
    j->ok = 0;
    return false;
}

/* ---- the machine: quiet gate and foreign work ---- */

struct cpu_snap {
    uint64_t busy, total, steal; /* clock ticks, all CPUs; busy includes steal */
};

static struct cpu_snap cpu_read(void)
{
    struct cpu_snap s = {0};
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return s;
    unsigned long long v[10] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
               &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
        s.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        s.total = s.busy + v[3] + v[4];
        s.steal = v[7];
    }
    fclose(f);
    return s;
}

static double own_cpu_s(void)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec +
                    b.ru_stime.tv_sec) +
           (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec +
                    b.ru_stime.tv_usec) /
               1e6;
}

static double gate_spent_s;

struct gate {
    bool quiet;
    double busy_pct; /* the worse of the last two windows */
    double waited_s;
};

static double window_busy_pct(void)
{
    struct cpu_snap a = cpu_read();
    usleep(500000);
    struct cpu_snap b = cpu_read();
    return b.total > a.total ? 100.0 * (double)(b.busy - a.busy) / (double)(b.total - a.total)
                             : 100;
}

static struct gate gate_wait(void)
{
    struct gate g = {0};
    uint64_t t0 = bench_mono_ns();
    double prev = window_busy_pct();
    for (;;) {
        double cur = window_busy_pct();
        g.busy_pct = prev > cur ? prev : cur;
        g.waited_s = (double)(bench_mono_ns() - t0) / 1e9;
        if (g.busy_pct < opt.quiet_pct) {
            g.quiet = true;
            break;
        }
        if (g.waited_s >= opt.gate_max_s || gate_spent_s + g.waited_s >= opt.gate_budget_s)
            break;
        prev = cur;
    }
    gate_spent_s += g.waited_s;
    return g;
}

/* ---- daemons ---- */

static char run_dir[256];
static pid_t mbqd_pid, roudi_pid;
static bool iox_ok;
static char iox_why[1300] = "not built with iceoryx";

static pid_t spawn_exec(char *const argv[], const char *log_path)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, STDIN_FILENO);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void stop_pid(pid_t *pid, int timeout_ms)
{
    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    for (int i = 0; i < timeout_ms / 10; i++) {
        if (waitpid(*pid, NULL, WNOHANG) == *pid) {
            *pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

static bool mbqd_start(void)
{
    snprintf(mbq_socket_path, sizeof(mbq_socket_path), "%s/mbqd.sock", run_dir);
    char *argv[] = {(char *)opt.mbqd, "--socket", mbq_socket_path, "--log-level", "warning", NULL};
    char log[1100];
    snprintf(log, sizeof(log), "%s/mbqd.log", run_dir);
    mbqd_pid = spawn_exec(argv, log);
    for (int i = 0; i < 500; i++) {
        mbq_client *c;
        if (mbq_connect(mbq_socket_path, "bench_probe", &c) == 0) {
            mbq_disconnect(c);
            return true;
        }
        if (waitpid(mbqd_pid, NULL, WNOHANG) == mbqd_pid)
            break;
        usleep(10000);
    }
    return false;
}

#ifdef BENCH_HAVE_ICEORYX
static bool file_contains(const char *path, const char *what)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, what) != NULL;
    fclose(f);
    return found;
}
#endif

static void roudi_start(void)
{
#ifdef BENCH_HAVE_ICEORYX
    if (opt.no_iox) {
        snprintf(iox_why, sizeof(iox_why), "--no-iceoryx given");
        return;
    }
    if (!opt.roudi_config) {
        snprintf(iox_why, sizeof(iox_why), "no RouDi config (--roudi-config)");
        return;
    }
    char log[1100];
    snprintf(log, sizeof(log), "%s/roudi.log", run_dir);
    char *argv[] = {(char *)opt.roudi, "-c", (char *)opt.roudi_config, "-l", "info", NULL};
    roudi_pid = spawn_exec(argv, log);
    for (int i = 0; i < 1000; i++) {
        if (file_contains(log, "RouDi is ready for clients")) {
            iox_ok = true;
            return;
        }
        if (waitpid(roudi_pid, NULL, WNOHANG) == roudi_pid) {
            roudi_pid = 0;
            snprintf(iox_why, sizeof(iox_why),
                     "%s did not start (another RouDi running? see %s)", opt.roudi, log);
            return;
        }
        usleep(10000);
    }
    stop_pid(&roudi_pid, 5000);
    snprintf(iox_why, sizeof(iox_why), "RouDi not ready after 10 s (see %s)", log);
#endif
}

/* Stops our RouDi and removes what it leaves behind: iceoryx 2.0.3 keeps
 * its shared memory (/dev/shm/iceoryx_mgmt, /dev/shm/<user>) and its
 * socket and lock files under fixed names after it exits. They were ours:
 * RouDi refuses to start beside another. */
static void roudi_stop(void)
{
    if (roudi_pid <= 0)
        return;
    kill(roudi_pid, SIGTERM);
    int i;
    for (i = 0; i < 3000 && waitpid(roudi_pid, NULL, WNOHANG) != roudi_pid; i++)
        usleep(10000);
    if (i == 3000) {
        fprintf(stderr, "bench_transports: RouDi did not stop in 30 s; killing it\n");
        kill(roudi_pid, SIGKILL);
        waitpid(roudi_pid, NULL, 0);
    }
    roudi_pid = 0;
    struct passwd *pw = getpwuid(geteuid());
    char seg[300];
    snprintf(seg, sizeof(seg), "/dev/shm/%s", pw ? pw->pw_name : "root");
    const char *const files[] = {"/dev/shm/iceoryx_mgmt", seg, "/tmp/roudi", "/tmp/roudi.lock",
                                 "/tmp/iox-unique-roudi.lock"};
    for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++)
        unlink(files[k]);
}

/* ---- memory footprint ---- */

struct mem {
    long rss_kb, pss_kb, private_kb, threads;
};

static struct mem mem_of(pid_t pid)
{
    struct mem m = {-1, -1, -1, -1};
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "re");
    if (f) {
        long pc = 0, pd = 0;
        while (fgets(line, sizeof(line), f)) {
            long v;
            if (sscanf(line, "Rss: %ld", &v) == 1)
                m.rss_kb = v;
            else if (sscanf(line, "Pss: %ld", &v) == 1)
                m.pss_kb = v;
            else if (sscanf(line, "Private_Clean: %ld", &v) == 1)
                pc = v;
            else if (sscanf(line, "Private_Dirty: %ld", &v) == 1)
                pd = v;
        }
        m.private_kb = pc + pd;
        fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "re");
    if (f) {
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "Threads: %ld", &m.threads) == 1)
                break;
        fclose(f);
    }
    return m;
}

struct footprint {
    const char *what;
    struct mem m;
    long delta_pss_kb; /* clients: what connecting added */
    long shm_kb;       /* shared memory the daemon set aside */
    char note[160];
};

static struct footprint feet[8];
static int nfeet;

/* An idle client: a fresh process connects (and does nothing else); its
 * footprint is read before and after, from outside. */
static void footprint_client(const char *what, int kind)
{
    int go[2], done[2];
    if (pipe(go) || pipe(done))
        return;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(1);
        if (kind == 0) {
            mbq_client *cl;
            if (mbq_connect(mbq_socket_path, "bench_idle", &cl) < 0)
                _exit(1);
        } else {
#ifdef BENCH_HAVE_ICEORYX
            iox_proc_init(NULL);
#endif
        }
        if (write(done[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    usleep(100000);
    struct mem before = mem_of(pid);
    char c = 'g';
    if (write(go[1], &c, 1) == 1 && read(done[0], &c, 1) == 1) {
        usleep(200000);
        struct footprint *f = &feet[nfeet++];
        f->what = what;
        f->m = mem_of(pid);
        f->delta_pss_kb = f->m.pss_kb - before.pss_kb;
        f->shm_kb = -1;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(go[0]);
    close(go[1]);
    close(done[0]);
    close(done[1]);
}

static long dev_shm_kb(const char *prefix_a, const char *prefix_b)
{
    DIR *d = opendir("/dev/shm");
    long kb = 0;
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, prefix_a) != 0 && strcmp(e->d_name, prefix_b) != 0)
            continue;
        char p[300];
        struct stat st;
        snprintf(p, sizeof(p), "/dev/shm/%s", e->d_name);
        if (stat(p, &st) == 0)
            kb += (long)(st.st_size / 1024);
    }
    closedir(d);
    return kb;
}

static void measure_footprint(void)
{
    struct footprint *f = &feet[nfeet++];
    f->what = "mbqd (daemon, no objects)";
    f->m = mem_of(mbqd_pid);
    f->delta_pss_kb = -1;
    f->shm_kb = 0;
    snprintf(f->note, sizeof(f->note), "segments are made per object, when created");
    if (iox_ok) {
        f = &feet[nfeet++];
        f->what = "iox-roudi (daemon, roudi.toml)";
        f->m = mem_of(roudi_pid);
        f->delta_pss_kb = -1;
        f->shm_kb = dev_shm_kb("iceoryx_mgmt", "root");
        snprintf(f->note, sizeof(f->note), "/dev/shm/iceoryx_mgmt + /dev/shm/root, sized at start");
    }
    footprint_client("mbq client (mbq_connect only)", 0);
    if (iox_ok)
        footprint_client("iceoryx client (iox_runtime_init only)", 1);
}

/* ---- the cases ---- */

struct entry {
    const char *label;
    const struct tx_ops *t;
    int variant;
    int sub;
    uint32_t warmup, iters;
    uint32_t payload; /* bytes; 0: the case's */
};

#define MAX_ENTRIES 11

struct bcase {
    const char *id;
    const char *title;
    const char *measures;
    enum kind kind;
    size_t payload;
    bool touch;
    int wait;
    bool same_core;
    uint32_t depth, fan;
    bool unordered;
    uint64_t gap_ns;
    int max_reps;      /* 0: all */
    const char *base;  /* the label ratios are taken against */
    bool rate;         /* the figure is a rate (higher is better) */
    struct entry e[MAX_ENTRIES];
};

#ifdef BENCH_HAVE_ICEORYX
#define TX_IOX (&tx_iox)
#else
#define TX_IOX NULL
#endif
#define IOX_ENTRY(label, w, n) {label, TX_IOX, 0, 0, w, n, 0}

static const struct bcase cases[] = {
    {"rtt64", "Round trip, 64 B, busy-poll, across cores",
     "The parent sends a 64-byte message, the child answers with a new one; both poll. "
     "Timed from the parent's loan/allocate to the release of the answer.",
     K_RTT, 64, false, TX_POLL, false, 64, 1, false, 0, 0, "ring", false,
     {{"ring", &tx_ring, 0, 0, 5000, 50000, 0},
      {"floor", &tx_floor, 0, 0, 5000, 50000, 0},
      {"mbq-bq", &tx_bq, 0, 0, 5000, 50000, 0},
      {"mbq", &tx_mbq, 0, 0, 5000, 50000, 0},
      IOX_ENTRY("iceoryx", 2000, 20000),
      {"mq", &tx_mq, 0, 0, 2000, 20000, 0},
      {"uds", &tx_uds, 0, 0, 2000, 20000, 0}}},
    {"rtt4m", "Round trip, 4 MiB payload (not touched), busy-poll, across cores",
     "As rtt64 with 4 MiB messages of which only the 64-byte header is written and read: "
     "the cost of handing a frame over. The kernel transports copy all 4 MiB each way. "
     "\"mbq 64 B\" is mbq with 64-byte messages in the same round, with the same depth and "
     "pool size: the baseline of the 4 MiB ≈ 64 B target.",
     K_RTT, 4u << 20, false, TX_POLL, false, 8, 1, false, 0, 0, "ring", false,
     {{"ring", &tx_ring, 0, 0, 1000, 10000, 0},
      {"floor", &tx_floor, 0, 0, 1000, 10000, 0},
      {"mbq", &tx_mbq, 0, 0, 1000, 10000, 0},
      {"mbq 64 B", &tx_mbq, 0, 0, 1000, 10000, 64},
      IOX_ENTRY("iceoryx", 1000, 10000),
      {"mq", &tx_mq, 0, 0, 30, 300, 0},
      {"uds", &tx_uds, 0, 0, 30, 300, 0}}},
    {"rtt4m_touch", "Round trip, 4 MiB payload touched, busy-poll, across cores",
     "As rtt4m, but the sender writes every byte and the receiver reads every byte, each way: "
     "the frame is really produced and consumed.",
     K_RTT, 4u << 20, true, TX_POLL, false, 8, 1, false, 0, 0, "ring", false,
     {{"ring", &tx_ring, 0, 0, 20, 200, 0},
      {"floor", &tx_floor, 0, 0, 20, 200, 0},
      {"mbq", &tx_mbq, 0, 0, 20, 200, 0},
      IOX_ENTRY("iceoryx", 20, 200),
      {"mq", &tx_mq, 0, 0, 10, 100, 0},
      {"uds", &tx_uds, 0, 0, 10, 100, 0}}},
    {"rtt1m_touch", "Round trip, 1 MiB payload touched, busy-poll, across cores",
     "As rtt4m_touch with 1 MiB messages: every byte written and read each way.",
     K_RTT, 1u << 20, true, TX_POLL, false, 8, 1, false, 0, 0, "ring", false,
     {{"ring", &tx_ring, 0, 0, 50, 500, 0},
      {"floor", &tx_floor, 0, 0, 50, 500, 0},
      {"mbq", &tx_mbq, 0, 0, 50, 500, 0},
      IOX_ENTRY("iceoryx", 50, 500)}},
    {"block_same", "Round trip, 64 B, blocking, both on the same core",
     "Both processes on CPU 0, each waiting in its transport's blocking call: a context switch "
     "per hop, no inter-processor wake-up. ring+futex spins ~25 us first, as mbq does.",
     K_RTT, 64, false, TX_BLOCK, true, 64, 1, false, 0, 0, "ring+eventfd", false,
     {{"ring+eventfd", &tx_ring, TXV_RING_EVENTFD, 0, 500, 5000, 0},
      {"ring+futex", &tx_ring, TXV_RING_FUTEX_SPIN, 0, 200, 2000, 0},
      {"floor", &tx_floor, 0, 0, 200, 2000, 0},
      {"mbq-bq", &tx_bq, 0, 0, 200, 2000, 0},
      {"mbq", &tx_mbq, 0, 0, 200, 2000, 0},
      IOX_ENTRY("iceoryx", 500, 5000),
      {"mq", &tx_mq, 0, 0, 500, 5000, 0},
      {"uds", &tx_uds, 0, 0, 500, 5000, 0}}},
    {"stream_same", "One-way streaming, 64 B, blocking, both on the same core",
     "Both processes on CPU 0, each waiting in its transport's blocking call when it cannot go "
     "on (queue full: the producer; empty: the consumer); depth 256. mbq's blocking dequeue does "
     "not spin when the producer last ran on its CPU, and the producer uses the blocking "
     "enqueue.",
     K_STREAM, 64, false, TX_BLOCK, true, 256, 1, false, 0, 0, "ring+eventfd", true,
     {{"ring+eventfd", &tx_ring, TXV_RING_EVENTFD, 0, 0, 1000000, 0},
      {"floor", &tx_floor, 0, 0, 0, 1000000, 0},
      {"mbq-bq", &tx_bq, 0, 0, 0, 1000000, 0},
      {"mbq", &tx_mbq, 0, 0, 0, 1000000, 0},
      IOX_ENTRY("iceoryx", 0, 300000)}},
    {"trig_rtt", "Round trip, 64 B, busy-poll, across cores, with and without a trigger",
     "As rtt64 for mbq, with a trigger installed on the queue (count > 1000000: it never fires) "
     "against none: what an installed trigger costs every operation.",
     K_RTT, 64, false, TX_POLL, false, 64, 1, false, 0, 0, "mbq", false,
     {{"mbq", &tx_mbq, 0, 0, 5000, 50000, 0},
      {"mbq trigger", &tx_mbq, TXV_MBQ_TRIGGER_IDLE, 0, 5000, 50000, 0}}},
    {"trig_stream", "One-way streaming, 64 B, busy-poll, across cores, with and without a trigger",
     "As stream64 for mbq, with a trigger installed that never fires against none.",
     K_STREAM, 64, false, TX_POLL, false, 256, 1, false, 0, 0, "mbq", true,
     {{"mbq", &tx_mbq, 0, 0, 0, 1000000, 0},
      {"mbq trigger", &tx_mbq, TXV_MBQ_TRIGGER_IDLE, 0, 0, 1000000, 0}}},
    {"block_cross", "Round trip, 64 B, blocking, across cores",
     "Each side waits in its transport's blocking call. ring+futex spins ~25 us, then "
     "FUTEX_WAIT, and wakes only a flagged sleeper (the raw form of mbq's dequeue_wait); "
     "ring+eventfd sleeps at once.",
     K_RTT, 64, false, TX_BLOCK, false, 64, 1, false, 0, 0, "ring+futex", false,
     {{"ring+futex", &tx_ring, TXV_RING_FUTEX_SPIN, 0, 2000, 20000, 0},
      {"ring+eventfd", &tx_ring, TXV_RING_EVENTFD, 0, 300, 3000, 0},
      {"floor", &tx_floor, 0, 0, 2000, 20000, 0},
      {"mbq-bq", &tx_bq, 0, 0, 2000, 20000, 0},
      {"mbq", &tx_mbq, 0, 0, 2000, 20000, 0},
      IOX_ENTRY("iceoryx", 300, 3000),
      {"mq", &tx_mq, 0, 0, 300, 3000, 0},
      {"uds", &tx_uds, 0, 0, 300, 3000, 0}}},
    {"wake", "Wake-up after a real sleep, 64 B, across cores",
     "The receiver is asleep in the kernel (the sender stays busy 200 us, past every spin "
     "window, before each message); timed from the send until the receiver, awake, has read "
     "the message and raised a flag the sender spins on.",
     K_WAKE, 64, false, TX_BLOCK, false, 64, 1, false, 200000, 0, "eventfd", false,
     {{"eventfd", &tx_ring, TXV_RING_EVENTFD, 0, 100, 1500, 0},
      {"futex", &tx_ring, TXV_RING_FUTEX, 0, 100, 1500, 0},
      {"ring+futex", &tx_ring, TXV_RING_FUTEX_SPIN, 0, 100, 1500, 0},
      {"floor", &tx_floor, 0, 0, 100, 1500, 0},
      {"mbq-bq", &tx_bq, 0, 0, 100, 1500, 0},
      {"mbq", &tx_mbq, 0, 0, 100, 1500, 0},
      {"mbq-trigger", &tx_mbq, TXV_MBQ_TRIGGER, 0, 100, 1500, 0},
      IOX_ENTRY("iceoryx", 100, 1500),
      {"mq", &tx_mq, 0, 0, 100, 1500, 0},
      {"uds", &tx_uds, 0, 0, 100, 1500, 0}}},
    {"stream64", "One-way streaming, 64 B, busy-poll, across cores",
     "The producer sends back to back into a queue of depth 256 (mq: 10); rate = messages over "
     "the time from the first loan to the consumer's last release.",
     K_STREAM, 64, false, TX_POLL, false, 256, 1, false, 0, 0, "ring", true,
     {{"ring", &tx_ring, 0, 0, 0, 5000000, 0},
      {"floor", &tx_floor, 0, 0, 0, 5000000, 0},
      {"floor b16", &tx_floor, TXV_FLOOR_BATCH16, 0, 0, 5000000, 0},
      {"mbq-bq", &tx_bq, 0, 0, 0, 5000000, 0},
      {"mbq", &tx_mbq, 0, 0, 0, 2000000, 0},
      {"mbq 64 B blocks", &tx_mbq, TXV_MBQ_SMALL, 0, 0, 2000000, 0},
      {"mbq 64 B classes", &tx_mbq, TXV_MBQ_CLASSES, 0, 0, 2000000, 0},
      {"mbq b16", &tx_mbq, TXV_MBQ_BATCH16, 0, 0, 2000000, 0},
      IOX_ENTRY("iceoryx", 0, 500000),
      {"mq", &tx_mq, 0, 0, 0, 500000, 0},
      {"uds", &tx_uds, 0, 0, 0, 500000, 0}}},
    {"fanout", "Fan-out: one producer, two consumers, 64 B streaming",
     "Every message reaches both consumers, which share CPU 1 and yield when empty. ring and "
     "the kernel transports write each message twice; mbq enqueues one buffer into two "
     "queues (one allocation, two references); iceoryx delivers one chunk to two subscribers.",
     K_STREAM, 64, false, TX_POLL, false, 256, 2, false, 0, 0, "ring", true,
     {{"ring", &tx_ring, 0, 0, 0, 2000000, 0},
      {"floor", &tx_floor, 0, 0, 0, 2000000, 0},
      {"floor b16", &tx_floor, TXV_FLOOR_BATCH16, 0, 0, 2000000, 0},
      {"mbq", &tx_mbq, 0, 0, 0, 1000000, 0},
      IOX_ENTRY("iceoryx", 0, 300000),
      {"mq", &tx_mq, 0, 0, 0, 300000, 0},
      {"uds", &tx_uds, 0, 0, 0, 300000, 0}}},
    {"sorted", "mbq sorted by PTS vs FIFO, 64 B streaming",
     "FIFO, and sorted by PTS with four input mixes: in order; B-frame order (0 3 1 2 per "
     "group of four, so one entry in four arrives below its predecessor); late16 (one in "
     "sixteen late by three frames: ... 11 13 14 15 12); random (a hash of the sequence "
     "number), through the library and the queue alone (mbq-bq).",
     K_STREAM, 64, false, TX_POLL, false, 256, 1, true, 0, 0, "mbq fifo", true,
     {{"mbq fifo", &tx_mbq, 0, 0, 0, 1000000, 0},
      {"mbq pts", &tx_mbq, TXV_MBQ_PTS, 0, 0, 1000000, 0},
      {"mbq pts reordered", &tx_mbq, TXV_MBQ_PTS_REORDER, 0, 0, 1000000, 0},
      {"mbq pts late16", &tx_mbq, TXV_MBQ_PTS_LATE16, 0, 0, 1000000, 0},
      {"mbq pts random", &tx_mbq, TXV_MBQ_PTS_RANDOM, 0, 0, 300000, 0},
      {"mbq-bq fifo", &tx_bq, 0, 0, 0, 2000000, 0},
      {"mbq-bq pts reordered", &tx_bq, TXV_MBQ_PTS_REORDER, 0, 0, 2000000, 0},
      {"mbq-bq pts late16", &tx_bq, TXV_MBQ_PTS_LATE16, 0, 0, 2000000, 0},
      {"mbq-bq pts random", &tx_bq, TXV_MBQ_PTS_RANDOM, 0, 0, 500000, 0}}},
    {"pool", "Allocate + free 4 MiB, one process",
     "mbq: mbq_pool_allocate + mbq_buffer_release of a cached (pre-faulted) block; malloc+free "
     "(glibc); a fresh anonymous mmap+munmap. '+touch' writes one byte per page in between, "
     "which is where fresh memory pays its page faults.",
     K_POOL, POOL_SIZE, false, TX_POLL, false, 0, 1, false, 0, 0, "malloc", false,
     {{"mbq", NULL, 0, POOL_MBQ, 1000, 100000, 0},
      {"malloc", NULL, 0, POOL_MALLOC, 1000, 100000, 0},
      {"mmap", NULL, 0, POOL_MMAP, 200, 10000, 0},
      {"mbq+touch", NULL, 0, POOL_MBQ_TOUCH, 100, 5000, 0},
      {"malloc+touch", NULL, 0, POOL_MALLOC_TOUCH, 100, 5000, 0},
      {"mmap+touch", NULL, 0, POOL_MMAP_TOUCH, 10, 200, 0}}},
    {"reclaim", "Dead-client reclaim",
     "A client holding every block of a pool (mbq: 8 x 64 KiB; iceoryx: the 16 chunks of its "
     "64 KiB mempool, taken by a subscriber) is killed with SIGKILL; timed until another "
     "process can allocate again.",
     K_RECLAIM, RECLAIM_SIZE, false, TX_POLL, false, 0, 1, false, 0, 3, "mbq", false,
     {{"mbq", &tx_mbq, 0, 0, 0, 1, 0}, IOX_ENTRY("iceoryx", 0, 1)}},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static int nentries(const struct bcase *c)
{
    int n = 0;
    while (n < MAX_ENTRIES && c->e[n].label)
        n++;
    return n;
}

/* ---- records ---- */

struct rec {
    int rep, ci, ei;
    bool ok;
    double p50, p99, p999, mean, rate, value, vcsw_per_msg;
    double cdf[CDF_N];
    double probe;             /* the round's placement probe */
    double probe_pre, probe_post; /* around this measurement */
    bool quiet, disturbed;
    double busy_pct, foreign_pct, steal_pct;
    char note[200];
    char err[200];
};

static struct rec *recs;
static size_t nrecs, caprecs;

static struct rec *rec_new(void)
{
    if (nrecs == caprecs) {
        caprecs = caprecs ? caprecs * 2 : 256;
        recs = realloc(recs, caprecs * sizeof(*recs));
        if (!recs)
            bench_die("out of memory");
    }
    memset(&recs[nrecs], 0, sizeof(recs[0]));
    return &recs[nrecs++];
}

static struct job *job_new(void)
{
    struct job *j = bench_shared_alloc(sizeof(struct job));
    return j;
}

static void fill_spec(struct tx_spec *s, const struct bcase *c, const struct entry *e, int rep,
                      const char *suffix)
{
    snprintf(s->name, sizeof(s->name), "%s-r%d-%d%s", c->id, rep, (int)(e - c->e), suffix);
    s->fan = c->fan;
    s->depth = c->depth;
    s->payload = e->payload ? e->payload : c->payload;
    s->wait = c->wait;
    s->variant = e->variant;
}

static double probe_once(uint32_t iters)
{
    struct job *j = job_new();
    j->kind = K_PROBE;
    j->cpu_a = BENCH_PARENT_CPU;
    j->cpu_b = BENCH_CHILD_CPU;
    j->warmup = iters / 10;
    j->iters = iters;
    double p = job_run(j) ? j->pct.p50 : NAN;
    munmap(j, sizeof(*j));
    return p;
}

static uint32_t scaled(uint32_t n)
{
    if (!opt.quick || n <= 10)
        return n;
    return n / 10 ? n / 10 : 1;
}

static void run_entry(const struct bcase *c, const struct entry *e, int rep, struct rec *r)
{
    struct job *j = job_new();
    j->kind = c->kind;
    j->t = e->t;
    j->cpu_a = BENCH_PARENT_CPU;
    j->cpu_b = c->same_core ? BENCH_PARENT_CPU : BENCH_CHILD_CPU;
    j->warmup = scaled(e->warmup);
    j->iters = scaled(e->iters);
    if (c->kind == K_RECLAIM)
        j->iters = 1;
    j->touch = c->touch;
    j->unordered = c->unordered;
    j->gap_ns = c->gap_ns;
    j->sub = e->sub;
    fill_spec(&j->spec[0], c, e, rep, c->kind == K_RTT ? "-req" : "");
    fill_spec(&j->spec[1], c, e, rep, "-resp");
    r->ok = job_run(j);
    r->p50 = j->pct.p50;
    r->p99 = j->pct.p99;
    r->p999 = j->pct.p999;
    r->mean = j->pct.mean;
    r->rate = j->rate;
    r->value = j->value;
    r->vcsw_per_msg = j->msgs ? (double)j->vcsw / (double)j->msgs : NAN;
    memcpy(r->cdf, j->cdf, sizeof(r->cdf));
    snprintf(r->note, sizeof(r->note), "%s", j->note);
    snprintf(r->err, sizeof(r->err), "%s", j->err);
    munmap(j, sizeof(*j));
}

static bool in_list(const char *list, const char *item)
{
    if (!list)
        return true;
    size_t n = strlen(item);
    for (const char *p = list; (p = strstr(p, item)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return true;
    return false;
}

static bool case_selected(const struct bcase *c)
{
    return in_list(opt.only, c->id);
}

static const char *state_name(double probe)
{
    return isnan(probe) ? "?" : probe < 100 ? "near" : probe < 300 ? "mid" : "far";
}

static void fmt_ns(char *buf, size_t len, double ns)
{
    if (isnan(ns))
        snprintf(buf, len, "–");
    else if (ns >= 1e6)
        snprintf(buf, len, "%.2f ms", ns / 1e6);
    else if (ns >= 1e4)
        snprintf(buf, len, "%.1f µs", ns / 1e3);
    else if (ns >= 1e3)
        snprintf(buf, len, "%.2f µs", ns / 1e3);
    else
        snprintf(buf, len, "%.0f ns", ns);
}

static void fmt_rate(char *buf, size_t len, double r)
{
    if (isnan(r))
        snprintf(buf, len, "–");
    else if (r >= 1e6)
        snprintf(buf, len, "%.2f M/s", r / 1e6);
    else if (r >= 1e3)
        snprintf(buf, len, "%.0f k/s", r / 1e3);
    else
        snprintf(buf, len, "%.0f /s", r);
}

static int state_of(double probe)
{
    return isnan(probe) ? -1 : probe < 100 ? 0 : probe < 300 ? 1 : 2;
}

/* The placement state a measurement ran in: the same before and after it,
 * else -1 (the host moved the vCPUs meanwhile). */
static int rec_state(const struct rec *r)
{
    int a = state_of(r->probe_pre), b = state_of(r->probe_post);
    return a == b ? a : -1;
}

/* Figures in the tens of nanoseconds follow the placement the host gives
 * the vCPUs (a cache line costs 70, 140 or 500 ns to move); blocking,
 * same-core, memory-bound and single-process figures do not. */
static bool placement_matters(const struct bcase *c)
{
    return c->wait == TX_POLL && !c->same_core && !c->touch &&
           (c->kind == K_RTT || c->kind == K_STREAM);
}

static double placement_spent_s;

static void run_round(const struct bcase *c, int rep)
{
    int n = nentries(c);
    struct gate g = gate_wait();
    double probe = probe_once(20000);
    struct cpu_snap s0 = cpu_read();
    double own0 = own_cpu_s();
    uint64_t w0 = bench_mono_ns();
    size_t first = nrecs;
    printf("[rep %d] %-12s gate %s (busy %.1f%%, waited %.1f s), probe %.0f ns (%s)\n", rep,
           c->id, g.quiet ? "quiet" : "NOT QUIET", g.busy_pct, g.waited_s, probe,
           state_name(probe));
    for (int k = 0; k < n; k++) {
        int ei = (k + rep) % n; /* rotate the order each repetition */
        const struct entry *e = &c->e[ei];
        struct rec *r = rec_new();
        r->rep = rep;
        r->ci = (int)(c - cases);
        r->ei = ei;
        r->probe = probe;
        r->quiet = g.quiet;
        r->busy_pct = g.busy_pct;
        if (!in_list(opt.only_tx, e->label)) {
            snprintf(r->err, sizeof(r->err), "skipped: not selected");
            continue;
        }
        if (strcmp(e->label, "iceoryx") == 0 && !iox_ok) {
            snprintf(r->err, sizeof(r->err), "skipped: %.150s", iox_why);
            continue;
        }
        r->probe_pre = probe_once(5000);
        /* The host moves the vCPUs every few seconds; a busy-poll figure
         * follows the placement (far: 3-5x mid). Give the usual placement a
         * chance to come back before measuring, within a budget. */
        for (uint64_t w0p = bench_mono_ns();
             placement_matters(c) && state_of(r->probe_pre) != 1 &&
             placement_spent_s < opt.placement_budget_s &&
             bench_mono_ns() - w0p < (uint64_t)(opt.placement_max_s * 1e9);) {
            usleep(250000);
            placement_spent_s += 0.25;
            r->probe_pre = probe_once(5000);
        }
        run_entry(c, e, rep, r);
        r->probe_post = probe_once(5000);
        char a[32], b[32];
        if (c->rate) {
            fmt_rate(a, sizeof(a), r->rate);
            snprintf(b, sizeof(b), "-");
        } else if (c->kind == K_RECLAIM) {
            fmt_ns(a, sizeof(a), r->value);
            fmt_ns(b, sizeof(b), r->p99); /* the victim's exit */
        } else {
            fmt_ns(a, sizeof(a), r->p50);
            fmt_ns(b, sizeof(b), r->p99);
        }
        printf("    %-22s %s  %-10s p99 %-10s %s/%s%s%s%s%s\n", e->label,
               r->ok ? "ok  " : "FAIL", a, b, state_name(r->probe_pre),
               state_name(r->probe_post), r->note[0] ? "  [" : "", r->note,
               r->note[0] ? "]" : "", r->ok ? "" : r->err);
    }
    double wall = (double)(bench_mono_ns() - w0) / 1e9;
    struct cpu_snap s1 = cpu_read();
    double hz = (double)sysconf(_SC_CLK_TCK);
    /* Steal (the host running something else on our vCPUs) is left out of
     * "foreign work": waking a halted vCPU shows up as steal too, and that
     * wake-up is what the blocking cases measure. It is reported apart. */
    double machine = (double)((s1.busy - s1.steal) - (s0.busy - s0.steal)) / hz;
    double steal_pct = wall > 0 ? 100 * (double)(s1.steal - s0.steal) / hz / wall : 0;
    double foreign = machine - (own_cpu_s() - own0);
    double fpct = wall > 0 ? 100 * (foreign > 0 ? foreign : 0) / wall : 0;
    bool disturbed = fpct > opt.foreign_pct;
    for (size_t i = first; i < nrecs; i++) {
        recs[i].foreign_pct = fpct;
        recs[i].steal_pct = steal_pct;
        recs[i].disturbed = disturbed || !recs[i].quiet;
    }
    printf("    foreign CPU during the round: %.1f%% of one CPU, host steal %.1f%%%s\n", fpct,
           steal_pct, disturbed ? "  DISTURBED" : "");
}

/* ---- summaries ---- */

static double median_of(double *v, int n)
{
    return n ? bench_median(v, (size_t)n) : NAN;
}

/* Whether a measurement's figure follows the placement: a busy-poll case
 * across cores, and a figure under 20 us (a 4 MiB copy through the kernel
 * takes milliseconds whatever the placement). */
static bool rec_sensitive(const struct rec *r)
{
    const struct bcase *c = &cases[r->ci];
    if (!placement_matters(c))
        return false;
    double ns = c->rate ? (r->rate > 0 ? 1e9 / r->rate : 0) : r->p50;
    return ns < 20000;
}

/* Quiet machine, nothing foreign during the round, and (where it matters)
 * the same placement before and after. */
static bool rec_clean(const struct rec *r)
{
    return r->ok && !r->disturbed && (!rec_sensitive(r) || rec_state(r) >= 0);
}

/* The state a clean measurement counts in: its placement where that
 * matters, else one class for all. */
static int rec_class(const struct rec *r)
{
    return rec_sensitive(r) ? rec_state(r) : 1;
}

static int count_recs(int ci, int ei, int state)
{
    int n = 0;
    for (size_t i = 0; i < nrecs; i++) {
        const struct rec *r = &recs[i];
        if (r->ci == ci && r->ei == ei && rec_clean(r) && (state < 0 || rec_class(r) == state))
            n++;
    }
    return n;
}

/* The placement state a placement-sensitive case is reported in: the one
 * where the transport with the fewest clean measurements has the most (mid
 * on ties), so that every row of the table comes from the same state; -1
 * when no state has two for every transport. */
static int case_state(int ci)
{
    const struct bcase *c = &cases[ci];
    if (!placement_matters(c))
        return 1;
    static const int order[3] = {1, 2, 0};
    int best = -1, best_min = 1;
    for (int k = 0; k < 3; k++) {
        int m = -1;
        for (int ei = 0; ei < nentries(c); ei++) {
            bool sensitive = false;
            for (size_t i = 0; i < nrecs && !sensitive; i++)
                sensitive = recs[i].ci == ci && recs[i].ei == ei && recs[i].ok &&
                            rec_sensitive(&recs[i]);
            if (!sensitive)
                continue;
            int n = count_recs(ci, ei, order[k]);
            if (m < 0 || n < m)
                m = n;
        }
        if (m > best_min) {
            best_min = m;
            best = order[k];
        }
    }
    return best;
}

/* The records of one (case, entry) that count: the clean ones in the case's
 * reporting state (placement-sensitive cases), or the clean ones (others)
 * when there are enough, else every successful one (then *flagged). */
static int pick(int ci, int ei, const struct rec **out, bool *flagged)
{
    int state = case_state(ci);
    bool sensitive = false;
    for (size_t i = 0; i < nrecs && !sensitive; i++)
        sensitive = recs[i].ci == ci && recs[i].ei == ei && recs[i].ok && rec_sensitive(&recs[i]);
    int level;
    if (sensitive && state >= 0 && count_recs(ci, ei, state) >= 2)
        level = 2; /* clean, in the case's state */
    else if (count_recs(ci, ei, -1) >= 3)
        level = 1; /* clean, any state */
    else
        level = 0;
    *flagged = level == 0 || (sensitive && level == 1);
    int n = 0;
    for (size_t i = 0; i < nrecs; i++) {
        const struct rec *r = &recs[i];
        if (r->ci != ci || r->ei != ei || !r->ok)
            continue;
        if (level >= 1 && !rec_clean(r))
            continue;
        if (level == 2 && rec_class(r) != state)
            continue;
        out[n++] = r;
    }
    return n;
}

#define MAX_REPS 32

struct agg {
    int n;
    bool flagged;
    double main, lo, hi, p99; /* main: p50, rate or value */
    double ratio, rlo, rhi;   /* per-round ratio to the case's base */
    int nratio;
};

static double rec_main(const struct bcase *c, const struct rec *r)
{
    return c->rate ? r->rate : c->kind == K_RECLAIM ? r->value : r->p50;
}

static int base_index(const struct bcase *c)
{
    for (int i = 0; i < nentries(c); i++)
        if (strcmp(c->e[i].label, c->base) == 0)
            return i;
    return -1;
}

static const struct rec *find_rec(int ci, int ei, int rep)
{
    for (size_t i = 0; i < nrecs; i++)
        if (recs[i].ci == ci && recs[i].ei == ei && recs[i].rep == rep && recs[i].ok)
            return &recs[i];
    return NULL;
}

/* Cost ratio of entry ei to entry bi of the same case, per round: time over
 * time (for rates, the base's rate over the entry's). */
static int ratios(int ci, int ei, int bi, const struct rec **use, int n, double *v)
{
    const struct bcase *c = &cases[ci];
    int k = 0;
    for (int i = 0; i < n; i++) {
        const struct rec *b = find_rec(ci, bi, use[i]->rep);
        if (!b)
            continue;
        /* a ratio across placement states compares the host, not the code */
        if (rec_clean(use[i]) && (!rec_clean(b) || rec_class(b) != rec_class(use[i])))
            continue;
        double x = rec_main(c, use[i]), y = rec_main(c, b);
        if (!(x > 0) || !(y > 0))
            continue;
        v[k++] = c->rate ? y / x : x / y;
    }
    return k;
}

static struct agg aggregate(int ci, int ei)
{
    const struct bcase *c = &cases[ci];
    const struct rec *use[MAX_REPS * 2];
    struct agg a = {0};
    a.n = pick(ci, ei, use, &a.flagged);
    a.main = a.lo = a.hi = a.p99 = a.ratio = a.rlo = a.rhi = NAN;
    if (a.n == 0)
        return a;
    double v[MAX_REPS * 2], w[MAX_REPS * 2];
    for (int i = 0; i < a.n; i++) {
        v[i] = rec_main(c, use[i]);
        w[i] = use[i]->p99;
    }
    a.main = median_of(v, a.n);
    a.lo = v[0];
    a.hi = v[a.n - 1];
    a.p99 = median_of(w, a.n);
    int bi = base_index(c);
    if (bi >= 0) {
        a.nratio = ratios(ci, ei, bi, use, a.n, v);
        if (a.nratio) {
            a.ratio = median_of(v, a.nratio);
            a.rlo = v[0];
            a.rhi = v[a.nratio - 1];
        }
    }
    return a;
}

/* Ratio of two entries' figures (a over b), per round, median over the
 * rounds both were measured in: the quiet ones when at least three are. */
static double cross_ratio(int ci_a, int ei_a, int ci_b, int ei_b, bool use_rate, double *lo,
                          double *hi, int *n_out)
{
    double all[MAX_REPS], quiet[MAX_REPS];
    int na = 0, nq = 0;
    for (int rep = 1; rep <= opt.reps; rep++) {
        const struct rec *a = find_rec(ci_a, ei_a, rep), *b = find_rec(ci_b, ei_b, rep);
        if (!a || !b)
            continue;
        double x = use_rate ? a->rate : a->p50, y = use_rate ? b->rate : b->p50;
        if (!(x > 0) || !(y > 0))
            continue;
        all[na++] = x / y;
        if (rec_clean(a) && rec_clean(b) && rec_class(a) == rec_class(b))
            quiet[nq++] = x / y;
    }
    double *v = nq >= 3 ? quiet : all;
    int n = nq >= 3 ? nq : na;
    *n_out = n;
    if (!n) {
        *lo = *hi = NAN;
        return NAN;
    }
    double m = median_of(v, n);
    *lo = v[0];
    *hi = v[n - 1];
    return m;
}

static int find_case(const char *id)
{
    for (size_t i = 0; i < NCASES; i++)
        if (strcmp(cases[i].id, id) == 0)
            return (int)i;
    return -1;
}

static int find_entry(int ci, const char *label)
{
    if (ci < 0)
        return -1;
    for (int i = 0; i < nentries(&cases[ci]); i++)
        if (strcmp(cases[ci].e[i].label, label) == 0)
            return i;
    return -1;
}

static FILE *out_open(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", opt.out, name);
    FILE *f = fopen(path, "w");
    if (!f)
        bench_die("cannot write %s: %s", path, strerror(errno));
    return f;
}

static void write_tsv(void)
{
    FILE *f = out_open("results.tsv");
    fprintf(f, "rep\tcase\ttransport\tok\tp50_ns\tp99_ns\tp999_ns\tmean_ns\trate_per_s\tvalue_ns\t"
               "vcsw_per_msg\tprobe_ns\tstate\tprobe_pre_ns\tprobe_post_ns\tquiet\tbusy_pct\t"
               "foreign_pct\tsteal_pct\tdisturbed\tnote\terror\n");
    for (size_t i = 0; i < nrecs; i++) {
        const struct rec *r = &recs[i];
        fprintf(f,
                "%d\t%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.4f\t%.0f\t%s\t%.0f\t%.0f\t"
                "%d\t%.1f\t%.1f\t%.1f\t%d\t%s\t%s\n",
                r->rep, cases[r->ci].id, cases[r->ci].e[r->ei].label, r->ok, r->p50, r->p99,
                r->p999, r->mean, r->rate, r->value, r->vcsw_per_msg, r->probe,
                state_name(r->probe), r->probe_pre, r->probe_post, r->quiet, r->busy_pct,
                r->foreign_pct, r->steal_pct, r->disturbed, r->note, r->err);
    }
    fclose(f);
}

/* gnuplot data: one line per transport, figures for several cases. */
static void write_dat_group(const char *file, const char *const *case_ids, int ncase,
                            const char *const *labels, int nlabels, double scale)
{
    FILE *f = out_open(file);
    fprintf(f, "# transport");
    for (int k = 0; k < ncase; k++)
        fprintf(f, "\t%s lo hi", case_ids[k]);
    fprintf(f, "\n");
    for (int l = 0; l < nlabels; l++) {
        fprintf(f, "\"%s\"", labels[l]);
        for (int k = 0; k < ncase; k++) {
            int ci = find_case(case_ids[k]), ei = find_entry(ci, labels[l]);
            struct agg a = {0};
            a.main = a.lo = a.hi = NAN;
            if (ei >= 0)
                a = aggregate(ci, ei);
            if (isnan(a.main))
                fprintf(f, "\t-\t-\t-");
            else
                fprintf(f, "\t%g\t%g\t%g", a.main * scale, a.lo * scale, a.hi * scale);
        }
        fprintf(f, "\n");
    }
    fclose(f);
}

static void write_cdf(const char *file, const char *case_id)
{
    int ci = find_case(case_id);
    if (ci < 0)
        return;
    FILE *f = out_open(file);
    for (int ei = 0; ei < nentries(&cases[ci]); ei++) {
        /* the round whose p50 is the median one */
        const struct rec *use[MAX_REPS * 2];
        bool flagged;
        int n = pick(ci, ei, use, &flagged);
        if (!n)
            continue;
        double v[MAX_REPS * 2];
        for (int i = 0; i < n; i++)
            v[i] = use[i]->p50;
        double m = median_of(v, n);
        const struct rec *best = use[0];
        for (int i = 0; i < n; i++)
            if (fabs(use[i]->p50 - m) < fabs(best->p50 - m))
                best = use[i];
        fprintf(f, "\"%s\"\t\"latency_us\"\n", cases[ci].e[ei].label);
        for (int k = 0; k < CDF_N; k++) {
            double q = k == CDF_N - 1 ? 99.9 : (double)k;
            fprintf(f, "%g\t%g\n", q, best->cdf[k] / 1000.0);
        }
        fprintf(f, "\n\n");
    }
    fclose(f);
}

static void write_plot_data(void)
{
    const char *rtt_cases[] = {"rtt64", "rtt4m", "rtt4m_touch"};
    const char *rtt_labels[] = {"ring", "floor", "mbq-bq", "mbq", "iceoryx", "mq", "uds"};
    write_dat_group("rtt.dat", rtt_cases, 3, rtt_labels, 7, 1e-3);
    const char *blk_cases[] = {"block_same", "block_cross", "wake"};
    const char *blk_labels[] = {"ring+futex", "ring+eventfd", "eventfd",     "futex",
                                "floor",      "mbq-bq",       "mbq",         "mbq-trigger",
                                "iceoryx",    "mq",           "uds"};
    write_dat_group("block.dat", blk_cases, 3, blk_labels, 11, 1e-3);
    const char *st_cases[] = {"stream64", "fanout"};
    const char *st_labels[] = {"ring", "floor", "floor b16", "mbq-bq", "mbq", "iceoryx", "mq",
                               "uds", "mbq b16"};
    write_dat_group("stream.dat", st_cases, 2, st_labels, 9, 1e-6);
    const char *so_cases[] = {"sorted"};
    const char *so_labels[] = {"mbq fifo",         "mbq pts",           "mbq pts reordered",
                               "mbq pts late16",   "mbq pts random",    "mbq-bq fifo",
                               "mbq-bq pts reordered", "mbq-bq pts late16", "mbq-bq pts random"};
    write_dat_group("sorted.dat", so_cases, 1, so_labels, 9, 1e-6);
    const char *po_cases[] = {"pool"};
    const char *po_labels[] = {"mbq", "malloc", "mmap", "mbq+touch", "malloc+touch",
                               "mmap+touch"};
    write_dat_group("pool.dat", po_cases, 1, po_labels, 6, 1e-3);
    write_cdf("cdf_rtt64.dat", "rtt64");
    write_cdf("cdf_wake.dat", "wake");
}

/* ---- the report ---- */

static char machine_cpu[128], machine_kernel[600], clocksource[64], cpuidle[64];

static void read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    buf[0] = 0;
    if (!f)
        return;
    if (fgets(buf, (int)len, f))
        buf[strcspn(buf, "\n")] = 0;
    fclose(f);
}

static void machine_info(void)
{
    FILE *f = fopen("/proc/cpuinfo", "re");
    char line[256];
    snprintf(machine_cpu, sizeof(machine_cpu), "unknown CPU");
    if (f) {
        while (fgets(line, sizeof(line), f)) {
            char *p = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && p) {
                p[strcspn(p, "\n")] = 0;
                snprintf(machine_cpu, sizeof(machine_cpu), "%s", p + 2);
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(machine_kernel, sizeof(machine_kernel), "%s %s %s", u.sysname, u.release,
                 u.machine);
    read_line("/sys/devices/system/clocksource/clocksource0/current_clocksource", clocksource,
              sizeof(clocksource));
    read_line("/sys/devices/system/cpu/cpuidle/current_driver", cpuidle, sizeof(cpuidle));
}

static void md_case_table(FILE *f, int ci)
{
    const struct bcase *c = &cases[ci];
    int n = nentries(c);
    fprintf(f, "### %s — `%s`\n\n%s", c->title, c->id, c->measures);
    if (placement_matters(c)) {
        int st = case_state(ci);
        static const char *const names[3] = {"near", "mid", "far"};
        if (st >= 0)
            fprintf(f, " Figures from the runs in the **%s** placement state (cache-line round "
                       "trip %s; figures over 20 µs, which do not depend on it, from every "
                       "clean run); ratios from rounds where both ran in the same state.",
                    names[st], st == 0 ? "< 100 ns" : st == 1 ? "100–300 ns" : "> 300 ns");
        else
            fprintf(f, " The placement changed too often for a single state; figures mix "
                       "states (†).");
    }
    fprintf(f, "\n\n");
    if (c->rate)
        fprintf(f, "| transport | rate (median) | min – max | cost × %s | ratio min – max (rounds) | runs "
                   "| notes |\n|---|---:|---:|---:|---:|---:|---|\n",
                c->base);
    else if (c->kind == K_RECLAIM)
        fprintf(f, "| transport | reclaim (median) | min – max | the dead process's exit "
                   "(pidfd readable; median) | × %s | runs | notes |\n"
                   "|---|---:|---:|---:|---:|---:|---|\n",
                c->base);
    else
        fprintf(f, "| transport | p50 (median) | p99 (median) | p50 min – max | × %s (p50) | "
                   "ratio min – max (rounds) | runs | notes |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
                c->base);
    for (int ei = 0; ei < n; ei++) {
        struct agg a = aggregate(ci, ei);
        char m[32], p[32], lo[32], hi[32], note[240] = "";
        /* notes and errors of this entry, once each */
        for (size_t i = 0; i < nrecs; i++) {
            const struct rec *r = &recs[i];
            if (r->ci != ci || r->ei != ei)
                continue;
            const char *t = r->ok ? r->note : r->err;
            if (t[0] && !strstr(note, t) && strlen(note) + strlen(t) + 4 < sizeof(note)) {
                if (note[0])
                    strcat(note, "; ");
                strcat(note, t);
            }
        }
        if (a.n == 0) {
            fprintf(f, "| %s | – | | | | | 0 | %s |\n", c->e[ei].label,
                    note[0] ? note : "not measured");
            continue;
        }
        const char *flag = a.flagged ? " †" : "";
        if (c->rate) {
            fmt_rate(m, sizeof(m), a.main);
            fmt_rate(lo, sizeof(lo), a.lo);
            fmt_rate(hi, sizeof(hi), a.hi);
            fprintf(f, "| %s | %s%s | %s – %s | %.2f× | %.2f – %.2f (%d) | %d | %s |\n",
                    c->e[ei].label, m, flag, lo, hi, a.ratio, a.rlo, a.rhi, a.nratio, a.n,
                    note);
        } else if (c->kind == K_RECLAIM) {
            fmt_ns(m, sizeof(m), a.main);
            fmt_ns(lo, sizeof(lo), a.lo);
            fmt_ns(hi, sizeof(hi), a.hi);
            fmt_ns(p, sizeof(p), a.p99);
            fprintf(f, "| %s | %s%s | %s – %s | %s | %.3g× | %d | %s |\n", c->e[ei].label, m,
                    flag, lo, hi, p, a.ratio, a.n, note);
        } else {
            fmt_ns(m, sizeof(m), a.main);
            fmt_ns(p, sizeof(p), a.p99);
            fmt_ns(lo, sizeof(lo), a.lo);
            fmt_ns(hi, sizeof(hi), a.hi);
            fprintf(f, "| %s | %s%s | %s | %s – %s | %.2f× | %.2f – %.2f (%d) | %d | %s |\n",
                    c->e[ei].label, m, flag, p, lo, hi, a.ratio, a.rlo, a.rhi, a.nratio, a.n,
                    note);
        }
    }
    fprintf(f, "\n");
}

struct target {
    const char *what;
    const char *ca, *ea, *cb, *eb; /* ratio = figure(ca,ea) / figure(cb,eb) */
    bool rate;
    const char *op; /* "<=" or ">=" */
    double limit;
    const char *how;
};

static const struct target targets[] = {
    {"buffer-queue round trip ≤ 2× the raw ring", "rtt64", "mbq", "rtt64", "ring", false, "<=",
     2, "p50 mbq ÷ p50 ring, rtt64"},
    {"buffer-queue round trip ≥ 4× faster than iceoryx", "rtt64", "iceoryx", "rtt64", "mbq",
     false, ">=", 4, "p50 iceoryx ÷ p50 mbq, rtt64"},
    {"streaming ≥ 0.5× the raw ring", "stream64", "mbq", "stream64", "ring", true, ">=", 0.5,
     "rate mbq ÷ rate ring, stream64"},
    {"streaming ≥ 10× iceoryx", "stream64", "mbq", "stream64", "iceoryx", true, ">=", 10,
     "rate mbq ÷ rate iceoryx, stream64"},
    {"64 B streaming from 64 B blocks ≥ 1.5× from page blocks", "stream64", "mbq 64 B blocks",
     "stream64", "mbq", true, ">=", 1.5, "rate mbq 64 B blocks ÷ rate mbq, stream64"},
    {"blocking round trip ≤ 1.2× raw spin-then-futex", "block_cross", "mbq", "block_cross",
     "ring+futex", false, "<=", 1.2, "p50 mbq ÷ p50 ring+futex, block_cross"},
    {"wake after a real sleep ≤ 1.2× raw eventfd", "wake", "mbq", "wake", "eventfd", false, "<=",
     1.2, "p50 mbq dequeue_wait ÷ p50 eventfd, wake"},
    {"4 MiB hand-off ≈ 64 B hand-off (≤ 1.25×)", "rtt4m", "mbq", "rtt4m", "mbq 64 B", false,
     "<=", 1.25, "p50 mbq ÷ p50 mbq 64 B, rtt4m (the same round, depth and pool)"},
    {"public path round trip ≤ 1.3× the zero-copy floor", "rtt64", "mbq", "rtt64", "floor",
     false, "<=", 1.3, "p50 mbq ÷ p50 floor, rtt64"},
    {"public path round trip ≥ 5× faster than iceoryx", "rtt64", "iceoryx", "rtt64", "mbq", false,
     ">=", 5, "p50 iceoryx ÷ p50 mbq, rtt64"},
    {"public path streaming ≥ 0.7× the zero-copy floor", "stream64", "mbq", "stream64", "floor",
     true, ">=", 0.7, "rate mbq ÷ rate floor, stream64"},
    {"batched calls streaming ≥ 0.7× the floor's batch-of-16 form", "stream64", "mbq b16",
     "stream64", "floor b16", true, ">=", 0.7, "rate mbq b16 ÷ rate floor b16, stream64"},
    {"(internal queue) round trip ≤ 2× the raw ring", "rtt64", "mbq-bq", "rtt64", "ring", false,
     "<=", 2, "p50 mbq-bq ÷ p50 ring, rtt64 (shm/ API, no pool)"},
    {"(internal queue) streaming ≥ 0.5× the raw ring", "stream64", "mbq-bq", "stream64", "ring",
     true, ">=", 0.5, "rate mbq-bq ÷ rate ring, stream64 (shm/ API, no pool)"},
};

static void md_targets(FILE *f)
{
    fprintf(f, "| target | measured (median of per-round ratios) | min – max | rounds | met? | "
               "how |\n|---|---:|---:|---:|---|---|\n");
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        const struct target *t = &targets[i];
        int ca = find_case(t->ca), cb = find_case(t->cb);
        int ea = find_entry(ca, t->ea), eb = find_entry(cb, t->eb);
        double lo = NAN, hi = NAN, r = NAN;
        int n = 0;
        if (ea >= 0 && eb >= 0)
            r = cross_ratio(ca, ea, cb, eb, t->rate, &lo, &hi, &n);
        const char *met = isnan(r) ? "not measured"
                          : (strcmp(t->op, "<=") == 0 ? r <= t->limit : r >= t->limit)
                              ? "**met**"
                              : "**not met**";
        fprintf(f, "| %s | %.2f× | %.2f – %.2f | %d | %s | %s |\n", t->what, r, lo, hi, n, met,
                t->how);
    }
    /* reclaim: an absolute target */
    int ci = find_case("reclaim"), ei = find_entry(ci, "mbq");
    if (ci >= 0 && ei >= 0) {
        struct agg a = aggregate(ci, ei);
        char m[32], lo[32], hi[32];
        fmt_ns(m, sizeof(m), a.main);
        fmt_ns(lo, sizeof(lo), a.lo);
        fmt_ns(hi, sizeof(hi), a.hi);
        fprintf(f, "| reclaim ≤ 10 ms | %s | %s – %s | %d | %s | SIGKILL → next allocate, mbq "
                   "|\n",
                m, lo, hi, a.n,
                isnan(a.main) ? "not measured" : a.hi <= 1e7 ? "**met**" : "**not met**");
    }
    fprintf(f, "\n");
}

/* mbq against the zero-copy floor and the raw ring, in every case that has
 * all three (or the floor and the case's own base): per-round cost ratios. */
static void md_floor(FILE *f)
{
    fprintf(f, "| case | mbq × floor | min – max (rounds) | mbq × %s | min – max (rounds) | floor "
               "× the same | floor b16 × the same |\n|---|---:|---:|---:|---:|---:|---:|\n",
            "ring");
    for (size_t ci = 0; ci < NCASES; ci++) {
        const struct bcase *c = &cases[ci];
        int em = find_entry((int)ci, "mbq"), ef = find_entry((int)ci, "floor");
        int eb = find_entry((int)ci, "ring"), e16 = find_entry((int)ci, "floor b16");
        const char *base = "ring";
        if (eb < 0) {
            eb = base_index(c);
            base = c->base;
        }
        if (em < 0 || ef < 0 || !case_selected(c))
            continue;
        double lo, hi, lo2 = NAN, hi2 = NAN, r2 = NAN, r3 = NAN, r4 = NAN, x, y;
        int n, n2 = 0, n3, n4;
        /* cost ratios: time ÷ time, or for rates the other's rate ÷ mbq's */
        double r = c->rate ? 1 / cross_ratio((int)ci, em, (int)ci, ef, true, &y, &x, &n)
                           : cross_ratio((int)ci, em, (int)ci, ef, false, &x, &y, &n);
        if (c->rate) {
            lo = 1 / x;
            hi = 1 / y;
        } else {
            lo = x;
            hi = y;
        }
        if (eb >= 0) {
            r2 = c->rate ? 1 / cross_ratio((int)ci, em, (int)ci, eb, true, &y, &x, &n2)
                         : cross_ratio((int)ci, em, (int)ci, eb, false, &x, &y, &n2);
            lo2 = c->rate ? 1 / x : x;
            hi2 = c->rate ? 1 / y : y;
            r3 = c->rate ? 1 / cross_ratio((int)ci, ef, (int)ci, eb, true, &y, &x, &n3)
                         : cross_ratio((int)ci, ef, (int)ci, eb, false, &x, &y, &n3);
            if (e16 >= 0)
                r4 = 1 / cross_ratio((int)ci, e16, (int)ci, eb, true, &y, &x, &n4);
        }
        fprintf(f, "| %s (%s) | %.2f× | %.2f – %.2f (%d) | %.2f× | %.2f – %.2f (%d) | %.2f× | ",
                c->id, base, r, lo, hi, n, r2, lo2, hi2, n2, r3);
        if (isnan(r4))
            fprintf(f, "– |\n");
        else
            fprintf(f, "%.2f× |\n", r4);
    }
    fprintf(f, "\nCost ratios (1.00× is as fast; for rates, the other's rate ÷ this one's), the "
               "median of per-round ratios. Where a case has no raw ring, the ratio is to its "
               "base (in brackets).\n\n");
}

static void md_limits(FILE *f)
{
    double v[MAX_REPS * 64];
    int n = 0, st[3] = {0, 0, 0};
    int rounds = 0;
    /* one probe per round: the first record of each round carries it */
    for (size_t i = 0; i < nrecs; i++) {
        if (i > 0 && recs[i].rep == recs[i - 1].rep && recs[i].ci == recs[i - 1].ci)
            continue;
        rounds++;
        if (!isnan(recs[i].probe) && n < (int)(sizeof(v) / sizeof(v[0]))) {
            v[n++] = recs[i].probe;
            st[recs[i].probe < 100 ? 0 : recs[i].probe < 300 ? 1 : 2]++;
        }
    }
    double probe = median_of(v, n);
    fprintf(f, "| limit | this run | reference (ipc-limits-measured.md) |\n|---|---:|---:|\n");
    fprintf(f, "| cache-line round trip between the two vCPUs (probe p50, median of %d rounds) "
               "| %.0f ns (near %d, mid %d, far %d rounds) | 140 ns (mid state, 78%% of probes) "
               "|\n",
            n, probe, st[0], st[1], st[2]);
    int ci = find_case("wake");
    struct agg a = {0};
    char s1[32], s2[32];
    if (ci >= 0 && find_entry(ci, "eventfd") >= 0) {
        a = aggregate(ci, find_entry(ci, "eventfd"));
        fmt_ns(s1, sizeof(s1), a.main);
        fmt_ns(s2, sizeof(s2), a.main - probe / 2);
        fprintf(f, "| kernel wake-up across vCPUs (eventfd write → sleeping reader running) | "
                   "%s (≈ %s one way, less half a cache-line round trip) | ~25 µs each way "
                   "(50–60 µs round trip) |\n",
                s1, s2);
    }
    ci = find_case("block_cross");
    if (ci >= 0 && find_entry(ci, "ring+eventfd") >= 0) {
        a = aggregate(ci, find_entry(ci, "ring+eventfd"));
        fmt_ns(s1, sizeof(s1), a.main);
        fprintf(f, "| blocking round trip, two wake-ups (ring+eventfd, block_cross) | %s | 54–56 "
                   "µs |\n",
                s1);
    }
    ci = find_case("pool");
    if (ci >= 0) {
        struct agg t = aggregate(ci, find_entry(ci, "mmap+touch"));
        struct agg u = aggregate(ci, find_entry(ci, "mbq+touch"));
        fmt_ns(s1, sizeof(s1), t.main);
        fmt_ns(s2, sizeof(s2), t.main / 1024);
        fprintf(f, "| first-touch page faults, 4 MiB fresh anonymous mapping (mmap+touch+munmap) "
                   "| %s (%s per 4 KiB page) | 2.6 ms (2.6 µs per page) |\n",
                s1, s2);
        fmt_ns(s1, sizeof(s1), u.main);
        fprintf(f, "| re-touch of 4 MiB already faulted (mbq+touch: allocate, touch, release) | %s "
                   "| 4 µs |\n",
                s1);
    }
    fprintf(f, "\n");
}

static void md_footprint(FILE *f)
{
    fprintf(f, "| process | RSS | PSS | private | threads | added by connecting (PSS) | shared "
               "memory set aside | notes |\n|---|---:|---:|---:|---:|---:|---:|---|\n");
    for (int i = 0; i < nfeet; i++) {
        const struct footprint *p = &feet[i];
        char d[32] = "–", s[32] = "–";
        if (p->delta_pss_kb >= 0)
            snprintf(d, sizeof(d), "%ld KiB", p->delta_pss_kb);
        if (p->shm_kb >= 0)
            snprintf(s, sizeof(s), "%ld KiB", p->shm_kb);
        fprintf(f, "| %s | %ld KiB | %ld KiB | %ld KiB | %ld | %s | %s | %s |\n", p->what,
                p->m.rss_kb, p->m.pss_kb, p->m.private_kb, p->m.threads, d, s, p->note);
    }
    fprintf(f, "\n");
}

static void write_summary(int argc, char **argv, double total_s)
{
    FILE *f = out_open("summary.md");
    int quiet = 0, rounds = 0, disturbed = 0;
    for (size_t i = 0; i < nrecs; i++) {
        if (i > 0 && recs[i].rep == recs[i - 1].rep && recs[i].ci == recs[i - 1].ci)
            continue;
        rounds++;
        quiet += recs[i].quiet;
        disturbed += recs[i].disturbed;
    }
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M %Z", localtime(&now));
    fprintf(f, "# bench_transports — results\n\n");
    fprintf(f, "Generated %s by `", when);
    for (int i = 0; i < argc; i++)
        fprintf(f, "%s%s", i ? " " : "", argv[i]);
    fprintf(f, "` in %.0f s.\n\n", total_s);
    fprintf(f, "Machine: %s, %ld CPUs online, %s; clocksource %s; cpuidle %s. Timer: %s "
               "(%.4f ns/tick). Parent/producer on CPU %d, peers on CPU %d (same-core cases: "
               "both on CPU %d).\n\n",
            machine_cpu, sysconf(_SC_NPROCESSORS_ONLN), machine_kernel, clocksource,
            cpuidle[0] ? cpuidle : "none", bench_use_tsc() ? "lfence;rdtsc" : "CLOCK_MONOTONIC",
            bench_ns_per_tick(), BENCH_PARENT_CPU, BENCH_CHILD_CPU, BENCH_PARENT_CPU);
    const char *rev = getenv("MBQ_BENCH_REVISION");
    if (rev && *rev)
        fprintf(f, "Source revision: `%s`.\n\n", rev);
    int clean = 0, mid = 0, meas = 0;
    for (size_t i = 0; i < nrecs; i++) {
        if (!recs[i].ok)
            continue;
        meas++;
        clean += rec_clean(&recs[i]);
        mid += rec_clean(&recs[i]) && rec_class(&recs[i]) == 1;
    }
    fprintf(f,
            "%d repetitions; %d rounds, %d started on a quiet machine (CPU busy < %.0f%% in two "
            "0.5 s windows; %.0f s spent waiting for quiet), %d marked disturbed (not quiet at "
            "the start, or foreign work > %.0f%% of one CPU during the round; host steal is "
            "recorded apart, since waking a halted vCPU shows up as steal). %d measurements, %d "
            "clean (a quiet round and, for the busy-poll cases across cores, the same "
            "placement state before and after), %d of them in the usual \"mid\" state or not "
            "placement-sensitive (%.0f s spent waiting for the usual placement). A busy-poll "
            "case is reported in one placement state, the one every transport has the most "
            "clean runs in; a figure is the median over its clean runs (in that state); † "
            "marks a figure that had to include disturbed runs or mix states. iceoryx: "
            "%s.\n\n",
            opt.reps, rounds, quiet, opt.quiet_pct, gate_spent_s, disturbed, opt.foreign_pct,
            meas, clean, mid, placement_spent_s,
            iox_ok ? "iox-roudi 2.0.3 started by the harness with tests/bench/roudi.toml"
                   : iox_why);
    fprintf(f, "## Targets\n\nRatios from the same rounds (each round measures every transport "
               "of a case back to back); a round's ratio counts when both measurements are clean "
               "and in the same placement state, if three rounds qualify, else every round's "
               "does.\n\n");
    md_targets(f);
    fprintf(f, "## mbq against the zero-copy floor, every case\n\n");
    md_floor(f);
    fprintf(f, "## The machine's own limits, from this run\n\n");
    md_limits(f);
    fprintf(f, "## Cases\n\nLatencies are per-run nearest-rank percentiles (timer pair "
               "included); the table gives the median over the runs of each run's p50 and p99, "
               "and the spread (min – max) of the runs' p50. Rates are messages per second. "
               "\"× base\" is a cost ratio taken per round (time ÷ the base's time; for rates, "
               "the base's rate ÷ the transport's): 1.00× is the base's speed, 2.00× twice as "
               "slow.\n\n");
    for (size_t ci = 0; ci < NCASES; ci++)
        if (case_selected(&cases[ci]))
            md_case_table(f, (int)ci);
    fprintf(f, "### Memory footprint\n\nRead from /proc/PID/smaps_rollup right after the "
               "daemons started (no objects yet), and for a fresh process before and after it "
               "connects.\n\n");
    md_footprint(f);
    fclose(f);
}

/* ---- solo: one process plays producer and consumer, for profilers ----
 * Each message is loaned, written, sent, received, read and released by the
 * same thread, so a profile shows the per-message instructions without any
 * cross-core traffic or polling (callgrind counts them; the time per
 * message, next to the cross-core figure, tells what the traffic costs). */

static const struct tx_ops *solo_transport(const char *name, int *variant)
{
    *variant = 0;
    if (strcmp(name, "ring") == 0)
        return &tx_ring;
    if (strcmp(name, "mbq-bq") == 0)
        return &tx_bq;
    if (strcmp(name, "floor") == 0)
        return &tx_floor;
    if (strcmp(name, "floor-b16") == 0) { /* its batch form; give BATCH a multiple of 16 */
        *variant = TXV_FLOOR_BATCH16;
        return &tx_floor;
    }
    if (strcmp(name, "mbq") == 0)
        return &tx_mbq;
    if (strcmp(name, "mbq-trigger") == 0) {
        *variant = TXV_MBQ_TRIGGER;
        return &tx_mbq;
    }
    if (strcmp(name, "mbq-trigger-idle") == 0) {
        *variant = TXV_MBQ_TRIGGER_IDLE;
        return &tx_mbq;
    }
    if (strcmp(name, "mbq-small") == 0) {
        *variant = TXV_MBQ_SMALL;
        return &tx_mbq;
    }
    if (strcmp(name, "mbq-b16") == 0) { /* the batched calls; give BATCH a multiple of 16 */
        *variant = TXV_MBQ_BATCH16;
        return &tx_mbq;
    }
    if (strcmp(name, "mbq-classes") == 0) {
        *variant = TXV_MBQ_CLASSES;
        return &tx_mbq;
    }
    /* the sorted case's input mixes, through the library or the queue alone */
    static const struct {
        const char *name;
        int variant;
    } mixes[] = {{"pts", TXV_MBQ_PTS},
                 {"pts-reordered", TXV_MBQ_PTS_REORDER},
                 {"pts-late16", TXV_MBQ_PTS_LATE16},
                 {"pts-random", TXV_MBQ_PTS_RANDOM}};
    for (size_t k = 0; k < sizeof(mixes) / sizeof(mixes[0]); k++) {
        if (strncmp(name, "mbq-bq-", 7) == 0 && strcmp(name + 7, mixes[k].name) == 0) {
            *variant = mixes[k].variant;
            return &tx_bq;
        }
        if (strncmp(name, "mbq-", 4) == 0 && strcmp(name + 4, mixes[k].name) == 0) {
            *variant = mixes[k].variant;
            return &tx_mbq;
        }
    }
    return NULL;
}

/* batch: messages sent before they are received (1..256): with 256 the
 * queue runs full and the pool's blocks cycle as in a stream, so the
 * footprint of the blocks (page or packed) shows without a second CPU. */
static int run_solo(const char *name, long n, long batch)
{
    int variant;
    const struct tx_ops *t = solo_transport(name, &variant);
    if (!t || n < 1 || batch < 1 || batch > 256) {
        fprintf(stderr, "bench_transports: --solo ring|floor|floor-b16|mbq-bq|mbq|mbq-trigger|"
                        "mbq-trigger-idle|mbq-small|mbq-b16|mbq-classes|{mbq,mbq-bq}-pts[-reordered|"
                        "-late16|-random] N [BATCH]\n");
        return 2;
    }
    if (t == &tx_mbq && !mbqd_start())
        bench_die("mbqd (%s) did not start", opt.mbqd);
    struct job *j = job_new();
    struct tx_spec *s = &j->spec[0];
    snprintf(s->name, sizeof(s->name), "solo");
    s->fan = 1;
    s->depth = batch > 64 ? 256 : 64;
    s->payload = 64;
    s->wait = TX_POLL;
    s->variant = variant;
    void *tx = NULL, *rx = NULL;
    int r = t->prepare(s);
    if (r == 0)
        r = t->proc_init(s);
    if (r == 0)
        r = t->open_tx(s, &tx);
    if (r == 0)
        r = t->open_rx(s, 0, &rx);
    if (r == 0 && t->connected)
        t->connected(tx);
    if (r < 0)
        bench_die("%s: %s", name, mbq_status_string(r));
    bench_pin(BENCH_PARENT_CPU);
    struct timespec c0, c1;
    bool sorted = txv_sorted(variant);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    uint64_t t0 = bench_mono_ns();
    for (long i = 0; i < n && !job_failed(j); i += batch) {
        long k = n - i < batch ? n - i : batch, sent = 0;
        for (; sent < k; sent++) {
            void *p = loan_msg(j, t, tx);
            if (!p)
                break;
            payload_write(p, 64, (uint64_t)(i + sent), false);
            if (!send_msg(j, t, tx, p, (uint64_t)(i + sent)))
                break;
        }
        for (long m = 0; m < sent; m++) {
            const void *q = recv_msg(j, t, rx, false);
            /* a sorted queue hands a batch out in key order */
            uint64_t seq = q && sorted ? *(const volatile uint64_t *)q
                                                    : (uint64_t)(i + m);
            if (!q || seq - (uint64_t)i >= (uint64_t)sent || !payload_read(q, 64, seq, false)) {
                job_fail(j, "message %ld lost", i + m);
                break;
            }
            t->done(rx, q);
        }
        if (sent < k)
            break;
    }
    double ns = (double)(bench_mono_ns() - t0) / (double)n;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    /* CPU time: what a loaded machine's preemptions leave out of the figure. */
    double cpu = ((double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec)) /
                 (double)n;
    t->close_tx(tx);
    t->close_rx(rx);
    t->unprepare(s);
    stop_pid(&mbqd_pid, 5000);
    if (job_failed(j))
        bench_die("%s", j->err);
    printf("RESULT solo_%s_ns_per_msg=%.1f ns (one process: loan, write, send, receive, read, "
           "release; batch %ld)\n",
           name, ns, batch);
    printf("RESULT solo_%s_cpu_ns_per_msg=%.1f ns\n", name, cpu);
    return 0;
}

/* ---- main ---- */

static void usage(FILE *to)
{
    fprintf(to,
            "usage: bench_transports [options]\n"
            "  --out DIR            where summary.md, results.tsv and *.dat go (default "
            "./performance)\n"
            "  --mbqd PATH          the mbqd to start (default: mbqd from PATH)\n"
            "  --roudi PATH         the iox-roudi to start (default: iox-roudi)\n"
            "  --roudi-config FILE  its config (tests/bench/roudi.toml)\n"
            "  --reps N             repetitions (default 9)\n"
            "  --cases A,B          only these cases (ids:");
    for (size_t i = 0; i < NCASES; i++)
        fprintf(to, " %s", cases[i].id);
    fprintf(to, ")\n"
                "  --transports A,B     only these transports (labels as in the tables)\n"
                "  --quick              a tenth of the iterations (a smoke test)\n"
                "  --no-iceoryx         skip iceoryx\n"
                "  --quiet-pct P        machine busy below P%% counts as quiet (default 4)\n"
                "  --foreign-pct P      foreign work above P%% of a CPU disturbs (default 5)\n"
                "  --gate-max S         wait at most S s for quiet before a round (default 20)\n"
                "  --gate-budget S      and at most S s in all (default 240)\n"
                "  --placement-max S    before a busy-poll measurement across cores, wait at\n"
                "                       most S s for the usual (mid) placement (default 3)\n"
                "  --placement-budget S and at most S s in all (default 150)\n"
                "  --solo T [N [B]]     profiling aid: N messages through transport T (ring,\n"
                "                       floor, floor-b16, mbq-bq, mbq, mbq-trigger,\n"
                "                       mbq-trigger-idle, mbq-small, mbq-classes, mbq-b16: the\n"
                "                       batched calls (floor-b16 and mbq-b16: B a multiple of\n"
                "                       16); the sorted case's mbq-pts,\n"
                "                       mbq-pts-reordered, mbq-pts-late16, mbq-pts-random and their\n"
                "                       mbq-bq-pts... forms) in one process, no peers, B sent before B\n"
                "                       received (default 1)\n");
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"out", required_argument, NULL, 'o'},         {"mbqd", required_argument, NULL, 'm'},
        {"roudi", required_argument, NULL, 'r'},       {"roudi-config", required_argument, NULL, 'c'},
        {"reps", required_argument, NULL, 'n'},        {"cases", required_argument, NULL, 'C'},
        {"transports", required_argument, NULL, 'T'},
        {"quick", no_argument, NULL, 'q'},             {"no-iceoryx", no_argument, NULL, 'I'},
        {"quiet-pct", required_argument, NULL, 'Q'},   {"foreign-pct", required_argument, NULL, 'F'},
        {"gate-max", required_argument, NULL, 'G'},
        {"placement-max", required_argument, NULL, 'P'},
        {"placement-budget", required_argument, NULL, 'U'},    {"gate-budget", required_argument, NULL, 'B'},
        {"solo", required_argument, NULL, 'S'},        {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0}};
    int c;
    const char *solo = NULL;
    while ((c = getopt_long(argc, argv, "o:m:n:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': opt.out = optarg; break;
        case 'm': opt.mbqd = optarg; break;
        case 'r': opt.roudi = optarg; break;
        case 'c': opt.roudi_config = optarg; break;
        case 'n': opt.reps = atoi(optarg); break;
        case 'C': opt.only = optarg; break;
        case 'T': opt.only_tx = optarg; break;
        case 'q': opt.quick = true; break;
        case 'I': opt.no_iox = true; break;
        case 'Q': opt.quiet_pct = atof(optarg); break;
        case 'F': opt.foreign_pct = atof(optarg); break;
        case 'G': opt.gate_max_s = atof(optarg); break;
        case 'P': opt.placement_max_s = atof(optarg); break;
        case 'U': opt.placement_budget_s = atof(optarg); break;
        case 'B': opt.gate_budget_s = atof(optarg); break;
        case 'S': solo = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (opt.reps < 1 || opt.reps > MAX_REPS) {
        fprintf(stderr, "bench_transports: --reps must be 1..%d\n", MAX_REPS);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        bench_die("needs CPUs %d and %d", BENCH_PARENT_CPU, BENCH_CHILD_CPU);
    if (!solo)
        mkdir(opt.out, 0755);
    snprintf(run_dir, sizeof(run_dir), "/tmp/mbq-bench-XXXXXX");
    if (!mkdtemp(run_dir))
        bench_die("mkdtemp: %s", strerror(errno));
    machine_info();
    (void)bench_ns_per_tick(); /* calibrate once; every process inherits it */
    if (solo) {
        int rc = run_solo(solo, optind < argc ? atol(argv[optind]) : 1000000,
                          optind + 1 < argc ? atol(argv[optind + 1]) : 1);
        char p[1100];
        snprintf(p, sizeof(p), "%s/mbqd.log", run_dir);
        unlink(p);
        rmdir(run_dir);
        return rc;
    }
    uint64_t t0 = bench_mono_ns();

    printf("# bench_transports: %s, %s; %d repetitions%s\n", machine_cpu, machine_kernel,
           opt.reps, opt.quick ? " (quick)" : "");
    if (!mbqd_start())
        bench_die("mbqd (%s) did not start; see %s/mbqd.log", opt.mbqd, run_dir);
    roudi_start();
    printf("# mbqd pid %d on %s; iceoryx: %s\n", (int)mbqd_pid, mbq_socket_path,
           iox_ok ? "RouDi started" : iox_why);
    usleep(300000);
    measure_footprint();

    for (int rep = 1; rep <= opt.reps; rep++)
        for (size_t ci = 0; ci < NCASES; ci++)
            if (case_selected(&cases[ci]) && (!cases[ci].max_reps || rep <= cases[ci].max_reps))
                run_round(&cases[ci], rep);

    roudi_stop();
    stop_pid(&mbqd_pid, 5000);
    char p[1100];
    snprintf(p, sizeof(p), "%s/mbqd.log", run_dir);
    unlink(p);
    if (iox_ok) { /* else its log tells why */
        snprintf(p, sizeof(p), "%s/roudi.log", run_dir);
        unlink(p);
    }
    rmdir(run_dir);

    double total = (double)(bench_mono_ns() - t0) / 1e9;
    write_tsv();
    write_plot_data();
    write_summary(argc, argv, total);
    printf("# done in %.0f s; results in %s/summary.md\n", total, opt.out);
    int failed = 0;
    for (size_t i = 0; i < nrecs; i++)
        failed += !recs[i].ok && strncmp(recs[i].err, "skipped", 7) != 0;
    if (failed)
        printf("# %d measurements failed (see results.tsv)\n", failed);
    return failed ? 1 : 0;
}
