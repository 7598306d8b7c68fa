/* Buffer queues survive processes that die (kill -9) at the worst moments.
 *
 * A "holder" child attaches to the queue, puts it in the state a process
 * would be in at some point of an operation (a lock taken, half a sorted
 * insertion done...), tells the parent through a pipe and blocks reading
 * another pipe; the parent kill -9s it, reaps it (so its tid is dead) and
 * then checks that it, and a second child, can use the queue within a
 * bounded time, that the repair ran, and that the contents are intact.
 * Where the state is the library's own (a settle cut between two moves),
 * the child runs the library and dies at a page it made inaccessible.
 *
 * Waits are bounded everywhere: children wait for the parent with poll()
 * and an alarm() as last resort; the parent reaps with a pidfd and a
 * deadline; a watchdog alarm in the parent turns a hang inside the library
 * into a failure of the case that hung.
 *
 * The seed of the random-kill case is printed; MBQ_TEST_SEED=<n> replays. */
#include "bq_slots.h"
#include "check.h"

#include "bq_layout.h"
#include "futex.h"
#include "pool_layout.h"

#include <mbq/status.h>

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define BOUND_NS 2000000000ull /* a survivor must get through within 2 s */
#define WATCHDOG_S 50          /* a case that takes longer than this hung */

enum {
    OUT_OK = 0,
    OUT_ATTACH = 10,
    OUT_OP = 11,
    OUT_WRONG = 12,
    OUT_SLOW = 13,
    OUT_POOL = 14,
};

/* ---- helpers -------------------------------------------------------------- */

static const char *current_case = "?";

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: a case hung inside the library: ";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    w = write(2, current_case, strlen(current_case));
    w = write(2, "\n", 1);
    (void)w;
    _exit(3);
}

static void watchdog_arm(const char *name)
{
    current_case = name;
    signal(SIGALRM, watchdog);
    alarm(WATCHDOG_S);
}

static void watchdog_disarm(void)
{
    alarm(0);
}

static uint64_t test_seed(void)
{
    const char *s = getenv("MBQ_TEST_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    return mono_ns() ^ ((uint64_t)getpid() << 32);
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
                close(pfd);
                fprintf(stderr, "child %d: no exit after %d ms, killing it\n", (int)pid,
                        timeout_ms);
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                return -1;
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

static bool exited_ok(const char *who, int status)
{
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == OUT_OK)
        return true;
    if (status == -1)
        fprintf(stderr, "%s: timed out\n", who);
    else if (WIFEXITED(status))
        fprintf(stderr, "%s: exit %d\n", who, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        fprintf(stderr, "%s: killed by signal %d\n", who, WTERMSIG(status));
    return false;
}

static struct bq_entry mk_entry(uint64_t handle, int64_t pts, uint64_t size, int64_t dur)
{
    struct bq_entry e;
    memset(&e, 0, sizeof(e));
    e.handle = handle;
    e.pts = mbq_time_make(pts, 1000);
    e.dts = e.pts;
    e.duration = mbq_time_make(dur, 1000);
    e.size = size;
    e.pool_id = 1;
    return e;
}

static int create_queue(uint32_t capacity, uint32_t order, uint32_t policy, struct bq *q)
{
    struct bq_params p = {.capacity = capacity, .order = order, .full_policy = policy};
    return bq_create(&p, q);
}

/* A holder: a child that does something to the queue, reports through
 * `ready`, then blocks on `hold` until the parent kills it. */
struct holder {
    pid_t pid;
    int ready_r, hold_w;
};

typedef void (*holder_fn)(struct bq *q, void *arg);

static bool holder_start(struct holder *h, int qfd, holder_fn fn, void *arg)
{
    int ready[2], hold[2];
    if (pipe(ready) < 0 || pipe(hold) < 0)
        return false;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(60);
        close(ready[0]);
        close(hold[1]);
        struct bq q;
        if (bq_attach(qfd, &q) != 0)
            _exit(OUT_ATTACH);
        fn(&q, arg);
        char c = 1;
        if (write(ready[1], &c, 1) != 1)
            _exit(OUT_OP);
        struct pollfd p = {.fd = hold[0], .events = POLLIN};
        poll(&p, 1, 60000); /* the parent kills us long before */
        _exit(OUT_OK);
    }
    close(ready[1]);
    close(hold[0]);
    *h = (struct holder){.pid = pid, .ready_r = ready[0], .hold_w = hold[1]};
    return true;
}

/* Waits for the holder's signal, then kill -9 and reap it. */
static bool holder_kill(struct holder *h)
{
    struct pollfd p = {.fd = h->ready_r, .events = POLLIN};
    char c = 0;
    bool ready = poll(&p, 1, 10000) == 1 && read(h->ready_r, &c, 1) == 1;
    kill(h->pid, SIGKILL);
    int status = reap(h->pid, 10000);
    close(h->ready_r);
    close(h->hold_w);
    if (!ready)
        fprintf(stderr, "holder never got ready (status %#x)\n", status);
    return ready && status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

/* Runs fn in a child that attaches the queue; returns its exit status. */
struct child_op {
    int qfd;
    int (*fn)(struct bq *q, void *arg);
    void *arg;
};

static int run_child(const struct child_op *op, int timeout_ms)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(60);
        struct bq q;
        if (bq_attach(op->qfd, &q) != 0)
            _exit(OUT_ATTACH);
        _exit(op->fn(&q, op->arg));
    }
    return reap(pid, timeout_ms);
}

/* Sums of the live entries, and their order, seen through bq_for_each. */
struct walk {
    uint32_t order;
    uint64_t n, bytes;
    mbq_time dur;
    bool sorted, fifo_ok;
    mbq_time last_key;
    uint64_t last_seq, last_handle;
    uint64_t handles[64];
};

