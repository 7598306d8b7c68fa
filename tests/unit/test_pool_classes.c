/* Pools of several size classes (pool.h "Size classes"): parameters and
 * their errors, which class serves which size, exhaustion and the fallback
 * to a larger class, where each class's data lies, a second mapping and a
 * forged class table, the shared cache, age-out per class, a repair after
 * a holder died with the lock, the recount of a dead process's moves in
 * two classes, and kill -9 of churning processes at many
 * points: every block of every class comes back. */
#include "check.h"

#include "pool_internal.h"

#include <mbq/status.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCLS 3
static const uint64_t cls_size[NCLS] = {64, 256, 8192};
static const uint32_t cls_count[NCLS] = {32, 16, 8};
#define NBLOCKS (32 + 16 + 8)

static int make_classed(struct pool *p, bool prefault)
{
    struct pool_params prm = {.nclasses = NCLS, .prefault = prefault};
    for (uint32_t c = 0; c < NCLS; c++) {
        prm.class_size[c] = cls_size[c];
        prm.class_count[c] = cls_count[c];
    }
    return pool_create(&prm, p);
}

static struct pool_class_stats cstats(struct pool *p, uint32_t c)
{
    struct pool_class_stats s;
    memset(&s, 0, sizeof(s));
    CHECK_EQ(pool_class_stats(p, c, &s), 0);
    return s;
}

static uint64_t span_len(struct pool *p, uint64_t h)
{
    int fd;
    uint64_t off, len;
    CHECK_EQ(pool_block_span(p, h, &fd, &off, &len), 0);
    return len;
}

static uint32_t class_of_handle(struct pool *p, uint64_t h)
{
    return pool_class_of(p, (uint32_t)h - 1);
}

/* A pid that certainly names no process now: a child we reaped. */
static uint32_t dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    int st;
    waitpid(pid, &st, 0);
    return (uint32_t)pid;
}

static int no_queues(void *ctx, uint64_t handle, uint64_t *n)
{
    (void)ctx;
    (void)handle;
    *n = 0;
    return 0;
}

/* Every block of every class is free and can be allocated once, each
 * from its own class (asked for by its class's size): nothing leaked,
 * nothing listed twice, nothing in the wrong class's list. */
static void check_whole(struct pool *p)
{
    struct pool_stats s;
    REQUIRE(pool_stats(p, &s) == 0);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.warm + s.cold, NBLOCKS);
    CHECK_EQ(s.audits_pending, 0);
    uint64_t h[NBLOCKS];
    uint32_t got = 0;
    for (uint32_t c = 0; c < NCLS; c++) {
        for (uint32_t i = 0; i < cls_count[c]; i++) {
            REQUIRE(pool_alloc(p, cls_size[c], &h[got]) == 0);
            CHECK_EQ(class_of_handle(p, h[got]), c);
            got++;
        }
    }
    uint64_t extra;
    CHECK_EQ(pool_alloc(p, 1, &extra), MBQ_POOL_ERR_ALLOCATION_FAILED);
    for (uint32_t i = 0; i < got; i++)
        CHECK_EQ(pool_release(p, h[i], true), 0);
    for (uint32_t c = 0; c < NCLS; c++)
        CHECK_EQ(cstats(p, c).used, 0);
}

