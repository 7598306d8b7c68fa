/* A block's metadata: size, timing, flags, readiness, frozen state, the
 * format it names and its attachments — what a buffer carries besides its
 * data, in the block's descriptor and the pool's format and attachment
 * areas.
 *
 * Role: the getters and setters of the library and mbqd, the format table
 * (interned descriptions, named by id), the attachment records.
 *
 * Invariants:
 *  - metadata is read and written only through a handle that names a live
 *    block of the right generation (pool_block_of); a setter refuses a
 *    frozen block (docs/DATAPLANE.md: metadata is frozen at the first
 *    enqueue, so a consumer reads what the producer wrote, once);
 *  - a format id names a slot and the seq it was interned at; a slot is a
 *    seqlock written under the pool lock (odd while written), so a
 *    recycled slot or a forged id reads nothing, never another format;
 *  - attachments are parsed from a local copy, every length checked against
 *    what is left; a record that runs past the end is -EBADMSG.
 * Limits: POOL_FORMATS formats per pool; POOL_ATTACH_MAX bytes of
 * attachments per block, keys up to POOL_ATTACH_KEY_MAX. */
#include "pool_internal.h"

#include <mbq/status.h>

#include <errno.h>
#include <string.h>

/* ---- metadata and the daemon's view ---- */

int pool_read_meta(struct pool *p, uint64_t handle, uint64_t *size, mbq_time *dts,
                   mbq_time *pts, mbq_time *duration)
{
    const struct pool_block *b = pool_block_of(p, handle);
    if (!b)
        return -ESTALE;
    if (size) {
        const uint64_t n = READ_ONCE(b->data_size), cap = pool_blk_size(p, (uint32_t)handle - 1);
        *size = n > cap ? cap : n;
    }
    if (dts)
        *dts = b->dts;
    if (pts)
        *pts = b->pts;
    if (duration)
        *duration = b->duration;
    return 0;
}

/* A setter's block: live, and not frozen by an enqueue. The check is not
 * atomic with the store that follows: a thread that sets metadata while
 * another enqueues the same buffer races (its store may land after the
 * queue's copy), which is the caller's bug, as with any value shared
 * without order. */
static struct pool_block *pool_block_mutable(struct pool *p, uint64_t handle, int *err)
{
    struct pool_block *b = pool_block_of(p, handle);
    if (!b)
        *err = -ESTALE;
    else if (atomic_load_explicit(&b->frozen, memory_order_relaxed))
        *err = -EPERM, b = NULL;
    return b;
}

int pool_set_timing(struct pool *p, uint64_t handle, mbq_time dts, mbq_time pts,
                    mbq_time duration)
{
    int err;
    struct pool_block *b = pool_block_mutable(p, handle, &err);
    if (!b)
        return err;
    b->dts = dts;
    b->pts = pts;
    b->duration = duration;
    return 0;
}

int pool_set_data_size(struct pool *p, uint64_t handle, uint64_t size)
{
    int err;
    struct pool_block *b = pool_block_mutable(p, handle, &err);
    if (!b)
        return err;
    if (size > pool_blk_size(p, (uint32_t)handle - 1))
        return -EINVAL;
    b->data_size = size;
    return 0;
}

int pool_set_flags(struct pool *p, uint64_t handle, uint32_t flags)
{
    int err;
    struct pool_block *b = pool_block_mutable(p, handle, &err);
    if (!b)
        return err;
    b->flags = flags;
    return 0;
}

int pool_get_flags(struct pool *p, uint64_t handle, uint32_t *flags)
{
    const struct pool_block *b = pool_block_of(p, handle);
    if (!b)
        return -ESTALE;
    *flags = READ_ONCE(b->flags);
    return 0;
}

int pool_freeze(struct pool *p, uint64_t handle)
{
    struct pool_block *b = pool_block_of(p, handle);
    if (!b)
        return -ESTALE;
    /* Stored once: a re-enqueue does not dirty the line again. */
    if (atomic_load_explicit(&b->frozen, memory_order_relaxed))
        return 0;
    atomic_store_explicit(&b->frozen, 1, memory_order_relaxed);
    return 1;
}

