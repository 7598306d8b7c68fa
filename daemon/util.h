/* Small helpers shared by the daemon's files: cleanup attributes, ownership
 * hand-over, an intrusive doubly linked list, and a monotonic clock.
 *
 * Conventions (see the top of main.c): functions return 0 (or a count) or a
 * negative errno; destructors accept NULL and return NULL; a local that owns
 * memory or an fd is declared with _cleanup_ and handed over with TAKE_PTR()
 * or TAKE_FD(). Every helper here preserves errno. */
#ifndef MBQD_UTIL_H
#define MBQD_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

#define TAKE_PTR(p)                    \
    ({                                 \
        __typeof__(p) take_tmp_ = (p); \
        (p) = NULL;                    \
        take_tmp_;                     \
    })

#define TAKE_FD(fd)               \
    ({                            \
        int take_fd_tmp_ = (fd);  \
        (fd) = -1;                \
        take_fd_tmp_;             \
    })

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

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

/* CLOCK_MONOTONIC in nanoseconds (the clock shm/ uses for ages and deadlines). */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- intrusive list: a circular doubly linked list with a sentinel ---- */

struct list {
    struct list *prev, *next;
};

static inline void list_init(struct list *l)
{
    l->prev = l->next = l;
}

static inline bool list_empty(const struct list *l)
{
    return l->next == l;
}

static inline void list_add_tail(struct list *head, struct list *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

/* Unlinks node and leaves it pointing at itself, so a second del is harmless. */
static inline void list_del(struct list *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    list_init(node);
}

#define list_entry(node, type, member) container_of(node, type, member)

/* Iterates the nodes of head; `it` may be unlinked (not others) in the body. */
#define list_for_each_safe(it, head)                                           \
    for (struct list *it = (head)->next, *it##_next_ = it->next; it != (head); \
         it = it##_next_, it##_next_ = it->next)

#endif
