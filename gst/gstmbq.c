/* The mbq plugin: registers mbqsink and mbqsrc, and holds what both use —
 * the refcounted session (see gstmbq.h for why it is refcounted) and the
 * one mapping of GstBuffer metadata onto mbq buffer metadata, so that the
 * sink writes exactly what the source reads back.
 *
 * Mapping (docs/GSTREAMER.md has the table): PTS/DTS/duration as mbq_time
 * with timescale 1e9, GST_CLOCK_TIME_NONE as the invalid time; flags with a
 * name in mbq (DELTA_UNIT as the absence of SYNC, DISCONT, DROPPABLE,
 * CORRUPTED, HEADER, GAP) on those bits, the others GStreamer defines for
 * buffers on user bits 0..5; offset and offset_end as attachments. */
#include "gstmbq.h"
#include "gstmbqsink.h"
#include "gstmbqsrc.h"

#include <errno.h>
#include <string.h>

GST_DEBUG_CATEGORY(gst_mbq_debug);

GstMbqSession *gst_mbq_session_connect(const gchar *socket, const gchar *client_name, int *err)
{
    mbq_client *c = NULL;
    int r = mbq_connect(socket && *socket ? socket : NULL, client_name, &c);
    if (r < 0) {
        if (err)
            *err = r;
        return NULL;
    }
    GstMbqSession *s = g_new0(GstMbqSession, 1);
    s->refcount = 1;
    s->client = c;
    return s;
}

GstMbqSession *gst_mbq_session_ref(GstMbqSession *s)
{
    g_atomic_int_inc(&s->refcount);
    return s;
}

void gst_mbq_session_unref(GstMbqSession *s)
{
    if (s && g_atomic_int_dec_and_test(&s->refcount)) {
        mbq_disconnect(s->client);
        g_free(s);
    }
}

gchar *gst_mbq_session_describe(GstMbqSession *s, int status)
{
    char why[256] = "";
    if (s)
        mbq_client_last_error(s->client, why, sizeof why);
    if (why[0])
        return g_strdup_printf("%s (%d): %s", mbq_status_string(status), status, why);
    return g_strdup_printf("%s (%d)", mbq_status_string(status), status);
}

void gst_mbq_stall_note(GstElement *e, gboolean *stalled, const gchar *object, const gchar *what)
{
    if (*stalled)
        return;
    *stalled = TRUE;
    GST_ELEMENT_WARNING(e, RESOURCE, BUSY,
                        ("A lock of mbq object %s is held by a process that does not let go: "
                         "waiting", object),
                        ("%s: %s; mbqd takes the lock back from a process not entitled to it, "
                         "and a stopped one lets go when it resumes or exits",
                         what, mbq_status_string(-EBUSY)));
}

void gst_mbq_stall_end(GstElement *e, gboolean *stalled, const gchar *object)
{
    if (!*stalled)
        return;
    *stalled = FALSE;
    GST_INFO_OBJECT(e, "mbq object %s is free again", object);
}

mbq_time gst_mbq_time_from_clock(GstClockTime t)
{
    if (!GST_CLOCK_TIME_IS_VALID(t) || t > (GstClockTime)G_MAXINT64)
        return MBQ_TIME_INVALID;
    return (mbq_time){(int64_t)t, 1000000000, MBQ_TIME_FLAG_VALID, 0};
}

GstClockTime gst_mbq_time_to_clock(mbq_time t)
{
    if ((t.flags & (MBQ_TIME_FLAG_VALID | MBQ_TIME_FLAG_IMPLIED_VALUE_MASK)) !=
            MBQ_TIME_FLAG_VALID ||
        t.timescale <= 0 || t.value < 0)
        return GST_CLOCK_TIME_NONE;
    if (t.timescale == 1000000000)
        return (GstClockTime)t.value;
    return gst_util_uint64_scale((guint64)t.value, GST_SECOND, (guint64)t.timescale);
}

static const struct {
    GstBufferFlags gst;
    uint32_t mbq;
} flag_map[] = {
    {GST_BUFFER_FLAG_DISCONT, MBQ_BUFFER_FLAG_DISCONTINUITY},
    {GST_BUFFER_FLAG_DROPPABLE, MBQ_BUFFER_FLAG_DROPPABLE},
    {GST_BUFFER_FLAG_CORRUPTED, MBQ_BUFFER_FLAG_CORRUPT},
    {GST_BUFFER_FLAG_HEADER, MBQ_BUFFER_FLAG_HEADER},
    {GST_BUFFER_FLAG_GAP, MBQ_BUFFER_FLAG_GAP},
    {GST_BUFFER_FLAG_LIVE, MBQ_BUFFER_FLAG_USER(0)},
    {GST_BUFFER_FLAG_DECODE_ONLY, MBQ_BUFFER_FLAG_USER(1)},
    {GST_BUFFER_FLAG_MARKER, MBQ_BUFFER_FLAG_USER(2)},
    {GST_BUFFER_FLAG_RESYNC, MBQ_BUFFER_FLAG_USER(3)},
    {GST_BUFFER_FLAG_NON_DROPPABLE, MBQ_BUFFER_FLAG_USER(4)},
    {GST_BUFFER_FLAG_SYNC_AFTER, MBQ_BUFFER_FLAG_USER(5)},
};

