/* Triggers across processes. For each of the twelve conditions a watcher
 * process installs the trigger and watches its eventfd with epoll while a
 * producer process and a consumer process (each with the queue open before
 * the trigger existed) change the queue. Each step of a condition's script
 * states whether the trigger must fire and what its level is; the checks:
 *   - fires at install if already true (readable as install returns), and
 *     not if false (event conditions 5, 6, 9 never at install);
 *   - fires on each false-to-true edge, exactly once (eventfd count 1);
 *   - does not fire while the level stays true (checked with a zero
 *     timeout: the process that changes the queue signals as part of its
 *     operation, so when its reply arrives the eventfd is already written);
 *   - mbq_buffer_queue_test_trigger reports the level;
 *   - after removal nothing signals its eventfd (watched through a dup) and
 *     the token is invalid (MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN), and mbq_stat
 *     counts the queue's triggers.
 * Then the dispatcher (callbacks, and mutations from a callback refused),
 * a process that opens the queue after the trigger was installed, removal
 * at close, and the installers' argument checks. */
#include "harness.h"

#include <sys/epoll.h>

static struct mbqd D;

enum {
    T_OPEN = 1, /* s: queue name (closes the previous one) */
    T_ENQ,      /* v0: pts, v1: duration in tenths, v2: not ready (kept) */
    T_READY,    /* the kept buffer becomes ready; notify */
    T_DEQ,
    T_EOD,
    T_RESET,
    T_INSTALL, /* v0: slot, v1: condition, v2: time tenths, v3: threshold */
    T_CHECK,   /* v0: mask of slots that must fire */
    T_TEST,    /* v0: slot */
    T_REMOVE_ALL,
    T_CLOSE,
    T_COUNT,
    T_DUP_ALL, /* watch dups of every installed slot (before a close) */
    D_SETUP,   /* dispatcher: v0 = 1 if the trigger is expected true at install */
    D_DISPATCH,
    D_POLL0,
    D_DETACH,
    D_TEARDOWN,
};

#define MAX_SLOTS 4
#define FIRE_WAIT_MS 5000

struct slot {
    bool used, removed;
    mbq_trigger_token token;
    int fd; /* the library's fd, or our dup after removal */
};

struct tstate {
    mbq_client *c;
    mbq_pool *pool;
    mbq_buffer_queue *q, *other;
    mbq_buffer kept;
    int ep;
    struct slot slots[MAX_SLOTS];
    /* dispatcher */
    mbq_dispatcher *disp;
    mbq_trigger_token dtoken;
    mbq_buffer spare;
    struct cb_record {
        int calls, wrong_args;
        int64_t enq, deq, reset, eod, count, other_enq, test;
    } rec;
};

static void slots_reset(struct tstate *t)
{
    for (int i = 0; i < MAX_SLOTS; i++) {
        struct slot *s = &t->slots[i];
        if (s->used && s->fd >= 0) {
            epoll_ctl(t->ep, EPOLL_CTL_DEL, s->fd, NULL);
            if (s->removed)
                close(s->fd);
        }
        memset(s, 0, sizeof *s);
        s->fd = -1;
    }
}

static int install(struct tstate *t, int cond, int tenths, int64_t threshold,
                   mbq_trigger_token *tok)
{
    mbq_time time = h_time(tenths, 10);
    if (cond >= 10 && cond <= 11)
        return mbq_buffer_queue_install_trigger_with_integer_threshold(t->q, cond, threshold, tok);
    if (cond == 12)
        return mbq_buffer_queue_install_trigger_with_time_and_threshold(t->q, cond, time,
                                                                        threshold, tok);
    return mbq_buffer_queue_install_trigger(t->q, cond, time, tok);
}

/* Collects the readable slots (waiting up to wait_ms for those in
 * must_mask), consuming their counters into counts. */
static unsigned collect(struct tstate *t, unsigned must_mask, int wait_ms, int64_t *counts)
{
    unsigned seen = 0;
    uint64_t deadline = h_now_ns() + (uint64_t)wait_ms * 1000000ull;
    for (;;) {
        struct epoll_event ev[MAX_SLOTS];
        int left = (int)((deadline - h_now_ns()) / 1000000ull);
        int timeout = (must_mask & ~seen) && h_now_ns() < deadline ? left : 0;
        int n = epoll_wait(t->ep, ev, MAX_SLOTS, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < n; i++) {
            unsigned s = ev[i].data.u32;
            if (s >= MAX_SLOTS)
                continue;
            uint64_t v = 0;
            if (read(t->slots[s].fd, &v, sizeof v) == (ssize_t)sizeof v) {
                seen |= 1u << s;
                counts[s] += (int64_t)v;
            }
        }
        if (!(must_mask & ~seen) || h_now_ns() >= deadline) {
            /* one last look for anything else that is readable */
            n = epoll_wait(t->ep, ev, MAX_SLOTS, 0);
            for (int i = 0; i < n; i++) {
                unsigned s = ev[i].data.u32;
                uint64_t v = 0;
                if (s < MAX_SLOTS && read(t->slots[s].fd, &v, sizeof v) == (ssize_t)sizeof v) {
                    seen |= 1u << s;
                    counts[s] += (int64_t)v;
                }
            }
            return seen;
        }
    }
}

static mbq_buffer new_buffer(struct tstate *t, int64_t pts, int tenths, int *status)
{
    mbq_buffer b = {0};
    *status = h_alloc_retry(t->pool, 64, &b);
    if (*status)
        return b;
    mbq_buffer_set_timing(b, h_time(pts, 10), h_time(pts, 10), h_time(tenths ? tenths : 1, 10));
    mbq_buffer_set_data_size(b, 64);
    return b;
}

