/* The fd store: keeping every object in the service manager's file
 * descriptor store, so that `systemctl restart mbqd`, a watchdog kill or a
 * crash loses nothing.
 *
 * Role. Under systemd (and only then: main.c creates the store when
 * $NOTIFY_SOCKET is set), this is the registry's observer. For every
 * object it parks the segment's memfd under the name "seg-<id>", for every
 * trigger the eventfd under "trg-<id>-<token>", and next to them a state
 * record: a sealed memfd holding a DaemonState (mbq.proto: names, kinds,
 * owners, modes, configurations, unlinked flags and holders, the trigger
 * table with each trigger's installer, the next object id) behind a header
 * with a magic, a version, the payload's size and a checksum. restore.c
 * reads all of it back in the next instance.
 *
 * Order, so that a crash at any point leaves a store that restores:
 *  - a new descriptor is stored before the record that mentions it, and a
 *    record before the reply that lets a client rely on it (every change is
 *    written synchronously, within the request that made it);
 *  - a descriptor is removed after the record that no longer mentions it;
 *  - the record goes under one of two names in turn: the new one is stored
 *    first, then the old one removed (FDSTOREREMOVE removes by name, so one
 *    name could not do this), and restore.c takes the valid record with the
 *    highest generation.
 * What a crash between two steps leaves is either a descriptor no record
 * names (restore drops it) or a record naming a descriptor that is gone
 * (restore drops that object, with a warning): never a wrong object.
 *
 * Limits. The manager keeps at most FileDescriptorStoreMax descriptors and
 * silently closes what exceeds it. So the store counts what it parked and
 * the daemon refuses a new object or trigger (a clear error to the client)
 * when it would not fit with room for the two records of a swap, rather
 * than lose it at the next restart. An sd_notify() that fails is logged and
 * the change that needed it is refused.
 *
 * Batches: a session that ends gives back many things at once; between
 * registry_batch_begin and _end the changes are stored and the record is
 * written once, at the end. */
#include "proto_config.h"
#include "fdstore.h"

#include "log.h"
#include "session.h"
#include "systemd.h"
#include "trigger.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

#define STATE_MAGIC "MBQDSTAT"
#define STATE_MAX_BYTES (64u << 20)
/* Room kept for the records: during a swap both are stored. */
#define STATE_RECORDS 2u

struct state_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint64_t payload_size;
    uint64_t checksum; /* FNV-1a 64 of the payload */
};
_Static_assert(sizeof(struct state_header) == 32, "state header layout");

struct FdStore {
    Registry *registry;
    unsigned max;
    unsigned count; /* segments and triggers stored */
    bool attached;
    bool dirty;
    unsigned batch;
    uint64_t generation; /* of the record stored under state_name */
    char state_name[FDSTORE_NAME_MAX]; /* "" when none is stored */
    char (*removals)[FDSTORE_NAME_MAX]; /* removed after the next record */
    size_t n_removals, cap_removals;
};

void fdstore_segment_name(char name[FDSTORE_NAME_MAX], uint32_t object_id)
{
    snprintf(name, FDSTORE_NAME_MAX, "seg-%" PRIu32, object_id);
}

void fdstore_trigger_name(char name[FDSTORE_NAME_MAX], uint32_t object_id, uint64_t token)
{
    snprintf(name, FDSTORE_NAME_MAX, "trg-%" PRIu32 "-%016" PRIx64, object_id, token);
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* ---- the state record ---- */

/* One object's message and what it points into. */
typedef struct StoredMsg {
    Mbq__V1__StoredObject obj;
    struct proto_config cfg;
    uint32_t *holders;
} StoredMsg;

struct collect {
    StoredMsg *objs;
    size_t n_objs;
    Mbq__V1__StoredTrigger *trgs;
    size_t n_trgs, cap_trgs;
    int error;
};

static bool pids_contain(const uint32_t *v, size_t n, uint32_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == pid)
            return true;
    return false;
}

