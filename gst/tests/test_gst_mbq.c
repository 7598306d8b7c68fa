/* The mbq GStreamer elements against a real mbqd: mbqsink in one
 * GstHarness (or pipeline) and mbqsrc in another, in this process, each
 * with its own connection, as two processes would be.
 *
 * What a user relies on: caps, timestamps, flags and offsets arrive as
 * they were pushed, a caps change takes effect at its buffer, EOS crosses,
 * buffers from the proposed pool are enqueued without a copy (the pool
 * counts one allocation per buffer, not two) and every block returns to
 * the pool when GStreamer frees the buffers, fan-out puts one block in two
 * queues, max-held makes the source copy beyond N held blocks, state
 * changes to NULL complete while the elements wait on a full or empty
 * queue, and missing queues or bad properties fail with an error message
 * that says why. Pool and queue counters are read through mbq_stat. */
#include "gst_common.h"

#include <gst/video/video.h>

/* Polls a pool until no block is in use (blocks come back when GStreamer
 * frees buffers, possibly from a streaming thread that is stopping). */
static bool pool_drains(const char *name)
{
    uint64_t deadline = h_now_ns() + 20ull * 1000000000ull;
    while (h_now_ns() < deadline) {
        if (stat_of(name).blocks_used == 0)
            return true;
        h_pause_us(2000);
    }
    fprintf(stderr, "pool %s still has %u blocks in use\n", name, stat_of(name).blocks_used);
    return false;
}

static bool buffer_is_filled(GstBuffer *b, guint8 fill)
{
    GstMapInfo m;
    if (!gst_buffer_map(b, &m, GST_MAP_READ))
        return false;
    bool ok = true;
    for (gsize i = 0; i < m.size; i++)
        if (m.data[i] != fill) {
            ok = false;
            break;
        }
    gst_buffer_unmap(b, &m);
    return ok;
}

static GstHarness *src_harness(const char *desc)
{
    GstHarness *h = gst_harness_new_parse(desc);
    gst_harness_play(h);
    return h;
}

static bool caps_are(GstHarness *h, const char *s)
{
    GstCaps *cur = gst_pad_get_current_caps(h->sinkpad);
    GstCaps *want = gst_caps_from_string(s);
    bool ok = cur && gst_caps_is_equal(cur, want);
    if (!ok) {
        gchar *c = cur ? gst_caps_to_string(cur) : g_strdup("(none)");
        fprintf(stderr, "caps: got %s, want %s\n", c, s);
        g_free(c);
    }
    if (cur)
        gst_caps_unref(cur);
    gst_caps_unref(want);
    return ok;
}

/* Records, in order, the caps on the pad as each buffer passes. */
static GstPadProbeReturn record_caps(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    GstCaps *caps = gst_pad_get_current_caps(pad);
    g_ptr_array_add(data, caps ? gst_caps_to_string(caps) : g_strdup("(none)"));
    if (caps)
        gst_caps_unref(caps);
    return GST_PAD_PROBE_OK;
}

static bool caps_string_is(const char *got, const char *want)
{
    GstCaps *a = gst_caps_from_string(got), *b = gst_caps_from_string(want);
    bool ok = a && b && gst_caps_is_equal(a, b);
    if (!ok)
        fprintf(stderr, "caps: got %s, want %s\n", got, want);
    if (a)
        gst_caps_unref(a);
    if (b)
        gst_caps_unref(b);
    return ok;
}

/* ---- round trip ------------------------------------------------------------- */

#define CAPS_A "application/x-test, rate=(int)5"
#define CAPS_B "application/x-test, rate=(int)7"

