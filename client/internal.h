/* libmbq internals: the objects behind the opaque public handles, and the
 * few functions the library's files share.
 *
 * Planes. Everything that talks to mbqd goes through client.c, under the
 * client's mutex (client->lock): the socket, the request ids, the lists of
 * open objects and changes to the pool table. The data plane (enqueue,
 * dequeue, allocate, release, inspection) never takes that mutex; it works
 * on the mapped segments through shm/ and, for the pools its buffers live
 * in, on a lock-free table of atomic pointers.
 *
 * Lock order: client->lock, then a queue's shared-memory lock (taken by
 * bq_set_trigger_fd when a trigger's eventfd is recorded). Nothing that runs
 * under a queue's shared-memory lock (the bq hooks, reset and for-each
 * callbacks) takes client->lock or talks to the daemon: a hook that meets a
 * pool this process has not opened yet records it, and the operation's
 * wrapper opens it through the daemon once the queue is unlocked.
 *
 * Pools. A process maps each pool once per client, whoever asked for it:
 * mbq_pool_create/open by name, or the library itself when a dequeued
 * buffer names a pool by id (a "pinned" pool, kept until disconnect since
 * buffers handed to the caller point at it). `opens` counts the daemon-side
 * opens the mapping stands for; the mapping goes when it drops to zero.
 *
 * Symbols. The library is built with -fvisibility=hidden; the public header
 * is included under default visibility so that exactly the functions it
 * declares are exported (the version script then hides everything else,
 * including shm/ and proto/, which are linked in). */
#ifndef MBQ_CLIENT_INTERNAL_H
#define MBQ_CLIENT_INTERNAL_H

#pragma GCC visibility push(default)
#include <mbq/mbq.h>
#pragma GCC visibility pop

#include "bq.h"
#include "common/clock.h"
#include "common/macro.h"
#include "common/objname.h"
#include "mbq.pb-c.h"
#include "pool.h"
#include "sq.h"
#include "wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- objects -------------------------------------------------------------- */

#define CLIENT_MAX_POOLS 256      /* pools one client can map at once */
#define QUEUE_MAX_TRIGGERS (2 * BQ_MAX_TRIGGERS) /* trigger fds a queue handle keeps */
#define QUEUE_GRAVEYARD 16        /* removed trigger fds kept open a while, see below */

struct mbq_pool {
    struct pool pool;  /* the mapping; immutable after attach */
    mbq_client *client;
    uint64_t object_id; /* the pool id queue entries carry; < 2^32 */
    unsigned opens;     /* daemon-side opens this mapping stands for (client->lock) */
    bool pinned;        /* opened by id for a dequeued buffer: kept until disconnect */
    bool lost;          /* a restarted daemon no longer has it (client->lock) */
    unsigned slot;      /* index in client->pools */
    struct mbq_pool *tomb_next; /* once closed: the process's tombstones (pool.c) */
    /* The last format this process interned through mbq_buffer_set_format
     * (a copy, so that an unchanged format costs a compare, no lock). */
    pthread_mutex_t format_lock;
    uint64_t format_id;
    uint32_t format_len;
    uint8_t *format_bytes; /* malloc'd; freed with the mapping */
    _Atomic uint32_t hold_limit; /* mbq_pool_set_hold_limit; 0: none */
};

struct queue_trigger {
    uint64_t token;
    int fd;    /* owned */
    bool mine; /* installed through this handle: removed when it closes */
};

typedef int (*queue_validation_fn)(mbq_buffer_queue *queue, mbq_buffer buffer, void *refcon);

#define QUEUE_BOUND_CACHE 8

/* A buffer queue handle's validation callback (see validation below). */
struct queue_validation {
    queue_validation_fn cb;
    void *refcon;
    struct queue_validation *next; /* the handle's records (validation_records) */
};

struct mbq_buffer_queue {
    struct bq bq; /* the mapping and this process's trigger fds (shm/bq.h) */
    mbq_client *client;
    uint64_t object_id;
    mbq_buffer_queue *next; /* client->queues */
    bool lost; /* a restarted daemon no longer has it (client->lock) */
    bool producer; /* declared a producer: again after a reattach (client->lock) */

    /* Under client->lock. */
    struct queue_trigger triggers[QUEUE_MAX_TRIGGERS];
    unsigned ntriggers;
    /* A removed trigger's fd may still be about to be written by a thread
     * that evaluated the trigger just before its removal (bq's trig_signal
     * runs after unlocking). Closing it at once could let that write hit an
     * unrelated fd that reused the number, so the last few stay open until
     * the graveyard wraps or the queue closes. */
    int graveyard[QUEUE_GRAVEYARD];
    unsigned graveyard_next;