static void collect_object(Object *o, void *ctx)
{
    struct collect *c = ctx;
    if (c->error)
        return;
    StoredMsg *m = &c->objs[c->n_objs++];
    Mbq__V1__StoredObject *so = &m->obj;
    *so = (Mbq__V1__StoredObject)MBQ__V1__STORED_OBJECT__INIT;
    so->object_id = o->id;
    so->name = o->name;
    so->kind = (Mbq__V1__ObjectKind)o->kind;
    so->owner_uid = o->uid;
    so->owner_gid = o->gid;
    so->mode = o->mode;
    so->unlinked = o->unlinked;
    proto_config_fill(o, &m->cfg);
    switch (o->kind) {
    case OBJECT_BUFFER_QUEUE:
        so->config_case = MBQ__V1__STORED_OBJECT__CONFIG_BUFFER_QUEUE;
        so->buffer_queue = &m->cfg.bq;
        so->n_bound_pools = o->n_bound; /* points into o: the record is packed before o changes */
        so->bound_pools = o->bound;
        break;
    case OBJECT_SIMPLE_QUEUE:
        so->config_case = MBQ__V1__STORED_OBJECT__CONFIG_SIMPLE_QUEUE;
        so->simple_queue = &m->cfg.sq;
        break;
    case OBJECT_POOL:
        so->config_case = MBQ__V1__STORED_OBJECT__CONFIG_POOL;
        so->pool = &m->cfg.pool;
        break;
    }
    if (o->unlinked && (o->open_count || o->n_waiting)) {
        m->holders = calloc((size_t)o->open_count + o->n_waiting, sizeof(*m->holders));
        if (!m->holders) {
            c->error = -ENOMEM;
            return;
        }
        size_t n = 0;
        list_for_each_safe(it, &o->handles) {
            uint32_t pid = (uint32_t)list_entry(it, Handle, object_link)->session->pid;
            if (!pids_contain(m->holders, n, pid))
                m->holders[n++] = pid;
        }
        for (unsigned i = 0; i < o->n_waiting; i++)
            if (!pids_contain(m->holders, n, (uint32_t)o->waiting[i]))
                m->holders[n++] = (uint32_t)o->waiting[i];
        so->n_holder_pids = n;
        so->holder_pids = m->holders;
    }
    list_for_each_safe(it, &o->triggers) {
        const Trigger *t = list_entry(it, Trigger, object_link);
        if (c->n_trgs == c->cap_trgs) {
            size_t cap = c->cap_trgs ? c->cap_trgs * 2 : 16;
            Mbq__V1__StoredTrigger *v = realloc(c->trgs, cap * sizeof(*v));
            if (!v) {
                c->error = -ENOMEM;
                return;
            }
            c->trgs = v;
            c->cap_trgs = cap;
        }
        Mbq__V1__StoredTrigger *st = &c->trgs[c->n_trgs++];
        *st = (Mbq__V1__StoredTrigger)MBQ__V1__STORED_TRIGGER__INIT;
        st->object_id = o->id;
        st->token = t->token;
        st->condition = t->condition;
        st->owner_pid = (uint32_t)t->owner_pid;
        st->owner_uid = t->owner_uid;
    }
}

/* A new memfd holding the len bytes at buf, sealed so that nobody, the
 * manager included, can change it. Returns it, or -errno. */
static int state_memfd(const uint8_t *buf, size_t len)
{
    _cleanup_(closep) int fd = memfd_create("mbqd-state", MFD_CLOEXEC | MFD_ALLOW_SEALING |
                                                              MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL)
        fd = memfd_create("mbqd-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, buf + done, len - done, (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        done += (size_t)w;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        return -errno;
    return TAKE_FD(fd);
}

/* Serialises the registry into a new sealed memfd. Returns it, or -errno. */
static int state_write(FdStore *st, uint64_t generation)
{
    size_t n = registry_count(st->registry);
    struct collect c = {.objs = calloc(n ? n : 1, sizeof(StoredMsg))};
    Mbq__V1__StoredObject **objp = calloc(n ? n : 1, sizeof(*objp));
    Mbq__V1__StoredTrigger **trgp = NULL;
    uint8_t *buf = NULL;
    int fd = -1, r = 0;
    if (!c.objs || !objp) {
        r = -ENOMEM;
        goto out;
    }
    registry_for_each(st->registry, collect_object, &c);
    if (c.error) {
        r = c.error;
        goto out;
    }
    trgp = calloc(c.n_trgs ? c.n_trgs : 1, sizeof(*trgp));
    if (!trgp) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < c.n_objs; i++)
        objp[i] = &c.objs[i].obj;
    for (size_t i = 0; i < c.n_trgs; i++)
        trgp[i] = &c.trgs[i];

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    Mbq__V1__DaemonState ds = MBQ__V1__DAEMON_STATE__INIT;
    ds.version = FDSTORE_STATE_VERSION;
    ds.generation = generation;
    ds.next_object_id = registry_next_id(st->registry);
    ds.daemon_pid = (uint32_t)getpid();
    ds.written_usec = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
    ds.n_objects = c.n_objs;
    ds.objects = objp;
    ds.n_triggers = c.n_trgs;
    ds.triggers = trgp;

    size_t len = mbq__v1__daemon_state__get_packed_size(&ds);
    if (len > STATE_MAX_BYTES - sizeof(struct state_header)) {
        r = -EFBIG;
        goto out;
    }
    buf = malloc(sizeof(struct state_header) + len);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    mbq__v1__daemon_state__pack(&ds, buf + sizeof(struct state_header));
    struct state_header h = {.version = FDSTORE_STATE_VERSION,
                             .header_size = sizeof(h),
                             .payload_size = len,
                             .checksum = fnv1a64(buf + sizeof(h), len)};
    memcpy(h.magic, STATE_MAGIC, sizeof(h.magic));
    memcpy(buf, &h, sizeof(h));

    fd = state_memfd(buf, sizeof(h) + len);
    if (fd < 0)
        r = fd;
out:
    for (size_t i = 0; i < c.n_objs; i++)
        free(c.objs[i].holders);
    free(c.objs);
    free(c.trgs);
    free(objp);
    free(trgp);
    free(buf);
    if (r < 0) {
        safe_close(fd);
        return r;
    }
    return fd;
}