static void roundtrip_caps_timing_flags(void)
{
    GstHarness *sink = gst_harness_new_parse("mbqsink queue=rt/q capacity=32 block-size=4096");
    gst_harness_set_src_caps_str(sink, CAPS_A);
    const GstBufferFlags flags[4] = {
        0,
        GST_BUFFER_FLAG_DELTA_UNIT | GST_BUFFER_FLAG_DISCONT,
        GST_BUFFER_FLAG_DELTA_UNIT | GST_BUFFER_FLAG_DROPPABLE | GST_BUFFER_FLAG_MARKER,
        GST_BUFFER_FLAG_HEADER | GST_BUFFER_FLAG_GAP | GST_BUFFER_FLAG_CORRUPTED |
            GST_BUFFER_FLAG_LIVE,
    };
    for (int i = 0; i < 4; i++) {
        GstBuffer *b = make_buffer(100 + i, (guint8)(i + 1), i * 40 * GST_MSECOND);
        GST_BUFFER_DTS(b) = i == 2 ? GST_CLOCK_TIME_NONE : (GstClockTime)(i * 40 * GST_MSECOND + 7);
        GST_BUFFER_DURATION(b) = 40 * GST_MSECOND;
        GST_BUFFER_OFFSET(b) = i == 1 ? GST_BUFFER_OFFSET_NONE : (guint64)i * 1000;
        GST_BUFFER_OFFSET_END(b) = (guint64)i * 1000 + 999;
        GST_BUFFER_FLAG_SET(b, flags[i]);
        CHECK_EQ(gst_harness_push(sink, b), GST_FLOW_OK);
    }
    /* a caps change takes effect at the next buffer */
    gst_harness_set_src_caps_str(sink, CAPS_B);
    CHECK_EQ(gst_harness_push(sink, make_buffer(10, 9, GST_SECOND)), GST_FLOW_OK);
    CHECK(gst_harness_push_event(sink, gst_event_new_eos()));
    CHECK(stat_of("rt/q").end_of_data);

    GstHarness *src = gst_harness_new_parse("mbqsrc queue=rt/q");
    GPtrArray *seen = g_ptr_array_new_with_free_func(g_free);
    GstPad *srcpad = gst_element_get_static_pad(src->element, "src");
    gst_pad_add_probe(srcpad, GST_PAD_PROBE_TYPE_BUFFER, record_caps, seen, NULL);
    gst_object_unref(srcpad);
    gst_harness_play(src);
    for (int i = 0; i < 4; i++) {
        GstBuffer *b = gst_harness_pull(src);
        REQUIRE(b);
        CHECK_EQ(gst_buffer_get_size(b), 100 + i);
        CHECK(buffer_is_filled(b, (guint8)(i + 1)));
        CHECK_EQ(GST_BUFFER_PTS(b), i * 40 * GST_MSECOND);
        CHECK_EQ(GST_BUFFER_DTS(b), i == 2 ? GST_CLOCK_TIME_NONE : (GstClockTime)(i * 40 * GST_MSECOND + 7));
        CHECK_EQ(GST_BUFFER_DURATION(b), 40 * GST_MSECOND);
        CHECK_EQ(GST_BUFFER_OFFSET(b), i == 1 ? GST_BUFFER_OFFSET_NONE : (guint64)i * 1000);
        CHECK_EQ(GST_BUFFER_OFFSET_END(b), (guint64)i * 1000 + 999);
        /* the first buffer after start is a discontinuity for GstBaseSrc */
        CHECK_EQ(GST_BUFFER_FLAGS(b) & ~(i == 0 ? GST_BUFFER_FLAG_DISCONT : 0), flags[i]);
        REQUIRE(seen->len > (guint)i);
        CHECK(caps_string_is(g_ptr_array_index(seen, i), CAPS_A));
        gst_buffer_unref(b);
    }
    GstBuffer *b = gst_harness_pull(src);
    REQUIRE(b);
    CHECK_EQ(GST_BUFFER_PTS(b), GST_SECOND);
    CHECK_EQ(GST_BUFFER_DTS(b), GST_CLOCK_TIME_NONE);
    REQUIRE(seen->len == 5);
    CHECK(caps_string_is(g_ptr_array_index(seen, 4), CAPS_B));
    gst_buffer_unref(b);
    CHECK(pull_until_eos(src));
    gst_harness_teardown(src);
    g_ptr_array_unref(seen);
    gst_harness_teardown(sink);
    CHECK(pool_drains("rt/q.pool"));
}

/* ---- zero copy ---------------------------------------------------------------- */

#define ZC_CAPS "video/x-raw, format=(string)GRAY8, width=(int)64, height=(int)32, framerate=(fraction)30/1"

