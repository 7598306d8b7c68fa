/* Segments: creation, sealing and verified mapping of memfds.
 *
 * The checks in seg_map() are what make a peer's segment safe to touch: the
 * seals guarantee the size cannot change under us (so no SIGBUS), and the
 * header check rejects anything that is not the object we expect. Contents
 * beyond the header stay untrusted; each object validates its own. */
#include "seg_layout.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

static int seg_memfd(const char *name)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) /* kernel without MFD_NOEXEC_SEAL */
        fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    return fd < 0 ? -errno : fd;
}

int seg_create(const char *debug_name, size_t size, enum seg_kind kind, struct seg *out)
{
    if (!out || size < sizeof(struct seg_header))
        return -EINVAL;
    size = seg_round_up(size, SEG_ALIGN);
    int fd = seg_memfd(debug_name ? debug_name : "mbq");
    if (fd < 0)
        return fd;
    int r = 0;
    if (ftruncate(fd, (off_t)size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        r = -errno;
        close(fd);
        return r;
    }
    struct seg_header *h = base;
    h->magic = SEG_MAGIC;
    h->layout_version = SEG_LAYOUT_VERSION;
    h->kind = (uint16_t)kind;
    h->size = size;
    h->header_size = sizeof(*h);
    *out = (struct seg){.fd = fd, .base = base, .size = size};
    return 0;
}

int seg_map(int fd, enum seg_kind kind, size_t min_size, struct seg *out)
{
    if (fd < 0 || !out)
        return -EINVAL;
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0)
        return errno == EINVAL ? -EBADMSG : -errno; /* not a memfd */
    if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
        return -EBADMSG;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    size_t size = (size_t)st.st_size;
    if (st.st_size <= 0 || size < sizeof(struct seg_header) || size < min_size)
        return -EBADMSG;
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return -errno;
    struct seg_header h;
    memcpy(&h, base, sizeof(h)); /* one read of the untrusted header */
    if (h.magic != SEG_MAGIC || h.layout_version != SEG_LAYOUT_VERSION ||
        h.kind != (uint16_t)kind || h.size != size || h.header_size != sizeof(h)) {
        munmap(base, size);
        return -EBADMSG;
    }
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (own < 0) {
        int r = -errno;
        munmap(base, size);
        return r;
    }
    *out = (struct seg){.fd = own, .base = base, .size = size};
    return 0;
}

void seg_close(struct seg *s)
{
    if (!s)
        return;
    if (s->base && s->size)
        munmap(s->base, s->size);
    if (s->fd >= 0 && s->base)
        close(s->fd);
    *s = (struct seg){.fd = -1};
}

uint64_t seg_object_id(const struct seg *s)
{
    uint64_t id;
    /* Copied out: a peer may write the header, and the caller compares. */
    memcpy(&id, (const char *)s->base + offsetof(struct seg_header, object_id), sizeof(id));
    return id;
}

void seg_set_object_id(struct seg *s, uint64_t id)
{
    ((struct seg_header *)s->base)->object_id = id;
}
