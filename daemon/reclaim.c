/* Reclaim: releasing the buffer references a dead client process held.
 *
 * Role. Pools count, per client slot (one per attached process, named by
 * its pid), how many references the process holds on each block. When a
 * process dies without releasing them (kill -9, crash), the daemon releases
 * them with pool_reclaim_slot_ex(), and recounts the blocks the process was
 * in the middle of moving (its intent records), counting the entries of
 * every buffer queue it serves (registry.c), so nothing leaks. A recount
 * that must wait is retried by registry_age_out() on the 100 ms timer.
 *
 * When. The trigger is the end of the process's session, which the daemon
 * sees as EOF on the socket the moment the kernel closes the dead process's
 * files: no polling. But a session also ends while its process lives on (it
 * disconnected, or the daemon dropped it for a protocol violation), and a
 * live process's references must never be released under it: another
 * producer would be handed the block it is still filling. So the references
 * are released at session end only if no other session of the process is
 * alive and the process is gone or exiting: its pidfd is readable (exited),
 * or /proc/PID/stat shows it as a zombie or with PF_EXITING, which the kernel
 * sets before it closes a dying process's files, so a kill -9 is always
 * seen as exiting by the time its EOF arrives. Otherwise, if the process
 * still holds a pool slot, the daemon watches its pidfd and releases what it
 * holds when it exits; the pidfd (SO_PEERPIDFD, or pidfd_open at accept)
 * names that process, not a later one with the same pid.
 *
 * Limits. Pool slots carry the pid the client sees (getpid()); a client in
 * another pid namespace has a different one there, and its slot is not
 * found. pool_reclaim_slot_ex() does not check the slot's pid again, so a slot
 * handed to a new process between the scan and the call would be released
 * (a window of nanoseconds, against a process that has to attach first). */
#include "reclaim.h"

#include "log.h"
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define PF_EXITING_FLAG 0x00000004u /* include/linux/sched.h */

typedef struct Watch {
    Reclaimer *rc;
    pid_t pid;
    int pidfd;
    struct event *ev;
    struct list link;
} Watch;

struct Reclaimer {
    struct event_base *base;
    Registry *registry;
    Server *server;
    struct list watches;
};

int reclaimer_new(Reclaimer **ret, struct event_base *base, Registry *registry, Server *server)
{
    Reclaimer *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return -ENOMEM;
    rc->base = base;
    rc->registry = registry;
    rc->server = server;
    list_init(&rc->watches);
    *ret = rc;
    return 0;
}

static void watch_free(Watch *w)
{
    list_del(&w->link);
    if (w->ev)
        event_free(w->ev);
    safe_close(w->pidfd);
    free(w);
}

Reclaimer *reclaimer_free(Reclaimer *rc)
{
    if (!rc)
        return NULL;
    list_for_each_safe(it, &rc->watches)
        watch_free(list_entry(it, Watch, link));
    free(rc);
    return NULL;
}

/* 1 if /proc shows pid as exiting or a zombie, 0 if running, -1 if unknown. */
static int proc_exiting(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold anything */
    char state;
    unsigned flags;
    if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %u", &state, &flags) != 2)
        return -1;
    return state == 'Z' || state == 'X' || state == 'x' || (flags & PF_EXITING_FLAG);
}

static bool process_gone(pid_t pid, int pidfd)
{
    if (pidfd >= 0) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0)
            return true; /* pidfds become readable when the process exits */
    }
    int st = proc_exiting(pid);
    if (st >= 0)
        return st == 1;
    /* No /proc entry we may read: trust kill(2) (EPERM still means alive). */
    return kill(pid, 0) < 0 && errno == ESRCH;
}

static void watch_on_exit(evutil_socket_t fd, short what, void *arg)
{
    Watch *w = arg;
    Reclaimer *rc = w->rc;
    pid_t pid = w->pid;
    watch_free(w);
    /* The pid may have been reaped and reused by a client since the pidfd
     * fired; then its slot is that client's, not ours to release. */
    if (server_pid_has_session(rc->server, pid, NULL))
        return;
    uint64_t t0 = mono_ns();
    unsigned pools;
    uint64_t released = registry_reclaim_pid(rc->registry, pid, &pools);
    log_msg_fields(released ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG,
                   LOG_FIELDS(LOG_NUM("CLIENT_PID", pid), LOG_NUM("RELEASED", released)),
                   "pid %d exited: released %" PRIu64 " buffer references in %u pools in %" PRIu64 " us",
                   (int)pid, released, pools, (mono_ns() - t0) / 1000);
}

static int watch_add(Reclaimer *rc, pid_t pid, int pidfd)
{
    list_for_each_safe(it, &rc->watches)
        if (list_entry(it, Watch, link)->pid == pid) {
            safe_close(pidfd); /* already watched */
            return 0;
        }
    Watch *w = calloc(1, sizeof(*w));
    if (!w) {
        safe_close(pidfd);
        return -ENOMEM;
    }
    w->rc = rc;
    w->pid = pid;
    w->pidfd = pidfd;
    list_add_tail(&rc->watches, &w->link);
    w->ev = event_new(rc->base, pidfd, EV_READ, watch_on_exit, w);
    if (!w->ev || event_add(w->ev, NULL) < 0) {
        watch_free(w);
        return -ENOMEM;
    }
    return 0;
}

void reclaimer_session_ended(Reclaimer *rc, pid_t pid, int pidfd, struct reclaim_outcome *ret)
{
    *ret = (struct reclaim_outcome){.result = RECLAIM_NONE};
    if (server_pid_has_session(rc->server, pid, NULL)) {
        safe_close(pidfd);
        ret->result = RECLAIM_SHARED;
        return;
    }
    if (process_gone(pid, pidfd)) {
        safe_close(pidfd);
        ret->released = registry_reclaim_pid(rc->registry, pid, &ret->pools);
        ret->result = RECLAIM_DONE;
        return;
    }
    if (!registry_pid_has_pool_slot(rc->registry, pid)) {
        safe_close(pidfd);
        return;
    }
    if (pidfd < 0 || watch_add(rc, pid, pidfd) < 0) {
        ret->result = RECLAIM_LEFT;
        return;
    }
    ret->result = RECLAIM_WATCHING;
}
