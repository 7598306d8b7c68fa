/* The raw shared-memory ring: the limit every other transport is held to.
 *
 * A lock-free single-producer/single-consumer ring per consumer in an
 * anonymous shared mapping, with monotonic 64-bit tail and head counters on
 * their own cache-line pairs; each side caches the other's counter and
 * reloads it only when the ring looks full (producer) or empty (consumer),
 * as in reference/ipc-limits-measured.md and bench_dataplane. The message is
 * written in place in its slot (zero copy); a slot is the payload size. With
 * two consumers the producer writes into ring 0's slot and copies it into
 * ring 1's (a raw ring has nothing better).
 *
 * Blocking (TX_BLOCK): the consumer flags itself asleep before it sleeps
 * and the producer enters the kernel only when the flag is set. Variants:
 * spin ~25 us then FUTEX_WAIT (the raw form of mbq's strategy), FUTEX_WAIT
 * at once, or read() on an eventfd at once. */
#ifndef MBQ_BENCH_TX_RING_H
#define MBQ_BENCH_TX_RING_H

#include "transports.h"

#include "futex.h"

#include <sys/eventfd.h>

#define RING_MAX_BYTES (256u << 20) /* slots per ring: depth capped to this */

struct ring_ctl {
    _Alignas(128) _Atomic uint64_t tail;
    _Alignas(128) _Atomic uint64_t head;
    _Alignas(128) _Atomic uint32_t sleeping; /* the consumer is (about to be) asleep */
    _Atomic uint32_t wake_word;              /* futex word, bumped per wake */
    int efd;
    _Alignas(128) uint8_t slots[];
};

struct ring_shared {
    uint32_t nrings, slots, mask;
    size_t slot_size, ring_bytes;
    int variant, wait;
    _Alignas(128) uint8_t rings[];
};

struct ring_end {
    struct ring_shared *sh;
    struct ring_ctl *r[TX_MAX_FAN];
    unsigned n;
    uint64_t pos, peer[TX_MAX_FAN];
    void *loaned;
};

static inline struct ring_ctl *ring_at(struct ring_shared *sh, unsigned i)
{
    return (struct ring_ctl *)(sh->rings + (size_t)i * sh->ring_bytes);
}

static int ring_prepare(struct tx_spec *s)
{
    uint32_t slots = 1;
    while (slots < s->depth)
        slots <<= 1;
    size_t slot_size = (s->payload + 63) & ~(size_t)63;
    while (slots > 2 && (size_t)slots * slot_size > RING_MAX_BYTES)
        slots >>= 1;
    if (slots != s->depth)
        tx_note(s, "ring depth %u", slots);
    size_t ring_bytes = (sizeof(struct ring_ctl) + (size_t)slots * slot_size + 4095) & ~(size_t)4095;
    size_t total = sizeof(struct ring_shared) + s->fan * ring_bytes;
    struct ring_shared *sh = tx_shared_alloc(s, (total + 4095) & ~(size_t)4095);
    if (!sh)
        return -ENOMEM;
    sh->nrings = s->fan;
    sh->slots = slots;
    sh->mask = slots - 1;
    sh->slot_size = slot_size;
    sh->ring_bytes = ring_bytes;
    sh->variant = s->variant;
    sh->wait = s->wait;
    for (unsigned i = 0; i < s->fan; i++) {
        ring_at(sh, i)->efd = -1;
        if (s->wait == TX_BLOCK && s->variant == TXV_RING_EVENTFD) {
            ring_at(sh, i)->efd = eventfd(0, EFD_CLOEXEC);
            if (ring_at(sh, i)->efd < 0)
                return -errno;
        }
    }
    return 0;
}

static void ring_unprepare(struct tx_spec *s)
{
    struct ring_shared *sh = s->shared;
    if (sh)
        for (unsigned i = 0; i < sh->nrings; i++)
            if (ring_at(sh, i)->efd >= 0)
                close(ring_at(sh, i)->efd);
    tx_shared_free(s);
}

static int ring_proc_init(struct tx_spec *s)
{
    (void)s;
    return 0;
}

static void ring_proc_fini(void)
{
}

static int ring_open_tx(struct tx_spec *s, void **out)
{
    struct ring_end *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->sh = s->shared;
    e->n = e->sh->nrings;
    for (unsigned i = 0; i < e->n; i++)
        e->r[i] = ring_at(e->sh, i);
    *out = e;
    return 0;
}

static int ring_open_rx(struct tx_spec *s, unsigned which, void **out)
{
    struct ring_end *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->sh = s->shared;
    e->n = 1;
    e->r[0] = ring_at(e->sh, which);
    *out = e;
    return 0;
}

