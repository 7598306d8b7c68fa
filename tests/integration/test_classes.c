/* Pools of size classes through mbqd and the library (<mbq/mbq.h>,
 * mbq_pool_options.classes):
 *   - bad classes (none, unordered or equal once rounded, too many, too
 *     large, a count of 0, classes and a block size together) get
 *     MBQ_POOL_ERR_INVALID_PARAMETER with the daemon's explanation naming
 *     the problem, create nothing and cost the user nothing;
 *   - one pool serves a stream whose buffers change size: a producer
 *     process allocates 1 B .. 64 KiB buffers of one pool, fills them and
 *     enqueues them; a consumer process dequeues each from the class the
 *     rules choose (its capacity), with its bytes; at the end every class
 *     is whole;
 *   - `mbqctl create pool --classes` and `mbqctl stat --json` show the
 *     classes and their figures. */
#include "harness.h"

#include <sys/wait.h>

static struct mbqd D;

#define NSIZES 7
static const size_t SIZES[NSIZES] = {1, 64, 65, 1024, 1025, 16384, 65536};
/* the class each of SIZES lands in, by capacity */
static const size_t CAPS[NSIZES] = {64, 64, 1024, 1024, 16384, 16384, 65536};
#define ROUNDS 40

static mbq_pool_options class_opts(void)
{
    mbq_pool_options po = h_pool_opts(0, 0);
    po.class_count = 4;
    po.classes[0] = (mbq_pool_class){64, 64};
    po.classes[1] = (mbq_pool_class){1024, 32};
    po.classes[2] = (mbq_pool_class){16384, 8};
    po.classes[3] = (mbq_pool_class){65536, 4};
    return po;
}

/* Creates po as name and expects MBQ_POOL_ERR_INVALID_PARAMETER with an
 * explanation containing want (NULL: refused in the library, no
 * explanation needed). */
static void expect_refused(mbq_client *c, const char *name, const mbq_pool_options *po,
                           const char *want)
{
    mbq_pool *p = NULL;
    CHECK_STATUS(mbq_pool_create(c, name, po, &p), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK(p == NULL);
    if (want) {
        char why[256];
        mbq_client_last_error(c, why, sizeof why);
        if (!strstr(why, want))
            fprintf(stderr, "explanation '%s' lacks '%s'\n", why, want);
        CHECK(strstr(why, want) != NULL);
    }
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, name, &info), -ENOENT);
}

static void bad_classes_refused_clearly(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "bad");
    REQUIRE(c);
    mbq_user_usage before = {.size = sizeof before}, after = {.size = sizeof after};
    REQUIRE(mbq_usage(c, &before, 1, NULL, NULL) >= 0);

    mbq_pool_options po = h_pool_opts(0, 0); /* no classes, no block size */
    expect_refused(c, "bad/none", &po, NULL);
    po = class_opts();
    po.classes[1].block_size = 32; /* below class 0 */
    expect_refused(c, "bad/order", &po, "must ascend");
    po = class_opts();
    po.classes[1].block_size = 100; /* 128 once rounded ... */
    po.classes[2].block_size = 120; /* ... this too */
    expect_refused(c, "bad/equal", &po, "class 2");
    po = class_opts();
    po.class_count = MBQ_POOL_MAX_CLASSES + 1;
    expect_refused(c, "bad/many", &po, NULL);
    po = class_opts();
    po.classes[3].block_size = UINT64_MAX / 2;
    expect_refused(c, "bad/large", &po, "too large");
    po = class_opts();
    po.classes[2].block_count = 0;
    expect_refused(c, "bad/empty", &po, "class 2");
    po = class_opts();
    po.classes[0].block_size = 0;
    expect_refused(c, "bad/zero", &po, "class 0");
    po = class_opts();
    po.block_size = 4096;
    po.block_count = 4;
    expect_refused(c, "bad/both", &po, "give one");

    /* nothing was made, nothing charged; the daemon still serves */
    REQUIRE(mbq_usage(c, &after, 1, NULL, NULL) >= 0);
    CHECK_EQ(after.objects, before.objects);
    CHECK_EQ(after.bytes, before.bytes);
    po = class_opts();
    mbq_pool *p = NULL;
    CHECK_STATUS(mbq_pool_create(c, "good/p", &po, &p), 0);
    mbq_pool_class got[MBQ_POOL_MAX_CLASSES];
    CHECK_EQ(mbq_pool_get_classes(p, got, MBQ_POOL_MAX_CLASSES), 4);
    CHECK_EQ(got[3].block_size, 65536);
    CHECK_EQ(mbq_pool_get_classes(p, NULL, 0), 4);
    CHECK_EQ(mbq_pool_get_classes(p, NULL, 1), -EINVAL);
    mbq_buffer b;
    CHECK_STATUS(mbq_pool_allocate(p, 65537, &b), MBQ_POOL_ERR_INVALID_PARAMETER);
    mbq_pool_close(p);
    /* One class is a pool of one block size, and is opened again by the
     * same options or by that block size. */
    po = h_pool_opts(0, 0);
    po.class_count = 1;
    po.classes[0] = (mbq_pool_class){1000, 8};
    mbq_pool *one = NULL, *again = NULL, *plain = NULL;
    CHECK_STATUS(mbq_pool_create(c, "good/one", &po, &one), 0);
    CHECK_STATUS(mbq_pool_create(c, "good/one", &po, &again), 0);
    mbq_pool_options bs = h_pool_opts(1024, 8);
    CHECK_STATUS(mbq_pool_create(c, "good/one", &bs, &plain), 0);
    CHECK_EQ(mbq_pool_get_classes(one, got, MBQ_POOL_MAX_CLASSES), 1);
    CHECK_EQ(got[0].block_size, 1024);
    CHECK_EQ(got[0].block_count, 8);
    mbq_pool_close(plain);
    mbq_pool_close(again);
    mbq_pool_close(one);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* Fills a buffer of size n: byte k is (round * 7 + k) & 0xff. */
