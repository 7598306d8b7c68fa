/* Simple queue: CMSimpleQueue as a single-producer/single-consumer ring in a
 * sealed memfd segment, used by two processes with no lock and no system call.
 *
 * Invariants of a sound queue: head and tail only grow; 0 <= tail - head <=
 * capacity; element n lives in slot n % capacity while head <= n < tail. Only
 * the producer stores tail and the free slots, only the consumer stores head
 * (reset excepted, which Core Media also leaves unsynchronised). A slot is
 * published by the release store of tail and handed back by the release store
 * of head, so an acquire load of the other side's counter covers the slots.
 *
 * Each side keeps the other's counter in its process-local struct and reloads
 * it only when that copy says full (producer) or empty (consumer). Counters
 * only grow, so a stale copy lags and errs towards full/empty: it can never
 * let the producer overwrite a live slot or the consumer read a free one.
 *
 * The segment is shared with processes we do not trust. The capacity is
 * copied once at attach and never re-read; a counter pair whose unsigned
 * difference exceeds the capacity (which also covers head > tail) is reported
 * and never used; every index is reduced modulo the local capacity. So no
 * value written into the segment can move an access outside the ring. */
#include "sq_layout.h"

#include <mbq/status.h>

#include <errno.h>
#include <string.h>

static void sq_clear(struct sq *q)
{
    memset(q, 0, sizeof(*q));
    q->seg.fd = -1;
}

/* A detached or never-created sq has no mapping; treat it like a NULL one. */
static inline int sq_usable(const struct sq *q)
{
    return q && q->sh && q->capacity != 0;
}

static inline uint64_t sq_slot(uint32_t capacity, uint64_t n)
{
    /* Powers of two (the common choice) avoid a 64-bit division per element. */
    if ((capacity & (capacity - 1)) == 0)
        return n & (capacity - 1);
    return n % capacity;
}

static void sq_bind(struct sq *q, const struct seg *seg, uint32_t capacity,
                    uint64_t values_offset)
{
    q->seg = *seg;
    q->sh = seg->base;
    q->values = (_Atomic uint64_t *)((char *)seg->base + values_offset);
    q->capacity = capacity;
    /* Loaded once so that each side starts with a copy that can only lag. */
    q->head_cache = atomic_load_explicit(&q->sh->head, memory_order_acquire);
    q->tail_cache = atomic_load_explicit(&q->sh->tail, memory_order_acquire);
}

int sq_create(int32_t capacity, struct sq *out)
{
    if (!out)
        return MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING;
    sq_clear(out);
    if (capacity == 0)
        return MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING;
    if (capacity < 0 || capacity > SQ_MAX_CAPACITY)
        return MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE;

    size_t size = sizeof(struct sq_shared) + (size_t)capacity * SQ_SLOT_WORDS * sizeof(uint64_t);
    struct seg seg;
    int r = seg_create("mbq-sq", size, SEG_KIND_SIMPLE_QUEUE, &seg);
    if (r < 0)
        return r == -ENOMEM ? MBQ_SQ_ERR_ALLOCATION_FAILED : r;

    /* No one else can see the segment yet; the fd hand-over (fork or
     * SCM_RIGHTS) orders these stores before any peer's reads. */
    struct sq_shared *sh = seg.base;
    sh->capacity = (uint32_t)capacity;
    sh->values_offset = sizeof(struct sq_shared);
    sq_bind(out, &seg, (uint32_t)capacity, sizeof(struct sq_shared));
    return 0;
}

int sq_attach(int fd, struct sq *out)
{
    if (!out)
        return -EINVAL;
    sq_clear(out);
    struct seg seg;
    int r = seg_map(fd, SEG_KIND_SIMPLE_QUEUE, sizeof(struct sq_shared), &seg);
    if (r < 0)
        return r;

    /* One read of each field: a peer may rewrite them while we check. */
    struct sq_shared *sh = seg.base;
    uint32_t capacity = __atomic_load_n(&sh->capacity, __ATOMIC_RELAXED);
    uint64_t values_offset = __atomic_load_n(&sh->values_offset, __ATOMIC_RELAXED);
    /* The layout version in the segment header pins values_offset exactly;
     * seg_map already checked that seg.size is the real file size. */
    if (capacity < 1 || capacity > SQ_MAX_CAPACITY ||
        values_offset != sizeof(struct sq_shared) ||
        seg.size < values_offset ||
        (seg.size - values_offset) / (SQ_SLOT_WORDS * sizeof(uint64_t)) < capacity) {
        seg_close(&seg);
        return -EBADMSG;
    }
    sq_bind(out, &seg, capacity, values_offset);
    return 0;
}