static void test_params_errors(void)
{
    struct pool p;
    struct pool_params prm = {.nclasses = 2,
                              .class_size = {256, 64},
                              .class_count = {4, 4}};
    CHECK_EQ(pool_create(&prm, &p), MBQ_POOL_ERR_INVALID_PARAMETER); /* unordered */
    prm.class_size[0] = 100; /* 128 after rounding */
    prm.class_size[1] = 120; /* 128 too: not strictly ascending */
    CHECK_EQ(pool_create(&prm, &p), MBQ_POOL_ERR_INVALID_PARAMETER);
    prm.class_size[1] = 4096;
    prm.class_count[1] = 0;
    CHECK_EQ(pool_create(&prm, &p), MBQ_POOL_ERR_INVALID_PARAMETER); /* empty class */
    prm.class_count[1] = 4;
    prm.class_size[0] = 0;
    CHECK_EQ(pool_create(&prm, &p), MBQ_POOL_ERR_INVALID_PARAMETER); /* size 0 */
    prm.class_size[0] = 64;
    prm.nclasses = POOL_MAX_CLASSES + 1;
    CHECK_EQ(pool_create(&prm, &p), MBQ_POOL_ERR_INVALID_PARAMETER); /* too many */
    prm.nclasses = 2;
    prm.class_count[0] = POOL_MAX_BLOCKS;
    CHECK_EQ(pool_create(&prm, &p), MBQ_POOL_ERR_INVALID_PARAMETER); /* too many blocks */
    prm.class_count[0] = 4;
    prm.class_size[1] = UINT64_MAX / 2;
    CHECK_EQ(pool_create(&prm, &p), MBQ_POOL_ERR_INVALID_PARAMETER); /* too large */
    /* One class in the table is a pool without classes. */
    struct pool_params one = {.nclasses = 1, .class_size = {100}, .class_count = {4}};
    REQUIRE(pool_create(&one, &p) == 0);
    CHECK_EQ(p.nclasses, 1);
    CHECK_EQ(p.block_size, 128);
    CHECK_EQ(p.sh->nclasses, 0);
    pool_detach(&p);
}

static void test_class_selection(void)
{
    struct pool p;
    REQUIRE(make_classed(&p, true) == 0);
    CHECK_EQ(p.nclasses, NCLS);
    CHECK_EQ(p.block_size, 8192);
    CHECK_EQ(p.block_count, NBLOCKS);
    CHECK_EQ(pool_class_for(&p, 0), POOL_NONE);
    CHECK_EQ(pool_class_for(&p, 1), 0);
    CHECK_EQ(pool_class_for(&p, 64), 0);
    CHECK_EQ(pool_class_for(&p, 65), 1);
    CHECK_EQ(pool_class_for(&p, 256), 1);
    CHECK_EQ(pool_class_for(&p, 257), 2);
    CHECK_EQ(pool_class_for(&p, 8192), 2);
    CHECK_EQ(pool_class_for(&p, 8193), POOL_NONE);
    const uint64_t sizes[] = {1, 64, 65, 256, 257, 8192};
    const uint32_t want[] = {0, 0, 1, 1, 2, 2};
    for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
        uint64_t h, got;
        REQUIRE(pool_alloc(&p, sizes[i], &h) == 0);
        CHECK_EQ(class_of_handle(&p, h), want[i]);
        CHECK_EQ(span_len(&p, h), cls_size[want[i]]);
        /* the size is clamped to the block, never to the largest class */
        CHECK_EQ(pool_set_data_size(&p, h, cls_size[want[i]] + 1), -EINVAL);
        CHECK_EQ(pool_set_data_size(&p, h, cls_size[want[i]]), 0);
        CHECK_EQ(pool_read_meta(&p, h, &got, NULL, NULL, NULL), 0);
        CHECK_EQ(got, cls_size[want[i]]);
        CHECK_EQ(pool_release(&p, h, true), 0);
    }
    /* The cache's limit is the pool's, not its smallest class's; a refill
     * takes at most half a class (class 2 has 8 blocks: 4, one of them
     * allocated). */
    CHECK_EQ(p.cache.max, POOL_CACHE_MAX);
    struct pool fresh; /* every block warm, the cache empty */
    REQUIRE(make_classed(&fresh, true) == 0);
    uint64_t h;
    REQUIRE(pool_alloc(&fresh, 5000, &h) == 0);
    CHECK_EQ(cstats(&fresh, 2).cached, 3);
    CHECK_EQ(fresh.cache.n, 3);
    CHECK_EQ(pool_release(&fresh, h, true), 0);
    pool_detach(&fresh);
    CHECK_EQ(pool_alloc(&p, 8193, &h), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(pool_alloc(&p, 0, &h), MBQ_POOL_ERR_INVALID_PARAMETER);
    struct pool_stats s;
    REQUIRE(pool_stats(&p, &s) == 0);
    CHECK_EQ(s.nclasses, NCLS);
    CHECK_EQ(s.block_size, 8192);
    CHECK_EQ(s.used, 0);
    pool_detach(&p);
}

