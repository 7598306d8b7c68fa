/* The control connection: connect, hello, request/response, pushed events.
 *
 * One SOCK_SEQPACKET connection per mbq_client; each packet is one protobuf-c
 * message with its descriptors (proto/wire.h). Requests are synchronous and
 * serialised by client->lock, which also guards everything the replies and
 * events change (object lists, trigger fds, the pool table). While a request
 * waits for its response, the daemon may push events (TriggersChanged) on the
 * same socket: the receive loop applies them in order and keeps waiting, so
 * a caller that never calls mbq_client_dispatch() still sees every event at
 * its next control call. Responses with another id (the answer to a request
 * that timed out) are dropped with their descriptors.
 *
 * A connection that hangs up or breaks the protocol is marked dead, while
 * the data plane keeps working on the mappings the process already has.
 *
 * Reconnection. A daemon that keeps its objects across restarts (under
 * systemd, with the fd store: HelloReply.restartable) comes back with the
 * same objects, the same ids and the same segments. So when a control call
 * (or mbq_client_dispatch) finds the connection gone — EOF, ECONNRESET,
 * EPIPE — the client connects again to the same path, with backoff (10 ms
 * doubling to 500 ms) for at most $MBQ_RECONNECT_TIMEOUT_MS (default 5000;
 * 0 turns it off). With socket activation the socket outlives the daemon,
 * so connect succeeds at once and Hello waits in the backlog until the new
 * daemon serves. Then it says Hello, Reattaches every object it has open by
 * id — the daemon checks that it is the very segment the client maps — and
 * adopts the triggers it installed, so that the new daemon removes them
 * when this process closes the queue or goes, as the old one would have.
 * Objects the daemon refuses (it restarted without them) are marked lost:
 * their mappings stay valid, their control calls fail with -EIDRM. Finally
 * the call that found the connection gone is sent again, once. The socket
 * keeps its descriptor number (dup3), so a poll()-based loop keeps working;
 * an epoll set must add it again. No reconnection happens inside a
 * data-plane call: those only ever read pending events. */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <lock.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

/* A daemon that does not answer within this is treated as gone for this call
 * (the connection stays up; a late answer is dropped). */
#define CLIENT_CALL_TIMEOUT_MS 30000
/* Reconnection: the default budget, and the backoff between attempts. */
#define CLIENT_RECONNECT_DEFAULT_MS 5000
#define CLIENT_RECONNECT_FIRST_MS 10
#define CLIENT_RECONNECT_MAX_STEP_MS 500

/* ---- small helpers shared by the other files ------------------------------- */


bool client_copy_options(void *dst, size_t dst_size, const void *src)
{
    memset(dst, 0, dst_size);
    size_t declared;
    memcpy(&declared, src, sizeof(declared));
    if (declared < sizeof(size_t))
        return false;
    memcpy(dst, src, declared < dst_size ? declared : dst_size);
    memcpy(dst, &dst_size, sizeof(size_t));
    return true;
}

bool client_copy_out(void *dst, const void *src, size_t src_size)
{
    size_t declared;
    memcpy(&declared, dst, sizeof(declared));
    if (declared < sizeof(size_t))
        return false;
    size_t n = declared < src_size ? declared : src_size;
    memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t), n - sizeof(size_t));
    return true;
}

int client_take_segment_fd(struct client_reply *reply, const Mbq__V1__ObjectInfo *info)
{
    if (!info || !info->has_segment)
        return -EPROTO;
    int fd = wire_fds_take(&reply->fds, info->segment_fd_index);
    return fd < 0 ? -EPROTO : fd;
}

/* ---- socket path ----------------------------------------------------------- */

int mbq_default_socket_path(char *buf, size_t len)
{
    if (!buf && len)
        return -EINVAL;
    const char *env = getenv("MBQ_SOCKET");
    int n;
    if (env && *env) {
        n = snprintf(buf, len, "%s", env);
    } else if (geteuid() == 0) {
        n = snprintf(buf, len, "/run/mbq/mbqd.sock");
    } else {
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        if (!xdg || xdg[0] != '/')
            return -ENOENT; /* no per-user runtime directory to look in */
        n = snprintf(buf, len, "%s/mbq/mbqd.sock", xdg);
    }
    return n < 0 ? -EINVAL : n;
}

