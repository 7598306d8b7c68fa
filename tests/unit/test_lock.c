/* slock: the owner forms, the bounded wait, the bias that gives up.
 *
 * What a user relies on: a lock held by a live owner that does not let go
 * fails the caller with -EBUSY within its limit (or its own deadline) and
 * leaves nothing held; a client-id owner is dead exactly when the liveness
 * table says so; the owner words of a process's live threads are distinct
 * (the bias fast path enters on equality) and an exited thread's index is
 * reused; a revoker that gives up on a live bias holder leaves the bias
 * naming it, revoked, so that the next revoker waits for it again; a
 * holder stopped between its two looks at the bias cannot let anyone in
 * beside the next holder. */
#include "check.h"

#include <errno.h>
#include <lock_layout.h>
#include <futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static struct slock_ids *ids_table(void)
{
    void *m = mmap(NULL, sizeof(struct slock_ids), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

/* ---- the bounded wait --------------------------------------------------- */

static void test_wait_limit_and_deadline(void)
{
    struct slock *l = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(l != MAP_FAILED);
    /* a live owner that is not us: our parent's pid (alive: it waits for us) */
    atomic_store(&l->word, (uint32_t)getppid());
    slock_set_wait_limit(100000000u); /* 100 ms */
    uint64_t t0 = mono_ns();
    CHECK_EQ(slock_lock(l), -EBUSY);
    uint64_t ms = (mono_ns() - t0) / 1000000u;
    CHECK(ms >= 90 && ms < 5000);
    CHECK_EQ(atomic_load(&l->word) & SLOCK_TID_MASK, (uint32_t)getppid()); /* untouched */
    /* a thread's deadline shortens it */
    uint64_t prev = slock_set_deadline(mono_ns() + 20000000u);
    t0 = mono_ns();
    CHECK_EQ(slock_lock(l), -EBUSY);
    CHECK((mono_ns() - t0) / 1000000u < 90);
    slock_set_deadline(prev);
    /* limit 0: only tries */
    slock_set_wait_limit(0);
    t0 = mono_ns();
    CHECK_EQ(slock_lock(l), -EBUSY);
    CHECK((mono_ns() - t0) / 1000000u < 50);
    /* a dead owner is still taken over */
    atomic_store(&l->word, 0x3ffffff0u);
    CHECK_EQ(slock_lock(l), SLOCK_RECOVERED);
    slock_unlock(l);
    slock_set_wait_limit(SLOCK_WAIT_DEFAULT_NS);
    munmap(l, 4096);
}

/* ---- client ids ------------------------------------------------------------- */

static void *take_index(void *arg)
{
    *(uint32_t *)arg = slock_self();
    return NULL;
}

static int child_identity(void *unused)
{
    (void)unused;
    struct slock_ids *ids = ids_table();
    if (!ids)
        return 10;
    atomic_store(&ids->live[5], 1);
    slock_set_identity(5, ids);
    if (slock_identity() != 5)
        return 11;
    uint32_t me = slock_self();
    if (!(me & SLOCK_CID) || ((me >> SLOCK_CID_SHIFT) & SLOCK_CID_MAX) != 5)
        return 12;
    /* liveness is the table's word */
    if (!slock_tid_alive(me))
        return 13;
    uint32_t other = SLOCK_CID | 6u << SLOCK_CID_SHIFT;
    if (slock_tid_alive(other))
        return 14;
    atomic_store(&ids->live[6], 1);
    if (!slock_tid_alive(other))
        return 15;
    /* live threads get distinct words; an exited one's index comes back */
    uint32_t a = 0, b = 0, c = 0;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, take_index, &a);
    pthread_join(ta, NULL);
    pthread_create(&tb, NULL, take_index, &b);
    pthread_join(tb, NULL);
    if (a == me || b == me || a != b) /* b reused a's index */
        return 16;
    pthread_t t1, t2;
    pthread_create(&t1, NULL, take_index, &a);
    pthread_create(&t2, NULL, take_index, &c);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    if (a == me || c == me)
        return 17;
    /* a lock owned by a dead id is taken over */
    struct slock l = {0};
    atomic_store(&l.word, SLOCK_CID | 7u << SLOCK_CID_SHIFT);
    if (slock_lock(&l) != SLOCK_RECOVERED)
        return 18;
    if ((atomic_load(&l.word) & SLOCK_TID_MASK) != me)
        return 19;
    slock_unlock(&l);
    /* a fork child goes back to thread ids */
    pid_t p = fork();
    if (p == 0)
        _exit(slock_identity() == 0 && !(slock_self() & SLOCK_CID) ? 0 : 1);
    int st;
    waitpid(p, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 20;
    return 0;
}

static void test_client_id_owners(void)
{
    /* in a child: the identity is per process */
    fflush(NULL);
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0)
        _exit(child_identity(NULL));
    int st;
    REQUIRE(waitpid(p, &st, 0) == p);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    /* without a table, a client-id word can only be a scribble: dead */
    CHECK(!slock_tid_alive(SLOCK_CID | 9u << SLOCK_CID_SHIFT));
}

/* Two threads alternating on one lock never hold it at once, with owner
 * words from client ids (the bias fast path compares them). */
struct alt {
    struct bslock *b;
    long *counter;
    int rounds;
};

static void *alternate(void *arg)
{
    struct alt *a = arg;
    for (int i = 0; i < a->rounds; i++) {
        int how = bslock_lock(a->b);
        if (how < 0)
            continue;
        long v = *a->counter;
        for (int k = 0; k < 10; k++)
            cpu_relax();
        *a->counter = v + 1;
        bslock_unlock(a->b, how);
    }
    return NULL;
}

static int child_bias(void *unused)
{
    (void)unused;
    struct slock_ids *ids = ids_table();
    if (!ids)
        return 10;
    atomic_store(&ids->live[3], 1);
    slock_set_identity(3, ids);
    struct bslock b = {0};
    long counter = 0;
    struct alt a = {&b, &counter, 20000};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, alternate, &a);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    return counter == 60000 ? 0 : 1;
}

