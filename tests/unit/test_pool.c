/* Memory pools in one process: parameters, allocation and exhaustion,
 * reference counting and stale handles, LIFO reuse, page-aligned data,
 * age-out/flush/invalidate (checked against the memfd's allocated blocks and
 * mincore), second mappings, header validation, client slots and reclaim,
 * and robustness: a pool whose descriptors and list heads are scribbled on
 * must answer every call with a value or an error, and a lock whose owner
 * died must lead to a rebuilt, consistent pool. */
#include "check.h"

#include "futex.h"
#include "pool_layout.h"

#include <mbq/status.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t page_size(void)
{
    return (uint64_t)sysconf(_SC_PAGESIZE);
}

static int make_pool(struct pool *p, uint64_t block_size, uint32_t count, uint64_t age_out_ns,
                     bool prefault)
{
    struct pool_params prm = {.block_size = block_size,
                              .block_count = count,
                              .age_out_ns = age_out_ns,
                              .prefault = prefault};
    return pool_create(&prm, p);
}

/* A pool of count 4 KiB blocks (prefaulted) in *a, and a second
 * attachment of it in *b, as another process would have. */
static int make_pool_pair(struct pool *a, struct pool *b, uint32_t count)
{
    int r = make_pool(a, 4096, count, 0, true);
    if (r != 0)
        return r;
    int fd = dup(a->seg.fd);
    return fd < 0 ? -errno : pool_attach(fd, b);
}

static struct pool_stats stats_of(struct pool *p)
{
    struct pool_stats s;
    memset(&s, 0, sizeof(s));
    CHECK_EQ(pool_stats(p, &s), 0);
    return s;
}

static uint32_t idx_of(uint64_t h)
{
    return (uint32_t)h - 1;
}

static uint32_t refcount_of(struct pool *p, uint64_t h)
{
    return (uint32_t)atomic_load(&p->blocks[idx_of(h)].ref);
}

/* 512-byte units allocated to the memfd: drops when pages are punched. */
static long long file_blocks(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    return (long long)st.st_blocks;
}

/* Resident pages of [addr, addr + len) (page-aligned). */
static size_t resident_pages(void *addr, size_t len)
{
    size_t n = len / page_size();
    unsigned char *vec = calloc(n, 1);
    size_t res = 0;
    if (!vec || mincore(addr, len, vec) != 0) {
        free(vec);
        return (size_t)-1;
    }
    for (size_t i = 0; i < n; i++)
        res += vec[i] & 1;
    free(vec);
    return res;
}

static uint64_t round_up_u64(uint64_t n, uint64_t a)
{
    return (n + a - 1) / a * a;
}

static uint8_t *block_data(struct pool *p, uint32_t idx)
{
    return p->data + (size_t)idx * p->block_size;
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

static void test_params_errors(void)
{
    struct pool p;
    struct pool_params prm = {.block_size = 4096, .block_count = 4};
    CHECK_EQ(pool_create(NULL, &p), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(pool_create(&prm, NULL), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(make_pool(&p, 0, 4, 0, false), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(make_pool(&p, 4096, 0, 0, false), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(make_pool(&p, 4096, POOL_MAX_BLOCKS + 1, 0, false),
             MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(make_pool(&p, UINT64_MAX, 4, 0, false), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(make_pool(&p, UINT64_MAX / 2, 4, 0, false), MBQ_POOL_ERR_INVALID_PARAMETER);

    /* block_size rounds up to whole pages from a page on, to a cache-line
     * multiple below; age-out defaults. */
    CHECK_EQ(pool_block_size_round(0), 0);
    CHECK_EQ(pool_block_size_round(1), 64);
    CHECK_EQ(pool_block_size_round(64), 64);
    CHECK_EQ(pool_block_size_round(100), 128);
    CHECK_EQ(pool_block_size_round(page_size() - 1), page_size());
    CHECK_EQ(pool_block_size_round(page_size() + 1), 2 * page_size());
    CHECK_EQ(pool_block_size_round(UINT64_MAX), 0);
    REQUIRE(make_pool(&p, 100, 3, 0, false) == 0);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.block_size, 128);
    CHECK_EQ(s.block_count, 3);
    CHECK_EQ(p.sh->age_out_ns, POOL_DEFAULT_AGE_OUT_NS);
    CHECK_EQ(s.cold, 3);
    CHECK_EQ(s.warm, 0);
    CHECK_EQ(s.used, 0);
    pool_detach(&p);
    pool_detach(&p); /* idempotent */
    pool_detach(NULL);
}

static void test_alloc_exhaustion(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 8, 0, true) == 0);
    uint64_t h[8], extra = 0;
    for (int i = 0; i < 8; i++)
        CHECK_EQ(pool_alloc(&p, 4096, &h[i]), 0);
    CHECK_EQ(pool_alloc(&p, 1, &extra), MBQ_POOL_ERR_ALLOCATION_FAILED);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.used, 8);
    CHECK_EQ(s.warm + s.cold, 0);
    CHECK_EQ(s.alloc_failures, 1);
    CHECK_EQ(s.allocs, 8);
    CHECK_EQ(pool_held_by_self(&p), 8);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    s = stats_of(&p);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.warm, 8);
    CHECK_EQ(s.frees, 8);
    CHECK_EQ(pool_held_by_self(&p), 0);
    CHECK_EQ(pool_alloc(&p, 1, &extra), 0);
    CHECK_EQ(pool_release(&p, extra, true), 0);
    pool_detach(&p);
}

static void test_alloc_bad_size(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 8192, 2, 0, true) == 0);
    uint64_t h = 0;
    CHECK_EQ(pool_alloc(&p, 0, &h), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(pool_alloc(&p, p.block_size + 1, &h), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(pool_alloc(&p, 1, NULL), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(pool_alloc(NULL, 1, &h), MBQ_POOL_ERR_INVALID_PARAMETER);
    CHECK_EQ(stats_of(&p).used, 0);
    REQUIRE(pool_alloc(&p, p.block_size, &h) == 0);
    struct pool_block *b = pool_block_of(&p, h);
    REQUIRE(b != NULL);
    CHECK_EQ(b->data_size, p.block_size);
    CHECK_EQ(atomic_load(&b->ready), 1);
    CHECK_EQ(b->pts.flags, 0); /* MBQ_TIME_INVALID */
    CHECK_EQ(b->dts.timescale, 0);
    CHECK_EQ(b->duration.value, 0);
    /* Metadata is cleared at every allocation, not only the first. */
    b->pts = MBQ_TIME_ZERO;
    b->attachments[3] = 7;
    atomic_store(&b->ready, 0);
    CHECK_EQ(pool_release(&p, h, true), 0);
    REQUIRE(pool_alloc(&p, 10, &h) == 0);
    b = pool_block_of(&p, h);
    REQUIRE(b != NULL);
    CHECK_EQ(b->data_size, 10);
    CHECK_EQ(b->pts.flags, 0);
    CHECK_EQ(b->attachments[3], 0);
    CHECK_EQ(atomic_load(&b->ready), 1);
    CHECK_EQ(pool_release(&p, h, true), 0);
    pool_detach(&p);
}

static void test_refcount(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 4, 0, true) == 0);
    uint64_t h;
    REQUIRE(pool_alloc(&p, 100, &h) == 0);
    CHECK_EQ(refcount_of(&p, h), 1);
    CHECK_EQ(pool_retain(&p, h, true), 0);
    CHECK_EQ(pool_retain(&p, h, false), 0); /* e.g. a queue entry's reference */
    CHECK_EQ(refcount_of(&p, h), 3);
    CHECK_EQ(pool_held_by_self(&p), 2);

    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(refcount_of(&p, h), 1);
    /* This process holds nothing more: no release below zero, refcount kept. */
    CHECK_EQ(pool_release(&p, h, true), -EINVAL);
    CHECK_EQ(refcount_of(&p, h), 1);
    CHECK_EQ(stats_of(&p).used, 1);
    /* The queue's reference comes to us (dequeue), then we drop it. */
    CHECK_EQ(pool_adopt(&p, h), 0);
    CHECK_EQ(pool_held_by_self(&p), 1);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(stats_of(&p).used, 0);
    CHECK_EQ(pool_held_by_self(&p), 0);

    /* Malformed handles. */
    CHECK_EQ(pool_retain(&p, 0, true), -EINVAL);
    CHECK_EQ(pool_retain(&p, (1ull << 32) | 5, true), -EINVAL); /* index 4 of 4 */
    CHECK_EQ(pool_retain(&p, 1, true), -EINVAL);                /* generation 0 */
    CHECK_EQ(pool_release(&p, (1ull << 32) | 0xffffffffu, true), -EINVAL);
    CHECK_EQ(pool_adopt(&p, 0), -EINVAL);
    CHECK(pool_data(&p, 0) == NULL);
    CHECK(pool_block_of(&p, (7ull << 32) | 99) == NULL);
    pool_detach(&p);
}

static void test_stale_handle(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 4, 0, true) == 0);
    uint64_t h, h2;
    REQUIRE(pool_alloc(&p, 1, &h) == 0);
    CHECK(pool_data(&p, h) != NULL);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(pool_retain(&p, h, true), -ESTALE);
    CHECK_EQ(pool_release(&p, h, true), -ESTALE);
    CHECK_EQ(pool_release(&p, h, false), -ESTALE);
    CHECK_EQ(pool_adopt(&p, h), -ESTALE);
    CHECK(pool_data(&p, h) == NULL);
    CHECK(pool_block_of(&p, h) == NULL);
    /* Reuse of the same block: new generation, old handle still stale. */
    REQUIRE(pool_alloc(&p, 1, &h2) == 0);
    CHECK_EQ(idx_of(h2), idx_of(h));
    CHECK_EQ(h2 >> 32, (h >> 32) + 1);
    CHECK(h2 != h);
    CHECK_EQ(pool_retain(&p, h, true), -ESTALE);
    CHECK(pool_data(&p, h) == NULL);
    CHECK(pool_data(&p, h2) != NULL);
    CHECK_EQ(refcount_of(&p, h2), 1);
    CHECK_EQ(pool_held_by_self(&p), 1);
    CHECK_EQ(pool_release(&p, h2, true), 0);
    pool_detach(&p);
}

