/* Shared memory is untrusted input: scribbling on a segment must never crash,
 * hang or make a process read out of bounds.
 *
 * For each object kind (buffer queue, simple queue, pool), 500 rounds: the
 * parent makes a fresh object with some state in it; a fork()ed child writes
 * pseudo-random bytes over (a) the segment header, (b) control fields
 * (counters, flags, trigger table, journal, free lists, client table, lock
 * words) or (c) entries / block descriptors, then runs every operation in a
 * random order on the mapping it inherited (a process that attached before
 * the scribble) and on a fresh attach of the scribbled fd (a process that
 * attaches after), then checks that a repair leaves the object consistent
 * and usable. The child has alarm(20); the parent requires exit status 0 and
 * reports a signal (crash, SIGALRM = hang), a sanitizer report (exit 1 in
 * the sanitizer build) or a failed check, with the operation that was
 * running, the round and the seed.
 *
 * Lock words are never left naming a live foreign thread (that would be a
 * legitimate wait, not a bug): after a scribble they are set to 0 or to a
 * tid above PID_MAX_LIMIT, which no task can have.
 *
 * A few deterministic cases at the end pin down the specific defects the
 * fuzzing found, each with a short bound.
 *
 * The seed is printed; MBQ_TEST_SEED=<n> replays a run (round r of kind k
 * uses its own stream derived from the seed, so one round replays alone). */
#include "check.h"

#include "bq_layout.h"
#include "futex.h"
#include "pool_layout.h"
#include "sq_layout.h"

#include <mbq/status.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 500
#define CHILD_ALARM_S 20
#define KIND_BUDGET_NS 40000000000ull /* stop a kind's rounds after 40 s (slow host) */
#define DEAD_TID_BASE 0x3ff00000u     /* > PID_MAX_LIMIT (4194304): never a live task */

enum {
    FX_OK = 0,
    FX_RANGE = 20,           /* a getter returned a value outside its range */
    FX_FOREACH_OVERRUN = 21, /* bq_for_each visited more entries than the capacity */
    FX_RESET_OVERRUN = 22,   /* bq_reset released more entries than the capacity */
    FX_POST = 23,            /* not consistent or not usable after the repair */
    FX_POOL_PTR = 24,        /* pool_data/pool_block_of outside the pool */
    FX_SETUP = 25,
};

static const char *fail_name(int code)
{
    switch (code) {
    case FX_RANGE: return "value out of range";
    case FX_FOREACH_OVERRUN: return "bq_for_each visited more entries than capacity";
    case FX_RESET_OVERRUN: return "bq_reset walked more entries than capacity";
    case FX_POST: return "inconsistent or unusable after repair";
    case FX_POOL_PTR: return "pool pointer outside the pool";
    case FX_SETUP: return "setup failed";
    case 1: return "sanitizer report (see stderr) or exit(1)";
    default: return "unexpected exit status";
    }
}

/* ---- helpers -------------------------------------------------------------- */

/* One seed for the whole run. */
static uint64_t test_seed(void)
{
    static uint64_t seed;
    if (!seed) {
        const char *s = getenv("MBQ_TEST_SEED");
        seed = s && *s ? strtoull(s, NULL, 0) : mono_ns() ^ ((uint64_t)getpid() << 32);
    }
    return seed;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

static void rng_bytes(uint64_t *s, void *p, size_t n)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rng_next(s);
}

static uint32_t dead_tid(uint64_t *s)
{
    uint32_t t = DEAD_TID_BASE + (uint32_t)rng_below(s, 0xfffff);
    return rng_below(s, 4) == 0 ? t | SLOCK_WAITERS : t;
}

/* A lock word after a scribble: free, or owned by a task that cannot exist. */
static void fix_lock(struct slock *l, uint64_t *s)
{
    if (atomic_load(&l->word) != 0)
        atomic_store(&l->word, rng_below(s, 2) ? 0 : dead_tid(s));
}

/* Likewise a biased lock's bias: none, or a task that cannot exist (its
 * busy flag and streak bookkeeping stay as scribbled). */
static void fix_bslock(struct bslock *b, uint64_t *s)
{
    fix_lock(&b->lock, s);
    if (atomic_load(&b->bias) != 0)
        atomic_store(&b->bias, rng_below(s, 2) ? 0 : dead_tid(s) & SLOCK_TID_MASK);
}

/* Mostly-plausible times, with every kind of special value mixed in. */
static mbq_time rand_time(uint64_t *s)
{
    switch (rng_below(s, 12)) {
    case 0: return MBQ_TIME_INVALID;
    case 1: return MBQ_TIME_POSITIVE_INFINITY;
    case 2: return MBQ_TIME_NEGATIVE_INFINITY;
    case 3: return MBQ_TIME_INDEFINITE;
    case 4: return mbq_time_make((int64_t)rng_next(s), (int32_t)(rng_next(s) | 1) & 0x7fffffff);
    case 5: return mbq_time_make_with_epoch((int64_t)rng_below(s, 1000), 90000, 1);
    case 6: return mbq_time_make((int64_t)rng_below(s, 100000), 7);
    default: return mbq_time_make((int64_t)rng_below(s, 100000), 1000);
    }
}

/* A value to plant in a field of `size` bytes whose sound value is `cur`. */
static void plant(uint64_t *s, void *field, size_t size, uint64_t cur, uint64_t cap)
{
    uint64_t v;
    switch (rng_below(s, 10)) {
    case 0: v = 0; break;
    case 1: v = ~0ull; break;
    case 2: v = rng_below(s, 4); break;
    case 3: v = cur + 1 + rng_below(s, 2 * cap + 2); break;
    case 4: v = cur - 1 - rng_below(s, 2 * cap + 2); break;
    case 5: v = 1ull << rng_below(s, 64); break;
    case 6: v = cap + rng_below(s, 3) - 1; break;
    case 7: v = cur ^ (1ull << rng_below(s, 8 * size)); break;
    default: v = rng_next(s); break;
    }
    memcpy(field, &v, size < 8 ? size : 8);
}

static uint64_t read_field(const void *field, size_t size)
{
    uint64_t v = 0;
    memcpy(&v, field, size < 8 ? size : 8);
    return v;
}

/* Random bytes over a random span of [lo, hi) of base. */
static void smear(uint64_t *s, uint8_t *base, size_t lo, size_t hi)
{
    if (hi <= lo)
        return;
    size_t off = lo + rng_below(s, hi - lo);
    size_t len = 1 + rng_below(s, 24);
    if (off + len > hi)
        len = hi - off;
    rng_bytes(s, base + off, len);
}

/* The child reports what it is doing here, so that a hang or a crash can
 * be attributed to an operation. */
struct progress {
    _Atomic int op;
    _Atomic int on_attached;
};
static struct progress *prog;

static inline void at(int op)
{
    atomic_store_explicit(&prog->op, op, memory_order_relaxed);
}

