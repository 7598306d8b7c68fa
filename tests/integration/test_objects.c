/* Objects by name across processes: several client processes create, open,
 * use and unlink buffer queues, simple queues and pools through mbqd;
 * mbq_list and mbq_stat reflect them; an unlinked object stays usable while
 * it is open; exclusive creation fails with -EEXIST; invalid names give
 * -EINVAL everywhere a name is taken. */
#include "harness.h"

#include <dlfcn.h>

enum {
    OP_CREATE_ALL = 1,
    OP_OPEN_ALL,
    OP_CLOSE_ALL,
    OP_UNLINK_ALL,
    OP_ENQUEUE,
    OP_DEQUEUE,
    OP_CREATE_EXCL,
    OP_CREATE_AGAIN,
    OP_SQ_PUT,
    OP_SQ_GET,
    OP_UNLINK,
    OP_CREATE_NEW_Q,
    OP_OPEN_POOL_AND_CYCLE,
    OP_CLOSE_OLD_Q,
    OP_WRONG_KIND,
    OP_DISCONNECT,
};

static struct mbqd D;

/* ---- one process's view of a set of objects -------------------------------- */

struct objs {
    mbq_client *c;
    mbq_buffer_queue *bq;
    mbq_simple_queue *sq;
    mbq_pool *pool;
    mbq_buffer_queue *bq2; /* a second queue object (same or other name) */
};

static void objs_close(struct objs *o)
{
    mbq_buffer_queue_close(o->bq);
    mbq_buffer_queue_close(o->bq2);
    mbq_simple_queue_close(o->sq);
    mbq_pool_close(o->pool);
    o->bq = o->bq2 = NULL;
    o->sq = NULL;
    o->pool = NULL;
}

/* Names are passed in m->s as "prefix": objects prefix/bq, prefix/sq, prefix/pool. */
static void name_of(char *out, size_t n, const char *prefix, const char *what)
{
    snprintf(out, n, "%s/%s", prefix, what);
}

static int put_payload(mbq_pool *pool, mbq_buffer_queue *q, const char *text, mbq_buffer *kept)
{
    mbq_buffer b = {0};
    int r = mbq_pool_allocate(pool, 4096, &b);
    if (r != 0)
        return r;
    size_t cap = 0;
    char *data = mbq_buffer_get_data(b, &cap);
    if (!data || cap < 4096) {
        mbq_buffer_release(b);
        return -EFAULT;
    }
    snprintf(data, cap, "%s", text);
    mbq_buffer_set_data_size(b, strlen(text) + 1);
    mbq_buffer_set_timing(b, h_time(1, 30), h_time(1, 30), h_time(1, 30));
    r = mbq_buffer_queue_enqueue(q, b);
    if (kept && r == 0)
        *kept = b;
    else
        mbq_buffer_release(b);
    return r;
}

/* Dequeues (bounded wait) and compares the payload with text. */
static int take_payload(mbq_buffer_queue *q, const char *text)
{
    mbq_buffer b = {0};
    int r = mbq_buffer_queue_dequeue_wait(q, 10 * 1000000000ll, &b);
    if (r != 0)
        return r;
    const char *data = mbq_buffer_get_data(b, NULL);
    int ok = data && strcmp(data, text) == 0 && mbq_buffer_get_data_size(b) == strlen(text) + 1;
    if (!ok)
        fprintf(stderr, "payload mismatch: got '%s', want '%s'\n", data ? data : "(null)", text);
    mbq_buffer_release(b);
    return ok ? 0 : -EBADMSG;
}

