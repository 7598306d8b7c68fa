/* mbq through its public library, against the mbqd the harness started.
 *
 * Per channel: one pool (the producer's frames: page-rounded blocks, or
 * with TXV_MBQ_SMALL blocks of the payload's size packed below a page, with
 * TXV_MBQ_CLASSES a pool of three size classes whose first is that size;
 * depth + 16 of them, pre-faulted by mbqd) and one buffer queue per consumer,
 * created by the measuring process before it forks, opened by name by each
 * side on its own connection. A message is a buffer's whole life:
 *   producer: mbq_pool_allocate, write the payload into
 *             mbq_buffer_get_data, mbq_buffer_set_timing, enqueue into every
 *             consumer's queue but the last (the queue takes its own
 *             reference: one frame in two queues is not copied), and
 *             mbq_buffer_queue_enqueue_and_release into the last (which
 *             takes over the producer's reference);
 *   consumer: dequeue (busy: mbq_buffer_queue_dequeue_and_retain in a loop;
 *             blocking: mbq_buffer_queue_dequeue_wait, or the eventfd of a
 *             "count > 0" trigger), read the payload, mbq_buffer_release.
 * That is the same work as iceoryx's loan/publish/take/release.
 * TXV_MBQ_BATCH16 ("mbq b16") makes the same moves with the batched calls,
 * 16 at a time: mbq_pool_allocate_many, enqueue_and_release_many,
 * dequeue_many, release_many.
 *
 * tx_bq is the buffer queue alone through the internal shm/ API (no pool,
 * no library, no daemon): the entry carries the message header. It
 * separates the queue's own cost from the buffer management around it. */
#ifndef MBQ_BENCH_TX_MBQ_H
#define MBQ_BENCH_TX_MBQ_H

#include "transports.h"

#include "bq.h"
#include "futex.h"

#include <mbq/mbq.h>
#include <poll.h>

static char mbq_socket_path[512]; /* the harness's mbqd */

static mbq_client *mbq_cli;
static pid_t mbq_cli_pid;
static pid_t mbq_creator_pid;
static int mbq_prepared; /* channels prepared and not yet unprepared */

/* What the measuring process created (struct tx_spec.priv). */
struct mbq_created {
    mbq_pool *pool;
    mbq_buffer_queue *q[TX_MAX_FAN];
};

struct mbq_end {
    struct tx_spec *s;
    mbq_pool *pool;
    mbq_buffer_queue *q[TX_MAX_FAN];
    unsigned n;
    mbq_buffer cur;
    int trigger_fd;
    mbq_trigger_token token;
    /* TXV_MBQ_BATCH16: the producer's buffers not yet enqueued, the
     * consumer's burst not yet handed out and its buffers not yet released */
    mbq_buffer pend[16], burst[16], rel[16];
    unsigned npend, nburst, iburst, nrel;
    /* TXV_MBQ_BATCH16, producer: buffers allocated 16 at a time, not yet
     * loaned */
    mbq_buffer stash[16];
    unsigned nstash, istash;
};

static void mbq_obj_name(char *buf, size_t len, const struct tx_spec *s, const char *what)
{
    snprintf(buf, len, "bench/%s/%s", s->name, what);
}

static int mbq_ensure_client(void)
{
    if (mbq_cli && mbq_cli_pid == getpid())
        return 0;
    /* A client inherited through fork belongs to the parent: leave it. */
    mbq_cli = NULL;
    int r = mbq_connect(mbq_socket_path, "bench_transports", &mbq_cli);
    if (r < 0)
        return r;
    mbq_cli_pid = getpid();
    return 0;
}

