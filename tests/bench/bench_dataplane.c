/* Data-plane benchmark: what mbq's queues cost next to what the machine allows.
 *
 * Every case forks a child; the parent runs on CPU 0 and the child on CPU 1,
 * and they talk through memory shared before the fork (an anonymous shared
 * mapping, eventfds, or an mbq segment). The raw cases are the baselines of
 * reference/ipc-limits-measured.md rebuilt here so that each mbq figure is
 * compared with a baseline measured in the same run on the same placement:
 * ring_rtt / ring_stream (a lock-free SPSC ring of 64-byte descriptors, the
 * floor for a queue), futex_rtt (spin ~25 us then FUTEX_WAIT, the floor for a
 * blocking handoff), futex_sleep_rtt and eventfd_rtt (a real cross-vCPU
 * wake, ~50 us on this machine). The sq_* cases run mbq's simple queue the
 * same way, and each of their runs measures its raw-ring baseline right
 * before it. How to read the output: latencies are round trips in ns per
 * iteration, timer pair (~20 ns) included, as nearest-rank percentiles;
 * rates are M items/s one way. Each case runs 3 times (BENCH_RUNS) because the
 * host moves the vCPUs between placement states: a cache-line ping-pong probe
 * before every run prints the state (near <100 ns, mid ~140 ns, far >300 ns
 * round trip), and a busy-poll figure scales with it (3.5-5x from mid to
 * far). Each run's line also shows the time the host stole from the two vCPUs
 * (/proc/stat; over 5% marks the run DISTURBED) and how often each process was
 * preempted. "RESULT key=value unit" gives the median of the runs, then min,
 * max. A "*_x_ring" figure is a cost ratio, mbq time per item (or latency)
 * divided by the raw ring's in the same run: 1.0 is as fast as the raw ring,
 * 2.0 twice as slow (sq values are 8 bytes, ring descriptors 64). vcsw_per_iter counts
 * voluntary context switches (blocking system calls that slept) of both
 * processes per iteration: a data path that never enters the kernel shows ~0.
 * A lost or reordered item makes the program exit 1.
 *
 * Usage: bench_dataplane [all | list | CASE...]. To add a case, write
 * "static int case_x(struct run *r)" that performs one run and records its
 * figures with fig(r, "name", value, "unit"), and add a row to the cases
 * table; the driver repeats it, takes medians and adds it to the summary. */
#include "bench_common.h"

#include "futex.h"
#include "bq.h"
#include "mbq/status.h"
#include "sq.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/eventfd.h>

#define RING_SLOTS 1024u
#define RING_MASK (RING_SLOTS - 1)

#define RTT_WARMUP 20000u
#define RTT_ITERS 200000u
#define STREAM_ITEMS 10000000u
#define FUTEX_SPIN 1000 /* pause iterations, ~25 us */
#define FUTEX_WARMUP 10000u
#define FUTEX_ITERS 100000u
/* A sleeping round trip costs ~55 us at p50 and, with the host's millisecond
 * tail, ~100 us on average: 15k iterations x 3 runs keep these cases near 5 s
 * (p999 is then the 15th worst sample). */
#define SLEEP_WARMUP 1000u
#define SLEEP_ITERS 15000u
#define EFD_WARMUP 1000u
#define EFD_ITERS 15000u
#define PROBE_WARMUP 2000u
#define PROBE_ITERS 20000u
#define SQ_CAPACITY 1024

#define RUNS_DEFAULT 3
#define RUNS_MAX 15
#define FIGS_MAX 256

/* ---- figures: one value per run, summarised per case and at the end ---- */

struct figure {
    char key[64];
    char unit[16];
    double v[RUNS_MAX];
    int n;
    double med, lo, hi;
};

static struct figure figs[FIGS_MAX];
static int nfigs;
static int probe_states[3]; /* runs seen in the near, mid, far state */
static double steal_total_ms, wall_total_ms;

struct run {
    const char *case_name;
    char line[512]; /* the run's figures, for the per-run line */
    size_t len;
};

static void run_append(struct run *r, const char *text)
{
    if (r->len < sizeof(r->line)) {
        int w = snprintf(r->line + r->len, sizeof(r->line) - r->len, " %s", text);
        if (w > 0)
            r->len += (size_t)w;
    }
}

/* Records one run's value of a figure: it is printed on the run's line, and
 * the driver prints the median over the runs and puts it in the summary. */
static void fig(struct run *r, const char *name, double value, const char *unit)
{
    char key[64];
    snprintf(key, sizeof(key), "%s.%s", r->case_name, name);
    struct figure *f = NULL;
    for (int i = 0; i < nfigs; i++) {
        if (strcmp(figs[i].key, key) == 0) {
            f = &figs[i];
            break;
        }
    }
    if (!f) {
        if (nfigs == FIGS_MAX)
            bench_die("too many figures");
        f = &figs[nfigs++];
        snprintf(f->key, sizeof(f->key), "%s", key);
        snprintf(f->unit, sizeof(f->unit), "%s", unit);
    }
    if (f->n < RUNS_MAX)
        f->v[f->n++] = value;
    char text[96];
    snprintf(text, sizeof(text), "%s=%.4g", name, value);
    run_append(r, text);
}

/* Involuntary context switches (preemptions) of parent+child, on the run's
 * line only: kernel housekeeping makes a few; many mean that another task
 * shared a CPU. */
static void note_preempt(struct run *r, const struct bench_pair_stats *st)
{
    char text[64];
    snprintf(text, sizeof(text), "(preempted %ld+%ld)", st->parent.involuntary,
             st->child.involuntary);
    run_append(r, text);
}

/* ---- raw SPSC ring of 64-byte descriptors ---- */

