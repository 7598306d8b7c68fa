/* The mbq GStreamer elements when the stream is interrupted: a producer
 * gone, a seek, a flush. Against a real mbqd, each element in its own
 * GstHarness with its own connection, as two processes would be.
 *
 * What a user relies on:
 *   - mbqsrc pushes what is still queued when its producer (an mbqsink,
 *     which declares itself one) goes without EOS, then posts an error
 *     (on-producer-lost=error, the default) or sends EOS (=eos), at once;
 *     with =wait it waits on and delivers a new producer's buffers;
 *   - mbqsrc reads a queue, which has no position to go back to: not live,
 *     a flushing seek in time flushes downstream, sends the new segment and
 *     resumes at the first queued buffer from its start; a live source, or
 *     a seek at another rate or in another format, answers FALSE and the
 *     stream goes on unharmed;
 *   - mbqsink blocked on a full queue (full-policy=block) is unblocked by
 *     FLUSH_START (the push returns FLUSHING) and drops nothing: what the
 *     queue held stays, and after FLUSH_STOP buffers flow again;
 *   - a process stopped (SIGSTOP) while it holds the queue's head or tail
 *     lock stalls mbqsrc or mbqsink, which post a warning and wait, as for
 *     a slow peer, rather than fail the pipeline; when it resumes the
 *     stream goes on with nothing lost. */
#include "gst_common.h"
#include "segments.h"

#include <bq_layout.h>
#include <lock_layout.h>

#include <inttypes.h>
#include <signal.h>
#include <sys/wait.h>

static GstHarness *sink_harness(const char *desc)
{
    GstHarness *h = gst_harness_new_parse(desc);
    gst_harness_set_src_caps_str(h, "application/x-mbq-test");
    gst_harness_play(h);
    return h;
}

static GstHarness *src_harness(const char *desc, GstBus **bus)
{
    GstHarness *h = gst_harness_new_parse(desc);
    if (bus) {
        *bus = gst_bus_new();
        gst_element_set_bus(h->element, *bus);
    }
    gst_harness_play(h);
    return h;
}

/* Pulls one buffer (waits up to 60 s) and checks its PTS. */
static void pull_pts(GstHarness *h, GstClockTime pts)
{
    GstBuffer *b = gst_harness_pull(h);
    CHECK(b != NULL);
    if (!b)
        return;
    CHECK_EQ(GST_BUFFER_PTS(b), pts);
    gst_buffer_unref(b);
}

/* A producer that pushes n buffers (PTS first, first+1 s, ...) and goes
 * away without EOS: its queue's declaration ends with it. */
static void produce_and_vanish(const char *queue, int n, GstClockTime first)
{
    gchar *desc = g_strdup_printf("mbqsink queue=%s create=false pool=%s.pool blocks=8", queue,
                                  queue);
    GstHarness *sink = sink_harness(desc);
    g_free(desc);
    for (int i = 0; i < n; i++)
        CHECK_EQ(gst_harness_push(sink, make_buffer(64, (guint8)i, first + (GstClockTime)i * GST_SECOND)),
                 GST_FLOW_OK);
    gst_harness_teardown(sink);
}

/* ---- producer lost --------------------------------------------------------- */

/* The queue, made by a client that is no producer (the test's own). */
static mbq_buffer_queue *make_queue(const char *name)
{
    mbq_buffer_queue *q = NULL;
    mbq_buffer_queue_options o = h_bq_opts(8, MBQ_ORDER_FIFO);
    CHECK_STATUS(mbq_buffer_queue_create(observer, name, &o, &q), 0);
    return q;
}

