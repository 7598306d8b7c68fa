/* Intents and hand-overs: how a reference of a block moves from one
 * holder to another without a death in between ever leaving the refcount
 * too low (see "Accounting" in pool.h).
 *
 * Role: each thread's intent record in its client slot, the moves that
 * use it (pool_move_begin/end, disown/adopt: a client's holding handed to
 * a queue and back), and their cold paths.
 *
 * Invariants:
 *  - a move raises the refcount before it records the new holder and
 *    removes a holder before it lowers the refcount, under an intent that
 *    names the block from before its first step until after its last;
 *  - a record belongs to one thread (owner); a thread takes its own, a free
 *    one, or one whose owner exited with it clear — never a live owner's;
 *  - a slot's holdings never exceed the references it holds: disown fails
 *    on a zero holding, adopt adds one only for a reference the caller got.
 * Limits: POOL_INTENTS records per slot; a thread beyond them counts its
 * moves in intent_overflow, and while that is non-zero every recount waits
 * (the blocks of those moves are unknown).
 *
 * How a recount and a move meet: a thread that moves a reference of block X
 * first stores X's handle in its intent record, then makes the move's steps,
 * then clears the record. A recount (pool_audit) of X sets POOL_RC_AUDIT in
 * X's ref word, forces a barrier on every CPU, reads every live slot's
 * records, counts, and CASes the ref word from what it saw. So a mover either
 * is seen (the recount gives up), or comes after the barrier: then it sees the
 * audit bit before its first step, and clears it (every CAS of a live ref word
 * does, and the steps that are not such a CAS check for it first), so the
 * recount's final CAS fails. The mover's half costs a store to its own record
 * and a load of the ref word it is about to use: no fence where the process is
 * registered for membarrier (slock_heavy_barrier reaches it), a fence where it
 * is not. */
#include "pool_internal.h"

#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A thread's record of a slot: found through a small per-thread cache,
 * checked against the record's owner (a fork child, or a takeover, makes
 * it another thread's). */
struct pool_itls {
    const struct pool_client *c;
    struct pool_intent *rec;
    uint32_t tid;
};

static _Thread_local struct pool_itls pool_itls[4];

static _Thread_local uint32_t pool_itls_next;

/* Claims a record of slot c for thread tid: its own, a free one, or one
 * whose owner thread (of this process) has exited and left it clear. NULL
 * when all POOL_INTENTS are taken. */
static struct pool_intent *pool_intent_claim(struct pool_client *c, uint32_t tid)
{
    struct pool_intent *rec = NULL;
    for (unsigned i = 0; i < POOL_INTENTS && !rec; i++)
        if (atomic_load_explicit(&c->intent[i].owner, memory_order_relaxed) == tid)
            rec = &c->intent[i];
    for (unsigned i = 0; i < POOL_INTENTS && !rec; i++) {
        uint32_t o = 0;
        if (atomic_compare_exchange_strong(&c->intent[i].owner, &o, tid))
            rec = &c->intent[i];
    }
    /* Only a thread-id owner can be asked whether it exited. A client-id
     * owner (lock.h: id and thread index) is not a task: tgkill would call
     * every one of them dead and take a live thread's record between two of
     * its moves. Its record passes to the next thread given its index (the
     * lowest free one is given first), by the first loop. */
    for (unsigned i = 0; i < POOL_INTENTS && !rec; i++) {
        struct pool_intent *x = &c->intent[i];
        uint32_t o = atomic_load_explicit(&x->owner, memory_order_acquire);
        if ((o & SLOCK_CID) || atomic_load_explicit(&x->h[0], memory_order_relaxed) ||
            atomic_load_explicit(&x->h[1], memory_order_relaxed) ||
            !(syscall(SYS_tgkill, getpid(), (pid_t)o, 0) < 0 && errno == ESRCH))
            continue;
        if (atomic_compare_exchange_strong(&x->owner, &o, tid))
            rec = x;
    }
    if (rec) {
        uint32_t k = pool_itls_next++ & 3;
        pool_itls[k] = (struct pool_itls){.c = c, .rec = rec, .tid = tid};
    }
    return rec;
}

