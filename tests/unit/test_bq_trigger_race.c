/* Trigger edges while producers and consumers race across a threshold, in
 * real processes.
 *
 * A trigger whose condition can only turn true on one side (count above N:
 * on an enqueue; count below N: on a dequeue) is evaluated only by the
 * operations of that side, under both locks; the other side runs its fast
 * path and never looks at it. These cases check that no edge is lost or
 * counted twice for it, against the definition: the trigger fires on the
 * operation that takes the level from false to true.
 *
 * The checking process is the only one on the evaluated side, so it knows
 * its own index exactly and the trigger's firing count changes only in its
 * own calls. It reads the other side's index before and after each call
 * (the index only grows): when the two reads agree, the count before the
 * operation is known and the call must fire exactly when the definition
 * says; when they differ, a firing must at least be possible within the
 * range. A paired case installs two complementary triggers (count above N
 * and count at most N; duration at least T and below T, with negative and
 * rescaled durations among the entries) so their edges alternate: at the
 * end their counts differ by exactly the final level.
 *
 * Peers synchronise through the queue itself; children report through their
 * exit status and the parent reaps them with a pidfd and a deadline. */
#include "check.h"

#include "bq_layout.h"

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
#include <time.h>
#include <unistd.h>

#define ENTRIES 20000u
#define THRESHOLD 4
#define CAPACITY 16
#define STALL_NS 30000000000ull
#define CHILD_DEADLINE_MS 120000

enum { OUT_OK = 0, OUT_ATTACH = 10, OUT_OP = 11, OUT_STALLED = 12, OUT_EDGE = 13 };

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static pid_t spawn(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(CHILD_DEADLINE_MS / 1000 + 10);
    _exit(fn(arg));
}

/* The child's exit code, or -1 when it had to be killed or died. */
static int reap(pid_t pid)
{
    int status = 0;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        int r;
        while ((r = poll(&p, 1, CHILD_DEADLINE_MS)) < 0 && errno == EINTR)
            ;
        close(pfd);
        if (r == 0) {
            fprintf(stderr, "child %d: no exit, killing it\n", (int)pid);
            kill(pid, SIGKILL);
        }
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status)) {
        fprintf(stderr, "child %d died (status %#x)\n", (int)pid, status);
        return -1;
    }
    if (WEXITSTATUS(status))
        fprintf(stderr, "child %d: exit %d\n", (int)pid, WEXITSTATUS(status));
    return WEXITSTATUS(status);
}

struct job {
    int fd;            /* the queue's segment */
    uint64_t token;    /* the trigger the checker watches */
    unsigned entries;  /* this process's share */
    unsigned producers, consumers;
    _Atomic uint64_t *fires_seen; /* shared page: what the checker counted */
    _Atomic uint64_t *ranged;     /* calls whose bracket was not exact */
    bool odd_durations;
};

static struct bq_entry mk(uint64_t i, bool odd)
{
    struct bq_entry e;
    memset(&e, 0, sizeof(e));
    e.handle = i + 1;
    e.pool_id = 1;
    e.pts = mbq_time_make((int64_t)i, 1000);
    e.dts = e.pts;
    e.duration = mbq_time_make(1, 1000);
    if (odd && i % 13 == 5)
        e.duration = mbq_time_make(-2, 1000); /* lowers the total */
    else if (odd && i % 29 == 7)
        e.duration = mbq_time_make(1, 500); /* another timescale */
    else if (odd && i % 31 == 3)
        e.duration = MBQ_TIME_INVALID; /* counts as zero */
    e.size = 100;
    return e;
}

static uint64_t idx(const struct bq *q, bool tail)
{
    return atomic_load_explicit(tail ? &q->sh->tail.index : &q->sh->head.index,
                                memory_order_acquire);
}

