/* The pool's format area and buffer metadata (shm/pool.h "Format
 * descriptions"): interning finds an identical format again, recycles the
 * least recently interned slot, and a recycled or forged id is refused;
 * scribbled slots (a length out of range, a writer that died mid-write,
 * garbage ids in a block) are detected and never read out of bounds; a
 * process killed while interning leaves a pool others can intern into and
 * read from; flags and freeze follow the block's life. */
#include "check.h"

#include "pool_layout.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int make_pool(struct pool *p, uint32_t count)
{
    struct pool_params prm = {.block_size = 4096, .block_count = count, .prefault = true};
    return pool_create(&prm, p);
}

static void test_intern_and_read(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4) == 0);
    uint64_t a, b, a2;
    const char caps_a[] = "video/x-raw,format=NV12,width=1920,height=1080";
    const char caps_b[] = "video/x-h264,stream-format=byte-stream";
    CHECK_EQ(pool_format_intern(&p, caps_a, sizeof caps_a, &a), 0);
    CHECK_EQ(pool_format_intern(&p, caps_b, sizeof caps_b, &b), 0);
    CHECK_EQ(pool_format_intern(&p, caps_a, sizeof caps_a, &a2), 0);
    CHECK_EQ(a, a2); /* found again: no new slot */
    CHECK(a != b);
    char buf[POOL_FORMAT_MAX];
    uint32_t n = 0;
    CHECK_EQ(pool_format_read(&p, a, buf, sizeof buf, &n), 0);
    CHECK_EQ(n, sizeof caps_a);
    CHECK(!memcmp(buf, caps_a, n));
    CHECK_EQ(pool_format_read(&p, b, buf, 4, &n), -ERANGE);
    CHECK_EQ(n, sizeof caps_b);
    /* bad arguments */
    CHECK_EQ(pool_format_intern(&p, caps_a, 0, &a2), -EINVAL);
    CHECK_EQ(pool_format_intern(&p, caps_a, POOL_FORMAT_MAX + 1, &a2), -EINVAL);
    /* the largest format */
    static char big[POOL_FORMAT_MAX];
    memset(big, 'z', sizeof big);
    uint64_t z;
    CHECK_EQ(pool_format_intern(&p, big, sizeof big, &z), 0);
    CHECK_EQ(pool_format_read(&p, z, buf, sizeof buf, &n), 0);
    CHECK_EQ(n, (uint32_t)POOL_FORMAT_MAX);
    /* forged ids: no slot, odd generation, zero */
    CHECK_EQ(pool_format_read(&p, (uint64_t)2 << 32 | (POOL_FORMATS + 1), buf, sizeof buf, &n),
             -EBADMSG);
    CHECK_EQ(pool_format_read(&p, (uint64_t)3 << 32 | 1, buf, sizeof buf, &n), -EBADMSG);
    CHECK_EQ(pool_format_read(&p, 0, buf, sizeof buf, &n), -EBADMSG);
    CHECK_EQ(pool_format_read(&p, (a + ((uint64_t)2 << 32)), buf, sizeof buf, &n), -ESTALE);
    pool_detach(&p);
}

static void test_recycle_lru(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 4) == 0);
    uint64_t first, keep, id;
    char fmt[32];
    CHECK_EQ(pool_format_intern(&p, "first", 5, &first), 0);
    CHECK_EQ(pool_format_intern(&p, "keep", 4, &keep), 0);
    /* POOL_FORMATS - 2 more fill the area; "keep" is interned again each
     * time, so it is never the least recently used */
    for (int i = 0; i < POOL_FORMATS - 2; i++) {
        int n = snprintf(fmt, sizeof fmt, "fmt-%d", i);
        CHECK_EQ(pool_format_intern(&p, fmt, (uint32_t)n, &id), 0);
        CHECK_EQ(pool_format_intern(&p, "keep", 4, &id), 0);
        CHECK_EQ(id, keep);
    }
    CHECK(pool_format_current(&p, first));
    CHECK_EQ(pool_format_intern(&p, "one more", 8, &id), 0); /* recycles "first" */
    CHECK(!pool_format_current(&p, first));
    CHECK((uint32_t)id == (uint32_t)first); /* its slot, a new generation */
    char buf[64];
    uint32_t n;
    CHECK_EQ(pool_format_read(&p, first, buf, sizeof buf, &n), -ESTALE);
    CHECK_EQ(pool_format_read(&p, keep, buf, sizeof buf, &n), 0);
    CHECK(n == 4 && !memcmp(buf, "keep", 4));
    pool_detach(&p);
}

