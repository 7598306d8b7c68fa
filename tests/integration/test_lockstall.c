/* Locks in shared memory whose owner does not let go: a client stopped
 * (SIGSTOP) inside a pool lock, a queue's tail lock or its head lock, and
 * owners forged into the lock words (pid 1, mbqd's pid, a dead id, a live
 * client that does not have the object open, the forger's own thread).
 *
 * What a user relies on: mbqd keeps answering list and stat for every
 * object, keeps ageing out other pools and reclaiming other dead clients;
 * a peer's operation on the stalled object fails with -EBUSY in bounded
 * time instead of hanging; once the owner resumes, dies, or is judged not
 * entitled to the lock (the daemon's lock watch), everything works again,
 * and a takeover is counted in stat.
 *
 * The stalled and forging clients connect through libmbq like any other,
 * then reach the lock words through shm/ directly in their own mapping of
 * the segment (found in /proc/self/maps by the object id in its header). */
#include "harness.h"
#include "segments.h"

#include <bq_layout.h>
#include <lock_layout.h>
#include <pool_layout.h>
#include <seg_layout.h>

#include <inttypes.h>
#include <sys/syscall.h>

#define BOUND_MS 10000 /* anything that must answer: generous, for loaded CI */

enum which_lock { L_POOL, L_TAIL, L_HEAD, L_TAIL_BIAS, L_COUNT };
static const char *lock_names[L_COUNT] = {"pool lock", "tail lock", "head lock", "tail bias"};

/* ---- finding the segment in this process -------------------------------- */

static _Atomic uint32_t *lock_word(void *base, enum which_lock w)
{
    if (w == L_POOL)
        return &((struct pool_shared *)base)->lock.word;
    struct bq_shared *sh = base;
    if (w == L_TAIL)
        return &sh->tail.lock.lock.word;
    if (w == L_HEAD)
        return &sh->head.lock.lock.word;
    return &sh->tail.lock.bias;
}

static uint64_t object_id_of(mbq_client *c, const char *name)
{
    mbq_object_info info = {.size = sizeof info};
    return mbq_stat(c, name, &info) == 0 ? info.object_id : 0;
}

/* ---- the objects -------------------------------------------------------- */

struct objs {
    mbq_client *c;
    mbq_pool *pool;  /* the pool that may be stalled */
    mbq_pool *buf;   /* buffers for the queue */
    mbq_pool *other; /* another pool: ages out, a dead client is reclaimed */
    mbq_buffer_queue *q;
    const char *pool_name, *q_name;
};

static int objs_open(struct objs *o, const char *sock, const char *prefix)
{
    static char pn[64], qn[64], bn[64], on[64];
    snprintf(pn, sizeof pn, "%s/pool", prefix);
    snprintf(qn, sizeof qn, "%s/q", prefix);
    snprintf(bn, sizeof bn, "%s/buf", prefix);
    snprintf(on, sizeof on, "%s/other", prefix);
    o->pool_name = pn;
    o->q_name = qn;
    CREQUIRE(mbq_connect(sock, "lockstall", &o->c) == 0);
    mbq_pool_options po = {.size = sizeof po, .block_size = 4096, .block_count = 16, .mode = 0600};
    CREQUIRE(mbq_pool_create(o->c, pn, &po, &o->pool) == 0);
    CREQUIRE(mbq_pool_create(o->c, bn, &po, &o->buf) == 0);
    po.age_out_seconds = 0.05;
    CREQUIRE(mbq_pool_create(o->c, on, &po, &o->other) == 0);
    mbq_buffer_queue_options qo = {.size = sizeof qo, .capacity = 16};
    CREQUIRE(mbq_buffer_queue_create(o->c, qn, &qo, &o->q) == 0);
    return 0;
}

static void objs_close(struct objs *o)
{
    mbq_buffer_queue_close(o->q);
    mbq_pool_close(o->pool);
    mbq_pool_close(o->buf);
    mbq_pool_close(o->other);
    mbq_disconnect(o->c);
}

