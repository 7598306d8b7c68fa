/* Memory pools and buffers (CMMemoryPool): the public mbq_pool_* and
 * mbq_buffer_* calls, and the client's table of mapped pools.
 *
 * A pool is mapped once per client (see internal.h): the table maps the
 * pool's object id — the pool_id that buffer-queue entries carry — to the
 * mapping, so that a queue's hooks and a dequeue can turn an entry back into
 * a buffer. Lookups are lock-free (a thread-local hint, then the last hit,
 * then a scan of atomic pointers) and make no system call; only a miss that
 * must open the pool through the daemon takes client->lock.
 *
 * Buffers are pool blocks (shm/pool.h): every mbq_buffer_* call maps to a
 * pool_* call or a field of the block's descriptor on the buffer's own pool.
 * A buffer's references are counted per process (pool holdings), so this
 * process can release only what it allocated, retained or dequeued.
 *
 * Lifetime: an explicitly opened pool is detached at its last
 * mbq_pool_close, which releases every reference the process still holds on
 * its buffers (buffers handed out through it are invalid from then on, and
 * every call on them gives -ESTALE: the struct stays as a tombstone). A
 * pool the library opened by id for a dequeued buffer stays mapped until
 * mbq_disconnect.
 *
 * Names: the library's own functions here are cpool_*; pool_* is the
 * shared-memory layer's (shm/pool.h), which this file calls. */
#include "internal.h"

#include <errno.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>


/* ---- the pool table ----------------------------------------------------------- */

struct mbq_pool *cpool_table_lookup(mbq_client *c, uint32_t pool_id, struct mbq_pool *hint)
{
    /* The hint may belong to another client of this process: its mapping is
     * as good as ours for a buffer the caller handed us. */
    if (hint && hint->object_id == pool_id)
        return hint;
    struct mbq_pool *p = atomic_load_explicit(&c->last_pool, memory_order_acquire);
    if (likely(p && p->object_id == pool_id))
        return p;
    unsigned n = atomic_load_explicit(&c->npools, memory_order_acquire);
    for (unsigned i = 0; i < n && i < CLIENT_MAX_POOLS; i++) {
        p = atomic_load_explicit(&c->pools[i], memory_order_acquire);
        if (p && p->object_id == pool_id) {
            atomic_store_explicit(&c->last_pool, p, memory_order_release);
            return p;
        }
    }
    return NULL;
}

static int cpool_table_insert_locked(mbq_client *c, struct mbq_pool *p)
{
    unsigned n = atomic_load_explicit(&c->npools, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        if (!atomic_load_explicit(&c->pools[i], memory_order_relaxed)) {
            p->slot = i;
            atomic_store_explicit(&c->pools[i], p, memory_order_release);
            return 0;
        }
    }
    if (n >= CLIENT_MAX_POOLS)
        return -EMFILE;
    p->slot = n;
    atomic_store_explicit(&c->pools[n], p, memory_order_release);
    atomic_store_explicit(&c->npools, n + 1, memory_order_release);
    return 0;
}

static void cpool_table_remove_locked(mbq_client *c, struct mbq_pool *p)
{
    atomic_store_explicit(&c->pools[p->slot], NULL, memory_order_release);
    struct mbq_pool *expected = p;
    atomic_compare_exchange_strong(&c->last_pool, &expected, NULL);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Gives this process page-table entries for the pool's pages that the memfd
 * already holds, so that its first allocation of each block does not take
 * a minor fault per page (~0.5 µs each, and a 4 MiB frame has 1,024). Only
 * resident pages are populated: a hole (a block that aged out, or one never
 * faulted in) stays a hole, since populating it would allocate and charge
 * its memory. Best effort: failing leaves the faults where they were. */
static void cpool_populate_mapping(struct pool *pool)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || !pool->data || pool->seg.size == 0)
        return;
    uint8_t *start = pool->data, *end = (uint8_t *)pool->seg.base + pool->seg.size;
    if (start >= end)
        return;
    size_t pages = (size_t)(end - start) / (size_t)page;
    unsigned char *vec = malloc(pages ? pages : 1);
    if (!vec || mincore(start, pages * (size_t)page, vec) < 0) {
        free(vec);
        return;
    }
    for (size_t i = 0; i < pages;) {
        if (!(vec[i] & 1)) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < pages && (vec[j] & 1))
            j++;
        if (madvise(start + i * (size_t)page, (j - i) * (size_t)page, MADV_POPULATE_WRITE) < 0)
            break; /* kernel < 5.14 (EINVAL): nothing to gain from the rest */
        i = j;
    }
    free(vec);
}