/* A generic object-using client process. */
static int objects_actor(int cmd, int rep, void *arg)
{
    const char *cname = arg;
    struct objs o = {0};
    o.c = h_connect(&D, cname);
    CREQUIRE(o.c);
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        char n1[600], n2[600], n3[600];
        name_of(n1, sizeof n1, m.s, "bq");
        name_of(n2, sizeof n2, m.s, "sq");
        name_of(n3, sizeof n3, m.s, "pool");
        switch (m.op) {
        case OP_CREATE_ALL: {
            mbq_pool_options po = h_pool_opts(4096, 8);
            mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
            r.v[0] = mbq_pool_create(o.c, n3, &po, &o.pool);
            r.v[1] = mbq_buffer_queue_create(o.c, n1, &qo, &o.bq);
            r.v[2] = mbq_simple_queue_create(o.c, n2, 16, NULL, &o.sq);
            if (o.sq) {
                r.v[3] = mbq_simple_queue_enqueue(o.sq, 11);
                r.v[3] |= mbq_simple_queue_enqueue(o.sq, 22);
                r.v[3] |= mbq_simple_queue_enqueue(o.sq, 33);
            } else {
                r.v[3] = -1;
            }
            r.v[4] = (o.pool && o.bq) ? put_payload(o.pool, o.bq, "hello from A", NULL) : -1;
            break;
        }
        case OP_OPEN_ALL:
            r.v[0] = mbq_pool_open(o.c, n3, &o.pool);
            r.v[1] = mbq_buffer_queue_open(o.c, n1, &o.bq);
            r.v[2] = mbq_simple_queue_open(o.c, n2, &o.sq);
            break;
        case OP_CLOSE_ALL:
            objs_close(&o);
            break;
        case OP_UNLINK_ALL:
            r.v[0] = mbq_unlink(o.c, n3);
            r.v[1] = mbq_unlink(o.c, n1);
            r.v[2] = mbq_unlink(o.c, n2);
            break;
        case OP_UNLINK:
            r.status = mbq_unlink(o.c, m.s);
            break;
        case OP_ENQUEUE:
            r.status = (o.pool && o.bq) ? put_payload(o.pool, o.bq, m.s, NULL) : -1;
            break;
        case OP_DEQUEUE:
            r.status = o.bq ? take_payload(o.bq, m.s) : -1;
            break;
        case OP_SQ_PUT:
            r.status = o.sq ? mbq_simple_queue_enqueue(o.sq, (uint64_t)m.v[0]) : -1;
            break;
        case OP_SQ_GET:
            r.v[0] = o.sq ? (int64_t)mbq_simple_queue_dequeue(o.sq) : -1;
            r.v[1] = o.sq ? mbq_simple_queue_get_count(o.sq) : -1;
            r.v[2] = o.sq ? mbq_simple_queue_get_capacity(o.sq) : -1;
            break;
        case OP_CREATE_EXCL: {
            /* exclusive creation of the three names; out stays NULL on failure */
            mbq_pool_options po = h_pool_opts(4096, 4);
            po.exclusive = true;
            mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
            qo.exclusive = true;
            mbq_simple_queue_options so = h_sq_opts(0, true);
            mbq_pool *p = NULL;
            mbq_buffer_queue *q = NULL;
            mbq_simple_queue *s = NULL;
            r.v[0] = mbq_pool_create(o.c, n3, &po, &p);
            r.v[1] = mbq_buffer_queue_create(o.c, n1, &qo, &q);
            r.v[2] = mbq_simple_queue_create(o.c, n2, 4, &so, &s);
            if (r.v[0] == 0)
                o.pool = p;
            else
                r.v[3] |= p != NULL;
            if (r.v[1] == 0)
                o.bq = q;
            else
                r.v[3] |= (q != NULL) << 1;
            if (r.v[2] == 0)
                o.sq = s;
            else
                r.v[3] |= (s != NULL) << 2;
            break;
        }
        case OP_CREATE_AGAIN: {
            /* non-exclusive creation of an existing name opens it */
            mbq_simple_queue_options so = h_sq_opts(0, false);
            r.v[0] = mbq_simple_queue_create(o.c, n2, 4, &so, &o.sq);
            mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
            r.v[1] = mbq_buffer_queue_create(o.c, n1, &qo, &o.bq);
            mbq_pool_options po = h_pool_opts(4096, 4);
            r.v[2] = mbq_pool_create(o.c, n3, &po, &o.pool);
            break;
        }
        case OP_WRONG_KIND: {
            /* opening a name as the wrong kind fails and returns nothing */
            mbq_pool *p = NULL;
            mbq_simple_queue *s = NULL;
            mbq_buffer_queue *q = NULL;
            r.v[0] = mbq_pool_open(o.c, n1, &p);
            r.v[1] = mbq_simple_queue_open(o.c, n3, &s);
            r.v[2] = mbq_buffer_queue_open(o.c, n2, &q);
            mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
            mbq_buffer_queue *q2 = NULL;
            r.v[3] = mbq_buffer_queue_create(o.c, n2, &qo, &q2);
            r.v[4] = (p != NULL) | (s != NULL) << 1 | (q != NULL) << 2 | (q2 != NULL) << 3;
            if (p)
                mbq_pool_close(p);
            if (s)
                mbq_simple_queue_close(s);
            if (q)
                mbq_buffer_queue_close(q);
            if (q2)
                mbq_buffer_queue_close(q2);
            break;
        }
        case OP_CREATE_NEW_Q: {
            /* keeps the current queue as bq2 and creates a new one under n1 */
            mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
            qo.exclusive = true;
            o.bq2 = o.bq;
            o.bq = NULL;
            r.status = mbq_buffer_queue_create(o.c, n1, &qo, &o.bq);
            if (r.status == 0)
                r.v[0] = put_payload(o.pool, o.bq, "in the new queue", NULL);
            r.v[1] = o.bq2 ? mbq_buffer_queue_get_buffer_count(o.bq2) : -1;
            break;
        }
        case OP_OPEN_POOL_AND_CYCLE: {
            /* opens the pool if needed, then enqueues and dequeues through
             * the (old) queue bq */
            if (!o.pool)
                r.v[0] = mbq_pool_open(o.c, n3, &o.pool);
            r.v[1] = o.pool && o.bq ? put_payload(o.pool, o.bq, "cycle", NULL) : -1;
            r.v[2] = o.bq ? take_payload(o.bq, "cycle") : -1;
            r.v[3] = o.bq ? mbq_buffer_queue_get_buffer_count(o.bq) : -1;
            break;
        }
        case OP_CLOSE_OLD_Q:
            mbq_buffer_queue_close(o.bq2);
            o.bq2 = NULL;
            break;
        case OP_DISCONNECT:
            objs_close(&o);
            mbq_disconnect(o.c);
            o.c = NULL;
            break;
        default:
            r.status = -ENOSYS;
        }
        hmsg_reply(rep, &r);
    }
    objs_close(&o);
    mbq_disconnect(o.c);
    return 0;
}

