/* Sessions: the daemon's side of one client connection, and the protocol.
 *
 * Role. A session is created when a client connects, with the peer's
 * credentials from SO_PEERCRED (pid, uid, gid: what permissions and pool
 * accounting use). It answers each request (mbq.proto says what each one
 * means), keeps what the client holds — the objects it opened (a Handle per
 * object) and the triggers it installed — and counts the triggers against
 * the client's quota. Objects and their bytes are charged to the owning
 * user in the registry for as long as they live (registry_charge_check),
 * not to the connection. When the connection ends, for whatever reason,
 * session_end() gives everything back.
 *
 * Visibility. List shows, and Stat answers about, only the objects the
 * caller may open (or owns); the clients of an object (pids, uids, names)
 * and the pids of a queue's producers are shown to its owner and to root
 * only; a request by id (Open, Reattach, BindPool: ids a client may read
 * from any segment) gets no answer that names an object the caller may not
 * see.
 *
 * After a daemon restart (restore.c), a client that reconnects sends
 * Reattach for each object it still maps (checked to be the very segment)
 * and AdoptTrigger for each trigger it installed before, which makes the
 * session the owner of what its process had, as if it had never left.
 *
 * Protocol rules enforced here. The first request must be Hello with a
 * version range containing 1; requests carry no file descriptors; a packet
 * must decode as a Request with a known body. A violation gets one Response
 * (status -EPROTO, or -EBADMSG for a packet that does not decode, with an
 * error string), then the session is dropped; other sessions are not
 * affected. Every Response echoes its request's id; an error Response always
 * carries an error string.
 *
 * Invariants.
 *  - A Handle exists while its session has the object open (opens > 0); it
 *    is on both the session's and the object's list; n_objects counts them.
 *  - Triggers a session installed belong to one of its handles; closing the
 *    handle (last Close, or session end) removes them first.
 *  - Nothing here blocks on a client: replies and events go through
 *    conn_send(), which queues.
 *  - Logging: requests at debug level only; a session's end at info level,
 *    with what was released and how long it took. */
#include "proto_config.h"
#include "session.h"

#include "identity.h"
#include "lockwatch.h"
#include "log.h"
#include "producers.h"
#include "reclaim.h"
#include "trigger.h"

#include <errno.h>
#include <inttypes.h>
#include <mbq/status.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROTOCOL_VERSION 1u
/* Room for a Response's own fields around a list or stat body. */
#define REPLY_BUDGET (WIRE_MAX_PACKET - 1024)

_Static_assert(WIRE_MAX_FDS >= 1 + BQ_MAX_TRIGGERS, "a queue's fds fit one packet");

static trigger_changed_fn session_push_triggers_changed;

int session_new(Session **ret, Reclaimer *reclaimer, Conn *conn, Registry *registry,
                const SessionLimits *limits, uint64_t id, pid_t pid, uid_t uid, gid_t gid,
                int pidfd)
{
    Session *s = calloc(1, sizeof(*s));
    if (!s) {
        safe_close(pidfd);
        return -ENOMEM;
    }
    /* Sessions are who hears of trigger changes; set on every new one,
     * which costs a store and needs no init order. */
    trigger_set_listener(session_push_triggers_changed);
    s->reclaimer = reclaimer;
    s->conn = conn;
    s->registry = registry;
    s->limits = limits;
    s->id = id;
    s->pid = pid;
    s->uid = uid;
    s->gid = gid;
    s->pidfd = pidfd;
    list_init(&s->handles);
    *ret = s;
    return 0;
}

/* ---- handles ---- */

static Handle *session_find_handle(Session *s, uint64_t object_id)
{
    list_for_each_safe(it, &s->handles) {
        Handle *h = list_entry(it, Handle, session_link);
        if (h->object->id == object_id)
            return h;
    }
    return NULL;
}

static Handle *handle_new(Session *s, Object *o)
{
    Handle *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->object = o;
    h->session = s;
    registry_hold(o, &h->object_link);
    list_add_tail(&s->handles, &h->session_link);
    s->n_objects++;
    return h;
}

/* Closes the session's hold on the object; the triggers must be gone. */
static void handle_free(Handle *h)
{
    Session *s = h->session;
    list_del(&h->session_link);
    s->n_objects--;
    registry_release(h->object, &h->object_link); /* may destroy the object */
    free(h);
}

/* ---- ending ---- */

static const char *session_end_text(enum session_end why)
{
    switch (why) {
    case SESSION_END_EOF:
        return "disconnected";
    case SESSION_END_ERROR:
        return "socket error";
    case SESSION_END_PROTOCOL:
        return "dropped for a protocol violation";
    case SESSION_END_SLOW:
        return "dropped for not reading its messages";
    case SESSION_END_SHUTDOWN:
        return "closed at shutdown";
    }
    return "ended";
}

Session *session_end(Session *s, enum session_end why, const char *detail)
{
    if (!s)
        return NULL;
    const uint64_t t0 = mono_ns();
    const bool shutdown = why == SESSION_END_SHUTDOWN;
    unsigned objects = 0, triggers = 0;

    /* One state record for everything this session gave back. */
    if (!shutdown)
        registry_batch_begin(s->registry);
    list_for_each_safe(it, &s->handles) {
        Handle *h = list_entry(it, Handle, session_link);
        if (shutdown) {
            trigger_forget_all(h); /* clients keep their triggers */
        } else {
            triggers += trigger_remove_all(h);
            producers_drop(h); /* the queue's header keeps them at shutdown */
        }
        handle_free(h);
        objects++;
    }
    if (!shutdown)
        registry_batch_end(s->registry);

    struct reclaim_outcome rc = {.result = RECLAIM_NONE};
    if (!shutdown) /* at shutdown the ids stay alive for the next instance */
        identity_detach(s->client_id);
    if (!shutdown)
        reclaimer_session_ended(s->reclaimer, s->pid, TAKE_FD(s->pidfd), &rc);
    const uint64_t us = (mono_ns() - t0) / 1000;

    char refs[160];
    switch (rc.result) {
    case RECLAIM_NONE:
    case RECLAIM_DONE:
        snprintf(refs, sizeof(refs), "released %" PRIu64 " buffer references in %u pools",
                 rc.released, rc.pools);
        break;
    case RECLAIM_SHARED:
        snprintf(refs, sizeof(refs), "buffer references left to the process's other session");
        break;
    case RECLAIM_WATCHING:
        snprintf(refs, sizeof(refs),
                 "process still running: its buffer references are released when it exits");
        break;
    case RECLAIM_LEFT:
        snprintf(refs, sizeof(refs), "process still running: its buffer references stay with it");
        break;
    }
    /* A connection that never said Hello and held nothing (a probe, such as
     * a second mbqd checking the socket) is not worth an info line. */
    const bool quiet = shutdown || (!s->hello && objects == 0 && rc.released == 0);
    log_msg_fields(quiet ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO,
                   LOG_FIELDS(LOG_NUM("SESSION_ID", s->id), LOG_NUM("CLIENT_PID", s->pid),
                              LOG_NUM("CLIENT_UID", s->uid), LOG_STR("CLIENT_NAME", s->name),
                              LOG_NUM("RELEASED", rc.released), LOG_NUM("CLEANUP_USEC", us)),
                   "session %" PRIu64 " (pid %d, uid %u, '%s') %s%s%s: removed %u triggers, "
                   "closed %u objects, %s; cleanup took %" PRIu64 " us",
                   s->id, (int)s->pid, (unsigned)s->uid, s->name, session_end_text(why),
                   detail ? ": " : "", detail ? detail : "", triggers, objects, refs, us);
    safe_close(s->pidfd);
    free(s);
    return NULL;
}

/* ---- replies ---- */

