/* mbqsrc: dequeues buffers from an mbq buffer queue and pushes them.
 *
 * Data path. Each dequeued block is pushed as a read-only GstMemory that
 * wraps the block where it is mapped (gst_memory_new_wrapped); its destroy
 * notify releases the mbq reference the dequeue handed over, so the block
 * returns to its pool when the last GStreamer user is done. With
 * max-held=N, a block dequeued while N wrapped blocks are still alive
 * downstream is copied into ordinary memory and released at once, so a
 * consumer with a deep lookahead cannot take every block of the
 * producer's pool.
 *
 * Caps follow the data: the format string a producer set on a buffer (an
 * mbqsink sets its caps) is parsed when the buffer's (pool, format id)
 * pair changes, and new caps are set on the pad only if the string
 * changed, so a format change takes effect exactly at the buffer that
 * carries it.
 *
 * Waiting. Opening the queue waits for it to exist (wait-for-queue): a
 * retry every 20 ms on a condition variable that unlock() signals, bounded
 * by `timeout` (0: until stopped); the daemon itself may not be running
 * yet. The dequeue waits in 100 ms slices (see mbqsink for why slices) and
 * unlock() cancels it with mbq_buffer_queue_cancel_waits. A control error
 * that says the daemon lost the queue (-EIDRM, -ENOTCONN) makes the
 * source close the queue and its connection and open them again, backing
 * off from 20 ms to 500 ms; blocks already pushed stay valid (their
 * connection lives until they are freed). The data plane never reports a
 * lost daemon, so while the queue is quiet the source also looks at the
 * control connection every wait slice (connection_lost()). The GstBuffer
 * and the reference holder a wrapped block needs are allocated before the
 * dequeue waits, so that after the wake-up only the block's own GstMemory
 * is allocated on the buffer's path (see docs/PERFORMANCE.md).
 *
 * Producer lost. When every producer that declared itself on the queue
 * (mbqsink does) is gone — killed, crashed, or exited without end of data
 * — the dequeue returns -EPIPE once the queue is empty, at once: the
 * source then posts an error, or sends EOS, or waits on for the next
 * producer, as on-producer-lost says. Buffers still queued are pushed
 * first.
 *
 * Seeking. A queue has no positions to go back to. A non-live source takes
 * a seek in time at rate 1 (GstBaseSrc flushes downstream first if it asks
 * for it, and the wait is cancelled as at any unlock): the stream resumes
 * with the next queued buffer whose PTS is at or after the seek's start,
 * the ones before it released unpushed, so a seek forward skips a backlog
 * and one backward changes nothing but the segment. A live source, or a
 * seek in another format or at another rate, is refused (FALSE). */
#include "gstmbqsrc.h"
#include "gstmbq.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#define GST_CAT_DEFAULT gst_mbq_debug

#define WAIT_SLICE_NS ((gint64)(100 * GST_MSECOND))
#define RETRY_MIN_US (20 * G_TIME_SPAN_MILLISECOND)
#define RETRY_MAX_US (500 * G_TIME_SPAN_MILLISECOND)

enum {
    PROP_0,
    PROP_SOCKET,
    PROP_QUEUE,
    PROP_IS_LIVE,
    PROP_WAIT_FOR_QUEUE,
    PROP_TIMEOUT,
    PROP_MAX_HELD,
    PROP_ON_PRODUCER_LOST,
};

typedef enum {
    GST_MBQ_SRC_PRODUCER_LOST_ERROR,
    GST_MBQ_SRC_PRODUCER_LOST_EOS,
    GST_MBQ_SRC_PRODUCER_LOST_WAIT,
} GstMbqSrcProducerLost;

#define GST_TYPE_MBQ_SRC_PRODUCER_LOST (gst_mbq_src_producer_lost_get_type())
static GType gst_mbq_src_producer_lost_get_type(void)
{
    static GType type = 0;
    static const GEnumValue values[] = {
        {GST_MBQ_SRC_PRODUCER_LOST_ERROR, "Post an error (the pipeline fails)", "error"},
        {GST_MBQ_SRC_PRODUCER_LOST_EOS, "Send end of stream", "eos"},
        {GST_MBQ_SRC_PRODUCER_LOST_WAIT, "Wait for a producer to declare itself again", "wait"},
        {0, NULL, NULL},
    };
    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstMbqSrcProducerLost", values));
    return type;
}

