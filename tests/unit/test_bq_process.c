/* Buffer queues across real processes.
 *
 * Every case creates its objects in the parent and fork()s the producers and
 * consumers, which bq_attach()/pool_attach() the inherited fd as an
 * unrelated process would. Children report through their exit status (the
 * OUT_* codes below); the parent waits for each with a deadline (a pidfd
 * polled with a timeout) and kills it if the deadline passes, so a bug shows
 * up as a failure, never as a hang. There is no sleep(): peers synchronise
 * through the queues themselves (bq_dequeue_wait, end-of-data) and retry a
 * full queue or an exhausted pool with sched_yield(), bounded by a stall
 * deadline.
 *
 * The seed of the pseudo-random cases is printed; MBQ_TEST_SEED=<n> replays
 * a run. */
#include "check.h"

#include "bq_layout.h"
#include "futex.h"
#include "pool_layout.h"

#include <mbq/status.h>

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define STALL_NS 20000000000ull     /* 20 s without progress: the peer is stuck */
#define DEQ_TIMEOUT_NS 20000000000ll /* a consumer waits this long for an entry */
#define CHILD_DEADLINE_MS 120000     /* the parent waits this long for a child */

enum {
    OUT_OK = 0,
    OUT_ATTACH = 10,
    OUT_ENQUEUE = 11,
    OUT_DEQUEUE = 12,
    OUT_STALLED = 13,
    OUT_WRONG_ENTRY = 14,
    OUT_WRONG_ORDER = 15,
    OUT_DUPLICATE = 16,
    OUT_MISSING = 17,
    OUT_EXTRA = 18,
    OUT_POOL = 19,
    OUT_PATTERN = 20,
    OUT_EOD = 21,
    OUT_NOMEM = 22,
};

static const char *out_name(int code)
{
    switch (code) {
    case OUT_OK: return "ok";
    case OUT_ATTACH: return "attach failed";
    case OUT_ENQUEUE: return "enqueue failed";
    case OUT_DEQUEUE: return "dequeue failed";
    case OUT_STALLED: return "stalled";
    case OUT_WRONG_ENTRY: return "wrong entry contents";
    case OUT_WRONG_ORDER: return "wrong order";
    case OUT_DUPLICATE: return "duplicate";
    case OUT_MISSING: return "missing entries";
    case OUT_EXTRA: return "extra entries";
    case OUT_POOL: return "pool call failed";
    case OUT_PATTERN: return "buffer pattern mismatch";
    case OUT_EOD: return "end-of-data state wrong";
    case OUT_NOMEM: return "out of memory";
    default: return "?";
    }
}

/* ---- helpers -------------------------------------------------------------- */

static uint64_t test_seed(void)
{
    const char *s = getenv("MBQ_TEST_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    return mono_ns() ^ ((uint64_t)getpid() << 32);
}

/* splitmix64: small, seedable, good enough for test data. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

/* Forks a child that dies with its parent and, as a last resort, after
 * alarm_s seconds. The child runs fn and exits with its return value. */
static pid_t spawn(int (*fn)(void *), void *arg, unsigned alarm_s)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(alarm_s);
    _exit(fn(arg));
}

/* Waits for pid at most timeout_ms (then kills it). Returns the wait status,
 * or -1 if it had to be killed. */
