/* Simple queue: Core Media's CMSimpleQueue in a segment.
 *
 * A bounded ring of non-zero 64-bit values for one producer and one consumer
 * (any processes), with no lock and no system call. head and tail are
 * monotonic 64-bit counters on separate cache lines; the full capacity is
 * usable. Each side caches the other's counter in process memory so that the
 * common case touches no shared line but its own. Counters read from the
 * segment are untrusted: a ring whose tail - head is out of range is reported
 * (-EUCLEAN) and never indexed. reset is not synchronised with a running
 * producer or consumer, as in Core Media.
 *
 * Use one struct sq per side (the producer's and the consumer's caches
 * share a line). A slot found zero (scribbled) is skipped by dequeue; peek
 * returns 0 for it. For a capacity that is not a power of two, the slot
 * index jumps when the counters wrap at 2^64 (after centuries of use). */
#ifndef MBQ_SHM_SQ_H
#define MBQ_SHM_SQ_H

#include "seg.h"

#include <stdatomic.h>
#include <stdint.h>

#define SQ_MAX_CAPACITY (1 << 24)
/* Values are packed, eight to a cache line. A consumer that keeps up reads
 * the line the producer is writing, which costs one transfer each way per
 * value: what a line per value costs too. A consumer that is behind reads
 * eight values per transfer, and the producer takes the line back once per
 * eight. The other side's counter is read only when the cached copy says
 * full or empty, so a line per value bought nothing. */
#define SQ_SLOT_WORDS 1

struct sq_shared; /* sq_layout.h */


struct sq {
    struct seg seg;
    struct sq_shared *sh;
    _Atomic uint64_t *values;
    uint32_t capacity;   /* copied at attach; the shared copy is not trusted */
    uint64_t head_cache; /* producer's last view of head */
    uint64_t tail_cache; /* consumer's last view of tail */
};

/* capacity must be 1..SQ_MAX_CAPACITY: 0 gives
 * MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING, negative or too large
 * MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE; out NULL gives REQUIRED_PARAMETER_MISSING.
 * Memory failure: MBQ_SQ_ERR_ALLOCATION_FAILED. */
int sq_create(int32_t capacity, struct sq *out);
/* Maps an existing simple-queue segment (fd is duplicated, caller keeps it).
 * -EBADMSG if it is not a valid one, -EINVAL for a NULL out or negative fd,
 * -EBADF for a closed fd. */
int sq_attach(int fd, struct sq *out);
void sq_detach(struct sq *q);

/* 0, MBQ_SQ_ERR_QUEUE_IS_FULL, MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING (value 0
 * or q NULL), or -EUCLEAN if the shared counters are corrupt. */
int sq_enqueue(struct sq *q, uint64_t value);
/* The head value, or 0 when empty (or on any error). */
uint64_t sq_dequeue(struct sq *q);
uint64_t sq_peek(struct sq *q);
/* Empties the queue; not synchronised with a concurrent producer/consumer. */
int sq_reset(struct sq *q);
int32_t sq_capacity(const struct sq *q);
/* A snapshot; 0 on error. */
int32_t sq_count(const struct sq *q);
float sq_fullness(const struct sq *q);

#endif