static void test_lifo_reuse(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 8, 0, true) == 0);
    uint64_t a, b, c, x;
    REQUIRE(pool_alloc(&p, 1, &a) == 0);
    REQUIRE(pool_alloc(&p, 1, &b) == 0);
    REQUIRE(pool_alloc(&p, 1, &c) == 0);
    CHECK_EQ(pool_release(&p, b, true), 0);
    REQUIRE(pool_alloc(&p, 1, &x) == 0);
    CHECK_EQ(idx_of(x), idx_of(b)); /* the block just freed comes back first */
    CHECK_EQ(pool_release(&p, a, true), 0);
    CHECK_EQ(pool_release(&p, c, true), 0);
    REQUIRE(pool_alloc(&p, 1, &b) == 0);
    CHECK_EQ(idx_of(b), idx_of(c));
    REQUIRE(pool_alloc(&p, 1, &c) == 0);
    CHECK_EQ(idx_of(c), idx_of(a));
    CHECK_EQ(pool_release(&p, x, true), 0);
    CHECK_EQ(pool_release(&p, b, true), 0);
    CHECK_EQ(pool_release(&p, c, true), 0);
    /* Warm blocks are preferred to cold ones even when the cold ones were
     * listed first. */
    struct pool q;
    REQUIRE(make_pool(&q, 4096, 4, 0, false) == 0);
    REQUIRE(pool_alloc(&q, 1, &a) == 0);
    CHECK_EQ(pool_release(&q, a, true), 0);
    REQUIRE(pool_alloc(&q, 1, &b) == 0);
    CHECK_EQ(idx_of(b), idx_of(a));
    CHECK_EQ(pool_release(&q, b, true), 0);
    pool_detach(&q);
    pool_detach(&p);
}

static void test_data_pages(void)
{
    struct pool p;
    const uint64_t pg = page_size();
    REQUIRE(make_pool(&p, 3 * pg - 5, 6, 0, true) == 0);
    CHECK_EQ(p.block_size, 3 * pg);
    uint64_t h[6];
    uint8_t *d[6];
    for (int i = 0; i < 6; i++) {
        REQUIRE(pool_alloc(&p, p.block_size, &h[i]) == 0);
        d[i] = pool_data(&p, h[i]);
        REQUIRE(d[i] != NULL);
        CHECK_EQ((uintptr_t)d[i] % pg, 0);
        memset(d[i], 0x30 + i, p.block_size);
    }
    for (int i = 0; i < 6; i++) {
        for (int j = 0; j < 6; j++) {
            if (i != j) /* distinct, non-overlapping runs */
                CHECK(d[i] + p.block_size <= d[j] || d[j] + p.block_size <= d[i]);
        }
        int bad = 0;
        for (uint64_t k = 0; k < p.block_size; k++)
            bad |= d[i][k] != 0x30 + i;
        CHECK_EQ(bad, 0);
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    }
    pool_detach(&p);
}

/* Sub-page blocks: packed at a cache-line multiple, each its own bytes, its
 * span in the memfd where its data is; a punch returns only pages no live
 * block shares, and a live neighbour's bytes survive it. */
static void test_small_blocks(void)
{
    struct pool p;
    const uint64_t pg = page_size();
    enum { N = 256 };
    REQUIRE(make_pool(&p, 64, N, 0, true) == 0);
    CHECK_EQ(p.block_size, 64);
    CHECK_EQ(stats_of(&p).warm, N);
    static uint64_t h[N];
    static uint8_t *d[N];
    for (int i = 0; i < N; i++) {
        REQUIRE(pool_alloc(&p, 64, &h[i]) == 0);
        d[i] = pool_data(&p, h[i]);
        REQUIRE(d[i] != NULL);
        CHECK_EQ((uintptr_t)d[i] % 64, 0);
        CHECK(d[i] >= p.data && d[i] + 64 <= p.data + round_up_u64(N * 64, pg));
        memset(d[i], i, 64);
    }
    CHECK_EQ(pool_alloc(&p, 1, &h[0]) == 0, false); /* exhausted: h[0] untouched */
    int bad = 0;
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 64; k++)
            bad |= d[i][k] != (uint8_t)i; /* no block overlaps another */
        int fd;
        uint64_t off, len;
        CHECK_EQ(pool_block_span(&p, h[i], &fd, &off, &len), 0);
        CHECK_EQ(off, (uint64_t)(d[i] - (uint8_t *)p.seg.base));
        CHECK_EQ(len, 64);
        CHECK_EQ(off % 64, 0);
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(pool_alloc(&p, 65, &h[0]), MBQ_POOL_ERR_INVALID_PARAMETER);
    /* A forged index one past the last block is no block. */
    CHECK(pool_data(&p, ((uint64_t)1 << 32) | (N + 1)) == NULL);
    for (int i = 0; i < N; i++)
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    pool_detach(&p);

    /* 2 KiB blocks, two a page. Block 1 stays held: flushing the rest
     * returns pages 1..3 but not page 0, which block 1 shares with block 0,
     * and block 1 keeps its bytes. */
    REQUIRE(make_pool(&p, 2048, 8, 0, true) == 0);
    uint64_t k[8];
    for (int i = 0; i < 8; i++) {
        REQUIRE(pool_alloc(&p, 2048, &k[i]) == 0);
        memset(pool_data(&p, k[i]), 0x40 + i, 2048);
    }
    uint32_t held = 0;
    for (int i = 0; i < 8; i++)
        if (idx_of(k[i]) == 1)
            held = (uint32_t)i;
    for (int i = 0; i < 8; i++)
        if ((uint32_t)i != held)
            CHECK_EQ(pool_release(&p, k[i], true), 0);
    long long before = file_blocks(p.seg.fd);
    CHECK_EQ(resident_pages(p.data, 4 * pg), 4);
    CHECK_EQ(pool_flush(&p), 7);
    CHECK_EQ(stats_of(&p).cold, 7);
    CHECK_EQ(before - file_blocks(p.seg.fd), (long long)(3 * pg / 512));
    CHECK_EQ(resident_pages(p.data, pg), 1);
    CHECK_EQ(resident_pages(p.data + pg, 3 * pg), 0);
    const uint8_t *hd = pool_data(&p, k[held]);
    bad = 0;
    for (int i = 0; i < 2048; i++)
        bad |= hd[i] != 0x40 + held;
    CHECK_EQ(bad, 0);
    /* Now block 1 goes too: alone it returns nothing (block 0 shares its
     * page and aged in another round), and nothing breaks. */
    CHECK_EQ(pool_release(&p, k[held], true), 0);
    CHECK_EQ(pool_flush(&p), 1);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.cold, 8);
    CHECK_EQ(s.used, 0);
    for (int i = 0; i < 8; i++) /* every block still allocates */
        REQUIRE(pool_alloc(&p, 1, &k[i]) == 0);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(pool_release(&p, k[i], true), 0);
    pool_detach(&p);
}

