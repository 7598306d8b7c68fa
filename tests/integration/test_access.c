/* Access and resources: what a hostile user cannot do through mbqd, case
 * by case as docs/MBQD.md's threat model lists it. Real users: the clients
 * are forked children switched to throwaway uids and gids (numbers no
 * account uses; the daemon knows users only by SO_PEERCRED), so the test
 * needs root and is skipped (with the reason) without it.
 *
 *  - forged_release_fifo / forged_release_sorted: user B writes entries
 *    naming user A's held buffer (A's 0600 pool) straight into the shared
 *    memory of B's own queue and unlinks the queue. The daemon releases
 *    only entries of pools bound to the queue: A's blocks_used stays 1 and
 *    A's own release succeeds; B's legitimate entry (its own pool, bound
 *    by the library at enqueue) is released as before.
 *  - forged_consumer: user C may open A's pool (group) and B's queue; it
 *    dequeues a forged entry (-ENOLINK, nothing adopted), resets the queue
 *    with a callback over two more (the callback gets no buffer, nothing is
 *    released): A's block stays held, and the queue's forged_entries
 *    counter says so. forged_unknown_pool: an entry naming no pool at all
 *    is dropped the same way, and the entries behind it flow.
 *  - locked_queue_destroyed: a queue destroyed while its lock names a live
 *    thread (written there by a client) does not stall the daemon; its
 *    entries' references are left alone; biased_queue_destroyed: one whose
 *    lock's bias a live producer keeps (the usual case) is emptied.
 *  - quota_across_connections: objects and bytes are charged to the uid for
 *    as long as they live, whatever connections come and go (test_quota
 *    covers the limits themselves).
 *  - trigger_quota_per_user: a user's triggers over all its connections
 *    are bounded (by --max-objects), however many connections it opens.
 *  - global_cap: --max-total-bytes bounds every user together, root too,
 *    and the refusal's text names the limit (mbq_client_last_error).
 *  - log_flood: thousands of malformed packets from several processes of
 *    one user leave less than LOG_FLOOD_MAX bytes of log, with a line
 *    saying how many were suppressed; log_flood_forged: so do a hundred
 *    queues destroyed with forged entries in them; log_flood_slow_reader:
 *    and connections dropped for not reading their replies;
 *    log_flood_pids: and processes (new pids) that exit holding buffers;
 *    log_flood_triggers: and triggers wiped from a queue's segment.
 *  - visibility: List and Stat show an object to whoever may open it (or
 *    owns it); its clients' pids and uids to its owner and root only;
 *    mbq_usage shows a user its own charge and root everyone's.
 *  - bindings_of_dead_pools: pools bound to a queue and destroyed do not
 *    use up its bindings.
 *  - hidden_by_id: a pool id read from a queue's entry (Open by id,
 *    BindPool's check) gets no answer naming a pool the reader may not
 *    see. */
#include "harness.h"
#include "segments.h"

#include "mbq.pb-c.h"

#include <bq_layout.h>
#include <grp.h>

static struct mbqd D;

#define UID_A 61201
#define UID_B 61202
#define UID_C 61203
#define UID_FLOOD 61250
#define UID_OWNER 61301
#define UID_GROUP 61302
#define UID_OTHER 61303

/* Log bytes allowed for the whole flood test (the daemon's own start and
 * stop lines included); without the rate limit it writes ~0.5 MB. */
#define LOG_FLOOD_MAX (32 * 1024)
#define FLOOD_PROCS 3
#define FLOOD_PACKETS 1000
#define SLOW_CONNS 40
#define HOLDERS 40

static void skip_unless_root(void)
{
    if (geteuid() != 0) {
        printf("# SKIP: needs root to run clients as other uids\n");
        exit(0);
    }
}

static int start_daemon(const char *const *args)
{
    if (mbqd_start_args(&D, args) != 0)
        return -1;
    return chmod(D.dir, 0755); /* the clients run as other users */
}

/* ---- an actor that runs as a given user -------------------------------------- */

struct who {
    const char *name;
    uid_t uid;
    gid_t gid;
};

enum {
    OP_POOL_CREATE = 1, /* s: name, v0: mode, v1: blocks -> status */
    OP_POOL_OPEN,       /* s: name -> status */
    OP_ALLOC,           /* -> status, v0: handle of the held buffer */
    OP_RELEASE,         /* releases the held buffer -> status */
    OP_BQ_CREATE,       /* s: name, v0: mode, v1: order -> status */
    OP_BQ_OPEN,         /* s: name -> status */
    OP_FORGE,           /* v0: pool id, v1: handle, v2: pts -> status (bq_enqueue, no hooks) */
    OP_ENQUEUE_OWN,     /* a buffer of this actor's pool through its queue, kept there */
    OP_DEQUEUE,         /* -> status, s: the error text */
    OP_DEQUEUE_READY,   /* dequeue_if_data_ready -> status */
    OP_RESET,           /* -> status */
    OP_CLOSE_UNLINK,    /* s: name: closes this actor's queue, unlinks it -> status */
    OP_STAT,            /* s: name -> status, v0 blocks_used, v1 client_count, v2 forged,
                           v3 open_count, v4 object_id, v5 first client's pid */
    OP_LIST,            /* s: prefix -> status: count */
    OP_SQ_CREATE,       /* s: name, v0: mode, v1: capacity -> status, s: the error text */
    OP_POOL_CREATE_BIG, /* s: name, v1: blocks of 4096 -> status, s: the error text */
    OP_USAGE,           /* -> status: users, v0: uid, v1: objects, v2: bytes of the first */
    OP_RECONNECT,       /* disconnects and connects again -> status */
    OP_LOCK_QUEUE,      /* writes pid 1 (alive) into the queue's tail lock word -> status */
    OP_SCRIBBLE_TRIGGERS, /* v0: triggers to install, then wiped from the segment -> status */
    OP_TRIGGERS,          /* v0: triggers to install -> status, s: the error text */
};

struct actor_state {
    mbq_client *c;
    mbq_pool *pool;
    mbq_buffer held;
    mbq_buffer_queue *q;
    char qname[64];
};

static int drop_to(uid_t uid, gid_t gid)
{
    if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
        return -errno;
    return getuid() == uid && getgid() == gid ? 0 : -EPERM;
}

static void count_reset(mbq_buffer b, void *refcon)
{
    int64_t *v = refcon;
    v[0]++;
    v[1] += mbq_buffer_is_valid(b);
}