/* ---- receiving --------------------------------------------------------------- */

static void client_mark_dead_locked(mbq_client *c)
{
    c->dead = true;
}

static void client_apply_event_locked(mbq_client *c, const Mbq__V1__Event *ev,
                                      struct wire_fds *fds)
{
    for (size_t i = 0; i < client_n_kinds; i++)
        if (client_kinds[i]->on_event)
            client_kinds[i]->on_event(c, ev, fds);
}

static void client_events_done_locked(mbq_client *c)
{
    for (size_t i = 0; i < client_n_kinds; i++)
        if (client_kinds[i]->events_done)
            client_kinds[i]->events_done(c);
}

/* Receives one packet, waiting up to timeout_ms (0: not at all, -1: no
 * limit). 0 with *msg set, -EAGAIN if nothing came, -ETIMEDOUT, -ENOTCONN. */
static int client_recv_locked(mbq_client *c, int timeout_ms, Mbq__V1__ServerMessage **msg,
                              struct wire_fds *fds)
{
    for (;;) {
        ssize_t n = wire_recv(c->fd, c->recvbuf, WIRE_MAX_PACKET, fds);
        if (n == -EAGAIN) {
            if (timeout_ms == 0)
                return -EAGAIN;
            struct pollfd p = {.fd = c->fd, .events = POLLIN};
            if (timeout_ms > 0 && c->call_timeout_ms > 0 && timeout_ms > c->call_timeout_ms)
                timeout_ms = c->call_timeout_ms;
            int r = poll(&p, 1, timeout_ms);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return -errno;
            if (r == 0)
                return -ETIMEDOUT;
            continue;
        }
        if (n == -EINTR)
            continue;
        if (n <= 0) {
            /* hang-up, reset, or a packet the daemon should never send */
            client_mark_dead_locked(c);
            return -ENOTCONN;
        }
        *msg = mbq__v1__server_message__unpack(NULL, (size_t)n, c->recvbuf);
        if (!*msg) {
            wire_fds_close(fds);
            client_mark_dead_locked(c);
            return -ENOTCONN;
        }
        return 0;
    }
}

static int client_send_locked(mbq_client *c, Mbq__V1__Request *req)
{
    size_t len = mbq__v1__request__get_packed_size(req);
    if (len > WIRE_MAX_PACKET)
        return -EMSGSIZE;
    mbq__v1__request__pack(req, c->sendbuf);
    int r = wire_send(c->fd, c->sendbuf, len, NULL, 0);
    if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) {
        client_mark_dead_locked(c);
        return -ENOTCONN;
    }
    return r;
}

static int client_reconnect_locked(mbq_client *c);

static int client_call_once_locked(mbq_client *c, Mbq__V1__Request *req,
                                   struct client_reply *reply)
{
    if (c->dead)
        return -ENOTCONN;
    req->id = ++c->next_id;
    int r = client_send_locked(c, req);
    if (r < 0)
        return r;
    for (;;) {
        Mbq__V1__ServerMessage *msg = NULL;
        struct wire_fds fds = {.n = 0};
        r = client_recv_locked(c, CLIENT_CALL_TIMEOUT_MS, &msg, &fds);
        if (r < 0)
            return r;
        if (msg->msg_case == MBQ__V1__SERVER_MESSAGE__MSG_EVENT && msg->event) {
            client_apply_event_locked(c, msg->event, &fds);
        } else if (msg->msg_case == MBQ__V1__SERVER_MESSAGE__MSG_RESPONSE && msg->response &&
                   msg->response->id == req->id) {
            int status = msg->response->status;
            if (status != 0)
                snprintf(c->last_error, sizeof(c->last_error), "%s",
                         msg->response->error ? msg->response->error : "");
            if (status != 0) {
                wire_fds_close(&fds);
                mbq__v1__server_message__free_unpacked(msg, NULL);
                return status < 0 ? status : -EPROTO;
            }
            *reply = (struct client_reply){.msg = msg, .resp = msg->response, .fds = fds};
            return 0;
        }
        wire_fds_close(&fds);
        mbq__v1__server_message__free_unpacked(msg, NULL);
    }
}

