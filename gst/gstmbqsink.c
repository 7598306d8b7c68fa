/* mbqsink: enqueues each buffer into one or more mbq buffer queues.
 *
 * Data path. A buffer whose only memory is a block of this sink's mbq pool
 * (it came from the GstMbqBufferPool or GstMbqAllocator proposed in the
 * allocation query) is enqueued as it is: its metadata is written onto the
 * block and every queue takes its own reference; the GstMemory keeps the
 * one it holds until GStreamer frees it. Any other buffer is copied once
 * into a block allocated here, which is enqueued the same way and then
 * released. A block already enqueued once has frozen metadata (mbq's "one
 * owner of metadata" rule), so a pool buffer rendered twice is copied the
 * second time.
 *
 * Waiting. full-policy=block waits for room (and, when copying, for a free
 * block): bounded by `timeout` when upstream is live (then the buffer is
 * dropped with a warning), without bound otherwise. Every wait is
 * cancellable: unlock() cancels the waits of every queue and of the pool
 * (mbq_*_cancel_waits), and waits are cut in 100 ms slices so that a wait
 * that began just after the cancel still ends soon.
 *
 * Latency. What render does before the enqueue lies on every frame's path
 * to the consumer, so render does the enqueue's work and no more there.
 * With wake-ahead (off by default: on a quiet machine at 30 fps the
 * consumer's spin often ran out before the enqueue, and its second wake-up
 * made the median worse; see PERFORMANCE.md), a buffer of the sink's pool
 * first wakes
 * the consumers that sleep on the queues (mbq_buffer_queue_wake_ahead), so
 * that their wake-up — the largest single cost, tens of microseconds
 * across processes — runs while render writes the metadata and enqueues;
 * a consumer so woken spins for the buffer on its own CPU. The sink keeps
 * no last sample (enable-last-sample is off by default):
 * GstBaseSink would hold the last frame's block until the next frame and
 * free it just before rendering that one, on its path (about 10 us of
 * cold code per frame on the project's VM), and the held block is one
 * the producer cannot reuse meanwhile.
 *
 * Streams. EOS marks end of data on every queue. A queue found at end of
 * data and empty when a new stream starts is reset (only end of data is
 * cleared: it holds nothing); one that still holds the last stream's
 * buffers refuses the new ones, and the sink fails with that reason. */
#include "gstmbqsink.h"
#include "gstmbq.h"
#include "gstmbqpool.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#define GST_CAT_DEFAULT gst_mbq_debug

#define WAIT_SLICE_NS ((gint64)(100 * GST_MSECOND))

enum {
    PROP_0,
    PROP_SOCKET,
    PROP_QUEUE,
    PROP_POOL,
    PROP_BLOCK_SIZE,
    PROP_BLOCKS,
    PROP_CREATE,
    PROP_CAPACITY,
    PROP_ORDER,
    PROP_FULL_POLICY,
    PROP_TIMEOUT,
    PROP_RECONNECT_TIMEOUT,
    PROP_WAKE_AHEAD,
};

#define DEFAULT_BLOCKS 32
#define DEFAULT_CAPACITY 8
#define DEFAULT_TIMEOUT GST_SECOND
#define DEFAULT_RECONNECT_TIMEOUT (5 * GST_SECOND)
#define RECONNECT_FIRST_US (20 * G_TIME_SPAN_MILLISECOND)
#define RECONNECT_MAX_US (500 * G_TIME_SPAN_MILLISECOND)

struct _GstMbqSink {
    GstBaseSink parent;

    /* properties, under the object lock; read at start */
    gchar *socket, *queue, *pool;
    guint64 block_size;
    guint blocks, capacity;
    gboolean create;
    GstMbqOrder order;
    GstMbqFullPolicy full_policy;
    guint64 timeout;
    guint64 reconnect_timeout;
    gboolean wake_ahead;

    /* streaming state, set in start/stop and the streaming thread; the
     * pointers unlock() reads are published under state_lock */
    GMutex state_lock;
    GstMbqSession *session;
    GPtrArray *queues; /* mbq_buffer_queue * */
    gchar **names;
    GstMbqAllocator *alloc; /* owns the mbq pool */
    gchar *caps_str;
    gboolean video; /* raw video caps: vinfo is their default layout */
    GstVideoInfo vinfo;
    mbq_format_id format_id;
    gboolean format_valid;
    gint upstream_live; /* -1: not asked yet */
    gint flushing;
    guint64 dropped;
    gboolean stalled; /* a call keeps finding a lock held (-EBUSY) */
    /* settings copied at start */
    GstMbqFullPolicy policy;
    gint64 timeout_ns;
    gboolean wake;
    /* reconnection (see reconnect()): unlock() signals state_cond; the
     * block size of the pool to create again (0: none yet) */
    GCond state_cond;
    guint64 lost_block_size;
    guint reconnects;
    guint64 lost;
};

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

G_DEFINE_TYPE(GstMbqSink, gst_mbq_sink, GST_TYPE_BASE_SINK)

GType gst_mbq_order_get_type(void);
GType gst_mbq_order_get_type(void)
{
    static GType type = 0;
    static const GEnumValue values[] = {
        {GST_MBQ_ORDER_FIFO, "First in, first out", "fifo"},
        {GST_MBQ_ORDER_PTS, "Sorted by presentation time stamp", "pts"},
        {GST_MBQ_ORDER_DTS, "Sorted by decode time stamp", "dts"},
        {0, NULL, NULL},
    };
    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstMbqOrder", values));
    return type;
}

GType gst_mbq_full_policy_get_type(void);
GType gst_mbq_full_policy_get_type(void)
{
    static GType type = 0;
    static const GEnumValue values[] = {
        {GST_MBQ_FULL_BLOCK, "Wait for room (bounded by timeout when live)", "block"},
        {GST_MBQ_FULL_DROP_OLDEST, "Drop the oldest queued buffer to make room", "drop-oldest"},
        {GST_MBQ_FULL_DROP_NEWEST, "Drop the new buffer", "drop-newest"},
        {GST_MBQ_FULL_FAIL, "Fail with an error", "fail"},
        {0, NULL, NULL},
    };
    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstMbqFullPolicy", values));
    return type;
}

