/* Runs of the buffer queue (bq_enqueue_run, bq_dequeue_run) and of the
 * pool (pool_run_begin, the _run moves, the recount of a dead run), single
 * process, exact values.
 *
 * Queue: a run goes in and out in order, a prefix when the queue is short
 * of room (policy fail: the rest refused and counted once; drop-oldest:
 * left to the caller's single enqueue), against end of data and the
 * validation hook; the counters (count, size, duration, enqueued,
 * dequeued, high water) move by the run; a dequeue run stops at a change
 * of pool and asks the run hook once, and a refusal changes nothing; a
 * count trigger crossed by a run fires once, and one not crossed does
 * not; a sorted queue fed a run out of order hands it out in order, with
 * and without a trigger installed; a FIFO consumer polling the publish
 * marks never passes the tail index during a run, and a producer killed
 * between a run's index and its marks leaves a consistent queue; a run's
 * sums are those of the same entries one by one.
 *
 * Pool: a run hands holdings over and releases blocks exactly as the
 * single calls do; a run record names its blocks to a recount, so a live
 * run holds a recount off (-EAGAIN) and a dead one's blocks are recounted
 * one by one (a block whose holding the dead run had already handed over
 * keeps its reference; one it had taken out of a holding and not yet
 * released is freed), every block back. */
#include "check.h"

#include "bq_internal.h"
#include "pool_internal.h"

#include <mbq/status.h>

#include <errno.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- hooks ------------------------------------------------------------------ */

struct hk {
    int run_calls, run_refuse, validate_after; /* validate fails from the nth call on */
    int validate_calls;
    uint32_t run_n[64];
    uint64_t run_first[64];
};

static struct hk H;

static int hk_run_begin(void *ctx, uint32_t pool_id, const uint64_t *handles, uint32_t n)
{
    (void)ctx;
    (void)pool_id;
    if (H.run_refuse)
        return -ENOENT;
    if (H.run_calls < 64) {
        H.run_n[H.run_calls] = n;
        H.run_first[H.run_calls] = handles[0];
    }
    H.run_calls++;
    return 0;
}

static int hk_validate(void *ctx, const struct bq_entry *e)
{
    (void)ctx;
    (void)e;
    return ++H.validate_calls > H.validate_after && H.validate_after ? -EPERM : 0;
}

static void hooks(struct bq *q, bool validate)
{
    struct bq_hooks h = {.run_begin = hk_run_begin, .validate = validate ? hk_validate : NULL};
    bq_set_hooks(q, &h);
}

static struct bq_entry mk(uint64_t handle, uint32_t pool, int64_t pts)
{
    struct bq_entry e;
    memset(&e, 0, sizeof(e));
    e.handle = handle;
    e.pool_id = pool;
    e.pts = e.dts = mbq_time_make(pts, 1000);
    e.duration = mbq_time_make(10, 1000);
    e.size = 100;
    return e;
}

static int mkq(uint32_t cap, uint32_t order, uint32_t policy, struct bq *q)
{
    struct bq_params p = {.capacity = cap, .order = order, .full_policy = policy};
    int r = bq_create(&p, q);
    if (r == 0)
        hooks(q, false);
    memset(&H, 0, sizeof(H));
    return r;
}

static struct bq_stats st(struct bq *q)
{
    struct bq_stats s;
    memset(&s, 0, sizeof(s));
    CHECK_EQ(bq_stats(q, &s), 0);
    return s;
}

/* ---- queue runs -------------------------------------------------------------- */