static void test_age_out_punches(void)
{
    struct pool p;
    const uint64_t pg = page_size(), age = 1000000000ull;
    REQUIRE(make_pool(&p, 16 * pg, 4, age, true) == 0);
    uint64_t h[4];
    for (int i = 0; i < 4; i++) {
        REQUIRE(pool_alloc(&p, 1, &h[i]) == 0);
        memset(pool_data(&p, h[i]), 0xa5, p.block_size);
    }
    uint32_t i0 = idx_of(h[0]), i1 = idx_of(h[1]);
    CHECK_EQ(resident_pages(block_data(&p, i0), p.block_size), 16);
    CHECK_EQ(pool_release(&p, h[0], true), 0);
    CHECK_EQ(pool_release(&p, h[1], true), 0);
    long long before = file_blocks(p.seg.fd);

    /* Freed just now: young, nothing to do. */
    CHECK_EQ(pool_age_out(&p, mono_ns()), 0);
    CHECK_EQ(stats_of(&p).warm, 2);
    CHECK_EQ(file_blocks(p.seg.fd), before);

    /* "Long ago": both go, their pages are returned, they are cold. */
    CHECK_EQ(pool_age_out(&p, mono_ns() + 2 * age), 2);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.warm, 0);
    CHECK_EQ(s.cold, 2);
    CHECK_EQ(s.used, 2);
    CHECK_EQ(s.aged_out, 2);
    CHECK_EQ(before - file_blocks(p.seg.fd), (long long)(2 * p.block_size / 512));
    CHECK_EQ(resident_pages(block_data(&p, i0), p.block_size), 0);
    CHECK_EQ(resident_pages(block_data(&p, i1), p.block_size), 0);
    CHECK_EQ(block_data(&p, i0)[0], 0); /* punched pages read back as zero */
    CHECK_EQ(pool_age_out(&p, mono_ns() + 2 * age), 0);

    /* A cold block is handed out (and faults in) only when no warm one is left. */
    CHECK_EQ(pool_release(&p, h[2], true), 0);
    uint64_t x, y;
    REQUIRE(pool_alloc(&p, 1, &x) == 0);
    CHECK_EQ(idx_of(x), idx_of(h[2]));
    REQUIRE(pool_alloc(&p, 1, &y) == 0);
    CHECK(idx_of(y) == i0 || idx_of(y) == i1);
    memset(pool_data(&p, y), 1, p.block_size);
    CHECK_EQ(pool_release(&p, x, true), 0);
    CHECK_EQ(pool_release(&p, y, true), 0);
    CHECK_EQ(pool_release(&p, h[3], true), 0);
    pool_detach(&p);
}

static void test_age_out_keeps_recent(void)
{
    struct pool p;
    const uint64_t age = 500000000ull;
    REQUIRE(make_pool(&p, 4096, 4, age, true) == 0);
    /* Prefaulted blocks start warm; age them all out first. */
    CHECK_EQ(pool_age_out(&p, mono_ns() + 2 * age), 4);
    uint64_t c, d;
    REQUIRE(pool_alloc(&p, 1, &c) == 0);
    REQUIRE(pool_alloc(&p, 1, &d) == 0);
    CHECK_EQ(pool_release(&p, c, true), 0);
    CHECK_EQ(pool_release(&p, d, true), 0);
    /* c is the older (the tail). Pin the clock readings so the test does
     * not depend on timing: c freed at 1000, d at 5000. */
    CHECK_EQ(p.sh->warm_tail, idx_of(c));
    p.blocks[idx_of(c)].freed_at_ns = 1000;
    p.blocks[idx_of(d)].freed_at_ns = 5000;
    CHECK_EQ(pool_age_out(&p, 1000 + age - 1), 0);
    CHECK_EQ(pool_age_out(&p, 1000 + age), 1); /* exactly the period: out */
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.warm, 1);
    CHECK_EQ(s.cold, 3);
    uint64_t x;
    REQUIRE(pool_alloc(&p, 1, &x) == 0);
    CHECK_EQ(idx_of(x), idx_of(d)); /* the one still warm */
    CHECK_EQ(pool_release(&p, x, true), 0);
    pool_detach(&p);
}

static void test_flush(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 2 * page_size(), 70, 0, true) == 0); /* > one age-out batch */
    uint64_t h;
    REQUIRE(pool_alloc(&p, 1, &h) == 0);
    long long before = file_blocks(p.seg.fd);
    CHECK_EQ(pool_flush(&p), 69);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.warm, 0);
    CHECK_EQ(s.cold, 69);
    CHECK_EQ(s.used, 1);
    CHECK_EQ(before - file_blocks(p.seg.fd), (long long)(69 * p.block_size / 512));
    CHECK_EQ(pool_flush(&p), 0);
    /* The pool stays active: a freed block is warm again. */
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(stats_of(&p).warm, 1);
    CHECK(!stats_of(&p).invalidated);
    pool_detach(&p);
}

static void test_invalidate(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4 * page_size(), 4, 0, true) == 0);
    uint64_t a, b;
    REQUIRE(pool_alloc(&p, 1, &a) == 0);
    REQUIRE(pool_alloc(&p, 1, &b) == 0);
    memset(pool_data(&p, a), 0x5a, p.block_size);
    CHECK_EQ(pool_release(&p, b, true), 0);
    CHECK_EQ(pool_invalidate(&p), 3);
    struct pool_stats s = stats_of(&p);
    CHECK(s.invalidated);
    CHECK_EQ(s.warm, 0);
    CHECK_EQ(s.cold, 3);
    CHECK_EQ(s.used, 1);

    /* The existing buffer stays fully usable. */
    uint8_t *d = pool_data(&p, a);
    REQUIRE(d != NULL);
    CHECK_EQ(d[0], 0x5a);
    CHECK_EQ(d[p.block_size - 1], 0x5a);
    d[1] = 1;
    CHECK_EQ(pool_retain(&p, a, true), 0);
    CHECK_EQ(pool_release(&p, a, true), 0);
    long long before = file_blocks(p.seg.fd);
    CHECK_EQ(pool_release(&p, a, true), 0);
    /* Freed after invalidation: straight back to the kernel, not warm. */
    s = stats_of(&p);
    CHECK_EQ(s.warm, 0);
    CHECK_EQ(s.cold, 4);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(before - file_blocks(p.seg.fd), (long long)(p.block_size / 512));
    /* Allocation keeps working (plain allocate/free, no recycling). */
    REQUIRE(pool_alloc(&p, 1, &a) == 0);
    d = pool_data(&p, a);
    REQUIRE(d != NULL);
    CHECK_EQ(d[0], 0);
    d[0] = 9;
    CHECK_EQ(pool_release(&p, a, true), 0);
    s = stats_of(&p);
    CHECK_EQ(s.warm, 0);
    CHECK_EQ(s.cold, 4);
    CHECK_EQ(pool_invalidate(&p), 0);
    pool_detach(&p);
}

static void test_attach_second_mapping(void)
{
    struct pool p, q;
    REQUIRE(make_pool(&p, 4096, 8, 0, true) == 0);
    REQUIRE(pool_attach(p.seg.fd, &q) == 0);
    CHECK(q.slot != p.slot);
    CHECK_EQ(q.block_size, p.block_size);
    CHECK_EQ(q.block_count, p.block_count);
    CHECK(q.sh != p.sh); /* its own mapping */
    uint64_t h;
    REQUIRE(pool_alloc(&q, 50, &h) == 0);
    uint8_t *dq = pool_data(&q, h), *dp = pool_data(&p, h);
    REQUIRE(dq != NULL && dp != NULL);
    CHECK(dq != dp);
    memcpy(dq, "shared", 7);
    CHECK(memcmp(dp, "shared", 7) == 0);
    CHECK_EQ(pool_block_of(&p, h)->data_size, 50);
    CHECK_EQ(pool_release(&p, h, true), -EINVAL); /* p holds none */
    CHECK_EQ(pool_retain(&p, h, true), 0);
    CHECK_EQ(pool_release(&q, h, true), 0);
    CHECK(pool_data(&p, h) != NULL);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK(pool_data(&q, h) == NULL);

    /* Detach releases what the mapping's client still holds. */
    uint64_t x, y;
    REQUIRE(pool_alloc(&q, 1, &x) == 0);
    REQUIRE(pool_alloc(&q, 1, &y) == 0);
    CHECK_EQ(pool_retain(&q, y, true), 0);
    CHECK_EQ(stats_of(&p).used, 2);
    uint32_t qslot = q.slot;
    pool_detach(&q);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.warm, 8);
    CHECK_EQ(s.reclaimed, 3);
    CHECK_EQ(atomic_load(&p.clients[qslot].pid), 0);
    pool_detach(&p);
}

static void test_attach_rejects_corrupt(void)
{
    struct pool p, q;
    REQUIRE(make_pool(&p, 2 * page_size(), 8, 0, false) == 0);
    struct pool_shared *sh = p.sh;
    const struct pool_shared saved = *sh;
#define EXPECT_BAD(stmt)                                   \
    do {                                                   \
        stmt;                                              \
        CHECK_EQ(pool_attach(p.seg.fd, &q), -EBADMSG);     \
        memcpy(sh, &saved, offsetof(struct pool_shared, lock)); \
    } while (0)
    EXPECT_BAD(sh->block_size = 0);
    EXPECT_BAD(sh->block_size = page_size() + 1);
    EXPECT_BAD(sh->block_size = page_size() * 1000); /* layout beyond the segment */
    EXPECT_BAD(sh->block_size = UINT64_MAX - page_size() + 1);
    EXPECT_BAD(sh->block_size = 96);                 /* sub-page, not a cache-line multiple */
    EXPECT_BAD(sh->block_size = page_size() + 64);   /* above a page, not whole pages */
    EXPECT_BAD(sh->block_count = 0);
    EXPECT_BAD(sh->block_count = 9);
    EXPECT_BAD(sh->block_count = POOL_MAX_BLOCKS + 1);
    EXPECT_BAD(sh->block_count = 0xffffffffu);
    EXPECT_BAD(sh->clients_off += 64);
    EXPECT_BAD(sh->holdings_off -= 8);
    EXPECT_BAD(sh->blocks_off = 0);
    EXPECT_BAD(sh->data_off += page_size());
    EXPECT_BAD(sh->data_off = UINT64_MAX);
    EXPECT_BAD(sh->hdr.magic ^= 1);
    EXPECT_BAD(sh->hdr.kind = SEG_KIND_SIMPLE_QUEUE);
    EXPECT_BAD(sh->hdr.size += 4096);
#undef EXPECT_BAD
    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    CHECK_EQ(pool_attach(pfd[0], &q), -EBADMSG); /* not a memfd */
    close(pfd[0]);
    close(pfd[1]);
    CHECK(pool_attach(-1, &q) < 0);
    /* Restored: attaches. */
    REQUIRE(pool_attach(p.seg.fd, &q) == 0);
    pool_detach(&q);
    pool_detach(&p);
}

