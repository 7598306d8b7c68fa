/* The bottom layer's macros: cleanup attributes and ownership hand-over,
 * single-copy reads and writes, and the usual size/offset helpers.
 *
 * Every layer (shm/, proto/, daemon/, client/, tools) may include this and
 * nothing here includes any of them. Conventions: a local that owns memory
 * or an fd is declared with _cleanup_ and handed over with TAKE_PTR() or
 * TAKE_FD(); every cleanup helper preserves errno, so that a function can
 * return -errno after its locals are released. */
#ifndef MBQ_COMMON_MACRO_H
#define MBQ_COMMON_MACRO_H

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

#define TAKE_PTR(p)                    \
    ({                                 \
        __typeof__(p) take_tmp_ = (p); \
        (p) = NULL;                    \
        take_tmp_;                     \
    })

#define TAKE_FD(fd)              \
    ({                           \
        int take_fd_tmp_ = (fd); \
        (fd) = -1;               \
        take_fd_tmp_;            \
    })

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* One load (or store) of x, not torn, merged or repeated by the compiler: for
 * words in shared memory that another process changes, where no ordering is
 * needed (or it comes from an atomic next to it). x must be a naturally
 * aligned scalar. */
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))

static inline void freep(void *p)
{
    int saved = errno;
    free(*(void **)p);
    errno = saved;
}

/* Closes fd if it is open; returns -1 so that `fd = safe_close(fd);` reads well. */
static inline int safe_close(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return -1;
}

static inline void closep(int *fd)
{
    safe_close(*fd);
}

#endif
