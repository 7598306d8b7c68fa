/* Simple queue across real processes: a fork()ed peer attaches to the same
 * segment and one side streams 1..N to the other, which checks that every
 * value arrives exactly once and in order. Both sides spin (cpu_relax) on
 * full/empty as a real-time user would; there is no sleep anywhere. A side
 * whose peer disappears, or that makes no progress for STALL_NS, gives up
 * with a distinct code rather than hanging the test. */
#include "check.h"

#include "futex.h"
#include "sq_layout.h"

#include <mbq/status.h>

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define STALL_NS 30000000000ull /* 30 s without progress: the peer is stuck */
#define SPINS_PER_LOOK 4096     /* spins between liveness checks (syscalls) */

enum {
    OUT_OK = 0,
    OUT_ATTACH_FAILED = 10,
    OUT_STALLED = 11,
    OUT_PEER_GONE = 12,
    OUT_WRONG_VALUE = 13,
    OUT_EXTRA_VALUE = 14,
    OUT_ENQUEUE_ERROR = 15,
    OUT_BAD_COUNT = 16,
    OUT_PEEK_MISMATCH = 17,
};

/* Who is on the other end, so a spinning side can notice it died. */
struct peer {
    pid_t child;  /* > 0 in the parent */
    pid_t parent; /* > 0 in the child */
    int reaped;
    int status;
};

static int peer_gone(struct peer *p)
{
    if (p->child > 0) {
        if (p->reaped)
            return 1;
        if (waitpid(p->child, &p->status, WNOHANG) == p->child) {
            p->reaped = 1;
            return 1;
        }
        return 0;
    }
    return getppid() != p->parent;
}

/* Called on every unsuccessful spin; returns a failure code, or 0 to keep
 * spinning. */
static int spin_once(struct peer *p, uint64_t *spins, uint64_t *since_ns)
{
    cpu_relax();
    if (++*spins % SPINS_PER_LOOK != 0)
        return 0;
    if (peer_gone(p))
        return OUT_PEER_GONE;
    uint64_t now = mono_ns();
    if (*since_ns == 0)
        *since_ns = now;
    else if (now - *since_ns > STALL_NS)
        return OUT_STALLED;
    return 0;
}

static int produce(struct sq *q, uint64_t n, struct peer *p)
{
    int32_t cap = sq_capacity(q);
    uint64_t spins = 0;
    for (uint64_t v = 1; v <= n; v++) {
        uint64_t since = 0;
        int rc;
        while ((rc = sq_enqueue(q, v)) == MBQ_SQ_ERR_QUEUE_IS_FULL) {
            int why = spin_once(p, &spins, &since);
            if (why)
                return why;
        }
        if (rc != 0)
            return OUT_ENQUEUE_ERROR;
        if (v % 4096 == 0) {
            int32_t c = sq_count(q); /* a snapshot, but never out of range */
            float f = sq_fullness(q);
            if (c < 0 || c > cap || !(f >= 0.0f && f <= 1.0f))
                return OUT_BAD_COUNT;
        }
    }
    return OUT_OK;
}

static int consume(struct sq *q, uint64_t n, int peek, struct peer *p)
{
    int32_t cap = sq_capacity(q);
    uint64_t spins = 0;
    for (uint64_t want = 1; want <= n; want++) {
        uint64_t since = 0, v;
        for (;;) {
            if (peek) {
                /* The consumer may look before it takes: what it saw must be
                 * what it gets, since only it moves head. */
                uint64_t h = sq_peek(q);
                if (h != 0) {
                    v = sq_dequeue(q);
                    if (v != h)
                        return OUT_PEEK_MISMATCH;
                    break;
                }
            } else if ((v = sq_dequeue(q)) != 0) {
                break;
            }
            int why = spin_once(p, &spins, &since);
            if (why)
                return why;
        }
        if (v != want) {
            fprintf(stderr, "consumer: got %llu, expected %llu\n", (unsigned long long)v,
                    (unsigned long long)want);
            return OUT_WRONG_VALUE;
        }
        if (want % 4096 == 0) {
            int32_t c = sq_count(q);
            if (c < 0 || c > cap)
                return OUT_BAD_COUNT;
        }
    }
    /* The producer stops at n: anything more was duplicated or invented. */
    if (sq_dequeue(q) != 0 || sq_count(q) != 0)
        return OUT_EXTRA_VALUE;
    return OUT_OK;
}