static void test_client_slots(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 2, 0, true) == 0);
    CHECK_EQ(p.slot, 0);
    static struct pool more[POOL_MAX_CLIENTS];
    int n = 0;
    while (n < POOL_MAX_CLIENTS - 1 && pool_attach(p.seg.fd, &more[n]) == 0)
        n++;
    CHECK_EQ(n, POOL_MAX_CLIENTS - 1);
    struct pool extra;
    CHECK_EQ(pool_attach(p.seg.fd, &extra), -EUSERS);
    /* A slot naming a dead process is taken over, after its holdings are
     * released. */
    uint64_t h;
    REQUIRE(pool_alloc(&p, 1, &h) == 0);
    CHECK_EQ(pool_retain(&p, h, false), 0);
    uint32_t victim = more[5].slot;
    pool_detach(&more[5]);
    atomic_store(&p.clients[victim].pid, dead_pid());
    atomic_store(&p.holdings[(size_t)victim * p.block_count + idx_of(h)], 1);
    REQUIRE(pool_attach(p.seg.fd, &extra) == 0);
    CHECK_EQ(extra.slot, victim);
    CHECK_EQ(refcount_of(&p, h), 1);
    CHECK_EQ(pool_held_by_self(&extra), 0);
    CHECK_EQ(atomic_load(&p.clients[victim].pid), (uint32_t)getpid());
    pool_detach(&extra);
    for (int i = 0; i < n; i++)
        pool_detach(&more[i]);
    for (uint32_t s = 1; s < POOL_MAX_CLIENTS; s++)
        CHECK_EQ(atomic_load(&p.clients[s].pid), 0);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(stats_of(&p).used, 0);
    pool_detach(&p);
}

static void test_reclaim(void)
{
    struct pool p, q;
    REQUIRE(make_pool(&p, 4096, 8, 0, true) == 0);
    uint64_t hp;
    REQUIRE(pool_alloc(&p, 1, &hp) == 0);
    REQUIRE(pool_attach(p.seg.fd, &q) == 0);
    uint64_t a, b;
    REQUIRE(pool_alloc(&q, 1, &a) == 0);
    REQUIRE(pool_alloc(&q, 1, &b) == 0);
    CHECK_EQ(pool_retain(&q, hp, true), 0);
    CHECK_EQ(refcount_of(&p, hp), 2);
    CHECK_EQ(pool_reclaim_slot(&p, q.slot), 3);
    CHECK_EQ(refcount_of(&p, hp), 1);
    CHECK_EQ(stats_of(&p).used, 1);
    CHECK_EQ(atomic_load(&p.clients[q.slot].pid), 0);
    CHECK_EQ(pool_reclaim_slot(&p, q.slot), 0);
    CHECK_EQ(pool_reclaim_slot(&p, POOL_MAX_CLIENTS), -EINVAL);
    pool_detach(&q); /* its slot is gone: releases nothing more */
    CHECK_EQ(refcount_of(&p, hp), 1);

    /* A dead client's slot: references are dropped, never below zero. */
    CHECK_EQ(pool_retain(&p, hp, false), 0);
    atomic_store(&p.clients[7].pid, dead_pid());
    atomic_store(&p.holdings[7 * p.block_count + idx_of(hp)], 1);
    atomic_store(&p.holdings[7 * p.block_count + 5], 3); /* a free block: nothing to drop */
    CHECK_EQ(pool_reclaim_dead(&p), 1);
    CHECK_EQ(refcount_of(&p, hp), 1);
    CHECK_EQ(atomic_load(&p.clients[7].pid), 0);
    CHECK_EQ(atomic_load(&p.holdings[7 * p.block_count + 5]), 0);
    CHECK_EQ(pool_reclaim_dead(&p), 0); /* our own slot is alive */
    CHECK_EQ(pool_held_by_self(&p), 1);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.reclaimed, 4);
    CHECK_EQ(s.used, 1);
    CHECK_EQ(pool_release(&p, hp, true), 0);
    pool_detach(&p);
}

static void check_consistent(struct pool *p)
{
    struct pool_stats s = stats_of(p);
    CHECK_EQ(s.used + s.warm + s.cold, s.block_count);
    uint32_t used = 0;
    for (uint32_t i = 0; i < p->block_count; i++) {
        uint32_t rc = (uint32_t)atomic_load(&p->blocks[i].ref);
        used += rc != 0 && rc < POOL_RC_CACHED; /* cached blocks are free */
    }
    CHECK_EQ(s.used, used);
}

static void test_lock_recovery_repair(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 8, 0, true) == 0);
    uint64_t a, b, c;
    REQUIRE(pool_alloc(&p, 1, &a) == 0);
    REQUIRE(pool_alloc(&p, 1, &b) == 0);
    REQUIRE(pool_alloc(&p, 1, &c) == 0);
    CHECK_EQ(pool_release(&p, b, true), 0);
    CHECK_EQ(pool_flush(&p), 6);
    REQUIRE(pool_alloc(&p, 1, &b) == 0); /* a cold one */
    CHECK_EQ(pool_release(&p, b, true), 0);
    /* A holder died in the middle of a list update: heads, links and counts
     * are garbage, and a block was left half-aged. */
    struct pool_shared *sh = p.sh;
    sh->warm_head = 5000;
    sh->warm_tail = idx_of(a);
    sh->cold_head = idx_of(c);
    sh->warm_count = 1234;
    sh->used_count = 0;
    p.blocks[idx_of(b)].next = idx_of(b);
    p.blocks[7].state = POOL_BLOCK_AGING;
    p.blocks[7].reserved0 = dead_pid();
    uint32_t dead = dead_pid();
    atomic_store(&sh->lock.word, dead);
    uint64_t x;
    CHECK_EQ(pool_alloc(&p, 1, &x), 0);
    CHECK_EQ(atomic_load(&sh->lock.word), 0);
    CHECK_EQ(idx_of(x), idx_of(b)); /* the warm one, kept warm by the rebuild */
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.used, 3);
    CHECK_EQ(s.warm, 0);
    CHECK_EQ(s.cold, 5);
    check_consistent(&p);
    CHECK_EQ(p.blocks[7].state, POOL_BLOCK_COLD);
    /* Everything can be allocated and freed again. */
    uint64_t h[5];
    for (int i = 0; i < 5; i++)
        CHECK_EQ(pool_alloc(&p, 1, &h[i]), 0);
    CHECK_EQ(pool_alloc(&p, 1, &h[0]) , MBQ_POOL_ERR_ALLOCATION_FAILED);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    CHECK_EQ(pool_release(&p, a, true), 0);
    CHECK_EQ(pool_release(&p, c, true), 0);
    CHECK_EQ(pool_release(&p, x, true), 0);
    s = stats_of(&p);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.warm + s.cold, 8);
    pool_detach(&p);
}

static void test_alloc_repairs_corrupt_list(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 4, 0, true) == 0);
    uint64_t a, x, y;
    REQUIRE(pool_alloc(&p, 1, &a) == 0);
    /* The warm head names a block in use: alloc must notice, rebuild and
     * still hand out a free block, not the used one. */
    p.sh->warm_head = idx_of(a);
    REQUIRE(pool_alloc(&p, 1, &x) == 0);
    CHECK(idx_of(x) != idx_of(a));
    CHECK_EQ(refcount_of(&p, a), 1);
    check_consistent(&p);
    /* A cycle in the warm list. */
    uint32_t hd = p.sh->warm_head;
    REQUIRE(hd < 4);
    p.blocks[hd].next = hd;
    REQUIRE(pool_alloc(&p, 1, &y) == 0);
    CHECK(idx_of(y) != idx_of(a) && idx_of(y) != idx_of(x));
    check_consistent(&p);
    /* Lost lists with non-zero counts. */
    p.sh->warm_head = p.sh->warm_tail = POOL_NONE;
    uint64_t z;
    REQUIRE(pool_alloc(&p, 1, &z) == 0);
    check_consistent(&p);
    /* reclaim_dead's periodic check finds silently lost blocks too. */
    CHECK_EQ(pool_release(&p, z, true), 0);
    p.sh->warm_head = p.sh->warm_tail = POOL_NONE;
    p.sh->warm_count = 0;
    CHECK_EQ(pool_reclaim_dead(&p), 0);
    check_consistent(&p);
    CHECK_EQ(stats_of(&p).warm, 1);
    CHECK_EQ(pool_release(&p, a, true), 0);
    CHECK_EQ(pool_release(&p, x, true), 0);
    CHECK_EQ(pool_release(&p, y, true), 0);
    check_consistent(&p);
    pool_detach(&p);
}

