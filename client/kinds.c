/* The list of object kinds the connection (client.c) works through on
 * reconnection, disconnect and events; see struct client_kind in
 * internal.h. Queues come before pools: a queue's entries name pools, so
 * pools are reattached after (a queue's reattach may open one by id) and
 * freed last. */
#include "internal.h"

const struct client_kind *const client_kinds[] = {
    &client_kind_buffer_queue,
    &client_kind_simple_queue,
    &client_kind_pool,
};
const size_t client_n_kinds = ARRAY_SIZE(client_kinds);