struct desc {
    uint64_t seq;
    uint64_t w[7];
};
_Static_assert(sizeof(struct desc) == 64, "one descriptor per cache line");

struct ring {
    _Alignas(128) _Atomic uint64_t tail; /* producer's */
    _Alignas(128) _Atomic uint64_t head; /* consumer's */
    _Alignas(128) struct desc slots[RING_SLOTS];
};

/* One side's process-local view: its own counter and a cached copy of the
 * peer's, reloaded only when the ring looks full (producer) or empty
 * (consumer). */
struct ring_end {
    struct ring *r;
    uint64_t pos;
    uint64_t peer;
};

static inline bool ring_push(struct ring_end *e, uint64_t seq)
{
    if (e->pos - e->peer == RING_SLOTS) {
        e->peer = atomic_load_explicit(&e->r->head, memory_order_acquire);
        if (e->pos - e->peer == RING_SLOTS)
            return false;
    }
    struct desc *d = &e->r->slots[e->pos & RING_MASK];
    d->seq = seq;
    for (int k = 0; k < 7; k++)
        d->w[k] = seq + (uint64_t)k + 1;
    atomic_store_explicit(&e->r->tail, ++e->pos, memory_order_release);
    return true;
}

static inline bool ring_pop(struct ring_end *e, struct desc *out)
{
    if (e->pos == e->peer) {
        e->peer = atomic_load_explicit(&e->r->tail, memory_order_acquire);
        if (e->pos == e->peer)
            return false;
    }
    *out = e->r->slots[e->pos & RING_MASK];
    atomic_store_explicit(&e->r->head, ++e->pos, memory_order_release);
    return true;
}

static inline bool desc_ok(const struct desc *d, uint64_t seq)
{
    return d->seq == seq && d->w[0] == seq + 1 && d->w[6] == seq + 7;
}

/* ---- shared pieces of the latency cases ---- */

struct lat_result {
    struct bench_pct pct;
    struct bench_pair_stats st;
    uint64_t total_iters; /* warm-up included: what the counters cover */
    long waits, wakes;    /* futex cases: FUTEX_WAIT / FUTEX_WAKE calls, both sides */
};

/* What the parent side of a latency case gets: shared memory, the number of
 * warm-up and timed iterations, and where to store the timed latencies. */
struct lat_arg {
    void *sh;
    uint32_t warmup, iters;
    uint64_t *lat;
    long waits, wakes; /* the parent's own */
};

static uint64_t *lat_alloc(uint32_t n)
{
    uint64_t *lat = malloc(sizeof(*lat) * n);
    if (!lat)
        bench_die("out of memory");
    memset(lat, 0, sizeof(*lat) * n); /* fault it in before timing */
    return lat;
}

static void lat_finish(struct lat_arg *a, struct lat_result *out)
{
    out->pct = bench_percentiles(a->lat, a->iters);
    out->total_iters = (uint64_t)a->warmup + a->iters;
    free(a->lat);
    a->lat = NULL;
}

static double vcsw_per_iter(const struct lat_result *lr)
{
    return (double)(lr->st.parent.voluntary + lr->st.child.voluntary) / (double)lr->total_iters;
}

static void fig_latency(struct run *r, const char *prefix, const struct lat_result *lr, bool p999)
{
    char name[48];
    snprintf(name, sizeof(name), "%sp50", prefix);
    fig(r, name, lr->pct.p50, "ns");
    snprintf(name, sizeof(name), "%sp99", prefix);
    fig(r, name, lr->pct.p99, "ns");
    if (p999) {
        snprintf(name, sizeof(name), "%sp999", prefix);
        fig(r, name, lr->pct.p999, "ns");
    }
}

/* ---- placement probe: cache-line ping-pong, two lines ---- */

struct probe_shared {
    _Alignas(128) _Atomic uint32_t ping;
    _Alignas(128) _Atomic uint32_t pong;
};

static int probe_parent(void *arg)
{
    struct lat_arg *a = arg;
    struct probe_shared *sh = a->sh;
    for (uint32_t i = 1; i <= a->warmup + a->iters; i++) {
        uint64_t t0 = bench_ticks();
        atomic_store_explicit(&sh->ping, i, memory_order_release);
        while (atomic_load_explicit(&sh->pong, memory_order_acquire) != i)
            ;
        uint64_t t1 = bench_ticks();
        if (i > a->warmup)
            a->lat[i - a->warmup - 1] = t1 - t0;
    }
    return 0;
}

static int probe_child(void *arg)
{
    struct lat_arg *a = arg;
    struct probe_shared *sh = a->sh;
    for (uint32_t i = 1; i <= a->warmup + a->iters; i++) {
        while (atomic_load_explicit(&sh->ping, memory_order_acquire) != i)
            ;
        atomic_store_explicit(&sh->pong, i, memory_order_release);
    }
    return 0;
}

/* The round trip p50 of a cache line between the two CPUs, in ns. */
static double probe_p50(void)
{
    struct lat_arg a = {.warmup = PROBE_WARMUP, .iters = PROBE_ITERS};
    struct lat_result lr;
    a.sh = bench_shared_alloc(sizeof(struct probe_shared));
    a.lat = lat_alloc(a.iters);
    if (bench_run_pair(probe_parent, &a, probe_child, &a, NULL) != 0)
        bench_die("placement probe failed");
    lat_finish(&a, &lr);
    bench_shared_free(a.sh, sizeof(struct probe_shared));
    return lr.pct.p50;
}

static int probe_state(double p50)
{
    return p50 < 100 ? 0 : p50 < 300 ? 1 : 2;
}

static const char *const probe_state_names[3] = {"near", "mid", "far"};

/* ---- ring_rtt ---- */

struct ring_pair {
    struct ring req, resp;
};

