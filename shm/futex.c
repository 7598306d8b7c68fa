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

static _Atomic uint64_t futex_slice_ns = FUTEX_SLICE_NS;

void futex_set_slice_ns(uint64_t ns)
{
    atomic_store_explicit(&futex_slice_ns, ns, memory_order_relaxed);
}

int futex_wait_slice(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline)
{
    uint64_t slice = atomic_load_explicit(&futex_slice_ns, memory_order_relaxed);
    if (deadline == UINT64_MAX) {
        /* Relative: the kernel reads the clock it arms the timer on anyway. */
        struct timespec rel = {.tv_sec = (time_t)(slice / 1000000000u),
                               .tv_nsec = (long)(slice % 1000000000u)};
        (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, &rel, NULL, 0);
        return 0;
    }
    uint64_t now = mono_ns();
    if (now >= deadline)
        return -ETIMEDOUT;
    uint64_t until = deadline - now > slice ? now + slice : deadline;
    struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                          .tv_nsec = (long)(until % 1000000000u)};
    (void)futex_wait(word, expected, &ts);
    return 0;
}

int futex_wake(_Atomic uint32_t *word, int n)
{
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

int futex_sleepers_enter(_Atomic uint32_t *count, _Atomic uint32_t *tids, unsigned n,
                         uint32_t self)
{
    atomic_fetch_add_explicit(count, 1, memory_order_seq_cst);
    for (unsigned i = 0; i < n; i++) {
        uint32_t z = 0;
        if (atomic_compare_exchange_strong_explicit(&tids[i], &z, self, memory_order_relaxed,
                                                    memory_order_relaxed))
            return (int)i;
    }
    return -1;
}

/* A waker that took the entry back believed us dead (a scribbled id): it
 * lowered the count for us. */
void futex_sleepers_leave(_Atomic uint32_t *count, _Atomic uint32_t *tids, int slot,
                          uint32_t self)
{
    if (slot >= 0 && !atomic_compare_exchange_strong_explicit(&tids[slot], &self, 0,
                                                              memory_order_acq_rel,
                                                              memory_order_relaxed))
        return;
    atomic_fetch_sub_explicit(count, 1, memory_order_relaxed);
}

void futex_sleepers_reap(_Atomic uint32_t *count, _Atomic uint32_t *tids, unsigned n,
                         bool (*alive)(uint32_t owner))
{
    for (unsigned i = 0; i < n; i++) {
        uint32_t t = atomic_load_explicit(&tids[i], memory_order_acquire);
        if (t == 0 || alive(t) ||
            !atomic_compare_exchange_strong_explicit(&tids[i], &t, 0, memory_order_acq_rel,
                                                     memory_order_relaxed))
            continue;
        uint32_t c = atomic_load_explicit(count, memory_order_relaxed);
        while (c != 0 && !atomic_compare_exchange_weak_explicit(count, &c, c - 1,
                                                                memory_order_relaxed,
                                                                memory_order_relaxed))
            ;
    }
}

void futex_seq_bump(_Atomic uint32_t *seq)
{
    uint32_t s = atomic_load_explicit(seq, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(seq, &s, (s | FUTEX_SEQ_ARMED) + 1,
                                                  memory_order_seq_cst, memory_order_relaxed))
        ;
}

void futex_sleepers_wake(_Atomic uint32_t *seq, _Atomic uint32_t *count, _Atomic uint32_t *tids,
                         unsigned n, _Atomic uint32_t *idle, bool (*alive)(uint32_t owner))
{
    /* Disarm and bump in one step: the sleepers armed on s are ours to
     * wake; one that arms s + 1 afterwards re-checked after our change. */
    uint32_t s = atomic_load_explicit(seq, memory_order_relaxed);
    do {
        if (!(s & FUTEX_SEQ_ARMED))
            return; /* another waker disarmed it and wakes them */
    } while (!atomic_compare_exchange_weak_explicit(seq, &s, s + 1, memory_order_seq_cst,
                                                    memory_order_relaxed));
    if (futex_wake(seq, INT_MAX) > 0) {
        atomic_store_explicit(idle, 0, memory_order_relaxed);
    } else if (atomic_fetch_add_explicit(idle, 1, memory_order_relaxed) + 1 >= FUTEX_IDLE_WAKES) {
        atomic_store_explicit(idle, 0, memory_order_relaxed);
        futex_sleepers_reap(count, tids, n, alive);
    }
}