/* Turns a Create/Open reply into this client's mapping of the pool: a new
 * one, or the existing one with one more open. */
static int cpool_adopt_locked(mbq_client *c, struct client_reply *reply,
                             const Mbq__V1__ObjectInfo *info, void *out_)
{
    struct mbq_pool **out = out_;
    if (info->object_id > UINT32_MAX)
        return -EPROTO;
    struct mbq_pool *p = cpool_table_lookup(c, (uint32_t)info->object_id, NULL);
    if (p && !p->lost) {
        p->opens++;
        *out = p;
        return 0;
    }
    _cleanup_(closep) int fd = client_take_segment_fd(reply, info);
    if (fd < 0)
        return fd;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int r = pool_attach(fd, &p->pool);
    if (r < 0) {
        free(p);
        return r;
    }
    cpool_populate_mapping(&p->pool);
    p->client = c;
    p->object_id = info->object_id;
    p->opens = 1;
    pthread_mutex_init(&p->format_lock, NULL);
    r = cpool_table_insert_locked(c, p);
    if (r < 0) {
        pool_detach(&p->pool);
        free(p);
        return r;
    }
    *out = p;
    return 0;
}

int cpool_table_resolve(mbq_client *c, uint32_t pool_id, struct mbq_pool **out)
{
    struct mbq_pool *p = cpool_table_lookup(c, pool_id, NULL);
    if (p) {
        *out = p;
        return 0;
    }
    pthread_mutex_lock(&c->lock);
    p = cpool_table_lookup(c, pool_id, NULL);
    int r = 0;
    if (!p) {
        Mbq__V1__Open op = MBQ__V1__OPEN__INIT;
        op.kind = MBQ__V1__OBJECT_KIND__POOL;
        op.object_id = pool_id;
        Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
        req.body_case = MBQ__V1__REQUEST__BODY_OPEN;
        req.open = &op;
        r = client_request_object_locked(c, &req, MBQ__V1__OBJECT_KIND__POOL, cpool_adopt_locked,
                                         &p);
        if (r == 0)
            p->pinned = true;
    }
    pthread_mutex_unlock(&c->lock);
    if (r == 0)
        *out = p;
    return r;
}

/* Tombstones: a closed pool's struct is never freed, so that the
 * mbq_buffer values that still name it (a process-local pointer) find a
 * detached pool (pool.sh NULL, block_count 0) and get -ESTALE instead of
 * reading freed memory. They are kept on a process-wide list (reachable,
 * so not a leak to LeakSanitizer) and cost sizeof(struct mbq_pool) per
 * mapping ever closed. Using a buffer in one thread while another closes
 * its pool remains a race of the caller's. */
static pthread_mutex_t tombstones_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mbq_pool *tombstones;

static void cpool_free_locked(mbq_client *c, struct mbq_pool *p)
{
    cpool_table_remove_locked(c, p);
    pool_detach(&p->pool); /* zeroes it: every handle now decodes as stale */
    free(p->format_bytes);
    p->format_bytes = NULL;
    p->format_len = 0;
    p->format_id = 0;
    p->client = NULL;
    p->object_id = UINT64_MAX; /* matches no pool id a queue entry carries */
    pthread_mutex_lock(&tombstones_lock);
    p->tomb_next = tombstones;
    tombstones = p;
    pthread_mutex_unlock(&tombstones_lock);
}


static int cpool_reattach_all_locked(mbq_client *c)
{
    unsigned n = atomic_load_explicit(&c->npools, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        struct mbq_pool *p = atomic_load_explicit(&c->pools[i], memory_order_relaxed);
        if (!p || p->lost)
            continue;
        struct client_reply reply;
        int r = client_reattach_locked(c, p->object_id, MBQ__V1__OBJECT_KIND__POOL, &p->pool.seg,
                                       0, p->opens ? p->opens : 1, &reply);
        if (client_connection_failed(r))
            return r;
        if (r == 0)
            client_reply_done(&reply);
        p->lost = r < 0;
    }
    return 0;
}

static void cpool_close_all_locked(mbq_client *c)
{
    unsigned n = atomic_load_explicit(&c->npools, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        struct mbq_pool *p = atomic_load_explicit(&c->pools[i], memory_order_relaxed);
        if (p)
            cpool_free_locked(c, p);
    }
    atomic_store_explicit(&c->npools, 0, memory_order_release);
}

