/* libFuzzer target: the shared-memory layer fed hostile segment contents.
 *
 * A client can write anything into the segments it maps; the daemon and
 * every other client then attach to them and operate on them. This target
 * creates a valid segment (buffer queue FIFO or sorted, simple queue, or
 * pool, with a little traffic in it), overwrites bytes of it as the input
 * says, and then does what a process meeting such a segment does: attach
 * a second mapping (seg_map through bq_attach / sq_attach / pool_attach,
 * which validate the header and geometry), check and repair (bq_check),
 * read the counters, enqueue, dequeue, walk, reset, and for pools allocate,
 * release, reclaim dead slots, age out and flush. Nothing may crash, read
 * or write out of bounds, or trip UBSan.
 *
 * Input:
 *     u8 kind       % 4: FIFO queue, PTS-sorted queue, simple queue, pool
 *     u8 traffic    entries (or blocks) put in before the corruption; for a
 *                   pool, its top bit makes it a pool of three size classes
 *     then patches: u32 offset (little endian, taken modulo the segment's
 *                   size), u8 length, length bytes
 *
 * Locks: a lock word the input sets to the id of a live thread would make
 * the operations wait for it (by design: a stalled client stalls the
 * objects it shares), and one naming this very thread a wait for ever (the
 * locks are not recursive; the first long run found that). The harness
 * therefore rewrites every lock owner and bias holder the input set into
 * an id no thread can have, which the lock code treats as a dead owner:
 * the take-over and repair paths are what gets fuzzed. */
#include <bq_layout.h>
#include <pool_layout.h>
#include <seg_layout.h>
#include <sq_layout.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define DEAD_TID (SLOCK_TID_MASK - 1) /* above any pid_max */

static void bury_owner(_Atomic uint32_t *w)
{
    uint32_t v = atomic_load(w);
    /* this process's own id too: the lock is not recursive, and an owner
     * that is the caller itself would be a wait for ever */
    if (v & SLOCK_TID_MASK)
        atomic_store(w, (v & ~SLOCK_TID_MASK) | DEAD_TID);
}

static void bury_bslock(struct bslock *l)
{
    bury_owner(&l->lock.word);
    bury_owner(&l->bias);
}

static void patch(uint8_t *base, size_t size, const uint8_t *data, size_t n)
{
    size_t off = 0;
    while (off + 5 <= n) {
        uint32_t at;
        memcpy(&at, data + off, 4);
        size_t len = data[off + 4];
        off += 5;
        if (len > n - off)
            len = n - off;
        size_t pos = at % size;
        if (len > size - pos)
            len = size - pos;
        memcpy(base + pos, data + off, len);
        off += len;
    }
}

static int entry_walk(struct bq_entry *e, void *ctx)
{
    (void)ctx;
    return e->size == 0xdeadbeef; /* read every field; stop on a marker */
}

static void fuzz_bq(uint32_t order, unsigned traffic, const uint8_t *data, size_t n)
{
    struct bq_params params = {.capacity = 16, .order = order, .object_id = 7};
    struct bq creator, q;
    if (bq_create(&params, &creator) != 0)
        return;
    for (unsigned i = 0; i < traffic % 20; i++) {
        struct bq_entry e;
        memset(&e, 0, sizeof e);
        e.pool_id = 3;
        e.handle = i + 1;
        e.pts = (mbq_time){(int64_t)(i * 7 % 5), 1000, 1, 0};
        e.dts = e.pts;
        e.duration = (mbq_time){1, 1000, 1, 0};
        e.size = 100;
        bq_enqueue(&creator, &e);
    }
    patch(creator.seg.base, creator.seg.size, data, n);
    bury_bslock(&creator.sh->tail.lock);
    bury_bslock(&creator.sh->head.lock);
    if (bq_attach(creator.seg.fd, &q) == 0) {
        struct bq_stats st;
        bq_check(&q);
        bq_stats(&q, &st);
        (void)bq_count(&q);
        (void)bq_duration(&q);
        (void)bq_min_pts(&q);
        (void)bq_max_pts(&q);
        (void)bq_end_pts(&q);
        struct bq_entry e;
        memset(&e, 0, sizeof e);
        e.pool_id = 3;
        e.handle = 99;
        e.pts = (mbq_time){2, 1000, 1, 0};
        e.dts = e.pts;
        e.size = 10;
        bq_enqueue(&q, &e);
        for (int i = 0; i < 4; i++)
            if (bq_dequeue(&q, &e) != 0)
                break;
        bq_copy_head(&q, &e);
        bq_for_each(&q, entry_walk, NULL);
        uint64_t token;
        if (bq_install_trigger(&q, 10, (mbq_time){0, 1, 1, 0}, 1, -1, &token) == 0) {
            bq_test_trigger(&q, token);
            bq_remove_trigger(&q, token);
        }
        bq_reset(&q, NULL, NULL);
        bq_check(&q);
        bq_detach(&q);
    }
    bq_detach(&creator);
}