int client_call_locked(mbq_client *c, Mbq__V1__Request *req, struct client_reply *reply)
{
    int r = client_call_once_locked(c, req, reply);
    if (r != -ENOTCONN || c->reconnecting || !c->restartable)
        return r;
    if (client_reconnect_locked(c) < 0)
        return -ENOTCONN;
    return client_call_once_locked(c, req, reply);
}

void client_reply_done(struct client_reply *reply)
{
    if (!reply)
        return;
    wire_fds_close(&reply->fds);
    if (reply->msg)
        mbq__v1__server_message__free_unpacked(reply->msg, NULL);
    *reply = (struct client_reply){.msg = NULL};
}

int client_request_locked(mbq_client *c, Mbq__V1__Request *req)
{
    struct client_reply reply;
    int r = client_call_locked(c, req, &reply);
    if (r == 0)
        client_reply_done(&reply);
    return r;
}

void client_close_object_locked(mbq_client *c, uint64_t object_id)
{
    Mbq__V1__Close cl = MBQ__V1__CLOSE__INIT;
    cl.object_id = object_id;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_CLOSE;
    req.close = &cl;
    (void)client_request_locked(c, &req);
}

/* ---- creating and opening objects ------------------------------------------- */

int client_request_object_locked(mbq_client *c, Mbq__V1__Request *req, Mbq__V1__ObjectKind kind,
                                 client_adopt_fn *adopt, void *out)
{
    struct client_reply reply;
    int r = client_call_locked(c, req, &reply);
    if (r < 0)
        return r;
    const Mbq__V1__ObjectInfo *info =
        reply.resp->body_case == MBQ__V1__RESPONSE__BODY_OBJECT ? reply.resp->object : NULL;
    if (!info) {
        r = -EPROTO;
    } else {
        r = info->kind == kind ? adopt(c, &reply, info, out) : -EPROTO;
        if (r < 0) /* the daemon opened it for us: give the open back */
            client_close_object_locked(c, info->object_id);
    }
    client_reply_done(&reply);
    return r;
}

int client_create_object(mbq_client *c, Mbq__V1__Create *cr, client_adopt_fn *adopt, void *out)
{
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_CREATE;
    req.create = cr;
    pthread_mutex_lock(&c->lock);
    int r = client_request_object_locked(c, &req, cr->kind, adopt, out);
    pthread_mutex_unlock(&c->lock);
    return r;
}

int client_open_object(mbq_client *c, const char *name, Mbq__V1__ObjectKind kind,
                       client_adopt_fn *adopt, void *out)
{
    Mbq__V1__Open op = MBQ__V1__OPEN__INIT;
    op.name = (char *)name;
    op.kind = kind;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_OPEN;
    req.open = &op;
    pthread_mutex_lock(&c->lock);
    int r = client_request_object_locked(c, &req, kind, adopt, out);
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* ---- connection ------------------------------------------------------------- */

/* The liveness table this process maps (read-only, never unmapped: lock
 * code of every thread reads it), and which memfd it is. */
static pthread_mutex_t client_ids_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct slock_ids *client_ids_map;
static dev_t client_ids_dev;
static ino_t client_ids_ino;

/* Hello gave this process client id `id` and the table at fd (taken):
 * from now on its threads own locks as that id (shm/lock.h). The process
 * keeps the id it had if the daemon gave the same one back. */
static void client_adopt_identity(uint32_t id, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size != (off_t)slock_ids_size()) {
        close(fd);
        return;
    }
    pthread_mutex_lock(&client_ids_lock);
    if (!client_ids_map || st.st_dev != client_ids_dev || st.st_ino != client_ids_ino) {
        void *m = mmap(NULL, slock_ids_size(), PROT_READ, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            client_ids_map = m; /* a table replaced (a daemon without a store restarted) stays mapped */
            client_ids_dev = st.st_dev;
            client_ids_ino = st.st_ino;
        }
    }
    if (client_ids_map && slock_identity() != id)
        slock_set_identity(id, client_ids_map);
    pthread_mutex_unlock(&client_ids_lock);
    close(fd);
}

