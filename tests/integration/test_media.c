/* Media buffers across processes: what a consumer in another process reads
 * for each buffer is what the producer enqueued — timing (struct form),
 * flags, data size — and it cannot change once enqueued (frozen: setters
 * fail with -EPERM); the payload is reachable as the pool's fd and the
 * block's offset (mapped read-only by the consumer); create-or-open with
 * other options is refused with -EEXIST and the daemon's text unless the
 * caller asks to open what exists; the NULL queue is at end of data. */
#include "harness.h"

#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>

static struct mbqd D;

#define N_BUFS 6

static mbq_time ts(int64_t v)
{
    return h_time(v, 1000);
}

/* Buffer i: pts 100 i, dts 100 i - 50, duration 100; a key frame every
 * third, a discontinuity at the first, a user bit on the odd ones. */
static uint32_t flags_of(int i)
{
    uint32_t f = (i % 3 == 0) ? MBQ_BUFFER_FLAG_SYNC : MBQ_BUFFER_FLAG_DROPPABLE;
    if (i == 0)
        f |= MBQ_BUFFER_FLAG_DISCONTINUITY;
    if (i & 1)
        f |= MBQ_BUFFER_FLAG_USER(15);
    return f;
}

static int media_producer(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "producer");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_pool_options po = h_pool_opts(8192, 16);
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    CREQUIRE(mbq_pool_create(c, "media/pool", &po, &pool) == 0);
    CREQUIRE(mbq_buffer_queue_create(c, "media/q", &qo, &q) == 0);
    for (int i = 0; i < N_BUFS; i++) {
        mbq_buffer b;
        CREQUIRE(mbq_pool_allocate(pool, 4096, &b) == 0);
        uint32_t f = 0;
        CHECK_STATUS(mbq_buffer_get_flags(b, &f), 0);
        CHECK_EQ(f, MBQ_BUFFER_FLAG_SYNC); /* a new buffer is a sync sample */
        CHECK(!mbq_buffer_is_frozen(b));
        mbq_sample_timing t = {.duration = ts(100),
                               .presentation_time_stamp = ts(100 * i),
                               .decode_time_stamp = ts(100 * i - 50)};
        CHECK_STATUS(mbq_buffer_set_sample_timing(b, &t), 0);
        CHECK_STATUS(mbq_buffer_set_flags(b, flags_of(i)), 0);
        CHECK_STATUS(mbq_buffer_set_data_size(b, 1000 + (size_t)i), 0);
        unsigned char *d = mbq_buffer_get_data(b, NULL);
        CREQUIRE(d);
        memset(d, 'a' + i, 4096);
        CHECK_STATUS(mbq_buffer_queue_enqueue(q, b), 0);
        /* frozen: the consumer reads what the queue copied */
        CHECK(mbq_buffer_is_frozen(b));
        mbq_sample_timing other = {.duration = ts(1),
                                   .presentation_time_stamp = ts(-7),
                                   .decode_time_stamp = ts(-8)};
        CHECK_STATUS(mbq_buffer_set_sample_timing(b, &other), -EPERM);
        CHECK_STATUS(mbq_buffer_set_timing(b, ts(-8), ts(-7), ts(1)), -EPERM);
        CHECK_STATUS(mbq_buffer_set_flags(b, 0), -EPERM);
        CHECK_STATUS(mbq_buffer_set_data_size(b, 1), -EPERM);
        /* readiness is not frozen */
        CHECK_STATUS(mbq_buffer_set_data_ready(b, true), 0);
        mbq_sample_timing back;
        CHECK_STATUS(mbq_buffer_get_sample_timing(b, &back), 0);
        CHECK_TIME(back.presentation_time_stamp, ts(100 * i));
        CHECK_STATUS(mbq_buffer_release(b), 0);
    }
    CHECK_TIME(mbq_buffer_queue_get_duration(q), ts(100 * N_BUFS));
    CHECK_EQ(mbq_buffer_queue_get_total_size(q), (size_t)(1000 * N_BUFS + 15));
    /* argument checks */
    mbq_buffer zero = {0};
    uint32_t f;
    mbq_sample_timing t;
    CHECK_STATUS(mbq_buffer_set_flags(zero, 1), -EINVAL);
    CHECK_STATUS(mbq_buffer_get_flags(zero, &f), -EINVAL);
    CHECK_STATUS(mbq_buffer_set_sample_timing(zero, &t), -EINVAL);
    CHECK_STATUS(mbq_buffer_get_sample_timing(zero, &t), -EINVAL);
    int fd;
    uint64_t off;
    size_t len;
    CHECK_STATUS(mbq_buffer_get_fd(zero, &fd, &off, &len), -EINVAL);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static int media_consumer(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "consumer");
    CREQUIRE(c);
    mbq_buffer_queue *q = NULL;
    CREQUIRE(mbq_buffer_queue_open(c, "media/q", &q) == 0);
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < N_BUFS; i++) {
        mbq_buffer b;
        CREQUIRE(mbq_buffer_queue_dequeue_and_retain(q, &b) == 0);
        mbq_sample_timing t;
        CHECK_STATUS(mbq_buffer_get_sample_timing(b, &t), 0);
        CHECK_TIME(t.presentation_time_stamp, ts(100 * i));
        CHECK_TIME(t.decode_time_stamp, ts(100 * i - 50));
        CHECK_TIME(t.duration, ts(100));
        mbq_time dts, pts, dur;
        CHECK_STATUS(mbq_buffer_get_timing(b, &dts, &pts, &dur), 0);
        CHECK_TIME(pts, ts(100 * i));
        CHECK_TIME(dts, ts(100 * i - 50));
        uint32_t f = 0;
        CHECK_STATUS(mbq_buffer_get_flags(b, &f), 0);
        CHECK_EQ(f, flags_of(i));
        CHECK_EQ(mbq_buffer_get_data_size(b), (size_t)(1000 + i));
        /* still frozen in the consumer's hands */
        CHECK_STATUS(mbq_buffer_set_flags(b, 0), -EPERM);
        /* the payload through the fd, mapped read-only */
        int fd = -1;
        uint64_t off = 1;
        size_t len = 0;
        CHECK_STATUS(mbq_buffer_get_fd(b, &fd, &off, &len), 0);
        CHECK(fd >= 0);
        CHECK_EQ(off % (uint64_t)page, 0u);
        CHECK(len >= 4096);
        if (fd >= 0 && len) {
            void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
            CHECK(m != MAP_FAILED);
            if (m != MAP_FAILED) {
                const unsigned char *d = m;
                CHECK_EQ(d[0], 'a' + i);
                CHECK_EQ(d[4095], 'a' + i);
                CHECK(!memcmp(m, mbq_buffer_get_data(b, NULL), 4096));
                munmap(m, len);
            }
        }
        CHECK_STATUS(mbq_buffer_release(b), 0);
        CHECK_STATUS(mbq_buffer_get_fd(b, &fd, &off, &len), -ESTALE);
    }
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return 0;
}

