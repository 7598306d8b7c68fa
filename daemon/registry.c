/* The registry: named objects, their ids, permissions and the daemon's own
 * mapping of each segment.
 *
 * Role. An object is a buffer queue, a simple queue or a pool living in one
 * sealed memfd that the daemon created and keeps mapped for as long as the
 * object exists: that mapping is how the daemon hands the segment to clients
 * (the memfd), reads live counters for Stat, installs triggers and ages out
 * pool blocks. The registry knows nothing of sessions or the protocol;
 * session.c opens and closes objects through registry_hold/release.
 *
 * Invariants.
 *  - Ids count up from 1 and are never reused; they fit in 32 bits because
 *    queue entries name their pool by a uint32 pool_id. When they run out,
 *    creation fails with -ENOSPC rather than wrap.
 *  - The name table holds linked objects only, so at most one object has a
 *    given name; an unlinked object keeps its name for display, stays in the
 *    id table (a consumer resolves a buffer's pool by id even after the name
 *    is gone) and is destroyed when the last session closes it — a pool
 *    only once none of its blocks is in use (object_gone): a buffer still
 *    queued, or held by a process that has not closed it yet, keeps its
 *    pool, which registry_age_out destroys on the first tick after its
 *    last block was freed. A client that scribbles a block's ref word can
 *    keep a pool it may open alive this way, charged to the pool's owner.
 *  - An object that is not unlinked lives until unlinked, even when nobody
 *    has it open, like a file.
 *  - Everything read from a segment here is a counter or a pid, except the
 *    pool ids of a buffer queue's entries when the queue is destroyed: an
 *    entry's pool id is acted on only if that pool is bound to the queue
 *    (Object.bound, kept in daemon memory: registry_bind_pool, after the
 *    session checked the binder's right to open the pool); any other entry
 *    is ignored, counted (forged_entries) and logged. The shm layer
 *    range-checks the handles it indexes with.
 *  - Every object is charged to its owner uid (UserCharge: one object and
 *    its segment's bytes) from creation or restore until it is destroyed,
 *    and its bytes to total_bytes; connections have nothing to do with it.
 *  - An observer (fdstore.c, under systemd) hears of every creation,
 *    destruction and change once it is done, and may refuse a creation.
 *    Restored objects (registry_restore) come back with their old ids, which
 *    queue entries carry as pool ids; an unlinked one waits for the
 *    processes that had it open to come back or die (Object.waiting). */
#include "registry.h"

#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <mbq/status.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

_Static_assert(OBJECT_BUFFER_QUEUE == (int)SEG_KIND_BUFFER_QUEUE, "kinds agree with shm");
_Static_assert(OBJECT_SIMPLE_QUEUE == (int)SEG_KIND_SIMPLE_QUEUE, "kinds agree with shm");
_Static_assert(OBJECT_POOL == (int)SEG_KIND_POOL, "kinds agree with shm");

enum { TABLE_NAME = 0, TABLE_ID = 1 };

/* A chained hash table of objects; grows by doubling, never shrinks. */
typedef struct ObjectTable {
    Object **slots;
    size_t mask;
    size_t count;
} ObjectTable;

struct Registry {
    ObjectTable table[2];
    struct list objects; /* creation order */
    struct list pools;
    size_t n_objects;
    uint32_t next_id; /* 0 once the ids are exhausted */
    struct registry_observer obs;
    bool has_obs;
    void (*finalize)(Object *o);
    UserCharge *users; /* sorted by uid; entries with nothing charged are removed */
    size_t n_users, cap_users;
    uint64_t total_bytes;
    pid_t (*owner_pid)(uint32_t owner); /* see registry_set_owner_pid */
};

static int user_charge(Registry *r, uid_t uid, uint64_t bytes);
static void user_discharge(Registry *r, uid_t uid, uint64_t bytes);

/* ---- hashing ---- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static uint64_t hash_id(uint64_t id)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    return id;
}

static uint64_t object_hash(const Object *o, int t)
{
    return t == TABLE_NAME ? hash_name(o->name) : hash_id(o->id);
}

static int table_init(ObjectTable *tb)
{
    tb->slots = calloc(64, sizeof(*tb->slots));
    if (!tb->slots)
        return -ENOMEM;
    tb->mask = 63;
    tb->count = 0;
    return 0;
}

/* Doubles the table; on allocation failure keeps it (chains grow longer). */
static void table_grow(ObjectTable *tb, int t)
{
    size_t n = (tb->mask + 1) * 2;
    Object **slots = calloc(n, sizeof(*slots));
    if (!slots)
        return;
    for (size_t i = 0; i <= tb->mask; i++) {
        Object *o = tb->slots[i];
        while (o) {
            Object *next = o->hash_next[t];
            size_t b = object_hash(o, t) & (n - 1);
            o->hash_next[t] = slots[b];
            slots[b] = o;
            o = next;
        }
    }
    free(tb->slots);
    tb->slots = slots;
    tb->mask = n - 1;
}

static void table_insert(ObjectTable *tb, int t, Object *o)
{
    if (tb->count + 1 > tb->mask + 1)
        table_grow(tb, t);
    size_t b = object_hash(o, t) & tb->mask;
    o->hash_next[t] = tb->slots[b];
    tb->slots[b] = o;
    tb->count++;
}

static void table_remove(ObjectTable *tb, int t, Object *o)
{
    Object **p = &tb->slots[object_hash(o, t) & tb->mask];
    for (; *p; p = &(*p)->hash_next[t])
        if (*p == o) {
            *p = o->hash_next[t];
            o->hash_next[t] = NULL;
            tb->count--;
            return;
        }
}