static struct hmsg cmd_s(int op, const char *s)
{
    struct hmsg m = hmsg_op(op);
    snprintf(m.s, sizeof m.s, "%s", s);
    return m;
}

static const mbq_object_info *find_info(const mbq_object_info *v, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].name, name))
            return &v[i];
    return NULL;
}

static bool stat_has_pid(const mbq_object_info *info, pid_t pid)
{
    for (uint32_t i = 0; i < info->client_count && i < 32; i++)
        if (info->clients[i].pid == (uint32_t)pid)
            return true;
    return false;
}

/* ---- cases ---------------------------------------------------------------- */

static void create_open_use_unlink_across_processes(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    struct actor a, b;
    REQUIRE(actor_start(&a, objects_actor, "client-A") == 0);
    REQUIRE(actor_start(&b, objects_actor, "client-B") == 0);
    mbq_client *c = h_connect(&D, "observer");
    REQUIRE(c);

    struct hmsg r;
    struct hmsg m = cmd_s(OP_CREATE_ALL, "objs");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.v[0], 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    CHECK_STATUS(r.v[3], 0);
    CHECK_STATUS(r.v[4], 0);

    /* list and stat see the three objects with their configuration */
    static mbq_object_info infos[8];
    int n = h_list(c, "objs/", infos, 8);
    CHECK_EQ(n, 3);
    if (n == 3) {
        const mbq_object_info *ib = find_info(infos, n, "objs/bq");
        const mbq_object_info *is = find_info(infos, n, "objs/sq");
        const mbq_object_info *ip = find_info(infos, n, "objs/pool");
        CHECK(ib && ib->kind == MBQ_OBJECT_BUFFER_QUEUE);
        CHECK(is && is->kind == MBQ_OBJECT_SIMPLE_QUEUE);
        CHECK(ip && ip->kind == MBQ_OBJECT_POOL);
        if (ib && is && ip) {
            CHECK(ib->object_id != is->object_id && is->object_id != ip->object_id &&
                  ib->object_id != ip->object_id);
        }
    }
    CHECK_EQ(h_list(c, "objs/b", infos, 8), 1);
    CHECK_EQ(h_list(c, "nomatch/", infos, 8), 0);
    /* more objects than room: the count is still the total */
    int all = h_list(c, NULL, infos, 1);
    CHECK_EQ(all, 3);

    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "objs/bq", &info), 0);
    CHECK_EQ(info.kind, MBQ_OBJECT_BUFFER_QUEUE);
    CHECK(!strcmp(info.name, "objs/bq"));
    CHECK_EQ(info.owner_uid, getuid());
    CHECK_EQ(info.owner_gid, getgid());
    CHECK_EQ(info.mode & 07777, 0600);
    CHECK_EQ(info.capacity, 8);
    CHECK_EQ(info.order, MBQ_ORDER_FIFO);
    CHECK_EQ(info.full_policy, MBQ_FULL_FAIL);
    CHECK_EQ(info.count, 1);
    CHECK_EQ(info.enqueued, 1);
    CHECK_EQ(info.open_count, 1);
    CHECK(info.segment_size > 0);
    CHECK(stat_has_pid(&info, a.pid));

    CHECK_STATUS(h_stat(c, "objs/pool", &info), 0);
    CHECK_EQ(info.kind, MBQ_OBJECT_POOL);
    CHECK_EQ(info.block_size, 4096);
    CHECK_EQ(info.block_count, 8);
    CHECK_EQ(info.blocks_used, 1); /* the buffer in the queue */
    CHECK_EQ(info.allocations, 1);
    CHECK_EQ(info.frees, 0);
    CHECK(!info.invalidated);
    CHECK_EQ(info.mode & 07777, 0600);

    CHECK_STATUS(h_stat(c, "objs/sq", &info), 0);
    CHECK_EQ(info.kind, MBQ_OBJECT_SIMPLE_QUEUE);
    CHECK_EQ(info.sq_capacity, 16);
    CHECK_EQ(info.sq_count, 3);

    CHECK_STATUS(h_stat(c, "objs/nothing", &info), -ENOENT);

    /* B opens everything by name and uses it */
    m = cmd_s(OP_OPEN_ALL, "objs");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.v[0], 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    CHECK_STATUS(h_stat(c, "objs/bq", &info), 0);
    CHECK_EQ(info.open_count, 2);
    CHECK_EQ(info.client_count, 2);
    CHECK(stat_has_pid(&info, a.pid));
    CHECK(stat_has_pid(&info, b.pid));

    m = cmd_s(OP_SQ_GET, "objs");
    for (int i = 1; i <= 3; i++) {
        REQUIRE(actor_call(&b, &m, &r) == 0);
        CHECK_EQ(r.v[0], 11 * i);
        CHECK_EQ(r.v[1], 3 - i);
        CHECK_EQ(r.v[2], 16);
    }
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_EQ(r.v[0], 0); /* empty */

    m = cmd_s(OP_DEQUEUE, "hello from A");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    m = cmd_s(OP_ENQUEUE, "from B");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    m = cmd_s(OP_DEQUEUE, "from B");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);

    CHECK_STATUS(h_stat(c, "objs/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.allocations, 2);
    CHECK_EQ(info.frees, 2);
    CHECK_STATUS(h_stat(c, "objs/bq", &info), 0);
    CHECK_EQ(info.count, 0);
    CHECK_EQ(info.enqueued, 2);
    CHECK_EQ(info.dequeued, 2);

    /* A closes: the objects stay (not unlinked), B still has them open */
    m = cmd_s(OP_CLOSE_ALL, "objs");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(h_stat(c, "objs/bq", &info), 0);
    CHECK_EQ(info.open_count, 1);
    CHECK(!stat_has_pid(&info, a.pid));
    CHECK_EQ(h_list(c, "objs/", infos, 8), 3);

    /* B unlinks all three: gone from the namespace */
    m = cmd_s(OP_UNLINK_ALL, "objs");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.v[0], 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    CHECK_STATUS(h_stat(c, "objs/bq", &info), -ENOENT);
    CHECK_STATUS(h_stat(c, "objs/sq", &info), -ENOENT);
    CHECK_STATUS(h_stat(c, "objs/pool", &info), -ENOENT);
    REQUIRE(actor_call(&b, &m, &r) == 0); /* unlinking again */
    CHECK_STATUS(r.v[0], -ENOENT);
    CHECK_STATUS(r.v[1], -ENOENT);
    CHECK_STATUS(r.v[2], -ENOENT);
    mbq_simple_queue *sq = NULL;
    CHECK_STATUS(mbq_simple_queue_open(c, "objs/sq", &sq), -ENOENT);
    CHECK(sq == NULL);

    m = cmd_s(OP_CLOSE_ALL, "objs");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_EQ(h_list(c, "objs/", infos, 8), 0);

    CHECK_ACTOR_OK(&a);
    CHECK_ACTOR_OK(&b);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

static void objects_outlive_their_creator(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    struct actor a, b;
    REQUIRE(actor_start(&a, objects_actor, "creator") == 0);
    REQUIRE(actor_start(&b, objects_actor, "later") == 0);
    mbq_client *c = h_connect(&D, "observer");
    REQUIRE(c);
    struct hmsg r, m = cmd_s(OP_CREATE_ALL, "keep");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.v[4], 0);
    /* the creator disconnects and exits */
    m = cmd_s(OP_DISCONNECT, "keep");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_ACTOR_OK(&a);

    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "keep/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 1); /* the queue's reference survives its producer */
    CHECK_EQ(info.open_count, 0);

    /* a new process opens them by name and finds their contents */
    m = cmd_s(OP_OPEN_ALL, "keep");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    m = cmd_s(OP_SQ_GET, "keep");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_EQ(r.v[0], 11);
    m = cmd_s(OP_DEQUEUE, "hello from A");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    m = cmd_s(OP_UNLINK_ALL, "keep");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.v[0], 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    CHECK_ACTOR_OK(&b);
    static mbq_object_info infos[4];
    CHECK_EQ(h_list(c, "keep/", infos, 4), 0);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* The consumer maps the pool of a buffer it dequeued without opening the
 * pool by name. */
static void consumer_needs_no_pool_open(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    struct actor a;
    REQUIRE(actor_start(&a, objects_actor, "producer") == 0);
    struct hmsg r, m = cmd_s(OP_CREATE_ALL, "implicit");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.v[4], 0);
    mbq_client *c = h_connect(&D, "consumer");
    REQUIRE(c);
    mbq_buffer_queue *q = NULL;
    REQUIRE(mbq_buffer_queue_open(c, "implicit/bq", &q) == 0);
    mbq_buffer b = {0};
    CHECK_STATUS(mbq_buffer_queue_dequeue_and_retain(q, &b), 0);
    CHECK(mbq_buffer_is_valid(b));
    const char *data = mbq_buffer_get_data(b, NULL);
    CHECK(data && !strcmp(data, "hello from A"));
    CHECK_EQ(mbq_buffer_get_data_size(b), strlen("hello from A") + 1);
    mbq_time dts, pts, dur;
    CHECK_STATUS(mbq_buffer_get_timing(b, &dts, &pts, &dur), 0);
    CHECK_TIME(pts, h_time(1, 30));
    CHECK_STATUS(mbq_buffer_release(b), 0);
    mbq_buffer_queue_close(q);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "implicit/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.frees, 1);
    mbq_disconnect(c);
    CHECK_ACTOR_OK(&a);
    CHECK_MBQD_STOP(&D);
}

static void unlink_while_open(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    struct actor a, b;
    REQUIRE(actor_start(&a, objects_actor, "A") == 0);
    REQUIRE(actor_start(&b, objects_actor, "B") == 0);
    mbq_client *c = h_connect(&D, "observer");
    REQUIRE(c);
    struct hmsg r, m = cmd_s(OP_CREATE_ALL, "u");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.v[1], 0);
    m = cmd_s(OP_DEQUEUE, "hello from A");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);

    /* B opens the objects too */
    mbq_buffer_queue *q = NULL;
    m = cmd_s(OP_OPEN_ALL, "u");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.v[1], 0);

    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "u/bq", &info), 0);
    uint64_t old_id = info.object_id;

    /* A unlinks the queue while both have it open */
    m = cmd_s(OP_UNLINK, "u/bq");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_STATUS(h_stat(c, "u/bq", &info), -ENOENT);
    CHECK_STATUS(mbq_buffer_queue_open(c, "u/bq", &q), -ENOENT);
    CHECK(q == NULL);
    CHECK_STATUS(mbq_unlink(c, "u/bq"), -ENOENT);

    /* still usable by both */
    m = cmd_s(OP_ENQUEUE, "after unlink");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    m = cmd_s(OP_DEQUEUE, "after unlink");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);

    /* the name is free again: a new, distinct queue */
    m = cmd_s(OP_CREATE_NEW_Q, "u");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_STATUS(r.v[0], 0);
    CHECK_EQ(r.v[1], 0); /* the old queue did not get the new buffer */
    CHECK_STATUS(h_stat(c, "u/bq", &info), 0);
    CHECK_EQ(info.count, 1);
    CHECK_EQ(info.enqueued, 1);
    uint64_t new_id = info.object_id;
    CHECK(new_id != old_id);

    /* A closes its handle of the old queue; B keeps using it */
    m = cmd_s(OP_CLOSE_OLD_Q, "u");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    m = cmd_s(OP_OPEN_POOL_AND_CYCLE, "u");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.v[0], 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    CHECK_EQ(r.v[3], 0);

    /* unlinking the pool while A and B hold it open and a buffer sits in
     * the new queue: allocation and the queued buffer keep working */
    m = cmd_s(OP_UNLINK, "u/pool");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    m = cmd_s(OP_OPEN_POOL_AND_CYCLE, "u");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    m = cmd_s(OP_DEQUEUE, "in the new queue");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);

    m = cmd_s(OP_CLOSE_ALL, "u");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    REQUIRE(actor_call(&a, &m, &r) == 0);
    /* left under u/: the new queue and the simple queue; not the unlinked
     * pool, not the unlinked queue */
    static mbq_object_info infos[8];
    int n = h_list(c, "u/", infos, 8);
    CHECK_EQ(n, 2);
    for (int i = 0; n != 2 && i < n && i < 8; i++)
        fprintf(stderr, "  listed: %s (kind %d, id %llu, open %u)\n", infos[i].name,
                infos[i].kind, (unsigned long long)infos[i].object_id, infos[i].open_count);
    const mbq_object_info *nq = find_info(infos, n, "u/bq");
    CHECK(nq && nq->kind == MBQ_OBJECT_BUFFER_QUEUE && nq->object_id == new_id);
    CHECK(find_info(infos, n, "u/sq") != NULL);
    CHECK(find_info(infos, n, "u/pool") == NULL);
    CHECK_ACTOR_OK(&a);
    CHECK_ACTOR_OK(&b);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* A queue that is destroyed (unlinked and closed by everyone) with buffers
 * still in it releases their references: the blocks return to the pool. */
