/* Scale benchmark: how mbq's costs grow with the number of queues, objects
 * and clients, and what a client's first touch of a pool costs.
 *
 * The program starts the freshly built mbqd on a private socket and runs
 * the curves asked for (all by default); each point is measured --reps
 * times (default 3) and reported as the median with min and max:
 *  - faults: a process opens a pool of 64 blocks of 256 KiB that mbqd
 *    faulted in at creation, allocates and writes one byte per page of every
 *    block, frees them, and does it again; then it pauses past the pool's
 *    age-out period (0.3 s here), whose punch returns the pages, and does it
 *    once more. Minor faults (getrusage) and time of each pass: what a
 *    client pays on first use and on resuming after a pause;
 *  - fanout: one producer (CPU 0) enqueues each buffer into 1, 2, 4 or 8
 *    buffer queues (enqueue into all but the last, enqueue_and_release into
 *    the last); one consumer (CPU 1) drains them in turn. Messages per
 *    second and the producer's time per message, less its failed attempts
 *    on a full queue or an empty pool: the cost of a queue more;
 *  - epoll: 1, 10, 100 or 1000 buffer queues, each with a "count > 0"
 *    trigger, all added to one mbq_dispatcher in the consumer (CPU 1); the
 *    producer (CPU 0) keeps busy 200 µs (the consumer is asleep in
 *    epoll_wait by then), enqueues into the next queue in turn and waits
 *    until the consumer's callback has dequeued and released it. Wake
 *    latency (enqueue to callback done) and the consumer's CPU time per
 *    message;
 *  - objects: 10, 100, 1000, 10000 buffer queues in one mbqd (created in
 *    steps): time per create, time per open+close by name from a second
 *    client, mbq_list of everything, `mbqctl list` as a command, and mbqd's
 *    memory (VmRSS; RssAnon is its own heap) per object;
 *  - clients: 1, 4, 16, 64, 256 connected client processes, each with the
 *    same queue open: a control round trip from another client (mbq_stat of
 *    a pool only it has open, and of the queue they all have open, whose
 *    answer lists them), the connection time per client, and reclaim (a client holding 8 buffers of a pool is killed with
 *    SIGKILL; timed until mbq_stat shows the blocks free).
 * Output: a line per point, RESULT lines, and scale_<curve>.dat in --out
 * for tests/bench/bench_scale.gp.
 *
 * Usage: bench_scale [--mbqd PATH] [--mbqctl PATH] [--out DIR] [--reps N]
 *                    [faults] [fanout] [epoll] [objects] [clients] */
#include "bench_common.h"

#include "futex.h" /* cpu_relax */

#include <mbq/mbq.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#ifndef MBQD_PATH
#define MBQD_PATH "mbqd"
#endif
#ifndef MBQCTL_PATH
#define MBQCTL_PATH "mbqctl"
#endif

#define REPS_MAX 9

static char sock_path[256];
static pid_t daemon_pid;
static const char *opt_mbqd = MBQD_PATH, *opt_mbqctl = MBQCTL_PATH, *opt_out = ".";
static int opt_reps = 3;

#define CHECK_OK(expr)                                                                         \
    do {                                                                                       \
        int r_ = (expr);                                                                       \
        if (r_ != 0)                                                                           \
            bench_die("%s: %s", #expr, mbq_status_string(r_));                                 \
    } while (0)

/* ---- the daemon ---- */

static void daemon_stop(void)
{
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        waitpid(daemon_pid, NULL, 0);
        daemon_pid = 0;
    }
}

static void daemon_start(void)
{
    char dir[] = "/tmp/mbq-bench-scale.XXXXXX";
    if (!mkdtemp(dir))
        bench_die("mkdtemp: %s", strerror(errno));
    snprintf(sock_path, sizeof(sock_path), "%s/mbqd.sock", dir);
    daemon_pid = fork();
    if (daemon_pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (daemon_pid == 0) {
        /* 1000 triggers in one client (the epoll curve); 10000 objects are
         * below the default quotas for root, which has none */
        execl(opt_mbqd, opt_mbqd, "--socket", sock_path, "--log-level", "warning",
              "--max-triggers", "4096", "--fd-store-max", "0", (char *)NULL);
        fprintf(stderr, "bench: exec %s: %s\n", opt_mbqd, strerror(errno));
        _exit(127);
    }
    setenv("MBQ_SOCKET", sock_path, 1);
    for (int i = 0; i < 500; i++) {
        mbq_client *c;
        if (mbq_connect(sock_path, "bench-probe", &c) == 0) {
            mbq_disconnect(c);
            return;
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    bench_die("mbqd did not come up on %s", sock_path);
}

static mbq_client *connect_or_die(const char *name)
{
    mbq_client *c;
    int r = mbq_connect(sock_path, name, &c);
    if (r != 0)
        bench_die("mbq_connect: %s", mbq_status_string(r));
    return c;
}

/* A forked side: it dies with the measuring process (a busy-polling
 * consumer left behind would spin on its CPU for good). */
static pid_t fork_side(void)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
        _exit(1);
    return pid;
}

static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static double cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- results: a point is reps values of several figures ---- */

#define FIGS_MAX 8

struct point {
    double x;
    int n;
    double v[FIGS_MAX][REPS_MAX];
};

struct curve {
    const char *name;
    int nfigs;
    const char *fig[FIGS_MAX], *unit[FIGS_MAX];
    int npoints;
    struct point p[8];
};

static double med_of(const double *v, int n, double *lo, double *hi)
{
    double s[REPS_MAX];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), bench_cmp_double);
    *lo = s[0];
    *hi = s[n - 1];
    return bench_median(s, (size_t)n);
}