/* A recycled block is not frozen any more: the freeze lasts until free. */
static int media_recycle(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "recycle");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    CREQUIRE(mbq_pool_open(c, "media/pool", &pool) == 0);
    CREQUIRE(mbq_buffer_queue_open(c, "media/q", &q) == 0);
    for (int i = 0; i < 40; i++) { /* more than the pool: every block recycles */
        mbq_buffer b, d;
        CREQUIRE(mbq_pool_allocate(pool, 100, &b) == 0);
        CHECK(!mbq_buffer_is_frozen(b));
        uint32_t f = 0;
        CHECK_STATUS(mbq_buffer_get_flags(b, &f), 0);
        CHECK_EQ(f, MBQ_BUFFER_FLAG_SYNC);
        CHECK_STATUS(mbq_buffer_set_flags(b, MBQ_BUFFER_FLAG_GAP), 0);
        CHECK_STATUS(mbq_buffer_queue_enqueue(q, b), 0);
        CHECK_STATUS(mbq_buffer_release(b), 0);
        CREQUIRE(mbq_buffer_queue_dequeue_and_retain(q, &d) == 0);
        CHECK_STATUS(mbq_buffer_release(d), 0);
    }
    /* a refused enqueue leaves the buffer mutable */
    mbq_buffer_queue *full = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(1, MBQ_ORDER_FIFO);
    CREQUIRE(mbq_buffer_queue_create(c, "media/full", &qo, &full) == 0);
    mbq_buffer a, b;
    CREQUIRE(mbq_pool_allocate(pool, 100, &a) == 0);
    CREQUIRE(mbq_pool_allocate(pool, 100, &b) == 0);
    CHECK_STATUS(mbq_buffer_queue_enqueue(full, a), 0);
    CHECK_STATUS(mbq_buffer_queue_enqueue(full, b), MBQ_BQ_ERR_QUEUE_IS_FULL);
    CHECK(mbq_buffer_is_frozen(a));
    CHECK(!mbq_buffer_is_frozen(b));
    CHECK_STATUS(mbq_buffer_set_flags(b, MBQ_BUFFER_FLAG_HEADER), 0);
    CHECK_STATUS(mbq_buffer_set_flags(a, MBQ_BUFFER_FLAG_HEADER), -EPERM);
    CHECK_STATUS(mbq_buffer_queue_reset(full), 0);
    CHECK_STATUS(mbq_buffer_release(a), 0);
    CHECK_STATUS(mbq_buffer_release(b), 0);
    mbq_buffer_queue_close(full);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static void metadata_round_trip_and_freeze(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    CHECK_EQ(run_in_child(media_producer, NULL), 0);
    CHECK_EQ(run_in_child(media_consumer, NULL), 0);
    CHECK_EQ(run_in_child(media_recycle, NULL), 0);
    CHECK_MBQD_STOP(&D);
}

