/* Small helpers shared by the daemon's files: the bottom layer's macros and
 * clock (common/), and an intrusive doubly linked list.
 *
 * Conventions (see the top of main.c): functions return 0 (or a count) or a
 * negative errno; destructors accept NULL and return NULL; a local that owns
 * memory or an fd is declared with _cleanup_ and handed over with TAKE_PTR()
 * or TAKE_FD(). Every helper here preserves errno. */
#ifndef MBQD_UTIL_H
#define MBQD_UTIL_H

#include "common/clock.h"
#include "common/macro.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
