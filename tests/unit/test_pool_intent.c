/* Intent records and the recount (shm/pool.h "Accounting"): a process that
 * dies in the middle of a reference move leaves its block's refcount one
 * too high, and the reclaim of its slot drops exactly that excess; it never
 * drops a reference something still holds.
 *
 * A real death at a chosen instruction cannot be arranged, so each case
 * forks a child that attaches to the pool (and queue), performs the steps
 * of a move up to a chosen point with the same calls the library makes,
 * and exits without finishing: what it leaves in the segment is what a
 * kill -9 at that point leaves. The parent then reclaims the dead slot
 * (pool_reclaim_dead_ex, counting the queue's entries) and checks the
 * refcount and the pool's used count. The live-intent case keeps a second
 * child alive inside a move on the same block: the recount must wait
 * (audits_pending), not guess; so must a recount during whose count a live
 * process copied the block into the queue. The mid-shift case leaves a sorted queue's
 * journal active: the count is refused until the queue is settled. A
 * process with a client id and more moving threads than records counts
 * the extra moves as of unknown block and never takes a live thread's
 * record. */
#include "check.h"

#include "bq_layout.h"
#include "pool_layout.h"

#include <mbq/status.h>

#include <errno.h>
#include <lock_layout.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define POOL_ID 7u

struct env {
    struct pool p;
    struct bq q;
    bool with_queue;
};

static struct env E;

static uint32_t rc_of(struct pool *p, uint64_t h)
{
    return (uint32_t)atomic_load(&p->blocks[(uint32_t)h - 1].ref) & ~POOL_RC_AUDIT;
}

static uint32_t used_of(struct pool *p)
{
    struct pool_stats s;
    if (pool_stats(p, &s) != 0)
        return UINT32_MAX;
    return s.used;
}

/* The hooks a process installs on a queue of buffers of pool p. */
static int hk_retain(void *ctx, uint32_t pool_id, uint64_t h, bool by_client)
{
    (void)pool_id;
    return pool_retain(ctx, h, by_client);
}
static void hk_release(void *ctx, uint32_t pool_id, uint64_t h)
{
    (void)pool_id;
    pool_release(ctx, h, false);
}
static int hk_begin(void *ctx, uint32_t pool_id, uint64_t h, unsigned which)
{
    (void)pool_id;
    pool_move_begin(ctx, h, which);
    return 0;
}
static void hk_end(void *ctx, uint32_t pool_id, unsigned which)
{
    (void)pool_id;
    pool_move_end(ctx, which);
}
static void set_hooks(struct bq *q, struct pool *p)
{
    bq_set_hooks(q, &(struct bq_hooks){.ctx = p, .retain = hk_retain, .release = hk_release,
                                       .move_begin = hk_begin, .move_end = hk_end});
}

/* The queue's entries, for the recount. */
static int count_queue(void *ctx, uint64_t h, uint64_t *n)
{
    struct env *e = ctx;
    *n = 0;
    return e->with_queue ? bq_count_refs(&e->q, POOL_ID, h, n) : 0;
}

static void setup(bool queue, uint32_t order)
{
    struct pool_params prm = {.block_size = 4096, .block_count = 32, .prefault = true};
    memset(&E, 0, sizeof E);
    if (pool_create(&prm, &E.p) != 0)
        abort();
    E.with_queue = queue;
    if (queue) {
        struct bq_params qp = {.capacity = 8, .order = order};
        if (bq_create(&qp, &E.q) != 0)
            abort();
        set_hooks(&E.q, &E.p);
    }
}

static void teardown(void)
{
    if (E.with_queue)
        bq_detach(&E.q);
    pool_detach(&E.p);
}

static struct bq_entry entry_of(uint64_t h, int64_t pts)
{
    struct bq_entry e;
    memset(&e, 0, sizeof e);
    e.handle = h;
    e.pool_id = POOL_ID;
    e.pts = (mbq_time){.value = pts, .timescale = 1000, .flags = MBQ_TIME_FLAG_VALID};
    e.dts = MBQ_TIME_INVALID;
    e.duration = MBQ_TIME_INVALID;
    return e;
}