static void curve_write(struct curve *c)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/scale_%s.dat", opt_out, c->name);
    FILE *f = fopen(path, "w");
    if (!f)
        bench_die("%s: %s", path, strerror(errno));
    fprintf(f, "# x");
    for (int k = 0; k < c->nfigs; k++)
        fprintf(f, "\t%s(%s) lo hi", c->fig[k], c->unit[k]);
    fprintf(f, "\n");
    for (int i = 0; i < c->npoints; i++) {
        struct point *p = &c->p[i];
        fprintf(f, "%g", p->x);
        for (int k = 0; k < c->nfigs; k++) {
            double lo, hi, m = med_of(p->v[k], p->n, &lo, &hi);
            fprintf(f, "\t%.6g\t%.6g\t%.6g", m, lo, hi);
            char key[128];
            snprintf(key, sizeof(key), "%s_%g_%s", c->name, p->x, c->fig[k]);
            bench_result_range(key, m, lo, hi, p->n, c->unit[k]);
        }
        fprintf(f, "\n");
    }
    fclose(f);
}

/* ---- faults ---- */

#define FAULT_BLOCKS 64u
#define FAULT_BLOCK_SIZE (256u << 10)

/* One allocate-touch-release pass over every block: faults and µs. */
static void fault_pass(mbq_pool *p, long *faults, double *us)
{
    mbq_buffer b[FAULT_BLOCKS];
    long f0 = minflt();
    uint64_t t0 = bench_mono_ns();
    for (unsigned i = 0; i < FAULT_BLOCKS; i++) {
        CHECK_OK(mbq_pool_allocate(p, FAULT_BLOCK_SIZE, &b[i]));
        volatile uint8_t *d = mbq_buffer_get_data(b[i], NULL);
        for (size_t off = 0; off < FAULT_BLOCK_SIZE; off += 4096)
            d[off] = (uint8_t)i;
    }
    uint64_t t1 = bench_mono_ns();
    long f1 = minflt();
    for (unsigned i = 0; i < FAULT_BLOCKS; i++)
        CHECK_OK(mbq_buffer_release(b[i]));
    *faults = f1 - f0;
    *us = (double)(t1 - t0) / 1e3;
}

struct fault_res {
    double open_faults, open_us, first_faults, first_us, warm_faults, resume_faults, resume_us;
};

