/* Client identity and liveness: one id per client process, one decision
 * about its death.
 *
 * Role. Lock words, a queue's sleeping dequeuers and ageing pool blocks
 * name their owner; a kernel thread id means another thread in each pid
 * namespace, so the daemon gives each client process a small id at Hello
 * instead (shm/lock.h: SLOCK_CID), and publishes which ids are alive in a
 * table (struct slock_ids) in a sealed memfd that it alone writes: clients
 * get a read-only descriptor and map it read-only, so "is this owner dead"
 * is a load that every process answers the same way, whatever its pid
 * namespace.
 *
 * Invariants.
 *  - One id per process: the connections of one process (the daemon's view
 *    of the peer pid, checked against the pidfd kept for the id, so a
 *    recycled pid is not mistaken for the process it replaces) share it.
 *  - An id is marked dead only once its process has exited: when its last
 *    connection is gone and its pidfd says so, at once, or else when the
 *    pidfd becomes readable. A process that disconnects and lives on keeps
 *    its id alive (its lock words still name it).
 *  - An id is given out again only after a full sweep of every lock word
 *    of every object (the lock watch) found none naming it, so reuse never
 *    makes a dead owner look alive. Id 1 is the daemon's own.
 *  - Only the daemon writes the table: it maps it, then seals it with
 *    F_SEAL_FUTURE_WRITE, so no other writable mapping or write() is
 *    possible, even through a descriptor reopened read-write via /proc.
 *  - The table survives a restart in the service manager's fd store (as
 *    "ids"); being sealed, its content moves to a new table, which clients
 *    map at their next Hello. A client that reconnects asks for its id
 *    again and gets it back if the table says it is that process's and
 *    alive. Until a client reconnects it reads the old table, frozen as it
 *    was: an owner that dies meanwhile looks alive to it (its waits stay
 *    bounded, and the lock watch, which reads the new table, recovers the
 *    lock).
 *
 * Limits. An id per process, at most SLOCK_CID_MAX at once; beyond that a
 * client gets no id (0) and owns locks by thread id. After a restart the
 * ids of processes that do not come back are marked dead when their
 * pidfd (opened from the table's pid, which may have been reused by then)
 * says they exited. */
#include "identity.h"

#include "log.h"
#include "systemd.h"

#include "common/proc.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

#define IDENTITY_DAEMON 1u
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#define IDENTITY_SEAL_FUTURE_WRITE F_SEAL_FUTURE_WRITE

enum id_state { ID_FREE, ID_LIVE, ID_DEAD /* dead, not yet swept */ };

struct id_entry {
    enum id_state state;
    unsigned sessions; /* connections of the process */
    int pidfd;         /* owned; -1 none */
    struct event *ev;  /* watches pidfd once sessions is 0 */
    bool named;        /* seen in a lock word during the current sweep */
    bool swept;        /* dead when the current sweep began */
};

static struct {
    struct event_base *base;
    int fd;    /* read-write, the daemon's */
    int ro_fd; /* read-only, handed to clients */
    struct slock_ids *ids;
    struct id_entry e[SLOCK_CID_MAX + 1];
    uint32_t next; /* round-robin allocation */
} idt = {.fd = -1, .ro_fd = -1};