struct _GstMbqSrc {
    GstPushSrc parent;

    /* properties, under the object lock */
    gchar *socket, *queue;
    gboolean wait_for_queue;
    guint64 timeout;
    guint max_held;
    GstMbqSrcProducerLost on_producer_lost;

    /* lock guards flushing, session and q against unlock() */
    GMutex lock;
    GCond cond;
    gboolean flushing;
    GstMbqSession *session;
    mbq_buffer_queue *q;

    /* streaming thread only */
    gchar *qname, *sock;
    gboolean wait;
    gint64 timeout_us;
    guint max;
    GstMbqSrcProducerLost on_lost;
    int format_fd;
    mbq_format_id format_id;
    gchar *caps_str;
    guint64 copied, wrapped;
    gboolean stalled; /* the dequeue keeps finding a lock held (-EBUSY) */
    /* allocated before a wait, used after it (see "Waiting") */
    GstBuffer *spare;
    gpointer spare_held;
};

static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

G_DEFINE_TYPE(GstMbqSrc, gst_mbq_src, GST_TYPE_PUSH_SRC)

typedef struct {
    GstMbqSession *session;
    mbq_buffer b;
} Held;

/* The GstBuffer and the Held a wrapped block will need, allocated before
 * the dequeue waits rather than after the wake-up, on the buffer's path. */
static void make_spares(GstMbqSrc *self)
{
    if (!self->spare)
        self->spare = gst_buffer_new();
    if (!self->spare_held)
        self->spare_held = g_new(Held, 1);
}

static void drop_spares(GstMbqSrc *self)
{
    gst_clear_buffer(&self->spare);
    g_clear_pointer(&self->spare_held, g_free);
}

static void drop_queue(GstMbqSrc *self)
{
    g_mutex_lock(&self->lock);
    mbq_buffer_queue *q = self->q;
    GstMbqSession *s = self->session;
    self->q = NULL;
    self->session = NULL;
    g_mutex_unlock(&self->lock);
    if (q)
        mbq_buffer_queue_close(q);
    gst_mbq_session_unref(s); /* wrapped blocks keep it if they need it */
}

static gboolean is_transient(int r)
{
    /* no daemon (yet, or restarting), no queue (yet), a daemon that lost it */
    return r == -ENOENT || r == -ECONNREFUSED || r == -ENOTCONN || r == -EIDRM ||
           r == -ETIMEDOUT || r == -ECONNRESET;
}

/* Connects and opens the queue; with wait, retries transient failures
 * every retry_us (doubling up to RETRY_MAX_US when backoff) until the
 * deadline (0: none) or a flush. GST_FLOW_OK, FLUSHING, or ERROR (posted). */
static GstFlowReturn open_queue(GstMbqSrc *self, gboolean wait, gboolean backoff)
{
    gint64 deadline = self->timeout_us ? g_get_monotonic_time() + self->timeout_us : 0;
    gint64 retry = RETRY_MIN_US;
    int r = 0;
    for (;;) {
        g_mutex_lock(&self->lock);
        gboolean flushing = self->flushing;
        GstMbqSession *s = self->session ? gst_mbq_session_ref(self->session) : NULL;
        g_mutex_unlock(&self->lock);
        if (flushing) {
            gst_mbq_session_unref(s);
            return GST_FLOW_FLUSHING;
        }
        if (!s) {
            s = gst_mbq_session_connect(self->sock, "mbqsrc", &r);
            if (s) {
                g_mutex_lock(&self->lock);
                self->session = gst_mbq_session_ref(s);
                g_mutex_unlock(&self->lock);
            }
        }
        gchar *why = NULL;
        if (s) {
            mbq_buffer_queue *q = NULL;
            r = mbq_buffer_queue_open(s->client, self->qname, &q);
            if (r == 0) {
                mbq_buffer_queue_set_wait_through_producer_lost(
                    q, self->on_lost == GST_MBQ_SRC_PRODUCER_LOST_WAIT);
                g_mutex_lock(&self->lock);
                self->q = q;
                g_mutex_unlock(&self->lock);
                gst_mbq_session_unref(s);
                GST_INFO_OBJECT(self, "opened mbq queue %s", self->qname);
                return GST_FLOW_OK;
            }
            why = gst_mbq_session_describe(s, r);
            gst_mbq_session_unref(s);
            if (r == -ENOTCONN || r == -EIDRM)
                drop_queue(self); /* a new connection next time */
        } else {
            why = g_strdup_printf("cannot connect to mbqd: %s", mbq_status_string(r));
        }
        if (!wait || !is_transient(r) ||
            (deadline && g_get_monotonic_time() >= deadline)) {
            const char *waited = wait ? " (waited for it until the timeout)" : "";
            if (r == -ENOENT)
                GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No mbq queue %s", self->qname),
                                  ("%s%s", why, waited));
            else
                GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ,
                                  ("Cannot open mbq queue %s", self->qname), ("%s%s", why, waited));
            g_free(why);
            return GST_FLOW_ERROR;
        }
        GST_DEBUG_OBJECT(self, "queue %s not available yet: %s", self->qname, why);
        g_free(why);
        g_mutex_lock(&self->lock);
        gint64 until = g_get_monotonic_time() + retry;
        if (deadline && until > deadline)
            until = deadline;
        while (!self->flushing && g_cond_wait_until(&self->cond, &self->lock, until)) {
        }
        g_mutex_unlock(&self->lock);
        if (backoff)
            retry = MIN(retry * 2, RETRY_MAX_US);
    }
}