/* One request being answered. */
typedef struct Call {
    Session *s;
    uint64_t id;
    bool replied; /* a Response went out (the handler sent its body) */
    bool fatal;   /* drop the session after the error reply */
    char error[400];
} Call;

static int call_fail(Call *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int call_fail(Call *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof(c->error), fmt, ap);
    va_end(ap);
    return status;
}

static const char *status_name(int status)
{
    switch (status) {
    case MBQ_BQ_ERR_ALLOCATION_FAILED:
        return "buffer queue: allocation failed";
    case MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING:
        return "buffer queue: required parameter missing";
    case MBQ_BQ_ERR_INVALID_CALLBACKS:
        return "buffer queue: invalid callbacks";
    case MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA:
        return "buffer queue: enqueue after end of data";
    case MBQ_BQ_ERR_QUEUE_IS_FULL:
        return "buffer queue: queue is full";
    case MBQ_BQ_ERR_BAD_TRIGGER_DURATION:
        return "buffer queue: bad trigger duration";
    case MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK:
        return "buffer queue: cannot modify queue from trigger callback";
    case MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION:
        return "buffer queue: invalid trigger condition";
    case MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN:
        return "buffer queue: invalid trigger token";
    case MBQ_BQ_ERR_INVALID_BUFFER:
        return "buffer queue: invalid buffer";
    case MBQ_SQ_ERR_ALLOCATION_FAILED:
        return "simple queue: allocation failed";
    case MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING:
        return "simple queue: required parameter missing";
    case MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE:
        return "simple queue: parameter out of range";
    case MBQ_SQ_ERR_QUEUE_IS_FULL:
        return "simple queue: queue is full";
    case MBQ_POOL_ERR_ALLOCATION_FAILED:
        return "pool: allocation failed";
    case MBQ_POOL_ERR_INVALID_PARAMETER:
        return "pool: invalid parameter";    case -EBUSY: /* shm/lock.h: a lock's owner did not let go within mbqd's bound */
        return "it is locked by a client that does not answer";
    }
    return status > -4096 ? strerror(-status) : "unknown status";
}

static void session_send_response(Session *s, uint64_t id, int status, const char *error,
                                  const Mbq__V1__Response *body, const int *fds, unsigned nfds)
{
    Mbq__V1__Response r = MBQ__V1__RESPONSE__INIT;
    if (body)
        r = *body;
    r.id = id;
    r.status = status;
    r.error = (char *)(error ? error : "");
    Mbq__V1__ServerMessage m = MBQ__V1__SERVER_MESSAGE__INIT;
    m.msg_case = MBQ__V1__SERVER_MESSAGE__MSG_RESPONSE;
    m.response = &r;
    if (conn_send(s->conn, &m, fds, nfds) != -EMSGSIZE)
        return;
    /* Only a bug can make a reply too large: say so rather than go quiet. */
    log_msg(LOG_LEVEL_ERROR, "session %" PRIu64 ": reply to request %" PRIu64 " does not fit a packet",
            s->id, id);
    r = (Mbq__V1__Response)MBQ__V1__RESPONSE__INIT;
    r.id = id;
    r.status = -EMSGSIZE;
    r.error = (char *)"mbqd: the reply does not fit a packet";
    conn_send(s->conn, &m, NULL, 0);
}

static void call_reply(Call *c, const Mbq__V1__Response *body, const int *fds, unsigned nfds)
{
    session_send_response(c->s, c->id, 0, NULL, body, fds, nfds);
    c->replied = true;
}

void session_protocol_error(Session *s, int status, const char *error)
{
    log_msg_fields(LOG_LEVEL_WARNING,
                   LOG_FIELDS(LOG_NUM("SESSION_ID", s->id), LOG_NUM("CLIENT_PID", s->pid),
                              LOG_NUM("CLIENT_UID", s->uid)),
                   "session %" PRIu64 " (pid %d, uid %u): %s; disconnecting", s->id, (int)s->pid,
                   (unsigned)s->uid, error);
    session_send_response(s, 0, status, error, NULL, NULL, 0);
}

/* ---- object descriptions ---- */

typedef struct InfoMsg {
    Mbq__V1__ObjectInfo info;
    struct proto_config cfg;
} InfoMsg;

/* Fills m in place (it points into itself: never copy it). */
static void info_fill(InfoMsg *m, const Object *o)
{
    Mbq__V1__ObjectInfo *i = &m->info;
    *i = (Mbq__V1__ObjectInfo)MBQ__V1__OBJECT_INFO__INIT;
    i->name = (char *)o->name;
    i->kind = (Mbq__V1__ObjectKind)o->kind;
    i->object_id = o->id;
    i->owner_uid = o->uid;
    i->owner_gid = o->gid;
    i->mode = o->mode;
    i->segment_size = object_segment_size(o);
    i->open_count = o->open_count;
    i->unlinked = o->unlinked;
    proto_config_fill(o, &m->cfg);
    switch (o->kind) {
    case OBJECT_BUFFER_QUEUE:
        i->config_case = MBQ__V1__OBJECT_INFO__CONFIG_BUFFER_QUEUE;
        i->buffer_queue = &m->cfg.bq;
        break;
    case OBJECT_SIMPLE_QUEUE:
        i->config_case = MBQ__V1__OBJECT_INFO__CONFIG_SIMPLE_QUEUE;
        i->simple_queue = &m->cfg.sq;
        break;
    case OBJECT_POOL:
        i->config_case = MBQ__V1__OBJECT_INFO__CONFIG_POOL;
        i->pool = &m->cfg.pool;
        break;
    }
}

/* Replies to Create/Open: the description, the segment's memfd as fd 0 and,
 * for a buffer queue, every installed trigger's eventfd after it. To
 * Reattach: the same without the segment. */
static void call_reply_object(Call *c, const Object *o, bool with_segment)
{
    InfoMsg m;
    Mbq__V1__TriggerFd tf[BQ_MAX_TRIGGERS], *tfp[BQ_MAX_TRIGGERS];
    int fds[1 + BQ_MAX_TRIGGERS];
    unsigned nfds = 0, nt = 0;

    info_fill(&m, o);
    if (with_segment) {
        m.info.has_segment = true;
        m.info.segment_fd_index = nfds;
        fds[nfds++] = object_segment_fd(o);
    }
    list_for_each_safe(it, &o->triggers) {
        const Trigger *t = list_entry(it, Trigger, object_link);
        if (nt == BQ_MAX_TRIGGERS)
            break;
        tf[nt] = (Mbq__V1__TriggerFd)MBQ__V1__TRIGGER_FD__INIT;
        tf[nt].token = t->token;
        tf[nt].fd_index = nfds;
        fds[nfds++] = t->efd;
        tfp[nt] = &tf[nt];
        nt++;
    }
    m.info.n_triggers = nt;
    m.info.triggers = tfp;

    Mbq__V1__Response r = MBQ__V1__RESPONSE__INIT;
    r.body_case = MBQ__V1__RESPONSE__BODY_OBJECT;
    r.object = &m.info;
    call_reply(c, &r, fds, nfds);
}

static Mbq__V1__Time time_to_proto(mbq_time t)
{
    Mbq__V1__Time p = MBQ__V1__TIME__INIT;
    p.value = t.value;
    p.timescale = t.timescale;
    p.flags = t.flags;
    p.epoch = t.epoch;
    return p;
}

static mbq_time time_from_proto(const Mbq__V1__Time *p)
{
    if (!p)
        return MBQ_TIME_INVALID;
    return (mbq_time){.value = p->value, .timescale = p->timescale, .flags = p->flags,
                      .epoch = p->epoch};
}

/* ---- requests ---- */

