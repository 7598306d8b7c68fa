/* Buffer queues (CMBufferQueue): a struct bq (shm/bq.h) on the mapped
 * segment, with hooks that turn its opaque (pool_id, handle) entries into
 * this process's pool buffers, and the trigger eventfds of the queue.
 *
 * Data plane. Enqueue copies the buffer's metadata from its pool block into
 * an entry; the queue's reference is taken by the retain hook. Dequeue hands
 * the queue's reference to the caller (pool_adopt counts it as held by this
 * process). Each such move runs under an intent record in the buffer's pool
 * (shm/pool.h "Accounting"): the move hooks set it before the entry leaves
 * the queue (or before the enqueue's retain) and end it once the new holder
 * has the reference, so a process killed in between leaks nothing. No
 * system call and no allocation on these paths once the pools involved are
 * mapped.
 *
 * Pools met under a queue lock. bq calls the retain hook (copy head), the
 * is_ready hook (dequeue-if-ready, trigger evaluation) and the release hook
 * (reset) with the queue locked; opening a pool there would put a daemon
 * round trip inside a lock every process shares. So a hook that meets a pool
 * this client has not mapped yet does not open it: retain fails with
 * QUEUE_POOL_MISSING and the wrapper opens the pool and retries (so does the
 * move hook of a dequeue, which must put its intent in the pool); is_ready
 * says "not ready" and records the pool, which the wrapper opens afterwards
 * before re-evaluating the triggers (queue_settle); for-each opens the
 * pools of the queue's entries beforehand. A reset first looks at every
 * entry under the lock and, if some entry's pool is not mapped here or not
 * known to be bound, changes nothing, learns those pools unlocked, and
 * starts again (bq_reset_if): an entry leaves the queue only when its
 * reference can be released at once, under its intent. (Releasing it after
 * the unlock, as a reset once did, left the reference in no queue, no
 * holding and no intent in between: a kill there leaked the block for
 * good.) Only entries of pools that are not bound, or that this process
 * cannot open, still have their release deferred to after the unlock,
 * where it is skipped or fails. Hooks that run unlocked (the release of
 * a dropped-oldest entry) open the pool directly. A pool is opened once per
 * client, typically when a consumer dequeues its first buffer from it.
 *
 * Bound pools. The daemon acts on an entry's pool id only if the pool is
 * bound to the queue (BindPool, which checks that the binder may open the
 * pool). So a producer binds each (queue, pool) pair before its first
 * enqueue of a buffer of that pool, and a consumer asks the daemon before
 * it first adopts a reference from an entry of a pool (check only): an
 * entry naming a pool nobody bound was written around the library, and its
 * reference is refused (-ENOLINK) rather than counted as the consumer's.
 * The answers are cached per handle (QUEUE_BOUND_CACHE pool ids): one
 * round trip per pair, one or two loads per operation afterwards.
 *
 * Triggers. Each trigger has an eventfd made by the daemon; every process
 * with the queue open holds it and writes it when its own change makes the
 * trigger fire. The library owns these fds (struct queue_trigger): it learns
 * them from Open replies, InstallTrigger replies and TriggersChanged events,
 * records each in the mapping with bq_set_trigger_fd (which also delivers a
 * firing left pending by a process that did not have the fd yet), and gives
 * copies to the other handles of the same queue in this process.
 *
 * A process that only moves data never reads its control socket, yet must
 * signal triggers other processes install. So every mutation first compares
 * the segment's trigger generation (bumped by the daemon at each install
 * and removal, before it announces the change) with the one this handle
 * last caught up with: one relaxed load, no system call; when it moved, the
 * pending events are read first (mbq_client_dispatch, non-blocking), so the
 * operation signals the new trigger's eventfd itself. */
#include "internal.h"

#include <fcntl.h>
#include <string.h>

/* The retain hook's answer for a pool this client has not mapped. */
#define QUEUE_POOL_MISSING (-ENOENT)

/* The pool of the buffer being enqueued on this thread, tried first by the
 * hooks (the buffer may come from a pool mapped through another client). */
static _Thread_local struct mbq_pool *queue_hint;

/* Set while bq_reset runs on this thread (releases are deferred). */
struct queue_deferred {
    uint32_t pool_id;
    uint64_t handle;
    struct mbq_pool *held; /* the pool whose recounts wait for it (mapped) */
};
/* Pools one reset call asks the daemon about, at most; rounds it makes
 * before it lets entries of pools it could not learn go with their release
 * deferred (see mbq_buffer_queue_reset_with_callback). */
#define QUEUE_RESET_POOLS 64
#define QUEUE_RESET_ROUNDS 8
struct queue_reset {
    mbq_buffer_queue *queue;
    void (*callback)(mbq_buffer buffer, void *refcon);
    void *refcon;
    struct queue_deferred *deferred;
    size_t ndeferred, cap;
    /* What this call learned (the handle's cache of answers may have
     * dropped some since): a pool id, and whether its entries may be
     * released here (bound, or no daemon to ask, and mapped). */
    uint32_t known[QUEUE_RESET_POOLS];
    bool known_ok[QUEUE_RESET_POOLS];
    unsigned nknown;
    /* The pools the last look lacked. */
    uint32_t missing[QUEUE_RESET_POOLS];
    unsigned nmissing;
};
static _Thread_local struct queue_reset *queue_resetting;

/* Whether the reset in progress on q learned that pool_id's entries may be
 * released here. */
static bool reset_learned_ok(mbq_buffer_queue *q, uint32_t pool_id)
{
    const struct queue_reset *rs = queue_resetting;
    if (!rs || rs->queue != q)
        return false;
    for (unsigned i = 0; i < rs->nknown; i++)
        if (rs->known[i] == pool_id)
            return rs->known_ok[i];
    return false;
}

/* ---- hooks (may run under the queue lock: no daemon, no client->lock) ------- */

static int hook_retain(void *ctx, uint32_t pool_id, uint64_t handle, bool by_client)
{
    mbq_buffer_queue *q = ctx;
    struct mbq_pool *p = cpool_table_lookup(q->client, pool_id, queue_hint);
    if (unlikely(!p))
        return QUEUE_POOL_MISSING;
    return pool_retain(&p->pool, handle, by_client);
}

static bool queue_pool_bound(mbq_buffer_queue *q, uint32_t pool_id);
static int queue_check_entry(mbq_buffer_queue *q, uint32_t pool_id);
static _Thread_local uint32_t queue_verdict; /* see hook_move_begin */

static void hook_release(void *ctx, uint32_t pool_id, uint64_t handle)
{
    mbq_buffer_queue *q = ctx;
    struct mbq_pool *p = cpool_table_lookup(q->client, pool_id, queue_hint);
    /* A pool not known to be bound: asked about after the unlock (reset:
     * only pools it found not bound or could not open, see
     * mbq_buffer_queue_reset_with_callback), or now (unlocked); an entry of
     * a pool nobody bound is not released. */
    bool bound = queue_pool_bound(q, pool_id) || reset_learned_ok(q, pool_id);
    if (unlikely(!p || !bound)) {
        struct queue_reset *rs = queue_resetting;
        if (rs && rs->queue == q) {
            if (rs->ndeferred == rs->cap) {
                size_t cap = rs->cap ? rs->cap * 2 : 16;
                struct queue_deferred *d = realloc(rs->deferred, cap * sizeof(*d));
                if (!d)
                    return; /* out of memory: the reference leaks */
                rs->deferred = d;
                rs->cap = cap;
            }
            /* The entry has left the queue and its intent ends when this
             * hook returns: until the release after the unlock, the
             * reference is held back from every recount of its pool. */
            if (p)
                pool_move_hold(&p->pool);
            rs->deferred[rs->ndeferred++] = (struct queue_deferred){pool_id, handle, p};
            return;
        }
        /* Not under the queue lock (a dropped-oldest entry): ask and open now. */
        if (!bound && queue_check_entry(q, pool_id) < 0)
            return; /* not a reference anyone may count */
        if (!p && cpool_table_resolve(q->client, pool_id, &p) < 0)
            return; /* the daemon refused or is gone: the reference leaks */
    }
    pool_release(&p->pool, handle, false);
}