static int ring_rtt_parent(void *arg)
{
    struct lat_arg *a = arg;
    struct ring_pair *sh = a->sh;
    struct ring_end tx = {.r = &sh->req}, rx = {.r = &sh->resp};
    struct desc d;
    for (uint64_t i = 0; i < (uint64_t)a->warmup + a->iters; i++) {
        uint64_t t0 = bench_ticks();
        while (!ring_push(&tx, i))
            ;
        while (!ring_pop(&rx, &d))
            ;
        uint64_t t1 = bench_ticks();
        if (!desc_ok(&d, i)) {
            fprintf(stderr, "bench: ring_rtt: response %" PRIu64 " for request %" PRIu64 "\n",
                    d.seq, i);
            return -1;
        }
        if (i >= a->warmup)
            a->lat[i - a->warmup] = t1 - t0;
    }
    return 0;
}

static int ring_rtt_child(void *arg)
{
    struct lat_arg *a = arg;
    struct ring_pair *sh = a->sh;
    struct ring_end rx = {.r = &sh->req}, tx = {.r = &sh->resp};
    struct desc d;
    for (uint64_t i = 0; i < (uint64_t)a->warmup + a->iters; i++) {
        while (!ring_pop(&rx, &d))
            ;
        if (!desc_ok(&d, i)) {
            fprintf(stderr, "bench: ring_rtt: request %" PRIu64 " where %" PRIu64 " was due\n",
                    d.seq, i);
            return -1;
        }
        while (!ring_push(&tx, d.seq))
            ;
    }
    return 0;
}

static void ring_rtt_once(struct lat_result *out)
{
    struct lat_arg a = {.warmup = RTT_WARMUP, .iters = RTT_ITERS};
    a.sh = bench_shared_alloc(sizeof(struct ring_pair));
    a.lat = lat_alloc(a.iters);
    if (bench_run_pair(ring_rtt_parent, &a, ring_rtt_child, &a, &out->st) != 0)
        bench_die("ring_rtt failed");
    lat_finish(&a, out);
    bench_shared_free(a.sh, sizeof(struct ring_pair));
}

static int case_ring_rtt(struct run *r)
{
    struct lat_result lr = {0};
    ring_rtt_once(&lr);
    fig_latency(r, "", &lr, true);
    fig(r, "vcsw_per_iter", vcsw_per_iter(&lr), "/iter");
    note_preempt(r, &lr.st);
    return 0;
}

/* ---- ring_stream ---- */

struct stream_shared {
    _Alignas(128) _Atomic int ready;
    _Atomic uint64_t t_start, t_end; /* CLOCK_MONOTONIC ns */
    struct ring ring;
};

struct stream_result {
    double ns_per_item;
    struct bench_pair_stats st;
};

static int ring_stream_parent(void *arg)
{
    struct stream_shared *sh = arg;
    struct ring_end tx = {.r = &sh->ring};
    while (!atomic_load(&sh->ready))
        ;
    atomic_store(&sh->t_start, bench_mono_ns());
    for (uint64_t i = 0; i < STREAM_ITEMS; i++) {
        while (!ring_push(&tx, i))
            ;
    }
    return 0;
}

static int ring_stream_child(void *arg)
{
    struct stream_shared *sh = arg;
    struct ring_end rx = {.r = &sh->ring};
    struct desc d;
    atomic_store(&sh->ready, 1);
    for (uint64_t i = 0; i < STREAM_ITEMS; i++) {
        while (!ring_pop(&rx, &d))
            ;
        if (!desc_ok(&d, i)) {
            fprintf(stderr,
                    "bench: ring_stream: descriptor %" PRIu64 " arrived where %" PRIu64
                    " was due (lost or reordered)\n",
                    d.seq, i);
            return -1;
        }
    }
    atomic_store(&sh->t_end, bench_mono_ns());
    return 0;
}

static void ring_stream_once(struct stream_result *out)
{
    struct stream_shared *sh = bench_shared_alloc(sizeof(*sh));
    if (bench_run_pair(ring_stream_parent, sh, ring_stream_child, sh, &out->st) != 0)
        bench_die("ring_stream failed");
    out->ns_per_item = (double)(sh->t_end - sh->t_start) / STREAM_ITEMS;
    bench_shared_free(sh, sizeof(*sh));
}

static int case_ring_stream(struct run *r)
{
    struct stream_result sr;
    ring_stream_once(&sr);
    fig(r, "mdesc_s", 1e3 / sr.ns_per_item, "M/s");
    fig(r, "ns_per_desc", sr.ns_per_item, "ns");
    fig(r, "vcsw", (double)(sr.st.parent.voluntary + sr.st.child.voluntary), "switches");
    note_preempt(r, &sr.st);
    return 0;
}

/* ---- futex_rtt, futex_sleep_rtt ---- */

/* One direction: the value posted, and the waiter's "I am (about to be)
 * asleep" flag, so that the poster enters the kernel only when needed. */
struct chan {
    _Alignas(128) _Atomic uint32_t word;
    _Atomic uint32_t sleeping;
};

struct chan_pair {
    struct chan req, resp;
    _Alignas(128) long child_waits, child_wakes;
};

static inline void chan_post(struct chan *c, uint32_t v, long *wakes)
{
    /* seq_cst store then seq_cst load, against the waiter's seq_cst store
     * of sleeping then load of word: one of the two sees the other. */
    atomic_store(&c->word, v);
    if (atomic_load(&c->sleeping)) {
        futex_wake(&c->word, 1);
        (*wakes)++;
    }
}

