/* Simple queues (CMSimpleQueue): a struct sq (shm/sq.h) on the mapped
 * segment. Creation and opening go through the daemon; everything else is
 * the lock-free ring in shared memory, one producer and one consumer, with
 * no system call. One handle may serve both sides (the producer's and the
 * consumer's cached counters are separate fields). */
#include "internal.h"

static int squeue_adopt_locked(mbq_client *c, struct client_reply *reply,
                               const Mbq__V1__ObjectInfo *info, void *out)
{
    _cleanup_(closep) int fd = client_take_segment_fd(reply, info);
    if (fd < 0)
        return fd;
    mbq_simple_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    int r = sq_attach(fd, &q->sq);
    if (r < 0) {
        free(q);
        return r;
    }
    q->client = c;
    q->object_id = info->object_id;
    q->next = c->simple_queues;
    c->simple_queues = q;
    *(mbq_simple_queue **)out = q;
    return 0;
}

int mbq_simple_queue_create(mbq_client *client, const char *name, int32_t capacity,
                            const mbq_simple_queue_options *options, mbq_simple_queue **out)
{
    if (!client || !out)
        return MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (capacity == 0)
        return MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (capacity < 0 || capacity > SQ_MAX_CAPACITY)
        return MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE;
    if (!objname_valid(name))
        return -EINVAL;
    mbq_simple_queue_options o = {.size = sizeof(o)};
    if (options && !client_copy_options(&o, sizeof(o), options))
        return -EINVAL;
    if (!objmode_valid(o.mode))
        return -EINVAL;

    Mbq__V1__SimpleQueueConfig cfg = MBQ__V1__SIMPLE_QUEUE_CONFIG__INIT;
    cfg.capacity = capacity;
    Mbq__V1__Create cr = MBQ__V1__CREATE__INIT;
    cr.name = (char *)name;
    cr.kind = MBQ__V1__OBJECT_KIND__SIMPLE_QUEUE;
    cr.mode = o.mode;
    cr.exclusive = o.exclusive;
    cr.open_existing = (o.flags & MBQ_OPEN_IF_EXISTS) != 0;
    cr.config_case = MBQ__V1__CREATE__CONFIG_SIMPLE_QUEUE;
    cr.simple_queue = &cfg;
    return client_create_object(client, &cr, squeue_adopt_locked, out);
}

int mbq_simple_queue_open(mbq_client *client, const char *name, mbq_simple_queue **out)
{
    if (!client || !out)
        return MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (!objname_valid(name))
        return -EINVAL;
    return client_open_object(client, name, MBQ__V1__OBJECT_KIND__SIMPLE_QUEUE,
                              squeue_adopt_locked, out);
}

static void squeue_close_locked(mbq_simple_queue *q)
{
    for (mbq_simple_queue **pp = &q->client->simple_queues; *pp; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
    sq_detach(&q->sq);
    free(q);
}

static int squeue_reattach_locked(mbq_simple_queue *q)
{
    struct client_reply reply;
    int r = client_reattach_locked(q->client, q->object_id, MBQ__V1__OBJECT_KIND__SIMPLE_QUEUE,
                                   &q->sq.seg, 0, 1, &reply);
    if (r == 0)
        client_reply_done(&reply);
    return r;
}

static int squeue_reattach_all_locked(mbq_client *c)
{
    for (mbq_simple_queue *q = c->simple_queues; q; q = q->next) {
        if (q->lost)
            continue;
        int r = squeue_reattach_locked(q);
        if (client_connection_failed(r))
            return r;
        q->lost = r < 0;
    }
    return 0;
}

static void squeue_close_all_locked(mbq_client *c)
{
    while (c->simple_queues)
        squeue_close_locked(c->simple_queues);
}

const struct client_kind client_kind_simple_queue = {
    .name = "simple queue",
    .reattach_all = squeue_reattach_all_locked,
    .close_all = squeue_close_all_locked,
};

void mbq_simple_queue_close(mbq_simple_queue *queue)
{
    if (!queue)
        return;
    mbq_client *c = queue->client;
    pthread_mutex_lock(&c->lock);
    if (!queue->lost)
        client_close_object_locked(c, queue->object_id);
    squeue_close_locked(queue);
    pthread_mutex_unlock(&c->lock);
}

int mbq_simple_queue_enqueue(mbq_simple_queue *queue, uint64_t value)
{
    if (!queue)
        return MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING;
    return sq_enqueue(&queue->sq, value);
}

uint64_t mbq_simple_queue_dequeue(mbq_simple_queue *queue)
{
    return queue ? sq_dequeue(&queue->sq) : 0;
}

uint64_t mbq_simple_queue_get_head(mbq_simple_queue *queue)
{
    return queue ? sq_peek(&queue->sq) : 0;
}

int mbq_simple_queue_reset(mbq_simple_queue *queue)
{
    if (!queue)
        return MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING;
    return sq_reset(&queue->sq);
}

int32_t mbq_simple_queue_get_capacity(mbq_simple_queue *queue)
{
    return queue ? sq_capacity(&queue->sq) : 0;
}

int32_t mbq_simple_queue_get_count(mbq_simple_queue *queue)
{
    return queue ? sq_count(&queue->sq) : 0;
}

float mbq_simple_queue_get_fullness(mbq_simple_queue *queue)
{
    return queue ? sq_fullness(&queue->sq) : 0.0f;
}