static bool hook_is_ready(void *ctx, uint32_t pool_id, uint64_t handle)
{
    mbq_buffer_queue *q = ctx;
    struct mbq_pool *p = cpool_table_lookup(q->client, pool_id, queue_hint);
    if (unlikely(!p)) {
        /* The retry of a dequeue whose head names a pool nobody bound (or
         * no pool): move_begin lets the entry go, readiness aside. */
        if (queue_verdict == (pool_id + 1) * 2 + 1)
            return true;
        atomic_store_explicit(&q->missing_pool, (uint64_t)pool_id + 1, memory_order_relaxed);
        return false;
    }
    return pool_is_ready(&p->pool, handle);
}

static int hook_validate(void *ctx, const struct bq_entry *e)
{
    mbq_buffer_queue *q = ctx;
    /* One load: the record is never changed once published. */
    const struct queue_validation *v = atomic_load_explicit(&q->validation, memory_order_acquire);
    if (likely(!v))
        return 0;
    struct mbq_pool *p = cpool_table_lookup(q->client, e->pool_id, queue_hint);
    return v->cb(q, (mbq_buffer){.pool_ = p, .handle_ = e->handle}, v->refcon);
}

/* The pools in which this thread holds a queue's move intent (which 0 and
 * 1), and the pool a dequeue found unmapped (pool_id + 1; 0: none). */
static _Thread_local struct mbq_pool *queue_moving[2];
static _Thread_local uint32_t queue_unmapped;
/* What queue_map_unmapped decided about that pool, for the retry alone:
 * (pool_id + 1) * 2 to take the entry though the daemon could not say it
 * is bound (it is gone), + 1 to let a forged entry go with nothing taken. */
static _Thread_local uint32_t queue_verdict;
/* This thread is inside a dequeue (see hook_move_begin). */
static _Thread_local bool queue_dequeuing;

/* A reference of an entry's buffer changes hands (see "Accounting" in
 * shm/pool.h): the intent goes into the buffer's pool. A pool not mapped
 * here cannot hold it: the dequeue fails and its wrapper maps the pool and
 * tries again (opening it here would put a daemon round trip under the
 * head lock). */
static int hook_move_begin(void *ctx, uint32_t pool_id, uint64_t handle, unsigned which)
{
    mbq_buffer_queue *q = ctx;
    struct mbq_pool *p = cpool_table_lookup(q->client, pool_id, queue_hint);
    const uint32_t verdict = queue_verdict;
    queue_verdict = 0;
    if (unlikely(verdict == (pool_id + 1) * 2 + 1)) {
        /* Found not bound to the queue (forged): the entry leaves with no
         * intent, and the caller gets nothing (queue_adopt: -ENOLINK). */
        queue_moving[which & 1] = NULL;
        return 0;
    }
    /* Only a dequeue waits for the daemon's word on the pool before the
     * entry leaves (its reference becomes the caller's). A reset or a drop
     * moves the entry out either way, so it keeps the intent wherever the
     * pool is mapped; its release asks about the pool afterwards. */
    if (unlikely(!p || (queue_dequeuing && !queue_pool_bound(q, pool_id) &&
                        verdict != (pool_id + 1) * 2))) {
        queue_moving[which & 1] = NULL;
        queue_unmapped = pool_id + 1;
        return QUEUE_POOL_MISSING;
    }
    pool_move_begin(&p->pool, handle, which);
    queue_moving[which & 1] = p;
    return 0;
}

static void hook_move_end(void *ctx, uint32_t pool_id, unsigned which)
{
    (void)ctx;
    (void)pool_id;
    struct mbq_pool *p = queue_moving[which & 1];
    queue_moving[which & 1] = NULL;
    if (p)
        pool_move_end(&p->pool, which);
}

/* The pool in which this thread's dequeue run holds its run intent. */
static _Thread_local struct mbq_pool *queue_run_pool;

/* bq_dequeue_run's: one intent for a run of entries of a pool mapped here
 * and known to be bound to the queue; anything else (and a thread without
 * a run record) goes through the single dequeue, which sorts it out. */
static int hook_run_begin(void *ctx, uint32_t pool_id, const uint64_t *handles, uint32_t n)
{
    mbq_buffer_queue *q = ctx;
    struct mbq_pool *p = cpool_table_lookup(q->client, pool_id, queue_hint);
    if (unlikely(!p || !queue_pool_bound(q, pool_id)))
        return QUEUE_POOL_MISSING;
    int r = pool_run_begin(&p->pool, handles, n);
    if (r == 0)
        queue_run_pool = p;
    return r;
}

static const struct bq_hooks queue_hooks_template = {
    .run_begin = hook_run_begin,
    .retain = hook_retain,
    .release = hook_release,
    .is_ready = hook_is_ready,
    .validate = hook_validate,
    .move_begin = hook_move_begin,
    .move_end = hook_move_end,
};

/* After an operation: opens a pool the is_ready hook could not read and lets
 * the triggers see the buffer's real readiness. True if it opened one. */
static bool queue_settle(mbq_buffer_queue *q)
{
    if (likely(!atomic_load_explicit(&q->missing_pool, memory_order_relaxed)))
        return false;
    uint64_t id = atomic_exchange_explicit(&q->missing_pool, 0, memory_order_relaxed);
    struct mbq_pool *p;
    if (!id || cpool_table_resolve(q->client, (uint32_t)(id - 1), &p) < 0)
        return false;
    bq_note_data_ready(&q->bq);
    return true;
}

/* queue_sync_triggers when the generation moved: out of line, so that
 * the check every mutation makes stays two loads and a branch whatever
 * the inliner decides about the rest. */
static __attribute__((noinline, cold)) void queue_sync_triggers_slow(mbq_buffer_queue *q,
                                                                      uint32_t gen)
{
    mbq_client *c = q->client;
    /* Another thread in a control call holds the lock: its receive loop may
     * not reach the event; try again at the next operation. */
    if (pthread_mutex_trylock(&c->lock) != 0)
        return;
    client_dispatch_locked(c);
    /* Caught up only once this process holds every installed trigger's fd:
     * the daemon's announcement may still be on its way, and until it
     * arrives each operation looks again (one non-blocking read). */
    if (bq_trigger_fds_complete(&q->bq))
        atomic_store_explicit(&q->trigger_gen_seen, gen, memory_order_relaxed);
    pthread_mutex_unlock(&c->lock);
}

/* Before a mutation: catch up with trigger changes announced since this
 * handle last looked (see the top of the file). */
static inline void queue_sync_triggers(mbq_buffer_queue *q)
{
    uint32_t gen = bq_trigger_gen(&q->bq);
    if (likely(gen == atomic_load_explicit(&q->trigger_gen_seen, memory_order_relaxed)))
        return;
    queue_sync_triggers_slow(q, gen);
}

/* ---- trigger fds (client->lock held) ------------------------------------------- */

static void queue_bury_fd(mbq_buffer_queue *q, int fd)
{
    unsigned i = q->graveyard_next++ % QUEUE_GRAVEYARD;
    if (q->graveyard[i] >= 0)
        close(q->graveyard[i]);
    q->graveyard[i] = fd;
}

static struct queue_trigger *queue_find_trigger(mbq_buffer_queue *q, uint64_t token)
{
    for (unsigned i = 0; i < q->ntriggers; i++)
        if (q->triggers[i].token == token)
            return &q->triggers[i];
    return NULL;
}

/* Takes fd. */
static void queue_add_trigger(mbq_buffer_queue *q, uint64_t token, int fd, bool mine)
{
    struct queue_trigger *t = queue_find_trigger(q, token);
    if (t || q->ntriggers == QUEUE_MAX_TRIGGERS) {
        if (t && mine)
            t->mine = true;
        close(fd);
        return;
    }
    q->triggers[q->ntriggers++] = (struct queue_trigger){.token = token, .fd = fd, .mine = mine};
    /* The daemon has installed it in the segment before telling anyone, so
     * this finds it; a token already removed again is kept until its
     * removal arrives, harmlessly. */
    bq_set_trigger_fd(&q->bq, token, fd);
}

static void queue_drop_trigger(mbq_buffer_queue *q, uint64_t token)
{
    struct queue_trigger *t = queue_find_trigger(q, token);
    if (!t)
        return;
    bq_set_trigger_fd(&q->bq, token, -1);
    queue_bury_fd(q, t->fd);
    *t = q->triggers[--q->ntriggers];
}

