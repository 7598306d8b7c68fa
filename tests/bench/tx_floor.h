/* The zero-copy floor: the least a queue of refcounted pool buffers can do.
 *
 * The raw ring (tx_ring.h) writes the message into the queue's slot, so one
 * cache line crosses per message. A zero-copy design cannot: its queue
 * carries a block's index, the payload lives in the block, and a reference
 * word says when the block is free again. This transport is that design with
 * nothing else, written without checks, and it is the floor mbq's public
 * path is held to:
 *
 *   - per channel, a shared array of blocks; each block's first cache line
 *     holds its atomic reference word, the payload follows on its own lines;
 *   - per consumer, an SPSC ring of 32-bit block indices (producer ->
 *     consumer) and a return ring of free indices (consumer -> producer),
 *     each with monotonic head and tail counters on their own line pairs and
 *     each side caching the other's counter, reloaded only when its copy says
 *     full or empty;
 *   - producer: take a free index from a return ring, store the reference
 *     word (the block is exclusively its own, so a plain store, no
 *     read-modify-write), write the payload, put the index into every
 *     consumer's ring and publish each ring's tail;
 *   - consumer: take the index, read the payload, drop its reference with
 *     an atomic decrement; the last one puts the index into its return ring
 *     and publishes that ring's tail;
 *   - page tables populated in each process (MADV_POPULATE_WRITE when it
 *     opens the channel), as mbq's clients do with their segments.
 *
 * A process that frees a block hands it straight back: the per-process cache
 * a real pool keeps (mbq's holds up to 16 blocks) is the return ring's cached
 * tail here, since in these cases only the producer of a channel allocates.
 *
 * Variant TXV_FLOOR_BATCH16 publishes in batches of 16: the producer stores a
 * ring's tail every 16th message and the consumer stores the ring's head and
 * the return ring's tail every 16th, each also before it would wait (the
 * producer when no block is free or a ring is full, the consumer when its
 * ring looks empty) and the producer at close; so nothing waits on a batch
 * that its peer is holding back. Streaming cases only: in a round trip, a
 * batch of one message never fills.
 *
 * Blocking (TX_BLOCK), as the raw ring's "ring+futex": the consumer spins
 * ~25 us, flags itself asleep and FUTEX_WAITs; the producer wakes only a
 * flagged sleeper. The spin adapts as mbq's dequeue_wait does (after 8 waits
 * whose spin found nothing, it sleeps at once and tries the spin again every
 * 16th wait), so that a consumer sharing its producer's CPU does not burn
 * its window each time. A producer that finds no block or a full ring
 * yields. */
#ifndef MBQ_BENCH_TX_FLOOR_H
#define MBQ_BENCH_TX_FLOOR_H

#include "transports.h"

#include "futex.h"

#include <sys/mman.h>

#define TXV_FLOOR_BATCH16 20
#define FLOOR_BATCH 16u

struct floor_ring {
    _Alignas(128) _Atomic uint64_t tail;
    _Alignas(128) _Atomic uint64_t head;
    _Alignas(128) _Atomic uint32_t sleeping; /* the reader is (about to be) asleep */
    _Atomic uint32_t wake_word;
    _Alignas(128) _Atomic uint32_t idx[]; /* mask + 1 of them */
};

struct floor_shared {
    uint32_t nq, slots, mask;      /* queue rings */
    uint32_t nblocks, rslots, rmask; /* return rings */
    size_t qring_bytes, rring_bytes, block_size;
    int variant, wait;
    size_t blocks_off; /* from the start of this struct */
    _Alignas(128) uint8_t rings[]; /* nq queue rings, nq return rings, then the blocks */
};