static int reap(pid_t pid, int timeout_ms)
{
    int status = 0;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000u;
        for (;;) {
            uint64_t now = mono_ns();
            if (now >= deadline) {
                close(pfd);
                fprintf(stderr, "child %d: no exit after %d ms, killing it\n", (int)pid,
                        timeout_ms);
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                return -1;
            }
            struct pollfd p = {.fd = pfd, .events = POLLIN};
            int r = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
            if (r > 0)
                break;
            if (r < 0 && errno != EINTR)
                break;
        }
        close(pfd);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* True when the child exited with OUT_OK; otherwise says why. */
static bool child_ok(const char *who, int status)
{
    if (status == -1)
        return false;
    if (WIFEXITED(status) && WEXITSTATUS(status) == OUT_OK)
        return true;
    if (WIFEXITED(status))
        fprintf(stderr, "%s: exit %d (%s)\n", who, WEXITSTATUS(status),
                out_name(WEXITSTATUS(status)));
    else if (WIFSIGNALED(status))
        fprintf(stderr, "%s: killed by signal %d\n", who, WTERMSIG(status));
    return false;
}

static void *shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static struct bq_entry mk_entry(uint64_t handle, int64_t pts, uint64_t size)
{
    struct bq_entry e;
    memset(&e, 0, sizeof(e));
    e.handle = handle;
    e.pts = mbq_time_make(pts, 1000);
    e.dts = mbq_time_make(pts - 1, 1000);
    e.duration = mbq_time_make(33, 1000);
    e.size = size;
    e.pool_id = 1;
    memcpy(e.attachments, &handle, sizeof(handle));
    return e;
}

/* Enqueues, retrying a full queue with sched_yield() until STALL_NS pass. */
static int enqueue_retry(struct bq *q, const struct bq_entry *e)
{
    uint64_t since = 0;
    for (unsigned spins = 0;; spins++) {
        int r = bq_enqueue(q, e);
        if (r != MBQ_BQ_ERR_QUEUE_IS_FULL)
            return r;
        sched_yield();
        if ((spins & 255) == 255) {
            uint64_t now = mono_ns();
            if (!since)
                since = now;
            else if (now - since > STALL_NS)
                return -ETIMEDOUT;
        }
    }
}

static int create_queue(uint32_t capacity, uint32_t order, struct bq *q)
{
    struct bq_params p = {.capacity = capacity, .order = order, .full_policy = BQ_FULL_FAIL};
    return bq_create(&p, q);
}

/* ---- 1. FIFO, one producer, one consumer ------------------------------------ */

struct fifo_args {
    int fd;
    uint64_t n;
};

static int fifo_producer(void *arg)
{
    const struct fifo_args *a = arg;
    struct bq q;
    if (bq_attach(a->fd, &q) != 0)
        return OUT_ATTACH;
    for (uint64_t i = 1; i <= a->n; i++) {
        struct bq_entry e = mk_entry(i, (int64_t)i, i & 0xffff);
        int r = enqueue_retry(&q, &e);
        if (r == -ETIMEDOUT)
            return OUT_STALLED;
        if (r != 0) {
            fprintf(stderr, "producer: enqueue %llu: %d\n", (unsigned long long)i, r);
            return OUT_ENQUEUE;
        }
    }
    if (bq_mark_end_of_data(&q) != 0)
        return OUT_EOD;
    bq_detach(&q);
    return OUT_OK;
}

static int fifo_consumer(void *arg)
{
    const struct fifo_args *a = arg;
    struct bq q;
    if (bq_attach(a->fd, &q) != 0)
        return OUT_ATTACH;
    uint64_t want = 1;
    for (;;) {
        struct bq_entry e;
        int r = bq_dequeue_wait(&q, &e, DEQ_TIMEOUT_NS);
        if (r == -ENODATA)
            break;
        if (r != 0) {
            fprintf(stderr, "consumer: dequeue_wait after %llu: %d\n",
                    (unsigned long long)(want - 1), r);
            return r == -ETIMEDOUT ? OUT_STALLED : OUT_DEQUEUE;
        }
        if (e.handle != want) {
            fprintf(stderr, "consumer: got handle %llu, expected %llu\n",
                    (unsigned long long)e.handle, (unsigned long long)want);
            return e.handle < want ? OUT_DUPLICATE : OUT_WRONG_ORDER;
        }
        uint64_t att;
        memcpy(&att, e.attachments, sizeof(att));
        if (e.pts.value != (int64_t)want || e.dts.value != (int64_t)want - 1 ||
            e.size != (want & 0xffff) || att != want || e.seq != want)
            return OUT_WRONG_ENTRY;
        want++;
    }
    if (want - 1 != a->n)
        return want - 1 < a->n ? OUT_MISSING : OUT_EXTRA;
    if (!bq_is_at_end_of_data(&q) || bq_count(&q) != 0)
        return OUT_EOD;
    bq_detach(&q);
    return OUT_OK;
}

static void test_fifo_1m_producer_to_consumer(void)
{
    const uint64_t n = 1000000;
    struct bq q;
    REQUIRE(create_queue(1024, BQ_ORDER_FIFO, &q) == 0);
    struct fifo_args a = {.fd = q.seg.fd, .n = n};
    uint64_t t0 = mono_ns();
    pid_t cons = spawn(fifo_consumer, &a, 150);
    pid_t prod = spawn(fifo_producer, &a, 150);
    REQUIRE(cons > 0 && prod > 0);
    CHECK(child_ok("producer", reap(prod, CHILD_DEADLINE_MS)));
    CHECK(child_ok("consumer", reap(cons, CHILD_DEADLINE_MS)));
    uint64_t ns = mono_ns() - t0;

    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.enqueued, n);
    CHECK_EQ(st.dequeued, n);
    CHECK_EQ(st.count, 0);
    CHECK_EQ(st.total_size, 0);
    CHECK(st.end_of_data);
    CHECK_EQ(st.repairs, 0);
    CHECK_EQ(st.corruptions, 0);
    CHECK(st.high_water <= 1024 && st.high_water >= 1);
    CHECK_EQ(mbq_time_compare(st.duration, MBQ_TIME_ZERO), 0);
    printf("# %llu entries in %.1f ms (%.2f M/s), high water %llu\n", (unsigned long long)n,
           (double)ns / 1e6, (double)n * 1e3 / (double)ns, (unsigned long long)st.high_water);
    bq_detach(&q);
}

