/* mbqd under a service manager, without systemd: this test plays the
 * manager. It holds the listening socket (as mbqd.socket does: bound once,
 * kept across restarts), passes it as LISTEN_FDS with LISTEN_PID and
 * LISTEN_FDNAMES, reads the notifications on its own NOTIFY_SOCKET (a
 * datagram socket with SO_PASSCRED, taking the descriptors of FDSTORE=1
 * messages the way systemd's fd store does, honouring FDSTOREREMOVE=1), and
 * starts the next mbqd with the socket plus every stored descriptor, named.
 * It checks what a user relies on:
 *   - READY=1 comes once the socket serves: a client connects and sees every
 *     restored object at that moment; STATUS= follows objects and clients;
 *     WATCHDOG=1 arrives at about half of WATCHDOG_USEC and stops under the
 *     test hook; STOPPING=1 on SIGTERM, which leaves the store alone.
 *   - Every segment, trigger eventfd and a sealed state record are stored
 *     under their names; a destroyed object's descriptors leave the store.
 *   - After SIGKILL (a crash) or SIGTERM (systemctl restart) the next mbqd
 *     restores every object with its contents: a sorted queue's buffers and
 *     their data, a simple queue's values, pool accounting, a trigger still
 *     installed, still firing, and adopted by its process when it comes
 *     back; the trigger of a process that died meanwhile is gone.
 *   - Clients connected across the restart keep producing and consuming
 *     (the data plane never stops, even while no daemon runs), then
 *     reconnect on their own at their next control call: no buffer lost or
 *     duplicated.
 *   - What does not check out is dropped, the rest restored; the daemon
 *     refuses objects the store could not keep.
 *   - After a restart with an empty store (systemctl stop), a client's
 *     objects are lost to the daemon (-EIDRM) but not to the client.
 *   - A queue's bound pools come back with it: destroyed after a crash,
 *     it releases the entries of its bound pool and ignores one written
 *     straight into its memory naming a pool never bound to it.
 *   - A restart leaves no pool slot of the previous mbqd behind, and
 *     finishes a dead client's reclaim the previous one was killed in.
 * Every wait is on the notify socket, a pipe or a poll with a deadline.
 *
 * Like systemd, the manager reads notifications all the time (a thread):
 * sd_notify() blocks when the socket's queue is full (net.unix.max_dgram_qlen,
 * 10 by default), so a manager that stopped reading would stall mbqd. The
 * main thread sees the manager's state under its mutex; mgr_sync() sends
 * the manager a datagram of its own and waits until it is read, so that
 * every notification mbqd sent before is accounted for. */
#include "harness.h"
#include "segments.h"

#include <bq_layout.h>
#include <pool_layout.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define MAX_STORED 512
#define READY_MS 30000
#define WATCHDOG_USEC 200000

/* ---- the fake service manager ---------------------------------------------- */

struct stored {
    int fd;
    char name[256];
};

struct mgr {
    char dir[80];
    char sock[108];
    char notify[108];
    int listen_fd;
    int notify_fd;
    pid_t pid;
    struct stored store[MAX_STORED];
    int nstore;
    /* what the current mbqd said */
    bool ready, stopping;
    char status[256];
    unsigned watchdogs;
    uint64_t last_watchdog_ns;
    unsigned fdstore_msgs, fdstore_removes;
    /* the reader thread */
    pthread_t thread;
    bool thread_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int wake[2]; /* the main thread wakes the reader to stop */
    unsigned syncs_sent, syncs_seen;
};

static struct mgr M;

static void mgr_store_remove(struct mgr *m, const char *name)
{
    for (int i = 0; i < m->nstore;) {
        if (strcmp(m->store[i].name, name) == 0) {
            close(m->store[i].fd);
            m->store[i] = m->store[--m->nstore];
        } else {
            i++;
        }
    }
}

/* Stored descriptors whose name starts with prefix ("" for all). */
static int mgr_store_count(struct mgr *m, const char *prefix)
{
    int n = 0;
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < m->nstore; i++)
        if (strncmp(m->store[i].name, prefix, strlen(prefix)) == 0)
            n++;
    pthread_mutex_unlock(&m->lock);
    return n;
}

/* The stored descriptor of that name (still the manager's), or -1. */
static int mgr_store_find(struct mgr *m, const char *name)
{
    int fd = -1;
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < m->nstore && fd < 0; i++)
        if (strcmp(m->store[i].name, name) == 0)
            fd = m->store[i].fd;
    pthread_mutex_unlock(&m->lock);
    return fd;
}

static bool mgr_status_has(struct mgr *m, const char *text)
{
    pthread_mutex_lock(&m->lock);
    bool r = strstr(m->status, text) != NULL;
    if (!r)
        fprintf(stderr, "manager: STATUS='%s' lacks '%s'\n", m->status, text);
    pthread_mutex_unlock(&m->lock);
    return r;
}

static unsigned mgr_watchdogs(struct mgr *m)
{
    pthread_mutex_lock(&m->lock);
    unsigned n = m->watchdogs;
    pthread_mutex_unlock(&m->lock);
    return n;
}

static unsigned mgr_removes(struct mgr *m)
{
    pthread_mutex_lock(&m->lock);
    unsigned n = m->fdstore_removes;
    pthread_mutex_unlock(&m->lock);
    return n;
}

/* Handles one notification; 1 if one was read, 0 if none waits, -errno. */
static int mgr_read_one(struct mgr *m)
{
    char buf[4096];
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * 253) + CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct iovec iov = {buf, sizeof(buf) - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                        .msg_controllen = sizeof(ctl.b)};
    ssize_t n = recvmsg(m->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EAGAIN ? 0 : -errno;
    buf[n] = '\0';
    int fds[253];
    int nfds = 0;
    pid_t sender = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            memcpy(fds + nfds, CMSG_DATA(c), (size_t)k * sizeof(int));
            nfds += k;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred u;
            memcpy(&u, CMSG_DATA(c), sizeof(u));
            sender = u.pid;
        }
    }
    if (sender == getpid() && strncmp(buf, "SYNC=", 5) == 0) {
        m->syncs_seen = (unsigned)strtoul(buf + 5, NULL, 10);
        return 1;
    }
    /* NotifyAccess=main: only the daemon's own messages count. */
    if (sender != m->pid || (mh.msg_flags & MSG_CTRUNC)) {
        fprintf(stderr, "manager: ignoring a message from pid %d%s\n", (int)sender,
                (mh.msg_flags & MSG_CTRUNC) ? " (truncated)" : "");
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        return 1;
    }
    bool fdstore = false, fdstoreremove = false;
    char fdname[256] = "stored";
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strcmp(line, "READY=1"))
            m->ready = true;
        else if (!strcmp(line, "STOPPING=1"))
            m->stopping = true;
        else if (!strcmp(line, "WATCHDOG=1")) {
            m->watchdogs++;
            m->last_watchdog_ns = h_now_ns();
        } else if (!strncmp(line, "STATUS=", 7))
            snprintf(m->status, sizeof(m->status), "%s", line + 7);
        else if (!strcmp(line, "FDSTORE=1"))
            fdstore = true;
        else if (!strcmp(line, "FDSTOREREMOVE=1"))
            fdstoreremove = true;
        else if (!strncmp(line, "FDNAME=", 7))
            snprintf(fdname, sizeof(fdname), "%s", line + 7);
    }
    if (fdstoreremove) {
        m->fdstore_removes++;
        mgr_store_remove(m, fdname);
    }
    for (int i = 0; i < nfds; i++) {
        if (fdstore && m->nstore < MAX_STORED) {
            m->store[m->nstore].fd = fds[i];
            snprintf(m->store[m->nstore].name, sizeof(m->store[0].name), "%s", fdname);
            m->nstore++;
        } else {
            close(fds[i]); /* FileDescriptorStoreMax reached, or not FDSTORE */
        }
    }
    if (fdstore)
        m->fdstore_msgs++;
    return 1;
}

