/* Reclaim: releasing the buffer references a dead client process held.
 *
 * Role. Pools count, per client slot (one per attached process, named by
 * its pid), how many references the process holds on each block. When a
 * process dies without releasing them (kill -9, crash), the daemon releases
 * them with pool_reclaim_slot_ex(), and recounts the blocks the process was
 * in the middle of moving (its intent records, and the run records of
 * its batched calls, each an intent on every block it names), counting the entries of
 * every buffer queue it serves (registry.c), so nothing leaks. A recount
 * that must wait is retried by registry_age_out() on the 100 ms timer.
 *
 * When. The trigger is the end of the process's session, which the daemon
 * sees as EOF on the socket the moment the kernel closes the dead process's
 * files: no polling. But a session also ends while its process lives on (it
 * disconnected, or the daemon dropped it for a protocol violation), and a
 * live process's references must never be released under it: another
 * producer would be handed the block it is still filling. So the references
 * are released at session end only if no other session of the process is
 * alive and the process is gone or exiting: its pidfd is readable (exited),
 * or proc_state() (common/proc.h) shows it gone, a zombie or with
 * PF_EXITING, which the kernel sets before it closes a dying process's
 * files, so a kill -9 is always seen as exiting by the time its EOF
 * arrives. Otherwise, if the process
 * still holds a pool slot, the daemon subscribes to its exit (pidwatch.c)
 * and releases what it holds then; the pidfd (SO_PEERPIDFD, or pidfd_open at accept)
 * names that process, not a later one with the same pid.
 *
 * Limits. Pool slots carry the pid the client sees (getpid()); a client in
 * another pid namespace has a different one there, and its slot is not
 * found. pool_reclaim_slot_ex() does not check the slot's pid again, so a slot
 * handed to a new process between the scan and the call would be released
 * (a window of nanoseconds, against a process that has to attach first). */
#include "reclaim.h"

#include "log.h"
#include "pidwatch.h"

#include "common/proc.h"

#include <errno.h>
#include <inttypes.h>

struct Reclaimer {
    PidWatch *pidwatch;
    Registry *registry;
    reclaim_has_session_fn *has_session;
    void *has_session_ctx;
};

int reclaimer_new(Reclaimer **ret, PidWatch *pw, Registry *registry,
                  reclaim_has_session_fn *has_session, void *ctx)
{
    Reclaimer *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return -ENOMEM;
    rc->pidwatch = pw;
    rc->registry = registry;
    rc->has_session = has_session;
    rc->has_session_ctx = ctx;
    *ret = rc;
    return 0;
}

Reclaimer *reclaimer_free(Reclaimer *rc)
{
    if (!rc)
        return NULL;
    pidwatch_forget(rc->pidwatch, rc);
    free(rc);
    return NULL;
}

static void reclaim_on_exit(pid_t pid, void *userdata)
{
    Reclaimer *rc = userdata;
    /* The pid may have been reaped and reused by a client since the pidfd
     * fired; then its slot is that client's, not ours to release. */
    if (rc->has_session(rc->has_session_ctx, pid))
        return;
    uint64_t t0 = mono_ns();
    unsigned pools;
    uint64_t released = registry_reclaim_pid(rc->registry, pid, &pools);
    log_msg_fields(released ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG,
                   LOG_FIELDS(LOG_NUM("CLIENT_PID", pid), LOG_NUM("RELEASED", released)),
                   "pid %d exited: released %" PRIu64 " buffer references in %u pools in %" PRIu64 " us",
                   (int)pid, released, pools, (mono_ns() - t0) / 1000);
}

void reclaimer_session_ended(Reclaimer *rc, pid_t pid, int pidfd, struct reclaim_outcome *ret)
{
    *ret = (struct reclaim_outcome){.result = RECLAIM_NONE};
    if (rc->has_session(rc->has_session_ctx, pid)) {
        safe_close(pidfd);
        ret->result = RECLAIM_SHARED;
        return;
    }
    /* pidfds become readable when the process exits; else the one rule. */
    if (pidfd_exited(pidfd) || proc_gone(pid)) {
        safe_close(pidfd);
        ret->released = registry_reclaim_pid(rc->registry, pid, &ret->pools);
        ret->result = RECLAIM_DONE;
        return;
    }
    if (!registry_pid_has_pool_slot(rc->registry, pid)) {
        safe_close(pidfd);
        return;
    }
    /* Without the pidfd of this process, a pid alone could name a later one. */
    if (pidfd < 0) {
        ret->result = RECLAIM_LEFT;
        return;
    }
    /* With a pidfd given, pidwatch_add subscribes or fails: never 0. */
    int r = pidwatch_add(rc->pidwatch, pid, pidfd, reclaim_on_exit, rc);
    ret->result = r < 0 ? RECLAIM_LEFT : RECLAIM_WATCHING;
}