static int reap(pid_t pid, int timeout_ms)
{
    int status = 0;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000u;
        for (;;) {
            uint64_t now = mono_ns();
            if (now >= deadline) {
                kill(pid, SIGALRM); /* reported like the child's own alarm */
                break;
            }
            int r = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
            if (r > 0 || (r < 0 && errno != EINTR))
                break;
        }
        close(pfd);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* ---- buffer queue ----------------------------------------------------------- */

enum bq_op {
    BQO_ENQUEUE, BQO_DEQUEUE, BQO_DEQUEUE_IF_READY, BQO_DEQUEUE_WAIT, BQO_COPY_HEAD,
    BQO_MARK_EOD, BQO_EOD_GETTERS, BQO_COUNT, BQO_SIZE_DURATION, BQO_FIRST_TIMES,
    BQO_MIN_DTS, BQO_MIN_PTS, BQO_MAX_PTS, BQO_END_PTS, BQO_RESET, BQO_FOR_EACH,
    BQO_INSTALL, BQO_TEST, BQO_REMOVE, BQO_SET_FD, BQO_FIRED, BQO_NOTE_READY, BQO_STATS,
    BQO_CHECK, BQO_N,
    BQO_ATTACH = BQO_N, BQO_POST, BQO_SCRIBBLE,
};

static const char *bq_op_name(int op)
{
    static const char *n[] = {
        "bq_enqueue", "bq_dequeue", "bq_dequeue_if_ready", "bq_dequeue_wait", "bq_copy_head",
        "bq_mark_end_of_data", "bq_contains/is_at_end_of_data/is_empty", "bq_count",
        "bq_total_size/bq_duration", "bq_first_dts/bq_first_pts", "bq_min_dts", "bq_min_pts",
        "bq_max_pts", "bq_end_pts", "bq_reset", "bq_for_each", "bq_install_trigger",
        "bq_test_trigger", "bq_remove_trigger", "bq_set_trigger_fd", "bq_trigger_fired",
        "bq_note_data_ready", "bq_stats", "bq_check", "bq_attach", "post-repair checks",
        "scribbling",
    };
    return op >= 0 && op < (int)(sizeof(n) / sizeof(n[0])) ? n[op] : "?";
}

struct bq_round {
    uint64_t rng;
    uint64_t tokens[8];
    int ntokens;
    int efd;
    uint64_t next_handle;
};

static bool ready_hook(void *ctx, uint32_t pool_id, uint64_t handle)
{
    (void)ctx;
    (void)pool_id;
    return (handle & 3) != 0;
}

static struct bq_entry rand_entry(struct bq_round *r)
{
    struct bq_entry e;
    memset(&e, 0, sizeof(e));
    e.handle = ++r->next_handle;
    e.pts = rand_time(&r->rng);
    e.dts = rng_below(&r->rng, 2) ? e.pts : rand_time(&r->rng);
    e.duration = rand_time(&r->rng);
    e.size = rng_below(&r->rng, 1u << 20);
    e.pool_id = (uint32_t)rng_below(&r->rng, 3);
    return e;
}

struct count_ctx {
    uint64_t n, limit;
};

static uint64_t reset_limit;
static uint64_t reset_seen;

static void reset_cb(const struct bq_entry *e, void *ctx)
{
    (void)e;
    (void)ctx;
    if (++reset_seen > reset_limit) {
        fprintf(stderr, "bq_reset: callback called for more than %llu (capacity) entries\n",
                (unsigned long long)reset_limit);
        _exit(FX_RESET_OVERRUN);
    }
}

static int count_cb(struct bq_entry *e, void *ctx)
{
    struct count_ctx *c = ctx;
    e->attachments[0]++; /* allowed */
    return ++c->n > c->limit ? 1 : 0;
}

static int bq_run_op(struct bq *q, int op, struct bq_round *r)
{
    struct bq_entry e;
    at(op);
    switch (op) {
    case BQO_ENQUEUE: {
        int n = 1 + (int)rng_below(&r->rng, 4);
        for (int i = 0; i < n; i++) {
            e = rand_entry(r);
            (void)bq_enqueue(q, &e);
        }
        break;
    }
    case BQO_DEQUEUE:
        (void)bq_dequeue(q, &e);
        break;
    case BQO_DEQUEUE_IF_READY:
        (void)bq_dequeue_if_ready(q, &e);
        break;
    case BQO_DEQUEUE_WAIT:
        (void)bq_dequeue_wait(q, &e, 1000000);
        break;
    case BQO_COPY_HEAD:
        (void)bq_copy_head(q, &e);
        break;
    case BQO_MARK_EOD:
        if (rng_below(&r->rng, 3) == 0)
            (void)bq_mark_end_of_data(q);
        break;
    case BQO_EOD_GETTERS:
        (void)bq_contains_end_of_data(q);
        (void)bq_is_at_end_of_data(q);
        (void)bq_is_empty(q);
        break;
    case BQO_COUNT: {
        int64_t c = bq_count(q);
        if (c < 0 || c > (int64_t)q->capacity) {
            fprintf(stderr, "bq_count %lld, capacity %u\n", (long long)c, q->capacity);
            return FX_RANGE;
        }
        break;
    }
    case BQO_SIZE_DURATION:
        (void)bq_total_size(q);
        (void)bq_duration(q);
        break;
    case BQO_FIRST_TIMES:
        (void)bq_first_dts(q);
        (void)bq_first_pts(q);
        break;
    case BQO_MIN_DTS: (void)bq_min_dts(q); break;
    case BQO_MIN_PTS: (void)bq_min_pts(q); break;
    case BQO_MAX_PTS: (void)bq_max_pts(q); break;
    case BQO_END_PTS: (void)bq_end_pts(q); break;
    case BQO_RESET:
        if (rng_below(&r->rng, 2) == 0) {
            reset_limit = q->capacity;
            reset_seen = 0;
            (void)bq_reset(q, reset_cb, NULL);
        }
        break;
    case BQO_FOR_EACH: {
        struct count_ctx c = {.limit = q->capacity};
        (void)bq_for_each(q, count_cb, &c);
        if (c.n > c.limit) {
            fprintf(stderr, "bq_for_each: more than %llu (capacity) entries\n",
                    (unsigned long long)c.limit);
            return FX_FOREACH_OVERRUN;
        }
        break;
    }
    case BQO_INSTALL: {
        int32_t cond = (int32_t)rng_below(&r->rng, 14); /* 0 and 13 are invalid */
        uint64_t tok;
        mbq_time t = rng_below(&r->rng, 4) ? mbq_time_make((int64_t)rng_below(&r->rng, 5000), 1000)
                                           : rand_time(&r->rng);
        if (bq_install_trigger(q, cond, t, (int64_t)rng_below(&r->rng, 10) - 1,
                               rng_below(&r->rng, 2) ? r->efd : -1, &tok) == 0 &&
            r->ntokens < 8)
            r->tokens[r->ntokens++] = tok;
        break;
    }
    case BQO_TEST:
        for (int i = 0; i < r->ntokens; i++)
            (void)bq_test_trigger(q, r->tokens[i]);
        (void)bq_test_trigger(q, rng_next(&r->rng));
        break;
    case BQO_REMOVE:
        if (r->ntokens)
            (void)bq_remove_trigger(q, r->tokens[rng_below(&r->rng, (uint64_t)r->ntokens)]);
        (void)bq_remove_trigger(q, rng_next(&r->rng));
        break;
    case BQO_SET_FD:
        for (int i = 0; i < r->ntokens; i++)
            (void)bq_set_trigger_fd(q, r->tokens[i], r->efd);
        break;
    case BQO_FIRED:
        for (int i = 0; i < r->ntokens; i++)
            (void)bq_trigger_fired(q, r->tokens[i]);
        break;
    case BQO_NOTE_READY:
        (void)bq_note_data_ready(q);
        break;
    case BQO_STATS: {
        struct bq_stats st;
        if (bq_stats(q, &st) == 0 && st.count > q->capacity) {
            fprintf(stderr, "bq_stats count %llu, capacity %u\n", (unsigned long long)st.count,
                    q->capacity);
            return FX_RANGE;
        }
        break;
    }
    case BQO_CHECK:
        (void)bq_check(q);
        break;
    }
    return FX_OK;
}

/* What a sound queue looks like, seen through the public API. */
struct bq_walk {
    uint32_t order;
    uint64_t n, limit, bytes;
    mbq_time dur, last_key;
    uint64_t last_seq;
    bool sorted;
};

static int walk_cb(struct bq_entry *e, void *ctx)
{
    struct bq_walk *w = ctx;
    mbq_time key = w->order == BQ_ORDER_DTS ? e->dts : e->pts;
    if (w->n > 0 && w->order != BQ_ORDER_FIFO) {
        int c = mbq_time_compare(w->last_key, key);
        if (c > 0 || (c == 0 && w->last_seq > e->seq))
            w->sorted = false;
    }
    w->last_key = key;
    w->last_seq = e->seq;
    w->bytes += e->size;
    /* the documented rule: non-numeric durations count as zero */
    if (mbq_time_is_numeric(e->duration))
        w->dur = mbq_time_add(mbq_time_is_numeric(w->dur) ? w->dur : MBQ_TIME_ZERO, e->duration);
    return ++w->n > w->limit ? 1 : 0;
}

/* After bq_check(): every invariant holds and the queue works. */
static int bq_post(struct bq *q, struct bq_round *r)
{
    at(BQO_POST);
    (void)bq_check(q);
    struct bq_stats st;
    int rc = bq_stats(q, &st);
    if (rc != 0) {
        fprintf(stderr, "post: bq_stats after bq_check: %d\n", rc);
        return FX_POST;
    }
    struct bq_walk w = {.order = q->order, .limit = q->capacity, .dur = MBQ_TIME_ZERO,
                        .sorted = true};
    int frc = bq_for_each(q, walk_cb, &w);
    if (st.count > q->capacity || w.n != st.count || (int64_t)st.count != bq_count(q)) {
        fprintf(stderr,
                "post: count %llu, walked %llu (bq_for_each %d), bq_count %lld, capacity %u; "
                "head %llu tail %llu flags %#x trigger_count %u\n",
                (unsigned long long)st.count, (unsigned long long)w.n, frc,
                (long long)bq_count(q), q->capacity,
                (unsigned long long)atomic_load(&q->sh->head.index),
                (unsigned long long)atomic_load(&q->sh->tail.index),
                atomic_load(&q->sh->flags), atomic_load(&q->sh->trigger_count));
        return FX_POST;
    }
    if (!w.sorted) {
        fprintf(stderr, "post: sorted queue out of order after bq_check\n");
        return FX_POST;
    }
    if (st.total_size != w.bytes || bq_total_size(q) != w.bytes) {
        fprintf(stderr, "post: total size %llu, entries sum to %llu\n",
                (unsigned long long)st.total_size, (unsigned long long)w.bytes);
        return FX_POST;
    }
    mbq_time want = st.count ? mbq_time_subtract(w.dur, MBQ_TIME_ZERO) : MBQ_TIME_ZERO;
    if (mbq_time_compare(st.duration, want) != 0) {
        fprintf(stderr, "post: duration %lld/%d (flags %u), entries sum to %lld/%d (flags %u)\n",
                (long long)st.duration.value, st.duration.timescale, st.duration.flags,
                (long long)want.value, want.timescale, want.flags);
        return FX_POST;
    }
    /* usable: reset, then an entry goes through */
    if (bq_reset(q, NULL, NULL) != 0 || bq_count(q) != 0 || !bq_is_empty(q)) {
        fprintf(stderr, "post: reset did not empty the queue\n");
        return FX_POST;
    }
    struct bq_entry e = rand_entry(r), o = {0};
    bq_set_hooks(q, NULL);
    int64_t c1 = -1, c2 = -1;
    int rd = -1;
    if ((rc = bq_enqueue(q, &e)) != 0 || (c1 = bq_count(q)) != 1 ||
        (rd = bq_dequeue(q, &o)) != 0 || o.handle != e.handle || (c2 = bq_count(q)) != 0) {
        fprintf(stderr,
                "post: an entry does not go through the repaired queue: enqueue %d, count %lld, "
                "dequeue %d (handle %llu, sent %llu), count %lld; head %llu tail %llu\n",
                rc, (long long)c1, rd, (unsigned long long)o.handle,
                (unsigned long long)e.handle, (long long)c2,
                (unsigned long long)atomic_load(&q->sh->head.index),
                (unsigned long long)atomic_load(&q->sh->tail.index));
        return FX_POST;
    }
    return FX_OK;
}

static void bq_scribble(struct bq *q, int cat, uint64_t *s)
{
    at(BQO_SCRIBBLE);
    uint8_t *base = (uint8_t *)q->sh;
    struct bq_shared *sh = q->sh;
    int n = 1 + (int)rng_below(s, 4);
    uint64_t head = atomic_load(&sh->head.index), tail = atomic_load(&sh->tail.index);
    for (int k = 0; k < n; k++) {
        switch (cat) {
        case 0: /* segment header and queue header */
            if (rng_below(s, 2))
                smear(s, base, 0, 128);
            else {
                static const struct {
                    size_t off, size;
                } hf[] = {
                    {offsetof(struct bq_shared, hdr.magic), 4},
                    {offsetof(struct bq_shared, hdr.layout_version), 2},
                    {offsetof(struct bq_shared, hdr.kind), 2},
                    {offsetof(struct bq_shared, hdr.size), 8},
                    {offsetof(struct bq_shared, hdr.header_size), 4},
                    {offsetof(struct bq_shared, capacity), 4},
                    {offsetof(struct bq_shared, slots), 4},
                    {offsetof(struct bq_shared, order), 4},
                    {offsetof(struct bq_shared, full_policy), 4},
                    {offsetof(struct bq_shared, entry_size), 4},
                    {offsetof(struct bq_shared, nonce), 4},
                    {offsetof(struct bq_shared, entries_off), 8},
                };
                size_t i = rng_below(s, sizeof(hf) / sizeof(hf[0]));
                plant(s, base + hf[i].off, hf[i].size, read_field(base + hf[i].off, hf[i].size),
                      q->capacity);
            }
            break;
        case 1: { /* control fields */
            if (rng_below(s, 4) == 0) {
                smear(s, base, 128, offsetof(struct bq_shared, triggers) +
                                        sizeof(sh->triggers));
                break;
            }
            struct {
                void *p;
                size_t size;
                uint64_t cur;
            } f[] = {
                {&sh->flags, 4, 0},
                {&sh->trigger_count, 4, 0},
                {&sh->trigger_gen, 4, 0},
                {&sh->repairs, 8, 0},
                {&sh->corruptions, 8, 0},
                {&sh->tail.dropped, 8, 0},
                {&sh->tail.high_water, 8, 0},
                {&sh->tail.rejected_full, 8, 0},
                {&sh->last_min_pts, 24, 0},
                {&sh->data_seq, 4, 0},
                {&sh->data_waiters, 4, 0},
                {&sh->journal.active, 4, 0},
                {&sh->journal.pos, 8, tail},
                {&sh->journal.tail, 8, tail},
                {&sh->journal.progress, 8, tail},
                {&sh->journal.entry, 128, 0},
                {&sh->tail.lock.lock, 4, 0},
                {&sh->tail.lock.bias, 4, 0},
                {&sh->tail.lock.busy, 4, 0},
                {&sh->tail.lock.streak, 4, 0},
                {&sh->tail.lock.threshold, 4, 0},
                {&sh->tail.seq, 4, 0},
                {&sh->tail.index, 8, tail},
                {&sh->tail.bytes, 8, 0},
                {&sh->tail.dur_value, 8, 0},
                {&sh->tail.dur_scale_flags, 8, 0},
                {&sh->tail.dur_epoch, 8, 0},
                {&sh->tail.ops, 8, 0},
                {&sh->head.lock.lock, 4, 0},
                {&sh->head.lock.bias, 4, 0},
                {&sh->head.lock.busy, 4, 0},
                {&sh->head.lock.streak_tid, 4, 0},
                {&sh->head.seq, 4, 0},
                {&sh->head.index, 8, head},
                {&sh->head.bytes, 8, 0},
                {&sh->head.dur_value, 8, 0},
                {&sh->head.dur_scale_flags, 8, 0},
                {&sh->head.ops, 8, 0},
            };
            int nf = (int)(sizeof(f) / sizeof(f[0]));
            int i = (int)rng_below(s, (uint64_t)nf + 8);
            if (i >= nf) { /* a trigger slot */
                struct bq_trigger *t = &sh->triggers[rng_below(s, BQ_MAX_TRIGGERS)];
                switch (rng_below(s, 6)) {
                case 0: plant(s, (void *)&t->state, 4, 1, 2); break;
                case 1: plant(s, &t->condition, 4, 5, 12); break;
                case 2: plant(s, &t->gen, 4, t->gen, 4); break;
                case 3: plant(s, &t->level, 4, 0, 1); break;
                case 4: rng_bytes(s, &t->time, sizeof(t->time)); break;
                default: rng_bytes(s, t, sizeof(*t)); break;
                }
            } else if (f[i].size > 8) {
                rng_bytes(s, f[i].p, f[i].size);
            } else {
                plant(s, f[i].p, f[i].size, f[i].cur ? f[i].cur : read_field(f[i].p, f[i].size),
                      q->capacity);
            }
            break;
        }
        default: { /* entries */
            uint64_t slot = rng_below(s, 2) ? (head + rng_below(s, tail - head + 1)) & q->mask
                                            : rng_below(s, (uint64_t)q->mask + 1);
            struct bq_slot *e = &q->slots[slot];
            switch (rng_below(s, 6)) {
            case 0: rng_bytes(s, e, sizeof(*e)); break;
            case 1: e->handle = rng_below(s, 2) ? 0 : rng_next(s); break;
            case 2: rng_bytes(s, &e->pts, sizeof(e->pts)); break;
            case 3: rng_bytes(s, &e->duration, sizeof(e->duration)); break;
            case 4: e->size = rng_next(s); break;
            default: smear(s, (uint8_t *)e, 0, sizeof(*e)); break;
            }
            break;
        }
        }
    }
    fix_bslock(&sh->tail.lock, s);
    fix_bslock(&sh->head.lock, s);
}

static void shuffle(int *v, int n, uint64_t *s)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(s, (uint64_t)i + 1), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static int bq_child(struct bq *q, int cat, struct bq_round *r)
{
    bq_scribble(q, cat, &r->rng);
    if (rng_below(&r->rng, 2))
        bq_set_hooks(q, &(struct bq_hooks){.is_ready = ready_hook});
    int ops[BQO_N];
    for (int i = 0; i < BQO_N; i++)
        ops[i] = i;
    for (int pass = 0; pass < 2; pass++) {
        shuffle(ops, BQO_N, &r->rng);
        for (int i = 0; i < BQO_N; i++) {
            int rc = bq_run_op(q, ops[i], r);
            if (rc)
                return rc;
        }
        /* a process that attaches to the scribbled segment */
        at(BQO_ATTACH);
        struct bq a;
        if (bq_attach(q->seg.fd, &a) == 0) {
            atomic_store(&prog->on_attached, 1);
            shuffle(ops, BQO_N, &r->rng);
            for (int i = 0; i < BQO_N; i++) {
                int rc = bq_run_op(&a, ops[i], r);
                if (rc)
                    return rc;
            }
            atomic_store(&prog->on_attached, 0);
            bq_detach(&a);
        }
    }
    return bq_post(q, r);
}

static bool bq_setup(struct bq *q, struct bq_round *r)
{
    uint64_t *s = &r->rng;
    struct bq_params p = {.capacity = 1 + (uint32_t)rng_below(s, 64),
                          .order = (uint32_t)rng_below(s, 3),
                          .full_policy = (uint32_t)rng_below(s, 2)};
    if (bq_create(&p, q) != 0)
        return false;
    /* move the counters on so that the live entries wrap around the ring */
    uint64_t skip = rng_below(s, 2u * p.capacity);
    for (uint64_t i = 0; i < skip; i++) {
        struct bq_entry e = rand_entry(r), o;
        if (bq_enqueue(q, &e) != 0 || bq_dequeue(q, &o) != 0)
            return false;
    }
    uint64_t n = rng_below(s, (uint64_t)p.capacity + 1);
    for (uint64_t i = 0; i < n; i++) {
        struct bq_entry e = rand_entry(r);
        if (bq_enqueue(q, &e) != 0)
            return false;
    }
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int nt = (int)rng_below(s, 4);
    for (int i = 0; i < nt; i++) {
        int32_t cond = 1 + (int32_t)rng_below(s, 12);
        uint64_t tok;
        if (bq_install_trigger(q, cond, mbq_time_make((int64_t)rng_below(s, 5000), 1000),
                               (int64_t)rng_below(s, 8), rng_below(s, 2) ? r->efd : -1,
                               &tok) == 0)
            r->tokens[r->ntokens++] = tok;
    }
    if (rng_below(s, 8) == 0)
        bq_mark_end_of_data(q);
    return true;
}

/* ---- simple queue ----------------------------------------------------------- */

enum sq_op { SQO_ENQUEUE, SQO_DEQUEUE, SQO_PEEK, SQO_COUNT, SQO_FULLNESS, SQO_CAPACITY,
             SQO_RESET, SQO_N, SQO_ATTACH = SQO_N, SQO_POST, SQO_SCRIBBLE };

static const char *sq_op_name(int op)
{
    static const char *n[] = {"sq_enqueue", "sq_dequeue", "sq_peek", "sq_count",
                              "sq_fullness", "sq_capacity", "sq_reset", "sq_attach",
                              "post-reset checks", "scribbling"};
    return op >= 0 && op < (int)(sizeof(n) / sizeof(n[0])) ? n[op] : "?";
}

static int sq_run_op(struct sq *q, int op, uint64_t *s)
{
    at(op);
    int32_t cap = sq_capacity(q);
    switch (op) {
    case SQO_ENQUEUE:
        for (int i = 0, n = 1 + (int)rng_below(s, 8); i < n; i++)
            (void)sq_enqueue(q, rng_below(s, 8) ? 1 + rng_below(s, 1000) : rng_next(s));
        break;
    case SQO_DEQUEUE:
        for (int i = 0, n = 1 + (int)rng_below(s, 8); i < n; i++)
            (void)sq_dequeue(q);
        break;
    case SQO_PEEK: (void)sq_peek(q); break;
    case SQO_COUNT: {
        int32_t c = sq_count(q);
        if (c < 0 || c > cap) {
            fprintf(stderr, "sq_count %d, capacity %d\n", c, cap);
            return FX_RANGE;
        }
        break;
    }
    case SQO_FULLNESS: {
        float f = sq_fullness(q);
        if (!(f >= 0.0f && f <= 1.0f)) {
            fprintf(stderr, "sq_fullness %f\n", (double)f);
            return FX_RANGE;
        }
        break;
    }
    case SQO_CAPACITY:
        if (cap < 1 || cap > SQ_MAX_CAPACITY)
            return FX_RANGE;
        break;
    case SQO_RESET:
        if (rng_below(s, 3) == 0)
            (void)sq_reset(q);
        break;
    }
    return FX_OK;
}

static void sq_scribble(struct sq *q, int cat, uint64_t *s)
{
    at(SQO_SCRIBBLE);
    uint8_t *base = (uint8_t *)q->sh;
    struct sq_shared *sh = q->sh;
    int n = 1 + (int)rng_below(s, 3);
    for (int k = 0; k < n; k++) {
        switch (cat) {
        case 0:
            if (rng_below(s, 2))
                smear(s, base, 0, 128);
            else if (rng_below(s, 2))
                plant(s, &sh->capacity, 4, sh->capacity, q->capacity);
            else if (rng_below(s, 2))
                plant(s, &sh->values_offset, 8, sh->values_offset, 8);
            else
                plant(s, &sh->hdr.size, 8, sh->hdr.size, 4096);
            break;
        case 1: {
            _Atomic uint64_t *c = rng_below(s, 2) ? &sh->head : &sh->tail;
            if (rng_below(s, 4) == 0)
                smear(s, base, 128, sizeof(*sh));
            else
                plant(s, (void *)c, 8, atomic_load(c), q->capacity);
            break;
        }
        default: {
            uint64_t i = rng_below(s, q->capacity);
            uint64_t v = rng_below(s, 2) ? 0 : rng_next(s);
            atomic_store(&q->values[i], v);
            break;
        }
        }
    }
}

static int sq_child(struct sq *q, int cat, uint64_t *s)
{
    sq_scribble(q, cat, s);
    int ops[SQO_N];
    for (int i = 0; i < SQO_N; i++)
        ops[i] = i;
    for (int pass = 0; pass < 3; pass++) {
        shuffle(ops, SQO_N, s);
        for (int i = 0; i < SQO_N; i++) {
            int rc = sq_run_op(q, ops[i], s);
            if (rc)
                return rc;
        }
        at(SQO_ATTACH);
        struct sq a;
        if (sq_attach(q->seg.fd, &a) == 0) {
            atomic_store(&prog->on_attached, 1);
            shuffle(ops, SQO_N, s);
            for (int i = 0; i < SQO_N; i++) {
                int rc = sq_run_op(&a, ops[i], s);
                if (rc)
                    return rc;
            }
            atomic_store(&prog->on_attached, 0);
            sq_detach(&a);
        }
    }
    /* reset repairs whatever the counters say; the ring then works */
    at(SQO_POST);
    if (sq_reset(q) != 0 || sq_count(q) != 0 || sq_peek(q) != 0) {
        fprintf(stderr, "post: sq_reset did not empty the queue\n");
        return FX_POST;
    }
    uint64_t v = 1 + rng_below(s, 1u << 30);
    if (sq_enqueue(q, v) != 0 || sq_count(q) != 1 || sq_dequeue(q) != v || sq_count(q) != 0) {
        fprintf(stderr, "post: a value does not go through the reset queue\n");
        return FX_POST;
    }
    return FX_OK;
}

/* ---- pool ------------------------------------------------------------------- */

enum pool_op { PO_ALLOC, PO_RETAIN, PO_RELEASE, PO_ADOPT, PO_BLOCK_OF, PO_DATA, PO_AGE_OUT,
               PO_FLUSH, PO_INVALIDATE, PO_RECLAIM_DEAD, PO_RECLAIM_SLOT, PO_STATS,
               PO_HELD, PO_N, PO_ATTACH = PO_N, PO_POST, PO_SCRIBBLE };

static const char *pool_op_name(int op)
{
    static const char *n[] = {
        "pool_alloc", "pool_retain", "pool_release", "pool_adopt", "pool_block_of",
        "pool_data", "pool_age_out", "pool_flush", "pool_invalidate", "pool_reclaim_dead",
        "pool_reclaim_slot", "pool_stats", "pool_held_by_self", "pool_attach/detach",
        "post-repair checks", "scribbling",
    };
    return op >= 0 && op < (int)(sizeof(n) / sizeof(n[0])) ? n[op] : "?";
}

struct pool_round {
    uint64_t rng;
    uint64_t handles[64];
    int nh;
};

static uint64_t pick_handle(struct pool_round *r, const struct pool *p)
{
    uint64_t *s = &r->rng;
    if (r->nh && rng_below(s, 4))
        return r->handles[rng_below(s, (uint64_t)r->nh)];
    if (rng_below(s, 2))
        return (rng_next(s) & 0xffffffff00000000ull) | (1 + rng_below(s, p->block_count + 2));
    return rng_next(s);
}

static bool in_pool(const struct pool *p, const void *ptr, size_t len)
{
    const uint8_t *b = ptr;
    return b >= p->data && b + len <= p->data + (size_t)p->block_count * p->block_size;
}

static int pool_run_op(struct pool *p, int op, struct pool_round *r)
{
    uint64_t *s = &r->rng;
    at(op);
    switch (op) {
    case PO_ALLOC:
        for (int i = 0, n = 1 + (int)rng_below(s, 4); i < n; i++) {
            uint64_t h, size = rng_below(s, 8) ? 1 + rng_below(s, p->block_size) : rng_next(s);
            if (pool_alloc(p, size, &h) == 0 && r->nh < 64)
                r->handles[r->nh++] = h;
        }
        break;
    case PO_RETAIN: (void)pool_retain(p, pick_handle(r, p), rng_below(s, 2)); break;
    case PO_RELEASE: (void)pool_release(p, pick_handle(r, p), rng_below(s, 2)); break;
    case PO_ADOPT: (void)pool_adopt(p, pick_handle(r, p)); break;
    case PO_BLOCK_OF: {
        struct pool_block *b = pool_block_of(p, pick_handle(r, p));
        if (b && (b < p->blocks || b >= p->blocks + p->block_count))
            return FX_POOL_PTR;
        break;
    }
    case PO_DATA: {
        uint8_t *d = pool_data(p, pick_handle(r, p));
        if (d) {
            if (!in_pool(p, d, p->block_size)) {
                fprintf(stderr, "pool_data %p outside the data area\n", (void *)d);
                return FX_POOL_PTR;
            }
            memset(d, 0xa5, p->block_size);
        }
        break;
    }
    case PO_AGE_OUT: (void)pool_age_out(p, mono_ns() + rng_below(s, 2000000000ull)); break;
    case PO_FLUSH: (void)pool_flush(p); break;
    case PO_INVALIDATE:
        if (rng_below(s, 8) == 0)
            (void)pool_invalidate(p);
        break;
    case PO_RECLAIM_DEAD: (void)pool_reclaim_dead(p); break;
    case PO_RECLAIM_SLOT:
        /* not our own slot: that would release what we hold */
        if (rng_below(s, 2)) {
            uint32_t slot = (uint32_t)rng_below(s, POOL_MAX_CLIENTS + 4);
            if (slot != p->slot)
                (void)pool_reclaim_slot(p, slot);
        }
        break;
    case PO_STATS: {
        struct pool_stats st;
        (void)pool_stats(p, &st);
        break;
    }
    case PO_HELD: (void)pool_held_by_self(p); break;
    }
    return FX_OK;
}

static void pool_scribble(struct pool *p, int cat, uint64_t *s)
{
    at(PO_SCRIBBLE);
    uint8_t *base = (uint8_t *)p->sh;
    struct pool_shared *sh = p->sh;
    int n = 1 + (int)rng_below(s, 4);
    for (int k = 0; k < n; k++) {
        switch (cat) {
        case 0:
            smear(s, base, 0, offsetof(struct pool_shared, lock));
            break;
        case 1: {
            switch (rng_below(s, 5)) {
            case 0: smear(s, base, offsetof(struct pool_shared, lock), sizeof(*sh)); break;
            case 1: {
                uint32_t *f[] = {&sh->warm_head, &sh->warm_tail, &sh->cold_head,
                                 &sh->warm_count, &sh->cold_count, &sh->used_count};
                uint32_t *x = f[rng_below(s, 6)];
                plant(s, x, 4, *x, p->block_count);
                break;
            }
            case 2: { /* client table */
                struct pool_client *c = &p->clients[rng_below(s, POOL_MAX_CLIENTS)];
                uint32_t v;
                switch (rng_below(s, 4)) {
                case 0: v = 0; break;
                case 1: v = dead_tid(s); break;
                case 2: v = (uint32_t)rng_next(s); break;
                default: v = (uint32_t)getpid() ^ 1; break;
                }
                atomic_store(&c->pid, v);
                break;
            }
            default: { /* holdings */
                uint32_t slot = (uint32_t)rng_below(s, POOL_MAX_CLIENTS);
                uint32_t blk = (uint32_t)rng_below(s, p->block_count);
                _Atomic uint32_t *h = &p->holdings[(size_t)slot * p->block_count + blk];
                atomic_store(h, rng_below(s, 2) ? (uint32_t)rng_below(s, 4)
                                                : (uint32_t)rng_next(s));
                break;
            }
            }
            break;
        }
        default: { /* block descriptors */
            struct pool_block *b = &p->blocks[rng_below(s, p->block_count)];
            switch (rng_below(s, 7)) {
            case 0: rng_bytes(s, b, sizeof(*b)); break;
            case 1: plant(s, (void *)&b->ref, 8, atomic_load(&b->ref), 3); break;
            case 2: plant(s, &b->state, 4, b->state, 4); break;
            case 3: plant(s, &b->prev, 4, b->prev, p->block_count); break;
            case 4: plant(s, &b->next, 4, b->next, p->block_count); break;
            case 5: b->reserved0 = rng_below(s, 2) ? dead_tid(s) : (uint32_t)rng_next(s); break;
            default: plant(s, &b->freed_at_ns, 8, b->freed_at_ns, 1000000000); break;
            }
            break;
        }
        }
    }
    fix_lock(&sh->lock, s);
}

static int pool_post(struct pool *p, struct pool_round *r)
{
    at(PO_POST);
    (void)pool_reclaim_dead(p); /* the periodic check: verifies and rebuilds the lists */
    struct pool_stats st;
    if (pool_stats(p, &st) != 0)
        return FX_POST;
    bool aging = false;
    for (uint32_t i = 0; i < p->block_count; i++)
        aging |= atomic_load((_Atomic uint32_t *)&p->blocks[i].state) == POOL_BLOCK_AGING;
    if (aging) /* a scribbled ager tid may name a live task: its block stays out */
        return FX_OK;
    if ((uint64_t)st.used + st.warm + st.cold != p->block_count) {
        fprintf(stderr, "post: used %u + warm %u + cold %u != %u blocks\n", st.used, st.warm,
                st.cold, p->block_count);
        return FX_POST;
    }
    /* every free block can be allocated, once */
    uint32_t free_blocks = st.warm + st.cold, got = 0;
    uint64_t *h = calloc(p->block_count + 1, sizeof(*h));
    uint8_t *seen = calloc(p->block_count, 1);
    if (!h || !seen)
        return FX_SETUP;
    for (;;) {
        int rc = pool_alloc(p, 1 + rng_below(&r->rng, p->block_size), &h[got]);
        if (rc == MBQ_POOL_ERR_ALLOCATION_FAILED)
            break;
        if (rc != 0 || got >= p->block_count) {
            fprintf(stderr, "post: pool_alloc #%u: %d\n", got, rc);
            return FX_POST;
        }
        uint32_t idx = (uint32_t)h[got] - 1;
        if (idx >= p->block_count || seen[idx]++ || !in_pool(p, pool_data(p, h[got]), 1)) {
            fprintf(stderr, "post: pool_alloc handed out block %u twice\n", idx);
            return FX_POST;
        }
        got++;
    }
    if (got != free_blocks) {
        fprintf(stderr, "post: %u blocks allocatable, stats said %u free\n", got, free_blocks);
        return FX_POST;
    }
    for (uint32_t i = 0; i < got; i++)
        if (pool_release(p, h[i], true) != 0) {
            fprintf(stderr, "post: pool_release of a fresh block failed\n");
            return FX_POST;
        }
    struct pool_stats st2;
    if (pool_stats(p, &st2) != 0 || st2.used != st.used) {
        fprintf(stderr, "post: used %u after alloc+release, %u before\n", st2.used, st.used);
        return FX_POST;
    }
    free(h);
    free(seen);
    return FX_OK;
}

static int pool_child(struct pool *p, int cat, struct pool_round *r)
{
    int first_own = r->nh; /* handles from here on are this process's */
    pool_scribble(p, cat, &r->rng);
    int ops[PO_N];
    for (int i = 0; i < PO_N; i++)
        ops[i] = i;
    for (int pass = 0; pass < 2; pass++) {
        shuffle(ops, PO_N, &r->rng);
        for (int i = 0; i < PO_N; i++) {
            int rc = pool_run_op(p, ops[i], r);
            if (rc)
                return rc;
        }
        at(PO_ATTACH);
        struct pool a;
        if (pool_attach(p->seg.fd, &a) == 0) {
            atomic_store(&prog->on_attached, 1);
            shuffle(ops, PO_N, &r->rng);
            struct pool_round r2 = {.rng = rng_next(&r->rng)};
            for (int i = 0; i < PO_N; i++) {
                int rc = pool_run_op(&a, ops[i], &r2);
                if (rc)
                    return rc;
            }
            at(PO_ATTACH);
            atomic_store(&prog->on_attached, 0);
            pool_detach(&a);
        }
    }
    /* give back what this process allocated (the parent's slot holds it) */
    at(PO_RELEASE);
    for (int i = first_own; i < r->nh; i++)
        (void)pool_release(p, r->handles[i], true);
    /* The post checks work on an attach of our own: the inherited struct
     * names the parent's client slot. */
    struct pool a;
    at(PO_ATTACH);
    if (pool_attach(p->seg.fd, &a) != 0)
        return FX_OK; /* a scribbled header may make the segment unattachable */
    struct pool_round r3 = {.rng = rng_next(&r->rng)};
    int rc = pool_post(&a, &r3);
    pool_detach(&a);
    return rc;
}

static bool pool_setup(struct pool *p, struct pool_round *r)
{
    uint64_t *s = &r->rng;
    struct pool_params pp = {.block_size = 4096u * (1 + rng_below(s, 2)),
                             .block_count = 1 + (uint32_t)rng_below(s, 24),
                             .age_out_ns = rng_below(s, 2) ? 1 : 0,
                             .prefault = rng_below(s, 2) != 0};
    if (pool_create(&pp, p) != 0)
        return false;
    uint32_t n = (uint32_t)rng_below(s, pp.block_count + 1);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t h;
        if (pool_alloc(p, 1 + rng_below(s, p->block_size), &h) != 0)
            return false;
        r->handles[r->nh++] = h;
        if (rng_below(s, 3) == 0)
            pool_retain(p, h, rng_below(s, 2));
    }
    /* free some again so that the warm list has a history */
    for (int i = 0; i < r->nh; i++)
        if (rng_below(s, 3) == 0)
            pool_release(p, r->handles[i], true);
    if (rng_below(s, 4) == 0)
        pool_age_out(p, mono_ns() + 1000000000ull);
    return true;
}

