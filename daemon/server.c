/* The server: the listening socket, accepting clients, and pairing each
 * connection (conn.c: its reads, writes and output queue) with a session
 * (session.c: the protocol).
 *
 * Role. The server owns the socket file (taken over from a dead daemon if
 * stale, never from a live one), accepts SOCK_SEQPACKET connections and
 * keeps the list of clients: which processes have a live session (reclaim
 * and restore ask), how many there are.
 *
 * Invariants.
 *  - A client's session ends from its connection's ended event, which the
 *    loop runs right after the callback that dropped the connection (see
 *    conn.c): the death of a client process is handled in microseconds,
 *    without polling.
 *  - A dropped connection's client stays on the list until then, but no
 *    longer counts as a live session.
 *  - At shutdown, the socket file is removed only if it is still the one
 *    this daemon bound (same device and inode); a socket the service
 *    manager passed (socket activation) is never unlinked: it outlives us,
 *    and clients that connect while we restart wait in its backlog. */
#include "server.h"

#include "conn.h"
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

#define ACCEPT_BATCH 16
#define ACCEPT_PAUSE_MS 100

/* One accepted client: its connection and its session. */
typedef struct Client {
    Server *server;
    Conn *conn;
    Session *session;
    struct list link; /* Server.clients */
} Client;

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
    struct event *ev_listen, *ev_resume;
    struct list clients;
    uint64_t last_session_id;
};

/* ---- clients ---- */

static bool client_live(const Client *cl)
{
    enum session_end why;
    const char *detail;
    return cl->session && !conn_dropped(cl->conn, &why, &detail);
}

static void client_free(Client *cl, enum session_end why, const char *detail)
{
    list_del(&cl->link);
    cl->session = session_end(cl->session, why, detail);
    conn_free(cl->conn);
    free(cl);
}

static int client_on_packet(void *userdata, const uint8_t *buf, size_t len, struct wire_fds *fds)
{
    Client *cl = userdata;
    return session_dispatch(cl->session, buf, len, fds);
}

static void client_on_truncated(void *userdata)
{
    Client *cl = userdata;
    session_protocol_error(cl->session, -EPROTO,
                           "mbqd: packet truncated: larger than 65536 bytes or 48 descriptors");
}

static void client_on_ended(void *userdata, enum session_end why, const char *detail)
{
    client_free(userdata, why, detail);
}

static const ConnEvents client_conn_events = {
    .packet = client_on_packet,
    .truncated = client_on_truncated,
    .ended = client_on_ended,
};

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

static int server_add_client(Server *srv, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        int r = -errno;
        safe_close(fd);
        return r;
    }
    Client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        safe_close(fd);
        return -ENOMEM;
    }
    cl->server = srv;
    list_init(&cl->link);
    int pidfd = peer_pidfd(fd, cred.pid);
    int r = conn_new(&cl->conn, srv->base, fd, &client_conn_events, cl);
    if (r == 0)
        r = session_new(&cl->session, srv->reclaimer, cl->conn, srv->registry, &srv->limits,
                        ++srv->last_session_id, cred.pid, cred.uid, cred.gid, TAKE_FD(pidfd));
    if (r == 0) {
        conn_set_peer(cl->conn, cl->session->id, cred.pid, cred.uid);
        r = conn_start(cl->conn);
    }
    if (r < 0) {
        safe_close(pidfd);
        session_end(cl->session, SESSION_END_SHUTDOWN, NULL);
        conn_free(cl->conn);
        free(cl);
        return r;
    }
    list_add_tail(&srv->clients, &cl->link);
    log_msg(LOG_LEVEL_DEBUG, "session %" PRIu64 ": connected, pid %d uid %u gid %u",
            cl->session->id, (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
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
                        strerror(e), server_session_count(srv), ACCEPT_PAUSE_MS);
                event_del(srv->ev_listen);
                struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
                event_add(srv->ev_resume, &tv);
                return;
            }
            log_msg(LOG_LEVEL_ERROR, "accept: %s", strerror(e));
            return;
        }
        int r = server_add_client(srv, cfd);
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
    list_init(&srv->clients);
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
        if (!srv->ev_listen || !srv->ev_resume ||
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
     * keep their mappings, buffers and triggers through a restart. All are
     * dropped first, so that no ending session sends to another. */
    list_for_each_safe(it, &srv->clients)
        conn_drop(list_entry(it, Client, link)->conn, SESSION_END_SHUTDOWN, NULL);
    list_for_each_safe(it, &srv->clients) {
        Client *cl = list_entry(it, Client, link);
        enum session_end why = SESSION_END_SHUTDOWN;
        const char *detail = NULL;
        conn_dropped(cl->conn, &why, &detail);
        client_free(cl, why, detail);
    }
    reclaimer_free(srv->reclaimer);
    free(srv);
    return NULL;
}

size_t server_session_count(const Server *srv)
{
    size_t n = 0;
    list_for_each_safe(it, (struct list *)&srv->clients)
        n += client_live(list_entry(it, Client, link));
    return n;
}

bool server_pid_has_session(Server *srv, pid_t pid, const Session *except)
{
    list_for_each_safe(it, &srv->clients) {
        const Client *cl = list_entry(it, Client, link);
        if (client_live(cl) && cl->session != except && cl->session->pid == pid)
            return true;
    }
    return false;
}
