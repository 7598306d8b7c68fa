/* A client killed in the middle of a reset leaks no buffer.
 *
 * A reset takes every entry out of the queue and releases the queue's
 * reference of each, under the resetting thread's intent (shm/pool.h
 * "Accounting"), so that a death between the two is recounted. It may
 * release an entry's reference only when the entry's pool is mapped in the
 * process and known (from the daemon) to be bound to the queue; asking
 * the daemon cannot happen under the queue lock. A reset that let an entry
 * of a pool it did not know out of the queue and released it after the
 * unlock left the reference in no queue, no holding and no intent in
 * between: a death there leaked the block for good (the rare leak that
 * test_kill_torture showed, where a victim's first reset of a queue met
 * entries another process had put there just before). Now such a reset
 * leaves the queue untouched, learns the pools, and starts again.
 *
 * Placed deterministically: the entries come from more pools than a queue
 * handle remembers answers for (QUEUE_BOUND_CACHE, 8), so the pool of the
 * first entry is not known by the time the reset reaches it; the victim's
 * reset callback kills the process at a chosen entry. Then the queue is
 * reset by its owner and every pool must be back to no block in use. */
#include "harness.h"

#include <sys/wait.h>

static struct mbqd D;

#define NPOOLS 12 /* more than QUEUE_BOUND_CACHE */
#define BOUND_MS 2000

static void pool_name(char *buf, size_t n, int i)
{
    snprintf(buf, n, "r/pool%d", i);
}

struct victim_arg {
    int die_at; /* the callback of this entry (1-based) kills the process */
};

static void kill_cb(mbq_buffer b, void *refcon)
{
    (void)b;
    int *n = refcon;
    if (--*n == 0)
        raise(SIGKILL);
}

/* Maps every pool and the queue, says so, waits for the go, resets. */
static int victim(int cmd, int rep, void *varg)
{
    const struct victim_arg *a = varg;
    mbq_client *c = h_connect(&D, "victim");
    if (!c)
        return 3;
    mbq_pool *p[NPOOLS];
    for (int i = 0; i < NPOOLS; i++) {
        char name[32];
        pool_name(name, sizeof name, i);
        if (mbq_pool_open(c, name, &p[i]) != 0)
            return 4;
    }
    mbq_buffer_queue *q;
    if (mbq_buffer_queue_open(c, "r/q", &q) != 0)
        return 5;
    struct hmsg m;
    if (hmsg_next(cmd, &m) != 0 || hmsg_reply(rep, &m) != 0)
        return 6;
    int n = a->die_at;
    mbq_buffer_queue_reset_with_callback(q, kill_cb, &n);
    return 7; /* not reached: the callback of entry die_at kills us */
}

static void death_inside_reset_leaks_nothing(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *p[NPOOLS];
    for (int i = 0; i < NPOOLS; i++) {
        char name[32];
        pool_name(name, sizeof name, i);
        mbq_pool_options po = h_pool_opts(4096, 4);
        REQUIRE(mbq_pool_create(c, name, &po, &p[i]) == 0);
    }
    mbq_buffer_queue *q;
    mbq_buffer_queue_options qo = h_bq_opts(NPOOLS, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "r/q", &qo, &q) == 0);

    for (int die_at = 1; die_at <= NPOOLS; die_at++) {
        /* one buffer of each pool, the queue's reference its only one */
        for (int i = 0; i < NPOOLS; i++) {
            mbq_buffer b;
            CHECK_STATUS(mbq_pool_allocate(p[i], 64, &b), 0);
            CHECK_STATUS(mbq_buffer_queue_enqueue_and_release(q, b), 0);
        }
        struct victim_arg va = {.die_at = die_at};
        struct actor a;
        REQUIRE(actor_start(&a, victim, &va) == 0);
        struct hmsg m = hmsg_op(1), r;
        CHECK_STATUS(actor_call(&a, &m, &r), 0);
        CHECK_EQ(h_wait_pid(a.pid, H_HANG_MS), 128 + SIGKILL); /* by its callback */
        h_untrack_fd(a.cmd);
        h_untrack_fd(a.rep);
        close(a.cmd);
        close(a.rep);
        /* What the victim left in the queue goes back; then every block of
         * every pool must come back, within the bound, without a fixed
         * wait. */
        int rr;
        uint64_t deadline = h_now_ns() + 10000000000ull;
        /* (the lock the victim died holding is taken over once mbqd has
         * marked it dead: a busy machine may take longer than a lock wait) */
        while ((rr = mbq_buffer_queue_reset(q)) == -EBUSY && h_now_ns() < deadline)
            ;
        CHECK_STATUS(rr, 0);
        for (int i = 0; i < NPOOLS; i++) {
            char name[32];
            pool_name(name, sizeof name, i);
            int64_t used = h_wait_pool_used(c, name, 0, BOUND_MS);
            if (used != 0)
                printf("killed at entry %d: pool %d has %" PRId64 " blocks in use\n", die_at, i,
                       used);
            CHECK_EQ(used, 0);
        }
        if (check_case_failed)
            break;
    }
    mbq_buffer_queue_close(q);
    for (int i = 0; i < NPOOLS; i++)
        mbq_pool_close(p[i]);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(death_inside_reset_leaks_nothing))