static guint64 round_up_pages(guint64 n)
{
    return (n + 4095) & ~(guint64)4095;
}

/* ---- setup ------------------------------------------------------------------ */

/* Lets go of the queues, the pool's allocator and the session. close:
 * the queues are closed now (stop); else (a lost connection) they are
 * forgotten without a round trip, and the session closes them when its last
 * reference goes (mbq_disconnect), which buffers of the old pool still alive
 * upstream may hold a while. Buffers of the pool alive elsewhere keep the
 * allocator, and so the pool and the connection, until they are freed. */
static void drop_objects(GstMbqSink *self, gboolean close_queues)
{
    g_mutex_lock(&self->state_lock);
    GPtrArray *queues = self->queues;
    GstMbqAllocator *alloc = self->alloc;
    GstMbqSession *session = self->session;
    self->queues = NULL;
    self->alloc = NULL;
    self->session = NULL;
    g_mutex_unlock(&self->state_lock);
    if (queues) {
        for (guint i = 0; close_queues && i < queues->len; i++)
            mbq_buffer_queue_close(g_ptr_array_index(queues, i));
        g_ptr_array_free(queues, TRUE);
    }
    if (alloc)
        gst_object_unref(alloc);
    gst_mbq_session_unref(session);
}

static void close_all(GstMbqSink *self)
{
    drop_objects(self, TRUE);
    g_strfreev(self->names);
    self->names = NULL;
}

static gboolean adopt_pool(GstMbqSink *self, mbq_pool *pool, const gchar *name)
{
    mbq_object_info *info = g_new0(mbq_object_info, 1);
    info->size = sizeof *info;
    int r = mbq_stat(self->session->client, name, info);
    guint64 block_size = info->block_size;
    g_free(info);
    if (r < 0) {
        gchar *why = gst_mbq_session_describe(self->session, r);
        GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE, ("Cannot stat mbq pool %s", name),
                          ("mbq_stat: %s", why));
        g_free(why);
        mbq_pool_close(pool);
        return FALSE;
    }
    GstMbqAllocator *alloc = gst_mbq_allocator_new(self->session, pool, block_size);
    alloc->alloc_timeout_ns = self->timeout_ns;
    g_mutex_lock(&self->state_lock);
    self->alloc = alloc;
    g_mutex_unlock(&self->state_lock);
    GST_INFO_OBJECT(self, "mbq pool %s: blocks of %" G_GUINT64_FORMAT " bytes", name, block_size);
    return TRUE;
}

/* The pool, created (or opened) on first need: its block size comes from
 * the property, the caps or the first buffer. */
static GstFlowReturn reconnect(GstMbqSink *self);

static gboolean ensure_pool(GstMbqSink *self, gsize size_hint, gboolean exact)
{
    if (self->alloc)
        return TRUE;
    if (!self->session && reconnect(self) != GST_FLOW_OK)
        return FALSE; /* a reconnection a flush cut short: again */
    if (self->alloc)
        return TRUE;
    GST_OBJECT_LOCK(self);
    gchar *name = self->pool && *self->pool ? g_strdup(self->pool)
                                             : g_strdup_printf("%s.pool", self->names[0]);
    guint64 block_size = self->block_size;
    guint blocks = self->blocks;
    GST_OBJECT_UNLOCK(self);
    if (block_size == 0 && exact) {
        block_size = size_hint; /* raw video: every frame has this size */
    } else if (block_size == 0) {
        /* headroom for streams whose buffers vary (encoded, audio) */
        guint64 b = 4096;
        while (b < size_hint)
            b <<= 1;
        block_size = b;
    }
    mbq_pool_options o = {
        .size = sizeof o,
        .block_size = round_up_pages(block_size),
        .block_count = blocks,
        .flags = MBQ_OPEN_IF_EXISTS,
    };
    mbq_pool *pool = NULL;
    int r = mbq_pool_create(self->session->client, name, &o, &pool);
    if (r < 0) {
        gchar *why = gst_mbq_session_describe(self->session, r);
        GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE, ("Cannot create mbq pool %s", name),
                          ("mbq_pool_create: %s", why));
        g_free(why);
        g_free(name);
        return FALSE;
    }
    gboolean ok = adopt_pool(self, pool, name);
    g_free(name);
    return ok;
}

/* The sink is a producer of each queue it writes: its consumers are told
 * when it goes without EOS (a crash included). A failure costs only that. */
static void declare_producer(GstMbqSink *self, mbq_buffer_queue *q, const char *name)
{
    int r = mbq_buffer_queue_declare_producer(q);
    if (r < 0)
        GST_WARNING_OBJECT(self, "queue %s: cannot declare a producer: %s", name,
                           mbq_status_string(r));
}

/* The queues' options from the properties; object lock held. */
static mbq_buffer_queue_options queue_options(GstMbqSink *self)
{
    return (mbq_buffer_queue_options){
        .size = sizeof(mbq_buffer_queue_options),
        .capacity = self->capacity,
        .order = (mbq_buffer_queue_order)self->order,
        .full_policy =
            self->full_policy == GST_MBQ_FULL_DROP_OLDEST ? MBQ_FULL_DROP_OLDEST : MBQ_FULL_FAIL,
        .flags = MBQ_OPEN_IF_EXISTS,
    };
}

