/* Segments: sealed memfds holding one mbq object each.
 *
 * A segment is created at its final size and sealed against shrinking and
 * growing before anyone else sees it, so a mapping can never SIGBUS. Its
 * first 64 bytes are a header (magic, layout version, kind, size) that a
 * process checks, together with the seals and the file size, before it uses
 * the mapping. Nothing is named in /dev/shm: a segment disappears with the
 * last fd and mapping. */
#ifndef MBQ_SHM_SEG_H
#define MBQ_SHM_SEG_H

#include <stddef.h>
#include <stdint.h>

#define SEG_MAGIC 0x3151424du /* "MBQ1" little-endian */
#define SEG_LAYOUT_VERSION 10u
#define SEG_ALIGN 4096u

enum seg_kind {
    SEG_KIND_BUFFER_QUEUE = 1,
    SEG_KIND_SIMPLE_QUEUE = 2,
    SEG_KIND_POOL = 3,
};


/* The 64-byte header every segment starts with (seg_layout.h). */
struct seg_header;

/* A mapped segment as one process sees it. */
struct seg {
    int fd;      /* owned; -1 if the mapping was made from a borrowed fd and closed */
    void *base;  /* mapping of size bytes */
    size_t size;
};

/* Creates a sealed memfd of size bytes (rounded up to pages), writes the
 * header for kind, maps it read-write. The data after the header is zero.
 * Returns 0, or -errno; on failure nothing is left open. */
int seg_create(const char *debug_name, size_t size, enum seg_kind kind, struct seg *out);

/* Maps the segment behind fd after checking that it is sealed against
 * shrink and grow, that its size is at least min_size, and that its header
 * names the expected kind, layout version and this exact size. Takes a
 * duplicate of fd (CLOEXEC): the caller keeps its own. Returns 0, -EBADMSG
 * for a segment that fails the checks, or -errno. */
int seg_map(int fd, enum seg_kind kind, size_t min_size, struct seg *out);

/* The object id the creator stamped in the header (0: none), and the
 * stamp itself, for the creator before it hands the segment out. */
uint64_t seg_object_id(const struct seg *s);
void seg_set_object_id(struct seg *s, uint64_t id);

/* Unmaps and closes; accepts a zeroed or already-closed seg. */
void seg_close(struct seg *s);

static inline size_t seg_round_up(size_t n, size_t align)
{
    return (n + align - 1) / align * align;
}

#endif