int pool_freeze_read_meta(struct pool *p, uint64_t handle, uint64_t *size, mbq_time *dts,
                          mbq_time *pts, mbq_time *duration)
{
    struct pool_block *b = pool_block_of(p, handle);
    if (!b)
        return -ESTALE;
    int froze = 0;
    if (!atomic_load_explicit(&b->frozen, memory_order_relaxed)) {
        atomic_store_explicit(&b->frozen, 1, memory_order_relaxed);
        froze = 1;
    }
    const uint64_t n = READ_ONCE(b->data_size), cap = pool_blk_size(p, (uint32_t)handle - 1);
    *size = n > cap ? cap : n;
    *dts = b->dts;
    *pts = b->pts;
    *duration = b->duration;
    return froze;
}

void pool_thaw(struct pool *p, uint64_t handle)
{
    struct pool_block *b = pool_block_of(p, handle);
    if (b)
        atomic_store_explicit(&b->frozen, 0, memory_order_relaxed);
}

bool pool_is_frozen(struct pool *p, uint64_t handle)
{
    const struct pool_block *b = pool_block_of(p, handle);
    return b && atomic_load_explicit(&((struct pool_block *)b)->frozen, memory_order_relaxed);
}

int pool_block_span(struct pool *p, uint64_t handle, int *fd, uint64_t *offset, uint64_t *len)
{
    if (!pool_block_of(p, handle))
        return -ESTALE;
    if (p->seg.fd < 0)
        return -EBADF;
    uint32_t idx = (uint32_t)handle - 1;
    *fd = p->seg.fd;
    *offset = (uint64_t)(pool_blk_data(p, idx) - (uint8_t *)p->seg.base);
    *len = pool_blk_size(p, idx);
    return 0;
}

int pool_set_ready(struct pool *p, uint64_t handle, bool ready)
{
    struct pool_block *b = pool_block_of(p, handle);
    if (!b)
        return -ESTALE;
    atomic_store_explicit(&b->ready, ready ? 1u : 0u, memory_order_release);
    return 0;
}

bool pool_is_ready(struct pool *p, uint64_t handle)
{
    const struct pool_block *b = pool_block_of(p, handle);
    return b && atomic_load_explicit(&((struct pool_block *)b)->ready, memory_order_acquire) != 0;
}

/* ---- formats (see struct pool_format) ---- */