static int mbq_prepare(struct tx_spec *s)
{
    int r = mbq_ensure_client();
    if (r < 0)
        return r;
    mbq_creator_pid = getpid();
    struct mbq_created *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    s->priv = c;
    mbq_prepared++;
    char name[128];
    mbq_pool_options po = {.size = sizeof(po),
                           .block_size = s->variant == TXV_MBQ_SMALL
                                             ? s->payload
                                             : (s->payload + 4095) & ~(size_t)4095,
                           .block_count = s->depth + 16,
                           .exclusive = true};
    if (s->variant == TXV_MBQ_CLASSES) {
        /* the payload's class first (the one this stream uses), then two
         * larger ones it never touches */
        po.block_size = 0;
        po.block_count = 0;
        po.class_count = 3;
        po.classes[0] = (mbq_pool_class){s->payload, s->depth + 16};
        po.classes[1] = (mbq_pool_class){4096 > s->payload ? 4096 : 2 * s->payload, 16};
        po.classes[2] = (mbq_pool_class){65536 > 2 * s->payload ? 65536 : 4 * s->payload, 8};
    }
    mbq_obj_name(name, sizeof(name), s, "pool");
    r = mbq_pool_create(mbq_cli, name, &po, &c->pool);
    if (r < 0)
        return r;
    mbq_buffer_queue_options qo = {.size = sizeof(qo), .capacity = s->depth, .exclusive = true};
    if (txv_sorted(s->variant))
        qo.order = MBQ_ORDER_PRESENTATION_TIME;
    for (unsigned i = 0; i < s->fan; i++) {
        char q[16];
        snprintf(q, sizeof(q), "q%u", i);
        mbq_obj_name(name, sizeof(name), s, q);
        r = mbq_buffer_queue_create(mbq_cli, name, &qo, &c->q[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

static void mbq_unprepare(struct tx_spec *s)
{
    struct mbq_created *c = s->priv;
    if (!c)
        return;
    char name[128];
    for (unsigned i = 0; i < s->fan; i++) {
        if (c->q[i])
            mbq_buffer_queue_close(c->q[i]);
        char q[16];
        snprintf(q, sizeof(q), "q%u", i);
        mbq_obj_name(name, sizeof(name), s, q);
        if (mbq_cli)
            mbq_unlink(mbq_cli, name);
    }
    if (c->pool)
        mbq_pool_close(c->pool);
    mbq_obj_name(name, sizeof(name), s, "pool");
    if (mbq_cli)
        mbq_unlink(mbq_cli, name);
    free(c);
    s->priv = NULL;
    if (--mbq_prepared == 0 && mbq_cli) {
        mbq_disconnect(mbq_cli);
        mbq_cli = NULL;
    }
}

static int mbq_proc_init(struct tx_spec *s)
{
    (void)s;
    return mbq_ensure_client();
}

static void mbq_proc_fini(void)
{
    /* The measuring process keeps its client for unprepare. */
    if (mbq_cli && mbq_cli_pid == getpid() && getpid() != mbq_creator_pid) {
        mbq_disconnect(mbq_cli);
        mbq_cli = NULL;
    }
}

static int mbq_open_end(struct tx_spec *s, bool tx, unsigned which, void **out)
{
    struct mbq_end *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->s = s;
    e->trigger_fd = -1;
    char name[128];
    mbq_obj_name(name, sizeof(name), s, "pool");
    int r = mbq_pool_open(mbq_cli, name, &e->pool);
    unsigned first = tx ? 0 : which, last = tx ? s->fan : which + 1;
    for (unsigned i = first; r == 0 && i < last; i++) {
        char q[16];
        snprintf(q, sizeof(q), "q%u", i);
        mbq_obj_name(name, sizeof(name), s, q);
        r = mbq_buffer_queue_open(mbq_cli, name, &e->q[e->n]);
        if (r == 0)
            e->n++;
    }
    if (r == 0 && !tx && s->variant == TXV_MBQ_TRIGGER) {
        r = mbq_buffer_queue_install_trigger_with_integer_threshold(
            e->q[0], MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 0, &e->token);
        if (r == 0) {
            e->trigger_fd = mbq_buffer_queue_trigger_fd(e->q[0], e->token);
            if (e->trigger_fd < 0)
                r = -EBADF;
        }
    }
    if (r == 0 && !tx && s->variant == TXV_MBQ_TRIGGER_IDLE) {
        /* What an installed trigger costs every enqueue and dequeue: a
         * level the queue never reaches, so it never fires. */
        r = mbq_buffer_queue_install_trigger_with_integer_threshold(
            e->q[0], MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 1000000, &e->token);
    }
    if (r < 0) {
        for (unsigned i = 0; i < e->n; i++)
            mbq_buffer_queue_close(e->q[i]);
        if (e->pool)
            mbq_pool_close(e->pool);
        free(e);
        return r;
    }
    *out = e;
    return 0;
}

static int mbq_open_tx(struct tx_spec *s, void **out)
{
    return mbq_open_end(s, true, 0, out);
}

static int mbq_open_rx(struct tx_spec *s, unsigned which, void **out)
{
    return mbq_open_end(s, false, which, out);
}

/* The producer learns the trigger eventfds consumers installed (the daemon
 * pushes them on the control socket); it would also on its next enqueue. */
static int mbq_connected(void *tx)
{
    (void)tx;
    mbq_client_dispatch(mbq_cli);
    return 1;
}

static int mbq_b16_flush(struct mbq_end *e);

static void mbq_close(void *p)
{
    struct mbq_end *e = p;
    if (e->npend) /* the producer's last batch */
        (void)mbq_b16_flush(e);
    if (e->iburst < e->nburst) /* a consumer's burst not handed out */
        mbq_buffer_release_many(e->burst + e->iburst, e->nburst - e->iburst);
    if (e->nrel)
        mbq_buffer_release_many(e->rel, e->nrel);
    if (e->istash < e->nstash) /* allocated, never loaned */
        mbq_buffer_release_many(e->stash + e->istash, e->nstash - e->istash);
    for (unsigned i = 0; i < e->n; i++)
        mbq_buffer_queue_close(e->q[i]);
    mbq_pool_close(e->pool);
    free(e);
}

/* TXV_MBQ_BATCH16, producer: the held-back buffers into the queue in one
 * call (what does not fit is retried as the consumer makes room). */
static int mbq_b16_flush(struct mbq_end *e)
{
    unsigned sent = 0;
    for (unsigned k = 0; sent < e->npend; k++) {
        size_t done = 0;
        int r = mbq_buffer_queue_enqueue_and_release_many(e->q[0], e->pend + sent,
                                                          e->npend - sent, &done);
        sent += (unsigned)done;
        if (r == 0)
            break;
        if (r != MBQ_BQ_ERR_QUEUE_IS_FULL) {
            mbq_buffer_release_many(e->pend + sent, e->npend - sent);
            e->npend = 0;
            return r;
        }
        if (k < 1000)
            cpu_relax();
        else
            sched_yield();
    }
    e->npend = 0;
    return 0;
}

static void *mbq_loan(void *tx, int *err)
{
    struct mbq_end *e = tx;
    if (e->s->wait == TX_BLOCK) { /* back-pressure: sleep until a block is freed */
        int r = mbq_pool_allocate_wait(e->pool, e->s->payload, -1, &e->cur);
        if (r != 0) {
            *err = r;
            return NULL;
        }
        return mbq_buffer_get_data(e->cur, NULL);
    }
    for (unsigned i = 0;; i++) {
        int r = MBQ_POOL_ERR_ALLOCATION_FAILED;
        if (e->s->variant == TXV_MBQ_BATCH16) { /* 16 allocated in one call */
            if (e->istash == e->nstash) {
                r = mbq_pool_allocate_many(e->pool, e->s->payload, e->stash, 16);
                e->istash = 0;
                e->nstash = r > 0 ? (unsigned)r : 0;
            }
            if (e->istash < e->nstash) {
                e->cur = e->stash[e->istash++];
                break;
            }
        } else {
            r = mbq_pool_allocate(e->pool, e->s->payload, &e->cur);
            if (r == 0)
                break;
        }
        if (r != MBQ_POOL_ERR_ALLOCATION_FAILED) {
            *err = r;
            return NULL;
        }
        if (e->npend) { /* what this batch holds back may be what the consumer waits for */
            r = mbq_b16_flush(e);
            if (r != 0) {
                *err = r;
                return NULL;
            }
        }
        if (i < 1000)
            cpu_relax();
        else
            sched_yield(); /* every block is in flight: the consumer must run */
    }
    return mbq_buffer_get_data(e->cur, NULL);
}

/* The PTS of message seq in each input mix of a sorted queue: in order;
 * B-frame order (0 3 1 2 per group of four: one in four below its
 * predecessor); late16 (... 11 13 14 15 12 per group of sixteen: one in
 * sixteen late by three frames); random (a hash of seq: no order left to
 * exploit). */
static inline int64_t mbq_bench_pts(int variant, uint64_t seq)
{
    static const int64_t bframes[4] = {0, 3, 1, 2};
    static const int64_t late16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 12};
    switch (variant) {
    case TXV_MBQ_PTS_REORDER: return (int64_t)((seq & ~3ull) + (uint64_t)bframes[seq & 3]);
    case TXV_MBQ_PTS_LATE16: return (int64_t)((seq & ~15ull) + (uint64_t)late16[seq & 15]);
    case TXV_MBQ_PTS_RANDOM: {
        uint64_t z = seq + 0x9e3779b97f4a7c15ull; /* splitmix64's finaliser */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return (int64_t)((z ^ (z >> 31)) >> 2);
    }
    default: return (int64_t)seq;
    }
}

static int mbq_send(void *tx, void *payload, uint64_t seq)
{
    struct mbq_end *e = tx;
    (void)payload;
    int r = mbq_buffer_set_timing(e->cur, (mbq_time){(int64_t)seq, 90000, MBQ_TIME_FLAG_VALID, 0},
                                  (mbq_time){mbq_bench_pts(e->s->variant, seq), 90000,
                                             MBQ_TIME_FLAG_VALID, 0},
                                  (mbq_time){3000, 90000, MBQ_TIME_FLAG_VALID, 0});
    if (r == 0 && e->s->variant == TXV_MBQ_BATCH16) {
        e->pend[e->npend++] = e->cur;
        return e->npend == 16 ? mbq_b16_flush(e) : 0;
    }
    /* Every queue but the last takes its own reference; the last takes
     * over ours (enqueue + release in one step). */
    for (unsigned i = 0; r == 0 && i < e->n; i++) {
        bool last = i + 1 == e->n;
        if (e->s->wait == TX_BLOCK) { /* back-pressure: sleep until the queue has room */
            r = last ? mbq_buffer_queue_enqueue_and_release_wait(e->q[i], e->cur, -1)
                     : mbq_buffer_queue_enqueue_wait(e->q[i], e->cur, -1);
            continue;
        }
        for (unsigned k = 0; (r = last ? mbq_buffer_queue_enqueue_and_release(e->q[i], e->cur)
                                       : mbq_buffer_queue_enqueue(e->q[i], e->cur)) ==
                             MBQ_BQ_ERR_QUEUE_IS_FULL;
             k++) {
            if (k < 1000)
                cpu_relax();
            else
                sched_yield();
        }
    }
    if (r != 0)
        mbq_buffer_release(e->cur);
    return r;
}

static const void *mbq_recv(void *rx, int *err)
{
    struct mbq_end *e = rx;
    int r;
    if (e->s->variant == TXV_MBQ_BATCH16) {
        if (e->iburst == e->nburst) {
            /* before it would poll an empty queue, as the floor's batch form */
            if (e->nrel)
                mbq_buffer_release_many(e->rel, e->nrel);
            e->nrel = 0;
            int n = mbq_buffer_queue_dequeue_many(e->q[0], e->burst, 16);
            e->iburst = 0;
            e->nburst = n > 0 ? (unsigned)n : 0;
            if (n <= 0) {
                *err = n < 0 ? n : -EAGAIN;
                return NULL;
            }
        }
        e->cur = e->burst[e->iburst++];
        return mbq_buffer_get_data(e->cur, NULL);
    }
    if (e->s->wait == TX_POLL) {
        r = mbq_buffer_queue_dequeue_and_retain(e->q[0], &e->cur);
    } else if (e->trigger_fd < 0) {
        r = mbq_buffer_queue_dequeue_wait(e->q[0], -1, &e->cur);
    } else {
        while ((r = mbq_buffer_queue_dequeue_and_retain(e->q[0], &e->cur)) == -EAGAIN) {
            /* asleep in the kernel until the trigger's eventfd is written */
            struct pollfd pfd = {.fd = e->trigger_fd, .events = POLLIN};
            int n = poll(&pfd, 1, 5000);
            if (n == 0) {
                *err = -ETIMEDOUT; /* the trigger never fired */
                return NULL;
            }
            uint64_t v;
            if (n > 0 && read(e->trigger_fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
                *err = -errno;
                return NULL;
            }
        }
    }
    if (r != 0) {
        *err = r;
        return NULL;
    }
    return mbq_buffer_get_data(e->cur, NULL);
}

static void mbq_done(void *rx, const void *payload)
{
    struct mbq_end *e = rx;
    (void)payload;
    if (e->s->variant == TXV_MBQ_BATCH16) {
        e->rel[e->nrel++] = e->cur;
        if (e->nrel == 16) {
            mbq_buffer_release_many(e->rel, e->nrel);
            e->nrel = 0;
        }
        return;
    }
    mbq_buffer_release(e->cur);
}

static const struct tx_ops tx_mbq = {
    .name = "mbq",
    .prepare = mbq_prepare,
    .unprepare = mbq_unprepare,
    .proc_init = mbq_proc_init,
    .proc_fini = mbq_proc_fini,
    .open_tx = mbq_open_tx,
    .open_rx = mbq_open_rx,
    .connected = mbq_connected,
    .close_tx = mbq_close,
    .close_rx = mbq_close,
    .loan = mbq_loan,
    .send = mbq_send,
    .recv = mbq_recv,
    .done = mbq_done,
};

/* ---- the buffer queue alone (internal shm/ API) ---- */


struct bqx_end {
    struct tx_spec *s;
    struct bq *q[TX_MAX_FAN];
    unsigned n;
    uint64_t buf[PAYLOAD_HEADER_WORDS];
};

static int bqx_prepare(struct tx_spec *s)
{
    if (s->payload != 64)
        return -ENOTSUP;
    uint32_t order = txv_sorted(s->variant) ? BQ_ORDER_PTS : BQ_ORDER_FIFO;
    /* each process works on its own copy of these (fork) */
    struct bq *q = calloc(TX_MAX_FAN, sizeof(*q));
    if (!q)
        return -ENOMEM;
    s->priv = q;
    for (unsigned i = 0; i < s->fan; i++) {
        int r = bq_create(&(struct bq_params){.capacity = s->depth, .order = order}, &q[i]);
        if (r != 0)
            return r < 0 ? r : -ENOMEM;
    }
    return 0;
}

static void bqx_unprepare(struct tx_spec *s)
{
    struct bq *q = s->priv;
    if (q) {
        for (unsigned i = 0; i < s->fan; i++)
            if (q[i].sh)
                bq_detach(&q[i]);
        free(q);
    }
    s->priv = NULL;
}

static int bqx_open(struct tx_spec *s, bool tx, unsigned which, void **out)
{
    struct bqx_end *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->s = s;
    struct bq *q = s->priv;
    if (tx) {
        for (unsigned i = 0; i < s->fan; i++)
            e->q[e->n++] = &q[i];
    } else {
        e->q[e->n++] = &q[which];
    }
    *out = e;
    return 0;
}

static int bqx_open_tx(struct tx_spec *s, void **out)
{
    return bqx_open(s, true, 0, out);
}

static int bqx_open_rx(struct tx_spec *s, unsigned which, void **out)
{
    return bqx_open(s, false, which, out);
}

static void *bqx_loan(void *tx, int *err)
{
    struct bqx_end *e = tx;
    (void)err;
    return e->buf;
}

static int bqx_send(void *tx, void *payload, uint64_t seq)
{
    struct bqx_end *e = tx;
    const uint64_t *w = payload;
    struct bq_entry ent = {
        .handle = w[0] + 1,
        .dts = {(int64_t)seq, 90000, MBQ_TIME_FLAG_VALID, 0},
        .pts = {mbq_bench_pts(e->s->variant, seq), 90000, MBQ_TIME_FLAG_VALID, 0},
        .duration = {3000, 90000, MBQ_TIME_FLAG_VALID, 0},
        /* the header's last word, in a field the queue only sums (the
         * attachments would make the entry a wide one: see bq_slot) */
        .size = w[PAYLOAD_HEADER_WORDS - 1],
    };
    for (unsigned i = 0; i < e->n; i++) {
        int r;
        if (e->s->wait == TX_BLOCK)
            r = bq_enqueue_wait(e->q[i], &ent, -1);
        else
            while ((r = bq_enqueue(e->q[i], &ent)) == MBQ_BQ_ERR_QUEUE_IS_FULL)
                cpu_relax();
        if (r != 0)
            return r;
    }
    return 0;
}

static const void *bqx_recv(void *rx, int *err)
{
    struct bqx_end *e = rx;
    struct bq_entry ent;
    int r = e->s->wait == TX_POLL ? bq_dequeue(e->q[0], &ent) : bq_dequeue_wait(e->q[0], &ent, -1);
    if (r != 0) {
        *err = r;
        return NULL;
    }
    /* the header as the producer wrote it: seq in the handle, the last
     * word in the size, the words between implied */
    uint64_t seq = ent.handle - 1;
    for (unsigned k = 0; k < PAYLOAD_HEADER_WORDS - 1; k++)
        e->buf[k] = seq + k;
    e->buf[PAYLOAD_HEADER_WORDS - 1] = ent.size;
    return e->buf;
}

static void bqx_done(void *rx, const void *payload)
{
    (void)rx;
    (void)payload;
}

static void bqx_close(void *p)
{
    free(p);
}

static const struct tx_ops tx_bq = {
    .name = "mbq-bq",
    .prepare = bqx_prepare,
    .unprepare = bqx_unprepare,
    .proc_init = tx_noop_init,
    .proc_fini = tx_noop_fini,
    .open_tx = bqx_open_tx,
    .open_rx = bqx_open_rx,
    .close_tx = bqx_close,
    .close_rx = bqx_close,
    .loan = bqx_loan,
    .send = bqx_send,
    .recv = bqx_recv,
    .done = bqx_done,
};

#endif
