/* Control-plane and public-API benchmark: what going through mbqd and libmbq
 * costs, next to the raw shm/ calls and a raw eventfd, in the same run.
 *
 * The program starts the freshly built mbqd on a private socket and runs:
 *  - open_close: mbq_buffer_queue_open + close of an existing queue (two
 *    daemon round trips), per second;
 *  - trigger: install + remove of a trigger (two round trips and an eventfd
 *    created, passed and closed), per second;
 *  - api_rtt vs raw_rtt: a buffer handed to another process and back through
 *    two FIFO buffer queues, busy-polling, once through the public API
 *    (mbq_buffer_queue_enqueue / dequeue_and_retain / mbq_buffer_release) and
 *    once through the shm/ calls doing the same work (bq_enqueue with the
 *    pool's retain hook, bq_dequeue, pool_adopt, pool_release). The overhead
 *    is the API's p50 over the raw p50, minus one;
 *  - trigger_rtt vs eventfd_rtt: the same hand-off, but each side sleeps in
 *    epoll_wait on the eventfd of a "count > 0" trigger on its queue, against
 *    two raw eventfds ping-ponged with epoll_wait in the same run;
 *  - reclaim: a client holding 8 buffers is killed with SIGKILL; the time
 *    until mbq_stat shows the pool's blocks free again.
 * Latencies are round trips, percentiles over the timed iterations; each
 * case runs BENCH_RUNS times (default 3) and prints the median of the runs
 * with min and max. Parent on CPU 0, child on CPU 1.
 *
 * Usage: bench_control [PATH-TO-MBQD]   (default: the build's mbqd) */
#include "bench_common.h"

#include "bq.h"
#include "pool.h"

#include <mbq/mbq.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifndef MBQD_PATH
#define MBQD_PATH "mbqd"
#endif

#define CTRL_ITERS 2000u
#define RTT_WARMUP 10000u
#define RTT_ITERS 100000u
#define WAKE_WARMUP 500u
#define WAKE_ITERS 5000u
#define RECLAIM_ROUNDS 10
#define RUNS_MAX 9
#define SAMPLES_MAX (RUNS_MAX * RECLAIM_ROUNDS)

static char sock_path[256];
static pid_t daemon_pid;

/* ---- the daemon ---- */

static void daemon_stop(void)
{
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        waitpid(daemon_pid, NULL, 0);
        daemon_pid = 0;
    }
}

