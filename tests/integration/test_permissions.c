/* Permissions: an object's owner uid/gid and mode bits are checked against
 * the connecting process's credentials (SO_PEERCRED). Opening needs the read
 * and write bits of the caller's class (owner, else group, else others);
 * uid 0 may open anything; refusal is -EACCES, and create-or-open of an
 * existing object is no way around it. Needs root (to create objects as root
 * and switch a child to uid/gid 65534); otherwise the test is skipped. */
#include "harness.h"

#include <grp.h>

static struct mbqd D;

#define NOBODY 65534

struct perm_case {
    const char *name;
    mbq_object_kind kind;
    uint32_t mode;
};

/* Created by root; gid 0. */
static const struct perm_case objects[] = {
    {"perm/sq600", MBQ_OBJECT_SIMPLE_QUEUE, 0600},
    {"perm/sq666", MBQ_OBJECT_SIMPLE_QUEUE, 0666},
    {"perm/sq644", MBQ_OBJECT_SIMPLE_QUEUE, 0644}, /* others may read, not write */
    {"perm/sq662", MBQ_OBJECT_SIMPLE_QUEUE, 0662}, /* others may write, not read */
    {"perm/sq660", MBQ_OBJECT_SIMPLE_QUEUE, 0660}, /* group root */
    {"perm/sq606", MBQ_OBJECT_SIMPLE_QUEUE, 0606}, /* others yes, group root no */
    {"perm/bq600", MBQ_OBJECT_BUFFER_QUEUE, 0600},
    {"perm/bq666", MBQ_OBJECT_BUFFER_QUEUE, 0666},
    {"perm/pool600", MBQ_OBJECT_POOL, 0600},
    {"perm/pool666", MBQ_OBJECT_POOL, 0666},
};

static int create_as_root(mbq_client *c, const struct perm_case *pc)
{
    int r = -EINVAL;
    switch (pc->kind) {
    case MBQ_OBJECT_SIMPLE_QUEUE: {
        mbq_simple_queue *s = NULL;
        mbq_simple_queue_options o = h_sq_opts(pc->mode, true);
        r = mbq_simple_queue_create(c, pc->name, 8, &o, &s);
        mbq_simple_queue_close(s);
        break;
    }
    case MBQ_OBJECT_BUFFER_QUEUE: {
        mbq_buffer_queue *q = NULL;
        mbq_buffer_queue_options o = h_bq_opts(8, MBQ_ORDER_FIFO);
        o.mode = pc->mode;
        o.exclusive = true;
        r = mbq_buffer_queue_create(c, pc->name, &o, &q);
        mbq_buffer_queue_close(q);
        break;
    }
    case MBQ_OBJECT_POOL: {
        mbq_pool *p = NULL;
        mbq_pool_options o = h_pool_opts(4096, 4);
        o.mode = pc->mode;
        o.exclusive = true;
        r = mbq_pool_create(c, pc->name, &o, &p);
        mbq_pool_close(p);
        break;
    }
    }
    return r;
}

/* Opens by name, as the kind it is; closes again. */
static int try_open(mbq_client *c, const char *name, mbq_object_kind kind)
{
    int r = -EINVAL;
    switch (kind) {
    case MBQ_OBJECT_SIMPLE_QUEUE: {
        mbq_simple_queue *s = NULL;
        r = mbq_simple_queue_open(c, name, &s);
        if ((r == 0) != (s != NULL))
            r = -EPROTO;
        mbq_simple_queue_close(s);
        break;
    }
    case MBQ_OBJECT_BUFFER_QUEUE: {
        mbq_buffer_queue *q = NULL;
        r = mbq_buffer_queue_open(c, name, &q);
        if ((r == 0) != (q != NULL))
            r = -EPROTO;
        mbq_buffer_queue_close(q);
        break;
    }
    case MBQ_OBJECT_POOL: {
        mbq_pool *p = NULL;
        r = mbq_pool_open(c, name, &p);
        if ((r == 0) != (p != NULL))
            r = -EPROTO;
        mbq_pool_close(p);
        break;
    }
    }
    return r;
}

