/* Whether a process (or thread) is gone: one rule for every layer.
 *
 * The rule. A task is PROC_GONE when kill(2) says ESRCH. It is
 * PROC_EXITING when /proc/ID/stat shows it a zombie ('Z'), dead ('X', 'x')
 * or with PF_EXITING set: the kernel sets PF_EXITING at the start of
 * do_exit(), before it closes the task's files, so a process killed with
 * SIGKILL is seen exiting by the time its socket's EOF reaches the daemon,
 * and an exiting task runs no more user code (it cannot touch a lock or a
 * buffer again). Otherwise, or when /proc cannot say (not mounted, not ours
 * to read), it is PROC_ALIVE: the benefit of the doubt, since taking a live
 * process's lock or references is the one mistake that corrupts.
 *
 * Limits. A pid is only a number: a reaped pid reused by another process
 * reads as alive. Where that matters, hold a pidfd (pidfd_exited below). */
#ifndef MBQ_COMMON_PROC_H
#define MBQ_COMMON_PROC_H

#include <stdbool.h>
#include <sys/types.h>

enum proc_state {
    PROC_ALIVE = 0,
    PROC_EXITING = 1, /* zombie, dead, or past the point of no return */
    PROC_GONE = 2,    /* no such task */
};

/* The state of task id (a process or thread id, as kill(2) and /proc take). */
enum proc_state proc_state(pid_t id);

/* proc_state(id) != PROC_ALIVE. */
static inline bool proc_gone(pid_t id)
{
    return proc_state(id) != PROC_ALIVE;
}

/* Whether the process a pidfd names has exited (its pidfd is readable).
 * false for pidfd < 0. */
bool pidfd_exited(int pidfd);

#endif