static int user_actor(int cmd, int rep, void *arg)
{
    const struct who *w = arg;
    CREQUIRE(drop_to(w->uid, w->gid) == 0);
    struct actor_state s;
    memset(&s, 0, sizeof s);
    s.c = h_connect(&D, w->name);
    CREQUIRE(s.c);
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        switch (m.op) {
        case OP_POOL_CREATE: {
            mbq_pool_options o = h_pool_opts(4096, (uint32_t)m.v[1]);
            o.mode = (uint32_t)m.v[0];
            o.exclusive = true;
            r.status = mbq_pool_create(s.c, m.s, &o, &s.pool);
            break;
        }
        case OP_POOL_OPEN:
            r.status = mbq_pool_open(s.c, m.s, &s.pool);
            break;
        case OP_ALLOC:
            r.status = s.pool ? mbq_pool_allocate(s.pool, 64, &s.held) : -ENOENT;
            r.v[0] = (int64_t)s.held.handle_;
            break;
        case OP_RELEASE:
            r.status = mbq_buffer_release(s.held);
            s.held = (mbq_buffer){0};
            break;
        case OP_BQ_CREATE: {
            mbq_buffer_queue_options o = h_bq_opts(16, (mbq_buffer_queue_order)m.v[1]);
            o.mode = (uint32_t)m.v[0];
            o.exclusive = true;
            r.status = mbq_buffer_queue_create(s.c, m.s, &o, &s.q);
            snprintf(s.qname, sizeof s.qname, "%.63s", m.s);
            break;
        }
        case OP_BQ_OPEN:
            r.status = mbq_buffer_queue_open(s.c, m.s, &s.q);
            snprintf(s.qname, sizeof s.qname, "%.63s", m.s);
            break;
        case OP_FORGE: {
            mbq_object_info info;
            struct bq q;
            r.status = h_stat(s.c, s.qname, &info);
            if (r.status == 0)
                r.status = test_attach_queue_segment(info.object_id, &q);
            if (r.status == 0) {
                struct bq_entry e;
                memset(&e, 0, sizeof e);
                e.pool_id = (uint32_t)m.v[0];
                e.handle = (uint64_t)m.v[1];
                e.pts = h_time(m.v[2], 1000);
                e.dts = e.pts;
                e.duration = h_time(1, 1000);
                e.size = 64;
                r.status = bq_enqueue(&q, &e); /* no hooks: nothing retained */
                bq_detach(&q);
            }
            break;
        }
        case OP_ENQUEUE_OWN: {
            mbq_buffer b;
            r.status = s.pool && s.q ? mbq_pool_allocate(s.pool, 64, &b) : -ENOENT;
            if (r.status == 0) {
                mbq_buffer_set_timing(b, h_time(m.v[2], 1000), h_time(m.v[2], 1000),
                                      h_time(1, 1000));
                r.status = mbq_buffer_queue_enqueue_and_release(s.q, b);
            }
            break;
        }
        case OP_DEQUEUE: {
            mbq_buffer b;
            r.status = mbq_buffer_queue_dequeue_and_retain(s.q, &b);
            if (r.status == 0)
                mbq_buffer_release(b);
            else
                mbq_client_last_error(s.c, r.s, sizeof r.s);
            break;
        }
        case OP_DEQUEUE_READY: {
            mbq_buffer b;
            r.status = mbq_buffer_queue_dequeue_if_data_ready_and_retain(s.q, &b);
            if (r.status == 0)
                mbq_buffer_release(b);
            break;
        }
        case OP_RESET: /* -> status, v0: buffers the callback got, v1: of them valid */
            r.status = mbq_buffer_queue_reset_with_callback(s.q, count_reset, r.v);
            break;
        case OP_CLOSE_UNLINK:
            mbq_buffer_queue_close(s.q);
            s.q = NULL;
            r.status = mbq_unlink(s.c, m.s);
            break;
        case OP_STAT: {
            mbq_object_info info;
            r.status = h_stat(s.c, m.s, &info);
            if (r.status == 0) {
                r.v[0] = info.blocks_used;
                r.v[1] = info.client_count;
                r.v[2] = (int64_t)info.forged_entries;
                r.v[3] = info.open_count;
                r.v[4] = (int64_t)info.object_id;
                r.v[5] = info.client_count ? info.clients[0].pid : 0;
            }
            break;
        }
        case OP_LIST: {
            mbq_object_info infos[16];
            infos[0].size = sizeof infos[0];
            r.status = mbq_list(s.c, m.s, infos, 16);
            break;
        }
        case OP_SQ_CREATE: {
            mbq_simple_queue *sq = NULL;
            mbq_simple_queue_options o = h_sq_opts((uint32_t)m.v[0], true);
            r.status = mbq_simple_queue_create(s.c, m.s, (int32_t)m.v[1], &o, &sq);
            mbq_simple_queue_close(sq);
            mbq_client_last_error(s.c, r.s, sizeof r.s);
            break;
        }
        case OP_POOL_CREATE_BIG: {
            mbq_pool *p = NULL;
            mbq_pool_options o = h_pool_opts(4096, (uint32_t)m.v[1]);
            o.exclusive = true;
            r.status = mbq_pool_create(s.c, m.s, &o, &p);
            mbq_pool_close(p);
            mbq_client_last_error(s.c, r.s, sizeof r.s);
            break;
        }
        case OP_USAGE: {
            mbq_user_usage u[8];
            u[0].size = sizeof u[0];
            r.status = mbq_usage(s.c, u, 8, NULL, NULL);
            if (r.status > 0) {
                r.v[0] = u[0].uid;
                r.v[1] = u[0].objects;
                r.v[2] = (int64_t)u[0].bytes;
            }
            break;
        }
        case OP_LOCK_QUEUE: {
            mbq_object_info info;
            struct bq q;
            r.status = h_stat(s.c, s.qname, &info);
            if (r.status == 0)
                r.status = test_attach_queue_segment(info.object_id, &q);
            if (r.status == 0) {
                atomic_store(&q.sh->tail.lock.lock.word, 1u);
                bq_detach(&q);
            }
            break;
        }
        case OP_SCRIBBLE_TRIGGERS: {
            mbq_object_info info;
            struct bq q;
            r.status = 0;
            for (int64_t i = 0; i < m.v[0] && r.status == 0; i++) {
                mbq_trigger_token t;
                r.status = mbq_buffer_queue_install_trigger(
                    s.q, MBQ_TRIGGER_WHEN_DATA_BECOMES_READY, h_time(0, 1000), &t);
            }
            if (r.status == 0)
                r.status = h_stat(s.c, s.qname, &info);
            if (r.status == 0)
                r.status = test_attach_queue_segment(info.object_id, &q);
            if (r.status == 0) {
                for (unsigned i = 0; i < BQ_MAX_TRIGGERS; i++)
                    atomic_store(&q.sh->triggers[i].state, 0u);
                bq_detach(&q);
            }
            break;
        }
        case OP_TRIGGERS:
            r.status = 0;
            for (int64_t i = 0; i < m.v[0] && r.status == 0; i++) {
                mbq_trigger_token t;
                r.status = mbq_buffer_queue_install_trigger(
                    s.q, MBQ_TRIGGER_WHEN_DATA_BECOMES_READY, h_time(0, 1000), &t);
            }
            if (r.status != 0)
                mbq_client_last_error(s.c, r.s, sizeof r.s);
            break;
        case OP_RECONNECT:
            mbq_disconnect(s.c);
            s.c = h_connect(&D, w->name);
            r.status = s.c ? 0 : -ENOTCONN;
            break;
        default:
            r.status = -ENOSYS;
        }
        hmsg_reply(rep, &r);
    }
    if (s.held.handle_)
        mbq_buffer_release(s.held);
    mbq_buffer_queue_close(s.q);
    mbq_pool_close(s.pool);
    mbq_disconnect(s.c);
    return 0;
}