static void pool_buffers_are_not_copied(void)
{
    GstHarness *sink = gst_harness_new_parse("mbqsink queue=zc/q capacity=16 blocks=8");
    gst_harness_set_src_caps_str(sink, ZC_CAPS);
    GstCaps *caps = gst_caps_from_string(ZC_CAPS);
    GstQuery *q = gst_query_new_allocation(caps, TRUE);
    REQUIRE(gst_pad_peer_query(sink->srcpad, q));
    REQUIRE(gst_query_get_n_allocation_pools(q) == 1);
    GstBufferPool *pool = NULL;
    guint size = 0, min = 0, max = 0;
    gst_query_parse_nth_allocation_pool(q, 0, &pool, &size, &min, &max);
    REQUIRE(pool);
    CHECK_EQ(size, 64 * 32);
    CHECK(g_str_equal(G_OBJECT_TYPE_NAME(pool), "GstMbqBufferPool"));
    GstStructure *config = gst_buffer_pool_get_config(pool);
    gst_buffer_pool_config_set_params(config, caps, size, min, max);
    gst_buffer_pool_config_add_option(config, GST_BUFFER_POOL_OPTION_VIDEO_META);
    CHECK(gst_buffer_pool_set_config(pool, config));
    CHECK(gst_buffer_pool_set_active(pool, TRUE));
    uint64_t allocs0 = stat_of("zc/q.pool").allocations;

    for (int i = 0; i < 5; i++) {
        GstBuffer *b = NULL;
        REQUIRE(gst_buffer_pool_acquire_buffer(pool, &b, NULL) == GST_FLOW_OK);
        CHECK(gst_memory_is_type(gst_buffer_peek_memory(b, 0), "mbq"));
        CHECK(gst_buffer_get_video_meta(b) != NULL);
        gst_buffer_memset(b, 0, (guint8)(0x40 + i), size);
        GST_BUFFER_PTS(b) = i * GST_MSECOND;
        CHECK_EQ(gst_harness_push(sink, b), GST_FLOW_OK);
    }
    /* one allocation per buffer: render enqueued the pool's blocks as they were */
    CHECK_EQ(stat_of("zc/q.pool").allocations - allocs0, 5);
    /* a buffer from elsewhere is copied once into a new block */
    CHECK_EQ(gst_harness_push(sink, make_buffer(size, 0x77, 5 * GST_MSECOND)), GST_FLOW_OK);
    CHECK_EQ(stat_of("zc/q.pool").allocations - allocs0, 6);
    CHECK(gst_harness_push_event(sink, gst_event_new_eos()));
    CHECK_EQ(stat_of("zc/q").count, 6);

    GstHarness *src = src_harness("mbqsrc queue=zc/q");
    for (int i = 0; i < 6; i++) {
        GstBuffer *b = gst_harness_pull(src);
        REQUIRE(b);
        CHECK(buffer_is_filled(b, i < 5 ? (guint8)(0x40 + i) : 0x77));
        CHECK_EQ(GST_BUFFER_PTS(b), i * GST_MSECOND);
        gst_buffer_unref(b);
    }
    CHECK(caps_are(src, ZC_CAPS));
    CHECK(pull_until_eos(src));
    gst_harness_teardown(src);
    gst_buffer_pool_set_active(pool, FALSE);
    gst_object_unref(pool);
    gst_query_unref(q);
    gst_caps_unref(caps);
    gst_harness_teardown(sink);
    /* every block came back: neither GStreamer nor a queue kept one */
    CHECK(pool_drains("zc/q.pool"));
}

/* The sink keeps no block once it has enqueued it: no last sample (which
 * would hold the last frame's block, and free it on the next frame's path,
 * before that frame is enqueued), so when the consumer has released every
 * buffer the pool is empty while the sink still plays. */