static int enqueue_retry(struct bq *q, const struct bq_entry *e)
{
    uint64_t start = mono_ns();
    for (unsigned n = 0;; n++) {
        int r = bq_enqueue(q, e);
        if (r != MBQ_BQ_ERR_QUEUE_IS_FULL)
            return r;
        sched_yield();
        if ((n & 255) == 255 && mono_ns() - start > STALL_NS)
            return -ETIMEDOUT;
    }
}

/* A plain producer: its share of entries, numbered from base. */
static int run_producer(void *arg)
{
    struct job *j = arg;
    struct bq q;
    if (bq_attach(j->fd, &q))
        return OUT_ATTACH;
    for (unsigned i = 0; i < j->entries; i++) {
        struct bq_entry e = mk(i, j->odd_durations);
        if (enqueue_retry(&q, &e))
            return OUT_OP;
    }
    bq_detach(&q);
    return OUT_OK;
}

/* A plain consumer: dequeues until it has its share. */
static int run_consumer(void *arg)
{
    struct job *j = arg;
    struct bq q;
    if (bq_attach(j->fd, &q))
        return OUT_ATTACH;
    for (unsigned got = 0; got < j->entries;) {
        struct bq_entry e;
        int r = bq_dequeue_wait(&q, &e, (int64_t)STALL_NS);
        if (r == 0)
            got++;
        else if (r != -EAGAIN && r != -ETIMEDOUT)
            return OUT_OP;
        else
            return OUT_STALLED;
    }
    bq_detach(&q);
    return OUT_OK;
}

/* Checks one call: d is the firing count's change, want says whether the
 * count before the call is exactly the edge's (exact: the other index did
 * not move during the call), may whether it is possible within the range. */
static int judge(struct job *j, int64_t d, bool exact, bool want, bool may)
{
    if (d)
        atomic_fetch_add(j->fires_seen, 1);
    if (!exact)
        atomic_fetch_add(j->ranged, 1);
    if (d < 0 || d > 1)
        return OUT_EDGE;
    if (exact && (d == 1) != want) {
        fprintf(stderr, "edge %s\n", d ? "fired where none is" : "lost");
        return OUT_EDGE;
    }
    if (d == 1 && !may) {
        fprintf(stderr, "edge fired outside the possible range\n");
        return OUT_EDGE;
    }
    return OUT_OK;
}

/* The only producer, watching "count above THRESHOLD" (evaluated on
 * enqueues only; the consumers run their fast path). It fires on the
 * enqueue whose count before is exactly THRESHOLD: tail - head == N. */
static int run_checking_producer(void *arg)
{
    struct job *j = arg;
    struct bq q;
    if (bq_attach(j->fd, &q))
        return OUT_ATTACH;
    int64_t fired = bq_trigger_fired(&q, j->token);
    uint64_t start = mono_ns();
    for (unsigned i = 0; i < j->entries;) {
        struct bq_entry e = mk(i, false);
        uint64_t tail = idx(&q, true);
        uint64_t h0 = idx(&q, false);
        int r = bq_enqueue(&q, &e);
        uint64_t h1 = idx(&q, false);
        if (r == MBQ_BQ_ERR_QUEUE_IS_FULL) {
            sched_yield();
            if (mono_ns() - start > STALL_NS)
                return OUT_STALLED;
            continue;
        }
        if (r)
            return OUT_OP;
        int64_t f = bq_trigger_fired(&q, j->token);
        /* head before the enqueue's evaluation is in [h0, h1] */
        uint64_t edge_head = tail - THRESHOLD;
        int v = judge(j, f - fired, h0 == h1, tail - h0 == THRESHOLD,
                      edge_head >= h0 && edge_head <= h1);
        if (v)
            return v;
        fired = f;
        i++;
    }
    bq_detach(&q);
    return OUT_OK;
}

/* The only consumer, watching "count below THRESHOLD" (evaluated on
 * dequeues only; the producers run their fast path). It fires on the
 * dequeue whose count before is exactly THRESHOLD: tail - head == N. */