/* Create-or-open: the same options open, other options give -EEXIST with
 * the daemon's text naming the difference, MBQ_OPEN_IF_EXISTS opens
 * whatever the options. Another process, so that the daemon's view is
 * what decides. */
static int create_or_open_child(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "second");
    CREQUIRE(c);
    char err[256];
    mbq_pool *p = NULL;
    mbq_pool_options po = h_pool_opts(8192, 16);
    CHECK_STATUS(mbq_pool_create(c, "coo/pool", &po, &p), 0); /* same: opens */
    mbq_pool_close(p);
    p = NULL;
    po = h_pool_opts(8000, 16); /* rounds up to the same pages */
    CHECK_STATUS(mbq_pool_create(c, "coo/pool", &po, &p), 0);
    mbq_pool_close(p);
    p = NULL;
    po = h_pool_opts(8192, 8);
    CHECK_STATUS(mbq_pool_create(c, "coo/pool", &po, &p), -EEXIST);
    CHECK(p == NULL);
    mbq_client_last_error(c, err, sizeof err);
    CHECK(strstr(err, "16 blocks, not 8") != NULL);
    po = h_pool_opts(16384, 16);
    CHECK_STATUS(mbq_pool_create(c, "coo/pool", &po, &p), -EEXIST);
    mbq_client_last_error(c, err, sizeof err);
    CHECK(strstr(err, "block size") != NULL);
    po.flags = MBQ_OPEN_IF_EXISTS;
    CHECK_STATUS(mbq_pool_create(c, "coo/pool", &po, &p), 0);
    if (p) {
        mbq_buffer b;
        size_t cap = 0;
        CHECK_STATUS(mbq_pool_allocate(p, 100, &b), 0);
        CHECK(mbq_buffer_get_data(b, &cap) != NULL);
        CHECK_EQ(cap, (size_t)8192); /* the existing pool's blocks */
        mbq_buffer_release(b);
        mbq_pool_close(p);
    }

    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(0, MBQ_ORDER_FIFO);
    CHECK_STATUS(mbq_buffer_queue_create(c, "coo/q", &qo, &q), 0); /* 0: the default */
    mbq_buffer_queue_close(q);
    q = NULL;
    qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    CHECK_STATUS(mbq_buffer_queue_create(c, "coo/q", &qo, &q), -EEXIST);
    mbq_client_last_error(c, err, sizeof err);
    CHECK(strstr(err, "capacity") != NULL);
    qo = h_bq_opts(0, MBQ_ORDER_PRESENTATION_TIME);
    CHECK_STATUS(mbq_buffer_queue_create(c, "coo/q", &qo, &q), -EEXIST);
    mbq_client_last_error(c, err, sizeof err);
    CHECK(strstr(err, "order") != NULL);
    qo = h_bq_opts(0, MBQ_ORDER_FIFO);
    qo.full_policy = MBQ_FULL_DROP_OLDEST;
    CHECK_STATUS(mbq_buffer_queue_create(c, "coo/q", &qo, &q), -EEXIST);
    qo.flags = MBQ_OPEN_IF_EXISTS;
    CHECK_STATUS(mbq_buffer_queue_create(c, "coo/q", &qo, &q), 0);
    if (q) {
        mbq_buffer_queue_stats st = {.size = sizeof st};
        CHECK_STATUS(mbq_buffer_queue_get_stats(q, &st), 0);
        CHECK_EQ(st.capacity, (uint64_t)MBQ_BUFFER_QUEUE_DEFAULT_CAPACITY);
        mbq_buffer_queue_close(q);
    }

    mbq_simple_queue *sq = NULL;
    CHECK_STATUS(mbq_simple_queue_create(c, "coo/sq", 8, NULL, &sq), 0);
    mbq_simple_queue_close(sq);
    sq = NULL;
    CHECK_STATUS(mbq_simple_queue_create(c, "coo/sq", 9, NULL, &sq), -EEXIST);
    mbq_simple_queue_options so = h_sq_opts(0, false);
    so.flags = MBQ_OPEN_IF_EXISTS;
    CHECK_STATUS(mbq_simple_queue_create(c, "coo/sq", 9, &so, &sq), 0);
    if (sq) {
        CHECK_EQ(mbq_simple_queue_get_capacity(sq), 8);
        mbq_simple_queue_close(sq);
    }
    /* another kind under the name stays -EEXIST even with the flag */
    CHECK_STATUS(mbq_pool_create(c, "coo/q", &po, &p), -EEXIST);
    mbq_disconnect(c);
    return 0;
}