static void sink_holds_no_block(void)
{
    GstHarness *sink = gst_harness_new_parse("mbqsink queue=nb/q capacity=4 blocks=4");
    GstElement *e = gst_harness_find_element(sink, "mbqsink");
    REQUIRE(e);
    gboolean last_sample = TRUE, wake_ahead = TRUE;
    g_object_get(e, "enable-last-sample", &last_sample, "wake-ahead", &wake_ahead, NULL);
    CHECK(!last_sample);
    CHECK(!wake_ahead); /* off by default; the wake itself: test_wait */
    gst_object_unref(e);
    gst_harness_set_src_caps_str(sink, ZC_CAPS);
    GstCaps *caps = gst_caps_from_string(ZC_CAPS);
    GstQuery *q = gst_query_new_allocation(caps, TRUE);
    REQUIRE(gst_pad_peer_query(sink->srcpad, q));
    REQUIRE(gst_query_get_n_allocation_pools(q) == 1);
    GstBufferPool *pool = NULL;
    guint size = 0, min = 0, max = 0;
    gst_query_parse_nth_allocation_pool(q, 0, &pool, &size, &min, &max);
    REQUIRE(pool);
    GstStructure *config = gst_buffer_pool_get_config(pool);
    gst_buffer_pool_config_set_params(config, caps, size, min, max);
    CHECK(gst_buffer_pool_set_config(pool, config));
    CHECK(gst_buffer_pool_set_active(pool, TRUE));
    /* the consumer first: it may be asleep when a buffer comes (and woken
     * ahead of its enqueue) */
    GstHarness *src = src_harness("mbqsrc queue=nb/q");
    for (int i = 0; i < 3; i++) {
        GstBuffer *b = NULL;
        REQUIRE(gst_buffer_pool_acquire_buffer(pool, &b, NULL) == GST_FLOW_OK);
        gst_buffer_memset(b, 0, (guint8)(0x10 + i), size);
        GST_BUFFER_PTS(b) = i * GST_MSECOND;
        CHECK_EQ(gst_harness_push(sink, b), GST_FLOW_OK);
    }
    for (int i = 0; i < 3; i++) {
        GstBuffer *b = gst_harness_pull(src);
        REQUIRE(b);
        CHECK(buffer_is_filled(b, (guint8)(0x10 + i)));
        gst_buffer_unref(b);
    }
    /* the sink still plays, upstream holds nothing: no block in use */
    CHECK_EQ(stat_of("nb/q.pool").blocks_used, 0);
    gst_harness_teardown(src);
    gst_buffer_pool_set_active(pool, FALSE);
    gst_object_unref(pool);
    gst_query_unref(q);
    gst_caps_unref(caps);
    gst_harness_teardown(sink);
}

/* A frame with padded strides (its GstVideoMeta says so) reaches the
 * consumer in the caps' default layout, which is all a consumer knows. */
static void padded_video_frames_are_relaid(void)
{
    GstHarness *sink = gst_harness_new_parse("mbqsink queue=pv/q capacity=4");
    gst_harness_set_src_caps_str(
        sink, "video/x-raw, format=(string)GRAY8, width=(int)6, height=(int)2, framerate=(fraction)1/1");
    GstBuffer *b = gst_buffer_new_allocate(NULL, 32, NULL); /* stride 16, not 8 */
    gst_buffer_memset(b, 0, 0xEE, 32);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 6; x++) {
            guint8 v = (guint8)(y * 10 + x + 1);
            gst_buffer_fill(b, (gsize)(y * 16 + x), &v, 1);
        }
    gsize offset[GST_VIDEO_MAX_PLANES] = {0};
    gint stride[GST_VIDEO_MAX_PLANES] = {16};
    gst_buffer_add_video_meta_full(b, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_FORMAT_GRAY8, 6, 2, 1,
                                   offset, stride);
    CHECK_EQ(gst_harness_push(sink, b), GST_FLOW_OK);
    CHECK(gst_harness_push_event(sink, gst_event_new_eos()));
    GstHarness *src = src_harness("mbqsrc queue=pv/q");
    GstBuffer *got = gst_harness_pull(src);
    REQUIRE(got);
    CHECK_EQ(gst_buffer_get_size(got), 16); /* default stride: 8 */
    GstMapInfo m;
    REQUIRE(gst_buffer_map(got, &m, GST_MAP_READ));
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 6; x++)
            CHECK_EQ(m.data[y * 8 + x], y * 10 + x + 1);
    gst_buffer_unmap(got, &m);
    gst_buffer_unref(got);
    CHECK(pull_until_eos(src));
    gst_harness_teardown(src);
    gst_harness_teardown(sink);
}

