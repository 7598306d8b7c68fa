/* The registry: every named object the daemon serves (see registry.c). */
#ifndef MBQD_REGISTRY_H
#define MBQD_REGISTRY_H

#include "util.h"

#include "common/objname.h"

#include <bq.h>
#include <pool.h>
#include <sq.h>
#include <sys/types.h>

#define REGISTRY_NAME_MAX OBJNAME_MAX
#define REGISTRY_DEFAULT_MODE 0600u

typedef struct Registry Registry;
typedef struct Object Object;

/* The numbers of ObjectKind in mbq.proto and of enum seg_kind. */
enum object_kind {
    OBJECT_BUFFER_QUEUE = 1,
    OBJECT_SIMPLE_QUEUE = 2,
    OBJECT_POOL = 3,
};

/* What an object is created with; for an existing object, what it was
 * created with after defaults (capacity 0, age-out 0, page rounding). */
struct object_config {
    enum object_kind kind;
    struct bq_params bq;     /* object_id is set by the registry */
    int32_t sq_capacity;
    struct pool_params pool; /* prefault is forced on */
};

/* What one user (the owner uid of objects) is charged: every object it
 * owns and the bytes of its segment, from creation (or restore) until the
 * object is destroyed, whatever connections come and go. */
typedef struct UserCharge {
    uid_t uid;
    uint32_t objects;
    uint64_t bytes;
} UserCharge;

/* The quotas registry_charge_check applies (mbqd --max-objects,
 * --max-bytes, --max-total-bytes). 0 means no limit. */
struct registry_limits {
    uint32_t max_objects;     /* per user, uid 0 exempt */
    uint64_t max_bytes;       /* per user, uid 0 exempt */
    uint64_t max_total_bytes; /* every user together, root included */
};

/* Pools a buffer queue may carry: at most this many bindings per queue. */
#define REGISTRY_MAX_BINDINGS 1024u

struct Object {
    Registry *registry;
    uint32_t id;
    enum object_kind kind;
    bool unlinked; /* its name is gone; it lives while open_count > 0 */
    uid_t uid;
    gid_t gid;
    uint32_t mode;
    char name[REGISTRY_NAME_MAX + 1];
    struct object_config config;
    union {
        struct bq bq;
        struct sq sq;
        struct pool pool;
    }; /* the daemon's own mapping */
    unsigned open_count;    /* sessions that have it open (entries of handles) */
    struct list handles;    /* owned by session.c: Handle.object_link */
    struct list triggers;   /* owned by trigger.c: Trigger.object_link */
    /* Buffer queues: the ids of the pools bound to it (registry_bind_pool),
     * the only pools the daemon releases entries of; and how many entries
     * it ignored because they named anything else. */
    uint32_t *bound;
    unsigned n_bound, cap_bound;
    uint64_t forged_entries;
    /* Restored and unlinked: processes that had it open before the daemon
     * restarted and have neither reattached nor died yet. It lives while
     * one of them might still come back (see registry_drop_waiting). */
    pid_t *waiting;
    unsigned n_waiting;
    /* Buffer queues (producers.c): the declared producers counted, and
     * after a restore the producers of before that have neither declared
     * again nor exited. */
    unsigned producers;
    pid_t restored_producers[BQ_PRODUCER_PIDS];
    unsigned n_restored_producers;
    struct list link;      /* Registry.objects */
    struct list pool_link; /* Registry.pools (pools only) */
    Object *hash_next[2];  /* chains of the name and id tables */
};

/* Who keeps the objects across restarts (fdstore.c). Each callback is told
 * of a change after it happened in the registry; object_added and
 * trigger_added may refuse (a negative errno), and the change is undone.
 * Destruction at daemon shutdown is not reported: the objects live on in
 * the service manager's store for the next instance. */