/* The reader thread: every notification, as it comes. */
static void *mgr_thread(void *arg)
{
    struct mgr *m = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = m->notify_fd, .events = POLLIN},
                              {.fd = m->wake[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        pthread_mutex_lock(&m->lock);
        while (mgr_read_one(m) > 0) {
        }
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
    }
    return NULL;
}

static struct timespec deadline_in(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Waits (lock held) until pred(m, arg) or the deadline; returns pred's value. */
static bool mgr_wait_locked(struct mgr *m, bool (*pred)(const struct mgr *, const void *),
                            const void *arg, int timeout_ms)
{
    struct timespec dl = deadline_in(timeout_ms);
    while (!pred(m, arg))
        if (pthread_cond_timedwait(&m->cond, &m->lock, &dl) == ETIMEDOUT)
            return pred(m, arg);
    return true;
}

static bool pred_flag(const struct mgr *m, const void *arg)
{
    return *(const bool *)arg;
}

static bool pred_never(const struct mgr *m, const void *arg)
{
    return false;
}

static bool pred_synced(const struct mgr *m, const void *arg)
{
    return m->syncs_seen >= *(const unsigned *)arg;
}

/* Every notification sent before this call has been handled when it returns. */
static void mgr_sync(struct mgr *m)
{
    pthread_mutex_lock(&m->lock);
    unsigned n = ++m->syncs_sent;
    pthread_mutex_unlock(&m->lock);
    char msg[32];
    int len = snprintf(msg, sizeof(msg), "SYNC=%u", n);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->notify);
    if (fd >= 0)
        sendto(fd, msg, (size_t)len, 0, (struct sockaddr *)&sa, sizeof(sa));
    if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&m->lock);
    if (!mgr_wait_locked(m, pred_synced, &n, H_HANG_MS))
        fprintf(stderr, "manager: sync %u not seen\n", n);
    pthread_mutex_unlock(&m->lock);
}

/* Lets notifications come in for timeout_ms, or until *flag is true.
 * Returns whether *flag is true (true without a flag). */
static bool mgr_pump_until(struct mgr *m, const bool *flag, int timeout_ms)
{
    pthread_mutex_lock(&m->lock);
    bool r = flag ? mgr_wait_locked(m, pred_flag, flag, timeout_ms)
                  : (mgr_wait_locked(m, pred_never, NULL, timeout_ms), true);
    pthread_mutex_unlock(&m->lock);
    return r;
}

static void mgr_pump(struct mgr *m)
{
    mgr_sync(m);
}

static bool pred_status(const struct mgr *m, const void *arg)
{
    return strstr(m->status, (const char *)arg) != NULL;
}

/* Waits until the STATUS= text contains want. */
static bool mgr_wait_status(struct mgr *m, const char *want, int timeout_ms)
{
    pthread_mutex_lock(&m->lock);
    bool r = mgr_wait_locked(m, pred_status, want, timeout_ms);
    if (!r)
        fprintf(stderr, "manager: STATUS='%s', waited for '%s'\n", m->status, want);
    pthread_mutex_unlock(&m->lock);
    return r;
}

