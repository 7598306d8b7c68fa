/* The server: the listening socket, accepting clients, and every
 * connection's reads and writes on the one libevent loop.
 *
 * Role. The server owns the socket file (taken over from a dead daemon if
 * stale, never from a live one), accepts SOCK_SEQPACKET connections, reads
 * one packet at a time with wire_recv() into one shared buffer and hands it
 * to the connection's session, and writes what sessions send.
 *
 * Invariants.
 *  - Every fd is non-blocking and close-on-exec; nothing here waits for a
 *    client. A packet that cannot be written now is queued with its
 *    descriptors duplicated (the originals may close before it leaves) and
 *    sent in order on EV_WRITE. A client that lets CONN_MAX_QUEUED packets
 *    pile up is dropped; the others do not notice.
 *  - A connection is dropped by conn_drop(): its events stop at once and it
 *    moves to the dead list; its session ends from a separate event that the
 *    loop runs right after the current callback. So no callback ever frees a
 *    connection or session that a caller up the stack still uses (a session
 *    ending pushes TriggersChanged to others, whose send may fail and drop
 *    them in turn: they simply join the dead list).
 *  - A session ends within the loop iteration that saw its EOF: the death
 *    of a client process is handled in microseconds, without polling.
 *  - One callback reads at most CONN_READ_BATCH packets, so a busy client
 *    cannot starve the others (the read event is level-triggered).
 *  - At shutdown, the socket file is removed only if it is still the one
 *    this daemon bound (same device and inode); a socket the service
 *    manager passed (socket activation) is never unlinked: it outlives us,
 *    and clients that connect while we restart wait in its backlog. */
#include "server.h"

#include "log.h"
#include "reclaim.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define CONN_READ_BATCH 32
#define ACCEPT_BATCH 16
#define ACCEPT_PAUSE_MS 100

typedef struct OutPacket {
    struct list link;
    size_t len;
    unsigned nfds;
    int fds[WIRE_MAX_FDS]; /* owned duplicates */
    uint8_t data[];
} OutPacket;

struct Conn {
    Server *server;
    int fd;
    struct event *ev_read, *ev_write;
    Session *session;
    struct list outq;
    unsigned outq_len;
    bool dead;
    enum session_end why;
    char detail[128];
    struct list link; /* Server.conns, then Server.dead */
};

struct Server {
    struct event_base *base;
    Registry *registry;
    Reclaimer *reclaimer;
    SessionLimits limits;
    char *path; /* the socket file we bound and must remove; NULL if passed */
    char address[108];
    dev_t dev;
    ino_t ino;
    int listen_fd;
    struct event *ev_listen, *ev_resume, *ev_reap;
    struct list conns; /* live */
    struct list dead;  /* dropped, waiting for ev_reap */
    size_t n_conns;
    uint64_t last_session_id;
    uint8_t rbuf[WIRE_MAX_PACKET];
    uint8_t wbuf[WIRE_MAX_PACKET];
};

/* ---- connections: writing ---- */

static OutPacket *outpacket_free(OutPacket *p)
{
    for (unsigned i = 0; i < p->nfds; i++)
        safe_close(p->fds[i]);
    free(p);
    return NULL;
}

static const char *errno_text(int neg)
{
    return strerror(-neg);
}

static enum session_end send_error_kind(int r)
{
    return r == -EPIPE || r == -ECONNRESET ? SESSION_END_EOF : SESSION_END_ERROR;
}

static int conn_queue(Conn *c, const uint8_t *data, size_t len, const int *fds, unsigned nfds)
{
    if (c->outq_len >= CONN_MAX_QUEUED) {
        log_msg_fields(LOG_LEVEL_WARNING,
                       LOG_FIELDS(LOG_NUM("SESSION_ID", c->session->id),
                                  LOG_NUM("CLIENT_PID", c->session->pid),
                                  LOG_NUM("CLIENT_UID", c->session->uid)),
                       "session %" PRIu64 " (pid %d, uid %u): %u messages wait to be read; "
                       "disconnecting", c->session->id, (int)c->session->pid,
                       (unsigned)c->session->uid, c->outq_len);
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
    uint8_t *buf = c->server->wbuf;
    mbq__v1__server_message__pack(msg, buf);
    if (c->outq_len == 0) {
        int r = wire_send(c->fd, buf, len, fds, nfds);
        if (r == 0)
            return 0;
        if (r != -EAGAIN) {
            conn_drop(c, send_error_kind(r), errno_text(r));
            return r;
        }
    }
    return conn_queue(c, buf, len, fds, nfds);
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
            conn_drop(c, send_error_kind(r), errno_text(r));
            return;
        }
        list_del(&p->link);
        c->outq_len--;
        outpacket_free(p);
    }
    event_del(c->ev_write);
}