static void test_run_order_and_counters(void)
{
    struct bq q;
    REQUIRE(mkq(64, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry in[BQ_RUN_MAX], out[BQ_RUN_MAX];
    uint64_t next_in = 1, next_out = 1;
    /* many laps of the ring, runs of every length against a model */
    for (int round = 0; round < 300; round++) {
        uint32_t n = 1 + (uint32_t)(round * 7) % BQ_RUN_MAX, done = 99;
        for (uint32_t i = 0; i < n; i++)
            in[i] = mk(next_in + i, 7, (int64_t)(next_in + i));
        uint64_t before = next_in - next_out;
        int r = bq_enqueue_run(&q, in, n, &done);
        uint64_t room = 64 - before;
        CHECK_EQ(done, n <= room ? n : room);
        CHECK_EQ(r, n <= room ? 0 : MBQ_BQ_ERR_QUEUE_IS_FULL);
        next_in += done;
        REQUIRE(bq_count(&q) == (int64_t)(next_in - next_out));
        CHECK_EQ(bq_total_size(&q), (next_in - next_out) * 100);
        uint32_t want = 1 + (uint32_t)(round * 5) % 28; /* a little less: it fills */
        int k = bq_dequeue_run(&q, out, want);
        uint64_t avail = next_in - next_out;
        CHECK_EQ(k, avail == 0 ? -EAGAIN : (int)(avail < want ? avail : want));
        for (int i = 0; i < k; i++, next_out++)
            REQUIRE(out[i].handle == next_out && out[i].pts.value == (int64_t)next_out &&
                    out[i].seq == next_out);
    }
    CHECK(next_out > 1000);
    struct bq_stats s = st(&q);
    CHECK_EQ(s.enqueued, next_in - 1);
    CHECK_EQ(s.dequeued, next_out - 1);
    CHECK_EQ(s.high_water, 64);
    CHECK(s.rejected_full > 0);
    CHECK_EQ(s.count, next_in - next_out);
    CHECK(mbq_time_compare(s.duration, mbq_time_make((int64_t)(next_in - next_out) * 10, 1000)) ==
          0);
    /* a run hook call per dequeue run, naming the run's first handle */
    CHECK(H.run_calls > 250);
    bq_detach(&q);
}

static void test_run_stops(void)
{
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry in[6], out[8];
    uint32_t done;
    /* a change of pool ends a dequeue run; the hook is asked once per run */
    for (int i = 0; i < 6; i++)
        in[i] = mk((uint64_t)i + 1, i < 3 ? 7 : 8, i);
    CHECK_EQ(bq_enqueue_run(&q, in, 6, &done), 0);
    CHECK_EQ(done, 6);
    H.run_refuse = 1; /* refused: nothing changes */
    CHECK_EQ(bq_dequeue_run(&q, out, 8), 0);
    CHECK_EQ(bq_count(&q), 6);
    H.run_refuse = 0;
    CHECK_EQ(bq_dequeue_run(&q, out, 8), 3);
    CHECK_EQ(H.run_calls, 1);
    CHECK_EQ(H.run_n[0], 3);
    CHECK_EQ(H.run_first[0], 1);
    CHECK_EQ(bq_dequeue_run(&q, out, 2), 2);
    CHECK_EQ(out[0].handle, 4);
    CHECK_EQ(out[1].handle, 5);
    CHECK_EQ(bq_dequeue_run(&q, out, 8), 1);
    CHECK_EQ(out[0].handle, 6);
    CHECK_EQ(bq_dequeue_run(&q, out, 8), -EAGAIN);
    /* bad arguments */
    CHECK_EQ(bq_enqueue_run(&q, in, 0, &done), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_enqueue_run(&q, in, BQ_RUN_MAX + 1, &done), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_enqueue_run(&q, in, 1, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_dequeue_run(&q, out, 0), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    /* a zero handle ends the valid prefix */
    in[2].handle = 0;
    CHECK_EQ(bq_enqueue_run(&q, in, 4, &done), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(done, 2);
    CHECK_EQ(bq_count(&q), 2);
    in[2].handle = 3;
    /* the validation hook: the run stops at the first it refuses */
    hooks(&q, true);
    H.validate_after = 3;
    CHECK_EQ(bq_enqueue_run(&q, in, 5, &done), -EPERM);
    CHECK_EQ(done, 3);
    CHECK_EQ(bq_count(&q), 5);
    hooks(&q, false);
    /* end of data: nothing goes in */
    CHECK_EQ(bq_mark_end_of_data(&q), 0);
    CHECK_EQ(bq_enqueue_run(&q, in, 2, &done), MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA);
    CHECK_EQ(done, 0);
    CHECK_EQ(bq_count(&q), 5);
    bq_detach(&q);

    /* drop-oldest: the run fills the room and leaves the rest to the
     * caller (who drops with the single enqueue); nothing is refused */
    REQUIRE(mkq(4, BQ_ORDER_FIFO, BQ_FULL_DROP_OLDEST, &q) == 0);
    for (int i = 0; i < 6; i++)
        in[i] = mk((uint64_t)i + 1, 7, i);
    CHECK_EQ(bq_enqueue_run(&q, in, 6, &done), 0);
    CHECK_EQ(done, 4);
    CHECK_EQ(bq_enqueue_run(&q, in + 4, 2, &done), 0);
    CHECK_EQ(done, 0);
    CHECK_EQ(st(&q).rejected_full, 0);
    bq_detach(&q);
}

/* The sums a run adds (summed first where the durations allow it) are the
 * sums of the same entries added one by one, whatever their durations:
 * one timescale, mixed ones, negative, invalid, indefinite. */
static void test_run_sums_as_singles(void)
{
    static const mbq_time durs[][4] = {
        {{10, 1000, MBQ_TIME_FLAG_VALID, 0}, {20, 1000, MBQ_TIME_FLAG_VALID, 0},
         {30, 1000, MBQ_TIME_FLAG_VALID, 0}, {40, 1000, MBQ_TIME_FLAG_VALID, 0}},
        {{10, 1000, MBQ_TIME_FLAG_VALID, 0}, {9000, 90000, MBQ_TIME_FLAG_VALID, 0},
         {30, 1000, MBQ_TIME_FLAG_VALID, 0}, {1, 3, MBQ_TIME_FLAG_VALID, 0}},
        {{10, 1000, MBQ_TIME_FLAG_VALID, 0}, {-5, 1000, MBQ_TIME_FLAG_VALID, 0},
         {0, 0, 0, 0}, {30, 1000, MBQ_TIME_FLAG_VALID, 0}},
        {{INT64_MAX - 5, 1000, MBQ_TIME_FLAG_VALID, 0}, {10, 1000, MBQ_TIME_FLAG_VALID, 0},
         {0, 1000, MBQ_TIME_FLAG_VALID | MBQ_TIME_FLAG_INDEFINITE, 0},
         {1, 1000, MBQ_TIME_FLAG_VALID, 1}},
    };
    for (size_t c = 0; c < sizeof durs / sizeof durs[0]; c++) {
        struct bq a, b;
        REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &a) == 0);
        REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &b) == 0);
        struct bq_entry in[4], out[4];
        for (int i = 0; i < 4; i++) {
            in[i] = mk((uint64_t)i + 1, 7, i);
            in[i].duration = durs[c][i];
            CHECK_EQ(bq_enqueue_take(&b, &in[i]), 0);
        }
        uint32_t done;
        CHECK_EQ(bq_enqueue_run(&a, in, 4, &done), 0);
        struct bq_stats sa = st(&a), sb = st(&b);
        CHECK(memcmp(&sa.duration, &sb.duration, sizeof sa.duration) == 0);
        CHECK_EQ(sa.total_size, sb.total_size);
        CHECK_EQ(bq_dequeue_run(&a, out, 2), 2);
        CHECK_EQ(bq_dequeue(&b, &out[0]), 0);
        CHECK_EQ(bq_dequeue(&b, &out[1]), 0);
        sa = st(&a);
        sb = st(&b);
        if (memcmp(&sa.duration, &sb.duration, sizeof sa.duration) != 0)
            fprintf(stderr, "  case %zu: run %lld/%d, singles %lld/%d\n", c,
                    (long long)sa.duration.value, sa.duration.timescale,
                    (long long)sb.duration.value, sb.duration.timescale);
        CHECK(memcmp(&sa.duration, &sb.duration, sizeof sa.duration) == 0);
        bq_detach(&a);
        bq_detach(&b);
    }
}

static int efd_new(void)
{
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

static uint64_t fires(int fd)
{
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return 0;
    return v;
}

static void test_run_triggers_once(void)
{
    struct bq q;
    REQUIRE(mkq(64, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    int gt = efd_new(), lt = efd_new(), far = efd_new();
    uint64_t tgt, tlt, tfar;
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_GREATER_THAN, MBQ_TIME_INVALID, 10, gt,
                               &tgt) == 0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_LESS_THAN, MBQ_TIME_INVALID, 3, lt, &tlt) ==
            0);
    REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_GREATER_THAN, MBQ_TIME_INVALID, 40, far,
                               &tfar) == 0);
    (void)fires(lt); /* true at install */
    struct bq_entry in[BQ_RUN_MAX], out[BQ_RUN_MAX];
    for (int i = 0; i < BQ_RUN_MAX; i++)
        in[i] = mk((uint64_t)i + 1, 7, i);
    uint32_t done;
    /* 0 -> 16 crosses "> 10" once, and not "> 40" */
    CHECK_EQ(bq_enqueue_run(&q, in, 16, &done), 0);
    CHECK_EQ(fires(gt), 1);
    CHECK_EQ(fires(far), 0);
    CHECK_EQ(bq_trigger_fired(&q, tgt), 1);
    /* 16 -> 32: still true, no new edge */
    CHECK_EQ(bq_enqueue_run(&q, in + 16, 16, &done), 0);
    CHECK_EQ(fires(gt), 0);
    CHECK_EQ(fires(far), 0);
    /* 32 -> 2 in two runs: "< 3" once, at the run that crosses it */
    CHECK_EQ(bq_dequeue_run(&q, out, 20), 20);
    CHECK_EQ(fires(lt), 0);
    CHECK_EQ(bq_dequeue_run(&q, out, 10), 10);
    CHECK_EQ(fires(lt), 1);
    CHECK_EQ(bq_trigger_fired(&q, tlt), 2); /* install, then the run */
    CHECK_EQ(bq_count(&q), 2);
    CHECK_EQ(out[9].handle, 30);
    close(gt);
    close(lt);
    close(far);
    bq_detach(&q);
}