static void disp_cb(void *refcon, mbq_buffer_queue *queue, mbq_trigger_token token)
{
    struct tstate *t = refcon;
    struct cb_record *r = &t->rec;
    r->calls++;
    if (queue != t->q || token != t->dtoken)
        r->wrong_args++;
    /* inspection works, mutation does not */
    r->count = mbq_buffer_queue_get_buffer_count(queue);
    r->test = mbq_buffer_queue_test_trigger(queue, token);
    r->enq = mbq_buffer_queue_enqueue(queue, t->spare);
    mbq_buffer b = {0};
    r->deq = mbq_buffer_queue_dequeue_and_retain(queue, &b);
    if (r->deq == 0)
        mbq_buffer_release(b);
    r->reset = mbq_buffer_queue_reset(queue);
    r->eod = mbq_buffer_queue_mark_end_of_data(queue);
    /* another queue is not the one whose trigger is running */
    r->other_enq = mbq_buffer_queue_enqueue(t->other, t->spare);
}

static int trig_actor(int cmd, int rep, void *arg)
{
    struct tstate t;
    memset(&t, 0, sizeof t);
    t.ep = epoll_create1(EPOLL_CLOEXEC);
    CREQUIRE(t.ep >= 0);
    slots_reset(&t);
    t.c = h_connect(&D, (const char *)arg);
    CREQUIRE(t.c);
    CREQUIRE(mbq_pool_open(t.c, "tr/pool", &t.pool) == 0);
    int64_t next_pts = 1000;
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        switch (m.op) {
        case T_OPEN:
            slots_reset(&t);
            mbq_buffer_queue_close(t.q);
            t.q = NULL;
            r.status = mbq_buffer_queue_open(t.c, m.s, &t.q);
            break;
        case T_ENQ: {
            int64_t pts = m.v[0] ? m.v[0] : next_pts++;
            mbq_buffer b = new_buffer(&t, pts, (int)m.v[1], &r.status);
            if (r.status)
                break;
            if (m.v[2])
                mbq_buffer_set_data_ready(b, false);
            r.status = mbq_buffer_queue_enqueue(t.q, b);
            if (m.v[2] && r.status == 0)
                t.kept = b;
            else
                mbq_buffer_release(b);
            break;
        }
        case T_READY:
            r.status = mbq_buffer_set_data_ready(t.kept, true);
            r.v[0] = mbq_buffer_queue_notify_data_ready(t.q);
            mbq_buffer_release(t.kept);
            t.kept = (mbq_buffer){0};
            break;
        case T_DEQ: {
            mbq_buffer b;
            r.status = mbq_buffer_queue_dequeue_and_retain(t.q, &b);
            if (r.status == 0)
                mbq_buffer_release(b);
            break;
        }
        case T_EOD:
            r.status = mbq_buffer_queue_mark_end_of_data(t.q);
            break;
        case T_RESET:
            r.status = mbq_buffer_queue_reset(t.q);
            break;
        case T_COUNT:
            r.v[0] = mbq_buffer_queue_get_buffer_count(t.q);
            break;
        case T_INSTALL: {
            int s = (int)m.v[0];
            if (s < 0 || s >= MAX_SLOTS) {
                r.status = -EINVAL;
                break;
            }
            mbq_trigger_token tok = 0;
            r.status = install(&t, (int)m.v[1], (int)m.v[2], m.v[3], &tok);
            if (r.status != 0)
                break;
            int fd = mbq_buffer_queue_trigger_fd(t.q, tok);
            r.v[1] = fd;
            if (fd < 0)
                break;
            t.slots[s] = (struct slot){.used = true, .token = tok, .fd = fd};
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)s};
            if (epoll_ctl(t.ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                r.status = -errno;
            /* readable as install returns? */
            int64_t counts[MAX_SLOTS] = {0};
            r.v[0] = collect(&t, 0, 0, counts);
            r.v[2] = counts[s];
            r.v[3] = mbq_buffer_queue_test_trigger(t.q, tok);
            break;
        }
        case T_CHECK: {
            int64_t counts[MAX_SLOTS] = {0};
            unsigned must = (unsigned)m.v[0];
            r.v[0] = collect(&t, must, must ? FIRE_WAIT_MS : 0, counts);
            for (int i = 0; i < MAX_SLOTS; i++)
                r.v[1 + i] = counts[i];
            break;
        }
        case T_TEST:
            r.v[0] = mbq_buffer_queue_test_trigger(t.q, t.slots[m.v[0] & 3].token);
            break;
        case T_DUP_ALL:
        case T_REMOVE_ALL:
            for (int s = 0; s < MAX_SLOTS; s++) {
                struct slot *sl = &t.slots[s];
                if (!sl->used || sl->removed)
                    continue;
                epoll_ctl(t.ep, EPOLL_CTL_DEL, sl->fd, NULL);
                int dup = fcntl(sl->fd, F_DUPFD_CLOEXEC, 0);
                if (m.op == T_REMOVE_ALL) {
                    int st = mbq_buffer_queue_remove_trigger(t.q, sl->token);
                    r.v[0] |= (st == 0) << s;
                    st = mbq_buffer_queue_remove_trigger(t.q, sl->token);
                    r.v[1] |= (st == MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN) << s;
                    r.v[2] |= (!mbq_buffer_queue_test_trigger(t.q, sl->token)) << s;
                    r.v[3] |= (mbq_buffer_queue_trigger_fd(t.q, sl->token) == -1) << s;
                }
                sl->fd = dup;
                sl->removed = true;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)s};
                if (dup < 0 || epoll_ctl(t.ep, EPOLL_CTL_ADD, dup, &ev) < 0)
                    r.status = -EBADF;
            }
            break;
        case T_CLOSE:
            mbq_buffer_queue_close(t.q);
            t.q = NULL;
            break;
        case D_SETUP: {
            /* a dispatcher with a count > 0 trigger on the queue */
            int st;
            t.spare = new_buffer(&t, 1, 1, &st);
            if (!t.disp)
                r.v[0] = mbq_dispatcher_create(&t.disp);
            if (!t.other)
                r.v[1] = mbq_buffer_queue_open(t.c, "tr/other", &t.other);
            r.status = mbq_buffer_queue_install_trigger_with_integer_threshold(
                t.q, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, 0, &t.dtoken);
            if (r.status)
                break;
            r.v[2] = mbq_dispatcher_add(t.disp, t.q, t.dtoken, disp_cb, &t);
            r.v[3] = mbq_dispatcher_fd(t.disp);
            memset(&t.rec, 0, sizeof t.rec);
            break;
        }
        case D_DISPATCH: {
            struct pollfd p = {.fd = mbq_dispatcher_fd(t.disp), .events = POLLIN};
            r.v[0] = poll(&p, 1, FIRE_WAIT_MS);
            memset(&t.rec, 0, sizeof t.rec);
            r.status = mbq_dispatcher_dispatch(t.disp, FIRE_WAIT_MS);
            r.v[1] = t.rec.calls;
            r.v[2] = t.rec.wrong_args;
            r.v[3] = t.rec.enq;
            r.v[4] = t.rec.deq;
            r.v[5] = t.rec.reset;
            r.v[6] = t.rec.eod;
            /* s carries the rest: count, test, other_enq */
            snprintf(r.s, sizeof r.s, "%lld %lld %lld", (long long)t.rec.count,
                     (long long)t.rec.test, (long long)t.rec.other_enq);
            /* outside the callback the queue can be changed again */
            mbq_buffer b;
            r.v[7] = mbq_buffer_queue_dequeue_and_retain(t.q, &b);
            if (r.v[7] == 0)
                mbq_buffer_release(b);
            if (t.other)
                mbq_buffer_queue_reset(t.other);
            break;
        }
        case D_POLL0:
            memset(&t.rec, 0, sizeof t.rec);
            r.status = mbq_dispatcher_dispatch(t.disp, 0);
            r.v[0] = t.rec.calls;
            {
                struct pollfd p = {.fd = mbq_buffer_queue_trigger_fd(t.q, t.dtoken),
                                   .events = POLLIN};
                r.v[1] = p.fd >= 0 ? poll(&p, 1, 0) : -1;
            }
            break;
        case D_DETACH:
            r.status = mbq_dispatcher_remove(t.disp, t.q, t.dtoken);
            r.v[0] = mbq_dispatcher_remove(t.disp, t.q, t.dtoken); /* not there any more */
            break;
        case D_TEARDOWN:
            r.status = mbq_buffer_queue_remove_trigger(t.q, t.dtoken);
            mbq_dispatcher_destroy(t.disp);
            t.disp = NULL;
            mbq_buffer_release(t.spare);
            t.spare = (mbq_buffer){0};
            break;
        default:
            r.status = -ENOSYS;
        }
        hmsg_reply(rep, &r);
    }
    slots_reset(&t);
    if (t.disp)
        mbq_dispatcher_destroy(t.disp);
    mbq_buffer_queue_close(t.q);
    mbq_buffer_queue_close(t.other);
    mbq_pool_close(t.pool);
    mbq_disconnect(t.c);
    close(t.ep);
    return 0;
}

