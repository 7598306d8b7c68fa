/* What the mbq GStreamer elements share: the refcounted connection
 * (GstMbqSession), the mapping between GstBuffer metadata and mbq buffer
 * metadata, and error text.
 *
 * Lifetimes. A process's mbq_client owns every object opened through it,
 * and the payload pointers of dequeued buffers are valid while the client
 * is connected. A GstBuffer that wraps a block can outlive the element
 * that made it (a queue element downstream, an application holding a
 * sample), so the session is refcounted: the element holds one reference,
 * each wrapping memory another, and the client disconnects when the last
 * one goes. Nothing here is specific to one element.
 *
 * Only <mbq/mbq.h> is used: the elements are an ordinary client. */
#ifndef GST_MBQ_H
#define GST_MBQ_H

#include <gst/gst.h>
#include <mbq/mbq.h>

G_BEGIN_DECLS

GST_DEBUG_CATEGORY_EXTERN(gst_mbq_debug);

typedef struct GstMbqSession {
    gint refcount;
    mbq_client *client;
    /* blocks wrapped by GstMemory and not freed yet (mbqsrc's max-held) */
    gint outstanding;
} GstMbqSession;

/* Connects (socket NULL or "": the library's default / $MBQ_SOCKET).
 * NULL on failure with *err the status. */
GstMbqSession *gst_mbq_session_connect(const gchar *socket, const gchar *client_name, int *err);
GstMbqSession *gst_mbq_session_ref(GstMbqSession *s);
void gst_mbq_session_unref(GstMbqSession *s);
/* "<status text> (<daemon's explanation>)", newly allocated. */
gchar *gst_mbq_session_describe(GstMbqSession *s, int status);

/* A data-plane call failed with -EBUSY: a lock of the object stays held by
 * a process that does not let go (stopped, hung, or one that scribbled the
 * lock word; see <mbq/mbq.h>). The elements wait it out, as for a slow
 * peer, rather than fail the pipeline: the first -EBUSY of a stall posts
 * an element warning naming the object, and *stalled stays set until
 * gst_mbq_stall_end, which logs how the stall ended. what: the call. */
void gst_mbq_stall_note(GstElement *e, gboolean *stalled, const gchar *object, const gchar *what);
void gst_mbq_stall_end(GstElement *e, gboolean *stalled, const gchar *object);

/* GstClockTime <-> mbq_time (timescale 1e9; NONE <-> invalid). */
mbq_time gst_mbq_time_from_clock(GstClockTime t);
GstClockTime gst_mbq_time_to_clock(mbq_time t);
/* GstBufferFlags <-> MBQ_BUFFER_FLAG_* (user bits for the flags mbq has no
 * name for). */
uint32_t gst_mbq_flags_from_gst(GstBufferFlags f);
GstBufferFlags gst_mbq_flags_to_gst(uint32_t f);

/* The attachment keys carrying GstBuffer offset and offset_end (8 bytes,
 * host order; absent for GST_BUFFER_OFFSET_NONE). */
#define GST_MBQ_ATTACH_OFFSET "gst.offset"
#define GST_MBQ_ATTACH_OFFSET_END "gst.offset-end"

/* Copies a GstBuffer's timing, flags and offsets onto an mbq buffer, and
 * its data size. 0 or the failing call's status (-EPERM: frozen). */
int gst_mbq_buffer_set_meta(mbq_buffer b, GstBuffer *gb, gsize size);
/* The reverse, onto a GstBuffer. */
void gst_mbq_buffer_get_meta(mbq_buffer b, GstBuffer *gb);

G_END_DECLS

#endif