/* While the queue is quiet: has the daemon gone? The data plane does not
 * notice (the queue stays mapped), so the control connection is looked at:
 * readable means pushed events or a hang-up, and mbq_client_dispatch()
 * either handles them, reconnects to a daemon that kept its objects (0),
 * or says the connection is lost for good (-ENOTCONN) or that the daemon
 * came back without the queue (-EIDRM): the queue this source has open is
 * then an orphan that no producer will write again. */
static gboolean connection_lost(GstMbqSrc *self)
{
    struct pollfd p = {.fd = mbq_client_fd(self->session->client), .events = POLLIN};
    if (p.fd < 0 || poll(&p, 1, 0) <= 0)
        return FALSE;
    int r = mbq_client_dispatch(self->session->client);
    return r == -ENOTCONN || r == -EIDRM; /* gone for good, or back without the queue */
}

static gboolean gst_mbq_src_start(GstBaseSrc *bsrc)
{
    GstMbqSrc *self = GST_MBQ_SRC(bsrc);
    GST_OBJECT_LOCK(self);
    g_free(self->qname);
    g_free(self->sock);
    self->qname = g_strdup(self->queue);
    self->sock = g_strdup(self->socket);
    self->wait = self->wait_for_queue;
    self->timeout_us = (gint64)MIN(self->timeout / 1000, (guint64)G_MAXINT64 / 2);
    if (self->timeout && !self->timeout_us)
        self->timeout_us = 1;
    self->max = self->max_held;
    self->on_lost = self->on_producer_lost;
    GST_OBJECT_UNLOCK(self);
    self->format_fd = -1;
    self->format_id = 0;
    g_clear_pointer(&self->caps_str, g_free);
    self->copied = self->wrapped = 0;
    g_mutex_lock(&self->lock);
    self->flushing = FALSE;
    g_mutex_unlock(&self->lock);

    if (!self->qname || !*self->qname) {
        GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("No queue name given"),
                          ("the 'queue' property is required"));
        return FALSE;
    }
    /* Without waiting, a missing queue is an error of the state change. */
    if (!self->wait)
        return open_queue(self, FALSE, FALSE) == GST_FLOW_OK;
    return TRUE;
}

static gboolean gst_mbq_src_stop(GstBaseSrc *bsrc)
{
    GstMbqSrc *self = GST_MBQ_SRC(bsrc);
    GST_INFO_OBJECT(self, "%" G_GUINT64_FORMAT " blocks wrapped, %" G_GUINT64_FORMAT " copied",
                    self->wrapped, self->copied);
    drop_queue(self);
    drop_spares(self);
    return TRUE;
}

static gboolean gst_mbq_src_unlock(GstBaseSrc *bsrc)
{
    GstMbqSrc *self = GST_MBQ_SRC(bsrc);
    g_mutex_lock(&self->lock);
    self->flushing = TRUE;
    if (self->q)
        mbq_buffer_queue_cancel_waits(self->q);
    g_cond_broadcast(&self->cond);
    g_mutex_unlock(&self->lock);
    return TRUE;
}

