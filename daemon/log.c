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
 * level. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static enum log_level log_max_level = LOG_LEVEL_INFO;
static log_sink_fn log_sink;

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
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_write(level, fields, fmt, ap);
    va_end(ap);
}