/* A peer's operation on the object that lock w guards: 0, or its error. */
static int peer_op(struct objs *o, enum which_lock w)
{
    mbq_buffer b;
    int r;
    switch (w) {
    case L_POOL:
        r = mbq_pool_allocate(o->pool, 100, &b);
        if (r == 0)
            mbq_buffer_release(b);
        return r;
    case L_TAIL:
    case L_TAIL_BIAS:
        r = mbq_pool_allocate(o->buf, 100, &b);
        if (r < 0)
            return r;
        r = mbq_buffer_queue_enqueue_and_release(o->q, b);
        if (r < 0) {
            mbq_buffer_release(b);
            return r;
        }
        /* and take it out again, so the queue never fills */
        mbq_buffer d;
        if (mbq_buffer_queue_dequeue_and_retain(o->q, &d) == 0)
            mbq_buffer_release(d);
        return 0;
    case L_HEAD:
        r = mbq_buffer_queue_dequeue_and_retain(o->q, &b);
        if (r == 0) {
            /* put one back for the next try */
            mbq_buffer_queue_enqueue_and_release(o->q, b);
        }
        return r;
    default:
        return -EINVAL;
    }
}

/* ---- the clients that hold or forge ------------------------------------- */

struct holder_arg {
    const char *sock;
    const char *name; /* the object */
    enum which_lock w;
    uint32_t forged;  /* 0: take the lock for real and stop; else this word */
};

static int holder_body(int cmd, int rep, void *arg)
{
    const struct holder_arg *a = arg;
    mbq_client *c;
    CREQUIRE(mbq_connect(a->sock, "holder", &c) == 0);
    mbq_pool *p = NULL;
    mbq_buffer_queue *q = NULL;
    if (a->w == L_POOL)
        CREQUIRE(mbq_pool_open(c, a->name, &p) == 0);
    else
        CREQUIRE(mbq_buffer_queue_open(c, a->name, &q) == 0);
    void *base = test_segment_mapping(object_id_of(c, a->name));
    CREQUIRE(base != NULL);
    _Atomic uint32_t *word = lock_word(base, a->w);
    struct hmsg m = hmsg_op(1);
    if (a->forged) {
        if (a->w == L_TAIL_BIAS)
            atomic_store(&((struct bq_shared *)base)->tail.lock.busy, 1);
        atomic_store(word, a->forged == UINT32_MAX ? slock_self() : a->forged);
        m.v[0] = slock_self();
        hmsg_reply(rep, &m);
        hmsg_next(cmd, &m); /* lives (with the object open) until told */
    } else {
        /* a real holder, as shm/ takes it, stopped inside */
        CREQUIRE(slock_lock((struct slock *)word) >= 0);
        m.v[0] = slock_self();
        hmsg_reply(rep, &m);
        raise(SIGSTOP);
        slock_unlock((struct slock *)word);
        hmsg_reply(rep, &m);
        hmsg_next(cmd, &m);
    }
    if (q)
        mbq_buffer_queue_close(q);
    if (p)
        mbq_pool_close(p);
    mbq_disconnect(c);
    return 0;
}

/* A client that holds a buffer of `other` and waits to be killed. */
static int victim_body(int cmd, int rep, void *arg)
{
    const char *const *names = arg; /* sock, pool name */
    mbq_client *c;
    mbq_pool *p;
    mbq_buffer b;
    CREQUIRE(mbq_connect(names[0], "victim", &c) == 0);
    CREQUIRE(mbq_pool_open(c, names[1], &p) == 0);
    CREQUIRE(mbq_pool_allocate(p, 64, &b) == 0);
    struct hmsg m = hmsg_op(1);
    hmsg_reply(rep, &m);
    hmsg_next(cmd, &m);
    return 0;
}

/* A connected client that opens nothing: its thread id is alive and a
 * client's, but not entitled to any lock. */
static int bystander_body(int cmd, int rep, void *arg)
{
    mbq_client *c;
    CREQUIRE(mbq_connect(arg, "bystander", &c) == 0);
    struct hmsg m = hmsg_op(1);
    m.v[0] = slock_self();
    m.v[1] = mbq_client_id(c);
    hmsg_reply(rep, &m);
    hmsg_next(cmd, &m);
    mbq_disconnect(c);
    return 0;
}

/* ---- checks ------------------------------------------------------------- */

static uint64_t ms_since(uint64_t t0)
{
    return (h_now_ns() - t0) / 1000000u;
}