int fdstore_read_state(int fd, Mbq__V1__DaemonState **ret)
{
    struct stat s;
    if (fstat(fd, &s) < 0)
        return -errno;
    if (!S_ISREG(s.st_mode) || s.st_size < (off_t)sizeof(struct state_header) ||
        s.st_size > (off_t)STATE_MAX_BYTES)
        return -EBADMSG;
    size_t size = (size_t)s.st_size;
    _cleanup_(freep) uint8_t *buf = malloc(size);
    if (!buf)
        return -ENOMEM;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, buf + done, size - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EBADMSG;
        done += (size_t)n;
    }
    struct state_header h;
    memcpy(&h, buf, sizeof(h));
    if (memcmp(h.magic, STATE_MAGIC, sizeof(h.magic)) != 0 || h.version != FDSTORE_STATE_VERSION ||
        h.header_size != sizeof(h) || h.payload_size != size - sizeof(h) ||
        fnv1a64(buf + sizeof(h), (size_t)h.payload_size) != h.checksum)
        return -EBADMSG;
    Mbq__V1__DaemonState *ds =
        mbq__v1__daemon_state__unpack(NULL, (size_t)h.payload_size, buf + sizeof(h));
    if (!ds)
        return -EBADMSG;
    if (ds->version != FDSTORE_STATE_VERSION) {
        mbq__v1__daemon_state__free_unpacked(ds, NULL);
        return -EBADMSG;
    }
    *ret = ds;
    return 0;
}

/* ---- keeping the store in step ---- */

static void fdstore_queue_removal(FdStore *st, const char *name)
{
    if (st->n_removals == st->cap_removals) {
        size_t cap = st->cap_removals ? st->cap_removals * 2 : 16;
        char(*v)[FDSTORE_NAME_MAX] = realloc(st->removals, cap * sizeof(*v));
        if (!v) {
            /* Remove it now rather than keep it: see the order at the top. */
            systemd_fdstore_remove(name);
            return;
        }
        st->removals = v;
        st->cap_removals = cap;
    }
    snprintf(st->removals[st->n_removals++], FDSTORE_NAME_MAX, "%s", name);
}

static void fdstore_flush_removals(FdStore *st)
{
    for (size_t i = 0; i < st->n_removals; i++) {
        int r = systemd_fdstore_remove(st->removals[i]);
        if (r < 0)
            log_msg(LOG_LEVEL_WARNING, "fd store: cannot remove '%s': %s", st->removals[i],
                    strerror(-r));
    }
    st->n_removals = 0;
}

int fdstore_commit(FdStore *st)
{
    const char *next = strcmp(st->state_name, FDSTORE_STATE_NAME_0) == 0 ? FDSTORE_STATE_NAME_1
                                                                        : FDSTORE_STATE_NAME_0;
    int fd = state_write(st, st->generation + 1);
    int r = fd;
    if (fd >= 0) {
        r = systemd_fdstore_add(fd, next);
        safe_close(fd); /* the manager has its own copy */
    }
    if (r < 0) {
        log_msg(LOG_LEVEL_ERROR, "fd store: cannot store the state record: %s; a restart would "
                "restore an older state", strerror(-r));
    } else {
        if (st->state_name[0]) {
            int q = systemd_fdstore_remove(st->state_name);
            if (q < 0)
                log_msg(LOG_LEVEL_WARNING, "fd store: cannot remove the old state record: %s",
                        strerror(-q));
        }
        snprintf(st->state_name, sizeof(st->state_name), "%s", next);
        st->generation++;
        st->dirty = false;
        r = 0;
    }
    fdstore_flush_removals(st);
    return r;
}