static inline int chan_wait(struct chan *c, uint32_t v, int spin, long *waits)
{
    for (int i = 0; i < spin; i++) {
        if (atomic_load_explicit(&c->word, memory_order_acquire) == v)
            return 0;
        cpu_relax();
    }
    for (;;) {
        atomic_store(&c->sleeping, 1);
        uint32_t w = atomic_load(&c->word);
        if (w == v) {
            atomic_store_explicit(&c->sleeping, 0, memory_order_relaxed);
            return 0;
        }
        (*waits)++;
        int rc = futex_wait(&c->word, w, NULL);
        atomic_store_explicit(&c->sleeping, 0, memory_order_relaxed);
        if (rc < 0 && rc != -EINTR) {
            fprintf(stderr, "bench: futex_wait: %s\n", strerror(-rc));
            return -1;
        }
    }
}

struct futex_arg {
    struct lat_arg a;
    int spin;
};

static int futex_parent(void *arg)
{
    struct futex_arg *fa = arg;
    struct lat_arg *a = &fa->a;
    struct chan_pair *sh = a->sh;
    for (uint32_t i = 1; i <= a->warmup + a->iters; i++) {
        uint64_t t0 = bench_ticks();
        chan_post(&sh->req, i, &a->wakes);
        if (chan_wait(&sh->resp, i, fa->spin, &a->waits) != 0)
            return -1;
        uint64_t t1 = bench_ticks();
        if (i > a->warmup)
            a->lat[i - a->warmup - 1] = t1 - t0;
    }
    return 0;
}

static int futex_child(void *arg)
{
    struct futex_arg *fa = arg;
    struct lat_arg *a = &fa->a;
    struct chan_pair *sh = a->sh;
    long waits = 0, wakes = 0;
    for (uint32_t i = 1; i <= a->warmup + a->iters; i++) {
        if (chan_wait(&sh->req, i, fa->spin, &waits) != 0)
            return -1;
        chan_post(&sh->resp, i, &wakes);
    }
    sh->child_waits = waits;
    sh->child_wakes = wakes;
    return 0;
}

static void futex_rtt_once(int spin, uint32_t warmup, uint32_t iters, struct lat_result *out)
{
    struct futex_arg fa = {.a = {.warmup = warmup, .iters = iters}, .spin = spin};
    struct chan_pair *sh = bench_shared_alloc(sizeof(*sh));
    fa.a.sh = sh;
    fa.a.lat = lat_alloc(iters);
    if (bench_run_pair(futex_parent, &fa, futex_child, &fa, &out->st) != 0)
        bench_die("futex round trip failed");
    lat_finish(&fa.a, out);
    out->waits = fa.a.waits + sh->child_waits;
    out->wakes = fa.a.wakes + sh->child_wakes;
    bench_shared_free(sh, sizeof(*sh));
}

static void fig_futex(struct run *r, const struct lat_result *lr)
{
    fig_latency(r, "", lr, true);
    fig(r, "waits_per_iter", (double)lr->waits / (double)lr->total_iters, "/iter");
    fig(r, "wakes_per_iter", (double)lr->wakes / (double)lr->total_iters, "/iter");
    fig(r, "vcsw_per_iter", vcsw_per_iter(lr), "/iter");
    note_preempt(r, &lr->st);
}

static int case_futex_rtt(struct run *r)
{
    struct lat_result lr = {0};
    futex_rtt_once(FUTEX_SPIN, FUTEX_WARMUP, FUTEX_ITERS, &lr);
    fig_futex(r, &lr);
    return 0;
}

static int case_futex_sleep_rtt(struct run *r)
{
    struct lat_result lr = {0};
    futex_rtt_once(0, SLEEP_WARMUP, SLEEP_ITERS, &lr);
    fig_futex(r, &lr);
    return 0;
}

/* ---- eventfd_rtt ---- */

struct efd_arg {
    struct lat_arg a;
    int req, resp;
};

static int efd_signal(int fd)
{
    uint64_t one = 1;
    for (;;) {
        ssize_t n = write(fd, &one, sizeof(one));
        if (n == (ssize_t)sizeof(one))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        fprintf(stderr, "bench: eventfd write: %s\n", strerror(errno));
        return -1;
    }
}

static int efd_wait(int fd)
{
    uint64_t v;
    for (;;) {
        ssize_t n = read(fd, &v, sizeof(v));
        if (n == (ssize_t)sizeof(v))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        fprintf(stderr, "bench: eventfd read: %s\n", strerror(errno));
        return -1;
    }
}

static int efd_parent(void *arg)
{
    struct efd_arg *ea = arg;
    struct lat_arg *a = &ea->a;
    for (uint32_t i = 0; i < a->warmup + a->iters; i++) {
        uint64_t t0 = bench_ticks();
        if (efd_signal(ea->req) != 0 || efd_wait(ea->resp) != 0)
            return -1;
        uint64_t t1 = bench_ticks();
        if (i >= a->warmup)
            a->lat[i - a->warmup] = t1 - t0;
    }
    return 0;
}

static int efd_child(void *arg)
{
    struct efd_arg *ea = arg;
    for (uint32_t i = 0; i < ea->a.warmup + ea->a.iters; i++) {
        if (efd_wait(ea->req) != 0 || efd_signal(ea->resp) != 0)
            return -1;
    }
    return 0;
}

static int case_eventfd_rtt(struct run *r)
{
    struct efd_arg ea = {.a = {.warmup = EFD_WARMUP, .iters = EFD_ITERS}};
    struct lat_result lr = {0};
    ea.req = eventfd(0, EFD_CLOEXEC);
    ea.resp = eventfd(0, EFD_CLOEXEC);
    if (ea.req < 0 || ea.resp < 0)
        bench_die("eventfd: %s", strerror(errno));
    ea.a.lat = lat_alloc(ea.a.iters);
    if (bench_run_pair(efd_parent, &ea, efd_child, &ea, &lr.st) != 0)
        bench_die("eventfd_rtt failed");
    lat_finish(&ea.a, &lr);
    close(ea.req);
    close(ea.resp);
    fig_latency(r, "", &lr, true);
    fig(r, "vcsw_per_iter", vcsw_per_iter(&lr), "/iter");
    note_preempt(r, &lr.st);
    return 0;
}

