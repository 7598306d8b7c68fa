/* Pidwatch: one watcher of client process exits that reclaim.c (the pool
 * references of a process whose session ended while it lived on) and
 * restore.c (the processes of before a restart) both subscribe to.
 *
 * Role. Each watched pid has one entry holding one pidfd, readable once the
 * process exits, and the list of subscriptions to call then. A pidfd names
 * one process, not a later one with the same number, so a subscriber that
 * has the pidfd of the right process (SO_PEERPIDFD, or pidfd_open at
 * accept) hands it over; otherwise one is opened from the pid at subscribe
 * time. Without pidfds (old kernels) the entry is polled every second with
 * proc_state(), the rule every layer uses (common/proc.h).
 *
 * Invariants. An entry exists only while it has a subscription. A
 * subscription is called once, from the event loop, after it and (if it was
 * the last) its entry are unlinked, so a callback may subscribe again or
 * free what it likes. A second subscriber to a pid already watched shares
 * the entry's pidfd and its own is closed: both then name the process that
 * was running when the entry was made, which is the one both mean unless
 * the pid was reused in between, and a reused pid's exit only wakes the
 * subscribers early, who check again (a session of that pid, its slot). */
#include "pidwatch.h"

#include "util.h"

#include "common/proc.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PIDWATCH_POLL_MS 1000

typedef struct Sub {
    pidwatch_fn *fn;
    void *userdata;
    struct list link; /* Entry.subs */
} Sub;

typedef struct Entry {
    PidWatch *pw;
    pid_t pid;
    int pidfd; /* owned; -1: polled */
    struct event *ev;
    struct list subs;
    struct list link; /* PidWatch.entries */
} Entry;

struct PidWatch {
    struct event_base *base;
    struct list entries;
    struct event *ev_poll;
    unsigned n_polled;
};

int pidwatch_new(PidWatch **ret, struct event_base *base)
{
    PidWatch *pw = calloc(1, sizeof(*pw));
    if (!pw)
        return -ENOMEM;
    pw->base = base;
    list_init(&pw->entries);
    *ret = pw;
    return 0;
}

static void entry_free(Entry *e)
{
    list_for_each_safe(it, &e->subs) {
        list_del(it);
        free(list_entry(it, Sub, link));
    }
    list_del(&e->link);
    if (e->ev)
        event_free(e->ev);
    if (e->pidfd < 0 && e->pw->n_polled > 0 && --e->pw->n_polled == 0 && e->pw->ev_poll)
        event_del(e->pw->ev_poll);
    safe_close(e->pidfd);
    free(e);
}

PidWatch *pidwatch_free(PidWatch *pw)
{
    if (!pw)
        return NULL;
    list_for_each_safe(it, &pw->entries)
        entry_free(list_entry(it, Entry, link));
    if (pw->ev_poll)
        event_free(pw->ev_poll);
    free(pw);
    return NULL;
}

/* The process is gone: unlink the entry, then call each subscription. */
static void entry_fire(Entry *e)
{
    struct list subs;
    list_init(&subs);
    /* Move the subscriptions out, so entry_free leaves them for us. */
    list_for_each_safe(it, &e->subs) {
        list_del(it);
        list_add_tail(&subs, it);
    }
    pid_t pid = e->pid;
    entry_free(e);
    list_for_each_safe(it, &subs) {
        Sub *s = list_entry(it, Sub, link);
        list_del(it);
        pidwatch_fn *fn = s->fn;
        void *userdata = s->userdata;
        free(s);
        fn(pid, userdata);
    }
}

static void entry_on_exit(evutil_socket_t fd, short what, void *arg)
{
    entry_fire(arg);
}

static void pidwatch_on_poll(evutil_socket_t fd, short what, void *arg)
{
    PidWatch *pw = arg;
    list_for_each_safe(it, &pw->entries) {
        Entry *e = list_entry(it, Entry, link);
        if (e->pidfd < 0 && proc_gone(e->pid)) {
            /* A callback may free other entries: start over after one. */
            entry_fire(e);
            pidwatch_on_poll(fd, what, arg);
            return;
        }
    }
}

static Entry *pidwatch_find(const PidWatch *pw, pid_t pid)
{
    list_for_each_safe(it, (struct list *)&pw->entries) {
        Entry *e = list_entry(it, Entry, link);
        if (e->pid == pid)
            return e;
    }
    return NULL;
}

bool pidwatch_watching(const PidWatch *pw, pid_t pid)
{
    return pidwatch_find(pw, pid) != NULL;
}

void pidwatch_forget(PidWatch *pw, void *userdata)
{
    if (!pw)
        return;
    list_for_each_safe(it, &pw->entries) {
        Entry *e = list_entry(it, Entry, link);
        list_for_each_safe(sit, &e->subs) {
            Sub *s = list_entry(sit, Sub, link);
            if (s->userdata == userdata) {
                list_del(sit);
                free(s);
            }
        }
        if (list_empty(&e->subs))
            entry_free(e);
    }
}

/* A new entry for pid, watching pidfd (taken) or polled. 0 with *ret, 0 with
 * *ret NULL if the process is gone, -ENOMEM. */
static int entry_new(PidWatch *pw, pid_t pid, int pidfd, Entry **ret)
{
    _cleanup_(closep) int fd = pidfd;
    *ret = NULL;
    if (fd < 0) {
        fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0 && errno == ESRCH)
            return 0;
        if (fd >= 0)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if (fd < 0 && proc_gone(pid))
        return 0;
    Entry *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->pw = pw;
    e->pid = pid;
    e->pidfd = TAKE_FD(fd);
    list_init(&e->subs);
    list_add_tail(&pw->entries, &e->link);
    if (e->pidfd >= 0) {
        e->ev = event_new(pw->base, e->pidfd, EV_READ, entry_on_exit, e);
        if (!e->ev || event_add(e->ev, NULL) < 0) {
            entry_free(e);
            return -ENOMEM;
        }
    } else {
        if (!pw->ev_poll)
            pw->ev_poll = event_new(pw->base, -1, EV_PERSIST, pidwatch_on_poll, pw);
        if (!pw->ev_poll) {
            entry_free(e);
            return -ENOMEM;
        }
        if (pw->n_polled++ == 0) {
            struct timeval tv = {PIDWATCH_POLL_MS / 1000, PIDWATCH_POLL_MS % 1000 * 1000};
            event_add(pw->ev_poll, &tv);
        }
    }
    *ret = e;
    return 0;
}

int pidwatch_add(PidWatch *pw, pid_t pid, int pidfd, pidwatch_fn *fn, void *userdata)
{
    Entry *e = pidwatch_find(pw, pid);
    if (e) {
        safe_close(pidfd);
    } else {
        int r = entry_new(pw, pid, pidfd, &e);
        if (r < 0 || !e)
            return r;
    }
    list_for_each_safe(it, &e->subs) {
        Sub *s = list_entry(it, Sub, link);
        if (s->fn == fn && s->userdata == userdata)
            return 1;
    }
    Sub *s = calloc(1, sizeof(*s));
    if (!s) {
        if (list_empty(&e->subs))
            entry_free(e);
        return -ENOMEM;
    }
    s->fn = fn;
    s->userdata = userdata;
    list_add_tail(&e->subs, &s->link);
    return 1;
}