static void source_errors_when_producer_lost(void)
{
    GstBus *bus;
    mbq_buffer_queue *q = make_queue("pl/err");
    GstHarness *src = src_harness("mbqsrc queue=pl/err", &bus);
    produce_and_vanish("pl/err", 2, 0);
    uint64_t t0 = h_now_ns();
    pull_pts(src, 0);
    pull_pts(src, GST_SECOND);
    GstMessage *m = gst_bus_timed_pop_filtered(bus, 30 * GST_SECOND, GST_MESSAGE_ERROR);
    CHECK(m != NULL);
    if (m) {
        GError *err = NULL;
        gst_message_parse_error(m, &err, NULL);
        CHECK(strstr(err->message, "producer of mbq queue pl/err is gone") != NULL);
        printf("error %" PRIu64 " ms after the producer left: %s\n", (h_now_ns() - t0) / 1000000u,
               err->message);
        g_error_free(err);
        gst_message_unref(m);
    }
    gst_harness_teardown(src);
    gst_object_unref(bus);
    mbq_buffer_queue_close(q);
}

static void source_ends_stream_when_producer_lost(void)
{
    mbq_buffer_queue *q = make_queue("pl/eos");
    GstHarness *src = src_harness("mbqsrc queue=pl/eos on-producer-lost=eos", NULL);
    produce_and_vanish("pl/eos", 3, 0);
    for (int i = 0; i < 3; i++)
        pull_pts(src, (GstClockTime)i * GST_SECOND);
    CHECK(pull_until_eos(src));
    gst_harness_teardown(src);
    mbq_buffer_queue_close(q);
}

static void source_waits_for_next_producer(void)
{
    mbq_buffer_queue *q = make_queue("pl/wait");
    GstHarness *src = src_harness("mbqsrc queue=pl/wait on-producer-lost=wait", NULL);
    produce_and_vanish("pl/wait", 1, 0);
    pull_pts(src, 0);
    /* lost now: a new producer resumes the stream */
    produce_and_vanish("pl/wait", 1, 10 * GST_SECOND);
    pull_pts(src, 10 * GST_SECOND);
    gst_harness_teardown(src);
    mbq_buffer_queue_close(q);
}

/* ---- seeks ---------------------------------------------------------------- */

/* Pulls events until one of type t (waits up to 60 s each); it, or NULL. */
static GstEvent *pull_event_of(GstHarness *h, GstEventType t)
{
    for (int i = 0; i < 64; i++) {
        GstEvent *e = gst_harness_pull_event(h);
        if (!e || GST_EVENT_TYPE(e) == t)
            return e;
        gst_event_unref(e);
    }
    return NULL;
}

static GstEvent *time_seek(gdouble rate, GstFormat fmt, GstSeekFlags flags, gint64 start)
{
    return gst_event_new_seek(rate, fmt, flags, GST_SEEK_TYPE_SET, start, GST_SEEK_TYPE_NONE,
                              GST_CLOCK_TIME_NONE);
}

/* Non-live: a flushing seek flushes downstream, sends the new segment and
 * resumes at the first queued buffer from its start (earlier ones are
 * released unpushed). */
static void flushing_seek_flushes_and_resumes(void)
{
    GstHarness *sink = sink_harness("mbqsink queue=sk/q pool=sk/pool blocks=8 capacity=8");
    GstHarness *src = src_harness("mbqsrc queue=sk/q", NULL);
    CHECK_EQ(gst_harness_push(sink, make_buffer(64, 1, 1 * GST_SECOND)), GST_FLOW_OK);
    pull_pts(src, 1 * GST_SECOND);
    /* the source waits on the empty queue: the seek must not wait for it */
    CHECK(gst_harness_push_upstream_event(
        src, time_seek(1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH, 3 * GST_SECOND)));
    GstEvent *e = pull_event_of(src, GST_EVENT_FLUSH_START);
    CHECK(e != NULL);
    if (e)
        gst_event_unref(e);
    e = pull_event_of(src, GST_EVENT_FLUSH_STOP);
    CHECK(e != NULL);
    if (e)
        gst_event_unref(e);
    for (int i = 2; i <= 4; i++)
        CHECK_EQ(gst_harness_push(sink, make_buffer(64, (guint8)i, (GstClockTime)i * GST_SECOND)),
                 GST_FLOW_OK);
    /* the new segment goes with the first buffer after the seek */
    e = pull_event_of(src, GST_EVENT_SEGMENT);
    CHECK(e != NULL);
    if (e) {
        const GstSegment *seg;
        gst_event_parse_segment(e, &seg);
        CHECK_EQ(seg->start, 3 * GST_SECOND);
        gst_event_unref(e);
    }
    pull_pts(src, 3 * GST_SECOND); /* 2 s skipped */
    pull_pts(src, 4 * GST_SECOND);
    CHECK_EQ(stat_of("sk/q").count, 0);
    gst_harness_teardown(src);
    gst_harness_teardown(sink);
}