/* ---- the rounds ------------------------------------------------------------- */

enum kind { KIND_BQ, KIND_SQ, KIND_POOL };
static const char *kind_name[] = {"buffer queue", "simple queue", "pool"};
static const char *cat_name[] = {"header", "control fields", "entries/descriptors"};

static const char *op_name(enum kind k, int op)
{
    return k == KIND_BQ ? bq_op_name(op) : k == KIND_SQ ? sq_op_name(op) : pool_op_name(op);
}

static uint64_t round_seed(uint64_t seed, enum kind k, int round)
{
    uint64_t s = seed ^ ((uint64_t)k << 56) ^ (uint64_t)round * 0x9e3779b97f4a7c15ull;
    return rng_next(&s);
}

/* Distinct failures, each reported once. */
struct failure {
    int kind, how, detail, op;
    int count;
};
static struct failure failures[64];
static int nfailures;

static void note_failure(enum kind k, int how, int detail, int op, int round, int cat,
                         uint64_t seed, bool attached)
{
    for (int i = 0; i < nfailures; i++)
        if (failures[i].kind == (int)k && failures[i].how == how &&
            failures[i].detail == detail && failures[i].op == op) {
            failures[i].count++;
            return;
        }
    if (nfailures < 64)
        failures[nfailures++] = (struct failure){k, how, detail, op, 1};
    const char *what = how == 0 ? "exit" : "signal";
    char buf[96];
    if (how == 0)
        snprintf(buf, sizeof(buf), "exit %d (%s)", detail, fail_name(detail));
    else if (detail == SIGALRM)
        snprintf(buf, sizeof(buf), "HANG (no exit within %d s)", CHILD_ALARM_S);
    else
        snprintf(buf, sizeof(buf), "%s %d (%s)", what, detail, strsignal(detail));
    fprintf(stderr,
            "%s: %s in %s%s; round %d, scribbled %s; replay: MBQ_TEST_SEED=%llu\n",
            kind_name[k], buf, op_name(k, op), attached ? " (on a fresh attach)" : "", round,
            cat_name[cat], (unsigned long long)seed);
}