/* ---- the twelve scripts ------------------------------------------------------- */

enum { S_END = 0, S_ENQ, S_ENQ_NR, S_READY, S_DEQ, S_EOD, S_RESET, S_INSTALL, S_REMOVE };

struct step {
    int op;
    int pts, dur; /* S_ENQ: pts (0: increasing), duration in tenths (0: 1) */
    int fire;     /* must the live trigger(s) fire (S_INSTALL: the new one, at once) */
    int level;    /* the first trigger's level afterwards; -1: not checked */
};

#define E(f, l) {S_ENQ, 0, 0, f, l}
#define EP(pts, f, l) {S_ENQ, pts, 0, f, l}
#define ED(dur, f, l) {S_ENQ, 0, dur, f, l}
#define ENR(f, l) {S_ENQ_NR, 0, 0, f, l}
#define RDY(f, l) {S_READY, 0, 0, f, l}
#define Q(f, l) {S_DEQ, 0, 0, f, l}
#define EOD(f, l) {S_EOD, 0, 0, f, l}
#define RST(f, l) {S_RESET, 0, 0, f, l}
#define I(f, l) {S_INSTALL, 0, 0, f, l}
#define X {S_REMOVE, 0, 0, 0, -1}
#define PRE E(0, -1)

struct script {
    int cond;
    int tenths;        /* time */
    int64_t threshold; /* count */
    struct step steps[24];
};