struct registry_observer {
    void *ctx;
    int (*object_added)(void *ctx, Object *o);
    void (*object_removed)(void *ctx, Object *o);
    int (*trigger_added)(void *ctx, Object *o, uint64_t token, int efd);
    void (*trigger_removed)(void *ctx, Object *o, uint64_t token);
    /* names, modes, holders of unlinked objects: what the state record says */
    void (*changed)(void *ctx);
    /* room for n more descriptors (objects and triggers) */
    bool (*has_room)(void *ctx, unsigned n);
    /* changes between begin and end are reported together at the end */
    void (*batch)(void *ctx, bool begin);
};

int registry_new(Registry **ret);
/* Destroys every object (unmapping, without touching what clients hold). */
Registry *registry_free(Registry *r);
size_t registry_count(const Registry *r);

/* Installs (or with NULL removes) the observer; obs is copied. */
void registry_set_observer(Registry *r, const struct registry_observer *obs);
/* Whether objects outlive the daemon (an observer keeps them). */
bool registry_persistent(const Registry *r);
/* Whether the observer has room for n more descriptors (true without one). */
bool registry_has_room(Registry *r, unsigned n);
/* trigger.c reports its changes through these. */
int registry_note_trigger_added(Object *o, uint64_t token, int efd);
void registry_note_trigger_removed(Object *o, uint64_t token);
void registry_note_changed(Registry *r);
void registry_batch_begin(Registry *r);
void registry_batch_end(Registry *r);
/* Called for each object just before it is unmapped and freed (trigger.c
 * frees the triggers nobody owns any more). */
void registry_set_finalizer(Registry *r, void (*fn)(Object *o));
/* Calls fn for every object, in creation order; fn may destroy the object
 * it is given, and no other. */
void registry_for_each(Registry *r, void (*fn)(Object *o, void *ctx), void *ctx);
/* The id the next object gets (0: ids are exhausted). */
uint32_t registry_next_id(const Registry *r);

/* An object as the state record of a previous instance describes it. */
struct registry_restore {
    uint32_t id;
    const char *name;
    struct object_config config; /* kind included */
    uid_t uid;
    gid_t gid;
    uint32_t mode;
    bool unlinked;
    const pid_t *holders; /* unlinked: the processes that had it open */
    unsigned n_holders;
    const uint32_t *bound; /* buffer queues: the pools bound to it */
    unsigned n_bound;
};

/* Restores an object from its segment (fd borrowed; the mapping takes its
 * own copy) after checking everything as untrusted: the name, the id (free,
 * and equal to the one in the segment's header), the mode, and that the
 * segment is a valid one of that kind with exactly that configuration.
 * Returns 0, -EEXIST (id or name taken), -EINVAL (bad description),
 * -EBADMSG (the segment is not what the record says), or -errno. The object
 * is charged to its owner (over quota or not: it exists) and reported to no
 * observer. */
int registry_restore(Registry *r, const struct registry_restore *spec, int fd, Object **ret);
/* Sets the next id after a restore: at least one above every object's. */
void registry_set_next_id(Registry *r, uint32_t next);
/* pid will not come back for o (it reattached, or it died): an unlinked
 * object that nobody has open and nobody else may come back for is
 * destroyed. Returns true if o was destroyed. */
bool registry_drop_waiting(Object *o, pid_t pid);

/* 0 if name follows the rules of <mbq/mbq.h>, else -EINVAL. */
int registry_validate_name(const char *name);
/* The segment size a configuration needs, for the byte quota (an estimate
 * that errs high; UINT64_MAX when it overflows). */
uint64_t registry_estimate_size(const struct object_config *config);

/* Creates and names a new object (the name must be free). Returns 0, the
 * shm layer's status for a bad configuration, -ENOSPC when object ids are
 * exhausted, or -errno. On success the object is charged to uid (see
 * registry_charge_check, which the caller asks first) and has open_count 0:
 * the caller opens it. */
int registry_create(Registry *r, const char *name, const struct object_config *config,
                    uint32_t mode, uid_t uid, gid_t gid, Object **ret);