void bqueue_learn_trigger_locked(mbq_client *c, uint64_t object_id, uint64_t token, int fd,
                                 mbq_buffer_queue *mine)
{
    mbq_buffer_queue *primary = mine;
    for (mbq_buffer_queue *q = c->queues; q && !primary; q = q->next)
        if (q->object_id == object_id)
            primary = q;
    if (!primary) {
        close(fd); /* not open here (any more) */
        return;
    }
    for (mbq_buffer_queue *q = c->queues; q; q = q->next) {
        if (q == primary || q->object_id != object_id)
            continue;
        int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dup >= 0)
            queue_add_trigger(q, token, dup, false);
    }
    queue_add_trigger(primary, token, fd, mine != NULL);
}

void bqueue_forget_trigger_locked(mbq_client *c, uint64_t object_id, uint64_t token)
{
    for (mbq_buffer_queue *q = c->queues; q; q = q->next)
        if (q->object_id == object_id)
            queue_drop_trigger(q, token);
}

/* Whether some trigger of the queue fired in a process that lacked its fd. */
static bool queue_has_pending(const mbq_buffer_queue *q)
{
    return bq_trigger_pending_any(&q->bq);
}

static void bqueue_deliver_pending_locked(mbq_client *c)
{
    for (mbq_buffer_queue *q = c->queues; q; q = q->next) {
        if (!q->ntriggers || !queue_has_pending(q))
            continue;
        for (unsigned i = 0; i < q->ntriggers; i++)
            bq_set_trigger_fd(&q->bq, q->triggers[i].token, q->triggers[i].fd);
    }
}