/* Durations are 1/10 s per buffer unless stated; n = count, d = duration. */
static const struct script scripts[] = {
    /* 1: d < 0.3 */
    {1, 3, 0, {PRE, PRE, PRE, I(0, 0), E(0, 0), Q(0, 0), Q(1, 1), Q(0, 1), E(0, 1), E(0, 0),
               Q(1, 1), I(1, 1), X, E(0, -1), Q(0, -1)}},
    /* 2: d <= 0.3 */
    {2, 3, 0, {PRE, PRE, PRE, PRE, I(0, 0), E(0, 0), Q(0, 0), Q(1, 1), Q(0, 1), E(0, 1),
               E(0, 0), Q(1, 1), I(1, 1), X, E(0, -1), Q(0, -1)}},
    /* 3: d > 0.3 */
    {3, 3, 0, {I(0, 0), E(0, 0), E(0, 0), E(0, 0), E(1, 1), E(0, 1), Q(0, 1), Q(0, 0), E(1, 1),
               I(1, 1), X, Q(0, -1), E(0, -1)}},
    /* 4: d >= 0.3 */
    {4, 3, 0, {I(0, 0), E(0, 0), E(0, 0), E(1, 1), E(0, 1), Q(0, 1), Q(0, 0), E(1, 1), I(1, 1),
               X, Q(0, -1), E(0, -1)}},
    /* 5: min PTS changes (an event: level always false, never at install) */
    {5, 0, 0, {EP(10, 0, -1), I(0, 0), EP(20, 0, 0), EP(5, 1, 0), EP(7, 0, 0), Q(0, 0),
               Q(0, 0), Q(1, 0), I(0, 0), X, EP(1, 0, -1)}},
    /* 6: max PTS changes */
    {6, 0, 0, {EP(10, 0, -1), I(0, 0), EP(5, 0, 0), EP(20, 1, 0), Q(0, 0), EP(15, 0, 0),
               Q(0, 0), Q(1, 0), I(0, 0), X, EP(30, 0, -1)}},
    /* 7: the head becomes ready (a ready buffer behind a head that is not
     * does not count) */
    {7, 0, 0, {I(0, 0), ENR(0, 0), E(0, 0), RDY(1, 1), Q(0, 1), Q(0, 0), E(1, 1), I(1, 1), X,
               Q(0, -1), E(0, -1)}},
    /* 7 again: a head that is present but not ready does not fire at
     * install (the daemon, which evaluates it, asks the pool); it fires
     * when that head becomes ready */
    {7, 0, 0, {ENR(0, -1), I(0, 0), E(0, 0), RDY(1, 1), Q(0, 1), Q(0, 0), X}},
    /* 8: end of data reached (marked and empty) */
    {8, 0, 0, {PRE, I(0, 0), EOD(0, 0), Q(1, 1), RST(0, 0), E(0, 0), Q(0, 0), EOD(1, 1),
               I(1, 1), X, RST(0, -1), EOD(0, -1)}},
    /* 9: reset (an event: each reset fires) */
    {9, 0, 0, {I(0, 0), E(0, 0), RST(1, 0), RST(1, 0), E(0, 0), Q(0, 0), I(0, 0), X,
               RST(0, -1)}},
    /* 10: n < 2 */
    {10, 0, 2, {PRE, PRE, I(0, 0), E(0, 0), Q(0, 0), Q(1, 1), Q(0, 1), E(0, 1), E(0, 0),
                Q(1, 1), I(1, 1), X, E(0, -1), Q(0, -1)}},
    /* 11: n > 2 */
    {11, 0, 2, {I(0, 0), E(0, 0), E(0, 0), E(1, 1), E(0, 1), Q(0, 1), Q(0, 0), E(1, 1), I(1, 1),
                X, Q(0, -1), E(0, -1)}},
    /* 12: d >= 0.5 and n > 3 (either alone is not enough) */
    {12, 5, 3, {I(0, 0),     ED(1, 0, 0), ED(1, 0, 0), ED(1, 0, 0), ED(1, 0, 0) /* n4 d.4 */,
                ED(2, 1, 1) /* n5 d.6 */, ED(1, 0, 1), Q(0, 1) /* n5 d.6 */,
                Q(0, 1) /* n4 d.5 */, Q(0, 0) /* n3 d.4 */, ED(1, 1, 1) /* n4 d.5 */,
                ED(10, 0, 1) /* n5 d1.5 */, Q(0, 1) /* n4 d1.4 */, Q(0, 0) /* n3 d1.2 */,
                ED(1, 1, 1) /* n4 d1.3 */, I(1, 1), X, Q(0, -1), ED(1, 0, -1)}},
};

static int call(struct actor *a, struct hmsg *m, struct hmsg *r)
{
    int e = actor_call(a, m, r);
    if (e)
        fprintf(stderr, "actor %d: no reply (%d)\n", (int)a->pid, e);
    return e;
}

static void run_script(const struct script *sc, struct actor *p, struct actor *k,
                       struct actor *w, mbq_client *c)
{
    char qname[64];
    snprintf(qname, sizeof qname, "tr/c%d", sc->cond);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(64, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, qname, &qo, &q) == 0);
    mbq_buffer_queue_close(q); /* the object lives on until unlinked */

    struct hmsg m = hmsg_op(T_OPEN), r;
    snprintf(m.s, sizeof m.s, "%s", qname);
    struct actor *all[3] = {p, k, w};
    for (int i = 0; i < 3; i++) {
        REQUIRE(call(all[i], &m, &r) == 0);
        CHECK_STATUS(r.status, 0);
    }

    unsigned live = 0; /* installed and not removed */
    int installed = 0;
    for (int i = 0; i < 24 && sc->steps[i].op != S_END; i++) {
        const struct step *st = &sc->steps[i];
        int failed_before = check_case_failed;
        check_case_failed = 0;
        struct actor *who = p;
        m = hmsg_op(0);
        switch (st->op) {
        case S_ENQ:
        case S_ENQ_NR:
            m.op = T_ENQ;
            m.v[0] = st->pts;
            m.v[1] = st->dur;
            m.v[2] = st->op == S_ENQ_NR;
            break;
        case S_READY:
            m.op = T_READY;
            break;
        case S_DEQ:
            m.op = T_DEQ;
            who = k;
            break;
        case S_EOD:
            m.op = T_EOD;
            break;
        case S_RESET:
            m.op = T_RESET;
            break;
        case S_INSTALL:
            m.op = T_INSTALL;
            m.v[0] = installed;
            m.v[1] = sc->cond;
            m.v[2] = sc->tenths;
            m.v[3] = sc->threshold;
            who = w;
            break;
        case S_REMOVE:
            m.op = T_REMOVE_ALL;
            who = w;
            break;
        }
        REQUIRE(call(who, &m, &r) == 0);
        CHECK_STATUS(r.status, 0);
        if (st->op == S_INSTALL) {
            CHECK(r.v[1] >= 0); /* the trigger has an eventfd */
            unsigned expect = st->fire ? 1u << installed : 0;
            CHECK_EQ(r.v[0], expect); /* readable as install returned: only the new one, if true */
            if (st->fire)
                CHECK_EQ(r.v[2], 1);
            live |= 1u << installed;
            installed++;
            mbq_object_info info;
            CHECK_STATUS(h_stat(c, qname, &info), 0);
            CHECK_EQ(info.triggers, installed);
        } else if (st->op == S_REMOVE) {
            unsigned all_mask = (1u << installed) - 1;
            CHECK_EQ(r.v[0], all_mask); /* removed */
            CHECK_EQ(r.v[1], all_mask); /* then an invalid token */
            CHECK_EQ(r.v[2], all_mask); /* test: false */
            CHECK_EQ(r.v[3], all_mask); /* no fd */
            live = 0;
            mbq_object_info info;
            CHECK_STATUS(h_stat(c, qname, &info), 0);
            CHECK_EQ(info.triggers, 0);
        } else {
            /* did the live triggers fire (and nothing else)? */
            struct hmsg chk = hmsg_op(T_CHECK), cr;
            unsigned expect = st->fire ? live : 0;
            chk.v[0] = expect;
            REQUIRE(call(w, &chk, &cr) == 0);
            CHECK_EQ(cr.v[0], expect);
            for (int s = 0; s < installed; s++)
                if (expect & (1u << s))
                    CHECK_EQ(cr.v[1 + s], 1); /* one edge, one signal */
        }
        if (st->level >= 0 && (live & 1u)) {
            struct hmsg t = hmsg_op(T_TEST), tr;
            t.v[0] = 0;
            REQUIRE(call(w, &t, &tr) == 0);
            CHECK_EQ(tr.v[0], st->level);
        }
        if (check_case_failed)
            fprintf(stderr, "  ^ condition %d, step %d (op %d)\n", sc->cond, i, st->op);
        check_case_failed |= failed_before;
    }
    /* empty the queue before it goes (test_objects checks what happens to
     * buffers left in a destroyed queue) */
    m = hmsg_op(T_RESET);
    REQUIRE(call(p, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_STATUS(mbq_unlink(c, qname), 0);
}

static void twelve_conditions_across_processes(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 64);
    REQUIRE(mbq_pool_create(c, "tr/pool", &po, &pool) == 0);
    struct actor p, k, w;
    REQUIRE(actor_start(&p, trig_actor, "producer") == 0);
    REQUIRE(actor_start(&k, trig_actor, "consumer") == 0);
    REQUIRE(actor_start(&w, trig_actor, "watcher") == 0);
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++)
        run_script(&scripts[i], &p, &k, &w, c);
    CHECK_ACTOR_OK(&p);
    CHECK_ACTOR_OK(&k);
    CHECK_ACTOR_OK(&w);
    /* every buffer went back to the pool */
    mbq_object_info info;
    CHECK_EQ(h_wait_pool_used(c, "tr/pool", 0, 2000), 0);
    CHECK_STATUS(h_stat(c, "tr/pool", &info), 0);
    CHECK_EQ(info.allocations, info.frees);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- a process that opens the queue after the trigger was installed ---------- */