/* Blocks off every list: a release caught between its CAS and the lock is
 * left alone by the periodic check (it is normal under load) but filed by a
 * lock-recovery rebuild; a block left AGING by a dead ager is filed cold by
 * the periodic check, one whose ager is alive is left to it. */
static void test_orphans(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 4, 0, true) == 0);
    uint64_t a, b, x;
    REQUIRE(pool_alloc(&p, 1, &a) == 0);
    REQUIRE(pool_alloc(&p, 1, &b) == 0);
    /* a: "released" by a process that then stopped before the lock. */
    atomic_store(&p.blocks[idx_of(a)].ref, ((a >> 32) + 1) << 32);
    atomic_store(&p.holdings[(size_t)p.slot * p.block_count + idx_of(a)], 0);
    CHECK_EQ(pool_reclaim_dead(&p), 0);
    CHECK_EQ(p.blocks[idx_of(a)].state, POOL_BLOCK_USED);
    CHECK_EQ(stats_of(&p).used, 2);
    /* The owner of the lock dies: the rebuild files a. */
    atomic_store(&p.sh->lock.word, dead_pid());
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.used, 1);
    CHECK_EQ(s.warm, 3);
    CHECK_EQ(p.blocks[idx_of(a)].state, POOL_BLOCK_WARM);
    check_consistent(&p);
    REQUIRE(pool_alloc(&p, 1, &x) == 0);
    CHECK_EQ(x >> 32, (a >> 32) + 1);
    CHECK_EQ(pool_release(&p, x, true), 0);

    /* b: detached for aging by a thread that is alive (left to it), then by
     * one that no longer exists (filed cold by the periodic check). */
    CHECK_EQ(pool_release(&p, b, true), 0);
    CHECK_EQ(pool_flush(&p), 4);
    REQUIRE(p.sh->cold_head == idx_of(b));
    p.sh->cold_head = p.blocks[idx_of(b)].next;
    p.sh->cold_count--;
    p.blocks[idx_of(b)].state = POOL_BLOCK_AGING;
    p.blocks[idx_of(b)].reserved0 = (uint32_t)getpid();
    CHECK_EQ(pool_reclaim_dead(&p), 0);
    CHECK_EQ(p.blocks[idx_of(b)].state, POOL_BLOCK_AGING);
    CHECK_EQ(stats_of(&p).cold, 3);
    p.blocks[idx_of(b)].reserved0 = dead_pid();
    CHECK_EQ(pool_reclaim_dead(&p), 0);
    CHECK_EQ(p.blocks[idx_of(b)].state, POOL_BLOCK_COLD);
    s = stats_of(&p);
    CHECK_EQ(s.cold, 4);
    CHECK_EQ(s.used, 0);
    check_consistent(&p);
    pool_detach(&p);
}

/* xorshift64*: deterministic pseudo-random bytes. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void scribble(uint8_t *base, size_t lo, size_t hi, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        size_t off = lo + rnd() % (hi - lo);
        uint64_t v = rnd();
        switch (v & 3) {
        case 0: base[off] = (uint8_t)(v >> 8); break;
        case 1: base[off] = 0xff; break;
        case 2: base[off] = 0; break;
        default: base[off] = (uint8_t)((v >> 8) & 7); break; /* small: plausible indices */
        }
    }
}

/* ---- client caches ---- */

/* Blocks in some client's cache (free, kept by that client). */
static uint32_t cached_blocks(struct pool *p)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->block_count; i++)
        n += (uint32_t)atomic_load(&p->blocks[i].ref) >= POOL_RC_CACHED;
    return n;
}

/* A free goes to the releasing client's cache and the next allocation takes
 * it back without the lists; the counters stay exact throughout. */
static void test_cache_reuse_and_counts(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 64, 0, true) == 0);
    CHECK_EQ(p.cache.max, 16);
    uint64_t h, again;
    REQUIRE(pool_alloc(&p, 1, &h) == 0); /* fills the cache with 8, takes one */
    CHECK_EQ(p.sh->warm_count, 56);
    CHECK_EQ(cached_blocks(&p), 7);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(cached_blocks(&p), 8);
    CHECK_EQ(pool_release(&p, h, true), -ESTALE); /* freed is freed, cache or not */
    REQUIRE(pool_alloc(&p, 1, &again) == 0);
    CHECK_EQ(idx_of(again), idx_of(h)); /* the newest cached block */
    CHECK(again != h);                  /* with a new generation */
    CHECK(pool_block_of(&p, h) == NULL);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.used, 1);
    CHECK_EQ(s.cached, 7);
    CHECK_EQ(s.warm, 63);
    CHECK_EQ(s.allocs, 2);
    CHECK_EQ(s.frees, 1);
    CHECK_EQ(pool_release(&p, again, true), 0);

    /* A full cache gives half back to the warm list. */
    uint64_t many[30];
    for (int i = 0; i < 30; i++)
        REQUIRE(pool_alloc(&p, 1, &many[i]) == 0);
    for (int i = 0; i < 30; i++)
        CHECK_EQ(pool_release(&p, many[i], true), 0);
    CHECK(cached_blocks(&p) <= 16);
    CHECK(p.sh->warm_count >= 48);
    s = stats_of(&p);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.warm, 64);
    CHECK_EQ(s.allocs, 32);
    CHECK_EQ(s.frees, 32);
    check_consistent(&p);
    pool_detach(&p);
}

/* Blocks cached by one client are not lost to another: an allocation that
 * finds the lists empty takes them from the other client's cache. */
static void test_cache_steal(void)
{
    struct pool a, b;
    REQUIRE(make_pool_pair(&a, &b, 32) == 0);
    uint64_t h[32];
    for (int round = 0; round < 3; round++) {
        struct pool *x = round % 2 ? &b : &a;
        for (int i = 0; i < 32; i++)
            REQUIRE(pool_alloc(x, 1, &h[i]) == 0);
        uint64_t none;
        CHECK_EQ(pool_alloc(x, 1, &none), MBQ_POOL_ERR_ALLOCATION_FAILED);
        CHECK_EQ(pool_alloc(round % 2 ? &a : &b, 1, &none), MBQ_POOL_ERR_ALLOCATION_FAILED);
        for (int i = 0; i < 32; i++)
            CHECK_EQ(pool_release(x, h[i], true), 0);
        CHECK(cached_blocks(&a) > 0);
    }
    /* b's cache still holds blocks; a takes every one of the 32. */
    for (int i = 0; i < 32; i++)
        REQUIRE(pool_alloc(&a, 1, &h[i]) == 0);
    for (int i = 0; i < 32; i++)
        for (int j = i + 1; j < 32; j++)
            CHECK(idx_of(h[i]) != idx_of(h[j]));
    for (int i = 0; i < 32; i++)
        CHECK_EQ(pool_release(&a, h[i], true), 0);
    struct pool_stats s = stats_of(&a);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.allocs, 4 * 32);
    CHECK_EQ(s.frees, 4 * 32);
    CHECK(s.alloc_failures >= 6);
    check_consistent(&a);
    pool_detach(&b);
    pool_detach(&a);
}

/* A client that dies with blocks in its cache: reclaim returns them to the
 * lists and keeps its counts; detach does the same for a live one. */
static void test_cache_reclaim(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 64, 0, true) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct pool c;
        int fd = dup(p.seg.fd);
        if (fd < 0 || pool_attach(fd, &c) != 0)
            _exit(1);
        uint64_t h[10];
        for (int i = 0; i < 10; i++)
            if (pool_alloc(&c, 1, &h[i]) != 0)
                _exit(2);
        for (int i = 0; i < 9; i++) /* one stays held */
            if (pool_release(&c, h[i], true) != 0)
                _exit(3);
        _exit(0); /* no detach: as if killed */
    }
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(cached_blocks(&p) > 0);
    CHECK_EQ(pool_reclaim_dead(&p), 1);
    CHECK_EQ(cached_blocks(&p), 0);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.warm, 64);
    CHECK_EQ(s.allocs, 10);
    CHECK_EQ(s.frees, 10); /* nine frees and the reclaimed reference */
    CHECK_EQ(p.sh->warm_count, 64);

    struct pool q;
    int fd = dup(p.seg.fd);
    REQUIRE(fd >= 0);
    REQUIRE(pool_attach(fd, &q) == 0);
    uint64_t h;
    REQUIRE(pool_alloc(&q, 1, &h) == 0);
    CHECK_EQ(pool_release(&q, h, true), 0);
    CHECK(cached_blocks(&p) > 0);
    pool_detach(&q);
    CHECK_EQ(cached_blocks(&p), 0);
    CHECK_EQ(stats_of(&p).allocs, 11);
    check_consistent(&p);
    pool_detach(&p);
}

/* Flush takes cached blocks back and returns their pages; age-out does so
 * for a block that sat in a cache a whole period; after invalidate, frees
 * bypass the caches. */