/* ---- sq_stream ---- */

struct sq_stream_arg {
    struct sq q;
    struct stream_shared *ctl; /* only ready, t_start, t_end are used */
};

static int sq_stream_parent(void *arg)
{
    struct sq_stream_arg *sa = arg;
    while (!atomic_load(&sa->ctl->ready))
        ;
    atomic_store(&sa->ctl->t_start, bench_mono_ns());
    for (uint64_t v = 1; v <= STREAM_ITEMS; v++) {
        int rc;
        while ((rc = sq_enqueue(&sa->q, v)) != 0) {
            if (rc != MBQ_SQ_ERR_QUEUE_IS_FULL) {
                fprintf(stderr, "bench: sq_enqueue: %d\n", rc);
                return -1;
            }
        }
    }
    return 0;
}

static int sq_stream_child(void *arg)
{
    struct sq_stream_arg *sa = arg;
    atomic_store(&sa->ctl->ready, 1);
    for (uint64_t v = 1; v <= STREAM_ITEMS; v++) {
        uint64_t got;
        while ((got = sq_dequeue(&sa->q)) == 0)
            ;
        if (got != v) {
            fprintf(stderr,
                    "bench: sq_stream: value %" PRIu64 " dequeued where %" PRIu64
                    " was due (lost or reordered)\n",
                    got, v);
            return -1;
        }
    }
    atomic_store(&sa->ctl->t_end, bench_mono_ns());
    return 0;
}

static int case_sq_stream(struct run *r)
{
    struct stream_result ring, sqr;
    ring_stream_once(&ring); /* the baseline, on the same placement */

    struct sq_stream_arg sa;
    int rc = sq_create(SQ_CAPACITY, &sa.q);
    if (rc != 0)
        bench_die("sq_create: %d", rc);
    sa.ctl = bench_shared_alloc(sizeof(*sa.ctl));
    if (bench_run_pair(sq_stream_parent, &sa, sq_stream_child, &sa, &sqr.st) != 0)
        bench_die("sq_stream failed");
    sqr.ns_per_item = (double)(sa.ctl->t_end - sa.ctl->t_start) / STREAM_ITEMS;
    if (sq_count(&sa.q) != 0)
        bench_die("sq_stream: %d values left in the queue", sq_count(&sa.q));
    bench_shared_free(sa.ctl, sizeof(*sa.ctl));
    sq_detach(&sa.q);

    fig(r, "mval_s", 1e3 / sqr.ns_per_item, "M/s");
    fig(r, "ns_per_val", sqr.ns_per_item, "ns");
    fig(r, "vcsw", (double)(sqr.st.parent.voluntary + sqr.st.child.voluntary), "switches");
    note_preempt(r, &sqr.st);
    fig(r, "ring_mdesc_s", 1e3 / ring.ns_per_item, "M/s");
    fig(r, "cost_x_ring", sqr.ns_per_item / ring.ns_per_item, "x");
    return 0;
}

/* ---- sq_rtt ---- */

struct sq_rtt_arg {
    struct lat_arg a;
    struct sq req, resp;
};

static int sq_rtt_parent(void *arg)
{
    struct sq_rtt_arg *sa = arg;
    struct lat_arg *a = &sa->a;
    for (uint64_t v = 1; v <= (uint64_t)a->warmup + a->iters; v++) {
        uint64_t t0 = bench_ticks();
        int rc = sq_enqueue(&sa->req, v);
        if (rc != 0) {
            fprintf(stderr, "bench: sq_rtt: sq_enqueue: %d\n", rc);
            return -1;
        }
        uint64_t got;
        while ((got = sq_dequeue(&sa->resp)) == 0)
            ;
        uint64_t t1 = bench_ticks();
        if (got != v) {
            fprintf(stderr, "bench: sq_rtt: response %" PRIu64 " for request %" PRIu64 "\n", got,
                    v);
            return -1;
        }
        if (v > a->warmup)
            a->lat[v - a->warmup - 1] = t1 - t0;
    }
    return 0;
}

static int sq_rtt_child(void *arg)
{
    struct sq_rtt_arg *sa = arg;
    for (uint64_t v = 1; v <= (uint64_t)sa->a.warmup + sa->a.iters; v++) {
        uint64_t got;
        while ((got = sq_dequeue(&sa->req)) == 0)
            ;
        if (got != v) {
            fprintf(stderr, "bench: sq_rtt: request %" PRIu64 " where %" PRIu64 " was due\n", got,
                    v);
            return -1;
        }
        int rc = sq_enqueue(&sa->resp, got);
        if (rc != 0) {
            fprintf(stderr, "bench: sq_rtt: sq_enqueue: %d\n", rc);
            return -1;
        }
    }
    return 0;
}

static int case_sq_rtt(struct run *r)
{
    struct lat_result ring = {0}, lr = {0};
    ring_rtt_once(&ring); /* the baseline, on the same placement */

    struct sq_rtt_arg sa = {.a = {.warmup = RTT_WARMUP, .iters = RTT_ITERS}};
    int rc = sq_create(SQ_CAPACITY, &sa.req);
    if (rc == 0)
        rc = sq_create(SQ_CAPACITY, &sa.resp);
    if (rc != 0)
        bench_die("sq_create: %d", rc);
    sa.a.lat = lat_alloc(sa.a.iters);
    if (bench_run_pair(sq_rtt_parent, &sa, sq_rtt_child, &sa, &lr.st) != 0)
        bench_die("sq_rtt failed");
    lat_finish(&sa.a, &lr);
    sq_detach(&sa.req);
    sq_detach(&sa.resp);

    fig_latency(r, "", &lr, true);
    fig(r, "vcsw_per_iter", vcsw_per_iter(&lr), "/iter");
    note_preempt(r, &lr.st);
    fig_latency(r, "ring_", &ring, false);
    fig(r, "p50_x_ring", lr.pct.p50 / ring.pct.p50, "x");
    fig(r, "p99_x_ring", lr.pct.p99 / ring.pct.p99, "x");
    return 0;
}

