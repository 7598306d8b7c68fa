/* kill -9 at any instruction leaks no pool block (shm/pool.h "Accounting").
 *
 * A child process loops over every public operation that moves a buffer
 * reference or holding — allocate (and allocate_wait), set timing, retain,
 * release, enqueue and enqueue_and_release (and their blocking forms) into
 * a FIFO queue, a PTS-sorted drop-oldest queue and a small FIFO
 * drop-oldest queue, dequeue, dequeue_if_data_ready,
 * dequeue_wait (sometimes 2 ms on an empty queue), the batched calls
 * (enqueue_many, enqueue_and_release_many, dequeue_many,
 * dequeue_wait_many, release_many), copy_head, reset (plain
 * and with a callback), call_for_each, a few held allocations — choosing
 * each step with a seeded PRNG (every other batch: allocate and release
 * only, MBQ_TORTURE_MIX=all|alloc fixes one), and is killed with SIGKILL a random 0–5 ms
 * after it enters the loop (one kill in ten, MBQ_TORTURE_EARLY_PCT percent,
 * is timed from the fork instead, so that it may land in the connection
 * and the opens). After each batch of kills the queues are reset, and
 * the pool must be back to zero blocks in use within 2 s (polled, no fixed
 * wait): no leak at all. Then a fresh producer/consumer pair moves buffers
 * through each queue and checks them.
 *
 * MBQ_TORTURE_BLOCK sets the pool's block size (default 4096; CTest runs
 * it again as test_kill_torture_small with 64: packed sub-page blocks).
 * MBQ_TORTURE_CLASSES=1 makes it a pool of three size classes (64 B x 32,
 * 1 KiB x 16, 8 KiB x 16; test_kill_torture_classes) whose victims
 * allocate sizes from 1 B to 8 KiB (every class, and fallbacks to larger
 * ones): every block of every class must come back.
 * MBQ_TORTURE_KILLS sets the number of kills (default 1000, in every build:
 * about 15 s under ASan and 30 s under TSan on a loaded 2-vCPU machine),
 * MBQ_TORTURE_SEED the seed (default: from the clock; printed either way,
 * so that a failing run can be repeated). A long run:
 *   MBQ_TORTURE_KILLS=5000 build/tests/integration/test_kill_torture
 * Printed: kills, leaked blocks, and the worst time from a batch's last
 * kill to all its blocks back.
 *
 * Beside the victims a survivor process churns the same pool and queues
 * for the whole run, holding buffers it tags and checks (see survivor()):
 * a recount that counted short, while it moves references of the blocks
 * the victims were moving, would free a block under it.
 *
 * A leak here is best chased with the per-block history of shm/trace.h
 * (configure with -DMBQ_POOL_TRACE=ON, run with MBQ_TRACE_FILE=path, read
 * with scripts/pool-trace.py): the leaked blocks are listed with their last
 * events, the dead victim's among them. */
#include "harness.h"

#include <poll.h>
#include <sys/wait.h>

static struct mbqd D;

#define POOL_BLOCKS 64
#define BATCH 50
#define BOUND_MS 2000

static const char *const QNAMES[3] = {"t/fifo", "t/pts", "t/drop"};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

struct loop {
    mbq_client *c;
    mbq_pool *pool;
    mbq_buffer_queue *q[3];
    mbq_buffer held[4];
    int nheld;
    uint64_t rng;
    int64_t pts;
};

static void reset_cb(mbq_buffer b, void *refcon)
{
    (void)b;
    ++*(int *)refcon;
}

static int for_each_cb(mbq_buffer b, void *refcon)
{
    (void)b;
    return ++*(int *)refcon > 100;
}

static void drop_one(mbq_buffer b)
{
    mbq_buffer_release(b);
}

/* One step, chosen by the PRNG. Errors (a full queue, an empty one, a
 * pool momentarily without a free block) are part of the game. */
static bool alloc_only; /* MBQ_TORTURE_MIX=alloc: allocate and release only */
static bool classes;    /* MBQ_TORTURE_CLASSES=1: a pool of size classes */