/* Another user, who may not open the objects, learns nothing of their
 * options: -EACCES, as an open, not -EEXIST naming the difference. */
static int create_or_open_nobody(void *arg)
{
    (void)arg;
    CREQUIRE(setgroups(0, NULL) == 0 && setgid(65534) == 0 && setuid(65534) == 0);
    mbq_client *c = NULL;
    CREQUIRE(mbq_connect(D.sock, "nobody", &c) == 0);
    mbq_pool *p = NULL;
    mbq_pool_options po = h_pool_opts(4096, 3);
    CHECK_STATUS(mbq_pool_create(c, "coo/pool", &po, &p), -EACCES);
    char err[256];
    mbq_client_last_error(c, err, sizeof err);
    CHECK(strstr(err, "blocks") == NULL);
    mbq_disconnect(c);
    return 0;
}

static void create_or_open(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "first");
    REQUIRE(c);
    mbq_pool *p = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_simple_queue *sq = NULL;
    mbq_pool_options po = h_pool_opts(8192, 16);
    mbq_buffer_queue_options qo = h_bq_opts(0, MBQ_ORDER_FIFO);
    CHECK_STATUS(mbq_pool_create(c, "coo/pool", &po, &p), 0);
    CHECK_STATUS(mbq_buffer_queue_create(c, "coo/q", &qo, &q), 0);
    CHECK_STATUS(mbq_simple_queue_create(c, "coo/sq", 8, NULL, &sq), 0);
    CHECK_EQ(run_in_child(create_or_open_child, NULL), 0);
    CHECK(chmod(D.dir, 0755) == 0); /* the socket's directory, for nobody */
    CHECK_EQ(run_in_child(create_or_open_nobody, NULL), 0);
    mbq_simple_queue_close(sq);
    mbq_buffer_queue_close(q);
    mbq_pool_close(p);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* A buffer whose pool this process closed: every call refuses it with
 * -ESTALE (the mapping is gone; under ASan, no use after free). */