/* ---- 2. sorted by PTS ------------------------------------------------------- */

/* The workload a producer and a consumer both derive from the seed: entry k
 * (in enqueue order) has a handle (a permutation of 1..n) and a PTS. */
struct sorted_plan {
    uint64_t n;
    uint64_t *handle;
    int64_t *pts;
};

enum pts_shape {
    PTS_BATCHES,   /* windows of `window` entries, random inside, windows overlapping */
    PTS_RANDOM,    /* uniformly random over a small range (duplicates) */
    PTS_JITTERED,  /* increasing with a small random jitter: mostly ordered */
};

static bool plan_make(struct sorted_plan *p, uint64_t n, uint64_t seed, enum pts_shape shape,
                      uint64_t window)
{
    p->n = n;
    p->handle = calloc(n + 1, sizeof(*p->handle));
    p->pts = calloc(n + 1, sizeof(*p->pts));
    if (!p->handle || !p->pts)
        return false;
    uint64_t s = seed;
    for (uint64_t i = 0; i < n; i++)
        p->handle[i] = i + 1;
    for (uint64_t i = n - 1; i > 0; i--) {
        uint64_t j = rng_below(&s, i + 1), t = p->handle[i];
        p->handle[i] = p->handle[j];
        p->handle[j] = t;
    }
    for (uint64_t i = 0; i < n; i++) {
        switch (shape) {
        case PTS_BATCHES: {
            /* batch b draws from [b*window, b*window + 2*window): half the
             * range overlaps the next batch, and values repeat */
            uint64_t b = i / window;
            p->pts[i] = (int64_t)(b * window + rng_below(&s, 2 * window));
            break;
        }
        case PTS_RANDOM:
            p->pts[i] = (int64_t)rng_below(&s, n / 2 + 1);
            break;
        case PTS_JITTERED:
            p->pts[i] = (int64_t)(i * 10) + (int64_t)rng_below(&s, 61) - 30;
            break;
        }
    }
    return true;
}

static void plan_free(struct sorted_plan *p)
{
    free(p->handle);
    free(p->pts);
}

struct sorted_args {
    int fd;
    uint64_t n, seed, window;
    enum pts_shape shape;
};

static int sorted_producer(void *arg)
{
    const struct sorted_args *a = arg;
    struct sorted_plan p;
    if (!plan_make(&p, a->n, a->seed, a->shape, a->window))
        return OUT_NOMEM;
    struct bq q;
    if (bq_attach(a->fd, &q) != 0)
        return OUT_ATTACH;
    for (uint64_t i = 0; i < p.n; i++) {
        struct bq_entry e = mk_entry(p.handle[i], p.pts[i], p.handle[i] * 7);
        int r = enqueue_retry(&q, &e);
        if (r == -ETIMEDOUT)
            return OUT_STALLED;
        if (r != 0) {
            fprintf(stderr, "sorted producer: enqueue #%llu: %d\n", (unsigned long long)i, r);
            return OUT_ENQUEUE;
        }
    }
    if (bq_mark_end_of_data(&q) != 0)
        return OUT_EOD;
    bq_detach(&q);
    plan_free(&p);
    return OUT_OK;
}