static int op(struct actor *a, int opcode, const char *str, int64_t v0, int64_t v1, int64_t v2,
              struct hmsg *out)
{
    struct hmsg m = hmsg_op(opcode), r;
    if (str)
        snprintf(m.s, sizeof m.s, "%s", str);
    m.v[0] = v0;
    m.v[1] = v1;
    m.v[2] = v2;
    if (actor_call(a, &m, &r) != 0)
        return -ETIMEDOUT;
    if (out)
        *out = r;
    return r.status;
}

static int64_t blocks_used(mbq_client *root, const char *pool)
{
    mbq_object_info info;
    return h_stat(root, pool, &info) == 0 ? (int64_t)info.blocks_used : -1;
}

/* ---- forged entries ------------------------------------------------------------ */

static void forged_release(mbq_buffer_queue_order order)
{
    REQUIRE(start_daemon(NULL) == 0);
    mbq_client *root = h_connect(&D, "root");
    REQUIRE(root);
    static const struct who wa = {"A", UID_A, UID_A}, wb = {"B", UID_B, UID_B};
    struct actor a, b;
    REQUIRE(actor_start(&a, user_actor, (void *)&wa) == 0);
    REQUIRE(actor_start(&b, user_actor, (void *)&wb) == 0);
    struct hmsg r;

    /* A holds one buffer of its private pool */
    CHECK_STATUS(op(&a, OP_POOL_CREATE, "a/pool", 0600, 4, 0, NULL), 0);
    CHECK_STATUS(op(&a, OP_ALLOC, NULL, 0, 0, 0, &r), 0);
    int64_t a_handle = r.v[0];
    CHECK_STATUS(op(&a, OP_STAT, "a/pool", 0, 0, 0, &r), 0);
    int64_t a_pool = r.v[4];
    CHECK_EQ(blocks_used(root, "a/pool"), 1);

    /* B cannot open A's pool ... */
    CHECK_STATUS(op(&b, OP_POOL_OPEN, "a/pool", 0, 0, 0, NULL), -EACCES);
    /* ... so it writes entries naming A's buffer into its own queue, next
     * to a legitimate entry of its own pool */
    CHECK_STATUS(op(&b, OP_POOL_CREATE, "b/pool", 0600, 4, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_BQ_CREATE, "b/q", 0600, order, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_ENQUEUE_OWN, NULL, 0, 0, 5, NULL), 0);
    CHECK_STATUS(op(&b, OP_FORGE, NULL, a_pool, a_handle, 3, NULL), 0);
    CHECK_STATUS(op(&b, OP_FORGE, NULL, a_pool, a_handle, 7, NULL), 0);
    CHECK_EQ(blocks_used(root, "b/pool"), 1);

    /* and destroys the queue: the daemon releases B's entry only */
    CHECK_STATUS(op(&b, OP_CLOSE_UNLINK, "b/q", 0, 0, 0, NULL), 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(root, "b/q", &info), -ENOENT);
    CHECK_EQ(blocks_used(root, "b/pool"), 0);
    CHECK_EQ(blocks_used(root, "a/pool"), 1);
    CHECK_STATUS(op(&a, OP_RELEASE, NULL, 0, 0, 0, NULL), 0);
    CHECK_EQ(blocks_used(root, "a/pool"), 0);

    CHECK_ACTOR_OK(&a);
    CHECK_ACTOR_OK(&b);
    mbq_disconnect(root);
    CHECK_MBQD_STOP(&D);
}

static void forged_release_fifo(void)
{
    forged_release(MBQ_ORDER_FIFO);
}

static void forged_release_sorted(void)
{
    forged_release(MBQ_ORDER_PRESENTATION_TIME);
}

static void forged_consumer(void)
{
    REQUIRE(start_daemon(NULL) == 0);
    mbq_client *root = h_connect(&D, "root");
    REQUIRE(root);
    /* C is in A's group: it may open A's 0660 pool */
    static const struct who wa = {"A", UID_A, UID_A}, wb = {"B", UID_B, UID_B},
                            wc = {"C", UID_C, UID_A};
    struct actor a, b, c;
    REQUIRE(actor_start(&a, user_actor, (void *)&wa) == 0);
    REQUIRE(actor_start(&b, user_actor, (void *)&wb) == 0);
    REQUIRE(actor_start(&c, user_actor, (void *)&wc) == 0);
    struct hmsg r;

    CHECK_STATUS(op(&a, OP_POOL_CREATE, "a/pool", 0660, 4, 0, NULL), 0);
    CHECK_STATUS(op(&a, OP_ALLOC, NULL, 0, 0, 0, &r), 0);
    int64_t a_handle = r.v[0];
    CHECK_STATUS(op(&a, OP_STAT, "a/pool", 0, 0, 0, &r), 0);
    int64_t a_pool = r.v[4];

    CHECK_STATUS(op(&b, OP_BQ_CREATE, "b/shared", 0666, MBQ_ORDER_FIFO, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_FORGE, NULL, a_pool, a_handle, 1, NULL), 0);

    /* C opens the queue and A's pool (it may), and dequeues: refused */
    CHECK_STATUS(op(&c, OP_POOL_OPEN, "a/pool", 0, 0, 0, NULL), 0);
    CHECK_STATUS(op(&c, OP_BQ_OPEN, "b/shared", 0, 0, 0, NULL), 0);
    CHECK_STATUS(op(&c, OP_DEQUEUE, NULL, 0, 0, 0, NULL), -ENOLINK);
    CHECK_EQ(blocks_used(root, "a/pool"), 1);
    /* a reset over forged entries releases nothing either */
    CHECK_STATUS(op(&b, OP_FORGE, NULL, a_pool, a_handle, 2, NULL), 0);
    CHECK_STATUS(op(&b, OP_FORGE, NULL, a_pool, a_handle, 3, NULL), 0);
    CHECK_STATUS(op(&c, OP_RESET, NULL, 0, 0, 0, &r), 0);
    CHECK_EQ(r.v[0], 2); /* the callback sees both entries ... */
    CHECK_EQ(r.v[1], 0); /* ... as no buffer */
    CHECK_EQ(blocks_used(root, "a/pool"), 1);
    /* the refusals are counted on the queue */
    CHECK_STATUS(op(&b, OP_STAT, "b/shared", 0, 0, 0, &r), 0);
    CHECK(r.v[2] >= 1);
    /* A's own reference is intact */
    CHECK_STATUS(op(&a, OP_RELEASE, NULL, 0, 0, 0, NULL), 0);
    CHECK_EQ(blocks_used(root, "a/pool"), 0);

    /* data A's group member moves the normal way still flows: C binds A's
     * pool to the queue at its first enqueue and dequeues it back */
    CHECK_STATUS(op(&c, OP_ENQUEUE_OWN, NULL, 0, 0, 4, NULL), 0);
    CHECK_STATUS(op(&c, OP_DEQUEUE, NULL, 0, 0, 0, NULL), 0);
    CHECK_EQ(blocks_used(root, "a/pool"), 0);

    CHECK_ACTOR_OK(&a);
    CHECK_ACTOR_OK(&b);
    CHECK_ACTOR_OK(&c);
    mbq_disconnect(root);
    CHECK_MBQD_STOP(&D);
}