/* A live source, or a seek in another format or at another rate: FALSE,
 * and the stream goes on with nothing lost or repeated. */
static void other_seeks_are_refused(void)
{
    GstHarness *sink = sink_harness("mbqsink queue=sr/q pool=sr/pool blocks=8 capacity=8");
    const char *descs[] = {"mbqsrc queue=sr/q is-live=true", "mbqsrc queue=sr/q"};
    for (unsigned k = 0; k < 2; k++) {
        GstHarness *src = src_harness(descs[k], NULL);
        CHECK_EQ(gst_harness_push(sink, make_buffer(64, 1, 1 * GST_SECOND)), GST_FLOW_OK);
        pull_pts(src, 1 * GST_SECOND);
        if (k == 0) { /* live: no seek at all */
            CHECK(!gst_harness_push_upstream_event(
                src, time_seek(1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH, 0)));
            CHECK(!gst_harness_push_upstream_event(
                src, time_seek(1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_NONE, 0)));
        } else { /* not live: only in time, at rate 1 */
            CHECK(!gst_harness_push_upstream_event(
                src, time_seek(2.0, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH, 0)));
            CHECK(!gst_harness_push_upstream_event(
                src, time_seek(1.0, GST_FORMAT_BYTES, GST_SEEK_FLAG_FLUSH, 0)));
        }
        CHECK_EQ(gst_harness_push(sink, make_buffer(64, 2, 2 * GST_SECOND)), GST_FLOW_OK);
        pull_pts(src, 2 * GST_SECOND);
        CHECK_EQ(gst_harness_buffers_in_queue(src), 0);
        gst_harness_teardown(src);
    }
    gst_harness_teardown(sink);
}

/* ---- flushing the sink ------------------------------------------------------- */

struct pusher {
    GstHarness *h;
    GstFlowReturn ret;
};

static gpointer push_thread(gpointer p)
{
    struct pusher *ps = p;
    ps->ret = gst_harness_push(ps->h, make_buffer(64, 9, 9 * GST_SECOND));
    return NULL;
}

static void sink_flush_unblocks_and_drops_nothing(void)
{
    GstHarness *sink =
        sink_harness("mbqsink queue=fl/q pool=fl/pool blocks=8 capacity=2 full-policy=block");
    CHECK_EQ(gst_harness_push(sink, make_buffer(64, 0, 0)), GST_FLOW_OK);
    CHECK_EQ(gst_harness_push(sink, make_buffer(64, 1, GST_SECOND)), GST_FLOW_OK);
    struct pusher ps = {.h = sink, .ret = GST_FLOW_OK};
    GThread *t = g_thread_new("push", push_thread, &ps);
    /* wait (bounded) until the push is blocked on the full queue: a wait
     * slice of the sink ended without room */
    uint64_t deadline = h_now_ns() + 20ull * 1000000000ull;
    while (stat_of("fl/q").rejected_full == 0 && h_now_ns() < deadline)
        h_pause_us(2000);
    CHECK(stat_of("fl/q").rejected_full > 0);
    CHECK(gst_harness_push_event(sink, gst_event_new_flush_start()));
    g_thread_join(t);
    CHECK_EQ(ps.ret, GST_FLOW_FLUSHING);
    CHECK_EQ(stat_of("fl/q").count, 2); /* what it held stays */
    CHECK(gst_harness_push_event(sink, gst_event_new_flush_stop(TRUE)));
    /* a consumer takes one; the next push goes in */
    GstHarness *src = src_harness("mbqsrc queue=fl/q", NULL);
    pull_pts(src, 0);
    GstSegment seg;
    gst_segment_init(&seg, GST_FORMAT_TIME);
    gst_harness_push_event(sink, gst_event_new_segment(&seg));
    CHECK_EQ(gst_harness_push(sink, make_buffer(64, 3, 3 * GST_SECOND)), GST_FLOW_OK);
    pull_pts(src, GST_SECOND);
    pull_pts(src, 3 * GST_SECOND);
    gst_harness_teardown(src);
    gst_harness_teardown(sink);
}

