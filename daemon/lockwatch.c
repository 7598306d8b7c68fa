/* The lock watch: owners in shared memory that are not entitled to a lock.
 *
 * Role. Every lock word in a segment names its owner (a client id or a
 * thread id, shm/lock.h), and a waiter that finds the owner alive waits for it — at most its wait limit,
 * then it fails with -EBUSY (shm/lock.h). A client may write anything into
 * a word it can map: pid 1, mbqd's pid, a thread of another client, its own
 * thread id. Such an owner is alive, never lets go, and would fail every
 * operation on the object for ever. Once per tick this file reads every
 * lock word of every queue and pool; a word that names the same owner for
 * LOCKWATCH_HOLD_NS, with no operation completing on the object meanwhile
 * (object_progress), and whose owner is not entitled to it is broken: the
 * lock is taken over, the object repaired (as after a dead owner), the lock
 * let go so its waiters proceed; the event is logged and counted (shown by
 * `mbqctl stat`).
 *
 * Entitled. The owner thread belongs to a process that has the object open
 * through a session (or, after a restart, is one the object waits for).
 * mbqd itself never holds a lock between two events, so its own ids are
 * never entitled. A dead owner is not entitled either: the watch takes the
 * lock over as any waiter would, so a lock nobody waits on is recovered too.
 * A stopped or looping client that has the object open is entitled: its
 * lock stays held (the peers that share the object get -EBUSY), since
 * taking it would let two writers in.
 *
 * Owners in the client-id form (shm/lock.h) are judged by the id's process
 * as identity.c knows it, in any pid namespace. The sweep also tells
 * identity.c which ids lock words still name, so that none is reused early.
 *
 * Limits. Thread ids are judged in the daemon's pid namespace; an object
 * that a process of another pid namespace has open is not judged for them
 * (its thread ids mean other threads here). A process that inherited a
 * mapping by fork without connecting has no session: a lock it holds for
 * longer than LOCKWATCH_HOLD_NS without progress is broken. */
#include "lockwatch.h"

#include "identity.h"
#include "log.h"
#include "session.h"
#include "trigger.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCKWATCH_HOLD_NS 500000000ull /* 0.5 s: a forged owner holds this long */
#define LOCKWATCH_LOCKS 4              /* per object: BQ_LOCKS, or 1 for a pool */

struct watched {
    uint32_t id;
    uint32_t owner[LOCKWATCH_LOCKS];
    uint64_t since[LOCKWATCH_LOCKS]; /* when owner was first seen there */
    uint64_t progress;               /* see object_progress() */
    uint64_t broken;                 /* locks taken from owners not entitled */
    bool seen;                       /* this tick */
};

static struct {
    struct watched *v;
    size_t n, cap;
    ino_t own_pidns;
} lw;

static struct watched *lockwatch_find(uint32_t id, bool add)
{
    for (size_t i = 0; i < lw.n; i++)
        if (lw.v[i].id == id)
            return &lw.v[i];
    if (!add)
        return NULL;
    if (lw.n == lw.cap) {
        size_t cap = lw.cap ? lw.cap * 2 : 16;
        struct watched *v = realloc(lw.v, cap * sizeof(*v));
        if (!v)
            return NULL;
        lw.v = v;
        lw.cap = cap;
    }
    lw.v[lw.n] = (struct watched){.id = id};
    return &lw.v[lw.n++];
}

uint64_t lockwatch_broken(uint32_t object_id)
{
    const struct watched *w = lockwatch_find(object_id, false);
    return w ? w->broken : 0;
}

