/* The batched calls (<mbq/mbq.h> "Batched calls") across processes and
 * their rules: a producer process streams 20,000 buffers in batches of 16
 * (allocate_many, enqueue_and_release_many, the unqueued rest retried) to a consumer
 * process that drains bursts (dequeue_wait_many, release_many): no loss,
 * no duplicate, no reordering, every block back. In one process: partial
 * success on a full queue (a prefix enqueued, the caller keeps the rest),
 * drop-oldest per element, a sorted queue inserting each element, end of
 * data, frozen metadata, an empty dequeue, the edges of a count trigger,
 * allocate_many's counts and limits, and bad arguments. */
#include "harness.h"

#include <poll.h>

static struct mbqd D;

enum { OP_GO = 1 };

#define STREAM_N 20000u
#define BATCH 16u

struct payload {
    uint64_t i, not_i;
};

static int producer(int cmd, int rep, void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "batch-producer");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    CREQUIRE(mbq_pool_open(c, "b/pool", &pool) == 0);
    CREQUIRE(mbq_buffer_queue_open(c, "b/q", &q) == 0);
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        uint64_t deadline = h_now_ns() + 60ull * 1000000000ull;
        for (uint64_t i = 0; i < STREAM_N && !r.status;) {
            mbq_buffer b[BATCH];
            size_t n = 0;
            /* the batch's buffers in one call (the outboxes bring back what
             * the consumer's release_many freed), the rest as they come */
            int got = mbq_pool_allocate_many(pool, sizeof(struct payload), b,
                                             STREAM_N - i < BATCH ? STREAM_N - i : BATCH);
            if (got < 0 && got != MBQ_POOL_ERR_ALLOCATION_FAILED) {
                r.status = got;
                break;
            }
            if (got > 0)
                r.v[3] += got; /* allocated by allocate_many */
            while (n < BATCH && i + n < STREAM_N) {
                int e = (int)n < got ? 0 : h_alloc_retry(pool, sizeof(struct payload), &b[n]);
                if (e != 0) {
                    r.status = e;
                    break;
                }
                struct payload *pl = mbq_buffer_get_data(b[n], NULL);
                pl->i = i + n;
                pl->not_i = ~(i + n);
                mbq_buffer_set_data_size(b[n], sizeof *pl);
                n++;
            }
            size_t sent = 0;
            while (sent < n && !r.status) {
                size_t done = 99;
                int e = mbq_buffer_queue_enqueue_and_release_many(q, b + sent, n - sent, &done);
                if (done > n - sent) {
                    r.status = -EPROTO;
                    break;
                }
                sent += done;
                if (e == MBQ_BQ_ERR_QUEUE_IS_FULL) {
                    r.v[0]++;
                    if (h_now_ns() > deadline)
                        r.status = e;
                    sched_yield();
                } else if (e != 0) {
                    r.status = e;
                } else if (sent != n) {
                    r.status = -EPROTO; /* 0 means all of them */
                }
            }
            if (r.status)
                mbq_buffer_release_many(b + sent, n - sent);
            i += n;
        }
        CHECK_STATUS(mbq_buffer_queue_mark_end_of_data(q), 0);
        hmsg_reply(rep, &r);
    }
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static int consumer(int cmd, int rep, void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "batch-consumer");
    CREQUIRE(c);
    mbq_buffer_queue *q = NULL;
    CREQUIRE(mbq_buffer_queue_open(c, "b/q", &q) == 0);
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        uint64_t next = 0;
        for (;;) {
            mbq_buffer b[BATCH];
            int n = mbq_buffer_queue_dequeue_wait_many(q, 30ll * 1000000000ll, b, BATCH);
            if (n == -ENODATA)
                break; /* end of data, all taken */
            if (n <= 0) {
                r.status = n ? n : -EPROTO;
                break;
            }
            r.v[2] = n > r.v[2] ? n : r.v[2]; /* the largest burst */
            for (int k = 0; k < n; k++) {
                const struct payload *pl = mbq_buffer_get_data(b[k], NULL);
                if (!pl || pl->i != next || pl->not_i != ~next)
                    r.v[1]++;
                next++;
            }
            if (mbq_buffer_release_many(b, (size_t)n) != 0)
                r.v[1]++;
        }
        r.v[0] = (int64_t)next;
        hmsg_reply(rep, &r);
    }
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return 0;
}