/* A slot that a live buffer carries is never recycled: with every slot
 * carried, a new format is refused; once a buffer is freed its slot goes. */
static void test_carried_slots_stay(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, POOL_FORMATS + 1) == 0);
    uint64_t h[POOL_FORMATS], id[POOL_FORMATS], x;
    char fmt[32], buf[32];
    uint32_t n;
    for (int i = 0; i < POOL_FORMATS; i++) {
        int len = snprintf(fmt, sizeof fmt, "carried-%d", i);
        CHECK_EQ(pool_alloc(&p, 100, &h[i]), 0);
        CHECK_EQ(pool_format_intern(&p, fmt, (uint32_t)len, &id[i]), 0);
        CHECK_EQ(pool_set_format(&p, h[i], id[i]), 0);
    }
    CHECK_EQ(pool_format_intern(&p, "new", 3, &x), -ENOSPC);
    for (int i = 0; i < POOL_FORMATS; i++)
        CHECK_EQ(pool_format_read(&p, id[i], buf, sizeof buf, &n), 0);
    CHECK_EQ(pool_release(&p, h[5], true), 0);
    CHECK_EQ(pool_format_intern(&p, "new", 3, &x), 0);
    CHECK_EQ((uint32_t)x, (uint32_t)id[5]); /* the slot no one carries */
    CHECK_EQ(pool_format_read(&p, id[5], buf, sizeof buf, &n), -ESTALE);
    for (int i = 0; i < POOL_FORMATS; i++)
        if (i != 5) {
            CHECK_EQ(pool_format_read(&p, id[i], buf, sizeof buf, &n), 0);
            pool_release(&p, h[i], true);
        }
    pool_detach(&p);
}

/* A buffer's format id and flags, and the freeze. */
static void test_block_metadata(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 2) == 0);
    uint64_t h, id, got;
    CHECK_EQ(pool_alloc(&p, 100, &h), 0);
    CHECK_EQ(pool_get_format(&p, h, &got), 0);
    CHECK_EQ(got, 0u);
    uint32_t f;
    CHECK_EQ(pool_get_flags(&p, h, &f), 0);
    CHECK_EQ(f, POOL_FLAGS_DEFAULT);
    CHECK_EQ(pool_format_intern(&p, "caps", 4, &id), 0);
    CHECK_EQ(pool_set_format(&p, h, id), 0);
    CHECK_EQ(pool_set_format(&p, h, (uint64_t)2 << 32 | 99), -EBADMSG);
    CHECK_EQ(pool_set_format(&p, h, id + ((uint64_t)2 << 32)), -ESTALE);
    CHECK_EQ(pool_set_flags(&p, h, 0x80000005u), 0);
    CHECK_EQ(pool_freeze(&p, h), 1);
    CHECK_EQ(pool_freeze(&p, h), 0);
    CHECK_EQ(pool_set_format(&p, h, 0), -EPERM);
    CHECK_EQ(pool_set_flags(&p, h, 0), -EPERM);
    CHECK_EQ(pool_set_timing(&p, h, MBQ_TIME_ZERO, MBQ_TIME_ZERO, MBQ_TIME_ZERO), -EPERM);
    CHECK_EQ(pool_set_data_size(&p, h, 1), -EPERM);
    CHECK_EQ(pool_set_ready(&p, h, false), 0); /* readiness is not frozen */
    CHECK_EQ(pool_get_format(&p, h, &got), 0);
    CHECK_EQ(got, id);
    CHECK_EQ(pool_get_flags(&p, h, &f), 0);
    CHECK_EQ(f, 0x80000005u);
    CHECK_EQ(pool_release(&p, h, true), 0);
    CHECK_EQ(pool_get_format(&p, h, &got), -ESTALE);
    /* the block comes back thawed, flags and format reset */
    uint64_t h2;
    CHECK_EQ(pool_alloc(&p, 100, &h2), 0);
    CHECK_EQ(pool_alloc(&p, 100, &h), 0); /* one of the two is the old block */
    CHECK(!pool_is_frozen(&p, h) && !pool_is_frozen(&p, h2));
    CHECK_EQ(pool_get_format(&p, h, &got), 0);
    CHECK_EQ(got, 0u);
    CHECK_EQ(pool_get_flags(&p, h, &f), 0);
    CHECK_EQ(f, POOL_FLAGS_DEFAULT);
    pool_release(&p, h, true);
    pool_release(&p, h2, true);
    pool_detach(&p);
}