static int closed_pool_child(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "closer");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 4);
    CREQUIRE(mbq_pool_create(c, "closed/pool", &po, &pool) == 0);
    mbq_buffer b;
    CREQUIRE(mbq_pool_allocate(pool, 100, &b) == 0);
    mbq_pool_close(pool);
    CHECK(!mbq_buffer_is_valid(b));
    CHECK(mbq_buffer_get_data(b, NULL) == NULL);
    CHECK_STATUS(mbq_buffer_retain(b), -ESTALE);
    CHECK_STATUS(mbq_buffer_release(b), -ESTALE);
    CHECK_STATUS(mbq_buffer_set_data_size(b, 1), -ESTALE);
    CHECK_STATUS(mbq_buffer_set_flags(b, 0), -ESTALE);
    uint32_t f;
    CHECK_STATUS(mbq_buffer_get_flags(b, &f), -ESTALE);
    mbq_sample_timing t = {0};
    CHECK_STATUS(mbq_buffer_set_sample_timing(b, &t), -ESTALE);
    CHECK_STATUS(mbq_buffer_get_sample_timing(b, &t), -ESTALE);
    int fd;
    uint64_t off;
    size_t len;
    CHECK_STATUS(mbq_buffer_get_fd(b, &fd, &off, &len), -ESTALE);
    CHECK_EQ(mbq_buffer_get_data_size(b), (size_t)0);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    CREQUIRE(mbq_buffer_queue_create(c, "closed/q", &qo, &q) == 0);
    CHECK_STATUS(mbq_buffer_queue_enqueue(q, b), -ESTALE);
    CHECK_STATUS(mbq_buffer_queue_enqueue_and_release(q, b), -ESTALE);
    CHECK_EQ(mbq_buffer_queue_get_buffer_count(q), 0);
    /* reopened: a new mapping; the old handle stays stale */
    CREQUIRE(mbq_pool_open(c, "closed/pool", &pool) == 0);
    CHECK_STATUS(mbq_buffer_release(b), -ESTALE);
    mbq_pool_close(pool);
    mbq_buffer_queue_close(q);
    /* after disconnect too */
    mbq_disconnect(c);
    CHECK_STATUS(mbq_buffer_release(b), -ESTALE);
    CHECK(!mbq_buffer_is_valid(b));
    return 0;
}

static void buffer_after_pool_close(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    CHECK_EQ(run_in_child(closed_pool_child, NULL), 0);
    CHECK_MBQD_STOP(&D);
}

/* A producer that unlinks its pool, closes it and exits with its buffers
 * still queued: the pool lives on for them, the consumer gets each one
 * (opening the unlinked pool by id), and once the last is released the
 * pool is destroyed with every block back. */
static int orphan_producer(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "orphan-producer");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_pool_options po = h_pool_opts(4096, 8);
    mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
    CREQUIRE(mbq_pool_create(c, "orphan/pool", &po, &pool) == 0);
    CREQUIRE(mbq_buffer_queue_create(c, "orphan/q", &qo, &q) == 0);
    for (int i = 0; i < 3; i++) {
        mbq_buffer b;
        CREQUIRE(mbq_pool_allocate(pool, 100, &b) == 0);
        memset(mbq_buffer_get_data(b, NULL), 'x' + i, 100);
        CHECK_STATUS(mbq_buffer_set_flags(b, MBQ_BUFFER_FLAG_USER(i)), 0);
        CHECK_STATUS(mbq_buffer_queue_enqueue_and_release(q, b), 0);
    }
    CHECK_STATUS(mbq_unlink(c, "orphan/pool"), 0);
    mbq_pool_close(pool);
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return 0;
}

static int orphan_consumer(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "orphan-consumer");
    CREQUIRE(c);
    mbq_buffer_queue *q = NULL;
    CREQUIRE(mbq_buffer_queue_open(c, "orphan/q", &q) == 0);
    for (int i = 0; i < 3; i++) {
        mbq_buffer b;
        CHECK_STATUS(mbq_buffer_queue_dequeue_and_retain(q, &b), 0);
        const unsigned char *d = mbq_buffer_get_data(b, NULL);
        CHECK(d && d[0] == 'x' + i && d[99] == 'x' + i);
        uint32_t f = 0;
        CHECK_STATUS(mbq_buffer_get_flags(b, &f), 0);
        CHECK_EQ(f, MBQ_BUFFER_FLAG_USER(i));
        CHECK_STATUS(mbq_buffer_release(b), 0);
    }
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return 0;
}

static bool pool_listed(mbq_client *c, const char *prefix)
{
    mbq_object_info infos[8];
    memset(infos, 0, sizeof infos);
    infos[0].size = sizeof infos[0];
    int n = h_list(c, prefix, infos, 8);
    for (int i = 0; i < n && i < 8; i++)
        if (infos[i].kind == MBQ_OBJECT_POOL)
            return true;
    return false;
}