/* ---- life cycle ---- */

int registry_new(Registry **ret)
{
    _cleanup_(freep) Registry *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    if (table_init(&r->table[TABLE_NAME]) < 0)
        return -ENOMEM;
    if (table_init(&r->table[TABLE_ID]) < 0) {
        free(r->table[TABLE_NAME].slots);
        return -ENOMEM;
    }
    list_init(&r->objects);
    list_init(&r->pools);
    r->next_id = 1;
    *ret = TAKE_PTR(r);
    return 0;
}

static void object_unmap(Object *o)
{
    switch (o->kind) {
    case OBJECT_BUFFER_QUEUE:
        bq_detach(&o->bq);
        break;
    case OBJECT_SIMPLE_QUEUE:
        sq_detach(&o->sq);
        break;
    case OBJECT_POOL:
        /* Frees the daemon's client slot; the daemon holds no buffers. */
        pool_detach(&o->pool);
        break;
    }
}

/* A queue entry's reference on a pool block, dropped through the daemon's
 * mapping of that pool if the pool is bound to the queue. An entry naming
 * any other pool was written by a client that skipped the binding (or
 * forged it): the daemon does not act on it. A pool that is gone took its
 * blocks with it. */
static void object_release_entry(void *ctx, uint32_t pool_id, uint64_t handle)
{
    Object *q = ctx;
    if (!registry_queue_may_carry(q, pool_id)) {
        q->forged_entries++;
        return;
    }
    Object *p = registry_lookup_id(q->registry, pool_id);
    if (p && p->kind == OBJECT_POOL)
        pool_release(&p->pool, handle, false);
}

/* The queue's readiness hook in the daemon, which evaluates a trigger at
 * install: the head is ready when its pool (one bound to the queue) says
 * so, as in the clients; an entry the daemon cannot resolve is not ready,
 * so a data-ready trigger never fires at install for a head nobody has
 * marked ready (Core Media). */
static bool object_entry_ready(void *ctx, uint32_t pool_id, uint64_t handle)
{
    Object *q = ctx;
    if (!registry_queue_may_carry(q, pool_id))
        return false;
    Object *p = registry_lookup_id(q->registry, pool_id);
    return p && p->kind == OBJECT_POOL && pool_is_ready(&p->pool, handle);
}

/* Whether taking one of the queue's locks would wait on a live owner other
 * than the daemon's own: one that owns a side's lock, or holds its bias and
 * is inside. A bias holder that is not inside costs the taker no wait (it
 * revokes the bias), and is the usual case: the last producer keeps it
 * after closing. */
static bool queue_locks_busy(const struct bq *q)
{
    uint32_t owner[BQ_LOCKS];
    if (bq_lock_owners(q, owner) < 0)
        return true;
    for (int i = 0; i < BQ_LOCKS; i++)
        if (owner[i] && owner[i] != slock_self() && slock_tid_alive(owner[i]))
            return true;
    return false;
}

/* The intent of the daemon's own release of an entry (see "Accounting" in
 * shm/pool.h), so that no recount ever sees the entry gone and its
 * reference not yet dropped without knowing. */
static int object_move_begin(void *ctx, uint32_t pool_id, uint64_t handle, unsigned which)
{
    Object *q = ctx;
    if (!registry_queue_may_carry(q, pool_id))
        return -ENOENT; /* a forged entry: released by nobody, so moved by nobody */
    Object *p = registry_lookup_id(q->registry, pool_id);
    if (!p || p->kind != OBJECT_POOL)
        return -ENOENT;
    pool_move_begin(&p->pool, handle, which);
    return 0;
}

static void object_move_end(void *ctx, uint32_t pool_id, unsigned which)
{
    Object *q = ctx;
    if (!registry_queue_may_carry(q, pool_id))
        return;
    Object *p = registry_lookup_id(q->registry, pool_id);
    if (p && p->kind == OBJECT_POOL)
        pool_move_end(&p->pool, which);
}

/* A buffer queue that ceases to exist drops the references its entries
 * hold, so that their blocks go back to their pools. The daemon must not
 * wait on shared memory: a queue whose lock a live thread holds (nobody
 * has the queue open any more, so only a process that kept writing to it
 * can) keeps its references, and the daemon says so. (A thread that takes
 * the lock between this check and the reset still stalls it: bq has no
 * non-blocking reset yet.) */
static void object_empty_queue(Object *o)
{
    struct bq_stats st;
    if (bq_stats(&o->bq, &st) == 0 && st.count == 0)
        return;
    if (queue_locks_busy(&o->bq)) {
        log_msg_fields(LOG_LEVEL_WARNING,
                       LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OBJECT_ID", o->id),
                                  LOG_NUM("OWNER_UID", o->uid)),
                       "queue %u '%s': destroyed with its lock held by a live process; the "
                       "references of its %" PRIu64 " entries are not released",
                       o->id, o->name, st.count);
        return;
    }
    bq_set_hooks(&o->bq, &(struct bq_hooks){.ctx = o,
                                            .release = object_release_entry,
                                            .move_begin = object_move_begin,
                                            .move_end = object_move_end});
    uint64_t forged = o->forged_entries;
    int r = bq_reset(&o->bq, NULL, NULL);
    if (o->forged_entries > forged)
        log_msg_fields(LOG_LEVEL_WARNING,
                       LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OBJECT_ID", o->id),
                                  LOG_NUM("OWNER_UID", o->uid),
                                  LOG_NUM("FORGED_ENTRIES", o->forged_entries - forged)),
                       "queue %u '%s': ignored %" PRIu64 " entries naming a pool not bound to "
                       "the queue (written by a client that did not bind it)",
                       o->id, o->name, o->forged_entries - forged);
    if (r < 0) /* its owner's clients can corrupt it at will: limited like them */
        log_msg_fields(LOG_LEVEL_WARNING,
                       LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OBJECT_ID", o->id),
                                  LOG_NUM("OWNER_UID", o->uid)),
                       "queue %u '%s': cannot release its buffers: %d", o->id, o->name, r);
    else
        log_msg(LOG_LEVEL_DEBUG, "queue %u '%s': released the buffers of its %" PRIu64 " entries",
                o->id, o->name, st.count);
}

