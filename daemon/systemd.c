/* The service manager and the journal: the one file of mbqd that calls
 * libsystemd (sd_*), so that the rest of the daemon stays plain C and POSIX.
 *
 * Role. At start, systemd_listen_fds() takes what the manager passed: the
 * listening socket of mbqd.socket and, after a restart, the descriptors the
 * previous instance left in the file descriptor store (restore.c sorts them
 * out). While running, fdstore.c parks descriptors with FDSTORE=1 and takes
 * them back with FDSTOREREMOVE=1; main.c says READY=1 once the socket
 * serves, keeps STATUS= current and says STOPPING=1 on the way out; the
 * Systemd object pets the watchdog from the event loop at half the interval
 * the manager asked for, so a wedged loop is a dead daemon to systemd. log.c
 * sends its lines here when stderr is the journal.
 *
 * Invariants.
 *  - Nothing here blocks: sd_notify() is one datagram on a local socket, and
 *    the journal's native protocol is a datagram too (journald drops rather
 *    than stalls us; a failure falls back to stderr in log.c).
 *  - Without a manager ($NOTIFY_SOCKET unset) every notification is a no-op
 *    that returns 0; the daemon then behaves exactly as it does in a
 *    terminal, minus the fd store.
 *  - The environment keeps NOTIFY_SOCKET and WATCHDOG_USEC (sd_* are called
 *    with unset_environment = 0, since we notify for our whole life);
 *    LISTEN_* are cleared once taken, so nothing we might exec inherits them.
 *
 * The test hook (--debug-hang-after-ms, SIGUSR2 in main.c) stops the pings
 * while the daemon keeps serving: the way to see the manager's watchdog kill
 * and the restart that follows, without wedging the process for real. */
#include "systemd.h"

#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-daemon.h>
/* No CODE_FILE=systemd.c on every entry: the location would always be here. */
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

struct Systemd {
    struct event_base *base;
    uint64_t watchdog_usec; /* 0: no watchdog */
    uint64_t hang_after_ms;
    struct event *ev_watchdog, *ev_hang;
    bool pinging;
    char *last_status;
};

/* ---- passed descriptors ---- */

struct systemd_fd *systemd_fds_free(struct systemd_fd *fds, int n)
{
    if (!fds)
        return NULL;
    for (int i = 0; i < n; i++) {
        safe_close(fds[i].fd);
        free(fds[i].name);
    }
    free(fds);
    return NULL;
}

int systemd_listen_fds(struct systemd_fd **ret)
{
    char **names = NULL;
    *ret = NULL;
    /* Sets FD_CLOEXEC on each, checks LISTEN_PID, unsets LISTEN_*. */
    int n = sd_listen_fds_with_names(1, &names);
    if (n <= 0) {
        if (names)
            for (char **p = names; *p; p++)
                free(*p);
        free(names);
        return n;
    }
    struct systemd_fd *fds = calloc((size_t)n, sizeof(*fds));
    int r = fds ? 0 : -ENOMEM;
    for (int i = 0; i < n; i++) {
        const char *name = names && names[i] ? names[i] : "unknown";
        if (fds) {
            fds[i].fd = SD_LISTEN_FDS_START + i;
            fds[i].name = strdup(name);
            if (!fds[i].name)
                r = -ENOMEM;
        } else {
            close(SD_LISTEN_FDS_START + i);
        }
    }
    if (names)
        for (char **p = names; *p; p++)
            free(*p);
    free(names);
    if (r < 0) {
        systemd_fds_free(fds, fds ? n : 0);
        return r;
    }
    *ret = fds;
    return n;
}

bool systemd_fd_is_listening_seqpacket(int fd)
{
    return sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) > 0;
}

/* ---- notifications ---- */

bool systemd_notify_enabled(void)
{
    const char *e = getenv("NOTIFY_SOCKET");
    return e && *e;
}

int systemd_notify(const char *state)
{
    return sd_notify(0, state);
}

int systemd_fdstore_add(int fd, const char *name)
{
    char state[300];
    int n = snprintf(state, sizeof(state), "FDSTORE=1\nFDNAME=%s", name);
    if (n < 0 || (size_t)n >= sizeof(state))
        return -ENAMETOOLONG;
    return sd_pid_notify_with_fds(0, 0, state, &fd, 1);
}

int systemd_fdstore_remove(const char *name)
{
    char state[300];
    int n = snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", name);
    if (n < 0 || (size_t)n >= sizeof(state))
        return -ENAMETOOLONG;
    return sd_notify(0, state);
}

unsigned systemd_fdstore_max_from_env(void)
{
    const char *e = getenv("FDSTORE");
    if (!e || !*e)
        return 0;
    char *end;
    errno = 0;
    unsigned long v = strtoul(e, &end, 10);
    if (errno || *end || v > 1u << 20)
        return 0;
    return (unsigned)v;
}

/* ---- readiness, status, watchdog ---- */

static void systemd_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    Systemd *sd = arg;
    if (sd->pinging)
        sd_notify(0, "WATCHDOG=1");
}

static void systemd_on_hang(evutil_socket_t fd, short what, void *arg)
{
    systemd_stop_watchdog(arg);
}

int systemd_new(Systemd **ret, struct event_base *base, uint64_t hang_after_ms)
{
    Systemd *sd = calloc(1, sizeof(*sd));
    if (!sd)
        return -ENOMEM;
    sd->base = base;
    sd->hang_after_ms = hang_after_ms;
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        sd->watchdog_usec = usec;
        sd->ev_watchdog = event_new(base, -1, EV_PERSIST, systemd_on_watchdog, sd);
        if (!sd->ev_watchdog) {
            free(sd);
            return -ENOMEM;
        }
    }
    if (hang_after_ms) {
        sd->ev_hang = evtimer_new(base, systemd_on_hang, sd);
        if (!sd->ev_hang) {
            systemd_free(sd);
            return -ENOMEM;
        }
    }
    *ret = sd;
    return 0;
}

