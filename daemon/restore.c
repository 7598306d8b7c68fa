/* Restore: bringing back, in a new mbqd, the objects the previous instance
 * left in the service manager's file descriptor store (fdstore.c says what
 * it stores and in what order), then waiting for the processes that used
 * them.
 *
 * Role. At start, before the daemon says READY=1, restorer_new() sorts the
 * passed descriptors by name ("state-*", "seg-<id>", "trg-<id>-<token>"),
 * picks the valid state record with the highest generation, and rebuilds
 * each object it describes from its segment with its old id (queue entries
 * name their pool by id), name, owner, mode and configuration, then each
 * trigger with its eventfd, recorded in the daemon's mapping of the queue.
 * Sessions are not restored: clients reconnect and Reattach.
 *
 * Ids. Restored objects keep theirs and new ones continue after the
 * record's next id. With a store but no record, ids start at a random point
 * (2^20 .. 2^30 + 2^20), so that objects of an instance whose store was
 * dropped, which clients may still map, are not confused with new ones.
 *
 * Untrusted input. The record and the segments are checked as if a
 * stranger wrote them: the record's checksum, version and decoding
 * (fdstore_read_state), each object's name, id (unique, and the one in its
 * segment's header), mode and configuration against its segment (the shm
 * layer's attach checks seals, sizes and layout), each trigger's token
 * against its queue. What fails costs only itself: it is dropped with a
 * warning, its descriptors closed and removed from the store; the rest is
 * restored. Descriptors no record names are dropped the same way.
 *
 * Waiting. A trigger restored from the record has no owner until its
 * process adopts it; an unlinked object lives while a process that had it
 * open may come back; a pool's client slots hold references for processes
 * that may never reconnect. So the restorer subscribes to every such
 * process's exit (pidwatch.c: a pidfd, or without pidfds a look every
 * second): when it is gone,
 * it stops counting as a producer of a queue (producers.c),
 * its unadopted triggers are removed, it stops keeping unlinked objects
 * alive, and unless it has a session again (whose end releases them as
 * usual) its pool references are released. A process already dead at
 * restore is dealt with before READY=1. A pid reused by an unrelated
 * process before the restore would look alive: then its triggers stay until
 * that process exits, which costs a trigger slot, never correctness. */
#include "restore.h"

#include "identity.h"
#include "log.h"
#include "pidwatch.h"
#include "producers.h"
#include "proto_config.h"
#include "server.h"
#include "trigger.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mbq/status.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>

#define PID_VALID_MAX 0x3fffffffu /* pid_max is at most 2^22; slock's tid mask */

struct Restorer {
    PidWatch *pidwatch;
    Registry *registry;
    Server *server;
};

/* ---- parsing the passed descriptors ---- */

enum entry_kind { ENTRY_SEGMENT = 1, ENTRY_TRIGGER = 2 };

typedef struct Entry {
    enum entry_kind kind;
    uint32_t id;
    uint64_t token;
    int index; /* into the fds array */
    bool used;
} Entry;

/* A non-empty run of digits (base 10 or 16) ending at *end. */
static bool parse_number(const char *s, int base, const char **end, uint64_t *ret)
{
    uint64_t v = 0;
    const char *p = s;
    for (; *p; p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else
            break;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return false;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    if (p == s)
        return false;
    *end = p;
    *ret = v;
    return true;
}

static bool parse_entry(const char *name, Entry *e)
{
    const char *p;
    uint64_t id, token;
    if (strncmp(name, "seg-", 4) == 0) {
        if (!parse_number(name + 4, 10, &p, &id) || *p || id == 0 || id > UINT32_MAX)
            return false;
        *e = (Entry){.kind = ENTRY_SEGMENT, .id = (uint32_t)id};
        return true;
    }
    if (strncmp(name, "trg-", 4) == 0) {
        if (!parse_number(name + 4, 10, &p, &id) || *p != '-' || id == 0 || id > UINT32_MAX)
            return false;
        const char *t = p + 1;
        if (!parse_number(t, 16, &p, &token) || *p || p - t != 16)
            return false;
        *e = (Entry){.kind = ENTRY_TRIGGER, .id = (uint32_t)id, .token = token};
        return true;
    }
    return false;
}

static int entry_cmp(const void *a, const void *b)
{
    const Entry *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->token != y->token)
        return x->token < y->token ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The first unused entry with that key, or NULL. */
static Entry *entry_find(Entry *v, size_t n, enum entry_kind kind, uint32_t id, uint64_t token)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const Entry *m = &v[mid];
        if (m->kind < kind || (m->kind == kind && (m->id < id || (m->id == id && m->token < token))))
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < n && v[lo].kind == kind && v[lo].id == id && v[lo].token == token; lo++)
        if (!v[lo].used)
            return &v[lo];
    return NULL;
}