static void daemon_start(const char *mbqd)
{
    char dir[] = "/tmp/mbq-bench.XXXXXX";
    if (!mkdtemp(dir))
        bench_die("mkdtemp: %s", strerror(errno));
    snprintf(sock_path, sizeof(sock_path), "%s/mbqd.sock", dir);
    daemon_pid = fork();
    if (daemon_pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (daemon_pid == 0) {
        execl(mbqd, mbqd, "--socket", sock_path, "--log-level", "warning", (char *)NULL);
        fprintf(stderr, "bench: exec %s: %s\n", mbqd, strerror(errno));
        _exit(127);
    }
    atexit(daemon_stop);
    setenv("MBQ_SOCKET", sock_path, 1);
    /* Ready when it accepts: poll with short bounded attempts. */
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

#define CHECK_OK(expr)                                                                         \
    do {                                                                                       \
        int r_ = (expr);                                                                       \
        if (r_ != 0)                                                                           \
            bench_die("%s: %s", #expr, mbq_status_string(r_));                                 \
    } while (0)

/* ---- figures ---- */

struct series {
    const char *key, *unit;
    double v[SAMPLES_MAX];
    int n;
};

static struct series figs[32];
static int nfigs;

static void fig(const char *key, double value, const char *unit)
{
    for (int i = 0; i < nfigs; i++)
        if (strcmp(figs[i].key, key) == 0) {
            if (figs[i].n < SAMPLES_MAX)
                figs[i].v[figs[i].n++] = value;
            return;
        }
    figs[nfigs] = (struct series){.key = key, .unit = unit, .v = {value}, .n = 1};
    nfigs++;
}

/* ---- control-plane rates ---- */

static void case_control(void)
{
    mbq_client *c = connect_or_die("bench-control");
    mbq_buffer_queue *q;
    CHECK_OK(mbq_buffer_queue_create(c, "bench/ctl", NULL, &q));
    uint64_t t0 = bench_mono_ns();
    for (unsigned i = 0; i < CTRL_ITERS; i++) {
        mbq_buffer_queue *o;
        CHECK_OK(mbq_buffer_queue_open(c, "bench/ctl", &o));
        mbq_buffer_queue_close(o);
    }
    uint64_t t1 = bench_mono_ns();
    for (unsigned i = 0; i < CTRL_ITERS; i++) {
        mbq_trigger_token tok;
        CHECK_OK(mbq_buffer_queue_install_trigger_with_integer_threshold(
            q, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 0, &tok));
        CHECK_OK(mbq_buffer_queue_remove_trigger(q, tok));
    }
    uint64_t t2 = bench_mono_ns();
    fig("open_close_per_s", CTRL_ITERS * 1e9 / (double)(t1 - t0), "pairs/s");
    fig("trigger_install_remove_per_s", CTRL_ITERS * 1e9 / (double)(t2 - t1), "pairs/s");
    mbq_buffer_queue_close(q);
    CHECK_OK(mbq_unlink(c, "bench/ctl"));
    mbq_disconnect(c);
}

/* ---- hand-off round trip: public API ---- */

struct api_arg {
    uint64_t *lat;
    uint32_t warmup, iters;
    bool wait_trigger; /* sleep on a trigger's eventfd instead of polling */
};

static int epoll_on(int fd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        bench_die("epoll: %s", strerror(errno));
    return ep;
}

/* Takes one buffer from q: busy-polls, or sleeps on the trigger's eventfd. */
static void api_take(mbq_buffer_queue *q, int ep, int efd, mbq_buffer *out)
{
    for (;;) {
        int r = mbq_buffer_queue_dequeue_and_retain(q, out);
        if (r == 0)
            return;
        if (r != -EAGAIN)
            bench_die("dequeue: %s", mbq_status_string(r));
        if (ep >= 0) {
            struct epoll_event ev;
            uint64_t n;
            if (epoll_wait(ep, &ev, 1, 5000) == 1 && read(efd, &n, sizeof(n)) < 0 &&
                errno != EAGAIN)
                bench_die("read eventfd: %s", strerror(errno));
        }
    }
}

struct api_side {
    mbq_client *c;
    mbq_pool *pool;
    mbq_buffer_queue *in, *out;
    int ep, efd;
};

static void api_side_open(struct api_side *s, const char *in, const char *out, bool trig)
{
    s->c = connect_or_die("bench-api");
    CHECK_OK(mbq_pool_open(s->c, "bench/pool", &s->pool));
    CHECK_OK(mbq_buffer_queue_open(s->c, in, &s->in));
    CHECK_OK(mbq_buffer_queue_open(s->c, out, &s->out));
    s->ep = s->efd = -1;
    if (trig) {
        mbq_trigger_token tok;
        CHECK_OK(mbq_buffer_queue_install_trigger_with_integer_threshold(
            s->in, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 0, &tok));
        s->efd = mbq_buffer_queue_trigger_fd(s->in, tok);
        s->ep = epoll_on(s->efd);
    }
}

static void api_side_close(struct api_side *s)
{
    if (s->ep >= 0)
        close(s->ep);
    mbq_buffer_queue_close(s->in);
    mbq_buffer_queue_close(s->out);
    mbq_pool_close(s->pool);
    mbq_disconnect(s->c);
}

static _Atomic int *child_ready; /* shared: the child installed its trigger */

static int api_parent(void *arg)
{
    struct api_arg *a = arg;
    while (!atomic_load(child_ready))
        ;
    struct api_side s;
    api_side_open(&s, "bench/resp", "bench/req", a->wait_trigger);
    mbq_buffer b;
    CHECK_OK(mbq_pool_allocate(s.pool, 4096, &b));
    for (uint32_t i = 0; i < a->warmup + a->iters; i++) {
        if (a->wait_trigger)
            mbq_client_dispatch(s.c); /* pick up the child's trigger fd */
        uint64_t t0 = bench_ticks();
        CHECK_OK(mbq_buffer_queue_enqueue(s.out, b));
        mbq_buffer r;
        api_take(s.in, s.ep, s.efd, &r);
        mbq_buffer_release(r);
        uint64_t t1 = bench_ticks();
        if (i >= a->warmup)
            a->lat[i - a->warmup] = t1 - t0;
    }
    mbq_buffer_release(b);
    api_side_close(&s);
    return 0;
}

static int api_child(void *arg)
{
    struct api_arg *a = arg;
    struct api_side s;
    api_side_open(&s, "bench/req", "bench/resp", a->wait_trigger);
    atomic_store(child_ready, 1);
    for (uint32_t i = 0; i < a->warmup + a->iters; i++) {
        mbq_buffer b;
        api_take(s.in, s.ep, s.efd, &b);
        CHECK_OK(mbq_buffer_queue_enqueue(s.out, b));
        mbq_buffer_release(b);
    }
    api_side_close(&s);
    return 0;
}

static void api_objects(bool create)
{
    mbq_client *c = connect_or_die("bench-setup");
    if (create) {
        mbq_pool *p;
        mbq_buffer_queue *q;
        CHECK_OK(mbq_pool_create(c, "bench/pool",
                                 &(mbq_pool_options){.size = sizeof(mbq_pool_options),
                                                     .block_size = 4096, .block_count = 64},
                                 &p));
        mbq_pool_close(p);
        CHECK_OK(mbq_buffer_queue_create(c, "bench/req", NULL, &q));
        mbq_buffer_queue_close(q);
        CHECK_OK(mbq_buffer_queue_create(c, "bench/resp", NULL, &q));
        mbq_buffer_queue_close(q);
    } else {
        mbq_unlink(c, "bench/pool");
        mbq_unlink(c, "bench/req");
        mbq_unlink(c, "bench/resp");
    }
    mbq_disconnect(c);
}

static struct bench_pct api_rtt_once(bool wait_trigger, uint32_t warmup, uint32_t iters)
{
    api_objects(true);
    struct api_arg a = {.warmup = warmup, .iters = iters, .wait_trigger = wait_trigger};
    a.lat = calloc(iters, sizeof(*a.lat));
    child_ready = bench_shared_alloc(sizeof(*child_ready));
    if (!a.lat || bench_run_pair(api_parent, &a, api_child, &a, NULL) != 0)
        bench_die("api round trip failed");
    struct bench_pct p = bench_percentiles(a.lat, iters);
    free(a.lat);
    bench_shared_free((void *)child_ready, sizeof(*child_ready));
    api_objects(false);
    return p;
}

/* ---- hand-off round trip: the shm/ calls underneath ---- */

struct raw_shared {
    struct pool pool;
    struct bq req, resp;
};

static int raw_retain(void *ctx, uint32_t pool_id, uint64_t h, bool by_client)
{
    return pool_retain(ctx, h, by_client);
}

static void raw_release(void *ctx, uint32_t pool_id, uint64_t h)
{
    pool_release(ctx, h, false);
}

struct raw_arg {
    struct raw_shared *sh;
    uint64_t *lat;
    uint32_t warmup, iters;
};

static void raw_attach(struct raw_shared *sh, struct pool *p, struct bq *req, struct bq *resp)
{
    if (pool_attach(sh->pool.seg.fd, p) != 0 || bq_attach(sh->req.seg.fd, req) != 0 ||
        bq_attach(sh->resp.seg.fd, resp) != 0)
        bench_die("attach failed");
    struct bq_hooks hk = {.ctx = p, .retain = raw_retain, .release = raw_release};
    bq_set_hooks(req, &hk);
    bq_set_hooks(resp, &hk);
}

static void raw_take(struct pool *p, struct bq *q, struct bq_entry *e)
{
    int r;
    while ((r = bq_dequeue(q, e)) == -EAGAIN)
        ;
    if (r != 0 || pool_adopt(p, e->handle) != 0)
        bench_die("raw dequeue: %d", r);
}

static int raw_parent(void *arg)
{
    struct raw_arg *a = arg;
    struct pool p;
    struct bq req, resp;
    raw_attach(a->sh, &p, &req, &resp);
    uint64_t h;
    if (pool_alloc(&p, 4096, &h) != 0)
        bench_die("pool_alloc");
    for (uint32_t i = 0; i < a->warmup + a->iters; i++) {
        uint64_t t0 = bench_ticks();
        struct bq_entry e = {.handle = h, .pool_id = 1};
        pool_read_meta(&p, h, &e.size, &e.dts, &e.pts, &e.duration);
        if (bq_enqueue(&req, &e) != 0)
            bench_die("raw enqueue");
        struct bq_entry got;
        raw_take(&p, &resp, &got);
        pool_release(&p, got.handle, true);
        uint64_t t1 = bench_ticks();
        if (i >= a->warmup)
            a->lat[i - a->warmup] = t1 - t0;
    }
    pool_release(&p, h, true);
    bq_detach(&req);
    bq_detach(&resp);
    pool_detach(&p);
    return 0;
}

static int raw_child(void *arg)
{
    struct raw_arg *a = arg;
    struct pool p;
    struct bq req, resp;
    raw_attach(a->sh, &p, &req, &resp);
    for (uint32_t i = 0; i < a->warmup + a->iters; i++) {
        struct bq_entry e;
        raw_take(&p, &req, &e);
        if (bq_enqueue(&resp, &e) != 0)
            bench_die("raw enqueue");
        pool_release(&p, e.handle, true);
    }
    bq_detach(&req);
    bq_detach(&resp);
    pool_detach(&p);
    return 0;
}

static struct bench_pct raw_rtt_once(void)
{
    struct raw_shared *sh = bench_shared_alloc(sizeof(*sh));
    if (pool_create(&(struct pool_params){.block_size = 4096, .block_count = 64,
                                          .prefault = true},
                    &sh->pool) != 0 ||
        bq_create(&(struct bq_params){.capacity = 1024}, &sh->req) != 0 ||
        bq_create(&(struct bq_params){.capacity = 1024}, &sh->resp) != 0)
        bench_die("raw objects");
    struct raw_arg a = {.sh = sh, .warmup = RTT_WARMUP, .iters = RTT_ITERS};
    a.lat = calloc(RTT_ITERS, sizeof(*a.lat));
    if (!a.lat || bench_run_pair(raw_parent, &a, raw_child, &a, NULL) != 0)
        bench_die("raw round trip failed");
    struct bench_pct p = bench_percentiles(a.lat, RTT_ITERS);
    free(a.lat);
    bq_detach(&sh->req);
    bq_detach(&sh->resp);
    pool_detach(&sh->pool);
    bench_shared_free(sh, sizeof(*sh));
    return p;
}

/* ---- raw eventfd ping-pong, both sides in epoll_wait ---- */

struct efd_arg {
    int ping, pong;
    uint64_t *lat;
};

static void efd_wait(int ep, int fd)
{
    struct epoll_event ev;
    uint64_t n;
    while (epoll_wait(ep, &ev, 1, 5000) != 1)
        ;
    if (read(fd, &n, sizeof(n)) != sizeof(n))
        bench_die("read eventfd: %s", strerror(errno));
}

static void efd_post(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) != sizeof(one))
        bench_die("write eventfd: %s", strerror(errno));
}

static int efd_parent(void *arg)
{
    struct efd_arg *a = arg;
    int ep = epoll_on(a->pong);
    for (uint32_t i = 0; i < WAKE_WARMUP + WAKE_ITERS; i++) {
        uint64_t t0 = bench_ticks();
        efd_post(a->ping);
        efd_wait(ep, a->pong);
        uint64_t t1 = bench_ticks();
        if (i >= WAKE_WARMUP)
            a->lat[i - WAKE_WARMUP] = t1 - t0;
    }
    close(ep);
    return 0;
}

static int efd_child(void *arg)
{
    struct efd_arg *a = arg;
    int ep = epoll_on(a->ping);
    for (uint32_t i = 0; i < WAKE_WARMUP + WAKE_ITERS; i++) {
        efd_wait(ep, a->ping);
        efd_post(a->pong);
    }
    close(ep);
    return 0;
}

static struct bench_pct efd_rtt_once(void)
{
    struct efd_arg a = {.ping = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
                        .pong = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    a.lat = calloc(WAKE_ITERS, sizeof(*a.lat));
    if (a.ping < 0 || a.pong < 0 || !a.lat ||
        bench_run_pair(efd_parent, &a, efd_child, &a, NULL) != 0)
        bench_die("eventfd round trip failed");
    struct bench_pct p = bench_percentiles(a.lat, WAKE_ITERS);
    free(a.lat);
    close(a.ping);
    close(a.pong);
    return p;
}

/* ---- reclaim after kill -9 ---- */

static double reclaim_once(void)
{
    mbq_client *c = connect_or_die("bench-reclaim");
    mbq_pool *p;
    CHECK_OK(mbq_pool_create(c, "bench/reclaim",
                             &(mbq_pool_options){.size = sizeof(mbq_pool_options),
                                                 .block_size = 4096, .block_count = 16},
                             &p));
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        bench_die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid == 0) {
        mbq_client *cc = connect_or_die("bench-victim");
        mbq_pool *pp;
        mbq_buffer b[8];
        if (mbq_pool_open(cc, "bench/reclaim", &pp) != 0)
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
        bench_die("victim did not start");
    mbq_object_info info = {.size = sizeof(info)};
    uint64_t t0 = bench_mono_ns();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    double ms = -1;
    for (int i = 0; i < 200000; i++) {
        CHECK_OK(mbq_stat(c, "bench/reclaim", &info));
        if (info.blocks_used == 0) {
            ms = (double)(bench_mono_ns() - t0) / 1e6;
            break;
        }
    }
    if (ms < 0)
        bench_die("the killed client's buffers were not reclaimed");
    close(pipefd[0]);
    close(pipefd[1]);
    mbq_pool_close(p);
    mbq_unlink(c, "bench/reclaim");
    mbq_disconnect(c);
    return ms;
}

/* ---- driver ---- */

static void print_summary(void)
{
    printf("\n| figure | median | min – max | samples |\n|---|---|---|---|\n");
    for (int i = 0; i < nfigs; i++) {
        struct series *s = &figs[i];
        double v[SAMPLES_MAX];
        memcpy(v, s->v, sizeof(double) * (size_t)s->n);
        double med = bench_median(v, (size_t)s->n);
        printf("| %s | %.3g %s | %.3g – %.3g | %d |\n", s->key, med, s->unit, v[0], v[s->n - 1],
               s->n);
        bench_result_range(s->key, med, v[0], v[s->n - 1], s->n, s->unit);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mbqd = argc > 1 ? argv[1] : MBQD_PATH;
    int runs = 3;
    const char *s = getenv("BENCH_RUNS");
    if (s && atoi(s) >= 1 && atoi(s) <= RUNS_MAX)
        runs = atoi(s);
    daemon_start(mbqd);
    printf("# bench_control: mbqd %s on %s, %d runs per case\n", mbqd, sock_path, runs);
    for (int run = 0; run < runs; run++) {
        case_control();
        struct bench_pct raw = raw_rtt_once();
        struct bench_pct api = api_rtt_once(false, RTT_WARMUP, RTT_ITERS);
        fig("raw_rtt_p50", raw.p50, "ns");
        fig("api_rtt_p50", api.p50, "ns");
        fig("api_rtt_p99", api.p99, "ns");
        fig("api_overhead_pct", 100.0 * (api.p50 / raw.p50 - 1.0), "%");
        struct bench_pct efd = efd_rtt_once();
        struct bench_pct trg = api_rtt_once(true, WAKE_WARMUP, WAKE_ITERS);
        fig("eventfd_rtt_p50", efd.p50, "ns");
        fig("trigger_rtt_p50", trg.p50, "ns");
        fig("trigger_rtt_p99", trg.p99, "ns");
        fig("trigger_x_eventfd", trg.p50 / efd.p50, "x");
        for (int i = 0; i < RECLAIM_ROUNDS; i++)
            fig("reclaim_ms", reclaim_once(), "ms");
        printf("# run %d/%d done\n", run + 1, runs);
    }
    print_summary();
    daemon_stop();
    return 0;
}