/* Whether o, unlinked, ceased to exist: nobody has it open or may come
 * back to it, and for a pool no block is in use (pool_blocks_in_use, a
 * hint read without the lock: a scribbled ref word only delays it). */
static bool object_gone(const Object *o)
{
    if (!o->unlinked || o->open_count != 0 || o->n_waiting != 0)
        return false;
    return o->kind != OBJECT_POOL || pool_blocks_in_use(&o->pool) == 0;
}

/* Destroys o. release: it ceased to exist (unlinked and closed by all), so
 * the buffers its entries hold go back to their pools; at daemon shutdown it
 * did not, and the clients keep it as it is. */
static void object_destroy(Object *o, bool release)
{
    Registry *r = o->registry;
    log_msg_fields(LOG_LEVEL_DEBUG, LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OBJECT_ID", o->id)),
                   "object %u '%s' destroyed", o->id, o->name);
    if (release && o->kind == OBJECT_BUFFER_QUEUE)
        object_empty_queue(o);
    if (!o->unlinked)
        table_remove(&r->table[TABLE_NAME], TABLE_NAME, o);
    table_remove(&r->table[TABLE_ID], TABLE_ID, o);
    list_del(&o->link);
    list_del(&o->pool_link);
    user_discharge(r, o->uid, object_segment_size(o));
    r->n_objects--;
    /* Out of the registry (so out of the next state record), still mapped. */
    if (release && r->has_obs)
        r->obs.object_removed(r->obs.ctx, o);
    if (r->finalize)
        r->finalize(o);
    object_unmap(o);
    free(o->waiting);
    free(o->bound);
    free(o);
}

Registry *registry_free(Registry *r)
{
    if (!r)
        return NULL;
    list_for_each_safe(it, &r->objects) {
        Object *o = list_entry(it, Object, link);
        /* Sessions are gone; handles and triggers went with them. */
        list_init(&o->handles);
        o->open_count = 0;
        object_destroy(o, false);
    }
    free(r->table[TABLE_NAME].slots);
    free(r->table[TABLE_ID].slots);
    free(r->users);
    free(r);
    return NULL;
}

size_t registry_count(const Registry *r)
{
    return r->n_objects;
}

/* ---- names ---- */

int registry_validate_name(const char *name)
{
    return objname_valid(name) ? 0 : -EINVAL;
}

const char *object_kind_name(enum object_kind kind)
{
    switch (kind) {
    case OBJECT_BUFFER_QUEUE:
        return "buffer queue";
    case OBJECT_SIMPLE_QUEUE:
        return "simple queue";
    case OBJECT_POOL:
        return "pool";
    }
    return "object";
}

/* ---- creation and lookup ---- */

/* Whether a mapped pool has the classes its recorded configuration says. */
static bool pool_classes_are(const struct pool *p, const struct pool_params *pp)
{
    if ((p->nclasses > 1 ? p->nclasses : 0) != (pp->nclasses > 1 ? pp->nclasses : 0))
        return false;
    for (uint32_t k = 0; p->nclasses > 1 && k < p->nclasses; k++)
        if (p->cls[k].size != pp->class_size[k] || p->cls[k].count != pp->class_count[k])
            return false;
    return true;
}

/* registry_estimate_size for a pool of several classes: each class's
 * blocks and their descriptors, a page of padding per class, the class
 * table. UINT64_MAX when it overflows; 0 when pool_create would refuse
 * it anyway (a class of 0). */
static uint64_t estimate_classes(const struct pool_params *pp, uint64_t overhead)
{
    uint64_t total = overhead + pool_format_area_size() + 4096;
    for (uint32_t k = 0; k < pp->nclasses && k < POOL_MAX_CLASSES; k++) {
        uint64_t size = pool_block_size_round(pp->class_size[k]), n;
        if (pp->class_size[k] == 0 || pp->class_count[k] == 0)
            return 0;
        if (size == 0)
            return UINT64_MAX;
        size += pool_overhead_per_block();
        if (__builtin_mul_overflow(size, (uint64_t)pp->class_count[k], &n) ||
            __builtin_add_overflow(total, n + 4096, &total))
            return UINT64_MAX;
    }
    return total;
}