/* A victim's allocation: it writes over the block's first words, so that
 * a block freed under the survivor (which checks its own) is noticed. */
static int victim_alloc(struct loop *L, mbq_buffer *b)
{
    /* One time in four a blocking allocate (20 us, or 2 ms: a victim may
     * be killed asleep waiting for a block). */
    uint64_t w = rng_next(&L->rng);
    const size_t size = classes ? 8 + (size_t)((w >> 16) % 8185) : 64;
    int r = w % 4 ? mbq_pool_allocate(L->pool, size, b)
                  : mbq_pool_allocate_wait(L->pool, size, (w >> 8) % 2 ? 20000 : 2000000, b);
    if (r == 0) {
        uint32_t *d = mbq_buffer_get_data(*b, NULL);
        if (d)
            d[0] = d[1] = 0xdeadbeefu;
    }
    return r;
}

/* The batched calls (one step in eight): a batch of up to four handed over
 * or copied into a queue, the rest released in one call; a burst dequeued
 * (or waited for) and released in one call. */
static void batch_step(struct loop *L, uint64_t r)
{
    mbq_buffer b[4];
    mbq_buffer_queue *q = L->q[(r >> 8) % 3];
    size_t k = 1 + (r >> 12) % 4, got = 0, done = 0;
    switch ((r >> 16) % 4) {
    case 0:
    case 1:
        while (got < k && victim_alloc(L, &b[got]) == 0) {
            mbq_buffer_set_timing(b[got], MBQ_TIME_INVALID,
                                  h_time((int64_t)((r >> 20) + got * 7) % 64, 1000),
                                  h_time(1, 1000));
            got++;
        }
        if ((r >> 16) % 4 == 0) {
            mbq_buffer_queue_enqueue_and_release_many(q, b, got, &done);
            mbq_buffer_release_many(b + done, got - done);
        } else {
            mbq_buffer_queue_enqueue_many(q, b, got, &done);
            mbq_buffer_release_many(b, got);
        }
        break;
    case 2: {
        int n = mbq_buffer_queue_dequeue_many(q, b, k);
        if (n > 0)
            mbq_buffer_release_many(b, (size_t)n);
        break;
    }
    case 3: {
        int n = mbq_buffer_queue_dequeue_wait_many(q, 20000, b, k);
        if (n > 0)
            mbq_buffer_release_many(b, (size_t)n);
        break;
    }
    }
}