static void run_kind(enum kind k)
{
    if (!prog) {
        void *m = mmap(NULL, sizeof(*prog), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                       -1, 0);
        REQUIRE(m != MAP_FAILED);
        prog = m;
    }
    uint64_t seed = test_seed();
    printf("# seed %llu\n", (unsigned long long)seed);
    fflush(stdout);
    int before = nfailures, done = 0;
    uint64_t t0 = mono_ns();
    bool hung = false;
    const char *only = getenv("MBQ_TEST_ROUND"); /* replay one round */
    for (int round = 0; round < ROUNDS && !hung; round++) {
        if (only && *only && atoi(only) != round)
            continue;
        if (mono_ns() - t0 > KIND_BUDGET_NS) {
            printf("# time budget spent after %d rounds\n", round);
            break;
        }
        int cat = round % 3;
        uint64_t rs = round_seed(seed, k, round);
        struct bq q;
        struct sq sq;
        struct pool p;
        struct bq_round br = {.rng = rs, .efd = -1};
        struct pool_round pr = {.rng = rs};
        bool ok;
        switch (k) {
        case KIND_BQ: ok = bq_setup(&q, &br); break;
        case KIND_SQ: {
            uint64_t s = rs;
            int32_t cap = 1 + (int32_t)rng_below(&s, 40);
            ok = sq_create(cap, &sq) == 0;
            for (int32_t i = 0, n = ok ? (int32_t)rng_below(&s, 2u * cap) : 0; i < n; i++) {
                (void)sq_enqueue(&sq, 1 + rng_below(&s, 100));
                if (rng_below(&s, 2))
                    (void)sq_dequeue(&sq);
            }
            br.rng = s;
            break;
        }
        default: ok = pool_setup(&p, &pr); break;
        }
        CHECK(ok);
        if (!ok)
            return;
        atomic_store(&prog->op, -1);
        atomic_store(&prog->on_attached, 0);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            alarm(CHILD_ALARM_S);
            int rc = k == KIND_BQ   ? bq_child(&q, cat, &br)
                     : k == KIND_SQ ? sq_child(&sq, cat, &br.rng)
                                    : pool_child(&p, cat, &pr);
            _exit(rc);
        }
        int status = reap(pid, (CHILD_ALARM_S + 10) * 1000);
        int op = atomic_load(&prog->op);
        bool attached = atomic_load(&prog->on_attached) != 0;
        if (WIFSIGNALED(status)) {
            note_failure(k, 1, WTERMSIG(status), op, round, cat, seed, attached);
            hung |= WTERMSIG(status) == SIGALRM;
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            note_failure(k, 0, WIFEXITED(status) ? WEXITSTATUS(status) : -1, op, round, cat,
                         seed, attached);
        }
        done++;
        switch (k) {
        case KIND_BQ:
            if (br.efd >= 0)
                close(br.efd);
            bq_detach(&q);
            break;
        case KIND_SQ: sq_detach(&sq); break;
        default: pool_detach(&p); break;
        }
    }
    if (hung)
        fprintf(stderr, "%s: stopped the rounds at the first hang\n", kind_name[k]);
    int total = 0;
    for (int i = before; i < nfailures; i++) {
        total += failures[i].count;
        fprintf(stderr, "  %s: %d round(s) failed in %s\n", kind_name[k], failures[i].count,
                op_name(k, failures[i].op));
    }
    CHECK_EQ(total, 0);
    printf("# %d rounds in %.1f s, %d failed\n", done, (double)(mono_ns() - t0) / 1e9, total);
}