static void destroyed_queue_releases_its_buffers(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    struct actor a;
    REQUIRE(actor_start(&a, objects_actor, "A") == 0);
    mbq_client *c = h_connect(&D, "observer");
    REQUIRE(c);
    struct hmsg r, m = cmd_s(OP_CREATE_ALL, "gone");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.v[4], 0);
    m = cmd_s(OP_ENQUEUE, "second");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "gone/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 2);
    /* unlinked while open, then closed */
    m = cmd_s(OP_UNLINK, "gone/bq");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    m = cmd_s(OP_CLOSE_ALL, "gone");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_EQ(h_wait_pool_used(c, "gone/pool", 0, 2000), 0);
    CHECK_STATUS(h_stat(c, "gone/pool", &info), 0);
    CHECK_EQ(info.allocations, info.frees);
    /* closed, then unlinked */
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    REQUIRE(mbq_pool_open(c, "gone/pool", &pool) == 0);
    CHECK_STATUS(h_stat(c, "gone/pool", &info), 0);
    uint32_t base = info.blocks_used; /* 0, unless the first half leaked */
    mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "gone/bq2", &qo, &q) == 0);
    CHECK_STATUS(put_payload(pool, q, "x", NULL), 0);
    CHECK_STATUS(put_payload(pool, q, "y", NULL), 0);
    CHECK_STATUS(put_payload(pool, q, "z", NULL), 0);
    mbq_buffer_queue_close(q);
    CHECK_EQ(h_wait_pool_used(c, "gone/pool", base + 3, 2000), base + 3); /* not destroyed yet */
    CHECK_STATUS(mbq_unlink(c, "gone/bq2"), 0);
    CHECK_EQ(h_wait_pool_used(c, "gone/pool", base, 2000), base);
    mbq_pool_close(pool);
    CHECK_ACTOR_OK(&a);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

