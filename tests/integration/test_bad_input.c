/* Bad input on the control socket. Raw SOCK_SEQPACKET connections send
 * garbage, truncated and oversized packets, descriptors nobody asked for,
 * requests before Hello, unknown fields, an unsupported version range,
 * huge and escaping names, requests on objects they never opened, and a
 * flood of requests they never read the answers of. For each, the daemon
 * must answer with an error Response or disconnect that connection -- and
 * nothing else: after every case a well-behaved libmbq client (a separate
 * process, connected for the whole test) still creates and uses objects,
 * every pre-existing object is still listed and intact, a fresh raw
 * connection still gets a HelloReply, the daemon has not leaked the
 * descriptors it was sent, and at the end it exits 0 on SIGTERM. */
#include "harness.h"

#include "mbq.pb-c.h"
#include "wire.h"

#include <sys/eventfd.h>

static struct mbqd D;

#define REPLY_WAIT_MS 5000

/* ---- raw protocol helpers --------------------------------------------------- */

/* Sends one packet with nfds descriptors (any number: more than the
 * protocol allows, too). 0 or -errno. */
static int raw_send(int fd, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        char b[CMSG_SPACE(sizeof(int) * 253)];
        struct cmsghdr align;
    } ctl;
    if (nfds) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t r;
    do
        r = sendmsg(fd, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int send_request(int fd, Mbq__V1__Request *rq)
{
    size_t n = mbq__v1__request__get_packed_size(rq);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    mbq__v1__request__pack(rq, buf);
    int r = raw_send(fd, buf, n, NULL, 0);
    free(buf);
    return r;
}

enum rx { RX_RESPONSE, RX_DISCONNECT, RX_TIMEOUT, RX_GARBAGE };

/* Waits (bounded) for the next Response (Events are skipped; descriptors
 * that come with any packet are closed). On RX_RESPONSE, *status and *id. */
static enum rx recv_response(int fd, int timeout_ms, int *status, uint64_t *id)
{
    static uint8_t buf[WIRE_MAX_PACKET + 1024];
    uint64_t deadline = h_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        int left = (int)(((int64_t)deadline - (int64_t)h_now_ns()) / 1000000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, left > 0 ? left : 0);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return RX_TIMEOUT;
        struct wire_fds fds;
        ssize_t n = wire_recv(fd, buf, sizeof buf, &fds);
        wire_fds_close(&fds);
        if (n == -EAGAIN || n == -EINTR)
            continue;
        if (n == 0 || n == -ECONNRESET || n == -EPIPE)
            return RX_DISCONNECT;
        if (n < 0)
            return RX_GARBAGE;
        Mbq__V1__ServerMessage *sm = mbq__v1__server_message__unpack(NULL, (size_t)n, buf);
        if (!sm)
            return RX_GARBAGE;
        if (sm->msg_case == MBQ__V1__SERVER_MESSAGE__MSG_EVENT) {
            mbq__v1__server_message__free_unpacked(sm, NULL);
            continue;
        }
        if (sm->msg_case != MBQ__V1__SERVER_MESSAGE__MSG_RESPONSE || !sm->response) {
            mbq__v1__server_message__free_unpacked(sm, NULL);
            return RX_GARBAGE;
        }
        *status = sm->response->status;
        *id = sm->response->id;
        mbq__v1__server_message__free_unpacked(sm, NULL);
        return RX_RESPONSE;
    }
}

static int hello(int fd, uint32_t min, uint32_t max, int *status)
{
    Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
    Mbq__V1__Hello h = MBQ__V1__HELLO__INIT;
    h.min_version = min;
    h.max_version = max;
    h.client_name = "raw";
    rq.id = 1;
    rq.body_case = MBQ__V1__REQUEST__BODY_HELLO;
    rq.hello = &h;
    int r = send_request(fd, &rq);
    if (r < 0)
        return r;
    uint64_t id = 0;
    enum rx x = recv_response(fd, REPLY_WAIT_MS, status, &id);
    if (x == RX_DISCONNECT)
        return -ECONNRESET;
    if (x != RX_RESPONSE)
        return -ETIMEDOUT;
    return id == 1 ? 0 : -EPROTO;
}

/* A connection that completed Hello, or -1. */
static int raw_session(void)
{
    int fd = h_connect_raw(D.sock);
    if (fd < 0) {
        fprintf(stderr, "raw connect: %s\n", strerror(-fd));
        return -1;
    }
    int st = -1;
    int r = hello(fd, 1, 1, &st);
    if (r != 0 || st != 0) {
        fprintf(stderr, "raw hello: %d, status %d\n", r, st);
        close(fd);
        return -1;
    }
    return fd;
}