static const int64_t *sort_keys;
static int cmp_by_pts_then_index(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    if (sort_keys[x] != sort_keys[y])
        return sort_keys[x] < sort_keys[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Drains a queue that is complete (end of data marked) and compares it with
 * the stable sort of the plan: exact order, each handle once. */
static int sorted_drainer(void *arg)
{
    const struct sorted_args *a = arg;
    struct sorted_plan p;
    if (!plan_make(&p, a->n, a->seed, a->shape, a->window))
        return OUT_NOMEM;
    uint64_t *order = malloc(p.n * sizeof(*order));
    uint8_t *seen = calloc(p.n + 1, 1);
    if (!order || !seen)
        return OUT_NOMEM;
    for (uint64_t i = 0; i < p.n; i++)
        order[i] = i;
    sort_keys = p.pts;
    qsort(order, p.n, sizeof(*order), cmp_by_pts_then_index);

    struct bq q;
    if (bq_attach(a->fd, &q) != 0)
        return OUT_ATTACH;
    if (!bq_contains_end_of_data(&q) || bq_count(&q) != (int64_t)p.n)
        return OUT_EOD;
    int64_t prev = INT64_MIN;
    uint64_t got = 0;
    for (;;) {
        struct bq_entry e;
        int r = bq_dequeue_wait(&q, &e, DEQ_TIMEOUT_NS);
        if (r == -ENODATA)
            break;
        if (r != 0)
            return OUT_DEQUEUE;
        if (e.handle == 0 || e.handle > p.n)
            return OUT_WRONG_ENTRY;
        if (seen[e.handle]++)
            return OUT_DUPLICATE;
        if (e.pts.value < prev) {
            fprintf(stderr, "drainer: pts %lld after %lld\n", (long long)e.pts.value,
                    (long long)prev);
            return OUT_WRONG_ORDER;
        }
        prev = e.pts.value;
        if (got >= p.n)
            return OUT_EXTRA;
        uint64_t k = order[got];
        if (e.handle != p.handle[k] || e.pts.value != p.pts[k] || e.size != e.handle * 7) {
            fprintf(stderr, "drainer: #%llu is handle %llu pts %lld, expected %llu pts %lld\n",
                    (unsigned long long)got, (unsigned long long)e.handle,
                    (long long)e.pts.value, (unsigned long long)p.handle[k], (long long)p.pts[k]);
            return OUT_WRONG_ORDER; /* equal keys out of enqueue order: not stable */
        }
        got++;
    }
    if (got != p.n)
        return OUT_MISSING;
    bq_detach(&q);
    free(order);
    free(seen);
    plan_free(&p);
    return OUT_OK;
}

static void run_sorted_complete(uint64_t n, enum pts_shape shape, uint64_t window)
{
    uint64_t seed = test_seed();
    printf("# seed %llu\n", (unsigned long long)seed);
    struct bq q;
    REQUIRE(create_queue((uint32_t)n, BQ_ORDER_PTS, &q) == 0);
    struct sorted_args a = {.fd = q.seg.fd, .n = n, .seed = seed, .window = window,
                            .shape = shape};
    uint64_t t0 = mono_ns();
    pid_t prod = spawn(sorted_producer, &a, 150);
    REQUIRE(prod > 0);
    CHECK(child_ok("producer", reap(prod, CHILD_DEADLINE_MS)));
    uint64_t t1 = mono_ns();
    CHECK_EQ(bq_count(&q), n);
    CHECK(bq_contains_end_of_data(&q));
    pid_t cons = spawn(sorted_drainer, &a, 150);
    REQUIRE(cons > 0);
    CHECK(child_ok("drainer", reap(cons, CHILD_DEADLINE_MS)));
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.enqueued, n);
    CHECK_EQ(st.dequeued, n);
    CHECK_EQ(st.count, 0);
    CHECK_EQ(st.repairs, 0);
    printf("# %llu entries: enqueue %.1f ms, drain %.1f ms\n", (unsigned long long)n,
           (double)(t1 - t0) / 1e6, (double)(mono_ns() - t1) / 1e6);
    bq_detach(&q);
}

/* 100,000 random PTS, enqueued in random order within overlapping batches of
 * 256 (every insertion is out of order by up to ~2 batches, which keeps the
 * shifting bounded), then drained after end of data. */
static void test_sorted_pts_random_batches(void)
{
    run_sorted_complete(100000, PTS_BATCHES, 256);
}

/* Fully random PTS over a range with many duplicates: insertions reach deep
 * into the queue (O(n) each, hence the smaller n). Checks stability too. */
static void test_sorted_pts_fully_random(void)
{
    run_sorted_complete(8000, PTS_RANDOM, 0);
}

/* Streaming: producer and consumer run together on a queue much smaller
 * than the stream; input is mostly ordered. No loss, no duplicate; once the
 * consumer has seen end of data (the producer marks it after its last
 * enqueue) what remains is drained in non-decreasing PTS order. */
#define STREAM_REMAINDER 256u /* < the queue's capacity */

struct stream_result {
    _Atomic uint64_t dequeued, after_eod;
};

struct stream_args {
    struct sorted_args s;
    struct stream_result *res;
};

static int sorted_stream_consumer(void *arg)
{
    const struct stream_args *a = arg;
    uint8_t *seen = calloc(a->s.n + 1, 1);
    if (!seen)
        return OUT_NOMEM;
    struct bq q;
    if (bq_attach(a->s.fd, &q) != 0)
        return OUT_ATTACH;
    int64_t prev = INT64_MIN;
    uint64_t got = 0, after = 0;
    for (;;) {
        if (got == a->s.n - STREAM_REMAINDER) {
            /* Let the producer finish, so that a real remainder (inserted
             * out of order, with no consumer racing) is drained below. It
             * fits: at most STREAM_REMAINDER entries are still to come. */
            uint64_t t0 = mono_ns();
            while (!bq_contains_end_of_data(&q)) {
                if (mono_ns() - t0 > STALL_NS)
                    return OUT_STALLED;
                sched_yield();
            }
        }
        bool eod = bq_contains_end_of_data(&q); /* before the dequeue */
        struct bq_entry e;
        int r = bq_dequeue_wait(&q, &e, DEQ_TIMEOUT_NS);
        if (r == -ENODATA)
            break;
        if (r != 0)
            return r == -ETIMEDOUT ? OUT_STALLED : OUT_DEQUEUE;
        if (e.handle == 0 || e.handle > a->s.n || e.size != e.handle * 7)
            return OUT_WRONG_ENTRY;
        if (seen[e.handle]++)
            return OUT_DUPLICATE;
        if (eod) {
            if (after == 0)
                prev = INT64_MIN; /* the remainder starts here */
            if (e.pts.value < prev) {
                fprintf(stderr, "stream: after end of data, pts %lld follows %lld\n",
                        (long long)e.pts.value, (long long)prev);
                return OUT_WRONG_ORDER;
            }
            after++;
        }
        prev = e.pts.value;
        got++;
    }
    atomic_store(&a->res->dequeued, got);
    atomic_store(&a->res->after_eod, after);
    if (got != a->s.n)
        return got < a->s.n ? OUT_MISSING : OUT_EXTRA;
    bq_detach(&q);
    free(seen);
    return OUT_OK;
}

static void test_sorted_pts_streaming(void)
{
    uint64_t seed = test_seed();
    printf("# seed %llu\n", (unsigned long long)seed);
    const uint64_t n = 200000;
    struct bq q;
    REQUIRE(create_queue(512, BQ_ORDER_PTS, &q) == 0);
    struct stream_result *res = shared_alloc(sizeof(*res));
    REQUIRE(res);
    struct stream_args a = {
        .s = {.fd = q.seg.fd, .n = n, .seed = seed, .shape = PTS_JITTERED},
        .res = res,
    };
    pid_t cons = spawn(sorted_stream_consumer, &a, 150);
    pid_t prod = spawn(sorted_producer, &a.s, 150);
    REQUIRE(cons > 0 && prod > 0);
    CHECK(child_ok("producer", reap(prod, CHILD_DEADLINE_MS)));
    CHECK(child_ok("consumer", reap(cons, CHILD_DEADLINE_MS)));
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.enqueued, n);
    CHECK_EQ(st.dequeued, n);
    CHECK_EQ(st.count, 0);
    CHECK(atomic_load(&res->after_eod) >= STREAM_REMAINDER); /* more if the consumer lagged */
    printf("# %llu dequeued, %llu of them after end of data, high water %llu\n",
           (unsigned long long)atomic_load(&res->dequeued),
           (unsigned long long)atomic_load(&res->after_eod), (unsigned long long)st.high_water);
    munmap(res, sizeof(*res));
    bq_detach(&q);
}