static int drop_to(uid_t uid, gid_t gid)
{
    if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
        fprintf(stderr, "cannot drop privileges: %s\n", strerror(errno));
        return -1;
    }
    if (getuid() != uid || geteuid() != uid || getgid() != gid)
        return -1;
    return 0;
}

/* uid/gid 65534: "others" for every root object. */
static int nobody_child(void *arg)
{
    (void)arg;
    CREQUIRE(drop_to(NOBODY, NOBODY) == 0);
    mbq_client *c = NULL;
    int r = mbq_connect(D.sock, "nobody", &c);
    if (r != 0)
        fprintf(stderr, "nobody cannot connect to %s: %d %s (the socket must be usable by "
                        "every user; objects carry the permissions)\n",
                D.sock, r, mbq_status_string(r));
    CREQUIRE(r == 0);

    CHECK_STATUS(try_open(c, "perm/sq600", MBQ_OBJECT_SIMPLE_QUEUE), -EACCES);
    CHECK_STATUS(try_open(c, "perm/sq666", MBQ_OBJECT_SIMPLE_QUEUE), 0);
    CHECK_STATUS(try_open(c, "perm/sq644", MBQ_OBJECT_SIMPLE_QUEUE), -EACCES);
    CHECK_STATUS(try_open(c, "perm/sq662", MBQ_OBJECT_SIMPLE_QUEUE), -EACCES);
    CHECK_STATUS(try_open(c, "perm/sq660", MBQ_OBJECT_SIMPLE_QUEUE), -EACCES);
    CHECK_STATUS(try_open(c, "perm/sq606", MBQ_OBJECT_SIMPLE_QUEUE), 0);
    CHECK_STATUS(try_open(c, "perm/bq600", MBQ_OBJECT_BUFFER_QUEUE), -EACCES);
    CHECK_STATUS(try_open(c, "perm/bq666", MBQ_OBJECT_BUFFER_QUEUE), 0);
    CHECK_STATUS(try_open(c, "perm/pool600", MBQ_OBJECT_POOL), -EACCES);
    CHECK_STATUS(try_open(c, "perm/pool666", MBQ_OBJECT_POOL), 0);

    /* create-or-open of an existing object is checked the same way */
    mbq_simple_queue *s = NULL;
    mbq_simple_queue_options so = h_sq_opts(0666, false);
    CHECK_STATUS(mbq_simple_queue_create(c, "perm/sq600", 8, &so, &s), -EACCES);
    CHECK(s == NULL);
    mbq_pool *p = NULL;
    mbq_pool_options po = h_pool_opts(4096, 4);
    po.mode = 0666;
    CHECK_STATUS(mbq_pool_create(c, "perm/pool600", &po, &p), -EACCES);
    CHECK(p == NULL);
    /* and so is removing a name */
    CHECK_STATUS(mbq_unlink(c, "perm/sq600"), -EACCES);
    CHECK_STATUS(mbq_unlink(c, "perm/pool600"), -EACCES);

    /* what is allowed works: data through root's 0666 objects */
    CHECK_STATUS(mbq_simple_queue_open(c, "perm/sq666", &s), 0);
    if (s) {
        CHECK_STATUS(mbq_simple_queue_enqueue(s, 65534), 0);
        mbq_simple_queue_close(s);
    }
    mbq_buffer_queue *q = NULL;
    CHECK_STATUS(mbq_pool_open(c, "perm/pool666", &p), 0);
    CHECK_STATUS(mbq_buffer_queue_open(c, "perm/bq666", &q), 0);
    if (p && q) {
        mbq_buffer b;
        CHECK_STATUS(mbq_pool_allocate(p, 100, &b), 0);
        char *d = mbq_buffer_get_data(b, NULL);
        CHECK(d != NULL);
        if (d)
            strcpy(d, "written by nobody");
        CHECK_STATUS(mbq_buffer_queue_enqueue(q, b), 0);
        CHECK_STATUS(mbq_buffer_release(b), 0);
    }
    mbq_buffer_queue_close(q);
    mbq_pool_close(p);

    /* its own object: owned by 65534:65534, default mode 0600 */
    s = NULL;
    CHECK_STATUS(mbq_simple_queue_create(c, "perm/nobody", 8, NULL, &s), 0);
    if (s) {
        CHECK_STATUS(mbq_simple_queue_enqueue(s, 77), 0);
        mbq_simple_queue_close(s);
    }
    mbq_disconnect(c);
    return 0;
}

