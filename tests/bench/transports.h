/* The transports that bench_transports compares, behind one small interface.
 *
 * A transport moves messages of a fixed payload size from one producer to
 * one or two consumers ("fan"). Each message is written into memory the
 * transport lends (loan) and handed over (send); a consumer receives a
 * pointer to it (recv) and gives it back (done). For the shared-memory
 * transports the pointer is the message itself (zero copy); for the kernel
 * transports it is a process-local buffer the kernel copied into.
 *
 * Lifecycle, per measurement (one measuring process, forked children):
 *   prepare()      in the measuring process, before any fork: shared state,
 *                  named objects, fds the sides inherit;
 *   proc_init()    once in each process that uses the transport (a client
 *                  connection, a runtime), after the forks;
 *   open_tx/open_rx, connected(), loan/send, recv/done, close_*;
 *   proc_fini()    before the process exits;
 *   unprepare()    in the measuring process at the end.
 * Every function returns 0 or a negative errno (or a pointer, NULL with
 * *err set); a side that fails reports it and the measurement is dropped.
 *
 * The payload work is the harness's, not the transport's (payload_write and
 * payload_read below), so every transport does the same work per message:
 * by default the first 64 bytes are written and read (a header, as iceperf
 * does); "touched" writes every byte and reads every byte. */
#ifndef MBQ_BENCH_TRANSPORTS_H
#define MBQ_BENCH_TRANSPORTS_H

#include "bench_common.h"

#include "futex.h" /* cpu_relax, futex_wait/wake (shm/) */

#include <stdatomic.h>
#include <stdbool.h>

enum tx_wait {
    TX_POLL = 0,  /* consumers poll (busy-wait) */
    TX_BLOCK = 1, /* consumers block in the transport's own wait */
};

/* Transport-specific variants (struct tx_spec.variant). */
enum {
    TXV_DEFAULT = 0,
    /* ring: how a consumer waits in TX_BLOCK mode */
    TXV_RING_FUTEX_SPIN = 1, /* spin ~25 us, then FUTEX_WAIT (mbq's own strategy, raw) */
    TXV_RING_FUTEX = 2,      /* FUTEX_WAIT at once */
    TXV_RING_EVENTFD = 3,    /* read() on an eventfd at once */
    /* mbq */
    TXV_MBQ_PTS = 10,         /* queue sorted by PTS, PTS in order */
    TXV_MBQ_PTS_REORDER = 11, /* sorted by PTS, PTS in B-frame order (0 3 1 2 ...) */
    TXV_MBQ_TRIGGER = 12,     /* TX_BLOCK through a "count > 0" trigger eventfd */
    TXV_MBQ_TRIGGER_IDLE = 13, /* a trigger installed that never fires; waits as usual */
    TXV_MBQ_BATCH16 = 14,      /* the batched calls, 16 at a time (busy-poll, one consumer) */
    TXV_MBQ_SMALL = 15,        /* the pool's blocks are the payload's size (sub-page, packed) */
    TXV_MBQ_PTS_LATE16 = 16,   /* sorted by PTS, one in sixteen late by three frames */
    TXV_MBQ_PTS_RANDOM = 17,   /* sorted by PTS, PTS in no order at all */
    TXV_MBQ_CLASSES = 20,      /* a pool of size classes: the payload's (packed), 4 KiB, 64 KiB */
};

/* Whether variant v runs a queue sorted by PTS. */
static inline bool txv_sorted(int v)
{
    return v == TXV_MBQ_PTS || v == TXV_MBQ_PTS_REORDER || v == TXV_MBQ_PTS_LATE16 ||
           v == TXV_MBQ_PTS_RANDOM;
}

#define TX_MAX_FAN 2
#define TX_SPIN_NS 25000u /* the spin window of the spin-then-sleep waits */

