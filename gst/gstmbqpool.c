/* GstMbqAllocator: GstMemory over mbq pool blocks; GstMbqBufferPool: a
 * GstBufferPool handing out GstBuffers of one such memory each.
 *
 * A block is never reused while anyone holds it: every GstMbqMemory holds
 * one mbq reference, taken at allocation (or retained for a shared
 * sub-memory) and released when GStreamer frees the memory; a queue that
 * was given the block holds its own. So the buffer pool keeps no free
 * list of its own: a GstBuffer that returns to it is freed at once, which
 * drops the memory's reference, and the next acquire allocates from the
 * mbq pool, where a block comes back only when the last holder — in any
 * process — released it. Back-pressure is mbq's: acquire sleeps in
 * mbq_pool_allocate_wait until a block is freed, and a flush
 * (set_flushing) cancels that sleep with mbq_pool_cancel_waits.
 *
 * Mapping is free: the block is already mapped in this process (the
 * library's mapping of the pool), read and write; map returns that
 * pointer. This is not a GstFdMemory: GstFdMemory maps its fd from offset
 * 0, i.e. the pool's whole segment with its control area, which a buffer's
 * user must not be able to write. The fd and offset are available to code
 * that knows the type (mbq_buffer_get_fd on gst_mbq_memory_get_buffer()). */
#include "gstmbqpool.h"

#include <errno.h>
#include <string.h>

#define GST_CAT_DEFAULT gst_mbq_debug

/* A cancellable wait is cut in slices so that a flush that races with the
 * start of a wait (the cancel reaches only waits begun before it) is seen
 * at the next slice at the latest. */
#define GST_MBQ_WAIT_SLICE_NS (100 * GST_MSECOND)

typedef struct {
    GstMemory mem;
    mbq_buffer buf;
    guint8 *data;
} GstMbqMemory;

G_DEFINE_TYPE(GstMbqAllocator, gst_mbq_allocator, GST_TYPE_ALLOCATOR)

static GstMemory *mbq_memory_new(GstMbqAllocator *self, GstMemoryFlags flags, mbq_buffer b,
                                 guint8 *data, gsize maxsize, gsize offset, gsize size)
{
    GstMbqMemory *m = g_new0(GstMbqMemory, 1);
    gst_memory_init(&m->mem, flags, GST_ALLOCATOR_CAST(self), NULL, maxsize, 0, offset, size);
    m->buf = b;
    m->data = data;
    return &m->mem;
}

GstMemory *gst_mbq_allocator_wrap_take(GstMbqAllocator *self, mbq_buffer b, gsize size)
{
    size_t cap = 0;
    guint8 *data = mbq_buffer_get_data(b, &cap);
    if (!data || size > cap) {
        mbq_buffer_release(b);
        return NULL;
    }
    return mbq_memory_new(self, 0, b, data, cap, 0, size);
}

static GstMemory *gst_mbq_allocator_alloc(GstAllocator *allocator, gsize size,
                                          GstAllocationParams *params)
{
    GstMbqAllocator *self = GST_MBQ_ALLOCATOR(allocator);
    gsize prefix = params ? params->prefix : 0, padding = params ? params->padding : 0;
    gsize align = params ? params->align : 0;
    /* A block is aligned to the largest power of two that divides the block
     * size, up to a page: page blocks to a page, packed sub-page blocks
     * (64 B multiples) to 64 B at least. align is a mask (alignment - 1). */
    guint64 block_align = self->block_size & (~self->block_size + 1);
    if (block_align > 4096)
        block_align = 4096;
    if (align >= block_align || prefix + size + padding > self->block_size) {
        GST_WARNING_OBJECT(self, "cannot allocate %" G_GSIZE_FORMAT " bytes (block size %" G_GUINT64_FORMAT ")",
                           prefix + size + padding, self->block_size);
        return NULL;
    }
    mbq_buffer b;
    int r = mbq_pool_allocate_wait(self->pool, prefix + size + padding, self->alloc_timeout_ns, &b);
    if (r < 0) {
        GST_WARNING_OBJECT(self, "mbq_pool_allocate_wait: %s", mbq_status_string(r));
        return NULL;
    }
    size_t cap = 0;
    guint8 *data = mbq_buffer_get_data(b, &cap);
    return mbq_memory_new(self, params ? params->flags : 0, b, data, cap, prefix, size);
}

