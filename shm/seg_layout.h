/* The segment header's layout: known to shm/ alone (see seg.h). */
#ifndef MBQ_SHM_SEG_LAYOUT_H
#define MBQ_SHM_SEG_LAYOUT_H

#include "seg.h"

#include <stddef.h>
#include <stdint.h>

struct seg_header {
    uint32_t magic;
    uint16_t layout_version;
    uint16_t kind;
    uint64_t size;        /* bytes of the whole segment, equal to the file size */
    uint32_t header_size; /* sizeof(struct seg_header) */
    uint32_t reserved0;
    uint64_t object_id;   /* assigned by the creator (the daemon); 0 if none */
    uint8_t reserved[32];
};
_Static_assert(sizeof(struct seg_header) == 64, "seg_header is one cache line");
_Static_assert(offsetof(struct seg_header, size) == 8, "seg_header layout");
_Static_assert(offsetof(struct seg_header, object_id) == 24, "seg_header layout");

#endif
