/* Batched data-plane calls: enqueue, enqueue-and-release, dequeue and
 * release of many buffers in one call (<mbq/mbq.h>, "Batched calls").
 *
 * Role. A producer that has a burst of buffers ready, or a consumer that
 * drains what arrived, makes one call instead of one per buffer. Each
 * element goes through exactly the path its single-buffer call takes
 * (buffer_queue.c, pool.c): the same metadata freeze, the same pool binding,
 * the same full policy (drop-oldest drops as many entries as the batch
 * needs, one per element that finds the queue full), the same insertion
 * into a sorted queue, the same trigger evaluation and the same intent
 * record around every reference that changes hands.
 *
 * Invariants.
 *  - Order: elements are handled in array order, and a batch stops at its
 *    first failure. Enqueued: a prefix of the array, the rest untouched
 *    (the caller still holds every reference of the rest, for the _release
 *    forms too). Dequeued: the queue's head entries, in dequeue order.
 *  - Crash safety: one intent per element, held only while that element's
 *    reference moves, so a process killed at any instruction of a batch is
 *    in the state of a process killed inside one single-buffer call, which
 *    the reclaim's recount (docs/DATAPLANE.md "Reclaim") already covers:
 *    the batch adds no state of its own to shared memory.
 *  - Triggers: evaluated by each element's mutation, so no edge is lost
 *    (a count crossing its threshold and back inside one batch fires as it
 *    would buffer by buffer). */
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
    for (; r == 0 && i < n; i++) {
        r = mbq_buffer_queue_enqueue_and_release(queue, buffers[i]);
        if (r != 0)
            break;
    }
    if (done)
        *done = i;
    return r;
}

/* The count, or the first dequeue's error when it took nothing. A later
 * element's error ends the batch short: the caller sees it on its next
 * call (an empty queue, the common end, is not an error). */
static int dequeue_rest(mbq_buffer_queue *queue, mbq_buffer *out, size_t max, size_t i, int r)
{
    while (r == 0 && ++i < max)
        r = mbq_buffer_queue_dequeue_and_retain(queue, &out[i]);
    if (i == 0 && r != 0)
        return r;
    return (int)i;
}

int mbq_buffer_queue_dequeue_many(mbq_buffer_queue *queue, mbq_buffer *out, size_t max)
{
    if (!queue || !out)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (max > MBQ_BATCH_MAX)
        max = MBQ_BATCH_MAX;
    if (max == 0)
        return 0;
    int r = mbq_buffer_queue_dequeue_and_retain(queue, &out[0]);
    if (r == -EAGAIN)
        return 0;
    return dequeue_rest(queue, out, max, 0, r);
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
    return dequeue_rest(queue, out, max, 0, 0);
}

int mbq_buffer_release_many(const mbq_buffer *buffers, size_t n)
{
    if (n && !buffers)
        return -EINVAL;
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        int r = mbq_buffer_release(buffers[i]);
        if (r != 0 && first == 0)
            first = r;
    }
    return first;
}