    /* The segment's trigger_gen when this handle last caught up with the
     * daemon's TriggersChanged events (see queue_sync_triggers). */
    _Atomic uint32_t trigger_gen_seen;
    /* A pool id (+1) the is_ready hook met but could not resolve under the
     * queue lock; the operation's wrapper opens it afterwards. 0: none. */
    _Atomic uint64_t missing_pool;
    /* The validation callback and its refcon: an immutable record per
     * distinct pair, published by one pointer (NULL: none), so that an
     * enqueue reads a pair one set wrote with a single load. Records stay
     * allocated until the handle is closed, since a reader may still be
     * calling through one replaced. Sets serialise on client->lock. */
    _Atomic(const struct queue_validation *) validation;
    struct queue_validation *validation_records;
    /* Pool ids the daemon confirmed bound to this queue (0: empty slot),
     * replaced round robin; see queue_pool_bound in buffer_queue.c. */
    _Atomic uint32_t bound[QUEUE_BOUND_CACHE];
    _Atomic unsigned bound_next;
};

struct mbq_simple_queue {
    struct sq sq;
    mbq_client *client;
    uint64_t object_id;
    mbq_simple_queue *next; /* client->simple_queues */
    bool lost; /* a restarted daemon no longer has it (client->lock) */
};

struct mbq_client {
    pthread_mutex_t lock;
    int fd; /* the SOCK_SEQPACKET connection; -1 once closed; the number
               stays the same across reconnections */
    bool dead;
    uint64_t next_id;
    uint64_t session_id;
    /* Reconnection (client.c): where and as whom to connect again, whether
     * the daemon keeps its objects across restarts (HelloReply), and the
     * state of a reconnection in progress. */
    struct sockaddr_un addr;
    char name[256];
    bool restartable;
    bool reconnecting;
    unsigned reconnects;
    /* a reconnection found objects the daemon no longer has, and
     * mbq_client_dispatch has not said so yet */
    bool objects_lost;
    int call_timeout_ms;
    uint8_t *sendbuf, *recvbuf; /* WIRE_MAX_PACKET each */
    char last_error[400]; /* the daemon's text for the last failed request */

    mbq_buffer_queue *queues;
    mbq_simple_queue *simple_queues;

    /* Data-plane lookups read these without the lock; only client.c and
     * pool.c write them, under it. */
    _Atomic(struct mbq_pool *) pools[CLIENT_MAX_POOLS];
    _Atomic unsigned npools; /* slots in use are below this */
    _Atomic(struct mbq_pool *) last_pool;
};

/* ---- client.c: the control connection ------------------------------------ */

/* A decoded reply. The response is borrowed from msg; fds holds the packet's
 * descriptors (claim with wire_fds_take; the rest close in reply_done). */
struct client_reply {
    Mbq__V1__ServerMessage *msg;
    Mbq__V1__Response *resp;
    struct wire_fds fds;
};

/* Sends req (its id is assigned here) and waits for its response, applying
 * whatever events arrive first. Call with client->lock held. Returns 0 with
 * *reply filled (release with client_reply_done), the response's non-zero
 * status (nothing to release), or -ENOTCONN / -EPROTO / -errno. */
int client_call_locked(mbq_client *c, Mbq__V1__Request *req, struct client_reply *reply);
/* client_call_locked for a request whose reply carries nothing but its
 * status: the reply is let go at once. */
int client_request_locked(mbq_client *c, Mbq__V1__Request *req);
void client_reply_done(struct client_reply *reply);
/* mbq_client_dispatch with client->lock held: applies whatever events wait
 * on the socket, without blocking and without reconnecting (the data plane
 * calls it). 0 or -ENOTCONN. */
int client_dispatch_locked(mbq_client *c);
/* After a reconnection: Reattach (client->lock held, within the
 * reconnection) the object this process maps through seg. The reply's
 * ObjectInfo carries the queue's trigger eventfds. 0 with *reply filled
 * (release with client_reply_done), -ENOTCONN/-ETIMEDOUT (the connection
 * failed again), or the daemon's refusal (the object is lost). */
int client_reattach_locked(mbq_client *c, uint64_t object_id, Mbq__V1__ObjectKind kind,
                           const struct seg *seg, uint32_t nonce, unsigned opens,
                           struct client_reply *reply);
/* Sends Close for an object (errors ignored: the daemon closes everything
 * when the connection goes). Call with client->lock held. */
void client_close_object_locked(mbq_client *c, uint64_t object_id);
/* Reads a caller's size-prefixed options struct into a zeroed local copy:
 * returns false if the declared size cannot even hold the size field. */
bool client_copy_options(void *dst, size_t dst_size, const void *src);
/* Copies a filled-in struct src (src_size bytes, beginning with its size)
 * into the caller's size-prefixed struct dst: as many bytes as dst declares
 * (at most src_size), leaving dst's size field alone. False if dst's size
 * cannot even hold the size field. */
bool client_copy_out(void *dst, const void *src, size_t src_size);
/* The segment fd of an ObjectInfo in a reply, claimed from its fds, or a
 * negative errno. */
int client_take_segment_fd(struct client_reply *reply, const Mbq__V1__ObjectInfo *info);

/* Creating and opening objects. An adopt function maps the object a
 * Create/Open reply describes (info, already checked to be of the kind asked
 * for; its fds are in reply) into *out, a pointer to the caller's handle
 * pointer. client->lock held. 0, or a negative errno. */