static void test_scribble_buffer_queue(void)
{
    run_kind(KIND_BQ);
}

static void test_scribble_simple_queue(void)
{
    run_kind(KIND_SQ);
}

static void test_scribble_pool(void)
{
    run_kind(KIND_POOL);
}

/* ---- the defects the fuzzing found, pinned down ------------------------------ */

#define PIN_BOUND_MS 3000 /* each of these takes microseconds when correct */

/* A sorted queue of 3 entries whose tail counter was pushed 2^40 ahead; the
 * queue is not marked for repair, as after a scribble or a torn write. */
static bool pin_setup(struct bq *q)
{
    struct bq_params p = {.capacity = 16, .order = BQ_ORDER_PTS};
    if (bq_create(&p, q) != 0)
        return false;
    for (uint64_t h = 1; h <= 3; h++) {
        struct bq_entry e = {.handle = h, .pts = mbq_time_make((int64_t)h, 1),
                             .duration = mbq_time_make(1, 1), .size = 10};
        if (bq_enqueue(q, &e) != 0)
            return false;
    }
    return true;
}

static void corrupt_tail(struct bq *q)
{
    atomic_fetch_add(&q->sh->tail.index, 1ull << 40);
}

/* Runs fn(q) in a child bounded to PIN_BOUND_MS; true if it exited 0. */
static bool pin_run(struct bq *q, int (*fn)(struct bq *q), const char *what)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(CHILD_ALARM_S);
        _exit(fn(q));
    }
    int status = reap(pid, PIN_BOUND_MS);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        fprintf(stderr, "%s: HANG (no return within %d ms)\n", what, PIN_BOUND_MS);
    else if (WIFSIGNALED(status))
        fprintf(stderr, "%s: signal %d\n", what, WTERMSIG(status));
    else
        fprintf(stderr, "%s: exit %d (%s)\n", what, WEXITSTATUS(status),
                fail_name(WEXITSTATUS(status)));
    return false;
}