static int handle_hello(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__Hello *req = request->hello;
    Session *s = c->s;
    if (s->hello) {
        c->fatal = true;
        return call_fail(c, -EPROTO, "mbqd: Hello was already received on this connection");
    }
    if (req->min_version > PROTOCOL_VERSION || req->max_version < PROTOCOL_VERSION) {
        c->fatal = true;
        return call_fail(c, -EPROTO,
                         "mbqd: protocol versions %u..%u are not supported; mbqd speaks %u",
                         req->min_version, req->max_version, PROTOCOL_VERSION);
    }
    size_t n = 0;
    for (const char *p = req->client_name; p && *p && n < sizeof(s->name) - 1; p++)
        s->name[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    s->name[n] = '\0';
    s->hello = true;

    Mbq__V1__HelloReply hr = MBQ__V1__HELLO_REPLY__INIT;
    hr.version = PROTOCOL_VERSION;
    hr.session_id = s->id;
    hr.daemon_version = (char *)MBQ_VERSION_STRING;
    hr.restartable = registry_persistent(s->registry);
    s->client_id = identity_attach(s->pid, s->pidfd, req->client_id);
    int ids_fd = identity_ro_fd();
    hr.client_id = ids_fd >= 0 ? s->client_id : 0;
    hr.ids_fd_index = 0;
    Mbq__V1__Response r = MBQ__V1__RESPONSE__INIT;
    r.body_case = MBQ__V1__RESPONSE__BODY_HELLO;
    r.hello = &hr;
    call_reply(c, &r, hr.client_id ? &ids_fd : NULL, hr.client_id ? 1 : 0);
    log_msg(LOG_LEVEL_DEBUG, "session %" PRIu64 ": hello from pid %d uid %u gid %u '%s'", s->id,
            (int)s->pid, (unsigned)s->uid, (unsigned)s->gid, s->name);
    return 0;
}

/* The session's handle on o: its existing one, or a new one. (At most one
 * per object: what a session holds is bounded by the objects that exist,
 * which the users' quotas bound.) */
static int call_hold(Call *c, Object *o, Handle **ret)
{
    Session *s = c->s;
    Handle *h = session_find_handle(s, o->id);
    if (!h) {
        h = handle_new(s, o);
        if (!h)
            return -ENOMEM;
    }
    *ret = h;
    return 0;
}

/* Whether the session may see o in List and Stat, or learn its name
 * from an id (Open, Reattach, BindPool): what it could open, or
 * owns (an owner may have set a mode that locks itself out). */
static bool session_may_see(const Session *s, const Object *o)
{
    return registry_check_owner(o, s->uid) == 0 || registry_check_access(o, s->uid, s->gid) == 0;
}

/* Opens o for the session (a new handle, or one more open on its handle)
 * and replies with its segment. */
static int session_open(Call *c, Object *o, bool check_access)
{
    Session *s = c->s;
    if (check_access && registry_check_access(o, s->uid, s->gid) < 0)
        return call_fail(c, -EACCES,
                         "mbqd: permission denied: %s '%s' (owner %u:%u, mode %04o) needs read "
                         "and write access",
                         object_kind_name(o->kind), o->name, (unsigned)o->uid, (unsigned)o->gid,
                         o->mode);
    Handle *h;
    int r = call_hold(c, o, &h);
    if (r < 0)
        return r;
    h->opens++;
    call_reply_object(c, o, true);
    return 0;
}

static int kind_from_proto(Mbq__V1__ObjectKind k, enum object_kind *ret)
{
    switch (k) {
    case MBQ__V1__OBJECT_KIND__BUFFER_QUEUE:
        *ret = OBJECT_BUFFER_QUEUE;
        return 0;
    case MBQ__V1__OBJECT_KIND__SIMPLE_QUEUE:
        *ret = OBJECT_SIMPLE_QUEUE;
        return 0;
    case MBQ__V1__OBJECT_KIND__POOL:
        *ret = OBJECT_POOL;
        return 0;
    default:
        return -EINVAL;
    }
}

static int fail_name(Call *c)
{
    return call_fail(c, -EINVAL,
                     "mbqd: invalid object name: 1..255 bytes of [A-Za-z0-9._-] components "
                     "separated by '/', none empty, '.' or '..'");
}

/* The object with this name, or an error the reply explains. */
static int call_lookup_name(Call *c, const char *name, Object **ret)
{
    if (registry_validate_name(name) < 0)
        return fail_name(c);
    Object *o = registry_lookup_name(c->s->registry, name);
    if (!o)
        return call_fail(c, -ENOENT, "mbqd: no object named '%s'", name);
    *ret = o;
    return 0;
}

/* Refuses rather than create what a restart would lose. */
static int fail_store_full(Call *c, const char *what)
{
    return call_fail(c, -ENOSPC,
                     "mbqd: cannot create another %s: the service manager's file descriptor "
                     "store, which keeps every segment and trigger across restarts, is full "
                     "(raise FileDescriptorStoreMax= and mbqd --fd-store-max)", what);
}

/* Whether a pool asked for with want's classes has have's (as created:
 * sizes rounded); if not, names the first difference. A pool of one class
 * compares its block size below. */
static bool pool_classes_match(const struct pool_params *want, const struct pool_params *have,
                               char *what, size_t n)
{
    const uint32_t wn = want->nclasses > 1 ? want->nclasses : 0;
    const uint32_t hn = have->nclasses > 1 ? have->nclasses : 0;
    if (wn != hn) {
        snprintf(what, n, "%u size classes, not %u", hn ? hn : 1, wn ? wn : 1);
        return false;
    }
    for (uint32_t c = 0; c < wn; c++) {
        uint64_t bs = pool_block_size_round(want->class_size[c]);
        if (bs != have->class_size[c] || want->class_count[c] != have->class_count[c]) {
            snprintf(what, n, "class %u of %" PRIu64 " B x %u, not %" PRIu64 " B x %u", c,
                     have->class_size[c], have->class_count[c], bs, want->class_count[c]);
            return false;
        }
    }
    return true;
}

/* Whether an existing object of the requested kind was made with the
 * configuration a Create asks for, as the segment would be made from it
 * (capacity 0 is the default, block sizes as pool_block_size_round makes them, age-out 0 the
 * default); if not, names the first difference in what. The mode is not
 * compared: it is a permission, not the object's shape. */
static bool config_matches(const Object *o, const struct object_config *want, char *what,
                           size_t n)
{
    const struct object_config *have = &o->config;
    switch (o->kind) {
    case OBJECT_BUFFER_QUEUE: {
        uint32_t cap = BQ_CAPACITY_OR_DEFAULT(want->bq.capacity);
        if (cap != have->bq.capacity) {
            snprintf(what, n, "capacity %u, not %u", have->bq.capacity, cap);
            return false;
        }
        if (want->bq.order != have->bq.order) {
            snprintf(what, n, "order %u, not %u", have->bq.order, want->bq.order);
            return false;
        }
        if (want->bq.full_policy != have->bq.full_policy) {
            snprintf(what, n, "full policy %u, not %u", have->bq.full_policy,
                     want->bq.full_policy);
            return false;
        }
        return true;
    }
    case OBJECT_SIMPLE_QUEUE:
        if (want->sq_capacity != have->sq_capacity) {
            snprintf(what, n, "capacity %d, not %d", (int)have->sq_capacity,
                     (int)want->sq_capacity);
            return false;
        }
        return true;
    case OBJECT_POOL: {
        if (!pool_classes_match(&want->pool, &have->pool, what, n))
            return false;
        const bool classed = have->pool.nclasses > 1; /* sizes and counts compared */
        uint64_t bs = pool_block_size_round(want->pool.block_size);
        bs = bs ? bs : want->pool.block_size;
        uint64_t age = want->pool.age_out_ns ? want->pool.age_out_ns : POOL_DEFAULT_AGE_OUT_NS;
        if (!classed && bs != have->pool.block_size) {
            snprintf(what, n, "block size %" PRIu64 ", not %" PRIu64, have->pool.block_size, bs);
            return false;
        }
        if (!classed && want->pool.block_count != have->pool.block_count) {
            snprintf(what, n, "%u blocks, not %u", have->pool.block_count,
                     want->pool.block_count);
            return false;
        }
        if (age != have->pool.age_out_ns) {
            snprintf(what, n, "age-out %" PRIu64 " ns, not %" PRIu64, have->pool.age_out_ns,
                     age);
            return false;
        }
        return true;
    }
    }
    return true;
}

/* Size (96 lines), kept: the checks of a Create in the order a client's
 * error messages follow (arguments, quotas, create-or-open), each one reply. */
static int handle_create(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__Create *req = request->create;
    Session *s = c->s;
    enum object_kind kind;
    struct object_config cfg = {0};

    if (registry_validate_name(req->name) < 0)
        return fail_name(c);
    if (kind_from_proto(req->kind, &kind) < 0)
        return call_fail(c, -EINVAL, "mbqd: Create needs a kind");
    cfg.kind = kind;
    switch (req->config_case) {
    case MBQ__V1__CREATE__CONFIG_BUFFER_QUEUE:
        if (kind != OBJECT_BUFFER_QUEUE)
            goto mismatch;
        cfg.bq.capacity = req->buffer_queue->capacity;
        cfg.bq.order = req->buffer_queue->order;
        cfg.bq.full_policy = req->buffer_queue->full_policy;
        break;
    case MBQ__V1__CREATE__CONFIG_SIMPLE_QUEUE:
        if (kind != OBJECT_SIMPLE_QUEUE)
            goto mismatch;
        cfg.sq_capacity = req->simple_queue->capacity;
        break;
    case MBQ__V1__CREATE__CONFIG_POOL:
        if (kind != OBJECT_POOL)
            goto mismatch;
        if (proto_config_pool_params(req->pool, &cfg.pool) < 0)
            return call_fail(c, MBQ_POOL_ERR_INVALID_PARAMETER,
                             "mbqd: pool '%s': %zu size classes, at most %u", req->name,
                             req->pool->n_classes, POOL_MAX_CLASSES);
        if (cfg.pool.nclasses && (cfg.pool.block_size || cfg.pool.block_count))
            return call_fail(c, MBQ_POOL_ERR_INVALID_PARAMETER,
                             "mbqd: pool '%s': size classes and a block size: give one", req->name);
        if (cfg.pool.nclasses == 1) { /* one class is a pool of one block size */
            cfg.pool.block_size = cfg.pool.class_size[0];
            cfg.pool.block_count = cfg.pool.class_count[0];
            cfg.pool.nclasses = 0;
        }
        cfg.pool.prefault = true;
        break;
    default:
        return call_fail(c, -EINVAL, "mbqd: Create of a %s needs its configuration",
                         object_kind_name(kind));
    }
    uint32_t mode = req->mode ? req->mode : REGISTRY_DEFAULT_MODE;
    if (!objmode_valid(mode))
        return call_fail(c, -EINVAL, "mbqd: mode %#o has bits outside %#o", mode, OBJMODE_MASK);

    Object *o = registry_lookup_name(s->registry, req->name);
    if (o) {
        if (req->exclusive)
            return call_fail(c, -EEXIST, "mbqd: '%s' already exists", o->name);
        if (o->kind != kind)
            return call_fail(c, -EEXIST, "mbqd: '%s' already exists as a %s", o->name,
                             object_kind_name(o->kind));
        /* Compared only for a caller who may open it: the difference names
         * the existing object's options. */
        char what[96];
        if (!req->open_existing && registry_check_access(o, s->uid, s->gid) == 0 &&
            !config_matches(o, &cfg, what, sizeof what))
            return call_fail(c, -EEXIST,
                             "mbqd: '%s' already exists with other options: %s (open it, or "
                             "create with open-if-exists)", o->name, what);
        return session_open(c, o, true);
    }

    char why[160];
    if (kind == OBJECT_POOL && pool_params_check(&cfg.pool, why, sizeof why) < 0)
        return call_fail(c, MBQ_POOL_ERR_INVALID_PARAMETER, "mbqd: pool '%s': %s", req->name, why);
    if (!registry_has_room(s->registry, 1))
        return fail_store_full(c, "object");
    /* The estimate errs high, so that what is created never exceeds what
     * was checked; the charge is then the segment's real size. */
    const struct registry_limits lim = {.max_objects = s->limits->max_objects,
                                        .max_bytes = s->limits->max_bytes,
                                        .max_total_bytes = s->limits->max_total_bytes};
    int r = registry_charge_check(s->registry, s->uid, registry_estimate_size(&cfg), &lim,
                                  c->error, sizeof(c->error));
    if (r < 0) {
        log_msg_fields(LOG_LEVEL_INFO,
                       LOG_FIELDS(LOG_STR("OBJECT", req->name), LOG_NUM("CLIENT_PID", s->pid),
                                  LOG_NUM("CLIENT_UID", s->uid)),
                       "session %" PRIu64 " (pid %d, uid %u): %s '%s' refused: %s", s->id,
                       (int)s->pid, (unsigned)s->uid, object_kind_name(kind), req->name, c->error);
        return r;
    }

    r = registry_create(s->registry, req->name, &cfg, mode, s->uid, s->gid, &o);
    if (r < 0)
        return call_fail(c, r, "mbqd: cannot create %s '%s': %s", object_kind_name(kind),
                         req->name, status_name(r));
    log_msg_fields(LOG_LEVEL_INFO,
                   LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OBJECT_ID", o->id),
                              LOG_NUM("CLIENT_PID", s->pid), LOG_NUM("CLIENT_UID", s->uid)),
                   "%s '%s' (id %u) created by pid %d, uid %u", object_kind_name(o->kind),
                   o->name, o->id, (int)s->pid, (unsigned)s->uid);
    /* The creator may open what it created whatever the mode, as with files. */
    r = session_open(c, o, false);
    if (r < 0)
        registry_unlink(o);
    return r;

mismatch:
    return call_fail(c, -EINVAL, "mbqd: the configuration does not match the kind (%s)",
                     object_kind_name(kind));
}