/* Hostile writes into the format area and into a block's format id. */
static void test_scribbled(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 2) == 0);
    uint64_t id, h, id2;
    char buf[POOL_FORMAT_MAX];
    uint32_t n;
    CHECK_EQ(pool_format_intern(&p, "caps", 4, &id), 0);
    struct pool_format *f = &p.formats[(uint32_t)id - 1];
    f->len = 1u << 30; /* out of range */
    CHECK_EQ(pool_format_read(&p, id, buf, sizeof buf, &n), -EBADMSG);
    f->len = 0;
    CHECK_EQ(pool_format_read(&p, id, buf, sizeof buf, &n), -EBADMSG);
    /* a writer that died mid-write: odd seq, never readable, reused */
    atomic_store(&f->seq, atomic_load(&f->seq) + 1);
    CHECK_EQ(pool_format_read(&p, id, buf, sizeof buf, &n), -ESTALE);
    for (int i = 0; i < POOL_FORMATS; i++) /* all slots scribbled odd */
        atomic_store(&p.formats[i].seq, 7);
    CHECK_EQ(pool_format_intern(&p, "again", 5, &id2), 0);
    CHECK_EQ(pool_format_read(&p, id2, buf, sizeof buf, &n), 0);
    CHECK(n == 5 && !memcmp(buf, "again", 5));
    /* garbage in the block's format id */
    CHECK_EQ(pool_alloc(&p, 100, &h), 0);
    struct pool_block *b = pool_block_of(&p, h);
    REQUIRE(b);
    const uint64_t junk[] = {UINT64_MAX, 0xdeadbeefcafef00dull, (uint64_t)8 << 32 | 0xffff,
                             (uint64_t)9 << 32 | 1};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        b->format = junk[i];
        uint64_t got;
        CHECK_EQ(pool_get_format(&p, h, &got), 0);
        int r = pool_format_read(&p, got, buf, sizeof buf, &n);
        CHECK(r == -EBADMSG || r == -ESTALE);
    }
    pool_release(&p, h, true);
    pool_detach(&p);
}

/* Attachments: set, replace, get, remove, propagate; a scribbled area is
 * -EBADMSG for every call, never read out of bounds. */