static int run_checking_consumer(void *arg)
{
    struct job *j = arg;
    struct bq q;
    if (bq_attach(j->fd, &q))
        return OUT_ATTACH;
    int64_t fired = bq_trigger_fired(&q, j->token);
    uint64_t start = mono_ns();
    for (unsigned got = 0; got < j->entries;) {
        struct bq_entry e;
        uint64_t head = idx(&q, false);
        uint64_t t0 = idx(&q, true);
        int r = bq_dequeue(&q, &e);
        uint64_t t1 = idx(&q, true);
        if (r == -EAGAIN) {
            sched_yield();
            if (mono_ns() - start > STALL_NS)
                return OUT_STALLED;
            continue;
        }
        if (r)
            return OUT_OP;
        int64_t f = bq_trigger_fired(&q, j->token);
        uint64_t edge_tail = head + THRESHOLD;
        int v = judge(j, f - fired, t0 == t1, t0 - head == THRESHOLD,
                      edge_tail >= t0 && edge_tail <= t1);
        if (v)
            return v;
        fired = f;
        got++;
    }
    bq_detach(&q);
    return OUT_OK;
}

static void *shared_page(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static int make_queue(struct bq *q)
{
    struct bq_params p = {.capacity = CAPACITY, .order = BQ_ORDER_FIFO,
                          .full_policy = BQ_FULL_FAIL};
    return bq_create(&p, q);
}

/* count above N, one producer checking, two consumers on the fast path. */
static void test_count_above_two_consumers(void)
{
    struct bq q;
    REQUIRE(make_queue(&q) == 0);
    uint64_t tok;
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_GREATER_THAN, MBQ_TIME_INVALID,
                               THRESHOLD, -1, &tok) == 0);
    CHECK_EQ(atomic_load(&q.sh->trigger_sides), BQ_TRIG_ENQ);
    _Atomic uint64_t *page = shared_page();
    REQUIRE(page);
    struct job pj = {.fd = q.seg.fd, .token = tok, .entries = ENTRIES,
                     .fires_seen = &page[0], .ranged = &page[1]};
    struct job cj = {.fd = q.seg.fd, .entries = ENTRIES / 2};
    pid_t p = spawn(run_checking_producer, &pj);
    pid_t c1 = spawn(run_consumer, &cj), c2 = spawn(run_consumer, &cj);
    CHECK_EQ(reap(p), OUT_OK);
    CHECK_EQ(reap(c1), OUT_OK);
    CHECK_EQ(reap(c2), OUT_OK);
    CHECK_EQ(bq_trigger_fired(&q, tok), (int64_t)atomic_load(&page[0]));
    CHECK(atomic_load(&page[0]) > 0);
    printf("# count > %d: %llu edges, %llu of %u calls raced the consumers\n", THRESHOLD,
           (unsigned long long)atomic_load(&page[0]), (unsigned long long)atomic_load(&page[1]),
           ENTRIES);
    munmap(page, 4096);
    bq_detach(&q);
}

/* count below N, one consumer checking, two producers on the fast path. */
static void test_count_below_two_producers(void)
{
    struct bq q;
    REQUIRE(make_queue(&q) == 0);
    uint64_t tok;
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_LESS_THAN, MBQ_TIME_INVALID, THRESHOLD, -1,
                               &tok) == 0);
    CHECK_EQ(bq_trigger_fired(&q, tok), 1); /* true at install */
    CHECK_EQ(atomic_load(&q.sh->trigger_sides), BQ_TRIG_DEQ);
    _Atomic uint64_t *page = shared_page();
    REQUIRE(page);
    struct job cj = {.fd = q.seg.fd, .token = tok, .entries = ENTRIES,
                     .fires_seen = &page[0], .ranged = &page[1]};
    struct job pj = {.fd = q.seg.fd, .entries = ENTRIES / 2};
    pid_t c = spawn(run_checking_consumer, &cj);
    pid_t p1 = spawn(run_producer, &pj), p2 = spawn(run_producer, &pj);
    CHECK_EQ(reap(p1), OUT_OK);
    CHECK_EQ(reap(p2), OUT_OK);
    CHECK_EQ(reap(c), OUT_OK);
    CHECK_EQ(bq_trigger_fired(&q, tok), 1 + (int64_t)atomic_load(&page[0]));
    CHECK(atomic_load(&page[0]) > 0);
    printf("# count < %d: %llu edges, %llu of %u calls raced the producers\n", THRESHOLD,
           (unsigned long long)atomic_load(&page[0]), (unsigned long long)atomic_load(&page[1]),
           ENTRIES);
    munmap(page, 4096);
    bq_detach(&q);
}