const struct client_kind client_kind_pool = {
    .name = "pool",
    .reattach_all = cpool_reattach_all_locked,
    .close_all = cpool_close_all_locked,
};

/* ---- pools ----------------------------------------------------------------------- */

int mbq_pool_create(mbq_client *client, const char *name, const mbq_pool_options *options,
                    mbq_pool **out)
{
    if (!client || !out || !options)
        return !client || !out ? -EINVAL : MBQ_POOL_ERR_INVALID_PARAMETER;
    if (!objname_valid(name))
        return -EINVAL;
    mbq_pool_options o;
    if (!client_copy_options(&o, sizeof(o), options))
        return -EINVAL;
    /* Classes are checked by mbqd, whose error names the problem; the
     * count, which bounds the array, here. */
    if ((o.class_count == 0 &&
         (o.block_size == 0 || o.block_count == 0 || o.block_count > POOL_MAX_BLOCKS)) ||
        o.class_count > MBQ_POOL_MAX_CLASSES || !(o.age_out_seconds >= 0) ||
        o.age_out_seconds > 1e9)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    if (!objmode_valid(o.mode))
        return -EINVAL;

    Mbq__V1__PoolConfig cfg = MBQ__V1__POOL_CONFIG__INIT;
    Mbq__V1__PoolClass cls[MBQ_POOL_MAX_CLASSES], *cls_ptr[MBQ_POOL_MAX_CLASSES];
    cfg.block_size = o.block_size;
    cfg.block_count = o.block_count;
    cfg.age_out_ns = (uint64_t)(o.age_out_seconds * 1e9 + 0.5);
    for (uint32_t c = 0; c < o.class_count; c++) {
        cls[c] = (Mbq__V1__PoolClass)MBQ__V1__POOL_CLASS__INIT;
        cls[c].block_size = o.classes[c].block_size;
        cls[c].block_count = o.classes[c].block_count;
        cls_ptr[c] = &cls[c];
    }
    cfg.n_classes = o.class_count;
    cfg.classes = cls_ptr;
    Mbq__V1__Create cr = MBQ__V1__CREATE__INIT;
    cr.name = (char *)name;
    cr.kind = MBQ__V1__OBJECT_KIND__POOL;
    cr.mode = o.mode;
    cr.exclusive = o.exclusive;
    cr.open_existing = (o.flags & MBQ_OPEN_IF_EXISTS) != 0;
    cr.config_case = MBQ__V1__CREATE__CONFIG_POOL;
    cr.pool = &cfg;
    return client_create_object(client, &cr, cpool_adopt_locked, out);
}

int mbq_pool_open(mbq_client *client, const char *name, mbq_pool **out)
{
    if (!client || !out)
        return -EINVAL;
    if (!objname_valid(name))
        return -EINVAL;
    return client_open_object(client, name, MBQ__V1__OBJECT_KIND__POOL, cpool_adopt_locked, out);
}

int mbq_pool_get_classes(mbq_pool *pool, mbq_pool_class *classes, size_t max)
{
    if (!pool || (!classes && max > 0))
        return -EINVAL;
    const struct pool *p = &pool->pool;
    if (!p->sh)
        return -ESTALE;
    for (uint32_t c = 0; c < p->nclasses && c < max; c++)
        classes[c] = (mbq_pool_class){.block_size = p->cls[c].size,
                                      .block_count = p->cls[c].count};
    return (int)p->nclasses;
}

void mbq_pool_close(mbq_pool *pool)
{
    if (!pool)
        return;
    mbq_client *c = pool->client;
    pthread_mutex_lock(&c->lock);
    /* Close first: a reconnection it makes reattaches the pool with the
     * opens it still stands for, and then the Close is sent again. */
    if (!pool->lost)
        client_close_object_locked(c, pool->object_id);
    if (pool->opens > 0)
        pool->opens--;
    if (pool->opens == 0 && !pool->pinned)
        cpool_free_locked(c, pool); /* releases this process's references */
    pthread_mutex_unlock(&c->lock);
}