static void check_sorted_run(bool with_trigger)
{
    struct bq q;
    REQUIRE(mkq(64, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    int fd = efd_new();
    uint64_t tok;
    if (with_trigger)
        REQUIRE(bq_install_trigger(&q, BQ_TRIGGER_COUNT_GREATER_THAN, MBQ_TIME_INVALID, 5, fd,
                                   &tok) == 0);
    /* B-frame order in groups of four, and a run entirely backwards */
    static const int shuffle[4] = {0, 3, 1, 2};
    struct bq_entry in[BQ_RUN_MAX], out[BQ_RUN_MAX];
    for (int i = 0; i < 16; i++)
        in[i] = mk((uint64_t)i + 1, 7, (i & ~3) + shuffle[i & 3]);
    for (int i = 16; i < 24; i++)
        in[i] = mk((uint64_t)i + 1, 7, 100 - i);
    uint32_t done;
    CHECK_EQ(bq_enqueue_run(&q, in, 16, &done), 0);
    CHECK_EQ(bq_enqueue_run(&q, in + 16, 8, &done), 0);
    if (with_trigger)
        CHECK_EQ(fires(fd), 1);
    int64_t last = -1;
    int got = 0;
    for (int k; (k = bq_dequeue_run(&q, out, 5)) > 0;)
        for (int i = 0; i < k; i++, got++) {
            CHECK(out[i].pts.value >= last);
            last = out[i].pts.value;
        }
    CHECK_EQ(got, 24);
    CHECK_EQ(last, 84);
    close(fd);
    bq_detach(&q);
}

static void test_run_sorted(void)
{
    check_sorted_run(false);
    check_sorted_run(true);
}

/* A FIFO consumer that follows the publish marks one entry at a time
 * (bq_dequeue) while runs go in from another process: it never sees a
 * head more than one past the tail index (what tail_seen allows), and
 * gets every entry once, in order. */
static void test_run_marks_after_index(void)
{
    struct bq q;
    REQUIRE(mkq(64, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    const uint64_t total = 200000;
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct bq_entry in[BQ_RUN_MAX];
        for (uint64_t next = 1; next <= total;) {
            uint32_t n = 1 + (uint32_t)next % BQ_RUN_MAX, done = 0;
            if (next + n > total + 1)
                n = (uint32_t)(total + 1 - next);
            for (uint32_t i = 0; i < n; i++)
                in[i] = mk(next + i, 7, 0);
            int r = bq_enqueue_run(&q, in, n, &done);
            if (r != 0 && r != MBQ_BQ_ERR_QUEUE_IS_FULL)
                _exit(2);
            next += done;
        }
        _exit(0);
    }
    struct bq_entry e;
    uint64_t want = 1, past = 0;
    struct bq_hooks none = {0};
    bq_set_hooks(&q, &none);
    while (want <= total) {
        int r = bq_dequeue(&q, &e);
        if (r == -EAGAIN)
            continue;
        REQUIRE(r == 0);
        REQUIRE(e.handle == want);
        want++;
        uint64_t t = atomic_load(&q.sh->tail.index);
        if (want - 1 > t + 1)
            past++;
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(past, 0);
    CHECK_EQ(st(&q).corruptions, 0);
    CHECK_EQ(st(&q).repairs, 0);
    bq_detach(&q);
}

/* A FIFO producer killed between a run's index store and its publish
 * marks: the entries are in the queue (the index covers them), a consumer
 * gets every one in order (its mark poll falls back to the index), a
 * recount's count of queue entries sees them, and a check finds nothing
 * to repair. */
static void test_run_killed_before_marks(void)
{
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry in[5], e;
    for (int i = 0; i < 5; i++)
        in[i] = mk((uint64_t)i + 1, 7, i);
    uint32_t done;
    CHECK_EQ(bq_enqueue_run(&q, in, 5, &done), 0);
    for (int i = 0; i < 5; i++) /* the marks the dead run never set */
        __atomic_store_n(&q.slots[i].seq, 0, __ATOMIC_RELAXED);
    uint64_t n = 0;
    CHECK_EQ(bq_count_refs(&q, 7, 3, &n), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(bq_check(&q), 0);
    CHECK_EQ(bq_count(&q), 5);
    struct bq_hooks none = {0};
    bq_set_hooks(&q, &none);
    int got = 0, polls = 0;
    while (got < 5 && polls++ < 1000) {
        int r = bq_dequeue(&q, &e);
        if (r == -EAGAIN)
            continue;
        REQUIRE(r == 0);
        CHECK_EQ(e.handle, (uint64_t)got + 1);
        got++;
    }
    CHECK_EQ(got, 5);
    CHECK_EQ(st(&q).corruptions, 0);
    bq_detach(&q);
}

/* ---- pool runs --------------------------------------------------------------- */

static int count_none(void *ctx, uint64_t handle, uint64_t *n)
{
    (void)ctx;
    (void)handle;
    *n = 0;
    return 0;
}

static uint32_t rc_of(struct pool *p, uint64_t h)
{
    return ref_count(atomic_load(&p->blocks[(uint32_t)h - 1].ref));
}

static void test_pool_run_moves(void)
{
    struct pool p;
    struct pool_params pp = {.block_size = 4096, .block_count = 64};
    REQUIRE(pool_create(&pp, &p) == 0);
    uint64_t h[POOL_RUN_MAX];
    for (int i = 0; i < POOL_RUN_MAX; i++)
        REQUIRE(pool_alloc(&p, 64, &h[i]) == 0);
    CHECK_EQ(pool_held_by_self(&p), POOL_RUN_MAX);
    CHECK_EQ(pool_run_begin(&p, h, 0), -EINVAL);
    CHECK_EQ(pool_run_begin(&p, h, POOL_RUN_MAX + 1), -EINVAL);
    /* hand-over: holdings go, refcounts stay (the queue's now) */
    REQUIRE(pool_run_begin(&p, h, POOL_RUN_MAX) == 0);
    CHECK_EQ(pool_run_begin(&p, h, 1), -EAGAIN); /* one run at a time */
    int err = 1;
    CHECK_EQ(pool_disown_run(&p, h, POOL_RUN_MAX, &err), POOL_RUN_MAX);
    CHECK_EQ(err, 0);
    pool_run_end(&p);
    CHECK_EQ(pool_held_by_self(&p), 0);
    CHECK_EQ(rc_of(&p, h[5]), 1);
    /* a holding that is not ours stops the run there */
    REQUIRE(pool_run_begin(&p, h, 4) == 0);
    CHECK_EQ(pool_disown_run(&p, h, 4, &err), 0);
    CHECK_EQ(err, -EINVAL);
    /* adopt them back (a dequeue), then release in one run */
    for (int i = 0; i < POOL_RUN_MAX; i++)
        REQUIRE(pool_adopt(&p, h[i]) == 0);
    pool_run_end(&p);
    CHECK_EQ(pool_held_by_self(&p), POOL_RUN_MAX);
    REQUIRE(pool_run_begin(&p, h, POOL_RUN_MAX) == 0);
    CHECK_EQ(pool_release_run(&p, h, POOL_RUN_MAX), 0);
    pool_run_end(&p);
    CHECK_EQ(pool_held_by_self(&p), 0);
    struct pool_stats s;
    REQUIRE(pool_stats(&p, &s) == 0);
    CHECK_EQ(s.used, 0);
    /* released twice: stale, nothing changes */
    REQUIRE(pool_run_begin(&p, h, 2) == 0);
    CHECK_EQ(pool_release_run(&p, h, 2), -ESTALE);
    pool_run_end(&p);
    pool_detach(&p);
}

/* A live run holds a recount of its blocks off; a dead one's blocks are
 * recounted: a child takes four blocks out of its holdings in a run (as a
 * release does, holding first) and dies before their refcounts drop; the
 * reclaim frees all four. A fifth block the run named but had not touched
 * keeps its reference (the parent's). */
static void test_pool_run_dead(void)
{
    struct pool p;
    struct pool_params pp = {.block_size = 4096, .block_count = 64};
    REQUIRE(pool_create(&pp, &p) == 0);
    uint64_t kept;
    REQUIRE(pool_alloc(&p, 64, &kept) == 0);
    int fd = p.seg.fd;
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct pool c;
        if (pool_attach(fd, &c) != 0)
            _exit(2);
        uint64_t h[5];
        for (int i = 0; i < 4; i++)
            if (pool_alloc(&c, 64, &h[i]) != 0)
                _exit(3);
        h[4] = kept;
        if (pool_run_begin(&c, h, 5) != 0)
            _exit(4);
        for (int i = 0; i < 4; i++)
            atomic_fetch_sub(pool_holding(&c, c.slot, (uint32_t)h[i] - 1), 1);
        if (write(ready[1], &h[0], sizeof h[0]) != sizeof h[0])
            _exit(6);
        pause(); /* killed here, inside the run */
        _exit(7);
    }
    uint64_t first;
    REQUIRE(read(ready[0], &first, sizeof first) == sizeof first);
    /* alive: the recount waits for it, though the block's holdings say 0 */
    CHECK_EQ(pool_audit(&p, first, count_none, NULL), -EAGAIN);
    CHECK_EQ(rc_of(&p, first), 1);
    kill(pid, SIGKILL);
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(pool_reclaim_dead_ex(&p, count_none, NULL) >= 0);
    struct pool_stats s;
    REQUIRE(pool_stats(&p, &s) == 0);
    CHECK_EQ(s.used, 1); /* kept */
    CHECK_EQ(s.audited, 4);
    CHECK_EQ(rc_of(&p, kept), 1);
    CHECK(!pool_audit_pending(&p));
    CHECK_EQ(pool_release(&p, kept, true), 0);
    REQUIRE(pool_stats(&p, &s) == 0);
    CHECK_EQ(s.used, 0);
    close(ready[0]);
    close(ready[1]);
    pool_detach(&p);
}

/* A release run whose cache fills while another process holds the pool
 * lock (stopped, say): the cache cannot spill, so the blocks that do not
 * fit go back to the lists (or to a repair, flagged, when that lock is
 * still held), never past the cache's end; once the holder is gone every
 * block is back. */
/* A full cache whose spill cannot take the pool lock (another process
 * stopped holding it) sends the block back to the lists: released by a run
 * or (run false) one by one with pool_release, the cache never grows past
 * its size, and every block is accounted for. */
static void release_with_lock_held(bool run)
{
    struct pool p;
    struct pool_params pp = {.block_size = 4096, .block_count = 64};
    REQUIRE(pool_create(&pp, &p) == 0);
    uint64_t h[POOL_RUN_MAX];
    for (int i = 0; i < POOL_RUN_MAX; i++)
        REQUIRE(pool_alloc(&p, 64, &h[i]) == 0);
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct pool c;
        if (pool_attach(p.seg.fd, &c) != 0 || pool_lock(&c) < 0)
            _exit(2);
        char b = 1;
        if (write(ready[1], &b, 1) != 1)
            _exit(3);
        pause(); /* holds the pool lock until killed */
        _exit(4);
    }
    char b;
    REQUIRE(read(ready[0], &b, 1) == 1);
    uint64_t limit = slock_wait_limit();
    slock_set_wait_limit(10 * 1000000ull);
    if (run) {
        REQUIRE(pool_run_begin(&p, h, POOL_RUN_MAX) == 0);
        CHECK_EQ(pool_release_run(&p, h, POOL_RUN_MAX), 0);
        pool_run_end(&p);
    } else {
        for (int i = 0; i < POOL_RUN_MAX; i++) {
            CHECK_EQ(pool_release(&p, h[i], true), 0);
            CHECK(p.cache.n <= p.cache.max);
        }
    }
    CHECK(p.cache.n <= p.cache.max);
    CHECK_EQ(pool_held_by_self(&p), 0);
    kill(pid, SIGKILL);
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    slock_set_wait_limit(limit);
    CHECK(pool_reclaim_dead_ex(&p, count_none, NULL) >= 0);
    struct pool_stats s;
    REQUIRE(pool_stats(&p, &s) == 0);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.warm + s.cold, 64);
    close(ready[0]);
    close(ready[1]);
    pool_detach(&p);
}

static void test_pool_release_run_lock_held(void)
{
    release_with_lock_held(true);
}

static void test_pool_release_lock_held(void)
{
    release_with_lock_held(false);
}

CHECK_MAIN(CASE(test_run_order_and_counters), CASE(test_run_stops), CASE(test_run_sums_as_singles), CASE(test_run_triggers_once),
           CASE(test_run_sorted), CASE(test_run_marks_after_index), CASE(test_run_killed_before_marks), CASE(test_pool_run_moves),
           CASE(test_pool_run_dead), CASE(test_pool_release_run_lock_held),
           CASE(test_pool_release_lock_held))