static void curve_faults(void)
{
    struct curve c = {.name = "faults", .nfigs = 7,
                      .fig = {"open_faults", "open_us", "first_faults", "first_us", "warm_faults",
                              "resume_faults", "resume_us"},
                      .unit = {"faults", "us", "faults", "us", "faults", "faults", "us"}};
    c.npoints = 1;
    c.p[0].x = FAULT_BLOCKS * (FAULT_BLOCK_SIZE / 4096);
    mbq_client *cl = connect_or_die("bench-faults");
    for (int rep = 0; rep < opt_reps; rep++) {
        mbq_pool *pool;
        CHECK_OK(mbq_pool_create(cl, "bench/faults",
                                 &(mbq_pool_options){.size = sizeof(mbq_pool_options),
                                                     .block_size = FAULT_BLOCK_SIZE,
                                                     .block_count = FAULT_BLOCKS,
                                                     .age_out_seconds = 0.3},
                                 &pool));
        struct fault_res *res = bench_shared_alloc(sizeof(*res));
        pid_t pid = fork_side();
        if (pid == 0) {
            bench_pin(BENCH_CHILD_CPU);
            mbq_client *cc = connect_or_die("bench-faults-user");
            mbq_pool *p;
            long f0 = minflt();
            uint64_t t0 = bench_mono_ns();
            CHECK_OK(mbq_pool_open(cc, "bench/faults", &p));
            res->open_us = (double)(bench_mono_ns() - t0) / 1e3;
            res->open_faults = (double)(minflt() - f0);
            long f;
            double us;
            fault_pass(p, &f, &res->first_us);
            res->first_faults = (double)f;
            fault_pass(p, &f, &us);
            res->warm_faults = (double)f;
            sleep_ns(1000000000u); /* age-out 0.3 s, checked on mbqd's 100 ms tick */
            fault_pass(p, &f, &res->resume_us);
            res->resume_faults = (double)f;
            mbq_pool_close(p);
            mbq_disconnect(cc);
            _exit(0);
        }
        if (pid < 0 || wait_child(pid) < 0)
            bench_die("faults: the user process failed");
        double *v[] = {&res->open_faults, &res->open_us, &res->first_faults, &res->first_us,
                       &res->warm_faults, &res->resume_faults, &res->resume_us};
        for (int k = 0; k < 7; k++)
            c.p[0].v[k][rep] = *v[k];
        c.p[0].n = rep + 1;
        printf("faults rep %d: open %.0f faults %.0f us; first pass %.0f faults %.0f us; warm "
               "%.0f faults; after the age-out %.0f faults %.0f us\n",
               rep, res->open_faults, res->open_us, res->first_faults, res->first_us,
               res->warm_faults, res->resume_faults, res->resume_us);
        bench_shared_free(res, sizeof(*res));
        mbq_pool_close(pool);
        mbq_unlink(cl, "bench/faults");
    }
    mbq_disconnect(cl);
    curve_write(&c);
}

/* ---- fanout ---- */

#define FAN_MAX 8
#define FAN_MSGS 300000u
#define FAN_DEPTH 256u

struct fan_sh {
    _Atomic int ready, go;
    _Atomic uint64_t t_start, t_end;
    double producer_ns;
};

static void fan_names(char *buf, size_t len, const char *what, int i)
{
    snprintf(buf, len, "bench/fan/%s%d", what, i);
}

static void fan_once(unsigned nq, double *rate, double *prod_ns)
{
    mbq_client *cl = connect_or_die("bench-fan");
    mbq_pool *pool;
    mbq_buffer_queue *qs[FAN_MAX];
    char name[64];
    CHECK_OK(mbq_pool_create(cl, "bench/fan/pool",
                             &(mbq_pool_options){.size = sizeof(mbq_pool_options),
                                                 .block_size = 4096,
                                                 .block_count = FAN_DEPTH + 32},
                             &pool));
    for (unsigned i = 0; i < nq; i++) {
        fan_names(name, sizeof(name), "q", (int)i);
        CHECK_OK(mbq_buffer_queue_create(
            cl, name,
            &(mbq_buffer_queue_options){.size = sizeof(mbq_buffer_queue_options),
                                        .capacity = FAN_DEPTH},
            &qs[i]));
    }
    struct fan_sh *sh = bench_shared_alloc(sizeof(*sh));
    pid_t pid = fork_side();
    if (pid == 0) {
        /* the consumer: drains every queue in turn */
        bench_pin(BENCH_CHILD_CPU);
        mbq_client *cc = connect_or_die("bench-fan-consumer");
        mbq_buffer_queue *q[FAN_MAX];
        for (unsigned i = 0; i < nq; i++) {
            fan_names(name, sizeof(name), "q", (int)i);
            CHECK_OK(mbq_buffer_queue_open(cc, name, &q[i]));
        }
        atomic_fetch_add(&sh->ready, 1);
        uint64_t want[FAN_MAX] = {0};
        uint64_t left = (uint64_t)FAN_MSGS * nq;
        while (left) {
            for (unsigned i = 0; i < nq; i++) {
                mbq_buffer b;
                int r = mbq_buffer_queue_dequeue_and_retain(q[i], &b);
                if (r == -EAGAIN)
                    continue;
                if (r != 0)
                    bench_die("fanout: dequeue: %s", mbq_status_string(r));
                const volatile uint64_t *d = mbq_buffer_get_data(b, NULL);
                if (d[0] != want[i])
                    bench_die("fanout: queue %u: message %" PRIu64 " where %" PRIu64 " was due",
                              i, (uint64_t)d[0], want[i]);
                want[i]++;
                mbq_buffer_release(b);
                left--;
            }
        }
        atomic_store(&sh->t_end, bench_mono_ns());
        for (unsigned i = 0; i < nq; i++)
            mbq_buffer_queue_close(q[i]);
        mbq_disconnect(cc);
        _exit(0);
    }
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    bench_pin(BENCH_PARENT_CPU);
    while (atomic_load(&sh->ready) != 1)
        sleep_ns(100000);
    uint64_t t0 = bench_mono_ns();
    uint64_t busy = 0; /* time not spent waiting for room */
    for (uint64_t m = 0; m < FAN_MSGS; m++) {
        uint64_t a = bench_ticks();
        mbq_buffer b;
        int r;
        uint64_t w = 0; /* failed attempts and the pauses after them */
        for (;;) {
            uint64_t s = bench_ticks();
            r = mbq_pool_allocate(pool, 64, &b);
            if (r != MBQ_POOL_ERR_ALLOCATION_FAILED)
                break;
            cpu_relax();
            w += bench_ticks() - s;
        }
        if (r != 0)
            bench_die("fanout: allocate: %s", mbq_status_string(r));
        uint64_t *d = mbq_buffer_get_data(b, NULL);
        for (int k = 0; k < 8; k++)
            d[k] = m + (uint64_t)k;
        for (unsigned i = 0; i < nq; i++) {
            for (;;) {
                uint64_t s = bench_ticks();
                r = i + 1 < nq ? mbq_buffer_queue_enqueue(qs[i], b)
                               : mbq_buffer_queue_enqueue_and_release(qs[i], b);
                if (r != MBQ_BQ_ERR_QUEUE_IS_FULL)
                    break;
                cpu_relax();
                w += bench_ticks() - s;
            }
            if (r != 0)
                bench_die("fanout: enqueue: %s", mbq_status_string(r));
        }
        busy += bench_ticks() - a - w;
    }
    if (wait_child(pid) < 0)
        bench_die("fanout: the consumer failed");
    *rate = (double)FAN_MSGS / ((double)(sh->t_end - t0) * 1e-9);
    *prod_ns = bench_ticks_to_ns(busy) / FAN_MSGS;
    bench_shared_free(sh, sizeof(*sh));
    for (unsigned i = 0; i < nq; i++) {
        mbq_buffer_queue_close(qs[i]);
        fan_names(name, sizeof(name), "q", (int)i);
        mbq_unlink(cl, name);
    }
    mbq_pool_close(pool);
    mbq_unlink(cl, "bench/fan/pool");
    mbq_disconnect(cl);
}