uint64_t registry_estimate_size(const struct object_config *c)
{
    const uint64_t page = 4096, overhead = 4 * page;
    uint64_t n, size;
    switch (c->kind) {
    case OBJECT_BUFFER_QUEUE:
        n = BQ_CAPACITY_OR_DEFAULT(c->bq.capacity);
        if (n > BQ_MAX_CAPACITY)
            return 0; /* refused by bq_create */
        for (size = 1; size < n; size <<= 1)
            ;
        return size * sizeof(struct bq_entry) + overhead;
    case OBJECT_SIMPLE_QUEUE:
        if (c->sq_capacity <= 0 || c->sq_capacity > SQ_MAX_CAPACITY)
            return 0; /* refused by sq_create */
        return (uint64_t)c->sq_capacity * sizeof(uint64_t) + overhead;
    case OBJECT_POOL:
        if (c->pool.nclasses > 1)
            return estimate_classes(&c->pool, overhead);
        if (c->pool.block_size == 0 || c->pool.block_count == 0)
            return 0; /* refused by pool_create */
        size = pool_block_size_round(c->pool.block_size); /* sub-page: packed */
        if (size == 0)
            return UINT64_MAX;
        size += pool_overhead_per_block();
        if (__builtin_mul_overflow(size, (uint64_t)c->pool.block_count, &n) ||
            __builtin_add_overflow(n, overhead + pool_format_area_size(), &n))
            return UINT64_MAX;
        return n;
    }
    return 0;
}

int registry_create(Registry *r, const char *name, const struct object_config *config,
                    uint32_t mode, uid_t uid, gid_t gid, Object **ret)
{
    if (registry_validate_name(name) < 0)
        return -EINVAL;
    if (registry_lookup_name(r, name))
        return -EEXIST;
    if (r->next_id == 0)
        return -ENOSPC;

    _cleanup_(freep) Object *o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->registry = r;
    o->id = r->next_id;
    o->kind = config->kind;
    o->uid = uid;
    o->gid = gid;
    o->mode = mode;
    memcpy(o->name, name, strlen(name) + 1);
    o->config = *config;
    list_init(&o->handles);
    list_init(&o->triggers);
    list_init(&o->link);
    list_init(&o->pool_link);

    int res;
    switch (config->kind) {
    case OBJECT_BUFFER_QUEUE:
        o->config.bq.object_id = o->id;
        res = bq_create(&o->config.bq, &o->bq);
        if (res < 0)
            return res;
        bq_set_hooks(&o->bq, &(struct bq_hooks){.ctx = o, .is_ready = object_entry_ready});
        o->config.bq.capacity = o->bq.capacity;
        break;
    case OBJECT_SIMPLE_QUEUE:
        res = sq_create(config->sq_capacity, &o->sq);
        if (res < 0)
            return res;
        seg_set_object_id(&o->sq.seg, o->id);
        break;
    case OBJECT_POOL:
        o->config.pool.prefault = true; /* frames: allocation must never fault */
        res = pool_create(&o->config.pool, &o->pool);
        if (res < 0)
            return res;
        seg_set_object_id(&o->pool.seg, o->id);
        o->config.pool.block_size = o->pool.block_size;   /* the largest class's */
        o->config.pool.block_count = o->pool.block_count; /* every class's */
        for (uint32_t c = 0; o->pool.nclasses > 1 && c < o->pool.nclasses; c++)
            o->config.pool.class_size[c] = o->pool.cls[c].size; /* as rounded */
        if (o->config.pool.age_out_ns == 0)
            o->config.pool.age_out_ns = POOL_DEFAULT_AGE_OUT_NS;
        list_add_tail(&r->pools, &o->pool_link);
        break;
    default:
        return -EINVAL;
    }

    r->next_id = o->id == UINT32_MAX ? 0 : o->id + 1;
    table_insert(&r->table[TABLE_NAME], TABLE_NAME, o);
    table_insert(&r->table[TABLE_ID], TABLE_ID, o);
    list_add_tail(&r->objects, &o->link);
    r->n_objects++;
    res = user_charge(r, uid, object_segment_size(o));
    if (res < 0) {
        object_destroy(TAKE_PTR(o), false);
        return res;
    }
    if (r->has_obs) {
        res = r->obs.object_added(r->obs.ctx, o);
        if (res < 0) {
            object_destroy(TAKE_PTR(o), false); /* never seen by anyone */
            return res;
        }
    }
    log_msg_fields(LOG_LEVEL_DEBUG, LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OBJECT_ID", o->id)),
                   "object %u '%s' created: %s, %" PRIu64 " bytes, owner %u:%u mode %04o", o->id,
                   o->name, object_kind_name(o->kind), object_segment_size(o), (unsigned)uid,
                   (unsigned)gid, mode);
    *ret = TAKE_PTR(o);
    return 0;
}

/* Attaches the daemon's mapping to a restored segment and checks that it is
 * the object the record describes. */
static int object_attach(Object *o, int fd)
{
    const struct object_config *c = &o->config;
    const struct seg *seg;
    int res;
    switch (c->kind) {
    case OBJECT_BUFFER_QUEUE:
        res = bq_attach(fd, &o->bq);
        if (res < 0)
            return res;
        bq_set_hooks(&o->bq, &(struct bq_hooks){.ctx = o, .is_ready = object_entry_ready});
        seg = &o->bq.seg;
        if (o->bq.capacity != c->bq.capacity || o->bq.order != c->bq.order ||
            o->bq.full_policy != c->bq.full_policy)
            res = -EBADMSG;
        break;
    case OBJECT_SIMPLE_QUEUE:
        res = sq_attach(fd, &o->sq);
        if (res < 0)
            return res;
        seg = &o->sq.seg;
        if (sq_capacity(&o->sq) != c->sq_capacity)
            res = -EBADMSG;
        break;
    case OBJECT_POOL:
        res = pool_attach(fd, &o->pool);
        if (res < 0)
            return res;
        seg = &o->pool.seg;
        if (o->pool.block_size != c->pool.block_size ||
            o->pool.block_count != c->pool.block_count || !pool_classes_are(&o->pool, &c->pool))
            res = -EBADMSG;
        break;
    default:
        return -EINVAL;
    }
    if (res == 0) {
        if (seg_object_id(seg) != o->id)
            res = -EBADMSG;
    }
    if (res < 0)
        object_unmap(o);
    return res;
}