static int handle_open(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__Open *req = request->open;
    Session *s = c->s;
    Object *o = NULL;
    if (req->name && req->name[0]) {
        int r = call_lookup_name(c, req->name, &o);
        if (r < 0)
            return r;
    } else if (req->object_id) {
        o = registry_lookup_id(s->registry, req->object_id);
        if (!o)
            return call_fail(c, -ENOENT, "mbqd: no object with id %" PRIu64, req->object_id);
        /* By id, the caller may not know the name: do not tell it one it
         * may not see (List would not). */
        if (!session_may_see(s, o))
            return call_fail(c, -EACCES, "mbqd: permission denied: object %u needs read and "
                                         "write access", o->id);
    } else {
        return call_fail(c, -EINVAL, "mbqd: Open needs a name or an object id");
    }
    enum object_kind kind;
    if (req->kind != MBQ__V1__OBJECT_KIND__OBJECT_KIND_UNSPECIFIED &&
        (kind_from_proto(req->kind, &kind) < 0 || kind != o->kind))
        return call_fail(c, -EINVAL, "mbqd: '%s' is a %s", o->name, object_kind_name(o->kind));
    return session_open(c, o, true);
}

static Handle *call_handle(Call *c, uint64_t object_id)
{
    Handle *h = session_find_handle(c->s, object_id);
    if (!h)
        call_fail(c, -EBADF, "mbqd: object %" PRIu64 " is not open in this session", object_id);
    return h;
}