/* Each class's data is its own: blocks aligned as the rules say (a cache
 * line packed below a page, a page above), inside the segment, and no two
 * blocks of any class overlap (each is filled whole with its own byte and
 * read back). */
static void test_data_layout(void)
{
    struct pool p;
    REQUIRE(make_classed(&p, true) == 0);
    uint64_t h[NBLOCKS];
    uint32_t n = 0;
    for (uint32_t c = 0; c < NCLS; c++) {
        for (uint32_t i = 0; i < cls_count[c]; i++, n++) {
            REQUIRE(pool_alloc(&p, cls_size[c], &h[n]) == 0);
            int fd;
            uint64_t off, len;
            CHECK_EQ(pool_block_span(&p, h[n], &fd, &off, &len), 0);
            CHECK_EQ(len, cls_size[c]);
            CHECK_EQ(off % (cls_size[c] < 4096 ? 64 : 4096), 0);
            CHECK(off + len <= p.seg.size);
            CHECK_EQ((uint8_t *)pool_data(&p, h[n]), (uint8_t *)p.seg.base + off);
            memset(pool_data(&p, h[n]), (int)(n + 1), (size_t)len);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *d = pool_data(&p, h[i]);
        uint64_t len = span_len(&p, h[i]);
        for (uint64_t k = 0; k < len; k++)
            if (d[k] != (uint8_t)(i + 1)) {
                CHECK_EQ(d[k], (uint8_t)(i + 1));
                break;
            }
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    }
    pool_detach(&p);
}

/* A class with no free block falls back to the next larger one; the pool
 * fails only when no class that fits has one. Per-class figures follow. */
static void test_exhaustion_fallback(void)
{
    struct pool p;
    REQUIRE(make_classed(&p, true) == 0);
    uint64_t h[NBLOCKS];
    uint32_t n = 0;
    for (uint32_t i = 0; i < cls_count[0]; i++)
        REQUIRE(pool_alloc(&p, 10, &h[n++]) == 0);
    CHECK_EQ(cstats(&p, 0).used, cls_count[0]);
    CHECK_EQ(cstats(&p, 0).warm, 0);
    /* class 0 is empty: 10 bytes come from class 1, then class 2 */
    for (uint32_t i = 0; i < cls_count[1] + cls_count[2]; i++) {
        REQUIRE(pool_alloc(&p, 10, &h[n]) == 0);
        CHECK_EQ(class_of_handle(&p, h[n]), i < cls_count[1] ? 1u : 2u);
        n++;
    }
    uint64_t x;
    CHECK_EQ(pool_alloc(&p, 1, &x), MBQ_POOL_ERR_ALLOCATION_FAILED);
    /* a large allocation never falls back to a smaller class */
    CHECK_EQ(pool_release(&p, h[0], true), 0); /* a class-0 block is free */
    CHECK_EQ(pool_alloc(&p, 100, &x), MBQ_POOL_ERR_ALLOCATION_FAILED);
    REQUIRE(pool_alloc(&p, 64, &h[0]) == 0);
    CHECK_EQ(class_of_handle(&p, h[0]), 0);
    struct pool_stats s;
    REQUIRE(pool_stats(&p, &s) == 0);
    CHECK_EQ(s.used, NBLOCKS);
    CHECK_EQ(s.alloc_failures, 2);
    for (uint32_t c = 0; c < NCLS; c++) {
        struct pool_class_stats k = cstats(&p, c);
        CHECK_EQ(k.block_size, cls_size[c]);
        CHECK_EQ(k.block_count, cls_count[c]);
        CHECK_EQ(k.used, cls_count[c]);
    }
    for (uint32_t i = 0; i < n; i++)
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    check_whole(&p);
    pool_detach(&p);
}

/* The cache is shared by the classes: frees of one class do not hand
 * their blocks to an allocation of another, and a spill returns each
 * block to its own class's list. */
static void test_shared_cache(void)
{
    struct pool p;
    struct pool_params prm = {.nclasses = 2, .class_size = {64, 4096},
                              .class_count = {64, 32}, .prefault = true};
    REQUIRE(pool_create(&prm, &p) == 0);
    CHECK_EQ(p.cache.max, POOL_CACHE_MAX);
    uint64_t a[40], b[20];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 40; i++)
            REQUIRE(pool_alloc(&p, 64, &a[i]) == 0);
        for (int i = 0; i < 20; i++)
            REQUIRE(pool_alloc(&p, 4096, &b[i]) == 0);
        for (int i = 0; i < 40; i++) {
            CHECK_EQ(class_of_handle(&p, a[i]), 0);
            CHECK_EQ(pool_release(&p, a[i], true), 0);
        }
        for (int i = 0; i < 20; i++) {
            CHECK_EQ(class_of_handle(&p, b[i]), 1);
            CHECK_EQ(pool_release(&p, b[i], true), 0);
        }
        CHECK(p.cache.n > 0);
        for (uint32_t i = 0; i < p.cache.n; i++) /* only freed blocks, each once */
            for (uint32_t j = i + 1; j < p.cache.n; j++)
                CHECK(p.cache.idx[i] != p.cache.idx[j]);
        CHECK_EQ(cstats(&p, 0).used, 0);
        CHECK_EQ(cstats(&p, 1).used, 0);
    }
    /* lists hold their own class only: rebuilt and checked under the lock */
    REQUIRE(pool_lock(&p) == 0);
    CHECK(pool_lists_ok_locked(&p));
    pool_unlock(&p);
    pool_detach(&p);
}