static int pin_for_each(struct bq *q)
{
    corrupt_tail(q);
    struct count_ctx c = {.limit = q->capacity};
    (void)bq_for_each(q, count_cb, &c);
    return c.n > c.limit ? FX_FOREACH_OVERRUN : FX_OK;
}

static int pin_reset(struct bq *q)
{
    corrupt_tail(q);
    reset_limit = q->capacity;
    reset_seen = 0;
    (void)bq_reset(q, reset_cb, NULL);
    return FX_OK;
}

static int pin_min_pts(struct bq *q)
{
    corrupt_tail(q);
    (void)bq_min_pts(q);
    (void)bq_min_dts(q);
    (void)bq_max_pts(q);
    (void)bq_end_pts(q);
    return FX_OK;
}

static int pin_install_pts_trigger(struct bq *q)
{
    corrupt_tail(q);
    uint64_t tok;
    (void)bq_install_trigger(q, BQ_TRIGGER_MIN_PTS_CHANGES, MBQ_TIME_INVALID, 0, -1, &tok);
    return FX_OK;
}

static int pin_eod_with_pts_trigger(struct bq *q)
{
    uint64_t tok;
    if (bq_install_trigger(q, BQ_TRIGGER_MAX_PTS_CHANGES, MBQ_TIME_INVALID, 0, -1, &tok) != 0)
        return FX_SETUP;
    corrupt_tail(q);
    (void)bq_mark_end_of_data(q);
    (void)bq_note_data_ready(q);
    return FX_OK;
}