static int cpool_simple_request(mbq_pool *pool, bool invalidate)
{
    if (!pool)
        return -EINVAL;
    Mbq__V1__PoolFlush fl = MBQ__V1__POOL_FLUSH__INIT;
    Mbq__V1__PoolInvalidate inv = MBQ__V1__POOL_INVALIDATE__INIT;
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    if (invalidate) {
        inv.object_id = pool->object_id;
        req.body_case = MBQ__V1__REQUEST__BODY_POOL_INVALIDATE;
        req.pool_invalidate = &inv;
    } else {
        fl.object_id = pool->object_id;
        req.body_case = MBQ__V1__REQUEST__BODY_POOL_FLUSH;
        req.pool_flush = &fl;
    }
    pthread_mutex_lock(&pool->client->lock);
    int r = pool->lost ? -EIDRM : client_request_locked(pool->client, &req);
    pthread_mutex_unlock(&pool->client->lock);
    return r;
}

int mbq_pool_flush(mbq_pool *pool)
{
    return cpool_simple_request(pool, false);
}

int mbq_pool_invalidate(mbq_pool *pool)
{
    return cpool_simple_request(pool, true);
}

/* ---- buffers ------------------------------------------------------------------- */

/* A cap set with mbq_pool_set_hold_limit: -EDQUOT when this client holds
 * that many references already. Without a cap, one load. */
static inline int cpool_check_hold_limit(mbq_pool *pool)
{
    uint32_t limit = atomic_load_explicit(&pool->hold_limit, memory_order_relaxed);
    if (__builtin_expect(limit == 0, 1))
        return 0;
    return pool_held_by_self(&pool->pool) >= limit ? -EDQUOT : 0;
}

int mbq_pool_set_hold_limit(mbq_pool *pool, uint32_t max_held)
{
    if (!pool)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    atomic_store_explicit(&pool->hold_limit, max_held, memory_order_relaxed);
    return 0;
}

int mbq_pool_get_held(mbq_pool *pool, uint64_t *held)
{
    if (!pool || !held)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    *held = pool_held_by_self(&pool->pool);
    return 0;
}

int mbq_pool_allocate(mbq_pool *pool, size_t size, mbq_buffer *out)
{
    if (!pool || !out)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    int q = cpool_check_hold_limit(pool);
    if (q < 0)
        return q;
    uint64_t handle;
    int r = pool_alloc(&pool->pool, size, &handle);
    if (r < 0)
        return r;
    *out = (mbq_buffer){.pool_ = pool, .handle_ = handle};
    return 0;
}

int mbq_pool_allocate_wait(mbq_pool *pool, size_t size, int64_t timeout_ns, mbq_buffer *out)
{
    if (!pool || !out)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    int q = cpool_check_hold_limit(pool);
    if (q < 0)
        return q;
    uint64_t handle;
    int r = pool_alloc_wait(&pool->pool, size, &handle, timeout_ns);
    if (r < 0)
        return r;
    *out = (mbq_buffer){.pool_ = pool, .handle_ = handle};
    return 0;
}

int mbq_pool_cancel_waits(mbq_pool *pool)
{
    if (!pool)
        return MBQ_POOL_ERR_INVALID_PARAMETER;
    return pool_cancel_waits(&pool->pool);
}

int mbq_buffer_retain(mbq_buffer buffer)
{
    if (!buffer.pool_)
        return -EINVAL;
    if (!buffer.pool_->pool.sh)
        return -ESTALE; /* its pool was closed here (a tombstone) */
    return pool_retain(&buffer.pool_->pool, buffer.handle_, true);
}

int mbq_buffer_release(mbq_buffer buffer)
{
    if (!buffer.pool_)
        return -EINVAL;
    if (!buffer.pool_->pool.sh)
        return -ESTALE; /* its pool was closed here (a tombstone) */
    return pool_release(&buffer.pool_->pool, buffer.handle_, true);
}

bool mbq_buffer_is_valid(mbq_buffer buffer)
{
    return buffer.pool_ && pool_block_of(&buffer.pool_->pool, buffer.handle_) != NULL;
}

void *mbq_buffer_get_data(mbq_buffer buffer, size_t *capacity)
{
    if (!buffer.pool_) {
        if (capacity)
            *capacity = 0;
        return NULL;
    }
    if (!capacity)
        return pool_data(&buffer.pool_->pool, buffer.handle_);
    uint64_t cap = 0;
    void *data = pool_data_cap(&buffer.pool_->pool, buffer.handle_, &cap);
    *capacity = (size_t)cap;
    return data;
}

int mbq_buffer_set_timing(mbq_buffer buffer, mbq_time dts, mbq_time pts, mbq_time duration)
{
    if (!buffer.pool_)
        return -EINVAL;
    return pool_set_timing(&buffer.pool_->pool, buffer.handle_, dts, pts, duration);
}

