/* mbqd: the mbq daemon — options, startup, the event loop, shutdown.
 *
 * mbqd owns named buffer queues, simple queues and pools in sealed memfd
 * segments and serves them to clients over a SOCK_SEQPACKET socket (the
 * control plane); the clients then work in shared memory directly. It never
 * forks: it runs in the foreground, as systemd expects.
 *
 * Files, one concept each (the top of each says more):
 *   main.c     options, startup, signals, the age-out timer, shutdown
 *   server.c   socket, accept, per-connection reads and writes (libevent)
 *   session.c  one per connection: the protocol, what the client holds, quotas
 *   trigger.c  trigger eventfds and their fan-out to sessions
 *   lockwatch.c locks in segments held by owners not entitled to them
 *   identity.c client ids and the liveness table clients map read-only
 *   reclaim.c  releasing the buffer references of a client that died
 *   pidwatch.c one pidfd per client process whose exit reclaim/restore await
 *   registry.c named objects, ids, permissions, the daemon's mappings
 *   fdstore.c  keeping every object in systemd's fd store (registry observer)
 *   restore.c  restoring them in the next instance; their processes of before
 *   systemd.c  every sd_* call: passed fds, notify, watchdog, the journal
 *   log.c      the one place that writes log lines
 * registry.c and log.c know nothing of the others; server, session, trigger
 * and reclaim call each other through a few narrow functions (a session
 * sends through its connection, a trigger change is pushed to sessions);
 * the registry tells fdstore.c what changed through its observer.
 * Nothing outside daemon/ includes these headers; libevent stays in here,
 * and the protocol's generated types stay in server.c and session.c.
 *
 * Conventions: functions return 0 (or a count) or a negative errno; a reply
 * status is 0, a Core Media status or a negative errno, as in mbq.proto.
 * Destructors accept NULL and return NULL. Every fd is close-on-exec and,
 * when it is a socket, non-blocking. Only the boundaries log.
 *
 * Startup: parse options, route the log to the journal if stderr is the
 * journal stream, take the socket the service manager passed or bind
 * --socket (see server.c for the stale-socket rule), restore what the
 * manager's fd store holds (restore.c), then say "mbqd VERSION listening on
 * PATH" at info level and READY=1 to the manager: at that point every
 * restored object is back and connections are served. While running:
 * STATUS= follows the counts of objects and clients (checked on the 100 ms
 * tick), WATCHDOG=1 at half the interval the manager asked for. Shutdown,
 * on SIGTERM or SIGINT (libevent signal events, so the handler runs in the
 * loop): STOPPING=1, stop accepting, remove the socket file if we bound it,
 * close every session without touching shared memory (clients keep their
 * mappings, buffers and triggers), unmap every segment, exit 0; the fd store
 * is left as it is, for the next instance. Startup errors exit 1, bad usage
 * exits 2.
 *
 * Test hooks (not in --help): --debug-hang-after-ms N stops the watchdog
 * pings N ms after READY=1, and SIGUSR2 stops them at once; the daemon keeps
 * serving, so a test can watch the manager kill and restart it. */
#include "fdstore.h"
#include "identity.h"
#include "lockwatch.h"
#include "log.h"
#include "pidwatch.h"
#include "registry.h"
#include "restore.h"
#include "server.h"
#include "session.h"
#include "systemd.h"
#include "trigger.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#define AGE_OUT_INTERVAL_MS 100
/* The daemon never waits on shared memory for long: a lock in a segment is
 * waited for at most this long, and one that stayed held by the same live
 * owner is not waited for again for MBQD_LOCK_STUCK_NS (shm/lock.h). What
 * cannot get its lock is retried on a later tick or answered with -EBUSY. */
#define MBQD_LOCK_WAIT_NS 10000000ull   /* 10 ms */
#define MBQD_LOCK_STUCK_NS 1000000000ull /* 1 s */
/* FileDescriptorStoreMax= in mbqd.service; $FDSTORE (systemd >= 254) says. */
#define DEFAULT_FD_STORE_MAX 4096u

