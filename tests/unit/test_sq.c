/* Simple queue in one process: Core Media's argument and status rules, FIFO
 * behaviour over many wrap-arounds, a second mapping of the same segment,
 * and the checks that keep a corrupt or foreign segment from being trusted
 * (attach validation and counters rewritten behind the queue's back). */
#include "check.h"

#include "sq_layout.h"

#include <mbq/status.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#define VALUES_OFFSET sizeof(struct sq_shared)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int count_memfd_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "/memfd:"))
            n++;
    fclose(f);
    return n;
}

/* A second, independent mapping of a queue's segment: how a hostile or
 * buggy peer sees it. */
static struct sq_shared *raw_map(int fd, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

static uint64_t *raw_values(struct sq_shared *sh)
{
    return (uint64_t *)((char *)sh + VALUES_OFFSET);
}

static void raw_set_counters(struct sq_shared *sh, uint64_t head, uint64_t tail)
{
    atomic_store(&sh->head, head);
    atomic_store(&sh->tail, tail);
}

/* A segment that would pass as a simple queue of capacity cap if its fd
 * passed seg_map's checks. */
static void write_sq_header(void *base, size_t size, uint16_t kind, uint32_t cap)
{
    struct sq_shared *sh = base;
    memset(base, 0, sizeof(*sh));
    sh->hdr.magic = SEG_MAGIC;
    sh->hdr.layout_version = SEG_LAYOUT_VERSION;
    sh->hdr.kind = kind;
    sh->hdr.size = size;
    sh->hdr.header_size = sizeof(struct seg_header);
    sh->capacity = cap;
    sh->values_offset = VALUES_OFFSET;
}

/* ---- creation and argument errors ---- */

static void test_create_errors(void)
{
    struct sq q;
    CHECK_EQ(sq_create(0, &q), MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(q.seg.fd, -1);
    CHECK(q.sh == NULL);
    CHECK_EQ(sq_create(-1, &q), MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE);
    CHECK_EQ(sq_create(INT32_MIN, &q), MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE);
    CHECK_EQ(sq_create(SQ_MAX_CAPACITY + 1, &q), MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE);
    CHECK_EQ(sq_create(INT32_MAX, &q), MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE);
    CHECK_EQ(q.seg.fd, -1);
    CHECK_EQ(sq_create(4, NULL), MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(sq_create(0, NULL), MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING);
    sq_detach(&q); /* a failed create leaves something detach accepts */
    sq_detach(NULL);
}

static void test_create_limits(void)
{
    struct sq q;
    REQUIRE(sq_create(1, &q) == 0);
    CHECK_EQ(sq_capacity(&q), 1);
    CHECK(q.seg.fd >= 0);
    CHECK(q.seg.size >= VALUES_OFFSET + 8);
    CHECK_EQ(q.sh->capacity, 1);
    CHECK_EQ(q.sh->values_offset, VALUES_OFFSET);
    sq_detach(&q);
    CHECK_EQ(q.seg.fd, -1);
    CHECK_EQ(sq_capacity(&q), 0);

    REQUIRE(sq_create(SQ_MAX_CAPACITY, &q) == 0);
    CHECK_EQ(sq_capacity(&q), SQ_MAX_CAPACITY);
    CHECK(q.seg.size >= VALUES_OFFSET + (size_t)SQ_MAX_CAPACITY * 8);
    CHECK_EQ(sq_enqueue(&q, 11), 0);
    CHECK_EQ(sq_enqueue(&q, 12), 0);
    CHECK_EQ(sq_count(&q), 2);
    CHECK_EQ(sq_dequeue(&q), 11);
    CHECK_EQ(sq_dequeue(&q), 12);
    sq_detach(&q);
}

static void test_null_and_zero_arguments(void)
{
    CHECK_EQ(sq_enqueue(NULL, 1), MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(sq_dequeue(NULL), 0);
    CHECK_EQ(sq_peek(NULL), 0);
    CHECK_EQ(sq_reset(NULL), MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(sq_capacity(NULL), 0);
    CHECK_EQ(sq_count(NULL), 0);
    CHECK(sq_fullness(NULL) == 0.0f);

    struct sq q;
    REQUIRE(sq_create(4, &q) == 0);
    CHECK_EQ(sq_enqueue(&q, 0), MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(sq_count(&q), 0); /* the rejected 0 was not queued */
    CHECK_EQ(sq_enqueue(&q, UINT64_MAX), 0);
    CHECK(sq_dequeue(&q) == UINT64_MAX);
    sq_detach(&q);

    /* A detached queue behaves like a NULL one rather than crashing. */
    CHECK_EQ(sq_enqueue(&q, 1), MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(sq_dequeue(&q), 0);
    CHECK_EQ(sq_peek(&q), 0);
    CHECK_EQ(sq_reset(&q), MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING);
    CHECK_EQ(sq_count(&q), 0);
}

/* ---- single-mapping behaviour ---- */

static void test_full_uses_whole_capacity(void)
{
    static const int32_t caps[] = {1, 2, 5, 8, 1000};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        int32_t cap = caps[c];
        struct sq q;
        REQUIRE(sq_create(cap, &q) == 0);
        for (int32_t i = 0; i < cap; i++)
            CHECK_EQ(sq_enqueue(&q, 100 + (uint64_t)i), 0);
        CHECK_EQ(sq_count(&q), cap);
        CHECK(sq_fullness(&q) == 1.0f);
        CHECK_EQ(sq_enqueue(&q, 7), MBQ_SQ_ERR_QUEUE_IS_FULL);
        CHECK_EQ(sq_enqueue(&q, 7), MBQ_SQ_ERR_QUEUE_IS_FULL);
        CHECK_EQ(sq_count(&q), cap);
        CHECK_EQ(sq_dequeue(&q), 100);
        CHECK_EQ(sq_enqueue(&q, 7), 0);
        CHECK_EQ(sq_enqueue(&q, 8), MBQ_SQ_ERR_QUEUE_IS_FULL);
        for (int32_t i = 1; i < cap; i++)
            CHECK_EQ(sq_dequeue(&q), 100 + (uint64_t)i);
        CHECK_EQ(sq_dequeue(&q), 7);
        CHECK_EQ(sq_dequeue(&q), 0);
        CHECK_EQ(sq_count(&q), 0);
        sq_detach(&q);
    }
}

static void test_empty(void)
{
    struct sq q;
    REQUIRE(sq_create(3, &q) == 0);
    CHECK_EQ(sq_dequeue(&q), 0);
    CHECK_EQ(sq_peek(&q), 0);
    CHECK_EQ(sq_count(&q), 0);
    CHECK(sq_fullness(&q) == 0.0f);
    CHECK_EQ(sq_enqueue(&q, 5), 0);
    CHECK_EQ(sq_dequeue(&q), 5);
    CHECK_EQ(sq_dequeue(&q), 0);
    CHECK_EQ(sq_peek(&q), 0);
    /* An empty dequeue must not move head: the next value still arrives. */
    CHECK_EQ(sq_enqueue(&q, 6), 0);
    CHECK_EQ(sq_dequeue(&q), 6);
    sq_detach(&q);
}

static void test_fifo_peek_count_fullness(void)
{
    struct sq q;
    REQUIRE(sq_create(4, &q) == 0);
    CHECK_EQ(sq_capacity(&q), 4);
    for (uint64_t v = 1; v <= 4; v++) {
        CHECK_EQ(sq_enqueue(&q, v * 10), 0);
        CHECK_EQ(sq_count(&q), v);
        CHECK(sq_fullness(&q) == (float)v / 4.0f);
        CHECK_EQ(sq_peek(&q), 10); /* the head, not the newest */
    }
    for (uint64_t v = 1; v <= 4; v++) {
        CHECK_EQ(sq_peek(&q), v * 10);
        CHECK_EQ(sq_peek(&q), v * 10); /* peeking does not consume */
        CHECK_EQ(sq_count(&q), 5 - v);
        CHECK_EQ(sq_dequeue(&q), v * 10);
    }
    CHECK_EQ(sq_count(&q), 0);
    CHECK_EQ(sq_capacity(&q), 4);
    sq_detach(&q);
}

static void test_reset(void)
{
    struct sq q;
    REQUIRE(sq_create(5, &q) == 0);
    CHECK_EQ(sq_reset(&q), 0); /* on an empty queue */
    CHECK_EQ(sq_count(&q), 0);
    for (uint64_t v = 1; v <= 5; v++)
        CHECK_EQ(sq_enqueue(&q, v), 0);
    CHECK_EQ(sq_dequeue(&q), 1);
    CHECK_EQ(sq_reset(&q), 0);
    CHECK_EQ(sq_count(&q), 0);
    CHECK(sq_fullness(&q) == 0.0f);
    CHECK_EQ(sq_capacity(&q), 5);
    CHECK_EQ(sq_dequeue(&q), 0);
    CHECK_EQ(sq_peek(&q), 0);
    /* The whole capacity is available again, in order. */
    for (uint64_t v = 101; v <= 105; v++)
        CHECK_EQ(sq_enqueue(&q, v), 0);
    CHECK_EQ(sq_enqueue(&q, 106), MBQ_SQ_ERR_QUEUE_IS_FULL);
    for (uint64_t v = 101; v <= 105; v++)
        CHECK_EQ(sq_dequeue(&q), v);
    CHECK_EQ(sq_dequeue(&q), 0);
    sq_detach(&q);
}

/* Random enqueue/dequeue/peek against a plain array model, long enough to
 * wrap each ring many times at every fill level. */
static void test_wraparound_against_model(void)
{
    static const int32_t caps[] = {1, 3, 7, 8, 64, 1000};
    enum { OPS = 300000 };
    static uint64_t model[OPS];
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        int32_t cap = caps[c];
        struct sq q;
        REQUIRE(sq_create(cap, &q) == 0);
        size_t mhead = 0, mtail = 0;
        uint64_t next = 1;
        int bad = 0;
        for (int i = 0; i < OPS && !bad; i++) {
            uint64_t r = rng();
            /* Drift between mostly-filling and mostly-draining phases. */
            int fill_bias = (i / 5000) % 2 ? 3 : 1;
            if (r % 4 < (uint64_t)fill_bias) {
                int rc = sq_enqueue(&q, next);
                if (mtail - mhead == (size_t)cap) {
                    bad |= rc != MBQ_SQ_ERR_QUEUE_IS_FULL;
                } else {
                    bad |= rc != 0;
                    model[mtail++] = next;
                }
                next++;
            } else if (r % 8 == 7) {
                bad |= sq_peek(&q) != (mtail > mhead ? model[mhead] : 0);
            } else {
                bad |= sq_dequeue(&q) != (mtail > mhead ? model[mhead] : 0);
                if (mtail > mhead)
                    mhead++;
            }
            bad |= sq_count(&q) != (int32_t)(mtail - mhead);
            if (bad)
                fprintf(stderr, "capacity %d diverged from the model at op %d\n", cap, i);
        }
        CHECK(!bad);
        CHECK(q.sh->tail > 2u * (uint64_t)cap); /* it really wrapped */
        sq_detach(&q);
    }
}

/* 64-bit counters never wrap in practice, but a queue must not care where
 * they start; use a power-of-two ring, for which n % cap is continuous
 * across 2^64. */
static void test_counters_across_2_64(void)
{
    struct sq q, c;
    REQUIRE(sq_create(8, &q) == 0);
    raw_set_counters(q.sh, UINT64_MAX - 20, UINT64_MAX - 20);
    REQUIRE(sq_attach(q.seg.fd, &c) == 0);
    sq_detach(&q);
    uint64_t in = 1, out = 1;
    for (int i = 0; i < 200; i++) {
        while (sq_enqueue(&c, in) == 0)
            in++;
        for (int k = 0; k < 1 + i % 8; k++) {
            uint64_t v = sq_dequeue(&c);
            if (v == 0)
                break;
            CHECK_EQ(v, out);
            out++;
        }
    }
    CHECK(c.sh->tail < 2000); /* went through 2^64 */
    CHECK_EQ(sq_count(&c), (int64_t)(in - out));
    sq_detach(&c);
}

/* The point of the cached counters: while its copy shows room (producer) or
 * elements (consumer), a side does not read the other's shared counter at
 * all. Made visible by poisoning that counter behind its back. */
static void test_caches_avoid_shared_reads(void)
{
    struct sq p, c;
    REQUIRE(sq_create(8, &p) == 0);
    REQUIRE(sq_attach(p.seg.fd, &c) == 0);
    for (uint64_t v = 1; v <= 8; v++)
        CHECK_EQ(sq_enqueue(&p, v), 0);
    CHECK_EQ(sq_dequeue(&c), 1); /* c loads tail = 8 once */
    for (uint64_t v = 2; v <= 8; v++)
        CHECK_EQ(sq_dequeue(&c), v);
    CHECK_EQ(sq_enqueue(&p, 9), 0); /* p finds head = 8 once */

    atomic_store(&p.sh->head, 1000); /* nonsense: head > tail */
    for (uint64_t v = 10; v <= 16; v++)
        CHECK_EQ(sq_enqueue(&p, v), 0); /* within its copy: no read of head */
    CHECK_EQ(sq_enqueue(&p, 17), -EUCLEAN); /* copy says full: reload sees it */
    atomic_store(&p.sh->head, 8);

    CHECK_EQ(sq_dequeue(&c), 9); /* c loads tail = 16 */
    atomic_store(&p.sh->tail, 1);   /* nonsense: tail < head */
    for (uint64_t v = 10; v <= 16; v++)
        CHECK_EQ(sq_dequeue(&c), v); /* within its copy: no read of tail */
    CHECK_EQ(sq_dequeue(&c), 0);     /* copy says empty: reload, corrupt */
    CHECK_EQ(sq_count(&c), 0);
    atomic_store(&p.sh->tail, 16);
    CHECK_EQ(sq_count(&c), 0);
    CHECK_EQ(sq_enqueue(&p, 17), 0);
    CHECK_EQ(sq_dequeue(&c), 17);
    sq_detach(&c);
    sq_detach(&p);
}

/* ---- second mapping ---- */

static void test_attach_second_mapping(void)
{
    struct sq p, c;
    REQUIRE(sq_create(8, &p) == 0);
    for (uint64_t v = 1; v <= 5; v++)
        CHECK_EQ(sq_enqueue(&p, v), 0);
    REQUIRE(sq_attach(p.seg.fd, &c) == 0);
    CHECK(c.sh != p.sh);
    CHECK(c.seg.fd != p.seg.fd);
    CHECK(fcntl(p.seg.fd, F_GETFD) >= 0); /* the caller's fd is still its own */
    CHECK(fcntl(c.seg.fd, F_GETFD) & FD_CLOEXEC);
    CHECK_EQ(sq_capacity(&c), 8);
    CHECK_EQ(sq_count(&c), 5);
    CHECK_EQ(sq_peek(&c), 1);
    for (uint64_t v = 1; v <= 5; v++)
        CHECK_EQ(sq_dequeue(&c), v);
    CHECK_EQ(sq_dequeue(&c), 0);
    CHECK_EQ(sq_count(&p), 0);

    /* Producer and consumer through different mappings, so that each side's
     * cached copy of the other's counter goes stale and must be reloaded. */
    uint64_t in = 1, out = 1;
    int bad = 0;
    for (int round = 0; round < 20000 && !bad; round++) {
        int burst = (int)(rng() % 11);
        for (int k = 0; k < burst; k++) {
            int rc = sq_enqueue(&p, in);
            if (rc == MBQ_SQ_ERR_QUEUE_IS_FULL) {
                bad |= in - out != 8;
                break;
            }
            bad |= rc != 0;
            in++;
        }
        burst = (int)(rng() % 11);
        for (int k = 0; k < burst; k++) {
            uint64_t v = sq_dequeue(&c);
            if (v == 0) {
                bad |= in != out;
                break;
            }
            bad |= v != out++;
        }
    }
    CHECK(!bad);
    CHECK(out > 10000);

    /* Reset from the producer's side: the consumer's cached tail is behind
     * the new head and must not make it read the dropped values. */
    while (sq_enqueue(&p, in) == 0)
        in++;
    CHECK_EQ(sq_dequeue(&c), out);
    CHECK_EQ(sq_reset(&p), 0);
    CHECK_EQ(sq_dequeue(&c), 0);
    CHECK_EQ(sq_count(&c), 0);
    CHECK_EQ(sq_enqueue(&p, 4242), 0);
    CHECK_EQ(sq_dequeue(&c), 4242);

    /* Reset from the consumer's side: the producer's cached head is stale
     * (it saw a full queue) and must be reloaded to find the space. */
    for (int k = 0; k < 8; k++)
        CHECK_EQ(sq_enqueue(&p, 500 + (uint64_t)k), 0);
    CHECK_EQ(sq_enqueue(&p, 9), MBQ_SQ_ERR_QUEUE_IS_FULL);
    CHECK_EQ(sq_reset(&c), 0);
    for (int k = 0; k < 8; k++)
        CHECK_EQ(sq_enqueue(&p, 600 + (uint64_t)k), 0);
    CHECK_EQ(sq_enqueue(&p, 9), MBQ_SQ_ERR_QUEUE_IS_FULL);
    CHECK_EQ(sq_dequeue(&c), 600);

    /* The attached side holds its own fd: it outlives the creator. */
    sq_detach(&p);
    CHECK_EQ(sq_dequeue(&c), 601);
    CHECK_EQ(sq_enqueue(&c, 77), 0);
    CHECK_EQ(sq_count(&c), 7);
    sq_detach(&c);
}

/* ---- attach validation ---- */

static void check_attach_rejected(int fd, int expected, const char *what)
{
    int fds = count_fds(), maps = count_memfd_maps();
    struct sq q;
    memset(&q, 0x5a, sizeof q);
    int rc = sq_attach(fd, &q);
    if (rc != expected)
        fprintf(stderr, "attach of %s: %d, expected %d\n", what, rc, expected);
    CHECK_EQ(rc, expected);
    CHECK_EQ(q.seg.fd, -1);
    CHECK(q.sh == NULL && q.seg.base == NULL);
    CHECK_EQ(count_fds(), fds);          /* no duplicate kept */
    CHECK_EQ(count_memfd_maps(), maps);  /* nothing left mapped */
    CHECK_EQ(sq_dequeue(&q), 0);
    sq_detach(&q);
}

static void test_attach_rejects_foreign_fds(void)
{
    struct sq q;
    CHECK(sq_attach(-1, &q) < 0);
    CHECK(sq_attach(0, NULL) < 0);

    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    check_attach_rejected(p[0], -EBADMSG, "a pipe");
    close(p[0]);
    close(p[1]);

    int dn = open("/dev/null", O_RDWR | O_CLOEXEC);
    REQUIRE(dn >= 0);
    check_attach_rejected(dn, -EBADMSG, "/dev/null");
    close(dn);

    /* A regular file holding a perfect simple-queue image. */
    char path[] = "/tmp/test_sq_XXXXXX";
    int tf = mkostemp(path, O_CLOEXEC);
    REQUIRE(tf >= 0);
    unlink(path);
    REQUIRE(ftruncate(tf, 4096) == 0);
    void *tb = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, tf, 0);
    REQUIRE(tb != MAP_FAILED);
    write_sq_header(tb, 4096, SEG_KIND_SIMPLE_QUEUE, 8);
    munmap(tb, 4096);
    check_attach_rejected(tf, -EBADMSG, "a regular file");
    close(tf);
}

static void test_attach_rejects_unsealed_memfd(void)
{
    for (int variant = 0; variant < 3; variant++) {
        int fd = memfd_create("test-sq", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        REQUIRE(fd >= 0);
        REQUIRE(ftruncate(fd, 4096) == 0);
        void *b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        REQUIRE(b != MAP_FAILED);
        write_sq_header(b, 4096, SEG_KIND_SIMPLE_QUEUE, 8);
        munmap(b, 4096);
        if (variant == 1) /* can still grow */
            CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
        if (variant == 2) /* can still shrink: a peer could make us SIGBUS */
            CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW) == 0);
        check_attach_rejected(fd, -EBADMSG, "an unsealed memfd");
        /* Control: the same image with both seals is accepted. */
        if (variant == 0) {
            CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
            struct sq q;
            CHECK_EQ(sq_attach(fd, &q), 0);
            CHECK_EQ(sq_capacity(&q), 8);
            sq_detach(&q);
        }
        close(fd);
    }
}

static void test_attach_rejects_wrong_kind(void)
{
    static const enum seg_kind kinds[] = {SEG_KIND_BUFFER_QUEUE, SEG_KIND_POOL};
    for (size_t k = 0; k < 2; k++) {
        struct seg s;
        REQUIRE(seg_create("test-sq", 4096, kinds[k], &s) == 0);
        struct sq_shared *sh = s.base;
        sh->capacity = 8; /* otherwise a valid simple queue */
        sh->values_offset = VALUES_OFFSET;
        check_attach_rejected(s.fd, -EBADMSG, "a segment of another kind");
        seg_close(&s);
    }
    /* A simple-queue segment nobody initialised (capacity 0). */
    struct seg s;
    REQUIRE(seg_create("test-sq", 64, SEG_KIND_SIMPLE_QUEUE, &s) == 0);
    check_attach_rejected(s.fd, -EBADMSG, "an uninitialised segment");
    seg_close(&s);
}

static void test_attach_rejects_bad_header_fields(void)
{
    /* The slots that fill one page after the 384-byte header (464 packed). */
    const uint32_t fit = (4096 - VALUES_OFFSET) / (8 * SQ_SLOT_WORDS);
    struct sq q;
    REQUIRE(sq_create((int32_t)fit, &q) == 0);
    REQUIRE(q.seg.size == 4096);
    struct sq_shared *raw = raw_map(q.seg.fd, q.seg.size);
    REQUIRE(raw);

    const uint32_t bad_caps[] = {0, fit + 1, 4096, SQ_MAX_CAPACITY, SQ_MAX_CAPACITY + 1,
                                 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_caps / sizeof bad_caps[0]; i++) {
        raw->capacity = bad_caps[i];
        check_attach_rejected(q.seg.fd, -EBADMSG, "a corrupt capacity");
    }
    raw->capacity = fit;
    static const uint64_t bad_offsets[] = {0, 64, 383, 385, 392, 4096, 1ull << 40, UINT64_MAX,
                                           UINT64_MAX - 383};
    for (size_t i = 0; i < sizeof bad_offsets / sizeof bad_offsets[0]; i++) {
        raw->values_offset = bad_offsets[i];
        check_attach_rejected(q.seg.fd, -EBADMSG, "a corrupt values_offset");
    }
    raw->values_offset = VALUES_OFFSET;

    /* Each checked byte of the segment header (magic, version, kind, size,
     * header_size) makes attach fail when flipped. */
    for (size_t off = 0; off < 20; off++) {
        uint8_t *b = (uint8_t *)raw + off;
        *b ^= 0x41;
        check_attach_rejected(q.seg.fd, -EBADMSG, "a corrupt segment header");
        *b ^= 0x41;
    }

    /* Boundaries that must still be accepted. */
    struct sq a;
    CHECK_EQ(sq_attach(q.seg.fd, &a), 0);
    CHECK_EQ(sq_capacity(&a), (int32_t)fit);
    sq_detach(&a);
    raw->capacity = 1;
    CHECK_EQ(sq_attach(q.seg.fd, &a), 0);
    CHECK_EQ(sq_capacity(&a), 1);
    sq_detach(&a);

    /* A queue already attached keeps its own capacity whatever the header
     * says later. */
    raw->capacity = UINT32_MAX;
    CHECK_EQ(sq_capacity(&q), (int32_t)fit);
    for (uint32_t i = 0; i < fit; i++)
        CHECK_EQ(sq_enqueue(&q, 1 + (uint64_t)i), 0);
    CHECK_EQ(sq_enqueue(&q, 1), MBQ_SQ_ERR_QUEUE_IS_FULL);
    CHECK_EQ(sq_count(&q), (int32_t)fit);
    for (uint32_t i = 0; i < fit; i++)
        CHECK_EQ(sq_dequeue(&q), 1 + (uint64_t)i);

    munmap(raw, q.seg.size);
    sq_detach(&q);
}

/* ---- corruption of a live queue ---- */

#define MARK 0x4d41524b00000000ull /* what the test writes into slots */
#define ENQ 0x454e510000000000ull  /* what the test enqueues */

static int is_known_value(uint64_t v, uint64_t enq_limit)
{
    return v == 0 || (v >= MARK && v < MARK + 0x100000) || (v >= ENQ && v < enq_limit);
}

static void corrupt_counters(struct sq_shared *raw, uint32_t cap)
{
    uint64_t head, tail;
    switch (rng() % 5) {
    case 0: /* anything */
        head = rng();
        tail = rng();
        break;
    case 1: /* near a legal state, on both sides of it */
        head = rng() >> (rng() % 64);
        tail = head + (rng() % (2 * cap + 5)) - cap - 2;
        break;
    case 2: /* around the 2^64 wrap */
        head = UINT64_MAX - rng() % (2 * cap + 4);
        tail = head + rng() % (2 * cap + 4);
        break;
    case 3: /* one counter wildly off */
        head = atomic_load(&raw->head);
        tail = rng() % 2 ? rng() : head + cap + 1 + rng() % 1000;
        break;
    default: /* tail behind head by a little */
        tail = rng() % 1000;
        head = tail + 1 + rng() % (cap + 3);
        break;
    }
    raw_set_counters(raw, head, tail);
}

/* After a corruption, a freshly attached queue (whose cached counters are
 * loaded at attach) must classify the state exactly. */
static void test_corrupt_counters_exact(void)
{
    static const uint32_t caps[] = {16, 5, 1};
    uint64_t enq = ENQ;
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        uint32_t cap = caps[c];
        struct sq owner;
        REQUIRE(sq_create((int32_t)cap, &owner) == 0);
        struct sq_shared *raw = raw_map(owner.seg.fd, owner.seg.size);
        REQUIRE(raw);
        uint64_t *slots = raw_values(raw);
        for (uint32_t i = 0; i < cap; i++)
            slots[i * SQ_SLOT_WORDS] = MARK + i;

        int bad = 0;
        for (int iter = 0; iter < 5000 && !bad; iter++) {
            corrupt_counters(raw, cap);
            uint64_t head = atomic_load(&raw->head), tail = atomic_load(&raw->tail);
            uint64_t used = tail - head;
            struct sq q;
            if (sq_attach(owner.seg.fd, &q) != 0) {
                bad = 1;
                break;
            }
            if (used > cap) {
                bad |= sq_enqueue(&q, enq) != -EUCLEAN;
                bad |= sq_peek(&q) != 0;
                bad |= sq_dequeue(&q) != 0;
                bad |= sq_count(&q) != 0;
                bad |= sq_fullness(&q) != 0.0f;
                bad |= sq_capacity(&q) != (int32_t)cap;
                /* "did nothing": neither counter moved */
                bad |= atomic_load(&raw->head) != head || atomic_load(&raw->tail) != tail;
                if (iter % 3 == 0) {
                    /* reset repairs it */
                    bad |= sq_reset(&q) != 0;
                    bad |= sq_count(&q) != 0;
                    bad |= sq_enqueue(&q, enq) != 0;
                    bad |= sq_dequeue(&q) != enq++;
                }
            } else {
                bad |= sq_count(&q) != (int32_t)used;
                if (used == cap) {
                    bad |= sq_enqueue(&q, enq) != MBQ_SQ_ERR_QUEUE_IS_FULL;
                } else {
                    bad |= sq_enqueue(&q, enq) != 0;
                    bad |= atomic_load(&raw->tail) != tail + 1;
                    bad |= slots[(tail % cap) * SQ_SLOT_WORDS] != enq;
                    enq++;
                    used++;
                }
                uint64_t expect = slots[(head % cap) * SQ_SLOT_WORDS];
                bad |= sq_peek(&q) != expect;
                bad |= sq_dequeue(&q) != expect;
                bad |= atomic_load(&raw->head) != head + 1;
            }
            if (bad)
                fprintf(stderr, "cap %u iter %d: head %#llx tail %#llx misclassified\n", cap,
                        iter, (unsigned long long)head, (unsigned long long)tail);
            sq_detach(&q);
        }
        CHECK(!bad);
        munmap(raw, owner.seg.size);
        sq_detach(&owner);
    }
}

/* A long-lived producer and consumer keep working while a peer scribbles on
 * every shared field, header included: each call must return a legal answer
 * (a status, 0, or a value that was really put in a slot) and never crash or
 * touch memory outside the ring (ASan build). */
static void test_corrupt_everything_while_in_use(void)
{
    static const uint32_t caps[] = {16, 7};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        uint32_t cap = caps[c];
        struct sq owner, p, q;
        REQUIRE(sq_create((int32_t)cap, &owner) == 0);
        REQUIRE(sq_attach(owner.seg.fd, &p) == 0);
        REQUIRE(sq_attach(owner.seg.fd, &q) == 0);
        struct sq_shared *raw = raw_map(owner.seg.fd, owner.seg.size);
        REQUIRE(raw);
        size_t nslots = (owner.seg.size - VALUES_OFFSET) / (8 * SQ_SLOT_WORDS);
        uint64_t *slots = raw_values(raw);
        for (size_t i = 0; i < nslots; i++)
            slots[i * SQ_SLOT_WORDS] = MARK + i;
        const uint32_t fit = (uint32_t)nslots;

        uint64_t enq = ENQ;
        int bad = 0, euclean = 0, legal = 0;
        for (int iter = 0; iter < 20000 && !bad; iter++) {
            uint64_t r = rng();
            if (r % 4 == 0)
                corrupt_counters(raw, cap);
            if (r % 16 == 1)
                raw->capacity = (uint32_t)rng() >> (rng() % 32);
            if (r % 16 == 2)
                raw->values_offset = rng() % 2 ? rng() : VALUES_OFFSET + 8 * (rng() % 3);
            if (r % 64 == 3)
                slots[(rng() % nslots) * SQ_SLOT_WORDS] = 0;

            int rc = sq_enqueue(&p, enq);
            bad |= rc != 0 && rc != MBQ_SQ_ERR_QUEUE_IS_FULL && rc != -EUCLEAN;
            euclean += rc == -EUCLEAN;
            legal += rc == 0;
            if (rc == 0)
                enq++;
            bad |= !is_known_value(sq_peek(&q), enq);
            bad |= !is_known_value(sq_dequeue(&q), enq);
            int32_t n = sq_count(&q);
            bad |= n < 0 || n > (int32_t)cap || sq_count(&p) > (int32_t)cap;
            float f = sq_fullness(&p);
            bad |= !(f >= 0.0f && f <= 1.0f);
            bad |= sq_capacity(&p) != (int32_t)cap || sq_capacity(&q) != (int32_t)cap;
            if (r % 128 == 5)
                bad |= sq_reset(&q) != 0;

            /* A newcomer accepts the header only if it is self-consistent. */
            if (r % 8 == 6) {
                uint32_t hc = raw->capacity;
                uint64_t ho = raw->values_offset;
                struct sq n2;
                int arc = sq_attach(owner.seg.fd, &n2);
                int ok = hc >= 1 && hc <= fit && ho == VALUES_OFFSET;
                bad |= ok ? arc != 0 : arc != -EBADMSG;
                if (arc == 0) {
                    bad |= sq_capacity(&n2) != (int32_t)hc;
                    bad |= !is_known_value(sq_dequeue(&n2), enq);
                    rc = sq_enqueue(&n2, enq);
                    bad |= rc != 0 && rc != MBQ_SQ_ERR_QUEUE_IS_FULL && rc != -EUCLEAN;
                    if (rc == 0)
                        enq++;
                    sq_detach(&n2);
                }
            }
            if (bad)
                fprintf(stderr, "cap %u: illegal answer at iter %d\n", cap, iter);
        }
        CHECK(!bad);
        CHECK(euclean > 0); /* the corruption was seen ... */
        CHECK(legal > 0);   /* ... and so were legal states */

        /* reset brings the queue back into service for its owner. */
        raw->capacity = cap;
        raw->values_offset = VALUES_OFFSET;
        CHECK_EQ(sq_reset(&q), 0);
        if (atomic_load(&raw->tail) > UINT64_MAX - 64)
            raw_set_counters(raw, 0, 0); /* keep the FIFO check off the 2^64 seam */
        CHECK_EQ(sq_reset(&q), 0);
        for (uint32_t i = 0; i < cap; i++)
            CHECK_EQ(sq_enqueue(&p, 1 + (uint64_t)i), 0);
        CHECK_EQ(sq_enqueue(&p, 99), MBQ_SQ_ERR_QUEUE_IS_FULL);
        for (uint32_t i = 0; i < cap; i++)
            CHECK_EQ(sq_dequeue(&q), 1 + (uint64_t)i);
        CHECK_EQ(sq_dequeue(&q), 0);

        munmap(raw, owner.seg.size);
        sq_detach(&p);
        sq_detach(&q);
        sq_detach(&owner);
    }
}

/* A zeroed slot cannot be told from "empty" by the caller, but must not
 * wedge the queue either. */
static void test_zeroed_slot_is_skipped(void)
{
    struct sq q;
    REQUIRE(sq_create(4, &q) == 0);
    struct sq_shared *raw = raw_map(q.seg.fd, q.seg.size);
    REQUIRE(raw);
    CHECK_EQ(sq_enqueue(&q, 1), 0);
    CHECK_EQ(sq_enqueue(&q, 2), 0);
    CHECK_EQ(sq_enqueue(&q, 3), 0);
    raw_values(raw)[0] = 0;
    CHECK_EQ(sq_count(&q), 3);
    CHECK_EQ(sq_peek(&q), 0);
    CHECK_EQ(sq_dequeue(&q), 0);
    CHECK_EQ(sq_count(&q), 2);
    CHECK_EQ(sq_dequeue(&q), 2);
    CHECK_EQ(sq_dequeue(&q), 3);
    CHECK_EQ(sq_dequeue(&q), 0);
    munmap(raw, q.seg.size);
    sq_detach(&q);
}

CHECK_MAIN(CASE(test_create_errors), CASE(test_create_limits),
           CASE(test_null_and_zero_arguments), CASE(test_full_uses_whole_capacity),
           CASE(test_empty), CASE(test_fifo_peek_count_fullness), CASE(test_reset),
           CASE(test_wraparound_against_model), CASE(test_counters_across_2_64),
           CASE(test_caches_avoid_shared_reads),
           CASE(test_attach_second_mapping), CASE(test_attach_rejects_foreign_fds),
           CASE(test_attach_rejects_unsealed_memfd), CASE(test_attach_rejects_wrong_kind),
           CASE(test_attach_rejects_bad_header_fields), CASE(test_corrupt_counters_exact),
           CASE(test_corrupt_everything_while_in_use), CASE(test_zeroed_slot_is_skipped))
