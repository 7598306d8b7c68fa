/* Wake-up benchmark: what handing one frame to a sleeping consumer costs,
 * one way, at a frame rate — the building blocks of the capture-to-encoder
 * latency in docs/PERFORMANCE.md ("Where the median goes").
 *
 * Each case wakes a sleeper every PERIOD (10 ms by default, so the
 * sleeper's vCPU goes idle in between, as an encoder's does between
 * frames) and measures, per event, the time from the waker's timestamp to
 * the sleeper's first instruction after the wait ("lat"), and how long the
 * waker spent in its wake call ("wake"). Waker and sleeper are pinned to
 * two different CPUs (0 and 1 of those allowed) unless --no-pin.
 *
 *   thread_cond      a thread of the same process on a pthread mutex and
 *                    condition variable (what GstQueue's GCond does)
 *   process_futex    another process on a shared futex, woken only if it
 *                    flagged itself asleep
 *   process_eventfd  another process in poll() on an eventfd, then read()
 *   bq               mbq's queue: the waker stamps, works WORK us (what
 *                    mbqsink does before its enqueue: 30 us by default),
 *                    enqueues; the other process is in bq_dequeue_wait
 *   bq_wake_ahead    the same with bq_wake_ahead before the work
 *
 * Figures are percentiles in us over the events (the first 10 are warm-up).
 * Usage: bench_wake [--period-us P] [--events N] [--work-us W] [--no-pin]
 *                   [CASE...] */
#include "bench_common.h"

#include "bq.h"
#include "futex.h"

#include <pthread.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/eventfd.h>

#define WARMUP 10
#define MAX_EVENTS 100000

static int period_us = 10000, events = 300, work_us = 30;
static bool pinned = true;
static int cpu_a = -1, cpu_b = -1;

struct shared {
    _Alignas(64) _Atomic uint32_t word;
    _Atomic uint32_t sleeping;
    _Alignas(64) _Atomic uint64_t t_stamp;
    pthread_mutex_t m;
    pthread_cond_t c;
    int efd;
    uint64_t lat[MAX_EVENTS], wake[MAX_EVENTS];
};

static struct shared *S;
static struct bq Q;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void busy_us(int us)
{
    uint64_t end = now_ns() + (uint64_t)us * 1000u;
    while (now_ns() < end)
        ;
}