static int walk_cb(struct bq_entry *e, void *ctx)
{
    struct walk *w = ctx;
    if (w->n < 64)
        w->handles[w->n] = e->handle;
    mbq_time key = w->order == BQ_ORDER_DTS ? e->dts : e->pts;
    if (w->n > 0) {
        int c = mbq_time_compare(w->last_key, key);
        if (w->order != BQ_ORDER_FIFO && (c > 0 || (c == 0 && w->last_seq >= e->seq)))
            w->sorted = false;
        if (e->seq <= w->last_seq && w->order == BQ_ORDER_FIFO)
            w->fifo_ok = false;
    }
    w->last_key = key;
    w->last_seq = e->seq;
    w->last_handle = e->handle;
    w->bytes += e->size;
    if (mbq_time_is_numeric(e->duration))
        w->dur = mbq_time_add(w->dur, e->duration);
    w->n++;
    return 0;
}

static int walk(struct bq *q, struct walk *w)
{
    *w = (struct walk){.order = q->order, .dur = MBQ_TIME_ZERO, .sorted = true, .fifo_ok = true};
    return bq_for_each(q, walk_cb, w);
}

/* ---- 1. a holder of the tail lock, the head lock, or both, dies --------------- */

enum lock_mode { HOLD_TAIL = 1, HOLD_HEAD = 2, HOLD_BOTH = 3 };

static void hold_locks(struct bq *q, void *arg)
{
    int mode = *(int *)arg;
    if (mode & HOLD_TAIL)
        slock_lock(&q->sh->tail.lock.lock);
    if (mode & HOLD_HEAD)
        slock_lock(&q->sh->head.lock.lock);
}

/* The second child: dequeues the head, which must be handle `want`, then
 * enqueues handle `put`; both within BOUND_NS. */
struct second_args {
    uint64_t want, put;
};

static int second_child(struct bq *q, void *arg)
{
    const struct second_args *a = arg;
    uint64_t t0 = mono_ns();
    struct bq_entry e;
    int r = bq_dequeue_wait(q, &e, (int64_t)BOUND_NS);
    if (r != 0) {
        fprintf(stderr, "second child: dequeue: %d\n", r);
        return OUT_OP;
    }
    if (e.handle != a->want)
        return OUT_WRONG;
    struct bq_entry ne = mk_entry(a->put, (int64_t)a->put * 10, a->put, 33);
    if (bq_enqueue(q, &ne) != 0)
        return OUT_OP;
    if (mono_ns() - t0 > BOUND_NS)
        return OUT_SLOW;
    return OUT_OK;
}

/* A child that is already inside bq_enqueue (spinning or asleep on the
 * lock) when the holder dies must get through too. */
static int blocked_enqueuer(struct bq *q, void *arg)
{
    int fd = *(int *)arg;
    char c = 1;
    if (write(fd, &c, 1) != 1)
        return OUT_OP;
    struct bq_entry e = mk_entry(77, 770, 77, 33);
    int r;
    /* a live holder that does not let go fails the call after the wait
     * limit (-EBUSY, nothing done): try again, as an application would */
    while ((r = bq_enqueue(q, &e)) == -EBUSY)
        ;
    return r == 0 ? OUT_OK : OUT_OP;
}

