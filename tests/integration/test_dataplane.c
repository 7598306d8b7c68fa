/* The data plane across processes: a PTS-sorted queue filled by one process
 * with random timestamps is drained in PTS order (stable among equal keys)
 * by another; 100k buffers stream FIFO from a producer to a blocking
 * consumer with no loss, duplicate or reordering; one buffer enqueued in
 * two queues is consumed by two processes and freed exactly once. Plus the
 * single-process buffer and queue rules the cross-process cases rely on
 * (references, stale handles, full policies, readiness, reset). */
#include "harness.h"

static struct mbqd D;

enum {
    OP_GO = 1,
};

/* ---- sorted queue ---------------------------------------------------------- */

#define SORTED_N 200
#define SORTED_SEED 20241122u

struct sorted_payload {
    int64_t key;
    uint32_t seq;
    uint32_t magic;
};

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* The keys the producer uses: random in [0, 100) at timescale 30, so many
 * are equal (stability is checked among them). */
static void sorted_keys(int64_t *keys)
{
    uint32_t s = SORTED_SEED;
    for (int i = 0; i < SORTED_N; i++)
        keys[i] = lcg(&s) % 100;
}

/* arg: the order (PTS or DTS) */
static int sorted_producer(void *arg)
{
    mbq_buffer_queue_order order = (mbq_buffer_queue_order)(intptr_t)arg;
    const char *qname = order == MBQ_ORDER_PRESENTATION_TIME ? "dp/s/pts" : "dp/s/dts";
    mbq_client *c = h_connect(&D, "sorted-producer");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_pool_options po = h_pool_opts(4096, SORTED_N + 8);
    CREQUIRE(mbq_pool_create(c, "dp/s/pool", &po, &pool) == 0);
    mbq_buffer_queue_options qo = h_bq_opts(SORTED_N, order);
    CREQUIRE(mbq_buffer_queue_create(c, qname, &qo, &q) == 0);
    int64_t keys[SORTED_N];
    sorted_keys(keys);
    for (uint32_t i = 0; i < SORTED_N; i++) {
        mbq_buffer b;
        CREQUIRE(mbq_pool_allocate(pool, sizeof(struct sorted_payload), &b) == 0);
        struct sorted_payload *pl = mbq_buffer_get_data(b, NULL);
        CREQUIRE(pl);
        *pl = (struct sorted_payload){keys[i], i, 0x5eed};
        /* the other timestamp increases with i, so it never agrees with the key */
        mbq_time key = h_time(keys[i], 30), other = h_time(1000 + i, 30);
        if (order == MBQ_ORDER_PRESENTATION_TIME)
            CHECK_STATUS(mbq_buffer_set_timing(b, other, key, h_time(1, 30)), 0);
        else
            CHECK_STATUS(mbq_buffer_set_timing(b, key, other, h_time(1, 30)), 0);
        CHECK_STATUS(mbq_buffer_set_data_size(b, sizeof *pl), 0);
        CHECK_STATUS(mbq_buffer_queue_enqueue(q, b), 0);
        CHECK_STATUS(mbq_buffer_release(b), 0);
    }
    CHECK_STATUS(mbq_buffer_queue_mark_end_of_data(q), 0);
    CHECK(mbq_buffer_queue_contains_end_of_data(q));
    CHECK(!mbq_buffer_queue_is_at_end_of_data(q));
    /* nothing more after end of data */
    mbq_buffer b;
    CREQUIRE(mbq_pool_allocate(pool, 16, &b) == 0);
    mbq_buffer_set_timing(b, h_time(1, 30), h_time(1, 30), h_time(1, 30));
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, b), MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA);
    CHECK_STATUS(mbq_buffer_release(b), 0);
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(q), SORTED_N);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static int sorted_consumer(void *arg)
{
    mbq_buffer_queue_order order = (mbq_buffer_queue_order)(intptr_t)arg;
    bool by_pts = order == MBQ_ORDER_PRESENTATION_TIME;
    const char *qname = by_pts ? "dp/s/pts" : "dp/s/dts";
    int64_t keys[SORTED_N];
    sorted_keys(keys);
    int64_t kmin = INT64_MAX, kmax = INT64_MIN, end = INT64_MIN;
    uint32_t first_seq = 0;
    for (uint32_t i = 0; i < SORTED_N; i++) {
        if (keys[i] < kmin) {
            kmin = keys[i];
            first_seq = i;
        }
        if (keys[i] > kmax)
            kmax = keys[i];
        if (keys[i] + 1 > end)
            end = keys[i] + 1;
    }

    mbq_client *c = h_connect(&D, "sorted-consumer");
    CREQUIRE(c);
    mbq_buffer_queue *q = NULL;
    mbq_pool *pool = NULL;
    CREQUIRE(mbq_buffer_queue_open(c, qname, &q) == 0);
    CREQUIRE(mbq_pool_open(c, "dp/s/pool", &pool) == 0);

    /* inspection before draining */
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(q), SORTED_N);
    CHECK(!mbq_buffer_queue_is_empty(q));
    CHECK(mbq_buffer_queue_contains_end_of_data(q));
    CHECK(!mbq_buffer_queue_is_at_end_of_data(q));
    CHECK_TIME(mbq_buffer_queue_get_duration(q), h_time(SORTED_N, 30));
    CHECK_EQ(mbq_buffer_queue_get_total_size(q), SORTED_N * sizeof(struct sorted_payload));
    if (by_pts) {
        CHECK_TIME(mbq_buffer_queue_get_first_presentation_time_stamp(q), h_time(kmin, 30));
        CHECK_TIME(mbq_buffer_queue_get_min_presentation_time_stamp(q), h_time(kmin, 30));
        CHECK_TIME(mbq_buffer_queue_get_max_presentation_time_stamp(q), h_time(kmax, 30));
        CHECK_TIME(mbq_buffer_queue_get_end_presentation_time_stamp(q), h_time(end, 30));
        /* the DTS of the head (the first-enqueued buffer with the least PTS)
         * and the least DTS (the first enqueued) */
        CHECK_TIME(mbq_buffer_queue_get_first_decode_time_stamp(q), h_time(1000 + first_seq, 30));
        CHECK_TIME(mbq_buffer_queue_get_min_decode_time_stamp(q), h_time(1000, 30));
    } else {
        CHECK_TIME(mbq_buffer_queue_get_first_decode_time_stamp(q), h_time(kmin, 30));
        CHECK_TIME(mbq_buffer_queue_get_min_decode_time_stamp(q), h_time(kmin, 30));
        CHECK_TIME(mbq_buffer_queue_get_first_presentation_time_stamp(q),
                   h_time(1000 + first_seq, 30));
        CHECK_TIME(mbq_buffer_queue_get_min_presentation_time_stamp(q), h_time(1000, 30));
        CHECK_TIME(mbq_buffer_queue_get_max_presentation_time_stamp(q),
                   h_time(1000 + SORTED_N - 1, 30));
    }

    static uint8_t seen[SORTED_N];
    memset(seen, 0, sizeof seen);
    int64_t last_key = INT64_MIN;
    uint32_t last_seq = 0;
    int got = 0, order_errors = 0;
    for (;;) {
        mbq_buffer b;
        int r = mbq_buffer_queue_dequeue_and_retain(q, &b);
        if (r == -EAGAIN)
            break;
        CHECK_STATUS(r, 0);
        if (r != 0)
            break;
        const struct sorted_payload *pl = mbq_buffer_get_data(b, NULL);
        CHECK(pl != NULL);
        if (pl) {
            CHECK_EQ(pl->magic, 0x5eed);
            mbq_time dts, pts, dur;
            CHECK_STATUS(mbq_buffer_get_timing(b, &dts, &pts, &dur), 0);
            CHECK_TIME(by_pts ? pts : dts, h_time(pl->key, 30));
            CHECK_TIME(dur, h_time(1, 30));
            if (pl->seq < SORTED_N) {
                CHECK_EQ(pl->key, keys[pl->seq]);
                CHECK_EQ(seen[pl->seq], 0);
                seen[pl->seq] = 1;
            }
            if (got > 0 && (pl->key < last_key || (pl->key == last_key && pl->seq < last_seq))) {
                if (order_errors++ < 5)
                    fprintf(stderr, "order: key %lld seq %u after key %lld seq %u\n",
                            (long long)pl->key, pl->seq, (long long)last_key, last_seq);
            }
            last_key = pl->key;
            last_seq = pl->seq;
        }
        got++;
        CHECK_STATUS(mbq_buffer_release(b), 0);
    }
    CHECK_EQ(order_errors, 0);
    CHECK_EQ(got, SORTED_N);
    CHECK(mbq_buffer_queue_is_empty(q));
    CHECK(mbq_buffer_queue_is_at_end_of_data(q));
    mbq_buffer b;
    CHECK_STATUS(mbq_buffer_queue_dequeue_wait(q, 1000000000ll, &b), -ENODATA);
    CHECK(!h_time_numeric(mbq_buffer_queue_get_first_presentation_time_stamp(q)));
    CHECK(!h_time_numeric(mbq_buffer_queue_get_min_presentation_time_stamp(q)));
    CHECK_TIME(mbq_buffer_queue_get_duration(q), h_time(0, 1));
    mbq_buffer_queue_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    CHECK_STATUS(mbq_buffer_queue_get_stats(q, &st), 0);
    CHECK_EQ(st.enqueued, SORTED_N);
    CHECK_EQ(st.dequeued, SORTED_N);
    CHECK_EQ(st.high_water, SORTED_N);
    CHECK_EQ(st.count, 0);
    CHECK(st.end_of_data);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static void sorted_queue_across_processes(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_buffer_queue_order orders[2] = {MBQ_ORDER_PRESENTATION_TIME, MBQ_ORDER_DECODE_TIME};
    for (int i = 0; i < 2; i++) {
        void *arg = (void *)(intptr_t)orders[i];
        CHECK_EQ(run_in_child(sorted_producer, arg), 0);
        CHECK_EQ(run_in_child(sorted_consumer, arg), 0);
    }
    mbq_client *c = h_connect(&D, "observer");
    REQUIRE(c);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "dp/s/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.allocations, 2 * (SORTED_N + 1));
    CHECK_EQ(info.allocations, info.frees);
    CHECK_STATUS(h_stat(c, "dp/s/pts", &info), 0);
    CHECK_EQ(info.order, MBQ_ORDER_PRESENTATION_TIME);
    CHECK_EQ(info.count, 0);
    CHECK(info.end_of_data);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- 100k FIFO ---------------------------------------------------------- */

#define FIFO_N 100000u

struct fifo_payload {
    uint64_t i, not_i;
};

static int fifo_producer(int cmd, int rep, void *arg)
{
    (void)arg;
    struct hmsg m;
    CREQUIRE(hmsg_next(cmd, &m) == 0);
    mbq_client *c = h_connect(&D, "fifo-producer");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    CREQUIRE(mbq_pool_open(c, "dp/f/pool", &pool) == 0);
    CREQUIRE(mbq_buffer_queue_open(c, "dp/f/q", &q) == 0);
    struct hmsg r = hmsg_op(OP_GO);
    uint64_t full = 0, starved = 0;
    uint64_t deadline = h_now_ns() + 90ull * 1000000000ull;
    for (uint64_t i = 0; i < FIFO_N && !r.status; i++) {
        mbq_buffer b;
        int e;
        while ((e = mbq_pool_allocate(pool, sizeof(struct fifo_payload), &b)) ==
               MBQ_POOL_ERR_ALLOCATION_FAILED) {
            starved++;
            if (h_now_ns() > deadline)
                break;
            sched_yield();
        }
        if (e != 0) {
            fprintf(stderr, "producer: allocate #%llu: %d %s\n", (unsigned long long)i, e,
                    mbq_status_string(e));
            r.status = e;
            break;
        }
        size_t cap = 0;
        struct fifo_payload *pl = mbq_buffer_get_data(b, &cap);
        if (!pl || cap < sizeof *pl) {
            r.status = -EFAULT;
            break;
        }
        pl->i = i;
        pl->not_i = ~i;
        /* The rest of the block too, so that blocks that overlapped (packed
         * sub-page ones placed wrong) would show in the consumer's check. */
        memset((uint8_t *)pl + sizeof *pl, (int)(i & 0xff), cap - sizeof *pl);
        mbq_buffer_set_data_size(b, sizeof *pl);
        while ((e = mbq_buffer_queue_enqueue(q, b)) == MBQ_BQ_ERR_QUEUE_IS_FULL) {
            full++;
            if (h_now_ns() > deadline)
                break;
            sched_yield();
        }
        if (e != 0) {
            fprintf(stderr, "producer: enqueue #%llu: %d %s\n", (unsigned long long)i, e,
                    mbq_status_string(e));
            r.status = e;
        }
        mbq_buffer_release(b);
    }
    CHECK_STATUS(mbq_buffer_queue_mark_end_of_data(q), 0);
    r.v[0] = (int64_t)full;
    r.v[1] = (int64_t)starved;
    hmsg_reply(rep, &r);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

/* Opens only the queue: the pool is mapped by the library when needed. */
static int fifo_consumer(int cmd, int rep, void *arg)
{
    (void)arg;
    struct hmsg m;
    CREQUIRE(hmsg_next(cmd, &m) == 0);
    mbq_client *c = h_connect(&D, "fifo-consumer");
    CREQUIRE(c);
    mbq_buffer_queue *q = NULL;
    CREQUIRE(mbq_buffer_queue_open(c, m.s, &q) == 0);
    struct hmsg r = hmsg_op(OP_GO);
    uint64_t expect = 0, bad = 0, stride = (uint64_t)m.v[0] ? (uint64_t)m.v[0] : 1;
    for (;;) {
        mbq_buffer b;
        int e = mbq_buffer_queue_dequeue_wait(q, 20 * 1000000000ll, &b);
        if (e == -ENODATA)
            break;
        if (e != 0) {
            fprintf(stderr, "consumer %s: dequeue_wait after %llu: %d %s\n", m.s,
                    (unsigned long long)expect, e, mbq_status_string(e));
            r.status = e;
            break;
        }
        size_t cap = 0;
        const struct fifo_payload *pl = mbq_buffer_get_data(b, &cap);
        bool tail_ok = pl != NULL;
        for (size_t k = sizeof *pl; pl && m.v[1] && k < cap; k++) /* v[1]: the tail is filled */
            tail_ok &= ((const uint8_t *)pl)[k] == (uint8_t)(pl->i & 0xff);
        if (!pl || pl->i != expect || pl->not_i != ~expect || !tail_ok ||
            mbq_buffer_get_data_size(b) != sizeof *pl) {
            if (bad++ < 5)
                fprintf(stderr, "consumer %s: expected #%llu, got #%lld\n", m.s,
                        (unsigned long long)expect, pl ? (long long)pl->i : -1ll);
            if (pl)
                expect = pl->i;
        }
        expect += stride;
        int rr = mbq_buffer_release(b);
        if (rr != 0 && bad++ < 5)
            fprintf(stderr, "consumer: release: %d\n", rr);
    }
    r.v[0] = (int64_t)(expect / stride);
    r.v[1] = (int64_t)bad;
    hmsg_reply(rep, &r);
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return 0;
}

/* block_size: page blocks (4096), or packed sub-page ones (64). */
static void fifo_100k_across_processes_bs(uint64_t block_size)
{
    REQUIRE(mbqd_start(&D) == 0);
    struct actor p, k;
    REQUIRE(actor_start(&p, fifo_producer, NULL) == 0);
    REQUIRE(actor_start(&k, fifo_consumer, NULL) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_pool_options po = h_pool_opts(block_size, 64);
    REQUIRE(mbq_pool_create(c, "dp/f/pool", &po, &pool) == 0);
    mbq_buffer_queue_options qo = h_bq_opts(64, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "dp/f/q", &qo, &q) == 0);

    uint64_t t0 = h_now_ns();
    struct hmsg go = hmsg_op(OP_GO), pr, kr;
    snprintf(go.s, sizeof go.s, "dp/f/q");
    go.v[1] = 1; /* fifo_producer fills each block's tail: check it */
    REQUIRE(h_write_full(k.cmd, &go, sizeof go) == 0);
    REQUIRE(h_write_full(p.cmd, &go, sizeof go) == 0);
    CHECK_EQ(actor_recv(&p, &pr, 100000), 0);
    CHECK_EQ(actor_recv(&k, &kr, 100000), 0);
    double secs = (double)(h_now_ns() - t0) / 1e9;
    printf("fifo (%" PRIu64 " B blocks): %u buffers in %.3f s (%.0f/s); producer found the "
           "queue full %lld times, the pool empty %lld times\n",
           block_size, FIFO_N, secs, FIFO_N / secs, (long long)pr.v[0], (long long)pr.v[1]);
    CHECK_STATUS(pr.status, 0);
    CHECK_STATUS(kr.status, 0);
    CHECK_EQ(kr.v[0], FIFO_N);
    CHECK_EQ(kr.v[1], 0);
    CHECK_ACTOR_OK(&p);
    CHECK_ACTOR_OK(&k);

    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "dp/f/pool", &info), 0);
    CHECK_EQ(info.block_size, block_size);
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.allocations, FIFO_N);
    CHECK_EQ(info.frees, FIFO_N);
    CHECK_STATUS(h_stat(c, "dp/f/q", &info), 0);
    CHECK_EQ(info.count, 0);
    CHECK_EQ(info.enqueued, FIFO_N);
    CHECK_EQ(info.dequeued, FIFO_N);
    CHECK_EQ(info.dropped, 0);
    CHECK_EQ(info.rejected_full, pr.v[0]);
    CHECK(info.high_water >= 1 && info.high_water <= 64);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