/* A second mapping reads the classes from the table; a table that
 * disagrees with its own sizes and counts is refused. */
static void test_attach_and_forged_table(void)
{
    struct pool p, q;
    REQUIRE(make_classed(&p, false) == 0);
    REQUIRE(pool_attach(p.seg.fd, &q) == 0);
    CHECK_EQ(q.nclasses, NCLS);
    for (uint32_t c = 0; c < NCLS; c++) {
        CHECK_EQ(q.cls[c].size, cls_size[c]);
        CHECK_EQ(q.cls[c].first, p.cls[c].first);
        CHECK_EQ(q.cls[c].count, cls_count[c]);
        CHECK_EQ(q.cls[c].data - (uint8_t *)q.seg.base, p.cls[c].data - (uint8_t *)p.seg.base);
    }
    uint64_t h;
    REQUIRE(pool_alloc(&q, 200, &h) == 0); /* a cold class-1 block */
    CHECK_EQ(class_of_handle(&p, h), 1);
    memset(pool_data(&q, h), 0x5a, 256);
    CHECK_EQ(((uint8_t *)pool_data(&p, h))[255], 0x5a);
    CHECK_EQ(pool_release(&q, h, true), 0);
    pool_detach(&q);

    struct pool_class_shared *t =
        (struct pool_class_shared *)((uint8_t *)p.seg.base + POOL_CLASSES_OFF);
    struct pool_class_shared saved[NCLS];
    memcpy(saved, t, sizeof(saved));
    uint32_t saved_n = p.sh->nclasses;
#define EXPECT_BAD(stmt)                                                     \
    do {                                                                     \
        stmt;                                                                \
        CHECK_EQ(pool_attach(p.seg.fd, &q), -EBADMSG);                       \
        memcpy(t, saved, sizeof(saved));                                     \
        p.sh->nclasses = saved_n;                                            \
    } while (0)
    EXPECT_BAD(t[1].block_size = 512);         /* data offsets no longer follow */
    EXPECT_BAD(t[1].first = 31);               /* overlapping runs */
    EXPECT_BAD(t[2].data_off += 4096);         /* data moved */
    EXPECT_BAD(t[2].block_size = 256);         /* not ascending */
    EXPECT_BAD(t[0].count = 33);               /* counts disagree with the header */
    EXPECT_BAD(p.sh->nclasses = 200);          /* past the table */
    EXPECT_BAD(p.sh->nclasses = 2);            /* fewer classes than blocks */
    EXPECT_BAD(t[1].block_size = 100);         /* not a cache-line multiple */
#undef EXPECT_BAD
    REQUIRE(pool_attach(p.seg.fd, &q) == 0); /* restored: fine again */
    pool_detach(&q);
    pool_detach(&p);
}

/* 512-byte units allocated to the memfd: drops when pages are punched. */
static long long file_blocks(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (long long)st.st_blocks : -1;
}