static void run_lock_holder_death(enum lock_mode mode, const char *name)
{
    watchdog_arm(name);
    struct bq q;
    REQUIRE(create_queue(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    for (uint64_t h = 1; h <= 3; h++) {
        struct bq_entry e = mk_entry(h, (int64_t)h * 10, h, 33);
        REQUIRE(bq_enqueue(&q, &e) == 0);
    }
    struct holder hd;
    int m = mode;
    REQUIRE(holder_start(&hd, q.seg.fd, hold_locks, &m));

    /* A second process starts an enqueue while the lock is held. */
    int bp[2];
    REQUIRE(pipe(bp) == 0);
    struct pollfd pfd = {.fd = hd.ready_r, .events = POLLIN};
    REQUIRE(poll(&pfd, 1, 10000) == 1); /* the holder has the lock(s) */
    fflush(NULL);
    pid_t blocked = fork();
    REQUIRE(blocked >= 0);
    if (blocked == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(60);
        close(bp[0]);
        struct bq cq;
        if (bq_attach(q.seg.fd, &cq) != 0)
            _exit(OUT_ATTACH);
        _exit(blocked_enqueuer(&cq, &bp[1]));
    }
    close(bp[1]);
    pfd = (struct pollfd){.fd = bp[0], .events = POLLIN};
    CHECK(poll(&pfd, 1, 10000) == 1); /* it is about to call bq_enqueue */
    close(bp[0]);

    CHECK(holder_kill(&hd));
    uint64_t t0 = mono_ns();
    /* the blocked child got through once the holder was gone */
    CHECK(exited_ok("blocked enqueuer", reap(blocked, (int)(BOUND_NS / 1000000))));

    /* the parent: enqueue 4, within the bound */
    struct bq_entry e = mk_entry(4, 40, 4, 33);
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    CHECK(mono_ns() - t0 < BOUND_NS);
    /* a second child: dequeue 1, enqueue 5 */
    struct second_args sa = {.want = 1, .put = 5};
    struct child_op op = {.qfd = q.seg.fd, .fn = second_child, .arg = &sa};
    CHECK(exited_ok("second child", run_child(&op, 10000)));

    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK(st.repairs >= 1);
    CHECK_EQ(st.corruptions, 0); /* a dead lock holder is not corruption */
    CHECK_EQ(st.count, 5);
    CHECK_EQ(st.total_size, 2 + 3 + 77 + 4 + 5);
    CHECK_EQ(bq_check(&q), 0);

    /* contents: the blocked child's 77 was in before the parent's 4 */
    static const uint64_t want[5] = {2, 3, 77, 4, 5};
    for (int i = 0; i < 5; i++) {
        struct bq_entry o;
        CHECK_EQ(bq_dequeue(&q, &o), 0);
        CHECK_EQ(o.handle, want[i]);
        CHECK_EQ(o.size, o.handle);
    }
    CHECK(bq_is_empty(&q));
    CHECK_EQ(bq_total_size(&q), 0);
    bq_detach(&q);
    watchdog_disarm();
}

static void test_kill_holding_tail_lock(void)
{
    run_lock_holder_death(HOLD_TAIL, __func__);
}

static void test_kill_holding_head_lock(void)
{
    run_lock_holder_death(HOLD_HEAD, __func__);
}

static void test_kill_holding_both_locks(void)
{
    run_lock_holder_death(HOLD_BOTH, __func__);
}

/* A holder that earned the bias of the tail lock (a run of uncontended
 * enqueues) dies inside a biased section — busy set, no lock word written.
 * The next locker revokes the bias, finds the holder dead and repairs. */
struct bias_args {
    int inside; /* die inside the biased section, or just holding the bias */
};

static void hold_bias(struct bq *q, void *arg)
{
    const struct bias_args *a = arg;
    /* earn the bias: enqueue and dequeue alone, many times */
    for (uint64_t i = 0; i < 4 * BSLOCK_STREAK; i++) {
        struct bq_entry e = mk_entry(1000 + i, 0, 1, 1), o;
        if (bq_enqueue(q, &e) != 0 || bq_dequeue(q, &o) != 0)
            _exit(OUT_OP);
    }
    if (atomic_load(&q->sh->tail.lock.bias) != slock_self())
        _exit(OUT_WRONG); /* no bias given: the case would test nothing */
    if (a->inside && bslock_lock(&q->sh->tail.lock) != BSLOCK_BIASED)
        _exit(OUT_WRONG);
    if (a->inside) { /* half an enqueue: the entry written, tail not moved */
        struct bq_entry half = mk_entry(999, 0, 9, 9);
        bq_slot_write(q, atomic_load(&q->sh->tail.index), &half);
    }
}

static void run_bias_holder_death(int inside, const char *name)
{
    if (!slock_membarrier_register()) {
        printf("# skipped: no expedited membarrier here, so no lock is ever biased\n");
        return;
    }
    watchdog_arm(name);
    struct bq q;
    REQUIRE(create_queue(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    struct bias_args a = {.inside = inside};
    struct holder hd;
    REQUIRE(holder_start(&hd, q.seg.fd, hold_bias, &a));
    CHECK(holder_kill(&hd));
    CHECK(atomic_load(&q.sh->tail.lock.bias) == (uint32_t)hd.pid);
    CHECK_EQ(atomic_load(&q.sh->tail.lock.busy), inside);
    struct bq_stats st0;
    CHECK_EQ(bq_stats(&q, &st0), 0);

    uint64_t t0 = mono_ns();
    struct bq_entry e = mk_entry(1, 10, 1, 33);
    CHECK_EQ(bq_enqueue(&q, &e), 0); /* revokes the dead holder's bias */
    CHECK(mono_ns() - t0 < BOUND_NS);
    CHECK_EQ(atomic_load(&q.sh->tail.lock.bias), 0);
    CHECK_EQ(atomic_load(&q.sh->tail.lock.busy), 0);
    struct second_args sa = {.want = 1, .put = 2};
    struct child_op op = {.qfd = q.seg.fd, .fn = second_child, .arg = &sa};
    CHECK(exited_ok("second child", run_child(&op, 10000)));
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    if (inside)
        CHECK(st.repairs > st0.repairs); /* a death inside the section is repaired */
    CHECK_EQ(st.corruptions, 0);
    CHECK_EQ(st.count, 1);
    CHECK_EQ(st.total_size, 2);
    CHECK_EQ(bq_check(&q), 0);
    struct bq_entry o;
    CHECK_EQ(bq_dequeue(&q, &o), 0);
    CHECK_EQ(o.handle, 2);
    CHECK(bq_is_empty(&q));
    bq_detach(&q);
    watchdog_disarm();
}

static void test_kill_inside_biased_section(void)
{
    run_bias_holder_death(1, __func__);
}

static void test_kill_holding_bias_outside_section(void)
{
    run_bias_holder_death(0, __func__);
}

/* A lock holder that is alive but not running (stopped by a debugger or
 * SIGSTOP, or preempted for long) makes the others wait — but, as lock.h
 * and DESIGN.md say, asleep after a short spin, not burning a CPU. Then the
 * holder is killed, and the waiter must get through promptly. */
/* The scheduler state of a task (R runnable, S asleep...), or 0. */
static char task_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = fgets(buf, sizeof(buf), f);
    fclose(f);
    char *p = line ? strrchr(line, ')') : NULL;
    return p && p[1] == ' ' ? p[2] : 0;
}

/* The time pid has run on a CPU, in ns (/proc/PID/schedstat); 0 if unknown. */
static uint64_t task_cpu_ns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned long long ns = 0;
    if (fscanf(f, "%llu", &ns) != 1)
        ns = 0;
    fclose(f);
    return ns;
}

static void stop_holding(struct bq *q, void *arg)
{
    int biased = *(int *)arg;
    if (biased) {
        for (uint64_t i = 0; i < 4 * BSLOCK_STREAK; i++) {
            struct bq_entry e = mk_entry(1000 + i, 0, 1, 1), o;
            if (bq_enqueue(q, &e) != 0 || bq_dequeue(q, &o) != 0)
                _exit(OUT_OP);
        }
        if (bslock_lock(&q->sh->tail.lock) != BSLOCK_BIASED)
            _exit(OUT_WRONG);
    } else {
        slock_lock(&q->sh->tail.lock.lock);
    }
}

static void run_stopped_holder(int biased, const char *name)
{
    if (biased && !slock_membarrier_register()) {
        printf("# skipped: no expedited membarrier here, so no lock is ever biased\n");
        return;
    }
    watchdog_arm(name);
    struct bq q;
    REQUIRE(create_queue(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    struct holder hd;
    REQUIRE(holder_start(&hd, q.seg.fd, stop_holding, &biased));
    struct pollfd pfd = {.fd = hd.ready_r, .events = POLLIN};
    REQUIRE(poll(&pfd, 1, 10000) == 1);
    kill(hd.pid, SIGSTOP);
    siginfo_t si = {0};
    uint64_t dl = mono_ns() + 10000000000ull;
    while (waitid(P_PID, (id_t)hd.pid, &si, WSTOPPED | WNOHANG) == 0 && si.si_pid == 0 &&
           mono_ns() < dl)
        sched_yield();
    CHECK(si.si_pid == hd.pid && si.si_code == CLD_STOPPED);

    /* a waiter enqueues: it has to wait for the stopped holder */
    int bp[2];
    REQUIRE(pipe(bp) == 0);
    fflush(NULL);
    pid_t w = fork();
    REQUIRE(w >= 0);
    if (w == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(60);
        close(bp[0]);
        struct bq cq;
        if (bq_attach(q.seg.fd, &cq) != 0)
            _exit(OUT_ATTACH);
        _exit(blocked_enqueuer(&cq, &bp[1]));
    }
    close(bp[1]);
    pfd = (struct pollfd){.fd = bp[0], .events = POLLIN};
    CHECK(poll(&pfd, 1, 10000) == 1);
    close(bp[0]);
    /* Watch it for 300 ms — it cannot finish, the lock is held — sampling
     * its state every 10 ms, and the CPU time it takes meanwhile: a sleeper
     * runs only for its periodic rechecks (a few ms of CPU at most), a
     * spinner (even one that yields) whenever it gets a CPU — 300 ms on an
     * idle machine, and still tens of ms on a loaded one, where a sleeper's
     * rechecks may wait long enough in the run queue to be seen runnable in
     * many samples (so the samples are only shown). */
    int wfd = (int)syscall(SYS_pidfd_open, w, 0);
    int runnable = 0, samples = 0;
    uint64_t cpu0 = task_cpu_ns(w), t0 = mono_ns();
    for (int i = 0; i < 30; i++) {
        if (wfd >= 0) {
            pfd = (struct pollfd){.fd = wfd, .events = POLLIN};
            CHECK_EQ(poll(&pfd, 1, 10), 0); /* still waiting, as it must */
        }
        char st = task_state(w);
        samples += st != 0;
        runnable += st == 'R';
    }
    if (wfd >= 0)
        close(wfd);
    /* (cpu0 may be 0: a task that has not yet been switched out since its
     * fork has had none of its run time accounted) */
    uint64_t cpu1 = task_cpu_ns(w), cpu = cpu1 - cpu0, span = mono_ns() - t0;
    printf("# %s holder stopped: the waiter ran %.2f ms of %.0f ms, and was runnable in %d of %d "
           "samples\n",
           biased ? "biased" : "slock", (double)cpu / 1e6, (double)span / 1e6, runnable, samples);
    CHECK_EQ(samples, 30);
    if (cpu1 != 0)
        CHECK(cpu < 20000000u); /* asleep, not spinning */
    else
        CHECK(runnable < 15); /* no schedstat here: the samples, on an idle machine */

    /* the holder dies: the waiter gets through */
    kill(hd.pid, SIGKILL);
    int status = reap(hd.pid, 10000);
    CHECK(status != -1 && WIFSIGNALED(status));
    close(hd.ready_r);
    close(hd.hold_w);
    CHECK(exited_ok("waiter", reap(w, (int)(BOUND_NS / 1000000))));
    CHECK_EQ(bq_count(&q), 1);
    CHECK_EQ(bq_check(&q), 0);
    bq_detach(&q);
    watchdog_disarm();
}

static void test_waiter_sleeps_while_slock_holder_stopped(void)
{
    run_stopped_holder(0, __func__);
}

static void test_waiter_sleeps_while_bias_holder_stopped(void)
{
    run_stopped_holder(1, __func__);
}

/* ---- 2. death in the middle of an out-of-order sorted insertion ------------- */

/* What the dying bq_enqueue had done, in the order bq.c does it. */
enum ins_phase {
    PH_JOURNAL,       /* journal written and active, nothing shifted */
    PH_ONE_SHIFTED,   /* one slot shifted, progress recorded */
    PH_COPY_UNNOTED,  /* one slot copied, progress not yet recorded */
    PH_ALL_SHIFTED,   /* every slot shifted, the new entry not yet written */
    PH_ENTRY_WRITTEN, /* the new entry in place, tail not yet published */
    PH_SUMS_HALF,     /* inside side_pass: seq odd, bytes added, index not stored */
    PH_PUBLISHED_ODD, /* inside side_pass: index stored, seq still odd */
    PH_PUBLISHED,     /* side_pass done, the journal still active */
    PH_COUNT
};

static const char *phase_name[PH_COUNT] = {
    "journal", "one-shifted", "copy-unnoted", "all-shifted",
    "entry-written", "sums-half", "published-odd", "published",
};

struct ins_args {
    enum ins_phase phase;
    struct bq_entry ne;
};

static void half_insert(struct bq *q, void *arg)
{
    const struct ins_args *a = arg;
    struct bq_shared *sh = q->sh;
    slock_lock(&sh->tail.lock.lock);
    slock_lock(&sh->head.lock.lock);
    uint64_t tail = atomic_load(&sh->tail.index), head = atomic_load(&sh->head.index);
    struct bq_entry ne = a->ne;
    ne.seq = tail + 1;
    uint64_t pos = tail;
    while (pos > head && mbq_time_compare(ne.pts, slot_pts(q, pos - 1)) < 0)
        pos--;
    struct bq_journal *j = &sh->journal;
    j->entry = ne;
    j->pos = pos;
    j->tail = tail;
    atomic_store(&j->progress, tail);
    atomic_store(&j->active, 1);
    if (a->phase == PH_JOURNAL)
        return;
    if (a->phase == PH_ONE_SHIFTED || a->phase == PH_COPY_UNNOTED) {
        slot_copy(q, tail, tail - 1);
        if (a->phase == PH_ONE_SHIFTED)
            atomic_store(&j->progress, tail - 1);
        return;
    }
    for (uint64_t k = tail; k > pos; k--) {
        slot_copy(q, k, k - 1);
        atomic_store(&j->progress, k - 1);
    }
    if (a->phase == PH_ALL_SHIFTED)
        return;
    bq_slot_write(q, pos, &ne);
    if (a->phase == PH_ENTRY_WRITTEN)
        return;
    struct bq_side *s = &sh->tail;
    atomic_store(&s->seq, atomic_load(&s->seq) + 1);
    atomic_store(&s->bytes, atomic_load(&s->bytes) + ne.size);
    atomic_store(&s->dur_value, atomic_load(&s->dur_value) + ne.duration.value);
    if (a->phase == PH_SUMS_HALF)
        return;
    atomic_store(&s->ops, atomic_load(&s->ops) + 1);
    atomic_store(&s->index, tail + 1);
    if (a->phase == PH_PUBLISHED_ODD)
        return;
    atomic_store(&s->seq, atomic_load(&s->seq) + 1);
}

static void test_kill_mid_sorted_insertion(void)
{
    watchdog_arm(__func__);
    for (int ph = 0; ph < PH_COUNT; ph++) {
        int failed_before = check_case_failed;
        check_case_failed = 0;
        struct bq q;
        REQUIRE(create_queue(8, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
        /* move head and tail to 6 so that the entries wrap around the ring */
        for (uint64_t h = 1; h <= 6; h++) {
            struct bq_entry e = mk_entry(100 + h, 1, 1, 1), o;
            REQUIRE(bq_enqueue(&q, &e) == 0);
            REQUIRE(bq_dequeue(&q, &o) == 0);
        }
        /* pts 10..50 at absolute indices 6..10, i.e. slots 6, 7, 0, 1, 2 */
        for (uint64_t h = 1; h <= 5; h++) {
            struct bq_entry e = mk_entry(h, (int64_t)h * 10, h * 100, 10);
            REQUIRE(bq_enqueue(&q, &e) == 0);
        }
        /* the dying insertion: pts 25 goes between 20 and 30 (slot 0) */
        struct ins_args a = {.phase = (enum ins_phase)ph, .ne = mk_entry(6, 25, 600, 10)};
        struct holder hd;
        REQUIRE(holder_start(&hd, q.seg.fd, half_insert, &a));
        CHECK(holder_kill(&hd));

        uint64_t t0 = mono_ns();
        CHECK_EQ(bq_check(&q), 0); /* rolled forward: not corruption */
        CHECK(mono_ns() - t0 < BOUND_NS);
        struct bq_stats st;
        CHECK_EQ(bq_stats(&q, &st), 0);
        CHECK(st.repairs >= 1);
        CHECK_EQ(st.count, 6);
        CHECK_EQ(st.total_size, 100 + 200 + 300 + 400 + 500 + 600);
        CHECK_EQ(mbq_time_compare(st.duration, mbq_time_make(60, 1000)), 0);
        struct walk w;
        CHECK_EQ(walk(&q, &w), 0);
        CHECK(w.sorted);
        CHECK_EQ(w.n, 6);
        static const uint64_t want[6] = {1, 2, 6, 3, 4, 5};
        for (int i = 0; i < 6; i++)
            CHECK_EQ(w.handles[i], want[i]);
        /* the queue works: an in-order and an out-of-order enqueue, then
         * every entry once, in order */
        struct bq_entry e1 = mk_entry(7, 60, 1, 1), e2 = mk_entry(8, 15, 1, 1);
        CHECK_EQ(bq_enqueue(&q, &e1), 0);
        CHECK_EQ(bq_enqueue(&q, &e2), 0);
        static const uint64_t order[8] = {1, 8, 2, 6, 3, 4, 5, 7};
        for (int i = 0; i < 8; i++) {
            struct bq_entry o;
            CHECK_EQ(bq_dequeue(&q, &o), 0);
            CHECK_EQ(o.handle, order[i]);
        }
        CHECK(bq_is_empty(&q));
        if (check_case_failed)
            fprintf(stderr, "  (phase %s)\n", phase_name[ph]);
        check_case_failed |= failed_before;
        bq_detach(&q);
    }
    watchdog_disarm();
}

/* ---- 2b. a consumer killed while it settles a sorted queue ------------------ */

/* The consumer puts a sorted queue's appended entries in order one move at a
 * time (bq_settle). Killed between two moves, or inside the second, it
 * leaves the entries in order up to the one it was on; past that one they
 * are where their producers put them, so the entry just past it may be below
 * its predecessor — now the largest key moved up — although no producer
 * noted it: a death, not a scribble, and the repair must not count it as
 * corruption. The child runs the real bq_dequeue and dies at a chosen point:
 * the page that holds the slot of the second entry to move is made
 * unreadable (the settle dies reading its key: between the moves) or
 * read-only (it dies writing it: inside the second, journalled move), and
 * its fault handler kills it. */

enum settle_death { DIE_BETWEEN_MOVES, DIE_IN_SECOND_MOVE, DIE_COUNT };

static const char *settle_death_name[DIE_COUNT] = {"between moves", "in the second move"};

struct settle_args {
    enum settle_death when;
    uint64_t fault_index; /* an index whose slot starts a page */
};

static void die_now(int sig)
{
    (void)sig;
    kill(getpid(), SIGKILL);
}

static int settle_and_die(struct bq *q, void *arg)
{
    const struct settle_args *a = arg;
    struct sigaction sa = {.sa_handler = die_now};
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || sigaction(SIGBUS, &sa, NULL) != 0)
        return OUT_OP;
    int prot = a->when == DIE_BETWEEN_MOVES ? PROT_NONE : PROT_READ;
    if (mprotect(&q->slots[a->fault_index & q->mask], (size_t)sysconf(_SC_PAGESIZE), prot) != 0)
        return OUT_OP;
    struct bq_entry o;
    bq_dequeue(q, &o);
    return OUT_WRONG; /* the settle before the dequeue did not reach the page */
}

static void test_kill_mid_settle(void)
{
    watchdog_arm(__func__);
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int when = 0; when < DIE_COUNT; when++) {
        int failed_before = check_case_failed;
        check_case_failed = 0;
        /* slots over two pages at least, so that one starts a page */
        uint32_t cap = (uint32_t)(2 * pg / sizeof(struct bq_slot));
        struct bq q;
        REQUIRE(create_queue(cap > 256 ? cap : 256, BQ_ORDER_PTS, BQ_FULL_FAIL, &q) == 0);
        /* b: an index whose slot starts a page, with room below it */
        uint64_t b = 3;
        while ((uintptr_t)&q.slots[b] % pg != 0)
            b++;
        REQUIRE(b + 2 < q.capacity);
        /* move head and tail to b - 3, the queue settled there */
        for (uint64_t h = 1; h <= b - 3; h++) {
            struct bq_entry e = mk_entry(1000 + h, 1, 1, 1), o;
            REQUIRE(bq_enqueue(&q, &e) == 0);
            REQUIRE(bq_dequeue(&q, &o) == 0);
        }
        /* pts 10, 30, 20, 25, 27 at b - 3 .. b + 1: 20 is appended below the
         * last key (noted), 25 and 27 are not (each above the last key) but
         * sit below 30 once 20 has moved down past it */
        static const int64_t pts[5] = {10, 30, 20, 25, 27};
        for (uint64_t h = 1; h <= 5; h++) {
            struct bq_entry e = mk_entry(h, pts[h - 1], h * 100, 10);
            REQUIRE(bq_enqueue(&q, &e) == 0);
        }
        /* the settle moves 20 (slots b - 1, b - 2), then 25 (slots b, b - 1) */
        struct settle_args a = {.when = (enum settle_death)when, .fault_index = b};
        struct child_op op = {.qfd = q.seg.fd, .fn = settle_and_die, .arg = &a};
        int status = run_child(&op, 10000);
        CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        if (status != -1 && WIFEXITED(status))
            fprintf(stderr, "settling child exited with %d\n", WEXITSTATUS(status));
        /* it died where it was meant to: inside a journalled move or not */
        CHECK_EQ(atomic_load(&q.sh->journal.active) != 0, when == DIE_IN_SECOND_MOVE);

        CHECK_EQ(bq_check(&q), 0); /* a death, not corruption */
        struct bq_stats st;
        CHECK_EQ(bq_stats(&q, &st), 0);
        CHECK(st.repairs >= 1);
        CHECK_EQ(st.corruptions, 0);
        CHECK_EQ(st.count, 5);
        CHECK_EQ(st.total_size, 100 + 200 + 300 + 400 + 500);
        struct walk w;
        CHECK_EQ(walk(&q, &w), 0);
        CHECK(w.sorted);
        CHECK_EQ(w.n, 5);
        static const uint64_t order[5] = {1, 3, 4, 5, 2};
        for (int i = 0; i < 5; i++) {
            struct bq_entry o;
            CHECK_EQ(bq_dequeue(&q, &o), 0);
            CHECK_EQ(o.handle, order[i]);
        }
        CHECK(bq_is_empty(&q));
        if (check_case_failed)
            fprintf(stderr, "  (killed %s)\n", settle_death_name[when]);
        check_case_failed |= failed_before;
        bq_detach(&q);
    }
    watchdog_disarm();
}

/* ---- 3. random kills of a busy process --------------------------------------- */

struct churn_shared {
    _Atomic uint64_t loops;
};

struct churn_args {
    int fd[2];
    uint64_t seed, iter;
    struct churn_shared *sh;
};

/* Streams operations on a FIFO (drop-oldest) and a PTS-sorted (fail when
 * full) queue until killed: enqueues with mostly increasing PTS (so some
 * insertions are out of order), dequeues, now and then a walk or a reset. */
static void churn(const struct churn_args *a)
{
    struct bq q[2];
    if (bq_attach(a->fd[0], &q[0]) != 0 || bq_attach(a->fd[1], &q[1]) != 0)
        _exit(OUT_ATTACH);
    uint64_t s = a->seed, n = 0;
    for (;;) {
        for (int i = 0; i < 2; i++) {
            uint64_t r = rng_next(&s);
            if (r % 100 < 55) {
                n++;
                struct bq_entry e = mk_entry(a->iter << 32 | n,
                                             (int64_t)(n * 10) - (int64_t)((r >> 8) % 50),
                                             (r >> 16) % 5000, (int64_t)((r >> 24) % 100));
                int rc = bq_enqueue(&q[i], &e);
                if (rc != 0 && rc != MBQ_BQ_ERR_QUEUE_IS_FULL)
                    _exit(OUT_OP);
            } else if (r % 100 < 97) {
                struct bq_entry o;
                int rc = (r >> 40) & 15 ? bq_dequeue(&q[i], &o) : bq_dequeue_wait(&q[i], &o, 0);
                if (rc != 0 && rc != -EAGAIN && rc != -ETIMEDOUT)
                    _exit(OUT_OP);
            } else if (r % 100 < 99) {
                struct walk w;
                walk(&q[i], &w);
            } else if ((r >> 32) % 8 == 0) {
                bq_reset(&q[i], NULL, NULL);
            } else {
                (void)bq_duration(&q[i]);
                (void)bq_min_pts(&q[i]);
            }
        }
        atomic_fetch_add_explicit(&a->sh->loops, 1, memory_order_relaxed);
    }
}

static void check_after_kill(struct bq *q, const char *what, int iter)
{
    int failed_before = check_case_failed;
    check_case_failed = 0;
    uint64_t t0 = mono_ns();
    CHECK_EQ(bq_check(q), 0); /* a death is repaired, it is not corruption */
    CHECK(mono_ns() - t0 < BOUND_NS);
    uint64_t head = atomic_load(&q->sh->head.index), tail = atomic_load(&q->sh->tail.index);
    CHECK(tail - head <= q->capacity);
    struct bq_stats st;
    CHECK_EQ(bq_stats(q, &st), 0);
    CHECK_EQ(st.count, tail - head);
    CHECK_EQ(bq_count(q), tail - head);
    CHECK_EQ(st.corruptions, 0);
    struct walk w;
    CHECK_EQ(walk(q, &w), 0);
    CHECK_EQ(w.n, st.count);
    CHECK(w.sorted);
    CHECK(w.fifo_ok);
    CHECK_EQ(st.total_size, w.bytes);
    CHECK_EQ(bq_total_size(q), w.bytes);
    CHECK_EQ(mbq_time_compare(st.duration, w.dur), 0);
    CHECK_EQ(mbq_time_compare(bq_duration(q), w.dur), 0);
    if (w.n && q->order == BQ_ORDER_PTS)
        CHECK_EQ(mbq_time_compare(bq_first_pts(q), bq_min_pts(q)), 0);
    /* the queue still works: make room, then an entry goes through */
    struct bq_entry o, e = mk_entry(0xffffull << 48 | (uint64_t)iter, INT32_MAX, 1, 1);
    if (tail - head == q->capacity)
        CHECK_EQ(bq_dequeue(q, &o), 0);
    CHECK_EQ(bq_enqueue(q, &e), 0);
    CHECK_EQ(bq_count(q), (int64_t)(tail - head == q->capacity ? tail - head : tail - head + 1));
    if (q->order == BQ_ORDER_FIFO || (iter & 1)) {
        CHECK_EQ(bq_reset(q, NULL, NULL), 0);
        CHECK(bq_is_empty(q));
    }
    if (check_case_failed)
        fprintf(stderr, "  (kill %d, %s queue)\n", iter, what);
    check_case_failed |= failed_before;
}

static void test_random_kills(void)
{
    watchdog_arm(__func__);
    uint64_t seed = test_seed();
    printf("# seed %llu\n", (unsigned long long)seed);
    uint64_t s = seed;
    struct bq q[2];
    REQUIRE(create_queue(48, BQ_ORDER_FIFO, BQ_FULL_DROP_OLDEST, &q[0]) == 0);
    REQUIRE(create_queue(48, BQ_ORDER_PTS, BQ_FULL_FAIL, &q[1]) == 0);
    struct churn_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(sh != MAP_FAILED);
    uint64_t repairs0[2] = {0, 0}, held_locks = 0, held_biased = 0, mid_insert = 0;
    uint64_t tokens[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        struct bq_stats st0;
        REQUIRE(bq_stats(&q[i], &st0) == 0);
        repairs0[i] = st0.repairs;
    }
    for (int iter = 0; iter < 50; iter++) {
        /* every other round with a trigger installed: all operations then
         * take both locks and evaluate the triggers */
        for (int i = 0; i < 2; i++) {
            if (iter % 4 == 1)
                CHECK_EQ(bq_install_trigger(&q[i], BQ_TRIGGER_COUNT_GREATER_THAN,
                                            MBQ_TIME_INVALID, 10, -1, &tokens[i]),
                         0);
            if (iter % 4 == 3)
                CHECK_EQ(bq_remove_trigger(&q[i], tokens[i]), 0);
        }
        struct churn_args a = {.fd = {q[0].seg.fd, q[1].seg.fd},
                               .seed = rng_next(&s),
                               .iter = (uint64_t)iter + 1,
                               .sh = sh};
        atomic_store(&sh->loops, 0);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            alarm(60);
            churn(&a);
        }
        /* kill after a random number of entries have gone in (the queues'
         * own counters, so that the moment does not depend on how the two
         * processes are scheduled), meanwhile checking bq_count's range */
        uint64_t target = 1 + rng_below(&s, 3000), seen = 0;
        uint64_t deadline = mono_ns() + 10000000000ull, base = 0;
        for (int i = 0; i < 2; i++) {
            struct bq_stats st0;
            if (bq_stats(&q[i], &st0) == 0)
                base += st0.enqueued;
        }
        while (seen < target && mono_ns() < deadline) {
            uint64_t now = 0;
            for (int i = 0; i < 2; i++) {
                int64_t c = bq_count(&q[i]);
                if (c < 0 || c > (int64_t)q[i].capacity) {
                    CHECK(c >= 0 && c <= (int64_t)q[i].capacity);
                    break;
                }
                struct bq_stats st1;
                if (bq_stats(&q[i], &st1) == 0)
                    now += st1.enqueued;
            }
            seen = now - base;
        }
        CHECK(seen >= target); /* the child made progress */
        /* then a random moment of the child's loop: spin a random while */
        for (uint64_t spin = rng_below(&s, 200000); spin > 0; spin--)
            cpu_relax();
        kill(pid, SIGKILL);
        int status = reap(pid, 10000);
        CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        if (status != -1 && WIFEXITED(status))
            fprintf(stderr, "churn child exited with %d\n", WEXITSTATUS(status));
        for (int i = 0; i < 2; i++) {
            struct bslock *l[2] = {&q[i].sh->tail.lock, &q[i].sh->head.lock};
            for (int k = 0; k < 2; k++) {
                held_locks += (atomic_load(&l[k]->lock.word) & SLOCK_TID_MASK) == (uint32_t)pid;
                held_biased += atomic_load(&l[k]->bias) == (uint32_t)pid && atomic_load(&l[k]->busy);
            }
            mid_insert += atomic_load(&q[i].sh->journal.active) != 0;
        }
        check_after_kill(&q[0], "fifo", iter);
        check_after_kill(&q[1], "sorted", iter);
        if (check_case_failed) {
            fprintf(stderr, "  seed %llu, stopping at kill %d\n", (unsigned long long)seed, iter);
            break;
        }
    }
    printf("# kills that left a lock held: %llu, inside a biased section: %llu, mid sorted "
           "insertion: %llu\n",
           (unsigned long long)held_locks, (unsigned long long)held_biased,
           (unsigned long long)mid_insert);
    struct bq_stats st;
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(bq_stats(&q[i], &st), 0);
        printf("# %s queue: %llu repairs over 50 kills, %llu corruptions\n",
               i ? "sorted" : "fifo", (unsigned long long)(st.repairs - repairs0[i]),
               (unsigned long long)st.corruptions);
        bq_detach(&q[i]);
    }
    munmap(sh, sizeof(*sh));
    watchdog_disarm();
}

/* ---- 4. death while holding pool buffers ----------------------------------- */

static int hook_retain(void *ctx, uint32_t pool_id, uint64_t handle, bool by_client)
{
    (void)pool_id;
    return pool_retain(ctx, handle, by_client);
}

static void hook_release(void *ctx, uint32_t pool_id, uint64_t handle)
{
    (void)pool_id;
    pool_release(ctx, handle, false);
}

struct buf_args {
    int pool_fd;
    int k;
    uint64_t *expect; /* the handles it must dequeue, in order */
};

static void take_buffers(struct bq *q, void *arg)
{
    const struct buf_args *a = arg;
    struct pool p;
    if (pool_attach(a->pool_fd, &p) != 0)
        _exit(OUT_ATTACH);
    for (int i = 0; i < a->k; i++) {
        struct bq_entry e;
        if (bq_dequeue(q, &e) != 0 || e.handle != a->expect[i])
            _exit(OUT_WRONG);
        if (pool_adopt(&p, e.handle) != 0)
            _exit(OUT_POOL);
        /* and use it */
        uint8_t *d = pool_data(&p, e.handle);
        if (!d || d[0] != (uint8_t)i)
            _exit(OUT_POOL);
    }
    if (pool_held_by_self(&p) != (uint64_t)a->k)
        _exit(OUT_POOL);
}

static void test_kill_holding_buffers(void)
{
    watchdog_arm(__func__);
    enum { NBUF = 10, KEPT = 4, K = 5 };
    struct pool p;
    struct pool_params pp = {.block_size = 4096, .block_count = 16, .prefault = true};
    REQUIRE(pool_create(&pp, &p) == 0);
    struct bq q;
    REQUIRE(create_queue(16, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    bq_set_hooks(&q, &(struct bq_hooks){.ctx = &p, .retain = hook_retain,
                                        .release = hook_release});
    uint64_t h[NBUF];
    for (int i = 0; i < NBUF; i++) {
        REQUIRE(pool_alloc(&p, 4096, &h[i]) == 0);
        ((uint8_t *)pool_data(&p, h[i]))[0] = (uint8_t)i;
        struct bq_entry e = mk_entry(h[i], i, 4096, 33);
        REQUIRE(bq_enqueue(&q, &e) == 0);
    }
    /* the parent keeps its references to the first KEPT buffers */
    for (int i = KEPT; i < NBUF; i++)
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    CHECK_EQ(pool_held_by_self(&p), KEPT);
    struct pool_stats ps;
    CHECK_EQ(pool_stats(&p, &ps), 0);
    CHECK_EQ(ps.used, NBUF);

    /* the child takes the first K (0..4) out of the queue, then dies */
    struct buf_args a = {.pool_fd = p.seg.fd, .k = K, .expect = h};
    struct holder hd;
    REQUIRE(holder_start(&hd, q.seg.fd, take_buffers, &a));
    CHECK(holder_kill(&hd));
    CHECK_EQ(bq_count(&q), NBUF - K);

    CHECK_EQ(pool_reclaim_dead(&p), K);
    CHECK_EQ(pool_stats(&p, &ps), 0);
    /* blocks 0..3: the parent's reference; 5..9: the queue's; 4: free */
    CHECK_EQ(ps.used, KEPT + (NBUF - K));
    CHECK_EQ(ps.reclaimed, K);
    CHECK_EQ(pool_held_by_self(&p), KEPT);
    CHECK_EQ(pool_retain(&p, h[4], true), -ESTALE);
    for (int i = 0; i < KEPT; i++)
        CHECK(pool_block_of(&p, h[i]) != NULL);
    CHECK_EQ(pool_reclaim_dead(&p), 0); /* nothing left to reclaim */

    /* drain the queue and drop the parent's references: nothing is left */
    for (int i = K; i < NBUF; i++) {
        struct bq_entry e;
        CHECK_EQ(bq_dequeue(&q, &e), 0);
        CHECK_EQ(e.handle, h[i]);
        CHECK_EQ(pool_adopt(&p, e.handle), 0);
        CHECK_EQ(pool_release(&p, e.handle, true), 0);
    }
    for (int i = 0; i < KEPT; i++)
        CHECK_EQ(pool_release(&p, h[i], true), 0);
    CHECK_EQ(pool_stats(&p, &ps), 0);
    CHECK_EQ(ps.used, 0);
    CHECK_EQ(ps.allocs, NBUF);
    CHECK_EQ(ps.frees, NBUF);
    CHECK_EQ(ps.warm + ps.cold, 16);
    CHECK_EQ(pool_held_by_self(&p), 0);
    bq_detach(&q);
    pool_detach(&p);
    watchdog_disarm();
}

/* A blocking dequeuer killed while asleep leaves its futex word armed and
 * its count raised: the next enqueue's wake wakes nobody and disarms the
 * word, and the enqueues after it make no futex_wake call for nobody. */
static void test_kill_sleeping_dequeuer(void)
{
    watchdog_arm("test_kill_sleeping_dequeuer");
    struct bq q;
    REQUIRE(create_queue(64, BQ_ORDER_FIFO, BQ_FULL_FAIL, &q) == 0);
    struct bq_shared *sh = q.sh;
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct bq e;
        int fd = dup(q.seg.fd);
        if (fd < 0 || bq_attach(fd, &e) != 0)
            _exit(1);
        struct bq_entry out;
        (void)bq_dequeue_wait(&e, &out, -1); /* asleep until killed */
        _exit(2);
    }
    /* Wait until it has named itself asleep and armed its word (a
     * condition, with a deadline). */
    bool named = false;
    for (uint64_t end = mono_ns() + 10000000000ull; !named && mono_ns() < end;) {
        for (int i = 0; i < BQ_WAITER_SLOTS; i++)
            named |= atomic_load(&sh->waiter_tid[i]) == (uint32_t)pid;
        named &= (atomic_load(&sh->data_seq) & FUTEX_SEQ_ARMED) != 0;
        if (!named)
            sched_yield();
    }
    REQUIRE(named);
    kill(pid, SIGKILL);
    int st = reap(pid, 5000);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CHECK_EQ(atomic_load(&sh->data_waiters), 1); /* left raised by the dead sleeper */
    uint32_t seq0 = atomic_load(&sh->data_seq);
    CHECK(seq0 & FUTEX_SEQ_ARMED); /* and its word armed */

    for (uint64_t i = 1; i <= 100; i++) {
        struct bq_entry e = mk_entry(i, (int64_t)i, 10, 1), out;
        CHECK_EQ(bq_enqueue(&q, &e), 0);
        CHECK_EQ(bq_dequeue(&q, &out), 0);
    }
    CHECK_EQ(atomic_load(&sh->data_seq), seq0 + 1); /* one wake, then none */
    CHECK_EQ(atomic_load(&q.idle_wakes), 1);
    bq_detach(&q);
    watchdog_disarm();
}

CHECK_MAIN(CASE(test_kill_holding_tail_lock), CASE(test_kill_holding_head_lock),
           CASE(test_kill_holding_both_locks), CASE(test_kill_inside_biased_section),
           CASE(test_kill_holding_bias_outside_section),
           CASE(test_waiter_sleeps_while_slock_holder_stopped),
           CASE(test_waiter_sleeps_while_bias_holder_stopped), CASE(test_kill_mid_sorted_insertion),
           CASE(test_kill_mid_settle), CASE(test_random_kills), CASE(test_kill_holding_buffers),
           CASE(test_kill_sleeping_dequeuer))