/* ---- fan-out ------------------------------------------------------------------ */

static void fan_out_two_queues(void)
{
    GstHarness *sink = gst_harness_new_parse("mbqsink queue=fo/a,fo/b capacity=16 block-size=4096");
    gst_harness_set_src_caps_str(sink, CAPS_A);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(gst_harness_push(sink, make_buffer(64, (guint8)(i + 1), i * GST_SECOND)),
                 GST_FLOW_OK);
    CHECK(gst_harness_push_event(sink, gst_event_new_eos()));
    /* one block per buffer, held by both queues */
    CHECK_EQ(stat_of("fo/a.pool").allocations, 5);
    CHECK_EQ(stat_of("fo/a.pool").blocks_used, 5);
    CHECK_EQ(stat_of("fo/a").count, 5);
    CHECK_EQ(stat_of("fo/b").count, 5);
    const char *names[2] = {"mbqsrc queue=fo/a", "mbqsrc queue=fo/b"};
    for (int k = 0; k < 2; k++) {
        GstHarness *src = src_harness(names[k]);
        for (int i = 0; i < 5; i++) {
            GstBuffer *b = gst_harness_pull(src);
            REQUIRE(b);
            CHECK(buffer_is_filled(b, (guint8)(i + 1)));
            CHECK_EQ(GST_BUFFER_PTS(b), i * GST_SECOND);
            gst_buffer_unref(b);
        }
        CHECK(pull_until_eos(src));
        gst_harness_teardown(src);
    }
    gst_harness_teardown(sink);
    CHECK(pool_drains("fo/a.pool"));
}

/* ---- max-held ----------------------------------------------------------------- */

static void max_held_copies_beyond_the_limit(void)
{
    GstHarness *sink = gst_harness_new_parse("mbqsink queue=mh/q capacity=16 block-size=4096");
    gst_harness_set_src_caps_str(sink, CAPS_A);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(gst_harness_push(sink, make_buffer(64, (guint8)(i + 1), i * GST_SECOND)),
                 GST_FLOW_OK);
    CHECK(gst_harness_push_event(sink, gst_event_new_eos()));
    gst_harness_teardown(sink); /* the queue keeps the blocks */
    CHECK_EQ(stat_of("mh/q.pool").blocks_used, 6);

    GstHarness *src = src_harness("mbqsrc queue=mh/q max-held=2");
    GstBuffer *held[6];
    for (int i = 0; i < 6; i++) {
        held[i] = gst_harness_pull(src);
        REQUIRE(held[i]);
        CHECK(buffer_is_filled(held[i], (guint8)(i + 1)));
    }
    CHECK(pull_until_eos(src));
    /* all six held downstream: two wrap their blocks, four are copies */
    CHECK_EQ(stat_of("mh/q").count, 0);
    CHECK_EQ(stat_of("mh/q.pool").blocks_used, 2);
    for (int i = 0; i < 6; i++)
        gst_buffer_unref(held[i]);
    CHECK_EQ(stat_of("mh/q.pool").blocks_used, 0);
    gst_harness_teardown(src);
}

/* ---- state changes ------------------------------------------------------------- */

