/* Introspection: mbq_list and mbq_stat, what mbqctl shows.
 *
 * Both are plain control requests; the daemon reads the live counters from
 * its own mappings. The caller's mbq_object_info structs are size-prefixed:
 * only as many bytes as a struct declares are written, so a caller built
 * against an older, shorter mbq_object_info still works. For mbq_list the
 * first element's size is the array's stride. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(((mbq_object_info *)0)->client_is_producer) ==
                   sizeof(((mbq_object_info *)0)->clients) / sizeof(mbq_client_usage),
               "a producer flag for each client");

static void info_from_object(mbq_object_info *out, const Mbq__V1__ObjectInfo *o)
{
    snprintf(out->name, sizeof(out->name), "%s", o->name ? o->name : "");
    out->kind = (mbq_object_kind)o->kind;
    out->object_id = o->object_id;
    out->owner_uid = o->owner_uid;
    out->owner_gid = o->owner_gid;
    out->mode = o->mode;
    out->open_count = o->open_count;
    out->segment_size = o->segment_size;
    switch (o->config_case) {
    case MBQ__V1__OBJECT_INFO__CONFIG_BUFFER_QUEUE:
        if (o->buffer_queue) {
            out->capacity = o->buffer_queue->capacity;
            out->order = o->buffer_queue->order;
            out->full_policy = o->buffer_queue->full_policy;
        }
        break;
    case MBQ__V1__OBJECT_INFO__CONFIG_SIMPLE_QUEUE:
        if (o->simple_queue)
            out->sq_capacity = o->simple_queue->capacity;
        break;
    case MBQ__V1__OBJECT_INFO__CONFIG_POOL:
        if (o->pool) {
            out->block_size = o->pool->block_size;
            out->block_count = o->pool->block_count;
        }
        break;
    default: break;
    }
}

static void info_from_stat(mbq_object_info *out, const Mbq__V1__StatReply *s)
{
    if (s->object)
        info_from_object(out, s->object);
    switch (s->stats_case) {
    case MBQ__V1__STAT_REPLY__STATS_BUFFER_QUEUE: {
        const Mbq__V1__BufferQueueStats *b = s->buffer_queue;
        if (!b)
            break;
        out->count = b->count;
        out->enqueued = b->enqueued;
        out->dequeued = b->dequeued;
        out->dropped = b->dropped;
        out->rejected_full = b->rejected_full;
        out->high_water = b->high_water;
        out->total_size = b->total_size;
        out->duration = time_from_wire(b->duration);
        out->end_of_data = b->end_of_data;
        out->triggers = b->triggers;
        out->forged_entries = b->forged_entries;
        out->approximate = b->approximate;
        out->lock_takeovers = b->lock_takeovers;
        out->producers = b->producers;
        out->producer_lost = b->producer_lost;
        for (size_t i = 0; i < b->n_producer_pids && i < MBQ_PRODUCER_PIDS; i++)
            out->producer_pids[out->producer_pid_count++] = b->producer_pids[i];
        break;
    }
    case MBQ__V1__STAT_REPLY__STATS_SIMPLE_QUEUE:
        if (s->simple_queue) {
            out->sq_count = s->simple_queue->count;
            out->sq_capacity = s->simple_queue->capacity;
        }
        break;
    case MBQ__V1__STAT_REPLY__STATS_POOL: {
        const Mbq__V1__PoolStats *p = s->pool;
        if (!p)
            break;
        out->block_size = p->block_size;
        out->block_count = p->block_count;
        out->blocks_used = p->used;
        out->blocks_warm = p->warm;
        out->blocks_cold = p->cold;
        out->allocations = p->allocs;
        out->frees = p->frees;
        out->aged_out = p->aged_out;
        out->invalidated = p->invalidated;
        out->approximate = p->approximate;
        out->lock_takeovers = p->lock_takeovers;
        for (size_t c = 0; c < p->n_classes && c < MBQ_POOL_MAX_CLASSES; c++) {
            const Mbq__V1__PoolClassStats *k = p->classes[c];
            if (!k)
                break;
            out->pool_classes[c].block_size = k->block_size;
            out->pool_classes[c].block_count = k->block_count;
            out->pool_classes[c].used = k->used;
            out->pool_classes[c].warm = k->warm;
            out->pool_classes[c].cold = k->cold;
            out->pool_classes[c].cached = k->cached;
            out->pool_class_count = (uint32_t)c + 1;
        }
        break;
    }
    default: break;
    }
    size_t max = sizeof(out->clients) / sizeof(out->clients[0]);
    out->client_count = (uint32_t)s->n_clients;
    for (size_t i = 0; i < s->n_clients && i < max; i++) {
        const Mbq__V1__ClientInfo *ci = s->clients[i];
        if (!ci)
            continue;
        mbq_client_usage *u = &out->clients[i];
        u->pid = ci->pid;
        u->uid = ci->uid;
        snprintf(u->name, sizeof(u->name), "%s", ci->name ? ci->name : "");
        u->buffers_held = ci->buffers_held;
        u->triggers = ci->triggers;
        out->client_is_producer[i] = ci->producer;
    }
}

/* Sends a List or Stat request and checks that the response carries the
 * matching body: 0 with *reply filled (release with client_reply_done), or
 * a negative value with nothing to release. (protobuf-c never leaves the
 * member of a oneof it decoded NULL, so checking the case is enough.) */
static int introspect_call(mbq_client *c, Mbq__V1__Request *req,
                           Mbq__V1__Response__BodyCase body, struct client_reply *reply)
{
    pthread_mutex_lock(&c->lock);
    int r = client_call_locked(c, req, reply);
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        return r;
    if (reply->resp->body_case != body) {
        client_reply_done(reply);
        return -EPROTO;
    }
    return 0;
}

