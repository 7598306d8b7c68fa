/* Quotas: mbqd --max-objects 4 --max-triggers 2 (and, separately,
 * --max-bytes). Objects and bytes are charged to the owning user: client A
 * (uid QA) exhausts its objects and client triggers and gets -EDQUOT, with
 * nothing created; client B (another uid), at the same time, still creates
 * objects, installs triggers and moves data; freeing an object or a trigger
 * gives A its room back; another connection of A's uid shares A's quota,
 * before and after A disconnects (its objects still exist), while triggers
 * are per connection. Needs root (to switch the clients to their uids);
 * otherwise skipped. */
#include "harness.h"

#include <grp.h>

#define QA_UID 61101
#define QB_UID 61102

struct quota_who {
    const char *name;
    uid_t uid;
};

static struct mbqd D;

enum {
    Q_CREATE = 1, /* s: name, v0: kind, v1: pool blocks (0: 8) -> status */
    Q_OPEN_BQ,    /* s: name */
    Q_TRIGGER,    /* v0: index of the opened queue; -> status, v1: token */
    Q_REMOVE_TRIGGER, /* v0: queue index, v1: token */
    Q_CLOSE_UNLINK,   /* s: name (closes this process's handle if any, unlinks) */
    Q_DATA,           /* a buffer through the first pool and queue */
};

struct qstate {
    mbq_client *c;
    mbq_buffer_queue *bq[8];
    char bq_name[8][64];
    int nbq;
    mbq_pool *pool[8];
    char pool_name[8][64];
    int npool;
    mbq_simple_queue *sq[8];
    char sq_name[8][64];
    int nsq;
};

static int quota_actor(int cmd, int rep, void *arg)
{
    const struct quota_who *who = arg;
    struct qstate s;
    memset(&s, 0, sizeof s);
    CREQUIRE(setgroups(0, NULL) == 0 && setgid(who->uid) == 0 && setuid(who->uid) == 0);
    s.c = h_connect(&D, who->name);
    CREQUIRE(s.c);
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        switch (m.op) {
        case Q_CREATE:
            switch (m.v[0]) {
            case MBQ_OBJECT_BUFFER_QUEUE: {
                mbq_buffer_queue *q = NULL;
                mbq_buffer_queue_options o = h_bq_opts(8, MBQ_ORDER_FIFO);
                o.exclusive = true;
                o.mode = 0666; /* B installs a trigger on A's queue */
                r.status = mbq_buffer_queue_create(s.c, m.s, &o, &q);
                r.v[1] = q != NULL;
                if (q && s.nbq < 8) {
                    snprintf(s.bq_name[s.nbq], 64, "%.63s", m.s);
                    s.bq[s.nbq++] = q;
                }
                break;
            }
            case MBQ_OBJECT_SIMPLE_QUEUE: {
                mbq_simple_queue *q = NULL;
                mbq_simple_queue_options o = h_sq_opts(0, true);
                r.status = mbq_simple_queue_create(s.c, m.s, 8, &o, &q);
                r.v[1] = q != NULL;
                if (q && s.nsq < 8) {
                    snprintf(s.sq_name[s.nsq], 64, "%.63s", m.s);
                    s.sq[s.nsq++] = q;
                }
                break;
            }
            case MBQ_OBJECT_POOL: {
                mbq_pool *p = NULL;
                mbq_pool_options o = h_pool_opts(4096, m.v[1] ? (uint32_t)m.v[1] : 8);
                o.exclusive = true;
                r.status = mbq_pool_create(s.c, m.s, &o, &p);
                r.v[1] = p != NULL;
                if (p && s.npool < 8) {
                    snprintf(s.pool_name[s.npool], 64, "%.63s", m.s);
                    s.pool[s.npool++] = p;
                }
                break;
            }
            }
            break;
        case Q_OPEN_BQ: {
            mbq_buffer_queue *q = NULL;
            r.status = mbq_buffer_queue_open(s.c, m.s, &q);
            if (q && s.nbq < 8) {
                snprintf(s.bq_name[s.nbq], 64, "%.63s", m.s);
                r.v[0] = s.nbq;
                s.bq[s.nbq++] = q;
            }
            break;
        }
        case Q_TRIGGER: {
            mbq_trigger_token tok = 0;
            int i = (int)m.v[0];
            r.status = i < s.nbq ? mbq_buffer_queue_install_trigger_with_integer_threshold(
                                       s.bq[i], MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN,
                                       m.v[2], &tok)
                                 : -EINVAL;
            r.v[1] = (int64_t)tok;
            break;
        }
        case Q_REMOVE_TRIGGER: {
            int i = (int)m.v[0];
            r.status = i < s.nbq ? mbq_buffer_queue_remove_trigger(s.bq[i], (uint64_t)m.v[1])
                                 : -EINVAL;
            break;
        }
        case Q_CLOSE_UNLINK:
            for (int i = 0; i < s.nsq; i++)
                if (s.sq[i] && !strcmp(s.sq_name[i], m.s)) {
                    mbq_simple_queue_close(s.sq[i]);
                    s.sq[i] = NULL;
                }
            for (int i = 0; i < s.nbq; i++)
                if (s.bq[i] && !strcmp(s.bq_name[i], m.s)) {
                    mbq_buffer_queue_close(s.bq[i]);
                    s.bq[i] = NULL;
                }
            for (int i = 0; i < s.npool; i++)
                if (s.pool[i] && !strcmp(s.pool_name[i], m.s)) {
                    mbq_pool_close(s.pool[i]);
                    s.pool[i] = NULL;
                }
            r.status = mbq_unlink(s.c, m.s);
            break;
        case Q_DATA: {
            mbq_buffer b;
            r.status = -ENOENT;
            if (s.npool && s.nbq && s.pool[0] && s.bq[0]) {
                r.status = mbq_pool_allocate(s.pool[0], 100, &b);
                if (r.status == 0) {
                    r.status = mbq_buffer_queue_enqueue(s.bq[0], b);
                    mbq_buffer_release(b);
                }
                if (r.status == 0) {
                    r.status = mbq_buffer_queue_dequeue_and_retain(s.bq[0], &b);
                    if (r.status == 0)
                        mbq_buffer_release(b);
                }
            }
            break;
        }
        default:
            r.status = -ENOSYS;
        }
        hmsg_reply(rep, &r);
    }
    for (int i = 0; i < s.nbq; i++)
        mbq_buffer_queue_close(s.bq[i]);
    for (int i = 0; i < s.nsq; i++)
        mbq_simple_queue_close(s.sq[i]);
    for (int i = 0; i < s.npool; i++)
        mbq_pool_close(s.pool[i]);
    mbq_disconnect(s.c);
    return 0;
}

