/* A repair asked for while a repair runs is not lost.
 *
 * A release whose last reference drops while the pool lock is held past
 * its wait limit (mbqd waits 10 ms, a client 1 s) leaves the block
 * unreferenced but still USED and asks the next lock holder for a repair
 * (POOL_F_NEEDS_REPAIR), which files it. If the lock holder is itself
 * repairing, having read that block's descriptor while it was still
 * referenced, the request must survive the end of that repair: otherwise
 * the block is never filed (a USED block with refcount 0 passes every
 * later check as a release in progress) and the pool has one block less
 * for good.
 *
 * The release is made at a chosen point of the repair, deterministically:
 * the repair sorts the warm blocks with qsort() after it has read every
 * descriptor, and this test's qsort() releases the block there, on the
 * repairing thread itself, with a wait limit of 0, so that its lock
 * attempt fails at once, as a peer's would after its limit. */

#include "check.h"

#include "pool_layout.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>

static struct pool P;
static uint64_t release_in_sort; /* the handle to release inside the repair */

void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    void (*real)(void *, size_t, size_t, int (*)(const void *, const void *)) =
        (void (*)(void *, size_t, size_t, int (*)(const void *, const void *)))dlsym(RTLD_NEXT,
                                                                                  "qsort");
    if (release_in_sort) {
        uint64_t h = release_in_sort;
        release_in_sort = 0;
        slock_set_wait_limit(0);
        CHECK_EQ(pool_release(&P, h, true), 0);
        slock_set_wait_limit(SLOCK_WAIT_DEFAULT_NS);
    }
    if (real)
        real(base, n, size, cmp);
}

static void mark_during_repair_is_kept(void)
{
    struct pool_params prm = {.block_size = 4096, .block_count = 8, .prefault = true};
    REQUIRE(pool_create(&prm, &P) == 0);
    uint64_t h[8];
    for (int i = 0; i < 8; i++)
        REQUIRE(pool_alloc(&P, 64, &h[i]) == 0);
    struct pool_stats s;
    REQUIRE(pool_stats(&P, &s) == 0);
    CHECK_EQ(s.used, 8);
    /* A repair is due (as after a dead lock owner); the next lock holder
     * runs it, and h[3] is released in its middle. */
    __atomic_fetch_or(&P.sh->flags, POOL_F_NEEDS_REPAIR, __ATOMIC_RELAXED);
    release_in_sort = h[3];
    REQUIRE(pool_flush(&P) >= 0);
    CHECK_EQ(release_in_sort, 0); /* it ran */
    /* The next lock holder files h[3]: it can be allocated again. */
    uint64_t again;
    CHECK_EQ(pool_alloc(&P, 64, &again), 0);
    CHECK_EQ((uint32_t)again, (uint32_t)h[3]);
    REQUIRE(pool_stats(&P, &s) == 0);
    CHECK_EQ(s.used, 8);
    CHECK_EQ(pool_release(&P, again, true), 0);
    for (int i = 0; i < 8; i++)
        if (i != 3)
            CHECK_EQ(pool_release(&P, h[i], true), 0);
    REQUIRE(pool_stats(&P, &s) == 0);
    CHECK_EQ(s.used, 0);
    pool_detach(&P);
}

CHECK_MAIN(CASE(mark_during_repair_is_kept))
