/* An object's configuration as the protocol's config messages, shared by
 * the replies that describe an object (session.c) and the state record kept
 * in the service manager's fd store (fdstore.c). */
#ifndef MBQD_PROTO_CONFIG_H
#define MBQD_PROTO_CONFIG_H

#include "registry.h"

#include <mbq.pb-c.h>

union proto_config {
    Mbq__V1__BufferQueueConfig bq;
    Mbq__V1__SimpleQueueConfig sq;
    Mbq__V1__PoolConfig pool;
};

/* Fills the member of cfg that o's kind uses; the caller sets its oneof's
 * case and points it at that member. */
static inline void proto_config_fill(const Object *o, union proto_config *cfg)
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
        break;
    }
}

#endif