static int mgr_init(struct mgr *m)
{
    memset(m, 0, sizeof(*m));
    m->listen_fd = m->notify_fd = -1;
    m->wake[0] = m->wake[1] = -1;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 40)
        tmp = "/tmp";
    snprintf(m->dir, sizeof(m->dir), "%s/mbq-sd-XXXXXX", tmp);
    if (!mkdtemp(m->dir))
        return -errno;
    snprintf(m->sock, sizeof(m->sock), "%s/mbqd.sock", m->dir);
    snprintf(m->notify, sizeof(m->notify), "%s/notify", m->dir);

    /* The socket unit: bound once, kept for every instance. */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->sock);
    m->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (m->listen_fd < 0 || bind(m->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(m->listen_fd, SOMAXCONN) < 0 || chmod(m->sock, 0666) < 0)
        return -errno;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->notify);
    m->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (m->notify_fd < 0 || bind(m->notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        setsockopt(m->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
        return -errno;
    int rcv = 4 << 20;
    setsockopt(m->notify_fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&m->lock, NULL);
    if (pipe2(m->wake, O_CLOEXEC) < 0)
        return -errno;
    if (pthread_create(&m->thread, NULL, mgr_thread, m) != 0)
        return -EAGAIN;
    m->thread_running = true;
    return 0;
}

/* Writes n in decimal (async-signal-safe, for the child of a threaded parent). */
static void put_decimal(char *dst, long n)
{
    char tmp[24];
    int k = 0;
    do
        tmp[k++] = (char)('0' + n % 10);
    while ((n /= 10) > 0);
    while (k)
        *dst++ = tmp[--k];
    *dst = '\0';
}

/* Starts mbqd as systemd would: fds 3.. = the socket, then `extra`
 * (name, fd) if given, else every stored descriptor. args: NULL-terminated
 * extra arguments. watchdog_usec: 0 for none. Everything the child needs
 * is prepared here: after fork it only moves descriptors and execs. */
static int mgr_start_with(struct mgr *m, const char *const *args, unsigned watchdog_usec,
                          const struct stored *extra, int nextra)
{
    const char *exe = getenv("MBQD");
    if (!exe || !*exe) {
        fprintf(stderr, "manager: $MBQD is not set (run through ctest)\n");
        return -1;
    }
    mgr_sync(m); /* nothing of the previous instance counts after this */
    pthread_mutex_lock(&m->lock);
    m->ready = m->stopping = false;
    m->status[0] = '\0';
    m->watchdogs = 0;
    static struct stored pass[MAX_STORED];
    int npass = extra ? nextra : m->nstore;
    memcpy(pass, extra ? extra : m->store, (size_t)npass * sizeof(*pass));
    pthread_mutex_unlock(&m->lock);

    /* The environment: ours without what belongs to the manager, then its. */
    extern char **environ;
    static char *envp[512];
    static char names[MAX_STORED * 260 + 32], fds_var[32], pid_var[32], notify_var[160], wd_var[48];
    int ne = 0;
    for (char **e = environ; *e && ne < 500; e++) {
        static const char *const drop[] = {"LISTEN_", "NOTIFY_SOCKET=", "WATCHDOG_", "JOURNAL_STREAM=",
                                           "FDSTORE="};
        bool skip = false;
        for (size_t k = 0; k < sizeof(drop) / sizeof(drop[0]); k++)
            skip |= strncmp(*e, drop[k], strlen(drop[k])) == 0;
        if (!skip)
            envp[ne++] = *e;
    }
    size_t len = (size_t)snprintf(names, sizeof(names), "LISTEN_FDNAMES=mbqd.socket");
    for (int i = 0; i < npass; i++)
        len += (size_t)snprintf(names + len, sizeof(names) - len, ":%s", pass[i].name);
    snprintf(fds_var, sizeof(fds_var), "LISTEN_FDS=%d", npass + 1);
    snprintf(pid_var, sizeof(pid_var), "LISTEN_PID=");
    snprintf(notify_var, sizeof(notify_var), "NOTIFY_SOCKET=%s", m->notify);
    envp[ne++] = names;
    envp[ne++] = fds_var;
    envp[ne++] = pid_var;
    envp[ne++] = notify_var;
    if (watchdog_usec) {
        snprintf(wd_var, sizeof(wd_var), "WATCHDOG_USEC=%u", watchdog_usec);
        envp[ne++] = wd_var;
    }
    envp[ne] = NULL;
    static const char *argv[32];
    int n = 0;
    argv[n++] = exe;
    const char *level = getenv("MBQ_IT_LOG_LEVEL");
    if (level && *level) {
        argv[n++] = "--log-level";
        argv[n++] = level;
    }
    for (int i = 0; args && args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int go[2];
    if (pipe2(go, O_CLOEXEC) < 0)
        return -1;

    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(go[0]);
        close(go[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(99);
        signal(SIGPIPE, SIG_DFL);
        /* Out of the way first, then into place: 3 = socket, 4.. = store. */
        static int src[1 + MAX_STORED];
        src[0] = fcntl(m->listen_fd, F_DUPFD_CLOEXEC, 1000);
        for (int i = 0; i < npass; i++)
            src[1 + i] = fcntl(pass[i].fd, F_DUPFD_CLOEXEC, 1000);
        for (int i = 0; i <= npass; i++)
            if (src[i] < 0 || dup2(src[i], 3 + i) < 0)
                _exit(98);
        put_decimal(pid_var + strlen("LISTEN_PID="), (long)getpid());
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1) /* the manager knows our pid now */
            _exit(97);
        execve(exe, (char *const *)argv, envp);
        _exit(127);
    }
    pthread_mutex_lock(&m->lock);
    m->pid = pid;
    pthread_mutex_unlock(&m->lock);
    close(go[0]);
    ssize_t w = write(go[1], "g", 1);
    close(go[1]);
    return w == 1 ? 0 : -1;
}

static int mgr_start(struct mgr *m, const char *const *args)
{
    return mgr_start_with(m, args, WATCHDOG_USEC, NULL, 0);
}

/* Waits for READY=1 (bounded); fails if the daemon exits first. */
static bool mgr_wait_ready(struct mgr *m)
{
    uint64_t deadline = h_now_ns() + (uint64_t)READY_MS * 1000000ull;
    for (;;) {
        if (mgr_pump_until(m, &m->ready, 100))
            return true;
        if (h_now_ns() > deadline) {
            fprintf(stderr, "manager: no READY=1 within %d ms\n", READY_MS);
            return false;
        }
        int st;
        if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
            fprintf(stderr, "manager: mbqd exited before READY=1 (status 0x%x)\n", st);
            m->pid = 0;
            return false;
        }
    }
}

/* SIGKILL, like a crash or a watchdog kill, and reap. */
static void mgr_kill(struct mgr *m)
{
    if (m->pid <= 0)
        return;
    kill(m->pid, SIGKILL);
    h_wait_pid(m->pid, H_HANG_MS);
    mgr_pump(m); /* what it said before dying still counts (systemd reads it too) */
    m->pid = 0;
}

/* SIGTERM: expects STOPPING=1 and exit status 0. */
static bool mgr_stop(struct mgr *m)
{
    if (m->pid <= 0)
        return false;
    kill(m->pid, SIGTERM);
    bool stopping = mgr_pump_until(m, &m->stopping, H_HANG_MS);
    int st = h_wait_pid(m->pid, H_HANG_MS);
    mgr_pump(m);
    m->pid = 0;
    if (!stopping)
        fprintf(stderr, "manager: no STOPPING=1 after SIGTERM\n");
    if (st != 0)
        fprintf(stderr, "manager: mbqd exited with %d after SIGTERM\n", st);
    return stopping && st == 0;
}

/* Ends everything a case started, whether it passed or stopped at a
 * REQUIRE; harmless when already done. */
static void mgr_cleanup(struct mgr *m)
{
    if (!m->dir[0])
        return;
    if (m->pid > 0)
        mgr_kill(m);
    if (m->thread_running) {
        ssize_t w = write(m->wake[1], "x", 1);
        (void)w;
        pthread_join(m->thread, NULL);
        m->thread_running = false;
    }
    if (m->wake[0] >= 0)
        close(m->wake[0]);
    if (m->wake[1] >= 0)
        close(m->wake[1]);
    for (int i = 0; i < m->nstore; i++)
        close(m->store[i].fd);
    m->nstore = 0;
    if (m->listen_fd >= 0)
        close(m->listen_fd);
    if (m->notify_fd >= 0)
        close(m->notify_fd);
    m->listen_fd = m->notify_fd = -1;
    unlink(m->sock);
    unlink(m->notify);
    rmdir(m->dir);
    m->dir[0] = '\0';
}

static mbq_client *connect_client(const char *name)
{
    mbq_client *c = NULL;
    int r = mbq_connect(M.sock, name, &c);
    if (r != 0) {
        fprintf(stderr, "mbq_connect: %d %s\n", r, mbq_status_string(r));
        return NULL;
    }
    return c;
}

static int64_t object_id_of(mbq_client *c, const char *name)
{
    mbq_object_info info;
    int r = h_stat(c, name, &info);
    return r == 0 ? (int64_t)info.object_id : r;
}

/* ---- actors ---------------------------------------------------------------------- */

enum {
    A_SETUP = 1,    /* owner: pool, sorted queue with 10 buffers, trigger, simple queue */
    A_FIRED,        /* owner: v0 = ms to wait for the trigger; reply v0 = fired */
    A_STAT,         /* any: a control call (reconnects if need be); reply status,
                       v1 = the process's client id */
    A_OPEN_STREAM,  /* producer/consumer: create/open the stream pool and queue */
    A_PRODUCE,      /* v0 = n */
    A_CONSUME,      /* v0 = n; reply v0 = consumed in order, v1 = errors */
    A_TRIGGER,      /* install a count > 100 trigger on cam/sorted; reply token in v0 */
    A_DECLARE,      /* declare a producer of cam/stream (after A_OPEN_STREAM) */
};

static const int64_t sorted_pts[10] = {5, 2, 8, 1, 9, 3, 10, 4, 7, 6};

struct astate {
    mbq_client *c;
    mbq_pool *pool, *spool;
    mbq_buffer_queue *sorted, *stream;
    mbq_simple_queue *sq;
    mbq_trigger_token token;
    uint64_t seq_out, seq_in;
};

struct frame {
    uint64_t seq;
    char text[32];
};

static int actor_setup(struct astate *s)
{
    mbq_pool_options po = h_pool_opts(4096, 64);
    int r = mbq_pool_create(s->c, "cam/pool", &po, &s->pool);
    if (r)
        return r;
    mbq_buffer_queue_options qo = h_bq_opts(64, MBQ_ORDER_PRESENTATION_TIME);
    r = mbq_buffer_queue_create(s->c, "cam/sorted", &qo, &s->sorted);
    if (r)
        return r;
    for (int i = 0; i < 10; i++) {
        mbq_buffer b;
        r = mbq_pool_allocate(s->pool, 4096, &b);
        if (r)
            return r;
        struct frame *f = mbq_buffer_get_data(b, NULL);
        f->seq = (uint64_t)sorted_pts[i];
        snprintf(f->text, sizeof(f->text), "frame-%lld", (long long)sorted_pts[i]);
        mbq_buffer_set_data_size(b, sizeof(*f));
        mbq_buffer_set_timing(b, h_time(sorted_pts[i], 30), h_time(sorted_pts[i], 30), h_time(1, 30));
        r = mbq_buffer_queue_enqueue(s->sorted, b);
        mbq_buffer_release(b); /* the queue holds its own reference */
        if (r)
            return r;
    }
    r = mbq_buffer_queue_install_trigger_with_integer_threshold(
        s->sorted, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 10, &s->token);
    if (r)
        return r;
    r = mbq_simple_queue_create(s->c, "cam/sq", 16, NULL, &s->sq);
    if (r)
        return r;
    for (uint64_t v = 101; v <= 105; v++)
        if ((r = mbq_simple_queue_enqueue(s->sq, v)))
            return r;
    return 0;
}

static int actor_produce(struct astate *s, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        mbq_buffer b;
        int r = h_alloc_retry(s->spool, sizeof(struct frame), &b);
        if (r)
            return r;
        struct frame *f = mbq_buffer_get_data(b, NULL);
        f->seq = s->seq_out;
        snprintf(f->text, sizeof(f->text), "seq-%llu", (unsigned long long)s->seq_out);
        mbq_buffer_set_data_size(b, sizeof(*f));
        uint64_t deadline = h_now_ns() + (uint64_t)H_HANG_MS * 1000000ull;
        while ((r = mbq_buffer_queue_enqueue(s->stream, b)) == MBQ_BQ_ERR_QUEUE_IS_FULL &&
               h_now_ns() < deadline)
            sched_yield();
        mbq_buffer_release(b);
        if (r)
            return r;
        s->seq_out++;
    }
    return 0;
}

static void actor_consume(struct astate *s, int64_t n, struct hmsg *rep)
{
    int64_t ok = 0, errors = 0;
    for (int64_t i = 0; i < n; i++) {
        mbq_buffer b;
        int r = mbq_buffer_queue_dequeue_wait(s->stream, 10ll * 1000000000ll, &b);
        if (r) {
            fprintf(stderr, "consumer: dequeue_wait: %d %s\n", r, mbq_status_string(r));
            errors++;
            break;
        }
        const struct frame *f = mbq_buffer_get_data(b, NULL);
        char want[32];
        snprintf(want, sizeof(want), "seq-%llu", (unsigned long long)s->seq_in);
        if (!f || f->seq != s->seq_in || strcmp(f->text, want) != 0) {
            fprintf(stderr, "consumer: expected %s, got seq %llu '%s'\n", want,
                    f ? (unsigned long long)f->seq : 0ull, f ? f->text : "(null)");
            errors++;
            s->seq_in = f ? f->seq + 1 : s->seq_in + 1;
        } else {
            ok++;
            s->seq_in++;
        }
        mbq_buffer_release(b);
    }
    rep->v[0] = ok;
    rep->v[1] = errors;
}

static int sd_actor(int cmd, int rep, void *arg)
{
    struct astate s;
    memset(&s, 0, sizeof s);
    s.c = connect_client((const char *)arg);
    CREQUIRE(s.c);
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        switch (m.op) {
        case A_SETUP:
            r.status = actor_setup(&s);
            r.v[0] = (int64_t)s.token;
            break;
        case A_TRIGGER: {
            r.status = mbq_buffer_queue_open(s.c, "cam/sorted", &s.sorted);
            if (r.status == 0)
                r.status = mbq_buffer_queue_install_trigger_with_integer_threshold(
                    s.sorted, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 100, &s.token);
            r.v[0] = (int64_t)s.token;
            break;
        }
        case A_FIRED: {
            int fd = mbq_buffer_queue_trigger_fd(s.sorted, s.token);
            struct pollfd p = {.fd = fd, .events = POLLIN};
            uint64_t v = 0;
            if (fd >= 0 && poll(&p, 1, (int)m.v[0]) == 1 && read(fd, &v, sizeof(v)) == sizeof(v))
                r.v[0] = (int64_t)v;
            r.status = fd >= 0 ? 0 : -EBADF;
            break;
        }
        case A_STAT: {
            mbq_object_info info;
            r.status = h_stat(s.c, m.s, &info);
            r.v[0] = (int64_t)info.object_id;
            r.v[1] = mbq_client_id(s.c); /* after the call: reconnected if need be */
            break;
        }
        case A_OPEN_STREAM: {
            mbq_pool_options po = h_pool_opts(4096, 32);
            r.status = mbq_pool_create(s.c, "cam/spool", &po, &s.spool);
            mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
            if (r.status == 0)
                r.status = mbq_buffer_queue_create(s.c, "cam/stream", &qo, &s.stream);
            break;
        }
        case A_PRODUCE:
            r.status = actor_produce(&s, m.v[0]);
            break;
        case A_DECLARE:
            r.status = mbq_buffer_queue_declare_producer(s.stream);
            break;
        case A_CONSUME:
            actor_consume(&s, m.v[0], &r);
            break;
        }
        if (hmsg_reply(rep, &r) < 0)
            break;
    }
    /* The parent closed the pipe: tidy up (a reconnection if need be). */
    mbq_buffer_queue_close(s.stream);
    mbq_buffer_queue_close(s.sorted);
    mbq_simple_queue_close(s.sq);
    mbq_pool_close(s.spool);
    mbq_pool_close(s.pool);
    mbq_disconnect(s.c);
    return 0;
}