struct floor_end {
    struct floor_shared *sh;
    unsigned n, first; /* rings this end uses: [first, first + n) */
    bool batch, block;
    /* producer: its own tails, the cached heads of the queue rings, the
     * return rings' heads and cached tails; consumer: its head and cached
     * tail, its return ring's tail and cached head (never full: the return
     * ring holds every block) */
    uint64_t qtail[TX_MAX_FAN], qhead_c[TX_MAX_FAN];
    uint64_t rhead[TX_MAX_FAN], rtail_c[TX_MAX_FAN];
    uint64_t qhead, qtail_c, rtail;
    uint64_t qhead_pub, rtail_pub; /* the consumer's last published values */
    uint64_t qtail_pub[TX_MAX_FAN]; /* the producer's last published tails */
    unsigned next_r;                /* the return ring to look at first */
    uint32_t cur;                   /* the loaned (producer) or received (consumer) block */
    unsigned spin_misses, spin_tries;
};

static inline struct floor_ring *floor_q(struct floor_shared *sh, unsigned i)
{
    return (struct floor_ring *)(sh->rings + (size_t)i * sh->qring_bytes);
}

static inline struct floor_ring *floor_r(struct floor_shared *sh, unsigned i)
{
    return (struct floor_ring *)(sh->rings + (size_t)sh->nq * sh->qring_bytes +
                                 (size_t)i * sh->rring_bytes);
}

static inline uint8_t *floor_block(struct floor_shared *sh, uint32_t b)
{
    return (uint8_t *)sh + sh->blocks_off + (size_t)b * sh->block_size;
}

static inline _Atomic uint32_t *floor_ref(struct floor_shared *sh, uint32_t b)
{
    return (_Atomic uint32_t *)floor_block(sh, b);
}

static inline void *floor_payload(struct floor_shared *sh, uint32_t b)
{
    return floor_block(sh, b) + 64;
}

static int floor_prepare(struct tx_spec *s)
{
    uint32_t slots = 1;
    while (slots < s->depth)
        slots <<= 1;
    size_t block_size = 64 + ((s->payload + 63) & ~(size_t)63);
    /* A batch held back on each side, plus one block in each side's hands. */
    uint32_t nblocks = slots + 2 + (s->variant == TXV_FLOOR_BATCH16 ? 2 * FLOOR_BATCH : 0);
    uint32_t rslots = 1;
    while (rslots < nblocks)
        rslots <<= 1;
    size_t qring_bytes = (sizeof(struct floor_ring) + (size_t)slots * 4 + 127) & ~(size_t)127;
    size_t rring_bytes = (sizeof(struct floor_ring) + (size_t)rslots * 4 + 127) & ~(size_t)127;
    size_t blocks_off = (sizeof(struct floor_shared) + s->fan * (qring_bytes + rring_bytes) + 4095) &
                        ~(size_t)4095;
    size_t total = (blocks_off + (size_t)nblocks * block_size + 4095) & ~(size_t)4095;
    struct floor_shared *sh = tx_shared_alloc(s, total);
    if (!sh)
        return -ENOMEM;
    sh->nq = s->fan;
    sh->slots = slots;
    sh->mask = slots - 1;
    sh->nblocks = nblocks;
    sh->rslots = rslots;
    sh->rmask = rslots - 1;
    sh->qring_bytes = qring_bytes;
    sh->rring_bytes = rring_bytes;
    sh->block_size = block_size;
    sh->variant = s->variant;
    sh->wait = s->wait;
    sh->blocks_off = blocks_off;
    /* Every block starts free, in consumer 0's return ring. */
    struct floor_ring *r0 = floor_r(sh, 0);
    for (uint32_t b = 0; b < nblocks; b++)
        atomic_store_explicit(&r0->idx[b], b, memory_order_relaxed);
    atomic_store(&r0->tail, nblocks);
    return 0;
}

static void floor_unprepare(struct tx_spec *s)
{
    tx_shared_free(s);
}

static struct floor_end *floor_end_new(struct tx_spec *s)
{
    struct floor_end *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->sh = s->shared;
    e->batch = e->sh->variant == TXV_FLOOR_BATCH16;
    e->block = e->sh->wait == TX_BLOCK;
#ifdef MADV_POPULATE_WRITE
    /* The page tables of this process, not only the pages: a shared mapping
     * inherited through fork starts with none. */
    (void)madvise(s->shared, s->shared_size, MADV_POPULATE_WRITE);
#endif
    return e;
}