/* list and stat of every object answer, each within BOUND_MS. */
static void check_daemon_answers(struct objs *o, const char *prefix, const char *what)
{
    mbq_object_info infos[8];
    infos[0].size = sizeof infos[0];
    uint64_t t0 = h_now_ns();
    int n = mbq_list(o->c, prefix, infos, 8);
    uint64_t list_ms = ms_since(t0);
    CHECK_EQ(n, 4);
    CHECK(list_ms < BOUND_MS);
    uint64_t worst = 0;
    for (int i = 0; i < n && i < 8; i++) {
        mbq_object_info info = {.size = sizeof info};
        t0 = h_now_ns();
        CHECK_STATUS(mbq_stat(o->c, infos[i].name, &info), 0);
        uint64_t ms = ms_since(t0);
        CHECK(ms < BOUND_MS);
        if (ms > worst)
            worst = ms;
        if (info.approximate)
            printf("# %s: stat of %s answered with approximate figures\n", what, info.name);
    }
    printf("# %s: list answered in %" PRIu64 " ms, the slowest stat in %" PRIu64 " ms\n", what,
           list_ms, worst);
}

static mbq_object_info stat_of(mbq_client *c, const char *name)
{
    mbq_object_info info = {.size = sizeof info};
    CHECK_STATUS(mbq_stat(c, name, &info), 0);
    return info;
}

/* Retries the peer's operation until it succeeds; every attempt must end
 * within BOUND_MS, and success must come within limit_ms. */
static bool peer_recovers(struct objs *o, enum which_lock w, int limit_ms, int *busy_out)
{
    uint64_t end = h_now_ns() + (uint64_t)limit_ms * 1000000u;
    int busy = 0;
    for (;;) {
        uint64_t t0 = h_now_ns();
        int r = peer_op(o, w);
        CHECK(ms_since(t0) < BOUND_MS);
        if (busy_out)
            *busy_out = busy;
        if (r == 0)
            return true;
        if (r != -EBUSY) {
            fprintf(stderr, "peer op on the %s: %d (%s)\n", lock_names[w], r,
                    mbq_status_string(r));
            return false;
        }
        busy++;
        if (busy_out)
            *busy_out = busy;
        if (h_now_ns() > end)
            return false;
    }
}

/* ---- 1. a client stopped inside each lock ------------------------------- */