/* The rule for every bad case: an error Response, or a disconnect. */
static void expect_error_or_disconnect(int fd, const char *what)
{
    int status = 0;
    uint64_t id = 0;
    enum rx x = recv_response(fd, REPLY_WAIT_MS, &status, &id);
    switch (x) {
    case RX_DISCONNECT:
        printf("  %s: disconnected\n", what);
        break;
    case RX_RESPONSE:
        printf("  %s: error response %d (%s)\n", what, status, mbq_status_string(status));
        if (status == 0)
            fprintf(stderr, "%s: the daemon answered with success\n", what);
        CHECK(status != 0);
        break;
    case RX_TIMEOUT:
        fprintf(stderr, "%s: neither a response nor a disconnect within %d ms\n", what,
                REPLY_WAIT_MS);
        CHECK(x != RX_TIMEOUT);
        break;
    case RX_GARBAGE:
        fprintf(stderr, "%s: the daemon sent something undecodable\n", what);
        CHECK(x != RX_GARBAGE);
        break;
    }
}

/* ---- the well-behaved client ------------------------------------------------ */

enum { G_ROUND = 1 };

static int good_client(int cmd, int rep, void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "well-behaved");
    CREQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    mbq_pool_options po = h_pool_opts(4096, 8);
    mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
    CREQUIRE(mbq_pool_create(c, "bad/ok/pool", &po, &pool) == 0);
    CREQUIRE(mbq_buffer_queue_create(c, "bad/ok/q", &qo, &q) == 0);
    struct hmsg m;
    uint64_t round = 0;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        round++;
        /* the data plane */
        mbq_buffer b;
        int e = mbq_pool_allocate(pool, 64, &b);
        if (e == 0) {
            uint64_t *d = mbq_buffer_get_data(b, NULL);
            d[0] = round;
            e = mbq_buffer_queue_enqueue(q, b);
            mbq_buffer_release(b);
        }
        if (e == 0)
            e = mbq_buffer_queue_dequeue_wait(q, 5 * 1000000000ll, &b);
        if (e == 0) {
            uint64_t *d = mbq_buffer_get_data(b, NULL);
            if (!d || d[0] != round)
                e = -EBADMSG;
            mbq_buffer_release(b);
        }
        r.v[0] = e;
        /* the control plane on its long-lived connection */
        mbq_simple_queue *s = NULL;
        e = mbq_simple_queue_create(c, "bad/ok/tmp", 4, NULL, &s);
        if (e == 0) {
            e = mbq_simple_queue_enqueue(s, round);
            if (e == 0 && mbq_simple_queue_dequeue(s) != round)
                e = -EBADMSG;
            mbq_simple_queue_close(s);
            int u = mbq_unlink(c, "bad/ok/tmp");
            if (e == 0)
                e = u;
        }
        r.v[1] = e;
        static mbq_object_info infos[8];
        r.v[2] = h_list(c, "bad/pre/", infos, 8);
        hmsg_reply(rep, &r);
    }
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

static struct actor good;
static mbq_client *observer;

static const char *const pre_names[] = {"bad/pre/bq", "bad/pre/sq", "bad/pre/pool",
                                        "bad/pre/a/b", "bad/pre/x"};
#define NPRE 5

static void make_pre_objects(void)
{
    mbq_buffer_queue *q = NULL;
    mbq_simple_queue *s = NULL;
    mbq_pool *p = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
    mbq_pool_options po = h_pool_opts(4096, 4);
    CHECK_STATUS(mbq_buffer_queue_create(observer, "bad/pre/bq", &qo, &q), 0);
    CHECK_STATUS(mbq_simple_queue_create(observer, "bad/pre/sq", 4, NULL, &s), 0);
    CHECK_STATUS(mbq_pool_create(observer, "bad/pre/pool", &po, &p), 0);
    if (s)
        CHECK_STATUS(mbq_simple_queue_enqueue(s, 0xfeed), 0);
    mbq_buffer_queue_close(q);
    mbq_simple_queue_close(s);
    mbq_pool_close(p);
    CHECK_STATUS(mbq_simple_queue_create(observer, "bad/pre/a/b", 4, NULL, &s), 0);
    mbq_simple_queue_close(s);
    CHECK_STATUS(mbq_simple_queue_create(observer, "bad/pre/x", 4, NULL, &s), 0);
    mbq_simple_queue_close(s);
}

/* After each case: the daemon still serves everybody and lost nothing. */
static void still_serving(const char *after)
{
    int failed_before = check_case_failed;
    check_case_failed = 0;
    CHECK(mbqd_alive(&D));
    struct hmsg m = hmsg_op(G_ROUND), r;
    int e = actor_call(&good, &m, &r);
    CHECK_EQ(e, 0);
    if (e == 0) {
        CHECK_STATUS(r.v[0], 0);
        CHECK_STATUS(r.v[1], 0);
        CHECK_EQ(r.v[2], NPRE);
    }
    static mbq_object_info infos[8];
    CHECK_EQ(h_list(observer, "bad/pre/", infos, 8), NPRE);
    for (int i = 0; i < NPRE; i++) {
        mbq_object_info info;
        CHECK_STATUS(h_stat(observer, pre_names[i], &info), 0);
    }
    mbq_object_info info;
    CHECK_STATUS(h_stat(observer, "bad/pre/sq", &info), 0);
    CHECK_EQ(info.sq_count, 1);
    CHECK_STATUS(h_stat(observer, "bad/pre/pool", &info), 0);
    CHECK(!info.invalidated);
    CHECK_EQ(info.block_count, 4);
    int fd = raw_session();
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    if (check_case_failed)
        fprintf(stderr, "  ^ after: %s\n", after);
    check_case_failed |= failed_before;
}

