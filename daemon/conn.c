/* Connections: one client socket's reads and writes on the libevent loop,
 * below the session (which knows the protocol) and the server (which
 * accepts and pairs each connection with a session).
 *
 * Invariants.
 *  - Every fd is non-blocking and close-on-exec; nothing here waits for a
 *    client. A packet that cannot be written now is queued with its
 *    descriptors duplicated (the originals may close before it leaves) and
 *    sent in order on EV_WRITE. A client that lets CONN_MAX_QUEUED packets
 *    pile up is dropped; the others do not notice.
 *  - A connection is dropped by conn_drop(): its reads and writes stop at
 *    once and its owner hears of it (events->ended) from a separate event
 *    that the loop runs right after the current callback. So no callback
 *    ever frees a connection or session that a caller up the stack still
 *    uses (a session ending pushes TriggersChanged to others, whose send
 *    may fail and drop them in turn: they simply end a little later).
 *  - One callback reads at most CONN_READ_BATCH packets, so a busy client
 *    cannot starve the others (the read event is level-triggered).
 *  - Packets are read into, and packed in, one buffer each for all
 *    connections: the daemon has one thread and nothing keeps them across
 *    callbacks. */
#include "conn.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define CONN_READ_BATCH 32

typedef struct OutPacket {
    struct list link;
    size_t len;
    unsigned nfds;
    int fds[WIRE_MAX_FDS]; /* owned duplicates */
    uint8_t data[];
} OutPacket;

struct Conn {
    int fd;
    struct event *ev_read, *ev_write, *ev_end;
    const ConnEvents *events;
    void *userdata;
    struct list outq;
    unsigned outq_len;
    bool dead;
    enum session_end why;
    char detail[128];
    uint64_t session_id; /* for log lines */
    pid_t pid;
    uid_t uid;
};

static uint8_t conn_rbuf[WIRE_MAX_PACKET];
static uint8_t conn_wbuf[WIRE_MAX_PACKET];

/* ---- writing ---- */

static OutPacket *outpacket_free(OutPacket *p)
{
    for (unsigned i = 0; i < p->nfds; i++)
        safe_close(p->fds[i]);
    free(p);
    return NULL;
}

static enum session_end send_error_kind(int r)
{
    return r == -EPIPE || r == -ECONNRESET ? SESSION_END_EOF : SESSION_END_ERROR;
}

static int conn_queue(Conn *c, const uint8_t *data, size_t len, const int *fds, unsigned nfds)
{
    if (c->outq_len >= CONN_MAX_QUEUED) {
        log_msg_fields(LOG_LEVEL_WARNING,
                       LOG_FIELDS(LOG_NUM("SESSION_ID", c->session_id), LOG_NUM("CLIENT_PID", c->pid),
                                  LOG_NUM("CLIENT_UID", c->uid)),
                       "session %" PRIu64 " (pid %d, uid %u): %u messages wait to be read; "
                       "disconnecting", c->session_id, (int)c->pid, (unsigned)c->uid, c->outq_len);
        conn_drop(c, SESSION_END_SLOW, NULL);
        return -ENOBUFS;
    }
    OutPacket *p = malloc(sizeof(*p) + len);
    if (!p) {
        conn_drop(c, SESSION_END_ERROR, "out of memory");
        return -ENOMEM;
    }
    p->len = len;
    p->nfds = 0;
    memcpy(p->data, data, len);
    for (unsigned i = 0; i < nfds; i++) {
        int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
            int r = -errno;
            outpacket_free(p);
            conn_drop(c, SESSION_END_ERROR, "cannot duplicate a descriptor to queue it");
            return r;
        }
        p->fds[p->nfds++] = fd;
    }
    list_add_tail(&c->outq, &p->link);
    if (c->outq_len++ == 0)
        event_add(c->ev_write, NULL);
    return 0;
}