static void stalled(struct mbqd *d, enum which_lock w, bool resume)
{
    char prefix[32];
    snprintf(prefix, sizeof prefix, "st%d%d", (int)w, (int)resume);
    struct objs o;
    REQUIRE(objs_open(&o, d->sock, prefix) == 0);
    /* one entry in the queue for the head case */
    mbq_buffer b;
    REQUIRE(mbq_pool_allocate(o.buf, 10, &b) == 0);
    REQUIRE(mbq_buffer_queue_enqueue_and_release(o.q, b) == 0);
    /* a trigger, removed while the queue is stalled */
    mbq_trigger_token tok = 0;
    if (w != L_POOL)
        REQUIRE(mbq_buffer_queue_install_trigger_with_integer_threshold(
                    o.q, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 100, &tok) == 0);

    struct holder_arg ha = {.sock = d->sock, .name = w == L_POOL ? o.pool_name : o.q_name, .w = w};
    struct actor h;
    REQUIRE(actor_start(&h, holder_body, &ha) == 0);
    struct hmsg m;
    REQUIRE(actor_recv(&h, &m, BOUND_MS) == 0);
    siginfo_t si = {0};
    uint64_t dl = h_now_ns() + (uint64_t)BOUND_MS * 1000000u;
    while (waitid(P_PID, (id_t)h.pid, &si, WSTOPPED | WNOHANG) == 0 && si.si_pid == 0 &&
           h_now_ns() < dl)
        h_pause_us(1000);
    REQUIRE(si.si_pid == h.pid && si.si_code == CLD_STOPPED);

    char what[64];
    snprintf(what, sizeof what, "%s held by a stopped client", lock_names[w]);
    check_daemon_answers(&o, prefix, what);

    /* a peer of the stalled object: an error in bounded time, not a hang */
    uint64_t t0 = h_now_ns();
    int r = peer_op(&o, w);
    uint64_t op_ms = ms_since(t0);
    CHECK_STATUS(r, -EBUSY);
    CHECK(op_ms < BOUND_MS);
    printf("# %s: the peer's operation failed with -EBUSY after %" PRIu64 " ms\n", what, op_ms);

    /* the daemon's operations on it: a clear error, or deferred */
    t0 = h_now_ns();
    if (w == L_POOL) {
        CHECK_STATUS(mbq_pool_flush(o.pool), -EBUSY);
    } else {
        mbq_trigger_token t2;
        CHECK_STATUS(mbq_buffer_queue_install_trigger_with_integer_threshold(
                         o.q, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 200, &t2),
                     -EBUSY);
        /* removal is not refused: the segment is updated once it can be */
        CHECK_STATUS(mbq_buffer_queue_remove_trigger(o.q, tok), 0);
    }
    op_ms = ms_since(t0);
    CHECK(op_ms < BOUND_MS);
    printf("# %s: the daemon answered %s in %" PRIu64 " ms\n", what,
           w == L_POOL ? "flush with -EBUSY" : "install with -EBUSY and remove with 0", op_ms);

    /* another pool ages out meanwhile */
    char other[64];
    snprintf(other, sizeof other, "%s/other", prefix);
    uint64_t aged0 = stat_of(o.c, other).aged_out;
    REQUIRE(mbq_pool_allocate(o.other, 10, &b) == 0);
    mbq_buffer_release(b);
    REQUIRE(mbq_pool_flush(o.other) == 0 || true);
    bool aged = false;
    mbq_buffer b2;
    REQUIRE(mbq_pool_allocate(o.other, 10, &b2) == 0); /* from the cache or the list */
    mbq_buffer_release(b2);
    for (dl = h_now_ns() + (uint64_t)BOUND_MS * 1000000u; !aged && h_now_ns() < dl;) {
        aged = stat_of(o.c, other).aged_out > aged0;
        if (!aged)
            h_pause_us(10000);
    }
    CHECK(aged);

    /* and a dead client of another pool is reclaimed */
    const char *vargs[2] = {d->sock, other};
    struct actor v;
    REQUIRE(actor_start(&v, victim_body, vargs) == 0);
    REQUIRE(actor_recv(&v, &m, BOUND_MS) == 0);
    CHECK(stat_of(o.c, other).blocks_used >= 1);
    actor_kill(&v);
    bool reclaimed = false;
    for (dl = h_now_ns() + (uint64_t)BOUND_MS * 1000000u; !reclaimed && h_now_ns() < dl;) {
        reclaimed = stat_of(o.c, other).blocks_used == 0;
        if (!reclaimed)
            h_pause_us(10000);
    }
    CHECK(reclaimed);
    CHECK(mbqd_alive(d));

    /* the holder resumes (and unlocks), or dies inside: either way the
     * peer gets through */
    if (resume) {
        kill(h.pid, SIGCONT);
        CHECK_EQ(actor_recv(&h, &m, BOUND_MS), 0);
    } else {
        actor_kill(&h);
    }
    int busy = 0;
    CHECK(peer_recovers(&o, w, BOUND_MS, &busy));
    if (resume)
        CHECK_ACTOR_OK(&h);
    if (w != L_POOL) { /* the deferred removal reached the segment */
        bool gone = false;
        for (dl = h_now_ns() + (uint64_t)BOUND_MS * 1000000u; !gone && h_now_ns() < dl;) {
            gone = stat_of(o.c, o.q_name).triggers == 0;
            if (!gone)
                h_pause_us(10000);
        }
        CHECK(gone);
    }
    check_daemon_answers(&o, prefix, resume ? "after SIGCONT" : "after SIGKILL");
    objs_close(&o);
}

static void test_stalled_owner(void)
{
    struct mbqd d;
    REQUIRE(mbqd_start(&d) == 0);
    for (int w = L_POOL; w <= L_HEAD; w++) {
        stalled(&d, w, true);
        stalled(&d, w, false);
    }
    CHECK_MBQD_STOP(&d);
}

/* ---- 2. forged owners ----------------------------------------------------- */