/* ---- 3. two producers, two consumers ---------------------------------------- */

#define MP_PER_PRODUCER 200000u

struct mp_shared {
    _Atomic uint8_t seen[2][MP_PER_PRODUCER + 1];
    _Atomic uint64_t per_consumer[2];
};

struct mp_args {
    int fd;
    int id;
    struct mp_shared *sh;
};

static int mp_producer(void *arg)
{
    const struct mp_args *a = arg;
    struct bq q;
    if (bq_attach(a->fd, &q) != 0)
        return OUT_ATTACH;
    for (uint64_t s = 1; s <= MP_PER_PRODUCER; s++) {
        uint64_t h = (uint64_t)(a->id + 1) << 32 | s;
        struct bq_entry e = mk_entry(h, (int64_t)s, s);
        int r = enqueue_retry(&q, &e);
        if (r == -ETIMEDOUT)
            return OUT_STALLED;
        if (r != 0)
            return OUT_ENQUEUE;
    }
    bq_detach(&q);
    return OUT_OK;
}

static int mp_consumer(void *arg)
{
    const struct mp_args *a = arg;
    struct bq q;
    if (bq_attach(a->fd, &q) != 0)
        return OUT_ATTACH;
    uint64_t last[2] = {0, 0}, got = 0;
    for (;;) {
        struct bq_entry e;
        int r = bq_dequeue_wait(&q, &e, DEQ_TIMEOUT_NS);
        if (r == -ENODATA)
            break;
        if (r != 0)
            return r == -ETIMEDOUT ? OUT_STALLED : OUT_DEQUEUE;
        uint32_t p = (uint32_t)(e.handle >> 32), s = (uint32_t)e.handle;
        if (p < 1 || p > 2 || s < 1 || s > MP_PER_PRODUCER || e.pts.value != (int64_t)s ||
            e.size != s)
            return OUT_WRONG_ENTRY;
        /* FIFO: one producer's entries reach one consumer in its order */
        if (s <= last[p - 1]) {
            fprintf(stderr, "consumer %d: producer %u seq %u after %llu\n", a->id, p, s,
                    (unsigned long long)last[p - 1]);
            return OUT_WRONG_ORDER;
        }
        last[p - 1] = s;
        if (atomic_fetch_add(&a->sh->seen[p - 1][s], 1) != 0)
            return OUT_DUPLICATE;
        got++;
    }
    atomic_store(&a->sh->per_consumer[a->id], got);
    bq_detach(&q);
    return OUT_OK;
}