static void batch_stream_across_processes(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_pool_options po = h_pool_opts(4096, 96);
    REQUIRE(mbq_pool_create(c, "b/pool", &po, &pool) == 0);
    mbq_buffer_queue_options qo = h_bq_opts(64, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "b/q", &qo, &q) == 0);
    struct actor p, k;
    REQUIRE(actor_start(&p, producer, NULL) == 0);
    REQUIRE(actor_start(&k, consumer, NULL) == 0);
    struct hmsg go = hmsg_op(OP_GO), pr, kr;
    REQUIRE(h_write_full(k.cmd, &go, sizeof go) == 0);
    REQUIRE(h_write_full(p.cmd, &go, sizeof go) == 0);
    CHECK_EQ(actor_recv(&p, &pr, 100000), 0);
    CHECK_EQ(actor_recv(&k, &kr, 100000), 0);
    printf("batch stream: %u buffers, producer found the queue full %lld times, allocated "
           "%lld by allocate_many, largest burst dequeued %lld\n",
           STREAM_N, (long long)pr.v[0], (long long)pr.v[3], (long long)kr.v[2]);
    CHECK(pr.v[3] >= STREAM_N / 2); /* the batched allocation did most of them */
    CHECK_STATUS(pr.status, 0);
    CHECK_STATUS(kr.status, 0);
    CHECK_EQ(kr.v[0], STREAM_N);
    CHECK_EQ(kr.v[1], 0);
    CHECK_ACTOR_OK(&p);
    CHECK_ACTOR_OK(&k);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "b/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.allocations, STREAM_N);
    CHECK_EQ(info.frees, STREAM_N);
    CHECK_STATUS(h_stat(c, "b/q", &info), 0);
    CHECK_EQ(info.count, 0);
    CHECK_EQ(info.enqueued, STREAM_N);
    CHECK_EQ(info.dequeued, STREAM_N);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- rules, one process ------------------------------------------------------ */

static void alloc_n(mbq_pool *pool, mbq_buffer *b, size_t n, const int64_t *pts)
{
    for (size_t i = 0; i < n; i++) {
        if (mbq_pool_allocate(pool, 64, &b[i]) != 0)
            _exit(2);
        CHECK_STATUS(mbq_buffer_set_timing(b[i], MBQ_TIME_INVALID,
                                           h_time(pts ? pts[i] : (int64_t)i, 30), h_time(1, 30)),
                     0);
    }
}

static int64_t pts_of(mbq_buffer b)
{
    mbq_time dts, pts, dur;
    if (mbq_buffer_get_timing(b, &dts, &pts, &dur) != 0)
        return -1;
    return pts.value;
}

/* mbq_pool_allocate_many: distinct buffers, each with one reference; the
 * whole pool and then MBQ_POOL_ERR_ALLOCATION_FAILED; the hold limit; a
 * pool of classes (one per call); bad arguments. pool has 64 blocks of
 * 4096 bytes, none in use. */