static void fifo_100k_across_processes(void)
{
    fifo_100k_across_processes_bs(4096);
}

static void fifo_100k_small_blocks_across_processes(void)
{
    fifo_100k_across_processes_bs(64);
}

/* ---- fan-out -------------------------------------------------------------- */

#define FAN_N 2000u

static int fan_producer(int cmd, int rep, void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "fan-producer");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *qa = NULL, *qb = NULL;
    CREQUIRE(mbq_pool_open(c, "dp/o/pool", &pool) == 0);
    CREQUIRE(mbq_buffer_queue_open(c, "dp/o/a", &qa) == 0);
    CREQUIRE(mbq_buffer_queue_open(c, "dp/o/b", &qb) == 0);
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        uint64_t first = (uint64_t)m.v[0], n = (uint64_t)m.v[1];
        for (uint64_t i = first; i < first + n && !r.status; i++) {
            mbq_buffer b;
            int e = h_alloc_retry(pool, sizeof(struct fifo_payload), &b);
            if (e != 0) {
                r.status = e;
                break;
            }
            struct fifo_payload *pl = mbq_buffer_get_data(b, NULL);
            pl->i = i;
            pl->not_i = ~i;
            mbq_buffer_set_data_size(b, sizeof *pl);
            /* v[3]: hand the reference to the last queue instead of
             * releasing it after the enqueue */
            mbq_buffer_queue *qs[2] = {qa, qb};
            bool handed = false;
            for (int k = 0; k < 2 && !r.status; k++) {
                bool take = m.v[3] && k == 1;
                uint64_t deadline = h_now_ns() + 60ull * 1000000000ull;
                while ((e = take ? mbq_buffer_queue_enqueue_and_release(qs[k], b)
                                 : mbq_buffer_queue_enqueue(qs[k], b)) ==
                           MBQ_BQ_ERR_QUEUE_IS_FULL &&
                       h_now_ns() < deadline)
                    sched_yield();
                if (e != 0)
                    r.status = e;
                handed = take && e == 0;
            }
            if (!handed)
                mbq_buffer_release(b);
        }
        if (m.v[2]) {
            CHECK_STATUS(mbq_buffer_queue_mark_end_of_data(qa), 0);
            CHECK_STATUS(mbq_buffer_queue_mark_end_of_data(qb), 0);
        }
        hmsg_reply(rep, &r);
    }
    mbq_buffer_queue_close(qa);
    mbq_buffer_queue_close(qb);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