/* bq_for_each, bq_reset, the min/max/end scans and the PTS-change triggers
 * walk head..tail under the queue lock without checking the range; with a
 * corrupt tail they walk ~2^40 entries (wrapping the ring) instead of
 * repairing. */
static void test_pin_unchecked_walks(void)
{
    struct {
        int (*fn)(struct bq *q);
        const char *name;
    } pins[] = {
        {pin_for_each, "bq_for_each with a corrupt tail"},
        {pin_reset, "bq_reset with a corrupt tail"},
        {pin_min_pts, "bq_min_pts/min_dts/max_pts/end_pts with a corrupt tail"},
        {pin_install_pts_trigger, "bq_install_trigger(MIN_PTS_CHANGES) with a corrupt tail"},
        {pin_eod_with_pts_trigger, "bq_mark_end_of_data with a PTS trigger and a corrupt tail"},
    };
    for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
        struct bq q;
        REQUIRE(pin_setup(&q));
        CHECK(pin_run(&q, pins[i].fn, pins[i].name));
        /* afterwards (repaired by the operation or by bq_check), the
         * entries that cannot be located are dropped and the queue works */
        int rc = bq_check(&q);
        CHECK(rc == 0 || rc == -EUCLEAN);
        CHECK_EQ(bq_check(&q), 0);
        CHECK_EQ(bq_count(&q), 0);
        CHECK_EQ(bq_reset(&q, NULL, NULL), 0); /* one of them marked end of data */
        struct bq_entry e = {.handle = 9, .pts = mbq_time_make(9, 1)}, o;
        CHECK_EQ(bq_enqueue(&q, &e), 0);
        CHECK_EQ(bq_dequeue(&q, &o), 0);
        CHECK_EQ(o.handle, 9);
        bq_detach(&q);
    }
}