/* Whether fd is an eventfd (a trigger's descriptor must be one). When
 * /proc cannot say, the benefit of the doubt: writing 8 bytes to anything
 * else only fails. */
static bool fd_is_eventfd(int fd)
{
    char path[64], link[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    if (n < 0)
        return true;
    link[n] = '\0';
    return strcmp(link, "anon_inode:[eventfd]") == 0;
}

/* ---- rebuilding ---- */

static int config_from_stored(const Mbq__V1__StoredObject *so, struct object_config *c)
{
    *c = (struct object_config){0};
    switch (so->kind) {
    case MBQ__V1__OBJECT_KIND__BUFFER_QUEUE:
        if (so->config_case != MBQ__V1__STORED_OBJECT__CONFIG_BUFFER_QUEUE || !so->buffer_queue)
            return -EINVAL;
        c->kind = OBJECT_BUFFER_QUEUE;
        c->bq.capacity = so->buffer_queue->capacity;
        c->bq.order = so->buffer_queue->order;
        c->bq.full_policy = so->buffer_queue->full_policy;
        return 0;
    case MBQ__V1__OBJECT_KIND__SIMPLE_QUEUE:
        if (so->config_case != MBQ__V1__STORED_OBJECT__CONFIG_SIMPLE_QUEUE || !so->simple_queue)
            return -EINVAL;
        c->kind = OBJECT_SIMPLE_QUEUE;
        c->sq_capacity = so->simple_queue->capacity;
        return 0;
    case MBQ__V1__OBJECT_KIND__POOL:
        if (so->config_case != MBQ__V1__STORED_OBJECT__CONFIG_POOL || !so->pool)
            return -EINVAL;
        c->kind = OBJECT_POOL;
        return proto_config_pool_params(so->pool, &c->pool) < 0 ? -EINVAL : 0;
    default:
        return -EINVAL;
    }
}

static const char *restore_error(int r)
{
    switch (r) {
    case -EEXIST:
        return "its id or name is taken by another object of the record";
    case -EINVAL:
        return "the record describes it wrongly";
    case -EBADMSG:
        return "its segment is not the object the record describes";
    case -ENOENT:
        return "its segment is missing from the store";
    default:
        return strerror(-r);
    }
}

static bool restore_object(Registry *r, const Mbq__V1__StoredObject *so, Entry *entries,
                           size_t n_entries, struct systemd_fd *fds)
{
    const char *name = so->name ? so->name : "";
    struct object_config cfg;
    int res = config_from_stored(so, &cfg);
    Entry *e = NULL;
    if (res == 0 && (so->object_id == 0 || so->object_id > UINT32_MAX))
        res = -EINVAL;
    if (res == 0) {
        e = entry_find(entries, n_entries, ENTRY_SEGMENT, (uint32_t)so->object_id, 0);
        if (!e)
            res = -ENOENT;
    }
    pid_t holders[64];
    unsigned nh = 0;
    for (size_t i = 0; i < so->n_holder_pids && nh < ARRAY_SIZE(holders); i++)
        if (so->holder_pids[i] > 0 && so->holder_pids[i] <= PID_VALID_MAX)
            holders[nh++] = (pid_t)so->holder_pids[i];
    Object *o = NULL;
    if (res == 0) {
        struct registry_restore spec = {
            .id = (uint32_t)so->object_id,
            .name = name,
            .config = cfg,
            .uid = so->owner_uid,
            .gid = so->owner_gid,
            .mode = so->mode,
            .unlinked = so->unlinked,
            .holders = holders,
            .n_holders = nh,
            .bound = so->bound_pools, /* the registry caps and deduplicates them */
            .n_bound = so->n_bound_pools > UINT32_MAX ? UINT32_MAX : (unsigned)so->n_bound_pools,
        };
        res = registry_restore(r, &spec, fds[e->index].fd, &o);
    }
    if (res < 0) {
        log_msg_fields(LOG_LEVEL_WARNING, LOG_FIELDS(LOG_STR("OBJECT", name),
                                                     LOG_NUM("OBJECT_ID", so->object_id)),
                       "restore: dropping object %" PRIu64 " '%s': %s", so->object_id, name,
                       restore_error(res));
        return false;
    }
    e->used = true;
    if (o->kind == OBJECT_BUFFER_QUEUE)
        producers_restore(o); /* the producers of before: watched with the other pids */
    log_msg_fields(LOG_LEVEL_DEBUG, LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OBJECT_ID", o->id)),
                   "restore: %s %u '%s'%s", object_kind_name(o->kind), o->id, o->name,
                   o->unlinked ? " (unlinked)" : "");
    return true;
}

static bool restore_trigger(Registry *r, const Mbq__V1__StoredTrigger *st, Entry *entries,
                            size_t n_entries, struct systemd_fd *fds)
{
    Object *o = st->object_id <= UINT32_MAX ? registry_lookup_id(r, st->object_id) : NULL;
    const char *why = NULL;
    Entry *e = NULL;
    if (!o || o->kind != OBJECT_BUFFER_QUEUE)
        why = "its queue was not restored";
    else if (st->owner_pid == 0 || st->owner_pid > PID_VALID_MAX)
        why = "the record names no installer";
    else if (!(e = entry_find(entries, n_entries, ENTRY_TRIGGER, (uint32_t)st->object_id,
                              st->token)))
        why = "its eventfd is missing from the store";
    else if (!fd_is_eventfd(fds[e->index].fd))
        why = "its descriptor is not an eventfd";
    if (!why) {
        Trigger *t;
        int fd = fds[e->index].fd;
        fds[e->index].fd = -1; /* trigger_restore takes it */
        e->used = true;
        int res = trigger_restore(o, st->token, st->condition, (pid_t)st->owner_pid,
                                  st->owner_uid, fd, &t);
        if (res == 0)
            return true;
        e->used = false; /* its name goes from the store */
        why = res == MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN ? "the queue has no such trigger"
                                                     : strerror(-res);
    }
    log_msg_fields(LOG_LEVEL_WARNING, LOG_FIELDS(LOG_STR("OBJECT", o ? o->name : "")),
                   "restore: dropping trigger %#" PRIx64 " of object %" PRIu64 ": %s", st->token,
                   st->object_id, why);
    return false;
}

/* ---- waiting for the processes of before ---- */

struct gone {
    pid_t pid;
    unsigned destroyed;
};

static void drop_waiting_on(Object *o, void *ctx)
{
    struct gone *g = ctx;
    producers_pid_gone(o, g->pid);
    if (registry_drop_waiting(o, g->pid))
        g->destroyed++;
}

/* pidwatch callback, and called directly for a process gone at restore. */
static void restorer_pid_gone(pid_t pid, void *userdata)
{
    Restorer *rs = userdata;
    Registry *r = rs->registry;
    registry_batch_begin(r);
    unsigned triggers = trigger_remove_orphans_of(r, pid);
    struct gone g = {.pid = pid};
    registry_for_each(r, drop_waiting_on, &g);
    uint64_t released = 0;
    unsigned pools = 0;
    /* With a session again, its end releases them (reclaim.c). */
    if (!rs->server || !server_pid_has_session(rs->server, pid, NULL))
        released = registry_reclaim_pid(r, pid, &pools);
    registry_batch_end(r);
    if (triggers || g.destroyed || released)
        log_msg_fields(LOG_LEVEL_INFO, LOG_FIELDS(LOG_NUM("CLIENT_PID", pid), LOG_NUM("RELEASED", released)),
                       "pid %d, a client from before the restart, is gone: removed %u triggers, "
                       "destroyed %u unlinked objects, released %" PRIu64 " buffer references "
                       "in %u pools", (int)pid, triggers, g.destroyed, released, pools);
}

/* Watches pid, or deals with it now if it is gone. */
static int restorer_watch(Restorer *rs, pid_t pid)
{
    if (pid <= 0 || pid == getpid())
        return 0;
    int r = pidwatch_add(rs->pidwatch, pid, -1, restorer_pid_gone, rs);
    if (r == 0)
        restorer_pid_gone(pid, rs);
    return r < 0 ? r : 0;
}

struct pids {
    pid_t *v;
    size_t n, cap;
};

static void pids_add(struct pids *p, pid_t pid)
{
    if (pid <= 0)
        return;
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i] == pid)
            return;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        pid_t *v = realloc(p->v, cap * sizeof(*v));
        if (!v)
            return; /* that process is not watched: its leftovers stay */
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = pid;
}