/* An entry naming a pool id that no pool has (written straight into the
 * queue) is bound to nothing: the consumer drops it (-ENOLINK, nothing
 * adopted) and the entries behind it flow; it must not answer -EAGAIN for
 * ever because the pool cannot be asked about or mapped. */
static void forged_unknown_pool(void)
{
    REQUIRE(start_daemon(NULL) == 0);
    mbq_client *root = h_connect(&D, "root");
    REQUIRE(root);
    static const struct who wb = {"B", UID_B, UID_B};
    struct actor b;
    REQUIRE(actor_start(&b, user_actor, (void *)&wb) == 0);
    CHECK_STATUS(op(&b, OP_POOL_CREATE, "b/pool", 0600, 4, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_BQ_CREATE, "b/q", 0600, MBQ_ORDER_FIFO, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_FORGE, NULL, 0x7ffffff0, ((int64_t)1 << 32) | 1, 1, NULL), 0);
    CHECK_STATUS(op(&b, OP_ENQUEUE_OWN, NULL, 0, 0, 2, NULL), 0);
    CHECK_EQ(blocks_used(root, "b/pool"), 1);
    CHECK_STATUS(op(&b, OP_DEQUEUE, NULL, 0, 0, 0, NULL), -ENOLINK);
    CHECK_STATUS(op(&b, OP_DEQUEUE, NULL, 0, 0, 0, NULL), 0); /* the real one */
    CHECK_EQ(blocks_used(root, "b/pool"), 0);
    /* the same through dequeue_if_data_ready, whose readiness check meets
     * the pool first */
    CHECK_STATUS(op(&b, OP_FORGE, NULL, 0x7ffffff0, ((int64_t)1 << 32) | 1, 3, NULL), 0);
    CHECK_STATUS(op(&b, OP_ENQUEUE_OWN, NULL, 0, 0, 4, NULL), 0);
    CHECK_STATUS(op(&b, OP_DEQUEUE_READY, NULL, 0, 0, 0, NULL), -ENOLINK);
    CHECK_STATUS(op(&b, OP_DEQUEUE_READY, NULL, 0, 0, 0, NULL), 0);
    CHECK_EQ(blocks_used(root, "b/pool"), 0);
    CHECK_ACTOR_OK(&b);
    mbq_disconnect(root);
    CHECK_MBQD_STOP(&D);
}

static void locked_queue_destroyed(void)
{
    REQUIRE(start_daemon(NULL) == 0);
    mbq_client *root = h_connect(&D, "root");
    REQUIRE(root);
    static const struct who wb = {"B", UID_B, UID_B};
    struct actor b;
    REQUIRE(actor_start(&b, user_actor, (void *)&wb) == 0);
    CHECK_STATUS(op(&b, OP_POOL_CREATE, "b/pool", 0600, 4, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_BQ_CREATE, "b/locked", 0600, MBQ_ORDER_FIFO, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_ENQUEUE_OWN, NULL, 0, 0, 1, NULL), 0);
    CHECK_STATUS(op(&b, OP_LOCK_QUEUE, NULL, 0, 0, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_CLOSE_UNLINK, "b/locked", 0, 0, 0, NULL), 0);
    /* the daemon still answers, and left the entry's reference alone */
    mbq_object_info info;
    CHECK_STATUS(h_stat(root, "b/locked", &info), -ENOENT);
    CHECK_EQ(blocks_used(root, "b/pool"), 1);
    CHECK(mbqd_alive(&D));
    CHECK_ACTOR_OK(&b);
    mbq_disconnect(root);
    CHECK_MBQD_STOP(&D);
}

/* The usual case next to it: the last producer keeps its queue lock's bias
 * (it took the lock many times in a row) and lives on after closing the
 * queue; the queue's entries still go back to their pool. */
static void biased_queue_destroyed(void)
{
    REQUIRE(start_daemon(NULL) == 0);
    mbq_client *root = h_connect(&D, "root");
    REQUIRE(root);
    static const struct who wb = {"B", UID_B, UID_B};
    struct actor b;
    REQUIRE(actor_start(&b, user_actor, (void *)&wb) == 0);
    CHECK_STATUS(op(&b, OP_POOL_CREATE, "b/pool", 0600, 8, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_BQ_CREATE, "b/biased", 0600, MBQ_ORDER_FIFO, 0, NULL), 0);
    for (int i = 0; i < 200; i++) {
        CHECK_STATUS(op(&b, OP_ENQUEUE_OWN, NULL, 0, 0, i, NULL), 0);
        CHECK_STATUS(op(&b, OP_DEQUEUE, NULL, 0, 0, 0, NULL), 0);
    }
    for (int i = 0; i < 3; i++)
        CHECK_STATUS(op(&b, OP_ENQUEUE_OWN, NULL, 0, 0, 300 + i, NULL), 0);
    CHECK_EQ(blocks_used(root, "b/pool"), 3);
    CHECK_STATUS(op(&b, OP_CLOSE_UNLINK, "b/biased", 0, 0, 0, NULL), 0);
    CHECK_EQ(blocks_used(root, "b/pool"), 0);
    CHECK_ACTOR_OK(&b);
    mbq_disconnect(root);
    CHECK_MBQD_STOP(&D);
}

/* Ids read from a queue name pools; the daemon's answers about a pool the
 * reader may not see must not tell its name (List would not show it). */