static int create(struct actor *a, const char *name, mbq_object_kind kind, int blocks,
                  int64_t *returned)
{
    struct hmsg m = hmsg_op(Q_CREATE), r;
    snprintf(m.s, sizeof m.s, "%s", name);
    m.v[0] = kind;
    m.v[1] = blocks;
    if (actor_call(a, &m, &r) != 0)
        return -ETIMEDOUT;
    if (returned)
        *returned = r.v[1];
    return r.status;
}

static int trigger(struct actor *a, int queue, int64_t threshold, int64_t *token)
{
    struct hmsg m = hmsg_op(Q_TRIGGER), r;
    m.v[0] = queue;
    m.v[2] = threshold;
    if (actor_call(a, &m, &r) != 0)
        return -ETIMEDOUT;
    if (token)
        *token = r.v[1];
    return r.status;
}

static int simple(struct actor *a, int op, const char *s, int64_t v0, int64_t v1)
{
    struct hmsg m = hmsg_op(op), r;
    if (s)
        snprintf(m.s, sizeof m.s, "%s", s);
    m.v[0] = v0;
    m.v[1] = v1;
    if (actor_call(a, &m, &r) != 0)
        return -ETIMEDOUT;
    return r.status;
}

static void object_and_trigger_quotas(void)
{
    static const char *const args[] = {"--max-objects", "4", "--max-triggers", "2", NULL};
    REQUIRE(mbqd_start_args(&D, args) == 0);
    CHECK(chmod(D.dir, 0755) == 0); /* the clients run as other users */
    mbq_client *obs = h_connect(&D, "observer");
    REQUIRE(obs);
    static const struct quota_who wa = {"A", QA_UID}, wb = {"B", QB_UID}, wa2 = {"A2", QA_UID};
    struct actor a, b;
    REQUIRE(actor_start(&a, quota_actor, (void *)&wa) == 0);
    REQUIRE(actor_start(&b, quota_actor, (void *)&wb) == 0);

    /* A: four objects, then -EDQUOT for every kind, with nothing created */
    CHECK_STATUS(create(&a, "qa/bq", MBQ_OBJECT_BUFFER_QUEUE, 0, NULL), 0);
    CHECK_STATUS(create(&a, "qa/pool", MBQ_OBJECT_POOL, 0, NULL), 0);
    CHECK_STATUS(create(&a, "qa/sq0", MBQ_OBJECT_SIMPLE_QUEUE, 0, NULL), 0);
    CHECK_STATUS(create(&a, "qa/sq1", MBQ_OBJECT_SIMPLE_QUEUE, 0, NULL), 0);
    int64_t returned = -1;
    CHECK_STATUS(create(&a, "qa/sq2", MBQ_OBJECT_SIMPLE_QUEUE, 0, &returned), -EDQUOT);
    CHECK_EQ(returned, 0);
    CHECK_STATUS(create(&a, "qa/bq2", MBQ_OBJECT_BUFFER_QUEUE, 0, &returned), -EDQUOT);
    CHECK_EQ(returned, 0);
    CHECK_STATUS(create(&a, "qa/pool2", MBQ_OBJECT_POOL, 0, &returned), -EDQUOT);
    CHECK_EQ(returned, 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(obs, "qa/sq2", &info), -ENOENT);
    CHECK_STATUS(h_stat(obs, "qa/bq2", &info), -ENOENT);
    CHECK_STATUS(h_stat(obs, "qa/pool2", &info), -ENOENT);

    /* A: two triggers, then -EDQUOT */
    int64_t tok_a0 = 0;
    CHECK_STATUS(trigger(&a, 0, 10, &tok_a0), 0);
    CHECK_STATUS(trigger(&a, 0, 11, NULL), 0);
    CHECK_STATUS(trigger(&a, 0, 12, NULL), -EDQUOT);
    CHECK_STATUS(h_stat(obs, "qa/bq", &info), 0);
    CHECK_EQ(info.triggers, 2);

    /* B is not affected: objects, triggers (on its queue and on A's), data */
    CHECK_STATUS(create(&b, "qb/bq", MBQ_OBJECT_BUFFER_QUEUE, 0, NULL), 0);
    CHECK_STATUS(create(&b, "qb/pool", MBQ_OBJECT_POOL, 0, NULL), 0);
    CHECK_STATUS(create(&b, "qb/sq", MBQ_OBJECT_SIMPLE_QUEUE, 0, NULL), 0);
    CHECK_STATUS(simple(&b, Q_DATA, NULL, 0, 0), 0);
    CHECK_STATUS(simple(&b, Q_OPEN_BQ, "qa/bq", 0, 0), 0); /* queue index 1 */
    CHECK_STATUS(trigger(&b, 0, 10, NULL), 0);
    CHECK_STATUS(trigger(&b, 1, 10, NULL), 0);
    /* ... and has a limit of its own */
    CHECK_STATUS(trigger(&b, 0, 11, NULL), -EDQUOT);
    CHECK_STATUS(h_stat(obs, "qa/bq", &info), 0);
    CHECK_EQ(info.triggers, 3);
    /* A's data plane is not limited by the quota */
    CHECK_STATUS(simple(&a, Q_DATA, NULL, 0, 0), 0);

    /* freeing gives room back: a trigger ... */
    CHECK_STATUS(simple(&a, Q_REMOVE_TRIGGER, NULL, 0, tok_a0), 0);
    CHECK_STATUS(trigger(&a, 0, 13, NULL), 0);
    CHECK_STATUS(trigger(&a, 0, 14, NULL), -EDQUOT);
    /* ... and an object (closed and unlinked: gone) */
    CHECK_STATUS(simple(&a, Q_CLOSE_UNLINK, "qa/sq1", 0, 0), 0);
    CHECK_STATUS(create(&a, "qa/sq2", MBQ_OBJECT_SIMPLE_QUEUE, 0, NULL), 0);
    CHECK_STATUS(create(&a, "qa/sq3", MBQ_OBJECT_SIMPLE_QUEUE, 0, NULL), -EDQUOT);

    /* another connection of the same user shares its objects' quota, but
     * has triggers of its own */
    struct actor a2;
    REQUIRE(actor_start(&a2, quota_actor, (void *)&wa2) == 0);
    CHECK_STATUS(create(&a2, "qa2/sq", MBQ_OBJECT_SIMPLE_QUEUE, 0, NULL), -EDQUOT);
    CHECK_STATUS(simple(&a2, Q_OPEN_BQ, "qa/bq", 0, 0), 0);
    CHECK_STATUS(trigger(&a2, 0, 20, NULL), 0);

    CHECK_ACTOR_OK(&a);
    /* A is gone, its objects are not: still charged to its uid */
    CHECK_STATUS(create(&a2, "qa2/sq", MBQ_OBJECT_SIMPLE_QUEUE, 0, NULL), -EDQUOT);
    CHECK_STATUS(simple(&a2, Q_CLOSE_UNLINK, "qa/sq0", 0, 0), 0);
    CHECK_STATUS(create(&a2, "qa2/sq", MBQ_OBJECT_SIMPLE_QUEUE, 0, NULL), 0);
    CHECK_ACTOR_OK(&a2);
    CHECK_ACTOR_OK(&b);
    /* their triggers went with them */
    CHECK_STATUS(h_stat(obs, "qa/bq", &info), 0);
    CHECK_EQ(info.triggers, 0);
    mbq_disconnect(obs);
    CHECK_MBQD_STOP(&D);
}