static int call(struct actor *a, int op, int64_t v0, const char *s, struct hmsg *r)
{
    struct hmsg m = hmsg_op(op);
    m.v[0] = v0;
    if (s)
        snprintf(m.s, sizeof(m.s), "%s", s);
    return actor_call(a, &m, r);
}

/* Producer and consumer run n buffers through the stream concurrently;
 * returns the number consumed in order without error. */
static int64_t stream(struct actor *prod, struct actor *cons, int64_t n)
{
    struct hmsg mp = hmsg_op(A_PRODUCE), mc = hmsg_op(A_CONSUME), rp, rc;
    mp.v[0] = mc.v[0] = n;
    if (h_write_full(cons->cmd, &mc, sizeof(mc)) < 0 || h_write_full(prod->cmd, &mp, sizeof(mp)) < 0)
        return -1;
    if (actor_recv(prod, &rp, H_HANG_MS) < 0 || actor_recv(cons, &rc, H_HANG_MS) < 0)
        return -1;
    if (rp.status != 0)
        fprintf(stderr, "producer: %d %s\n", rp.status, mbq_status_string(rp.status));
    if (rc.v[1] != 0)
        return -rc.v[1];
    return rp.status == 0 ? rc.v[0] : -1;
}

/* ---- cases ------------------------------------------------------------------------ */

/* READY, STATUS, WATCHDOG, FDSTORE, STOPPING, and a SIGTERM restart. */
static void notify_protocol_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    /* READY=1 means serving: a client gets in at once. */
    mbq_client *c = connect_client("checker");
    REQUIRE(c);
    CHECK(mgr_status_has(&M, "serving 0 objects"));
    /* the first record, sealed */
    CHECK_EQ(mgr_store_count(&M, "state-"), 1);
    int sfd = mgr_store_find(&M, mgr_store_find(&M, "state-0") >= 0 ? "state-0" : "state-1");
    CHECK(sfd >= 0 && (fcntl(sfd, F_GET_SEALS) & F_SEAL_WRITE));

    /* WATCHDOG=1 at about WATCHDOG_USEC / 2 = 100 ms: 1 s sees ~10. */
    unsigned before = mgr_watchdogs(&M);
    mgr_pump_until(&M, NULL, 1000);
    unsigned pings = mgr_watchdogs(&M) - before;
    printf("watchdog pings in 1 s: %u\n", pings);
    CHECK(pings >= 3 && pings <= 30);

    /* STATUS follows objects and clients. */
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 4);
    REQUIRE(mbq_pool_create(c, "n/pool", &po, &pool) == 0);
    CHECK(mgr_wait_status(&M, "serving 1 object to 1 client", 5000));
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "n/queue", &qo, &q) == 0);
    mbq_trigger_token tok;
    REQUIRE(mbq_buffer_queue_install_trigger(q, MBQ_TRIGGER_WHEN_RESET, MBQ_TIME_INVALID, &tok) == 0);
    mgr_pump(&M);
    /* What is stored, by name: segments, the trigger's eventfd, one record. */
    int64_t pid_ = object_id_of(c, "n/pool"), qid = object_id_of(c, "n/queue");
    char name[64];
    snprintf(name, sizeof(name), "seg-%lld", (long long)pid_);
    int segfd = mgr_store_find(&M, name);
    CHECK(segfd >= 0);
    snprintf(name, sizeof(name), "seg-%lld", (long long)qid);
    CHECK(mgr_store_find(&M, name) >= 0);
    snprintf(name, sizeof(name), "trg-%lld-%016llx", (long long)qid, (unsigned long long)tok);
    CHECK(mgr_store_find(&M, name) >= 0);
    CHECK_EQ(mgr_store_count(&M, "state-"), 1);
    CHECK_EQ(mgr_store_count(&M, "ids"), 1); /* the client id table */
    CHECK_EQ(mgr_store_count(&M, ""), 5);
    /* the stored segment is the pool, as a new process would map it */
    if (segfd >= 0) {
        struct stat st;
        CHECK(fstat(segfd, &st) == 0 && st.st_size >= 4096);
        uint32_t *hdr = mmap(NULL, 4096, PROT_READ, MAP_SHARED, segfd, 0);
        CHECK(hdr != MAP_FAILED);
        if (hdr != MAP_FAILED) {
            CHECK_EQ(hdr[0], 0x3151424du); /* "MBQ1" */
            munmap(hdr, 4096);
        }
    }
    /* A destroyed object leaves the store, with its trigger. */
    mbq_buffer_queue_remove_trigger(q, tok);
    mgr_pump(&M);
    CHECK_EQ(mgr_store_count(&M, "trg-"), 0);
    REQUIRE(mbq_unlink(c, "n/queue") == 0);
    mbq_buffer_queue_close(q);
    mgr_pump(&M);
    CHECK(mgr_store_find(&M, name) < 0);
    snprintf(name, sizeof(name), "seg-%lld", (long long)qid);
    CHECK(mgr_store_find(&M, name) < 0);
    CHECK_EQ(mgr_store_count(&M, ""), 3);
    CHECK(mgr_wait_status(&M, "serving 1 object to 1 client", 5000));

    /* SIGTERM: STOPPING=1, exit 0, the store untouched: `systemctl restart`. */
    uint32_t client_id = mbq_client_id(c);
    CHECK(client_id >= 2);
    unsigned removes = mgr_removes(&M);
    CHECK(mgr_stop(&M));
    CHECK_EQ(mgr_removes(&M), removes);
    CHECK_EQ(mgr_store_count(&M, ""), 3);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    CHECK(mgr_status_has(&M, "(1 restored)"));
    /* the client reconnects at its next call and keeps its pool */
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "n/pool", &info), 0);
    /* and its client id: lock words name it (the table was in the store) */
    CHECK_EQ(mbq_client_id(c), client_id);
    CHECK_EQ((int64_t)info.object_id, pid_);
    CHECK_EQ(info.open_count, 1); /* reattached */
    mbq_buffer b;
    CHECK_STATUS(mbq_pool_allocate(pool, 100, &b), 0);
    CHECK_STATUS(mbq_buffer_release(b), 0);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK(mgr_stop(&M));
    mgr_cleanup(&M);
}

