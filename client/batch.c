/* Batched data-plane calls: allocate, enqueue, enqueue-and-release,
 * dequeue and release of many buffers in one call (<mbq/mbq.h>, "Batched
 * calls").
 *
 * Role. A producer that has a burst of buffers ready, or a consumer that
 * drains what arrived, makes one call instead of one per buffer, and pays
 * per run of buffers what the single calls pay per buffer. A run is up to
 * BQ_RUN_MAX consecutive buffers of one pool: one lock round of the queue
 * (bq_enqueue_run, bq_dequeue_run: one index store, one trigger evaluation,
 * one wake-up check) and one run intent in the pool (pool_run_begin: one
 * record naming every block of the run). The runs themselves are at the
 * end of buffer_queue.c, next to the hooks they share with the single
 * calls. enqueue_many (a new reference per buffer) stays a loop over
 * enqueue.
 *
 * Invariants.
 *  - Order and results: elements are handled in array order, with the
 *    results of the single calls made one after the other, and a batch
 *    stops at its first failure. Enqueued: a prefix of the array, the rest
 *    untouched (the caller still holds every reference of the rest, for
 *    the _release forms too). Dequeued: the queue's head entries, in
 *    dequeue order.
 *  - Where a run cannot go, the element goes through its single call: a
 *    thread with no run record free, a drop-oldest queue that must drop, a
 *    head entry whose pool is not mapped here or not yet known to be bound
 *    to the queue (the single dequeue maps it and asks the daemon).
 *  - Crash safety: a run's references move under its run intent, which
 *    names every block of the run from before the first step of any move
 *    until after the last, so a process killed at any instruction of a
 *    batch leaves each block's refcount exact or one too high, and the
 *    reclaim's recount settles it (docs/DATAPLANE.md "Run intents").
 *  - Triggers: evaluated once per run, on the queue before and after it
 *    (a run only adds or only takes away, so a count crossing its
 *    threshold inside a run fires once, as buffer by buffer). */
#include "internal.h"

int mbq_buffer_queue_enqueue_many(mbq_buffer_queue *queue, const mbq_buffer *buffers, size_t n,
                                  size_t *done)
{
    size_t i = 0;
    int r = 0;
    if (!queue || (n && !buffers))
        r = MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    for (; r == 0 && i < n; i++) {
        r = mbq_buffer_queue_enqueue(queue, buffers[i]);
        if (r != 0)
            break;
    }
    if (done)
        *done = i;
    return r;
}

int mbq_buffer_queue_enqueue_and_release_many(mbq_buffer_queue *queue, const mbq_buffer *buffers,
                                              size_t n, size_t *done)
{
    size_t i = 0;
    int r = 0;
    if (!queue || (n && !buffers))
        r = MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    while (r == 0 && i < n) {
        uint32_t k = n - i > BQ_RUN_MAX ? BQ_RUN_MAX : (uint32_t)(n - i), did = 0;
        r = bqueue_enqueue_release_run(queue, buffers + i, k, &did);
        i += did;
        if (r == BQUEUE_RUN_ONE) {
            r = mbq_buffer_queue_enqueue_and_release(queue, buffers[i]);
            i += r == 0;
        }
    }
    if (done)
        *done = i;
    return r;
}

/* Up to max buffers from the head into out[got..max), by runs (a run
 * refused goes through the single dequeue, one buffer): the count, or the
 * error that stopped it with nothing taken. An empty queue, the common
 * end, is not an error; a later error ends the batch short, and the caller
 * sees it on its next call. */
static int dequeue_runs(mbq_buffer_queue *queue, mbq_buffer *out, size_t max, size_t got)
{
    int r = 0;
    while (got < max) {
        uint32_t k = max - got > BQ_RUN_MAX ? BQ_RUN_MAX : (uint32_t)(max - got);
        r = bqueue_dequeue_run(queue, out + got, k);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0) {
            r = mbq_buffer_queue_dequeue_and_retain(queue, &out[got]);
            if (r == 0) {
                got++;
                continue;
            }
        }
        break;
    }
    if (got == 0 && r != 0 && r != -EAGAIN)
        return r;
    return (int)got;
}