static gboolean gst_mbq_src_unlock_stop(GstBaseSrc *bsrc)
{
    GstMbqSrc *self = GST_MBQ_SRC(bsrc);
    g_mutex_lock(&self->lock);
    self->flushing = FALSE;
    g_mutex_unlock(&self->lock);
    return TRUE;
}

static gboolean gst_mbq_src_is_seekable(GstBaseSrc *bsrc)
{
    return !gst_base_src_is_live(bsrc);
}

static gboolean gst_mbq_src_do_seek(GstBaseSrc *bsrc, GstSegment *segment)
{
    if (segment->format != GST_FORMAT_TIME || segment->rate != 1.0) {
        GST_DEBUG_OBJECT(bsrc, "refusing a seek in %s at rate %f: a queue plays forward in time",
                         gst_format_get_name(segment->format), segment->rate);
        return FALSE;
    }
    GST_DEBUG_OBJECT(bsrc, "seek: resuming at the first buffer from %" GST_TIME_FORMAT,
                     GST_TIME_ARGS(segment->start));
    return TRUE;
}

/* A buffer a seek skipped: its PTS before the segment's start. */
static gboolean before_segment(GstMbqSrc *self, GstBuffer *gb)
{
    GstClockTime pts = GST_BUFFER_PTS(gb);
    GST_OBJECT_LOCK(self);
    GstClockTime start = GST_BASE_SRC(self)->segment.start;
    GST_OBJECT_UNLOCK(self);
    return GST_CLOCK_TIME_IS_VALID(pts) && pts < start;
}

static gboolean gst_mbq_src_negotiate(GstBaseSrc *bsrc)
{
    return TRUE; /* caps come with the data (create) */
}

static gboolean gst_mbq_src_query(GstBaseSrc *bsrc, GstQuery *query)
{
    if (GST_QUERY_TYPE(query) == GST_QUERY_LATENCY) {
        /* A buffer is pushed as soon as it is dequeued. */
        gst_query_set_latency(query, gst_base_src_is_live(bsrc), 0, GST_CLOCK_TIME_NONE);
        return TRUE;
    }
    return GST_BASE_SRC_CLASS(gst_mbq_src_parent_class)->query(bsrc, query);
}

static void held_free(gpointer p)
{
    Held *h = p;
    mbq_buffer_release(h->b);
    g_atomic_int_add(&h->session->outstanding, -1);
    gst_mbq_session_unref(h->session);
    g_free(h);
}

/* Sets caps when the buffer's format differs from the last one's. */
static GstFlowReturn update_caps(GstMbqSrc *self, mbq_buffer b)
{
    mbq_format_id id = 0;
    int fd = -1;
    uint64_t off;
    size_t len;
    if (mbq_buffer_get_format_id(b, &id) < 0 || id == 0)
        return GST_FLOW_OK; /* no format: keep the caps */
    if (mbq_buffer_get_fd(b, &fd, &off, &len) < 0)
        fd = -1;
    if (fd == self->format_fd && id == self->format_id && self->caps_str)
        return GST_FLOW_OK;
    gchar *buf = g_malloc(MBQ_FORMAT_MAX + 1);
    size_t n = 0;
    int r = mbq_buffer_copy_format(b, buf, MBQ_FORMAT_MAX, &n);
    if (r < 0) {
        g_free(buf);
        GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Cannot read the buffer's format"),
                          ("mbq_buffer_copy_format: %s", mbq_status_string(r)));
        return GST_FLOW_ERROR;
    }
    buf[n] = '\0';
    self->format_fd = fd;
    self->format_id = id;
    if (self->caps_str && strcmp(self->caps_str, buf) == 0) {
        g_free(buf);
        return GST_FLOW_OK;
    }
    GstCaps *caps = gst_caps_from_string(buf);
    if (!caps) {
        GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("The buffer's format is not GStreamer caps"),
                          ("'%s'", buf));
        g_free(buf);
        return GST_FLOW_ERROR;
    }
    GST_DEBUG_OBJECT(self, "caps %" GST_PTR_FORMAT, caps);
    gboolean ok = gst_base_src_set_caps(GST_BASE_SRC(self), caps);
    gst_caps_unref(caps);
    g_free(self->caps_str);
    self->caps_str = buf;
    if (!ok) {
        GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Downstream refused the queue's caps"),
                          ("%s", self->caps_str));
        return GST_FLOW_NOT_NEGOTIATED;
    }
    return GST_FLOW_OK;
}