static void fuzz_sq(unsigned traffic, const uint8_t *data, size_t n)
{
    struct sq creator, q;
    if (sq_create(8, &creator) != 0)
        return;
    for (unsigned i = 0; i < traffic % 10; i++)
        sq_enqueue(&creator, i + 1);
    patch(creator.seg.base, creator.seg.size, data, n);
    if (sq_attach(creator.seg.fd, &q) == 0) {
        (void)sq_count(&q);
        (void)sq_capacity(&q);
        (void)sq_fullness(&q);
        sq_enqueue(&q, 42);
        (void)sq_peek(&q);
        for (int i = 0; i < 10; i++)
            if (sq_dequeue(&q) == 0)
                break;
        sq_reset(&q);
        sq_detach(&q);
    }
    sq_detach(&creator);
}

static void fuzz_pool(unsigned traffic, const uint8_t *data, size_t n)
{
    /* traffic's top bit: a pool of three size classes (its class table and
     * per-class lists scribbled too), allocations of every class */
    const bool classes = traffic & 0x80;
    struct pool_params params = {.block_size = 4096, .block_count = 8, .prefault = false};
    if (classes)
        params = (struct pool_params){.nclasses = 3, .class_size = {64, 4096, 8192},
                                      .class_count = {8, 4, 4}};
    struct pool creator, p;
    if (pool_create(&params, &creator) != 0)
        return;
    uint64_t handles[8];
    unsigned held = 0;
    for (unsigned i = 0; i < traffic % 8; i++)
        if (pool_alloc(&creator, classes ? 1u + 1500u * i : 100u, &handles[held]) == 0)
            held++;
    patch(creator.seg.base, creator.seg.size, data, n);
    bury_owner(&creator.sh->lock.word);
    if (pool_attach(creator.seg.fd, &p) == 0) {
        struct pool_stats st;
        pool_stats(&p, &st);
        uint64_t h = 0;
        if (pool_alloc(&p, classes ? 6000 : 64, &h) == 0) {
            uint64_t cap = 0;
            (void)pool_data_cap(&p, h, &cap);
            struct pool_class_stats cs;
            pool_class_stats(&p, p.nclasses - 1, &cs);
            pool_retain(&p, h, false);
            pool_release(&p, h, false);
            pool_release(&p, h, true);
        }
        for (unsigned i = 0; i < held; i++) {
            (void)pool_block_of(&p, handles[i]);
            pool_retain(&p, handles[i], true);
            pool_release(&p, handles[i], true);
        }
        pool_release(&p, (uint64_t)(n ? data[0] : 0) << 32 | 5, false); /* a made-up handle */
        pool_reclaim_dead(&p);
        if (pool_age_out_due(&p))
            pool_age_out(&p, UINT64_MAX / 2);
        pool_flush(&p);
        pool_stats(&p, &st);
        pool_detach(&p);
    }
    pool_detach(&creator);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    switch (data[0] % 4) {
    case 0:
        fuzz_bq(BQ_ORDER_FIFO, data[1], data + 2, size - 2);
        break;
    case 1:
        fuzz_bq(BQ_ORDER_PTS, data[1], data + 2, size - 2);
        break;
    case 2:
        fuzz_sq(data[1], data + 2, size - 2);
        break;
    case 3:
        fuzz_pool(data[1], data + 2, size - 2);
        break;
    }
    return 0;
}