/* ---- connections: reading ---- */

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    Conn *c = arg;
    Server *srv = c->server;
    for (int i = 0; i < CONN_READ_BATCH && !c->dead; i++) {
        struct wire_fds fds;
        ssize_t n = wire_recv(c->fd, srv->rbuf, sizeof(srv->rbuf), &fds);
        if (n == -EAGAIN)
            return;
        if (n == -EMSGSIZE) { /* wire_recv closed what came with it */
            session_protocol_error(c->session, -EPROTO,
                                   "mbqd: packet truncated: larger than 65536 bytes or 48 descriptors");
            conn_drop(c, SESSION_END_PROTOCOL, "truncated packet");
            return;
        }
        if (n < 0) {
            conn_drop(c, n == -ECONNRESET ? SESSION_END_EOF : SESSION_END_ERROR,
                      errno_text((int)n));
            return;
        }
        if (n == 0) {
            /* An orderly shutdown (a zero-length packet reads the same). */
            wire_fds_close(&fds);
            conn_drop(c, SESSION_END_EOF, NULL);
            return;
        }
        if (session_dispatch(c->session, srv->rbuf, (size_t)n, &fds) < 0) {
            conn_drop(c, SESSION_END_PROTOCOL, NULL);
            return;
        }
    }
}

/* ---- connections: life cycle ---- */

static Conn *conn_free(Conn *c)
{
    list_for_each_safe(it, &c->outq)
        outpacket_free(list_entry(it, OutPacket, link));
    if (c->ev_read)
        event_free(c->ev_read);
    if (c->ev_write)
        event_free(c->ev_write);
    safe_close(c->fd);
    free(c);
    return NULL;
}

void conn_drop(Conn *c, enum session_end why, const char *detail)
{
    if (c->dead)
        return;
    Server *srv = c->server;
    c->dead = true;
    c->why = why;
    snprintf(c->detail, sizeof(c->detail), "%s", detail ? detail : "");
    event_del(c->ev_read);
    event_del(c->ev_write);
    list_del(&c->link);
    srv->n_conns--;
    list_add_tail(&srv->dead, &c->link);
    event_active(srv->ev_reap, EV_TIMEOUT, 0);
}

static void server_on_reap(evutil_socket_t fd, short what, void *arg)
{
    Server *srv = arg;
    while (!list_empty(&srv->dead)) {
        Conn *c = list_entry(srv->dead.next, Conn, link);
        list_del(&c->link);
        c->session = session_end(c->session, c->why, c->detail[0] ? c->detail : NULL);
        conn_free(c);
    }
}

/* The peer's pidfd: SO_PEERPIDFD names the very process that connected
 * (Linux 6.5); pidfd_open by pid is the fallback (5.3). -1 if neither. */
static int peer_pidfd(int fd, pid_t pid)
{
    int pidfd = -1;
    socklen_t len = sizeof(pidfd);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0 || pidfd < 0)
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0)
        fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    return pidfd < 0 ? -1 : pidfd;
}