/* Every producer of the queue is gone and the queue is empty (-EPIPE):
 * error or EOS (the wait mode never gets here). */
static GstFlowReturn producer_lost(GstMbqSrc *self)
{
    if (self->on_lost == GST_MBQ_SRC_PRODUCER_LOST_EOS) {
        GST_WARNING_OBJECT(self, "queue %s: producer lost; end of stream", self->qname);
        return GST_FLOW_EOS;
    }
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("The producer of mbq queue %s is gone", self->qname),
                      ("every producer that declared itself on the queue exited or was killed "
                       "without marking end of data (mbq_buffer_queue_dequeue_wait: -EPIPE)"));
    return GST_FLOW_ERROR;
}

/* The next buffer from the queue: GST_FLOW_OK with *out, or how the
 * stream ends (EOS, FLUSHING, ERROR posted). */
static GstFlowReturn dequeue_next(GstMbqSrc *self, mbq_buffer *out)
{
    GstFlowReturn ret;
    if (!self->q && (ret = open_queue(self, self->wait, FALSE)) != GST_FLOW_OK)
        return ret;
    mbq_buffer b;
    make_spares(self);
    for (;;) {
        g_mutex_lock(&self->lock);
        gboolean flushing = self->flushing;
        g_mutex_unlock(&self->lock);
        if (flushing)
            return GST_FLOW_FLUSHING;
        int r = mbq_buffer_queue_dequeue_wait(self->q, WAIT_SLICE_NS, &b);
        if (r == -EBUSY) {
            /* a slice spent waiting for a lock: a stopped peer, as a slow one */
            gst_mbq_stall_note(GST_ELEMENT(self), &self->stalled, self->qname,
                               "mbq_buffer_queue_dequeue_wait");
            continue;
        }
        gst_mbq_stall_end(GST_ELEMENT(self), &self->stalled, self->qname);
        if (r == 0)
            break;
        if (r == -ETIMEDOUT && connection_lost(self))
            r = -ENOTCONN;
        else if (r == -ETIMEDOUT || r == -ECANCELED || r == -EAGAIN)
            continue;
        if (r == -ENODATA) {
            GST_INFO_OBJECT(self, "end of data");
            return GST_FLOW_EOS;
        }
        if (r == -EPIPE)
            return producer_lost(self);
        if (r == -EIDRM || r == -ENOTCONN) {
            GST_WARNING_OBJECT(self, "queue %s lost (%s): opening it again", self->qname,
                               mbq_status_string(r));
            drop_queue(self);
            if ((ret = open_queue(self, TRUE, TRUE)) != GST_FLOW_OK)
                return ret;
            continue;
        }
        gchar *why = gst_mbq_session_describe(self->session, r);
        GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Cannot dequeue from mbq queue %s", self->qname),
                          ("mbq_buffer_queue_dequeue_wait: %s", why));
        g_free(why);
        return GST_FLOW_ERROR;
    }
    *out = b;
    return GST_FLOW_OK;
}

/* b as a GstBuffer: its block wrapped (or copied beyond max-held), its
 * metadata mapped; b's reference is taken over either way. */