static void hidden_by_id(void)
{
    REQUIRE(start_daemon(NULL) == 0);
    static const struct who wa = {"A", UID_A, UID_A}, wx = {"X", UID_B, UID_B};
    struct actor a, x;
    REQUIRE(actor_start(&a, user_actor, (void *)&wa) == 0);
    REQUIRE(actor_start(&x, user_actor, (void *)&wx) == 0);
    struct hmsg r;
    CHECK_STATUS(op(&a, OP_POOL_CREATE, "a/secret-pool", 0600, 4, 0, NULL), 0);
    CHECK_STATUS(op(&a, OP_STAT, "a/secret-pool", 0, 0, 0, &r), 0);
    int64_t a_pool = r.v[4];
    /* A's open queue carries a buffer of its private pool (bound by A) */
    CHECK_STATUS(op(&a, OP_BQ_CREATE, "a/open-q", 0666, MBQ_ORDER_FIFO, 0, NULL), 0);
    CHECK_STATUS(op(&a, OP_ENQUEUE_OWN, NULL, 0, 0, 1, NULL), 0);
    /* X may take the entry but not open its pool (Open by id) */
    CHECK_STATUS(op(&x, OP_BQ_OPEN, "a/open-q", 0, 0, 0, NULL), 0);
    CHECK_STATUS(op(&x, OP_DEQUEUE, NULL, 0, 0, 0, &r), -EACCES);
    printf("# open by id: %s\n", r.s);
    CHECK(strstr(r.s, "secret") == NULL);
    /* X writes the pool's id into its own queue and asks (BindPool) */
    CHECK_STATUS(op(&x, OP_BQ_CREATE, "x/q", 0600, MBQ_ORDER_FIFO, 0, NULL), 0);
    CHECK_STATUS(op(&x, OP_FORGE, NULL, a_pool, 1, 1, NULL), 0);
    CHECK_STATUS(op(&x, OP_DEQUEUE, NULL, 0, 0, 0, &r), -ENOLINK);
    printf("# bind check: %s\n", r.s);
    CHECK(strstr(r.s, "secret") == NULL);
    CHECK_ACTOR_OK(&a);
    CHECK_ACTOR_OK(&x);
    CHECK_MBQD_STOP(&D);
}

/* A queue's bindings are bounded (1024 pools); pools that are gone do not
 * count, or whoever may open a shared queue could fill them with pools it
 * creates and destroys and lock out every other producer. */
static void bindings_of_dead_pools(void)
{
    REQUIRE(start_daemon(NULL) == 0);
    mbq_client *c = h_connect(&D, "binder");
    REQUIRE(c);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "bind/q", &qo, &q) == 0);
    for (int i = 0; i < 1100; i++) {
        mbq_pool *p = NULL;
        mbq_pool_options po = h_pool_opts(4096, 1);
        po.exclusive = true;
        mbq_buffer b;
        REQUIRE(mbq_pool_create(c, "bind/p", &po, &p) == 0);
        REQUIRE(mbq_pool_allocate(p, 64, &b) == 0);
        int r = mbq_buffer_queue_enqueue_and_release(q, b);
        if (r != 0) {
            printf("# enqueue of pool %d: %d\n", i, r);
            CHECK_STATUS(r, 0);
            mbq_buffer_release(b);
        } else {
            CHECK_STATUS(mbq_buffer_queue_dequeue_and_retain(q, &b), 0);
            mbq_buffer_release(b);
        }
        mbq_pool_close(p);
        REQUIRE(mbq_unlink(c, "bind/p") == 0);
        if (r != 0)
            break;
    }
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- resources ------------------------------------------------------------------ */

static void quota_across_connections(void)
{
    static const char *const args[] = {"--max-objects", "3", NULL};
    REQUIRE(start_daemon(args) == 0);
    static const struct who wa = {"A", UID_A, UID_A};
    struct actor a[2];
    REQUIRE(actor_start(&a[0], user_actor, (void *)&wa) == 0);
    REQUIRE(actor_start(&a[1], user_actor, (void *)&wa) == 0);
    struct hmsg r;
    /* reconnecting between creations, and from two connections at once */
    CHECK_STATUS(op(&a[0], OP_SQ_CREATE, "qa/0", 0600, 4, 0, NULL), 0);
    CHECK_STATUS(op(&a[0], OP_RECONNECT, NULL, 0, 0, 0, NULL), 0);
    CHECK_STATUS(op(&a[0], OP_SQ_CREATE, "qa/1", 0600, 4, 0, NULL), 0);
    CHECK_STATUS(op(&a[1], OP_SQ_CREATE, "qa/2", 0600, 4, 0, NULL), 0);
    CHECK_STATUS(op(&a[0], OP_RECONNECT, NULL, 0, 0, 0, NULL), 0);
    CHECK_STATUS(op(&a[0], OP_SQ_CREATE, "qa/3", 0600, 4, 0, &r), -EDQUOT);
    CHECK(strstr(r.s, "--max-objects 3") != NULL);
    CHECK_STATUS(op(&a[1], OP_SQ_CREATE, "qa/3", 0600, 4, 0, NULL), -EDQUOT);
    CHECK_STATUS(op(&a[1], OP_USAGE, NULL, 0, 0, 0, &r), 1);
    CHECK_EQ(r.v[0], UID_A);
    CHECK_EQ(r.v[1], 3);
    CHECK_ACTOR_OK(&a[0]);
    CHECK_ACTOR_OK(&a[1]);
    CHECK_MBQD_STOP(&D);
}

/* Triggers are descriptors the daemon keeps: a user has at most
 * --max-objects of them over all its connections, not --max-triggers per
 * connection times however many connections it opens. */