/* The linked object of that name, or NULL. */
Object *registry_lookup_name(Registry *r, const char *name);
/* The object with that id, linked or not, or NULL. */
Object *registry_lookup_id(Registry *r, uint64_t id);
/* Objects (linked and unlinked) whose name starts with prefix, sorted by
 * name then id, into a new array (free() it). Returns the count or -ENOMEM. */
ssize_t registry_list(Registry *r, const char *prefix, Object ***ret);

/* 0 if uid/gid may open o (read and write bits), else -EACCES. */
int registry_check_access(const Object *o, uid_t uid, gid_t gid);
/* 0 if uid may unlink o (its owner or root), else -EACCES (as <mbq/mbq.h> documents for mbq_unlink). */
int registry_check_owner(const Object *o, uid_t uid);

/* A session opens o: node joins o->handles. */
void registry_hold(Object *o, struct list *node);
/* A session closes o: node leaves; an unlinked object closed by all is destroyed. */
void registry_release(Object *o, struct list *node);
/* Removes o's name; destroys it at once if nobody has it open. */
void registry_unlink(Object *o);

int object_segment_fd(const Object *o);
uint64_t object_segment_size(const Object *o);
const char *object_kind_name(enum object_kind kind);

struct object_stats {
    enum object_kind kind;
    union {
        struct bq_stats bq;
        struct {
            int32_t count, capacity;
        } sq;
        struct pool_stats pool;
    };
};
/* Live counters from the daemon's mapping. */
int registry_object_stats(Object *o, struct object_stats *ret);

/* How a client id (shm/lock.h: SLOCK_CID form) maps to the daemon's view of
 * its process's pid, for pool client slots that name their process by id;
 * identity.c's, set once by main.c. */
void registry_set_owner_pid(Registry *r, pid_t (*fn)(uint32_t owner));
/* Pools: references held by the client slot of pid (0 if it has none). */
uint64_t registry_pool_held_by_pid(Object *o, pid_t pid);
/* Whether pid has a client slot in some pool. */
bool registry_pid_has_pool_slot(Registry *r, pid_t pid);
/* Releases what the client slot of pid holds in every pool; returns the
 * references released and (pools_out) in how many pools. */
uint64_t registry_reclaim_pid(Registry *r, pid_t pid, unsigned *pools_out);
/* After a restore: releases what the pool slots that name mbqd's own
 * client id, other than the one this instance attached with, hold (a
 * previous instance's: its own slot, and a dead client's it was reclaiming
 * when it was killed), recounting their intents. Returns the references
 * released and (slots_out) how many slots. */
uint64_t registry_reclaim_previous_instance(Registry *r, unsigned *slots_out);
/* Ages out the cached blocks of every pool (the daemon's timer). */
void registry_age_out(Registry *r, uint64_t now);

/* ---- charges ---- */

/* 0 if uid may own one more object of bytes bytes under l, else -EDQUOT
 * with the reason (naming the limit and its option) in why. */
int registry_charge_check(Registry *r, uid_t uid, uint64_t bytes, const struct registry_limits *l,
                          char *why, size_t why_len);
/* What uid is charged now (zeros if nothing). */
UserCharge registry_user_charge(Registry *r, uid_t uid);
/* Every user charged something, sorted by uid: a new array (free() it) and
 * its length, or -ENOMEM. */
ssize_t registry_user_charges(Registry *r, UserCharge **ret);
/* The bytes of every live segment together. */
uint64_t registry_total_bytes(const Registry *r);

/* ---- bindings: which pools a buffer queue may carry ---- */

/* Binds pool to the buffer queue q (the caller checked the binder's right
 * to open pool). 0 (bound now or before), -EINVAL (not a queue and a pool),
 * -ENOSPC (REGISTRY_MAX_BINDINGS pools that still exist), -ENOMEM.
 * Reported to the observer. */
int registry_bind_pool(Object *q, const Object *pool);
/* Whether entries of the buffer queue q may name pool_id: the only
 * question to ask before acting on a pool id read from q's segment. */
bool registry_queue_may_carry(const Object *q, uint64_t pool_id);

#endif