static void test_two_producers_two_consumers(void)
{
    struct bq q;
    REQUIRE(create_queue(1024, BQ_ORDER_FIFO, &q) == 0);
    struct mp_shared *sh = shared_alloc(sizeof(*sh));
    REQUIRE(sh);
    struct mp_args pa[2], ca[2];
    pid_t prod[2], cons[2];
    uint64_t t0 = mono_ns();
    for (int i = 0; i < 2; i++) {
        ca[i] = (struct mp_args){.fd = q.seg.fd, .id = i, .sh = sh};
        cons[i] = spawn(mp_consumer, &ca[i], 150);
        REQUIRE(cons[i] > 0);
    }
    for (int i = 0; i < 2; i++) {
        pa[i] = (struct mp_args){.fd = q.seg.fd, .id = i, .sh = sh};
        prod[i] = spawn(mp_producer, &pa[i], 150);
        REQUIRE(prod[i] > 0);
    }
    CHECK(child_ok("producer 0", reap(prod[0], CHILD_DEADLINE_MS)));
    CHECK(child_ok("producer 1", reap(prod[1], CHILD_DEADLINE_MS)));
    /* Both producers are done: nothing more will come. */
    CHECK_EQ(bq_mark_end_of_data(&q), 0);
    CHECK(child_ok("consumer 0", reap(cons[0], CHILD_DEADLINE_MS)));
    CHECK(child_ok("consumer 1", reap(cons[1], CHILD_DEADLINE_MS)));
    uint64_t ns = mono_ns() - t0;

    uint64_t missing = 0, dup = 0;
    for (int p = 0; p < 2; p++)
        for (uint32_t s = 1; s <= MP_PER_PRODUCER; s++) {
            uint8_t v = atomic_load(&sh->seen[p][s]);
            missing += v == 0;
            dup += v > 1;
        }
    CHECK_EQ(missing, 0);
    CHECK_EQ(dup, 0);
    uint64_t c0 = atomic_load(&sh->per_consumer[0]), c1 = atomic_load(&sh->per_consumer[1]);
    CHECK_EQ(c0 + c1, 2u * MP_PER_PRODUCER);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.enqueued, 2u * MP_PER_PRODUCER);
    CHECK_EQ(st.dequeued, 2u * MP_PER_PRODUCER);
    CHECK_EQ(st.count, 0);
    CHECK_EQ(st.repairs, 0);
    printf("# %u entries in %.1f ms; consumers took %llu and %llu\n", 2 * MP_PER_PRODUCER,
           (double)ns / 1e6, (unsigned long long)c0, (unsigned long long)c1);
    munmap(sh, sizeof(*sh));
    bq_detach(&q);
}