static void collect_pid(pid_t pid, void *ctx)
{
    pids_add(ctx, pid);
}

static void collect_pids(Object *o, void *ctx)
{
    struct pids *p = ctx;
    producers_for_each_restored(o, collect_pid, p);
    list_for_each_safe(it, &o->triggers) {
        const Trigger *t = list_entry(it, Trigger, object_link);
        if (!t->owner)
            pids_add(p, t->owner_pid);
    }
    for (unsigned i = 0; i < o->n_waiting; i++)
        pids_add(p, o->waiting[i]);
    if (o->kind == OBJECT_POOL)
        for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
            uint32_t v = pool_slot_owner(&o->pool, s);
            v &= PID_VALID_MAX;
            /* A slot names a pid or, in the client-id form, an id whose
             * process the restored id table knows. */
            pids_add(p, v & SLOCK_CID ? identity_owner_pid(v) : (pid_t)v);
        }
}

/* The processes of before: gone ones now, live ones when they go; the
 * previous instance itself is gone, and its pool slots with it. */
static int restorer_watch_before(Restorer *rs)
{
    Registry *r = rs->registry;
    registry_batch_begin(r);
    unsigned prev_slots = 0;
    uint64_t prev_released = registry_reclaim_previous_instance(r, &prev_slots);
    if (prev_slots)
        log_msg(LOG_LEVEL_INFO, "restore: released %" PRIu64 " buffer references in %u pool "
                "slots of the previous instance", prev_released, prev_slots);
    struct pids p = {0};
    registry_for_each(r, collect_pids, &p);
    int res = 0;
    for (size_t i = 0; i < p.n && res == 0; i++)
        res = restorer_watch(rs, p.v[i]);
    free(p.v);
    registry_batch_end(r);
    return res;
}