/* What the child does before it "dies" (returns, and exits without
 * detaching: its slot stays as a dead process's). */
enum step {
    RETAIN_NO_HOLDING,     /* retain's CAS done, holding not recorded */
    ALLOC_NO_HOLDING,      /* allocation claimed, holding not recorded */
    RELEASE_NO_CAS,        /* release's holding dropped, CAS not done */
    DEQUEUE_NOT_ADOPTED,   /* entry left the queue, holding not recorded */
    DEQUEUE_NOT_REMOVED,   /* intent set, entry still in the queue */
    HANDOVER_NOT_ENQUEUED, /* hand-over: holding dropped, entry not in */
    RESET_NOT_RELEASED,    /* reset: entry left, reference not dropped */
    COMPLETE,              /* a whole move (retain), intent left behind */
};

struct child_args {
    enum step step;
    uint64_t h; /* the block (for steps that take one) */
    int ready_fd, go_fd; /* live-intent case: report, then wait */
};

static int child_body(struct child_args *a)
{
    struct pool c;
    if (pool_attach(E.p.seg.fd, &c) != 0)
        return 10;
    struct bq q;
    if (E.with_queue) {
        if (bq_attach(E.q.seg.fd, &q) != 0)
            return 11;
        set_hooks(&q, &c);
    }
    uint32_t idx = (uint32_t)a->h - 1;
    struct bq_entry e;
    switch (a->step) {
    case RETAIN_NO_HOLDING:
        pool_move_begin(&c, a->h, 0);
        if (pool_retain(&c, a->h, true) != 0)
            return 12;
        atomic_store(&c.holdings[(size_t)c.slot * c.block_count + idx], 0);
        break;
    case ALLOC_NO_HOLDING: {
        uint64_t h;
        if (pool_alloc(&c, 64, &h) != 0)
            return 12;
        pool_move_begin(&c, h, 0);
        atomic_store(&c.holdings[(size_t)c.slot * c.block_count + ((uint32_t)h - 1)], 0);
        if (a->ready_fd >= 0 && write(a->ready_fd, &h, sizeof h) != sizeof h)
            return 13;
        break;
    }
    case RELEASE_NO_CAS:
        /* retain fully, then the first half of its release */
        if (pool_retain(&c, a->h, true) != 0)
            return 12;
        pool_move_begin(&c, a->h, 0);
        atomic_fetch_sub(&c.holdings[(size_t)c.slot * c.block_count + idx], 1);
        break;
    case DEQUEUE_NOT_ADOPTED:
        if (bq_dequeue(&q, &e) != 0 || e.handle != a->h)
            return 12;
        break; /* the hook set the intent; no pool_adopt, no end */
    case DEQUEUE_NOT_REMOVED:
        pool_move_begin(&c, a->h, 0);
        break;
    case HANDOVER_NOT_ENQUEUED: {
        if (pool_retain(&c, a->h, true) != 0)
            return 12;
        pool_move_begin(&c, a->h, 0);
        if (pool_disown(&c, a->h) != 0)
            return 13;
        break;
    }
    case RESET_NOT_RELEASED:
        /* as bq_reset: the entry leaves under the intent, no release */
        pool_move_begin(&c, a->h, 0);
        if (bq_dequeue(&q, &e) != 0 || e.handle != a->h)
            return 12;
        break;
    case COMPLETE:
        pool_move_begin(&c, a->h, 0);
        if (pool_retain(&c, a->h, true) != 0)
            return 12;
        break;
    }
    if (a->go_fd >= 0) {
        /* alive inside the move until the parent says go, then finish it
         * and leave cleanly */
        char b = 1;
        if (write(a->ready_fd, &b, 1) != 1 || read(a->go_fd, &b, 1) != 1)
            return 14;
        if (a->step == COMPLETE)
            pool_release(&c, a->h, true);
        pool_move_end(&c, 0);
        pool_detach(&c);
    }
    return 0;
}