static int floor_open_tx(struct tx_spec *s, void **out)
{
    struct floor_end *e = floor_end_new(s);
    if (!e)
        return -ENOMEM;
    e->n = e->sh->nq;
    e->first = 0;
    for (unsigned i = 0; i < e->n; i++) {
        e->qtail[i] = e->qtail_pub[i] = atomic_load(&floor_q(e->sh, i)->tail);
        e->qhead_c[i] = atomic_load(&floor_q(e->sh, i)->head);
        e->rhead[i] = atomic_load(&floor_r(e->sh, i)->head);
        e->rtail_c[i] = atomic_load(&floor_r(e->sh, i)->tail);
    }
    *out = e;
    return 0;
}

static int floor_open_rx(struct tx_spec *s, unsigned which, void **out)
{
    struct floor_end *e = floor_end_new(s);
    if (!e)
        return -ENOMEM;
    e->n = 1;
    e->first = which;
    e->qhead = e->qhead_pub = atomic_load(&floor_q(e->sh, which)->head);
    e->qtail_c = atomic_load(&floor_q(e->sh, which)->tail);
    e->rtail = e->rtail_pub = atomic_load(&floor_r(e->sh, which)->tail);
    *out = e;
    return 0;
}

static inline void floor_wake(struct floor_ring *r)
{
    /* seq_cst tail store (the caller's), then this seq_cst load of the flag,
     * against the sleeper's seq_cst flag store, then its load of the tail */
    if (atomic_load(&r->sleeping)) {
        atomic_fetch_add(&r->wake_word, 1);
        futex_wake(&r->wake_word, 1);
    }
}

/* Producer: publish the queue rings' tails held back by a batch. */
static void floor_tx_flush(struct floor_end *e)
{
    for (unsigned i = 0; i < e->n; i++) {
        if (e->qtail_pub[i] == e->qtail[i])
            continue;
        e->qtail_pub[i] = e->qtail[i];
        struct floor_ring *q = floor_q(e->sh, i);
        if (e->block) {
            atomic_store(&q->tail, e->qtail[i]);
            floor_wake(q);
        } else {
            atomic_store_explicit(&q->tail, e->qtail[i], memory_order_release);
        }
    }
}

/* Consumer: publish the queue ring's head and the return ring's tail. */
static void floor_rx_flush(struct floor_end *e)
{
    if (e->rtail_pub != e->rtail) {
        e->rtail_pub = e->rtail;
        atomic_store_explicit(&floor_r(e->sh, e->first)->tail, e->rtail, memory_order_release);
    }
    if (e->qhead_pub != e->qhead) {
        e->qhead_pub = e->qhead;
        atomic_store_explicit(&floor_q(e->sh, e->first)->head, e->qhead, memory_order_release);
    }
}

static void floor_close_tx(void *p)
{
    struct floor_end *e = p;
    floor_tx_flush(e);
    free(e);
}

static void floor_close_rx(void *p)
{
    struct floor_end *e = p;
    floor_rx_flush(e);
    free(e);
}

static inline void floor_pause(struct floor_end *e)
{
    if (e->block)
        sched_yield();
    else
        cpu_relax();
}

static void *floor_loan(void *tx, int *err)
{
    struct floor_end *e = tx;
    struct floor_shared *sh = e->sh;
    (void)err;
    /* a free block: the first return ring with one, from where it last found one */
    for (unsigned k = 0;; k++) {
        unsigned i = e->next_r;
        if (e->rhead[i] == e->rtail_c[i])
            e->rtail_c[i] = atomic_load_explicit(&floor_r(sh, i)->tail, memory_order_acquire);
        if (e->rhead[i] != e->rtail_c[i]) {
            struct floor_ring *r = floor_r(sh, i);
            e->cur = atomic_load_explicit(&r->idx[e->rhead[i] & sh->rmask], memory_order_relaxed);
            /* the return ring has a slot for every block, so it never fills
             * and no one reads its head: the producer keeps it to itself */
            e->rhead[i]++;
            break;
        }
        e->next_r = (i + 1) % e->n;
        if (k % e->n == e->n - 1) {
            if (e->batch)
                floor_tx_flush(e);
            floor_pause(e);
        }
    }
    atomic_store_explicit(floor_ref(sh, e->cur), e->n, memory_order_relaxed);
    return floor_payload(sh, e->cur);
}