static void exclusive_create(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    struct actor a, b;
    REQUIRE(actor_start(&a, objects_actor, "A") == 0);
    REQUIRE(actor_start(&b, objects_actor, "B") == 0);
    struct hmsg r, m = cmd_s(OP_CREATE_EXCL, "x");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.v[0], 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    /* the same names, exclusively, from another process */
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.v[0], -EEXIST);
    CHECK_STATUS(r.v[1], -EEXIST);
    CHECK_STATUS(r.v[2], -EEXIST);
    CHECK_EQ(r.v[3], 0); /* nothing returned on failure */
    /* and from the creator itself */
    m = cmd_s(OP_CREATE_EXCL, "x");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.v[0], -EEXIST);
    CHECK_STATUS(r.v[1], -EEXIST);
    CHECK_STATUS(r.v[2], -EEXIST);

    /* non-exclusive creation opens the existing objects: same queue */
    m = cmd_s(OP_CREATE_AGAIN, "x");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.v[0], 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    m = hmsg_op(OP_SQ_PUT);
    m.v[0] = 4242;
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    m = cmd_s(OP_SQ_GET, "x");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_EQ(r.v[0], 4242);
    CHECK_EQ(r.v[2], 4);
    m = cmd_s(OP_ENQUEUE, "shared");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    m = cmd_s(OP_DEQUEUE, "shared");
    REQUIRE(actor_call(&a, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);

    /* the wrong kind is refused and returns nothing */
    m = cmd_s(OP_WRONG_KIND, "x");
    REQUIRE(actor_call(&b, &m, &r) == 0);
    CHECK(r.v[0] < 0);
    CHECK(r.v[1] < 0);
    CHECK(r.v[2] < 0);
    CHECK(r.v[3] < 0);
    CHECK_EQ(r.v[4], 0);

    CHECK_ACTOR_OK(&a);
    CHECK_ACTOR_OK(&b);
    CHECK_MBQD_STOP(&D);
}