/* Flush ages out every class's warm blocks; the page class returns its
 * pages, and every block is then cold in its own class. */
static void test_flush_per_class(void)
{
    struct pool p;
    REQUIRE(make_classed(&p, true) == 0);
    uint64_t h[NBLOCKS];
    uint32_t n = 0;
    for (uint32_t c = 0; c < NCLS; c++)
        for (uint32_t i = 0; i < cls_count[c]; i++)
            REQUIRE(pool_alloc(&p, cls_size[c], &h[n++]) == 0);
    for (uint32_t i = 0; i < n; i++)
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    long long before = file_blocks(p.seg.fd);
    CHECK_EQ(pool_flush(&p), NBLOCKS);
    long long after = file_blocks(p.seg.fd);
    /* at least the page class's 64 KiB and class 1's page of packed
     * blocks (class 0's 2 KiB share a page with nothing else, but cover
     * none whole) */
    CHECK(before - after >= (8 * 8192 + 4096) / 512);
    for (uint32_t c = 0; c < NCLS; c++) {
        struct pool_class_stats k = cstats(&p, c);
        CHECK_EQ(k.cold, cls_count[c]);
        CHECK_EQ(k.warm, 0);
    }
    check_whole(&p);
    pool_detach(&p);
}

/* A holder died with the lock in the middle of a list update of class 1:
 * the next locker rebuilds every class's lists from the descriptors. */
static void test_repair_after_dead_holder(void)
{
    struct pool p;
    REQUIRE(make_classed(&p, true) == 0);
    uint64_t a, b, c;
    REQUIRE(pool_alloc(&p, 100, &a) == 0);
    REQUIRE(pool_alloc(&p, 100, &b) == 0);
    REQUIRE(pool_alloc(&p, 5000, &c) == 0);
    CHECK_EQ(pool_release(&p, b, true), 0);
    struct pool_lists *l1 = p.cls[1].lists, *l2 = p.cls[2].lists;
    l1->warm_head = p.cls[0].first; /* a block of another class */
    l1->warm_count = 999;
    l2->cold_head = 3;
    l2->warm_tail = POOL_NONE;
    atomic_store(&p.sh->lock.word, dead_pid());
    REQUIRE(pool_lock(&p) == 0); /* recovers and repairs */
    CHECK(pool_lists_ok_locked(&p));
    pool_unlock(&p);
    CHECK_EQ(cstats(&p, 1).used, 1);
    CHECK_EQ(cstats(&p, 2).used, 1);
    CHECK_EQ(pool_release(&p, a, true), 0);
    CHECK_EQ(pool_release(&p, c, true), 0);
    check_whole(&p);
    pool_detach(&p);
}

/* A process that died inside a retain of a block of the largest class
 * (refcount raised, holding not recorded: what a kill -9 between the two
 * leaves) and one that died after claiming a class-1 block before
 * recording it: the reclaim recounts both blocks through their intents,
 * drops the one excess reference and frees the unrecorded block; the
 * block the parent holds keeps its reference. */
static void test_audit_per_class(void)
{
    struct pool p;
    REQUIRE(make_classed(&p, true) == 0);
    uint64_t h;
    REQUIRE(pool_alloc(&p, 6000, &h) == 0);
    CHECK_EQ(class_of_handle(&p, h), 2);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct pool c;
        if (pool_attach(p.seg.fd, &c) != 0)
            _exit(10);
        const uint32_t idx = (uint32_t)h - 1;
        pool_move_begin(&c, h, 0);
        if (pool_retain(&c, h, true) != 0)
            _exit(11);
        atomic_store(&c.holdings[(size_t)c.slot * c.block_count + idx], 0);
        uint64_t g;
        if (pool_alloc(&c, 200, &g) != 0 || class_of_handle(&c, g) != 1)
            _exit(12);
        pool_move_begin(&c, g, 1);
        atomic_store(&c.holdings[(size_t)c.slot * c.block_count + ((uint32_t)g - 1)], 0);
        _exit(0); /* dies inside both moves */
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ((uint32_t)atomic_load(&p.blocks[(uint32_t)h - 1].ref), 2);
    CHECK_EQ(cstats(&p, 1).used, 1);
    CHECK(pool_reclaim_dead_ex(&p, no_queues, NULL) >= 0);
    CHECK_EQ((uint32_t)atomic_load(&p.blocks[(uint32_t)h - 1].ref), 1); /* ours */
    CHECK_EQ(cstats(&p, 1).used, 0);
    struct pool_stats s;
    REQUIRE(pool_stats(&p, &s) == 0);
    CHECK_EQ(s.audits_pending, 0);
    CHECK_EQ(s.audited, 2);
    CHECK_EQ(pool_release(&p, h, true), 0);
    check_whole(&p);
    pool_detach(&p);
}

