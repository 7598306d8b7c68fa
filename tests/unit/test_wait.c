/* Flow control across real processes: blocking enqueue and allocate, cancel,
 * sleepers killed asleep, a blocking dequeue that does not spin with its
 * producer on the same CPU, and the runner words that let a sleeper skip
 * the heavy barrier.
 *
 * The parent creates the objects and forks the waiters, which attach the
 * inherited fds as unrelated processes would. A waiter's report is its exit
 * status plus, for the latency figures, a word in a shared page. "The
 * waiter is asleep" is read from the segment (the sleeper counts that
 * wakers check), polled with a generous deadline: no sleep is used as
 * synchronisation. Each wait in a child is bounded by its own timeout, so
 * a missing wake-up fails the case instead of hanging it. */
#include "check.h"

#include "bq_layout.h"
#include "futex.h"
#include "lock.h"
#include "pool_layout.h"

#include <mbq/status.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEC 1000000000ll

/* What a child reports back through the shared page. */
struct report {
    _Atomic int64_t status;
    _Atomic uint64_t returned_ns; /* CLOCK_MONOTONIC when its wait returned */
    _Atomic uint64_t cpu_ns;      /* CPU time its wait used */
};

static struct report *shared_report(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static pid_t spawn(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(60);
    _exit(fn(arg));
}

/* The child's exit status, waiting at most timeout_ms (then killing it). */
static int reap(pid_t pid, int timeout_ms)
{
    int status = -1;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        int r;
        while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
            ;
        close(pfd);
        if (r == 0) {
            fprintf(stderr, "child %d: no exit after %d ms, killing it\n", (int)pid, timeout_ms);
            kill(pid, SIGKILL);
        }
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Polls *word until it reads at least want, for at most 30 s. */
static bool wait_word(_Atomic uint32_t *word, uint32_t want)
{
    uint64_t deadline = mono_ns() + 30ull * SEC;
    while (atomic_load(word) < want) {
        if (mono_ns() > deadline)
            return false;
        sched_yield();
    }
    return true;
}

/* Until a sleeper has armed the futex word (futex.h): it is then past
 * counting itself and its last check, on its way into futex_wait or in it,
 * and only a wake changes the word. */
static bool wait_armed(_Atomic uint32_t *word)
{
    uint64_t deadline = mono_ns() + 30ull * SEC;
    while (!(atomic_load(word) & FUTEX_SEQ_ARMED)) {
        if (mono_ns() > deadline)
            return false;
        sched_yield();
    }
    return true;
}

static struct bq_entry entry(uint64_t handle)
{
    struct bq_entry e;
    memset(&e, 0, sizeof e);
    e.handle = handle;
    e.pts = e.dts = e.duration = MBQ_TIME_INVALID;
    e.size = 1;
    e.pool_id = 1;
    return e;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct qargs {
    int fd;
    struct report *rep;
    int64_t timeout_ns;
    int64_t spin_ns; /* for dequeue: bq_set_spin; -2: leave the default */
    int cpu;         /* pin to this CPU (-1: no pinning) */
};

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static int child_enqueue_wait(void *arg)
{
    struct qargs *a = arg;
    struct bq q;
    if (bq_attach(a->fd, &q) < 0)
        return 10;
    struct bq_entry e = entry(99);
    int r = bq_enqueue_wait(&q, &e, a->timeout_ns);
    atomic_store(&a->rep->returned_ns, mono_ns());
    atomic_store(&a->rep->status, r);
    bq_detach(&q);
    return 0;
}

static int child_dequeue_wait(void *arg)
{
    struct qargs *a = arg;
    pin(a->cpu);
    struct bq q;
    if (bq_attach(a->fd, &q) < 0)
        return 10;
    if (a->spin_ns != -2)
        bq_set_spin(&q, a->spin_ns);
    struct bq_entry out;
    uint64_t c0 = thread_cpu_ns();
    int r = bq_dequeue_wait(&q, &out, a->timeout_ns);
    atomic_store(&a->rep->cpu_ns, thread_cpu_ns() - c0);
    atomic_store(&a->rep->returned_ns, mono_ns());
    atomic_store(&a->rep->status, r);
    bq_detach(&q);
    return 0;
}

static int make_full_queue(uint32_t cap, struct bq *q)
{
    struct bq_params p = {.capacity = cap, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    int r = bq_create(&p, q);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < cap; i++) {
        struct bq_entry e = entry(i + 1);
        if ((r = bq_enqueue(q, &e)) != 0)
            return r;
    }
    return 0;
}

/* ---- blocking enqueue ------------------------------------------------------- */

static void test_enqueue_wait_blocks_until_dequeue(void)
{
    struct bq q;
    REQUIRE(make_full_queue(4, &q) == 0);
    struct report *rep = shared_report();
    REQUIRE(rep);
    atomic_store(&rep->status, 1);
    struct qargs a = {.fd = q.seg.fd, .rep = rep, .timeout_ns = 30 * SEC};
    pid_t pid = spawn(child_enqueue_wait, &a);
    /* It finds the queue full and goes to sleep... */
    CHECK(wait_armed(&q.sh->space_seq));
    CHECK_EQ(atomic_load(&rep->status), 1); /* still waiting */
    /* ...until a dequeue in this process makes room. */
    struct bq_entry out;
    uint32_t seq0 = atomic_load(&q.sh->space_seq);
    uint64_t t0 = mono_ns();
    CHECK_EQ(bq_dequeue(&q, &out), 0);
    /* The dequeue saw the word armed and woke the sleeper (disarming the
     * word): not left to the sleep's 100 ms safety slice. */
    CHECK(atomic_load(&q.sh->space_seq) != seq0);
    CHECK_EQ(reap(pid, 30000), 0);
    CHECK_EQ(atomic_load(&rep->status), 0);
    printf("enqueue_wait: woken %.1f us after the dequeue\n",
           (double)(atomic_load(&rep->returned_ns) - t0) / 1e3);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.count, 4);
    CHECK_EQ(st.rejected_full, 0); /* a wait that succeeded was never rejected */
    /* The sleeper left: dequeues make no more system calls for it. */
    CHECK_EQ(atomic_load(&q.sh->space_waiters), 0);
    bq_detach(&q);
    munmap(rep, 4096);
}

static void test_enqueue_wait_times_out(void)
{
    struct bq q;
    REQUIRE(make_full_queue(2, &q) == 0);
    struct bq_entry e = entry(7);
    uint64_t t0 = mono_ns();
    CHECK_EQ(bq_enqueue_wait(&q, &e, 50000000), MBQ_BQ_ERR_QUEUE_IS_FULL);
    CHECK(mono_ns() - t0 >= 50000000u);
    CHECK_EQ(bq_enqueue_wait(&q, &e, 0), MBQ_BQ_ERR_QUEUE_IS_FULL);
    struct bq_stats st;
    CHECK_EQ(bq_stats(&q, &st), 0);
    CHECK_EQ(st.rejected_full, 2); /* once per call, not per try */
    /* End of data marked while waiting fails the wait as enqueue would. */
    CHECK_EQ(bq_mark_end_of_data(&q), 0);
    CHECK_EQ(bq_enqueue_wait(&q, &e, SEC), MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA);
    bq_detach(&q);
}

/* ---- cancel ----------------------------------------------------------------- */

static void cancel_case(bool enqueue)
{
    struct bq q;
    struct bq_params p = {.capacity = 2, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    REQUIRE((enqueue ? make_full_queue(2, &q) : bq_create(&p, &q)) == 0);
    struct report *rep = shared_report();
    REQUIRE(rep);
    atomic_store(&rep->status, 1);
    struct qargs a = {.fd = q.seg.fd, .rep = rep, .timeout_ns = 30 * SEC, .spin_ns = -2,
                      .cpu = -1};
    pid_t pid = spawn(enqueue ? child_enqueue_wait : child_dequeue_wait, &a);
    CHECK(wait_armed(enqueue ? &q.sh->space_seq : &q.sh->data_seq));
    uint64_t t0 = mono_ns();
    CHECK_EQ(bq_cancel_waits(&q), 0);
    CHECK_EQ(reap(pid, 30000), 0);
    CHECK_EQ(atomic_load(&rep->status), -ECANCELED);
    uint64_t lat = atomic_load(&rep->returned_ns) - t0;
    printf("cancel of a blocked %s in another process: returned after %.1f us\n",
           enqueue ? "enqueue_wait" : "dequeue_wait", (double)lat / 1e3);
    CHECK(lat < 5ull * SEC); /* well inside the 30 s the wait would take */
    /* A call begun after the cancel waits as usual. */
    struct bq_entry e = entry(5), out;
    if (enqueue)
        CHECK_EQ(bq_enqueue_wait(&q, &e, 1000000), MBQ_BQ_ERR_QUEUE_IS_FULL);
    else
        CHECK_EQ(bq_dequeue_wait(&q, &out, 1000000), -ETIMEDOUT);
    bq_detach(&q);
    munmap(rep, 4096);
}

static void test_cancel_wakes_enqueue_in_other_process(void)
{
    cancel_case(true);
}

static void test_cancel_wakes_dequeue_in_other_process(void)
{
    cancel_case(false);
}

/* ---- producer lost ------------------------------------------------------------ */

/* mbqd's bq_producers_set(n = 0, lost) wakes a dequeuer asleep in another
 * process: it returns -EPIPE at once, not at its timeout; an entry still
 * queued is taken first; a declaration (n > 0) clears it. */
static void test_producer_lost_wakes_dequeue(void)
{
    struct bq q;
    struct bq_params p = {.capacity = 4, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    REQUIRE(bq_create(&p, &q) == 0);
    uint32_t pid = (uint32_t)getpid();
    bq_producers_set(&q, 1, &pid, false);
    struct report *rep = shared_report();
    REQUIRE(rep);
    atomic_store(&rep->status, 1);
    struct qargs a = {.fd = q.seg.fd, .rep = rep, .timeout_ns = 30 * SEC, .spin_ns = -2,
                      .cpu = -1};
    pid_t child = spawn(child_dequeue_wait, &a);
    CHECK(wait_armed(&q.sh->data_seq));
    uint32_t seq0 = atomic_load(&q.sh->data_seq);
    uint64_t t0 = mono_ns();
    bq_producers_set(&q, 0, NULL, true);
    /* woken, not left to its sleep's 100 ms slice */
    CHECK(atomic_load(&q.sh->data_seq) != seq0);
    CHECK_EQ(reap(child, 30000), 0);
    CHECK_EQ(atomic_load(&rep->status), -EPIPE);
    uint64_t lat = atomic_load(&rep->returned_ns) - t0;
    printf("producer lost: a dequeue_wait asleep in another process returned after %.1f us\n",
           (double)lat / 1e3);
    CHECK(lat < 5ull * SEC); /* well inside its 30 s */
    CHECK(bq_producer_lost(&q));
    /* Queued entries first, then -EPIPE without waiting; end of data wins. */
    struct bq_entry e = entry(3), out;
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    CHECK_EQ(bq_dequeue_wait(&q, &out, 30 * SEC), 0);
    CHECK_EQ(out.handle, 3);
    CHECK_EQ(bq_dequeue_wait(&q, &out, 30 * SEC), -EPIPE);
    CHECK_EQ(bq_dequeue(&q, &out), -EAGAIN); /* the non-blocking call is unchanged */
    bq_set_ignore_lost(&q, true);
    CHECK_EQ(bq_dequeue_wait(&q, &out, 1000000), -ETIMEDOUT);
    bq_set_ignore_lost(&q, false);
    /* A declaration clears it; the words say who. */
    bq_producers_set(&q, 1, &pid, false);
    CHECK(!bq_producer_lost(&q));
    CHECK_EQ(bq_dequeue_wait(&q, &out, 1000000), -ETIMEDOUT);
    uint32_t pids[BQ_PRODUCER_PIDS];
    CHECK_EQ(bq_producers_get(&q, pids), 1);
    CHECK_EQ(pids[0], pid);
    CHECK_EQ(pids[1], 0);
    bq_producers_set(&q, 0, NULL, true);
    CHECK_EQ(bq_mark_end_of_data(&q), 0);
    CHECK_EQ(bq_dequeue_wait(&q, &out, 30 * SEC), -ENODATA);
    bq_detach(&q);
    munmap(rep, 4096);
}

struct thread_wait {
    struct bq *q;
    int r;
    uint64_t returned_ns;
};

static void *thread_dequeue_wait(void *arg)
{
    struct thread_wait *t = arg;
    struct bq_entry out;
    t->r = bq_dequeue_wait(t->q, &out, 30 * SEC);
    t->returned_ns = mono_ns();
    return NULL;
}

static void test_cancel_wakes_dequeue_in_other_thread(void)
{
    struct bq q;
    struct bq_params p = {.capacity = 4, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    REQUIRE(bq_create(&p, &q) == 0);
    struct thread_wait t = {.q = &q, .r = 1};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, thread_dequeue_wait, &t) == 0);
    CHECK(wait_word(&q.sh->data_waiters, 1));
    uint64_t t0 = mono_ns();
    CHECK_EQ(bq_cancel_waits(&q), 0);
    pthread_join(th, NULL);
    CHECK_EQ(t.r, -ECANCELED);
    printf("cancel of a blocked dequeue_wait in another thread: %.1f us\n",
           (double)(t.returned_ns - t0) / 1e3);
    bq_detach(&q);
}

/* ---- wake ahead ------------------------------------------------------------------- */

struct ahead_wait {
    struct bq *q;
    int cpu;
    int r;
    uint64_t handle;
    _Atomic pid_t tid;
};

static void *thread_dequeue_pinned(void *arg)
{
    struct ahead_wait *t = arg;
    pin(t->cpu);
    atomic_store(&t->tid, (pid_t)syscall(SYS_gettid));
    struct bq_entry out;
    t->r = bq_dequeue_wait(t->q, &out, 30 * SEC);
    t->handle = t->r == 0 ? out.handle : 0;
    return NULL;
}

/* Polls until thread tid of this process is blocked in futex(2) (its
 * /proc syscall file names it), for at most 30 s: counted among the
 * sleepers is not enough, as the count is raised before the sleeper's
 * barrier and its read of the futex word. */
static bool wait_in_futex(pid_t tid)
{
    char path[64], buf[64], want[16];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    snprintf(want, sizeof want, "%d ", (int)SYS_futex);
    uint64_t deadline = mono_ns() + 30ull * SEC;
    while (mono_ns() < deadline) {
        FILE *f = fopen(path, "re");
        if (!f)
            return false;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        if (strncmp(buf, want, strlen(want)) == 0)
            return true;
        sched_yield();
    }
    return false;
}

/* The first two CPUs this process may run on, in cpus: how many (0–2). */
static int first_cpus(int cpus[2])
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    int n = 0;
    for (int i = 0; i < CPU_SETSIZE && n < 2; i++)
        if (CPU_ISSET(i, &set))
            cpus[n++] = i;
    return n;
}

/* bq_wake_ahead: with nobody asleep it does nothing (the futex word does
 * not move: no system call); a dequeuer asleep is woken at once (the word
 * moves) and, finding nothing, spins for the entry instead of sleeping
 * again, so an entry enqueued while it spins is taken by that spin (its
 * handle's woken_ahead counts it). The wake ahead is sent once the sleeper
 * is in futex(2) (a wake in its barrier is a hint it may miss, and the
 * enqueue's wake covers it); the spin lasts ~50 us: an attempt whose
 * enqueue came too late (this thread descheduled) is tried again, and the
 * case fails only if no attempt of 50 saw the spin take the entry. Without
 * the spin every attempt misses, whatever the timing. */
static void test_wake_ahead_wakes_and_the_sleeper_spins(void)
{
    cpu_set_t set; /* restored at the end */
    sched_getaffinity(0, sizeof set, &set);
    int cpus[2], n = first_cpus(cpus);
    struct bq qp, qc;
    struct bq_params p = {.capacity = 4, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    REQUIRE(bq_create(&p, &qp) == 0);
    REQUIRE(bq_attach(qp.seg.fd, &qc) == 0);
    uint32_t seq0 = atomic_load(&qp.sh->data_seq);
    bq_wake_ahead(&qp);
    CHECK_EQ(atomic_load(&qp.sh->data_seq), seq0);
    if (n < 2) {
        printf("one CPU: the spin after a wake ahead is not tried (the producer shares it)\n");
        bq_detach(&qc);
        bq_detach(&qp);
        return;
    }
    pin(cpus[0]);
    int attempt = 0;
    for (; attempt < 50; attempt++) {
        uint32_t taken0 = atomic_load(&qc.woken_ahead);
        struct ahead_wait t = {.q = &qc, .cpu = cpus[1], .r = 1};
        pthread_t th;
        REQUIRE(pthread_create(&th, NULL, thread_dequeue_pinned, &t) == 0);
        CHECK(wait_word(&qp.sh->data_waiters, 1));
        while (atomic_load(&t.tid) == 0)
            sched_yield();
        CHECK(wait_in_futex(atomic_load(&t.tid)));
        seq0 = atomic_load(&qp.sh->data_seq);
        bq_wake_ahead(&qp);
        CHECK(atomic_load(&qp.sh->data_seq) != seq0);
        /* Awake: it left the sleepers. Then 10 us of the producer's work
         * (its first try, right after leaving, finds nothing), then the
         * entry, while it spins. */
        uint64_t until = mono_ns() + 5000000u;
        while (atomic_load(&qp.sh->data_waiters) != 0 && mono_ns() < until)
            cpu_relax();
        until = mono_ns() + 10000u;
        while (mono_ns() < until)
            cpu_relax();
        struct bq_entry e = entry(100 + (uint64_t)attempt);
        CHECK_EQ(bq_enqueue(&qp, &e), 0);
        pthread_join(th, NULL);
        CHECK_EQ(t.r, 0);
        CHECK_EQ(t.handle, 100 + (uint64_t)attempt);
        if (atomic_load(&qc.woken_ahead) != taken0)
            break;
    }
    printf("wake ahead: the woken dequeuer's spin took the entry at attempt %d\n", attempt + 1);
    CHECK(attempt < 50);
    sched_setaffinity(0, sizeof set, &set);
    bq_detach(&qc);
    bq_detach(&qp);
}

/* ---- sleepers killed asleep ------------------------------------------------------ */

/* A sleeper killed asleep leaves its word armed: it costs the next waker one
 * futex_wake for nobody (which disarms the word), and no waker after it a
 * system call. Its count and slot stay until a run of wakes for nobody
 * (here forced by arming the word by hand before each dequeue, as sleepers
 * that never reach futex_wait would) makes a waker reap them. */
static void test_enqueuer_killed_asleep_costs_one_wake(void)
{
    struct bq q;
    REQUIRE(make_full_queue(2, &q) == 0);
    struct report *rep = shared_report();
    REQUIRE(rep);
    struct qargs a = {.fd = q.seg.fd, .rep = rep, .timeout_ns = 30 * SEC};
    pid_t pid = spawn(child_enqueue_wait, &a);
    CHECK(wait_armed(&q.sh->space_seq));
    kill(pid, SIGKILL);
    reap(pid, 30000);
    CHECK_EQ(atomic_load(&q.sh->space_waiters), 1); /* it died counted */
    uint32_t seq0 = atomic_load(&q.sh->space_seq);
    CHECK(seq0 & FUTEX_SEQ_ARMED); /* ...and armed */
    struct bq_entry e = entry(99), out;
    CHECK_EQ(bq_dequeue(&q, &out), 0);
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    CHECK_EQ(atomic_load(&q.sh->space_seq), seq0 + 1); /* one wake, the word disarmed */
    CHECK_EQ(atomic_load(&q.idle_space_wakes), 1);     /* it woke nobody */
    for (int i = 0; i < 2 * FUTEX_IDLE_WAKES; i++) {
        e = entry(100 + (uint64_t)i);
        CHECK_EQ(bq_dequeue(&q, &out), 0);
        CHECK_EQ(bq_enqueue(&q, &e), 0);
    }
    CHECK_EQ(atomic_load(&q.sh->space_seq), seq0 + 1); /* no wake since */
    CHECK_EQ(atomic_load(&q.idle_space_wakes), 1);
    for (int i = 0; i < FUTEX_IDLE_WAKES; i++) {
        atomic_fetch_or(&q.sh->space_seq, FUTEX_SEQ_ARMED);
        e = entry(300 + (uint64_t)i);
        CHECK_EQ(bq_dequeue(&q, &out), 0);
        CHECK_EQ(bq_enqueue(&q, &e), 0);
    }
    CHECK_EQ(atomic_load(&q.sh->space_waiters), 0);
    for (int i = 0; i < BQ_SPACE_WAITER_SLOTS; i++)
        CHECK_EQ(atomic_load(&q.sh->space_tid[i]), 0);
    bq_detach(&q);
    munmap(rep, 4096);
}

/* ---- one wake per sleep, no lost wake-up ------------------------------------------ */

/* A consumer woken but not yet running (stopped here, as one waiting for
 * its producer's CPU would be) costs the producer one futex_wake: the
 * enqueues after the first find the word disarmed and make no call. */
static void test_woken_sleeper_not_woken_again(void)
{
    struct bq q;
    struct bq_params p = {.capacity = 64, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    REQUIRE(bq_create(&p, &q) == 0);
    struct report *rep = shared_report();
    REQUIRE(rep);
    atomic_store(&rep->status, 1);
    struct qargs a = {.fd = q.seg.fd, .rep = rep, .timeout_ns = 30 * SEC, .spin_ns = 0,
                      .cpu = -1};
    pid_t pid = spawn(child_dequeue_wait, &a);
    CHECK(wait_armed(&q.sh->data_seq));
    kill(pid, SIGSTOP);
    uint32_t seq0 = atomic_load(&q.sh->data_seq);
    for (uint64_t i = 1; i <= 50; i++) {
        struct bq_entry e = entry(i);
        CHECK_EQ(bq_enqueue(&q, &e), 0);
    }
    CHECK_EQ(atomic_load(&q.sh->data_seq), seq0 + 1); /* one wake, then none */
    /* (Whether that one FUTEX_WAKE found the sleeper in the kernel's queue is
     * not asked: a task stopped in futex(2) leaves the queue until it is
     * continued, and then sees the word moved.) */
    kill(pid, SIGCONT);
    CHECK_EQ(reap(pid, 30000), 0);
    CHECK_EQ(atomic_load(&rep->status), 0);
    CHECK_EQ(bq_count(&q), 49);
    bq_detach(&q);
    munmap(rep, 4096);
}

struct stream_args {
    int fd;
    uint64_t n;
    int cpu;
};

static int child_stream_producer(void *arg)
{
    struct stream_args *a = arg;
    pin(a->cpu);
    struct bq q;
    if (bq_attach(a->fd, &q) < 0)
        return 10;
    for (uint64_t i = 1; i <= a->n; i++) {
        struct bq_entry e = entry(i);
        if (bq_enqueue_wait(&q, &e, -1) != 0)
            return 11;
    }
    return bq_mark_end_of_data(&q) == 0 ? 0 : 12;
}

static int child_stream_consumer(void *arg)
{
    struct stream_args *a = arg;
    pin(a->cpu);
    struct bq q;
    if (bq_attach(a->fd, &q) < 0)
        return 10;
    uint64_t want = 1;
    for (;; want++) {
        struct bq_entry out;
        int r = bq_dequeue_wait(&q, &out, -1);
        if (r == -ENODATA)
            break;
        if (r != 0)
            return 11;
        if (out.handle != want)
            return 12;
    }
    return want - 1 == a->n ? 0 : 13;
}

/* Both sides blocking (enqueue_wait on a 4-entry queue, dequeue_wait), in
 * two processes, with the sleep slice raised from 100 ms to an hour: a
 * lost wake-up, which the slice would otherwise turn into a delay, leaves
 * a side asleep with work for it and the run misses its deadline. */
static void stream_both_blocking(int producer_cpu, int consumer_cpu)
{
    struct bq q;
    struct bq_params p = {.capacity = 4, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    REQUIRE(bq_create(&p, &q) == 0);
    futex_set_slice_ns(3600ull * SEC); /* inherited by the children */
    struct stream_args pa = {.fd = q.seg.fd, .n = 200000, .cpu = producer_cpu};
    struct stream_args ca = pa;
    ca.cpu = consumer_cpu;
    uint64_t t0 = mono_ns();
    pid_t cons = spawn(child_stream_consumer, &ca);
    pid_t prod = spawn(child_stream_producer, &pa);
    CHECK_EQ(reap(prod, 40000), 0);
    CHECK_EQ(reap(cons, 40000), 0);
    printf("blocking stream of %llu entries, producer on CPU %d, consumer on CPU %d: %.0f ms\n",
           (unsigned long long)pa.n, producer_cpu, consumer_cpu, (double)(mono_ns() - t0) / 1e6);
    futex_set_slice_ns(FUTEX_SLICE_NS);
    CHECK_EQ(bq_count(&q), 0);
    bq_detach(&q);
}

static void test_blocking_stream_same_cpu_loses_no_wake(void)
{
    stream_both_blocking(0, 0);
}

static void test_blocking_stream_two_cpus_loses_no_wake(void)
{
    stream_both_blocking(0, sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 1 : 0);
}

/* ---- blocking allocate -------------------------------------------------------- */

struct pargs {
    int fd;
    struct report *rep;
    int64_t timeout_ns;
    bool hold_one; /* allocate one block first, then wait for a second */
};

static int child_alloc_wait(void *arg)
{
    struct pargs *a = arg;
    struct pool p;
    if (pool_attach(a->fd, &p) < 0)
        return 10;
    uint64_t h;
    int r = pool_alloc_wait(&p, 1, &h, a->timeout_ns);
    atomic_store(&a->rep->returned_ns, mono_ns());
    atomic_store(&a->rep->status, r);
    if (r == 0)
        pool_release(&p, h, true);
    pool_detach(&p);
    return 0;
}

static int child_hold_all(void *arg)
{
    struct pargs *a = arg;
    struct pool p;
    if (pool_attach(a->fd, &p) < 0)
        return 10;
    uint64_t h;
    int n = 0;
    while (pool_alloc(&p, 1, &h) == 0)
        n++;
    atomic_store(&a->rep->status, n);
    pause(); /* until killed */
    return 0;
}

static int make_pool(uint32_t blocks, struct pool *p)
{
    struct pool_params pp = {.block_size = 4096, .block_count = blocks};
    return pool_create(&pp, p);
}

static void test_alloc_wait_woken_by_free_in_other_process(void)
{
    struct pool p;
    REQUIRE(make_pool(2, &p) == 0);
    uint64_t h[2];
    REQUIRE(pool_alloc(&p, 1, &h[0]) == 0);
    REQUIRE(pool_alloc(&p, 1, &h[1]) == 0);
    struct report *rep = shared_report();
    REQUIRE(rep);
    atomic_store(&rep->status, 1);
    struct pargs a = {.fd = p.seg.fd, .rep = rep, .timeout_ns = 30 * SEC};
    pid_t pid = spawn(child_alloc_wait, &a);
    CHECK(wait_armed(&p.sh->free_seq));
    CHECK_EQ(atomic_load(&rep->status), 1);
    uint32_t seq0 = atomic_load(&p.sh->free_seq);
    uint64_t t0 = mono_ns();
    CHECK_EQ(pool_release(&p, h[0], true), 0);
    CHECK(atomic_load(&p.sh->free_seq) != seq0); /* the free woke the sleeper */
    CHECK_EQ(reap(pid, 30000), 0);
    CHECK_EQ(atomic_load(&rep->status), 0);
    printf("allocate_wait: woken %.1f us after the free\n",
           (double)(atomic_load(&rep->returned_ns) - t0) / 1e3);
    struct pool_stats st;
    CHECK_EQ(pool_stats(&p, &st), 0);
    CHECK_EQ(st.alloc_failures, 0);
    CHECK_EQ(atomic_load(&p.sh->alloc_waiters), 0);
    /* Timeout and cancel. */
    uint64_t x;
    REQUIRE(pool_alloc(&p, 1, &h[0]) == 0); /* the child's block, released at its exit */
    t0 = mono_ns();
    CHECK_EQ(pool_alloc_wait(&p, 1, &x, 20000000), MBQ_POOL_ERR_ALLOCATION_FAILED);
    CHECK(mono_ns() - t0 >= 20000000u);
    CHECK_EQ(pool_stats(&p, &st), 0);
    CHECK_EQ(st.alloc_failures, 1);
    atomic_store(&rep->status, 1);
    pid = spawn(child_alloc_wait, &a);
    CHECK(wait_word(&p.sh->alloc_waiters, 1));
    t0 = mono_ns();
    CHECK_EQ(pool_cancel_waits(&p), 0);
    CHECK_EQ(reap(pid, 30000), 0);
    CHECK_EQ(atomic_load(&rep->status), -ECANCELED);
    printf("cancel of a blocked allocate_wait in another process: %.1f us\n",
           (double)(atomic_load(&rep->returned_ns) - t0) / 1e3);
    pool_release(&p, h[0], true);
    pool_release(&p, h[1], true);
    pool_detach(&p);
    munmap(rep, 4096);
}

/* A holder killed with every block: the reclaim (here run by this process,
 * as mbqd does for a dead client) frees them and wakes the allocator. */
static void test_alloc_wait_woken_by_reclaim(void)
{
    struct pool p;
    REQUIRE(make_pool(3, &p) == 0);
    struct report *hold = shared_report(), *rep = shared_report();
    REQUIRE(hold && rep);
    struct pargs ha = {.fd = p.seg.fd, .rep = hold};
    pid_t holder = spawn(child_hold_all, &ha);
    uint64_t deadline = mono_ns() + 30ull * SEC;
    while (atomic_load(&hold->status) != 3 && mono_ns() < deadline)
        sched_yield();
    REQUIRE(atomic_load(&hold->status) == 3);
    atomic_store(&rep->status, 1);
    struct pargs a = {.fd = p.seg.fd, .rep = rep, .timeout_ns = 30 * SEC};
    pid_t waiter = spawn(child_alloc_wait, &a);
    CHECK(wait_word(&p.sh->alloc_waiters, 1));
    /* The holder's slot: the one whose pid is the holder's. */
    int slot = -1;
    for (uint32_t s = 0; s < POOL_MAX_CLIENTS; s++)
        if (atomic_load(&p.clients[s].pid) == (uint32_t)holder)
            slot = (int)s;
    REQUIRE(slot >= 0);
    kill(holder, SIGKILL);
    reap(holder, 30000);
    uint64_t t0 = mono_ns();
    CHECK(pool_reclaim_slot(&p, (uint32_t)slot) >= 0);
    CHECK_EQ(reap(waiter, 30000), 0);
    CHECK_EQ(atomic_load(&rep->status), 0);
    printf("allocate_wait: woken %.1f us after the reclaim of a killed holder\n",
           (double)(atomic_load(&rep->returned_ns) - t0) / 1e3);
    pool_detach(&p);
    munmap(hold, 4096);
    munmap(rep, 4096);
}

/* As test_enqueuer_killed_asleep_costs_one_wake, for a blocking allocator:
 * one futex_wake for nobody, then none; reaped after a run of them. */
static void test_allocator_killed_asleep_costs_one_wake(void)
{
    struct pool p;
    REQUIRE(make_pool(1, &p) == 0);
    uint64_t h;
    REQUIRE(pool_alloc(&p, 1, &h) == 0);
    struct report *rep = shared_report();
    REQUIRE(rep);
    struct pargs a = {.fd = p.seg.fd, .rep = rep, .timeout_ns = 30 * SEC};
    pid_t pid = spawn(child_alloc_wait, &a);
    CHECK(wait_armed(&p.sh->free_seq));
    kill(pid, SIGKILL);
    reap(pid, 30000);
    CHECK_EQ(atomic_load(&p.sh->alloc_waiters), 1);
    uint32_t seq0 = atomic_load(&p.sh->free_seq);
    CHECK(seq0 & FUTEX_SEQ_ARMED);
    for (int i = 0; i < 2 * FUTEX_IDLE_WAKES; i++) {
        CHECK_EQ(pool_release(&p, h, true), 0);
        CHECK_EQ(pool_alloc(&p, 1, &h), 0);
    }
    CHECK_EQ(atomic_load(&p.sh->free_seq), seq0 + 1); /* one wake, then none */
    CHECK_EQ(atomic_load(&p.idle_wakes), 1);
    for (int i = 0; i < FUTEX_IDLE_WAKES; i++) {
        atomic_fetch_or(&p.sh->free_seq, FUTEX_SEQ_ARMED);
        CHECK_EQ(pool_release(&p, h, true), 0);
        CHECK_EQ(pool_alloc(&p, 1, &h), 0);
    }
    CHECK_EQ(atomic_load(&p.sh->alloc_waiters), 0);
    pool_release(&p, h, true);
    pool_detach(&p);
    munmap(rep, 4096);
}

/* ---- no spin with the producer on the same CPU ------------------------------------ */

/* A consumer told to spin up to 80 ms waits 100 ms on an empty queue whose
 * producer last ran on its CPU: it must sleep at once, using almost no CPU.
 * The same consumer on another CPU than the producer spins (the control,
 * printed: on a quiet machine ~80 ms of CPU, against ~0.1 ms). */
static uint64_t dequeue_wait_cpu(int consumer_cpu, int producer_cpu)
{
    struct bq q;
    struct bq_params p = {.capacity = 4, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    if (bq_create(&p, &q) < 0)
        return UINT64_MAX;
    /* The producer publishes its CPU with an enqueue from there. */
    cpu_set_t old;
    sched_getaffinity(0, sizeof old, &old);
    pin(producer_cpu);
    struct bq_entry e = entry(1), out;
    bq_enqueue(&q, &e);
    bq_dequeue(&q, &out);
    sched_setaffinity(0, sizeof old, &old);
    struct report *rep = shared_report();
    struct qargs a = {.fd = q.seg.fd, .rep = rep, .timeout_ns = 100000000, .spin_ns = 80000000,
                      .cpu = consumer_cpu};
    pid_t pid = spawn(child_dequeue_wait, &a);
    int st = reap(pid, 30000);
    uint64_t cpu = st == 0 && atomic_load(&rep->status) == -ETIMEDOUT ? atomic_load(&rep->cpu_ns)
                                                                     : UINT64_MAX;
    munmap(rep, 4096);
    bq_detach(&q);
    return cpu;
}

static void test_same_cpu_wait_does_not_spin(void)
{
    int cpus[2], n = first_cpus(cpus);
    REQUIRE(n >= 1);
    uint64_t same = dequeue_wait_cpu(cpus[0], cpus[0]);
    printf("dequeue_wait 100 ms, producer on the same CPU: %.2f ms of CPU\n", (double)same / 1e6);
    CHECK(same < 10000000u);
    if (n == 2) {
        uint64_t other = dequeue_wait_cpu(cpus[0], cpus[1]);
        printf("dequeue_wait 100 ms, producer on another CPU, 80 ms spin: %.2f ms of CPU\n",
               (double)other / 1e6);
        /* The control, printed only: a spinner gets CPU time only while
         * it is scheduled, which a loaded machine (or a sanitizer) cuts
         * short, so its figure bounds nothing. */
        CHECK(other != UINT64_MAX);
    }
}

/* ---- the runner words ------------------------------------------------------------- */

/* A sleeper skips its heavy barrier only if the other side's runner word
 * names its CPU, which is sound only while one live thread moves that side
 * (bq_sleep_barrier). So: one mover is named with its CPU; a second live
 * mover makes the word shared for good. */
struct mover {
    struct bq *q;
    int cpu;
    _Atomic int done;
};

static void *mover_enqueue(void *arg)
{
    struct mover *m = arg;
    pin(m->cpu);
    struct bq_entry e = entry(7);
    atomic_store(&m->done, bq_enqueue(m->q, &e) == 0 ? 1 : -1);
    return NULL;
}

static void test_runner_word_names_one_mover(void)
{
    cpu_set_t old;
    sched_getaffinity(0, sizeof old, &old);
    int cpu = -1;
    for (int i = 0; i < CPU_SETSIZE && cpu < 0; i++)
        if (CPU_ISSET(i, &old))
            cpu = i;
    pin(cpu);
    struct bq q;
    struct bq_params p = {.capacity = 8, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    REQUIRE(bq_create(&p, &q) == 0);
    CHECK_EQ(atomic_load(&q.sh->tail.runner), 0);
    struct bq_entry e = entry(1), out;
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    uint64_t me = (uint64_t)slock_self() << 32 | (uint32_t)(cpu + 1);
    CHECK_EQ(atomic_load(&q.sh->tail.runner), me);
    CHECK_EQ(bq_dequeue(&q, &out), 0);
    CHECK_EQ(atomic_load(&q.sh->head.runner), me);
    /* A second thread, alive (joined only after the check) moves the tail. */
    struct mover m = {.q = &q, .cpu = cpu};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, mover_enqueue, &m) == 0);
    while (atomic_load(&m.done) == 0)
        sched_yield();
    CHECK_EQ(atomic_load(&m.done), 1);
    CHECK_EQ(atomic_load(&q.sh->tail.runner), BQ_RUNNER_SHARED);
    pthread_join(t, NULL);
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    CHECK_EQ(atomic_load(&q.sh->tail.runner), BQ_RUNNER_SHARED);
    /* The head side keeps its single mover. */
    CHECK_EQ(bq_dequeue(&q, &out), 0);
    CHECK_EQ(atomic_load(&q.sh->head.runner), me);
    bq_detach(&q);
    sched_setaffinity(0, sizeof old, &old);
}

static int child_enqueue_once(void *arg)
{
    struct qargs *a = arg;
    struct bq q;
    if (bq_attach(a->fd, &q) < 0)
        return 10;
    struct bq_entry e = entry(5);
    int r = bq_enqueue(&q, &e);
    bq_detach(&q);
    return r == 0 ? 0 : 11;
}

/* A producer that exited leaves its name in the word; the next producer
 * takes the word over (the dead one has no store in flight) rather than
 * making it shared, so a restarted producer keeps the same-CPU shortcut. */
static void test_runner_word_taken_over_from_dead_mover(void)
{
    struct bq q;
    struct bq_params p = {.capacity = 8, .order = BQ_ORDER_FIFO, .full_policy = BQ_FULL_FAIL};
    REQUIRE(bq_create(&p, &q) == 0);
    struct report *rep = shared_report();
    struct qargs a = {.fd = q.seg.fd, .rep = rep, .cpu = -1};
    CHECK_EQ(reap(spawn(child_enqueue_once, &a), 30000), 0);
    uint64_t dead = atomic_load(&q.sh->tail.runner);
    CHECK(dead != 0 && dead != BQ_RUNNER_SHARED);
    CHECK((uint32_t)(dead >> 32) != slock_self());
    struct bq_entry e = entry(1);
    CHECK_EQ(bq_enqueue(&q, &e), 0);
    CHECK_EQ((uint32_t)(atomic_load(&q.sh->tail.runner) >> 32), slock_self());
    munmap(rep, 4096);
    bq_detach(&q);
}

CHECK_MAIN(CASE(test_enqueue_wait_blocks_until_dequeue), CASE(test_enqueue_wait_times_out),
           CASE(test_cancel_wakes_enqueue_in_other_process),
           CASE(test_cancel_wakes_dequeue_in_other_process),
           CASE(test_producer_lost_wakes_dequeue),
           CASE(test_cancel_wakes_dequeue_in_other_thread),
           CASE(test_wake_ahead_wakes_and_the_sleeper_spins),
           CASE(test_enqueuer_killed_asleep_costs_one_wake),
           CASE(test_woken_sleeper_not_woken_again),
           CASE(test_blocking_stream_same_cpu_loses_no_wake),
           CASE(test_blocking_stream_two_cpus_loses_no_wake),
           CASE(test_alloc_wait_woken_by_free_in_other_process),
           CASE(test_alloc_wait_woken_by_reclaim), CASE(test_allocator_killed_asleep_costs_one_wake),
           CASE(test_same_cpu_wait_does_not_spin), CASE(test_runner_word_names_one_mover),
           CASE(test_runner_word_taken_over_from_dead_mover))