int mbq_buffer_get_timing(mbq_buffer buffer, mbq_time *dts, mbq_time *pts, mbq_time *duration)
{
    if (!buffer.pool_)
        return -EINVAL;
    return pool_read_meta(&buffer.pool_->pool, buffer.handle_, NULL, dts, pts, duration);
}

int mbq_buffer_set_data_size(mbq_buffer buffer, size_t size)
{
    if (!buffer.pool_)
        return -EINVAL;
    return pool_set_data_size(&buffer.pool_->pool, buffer.handle_, size);
}

size_t mbq_buffer_get_data_size(mbq_buffer buffer)
{
    uint64_t n;
    if (!buffer.pool_ || pool_read_meta(&buffer.pool_->pool, buffer.handle_, &n, NULL, NULL,
                                        NULL) < 0)
        return 0;
    return (size_t)n;
}

int mbq_buffer_set_data_ready(mbq_buffer buffer, bool ready)
{
    if (!buffer.pool_)
        return -EINVAL;
    return pool_set_ready(&buffer.pool_->pool, buffer.handle_, ready);
}

bool mbq_buffer_is_data_ready(mbq_buffer buffer)
{
    return buffer.pool_ && pool_is_ready(&buffer.pool_->pool, buffer.handle_);
}

int mbq_buffer_set_sample_timing(mbq_buffer buffer, const mbq_sample_timing *timing)
{
    if (!buffer.pool_ || !timing)
        return -EINVAL;
    return pool_set_timing(&buffer.pool_->pool, buffer.handle_, timing->decode_time_stamp,
                           timing->presentation_time_stamp, timing->duration);
}

int mbq_buffer_get_sample_timing(mbq_buffer buffer, mbq_sample_timing *timing)
{
    if (!buffer.pool_ || !timing)
        return -EINVAL;
    mbq_sample_timing t;
    int r = pool_read_meta(&buffer.pool_->pool, buffer.handle_, NULL, &t.decode_time_stamp,
                           &t.presentation_time_stamp, &t.duration);
    if (r == 0)
        *timing = t;
    return r;
}

int mbq_buffer_set_flags(mbq_buffer buffer, uint32_t flags)
{
    if (!buffer.pool_)
        return -EINVAL;
    return pool_set_flags(&buffer.pool_->pool, buffer.handle_, flags);
}

int mbq_buffer_get_flags(mbq_buffer buffer, uint32_t *flags)
{
    if (!buffer.pool_ || !flags)
        return -EINVAL;
    return pool_get_flags(&buffer.pool_->pool, buffer.handle_, flags);
}

bool mbq_buffer_is_frozen(mbq_buffer buffer)
{
    return buffer.pool_ && pool_is_frozen(&buffer.pool_->pool, buffer.handle_);
}

int mbq_buffer_get_fd(mbq_buffer buffer, int *fd, uint64_t *offset, size_t *length)
{
    if (!buffer.pool_ || !fd || !offset || !length)
        return -EINVAL;
    uint64_t len;
    int r = pool_block_span(&buffer.pool_->pool, buffer.handle_, fd, offset, &len);
    if (r == 0)
        *length = (size_t)len;
    return r;
}

/* ---- formats ------------------------------------------------------------------- */

int mbq_pool_intern_format(mbq_pool *pool, const void *bytes, size_t len, mbq_format_id *out)
{
    if (!pool || !bytes || !out || len == 0)
        return -EINVAL;
    if (len > POOL_FORMAT_MAX)
        return -EMSGSIZE;
    if (!pool->pool.sh)
        return -ESTALE;
    return pool_format_intern(&pool->pool, bytes, (uint32_t)len, out);
}

int mbq_buffer_set_format_id(mbq_buffer buffer, mbq_format_id id)
{
    if (!buffer.pool_)
        return -EINVAL;
    return pool_set_format(&buffer.pool_->pool, buffer.handle_, id);
}