/* Complementary pairs — count above N / count below N + 1, duration at
 * least T / below T — with two producers and two consumers, and durations
 * that are negative, rescaled or invalid among them: the edges of each pair
 * alternate, so at the end (empty queue: "below" true) below = above + 1. */
static void test_complementary_pairs(void)
{
    struct bq q;
    REQUIRE(make_queue(&q) == 0);
    uint64_t above, below, dge, dlt;
    mbq_time t = mbq_time_make(THRESHOLD, 1000);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_GREATER_THAN, MBQ_TIME_INVALID, THRESHOLD,
                               -1, &above) == 0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_LESS_THAN, MBQ_TIME_INVALID, THRESHOLD + 1,
                               -1, &below) == 0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_DURATION_GREATER_THAN_OR_EQUAL, t, 0, -1, &dge) ==
            0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_DURATION_LESS_THAN, t, 0, -1, &dlt) == 0);
    struct job pj = {.fd = q.seg.fd, .entries = ENTRIES / 2, .odd_durations = true};
    pid_t p1 = spawn(run_producer, &pj), p2 = spawn(run_producer, &pj);
    pid_t c1 = spawn(run_consumer, &pj), c2 = spawn(run_consumer, &pj);
    CHECK_EQ(reap(p1), OUT_OK);
    CHECK_EQ(reap(p2), OUT_OK);
    CHECK_EQ(reap(c1), OUT_OK);
    CHECK_EQ(reap(c2), OUT_OK);
    CHECK_EQ(bq_count(&q), 0);
    int64_t a = bq_trigger_fired(&q, above), b = bq_trigger_fired(&q, below);
    int64_t g = bq_trigger_fired(&q, dge), l = bq_trigger_fired(&q, dlt);
    CHECK_EQ(b, a + 1);
    CHECK_EQ(l, g + 1);
    CHECK(a > 0);
    printf("# count edges %lld/%lld, duration edges %lld/%lld\n", (long long)a, (long long)b,
           (long long)g, (long long)l);
    bq_detach(&q);
}

/* Which operations each condition sends to the locked evaluation: the
 * mask follows installs and removals. */