static void queued_buffer_keeps_its_pool(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    CHECK_EQ(run_in_child(orphan_producer, NULL), 0);
    mbq_client *c = h_connect(&D, "watcher");
    REQUIRE(c);
    CHECK(pool_listed(c, "orphan/")); /* unlinked, closed, kept for its buffers */
    CHECK_EQ(run_in_child(orphan_consumer, NULL), 0);
    /* destroyed on the daemon's next tick once its last block was freed */
    uint64_t deadline = h_now_ns() + 20ull * 1000000000ull;
    while (pool_listed(c, "orphan/") && h_now_ns() < deadline)
        h_pause_us(10000);
    CHECK(!pool_listed(c, "orphan/"));
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* Formats across processes: set per buffer, read per buffer, a change
 * takes effect exactly at the buffer that carries it; an unchanged format
 * is interned once (the same id); a forged or recycled id is refused.
 * Attachments travel with each buffer, and only the propagating ones are
 * copied onto another buffer. */
static const char *const caps[] = {"video/x-raw,format=NV12,width=640,height=480",
                                   "video/x-raw,format=NV12,width=1280,height=720"};
/* buffer i's format: 0 0 0 1 1 0 none */
static int format_of(int i)
{
    return i == 6 ? -1 : (i == 3 || i == 4) ? 1 : 0;
}

static int format_producer(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "fmt-producer");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_pool_options po = h_pool_opts(4096, 16);
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    CREQUIRE(mbq_pool_create(c, "fmt/pool", &po, &pool) == 0);
    CREQUIRE(mbq_buffer_queue_create(c, "fmt/q", &qo, &q) == 0);
    for (int i = 0; i < 7; i++) {
        mbq_buffer b;
        CREQUIRE(mbq_pool_allocate(pool, 100, &b) == 0);
        int f = format_of(i);
        if (f >= 0)
            CHECK_STATUS(mbq_buffer_set_format(b, caps[f], strlen(caps[f]) + 1), 0);
        char tc[16];
        int n = snprintf(tc, sizeof tc, "00:00:00:%02d", i);
        CHECK_STATUS(mbq_buffer_set_attachment(b, "timecode", tc, (size_t)n,
                                               MBQ_ATTACHMENT_SHOULD_PROPAGATE), 0);
        CHECK_STATUS(mbq_buffer_set_attachment(b, "stride", "640", 3,
                                               MBQ_ATTACHMENT_SHOULD_NOT_PROPAGATE), 0);
        CHECK_STATUS(mbq_buffer_queue_enqueue(q, b), 0);
        CHECK_STATUS(mbq_buffer_set_attachment(b, "late", "x", 1,
                                               MBQ_ATTACHMENT_SHOULD_NOT_PROPAGATE), -EPERM);
        CHECK_STATUS(mbq_buffer_remove_attachment(b, "stride"), -EPERM);
        CHECK_STATUS(mbq_buffer_release(b), 0);
    }
    /* forged and recycled ids on a buffer of this pool */
    mbq_buffer b;
    CREQUIRE(mbq_pool_allocate(pool, 100, &b) == 0);
    CHECK_STATUS(mbq_buffer_set_format_id(b, (mbq_format_id)2 << 32 | 1000), -EBADMSG);
    mbq_format_id first, held, id;
    CHECK_STATUS(mbq_pool_intern_format(pool, "first", 5, &first), 0);
    CHECK_STATUS(mbq_pool_intern_format(pool, "held", 4, &held), 0);
    CHECK_STATUS(mbq_buffer_set_format_id(b, held), 0);
    CHECK_STATUS(mbq_buffer_set_format_id(b, held + ((mbq_format_id)2 << 32)), -ESTALE);
    char name[32];
    for (int i = 0; i < 20; i++) { /* more distinct formats than slots */
        int n = snprintf(name, sizeof name, "other-%d", i);
        CHECK_STATUS(mbq_pool_intern_format(pool, name, (size_t)n, &id), 0);
    }
    /* "first", carried by no buffer, was recycled; "held" was not */
    CHECK_STATUS(mbq_buffer_set_format_id(b, first), -ESTALE);
    char buf[64];
    size_t len = 0;
    CHECK_STATUS(mbq_buffer_copy_format(b, buf, sizeof buf, &len), 0);
    CHECK(len == 4 && !memcmp(buf, "held", 4));
    CHECK_STATUS(mbq_buffer_set_format(b, NULL, 0), 0); /* cleared */
    CHECK_STATUS(mbq_buffer_copy_format(b, buf, sizeof buf, &len), -ENODATA);
    static char big[MBQ_FORMAT_MAX + 1];
    CHECK_STATUS(mbq_buffer_set_format(b, big, sizeof big), -EMSGSIZE);
    CHECK_STATUS(mbq_buffer_set_format(b, big, MBQ_FORMAT_MAX), 0);
    CHECK_STATUS(mbq_buffer_release(b), 0);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static int format_consumer(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "fmt-consumer");
    CREQUIRE(c);
    mbq_buffer_queue *q = NULL;
    mbq_pool *pool = NULL;
    CREQUIRE(mbq_buffer_queue_open(c, "fmt/q", &q) == 0);
    CREQUIRE(mbq_pool_open(c, "fmt/pool", &pool) == 0);
    mbq_format_id ids[7] = {0};
    for (int i = 0; i < 7; i++) {
        mbq_buffer b;
        CREQUIRE(mbq_buffer_queue_dequeue_and_retain(q, &b) == 0);
        CHECK_STATUS(mbq_buffer_get_format_id(b, &ids[i]), 0);
        char buf[256];
        size_t len = 0;
        int f = format_of(i);
        if (f < 0) {
            CHECK_EQ(ids[i], 0u);
            CHECK_STATUS(mbq_buffer_copy_format(b, buf, sizeof buf, &len), -ENODATA);
        } else {
            CHECK_STATUS(mbq_buffer_copy_format(b, buf, 4, &len), -ERANGE);
            CHECK_EQ(len, strlen(caps[f]) + 1);
            CHECK_STATUS(mbq_buffer_copy_format(b, buf, sizeof buf, &len), 0);
            CHECK_EQ(len, strlen(caps[f]) + 1);
            CHECK(!strcmp(buf, caps[f]));
        }
        /* attachments as set, and the propagating one carried onto a new
         * buffer (what a filter does) */
        char tc[16], exp[16];
        size_t n = 0;
        mbq_attachment_mode mode;
        snprintf(exp, sizeof exp, "00:00:00:%02d", i);
        CHECK_EQ(mbq_buffer_get_attachment_count(b), 2);
        CHECK_STATUS(mbq_buffer_get_attachment(b, "timecode", tc, sizeof tc, &n, &mode), 0);
        CHECK(n == strlen(exp) && !memcmp(tc, exp, n));
        CHECK_EQ(mode, MBQ_ATTACHMENT_SHOULD_PROPAGATE);
        CHECK_STATUS(mbq_buffer_get_attachment(b, "stride", tc, sizeof tc, &n, &mode), 0);
        CHECK(n == 3 && !memcmp(tc, "640", 3) && mode == MBQ_ATTACHMENT_SHOULD_NOT_PROPAGATE);
        mbq_buffer out;
        CREQUIRE(mbq_pool_allocate(pool, 100, &out) == 0);
        CHECK_STATUS(mbq_buffer_copy_attachments(out, b), 0);
        CHECK_EQ(mbq_buffer_get_attachment_count(out), 1);
        CHECK_STATUS(mbq_buffer_get_attachment(out, "timecode", tc, sizeof tc, &n, NULL), 0);
        CHECK(n == strlen(exp) && !memcmp(tc, exp, n));
        CHECK_STATUS(mbq_buffer_get_attachment(out, "stride", tc, sizeof tc, &n, NULL), -ENOENT);
        CHECK_STATUS(mbq_buffer_release(out), 0);
        CHECK_STATUS(mbq_buffer_release(b), 0);
    }
    CHECK_EQ(ids[0], ids[1]); /* interned once */
    CHECK_EQ(ids[0], ids[5]); /* and found again after the change */
    CHECK_EQ(ids[3], ids[4]);
    CHECK(ids[0] != ids[3]);
    mbq_pool_close(pool);
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return 0;
}