/* The daemon's descriptor count once it has settled (the same for 50
 * reads 1 ms apart; bounded), so that hang-ups of earlier connections that
 * it has not processed yet do not count. */
static int settled_fd_count(void)
{
    int last = mbqd_fd_count(&D), same = 0;
    uint64_t deadline = h_now_ns() + 5000000000ull;
    while (same < 50 && h_now_ns() < deadline) {
        h_pause_us(1000);
        int n = mbqd_fd_count(&D);
        same = n == last ? same + 1 : 0;
        last = n;
    }
    return last;
}

/* Waits (bounded) for the daemon's descriptor count to come back to base
 * or below; returns the count. */
static int wait_fd_count(int base)
{
    int n = -1;
    uint64_t deadline = h_now_ns() + 5000000000ull;
    do {
        n = mbqd_fd_count(&D);
        if (n <= base)
            return n;
        h_pause_us(1000);
    } while (h_now_ns() < deadline);
    return n;
}

#define CHECK_NO_FD_LEAK(base)                                                        \
    do {                                                                              \
        int now_ = wait_fd_count(base);                                               \
        if (now_ > (base))                                                            \
            fprintf(stderr, "daemon descriptors: %d before, %d after\n", (base), now_); \
        CHECK(now_ <= (base));                                                        \
    } while (0)

/* ---- the cases ---------------------------------------------------------------- */

static void case_garbage(void)
{
    static const uint8_t ff[64] = {[0 ... 63] = 0xff};
    /* before Hello */
    int fd = h_connect_raw(D.sock);
    REQUIRE(fd >= 0);
    CHECK_EQ(raw_send(fd, ff, sizeof ff, NULL, 0), 0);
    expect_error_or_disconnect(fd, "garbage before hello");
    close(fd);
    /* after Hello */
    fd = raw_session();
    REQUIRE(fd >= 0);
    CHECK_EQ(raw_send(fd, ff, sizeof ff, NULL, 0), 0);
    expect_error_or_disconnect(fd, "garbage after hello");
    close(fd);
    /* a plausible-looking but wrong wire type for field 1 */
    fd = raw_session();
    REQUIRE(fd >= 0);
    static const uint8_t wrong_type[] = {0x0d, 1, 2, 3, 4, 0x5a, 0x02, 0x0a, 0x00};
    CHECK_EQ(raw_send(fd, wrong_type, sizeof wrong_type, NULL, 0), 0);
    expect_error_or_disconnect(fd, "wrong wire types");
    close(fd);
    /* an empty packet */
    fd = raw_session();
    REQUIRE(fd >= 0);
    CHECK_EQ(raw_send(fd, "", 0, NULL, 0), 0);
    expect_error_or_disconnect(fd, "empty packet");
    close(fd);
    /* random bytes, a few times (seeded: reproducible) */
    uint32_t seed = 12345;
    for (int k = 0; k < 20; k++) {
        uint8_t junk[512];
        for (size_t i = 0; i < sizeof junk; i++) {
            seed = seed * 1103515245u + 12345u;
            junk[i] = (uint8_t)(seed >> 16);
        }
        fd = raw_session();
        REQUIRE(fd >= 0);
        CHECK_EQ(raw_send(fd, junk, 16 + (size_t)k * 24, NULL, 0), 0);
        /* random bytes may happen to decode; then any answer will do, but
         * the daemon must answer or disconnect, and survive */
        int st;
        uint64_t id;
        enum rx x = recv_response(fd, REPLY_WAIT_MS, &st, &id);
        CHECK(x == RX_RESPONSE || x == RX_DISCONNECT);
        close(fd);
    }
    still_serving("garbage");
}

static void case_truncated(void)
{
    int fd = raw_session();
    REQUIRE(fd >= 0);
    Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
    Mbq__V1__Create cr = MBQ__V1__CREATE__INIT;
    Mbq__V1__BufferQueueConfig bc = MBQ__V1__BUFFER_QUEUE_CONFIG__INIT;
    bc.capacity = 8;
    cr.name = "bad/truncated/queue-with-a-long-name";
    cr.kind = MBQ__V1__OBJECT_KIND__BUFFER_QUEUE;
    cr.config_case = MBQ__V1__CREATE__CONFIG_BUFFER_QUEUE;
    cr.buffer_queue = &bc;
    rq.id = 2;
    rq.body_case = MBQ__V1__REQUEST__BODY_CREATE;
    rq.create = &cr;
    uint8_t buf[256];
    size_t n = mbq__v1__request__pack(&rq, buf);
    REQUIRE(n < sizeof buf);
    CHECK_EQ(raw_send(fd, buf, n / 2, NULL, 0), 0);
    expect_error_or_disconnect(fd, "truncated create");
    close(fd);
    mbq_object_info info;
    CHECK_STATUS(h_stat(observer, cr.name, &info), -ENOENT);
    still_serving("truncated");
}