static void forged(struct mbqd *d, enum which_lock w, uint32_t word, const char *word_name,
                   bool daemon_repairs)
{
    static int n;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "fo%d", n++);
    struct objs o;
    REQUIRE(objs_open(&o, d->sock, prefix) == 0);
    mbq_buffer b;
    REQUIRE(mbq_pool_allocate(o.buf, 10, &b) == 0);
    REQUIRE(mbq_buffer_queue_enqueue_and_release(o.q, b) == 0);
    const char *name = w == L_POOL ? o.pool_name : o.q_name;
    uint64_t takeovers0 = stat_of(o.c, name).lock_takeovers;

    struct holder_arg ha = {.sock = d->sock, .name = name, .w = w, .forged = word};
    struct actor f;
    REQUIRE(actor_start(&f, holder_body, &ha) == 0);
    struct hmsg m;
    REQUIRE(actor_recv(&f, &m, BOUND_MS) == 0);

    char what[96];
    snprintf(what, sizeof what, "%s forged as %s", lock_names[w], word_name);
    check_daemon_answers(&o, prefix, what);
    /* the peer: errors at first, perhaps, each in bounded time; then through */
    int busy = 0;
    uint64_t t0 = h_now_ns();
    bool ok = peer_recovers(&o, w, daemon_repairs ? 3 * BOUND_MS : 3000, &busy);
    if (daemon_repairs) {
        CHECK(ok);
        printf("# %s: the peer got through after %" PRIu64 " ms (%d x -EBUSY)\n", what,
               ms_since(t0), busy);
    } else {
        /* the forger has the object open: its own thread is entitled, so
         * the lock stays held while it lives; its peers get -EBUSY */
        CHECK(!ok);
        CHECK(busy > 0);
        printf("# %s: the peer kept failing with -EBUSY (%d times) while the forger lives\n",
               what, busy);
    }
    CHECK(mbqd_alive(d));
    hmsg_reply(f.cmd, &m);
    CHECK_ACTOR_OK(&f);
    if (!daemon_repairs) {
        /* the forger is gone: its id is dead, and the lock is recovered */
        CHECK(peer_recovers(&o, w, 3 * BOUND_MS, NULL));
    }
    mbq_object_info after = stat_of(o.c, name);
    /* a dead owner's lock may be recovered by the peer itself, first */
    if (daemon_repairs && word != 0x3ffffff0u && word != (SLOCK_CID | 4000u << SLOCK_CID_SHIFT))
        CHECK(after.lock_takeovers > takeovers0);
    printf("# %s: lock takeovers %" PRIu64 " -> %" PRIu64 "\n", what, takeovers0,
           after.lock_takeovers);
    check_daemon_answers(&o, prefix, "after the forgery");
    objs_close(&o);
}

static void test_forged_owner(void)
{
    struct mbqd d;
    REQUIRE(mbqd_start(&d) == 0);
    struct actor by;
    REQUIRE(actor_start(&by, bystander_body, d.sock) == 0);
    struct hmsg m;
    REQUIRE(actor_recv(&by, &m, BOUND_MS) == 0);
    uint32_t bystander = (uint32_t)m.v[0];
    /* the same client in the client-id form (shm/lock.h) */
    uint32_t bystander_cid = SLOCK_CID | (uint32_t)m.v[1] << SLOCK_CID_SHIFT;
    CHECK(m.v[1] >= 2);
    for (int w = L_POOL; w < L_COUNT; w++) {
        forged(&d, w, 1, "pid 1", true);
        forged(&d, w, (uint32_t)d.pid, "mbqd's pid", true);
        forged(&d, w, bystander, "a client without the object", true);
        if (w != L_TAIL_BIAS) /* a dead bias holder with busy set: as pid 1 */
            forged(&d, w, 0x3ffffff0u, "an id nobody has", true);
        forged(&d, w, bystander_cid, "the client id of a client without the object", true);
        if (w != L_TAIL_BIAS)
            forged(&d, w, SLOCK_CID | 4000u << SLOCK_CID_SHIFT, "a client id nobody has", true);
    }
    forged(&d, L_TAIL, UINT32_MAX, "the forger's own thread", false);
    forged(&d, L_POOL, UINT32_MAX, "the forger's own thread", false);
    hmsg_reply(by.cmd, &m);
    CHECK_ACTOR_OK(&by);
    CHECK_MBQD_STOP(&d);
}

CHECK_MAIN(CASE(test_stalled_owner), CASE(test_forged_owner))