static int server_add_conn(Server *srv, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        int r = -errno;
        safe_close(fd);
        return r;
    }
    Conn *c = calloc(1, sizeof(*c));
    if (!c) {
        safe_close(fd);
        return -ENOMEM;
    }
    c->server = srv;
    c->fd = fd;
    list_init(&c->outq);
    list_init(&c->link);
    c->ev_read = event_new(srv->base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
    c->ev_write = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
    int r = c->ev_read && c->ev_write ? 0 : -ENOMEM;
    if (r == 0)
        r = session_new(&c->session, srv, c, srv->registry, &srv->limits,
                        ++srv->last_session_id, cred.pid, cred.uid, cred.gid,
                        peer_pidfd(fd, cred.pid));
    if (r == 0 && event_add(c->ev_read, NULL) < 0)
        r = -ENOMEM;
    if (r < 0) {
        session_end(c->session, SESSION_END_SHUTDOWN, NULL);
        conn_free(c);
        return r;
    }
    list_add_tail(&srv->conns, &c->link);
    srv->n_conns++;
    log_msg(LOG_LEVEL_DEBUG, "session %" PRIu64 ": connected, pid %d uid %u gid %u",
            c->session->id, (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
    return 0;
}

static void server_on_resume(evutil_socket_t fd, short what, void *arg)
{
    Server *srv = arg;
    event_add(srv->ev_listen, NULL);
}

static void server_on_accept(evutil_socket_t fd, short what, void *arg)
{
    Server *srv = arg;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int cfd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                /* Out of descriptors: the pending connection would wake us
                 * in a loop. Pause accepting until some are released. */
                log_msg(LOG_LEVEL_WARNING, "accept: %s (%zu sessions); pausing for %d ms",
                        strerror(e), srv->n_conns, ACCEPT_PAUSE_MS);
                event_del(srv->ev_listen);
                struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
                event_add(srv->ev_resume, &tv);
                return;
            }
            log_msg(LOG_LEVEL_ERROR, "accept: %s", strerror(e));
            return;
        }
        int r = server_add_conn(srv, cfd);
        if (r < 0)
            log_msg(LOG_LEVEL_WARNING, "cannot set up a connection: %s", strerror(-r));
    }
}

/* ---- the socket file ---- */

/* Creates the missing directories above path, mode 0755. */
static int mkdir_parents(const char *path)
{
    _cleanup_(freep) char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0755) == 0) {
            chmod(p, 0755); /* whatever the umask */
            log_msg(LOG_LEVEL_DEBUG, "created directory %s", p);
        } else if (errno != EEXIST) {
            int r = -errno;
            log_msg(LOG_LEVEL_ERROR, "cannot create directory %s: %s", p, strerror(-r));
            return r;
        }
        *s = '/';
    }
    return 0;
}

/* Makes path free to bind: nothing there, or a socket nobody answers on. */
static int server_claim_path(const char *path, const struct sockaddr_un *sa, socklen_t salen)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        int r = -errno;
        log_msg(LOG_LEVEL_ERROR, "%s: %s", path, strerror(-r));
        return r;
    }
    if (!S_ISSOCK(st.st_mode)) {
        log_msg(LOG_LEVEL_ERROR, "%s exists and is not a socket; not touching it", path);
        return -ENOTSOCK;
    }
    _cleanup_(closep) int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)sa, salen) == 0) {
        log_msg(LOG_LEVEL_ERROR, "another mbqd is already listening on %s", path);
        return -EADDRINUSE;
    }
    int e = errno;
    if (e == ENOENT)
        return 0; /* it went away meanwhile */
    if (e != ECONNREFUSED) {
        /* EAGAIN: a live listener with a full backlog; EPROTOTYPE: some
         * other kind of socket in use. Either way, not ours to remove. */
        log_msg(LOG_LEVEL_ERROR, "%s is in use (%s); not replacing it", path, strerror(e));
        return -EADDRINUSE;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        int r = -errno;
        log_msg(LOG_LEVEL_ERROR, "cannot remove stale socket %s: %s", path, strerror(-r));
        return r;
    }
    log_msg(LOG_LEVEL_INFO, "removed stale socket %s", path);
    return 0;
}

static int server_listen(Server *srv, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(sa.sun_path)) {
        log_msg(LOG_LEVEL_ERROR, "socket path '%s' is empty or longer than %zu bytes", path,
                sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, len + 1);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);

    int r = mkdir_parents(path);
    if (r < 0)
        return r;
    r = server_claim_path(path, &sa, salen);
    if (r < 0)
        return r;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    srv->listen_fd = fd;
    if (bind(fd, (const struct sockaddr *)&sa, salen) < 0) {
        r = -errno;
        log_msg(LOG_LEVEL_ERROR, "cannot bind %s: %s", path, strerror(-r));
        return r;
    }
    struct stat st;
    /* Access control is per object: anyone may connect. */
    if (chmod(path, 0666) < 0 || lstat(path, &st) < 0) {
        r = -errno;
        log_msg(LOG_LEVEL_ERROR, "cannot set up %s: %s", path, strerror(-r));
        unlink(path);
        return r;
    }
    srv->dev = st.st_dev;
    srv->ino = st.st_ino;
    srv->path = strdup(path);
    if (!srv->path) {
        unlink(path);
        return -ENOMEM;
    }
    if (listen(fd, SOMAXCONN) < 0) {
        r = -errno;
        log_msg(LOG_LEVEL_ERROR, "cannot listen on %s: %s", path, strerror(-r));
        return r;
    }
    return 0;
}