/* ---- a peer stopped inside a lock ------------------------------------------ */

/* A client in a process of its own that has the queue open (so mbqd deems
 * it entitled to the queue's locks and leaves them to it), takes the head
 * or tail lock for real when told, as shm/ does, and stops inside it. */
struct holder {
    pid_t pid;
    int cmd, ack; /* our ends */
};

static void holder_body(const char *queue, bool head, int cmd, int ack)
{
    mbq_client *c;
    mbq_buffer_queue *q;
    if (mbq_connect(d.sock, "holder", &c) != 0 || mbq_buffer_queue_open(c, queue, &q) != 0)
        _exit(2);
    mbq_object_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    struct bq_shared *sh =
        mbq_stat(c, queue, &info) == 0 ? test_segment_mapping(info.object_id) : NULL;
    char x;
    if (!sh || read(cmd, &x, 1) != 1)
        _exit(3);
    struct bslock *l = head ? &sh->head.lock : &sh->tail.lock;
    int how = bslock_lock(l);
    if (how < 0 || write(ack, "h", 1) != 1)
        _exit(4);
    raise(SIGSTOP); /* stopped inside, until continued */
    bslock_unlock(l, how);
    if (write(ack, "u", 1) != 1 || read(cmd, &x, 1) < 0)
        _exit(5);
    _exit(0);
}

/* Forked before the harnesses start their threads. */
static bool holder_spawn(struct holder *h, const char *queue, bool head)
{
    int c[2], a[2];
    if (pipe(c) != 0 || pipe(a) != 0)
        return false;
    fflush(NULL);
    h->pid = fork();
    if (h->pid == 0) {
        close(c[1]);
        close(a[0]);
        holder_body(queue, head, c[0], a[1]);
    }
    close(c[0]);
    close(a[1]);
    h->cmd = c[1];
    h->ack = a[0];
    return h->pid > 0;
}

/* Tells it to take the lock; true once it holds it (and is stopping). */
static bool holder_lock(struct holder *h)
{
    char x;
    return write(h->cmd, "l", 1) == 1 && read(h->ack, &x, 1) == 1 && x == 'h';
}

/* Continues it; true once it has let go. */
static bool holder_resume(struct holder *h)
{
    siginfo_t si;
    char x;
    /* it may not have stopped yet: wait until it has, then continue it */
    if (waitid(P_PID, (id_t)h->pid, &si, WSTOPPED | WNOWAIT) != 0)
        return false;
    kill(h->pid, SIGCONT);
    return read(h->ack, &x, 1) == 1 && x == 'u';
}