/* Writes the record now unless a batch is open. */
static int fdstore_changed(FdStore *st)
{
    st->dirty = true;
    return st->batch ? 0 : fdstore_commit(st);
}

static int fdstore_put(FdStore *st, int fd, const char *name)
{
    int r = systemd_fdstore_add(fd, name);
    if (r < 0) {
        log_msg(LOG_LEVEL_ERROR, "fd store: cannot store '%s': %s", name, strerror(-r));
        return r;
    }
    st->count++;
    r = fdstore_changed(st);
    if (r < 0) {
        systemd_fdstore_remove(name);
        st->count--;
    }
    return r;
}

static int obs_object_added(void *ctx, Object *o)
{
    char name[FDSTORE_NAME_MAX];
    fdstore_segment_name(name, o->id);
    int r = fdstore_put(ctx, object_segment_fd(o), name);
    if (r < 0)
        log_msg_fields(LOG_LEVEL_ERROR, LOG_FIELDS(LOG_STR("OBJECT", o->name)),
                       "refusing %s '%s': it could not be kept across restarts",
                       object_kind_name(o->kind), o->name);
    return r;
}

static void obs_object_removed(void *ctx, Object *o)
{
    FdStore *st = ctx;
    char name[FDSTORE_NAME_MAX];
    /* Triggers nobody owns are still on the object; owned ones went first. */
    list_for_each_safe(it, &o->triggers) {
        fdstore_trigger_name(name, o->id, list_entry(it, Trigger, object_link)->token);
        fdstore_queue_removal(st, name);
        st->count--;
    }
    fdstore_segment_name(name, o->id);
    fdstore_queue_removal(st, name);
    st->count--;
    fdstore_changed(st);
}

static int obs_trigger_added(void *ctx, Object *o, uint64_t token, int efd)
{
    char name[FDSTORE_NAME_MAX];
    fdstore_trigger_name(name, o->id, token);
    return fdstore_put(ctx, efd, name);
}

static void obs_trigger_removed(void *ctx, Object *o, uint64_t token)
{
    FdStore *st = ctx;
    char name[FDSTORE_NAME_MAX];
    fdstore_trigger_name(name, o->id, token);
    fdstore_queue_removal(st, name);
    st->count--;
    fdstore_changed(st);
}

static void obs_changed(void *ctx)
{
    fdstore_changed(ctx);
}

static bool obs_has_room(void *ctx, unsigned n)
{
    const FdStore *st = ctx;
    return (uint64_t)st->count + n + STATE_RECORDS <= st->max;
}

static void obs_batch(void *ctx, bool begin)
{
    FdStore *st = ctx;
    if (begin) {
        st->batch++;
        return;
    }
    if (st->batch && --st->batch == 0 && st->dirty)
        fdstore_commit(st);
}

/* ---- life cycle ---- */

int fdstore_new(FdStore **ret, Registry *r, unsigned max)
{
    FdStore *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->registry = r;
    st->max = max;
    *ret = st;
    return 0;
}

FdStore *fdstore_free(FdStore *st)
{
    if (!st)
        return NULL;
    if (st->attached)
        registry_set_observer(st->registry, NULL);
    free(st->removals);
    free(st);
    return NULL;
}

void fdstore_adopt(FdStore *st, unsigned n, const char *state_name, uint64_t generation)
{
    st->count = n;
    st->generation = generation;
    snprintf(st->state_name, sizeof(st->state_name), "%s", state_name ? state_name : "");
}

void fdstore_attach(FdStore *st)
{
    static const struct registry_observer template = {
        .object_added = obs_object_added,
        .object_removed = obs_object_removed,
        .trigger_added = obs_trigger_added,
        .trigger_removed = obs_trigger_removed,
        .changed = obs_changed,
        .has_room = obs_has_room,
        .batch = obs_batch,
    };
    struct registry_observer obs = template;
    obs.ctx = st;
    registry_set_observer(st->registry, &obs);
    st->attached = true;
}

void fdstore_drop(FdStore *st, const char *name)
{
    int r = systemd_fdstore_remove(name);
    if (r < 0)
        log_msg(LOG_LEVEL_WARNING, "fd store: cannot remove '%s': %s", name, strerror(-r));
}

unsigned fdstore_count(const FdStore *st)
{
    return st->count;
}

unsigned fdstore_max(const FdStore *st)
{
    return st->max;
}