/* ---- 4. fan-out of pool buffers into two queues ----------------------------- */

#define FAN_BUFFERS 100000u
#define FAN_BLOCKS 64u
#define FAN_BLOCK_SIZE 4096u
#define FAN_QUEUE_CAP 256u /* larger than the pool: the pool is the bottleneck */

static int hook_retain(void *ctx, uint32_t pool_id, uint64_t handle, bool by_client)
{
    (void)pool_id;
    return pool_retain(ctx, handle, by_client);
}

static void hook_release(void *ctx, uint32_t pool_id, uint64_t handle)
{
    (void)pool_id;
    pool_release(ctx, handle, false);
}

static uint64_t pattern_word(uint64_t i, uint64_t k)
{
    return (i * 0x9e3779b97f4a7c15ull) ^ (k * 0xc2b2ae3d27d4eb4full) ^ k;
}

struct fan_shared {
    _Atomic uint64_t alloc_waits;
    _Atomic uint64_t consumed[2];
};

struct fan_args {
    int pool_fd, q_fd[2];
    int id;
    struct fan_shared *sh;
};

static int fan_producer(void *arg)
{
    const struct fan_args *a = arg;
    struct pool p;
    struct bq q[2];
    if (pool_attach(a->pool_fd, &p) != 0)
        return OUT_ATTACH;
    for (int i = 0; i < 2; i++) {
        if (bq_attach(a->q_fd[i], &q[i]) != 0)
            return OUT_ATTACH;
        bq_set_hooks(&q[i], &(struct bq_hooks){.ctx = &p, .retain = hook_retain,
                                               .release = hook_release});
    }
    uint64_t waits = 0;
    for (uint64_t i = 1; i <= FAN_BUFFERS; i++) {
        uint64_t h = 0, since = 0;
        for (unsigned spins = 0;; spins++) {
            int r = pool_alloc(&p, FAN_BLOCK_SIZE, &h);
            if (r == 0)
                break;
            if (r != MBQ_POOL_ERR_ALLOCATION_FAILED) {
                fprintf(stderr, "producer: pool_alloc: %d\n", r);
                return OUT_POOL;
            }
            waits++;
            sched_yield();
            if ((spins & 255) == 255) {
                uint64_t now = mono_ns();
                if (!since)
                    since = now;
                else if (now - since > STALL_NS)
                    return OUT_STALLED;
            }
        }
        uint64_t *d = pool_data(&p, h);
        if (!d)
            return OUT_POOL;
        for (uint64_t k = 0; k < FAN_BLOCK_SIZE / 8; k++)
            d[k] = pattern_word(i, k);
        struct bq_entry e = mk_entry(h, (int64_t)i, FAN_BLOCK_SIZE);
        for (int j = 0; j < 2; j++) {
            int r = enqueue_retry(&q[j], &e);
            if (r == -ETIMEDOUT)
                return OUT_STALLED;
            if (r != 0)
                return OUT_ENQUEUE;
        }
        if (pool_release(&p, h, true) != 0)
            return OUT_POOL;
    }
    for (int j = 0; j < 2; j++)
        if (bq_mark_end_of_data(&q[j]) != 0)
            return OUT_EOD;
    atomic_store(&a->sh->alloc_waits, waits);
    if (pool_held_by_self(&p) != 0)
        return OUT_POOL;
    for (int j = 0; j < 2; j++)
        bq_detach(&q[j]);
    pool_detach(&p);
    return OUT_OK;
}