/* The main scenario: a crash (SIGKILL) with clients working across it. */
static void crash_restores_everything_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));

    struct actor owner, prod, cons, ghost;
    REQUIRE(actor_start(&owner, sd_actor, "owner") == 0);
    struct hmsg r;
    REQUIRE(call(&owner, A_SETUP, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);
    mbq_trigger_token token = (mbq_trigger_token)r.v[0];
    REQUIRE(actor_start(&prod, sd_actor, "producer") == 0);
    REQUIRE(actor_start(&cons, sd_actor, "consumer") == 0);
    REQUIRE(call(&prod, A_OPEN_STREAM, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);
    REQUIRE(call(&cons, A_OPEN_STREAM, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);
    /* a process whose trigger must not survive its death during the restart */
    REQUIRE(actor_start(&ghost, sd_actor, "ghost") == 0);
    REQUIRE(call(&ghost, A_TRIGGER, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);

    CHECK_EQ(stream(&prod, &cons, 200), 200); /* also maps spool in the consumer */
    REQUIRE(call(&prod, A_STAT, 0, "cam/stream", &r) == 0);
    int64_t prod_id = r.v[1];
    CHECK(prod_id >= 2);

    mbq_client *c = connect_client("checker");
    REQUIRE(c);
    const char *names[] = {"cam/pool", "cam/sorted", "cam/sq", "cam/spool", "cam/stream"};
    int64_t ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = object_id_of(c, names[i]);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "cam/sorted", &info), 0);
    CHECK_EQ(info.triggers, 2);
    mbq_disconnect(c);
    mgr_pump(&M);
    CHECK_EQ(mgr_store_count(&M, "seg-"), 5);
    CHECK_EQ(mgr_store_count(&M, "trg-"), 2);

    /* Crash. The data plane goes on without a daemon. */
    mgr_kill(&M);
    actor_kill(&ghost);
    CHECK_EQ(stream(&prod, &cons, 200), 200);

    /* The next instance, from the store. */
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    CHECK(mgr_status_has(&M, "(5 restored)"));
    /* READY=1: everything is back, and served. */
    c = connect_client("checker");
    REQUIRE(c);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(object_id_of(c, names[i]), ids[i]);
    CHECK_STATUS(h_stat(c, "cam/sorted", &info), 0);
    CHECK_EQ(info.count, 10);
    CHECK_EQ(info.triggers, 1); /* the ghost's went with it */
    CHECK_STATUS(h_stat(c, "cam/pool", &info), 0);
    CHECK_EQ(info.blocks_used, 10); /* the queue's references */
    mgr_pump(&M);
    CHECK_EQ(mgr_store_count(&M, "trg-"), 1);
    CHECK_EQ(mgr_store_count(&M, "state-"), 1);

    /* The stream keeps flowing, and both ends reconnect at their next call. */
    CHECK_EQ(stream(&prod, &cons, 200), 200);
    REQUIRE(call(&prod, A_STAT, 0, "cam/stream", &r) == 0);
    CHECK_STATUS(r.status, 0);
    /* its client id came back with it (the lock words it holds name it): a
     * new table would have given the checker, first to say Hello, id 2 and
     * the producer another */
    CHECK_EQ(r.v[1], prod_id);
    REQUIRE(call(&cons, A_STAT, 0, "cam/spool", &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_EQ(stream(&prod, &cons, 100), 100);

    /* The owner comes back and adopts its trigger. */
    REQUIRE(call(&owner, A_STAT, 0, "cam/sorted", &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_STATUS(h_stat(c, "cam/sorted", &info), 0);
    CHECK_EQ(info.triggers, 1);
    bool adopted = false;
    for (uint32_t i = 0; i < info.client_count && i < 32; i++)
        if (info.clients[i].pid == (uint32_t)owner.pid && info.clients[i].triggers == 1)
            adopted = true;
    CHECK(adopted);

    /* The trigger still fires: an 11th buffer (count > 10). */
    mbq_buffer_queue *sorted = NULL;
    mbq_pool *pool = NULL;
    REQUIRE(mbq_buffer_queue_open(c, "cam/sorted", &sorted) == 0);
    REQUIRE(mbq_pool_open(c, "cam/pool", &pool) == 0);
    CHECK(mbq_buffer_queue_trigger_fd(sorted, token) >= 0);
    /* The queue's binding to its pool came back too: a consumer that never
     * bound it (this new client) may take the restored entries' buffers. */
    mbq_buffer b;
    CHECK_STATUS(mbq_buffer_queue_copy_head(sorted, &b), 0);
    mbq_buffer_release(b);
    REQUIRE(mbq_pool_allocate(pool, 4096, &b) == 0);
    struct frame *f = mbq_buffer_get_data(b, NULL);
    f->seq = 11;
    snprintf(f->text, sizeof(f->text), "frame-11");
    mbq_buffer_set_timing(b, h_time(11, 30), h_time(11, 30), h_time(1, 30));
    CHECK_STATUS(mbq_buffer_queue_enqueue(sorted, b), 0);
    mbq_buffer_release(b);
    REQUIRE(call(&owner, A_FIRED, 5000, NULL, &r) == 0);
    CHECK_EQ(r.v[0], 1);

    /* The contents: in PTS order, with their data. */
    for (int64_t pts = 1; pts <= 11; pts++) {
        int st = mbq_buffer_queue_dequeue_and_retain(sorted, &b);
        CHECK_STATUS(st, 0);
        if (st)
            break;
        const struct frame *g = mbq_buffer_get_data(b, NULL);
        char want[32];
        snprintf(want, sizeof(want), "frame-%lld", (long long)pts);
        CHECK(g && g->seq == (uint64_t)pts && strcmp(g->text, want) == 0);
        mbq_time dts, ppts, dur;
        mbq_buffer_get_timing(b, &dts, &ppts, &dur);
        CHECK_TIME(ppts, h_time(pts, 30));
        mbq_buffer_release(b);
    }
    CHECK(mbq_buffer_queue_is_empty(sorted));
    mbq_simple_queue *sq = NULL;
    REQUIRE(mbq_simple_queue_open(c, "cam/sq", &sq) == 0);
    CHECK_EQ(mbq_simple_queue_get_count(sq), 5);
    for (uint64_t v = 101; v <= 105; v++)
        CHECK_EQ(mbq_simple_queue_dequeue(sq), v);
    CHECK_EQ(mbq_simple_queue_dequeue(sq), 0);

    /* The owner's end removes its (adopted) trigger, as before the crash. */
    CHECK_ACTOR_OK(&owner);
    uint64_t deadline = h_now_ns() + 5000000000ull;
    while (h_stat(c, "cam/sorted", &info) == 0 && info.triggers != 0 && h_now_ns() < deadline)
        h_pause_us(1000);
    CHECK_EQ(info.triggers, 0);
    CHECK_ACTOR_OK(&prod);
    CHECK_ACTOR_OK(&cons);
    CHECK_STATUS(h_stat(c, "cam/spool", &info), 0);
    CHECK_EQ(info.blocks_used, 0); /* nothing lost, nothing leaked */
    mbq_simple_queue_close(sq);
    mbq_buffer_queue_close(sorted);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    mgr_pump(&M);
    CHECK_EQ(mgr_store_count(&M, "trg-"), 0);
    CHECK(mgr_stop(&M));
    mgr_cleanup(&M);
}

/* A store with a bad segment, an unknown descriptor and a broken record:
 * what checks out is restored, the rest dropped and removed from the store. */
static void restore_drops_what_fails_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    mbq_client *c = connect_client("maker");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 4);
    REQUIRE(mbq_pool_create(c, "d/pool", &po, &pool) == 0);
    mbq_simple_queue *sq = NULL;
    REQUIRE(mbq_simple_queue_create(c, "d/sq", 8, NULL, &sq) == 0);
    REQUIRE(mbq_simple_queue_enqueue(sq, 7) == 0);
    int64_t sqid = object_id_of(c, "d/sq");
    mbq_simple_queue_close(sq);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    mgr_pump(&M);
    mgr_kill(&M);

    /* The simple queue's segment swapped for an eventfd; a stranger; a
     * record that fails its checksum under the other record name. */
    char segname[64];
    snprintf(segname, sizeof(segname), "seg-%lld", (long long)sqid);
    struct stored pass[MAX_STORED];
    int n = 0;
    int efd = eventfd(0, EFD_CLOEXEC), junk = eventfd(0, EFD_CLOEXEC);
    int bad = memfd_create("bad-state", MFD_CLOEXEC);
    REQUIRE(efd >= 0 && junk >= 0 && bad >= 0);
    char garbage[64] = "MBQDSTAT garbage";
    REQUIRE(write(bad, garbage, sizeof(garbage)) == (ssize_t)sizeof(garbage));
    const char *cur = mgr_store_find(&M, "state-0") >= 0 ? "state-1" : "state-0";
    pthread_mutex_lock(&M.lock);
    for (int i = 0; i < M.nstore; i++)
        pass[n++] = strcmp(M.store[i].name, segname) ? M.store[i]
                                                     : (struct stored){.fd = efd, .name = ""};
    for (int i = 0; i < n; i++)
        if (pass[i].fd == efd)
            snprintf(pass[i].name, sizeof(pass[i].name), "%s", segname);
    pass[n++] = (struct stored){.fd = junk, .name = "junk"};
    pass[n].fd = bad;
    snprintf(pass[n++].name, sizeof(pass[0].name), "%s", cur);
    /* the manager's own store gets them too, as it would have them */
    M.store[M.nstore].fd = fcntl(junk, F_DUPFD_CLOEXEC, 3);
    snprintf(M.store[M.nstore++].name, sizeof(M.store[0].name), "junk");
    pthread_mutex_unlock(&M.lock);

    REQUIRE(mgr_start_with(&M, NULL, 0, pass, n) == 0);
    REQUIRE(mgr_wait_ready(&M));
    CHECK(mgr_status_has(&M, "(1 restored)"));
    c = connect_client("checker");
    REQUIRE(c);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "d/pool", &info), 0);
    CHECK_STATUS(h_stat(c, "d/sq", &info), -ENOENT);
    mgr_pump(&M);
    CHECK_EQ(mgr_store_count(&M, "junk"), 0);
    CHECK(mgr_store_find(&M, segname) < 0);
    CHECK_EQ(mgr_store_count(&M, "state-"), 1);
    /* a new object does not reuse the dropped one's id */
    REQUIRE(mbq_simple_queue_create(c, "d/sq2", 8, NULL, &sq) == 0);
    CHECK(object_id_of(c, "d/sq2") > sqid);
    mbq_simple_queue_close(sq);
    mbq_disconnect(c);
    close(efd);
    close(junk);
    close(bad);
    CHECK(mgr_stop(&M));
    mgr_cleanup(&M);
}

/* With room for 3 descriptors beyond the two records, the 4th object and
 * any trigger beyond are refused with -ENOSPC rather than lost later. */
static void store_full_refuses_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    const char *args[] = {"--fd-store-max", "5", NULL};
    REQUIRE(mgr_start(&M, args) == 0);
    REQUIRE(mgr_wait_ready(&M));
    mbq_client *c = connect_client("filler");
    REQUIRE(c);
    mbq_simple_queue *sq[4] = {0};
    char name[32];
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof(name), "f/sq%d", i);
        CHECK_STATUS(mbq_simple_queue_create(c, name, 4, NULL, &sq[i]), 0);
    }
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
    CHECK_STATUS(mbq_buffer_queue_create(c, "f/q", &qo, &q), 0);
    CHECK_STATUS(mbq_simple_queue_create(c, "f/sq3", 4, NULL, &sq[3]), -ENOSPC);
    mbq_trigger_token tok;
    if (q)
        CHECK_STATUS(mbq_buffer_queue_install_trigger(q, MBQ_TRIGGER_WHEN_RESET, MBQ_TIME_INVALID,
                                                      &tok), -ENOSPC);
    mgr_pump(&M);
    CHECK(mgr_store_count(&M, "") <= 5);
    mbq_buffer_queue_close(q);
    for (int i = 0; i < 4; i++)
        mbq_simple_queue_close(sq[i]);
    mbq_disconnect(c);
    CHECK(mgr_stop(&M));
    mgr_cleanup(&M);
}

