/* Eclipse iceoryx 2.0.3 (Debian's packages) through its C binding, against
 * the RouDi the harness started with tests/bench/roudi.toml.
 *
 * Per channel: one publisher (service "mbqbench", instance = the channel's
 * name, event "q") in the producer and one subscriber per consumer, as the
 * reference measurement set them up: history 0, the publisher waits for a
 * slow consumer (WAIT_FOR_CONSUMER) and the subscriber's queue blocks the
 * producer when full (BLOCK_PRODUCER); queue capacity = the depth, at most
 * 256 (iceoryx's compile-time maximum). A message is a chunk's life:
 * iox_pub_loan_chunk, write, iox_pub_publish_chunk; iox_sub_take_chunk,
 * read, iox_sub_release_chunk. Busy-poll takes in a loop; blocking waits in a
 * WaitSet on the subscriber's HAS_DATA state. With two consumers one
 * publisher serves two subscribers (iceoryx's own fan-out).
 *
 * Each process registers with RouDi under its own name and deregisters
 * before it exits (iox_runtime_shutdown), so RouDi never has to reap it. */
#ifndef MBQ_BENCH_TX_IOX_H
#define MBQ_BENCH_TX_IOX_H

#include "transports.h"

#include <iceoryx_binding_c/enums.h>
#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/types.h>
#include <iceoryx_binding_c/wait_set.h>

#define IOX_MAX_QUEUE 256u
#define IOX_SUBSCRIBE_TIMEOUT_NS 20000000000ull

static pid_t iox_runtime_pid;

struct iox_end {
    struct tx_spec *s;
    iox_pub_storage_t pub_storage;
    iox_pub_t pub;
    iox_sub_storage_t sub_storage;
    iox_sub_t sub;
    iox_ws_storage_t ws_storage;
    iox_ws_t ws;
};

static int iox_prepare(struct tx_spec *s)
{
    if (s->depth > IOX_MAX_QUEUE)
        tx_note(s, "iox queue %u (its maximum)", IOX_MAX_QUEUE);
    return 0;
}

static void iox_unprepare(struct tx_spec *s)
{
    (void)s;
}

static int iox_proc_init(struct tx_spec *s)
{
    (void)s;
    if (iox_runtime_pid == getpid())
        return 0;
    char name[64];
    snprintf(name, sizeof(name), "mbqbench-%d", (int)getpid());
    iox_set_loglevel(Iceoryx_LogLevel_Warn);
    iox_runtime_init(name); /* blocks until RouDi answers */
    iox_runtime_pid = getpid();
    return 0;
}

static void iox_proc_fini(void)
{
    if (iox_runtime_pid == getpid()) {
        iox_runtime_shutdown();
        iox_runtime_pid = 0;
    }
}

static int iox_open_tx(struct tx_spec *s, void **out)
{
    struct iox_end *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->s = s;
    iox_pub_options_t o;
    iox_pub_options_init(&o);
    o.historyCapacity = 0;
    o.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
    e->pub = iox_pub_init(&e->pub_storage, "mbqbench", s->name, "q", &o);
    if (!e->pub) {
        free(e);
        return -EIO;
    }
    *out = e;
    return 0;
}

static int iox_open_rx(struct tx_spec *s, unsigned which, void **out)
{
    (void)which;
    struct iox_end *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->s = s;
    iox_sub_options_t o;
    iox_sub_options_init(&o);
    o.queueCapacity = s->depth < IOX_MAX_QUEUE ? s->depth : IOX_MAX_QUEUE;
    o.historyRequest = 0;
    o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
    e->sub = iox_sub_init(&e->sub_storage, "mbqbench", s->name, "q", &o);
    if (!e->sub) {
        free(e);
        return -EIO;
    }
    /* RouDi connects the ports asynchronously: wait until it has (the
     * producer opened its publisher before its own subscribers). */
    uint64_t t0 = bench_mono_ns();
    while (iox_sub_get_subscription_state(e->sub) != SubscribeState_SUBSCRIBED) {
        if (bench_mono_ns() - t0 > IOX_SUBSCRIBE_TIMEOUT_NS) {
            iox_sub_deinit(e->sub);
            free(e);
            return -ETIMEDOUT;
        }
        usleep(1000);
    }
    if (s->wait == TX_BLOCK) {
        e->ws = iox_ws_init(&e->ws_storage);
        if (iox_ws_attach_subscriber_state(e->ws, e->sub, SubscriberState_HAS_DATA, 0, NULL) !=
            WaitSetResult_SUCCESS) {
            iox_ws_deinit(e->ws);
            iox_sub_deinit(e->sub);
            free(e);
            return -EIO;
        }
    }
    *out = e;
    return 0;
}

static int iox_connected(void *tx)
{
    return iox_pub_has_subscribers(((struct iox_end *)tx)->pub) ? 1 : 0;
}

static void iox_close_tx(void *p)
{
    struct iox_end *e = p;
    iox_pub_deinit(e->pub);
    free(e);
}

static void iox_close_rx(void *p)
{
    struct iox_end *e = p;
    if (e->ws) {
        iox_ws_detach_subscriber_state(e->ws, e->sub, SubscriberState_HAS_DATA);
        iox_ws_deinit(e->ws);
    }
    iox_sub_deinit(e->sub);
    free(e);
}

static void *iox_loan(void *tx, int *err)
{
    struct iox_end *e = tx;
    void *p = NULL;
    for (unsigned i = 0;; i++) {
        enum iox_AllocationResult r = iox_pub_loan_chunk(e->pub, &p, (uint32_t)e->s->payload);
        if (r == AllocationResult_SUCCESS)
            return p;
        if (r != AllocationResult_RUNNING_OUT_OF_CHUNKS) {
            *err = -(int)ENOMEM;
            return NULL;
        }
        if (i < 1000)
            cpu_relax();
        else
            sched_yield();
    }
}

static int iox_send(void *tx, void *payload, uint64_t seq)
{
    (void)seq;
    iox_pub_publish_chunk(((struct iox_end *)tx)->pub, payload);
    return 0;
}

static const void *iox_recv(void *rx, int *err)
{
    struct iox_end *e = rx;
    const void *p = NULL;
    for (;;) {
        enum iox_ChunkReceiveResult r = iox_sub_take_chunk(e->sub, &p);
        if (r == ChunkReceiveResult_SUCCESS)
            return p;
        if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE) {
            *err = -EIO;
            return NULL;
        }
        if (!e->ws) {
            *err = -EAGAIN;
            return NULL;
        }
        iox_notification_info_t info[1];
        uint64_t missed = 0;
        iox_ws_wait(e->ws, info, 1, &missed);
    }
}

static void iox_done(void *rx, const void *payload)
{
    iox_sub_release_chunk(((struct iox_end *)rx)->sub, payload);
}

static const struct tx_ops tx_iox = {
    .name = "iceoryx",
    .prepare = iox_prepare,
    .unprepare = iox_unprepare,
    .proc_init = iox_proc_init,
    .proc_fini = iox_proc_fini,
    .open_tx = iox_open_tx,
    .open_rx = iox_open_rx,
    .connected = iox_connected,
    .close_tx = iox_close_tx,
    .close_rx = iox_close_rx,
    .loan = iox_loan,
    .send = iox_send,
    .recv = iox_recv,
    .done = iox_done,
};

#endif
