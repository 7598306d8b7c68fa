/* Triggers: the eventfd behind each installed buffer-queue trigger, and the
 * fan-out of those eventfds to the sessions that have the queue open.
 *
 * Role. Core Media runs a trigger's callback when its condition becomes
 * true; across processes, mbq makes each trigger an eventfd that the process
 * changing the queue writes (shm/bq_trigger.c evaluates the conditions). Every
 * process attached to the queue must therefore hold every trigger's eventfd:
 * the daemon creates it, keeps it open while the trigger exists, hands it to
 * the installer in the reply, to the other sessions in a TriggersChanged
 * event, and to later openers in the Open reply (session.c).
 *
 * Invariants.
 *  - A Trigger exists exactly while its token is installed in the queue's
 *    segment through the daemon's mapping (trigger_forget_all at shutdown is
 *    the one exception: the segment keeps it for the clients). A removal
 *    that finds the queue locked by someone who does not let go (the daemon
 *    never waits on shared memory) ends the Trigger at once and leaves its
 *    token on a retry list, taken out of the segment on a later tick.
 *  - t->owner is a live handle of the installing session; the handle's and
 *    the session's trigger counts include t (the trigger quota). After a
 *    restart, restored triggers have no owner until their process adopts
 *    them (AdoptTrigger, after its Reattach), and are removed when that
 *    process is seen dead (restore.c) or the object is destroyed.
 *  - The registry's observer (the fd store) hears of every install and
 *    removal that changes the segment, so the eventfd is kept across
 *    restarts exactly while the trigger exists.
 *  - The daemon's mapping has every trigger's eventfd registered (it is the
 *    installer), so a firing the daemon causes, at install, is never left
 *    pending. */
#include "trigger.h"

#include "log.h"
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <mbq/status.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>

static void trigger_defer_removal(Object *o, uint64_t token);

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
    t->owner_pid = owner->session->pid;
    t->owner_uid = owner->session->uid;
    t->condition = condition;
    t->token = token;
    t->efd = efd;
    list_add_tail(&o->triggers, &t->object_link); /* the state record lists it */
    r = registry_note_trigger_added(o, token, efd);
    if (r < 0) {
        list_del(&t->object_link);
        if (bq_remove_trigger(&o->bq, token) == -EBUSY)
            trigger_defer_removal(o, token);
        return r;
    }
    efd = -1; /* t owns it now */
    owner->triggers++;
    owner->session->n_triggers++;
    log_msg(LOG_LEVEL_DEBUG, "queue %u '%s': trigger %#" PRIx64 " (condition %d) installed by session %" PRIu64,
            o->id, o->name, token, condition, owner->session->id);
    *ret = TAKE_PTR(t);
    return 0;
}

/* Who hears of changes to a queue's trigger set (the session layer). */
static trigger_changed_fn *trigger_listener = trigger_changed_ignore;

void trigger_changed_ignore(Session *s, uint32_t object_id, const uint64_t *added_token,
                            int added_fd, const uint64_t *removed, size_t n_removed)
{
}

void trigger_set_listener(trigger_changed_fn *fn)
{
    trigger_listener = fn ? fn : trigger_changed_ignore;
}

static const Session *trigger_owner_session(const Trigger *t)
{
    return t->owner ? t->owner->session : NULL;
}

void trigger_announce(Trigger *t)
{
    list_for_each_safe(it, &t->object->handles) {
        Handle *h = list_entry(it, Handle, object_link);
        if (h->session != trigger_owner_session(t))
            trigger_listener(h->session, t->object->id, &t->token, t->efd, NULL, 0);
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
            trigger_listener(h->session, o->id, NULL, -1, tokens, n);
    }
}

/* Tokens still in a segment whose removal found the queue locked. */
struct pending_removal {
    uint32_t object_id;
    uint64_t token;
};
static struct pending_removal *pending;
static size_t n_pending, cap_pending;

static void trigger_defer_removal(Object *o, uint64_t token)
{
    if (n_pending == cap_pending) {
        size_t cap = cap_pending ? cap_pending * 2 : 8;
        struct pending_removal *v = realloc(pending, cap * sizeof(*v));
        if (!v) {
            log_msg(LOG_LEVEL_ERROR, "queue %u '%s': out of memory: trigger %#" PRIx64
                    " stays in the segment", o->id, o->name, token);
            return;
        }
        pending = v;
        cap_pending = cap;
    }
    pending[n_pending++] = (struct pending_removal){o->id, token};
}

void trigger_retry_removals(Registry *r)
{
    for (size_t i = 0; i < n_pending;) {
        Object *o = registry_lookup_id(r, pending[i].object_id);
        if (o && o->kind == OBJECT_BUFFER_QUEUE &&
            bq_remove_trigger(&o->bq, pending[i].token) == -EBUSY) {
            i++;
            continue;
        }
        if (o)
            log_msg(LOG_LEVEL_INFO, "queue %u '%s': trigger %#" PRIx64 " removed from the segment "
                    "now that its lock is free", o->id, o->name, pending[i].token);
        pending[i] = pending[--n_pending];
    }
}