static void gst_mbq_allocator_free(GstAllocator *allocator, GstMemory *mem)
{
    GstMbqMemory *m = (GstMbqMemory *)mem;
    mbq_buffer_release(m->buf);
    g_free(m);
}

static gpointer mbq_mem_map(GstMemory *mem, gsize maxsize, GstMapFlags flags)
{
    return ((GstMbqMemory *)mem)->data;
}

static void mbq_mem_unmap(GstMemory *mem)
{
}

static GstMemory *mbq_mem_share(GstMemory *mem, gssize offset, gssize size)
{
    GstMbqMemory *m = (GstMbqMemory *)mem;
    if (size == -1)
        size = (gssize)mem->size - offset;
    if (mbq_buffer_retain(m->buf) < 0)
        return NULL;
    /* The sub-memory holds its own reference: no parent to keep alive. */
    return mbq_memory_new(GST_MBQ_ALLOCATOR(mem->allocator),
                          GST_MINI_OBJECT_FLAGS(mem) | GST_MINI_OBJECT_FLAG_LOCK_READONLY, m->buf,
                          m->data, mem->maxsize, mem->offset + offset, size);
}

static GstMemory *mbq_mem_copy(GstMemory *mem, gssize offset, gssize size)
{
    GstMbqMemory *m = (GstMbqMemory *)mem;
    if (size == -1)
        size = (gssize)mem->size - offset;
    GstMemory *copy = gst_allocator_alloc(NULL, size, NULL);
    GstMapInfo info;
    if (!copy || !gst_memory_map(copy, &info, GST_MAP_WRITE)) {
        if (copy)
            gst_memory_unref(copy);
        return NULL;
    }
    memcpy(info.data, m->data + mem->offset + offset, size);
    gst_memory_unmap(copy, &info);
    return copy;
}

static gboolean mbq_mem_is_span(GstMemory *a, GstMemory *b, gsize *offset)
{
    return FALSE;
}

static void gst_mbq_allocator_finalize(GObject *obj)
{
    GstMbqAllocator *self = GST_MBQ_ALLOCATOR(obj);
    if (self->pool)
        mbq_pool_close(self->pool);
    gst_mbq_session_unref(self->session);
    G_OBJECT_CLASS(gst_mbq_allocator_parent_class)->finalize(obj);
}

static void gst_mbq_allocator_class_init(GstMbqAllocatorClass *klass)
{
    GST_ALLOCATOR_CLASS(klass)->alloc = gst_mbq_allocator_alloc;
    GST_ALLOCATOR_CLASS(klass)->free = gst_mbq_allocator_free;
    G_OBJECT_CLASS(klass)->finalize = gst_mbq_allocator_finalize;
}

static void gst_mbq_allocator_init(GstMbqAllocator *self)
{
    GstAllocator *a = GST_ALLOCATOR_CAST(self);
    a->mem_type = GST_MBQ_MEMORY_TYPE;
    a->mem_map = mbq_mem_map;
    a->mem_unmap = mbq_mem_unmap;
    a->mem_share = mbq_mem_share;
    a->mem_copy = mbq_mem_copy;
    a->mem_is_span = mbq_mem_is_span;
    self->alloc_timeout_ns = GST_SECOND;
    self->acquire_wait_ns = -1;
    /* not the default allocator for gst_allocator_alloc(NULL, ...) */
    GST_OBJECT_FLAG_SET(self, GST_ALLOCATOR_FLAG_CUSTOM_ALLOC);
}

GstMbqAllocator *gst_mbq_allocator_new(GstMbqSession *session, mbq_pool *pool, guint64 block_size)
{
    GstMbqAllocator *self = g_object_new(GST_TYPE_MBQ_ALLOCATOR, NULL);
    gst_object_ref_sink(self);
    self->session = gst_mbq_session_ref(session);
    self->pool = pool;
    self->block_size = block_size;
    return self;
}

