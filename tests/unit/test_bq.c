/* Buffer queue, single process: the contract of bq.h, with exact values.
 *
 * Buffers are plain non-zero 64-bit handles. The hooks installed on every
 * queue record each retain and release in a test-local table, so that the
 * reference counting is asserted: the queue takes one reference per enqueue,
 * gives it back on reset and drop-oldest, and hands it to the caller on
 * dequeue (no release there). Triggers signal eventfds the test creates; a
 * firing is seen by reading the eventfd's counter. Corruption and crash
 * cases scribble on the mapping directly. */
#include "bq_slots.h"
#include "check.h"

#include "bq_layout.h"
#include "futex.h"
#include "seg_layout.h"

#include <mbq/status.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- reference-counting hooks ------------------------------------------------ */

#define MAX_HANDLE 4096

struct refs {
    int retains[MAX_HANDLE];        /* by the queue (by_client false) */
    int client_retains[MAX_HANDLE]; /* copy_head (by_client true) */
    int releases[MAX_HANDLE];
    int bad_calls;                  /* handle 0 or out of range, wrong pool */
    bool ready[MAX_HANDLE];         /* is_ready answers (default: true) */
    bool readiness_hook;            /* install is_ready */
    int validate_result;            /* what validate returns */
    int validate_calls;
    int retain_result;              /* what retain returns */
    uint64_t release_order[64];     /* first releases, in order */
    int n_released;
};

static struct refs R;

static bool handle_ok(uint32_t pool_id, uint64_t h)
{
    if (h == 0 || h >= MAX_HANDLE || pool_id != 7) {
        R.bad_calls++;
        return false;
    }
    return true;
}

static int hk_retain(void *ctx, uint32_t pool_id, uint64_t h, bool by_client)
{
    (void)ctx;
    if (!handle_ok(pool_id, h))
        return -EINVAL;
    if (R.retain_result)
        return R.retain_result;
    if (by_client)
        R.client_retains[h]++;
    else
        R.retains[h]++;
    return 0;
}

static void hk_release(void *ctx, uint32_t pool_id, uint64_t h)
{
    (void)ctx;
    if (!handle_ok(pool_id, h))
        return;
    R.releases[h]++;
    if (R.n_released < 64)
        R.release_order[R.n_released] = h;
    R.n_released++;
}

static bool hk_is_ready(void *ctx, uint32_t pool_id, uint64_t h)
{
    (void)ctx;
    if (!handle_ok(pool_id, h))
        return false;
    return R.ready[h];
}

static int hk_validate(void *ctx, const struct bq_entry *e)
{
    (void)ctx;
    (void)e;
    R.validate_calls++;
    return R.validate_result;
}

static void refs_reset(void)
{
    memset(&R, 0, sizeof(R));
    for (int i = 0; i < MAX_HANDLE; i++)
        R.ready[i] = true;
}

static void install_hooks(struct bq *q, bool with_ready, bool with_validate)
{
    struct bq_hooks h = {
        .ctx = &R,
        .retain = hk_retain,
        .release = hk_release,
        .is_ready = with_ready ? hk_is_ready : NULL,
        .validate = with_validate ? hk_validate : NULL,
    };
    bq_set_hooks(q, &h);
}

/* Total releases over every handle. */
static int total_releases(void)
{
    int n = 0;
    for (int i = 0; i < MAX_HANDLE; i++)
        n += R.releases[i];
    return n;
}

/* ---- entries and queues ------------------------------------------------------ */

static mbq_time ms(int64_t v)
{
    return mbq_time_make(v, 1000);
}

static struct bq_entry mk(uint64_t handle, int64_t pts_ms, int64_t dur_ms, uint64_t size)
{
    struct bq_entry e;
    memset(&e, 0, sizeof(e));
    e.handle = handle;
    e.pool_id = 7;
    e.pts = ms(pts_ms);
    e.dts = ms(pts_ms);
    e.duration = ms(dur_ms);
    e.size = size;
    return e;
}

static int mkq(uint32_t capacity, uint32_t order, uint32_t policy, struct bq *q)
{
    struct bq_params p = {.capacity = capacity, .order = order, .full_policy = policy};
    int r = bq_create(&p, q);
    if (r == 0)
        install_hooks(q, false, false);
    return r;
}

static bool time_eq(mbq_time a, mbq_time b)
{
    return a.value == b.value && a.timescale == b.timescale && a.flags == b.flags &&
           a.epoch == b.epoch;
}

static bool time_same(mbq_time a, mbq_time b)
{
    return mbq_time_compare(a, b) == 0;
}

/* Dequeues everything; returns how many, with their handles in out[]. */
static int drain(struct bq *q, uint64_t *out, int max)
{
    int n = 0;
    struct bq_entry e;
    while (bq_dequeue(q, &e) == 0) {
        if (n < max)
            out[n] = e.handle;
        n++;
    }
    return n;
}

static int enq(struct bq *q, uint64_t handle, int64_t pts_ms)
{
    struct bq_entry e = mk(handle, pts_ms, 10, 100);
    return bq_enqueue(q, &e);
}

/* Handles in dequeue order via for_each (nothing removed). */
struct walk {
    uint64_t h[256];
    int64_t pts[256];
    int n;
};

static int walk_cb(struct bq_entry *e, void *ctx)
{
    struct walk *w = ctx;
    if (w->n < 256) {
        w->h[w->n] = e->handle;
        w->pts[w->n] = e->pts.value;
    }
    w->n++;
    return 0;
}

static int walk(struct bq *q, struct walk *w)
{
    memset(w, 0, sizeof(*w));
    return bq_for_each(q, walk_cb, w);
}

/* ---- create / attach --------------------------------------------------------- */