static GstFlowReturn wrap_buffer(GstMbqSrc *self, mbq_buffer b, GstBuffer **out)
{
    GstFlowReturn ret;
    if ((ret = update_caps(self, b)) != GST_FLOW_OK) {
        mbq_buffer_release(b);
        return ret;
    }
    size_t size = mbq_buffer_get_data_size(b);
    guint8 *data = mbq_buffer_get_data(b, NULL);
    if (!data) {
        mbq_buffer_release(b);
        GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Dequeued a stale buffer"), (NULL));
        return GST_FLOW_ERROR;
    }
    GstBuffer *gb;
    GstMbqSession *s = self->session;
    if (self->max && (guint)g_atomic_int_get(&s->outstanding) >= self->max) {
        gb = gst_buffer_new_allocate(NULL, size, NULL);
        if (size)
            gst_buffer_fill(gb, 0, data, size);
        gst_mbq_buffer_get_meta(b, gb);
        mbq_buffer_release(b);
        self->copied++;
    } else {
        make_spares(self); /* made before the wait: see dequeue_next */
        Held *h = g_steal_pointer(&self->spare_held);
        h->session = gst_mbq_session_ref(s);
        h->b = b;
        g_atomic_int_inc(&s->outstanding);
        gb = g_steal_pointer(&self->spare);
        gst_buffer_append_memory(
            gb, gst_memory_new_wrapped(GST_MEMORY_FLAG_READONLY, data, MAX(size, 1), 0, size, h,
                                       held_free));
        gst_mbq_buffer_get_meta(b, gb);
        self->wrapped++;
    }
    /* the memory is the block as the producer left it */
    GST_BUFFER_FLAG_UNSET(gb, GST_BUFFER_FLAG_TAG_MEMORY);
    *out = gb;
    return GST_FLOW_OK;
}

static GstFlowReturn gst_mbq_src_create(GstPushSrc *psrc, GstBuffer **out)
{
    GstMbqSrc *self = GST_MBQ_SRC(psrc);
    for (;;) {
        mbq_buffer b;
        GstBuffer *gb;
        GstFlowReturn ret = dequeue_next(self, &b);
        if (ret == GST_FLOW_OK)
            ret = wrap_buffer(self, b, &gb);
        if (ret != GST_FLOW_OK)
            return ret;
        if (!before_segment(self, gb)) {
            *out = gb;
            return GST_FLOW_OK;
        }
        GST_LOG_OBJECT(self, "skipping %" GST_TIME_FORMAT ": before the seek's start",
                       GST_TIME_ARGS(GST_BUFFER_PTS(gb)));
        gst_buffer_unref(gb); /* the block goes back now */
    }
}

/* ---- properties ----------------------------------------------------------- */