static void test_cache_flush_age_invalidate(void)
{
    struct pool p;
    const uint64_t age = 1000000000ull;
    REQUIRE(make_pool(&p, 4096, 64, age, true) == 0);
    uint64_t h, h2;
    REQUIRE(pool_alloc(&p, 1, &h) == 0); /* the cache takes 8 warm blocks, hands out one */
    memset(pool_data(&p, h), 1, 4096);
    uint32_t idx = idx_of(h);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(cached_blocks(&p), 8);
    const uint64_t t = mono_ns();
    CHECK_EQ(pool_age_out(&p, t), 0); /* first sight: stamped */
    CHECK_EQ(cached_blocks(&p), 8);
    (void)pool_age_out(&p, t + age - 1); /* the 56 listed since creation go */
    CHECK_EQ(cached_blocks(&p), 8);      /* not a period yet */
    CHECK_EQ(stats_of(&p).cold, 56);
    CHECK_EQ(pool_age_out(&p, t + age), 0); /* taken back, to the warm head */
    CHECK_EQ(cached_blocks(&p), 0);
    CHECK_EQ(p.sh->warm_count, 8);
    CHECK_EQ(pool_age_out(&p, t + 2 * age), 8); /* and aged out from there */
    CHECK_EQ(resident_pages(block_data(&p, idx), 4096), 0);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.cached, 0);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.cold, 64);
    check_consistent(&p);

    /* All cold: the cache takes none (a cold block is the last resort);
     * a freed one is cached, and flush takes it back. */
    REQUIRE(pool_alloc(&p, 1, &h) == 0);
    CHECK_EQ(cached_blocks(&p), 0);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(cached_blocks(&p), 1);
    CHECK_EQ(pool_flush(&p), 1);
    CHECK_EQ(cached_blocks(&p), 0);
    CHECK_EQ(stats_of(&p).cold, 64);

    /* Invalidate takes cached blocks back, and later frees skip the cache. */
    REQUIRE(pool_alloc(&p, 1, &h) == 0);
    REQUIRE(pool_alloc(&p, 1, &h2) == 0);
    CHECK_EQ(pool_release(&p, h2, true), 0);
    CHECK_EQ(cached_blocks(&p), 1);
    CHECK_EQ(pool_invalidate(&p), 1);
    CHECK_EQ(cached_blocks(&p), 0);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(cached_blocks(&p), 0);
    s = stats_of(&p);
    CHECK_EQ(s.cold, 64);
    CHECK_EQ(s.allocs, s.frees);
    check_consistent(&p);
    pool_detach(&p);
}

/* A hand-over moves this process's holding to a queue: only a reference
 * the process holds can go, and adopt gives it back. */
static void test_disown(void)
{
    struct pool a, b;
    REQUIRE(make_pool_pair(&a, &b, 4) == 0);
    uint64_t h;
    REQUIRE(pool_alloc(&a, 1, &h) == 0);
    CHECK_EQ(pool_disown(&b, h), -EINVAL); /* b holds none */
    CHECK_EQ(pool_disown(&a, h), 0);
    CHECK_EQ(pool_held_by_self(&a), 0);
    CHECK_EQ(refcount_of(&a, h), 1);       /* the "queue's" now */
    CHECK_EQ(pool_disown(&a, h), -EINVAL); /* not twice */
    CHECK_EQ(pool_release(&a, h, true), -EINVAL);
    CHECK_EQ(pool_adopt(&b, h), 0);        /* a consumer takes it */
    CHECK_EQ(pool_release(&b, h, true), 0);
    CHECK_EQ(pool_disown(&a, h), -ESTALE);
    CHECK_EQ(stats_of(&a).used, 0);
    pool_detach(&b);
    pool_detach(&a);
}

/* Two threads of one process on one struct pool: the first to use the
 * cache owns it, the other goes through the lists; no block is ever handed
 * to both, and the counts are exact afterwards. */
struct thread_churn {
    struct pool *p;
    uint64_t tag;
    int err;
};

static void *thread_churn(void *arg)
{
    struct thread_churn *t = arg;
    uint64_t h[6];
    for (uint32_t i = 0; i < 20000 && !t->err; i++) {
        for (int k = 0; k < 6; k++) {
            if (pool_alloc(t->p, 1, &h[k]) != 0) {
                t->err = 1;
                return NULL;
            }
            *(uint64_t *)pool_data(t->p, h[k]) = t->tag | (uint64_t)i << 8 | (uint64_t)k;
        }
        for (int k = 0; k < 6; k++)
            if (*(uint64_t *)pool_data(t->p, h[k]) != (t->tag | (uint64_t)i << 8 | (uint64_t)k))
                t->err = 2;
        for (int k = 0; k < 6; k++)
            if (pool_release(t->p, h[k], true) != 0)
                t->err = 3;
    }
    return NULL;
}

static void test_cache_two_threads(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 32, 0, true) == 0);
    struct thread_churn a = {&p, 1ull << 62, 0}, b = {&p, 2ull << 62, 0};
    pthread_t ta, tb;
    REQUIRE(pthread_create(&ta, NULL, thread_churn, &a) == 0);
    REQUIRE(pthread_create(&tb, NULL, thread_churn, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_EQ(a.err, 0);
    CHECK_EQ(b.err, 0);
    CHECK(atomic_load(&p.cache.owner) != 0);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.allocs, 2 * 6 * 20000);
    CHECK_EQ(s.frees, s.allocs);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.warm, 32);
    check_consistent(&p);
    pool_detach(&p);
}

/* Two ways a cached block could be stranded, both harmless: a fork child
 * using its parent's struct pool (the cache is the parent thread's, so the
 * child goes through the lists), and a process killed between taking a
 * block back from a cache and filing it (the lock's next holder repairs). */
static uint32_t alloc_all(struct pool *p)
{
    uint64_t h[64];
    uint32_t n = 0;
    while (n < 64 && pool_alloc(p, 1, &h[n]) == 0)
        n++;
    for (uint32_t i = 0; i < n; i++)
        CHECK_EQ(pool_release(p, h[i], true), 0);
    return n;
}

static void test_cache_strays(void)
{
    struct pool a;
    REQUIRE(make_pool(&a, 4096, 16, 0, true) == 0);
    REQUIRE(a.cache.max == 8);
    uint64_t h1, h2;
    REQUIRE(pool_alloc(&a, 1, &h1) == 0);
    REQUIRE(pool_alloc(&a, 1, &h2) == 0);
    CHECK_EQ(pool_release(&a, h1, true), 0);
    CHECK_EQ(pool_release(&a, h2, true), 0);
    const uint32_t cached_n = a.cache.n;
    REQUIRE(cached_n == 4);

    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        uint64_t h;
        if (pool_alloc(&a, 1, &h) != 0 || pool_release(&a, h, true) != 0)
            _exit(1);
        _exit(a.cache.n == cached_n ? 0 : 2); /* the parent's cache, untouched */
    }
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ(alloc_all(&a), 16);

    uint32_t x = a.cache.idx[0];
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct pool c;
        int fd = dup(a.seg.fd);
        if (fd < 0 || pool_attach(fd, &c) != 0)
            _exit(1);
        slock_lock(&c.sh->lock);
        /* what pool_uncache_locked does first, then death before filing */
        uint64_t r = atomic_load(&c.blocks[x].ref);
        if ((uint32_t)r < POOL_RC_CACHED ||
            !atomic_compare_exchange_strong(&c.blocks[x].ref, &r, ((r >> 32) + 1) << 32))
            _exit(2);
        kill(getpid(), SIGKILL);
        _exit(3);
    }
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CHECK_EQ(alloc_all(&a), 16);
    CHECK_EQ(atomic_load(&a.sh->lock.word), 0);
    check_consistent(&a);
    pool_detach(&a);
}

/* The cache's owner thread exits: another thread of the process takes the
 * cache over (it checks at most every 10 ms), blocks and all. */
static void *alloc_free_once(void *arg)
{
    struct pool *p = arg;
    uint64_t h;
    if (pool_alloc(p, 1, &h) == 0)
        pool_release(p, h, true);
    return NULL;
}

struct takeover {
    struct pool *p;
    uint32_t tid;
    int rounds, err;
};

static void *alloc_until_owner(void *arg)
{
    struct takeover *t = arg;
    t->tid = slock_self();
    uint64_t deadline = mono_ns() + 5000000000ull;
    while (atomic_load(&t->p->cache.owner) != t->tid && mono_ns() < deadline) {
        uint64_t h;
        if (pool_alloc(t->p, 1, &h) != 0 || pool_release(t->p, h, true) != 0)
            t->err = 1;
        t->rounds++;
    }
    return NULL;
}

static void test_cache_owner_exits(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 32, 0, true) == 0);
    pthread_t a, b;
    REQUIRE(pthread_create(&a, NULL, alloc_free_once, &p) == 0);
    pthread_join(a, NULL);
    uint32_t first = atomic_load(&p.cache.owner);
    CHECK(first != 0);
    CHECK(cached_blocks(&p) > 0); /* left in the exited thread's cache */
    struct takeover t = {.p = &p};
    REQUIRE(pthread_create(&b, NULL, alloc_until_owner, &t) == 0);
    pthread_join(b, NULL);
    CHECK_EQ(t.err, 0);
    CHECK_EQ(atomic_load(&p.cache.owner), t.tid);
    CHECK(t.tid != first);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.allocs, s.frees);
    CHECK_EQ(s.warm, 32);
    check_consistent(&p);
    pool_detach(&p);
}