static pid_t spawn(struct child_args *a)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(20);
        _exit(child_body(a));
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs the child to step on block h and lets it die there. */
static int die_at(enum step step, uint64_t h)
{
    struct child_args a = {.step = step, .h = h, .ready_fd = -1, .go_fd = -1};
    pid_t pid = spawn(&a);
    return pid > 0 ? wait_exit(pid) : -1;
}

/* ---- cases ---- */

/* retain: refcount raised, holding not: the reclaim drops the excess. */
static void retain_death_is_recounted(void)
{
    setup(false, 0);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(die_at(RETAIN_NO_HOLDING, h) == 0);
    CHECK_EQ(rc_of(&E.p, h), 2);
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue, &E) >= 0);
    CHECK_EQ(rc_of(&E.p, h), 1); /* ours */
    struct pool_stats s;
    REQUIRE(pool_stats(&E.p, &s) == 0);
    CHECK_EQ(s.audited, 1);
    CHECK_EQ(s.audits_pending, 0);
    CHECK_EQ(pool_release(&E.p, h, true), 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* The same death, reclaimed without a recount (pool_reclaim_dead, no way
 * to count queue entries): the block leaks, as it did before intents. */
static void without_recount_it_leaks(void)
{
    setup(false, 0);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(die_at(RETAIN_NO_HOLDING, h) == 0);
    CHECK(pool_reclaim_dead(&E.p) >= 0);
    CHECK_EQ(rc_of(&E.p, h), 2);
    CHECK_EQ(pool_release(&E.p, h, true), 0);
    CHECK_EQ(used_of(&E.p), 1);
    teardown();
}

/* allocation: claimed, not recorded: freed by the reclaim. */
static void alloc_death_frees_block(void)
{
    setup(false, 0);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    struct child_args a = {.step = ALLOC_NO_HOLDING, .ready_fd = fds[1], .go_fd = -1};
    pid_t pid = spawn(&a);
    REQUIRE(pid > 0);
    close(fds[1]);
    uint64_t h = 0;
    CHECK(read(fds[0], &h, sizeof h) == sizeof h);
    close(fds[0]);
    CHECK_EQ(wait_exit(pid), 0);
    CHECK_EQ(used_of(&E.p), 1);
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue, &E) >= 0);
    CHECK_EQ(used_of(&E.p), 0);
    CHECK(pool_block_of(&E.p, h) == NULL); /* its handle is stale */
    teardown();
}