/* The calling thread's record when it is not the mapping's first mover:
 * the thread-local cache, else a claim (which may make it the first). */
__attribute__((noinline, cold)) struct pool_intent *
pool_intent_rec_slow(struct pool *p, uint32_t tid)
{
    struct pool_client *c = &p->clients[p->slot];
    for (unsigned i = 0; i < 4; i++) {
        const struct pool_itls *t = &pool_itls[i];
        if (t->c == c && t->tid == tid &&
            atomic_load_explicit(&t->rec->owner, memory_order_relaxed) == tid)
            return t->rec;
    }
    struct pool_intent *rec = pool_intent_claim(c, tid);
    uint32_t none = 0;
    if (rec && atomic_load_explicit(&p->irec_tid, memory_order_relaxed) == 0) {
        p->irec = rec; /* set once, before irec_tid names its thread */
        atomic_compare_exchange_strong_explicit(&p->irec_tid, &none, tid, memory_order_release,
                                                memory_order_relaxed);
    }
    return rec;
}

/* A move without a record (all taken): counted as one of unknown block. */
__attribute__((noinline, cold)) struct pool_itok pool_intent_overflow(struct pool *p)
{
    _Atomic uint32_t *ovf = &p->clients[p->slot].intent_overflow;
    atomic_fetch_add_explicit(ovf, 1, memory_order_seq_cst);
    return (struct pool_itok){NULL, ovf};
}

/* Clears a recount's audit bit, so that its final CAS fails. */
__attribute__((noinline, cold)) void pool_audit_spoil(_Atomic uint64_t *ref, uint64_t r)
{
    while ((r & POOL_AUDIT64) &&
           !atomic_compare_exchange_weak_explicit(ref, &r, ref_plain(r), memory_order_acq_rel,
                                                  memory_order_relaxed))
        ;
}

/* pool_move_begin for every case its fast path leaves out: a thread not
 * the mapping's first mover, no record, no membarrier, a recount to spoil. */
static __attribute__((noinline)) void pool_move_begin_slow(struct pool *p, uint64_t handle,
                                                           unsigned which)
{
    struct pool_intent *rec = pool_intent_rec(p);
    MBQ_TRACE((uint32_t)handle - 1, TR_INTENT_SET, handle,
              which | p->slot << 8 | (rec ? 0 : 0xff0000));
    if (rec)
        atomic_store_explicit(&rec->h[which], handle, memory_order_relaxed);
    else
        (void)pool_intent_overflow(p); /* ended by pool_move_end's which */
    pool_intent_fence(p, (uint32_t)handle - 1);
}

/* The fast paths below are leaves (no register saved, one branch to a
 * slow path): they run on every dequeue and hand-over. Each takes a handle
 * already decoded (idx) and a pool already checked. */
static inline bool pool_move_set_fast(struct pool *p, uint32_t idx, uint64_t handle,
                                      unsigned which)
{
    const uint32_t tid = slock_tid_cache;
    struct pool_intent *rec = p->irec;
    if (__builtin_expect(tid == 0 ||
                             atomic_load_explicit(&p->irec_tid, memory_order_relaxed) != tid ||
                             atomic_load_explicit(&rec->owner, memory_order_relaxed) != tid ||
                             !slock_membarrier_ready(),
                         0))
        return false;
    atomic_store_explicit(&rec->h[which], handle, memory_order_relaxed);
    MBQ_TRACE(idx, TR_INTENT_SET, handle, which | p->slot << 8 | 0x10000);
    atomic_signal_fence(memory_order_seq_cst); /* slock_heavy_barrier fences us */
    _Atomic uint64_t *ref = &p->blocks[idx].ref;
    uint64_t r = atomic_load_explicit(ref, memory_order_relaxed);
    if (__builtin_expect((r & POOL_AUDIT64) != 0, 0))
        pool_audit_spoil(ref, r);
    return true;
}