static void case_oversized(void)
{
    /* a well-formed List whose prefix makes the packet exceed 64 KiB */
    int fd = raw_session();
    REQUIRE(fd >= 0);
    char *prefix = malloc(70000);
    REQUIRE(prefix);
    memset(prefix, 'p', 69999);
    prefix[69999] = 0;
    Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
    Mbq__V1__List ls = MBQ__V1__LIST__INIT;
    ls.prefix = prefix;
    rq.id = 3;
    rq.body_case = MBQ__V1__REQUEST__BODY_LIST;
    rq.list = &ls;
    CHECK_EQ(send_request(fd, &rq), 0);
    expect_error_or_disconnect(fd, "oversized packet (70 KB)");
    close(fd);
    /* raw bytes, 200 KB */
    fd = raw_session();
    REQUIRE(fd >= 0);
    size_t big = 200000;
    uint8_t *junk = calloc(1, big);
    REQUIRE(junk);
    int r = raw_send(fd, junk, big, NULL, 0);
    if (r == 0)
        expect_error_or_disconnect(fd, "oversized packet (200 KB)");
    else
        printf("  200 KB packet: the kernel refused it (%s)\n", strerror(-r));
    close(fd);
    free(junk);
    free(prefix);
    still_serving("oversized");
}

static void case_fds_attached(void)
{
    int base = settled_fd_count();
    REQUIRE(base > 0);
    int fds[60];
    for (int i = 0; i < 60; i++) {
        fds[i] = eventfd(0, EFD_CLOEXEC);
        REQUIRE(fds[i] >= 0);
    }
    Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
    Mbq__V1__List ls = MBQ__V1__LIST__INIT;
    ls.prefix = "bad/";
    rq.id = 4;
    rq.body_case = MBQ__V1__REQUEST__BODY_LIST;
    rq.list = &ls;
    uint8_t buf[64];
    size_t n = mbq__v1__request__pack(&rq, buf);

    /* with Hello */
    int fd = h_connect_raw(D.sock);
    REQUIRE(fd >= 0);
    {
        Mbq__V1__Request hq = MBQ__V1__REQUEST__INIT;
        Mbq__V1__Hello h = MBQ__V1__HELLO__INIT;
        h.min_version = 1;
        h.max_version = 1;
        hq.id = 1;
        hq.body_case = MBQ__V1__REQUEST__BODY_HELLO;
        hq.hello = &h;
        uint8_t hb[64];
        size_t hn = mbq__v1__request__pack(&hq, hb);
        CHECK_EQ(raw_send(fd, hb, hn, fds, 3), 0);
        int st;
        uint64_t id;
        enum rx x = recv_response(fd, REPLY_WAIT_MS, &st, &id);
        /* an error, or a disconnect; a daemon that ignores the fds and says
         * hello is let off here -- the leak check below still applies */
        CHECK(x == RX_RESPONSE || x == RX_DISCONNECT);
        printf("  hello with 3 fds: %s %d\n", x == RX_RESPONSE ? "response" : "disconnect",
               x == RX_RESPONSE ? st : 0);
    }
    close(fd);
    CHECK_NO_FD_LEAK(base);

    /* with a request, 5 and 60 (more than a packet may carry) */
    unsigned counts[2] = {5, 60};
    for (int k = 0; k < 2; k++) {
        fd = raw_session();
        REQUIRE(fd >= 0);
        CHECK_EQ(raw_send(fd, buf, n, fds, counts[k]), 0);
        char what[64];
        snprintf(what, sizeof what, "list with %u fds attached", counts[k]);
        expect_error_or_disconnect(fd, what);
        close(fd);
        CHECK_NO_FD_LEAK(base);
    }
    for (int i = 0; i < 60; i++)
        close(fds[i]);
    still_serving("fds attached");
}

static void case_before_hello(void)
{
    /* a List first */
    int fd = h_connect_raw(D.sock);
    REQUIRE(fd >= 0);
    Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
    Mbq__V1__List ls = MBQ__V1__LIST__INIT;
    rq.id = 5;
    rq.body_case = MBQ__V1__REQUEST__BODY_LIST;
    rq.list = &ls;
    CHECK_EQ(send_request(fd, &rq), 0);
    expect_error_or_disconnect(fd, "list before hello");
    close(fd);
    /* a Create first: nothing is created */
    fd = h_connect_raw(D.sock);
    REQUIRE(fd >= 0);
    Mbq__V1__Create cr = MBQ__V1__CREATE__INIT;
    Mbq__V1__SimpleQueueConfig sc = MBQ__V1__SIMPLE_QUEUE_CONFIG__INIT;
    sc.capacity = 4;
    cr.name = "bad/prehello";
    cr.kind = MBQ__V1__OBJECT_KIND__SIMPLE_QUEUE;
    cr.config_case = MBQ__V1__CREATE__CONFIG_SIMPLE_QUEUE;
    cr.simple_queue = &sc;
    rq.body_case = MBQ__V1__REQUEST__BODY_CREATE;
    rq.create = &cr;
    CHECK_EQ(send_request(fd, &rq), 0);
    expect_error_or_disconnect(fd, "create before hello");
    close(fd);
    mbq_object_info info;
    CHECK_STATUS(h_stat(observer, "bad/prehello", &info), -ENOENT);
    /* an Unlink first: nothing is removed */
    fd = h_connect_raw(D.sock);
    REQUIRE(fd >= 0);
    Mbq__V1__Unlink ul = MBQ__V1__UNLINK__INIT;
    ul.name = "bad/pre/x";
    rq.body_case = MBQ__V1__REQUEST__BODY_UNLINK;
    rq.unlink = &ul;
    CHECK_EQ(send_request(fd, &rq), 0);
    expect_error_or_disconnect(fd, "unlink before hello");
    close(fd);
    still_serving("requests before hello");
}