/* Every call that takes a name refuses bad ones with -EINVAL. */
static int check_bad_name(mbq_client *c, const char *name, const char *label)
{
    int failed_before = check_case_failed;
    check_case_failed = 0;
    mbq_pool_options po = h_pool_opts(4096, 2);
    mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    mbq_pool *p = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_simple_queue *s = NULL;
    mbq_object_info info;
    CHECK_STATUS(mbq_pool_create(c, name, &po, &p), -EINVAL);
    CHECK_STATUS(mbq_buffer_queue_create(c, name, &qo, &q), -EINVAL);
    CHECK_STATUS(mbq_simple_queue_create(c, name, 4, NULL, &s), -EINVAL);
    CHECK_STATUS(mbq_pool_open(c, name, &p), -EINVAL);
    CHECK_STATUS(mbq_buffer_queue_open(c, name, &q), -EINVAL);
    CHECK_STATUS(mbq_simple_queue_open(c, name, &s), -EINVAL);
    CHECK_STATUS(mbq_unlink(c, name), -EINVAL);
    CHECK_STATUS(h_stat(c, name, &info), -EINVAL);
    CHECK(!p && !q && !s);
    if (check_case_failed)
        fprintf(stderr, "  ^ for the name %s\n", label);
    check_case_failed |= failed_before;
    return 0;
}

