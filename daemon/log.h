/* Logging: one choke point for every line the daemon writes.
 *
 * Every message goes through log_msg() or log_msg_fields(), which share one
 * writer in log.c; nothing else in the daemon writes to stderr. Levels use
 * syslog's numbers so that the journal backend passes them on as PRIORITY=.
 * The optional fields (KEY=value pairs, keys in the journal's upper-case
 * style: OBJECT, CLIENT_PID, CLIENT_UID, ...) are carried for that backend,
 * which sends them as MBQ_<KEY>=; the stderr backend prints the message
 * only, since the text already says the same thing. */
#ifndef MBQD_LOG_H
#define MBQD_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level {
    LOG_LEVEL_ERROR = 3,
    LOG_LEVEL_WARNING = 4,
    LOG_LEVEL_INFO = 6,
    LOG_LEVEL_DEBUG = 7,
};

/* One structured field: a string, or (str == NULL) a number. */
struct log_field {
    const char *key;
    const char *str;
    uint64_t num;
};

#define LOG_STR(k, v) {.key = (k), .str = (v)}
#define LOG_NUM(k, v) {.key = (k), .num = (uint64_t)(v)}
/* A NULL-key terminated field list, e.g. LOG_FIELDS(LOG_NUM("PEER_PID", pid)). */
#define LOG_FIELDS(...) ((const struct log_field[]){__VA_ARGS__, {.key = 0}})

void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
/* "error", "warning", "info" or "debug": 0 and *ret set, or -EINVAL. */
int log_parse_level(const char *name, enum log_level *ret);

/* A backend that takes every line instead of stderr (the journal, set by
 * main.c when stderr is the journal stream). It returns 0, or a negative
 * errno, and then the line goes to stderr after all. NULL: stderr. */
typedef int (*log_sink_fn)(enum log_level level, const struct log_field *fields, const char *msg);
void log_set_sink(log_sink_fn sink);

/* The clock the rate limit reads (CLOCK_MONOTONIC ns); without one, nothing
 * is limited. */
void log_set_clock(uint64_t (*clock_ns)(void));
/* Reports the windows that ended with messages suppressed (call it from a
 * timer, say once a second); all: every window, ended or not (shutdown). */
void log_flush_suppressed(bool all);

/* Lines with a CLIENT_UID, OWNER_UID or CLIENT_PID field are rate-limited
 * per client (or owner) and format string (see log.c); others are not. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_msg_fields(enum log_level level, const struct log_field *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