static void allocate_many_rules(mbq_client *c, mbq_pool *pool)
{
    mbq_buffer all[64 + 1];
    memset(all, 0, sizeof all);
    CHECK_EQ(mbq_pool_allocate_many(pool, 100, all, 40), 40); /* runs of 32 and 8 */
    size_t n = 40;
    for (;;) {
        int r = mbq_pool_allocate_many(pool, 4096, all + n, 64 + 1 - n);
        if (r < 0) {
            CHECK_STATUS(r, MBQ_POOL_ERR_ALLOCATION_FAILED);
            break;
        }
        CHECK(r >= 1 && (size_t)r <= 64 + 1 - n);
        n += (size_t)r;
        if (n > 64)
            break;
    }
    CHECK_EQ(n, 64); /* every block, and not one more */
    for (size_t i = 0; i < n; i++) {
        CHECK(mbq_buffer_is_valid(all[i]));
        CHECK(mbq_buffer_get_data(all[i], NULL) != NULL);
        for (size_t j = i + 1; j < n; j++)
            CHECK(all[i].handle_ != all[j].handle_ && (uint32_t)all[i].handle_ != (uint32_t)all[j].handle_);
    }
    uint64_t held = 0;
    CHECK_STATUS(mbq_pool_get_held(pool, &held), 0);
    CHECK_EQ(held, 64);
    CHECK_STATUS(mbq_buffer_release_many(all, n), 0); /* one reference each */
    CHECK_EQ(h_wait_pool_used(c, "r/pool", 0, 2000), 0);

    /* the hold limit cuts a batch short, then refuses */
    CHECK_STATUS(mbq_pool_set_hold_limit(pool, 10), 0);
    CHECK_EQ(mbq_pool_allocate_many(pool, 64, all, 16), 10);
    CHECK_EQ(mbq_pool_allocate_many(pool, 64, all + 10, 16), -EDQUOT);
    CHECK_STATUS(mbq_pool_set_hold_limit(pool, 0), 0);
    CHECK_STATUS(mbq_buffer_release_many(all, 10), 0);

    /* arguments: out[] untouched on error */
    all[0] = (mbq_buffer){0};
    CHECK_EQ(mbq_pool_allocate_many(NULL, 64, all, 1), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(mbq_pool_allocate_many(pool, 64, NULL, 1), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(mbq_pool_allocate_many(pool, 0, all, 1), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(mbq_pool_allocate_many(pool, 4097, all, 1), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(all[0].handle_, 0);
    CHECK_EQ(mbq_pool_allocate_many(pool, 64, all, 0), 0);
    CHECK_EQ(mbq_pool_allocate_many(pool, 64, NULL, 0), 0);

    /* a pool of classes: one by one (no runs), of the class that fits */
    mbq_pool *cp = NULL;
    mbq_pool_options po = {.size = sizeof po, .class_count = 2, .exclusive = true};
    po.classes[0] = (mbq_pool_class){64, 32};
    po.classes[1] = (mbq_pool_class){4096, 8};
    CHECK_STATUS(mbq_pool_create(c, "r/classes", &po, &cp), 0);
    if (cp) {
        CHECK_EQ(mbq_pool_allocate_many(cp, 64, all, 4), 4);
        for (int i = 0; i < 4; i++) {
            size_t cap = 0;
            CHECK(mbq_buffer_get_data(all[i], &cap) != NULL);
            CHECK_EQ(cap, 64);
        }
        CHECK_STATUS(mbq_buffer_release_many(all, 4), 0);
        mbq_pool_close(cp);
    }
}

static int rules_child(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "rules");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 64);
    CREQUIRE(mbq_pool_create(c, "r/pool", &po, &pool) == 0);
    mbq_buffer_queue *qf = NULL, *qd = NULL, *qs = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    CREQUIRE(mbq_buffer_queue_create(c, "r/fail", &qo, &qf) == 0);
    qo.full_policy = MBQ_FULL_DROP_OLDEST;
    CREQUIRE(mbq_buffer_queue_create(c, "r/drop", &qo, &qd) == 0);
    qo = h_bq_opts(32, MBQ_ORDER_PRESENTATION_TIME);
    CREQUIRE(mbq_buffer_queue_create(c, "r/sorted", &qo, &qs) == 0);
    mbq_buffer b[8], out[8];
    size_t done = 99;

    /* partial success: a prefix goes in, the caller keeps every reference */
    alloc_n(pool, b, 6, NULL);
    CHECK_STATUS(mbq_buffer_queue_enqueue_many(qf, b, 6, &done), MBQ_BQ_ERR_QUEUE_IS_FULL);
    CHECK_EQ(done, 4);
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(qf), 4);
    /* frozen by their own enqueue: the first four only */
    CHECK_STATUS(mbq_buffer_set_timing(b[0], MBQ_TIME_INVALID, h_time(9, 30), h_time(1, 30)),
                 -EPERM);
    CHECK_STATUS(mbq_buffer_set_timing(b[5], MBQ_TIME_INVALID, h_time(5, 30), h_time(1, 30)), 0);
    CHECK_EQ(mbq_buffer_queue_dequeue_many(qf, out, 8), 4);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(out[i].handle_, b[i].handle_);
    CHECK_STATUS(mbq_buffer_release_many(out, 4), 0);
    CHECK_STATUS(mbq_buffer_release_many(b, 6), 0); /* ours, all six */
    CHECK_EQ(mbq_buffer_queue_dequeue_many(qf, out, 8), 0); /* empty */

    /* hand-over, partial: the rest stays the caller's */
    alloc_n(pool, b, 6, NULL);
    CHECK_STATUS(mbq_buffer_queue_enqueue_and_release_many(qf, b, 6, &done),
                 MBQ_BQ_ERR_QUEUE_IS_FULL);
    CHECK_EQ(done, 4);
    CHECK_STATUS(mbq_buffer_release_many(b + 4, 2), 0);
    CHECK_EQ(mbq_buffer_queue_dequeue_many(qf, out, 3), 3); /* max respected */
    CHECK_EQ(mbq_buffer_queue_dequeue_many(qf, out + 3, 8), 1);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(out[i].handle_, b[i].handle_);
    CHECK_STATUS(mbq_buffer_release_many(out, 4), 0);
    CHECK_EQ(h_wait_pool_used(c, "r/pool", 0, 2000), 0);

    /* drop-oldest, per element: six into four places drops the first two */
    alloc_n(pool, b, 6, NULL);
    CHECK_STATUS(mbq_buffer_queue_enqueue_and_release_many(qd, b, 6, &done), 0);
    CHECK_EQ(done, 6);
    CHECK_EQ(mbq_buffer_queue_dequeue_many(qd, out, 8), 4);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(out[i].handle_, b[i + 2].handle_);
    CHECK_STATUS(mbq_buffer_release_many(out, 4), 0);
    mbq_buffer_queue_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    CHECK_STATUS(mbq_buffer_queue_get_stats(qd, &st), 0);
    CHECK_EQ(st.dropped, 2);

    /* a sorted queue inserts each element; the drain is in PTS order */
    const int64_t keys[8] = {0, 3, 1, 2, 4, 7, 5, 6};
    alloc_n(pool, b, 8, keys);
    CHECK_STATUS(mbq_buffer_queue_enqueue_and_release_many(qs, b, 8, &done), 0);
    CHECK_EQ(mbq_buffer_queue_dequeue_many(qs, out, 8), 8);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(pts_of(out[i]), i);
    CHECK_STATUS(mbq_buffer_release_many(out, 8), 0);

    /* the edges of "count > 2", each seen: two batches, two firings */
    mbq_trigger_token tok;
    CHECK_STATUS(mbq_buffer_queue_install_trigger_with_integer_threshold(
                     qs, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 2, &tok),
                 0);
    int fd = mbq_buffer_queue_trigger_fd(qs, tok);
    CHECK(fd >= 0);
    for (int round = 0; round < 2; round++) {
        alloc_n(pool, b, 4, NULL);
        CHECK_STATUS(mbq_buffer_queue_enqueue_and_release_many(qs, b, 4, &done), 0);
        CHECK_EQ(mbq_buffer_queue_dequeue_many(qs, out, 8), 4);
        CHECK_STATUS(mbq_buffer_release_many(out, 4), 0);
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK_EQ(poll(&pfd, 1, 5000), 1);
    uint64_t fired = 0;
    CHECK_EQ(read(fd, &fired, sizeof fired), (ssize_t)sizeof fired);
    CHECK_EQ(fired, 2);
    CHECK_STATUS(mbq_buffer_queue_remove_trigger(qs, tok), 0);

    /* end of data: nothing after it, the caller keeps everything */
    CHECK_STATUS(mbq_buffer_queue_mark_end_of_data(qs), 0);
    alloc_n(pool, b, 2, NULL);
    CHECK_STATUS(mbq_buffer_queue_enqueue_and_release_many(qs, b, 2, &done),
                 MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA);
    CHECK_EQ(done, 0);
    CHECK_STATUS(mbq_buffer_release_many(b, 2), 0);
    CHECK_EQ(mbq_buffer_queue_dequeue_wait_many(qs, 1000000, out, 8), -ENODATA);

    /* arguments */
    CHECK_STATUS(mbq_buffer_queue_enqueue_many(NULL, b, 1, &done),
                 MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(done, 0);
    CHECK_STATUS(mbq_buffer_queue_enqueue_many(qf, NULL, 1, NULL),
                 MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_STATUS(mbq_buffer_queue_enqueue_many(qf, NULL, 0, &done), 0);
    CHECK_EQ(mbq_buffer_queue_dequeue_many(qf, NULL, 4), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(mbq_buffer_queue_dequeue_many(qf, out, 0), 0);
    CHECK_STATUS(mbq_buffer_release_many(NULL, 0), 0);

    CHECK_EQ(h_wait_pool_used(c, "r/pool", 0, 2000), 0);
    allocate_many_rules(c, pool);
    CHECK_EQ(h_wait_pool_used(c, "r/pool", 0, 2000), 0);
    mbq_buffer_queue_close(qf);
    mbq_buffer_queue_close(qd);
    mbq_buffer_queue_close(qs);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return check_case_failed ? 1 : 0;
}

static void batch_rules(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    CHECK_EQ(run_in_child(rules_child, NULL), 0);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(batch_stream_across_processes), CASE(batch_rules))