static void trigger_quota_per_user(void)
{
    static const char *const args[] = {"--max-objects", "3", "--max-triggers", "2", NULL};
    REQUIRE(start_daemon(args) == 0);
    static const struct who wb = {"B", UID_B, UID_B}, wc = {"C", UID_C, UID_C};
    struct actor b[3], c;
    for (int i = 0; i < 3; i++)
        REQUIRE(actor_start(&b[i], user_actor, (void *)&wb) == 0);
    REQUIRE(actor_start(&c, user_actor, (void *)&wc) == 0);
    struct hmsg r;
    CHECK_STATUS(op(&b[0], OP_BQ_CREATE, "b/tq", 0600, MBQ_ORDER_FIFO, 0, NULL), 0);
    CHECK_STATUS(op(&b[1], OP_BQ_OPEN, "b/tq", 0, 0, 0, NULL), 0);
    CHECK_STATUS(op(&b[2], OP_BQ_OPEN, "b/tq", 0, 0, 0, NULL), 0);
    CHECK_STATUS(op(&b[0], OP_TRIGGERS, NULL, 2, 0, 0, NULL), 0);
    CHECK_STATUS(op(&b[1], OP_TRIGGERS, NULL, 1, 0, 0, NULL), 0);
    CHECK_STATUS(op(&b[1], OP_TRIGGERS, NULL, 1, 0, 0, &r), -EDQUOT);
    CHECK(strstr(r.s, "--max-objects 3") != NULL);
    CHECK_STATUS(op(&b[2], OP_TRIGGERS, NULL, 1, 0, 0, NULL), -EDQUOT);
    /* another user is not affected */
    CHECK_STATUS(op(&c, OP_BQ_CREATE, "c/tq", 0600, MBQ_ORDER_FIFO, 0, NULL), 0);
    CHECK_STATUS(op(&c, OP_TRIGGERS, NULL, 2, 0, 0, NULL), 0);
    /* a connection that goes takes its triggers, and gives the room back
     * (once the daemon has seen it go: b[1]'s one trigger is left) */
    CHECK_ACTOR_OK(&b[0]);
    mbq_client *root = h_connect(&D, "root");
    REQUIRE(root);
    mbq_object_info info;
    uint64_t deadline = h_now_ns() + (uint64_t)H_HANG_MS * 1000000ull;
    while (h_stat(root, "b/tq", &info) == 0 && info.triggers != 1 && h_now_ns() < deadline)
        h_pause_us(200);
    CHECK_EQ(info.triggers, 1);
    mbq_disconnect(root);
    CHECK_STATUS(op(&b[2], OP_TRIGGERS, NULL, 2, 0, 0, NULL), 0);
    CHECK_ACTOR_OK(&b[1]);
    CHECK_ACTOR_OK(&b[2]);
    CHECK_ACTOR_OK(&c);
    CHECK_MBQD_STOP(&D);
}

static void global_cap(void)
{
    /* each 512-page pool is a little over 2 MiB; per user no limit */
    static const char *const args[] = {"--max-bytes", "0", "--max-total-bytes", "5M", NULL};
    REQUIRE(start_daemon(args) == 0);
    mbq_client *root = h_connect(&D, "root");
    REQUIRE(root);
    static const struct who wa = {"A", UID_A, UID_A}, wb = {"B", UID_B, UID_B};
    struct actor a, b;
    REQUIRE(actor_start(&a, user_actor, (void *)&wa) == 0);
    REQUIRE(actor_start(&b, user_actor, (void *)&wb) == 0);
    struct hmsg r;
    CHECK_STATUS(op(&a, OP_POOL_CREATE_BIG, "cap/a", 0, 512, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_POOL_CREATE_BIG, "cap/b", 0, 512, 0, NULL), 0);
    CHECK_STATUS(op(&b, OP_POOL_CREATE_BIG, "cap/b2", 0, 512, 0, &r), -EDQUOT);
    CHECK(strstr(r.s, "--max-total-bytes") != NULL);
    /* root is bound by it as well */
    mbq_pool *p = NULL;
    mbq_pool_options po = h_pool_opts(4096, 512);
    CHECK_STATUS(mbq_pool_create(root, "cap/root", &po, &p), -EDQUOT);
    char why[400];
    CHECK(strstr(mbq_client_last_error(root, why, sizeof why), "--max-total-bytes") != NULL);
    /* room comes back when an object goes */
    CHECK_STATUS(mbq_unlink(root, "cap/a"), 0);
    CHECK_STATUS(op(&b, OP_POOL_CREATE_BIG, "cap/b2", 0, 512, 0, NULL), 0);
    CHECK_ACTOR_OK(&a);
    CHECK_ACTOR_OK(&b);
    mbq_disconnect(root);
    CHECK_MBQD_STOP(&D);
}

static int flood_child(void *arg)
{
    (void)arg;
    CREQUIRE(drop_to(UID_FLOOD, UID_FLOOD) == 0);
    for (int i = 0; i < FLOOD_PACKETS; i++) {
        int fd = h_connect_raw(D.sock);
        CREQUIRE(fd >= 0);
        static const char garbage[] = "\xff\xff\xff\xff not a request";
        CREQUIRE(send(fd, garbage, sizeof garbage, 0) == (ssize_t)sizeof garbage);
        /* the daemon answers once and hangs up */
        char buf[4096];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        while (poll(&p, 1, H_HANG_MS) == 1 && recv(fd, buf, sizeof buf, 0) > 0) {
        }
        close(fd);
    }
    return 0;
}

/* Starts mbqd with its log (stderr) going to a file of that name in
 * $TMPDIR; its path in path. */
static int start_daemon_logged(const char *name, char *path, size_t path_len)
{
    snprintf(path, path_len, "%s/%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", name);
    int log_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0)
        return -1;
    int saved = dup(STDERR_FILENO);
    if (saved < 0) {
        close(log_fd);
        return -1;
    }
    fflush(stderr);
    if (dup2(log_fd, STDERR_FILENO) != STDERR_FILENO) {
        close(log_fd);
        close(saved);
        return -1;
    }
    static const char *const args[] = {"--log-target", "stderr", NULL};
    int started = start_daemon(args);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(log_fd);
    return started;
}

/* The most lines of one kind the rate limit lets one user write since t0:
 * 10 per window of 10 s begun (the slack covers a window begun before). */
static long log_lines_allowed(uint64_t t0)
{
    return 10 * (long)((h_now_ns() - t0) / 10000000000ull + 2);
}

/* Lines of the log at path that contain both strings (b may be NULL). */
static long log_lines_with(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[4096];
    long n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return n;
}

static void log_flood(void)
{
    char log_path[PATH_MAX];
    REQUIRE(start_daemon_logged("mbqd-flood.log", log_path, sizeof log_path) == 0);

    pid_t kids[FLOOD_PROCS];
    for (int i = 0; i < FLOOD_PROCS; i++) {
        fflush(NULL);
        kids[i] = fork();
        REQUIRE(kids[i] >= 0);
        if (kids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            _exit(flood_child(NULL) ? 1 : check_case_failed);
        }
    }
    for (int i = 0; i < FLOOD_PROCS; i++)
        CHECK_EQ(h_wait_pid(kids[i], 120000), 0);
    CHECK(mbqd_alive(&D));
    CHECK_MBQD_STOP(&D);

    struct stat st;
    REQUIRE(stat(log_path, &st) == 0);
    printf("# %d malformed packets from %d processes of one user: %lld bytes of log\n",
           FLOOD_PROCS * FLOOD_PACKETS, FLOOD_PROCS, (long long)st.st_size);
    CHECK(st.st_size < LOG_FLOOD_MAX);
    CHECK(log_lines_with(log_path, "suppressed", "uid 61250") >= 1);
    /* limited, not silenced */
    CHECK(log_lines_with(log_path, "not a valid mbq.v1.Request", NULL) >= 1);
    unlink(log_path);
}

