/* common/: the one rule for "is this process gone" (proc_state,
 * pidfd_exited), checked on real processes in each state a caller meets —
 * running, killed but not reaped (a zombie), reaped — and the one rule for
 * object names and modes that the library and the daemon share. */
#include "check.h"

#include "common/macro.h"
#include "common/objname.h"
#include "common/proc.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A child that waits until killed; its pid. */
static pid_t spawn_sleeper(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

/* Waits (generously) until pid is a zombie: waitid with WNOWAIT leaves it so. */
static bool wait_zombie(pid_t pid)
{
    siginfo_t si;
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == 0;
}

static void test_proc_state_running_zombie_reaped(void)
{
    CHECK_EQ(proc_state(getpid()), PROC_ALIVE);
    CHECK(!proc_gone(getpid()));
    pid_t pid = spawn_sleeper();
    REQUIRE(pid > 0);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    CHECK_EQ(proc_state(pid), PROC_ALIVE);
    CHECK(!pidfd_exited(pidfd));
    kill(pid, SIGKILL);
    REQUIRE(wait_zombie(pid));
    /* kill(2) still finds a zombie: only /proc tells it from a live one */
    CHECK_EQ(kill(pid, 0), 0);
    CHECK_EQ(proc_state(pid), PROC_EXITING);
    CHECK(proc_gone(pid));
    if (pidfd >= 0)
        CHECK(pidfd_exited(pidfd));
    REQUIRE(waitpid(pid, NULL, 0) == pid);
    CHECK_EQ(proc_state(pid), PROC_GONE);
    safe_close(pidfd);
}

static void test_proc_state_edges(void)
{
    CHECK_EQ(proc_state(0), PROC_GONE);
    CHECK_EQ(proc_state(-1), PROC_GONE);
    /* pid 1 exists (EPERM from kill(2) for a non-root user also means alive) */
    CHECK_EQ(proc_state(1), PROC_ALIVE);
    CHECK(!pidfd_exited(-1));
}

static void test_objname(void)
{
    static const char *good[] = {"a", "cam0/raw", "A.b_c-d", "x/y/z", "..a", "a.."};
    static const char *bad[] = {"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "a b",
                                "a\n", "é"};
    for (size_t i = 0; i < ARRAY_SIZE(good); i++)
        CHECK(objname_valid(good[i]));
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        CHECK(!objname_valid(bad[i]));
    CHECK(!objname_valid(NULL));
    char longest[OBJNAME_MAX + 2];
    memset(longest, 'n', OBJNAME_MAX);
    longest[OBJNAME_MAX] = '\0';
    CHECK(objname_valid(longest));
    longest[OBJNAME_MAX] = 'n';
    longest[OBJNAME_MAX + 1] = '\0';
    CHECK(!objname_valid(longest));
}

static void test_objmode(void)
{
    CHECK(objmode_valid(0));
    CHECK(objmode_valid(0600));
    CHECK(objmode_valid(0777));
    CHECK(!objmode_valid(01000)); /* sticky */
    CHECK(!objmode_valid(02644)); /* setgid */
    CHECK(!objmode_valid(04755)); /* setuid */
}

static void test_cleanup_keeps_errno(void)
{
    errno = EAGAIN;
    {
        _cleanup_(freep) char *p = malloc(8);
        _cleanup_(closep) int fd = dup(0);
        CHECK(p && fd >= 0);
        errno = EAGAIN;
    }
    CHECK_EQ(errno, EAGAIN);
    int fd = dup(0);
    int taken = TAKE_FD(fd);
    CHECK(taken >= 0);
    CHECK_EQ(fd, -1);
    CHECK_EQ(safe_close(taken), -1);
}

CHECK_MAIN(CASE(test_proc_state_running_zombie_reaped), CASE(test_proc_state_edges),
           CASE(test_objname), CASE(test_objmode), CASE(test_cleanup_keeps_errno))