static inline bool pool_move_clear_fast(struct pool *p, unsigned which)
{
    const uint32_t tid = slock_tid_cache;
    struct pool_intent *rec = p->irec;
    if (__builtin_expect(tid == 0 ||
                             atomic_load_explicit(&p->irec_tid, memory_order_relaxed) != tid ||
                             atomic_load_explicit(&rec->owner, memory_order_relaxed) != tid,
                         0))
        return false;
#ifdef MBQ_POOL_TRACE
    {
        uint64_t th = atomic_load_explicit(&rec->h[which], memory_order_relaxed);
        MBQ_TRACE((uint32_t)th - 1, TR_INTENT_CLR, th, which | p->slot << 8 | 0x10000);
    }
#endif
    atomic_store_explicit(&rec->h[which], 0, memory_order_release);
    return true;
}

static __attribute__((noinline)) void pool_move_end_slow(struct pool *p, unsigned which)
{
    struct pool_intent *rec = pool_intent_rec(p);
    if (rec) {
#ifdef MBQ_POOL_TRACE
        uint64_t th = atomic_load_explicit(&rec->h[which], memory_order_relaxed);
        MBQ_TRACE((uint32_t)th - 1, TR_INTENT_CLR, th, which | p->slot << 8);
#endif
        atomic_store_explicit(&rec->h[which], 0, memory_order_release);
        return;
    }
    _Atomic uint32_t *ovf = &p->clients[p->slot].intent_overflow;
    if (atomic_load_explicit(ovf, memory_order_relaxed))
        atomic_fetch_sub_explicit(ovf, 1, memory_order_release);
}

void pool_move_hold(struct pool *p)
{
    if (p && p->sh)
        (void)pool_intent_overflow(p);
}

void pool_move_unhold(struct pool *p)
{
    if (p && p->sh)
        pool_intent_close((struct pool_itok){NULL, &p->clients[p->slot].intent_overflow});
}

void pool_move_begin(struct pool *p, uint64_t handle, unsigned which)
{
    const uint32_t idx = (uint32_t)handle - 1;
    if (__builtin_expect(!p || !p->sh || which > 1 || (handle >> 32) == 0 ||
                             idx >= p->block_count,
                         0))
        return;
    if (!pool_move_set_fast(p, idx, handle, which))
        pool_move_begin_slow(p, handle, which);
}

void pool_move_end(struct pool *p, unsigned which)
{
    if (__builtin_expect(!p || !p->sh || which > 1, 0))
        return;
    if (!pool_move_clear_fast(p, which))
        pool_move_end_slow(p, which);
}