static void test_attachments(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 2) == 0);
    uint64_t a, b;
    CHECK_EQ(pool_alloc(&p, 100, &a), 0);
    CHECK_EQ(pool_alloc(&p, 100, &b), 0);
    char buf[POOL_ATTACH_MAX];
    uint32_t n = 0;
    bool prop = false;
    CHECK_EQ(pool_attachment_count(&p, a), 0);
    CHECK_EQ(pool_attachment_get(&p, a, "x", buf, sizeof buf, &n, &prop), -ENOENT);
    CHECK_EQ(pool_attachment_set(&p, a, "timecode", "01:02:03:04", 11, true), 0);
    CHECK_EQ(pool_attachment_set(&p, a, "layout", "planar", 6, false), 0);
    CHECK_EQ(pool_attachment_set(&p, a, "timecode", "05:06:07:08", 11, true), 0); /* replaced */
    CHECK_EQ(pool_attachment_count(&p, a), 2);
    CHECK_EQ(pool_attachment_get(&p, a, "timecode", buf, sizeof buf, &n, &prop), 0);
    CHECK(n == 11 && !memcmp(buf, "05:06:07:08", 11) && prop);
    CHECK_EQ(pool_attachment_get(&p, a, "layout", buf, 2, &n, &prop), -ERANGE);
    CHECK(n == 6 && !prop);
    CHECK_EQ(pool_attachment_set(&p, a, "empty", NULL, 0, false), 0);
    CHECK_EQ(pool_attachment_get(&p, a, "empty", NULL, 0, &n, &prop), 0);
    CHECK_EQ(n, 0u);
    /* bounds: keys, a value too large for what is left */
    CHECK_EQ(pool_attachment_set(&p, a, "", "v", 1, false), -EINVAL);
    char longkey[POOL_ATTACH_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    CHECK_EQ(pool_attachment_set(&p, a, longkey, "v", 1, false), -EINVAL);
    static char big[POOL_ATTACH_MAX];
    CHECK_EQ(pool_attachment_set(&p, a, "big", big, POOL_ATTACH_MAX - 10, false), -ENOSPC);
    CHECK_EQ(pool_attachment_count(&p, a), 3); /* unchanged */
    /* propagate: only the propagating ones, replacing the same key */
    CHECK_EQ(pool_attachment_set(&p, b, "timecode", "old", 3, true), 0);
    CHECK_EQ(pool_attachment_set(&p, b, "mine", "m", 1, false), 0);
    CHECK_EQ(pool_attachment_propagate(&p, b, &p, a), 0);
    CHECK_EQ(pool_attachment_count(&p, b), 2);
    CHECK_EQ(pool_attachment_get(&p, b, "timecode", buf, sizeof buf, &n, &prop), 0);
    CHECK(n == 11 && !memcmp(buf, "05:06:07:08", 11));
    CHECK_EQ(pool_attachment_get(&p, b, "layout", buf, sizeof buf, &n, &prop), -ENOENT);
    CHECK_EQ(pool_attachment_remove(&p, b, "mine"), 0);
    CHECK_EQ(pool_attachment_remove(&p, b, "mine"), -ENOENT);
    CHECK_EQ(pool_attachment_remove(&p, b, NULL), 0);
    CHECK_EQ(pool_attachment_count(&p, b), 0);
    /* frozen */
    CHECK_EQ(pool_freeze(&p, b), 1);
    CHECK_EQ(pool_attachment_set(&p, b, "k", "v", 1, false), -EPERM);
    CHECK_EQ(pool_attachment_propagate(&p, b, &p, a), -EPERM);
    /* scribbled: a length past the area, a record running past the end */
    struct pool_block *blk = pool_block_of(&p, a);
    REQUIRE(blk);
    const uint32_t saved = blk->attach_len;
    blk->attach_len = POOL_ATTACH_MAX + 1;
    CHECK_EQ(pool_attachment_count(&p, a), -EBADMSG);
    CHECK_EQ(pool_attachment_get(&p, a, "timecode", buf, sizeof buf, &n, &prop), -EBADMSG);
    blk->attach_len = saved;
    uint8_t *area = p.attach + (size_t)((uint32_t)a - 1) * POOL_ATTACH_MAX;
    for (int trial = 0; trial < 2000; trial++) { /* random garbage in the used part */
        for (uint32_t i = 0; i < POOL_ATTACH_MAX; i++)
            area[i] = (uint8_t)(rand() & 0xff);
        blk->attach_len = (uint32_t)rand() % (POOL_ATTACH_MAX + 1);
        int r = pool_attachment_count(&p, a);
        CHECK(r >= 0 || r == -EBADMSG);
        r = pool_attachment_get(&p, a, "timecode", buf, sizeof buf, &n, &prop);
        CHECK(r == 0 || r == -ENOENT || r == -ERANGE || r == -EBADMSG);
        r = pool_attachment_set(&p, a, "k", "v", 1, true);
        CHECK(r == 0 || r == -ENOSPC || r == -EBADMSG);
        r = pool_attachment_propagate(&p, a, &p, a);
        CHECK(r == 0 || r == -ENOSPC || r == -EBADMSG);
    }
    pool_release(&p, a, true);
    pool_release(&p, b, true);
    pool_detach(&p);
}