static int client_hello_locked(mbq_client *c, const char *client_name)
{
    Mbq__V1__Hello hello = MBQ__V1__HELLO__INIT;
    hello.min_version = MBQ_PROTOCOL_VERSION;
    hello.max_version = MBQ_PROTOCOL_VERSION;
    hello.client_name = (char *)(client_name ? client_name : "");
    hello.client_id = slock_identity(); /* asked back after a daemon restart */
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_HELLO;
    req.hello = &hello;
    struct client_reply reply;
    int r = client_call_locked(c, &req, &reply);
    if (r == -EPROTONOSUPPORT)
        return -EPROTO;
    if (r < 0)
        return r;
    if (reply.resp->body_case != MBQ__V1__RESPONSE__BODY_HELLO || !reply.resp->hello ||
        reply.resp->hello->version != MBQ_PROTOCOL_VERSION)
        r = -EPROTO;
    else {
        c->session_id = reply.resp->hello->session_id;
        c->restartable = reply.resp->hello->restartable;
        if (reply.resp->hello->client_id != 0) {
            int fd = wire_fds_take(&reply.fds, reply.resp->hello->ids_fd_index);
            if (fd >= 0)
                client_adopt_identity(reply.resp->hello->client_id, fd);
        }
    }
    client_reply_done(&reply);
    return r;
}

/* ---- reconnection ----------------------------------------------------------- */

static uint64_t client_now_ms(void)
{
    return mono_ns() / 1000000u;
}

static uint64_t client_reconnect_budget_ms(void)
{
    const char *e = getenv("MBQ_RECONNECT_TIMEOUT_MS");
    if (!e || !*e)
        return CLIENT_RECONNECT_DEFAULT_MS;
    char *end;
    unsigned long long v = strtoull(e, &end, 10);
    return *end ? CLIENT_RECONNECT_DEFAULT_MS : (uint64_t)v;
}

int client_reattach_locked(mbq_client *c, uint64_t object_id, Mbq__V1__ObjectKind kind,
                           const struct seg *seg, uint32_t nonce, unsigned opens,
                           struct client_reply *reply)
{
    struct stat st;
    if (seg->fd < 0 || fstat(seg->fd, &st) < 0)
        return -EBADF;
    Mbq__V1__Reattach ra = MBQ__V1__REATTACH__INIT;
    ra.object_id = object_id;
    ra.kind = kind;
    ra.segment_dev = (uint64_t)st.st_dev;
    ra.segment_ino = (uint64_t)st.st_ino;
    ra.segment_size = seg->size;
    ra.nonce = nonce;
    ra.opens = opens;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_REATTACH;
    req.reattach = &ra;
    int r = client_call_locked(c, &req, reply);
    if (r < 0) {
        if (!client_connection_failed(r))
            c->objects_lost = true; /* refused: the caller marks it lost */
        return r;
    }
    const Mbq__V1__ObjectInfo *info =
        reply->resp->body_case == MBQ__V1__RESPONSE__BODY_OBJECT ? reply->resp->object : NULL;
    if (!info || info->object_id != object_id || info->kind != kind) {
        client_reply_done(reply);
        c->objects_lost = true;
        return -EPROTO;
    }
    return 0;
}

static int client_reattach_all_locked(mbq_client *c)
{
    for (size_t i = 0; i < client_n_kinds; i++) {
        int r = client_kinds[i]->reattach_all(c);
        if (r < 0)
            return r;
    }
    return 0;
}

/* One attempt: a new connection in place of the old descriptor, Hello,
 * Reattach. 0, or -errno. */
static int client_reconnect_once_locked(mbq_client *c)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r;
    do
        r = connect(fd, (const struct sockaddr *)&c->addr, sizeof(c->addr));
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    /* Keep the number the application may be polling. */
    if (dup3(fd, c->fd, O_CLOEXEC) >= 0)
        close(fd);
    else {
        close(c->fd);
        c->fd = fd;
    }
    c->dead = false;
    r = client_hello_locked(c, c->name);
    if (r == 0)
        r = client_reattach_all_locked(c);
    if (r < 0)
        c->dead = true; /* a half-done session: start over */
    return r;
}

