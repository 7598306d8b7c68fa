/* Writes the seed corpora of the fuzz targets (run once; the output is
 * committed under tests/fuzz/corpus/):
 *     gen_seeds DIR
 * makes DIR/dispatch/ (request sequences in fuzz_dispatch's format: a
 * session, then sessions creating, opening, binding, listing, stating,
 * installing triggers, declaring producers, closing and unlinking each
 * other's objects) and
 * DIR/shm/ (each segment kind with traffic and no patch, and with a few
 * patches over the header and the indices). */
#include <mbq.pb-c.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static uint8_t buf[1 << 16];
static size_t len;

static void add(unsigned session, Mbq__V1__Request *req)
{
    static uint64_t id;
    req->id = ++id;
    size_t n = mbq__v1__request__get_packed_size(req);
    buf[len++] = (uint8_t)session;
    buf[len++] = (uint8_t)n;
    buf[len++] = (uint8_t)(n >> 8);
    mbq__v1__request__pack(req, buf + len);
    len += n;
}

static void create(unsigned s, const char *name, Mbq__V1__ObjectKind kind, uint32_t mode)
{
    Mbq__V1__Create c = MBQ__V1__CREATE__INIT;
    Mbq__V1__BufferQueueConfig bq = MBQ__V1__BUFFER_QUEUE_CONFIG__INIT;
    Mbq__V1__SimpleQueueConfig sq = MBQ__V1__SIMPLE_QUEUE_CONFIG__INIT;
    Mbq__V1__PoolConfig pool = MBQ__V1__POOL_CONFIG__INIT;
    c.name = (char *)name;
    c.kind = kind;
    c.mode = mode;
    switch (kind) {
    case MBQ__V1__OBJECT_KIND__BUFFER_QUEUE:
        bq.capacity = 8;
        bq.order = 1;
        c.config_case = MBQ__V1__CREATE__CONFIG_BUFFER_QUEUE;
        c.buffer_queue = &bq;
        break;
    case MBQ__V1__OBJECT_KIND__SIMPLE_QUEUE:
        sq.capacity = 8;
        c.config_case = MBQ__V1__CREATE__CONFIG_SIMPLE_QUEUE;
        c.simple_queue = &sq;
        break;
    default:
        pool.block_size = 4096;
        pool.block_count = 4;
        c.config_case = MBQ__V1__CREATE__CONFIG_POOL;
        c.pool = &pool;
        break;
    }
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_CREATE;
    r.create = &c;
    add(s, &r);
}

static void open_by_name(unsigned s, const char *name)
{
    Mbq__V1__Open o = MBQ__V1__OPEN__INIT;
    o.name = (char *)name;
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_OPEN;
    r.open = &o;
    add(s, &r);
}

static void bind_pool(unsigned s, uint64_t queue, uint64_t pool, bool check)
{
    Mbq__V1__BindPool b = MBQ__V1__BIND_POOL__INIT;
    b.object_id = queue;
    b.pool_id = pool;
    b.check_only = check;
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_BIND_POOL;
    r.bind_pool = &b;
    add(s, &r);
}

static void list(unsigned s)
{
    Mbq__V1__List l = MBQ__V1__LIST__INIT;
    l.prefix = (char *)"";
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_LIST;
    r.list = &l;
    add(s, &r);
}

static void stat_name(unsigned s, const char *name)
{
    Mbq__V1__Stat st = MBQ__V1__STAT__INIT;
    st.name = (char *)name;
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_STAT;
    r.stat = &st;
    add(s, &r);
}

static void usage(unsigned s)
{
    Mbq__V1__Usage u = MBQ__V1__USAGE__INIT;
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_USAGE;
    r.usage = &u;
    add(s, &r);
}

static void trigger(unsigned s, uint64_t queue)
{
    Mbq__V1__InstallTrigger t = MBQ__V1__INSTALL_TRIGGER__INIT;
    t.object_id = queue;
    t.condition = 10;
    t.threshold = 2;
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_INSTALL_TRIGGER;
    r.install_trigger = &t;
    add(s, &r);
}

static void close_id(unsigned s, uint64_t id)
{
    Mbq__V1__Close c = MBQ__V1__CLOSE__INIT;
    c.object_id = id;
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_CLOSE;
    r.close = &c;
    add(s, &r);
}

static void unlink_name(unsigned s, const char *name)
{
    Mbq__V1__Unlink u = MBQ__V1__UNLINK__INIT;
    u.name = (char *)name;
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_UNLINK;
    r.unlink = &u;
    add(s, &r);
}