static void step(struct loop *L)
{
    uint64_t r = rng_next(&L->rng);
    if (alloc_only)
        r &= ~(uint64_t)15;
    else if ((r >> 56) % 8 == 0) {
        batch_step(L, r);
        return;
    }
    mbq_buffer b, c;
    mbq_buffer_queue *q = L->q[(r >> 8) % 3];
    int n = 0;
    switch (r % 16) {
    case 0: /* allocate, set timing, release */
        if (victim_alloc(L, &b) == 0) {
            mbq_buffer_set_timing(b, MBQ_TIME_INVALID, h_time(L->pts++, 1000), h_time(1, 1000));
            drop_one(b);
        }
        break;
    case 1:
    case 2: /* enqueue a copy, release ours */
        if (victim_alloc(L, &b) == 0) {
            mbq_buffer_set_timing(b, MBQ_TIME_INVALID, h_time((int64_t)(r >> 20) % 64, 1000),
                                  h_time(1, 1000));
            if ((r >> 50) % 2) /* blocking, on the FIFO queue that rejects when full */
                mbq_buffer_queue_enqueue_wait(L->q[0], b, (r >> 51) % 2 ? 20000 : 2000000);
            else
                mbq_buffer_queue_enqueue(q, b);
            drop_one(b);
        }
        break;
    case 3:
    case 4: /* hand ours over */
        if (victim_alloc(L, &b) == 0) {
            mbq_buffer_set_timing(b, MBQ_TIME_INVALID, h_time((int64_t)(r >> 20) % 64, 1000),
                                  h_time(1, 1000));
            int e = (r >> 50) % 2 ? mbq_buffer_queue_enqueue_and_release_wait(
                                        L->q[0], b, (r >> 51) % 2 ? 20000 : 2000000)
                                  : mbq_buffer_queue_enqueue_and_release(q, b);
            if (e != 0)
                drop_one(b);
        }
        break;
    case 5: /* the same buffer in two queues */
        if (victim_alloc(L, &b) == 0) {
            mbq_buffer_set_timing(b, MBQ_TIME_INVALID, h_time(L->pts++, 1000), h_time(1, 1000));
            mbq_buffer_queue_enqueue(L->q[0], b);
            if (mbq_buffer_queue_enqueue_and_release(L->q[1], b) != 0)
                drop_one(b);
        }
        break;
    case 6:
    case 7:
        if (mbq_buffer_queue_dequeue_and_retain(q, &b) == 0)
            drop_one(b);
        break;
    case 8:
        if (mbq_buffer_queue_dequeue_if_data_ready_and_retain(q, &b) == 0)
            drop_one(b);
        break;
    case 9: /* waits 20 us, one time in eight 2 ms (a victim asleep would
             * mostly be killed asleep) */
        if (mbq_buffer_queue_dequeue_wait(q, (r >> 40) % 8 ? 20000 : 2000000, &b) == 0)
            drop_one(b);
        break;
    case 10: /* copy the head, retain and release it */
        if (mbq_buffer_queue_copy_head(q, &b) == 0) {
            if (mbq_buffer_retain(b) == 0)
                drop_one(b);
            drop_one(b);
        }
        break;
    case 11: /* hold a few */
        if (L->nheld == 4) {
            drop_one(L->held[--L->nheld]);
        } else if (victim_alloc(L, &b) == 0) {
            L->held[L->nheld++] = b;
        }
        break;
    case 12: /* a second reference to a held one, dropped again */
        if (L->nheld) {
            c = L->held[(r >> 12) % (unsigned)L->nheld];
            if (mbq_buffer_retain(c) == 0)
                drop_one(c);
        }
        break;
    case 13:
        if ((r >> 30) % 4 == 0)
            mbq_buffer_queue_reset_with_callback(q, reset_cb, &n);
        else if ((r >> 30) % 4 == 1)
            mbq_buffer_queue_reset(q);
        break;
    case 14:
        mbq_buffer_queue_call_for_each_buffer(q, for_each_cb, &n);
        break;
    case 15: /* enqueue a held one (a copy), keep holding it */
        if (L->nheld)
            mbq_buffer_queue_enqueue(q, L->held[0]);
        break;
    }
}

static int victim(struct mbqd *d, uint64_t seed, int ready_fd)
{
    struct loop L;
    memset(&L, 0, sizeof L);
    L.rng = seed | 1;
    L.c = h_connect(d, "victim");
    if (!L.c || mbq_pool_open(L.c, "t/pool", &L.pool) != 0)
        return 3;
    for (int i = 0; i < 3; i++)
        if (mbq_buffer_queue_open(L.c, QNAMES[i], &L.q[i]) != 0)
            return 4;
    /* the pool mapped before the loop, as any producer has it */
    char b = 1;
    if (ready_fd >= 0 && write(ready_fd, &b, 1) != 1)
        return 5;
    for (;;)
        step(&L);
}

static pid_t spawn_victim(uint64_t seed, int ready_fd, int other_fd, int cmd_fd, int ack_fd)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        h_child_setup(parent);
        close(other_fd);
        close(cmd_fd);
        close(ack_fd);
        _exit(victim(&D, seed, ready_fd));
    }
    return pid;
}

/* The survivor: a live client that churns the same pool and queues all
 * through the kills, holding buffers tagged with its pid and a counter and
 * checking them. A recount that dropped a reference it holds would free
 * its block under it, and a victim would write over it (victim_alloc): the
 * check fails, or a release is refused. Commands on cmd: 'p' pause (it
 * releases what it holds, answers on ack, and waits), then 'r' resume or
 * 'q' quit. Exit status 0, or what it found. */