/* As call_handle, for requests that apply to one kind of object only. */
static int call_handle_of_kind(Call *c, uint64_t object_id, enum object_kind kind, Handle **ret)
{
    Handle *h = call_handle(c, object_id);
    if (!h)
        return -EBADF;
    const Object *o = h->object;
    if (o->kind != kind)
        return call_fail(c, -EINVAL, "mbqd: '%s' is a %s, not a %s", o->name,
                         object_kind_name(o->kind), object_kind_name(kind));
    *ret = h;
    return 0;
}

static int handle_close(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__Close *req = request->close;
    Handle *h = call_handle(c, req->object_id);
    if (!h)
        return -EBADF;
    if (--h->opens == 0) {
        trigger_remove_all(h);
        producers_drop(h);
        handle_free(h);
    }
    return 0;
}

static int handle_unlink(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__Unlink *req = request->unlink;
    Session *s = c->s;
    Object *o = NULL;
    int r = call_lookup_name(c, req->name, &o);
    if (r < 0)
        return r;
    if (registry_check_owner(o, s->uid) < 0)
        return call_fail(c, -EACCES, "mbqd: only its owner (uid %u) or root may unlink '%s'",
                         (unsigned)o->uid, o->name);
    log_msg_fields(LOG_LEVEL_INFO,
                   LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("OBJECT_ID", o->id),
                              LOG_NUM("CLIENT_PID", s->pid), LOG_NUM("CLIENT_UID", s->uid)),
                   "%s '%s' (id %u) unlinked by pid %d, uid %u (%u still have it open)",
                   object_kind_name(o->kind), o->name, o->id, (int)s->pid, (unsigned)s->uid,
                   o->open_count);
    registry_unlink(o);
    return 0;
}

/* Lists in name order, one reply's worth (REPLY_BUDGET) at a time: a
 * reply that could not hold every object says so (more), and the caller
 * asks for the names after the last one it got. */
static int handle_list(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__List *req = request->list;
    _cleanup_(freep) Object **objs = NULL;
    ssize_t all = registry_list(c->s->registry, req->prefix, &objs);
    if (all < 0)
        return (int)all;
    const char *after = req->after ? req->after : "";
    ssize_t n = 0;
    for (ssize_t i = 0; i < all; i++)
        if ((!*after || strcmp(objs[i]->name, after) > 0) && session_may_see(c->s, objs[i]))
            objs[n++] = objs[i];
    _cleanup_(freep) InfoMsg *msgs = calloc((size_t)n + 1, sizeof(*msgs));
    _cleanup_(freep) Mbq__V1__ObjectInfo **ptrs = calloc((size_t)n + 1, sizeof(*ptrs));
    if (!msgs || !ptrs)
        return -ENOMEM;
    size_t used = 0, k = 0;
    for (; k < (size_t)n; k++) {
        info_fill(&msgs[k], objs[k]);
        size_t sz = mbq__v1__object_info__get_packed_size(&msgs[k].info) + 8;
        if (used + sz > REPLY_BUDGET)
            break;
        used += sz;
        ptrs[k] = &msgs[k].info;
    }
    Mbq__V1__ListReply lr = MBQ__V1__LIST_REPLY__INIT;
    lr.n_objects = k;
    lr.objects = ptrs;
    lr.total = (uint64_t)n;
    lr.more = k < (size_t)n;
    Mbq__V1__Response r = MBQ__V1__RESPONSE__INIT;
    r.body_case = MBQ__V1__RESPONSE__BODY_LIST;
    r.list = &lr;
    session_send_response(c->s, c->id, 0, "", &r, NULL, 0);
    c->replied = true;
    return 0;
}

/* The kind-specific counters of a Stat reply; they point into each other. */
struct stat_bodies {
    Mbq__V1__BufferQueueStats bq;
    Mbq__V1__SimpleQueueStats sq;
    Mbq__V1__PoolStats pool;
    Mbq__V1__PoolClassStats cls[POOL_MAX_CLASSES];
    Mbq__V1__PoolClassStats *cls_ptr[POOL_MAX_CLASSES];
    Mbq__V1__Time duration;
    uint32_t producer_pids[BQ_PRODUCER_PIDS];
};

/* A pool of several classes: each class's figures, from its descriptors. */
static void stat_fill_classes(const Object *o, struct stat_bodies *b)
{
    for (uint32_t c = 0; o->pool.nclasses > 1 && c < o->pool.nclasses; c++) {
        struct pool_class_stats cs;
        if (pool_class_stats(&o->pool, c, &cs) < 0)
            break;
        b->cls[c] = (Mbq__V1__PoolClassStats)MBQ__V1__POOL_CLASS_STATS__INIT;
        b->cls[c].block_size = cs.block_size;
        b->cls[c].block_count = cs.block_count;
        b->cls[c].used = cs.used;
        b->cls[c].warm = cs.warm;
        b->cls[c].cold = cs.cold;
        b->cls[c].cached = cs.cached;
        b->cls_ptr[c] = &b->cls[c];
        b->pool.n_classes = c + 1;
    }
    b->pool.classes = b->cls_ptr;
}

static void stat_fill_counters(const Object *o, const struct object_stats *st,
                               struct stat_bodies *b, Mbq__V1__StatReply *sr)
{
    switch (o->kind) {
    case OBJECT_BUFFER_QUEUE:
        b->bq = (Mbq__V1__BufferQueueStats)MBQ__V1__BUFFER_QUEUE_STATS__INIT;
        b->bq.count = st->bq.count;
        b->bq.enqueued = st->bq.enqueued;
        b->bq.dequeued = st->bq.dequeued;
        b->bq.dropped = st->bq.dropped;
        b->bq.rejected_full = st->bq.rejected_full;
        b->bq.high_water = st->bq.high_water;
        b->bq.total_size = st->bq.total_size;
        b->duration = time_to_proto(st->bq.duration);
        b->bq.duration = &b->duration;
        b->bq.end_of_data = st->bq.end_of_data;
        b->bq.triggers = st->bq.triggers;
        b->bq.repairs = st->bq.repairs;
        b->bq.forged_entries = o->forged_entries;
        b->bq.approximate = st->bq.approximate;
        b->bq.lock_takeovers = lockwatch_broken(o->id);
        b->bq.producers = o->producers;
        b->bq.producer_lost = producers_lost(o);
        sr->stats_case = MBQ__V1__STAT_REPLY__STATS_BUFFER_QUEUE;
        sr->buffer_queue = &b->bq;
        break;
    case OBJECT_SIMPLE_QUEUE:
        b->sq = (Mbq__V1__SimpleQueueStats)MBQ__V1__SIMPLE_QUEUE_STATS__INIT;
        b->sq.count = st->sq.count;
        b->sq.capacity = st->sq.capacity;
        sr->stats_case = MBQ__V1__STAT_REPLY__STATS_SIMPLE_QUEUE;
        sr->simple_queue = &b->sq;
        break;
    case OBJECT_POOL:
        b->pool = (Mbq__V1__PoolStats)MBQ__V1__POOL_STATS__INIT;
        b->pool.block_size = st->pool.block_size;
        b->pool.block_count = st->pool.block_count;
        b->pool.used = st->pool.used;
        b->pool.warm = st->pool.warm;
        b->pool.cold = st->pool.cold;
        b->pool.allocs = st->pool.allocs;
        b->pool.frees = st->pool.frees;
        b->pool.aged_out = st->pool.aged_out;
        b->pool.invalidated = st->pool.invalidated;
        b->pool.approximate = st->pool.approximate;
        b->pool.lock_takeovers = lockwatch_broken(o->id);
        stat_fill_classes(o, b);
        sr->stats_case = MBQ__V1__STAT_REPLY__STATS_POOL;
        sr->pool = &b->pool;
        break;
    }
}