static void ring_close(void *p)
{
    free(p);
}

static inline uint8_t *ring_slot(struct ring_end *e, unsigned i, uint64_t pos)
{
    return e->r[i]->slots + (size_t)(pos & e->sh->mask) * e->sh->slot_size;
}

static void *ring_loan(void *tx, int *err)
{
    struct ring_end *e = tx;
    (void)err;
    for (unsigned i = 0; i < e->n; i++) {
        while (e->pos - e->peer[i] == e->sh->slots) {
            e->peer[i] = atomic_load_explicit(&e->r[i]->head, memory_order_acquire);
            if (e->pos - e->peer[i] != e->sh->slots)
                break;
            /* Full. Blocking: give the CPU away (a consumer on the same
             * CPU runs at once; cheaper than a sleep and a wake, so the
             * raw ring's figure is a bound, not a straw man). */
            if (e->sh->wait == TX_BLOCK)
                sched_yield();
            else
                cpu_relax();
        }
    }
    return ring_slot(e, 0, e->pos);
}

static inline void ring_wake(struct ring_ctl *r, int variant)
{
    /* seq_cst store of tail (by the caller) then seq_cst load of the flag,
     * against the consumer's seq_cst store of the flag then load of tail */
    if (atomic_load(&r->sleeping)) {
        if (variant == TXV_RING_EVENTFD) {
            uint64_t one = 1;
            ssize_t n = write(r->efd, &one, sizeof(one));
            (void)n;
        } else {
            atomic_fetch_add(&r->wake_word, 1);
            futex_wake(&r->wake_word, 1);
        }
    }
}

static int ring_send(void *tx, void *payload, uint64_t seq)
{
    struct ring_end *e = tx;
    (void)seq;
    for (unsigned i = 1; i < e->n; i++)
        memcpy(ring_slot(e, i, e->pos), payload, e->sh->slot_size);
    e->pos++;
    bool blocking = e->sh->wait == TX_BLOCK;
    for (unsigned i = 0; i < e->n; i++) {
        if (blocking) {
            atomic_store(&e->r[i]->tail, e->pos);
            ring_wake(e->r[i], e->sh->variant);
        } else {
            atomic_store_explicit(&e->r[i]->tail, e->pos, memory_order_release);
        }
    }
    return 0;
}

static inline bool ring_has(struct ring_end *e)
{
    if (e->pos != e->peer[0])
        return true;
    e->peer[0] = atomic_load_explicit(&e->r[0]->tail, memory_order_acquire);
    return e->pos != e->peer[0];
}

static const void *ring_recv(void *rx, int *err)
{
    struct ring_end *e = rx;
    if (ring_has(e))
        return ring_slot(e, 0, e->pos);
    if (e->sh->wait != TX_BLOCK) {
        *err = -EAGAIN;
        return NULL;
    }
    struct ring_ctl *r = e->r[0];
    int variant = e->sh->variant;
    if (variant == TXV_RING_FUTEX_SPIN) {
        uint64_t t0 = bench_ticks();
        double per = bench_ns_per_tick();
        for (unsigned i = 0;; i++) {
            if (ring_has(e))
                return ring_slot(e, 0, e->pos);
            cpu_relax();
            if ((i & 63) == 63 && (double)(bench_ticks() - t0) * per >= TX_SPIN_NS)
                break;
        }
    }
    for (;;) {
        uint32_t w = atomic_load(&r->wake_word);
        atomic_store(&r->sleeping, 1);
        if (ring_has(e)) {
            atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
            return ring_slot(e, 0, e->pos);
        }
        if (variant == TXV_RING_EVENTFD) {
            uint64_t v;
            ssize_t n = read(r->efd, &v, sizeof(v));
            if (n < 0 && errno != EINTR) {
                *err = -errno;
                return NULL;
            }
        } else {
            futex_wait(&r->wake_word, w, NULL);
        }
        atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
    }
}

static void ring_done(void *rx, const void *payload)
{
    struct ring_end *e = rx;
    (void)payload;
    atomic_store_explicit(&e->r[0]->head, ++e->pos, memory_order_release);
}

static const struct tx_ops tx_ring = {
    .name = "ring",
    .prepare = ring_prepare,
    .unprepare = ring_unprepare,
    .proc_init = ring_proc_init,
    .proc_fini = ring_proc_fini,
    .open_tx = ring_open_tx,
    .open_rx = ring_open_rx,
    .close_tx = ring_close,
    .close_rx = ring_close,
    .loan = ring_loan,
    .send = ring_send,
    .recv = ring_recv,
    .done = ring_done,
};

#endif