static void queue_unlink_locked(mbq_buffer_queue *q)
{
    for (mbq_buffer_queue **pp = &q->client->queues; *pp; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
}

static void queue_free(mbq_buffer_queue *q)
{
    bq_detach(&q->bq);
    for (unsigned i = 0; i < q->ntriggers; i++)
        close(q->triggers[i].fd);
    for (unsigned i = 0; i < QUEUE_GRAVEYARD; i++)
        if (q->graveyard[i] >= 0)
            close(q->graveyard[i]);
    while (q->validation_records) {
        struct queue_validation *v = q->validation_records;
        q->validation_records = v->next;
        free(v);
    }
    free(q);
}

static void bqueue_close_locked(mbq_buffer_queue *q)
{
    queue_unlink_locked(q);
    queue_free(q);
}

static int queue_declare_producer_locked(mbq_buffer_queue *q, bool withdraw)
{
    Mbq__V1__DeclareProducer dp = MBQ__V1__DECLARE_PRODUCER__INIT;
    dp.object_id = q->object_id;
    dp.withdraw = withdraw;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_DECLARE_PRODUCER;
    req.declare_producer = &dp;
    return client_request_locked(q->client, &req);
}

static int bqueue_reattach_locked(mbq_buffer_queue *q)
{
    mbq_client *c = q->client;
    struct client_reply reply;
    uint32_t nonce = bq_nonce(&q->bq);
    int r = client_reattach_locked(c, q->object_id, MBQ__V1__OBJECT_KIND__BUFFER_QUEUE, &q->bq.seg,
                                   nonce, 1, &reply);
    if (r < 0)
        return r;
    /* The daemon's trigger set is the truth: learn what is new (a trigger
     * installed while our events were lost), forget what it does not have
     * (removed while its installer was gone). The eventfds we hold are the
     * very ones it restored, so a known token's copy is closed. */
    const Mbq__V1__ObjectInfo *info = reply.resp->object;
    uint64_t keep[QUEUE_MAX_TRIGGERS];
    unsigned nkeep = 0;
    for (size_t i = 0; i < info->n_triggers; i++) {
        const Mbq__V1__TriggerFd *t = info->triggers[i];
        if (!t)
            continue;
        int fd = wire_fds_take(&reply.fds, t->fd_index);
        if (nkeep < QUEUE_MAX_TRIGGERS)
            keep[nkeep++] = t->token;
        if (queue_find_trigger(q, t->token)) {
            if (fd >= 0)
                close(fd);
        } else if (fd >= 0) {
            queue_add_trigger(q, t->token, fd, false);
        }
    }
    client_reply_done(&reply);
    for (unsigned i = 0; i < q->ntriggers;) {
        bool known = false;
        for (unsigned k = 0; k < nkeep && !known; k++)
            known = keep[k] == q->triggers[i].token;
        if (known) {
            i++;
            continue;
        }
        queue_drop_trigger(q, q->triggers[i].token); /* moves the last one here */
    }
    /* Ours again: removed when this handle closes or this process goes. */
    for (unsigned i = 0; i < q->ntriggers; i++) {
        if (!q->triggers[i].mine)
            continue;
        Mbq__V1__AdoptTrigger at = MBQ__V1__ADOPT_TRIGGER__INIT;
        at.object_id = q->object_id;
        at.token = q->triggers[i].token;
        Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
        req.body_case = MBQ__V1__REQUEST__BODY_ADOPT_TRIGGER;
        req.adopt_trigger = &at;
        r = client_call_locked(c, &req, &reply);
        if (r == -ENOTCONN || r == -ETIMEDOUT)
            return r;
        if (r == 0)
            client_reply_done(&reply);
        else /* not ours after all: the daemon removes it with its installer */
            q->triggers[i].mine = false;
    }
    atomic_store_explicit(&q->trigger_gen_seen,
                          bq_trigger_gen(&q->bq),
                          memory_order_relaxed);
    /* A producer still: the restarted daemon waits for this (or our exit)
     * before it calls the queue's producers lost. */
    if (q->producer)
        return queue_declare_producer_locked(q, false);
    return 0;
}

static int bqueue_reattach_all_locked(mbq_client *c)
{
    for (mbq_buffer_queue *q = c->queues; q; q = q->next) {
        if (q->lost)
            continue;
        int r = bqueue_reattach_locked(q);
        if (client_connection_failed(r))
            return r;
        q->lost = r < 0;
    }
    return 0;
}

static void bqueue_close_all_locked(mbq_client *c)
{
    while (c->queues)
        bqueue_close_locked(c->queues);
}

/* Event{TriggersChanged}: what other sessions installed and removed. */
static void bqueue_on_event_locked(mbq_client *c, const Mbq__V1__Event *ev, struct wire_fds *fds)
{
    if (ev->body_case != MBQ__V1__EVENT__BODY_TRIGGERS_CHANGED || !ev->triggers_changed)
        return; /* not about queues: another kind's, or one this version does not know */
    const Mbq__V1__TriggersChanged *tc = ev->triggers_changed;
    for (size_t i = 0; i < tc->n_removed; i++)
        bqueue_forget_trigger_locked(c, tc->object_id, tc->removed[i]);
    for (size_t i = 0; i < tc->n_added; i++) {
        const Mbq__V1__TriggerFd *a = tc->added[i];
        if (!a)
            continue;
        int fd = wire_fds_take(fds, a->fd_index);
        if (fd >= 0)
            bqueue_learn_trigger_locked(c, tc->object_id, a->token, fd, NULL);
    }
}

const struct client_kind client_kind_buffer_queue = {
    .name = "buffer queue",
    .reattach_all = bqueue_reattach_all_locked,
    .close_all = bqueue_close_all_locked,
    .on_event = bqueue_on_event_locked,
    .events_done = bqueue_deliver_pending_locked,
};

/* ---- create / open / close ------------------------------------------------------------ */

static int queue_adopt_locked(mbq_client *c, struct client_reply *reply,
                              const Mbq__V1__ObjectInfo *info, void *out)
{
    _cleanup_(closep) int fd = client_take_segment_fd(reply, info);
    if (fd < 0)
        return fd;
    mbq_buffer_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    int r = bq_attach(fd, &q->bq);
    if (r < 0) {
        free(q);
        return r;
    }
    q->client = c;
    q->object_id = info->object_id;
    for (unsigned i = 0; i < QUEUE_GRAVEYARD; i++)
        q->graveyard[i] = -1;
    struct bq_hooks hooks = queue_hooks_template;
    hooks.ctx = q;
    bq_set_hooks(&q->bq, &hooks);
    for (size_t i = 0; i < info->n_triggers; i++) {
        const Mbq__V1__TriggerFd *t = info->triggers[i];
        int tfd = t ? wire_fds_take(&reply->fds, t->fd_index) : -1;
        if (tfd >= 0)
            queue_add_trigger(q, t->token, tfd, false);
    }
    q->next = c->queues;
    c->queues = q;
    *(mbq_buffer_queue **)out = q;
    return 0;
}

int mbq_buffer_queue_create(mbq_client *client, const char *name,
                            const mbq_buffer_queue_options *options, mbq_buffer_queue **out)
{
    if (!client || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (!objname_valid(name))
        return -EINVAL;
    mbq_buffer_queue_options o = {.size = sizeof(o)};
    if (options && !client_copy_options(&o, sizeof(o), options))
        return -EINVAL;
    if (o.capacity > BQ_MAX_CAPACITY || (unsigned)o.order > BQ_ORDER_DTS ||
        (unsigned)o.full_policy > BQ_FULL_DROP_OLDEST || !objmode_valid(o.mode))
        return -EINVAL;

    Mbq__V1__BufferQueueConfig cfg = MBQ__V1__BUFFER_QUEUE_CONFIG__INIT;
    cfg.capacity = o.capacity;
    cfg.order = (uint32_t)o.order;
    cfg.full_policy = (uint32_t)o.full_policy;
    Mbq__V1__Create cr = MBQ__V1__CREATE__INIT;
    cr.name = (char *)name;
    cr.kind = MBQ__V1__OBJECT_KIND__BUFFER_QUEUE;
    cr.mode = o.mode;
    cr.exclusive = o.exclusive;
    cr.open_existing = (o.flags & MBQ_OPEN_IF_EXISTS) != 0;
    cr.config_case = MBQ__V1__CREATE__CONFIG_BUFFER_QUEUE;
    cr.buffer_queue = &cfg;
    return client_create_object(client, &cr, queue_adopt_locked, out);
}

int mbq_buffer_queue_open(mbq_client *client, const char *name, mbq_buffer_queue **out)
{
    if (!client || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (!objname_valid(name))
        return -EINVAL;
    return client_open_object(client, name, MBQ__V1__OBJECT_KIND__BUFFER_QUEUE,
                              queue_adopt_locked, out);
}

static int queue_remove_trigger_locked(mbq_buffer_queue *q, uint64_t token)
{
    Mbq__V1__RemoveTrigger rt = MBQ__V1__REMOVE_TRIGGER__INIT;
    rt.object_id = q->object_id;
    rt.token = token;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_REMOVE_TRIGGER;
    req.remove_trigger = &rt;
    int r = client_request_locked(q->client, &req);
    /* Gone either way: our removal, or it was no longer installed. */
    if (r == 0 || r == MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN)
        bqueue_forget_trigger_locked(q->client, q->object_id, token);
    return r;
}

void mbq_buffer_queue_close(mbq_buffer_queue *queue)
{
    if (!queue)
        return;
    mbq_client *c = queue->client;
    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < queue->ntriggers && !queue->lost;) {
        uint64_t token = queue->triggers[i].token;
        unsigned before = queue->ntriggers;
        if (queue->triggers[i].mine)
            queue_remove_trigger_locked(queue, token);
        if (queue->ntriggers == before)
            i++; /* not mine, or the removal failed: the connection will do it */
    }
    /* This handle's declaration ends; another handle of this process on the
     * same queue may still be a producer. */
    if (!queue->lost && queue->producer)
        (void)queue_declare_producer_locked(queue, true);
    if (!queue->lost)
        client_close_object_locked(c, queue->object_id);
    bqueue_close_locked(queue);
    pthread_mutex_unlock(&c->lock);
}

/* ---- bound pools ---------------------------------------------------------------------- */

static bool queue_pool_bound(mbq_buffer_queue *q, uint32_t pool_id)
{
    for (unsigned i = 0; i < QUEUE_BOUND_CACHE; i++) {
        uint32_t v = atomic_load_explicit(&q->bound[i], memory_order_relaxed);
        if (v == pool_id)
            return true;
        if (v == 0)
            return false;
    }
    return false;
}

/* Binds pool_id to q (check_only: asks whether it is bound) and caches a
 * yes. 0, -ENOLINK (check_only: not bound), -EACCES, or -errno. */
static int queue_bind_pool(mbq_buffer_queue *q, uint32_t pool_id, bool check_only)
{
    mbq_client *c = q->client;
    Mbq__V1__BindPool bp = MBQ__V1__BIND_POOL__INIT;
    bp.object_id = q->object_id;
    bp.pool_id = pool_id;
    bp.check_only = check_only;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_BIND_POOL;
    req.bind_pool = &bp;
    struct client_reply reply;
    pthread_mutex_lock(&c->lock);
    int r = q->lost ? -EIDRM : client_call_locked(c, &req, &reply);
    if (r == 0) {
        client_reply_done(&reply);
        unsigned slot = atomic_fetch_add_explicit(&q->bound_next, 1, memory_order_relaxed);
        atomic_store_explicit(&q->bound[slot % QUEUE_BOUND_CACHE], pool_id, memory_order_relaxed);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* Whether a consumer may take a reference from an entry of pool_id: the
 * daemon's word (cached). Without a daemon to ask (-ENOTCONN, or -EIDRM: a
 * restarted daemon no longer has the queue) the entry is taken: the daemon,
 * not the library, is what a forged entry must not fool, and a consumer
 * then still holds no more than it could open. */
static int queue_check_entry(mbq_buffer_queue *q, uint32_t pool_id)
{
    if (likely(queue_pool_bound(q, pool_id)))
        return 0;
    int r = queue_bind_pool(q, pool_id, true);
    return r == -ENOTCONN || r == -EIDRM ? 0 : r;
}

/* ---- data plane ------------------------------------------------------------------------ */

static int queue_enqueue_entry(mbq_buffer_queue *queue, struct mbq_pool *p,
                               const struct bq_entry *e)
{
    queue_sync_triggers(queue);
    queue_hint = p;
    int r = bq_enqueue(&queue->bq, e);
    queue_hint = NULL;
    queue_settle(queue);
    return r;
}

/* The hand-over's rest, after pool_handover_begin (the intent set and the
 * caller's holding moved): the entry in, or the holding back. */
static int queue_enqueue_handed(mbq_buffer_queue *queue, struct mbq_pool *p,
                                const struct bq_entry *e)
{
    queue_sync_triggers(queue);
    queue_hint = p;
    int r = bq_enqueue_take(&queue->bq, e);
    queue_hint = NULL;
    if (unlikely(r != 0))
        (void)pool_adopt(&p->pool, e->handle); /* still the caller's */
    pool_move_end(&p->pool, 0);
    queue_settle(queue);
    return r;
}

/* The blocking form of a plain enqueue: wait for room, then enqueue;
 * another producer may take the room first, and then the wait goes on (the
 * hand-over's is in queue_handover). */
static int queue_enqueue_wait(mbq_buffer_queue *queue, struct mbq_pool *p,
                              const struct bq_entry *e, int64_t timeout_ns)
{
    uint32_t epoch = bq_cancel_epoch(&queue->bq);
    uint64_t deadline = 0;
    if (timeout_ns > 0)
        deadline = mono_ns() + (uint64_t)timeout_ns;
    for (;;) {
        int64_t left = timeout_ns;
        if (timeout_ns > 0) {
            uint64_t now = mono_ns();
            left = now >= deadline ? 0 : (int64_t)(deadline - now);
        }
        int r = bq_wait_room(&queue->bq, epoch, left);
        if (r == MBQ_BQ_ERR_QUEUE_IS_FULL)
            bq_note_rejected(&queue->bq); /* once per call, when it gives up */
        if (r != 0)
            return r;
        r = queue_enqueue_entry(queue, p, e);
        if (r != MBQ_BQ_ERR_QUEUE_IS_FULL || left == 0)
            return r;
    }
}

/* The entry of handle's block, from its frozen metadata m. Field by field:
 * an initialiser zeroes the 128 bytes first (rep stos). The attachments
 * stay zero: no call reads them from a queue, and without them the queue
 * stores the entry in one line (bq_slot). */
static inline void queue_entry_make(struct bq_entry *e, uint64_t handle, uint32_t pool_id,
                                    const struct pool_meta *m)
{
    e->handle = handle;
    e->seq = 0;
    e->dts = m->dts;
    e->pts = m->pts;
    e->duration = m->duration;
    e->size = m->size;
    e->pool_id = pool_id;
    e->flags = 0;
    memset(e->attachments, 0, sizeof(e->attachments));
}

/* An enqueue that takes the caller's reference (enqueue_and_release). One
 * look at the block (pool_handover_begin) freezes its metadata and reads it
 * (what the queue copies is what every consumer reads on the block), and
 * moves the caller's holding to the queue under an intent that lasts until
 * the entry is in: a death in between leaves the refcount one too high for
 * the reclaimer's recount, never a buffer a queue names freed (shm/pool.h).
 * wait: room is waited for first, with nothing in flight (no intent, no
 * holding moved: a waiter killed asleep has nothing to roll back, and an
 * audit of the buffer is not held up); another producer may take the room
 * first, and then the holding comes back and the wait goes on. A failed
 * enqueue thaws what it froze. */
static int queue_handover(mbq_buffer_queue *queue, struct mbq_pool *p, uint64_t handle,
                          bool wait, int64_t timeout_ns)
{
    uint32_t epoch = 0;
    uint64_t deadline = 0;
    if (unlikely(wait)) {
        epoch = bq_cancel_epoch(&queue->bq);
        if (timeout_ns > 0)
            deadline = mono_ns() + (uint64_t)timeout_ns;
    }
    int froze = 0, r;
    for (;;) {
        int64_t left = 0;
        if (unlikely(wait)) {
            left = timeout_ns;
            if (timeout_ns > 0) {
                uint64_t now = mono_ns();
                left = now >= deadline ? 0 : (int64_t)(deadline - now);
            }
            r = bq_wait_room(&queue->bq, epoch, left);
            if (r == MBQ_BQ_ERR_QUEUE_IS_FULL)
                bq_note_rejected(&queue->bq); /* once per call, when it gives up */
            if (r != 0)
                break;
        }
        struct pool_meta m;
        r = pool_handover_begin(&p->pool, handle, &m);
        if (r < 0)
            break;
        froze |= r;
        struct bq_entry e;
        queue_entry_make(&e, handle, (uint32_t)p->object_id, &m);
        r = queue_enqueue_handed(queue, p, &e);
        if (likely(r == 0) || !wait || r != MBQ_BQ_ERR_QUEUE_IS_FULL || left == 0)
            break;
    }
    if (unlikely(r != 0) && froze)
        pool_thaw(&p->pool, handle);
    return r;
}

/* wait: the blocking forms, with timeout_ns as bq_enqueue_wait takes it. */
static int queue_enqueue(mbq_buffer_queue *queue, mbq_buffer buffer, bool take, bool wait,
                         int64_t timeout_ns)
{
    if (!queue || !buffer.pool_ || !buffer.handle_)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct mbq_pool *p = buffer.pool_;
    const uint32_t pool_id = (uint32_t)p->object_id;
    if (unlikely(!queue_pool_bound(queue, pool_id))) {
        /* A stale buffer is refused as such, before the daemon is asked. */
        if (!pool_block_of(&p->pool, buffer.handle_))
            return -ESTALE;
        int br = queue_bind_pool(queue, pool_id, false);
        if (br < 0)
            return br;
    }
    if (take)
        return queue_handover(queue, p, buffer.handle_, wait, timeout_ns);
    /* Frozen first, read second: from here on the block's metadata is what
     * the queue copies, and what every consumer reads on the block. An
     * enqueue that fails thaws what it froze (froze: 1). */
    struct pool_meta m;
    int froze = pool_freeze_read_meta(&p->pool, buffer.handle_, &m.size, &m.dts, &m.pts,
                                      &m.duration);
    if (froze < 0)
        return froze;
    struct bq_entry e;
    queue_entry_make(&e, buffer.handle_, pool_id, &m);
    int r = __builtin_expect(wait, 0) ? queue_enqueue_wait(queue, p, &e, timeout_ns)
                                      : queue_enqueue_entry(queue, p, &e);
    if (unlikely(r != 0) && froze)
        pool_thaw(&p->pool, buffer.handle_);
    return r;
}

int mbq_buffer_queue_enqueue(mbq_buffer_queue *queue, mbq_buffer buffer)
{
    return queue_enqueue(queue, buffer, false, false, 0);
}

int mbq_buffer_queue_enqueue_and_release(mbq_buffer_queue *queue, mbq_buffer buffer)
{
    return queue_enqueue(queue, buffer, true, false, 0);
}

int mbq_buffer_queue_enqueue_wait(mbq_buffer_queue *queue, mbq_buffer buffer, int64_t timeout_ns)
{
    return queue_enqueue(queue, buffer, false, true, timeout_ns);
}

int mbq_buffer_queue_enqueue_and_release_wait(mbq_buffer_queue *queue, mbq_buffer buffer,
                                              int64_t timeout_ns)
{
    return queue_enqueue(queue, buffer, true, true, timeout_ns);
}

int mbq_buffer_queue_cancel_waits(mbq_buffer_queue *queue)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    return bq_cancel_waits(&queue->bq);
}

int mbq_buffer_queue_set_wait_spin(mbq_buffer_queue *queue, int64_t spin_ns)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    bq_set_spin(&queue->bq, spin_ns);
    return 0;
}

int mbq_buffer_queue_wake_ahead(mbq_buffer_queue *queue)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    bq_wake_ahead(&queue->bq);
    return 0;
}