static gboolean gst_mbq_sink_start(GstBaseSink *bsink)
{
    GstMbqSink *self = GST_MBQ_SINK(bsink);
    GST_OBJECT_LOCK(self);
    gchar *socket = g_strdup(self->socket);
    gchar *queue = g_strdup(self->queue);
    gchar *pool_name = g_strdup(self->pool);
    gboolean create = self->create, have_block_size = self->block_size > 0;
    mbq_buffer_queue_options qo = queue_options(self);
    self->policy = self->full_policy;
    self->timeout_ns = self->timeout > (guint64)G_MAXINT64 ? G_MAXINT64 : (gint64)self->timeout;
    self->wake = self->wake_ahead;
    GST_OBJECT_UNLOCK(self);

    self->upstream_live = -1;
    self->format_valid = FALSE;
    self->dropped = 0;
    self->lost_block_size = 0;
    self->reconnects = 0;
    self->lost = 0;
    g_atomic_int_set(&self->flushing, 0);

    if (!queue || !*queue) {
        GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("No queue name given"),
                          ("the 'queue' property is required"));
        goto fail;
    }
    self->names = g_strsplit(queue, ",", -1);
    for (gchar **n = self->names; *n; n++) {
        g_strstrip(*n);
        if (!**n) {
            GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("Empty queue name in '%s'", queue),
                              (NULL));
            goto fail;
        }
    }
    int err = 0;
    GstMbqSession *session = gst_mbq_session_connect(socket, "mbqsink", &err);
    if (!session) {
        GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE, ("Cannot connect to mbqd"),
                          ("mbq_connect(%s): %s", socket ? socket : "default",
                           mbq_status_string(err)));
        goto fail;
    }
    GPtrArray *queues = g_ptr_array_new();
    g_mutex_lock(&self->state_lock);
    self->session = session;
    self->queues = queues;
    g_mutex_unlock(&self->state_lock);
    for (gchar **n = self->names; *n; n++) {
        mbq_buffer_queue *q = NULL;
        int r = create ? mbq_buffer_queue_create(session->client, *n, &qo, &q)
                       : mbq_buffer_queue_open(session->client, *n, &q);
        if (r < 0) {
            gchar *why = gst_mbq_session_describe(session, r);
            if (r == -ENOENT)
                GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No mbq queue %s", *n),
                                  ("mbq_buffer_queue_open: %s", why));
            else
                GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE,
                                  ("Cannot %s mbq queue %s", create ? "create" : "open", *n),
                                  ("%s: %s",
                                   create ? "mbq_buffer_queue_create" : "mbq_buffer_queue_open",
                                   why));
            g_free(why);
            goto fail;
        }
        declare_producer(self, q, *n);
        g_mutex_lock(&self->state_lock);
        g_ptr_array_add(queues, q);
        g_mutex_unlock(&self->state_lock);
    }
    /* An existing pool, or a block size given: the pool now (so a missing
     * permission shows at start); otherwise at the caps or first buffer. */
    gchar *pname = pool_name && *pool_name ? g_strdup(pool_name)
                                           : g_strdup_printf("%s.pool", self->names[0]);
    mbq_pool *pool = NULL;
    int r = mbq_pool_open(session->client, pname, &pool);
    if (r == 0) {
        gboolean ok = adopt_pool(self, pool, pname);
        g_free(pname);
        if (!ok)
            goto fail;
    } else {
        g_free(pname);
        if (r != -ENOENT || have_block_size) {
            if (!ensure_pool(self, 0, FALSE))
                goto fail;
        }
    }
    g_free(socket);
    g_free(queue);
    g_free(pool_name);
    return TRUE;
fail:
    close_all(self);
    g_free(socket);
    g_free(queue);
    g_free(pool_name);
    return FALSE;
}

static gboolean gst_mbq_sink_stop(GstBaseSink *bsink)
{
    GstMbqSink *self = GST_MBQ_SINK(bsink);
    if (self->dropped)
        GST_INFO_OBJECT(self, "%" G_GUINT64_FORMAT " buffers dropped", self->dropped);
    if (self->reconnects)
        GST_INFO_OBJECT(self, "%u reconnections to mbqd; %" G_GUINT64_FORMAT
                        " buffers lost in them", self->reconnects, self->lost);
    close_all(self);
    g_clear_pointer(&self->caps_str, g_free);
    return TRUE;
}

static gboolean gst_mbq_sink_unlock(GstBaseSink *bsink)
{
    GstMbqSink *self = GST_MBQ_SINK(bsink);
    g_atomic_int_set(&self->flushing, 1);
    g_mutex_lock(&self->state_lock);
    if (self->queues)
        for (guint i = 0; i < self->queues->len; i++)
            mbq_buffer_queue_cancel_waits(g_ptr_array_index(self->queues, i));
    if (self->alloc)
        mbq_pool_cancel_waits(self->alloc->pool);
    g_cond_broadcast(&self->state_cond); /* a reconnection's wait */
    g_mutex_unlock(&self->state_lock);
    return TRUE;
}

static gboolean gst_mbq_sink_unlock_stop(GstBaseSink *bsink)
{
    g_atomic_int_set(&GST_MBQ_SINK(bsink)->flushing, 0);
    return TRUE;
}

static gboolean gst_mbq_sink_set_caps(GstBaseSink *bsink, GstCaps *caps)
{
    GstMbqSink *self = GST_MBQ_SINK(bsink);
    gchar *s = gst_caps_to_string(caps);
    if (strlen(s) > MBQ_FORMAT_MAX) {
        GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Caps too long for an mbq format"),
                          ("%zu bytes, at most %d: %s", strlen(s), MBQ_FORMAT_MAX, s));
        g_free(s);
        return FALSE;
    }
    g_free(self->caps_str);
    self->caps_str = s;
    self->format_valid = FALSE;
    self->video = gst_video_info_from_caps(&self->vinfo, caps);
    if (!self->alloc && self->video)
        return ensure_pool(self, GST_VIDEO_INFO_SIZE(&self->vinfo), TRUE);
    return TRUE;
}

static gboolean gst_mbq_sink_propose_allocation(GstBaseSink *bsink, GstQuery *query)
{
    GstMbqSink *self = GST_MBQ_SINK(bsink);
    GstCaps *caps = NULL;
    gboolean need_pool = FALSE;
    gst_query_parse_allocation(query, &caps, &need_pool);
    if (!caps)
        return TRUE;
    GstVideoInfo vi;
    guint64 size = 0;
    if (gst_video_info_from_caps(&vi, caps))
        size = GST_VIDEO_INFO_SIZE(&vi);
    else if (self->alloc)
        size = self->alloc->block_size;
    else {
        GST_OBJECT_LOCK(self);
        size = self->block_size;
        GST_OBJECT_UNLOCK(self);
    }
    if (size == 0 || !ensure_pool(self, size, TRUE))
        return TRUE; /* no proposal: render copies */
    if (size > self->alloc->block_size) {
        GST_WARNING_OBJECT(self, "buffers of %" G_GUINT64_FORMAT " bytes do not fit the pool's blocks",
                           size);
        return TRUE;
    }
    if (need_pool) {
        GstBufferPool *pool = gst_mbq_buffer_pool_new(self->alloc);
        GstStructure *config = gst_buffer_pool_get_config(pool);
        gst_buffer_pool_config_set_params(config, caps, (guint)size, 0, 0);
        if (!gst_buffer_pool_set_config(pool, config)) {
            gst_object_unref(pool);
            return TRUE;
        }
        gst_query_add_allocation_pool(query, pool, (guint)size, 0, 0);
        gst_object_unref(pool);
    }
    gst_query_add_allocation_param(query, GST_ALLOCATOR_CAST(self->alloc), NULL);
    return TRUE;
}