static void state_changes_while_waiting(void)
{
    /* The sink blocks on a full queue nobody reads (upstream is not live:
     * no bound), one source waits on an empty queue, another for a queue
     * that never appears. NULL must interrupt each, 20 times over. */
    mbq_buffer_queue *empty = NULL;
    mbq_buffer_queue_options o = h_bq_opts(4, MBQ_ORDER_FIFO);
    REQUIRE(mbq_buffer_queue_create(observer, "sc/empty", &o, &empty) == 0);
    GstElement *p = gst_parse_launch(
        "videotestsrc ! video/x-raw,format=GRAY8,width=16,height=16 ! "
        "mbqsink queue=sc/full capacity=2 blocks=4 "
        "mbqsrc queue=sc/empty ! fakesink async=false "
        "mbqsrc queue=sc/never ! fakesink async=false",
        NULL);
    REQUIRE(p);
    for (int i = 0; i < 20; i++) {
        CHECK(gst_element_set_state(p, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
        /* wait (bounded) until the sink is blocked on the full queue */
        uint64_t deadline = h_now_ns() + 20ull * 1000000000ull;
        while (stat_of("sc/full").rejected_full == 0 && h_now_ns() < deadline)
            h_pause_us(2000);
        CHECK_EQ(stat_of("sc/full").count, 2);
        CHECK_EQ(gst_element_set_state(p, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
    }
    gst_object_unref(p);
    mbq_buffer_queue_close(empty);
}

/* ---- errors -------------------------------------------------------------------- */

/* Sets the pipeline to PLAYING and expects an error message whose text
 * contains want. */
static void expect_error(const char *desc, const char *want)
{
    GstElement *p = gst_parse_launch(desc, NULL);
    REQUIRE(p);
    GstStateChangeReturn r = gst_element_set_state(p, GST_STATE_PLAYING);
    if (r == GST_STATE_CHANGE_ASYNC)
        r = gst_element_get_state(p, NULL, NULL, 30 * GST_SECOND);
    GstBus *bus = gst_element_get_bus(p);
    GstMessage *m = gst_bus_timed_pop_filtered(bus, 30 * GST_SECOND, GST_MESSAGE_ERROR);
    CHECK(m != NULL);
    if (m) {
        GError *err = NULL;
        gchar *dbg = NULL;
        gst_message_parse_error(m, &err, &dbg);
        gchar *all = g_strdup_printf("%s %s", err->message, dbg ? dbg : "");
        if (!strstr(all, want)) {
            fprintf(stderr, "error for '%s': '%s' lacks '%s'\n", desc, all, want);
            check_case_failed = 1;
        }
        g_free(all);
        g_error_free(err);
        g_free(dbg);
        gst_message_unref(m);
    }
    (void)r;
    gst_object_unref(bus);
    gst_element_set_state(p, GST_STATE_NULL);
    gst_object_unref(p);
}

static void errors_name_their_cause(void)
{
    expect_error("mbqsrc queue=err/missing wait-for-queue=false ! fakesink",
                 "No mbq queue err/missing");
    expect_error("mbqsrc wait-for-queue=false ! fakesink", "'queue' property is required");
    expect_error("fakesrc ! mbqsink", "'queue' property is required");
    expect_error("fakesrc ! mbqsink queue=err/missing create=false", "No mbq queue err/missing");
    /* a name mbqd refuses: the library's status text */
    expect_error("fakesrc ! mbqsink queue=bad//name", "Invalid argument");
    expect_error("fakesrc ! mbqsink queue=a,,b", "Empty queue name");
    /* a pool that exists with blocks too small for the buffers */
    expect_error("fakesrc sizetype=fixed sizemax=100000 filltype=zero num-buffers=1 ! "
                 "mbqsink queue=err/small block-size=4096",
                 "larger than the pool's blocks");
    /* waiting for a queue that does not come, bounded by timeout */
    expect_error("mbqsrc queue=err/late timeout=100000000 ! fakesink", "waited for it");
}

/* ---- daemon restart ------------------------------------------------------------ */

/* Stops mbqd; start_daemon() starts a new one on the same socket (a
 * daemon without a store: every object is gone, as after a crash). */
static bool stop_daemon(void)
{
    kill(d.pid, SIGTERM);
    return h_wait_pid(d.pid, 20000) == 0;
}

static bool start_daemon(void)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(99);
        execl(mbqd_path(), mbqd_path(), "--socket", d.sock, (char *)NULL);
        _exit(127);
    }
    d.pid = pid;
    for (int attempt = 0; attempt < 2000; attempt++) {
        int fd = h_connect_raw(d.sock);
        if (fd >= 0) {
            close(fd);
            mbq_disconnect(observer);
            observer = h_connect(&d, "observer");
            return observer != NULL;
        }
        h_pause_us(10000);
    }
    return false;
}

static bool restart_daemon(void)
{
    return stop_daemon() && start_daemon();
}

static void source_survives_daemon_restart(void)
{
    GstHarness *sink = gst_harness_new_parse("mbqsink queue=rs/q capacity=4 block-size=4096");
    gst_harness_set_src_caps_str(sink, CAPS_A);
    CHECK_EQ(gst_harness_push(sink, make_buffer(32, 1, 0)), GST_FLOW_OK);
    /* wait: its producer leaves without EOS, and a new one comes */
    GstHarness *src = src_harness("mbqsrc queue=rs/q on-producer-lost=wait");
    GstBuffer *b = gst_harness_pull(src);
    REQUIRE(b);
    CHECK(buffer_is_filled(b, 1));
    gst_harness_teardown(sink);
    /* the source is waiting on the old daemon's queue; it keeps the block */
    REQUIRE(restart_daemon());
    CHECK(buffer_is_filled(b, 1));
    gst_buffer_unref(b);
    /* a producer starts again on the new daemon */
    sink = gst_harness_new_parse("mbqsink queue=rs/q capacity=4 block-size=4096");
    gst_harness_set_src_caps_str(sink, CAPS_A);
    CHECK_EQ(gst_harness_push(sink, make_buffer(32, 2, GST_SECOND)), GST_FLOW_OK);
    CHECK(gst_harness_push_event(sink, gst_event_new_eos()));
    b = gst_harness_pull(src);
    REQUIRE(b);
    CHECK(buffer_is_filled(b, 2));
    CHECK_EQ(GST_BUFFER_PTS(b), GST_SECOND);
    gst_buffer_unref(b);
    CHECK(pull_until_eos(src));
    gst_harness_teardown(src);
    gst_harness_teardown(sink);
}

/* The daemon restarts without a store under a running pair: the sink
 * notices before its next buffer, creates its queue and pool again on the
 * new daemon and enqueues there; the source drains the old queue, notices,
 * and opens the new one. */
static void sink_survives_daemon_restart(void)
{
    GstHarness *sink =
        gst_harness_new_parse("mbqsink queue=rk/q pool=rk/p capacity=4 block-size=4096");
    gst_harness_set_src_caps_str(sink, CAPS_A);
    GstHarness *src = src_harness("mbqsrc queue=rk/q");
    CHECK_EQ(gst_harness_push(sink, make_buffer(32, 1, 0)), GST_FLOW_OK);
    CHECK_EQ(gst_harness_push(sink, make_buffer(32, 2, GST_SECOND)), GST_FLOW_OK);
    GstBuffer *b = gst_harness_pull(src);
    REQUIRE(b);
    CHECK(buffer_is_filled(b, 1));
    REQUIRE(restart_daemon());
    mbq_object_info *info = g_new0(mbq_object_info, 1);
    info->size = sizeof *info;
    CHECK_STATUS(mbq_stat(observer, "rk/q", info), -ENOENT);
    /* the old queue's second buffer, then the new queue's */
    CHECK_EQ(gst_harness_push(sink, make_buffer(32, 3, 2 * GST_SECOND)), GST_FLOW_OK);
    CHECK_STATUS(mbq_stat(observer, "rk/q", info), 0);
    CHECK_STATUS(mbq_stat(observer, "rk/p", info), 0);
    CHECK_EQ(info->block_size, 4096);
    g_free(info);
    CHECK(buffer_is_filled(b, 1)); /* a block of the old pool stays valid */
    gst_buffer_unref(b);
    for (guint8 fill = 2; fill <= 3; fill++) {
        b = gst_harness_pull(src);
        REQUIRE(b);
        CHECK(buffer_is_filled(b, fill));
        CHECK_EQ(GST_BUFFER_PTS(b), (fill - 1) * GST_SECOND);
        gst_buffer_unref(b);
    }
    CHECK(gst_harness_push_event(sink, gst_event_new_eos()));
    CHECK(pull_until_eos(src));
    gst_harness_teardown(src);
    gst_harness_teardown(sink);
}

/* The sink's wait for a daemon to come back is cancellable: a flush ends
 * it at once (reconnect-timeout is 30 s), and the next buffer after the
 * flush tries again. The debug log says when the sink begins to wait. */
static GMutex went_lock;
static GCond went_cond;
static gboolean went_away;

static void watch_log(GstDebugCategory *cat, GstDebugLevel level, const gchar *file,
                      const gchar *function, gint line, GObject *object, GstDebugMessage *message,
                      gpointer data)
{
    (void)cat, (void)level, (void)file, (void)function, (void)line, (void)object, (void)data;
    const gchar *text = gst_debug_message_get(message);
    if (text && strstr(text, "mbqd went away")) {
        g_mutex_lock(&went_lock);
        went_away = TRUE;
        g_cond_broadcast(&went_cond);
        g_mutex_unlock(&went_lock);
    }
}

static gpointer push_one(gpointer h)
{
    return GINT_TO_POINTER(gst_harness_push(h, make_buffer(32, 2, GST_SECOND)));
}

static void sink_reconnection_is_cancellable(void)
{
    GstHarness *sink = gst_harness_new_parse(
        "mbqsink queue=rc/q block-size=4096 reconnect-timeout=30000000000");
    gst_harness_set_src_caps_str(sink, CAPS_A);
    CHECK_EQ(gst_harness_push(sink, make_buffer(32, 1, 0)), GST_FLOW_OK);
    gst_debug_set_threshold_for_name("mbq", GST_LEVEL_WARNING);
    gst_debug_add_log_function(watch_log, NULL, NULL);
    REQUIRE(stop_daemon());
    GThread *t = g_thread_new("push", push_one, sink);
    gint64 until = g_get_monotonic_time() + 10 * G_TIME_SPAN_SECOND;
    g_mutex_lock(&went_lock);
    while (!went_away && g_cond_wait_until(&went_cond, &went_lock, until)) {
    }
    gboolean waiting = went_away;
    g_mutex_unlock(&went_lock);
    CHECK(waiting);
    gint64 t0 = g_get_monotonic_time();
    CHECK(gst_harness_push_event(sink, gst_event_new_flush_start()));
    GstFlowReturn r = GPOINTER_TO_INT(g_thread_join(t));
    CHECK_EQ(r, GST_FLOW_FLUSHING);
    CHECK(g_get_monotonic_time() - t0 < 2 * G_TIME_SPAN_SECOND);
    gst_debug_remove_log_function(watch_log);
    gst_debug_unset_threshold_for_name("mbq");
    CHECK(gst_harness_push_event(sink, gst_event_new_flush_stop(TRUE)));
    REQUIRE(start_daemon());
    /* the next buffer reconnects, with the pool's block size */
    CHECK_EQ(gst_harness_push(sink, make_buffer(32, 3, 2 * GST_SECOND)), GST_FLOW_OK);
    mbq_object_info *info = g_new0(mbq_object_info, 1);
    info->size = sizeof *info;
    CHECK_STATUS(mbq_stat(observer, "rc/q", info), 0);
    CHECK_EQ(info->count, 1);
    CHECK_STATUS(mbq_stat(observer, "rc/q.pool", info), 0);
    CHECK_EQ(info->block_size, 4096);
    g_free(info);
    gst_harness_teardown(sink);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"roundtrip_caps_timing_flags", roundtrip_caps_timing_flags},
        {"pool_buffers_are_not_copied", pool_buffers_are_not_copied},
        {"sink_holds_no_block", sink_holds_no_block},
        {"padded_video_frames_are_relaid", padded_video_frames_are_relaid},
        {"fan_out_two_queues", fan_out_two_queues},
        {"max_held_copies_beyond_the_limit", max_held_copies_beyond_the_limit},
        {"state_changes_while_waiting", state_changes_while_waiting},
        {"errors_name_their_cause", errors_name_their_cause},
        /* last: these replace the daemon */
        {"source_survives_daemon_restart", source_survives_daemon_restart},
        {"sink_survives_daemon_restart", sink_survives_daemon_restart},
        {"sink_reconnection_is_cancellable", sink_reconnection_is_cancellable},
    };
    return gst_test_main(cases, sizeof cases / sizeof cases[0], argc, argv);
}