gboolean gst_is_mbq_memory(GstMemory *mem)
{
    return mem && mem->allocator && GST_IS_MBQ_ALLOCATOR(mem->allocator);
}

mbq_buffer gst_mbq_memory_get_buffer(GstMemory *mem)
{
    if (!gst_is_mbq_memory(mem))
        return (mbq_buffer){0};
    return ((GstMbqMemory *)mem)->buf;
}

/* ---- the buffer pool ------------------------------------------------------ */

struct _GstMbqBufferPool {
    GstBufferPool parent;
    GstMbqAllocator *allocator;
    guint size;
    gboolean video;
    GstVideoInfo info;
    gboolean add_video_meta;
};

G_DEFINE_TYPE(GstMbqBufferPool, gst_mbq_buffer_pool, GST_TYPE_BUFFER_POOL)

static const gchar **gst_mbq_buffer_pool_get_options(GstBufferPool *pool)
{
    static const gchar *options[] = {GST_BUFFER_POOL_OPTION_VIDEO_META, NULL};
    return options;
}

static gboolean gst_mbq_buffer_pool_set_config(GstBufferPool *pool, GstStructure *config)
{
    GstMbqBufferPool *self = GST_MBQ_BUFFER_POOL(pool);
    GstCaps *caps = NULL;
    guint size, min, max;
    if (!gst_buffer_pool_config_get_params(config, &caps, &size, &min, &max))
        return FALSE;
    self->video = caps && gst_video_info_from_caps(&self->info, caps);
    if (self->video && GST_VIDEO_INFO_SIZE(&self->info) > size)
        size = GST_VIDEO_INFO_SIZE(&self->info);
    if (size == 0 || size > self->allocator->block_size) {
        GST_WARNING_OBJECT(self, "buffers of %u bytes do not fit blocks of %" G_GUINT64_FORMAT,
                           size, self->allocator->block_size);
        return FALSE;
    }
    self->size = size;
    self->add_video_meta =
        self->video &&
        gst_buffer_pool_config_has_option(config, GST_BUFFER_POOL_OPTION_VIDEO_META);
    /* No preallocation and no cap of our own: the mbq pool's block count
     * is the limit, shared with every other process. */
    gst_buffer_pool_config_set_params(config, caps, size, 0, 0);
    gst_buffer_pool_config_set_allocator(config, GST_ALLOCATOR_CAST(self->allocator), NULL);
    return GST_BUFFER_POOL_CLASS(gst_mbq_buffer_pool_parent_class)->set_config(pool, config);
}

static gboolean gst_mbq_buffer_pool_start(GstBufferPool *pool)
{
    return TRUE; /* nothing to preallocate: see above */
}

static gboolean gst_mbq_buffer_pool_stop(GstBufferPool *pool)
{
    return TRUE;
}

/* A buffer of ordinary memory laid out as a block would be: what a bounded
 * acquire hands out when no block came free in time (see
 * GstMbqAllocator's acquire_wait_ns). */
static GstFlowReturn acquire_plain(GstMbqBufferPool *self, GstBuffer **out)
{
    GstBuffer *buf = gst_buffer_new_allocate(NULL, self->size, NULL);
    if (!buf)
        return GST_FLOW_ERROR;
    if (self->add_video_meta) {
        GstVideoInfo *vi = &self->info;
        gst_buffer_add_video_meta_full(buf, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(vi),
                                       GST_VIDEO_INFO_WIDTH(vi), GST_VIDEO_INFO_HEIGHT(vi),
                                       GST_VIDEO_INFO_N_PLANES(vi), vi->offset, vi->stride);
    }
    GST_DEBUG_OBJECT(self, "no free block in time: a buffer of ordinary memory");
    *out = buf;
    return GST_FLOW_OK;
}