void sq_detach(struct sq *q)
{
    if (!q)
        return;
    seg_close(&q->seg);
    sq_clear(q);
}

int sq_enqueue(struct sq *q, uint64_t value)
{
    if (value == 0 || !sq_usable(q))
        return MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING;
    uint32_t cap = q->capacity;
    uint64_t tail = atomic_load_explicit(&q->sh->tail, memory_order_relaxed);
    /* Also true when tail < head_cache, i.e. tail was rewritten by someone
     * else: the reload below then decides whether that is corruption. */
    if (tail - q->head_cache >= cap) {
        uint64_t head = atomic_load_explicit(&q->sh->head, memory_order_acquire);
        q->head_cache = head;
        uint64_t used = tail - head;
        if (used > cap)
            return -EUCLEAN;
        if (used == cap)
            return MBQ_SQ_ERR_QUEUE_IS_FULL;
    }
    atomic_store_explicit(&q->values[sq_slot(cap, tail) * SQ_SLOT_WORDS], value, memory_order_relaxed);
    atomic_store_explicit(&q->sh->tail, tail + 1, memory_order_release);
    return 0;
}

/* The consumer's view: the counter of the first element, or false when the
 * queue is empty or its counters are corrupt. */
static inline int sq_consumer_head(struct sq *q, uint64_t *head_out)
{
    uint32_t cap = q->capacity;
    uint64_t head = atomic_load_explicit(&q->sh->head, memory_order_relaxed);
    /* Reload unless the copy shows 1..cap elements; a copy behind head (after
     * a reset, say) wraps to a huge difference and is reloaded too. */
    if (q->tail_cache - head - 1 >= cap) {
        uint64_t tail = atomic_load_explicit(&q->sh->tail, memory_order_acquire);
        q->tail_cache = tail;
        if (tail == head || tail - head > cap)
            return 0;
    }
    *head_out = head;
    return 1;
}

uint64_t sq_dequeue(struct sq *q)
{
    if (!sq_usable(q))
        return 0;
    uint64_t head;
    if (!sq_consumer_head(q, &head))
        return 0;
    uint64_t value =
        atomic_load_explicit(&q->values[sq_slot(q->capacity, head) * SQ_SLOT_WORDS], memory_order_relaxed);
    /* Advance even past a zeroed (corrupt) slot, or the queue would wedge on
     * it; the caller just sees one "empty" answer. */
    atomic_store_explicit(&q->sh->head, head + 1, memory_order_release);
    return value;
}

uint64_t sq_peek(struct sq *q)
{
    if (!sq_usable(q))
        return 0;
    uint64_t head;
    if (!sq_consumer_head(q, &head))
        return 0;
    return atomic_load_explicit(&q->values[sq_slot(q->capacity, head) * SQ_SLOT_WORDS], memory_order_relaxed);
}

int sq_reset(struct sq *q)
{
    if (!sq_usable(q))
        return MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING;
    uint64_t tail = atomic_load_explicit(&q->sh->tail, memory_order_acquire);
    /* Moving head (not tail) keeps both counters monotonic for a producer
     * that is merely paused; it also repairs a head that was corrupted. */
    atomic_store_explicit(&q->sh->head, tail, memory_order_release);
    q->head_cache = tail;
    q->tail_cache = tail;
    return 0;
}

int32_t sq_capacity(const struct sq *q)
{
    return sq_usable(q) ? (int32_t)q->capacity : 0;
}

int32_t sq_count(const struct sq *q)
{
    if (!sq_usable(q))
        return 0;
    uint32_t cap = q->capacity;
    /* head is read on both sides of tail: if it did not move, tail - head is
     * an exact snapshot, so a difference over cap means corruption rather
     * than a race between the two loads. */
    uint64_t h1, tail, h2;
    for (int tries = 0;; tries++) {
        h1 = atomic_load_explicit(&q->sh->head, memory_order_acquire);
        tail = atomic_load_explicit(&q->sh->tail, memory_order_acquire);
        h2 = atomic_load_explicit(&q->sh->head, memory_order_acquire);
        if (h1 == h2)
            return tail - h1 > cap ? 0 : (int32_t)(tail - h1);
        if (tries == 3)
            break;
    }
    /* A consumer keeps overtaking us: any value in range is a fair snapshot
     * of a queue that busy. */
    uint64_t used = tail - h2;
    if ((int64_t)used < 0)
        return 0;
    return used > cap ? (int32_t)cap : (int32_t)used;
}

float sq_fullness(const struct sq *q)
{
    int32_t cap = sq_capacity(q);
    return cap ? (float)sq_count(q) / (float)cap : 0.0f;
}
