/* The registry: every named object the daemon serves (see registry.c). */
#ifndef MBQD_REGISTRY_H
#define MBQD_REGISTRY_H

#include "util.h"

#include <bq.h>
#include <pool.h>
#include <sq.h>
#include <sys/types.h>

#define REGISTRY_NAME_MAX 255
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

/* The bytes of live segments a client created: embedded in its session,
 * referenced by each object it created, so that destroying the object (even
 * after the session ended) gives the bytes back to whoever still counts them. */
typedef struct RegistryCharge {
    uint64_t bytes;
    struct list objects; /* Object.charge_link */
} RegistryCharge;

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
    RegistryCharge *charge; /* the creator's, while it counts; NULL after */
    struct list charge_link;
    struct list link;      /* Registry.objects */
    struct list pool_link; /* Registry.pools (pools only) */
    Object *hash_next[2];  /* chains of the name and id tables */
};

int registry_new(Registry **ret);
/* Destroys every object (unmapping, without touching what clients hold). */
Registry *registry_free(Registry *r);
size_t registry_count(const Registry *r);

/* 0 if name follows the rules of <mbq/mbq.h>, else -EINVAL. */
int registry_validate_name(const char *name);
/* The segment size a configuration needs, for the byte quota (an estimate
 * that errs high; UINT64_MAX when it overflows). */
uint64_t registry_estimate_size(const struct object_config *config);

/* Creates and names a new object (the name must be free). Returns 0, the
 * shm layer's status for a bad configuration, -ENOSPC when object ids are
 * exhausted, or -errno. On success the object is charged to charge (may be
 * NULL) and has open_count 0: the caller opens it. */
int registry_create(Registry *r, const char *name, const struct object_config *config,
                    uint32_t mode, uid_t uid, gid_t gid, RegistryCharge *charge, Object **ret);
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

/* Pools: references held by the client slot of pid (0 if it has none). */
uint64_t registry_pool_held_by_pid(Object *o, pid_t pid);
/* Whether pid has a client slot in some pool. */
bool registry_pid_has_pool_slot(Registry *r, pid_t pid);
/* Releases what the client slot of pid holds in every pool; returns the
 * references released and (pools_out) in how many pools. */
uint64_t registry_reclaim_pid(Registry *r, pid_t pid, unsigned *pools_out);
/* Ages out the cached blocks of every pool (the daemon's timer). */
void registry_age_out(Registry *r, uint64_t now);

void registry_charge_init(RegistryCharge *c);
/* The client is gone: its objects stop counting against it. */
void registry_charge_release(RegistryCharge *c);

#endif