/* ---- reconnection ------------------------------------------------------------
 *
 * A daemon that keeps its objects across restarts (systemd with the fd
 * store) is the library's business: the dispatch below reconnects and the
 * queues and pool go on. A daemon that comes back without them (no store,
 * or a crash outside systemd) leaves this sink writing into queues nobody
 * will find again: a consumer that notices (mbqsrc does, once its queue is
 * quiet) waits for the queue to appear on the new daemon. So before each
 * buffer (and at EOS) the sink looks at its control connection; when the
 * library says it is lost for good (-ENOTCONN), or that it reconnected to a
 * daemon that came back without our objects (-EIDRM: systemd after `stop`,
 * which drops the store), the sink connects again and creates its queues
 * and its pool with the options it had (the pool with the block size it
 * had), retrying from 20 ms up to every 500 ms within reconnect-timeout.
 * Buffers already in the old queues stay there for the consumer to drain;
 * buffers of the old pool held upstream stay valid (their allocator keeps
 * the old connection), and a reconfigure event makes upstream take a buffer
 * pool of the new one. */

static gboolean connection_lost(GstMbqSink *self)
{
    struct pollfd p = {.fd = mbq_client_fd(self->session->client), .events = POLLIN};
    if (p.fd < 0 || poll(&p, 1, 0) <= 0)
        return FALSE;
    int r = mbq_client_dispatch(self->session->client);
    return r == -ENOTCONN || r == -EIDRM; /* gone for good, or back without our objects */
}

static gboolean is_transient(int r)
{
    /* no daemon yet, no queue yet (create=false), a daemon gone again */
    return r == -ENOENT || r == -ECONNREFUSED || r == -ENOTCONN || r == -EIDRM ||
           r == -ETIMEDOUT || r == -ECONNRESET;
}

/* One attempt: a new session with every queue and, if there was one, the
 * pool (block_size > 0). 0 (published in self), or the failing status with
 * *what naming the call. */
static int reopen_once(GstMbqSink *self, guint64 block_size, const gchar **what)
{
    GST_OBJECT_LOCK(self);
    gchar *socket = g_strdup(self->socket);
    gchar *pname = self->pool && *self->pool ? g_strdup(self->pool)
                                              : g_strdup_printf("%s.pool", self->names[0]);
    gboolean create = self->create;
    mbq_buffer_queue_options qo = queue_options(self);
    mbq_pool_options po = {
        .size = sizeof po,
        .block_size = block_size,
        .block_count = self->blocks,
        .flags = MBQ_OPEN_IF_EXISTS,
    };
    GST_OBJECT_UNLOCK(self);
    int r = 0;
    *what = "mbq_connect";
    GstMbqSession *s = gst_mbq_session_connect(socket, "mbqsink", &r);
    GPtrArray *queues = g_ptr_array_new();
    for (gchar **n = self->names; s && *n && r == 0; n++) {
        mbq_buffer_queue *q = NULL;
        *what = create ? "mbq_buffer_queue_create" : "mbq_buffer_queue_open";
        r = create ? mbq_buffer_queue_create(s->client, *n, &qo, &q)
                   : mbq_buffer_queue_open(s->client, *n, &q);
        if (r == 0) {
            declare_producer(self, q, *n);
            g_ptr_array_add(queues, q);
        }
    }
    mbq_pool *pool = NULL;
    if (s && r == 0 && block_size > 0) {
        *what = "mbq_pool_create";
        r = mbq_pool_create(s->client, pname, &po, &pool);
    }
    if (r == 0) {
        g_mutex_lock(&self->state_lock);
        self->session = s;
        self->queues = queues;
        g_mutex_unlock(&self->state_lock);
        if (pool && !adopt_pool(self, pool, pname))
            r = -EPROTO; /* posted */
    } else {
        g_ptr_array_free(queues, TRUE);
        gst_mbq_session_unref(s); /* closes what it opened */
    }
    g_free(socket);
    g_free(pname);
    return r;
}

/* Waits until `until` (monotonic µs) or a flush; FALSE when flushing. */
static gboolean wait_until(GstMbqSink *self, gint64 until)
{
    g_mutex_lock(&self->state_lock);
    while (!g_atomic_int_get(&self->flushing) &&
           g_cond_wait_until(&self->state_cond, &self->state_lock, until)) {
    }
    g_mutex_unlock(&self->state_lock);
    return !g_atomic_int_get(&self->flushing);
}

/* The connection is lost for good (or a flush cut the last reconnection
 * short: no session): connect again and re-create the queues and the
 * pool. OK, FLUSHING, or ERROR (posted). */