/* Takes t out of the segment and out of the books; the caller announces. */
static void trigger_destroy(Trigger *t, bool in_segment)
{
    Object *o = t->object;
    if (in_segment) {
        int r = bq_remove_trigger(&o->bq, t->token);
        if (r == -EBUSY) {
            log_msg_fields(LOG_LEVEL_WARNING,
                           LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OWNER_UID", o->uid)),
                           "queue %u '%s' is locked by a client that does not answer: trigger %#"
                           PRIx64 " leaves the segment later", o->id, o->name, t->token);
            trigger_defer_removal(o, t->token);
        } else if (r < 0) {
            /* Only a repair of a scribbled trigger table can have dropped
             * it, and a client of the queue can do that at will: both lines
             * are rate-limited against the queue's owner. */
            log_msg_fields(LOG_LEVEL_WARNING,
                           LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OWNER_UID", o->uid)),
                           "queue %u '%s': trigger %#" PRIx64 " was already gone from the segment",
                           o->id, o->name, t->token);
        }
        registry_note_trigger_removed(o, t->token);
    }
    list_del(&t->object_link);
    if (t->owner) {
        t->owner->triggers--;
        t->owner->session->n_triggers--;
    }
    safe_close(t->efd);
    free(t);
}

void trigger_remove(Trigger *t)
{
    Object *o = t->object;
    const Session *owner = trigger_owner_session(t);
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

/* ---- after a restart ---- */

int trigger_restore(Object *o, uint64_t token, int32_t condition, pid_t owner_pid,
                    uid_t owner_uid, int efd, Trigger **ret)
{
    _cleanup_(closep) int fd = efd;
    if (o->kind != OBJECT_BUFFER_QUEUE || trigger_find(o, token))
        return MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
    Trigger *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    /* Validates the token against the segment, under the queue lock. */
    int r = bq_set_trigger_fd(&o->bq, token, fd);
    if (r < 0) {
        free(t);
        return r;
    }
    t->object = o;
    t->owner_pid = owner_pid;
    t->owner_uid = owner_uid;
    t->condition = condition;
    t->token = token;
    t->efd = TAKE_FD(fd);
    list_add_tail(&o->triggers, &t->object_link);
    *ret = t;
    return 0;
}

unsigned trigger_sweep_unknown(Object *o)
{
    if (o->kind != OBJECT_BUFFER_QUEUE)
        return 0;
    /* The tokens read here are only candidates: bq_remove_trigger checks
     * the token against the segment under its lock, so a scribbled table
     * can only make a removal fail. */
    unsigned n = 0;
    for (unsigned i = 0; i < BQ_MAX_TRIGGERS; i++) {
        uint64_t token;
        if (bq_trigger_token_at(&o->bq, i, &token) != 1)
            continue;
        if (trigger_find(o, token))
            continue;
        if (bq_remove_trigger(&o->bq, token) == 0) {
            n++;
            log_msg_fields(LOG_LEVEL_WARNING, LOG_FIELDS(LOG_STR("OBJECT", o->name)),
                           "queue %u '%s': removed trigger %#" PRIx64 " that no record "
                           "describes (the previous mbqd died while installing it)",
                           o->id, o->name, token);
        }
    }
    return n;
}

void trigger_adopt(Trigger *t, Handle *owner)
{
    t->owner = owner;
    owner->triggers++;
    owner->session->n_triggers++;
}

struct orphans {
    pid_t pid;
    unsigned removed;
};

static void remove_orphans_on(Object *o, void *ctx)
{
    struct orphans *or = ctx;
    list_for_each_safe(it, &o->triggers) {
        Trigger *t = list_entry(it, Trigger, object_link);
        if (t->owner || t->owner_pid != or->pid)
            continue;
        log_msg_fields(LOG_LEVEL_INFO,
                       LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("CLIENT_PID", t->owner_pid),
                                  LOG_NUM("CLIENT_UID", t->owner_uid)),
                       "queue %u '%s': trigger %#" PRIx64 " removed: pid %d, which installed it "
                       "before the restart, is gone", o->id, o->name, t->token, (int)t->owner_pid);
        trigger_remove(t);
        or->removed++;
    }
}

unsigned trigger_remove_orphans_of(Registry *r, pid_t pid)
{
    struct orphans or = {.pid = pid};
    registry_for_each(r, remove_orphans_on, &or);
    return or.removed;
}

void trigger_object_finalize(Object *o)
{
    /* Only unowned triggers can be left: an owner's handle keeps the object
     * open, and shutdown forgot the owned ones already. */
    list_for_each_safe(it, &o->triggers) {
        Trigger *t = list_entry(it, Trigger, object_link);
        list_del(&t->object_link);
        if (t->owner) {
            t->owner->triggers--;
            t->owner->session->n_triggers--;
        }
        safe_close(t->efd);
        free(t);
    }
}