static void case_unknown_fields(void)
{
    /* id 7, then field 99 (length-delimited "abc"): no known body */
    static const uint8_t f99[] = {0x08, 0x07, 0x9a, 0x06, 0x03, 'a', 'b', 'c'};
    int fd = raw_session();
    REQUIRE(fd >= 0);
    CHECK_EQ(raw_send(fd, f99, sizeof f99, NULL, 0), 0);
    expect_error_or_disconnect(fd, "unknown field 99");
    close(fd);
    /* field 99 as a varint */
    static const uint8_t f99v[] = {0x08, 0x07, 0x98, 0x06, 0x2a};
    fd = raw_session();
    REQUIRE(fd >= 0);
    CHECK_EQ(raw_send(fd, f99v, sizeof f99v, NULL, 0), 0);
    expect_error_or_disconnect(fd, "unknown varint field 99");
    close(fd);
    /* only an id: no body at all */
    static const uint8_t idonly[] = {0x08, 0x08};
    fd = raw_session();
    REQUIRE(fd >= 0);
    CHECK_EQ(raw_send(fd, idonly, sizeof idonly, NULL, 0), 0);
    expect_error_or_disconnect(fd, "request without a body");
    close(fd);
    /* a body field number the protocol does not define, before Hello */
    fd = h_connect_raw(D.sock);
    REQUIRE(fd >= 0);
    CHECK_EQ(raw_send(fd, f99, sizeof f99, NULL, 0), 0);
    expect_error_or_disconnect(fd, "unknown field 99 before hello");
    close(fd);
    still_serving("unknown fields");
}

static void case_versions(void)
{
    struct {
        uint32_t min, max;
    } bad[] = {{2, 3}, {0, 0}, {3, 1}, {100, 200}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = h_connect_raw(D.sock);
        REQUIRE(fd >= 0);
        int st = 0;
        int r = hello(fd, bad[i].min, bad[i].max, &st);
        char what[64];
        snprintf(what, sizeof what, "hello %u..%u", bad[i].min, bad[i].max);
        if (r == -ECONNRESET) {
            printf("  %s: disconnected\n", what);
        } else {
            CHECK_EQ(r, 0);
            printf("  %s: status %d (%s)\n", what, st, mbq_status_string(st));
            if (st == 0)
                fprintf(stderr, "%s: accepted\n", what);
            CHECK(st != 0);
        }
        close(fd);
    }
    /* a range that includes 1 is accepted, as version 1 */
    int fd = h_connect_raw(D.sock);
    REQUIRE(fd >= 0);
    Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
    Mbq__V1__Hello h = MBQ__V1__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 5;
    rq.id = 9;
    rq.body_case = MBQ__V1__REQUEST__BODY_HELLO;
    rq.hello = &h;
    CHECK_EQ(send_request(fd, &rq), 0);
    static uint8_t buf[WIRE_MAX_PACKET];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK_EQ(poll(&p, 1, REPLY_WAIT_MS), 1);
    struct wire_fds fds;
    ssize_t n = wire_recv(fd, buf, sizeof buf, &fds);
    wire_fds_close(&fds);
    CHECK(n > 0);
    if (n > 0) {
        Mbq__V1__ServerMessage *sm = mbq__v1__server_message__unpack(NULL, (size_t)n, buf);
        CHECK(sm && sm->msg_case == MBQ__V1__SERVER_MESSAGE__MSG_RESPONSE);
        if (sm && sm->msg_case == MBQ__V1__SERVER_MESSAGE__MSG_RESPONSE) {
            CHECK_EQ(sm->response->id, 9);
            CHECK_EQ(sm->response->status, 0);
            CHECK_EQ(sm->response->body_case, MBQ__V1__RESPONSE__BODY_HELLO);
            if (sm->response->body_case == MBQ__V1__RESPONSE__BODY_HELLO)
                CHECK_EQ(sm->response->hello->version, 1);
        }
        if (sm)
            mbq__v1__server_message__free_unpacked(sm, NULL);
    }
    close(fd);
    still_serving("versions");
}

