/* The service manager and the journal: every libsystemd call of mbqd
 * (see systemd.c). Without systemd every function here is a cheap no-op:
 * there is nothing to notify, no descriptor was passed, no watchdog runs. */
#ifndef MBQD_SYSTEMD_H
#define MBQD_SYSTEMD_H

#include "log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
typedef struct Systemd Systemd;

/* ---- descriptors passed at start (socket activation, fd store) ---- */

/* One descriptor the service manager passed, with its FDNAME ("unknown"
 * when it gave none). */
struct systemd_fd {
    int fd;     /* owned by the array; -1 once taken */
    char *name; /* owned by the array */
};

/* Takes what the service manager passed in LISTEN_FDS (for this pid), all
 * made close-on-exec, and clears LISTEN_* from the environment. Returns the
 * count (0 when nothing was passed) with *ret set (NULL for 0), or -errno. */
int systemd_listen_fds(struct systemd_fd **ret);
/* Closes the descriptors still in the array and frees it. Returns NULL. */
struct systemd_fd *systemd_fds_free(struct systemd_fd *fds, int n);
/* Whether fd is a listening AF_UNIX SOCK_SEQPACKET socket (mbqd's kind). */
bool systemd_fd_is_listening_seqpacket(int fd);

/* ---- notifications ---- */

/* Whether a service manager listens ($NOTIFY_SOCKET is set). */
bool systemd_notify_enabled(void);
/* Sends state (newline-separated KEY=VALUE). 1 sent, 0 no manager, -errno. */
int systemd_notify(const char *state);
/* FDSTORE=1 with FDNAME=name and the descriptor (borrowed: the manager gets
 * its own copy). 1 sent, 0 no manager, -errno. */
int systemd_fdstore_add(int fd, const char *name);
/* FDSTOREREMOVE=1 for every stored descriptor named name. */
int systemd_fdstore_remove(const char *name);
/* $FDSTORE, which systemd >= 254 sets to FileDescriptorStoreMax; 0 if unset
 * or not a number. */
unsigned systemd_fdstore_max_from_env(void);

/* ---- readiness, status, watchdog, stopping ---- */

/* Creates the watchdog timer when the manager asked for one (half its
 * interval) on base. hang_after_ms > 0: a test hook that stops the pings
 * that long after systemd_ready(), so that the manager sees a hang. */
int systemd_new(Systemd **ret, struct event_base *base, uint64_t hang_after_ms);
/* Cancels the timers; says nothing to the manager. Accepts NULL. */
Systemd *systemd_free(Systemd *sd);
/* READY=1 with STATUS=status, and starts the watchdog pings. */
void systemd_ready(Systemd *sd, const char *status);
/* STATUS=status if it differs from the last one sent (the caller limits the
 * rate: the daemon's 100 ms tick calls this). */
void systemd_status(Systemd *sd, const char *status);
/* STOPPING=1 with STATUS=status. */
void systemd_stopping(Systemd *sd, const char *status);
/* The watchdog interval the manager asked for in microseconds, 0 if none. */
uint64_t systemd_watchdog_usec(const Systemd *sd);
/* Test hook: stops the watchdog pings for good (logs a warning). */
void systemd_stop_watchdog(Systemd *sd);

/* ---- the journal ---- */

/* Whether stderr is the journal stream systemd gave us ($JOURNAL_STREAM
 * names stderr's device and inode). */
bool systemd_stderr_is_journal(void);
/* Sends one entry with the native protocol: PRIORITY, MESSAGE,
 * SYSLOG_IDENTIFIER=mbqd, and each field as MBQ_<KEY>. 0 or -errno. */
int systemd_journal_send(enum log_level level, const struct log_field *fields, const char *msg);

#endif
