/* kill -9 inside the batched calls leaks no block and frees none twice
 * (the run intents of shm/pool.h, pool_run_begin, and the outboxes that
 * hand a consumer's release runs to the producer's allocations).
 *
 * A producer process streams buffers in batches of 16 (allocate — one by
 * one, or in the second case with allocate_many — write
 * the sequence number and its complement, enqueue_and_release_many, the
 * rest released) into a FIFO queue; a consumer process drains it with
 * dequeue_many (16) and release_many, checking each payload and marking
 * its sequence number in a bitmap shared with the test. Both run flat out
 * and report progress in a shared counter. Round after round one of them
 * — producer and consumer in turn — is killed with SIGKILL once its
 * counter has passed a random mark (a condition, not a wait: the kill
 * lands wherever that process is in its loop, a run's lock round, its
 * hand-over, its adopt or its release among them) and a new one takes its
 * place, continuing the sequence. Checked:
 *  - no payload is torn or foreign, and no sequence number arrives twice
 *    (a block freed while queued or held would be handed out again and
 *    overwritten);
 *  - after the kills, with the queue reset, every block of the pool comes
 *    back (blocks in use 0, polled with a bound), and the pool's
 *    statistics are exact: its one client is the test.
 * MBQ_BATCH_KILLS sets the number of kills (default 600), MBQ_BATCH_SEED
 * the seed (printed). */
#include "harness.h"

#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

static struct mbqd D;

#define POOL_BLOCKS 64
#define BATCH 16
#define SEQ_MAX (1u << 24) /* the stream stops there */

struct payload {
    uint64_t seq, not_seq;
};

/* Shared between the test and its children (an anonymous shared map). */
struct shared {
    _Atomic uint64_t next_seq;  /* the producer's next sequence number */
    _Atomic uint64_t progress[2]; /* batches done: producer, consumer */
    _Atomic uint32_t dup, torn;
    _Atomic uint8_t seen[SEQ_MAX];
};

static struct shared *S;

/* The producer allocates its batches with mbq_pool_allocate_many (the
 * outboxes' taker and the run that claims a batch), else one by one. */
static bool many;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int producer(void)
{
    mbq_client *c = h_connect(&D, "batch-producer");
    mbq_pool *pool;
    mbq_buffer_queue *q;
    if (!c || mbq_pool_open(c, "d/pool", &pool) != 0 || mbq_buffer_queue_open(c, "d/q", &q) != 0)
        return 3;
    mbq_buffer b[BATCH];
    size_t n = 0; /* held back: what the queue had no room for last time */
    for (;;) {
        size_t done = 0, had = n, ready = n; /* b[n..ready): allocated, not yet filled */
        if (many && n < BATCH) {
            int got = mbq_pool_allocate_many(pool, sizeof(struct payload), b + n, BATCH - n);
            if (got > 0)
                ready = n + (size_t)got;
        }
        while (n < BATCH &&
               (n < ready || mbq_pool_allocate(pool, sizeof(struct payload), &b[n]) == 0)) {
            uint64_t seq = atomic_fetch_add(&S->next_seq, 1);
            if (seq >= SEQ_MAX) {
                mbq_buffer_release_many(b + n, ready > n ? ready - n : 1);
                break;
            }
            struct payload *pl = mbq_buffer_get_data(b[n], NULL);
            pl->seq = seq;
            pl->not_seq = ~seq;
            mbq_buffer_set_data_size(b[n], sizeof *pl);
            n++;
        }
        int r = mbq_buffer_queue_enqueue_and_release_many(q, b, n, &done);
        if (r != 0 && r != MBQ_BQ_ERR_QUEUE_IS_FULL) {
            mbq_buffer_release_many(b + done, n - done);
            done = n;
        }
        memmove(b, b + done, (n - done) * sizeof b[0]);
        n -= done;
        atomic_fetch_add(&S->progress[0], 1);
        if (done == 0 && had == n)
            sched_yield(); /* the queue is full or every block in flight: the consumer must run */
    }
}

static int consumer(void)
{
    mbq_client *c = h_connect(&D, "batch-consumer");
    mbq_buffer_queue *q;
    if (!c || mbq_buffer_queue_open(c, "d/q", &q) != 0)
        return 3;
    for (;;) {
        mbq_buffer b[BATCH];
        int n = mbq_buffer_queue_dequeue_many(q, b, BATCH);
        for (int i = 0; i < n; i++) {
            const struct payload *pl = mbq_buffer_get_data(b[i], NULL);
            if (!pl || pl->not_seq != ~pl->seq || pl->seq >= SEQ_MAX)
                atomic_fetch_add(&S->torn, 1);
            else if (atomic_exchange(&S->seen[pl->seq], 1))
                atomic_fetch_add(&S->dup, 1);
        }
        if (n > 0)
            mbq_buffer_release_many(b, (size_t)n);
        atomic_fetch_add(&S->progress[1], 1);
        if (n <= 0)
            sched_yield();
    }
}