static int raw_named(int fd, int body, const char *name, uint64_t id)
{
    Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
    Mbq__V1__Create cr = MBQ__V1__CREATE__INIT;
    Mbq__V1__SimpleQueueConfig sc = MBQ__V1__SIMPLE_QUEUE_CONFIG__INIT;
    Mbq__V1__Open op = MBQ__V1__OPEN__INIT;
    Mbq__V1__Stat st = MBQ__V1__STAT__INIT;
    Mbq__V1__Unlink ul = MBQ__V1__UNLINK__INIT;
    rq.id = id;
    rq.body_case = (Mbq__V1__Request__BodyCase)body;
    switch (body) {
    case MBQ__V1__REQUEST__BODY_CREATE:
        sc.capacity = 4;
        cr.name = (char *)name;
        cr.kind = MBQ__V1__OBJECT_KIND__SIMPLE_QUEUE;
        cr.config_case = MBQ__V1__CREATE__CONFIG_SIMPLE_QUEUE;
        cr.simple_queue = &sc;
        rq.create = &cr;
        break;
    case MBQ__V1__REQUEST__BODY_OPEN:
        op.name = (char *)name;
        rq.open = &op;
        break;
    case MBQ__V1__REQUEST__BODY_STAT:
        st.name = (char *)name;
        rq.stat = &st;
        break;
    case MBQ__V1__REQUEST__BODY_UNLINK:
        ul.name = (char *)name;
        rq.unlink = &ul;
        break;
    }
    return send_request(fd, &rq);
}

static void case_bad_names(void)
{
    char *huge = malloc(10241);
    REQUIRE(huge);
    memset(huge, 'n', 10240);
    huge[10240] = 0;
    for (int i = 100; i < 10240; i += 100)
        huge[i] = '/';
    const char *names[] = {huge, "a/../b", "../etc/passwd", "bad/../../x", "/abs", "a//b", "",
                           "bad/pre/../pre/x", "..", "bad/\xff"};
    const char *labels[] = {"10 KB name", "a/../b", "../etc/passwd", "bad/../../x", "/abs",
                            "a//b", "empty", "bad/pre/../pre/x", "..", "bad/\\xff"};
    int bodies[] = {MBQ__V1__REQUEST__BODY_CREATE, MBQ__V1__REQUEST__BODY_OPEN,
                    MBQ__V1__REQUEST__BODY_STAT, MBQ__V1__REQUEST__BODY_UNLINK};
    const char *bnames[] = {"create", "open", "stat", "unlink"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        for (int b = 0; b < 4; b++) {
            int fd = raw_session();
            REQUIRE(fd >= 0);
            CHECK_EQ(raw_named(fd, bodies[b], names[i], 100 + i), 0);
            int st = 0;
            uint64_t id = 0;
            enum rx x = recv_response(fd, REPLY_WAIT_MS, &st, &id);
            if (x == RX_RESPONSE && !names[i][0] && bodies[b] == MBQ__V1__REQUEST__BODY_OPEN) {
                /* an empty name opens by id (0 here): any error will do */
                CHECK(st != 0);
            } else if (x == RX_RESPONSE) {
                /* refused as a bad name (an escaping name must never be
                 * resolved to another object) */
                if (st != -EINVAL)
                    fprintf(stderr, "%s of \"%s\": status %d (%s), expected -EINVAL\n",
                            bnames[b], labels[i], st, mbq_status_string(st));
                CHECK_STATUS(st, -EINVAL);
                CHECK_EQ(id, 100 + i);
            } else {
                if (x != RX_DISCONNECT)
                    fprintf(stderr, "%s of \"%s\": no answer\n", bnames[b], labels[i]);
                CHECK(x == RX_DISCONNECT);
            }
            close(fd);
        }
    }
    free(huge);
    /* nothing was created or removed */
    static mbq_object_info infos[16];
    int n = h_list(observer, NULL, infos, 16);
    CHECK_EQ(n, NPRE + 2); /* the pre-existing ones and the good client's two */
    still_serving("bad names");
}