static void server_unlink_path(Server *srv)
{
    struct stat st;
    if (!srv->path)
        return;
    if (lstat(srv->path, &st) == 0 && st.st_dev == srv->dev && st.st_ino == srv->ino)
        unlink(srv->path);
    free(srv->path);
    srv->path = NULL;
}

/* ---- the server ---- */

/* A socket the service manager passed: ours to accept on, not to unlink. */
static int server_adopt(Server *srv, int fd)
{
    srv->listen_fd = fd;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int r = -errno;
        log_msg(LOG_LEVEL_ERROR, "cannot set up the passed socket: %s", strerror(-r));
        return r;
    }
    struct sockaddr_un sa;
    socklen_t len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sun_family == AF_UNIX &&
        len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0])
        snprintf(srv->address, sizeof(srv->address), "%.*s",
                 (int)(len - offsetof(struct sockaddr_un, sun_path)), sa.sun_path);
    else
        snprintf(srv->address, sizeof(srv->address), "passed socket (fd %d)", fd);
    return 0;
}

const char *server_address(const Server *srv)
{
    return srv->address[0] ? srv->address : "?";
}

static bool server_has_session_cb(void *ctx, pid_t pid)
{
    return server_pid_has_session(ctx, pid, NULL);
}

int server_new(Server **ret, struct event_base *base, Registry *registry, PidWatch *pw,
               const SessionLimits *limits, const char *path, int listen_fd)
{
    Server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        safe_close(listen_fd);
        return -ENOMEM;
    }
    srv->base = base;
    srv->registry = registry;
    srv->limits = *limits;
    srv->listen_fd = -1;
    list_init(&srv->conns);
    list_init(&srv->dead);
    int r = reclaimer_new(&srv->reclaimer, pw, registry, server_has_session_cb, srv);
    if (r < 0)
        safe_close(listen_fd);
    else if (listen_fd >= 0)
        r = server_adopt(srv, listen_fd);
    else {
        r = server_listen(srv, path);
        if (r == 0)
            snprintf(srv->address, sizeof(srv->address), "%s", path);
    }
    if (r == 0) {
        srv->ev_listen = event_new(base, srv->listen_fd, EV_READ | EV_PERSIST, server_on_accept, srv);
        srv->ev_resume = evtimer_new(base, server_on_resume, srv);
        srv->ev_reap = event_new(base, -1, 0, server_on_reap, srv);
        if (!srv->ev_listen || !srv->ev_resume || !srv->ev_reap ||
            event_add(srv->ev_listen, NULL) < 0)
            r = -ENOMEM;
    }
    if (r < 0) {
        server_free(srv);
        return r;
    }
    *ret = srv;
    return 0;
}

Server *server_free(Server *srv)
{
    if (!srv)
        return NULL;
    if (srv->ev_listen)
        event_free(srv->ev_listen);
    if (srv->ev_resume)
        event_free(srv->ev_resume);
    srv->listen_fd = safe_close(srv->listen_fd);
    server_unlink_path(srv);
    /* Every connection, live or already dropped, ends quietly: the clients
     * keep their mappings, buffers and triggers through a restart. */
    list_for_each_safe(it, &srv->conns) {
        Conn *c = list_entry(it, Conn, link);
        conn_drop(c, SESSION_END_SHUTDOWN, NULL);
    }
    list_for_each_safe(it, &srv->dead) {
        Conn *c = list_entry(it, Conn, link);
        list_del(&c->link);
        c->session = session_end(c->session, c->why, c->detail[0] ? c->detail : NULL);
        conn_free(c);
    }
    if (srv->ev_reap)
        event_free(srv->ev_reap);
    reclaimer_free(srv->reclaimer);
    free(srv);
    return NULL;
}

size_t server_session_count(const Server *srv)
{
    return srv->n_conns;
}

Reclaimer *server_reclaimer(Server *srv)
{
    return srv->reclaimer;
}

bool server_pid_has_session(Server *srv, pid_t pid, const Session *except)
{
    list_for_each_safe(it, &srv->conns) {
        const Conn *c = list_entry(it, Conn, link);
        if (c->session && c->session != except && c->session->pid == pid)
            return true;
    }
    return false;
}