static void curve_fanout(void)
{
    struct curve c = {.name = "fanout", .nfigs = 2, .fig = {"rate", "producer_ns"},
                      .unit = {"msg/s", "ns"}};
    static const unsigned xs[] = {1, 2, 4, 8};
    for (int rep = 0; rep < opt_reps; rep++) {
        for (unsigned i = 0; i < 4; i++) {
            double rate, pns;
            fan_once(xs[i], &rate, &pns);
            struct point *p = &c.p[i];
            p->x = xs[i];
            p->v[0][rep] = rate;
            p->v[1][rep] = pns;
            p->n = rep + 1;
            printf("fanout %u queues rep %d: %.2f M msg/s (each to every queue), producer %.0f ns "
                   "per message (failed attempts on a full queue or pool excluded)\n",
                   xs[i], rep, rate / 1e6, pns);
        }
    }
    c.npoints = 4;
    curve_write(&c);
}

/* ---- epoll ---- */

#define EP_MAX 1000u
#define EP_ITERS 1000u
/* Warm-up: every queue once at least, since the first enqueue of a pool's
 * buffer into a queue binds the pool to it through mbqd (and the first
 * dequeue checks it): a round trip each, once per queue and process. */
#define EP_WARMUP(nq) (50u + (nq))
#define EP_GAP_NS 200000u

struct ep_sh {
    _Atomic int ready;
    _Atomic uint64_t done; /* messages the consumer has taken */
    double cpu_s;          /* the consumer's CPU time over the timed messages */
    double idle_cpu_s;     /* and over one idle second before them */
};

/* The dispatcher forbids changing the queue inside its callback, so the
 * dequeue follows dispatch's return; the callback has nothing to do. */
static void ep_callback(void *refcon, mbq_buffer_queue *queue, mbq_trigger_token token)
{
    (void)refcon;
    (void)queue;
    (void)token;
}