/* A restored object's lists: the processes an unlinked object waits for,
 * and a queue's bound pools (capped, without duplicates). 0 or -ENOMEM,
 * with nothing allocated. */
static int object_restore_lists(Object *o, const struct registry_restore *spec)
{
    if (spec->unlinked && spec->n_holders) {
        o->waiting = calloc(spec->n_holders, sizeof(*o->waiting));
        if (!o->waiting)
            return -ENOMEM;
        for (unsigned i = 0; i < spec->n_holders; i++)
            if (spec->holders[i] > 0)
                o->waiting[o->n_waiting++] = spec->holders[i];
    }
    if (o->kind == OBJECT_BUFFER_QUEUE && spec->n_bound) {
        unsigned n = spec->n_bound < REGISTRY_MAX_BINDINGS ? spec->n_bound : REGISTRY_MAX_BINDINGS;
        o->bound = calloc(n, sizeof(*o->bound));
        if (!o->bound) {
            free(o->waiting);
            o->waiting = NULL;
            return -ENOMEM;
        }
        o->cap_bound = n;
        for (unsigned i = 0; i < n; i++)
            if (spec->bound[i] && !registry_queue_may_carry(o, spec->bound[i]))
                o->bound[o->n_bound++] = spec->bound[i];
    }
    return 0;
}

int registry_restore(Registry *r, const struct registry_restore *spec, int fd, Object **ret)
{
    const struct object_config *c = &spec->config;
    if (spec->id == 0 || registry_validate_name(spec->name) < 0 || !objmode_valid(spec->mode) ||
        (c->kind != OBJECT_BUFFER_QUEUE && c->kind != OBJECT_SIMPLE_QUEUE &&
         c->kind != OBJECT_POOL))
        return -EINVAL;
    if (registry_lookup_id(r, spec->id) || (!spec->unlinked && registry_lookup_name(r, spec->name)))
        return -EEXIST;

    _cleanup_(freep) Object *o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->registry = r;
    o->id = spec->id;
    o->kind = c->kind;
    o->uid = spec->uid;
    o->gid = spec->gid;
    o->mode = spec->mode;
    o->unlinked = spec->unlinked;
    memcpy(o->name, spec->name, strlen(spec->name) + 1);
    o->config = *c;
    o->config.bq.object_id = o->id;
    o->config.pool.prefault = true;
    list_init(&o->handles);
    list_init(&o->triggers);
    list_init(&o->link);
    list_init(&o->pool_link);
    int res = object_restore_lists(o, spec);
    if (res < 0)
        return res;
    res = object_attach(o, fd);
    if (res == 0) {
        res = user_charge(r, o->uid, object_segment_size(o));
        if (res < 0)
            object_unmap(o);
    }
    if (res < 0) {
        free(o->waiting);
        free(o->bound);
        return res;
    }
    if (o->kind == OBJECT_POOL)
        list_add_tail(&r->pools, &o->pool_link);
    if (!o->unlinked)
        table_insert(&r->table[TABLE_NAME], TABLE_NAME, o);
    table_insert(&r->table[TABLE_ID], TABLE_ID, o);
    list_add_tail(&r->objects, &o->link);
    r->n_objects++;
    if (r->next_id != 0 && o->id >= r->next_id)
        r->next_id = o->id == UINT32_MAX ? 0 : o->id + 1;
    *ret = TAKE_PTR(o);
    return 0;
}

void registry_set_next_id(Registry *r, uint32_t next)
{
    uint32_t floor = 1;
    bool exhausted = next == 0; /* the record says so */
    list_for_each_safe(it, &r->objects) {
        const Object *o = list_entry(it, Object, link);
        if (o->id == UINT32_MAX)
            exhausted = true;
        else if (o->id >= floor)
            floor = o->id + 1;
    }
    r->next_id = exhausted ? 0 : next > floor ? next : floor;
}

bool registry_drop_waiting(Object *o, pid_t pid)
{
    bool found = false;
    for (unsigned i = 0; i < o->n_waiting;) {
        if (o->waiting[i] == pid) {
            o->waiting[i] = o->waiting[--o->n_waiting];
            found = true;
        } else {
            i++;
        }
    }
    if (!found)
        return false;
    if (object_gone(o)) {
        object_destroy(o, true);
        return true;
    }
    registry_note_changed(o->registry);
    return false;
}

uint32_t registry_next_id(const Registry *r)
{
    return r->next_id;
}

void registry_for_each(Registry *r, void (*fn)(Object *o, void *ctx), void *ctx)
{
    list_for_each_safe(it, &r->objects)
        fn(list_entry(it, Object, link), ctx);
}

/* ---- the observer ---- */

void registry_set_observer(Registry *r, const struct registry_observer *obs)
{
    r->has_obs = obs != NULL;
    r->obs = obs ? *obs : (struct registry_observer){0};
}

bool registry_persistent(const Registry *r)
{
    return r->has_obs;
}

bool registry_has_room(Registry *r, unsigned n)
{
    return !r->has_obs || r->obs.has_room(r->obs.ctx, n);
}

int registry_note_trigger_added(Object *o, uint64_t token, int efd)
{
    Registry *r = o->registry;
    return r->has_obs ? r->obs.trigger_added(r->obs.ctx, o, token, efd) : 0;
}

