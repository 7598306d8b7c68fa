/* Flow control through libmbq, against a real mbqd: back-pressure with
 * blocking allocate and blocking enqueue (no failed try, no polling), a
 * cancel that stops blocked calls in other processes at once, and a
 * blocking allocate woken when mbqd reclaims a holder killed with kill -9.
 *
 * "Blocked" is observed, not assumed: an actor says it is about to wait,
 * and the parent polls (with a generous deadline) until the kernel shows
 * the actor asleep (/proc/PID/stat state S) before it acts. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

static struct mbqd D;

enum { OP_GO = 1 };

#define SEC 1000000000ll

/* Polls until pid is asleep in the kernel, at most 30 s. */
static bool h_wait_asleep(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    uint64_t deadline = h_now_ns() + 30ull * 1000000000ull;
    while (h_now_ns() < deadline) {
        FILE *f = fopen(path, "r");
        if (!f)
            return false;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && p[2] == 'S')
            return true;
        if (p && p[1] == ' ' && p[2] == 'Z')
            return false; /* it returned instead */
        sched_yield();
    }
    return false;
}

/* ---- back-pressure ----------------------------------------------------------- */

#define BP_N 3000

static int bp_producer(int cmd, int rep, void *arg)
{
    (void)arg;
    struct hmsg m;
    CREQUIRE(hmsg_next(cmd, &m) == 0);
    mbq_client *c = h_connect(&D, "bp-producer");
    CREQUIRE(c);
    mbq_pool *pool;
    mbq_buffer_queue *q;
    CREQUIRE(mbq_pool_open(c, "fl/bp/pool", &pool) == 0);
    CREQUIRE(mbq_buffer_queue_open(c, "fl/bp/q", &q) == 0);
    struct hmsg r = hmsg_op(OP_GO);
    for (int64_t i = 0; i < BP_N && !r.status; i++) {
        mbq_buffer b;
        int e = mbq_pool_allocate_wait(pool, 8, 20 * SEC, &b);
        if (e != 0) {
            r.status = e;
            break;
        }
        int64_t *d = mbq_buffer_get_data(b, NULL);
        *d = i;
        e = mbq_buffer_queue_enqueue_and_release_wait(q, b, 20 * SEC);
        if (e != 0) {
            mbq_buffer_release(b);
            r.status = e;
        }
    }
    CHECK_STATUS(mbq_buffer_queue_mark_end_of_data(q), 0);
    hmsg_reply(rep, &r);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

/* A slow consumer that holds a few frames (an encoder's lookahead). */
static int bp_consumer(int cmd, int rep, void *arg)
{
    (void)arg;
    struct hmsg m;
    CREQUIRE(hmsg_next(cmd, &m) == 0);
    mbq_client *c = h_connect(&D, "bp-consumer");
    CREQUIRE(c);
    mbq_buffer_queue *q;
    CREQUIRE(mbq_buffer_queue_open(c, "fl/bp/q", &q) == 0);
    struct hmsg r = hmsg_op(OP_GO);
    mbq_buffer held[3];
    int nheld = 0;
    int64_t expect = 0;
    for (;;) {
        mbq_buffer b;
        int e = mbq_buffer_queue_dequeue_wait(q, 20 * SEC, &b);
        if (e == -ENODATA)
            break;
        if (e != 0) {
            r.status = e;
            break;
        }
        const int64_t *d = mbq_buffer_get_data(b, NULL);
        if (!d || *d != expect)
            r.v[1]++;
        expect++;
        if (nheld == 3) {
            mbq_buffer_release(held[0]);
            memmove(held, held + 1, 2 * sizeof held[0]);
            nheld--;
        }
        held[nheld++] = b;
    }
    while (nheld)
        mbq_buffer_release(held[--nheld]);
    r.v[0] = expect;
    hmsg_reply(rep, &r);
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return 0;
}

static void back_pressure_without_failures(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool;
    mbq_buffer_queue *q;
    mbq_pool_options po = h_pool_opts(4096, 6);
    REQUIRE(mbq_pool_create(c, "fl/bp/pool", &po, &pool) == 0);
    mbq_buffer_queue_options qo = h_bq_opts(2, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "fl/bp/q", &qo, &q) == 0);
    struct actor p, k;
    REQUIRE(actor_start(&p, bp_producer, NULL) == 0);
    REQUIRE(actor_start(&k, bp_consumer, NULL) == 0);
    struct hmsg go = hmsg_op(OP_GO), pr, kr;
    uint64_t t0 = h_now_ns();
    REQUIRE(h_write_full(k.cmd, &go, sizeof go) == 0);
    REQUIRE(h_write_full(p.cmd, &go, sizeof go) == 0);
    CHECK_EQ(actor_recv(&p, &pr, 100000), 0);
    CHECK_EQ(actor_recv(&k, &kr, 100000), 0);
    printf("back-pressure: %d frames through a 2-entry queue and a 6-block pool in %.3f s\n",
           BP_N, (double)(h_now_ns() - t0) / 1e9);
    CHECK_STATUS(pr.status, 0);
    CHECK_STATUS(kr.status, 0);
    CHECK_EQ(kr.v[0], BP_N);
    CHECK_EQ(kr.v[1], 0);
    CHECK_ACTOR_OK(&p);
    CHECK_ACTOR_OK(&k);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "fl/bp/q", &info), 0);
    CHECK_EQ(info.enqueued, BP_N);
    CHECK_EQ(info.rejected_full, 0); /* waiting is not failing */
    CHECK_STATUS(h_stat(c, "fl/bp/pool", &info), 0);
    CHECK_EQ(info.allocations, BP_N);
    CHECK_EQ(info.blocks_used, 0);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- cancel across processes --------------------------------------------------- */