static void fill(uint8_t *d, size_t n, int round)
{
    for (size_t k = 0; k < n; k++)
        d[k] = (uint8_t)(round * 7 + (int)k);
}

static int producer(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "producer");
    mbq_pool *p;
    mbq_buffer_queue *q;
    if (!c || mbq_pool_open(c, "cl/pool", &p) != 0 || mbq_buffer_queue_open(c, "cl/q", &q) != 0)
        return 2;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < NSIZES; i++) {
            mbq_buffer b;
            if (h_alloc_retry(p, SIZES[i], &b) != 0)
                return 3;
            size_t cap = 0;
            uint8_t *d = mbq_buffer_get_data(b, &cap);
            if (!d || cap != CAPS[i])
                return 4;
            fill(d, SIZES[i], r);
            if (mbq_buffer_set_data_size(b, SIZES[i]) != 0 ||
                mbq_buffer_set_data_size(b, cap + 1) != -EINVAL)
                return 5;
            if (mbq_buffer_queue_enqueue_and_release_wait(q, b, 10000000000ll) != 0)
                return 6;
        }
    }
    mbq_buffer_queue_close(q);
    mbq_pool_close(p);
    mbq_disconnect(c);
    return 0;
}

static int consumer(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "consumer");
    mbq_pool *p;
    mbq_buffer_queue *q;
    if (!c || mbq_pool_open(c, "cl/pool", &p) != 0 || mbq_buffer_queue_open(c, "cl/q", &q) != 0)
        return 2;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < NSIZES; i++) {
            mbq_buffer b;
            if (mbq_buffer_queue_dequeue_wait(q, 10000000000ll, &b) != 0)
                return 3;
            size_t cap = 0;
            const uint8_t *d = mbq_buffer_get_data(b, &cap);
            if (!d || cap != CAPS[i] || mbq_buffer_get_data_size(b) != SIZES[i])
                return 4;
            for (size_t k = 0; k < SIZES[i]; k++)
                if (d[k] != (uint8_t)(r * 7 + (int)k))
                    return 5;
            if (mbq_buffer_release(b) != 0)
                return 6;
        }
    }
    mbq_buffer_queue_close(q);
    mbq_pool_close(p);
    mbq_disconnect(c);
    return 0;
}

static int run_pair(void)
{
    pid_t prod = fork();
    if (prod == 0) {
        h_child_setup(getppid());
        _exit(producer(NULL));
    }
    int cst = run_in_child(consumer, NULL);
    int pst = h_wait_pid(prod, 60000);
    return cst == 0 && pst == 0 ? 0 : (cst ? cst : pst);
}

static void one_pool_any_size_across_processes(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool_options po = class_opts();
    mbq_pool *p;
    REQUIRE(mbq_pool_create(c, "cl/pool", &po, &p) == 0);
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    mbq_buffer_queue *q;
    REQUIRE(mbq_buffer_queue_create(c, "cl/q", &qo, &q) == 0);
    CHECK_EQ(run_pair(), 0);
    CHECK_EQ(h_wait_pool_used(c, "cl/pool", 0, 2000), 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "cl/pool", &info), 0);
    CHECK_EQ(info.pool_class_count, 4);
    CHECK_EQ(info.allocations, (uint64_t)ROUNDS * NSIZES);
    for (uint32_t k = 0; k < info.pool_class_count; k++) {
        CHECK_EQ(info.pool_classes[k].used, 0);
        CHECK_EQ(info.pool_classes[k].warm + info.pool_classes[k].cold,
                 po.classes[k].block_count);
    }
    mbq_buffer_queue_close(q);
    mbq_pool_close(p);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

static void mbqctl_shows_classes(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    char out[8192];
    const char *create[] = {"create", "pool", "ctl/p", "--classes", "64x16,5000x4", NULL};
    CHECK_EQ(h_mbqctl(&D, create, out, sizeof out), 0);
    const char *bad[] = {"create", "pool", "ctl/q", "--classes", "4096x4,64x4", NULL};
    CHECK(h_mbqctl(&D, bad, out, sizeof out) != 0);
    const char *stat[] = {"stat", "ctl/p", NULL};
    CHECK_EQ(h_mbqctl(&D, stat, out, sizeof out), 0);
    CHECK(strstr(out, "class 0:       64 B x 16") != NULL);
    CHECK(strstr(out, "class 1:       8192 B x 4") != NULL);
    const char *json[] = {"stat", "ctl/p", "--json", NULL};
    CHECK_EQ(h_mbqctl(&D, json, out, sizeof out), 0);
    CHECK(strstr(out, "\"classes\":[{\"block_size\":64,\"block_count\":16,\"used\":0") != NULL);
    CHECK(strstr(out, "{\"block_size\":8192,\"block_count\":4,") != NULL);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(bad_classes_refused_clearly), CASE(one_pool_any_size_across_processes),
           CASE(mbqctl_shows_classes))