/* ---- buffer queue cases ----
 * Entries carry a handle (the sequence number) and a PTS; no pool is
 * involved, so these figures are the queue's own cost. */

#define BQ_CAPACITY 1024u
#define BQ_STREAM_ITEMS 5000000u

/* Fills in every field of an entry but the attachments (left as the caller
 * initialised them): the producer's work per item stays realistic without
 * what a fresh compound literal costs here (a rep stos of 128 bytes, then a
 * copy) or three calls into the time library dominating the figure. */
static inline void bq_item_set(struct bq_entry *e, uint64_t v, int64_t pts)
{
    e->handle = v;
    e->seq = 0;
    e->dts = (mbq_time){.value = (int64_t)v, .timescale = 90000, .flags = MBQ_TIME_FLAG_VALID};
    e->pts = (mbq_time){.value = pts, .timescale = 90000, .flags = MBQ_TIME_FLAG_VALID};
    e->duration = (mbq_time){.value = 3000, .timescale = 90000, .flags = MBQ_TIME_FLAG_VALID};
    e->size = 4096;
    e->pool_id = 0;
    e->flags = 0;
}

static void bq_make(struct bq *q, uint32_t order)
{
    int rc = bq_create(&(struct bq_params){.capacity = BQ_CAPACITY, .order = order}, q);
    if (rc != 0)
        bench_die("bq_create: %d", rc);
}

struct bq_rtt_arg {
    struct lat_arg a;
    struct bq req, resp;
    bool blocking;
};

static int bq_take(struct bq *q, bool blocking, struct bq_entry *e)
{
    if (blocking)
        return bq_dequeue_wait(q, e, 10000000000ll);
    int rc;
    while ((rc = bq_dequeue(q, e)) == -EAGAIN)
        ;
    return rc;
}

static int bq_rtt_parent(void *arg)
{
    struct bq_rtt_arg *ba = arg;
    struct lat_arg *a = &ba->a;
    for (uint64_t v = 1; v <= (uint64_t)a->warmup + a->iters; v++) {
        struct bq_entry e = {0}, got;
        bq_item_set(&e, v, (int64_t)v);
        uint64_t t0 = bench_ticks();
        int rc = bq_enqueue(&ba->req, &e);
        if (rc == 0)
            rc = bq_take(&ba->resp, ba->blocking, &got);
        uint64_t t1 = bench_ticks();
        if (rc != 0 || got.handle != v) {
            fprintf(stderr, "bench: bq_rtt: rc %d, response %" PRIu64 " for %" PRIu64 "\n", rc,
                    got.handle, v);
            return -1;
        }
        if (v > a->warmup)
            a->lat[v - a->warmup - 1] = t1 - t0;
    }
    return 0;
}

static int bq_rtt_child(void *arg)
{
    struct bq_rtt_arg *ba = arg;
    for (uint64_t v = 1; v <= (uint64_t)ba->a.warmup + ba->a.iters; v++) {
        struct bq_entry got;
        int rc = bq_take(&ba->req, ba->blocking, &got);
        if (rc == 0)
            rc = bq_enqueue(&ba->resp, &got);
        if (rc != 0 || got.handle != v) {
            fprintf(stderr, "bench: bq_rtt child: rc %d, request %" PRIu64 " for %" PRIu64 "\n",
                    rc, got.handle, v);
            return -1;
        }
    }
    return 0;
}

static void bq_rtt_once(bool blocking, uint32_t warmup, uint32_t iters, struct lat_result *out)
{
    struct bq_rtt_arg ba = {.a = {.warmup = warmup, .iters = iters}, .blocking = blocking};
    bq_make(&ba.req, BQ_ORDER_FIFO);
    bq_make(&ba.resp, BQ_ORDER_FIFO);
    ba.a.lat = lat_alloc(iters);
    if (bench_run_pair(bq_rtt_parent, &ba, bq_rtt_child, &ba, &out->st) != 0)
        bench_die("bq_rtt failed");
    lat_finish(&ba.a, out);
    bq_detach(&ba.req);
    bq_detach(&ba.resp);
}

static int case_bq_rtt(struct run *r)
{
    struct lat_result ring = {0}, lr = {0};
    ring_rtt_once(&ring);
    bq_rtt_once(false, RTT_WARMUP, RTT_ITERS, &lr);
    fig_latency(r, "", &lr, true);
    fig(r, "vcsw_per_iter", vcsw_per_iter(&lr), "/iter");
    note_preempt(r, &lr.st);
    fig_latency(r, "ring_", &ring, false);
    fig(r, "p50_x_ring", lr.pct.p50 / ring.pct.p50, "x");
    fig(r, "p99_x_ring", lr.pct.p99 / ring.pct.p99, "x");
    return 0;
}

static int case_bq_block_rtt(struct run *r)
{
    struct lat_result base = {0}, lr = {0};
    futex_rtt_once(FUTEX_SPIN, FUTEX_WARMUP, FUTEX_ITERS, &base);
    bq_rtt_once(true, FUTEX_WARMUP, FUTEX_ITERS, &lr);
    fig_latency(r, "", &lr, true);
    fig(r, "vcsw_per_iter", vcsw_per_iter(&lr), "/iter");
    note_preempt(r, &lr.st);
    fig_latency(r, "futex_", &base, false);
    fig(r, "p50_x_futex", lr.pct.p50 / base.pct.p50, "x");
    fig(r, "p99_x_futex", lr.pct.p99 / base.pct.p99, "x");
    return 0;
}