static int identity_open_ro(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", idt.fd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static void identity_mark_dead(uint32_t id)
{
    struct id_entry *e = &idt.e[id];
    if (e->ev) {
        event_free(e->ev);
        e->ev = NULL;
    }
    if (e->pidfd >= 0)
        close(e->pidfd);
    e->pidfd = -1;
    e->state = ID_DEAD;
    slock_ids_set(idt.ids, id, false, 0);
    log_msg(LOG_LEVEL_DEBUG, "client id %u (pid %u): the process exited", id, slock_ids_pid(idt.ids, id));
}

static void identity_on_exit(evutil_socket_t fd, short what, void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    if (idt.e[id].state == ID_LIVE && idt.e[id].sessions == 0)
        identity_mark_dead(id);
}

/* The process of id has no connection left: dead now, or when it exits. */
static void identity_watch(uint32_t id)
{
    struct id_entry *e = &idt.e[id];
    if (e->pidfd < 0 || pidfd_exited(e->pidfd)) {
        /* No pidfd (an old kernel): the connection's end is all we know. */
        identity_mark_dead(id);
        return;
    }
    if (!e->ev) {
        e->ev = event_new(idt.base, e->pidfd, EV_READ, identity_on_exit, (void *)(uintptr_t)id);
        if (!e->ev || event_add(e->ev, NULL) < 0)
            identity_mark_dead(id); /* cannot watch: err towards recovery */
    }
}

/* Complexity 21, kept: the steps (take over a stored table, make and seal a
 * new one, open its read-only twin, watch the ids of before) share the
 * unwinding of a half-made table, which reads best in one place. */
int identity_init(struct event_base *base, int stored_fd)
{
    idt.base = base;
    const bool fresh = stored_fd < 0;
    const struct slock_ids *old = NULL;
    if (!fresh) {
        /* A sealed table cannot be written again, not even by us: its
         * content moves to a new one (clients map that at their Hello). */
        struct stat st;
        void *m = MAP_FAILED;
        if (fstat(stored_fd, &st) == 0 && st.st_size == (off_t)slock_ids_size())
            m = mmap(NULL, slock_ids_size(), PROT_READ, MAP_SHARED, stored_fd, 0);
        close(stored_fd);
        if (m == MAP_FAILED)
            return -EBADMSG;
        old = m;
    }
    int fd = (int)syscall(SYS_memfd_create, "mbq-ids",
                          MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL)
        fd = (int)syscall(SYS_memfd_create, "mbq-ids", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    void *m = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, slock_ids_size()) == 0)
        m = mmap(NULL, slock_ids_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    /* Our writable mapping is the last: F_SEAL_FUTURE_WRITE refuses any
     * other, and write(), to whoever reopens the file through /proc. */
    if (m == MAP_FAILED ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | IDENTITY_SEAL_FUTURE_WRITE) < 0) {
        int r = -errno;
        if (m != MAP_FAILED)
            munmap(m, slock_ids_size());
        if (fd >= 0)
            close(fd);
        if (old)
            munmap((void *)old, slock_ids_size());
        return r;
    }
    idt.fd = fd;
    idt.ids = m;
    if (old) {
        memcpy(idt.ids, old, slock_ids_size());
        munmap((void *)old, slock_ids_size());
    }
    idt.ro_fd = identity_open_ro();
    if (idt.ro_fd < 0)
        return idt.ro_fd;
    for (uint32_t id = 0; id <= SLOCK_CID_MAX; id++)
        idt.e[id] = (struct id_entry){.pidfd = -1};
    /* After a restart: the ids of before stay taken; each is watched until
     * its process reconnects or exits. */
    for (uint32_t id = 2; !fresh && id <= SLOCK_CID_MAX; id++) {
        if (!slock_ids_alive(idt.ids, id)) {
            if (slock_ids_pid(idt.ids, id))
                idt.e[id].state = ID_DEAD; /* swept before reuse, like any */
            continue;
        }
        idt.e[id].state = ID_LIVE;
        idt.e[id].pidfd = (int)syscall(SYS_pidfd_open, (pid_t)slock_ids_pid(idt.ids, id), 0);
        identity_watch(id);
    }
    slock_ids_set(idt.ids, IDENTITY_DAEMON, true, (uint32_t)getpid());
    idt.e[IDENTITY_DAEMON].state = ID_LIVE;
    idt.next = 2;
    slock_set_identity(IDENTITY_DAEMON, idt.ids);
    return 0;
}

int identity_fd(void)
{
    return idt.fd;
}

int identity_ro_fd(void)
{
    return idt.ro_fd;
}

static bool identity_same_process(uint32_t id, pid_t pid, int pidfd)
{
    const struct id_entry *e = &idt.e[id];
    if (e->state != ID_LIVE || slock_ids_pid(idt.ids, id) != (uint32_t)pid)
        return false;
    /* The same pid: the same process unless the one we know exited. */
    return !pidfd_exited(e->pidfd) || pidfd < 0;
}