static void test_sides_mask(void)
{
    struct bq q;
    REQUIRE(make_queue(&q) == 0);
    mbq_time t = mbq_time_make(1, 1);
    uint64_t tok[6];
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_DURATION_LESS_THAN, t, 0, -1, &tok[0]) == 0);
    CHECK_EQ(atomic_load(&q.sh->trigger_sides), BQ_TRIG_DEQ | BQ_TRIG_ENQ_DUR);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_RESET, t, 0, -1, &tok[1]) == 0);
    CHECK_EQ(atomic_load(&q.sh->trigger_sides), BQ_TRIG_DEQ | BQ_TRIG_ENQ_DUR);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_DURATION_GREATER_THAN, t, 0, -1, &tok[2]) == 0);
    CHECK_EQ(atomic_load(&q.sh->trigger_sides),
             BQ_TRIG_DEQ | BQ_TRIG_ENQ_DUR | BQ_TRIG_ENQ | BQ_TRIG_DEQ_DUR);
    CHECK_EQ(bq_remove_trigger(&q, tok[0]), 0);
    CHECK_EQ(atomic_load(&q.sh->trigger_sides), BQ_TRIG_ENQ | BQ_TRIG_DEQ_DUR);
    CHECK_EQ(bq_remove_trigger(&q, tok[2]), 0);
    CHECK_EQ(atomic_load(&q.sh->trigger_sides), 0);
    /* the count gates: the smallest "above", the largest "below" */
    uint64_t g[4];
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_GREATER_THAN, t, 9, -1, &g[0]) == 0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_DURATION_GE_AND_COUNT_GT, t, 5, -1, &g[1]) == 0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_LESS_THAN, t, 3, -1, &g[2]) == 0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_END_OF_DATA_REACHED, t, 0, -1, &g[3]) == 0);
    CHECK_EQ(atomic_load(&q.sh->enq_gate), 5);
    CHECK_EQ(atomic_load(&q.sh->deq_gate), 3);
    CHECK_EQ(bq_remove_trigger(&q, g[2]), 0);
    CHECK_EQ(atomic_load(&q.sh->deq_gate), 1);
    for (int i = 0; i < 4; i++)
        if (i != 2)
            CHECK_EQ(bq_remove_trigger(&q, g[i]), 0);
    CHECK_EQ(atomic_load(&q.sh->trigger_sides), 0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_MIN_PTS_CHANGES, t, 0, -1, &tok[3]) == 0);
    CHECK_EQ(atomic_load(&q.sh->trigger_sides), BQ_TRIG_ENQ | BQ_TRIG_DEQ);
    bq_detach(&q);

    /* drop-oldest: an enqueue may dequeue, so it is evaluated too */
    struct bq_params p = {.capacity = 4, .order = BQ_ORDER_FIFO,
                          .full_policy = BQ_FULL_DROP_OLDEST};
    REQUIRE(bq_create(&p, &q) == 0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_LESS_THAN, t, 2, -1, &tok[4]) == 0);
    CHECK_EQ(atomic_load(&q.sh->trigger_sides), BQ_TRIG_DEQ | BQ_TRIG_ENQ);
    bq_detach(&q);
}

/* The sequences the races above only sometimes hit, in order: the side
 * that is not evaluated moves the level back and forth, and the evaluated
 * side's next crossing must fire each time. */