static uint64_t fnv1a(const void *bytes, uint32_t len)
{
    const uint8_t *b = bytes;
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t pool_format_area_size(void)
{
    return POOL_FORMATS * (uint64_t)sizeof(struct pool_format);
}

/* Step 1 of an intern, under the lock: the slot that holds these bytes
 * already (its index, its stamp refreshed), or -1; seqs gets every slot's
 * seq. No one else writes a slot under the lock: an odd seq is a writer
 * that died mid-write, as good as an empty slot. */
static int format_find_locked(struct pool *p, const void *bytes, uint32_t len, uint64_t h,
                              uint64_t clock, uint32_t seqs[POOL_FORMATS])
{
    for (int i = 0; i < POOL_FORMATS; i++) {
        struct pool_format *f = &p->formats[i];
        const uint32_t seq = atomic_load_explicit(&f->seq, memory_order_relaxed);
        seqs[i] = seq;
        if (seq == 0 || (seq & 1))
            continue;
        if (READ_ONCE(f->len) == len && READ_ONCE(f->hash) == h &&
            memcmp(f->bytes, bytes, len) == 0) {
            f->stamp = clock;
            return i;
        }
    }
    return -1;
}

/* Step 2: the slots some live buffer carries (a bit each), which are not
 * recycled, so that the formats of buffers held or queued stay readable.
 * One pass over the descriptors, on a new format only (rare). */
static uint32_t format_in_use_locked(const struct pool *p, const uint32_t seqs[POOL_FORMATS])
{
    uint32_t in_use = 0;
    for (uint32_t i = 0; i < p->block_count; i++) {
        if (!rc_live(ref_count(atomic_load_explicit(&p->blocks[i].ref, memory_order_relaxed))))
            continue;
        const uint64_t id = READ_ONCE(p->blocks[i].format);
        const uint32_t lo = (uint32_t)id;
        if (lo >= 1 && lo <= POOL_FORMATS && (uint32_t)(id >> 32) == seqs[lo - 1])
            in_use |= 1u << (lo - 1);
    }
    return in_use;
}

/* Step 3: the slot to write — an empty (or dead writer's) one, else the
 * least recently interned one no live buffer carries; -1 when every slot
 * is carried. */
static int format_victim_locked(const struct pool *p, const uint32_t seqs[POOL_FORMATS],
                                uint32_t in_use)
{
    int victim = -1;
    uint64_t oldest = UINT64_MAX;
    for (int i = 0; i < POOL_FORMATS; i++) {
        if (seqs[i] == 0 || (seqs[i] & 1)) {
            if (oldest != 0)
                victim = i, oldest = 0;
            continue;
        }
        const uint64_t st = READ_ONCE(p->formats[i].stamp);
        if (!(in_use & (1u << i)) && st < oldest)
            victim = i, oldest = st;
    }
    return victim;
}

/* Step 4: writes the bytes into slot f as a seqlock writer (seq odd while
 * it writes, readers see that before the new bytes). Returns the new seq,
 * which the format's id carries. */
static uint32_t format_write_locked(struct pool_format *f, const void *bytes, uint32_t len,
                                    uint64_t h, uint64_t clock)
{
    uint32_t seq = atomic_load_explicit(&f->seq, memory_order_relaxed);
    const uint32_t busy = (seq & 1) ? seq : seq + 1;
    uint32_t next = busy + 1;
    if (next == 0)
        next = 2; /* a wrapped seq: 0 means "never used" */
    atomic_store_explicit(&f->seq, busy, memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* readers see busy before new bytes */
    f->len = len;
    f->hash = h;
    f->stamp = clock;
    memcpy(f->bytes, bytes, len);
    atomic_store_explicit(&f->seq, next, memory_order_release);
    return next;
}

int pool_format_intern(struct pool *p, const void *bytes, uint32_t len, uint64_t *id_out)
{
    if (!p || !p->sh || !bytes || len == 0 || len > POOL_FORMAT_MAX || !id_out)
        return -EINVAL;
    const uint64_t h = fnv1a(bytes, len);
    int lr = pool_lock(p);
    if (lr < 0)
        return lr;
    struct pool_shared *sh = p->sh;
    const uint64_t clock = READ_ONCE(sh->format_clock) + 1;
    sh->format_clock = clock;
    uint32_t seqs[POOL_FORMATS];
    int slot = format_find_locked(p, bytes, len, h, clock, seqs);
    uint32_t seq = slot >= 0 ? seqs[slot] : 0;
    if (slot < 0) {
        slot = format_victim_locked(p, seqs, format_in_use_locked(p, seqs));
        if (slot >= 0)
            seq = format_write_locked(&p->formats[slot], bytes, len, h, clock);
    }
    pool_unlock(p);
    if (slot < 0)
        return -ENOSPC; /* every slot is carried by a live buffer */
    *id_out = (uint64_t)seq << 32 | (uint32_t)(slot + 1);
    return 0;
}

/* The slot an id names, or NULL for an id that names none. */
static struct pool_format *pool_format_slot(const struct pool *p, uint64_t id)
{
    const uint32_t lo = (uint32_t)id, gen = (uint32_t)(id >> 32);
    if (!p || !p->sh || lo == 0 || lo > POOL_FORMATS || gen == 0 || (gen & 1))
        return NULL;
    return &p->formats[lo - 1];
}

bool pool_format_current(const struct pool *p, uint64_t id)
{
    struct pool_format *f = pool_format_slot(p, id);
    return f && atomic_load_explicit(&f->seq, memory_order_acquire) == (uint32_t)(id >> 32);
}

int pool_format_read(const struct pool *p, uint64_t id, void *buf, uint32_t cap,
                     uint32_t *len_out)
{
    struct pool_format *f = pool_format_slot(p, id);
    if (!f)
        return -EBADMSG;
    const uint32_t seq = atomic_load_explicit(&f->seq, memory_order_acquire);
    if (seq != (uint32_t)(id >> 32))
        return -ESTALE;
    const uint32_t len = READ_ONCE(f->len);
    if (len == 0 || len > POOL_FORMAT_MAX)
        return -EBADMSG;
    if (len_out)
        *len_out = len;
    if (cap < len || !buf)
        return -ERANGE;
    memcpy(buf, f->bytes, len);
    atomic_thread_fence(memory_order_acquire); /* the copy before the re-check */
    if (atomic_load_explicit(&f->seq, memory_order_relaxed) != seq)
        return -ESTALE;
    return 0;
}

int pool_set_format(struct pool *p, uint64_t handle, uint64_t id)
{
    int err;
    struct pool_block *b = pool_block_mutable(p, handle, &err);
    if (!b)
        return err;
    if (id != 0 && !pool_format_slot(p, id))
        return -EBADMSG;
    if (id != 0 && !pool_format_current(p, id))
        return -ESTALE;
    b->format = id;
    /* An intern that scanned the descriptors before this store may have
     * recycled the slot meanwhile: checked again after it. */
    atomic_thread_fence(memory_order_seq_cst);
    if (id != 0 && !pool_format_current(p, id)) {
        b->format = 0;
        return -ESTALE;
    }
    return 0;
}

int pool_get_format(struct pool *p, uint64_t handle, uint64_t *id)
{
    const struct pool_block *b = pool_block_of(p, handle);
    if (!b)
        return -ESTALE;
    *id = READ_ONCE(b->format);
    return 0;
}

/* ---- attachments ----
 *
 * A block's attachments are records in its POOL_ATTACH_MAX bytes of the
 * attachment area, the first attach_len bytes of it in use:
 * {key length 1..POOL_ATTACH_KEY_MAX, mode, value length (2 bytes, little
 * endian), key, value}. Read into a local copy first and parsed there, every
 * length checked against what is left: a record that runs past the end (a
 * scribbled area, or a holder killed while writing it) is -EBADMSG. */

struct attach_view {
    uint8_t area[POOL_ATTACH_MAX];
    uint32_t len;
};

/* The block's attachments copied out, or -ESTALE / -EBADMSG. */
static int attach_load(struct pool *p, uint64_t handle, struct attach_view *v)
{
    const struct pool_block *b = pool_block_of(p, handle);
    if (!b)
        return -ESTALE;
    const uint32_t len = READ_ONCE(b->attach_len);
    if (len > POOL_ATTACH_MAX)
        return -EBADMSG;
    v->len = len;
    memcpy(v->area, p->attach + (size_t)((uint32_t)handle - 1) * POOL_ATTACH_MAX, len);
    return 0;
}

/* The record at off: 1 with its fields, 0 at the end, -EBADMSG. */
static int attach_next(const struct attach_view *v, uint32_t off, uint32_t *klen, uint32_t *mode,
                       uint32_t *vlen)
{
    if (off == v->len)
        return 0;
    if (v->len - off < 4)
        return -EBADMSG;
    *klen = v->area[off];
    *mode = v->area[off + 1];
    *vlen = (uint32_t)v->area[off + 2] | (uint32_t)v->area[off + 3] << 8;
    if (*klen == 0 || *klen > POOL_ATTACH_KEY_MAX || *mode > 1 ||
        (uint64_t)*klen + *vlen > v->len - off - 4)
        return -EBADMSG;
    return 1;
}

/* The offset of key's record, -ENOENT, or -EBADMSG. */
static int attach_find(const struct attach_view *v, const char *key, uint32_t klen)
{
    uint32_t off = 0, kl, mode, vl;
    int r;
    while ((r = attach_next(v, off, &kl, &mode, &vl)) == 1) {
        if (kl == klen && memcmp(v->area + off + 4, key, klen) == 0)
            return (int)off;
        off += 4 + kl + vl;
    }
    return r < 0 ? r : -ENOENT;
}

static void attach_cut(struct attach_view *v, uint32_t off)
{
    const uint32_t n = 4 + v->area[off] + ((uint32_t)v->area[off + 2] | (uint32_t)v->area[off + 3] << 8);
    memmove(v->area + off, v->area + off + n, v->len - off - n);
    v->len -= n;
}

static int attach_add(struct attach_view *v, const char *key, uint32_t klen, const void *val,
                      uint32_t vlen, uint32_t mode)
{
    if ((uint64_t)v->len + 4 + klen + vlen > POOL_ATTACH_MAX)
        return -ENOSPC;
    uint8_t *r = v->area + v->len;
    r[0] = (uint8_t)klen;
    r[1] = (uint8_t)mode;
    r[2] = (uint8_t)vlen;
    r[3] = (uint8_t)(vlen >> 8);
    memcpy(r + 4, key, klen);
    if (vlen)
        memcpy(r + 4 + klen, val, vlen);
    v->len += 4 + klen + vlen;
    return 0;
}

/* Writes v back to a mutable block: the bytes, then the length. */
static int attach_store(struct pool *p, uint64_t handle, const struct attach_view *v)
{
    int err;
    struct pool_block *b = pool_block_mutable(p, handle, &err);
    if (!b)
        return err;
    memcpy(p->attach + (size_t)((uint32_t)handle - 1) * POOL_ATTACH_MAX, v->area, v->len);
    atomic_thread_fence(memory_order_release);
    b->attach_len = v->len;
    return 0;
}

static bool attach_key_ok(const char *key, uint32_t *klen)
{
    if (!key)
        return false;
    size_t n = strnlen(key, POOL_ATTACH_KEY_MAX + 1);
    *klen = (uint32_t)n;
    return n >= 1 && n <= POOL_ATTACH_KEY_MAX;
}

int pool_attachment_set(struct pool *p, uint64_t handle, const char *key, const void *val,
                    uint32_t vlen, bool propagate)
{
    uint32_t klen;
    if (!attach_key_ok(key, &klen) || (!val && vlen) || vlen > POOL_ATTACH_MAX)
        return -EINVAL;
    int err;
    if (!pool_block_mutable(p, handle, &err))
        return err;
    struct attach_view v;
    int r = attach_load(p, handle, &v);
    if (r < 0)
        return r;
    r = attach_find(&v, key, klen);
    if (r == -EBADMSG)
        return r;
    if (r >= 0)
        attach_cut(&v, (uint32_t)r);
    r = attach_add(&v, key, klen, val, vlen, propagate ? 1u : 0u);
    if (r < 0)
        return r;
    return attach_store(p, handle, &v);
}

int pool_attachment_get(struct pool *p, uint64_t handle, const char *key, void *buf, uint32_t cap,
                    uint32_t *vlen_out, bool *propagate)
{
    uint32_t klen;
    if (!attach_key_ok(key, &klen))
        return -EINVAL;
    struct attach_view v;
    int r = attach_load(p, handle, &v);
    if (r < 0)
        return r;
    r = attach_find(&v, key, klen);
    if (r < 0)
        return r;
    const uint32_t off = (uint32_t)r;
    const uint32_t vlen = (uint32_t)v.area[off + 2] | (uint32_t)v.area[off + 3] << 8;
    if (vlen_out)
        *vlen_out = vlen;
    if (propagate)
        *propagate = v.area[off + 1] != 0;
    if (vlen > cap || (vlen && !buf))
        return -ERANGE;
    if (vlen)
        memcpy(buf, v.area + off + 4 + klen, vlen);
    return 0;
}

int pool_attachment_remove(struct pool *p, uint64_t handle, const char *key)
{
    struct attach_view v;
    int err;
    if (!pool_block_mutable(p, handle, &err))
        return err;
    int r = attach_load(p, handle, &v);
    if (r < 0)
        return r;
    if (!key) {
        v.len = 0;
        return attach_store(p, handle, &v);
    }
    uint32_t klen;
    if (!attach_key_ok(key, &klen))
        return -EINVAL;
    r = attach_find(&v, key, klen);
    if (r < 0)
        return r;
    attach_cut(&v, (uint32_t)r);
    return attach_store(p, handle, &v);
}

int pool_attachment_propagate(struct pool *dp, uint64_t dst, struct pool *sp, uint64_t src)
{
    int err;
    if (!pool_block_mutable(dp, dst, &err))
        return err;
    struct attach_view s, d;
    int r = attach_load(sp, src, &s);
    if (r < 0)
        return r;
    r = attach_load(dp, dst, &d);
    if (r < 0)
        return r;
    uint32_t off = 0, kl, mode, vl;
    while ((r = attach_next(&s, off, &kl, &mode, &vl)) == 1) {
        if (mode) {
            char key[POOL_ATTACH_KEY_MAX + 1];
            memcpy(key, s.area + off + 4, kl);
            key[kl] = 0;
            int f = attach_find(&d, key, kl);
            if (f == -EBADMSG)
                return f;
            if (f >= 0)
                attach_cut(&d, (uint32_t)f);
            f = attach_add(&d, key, kl, s.area + off + 4 + kl, vl, mode);
            if (f < 0)
                return f;
        }
        off += 4 + kl + vl;
    }
    if (r < 0)
        return r;
    return attach_store(dp, dst, &d);
}

int pool_attachment_count(struct pool *p, uint64_t handle)
{
    struct attach_view v;
    int r = attach_load(p, handle, &v);
    if (r < 0)
        return r;
    uint32_t off = 0, kl, mode, vl;
    int n = 0;
    while ((r = attach_next(&v, off, &kl, &mode, &vl)) == 1) {
        n++;
        off += 4 + kl + vl;
    }
    return r < 0 ? r : n;
}