/* release: holding dropped, CAS not done: the reference goes. */
static void release_death_drops_reference(void)
{
    setup(false, 0);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(die_at(RELEASE_NO_CAS, h) == 0);
    CHECK_EQ(rc_of(&E.p, h), 2);
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue, &E) >= 0);
    CHECK_EQ(rc_of(&E.p, h), 1);
    CHECK_EQ(pool_release(&E.p, h, true), 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* Puts block h (allocated by us) into the queue, which then holds the
 * only reference. */
static void queue_only(uint64_t h, int64_t pts)
{
    struct bq_entry e = entry_of(h, pts);
    if (bq_enqueue(&E.q, &e) != 0 || pool_release(&E.p, h, true) != 0)
        abort();
}

/* dequeue: the entry left, the holding not recorded: freed. */
static void dequeue_death_frees_block(void)
{
    setup(true, BQ_ORDER_FIFO);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    queue_only(h, 0);
    CHECK_EQ(rc_of(&E.p, h), 1);
    REQUIRE(die_at(DEQUEUE_NOT_ADOPTED, h) == 0);
    CHECK_EQ(bq_count(&E.q), 0);
    CHECK_EQ(used_of(&E.p), 1);
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue, &E) >= 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* dequeue: intent set, the entry still in the queue: the recount finds it
 * and changes nothing. The block stays valid and dequeues normally. */
static void dequeue_death_before_removal_keeps_block(void)
{
    setup(true, BQ_ORDER_FIFO);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    queue_only(h, 0);
    REQUIRE(die_at(DEQUEUE_NOT_REMOVED, h) == 0);
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue, &E) >= 0);
    CHECK_EQ(rc_of(&E.p, h), 1);
    CHECK_EQ(used_of(&E.p), 1);
    struct bq_entry e;
    REQUIRE(bq_dequeue(&E.q, &e) == 0);
    CHECK_EQ(e.handle, h);
    CHECK(pool_block_of(&E.p, h) != NULL);
    CHECK_EQ(pool_adopt(&E.p, h), 0);
    pool_move_end(&E.p, 0);
    CHECK_EQ(pool_release(&E.p, h, true), 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* hand-over enqueue: holding dropped, entry not in: the reference goes. */
static void handover_death_drops_reference(void)
{
    setup(true, BQ_ORDER_FIFO);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(die_at(HANDOVER_NOT_ENQUEUED, h) == 0);
    CHECK_EQ(rc_of(&E.p, h), 2);
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue, &E) >= 0);
    CHECK_EQ(rc_of(&E.p, h), 1);
    CHECK_EQ(pool_release(&E.p, h, true), 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* reset: entry gone, reference not dropped; the other entry of the same
 * block (a second reference) is still queued and keeps it alive. */
static void reset_death_keeps_queued_reference(void)
{
    setup(true, BQ_ORDER_FIFO);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    struct bq_entry e = entry_of(h, 0);
    REQUIRE(bq_enqueue(&E.q, &e) == 0);
    REQUIRE(bq_enqueue(&E.q, &e) == 0);
    REQUIRE(pool_release(&E.p, h, true) == 0);
    CHECK_EQ(rc_of(&E.p, h), 2);
    REQUIRE(die_at(RESET_NOT_RELEASED, h) == 0);
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue, &E) >= 0);
    CHECK_EQ(rc_of(&E.p, h), 1); /* the entry left in the queue */
    CHECK_EQ(bq_reset(&E.q, NULL, NULL), 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* A move that completed but died before clearing its intent: exact, so
 * nothing changes (the dead client's holding is released as usual). */
static void completed_move_changes_nothing(void)
{
    setup(false, 0);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(die_at(COMPLETE, h) == 0);
    CHECK_EQ(rc_of(&E.p, h), 2);
    CHECK_EQ(pool_reclaim_dead_ex(&E.p, count_queue, &E), 1); /* its holding */
    CHECK_EQ(rc_of(&E.p, h), 1);
    struct pool_stats s;
    REQUIRE(pool_stats(&E.p, &s) == 0);
    CHECK_EQ(s.audited, 0);
    CHECK_EQ(pool_release(&E.p, h, true), 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* A count during which a live process copies the block into the queue:
 * the recount read the holdings before the copy and the queue after it, so
 * it counts the new entry but compares with the refcount it read before the
 * copy raised it. Its sum then reaches that stale refcount although the
 * dead mover's excess is still there; the ref word has moved, so the
 * recount must wait, not settle (which would leak the block). */
static int copies_left;
static int count_queue_while_copying(void *ctx, uint64_t h, uint64_t *n)
{
    if (copies_left > 0) {
        copies_left--;
        struct bq_entry e = entry_of(h, 0);
        if (bq_enqueue(&E.q, &e) != 0)
            return -EIO;
    }
    return count_queue(ctx, h, n);
}

static void move_during_count_defers_recount(void)
{
    setup(true, BQ_ORDER_FIFO);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(die_at(RETAIN_NO_HOLDING, h) == 0);
    CHECK_EQ(rc_of(&E.p, h), 2); /* our holding and the dead retain's excess */
    copies_left = 1;
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue_while_copying, &E) >= 0);
    CHECK_EQ(copies_left, 0);
    CHECK_EQ(rc_of(&E.p, h), 3); /* holding, entry, excess */
    CHECK(pool_audit_pending(&E.p));
    CHECK_EQ(pool_audit_retry(&E.p, count_queue, &E), 0);
    CHECK_EQ(rc_of(&E.p, h), 2);
    CHECK_EQ(pool_release(&E.p, h, true), 0);
    CHECK_EQ(bq_reset(&E.q, NULL, NULL), 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* A live process inside a move of the same block: the recount waits (the
 * slot stays pending, the refcount untouched), and is done once the live
 * move ends. */
static void live_intent_defers_recount(void)
{
    setup(false, 0);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(die_at(RETAIN_NO_HOLDING, h) == 0);
    int rd[2], go[2];
    REQUIRE(pipe(rd) == 0 && pipe(go) == 0);
    struct child_args a = {.step = COMPLETE, .h = h, .ready_fd = rd[1], .go_fd = go[0]};
    pid_t live = spawn(&a);
    REQUIRE(live > 0);
    char b;
    CHECK(read(rd[0], &b, 1) == 1); /* it is inside its move */
    CHECK_EQ(rc_of(&E.p, h), 3);
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue, &E) >= 0);
    struct pool_stats s;
    REQUIRE(pool_stats(&E.p, &s) == 0);
    CHECK_EQ(s.audits_pending, 1);
    CHECK_EQ(rc_of(&E.p, h), 3);
    CHECK(pool_audit_pending(&E.p));
    CHECK_EQ(pool_audit_retry(&E.p, count_queue, &E), -EAGAIN);
    CHECK_EQ(rc_of(&E.p, h), 3);
    /* the live one finishes (releases its reference, ends, detaches) */
    CHECK(write(go[1], &b, 1) == 1);
    CHECK_EQ(wait_exit(live), 0);
    CHECK_EQ(rc_of(&E.p, h), 2);
    CHECK_EQ(pool_audit_retry(&E.p, count_queue, &E), 0);
    CHECK_EQ(rc_of(&E.p, h), 1);
    REQUIRE(pool_stats(&E.p, &s) == 0);
    CHECK_EQ(s.audits_pending, 0);
    CHECK_EQ(pool_release(&E.p, h, true), 0);
    CHECK_EQ(used_of(&E.p), 0);
    close(rd[0]);
    close(rd[1]);
    close(go[0]);
    close(go[1]);
    teardown();
}

/* A sorted queue mid-shift (journal active, as a settler killed half-way
 * leaves it) cannot be counted: the recount waits until a locker rolls
 * the move forward. */
static void queue_mid_shift_defers_recount(void)
{
    setup(true, BQ_ORDER_PTS);
    uint64_t h;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(die_at(HANDOVER_NOT_ENQUEUED, h) == 0);
    atomic_store(&E.q.sh->journal.active, BQ_JOURNAL_SETTLE);
    uint64_t n;
    CHECK_EQ(bq_count_refs(&E.q, POOL_ID, h, &n), -EAGAIN);
    CHECK(pool_reclaim_dead_ex(&E.p, count_queue, &E) >= 0);
    CHECK_EQ(rc_of(&E.p, h), 2);
    CHECK(pool_audit_pending(&E.p));
    atomic_store(&E.q.sh->journal.active, 0);
    CHECK_EQ(pool_audit_retry(&E.p, count_queue, &E), 0);
    CHECK_EQ(rc_of(&E.p, h), 1);
    CHECK_EQ(pool_release(&E.p, h, true), 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* bq_count_refs counts entries by pool and handle, including a FIFO entry
 * whose producer stored it but died before moving tail. */
static void count_refs_sees_entries(void)
{
    setup(true, BQ_ORDER_FIFO);
    uint64_t h, g;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(pool_alloc(&E.p, 64, &g) == 0);
    struct bq_entry e = entry_of(h, 0), f = entry_of(g, 0);
    REQUIRE(bq_enqueue(&E.q, &e) == 0);
    REQUIRE(bq_enqueue(&E.q, &f) == 0);
    REQUIRE(bq_enqueue(&E.q, &e) == 0);
    uint64_t n = 99;
    CHECK_EQ(bq_count_refs(&E.q, POOL_ID, h, &n), 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(bq_count_refs(&E.q, POOL_ID + 1, h, &n), 0);
    CHECK_EQ(n, 0);
    /* stored at tail with its publish mark, tail not moved */
    uint64_t tail = atomic_load(&E.q.sh->tail.index);
    e.seq = tail + 1;
    bq_slot_write(&E.q, tail, &e);
    CHECK_EQ(bq_count_refs(&E.q, POOL_ID, h, &n), 0);
    CHECK_EQ(n, 3);
    teardown();
}

/* A FIFO producer killed between storing its entry's publish mark and
 * moving tail. The entry counts as queued (consumers take it by its mark),
 * so the repair completes the append: the next producer must not write
 * over it (its reference would be lost), and once a consumer has taken it,
 * head must not move back over it (it would be handed out twice). */
static void fifo_half_published_entry_is_kept(void)
{
    setup(true, BQ_ORDER_FIFO);
    uint64_t h, g, k;
    REQUIRE(pool_alloc(&E.p, 64, &h) == 0);
    REQUIRE(pool_alloc(&E.p, 64, &g) == 0);
    REQUIRE(pool_alloc(&E.p, 64, &k) == 0);
    /* not taken yet: the repair publishes it, a later append goes after */
    uint64_t tail = atomic_load(&E.q.sh->tail.index);
    struct bq_entry e = entry_of(h, 0), out;
    REQUIRE(pool_retain(&E.p, h, false) == 0); /* the entry's reference */
    e.seq = tail + 1;
    bq_slot_write(&E.q, tail, &e);
    CHECK_EQ(bq_check(&E.q), 0);
    CHECK_EQ(atomic_load(&E.q.sh->tail.index), tail + 1);
    struct bq_entry f = entry_of(g, 0);
    REQUIRE(bq_enqueue(&E.q, &f) == 0);
    CHECK_EQ(bq_count(&E.q), 2);
    REQUIRE(bq_dequeue(&E.q, &out) == 0);
    CHECK_EQ(out.handle, h);
    pool_adopt(&E.p, h);
    pool_move_end(&E.p, 0);
    REQUIRE(bq_dequeue(&E.q, &out) == 0);
    CHECK_EQ(out.handle, g);
    pool_adopt(&E.p, g);
    pool_move_end(&E.p, 0);
    /* taken already (head one past tail): taken once, not twice */
    tail = atomic_load(&E.q.sh->tail.index);
    struct bq_entry x = entry_of(k, 0);
    REQUIRE(pool_retain(&E.p, k, false) == 0);
    x.seq = tail + 1;
    bq_slot_write(&E.q, tail, &x);
    REQUIRE(bq_dequeue(&E.q, &out) == 0);
    CHECK_EQ(out.handle, k);
    pool_adopt(&E.p, k);
    pool_move_end(&E.p, 0);
    CHECK_EQ(bq_check(&E.q), 0);
    CHECK_EQ(bq_count(&E.q), 0);
    CHECK_EQ(bq_dequeue(&E.q, &out), -EAGAIN);
    REQUIRE(bq_enqueue(&E.q, &f) == 0);
    REQUIRE(bq_dequeue(&E.q, &out) == 0);
    CHECK_EQ(out.handle, g);
    pool_adopt(&E.p, g);
    pool_move_end(&E.p, 0);
    CHECK_EQ(bq_dequeue(&E.q, &out), -EAGAIN);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(pool_release(&E.p, h, true), 0);
        CHECK_EQ(pool_release(&E.p, k, true), 0);
    }
    for (int i = 0; i < 3; i++) /* ours, and two dequeued */
        CHECK_EQ(pool_release(&E.p, g, true), 0);
    CHECK_EQ(used_of(&E.p), 0);
    teardown();
}

/* ---- records of live threads ---- */

/* The allocating thread holds one record; these threads the others. */
#define LIVE_MOVERS (POOL_INTENTS - 1)

struct mover {
    struct pool *p;
    uint64_t h;
    pthread_barrier_t *moved, *done;
    int result;
};

static void *mover_body(void *arg)
{
    struct mover *m = arg;
    pool_move_begin(m->p, m->h, 0);
    pool_move_end(m->p, 0);
    pthread_barrier_wait(m->moved); /* holds a record, clear, and lives on */
    pthread_barrier_wait(m->done);
    return NULL;
}

/* The thread one too many: every record is a live thread's. */
static void *extra_body(void *arg)
{
    struct mover *m = arg;
    struct pool_client *c = &m->p->clients[m->p->slot];
    uint32_t before[POOL_INTENTS];
    for (int i = 0; i < POOL_INTENTS; i++)
        before[i] = atomic_load(&c->intent[i].owner);
    pool_move_begin(m->p, m->h, 0);
    m->result = 0;
    for (int i = 0; i < POOL_INTENTS; i++)
        if (atomic_load(&c->intent[i].owner) != before[i])
            m->result = 20; /* a live thread's record was taken */
    if (!m->result && atomic_load(&c->intent_overflow) != 1)
        m->result = 21;
    pool_move_end(m->p, 0);
    if (!m->result && atomic_load(&c->intent_overflow) != 0)
        m->result = 22;
    return NULL;
}

/* In the client-id form (a process with a daemon-assigned identity), one
 * thread more than there are records: it must count its move as one of
 * unknown block, not take the record of a live thread that is between two
 * moves (the record would then name the other thread's block or none while
 * that thread moves, and a recount would not see its move). */
static int child_records(void)
{
    struct slock_ids *ids = mmap(NULL, sizeof(struct slock_ids), PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ids == MAP_FAILED)
        return 10;
    atomic_store(&ids->live[9], 1);
    slock_set_identity(9, ids);
    if (slock_identity() != 9)
        return 11;
    struct pool p;
    struct pool_params prm = {.block_size = 4096, .block_count = 4};
    if (pool_create(&prm, &p) != 0)
        return 12;
    uint64_t h;
    if (pool_alloc(&p, 4096, &h) != 0)
        return 13;
    pthread_barrier_t moved, done;
    pthread_barrier_init(&moved, NULL, LIVE_MOVERS + 1);
    pthread_barrier_init(&done, NULL, LIVE_MOVERS + 1);
    pthread_t t[LIVE_MOVERS], x;
    struct mover m = {.p = &p, .h = h, .moved = &moved, .done = &done, .result = -1};
    for (int i = 0; i < LIVE_MOVERS; i++)
        if (pthread_create(&t[i], NULL, mover_body, &m) != 0)
            return 14;
    pthread_barrier_wait(&moved);
    if (pthread_create(&x, NULL, extra_body, &m) != 0)
        return 15;
    pthread_join(x, NULL);
    pthread_barrier_wait(&done);
    for (int i = 0; i < LIVE_MOVERS; i++)
        pthread_join(t[i], NULL);
    return m.result;
}

static void live_threads_keep_their_records(void)
{
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        _exit(child_records());
    CHECK_EQ(wait_exit(pid), 0);
}

CHECK_MAIN(CASE(fifo_half_published_entry_is_kept), CASE(retain_death_is_recounted), CASE(without_recount_it_leaks),
           CASE(alloc_death_frees_block), CASE(release_death_drops_reference),
           CASE(dequeue_death_frees_block), CASE(dequeue_death_before_removal_keeps_block),
           CASE(handover_death_drops_reference), CASE(reset_death_keeps_queued_reference),
           CASE(completed_move_changes_nothing), CASE(live_intent_defers_recount),
           CASE(move_during_count_defers_recount),
           CASE(queue_mid_shift_defers_recount), CASE(count_refs_sees_entries),
           CASE(live_threads_keep_their_records))