static int floor_send(void *tx, void *payload, uint64_t seq)
{
    struct floor_end *e = tx;
    struct floor_shared *sh = e->sh;
    (void)payload;
    (void)seq;
    for (unsigned i = 0; i < e->n; i++) {
        struct floor_ring *q = floor_q(sh, i);
        while (e->qtail[i] - e->qhead_c[i] == sh->slots) {
            e->qhead_c[i] = atomic_load_explicit(&q->head, memory_order_acquire);
            if (e->qtail[i] - e->qhead_c[i] != sh->slots)
                break;
            if (e->batch)
                floor_tx_flush(e);
            floor_pause(e);
        }
        atomic_store_explicit(&q->idx[e->qtail[i] & sh->mask], e->cur, memory_order_relaxed);
        e->qtail[i]++;
    }
    if (!e->batch || (e->qtail[0] & (FLOOR_BATCH - 1)) == 0)
        floor_tx_flush(e);
    return 0;
}

static inline bool floor_has(struct floor_end *e, struct floor_ring *q)
{
    if (e->qhead != e->qtail_c)
        return true;
    e->qtail_c = atomic_load_explicit(&q->tail, memory_order_acquire);
    return e->qhead != e->qtail_c;
}

static inline const void *floor_take(struct floor_end *e, struct floor_ring *q)
{
    e->cur = atomic_load_explicit(&q->idx[e->qhead & e->sh->mask], memory_order_relaxed);
    return floor_payload(e->sh, e->cur);
}

static const void *floor_recv(void *rx, int *err)
{
    struct floor_end *e = rx;
    struct floor_ring *q = floor_q(e->sh, e->first);
    if (floor_has(e, q))
        return floor_take(e, q);
    if (e->batch)
        floor_rx_flush(e);
    if (!e->block) {
        *err = -EAGAIN;
        return NULL;
    }
    bool spin = e->spin_misses < 8 || ++e->spin_tries % 16 == 0;
    if (spin) {
        uint64_t t0 = bench_ticks();
        double per = bench_ns_per_tick();
        for (unsigned i = 0;; i++) {
            if (floor_has(e, q)) {
                e->spin_misses = 0;
                return floor_take(e, q);
            }
            cpu_relax();
            if ((i & 63) == 63 && (double)(bench_ticks() - t0) * per >= TX_SPIN_NS)
                break;
        }
        e->spin_misses++;
    }
    for (;;) {
        uint32_t w = atomic_load(&q->wake_word);
        atomic_store(&q->sleeping, 1);
        if (floor_has(e, q)) {
            atomic_store_explicit(&q->sleeping, 0, memory_order_relaxed);
            return floor_take(e, q);
        }
        futex_wait(&q->wake_word, w, NULL);
        atomic_store_explicit(&q->sleeping, 0, memory_order_relaxed);
    }
}

static void floor_done(void *rx, const void *payload)
{
    struct floor_end *e = rx;
    struct floor_shared *sh = e->sh;
    (void)payload;
    e->qhead++;
    if (atomic_fetch_sub_explicit(floor_ref(sh, e->cur), 1, memory_order_acq_rel) == 1) {
        struct floor_ring *r = floor_r(sh, e->first);
        atomic_store_explicit(&r->idx[e->rtail & sh->rmask], e->cur, memory_order_relaxed);
        e->rtail++;
    }
    if (!e->batch || (e->qhead & (FLOOR_BATCH - 1)) == 0)
        floor_rx_flush(e);
}

static const struct tx_ops tx_floor = {
    .name = "floor",
    .prepare = floor_prepare,
    .unprepare = floor_unprepare,
    .proc_init = tx_noop_init,
    .proc_fini = tx_noop_fini,
    .open_tx = floor_open_tx,
    .open_rx = floor_open_rx,
    .close_tx = floor_close_tx,
    .close_rx = floor_close_rx,
    .loan = floor_loan,
    .send = floor_send,
    .recv = floor_recv,
    .done = floor_done,
};

#endif