static void trigger_reaches_late_opener(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 16);
    REQUIRE(mbq_pool_create(c, "tr/pool", &po, &pool) == 0);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "tr/late", &qo, &q) == 0);
    mbq_buffer_queue_close(q);

    struct actor p, w;
    REQUIRE(actor_start(&w, trig_actor, "watcher") == 0);
    struct hmsg m = hmsg_op(T_OPEN), r;
    snprintf(m.s, sizeof m.s, "tr/late");
    REQUIRE(call(&w, &m, &r) == 0);
    struct hmsg in = hmsg_op(T_INSTALL);
    in.v[1] = MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN;
    in.v[3] = 0;
    REQUIRE(call(&w, &in, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_EQ(r.v[0], 0);

    /* the producer starts and opens the queue only now */
    REQUIRE(actor_start(&p, trig_actor, "late producer") == 0);
    REQUIRE(call(&p, &m, &r) == 0);
    CHECK_STATUS(r.status, 0);
    struct hmsg e = hmsg_op(T_ENQ);
    REQUIRE(call(&p, &e, &r) == 0);
    CHECK_STATUS(r.status, 0);
    struct hmsg chk = hmsg_op(T_CHECK);
    chk.v[0] = 1;
    REQUIRE(call(&w, &chk, &r) == 0);
    CHECK_EQ(r.v[0], 1);
    CHECK_EQ(r.v[1], 1);

    /* a reopen by the producer (a fresh mapping) still signals */
    struct hmsg d = hmsg_op(T_DEQ);
    REQUIRE(call(&p, &d, &r) == 0);
    CHECK_STATUS(r.status, 0);
    REQUIRE(call(&p, &m, &r) == 0);
    REQUIRE(call(&p, &e, &r) == 0);
    CHECK_STATUS(r.status, 0);
    REQUIRE(call(&w, &chk, &r) == 0);
    CHECK_EQ(r.v[0], 1);
    CHECK_EQ(r.v[1], 1);

    CHECK_ACTOR_OK(&p);
    CHECK_ACTOR_OK(&w);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- a producer with a backlog of trigger announcements ---------------------- */

/* The producer has the queue open but does not touch the library while the
 * watcher installs and removes many triggers: the daemon's announcements
 * queue up for it (more than a socket holds at once). Then the watcher
 * installs one more; the producer's next enqueue must signal it, like any
 * enqueue that follows the install. */
static void trigger_reaches_opener_with_backlog(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 16);
    REQUIRE(mbq_pool_create(c, "tr/pool", &po, &pool) == 0);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "tr/backlog", &qo, &q) == 0);
    mbq_buffer_queue_close(q);

    struct actor p, w;
    REQUIRE(actor_start(&p, trig_actor, "producer") == 0);
    REQUIRE(actor_start(&w, trig_actor, "watcher") == 0);
    struct hmsg m = hmsg_op(T_OPEN), r;
    snprintf(m.s, sizeof m.s, "tr/backlog");
    REQUIRE(call(&p, &m, &r) == 0);
    REQUIRE(call(&w, &m, &r) == 0);
    for (int i = 0; i < 40; i++) {
        struct hmsg in = hmsg_op(T_INSTALL);
        in.v[0] = 0;
        in.v[1] = MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN;
        in.v[3] = 100;
        REQUIRE(call(&w, &in, &r) == 0);
        CHECK_STATUS(r.status, 0);
        struct hmsg rm = hmsg_op(T_REMOVE_ALL);
        REQUIRE(call(&w, &rm, &r) == 0);
        CHECK_EQ(r.v[0], 1);
    }
    struct hmsg reopen = hmsg_op(T_OPEN); /* forget the dups, keep the queue */
    snprintf(reopen.s, sizeof reopen.s, "tr/backlog");
    REQUIRE(call(&w, &reopen, &r) == 0);
    struct hmsg in = hmsg_op(T_INSTALL);
    in.v[0] = 0;
    in.v[1] = MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN;
    in.v[3] = 0;
    REQUIRE(call(&w, &in, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_EQ(r.v[0], 0);

    struct hmsg e = hmsg_op(T_ENQ);
    REQUIRE(call(&p, &e, &r) == 0);
    CHECK_STATUS(r.status, 0);
    struct hmsg chk = hmsg_op(T_CHECK);
    chk.v[0] = 1;
    REQUIRE(call(&w, &chk, &r) == 0);
    if (r.v[0] != 1)
        fprintf(stderr, "the producer's enqueue did not signal the trigger installed before it\n");
    CHECK_EQ(r.v[0], 1);

    CHECK_ACTOR_OK(&p);
    CHECK_ACTOR_OK(&w);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* The same, with the daemon frozen (SIGSTOP) from the moment the install
 * returned until the producer's enqueue is done, so that the announcement
 * to the producer is still inside the daemon: the producer cannot have the
 * eventfd then (the firing is left pending in the segment). Once the daemon
 * runs again, the producer's next operations must catch up and signal --
 * the data plane may outrun the control plane, but not lose a trigger for
 * good. */
static void trigger_catches_up_after_daemon_pause(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 16);
    REQUIRE(mbq_pool_create(c, "tr/pool", &po, &pool) == 0);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "tr/pause", &qo, &q) == 0);
    mbq_buffer_queue_close(q);

    struct actor p, w;
    REQUIRE(actor_start(&p, trig_actor, "producer") == 0);
    REQUIRE(actor_start(&w, trig_actor, "watcher") == 0);
    struct hmsg m = hmsg_op(T_OPEN), r;
    snprintf(m.s, sizeof m.s, "tr/pause");
    REQUIRE(call(&p, &m, &r) == 0);
    REQUIRE(call(&w, &m, &r) == 0);
    /* The producer's first buffer of the pool in the queue binds the pool
     * to the queue, a daemon round trip; after that its enqueues need no
     * daemon. So one goes through before the pause. */
    struct hmsg warm = hmsg_op(T_ENQ);
    REQUIRE(call(&p, &warm, &r) == 0);
    CHECK_STATUS(r.status, 0);
    warm = hmsg_op(T_DEQ);
    REQUIRE(call(&p, &warm, &r) == 0);
    CHECK_STATUS(r.status, 0);
    /* 300 announcements for the idle producer: more than its socket holds
     * (about 200 KB of send buffer in the daemon), fewer than the daemon
     * queues before it gives up on a client (256 more) */
    for (int i = 0; i < 150; i++) {
        struct hmsg in = hmsg_op(T_INSTALL);
        in.v[1] = MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN;
        in.v[3] = 100;
        REQUIRE(call(&w, &in, &r) == 0);
        struct hmsg rm = hmsg_op(T_REMOVE_ALL);
        REQUIRE(call(&w, &rm, &r) == 0);
    }
    REQUIRE(call(&w, &m, &r) == 0); /* reopen: forget the dups */
    struct hmsg in = hmsg_op(T_INSTALL);
    in.v[1] = MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN;
    in.v[3] = 0;
    REQUIRE(call(&w, &in, &r) == 0);
    CHECK_STATUS(r.status, 0);

    kill(D.pid, SIGSTOP);
    struct hmsg e = hmsg_op(T_ENQ), d = hmsg_op(T_DEQ);
    int ce = call(&p, &e, &r); /* the data plane works without the daemon */
    kill(D.pid, SIGCONT);
    REQUIRE(ce == 0);
    CHECK_STATUS(r.status, 0);

    /* more edges by the producer, for up to 10 s; one of them must reach
     * the watcher */
    struct hmsg chk = hmsg_op(T_CHECK);
    int rounds = 0;
    bool signalled = false;
    const uint64_t deadline = h_now_ns() + 10000000000ull;
    for (; h_now_ns() < deadline && !signalled; rounds++) {
        chk.v[0] = 0;
        REQUIRE(call(&w, &chk, &r) == 0);
        if (r.v[0]) {
            signalled = true;
            break;
        }
        REQUIRE(call(&p, &d, &r) == 0);
        REQUIRE(call(&p, &e, &r) == 0);
        CHECK_STATUS(r.status, 0);
    }
    chk.v[0] = signalled ? 0 : 1; /* a last, bounded wait */
    if (!signalled) {
        REQUIRE(call(&w, &chk, &r) == 0);
        signalled = r.v[0] != 0;
    }
    if (!signalled)
        fprintf(stderr, "after the daemon resumed, %d edges by the producer in 10 s never "
                        "signalled the trigger installed before them\n", rounds);
    else
        printf("signalled after %d more edges\n", rounds);
    CHECK(signalled);

    CHECK_ACTOR_OK(&p);
    CHECK_ACTOR_OK(&w);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- closing the queue removes the process's triggers ----------------------- */