static GstFlowReturn reconnect(GstMbqSink *self)
{
    if (self->alloc)
        self->lost_block_size = self->alloc->block_size;
    guint64 block_size = self->lost_block_size;
    GST_OBJECT_LOCK(self);
    gint64 budget_us = (gint64)MIN(self->reconnect_timeout / 1000, (guint64)G_MAXINT64 / 2);
    GST_OBJECT_UNLOCK(self);
    if (budget_us == 0) {
        GST_ELEMENT_ERROR(self, RESOURCE, WRITE, ("Lost the connection to mbqd"),
                          ("mbqd went away without keeping its objects; reconnect-timeout=0"));
        return GST_FLOW_ERROR;
    }
    GST_WARNING_OBJECT(self, "mbqd went away without keeping its objects: connecting again, "
                       "re-creating the queues and the pool");
    drop_objects(self, FALSE);
    gint64 start = g_get_monotonic_time(), retry = RECONNECT_FIRST_US;
    for (;;) {
        const gchar *what = NULL;
        int r = reopen_once(self, block_size, &what);
        if (r == 0) {
            self->format_valid = FALSE; /* format ids belong to the pool */
            self->reconnects++;
            GST_WARNING_OBJECT(self, "reconnected to mbqd after %" G_GINT64_FORMAT " ms; "
                               "queues and pool re-created",
                               (g_get_monotonic_time() - start) / 1000);
            gst_pad_push_event(GST_BASE_SINK_PAD(self), gst_event_new_reconfigure());
            return GST_FLOW_OK;
        }
        if (r == -EPROTO && self->session)
            return GST_FLOW_ERROR; /* adopt_pool posted why */
        gint64 now = g_get_monotonic_time();
        if (!is_transient(r) || now - start >= budget_us) {
            GST_ELEMENT_ERROR(self, RESOURCE, WRITE, ("Cannot reconnect to mbqd"),
                              ("%s: %s (%d), after %" G_GINT64_FORMAT " ms", what,
                               mbq_status_string(r), r, (now - start) / 1000));
            return GST_FLOW_ERROR;
        }
        GST_DEBUG_OBJECT(self, "not yet: %s: %s", what, mbq_status_string(r));
        if (!wait_until(self, MIN(now + retry, start + budget_us)))
            return GST_FLOW_FLUSHING;
        retry = MIN(retry * 2, RECONNECT_MAX_US);
    }
}

/* Before a buffer or EOS: reconnects if the daemon went away for good. */
static GstFlowReturn check_connection(GstMbqSink *self)
{
    if (self->session && !connection_lost(self))
        return GST_FLOW_OK;
    return reconnect(self);
}

/* ---- render ---------------------------------------------------------------- */

static gboolean is_live(GstMbqSink *self)
{
    if (self->upstream_live < 0) {
        gboolean live = FALSE, upstream_live = FALSE;
        GstClockTime min, max;
        if (gst_base_sink_query_latency(GST_BASE_SINK(self), &live, &upstream_live, &min, &max))
            self->upstream_live = upstream_live ? 1 : 0;
        else
            self->upstream_live = 0;
    }
    return self->upstream_live == 1;
}

static int set_format(GstMbqSink *self, mbq_buffer b)
{
    if (!self->caps_str)
        return 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!self->format_valid) {
            int r = mbq_pool_intern_format(self->alloc->pool, self->caps_str,
                                           strlen(self->caps_str), &self->format_id);
            if (r < 0)
                return r;
            self->format_valid = TRUE;
        }
        int r = mbq_buffer_set_format_id(b, self->format_id);
        if (r != -ESTALE)
            return r;
        self->format_valid = FALSE; /* recycled while no buffer carried it */
    }
    return -ESTALE;
}

/* One enqueue under the policy. 0 (enqueued, or dropped by policy),
 * -ECANCELED (flushing), or an error status. */
static int enqueue_one(GstMbqSink *self, mbq_buffer_queue *q, const gchar *name, mbq_buffer b)
{
    gboolean reset_done = FALSE;
    gint64 deadline = 0;
    gboolean bounded = is_live(self);
    if (bounded)
        deadline = (gint64)gst_util_get_timestamp() + self->timeout_ns;
    for (;;) {
        if (g_atomic_int_get(&self->flushing))
            return -ECANCELED;
        int r;
        if (self->policy == GST_MBQ_FULL_BLOCK) {
            gint64 slice = WAIT_SLICE_NS;
            if (bounded) {
                gint64 left = deadline - (gint64)gst_util_get_timestamp();
                if (left <= 0) {
                    self->dropped++;
                    GST_WARNING_OBJECT(self, "queue %s stayed full for %" G_GINT64_FORMAT
                                       " ns: buffer dropped", name, self->timeout_ns);
                    return 0;
                }
                slice = MIN(slice, left);
            }
            r = mbq_buffer_queue_enqueue_wait(q, b, slice);
            if (r == MBQ_BQ_ERR_QUEUE_IS_FULL || r == -ECANCELED)
                continue; /* a slice passed, or a cancel: flushing is looked at above */
        } else {
            r = mbq_buffer_queue_enqueue(q, b);
            if (r == MBQ_BQ_ERR_QUEUE_IS_FULL) {
                if (self->policy == GST_MBQ_FULL_DROP_NEWEST) {
                    self->dropped++;
                    return 0;
                }
                if (self->policy == GST_MBQ_FULL_DROP_OLDEST) {
                    /* a queue opened with the fail policy: drop here */
                    mbq_buffer old;
                    if (mbq_buffer_queue_dequeue_and_retain(q, &old) == 0) {
                        mbq_buffer_release(old);
                        self->dropped++;
                    }
                    continue;
                }
            }
        }
        if (r == -EBUSY) {
            /* a lock held by a stopped peer: wait, as for a full queue (a
             * live source's bound and flushing are looked at above) */
            gst_mbq_stall_note(GST_ELEMENT(self), &self->stalled, name,
                               "mbq_buffer_queue_enqueue");
            if (bounded && (gint64)gst_util_get_timestamp() >= deadline) {
                self->dropped++;
                GST_WARNING_OBJECT(self, "queue %s stayed locked for %" G_GINT64_FORMAT
                                   " ns: buffer dropped", name, self->timeout_ns);
                return 0;
            }
            continue;
        }
        gst_mbq_stall_end(GST_ELEMENT(self), &self->stalled, name);
        if (r == MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA && !reset_done &&
            mbq_buffer_queue_is_at_end_of_data(q)) {
            /* the last stream's end, consumed: a new stream begins */
            mbq_buffer_queue_reset(q);
            reset_done = TRUE;
            continue;
        }
        return r;
    }
}

/* A raw video frame whose GstVideoMeta describes another layout than the
 * caps' default (padded strides, planes elsewhere): consumers know only
 * the caps, so it is copied into the default layout. */
static gboolean needs_relayout(GstMbqSink *self, GstBuffer *buffer)
{
    if (!self->video)
        return FALSE;
    GstVideoMeta *m = gst_buffer_get_video_meta(buffer);
    if (!m)
        return FALSE;
    for (guint i = 0; i < GST_VIDEO_INFO_N_PLANES(&self->vinfo); i++)
        if (m->offset[i] != self->vinfo.offset[i] || m->stride[i] != self->vinfo.stride[i])
            return TRUE;
    return FALSE;
}