uint32_t gst_mbq_flags_from_gst(GstBufferFlags f)
{
    uint32_t m = (f & GST_BUFFER_FLAG_DELTA_UNIT) ? 0 : MBQ_BUFFER_FLAG_SYNC;
    for (size_t i = 0; i < G_N_ELEMENTS(flag_map); i++)
        if (f & flag_map[i].gst)
            m |= flag_map[i].mbq;
    return m;
}

GstBufferFlags gst_mbq_flags_to_gst(uint32_t m)
{
    GstBufferFlags f = (m & MBQ_BUFFER_FLAG_SYNC) ? 0 : GST_BUFFER_FLAG_DELTA_UNIT;
    for (size_t i = 0; i < G_N_ELEMENTS(flag_map); i++)
        if (m & flag_map[i].mbq)
            f |= flag_map[i].gst;
    return f;
}

int gst_mbq_buffer_set_meta(mbq_buffer b, GstBuffer *gb, gsize size)
{
    int r = mbq_buffer_set_data_size(b, size);
    if (r < 0)
        return r;
    mbq_sample_timing t = {
        .duration = gst_mbq_time_from_clock(GST_BUFFER_DURATION(gb)),
        .presentation_time_stamp = gst_mbq_time_from_clock(GST_BUFFER_PTS(gb)),
        .decode_time_stamp = gst_mbq_time_from_clock(GST_BUFFER_DTS(gb)),
    };
    if ((r = mbq_buffer_set_sample_timing(b, &t)) < 0)
        return r;
    if ((r = mbq_buffer_set_flags(b, gst_mbq_flags_from_gst(GST_BUFFER_FLAGS(gb)))) < 0)
        return r;
    /* A recycled block may carry the last user's attachments. */
    if (mbq_buffer_get_attachment_count(b) > 0 && (r = mbq_buffer_remove_all_attachments(b)) < 0)
        return r;
    if (GST_BUFFER_OFFSET_IS_VALID(gb)) {
        guint64 o = GST_BUFFER_OFFSET(gb);
        if ((r = mbq_buffer_set_attachment(b, GST_MBQ_ATTACH_OFFSET, &o, sizeof o,
                                           MBQ_ATTACHMENT_SHOULD_NOT_PROPAGATE)) < 0)
            return r;
    }
    if (GST_BUFFER_OFFSET_END_IS_VALID(gb)) {
        guint64 o = GST_BUFFER_OFFSET_END(gb);
        if ((r = mbq_buffer_set_attachment(b, GST_MBQ_ATTACH_OFFSET_END, &o, sizeof o,
                                           MBQ_ATTACHMENT_SHOULD_NOT_PROPAGATE)) < 0)
            return r;
    }
    return 0;
}

static guint64 get_u64_attachment(mbq_buffer b, const char *key)
{
    guint64 v;
    size_t len = 0;
    if (mbq_buffer_get_attachment(b, key, &v, sizeof v, &len, NULL) == 0 && len == sizeof v)
        return v;
    return GST_BUFFER_OFFSET_NONE;
}

void gst_mbq_buffer_get_meta(mbq_buffer b, GstBuffer *gb)
{
    mbq_sample_timing t;
    if (mbq_buffer_get_sample_timing(b, &t) == 0) {
        GST_BUFFER_PTS(gb) = gst_mbq_time_to_clock(t.presentation_time_stamp);
        GST_BUFFER_DTS(gb) = gst_mbq_time_to_clock(t.decode_time_stamp);
        GST_BUFFER_DURATION(gb) = gst_mbq_time_to_clock(t.duration);
    }
    uint32_t flags;
    if (mbq_buffer_get_flags(b, &flags) == 0)
        GST_BUFFER_FLAG_SET(gb, gst_mbq_flags_to_gst(flags));
    GST_BUFFER_OFFSET(gb) = get_u64_attachment(b, GST_MBQ_ATTACH_OFFSET);
    GST_BUFFER_OFFSET_END(gb) = get_u64_attachment(b, GST_MBQ_ATTACH_OFFSET_END);
}

static gboolean plugin_init(GstPlugin *plugin)
{
    GST_DEBUG_CATEGORY_INIT(gst_mbq_debug, "mbq", 0, "mbq elements");
    return gst_element_register(plugin, "mbqsink", GST_RANK_NONE, GST_TYPE_MBQ_SINK) &&
           gst_element_register(plugin, "mbqsrc", GST_RANK_NONE, GST_TYPE_MBQ_SRC);
}

#define PACKAGE "mbq"
GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, mbq,
                  "Buffer queues and memory pools in shared memory, through mbqd",
                  plugin_init, MBQ_GST_VERSION, "unknown", "mbq", "mbq")