/* ---- the restore, step by step ---- */

static void sweep_unknown_triggers(Object *o, void *ctx)
{
    unsigned *n = ctx;
    *n += trigger_sweep_unknown(o);
}

/* What one restore works through: the passed descriptors, sorted out. */
struct restore_run {
    Registry *r;
    FdStore *st;
    struct systemd_fd *fds;
    int n;
    Entry *entries; /* segments and triggers, sorted (entry_cmp) */
    size_t n_entries;
    Mbq__V1__DaemonState *ds; /* the newest valid record, or NULL */
    int ds_index;
    struct restore_outcome *out;
};

static void restore_run_done(struct restore_run *run)
{
    free(run->entries);
    if (run->ds)
        mbq__v1__daemon_state__free_unpacked(run->ds, NULL);
}

static bool is_state_name(const char *name)
{
    return strncmp(name, "state-", 6) == 0;
}

/* Step 1: sort the descriptors out and pick the newest valid record. */
static void restore_sort_fds(struct restore_run *run)
{
    for (int i = 0; i < run->n; i++) {
        const char *name = run->fds[i].name;
        if (!is_state_name(name)) {
            if (parse_entry(name, &run->entries[run->n_entries]))
                run->entries[run->n_entries++].index = i;
            continue;
        }
        Mbq__V1__DaemonState *cand = NULL;
        int q = fdstore_read_state(run->fds[i].fd, &cand);
        if (q < 0) {
            log_msg(LOG_LEVEL_WARNING, "restore: ignoring state record '%s': %s", name,
                    q == -EBADMSG ? "it fails its checks" : strerror(-q));
            continue;
        }
        if (run->ds && cand->generation <= run->ds->generation) {
            mbq__v1__daemon_state__free_unpacked(cand, NULL);
            continue;
        }
        if (run->ds)
            mbq__v1__daemon_state__free_unpacked(run->ds, NULL);
        run->ds = cand;
        run->ds_index = i;
    }
    qsort(run->entries, run->n_entries, sizeof(*run->entries), entry_cmp);
}

/* Step 2: the objects and triggers the record describes, and the ids. */
static void restore_from_record(struct restore_run *run)
{
    const Mbq__V1__DaemonState *ds = run->ds;
    struct restore_outcome *out = run->out;
    out->generation = ds->generation;
    log_msg(LOG_LEVEL_INFO, "restore: state record '%s', generation %" PRIu64 ", written by "
            "pid %u: %zu objects, %zu triggers", run->fds[run->ds_index].name, ds->generation,
            ds->daemon_pid, ds->n_objects, ds->n_triggers);
    for (size_t i = 0; i < ds->n_objects; i++) {
        if (ds->objects[i] &&
            restore_object(run->r, ds->objects[i], run->entries, run->n_entries, run->fds))
            out->objects++;
        else
            out->dropped++;
    }
    registry_set_next_id(run->r, ds->next_object_id > UINT32_MAX ? 0 : (uint32_t)ds->next_object_id);
    for (size_t i = 0; i < ds->n_triggers; i++) {
        if (ds->triggers[i] &&
            restore_trigger(run->r, ds->triggers[i], run->entries, run->n_entries, run->fds))
            out->triggers++;
        else
            out->dropped++;
    }
    unsigned swept = 0;
    registry_for_each(run->r, sweep_unknown_triggers, &swept);
}