static void test_corruption_fuzz(void)
{
    const uint32_t n = 16;
    struct pool p;
    REQUIRE(make_pool(&p, 4096, n, 1000, true) == 0);
    /* A second, raw mapping: the "other process" that scribbles. */
    uint8_t *raw = mmap(NULL, p.seg.size, PROT_READ | PROT_WRITE, MAP_SHARED, p.seg.fd, 0);
    REQUIRE(raw != MAP_FAILED);
    const size_t blocks_lo = p.sh->blocks_off;
    const size_t blocks_hi = blocks_lo + n * sizeof(struct pool_block);
    const size_t heads_lo = offsetof(struct pool_shared, warm_head);
    const size_t heads_hi = offsetof(struct pool_shared, allocs);
    uint8_t *data_lo = p.data, *data_hi = p.data + (size_t)n * p.block_size;
    uint64_t held[64];
    int nheld = 0;
    rng_state = 0x9e3779b97f4a7c15ull;
    alarm(120); /* a hang fails the test instead of wedging the run */
    for (int round = 0; round < 3000; round++) {
        if (round % 3 == 0) {
            scribble(raw, blocks_lo, blocks_hi, 1 + (int)(rnd() % 8));
            scribble(raw, heads_lo, heads_hi, (int)(rnd() % 3));
        }
        for (int op = 0; op < 12; op++) {
            uint64_t h;
            int r;
            switch (rnd() % 10) {
            case 0:
            case 1:
                r = pool_alloc(&p, 1 + rnd() % 4096, &h);
                CHECK(r == 0 || r == MBQ_POOL_ERR_ALLOCATION_FAILED || r == -EUCLEAN);
                if (r == 0) {
                    CHECK(h >> 32 != 0 && idx_of(h) < n);
                    if (nheld < 64)
                        held[nheld++] = h;
                    else
                        CHECK(pool_release(&p, h, true) != 1);
                }
                break;
            case 2:
            case 3:
                if (nheld) {
                    int k = (int)(rnd() % (uint64_t)nheld);
                    r = pool_release(&p, held[k], true);
                    CHECK(r == 0 || r == -ESTALE || r == -EINVAL);
                    held[k] = held[--nheld];
                }
                break;
            case 4:
                if (nheld && nheld < 64) {
                    h = held[rnd() % (uint64_t)nheld];
                    r = pool_retain(&p, h, true);
                    CHECK(r == 0 || r == -ESTALE || r == -EINVAL);
                    if (r == 0)
                        held[nheld++] = h;
                }
                break;
            case 5:
                r = pool_age_out(&p, mono_ns() + (rnd() & 1) * 2000);
                CHECK(r >= 0 || r == -EUCLEAN);
                if (rnd() % 4 == 0) {
                    r = pool_flush(&p);
                    CHECK(r >= 0 || r == -EUCLEAN);
                }
                break;
            case 6:
                r = pool_reclaim_dead(&p);
                CHECK(r >= 0);
                break;
            case 7: {
                struct pool_stats s;
                CHECK_EQ(pool_stats(&p, &s), 0);
                CHECK_EQ(s.block_count, n);
                break;
            }
            case 8: {
                h = nheld && (rnd() & 1) ? held[rnd() % (uint64_t)nheld] : rnd();
                uint8_t *d = pool_data(&p, h);
                if (d) { /* inside the data area, on a block boundary */
                    CHECK(d >= data_lo && d + p.block_size <= data_hi);
                    CHECK_EQ((size_t)(d - data_lo) % p.block_size, 0);
                    d[0] = 1;
                    d[p.block_size - 1] = 2;
                }
                struct pool_block *b = pool_block_of(&p, h);
                CHECK(b == NULL || (b >= p.blocks && b < p.blocks + n));
                break;
            }
            default:
                h = rnd();
                r = pool_retain(&p, h, rnd() & 1);
                CHECK(r == 0 || r == -ESTALE || r == -EINVAL);
                r = pool_release(&p, h, rnd() & 1);
                CHECK(r == 0 || r == -ESTALE || r == -EINVAL);
                break;
            }
        }
    }
    alarm(0);
    /* Scribbling stops. Blocks left AGING by a "live" random tid are handed
     * to a dead one, and the scribbler "dies holding the lock": the next
     * locker rebuilds the pool, after which everything is accounted for and
     * every free block can be allocated once. */
    for (uint32_t i = 0; i < n; i++)
        p.blocks[i].reserved0 = 0;
    CHECK(pool_reclaim_dead(&p) >= 0);
    atomic_store(&p.sh->lock.word, dead_pid());
    check_consistent(&p);
    CHECK_EQ(atomic_load(&p.sh->lock.word), 0);
    struct pool_stats s = stats_of(&p);
    uint32_t free_blocks = s.warm + s.cold, got = 0;
    uint64_t fresh[16];
    while (got < n && pool_alloc(&p, 1, &fresh[got]) == 0)
        got++;
    CHECK_EQ(got, free_blocks);
    for (uint32_t i = 0; i < got; i++)
        CHECK_EQ(pool_release(&p, fresh[i], true), 0);
    check_consistent(&p);
    munmap(raw, p.seg.size);
    pool_detach(&p);
}

/* ---- outboxes (pool.h "Outboxes") ---- */

/* The live entries of slot s's outbox. */
static uint32_t outbox_len(struct pool *p, uint32_t s)
{
    const struct pool_outbox *o = &p->clients[s].outbox;
    return atomic_load(&o->tail) - atomic_load(&o->head);
}

/* Releases h[0..n) as one run (what mbq_buffer_release_many does). */
static int release_as_run(struct pool *p, const uint64_t *h, uint32_t n)
{
    int r = pool_run_begin(p, h, n);
    if (r != 0)
        return r;
    r = pool_release_run(p, h, n);
    pool_run_end(p);
    return r;
}

/* A release run hands its blocks to another client's next allocations
 * through its outbox: one run in, taken whole by the empty cache of the
 * allocator, without the lists; counters stay exact. */
static void test_outbox_handoff(void)
{
    struct pool a, b;
    REQUIRE(make_pool_pair(&a, &b, 64) == 0);
    /* b hands a run of 16 to a (a queue between them, here a copy). */
    uint64_t h[16], g[16];
    for (int i = 0; i < 16; i++)
        REQUIRE(pool_alloc(&b, 1, &h[i]) == 0);
    for (int i = 0; i < 16; i++) {
        REQUIRE(pool_retain(&a, h[i], true) == 0);
        REQUIRE(pool_release(&b, h[i], true) == 0);
    }
    CHECK_EQ(cached_blocks(&a), 0);
    CHECK_EQ(atomic_load(&a.sh->outbox_slots), 0); /* no outbox used: none looked at */
    CHECK_EQ(release_as_run(&a, h, 16), 0);
    CHECK_EQ(outbox_len(&a, a.slot), 16);
    CHECK_EQ(atomic_load(&a.sh->outbox_slots), 1ull << a.slot);
    CHECK_EQ(a.cache.n, 0); /* the run went to the outbox, not the cache */
    for (int i = 0; i < 16; i++)
        CHECK_EQ((uint32_t)atomic_load(&a.blocks[idx_of(h[i])].ref), POOL_RC_CACHED | a.slot);
    const uint32_t warm = a.sh->warm_count;
    /* b's cache is empty: its next allocations take a's run, newest last. */
    REQUIRE(b.cache.n == 0);
    for (int i = 0; i < 16; i++)
        REQUIRE(pool_alloc(&b, 1, &g[i]) == 0);
    CHECK_EQ(outbox_len(&a, a.slot), 0);
    CHECK_EQ(a.sh->warm_count, warm); /* no block went through the lists */
    for (int i = 0; i < 16; i++) {
        bool found = false;
        for (int j = 0; j < 16; j++)
            found |= idx_of(g[i]) == idx_of(h[j]);
        CHECK(found);
        CHECK(pool_block_of(&b, h[i]) == NULL); /* the old handles are stale */
    }
    CHECK_EQ(b.obox.from, a.slot);
    struct pool_stats s = stats_of(&a);
    CHECK_EQ(s.used, 16);
    CHECK_EQ(s.allocs, 32);
    CHECK_EQ(s.frees, 16);
    /* One process: its own run comes back to it. */
    CHECK_EQ(release_as_run(&b, g, 16), 0);
    CHECK_EQ(outbox_len(&b, b.slot), 16);
    REQUIRE(pool_alloc(&b, 1, &g[0]) == 0);
    CHECK_EQ(outbox_len(&b, b.slot), 0);
    CHECK_EQ(b.obox.from, b.slot);
    CHECK_EQ(b.cache.n, 15);
    CHECK_EQ(pool_release(&b, g[0], true), 0);
    s = stats_of(&a);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.allocs, s.frees);
    check_consistent(&a);
    pool_detach(&b);
    pool_detach(&a);
}

/* An outbox holds POOL_OUTBOX blocks: a run that finds it full caches the
 * rest, and the owner reads the takers' head again only then; an
 * invalidated pool puts nothing in it. */