Systemd *systemd_free(Systemd *sd)
{
    if (!sd)
        return NULL;
    if (sd->ev_watchdog)
        event_free(sd->ev_watchdog);
    if (sd->ev_hang)
        event_free(sd->ev_hang);
    free(sd->last_status);
    free(sd);
    return NULL;
}

uint64_t systemd_watchdog_usec(const Systemd *sd)
{
    return sd ? sd->watchdog_usec : 0;
}

static void systemd_remember_status(Systemd *sd, const char *status)
{
    free(sd->last_status);
    sd->last_status = strdup(status);
}

void systemd_ready(Systemd *sd, const char *status)
{
    char *msg = NULL;
    if (asprintf(&msg, "READY=1\nSTATUS=%s", status) < 0)
        msg = NULL;
    int r = sd_notify(0, msg ? msg : "READY=1");
    free(msg);
    if (r < 0)
        log_msg(LOG_LEVEL_WARNING, "cannot tell the service manager we are ready: %s",
                strerror(-r));
    systemd_remember_status(sd, status);
    if (sd->ev_watchdog) {
        /* Half the interval, as sd_watchdog_enabled(3) recommends: one late
         * wake-up of a busy loop must not cost us the process. */
        uint64_t half = sd->watchdog_usec / 2;
        struct timeval tv = {(time_t)(half / 1000000u), (suseconds_t)(half % 1000000u)};
        sd->pinging = true;
        sd_notify(0, "WATCHDOG=1");
        event_add(sd->ev_watchdog, &tv);
        log_msg(LOG_LEVEL_DEBUG, "watchdog: pinging every %" PRIu64 " ms", half / 1000);
    }
    if (sd->ev_hang) {
        struct timeval tv = {(time_t)(sd->hang_after_ms / 1000),
                             (suseconds_t)(sd->hang_after_ms % 1000 * 1000)};
        event_add(sd->ev_hang, &tv);
    }
}

void systemd_status(Systemd *sd, const char *status)
{
    if (!systemd_notify_enabled())
        return;
    if (sd->last_status && strcmp(sd->last_status, status) == 0)
        return;
    char *msg = NULL;
    if (asprintf(&msg, "STATUS=%s", status) < 0)
        return;
    if (sd_notify(0, msg) >= 0)
        systemd_remember_status(sd, status);
    free(msg);
}

void systemd_stopping(Systemd *sd, const char *status)
{
    char *msg = NULL;
    if (asprintf(&msg, "STOPPING=1\nSTATUS=%s", status) < 0)
        msg = NULL;
    sd_notify(0, msg ? msg : "STOPPING=1");
    free(msg);
    if (sd && sd->ev_watchdog)
        event_del(sd->ev_watchdog);
}

void systemd_stop_watchdog(Systemd *sd)
{
    if (!sd || !sd->pinging)
        return;
    sd->pinging = false;
    if (sd->ev_watchdog)
        event_del(sd->ev_watchdog);
    log_msg(LOG_LEVEL_WARNING, "debug: watchdog pings stopped on request (test hook); the "
            "service manager will consider mbqd hung");
}

/* ---- the journal ---- */

bool systemd_stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    if (!e || !*e)
        return false;
    unsigned long long dev, ino;
    if (sscanf(e, "%llu:%llu", &dev, &ino) != 2)
        return false;
    struct stat st;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* Journal field names: upper-case letters, digits and '_', not leading. */
static bool journal_key_ok(const char *k)
{
    if (!k || !*k || *k == '_')
        return false;
    for (; *k; k++)
        if (!((*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') || *k == '_'))
            return false;
    return true;
}

#define JOURNAL_MAX_FIELDS 16

int systemd_journal_send(enum log_level level, const struct log_field *fields, const char *msg)
{
    char prio[16], text[JOURNAL_MAX_FIELDS][320];
    struct iovec iov[3 + JOURNAL_MAX_FIELDS];
    int n = 0;
    snprintf(prio, sizeof(prio), "PRIORITY=%d", (int)level);
    iov[n++] = (struct iovec){prio, strlen(prio)};
    iov[n++] = (struct iovec){(void *)"SYSLOG_IDENTIFIER=mbqd", sizeof("SYSLOG_IDENTIFIER=mbqd") - 1};
    for (unsigned i = 0; fields && fields[i].key && i < JOURNAL_MAX_FIELDS; i++) {
        const struct log_field *f = &fields[i];
        if (!journal_key_ok(f->key))
            continue;
        int len = f->str ? snprintf(text[i], sizeof(text[i]), "MBQ_%s=%s", f->key, f->str)
                         : snprintf(text[i], sizeof(text[i]), "MBQ_%s=%" PRIu64, f->key, f->num);
        if (len < 0)
            continue;
        if ((size_t)len >= sizeof(text[i]))
            len = (int)sizeof(text[i]) - 1;
        iov[n++] = (struct iovec){text[i], (size_t)len};
    }
    /* MESSAGE last: it is built by the caller and may be long. */
    size_t mlen = strlen(msg);
    char *m = malloc(mlen + sizeof("MESSAGE="));
    if (!m)
        return -ENOMEM;
    memcpy(m, "MESSAGE=", 8);
    memcpy(m + 8, msg, mlen);
    iov[n++] = (struct iovec){m, mlen + 8};
    int r = sd_journal_sendv(iov, n);
    free(m);
    return r;
}