static void declare(unsigned s, uint64_t queue, bool withdraw)
{
    Mbq__V1__DeclareProducer dp = MBQ__V1__DECLARE_PRODUCER__INIT;
    dp.object_id = queue;
    dp.withdraw = withdraw;
    Mbq__V1__Request r = MBQ__V1__REQUEST__INIT;
    r.body_case = MBQ__V1__REQUEST__BODY_DECLARE_PRODUCER;
    r.declare_producer = &dp;
    add(s, &r);
}

static int save(const char *dir, const char *name, const void *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        perror(path);
        return -1;
    }
    fclose(f);
    return 0;
}

static int flush_seed(const char *dir, const char *name)
{
    int r = save(dir, name, buf, len);
    len = 0;
    return r;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds DIR\n");
        return 2;
    }
    char d[4096], s[4096];
    snprintf(d, sizeof d, "%s/dispatch", argv[1]);
    snprintf(s, sizeof s, "%s/shm", argv[1]);
    mkdir(argv[1], 0755);
    mkdir(d, 0755);
    mkdir(s, 0755);
    int r = 0;

    /* objects of each kind, by each user; ids count from 1 */
    create(1, "u/q", MBQ__V1__OBJECT_KIND__BUFFER_QUEUE, 0666);
    create(1, "u/pool", MBQ__V1__OBJECT_KIND__POOL, 0660);
    create(2, "v/sq", MBQ__V1__OBJECT_KIND__SIMPLE_QUEUE, 0600);
    bind_pool(1, 1, 2, false);
    bind_pool(1, 1, 2, true);
    list(0);
    list(2);
    stat_name(2, "u/q");
    stat_name(0, "u/q");
    usage(1);
    usage(0);
    r |= flush_seed(d, "objects");

    /* another user binds, checks, installs a trigger, ends, comes back */
    create(1, "u/q", MBQ__V1__OBJECT_KIND__BUFFER_QUEUE, 0666);
    create(1, "u/pool", MBQ__V1__OBJECT_KIND__POOL, 0600);
    open_by_name(2, "u/q");
    bind_pool(2, 1, 2, false);
    bind_pool(2, 1, 2, true);
    trigger(2, 1);
    trigger(1, 1);
    close_id(1, 1);
    unlink_name(2, "u/q");
    unlink_name(1, "u/q");
    list(0x82); /* session 2 hangs up and comes back */
    open_by_name(2, "u/pool");
    r |= flush_seed(d, "bind-and-leave");

    /* quotas: creations until refused */
    for (int i = 0; i < 10; i++) {
        char name[32];
        snprintf(name, sizeof name, "q/p%d", i);
        create(1, name, MBQ__V1__OBJECT_KIND__POOL, 0600);
    }
    usage(1);
    r |= flush_seed(d, "quota");

    /* producers: two declare, one withdraws, one hangs up, one comes back */
    create(1, "u/q", MBQ__V1__OBJECT_KIND__BUFFER_QUEUE, 0666);
    open_by_name(2, "u/q");
    declare(1, 1, false);
    declare(2, 1, false);
    declare(2, 1, true);
    declare(2, 1, true);
    list(0x81); /* session 1 hangs up and comes back */
    open_by_name(1, "u/q");
    declare(1, 1, false);
    declare(0, 1, false); /* not open in session 0 */
    close_id(1, 1);
    r |= flush_seed(d, "producers");

    /* shm: each kind with traffic, clean and patched */
    static const uint8_t clean[4][2] = {{0, 5}, {1, 7}, {2, 4}, {3, 3}};
    static const char *names[4] = {"bq-fifo", "bq-pts", "sq", "pool"};
    for (int k = 0; k < 4; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s-clean", names[k]);
        r |= save(s, name, clean[k], 2);
        uint8_t p[2 + 3 * 13];
        p[0] = clean[k][0];
        p[1] = clean[k][1];
        static const uint32_t offs[3] = {24, 640, 896}; /* header id, tail, head */
        for (int i = 0; i < 3; i++) {
            uint8_t *q = p + 2 + i * 13;
            memcpy(q, &offs[i], 4);
            q[4] = 8;
            memset(q + 5, 0xff - i, 8);
        }
        snprintf(name, sizeof name, "%s-patched", names[k]);
        r |= save(s, name, p, sizeof p);
    }
    return r ? 1 : 0;
}