struct bq_stream_arg {
    struct bq q;
    struct stream_shared *ctl;
    bool reorder; /* mostly ordered: B-frame-like groups of four, 0 3 1 2 */
};

static int64_t bq_stream_pts(const struct bq_stream_arg *ba, uint64_t v)
{
    static const int64_t shuffle[4] = {0, 3, 1, 2};
    uint64_t i = v - 1;
    return ba->reorder ? (int64_t)((i & ~3ull) + (uint64_t)shuffle[i & 3]) : (int64_t)i;
}

static int bq_stream_parent(void *arg)
{
    struct bq_stream_arg *ba = arg;
    while (!atomic_load(&ba->ctl->ready))
        ;
    atomic_store(&ba->ctl->t_start, bench_mono_ns());
    struct bq_entry e = {0};
    for (uint64_t v = 1; v <= BQ_STREAM_ITEMS; v++) {
        bq_item_set(&e, v, bq_stream_pts(ba, v));
        int rc;
        while ((rc = bq_enqueue(&ba->q, &e)) != 0) {
            if (rc != MBQ_BQ_ERR_QUEUE_IS_FULL) {
                fprintf(stderr, "bench: bq_enqueue: %d\n", rc);
                return -1;
            }
        }
    }
    return 0;
}

static int bq_stream_child(void *arg)
{
    struct bq_stream_arg *ba = arg;
    atomic_store(&ba->ctl->ready, 1);
    int64_t last = -1;
    for (uint64_t n = 1; n <= BQ_STREAM_ITEMS; n++) {
        struct bq_entry e;
        while (bq_dequeue(&ba->q, &e) == -EAGAIN)
            ;
        /* FIFO: exactly in order. Sorted: never a key below one already
         * dequeued by more than the reorder window allows. */
        int64_t pts = e.pts.value;
        if (ba->reorder ? pts < last - 3 : (e.handle != n || pts != last + 1)) {
            fprintf(stderr, "bench: bq_stream: entry %" PRIu64 " (pts %" PRId64
                            ") out of order after pts %" PRId64 "\n",
                    e.handle, pts, last);
            return -1;
        }
        if (pts > last)
            last = pts;
    }
    atomic_store(&ba->ctl->t_end, bench_mono_ns());
    return 0;
}

static double bq_stream_once(bool sorted, struct stream_result *out)
{
    struct bq_stream_arg ba = {.reorder = sorted};
    bq_make(&ba.q, sorted ? BQ_ORDER_PTS : BQ_ORDER_FIFO);
    ba.ctl = bench_shared_alloc(sizeof(*ba.ctl));
    if (bench_run_pair(bq_stream_parent, &ba, bq_stream_child, &ba, &out->st) != 0)
        bench_die("bq_stream failed");
    out->ns_per_item = (double)(ba.ctl->t_end - ba.ctl->t_start) / BQ_STREAM_ITEMS;
    if (bq_count(&ba.q) != 0)
        bench_die("bq_stream: entries left in the queue");
    bench_shared_free(ba.ctl, sizeof(*ba.ctl));
    bq_detach(&ba.q);
    return 1e3 / out->ns_per_item;
}

static int case_bq_stream(struct run *r)
{
    struct stream_result ring, fifo, sorted;
    ring_stream_once(&ring);
    bq_stream_once(false, &fifo);
    bq_stream_once(true, &sorted);
    fig(r, "fifo_mbuf_s", 1e3 / fifo.ns_per_item, "M/s");
    fig(r, "sorted_mbuf_s", 1e3 / sorted.ns_per_item, "M/s");
    note_preempt(r, &fifo.st);
    fig(r, "ring_mdesc_s", 1e3 / ring.ns_per_item, "M/s");
    fig(r, "fifo_rate_x_ring", ring.ns_per_item / fifo.ns_per_item, "x");
    fig(r, "sorted_rate_x_fifo", fifo.ns_per_item / sorted.ns_per_item, "x");
    return 0;
}

/* ---- driver ---- */

struct bench_case {
    const char *name;
    const char *what;
    int (*fn)(struct run *r);
};