struct tx_spec {
    char name[48];   /* unique in the run: names of queues, pools, services */
    uint32_t fan;    /* consumers, 1..TX_MAX_FAN */
    uint32_t depth;  /* queue depth asked for; a transport may have to cap it */
    size_t payload;  /* bytes per message, >= 64, a multiple of 64 */
    int wait;        /* enum tx_wait */
    int variant;     /* TXV_* */
    void *shared;    /* the transport's MAP_SHARED state (prepare) */
    size_t shared_size;
    void *priv;      /* prepare's own state, in the measuring process (forked
                        children see a copy at the same address) */
    char note[96];   /* what the transport had to change (depth cap, fragments) */
};

struct tx_ops {
    const char *name;
    int (*prepare)(struct tx_spec *s);
    void (*unprepare)(struct tx_spec *s);
    int (*proc_init)(struct tx_spec *s);
    void (*proc_fini)(void);
    int (*open_tx)(struct tx_spec *s, void **tx);
    int (*open_rx)(struct tx_spec *s, unsigned which, void **rx);
    /* 1 once every consumer is attached (iceoryx connects asynchronously);
     * NULL: always. */
    int (*connected)(void *tx);
    void (*close_tx)(void *tx);
    void (*close_rx)(void *rx);
    /* A payload-sized buffer to write the next message into; waits while
     * none is free. NULL on error (*err). */
    void *(*loan)(void *tx, int *err);
    /* Hands the loaned buffer to every consumer; waits while a queue is full. */
    int (*send)(void *tx, void *payload, uint64_t seq);
    /* The next message, or NULL with *err = -EAGAIN (TX_POLL, empty) or an
     * error. In TX_BLOCK mode it waits. */
    const void *(*recv)(void *rx, int *err);
    void (*done)(void *rx, const void *payload);
};

/* ---- payload work, identical for every transport ---- */

#define PAYLOAD_HEADER_WORDS 8 /* 64 bytes */

static inline void payload_write(void *p, size_t size, uint64_t seq, bool touch)
{
    uint64_t *w = p;
    size_t n = touch ? size / 8 : PAYLOAD_HEADER_WORDS;
    for (size_t k = 0; k < n; k++)
        w[k] = seq + k;
}

/* Reads the header (or, touched, every word) and checks it; false if the
 * message is not the one expected. */
static inline bool payload_read(const void *p, size_t size, uint64_t seq, bool touch)
{
    const volatile uint64_t *hv = p;
    if (hv[0] != seq || hv[PAYLOAD_HEADER_WORDS - 1] != seq + PAYLOAD_HEADER_WORDS - 1)
        return false;
    const uint64_t *w = p;
    size_t n = touch ? size / 8 : PAYLOAD_HEADER_WORDS;
    uint64_t sum = 0;
    for (size_t k = 0; k < n; k++)
        sum += w[k];
    /* sum of seq+k for k < n */
    uint64_t want = seq * n + (uint64_t)n * (n - 1) / 2;
    return sum == want;
}

/* Waits about ns while keeping the CPU busy (the sender stays awake while
 * its peer sleeps). */
static inline void spin_ns(uint64_t ns)
{
    uint64_t t0 = bench_ticks();
    double per = bench_ns_per_tick();
    while ((double)(bench_ticks() - t0) * per < (double)ns)
        ;
}

/* MAP_SHARED memory for a transport's state; NULL on failure. */
static inline void *tx_shared_alloc(struct tx_spec *s, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, size); /* fault it in now, not in a timed loop */
    s->shared = p;
    s->shared_size = size;
    return p;
}

static inline int tx_noop_init(struct tx_spec *s)
{
    (void)s;
    return 0;
}

static inline void tx_noop_fini(void)
{
}

static inline void tx_shared_free(struct tx_spec *s)
{
    if (s->shared)
        munmap(s->shared, s->shared_size);
    s->shared = NULL;
}

static inline void tx_note(struct tx_spec *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void tx_note(struct tx_spec *s, const char *fmt, ...)
{
    size_t len = strlen(s->note);
    va_list ap;
    va_start(ap, fmt);
    if (len && len < sizeof(s->note) - 2) {
        s->note[len++] = ';';
        s->note[len++] = ' ';
        s->note[len] = 0;
    }
    vsnprintf(s->note + len, sizeof(s->note) - len, fmt, ap);
    va_end(ap);
}

#endif