static void ep_once(unsigned nq, double *wake_ns, double *cpu_us, double *idle_pct)
{
    mbq_client *cl = connect_or_die("bench-epoll");
    mbq_pool *pool;
    mbq_buffer_queue **qs = calloc(nq, sizeof(*qs));
    char name[64];
    CHECK_OK(mbq_pool_create(cl, "bench/ep/pool",
                             &(mbq_pool_options){.size = sizeof(mbq_pool_options),
                                                 .block_size = 4096, .block_count = 64},
                             &pool));
    struct ep_sh *sh = bench_shared_alloc(sizeof(*sh));
    pid_t pid = fork_side();
    if (pid == 0) {
        bench_pin(BENCH_CHILD_CPU);
        mbq_client *cc = connect_or_die("bench-epoll-consumer");
        mbq_buffer_queue **q = calloc(nq, sizeof(*q));
        mbq_dispatcher *disp;
        CHECK_OK(mbq_dispatcher_create(&disp));
        /* The consumer makes the queues and installs the triggers before the
         * producer opens them: an install pushes the trigger's eventfd to
         * every process that has the queue open, and a producer that does
         * not call into the library meanwhile does not read them (mbqd
         * drops a client with 256 messages unread: 1000 installs would). */
        for (unsigned i = 0; i < nq; i++) {
            snprintf(name, sizeof(name), "bench/ep/q%u", i);
            CHECK_OK(mbq_buffer_queue_create(
                cc, name,
                &(mbq_buffer_queue_options){.size = sizeof(mbq_buffer_queue_options),
                                            .capacity = 4},
                &q[i]));
            mbq_trigger_token tok;
            CHECK_OK(mbq_buffer_queue_install_trigger_with_integer_threshold(
                q[i], MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 0, &tok));
            CHECK_OK(mbq_dispatcher_add(disp, q[i], tok, ep_callback, NULL));
        }
        atomic_store(&sh->ready, 1);
        while (atomic_load(&sh->ready) != 2) {
            mbq_client_dispatch(cc); /* what mbqd pushed: see mbq_client_fd */
            sleep_ns(100000);
        }
        mbq_client_dispatch(cc);
        double c0 = cpu_s(RUSAGE_SELF);
        uint64_t i0 = bench_mono_ns();
        while (bench_mono_ns() - i0 < 1000000000u)
            if (mbq_dispatcher_dispatch(disp, 100) < 0)
                bench_die("epoll: dispatch failed");
        sh->idle_cpu_s = cpu_s(RUSAGE_SELF) - c0;
        atomic_store(&sh->ready, 3);
        double c1 = 0;
        for (uint64_t m = 0; m < EP_WARMUP(nq) + EP_ITERS; m++) {
            if (m == EP_WARMUP(nq))
                c1 = cpu_s(RUSAGE_SELF);
            unsigned i = (unsigned)(m % nq);
            for (;;) {
                int r = mbq_dispatcher_dispatch(disp, -1);
                if (r < 0)
                    bench_die("epoll: dispatch: %s", mbq_status_string(r));
                mbq_buffer b;
                r = mbq_buffer_queue_dequeue_and_retain(q[i], &b);
                if (r == -EAGAIN)
                    continue;
                if (r != 0)
                    bench_die("epoll: dequeue: %s", mbq_status_string(r));
                const volatile uint64_t *d = mbq_buffer_get_data(b, NULL);
                if (d[0] != m)
                    bench_die("epoll: message %" PRIu64 " where %" PRIu64 " was due",
                              (uint64_t)d[0], m);
                mbq_buffer_release(b);
                break;
            }
            atomic_store_explicit(&sh->done, m + 1, memory_order_release);
        }
        sh->cpu_s = cpu_s(RUSAGE_SELF) - c1;
        /* the producer closes its handles first: removing the triggers
         * pushes a notice to every other process that has the queue open */
        while (atomic_load(&sh->ready) != 4)
            sleep_ns(100000);
        mbq_dispatcher_destroy(disp);
        for (unsigned i = 0; i < nq; i++)
            mbq_buffer_queue_close(q[i]);
        mbq_disconnect(cc);
        _exit(0);
    }
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    bench_pin(BENCH_PARENT_CPU);
    while (atomic_load(&sh->ready) != 1)
        sleep_ns(100000);
    for (unsigned i = 0; i < nq; i++) {
        snprintf(name, sizeof(name), "bench/ep/q%u", i);
        CHECK_OK(mbq_buffer_queue_open(cl, name, &qs[i]));
    }
    atomic_store(&sh->ready, 2);
    while (atomic_load(&sh->ready) != 3) {
        mbq_client_dispatch(cl);
        sleep_ns(100000);
    }
    uint64_t *lat = calloc(EP_ITERS, sizeof(*lat));
    for (uint64_t m = 0; m < EP_WARMUP(nq) + EP_ITERS; m++) {
        uint64_t g = bench_ticks();
        if (m % 64 == 0)
            mbq_client_dispatch(cl); /* untimed */
        while (bench_ticks_to_ns(bench_ticks() - g) < EP_GAP_NS)
            ;
        mbq_buffer b;
        CHECK_OK(mbq_pool_allocate(pool, 64, &b));
        *(uint64_t *)mbq_buffer_get_data(b, NULL) = m;
        uint64_t t0 = bench_ticks();
        CHECK_OK(mbq_buffer_queue_enqueue_and_release(qs[m % nq], b));
        while (atomic_load_explicit(&sh->done, memory_order_acquire) != m + 1)
            ;
        if (m >= EP_WARMUP(nq))
            lat[m - EP_WARMUP(nq)] = bench_ticks() - t0;
    }
    for (unsigned i = 0; i < nq; i++)
        mbq_buffer_queue_close(qs[i]);
    atomic_store(&sh->ready, 4);
    if (wait_child(pid) < 0)
        bench_die("epoll: the consumer failed");
    struct bench_pct pc = bench_percentiles(lat, EP_ITERS);
    *wake_ns = pc.p50;
    *cpu_us = sh->cpu_s / EP_ITERS * 1e6;
    *idle_pct = sh->idle_cpu_s * 100;
    free(lat);
    bench_shared_free(sh, sizeof(*sh));
    for (unsigned i = 0; i < nq; i++) {
        snprintf(name, sizeof(name), "bench/ep/q%u", i);
        mbq_unlink(cl, name);
    }
    free(qs);
    mbq_pool_close(pool);
    mbq_unlink(cl, "bench/ep/pool");
    mbq_disconnect(cl);
}