enum role { CHILD_CONSUMES, CHILD_PRODUCES };

struct stream_params {
    int32_t capacity;
    uint64_t n;
    enum role role;
    int peek;        /* the consumer peeks before each dequeue */
    int child_inherits; /* use the mapping inherited over fork, not sq_attach */
};

static void child_main(struct sq *inherited, const struct stream_params *sp, pid_t parent)
{
    /* The parent's failure must not leave us spinning forever. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct peer p = {.parent = parent};
    if (peer_gone(&p))
        _exit(OUT_PEER_GONE);
    struct sq own, *q = inherited;
    if (!sp->child_inherits) {
        if (sq_attach(inherited->seg.fd, &own) != 0)
            _exit(OUT_ATTACH_FAILED);
        q = &own;
    }
    int rc = sp->role == CHILD_CONSUMES ? consume(q, sp->n, sp->peek, &p)
                                        : produce(q, sp->n, &p);
    if (!sp->child_inherits)
        sq_detach(&own);
    _exit(rc); /* no atexit handlers or stdio flushes of the parent's state */
}

static void run_stream(const struct stream_params *sp)
{
    struct sq q;
    REQUIRE(sq_create(sp->capacity, &q) == 0);
    fflush(NULL);
    uint64_t t0 = mono_ns();
    pid_t parent = getpid();
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        child_main(&q, sp, parent);

    struct peer p = {.child = pid};
    int rc = sp->role == CHILD_CONSUMES ? produce(&q, sp->n, &p)
                                        : consume(&q, sp->n, sp->peek, &p);
    if (rc != OUT_OK)
        kill(pid, SIGKILL); /* don't wait for a child spinning on our corpse */
    if (!p.reaped) {
        pid_t w;
        do
            w = waitpid(pid, &p.status, 0);
        while (w < 0 && errno == EINTR);
        CHECK_EQ(w, pid);
    }
    uint64_t ns = mono_ns() - t0;

    CHECK_EQ(rc, OUT_OK);
    CHECK(WIFEXITED(p.status));
    if (WIFEXITED(p.status))
        CHECK_EQ(WEXITSTATUS(p.status), OUT_OK);
    else if (WIFSIGNALED(p.status))
        fprintf(stderr, "child killed by signal %d\n", WTERMSIG(p.status));
    /* Everything produced was consumed, through both mappings. */
    CHECK_EQ(sq_count(&q), 0);
    CHECK_EQ(sq_dequeue(&q), 0);
    CHECK(atomic_load(&q.sh->tail) == sp->n);
    CHECK(atomic_load(&q.sh->head) == sp->n);
    printf("# capacity %d, %llu values, child %s%s%s: %.1f ms, %.1f M values/s\n",
           sp->capacity, (unsigned long long)sp->n,
           sp->role == CHILD_CONSUMES ? "consumes" : "produces",
           sp->peek ? ", peeking" : "", sp->child_inherits ? ", inherited mapping" : "",
           (double)ns / 1e6, (double)sp->n * 1e3 / (double)ns);
    sq_detach(&q);
}

static void test_stream_to_child(void)
{
    run_stream(&(struct stream_params){.capacity = 1024, .n = 1000000,
                                       .role = CHILD_CONSUMES});
}

static void test_stream_from_child(void)
{
    /* Not a power of two: the modulo path of the index. */
    run_stream(&(struct stream_params){.capacity = 1000, .n = 1000000,
                                       .role = CHILD_PRODUCES});
}

static void test_stream_inherited_mapping(void)
{
    run_stream(&(struct stream_params){.capacity = 256, .n = 1000000,
                                       .role = CHILD_CONSUMES, .child_inherits = 1});
}

/* Tiny rings make nearly every operation hit the full or empty edge, where
 * the cached counters are reloaded. */
static void test_stream_capacity_1(void)
{
    run_stream(&(struct stream_params){.capacity = 1, .n = 200000,
                                       .role = CHILD_CONSUMES, .peek = 1});
}

static void test_stream_capacity_3(void)
{
    run_stream(&(struct stream_params){.capacity = 3, .n = 300000,
                                       .role = CHILD_PRODUCES, .peek = 1});
}

CHECK_MAIN(CASE(test_stream_to_child), CASE(test_stream_from_child),
           CASE(test_stream_inherited_mapping), CASE(test_stream_capacity_1),
           CASE(test_stream_capacity_3))