static int survivor(int cmd, int ack)
{
    mbq_client *c = h_connect(&D, "survivor");
    mbq_pool *pool;
    mbq_buffer_queue *q[3];
    if (!c || mbq_pool_open(c, "t/pool", &pool) != 0)
        return 3;
    for (int i = 0; i < 3; i++)
        if (mbq_buffer_queue_open(c, QNAMES[i], &q[i]) != 0)
            return 4;
    const uint32_t tag = 0x5a000000u | ((uint32_t)getpid() & 0xffffff);
    mbq_buffer held[4];
    uint32_t seq[4], n = 0, next = 0;
    uint64_t rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull | 1;
    for (uint64_t it = 0;; it++) {
        if ((it & 63) == 0) {
            struct pollfd pf = {.fd = cmd, .events = POLLIN};
            if (poll(&pf, 1, 0) > 0) {
                char b;
                if (read(cmd, &b, 1) != 1)
                    return 5;
                for (uint32_t k = 0; k < n; k++) {
                    const uint32_t *d = mbq_buffer_get_data(held[k], NULL);
                    if (!d || d[0] != tag || d[1] != seq[k])
                        return 10;
                    if (mbq_buffer_release(held[k]) != 0)
                        return 11;
                }
                n = 0;
                if (write(ack, "a", 1) != 1 || read(cmd, &b, 1) != 1)
                    return 5;
                if (b == 'q')
                    break;
            }
        }
        uint64_t r = rng_next(&rng);
        mbq_buffer b;
        mbq_buffer_queue *qq = q[(r >> 8) % 3];
        switch (r % 5) {
        case 0: /* hold a new one (the oldest goes when four are held) */
            if (n == 4) {
                const uint32_t *d = mbq_buffer_get_data(held[0], NULL);
                if (!d || d[0] != tag || d[1] != seq[0])
                    return 10;
                if (mbq_buffer_release(held[0]) != 0)
                    return 11;
                memmove(held, held + 1, 3 * sizeof(held[0]));
                memmove(seq, seq + 1, 3 * sizeof(seq[0]));
                n--;
            }
            if (mbq_pool_allocate(pool, 64, &b) == 0) {
                uint32_t *d = mbq_buffer_get_data(b, NULL);
                if (!d)
                    return 12;
                d[0] = tag;
                d[1] = seq[n] = next++;
                mbq_buffer_set_timing(b, MBQ_TIME_INVALID, h_time((int64_t)(r >> 20) % 64, 1000),
                                      h_time(1, 1000));
                held[n++] = b;
            }
            break;
        case 1: /* every held one intact */
            for (uint32_t k = 0; k < n; k++) {
                const uint32_t *d = mbq_buffer_get_data(held[k], NULL);
                if (!mbq_buffer_is_valid(held[k]) || !d || d[0] != tag || d[1] != seq[k])
                    return 10;
            }
            break;
        case 2: /* a copy of a held one into a queue, still held */
            if (n)
                mbq_buffer_queue_enqueue(qq, held[(r >> 16) % n]);
            break;
        case 3:
            if (mbq_buffer_queue_dequeue_and_retain(qq, &b) == 0 && mbq_buffer_release(b) != 0)
                return 11;
            break;
        case 4:
            if (mbq_buffer_queue_copy_head(qq, &b) == 0 && mbq_buffer_release(b) != 0)
                return 11;
            break;
        }
    }
    for (int i = 0; i < 3; i++)
        mbq_buffer_queue_close(q[i]);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return 0;
}