static void byte_quota(void)
{
    static const char *const args[] = {"--max-bytes", "4194304", NULL};
    REQUIRE(mbqd_start_args(&D, args) == 0);
    CHECK(chmod(D.dir, 0755) == 0); /* the clients run as other users */
    mbq_client *obs = h_connect(&D, "observer");
    REQUIRE(obs);
    static const struct quota_who wa = {"A", QA_UID}, wb = {"B", QB_UID}, wa2 = {"A2", QA_UID};
    struct actor a, b, a2;
    REQUIRE(actor_start(&a, quota_actor, (void *)&wa) == 0);
    REQUIRE(actor_start(&b, quota_actor, (void *)&wb) == 0);
    REQUIRE(actor_start(&a2, quota_actor, (void *)&wa2) == 0);
    /* 512 pages: over 2 MiB; a second one does not fit in 4 MiB */
    CHECK_STATUS(create(&a, "qa/p1", MBQ_OBJECT_POOL, 512, NULL), 0);
    int64_t returned = -1;
    CHECK_STATUS(create(&a, "qa/p2", MBQ_OBJECT_POOL, 512, &returned), -EDQUOT);
    CHECK_EQ(returned, 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(obs, "qa/p2", &info), -ENOENT);
    /* a small one still fits; A's other connection has no more room */
    CHECK_STATUS(create(&a, "qa/p3", MBQ_OBJECT_POOL, 16, NULL), 0);
    CHECK_STATUS(create(&a2, "qa2/p1", MBQ_OBJECT_POOL, 512, NULL), -EDQUOT);
    /* B has its own 4 MiB, and one pool above it is refused outright */
    CHECK_STATUS(create(&b, "qb/p1", MBQ_OBJECT_POOL, 512, NULL), 0);
    CHECK_STATUS(create(&b, "qb/huge", MBQ_OBJECT_POOL, 2048, NULL), -EDQUOT);
    CHECK_STATUS(create(&b, "qb/bq", MBQ_OBJECT_BUFFER_QUEUE, 0, NULL), 0);
    CHECK_STATUS(simple(&b, Q_DATA, NULL, 0, 0), 0);
    /* unlinking returns the bytes */
    CHECK_STATUS(simple(&a, Q_CLOSE_UNLINK, "qa/p1", 0, 0), 0);
    CHECK_STATUS(create(&a, "qa/p2", MBQ_OBJECT_POOL, 512, NULL), 0);
    CHECK_ACTOR_OK(&a);
    /* disconnecting does not: A's pools still exist */
    CHECK_STATUS(create(&a2, "qa2/p1", MBQ_OBJECT_POOL, 512, NULL), -EDQUOT);
    CHECK_ACTOR_OK(&a2);
    CHECK_ACTOR_OK(&b);
    mbq_disconnect(obs);
    CHECK_MBQD_STOP(&D);
}

static void skip_unless_root(void)
{
    if (geteuid() != 0) {
        printf("# SKIP: needs root to run clients as other uids\n");
        exit(0);
    }
}

CHECK_MAIN(CASE(skip_unless_root), CASE(object_and_trigger_quotas), CASE(byte_quota))