/* The sessions that have o open, into ci/cip (open_count + 1 each), as
 * many as fit the reply after what sr already holds. Their number. */
static size_t stat_fill_clients(Object *o, const Mbq__V1__StatReply *sr,
                                Mbq__V1__ClientInfo *ci, Mbq__V1__ClientInfo **cip)
{
    size_t used = mbq__v1__stat_reply__get_packed_size(sr), k = 0;
    list_for_each_safe(it, &o->handles) {
        const Handle *h = list_entry(it, Handle, object_link);
        const Session *peer = h->session;
        if (k == o->open_count)
            break;
        ci[k] = (Mbq__V1__ClientInfo)MBQ__V1__CLIENT_INFO__INIT;
        ci[k].session_id = peer->id;
        ci[k].pid = (uint32_t)peer->pid;
        ci[k].uid = peer->uid;
        ci[k].name = (char *)peer->name;
        if (o->kind == OBJECT_POOL)
            ci[k].buffers_held = registry_pool_held_by_pid(o, peer->pid);
        if (o->kind == OBJECT_BUFFER_QUEUE) {
            ci[k].triggers = h->triggers;
            ci[k].producer = h->producer > 0;
        }
        size_t sz = mbq__v1__client_info__get_packed_size(&ci[k]) + 8;
        if (used + sz > REPLY_BUDGET)
            break;
        used += sz;
        cip[k] = &ci[k];
        k++;
    }
    return k;
}

static int handle_stat(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__Stat *req = request->stat;
    Object *o = NULL;
    int res = call_lookup_name(c, req->name, &o);
    if (res < 0)
        return res;
    const Session *s = c->s;
    if (!session_may_see(s, o))
        return call_fail(c, -EACCES,
                         "mbqd: permission denied: %s '%s' (owner %u:%u, mode %04o): Stat needs "
                         "read and write access, as Open does",
                         object_kind_name(o->kind), o->name, (unsigned)o->uid, (unsigned)o->gid,
                         o->mode);
    struct object_stats st;
    res = registry_object_stats(o, &st);
    if (res < 0)
        return call_fail(c, res, "mbqd: cannot read the counters of '%s': %s", o->name,
                         status_name(res));

    InfoMsg m;
    info_fill(&m, o);
    Mbq__V1__StatReply sr = MBQ__V1__STAT_REPLY__INIT;
    sr.object = &m.info;
    struct stat_bodies bodies;
    stat_fill_counters(o, &st, &bodies, &sr);
    _cleanup_(freep) Mbq__V1__ClientInfo *ci = calloc(o->open_count + 1, sizeof(*ci));
    _cleanup_(freep) Mbq__V1__ClientInfo **cip = calloc(o->open_count + 1, sizeof(*cip));
    if (!ci || !cip)
        return -ENOMEM;
    /* Who has it open (pids, uids, names) and who produces into it (pids)
     * is for its owner and root. */
    if (registry_check_owner(o, s->uid) == 0) {
        if (o->kind == OBJECT_BUFFER_QUEUE) {
            bodies.bq.n_producer_pids = producers_pids(o, bodies.producer_pids);
            bodies.bq.producer_pids = bodies.producer_pids;
        }
        sr.n_clients = stat_fill_clients(o, &sr, ci, cip);
    }
    sr.clients = cip;
    Mbq__V1__Response r = MBQ__V1__RESPONSE__INIT;
    r.body_case = MBQ__V1__RESPONSE__BODY_STAT;
    r.stat = &sr;
    call_reply(c, &r, NULL, 0);
    return 0;
}

/* The triggers a user has installed, over all its connections (restored
 * ones its processes have not adopted yet included). */
struct user_triggers {
    uid_t uid;
    unsigned n;
};

static void count_user_triggers(Object *o, void *ctx)
{
    struct user_triggers *u = ctx;
    list_for_each_safe(it, &o->triggers) {
        const Trigger *t = list_entry(it, Trigger, object_link);
        u->n += t->owner_uid == u->uid;
    }
}

static int handle_install_trigger(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__InstallTrigger *req = request->install_trigger;
    Session *s = c->s;
    Handle *h;
    int r = call_handle_of_kind(c, req->object_id, OBJECT_BUFFER_QUEUE, &h);
    if (r < 0)
        return r;
    Object *o = h->object;
    if (s->n_triggers >= s->limits->max_triggers)
        return call_fail(c, -EDQUOT,
                         "mbqd: quota: this client has %u triggers installed (--max-triggers %u)",
                         s->n_triggers, s->limits->max_triggers);
    /* Each trigger is a descriptor the daemon (and the service manager's
     * store) keeps: bounded per user like objects, or one user's
     * connections could take every descriptor the store has. */
    if (s->uid != 0 && s->limits->max_objects) {
        struct user_triggers u = {.uid = s->uid};
        registry_for_each(s->registry, count_user_triggers, &u);
        if (u.n >= s->limits->max_objects)
            return call_fail(c, -EDQUOT,
                             "mbqd: quota: uid %u has %u triggers installed, the most a user may "
                             "have over all its connections (mbqd --max-objects %u)",
                             (unsigned)s->uid, u.n, s->limits->max_objects);
    }
    if (!registry_has_room(s->registry, 1))
        return fail_store_full(c, "trigger");
    Trigger *t;
    r = trigger_install(h, req->condition, time_from_proto(req->time), req->threshold, &t);
    if (r < 0)
        return call_fail(c, r, "mbqd: cannot install a trigger on '%s': %s", o->name,
                         r == -ENOSPC ? "the queue has its maximum of triggers" : status_name(r));

    Mbq__V1__TriggerFd tf = MBQ__V1__TRIGGER_FD__INIT;
    tf.token = t->token;
    tf.fd_index = 0;
    Mbq__V1__InstallTriggerReply ir = MBQ__V1__INSTALL_TRIGGER_REPLY__INIT;
    ir.trigger = &tf;
    Mbq__V1__Response resp = MBQ__V1__RESPONSE__INIT;
    resp.body_case = MBQ__V1__RESPONSE__BODY_TRIGGER;
    resp.trigger = &ir;
    /* The others first: the installer may start waiting as soon as it has
     * its reply, and every process that changes the queue must by then be
     * on its way to holding the fd. */
    trigger_announce(t);
    call_reply(c, &resp, &t->efd, 1);
    return 0;
}

static int handle_remove_trigger(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__RemoveTrigger *req = request->remove_trigger;
    Handle *h = call_handle(c, req->object_id);
    if (!h)
        return -EBADF;
    Trigger *t = trigger_find(h->object, req->token);
    /* A restored trigger its process did not adopt yet is still its own. */
    if (t && !t->owner && t->owner_pid == c->s->pid)
        trigger_adopt(t, h);
    if (!t || t->owner != h)
        return call_fail(c, MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN,
                         "mbqd: no trigger %#" PRIx64 " installed by this client on '%s'",
                         req->token, h->object->name);
    trigger_remove(t);
    return 0;
}

static int handle_test_trigger(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__TestTrigger *req = request->test_trigger;
    Handle *h;
    int r = call_handle_of_kind(c, req->object_id, OBJECT_BUFFER_QUEUE, &h);
    if (r < 0)
        return r;
    Object *o = h->object;
    r = bq_test_trigger(&o->bq, req->token);
    if (r < 0)
        return call_fail(c, r, "mbqd: cannot test trigger %#" PRIx64 " on '%s': %s", req->token,
                         o->name, status_name(r));
    Mbq__V1__TestTriggerReply tr = MBQ__V1__TEST_TRIGGER_REPLY__INIT;
    tr.level = r > 0;
    Mbq__V1__Response resp = MBQ__V1__RESPONSE__INIT;
    resp.body_case = MBQ__V1__RESPONSE__BODY_TEST_TRIGGER;
    resp.test_trigger = &tr;
    call_reply(c, &resp, NULL, 0);
    return 0;
}