int mbq_buffer_set_format(mbq_buffer buffer, const void *bytes, size_t len)
{
    if (!buffer.pool_ || (!bytes && len))
        return -EINVAL;
    if (len > POOL_FORMAT_MAX)
        return -EMSGSIZE;
    struct mbq_pool *p = buffer.pool_;
    if (len == 0)
        return pool_set_format(&p->pool, buffer.handle_, 0);
    if (!p->pool.sh)
        return -ESTALE;
    /* The format a producer sets on every buffer rarely changes: compare it
     * with the last one interned here, and intern only a new one (or one
     * whose slot was recycled meanwhile). */
    uint64_t id = 0;
    pthread_mutex_lock(&p->format_lock);
    if (p->format_len == len && memcmp(p->format_bytes, bytes, len) == 0 &&
        pool_format_current(&p->pool, p->format_id))
        id = p->format_id;
    pthread_mutex_unlock(&p->format_lock);
    if (!id) {
        int r = pool_format_intern(&p->pool, bytes, (uint32_t)len, &id);
        if (r < 0)
            return r;
        uint8_t *copy = malloc(len);
        if (copy) {
            memcpy(copy, bytes, len);
            pthread_mutex_lock(&p->format_lock);
            free(p->format_bytes);
            p->format_bytes = copy;
            p->format_len = (uint32_t)len;
            p->format_id = id;
            pthread_mutex_unlock(&p->format_lock);
        }
    }
    return pool_set_format(&p->pool, buffer.handle_, id);
}

int mbq_buffer_get_format_id(mbq_buffer buffer, mbq_format_id *id)
{
    if (!buffer.pool_ || !id)
        return -EINVAL;
    return pool_get_format(&buffer.pool_->pool, buffer.handle_, id);
}

int mbq_buffer_copy_format(mbq_buffer buffer, void *buf, size_t cap, size_t *len)
{
    if (!buffer.pool_ || !len || (!buf && cap))
        return -EINVAL;
    uint64_t id;
    int r = pool_get_format(&buffer.pool_->pool, buffer.handle_, &id);
    if (r < 0)
        return r;
    if (id == 0) {
        *len = 0;
        return -ENODATA;
    }
    uint32_t n = 0;
    r = pool_format_read(&buffer.pool_->pool, id, buf,
                         cap > POOL_FORMAT_MAX ? POOL_FORMAT_MAX : (uint32_t)cap, &n);
    if (r == 0 || r == -ERANGE)
        *len = n;
    return r;
}

/* ---- attachments ------------------------------------------------------------------ */

int mbq_buffer_set_attachment(mbq_buffer buffer, const char *key, const void *value,
                              size_t length, mbq_attachment_mode mode)
{
    if (!buffer.pool_ || (mode != MBQ_ATTACHMENT_SHOULD_NOT_PROPAGATE &&
                          mode != MBQ_ATTACHMENT_SHOULD_PROPAGATE))
        return -EINVAL;
    if (length > POOL_ATTACH_MAX)
        return -ENOSPC;
    return pool_attachment_set(&buffer.pool_->pool, buffer.handle_, key, value,
                               (uint32_t)length, mode == MBQ_ATTACHMENT_SHOULD_PROPAGATE);
}

int mbq_buffer_get_attachment(mbq_buffer buffer, const char *key, void *buf, size_t cap,
                              size_t *length, mbq_attachment_mode *mode)
{
    if (!buffer.pool_)
        return -EINVAL;
    uint32_t n = 0;
    bool prop = false;
    int r = pool_attachment_get(&buffer.pool_->pool, buffer.handle_, key, buf,
                                cap > POOL_ATTACH_MAX ? POOL_ATTACH_MAX : (uint32_t)cap, &n,
                                &prop);
    if (r == 0 || r == -ERANGE) {
        if (length)
            *length = n;
        if (mode)
            *mode = prop ? MBQ_ATTACHMENT_SHOULD_PROPAGATE : MBQ_ATTACHMENT_SHOULD_NOT_PROPAGATE;
    }
    return r;
}

int mbq_buffer_remove_attachment(mbq_buffer buffer, const char *key)
{
    if (!buffer.pool_ || !key)
        return -EINVAL;
    return pool_attachment_remove(&buffer.pool_->pool, buffer.handle_, key);
}

int mbq_buffer_remove_all_attachments(mbq_buffer buffer)
{
    if (!buffer.pool_)
        return -EINVAL;
    return pool_attachment_remove(&buffer.pool_->pool, buffer.handle_, NULL);
}

int mbq_buffer_get_attachment_count(mbq_buffer buffer)
{
    if (!buffer.pool_)
        return -EINVAL;
    return pool_attachment_count(&buffer.pool_->pool, buffer.handle_);
}

int mbq_buffer_copy_attachments(mbq_buffer dst, mbq_buffer src)
{
    if (!dst.pool_ || !src.pool_)
        return -EINVAL;
    return pool_attachment_propagate(&dst.pool_->pool, dst.handle_, &src.pool_->pool,
                                     src.handle_);
}