static gboolean copy_frame(GstMbqSink *self, GstBuffer *buffer, guint8 *data, gsize size)
{
    GstBuffer *dst = gst_buffer_new_wrapped_full(0, data, size, 0, size, NULL, NULL);
    GstVideoFrame in, out;
    gboolean ok = FALSE;
    if (gst_video_frame_map(&in, &self->vinfo, buffer, GST_MAP_READ)) {
        if (gst_video_frame_map(&out, &self->vinfo, dst, GST_MAP_WRITE)) {
            ok = gst_video_frame_copy(&out, &in);
            gst_video_frame_unmap(&out);
        }
        gst_video_frame_unmap(&in);
    }
    gst_buffer_unref(dst);
    return ok;
}

/* A buffer of this sink's pool is enqueued as it is, within microseconds:
 * wake the consumers now (see "Latency" above). A buffer to copy is left
 * to the enqueue's wake-up, as the copy can outlast a woken consumer's
 * spin. */
static GstPadProbeReturn wake_ahead(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    GstMbqSink *self = data;
    GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER(info);
    GstMemory *mem = gst_buffer_n_memory(buffer) == 1 ? gst_buffer_peek_memory(buffer, 0) : NULL;
    if (!self->wake || !self->queues || !self->alloc || !mem ||
        mem->allocator != GST_ALLOCATOR_CAST(self->alloc))
        return GST_PAD_PROBE_OK;
    for (guint i = 0; i < self->queues->len; i++)
        mbq_buffer_queue_wake_ahead(g_ptr_array_index(self->queues, i));
    return GST_PAD_PROBE_OK;
}

static GstFlowReturn gst_mbq_sink_render(GstBaseSink *bsink, GstBuffer *buffer)
{
    GstMbqSink *self = GST_MBQ_SINK(bsink);
    GstFlowReturn checked = check_connection(self);
    if (checked != GST_FLOW_OK)
        return checked;
    gsize size = gst_buffer_get_size(buffer);
    gboolean relayout = needs_relayout(self, buffer);
    if (relayout)
        size = GST_VIDEO_INFO_SIZE(&self->vinfo);
    if (!ensure_pool(self, size, FALSE))
        return GST_FLOW_ERROR;
    /* The producer's next acquire from our buffer pool may wait no longer
     * for a block than render may wait for room (see acquire_wait_ns). */
    gint64 acquire_wait =
        self->policy != GST_MBQ_FULL_BLOCK || is_live(self) ? (gint64)self->timeout_ns : -1;
    __atomic_store_n(&self->alloc->acquire_wait_ns, acquire_wait, __ATOMIC_RELAXED);

    mbq_buffer b = {0};
    gboolean have = FALSE, owned = FALSE;
    GstMemory *mem = gst_buffer_n_memory(buffer) == 1 ? gst_buffer_peek_memory(buffer, 0) : NULL;
    if (mem && !relayout && gst_is_mbq_memory(mem) && mem->allocator == GST_ALLOCATOR_CAST(self->alloc) &&
        mem->offset == 0) {
        b = gst_mbq_memory_get_buffer(mem);
        int r = gst_mbq_buffer_set_meta(b, buffer, mem->size);
        if (r == 0)
            r = set_format(self, b);
        if (r < 0) {
            GST_DEBUG_OBJECT(self, "pool buffer not usable as it is (%s): copying",
                             mbq_status_string(r));
        } else {
            have = TRUE;
            GST_LOG_OBJECT(self, "zero copy: %" G_GSIZE_FORMAT " bytes", mem->size);
        }
    }
    if (!have) {
        if (size > self->alloc->block_size) {
            GST_ELEMENT_ERROR(self, RESOURCE, NO_SPACE_LEFT,
                              ("Buffer of %" G_GSIZE_FORMAT " bytes larger than the pool's blocks",
                               size),
                              ("blocks of %" G_GUINT64_FORMAT " bytes; set block-size (and use a "
                               "new pool name)", self->alloc->block_size));
            return GST_FLOW_ERROR;
        }
        gboolean bounded = self->policy != GST_MBQ_FULL_BLOCK || is_live(self);
        gint64 deadline = (gint64)gst_util_get_timestamp() + self->timeout_ns;
        for (;;) {
            if (g_atomic_int_get(&self->flushing))
                return GST_FLOW_FLUSHING;
            gint64 slice = WAIT_SLICE_NS;
            if (bounded) {
                gint64 left = deadline - (gint64)gst_util_get_timestamp();
                if (left <= 0) {
                    if (self->policy == GST_MBQ_FULL_FAIL) {
                        GST_ELEMENT_ERROR(self, RESOURCE, NO_SPACE_LEFT,
                                          ("Every block of the mbq pool is in use"), (NULL));
                        return GST_FLOW_ERROR;
                    }
                    self->dropped++;
                    GST_WARNING_OBJECT(self, "no free block: buffer dropped");
                    return GST_FLOW_OK;
                }
                slice = MIN(slice, left);
            }
            int r = mbq_pool_allocate_wait(self->alloc->pool, MAX(size, 1), slice, &b);
            if (r == -EBUSY) {
                gst_mbq_stall_note(GST_ELEMENT(self), &self->stalled, "(the sink's pool)",
                                   "mbq_pool_allocate_wait");
                continue; /* as for an empty pool: bound and flushing above */
            }
            gst_mbq_stall_end(GST_ELEMENT(self), &self->stalled, "(the sink's pool)");
            if (r == 0)
                break;
            if (r == MBQ_POOL_ERR_ALLOCATION_FAILED || r == -ECANCELED)
                continue;
            gchar *why = gst_mbq_session_describe(self->session, r);
            GST_ELEMENT_ERROR(self, RESOURCE, WRITE, ("Cannot allocate an mbq block"),
                              ("mbq_pool_allocate_wait: %s", why));
            g_free(why);
            return GST_FLOW_ERROR;
        }
        owned = TRUE;
        guint8 *data = mbq_buffer_get_data(b, NULL);
        if (relayout) {
            if (!copy_frame(self, buffer, data, size)) {
                mbq_buffer_release(b);
                GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Cannot map the video frame"), (NULL));
                return GST_FLOW_ERROR;
            }
        } else {
            gst_buffer_extract(buffer, 0, data, size);
        }
        int r = gst_mbq_buffer_set_meta(b, buffer, size);
        if (r == 0)
            r = set_format(self, b);
        if (r < 0) {
            mbq_buffer_release(b);
            GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Cannot set the buffer's metadata"),
                              ("%s", mbq_status_string(r)));
            return GST_FLOW_ERROR;
        }
    }

    GstFlowReturn ret = GST_FLOW_OK;
    gboolean lost = FALSE;
    for (guint i = 0; i < self->queues->len; i++) {
        int r = enqueue_one(self, g_ptr_array_index(self->queues, i), self->names[i], b);
        if (r == -ECANCELED) {
            ret = GST_FLOW_FLUSHING;
            break;
        }
        if (r == -ENOTCONN || r == -EIDRM) {
            /* the daemon went between the check above and an enqueue that
             * needed it (a pool's first into a queue) */
            lost = TRUE;
            break;
        }
        if (r < 0) {
            gchar *why = gst_mbq_session_describe(self->session, r);
            GST_ELEMENT_ERROR(self, RESOURCE, WRITE, ("Cannot enqueue into mbq queue %s",
                                                      self->names[i]),
                              ("mbq_buffer_queue_enqueue: %s", why));
            g_free(why);
            ret = GST_FLOW_ERROR;
            break;
        }
    }
    if (owned)
        mbq_buffer_release(b);
    if (lost) {
        self->lost++;
        GST_WARNING_OBJECT(self, "buffer lost: mbqd went away while it was enqueued");
        ret = reconnect(self);
    }
    return ret;
}