/* A fresh producer and consumer move n buffers through each queue. */
static void check_queues_work(void)
{
    mbq_client *pc = h_connect(&D, "producer"), *cc = h_connect(&D, "consumer");
    REQUIRE(pc && cc);
    mbq_pool *pp;
    REQUIRE(mbq_pool_open(pc, "t/pool", &pp) == 0);
    for (int i = 0; i < 3; i++) {
        mbq_buffer_queue *pq, *cq;
        REQUIRE(mbq_buffer_queue_open(pc, QNAMES[i], &pq) == 0);
        REQUIRE(mbq_buffer_queue_open(cc, QNAMES[i], &cq) == 0);
        for (int k = 0; k < 3; k++) {
            mbq_buffer b;
            CHECK_STATUS(h_alloc_retry(pp, 64, &b), 0);
            uint32_t *d = mbq_buffer_get_data(b, NULL);
            REQUIRE(d);
            d[0] = 0xabc0u + (uint32_t)k;
            mbq_buffer_set_timing(b, MBQ_TIME_INVALID, h_time(k, 1000), h_time(1, 1000));
            CHECK_STATUS(mbq_buffer_queue_enqueue_and_release(pq, b), 0);
        }
        for (int k = 0; k < 3; k++) {
            mbq_buffer b;
            CHECK_STATUS(mbq_buffer_queue_dequeue_wait(cq, 2000000000ll, &b), 0);
            const uint32_t *d = mbq_buffer_get_data(b, NULL);
            CHECK(d && d[0] == 0xabc0u + (uint32_t)k);
            CHECK_STATUS(mbq_buffer_release(b), 0);
        }
        mbq_buffer_queue_close(pq);
        mbq_buffer_queue_close(cq);
    }
    mbq_pool_close(pp);
    mbq_disconnect(pc);
    mbq_disconnect(cc);
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}