enum log_target { LOG_TARGET_AUTO, LOG_TARGET_STDERR, LOG_TARGET_JOURNAL };

struct options {
    const char *socket_path; /* NULL: the default */
    enum log_level log_level;
    enum log_target log_target;
    SessionLimits limits;
    unsigned fd_store_max; /* 0: $FDSTORE, else DEFAULT_FD_STORE_MAX */
    bool fd_store_max_set;
    bool max_total_set;
    uint64_t hang_after_ms;
};

/* What the loop's callbacks need. */
struct daemon {
    struct event_base *base;
    Registry *registry;
    PidWatch *pidwatch;
    Server *server;
    Systemd *sd;
    FdStore *store;       /* NULL: no service manager to keep one */
    Restorer *restorer;
    struct restore_outcome restored;
    struct event *ev_term, *ev_int, *ev_usr2, *ev_tick;
};

static void print_help(FILE *f)
{
    fprintf(f,
            "Usage: mbqd [OPTIONS]\n"
            "\n"
            "The mbq daemon: serves Core Media style buffer queues, simple queues and\n"
            "memory pools in shared memory to the processes that connect to it.\n"
            "\n"
            "  --socket PATH        listen on PATH (default: $MBQ_SOCKET if set, else\n"
            "                       /run/mbq/mbqd.sock as root and\n"
            "                       $XDG_RUNTIME_DIR/mbq/mbqd.sock otherwise)\n"
            "  --log-level LEVEL    error, warning, info (default) or debug\n"
            "  --max-objects N      objects one user (uid) may own, for as long as they\n"
            "                       exist, over all its connections (default 256;\n"
            "                       0: no limit; root has none)\n"
            "  --max-triggers N     triggers one client may have installed (default 64)\n"
            "  --max-bytes N        bytes of segments one user may own; suffixes K, M,\n"
            "                       G, T (default 4G; 0: no limit; root has none)\n"
            "  --max-total-bytes N  bytes of segments of all users together, root\n"
            "                       included (default: a quarter of MemTotal; 0: none)\n"
            "  --fd-store-max N     descriptors the service manager keeps for mbqd\n"
            "                       (FileDescriptorStoreMax=; default $FDSTORE, else 4096);\n"
            "                       0 keeps nothing across restarts\n"
            "  --log-target TARGET  auto (default: the journal when stderr is connected\n"
            "                       to it), journal or stderr\n"
            "  --foreground         accepted for compatibility: mbqd never forks and\n"
            "                       always runs in the foreground (as systemd runs it)\n"
            "  --version            print the version and exit\n"
            "  --help               print this help and exit\n"
            "\n"
            "Under systemd (mbqd.socket, mbqd.service) it takes its socket from the\n"
            "service manager, keeps its objects in the manager's file descriptor store\n"
            "so that a restart loses nothing, and logs to the journal.\n"
            "SIGTERM or SIGINT stops it cleanly. Otherwise logs go to standard error.\n");
}

static int parse_u64(const char *s, bool suffixes, uint64_t *ret)
{
    if (!s || !*s || *s == '-')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    unsigned shift = 0;
    if (suffixes && *end) {
        const char *units = "KMGT";
        const char *u = strchr(units, *end & ~0x20);
        if (!u)
            return -EINVAL;
        shift = 10 * (unsigned)(u - units + 1);
        end++;
        if (*end == 'i' && end[1] == 'B') /* "KiB" */
            end += 2;
        else if ((*end & ~0x20) == 'B') /* "KB" */
            end++;
    }
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return -EINVAL;
    *ret = (uint64_t)v << shift;
    return 0;
}

