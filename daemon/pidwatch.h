/* Waiting for client processes to exit, for every part of the daemon that
 * must act when one does (see pidwatch.c). */
#ifndef MBQD_PIDWATCH_H
#define MBQD_PIDWATCH_H

#include <stdbool.h>
#include <sys/types.h>

struct event_base;
typedef struct PidWatch PidWatch;

/* Called once, from the event loop, when pid has exited; the subscription
 * is gone by then. */
typedef void pidwatch_fn(pid_t pid, void *userdata);

int pidwatch_new(PidWatch **ret, struct event_base *base);
/* Drops every subscription without calling it. Accepts NULL; returns NULL. */
PidWatch *pidwatch_free(PidWatch *pw);

/* Subscribes fn(pid, userdata) to the exit of pid. pidfd (taken; -1: one is
 * opened from the pid now) names the process; without pidfds the pid is
 * looked at every second (proc_state). The same (pid, fn, userdata) is
 * subscribed once. Returns 1 when subscribed, 0 when the process is already
 * gone (nothing subscribed: the caller acts at once), -ENOMEM. */
int pidwatch_add(PidWatch *pw, pid_t pid, int pidfd, pidwatch_fn *fn, void *userdata);
/* Whether anything waits for pid. */
bool pidwatch_watching(const PidWatch *pw, pid_t pid);
/* Drops every subscription with this userdata (a subscriber going away). */
void pidwatch_forget(PidWatch *pw, void *userdata);

#endif