static int handle_pool_op(Call *c, uint64_t object_id, bool invalidate)
{
    Handle *h;
    int r = call_handle_of_kind(c, object_id, OBJECT_POOL, &h);
    if (r < 0)
        return r;
    Object *o = h->object;
    r = invalidate ? pool_invalidate(&o->pool) : pool_flush(&o->pool);
    if (r < 0)
        return call_fail(c, r, "mbqd: cannot %s pool '%s': %s", invalidate ? "invalidate" : "flush",
                         o->name, status_name(r));
    log_msg(LOG_LEVEL_DEBUG, "pool %u '%s': %s by session %" PRIu64 ", %d blocks returned", o->id,
            o->name, invalidate ? "invalidated" : "flushed", c->s->id, r);
    return 0;
}

/* After a restart: the client reopens an object it still has mapped. It
 * must be the very segment (memfd inode and size; a buffer queue's nonce),
 * so that a client never mistakes a new object with a reused id for its
 * own. Access is checked as at Open, except that the owner may always come
 * back to what it created. */
static int handle_pool_flush(Call *c, const Mbq__V1__Request *request)
{
    return handle_pool_op(c, request->pool_flush->object_id, false);
}

static int handle_pool_invalidate(Call *c, const Mbq__V1__Request *request)
{
    return handle_pool_op(c, request->pool_invalidate->object_id, true);
}

static int handle_reattach(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__Reattach *req = request->reattach;
    Session *s = c->s;
    Object *o = registry_lookup_id(s->registry, req->object_id);
    if (!o)
        return call_fail(c, -ENOENT, "mbqd: no object with id %" PRIu64 " (it did not survive "
                                     "the daemon's restart)", req->object_id);
    /* Before anything that names it: the caller gave an id only. */
    if (!session_may_see(s, o))
        return call_fail(c, -EACCES, "mbqd: permission denied: object %u", o->id);
    enum object_kind kind;
    if (kind_from_proto(req->kind, &kind) < 0 || kind != o->kind)
        return call_fail(c, -ESTALE, "mbqd: object %" PRIu64 " '%s' is a %s: not the object this "
                                     "client has mapped", req->object_id, o->name,
                         object_kind_name(o->kind));
    struct stat st;
    if (fstat(object_segment_fd(o), &st) < 0)
        return -errno;
    if ((uint64_t)st.st_dev != req->segment_dev || (uint64_t)st.st_ino != req->segment_ino ||
        object_segment_size(o) != req->segment_size ||
        (o->kind == OBJECT_BUFFER_QUEUE && bq_nonce(&o->bq) != req->nonce))
        return call_fail(c, -ESTALE, "mbqd: object %" PRIu64 " '%s' is not the segment this client "
                                     "has mapped", req->object_id, o->name);
    Handle *h;
    int r = call_hold(c, o, &h);
    if (r < 0)
        return r;
    unsigned opens = req->opens ? req->opens : 1;
    h->opens += opens < (1u << 20) ? opens : 1u << 20;
    registry_drop_waiting(o, s->pid); /* it has it open now: cannot destroy */
    log_msg_fields(LOG_LEVEL_DEBUG,
                   LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("CLIENT_PID", s->pid),
                              LOG_NUM("CLIENT_UID", s->uid)),
                   "session %" PRIu64 ": reattached %s %u '%s'", s->id, object_kind_name(o->kind),
                   o->id, o->name);
    call_reply_object(c, o, false);
    return 0;
}

/* After Reattach: a trigger this process installed before the restart is
 * this session's again. */
static int handle_adopt_trigger(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__AdoptTrigger *req = request->adopt_trigger;
    Session *s = c->s;
    Handle *h = call_handle(c, req->object_id);
    if (!h)
        return -EBADF;
    Trigger *t = trigger_find(h->object, req->token);
    if (!t)
        return call_fail(c, MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN,
                         "mbqd: no trigger %#" PRIx64 " on '%s'", req->token, h->object->name);
    if (t->owner == h)
        return 0;
    if (t->owner)
        return call_fail(c, -EBUSY, "mbqd: trigger %#" PRIx64 " on '%s' belongs to session %" PRIu64,
                         req->token, h->object->name, t->owner->session->id);
    if (t->owner_pid != s->pid)
        return call_fail(c, -EPERM, "mbqd: trigger %#" PRIx64 " on '%s' was installed by pid %d, "
                                    "not by this process", req->token, h->object->name,
                         (int)t->owner_pid);
    trigger_adopt(t, h);
    return 0;
}

/* Binds a pool to a queue this session has open, if the caller may open
 * the pool; with check_only, says whether it is bound. */
static int handle_bind_pool(Call *c, const Mbq__V1__Request *request)
{
    const Mbq__V1__BindPool *req = request->bind_pool;
    Session *s = c->s;
    Handle *h;
    int r = call_handle_of_kind(c, req->object_id, OBJECT_BUFFER_QUEUE, &h);
    if (r < 0)
        return r;
    Object *q = h->object;
    /* The pool id comes from an entry a client wrote: the answer about a
     * pool the caller may not see neither names it nor tells whether it
     * exists. */
    if (req->check_only) {
        if (registry_queue_may_carry(q, req->pool_id))
            return 0;
        q->forged_entries++; /* a consumer refuses such an entry: count it here */
        return call_fail(c, -ENOLINK,
                         "mbqd: pool id %" PRIu64 " is not bound to queue %u '%s': its "
                         "entries were not written through a binding client",
                         req->pool_id, q->id, q->name);
    }
    Object *p = registry_lookup_id(s->registry, req->pool_id);
    if (!p || p->kind != OBJECT_POOL || !session_may_see(s, p))
        return call_fail(c, -ENOENT, "mbqd: no pool with id %" PRIu64 " that this client may "
                                     "see", req->pool_id);
    if (registry_check_access(p, s->uid, s->gid) < 0)
        return call_fail(c, -EACCES,
                         "mbqd: permission denied: pool '%s' (owner %u:%u, mode %04o) needs read "
                         "and write access to be bound to a queue",
                         p->name, (unsigned)p->uid, (unsigned)p->gid, p->mode);
    r = registry_bind_pool(q, p);
    if (r < 0)
        return call_fail(c, r, "mbqd: cannot bind pool '%s' to queue '%s': %s", p->name, q->name,
                         r == -ENOSPC ? "the queue has its maximum of bound pools"
                                      : status_name(r));
    return 0;
}

/* The session produces into a queue it has open (producers.c). */
static int handle_declare_producer(Call *c, const Mbq__V1__Request *request)
{
    Handle *h;
    const Mbq__V1__DeclareProducer *req = request->declare_producer;
    int r = call_handle_of_kind(c, req->object_id, OBJECT_BUFFER_QUEUE, &h);
    if (r < 0)
        return r;
    if (req->withdraw)
        producers_withdraw(h);
    else
        producers_declare(h);
    return 0;
}

/* What each user is charged: the caller's own line, or every user's for
 * root. */