static void holder_finish(struct holder *h)
{
    close(h->cmd); /* its last read ends */
    int st = 0;
    CHECK_EQ(waitpid(h->pid, &st, 0), h->pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(h->ack);
}

/* The first warning or error on the bus (waits up to 30 s): a warning
 * that names the stalled object, else the check fails. */
static void expect_stall_warning(GstBus *bus, const char *object)
{
    GstMessage *m = gst_bus_timed_pop_filtered(bus, 30 * GST_SECOND,
                                               GST_MESSAGE_WARNING | GST_MESSAGE_ERROR);
    CHECK(m != NULL);
    if (!m)
        return;
    GError *err = NULL;
    gchar *dbg = NULL;
    bool warning = GST_MESSAGE_TYPE(m) == GST_MESSAGE_WARNING;
    if (warning)
        gst_message_parse_warning(m, &err, &dbg);
    else
        gst_message_parse_error(m, &err, &dbg);
    printf("%s: %s (%s)\n", warning ? "warning" : "error", err->message, dbg ? dbg : "");
    CHECK(warning);
    CHECK(strstr(err->message, object) != NULL);
    CHECK(strstr(err->message, "does not let go") != NULL);
    g_error_free(err);
    g_free(dbg);
    gst_message_unref(m);
}

static void no_error_on(GstBus *bus)
{
    GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    CHECK(m == NULL);
    if (m)
        gst_message_unref(m);
}

static GstHarness *sink_harness_bus(const char *desc, GstBus **bus)
{
    GstHarness *h = gst_harness_new_parse(desc);
    *bus = gst_bus_new();
    gst_element_set_bus(h->element, *bus);
    gst_harness_set_src_caps_str(h, "application/x-mbq-test");
    gst_harness_play(h);
    return h;
}

static void source_waits_out_a_stopped_lock_holder(void)
{
    mbq_buffer_queue *q = make_queue("st/head");
    struct holder ho;
    REQUIRE(holder_spawn(&ho, "st/head", true));
    GstBus *bus;
    GstHarness *src = src_harness("mbqsrc queue=st/head", &bus);
    GstHarness *sink = sink_harness("mbqsink queue=st/head create=false pool=st/head.pool blocks=8");
    CHECK_EQ(gst_harness_push(sink, make_buffer(64, 0, 0)), GST_FLOW_OK);
    pull_pts(src, 0);
    REQUIRE(holder_lock(&ho));
    /* queued while the head lock is held: the source cannot take it */
    CHECK_EQ(gst_harness_push(sink, make_buffer(64, 1, GST_SECOND)), GST_FLOW_OK);
    expect_stall_warning(bus, "st/head");
    CHECK(holder_resume(&ho));
    pull_pts(src, GST_SECOND);
    CHECK_EQ(gst_harness_push(sink, make_buffer(64, 2, 2 * GST_SECOND)), GST_FLOW_OK);
    pull_pts(src, 2 * GST_SECOND);
    no_error_on(bus);
    holder_finish(&ho);
    gst_harness_teardown(sink);
    gst_harness_teardown(src);
    gst_object_unref(bus);
    mbq_buffer_queue_close(q);
}

static void sink_waits_out_a_stopped_lock_holder(void)
{
    mbq_buffer_queue *q = make_queue("st/tail");
    struct holder ho;
    REQUIRE(holder_spawn(&ho, "st/tail", false));
    GstBus *bus;
    /* the harness is a live source: the sink's wait is bounded by timeout */
    GstHarness *sink = sink_harness_bus("mbqsink queue=st/tail create=false pool=st/tail.pool "
                                        "blocks=8 timeout=60000000000", &bus);
    GstHarness *src = src_harness("mbqsrc queue=st/tail", NULL);
    CHECK_EQ(gst_harness_push(sink, make_buffer(64, 0, 0)), GST_FLOW_OK);
    pull_pts(src, 0);
    REQUIRE(holder_lock(&ho));
    /* the push waits on the tail lock, in a thread of its own */
    struct pusher ps = {.h = sink, .ret = GST_FLOW_ERROR};
    GThread *t = g_thread_new("push", push_thread, &ps);
    expect_stall_warning(bus, "st/tail");
    CHECK(holder_resume(&ho));
    g_thread_join(t);
    CHECK_EQ(ps.ret, GST_FLOW_OK);
    pull_pts(src, 9 * GST_SECOND);
    no_error_on(bus);
    holder_finish(&ho);
    gst_harness_teardown(src);
    gst_harness_teardown(sink);
    gst_object_unref(bus);
    mbq_buffer_queue_close(q);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"source_errors_when_producer_lost", source_errors_when_producer_lost},
        {"source_ends_stream_when_producer_lost", source_ends_stream_when_producer_lost},
        {"source_waits_for_next_producer", source_waits_for_next_producer},
        {"flushing_seek_flushes_and_resumes", flushing_seek_flushes_and_resumes},
        {"other_seeks_are_refused", other_seeks_are_refused},
        {"sink_flush_unblocks_and_drops_nothing", sink_flush_unblocks_and_drops_nothing},
        {"source_waits_out_a_stopped_lock_holder", source_waits_out_a_stopped_lock_holder},
        {"sink_waits_out_a_stopped_lock_holder", sink_waits_out_a_stopped_lock_holder},
    };
    return gst_test_main(cases, sizeof cases / sizeof cases[0], argc, argv);
}