static void kill9_at_random_points_leaks_nothing(void)
{
    const long kills = env_long("MBQ_TORTURE_KILLS", 1000);
    uint64_t seed = (uint64_t)env_long("MBQ_TORTURE_SEED", (long)(h_now_ns() & 0x7fffffff));
    printf("seed=%" PRIu64 " kills=%ld (MBQ_TORTURE_SEED, MBQ_TORTURE_KILLS)\n", seed, kills);
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool;
    /* MBQ_TORTURE_BLOCK: the pool's block size (64: packed sub-page blocks). */
    const long bs = env_long("MBQ_TORTURE_BLOCK", 4096);
    REQUIRE(bs >= 64);
    printf("block size %ld (MBQ_TORTURE_BLOCK)\n", bs);
    mbq_pool_options po = h_pool_opts((uint64_t)bs, POOL_BLOCKS);
    classes = env_long("MBQ_TORTURE_CLASSES", 0) != 0;
    if (classes) {
        printf("size classes 64 x 32, 1024 x 16, 8192 x 16 (MBQ_TORTURE_CLASSES)\n");
        po.block_size = 0;
        po.block_count = 0;
        po.class_count = 3;
        po.classes[0] = (mbq_pool_class){64, 32};
        po.classes[1] = (mbq_pool_class){1024, 16};
        po.classes[2] = (mbq_pool_class){8192, 16};
    }
    REQUIRE(mbq_pool_create(c, "t/pool", &po, &pool) == 0);
    mbq_buffer_queue *q[3];
    mbq_buffer_queue_options qo = h_bq_opts(8, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, QNAMES[0], &qo, &q[0]) == 0);
    qo = h_bq_opts(8, MBQ_ORDER_PRESENTATION_TIME);
    qo.full_policy = MBQ_FULL_DROP_OLDEST;
    REQUIRE(mbq_buffer_queue_create(c, QNAMES[1], &qo, &q[1]) == 0);
    qo = h_bq_opts(4, MBQ_ORDER_FIFO);
    qo.full_policy = MBQ_FULL_DROP_OLDEST;
    REQUIRE(mbq_buffer_queue_create(c, QNAMES[2], &qo, &q[2]) == 0);

    const long early_pct = env_long("MBQ_TORTURE_EARLY_PCT", 10);
    /* MBQ_TORTURE_MIX: "all", "alloc", or (default) batches alternating
     * between the two: allocate/release alone packs the windows of the
     * allocator and its caches closest together. */
    const char *mix = getenv("MBQ_TORTURE_MIX");
    mix = mix ? mix : "";
    /* the survivor, churning beside the victims (see survivor()) */
    int cmd[2], ack[2];
    REQUIRE(pipe2(cmd, O_CLOEXEC) == 0 && pipe2(ack, O_CLOEXEC) == 0);
    fflush(NULL);
    pid_t surv = fork();
    REQUIRE(surv >= 0);
    if (surv == 0) {
        h_child_setup(getppid());
        close(cmd[1]);
        close(ack[0]);
        _exit(survivor(cmd[0], ack[1]));
    }
    close(cmd[0]);
    close(ack[1]);

    uint64_t rng = seed | 1;
    long done = 0, leaked = 0, early = 0;
    char b;
    double worst_ms = 0;
    while (done < kills) {
        long batch = kills - done < BATCH ? kills - done : BATCH;
        alloc_only = !strcmp(mix, "alloc") || (strcmp(mix, "all") && (done / BATCH) % 2 == 1);
        for (long k = 0; k < batch; k++) {
            uint64_t r = rng_next(&rng);
            bool at_start = r % 100 < (uint64_t)early_pct;
            int rd[2];
            REQUIRE(pipe2(rd, O_CLOEXEC) == 0);
            pid_t pid = spawn_victim(r >> 8, rd[1], rd[0], cmd[1], ack[0]);
            REQUIRE(pid > 0);
            close(rd[1]);
            if (!at_start) {
                /* in the loop: from here the kill lands anywhere in it */
                if (h_read_full(rd[0], &b, 1, H_HANG_MS) != 0) {
                    kill(pid, SIGKILL);
                    waitpid(pid, NULL, 0);
                    close(rd[0]);
                    REQUIRE(!"the victim did not start its loop");
                }
            } else {
                early++;
            }
            h_pause_us((unsigned)((r >> 32) % 5001)); /* the kill point, not a wait */
            kill(pid, SIGKILL);
            int st;
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            close(rd[0]);
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        }
        done += batch;
        /* The survivor pauses, holding nothing (and has found nothing
         * wrong: it would have exited). */
        CHECK(write(cmd[1], "p", 1) == 1);
        if (h_read_full(ack[0], &b, 1, H_HANG_MS) != 0) {
            CHECK(!"the survivor did not pause");
            break;
        }
        /* Whatever the dead left in the queues goes back; then every block
         * must come back, within the bound, without a fixed wait. */
        uint64_t t0 = h_now_ns();
        for (int i = 0; i < 3; i++)
            CHECK_STATUS(mbq_buffer_queue_reset(q[i]), 0);
        int64_t used = h_wait_pool_used(c, "t/pool", 0, BOUND_MS);
        double ms = (double)(h_now_ns() - t0) / 1e6;
        if (ms > worst_ms)
            worst_ms = ms;
        if (used != 0) {
            printf("after %ld kills: %" PRId64 " blocks in use\n", done, used);
            leaked += used > 0 ? used : 0;
        }
        CHECK_EQ(used, 0);
        check_queues_work();
        if (check_case_failed)
            break;
        CHECK(write(cmd[1], done < kills ? "r" : "q", 1) == 1);
    }
    if (check_case_failed)
        CHECK(write(cmd[1], "q", 1) == 1);
    int st;
    while (waitpid(surv, &st, 0) < 0 && errno == EINTR)
        ;
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0); /* 10, 11: a block it held was freed under it */
    close(cmd[1]);
    close(ack[0]);
    printf("kills=%ld (%ld during connect) leaked_blocks=%ld worst_reclaim_ms=%.1f\n", done,
           early, leaked, worst_ms);
    /* every victim's session is gone (the last one's hang-up may still be
     * on its way: polled, bounded) */
    mbq_object_info info;
    uint64_t deadline = h_now_ns() + BOUND_MS * 1000000ull;
    do {
        CHECK_STATUS(h_stat(c, "t/pool", &info), 0);
    } while (info.client_count != 1 && h_now_ns() < deadline && (h_pause_us(200), 1));
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.client_count, 1);
    CHECK_EQ(info.pool_class_count, classes ? 3u : 0u);
    for (uint32_t k = 0; k < info.pool_class_count; k++) {
        CHECK_EQ(info.pool_classes[k].used, 0);
        CHECK_EQ(info.pool_classes[k].warm + info.pool_classes[k].cold,
                 info.pool_classes[k].block_count);
    }
    for (int i = 0; i < 3; i++)
        mbq_buffer_queue_close(q[i]);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(kill9_at_random_points_leaks_nothing))