int mbq_buffer_queue_declare_producer(mbq_buffer_queue *queue)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    mbq_client *c = queue->client;
    pthread_mutex_lock(&c->lock);
    int r = queue->lost      ? -EIDRM
            : queue->producer ? 0 /* once per handle */
                              : queue_declare_producer_locked(queue, false);
    if (r == 0)
        queue->producer = true;
    pthread_mutex_unlock(&c->lock);
    return r;
}

bool mbq_buffer_queue_is_producer_lost(mbq_buffer_queue *queue)
{
    return queue && bq_producer_lost(&queue->bq);
}

int mbq_buffer_queue_set_wait_through_producer_lost(mbq_buffer_queue *queue, bool wait)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    bq_set_ignore_lost(&queue->bq, wait);
    return 0;
}

/* The queue's reference in e becomes the caller's buffer: the holding,
 * then the end of the intent the move_begin hook set before the entry
 * left the queue. */
static int queue_adopt(mbq_buffer_queue *q, const struct bq_entry *e, mbq_buffer *out)
{
    (void)e;
    struct mbq_pool *p = queue_moving[0];
    if (unlikely(!p)) {
        /* The hook let a forged entry go with no intent and nothing taken
         * (queue_map_unmapped found its pool not bound to the queue). */
        return -ENOLINK;
    }
    queue_moving[0] = NULL;
    int r = pool_adopt_end(&p->pool, e->handle);
    if (r < 0)
        return r;
    *out = (mbq_buffer){.pool_ = p, .handle_ = e->handle};
    return 0;
}

/* A dequeue refused because the head's pool is not mapped here or not yet
 * known to be bound to the queue: asks the daemon whether it is bound (once
 * per queue handle and pool) and maps it (once per client). True when the
 * dequeue should be tried again: with the pool mapped, or with a verdict
 * for the retry (a pool not bound: the entry goes, nothing is taken).
 * Otherwise *r is what the caller returns: as it was, or the error that
 * stopped it (the pool may not be opened here: -EACCES; the daemon is
 * gone; ...). */
static bool queue_map_unmapped(mbq_buffer_queue *q, int *r)
{
    if (*r != QUEUE_POOL_MISSING || !queue_unmapped)
        return false;
    uint32_t id = queue_unmapped - 1;
    queue_unmapped = 0;
    int c = queue_check_entry(q, id);
    /* -ENOENT: no pool has that id (or it names another kind of object), so
     * none is bound: refusing the dequeue instead would stall the queue
     * behind the entry for good. */
    if (c == -ENOLINK || c == -EACCES || c == -ENOENT) {
        queue_verdict = (id + 1) * 2 + 1;
        return true;
    }
    struct mbq_pool *p = c < 0 ? NULL : cpool_table_lookup(q->client, id, NULL);
    if (c == 0 && !p)
        c = cpool_table_resolve(q->client, id, &p);
    if (c < 0) {
        *r = c;
        return false;
    }
    if (!queue_pool_bound(q, id))
        queue_verdict = (id + 1) * 2; /* no daemon to ask: taken (see queue_check_entry) */
    return true;
}

