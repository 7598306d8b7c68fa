/* Integration-test harness: runs the freshly built mbqd on a socket in a
 * fresh temporary directory, forks client processes, and synchronises with
 * them through pipes.
 *
 * The daemon's path comes from $MBQD (CTest sets it to $<TARGET_FILE:mbqd>).
 * mbqd_start() waits for the daemon to accept connections by retrying
 * connect() a bounded number of times (readiness polling, never a fixed
 * sleep); mbqd_stop() sends SIGTERM and reports whether it exited with 0.
 *
 * Client processes are "actors": actor_start() forks a child that runs a
 * function with a command pipe and a reply pipe; the parent drives it with
 * actor_call() (fixed-size struct hmsg messages) and collects its exit
 * status with actor_finish(). A child dies with its parent
 * (PR_SET_PDEATHSIG) and an alarm turns a hang inside a child into a
 * failure; every wait in the parent has a generous upper bound, so a broken
 * daemon makes a test fail, never hang. In a child, CHECK/CHECK_EQ work as
 * usual (they print and mark the case failed); the child's exit status is
 * non-zero if any failed, and the parent's actor_finish() checks it.
 *
 * Everything here is static inline: each test is one translation unit. */
#ifndef MBQ_IT_HARNESS_H
#define MBQ_IT_HARNESS_H

#include "check.h"

#include <mbq/mbq.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Upper bound for anything a peer should answer at once (hang detection). */
#define H_HANG_MS 30000
/* A child that runs longer than this is killed by its own alarm. */
#define H_CHILD_ALARM_S 90

/* Stops the current function if expr fails (for int-returning functions,
 * e.g. the body of a child process). */
#define CREQUIRE(expr)                                                          \
    do {                                                                        \
        if (!(expr)) {                                                          \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, \
                    #expr);                                                     \
            check_case_failed = 1;                                              \
            return 1;                                                           \
        }                                                                       \
    } while (0)

/* CHECK_EQ that prints mbq status names as well. */
#define CHECK_STATUS(a, b)                                                            \
    do {                                                                              \
        long long cs_a_ = (long long)(a), cs_b_ = (long long)(b);                     \
        if (cs_a_ != cs_b_) {                                                         \
            fprintf(stderr, "%s:%d: CHECK_STATUS failed: %s == %s (%lld [%s] vs %lld [%s])\n", \
                    __FILE__, __LINE__, #a, #b, cs_a_, mbq_status_string((int)cs_a_),  \
                    cs_b_, mbq_status_string((int)cs_b_));                            \
            check_case_failed = 1;                                                    \
        }                                                                             \
    } while (0)

/* ---- time ---------------------------------------------------------------- */

static inline uint64_t h_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A short pause between two attempts of a bounded polling loop. */
static inline void h_pause_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* A numeric time, epoch 0 (not through libmbq: the tests compare times
 * with their own arithmetic). */
static inline mbq_time h_time(int64_t value, int32_t timescale)
{
    return (mbq_time){value, timescale, MBQ_TIME_FLAG_VALID, 0};
}

static inline bool h_time_numeric(mbq_time t)
{
    return (t.flags & (MBQ_TIME_FLAG_VALID | MBQ_TIME_FLAG_IMPLIED_VALUE_MASK)) ==
               MBQ_TIME_FLAG_VALID &&
           t.timescale > 0;
}

/* Numeric times equal as rationals (1/2 == 2/4). */
static inline bool h_time_eq(mbq_time a, mbq_time b)
{
    if (!h_time_numeric(a) || !h_time_numeric(b) || a.epoch != b.epoch)
        return false;
    return (__int128)a.value * b.timescale == (__int128)b.value * a.timescale;
}