static gboolean gst_mbq_sink_event(GstBaseSink *bsink, GstEvent *event)
{
    GstMbqSink *self = GST_MBQ_SINK(bsink);
    if (GST_EVENT_TYPE(event) == GST_EVENT_EOS && self->names &&
        check_connection(self) != GST_FLOW_OK) {
        gst_event_unref(event);
        return FALSE;
    }
    if (GST_EVENT_TYPE(event) == GST_EVENT_EOS && self->queues) {
        for (guint i = 0; i < self->queues->len; i++) {
            int r = mbq_buffer_queue_mark_end_of_data(g_ptr_array_index(self->queues, i));
            if (r < 0)
                GST_WARNING_OBJECT(self, "mark_end_of_data(%s): %s", self->names[i],
                                   mbq_status_string(r));
        }
    }
    return GST_BASE_SINK_CLASS(gst_mbq_sink_parent_class)->event(bsink, event);
}

/* ---- properties ----------------------------------------------------------- */

static void gst_mbq_sink_set_property(GObject *object, guint prop_id, const GValue *value,
                                      GParamSpec *pspec)
{
    GstMbqSink *self = GST_MBQ_SINK(object);
    GST_OBJECT_LOCK(self);
    switch (prop_id) {
    case PROP_SOCKET:
        g_free(self->socket);
        self->socket = g_value_dup_string(value);
        break;
    case PROP_QUEUE:
        g_free(self->queue);
        self->queue = g_value_dup_string(value);
        break;
    case PROP_POOL:
        g_free(self->pool);
        self->pool = g_value_dup_string(value);
        break;
    case PROP_BLOCK_SIZE:
        self->block_size = g_value_get_uint64(value);
        break;
    case PROP_BLOCKS:
        self->blocks = g_value_get_uint(value);
        break;
    case PROP_CREATE:
        self->create = g_value_get_boolean(value);
        break;
    case PROP_CAPACITY:
        self->capacity = g_value_get_uint(value);
        break;
    case PROP_ORDER:
        self->order = g_value_get_enum(value);
        break;
    case PROP_FULL_POLICY:
        self->full_policy = g_value_get_enum(value);
        break;
    case PROP_TIMEOUT:
        self->timeout = g_value_get_uint64(value);
        break;
    case PROP_RECONNECT_TIMEOUT:
        self->reconnect_timeout = g_value_get_uint64(value);
        break;
    case PROP_WAKE_AHEAD:
        self->wake_ahead = g_value_get_boolean(value);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
        break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_mbq_sink_get_property(GObject *object, guint prop_id, GValue *value,
                                      GParamSpec *pspec)
{
    GstMbqSink *self = GST_MBQ_SINK(object);
    GST_OBJECT_LOCK(self);
    switch (prop_id) {
    case PROP_SOCKET:
        g_value_set_string(value, self->socket);
        break;
    case PROP_QUEUE:
        g_value_set_string(value, self->queue);
        break;
    case PROP_POOL:
        g_value_set_string(value, self->pool);
        break;
    case PROP_BLOCK_SIZE:
        g_value_set_uint64(value, self->block_size);
        break;
    case PROP_BLOCKS:
        g_value_set_uint(value, self->blocks);
        break;
    case PROP_CREATE:
        g_value_set_boolean(value, self->create);
        break;
    case PROP_CAPACITY:
        g_value_set_uint(value, self->capacity);
        break;
    case PROP_ORDER:
        g_value_set_enum(value, self->order);
        break;
    case PROP_FULL_POLICY:
        g_value_set_enum(value, self->full_policy);
        break;
    case PROP_TIMEOUT:
        g_value_set_uint64(value, self->timeout);
        break;
    case PROP_RECONNECT_TIMEOUT:
        g_value_set_uint64(value, self->reconnect_timeout);
        break;
    case PROP_WAKE_AHEAD:
        g_value_set_boolean(value, self->wake_ahead);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
        break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_mbq_sink_finalize(GObject *object)
{
    GstMbqSink *self = GST_MBQ_SINK(object);
    close_all(self);
    g_free(self->caps_str);
    g_free(self->socket);
    g_free(self->queue);
    g_free(self->pool);
    g_mutex_clear(&self->state_lock);
    g_cond_clear(&self->state_cond);
    G_OBJECT_CLASS(gst_mbq_sink_parent_class)->finalize(object);
}

static void gst_mbq_sink_class_init(GstMbqSinkClass *klass)
{
    GObjectClass *gobject = G_OBJECT_CLASS(klass);
    GstElementClass *element = GST_ELEMENT_CLASS(klass);
    GstBaseSinkClass *bsink = GST_BASE_SINK_CLASS(klass);
    const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;

    gobject->set_property = gst_mbq_sink_set_property;
    gobject->get_property = gst_mbq_sink_get_property;
    gobject->finalize = gst_mbq_sink_finalize;

    g_object_class_install_property(
        gobject, PROP_SOCKET,
        g_param_spec_string("socket", "Socket",
                            "mbqd's socket path (NULL: $MBQ_SOCKET, else the library's default, "
                            "$XDG_RUNTIME_DIR/mbq/mbqd.sock or /run/mbq/mbqd.sock for root)",
                            NULL, rw));
    g_object_class_install_property(
        gobject, PROP_QUEUE,
        g_param_spec_string("queue", "Queue",
                            "Buffer queue name, or a comma-separated list (each buffer goes into "
                            "every queue, no copy); required",
                            NULL, rw));
    g_object_class_install_property(
        gobject, PROP_POOL,
        g_param_spec_string("pool", "Pool",
                            "mbq pool to allocate blocks from (NULL: '<first queue>.pool'); "
                            "created if absent, opened if it exists",
                            NULL, rw));
    g_object_class_install_property(
        gobject, PROP_BLOCK_SIZE,
        g_param_spec_uint64("block-size", "Block size",
                            "Bytes per block when the pool is created (0: from raw video caps, "
                            "else the first buffer's size rounded up to a power of two)",
                            0, G_MAXUINT32, 0, rw));
    g_object_class_install_property(
        gobject, PROP_BLOCKS,
        g_param_spec_uint("blocks", "Blocks", "Blocks in the pool when it is created", 1, 1 << 20,
                          DEFAULT_BLOCKS, rw));
    g_object_class_install_property(
        gobject, PROP_CREATE,
        g_param_spec_boolean("create", "Create",
                             "Create the queues if absent (open them if they exist); FALSE: "
                             "open only, fail if absent",
                             TRUE, rw));
    g_object_class_install_property(
        gobject, PROP_CAPACITY,
        g_param_spec_uint("capacity", "Capacity", "Buffers per queue when it is created", 1,
                          1 << 20, DEFAULT_CAPACITY, rw));
    g_object_class_install_property(
        gobject, PROP_ORDER,
        g_param_spec_enum("order", "Order", "Queue order when it is created",
                          gst_mbq_order_get_type(), GST_MBQ_ORDER_FIFO, rw));
    g_object_class_install_property(
        gobject, PROP_FULL_POLICY,
        g_param_spec_enum("full-policy", "Full policy",
                          "What to do when a queue is full (or, when copying, every block is "
                          "in use)",
                          gst_mbq_full_policy_get_type(), GST_MBQ_FULL_BLOCK, rw));
    g_object_class_install_property(
        gobject, PROP_TIMEOUT,
        g_param_spec_uint64("timeout", "Timeout",
                            "Longest wait for room or a block, in ns, when upstream is live "
                            "(then the buffer is dropped); not live: no limit, cancellable",
                            0, G_MAXUINT64, DEFAULT_TIMEOUT, rw));
    g_object_class_install_property(
        gobject, PROP_RECONNECT_TIMEOUT,
        g_param_spec_uint64("reconnect-timeout", "Reconnect timeout",
                            "When mbqd restarts without keeping its objects: the longest wait, "
                            "in ns, for it to come back, then the queues and the pool are "
                            "created again (0: fail at once)",
                            0, G_MAXUINT64, DEFAULT_RECONNECT_TIMEOUT, rw));
    g_object_class_install_property(
        gobject, PROP_WAKE_AHEAD,
        g_param_spec_boolean("wake-ahead", "Wake ahead",
                             "Wake a sleeping consumer as a buffer of the sink's pool arrives, "
                             "before its metadata is written and it is enqueued, so that the "
                             "consumer's wake-up overlaps that work; the consumer spins for the "
                             "buffer meanwhile (at most ~50 us). Off by default: it helps "
                             "under load, not on a quiet machine at low frame rates",
                             FALSE, rw));

    gst_element_class_add_static_pad_template(element, &sink_template);
    gst_element_class_set_static_metadata(
        element, "mbq sink", "Sink", "Enqueues buffers into mbq buffer queues in shared memory",
        "mbq");

    bsink->start = GST_DEBUG_FUNCPTR(gst_mbq_sink_start);
    bsink->stop = GST_DEBUG_FUNCPTR(gst_mbq_sink_stop);
    bsink->unlock = GST_DEBUG_FUNCPTR(gst_mbq_sink_unlock);
    bsink->unlock_stop = GST_DEBUG_FUNCPTR(gst_mbq_sink_unlock_stop);
    bsink->set_caps = GST_DEBUG_FUNCPTR(gst_mbq_sink_set_caps);
    bsink->propose_allocation = GST_DEBUG_FUNCPTR(gst_mbq_sink_propose_allocation);
    bsink->render = GST_DEBUG_FUNCPTR(gst_mbq_sink_render);
    bsink->event = GST_DEBUG_FUNCPTR(gst_mbq_sink_event);

    gst_type_mark_as_plugin_api(gst_mbq_order_get_type(), 0);
    gst_type_mark_as_plugin_api(gst_mbq_full_policy_get_type(), 0);
}

static void gst_mbq_sink_init(GstMbqSink *self)
{
    g_mutex_init(&self->state_lock);
    g_cond_init(&self->state_cond);
    self->reconnect_timeout = DEFAULT_RECONNECT_TIMEOUT;
    self->wake_ahead = FALSE;
    self->blocks = DEFAULT_BLOCKS;
    self->create = TRUE;
    self->capacity = DEFAULT_CAPACITY;
    self->order = GST_MBQ_ORDER_FIFO;
    self->full_policy = GST_MBQ_FULL_BLOCK;
    self->timeout = DEFAULT_TIMEOUT;
    /* a transport, not a renderer: no clock sync unless asked */
    gst_base_sink_set_sync(GST_BASE_SINK(self), FALSE);
    /* nor a last sample: see "Latency" above */
    gst_base_sink_set_last_sample_enabled(GST_BASE_SINK(self), FALSE);
    gst_pad_add_probe(GST_BASE_SINK_PAD(self), GST_PAD_PROBE_TYPE_BUFFER, wake_ahead, self, NULL);
}