static void invalid_names(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "names");
    REQUIRE(c);
    char n256[300], n300[301], comp256[300];
    memset(n300, 'a', 300);
    n300[300] = 0;
    /* 256 bytes in components of 15 */
    for (int i = 0; i < 256; i++)
        n256[i] = (i % 16 == 15) ? '/' : 'b';
    n256[256] = 0;
    memset(comp256, 'c', 256);
    comp256[256] = 0;
    static const char *bad[] = {
        "",      "/",       "a//b",     "a/../b",  "../x",  "./x",   "a/.",   "a/..",
        "/a",    "a/",      "..",       ".",       "a b",   "a*b",   "a\\b",  "caf\xc3\xa9",
        "a\tb",  "a:b",     "a\nb",     "x/./y",   "a?b",   "~a",    "a%2f",  "a/b/",
        "//",    "a///b",   "../../etc", "a/b/../../c",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "#%zu \"%.40s\"", i, bad[i]);
        check_bad_name(c, bad[i], label);
    }
    check_bad_name(c, n256, "(256 bytes)");
    check_bad_name(c, n300, "(300 bytes)");
    check_bad_name(c, comp256, "(one 256-byte component)");

    /* the edges of what is valid */
    char n255[300], comp255[300];
    memcpy(n255, n256, 255);
    n255[255] = 0;
    if (n255[254] == '/')
        n255[254] = 'b';
    memset(comp255, 'd', 255);
    comp255[255] = 0;
    const char *good[] = {"a", "A-Z_0.9", "a/b/c", "...", "a..b", ".hidden/x", "x/.y", "-", "_",
                          n255, comp255};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        mbq_simple_queue *s = NULL;
        int r = mbq_simple_queue_create(c, good[i], 4, NULL, &s);
        if (r != 0)
            fprintf(stderr, "valid name #%zu (%zu bytes) refused: %d\n", i, strlen(good[i]), r);
        CHECK_STATUS(r, 0);
        if (s) {
            mbq_object_info info;
            CHECK_STATUS(h_stat(c, good[i], &info), 0);
            CHECK(!strcmp(info.name, good[i]));
            mbq_simple_queue_close(s);
            CHECK_STATUS(mbq_unlink(c, good[i]), 0);
        }
    }
    static mbq_object_info infos[4];
    CHECK_EQ(h_list(c, NULL, infos, 4), 0);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* NULL arguments are errors, not crashes: run in a child so that a crash
 * is reported as such. */
static int null_arguments_child(void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "nulls");
    CREQUIRE(c);
    mbq_pool_options po = h_pool_opts(4096, 2);
    mbq_buffer_queue_options qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    mbq_pool *p = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_simple_queue *s = NULL;
    mbq_object_info info;
    CHECK(mbq_pool_create(c, NULL, &po, &p) < 0);
    CHECK(mbq_buffer_queue_create(c, NULL, &qo, &q) < 0);
    CHECK(mbq_simple_queue_create(c, NULL, 4, NULL, &s) < 0);
    CHECK(mbq_pool_open(c, NULL, &p) < 0);
    CHECK(mbq_buffer_queue_open(c, NULL, &q) < 0);
    CHECK(mbq_simple_queue_open(c, NULL, &s) < 0);
    CHECK(mbq_unlink(c, NULL) < 0);
    CHECK(h_stat(c, NULL, &info) < 0);
    CHECK(mbq_stat(c, "x", NULL) < 0);
    CHECK(mbq_pool_create(c, "n/p", NULL, &p) < 0);
    CHECK(mbq_pool_create(c, "n/p", &po, NULL) != 0);
    CHECK(mbq_buffer_queue_create(c, "n/q", &qo, NULL) != 0);
    CHECK(mbq_unlink(NULL, "n/q") < 0);
    CHECK(!p && !q && !s);
    /* whatever those calls did, nothing by these names was left behind */
    CHECK(h_stat(c, "n/p", &info) == -ENOENT || mbq_unlink(c, "n/p") == 0);
    CHECK(h_stat(c, "n/q", &info) == -ENOENT || mbq_unlink(c, "n/q") == 0);
    mbq_disconnect(c);
    mbq_disconnect(NULL);
    return 0;
}

