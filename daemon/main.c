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
 *   reclaim.c  releasing the buffer references of a client that died
 *   registry.c named objects, ids, permissions, the daemon's mappings
 *   log.c      the one place that writes log lines
 * registry.c and log.c know nothing of the others; server, session, trigger
 * and reclaim call each other through a few narrow functions (a session
 * sends through its connection, a trigger change is pushed to sessions).
 * Nothing outside daemon/ includes these headers; libevent stays in here,
 * and the protocol's generated types stay in server.c and session.c.
 *
 * Conventions: functions return 0 (or a count) or a negative errno; a reply
 * status is 0, a Core Media status or a negative errno, as in mbq.proto.
 * Destructors accept NULL and return NULL. Every fd is close-on-exec and,
 * when it is a socket, non-blocking. Only the boundaries log.
 *
 * Startup: parse options, take the socket (see server.c for the stale-socket
 * rule), then say "mbqd VERSION listening on PATH" at info level. Shutdown,
 * on SIGTERM or SIGINT (libevent signal events, so the handler runs in the
 * loop): stop accepting, remove the socket file, close every session without
 * touching shared memory (clients keep their mappings, buffers and triggers),
 * unmap every segment, exit 0. Startup errors exit 1, bad usage exits 2. */
#include "log.h"
#include "registry.h"
#include "server.h"
#include "session.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define AGE_OUT_INTERVAL_MS 100

struct options {
    const char *socket_path; /* NULL: the default */
    enum log_level log_level;
    SessionLimits limits;
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
            "  --max-objects N      objects one client may have open (default 256)\n"
            "  --max-triggers N     triggers one client may have installed (default 64)\n"
            "  --max-bytes N        bytes of segments one client may have created and\n"
            "                       still alive; suffixes K, M, G, T (default 4G)\n"
            "  --foreground         accepted for compatibility: mbqd never forks and\n"
            "                       always runs in the foreground (as systemd runs it)\n"
            "  --version            print the version and exit\n"
            "  --help               print this help and exit\n"
            "\n"
            "SIGTERM or SIGINT stops it cleanly. Logs go to standard error.\n");
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

static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_SOCKET = 256, OPT_LOG_LEVEL, OPT_MAX_OBJECTS, OPT_MAX_TRIGGERS, OPT_MAX_BYTES,
           OPT_FOREGROUND, OPT_VERSION };
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"max-objects", required_argument, NULL, OPT_MAX_OBJECTS},
        {"max-triggers", required_argument, NULL, OPT_MAX_TRIGGERS},
        {"max-bytes", required_argument, NULL, OPT_MAX_BYTES},
        {"foreground", no_argument, NULL, OPT_FOREGROUND},
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
            if (parse_u64(optarg, true, &o->limits.max_bytes) < 0) {
                fprintf(stderr, "mbqd: --max-bytes: '%s' is not a size (e.g. 4294967296 or 4G)\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case OPT_FOREGROUND:
            break; /* always */
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

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    log_msg(LOG_LEVEL_INFO, "received %s, shutting down", strsignal((int)sig));
    event_base_loopbreak(arg);
}

static void on_age_out(evutil_socket_t fd, short what, void *arg)
{
    registry_age_out(arg, now_ns());
}

int main(int argc, char **argv)
{
    struct options opt = {
        .log_level = LOG_LEVEL_INFO,
        .limits = {.max_objects = 256, .max_triggers = 64, .max_bytes = 4ull << 30},
    };
    if (parse_options(argc, argv, &opt) < 0)
        return 2;
    log_set_level(opt.log_level);

    _cleanup_(freep) char *path = NULL;
    if (opt.socket_path)
        path = strdup(opt.socket_path);
    else if (default_socket_path(&path) < 0)
        return EXIT_FAILURE;
    if (!path)
        return EXIT_FAILURE;

    signal(SIGPIPE, SIG_IGN); /* wire_send uses MSG_NOSIGNAL; this covers the rest */
    raise_fd_limit();
    event_set_log_callback(on_libevent_log);

    int ret = EXIT_FAILURE;
    Registry *registry = NULL;
    Server *server = NULL;
    struct event *ev_term = NULL, *ev_int = NULL, *ev_age = NULL;
    struct event_base *base = event_base_new();
    if (!base) {
        log_msg(LOG_LEVEL_ERROR, "cannot create the event loop");
        goto out;
    }
    int r = registry_new(&registry);
    if (r < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot create the registry: %s", strerror(-r));
        goto out;
    }
    r = server_new(&server, base, registry, &opt.limits, path);
    if (r < 0)
        goto out; /* server_new said why */

    ev_term = evsignal_new(base, SIGTERM, on_signal, base);
    ev_int = evsignal_new(base, SIGINT, on_signal, base);
    ev_age = event_new(base, -1, EV_PERSIST, on_age_out, registry);
    struct timeval tick = {0, AGE_OUT_INTERVAL_MS * 1000};
    if (!ev_term || !ev_int || !ev_age || event_add(ev_term, NULL) < 0 ||
        event_add(ev_int, NULL) < 0 || event_add(ev_age, &tick) < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot set up signal and timer events");
        goto out;
    }

    log_msg_fields(LOG_LEVEL_INFO, LOG_FIELDS(LOG_STR("SOCKET", path)),
                   "mbqd %s listening on %s", MBQ_VERSION_STRING, path);
    if (event_base_dispatch(base) < 0) {
        log_msg(LOG_LEVEL_ERROR, "the event loop failed");
        goto out;
    }
    log_msg(LOG_LEVEL_INFO, "stopping: closing %zu sessions, unmapping %zu objects",
            server_session_count(server), registry_count(registry));
    ret = EXIT_SUCCESS;

out:
    if (ev_age)
        event_free(ev_age);
    if (ev_int)
        event_free(ev_int);
    if (ev_term)
        event_free(ev_term);
    server_free(server); /* before the registry: sessions hold objects */
    registry_free(registry);
    if (base)
        event_base_free(base);
    if (ret == EXIT_SUCCESS)
        log_msg(LOG_LEVEL_INFO, "stopped");
    return ret;
}