static void curve_epoll(void)
{
    struct curve c = {.name = "epoll", .nfigs = 3, .fig = {"wake_p50", "consumer_cpu", "idle_cpu"},
                      .unit = {"ns", "us/msg", "%"}};
    static const unsigned xs[] = {1, 10, 100, 1000};
    for (int rep = 0; rep < opt_reps; rep++) {
        for (unsigned i = 0; i < 4; i++) {
            double w, cpu, idle;
            ep_once(xs[i], &w, &cpu, &idle);
            struct point *p = &c.p[i];
            p->x = xs[i];
            p->v[0][rep] = w;
            p->v[1][rep] = cpu;
            p->v[2][rep] = idle;
            p->n = rep + 1;
            printf("epoll %u queues rep %d: wake p50 %.1f us, consumer CPU %.2f us per message, "
                   "idle %.2f%% of a CPU\n",
                   xs[i], rep, w / 1e3, cpu, idle);
        }
    }
    c.npoints = 4;
    curve_write(&c);
}

/* ---- objects ---- */

struct daemon_mem {
    double rss_kb, anon_kb;
};

static struct daemon_mem daemon_mem(void)
{
    struct daemon_mem m = {0, 0};
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return m;
    while (fgets(line, sizeof(line), f)) {
        long v;
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            m.rss_kb = (double)v;
        else if (sscanf(line, "RssAnon: %ld", &v) == 1)
            m.anon_kb = (double)v;
    }
    fclose(f);
    return m;
}

static double run_mbqctl_list_ms(void)
{
    uint64_t t0 = bench_mono_ns();
    pid_t pid = fork_side();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0)
            dup2(null, 1);
        execl(opt_mbqctl, opt_mbqctl, "list", (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || wait_child(pid) < 0)
        bench_die("%s list failed", opt_mbqctl);
    return (double)(bench_mono_ns() - t0) / 1e6;
}