void registry_note_trigger_removed(Object *o, uint64_t token)
{
    Registry *r = o->registry;
    if (r->has_obs)
        r->obs.trigger_removed(r->obs.ctx, o, token);
}

void registry_note_changed(Registry *r)
{
    if (r->has_obs)
        r->obs.changed(r->obs.ctx);
}

void registry_batch_begin(Registry *r)
{
    if (r->has_obs)
        r->obs.batch(r->obs.ctx, true);
}

void registry_batch_end(Registry *r)
{
    if (r->has_obs)
        r->obs.batch(r->obs.ctx, false);
}

void registry_set_finalizer(Registry *r, void (*fn)(Object *o))
{
    r->finalize = fn;
}

Object *registry_lookup_name(Registry *r, const char *name)
{
    ObjectTable *tb = &r->table[TABLE_NAME];
    for (Object *o = tb->slots[hash_name(name) & tb->mask]; o; o = o->hash_next[TABLE_NAME])
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

Object *registry_lookup_id(Registry *r, uint64_t id)
{
    if (id == 0 || id > UINT32_MAX)
        return NULL;
    ObjectTable *tb = &r->table[TABLE_ID];
    for (Object *o = tb->slots[hash_id(id) & tb->mask]; o; o = o->hash_next[TABLE_ID])
        if (o->id == id)
            return o;
    return NULL;
}

static int object_cmp(const void *a, const void *b)
{
    const Object *x = *(Object *const *)a, *y = *(Object *const *)b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->id < y->id ? -1 : x->id > y->id;
}

ssize_t registry_list(Registry *r, const char *prefix, Object ***ret)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    Object **v = calloc(r->n_objects ? r->n_objects : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    size_t n = 0;
    list_for_each_safe(it, &r->objects) {
        Object *o = list_entry(it, Object, link);
        if (strncmp(o->name, prefix ? prefix : "", plen) == 0)
            v[n++] = o;
    }
    qsort(v, n, sizeof(*v), object_cmp);
    *ret = v;
    return (ssize_t)n;
}

/* ---- permissions ---- */

int registry_check_access(const Object *o, uid_t uid, gid_t gid)
{
    if (uid == 0)
        return 0;
    unsigned shift = uid == o->uid ? 6 : gid == o->gid ? 3 : 0;
    unsigned rw = (o->mode >> shift) & 06;
    return rw == 06 ? 0 : -EACCES;
}

int registry_check_owner(const Object *o, uid_t uid)
{
    return uid == 0 || uid == o->uid ? 0 : -EACCES;
}

/* ---- opening, closing, unlinking ---- */

void registry_hold(Object *o, struct list *node)
{
    list_add_tail(&o->handles, node);
    o->open_count++;
    if (o->unlinked) /* its holders are part of the state record */
        registry_note_changed(o->registry);
}

void registry_release(Object *o, struct list *node)
{
    list_del(node);
    o->open_count--;
    if (!o->unlinked)
        return;
    if (object_gone(o))
        object_destroy(o, true);
    else
        registry_note_changed(o->registry);
}

void registry_unlink(Object *o)
{
    if (o->unlinked)
        return;
    table_remove(&o->registry->table[TABLE_NAME], TABLE_NAME, o);
    o->unlinked = true;
    log_msg_fields(LOG_LEVEL_DEBUG, LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OBJECT_ID", o->id)),
                   "object %u '%s' unlinked (%u open)", o->id, o->name, o->open_count);
    if (object_gone(o))
        object_destroy(o, true);
    else
        registry_note_changed(o->registry);
}

/* ---- the daemon's mapping ---- */

static const struct seg *object_seg(const Object *o)
{
    switch (o->kind) {
    case OBJECT_BUFFER_QUEUE:
        return &o->bq.seg;
    case OBJECT_SIMPLE_QUEUE:
        return &o->sq.seg;
    case OBJECT_POOL:
        return &o->pool.seg;
    }
    return NULL;
}

int object_segment_fd(const Object *o)
{
    return object_seg(o)->fd;
}

uint64_t object_segment_size(const Object *o)
{
    return object_seg(o)->size;
}

int registry_object_stats(Object *o, struct object_stats *ret)
{
    *ret = (struct object_stats){.kind = o->kind};
    switch (o->kind) {
    case OBJECT_BUFFER_QUEUE:
        return bq_stats(&o->bq, &ret->bq);
    case OBJECT_SIMPLE_QUEUE:
        ret->sq.count = sq_count(&o->sq);
        ret->sq.capacity = sq_capacity(&o->sq);
        return 0;
    case OBJECT_POOL:
        return pool_stats(&o->pool, &ret->pool);
    }
    return -EINVAL;
}

/* ---- pools: per-client accounting ---- */

void registry_set_owner_pid(Registry *r, pid_t (*fn)(uint32_t owner))
{
    r->owner_pid = fn;
}

/* Whether a pool client slot's value names process pid: its pid (a client
 * in our pid namespace without a client id) or its client id. */
static bool slot_is_pid(const Registry *r, const struct pool *p, uint32_t s, pid_t pid)
{
    uint32_t v = pool_slot_owner(p, s);
    if (!(v & SLOCK_CID))
        return v == (uint32_t)pid;
    return !(v & ~SLOCK_TID_MASK) && r->owner_pid && r->owner_pid(v) == pid;
}

uint64_t registry_pool_held_by_pid(Object *o, pid_t pid)
{
    if (o->kind != OBJECT_POOL || pid <= 0)
        return 0;
    struct pool *p = &o->pool;
    uint64_t sum = 0;
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
        if (!slot_is_pid(o->registry, p, s, pid))
            continue;
        sum += pool_slot_held(p, s);
    }
    return sum;
}