uint32_t identity_attach(pid_t pid, int pidfd, uint32_t asked)
{
    if (!idt.ids || pid <= 0)
        return 0;
    uint32_t id = 0;
    if (asked >= 2 && asked <= SLOCK_CID_MAX && identity_same_process(asked, pid, pidfd))
        id = asked;
    for (uint32_t i = 2; !id && i <= SLOCK_CID_MAX; i++)
        if (identity_same_process(i, pid, pidfd))
            id = i;
    if (id) {
        struct id_entry *e = &idt.e[id];
        if (e->ev) { /* it came back: no longer waiting for its exit */
            event_free(e->ev);
            e->ev = NULL;
        }
        e->sessions++;
        return id;
    }
    for (uint32_t n = 0; n < SLOCK_CID_MAX - 1; n++) {
        uint32_t i = 2 + (idt.next - 2 + n) % (SLOCK_CID_MAX - 1);
        if (idt.e[i].state == ID_FREE) {
            id = i;
            break;
        }
    }
    if (!id) {
        log_msg(LOG_LEVEL_WARNING, "pid %d: no client id free; it owns locks by thread id",
                (int)pid);
        return 0;
    }
    idt.next = id + 1;
    struct id_entry *e = &idt.e[id];
    *e = (struct id_entry){.state = ID_LIVE, .sessions = 1, .pidfd = -1};
    if (pidfd >= 0)
        e->pidfd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
    slock_ids_set(idt.ids, id, true, (uint32_t)pid);
    return id;
}

void identity_detach(uint32_t id)
{
    if (id < 2 || id > SLOCK_CID_MAX || idt.e[id].state != ID_LIVE || idt.e[id].sessions == 0)
        return;
    if (--idt.e[id].sessions == 0)
        identity_watch(id);
}

bool identity_alive(uint32_t id)
{
    return id <= SLOCK_CID_MAX && idt.ids && slock_ids_alive(idt.ids, id);
}

pid_t identity_pid(uint32_t id)
{
    return id <= SLOCK_CID_MAX && idt.ids ? (pid_t)slock_ids_pid(idt.ids, id) : 0;
}

pid_t identity_owner_pid(uint32_t owner)
{
    return owner & SLOCK_CID ? identity_pid((owner >> SLOCK_CID_SHIFT) & SLOCK_CID_MAX) : 0;
}

void identity_sweep_begin(void)
{
    for (uint32_t id = 0; id <= SLOCK_CID_MAX; id++) {
        idt.e[id].named = false;
        idt.e[id].swept = idt.e[id].state == ID_DEAD;
    }
}

void identity_sweep_note(uint32_t owner)
{
    if (owner & SLOCK_CID)
        idt.e[(owner >> SLOCK_CID_SHIFT) & SLOCK_CID_MAX].named = true;
}

void identity_sweep_end(void)
{
    for (uint32_t id = 2; id <= SLOCK_CID_MAX; id++)
        if (idt.e[id].state == ID_DEAD && idt.e[id].swept && !idt.e[id].named) {
            idt.e[id].state = ID_FREE;
            slock_ids_clear_pid(idt.ids, id);
        }
}

int identity_setup(struct event_base *base, struct systemd_fd *passed, int n_passed, bool store)
{
    int stored = -1;
    for (int i = 0; i < n_passed; i++)
        if (passed[i].fd >= 0 && strcmp(passed[i].name, IDENTITY_FDNAME) == 0 && stored < 0) {
            stored = passed[i].fd;
            passed[i].fd = -1; /* ours: restore.c leaves taken ones alone */
        }
    int r = identity_init(base, stored);
    if (r == -EBADMSG) {
        log_msg(LOG_LEVEL_WARNING, "the stored client id table is not one; starting a new one");
        if (store)
            systemd_fdstore_remove(IDENTITY_FDNAME);
        stored = -1;
        r = identity_init(base, -1);
    }
    if (r < 0)
        return r;
    if (stored >= 0) {
        log_msg(LOG_LEVEL_DEBUG, "client ids restored from the fd store");
        if (store) /* the new table in place of the old (see identity_init) */
            systemd_fdstore_remove(IDENTITY_FDNAME);
    }
    if (store && (r = systemd_fdstore_add(idt.fd, IDENTITY_FDNAME)) < 0)
        log_msg(LOG_LEVEL_WARNING, "cannot keep the client id table across restarts: %s",
                strerror(-r));
    return 0;
}