/* ---- kill -9 of churning processes ---- */

/* Allocates random sizes (every class, and fallbacks), retains and
 * releases, forever; tells the parent once it is under way. */
static void churn(int fd, int ready, uint64_t seed)
{
    struct pool c;
    if (pool_attach(fd, &c) != 0)
        _exit(2);
    uint64_t held[12] = {0};
    uint64_t x = seed | 1;
    bool told = false;
    for (uint64_t op = 0;; op++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t i = (uint32_t)(x % 12);
        if (held[i]) {
            if ((x >> 8) & 1 && pool_retain(&c, held[i], true) == 0)
                (void)pool_release(&c, held[i], true);
            (void)pool_release(&c, held[i], true);
            held[i] = 0;
        } else {
            uint64_t size = 1 + (x >> 16) % 8192;
            if (pool_alloc(&c, size, &held[i]) != 0)
                held[i] = 0;
            else
                ((uint8_t *)pool_data(&c, held[i]))[size - 1] = 1;
        }
        if (!told && op == 200) {
            uint8_t b = 1;
            if (write(ready, &b, 1) != 1)
                _exit(3);
            told = true;
        }
    }
}

/* Rounds of three churners killed at varied points (the parent spins a
 * varying while before each kill, after they are under way); after each
 * round's reclaim every block of every class is back, and the lists are
 * exact. */
static void test_kill_torture(void)
{
    alarm(120);
    struct pool p;
    REQUIRE(make_classed(&p, true) == 0);
    for (int round = 0; round < 40; round++) {
        int rp[2];
        REQUIRE(pipe(rp) == 0);
        pid_t kid[3];
        for (int k = 0; k < 3; k++) {
            kid[k] = fork();
            REQUIRE(kid[k] >= 0);
            if (kid[k] == 0) {
                close(rp[0]);
                churn(p.seg.fd, rp[1], (uint64_t)round * 7919 + (uint64_t)k * 104729 + 1);
            }
        }
        close(rp[1]);
        for (int k = 0; k < 3; k++) {
            uint8_t b;
            REQUIRE(read(rp[0], &b, 1) == 1);
        }
        close(rp[0]);
        for (int k = 0; k < 3; k++) {
            /* a varying while into the churn: a different instruction each time */
            for (volatile uint32_t spin = 0; spin < (uint32_t)(round * 5003 + k * 1777) % 200000;
                 spin++)
                ;
            CHECK_EQ(kill(kid[k], SIGKILL), 0);
        }
        for (int k = 0; k < 3; k++) {
            int st;
            REQUIRE(waitpid(kid[k], &st, 0) == kid[k]);
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        }
        for (int tries = 0; tries < 100 && pool_reclaim_dead_ex(&p, no_queues, NULL) >= 0 &&
                            pool_audit_pending(&p);
             tries++)
            ;
        CHECK(!pool_audit_pending(&p));
        REQUIRE(pool_lock(&p) == 0);
        CHECK(pool_lists_ok_locked(&p));
        pool_unlock(&p);
        check_whole(&p);
    }
    pool_detach(&p);
    alarm(0);
}

CHECK_MAIN(CASE(test_params_errors), CASE(test_class_selection), CASE(test_data_layout),
           CASE(test_exhaustion_fallback), CASE(test_shared_cache),
           CASE(test_attach_and_forged_table), CASE(test_flush_per_class),
           CASE(test_repair_after_dead_holder), CASE(test_audit_per_class),
           CASE(test_kill_torture))