static void test_create_params(void)
{
    refs_reset();
    struct bq q;
    struct bq_params p = {.capacity = 4};
    CHECK_EQ(bq_create(NULL, &q), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_create(&p, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    p.order = 3;
    CHECK_EQ(bq_create(&p, &q), -EINVAL);
    p.order = BQ_ORDER_DTS;
    p.full_policy = 2;
    CHECK_EQ(bq_create(&p, &q), -EINVAL);
    p.full_policy = BQ_FULL_DROP_OLDEST;
    p.capacity = BQ_MAX_CAPACITY + 1;
    CHECK_EQ(bq_create(&p, &q), -EINVAL);
    p.capacity = UINT32_MAX;
    CHECK_EQ(bq_create(&p, &q), -EINVAL);

    p.capacity = 0;
    p.object_id = 0x1234;
    REQUIRE(bq_create(&p, &q) == 0);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.capacity, BQ_DEFAULT_CAPACITY);
    CHECK_EQ(st.order, BQ_ORDER_DTS);
    CHECK_EQ(st.full_policy, BQ_FULL_DROP_OLDEST);
    CHECK_EQ(st.count, 0);
    CHECK_EQ(st.triggers, 0);
    CHECK(!st.end_of_data);
    CHECK_EQ(q.capacity, BQ_DEFAULT_CAPACITY);
    CHECK_EQ(q.sh->hdr.object_id, 0x1234);
    CHECK(bq_is_empty(&q));
    CHECK_EQ(bq_count(&q), 0);
    bq_detach(&q);

    /* capacity 5 works: 5 entries and not 6 */
    REQUIRE(mkq(5, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    for (uint64_t h = 1; h <= 5; h++)
        CHECK_EQ(enq(&q, h, (int64_t)h), 0);
    CHECK_EQ(enq(&q, 6, 6), MBQ_BQ_ERR_QUEUE_IS_FULL);
    CHECK_EQ(bq_count(&q), 5);
    bq_detach(&q);
}

static void test_attach_shares_state(void)
{
    refs_reset();
    struct bq a, b;
    REQUIRE(mkq(8, BQ_ORDER_PTS, BQ_FULL_FAIL, &a) == 0);
    REQUIRE(bq_attach(a.seg.fd, &b) == 0);
    install_hooks(&b, false, false);
    CHECK_EQ(b.capacity, 8);
    CHECK_EQ(b.order, BQ_ORDER_PTS);
    CHECK(b.seg.fd != a.seg.fd); /* attach takes its own fd */
    CHECK_EQ(enq(&a, 1, 30), 0);
    CHECK_EQ(enq(&a, 2, 10), 0);
    CHECK_EQ(bq_count(&b), 2);
    CHECK_EQ(bq_total_size(&b), 200);
    CHECK(time_same(bq_first_pts(&b), ms(10)));
    CHECK_EQ(enq(&b, 3, 20), 0);
    CHECK_EQ(bq_count(&a), 3);
    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&b, &e), 0);
    CHECK_EQ(e.handle, 2);
    CHECK_EQ(bq_dequeue(&a, &e), 0);
    CHECK_EQ(e.handle, 3);
    CHECK_EQ(bq_mark_end_of_data(&a), 0);
    CHECK(bq_contains_end_of_data(&b));
    CHECK_EQ(bq_attach(-1, &b) < 0, 1);
    CHECK_EQ(bq_attach(a.seg.fd, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    bq_detach(&b);
    /* a's mapping survives b's detach */
    CHECK_EQ(bq_count(&a), 1);
    bq_detach(&a);
}

static void test_attach_rejects(void)
{
    struct bq q, b;
    /* a pipe */
    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    CHECK_EQ(bq_attach(p[0], &b), -EBADMSG);
    close(p[0]);
    close(p[1]);

    REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    size_t size = q.seg.size;

    /* an unsealed memfd with a copy of a valid queue */
    int fd = memfd_create("test-unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, (off_t)size) == 0);
    REQUIRE(pwrite(fd, q.seg.base, size, 0) == (ssize_t)size);
    CHECK_EQ(bq_attach(fd, &b), -EBADMSG);
    /* the same memfd sealed is accepted: the copy itself is valid */
    REQUIRE(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
    CHECK_EQ(bq_attach(fd, &b), 0);
    bq_detach(&b);
    close(fd);

    /* a sealed segment of another kind, of the right size */
    struct seg s;
    REQUIRE(seg_create("test-sq", size, SEG_KIND_SIMPLE_QUEUE, &s) == 0);
    memcpy((char *)s.base + sizeof(struct seg_header),
           (char *)q.seg.base + sizeof(struct seg_header), size - sizeof(struct seg_header));
    CHECK_EQ(bq_attach(s.fd, &b), -EBADMSG);
    seg_close(&s);

    /* modified layout fields */
    struct bq_shared *sh = q.sh;
    uint32_t cap = sh->capacity, slots = sh->slots;
    uint64_t off = sh->entries_off;
    struct {
        const char *what;
        uint32_t cap, slots;
        uint64_t off;
    } bad[] = {
        {"capacity 0", 0, slots, off},
        {"capacity 3 (slots not its power of two)", 3, slots, off},
        {"capacity above slots", 17, slots, off},
        {"capacity above the maximum", BQ_MAX_CAPACITY + 1, slots, off},
        {"slots 8", cap, 8, off},
        {"slots 64 (past the segment)", 64, 64, off},
        {"slots 0", cap, 0, off},
        {"entries_off + 128", cap, slots, off + 128},
        {"entries_off 0", cap, slots, 0},
        {"huge both", BQ_MAX_CAPACITY, BQ_MAX_CAPACITY, off},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sh->capacity = bad[i].cap;
        sh->slots = bad[i].slots;
        sh->entries_off = bad[i].off;
        int r = bq_attach(q.seg.fd, &b);
        if (r != -EBADMSG)
            fprintf(stderr, "  attach with %s: %d\n", bad[i].what, r);
        CHECK_EQ(r, -EBADMSG);
        if (r == 0)
            bq_detach(&b);
    }
    sh->capacity = cap;
    sh->slots = slots;
    sh->entries_off = off;
    uint32_t order = sh->order;
    sh->order = 3;
    CHECK_EQ(bq_attach(q.seg.fd, &b), -EBADMSG);
    sh->order = order;
    sh->full_policy = 2;
    CHECK_EQ(bq_attach(q.seg.fd, &b), -EBADMSG);
    sh->full_policy = BQ_FULL_FAIL;
    sh->entry_size = 128;
    CHECK_EQ(bq_attach(q.seg.fd, &b), -EBADMSG);
    sh->entry_size = sizeof(struct bq_slot);
    CHECK_EQ(bq_attach(q.seg.fd, &b), 0);
    bq_detach(&b);
    bq_detach(&q);
}

/* ---- enqueue / dequeue -------------------------------------------------------- */

static void test_fifo_order_and_refs(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(64, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    /* FIFO ignores timestamps */
    static const int64_t pts[6] = {50, 10, 40, 20, 30, 0};
    for (int i = 0; i < 6; i++)
        CHECK_EQ(enq(&q, (uint64_t)i + 1, pts[i]), 0);
    for (uint64_t h = 1; h <= 6; h++)
        CHECK_EQ(R.retains[h], 1);
    CHECK_EQ(bq_count(&q), 6);
    CHECK(!bq_is_empty(&q));
    struct bq_entry e;
    uint64_t last_seq = 0;
    for (int i = 0; i < 6; i++) {
        memset(&e, 0, sizeof(e));
        CHECK_EQ(bq_dequeue(&q, &e), 0);
        CHECK_EQ(e.handle, (uint64_t)i + 1);
        CHECK_EQ(e.pts.value, pts[i]);
        CHECK_EQ(e.pool_id, 7);
        CHECK_EQ(e.size, 100);
        if (i > 0)
            CHECK(e.seq > last_seq);
        last_seq = e.seq;
    }
    CHECK_EQ(bq_dequeue(&q, &e), -EAGAIN);
    CHECK_EQ(bq_dequeue_if_ready(&q, &e), -EAGAIN);
    /* the reference passed to the caller: nothing released */
    CHECK_EQ(total_releases(), 0);
    CHECK_EQ(R.bad_calls, 0);

    /* handle 0 and NULL arguments */
    struct bq_entry z = mk(0, 1, 1, 1);
    CHECK_EQ(bq_enqueue(&q, &z), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_enqueue(&q, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    z.handle = 1;
    CHECK_EQ(bq_enqueue(NULL, &z), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_dequeue(&q, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_dequeue(NULL, &e), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_count(&q), 0);
    CHECK_EQ(R.retains[1], 1); /* no retain for a rejected call */

    /* wrap around the ring many times, against a model */
    uint64_t next_in = 1, next_out = 1;
    for (int round = 0; round < 400; round++) {
        int k = 1 + round % 3;
        for (int i = 0; i < k && next_in - next_out < 64; i++, next_in++)
            REQUIRE(enq(&q, 1 + next_in % 1000, 0) == 0);
        int d = 1 + round % 2 + (round % 7 == 0);
        for (int i = 0; i < d && next_out < next_in; i++, next_out++) {
            REQUIRE(bq_dequeue(&q, &e) == 0);
            REQUIRE(e.handle == 1 + next_out % 1000);
        }
        REQUIRE(bq_count(&q) == (int64_t)(next_in - next_out));
    }
    CHECK(next_out > 200);
    while (next_out < next_in) {
        REQUIRE(bq_dequeue(&q, &e) == 0);
        CHECK_EQ(e.handle, 1 + next_out % 1000);
        next_out++;
    }
    CHECK_EQ(bq_dequeue(&q, &e), -EAGAIN);
    CHECK_EQ(total_releases(), 0);
    bq_detach(&q);
}

static void test_full_fail(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(3, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    for (uint64_t h = 1; h <= 3; h++)
        CHECK_EQ(enq(&q, h, 0), 0);
    CHECK_EQ(enq(&q, 4, 0), MBQ_BQ_ERR_QUEUE_IS_FULL);
    CHECK_EQ(enq(&q, 5, 0), MBQ_BQ_ERR_QUEUE_IS_FULL);
    /* a rejected enqueue gives its reference back */
    CHECK_EQ(R.retains[4] - R.releases[4], 0);
    CHECK_EQ(R.retains[5] - R.releases[5], 0);
    CHECK_EQ(R.releases[1] + R.releases[2] + R.releases[3], 0);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.rejected_full, 2);
    CHECK_EQ(st.dropped, 0);
    CHECK_EQ(st.count, 3);
    CHECK_EQ(st.enqueued, 3);
    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(e.handle, 1);
    CHECK_EQ(enq(&q, 6, 0), 0);
    uint64_t h[8];
    CHECK_EQ(drain(&q, h, 8), 3);
    CHECK_EQ(h[0], 2);
    CHECK_EQ(h[1], 3);
    CHECK_EQ(h[2], 6);
    bq_detach(&q);
}

static void test_full_drop_oldest(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(3, BQ_ORDER_FIFO, BQ_FULL_DROP_OLDEST, &q) == 0);
    for (uint64_t h = 1; h <= 3; h++) {
        struct bq_entry e = mk(h, (int64_t)h, 10, h * 10);
        CHECK_EQ(bq_enqueue(&q, &e), 0);
    }
    struct bq_entry e4 = mk(4, 4, 10, 40), e5 = mk(5, 5, 10, 50);
    CHECK_EQ(bq_enqueue(&q, &e4), 0);
    CHECK_EQ(R.releases[1], 1); /* the oldest dropped and released */
    CHECK_EQ(R.releases[2], 0);
    CHECK_EQ(bq_enqueue(&q, &e5), 0);
    CHECK_EQ(R.releases[2], 1);
    CHECK_EQ(total_releases(), 2);
    CHECK_EQ(bq_count(&q), 3);
    CHECK_EQ(bq_total_size(&q), 30 + 40 + 50);
    CHECK(time_same(bq_duration(&q), ms(30)));
    CHECK(time_same(bq_first_pts(&q), ms(3)));
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.dropped, 2);
    CHECK_EQ(st.rejected_full, 0);
    CHECK_EQ(st.enqueued, 5);
    CHECK_EQ(st.dequeued, 0);
    CHECK_EQ(st.high_water, 3);
    uint64_t h[8];
    CHECK_EQ(drain(&q, h, 8), 3);
    CHECK_EQ(h[0], 3);
    CHECK_EQ(h[1], 4);
    CHECK_EQ(h[2], 5);
    CHECK_EQ(total_releases(), 2);
    bq_detach(&q);

    /* sorted + drop-oldest: the head (smallest key) goes */
    refs_reset();
    REQUIRE(mkq(3, BQ_ORDER_PTS, BQ_FULL_DROP_OLDEST, &q) == 0);
    CHECK_EQ(enq(&q, 1, 30), 0);
    CHECK_EQ(enq(&q, 2, 10), 0);
    CHECK_EQ(enq(&q, 3, 20), 0);
    CHECK_EQ(enq(&q, 4, 15), 0); /* drops pts 10 (handle 2) */
    CHECK_EQ(R.releases[2], 1);
    CHECK_EQ(total_releases(), 1);
    CHECK_EQ(drain(&q, h, 8), 3);
    CHECK_EQ(h[0], 4);
    CHECK_EQ(h[1], 3);
    CHECK_EQ(h[2], 1);
    bq_detach(&q);
}

static void test_validation_hook(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    install_hooks(&q, false, true);
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(R.validate_calls, 1);
    R.validate_result = MBQ_BQ_ERR_INVALID_BUFFER;
    CHECK_EQ(enq(&q, 2, 0), MBQ_BQ_ERR_INVALID_BUFFER);
    R.validate_result = 12345;
    CHECK_EQ(enq(&q, 3, 0), 12345);
    R.validate_result = -EPERM;
    CHECK_EQ(enq(&q, 4, 0), -EPERM);
    CHECK_EQ(R.validate_calls, 4);
    CHECK_EQ(bq_count(&q), 1);
    /* any reference taken was given back */
    for (uint64_t h = 2; h <= 4; h++) {
        CHECK_EQ(R.retains[h] - R.releases[h], 0);
        CHECK(R.releases[h] <= R.retains[h]);
    }
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.enqueued, 1);
    R.validate_result = 0;

    /* a failing retain hook is propagated, nothing enqueued, nothing released */
    R.retain_result = -ENOMEM;
    CHECK_EQ(enq(&q, 5, 0), -ENOMEM);
    CHECK_EQ(R.releases[5], 0);
    CHECK_EQ(bq_count(&q), 1);
    R.retain_result = 0;

    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(e.handle, 1);
    CHECK_EQ(bq_dequeue(&q, &e), -EAGAIN);
    CHECK_EQ(total_releases(), 0);
    bq_detach(&q);
}


/* ---- sorted queues -------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void sorted_random(uint32_t order)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(256, order, BQ_FULL_FAIL, &q) == 0);
    int64_t key[200];
    for (int i = 0; i < 200; i++) {
        key[i] = (int64_t)(rng() % 50); /* many equal keys */
        struct bq_entry e = mk((uint64_t)i + 1, 0, 1, 1);
        if (order == BQ_ORDER_PTS) {
            e.pts = ms(key[i]);
            e.dts = ms(1000 - key[i]); /* the other key disagrees */
        } else {
            e.dts = ms(key[i]);
            e.pts = ms(1000 - key[i]);
        }
        CHECK_EQ(bq_enqueue(&q, &e), 0);
    }
    CHECK_EQ(bq_count(&q), 200);
    struct bq_entry e, prev = {0};
    for (int i = 0; i < 200; i++) {
        REQUIRE(bq_dequeue(&q, &e) == 0);
        mbq_time k = order == BQ_ORDER_PTS ? e.pts : e.dts;
        CHECK_EQ(k.value, key[e.handle - 1]);
        if (i > 0) {
            mbq_time pk = order == BQ_ORDER_PTS ? prev.pts : prev.dts;
            int32_t c = mbq_time_compare(pk, k);
            CHECK(c <= 0);
            if (c == 0)
                CHECK(prev.handle < e.handle); /* stable: FIFO among equals */
        }
        prev = e;
    }
    CHECK_EQ(bq_dequeue(&q, &e), -EAGAIN);
    CHECK_EQ(total_releases(), 0);
    bq_detach(&q);
}

static void test_sorted_pts_random(void)
{
    sorted_random(BQ_ORDER_PTS);
}

static void test_sorted_dts_random(void)
{
    sorted_random(BQ_ORDER_DTS);
}

static void test_sorted_stable_equal_keys(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(32, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    /* 10: a b c, 5: d e, 10: f, 5: g */
    static const int64_t pts[7] = {10, 10, 10, 5, 5, 10, 5};
    for (int i = 0; i < 7; i++)
        CHECK_EQ(enq(&q, (uint64_t)i + 1, pts[i]), 0);
    static const uint64_t want[7] = {4, 5, 7, 1, 2, 3, 6};
    uint64_t h[8];
    CHECK_EQ(drain(&q, h, 8), 7);
    for (int i = 0; i < 7; i++)
        CHECK_EQ(h[i], want[i]);
    bq_detach(&q);
}

static void test_sorted_mostly_ordered(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(64, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    /* decode order of an IPBB stream: 0,3,1,2,6,4,5,9,7,8,... (handle = pts + 1) */
    CHECK_EQ(enq(&q, 1, 0), 0);
    for (int64_t base = 0; base < 30; base += 3) {
        const int64_t seq[3] = {base + 3, base + 1, base + 2};
        for (int k = 0; k < 3; k++)
            CHECK_EQ(enq(&q, (uint64_t)seq[k] + 1, seq[k]), 0);
    }
    CHECK_EQ(bq_count(&q), 31);
    struct walk w;
    CHECK_EQ(walk(&q, &w), 0);
    CHECK_EQ(w.n, 31);
    for (int i = 0; i < 31 && i < w.n; i++) {
        CHECK_EQ(w.pts[i], i);
        CHECK_EQ(w.h[i], (uint64_t)i + 1);
    }
    struct bq_entry e;
    for (int i = 0; i < 31; i++) {
        REQUIRE(bq_dequeue(&q, &e) == 0);
        CHECK_EQ(e.pts.value, i);
    }
    bq_detach(&q);
}

static void test_sorted_invalid_pts_last(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry e = mk(1, 0, 10, 1);
    e.pts = MBQ_TIME_INVALID;
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    CHECK_EQ(enq(&q, 2, 50), 0);
    e = mk(3, 0, 10, 1);
    e.pts = MBQ_TIME_POSITIVE_INFINITY;
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    CHECK_EQ(enq(&q, 4, 20), 0);
    e = mk(5, 0, 10, 1);
    e.pts = MBQ_TIME_INVALID;
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    e = mk(6, 0, 10, 1);
    e.pts = MBQ_TIME_NEGATIVE_INFINITY;
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    static const uint64_t want[6] = {6, 4, 2, 3, 1, 5};
    uint64_t h[8];
    CHECK_EQ(drain(&q, h, 8), 6);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(h[i], want[i]);
    bq_detach(&q);
}

/* Keys on different timescales, so that a key's raw value says nothing
 * about its order: the settle may compare raw values only within one
 * timescale (slot_in_order), and must still hand everything out in time
 * order — here with one entry in sixteen late by three, as the sorted
 * benchmark's late16 input, each time on a timescale of its own. */
static void test_sorted_mixed_timescales(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(128, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    static const int32_t scales[4] = {1000, 90000, 1000000000, 48000};
    static const int late16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 12};
    for (int i = 0; i < 96; i++) {
        int64_t frame = (i & ~15) + late16[i & 15]; /* 1/30 s each */
        int32_t ts = scales[(uint64_t)(rng() % 4)];
        struct bq_entry e = mk((uint64_t)frame + 1, 0, 33, 1);
        e.pts = mbq_time_make(frame * ts / 30, ts);
        e.dts = e.pts;
        e.duration = mbq_time_make(ts / 30, ts); /* one timescale: a compact slot */
        CHECK_EQ(bq_enqueue(&q, &e), 0);
    }
    struct bq_entry e;
    for (uint64_t h = 1; h <= 96; h++) {
        REQUIRE(bq_dequeue(&q, &e) == 0);
        CHECK_EQ(e.handle, h);
    }
    CHECK_EQ(bq_dequeue(&q, &e), -EAGAIN);
    bq_detach(&q);
}

/* ---- readiness, copy head --------------------------------------------------- */

static void test_dequeue_if_ready(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    install_hooks(&q, true, false);
    R.ready[1] = false;
    R.ready[2] = true;
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(enq(&q, 2, 1), 0);
    struct bq_entry e;
    CHECK_EQ(bq_dequeue_if_ready(&q, &e), -EAGAIN); /* no skipping to 2 */
    CHECK_EQ(bq_count(&q), 2);
    CHECK_EQ(bq_first_pts(&q).value, 0);
    CHECK_EQ(total_releases(), 0);
    R.ready[1] = true;
    CHECK_EQ(bq_dequeue_if_ready(&q, &e), 0);
    CHECK_EQ(e.handle, 1);
    R.ready[2] = false;
    CHECK_EQ(bq_dequeue_if_ready(&q, &e), -EAGAIN);
    /* plain dequeue ignores readiness */
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(e.handle, 2);
    CHECK_EQ(bq_dequeue_if_ready(&q, &e), -EAGAIN);
    /* without the hook every buffer is ready */
    install_hooks(&q, false, false);
    R.ready[3] = false;
    CHECK_EQ(enq(&q, 3, 0), 0);
    CHECK_EQ(bq_dequeue_if_ready(&q, &e), 0);
    CHECK_EQ(e.handle, 3);
    CHECK_EQ(total_releases(), 0);
    bq_detach(&q);
}

static void test_copy_head(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry e;
    CHECK_EQ(bq_copy_head(&q, &e), -EAGAIN);
    CHECK_EQ(bq_copy_head(&q, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(enq(&q, 1, 20), 0);
    CHECK_EQ(enq(&q, 2, 10), 0);
    CHECK_EQ(bq_copy_head(&q, &e), 0);
    CHECK_EQ(e.handle, 2);
    CHECK_EQ(e.pts.value, 10);
    CHECK_EQ(R.client_retains[2], 1);
    CHECK_EQ(R.retains[2], 1);
    CHECK_EQ(R.client_retains[1], 0);
    CHECK_EQ(bq_copy_head(&q, &e), 0);
    CHECK_EQ(R.client_retains[2], 2);
    CHECK_EQ(bq_count(&q), 2);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(e.handle, 2);
    CHECK_EQ(total_releases(), 0);
    bq_detach(&q);
}

/* ---- end of data ---------------------------------------------------------------- */

static void test_end_of_data(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    CHECK(!bq_contains_end_of_data(&q));
    CHECK(!bq_is_at_end_of_data(&q));
    CHECK(bq_contains_end_of_data(NULL));
    CHECK(bq_is_at_end_of_data(NULL));
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(enq(&q, 2, 0), 0);
    CHECK_EQ(bq_mark_end_of_data(&q), 0);
    CHECK_EQ(bq_mark_end_of_data(&q), 0); /* idempotent */
    CHECK(bq_contains_end_of_data(&q));
    CHECK(!bq_is_at_end_of_data(&q));
    CHECK_EQ(enq(&q, 3, 0), MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA);
    CHECK_EQ(R.retains[3] - R.releases[3], 0);
    CHECK_EQ(bq_count(&q), 2);
    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(e.handle, 1);
    CHECK(!bq_is_at_end_of_data(&q));
    CHECK_EQ(bq_dequeue_wait(&q, &e, 1000000000), 0);
    CHECK_EQ(e.handle, 2);
    CHECK(bq_contains_end_of_data(&q));
    CHECK(bq_is_at_end_of_data(&q));
    CHECK_EQ(bq_dequeue(&q, &e), -EAGAIN);
    CHECK_EQ(bq_dequeue_wait(&q, &e, 0), -ENODATA);
    CHECK_EQ(bq_dequeue_wait(&q, &e, 1000000000), -ENODATA);
    CHECK_EQ(bq_dequeue_wait(&q, &e, -1), -ENODATA); /* never blocks */
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK(st.end_of_data);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
    CHECK(!bq_contains_end_of_data(&q));
    CHECK(!bq_is_at_end_of_data(&q));
    CHECK_EQ(enq(&q, 4, 0), 0);
    CHECK_EQ(bq_count(&q), 1);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK(!st.end_of_data);
    /* EOD on a non-empty queue, reset: contents released, EOD gone */
    CHECK_EQ(bq_mark_end_of_data(&q), 0);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
    CHECK_EQ(R.releases[4], 1);
    CHECK(!bq_contains_end_of_data(&q));
    bq_detach(&q);
}

static void test_dequeue_wait_timeout(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry e;
    uint64_t t0 = mono_ns();
    CHECK_EQ(bq_dequeue_wait(&q, &e, 20000000), -ETIMEDOUT);
    CHECK(mono_ns() - t0 >= 20000000u);
    t0 = mono_ns();
    CHECK_EQ(bq_dequeue_wait(&q, &e, 0), -ETIMEDOUT);
    /* something queued: returned at once */
    CHECK_EQ(enq(&q, 9, 0), 0);
    CHECK_EQ(bq_dequeue_wait(&q, &e, 20000000), 0);
    CHECK_EQ(e.handle, 9);
    bq_detach(&q);
}

/* ---- reset, for-each ------------------------------------------------------------------ */

struct reset_log {
    uint64_t h[64];
    int n;
    int releases_at_first; /* releases done when the first callback ran */
};

static void reset_cb(const struct bq_entry *e, void *ctx)
{
    struct reset_log *l = ctx;
    if (l->n == 0)
        l->releases_at_first = total_releases();
    if (l->n < 64)
        l->h[l->n] = e->handle;
    l->n++;
}

static void test_reset(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    static const int64_t pts[5] = {40, 10, 30, 20, 50};
    for (int i = 0; i < 5; i++)
        CHECK_EQ(enq(&q, (uint64_t)i + 1, pts[i]), 0);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
    for (uint64_t h = 1; h <= 5; h++)
        CHECK_EQ(R.releases[h], 1);
    CHECK_EQ(total_releases(), 5);
    CHECK_EQ(bq_count(&q), 0);
    CHECK(bq_is_empty(&q));
    CHECK_EQ(bq_total_size(&q), 0);
    CHECK(time_eq(bq_duration(&q), MBQ_TIME_ZERO));
    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&q, &e), -EAGAIN);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0); /* empty: nothing released */
    CHECK_EQ(total_releases(), 5);

    /* with a callback: once per entry, in dequeue order */
    refs_reset();
    for (int i = 0; i < 5; i++)
        CHECK_EQ(enq(&q, (uint64_t)i + 11, pts[i]), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0); /* pts 10 (handle 12) leaves first */
    CHECK_EQ(e.handle, 12);
    struct reset_log log = {0};
    CHECK_EQ(bq_reset(&q, reset_cb, &log), 0);
    CHECK_EQ(log.n, 4);
    static const uint64_t want[4] = {14, 13, 11, 15};
    for (int i = 0; i < 4 && i < log.n; i++)
        CHECK_EQ(log.h[i], want[i]);
    CHECK_EQ(R.releases[12], 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(R.releases[want[i]], 1);
    CHECK_EQ(total_releases(), 4);
    CHECK_EQ(bq_count(&q), 0);
    CHECK_EQ(bq_total_size(&q), 0);
    CHECK(time_eq(bq_duration(&q), MBQ_TIME_ZERO));
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.count, 0);
    CHECK_EQ(st.total_size, 0);
    CHECK(time_eq(st.duration, MBQ_TIME_ZERO));
    /* works afterwards, sums start from zero */
    CHECK_EQ(enq(&q, 20, 5), 0);
    CHECK_EQ(bq_total_size(&q), 100);
    CHECK(time_same(bq_duration(&q), ms(10)));
    CHECK_EQ(bq_reset(NULL, NULL, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    bq_detach(&q);
}

/* bq_reset_if: one entry not ready and nothing moves (no release, no
 * entry gone); all ready and it is a reset. */
struct ready_ctx {
    uint64_t refuse; /* this handle is not ready (0: none) */
    int asked;
};

static bool ready_cb(const struct bq_entry *e, void *ctx)
{
    struct ready_ctx *r = ctx;
    r->asked++;
    return e->handle != r->refuse;
}

static void test_reset_if(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    for (uint64_t h = 1; h <= 3; h++)
        CHECK_EQ(enq(&q, h, (int64_t)h), 0);
    struct ready_ctx rc = {.refuse = 2};
    CHECK_EQ(bq_reset_if(&q, ready_cb, NULL, &rc), -EAGAIN);
    CHECK_EQ(rc.asked, 3); /* every entry asked about, the caller lists them all */
    CHECK_EQ(total_releases(), 0);
    CHECK_EQ(bq_count(&q), 3);
    rc = (struct ready_ctx){.refuse = 0};
    CHECK_EQ(bq_reset_if(&q, ready_cb, NULL, &rc), 0);
    CHECK_EQ(rc.asked, 3);
    CHECK_EQ(total_releases(), 3);
    CHECK_EQ(bq_count(&q), 0);
    bq_detach(&q);
}

struct fe_ctx {
    int calls, stop_at, ret;
    uint64_t h[16];
};

static int fe_cb(struct bq_entry *e, void *ctx)
{
    struct fe_ctx *c = ctx;
    if (c->calls < 16)
        c->h[c->calls] = e->handle;
    c->calls++;
    e->attachments[0] = (uint8_t)(0xa0 + e->handle);
    e->attachments[23] = 0x5a;
    e->pts = ms(999);     /* must not persist */
    e->handle = 77;       /* nor this */
    e->size = 1;          /* nor this */
    if (c->calls == c->stop_at)
        return c->ret;
    return 0;
}

static void test_for_each(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    static const int64_t pts[4] = {30, 10, 40, 20};
    for (int i = 0; i < 4; i++)
        CHECK_EQ(enq(&q, (uint64_t)i + 1, pts[i]), 0);
    struct fe_ctx c = {0};
    CHECK_EQ(bq_for_each(&q, fe_cb, &c), 0);
    CHECK_EQ(c.calls, 4);
    static const uint64_t want[4] = {2, 4, 1, 3};
    for (int i = 0; i < 4; i++)
        CHECK_EQ(c.h[i], want[i]);
    /* early stop */
    c = (struct fe_ctx){.stop_at = 2, .ret = -1234};
    CHECK_EQ(bq_for_each(&q, fe_cb, &c), -1234);
    CHECK_EQ(c.calls, 2);
    CHECK_EQ(bq_for_each(&q, NULL, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_total_size(&q), 400);
    CHECK(time_same(bq_max_pts(&q), ms(40)));
    /* attachments persisted, timestamps, handle and size did not */
    struct bq_entry e;
    for (int i = 0; i < 4; i++) {
        REQUIRE(bq_dequeue(&q, &e) == 0);
        CHECK_EQ(e.handle, want[i]);
        CHECK_EQ(e.pts.value, pts[want[i] - 1]);
        CHECK_EQ(e.size, 100);
        CHECK_EQ(e.attachments[0], 0xa0 + want[i]);
        CHECK_EQ(e.attachments[23], 0x5a);
    }
    c = (struct fe_ctx){0};
    CHECK_EQ(bq_for_each(&q, fe_cb, &c), 0);
    CHECK_EQ(c.calls, 0);
    CHECK_EQ(total_releases(), 0);
    bq_detach(&q);
}

/* ---- getters ------------------------------------------------------------------------ */

static void test_getters_empty(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    CHECK_EQ(bq_count(&q), 0);
    CHECK(bq_is_empty(&q));
    CHECK_EQ(bq_total_size(&q), 0);
    CHECK(time_eq(bq_duration(&q), MBQ_TIME_ZERO));
    CHECK(mbq_time_is_invalid(bq_first_dts(&q)));
    CHECK(mbq_time_is_invalid(bq_min_dts(&q)));
    CHECK(mbq_time_is_invalid(bq_first_pts(&q)));
    CHECK(mbq_time_is_invalid(bq_min_pts(&q)));
    CHECK(mbq_time_is_invalid(bq_max_pts(&q)));
    CHECK(mbq_time_is_invalid(bq_end_pts(&q)));
    /* NULL queue */
    CHECK(bq_is_empty(NULL));
    CHECK_EQ(bq_count(NULL), 0);
    CHECK_EQ(bq_total_size(NULL), 0);
    CHECK(mbq_time_is_invalid(bq_min_pts(NULL)));
    /* emptied again after use */
    CHECK_EQ(enq(&q, 1, 5), 0);
    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK(time_eq(bq_duration(&q), MBQ_TIME_ZERO));
    CHECK_EQ(bq_total_size(&q), 0);
    CHECK(mbq_time_is_invalid(bq_first_pts(&q)));
    CHECK(mbq_time_is_invalid(bq_max_pts(&q)));
    bq_detach(&q);
}

static void test_getters_values(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    /* handle: pts, dts, duration (ms), size */
    struct bq_entry e1 = mk(1, 300, 100, 11);
    e1.dts = ms(100);
    struct bq_entry e2 = mk(2, 100, 50, 22);
    e2.dts = ms(50);
    struct bq_entry e3 = mk(3, 250, 200, 33); /* ends at 450: the latest end */
    e3.dts = ms(200);
    struct bq_entry e4 = mk(4, 0, 10, 44);
    e4.pts = MBQ_TIME_INVALID; /* ignored by min/max/end */
    e4.dts = MBQ_TIME_INVALID;
    CHECK_EQ(bq_enqueue(&q, &e1), 0);
    CHECK_EQ(bq_enqueue(&q, &e2), 0);
    CHECK_EQ(bq_enqueue(&q, &e3), 0);
    CHECK_EQ(bq_enqueue(&q, &e4), 0);
    CHECK_EQ(bq_count(&q), 4);
    CHECK(!bq_is_empty(&q));
    CHECK_EQ(bq_total_size(&q), 110);
    CHECK(time_same(bq_duration(&q), ms(360)));
    CHECK(time_eq(bq_first_dts(&q), ms(100)));
    CHECK(time_eq(bq_min_dts(&q), ms(50)));
    CHECK(time_eq(bq_first_pts(&q), ms(300)));
    CHECK(time_eq(bq_min_pts(&q), ms(100)));
    CHECK(time_eq(bq_max_pts(&q), ms(300)));
    CHECK(time_same(bq_end_pts(&q), ms(450)));
    struct bq_entry e5 = mk(5, 0, 10, 55);
    e5.pts = MBQ_TIME_POSITIVE_INFINITY;
    e5.dts = MBQ_TIME_INVALID;
    e5.duration = MBQ_TIME_INDEFINITE; /* counts as zero */
    CHECK_EQ(bq_enqueue(&q, &e5), 0);
    CHECK(time_eq(bq_max_pts(&q), ms(300)));
    CHECK(time_same(bq_duration(&q), ms(360)));
    CHECK_EQ(bq_total_size(&q), 165);
    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK(time_eq(bq_first_dts(&q), ms(50)));
    CHECK(time_eq(bq_first_pts(&q), ms(100)));
    CHECK(time_eq(bq_max_pts(&q), ms(250)));
    CHECK(time_same(bq_end_pts(&q), ms(450)));
    CHECK(time_same(bq_duration(&q), ms(260)));
    CHECK_EQ(bq_total_size(&q), 154);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    /* only non-numeric PTS left: min/max/end invalid; first is the head's */
    CHECK(mbq_time_is_invalid(bq_min_pts(&q)));
    CHECK(mbq_time_is_invalid(bq_max_pts(&q)));
    CHECK(mbq_time_is_invalid(bq_end_pts(&q)));
    CHECK(mbq_time_is_invalid(bq_first_pts(&q)));
    CHECK(mbq_time_is_invalid(bq_min_dts(&q)));
    CHECK(time_same(bq_duration(&q), ms(10)));
    bq_detach(&q);
}

static void test_duration_mixed_timescales(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry a = mk(1, 0, 0, 1), b = mk(2, 0, 0, 1);
    a.duration = mbq_time_make(1, 30);
    b.duration = mbq_time_make(1, 25);
    CHECK_EQ(bq_enqueue(&q, &a), 0);
    CHECK(time_same(bq_duration(&q), mbq_time_make(1, 30)));
    CHECK_EQ(bq_enqueue(&q, &b), 0);
    mbq_time d = bq_duration(&q);
    CHECK_EQ(d.value, 11);
    CHECK_EQ(d.timescale, 150);
    CHECK_EQ(d.flags, MBQ_TIME_FLAG_VALID);
    CHECK_EQ(d.epoch, 0);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK(time_same(st.duration, mbq_time_make(11, 150)));
    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK(time_same(bq_duration(&q), mbq_time_make(1, 25)));
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK(time_eq(bq_duration(&q), MBQ_TIME_ZERO));

    /* equal timescales stay exact */
    for (uint64_t h = 1; h <= 3; h++) {
        struct bq_entry x = mk(h, 0, 0, 1);
        x.duration = mbq_time_make(1001, 30000);
        CHECK_EQ(bq_enqueue(&q, &x), 0);
    }
    d = bq_duration(&q);
    CHECK_EQ(d.value, 3003);
    CHECK_EQ(d.timescale, 30000);
    bq_detach(&q);
}

/* ---- triggers ---------------------------------------------------------------------- */

static int efd_new(void)
{
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

/* Firings signalled since the last call (reads and clears the counter). */
static uint64_t fires(int fd)
{
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return 0;
    return v;
}

static int install(struct bq *q, int32_t cond, mbq_time t, int64_t thr, int efd, uint64_t *tok)
{
    return bq_install_trigger(q, cond, t, thr, efd, tok);
}

static void test_trigger_errors(void)
{
    refs_reset();
    struct bq q, q2;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q2) == 0);
    uint64_t tok = 0, tok2 = 0;
    CHECK_EQ(install(&q, 0, ms(1), 0, -1, &tok), MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION);
    CHECK_EQ(install(&q, 13, ms(1), 0, -1, &tok), MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION);
    CHECK_EQ(install(&q, -1, ms(1), 0, -1, &tok), MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION);
    CHECK_EQ(install(&q, 0x7fffffff, ms(1), 0, -1, &tok), MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION);
    const mbq_time bad[] = {MBQ_TIME_INVALID, MBQ_TIME_POSITIVE_INFINITY,
                            MBQ_TIME_NEGATIVE_INFINITY, MBQ_TIME_INDEFINITE,
                            mbq_time_make_with_epoch(1, 1000, 1),
                            mbq_time_make_with_epoch(0, 1, -3)};
    const int32_t time_conds[] = {1, 2, 3, 4, 12};
    for (size_t c = 0; c < sizeof(time_conds) / sizeof(time_conds[0]); c++)
        for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++)
            CHECK_EQ(install(&q, time_conds[c], bad[b], 1, -1, &tok),
                     MBQ_BQ_ERR_BAD_TRIGGER_DURATION);
    /* the time is ignored by the other conditions */
    for (int32_t c = 5; c <= 11; c++) {
        CHECK_EQ(install(&q, c, MBQ_TIME_INVALID, 1, -1, &tok), 0);
        CHECK_EQ(bq_remove_trigger(&q, tok), 0);
    }
    CHECK_EQ(install(&q, 10, ms(0), 1, -1, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(install(NULL, 10, ms(0), 1, -1, &tok), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.triggers, 0);

    /* tokens */
    CHECK_EQ(install(&q, 11, ms(0), 5, -1, &tok), 0);
    CHECK_EQ(install(&q2, 11, ms(0), 5, -1, &tok2), 0);
    CHECK_EQ(bq_test_trigger(&q, tok), 0);
    CHECK_EQ(bq_remove_trigger(&q, tok2), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK_EQ(bq_test_trigger(&q, tok2), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK_EQ(bq_trigger_fired(&q, tok2), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK_EQ(bq_set_trigger_fd(&q, tok2, -1), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    const uint64_t bogus[] = {0, 1, ~0ull, tok ^ (1ull << 8), tok ^ 1, (tok & ~0xffull) | 32,
                              (tok & ~0xffull) | 255, tok ^ (1ull << 40)};
    for (size_t b = 0; b < sizeof(bogus) / sizeof(bogus[0]); b++) {
        CHECK_EQ(bq_remove_trigger(&q, bogus[b]), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
        CHECK_EQ(bq_test_trigger(&q, bogus[b]), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
        CHECK_EQ(bq_trigger_fired(&q, bogus[b]), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    }
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.triggers, 1);
    CHECK_EQ(bq_remove_trigger(&q, tok), 0);
    CHECK_EQ(bq_remove_trigger(&q, tok), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK_EQ(bq_test_trigger(&q, tok), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK_EQ(bq_set_trigger_fd(&q, tok, -1), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    /* the slot reused: the old token stays dead */
    uint64_t tok3;
    CHECK_EQ(install(&q, 11, ms(0), 5, -1, &tok3), 0);
    CHECK(tok3 != tok);
    CHECK_EQ(bq_remove_trigger(&q, tok), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK_EQ(bq_remove_trigger(&q, tok3), 0);
    CHECK_EQ(bq_remove_trigger(&q2, tok2), 0);

    /* capacity of the table */
    uint64_t toks[BQ_MAX_TRIGGERS];
    for (int i = 0; i < BQ_MAX_TRIGGERS; i++)
        CHECK_EQ(install(&q, 9, ms(0), 0, -1, &toks[i]), 0);
    CHECK_EQ(install(&q, 9, ms(0), 0, -1, &tok), -ENOSPC);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.triggers, BQ_MAX_TRIGGERS);
    for (int i = 0; i < BQ_MAX_TRIGGERS; i++)
        for (int j = i + 1; j < BQ_MAX_TRIGGERS; j++)
            CHECK(toks[i] != toks[j]);
    CHECK_EQ(bq_remove_trigger(&q, toks[17]), 0);
    CHECK_EQ(install(&q, 9, ms(0), 0, -1, &tok), 0);
    CHECK_EQ(install(&q, 9, ms(0), 0, -1, &tok2), -ENOSPC);
    CHECK_EQ(bq_remove_trigger(&q, tok), 0);
    for (int i = 0; i < BQ_MAX_TRIGGERS; i++)
        if (i != 17)
            CHECK_EQ(bq_remove_trigger(&q, toks[i]), 0);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.triggers, 0);
    bq_detach(&q);
    bq_detach(&q2);
}

/* Duration conditions 1-4 on one queue, durations 10 ms each step. */
static void test_trigger_duration(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    int fd[5];
    uint64_t tok[5];
    for (int c = 1; c <= 4; c++) {
        fd[c] = efd_new();
        REQUIRE(fd[c] >= 0);
    }
    /* empty: duration 0 — 1 (< 30) and 2 (<= 30) are true at install */
    for (int c = 1; c <= 4; c++)
        CHECK_EQ(install(&q, c, ms(30), 0, fd[c], &tok[c]), 0);
    CHECK_EQ(fires(fd[1]), 1);
    CHECK_EQ(fires(fd[2]), 1);
    CHECK_EQ(fires(fd[3]), 0);
    CHECK_EQ(fires(fd[4]), 0);
    /* script: op (+: enqueue 10 ms, -: dequeue), then the expected levels
     * and firings of conditions 1..4 */
    struct step {
        char op;
        int64_t dur_after;
        int level[5], fire[5];
    } script[] = {
        {'+', 10, {0, 1, 1, 0, 0}, {0, 0, 0, 0, 0}},
        {'+', 20, {0, 1, 1, 0, 0}, {0, 0, 0, 0, 0}},
        {'+', 30, {0, 0, 1, 0, 1}, {0, 0, 0, 0, 1}},
        {'+', 40, {0, 0, 0, 1, 1}, {0, 0, 0, 1, 0}},
        {'+', 50, {0, 0, 0, 1, 1}, {0, 0, 0, 0, 0}},
        {'-', 40, {0, 0, 0, 1, 1}, {0, 0, 0, 0, 0}},
        {'-', 30, {0, 0, 1, 0, 1}, {0, 0, 1, 0, 0}},
        {'-', 20, {0, 1, 1, 0, 0}, {0, 1, 0, 0, 0}},
        {'+', 30, {0, 0, 1, 0, 1}, {0, 0, 0, 0, 1}},
        {'+', 40, {0, 0, 0, 1, 1}, {0, 0, 0, 1, 0}},
        {'-', 30, {0, 0, 1, 0, 1}, {0, 0, 1, 0, 0}},
        {'-', 20, {0, 1, 1, 0, 0}, {0, 1, 0, 0, 0}},
        {'-', 10, {0, 1, 1, 0, 0}, {0, 0, 0, 0, 0}},
        {'+', 20, {0, 1, 1, 0, 0}, {0, 0, 0, 0, 0}},
        {'+', 30, {0, 0, 1, 0, 1}, {0, 0, 0, 0, 1}},
        {'+', 40, {0, 0, 0, 1, 1}, {0, 0, 0, 1, 0}},
        {'R', 0, {0, 1, 1, 0, 0}, {0, 1, 1, 0, 0}}, /* reset: duration drops to zero */
    };
    uint64_t h = 1;
    int64_t expect_fired[5] = {0, 1, 1, 0, 0};
    for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
        struct step *s = &script[i];
        struct bq_entry e;
        if (s->op == '+')
            CHECK_EQ(enq(&q, h++, 0), 0);
        else if (s->op == '-')
            CHECK_EQ(bq_dequeue(&q, &e), 0);
        else
            CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
        CHECK(time_same(bq_duration(&q), ms(s->dur_after)));
        for (int c = 1; c <= 4; c++) {
            int lv = bq_test_trigger(&q, tok[c]);
            uint64_t f = fires(fd[c]);
            expect_fired[c] += s->fire[c];
            if (lv != s->level[c] || f != (uint64_t)s->fire[c])
                fprintf(stderr, "  step %zu (%c -> %lld ms), condition %d: level %d fired %llu\n",
                        i, s->op, (long long)s->dur_after, c, lv, (unsigned long long)f);
            CHECK_EQ(lv, s->level[c]);
            CHECK_EQ(f, s->fire[c]);
            CHECK_EQ(bq_trigger_fired(&q, tok[c]), expect_fired[c]);
        }
    }
    /* install-time firing for 3 and 4 when already true */
    for (int i = 0; i < 4; i++)
        CHECK_EQ(enq(&q, h++, 0), 0);
    CHECK_EQ(fires(fd[1]), 0);
    CHECK_EQ(fires(fd[2]), 0);
    CHECK_EQ(fires(fd[3]), 1);
    CHECK_EQ(fires(fd[4]), 1);
    uint64_t t3, t4, t1;
    int fd3 = efd_new(), fd4 = efd_new(), fd1 = efd_new();
    CHECK_EQ(install(&q, 3, ms(30), 0, fd3, &t3), 0);
    CHECK_EQ(install(&q, 4, ms(40), 0, fd4, &t4), 0);
    CHECK_EQ(install(&q, 1, ms(40), 0, fd1, &t1), 0);
    CHECK_EQ(fires(fd3), 1);
    CHECK_EQ(fires(fd4), 1);
    CHECK_EQ(fires(fd1), 0);
    CHECK_EQ(bq_trigger_fired(&q, t3), 1);
    CHECK_EQ(bq_trigger_fired(&q, t1), 0);
    /* duration in another timescale: 1/25 s = 40 ms */
    uint64_t t5;
    int fd5 = efd_new();
    CHECK_EQ(install(&q, 2, mbq_time_make(1, 25), 0, fd5, &t5), 0);
    CHECK_EQ(fires(fd5), 1);
    CHECK_EQ(bq_test_trigger(&q, t5), 1);
    /* removed triggers never fire again */
    for (int c = 1; c <= 4; c++)
        CHECK_EQ(bq_remove_trigger(&q, tok[c]), 0);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
    for (int c = 1; c <= 4; c++)
        CHECK_EQ(fires(fd[c]), 0);
    CHECK_EQ(fires(fd1), 1);
    for (int c = 1; c <= 4; c++)
        close(fd[c]);
    close(fd1);
    close(fd3);
    close(fd4);
    close(fd5);
    bq_detach(&q);
}

static void test_trigger_pts_changes(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    int f5 = efd_new(), f6 = efd_new();
    uint64_t t5, t6;
    CHECK_EQ(install(&q, 5, MBQ_TIME_INVALID, 0, f5, &t5), 0);
    CHECK_EQ(install(&q, 6, MBQ_TIME_INVALID, 0, f6, &t6), 0);
    CHECK_EQ(fires(f5), 0); /* events: never at install */
    CHECK_EQ(fires(f6), 0);
    struct step {
        char op;
        int64_t pts;
        int min_fires, max_fires;
    } script[] = {
        {'+', 10, 1, 1}, /* min 10 max 10 */
        {'+', 20, 0, 1}, /* max 20 */
        {'+', 5, 1, 0},  /* min 5 */
        {'+', 15, 0, 0},
        {'+', 20, 0, 0}, /* equal max: no change */
        {'-', 0, 1, 0},  /* 5 leaves: min 10 */
        {'-', 0, 1, 0},  /* 10 leaves: min 15 */
        {'+', 30, 0, 1},
        {'-', 0, 1, 0},  /* 15 leaves: min 20 */
        {'-', 0, 0, 0},  /* one 20 leaves: min still 20 */
        {'-', 0, 1, 0},  /* the other 20: min 30 */
        {'-', 0, 1, 1},  /* empty: both become invalid */
        {'+', 7, 1, 1},
        {'R', 0, 1, 1},  /* reset empties: both change */
        {'R', 0, 0, 0},  /* reset of an empty queue: no change */
    };
    uint64_t h = 1;
    int64_t n5 = 0, n6 = 0;
    for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
        struct bq_entry e;
        if (script[i].op == '+')
            CHECK_EQ(enq(&q, h++, script[i].pts), 0);
        else if (script[i].op == '-')
            CHECK_EQ(bq_dequeue(&q, &e), 0);
        else
            CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
        uint64_t a = fires(f5), b = fires(f6);
        if (a != (uint64_t)script[i].min_fires || b != (uint64_t)script[i].max_fires)
            fprintf(stderr, "  step %zu: min fired %llu, max fired %llu\n", i,
                    (unsigned long long)a, (unsigned long long)b);
        CHECK_EQ(a, script[i].min_fires);
        CHECK_EQ(b, script[i].max_fires);
        n5 += script[i].min_fires;
        n6 += script[i].max_fires;
        CHECK_EQ(bq_test_trigger(&q, t5), 0);
        CHECK_EQ(bq_test_trigger(&q, t6), 0);
    }
    CHECK_EQ(bq_trigger_fired(&q, t5), n5);
    CHECK_EQ(bq_trigger_fired(&q, t6), n6);
    /* installed on a non-empty queue: no install-time firing, and the
     * current extremes are the baseline */
    CHECK_EQ(bq_remove_trigger(&q, t5), 0);
    CHECK_EQ(enq(&q, h++, 50), 0);
    CHECK_EQ(install(&q, 5, MBQ_TIME_INVALID, 0, f5, &t5), 0);
    CHECK_EQ(fires(f5), 0);
    CHECK_EQ(fires(f6), 1);
    CHECK_EQ(enq(&q, h++, 60), 0);
    CHECK_EQ(fires(f5), 0);
    CHECK_EQ(fires(f6), 1);
    CHECK_EQ(enq(&q, h++, 40), 0);
    CHECK_EQ(fires(f5), 1);
    CHECK_EQ(fires(f6), 0);
    /* a non-numeric PTS changes neither */
    struct bq_entry e = mk(h++, 0, 10, 1);
    e.pts = MBQ_TIME_INVALID;
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    CHECK_EQ(fires(f5), 0);
    CHECK_EQ(fires(f6), 0);
    close(f5);
    close(f6);
    bq_detach(&q);
}

static void test_trigger_data_ready(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    install_hooks(&q, true, false);
    int fd = efd_new();
    uint64_t t;
    CHECK_EQ(install(&q, 7, ms(0), 0, fd, &t), 0);
    CHECK_EQ(fires(fd), 0); /* empty: nothing to dequeue */
    CHECK_EQ(bq_test_trigger(&q, t), 0);
    R.ready[1] = false;
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(enq(&q, 2, 0), 0); /* ready, but not the head */
    CHECK_EQ(fires(fd), 0);
    CHECK_EQ(bq_test_trigger(&q, t), 0);
    CHECK_EQ(bq_note_data_ready(&q), 0); /* nothing changed */
    CHECK_EQ(fires(fd), 0);
    R.ready[1] = true;
    CHECK_EQ(bq_test_trigger(&q, t), 1); /* the level follows the hook */
    CHECK_EQ(bq_note_data_ready(&q), 0);
    CHECK_EQ(fires(fd), 1);
    CHECK_EQ(bq_note_data_ready(&q), 0); /* no edge */
    CHECK_EQ(fires(fd), 0);
    struct bq_entry e;
    CHECK_EQ(bq_dequeue_if_ready(&q, &e), 0);
    CHECK_EQ(e.handle, 1);
    CHECK_EQ(fires(fd), 0); /* 2 is ready: still true */
    R.ready[3] = false;
    CHECK_EQ(enq(&q, 3, 0), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0); /* head 3 not ready: level false */
    CHECK_EQ(fires(fd), 0);
    CHECK_EQ(bq_test_trigger(&q, t), 0);
    R.ready[4] = true;
    CHECK_EQ(enq(&q, 4, 0), 0);
    CHECK_EQ(fires(fd), 0);
    /* dequeueing the not-ready head makes a ready one dequeueable */
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(e.handle, 3);
    CHECK_EQ(fires(fd), 1);
    CHECK_EQ(bq_dequeue(&q, &e), 0); /* empty: false */
    CHECK_EQ(fires(fd), 0);
    CHECK_EQ(enq(&q, 5, 0), 0); /* a ready buffer into an empty queue */
    CHECK_EQ(fires(fd), 1);
    /* install-time firing when the head is ready */
    int fd2 = efd_new();
    uint64_t t2;
    CHECK_EQ(install(&q, 7, ms(0), 0, fd2, &t2), 0);
    CHECK_EQ(fires(fd2), 1);
    CHECK_EQ(bq_trigger_fired(&q, t), 3);
    CHECK_EQ(bq_trigger_fired(&q, t2), 1);
    CHECK_EQ(bq_note_data_ready(NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    close(fd);
    close(fd2);
    bq_detach(&q);
}

static void test_trigger_end_of_data_and_reset(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    int f8 = efd_new(), f9 = efd_new();
    uint64_t t8, t9;
    CHECK_EQ(install(&q, 8, ms(0), 0, f8, &t8), 0);
    CHECK_EQ(install(&q, 9, ms(0), 0, f9, &t9), 0);
    CHECK_EQ(fires(f8), 0);
    CHECK_EQ(fires(f9), 0);
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(enq(&q, 2, 0), 0);
    CHECK_EQ(bq_mark_end_of_data(&q), 0);
    CHECK_EQ(fires(f8), 0); /* marked but not drained */
    CHECK_EQ(bq_test_trigger(&q, t8), 0);
    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(fires(f8), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(fires(f8), 1); /* drained */
    CHECK_EQ(bq_test_trigger(&q, t8), 1);
    CHECK_EQ(bq_mark_end_of_data(&q), 0); /* again: no edge */
    CHECK_EQ(fires(f8), 0);
    CHECK_EQ(bq_test_trigger(&q, t9), 0);
    CHECK_EQ(fires(f9), 0);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
    CHECK_EQ(fires(f9), 1);
    CHECK_EQ(fires(f8), 0);
    CHECK_EQ(bq_test_trigger(&q, t8), 0); /* EOD cleared */
    CHECK_EQ(bq_test_trigger(&q, t9), 0);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0); /* each reset fires */
    CHECK_EQ(fires(f9), 1);
    CHECK_EQ(enq(&q, 3, 0), 0);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
    CHECK_EQ(fires(f9), 1);
    CHECK_EQ(R.releases[3], 1);
    CHECK_EQ(bq_trigger_fired(&q, t9), 3);
    /* EOD marked on an empty queue: reached at once */
    CHECK_EQ(bq_mark_end_of_data(&q), 0);
    CHECK_EQ(fires(f8), 1);
    CHECK_EQ(bq_trigger_fired(&q, t8), 2);
    /* installed while already at end of data */
    int f8b = efd_new();
    uint64_t t8b;
    CHECK_EQ(install(&q, 8, ms(0), 0, f8b, &t8b), 0);
    CHECK_EQ(fires(f8b), 1);
    CHECK_EQ(fires(f9), 0);
    close(f8);
    close(f8b);
    close(f9);
    bq_detach(&q);
}

static void test_trigger_counts(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    int f10 = efd_new(), f11 = efd_new(), f12 = efd_new();
    uint64_t t10, t11, t12;
    CHECK_EQ(install(&q, 10, MBQ_TIME_INVALID, 2, f10, &t10), 0); /* count < 2 */
    CHECK_EQ(install(&q, 11, MBQ_TIME_INVALID, 2, f11, &t11), 0); /* count > 2 */
    CHECK_EQ(install(&q, 12, ms(35), 2, f12, &t12), 0); /* dur >= 35 && count > 2 */
    CHECK_EQ(fires(f10), 1);
    CHECK_EQ(fires(f11), 0);
    CHECK_EQ(fires(f12), 0);
    struct step {
        char op;
        int64_t dur;
        int lv10, lv11, lv12, f10, f11, f12;
    } script[] = {
        {'+', 10, 1, 0, 0, 0, 0, 0}, /* n1 d10 */
        {'+', 10, 0, 0, 0, 0, 0, 0}, /* n2 d20 */
        {'+', 10, 0, 1, 0, 0, 1, 0}, /* n3 d30 */
        {'+', 10, 0, 1, 1, 0, 0, 1}, /* n4 d40 */
        {'-', 0, 0, 1, 0, 0, 0, 0},  /* n3 d30 */
        {'-', 0, 0, 0, 0, 0, 0, 0},  /* n2 d20 */
        {'+', 100, 0, 1, 1, 0, 1, 1}, /* n3 d120 */
        {'-', 0, 0, 0, 0, 0, 0, 0},  /* n2 d110: duration alone is not enough */
        {'-', 0, 1, 0, 0, 1, 0, 0},  /* n1 d100 */
        {'+', 1, 0, 0, 0, 0, 0, 0},  /* n2 d101 */
        {'+', 1, 0, 1, 1, 0, 1, 1},  /* n3 d102 */
        {'R', 0, 1, 0, 0, 1, 0, 0},  /* reset: n0 */
    };
    uint64_t h = 1;
    for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
        struct step *s = &script[i];
        struct bq_entry e;
        if (s->op == '+') {
            e = mk(h++, 0, s->dur, 1);
            CHECK_EQ(bq_enqueue(&q, &e), 0);
        } else if (s->op == '-') {
            CHECK_EQ(bq_dequeue(&q, &e), 0);
        } else {
            CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
        }
        int l10 = bq_test_trigger(&q, t10), l11 = bq_test_trigger(&q, t11),
            l12 = bq_test_trigger(&q, t12);
        uint64_t a = fires(f10), b = fires(f11), c = fires(f12);
        if (l10 != s->lv10 || l11 != s->lv11 || l12 != s->lv12 || a != (uint64_t)s->f10 ||
            b != (uint64_t)s->f11 || c != (uint64_t)s->f12)
            fprintf(stderr, "  step %zu: levels %d %d %d, fired %llu %llu %llu\n", i, l10,
                    l11, l12, (unsigned long long)a, (unsigned long long)b,
                    (unsigned long long)c);
        CHECK_EQ(l10, s->lv10);
        CHECK_EQ(l11, s->lv11);
        CHECK_EQ(l12, s->lv12);
        CHECK_EQ(a, s->f10);
        CHECK_EQ(b, s->f11);
        CHECK_EQ(c, s->f12);
    }
    CHECK_EQ(bq_trigger_fired(&q, t10), 3);
    CHECK_EQ(bq_trigger_fired(&q, t11), 3);
    CHECK_EQ(bq_trigger_fired(&q, t12), 3);
    /* threshold 0: "not empty" */
    int f0 = efd_new();
    uint64_t t0;
    CHECK_EQ(install(&q, 11, MBQ_TIME_INVALID, 0, f0, &t0), 0);
    CHECK_EQ(fires(f0), 0);
    CHECK_EQ(enq(&q, h++, 0), 0);
    CHECK_EQ(fires(f0), 1);
    /* install-time firing of 11 and 12 when already true, not of 10 */
    for (int i = 0; i < 3; i++) {
        struct bq_entry x = mk(h++, 0, 100, 1);
        CHECK_EQ(bq_enqueue(&q, &x), 0); /* n4 d310 */
    }
    int g10 = efd_new(), g11 = efd_new(), g12 = efd_new();
    uint64_t u10, u11, u12;
    CHECK_EQ(install(&q, 10, MBQ_TIME_INVALID, 2, g10, &u10), 0);
    CHECK_EQ(install(&q, 11, MBQ_TIME_INVALID, 2, g11, &u11), 0);
    CHECK_EQ(install(&q, 12, ms(35), 2, g12, &u12), 0);
    CHECK_EQ(fires(g10), 0);
    CHECK_EQ(fires(g11), 1);
    CHECK_EQ(fires(g12), 1);
    CHECK_EQ(bq_test_trigger(&q, u10), 0);
    CHECK_EQ(bq_test_trigger(&q, u11), 1);
    CHECK_EQ(bq_test_trigger(&q, u12), 1);
    CHECK_EQ(bq_trigger_fired(&q, u11), 1);
    close(g10);
    close(g11);
    close(g12);
    close(f0);
    close(f10);
    close(f11);
    close(f12);
    bq_detach(&q);
}

static void test_trigger_pending_fd(void)
{
    refs_reset();
    struct bq q, q2;
    REQUIRE(mkq(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    int fd = efd_new();
    uint64_t t;
    /* no fd at install: fires, stays pending, delivered when the fd comes */
    CHECK_EQ(install(&q, 11, MBQ_TIME_INVALID, 0, -1, &t), 0);
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(bq_trigger_fired(&q, t), 1);
    CHECK_EQ(fires(fd), 0);
    CHECK_EQ(bq_set_trigger_fd(&q, t, fd), 0);
    CHECK_EQ(fires(fd), 1);
    CHECK_EQ(bq_set_trigger_fd(&q, t, fd), 0); /* delivered once only */
    CHECK_EQ(fires(fd), 0);
    struct bq_entry e;
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(enq(&q, 2, 0), 0); /* now signalled directly */
    CHECK_EQ(fires(fd), 1);
    CHECK_EQ(bq_trigger_fired(&q, t), 2);

    /* an install-time firing with no fd is pending too */
    int fd2 = efd_new();
    uint64_t t2;
    CHECK_EQ(install(&q, 10, MBQ_TIME_INVALID, 5, -1, &t2), 0);
    CHECK_EQ(bq_trigger_fired(&q, t2), 1);
    CHECK_EQ(bq_set_trigger_fd(&q, t2, -1), 0); /* no fd: stays pending */
    CHECK_EQ(bq_set_trigger_fd(&q, t2, fd2), 0);
    CHECK_EQ(fires(fd2), 1);

    /* a second attachment fires triggers it has no fd for: pending, and
     * delivered by the installer's set_trigger_fd */
    REQUIRE(bq_attach(q.seg.fd, &q2) == 0);
    install_hooks(&q2, false, false);
    CHECK_EQ(bq_dequeue(&q2, &e), 0);
    CHECK_EQ(enq(&q2, 3, 0), 0); /* 11 fires in q2's process-local view */
    CHECK_EQ(fires(fd), 0);
    CHECK_EQ(bq_trigger_fired(&q, t), 3);
    CHECK_EQ(bq_set_trigger_fd(&q, t, fd), 0);
    CHECK_EQ(fires(fd), 1);
    bq_detach(&q2);
    close(fd);
    close(fd2);
    bq_detach(&q);
}

/* ---- callback scope ------------------------------------------------------------------- */

static void test_callback_scope(void)
{
    refs_reset();
    struct bq q, other;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &other) == 0);
    CHECK_EQ(enq(&q, 1, 10), 0);
    CHECK_EQ(enq(&q, 2, 20), 0);
    bq_callback_scope(&q);
    struct bq_entry e;
    const int C = MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK;
    CHECK_EQ(enq(&q, 3, 0), C);
    CHECK_EQ(bq_dequeue(&q, &e), C);
    CHECK_EQ(bq_dequeue_if_ready(&q, &e), C);
    CHECK_EQ(bq_dequeue_wait(&q, &e, 0), C);
    CHECK_EQ(bq_reset(&q, NULL, NULL), C);
    CHECK_EQ(bq_mark_end_of_data(&q), C);
    CHECK_EQ(R.retains[3] - R.releases[3], 0);
    CHECK_EQ(total_releases(), 0);
    /* a second attachment of the same queue is the same queue */
    struct bq q2;
    REQUIRE(bq_attach(q.seg.fd, &q2) == 0);
    /* getters work */
    CHECK_EQ(bq_count(&q), 2);
    CHECK(!bq_is_empty(&q));
    CHECK_EQ(bq_total_size(&q), 200);
    CHECK(time_same(bq_duration(&q), ms(20)));
    CHECK(time_same(bq_first_pts(&q), ms(10)));
    CHECK(time_same(bq_max_pts(&q), ms(20)));
    CHECK(!bq_contains_end_of_data(&q));
    CHECK_EQ(bq_copy_head(&q, &e), 0);
    CHECK_EQ(e.handle, 1);
    struct walk w;
    CHECK_EQ(walk(&q, &w), 0);
    CHECK_EQ(w.n, 2);
    uint64_t t;
    CHECK_EQ(install(&q, 11, MBQ_TIME_INVALID, 5, -1, &t), 0);
    CHECK_EQ(bq_test_trigger(&q, t), 0);
    CHECK_EQ(bq_remove_trigger(&q, t), 0);
    /* another queue is unaffected */
    CHECK_EQ(enq(&other, 9, 0), 0);
    CHECK_EQ(bq_dequeue(&other, &e), 0);
    CHECK_EQ(e.handle, 9);
    CHECK_EQ(bq_mark_end_of_data(&other), 0);
    CHECK_EQ(bq_reset(&other, NULL, NULL), 0);
    bq_callback_scope(NULL);
    CHECK_EQ(enq(&q, 3, 30), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(e.handle, 1);
    CHECK_EQ(bq_mark_end_of_data(&q), 0);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
    CHECK_EQ(R.releases[2], 1);
    CHECK_EQ(R.releases[3], 1);
    bq_detach(&q2);
    bq_detach(&other);
    bq_detach(&q);
}

/* ---- statistics --------------------------------------------------------------------- */

static void test_stats_counters(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, NULL), MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.enqueued, 0);
    CHECK_EQ(st.dequeued, 0);
    CHECK_EQ(st.high_water, 0);
    CHECK_EQ(st.repairs, 0);
    CHECK_EQ(st.corruptions, 0);
    struct bq_entry e;
    for (uint64_t h = 1; h <= 3; h++)
        CHECK_EQ(enq(&q, h, 0), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    for (uint64_t h = 4; h <= 7; h++)
        CHECK_EQ(enq(&q, h, 0), 0);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.enqueued, 7);
    CHECK_EQ(st.dequeued, 2);
    CHECK_EQ(st.count, 5);
    CHECK_EQ(st.high_water, 5);
    CHECK_EQ(st.total_size, 500);
    CHECK(time_same(st.duration, ms(50)));
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(bq_dequeue_if_ready(&q, &e), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.dequeued, 5);
    CHECK_EQ(st.high_water, 5); /* a maximum: does not go down */
    /* reset and failures are not operations */
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
    CHECK_EQ(bq_dequeue(&q, &e), -EAGAIN);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.enqueued, 7);
    CHECK_EQ(st.dequeued, 5);
    CHECK_EQ(st.count, 0);
    for (uint64_t h = 10; h <= 17; h++)
        CHECK_EQ(enq(&q, h, 0), 0);
    CHECK_EQ(enq(&q, 18, 0), MBQ_BQ_ERR_QUEUE_IS_FULL);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.enqueued, 15);
    CHECK_EQ(st.high_water, 8);
    CHECK_EQ(st.rejected_full, 1);
    CHECK_EQ(st.dropped, 0);
    CHECK_EQ(st.repairs, 0);
    CHECK_EQ(st.corruptions, 0);
    CHECK_EQ(bq_check(&q), 0); /* consistent */
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.corruptions, 0);
    bq_detach(&q);
}

/* ---- repair -------------------------------------------------------------------------- */

/* A queue with handles 1..3 enqueued and 1 dequeued: head 1, tail 3; then
 * head is scribbled past the tail. */
static int corrupt_queue(struct bq *q)
{
    refs_reset();
    int r = mkq(8, BQ_ORDER_PTS, BQ_FULL_FAIL, q);
    if (r)
        return r;
    struct bq_entry e;
    for (uint64_t h = 1; h <= 3; h++)
        if ((r = enq(q, h, (int64_t)h * 10)) != 0)
            return r;
    if ((r = bq_dequeue(q, &e)) != 0)
        return r;
    atomic_store(&q->sh->head.index, 10);
    return 0;
}

/* After a repair emptied the queue: it works again and its sums are right. */
static void check_works_after_repair(struct bq *q, uint64_t first_handle)
{
    CHECK_EQ(bq_reset(q, NULL, NULL), 0); /* clears an EOD an op may have set */
    CHECK_EQ(bq_count(q), 0);
    CHECK(bq_is_empty(q));
    CHECK_EQ(bq_total_size(q), 0);
    CHECK(time_same(bq_duration(q), MBQ_TIME_ZERO));
    struct bq_entry a = mk(first_handle, 20, 10, 7), b = mk(first_handle + 1, 10, 5, 9), e;
    CHECK_EQ(bq_enqueue(q, &a), 0);
    CHECK_EQ(bq_enqueue(q, &b), 0);
    CHECK_EQ(bq_count(q), 2);
    CHECK_EQ(bq_total_size(q), 16);
    CHECK(time_same(bq_duration(q), ms(15)));
    CHECK(time_same(bq_min_pts(q), ms(10)));
    bool fifo = q->order == BQ_ORDER_FIFO;
    CHECK_EQ(bq_dequeue(q, &e), 0);
    CHECK_EQ(e.handle, fifo ? first_handle : first_handle + 1);
    CHECK_EQ(bq_dequeue(q, &e), 0);
    CHECK_EQ(e.handle, fifo ? first_handle + 1 : first_handle);
    CHECK_EQ(bq_dequeue(q, &e), -EAGAIN);
    CHECK_EQ(bq_check(q), 0);
}

static void test_repair_head_past_tail_check(void)
{
    struct bq q;
    REQUIRE(corrupt_queue(&q) == 0);
    CHECK_EQ(bq_check(&q), -EUCLEAN);
    CHECK_EQ(bq_check(&q), 0);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.corruptions, 1);
    CHECK(st.repairs >= 1);
    CHECK_EQ(st.count, 0);
    CHECK_EQ(st.total_size, 0);
    check_works_after_repair(&q, 100);
    for (int h = 1; h < MAX_HANDLE; h++)
        CHECK(R.releases[h] <= R.retains[h]);
    CHECK_EQ(R.bad_calls, 0);
    bq_detach(&q);
}

static int count_cb(struct bq_entry *e, void *ctx)
{
    int *n = ctx;
    (*n)++;
    return e->handle == 0 ? -1 : 0;
}

enum { N_CORRUPT_OPS = 22 };

/* Runs operation op on a corrupt queue; false if its result is neither an
 * error nor "empty". */
static bool corrupt_op(struct bq *q, int op)
{
    struct bq_entry e;
    memset(&e, 0, sizeof(e));
    struct bq_stats st;
    uint64_t tok;
    int n = 0, r;
    switch (op) {
    case 0:
        r = enq(q, 50, 5);
        return r < 0 && R.retains[50] == R.releases[50];
    case 1: return bq_dequeue(q, &e) < 0;
    case 2: return bq_dequeue_if_ready(q, &e) < 0;
    case 3: return bq_dequeue_wait(q, &e, 0) < 0;
    case 4: return bq_copy_head(q, &e) < 0 && R.client_retains[2] + R.client_retains[3] == 0;
    case 5: return bq_count(q) == 0;
    case 6: return bq_is_empty(q);
    case 7: return bq_total_size(q) == 0;
    case 8: return time_same(bq_duration(q), MBQ_TIME_ZERO);
    case 9: return mbq_time_is_invalid(bq_first_pts(q));
    case 10: return mbq_time_is_invalid(bq_first_dts(q));
    case 11: return mbq_time_is_invalid(bq_min_pts(q));
    case 12: return mbq_time_is_invalid(bq_max_pts(q));
    case 13: return mbq_time_is_invalid(bq_end_pts(q));
    case 14: return mbq_time_is_invalid(bq_min_dts(q));
    case 15:
        r = bq_for_each(q, count_cb, &n);
        return r < 0 || (r == 0 && n == 0);
    case 16:
        r = bq_reset(q, NULL, NULL);
        return total_releases() == 0 || r < 0;
    case 17:
        r = bq_stats(q, &st);
        return r < 0 || st.count == 0;
    case 18: return bq_mark_end_of_data(q) <= 0;
    case 19:
        r = install(q, 11, MBQ_TIME_INVALID, 0, -1, &tok);
        if (r == 0)
            r = bq_remove_trigger(q, tok);
        return r <= 0;
    case 20: return bq_note_data_ready(q) <= 0;
    case 21:
        (void)bq_is_at_end_of_data(q);
        (void)bq_contains_end_of_data(q);
        return true;
    }
    return false;
}

static void test_repair_head_past_tail_ops(void)
{
    /* op 0 (enqueue) has its own case below */
    for (int op = 1; op < N_CORRUPT_OPS; op++) {
        struct bq q;
        REQUIRE(corrupt_queue(&q) == 0);
        bool ok = corrupt_op(&q, op);
        if (!ok)
            fprintf(stderr, "  op %d on a corrupt queue returned neither an error nor empty\n",
                    op);
        CHECK(ok);
        /* a second call, after whatever the first one marked */
        CHECK(corrupt_op(&q, op) || op == 0);
        int r = bq_check(&q);
        CHECK(r == 0 || r == -EUCLEAN);
        struct bq_stats st;
        CHECK_EQ(bq_stats(&q, &st), 0);
        CHECK_EQ(st.corruptions, 1);
        CHECK_EQ(st.count, 0);
        check_works_after_repair(&q, 200);
        for (int h = 1; h < MAX_HANDLE; h++)
            CHECK(R.releases[h] <= R.retains[h]);
        CHECK_EQ(R.bad_calls, 0);
        if (check_case_failed)
            fprintf(stderr, "  (op %d)\n", op);
        bq_detach(&q);
        if (check_case_failed)
            return;
    }
}

/* A head scribbled past the tail. A producer works from its cached copy
 * of head and notices only when that copy is reloaded (queue looks full, or
 * the head lock is taken, as for an out-of-order sorted insert): bq.h says
 * so. What must hold either way: the enqueue either fails and gives its
 * reference back, or succeeds and the repair that follows reports the
 * corruption (a corrupted queue may lose its contents, never crash), and
 * the queue works again afterwards. */
static void corrupt_enqueue_case(uint32_t order)
{
    struct bq q;
    refs_reset();
    REQUIRE(mkq(8, order, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry e;
    for (uint64_t h = 1; h <= 3; h++)
        CHECK_EQ(enq(&q, h, (int64_t)h * 10), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    atomic_store(&q.sh->head.index, 10); /* head 10 > tail 3 */
    int r = enq(&q, 50, 5);
    if (order != BQ_ORDER_FIFO)
        CHECK_EQ(r, -EUCLEAN); /* out of order: the head lock was taken, head re-read */
    CHECK_EQ(R.retains[50] - R.releases[50], r < 0 ? 0 : 1);
    CHECK_EQ(bq_check(&q), -EUCLEAN); /* found and repaired, whichever way it went */
    CHECK_EQ(bq_check(&q), 0);
    /* usable again */
    CHECK_EQ(enq(&q, 60, 100), 0);
    CHECK_EQ(bq_dequeue(&q, &e), 0);
    CHECK_EQ(e.handle, 60);
    CHECK_EQ(bq_dequeue(&q, &e), -EAGAIN);
    bq_detach(&q);
}

static void test_repair_enqueue_with_corrupt_head(void)
{
    corrupt_enqueue_case(BQ_ORDER_FIFO);
    corrupt_enqueue_case(BQ_ORDER_PTS);
}

/* The tail scribbled far ahead of the head (tail - head > capacity): reset
 * must not walk the garbage range and release what it finds there. */
static void test_repair_far_tail_reset(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(4, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(enq(&q, 2, 0), 0);
    atomic_store(&q.sh->tail.index, 12); /* head 0: three times the capacity */
    int r = bq_reset(&q, NULL, NULL);
    CHECK(r == 0 || r == -EUCLEAN);
    CHECK(R.releases[1] <= 1); /* each queued reference released at most once */
    CHECK(R.releases[2] <= 1);
    CHECK_EQ(R.bad_calls, 0); /* no release of the empty slots' handle 0 */
    if (R.releases[1] > 1 || R.bad_calls)
        fprintf(stderr, "  reset released handle 1 %d times, handle 2 %d times, %d bad calls\n",
                R.releases[1], R.releases[2], R.bad_calls);
    r = bq_check(&q);
    CHECK(r == 0 || r == -EUCLEAN);
    check_works_after_repair(&q, 300);
    bq_detach(&q);
}

/* The same for for_each: it must not hand the callback more than capacity
 * entries, nor the empty slots. */
static void test_repair_far_tail_for_each(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(4, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(enq(&q, 2, 0), 0);
    atomic_store(&q.sh->tail.index, 12);
    int n = 0;
    int r = bq_for_each(&q, count_cb, &n);
    if (r == 0)
        CHECK(n <= 4);
    else
        CHECK(r == -EUCLEAN || n <= 2);
    if (n > 4 || r == -1)
        fprintf(stderr, "  for_each returned %d after %d callbacks\n", r, n);
    bq_detach(&q);
}

/* A side's sequence word scribbled odd (no dead lock holder): the getters'
 * fallback to the lock is documented to repair, so the sums stay readable. */
static void test_repair_stuck_side_seq(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(enq(&q, 2, 0), 0);
    atomic_fetch_add(&q.sh->tail.seq, 1); /* odd: "mid-update" forever */
    CHECK_EQ(bq_count(&q), 2);
    uint64_t size = bq_total_size(&q);
    CHECK_EQ(size, 200);
    CHECK(time_same(bq_duration(&q), ms(20)));
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.total_size, 200);
    /* bq_check repairs it in any case */
    int r = bq_check(&q);
    CHECK(r == 0 || r == -EUCLEAN);
    CHECK_EQ(bq_total_size(&q), 200);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.count, 2);
    bq_detach(&q);
}

static void resort_case(uint32_t order)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, order, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry e;
    /* move head/tail to 5 so that the entries wrap around the ring */
    for (uint64_t h = 1; h <= 5; h++) {
        CHECK_EQ(enq(&q, 100 + h, 0), 0);
        CHECK_EQ(bq_dequeue(&q, &e), 0);
    }
    /* keys 10, 20, 20, 30, 40, 50 at indices 5..10 (slots 5, 6, 7, 0, 1, 2) */
    static const int64_t key[6] = {10, 20, 20, 30, 40, 50};
    for (int i = 0; i < 6; i++)
        CHECK_EQ(enq(&q, (uint64_t)i + 1, key[i]), 0);
    /* a scribble swaps slots 6 (20, handle 2) and 1 (40, handle 5), and
     * moves slot 7 (20, handle 3) in front of slot 5 (10, handle 1) */
    struct bq_slot *en = q.slots;
    struct bq_slot tmp = en[6];
    en[6] = en[1];
    en[1] = tmp;
    tmp = en[5];
    en[5] = en[7];
    en[7] = tmp;
    CHECK_EQ(bq_check(&q), -EUCLEAN);
    CHECK_EQ(bq_check(&q), 0);
    struct walk w;
    CHECK_EQ(walk(&q, &w), 0);
    CHECK_EQ(w.n, 6);
    for (int i = 0; i < 6 && i < w.n; i++) {
        CHECK_EQ(w.h[i], (uint64_t)i + 1); /* equal keys back in FIFO order */
        CHECK_EQ(w.pts[i], key[i]); /* enq() sets pts = dts */
    }
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.count, 6);
    CHECK_EQ(st.total_size, 600);
    CHECK_EQ(st.corruptions, 1);
    /* and the queue keeps sorting */
    CHECK_EQ(enq(&q, 7, 15), 0);
    CHECK_EQ(enq(&q, 8, 60), 0);
    static const uint64_t want[8] = {1, 7, 2, 3, 4, 5, 6, 8};
    uint64_t h[8];
    CHECK_EQ(drain(&q, h, 8), 8);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(h[i], want[i]);
    CHECK_EQ(total_releases(), 0);
    bq_detach(&q);
}

static void test_repair_resort_pts(void)
{
    resort_case(BQ_ORDER_PTS);
}

static void test_repair_resort_dts(void)
{
    resort_case(BQ_ORDER_DTS);
}

static void test_repair_trigger_table(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    int fd = efd_new();
    uint64_t t1, t2;
    CHECK_EQ(install(&q, 11, MBQ_TIME_INVALID, 0, fd, &t1), 0);
    CHECK_EQ(install(&q, 9, MBQ_TIME_INVALID, 0, -1, &t2), 0);
    q.sh->triggers[t2 & 0xff].condition = 99; /* scribble */
    CHECK_EQ(bq_check(&q), -EUCLEAN);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.triggers, 1);
    CHECK_EQ(bq_test_trigger(&q, t2), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK_EQ(bq_test_trigger(&q, t1), 0);
    CHECK_EQ(enq(&q, 1, 0), 0);
    CHECK_EQ(fires(fd), 1);
    CHECK_EQ(bq_check(&q), 0);
    close(fd);
    bq_detach(&q);
}

/* A side lock's owner word (the first word of the lock, whatever wraps it). */
static _Atomic uint32_t *lock_word(struct bq_side *s)
{
    return (_Atomic uint32_t *)(void *)&s->lock;
}

/* The pid of a child that has exited and been reaped: a dead lock owner. */
static uint32_t dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid < 0)
        return 0;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return (uint32_t)pid;
}

enum journal_phase {
    J_NOTHING_SHIFTED, /* journal written, active, no slot moved */
    J_HALF_SHIFTED,    /* the shift stopped halfway, progress recorded */
    J_COPY_UNNOTED,    /* one more slot copied than progress says */
    J_ALL_SHIFTED,     /* every slot moved, the new entry not written */
    J_ENTRY_WRITTEN,   /* the new entry in place, tail not published */
    J_PHASES
};

/* Leaves q as a process that died inside an out-of-order insertion of ne
 * would: the journal active, part of the shift done, the tail lock held by
 * a dead pid. The insertion goes between keys 20 and 30 (see the caller). */
static bool dead_insertion(struct bq *q, enum journal_phase ph, struct bq_entry ne)
{
    struct bq_shared *sh = q->sh;
    uint32_t pid = dead_pid();
    if (!pid)
        return false;
    uint64_t tail = atomic_load(&sh->tail.index), head = atomic_load(&sh->head.index);
    ne.seq = tail + 1;
    uint64_t pos = tail;
    while (pos > head && mbq_time_compare(ne.pts, slot_pts(q, pos - 1)) < 0)
        pos--;
    struct bq_journal *j = &sh->journal;
    j->entry = ne;
    j->pos = pos;
    j->tail = tail;
    j->ops = atomic_load(&q->sh->tail.ops);
    atomic_store(&j->progress, tail);
    atomic_store(&j->active, 1);
    uint64_t stop = ph == J_NOTHING_SHIFTED ? tail : ph == J_HALF_SHIFTED ? tail - 2 : pos;
    for (uint64_t k = tail; k > stop; k--) {
        slot_copy(q, k, k - 1);
        atomic_store(&j->progress, k - 1);
    }
    if (ph == J_COPY_UNNOTED)
        slot_copy(q, tail - 2, tail - 3);
    if (ph == J_ENTRY_WRITTEN)
        bq_slot_write(q, pos, &ne);
    atomic_store(lock_word(&sh->tail), pid);
    return true;
}

static void journal_case(enum journal_phase ph, int next_op)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    struct bq_entry e;
    for (uint64_t h = 1; h <= 6; h++) { /* head and tail to 6: entries wrap */
        CHECK_EQ(enq(&q, 100 + h, 0), 0);
        CHECK_EQ(bq_dequeue(&q, &e), 0);
    }
    /* pts 10..50 at indices 6..10 (slots 6, 7, 0, 1, 2), handles 1..5 */
    for (uint64_t h = 1; h <= 5; h++) {
        struct bq_entry x = mk(h, (int64_t)h * 10, 10, h * 100);
        CHECK_EQ(bq_enqueue(&q, &x), 0);
    }
    REQUIRE(dead_insertion(&q, ph, mk(6, 25, 10, 600)));

    /* the next operation takes over the lock and rolls the insertion forward */
    struct walk w;
    struct bq_entry x = mk(7, 60, 10, 700);
    if (next_op == 0) {
        CHECK_EQ(bq_enqueue(&q, &x), 0);
        CHECK_EQ(walk(&q, &w), 0);
    } else {
        CHECK_EQ(walk(&q, &w), 0);
        CHECK_EQ(bq_enqueue(&q, &x), 0);
        CHECK_EQ(walk(&q, &w), 0);
    }
    CHECK_EQ(atomic_load(&q.sh->journal.active), 0);
    CHECK_EQ(atomic_load(lock_word(&q.sh->tail)) & SLOCK_TID_MASK, 0);
    static const uint64_t want[7] = {1, 2, 6, 3, 4, 5, 7};
    static const int64_t want_pts[7] = {10, 20, 25, 30, 40, 50, 60};
    CHECK_EQ(w.n, 7);
    for (int i = 0; i < 7 && i < w.n; i++) {
        CHECK_EQ(w.h[i], want[i]);
        CHECK_EQ(w.pts[i], want_pts[i]);
    }
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.count, 7);
    CHECK_EQ(st.total_size, 2800);
    CHECK(time_same(st.duration, ms(70)));
    CHECK(st.repairs >= 1);
    CHECK_EQ(st.corruptions, 0); /* a roll-forward is not corruption */
    CHECK_EQ(bq_check(&q), 0);
    uint64_t h[8];
    CHECK_EQ(drain(&q, h, 8), 7);
    for (int i = 0; i < 7; i++)
        CHECK_EQ(h[i], want[i]);
    CHECK_EQ(total_releases(), 0);
    CHECK_EQ(bq_total_size(&q), 0);
    bq_detach(&q);
}

static void test_repair_journal_dead_inserter(void)
{
    static const char *names[J_PHASES] = {"nothing-shifted", "half-shifted", "copy-unnoted",
                                          "all-shifted", "entry-written"};
    for (int ph = 0; ph < J_PHASES; ph++)
        for (int op = 0; op < 2; op++) {
            int before = check_case_failed;
            check_case_failed = 0;
            journal_case((enum journal_phase)ph, op);
            if (check_case_failed)
                fprintf(stderr, "  (phase %s, next operation %s)\n", names[ph],
                        op ? "for_each" : "enqueue");
            check_case_failed |= before;
        }
}

/* The rolled-forward insertion is an enqueue: the enqueued counter must
 * count it (enqueued - dequeued == count when nothing was dropped/reset). */
static void test_repair_journal_counts_enqueue(void)
{
    refs_reset();
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
    for (uint64_t h = 1; h <= 5; h++)
        CHECK_EQ(enq(&q, h, (int64_t)h * 10), 0);
    REQUIRE(dead_insertion(&q, J_HALF_SHIFTED, mk(6, 25, 10, 600)));
    CHECK_EQ(bq_check(&q), 0);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.count, 6);
    CHECK_EQ(st.enqueued - st.dequeued, st.count);
    CHECK_EQ(st.enqueued, 6);
    CHECK_EQ(st.high_water, 6);
    bq_detach(&q);
}

/* Entries are stored in one 64-byte line when their three times share a
 * timescale (an invalid time has none) and they carry no attachments, and
 * "wide" otherwise: either way every field comes back exactly as it went
 * in, in FIFO and through a sorted queue's moves. */
static struct bq_entry form_entry(uint64_t h, int kind)
{
    struct bq_entry e = {.handle = h, .size = 100 + h, .pool_id = 7, .flags = 3};
    mbq_time pts = {.value = (int64_t)h * 3000, .timescale = 90000, .flags = MBQ_TIME_FLAG_VALID};
    e.pts = pts;
    e.dts = pts;
    e.duration = (mbq_time){3000, 90000, MBQ_TIME_FLAG_VALID, 0};
    switch (kind % 8) {
    case 0: break;                                               /* compact */
    case 1: e.dts = MBQ_TIME_INVALID; break;                     /* compact: no timescale */
    case 2: e.duration = MBQ_TIME_POSITIVE_INFINITY; break;      /* compact */
    case 3: e.duration = (mbq_time){1, 60, MBQ_TIME_FLAG_VALID, 0}; break; /* wide: timescale */
    case 4: e.dts.epoch = 2; break;                              /* wide: epoch */
    case 5: e.attachments[23] = 0x5a; e.attachments[0] = (uint8_t)h; break; /* wide */
    case 6: e.pts.flags |= MBQ_TIME_FLAG_HAS_BEEN_ROUNDED; break; /* compact */
    default: e.duration = (mbq_time){-5, 0, 0x40, 0}; break;     /* wide: foreign flags */
    }
    return e;
}

static bool entry_same(const struct bq_entry *a, const struct bq_entry *b)
{
    return a->handle == b->handle && a->size == b->size && a->pool_id == b->pool_id &&
           a->flags == b->flags && time_eq(a->dts, b->dts) && time_eq(a->pts, b->pts) &&
           time_eq(a->duration, b->duration) &&
           memcmp(a->attachments, b->attachments, sizeof(a->attachments)) == 0;
}

static void test_slot_forms(void)
{
    for (uint32_t order = BQ_ORDER_FIFO; order <= BQ_ORDER_PTS; order++) {
        struct bq q;
        REQUIRE(mkq(64, order, BQ_FULL_FAIL, &q) == 0);
        bq_set_hooks(&q, NULL);
        /* sorted: every fourth entry out of order, so entries (wide ones
         * among them) are moved by the consumer's settling */
        static const int shuffle[4] = {0, 3, 1, 2};
        for (uint64_t i = 0; i < 40; i++) {
            uint64_t h = order == BQ_ORDER_FIFO ? i + 1 : (i & ~3ull) + (uint64_t)shuffle[i & 3] + 1;
            struct bq_entry e = form_entry(h, (int)h);
            CHECK_EQ(bq_enqueue(&q, &e), 0);
        }
        CHECK_EQ(bq_count(&q), 40);
        for (uint64_t h = 1; h <= 40; h++) {
            struct bq_entry got, want = form_entry(h, (int)h);
            REQUIRE(bq_dequeue(&q, &got) == 0);
            CHECK(entry_same(&got, &want));
        }
        CHECK_EQ(bq_count(&q), 0);
        bq_detach(&q);
    }
}

/* for_each may change an entry's attachments (making a compact entry wide);
 * the change is kept and nothing else moves. */
static int set_attachment(struct bq_entry *e, void *ctx)
{
    (void)ctx;
    e->attachments[5] = (uint8_t)(0x80 | e->handle);
    e->handle = 999; /* must not stick */
    return 0;
}

static void test_for_each_attachments_kept(void)
{
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    bq_set_hooks(&q, NULL);
    for (uint64_t h = 1; h <= 3; h++) {
        struct bq_entry e = form_entry(h, 0);
        CHECK_EQ(bq_enqueue(&q, &e), 0);
    }
    CHECK_EQ(bq_for_each(&q, set_attachment, NULL), 0);
    for (uint64_t h = 1; h <= 3; h++) {
        struct bq_entry got, want = form_entry(h, 0);
        want.attachments[5] = (uint8_t)(0x80 | h);
        REQUIRE(bq_dequeue(&q, &got) == 0);
        CHECK(entry_same(&got, &want));
    }
    bq_detach(&q);
}

/* A FIFO consumer takes an entry as soon as its publish mark is set, which
 * its producer does before it moves the tail index: for that moment the head
 * is one past the tail. Every reader must see an empty queue then, not a
 * corrupt one (it once answered -EUCLEAN and repaired: two consumers could
 * hit it under load). */
static void test_fifo_head_past_tail_while_publishing(void)
{
    struct bq q;
    REQUIRE(mkq(8, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    bq_set_hooks(&q, NULL);
    CHECK_EQ(enq(&q, 1, 0), 0);
    struct bq_entry out;
    CHECK_EQ(bq_dequeue(&q, &out), 0);
    /* A producer, half way: entry 1 written with its mark, tail not moved. */
    struct bq_entry e = mk(2, 10, 10, 100);
    e.seq = 2;
    bq_slot_write(&q, 1, &e);
    CHECK_EQ(bq_dequeue(&q, &out), 0); /* through the mark */
    CHECK_EQ(out.handle, 2);
    CHECK_EQ(atomic_load(&q.sh->head.index), 2);
    CHECK_EQ(atomic_load(&q.sh->tail.index), 1);
    for (int i = 0; i < 130; i++) /* past the every-64th check of the index */
        CHECK_EQ(bq_dequeue(&q, &out), -EAGAIN);
    CHECK_EQ(bq_copy_head(&q, &out), -EAGAIN);
    CHECK_EQ(bq_count(&q), 0);
    CHECK(bq_is_empty(&q));
    CHECK(!mbq_time_is_valid(bq_first_pts(&q)));
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.repairs, 0);
    CHECK_EQ(st.corruptions, 0);
    bq_detach(&q);
}

CHECK_MAIN(CASE(test_create_params), CASE(test_attach_shares_state), CASE(test_attach_rejects),
           CASE(test_fifo_order_and_refs), CASE(test_full_fail), CASE(test_full_drop_oldest),
           CASE(test_validation_hook), CASE(test_sorted_pts_random),
           CASE(test_sorted_dts_random), CASE(test_sorted_stable_equal_keys),
           CASE(test_sorted_mostly_ordered), CASE(test_sorted_invalid_pts_last),
           CASE(test_sorted_mixed_timescales),
           CASE(test_dequeue_if_ready), CASE(test_copy_head), CASE(test_end_of_data),
           CASE(test_dequeue_wait_timeout), CASE(test_reset), CASE(test_reset_if),
           CASE(test_for_each),
           CASE(test_getters_empty), CASE(test_getters_values),
           CASE(test_duration_mixed_timescales), CASE(test_trigger_errors),
           CASE(test_trigger_duration), CASE(test_trigger_pts_changes),
           CASE(test_trigger_data_ready), CASE(test_trigger_end_of_data_and_reset),
           CASE(test_trigger_counts), CASE(test_trigger_pending_fd), CASE(test_callback_scope),
           CASE(test_stats_counters), CASE(test_repair_head_past_tail_check),
           CASE(test_repair_head_past_tail_ops), CASE(test_repair_enqueue_with_corrupt_head),
           CASE(test_repair_far_tail_reset),
           CASE(test_repair_far_tail_for_each), CASE(test_repair_stuck_side_seq),
           CASE(test_repair_resort_pts), CASE(test_repair_resort_dts),
           CASE(test_repair_trigger_table), CASE(test_repair_journal_dead_inserter),
           CASE(test_repair_journal_counts_enqueue), CASE(test_slot_forms),
           CASE(test_for_each_attachments_kept), CASE(test_fifo_head_past_tail_while_publishing))