/* A process killed at any point of interning: others still intern and
 * read (the lock is recovered by its next taker, the slot it was writing
 * is odd or complete). Forked children share the segment. */
static void test_kill_while_interning(void)
{
    struct pool p;
    REQUIRE(make_pool(&p, 2) == 0);
    for (int round = 0; round < 20; round++) {
        int pipefd[2];
        REQUIRE(pipe(pipefd) == 0);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(pipefd[0]);
            struct pool c;
            if (pool_attach(p.seg.fd, &c) < 0)
                _exit(1);
            static char fmt[POOL_FORMAT_MAX];
            for (unsigned i = 0;; i++) {
                memset(fmt, 'a' + (int)(i % 26), sizeof fmt);
                uint64_t id;
                (void)pool_format_intern(&c, fmt, 1000 + i % 3000, &id);
                if (i == 50) /* running: the parent may kill now */
                    (void)!write(pipefd[1], "x", 1);
            }
        }
        close(pipefd[1]);
        char x;
        REQUIRE(read(pipefd[0], &x, 1) == 1);
        close(pipefd[0]);
        /* a different moment each round: a few more interns in */
        for (volatile int spin = 0; spin < round * 20000; spin++) {
        }
        kill(pid, SIGKILL);
        int st;
        REQUIRE(waitpid(pid, &st, 0) == pid);
        /* others carry on: every slot reads whole or is refused */
        char name[32];
        int len = snprintf(name, sizeof name, "after-%d", round);
        uint64_t id;
        int r = pool_format_intern(&p, name, (uint32_t)len, &id);
        CHECK_EQ(r, 0);
        char buf[POOL_FORMAT_MAX];
        uint32_t n;
        if (r == 0) {
            CHECK_EQ(pool_format_read(&p, id, buf, sizeof buf, &n), 0);
            CHECK(n == (uint32_t)len && !memcmp(buf, name, n));
        }
        for (int i = 0; i < POOL_FORMATS; i++) {
            uint32_t seq = atomic_load(&p.formats[i].seq);
            int rr = pool_format_read(&p, (uint64_t)seq << 32 | (uint32_t)(i + 1), buf,
                                      sizeof buf, &n);
            CHECK(rr == 0 || rr == -ESTALE || rr == -EBADMSG);
            if (rr == 0 && memcmp(buf, "after-", 6) != 0) {
                /* whole: the child's formats are one letter throughout */
                bool whole = n >= 1000;
                for (uint32_t k = 1; k < n && whole; k++)
                    whole = buf[k] == buf[0];
                CHECK(whole);
            }
        }
        pool_reclaim_dead(&p);
    }
    pool_detach(&p);
}

CHECK_MAIN(CASE(test_intern_and_read), CASE(test_recycle_lru), CASE(test_carried_slots_stay),
           CASE(test_block_metadata), CASE(test_attachments),
           CASE(test_scribbled), CASE(test_kill_while_interning))