static void curve_objects(void)
{
    struct curve c = {.name = "objects", .nfigs = 6,
                      .fig = {"create_us", "open_close_us", "list_ms", "mbqctl_list_ms",
                              "rss_kb_per_object", "heap_kb_per_object"},
                      .unit = {"us", "us", "ms", "ms", "KiB", "KiB"}};
    static const unsigned xs[] = {10, 100, 1000, 10000};
    mbq_object_info *infos = calloc(10100, sizeof(*infos));
    daemon_stop();
    for (int rep = 0; rep < opt_reps; rep++) {
        /* a fresh daemon for each repetition: memory per object from zero */
        daemon_start();
        struct daemon_mem m0 = daemon_mem();
        mbq_client *cl = connect_or_die("bench-objects");
        mbq_client *other = connect_or_die("bench-objects-opener");
        unsigned have = 0;
        for (unsigned i = 0; i < 4; i++) {
            char name[64];
            uint64_t t0 = bench_mono_ns();
            unsigned made = xs[i] - have;
            for (; have < xs[i]; have++) {
                mbq_buffer_queue *q;
                snprintf(name, sizeof(name), "bench/obj/q%u", have);
                CHECK_OK(mbq_buffer_queue_create(
                    cl, name,
                    &(mbq_buffer_queue_options){.size = sizeof(mbq_buffer_queue_options),
                                                .capacity = 16},
                    &q));
                /* closed at once: the object lives on in mbqd until unlinked */
                mbq_buffer_queue_close(q);
            }
            double create_us = (double)(bench_mono_ns() - t0) / 1e3 / made;
            unsigned opens = 200;
            t0 = bench_mono_ns();
            for (unsigned k = 0; k < opens; k++) {
                mbq_buffer_queue *q;
                snprintf(name, sizeof(name), "bench/obj/q%u", (k * 7919u) % have);
                CHECK_OK(mbq_buffer_queue_open(other, name, &q));
                mbq_buffer_queue_close(q);
            }
            double open_us = (double)(bench_mono_ns() - t0) / 1e3 / opens;
            infos[0].size = sizeof(*infos); /* the stride */
            t0 = bench_mono_ns();
            int n = mbq_list(cl, NULL, infos, 10100);
            double list_ms = (double)(bench_mono_ns() - t0) / 1e6;
            if (n < 0)
                bench_die("objects: mbq_list: %s", mbq_status_string(n));
            if (n < (int)have) /* mbqd lists what fits one reply packet (64 KiB) */
                printf("objects %u: mbq_list listed %d of them (truncated by mbqd: one reply "
                       "packet)\n",
                       have, n);
            double ctl_ms = run_mbqctl_list_ms();
            struct daemon_mem m = daemon_mem();
            struct point *p = &c.p[i];
            p->x = xs[i];
            p->v[0][rep] = create_us;
            p->v[1][rep] = open_us;
            p->v[2][rep] = list_ms;
            p->v[3][rep] = ctl_ms;
            p->v[4][rep] = (m.rss_kb - m0.rss_kb) / have;
            p->v[5][rep] = (m.anon_kb - m0.anon_kb) / have;
            p->n = rep + 1;
            printf("objects %u rep %d: create %.1f us each, open+close %.1f us, mbq_list %.2f ms, "
                   "mbqctl list %.1f ms, mbqd RSS %.0f KiB (+%.2f KiB per object, heap +%.2f)\n",
                   have, rep, create_us, open_us, list_ms, ctl_ms, m.rss_kb, p->v[4][rep],
                   p->v[5][rep]);
        }
        mbq_disconnect(other);
        mbq_disconnect(cl);
        daemon_stop();
    }
    free(infos);
    c.npoints = 4;
    curve_write(&c);
    daemon_start();
}

/* ---- clients ---- */

static double clients_stat_us(mbq_client *cl, const char *name)
{
    mbq_object_info info = {.size = sizeof(info)};
    uint64_t lat[200];
    for (int k = 0; k < 220; k++) {
        uint64_t t0 = bench_ticks();
        CHECK_OK(mbq_stat(cl, name, &info));
        if (k >= 20)
            lat[k - 20] = bench_ticks() - t0;
    }
    return bench_percentiles(lat, 200).p50 / 1e3;
}