static int fan_consumer(void *arg)
{
    const struct fan_args *a = arg;
    struct pool p;
    struct bq q;
    if (pool_attach(a->pool_fd, &p) != 0 || bq_attach(a->q_fd[a->id], &q) != 0)
        return OUT_ATTACH;
    uint64_t want = 1;
    for (;;) {
        struct bq_entry e;
        int r = bq_dequeue_wait(&q, &e, DEQ_TIMEOUT_NS);
        if (r == -ENODATA)
            break;
        if (r != 0)
            return r == -ETIMEDOUT ? OUT_STALLED : OUT_DEQUEUE;
        if (e.pts.value != (int64_t)want)
            return e.pts.value < (int64_t)want ? OUT_DUPLICATE : OUT_WRONG_ORDER;
        if (pool_adopt(&p, e.handle) != 0) {
            fprintf(stderr, "consumer %d: adopt buffer %llu failed\n", a->id,
                    (unsigned long long)want);
            return OUT_POOL;
        }
        const uint64_t *d = pool_data(&p, e.handle);
        if (!d)
            return OUT_POOL;
        for (uint64_t k = 0; k < FAN_BLOCK_SIZE / 8; k++)
            if (d[k] != pattern_word(want, k)) {
                fprintf(stderr, "consumer %d: buffer %llu word %llu corrupt\n", a->id,
                        (unsigned long long)want, (unsigned long long)k);
                return OUT_PATTERN;
            }
        if (pool_release(&p, e.handle, true) != 0)
            return OUT_POOL;
        want++;
    }
    atomic_store(&a->sh->consumed[a->id], want - 1);
    if (want - 1 != FAN_BUFFERS)
        return OUT_MISSING;
    if (pool_held_by_self(&p) != 0)
        return OUT_POOL;
    bq_detach(&q);
    pool_detach(&p);
    return OUT_OK;
}

static void test_fan_out_pool_buffers(void)
{
    struct pool p;
    struct pool_params pp = {.block_size = FAN_BLOCK_SIZE, .block_count = FAN_BLOCKS,
                             .prefault = true};
    REQUIRE(pool_create(&pp, &p) == 0);
    struct bq q[2];
    REQUIRE(create_queue(FAN_QUEUE_CAP, BQ_ORDER_FIFO, &q[0]) == 0);
    REQUIRE(create_queue(FAN_QUEUE_CAP, BQ_ORDER_FIFO, &q[1]) == 0);
    struct fan_shared *sh = shared_alloc(sizeof(*sh));
    REQUIRE(sh);
    struct fan_args args[3];
    pid_t pid[3];
    uint64_t t0 = mono_ns();
    for (int i = 0; i < 3; i++) {
        args[i] = (struct fan_args){.pool_fd = p.seg.fd, .q_fd = {q[0].seg.fd, q[1].seg.fd},
                                    .id = i < 2 ? i : 0, .sh = sh};
        pid[i] = spawn(i < 2 ? fan_consumer : fan_producer, &args[i], 150);
        REQUIRE(pid[i] > 0);
    }
    CHECK(child_ok("producer", reap(pid[2], CHILD_DEADLINE_MS)));
    CHECK(child_ok("consumer 0", reap(pid[0], CHILD_DEADLINE_MS)));
    CHECK(child_ok("consumer 1", reap(pid[1], CHILD_DEADLINE_MS)));
    uint64_t ns = mono_ns() - t0;

    struct pool_stats ps;
    CHECK_EQ(pool_stats(&p, &ps), 0);
    CHECK_EQ(ps.used, 0);
    CHECK_EQ(ps.allocs, FAN_BUFFERS);
    CHECK_EQ(ps.frees, FAN_BUFFERS); /* each allocation freed exactly once */
    CHECK_EQ(ps.warm + ps.cold, FAN_BLOCKS);
    CHECK_EQ(ps.reclaimed, 0);
    CHECK_EQ(pool_held_by_self(&p), 0);
    for (int j = 0; j < 2; j++) {
        struct bq_stats st;
        CHECK_EQ(bq_stats(&q[j], &st), 0);
        CHECK_EQ(st.count, 0);
        CHECK_EQ(st.enqueued, FAN_BUFFERS);
        CHECK_EQ(st.dequeued, FAN_BUFFERS);
    }
    /* every block's reference word: refcount 0 */
    for (uint32_t i = 0; i < FAN_BLOCKS; i++)
        CHECK_EQ(atomic_load(&p.blocks[i].ref) & 0xffffffffu, 0);
    printf("# %u buffers through %u blocks in %.1f ms; producer waited %llu times for a "
           "free block\n",
           FAN_BUFFERS, FAN_BLOCKS, (double)ns / 1e6,
           (unsigned long long)atomic_load(&sh->alloc_waits));
    munmap(sh, sizeof(*sh));
    bq_detach(&q[0]);
    bq_detach(&q[1]);
    pool_detach(&p);
}

CHECK_MAIN(CASE(test_fifo_1m_producer_to_consumer), CASE(test_sorted_pts_random_batches),
           CASE(test_sorted_pts_fully_random), CASE(test_sorted_pts_streaming),
           CASE(test_two_producers_two_consumers), CASE(test_fan_out_pool_buffers))