static const struct bench_case cases[] = {
    {"ring_rtt", "raw SPSC ring request/response, 64 B descriptors, busy-poll (baseline)",
     case_ring_rtt},
    {"ring_stream", "raw SPSC ring one way, 64 B descriptors, publish per descriptor (baseline)",
     case_ring_stream},
    {"futex_rtt", "spin ~25 us then FUTEX_WAIT, wake only a flagged sleeper (baseline)",
     case_futex_rtt},
    {"futex_sleep_rtt", "FUTEX_WAIT without spinning: a real cross-vCPU wake (baseline)",
     case_futex_sleep_rtt},
    {"eventfd_rtt", "two eventfds, blocking read() (trigger-delivery baseline)", case_eventfd_rtt},
    {"sq_stream", "mbq simple queue one way, 8 B values, vs ring_stream in the same run",
     case_sq_stream},
    {"sq_rtt", "mbq simple queue request/response, busy-poll, vs ring_rtt in the same run",
     case_sq_rtt},
    {"bq_rtt", "mbq buffer queue hand-off request/response, busy-poll, vs ring_rtt",
     case_bq_rtt},
    {"bq_block_rtt", "mbq buffer queue blocking dequeue (spin then futex), vs futex_rtt",
     case_bq_block_rtt},
    {"bq_stream", "mbq buffer queue one way: FIFO vs ring_stream, sorted (mostly ordered) vs FIFO",
     case_bq_stream},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static int runs_wanted(void)
{
    const char *s = getenv("BENCH_RUNS");
    if (!s || !*s)
        return RUNS_DEFAULT;
    char *end;
    long n = strtol(s, &end, 10);
    if (*end || n < 1 || n > RUNS_MAX)
        bench_die("BENCH_RUNS must be 1..%d", RUNS_MAX);
    return (int)n;
}

static void run_case(const struct bench_case *c, int runs)
{
    int first = nfigs;
    uint64_t t0 = bench_mono_ns();
    printf("\n== %s: %s\n", c->name, c->what);
    for (int i = 0; i < runs; i++) {
        double probe = probe_p50();
        int state = probe_state(probe);
        probe_states[state]++;
        struct run r = {.case_name = c->name};
        double steal0 = bench_steal_ms();
        uint64_t w0 = bench_mono_ns();
        if (c->fn(&r) != 0)
            bench_die("%s: run %d failed", c->name, i + 1);
        double wall_ms = (double)(bench_mono_ns() - w0) / 1e6;
        double steal = steal0 < 0 ? -1 : bench_steal_ms() - steal0;
        if (steal > 0)
            steal_total_ms += steal;
        wall_total_ms += wall_ms;
        /* Steal is counted in clock ticks (10 ms), so short runs read 0 or a tick. */
        double steal_pct = steal > 0 ? 100 * steal / (2 * wall_ms) : 0;
        printf("# run %d/%d, probe %.0f ns (%s), host steal %.0f ms (%.0f%%)%s:%s\n", i + 1, runs,
               probe, probe_state_names[state], steal, steal_pct,
               steal_pct > 5 ? " DISTURBED" : "", r.line);
    }
    for (int i = first; i < nfigs; i++) {
        struct figure *f = &figs[i];
        double v[RUNS_MAX];
        memcpy(v, f->v, sizeof(double) * (size_t)f->n);
        f->med = bench_median(v, (size_t)f->n);
        f->lo = v[0];
        f->hi = v[f->n - 1];
        bench_result_range(f->key, f->med, f->lo, f->hi, f->n, f->unit);
    }
    printf("# %s took %.1f s\n", c->name, (double)(bench_mono_ns() - t0) / 1e9);
}

static void fmt_value(char *buf, size_t size, double v, const char *unit)
{
    if (strcmp(unit, "ns") == 0) {
        if (v >= 1e6)
            snprintf(buf, size, "%.2f ms", v / 1e6);
        else if (v >= 10000)
            snprintf(buf, size, "%.1f µs", v / 1000);
        else
            snprintf(buf, size, "%.0f ns", v);
    } else if (strcmp(unit, "x") == 0) {
        snprintf(buf, size, "%.2f×", v);
    } else {
        snprintf(buf, size, "%.3g %s", v, unit);
    }
}

static void print_summary(int runs)
{
    printf("\n## Summary\n\nMedian of %d runs per figure. Placement probes: %d near, %d mid, "
           "%d far; "
           "host steal on CPUs %d-%d during the runs: %.0f ms (%.1f%% of their time; runs over 5%% "
           "are marked DISTURBED above).\n\n",
           runs, probe_states[0], probe_states[1], probe_states[2], BENCH_PARENT_CPU,
           BENCH_CHILD_CPU, steal_total_ms,
           wall_total_ms > 0 ? 100 * steal_total_ms / (2 * wall_total_ms) : 0.0);
    printf("| figure | median | min – max |\n|---|---|---|\n");
    for (int i = 0; i < nfigs; i++) {
        const struct figure *f = &figs[i];
        char med[32], lo[32], hi[32];
        fmt_value(med, sizeof(med), f->med, f->unit);
        fmt_value(lo, sizeof(lo), f->lo, f->unit);
        fmt_value(hi, sizeof(hi), f->hi, f->unit);
        printf("| %s | %s | %s – %s |\n", f->key, med, lo, hi);
    }
    printf("\n*_x_ring: mbq cost ÷ raw ring cost in the same run (1.00× = raw ring speed).\n");
}

static void usage(FILE *to)
{
    fprintf(to, "usage: bench_dataplane [all | list | CASE...]   (BENCH_RUNS=n, default %d)\n",
            RUNS_DEFAULT);
    for (size_t i = 0; i < NCASES; i++)
        fprintf(to, "  %-16s %s\n", cases[i].name, cases[i].what);
}

int main(int argc, char **argv)
{
    bool selected[NCASES] = {false};
    bool any = false;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "list") == 0 || strcmp(argv[i], "-h") == 0 ||
            strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        bool found = false;
        for (size_t k = 0; k < NCASES; k++) {
            if (strcmp(argv[i], "all") == 0 || strcmp(argv[i], cases[k].name) == 0) {
                selected[k] = true;
                found = true;
            }
        }
        if (!found) {
            fprintf(stderr, "bench_dataplane: unknown case '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        any = true;
    }
    if (!any)
        for (size_t k = 0; k < NCASES; k++)
            selected[k] = true;

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 2)
        bench_die("needs CPUs %d and %d online (found %ld)", BENCH_PARENT_CPU, BENCH_CHILD_CPU,
                  ncpu);
    int runs = runs_wanted();
    printf("# bench_dataplane: parent on CPU %d, child on CPU %d, %d runs per case; timer %s "
           "(%.4f ns/tick)\n",
           BENCH_PARENT_CPU, BENCH_CHILD_CPU, runs,
           bench_use_tsc() ? "lfence;rdtsc" : "CLOCK_MONOTONIC", bench_ns_per_tick());
    for (size_t k = 0; k < NCASES; k++)
        if (selected[k])
            run_case(&cases[k], runs);
    print_summary(runs);
    return 0;
}