int mbq_buffer_queue_dequeue_and_retain(mbq_buffer_queue *queue, mbq_buffer *out)
{
    if (!queue || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_entry e;
    queue_sync_triggers(queue);
    int r;
    queue_dequeuing = true;
    for (int tries = 0;; tries++) {
        r = bq_dequeue(&queue->bq, &e);
        if (tries == 2 || !queue_map_unmapped(queue, &r))
            break;
    }
    queue_dequeuing = false;
    queue_verdict = 0; /* for the retry alone */
    queue_settle(queue);
    if (r == QUEUE_POOL_MISSING)
        r = -EAGAIN; /* the head kept changing pools under us */
    return r ? r : queue_adopt(queue, &e, out);
}

int mbq_buffer_queue_dequeue_if_data_ready_and_retain(mbq_buffer_queue *queue, mbq_buffer *out)
{
    if (!queue || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_entry e;
    int r;
    queue_sync_triggers(queue);
    queue_dequeuing = true;
    for (int tries = 0;; tries++) {
        r = bq_dequeue_if_ready(&queue->bq, &e);
        /* "not ready" may mean "its pool is not mapped here yet" */
        const uint64_t missing = atomic_load_explicit(&queue->missing_pool, memory_order_relaxed);
        bool mapped = queue_settle(queue) && r == -EAGAIN;
        /* ... or "its pool cannot be mapped here": asked about as a dequeue
         * would, so that an entry of a pool nobody bound (or of no pool)
         * goes on the retry instead of reading as not ready for ever */
        if (!mapped && r == -EAGAIN && missing) {
            queue_unmapped = (uint32_t)missing;
            r = QUEUE_POOL_MISSING;
        }
        if (tries >= 2 || !(mapped || queue_map_unmapped(queue, &r)))
            break;
    }
    queue_dequeuing = false;
    queue_verdict = 0; /* for the retry alone */
    if (r == QUEUE_POOL_MISSING)
        r = -EAGAIN;
    return r ? r : queue_adopt(queue, &e, out);
}

int mbq_buffer_queue_dequeue_wait(mbq_buffer_queue *queue, int64_t timeout_ns, mbq_buffer *out)
{
    if (!queue || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_entry e;
    queue_sync_triggers(queue);
    int r;
    /* A retry after mapping a pool waits its whole timeout again: at most
     * twice, once per client and pool. */
    queue_dequeuing = true;
    for (int tries = 0;; tries++) {
        r = bq_dequeue_wait(&queue->bq, &e, timeout_ns);
        if (tries == 2 || !queue_map_unmapped(queue, &r))
            break;
    }
    queue_dequeuing = false;
    queue_verdict = 0; /* for the retry alone */
    queue_settle(queue);
    if (r == QUEUE_POOL_MISSING)
        r = -EAGAIN;
    return r ? r : queue_adopt(queue, &e, out);
}

int mbq_buffer_queue_copy_head(mbq_buffer_queue *queue, mbq_buffer *out)
{
    if (!queue || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_entry e;
    struct mbq_pool *p = NULL;
    int r;
    for (int tries = 0;; tries++) {
        r = bq_copy_head(&queue->bq, &e);
        if (r != QUEUE_POOL_MISSING || tries == 2)
            break;
        /* The retain hook met an unmapped pool under the head lock. */
        r = cpool_table_resolve(queue->client, e.pool_id, &p);
        if (r < 0)
            return r;
    }
    if (r == QUEUE_POOL_MISSING)
        r = -EAGAIN; /* the head kept changing pools under us */
    if (r)
        return r;
    p = cpool_table_lookup(queue->client, e.pool_id, NULL);
    if (!p) /* closed meanwhile by another thread: cannot hand it out */
        return -ESTALE;
    r = queue_check_entry(queue, e.pool_id);
    if (r < 0) {
        (void)pool_release(&p->pool, e.handle, true); /* the copy's reference */
        return r;
    }
    *out = (mbq_buffer){.pool_ = p, .handle_ = e.handle};
    return 0;
}

int mbq_buffer_queue_mark_end_of_data(mbq_buffer_queue *queue)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    queue_sync_triggers(queue);
    int r = bq_mark_end_of_data(&queue->bq);
    queue_settle(queue);
    return r;
}

bool mbq_buffer_queue_contains_end_of_data(mbq_buffer_queue *queue)
{
    return !queue || bq_contains_end_of_data(&queue->bq); /* NULL: true, as Core Media */
}

bool mbq_buffer_queue_is_at_end_of_data(mbq_buffer_queue *queue)
{
    return !queue || bq_is_at_end_of_data(&queue->bq); /* NULL: true, as Core Media */
}

bool mbq_buffer_queue_is_empty(mbq_buffer_queue *queue)
{
    return !queue || bq_is_empty(&queue->bq);
}

int64_t mbq_buffer_queue_get_buffer_count(mbq_buffer_queue *queue)
{
    return queue ? bq_count(&queue->bq) : 0;
}

mbq_time mbq_buffer_queue_get_duration(mbq_buffer_queue *queue)
{
    return queue ? bq_duration(&queue->bq) : MBQ_TIME_INVALID;
}

size_t mbq_buffer_queue_get_total_size(mbq_buffer_queue *queue)
{
    return queue ? (size_t)bq_total_size(&queue->bq) : 0;
}

mbq_time mbq_buffer_queue_get_min_decode_time_stamp(mbq_buffer_queue *queue)
{
    return queue ? bq_min_dts(&queue->bq) : MBQ_TIME_INVALID;
}

mbq_time mbq_buffer_queue_get_first_decode_time_stamp(mbq_buffer_queue *queue)
{
    return queue ? bq_first_dts(&queue->bq) : MBQ_TIME_INVALID;
}

mbq_time mbq_buffer_queue_get_min_presentation_time_stamp(mbq_buffer_queue *queue)
{
    return queue ? bq_min_pts(&queue->bq) : MBQ_TIME_INVALID;
}

mbq_time mbq_buffer_queue_get_first_presentation_time_stamp(mbq_buffer_queue *queue)
{
    return queue ? bq_first_pts(&queue->bq) : MBQ_TIME_INVALID;
}

mbq_time mbq_buffer_queue_get_max_presentation_time_stamp(mbq_buffer_queue *queue)
{
    return queue ? bq_max_pts(&queue->bq) : MBQ_TIME_INVALID;
}

mbq_time mbq_buffer_queue_get_end_presentation_time_stamp(mbq_buffer_queue *queue)
{
    return queue ? bq_end_pts(&queue->bq) : MBQ_TIME_INVALID;
}

/* ---- reset and for-each ------------------------------------------------------------------- */

#define QUEUE_MAX_PRERESOLVE 64

struct queue_pool_ids {
    uint32_t id[QUEUE_MAX_PRERESOLVE];
    unsigned n;
    mbq_buffer_queue *queue;
};

static int collect_pool_ids(struct bq_entry *e, void *ctx)
{
    struct queue_pool_ids *ids = ctx;
    if (cpool_table_lookup(ids->queue->client, e->pool_id, NULL) &&
        queue_pool_bound(ids->queue, e->pool_id))
        return 0;
    for (unsigned i = 0; i < ids->n; i++)
        if (ids->id[i] == e->pool_id)
            return 0;
    if (ids->n < QUEUE_MAX_PRERESOLVE)
        ids->id[ids->n++] = e->pool_id;
    return 0;
}

/* Maps the pools of the queue's current entries, and learns which are
 * bound, so that the callbacks of reset and for-each (run under the queue
 * lock) can be given whole buffers. */
static void queue_preresolve(mbq_buffer_queue *q)
{
    struct queue_pool_ids ids = {.n = 0, .queue = q};
    bq_for_each(&q->bq, collect_pool_ids, &ids);
    for (unsigned i = 0; i < ids.n; i++) {
        struct mbq_pool *p;
        if (queue_check_entry(q, ids.id[i]) == 0)
            cpool_table_resolve(q->client, ids.id[i], &p);
    }
}

static void reset_entry(const struct bq_entry *e, void *ctx)
{
    struct queue_reset *rs = ctx;
    if (!rs->callback)
        return;
    /* An entry of a pool this reset could not map here, or found not bound
     * to the queue, is passed with no pool: not a valid buffer. */
    struct mbq_pool *p = cpool_table_lookup(rs->queue->client, e->pool_id, NULL);
    if (!queue_pool_bound(rs->queue, e->pool_id) && !reset_learned_ok(rs->queue, e->pool_id))
        p = NULL; /* not a buffer of a pool bound to the queue: not a buffer */
    rs->callback((mbq_buffer){.pool_ = p, .handle_ = p ? e->handle : 0}, rs->refcon);
}

/* Under the queue lock, before a reset moves anything: whether e's
 * reference can be released at once (its pool mapped here and known to be
 * bound), or its pool was settled otherwise by this call; else the pool is
 * listed for the caller to learn. */
static bool reset_entry_ready(const struct bq_entry *e, void *ctx)
{
    struct queue_reset *rs = ctx;
    for (unsigned i = 0; i < rs->nknown; i++)
        if (rs->known[i] == e->pool_id)
            return true;
    if (cpool_table_lookup(rs->queue->client, e->pool_id, NULL) &&
        queue_pool_bound(rs->queue, e->pool_id)) {
        /* Noted, so that the release hook still knows it should another
         * thread's answers push it out of the handle's cache meanwhile. */
        if (rs->nknown < QUEUE_RESET_POOLS) {
            rs->known[rs->nknown] = e->pool_id;
            rs->known_ok[rs->nknown++] = true;
        }
        return true;
    }
    for (unsigned i = 0; i < rs->nmissing; i++)
        if (rs->missing[i] == e->pool_id)
            return false;
    if (rs->nmissing < QUEUE_RESET_POOLS)
        rs->missing[rs->nmissing++] = e->pool_id;
    return false;
}

/* Unlocked, between two looks of a reset: asks the daemon about each pool
 * the last look lacked and maps it. False when nothing could be learned
 * (no room left to note it). */
static bool reset_learn(struct queue_reset *rs)
{
    bool learned = false;
    for (unsigned i = 0; i < rs->nmissing && rs->nknown < QUEUE_RESET_POOLS; i++) {
        uint32_t id = rs->missing[i];
        struct mbq_pool *p;
        bool ok = queue_check_entry(rs->queue, id) == 0 &&
                  cpool_table_resolve(rs->queue->client, id, &p) == 0;
        rs->known[rs->nknown] = id;
        rs->known_ok[rs->nknown++] = ok;
        learned = true;
    }
    rs->nmissing = 0;
    return learned;
}

int mbq_buffer_queue_reset_with_callback(mbq_buffer_queue *queue,
                                         void (*callback)(mbq_buffer buffer, void *refcon),
                                         void *refcon)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    queue_sync_triggers(queue);
    struct queue_reset rs = {.queue = queue, .callback = callback, .refcon = refcon};
    /* Every entry's pool is learned before any entry leaves (bq_reset_if
     * changes nothing while one is missing). A producer that keeps adding
     * entries of pools new to us could make that go on: after a few rounds
     * the rest go with their release deferred, as before. */
    int r;
    for (int round = 0;; round++) {
        const bool last = round == QUEUE_RESET_ROUNDS;
        queue_resetting = &rs;
        r = bq_reset_if(&queue->bq, last ? NULL : reset_entry_ready, reset_entry, &rs);
        queue_resetting = NULL;
        if (r != -EAGAIN || last || !reset_learn(&rs))
            break;
    }
    if (r == -EAGAIN) { /* nothing more could be learned: as before */
        queue_resetting = &rs;
        r = bq_reset(&queue->bq, reset_entry, &rs);
        queue_resetting = NULL;
    }
    for (size_t i = 0; i < rs.ndeferred; i++) {
        struct mbq_pool *p;
        if (queue_check_entry(queue, rs.deferred[i].pool_id) == 0 &&
            cpool_table_resolve(queue->client, rs.deferred[i].pool_id, &p) == 0)
            pool_release(&p->pool, rs.deferred[i].handle, false);
        if (rs.deferred[i].held)
            pool_move_unhold(&rs.deferred[i].held->pool);
    }
    free(rs.deferred);
    queue_settle(queue);
    return r;
}

int mbq_buffer_queue_reset(mbq_buffer_queue *queue)
{
    return mbq_buffer_queue_reset_with_callback(queue, NULL, NULL);
}

struct queue_for_each {
    mbq_buffer_queue *queue;
    int (*callback)(mbq_buffer buffer, void *refcon);
    void *refcon;
};

static int for_each_entry(struct bq_entry *e, void *ctx)
{
    struct queue_for_each *fe = ctx;
    struct mbq_pool *p = cpool_table_lookup(fe->queue->client, e->pool_id, NULL);
    if (!queue_pool_bound(fe->queue, e->pool_id))
        p = NULL; /* not a buffer of a pool bound to the queue */
    return fe->callback((mbq_buffer){.pool_ = p, .handle_ = p ? e->handle : 0}, fe->refcon);
}

int mbq_buffer_queue_call_for_each_buffer(mbq_buffer_queue *queue,
                                          int (*callback)(mbq_buffer buffer, void *refcon),
                                          void *refcon)
{
    if (!queue || !callback)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (!bq_is_empty(&queue->bq))
        queue_preresolve(queue);
    struct queue_for_each fe = {.queue = queue, .callback = callback, .refcon = refcon};
    return bq_for_each(&queue->bq, for_each_entry, &fe);
}

int mbq_buffer_queue_set_validation_callback(mbq_buffer_queue *queue,
                                             int (*callback)(mbq_buffer_queue *queue,
                                                             mbq_buffer buffer, void *refcon),
                                             void *refcon)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    pthread_mutex_lock(&queue->client->lock);
    /* Records are never changed or freed while the handle is open (an
     * enqueue on another thread may be calling through the one replaced):
     * a pair set before is published again, so there are as many records
     * as distinct pairs set. */
    struct queue_validation *v = NULL;
    if (callback) {
        for (v = queue->validation_records; v; v = v->next)
            if (v->cb == callback && v->refcon == refcon)
                break;
        if (!v && (v = malloc(sizeof(*v))) != NULL) {
            *v = (struct queue_validation){
                .cb = callback, .refcon = refcon, .next = queue->validation_records};
            queue->validation_records = v;
        }
        if (!v) {
            pthread_mutex_unlock(&queue->client->lock);
            return -ENOMEM;
        }
    }
    atomic_store_explicit(&queue->validation, v, memory_order_release);
    pthread_mutex_unlock(&queue->client->lock);
    return 0;
}

/* ---- triggers ----------------------------------------------------------------------------- */

static bool cond_uses_time(int c)
{
    return (c >= 1 && c <= 4) || c == 12;
}

static int queue_install(mbq_buffer_queue *q, int condition, mbq_time time, int64_t threshold,
                         mbq_trigger_token *token_out)
{
    if (cond_uses_time(condition) && (!mbq_time_is_numeric(time) || time.epoch != 0))
        return MBQ_BQ_ERR_BAD_TRIGGER_DURATION;
    Mbq__V1__Time t = MBQ__V1__TIME__INIT;
    t.value = time.value;
    t.timescale = time.timescale;
    t.flags = time.flags;
    t.epoch = time.epoch;
    Mbq__V1__InstallTrigger it = MBQ__V1__INSTALL_TRIGGER__INIT;
    it.object_id = q->object_id;
    it.condition = condition;
    it.time = &t;
    it.threshold = threshold;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_INSTALL_TRIGGER;
    req.install_trigger = &it;

    mbq_client *c = q->client;
    struct client_reply reply;
    pthread_mutex_lock(&c->lock);
    int r = q->lost ? -EIDRM : client_call_locked(c, &req, &reply);
    if (r == 0 && q->lost) { /* lost in the reconnection this call made */
        client_reply_done(&reply);
        r = -EIDRM;
    }
    if (r == 0) {
        const Mbq__V1__TriggerFd *tf =
            reply.resp->body_case == MBQ__V1__RESPONSE__BODY_TRIGGER && reply.resp->trigger
                ? reply.resp->trigger->trigger
                : NULL;
        int fd = tf ? wire_fds_take(&reply.fds, tf->fd_index) : -1;
        if (fd < 0) {
            r = -EPROTO;
            if (tf)
                queue_remove_trigger_locked(q, tf->token);
        } else {
            bqueue_learn_trigger_locked(c, q->object_id, tf->token, fd, q);
            *token_out = tf->token;
        }
        client_reply_done(&reply);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

int mbq_buffer_queue_install_trigger(mbq_buffer_queue *queue, mbq_trigger_condition condition,
                                     mbq_time time, mbq_trigger_token *token_out)
{
    if (!queue || !token_out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if ((int)condition < 1 || (int)condition > 9)
        return MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION;
    return queue_install(queue, (int)condition, time, 0, token_out);
}

int mbq_buffer_queue_install_trigger_with_integer_threshold(mbq_buffer_queue *queue,
                                                            mbq_trigger_condition condition,
                                                            int64_t threshold,
                                                            mbq_trigger_token *token_out)
{
    if (!queue || !token_out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (condition != MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_LESS_THAN &&
        condition != MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN)
        return MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION;
    return queue_install(queue, (int)condition, MBQ_TIME_INVALID, threshold, token_out);
}

int mbq_buffer_queue_install_trigger_with_time_and_threshold(mbq_buffer_queue *queue,
                                                             mbq_trigger_condition condition,
                                                             mbq_time time, int64_t threshold,
                                                             mbq_trigger_token *token_out)
{
    if (!queue || !token_out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (condition !=
        MBQ_TRIGGER_WHEN_DURATION_BECOMES_GREATER_THAN_OR_EQUAL_TO_AND_BUFFER_COUNT_BECOMES_GREATER_THAN)
        return MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION;
    return queue_install(queue, (int)condition, time, threshold, token_out);
}

int mbq_buffer_queue_remove_trigger(mbq_buffer_queue *queue, mbq_trigger_token token)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    mbq_client *c = queue->client;
    pthread_mutex_lock(&c->lock);
    const struct queue_trigger *t = queue_find_trigger(queue, token);
    int r = queue->lost          ? -EIDRM
            : t && t->mine       ? queue_remove_trigger_locked(queue, token)
                                 : MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
    pthread_mutex_unlock(&c->lock);
    return r;
}

bool mbq_buffer_queue_test_trigger(mbq_buffer_queue *queue, mbq_trigger_token token)
{
    if (!queue)
        return false;
    int r = bq_test_trigger(&queue->bq, token);
    if (queue_settle(queue)) /* the head's readiness was unknown: ask again */
        r = bq_test_trigger(&queue->bq, token);
    return r == 1;
}

int mbq_buffer_queue_trigger_fd(mbq_buffer_queue *queue, mbq_trigger_token token)
{
    if (!queue)
        return -1;
    pthread_mutex_lock(&queue->client->lock);
    const struct queue_trigger *t = queue_find_trigger(queue, token);
    int fd = t ? t->fd : -1;
    pthread_mutex_unlock(&queue->client->lock);
    return fd;
}

int mbq_buffer_queue_notify_data_ready(mbq_buffer_queue *queue)
{
    if (!queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    queue_sync_triggers(queue);
    int r = bq_note_data_ready(&queue->bq);
    queue_settle(queue);
    return r;
}

int mbq_buffer_queue_get_stats(mbq_buffer_queue *queue, mbq_buffer_queue_stats *stats)
{
    if (!queue || !stats)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    struct bq_stats s;
    int r = bq_stats(&queue->bq, &s);
    if (r < 0)
        return r;
    mbq_buffer_queue_stats full = {
        .size = sizeof(full),
        .count = s.count,
        .capacity = s.capacity,
        .enqueued = s.enqueued,
        .dequeued = s.dequeued,
        .dropped = s.dropped,
        .rejected_full = s.rejected_full,
        .high_water = s.high_water,
        .total_size = s.total_size,
        .duration = s.duration,
        .end_of_data = s.end_of_data,
    };
    return client_copy_out(stats, &full, sizeof(full)) ? 0 : -EINVAL;
}

/* ---- runs of the batched calls (batch.c) ---------------------------------------------- */

/* The entries of b[0..n) (all of pool p), their metadata frozen: how many
 * (a prefix: a stale buffer ends it), with froze's bit i set where this
 * call froze b[i]. */
static uint32_t queue_run_entries(struct mbq_pool *p, const mbq_buffer *b, uint32_t n,
                                  struct bq_entry *e, uint64_t *handles, uint32_t *froze)
{
    *froze = 0;
    for (uint32_t i = 0; i < n; i++) {
        int f = pool_freeze_read_meta(&p->pool, b[i].handle_, &e[i].size, &e[i].dts, &e[i].pts,
                                      &e[i].duration);
        if (f < 0)
            return i;
        *froze |= (uint32_t)(f > 0) << i;
        e[i].handle = handles[i] = b[i].handle_;
        e[i].seq = 0;
        e[i].pool_id = (uint32_t)p->object_id;
        e[i].flags = 0;
        memset(e[i].attachments, 0, sizeof(e[i].attachments));
    }
    return n;
}

static void queue_run_thaw(struct mbq_pool *p, const mbq_buffer *b, uint32_t from, uint32_t to,
                           uint32_t froze)
{
    for (uint32_t i = from; i < to; i++)
        if (froze & (1u << i))
            pool_thaw(&p->pool, b[i].handle_);
}

/* Under the run intent: the holdings of handles[0..k) go to the queue's
 * entries, which go in; what did not go in is adopted back. *placed: how
 * many went in. */
static int queue_run_hand_over(mbq_buffer_queue *q, struct mbq_pool *p, const struct bq_entry *e,
                               const uint64_t *handles, uint32_t k, uint32_t *placed)
{
    int derr;
    uint32_t m = pool_disown_run(&p->pool, handles, k, &derr);
    int r = derr;
    *placed = 0;
    if (m) {
        queue_sync_triggers(q);
        queue_hint = p;
        int er = bq_enqueue_run(&q->bq, e, m, placed);
        queue_hint = NULL;
        if (er != 0)
            r = er;
        else if (*placed < m)
            r = BQUEUE_RUN_ONE; /* drop-oldest: the next one drops, alone */
    }
    for (uint32_t j = *placed; j < m; j++)
        (void)pool_adopt(&p->pool, handles[j]); /* still the caller's */
    return r;
}

int bqueue_enqueue_release_run(mbq_buffer_queue *q, const mbq_buffer *b, uint32_t n,
                               uint32_t *done)
{
    *done = 0;
    struct mbq_pool *p = b[0].pool_;
    if (!p || !b[0].handle_)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (!p->pool.sh)
        return -ESTALE;
    uint32_t k = 1;
    while (k < n && k < BQ_RUN_MAX && b[k].pool_ == p && b[k].handle_)
        k++;
    if (unlikely(!queue_pool_bound(q, (uint32_t)p->object_id))) {
        int br = queue_bind_pool(q, (uint32_t)p->object_id, false);
        if (br < 0)
            return br;
    }
    struct bq_entry e[BQ_RUN_MAX];
    uint64_t handles[BQ_RUN_MAX];
    uint32_t froze;
    k = queue_run_entries(p, b, k, e, handles, &froze);
    if (k == 0)
        return -ESTALE;
    if (pool_run_begin(&p->pool, handles, k) != 0) {
        queue_run_thaw(p, b, 0, k, froze);
        return BQUEUE_RUN_ONE;
    }
    uint32_t placed;
    int r = queue_run_hand_over(q, p, e, handles, k, &placed);
    pool_run_end(&p->pool);
    queue_run_thaw(p, b, placed, k, froze);
    queue_settle(q);
    *done = placed;
    return r;
}

int bqueue_dequeue_run(mbq_buffer_queue *q, mbq_buffer *out, uint32_t max)
{
    struct bq_entry e[BQ_RUN_MAX];
    if (max > BQ_RUN_MAX)
        max = BQ_RUN_MAX;
    queue_sync_triggers(q);
    queue_run_pool = NULL;
    int r = bq_dequeue_run(&q->bq, e, max);
    struct mbq_pool *p = queue_run_pool;
    queue_run_pool = NULL;
    queue_settle(q);
    if (r <= 0 || !p)
        return r > 0 ? -EPROTO : r;
    /* The queue's references become the caller's (holdings), then the
     * run's intent ends. */
    int got = 0;
    for (int i = 0; i < r; i++)
        if (pool_adopt(&p->pool, e[i].handle) == 0)
            out[got++] = (mbq_buffer){.pool_ = p, .handle_ = e[i].handle};
    pool_run_end(&p->pool);
    return got ? got : -ESTALE;
}