static double clients_reclaim_ms(mbq_client *cl)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        bench_die("pipe: %s", strerror(errno));
    pid_t pid = fork_side();
    if (pid == 0) {
        mbq_client *cc = connect_or_die("bench-victim");
        mbq_pool *pp;
        mbq_buffer b[8];
        if (mbq_pool_open(cc, "bench/cli/pool", &pp) != 0)
            _exit(1);
        for (int i = 0; i < 8; i++)
            if (mbq_pool_allocate(pp, 4096, &b[i]) != 0)
                _exit(1);
        if (write(pipefd[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char x;
    if (pid < 0 || read(pipefd[0], &x, 1) != 1)
        bench_die("the victim did not start");
    close(pipefd[0]);
    close(pipefd[1]);
    mbq_object_info info = {.size = sizeof(info)};
    uint64_t t0 = bench_mono_ns();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (;;) {
        CHECK_OK(mbq_stat(cl, "bench/cli/pool", &info));
        if (info.blocks_used == 0)
            return (double)(bench_mono_ns() - t0) / 1e6;
        if (bench_mono_ns() - t0 > 10000000000ull)
            bench_die("clients: the killed client's buffers were not reclaimed");
    }
}

static void curve_clients(void)
{
    struct curve c = {.name = "clients", .nfigs = 4,
                      .fig = {"stat_rtt", "reclaim", "connect", "stat_shared_rtt"},
                      .unit = {"us", "ms", "us", "us"}};
    static const unsigned xs[] = {1, 4, 16, 64, 256};
    struct rlimit rl = {8192, 8192};
    setrlimit(RLIMIT_NOFILE, &rl);
    for (int rep = 0; rep < opt_reps; rep++) {
        mbq_client *cl = connect_or_die("bench-clients");
        mbq_buffer_queue *q;
        mbq_pool *pool;
        CHECK_OK(mbq_buffer_queue_create(
            cl, "bench/cli/q",
            &(mbq_buffer_queue_options){.size = sizeof(mbq_buffer_queue_options), .capacity = 16},
            &q));
        CHECK_OK(mbq_pool_create(cl, "bench/cli/pool",
                                 &(mbq_pool_options){.size = sizeof(mbq_pool_options),
                                                     .block_size = 4096, .block_count = 16},
                                 &pool));
        pid_t pids[256];
        unsigned have = 0;
        int gate[2]; /* each client writes a byte once connected and opened */
        if (pipe2(gate, O_CLOEXEC) < 0)
            bench_die("pipe: %s", strerror(errno));
        for (unsigned i = 0; i < 5; i++) {
            uint64_t t0 = bench_mono_ns();
            unsigned made = xs[i] - have;
            for (; have < xs[i]; have++) {
                pid_t pid = fork_side();
                if (pid == 0) {
                    mbq_client *cc;
                    mbq_buffer_queue *qq;
                    if (mbq_connect(sock_path, "bench-idle-client", &cc) != 0 ||
                        mbq_buffer_queue_open(cc, "bench/cli/q", &qq) != 0)
                        _exit(1);
                    if (write(gate[1], "x", 1) != 1)
                        _exit(1);
                    pause();
                    _exit(0);
                }
                if (pid < 0)
                    bench_die("fork: %s", strerror(errno));
                pids[have] = pid;
            }
            for (unsigned k = 0; k < made; k++) {
                char x;
                if (read(gate[0], &x, 1) != 1)
                    bench_die("clients: a client did not connect");
            }
            double connect_us = (double)(bench_mono_ns() - t0) / 1e3 / made;
            /* the pool: open here only; the queue: open in every client, and
             * its stat lists them all */
            double stat_us = clients_stat_us(cl, "bench/cli/pool");
            double stat_q_us = clients_stat_us(cl, "bench/cli/q");
            double rec_ms = clients_reclaim_ms(cl);
            struct point *p = &c.p[i];
            p->x = xs[i];
            p->v[0][rep] = stat_us;
            p->v[1][rep] = rec_ms;
            p->v[2][rep] = connect_us;
            p->v[3][rep] = stat_q_us;
            p->n = rep + 1;
            printf("clients %u rep %d: mbq_stat round trip p50 %.1f us (of the queue all have "
                   "open: %.1f us), reclaim %.2f ms, connect+open %.0f us per client (fork "
                   "included)\n",
                   have, rep, stat_us, stat_q_us, rec_ms, connect_us);
        }
        for (unsigned k = 0; k < have; k++) {
            kill(pids[k], SIGKILL);
            waitpid(pids[k], NULL, 0);
        }
        close(gate[0]);
        close(gate[1]);
        mbq_buffer_queue_close(q);
        mbq_pool_close(pool);
        mbq_unlink(cl, "bench/cli/q");
        mbq_unlink(cl, "bench/cli/pool");
        mbq_disconnect(cl);
    }
    c.npoints = 5;
    curve_write(&c);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"mbqd", required_argument, NULL, 'd'},
                                       {"mbqctl", required_argument, NULL, 'c'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"reps", required_argument, NULL, 'r'},
                                       {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'd': opt_mbqd = optarg; break;
        case 'c': opt_mbqctl = optarg; break;
        case 'o': opt_out = optarg; break;
        case 'r': opt_reps = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: bench_scale [--mbqd PATH] [--mbqctl PATH] [--out DIR] "
                            "[--reps N] [faults|fanout|epoll|objects|clients]...\n");
            return 2;
        }
    }
    if (opt_reps < 1 || opt_reps > REPS_MAX)
        bench_die("--reps: 1..%d", REPS_MAX);
    mkdir(opt_out, 0755);
    struct rlimit rl = {16384, 16384};
    setrlimit(RLIMIT_NOFILE, &rl); /* mbqd inherits it: 10000 objects are 10000 memfds */
    signal(SIGPIPE, SIG_IGN);
    daemon_start();
    atexit(daemon_stop);
    static const char *const all[] = {"faults", "fanout", "epoll", "objects", "clients"};
    static void (*const fns[])(void) = {curve_faults, curve_fanout, curve_epoll, curve_objects,
                                        curve_clients};
    for (int k = 0; k < 5; k++) {
        bool want = optind >= argc;
        for (int a = optind; a < argc; a++)
            want |= strcmp(argv[a], all[k]) == 0;
        if (!want)
            continue;
        uint64_t t0 = bench_mono_ns();
        fns[k]();
        printf("# %s took %.1f s\n", all[k], (double)(bench_mono_ns() - t0) / 1e9);
        fflush(stdout);
    }
    return 0;
}