/* What the daemon finds when it destroys a user's queue — entries naming
 * unbound pools — is that user's doing: limited like its other lines,
 * however many queues it makes and destroys. */
static void log_flood_forged(void)
{
    char log_path[PATH_MAX];
    REQUIRE(start_daemon_logged("mbqd-forged.log", log_path, sizeof log_path) == 0);
    uint64_t t0 = h_now_ns();
    static const struct who wb = {"B", UID_B, UID_B};
    struct actor b;
    REQUIRE(actor_start(&b, user_actor, (void *)&wb) == 0);
    enum { QUEUES = 100 };
    for (int i = 0; i < QUEUES; i++) {
        CHECK_STATUS(op(&b, OP_BQ_CREATE, "b/forged", 0600, MBQ_ORDER_FIFO, 0, NULL), 0);
        CHECK_STATUS(op(&b, OP_FORGE, NULL, 999999, 1, 1, NULL), 0);
        CHECK_STATUS(op(&b, OP_CLOSE_UNLINK, "b/forged", 0, 0, 0, NULL), 0);
    }
    CHECK_ACTOR_OK(&b);
    CHECK(mbqd_alive(&D));
    CHECK_MBQD_STOP(&D); /* reports the suppressed windows */
    long lines = log_lines_with(log_path, "entries naming a pool not bound", NULL);
    printf("# %d destroyed queues with a forged entry: %ld lines about them\n", QUEUES, lines);
    CHECK(lines >= 1);
    CHECK(lines <= log_lines_allowed(t0));
    CHECK(log_lines_with(log_path, "suppressed", "uid 61202") >= 1);
    unlink(log_path);
}

/* A connection that sends requests and never reads the replies is
 * disconnected once 256 wait; that costs a line, limited like any other
 * about that user. */
static int slow_child(void *arg)
{
    (void)arg;
    CREQUIRE(drop_to(UID_FLOOD, UID_FLOOD) == 0);
    for (int i = 0; i < SLOW_CONNS; i++) {
        int fd = h_connect_raw(D.sock);
        CREQUIRE(fd >= 0);
        Mbq__V1__Hello h = MBQ__V1__HELLO__INIT;
        h.min_version = 1;
        h.max_version = 1;
        h.client_name = "slow";
        Mbq__V1__Usage u = MBQ__V1__USAGE__INIT;
        Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
        uint8_t buf[256];
        /* until the daemon hangs up (a bound: it must, long before) */
        for (uint64_t id = 1; id < 200000; id++) {
            rq.id = id;
            if (id == 1) {
                rq.body_case = MBQ__V1__REQUEST__BODY_HELLO;
                rq.hello = &h;
            } else {
                rq.body_case = MBQ__V1__REQUEST__BODY_USAGE;
                rq.usage = &u;
            }
            size_t n = mbq__v1__request__pack(&rq, buf);
            if (send(fd, buf, n, MSG_NOSIGNAL) < 0)
                break;
        }
        close(fd);
    }
    return 0;
}

static void log_flood_slow_reader(void)
{
    char log_path[PATH_MAX];
    REQUIRE(start_daemon_logged("mbqd-slow.log", log_path, sizeof log_path) == 0);
    uint64_t t0 = h_now_ns();
    fflush(NULL);
    pid_t kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(slow_child(NULL) ? 1 : check_case_failed);
    }
    CHECK_EQ(h_wait_pid(kid, 120000), 0);
    CHECK(mbqd_alive(&D));
    CHECK_MBQD_STOP(&D);
    long lines = log_lines_with(log_path, "messages wait to be read", NULL);
    printf("# %d connections that do not read: %ld lines about them\n", SLOW_CONNS, lines);
    CHECK(lines >= 1);
    CHECK(lines <= log_lines_allowed(t0));
    CHECK(log_lines_with(log_path, "suppressed", "uid 61250") >= 1);
    unlink(log_path);
}

/* A process of UID_FLOOD that holds a buffer of rl/pool, disconnects,
 * says so on ready, and exits when go says so: the daemon releases its
 * reference when it exits (a line naming its pid only). */
static int holder_child(int ready, int go)
{
    CREQUIRE(drop_to(UID_FLOOD, UID_FLOOD) == 0);
    mbq_client *c = h_connect(&D, "holder");
    CREQUIRE(c);
    mbq_pool *p = NULL;
    mbq_buffer b;
    CREQUIRE(mbq_pool_open(c, "rl/pool", &p) == 0);
    CREQUIRE(mbq_pool_allocate(p, 64, &b) == 0);
    /* hangs up under the library (which would give the reference back):
     * the reference stays with the live process */
    close(mbq_client_fd(c));
    char x = 1;
    CREQUIRE(write(ready, &x, 1) == 1);
    struct pollfd pfd = {.fd = go, .events = POLLIN};
    CREQUIRE(poll(&pfd, 1, H_HANG_MS) == 1);
    return 0;
}

static void log_flood_pids(void)
{
    char log_path[PATH_MAX];
    REQUIRE(start_daemon_logged("mbqd-pids.log", log_path, sizeof log_path) == 0);
    uint64_t t0 = h_now_ns();
    mbq_client *root = h_connect(&D, "root");
    REQUIRE(root);
    mbq_pool *p = NULL;
    mbq_pool_options po = h_pool_opts(4096, 64);
    po.mode = 0666;
    REQUIRE(mbq_pool_create(root, "rl/pool", &po, &p) == 0);
    mbq_pool_close(p);
    for (int i = 0; i < HOLDERS; i++) {
        int ready[2], go[2];
        REQUIRE(pipe2(ready, O_CLOEXEC) == 0 && pipe2(go, O_CLOEXEC) == 0);
        fflush(NULL);
        pid_t kid = fork();
        REQUIRE(kid >= 0);
        if (kid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(ready[0]);
            close(go[1]);
            _exit(holder_child(ready[1], go[0]) ? 1 : check_case_failed);
        }
        close(ready[1]);
        close(go[0]);
        char x;
        CHECK(read(ready[0], &x, 1) == 1);
        /* the daemon has ended its session (and watches the process) */
        mbq_object_info info;
        uint64_t deadline = h_now_ns() + (uint64_t)H_HANG_MS * 1000000ull;
        while (h_stat(root, "rl/pool", &info) == 0 && info.open_count > 0 &&
               h_now_ns() < deadline)
            h_pause_us(200);
        CHECK_EQ(info.open_count, 0);
        close(go[1]);
        close(ready[0]);
        CHECK_EQ(h_wait_pid(kid, 120000), 0);
    }
    CHECK_EQ(h_wait_pool_used(root, "rl/pool", 0, H_HANG_MS), 0);
    mbq_disconnect(root);
    CHECK(mbqd_alive(&D));
    CHECK_MBQD_STOP(&D);
    long lines = log_lines_with(log_path, "exited: released", NULL);
    printf("# %d processes exited holding a buffer: %ld lines about them\n", HOLDERS, lines);
    CHECK(lines >= 1);
    CHECK(lines <= log_lines_allowed(t0));
    CHECK(log_lines_with(log_path, "suppressed", "known by pid only") >= 1);
    unlink(log_path);
}