static void formats_across_processes(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    CHECK_EQ(run_in_child(format_producer, NULL), 0);
    CHECK_EQ(run_in_child(format_consumer, NULL), 0);
    CHECK_MBQD_STOP(&D);
}

/* kill -9 while setting formats and attachments: the victim churns
 * buffers of a shared pool (intern a new format, set it, attach, enqueue,
 * and the survivor dequeues); killed at whatever instruction, it leaves a
 * pool whose format area others intern into and read from, and every
 * block comes back once mbqd has reclaimed it. */
static int churn_victim(int cmd, int rep, void *arg)
{
    (void)cmd;
    intptr_t round = (intptr_t)arg;
    mbq_client *c = h_connect(&D, "victim");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    CREQUIRE(mbq_pool_open(c, "kill/pool", &pool) == 0);
    CREQUIRE(mbq_buffer_queue_open(c, "kill/q", &q) == 0);
    static char fmt[MBQ_FORMAT_MAX];
    for (unsigned i = 0;; i++) {
        mbq_buffer b;
        if (mbq_pool_allocate(pool, 100, &b) == 0) {
            memset(fmt, 'a' + (int)((i + (unsigned)round) % 26), sizeof fmt);
            (void)mbq_buffer_set_format(b, fmt, 2000 + i % 2000);
            (void)mbq_buffer_set_attachment(b, "k", fmt, 100, MBQ_ATTACHMENT_SHOULD_PROPAGATE);
            (void)mbq_buffer_set_attachment(b, "j", fmt, 50, MBQ_ATTACHMENT_SHOULD_NOT_PROPAGATE);
            if (mbq_buffer_queue_enqueue_and_release(q, b) != 0)
                mbq_buffer_release(b);
        }
        if (i == 200) {
            struct hmsg m = hmsg_op(1);
            hmsg_reply(rep, &m); /* running: the parent may kill now */
        }
    }
    return 0;
}