static void pace(void)
{
    struct timespec ts = {.tv_sec = period_us / 1000000, .tv_nsec = (long)(period_us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

enum kind { THREAD_COND, PROCESS_FUTEX, PROCESS_EVENTFD, BQ, BQ_AHEAD };

static void sleeper(enum kind k)
{
    if (pinned)
        bench_pin(cpu_b);
    struct bq q;
    if ((k == BQ || k == BQ_AHEAD) && bq_attach(Q.seg.fd, &q) < 0)
        bench_die("bq_attach");
    for (int i = 0; i < events; i++) {
        uint64_t t;
        switch (k) {
        case THREAD_COND:
            pthread_mutex_lock(&S->m);
            while (atomic_load(&S->word) == (uint32_t)i)
                pthread_cond_wait(&S->c, &S->m);
            t = now_ns();
            pthread_mutex_unlock(&S->m);
            break;
        case PROCESS_FUTEX:
            while (atomic_load(&S->word) == (uint32_t)i) {
                atomic_store(&S->sleeping, 1);
                if (atomic_load(&S->word) != (uint32_t)i)
                    break;
                futex_wait(&S->word, (uint32_t)i, NULL);
            }
            t = now_ns();
            atomic_store(&S->sleeping, 0);
            break;
        case PROCESS_EVENTFD: {
            struct pollfd p = {.fd = S->efd, .events = POLLIN};
            while (poll(&p, 1, -1) < 0)
                ;
            t = now_ns();
            uint64_t v;
            if (read(S->efd, &v, sizeof v) != sizeof v)
                bench_die("read");
            break;
        }
        default: {
            struct bq_entry e;
            if (bq_dequeue_wait(&q, &e, 10ll * 1000000000) != 0)
                bench_die("bq_dequeue_wait");
            t = now_ns();
            break;
        }
        }
        S->lat[i] = t - atomic_load(&S->t_stamp);
    }
    if (k == BQ || k == BQ_AHEAD)
        bq_detach(&q);
}

static void waker(enum kind k)
{
    if (pinned)
        bench_pin(cpu_a);
    for (int i = 0; i < events; i++) {
        pace();
        uint64_t t0 = now_ns(), w0 = 0, w1 = 0;
        atomic_store(&S->t_stamp, t0);
        switch (k) {
        case THREAD_COND:
            pthread_mutex_lock(&S->m);
            atomic_store(&S->word, (uint32_t)i + 1);
            w0 = now_ns();
            pthread_cond_signal(&S->c);
            w1 = now_ns();
            pthread_mutex_unlock(&S->m);
            break;
        case PROCESS_FUTEX:
            atomic_store(&S->word, (uint32_t)i + 1);
            w0 = now_ns();
            if (atomic_load(&S->sleeping))
                futex_wake(&S->word, 1);
            w1 = now_ns();
            break;
        case PROCESS_EVENTFD: {
            uint64_t v = 1;
            w0 = now_ns();
            if (write(S->efd, &v, sizeof v) != sizeof v)
                bench_die("write");
            w1 = now_ns();
            break;
        }
        default: {
            if (k == BQ_AHEAD) {
                w0 = now_ns();
                bq_wake_ahead(&Q);
                w1 = now_ns();
            }
            busy_us(work_us);
            struct bq_entry e;
            memset(&e, 0, sizeof e);
            e.handle = (uint64_t)i + 1;
            e.pts = e.dts = e.duration = MBQ_TIME_INVALID;
            e.size = 1;
            e.pool_id = 1;
            uint64_t e0 = now_ns();
            if (bq_enqueue(&Q, &e) != 0)
                bench_die("bq_enqueue");
            if (k == BQ) {
                w0 = e0;
                w1 = now_ns();
            }
            break;
        }
        }
        S->wake[i] = w1 - w0;
    }
}

static void *sleeper_thread(void *arg)
{
    sleeper(*(enum kind *)arg);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, int n, double p)
{
    return (double)v[(int)(p * (n - 1))] / 1e3;
}

static void run(const char *name, enum kind k)
{
    memset(S, 0, offsetof(struct shared, m));
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&S->m, &ma);
    pthread_cond_init(&S->c, NULL);
    S->efd = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE); /* an event per read, even if two came */
    if (k == BQ || k == BQ_AHEAD) {
        struct bq_params p = {.capacity = 8, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
        if (bq_create(&p, &Q) < 0)
            bench_die("bq_create");
    }
    if (k == THREAD_COND) {
        pthread_t th;
        pthread_create(&th, NULL, sleeper_thread, &k);
        waker(k);
        pthread_join(th, NULL);
    } else {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            sleeper(k);
            _exit(0);
        }
        waker(k);
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bench_die("%s: the sleeper failed", name);
    }
    if (k == BQ || k == BQ_AHEAD)
        bq_detach(&Q);
    close(S->efd);
    int n = events - WARMUP;
    uint64_t *lat = S->lat + WARMUP, *wake = S->wake + WARMUP;
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    qsort(wake, (size_t)n, sizeof *wake, cmp_u64);
    printf("%-16s lat p10 %6.1f p50 %6.1f p90 %6.1f us   wake call p50 %5.1f p90 %5.1f us\n", name,
           pct(lat, n, 0.1), pct(lat, n, 0.5), pct(lat, n, 0.9), pct(wake, n, 0.5),
           pct(wake, n, 0.9));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        enum kind k;
    } cases[] = {{"thread_cond", THREAD_COND},
                 {"process_futex", PROCESS_FUTEX},
                 {"process_eventfd", PROCESS_EVENTFD},
                 {"bq", BQ},
                 {"bq_wake_ahead", BQ_AHEAD}};
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    bool want[sizeof cases / sizeof cases[0]] = {false};
    bool any = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--period-us") && i + 1 < argc)
            period_us = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--events") && i + 1 < argc)
            events = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--work-us") && i + 1 < argc)
            work_us = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-pin"))
            pinned = false;
        else {
            int c = 0;
            while (c < ncases && strcmp(argv[i], cases[c].name))
                c++;
            if (c == ncases)
                bench_die("unknown case or option %s", argv[i]);
            want[c] = any = true;
        }
    }
    if (events <= WARMUP + 1 || events > MAX_EVENTS || period_us < 0 || work_us < 0)
        bench_die("bad --events, --period-us or --work-us");
    cpu_set_t set;
    sched_getaffinity(0, sizeof set, &set);
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set)) {
            if (cpu_a < 0)
                cpu_a = i;
            else if (cpu_b < 0)
                cpu_b = i;
        }
    if (cpu_b < 0)
        pinned = false;
    S = bench_shared_alloc(sizeof *S);
    printf("one-way wake-up, %d events every %d us, %s; bq cases: %d us of work before the "
           "enqueue\n",
           events, period_us, pinned ? "waker and sleeper on two CPUs" : "not pinned", work_us);
    for (int c = 0; c < ncases; c++)
        if (!any || want[c])
            run(cases[c].name, cases[c].k);
    return 0;
}