static bool pool_has_slot_of(const Registry *r, struct pool *p, pid_t pid)
{
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++)
        if (slot_is_pid(r, p, s, pid))
            return true;
    return false;
}

bool registry_pid_has_pool_slot(Registry *r, pid_t pid)
{
    if (pid > 0)
        list_for_each_safe(it, &r->pools)
            if (pool_has_slot_of(r, &list_entry(it, Object, pool_link)->pool, pid))
                return true;
    return false;
}

/* The entries naming (pool, handle) in every buffer queue bound to the
 * pool, for a pool's recount of a block a dead client was moving. A
 * queue names the pool by its object id. Without any lock: -EAGAIN when a
 * queue was moving entries (pool_audit then retries later). */
static int registry_count_refs(void *ctx, uint64_t handle, uint64_t *n)
{
    Object *pool = ctx;
    uint64_t total = 0;
    list_for_each_safe(it, &pool->registry->objects) {
        Object *o = list_entry(it, Object, link);
        /* Only queues bound to the pool carry its references: an entry
         * anywhere else is forged, and counting it would keep a leaked
         * block from ever being recounted. */
        if (o->kind != OBJECT_BUFFER_QUEUE || !registry_queue_may_carry(o, pool->id))
            continue;
        uint64_t k = 0;
        int e = bq_count_refs(&o->bq, pool->id, handle, &k);
        if (e < 0)
            return e;
        total += k;
    }
    *n = total;
    return 0;
}

uint64_t registry_reclaim_pid(Registry *r, pid_t pid, unsigned *pools_out)
{
    uint64_t released = 0;
    unsigned pools = 0;
    if (pid > 0)
        list_for_each_safe(it, &r->pools) {
            Object *o = list_entry(it, Object, pool_link);
            struct pool *p = &o->pool;
            bool found = false;
            for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
                if (!slot_is_pid(r, p, s, pid))
                    continue;
                int n = pool_reclaim_slot_ex(p, s, registry_count_refs, o);
                if (pool_audit_pending(p))
                    log_msg(LOG_LEVEL_DEBUG,
                            "pool %u '%s': a block pid %d was moving is recounted later",
                            o->id, o->name, (int)pid);
                if (n > 0)
                    released += (uint64_t)n;
                found = true;
            }
            pools += found;
        }
    if (pools_out)
        *pools_out = pools;
    return released;
}

uint64_t registry_reclaim_previous_instance(Registry *r, unsigned *slots_out)
{
    /* mbqd keeps its client id across a restart: a slot that names it (with
     * the reclaiming bit or not) and is not the one we attached with is a
     * previous instance's, alive in the liveness table, so nobody else
     * would ever reclaim it. */
    const uint32_t id = slock_identity();
    const uint32_t self = SLOCK_CID | id << SLOCK_CID_SHIFT;
    uint64_t released = 0;
    unsigned slots = 0;
    if (id)
        list_for_each_safe(it, &r->pools) {
            Object *o = list_entry(it, Object, pool_link);
            struct pool *p = &o->pool;
            for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++) {
                if (s == p->slot || (pool_slot_owner(p, s) & SLOCK_TID_MASK) != self)
                    continue;
                int n = pool_reclaim_slot_ex(p, s, registry_count_refs, o);
                if (n > 0)
                    released += (uint64_t)n;
                slots++;
            }
        }
    if (slots_out)
        *slots_out = slots;
    return released;
}

void registry_age_out(Registry *r, uint64_t now)
{
    list_for_each_safe(it, &r->pools) {
        Object *o = list_entry(it, Object, pool_link);
        /* An unlinked pool nobody has open, kept for its blocks in use (a
         * buffer still queued): gone once the last of them was freed. */
        if (o->unlinked && object_gone(o)) {
            log_msg(LOG_LEVEL_DEBUG, "pool %u '%s': its last block in use was freed", o->id,
                    o->name);
            object_destroy(o, true);
            continue;
        }
        /* Recounts that had to wait (a live client moving the same block, a
         * queue mid-move) are retried here, every tick until done. */
        if (pool_audit_pending(&o->pool) &&
            pool_audit_retry(&o->pool, registry_count_refs, o) == 0)
            log_msg(LOG_LEVEL_DEBUG, "pool %u '%s': deferred recounts done", o->id, o->name);
        /* Lock-free hints read from the segment: with nothing free and
         * resident there is nothing to age, and the pool's lock is left
         * alone. A scribbled count can only delay this pool's own age-out. */
        if (!pool_age_out_due(&o->pool))
            continue;
        int n = pool_age_out(&o->pool, now);
        if (n == -EBUSY) /* its lock stays held: the next tick tries again */
            log_msg(LOG_LEVEL_DEBUG, "pool %u '%s': age-out deferred: the pool is locked",
                    o->id, o->name);
        else if (n < 0)
            log_msg(LOG_LEVEL_WARNING, "pool %u '%s': age-out failed: %s", o->id, o->name,
                    strerror(-n));
        else if (n > 0)
            log_msg(LOG_LEVEL_DEBUG, "pool %u '%s': aged out %d blocks", o->id, o->name, n);
    }
}

/* ---- charges ---- */

