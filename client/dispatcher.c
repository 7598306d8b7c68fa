/* The trigger dispatcher: an epoll set over trigger eventfds that runs a
 * callback, in the caller's thread, for each trigger that fired.
 *
 * Each registration has an id, which is what epoll carries; a callback may
 * add or remove registrations (its own included) while a dispatch runs,
 * since an event whose id is no longer registered is simply skipped. The
 * registrations are guarded by a mutex that is never held while a callback
 * runs. An eventfd's counter says how many times its trigger fired since it
 * was last read: the callback runs that many times, as Core Media calls it
 * once per firing. A callback runs inside bq_callback_scope() of its queue, so a
 * mutation of that queue from the callback fails with
 * MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK, as in Core Media.
 * The eventfds stay owned by their queues; the dispatcher only watches them. */
#include "internal.h"

#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>

#define DISPATCH_MAX_EVENTS 32

struct dispatch_entry {
    uint64_t id;
    mbq_buffer_queue *queue;
    mbq_trigger_token token;
    int fd; /* borrowed from the queue */
    mbq_trigger_callback callback;
    void *refcon;
    struct dispatch_entry *next;
};

struct mbq_dispatcher {
    int epfd;
    pthread_mutex_t lock;
    struct dispatch_entry *entries;
    uint64_t next_id;
};

int mbq_dispatcher_create(mbq_dispatcher **out)
{
    if (!out)
        return -EINVAL;
    mbq_dispatcher *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (d->epfd < 0) {
        int r = -errno;
        free(d);
        return r;
    }
    pthread_mutex_init(&d->lock, NULL);
    *out = d;
    return 0;
}

void mbq_dispatcher_destroy(mbq_dispatcher *dispatcher)
{
    if (!dispatcher)
        return;
    while (dispatcher->entries) {
        struct dispatch_entry *e = dispatcher->entries;
        dispatcher->entries = e->next;
        free(e);
    }
    close(dispatcher->epfd);
    pthread_mutex_destroy(&dispatcher->lock);
    free(dispatcher);
}

static struct dispatch_entry **dispatch_find_locked(mbq_dispatcher *d, mbq_buffer_queue *q,
                                                    mbq_trigger_token token)
{
    for (struct dispatch_entry **pp = &d->entries; *pp; pp = &(*pp)->next)
        if ((*pp)->queue == q && (*pp)->token == token)
            return pp;
    return NULL;
}

int mbq_dispatcher_add(mbq_dispatcher *dispatcher, mbq_buffer_queue *queue,
                       mbq_trigger_token token, mbq_trigger_callback callback, void *refcon)
{
    if (!dispatcher || !queue || !callback)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    int fd = mbq_buffer_queue_trigger_fd(queue, token);
    if (fd < 0)
        return MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
    struct dispatch_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    pthread_mutex_lock(&dispatcher->lock);
    int r = 0;
    if (dispatch_find_locked(dispatcher, queue, token)) {
        r = -EEXIST;
    } else {
        *e = (struct dispatch_entry){.id = ++dispatcher->next_id,
                                     .queue = queue,
                                     .token = token,
                                     .fd = fd,
                                     .callback = callback,
                                     .refcon = refcon};
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = e->id};
        if (epoll_ctl(dispatcher->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            r = -errno;
        } else {
            e->next = dispatcher->entries;
            dispatcher->entries = e;
            e = NULL;
        }
    }
    pthread_mutex_unlock(&dispatcher->lock);
    free(e);
    return r;
}

int mbq_dispatcher_remove(mbq_dispatcher *dispatcher, mbq_buffer_queue *queue,
                          mbq_trigger_token token)
{
    if (!dispatcher || !queue)
        return MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING;
    pthread_mutex_lock(&dispatcher->lock);
    struct dispatch_entry **pp = dispatch_find_locked(dispatcher, queue, token);
    struct dispatch_entry *e = pp ? *pp : NULL;
    if (e) {
        *pp = e->next;
        /* EBADF/ENOENT: the fd is already gone, which removed it from epoll */
        epoll_ctl(dispatcher->epfd, EPOLL_CTL_DEL, e->fd, NULL);
    }
    pthread_mutex_unlock(&dispatcher->lock);
    if (!e)
        return MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN;
    free(e);
    return 0;
}

int mbq_dispatcher_fd(mbq_dispatcher *dispatcher)
{
    return dispatcher ? dispatcher->epfd : -EINVAL;
}

static bool dispatch_registered(mbq_dispatcher *d, uint64_t id)
{
    pthread_mutex_lock(&d->lock);
    const struct dispatch_entry *e = d->entries;
    while (e && e->id != id)
        e = e->next;
    pthread_mutex_unlock(&d->lock);
    return e != NULL;
}

int mbq_dispatcher_dispatch(mbq_dispatcher *dispatcher, int timeout_ms)
{
    if (!dispatcher)
        return -EINVAL;
    struct epoll_event evs[DISPATCH_MAX_EVENTS];
    int n = epoll_wait(dispatcher->epfd, evs, DISPATCH_MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int ran = 0;
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&dispatcher->lock);
        struct dispatch_entry *e = dispatcher->entries;
        while (e && e->id != evs[i].data.u64)
            e = e->next;
        struct dispatch_entry copy = e ? *e : (struct dispatch_entry){.fd = -1};
        pthread_mutex_unlock(&dispatcher->lock);
        if (copy.fd < 0)
            continue; /* removed by an earlier callback */
        /* Consume the firing. Only if still readable: another reader in this
         * process may have taken it, and the eventfd may be blocking. */
        struct pollfd p = {.fd = copy.fd, .events = POLLIN};
        if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
            continue;
        uint64_t count;
        if (read(copy.fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
            continue;
        /* One call per firing, as in Core Media; stop if a callback removed
         * the registration. */
        for (uint64_t k = 0; k < count; k++) {
            if (k > 0 && !dispatch_registered(dispatcher, copy.id))
                break;
            bq_callback_scope(&copy.queue->bq);
            copy.callback(copy.refcon, copy.queue, copy.token);
            bq_callback_scope(NULL);
            if (ran < INT_MAX)
                ran++;
        }
    }
    return ran;
}