/* The test hook: the pings stop (the manager would kill and restart). */
static void watchdog_hang_hook_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    const char *args[] = {"--debug-hang-after-ms", "300", NULL};
    REQUIRE(mgr_start(&M, args) == 0);
    REQUIRE(mgr_wait_ready(&M));
    mgr_pump_until(&M, NULL, 200);
    CHECK(mgr_watchdogs(&M) >= 1);
    /* wait for the pings to stop: a quiet period of 3 intervals */
    uint64_t deadline = h_now_ns() + 20000000000ull;
    bool quiet = false;
    while (!quiet && h_now_ns() < deadline) {
        unsigned before = mgr_watchdogs(&M);
        mgr_pump_until(&M, NULL, 3 * WATCHDOG_USEC / 1000);
        quiet = mgr_watchdogs(&M) == before;
    }
    CHECK(quiet);
    /* still serving: the hook fakes a hang for the manager only */
    mbq_client *c = connect_client("prober");
    CHECK(c != NULL);
    mbq_disconnect(c);
    CHECK(mgr_stop(&M));
    mgr_cleanup(&M);
}

static void restore_ignores_forged_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    mbq_client *c = connect_client("forger");
    REQUIRE(c);
    mbq_pool *bound = NULL, *other = NULL;
    mbq_pool_options po = h_pool_opts(4096, 4);
    REQUIRE(mbq_pool_create(c, "rf/bound", &po, &bound) == 0);
    REQUIRE(mbq_pool_create(c, "rf/other", &po, &other) == 0);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "rf/q", &qo, &q) == 0);
    /* one real entry (the enqueue binds rf/bound) ... */
    mbq_buffer b;
    REQUIRE(mbq_pool_allocate(bound, 64, &b) == 0);
    CHECK_STATUS(mbq_buffer_queue_enqueue_and_release(q, b), 0);
    /* ... and one written into the queue's memory, naming a buffer of
     * rf/other (held here) that nobody bound to the queue */
    mbq_buffer held;
    REQUIRE(mbq_pool_allocate(other, 64, &held) == 0);
    struct bq raw;
    REQUIRE(test_attach_queue_segment((uint64_t)object_id_of(c, "rf/q"), &raw) == 0);
    struct bq_entry e;
    memset(&e, 0, sizeof e);
    e.pool_id = (uint32_t)object_id_of(c, "rf/other");
    e.handle = held.handle_;
    e.size = 64;
    CHECK_STATUS(bq_enqueue(&raw, &e), 0);
    bq_detach(&raw);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "rf/bound", &info), 0);
    CHECK_EQ(info.blocks_used, 1);
    CHECK_STATUS(h_stat(c, "rf/other", &info), 0);
    CHECK_EQ(info.blocks_used, 1);
    mgr_pump(&M);

    /* Crash; the next instance restores the queue and its binding. */
    mgr_kill(&M);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    /* The queue goes: its real entry returns to rf/bound, the forged one
     * does not touch rf/other. */
    CHECK_STATUS(mbq_unlink(c, "rf/q"), 0); /* reconnects first */
    mbq_buffer_queue_close(q);
    CHECK_STATUS(h_stat(c, "rf/q", &info), -ENOENT);
    CHECK_STATUS(h_stat(c, "rf/bound", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    CHECK_STATUS(h_stat(c, "rf/other", &info), 0);
    CHECK_EQ(info.blocks_used, 1);
    CHECK_STATUS(mbq_buffer_release(held), 0);
    mbq_pool_close(bound);
    mbq_pool_close(other);
    mbq_disconnect(c);
    CHECK(mgr_stop(&M));
    mgr_cleanup(&M);
}

static void restore_ignores_forged(void)
{
    restore_ignores_forged_body();
    mgr_cleanup(&M);
}

/* The slots that name mbqd (client id 1, lock.h), with or without the
 * reclaiming bit. */
static unsigned daemon_slots(const struct pool *p, bool reclaiming)
{
    const uint32_t mbqd = SLOCK_CID | 1u << SLOCK_CID_SHIFT;
    unsigned n = 0;
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++)
        n += pool_slot_owner(p, s) == (reclaiming ? mbqd | 0x80000000u : mbqd);
    return n;
}