static void invalid_arguments(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    CHECK_EQ(run_in_child(null_arguments_child, NULL), 0);

    mbq_client *c = h_connect(&D, "options");
    REQUIRE(c);
    mbq_simple_queue *s = NULL;
    CHECK_STATUS(mbq_simple_queue_create(c, "o/sq0", 0, NULL, &s),
                 MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_STATUS(mbq_simple_queue_create(c, "o/sqneg", -1, NULL, &s),
                 MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE);
    CHECK_STATUS(mbq_simple_queue_create(c, "o/sqbig", (1 << 24) + 1, NULL, &s),
                 MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE);
    CHECK(s == NULL);
    mbq_pool *p = NULL;
    mbq_pool_options po = h_pool_opts(0, 4);
    CHECK(mbq_pool_create(c, "o/p0", &po, &p) != 0);
    po = h_pool_opts(4096, 0);
    CHECK(mbq_pool_create(c, "o/p1", &po, &p) != 0);
    CHECK(p == NULL);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(4, (mbq_buffer_queue_order)7);
    CHECK(mbq_buffer_queue_create(c, "o/q0", &qo, &q) != 0);
    qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    qo.full_policy = (mbq_full_policy)9;
    CHECK(mbq_buffer_queue_create(c, "o/q1", &qo, &q) != 0);
    CHECK(q == NULL);
    /* one rule for modes, library and daemon: permission bits only */
    qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    qo.mode = 04644;
    CHECK_STATUS(mbq_buffer_queue_create(c, "o/qsuid", &qo, &q), -EINVAL);
    po = h_pool_opts(4096, 4);
    po.mode = 01777;
    CHECK_STATUS(mbq_pool_create(c, "o/psticky", &po, &p), -EINVAL);
    mbq_simple_queue_options so = {.size = sizeof so, .mode = MBQ_MODE_MASK + 1};
    CHECK_STATUS(mbq_simple_queue_create(c, "o/sqmode", 4, &so, &s), -EINVAL);
    CHECK(q == NULL && p == NULL && s == NULL);
    /* capacity 0 is the default capacity, not unbounded */
    qo = h_bq_opts(0, MBQ_ORDER_FIFO);
    CHECK_STATUS(mbq_buffer_queue_create(c, "o/qdef", &qo, &q), 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "o/qdef", &info), 0);
    CHECK_EQ(info.capacity, MBQ_BUFFER_QUEUE_DEFAULT_CAPACITY);
    mbq_buffer_queue_close(q);
    /* nothing was left behind by the failures */
    static mbq_object_info infos[8];
    CHECK_EQ(h_list(c, "o/", infos, 8), 1);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

static int default_socket_child(void *arg)
{
    (void)arg;
    setenv("MBQ_SOCKET", D.sock, 1);
    char buf[PATH_MAX];
    int n = mbq_default_socket_path(buf, sizeof buf);
    CHECK_EQ(n, (int)strlen(D.sock));
    CHECK(n > 0 && !strcmp(buf, D.sock));
    char small[4];
    CHECK_EQ(mbq_default_socket_path(small, sizeof small), (int)strlen(D.sock));
    mbq_client *c = NULL;
    CHECK_STATUS(mbq_connect(NULL, "via-env", &c), 0);
    if (c) {
        CHECK(mbq_client_fd(c) >= 0);
        CHECK_STATUS(mbq_client_dispatch(c), 0);
        mbq_disconnect(c);
    }
    return 0;
}

static void connection(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/nothing.sock", D.dir);
    mbq_client *c = NULL;
    int r = mbq_connect(path, "x", &c);
    CHECK(r == -ENOENT || r == -ECONNREFUSED);
    CHECK(c == NULL);
    CHECK_EQ(run_in_child(default_socket_child, NULL), 0);
    /* the library exports the public time functions its header declares */
    CHECK(dlsym(RTLD_DEFAULT, "mbq_time_make") != NULL);
    CHECK(dlsym(RTLD_DEFAULT, "mbq_time_compare") != NULL);
    CHECK(mbq_status_string(0) != NULL);
    CHECK(mbq_status_string(MBQ_BQ_ERR_QUEUE_IS_FULL) != NULL);
    CHECK(mbq_status_string(-EACCES) != NULL);
    CHECK(mbq_status_string(123456) != NULL);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(create_open_use_unlink_across_processes), CASE(objects_outlive_their_creator),
           CASE(consumer_needs_no_pool_open), CASE(unlink_while_open),
           CASE(destroyed_queue_releases_its_buffers), CASE(exclusive_create),
           CASE(invalid_names), CASE(invalid_arguments), CASE(connection))