static int handle_usage(Call *c, const Mbq__V1__Request *request)
{
    Session *s = c->s;
    _cleanup_(freep) UserCharge *all = NULL;
    ssize_t n = registry_user_charges(s->registry, &all);
    if (n < 0)
        return (int)n;
    if (s->uid != 0) {
        all[0] = registry_user_charge(s->registry, s->uid);
        n = 1;
    }
    _cleanup_(freep) Mbq__V1__UserUsage *uu = calloc((size_t)n + 1, sizeof(*uu));
    _cleanup_(freep) Mbq__V1__UserUsage **up = calloc((size_t)n + 1, sizeof(*up));
    if (!uu || !up)
        return -ENOMEM;
    size_t used = 0, k = 0;
    for (; k < (size_t)n; k++) {
        uu[k] = (Mbq__V1__UserUsage)MBQ__V1__USER_USAGE__INIT;
        uu[k].uid = all[k].uid;
        uu[k].objects = all[k].objects;
        uu[k].bytes = all[k].bytes;
        uu[k].max_objects = all[k].uid == 0 ? 0 : s->limits->max_objects;
        uu[k].max_bytes = all[k].uid == 0 ? 0 : s->limits->max_bytes;
        size_t sz = mbq__v1__user_usage__get_packed_size(&uu[k]) + 8;
        if (used + sz > REPLY_BUDGET)
            break;
        used += sz;
        up[k] = &uu[k];
    }
    Mbq__V1__UsageReply ur = MBQ__V1__USAGE_REPLY__INIT;
    ur.n_users = k;
    ur.users = up;
    ur.total_bytes = registry_total_bytes(s->registry);
    ur.max_total_bytes = s->limits->max_total_bytes;
    Mbq__V1__Response r = MBQ__V1__RESPONSE__INIT;
    r.body_case = MBQ__V1__RESPONSE__BODY_USAGE;
    r.usage = &ur;
    call_reply(c, &r, NULL, 0);
    return 0;
}

/* The requests: each kind once, with its name (errors, logs) and handler. */
static const struct request_type {
    Mbq__V1__Request__BodyCase kind;
    const char *name;
    int (*handler)(Call *c, const Mbq__V1__Request *request);
} request_types[] = {
    {MBQ__V1__REQUEST__BODY_HELLO, "Hello", handle_hello},
    {MBQ__V1__REQUEST__BODY_CREATE, "Create", handle_create},
    {MBQ__V1__REQUEST__BODY_OPEN, "Open", handle_open},
    {MBQ__V1__REQUEST__BODY_CLOSE, "Close", handle_close},
    {MBQ__V1__REQUEST__BODY_UNLINK, "Unlink", handle_unlink},
    {MBQ__V1__REQUEST__BODY_LIST, "List", handle_list},
    {MBQ__V1__REQUEST__BODY_STAT, "Stat", handle_stat},
    {MBQ__V1__REQUEST__BODY_INSTALL_TRIGGER, "InstallTrigger", handle_install_trigger},
    {MBQ__V1__REQUEST__BODY_REMOVE_TRIGGER, "RemoveTrigger", handle_remove_trigger},
    {MBQ__V1__REQUEST__BODY_TEST_TRIGGER, "TestTrigger", handle_test_trigger},
    {MBQ__V1__REQUEST__BODY_POOL_FLUSH, "PoolFlush", handle_pool_flush},
    {MBQ__V1__REQUEST__BODY_POOL_INVALIDATE, "PoolInvalidate", handle_pool_invalidate},
    {MBQ__V1__REQUEST__BODY_REATTACH, "Reattach", handle_reattach},
    {MBQ__V1__REQUEST__BODY_ADOPT_TRIGGER, "AdoptTrigger", handle_adopt_trigger},
    {MBQ__V1__REQUEST__BODY_BIND_POOL, "BindPool", handle_bind_pool},
    {MBQ__V1__REQUEST__BODY_USAGE, "Usage", handle_usage},
    {MBQ__V1__REQUEST__BODY_DECLARE_PRODUCER, "DeclareProducer", handle_declare_producer},
};

static const struct request_type *request_type_of(Mbq__V1__Request__BodyCase kind)
{
    for (size_t i = 0; i < ARRAY_SIZE(request_types); i++)
        if (request_types[i].kind == kind)
            return &request_types[i];
    return NULL;
}

static const char *request_name(Mbq__V1__Request__BodyCase kind)
{
    const struct request_type *t = request_type_of(kind);
    return t ? t->name : "?";
}

static int session_call(Call *c, const Mbq__V1__Request *req)
{
    const struct request_type *t = request_type_of(req->body_case);
    if (t)
        return t->handler(c, req);
    c->fatal = true;
    return call_fail(c, -EPROTO, "mbqd: request %" PRIu64 " has no body, or one this daemon "
                                 "does not know", req->id);
}

int session_dispatch(Session *s, const uint8_t *buf, size_t len, struct wire_fds *fds)
{
    Mbq__V1__Request *req = mbq__v1__request__unpack(NULL, len, buf);
    if (!req) {
        wire_fds_close(fds);
        session_protocol_error(s, -EBADMSG, "mbqd: the packet is not a valid mbq.v1.Request");
        return -EBADMSG;
    }
    Call c = {.s = s, .id = req->id};
    int status;
    if (fds->n > 0) {
        unsigned n = fds->n;
        wire_fds_close(fds);
        c.fatal = true;
        status = call_fail(&c, -EPROTO, "mbqd: requests carry no file descriptors (got %u)", n);
    } else if (!s->hello && req->body_case != MBQ__V1__REQUEST__BODY_HELLO) {
        c.fatal = true;
        status = call_fail(&c, -EPROTO, "mbqd: the first request must be Hello");
    } else {
        status = session_call(&c, req);
    }

    if (status < 0 && !c.error[0])
        snprintf(c.error, sizeof(c.error), "mbqd: %s failed: %s", request_name(req->body_case),
                 status_name(status));
    if (status < 0 || !c.replied)
        session_send_response(s, c.id, status, status < 0 ? c.error : NULL, NULL, NULL, 0);
    log_msg(LOG_LEVEL_DEBUG, "session %" PRIu64 ": %s (id %" PRIu64 ") -> %d%s%s", s->id,
            request_name(req->body_case), c.id, status, status < 0 ? ": " : "",
            status < 0 ? c.error : "");
    mbq__v1__request__free_unpacked(req, NULL);
    if (c.fatal) {
        log_msg_fields(LOG_LEVEL_WARNING,
                       LOG_FIELDS(LOG_NUM("SESSION_ID", s->id), LOG_NUM("CLIENT_PID", s->pid),
                                  LOG_NUM("CLIENT_UID", s->uid)),
                       "session %" PRIu64 " (pid %d, uid %u): %s; disconnecting", s->id,
                       (int)s->pid, (unsigned)s->uid, c.error);
        return status;
    }
    return 0;
}

/* The trigger layer's listener (trigger_set_listener): Event{TriggersChanged}
 * to s. */
static void session_push_triggers_changed(Session *s, uint32_t object_id, const uint64_t *added_token,
                                   int added_fd, const uint64_t *removed, size_t n_removed)
{
    Mbq__V1__TriggerFd tf = MBQ__V1__TRIGGER_FD__INIT, *tfp = &tf;
    Mbq__V1__TriggersChanged tc = MBQ__V1__TRIGGERS_CHANGED__INIT;
    tc.object_id = object_id;
    if (added_token) {
        tf.token = *added_token;
        tf.fd_index = 0;
        tc.n_added = 1;
        tc.added = &tfp;
    }
    tc.n_removed = n_removed;
    tc.removed = (uint64_t *)removed;
    Mbq__V1__Event ev = MBQ__V1__EVENT__INIT;
    ev.body_case = MBQ__V1__EVENT__BODY_TRIGGERS_CHANGED;
    ev.triggers_changed = &tc;
    Mbq__V1__ServerMessage m = MBQ__V1__SERVER_MESSAGE__INIT;
    m.msg_case = MBQ__V1__SERVER_MESSAGE__MSG_EVENT;
    m.event = &ev;
    conn_send(s->conn, &m, added_token ? &added_fd : NULL, added_token ? 1 : 0);
}