static void kill_while_setting_formats(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "survivor");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_pool_options po = h_pool_opts(4096, 32);
    mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
    qo.full_policy = MBQ_FULL_DROP_OLDEST;
    REQUIRE(mbq_pool_create(c, "kill/pool", &po, &pool) == 0);
    REQUIRE(mbq_buffer_queue_create(c, "kill/q", &qo, &q) == 0);
    static char buf[MBQ_FORMAT_MAX];
    for (intptr_t round = 0; round < 8; round++) {
        struct actor a;
        REQUIRE(actor_start(&a, churn_victim, (void *)round) == 0);
        struct hmsg m;
        CHECK_EQ(actor_recv(&a, &m, H_HANG_MS), 0);
        /* a different moment each round */
        for (volatile long spin = 0; spin < round * 100000; spin++) {
        }
        actor_kill(&a);
        /* the survivor reads whatever is queued: whole or refused */
        mbq_buffer b;
        while (mbq_buffer_queue_dequeue_and_retain(q, &b) == 0) {
            size_t len = 0;
            int r = mbq_buffer_copy_format(b, buf, sizeof buf, &len);
            CHECK(r == 0 || r == -ENODATA || r == -ESTALE);
            if (r == 0) {
                bool whole = len >= 2000;
                for (size_t k = 1; k < len && whole; k++)
                    whole = buf[k] == buf[0];
                CHECK(whole);
            }
            r = mbq_buffer_get_attachment(b, "k", buf, sizeof buf, &len, NULL);
            CHECK(r == 0 || r == -ENOENT || r == -EBADMSG);
            mbq_buffer_release(b);
        }
        /* and interns and sets a format of its own */
        char name[32];
        int n = snprintf(name, sizeof name, "survivor-%d", (int)round);
        mbq_buffer mine;
        CHECK_STATUS(h_alloc_retry(pool, 100, &mine), 0);
        int r;
        uint64_t deadline = h_now_ns() + 20ull * 1000000000ull;
        /* the victim may have died holding the pool lock: -EBUSY until
         * mbqd takes it back */
        while ((r = mbq_buffer_set_format(mine, name, (size_t)n)) == -EBUSY &&
               h_now_ns() < deadline)
            h_pause_us(1000);
        CHECK_STATUS(r, 0);
        size_t len = 0;
        CHECK_STATUS(mbq_buffer_copy_format(mine, buf, sizeof buf, &len), 0);
        CHECK(len == (size_t)n && !memcmp(buf, name, len));
        mbq_buffer_release(mine);
    }
    /* every block back once the victims are reclaimed */
    CHECK_EQ(h_wait_pool_used(c, "kill/pool", 0, 20000), 0);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

static void null_queue_is_at_end_of_data(void)
{
    CHECK(mbq_buffer_queue_contains_end_of_data(NULL));
    CHECK(mbq_buffer_queue_is_at_end_of_data(NULL));
}

CHECK_MAIN(CASE(metadata_round_trip_and_freeze), CASE(create_or_open),
           CASE(buffer_after_pool_close), CASE(queued_buffer_keeps_its_pool),
           CASE(formats_across_processes), CASE(kill_while_setting_formats),
           CASE(null_queue_is_at_end_of_data))