static int client_reconnect_locked(mbq_client *c)
{
    uint64_t budget = client_reconnect_budget_ms();
    if (budget == 0)
        return -ENOTCONN;
    uint64_t deadline = client_now_ms() + budget;
    unsigned step = CLIENT_RECONNECT_FIRST_MS;
    int r;
    c->reconnecting = true;
    for (;;) {
        uint64_t now = client_now_ms();
        uint64_t left = deadline > now ? deadline - now : 0;
        /* Hello waits in the backlog of a socket that outlives the daemon:
         * give the new one the rest of the budget, at least a second. */
        c->call_timeout_ms = left < 1000 ? 1000 : left > CLIENT_CALL_TIMEOUT_MS
                                                      ? CLIENT_CALL_TIMEOUT_MS
                                                      : (int)left;
        r = client_reconnect_once_locked(c);
        if (r == 0 || r == -EPROTO || r == -ENAMETOOLONG)
            break;
        now = client_now_ms();
        if (now >= deadline)
            break;
        uint64_t wait = deadline - now < step ? deadline - now : step;
        struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
        step = step * 2 > CLIENT_RECONNECT_MAX_STEP_MS ? CLIENT_RECONNECT_MAX_STEP_MS : step * 2;
    }
    c->call_timeout_ms = 0;
    c->reconnecting = false;
    if (r == 0) {
        c->reconnects++;
        client_events_done_locked(c);
        return 0;
    }
    c->dead = true;
    return r;
}

static void client_free(mbq_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->sendbuf);
    free(c->recvbuf);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int mbq_connect(const char *socket_path, const char *client_name, mbq_client **out)
{
    if (!out)
        return -EINVAL;
    if (client_name && strlen(client_name) > 255)
        return -EINVAL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (socket_path) {
        if (!*socket_path)
            return -EINVAL;
        if (strlen(socket_path) >= sizeof(sa.sun_path))
            return -ENAMETOOLONG;
        memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
    } else {
        int n = mbq_default_socket_path(sa.sun_path, sizeof(sa.sun_path));
        if (n < 0)
            return n;
        if ((size_t)n >= sizeof(sa.sun_path))
            return -ENAMETOOLONG;
    }

    mbq_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->fd = -1;
    c->addr = sa;
    snprintf(c->name, sizeof(c->name), "%s", client_name ? client_name : "");
    pthread_mutex_init(&c->lock, NULL);
    c->sendbuf = malloc(WIRE_MAX_PACKET);
    c->recvbuf = malloc(WIRE_MAX_PACKET);
    if (!c->sendbuf || !c->recvbuf) {
        client_free(c);
        return -ENOMEM;
    }
    c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        int r = -errno;
        client_free(c);
        return r;
    }
    int r;
    do
        r = connect(c->fd, (const struct sockaddr *)&sa, sizeof(sa));
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        r = -errno;
        client_free(c);
        return r;
    }
    pthread_mutex_lock(&c->lock);
    r = client_hello_locked(c, client_name);
    pthread_mutex_unlock(&c->lock);
    if (r < 0) {
        client_free(c);
        return r;
    }
    *out = c;
    return 0;
}

void mbq_disconnect(mbq_client *client)
{
    if (!client)
        return;
    mbq_client *c = client;
    pthread_mutex_lock(&c->lock);
    /* No round trips: closing the connection tells the daemon to close the
     * objects and remove the triggers; the local state goes here. */
    c->dead = true;
    for (size_t i = 0; i < client_n_kinds; i++)
        client_kinds[i]->close_all(c);
    pthread_mutex_unlock(&c->lock);
    client_free(c);
}

uint32_t mbq_client_id(mbq_client *client)
{
    return client ? slock_identity() : 0;
}

int mbq_client_fd(mbq_client *client)
{
    return client ? client->fd : -EINVAL;
}

int mbq_client_dispatch(mbq_client *client)
{
    if (!client)
        return -EINVAL;
    pthread_mutex_lock(&client->lock);
    int r = client_dispatch_locked(client);
    if (r == -ENOTCONN && client->restartable && !client->reconnecting &&
        client_reconnect_locked(client) == 0)
        r = client_dispatch_locked(client);
    if (r == 0 && client->objects_lost) {
        client->objects_lost = false; /* said once */
        r = -EIDRM;
    }
    pthread_mutex_unlock(&client->lock);
    return r;
}

