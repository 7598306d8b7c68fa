/* GstMbqAllocator and GstMbqBufferPool: GStreamer memory and buffers that
 * are blocks of one mbq pool, so that a producer upstream of mbqsink
 * writes straight into shared memory and the sink enqueues with no copy.
 *
 * Ownership: each GstMbqMemory holds one mbq reference on its block,
 * released when the memory is freed; a queue that holds the block holds
 * its own. The allocator owns the mbq_pool handle and a session reference,
 * and every memory holds the allocator, so the mapping outlives the last
 * buffer even after the sink stopped. */
#ifndef GST_MBQ_POOL_H
#define GST_MBQ_POOL_H

#include "gstmbq.h"

#include <gst/gst.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_MBQ_MEMORY_TYPE "mbq"

#define GST_TYPE_MBQ_ALLOCATOR (gst_mbq_allocator_get_type())
G_DECLARE_FINAL_TYPE(GstMbqAllocator, gst_mbq_allocator, GST, MBQ_ALLOCATOR, GstAllocator)

struct _GstMbqAllocator {
    GstAllocator parent;
    GstMbqSession *session;
    mbq_pool *pool;
    guint64 block_size;
    /* how long gst_allocator_alloc() waits for a free block (ns, < 0: no
     * limit); the buffer pool's acquire waits cancellably instead */
    gint64 alloc_timeout_ns;
    /* how long a buffer pool's acquire waits for a free block (ns, < 0:
     * until flushed); the sink sets it from its policy and whether
     * upstream is live. A bounded acquire that runs out hands out a
     * buffer of ordinary memory instead, so that a live producer is never
     * held up by a consumer that keeps every block: render then copies it
     * into a block if one is free by then, or drops it by the policy. */
    gint64 acquire_wait_ns; /* atomic */
};

/* Takes a session reference and the pool handle (closed at finalize). */
GstMbqAllocator *gst_mbq_allocator_new(GstMbqSession *session, mbq_pool *pool,
                                       guint64 block_size);
/* Wraps a block holding one reference (taken over by the memory). */
GstMemory *gst_mbq_allocator_wrap_take(GstMbqAllocator *alloc, mbq_buffer b, gsize size);
gboolean gst_is_mbq_memory(GstMemory *mem);
/* The block under an mbq memory (the zero buffer otherwise). */
mbq_buffer gst_mbq_memory_get_buffer(GstMemory *mem);

#define GST_TYPE_MBQ_BUFFER_POOL (gst_mbq_buffer_pool_get_type())
G_DECLARE_FINAL_TYPE(GstMbqBufferPool, gst_mbq_buffer_pool, GST, MBQ_BUFFER_POOL, GstBufferPool)

GstBufferPool *gst_mbq_buffer_pool_new(GstMbqAllocator *alloc);

G_END_DECLS

#endif
