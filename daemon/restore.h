/* Restoring the objects a previous instance left in the service manager's
 * file descriptor store, and waiting for the processes that used them
 * (see restore.c). */
#ifndef MBQD_RESTORE_H
#define MBQD_RESTORE_H

#include "fdstore.h"
#include "registry.h"
#include "systemd.h"

typedef struct PidWatch PidWatch;
typedef struct Server Server;
typedef struct Restorer Restorer;

struct restore_outcome {
    unsigned objects;        /* restored */
    unsigned triggers;       /* restored */
    unsigned dropped;        /* objects or triggers the record names but that failed a check */
    unsigned unknown_fds;    /* descriptors nobody names, closed */
    uint64_t generation;     /* of the record used; 0 if none */
};

/* Restores from the descriptors in fds (every one is taken; the caller has
 * taken the listening socket out). Everything is untrusted: the record is
 * checked (checksum, version), each object against its segment, each
 * trigger against the queue; what fails is dropped with a warning and the
 * rest restored. st (may be NULL: no store now) is brought in step and
 * attached to the registry. Processes that had objects or triggers before
 * the restart are then watched: those already dead are dealt with at once
 * (their triggers removed, their pool references released), the others
 * when they die without having come back (subscribed through pw). Returns 0 with *ret (NULL when
 * there is nothing to watch) or -ENOMEM. */
int restorer_new(Restorer **ret, PidWatch *pw, Registry *r, Server *srv, FdStore *st,
                 struct systemd_fd *fds, int n, struct restore_outcome *outcome);
/* Stops watching. Accepts NULL; returns NULL. */
Restorer *restorer_free(Restorer *rs);

#endif