/* Step 2, without a record. An empty store under a manager: the previous
 * instance's store may have been dropped (systemctl stop) while its clients
 * still map its objects and will reconnect. Numbering from a random point
 * keeps a new object from taking the id of one of those. */
static void restore_without_record(struct restore_run *run)
{
    if (run->n_entries)
        log_msg(LOG_LEVEL_WARNING, "restore: %zu stored descriptors but no valid state record: "
                "dropping them all", run->n_entries);
    uint32_t first = 0;
    if (run->st && getrandom(&first, sizeof(first), GRND_NONBLOCK) == (ssize_t)sizeof(first))
        registry_set_next_id(run->r, (first & 0x3fffffffu) + 0x100000u);
}

static bool restore_name_in_use(const struct restore_run *run, const char *name)
{
    for (size_t j = 0; j < run->n_entries; j++)
        if (run->entries[j].used && strcmp(run->fds[run->entries[j].index].name, name) == 0)
            return true;
    return false;
}

/* Step 3: whatever is left goes, from the store too; a record under the
 * name the next one takes must go before that one is stored. */
static void restore_drop_leftovers(struct restore_run *run, const char *keep)
{
    for (size_t i = 0; i < run->n_entries; i++) {
        const char *name = run->fds[run->entries[i].index].name;
        /* A duplicate of a name in use: removing the name would remove both. */
        if (run->entries[i].used || restore_name_in_use(run, name))
            continue;
        log_msg(LOG_LEVEL_WARNING, "restore: dropping stored descriptor '%s'", name);
        run->out->unknown_fds++;
        if (run->st)
            fdstore_drop(run->st, name);
    }
    for (int i = 0; i < run->n; i++) {
        const char *name = run->fds[i].name;
        Entry probe;
        /* fd < 0: taken (the listening socket, a restored trigger) */
        if (run->fds[i].fd < 0 || i == run->ds_index || (keep && strcmp(name, keep) == 0) ||
            (!is_state_name(name) && parse_entry(name, &probe)))
            continue;
        if (!is_state_name(name)) {
            log_msg(LOG_LEVEL_WARNING, "restore: dropping stored descriptor '%s' (unknown name)",
                    name);
            run->out->unknown_fds++;
        }
        if (run->st)
            fdstore_drop(run->st, name);
    }
}

int restorer_new(Restorer **ret, PidWatch *pw, Registry *r, Server *srv, FdStore *st,
                 struct systemd_fd *fds, int n, struct restore_outcome *out)
{
    *out = (struct restore_outcome){0};
    *ret = NULL;
    Restorer *rs = calloc(1, sizeof(*rs));
    struct restore_run run = {.r = r, .st = st, .fds = fds, .n = n, .ds_index = -1, .out = out,
                              .entries = calloc((size_t)n + 1, sizeof(Entry))};
    if (!rs || !run.entries) {
        free(rs);
        restore_run_done(&run);
        return -ENOMEM;
    }
    rs->pidwatch = pw;
    rs->registry = r;
    rs->server = srv;

    restore_sort_fds(&run);
    if (run.ds)
        restore_from_record(&run);
    else
        restore_without_record(&run);
    const char *keep = run.ds ? fds[run.ds_index].name : NULL;
    restore_drop_leftovers(&run, keep);
    if (st)
        fdstore_adopt(st, out->objects + out->triggers, keep, out->generation);
    restore_run_done(&run);
    if (st)
        fdstore_attach(st);

    int res = restorer_watch_before(rs);
    if (st)
        fdstore_commit(st); /* this instance's own record */

    if (out->objects || out->dropped || out->unknown_fds)
        log_msg(LOG_LEVEL_INFO, "restored %u objects and %u triggers from the fd store; dropped "
                "%u that failed their checks and %u unknown descriptors", out->objects,
                out->triggers, out->dropped, out->unknown_fds);
    if (res < 0) {
        restorer_free(rs);
        return res;
    }
    *ret = rs;
    return 0;
}

Restorer *restorer_free(Restorer *rs)
{
    if (!rs)
        return NULL;
    pidwatch_forget(rs->pidwatch, rs);
    free(rs);
    return NULL;
}