/* Takes one buffer (bounded wait), checks it, releases it. */
static int fan_take_one(int cmd, int rep, void *arg)
{
    const char *qname = arg;
    mbq_client *c = h_connect(&D, qname);
    CREQUIRE(c);
    mbq_buffer_queue *q = NULL;
    CREQUIRE(mbq_buffer_queue_open(c, qname, &q) == 0);
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        mbq_buffer b;
        r.status = mbq_buffer_queue_dequeue_wait(q, 10 * 1000000000ll, &b);
        if (r.status == 0) {
            const struct fifo_payload *pl = mbq_buffer_get_data(b, NULL);
            r.v[0] = pl ? (int64_t)pl->i : -1;
            r.v[1] = mbq_buffer_release(b);
        }
        hmsg_reply(rep, &r);
    }
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return 0;
}

static void fanout_two_queues_two_consumers(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *qa = NULL, *qb = NULL;
    mbq_pool_options po = h_pool_opts(4096, 16);
    REQUIRE(mbq_pool_create(c, "dp/o/pool", &po, &pool) == 0);
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "dp/o/a", &qo, &qa) == 0);
    REQUIRE(mbq_buffer_queue_create(c, "dp/o/b", &qo, &qb) == 0);

    struct actor p, ka, kb;
    REQUIRE(actor_start(&p, fan_producer, NULL) == 0);
    REQUIRE(actor_start(&ka, fan_take_one, "dp/o/a") == 0);
    REQUIRE(actor_start(&kb, fan_take_one, "dp/o/b") == 0);

    /* one buffer in both queues: one block, two queue references */
    struct hmsg m = hmsg_op(OP_GO), r;
    m.v[0] = 7;
    m.v[1] = 1;
    REQUIRE(actor_call(&p, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "dp/o/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 1);
    CHECK_EQ(info.allocations, 1);
    CHECK_EQ(info.frees, 0);
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(qa), 1);
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(qb), 1);

    struct hmsg take = hmsg_op(OP_GO);
    REQUIRE(actor_call(&ka, &take, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_EQ(r.v[0], 7);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(h_stat(c, "dp/o/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 1); /* still in queue b */
    CHECK_EQ(info.frees, 0);
    REQUIRE(actor_call(&kb, &take, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_EQ(r.v[0], 7);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(h_stat(c, "dp/o/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.allocations, 1);
    CHECK_EQ(info.frees, 1);
    CHECK_ACTOR_OK(&ka);
    CHECK_ACTOR_OK(&kb);

    /* streaming: FAN_N buffers through both queues to two blocking consumers */
    struct actor sa, sb;
    REQUIRE(actor_start(&sa, fifo_consumer, NULL) == 0);
    REQUIRE(actor_start(&sb, fifo_consumer, NULL) == 0);
    struct hmsg go = hmsg_op(OP_GO);
    snprintf(go.s, sizeof go.s, "dp/o/a");
    REQUIRE(h_write_full(sa.cmd, &go, sizeof go) == 0);
    snprintf(go.s, sizeof go.s, "dp/o/b");
    REQUIRE(h_write_full(sb.cmd, &go, sizeof go) == 0);
    m.v[0] = 0;
    m.v[1] = FAN_N;
    m.v[2] = 1; /* then end of data */
    m.v[3] = 1; /* the producer hands its reference to queue b */
    REQUIRE(actor_call(&p, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    struct hmsg ra, rb;
    CHECK_EQ(actor_recv(&sa, &ra, 60000), 0);
    CHECK_EQ(actor_recv(&sb, &rb, 60000), 0);
    CHECK_STATUS(ra.status, 0);
    CHECK_STATUS(rb.status, 0);
    CHECK_EQ(ra.v[0], FAN_N);
    CHECK_EQ(rb.v[0], FAN_N);
    CHECK_EQ(ra.v[1], 0);
    CHECK_EQ(rb.v[1], 0);
    CHECK_ACTOR_OK(&sa);
    CHECK_ACTOR_OK(&sb);
    CHECK_ACTOR_OK(&p);

    /* every buffer freed exactly once */
    CHECK_STATUS(h_stat(c, "dp/o/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.allocations, FAN_N + 1);
    CHECK_EQ(info.frees, FAN_N + 1);
    CHECK_STATUS(h_stat(c, "dp/o/a", &info), 0);
    CHECK_EQ(info.enqueued, FAN_N + 1);
    CHECK_EQ(info.dequeued, FAN_N + 1);
    mbq_buffer_queue_close(qa);
    mbq_buffer_queue_close(qb);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- single-process rules --------------------------------------------------- */

static int reset_seen[8], reset_n;

static void reset_cb(mbq_buffer b, void *refcon)
{
    (void)refcon;
    const struct fifo_payload *pl = mbq_buffer_get_data(b, NULL);
    if (reset_n < 8)
        reset_seen[reset_n] = pl ? (int)pl->i : -1;
    reset_n++;
}

static int each_seen[8], each_n;

static int each_cb(mbq_buffer b, void *refcon)
{
    const struct fifo_payload *pl = mbq_buffer_get_data(b, NULL);
    if (each_n < 8)
        each_seen[each_n] = pl ? (int)pl->i : -1;
    each_n++;
    return (refcon && each_n == 2) ? 12345 : 0;
}

static int validate_cb(mbq_buffer_queue *q, mbq_buffer b, void *refcon)
{
    (void)q;
    (*(int *)refcon)++;
    return mbq_buffer_get_data_size(b) == 13 ? MBQ_BQ_ERR_INVALID_BUFFER : 0;
}

static mbq_buffer mk(mbq_pool *pool, uint64_t i)
{
    mbq_buffer b = {0};
    if (mbq_pool_allocate(pool, 100, &b) != 0)
        return (mbq_buffer){0};
    struct fifo_payload *pl = mbq_buffer_get_data(b, NULL);
    if (pl) {
        pl->i = i;
        pl->not_i = ~i;
    }
    mbq_buffer_set_data_size(b, 16);
    mbq_buffer_set_timing(b, h_time((int64_t)i, 10), h_time((int64_t)i, 10), h_time(1, 10));
    return b;
}

static int64_t head_id(mbq_buffer_queue *q)
{
    mbq_buffer b;
    if (mbq_buffer_queue_dequeue_and_retain(q, &b) != 0)
        return -1;
    const struct fifo_payload *pl = mbq_buffer_get_data(b, NULL);
    int64_t v = pl ? (int64_t)pl->i : -2;
    mbq_buffer_release(b);
    return v;
}

static int buffer_rules_child(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "rules");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(5000, 8); /* rounded up to two pages */
    CREQUIRE(mbq_pool_create(c, "r/pool", &po, &pool) == 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "r/pool", &info), 0);
    CHECK_EQ(info.block_size, 8192);

    /* allocation limits */
    mbq_buffer b, x;
    CHECK_STATUS(mbq_pool_allocate(pool, 0, &x), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_STATUS(mbq_pool_allocate(pool, 8193, &x), MBQ_POOL_ERR_INVALID_PARAMETER);
    CREQUIRE(mbq_pool_allocate(pool, 8192, &b) == 0);
    size_t cap = 0;
    uint8_t *data = mbq_buffer_get_data(b, &cap);
    CHECK(data != NULL);
    CHECK_EQ(cap, 8192);
    if (data)
        memset(data, 0xab, cap); /* the whole block is writable */
    CHECK(mbq_buffer_is_valid(b));
    CHECK(mbq_buffer_is_data_ready(b)); /* a new buffer is ready */

    /* references and stale handles */
    CHECK_STATUS(mbq_buffer_retain(b), 0);
    CHECK_STATUS(mbq_buffer_release(b), 0);
    CHECK(mbq_buffer_is_valid(b));
    CHECK_STATUS(mbq_buffer_release(b), 0);
    CHECK(!mbq_buffer_is_valid(b));
    CHECK_STATUS(mbq_buffer_retain(b), -ESTALE);
    CHECK_STATUS(mbq_buffer_release(b), -ESTALE);
    CHECK(mbq_buffer_get_data(b, NULL) == NULL);
    mbq_buffer zero = {0};
    CHECK(!mbq_buffer_is_valid(zero));
    CHECK(mbq_buffer_retain(zero) < 0);
    CHECK(mbq_buffer_get_data(zero, NULL) == NULL);
    /* the freed block is handed out again under a new generation */
    mbq_buffer all[8];
    int n = 0;
    while (n < 8 && mbq_pool_allocate(pool, 1, &all[n]) == 0)
        n++;
    CHECK_EQ(n, 8);
    CHECK_STATUS(mbq_pool_allocate(pool, 1, &x), MBQ_POOL_ERR_ALLOCATION_FAILED);
    CHECK(!mbq_buffer_is_valid(b));
    CHECK_STATUS(mbq_buffer_release(b), -ESTALE);
    CHECK_STATUS(h_stat(c, "r/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 8);
    for (int i = 0; i < n; i++)
        CHECK_STATUS(mbq_buffer_release(all[i]), 0);

    /* FIFO, fail when full; copy_head; stale and missing buffers */
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    CREQUIRE(mbq_buffer_queue_create(c, "r/q", &qo, &q) == 0);
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, zero), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, b), -ESTALE);
    for (int i = 0; i < 4; i++) {
        x = mk(pool, (uint64_t)i);
        CHECK_STATUS(mbq_buffer_queue_enqueue(q, x), 0);
        CHECK_STATUS(mbq_buffer_release(x), 0);
    }
    x = mk(pool, 99);
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, x), MBQ_BQ_ERR_QUEUE_IS_FULL);
    /* a failed hand-over leaves the reference with the caller */
    CHECK_STATUS(mbq_buffer_queue_enqueue_and_release(q, x), MBQ_BQ_ERR_QUEUE_IS_FULL);
    CHECK(mbq_buffer_is_valid(x));
    CHECK_STATUS(mbq_buffer_release(x), 0);
    CHECK_STATUS(mbq_buffer_queue_enqueue_and_release(q, x), -ESTALE);
    CHECK_STATUS(mbq_buffer_queue_enqueue_and_release(q, zero),
                 MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_TIME(mbq_buffer_queue_get_duration(q), h_time(4, 10));
    CHECK_EQ(mbq_buffer_queue_get_total_size(q), 64);
    mbq_buffer h;
    CHECK_STATUS(mbq_buffer_queue_copy_head(q, &h), 0);
    const struct fifo_payload *hp = mbq_buffer_get_data(h, NULL);
    CHECK(hp && hp->i == 0);
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(q), 4);
    CHECK_STATUS(mbq_buffer_release(h), 0);
    CHECK(mbq_buffer_is_valid(h)); /* the queue still holds it */
    /* call-for-each: dequeue order, early stop */
    each_n = 0;
    CHECK_STATUS(mbq_buffer_queue_call_for_each_buffer(q, each_cb, NULL), 0);
    CHECK_EQ(each_n, 4);
    CHECK(each_seen[0] == 0 && each_seen[1] == 1 && each_seen[2] == 2 && each_seen[3] == 3);
    each_n = 0;
    CHECK_EQ(mbq_buffer_queue_call_for_each_buffer(q, each_cb, (void *)1), 12345);
    CHECK_EQ(each_n, 2);
    /* reset with callback: dequeue order, releases, clears end of data */
    CHECK_STATUS(mbq_buffer_queue_mark_end_of_data(q), 0);
    reset_n = 0;
    CHECK_STATUS(mbq_buffer_queue_reset_with_callback(q, reset_cb, NULL), 0);
    CHECK_EQ(reset_n, 4);
    CHECK(reset_seen[0] == 0 && reset_seen[3] == 3);
    CHECK(!mbq_buffer_queue_contains_end_of_data(q));
    CHECK(mbq_buffer_queue_is_empty(q));
    CHECK(!mbq_buffer_is_valid(h)); /* its last reference went with the reset */
    CHECK_STATUS(h_stat(c, "r/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    mbq_buffer_queue_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    CHECK_STATUS(mbq_buffer_queue_get_stats(q, &st), 0);
    CHECK_EQ(st.rejected_full, 2); /* enqueue and enqueue_and_release */
    CHECK_EQ(st.capacity, 4);
    CHECK_EQ(st.high_water, 4);

    /* validation callback */
    int calls = 0;
    CHECK_STATUS(mbq_buffer_queue_set_validation_callback(q, validate_cb, &calls), 0);
    x = mk(pool, 1);
    mbq_buffer_set_data_size(x, 13);
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, x), MBQ_BQ_ERR_INVALID_BUFFER);
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(q), 0);
    mbq_buffer_set_data_size(x, 12);
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, x), 0);
    CHECK_EQ(calls, 2);
    CHECK_STATUS(mbq_buffer_queue_set_validation_callback(q, NULL, NULL), 0);
    mbq_buffer_set_data_size(x, 13);
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, x), 0);
    CHECK_EQ(calls, 2);
    CHECK_STATUS(mbq_buffer_release(x), 0);
    CHECK_STATUS(mbq_buffer_queue_reset(q), 0);

    /* readiness: dequeue-if-ready never skips a head that is not ready */
    x = mk(pool, 1);
    CHECK_STATUS(mbq_buffer_set_data_ready(x, false), 0);
    CHECK(!mbq_buffer_is_data_ready(x));
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, x), 0);
    mbq_buffer y = mk(pool, 2);
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, y), 0);
    CHECK_STATUS(mbq_buffer_release(y), 0);
    CHECK_STATUS(mbq_buffer_queue_dequeue_if_data_ready_and_retain(q, &h), -EAGAIN);
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(q), 2);
    CHECK_STATUS(mbq_buffer_set_data_ready(x, true), 0);
    CHECK_STATUS(mbq_buffer_queue_notify_data_ready(q), 0);
    CHECK_STATUS(mbq_buffer_queue_dequeue_if_data_ready_and_retain(q, &h), 0);
    hp = mbq_buffer_get_data(h, NULL);
    CHECK(hp && hp->i == 1);
    CHECK_STATUS(mbq_buffer_release(h), 0);
    CHECK_STATUS(mbq_buffer_release(x), 0);
    CHECK_EQ(head_id(q), 2);
    CHECK_STATUS(mbq_buffer_queue_dequeue_and_retain(q, &h), -EAGAIN);
    /* a blocking dequeue on an empty queue times out (and returns) */
    CHECK_STATUS(mbq_buffer_queue_dequeue_wait(q, 20 * 1000000ll, &h), -ETIMEDOUT);
    mbq_buffer_queue_close(q);

    /* drop-oldest: the dropped buffers are released */
    qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    qo.full_policy = MBQ_FULL_DROP_OLDEST;
    CREQUIRE(mbq_buffer_queue_create(c, "r/drop", &qo, &q) == 0);
    for (int i = 0; i < 6; i++) {
        x = mk(pool, (uint64_t)i);
        CHECK_STATUS(mbq_buffer_queue_enqueue(q, x), 0);
        CHECK_STATUS(mbq_buffer_release(x), 0);
    }
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(q), 4);
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    CHECK_STATUS(mbq_buffer_queue_get_stats(q, &st), 0);
    CHECK_EQ(st.dropped, 2);
    CHECK_EQ(st.rejected_full, 0);
    CHECK_STATUS(h_stat(c, "r/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 4);
    CHECK_STATUS(h_stat(c, "r/drop", &info), 0);
    CHECK_EQ(info.full_policy, MBQ_FULL_DROP_OLDEST);
    CHECK_EQ(info.dropped, 2);
    for (int i = 2; i < 6; i++)
        CHECK_EQ(head_id(q), i);
    CHECK_STATUS(h_stat(c, "r/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.allocations, info.frees);
    mbq_buffer_queue_close(q);

    /* closing the pool releases what this process still holds */
    x = mk(pool, 1);
    y = mk(pool, 2);
    CHECK_STATUS(h_stat(c, "r/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 2);
    mbq_pool_close(pool);
    CHECK_STATUS(h_stat(c, "r/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 0);

    /* flush and invalidate */
    CREQUIRE(mbq_pool_open(c, "r/pool", &pool) == 0);
    x = mk(pool, 1);
    CHECK_STATUS(mbq_pool_flush(pool), 0);
    CHECK_STATUS(h_stat(c, "r/pool", &info), 0);
    CHECK_EQ(info.blocks_warm, 0);
    CHECK_EQ(info.blocks_used, 1);
    CHECK_STATUS(mbq_pool_invalidate(pool), 0);
    CHECK_STATUS(h_stat(c, "r/pool", &info), 0);
    CHECK(info.invalidated);
    CHECK(mbq_buffer_is_valid(x)); /* live buffers stay valid */
    data = mbq_buffer_get_data(x, NULL);
    CHECK(data != NULL);
    if (data)
        data[0] = 1;
    CHECK_STATUS(mbq_buffer_release(x), 0);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static void buffer_and_queue_rules(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    CHECK_EQ(run_in_child(buffer_rules_child, NULL), 0);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(sorted_queue_across_processes), CASE(fifo_100k_across_processes),
           CASE(fifo_100k_small_blocks_across_processes),
           CASE(fanout_two_queues_two_consumers), CASE(buffer_and_queue_rules))