/* mbqd keeps its client id across a restart, so the slots a previous
 * instance named are this one's to finish: the pool slot it attached with
 * (never another's: a restart must not leave one behind each time) and a
 * dead client's slot it was reclaiming when it was killed (its holdings
 * and intents go to the recount, not to nobody). */
static void restart_finishes_own_slots_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    mbq_client *c = connect_client("reclaimer");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 4);
    REQUIRE(mbq_pool_create(c, "rr/p", &po, &pool) == 0);
    mbq_buffer b;
    REQUIRE(mbq_pool_allocate(pool, 64, &b) == 0);
    struct pool raw;
    REQUIRE(test_attach_pool_segment((uint64_t)object_id_of(c, "rr/p"), &raw) == 0);
    CHECK_EQ(daemon_slots(&raw, false), 1);
    /* What a kill -9 of mbqd leaves in the reclaim of a dead client that
     * held b: the slot claimed (reclaiming, mbqd's id), its holding and
     * the reference it counts still there. */
    uint32_t dead = POOL_MAX_CLIENTS;
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS && dead == POOL_MAX_CLIENTS; s++)
        if (pool_slot_owner(&raw, s) == 0)
            dead = s;
    REQUIRE(dead < POOL_MAX_CLIENTS);
    const uint32_t idx = (uint32_t)b.handle_ - 1;
    REQUIRE(pool_retain(&raw, b.handle_, false) == 0);
    atomic_store(&raw.holdings[(size_t)dead * raw.block_count + idx], 1);
    atomic_store(&raw.clients[dead].pid, SLOCK_CID | 1u << SLOCK_CID_SHIFT | 0x80000000u);
    mgr_kill(&M);

    /* Twice: each instance attaches anew. */
    for (int i = 0; i < 2; i++) {
        REQUIRE(mgr_start(&M, NULL) == 0);
        REQUIRE(mgr_wait_ready(&M));
        CHECK_EQ(daemon_slots(&raw, false), 1);
        CHECK_EQ(daemon_slots(&raw, true), 0);
        CHECK_EQ(pool_slot_held(&raw, dead), 0);
        mgr_kill(&M);
    }
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    /* b's only reference is ours again: released, the pool is empty. */
    CHECK_STATUS(mbq_buffer_release(b), 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "rr/p", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    pool_detach(&raw);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK(mgr_stop(&M));
    mgr_cleanup(&M);
}

static void restart_finishes_own_slots(void)
{
    restart_finishes_own_slots_body();
    mgr_cleanup(&M);
}

/* A pool of size classes across a crash of mbqd: the next mbqd restores
 * it from the store with its classes (stat shows each class's figures,
 * the buffers held across the crash count in their classes), a
 * create-or-open with the same classes opens it and one with other
 * classes is refused naming the difference, and once the buffers are
 * released every class is whole. */
static void restart_keeps_classes_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    mbq_client *c = connect_client("classes");
    REQUIRE(c);
    mbq_pool_options po = h_pool_opts(0, 0);
    po.class_count = 3;
    po.classes[0] = (mbq_pool_class){64, 64};
    po.classes[1] = (mbq_pool_class){1000, 16}; /* 1024 once rounded */
    po.classes[2] = (mbq_pool_class){16384, 4};
    mbq_pool *pool = NULL;
    REQUIRE(mbq_pool_create(c, "rc/p", &po, &pool) == 0);
    mbq_buffer b1, b2;
    REQUIRE(mbq_pool_allocate(pool, 900, &b1) == 0);
    REQUIRE(mbq_pool_allocate(pool, 10000, &b2) == 0);
    size_t cap1 = 0, cap2 = 0;
    memset(mbq_buffer_get_data(b1, &cap1), 0x11, 900);
    memset(mbq_buffer_get_data(b2, &cap2), 0x22, 10000);
    CHECK_EQ(cap1, 1024);
    CHECK_EQ(cap2, 16384);
    mgr_kill(&M);

    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "rc/p", &info), 0); /* reconnects */
    CHECK_EQ(info.pool_class_count, 3);
    CHECK_EQ(info.block_size, 16384);
    CHECK_EQ(info.block_count, 84);
    CHECK_EQ(info.blocks_used, 2);
    const uint32_t used[3] = {0, 1, 1}, size[3] = {64, 1024, 16384}, count[3] = {64, 16, 4};
    for (uint32_t k = 0; k < 3 && k < info.pool_class_count; k++) {
        CHECK_EQ(info.pool_classes[k].block_size, size[k]);
        CHECK_EQ(info.pool_classes[k].block_count, count[k]);
        CHECK_EQ(info.pool_classes[k].used, used[k]);
    }
    /* the same classes (as given, or as rounded) open it; others do not */
    mbq_client *d = connect_client("classes-2");
    REQUIRE(d);
    mbq_pool *same = NULL;
    CHECK_STATUS(mbq_pool_create(d, "rc/p", &po, &same), 0);
    mbq_pool_class got[MBQ_POOL_MAX_CLASSES];
    CHECK_EQ(mbq_pool_get_classes(same, got, MBQ_POOL_MAX_CLASSES), 3);
    CHECK_EQ(got[1].block_size, 1024);
    CHECK_EQ(got[2].block_count, 4);
    po.classes[2].block_count = 5;
    mbq_pool *other = NULL;
    CHECK_STATUS(mbq_pool_create(d, "rc/p", &po, &other), -EEXIST);
    char why[256];
    mbq_client_last_error(d, why, sizeof why);
    CHECK(strstr(why, "class 2") != NULL);
    const uint8_t *p1 = mbq_buffer_get_data(b1, NULL), *p2 = mbq_buffer_get_data(b2, NULL);
    CHECK(p1 && p1[899] == 0x11);
    CHECK(p2 && p2[9999] == 0x22);
    CHECK_STATUS(mbq_buffer_release(b1), 0);
    CHECK_STATUS(mbq_buffer_release(b2), 0);
    CHECK_STATUS(h_stat(c, "rc/p", &info), 0);
    CHECK_EQ(info.blocks_used, 0);
    for (uint32_t k = 0; k < info.pool_class_count; k++)
        CHECK_EQ(info.pool_classes[k].warm + info.pool_classes[k].cold, count[k]);
    mbq_pool_close(same);
    mbq_disconnect(d);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK(mgr_stop(&M));
    mgr_cleanup(&M);
}