static pid_t spawn(int role)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        h_child_setup(parent);
        _exit(role == 0 ? producer() : consumer());
    }
    return pid;
}

/* Waits (bounded) until role's counter passes mark. */
static bool wait_progress(int role, uint64_t mark)
{
    uint64_t deadline = h_now_ns() + (uint64_t)H_HANG_MS * 1000000ull;
    while (atomic_load(&S->progress[role]) < mark)
        if (h_now_ns() > deadline)
            return false;
        else
            sched_yield();
    return true;
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static void kill9_inside_batches(long default_kills)
{
    const long kills = env_long("MBQ_BATCH_KILLS", default_kills);
    uint64_t seed = (uint64_t)env_long("MBQ_BATCH_SEED", (long)(h_now_ns() & 0x7fffffff));
    printf("seed=%" PRIu64 " kills=%ld (MBQ_BATCH_SEED, MBQ_BATCH_KILLS)\n", seed, kills);
    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(S != MAP_FAILED);
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool;
    mbq_pool_options po = h_pool_opts(4096, POOL_BLOCKS);
    REQUIRE(mbq_pool_create(c, "d/pool", &po, &pool) == 0);
    mbq_buffer_queue *q;
    mbq_buffer_queue_options qo = h_bq_opts(32, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "d/q", &qo, &q) == 0);

    uint64_t rng = seed | 1;
    pid_t pid[2] = {spawn(0), spawn(1)};
    REQUIRE(pid[0] > 0 && pid[1] > 0);
    long done = 0;
    for (; done < kills && !check_case_failed; done++) {
        int role = (int)(done & 1);
        uint64_t r = rng_next(&rng);
        /* the kill point: a random number of batches on from now */
        uint64_t mark = atomic_load(&S->progress[role]) + 1 + r % 64;
        if (!wait_progress(role, mark)) {
            CHECK(!"a batching process made no progress");
            break;
        }
        kill(pid[role], SIGKILL);
        int st;
        while (waitpid(pid[role], &st, 0) < 0 && errno == EINTR)
            ;
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        pid[role] = spawn(role);
        REQUIRE(pid[role] > 0);
    }
    /* the stream went on through the kills */
    CHECK(atomic_load(&S->progress[1]) > (uint64_t)kills);
    for (int role = 0; role < 2; role++) {
        kill(pid[role], SIGKILL);
        while (waitpid(pid[role], NULL, 0) < 0 && errno == EINTR)
            ;
    }
    CHECK_EQ(atomic_load(&S->torn), 0);
    CHECK_EQ(atomic_load(&S->dup), 0);
    /* What the dead left in the queue goes back; then every block. */
    CHECK_STATUS(mbq_buffer_queue_reset(q), 0);
    int64_t used = h_wait_pool_used(c, "d/pool", 0, 2000);
    CHECK_EQ(used, 0);
    mbq_object_info info;
    uint64_t deadline = h_now_ns() + 2000 * 1000000ull;
    do {
        CHECK_STATUS(h_stat(c, "d/pool", &info), 0);
    } while (info.client_count != 1 && h_now_ns() < deadline && (h_pause_us(200), 1));
    CHECK_EQ(info.blocks_used, 0);
    CHECK_EQ(info.client_count, 1);
    uint64_t received = 0;
    for (uint32_t i = 0; i < SEQ_MAX; i++)
        received += atomic_load(&S->seen[i]);
    printf("kills=%ld sent=%" PRIu64 " received=%" PRIu64 " (the rest died with a victim)\n",
           done, atomic_load(&S->next_seq) < SEQ_MAX ? atomic_load(&S->next_seq) : SEQ_MAX,
           received);
    CHECK(received > 0);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
    munmap(S, sizeof *S);
}

static void kill9_inside_batches_leaks_nothing(void)
{
    many = false;
    kill9_inside_batches(600);
}

static void kill9_inside_allocate_many_leaks_nothing(void)
{
    many = true;
    kill9_inside_batches(400);
}

CHECK_MAIN(CASE(kill9_inside_batches_leaks_nothing),
           CASE(kill9_inside_allocate_many_leaks_nothing))