static void test_bias_with_client_ids(void)
{
    fflush(NULL);
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0)
        _exit(child_bias(NULL));
    int st;
    REQUIRE(waitpid(p, &st, 0) == p);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- the revoke that gives up -------------------------------------------- */

static void test_revoke_gives_up_and_keeps_the_holder(void)
{
    struct bslock *b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(b != MAP_FAILED);
    if (!slock_membarrier_register()) {
        printf("# skipped: no expedited membarrier here, so no lock is ever biased\n");
        return;
    }
    /* a live holder inside its biased section: our parent */
    uint32_t holder = (uint32_t)getppid();
    atomic_store(&b->bias, holder);
    atomic_store(&b->busy, 1);
    slock_set_wait_limit(50000000u);
    CHECK_EQ(bslock_lock(b), -EBUSY);
    CHECK_EQ(atomic_load(&b->lock.word), 0); /* nothing held */
    CHECK_EQ(atomic_load(&b->bias), holder | BSLOCK_REVOKED);
    CHECK_EQ(bslock_lock(b), -EBUSY); /* waits for it again */
    /* it leaves: the next lock gets through, the bias gone */
    atomic_store(&b->busy, 0);
    int how = bslock_lock(b);
    CHECK_EQ(how, SLOCK_ACQUIRED);
    CHECK_EQ(atomic_load(&b->bias), 0);
    bslock_unlock(b, how);
    CHECK_EQ(bslock_trylock(b), SLOCK_ACQUIRED);
    bslock_unlock(b, SLOCK_ACQUIRED);
    slock_set_wait_limit(SLOCK_WAIT_DEFAULT_NS);
    munmap(b, 4096);
}

/* ---- a holder stopped between its two looks at the bias ---------------- */

/* The other thread: takes the lock over and over (the first time revokes
 * our bias), then once more, and stays inside until told to leave. */
struct taker {
    struct bslock *b;
    pthread_barrier_t inside, leave;
    int how;
};

static void *take_and_hold(void *arg)
{
    struct taker *t = arg;
    for (unsigned i = 0; i < 4 * BSLOCK_STREAK; i++) {
        int how = bslock_lock(t->b);
        if (how >= 0)
            bslock_unlock(t->b, how);
    }
    t->how = bslock_lock(t->b);
    pthread_barrier_wait(&t->inside);
    pthread_barrier_wait(&t->leave);
    if (t->how >= 0)
        bslock_unlock(t->b, t->how);
    return NULL;
}

/* A bias holder preempted after its first look at the bias (still its
 * own) and before its store to busy, while another thread revokes the
 * bias and earns one of its own, would clear busy under that thread's feet
 * when it resumes and backs out, and then walk in beside it. The lock must
 * keep them apart: no bias goes to the other thread while the stopped one
 * has not come back through the lock, so the resumed one finds the lock
 * held. */
static void test_holder_stopped_between_its_looks(void)
{
    if (!slock_membarrier_register()) {
        printf("# skipped: no expedited membarrier here, so no lock is ever biased\n");
        return;
    }
    struct bslock b = {0};
    uint32_t self = slock_self();
    for (unsigned i = 0; i < 4 * BSLOCK_STREAK && atomic_load(&b.bias) != self; i++) {
        int how = bslock_lock(&b);
        REQUIRE(how >= 0);
        bslock_unlock(&b, how);
    }
    REQUIRE(atomic_load(&b.bias) == self);
    /* the first look: the bias is ours; here we stop */
    REQUIRE(bslock_bias_looks_mine(&b, self));

    struct taker t = {.b = &b};
    pthread_barrier_init(&t.inside, NULL, 2);
    pthread_barrier_init(&t.leave, NULL, 2);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, take_and_hold, &t) == 0);
    pthread_barrier_wait(&t.inside);
    CHECK(t.how >= 0);
    CHECK(t.how != BSLOCK_BIASED); /* no bias while we may be between looks */

    /* we resume: the second look sends us out, and the lock is held */
    CHECK(!bslock_bias_enter(&b, self));
    slock_set_wait_limit(50000000u);
    int how = bslock_lock(&b);
    CHECK_EQ(how, -EBUSY);
    if (how >= 0)
        bslock_unlock(&b, how);
    slock_set_wait_limit(SLOCK_WAIT_DEFAULT_NS);

    pthread_barrier_wait(&t.leave);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&t.inside);
    pthread_barrier_destroy(&t.leave);

    /* back through the lock, we may be given the bias again */
    for (unsigned i = 0; i < 16 * BSLOCK_STREAK && atomic_load(&b.bias) != self; i++) {
        how = bslock_lock(&b);
        REQUIRE(how >= 0);
        bslock_unlock(&b, how);
    }
    CHECK_EQ(atomic_load(&b.bias), self);
}

CHECK_MAIN(CASE(test_wait_limit_and_deadline), CASE(test_client_id_owners),
           CASE(test_bias_with_client_ids), CASE(test_revoke_gives_up_and_keeps_the_holder),
           CASE(test_holder_stopped_between_its_looks))
