/* The simple queue's shared layout: known to shm/ alone (see sq.h). */
#ifndef MBQ_SHM_SQ_LAYOUT_H
#define MBQ_SHM_SQ_LAYOUT_H

#include "seg_layout.h"
#include "sq.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct sq_shared {
    struct seg_header hdr;
    uint32_t capacity;
    uint32_t reserved0;
    uint64_t values_offset; /* from the segment's start */
    uint8_t pad0[48];
    _Alignas(128) _Atomic uint64_t tail; /* written by the producer only */
    uint8_t pad1[120];
    _Alignas(128) _Atomic uint64_t head; /* written by the consumer only */
    uint8_t pad2[120];
    /* uint64_t values[capacity * SQ_SLOT_WORDS] at values_offset; value i at
     * word i * SQ_SLOT_WORDS (layout 6: packed, SQ_SLOT_WORDS 1; layout 5
     * had a cache line per value) */
};
_Static_assert(offsetof(struct sq_shared, tail) == 128, "sq layout");
_Static_assert(offsetof(struct sq_shared, head) == 256, "sq layout");
_Static_assert(sizeof(struct sq_shared) == 384, "sq layout");

#endif