/* One page of a list: the objects after 'after' that fit one reply, copied
 * into infos[*got..max). Returns the number the daemon counts from 'after'
 * on (0 if it does not say), sets *more and the last name copied. */
static int64_t list_page(mbq_client *client, const char *prefix, char *after, size_t after_len,
                         mbq_object_info *infos, size_t stride, size_t max, size_t *got,
                         bool *more)
{
    Mbq__V1__List ls = MBQ__V1__LIST__INIT;
    ls.prefix = (char *)(prefix ? prefix : "");
    ls.after = after;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_LIST;
    req.list = &ls;
    struct client_reply reply;
    int r = introspect_call(client, &req, MBQ__V1__RESPONSE__BODY_LIST, &reply);
    if (r < 0)
        return r;
    const Mbq__V1__ListReply *lr = reply.resp->list;
    size_t n = lr->n_objects;
    int64_t total = lr->total ? (int64_t)lr->total : (int64_t)n; /* an older mbqd: one page */
    *more = lr->more && n > 0 && lr->objects[n - 1] && lr->objects[n - 1]->name &&
            strcmp(lr->objects[n - 1]->name, after) > 0; /* a page must move on */
    for (size_t i = 0; i < n && *got < max; i++) {
        mbq_object_info full = {.size = sizeof(full)};
        if (lr->objects[i])
            info_from_object(&full, lr->objects[i]);
        mbq_object_info *dst = (mbq_object_info *)((char *)infos + *got * stride);
        memcpy(dst, &stride, sizeof(stride));
        client_copy_out(dst, &full, sizeof(full));
        (*got)++;
    }
    if (*more)
        snprintf(after, after_len, "%s", lr->objects[n - 1]->name);
    client_reply_done(&reply);
    return total;
}

int mbq_list(mbq_client *client, const char *prefix, mbq_object_info *infos, size_t max)
{
    if (!client || (max && !infos))
        return -EINVAL;
    size_t stride = 0;
    if (max) {
        memcpy(&stride, infos, sizeof(stride));
        if (stride < sizeof(size_t))
            return -EINVAL;
    }
    if (prefix && strlen(prefix) > 255)
        return -EINVAL;
    /* Page by page until infos is full or the list ends; the count is the
     * first page's total (the objects there were then). */
    char after[MBQ_NAME_MAX + 1] = "";
    size_t got = 0;
    bool more = false;
    int64_t total = list_page(client, prefix, after, sizeof(after), infos, stride, max, &got, &more);
    while (total >= 0 && more && got < max) {
        int64_t t = list_page(client, prefix, after, sizeof(after), infos, stride, max, &got, &more);
        if (t < 0)
            total = t;
    }
    if (total < 0)
        return (int)total;
    if ((int64_t)got > total)
        total = (int64_t)got;
    return total > INT32_MAX ? INT32_MAX : (int)total;
}

int mbq_stat(mbq_client *client, const char *name, mbq_object_info *info)
{
    if (!client || !info)
        return -EINVAL;
    if (!objname_valid(name))
        return -EINVAL;
    size_t declared;
    memcpy(&declared, info, sizeof(declared));
    if (declared < sizeof(size_t))
        return -EINVAL;
    Mbq__V1__Stat st = MBQ__V1__STAT__INIT;
    st.name = (char *)name;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_STAT;
    req.stat = &st;
    struct client_reply reply;
    int r = introspect_call(client, &req, MBQ__V1__RESPONSE__BODY_STAT, &reply);
    if (r < 0)
        return r;
    mbq_object_info full = {.size = sizeof(full)};
    info_from_stat(&full, reply.resp->stat);
    client_reply_done(&reply);
    client_copy_out(info, &full, sizeof(full));
    return 0;
}

int mbq_usage(mbq_client *client, mbq_user_usage *users, size_t max, uint64_t *total,
              uint64_t *max_total)
{
    if (!client || (max && !users))
        return -EINVAL;
    size_t stride = 0;
    if (max) {
        memcpy(&stride, users, sizeof(stride));
        if (stride < sizeof(size_t))
            return -EINVAL;
    }
    Mbq__V1__Usage us = MBQ__V1__USAGE__INIT;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.body_case = MBQ__V1__REQUEST__BODY_USAGE;
    req.usage = &us;
    struct client_reply reply;
    int r = introspect_call(client, &req, MBQ__V1__RESPONSE__BODY_USAGE, &reply);
    if (r < 0)
        return r;
    const Mbq__V1__UsageReply *ur = reply.resp->usage;
    size_t n = ur->n_users;
    for (size_t i = 0; i < n && i < max; i++) {
        mbq_user_usage full = {.size = sizeof(full)};
        const Mbq__V1__UserUsage *u = ur->users[i];
        if (u) {
            full.uid = u->uid;
            full.objects = u->objects;
            full.max_objects = u->max_objects;
            full.bytes = u->bytes;
            full.max_bytes = u->max_bytes;
        }
        mbq_user_usage *dst = (mbq_user_usage *)((char *)users + i * stride);
        memcpy(dst, &stride, sizeof(stride));
        client_copy_out(dst, &full, sizeof(full));
    }
    if (total)
        *total = ur->total_bytes;
    if (max_total)
        *max_total = ur->max_total_bytes;
    client_reply_done(&reply);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

char *mbq_client_last_error(mbq_client *client, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    buf[0] = '\0';
    if (!client)
        return buf;
    pthread_mutex_lock(&client->lock);
    snprintf(buf, len, "%s", client->last_error);
    pthread_mutex_unlock(&client->lock);
    return buf;
}
