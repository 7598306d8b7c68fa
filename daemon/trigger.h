/* Buffer-queue triggers: one eventfd each, shared with every client that
 * has the queue open (see trigger.c). */
#ifndef MBQD_TRIGGER_H
#define MBQD_TRIGGER_H

#include "registry.h"

#include <mbq/time.h>

typedef struct Handle Handle;
typedef struct Session Session;

/* How trigger.c reports a change of a queue's trigger set to a session that
 * has the queue open: one added trigger (token non-NULL, with its eventfd,
 * borrowed) and/or removed tokens. The session layer registers the one
 * listener (session.c: it pushes Event{TriggersChanged}); trigger.c calls
 * nothing above it. */
typedef void trigger_changed_fn(Session *s, uint32_t object_id, const uint64_t *added_token,
                                int added_fd, const uint64_t *removed, size_t n_removed);
void trigger_set_listener(trigger_changed_fn *fn);
/* The listener until one is set: ignores the change. */
trigger_changed_fn trigger_changed_ignore;

typedef struct Trigger {
    Object *object;
    /* The installing session's handle on object; NULL for a trigger restored
     * after a daemon restart that its process has not adopted (yet). */
    Handle *owner;
    pid_t owner_pid; /* the installing process */
    uid_t owner_uid;
    int32_t condition;
    uint64_t token;
    int efd; /* owned: the daemon keeps it open while the trigger exists */
    struct list object_link; /* Object.triggers */
} Trigger;

/* Installs a trigger on owner's buffer queue with a new eventfd, on the
 * daemon's mapping (an install-time firing is written to the eventfd at
 * once), and counts it against owner. Nobody is told yet: the caller replies
 * first, then calls trigger_announce(). Returns 0 or bq_install_trigger's
 * status, or -errno. */
int trigger_install(Handle *owner, int32_t condition, mbq_time time, int64_t threshold,
                    Trigger **ret);
/* Pushes TriggersChanged{added} with the eventfd to every session that has
 * the queue open, except the installer. */
void trigger_announce(Trigger *t);
/* The trigger with that token on o, or NULL. */
Trigger *trigger_find(Object *o, uint64_t token);
/* Removes t from the queue, tells every other session that has the queue
 * open (TriggersChanged{removed}), closes the eventfd and frees t. */
void trigger_remove(Trigger *t);
/* Removes every trigger owner installed, with one TriggersChanged per other
 * session. Returns how many were removed. */
unsigned trigger_remove_all(Handle *owner);
/* Daemon shutdown: forgets owner's triggers without touching the segment,
 * so that clients keep their eventfds and triggers keep firing. */
void trigger_forget_all(Handle *owner);

/* After a restart: the trigger with token on o's segment, with its eventfd
 * (taken) from the store, installed by owner_pid; nobody owns it until that
 * process adopts it. Records efd in the daemon's mapping (so a pending
 * firing is delivered). Returns 0, MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN (the
 * segment has no such trigger), or -errno; efd is closed on failure. */
int trigger_restore(Object *o, uint64_t token, int32_t condition, pid_t owner_pid,
                    uid_t owner_uid, int efd, Trigger **ret);
/* Removes from o's segment the triggers installed there that the daemon
 * does not know (a previous instance died between installing one and
 * recording it). Returns how many. */
unsigned trigger_sweep_unknown(Object *o);
/* Gives an unowned (restored) trigger to owner, a handle of its process. */
void trigger_adopt(Trigger *t, Handle *owner);
/* Removes the unowned triggers of every object that process pid installed
 * (it died without coming back). Returns how many. */
unsigned trigger_remove_orphans_of(Registry *r, pid_t pid);
/* Takes out of their segments the tokens of removed triggers whose queue
 * was locked at the time (the timer calls it). */
void trigger_retry_removals(Registry *r);
/* The registry's finalizer: frees what is left on a destroyed object. */
void trigger_object_finalize(Object *o);

#endif