static void restart_keeps_classes(void)
{
    restart_keeps_classes_body();
    mgr_cleanup(&M);
}

/* `systemctl stop` then start (systemd 252 drops the store on stop): the
 * client reconnects to a daemon that does not have its objects any more.
 * Its mappings still work; their control calls say -EIDRM; the connection
 * serves new objects. */
static void stop_drops_store_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    mbq_client *c = connect_client("survivor");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 4);
    REQUIRE(mbq_pool_create(c, "s/pool", &po, &pool) == 0);
    mbq_buffer b;
    REQUIRE(mbq_pool_allocate(pool, 64, &b) == 0);
    int64_t old_id = object_id_of(c, "s/pool");
    CHECK(mgr_stop(&M));
    pthread_mutex_lock(&M.lock);
    for (int i = 0; i < M.nstore; i++)
        close(M.store[i].fd);
    M.nstore = 0;
    pthread_mutex_unlock(&M.lock);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "s/pool", &info), -ENOENT); /* reconnected; gone */
    CHECK_STATUS(mbq_client_dispatch(c), -EIDRM);      /* said once */
    CHECK_STATUS(mbq_client_dispatch(c), 0);
    CHECK_STATUS(mbq_pool_flush(pool), -EIDRM);
    CHECK(mbq_buffer_is_valid(b)); /* the mapping lives on */
    CHECK_STATUS(mbq_buffer_release(b), 0);
    CHECK_STATUS(mbq_pool_allocate(pool, 64, &b), 0);
    CHECK_STATUS(mbq_buffer_release(b), 0);
    mbq_pool *fresh = NULL;
    CHECK_STATUS(mbq_pool_create(c, "s/pool", &po, &fresh), 0);
    CHECK_STATUS(h_stat(c, "s/pool", &info), 0);
    CHECK(info.object_id != (uint64_t)old_id); /* ids start afresh at a random point */
    CHECK_EQ(info.open_count, 1); /* the lost one sent no Close, and counts for nothing */
    mbq_pool_close(pool);
    mbq_pool_close(fresh);
    CHECK_STATUS(h_stat(c, "s/pool", &info), 0);
    CHECK_EQ(info.open_count, 0);
    mbq_disconnect(c);
    CHECK(mgr_stop(&M));
    mgr_cleanup(&M);
}

/* The producers of a queue across restarts: a producer that died while no
 * daemon ran is gone for the next one, a live one stays a producer (from
 * the queue's header, then its declaration made again as it reconnects),
 * and one that never reconnects counts until it exits. Losing the last
 * makes the consumer's blocking dequeue return -EPIPE, across a crash
 * (SIGKILL) and a restart (SIGTERM) alike. */
static void producers_survive_restart_body(void)
{
    REQUIRE(mgr_init(&M) == 0);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    struct actor a, b;
    struct hmsg r;
    REQUIRE(actor_start(&a, sd_actor, "prod-a") == 0);
    REQUIRE(actor_start(&b, sd_actor, "prod-b") == 0);
    REQUIRE(call(&a, A_OPEN_STREAM, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);
    REQUIRE(call(&b, A_OPEN_STREAM, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);
    REQUIRE(call(&a, A_DECLARE, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);
    REQUIRE(call(&b, A_DECLARE, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);
    mbq_client *c = connect_client("consumer");
    REQUIRE(c);
    mbq_buffer_queue *q;
    REQUIRE(mbq_buffer_queue_open(c, "cam/stream", &q) == 0);
    mbq_buffer buf;
    const int64_t short_ns = 200ll * 1000000ll, long_ns = 30ll * 1000000000ll;

    /* Crash; b dies while no daemon runs; a lives on. */
    mgr_kill(&M);
    actor_kill(&b);
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M)); /* b's death is dealt with before READY=1 */
    CHECK(!mbq_buffer_queue_is_producer_lost(q));
    CHECK_STATUS(mbq_buffer_queue_dequeue_wait(q, short_ns, &buf), -ETIMEDOUT);
    /* a reconnects (its next control call) and declares again */
    REQUIRE(call(&a, A_STAT, 0, "cam/stream", &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK(!mbq_buffer_queue_is_producer_lost(q));
    CHECK_EQ(call(&a, A_PRODUCE, 1, NULL, &r), 0);
    CHECK_STATUS(r.status, 0);
    CHECK_STATUS(mbq_buffer_queue_dequeue_wait(q, long_ns, &buf), 0);
    mbq_buffer_release(buf);
    actor_kill(&a);
    CHECK_STATUS(mbq_buffer_queue_dequeue_wait(q, long_ns, &buf), -EPIPE);

    /* A new producer; a restart (SIGTERM); it never reconnects, then dies:
     * the restored daemon watches it and calls the queue lost. */
    struct actor d;
    REQUIRE(actor_start(&d, sd_actor, "prod-d") == 0);
    REQUIRE(call(&d, A_OPEN_STREAM, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);
    REQUIRE(call(&d, A_DECLARE, 0, NULL, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK(!mbq_buffer_queue_is_producer_lost(q));
    CHECK(mgr_stop(&M));
    REQUIRE(mgr_start(&M, NULL) == 0);
    REQUIRE(mgr_wait_ready(&M));
    CHECK(!mbq_buffer_queue_is_producer_lost(q));
    CHECK_STATUS(mbq_buffer_queue_dequeue_wait(q, short_ns, &buf), -ETIMEDOUT);
    /* Stat names the producer the restored daemon waits for. */
    mbq_object_info info = {.size = sizeof info};
    CHECK_STATUS(mbq_stat(c, "cam/stream", &info), 0);
    CHECK_EQ(info.producers, 1);
    CHECK_EQ(info.producer_pid_count, 1);
    CHECK_EQ(info.producer_pids[0], (uint32_t)d.pid);
    CHECK(!info.producer_lost);
    actor_kill(&d);
    CHECK_STATUS(mbq_buffer_queue_dequeue_wait(q, long_ns, &buf), -EPIPE);
    info = (mbq_object_info){.size = sizeof info};
    CHECK_STATUS(mbq_stat(c, "cam/stream", &info), 0);
    CHECK_EQ(info.producers, 0);
    CHECK_EQ(info.producer_pid_count, 0);
    CHECK(info.producer_lost);
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    CHECK(mgr_stop(&M));
}

static void producers_survive_restart(void)
{
    producers_survive_restart_body();
    mgr_cleanup(&M);
}

/* Each case, then its cleanup even if it stopped early. */
static void notify_protocol(void)
{
    notify_protocol_body();
    mgr_cleanup(&M);
}

static void crash_restores_everything(void)
{
    crash_restores_everything_body();
    mgr_cleanup(&M);
}

static void restore_drops_what_fails(void)
{
    restore_drops_what_fails_body();
    mgr_cleanup(&M);
}

static void store_full_refuses(void)
{
    store_full_refuses_body();
    mgr_cleanup(&M);
}

static void watchdog_hang_hook(void)
{
    watchdog_hang_hook_body();
    mgr_cleanup(&M);
}

static void stop_drops_store(void)
{
    stop_drops_store_body();
    mgr_cleanup(&M);
}

CHECK_MAIN(CASE(notify_protocol), CASE(crash_restores_everything), CASE(restore_drops_what_fails),
           CASE(restore_ignores_forged), CASE(restart_finishes_own_slots),
           CASE(restart_keeps_classes), CASE(store_full_refuses), CASE(watchdog_hang_hook),
           CASE(stop_drops_store), CASE(producers_survive_restart))