static void test_one_sided_sequences(void)
{
    struct bq q;
    REQUIRE(make_queue(&q) == 0);
    uint64_t above, below;
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_GREATER_THAN, MBQ_TIME_INVALID, 2, -1,
                               &above) == 0);
    struct bq_entry e = mk(0, false), out;
    for (int round = 1; round <= 3; round++) {
        while (bq_count(&q) < 3)
            REQUIRE(bq_enqueue(&q, &e) == 0);
        CHECK_EQ(bq_trigger_fired(&q, above), round); /* 2 -> 3 */
        REQUIRE(bq_dequeue(&q, &out) == 0);           /* fast path: 3 -> 2 */
    }
    CHECK_EQ(bq_remove_trigger(&q, above), 0);
    while (bq_dequeue(&q, &out) == 0)
        ;
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_LESS_THAN, MBQ_TIME_INVALID, 2, -1,
                               &below) == 0);
    CHECK_EQ(bq_trigger_fired(&q, below), 1); /* true at install */
    for (int round = 1; round <= 3; round++) {
        while (bq_count(&q) < 2)
            REQUIRE(bq_enqueue(&q, &e) == 0); /* fast path: 1 -> 2 */
        REQUIRE(bq_dequeue(&q, &out) == 0);   /* 2 -> 1 */
        CHECK_EQ(bq_trigger_fired(&q, below), 1 + round);
    }
    CHECK_EQ(bq_remove_trigger(&q, below), 0);
    while (bq_dequeue(&q, &out) == 0)
        ;

    /* duration below 2 ms, evaluated on dequeues; an enqueue of a negative
     * duration lowers it, so that one is evaluated too */
    uint64_t dlt;
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_DURATION_LESS_THAN, mbq_time_make(2, 1000), 0, -1,
                               &dlt) == 0);
    CHECK_EQ(bq_trigger_fired(&q, dlt), 1);
    struct bq_entry two = mk(1, false), neg = mk(2, false);
    two.duration = mbq_time_make(2, 1000);
    neg.duration = mbq_time_make(-1, 1000);
    REQUIRE(bq_enqueue(&q, &two) == 0); /* 2 ms: false */
    CHECK_EQ(bq_trigger_fired(&q, dlt), 1);
    REQUIRE(bq_enqueue(&q, &neg) == 0); /* 1 ms: true on an enqueue */
    CHECK_EQ(bq_trigger_fired(&q, dlt), 2);
    REQUIRE(bq_enqueue(&q, &two) == 0); /* 3 ms: false */
    REQUIRE(bq_dequeue(&q, &out) == 0); /* 1 ms: true */
    CHECK_EQ(bq_trigger_fired(&q, dlt), 3);
    CHECK_EQ(bq_remove_trigger(&q, dlt), 0);
    while (bq_dequeue(&q, &out) == 0)
        ;

    /* duration above 2 ms, evaluated on enqueues; dequeuing a negative
     * duration raises it, so that dequeue is evaluated too */
    uint64_t dgt;
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_DURATION_GREATER_THAN, mbq_time_make(2, 1000), 0,
                               -1, &dgt) == 0);
    CHECK_EQ(bq_trigger_fired(&q, dgt), 0);
    REQUIRE(bq_enqueue(&q, &neg) == 0); /* -1 ms */
    REQUIRE(bq_enqueue(&q, &two) == 0); /* 1 ms */
    REQUIRE(bq_enqueue(&q, &two) == 0); /* 3 ms: true */
    CHECK_EQ(bq_trigger_fired(&q, dgt), 1);
    REQUIRE(bq_dequeue(&q, &out) == 0); /* the -1 ms leaves: 4 ms, still true */
    CHECK_EQ(bq_trigger_fired(&q, dgt), 1);
    REQUIRE(bq_dequeue(&q, &out) == 0); /* 2 ms: false (fast path) */
    REQUIRE(bq_enqueue(&q, &neg) == 0); /* 1 ms */
    REQUIRE(bq_enqueue(&q, &two) == 0); /* 3 ms: true */
    CHECK_EQ(bq_trigger_fired(&q, dgt), 2);
    REQUIRE(bq_dequeue(&q, &out) == 0); /* 1 ms */
    REQUIRE(bq_dequeue(&q, &out) == 0); /* the -1 ms leaves: 2 ms, false */
    CHECK_EQ(bq_trigger_fired(&q, dgt), 2);
    REQUIRE(bq_enqueue(&q, &neg) == 0); /* 1 ms */
    REQUIRE(bq_enqueue(&q, &two) == 0); /* 3 ms: true */
    CHECK_EQ(bq_trigger_fired(&q, dgt), 3);
    struct bq_entry one = mk(3, false);
    REQUIRE(bq_dequeue(&q, &out) == 0); /* -1 + 2 = 1 ms */
    REQUIRE(bq_enqueue(&q, &one) == 0); /* 2 ms */
    CHECK_EQ(bq_trigger_fired(&q, dgt), 3);
    REQUIRE(bq_dequeue(&q, &out) == 0); /* the -1 ms leaves: 3 ms, true on a dequeue */
    CHECK_EQ(bq_trigger_fired(&q, dgt), 4);
    bq_detach(&q);
}

CHECK_MAIN(CASE(test_sides_mask), CASE(test_one_sided_sequences), CASE(test_count_above_two_consumers),
           CASE(test_count_below_two_producers), CASE(test_complementary_pairs))