static ino_t pidns_of(pid_t pid)
{
    char path[64];
    struct stat st;
    if (pid > 0)
        snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
    else
        snprintf(path, sizeof(path), "/proc/self/ns/pid");
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* The process a thread id belongs to here, or 0 if there is none. */
static pid_t tid_process(uint32_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%u/status", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *t = strstr(buf, "\nTgid:");
    return t ? (pid_t)strtol(t + 6, NULL, 10) : 0;
}

enum verdict { ENTITLED, NOT_ENTITLED, CANNOT_JUDGE };

static enum verdict lockwatch_judge(Object *o, uint32_t owner, pid_t *proc)
{
    *proc = 0;
    if (!slock_tid_alive(owner))
        return NOT_ENTITLED; /* dead (or no such id): recover it as a waiter would */
    if (owner & SLOCK_CID) {
        /* A client id: its process as the daemon knows it, in any namespace. */
        uint32_t id = (owner >> SLOCK_CID_SHIFT) & SLOCK_CID_MAX;
        pid_t pid = identity_pid(id);
        *proc = pid;
        if (id == slock_identity() || pid <= 0)
            return NOT_ENTITLED; /* mbqd holds nothing between events */
        list_for_each_safe(it, &o->handles) {
            const Handle *h = list_entry(it, Handle, object_link);
            if (h->session->pid == pid)
                return ENTITLED;
        }
        for (unsigned i = 0; i < o->n_waiting; i++)
            if (o->waiting[i] == pid)
                return ENTITLED;
        return NOT_ENTITLED;
    }
    pid_t pid = tid_process(owner);
    *proc = pid;
    if (pid == getpid())
        return NOT_ENTITLED; /* mbqd holds nothing between events */
    bool foreign = false, entitled = false;
    list_for_each_safe(it, &o->handles) {
        const Handle *h = list_entry(it, Handle, object_link);
        if (h->session->pid == pid)
            entitled = true;
        if (pidns_of(h->session->pid) != lw.own_pidns)
            foreign = true;
    }
    for (unsigned i = 0; i < o->n_waiting; i++)
        if (o->waiting[i] == pid)
            entitled = true;
    if (entitled)
        return ENTITLED;
    return foreign ? CANNOT_JUDGE : NOT_ENTITLED;
}

static const char *lock_name(const Object *o, int which)
{
    if (o->kind == OBJECT_POOL)
        return "pool lock";
    static const char *names[BQ_LOCKS] = {"tail lock", "tail bias", "head lock", "head bias"};
    return names[which];
}

/* Counters that move whenever someone completes an operation under one of
 * the object's locks. An owner seen twice with no progress in between held
 * the lock all along (a legitimate holder that locks and unlocks over and
 * over shows the same id every time, but moves these). */
static uint64_t object_progress(const Object *o)
{
    return o->kind == OBJECT_POOL ? pool_progress(&o->pool) : bq_progress(&o->bq);
}

static void lockwatch_object(Object *o, void *ctx)
{
    uint64_t now = *(const uint64_t *)ctx;
    uint32_t owner[LOCKWATCH_LOCKS] = {0};
    int nlocks;
    if (o->kind == OBJECT_BUFFER_QUEUE) {
        if (bq_lock_owners(&o->bq, owner) < 0)
            return;
        nlocks = BQ_LOCKS;
    } else if (o->kind == OBJECT_POOL) {
        owner[0] = pool_lock_owner(&o->pool);
        nlocks = 1;
    } else {
        return; /* simple queues have no lock */
    }
    bool any = false;
    for (int i = 0; i < nlocks; i++) {
        any |= owner[i] != 0;
        identity_sweep_note(owner[i]);
    }
    /* Other places that name a client id keep it from reuse as well: a
     * queue's sleeping dequeuers, a pool's client slots (the high bit marks
     * one being reclaimed). */
    if (o->kind == OBJECT_BUFFER_QUEUE)
        for (int i = 0; i < BQ_WAITER_SLOTS; i++)
            identity_sweep_note(bq_waiter_owner(&o->bq, (unsigned)i));
    else
        for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++)
            identity_sweep_note(pool_slot_owner(&o->pool, s) & SLOCK_TID_MASK);
    struct watched *w = lockwatch_find(o->id, any);
    if (!w)
        return;
    w->seen = true;
    uint64_t progress = object_progress(o);
    bool moved = progress != w->progress;
    w->progress = progress;
    for (int i = 0; i < nlocks; i++) {
        if (owner[i] != w->owner[i] || moved) {
            w->owner[i] = owner[i];
            w->since[i] = now;
            continue;
        }
        if (owner[i] == 0 || now - w->since[i] < LOCKWATCH_HOLD_NS)
            continue;
        pid_t proc;
        enum verdict v = lockwatch_judge(o, owner[i], &proc);
        log_msg(LOG_LEVEL_DEBUG, "%s %u '%s': %s held by thread %u (process %d) for %.1f s: %s",
                object_kind_name(o->kind), o->id, o->name, lock_name(o, i), owner[i], (int)proc,
                (double)(now - w->since[i]) / 1e9,
                v == ENTITLED ? "entitled" : v == CANNOT_JUDGE ? "cannot judge" : "not entitled");
        if (v != NOT_ENTITLED) {
            w->since[i] = now; /* judged again after another period */
            continue;
        }
        int r = o->kind == OBJECT_POOL ? pool_break_lock(&o->pool, owner[i])
                                       : bq_break_lock(&o->bq, i, owner[i]);
        if (r <= 0) {
            w->since[i] = now;
            continue;
        }
        w->broken++;
        w->owner[i] = 0;
        log_msg_fields(LOG_LEVEL_WARNING,
                       LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("LOCK_OWNER", owner[i]),
                                  LOG_NUM("LOCK_OWNER_PID", proc)),
                       "%s %u '%s': %s was held for %.1f s by thread %u (%s%d), which is not "
                       "entitled to it: taken over, repaired and released",
                       object_kind_name(o->kind), o->id, o->name, lock_name(o, i),
                       (double)(now - w->since[i]) / 1e9, owner[i],
                       proc ? "process " : "no process, ", (int)proc);
    }
}

void lockwatch_tick(Registry *r, uint64_t now)
{
    if (!lw.own_pidns)
        lw.own_pidns = pidns_of(0);
    for (size_t i = 0; i < lw.n; i++)
        lw.v[i].seen = false;
    identity_sweep_begin();
    registry_for_each(r, lockwatch_object, &now);
    identity_sweep_end();
    /* Forget the objects that are gone, or hold no lock and broke none. */
    size_t k = 0;
    for (size_t i = 0; i < lw.n; i++)
        if (lw.v[i].seen || (lw.v[i].broken && registry_lookup_id(r, lw.v[i].id)))
            lw.v[k++] = lw.v[i];
    lw.n = k;
    trigger_retry_removals(r);
}
