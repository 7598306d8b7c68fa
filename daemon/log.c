/* Logging to stderr with a level prefix ("error: ", "warning: ", "info: ",
 * "debug: "), or to a sink (the journal's native protocol, with the fields as
 * journal fields: systemd.c); see log.h.
 *
 * log_write() is the only function that emits anything. With a sink, the
 * message (without the prefix: the sink has the level) goes there, and to
 * stderr only if the sink fails. A line is formatted into one buffer and written with
 * one write(2), so lines never interleave and a full pipe costs at most that
 * line. stderr is left as it was given: a reader that stops reading (a
 * stopped terminal, a stalled journal stream) stalls the daemon, as with any
 * foreground program; the journal backend will write datagrams that cannot.
 * Long messages are cut at LOG_LINE_MAX bytes. Callers log at the boundary:
 * once per event, never per data-plane operation, requests only at debug
 * level.
 *
 * Rate limit. A line that names a client (a CLIENT_UID or CLIENT_PID field)
 * or the owner of the object it is about (OWNER_UID: what that object's
 * clients wrote, found when the daemon acts on it, such as a destroyed
 * queue's forged entries) counts against that client — its uid if known
 * (CLIENT_UID first, else OWNER_UID); lines naming only a pid count
 * together, since pids are free to make — and the
 * kind of event (the format string): at most LOG_BURST such lines per kind
 * per client in LOG_WINDOW_NS, and then nothing until the window ends, when
 * one line says how many similar messages were suppressed. A client that
 * floods the daemon with bad input thus costs at most LOG_BURST lines per
 * kind per window, whatever it sends and however often it reconnects.
 * Lines at debug level are not limited (debug is asked for). The table of
 * windows is fixed (LOG_SLOTS, by hash, LOG_PROBE slots probed): a window
 * is reused only once ended, after reporting what it suppressed; a line
 * that finds no window is dropped and counted, and the count is reported. log_flush_suppressed()
 * (from the daemon's timer) reports a window that ended in silence, and at
 * shutdown every window. */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048
#define LOG_BURST 10
#define LOG_WINDOW_NS (10ull * 1000000000ull)
#define LOG_SLOTS 256
#define LOG_PROBE 8

static enum log_level log_max_level = LOG_LEVEL_INFO;
static log_sink_fn log_sink;

/* The "who" of the lines that name a pid and no uid (see log_admit). */
#define LOG_WHO_PIDS (2ull << 32)

/* One (client, kind) window. */
struct log_window {
    const char *fmt; /* NULL: free */
    uint64_t who;    /* 1 << 32 | uid, or LOG_WHO_PIDS */
    pid_t last_pid;
    enum log_level level;
    uint64_t start_ns;
    uint32_t lines;
    uint64_t suppressed;
};
static struct log_window log_windows[LOG_SLOTS];
static uint64_t log_overflow; /* lines dropped for want of a window */
static uint64_t (*log_clock)(void);

void log_set_clock(uint64_t (*clock_ns)(void))
{
    log_clock = clock_ns;
}

void log_set_sink(log_sink_fn sink)
{
    log_sink = sink;
}

void log_set_level(enum log_level level)
{
    log_max_level = level;
}

bool log_enabled(enum log_level level)
{
    return level <= log_max_level;
}

static const char *log_level_name(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_ERROR:
        return "error";
    case LOG_LEVEL_WARNING:
        return "warning";
    case LOG_LEVEL_INFO:
        return "info";
    case LOG_LEVEL_DEBUG:
        return "debug";
    }
    return "log";
}

int log_parse_level(const char *name, enum log_level *ret)
{
    static const enum log_level levels[] = {LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO,
                                            LOG_LEVEL_DEBUG};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strcmp(name, log_level_name(levels[i])) == 0) {
            *ret = levels[i];
            return 0;
        }
    return -EINVAL;
}

static void log_write(enum log_level level, const struct log_field *fields, const char *fmt,
                      va_list ap)
{
    int saved = errno;
    char line[LOG_LINE_MAX];
    int n = snprintf(line, sizeof(line), "%s: ", log_level_name(level));
    if (n < 0)
        n = 0;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len] = '\0';
    if (log_sink && log_sink(level, fields, line + n) == 0) {
        errno = saved;
        return;
    }
    line[len++] = '\n';
    ssize_t w;
    do
        w = write(STDERR_FILENO, line, len);
    while (w < 0 && errno == EINTR);
    errno = saved;
}

