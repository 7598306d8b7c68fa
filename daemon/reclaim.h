/* Releasing the pool references of client processes that went away
 * (see reclaim.c). */
#ifndef MBQD_RECLAIM_H
#define MBQD_RECLAIM_H

#include "registry.h"

#include <sys/types.h>

typedef struct PidWatch PidWatch;
typedef struct Reclaimer Reclaimer;

/* Whether a live session belongs to process pid (the server knows). */
typedef bool reclaim_has_session_fn(void *ctx, pid_t pid);

enum reclaim_result {
    RECLAIM_NONE,     /* the process holds no pool slot: nothing to do */
    RECLAIM_DONE,     /* the process is gone: its references were released */
    RECLAIM_SHARED,   /* another session of the same process lives: left alone */
    RECLAIM_WATCHING, /* the process still runs: released when it exits */
    RECLAIM_LEFT,     /* the process still runs and cannot be watched */
};

struct reclaim_outcome {
    enum reclaim_result result;
    uint64_t released; /* references released (RECLAIM_DONE) */
    unsigned pools;    /* pools they were in */
};

/* has_session(ctx, pid) is asked before any release: a process with a
 * session keeps its references. Exits are waited for through pw. */
int reclaimer_new(Reclaimer **ret, PidWatch *pw, Registry *registry,
                  reclaim_has_session_fn *has_session, void *ctx);
/* Drops the pending exit subscriptions; releases nothing. Accepts NULL. */
Reclaimer *reclaimer_free(Reclaimer *rc);
/* A session of process pid ended: decides what happens to the references
 * the process holds in pools. Takes pidfd (may be -1). */
void reclaimer_session_ended(Reclaimer *rc, pid_t pid, int pidfd, struct reclaim_outcome *ret);

#endif