static GstFlowReturn gst_mbq_buffer_pool_acquire(GstBufferPool *pool, GstBuffer **out,
                                                 GstBufferPoolAcquireParams *params)
{
    GstMbqBufferPool *self = GST_MBQ_BUFFER_POOL(pool);
    gboolean dontwait = params && (params->flags & GST_BUFFER_POOL_ACQUIRE_FLAG_DONTWAIT);
    gint64 limit = __atomic_load_n(&self->allocator->acquire_wait_ns, __ATOMIC_RELAXED);
    gint64 deadline = limit >= 0 ? (gint64)gst_util_get_timestamp() + limit : 0;
    mbq_buffer b;
    for (;;) {
        if (GST_BUFFER_POOL_IS_FLUSHING(pool))
            return GST_FLOW_FLUSHING;
        gint64 slice = dontwait ? 0 : (gint64)GST_MBQ_WAIT_SLICE_NS;
        if (limit >= 0 && !dontwait) {
            gint64 left = deadline - (gint64)gst_util_get_timestamp();
            if (left <= 0)
                return acquire_plain(self, out);
            slice = MIN(slice, left);
        }
        int r = mbq_pool_allocate_wait(self->allocator->pool, self->size, slice, &b);
        if (r == 0)
            break;
        if (r == MBQ_POOL_ERR_ALLOCATION_FAILED && dontwait)
            return GST_FLOW_EOS; /* GstBufferPool's "no buffer now" */
        if (r == MBQ_POOL_ERR_ALLOCATION_FAILED || r == -ECANCELED || r == -EBUSY)
            continue; /* a slice passed (the pool empty, or its lock held by a
                       * stopped process), or a flush: looked at above */
        GST_ERROR_OBJECT(self, "mbq_pool_allocate_wait: %s", mbq_status_string(r));
        return GST_FLOW_ERROR;
    }
    GstMemory *mem = gst_mbq_allocator_wrap_take(self->allocator, b, self->size);
    if (!mem)
        return GST_FLOW_ERROR;
    GstBuffer *buf = gst_buffer_new();
    gst_buffer_append_memory(buf, mem);
    if (self->add_video_meta) {
        GstVideoInfo *vi = &self->info;
        gst_buffer_add_video_meta_full(buf, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(vi),
                                       GST_VIDEO_INFO_WIDTH(vi), GST_VIDEO_INFO_HEIGHT(vi),
                                       GST_VIDEO_INFO_N_PLANES(vi), vi->offset, vi->stride);
    }
    *out = buf;
    return GST_FLOW_OK;
}

static void gst_mbq_buffer_pool_release(GstBufferPool *pool, GstBuffer *buffer)
{
    /* Not kept for reuse: the block goes back to mbq, which knows whether
     * a queue still holds it. */
    gst_buffer_unref(buffer);
}

static void gst_mbq_buffer_pool_flush_start(GstBufferPool *pool)
{
    mbq_pool_cancel_waits(GST_MBQ_BUFFER_POOL(pool)->allocator->pool);
}

static void gst_mbq_buffer_pool_finalize(GObject *obj)
{
    GstMbqBufferPool *self = GST_MBQ_BUFFER_POOL(obj);
    gst_clear_object(&self->allocator);
    G_OBJECT_CLASS(gst_mbq_buffer_pool_parent_class)->finalize(obj);
}

static void gst_mbq_buffer_pool_class_init(GstMbqBufferPoolClass *klass)
{
    GstBufferPoolClass *bp = GST_BUFFER_POOL_CLASS(klass);
    bp->get_options = gst_mbq_buffer_pool_get_options;
    bp->set_config = gst_mbq_buffer_pool_set_config;
    bp->start = gst_mbq_buffer_pool_start;
    bp->stop = gst_mbq_buffer_pool_stop;
    bp->acquire_buffer = gst_mbq_buffer_pool_acquire;
    bp->release_buffer = gst_mbq_buffer_pool_release;
    bp->flush_start = gst_mbq_buffer_pool_flush_start;
    G_OBJECT_CLASS(klass)->finalize = gst_mbq_buffer_pool_finalize;
}

static void gst_mbq_buffer_pool_init(GstMbqBufferPool *self)
{
}

GstBufferPool *gst_mbq_buffer_pool_new(GstMbqAllocator *alloc)
{
    GstMbqBufferPool *self = g_object_new(GST_TYPE_MBQ_BUFFER_POOL, NULL);
    gst_object_ref_sink(self);
    self->allocator = gst_object_ref(alloc);
    return GST_BUFFER_POOL_CAST(self);
}