/* The index of uid's entry, or where it would go. */
static size_t user_find(const Registry *r, uid_t uid)
{
    size_t lo = 0, hi = r->n_users;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->users[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Charges uid one object of bytes bytes. Fails (-ENOMEM) only when uid
 * has no entry yet and none can be made. */
static int user_charge(Registry *r, uid_t uid, uint64_t bytes)
{
    size_t i = user_find(r, uid);
    if (i == r->n_users || r->users[i].uid != uid) {
        if (r->n_users == r->cap_users) {
            size_t cap = r->cap_users ? r->cap_users * 2 : 16;
            UserCharge *u = realloc(r->users, cap * sizeof(*u));
            if (!u)
                return -ENOMEM;
            r->users = u;
            r->cap_users = cap;
        }
        memmove(&r->users[i + 1], &r->users[i], (r->n_users - i) * sizeof(*r->users));
        r->users[i] = (UserCharge){.uid = uid};
        r->n_users++;
    }
    r->users[i].objects++;
    r->users[i].bytes += bytes;
    r->total_bytes += bytes;
    return 0;
}

static void user_discharge(Registry *r, uid_t uid, uint64_t bytes)
{
    size_t i = user_find(r, uid);
    if (i == r->n_users || r->users[i].uid != uid)
        return; /* never charged (its entry could not be made) */
    UserCharge *u = &r->users[i];
    u->objects--;
    u->bytes -= bytes < u->bytes ? bytes : u->bytes;
    r->total_bytes -= bytes < r->total_bytes ? bytes : r->total_bytes;
    if (u->objects == 0) {
        memmove(u, u + 1, (r->n_users - i - 1) * sizeof(*u));
        r->n_users--;
    }
}

int registry_charge_check(Registry *r, uid_t uid, uint64_t bytes, const struct registry_limits *l,
                          char *why, size_t why_len)
{
    UserCharge u = registry_user_charge(r, uid);
    if (uid != 0 && l->max_objects && u.objects >= l->max_objects) {
        snprintf(why, why_len,
                 "mbqd: quota: uid %u owns %u objects, the most a user may own "
                 "(mbqd --max-objects %u)",
                 (unsigned)uid, u.objects, l->max_objects);
        return -EDQUOT;
    }
    if (uid != 0 && l->max_bytes && (bytes > l->max_bytes || u.bytes > l->max_bytes - bytes)) {
        snprintf(why, why_len,
                 "mbqd: quota: %" PRIu64 " more bytes of segments would exceed the %" PRIu64
                 " bytes a user may own (uid %u owns %" PRIu64 "; mbqd --max-bytes %" PRIu64 ")",
                 bytes, l->max_bytes, (unsigned)uid, u.bytes, l->max_bytes);
        return -EDQUOT;
    }
    if (l->max_total_bytes &&
        (bytes > l->max_total_bytes || r->total_bytes > l->max_total_bytes - bytes)) {
        snprintf(why, why_len,
                 "mbqd: quota: %" PRIu64 " more bytes of segments would exceed the daemon's "
                 "%" PRIu64 " bytes for all users together (%" PRIu64 " in use; "
                 "mbqd --max-total-bytes %" PRIu64 ")",
                 bytes, l->max_total_bytes, r->total_bytes, l->max_total_bytes);
        return -EDQUOT;
    }
    return 0;
}

UserCharge registry_user_charge(Registry *r, uid_t uid)
{
    size_t i = user_find(r, uid);
    if (i < r->n_users && r->users[i].uid == uid)
        return r->users[i];
    return (UserCharge){.uid = uid};
}

ssize_t registry_user_charges(Registry *r, UserCharge **ret)
{
    UserCharge *v = calloc(r->n_users ? r->n_users : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    if (r->n_users)
        memcpy(v, r->users, r->n_users * sizeof(*v));
    *ret = v;
    return (ssize_t)r->n_users;
}

uint64_t registry_total_bytes(const Registry *r)
{
    return r->total_bytes;
}

/* ---- bindings ---- */

bool registry_queue_may_carry(const Object *q, uint64_t pool_id)
{
    for (unsigned i = 0; i < q->n_bound; i++)
        if (q->bound[i] == pool_id)
            return true;
    return false;
}

int registry_bind_pool(Object *q, const Object *pool)
{
    if (q->kind != OBJECT_BUFFER_QUEUE || pool->kind != OBJECT_POOL)
        return -EINVAL;
    if (registry_queue_may_carry(q, pool->id))
        return 0;
    if (q->n_bound == REGISTRY_MAX_BINDINGS) {
        /* Forget the pools that are gone (ids are never reused, so no entry
         * can name them usefully): otherwise anyone who may open the queue
         * could fill its bindings with pools it creates and destroys, and
         * lock every other producer out. */
        unsigned k = 0;
        for (unsigned i = 0; i < q->n_bound; i++)
            if (registry_lookup_id(q->registry, q->bound[i]))
                q->bound[k++] = q->bound[i];
        q->n_bound = k;
    }
    if (q->n_bound == q->cap_bound) {
        if (q->cap_bound >= REGISTRY_MAX_BINDINGS)
            return -ENOSPC;
        unsigned cap = q->cap_bound ? q->cap_bound * 2 : 4;
        uint32_t *b = realloc(q->bound, cap * sizeof(*b));
        if (!b)
            return -ENOMEM;
        q->bound = b;
        q->cap_bound = cap;
    }
    q->bound[q->n_bound++] = pool->id;
    log_msg_fields(LOG_LEVEL_DEBUG,
                   LOG_FIELDS(LOG_STR("OBJECT", q->name), LOG_NUM("OBJECT_ID", q->id),
                              LOG_NUM("POOL_ID", pool->id)),
                   "queue %u '%s': pool %u '%s' bound", q->id, q->name, pool->id, pool->name);
    registry_note_changed(q->registry);
    return 0;
}
