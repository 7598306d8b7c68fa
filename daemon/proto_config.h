/* An object's configuration as the protocol's config messages, shared by
 * the replies that describe an object (session.c) and the state record kept
 * in the service manager's fd store (fdstore.c). */
#ifndef MBQD_PROTO_CONFIG_H
#define MBQD_PROTO_CONFIG_H

#include "registry.h"

#include <mbq.pb-c.h>

#include <errno.h>

struct proto_config {
    union {
        Mbq__V1__BufferQueueConfig bq;
        Mbq__V1__SimpleQueueConfig sq;
        Mbq__V1__PoolConfig pool;
    };
    /* pool.classes points here */
    Mbq__V1__PoolClass cls[POOL_MAX_CLASSES];
    Mbq__V1__PoolClass *cls_ptr[POOL_MAX_CLASSES];
};

/* A Create's or a state record's pool configuration as pool_params (no
 * check: pool_params_check does it). -E2BIG: more classes than a pool can
 * have (the count alone is checked here, for the array). */
static inline int proto_config_pool_params(const Mbq__V1__PoolConfig *in, struct pool_params *out)
{
    out->block_size = in->block_size;
    out->block_count = in->block_count;
    out->age_out_ns = in->age_out_ns;
    out->nclasses = 0;
    if (in->n_classes == 0)
        return 0;
    if (in->n_classes > POOL_MAX_CLASSES)
        return -E2BIG;
    out->nclasses = (uint32_t)in->n_classes;
    for (uint32_t c = 0; c < out->nclasses; c++) {
        out->class_size[c] = in->classes[c]->block_size;
        out->class_count[c] = in->classes[c]->block_count;
    }
    return 0;
}

/* Fills the member of cfg that o's kind uses; the caller sets its oneof's
 * case and points it at that member. */
static inline void proto_config_fill(const Object *o, struct proto_config *cfg)
{
    switch (o->kind) {
    case OBJECT_BUFFER_QUEUE:
        cfg->bq = (Mbq__V1__BufferQueueConfig)MBQ__V1__BUFFER_QUEUE_CONFIG__INIT;
        cfg->bq.capacity = o->config.bq.capacity;
        cfg->bq.order = o->config.bq.order;
        cfg->bq.full_policy = o->config.bq.full_policy;
        break;
    case OBJECT_SIMPLE_QUEUE:
        cfg->sq = (Mbq__V1__SimpleQueueConfig)MBQ__V1__SIMPLE_QUEUE_CONFIG__INIT;
        cfg->sq.capacity = o->config.sq_capacity;
        break;
    case OBJECT_POOL:
        cfg->pool = (Mbq__V1__PoolConfig)MBQ__V1__POOL_CONFIG__INIT;
        cfg->pool.block_size = o->config.pool.block_size;
        cfg->pool.block_count = o->config.pool.block_count;
        cfg->pool.age_out_ns = o->config.pool.age_out_ns;
        for (uint32_t c = 0; o->config.pool.nclasses > 1 && c < o->config.pool.nclasses; c++) {
            cfg->cls[c] = (Mbq__V1__PoolClass)MBQ__V1__POOL_CLASS__INIT;
            cfg->cls[c].block_size = o->config.pool.class_size[c];
            cfg->cls[c].block_count = o->config.pool.class_count[c];
            cfg->cls_ptr[c] = &cfg->cls[c];
            cfg->pool.n_classes = c + 1;
        }
        cfg->pool.classes = cfg->cls_ptr;
        break;
    }
}

#endif