/* Size (107 lines, complexity 21), kept: one case per option of the getopt
 * switch, each a parse and a range check; split up, the options would no
 * longer read as the list --help prints. */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_SOCKET = 256, OPT_LOG_LEVEL, OPT_MAX_OBJECTS, OPT_MAX_TRIGGERS, OPT_MAX_BYTES,
           OPT_MAX_TOTAL_BYTES, OPT_FOREGROUND, OPT_VERSION, OPT_FD_STORE_MAX, OPT_LOG_TARGET, OPT_DEBUG_HANG };
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"max-objects", required_argument, NULL, OPT_MAX_OBJECTS},
        {"max-triggers", required_argument, NULL, OPT_MAX_TRIGGERS},
        {"max-bytes", required_argument, NULL, OPT_MAX_BYTES},
        {"max-total-bytes", required_argument, NULL, OPT_MAX_TOTAL_BYTES},
        {"foreground", no_argument, NULL, OPT_FOREGROUND},
        {"fd-store-max", required_argument, NULL, OPT_FD_STORE_MAX},
        {"log-target", required_argument, NULL, OPT_LOG_TARGET},
        {"debug-hang-after-ms", required_argument, NULL, OPT_DEBUG_HANG}, /* test hook */
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_SOCKET:
            o->socket_path = optarg;
            break;
        case OPT_LOG_LEVEL:
            if (log_parse_level(optarg, &o->log_level) < 0) {
                fprintf(stderr, "mbqd: --log-level: '%s' is not error, warning, info or debug\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case OPT_MAX_OBJECTS:
        case OPT_MAX_TRIGGERS:
            if (parse_u64(optarg, false, &v) < 0 || v > UINT32_MAX) {
                fprintf(stderr, "mbqd: %s: '%s' is not a number up to %u\n",
                        c == OPT_MAX_OBJECTS ? "--max-objects" : "--max-triggers", optarg,
                        UINT32_MAX);
                return -EINVAL;
            }
            if (c == OPT_MAX_OBJECTS)
                o->limits.max_objects = (uint32_t)v;
            else
                o->limits.max_triggers = (uint32_t)v;
            break;
        case OPT_MAX_BYTES:
        case OPT_MAX_TOTAL_BYTES:
            if (parse_u64(optarg, true,
                          c == OPT_MAX_BYTES ? &o->limits.max_bytes : &o->limits.max_total_bytes) <
                0) {
                fprintf(stderr, "mbqd: %s: '%s' is not a size (e.g. 4294967296 or 4G)\n",
                        c == OPT_MAX_BYTES ? "--max-bytes" : "--max-total-bytes", optarg);
                return -EINVAL;
            }
            if (c == OPT_MAX_TOTAL_BYTES)
                o->max_total_set = true;
            break;
        case OPT_FOREGROUND:
            break; /* always */
        case OPT_FD_STORE_MAX:
            if (parse_u64(optarg, false, &v) < 0 || v > (1u << 20)) {
                fprintf(stderr, "mbqd: --fd-store-max: '%s' is not a number up to %u\n", optarg,
                        1u << 20);
                return -EINVAL;
            }
            o->fd_store_max = (unsigned)v;
            o->fd_store_max_set = true;
            break;
        case OPT_LOG_TARGET:
            if (strcmp(optarg, "auto") == 0)
                o->log_target = LOG_TARGET_AUTO;
            else if (strcmp(optarg, "journal") == 0)
                o->log_target = LOG_TARGET_JOURNAL;
            else if (strcmp(optarg, "stderr") == 0)
                o->log_target = LOG_TARGET_STDERR;
            else {
                fprintf(stderr, "mbqd: --log-target: '%s' is not auto, journal or stderr\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case OPT_DEBUG_HANG:
            if (parse_u64(optarg, false, &v) < 0 || v == 0 || v > UINT32_MAX) {
                fprintf(stderr, "mbqd: --debug-hang-after-ms: '%s' is not a positive number\n",
                        optarg);
                return -EINVAL;
            }
            o->hang_after_ms = v;
            break;
        case OPT_VERSION:
            printf("mbqd %s (protocol 1)\n", MBQ_VERSION_STRING);
            exit(EXIT_SUCCESS);
        case 'h':
            print_help(stdout);
            exit(EXIT_SUCCESS);
        default:
            fprintf(stderr, "Try 'mbqd --help'.\n");
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mbqd: unexpected argument '%s'\nTry 'mbqd --help'.\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

/* The socket path when --socket is not given; the client library's rule. */
static int default_socket_path(char **ret)
{
    const char *env = getenv("MBQ_SOCKET");
    if (env && *env)
        return (*ret = strdup(env)) ? 0 : -ENOMEM;
    if (geteuid() == 0)
        return (*ret = strdup("/run/mbq/mbqd.sock")) ? 0 : -ENOMEM;
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (!xdg || xdg[0] != '/') {
        log_msg(LOG_LEVEL_ERROR, "XDG_RUNTIME_DIR is not set (or not absolute): "
                "use --socket PATH or set MBQ_SOCKET");
        return -ENOENT;
    }
    return asprintf(ret, "%s/mbq/mbqd.sock", xdg) < 0 ? -ENOMEM : 0;
}

/* Every object and trigger costs an fd: use all the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_msg(LOG_LEVEL_DEBUG, "cannot raise the descriptor limit: %s", strerror(errno));
    }
}

static void on_libevent_log(int severity, const char *msg)
{
    enum log_level level = severity >= EVENT_LOG_ERR    ? LOG_LEVEL_ERROR
                           : severity == EVENT_LOG_WARN ? LOG_LEVEL_WARNING
                                                        : LOG_LEVEL_DEBUG;
    log_msg(level, "libevent: %s", msg);
}

static void status_text(const struct daemon *d, char *buf, size_t len)
{
    size_t objects = registry_count(d->registry), clients = server_session_count(d->server);
    snprintf(buf, len, "serving %zu object%s to %zu client%s", objects, objects == 1 ? "" : "s",
             clients, clients == 1 ? "" : "s");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    log_msg(LOG_LEVEL_INFO, "received %s, shutting down", strsignal((int)sig));
    char status[128];
    status_text(d, status, sizeof(status));
    strncat(status, "; stopping", sizeof(status) - strlen(status) - 1);
    systemd_stopping(d->sd, status);
    event_base_loopbreak(d->base);
}

static void on_sigusr2(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    systemd_stop_watchdog(d->sd);
}

/* The 100 ms tick: pool age-out, the lock watch, and STATUS= when the counts changed. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    registry_age_out(d->registry, mono_ns());
    log_flush_suppressed(false);
    lockwatch_tick(d->registry, mono_ns());
    char status[128];
    status_text(d, status, sizeof(status));
    systemd_status(d->sd, status);
}

/* Where the log goes: the journal when systemd connected stderr to it. */
static void setup_log_target(enum log_target target)
{
    bool journal = target == LOG_TARGET_JOURNAL ||
                   (target == LOG_TARGET_AUTO && systemd_stderr_is_journal());
    log_set_sink(journal ? systemd_journal_send : NULL);
}

/* Takes the listening socket out of what the manager passed; closes any
 * other socket (a second ListenSequentialPacket= is not ours to serve). */
static int take_listen_fd(struct systemd_fd *fds, int n)
{
    int listen_fd = -1;
    for (int i = 0; i < n; i++) {
        if (!systemd_fd_is_listening_seqpacket(fds[i].fd))
            continue;
        if (listen_fd < 0) {
            listen_fd = TAKE_FD(fds[i].fd);
            log_msg(LOG_LEVEL_DEBUG, "using the socket the service manager passed ('%s')",
                    fds[i].name);
        } else {
            log_msg(LOG_LEVEL_WARNING, "ignoring another passed socket ('%s')", fds[i].name);
            fds[i].fd = safe_close(fds[i].fd);
        }
    }
    return listen_fd;
}

/* The default cap on all segments together: a quarter of the machine's
 * memory (pools are faulted in at creation, so segments are real memory).
 * sysinfo(2), not /proc/meminfo, which the unit's ProcSubset=pid hides.
 * 0 (no cap) if the kernel cannot say. */
static uint64_t default_max_total_bytes(void)
{
    struct sysinfo si;
    if (sysinfo(&si) < 0)
        return 0;
    return (uint64_t)si.totalram * (si.mem_unit ? si.mem_unit : 1) / 4;
}

/* The store's size: --fd-store-max, else $FDSTORE, else the unit's. */
static unsigned fd_store_max(const struct options *o)
{
    if (o->fd_store_max_set)
        return o->fd_store_max;
    unsigned env = systemd_fdstore_max_from_env();
    return env ? env : DEFAULT_FD_STORE_MAX;
}

/* Where to listen when the manager passed no socket: --socket, or the
 * default. 0 with *path (malloc'd), or -1 (said why). */
static int socket_path_of(const struct options *opt, char **path)
{
    if (opt->socket_path)
        *path = strdup(opt->socket_path);
    else if (default_socket_path(path) < 0)
        return -1;
    return *path ? 0 : -1;
}

/* The loop, the registry, the process watcher, the server on listen_fd
 * (taken; < 0: bind path) and the service manager interface. */
static int daemon_start(struct daemon *d, const struct options *opt, int listen_fd, const char *path)
{
    _cleanup_(closep) int fd = listen_fd;
    d->base = event_base_new();
    if (!d->base) {
        log_msg(LOG_LEVEL_ERROR, "cannot create the event loop");
        return -ENOMEM;
    }
    int r = registry_new(&d->registry);
    if (r < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot create the registry: %s", strerror(-r));
        return r;
    }
    registry_set_finalizer(d->registry, trigger_object_finalize);
    registry_set_owner_pid(d->registry, identity_owner_pid);
    r = pidwatch_new(&d->pidwatch, d->base);
    if (r < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot create the process watcher: %s", strerror(-r));
        return r;
    }
    r = server_new(&d->server, d->base, d->registry, d->pidwatch, &opt->limits, path, TAKE_FD(fd));
    if (r < 0)
        return r; /* server_new said why */
    r = systemd_new(&d->sd, d->base, opt->hang_after_ms);
    if (r < 0)
        log_msg(LOG_LEVEL_ERROR, "cannot set up the service manager interface: %s", strerror(-r));
    return r;
}

/* The fd store (only with a manager to keep it), the client id table, and
 * what the previous instance left (passed, freed here with whatever
 * descriptor nobody took). */
static int daemon_restore(struct daemon *d, const struct options *opt, struct systemd_fd *passed,
                          int n_passed)
{
    unsigned store_max = fd_store_max(opt);
    int r = 0;
    if (systemd_notify_enabled() && store_max > 0) {
        r = fdstore_new(&d->store, d->registry, store_max);
        if (r < 0)
            log_msg(LOG_LEVEL_ERROR, "cannot set up the fd store: %s", strerror(-r));
    }
    if (r == 0) {
        r = identity_setup(d->base, passed, n_passed, d->store != NULL);
        if (r < 0)
            log_msg(LOG_LEVEL_ERROR, "cannot set up the client id table: %s", strerror(-r));
    }
    if (r == 0) {
        r = restorer_new(&d->restorer, d->pidwatch, d->registry, d->server, d->store, passed,
                         n_passed, &d->restored);
        if (r < 0)
            log_msg(LOG_LEVEL_ERROR, "cannot restore the stored objects: %s", strerror(-r));
    }
    systemd_fds_free(passed, n_passed); /* the array, and what nobody took */
    return r;
}

static int daemon_add_events(struct daemon *d)
{
    d->ev_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->ev_int = evsignal_new(d->base, SIGINT, on_signal, d);
    d->ev_usr2 = evsignal_new(d->base, SIGUSR2, on_sigusr2, d);
    d->ev_tick = event_new(d->base, -1, EV_PERSIST, on_tick, d);
    struct timeval tick = {0, AGE_OUT_INTERVAL_MS * 1000};
    if (!d->ev_term || !d->ev_int || !d->ev_usr2 || !d->ev_tick || event_add(d->ev_term, NULL) < 0 ||
        event_add(d->ev_int, NULL) < 0 || event_add(d->ev_usr2, NULL) < 0 ||
        event_add(d->ev_tick, &tick) < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot set up signal and timer events");
        return -ENOMEM;
    }
    return 0;
}

/* "listening on", then READY=1 to the manager. */
static void daemon_announce(struct daemon *d)
{
    log_msg_fields(LOG_LEVEL_INFO, LOG_FIELDS(LOG_STR("SOCKET", server_address(d->server))),
                   "mbqd %s listening on %s%s", MBQ_VERSION_STRING, server_address(d->server),
                   d->store ? "; objects are kept in the service manager's fd store" : "");
    if (d->store)
        log_msg(LOG_LEVEL_DEBUG, "fd store: %u of %u descriptors in use", fdstore_count(d->store),
                fdstore_max(d->store));
    if (systemd_watchdog_usec(d->sd))
        log_msg(LOG_LEVEL_INFO, "watchdog: %" PRIu64 " ms", systemd_watchdog_usec(d->sd) / 1000);
    char status[160];
    status_text(d, status, sizeof(status));
    if (d->restored.objects) {
        size_t len = strlen(status);
        snprintf(status + len, sizeof(status) - len, " (%u restored)", d->restored.objects);
    }
    systemd_ready(d->sd, status);
}

static void daemon_stop(struct daemon *d)
{
    struct event *evs[] = {d->ev_tick, d->ev_usr2, d->ev_int, d->ev_term};
    for (size_t i = 0; i < ARRAY_SIZE(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    restorer_free(d->restorer);
    /* Shutdown changes nothing in the store: it is the next instance's. */
    fdstore_free(d->store);
    server_free(d->server); /* before the registry: sessions hold objects */
    pidwatch_free(d->pidwatch); /* after its subscribers */
    registry_free(d->registry);
    systemd_free(d->sd);
    if (d->base)
        event_base_free(d->base);
}

int main(int argc, char **argv)
{
    struct options opt = {
        .log_level = LOG_LEVEL_INFO,
        .limits = {.max_objects = 256, .max_triggers = 64, .max_bytes = 4ull << 30},
    };
    if (parse_options(argc, argv, &opt) < 0)
        return 2;
    if (!opt.max_total_set)
        opt.limits.max_total_bytes = default_max_total_bytes();
    log_set_level(opt.log_level);
    log_set_clock(mono_ns);
    setup_log_target(opt.log_target);

    signal(SIGPIPE, SIG_IGN); /* wire_send uses MSG_NOSIGNAL; this covers the rest */
    raise_fd_limit();
    event_set_log_callback(on_libevent_log);

    /* What the manager passed: our socket, and what the store kept. */
    struct systemd_fd *passed = NULL;
    int n_passed = systemd_listen_fds(&passed);
    if (n_passed < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot take the descriptors the service manager passed: %s",
                strerror(-n_passed));
        return EXIT_FAILURE;
    }
    int listen_fd = take_listen_fd(passed, n_passed);
    _cleanup_(freep) char *path = NULL;
    if (listen_fd < 0 && socket_path_of(&opt, &path) < 0) {
        systemd_fds_free(passed, n_passed);
        return EXIT_FAILURE;
    }

    slock_set_wait_limit(MBQD_LOCK_WAIT_NS);
    slock_set_stuck_memo(MBQD_LOCK_STUCK_NS);
    struct daemon d = {0};
    int ret = EXIT_FAILURE;
    if (daemon_start(&d, &opt, listen_fd, path) < 0) {
        systemd_fds_free(passed, n_passed);
        goto out;
    }
    if (daemon_restore(&d, &opt, passed, n_passed) < 0 || daemon_add_events(&d) < 0)
        goto out;
    daemon_announce(&d);

    if (event_base_dispatch(d.base) < 0) {
        log_msg(LOG_LEVEL_ERROR, "the event loop failed");
        goto out;
    }
    log_flush_suppressed(true);
    log_msg(LOG_LEVEL_INFO, "stopping: closing %zu sessions, unmapping %zu objects",
            server_session_count(d.server), registry_count(d.registry));
    ret = EXIT_SUCCESS;
out:
    daemon_stop(&d);
    return ret;
}