static void close_removes_triggers(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 16);
    REQUIRE(mbq_pool_create(c, "tr/pool", &po, &pool) == 0);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "tr/close", &qo, &q) == 0);

    struct actor p, w;
    REQUIRE(actor_start(&p, trig_actor, "producer") == 0);
    REQUIRE(actor_start(&w, trig_actor, "watcher") == 0);
    struct hmsg m = hmsg_op(T_OPEN), r;
    snprintf(m.s, sizeof m.s, "tr/close");
    REQUIRE(call(&p, &m, &r) == 0);
    REQUIRE(call(&w, &m, &r) == 0);
    struct hmsg in = hmsg_op(T_INSTALL);
    in.v[0] = 0;
    in.v[1] = MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN;
    REQUIRE(call(&w, &in, &r) == 0);
    CHECK_STATUS(r.status, 0);
    in.v[0] = 1;
    in.v[1] = MBQ_TRIGGER_WHEN_RESET;
    REQUIRE(call(&w, &in, &r) == 0);
    CHECK_STATUS(r.status, 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "tr/close", &info), 0);
    CHECK_EQ(info.triggers, 2);
    bool found = false;
    for (uint32_t i = 0; i < info.client_count && i < 32; i++)
        if (info.clients[i].pid == (uint32_t)w.pid) {
            found = true;
            CHECK_EQ(info.clients[i].triggers, 2);
        }
    CHECK(found);

    /* watch dups of the eventfds, then close the queue in the watcher */
    struct hmsg dup = hmsg_op(T_DUP_ALL);
    REQUIRE(call(&w, &dup, &r) == 0);
    CHECK_STATUS(r.status, 0);
    struct hmsg cl = hmsg_op(T_CLOSE);
    REQUIRE(call(&w, &cl, &r) == 0);
    CHECK_STATUS(h_stat(c, "tr/close", &info), 0);
    CHECK_EQ(info.triggers, 0);
    /* the edges that would have fired signal nothing */
    struct hmsg e = hmsg_op(T_ENQ);
    REQUIRE(call(&p, &e, &r) == 0);
    CHECK_STATUS(r.status, 0);
    struct hmsg rs = hmsg_op(T_RESET);
    REQUIRE(call(&p, &rs, &r) == 0);
    CHECK_STATUS(r.status, 0);
    struct hmsg chk = hmsg_op(T_CHECK);
    REQUIRE(call(&w, &chk, &r) == 0);
    CHECK_EQ(r.v[0], 0);

    CHECK_ACTOR_OK(&p);
    CHECK_ACTOR_OK(&w);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- the dispatcher ---------------------------------------------------------- */