int mbq_buffer_queue_dequeue_many(mbq_buffer_queue *queue, mbq_buffer *out, size_t max)
{
    if (!queue || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (max > MBQ_BATCH_MAX)
        max = MBQ_BATCH_MAX;
    return dequeue_runs(queue, out, max, 0);
}

int mbq_buffer_queue_dequeue_wait_many(mbq_buffer_queue *queue, int64_t timeout_ns,
                                       mbq_buffer *out, size_t max)
{
    if (!queue || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (max > MBQ_BATCH_MAX)
        max = MBQ_BATCH_MAX;
    if (max == 0)
        return 0;
    /* The wait is for the first buffer alone; the rest is what is there. */
    int r = mbq_buffer_queue_dequeue_wait(queue, timeout_ns, &out[0]);
    if (r != 0)
        return r;
    return dequeue_runs(queue, out, max, 1);
}

/* Releases the run at buffers[0..): the prefix (up to BQ_RUN_MAX) of one
 * pool, under one run intent, or the first buffer alone when the pool has
 * no run record for this thread. *first: the first error. Returns how many
 * it handled. */
static size_t release_run(const mbq_buffer *b, size_t n, int *first)
{
    struct mbq_pool *p = b[0].pool_;
    int r;
    size_t k = 1;
    uint64_t handles[BQ_RUN_MAX];
    if (p && p->pool.sh) {
        handles[0] = b[0].handle_;
        while (k < n && k < BQ_RUN_MAX && b[k].pool_ == p) {
            handles[k] = b[k].handle_;
            k++;
        }
        if (pool_run_begin(&p->pool, handles, (uint32_t)k) == 0) {
            r = pool_release_run(&p->pool, handles, (uint32_t)k);
            pool_run_end(&p->pool);
            if (r != 0 && *first == 0)
                *first = r;
            return k;
        }
    }
    r = mbq_buffer_release(b[0]);
    if (r != 0 && *first == 0)
        *first = r;
    return 1;
}

int mbq_buffer_release_many(const mbq_buffer *buffers, size_t n)
{
    if (n && !buffers)
        return -EINVAL;
    int first = 0;
    for (size_t i = 0; i < n;)
        i += release_run(buffers + i, n - i, &first);
    return first;
}

/* Allocates by runs of the calling thread's cache (pool_alloc_run: up to
 * 32 blocks claimed under one run intent), within the hold limit. */
int mbq_pool_allocate_many(mbq_pool *pool, size_t size, mbq_buffer *out, size_t n)
{
    if (!pool || (n && !out))
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    if (n == 0)
        return 0;
    if (n > MBQ_BATCH_MAX)
        n = MBQ_BATCH_MAX;
    uint32_t limit = atomic_load_explicit(&pool->hold_limit, memory_order_relaxed);
    if (__builtin_expect(limit != 0, 0)) {
        uint64_t held = pool_held_by_self(&pool->pool);
        if (held >= limit)
            return -EDQUOT;
        if (n > limit - held)
            n = (size_t)(limit - held);
    }
    size_t got = 0;
    while (got < n) {
        uint64_t h[POOL_RUN_LIMIT];
        uint32_t k = n - got > POOL_RUN_LIMIT ? POOL_RUN_LIMIT : (uint32_t)(n - got);
        int r = pool_alloc_run(&pool->pool, size, h, k);
        if (r < 0) {
            if (got == 0)
                return r;
            break; /* the pool ran short: what was allocated is the caller's */
        }
        for (int i = 0; i < r; i++)
            out[got++] = (mbq_buffer){.pool_ = pool, .handle_ = h[i]};
        if ((uint32_t)r < k)
            break;
    }
    return (int)got;
}