/* A side's sequence counter left odd (a scribble; or a writer that died
 * mid-update without its lock being recovered, e.g. the counter torn by a
 * peer): the lock-free readers give up and fall back to the lock, which
 * bq.h says repairs — but nothing marks the queue for repair, so every
 * bq_stats() fails with -EUCLEAN and bq_total_size()/bq_duration() report 0
 * for a queue holding 3 entries, until someone calls bq_check(). */
static void test_pin_stuck_side_seq(void)
{
    struct bq q;
    REQUIRE(pin_setup(&q));
    atomic_store(&q.sh->head.seq, 1);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(bq_total_size(&q), 30);
    CHECK_EQ(mbq_time_compare(bq_duration(&q), mbq_time_make(3, 1)), 0);
    CHECK_EQ(bq_count(&q), 3);
    bq_detach(&q);
}

/* A head counter planted just below 2^64 with a small tail: tail - head
 * wraps to a count within the capacity, so bq_range_ok() accepts it, and
 * bq_count/bq_dequeue/bq_stats see 3 entries — but every walk in bq.c is
 * `for (i = head; i < tail; i++)`, which sees none. So bq_for_each visits
 * nothing, bq_reset() does not empty the queue, the repair rebuilds the
 * sums as 0 and sorts nothing, and bq_check() calls the result consistent. */
static void test_pin_wrapped_head(void)
{
    struct bq q;
    REQUIRE(pin_setup(&q)); /* head 0, tail 3, 3 entries of size 10 */
    struct bq_shared *sh = q.sh;
    /* the same 3 live slots, with head 2^64 - 2 and tail 1 */
    struct bq_slot e0 = q.slots[0], e1 = q.slots[1], e2 = q.slots[2];
    q.slots[(UINT64_MAX - 1) & q.mask] = e0;
    q.slots[UINT64_MAX & q.mask] = e1;
    q.slots[0] = e2;
    atomic_store(&sh->head.index, UINT64_MAX - 1);
    atomic_store(&sh->tail.index, 1);
    int rc = bq_check(&q);
    CHECK(rc == 0 || rc == -EUCLEAN);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    struct bq_walk w = {.order = q.order, .limit = q.capacity, .dur = MBQ_TIME_ZERO,
                        .sorted = true};
    (void)bq_for_each(&q, walk_cb, &w);
    CHECK_EQ(w.n, st.count);        /* bq_for_each sees what bq_stats counts */
    CHECK_EQ(st.total_size, w.bytes);
    CHECK_EQ(bq_count(&q), (int64_t)st.count);
    CHECK_EQ(bq_reset(&q, NULL, NULL), 0);
    CHECK_EQ(bq_count(&q), 0);      /* reset empties the queue */
    CHECK(bq_is_empty(&q));
    bq_detach(&q);
}

/* A tail counter scribbled backwards, below head (the fuzzer's case: a
 * queue of 12 with head 10 and tail 19, tail planted to 2). The repair
 * dropped the contents with head = tail = 2, moving head back; a consumer
 * whose cached tail was 10 (its last look, as it emptied the queue before
 * the 9 entries went in) then took that cache for entries in [head, 10):
 * with head back within a capacity of it, a dequeue handed out a stale
 * entry (one dequeued before, or one the repair dropped) from a queue
 * holding none, or one from behind the entry enqueued, and left head past
 * tail (count -1).
 * The consumer here is a second attachment, as another process would be. */
static void test_pin_tail_scribbled_back(void)
{
    for (uint32_t order = BQ_ORDER_FIFO; order <= BQ_ORDER_DTS; order++) {
        struct bq p, c;
        struct bq_params par = {.capacity = 12, .order = order};
        REQUIRE(bq_create(&par, &p) == 0);
        REQUIRE(bq_attach(p.seg.fd, &c) == 0);
        uint64_t h = 0;
        struct bq_entry e, o;
        for (int i = 0; i < 10; i++) { /* head and tail 10; c's cached tail 10 */
            h++;
            e = (struct bq_entry){.handle = h, .pts = mbq_time_make((int64_t)h, 1)};
            e.dts = e.pts;
            REQUIRE(bq_enqueue(&p, &e) == 0);
            REQUIRE(bq_dequeue(&c, &o) == 0 && o.handle == h);
        }
        for (int i = 0; i < 9; i++) { /* tail 19 */
            h++;
            e = (struct bq_entry){.handle = h, .pts = mbq_time_make((int64_t)h, 1)};
            e.dts = e.pts;
            REQUIRE(bq_enqueue(&p, &e) == 0);
        }
        REQUIRE(atomic_load(&p.sh->head.index) == 10 && atomic_load(&p.sh->tail.index) == 19);
        atomic_store(&p.sh->tail.index, 2);
        CHECK_EQ(bq_check(&p), -EUCLEAN); /* the contents cannot be located */
        CHECK_EQ(bq_check(&p), 0);
        CHECK_EQ(bq_count(&p), 0);
        CHECK_EQ(bq_count(&c), 0);
        /* entries go through one at a time, through both views, well past
         * the consumer's stale cache */
        for (int i = 0; i < 3 * 12; i++) {
            e = (struct bq_entry){.handle = 100 + (uint64_t)i,
                                  .pts = mbq_time_make(100 + i, 1)};
            e.dts = e.pts;
            o = (struct bq_entry){0};
            CHECK_EQ(bq_enqueue(&p, &e), 0);
            CHECK_EQ(bq_count(&c), 1);
            CHECK_EQ(bq_dequeue(&c, &o), 0);
            CHECK_EQ(o.handle, e.handle);
            CHECK_EQ(bq_count(&p), 0);
            /* and the queue is empty: nothing stale behind the entry */
            CHECK_EQ(bq_dequeue(&c, &o), -EAGAIN);
            CHECK_EQ(bq_count(&p), 0);
            if (o.handle != e.handle)
                break;
        }
        CHECK_EQ(bq_check(&p), 0);
        bq_detach(&c);
        bq_detach(&p);
    }
}

CHECK_MAIN(CASE(test_scribble_buffer_queue), CASE(test_scribble_simple_queue),
           CASE(test_scribble_pool), CASE(test_pin_unchecked_walks),
           CASE(test_pin_stuck_side_seq), CASE(test_pin_wrapped_head),
           CASE(test_pin_tail_scribbled_back))
