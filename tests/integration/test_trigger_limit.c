/* A queue's trigger limit across processes: four client processes install
 * 128 reset triggers between them (32 each, within the
 * per-client quota); the next install, from another client, fails with
 * -ENOSPC. A process that opens the queue afterwards receives every
 * trigger's eventfd with the segment in one message, so its reset signals
 * all of them: each installer sees every one of its eventfds readable. */
#include "harness.h"

#include <poll.h>

static struct mbqd D;

#define MAX_TRIGGERS 128 /* per queue (BQ_MAX_TRIGGERS) */
#define INSTALLERS 4
#define PER (MAX_TRIGGERS / INSTALLERS)

enum { L_INSTALL = 1, L_WAIT };

static int installer(int cmd, int rep, void *arg)
{
    (void)arg;
    mbq_client *c = h_connect(&D, "installer");
    if (!c)
        return 1;
    mbq_buffer_queue *q = NULL;
    int fds[PER];
    struct hmsg m;
    while (hmsg_next(cmd, &m) == 0) {
        struct hmsg r = hmsg_op(m.op);
        if (m.op == L_INSTALL) {
            r.status = mbq_buffer_queue_open(c, "tl/q", &q);
            for (int i = 0; i < PER && r.status == 0; i++) {
                mbq_trigger_token tok;
                r.status = mbq_buffer_queue_install_trigger(q, MBQ_TRIGGER_WHEN_RESET,
                                                            h_time(0, 1), &tok);
                if (r.status == 0) {
                    fds[i] = mbq_buffer_queue_trigger_fd(q, tok);
                    if (fds[i] < 0)
                        r.status = fds[i];
                }
            }
        } else if (m.op == L_WAIT) {
            /* every eventfd must become readable (bounded wait) */
            int fired = 0;
            uint64_t deadline = h_now_ns() + (uint64_t)H_HANG_MS * 1000000u;
            bool seen[PER] = {false};
            while (fired < PER && h_now_ns() < deadline) {
                struct pollfd p[PER];
                for (int i = 0; i < PER; i++)
                    p[i] = (struct pollfd){.fd = seen[i] ? -1 : fds[i], .events = POLLIN};
                if (poll(p, PER, 1000) < 0)
                    break;
                for (int i = 0; i < PER; i++)
                    if (!seen[i] && (p[i].revents & POLLIN)) {
                        uint64_t v;
                        if (read(fds[i], &v, sizeof v) == (ssize_t)sizeof v && v == 1) {
                            seen[i] = true;
                            fired++;
                        }
                    }
            }
            r.v[0] = fired;
        }
        if (hmsg_reply(rep, &r) != 0)
            return 1;
    }
    if (q)
        mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return 0;
}

static void limit_across_processes(void)
{
    REQUIRE(mbqd_start(&D) == 0);
    mbq_client *c = h_connect(&D, "owner");
    REQUIRE(c);
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options qo = h_bq_opts(16, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(c, "tl/q", &qo, &q) == 0);

    struct actor a[INSTALLERS];
    struct hmsg in = hmsg_op(L_INSTALL), r;
    for (int i = 0; i < INSTALLERS; i++)
        REQUIRE(actor_start(&a[i], installer, NULL) == 0);
    for (int i = 0; i < INSTALLERS; i++) {
        REQUIRE(actor_call(&a[i], &in, &r) == 0);
        CHECK_STATUS(r.status, 0);
    }
    mbq_object_info info;
    CHECK_STATUS(h_stat(c, "tl/q", &info), 0);
    CHECK_EQ(info.triggers, MAX_TRIGGERS);

    /* the next one, from a client far from its own quota */
    mbq_trigger_token tok;
    CHECK_STATUS(mbq_buffer_queue_install_trigger(q, MBQ_TRIGGER_WHEN_RESET, h_time(0, 1), &tok),
                 -ENOSPC);

    /* a late opener gets all the eventfds at open; its reset fires them all */
    mbq_client *late = h_connect(&D, "late");
    REQUIRE(late);
    mbq_buffer_queue *lq = NULL;
    REQUIRE(mbq_buffer_queue_open(late, "tl/q", &lq) == 0);
    CHECK_STATUS(mbq_buffer_queue_reset(lq), 0);
    struct hmsg w = hmsg_op(L_WAIT);
    for (int i = 0; i < INSTALLERS; i++) {
        REQUIRE(actor_call(&a[i], &w, &r) == 0);
        CHECK_EQ(r.v[0], PER);
    }
    for (int i = 0; i < INSTALLERS; i++)
        CHECK_ACTOR_OK(&a[i]);
    CHECK_STATUS(h_stat(c, "tl/q", &info), 0);
    CHECK_EQ(info.triggers, 0);
    mbq_buffer_queue_close(lq);
    mbq_disconnect(late);
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(limit_across_processes))