static void case_foreign_objects(void)
{
    /* ids of objects this connection never opened */
    mbq_object_info pool_info, q_info;
    REQUIRE(h_stat(observer, "bad/pre/pool", &pool_info) == 0);
    REQUIRE(h_stat(observer, "bad/ok/q", &q_info) == 0);
    uint64_t ids[] = {pool_info.object_id, q_info.object_id, 0xdeadbeefull, 0};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        for (int body = MBQ__V1__REQUEST__BODY_CLOSE; body <= MBQ__V1__REQUEST__BODY_POOL_INVALIDATE;
             body++) {
            if (body == MBQ__V1__REQUEST__BODY_UNLINK || body == MBQ__V1__REQUEST__BODY_LIST ||
                body == MBQ__V1__REQUEST__BODY_STAT)
                continue;
            int fd = raw_session();
            REQUIRE(fd >= 0);
            Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
            Mbq__V1__Close cl = MBQ__V1__CLOSE__INIT;
            Mbq__V1__InstallTrigger it = MBQ__V1__INSTALL_TRIGGER__INIT;
            Mbq__V1__RemoveTrigger rt = MBQ__V1__REMOVE_TRIGGER__INIT;
            Mbq__V1__TestTrigger tt = MBQ__V1__TEST_TRIGGER__INIT;
            Mbq__V1__PoolFlush pf = MBQ__V1__POOL_FLUSH__INIT;
            Mbq__V1__PoolInvalidate pi = MBQ__V1__POOL_INVALIDATE__INIT;
            Mbq__V1__Time tm = MBQ__V1__TIME__INIT;
            rq.id = 200;
            rq.body_case = (Mbq__V1__Request__BodyCase)body;
            switch (body) {
            case MBQ__V1__REQUEST__BODY_CLOSE:
                cl.object_id = ids[i];
                rq.close = &cl;
                break;
            case MBQ__V1__REQUEST__BODY_INSTALL_TRIGGER:
                it.object_id = ids[i];
                it.condition = 11;
                it.threshold = 0;
                tm.value = 1;
                tm.timescale = 1;
                tm.flags = 1;
                it.time = &tm;
                rq.install_trigger = &it;
                break;
            case MBQ__V1__REQUEST__BODY_REMOVE_TRIGGER:
                rt.object_id = ids[i];
                rt.token = 1;
                rq.remove_trigger = &rt;
                break;
            case MBQ__V1__REQUEST__BODY_TEST_TRIGGER:
                tt.object_id = ids[i];
                tt.token = 1;
                rq.test_trigger = &tt;
                break;
            case MBQ__V1__REQUEST__BODY_POOL_FLUSH:
                pf.object_id = ids[i];
                rq.pool_flush = &pf;
                break;
            case MBQ__V1__REQUEST__BODY_POOL_INVALIDATE:
                pi.object_id = ids[i];
                rq.pool_invalidate = &pi;
                break;
            }
            CHECK_EQ(send_request(fd, &rq), 0);
            char what[96];
            snprintf(what, sizeof what, "request %d on object %#llx not opened", body,
                     (unsigned long long)ids[i]);
            expect_error_or_disconnect(fd, what);
            close(fd);
        }
    }
    /* Declaring, or withdrawing, a producer of a queue this connection has
     * not opened: refused, so no client ends another's declaration. */
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        for (int withdraw = 0; withdraw < 2; withdraw++) {
            int fd = raw_session();
            REQUIRE(fd >= 0);
            Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
            Mbq__V1__DeclareProducer dp = MBQ__V1__DECLARE_PRODUCER__INIT;
            dp.object_id = ids[i];
            dp.withdraw = withdraw;
            rq.id = 250;
            rq.body_case = MBQ__V1__REQUEST__BODY_DECLARE_PRODUCER;
            rq.declare_producer = &dp;
            CHECK_EQ(send_request(fd, &rq), 0);
            char what[96];
            snprintf(what, sizeof what, "DeclareProducer (withdraw %d) on object %#llx not opened",
                     withdraw, (unsigned long long)ids[i]);
            expect_error_or_disconnect(fd, what);
            close(fd);
        }
    }
    /* Open by a non-existent id; a Create whose kind and config disagree;
     * kind unspecified; a pool with no blocks */
    struct {
        const char *what;
        int kind, config;
        uint64_t open_id;
    } more[] = {
        {"open by unknown id", -1, 0, 0xdeadbeefull},
        {"create kind pool with a queue config", MBQ__V1__OBJECT_KIND__POOL,
         MBQ__V1__CREATE__CONFIG_SIMPLE_QUEUE, 0},
        {"create kind unspecified", MBQ__V1__OBJECT_KIND__OBJECT_KIND_UNSPECIFIED,
         MBQ__V1__CREATE__CONFIG_SIMPLE_QUEUE, 0},
        {"create kind 42", 42, MBQ__V1__CREATE__CONFIG_SIMPLE_QUEUE, 0},
        {"create pool without config", MBQ__V1__OBJECT_KIND__POOL, 0, 0},
        {"create pool of 0 blocks", MBQ__V1__OBJECT_KIND__POOL, MBQ__V1__CREATE__CONFIG_POOL, 0},
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        int fd = raw_session();
        REQUIRE(fd >= 0);
        Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
        Mbq__V1__Open op = MBQ__V1__OPEN__INIT;
        Mbq__V1__Create cr = MBQ__V1__CREATE__INIT;
        Mbq__V1__SimpleQueueConfig sc = MBQ__V1__SIMPLE_QUEUE_CONFIG__INIT;
        Mbq__V1__PoolConfig pc = MBQ__V1__POOL_CONFIG__INIT;
        rq.id = 300 + i;
        if (more[i].kind < 0) {
            op.object_id = more[i].open_id;
            rq.body_case = MBQ__V1__REQUEST__BODY_OPEN;
            rq.open = &op;
        } else {
            cr.name = "bad/mismatch";
            cr.kind = (Mbq__V1__ObjectKind)more[i].kind;
            cr.config_case = (Mbq__V1__Create__ConfigCase)more[i].config;
            sc.capacity = 4;
            pc.block_size = 4096;
            pc.block_count = 0;
            if (more[i].config == MBQ__V1__CREATE__CONFIG_SIMPLE_QUEUE)
                cr.simple_queue = &sc;
            else if (more[i].config == MBQ__V1__CREATE__CONFIG_POOL)
                cr.pool = &pc;
            rq.body_case = MBQ__V1__REQUEST__BODY_CREATE;
            rq.create = &cr;
        }
        CHECK_EQ(send_request(fd, &rq), 0);
        expect_error_or_disconnect(fd, more[i].what);
        close(fd);
    }
    mbq_object_info info;
    CHECK_STATUS(h_stat(observer, "bad/mismatch", &info), -ENOENT);
    CHECK_STATUS(h_stat(observer, "bad/pre/pool", &info), 0);
    CHECK(!info.invalidated);
    CHECK_EQ(info.open_count, pool_info.open_count);
    CHECK_STATUS(h_stat(observer, "bad/ok/q", &info), 0);
    CHECK_EQ(info.open_count, q_info.open_count);
    CHECK_EQ(info.triggers, 0);
    still_serving("foreign objects");
}