int client_dispatch_locked(mbq_client *c)
{
    int r = 0;
    while (!c->dead) {
        Mbq__V1__ServerMessage *msg = NULL;
        struct wire_fds fds = {.n = 0};
        r = client_recv_locked(c, 0, &msg, &fds);
        if (r == -EAGAIN) {
            r = 0;
            break;
        }
        if (r < 0)
            break;
        if (msg->msg_case == MBQ__V1__SERVER_MESSAGE__MSG_EVENT && msg->event)
            client_apply_event_locked(c, msg->event, &fds);
        /* a response here answers a request that timed out: drop it */
        wire_fds_close(&fds);
        mbq__v1__server_message__free_unpacked(msg, NULL);
    }
    client_events_done_locked(c);
    if (c->dead)
        r = -ENOTCONN;
    return r;
}

int mbq_unlink(mbq_client *client, const char *name)
{
    if (!client)
        return -EINVAL;
    if (!objname_valid(name))
        return -EINVAL;
    Mbq__V1__Unlink ul = MBQ__V1__UNLINK__INIT;
    ul.name = (char *)name;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_UNLINK;
    req.unlink = &ul;
    pthread_mutex_lock(&client->lock);
    int r = client_request_locked(client, &req);
    pthread_mutex_unlock(&client->lock);
    return r;
}

/* ---- status strings ------------------------------------------------------------ */

const char *mbq_status_string(int status)
{
    switch (status) {
    case MBQ_OK: return "success";
    case MBQ_BQ_ERR_ALLOCATION_FAILED: return "buffer queue: allocation failed";
    case MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING: return "buffer queue: required parameter missing";
    case MBQ_BQ_ERR_INVALID_CALLBACKS: return "buffer queue: invalid callbacks";
    case MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA: return "buffer queue: enqueue after end of data";
    case MBQ_BQ_ERR_QUEUE_IS_FULL: return "buffer queue: queue is full";
    case MBQ_BQ_ERR_BAD_TRIGGER_DURATION: return "buffer queue: bad trigger duration";
    case MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK:
        return "buffer queue: cannot modify the queue from a trigger callback";
    case MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION: return "buffer queue: invalid trigger condition";
    case MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN: return "buffer queue: invalid trigger token";
    case MBQ_BQ_ERR_INVALID_BUFFER: return "buffer queue: invalid buffer";
    case MBQ_SQ_ERR_ALLOCATION_FAILED: return "simple queue: allocation failed";
    case MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING: return "simple queue: required parameter missing";
    case MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE: return "simple queue: parameter out of range";
    case MBQ_SQ_ERR_QUEUE_IS_FULL: return "simple queue: queue is full";
    case MBQ_POOL_ERR_ALLOCATION_FAILED: return "memory pool: allocation failed";
    case MBQ_POOL_ERR_INVALID_PARAMETER: return "memory pool: invalid parameter";
    /* errno values with an mbq meaning (see <mbq/status.h>) */
    case -EBADMSG: return "segment failed validation (corrupt or not an mbq segment)";
    case -EUCLEAN: return "shared state inconsistent and could not be repaired";
    case -ESTALE: return "stale buffer (its block was freed)";
    case -ETIMEDOUT: return "timed out";
    case -EBUSY: return "locked by a process that does not let go (stopped, hung or hostile)";
    case -EAGAIN: return "nothing available";
    case -ENODATA: return "end of data";
    case -ENOTCONN: return "not connected to mbqd";
    case -ECONNREFUSED: return "connection refused (is mbqd running?)";
    case -EPROTO: return "protocol error (version mismatch or bad message)";
    case -EIDRM: return "the daemon restarted without this object";
    default: break;
    }
    if (status < 0 && status > -4096) {
        /* glibc's table of descriptions is static and thread-safe */
        const char *s = strerrordesc_np(-status);
        if (s)
            return s;
    }
    return "unknown status";
}
