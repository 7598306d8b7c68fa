/* proc_state() and pidfd_exited(): see common/proc.h for the rule. */
#include "common/proc.h"

#include "common/macro.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define PF_EXITING_FLAG 0x00000004u /* include/linux/sched.h */

enum proc_state proc_state(pid_t id)
{
    if (id <= 0)
        return PROC_GONE;
    /* kill() resolves any task id, thread or process; EPERM means it exists. */
    if (kill(id, 0) < 0 && errno == ESRCH)
        return PROC_GONE;
    /* A killed process stays a zombie until its parent reaps it, and kill()
     * still finds it: ask /proc for its state and flags. */
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)id);
    _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT && kill(id, 0) < 0 && errno == ESRCH ? PROC_GONE : PROC_ALIVE;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return PROC_ALIVE;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold anything */
    char state;
    unsigned flags;
    if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %u", &state, &flags) != 2)
        return PROC_ALIVE;
    if (state == 'Z' || state == 'X' || state == 'x' || (flags & PF_EXITING_FLAG))
        return PROC_EXITING;
    return PROC_ALIVE;
}

bool pidfd_exited(int pidfd)
{
    if (pidfd < 0)
        return false;
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}