enum { W_DEQUEUE = 0, W_ENQUEUE = 1, W_ALLOCATE = 2 };

/* Blocks in the call m.v[0] names, reports its status and when it returned. */
static int blocked_call(int cmd, int rep, void *arg)
{
    (void)arg;
    struct hmsg m;
    CREQUIRE(hmsg_next(cmd, &m) == 0);
    mbq_client *c = h_connect(&D, "waiter");
    CREQUIRE(c);
    mbq_pool *pool;
    mbq_buffer_queue *q;
    CREQUIRE(mbq_pool_open(c, "fl/c/pool", &pool) == 0);
    CREQUIRE(mbq_buffer_queue_open(c, m.s, &q) == 0);
    mbq_buffer b = {0};
    if (m.v[0] == W_ENQUEUE)
        CREQUIRE(mbq_pool_allocate(pool, 8, &b) == 0);
    struct hmsg r = hmsg_op(OP_GO);
    hmsg_reply(rep, &r); /* about to block */
    int e;
    if (m.v[0] == W_DEQUEUE)
        e = mbq_buffer_queue_dequeue_wait(q, 30 * SEC, &b);
    else if (m.v[0] == W_ENQUEUE)
        e = mbq_buffer_queue_enqueue_and_release_wait(q, b, 30 * SEC);
    else
        e = mbq_pool_allocate_wait(pool, 8, 30 * SEC, &b);
    r.v[1] = (int64_t)h_now_ns();
    r.status = e;
    if (m.v[0] == W_ENQUEUE && e != 0)
        r.v[2] = mbq_buffer_release(b); /* still ours after a failed hand-over */
    hmsg_reply(rep, &r);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static void cancel_stops_blocked_calls_in_other_processes(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool;
    mbq_buffer_queue *qe, *qf;
    /* Two blocks: one in the full queue, one the enqueuer holds; the
     * allocator finds none. */
    mbq_pool_options po = h_pool_opts(4096, 2);
    REQUIRE(mbq_pool_create(c, "fl/c/pool", &po, &pool) == 0);
    mbq_buffer_queue_options qo = h_bq_opts(1, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "fl/c/empty", &qo, &qe) == 0);
    REQUIRE(mbq_buffer_queue_create(c, "fl/c/full", &qo, &qf) == 0);
    mbq_buffer fill;
    REQUIRE(mbq_pool_allocate(pool, 8, &fill) == 0);
    REQUIRE(mbq_buffer_queue_enqueue_and_release(qf, fill) == 0);

    struct actor a[3];
    const char *qname[3] = {"fl/c/empty", "fl/c/full", "fl/c/empty"};
    for (int i = 0; i < 3; i++) {
        REQUIRE(actor_start(&a[i], blocked_call, NULL) == 0);
        struct hmsg m = hmsg_op(OP_GO), r;
        m.v[0] = i;
        snprintf(m.s, sizeof m.s, "%s", qname[i]);
        REQUIRE(actor_call(&a[i], &m, &r) == 0);
    }
    for (int i = 0; i < 3; i++)
        CHECK(h_wait_asleep(a[i].pid));
    uint64_t t0 = h_now_ns();
    /* The pool first: the cancelled enqueuer releases its block, which
     * would otherwise satisfy the allocator before its cancel. */
    CHECK_STATUS(mbq_pool_cancel_waits(pool), 0);
    CHECK_STATUS(mbq_buffer_queue_cancel_waits(qe), 0);
    CHECK_STATUS(mbq_buffer_queue_cancel_waits(qf), 0);
    const char *what[3] = {"dequeue_wait", "enqueue_and_release_wait", "allocate_wait"};
    for (int i = 0; i < 3; i++) {
        struct hmsg r;
        CHECK_EQ(actor_recv(&a[i], &r, H_HANG_MS), 0);
        CHECK_STATUS(r.status, -ECANCELED);
        printf("cancel: %s in another process returned %.1f us after the cancel began\n",
               what[i], (double)((uint64_t)r.v[1] - t0) / 1e3);
        CHECK((uint64_t)r.v[1] - t0 < 5ull * 1000000000ull);
        if (i == W_ENQUEUE)
            CHECK_STATUS(r.v[2], 0);
        CHECK_ACTOR_OK(&a[i]);
    }
    mbq_buffer_queue_close(qe);
    mbq_buffer_queue_close(qf);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- reclaim of a killed holder wakes a blocked allocate ---------------------------- */

static int holder(int cmd, int rep, void *arg)
{
    (void)arg;
    struct hmsg m;
    CREQUIRE(hmsg_next(cmd, &m) == 0);
    mbq_client *c = h_connect(&D, "holder");
    CREQUIRE(c);
    mbq_pool *pool;
    CREQUIRE(mbq_pool_open(c, "fl/c/pool", &pool) == 0);
    mbq_buffer b;
    int n = 0;
    while (mbq_pool_allocate(pool, 8, &b) == 0)
        n++;
    struct hmsg r = hmsg_op(OP_GO);
    r.v[0] = n;
    hmsg_reply(rep, &r);
    hmsg_next(cmd, &m); /* until killed */
    return 0;
}

static void allocate_wait_woken_by_reclaim(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool;
    mbq_buffer_queue *q;
    mbq_pool_options po = h_pool_opts(4096, 3);
    REQUIRE(mbq_pool_create(c, "fl/c/pool", &po, &pool) == 0);
    mbq_buffer_queue_options qo = h_bq_opts(1, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "fl/c/empty", &qo, &q) == 0);
    struct actor h, w;
    REQUIRE(actor_start(&h, holder, NULL) == 0);
    struct hmsg m = hmsg_op(OP_GO), r;
    REQUIRE(actor_call(&h, &m, &r) == 0);
    CHECK_EQ(r.v[0], 3);
    REQUIRE(actor_start(&w, blocked_call, NULL) == 0);
    m.v[0] = W_ALLOCATE;
    snprintf(m.s, sizeof m.s, "fl/c/empty");
    REQUIRE(actor_call(&w, &m, &r) == 0);
    CHECK(h_wait_asleep(w.pid));
    uint64_t t0 = h_now_ns();
    actor_kill(&h);
    CHECK_EQ(actor_recv(&w, &r, H_HANG_MS), 0);
    CHECK_STATUS(r.status, 0);
    printf("allocate_wait returned %.1f ms after its holder was killed (mbqd's reclaim)\n",
           (double)((uint64_t)r.v[1] - t0) / 1e6);
    CHECK_ACTOR_OK(&w);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- the validation callback set while enqueues run ---------------------------------- */

static int tag_a, tag_b;
static _Atomic long vc_mismatch, vc_calls;
static _Atomic bool vc_stop;
static _Atomic long vc_sets;

static int validate_a(mbq_buffer_queue *q, mbq_buffer b, void *refcon)
{
    (void)q, (void)b;
    atomic_fetch_add(&vc_calls, 1);
    if (refcon != &tag_a)
        atomic_fetch_add(&vc_mismatch, 1);
    return 0;
}

static int validate_b(mbq_buffer_queue *q, mbq_buffer b, void *refcon)
{
    (void)q, (void)b;
    atomic_fetch_add(&vc_calls, 1);
    if (refcon != &tag_b)
        atomic_fetch_add(&vc_mismatch, 1);
    return 0;
}

static void *vc_setter(void *arg)
{
    mbq_buffer_queue *q = arg;
    while (!atomic_load(&vc_stop)) {
        mbq_buffer_queue_set_validation_callback(q, validate_a, &tag_a);
        mbq_buffer_queue_set_validation_callback(q, validate_b, &tag_b);
        atomic_fetch_add(&vc_sets, 2);
    }
    return NULL;
}

/* Every enqueue's callback gets the refcon set with it: a set never hands
 * an enqueue a callback with another set's refcon (and, under TSan, the
 * two do not race). */
static void validation_callback_set_during_enqueues(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool;
    mbq_buffer_queue *q;
    mbq_pool_options po = h_pool_opts(4096, 4);
    REQUIRE(mbq_pool_create(c, "fl/v/pool", &po, &pool) == 0);
    mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "fl/v/q", &qo, &q) == 0);
    mbq_buffer b;
    REQUIRE(mbq_pool_allocate(pool, 8, &b) == 0);
    REQUIRE(mbq_buffer_queue_enqueue(q, b) == 0); /* binds the pool */
    mbq_buffer out;
    REQUIRE(mbq_buffer_queue_dequeue_and_retain(q, &out) == 0);
    mbq_buffer_release(out);
    pthread_t th;
    atomic_store(&vc_stop, false);
    REQUIRE(pthread_create(&th, NULL, vc_setter, q) == 0);
    uint64_t deadline = h_now_ns() + 30ull * 1000000000ull;
    while (atomic_load(&vc_sets) == 0 && h_now_ns() < deadline)
        sched_yield();
    for (int i = 0; i < 20000; i++) {
        CHECK_STATUS(mbq_buffer_queue_enqueue(q, b), 0);
        if (mbq_buffer_queue_dequeue_and_retain(q, &out) == 0)
            mbq_buffer_release(out);
    }
    atomic_store(&vc_stop, true);
    pthread_join(th, NULL);
    printf("validation: %ld sets, %ld callbacks, %ld with another set's refcon\n",
           atomic_load(&vc_sets), atomic_load(&vc_calls), atomic_load(&vc_mismatch));
    CHECK(atomic_load(&vc_calls) > 0);
    CHECK_EQ(atomic_load(&vc_mismatch), 0);
    mbq_buffer_release(b);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- a cap on the blocks one client holds ---------------------------------------- */