#define CHECK_TIME(a, b)                                                               \
    do {                                                                               \
        mbq_time ct_a_ = (a), ct_b_ = (b);                                             \
        if (!h_time_eq(ct_a_, ct_b_)) {                                                \
            fprintf(stderr,                                                            \
                    "%s:%d: CHECK_TIME failed: %s == %s ({%lld/%d f%u e%lld} vs {%lld/%d f%u e%lld})\n", \
                    __FILE__, __LINE__, #a, #b, (long long)ct_a_.value, ct_a_.timescale, \
                    ct_a_.flags, (long long)ct_a_.epoch, (long long)ct_b_.value,       \
                    ct_b_.timescale, ct_b_.flags, (long long)ct_b_.epoch);             \
            check_case_failed = 1;                                                     \
        }                                                                              \
    } while (0)

/* ---- pipes ---------------------------------------------------------------- */

static inline int h_write_full(int fd, const void *buf, size_t n)
{
    const uint8_t *b = buf;
    while (n) {
        ssize_t r = write(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -EPIPE;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads exactly n bytes, waiting at most timeout_ms (< 0: no limit) for
 * the first. 0, -ETIMEDOUT, or -EPIPE (the writer is gone). */
static inline int h_read_full(int fd, void *buf, size_t n, int timeout_ms)
{
    uint8_t *b = buf;
    while (n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t got = read(fd, b, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -EPIPE;
        b += got;
        n -= (size_t)got;
    }
    return 0;
}

/* The message both directions of an actor's pipes carry. */
struct hmsg {
    int32_t op;
    int32_t status;
    int64_t v[8];
    char s[512];
};

static inline struct hmsg hmsg_op(int32_t op)
{
    struct hmsg m;
    memset(&m, 0, sizeof m);
    m.op = op;
    return m;
}

/* ---- child processes ------------------------------------------------------ */

struct actor {
    pid_t pid;
    int cmd; /* parent writes commands */
    int rep; /* parent reads replies */
};

/* The body of a child: reads commands from cmd, writes replies to rep;
 * returns its exit status. */
typedef int (*actor_fn)(int cmd, int rep, void *arg);

/* The parent's ends of every live actor's pipes: a new child closes them,
 * so that an actor sees EOF when the parent closes its command pipe even if
 * actors forked later are still running. */
static int h_parent_fds[256];
static int h_parent_nfds;

static inline void h_track_fd(int fd)
{
    if (h_parent_nfds < 256)
        h_parent_fds[h_parent_nfds++] = fd;
}

static inline void h_untrack_fd(int fd)
{
    for (int i = 0; i < h_parent_nfds; i++)
        if (h_parent_fds[i] == fd) {
            h_parent_fds[i] = h_parent_fds[--h_parent_nfds];
            return;
        }
}

static inline void h_child_setup(pid_t parent)
{
    for (int i = 0; i < h_parent_nfds; i++)
        close(h_parent_fds[i]);
    h_parent_nfds = 0;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(99);
    signal(SIGALRM, SIG_DFL);
    alarm(H_CHILD_ALARM_S);
    check_case_failed = 0;
}

/* Forks a child running fn(cmd, rep, arg). 0 or -errno. */
static inline int actor_start(struct actor *a, actor_fn fn, void *arg)
{
    *a = (struct actor){.pid = -1, .cmd = -1, .rep = -1}; /* defined even on failure */
    int to_child[2], to_parent[2];
    if (pipe2(to_child, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(to_parent, O_CLOEXEC) < 0) {
        int e = -errno;
        close(to_child[0]);
        close(to_child[1]);
        return e;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(to_child[0]);
        close(to_child[1]);
        close(to_parent[0]);
        close(to_parent[1]);
        return e;
    }
    if (pid == 0) {
        h_child_setup(parent);
        close(to_child[1]);
        close(to_parent[0]);
        int rc = fn(to_child[0], to_parent[1], arg);
        if (rc == 0 && check_case_failed)
            rc = 1;
        fflush(NULL);
        _exit(rc);
    }
    close(to_child[0]);
    close(to_parent[1]);
    a->pid = pid;
    a->cmd = to_child[1];
    a->rep = to_parent[0];
    h_track_fd(a->cmd);
    h_track_fd(a->rep);
    return 0;
}

/* Sends a command and waits (bounded) for the reply. 0, -ETIMEDOUT, -EPIPE. */
static inline int actor_call(struct actor *a, const struct hmsg *cmd, struct hmsg *reply)
{
    int r = h_write_full(a->cmd, cmd, sizeof *cmd);
    if (r < 0)
        return r;
    struct hmsg dummy;
    return h_read_full(a->rep, reply ? reply : &dummy, sizeof *reply, H_HANG_MS);
}

/* Waits (bounded) for an unsolicited message from the child. */
static inline int actor_recv(struct actor *a, struct hmsg *m, int timeout_ms)
{
    return h_read_full(a->rep, m, sizeof *m, timeout_ms);
}

/* Child side: the next command (blocking; the child's alarm bounds it).
 * 0, or -EPIPE when the parent closed the pipe. */
static inline int hmsg_next(int cmd, struct hmsg *m)
{
    return h_read_full(cmd, m, sizeof *m, -1);
}

static inline int hmsg_reply(int rep, const struct hmsg *m)
{
    return h_write_full(rep, m, sizeof *m);
}

/* Waits for a child to exit, at most timeout_ms (then kills it). Returns
 * its exit status, 128 + signal if it was killed by one, or -1 on timeout. */
static inline int h_wait_pid(pid_t pid, int timeout_ms)
{
    uint64_t deadline = h_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st))
                return WEXITSTATUS(st);
            if (WIFSIGNALED(st))
                return 128 + WTERMSIG(st);
            return -1;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (h_now_ns() > deadline) {
            fprintf(stderr, "harness: pid %d did not exit within %d ms; killing it\n", (int)pid,
                    timeout_ms);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        h_pause_us(1000);
    }
}

/* Closes the command pipe (the child sees EOF) and collects the exit status. */
static inline int actor_finish(struct actor *a)
{
    if (a->pid <= 0)
        return -1;
    h_untrack_fd(a->cmd);
    h_untrack_fd(a->rep);
    close(a->cmd);
    int st = h_wait_pid(a->pid, H_HANG_MS);
    close(a->rep);
    a->pid = 0;
    return st;
}

/* Kills the child with SIGKILL and reaps it. */
static inline void actor_kill(struct actor *a)
{
    if (a->pid <= 0)
        return;
    kill(a->pid, SIGKILL);
    h_wait_pid(a->pid, H_HANG_MS);
    h_untrack_fd(a->cmd);
    h_untrack_fd(a->rep);
    close(a->cmd);
    close(a->rep);
    a->pid = 0;
}

#define CHECK_ACTOR_OK(a) CHECK_EQ(actor_finish(a), 0)

/* A one-shot child: runs fn(arg) and exits with its result. */
typedef int (*child_fn)(void *arg);

struct h_child_trampoline {
    child_fn fn;
    void *arg;
};

static inline int h_child_tramp(int cmd, int rep, void *arg)
{
    struct h_child_trampoline *t = arg;
    (void)cmd;
    (void)rep;
    return t->fn(t->arg);
}

/* Forks, runs fn(arg) in the child and returns its exit status (bounded wait). */
static inline int run_in_child(child_fn fn, void *arg)
{
    struct h_child_trampoline t = {fn, arg};
    struct actor a = {0, -1, -1};
    if (actor_start(&a, h_child_tramp, &t) < 0)
        return -1;
    h_untrack_fd(a.cmd);
    h_untrack_fd(a.rep);
    close(a.cmd);
    int st = h_wait_pid(a.pid, H_CHILD_ALARM_S * 1000 + 5000);
    close(a.rep);
    return st;
}

/* ---- the daemon ----------------------------------------------------------- */

struct mbqd {
    pid_t pid;
    char dir[80];
    char sock[108]; /* sun_path */
};

static inline const char *mbqd_path(void)
{
    const char *p = getenv("MBQD");
    return p && *p ? p : NULL;
}

/* A raw connection attempt: the connected fd, or -errno. */
static inline int h_connect_raw(const char *sock)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(sock);
    if (len >= sizeof sa.sun_path) {
        close(fd);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, sock, len + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* Starts mbqd --socket DIR/mbqd.sock [extra args, NULL-terminated] and
 * waits until it accepts connections. 0, or -1 (with a message). */
static inline int mbqd_start_args(struct mbqd *d, const char *const *extra)
{
    memset(d, 0, sizeof *d);
    const char *exe = mbqd_path();
    if (!exe) {
        fprintf(stderr, "harness: $MBQD is not set (run the test through ctest)\n");
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 40)
        tmp = "/tmp";
    snprintf(d->dir, sizeof d->dir, "%s/mbq-it-XXXXXX", tmp);
    if (!mkdtemp(d->dir)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", d->dir, strerror(errno));
        return -1;
    }
    snprintf(d->sock, sizeof d->sock, "%s/mbqd.sock", d->dir);

    const char *argv[32];
    int n = 0;
    argv[n++] = exe;
    argv[n++] = "--socket";
    argv[n++] = d->sock;
    const char *level = getenv("MBQ_IT_LOG_LEVEL");
    if (level && *level) {
        argv[n++] = "--log-level";
        argv[n++] = level;
    }
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(99);
        signal(SIGPIPE, SIG_DFL);
        execv(exe, (char *const *)argv);
        fprintf(stderr, "harness: exec %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    d->pid = pid;

    /* Readiness: up to 2000 attempts, 10 ms apart (20 s: sanitizer builds
     * on a busy machine start slowly). */
    for (int attempt = 0; attempt < 2000; attempt++) {
        int fd = h_connect_raw(d->sock);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "harness: mbqd exited before it accepted connections (status 0x%x)\n",
                    st);
            d->pid = 0;
            return -1;
        }
        h_pause_us(10000);
    }
    fprintf(stderr, "harness: mbqd did not accept connections on %s within 20 s\n", d->sock);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    d->pid = 0;
    return -1;
}

static inline int mbqd_start(struct mbqd *d)
{
    return mbqd_start_args(d, NULL);
}

/* Is the daemon still running (not exited)? */
static inline bool mbqd_alive(struct mbqd *d)
{
    if (d->pid <= 0)
        return false;
    int st;
    pid_t r = waitpid(d->pid, &st, WNOHANG);
    if (r == d->pid) {
        fprintf(stderr, "harness: mbqd (pid %d) died: %s %d\n", (int)d->pid,
                WIFSIGNALED(st) ? "signal" : "exit status",
                WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        d->pid = 0;
        return false;
    }
    return true;
}

/* Number of open descriptors of the daemon (/proc/PID/fd), or -1. */
static inline int mbqd_fd_count(struct mbqd *d)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)d->pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

static inline void h_rm_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    if (dp) {
        struct dirent *e;
        while ((e = readdir(dp))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(dp);
    }
    rmdir(dir);
}

/* Sends SIGTERM and waits (bounded) for the daemon to exit. Returns its
 * exit status (0 is success), 128 + signal, or -1 if it had to be killed. */
static inline int mbqd_stop(struct mbqd *d)
{
    int st = -1;
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        st = h_wait_pid(d->pid, 20000);
        if (st != 0)
            fprintf(stderr, "harness: mbqd did not exit cleanly on SIGTERM (status %d)\n", st);
        d->pid = 0;
    } else {
        fprintf(stderr, "harness: mbqd was not running at stop\n");
    }
    if (d->dir[0])
        h_rm_dir(d->dir);
    d->dir[0] = 0;
    return st;
}

#define CHECK_MBQD_STOP(d) CHECK_EQ(mbqd_stop(d), 0)

/* ---- libmbq helpers ------------------------------------------------------- */

static inline mbq_client *h_connect(const struct mbqd *d, const char *name)
{
    mbq_client *c = NULL;
    int r = mbq_connect(d->sock, name, &c);
    if (r != 0) {
        fprintf(stderr, "harness: mbq_connect(%s): %d %s\n", d->sock, r, mbq_status_string(r));
        return NULL;
    }
    return c;
}

static inline mbq_pool_options h_pool_opts(uint64_t block_size, uint32_t block_count)
{
    mbq_pool_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.block_size = block_size;
    o.block_count = block_count;
    return o;
}

static inline mbq_buffer_queue_options h_bq_opts(uint32_t capacity, mbq_buffer_queue_order order)
{
    mbq_buffer_queue_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.capacity = capacity;
    o.order = order;
    return o;
}

static inline mbq_simple_queue_options h_sq_opts(uint32_t mode, bool exclusive)
{
    mbq_simple_queue_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.mode = mode;
    o.exclusive = exclusive;
    return o;
}

/* mbq_stat into a zeroed info with its size set; the status. */
static inline int h_stat(mbq_client *c, const char *name, mbq_object_info *info)
{
    memset(info, 0, sizeof *info);
    info->size = sizeof *info;
    return mbq_stat(c, name, info);
}

#ifdef MBQCTL_PATH
/* Runs the freshly built mbqctl (a test that defines MBQCTL_PATH) on d's
 * socket with args (NULL-terminated, at most 12), as uid:gid unless uid is
 * 0 (then as the caller); its standard output into out (NUL-terminated, cut
 * to n). Its exit status, as h_wait_pid's; H_MBQCTL_UNREACHABLE when that
 * user cannot reach the build tree's mbqctl (a checkout in a private
 * directory). */
#define H_MBQCTL_UNREACHABLE 125
static inline int h_mbqctl_as(const struct mbqd *d, uid_t uid, gid_t gid, const char *const *args,
                              char *out, size_t n)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        if (uid != 0 && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0))
            _exit(126);
        if (uid != 0 && access(MBQCTL_PATH, X_OK) != 0)
            _exit(H_MBQCTL_UNREACHABLE);
        const char *argv[16] = {MBQCTL_PATH};
        size_t k = 1;
        for (; args[k - 1] && k < 13; k++)
            argv[k] = args[k - 1];
        argv[k++] = "--socket";
        argv[k++] = d->sock;
        argv[k] = NULL;
        execv(MBQCTL_PATH, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < n && (r = read(fd[0], out + got, n - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = 0;
    close(fd[0]);
    return h_wait_pid(pid, 20000);
}

static inline int h_mbqctl(const struct mbqd *d, const char *const *args, char *out, size_t n)
{
    return h_mbqctl_as(d, 0, 0, args, out, n);
}
#endif

/* mbq_list into zeroed infos with their sizes set; the count or status. */
static inline int h_list(mbq_client *c, const char *prefix, mbq_object_info *infos, size_t max)
{
    memset(infos, 0, max * sizeof *infos);
    for (size_t i = 0; i < max; i++)
        infos[i].size = sizeof infos[i];
    return mbq_list(c, prefix, infos, max);
}

/* Polls mbq_stat (bounded) until the pool's blocks_used equals expect;
 * returns the last value seen (or a negative status). */
static inline int64_t h_wait_pool_used(mbq_client *c, const char *pool, uint32_t expect,
                                       int timeout_ms)
{
    uint64_t deadline = h_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    mbq_object_info info;
    for (;;) {
        int r = h_stat(c, pool, &info);
        if (r != 0)
            return r;
        if (info.blocks_used == expect || h_now_ns() > deadline)
            return info.blocks_used;
        h_pause_us(200);
    }
}

/* Allocates a buffer, retrying (bounded) while every block is in use. */
static inline int h_alloc_retry(mbq_pool *p, size_t size, mbq_buffer *out)
{
    uint64_t deadline = h_now_ns() + (uint64_t)H_HANG_MS * 1000000ull;
    for (;;) {
        int r = mbq_pool_allocate(p, size, out);
        if (r != MBQ_POOL_ERR_ALLOCATION_FAILED)
            return r;
        if (h_now_ns() > deadline)
            return r;
        sched_yield();
    }
}

/* Ignore SIGPIPE in every test process (raw sockets, pipes to dead children). */
__attribute__((constructor)) static void h_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
}

#endif
