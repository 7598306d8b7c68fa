/* Producers: who produces into each buffer queue, so that a consumer can
 * tell a dead producer from a slow one.
 *
 * Role. A client declares itself a producer of a queue it has open
 * (DeclareProducer); the declaration lives on its session's handle and ends
 * when the client withdraws it (libmbq does as it closes the queue handle
 * that declared: a process may open a queue more than once) or when the
 * handle ends (its last Close, or the session's end: the process exited,
 * was killed, disconnected). The daemon counts the declarations of each
 * queue and writes the count, with the pids of up to BQ_PRODUCER_PIDS
 * producers, into the queue's header (bq_producers_set). When the count
 * falls to 0 from above it marks the queue "producer lost" and wakes its
 * blocked dequeuers, which return -EPIPE once the queue is empty; a new
 * declaration clears the mark. Stat shows the count, the pids and the mark
 * (producers_pids, producers_lost).
 *
 * Invariants.
 *  - The count is the daemon's, derived from its handles and, after a
 *    restart, the pids it restored; the header is written from it, never
 *    read back (a client may scribble there), except once, at restore.
 *  - A kill -9 is seen as the session's EOF (the kernel closes the dead
 *    process's socket), so the mark follows a producer's death at once; a
 *    stopped producer keeps its session and stays a producer.
 *  - Only a session's own handle carries its declaration: no request of one
 *    client ends another's.
 *
 * Restart. Sessions are not restored, but the header is: a restored queue
 * starts with the recorded pids as producers (Object.restored_producers).
 * A pid leaves that list when its process declares again after
 * reconnecting (libmbq does so for each queue it declared on) or exits
 * (the restorer watches it, restore.c); the count follows.
 *
 * Limits. A restarted daemon knows at most BQ_PRODUCER_PIDS producers of a
 * queue: with more, the ones it does not know count from their new
 * declaration only, so a queue can be marked lost (and cleared at the next
 * declaration) while such a producer is still reconnecting. */
#include "producers.h"

#include "log.h"

#include <inttypes.h>

static bool pids_have(const uint32_t *pids, unsigned n, uint32_t pid)
{
    for (unsigned i = 0; i < n; i++)
        if (pids[i] == pid)
            return true;
    return false;
}

/* Counts o's producers (declarations, and restored pids) into *n; the pids
 * of the first BQ_PRODUCER_PIDS distinct ones into pids, their number
 * returned. */
static unsigned producers_count(const Object *o, unsigned *n, uint32_t pids[BQ_PRODUCER_PIDS])
{
    unsigned npids = 0;
    *n = 0;
    list_for_each_safe(it, &o->handles) {
        const Handle *h = list_entry(it, Handle, object_link);
        if (!h->producer)
            continue;
        *n += h->producer;
        uint32_t pid = (uint32_t)h->session->pid;
        if (npids < BQ_PRODUCER_PIDS && !pids_have(pids, npids, pid))
            pids[npids++] = pid;
    }
    for (unsigned i = 0; i < o->n_restored_producers; i++) {
        (*n)++;
        uint32_t pid = (uint32_t)o->restored_producers[i];
        if (npids < BQ_PRODUCER_PIDS && !pids_have(pids, npids, pid))
            pids[npids++] = pid;
    }
    return npids;
}

/* Recounts o's producers and writes the header; lost_pid names the process
 * whose going made the change (0: none), for the log. */
static void producers_update(Object *o, pid_t lost_pid)
{
    uint32_t pids[BQ_PRODUCER_PIDS];
    unsigned n;
    unsigned npids = producers_count(o, &n, pids);
    const bool lost = n == 0 && o->producers > 0;
    o->producers = n;
    bq_producers_set(&o->bq, npids, pids, lost);
    if (lost)
        log_msg_fields(LOG_LEVEL_INFO,
                       LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("CLIENT_PID", lost_pid)),
                       "queue %u '%s': producer lost (the last producer, pid %d, is gone)", o->id,
                       o->name, (int)lost_pid);
}

/* Removes pid from o's restored producers; whether it was there. */
static bool restored_remove(Object *o, pid_t pid)
{
    for (unsigned i = 0; i < o->n_restored_producers; i++) {
        if (o->restored_producers[i] != pid)
            continue;
        o->restored_producers[i] = o->restored_producers[--o->n_restored_producers];
        return true;
    }
    return false;
}

void producers_declare(Handle *h)
{
    Object *o = h->object;
    if (h->producer++ > 0) {
        producers_update(o, 0);
        return;
    }
    (void)restored_remove(o, h->session->pid); /* now counted by its handle */
    const bool was_lost = bq_producer_lost(&o->bq);
    producers_update(o, 0);
    log_msg_fields(LOG_LEVEL_DEBUG,
                   LOG_FIELDS(LOG_STR("OBJECT", o->name), LOG_NUM("CLIENT_PID", h->session->pid)),
                   "queue %u '%s': pid %d declared itself a producer (%u now)%s", o->id, o->name,
                   (int)h->session->pid, o->producers, was_lost ? ", producer lost cleared" : "");
}

void producers_withdraw(Handle *h)
{
    if (!h->producer)
        return;
    h->producer--;
    producers_update(h->object, h->session->pid);
}

void producers_drop(Handle *h)
{
    if (!h->producer)
        return;
    h->producer = 0;
    producers_update(h->object, h->session->pid);
}

void producers_restore(Object *o)
{
    uint32_t pids[BQ_PRODUCER_PIDS];
    uint32_t n = bq_producers_get(&o->bq, pids);
    o->n_restored_producers = 0;
    /* Read as untrusted: only plausible, distinct pids, no more than the
     * count says. A queue already marked lost stays so. */
    for (unsigned i = 0; i < BQ_PRODUCER_PIDS && o->n_restored_producers < n; i++) {
        pid_t pid = (pid_t)pids[i];
        if (pid <= 0 || pids[i] > 0x3fffffffu)
            continue;
        bool dup = false;
        for (unsigned k = 0; k < o->n_restored_producers; k++)
            dup |= o->restored_producers[k] == pid;
        if (!dup)
            o->restored_producers[o->n_restored_producers++] = pid;
    }
    o->producers = n > 0 ? 1 : 0; /* so that the recount below can mark it lost */
    if (!bq_producer_lost(&o->bq))
        producers_update(o, 0);
    else
        o->producers = 0;
}

void producers_pid_gone(Object *o, pid_t pid)
{
    if (o->kind == OBJECT_BUFFER_QUEUE && restored_remove(o, pid))
        producers_update(o, pid);
}

void producers_for_each_restored(const Object *o, void (*fn)(pid_t pid, void *ctx), void *ctx)
{
    for (unsigned i = 0; i < o->n_restored_producers; i++)
        fn(o->restored_producers[i], ctx);
}

unsigned producers_pids(const Object *o, uint32_t pids[BQ_PRODUCER_PIDS])
{
    unsigned n;
    return producers_count(o, &n, pids);
}

bool producers_lost(const Object *o)
{
    return o->kind == OBJECT_BUFFER_QUEUE && bq_producer_lost(&o->bq);
}