static void check_dispatch_reply(const struct hmsg *r, int expect_count)
{
    CHECK_EQ(r->v[0], 1);      /* the dispatcher's fd was readable */
    CHECK_EQ(r->status, 1);    /* one callback ran */
    CHECK_EQ(r->v[1], 1);
    CHECK_EQ(r->v[2], 0);      /* with its queue and token */
    CHECK_STATUS(r->v[3], MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK); /* enqueue */
    CHECK_STATUS(r->v[4], MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK); /* dequeue */
    CHECK_STATUS(r->v[5], MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK); /* reset */
    CHECK_STATUS(r->v[6], MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK); /* EOD */
    long long count = -1, test = -1, other = -1;
    sscanf(r->s, "%lld %lld %lld", &count, &test, &other);
    CHECK_EQ(count, expect_count); /* inspection works inside */
    CHECK_EQ(test, 1);
    CHECK_STATUS(other, 0); /* another queue may be changed */
    CHECK_STATUS(r->v[7], 0); /* after the callback, dequeue works */
}

static void dispatcher_callbacks(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_pool *pool = NULL;
    mbq_pool_options po = h_pool_opts(4096, 16);
    REQUIRE(mbq_pool_create(c, "tr/pool", &po, &pool) == 0);
    mbq_buffer_queue *q = NULL, *other = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "tr/disp", &qo, &q) == 0);
    REQUIRE(mbq_buffer_queue_create(c, "tr/other", &qo, &other) == 0);

    struct actor p, d;
    REQUIRE(actor_start(&p, trig_actor, "producer") == 0);
    REQUIRE(actor_start(&d, trig_actor, "dispatcher") == 0);
    struct hmsg m = hmsg_op(T_OPEN), r;
    snprintf(m.s, sizeof m.s, "tr/disp");
    REQUIRE(call(&p, &m, &r) == 0);
    REQUIRE(call(&d, &m, &r) == 0);

    struct hmsg s = hmsg_op(D_SETUP);
    REQUIRE(call(&d, &s, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK_STATUS(r.v[0], 0);
    CHECK_STATUS(r.v[1], 0);
    CHECK_STATUS(r.v[2], 0);
    CHECK(r.v[3] >= 0);
    struct hmsg p0 = hmsg_op(D_POLL0);
    REQUIRE(call(&d, &p0, &r) == 0);
    CHECK_EQ(r.status, 0); /* nothing fired yet */
    CHECK_EQ(r.v[0], 0);

    /* the producer (another process) makes count > 0 true */
    struct hmsg e = hmsg_op(T_ENQ);
    REQUIRE(call(&p, &e, &r) == 0);
    CHECK_STATUS(r.status, 0);
    struct hmsg dd = hmsg_op(D_DISPATCH);
    REQUIRE(call(&d, &dd, &r) == 0);
    check_dispatch_reply(&r, 1);
    REQUIRE(call(&d, &p0, &r) == 0);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(r.v[0], 0);
    /* next edge, next callback */
    REQUIRE(call(&p, &e, &r) == 0);
    REQUIRE(call(&d, &dd, &r) == 0);
    check_dispatch_reply(&r, 1);

    /* detached from the dispatcher: the trigger still fires, no callback */
    struct hmsg det = hmsg_op(D_DETACH);
    REQUIRE(call(&d, &det, &r) == 0);
    CHECK_STATUS(r.status, 0);
    CHECK(r.v[0] != 0);
    REQUIRE(call(&p, &e, &r) == 0);
    REQUIRE(call(&d, &p0, &r) == 0);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(r.v[0], 0);
    CHECK_EQ(r.v[1], 1); /* its eventfd is readable */
    struct hmsg td = hmsg_op(D_TEARDOWN);
    REQUIRE(call(&d, &td, &r) == 0);
    CHECK_STATUS(r.status, 0);

    /* a trigger already true at install: the first dispatch runs it */
    REQUIRE(call(&d, &s, &r) == 0);
    CHECK_STATUS(r.status, 0);
    REQUIRE(call(&d, &dd, &r) == 0);
    check_dispatch_reply(&r, 1);
    REQUIRE(call(&d, &td, &r) == 0);
    CHECK_STATUS(r.status, 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "tr/disp", &info), 0);
    CHECK_EQ(info.triggers, 0);

    CHECK_ACTOR_OK(&p);
    CHECK_ACTOR_OK(&d);
    mbq_buffer_queue_close(q);
    mbq_buffer_queue_close(other);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

/* ---- installer argument checks ---------------------------------------------- */

static void install_errors(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_buffer_queue *q = NULL, *q2 = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "tr/err", &qo, &q) == 0);
    REQUIRE(mbq_buffer_queue_create(c, "tr/err2", &qo, &q2) == 0);
    mbq_trigger_token tok = 0;
    mbq_time t1 = h_time(1, 10);

    /* conditions the plain installer does not take */
    int bad_plain[] = {0, -1, 10, 11, 12, 13, 1000};
    for (size_t i = 0; i < sizeof bad_plain / sizeof bad_plain[0]; i++)
        CHECK_STATUS(mbq_buffer_queue_install_trigger(q, bad_plain[i], t1, &tok),
                     MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION);
    int bad_int[] = {0, 1, 4, 7, 12, 13};
    for (size_t i = 0; i < sizeof bad_int / sizeof bad_int[0]; i++)
        CHECK_STATUS(mbq_buffer_queue_install_trigger_with_integer_threshold(q, bad_int[i], 1,
                                                                            &tok),
                     MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION);
    int bad_both[] = {0, 1, 11, 13};
    for (size_t i = 0; i < sizeof bad_both / sizeof bad_both[0]; i++)
        CHECK_STATUS(mbq_buffer_queue_install_trigger_with_time_and_threshold(q, bad_both[i], t1,
                                                                             1, &tok),
                     MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION);

    /* time thresholds must be numeric with epoch 0 */
    mbq_time bad_times[] = {
        MBQ_TIME_INVALID,
        MBQ_TIME_POSITIVE_INFINITY,
        MBQ_TIME_NEGATIVE_INFINITY,
        MBQ_TIME_INDEFINITE,
        {1, 10, MBQ_TIME_FLAG_VALID, 1},
    };
    for (int cond = 1; cond <= 4; cond++)
        for (size_t i = 0; i < sizeof bad_times / sizeof bad_times[0]; i++)
            CHECK_STATUS(mbq_buffer_queue_install_trigger(q, cond, bad_times[i], &tok),
                         MBQ_BQ_ERR_BAD_TRIGGER_DURATION);
    for (size_t i = 0; i < sizeof bad_times / sizeof bad_times[0]; i++)
        CHECK_STATUS(mbq_buffer_queue_install_trigger_with_time_and_threshold(
                         q, MBQ_TRIGGER_WHEN_DURATION_BECOMES_GREATER_THAN_OR_EQUAL_TO_AND_BUFFER_COUNT_BECOMES_GREATER_THAN,
                         bad_times[i], 1, &tok),
                     MBQ_BQ_ERR_BAD_TRIGGER_DURATION);
    /* ... but conditions 5-9 ignore the time */
    for (int cond = 5; cond <= 9; cond++) {
        tok = 0;
        CHECK_STATUS(mbq_buffer_queue_install_trigger(q, cond, MBQ_TIME_INVALID, &tok), 0);
        CHECK(mbq_buffer_queue_trigger_fd(q, tok) >= 0);
        CHECK_STATUS(mbq_buffer_queue_remove_trigger(q, tok), 0);
    }
    /* the token is required */
    CHECK(mbq_buffer_queue_install_trigger(q, 1, t1, NULL) != 0);
    CHECK(mbq_buffer_queue_install_trigger_with_integer_threshold(q, 10, 1, NULL) != 0);
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "tr/err", &info), 0);
    CHECK_EQ(info.triggers, 0); /* none of the failures left a trigger */

    /* unknown tokens, and a token of another queue */
    CHECK_STATUS(mbq_buffer_queue_remove_trigger(q, 0), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK_STATUS(mbq_buffer_queue_remove_trigger(q, 0x123456789ull),
                 MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK(!mbq_buffer_queue_test_trigger(q, 0x123456789ull));
    CHECK_EQ(mbq_buffer_queue_trigger_fd(q, 0x123456789ull), -1);
    CHECK_STATUS(mbq_buffer_queue_install_trigger_with_integer_threshold(
                     q2, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_LESS_THAN, 1, &tok),
                 0);
    /* an empty queue: count < 1 is true at install */
    CHECK(mbq_buffer_queue_test_trigger(q2, tok));
    CHECK_STATUS(mbq_buffer_queue_remove_trigger(q, tok), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK(mbq_buffer_queue_test_trigger(q2, tok)); /* still installed on q2 */
    CHECK_STATUS(mbq_buffer_queue_remove_trigger(q2, tok), 0);
    /* a removed token stays invalid even after a new install reuses the slot */
    mbq_trigger_token tok2 = 0;
    CHECK_STATUS(mbq_buffer_queue_install_trigger_with_integer_threshold(
                     q2, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_LESS_THAN, 1, &tok2),
                 0);
    CHECK(tok2 != tok);
    CHECK_STATUS(mbq_buffer_queue_remove_trigger(q2, tok), MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN);
    CHECK_STATUS(mbq_buffer_queue_remove_trigger(q2, tok2), 0);

    mbq_buffer_queue_close(q);
    mbq_buffer_queue_close(q2);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(twelve_conditions_across_processes), CASE(trigger_reaches_late_opener),
           CASE(trigger_reaches_opener_with_backlog), CASE(trigger_catches_up_after_daemon_pause),
           CASE(close_removes_triggers), CASE(dispatcher_callbacks), CASE(install_errors))
