/* futex(2) wrappers; see futex.h. */
#include "futex.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

int futex_wait(_Atomic uint32_t *word, uint32_t expected, const struct timespec *deadline)
{
    /* FUTEX_WAIT_BITSET takes an absolute deadline on CLOCK_MONOTONIC, so a
     * wait restarted after EINTR does not stretch the caller's timeout. */
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, expected, deadline,
                     NULL, FUTEX_BITSET_MATCH_ANY);
    if (r == 0)
        return 0;
    if (errno == EAGAIN)
        return 0;
    return -errno;
}

int futex_wake(_Atomic uint32_t *word, int n)
{
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? -errno : (int)r;
}