static void case_flood(void)
{
    int fd = raw_session();
    REQUIRE(fd >= 0);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    Mbq__V1__Request rq = MBQ__V1__REQUEST__INIT;
    Mbq__V1__List ls = MBQ__V1__LIST__INIT;
    rq.body_case = MBQ__V1__REQUEST__BODY_LIST;
    rq.list = &ls;
    uint8_t buf[64];
    int sent = 0, stalls = 0;
    bool disconnected = false;
    uint64_t stall_since = 0;
    for (int i = 0; i < 10000; i++) {
        rq.id = 1000 + (uint64_t)i;
        size_t n = mbq__v1__request__pack(&rq, buf);
        ssize_t r = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r == (ssize_t)n) {
            sent++;
            stall_since = 0;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* the daemon is not reading us for now: wait a little, but not
             * for ever (it may have stopped reading a client that does not
             * read its answers, which is fine) */
            if (!stall_since)
                stall_since = h_now_ns();
            if (h_now_ns() - stall_since > 3000000000ull) {
                stalls++;
                break;
            }
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 100);
            i--;
            continue;
        }
        if (r < 0 && errno == EINTR) {
            i--;
            continue;
        }
        disconnected = true;
        break;
    }
    printf("  flood: sent %d of 10000 requests%s%s\n", sent,
           disconnected ? ", then the daemon disconnected us" : "",
           stalls ? ", then the daemon stopped reading" : "");
    /* while this connection is stuffed and never read, others are served */
    still_serving("flood (while the flooding connection is still open)");
    /* what the flooding connection gets, if it reads at last: responses in
     * order, or a disconnect -- never a wrong id */
    int got = 0, st;
    uint64_t id, expect = 1000;
    for (;;) {
        enum rx x = recv_response(fd, 2000, &st, &id);
        if (x != RX_RESPONSE)
            break;
        if (id != expect) {
            fprintf(stderr, "flood: response id %llu, expected %llu\n",
                    (unsigned long long)id, (unsigned long long)expect);
            CHECK_EQ(id, expect);
            break;
        }
        expect++;
        got++;
    }
    printf("  flood: then read %d responses\n", got);
    close(fd);
    still_serving("flood");
}

static void case_many_connections(void)
{
    int base = settled_fd_count();
    enum { N = 200 };
    int fds[N], open_ok = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = h_connect_raw(D.sock);
        if (fds[i] >= 0)
            open_ok++;
    }
    printf("  %d idle connections open\n", open_ok);
    still_serving("200 idle connections");
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    CHECK_NO_FD_LEAK(base);
    still_serving("200 connections closed");
}

static void bad_input(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    REQUIRE(actor_start(&good, good_client, NULL) == 0);
    observer = h_connect(&D, "observer");
    REQUIRE(observer);
    make_pre_objects();
    still_serving("start");

    struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {
        {"garbage", case_garbage},
        {"truncated", case_truncated},
        {"oversized", case_oversized},
        {"fds attached", case_fds_attached},
        {"before hello", case_before_hello},
        {"unknown fields", case_unknown_fields},
        {"versions", case_versions},
        {"bad names", case_bad_names},
        {"foreign objects", case_foreign_objects},
        {"flood", case_flood},
        {"many connections", case_many_connections},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        printf("-- %s\n", cases[i].name);
        int before = check_case_failed;
        check_case_failed = 0;
        cases[i].fn();
        if (check_case_failed)
            printf("   FAILED: %s\n", cases[i].name);
        check_case_failed |= before;
        if (!mbqd_alive(&D)) {
            fprintf(stderr, "the daemon died during: %s\n", cases[i].name);
            check_case_failed = 1;
            return;
        }
    }
    CHECK_ACTOR_OK(&good);
    mbq_disconnect(observer);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(bad_input))