int pool_disown(struct pool *p, uint64_t handle)
{
    uint32_t idx, gen;
    if (!p || !p->sh || !pool_decode(p, handle, &idx, &gen))
        return -EINVAL;
    uint64_t r = atomic_load_explicit(&p->blocks[idx].ref, memory_order_acquire);
    if (ref_gen(r) != gen || !rc_live(ref_count(r)))
        return -ESTALE;
    _Atomic uint32_t *hold = pool_holding(p, p->slot, idx);
    /* Inside the caller's intent (pool_move_begin, which also made a
     * recount in progress fail), which lasts until the entry is in. */
    uint32_t h = atomic_load_explicit(hold, memory_order_relaxed);
    do {
        if (h == 0)
            return -EINVAL; /* not ours to hand over */
    } while (!atomic_compare_exchange_weak_explicit(hold, &h, h - 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    MBQ_TRACE(idx, TR_DISOWN, handle, (h - 1) | p->slot << 8);
    return 0;
}

int pool_adopt(struct pool *p, uint64_t handle)
{
    uint32_t idx, gen;
    if (!p || !p->sh || !pool_decode(p, handle, &idx, &gen))
        return -EINVAL;
    /* The reference is on its way to a release here, which writes this
     * line: fetch it for writing now, rather than shared now and again
     * exclusive then (one transfer from the producer's core, not two). */
    __builtin_prefetch(&p->blocks[idx].ref, 1);
    /* And the head of the data, which the caller reads next, so that its
     * miss overlaps the ref word's instead of following it. */
    if (p->nclasses <= 1) /* one class: no lookup for a hint */
        __builtin_prefetch(p->data + (size_t)idx * p->block_size, 0);
    uint64_t r = atomic_load_explicit(&p->blocks[idx].ref, memory_order_acquire);
    if (ref_gen(r) != gen || !rc_live(ref_count(r)))
        return -ESTALE;
    /* Inside the dequeue's intent (set before the entry left the queue,
     * cleared by the caller once this holding is recorded). */
    atomic_fetch_add_explicit(pool_holding(p, p->slot, idx), 1, memory_order_relaxed);
    MBQ_TRACE(idx, TR_ADOPT, handle, p->slot << 8);
    return 0;
}

int pool_disown_begin(struct pool *p, uint64_t handle)
{
    uint32_t idx, gen;
    if (!p || !p->sh || !pool_decode(p, handle, &idx, &gen))
        return -EINVAL;
    if (!pool_move_set_fast(p, idx, handle, 0))
        pool_move_begin_slow(p, handle, 0);
    int r = pool_disown(p, handle);
    if (__builtin_expect(r != 0, 0))
        pool_move_end(p, 0);
    return r;
}

int pool_handover_begin(struct pool *p, uint64_t handle, struct pool_meta *m)
{
    uint32_t idx, gen;
    if (__builtin_expect(!p || !p->sh || !pool_decode(p, handle, &idx, &gen), 0))
        return -ESTALE;
    struct pool_block *b = &p->blocks[idx];
    /* The intent first (it also makes a recount in progress fail), then
     * the checks and the holding's decrement, as pool_disown_begin. */
    if (!pool_move_set_fast(p, idx, handle, 0))
        pool_move_begin_slow(p, handle, 0);
    uint64_t r = atomic_load_explicit(&b->ref, memory_order_acquire);
    if (__builtin_expect(ref_gen(r) != gen || !rc_live(ref_count(r)), 0)) {
        pool_move_end(p, 0);
        return -ESTALE;
    }
    _Atomic uint32_t *hold = pool_holding(p, p->slot, idx);
    uint32_t h = atomic_load_explicit(hold, memory_order_relaxed);
    do {
        if (__builtin_expect(h == 0, 0)) {
            pool_move_end(p, 0);
            return -EINVAL; /* not ours to hand over */
        }
    } while (!atomic_compare_exchange_weak_explicit(hold, &h, h - 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    MBQ_TRACE(idx, TR_DISOWN, handle, (h - 1) | p->slot << 8);
    /* Frozen, then read: what the queue copies is what consumers read on
     * the block. Stored once: a re-enqueue does not dirty the line. */
    int froze = 0;
    if (!atomic_load_explicit(&b->frozen, memory_order_relaxed)) {
        atomic_store_explicit(&b->frozen, 1, memory_order_relaxed);
        froze = 1;
    }
    const uint64_t n = READ_ONCE(b->data_size), cap = pool_blk_size(p, idx);
    m->size = n > cap ? cap : n;
    m->dts = b->dts;
    m->pts = b->pts;
    m->duration = b->duration;
    return froze;
}

int pool_adopt_end(struct pool *p, uint64_t handle)
{
    int r = pool_adopt(p, handle);
    if (p && p->sh && !pool_move_clear_fast(p, 0))
        pool_move_end_slow(p, 0);
    return r;
}

/* ---- runs: one intent over a run of moves (pool.h, pool_run_begin) ---- */

/* Claims a run record of slot c for thread tid, as pool_intent_claim does
 * for intent records: its own, a free one, or one whose owner thread (of
 * this process, by thread id) has exited with no run open. */
static struct pool_run *pool_run_claim(struct pool_client *c, uint32_t tid)
{
    for (unsigned i = 0; i < POOL_RUNS; i++)
        if (atomic_load_explicit(&c->run[i].owner, memory_order_relaxed) == tid)
            return &c->run[i];
    for (unsigned i = 0; i < POOL_RUNS; i++) {
        uint32_t o = 0;
        if (atomic_compare_exchange_strong(&c->run[i].owner, &o, tid))
            return &c->run[i];
    }
    for (unsigned i = 0; i < POOL_RUNS; i++) {
        struct pool_run *x = &c->run[i];
        uint32_t o = atomic_load_explicit(&x->owner, memory_order_acquire);
        if ((o & SLOCK_CID) || atomic_load_explicit(&x->n, memory_order_relaxed) ||
            !(syscall(SYS_tgkill, getpid(), (pid_t)o, 0) < 0 && errno == ESRCH))
            continue;
        if (atomic_compare_exchange_strong(&x->owner, &o, tid))
            return x;
    }
    return NULL;
}

/* The calling thread's run record in this process's slot, NULL when all
 * are taken; the mapping's first runner finds it in struct pool. */
static inline struct pool_run *pool_run_rec(struct pool *p)
{
    const uint32_t tid = slock_self();
    struct pool_run *rec = p->rrec;
    if (__builtin_expect(atomic_load_explicit(&p->rrec_tid, memory_order_relaxed) == tid &&
                             atomic_load_explicit(&rec->owner, memory_order_relaxed) == tid,
                         1))
        return rec;
    rec = pool_run_claim(&p->clients[p->slot], tid);
    uint32_t none = 0;
    if (rec && atomic_load_explicit(&p->rrec_tid, memory_order_relaxed) == 0) {
        p->rrec = rec; /* set once, before rrec_tid names its thread */
        atomic_compare_exchange_strong_explicit(&p->rrec_tid, &none, tid, memory_order_release,
                                                memory_order_relaxed);
    }
    return rec;
}

int pool_run_begin(struct pool *p, const uint64_t *handles, uint32_t n)
{
    if (!p || !p->sh || !handles || n == 0 || n > POOL_RUN_MAX)
        return -EINVAL;
    struct pool_run *run = pool_run_rec(p);
    if (!run || atomic_load_explicit(&run->n, memory_order_relaxed) != 0)
        return -EAGAIN;
    /* The handles, then the count that makes a recount read them. */
    for (uint32_t i = 0; i < n; i++) {
        atomic_store_explicit(&run->h[i], handles[i], memory_order_relaxed);
        MBQ_TRACE((uint32_t)handles[i] - 1, TR_INTENT_SET, handles[i], 0x20000 | p->slot << 8);
    }
    atomic_store_explicit(&run->n, n, memory_order_release);
    /* One fence for the run, then the look at each ref word that
     * pool_intent_fence makes per move: a recount in progress on any of
     * the blocks is made to fail before a step can change what it counts. */
    if (__builtin_expect(slock_membarrier_ready(), 1))
        atomic_signal_fence(memory_order_seq_cst); /* slock_heavy_barrier fences us */
    else
        atomic_thread_fence(memory_order_seq_cst);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t idx = (uint32_t)handles[i] - 1;
        if (idx >= p->block_count)
            continue; /* names no block: the step on it fails */
        _Atomic uint64_t *ref = &p->blocks[idx].ref;
        uint64_t r = atomic_load_explicit(ref, memory_order_relaxed);
        if (__builtin_expect((r & POOL_AUDIT64) != 0, 0))
            pool_audit_spoil(ref, r);
    }
    return 0;
}

void pool_run_end(struct pool *p)
{
    if (!p || !p->sh)
        return;
    struct pool_run *run = pool_run_rec(p);
    if (!run)
        return;
    /* After the run's last step (release: what it did is visible first). */
    atomic_store_explicit(&run->n, 0, memory_order_release);
}

uint32_t pool_disown_run(struct pool *p, const uint64_t *handles, uint32_t n, int *err)
{
    uint32_t i = 0;
    int r = 0;
    for (; i < n; i++) {
        r = pool_disown(p, handles[i]);
        if (r != 0)
            break;
    }
    if (err)
        *err = r;
    return i;
}