typedef int client_adopt_fn(mbq_client *c, struct client_reply *reply,
                            const Mbq__V1__ObjectInfo *info, void *out);
/* Sends req (a Create or Open of an object of this kind) and adopts the
 * object the reply describes. If that fails after the daemon opened the
 * object, the open is given back. client->lock held. 0 or a negative value
 * (the daemon's refusal, -EPROTO, or what adopt returned). */
int client_request_object_locked(mbq_client *c, Mbq__V1__Request *req, Mbq__V1__ObjectKind kind,
                                 client_adopt_fn *adopt, void *out);
/* As client_request_object_locked, taking client->lock: Create (cr with its
 * name, kind, mode, exclusive flag and configuration filled in) or Open by
 * name. */
int client_create_object(mbq_client *c, Mbq__V1__Create *cr, client_adopt_fn *adopt, void *out);
int client_open_object(mbq_client *c, const char *name, Mbq__V1__ObjectKind kind,
                       client_adopt_fn *adopt, void *out);

/* ---- pool.c: pools and the pool table ------------------------------------- */

/* The pool with this id mapped through c, or NULL. Lock-free; no system
 * call. hint (may be NULL) is tried first. */
struct mbq_pool *cpool_table_lookup(mbq_client *c, uint32_t pool_id, struct mbq_pool *hint);
/* As lookup, but opens the pool through the daemon (by id) if this client
 * has not mapped it yet. Must not be called under a queue lock. */
int cpool_table_resolve(mbq_client *c, uint32_t pool_id, struct mbq_pool **out);

/* ---- buffer_queue.c ------------------------------------------------------- */

/* A trigger became known (event, open reply, install): the fd (owned, taken)
 * goes to `mine` if given, else to the first handle of the object; the other
 * handles of the same object in this process get duplicates. client->lock held. */
void bqueue_learn_trigger_locked(mbq_client *c, uint64_t object_id, uint64_t token, int fd,
                                 mbq_buffer_queue *mine);
/* A trigger went away: every handle of the object forgets it. */
void bqueue_forget_trigger_locked(mbq_client *c, uint64_t object_id, uint64_t token);

/* Runs of the batched calls (buffer_queue.c, for batch.c): up to
 * BQ_RUN_MAX buffers of one pool under one queue lock round and one pool
 * run intent. BQUEUE_RUN_ONE: the next buffer goes through the
 * single-buffer call (no run record free, drop-oldest must drop, the head's
 * pool not yet mapped or known to be bound). */
#define BQUEUE_RUN_ONE 1
/* enqueue_and_release of the prefix of b[0..n) that shares b[0]'s pool:
 * *done of them went in; 0, BQUEUE_RUN_ONE, or the error that stopped it
 * at b[*done] (the caller still holds b[*done..n)). */
int bqueue_enqueue_release_run(mbq_buffer_queue *q, const mbq_buffer *b, uint32_t n,
                               uint32_t *done);
/* dequeue_and_retain of a run at the head: the count (1..max),
 * BQUEUE_RUN_ONE - 1 (0: take the head alone), or -EAGAIN / an error. */
int bqueue_dequeue_run(mbq_buffer_queue *q, mbq_buffer *out, uint32_t max);

/* ---- object kinds --------------------------------------------------------- */

/* What the connection (client.c) does over every object of a client, kind
 * by kind, so that it names no kind: each kind's file defines its table and
 * kinds.c lists them, in the order they are reattached and closed (queues
 * before the pools their entries name). Each runs with client->lock held. */
struct client_kind {
    const char *name;
    /* After a reconnection: reattaches each object of this kind that is not
     * lost yet; one the daemon refuses is marked lost. 0, or
     * -ENOTCONN/-ETIMEDOUT (the connection failed again). */
    int (*reattach_all)(mbq_client *c);
    /* Disconnect: frees every object of this kind, telling the daemon
     * nothing (the connection's end closes them there). */
    void (*close_all)(mbq_client *c);
    /* An event from the daemon; claims the fds it takes. NULL: none. */
    void (*on_event)(mbq_client *c, const Mbq__V1__Event *ev, struct wire_fds *fds);
    /* After events were applied or the connection came back. NULL: none. */
    void (*events_done)(mbq_client *c);
};

extern const struct client_kind client_kind_buffer_queue;
extern const struct client_kind client_kind_simple_queue;
extern const struct client_kind client_kind_pool;
/* Every kind, in order (kinds.c). */
extern const struct client_kind *const client_kinds[];
extern const size_t client_n_kinds;

/* Whether r says the connection failed (again), rather than the daemon
 * refusing one object. */
static inline bool client_connection_failed(int r)
{
    return r == -ENOTCONN || r == -ETIMEDOUT;
}

/* ---- time on the wire ----------------------------------------------------- */

static inline mbq_time time_from_wire(const Mbq__V1__Time *t)
{
    if (!t)
        return MBQ_TIME_INVALID;
    return (mbq_time){.value = t->value, .timescale = t->timescale, .flags = t->flags,
                      .epoch = t->epoch};
}

#endif