/* A consumer that holds frames (a lookahead) capped at 2 of a 4-block pool:
 * its third allocation fails with -EDQUOT at once (also the blocking one),
 * a release lets it allocate again, and the producer in another process
 * still finds blocks. */
static int cap_producer(int cmd, int rep, void *arg)
{
    (void)arg;
    struct hmsg m;
    CREQUIRE(hmsg_next(cmd, &m) == 0);
    mbq_client *c = h_connect(&D, "cap-producer");
    CREQUIRE(c);
    mbq_pool *pool;
    CREQUIRE(mbq_pool_open(c, "fl/cap/pool", &pool) == 0);
    mbq_buffer b[2];
    struct hmsg r = hmsg_op(OP_GO);
    r.status = mbq_pool_allocate_wait(pool, 8, 5 * SEC, &b[0]);
    if (r.status == 0)
        r.status = mbq_pool_allocate_wait(pool, 8, 5 * SEC, &b[1]);
    hmsg_reply(rep, &r);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static void hold_limit_per_client(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "capped");
    REQUIRE(c);
    mbq_pool *pool;
    mbq_pool_options po = h_pool_opts(4096, 4);
    REQUIRE(mbq_pool_create(c, "fl/cap/pool", &po, &pool) == 0);
    CHECK_STATUS(mbq_pool_set_hold_limit(pool, 2), 0);
    mbq_buffer b[3];
    CHECK_STATUS(mbq_pool_allocate(pool, 8, &b[0]), 0);
    CHECK_STATUS(mbq_pool_allocate(pool, 8, &b[1]), 0);
    uint64_t held = 0;
    CHECK_STATUS(mbq_pool_get_held(pool, &held), 0);
    CHECK_EQ(held, 2);
    CHECK_STATUS(mbq_pool_allocate(pool, 8, &b[2]), -EDQUOT);
    uint64_t t0 = h_now_ns();
    CHECK_STATUS(mbq_pool_allocate_wait(pool, 8, 10 * SEC, &b[2]), -EDQUOT);
    CHECK(h_now_ns() - t0 < 5ull * 1000000000ull); /* at once, not after the timeout */
    /* A retained reference counts as held too. */
    CHECK_STATUS(mbq_buffer_release(b[1]), 0);
    CHECK_STATUS(mbq_buffer_retain(b[0]), 0);
    CHECK_STATUS(mbq_pool_allocate(pool, 8, &b[2]), -EDQUOT);
    CHECK_STATUS(mbq_buffer_release(b[0]), 0);
    CHECK_STATUS(mbq_pool_allocate(pool, 8, &b[1]), 0);
    /* The other two blocks are still there for another client. */
    struct actor p;
    REQUIRE(actor_start(&p, cap_producer, NULL) == 0);
    struct hmsg go = hmsg_op(OP_GO), r;
    CHECK_EQ(actor_call(&p, &go, &r), 0);
    CHECK_STATUS(r.status, 0);
    CHECK_ACTOR_OK(&p);
    CHECK_STATUS(mbq_pool_set_hold_limit(pool, 0), 0);
    CHECK_STATUS(mbq_pool_allocate(pool, 8, &b[2]), 0); /* no cap: the producer's are free */
    mbq_buffer_release(b[0]);
    mbq_buffer_release(b[1]);
    mbq_buffer_release(b[2]);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(back_pressure_without_failures), CASE(hold_limit_per_client), CASE(validation_callback_set_during_enqueues),
           CASE(cancel_stops_blocked_calls_in_other_processes),
           CASE(allocate_wait_woken_by_reclaim))