int conn_send(Conn *c, const Mbq__V1__ServerMessage *msg, const int *fds, unsigned nfds)
{
    if (c->dead)
        return -ENOTCONN;
    size_t len = mbq__v1__server_message__get_packed_size(msg);
    if (len > WIRE_MAX_PACKET || nfds > WIRE_MAX_FDS)
        return -EMSGSIZE;
    mbq__v1__server_message__pack(msg, conn_wbuf);
    if (c->outq_len == 0) {
        int r = wire_send(c->fd, conn_wbuf, len, fds, nfds);
        if (r == 0)
            return 0;
        if (r != -EAGAIN) {
            conn_drop(c, send_error_kind(r), strerror(-r));
            return r;
        }
    }
    return conn_queue(c, conn_wbuf, len, fds, nfds);
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    Conn *c = arg;
    while (!list_empty(&c->outq)) {
        OutPacket *p = list_entry(c->outq.next, OutPacket, link);
        int r = wire_send(c->fd, p->data, p->len, p->fds, p->nfds);
        if (r == -EAGAIN)
            return;
        if (r < 0) {
            conn_drop(c, send_error_kind(r), strerror(-r));
            return;
        }
        list_del(&p->link);
        c->outq_len--;
        outpacket_free(p);
    }
    event_del(c->ev_write);
}

/* ---- reading ---- */

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    Conn *c = arg;
    for (int i = 0; i < CONN_READ_BATCH && !c->dead; i++) {
        struct wire_fds fds;
        ssize_t n = wire_recv(c->fd, conn_rbuf, sizeof(conn_rbuf), &fds);
        if (n == -EAGAIN)
            return;
        if (n == -EMSGSIZE) { /* wire_recv closed what came with it */
            c->events->truncated(c->userdata);
            conn_drop(c, SESSION_END_PROTOCOL, "truncated packet");
            return;
        }
        if (n < 0) {
            conn_drop(c, n == -ECONNRESET ? SESSION_END_EOF : SESSION_END_ERROR,
                      strerror((int)-n));
            return;
        }
        if (n == 0) {
            /* An orderly shutdown (a zero-length packet reads the same). */
            wire_fds_close(&fds);
            conn_drop(c, SESSION_END_EOF, NULL);
            return;
        }
        if (c->events->packet(c->userdata, conn_rbuf, (size_t)n, &fds) < 0) {
            conn_drop(c, SESSION_END_PROTOCOL, NULL);
            return;
        }
    }
}

/* ---- life cycle ---- */

static void conn_on_end(evutil_socket_t fd, short what, void *arg)
{
    Conn *c = arg;
    c->events->ended(c->userdata, c->why, c->detail[0] ? c->detail : NULL);
}

int conn_new(Conn **ret, struct event_base *base, int fd, const ConnEvents *events,
             void *userdata)
{
    Conn *c = calloc(1, sizeof(*c));
    if (!c) {
        safe_close(fd);
        return -ENOMEM;
    }
    c->fd = fd;
    c->events = events;
    c->userdata = userdata;
    list_init(&c->outq);
    c->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
    c->ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
    c->ev_end = event_new(base, -1, 0, conn_on_end, c);
    if (!c->ev_read || !c->ev_write || !c->ev_end) {
        conn_free(c);
        return -ENOMEM;
    }
    *ret = c;
    return 0;
}

int conn_start(Conn *c)
{
    return event_add(c->ev_read, NULL) < 0 ? -ENOMEM : 0;
}

void conn_set_peer(Conn *c, uint64_t session_id, pid_t pid, uid_t uid)
{
    c->session_id = session_id;
    c->pid = pid;
    c->uid = uid;
}

Conn *conn_free(Conn *c)
{
    if (!c)
        return NULL;
    list_for_each_safe(it, &c->outq)
        outpacket_free(list_entry(it, OutPacket, link));
    if (c->ev_read)
        event_free(c->ev_read);
    if (c->ev_write)
        event_free(c->ev_write);
    if (c->ev_end)
        event_free(c->ev_end);
    safe_close(c->fd);
    free(c);
    return NULL;
}

void conn_drop(Conn *c, enum session_end why, const char *detail)
{
    if (c->dead)
        return;
    c->dead = true;
    c->why = why;
    snprintf(c->detail, sizeof(c->detail), "%s", detail ? detail : "");
    event_del(c->ev_read);
    event_del(c->ev_write);
    event_active(c->ev_end, EV_TIMEOUT, 0);
}

bool conn_dropped(const Conn *c, enum session_end *why, const char **detail)
{
    if (c->dead) {
        *why = c->why;
        *detail = c->detail[0] ? c->detail : NULL;
    }
    return c->dead;
}