/* uid 65534 with gid 0: the group class for root's objects (gid 0), the
 * owner class for perm/nobody. */
static int group_child(void *arg)
{
    (void)arg;
    CREQUIRE(drop_to(NOBODY, 0) == 0);
    mbq_client *c = NULL;
    CREQUIRE(mbq_connect(D.sock, "nobody-in-group-root", &c) == 0);
    CHECK_STATUS(try_open(c, "perm/sq660", MBQ_OBJECT_SIMPLE_QUEUE), 0);
    /* the group class applies, even though others would be allowed */
    CHECK_STATUS(try_open(c, "perm/sq606", MBQ_OBJECT_SIMPLE_QUEUE), -EACCES);
    CHECK_STATUS(try_open(c, "perm/sq600", MBQ_OBJECT_SIMPLE_QUEUE), -EACCES);
    CHECK_STATUS(try_open(c, "perm/sq666", MBQ_OBJECT_SIMPLE_QUEUE), 0);
    /* the owner class for an object created by uid 65534 */
    CHECK_STATUS(try_open(c, "perm/nobody", MBQ_OBJECT_SIMPLE_QUEUE), 0);
    mbq_disconnect(c);
    return 0;
}

static void permissions_by_class(void)
{
    if (geteuid() != 0) {
        printf("skipped: permissions_by_class needs root (uid %d)\n", (int)geteuid());
        return;
    }
    REQUIRE(mbqd_start(&D) == 0);
    /* the unprivileged children must be able to reach the socket */
    CHECK(chmod(D.dir, 0755) == 0);
    mbq_client *c = h_connect(&D, "root");
    REQUIRE(c);
    for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
        CHECK_STATUS(create_as_root(c, &objects[i]), 0);
        mbq_object_info info;
        CHECK_STATUS(h_stat(c, objects[i].name, &info), 0);
        CHECK_EQ(info.mode & 07777, objects[i].mode);
        CHECK_EQ(info.owner_uid, 0);
        CHECK_EQ(info.owner_gid, 0);
    }

    CHECK_EQ(run_in_child(nobody_child, NULL), 0);

    /* what nobody sent arrived */
    mbq_simple_queue *s = NULL;
    CHECK_STATUS(mbq_simple_queue_open(c, "perm/sq666", &s), 0);
    if (s) {
        CHECK_EQ(mbq_simple_queue_dequeue(s), 65534);
        mbq_simple_queue_close(s);
    }
    mbq_buffer_queue *q = NULL;
    CHECK_STATUS(mbq_buffer_queue_open(c, "perm/bq666", &q), 0);
    if (q) {
        mbq_buffer b;
        CHECK_STATUS(mbq_buffer_queue_dequeue_and_retain(q, &b), 0);
        const char *d = mbq_buffer_get_data(b, NULL);
        CHECK(d && !strcmp(d, "written by nobody"));
        mbq_buffer_release(b);
        mbq_buffer_queue_close(q);
    }
    /* nothing was unlinked by the refused calls */
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "perm/sq600", &info), 0);
    CHECK_STATUS(h_stat(c, "perm/pool600", &info), 0);
    CHECK_EQ(info.block_count, 4);
    /* nobody's object: its owner, mode 0600; root may open it anyway */
    CHECK_STATUS(h_stat(c, "perm/nobody", &info), 0);
    CHECK_EQ(info.owner_uid, NOBODY);
    CHECK_EQ(info.owner_gid, NOBODY);
    CHECK_EQ(info.mode & 07777, 0600);
    s = NULL;
    CHECK_STATUS(mbq_simple_queue_open(c, "perm/nobody", &s), 0);
    if (s) {
        CHECK_EQ(mbq_simple_queue_dequeue(s), 77);
        mbq_simple_queue_close(s);
    }

    CHECK_EQ(run_in_child(group_child, NULL), 0);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(permissions_by_class))