static void log_write_v(enum log_level level, const struct log_field *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_write_v(enum log_level level, const struct log_field *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_write(level, fields, fmt, ap);
    va_end(ap);
}

static void log_report_suppressed(struct log_window *w)
{
    if (!w->fmt || w->suppressed == 0)
        return;
    /* The kind: the format's words up to its first conversion. */
    int kind_len = (int)strcspn(w->fmt, "%");
    char from[32] = "processes known by pid only";
    if (w->who != LOG_WHO_PIDS)
        snprintf(from, sizeof(from), "uid %u", (unsigned)(uint32_t)w->who);
    log_write_v(w->level,
                LOG_FIELDS(LOG_NUM("SUPPRESSED", w->suppressed), LOG_NUM("CLIENT_PID", w->last_pid)),
                "log: suppressed %" PRIu64 " similar messages (\"%.*s...\") from %s, last from "
                "pid %d",
                w->suppressed, kind_len > 60 ? 60 : kind_len, w->fmt, from, (int)w->last_pid);
    w->suppressed = 0;
}

/* Whom a line is about, for its rate limit: a user (CLIENT_UID, else
 * OWNER_UID: a line about an object its owner's clients caused), else all
 * pids together. false if the fields name no client. */
static bool log_who(const struct log_field *fields, uint64_t *who, pid_t *pid)
{
    bool has_uid = false, has_pid = false;
    uint64_t uid = 0;
    for (const struct log_field *f = fields; f->key; f++) {
        if (f->str)
            continue;
        if (strcmp(f->key, "CLIENT_UID") == 0 || (!has_uid && strcmp(f->key, "OWNER_UID") == 0)) {
            has_uid = true;
            uid = f->num;
        } else if (strcmp(f->key, "CLIENT_PID") == 0) {
            has_pid = true;
            *pid = (pid_t)f->num;
        }
    }
    /* A pid costs a fork, a uid does not come cheap: lines that name only
     * a pid share one window per kind, or a user forking short-lived
     * processes would get LOG_BURST lines each and fill the table. */
    *who = has_uid ? (1ull << 32 | (uint32_t)uid) : LOG_WHO_PIDS;
    return has_uid || has_pid;
}

/* Whether a line may be written now (counting it against its client). */
static bool log_admit(enum log_level level, const struct log_field *fields, const char *fmt)
{
    if (level == LOG_LEVEL_DEBUG || !fields || !log_clock)
        return true;
    uint64_t who;
    pid_t pid = 0;
    if (!log_who(fields, &who, &pid))
        return true;
    uint64_t h = (who * 0x9e3779b97f4a7c15ull) ^ ((uintptr_t)fmt * 0xff51afd7ed558ccdull);
    uint64_t now = log_clock();
    /* This (client, kind)'s window among LOG_PROBE slots, else a free or
     * ended one. Never one still running for someone else: two kinds that
     * share a slot must not reset each other's count. */
    struct log_window *w = NULL, *spare = NULL;
    for (unsigned i = 0; i < LOG_PROBE && !w; i++) {
        struct log_window *c = &log_windows[((h >> 32) + i) % LOG_SLOTS];
        if (c->fmt == fmt && c->who == who)
            w = c;
        else if (!spare && (!c->fmt || now - c->start_ns >= LOG_WINDOW_NS))
            spare = c;
    }
    if (w && now - w->start_ns >= LOG_WINDOW_NS) {
        log_report_suppressed(w);
        *w = (struct log_window){.fmt = fmt, .who = who, .start_ns = now, .level = level};
    } else if (!w && spare) {
        log_report_suppressed(spare);
        w = spare;
        *w = (struct log_window){.fmt = fmt, .who = who, .start_ns = now, .level = level};
    } else if (!w) {
        log_overflow++; /* every slot nearby is busy: drop, and say so later */
        return false;
    }
    w->last_pid = pid;
    if (w->lines < LOG_BURST) {
        w->lines++;
        return true;
    }
    w->suppressed++;
    return false;
}

void log_flush_suppressed(bool all)
{
    if (!log_clock)
        return;
    uint64_t now = log_clock();
    for (size_t i = 0; i < LOG_SLOTS; i++) {
        struct log_window *w = &log_windows[i];
        if (w->fmt && (all || now - w->start_ns >= LOG_WINDOW_NS)) {
            log_report_suppressed(w);
            w->fmt = NULL;
        }
    }
    static uint64_t overflow_reported_ns;
    if (log_overflow && (all || now - overflow_reported_ns >= LOG_WINDOW_NS)) {
        overflow_reported_ns = now;
        log_write_v(LOG_LEVEL_WARNING, NULL,
                    "log: suppressed %" PRIu64 " messages about clients (too many kinds and "
                    "clients at once to tell apart)",
                    log_overflow);
        log_overflow = 0;
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_write(level, NULL, fmt, ap);
    va_end(ap);
}

void log_msg_fields(enum log_level level, const struct log_field *fields, const char *fmt, ...)
{
    if (!log_enabled(level) || !log_admit(level, fields, fmt))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_write(level, fields, fmt, ap);
    va_end(ap);
}