static void gst_mbq_src_set_property(GObject *object, guint prop_id, const GValue *value,
                                     GParamSpec *pspec)
{
    GstMbqSrc *self = GST_MBQ_SRC(object);
    if (prop_id == PROP_IS_LIVE) {
        gst_base_src_set_live(GST_BASE_SRC(self), g_value_get_boolean(value));
        return;
    }
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
    case PROP_WAIT_FOR_QUEUE:
        self->wait_for_queue = g_value_get_boolean(value);
        break;
    case PROP_TIMEOUT:
        self->timeout = g_value_get_uint64(value);
        break;
    case PROP_MAX_HELD:
        self->max_held = g_value_get_uint(value);
        break;
    case PROP_ON_PRODUCER_LOST:
        self->on_producer_lost = g_value_get_enum(value);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
        break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_mbq_src_get_property(GObject *object, guint prop_id, GValue *value,
                                     GParamSpec *pspec)
{
    GstMbqSrc *self = GST_MBQ_SRC(object);
    if (prop_id == PROP_IS_LIVE) {
        g_value_set_boolean(value, gst_base_src_is_live(GST_BASE_SRC(self)));
        return;
    }
    GST_OBJECT_LOCK(self);
    switch (prop_id) {
    case PROP_SOCKET:
        g_value_set_string(value, self->socket);
        break;
    case PROP_QUEUE:
        g_value_set_string(value, self->queue);
        break;
    case PROP_WAIT_FOR_QUEUE:
        g_value_set_boolean(value, self->wait_for_queue);
        break;
    case PROP_TIMEOUT:
        g_value_set_uint64(value, self->timeout);
        break;
    case PROP_MAX_HELD:
        g_value_set_uint(value, self->max_held);
        break;
    case PROP_ON_PRODUCER_LOST:
        g_value_set_enum(value, self->on_producer_lost);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
        break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_mbq_src_finalize(GObject *object)
{
    GstMbqSrc *self = GST_MBQ_SRC(object);
    drop_queue(self);
    drop_spares(self);
    g_free(self->socket);
    g_free(self->queue);
    g_free(self->qname);
    g_free(self->sock);
    g_free(self->caps_str);
    g_mutex_clear(&self->lock);
    g_cond_clear(&self->cond);
    G_OBJECT_CLASS(gst_mbq_src_parent_class)->finalize(object);
}

static void gst_mbq_src_class_init(GstMbqSrcClass *klass)
{
    GObjectClass *gobject = G_OBJECT_CLASS(klass);
    GstElementClass *element = GST_ELEMENT_CLASS(klass);
    GstBaseSrcClass *bsrc = GST_BASE_SRC_CLASS(klass);
    GstPushSrcClass *psrc = GST_PUSH_SRC_CLASS(klass);
    const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;

    gobject->set_property = gst_mbq_src_set_property;
    gobject->get_property = gst_mbq_src_get_property;
    gobject->finalize = gst_mbq_src_finalize;

    g_object_class_install_property(
        gobject, PROP_SOCKET,
        g_param_spec_string("socket", "Socket",
                            "mbqd's socket path (NULL: $MBQ_SOCKET, else the library's default, "
                            "$XDG_RUNTIME_DIR/mbq/mbqd.sock or /run/mbq/mbqd.sock for root)",
                            NULL, rw));
    g_object_class_install_property(
        gobject, PROP_QUEUE,
        g_param_spec_string("queue", "Queue", "Buffer queue to dequeue from; required", NULL, rw));
    g_object_class_install_property(
        gobject, PROP_IS_LIVE,
        g_param_spec_boolean("is-live", "Is live", "Act as a live source", FALSE, rw));
    g_object_class_install_property(
        gobject, PROP_WAIT_FOR_QUEUE,
        g_param_spec_boolean("wait-for-queue", "Wait for queue",
                             "Wait for the queue (and mbqd) to appear, retrying every 20 ms; "
                             "FALSE: a missing queue fails the state change",
                             TRUE, rw));
    g_object_class_install_property(
        gobject, PROP_TIMEOUT,
        g_param_spec_uint64("timeout", "Timeout",
                            "How long to wait for the queue to appear, in ns (0: until stopped)",
                            0, G_MAXUINT64, 0, rw));
    g_object_class_install_property(
        gobject, PROP_MAX_HELD,
        g_param_spec_uint("max-held", "Max held",
                          "Blocks downstream may hold at once (0: no limit); beyond it buffers "
                          "are copied and their blocks released at once",
                          0, G_MAXUINT, 0, rw));
    g_object_class_install_property(
        gobject, PROP_ON_PRODUCER_LOST,
        g_param_spec_enum("on-producer-lost", "On producer lost",
                          "What to do once the queue is empty and every producer that declared "
                          "itself on it (mbqsink does) is gone without end of data (killed, "
                          "crashed): error fails the pipeline, eos ends the stream, wait waits "
                          "for a producer to come back (as for a slow one)",
                          GST_TYPE_MBQ_SRC_PRODUCER_LOST, GST_MBQ_SRC_PRODUCER_LOST_ERROR, rw));

    gst_element_class_add_static_pad_template(element, &src_template);
    gst_element_class_set_static_metadata(element, "mbq source", "Source",
                                          "Dequeues buffers from an mbq buffer queue in shared "
                                          "memory",
                                          "mbq");

    bsrc->start = GST_DEBUG_FUNCPTR(gst_mbq_src_start);
    bsrc->stop = GST_DEBUG_FUNCPTR(gst_mbq_src_stop);
    bsrc->unlock = GST_DEBUG_FUNCPTR(gst_mbq_src_unlock);
    bsrc->unlock_stop = GST_DEBUG_FUNCPTR(gst_mbq_src_unlock_stop);
    bsrc->negotiate = GST_DEBUG_FUNCPTR(gst_mbq_src_negotiate);
    bsrc->is_seekable = GST_DEBUG_FUNCPTR(gst_mbq_src_is_seekable);
    bsrc->do_seek = GST_DEBUG_FUNCPTR(gst_mbq_src_do_seek);
    bsrc->query = GST_DEBUG_FUNCPTR(gst_mbq_src_query);
    psrc->create = GST_DEBUG_FUNCPTR(gst_mbq_src_create);
    gst_type_mark_as_plugin_api(GST_TYPE_MBQ_SRC_PRODUCER_LOST, 0);
}

static void gst_mbq_src_init(GstMbqSrc *self)
{
    g_mutex_init(&self->lock);
    g_cond_init(&self->cond);
    self->wait_for_queue = TRUE;
    self->format_fd = -1;
    gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_TIME);
}