static void test_outbox_full_invalidated(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 128, 0, true) == 0);
    uint64_t more[48];
    for (int i = 0; i < 48; i++)
        REQUIRE(pool_alloc(&p, 1, &more[i]) == 0);
    const uint32_t cached0 = p.cache.n;
    CHECK_EQ(release_as_run(&p, more, 32), 0);
    CHECK_EQ(outbox_len(&p, p.slot), POOL_OUTBOX);
    CHECK_EQ(p.cache.n, cached0);
    CHECK_EQ(release_as_run(&p, more + 32, 8), 0); /* full: to the cache */
    CHECK_EQ(outbox_len(&p, p.slot), POOL_OUTBOX);
    CHECK_EQ(p.cache.n, cached0 + 8);
    /* Invalidated: the run's blocks go back to the lists, none to the
     * outbox, and the invalidation takes back what the outbox had. */
    (void)pool_invalidate(&p);
    CHECK_EQ(cached_blocks(&p), 0);
    CHECK_EQ(release_as_run(&p, more + 40, 8), 0);
    CHECK_EQ(cached_blocks(&p), 0);
    CHECK_EQ(outbox_len(&p, p.slot), POOL_OUTBOX); /* stale entries, no block */
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.allocs, s.frees);
    check_consistent(&p);
    pool_detach(&p);
}

/* Outbox entries are hints: stale ones (taken back by a flush), indices
 * out of range and counters scribbled apart are skipped, and the owner
 * starts again from a head no taker could have made; blocks a taker left
 * cached but unlisted (killed between its head CAS and their CAS) are
 * found by an allocation all the same. No block is lost or handed out
 * twice. */
static void test_outbox_stale_scribbled(void)
{
    struct pool a, b;
    REQUIRE(make_pool_pair(&a, &b, 32) == 0);
    struct pool_outbox *o = &a.clients[a.slot].outbox;
    uint64_t h[32], x, y;
    for (int i = 0; i < 16; i++)
        REQUIRE(pool_alloc(&a, 1, &h[i]) == 0);
    CHECK_EQ(release_as_run(&a, h, 16), 0);
    (void)pool_flush(&a); /* the outbox's blocks taken back too */
    CHECK_EQ(cached_blocks(&a), 0);
    CHECK_EQ(outbox_len(&a, a.slot), 16); /* 16 stale entries */
    REQUIRE(pool_alloc(&b, 1, &x) == 0); /* skips them all, takes from the lists */
    CHECK_EQ(outbox_len(&a, a.slot), 0);
    CHECK_EQ(b.cache.n, 0); /* all cold after the flush: nothing cached */

    /* An index out of range among real ones. */
    for (int i = 0; i < 8; i++)
        REQUIRE(pool_alloc(&a, 1, &h[i]) == 0);
    CHECK_EQ(release_as_run(&a, h, 8), 0);
    atomic_store(&o->idx[(atomic_load(&o->head) + 3) & (POOL_OUTBOX - 1)], 0xfffffff0u);
    REQUIRE(pool_alloc(&b, 1, &y) == 0);
    CHECK_EQ(b.cache.n, 6); /* seven real ones taken, the bad one skipped */
    CHECK_EQ(pool_release(&b, y, true), 0);
    CHECK_EQ(pool_release(&b, x, true), 0);

    /* A head scribbled ahead of the tail: takers ignore the outbox; its
     * owner, once it looks full, starts it again. */
    (void)pool_flush(&a);
    atomic_store(&o->head, atomic_load(&o->tail) + 1000);
    CHECK_EQ(pool_alloc(&b, 1, &x), 0);
    CHECK_EQ(pool_release(&b, x, true), 0);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 8; i++)
            REQUIRE(pool_alloc(&a, 1, &h[i]) == 0);
        CHECK_EQ(release_as_run(&a, h, 8), 0);
    }
    CHECK(outbox_len(&a, a.slot) >= 8 && outbox_len(&a, a.slot) <= POOL_OUTBOX);

    /* A taker killed between the head's CAS and the blocks': cached by a,
     * listed nowhere. b's allocations find them all the same. */
    (void)pool_flush(&a);
    atomic_store(&o->head, atomic_load(&o->tail));
    for (int i = 0; i < 16; i++)
        REQUIRE(pool_alloc(&a, 1, &h[i]) == 0);
    CHECK_EQ(release_as_run(&a, h, 16), 0);
    CHECK_EQ(outbox_len(&a, a.slot), 16);
    atomic_store(&o->head, atomic_load(&o->tail)); /* as the dead taker left it */
    CHECK_EQ(cached_blocks(&a), 16);
    b.last_scan_ns = 0;
    for (int i = 0; i < 32; i++)
        CHECK_EQ(pool_alloc(&b, 1, &h[i]), 0);
    for (int i = 0; i < 32; i++)
        for (int j = i + 1; j < 32; j++)
            CHECK(idx_of(h[i]) != idx_of(h[j]));
    CHECK_EQ(release_as_run(&b, h, 16), 0);
    CHECK_EQ(release_as_run(&b, h + 16, 16), 0);
    struct pool_stats s = stats_of(&a);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.allocs, s.frees);
    check_consistent(&a);
    pool_detach(&b);
    pool_detach(&a);
}

/* Age-out takes back blocks that sat in an outbox a whole period, and the
 * reclaim of a dead client takes back those of its outbox. */
static void test_outbox_age_reclaim(void)
{
    struct pool p;
    const uint64_t age = 1000000000ull;
    REQUIRE(make_pool(&p, 4096, 64, age, true) == 0);
    uint64_t h[16];
    for (int i = 0; i < 16; i++)
        REQUIRE(pool_alloc(&p, 1, &h[i]) == 0);
    CHECK_EQ(release_as_run(&p, h, 16), 0);
    CHECK_EQ(outbox_len(&p, p.slot), 16);
    const uint32_t cached = cached_blocks(&p);
    CHECK(cached >= 16);
    const uint64_t t = mono_ns();
    (void)pool_age_out(&p, t); /* first sight: stamped */
    CHECK_EQ(cached_blocks(&p), cached);
    (void)pool_age_out(&p, t + age); /* a period on: taken back */
    CHECK_EQ(cached_blocks(&p), 0);
    check_consistent(&p);

    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct pool c;
        int fd = dup(p.seg.fd);
        if (fd < 0 || pool_attach(fd, &c) != 0)
            _exit(1);
        uint64_t k[20];
        for (int i = 0; i < 20; i++)
            if (pool_alloc(&c, 1, &k[i]) != 0)
                _exit(2);
        if (release_as_run(&c, k, 19) != 0) /* one stays held */
            _exit(3);
        _exit(outbox_len(&c, c.slot) == 19 ? 0 : 4); /* no detach: as if killed */
    }
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(cached_blocks(&p) >= 19);
    CHECK_EQ(pool_reclaim_dead(&p), 1);
    pool_flush(&p);
    CHECK_EQ(cached_blocks(&p), 0);
    struct pool_stats s = stats_of(&p);
    CHECK_EQ(s.used, 0);
    CHECK_EQ(s.warm + s.cold, 64);
    CHECK_EQ(s.allocs, s.frees);
    check_consistent(&p);
    pool_detach(&p);
}

/* pool_alloc_run on a pool whose blocks are all cold (not prefaulted, never
 * used): the warm list gives no run, and the blocks come one by one — the
 * full count, each once, not one per call; short only when the pool is. */
static void test_alloc_run_cold_pool(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4096, 48, 0, false) == 0);
    uint64_t h[48];
    CHECK_EQ(pool_alloc_run(&p, 100, h, 32), 32);
    CHECK_EQ(pool_alloc_run(&p, 100, h + 32, 32), 16); /* the pool ran short */
    uint64_t x;
    CHECK_EQ(pool_alloc_run(&p, 100, &x, 4), MBQ_POOL_ERR_ALLOCATION_FAILED);
    int dup = 0;
    for (int i = 0; i < 48; i++)
        for (int j = 0; j < i; j++)
            dup += (uint32_t)h[i] == (uint32_t)h[j];
    CHECK_EQ(dup, 0);
    CHECK_EQ(stats_of(&p).used, 48);
    for (int i = 0; i < 48; i++)
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    CHECK_EQ(stats_of(&p).used, 0);
    check_consistent(&p);
    pool_detach(&p);
}

CHECK_MAIN(CASE(test_params_errors), CASE(test_alloc_exhaustion), CASE(test_alloc_bad_size),
           CASE(test_refcount), CASE(test_stale_handle), CASE(test_lifo_reuse),
           CASE(test_data_pages), CASE(test_small_blocks), CASE(test_age_out_punches),
           CASE(test_age_out_keeps_recent),
           CASE(test_flush), CASE(test_invalidate), CASE(test_attach_second_mapping),
           CASE(test_attach_rejects_corrupt), CASE(test_client_slots), CASE(test_reclaim),
           CASE(test_lock_recovery_repair), CASE(test_alloc_repairs_corrupt_list), CASE(test_orphans),
           CASE(test_corruption_fuzz), CASE(test_cache_reuse_and_counts), CASE(test_cache_steal),
           CASE(test_cache_reclaim), CASE(test_cache_flush_age_invalidate), CASE(test_disown),
           CASE(test_cache_two_threads), CASE(test_cache_strays), CASE(test_cache_owner_exits),
           CASE(test_outbox_handoff), CASE(test_outbox_full_invalidated),
           CASE(test_outbox_stale_scribbled), CASE(test_outbox_age_reclaim),
           CASE(test_alloc_run_cold_pool))