/* Triggers a client wiped from its queue's segment cost the daemon a line
 * each when it removes them: limited against the queue's owner. */
static void log_flood_triggers(void)
{
    char log_path[PATH_MAX];
    REQUIRE(start_daemon_logged("mbqd-triggers.log", log_path, sizeof log_path) == 0);
    uint64_t t0 = h_now_ns();
    static const struct who wb = {"B", UID_B, UID_B};
    struct actor b;
    REQUIRE(actor_start(&b, user_actor, (void *)&wb) == 0);
    enum { ROUNDS = 10, TRIGGERS = 8 };
    for (int i = 0; i < ROUNDS; i++) {
        CHECK_STATUS(op(&b, OP_BQ_CREATE, "b/trig", 0600, MBQ_ORDER_FIFO, 0, NULL), 0);
        CHECK_STATUS(op(&b, OP_SCRIBBLE_TRIGGERS, NULL, TRIGGERS, 0, 0, NULL), 0);
        CHECK_STATUS(op(&b, OP_CLOSE_UNLINK, "b/trig", 0, 0, 0, NULL), 0);
    }
    CHECK_ACTOR_OK(&b);
    CHECK(mbqd_alive(&D));
    CHECK_MBQD_STOP(&D);
    long lines = log_lines_with(log_path, "was already gone from the segment", NULL);
    printf("# %d wiped triggers: %ld lines about them\n", ROUNDS * TRIGGERS, lines);
    CHECK(lines >= 1);
    CHECK(lines <= log_lines_allowed(t0));
    CHECK(log_lines_with(log_path, "suppressed", "uid 61202") >= 1);
    unlink(log_path);
}

/* ---- visibility ----------------------------------------------------------------- */

static void visibility(void)
{
    REQUIRE(start_daemon(NULL) == 0);
    mbq_client *root = h_connect(&D, "root");
    REQUIRE(root);
    static const struct who wo = {"owner", UID_OWNER, UID_OWNER},
                            wg = {"group", UID_GROUP, UID_OWNER},
                            wx = {"other", UID_OTHER, UID_OTHER};
    struct actor o, g, x;
    REQUIRE(actor_start(&o, user_actor, (void *)&wo) == 0);
    REQUIRE(actor_start(&g, user_actor, (void *)&wg) == 0);
    REQUIRE(actor_start(&x, user_actor, (void *)&wx) == 0);
    struct hmsg r;
    /* the owner's three queues; it keeps the last one open */
    CHECK_STATUS(op(&o, OP_BQ_CREATE, "vis/q600", 0600, MBQ_ORDER_FIFO, 0, NULL), 0);
    CHECK_STATUS(op(&o, OP_BQ_CREATE, "vis/q660", 0660, MBQ_ORDER_FIFO, 0, NULL), 0);
    CHECK_STATUS(op(&o, OP_BQ_CREATE, "vis/q666", 0666, MBQ_ORDER_FIFO, 0, NULL), 0);

    /* List: what each may open */
    CHECK_STATUS(op(&o, OP_LIST, "vis/", 0, 0, 0, NULL), 3);
    CHECK_STATUS(op(&g, OP_LIST, "vis/", 0, 0, 0, NULL), 2);
    CHECK_STATUS(op(&x, OP_LIST, "vis/", 0, 0, 0, NULL), 1);
    mbq_object_info infos[4];
    infos[0].size = sizeof infos[0];
    CHECK_STATUS(mbq_list(root, "vis/", infos, 4), 3);

    /* Stat: refused where Open would be; client details to owner and root */
    CHECK_STATUS(op(&g, OP_STAT, "vis/q600", 0, 0, 0, NULL), -EACCES);
    CHECK_STATUS(op(&x, OP_STAT, "vis/q660", 0, 0, 0, NULL), -EACCES);
    CHECK_STATUS(op(&g, OP_STAT, "vis/q666", 0, 0, 0, &r), 0);
    CHECK_EQ(r.v[3], 1); /* open by the owner: a count ... */
    CHECK_EQ(r.v[1], 0); /* ... but not who */
    CHECK_STATUS(op(&x, OP_STAT, "vis/q666", 0, 0, 0, &r), 0);
    CHECK_EQ(r.v[1], 0);
    CHECK_STATUS(op(&o, OP_STAT, "vis/q666", 0, 0, 0, &r), 0);
    CHECK_EQ(r.v[1], 1);
    CHECK_EQ(r.v[5], o.pid);
    mbq_object_info info;
    CHECK_STATUS(h_stat(root, "vis/q666", &info), 0);
    CHECK_EQ(info.client_count, 1);
    CHECK_EQ(info.clients[0].uid, UID_OWNER);

    /* usage: one's own line; root sees every user */
    CHECK_STATUS(op(&o, OP_USAGE, NULL, 0, 0, 0, &r), 1);
    CHECK_EQ(r.v[0], UID_OWNER);
    CHECK_EQ(r.v[1], 3);
    CHECK(r.v[2] > 0);
    CHECK_STATUS(op(&x, OP_USAGE, NULL, 0, 0, 0, &r), 1);
    CHECK_EQ(r.v[0], UID_OTHER);
    CHECK_EQ(r.v[1], 0);
    mbq_user_usage u[8];
    u[0].size = sizeof u[0];
    CHECK_STATUS(mbq_usage(root, u, 8, NULL, NULL), 1); /* root owns nothing here */
    CHECK_EQ(u[0].uid, UID_OWNER);

    CHECK_ACTOR_OK(&o);
    CHECK_ACTOR_OK(&g);
    CHECK_ACTOR_OK(&x);
    mbq_disconnect(root);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(skip_unless_root), CASE(forged_release_fifo), CASE(forged_release_sorted),
           CASE(forged_consumer), CASE(forged_unknown_pool), CASE(locked_queue_destroyed),
           CASE(biased_queue_destroyed), CASE(quota_across_connections),
           CASE(trigger_quota_per_user), CASE(global_cap),
           CASE(log_flood), CASE(visibility), CASE(hidden_by_id),
           CASE(log_flood_forged), CASE(log_flood_slow_reader),
           CASE(log_flood_pids), CASE(bindings_of_dead_pools),
           CASE(log_flood_triggers))
