/* Triggers: the eventfd behind each installed buffer-queue trigger, and the
 * fan-out of those eventfds to the sessions that have the queue open.
 *
 * Role. Core Media runs a trigger's callback when its condition becomes
 * true; across processes, mbq makes each trigger an eventfd that the process
 * changing the queue writes (shm/bq.c evaluates the conditions). Every
 * process attached to the queue must therefore hold every trigger's eventfd:
 * the daemon creates it, keeps it open while the trigger exists, hands it to
 * the installer in the reply, to the other sessions in a TriggersChanged
 * event, and to later openers in the Open reply (session.c).
 *
 * Invariants.
 *  - A Trigger exists exactly while its token is installed in the queue's
 *    segment through the daemon's mapping (trigger_forget_all at shutdown is
 *    the one exception: the segment keeps it for the clients).
 *  - t->owner is a live handle of the installing session; the handle's and
 *    the session's trigger counts include t (the trigger quota).
 *  - The daemon's mapping has every trigger's eventfd registered (it is the
 *    installer), so a firing the daemon causes, at install, is never left
 *    pending. */
#include "trigger.h"

#include "log.h"
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/eventfd.h>

int trigger_install(Handle *owner, int32_t condition, mbq_time time, int64_t threshold,
                    Trigger **ret)
{
    Object *o = owner->object;
    _cleanup_(freep) Trigger *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    _cleanup_(closep) int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -errno;
    uint64_t token;
    int r = bq_install_trigger(&o->bq, condition, time, threshold, efd, &token);
    if (r < 0)
        return r;
    t->object = o;
    t->owner = owner;
    t->token = token;
    t->efd = TAKE_FD(efd);
    list_add_tail(&o->triggers, &t->object_link);
    owner->triggers++;
    owner->session->n_triggers++;
    log_msg(LOG_LEVEL_DEBUG, "queue %u '%s': trigger %#" PRIx64 " (condition %d) installed by session %" PRIu64,
            o->id, o->name, token, condition, owner->session->id);
    *ret = TAKE_PTR(t);
    return 0;
}

void trigger_announce(Trigger *t)
{
    list_for_each_safe(it, &t->object->handles) {
        Handle *h = list_entry(it, Handle, object_link);
        if (h->session != t->owner->session)
            session_push_triggers_changed(h->session, t->object->id, &t->token, t->efd, NULL, 0);
    }
}

Trigger *trigger_find(Object *o, uint64_t token)
{
    list_for_each_safe(it, &o->triggers) {
        Trigger *t = list_entry(it, Trigger, object_link);
        if (t->token == token)
            return t;
    }
    return NULL;
}

static void announce_removed(Object *o, const Session *except, const uint64_t *tokens, size_t n)
{
    if (n == 0)
        return;
    list_for_each_safe(it, &o->handles) {
        Handle *h = list_entry(it, Handle, object_link);
        if (h->session != except)
            session_push_triggers_changed(h->session, o->id, NULL, -1, tokens, n);
    }
}

/* Takes t out of the segment and out of the books; the caller announces. */
static void trigger_destroy(Trigger *t, bool in_segment)
{
    Object *o = t->object;
    if (in_segment) {
        int r = bq_remove_trigger(&o->bq, t->token);
        /* Only a repair of a scribbled trigger table can have dropped it. */
        if (r < 0)
            log_msg(LOG_LEVEL_WARNING, "queue %u '%s': trigger %#" PRIx64 " was already gone from the segment",
                    o->id, o->name, t->token);
    }
    list_del(&t->object_link);
    t->owner->triggers--;
    t->owner->session->n_triggers--;
    safe_close(t->efd);
    free(t);
}

void trigger_remove(Trigger *t)
{
    Object *o = t->object;
    const Session *owner = t->owner->session;
    uint64_t token = t->token;
    log_msg(LOG_LEVEL_DEBUG, "queue %u '%s': trigger %#" PRIx64 " removed", o->id, o->name, token);
    trigger_destroy(t, true);
    announce_removed(o, owner, &token, 1);
}

unsigned trigger_remove_all(Handle *owner)
{
    Object *o = owner->object;
    uint64_t tokens[BQ_MAX_TRIGGERS];
    size_t n = 0;
    list_for_each_safe(it, &o->triggers) {
        Trigger *t = list_entry(it, Trigger, object_link);
        if (t->owner != owner)
            continue;
        if (n < ARRAY_SIZE(tokens))
            tokens[n++] = t->token;
        trigger_destroy(t, true);
    }
    announce_removed(o, owner->session, tokens, n);
    return (unsigned)n;
}

void trigger_forget_all(Handle *owner)
{
    list_for_each_safe(it, &owner->object->triggers) {
        Trigger *t = list_entry(it, Trigger, object_link);
        if (t->owner == owner)
            trigger_destroy(t, false);
    }
}
