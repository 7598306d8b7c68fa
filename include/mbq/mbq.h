/* libmbq — Core Media's buffer queues, simple queues and memory pools,
 * shared by many processes.
 *
 * A daemon, mbqd, owns named objects; this library talks to it over one
 * Unix socket per process (the control plane: create, open, close, unlink,
 * triggers, permissions) and then works directly in the objects' shared
 * memory (the data plane: enqueue, dequeue, inspect, allocate, release),
 * with no daemon round trip and no system call on the fast path.
 *
 * Conventions for every function here:
 *  - Return values: 0 (or a count) on success; on failure a Core Media
 *    status where Core Media defines one (MBQ_BQ_ERR_*, MBQ_SQ_ERR_*,
 *    MBQ_POOL_ERR_*, see <mbq/status.h>), otherwise a negative errno value.
 *    mbq_status_string() describes either. Bad arguments are errors, never
 *    assertions. Nothing is printed.
 *  - Ownership: an object returned through an `out` pointer is owned by the
 *    caller and released with its close/disconnect function. On failure
 *    nothing is returned and nothing is left open. File descriptors the
 *    library hands out stay owned by the library (do not close them); every
 *    fd it opens is close-on-exec.
 *  - Threads: the library starts none. A client (mbq_client) and the objects
 *    opened through it may be used from several threads: control-plane calls
 *    are serialised on the client; data-plane calls follow Core Media: buffer
 *    queues and pools are safe from any number of threads and processes;
 *    a simple queue is one producer and one consumer.
 *  - Options structs begin with their own size; set it with
 *    sizeof(the struct) so that fields can be added later.
 *  - Control calls (those that ask the daemon: connect, create, open,
 *    unlink, flush, invalidate, triggers, list, stat, usage, and the first
 *    enqueue of a pool's buffers into a queue) can also fail with
 *    -ENOTCONN (the daemon is gone and reconnection failed or is not
 *    possible), -ETIMEDOUT (no reply within the call timeout), -EPROTO (a
 *    reply that makes no sense), -EIDRM (the daemon restarted without this
 *    object), -EMSGSIZE (a request too large for a packet) and -ENOMEM.
 *    The lists below name these as "control errors". When the daemon
 *    refuses a request, mbq_client_last_error() has its explanation.
 *  - No call waits forever on another process: a data-plane call that needs
 *    a lock held by a process that does not let go (stopped, hung, or one
 *    that forged the lock word) fails with -EBUSY after 1 s, or after its
 *    own timeout if shorter (mbq_buffer_queue_dequeue_wait), having done
 *    nothing; it may be retried. A control-plane call on such an object
 *    fails with -EBUSY and the daemon's explanation. mbqd takes back, within
 *    about a second, a lock whose owner does not have the object open.
 *
 * Deviations from Core Media, because objects live in fixed-size shared
 * memory:
 *  - A buffer queue's capacity 0 means MBQ_BUFFER_QUEUE_DEFAULT_CAPACITY,
 *    not "unbounded": segments cannot grow.
 *  - Buffers are not CF objects but pool blocks: mbq_buffer is a small value
 *    (copy it freely) naming a block and its generation; a stale one (its
 *    block was freed) is detected and refused with -ESTALE.
 *  - A process that dies (even by kill -9, at any instruction) leaks no
 *    buffer: mbqd releases every reference it held or was moving, once the
 *    process has exited.
 *  - The time, size, readiness and ordering callbacks of CMBufferCallbacks
 *    become data: each buffer carries its timestamps, duration, data size and
 *    ready flag (set with mbq_buffer_set_*), and a queue is created FIFO or
 *    sorted by PTS or by DTS.
 *  - Trigger callbacks cannot run in another process: each trigger is an
 *    eventfd (mbq_buffer_queue_trigger_fd) that becomes readable when the
 *    trigger fires in any process; mbq_dispatcher runs callbacks for them in
 *    the caller's thread.
 *  - Condition 12 (duration >= time AND count > threshold), which Core Media
 *    lists but no public installer accepts, is installed with
 *    mbq_buffer_queue_install_trigger_with_time_and_threshold().
 *  - Non-numeric buffer durations count as zero in the queue's duration.
 *  - A pool serves the block sizes fixed at its creation: one, or up to
 *    MBQ_POOL_MAX_CLASSES size classes (mbq_pool_options.classes), so that
 *    one pool serves allocations of any size up to its largest class as
 *    CMMemoryPool does, though not beyond it: an allocation of more fails.
 *    Blocks below a page are packed at 64-byte granularity, so a pool of
 *    small messages costs no page per message (mbq_pool_options).
 *  - A buffer's metadata (size, timing, flags, format, attachments) is
 *    frozen by its first enqueue: setters then fail with -EPERM, so a
 *    consumer reads exactly what the queue ordered by (see
 *    mbq_buffer_is_frozen).
 *  - Blocking dequeue with a timeout, the drop-oldest full policy and the
 *    per-queue counters are additions.
 */
#ifndef MBQ_MBQ_H
#define MBQ_MBQ_H

#include <mbq/status.h>
#include <mbq/time.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MBQ_VERSION_MAJOR 0
#define MBQ_VERSION_MINOR 1
#define MBQ_VERSION_PATCH 0
#define MBQ_PROTOCOL_VERSION 1

/* ---- connection ---------------------------------------------------------- */

typedef struct mbq_client mbq_client;

/* Connects to mbqd. socket_path NULL means: $MBQ_SOCKET if set, else
 * /run/mbq/mbqd.sock for root and $XDG_RUNTIME_DIR/mbq/mbqd.sock otherwise
 * (the daemon's defaults). client_name (may be NULL) shows in mbqctl.
 * Errors: -EINVAL (out NULL), -ENAMETOOLONG (socket path), -ENOENT (no
 * default path: neither $MBQ_SOCKET nor $XDG_RUNTIME_DIR for a non-root
 * user; or no socket), -ECONNREFUSED (no daemon), -EACCES (the socket's
 * permissions), -EPROTO (version mismatch), -ETIMEDOUT, -ENOMEM, other
 * errors of socket(2)/connect(2).
 *
 * Daemon restarts. When mbqd keeps its objects across restarts (under
 * systemd, with its file descriptor store), a client survives them: the
 * data plane never notices (mappings, buffers and trigger eventfds stay
 * valid; data flows while no daemon runs, except that the first enqueue of
 * a pool's buffers into a queue needs the daemon to bind them), and the
 * first control call (or mbq_client_dispatch) that finds the connection
 * gone reconnects to the same path, re-attaches every open object (the
 * daemon checks it is the same segment) and re-adopts this process's
 * triggers, then carries on.
 * That call may block while the daemon restarts: reconnection tries for up
 * to $MBQ_RECONNECT_TIMEOUT_MS (default 5000; 0 disables it), then the call
 * fails with -ENOTCONN. An object the restarted daemon does not have any
 * more (e.g. after `systemctl stop`, which drops the store) stays mapped
 * and usable in shared memory, but its control calls fail with -EIDRM.
 * Against a daemon without a store, a lost connection stays lost: control
 * calls fail with -ENOTCONN. See docs/SYSTEMD.md. */
int mbq_connect(const char *socket_path, const char *client_name, mbq_client **out);
/* Closes every object opened through the client, releases every buffer
 * reference the process still holds, and disconnects. Accepts NULL. */
void mbq_disconnect(mbq_client *client);
/* The default socket path as mbq_connect would choose it; returns the
 * length written (like snprintf), -EINVAL (buf NULL), -ENOENT (no default:
 * see mbq_connect) or -ENAMETOOLONG. */
int mbq_default_socket_path(char *buf, size_t len);
/* The control connection's fd, for the caller's event loop: when it is
 * readable, call mbq_client_dispatch(). Owned by the library. A
 * reconnection keeps the number (the new connection takes its place), so a
 * poll() loop needs nothing; an epoll set loses it with the old connection
 * and must add it again after a dispatch that returned 0 following a
 * daemon restart. */
int mbq_client_fd(mbq_client *client);
/* The id mbqd gave this process (0: none): the owner named in the lock
 * words of shared memory that this process's threads hold, the same in
 * every pid namespace. For diagnostics (mbqctl stat shows lock owners by
 * it). Thread-safe. */
uint32_t mbq_client_id(mbq_client *client);
/* Handles what the daemon pushed (new trigger eventfds for open queues)
 * without blocking while the connection is up. When the daemon went away
 * and keeps its objects across restarts, reconnects (see mbq_connect; this
 * may block up to $MBQ_RECONNECT_TIMEOUT_MS). 0, -ENOTCONN if the daemon
 * went away for good, or -EIDRM (once, then 0 again) if a reconnection
 * made by this or an earlier call found the daemon without some of this
 * client's objects (their control calls fail with -EIDRM): a long-lived
 * client re-creates or re-opens them. */
int mbq_client_dispatch(mbq_client *client);

/* A static description of a status; never NULL. */
const char *mbq_status_string(int status);

/* Removes a name; the object lives on while it is open. 0, -EINVAL (bad
 * name), -ENOENT, -EACCES (only the owner or root may), control errors. */
int mbq_unlink(mbq_client *client, const char *name);

/* Object names: 1..MBQ_NAME_MAX bytes of [A-Za-z0-9._-] in '/'-separated
 * components, none empty, "." or ".."; e.g. "cam0/raw". Others give -EINVAL.
 * Modes: permission bits only (within MBQ_MODE_MASK); others give -EINVAL. */
#define MBQ_NAME_MAX 255
#define MBQ_MODE_MASK 0777

/* ---- memory pools and buffers (CMMemoryPool) ----------------------------- */

typedef struct mbq_pool mbq_pool;

/* Create-or-open. A create (unless exclusive) opens an object that exists
 * under the name if it was made with the same options (the mode is not
 * compared: it is a permission); one made with other options (capacity,
 * order, full policy; block size as rounded (see block_size), block count, age-out)
 * is refused with -EEXIST, and mbq_client_last_error() names the
 * difference. With MBQ_OPEN_IF_EXISTS in the options' flags, an existing
 * object of the same kind is opened whatever its options (what Core Media
 * code that creates its queue once and shares it expects). */
#define MBQ_OPEN_IF_EXISTS (1ull << 0)

/* One size class of a pool (see mbq_pool_options.classes). */
typedef struct mbq_pool_class {
    uint64_t block_size;  /* rounded as mbq_pool_options.block_size is */
    uint32_t block_count; /* >= 1 */
} mbq_pool_class;

#define MBQ_POOL_MAX_CLASSES 8

typedef struct mbq_pool_options {
    size_t size;            /* sizeof(mbq_pool_options) */
    /* Bytes per block; required. From a page up, rounded up to whole pages
     * (each block page-aligned); below a page, rounded up to a multiple of
     * 64 and packed, several blocks to a page (64 B: 64 a page), so that
     * small messages do not cost a page each. A pool of packed blocks
     * returns on age-out only the pages no block outside the aging round
     * shares (seldom, for 64 B blocks: their pages stay resident). */
    uint64_t block_size;
    uint32_t block_count;   /* blocks in the pool; required */
    double age_out_seconds; /* 0: 0.5 s (kCMMemoryPoolOption_AgeOutPeriod) */
    uint32_t mode;          /* permission bits; 0: 0600 */
    bool exclusive;         /* fail with -EEXIST if the name exists */
    uint64_t flags;         /* MBQ_OPEN_IF_EXISTS */
    /* Size classes (an mbq extension; a caller built against an older
     * header, whose size ends before these fields, has none). class_count
     * 0: one block size (block_size, block_count). 1..MBQ_POOL_MAX_CLASSES:
     * the pool has these classes instead, and block_size and block_count
     * must be 0. The rules:
     *  - each class's block size is rounded as block_size is (64 B below a
     *    page, whole pages from one on) and the rounded sizes must ascend
     *    strictly; each class has block_count >= 1 blocks; 2^20 blocks in
     *    all at most;
     *  - an allocation of n bytes takes a block of the smallest class whose
     *    size is >= n, aligned as that class's blocks are (64 B, or a page);
     *    when that class has no free block it takes one of the next larger
     *    class that has one (never a smaller one), and fails with
     *    MBQ_POOL_ERR_ALLOCATION_FAILED only when no class >= n has a free
     *    block; n above the largest class: MBQ_POOL_ERR_INVALID_PARAMETER;
     *  - a buffer's capacity (mbq_buffer_get_data) is its block's size,
     *    which may exceed n (a larger class's, after a fallback);
     *  - age-out returns each class's free blocks after the age-out period
     *    like a pool of one size (packed classes keep pages that blocks
     *    outside the aging round share); flush and invalidate act on every
     *    class; a process's cache of free blocks is shared by the classes;
     *  - each class costs its descriptors and per-client counts (about 450 B
     *    a block, as any pool block) and up to a page of padding.
     * Bad classes (a size or count of 0, unordered or equal sizes, too
     * large, classes beside a block size) fail with
     * MBQ_POOL_ERR_INVALID_PARAMETER, and mbq_client_last_error() names the
     * class and the problem; nothing is created. class_count above
     * MBQ_POOL_MAX_CLASSES, or 0 with no block size, fails the same way in
     * the library, before any request (no explanation). One class is a
     * pool of that one block size. */
    uint32_t class_count;
    mbq_pool_class classes[MBQ_POOL_MAX_CLASSES];
} mbq_pool_options;

/* Creates (or, unless exclusive, opens: see "Create-or-open") a named pool. Its pages are
 * faulted in at creation, and each process that creates or opens the pool
 * maps the pages at that moment (its page tables are populated), so that
 * allocating and writing a block does not fault. The exception is a block
 * that aged out: a block left free for the age-out period has its pages
 * returned, and the next allocation of it faults them in again (a few µs
 * per page; docs/PERFORMANCE.md). The whole segment is charged to the
 * creating user (docs/MBQD.md, Quotas).
 * Errors: -EINVAL (client, out or options NULL, bad name, size field
 * wrong, mode beyond 0777), MBQ_POOL_ERR_INVALID_PARAMETER (block size or
 * count 0 or too large), -EEXIST (exclusive, the name is another kind
 * of object, or a pool with other options without MBQ_OPEN_IF_EXISTS), -EACCES (it exists and this user may not open it), -EDQUOT
 * (a quota: objects or bytes of this user, or bytes of all users
 * together), -ENOSPC (object ids exhausted, or the daemon's store of
 * segments across restarts is full), MBQ_POOL_ERR_ALLOCATION_FAILED (the
 * segment cannot be made), -EUSERS (opening an existing pool: its 64
 * client slots are all held by live processes), -EMFILE (this client has
 * the most pools mapped it can), -EBADMSG (the segment is not a valid
 * pool), control errors. */
int mbq_pool_create(mbq_client *client, const char *name, const mbq_pool_options *options,
                    mbq_pool **out);
/* Errors: -EINVAL, -ENOENT (no such name), -EACCES, -EUSERS (64 processes
 * have the pool open: a pool has 64 client slots), -EMFILE, -EBADMSG,
 * control errors. */
int mbq_pool_open(mbq_client *client, const char *name, mbq_pool **out);
/* The pool's size classes, smallest first, into classes (max entries; may
 * be NULL with max 0): returns how many it has (1 for a pool of one block
 * size), -EINVAL (pool NULL, classes NULL with max > 0), -ESTALE (the pool
 * was lost with its daemon connection). (An mbq extension.) */
int mbq_pool_get_classes(mbq_pool *pool, mbq_pool_class *classes, size_t max);
/* Releases the references this process holds on the pool's buffers. */
void mbq_pool_close(mbq_pool *pool);
/* CMMemoryPoolFlush: returns every cached free block's pages now.
 * -EINVAL (NULL), control errors. */
int mbq_pool_flush(mbq_pool *pool);
/* CMMemoryPoolInvalidate: stops recycling for good; live buffers stay
 * valid. -EINVAL (NULL), control errors. */
int mbq_pool_invalidate(mbq_pool *pool);

/* A buffer: a reference-counted pool block. A value; the fields are
 * private. The zero value is "no buffer". */
typedef struct mbq_buffer {
    mbq_pool *pool_;
    uint64_t handle_;
} mbq_buffer;

/* Allocates a buffer of at least size bytes with one reference held by the
 * caller (in a pool of size classes, from the class the rules of
 * mbq_pool_options.classes choose). MBQ_POOL_ERR_INVALID_PARAMETER (size 0
 * or above the (largest) block size),
 * MBQ_POOL_ERR_ALLOCATION_FAILED (every block is in use). */
int mbq_pool_allocate(mbq_pool *pool, size_t size, mbq_buffer *out);
/* Blocking allocate (back-pressure from the pool): as allocate, but while
 * every block is in use it sleeps until one is freed — by any process, or
 * by mbqd's reclaim of a holder that died — or until timeout_ns passes
 * (< 0: no limit; 0: allocate). MBQ_POOL_ERR_ALLOCATION_FAILED on timeout
 * (alloc_failures counts it once), -ECANCELED after
 * mbq_pool_cancel_waits. No polling: the sleeper is woken by the release
 * that frees a block, which makes a system call only while someone
 * sleeps. (An mbq extension.) */
int mbq_pool_allocate_wait(mbq_pool *pool, size_t size, int64_t timeout_ns, mbq_buffer *out);
/* Wakes every mbq_pool_allocate_wait on this pool, in every process (the
 * word is in the pool's shared memory), that began before the call: each
 * returns -ECANCELED at once. Calls begun later wait as usual. For a
 * pipeline that stops. (An mbq extension.) */
int mbq_pool_cancel_waits(mbq_pool *pool);
/* A cap on the blocks this client holds of this pool (every reference it
 * holds: allocated, retained, dequeued), for a consumer that must not
 * starve its producer (an encoder's lookahead): allocate and
 * allocate_wait fail with -EDQUOT at once while the client holds max_held
 * or more. 0 (the default) removes the cap. The cap is the client's own
 * discipline, kept by the library (a dequeue is not refused: it hands
 * over the queue's reference, and the next allocation sees it); with a
 * cap each allocation sums the client's holdings (O(block count)).
 * get_held reads what the client holds now. (mbq extensions.) */
int mbq_pool_set_hold_limit(mbq_pool *pool, uint32_t max_held);
int mbq_pool_get_held(mbq_pool *pool, uint64_t *held);
/* References: retain adds one, release drops one; the last release returns
 * the block to its pool. -ESTALE if the buffer was already freed or its
 * pool was closed in this process (every buffer call then gives -ESTALE,
 * false or NULL; a queued buffer keeps its pool alive in the daemon even
 * after it was unlinked and closed by everyone), -EINVAL
 * for the zero buffer (release also when this process holds no reference
 * to it). */
int mbq_buffer_retain(mbq_buffer buffer);
int mbq_buffer_release(mbq_buffer buffer);
bool mbq_buffer_is_valid(mbq_buffer buffer);
/* The payload, mapped in this process; NULL for a stale buffer. capacity
 * (may be NULL) receives the block size (its class's, in a pool of size
 * classes). */
void *mbq_buffer_get_data(mbq_buffer buffer, size_t *capacity);
/* Metadata a queue reads at enqueue: decode and presentation timestamps,
 * duration, and the bytes of payload that are meaningful. -ESTALE (freed
 * buffer), -EINVAL (zero buffer, NULL outputs, a size above the block
 * size), -EPERM (setters, once enqueued: see "One owner of metadata"
 * below). mbq_buffer_set_timing takes dts before pts; prefer
 * mbq_buffer_set_sample_timing, whose fields are named. */
int mbq_buffer_set_timing(mbq_buffer buffer, mbq_time dts, mbq_time pts, mbq_time duration);
int mbq_buffer_get_timing(mbq_buffer buffer, mbq_time *dts, mbq_time *pts, mbq_time *duration);
int mbq_buffer_set_data_size(mbq_buffer buffer, size_t size);
size_t mbq_buffer_get_data_size(mbq_buffer buffer);
/* One owner of metadata: the first enqueue freezes a buffer's data size,
 * timing and flags until the buffer is freed (its last release). From then
 * on the setters above and mbq_buffer_set_sample_timing/mbq_buffer_set_flags
 * fail with -EPERM, so what a consumer reads on the buffer is exactly what
 * the queue copied to order it and to sum its duration and size (a
 * producer that needs other metadata allocates a new buffer). Readiness is
 * not frozen (see below), nor is the payload, which the library cannot
 * guard. A thread that sets metadata while another enqueues the same buffer
 * races, and either value may win. */
bool mbq_buffer_is_frozen(mbq_buffer buffer);

/* CMSampleTimingInfo: the three times in one struct, so that they cannot be
 * swapped by position as with mbq_buffer_set_timing (kept). */
typedef struct mbq_sample_timing {
    mbq_time duration;
    mbq_time presentation_time_stamp;
    mbq_time decode_time_stamp;
} mbq_sample_timing;
/* -EINVAL (zero buffer, timing NULL), -ESTALE, -EPERM (frozen: set only). */
int mbq_buffer_set_sample_timing(mbq_buffer buffer, const mbq_sample_timing *timing);
int mbq_buffer_get_sample_timing(mbq_buffer buffer, mbq_sample_timing *timing);

/* Per-buffer flags (the sample attachments Core Media defines as booleans).
 * A new buffer's flags are MBQ_BUFFER_FLAG_SYNC: Core Media's
 * kCMSampleAttachmentKey_NotSync is the absence of SYNC, and a sample
 * without it is a sync sample. Bits 16..31 are the application's. */
#define MBQ_BUFFER_FLAG_SYNC (1u << 0)          /* a sync sample (key frame) */
#define MBQ_BUFFER_FLAG_DISCONTINUITY (1u << 1) /* a break in the stream before it */
#define MBQ_BUFFER_FLAG_DROPPABLE (1u << 2)     /* kCMSampleAttachmentKey_IsDependedOnByOthers false */
#define MBQ_BUFFER_FLAG_CORRUPT (1u << 3)       /* the payload is known to be damaged */
#define MBQ_BUFFER_FLAG_HEADER (1u << 4)        /* codec configuration, not a sample */
#define MBQ_BUFFER_FLAG_GAP (1u << 5)           /* no data: a gap in the stream */
#define MBQ_BUFFER_FLAG_USER(n) (1u << (16 + (n))) /* n: 0..15 */
/* -EINVAL (zero buffer, flags NULL), -ESTALE, -EPERM (frozen: set only). */
int mbq_buffer_set_flags(mbq_buffer buffer, uint32_t flags);
int mbq_buffer_get_flags(mbq_buffer buffer, uint32_t *flags);

/* Format descriptions: an opaque byte string of up to MBQ_FORMAT_MAX bytes
 * (GStreamer caps, codec parameters — CMFormatDescription's role) that a
 * producer sets on a buffer and every consumer reads for that buffer, so a
 * change takes effect exactly at the buffer that carries it. Formats are
 * interned in the pool's format area (16 slots per pool) and a buffer
 * carries only an id: a format that does not change costs no copy per
 * buffer. Like the rest of the metadata it is frozen by the first enqueue.
 *
 * A new format takes an empty slot, or recycles the least recently
 * interned one that no live buffer (held or queued) carries, so the format
 * of every buffer in flight stays readable; with all 16 carried, interning
 * fails with -ENOSPC. An id kept aside while no buffer carried it may have
 * been recycled: setting it gives -ESTALE. A consumer that compares ids
 * (mbq_buffer_get_format_id) copies a format only when it changes; ids are
 * per pool.
 *
 * mbq_pool_intern_format: the id of bytes[0..len) in the pool (an identical
 * format already there is reused). 0, -EINVAL (NULL, len 0), -EMSGSIZE
 * (above MBQ_FORMAT_MAX), -ENOSPC (16 formats carried by live buffers),
 * -ESTALE (pool closed), -EBUSY (the pool lock stays held by another
 * process).
 * mbq_buffer_set_format_id: sets an id interned in the buffer's own pool (0
 * clears). -ESTALE (buffer, or a format no longer current), -EBADMSG (not a
 * format id of this pool), -EPERM (frozen), -EINVAL.
 * mbq_buffer_set_format: interns and sets in one call; the library keeps
 * the last format it interned per pool, so an unchanged format costs a
 * compare in process memory. len 0 clears. Errors of both above.
 * mbq_buffer_get_format_id: 0 with *id (0: the buffer has no format).
 * mbq_buffer_copy_format: copies the format into buf (cap bytes) and its
 * length into *len. 0; -ENODATA (no format: *len 0); -ERANGE (cap too
 * small: *len is the length needed); -ESTALE (freed buffer, or its format's
 * slot was recycled); -EBADMSG (the format area or the buffer's id is
 * corrupt: a hostile or broken peer wrote shared memory; never read out of
 * bounds); -EINVAL. */
#define MBQ_FORMAT_MAX 4064
typedef uint64_t mbq_format_id;
int mbq_pool_intern_format(mbq_pool *pool, const void *bytes, size_t len, mbq_format_id *out);
int mbq_buffer_set_format_id(mbq_buffer buffer, mbq_format_id id);
int mbq_buffer_set_format(mbq_buffer buffer, const void *bytes, size_t len);
int mbq_buffer_get_format_id(mbq_buffer buffer, mbq_format_id *id);
int mbq_buffer_copy_format(mbq_buffer buffer, void *buf, size_t cap, size_t *len);

/* Attachments (CMSampleBuffer attachments): key -> bytes, per buffer, in a
 * bounded area of MBQ_ATTACHMENTS_MAX bytes (each attachment costs 4 bytes
 * plus its key and value); keys are strings of 1..64 bytes. Set before the
 * first enqueue, like the rest of the metadata (then -EPERM); read by every
 * consumer. Each has a mode, as kCMAttachmentMode_ShouldPropagate /
 * ShouldNotPropagate: in mbq, "propagate" means that
 * mbq_buffer_copy_attachments(dst, src) — what a filter calls to carry a
 * sample's attachments onto the buffer it produces from it — copies it;
 * other attachments describe this buffer only (e.g. its payload layout).
 * set: replaces key's value. 0, -EINVAL (zero buffer, bad key or mode),
 * -ENOSPC (the area is full), -ESTALE, -EPERM (frozen).
 * get: copies the value into buf (cap bytes), its length into *length and
 * its mode into *mode (both may be NULL). 0, -ENOENT, -ERANGE (cap too
 * small: *length is what is needed), -ESTALE, -EINVAL.
 * remove: 0, -ENOENT, -ESTALE, -EPERM, -EINVAL. count: the number, or an
 * error. copy: src's propagating attachments onto dst (replacing the same
 * keys, keeping dst's others); dst may be of another pool. 0, -ENOSPC,
 * -ESTALE, -EPERM (dst frozen), -EINVAL.
 * Every call returns -EBADMSG for an attachment area that is malformed (a
 * peer scribbled shared memory, or a holder was killed while writing it). */
#define MBQ_ATTACHMENTS_MAX 256
typedef enum mbq_attachment_mode {
    MBQ_ATTACHMENT_SHOULD_NOT_PROPAGATE = 0,
    MBQ_ATTACHMENT_SHOULD_PROPAGATE = 1,
} mbq_attachment_mode;
int mbq_buffer_set_attachment(mbq_buffer buffer, const char *key, const void *value,
                              size_t length, mbq_attachment_mode mode);
int mbq_buffer_get_attachment(mbq_buffer buffer, const char *key, void *buf, size_t cap,
                              size_t *length, mbq_attachment_mode *mode);
int mbq_buffer_remove_attachment(mbq_buffer buffer, const char *key);
int mbq_buffer_remove_all_attachments(mbq_buffer buffer);
int mbq_buffer_get_attachment_count(mbq_buffer buffer);
int mbq_buffer_copy_attachments(mbq_buffer dst, mbq_buffer src);

/* The payload as a file: the pool's memfd (borrowed: owned by the library,
 * valid while the pool is open in this process; do not close it, dup it to
 * keep it) and the offset and length of the buffer's block in it, page
 * aligned for a pool of page blocks (a multiple of 64 for packed blocks
 * below a page: map the page below and add the rest), for GstFdMemory- or
 * dmabuf-style consumers. A consumer must map
 * it read-only (PROT_READ, MAP_SHARED): the segment is sealed against
 * growing and shrinking, and a writable mapping could scribble on buffers
 * other processes own. The fd stays the same for every buffer of the pool.
 * 0, -EINVAL (zero buffer, an output NULL), -ESTALE. */
int mbq_buffer_get_fd(mbq_buffer buffer, int *fd, uint64_t *offset, size_t *length);

/* Readiness (CMBufferCallbacks.isDataReady): a new buffer is ready. A
 * producer that fills a buffer after enqueueing it clears the flag first,
 * then sets it and calls mbq_buffer_queue_notify_data_ready() on the queues
 * holding it, so their data-ready triggers can fire. */
/* -ESTALE, -EINVAL as above. */
int mbq_buffer_set_data_ready(mbq_buffer buffer, bool ready);
bool mbq_buffer_is_data_ready(mbq_buffer buffer);

/* ---- buffer queues (CMBufferQueue) --------------------------------------- */

typedef struct mbq_buffer_queue mbq_buffer_queue;

#define MBQ_BUFFER_QUEUE_DEFAULT_CAPACITY 1024

typedef enum mbq_buffer_queue_order {
    MBQ_ORDER_FIFO = 0,
    MBQ_ORDER_PRESENTATION_TIME = 1, /* sorted by PTS, stable among equal keys */
    MBQ_ORDER_DECODE_TIME = 2,       /* sorted by DTS */
} mbq_buffer_queue_order;

typedef enum mbq_full_policy {
    MBQ_FULL_FAIL = 0,        /* enqueue on a full queue fails (Core Media) */
    MBQ_FULL_DROP_OLDEST = 1, /* the oldest buffer is dropped to make room */
} mbq_full_policy;

typedef struct mbq_buffer_queue_options {
    size_t size; /* sizeof(mbq_buffer_queue_options) */
    uint32_t capacity;
    mbq_buffer_queue_order order;
    mbq_full_policy full_policy;
    uint32_t mode;  /* permission bits; 0: 0600 */
    bool exclusive; /* fail with -EEXIST if the name exists */
    uint64_t flags; /* MBQ_OPEN_IF_EXISTS */
} mbq_buffer_queue_options;

/* Creates (or, unless exclusive, opens: see "Create-or-open" above) a named
 * buffer queue. Errors:
 * MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING (client or out NULL), -EINVAL (bad
 * name, size field, order, full policy, capacity above 2^20, mode),
 * -EEXIST, -EACCES, -EDQUOT, -ENOSPC (as for mbq_pool_create),
 * MBQ_BQ_ERR_ALLOCATION_FAILED, -EBADMSG, control errors. */
int mbq_buffer_queue_create(mbq_client *client, const char *name,
                            const mbq_buffer_queue_options *options, mbq_buffer_queue **out);
/* MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, -EINVAL, -ENOENT, -EACCES,
 * -EBADMSG, control errors. */
int mbq_buffer_queue_open(mbq_client *client, const char *name, mbq_buffer_queue **out);
/* Removes the triggers this process installed on the queue, then closes it. */
void mbq_buffer_queue_close(mbq_buffer_queue *queue);

/* CMBufferQueueEnqueue: the queue takes its own reference; the caller keeps
 * its own. Errors: MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING,
 * MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA, MBQ_BQ_ERR_QUEUE_IS_FULL, the
 * validation callback's status, -ESTALE,
 * MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK, -EUCLEAN (the
 * queue's shared state was inconsistent and could not be repaired).
 * The first enqueue of a buffer of a given pool into a given queue, in
 * this process, binds the pool to the queue through the daemon (a queue
 * carries only pools bound to it; docs/MBQD.md): it can also fail with
 * -EACCES (this user may not open the pool), -ENOSPC (1024 pools that still exist bound to
 * the queue) and the control errors. Later enqueues ask nothing. */
int mbq_buffer_queue_enqueue(mbq_buffer_queue *queue, mbq_buffer buffer);
/* Enqueue, handing the caller's reference to the queue instead of taking a
 * new one: the same as enqueue followed by mbq_buffer_release, in one step
 * and about half the cost (no reference-count change at all). On success
 * the caller must not use the buffer any more (a consumer may already have
 * released it); on failure it still holds its reference. The usual last
 * step of a producer: enqueue into every queue but the last, then
 * enqueue_and_release into the last. Errors as enqueue, and -EINVAL when
 * this process holds no reference to the buffer. (An mbq extension.) */
int mbq_buffer_queue_enqueue_and_release(mbq_buffer_queue *queue, mbq_buffer buffer);
/* CMBufferQueueDequeueAndRetain: the queue's reference passes to the
 * caller. 0, or -EAGAIN when empty (Core Media returns NULL),
 * MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, the trigger-callback status,
 * -EUCLEAN; -ENOLINK when the entry names a pool not bound to the queue,
 * or an id no pool has (written around the library: the entry is dropped, nothing is adopted,
 * the queue's forged_entries counts it); and, for the first buffer of a
 * pool this client has not mapped or checked yet, the errors of mapping it
 * (-EACCES, -EUSERS, -EMFILE, -ENOENT when the pool is gone) and control
 * errors (then the buffer's reference is lost). */
int mbq_buffer_queue_dequeue_and_retain(mbq_buffer_queue *queue, mbq_buffer *out);
/* CMBufferQueueDequeueIfDataReadyAndRetain: -EAGAIN also when the head is
 * not ready (it never skips to a later buffer). Otherwise as dequeue. */
int mbq_buffer_queue_dequeue_if_data_ready_and_retain(mbq_buffer_queue *queue, mbq_buffer *out);
/* Blocking dequeue: spins (see mbq_buffer_queue_set_wait_spin), then
 * sleeps until a buffer arrives or timeout_ns passes (< 0: no limit). 0,
 * -ETIMEDOUT, -ENODATA (empty and at end of data), -EPIPE (empty, no end of
 * data, and every declared producer is gone: see "Producers" below;
 * returned at once, without waiting for the timeout), -ECANCELED
 * (mbq_buffer_queue_cancel_waits), or as dequeue. */
int mbq_buffer_queue_dequeue_wait(mbq_buffer_queue *queue, int64_t timeout_ns, mbq_buffer *out);
/* Blocking enqueue (back-pressure from the queue): as enqueue (or
 * enqueue_and_release), but a full queue (MBQ_BUFFER_QUEUE_FULL_FAIL)
 * makes the call sleep until a consumer's dequeue (or a reset) makes room
 * or timeout_ns passes (< 0: no limit; 0: one try). Returns as enqueue:
 * MBQ_BQ_ERR_QUEUE_IS_FULL on timeout (counted once in rejected_full),
 * MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA if end of data is marked meanwhile,
 * and -ECANCELED after mbq_buffer_queue_cancel_waits. A full queue is
 * noticed without a lock or a reference change, so waiting costs the
 * buffer nothing; for enqueue_and_release_wait the caller keeps its
 * reference on any failure. No polling: the consumer's dequeue makes a
 * system call only while a producer sleeps. (mbq extensions.) */
int mbq_buffer_queue_enqueue_wait(mbq_buffer_queue *queue, mbq_buffer buffer, int64_t timeout_ns);
int mbq_buffer_queue_enqueue_and_release_wait(mbq_buffer_queue *queue, mbq_buffer buffer,
                                              int64_t timeout_ns);
/* Cancel: every blocking call on this queue (dequeue_wait, enqueue_wait,
 * enqueue_and_release_wait) in every process that has it open, begun
 * before this call, returns -ECANCELED at once. The cancel is a word in the
 * queue's shared memory, so any process with the queue open can stop a
 * pipeline; calls begun afterwards wait as usual (mark end of data as well
 * to make later dequeue_waits return -ENODATA). Takes no lock; safe from
 * any thread and from a signal handler. (An mbq extension.) */
int mbq_buffer_queue_cancel_waits(mbq_buffer_queue *queue);
/* How long this process's blocking calls on this queue handle spin before
 * sleeping: < 0 adaptive (the default: up to ~25 us, none while the
 * producer last ran on this CPU, where spinning only delays it, and none
 * after spins that kept finding nothing), 0 never spin (for producer and
 * consumer sharing a CPU, or power), > 0 up to that many nanoseconds
 * whenever the producer runs on another CPU. (An mbq extension.) */
int mbq_buffer_queue_set_wait_spin(mbq_buffer_queue *queue, int64_t spin_ns);
/* Wake ahead: a producer that is about to enqueue (within tens of
 * microseconds) wakes the dequeuers asleep in dequeue_wait on this queue
 * now, so that their wake-up, which costs tens of microseconds across
 * processes, overlaps the producer's work before the enqueue instead of
 * following it. A dequeuer so woken finds the queue empty and spins for the
 * buffer up to ~50 us (not if its wait spin is 0, nor while the producer
 * runs on its CPU), then sleeps again until the enqueue wakes it as usual:
 * a wake ahead that no enqueue follows costs that spin, never a lost
 * wake-up. No system call when no dequeuer sleeps. 0, or
 * MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING. Takes no lock; any thread. (An
 * mbq extension.) */
int mbq_buffer_queue_wake_ahead(mbq_buffer_queue *queue);
/* Producers (mbq extensions), so that a consumer can tell a dead producer
 * from a slow one.
 *  - declare_producer: this client produces into the queue. The daemon
 *    counts the declared producers of each queue; a declaration ends when
 *    the client closes the queue or its connection ends (the process
 *    exited, crashed or was killed: kill -9 included, seen at once). It is
 *    made again after the daemon restarts (the restarted daemon waits for
 *    each producer of before to declare again or exit). Enqueueing does not
 *    declare: a process that only relays or re-queues now and then should
 *    not become a producer whose exit ends the stream. 0,
 *    MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, -EIDRM (a restarted daemon no
 *    longer has the queue), control errors.
 *  - When the last declared producer's declaration ends, the queue is
 *    "producer lost": blocking dequeues (dequeue_wait, dequeue_wait_many)
 *    deliver what is still queued, then return -EPIPE at once instead of
 *    waiting (end of data, if marked, wins: -ENODATA). A new declaration
 *    clears it, so a restarted producer resumes the stream. A queue on
 *    which no producer ever declared is never producer lost. A stopped
 *    (SIGSTOP) producer is still a producer. Non-blocking dequeues are
 *    unchanged (-EAGAIN when empty); is_producer_lost tells the state
 *    (false for NULL).
 *  - set_wait_through_producer_lost: this handle's blocking dequeues wait
 *    on through "producer lost" (for the next producer) as for a slow one.
 *  - mbq_stat shows the declarations counted, the producers' pids, which
 *    client declared and whether the queue is producer lost.
 * Thread safety: any thread; declare_producer takes the client's lock. */
int mbq_buffer_queue_declare_producer(mbq_buffer_queue *queue);
bool mbq_buffer_queue_is_producer_lost(mbq_buffer_queue *queue);
int mbq_buffer_queue_set_wait_through_producer_lost(mbq_buffer_queue *queue, bool wait);
/* Batched calls (mbq extensions): many buffers in one call, in array order,
 * with the results of the single-buffer calls made one after the other.
 * enqueue_and_release_many, dequeue_many, dequeue_wait_many and
 * release_many work by runs: up to 32 consecutive buffers of one pool go
 * through one lock round of the queue (one index store, one trigger
 * evaluation, one wake-up check) and one intent record of the pool, which
 * is where their cost per buffer goes down; enqueue_many (which takes a
 * new reference per buffer) is a loop over enqueue.
 *  - enqueue_many: the queue takes a reference to each of buffers[0..n);
 *    enqueue_and_release_many hands each of the caller's references over.
 *    A batch stops at its first failure: *done (may be NULL) is the number
 *    enqueued, a prefix of the array, and the return is 0 when all n were,
 *    else the failing element's status (as enqueue's). The elements from
 *    *done on are untouched: the caller still holds their references.
 *  - A sorted queue orders each element by its own time stamp; the full
 *    policy applies per element (drop-oldest drops one entry for each
 *    element that finds the queue full); each buffer's metadata is frozen
 *    by its own enqueue; end of data marked during a batch fails the
 *    elements after it (MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA); the
 *    validation callback sees each element before its run goes in, and the
 *    batch stops at the first it refuses.
 *  - Triggers are evaluated once per run, on the queue before and after
 *    it: a run only adds (or only takes away), so a count or duration
 *    condition it crosses fires once, as buffer by buffer; a condition
 *    that would fire on every buffer of the run (min/max PTS changes)
 *    fires once for the run.
 *  - dequeue_many: up to max buffers (at most MBQ_BATCH_MAX) from the
 *    head into out[], each retained for the caller; returns how many (0:
 *    empty), or the error of the first dequeue when it took nothing. An
 *    error after the first buffer ends the batch short and is reported by
 *    the next call (an entry of a pool not bound to the queue, dropped as
 *    dequeue drops it, is then not reported). dequeue_wait_many waits as
 *    dequeue_wait for the first buffer only, then takes what is there.
 *  - release_many: releases each buffer; 0, or the first error (every
 *    buffer is still tried).
 * Crash safety as buffer by buffer: a process killed at any instruction of
 * a batch leaks no block and frees none twice (a run's references move
 * under one intent that names every block of the run; see
 * docs/DATAPLANE.md "Run intents"). */
#define MBQ_BATCH_MAX 65536
int mbq_buffer_queue_enqueue_many(mbq_buffer_queue *queue, const mbq_buffer *buffers, size_t n,
                                  size_t *done);
int mbq_buffer_queue_enqueue_and_release_many(mbq_buffer_queue *queue, const mbq_buffer *buffers,
                                              size_t n, size_t *done);
int mbq_buffer_queue_dequeue_many(mbq_buffer_queue *queue, mbq_buffer *out, size_t max);
int mbq_buffer_queue_dequeue_wait_many(mbq_buffer_queue *queue, int64_t timeout_ns,
                                       mbq_buffer *out, size_t max);
int mbq_buffer_release_many(const mbq_buffer *buffers, size_t n);
/* Allocates up to n buffers of at least size bytes each into out[0..),
 * each with one reference held by the caller, as mbq_pool_allocate would
 * one after the other (an mbq extension). Returns how many (1..n; fewer
 * when the pool runs short, or when the hold limit of
 * mbq_pool_set_hold_limit would be passed: the caller may use those and
 * call again), 0 for n 0, or with none allocated:
 * MBQ_POOL_ERR_ALLOCATION_FAILED (every block is in use),
 * MBQ_POOL_ERR_INVALID_PARAMETER (pool NULL, out NULL with n > 0, size 0
 * or above the (largest) block size), -EDQUOT (the hold limit is reached).
 * n above MBQ_BATCH_MAX is taken as MBQ_BATCH_MAX.
 * Where its cost goes down: the buffers come from this thread's cache in
 * runs of up to 32, each run claimed under one intent record (one fence,
 * one publication of the cache), and an empty cache is refilled at once
 * with the blocks that another process's mbq_buffer_release_many handed
 * back, without the pool's lock (see docs/DATAPLANE.md "Outboxes"). In a
 * pool of several size classes, from a thread that is not the one using
 * this process's cache, or beyond what the runs found (a pool whose free
 * blocks are cold), it allocates the rest one by one, as
 * mbq_pool_allocate. No blocking form: mbq_pool_allocate_wait waits for
 * the first.
 * Ownership: on success the caller owns the returned references, to be
 * released (or enqueued with _and_release) like mbq_pool_allocate's; on
 * error out[] is untouched. Thread safety: any thread. Crash safety as
 * mbq_pool_allocate: a process killed inside the call leaks no block. */
int mbq_pool_allocate_many(mbq_pool *pool, size_t size, mbq_buffer *out, size_t n);
/* CMBufferQueueCopyHead: the head with a new reference for the caller.
 * -EAGAIN (empty, or the head kept changing pools), -ESTALE (its pool was
 * closed meanwhile), otherwise as dequeue (-ENOLINK included). */
int mbq_buffer_queue_copy_head(mbq_buffer_queue *queue, mbq_buffer *out);

/* MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, the trigger-callback status. */
int mbq_buffer_queue_mark_end_of_data(mbq_buffer_queue *queue);
/* As Core Media, contains_end_of_data and is_at_end_of_data are true for a
 * NULL queue (there is no more data to come from it). */
bool mbq_buffer_queue_contains_end_of_data(mbq_buffer_queue *queue);
bool mbq_buffer_queue_is_at_end_of_data(mbq_buffer_queue *queue);
bool mbq_buffer_queue_is_empty(mbq_buffer_queue *queue);
int64_t mbq_buffer_queue_get_buffer_count(mbq_buffer_queue *queue);
mbq_time mbq_buffer_queue_get_duration(mbq_buffer_queue *queue);
size_t mbq_buffer_queue_get_total_size(mbq_buffer_queue *queue);
/* Timestamps; MBQ_TIME_INVALID for an empty queue. The min/max scans skip
 * non-numeric timestamps. */
mbq_time mbq_buffer_queue_get_min_decode_time_stamp(mbq_buffer_queue *queue);
mbq_time mbq_buffer_queue_get_first_decode_time_stamp(mbq_buffer_queue *queue);
mbq_time mbq_buffer_queue_get_min_presentation_time_stamp(mbq_buffer_queue *queue);
mbq_time mbq_buffer_queue_get_first_presentation_time_stamp(mbq_buffer_queue *queue);
mbq_time mbq_buffer_queue_get_max_presentation_time_stamp(mbq_buffer_queue *queue);
mbq_time mbq_buffer_queue_get_end_presentation_time_stamp(mbq_buffer_queue *queue);

/* CMBufferQueueReset / ResetWithCallback: releases every buffer (calling
 * callback first for each, in dequeue order), clears end of data. An entry
 * of a pool not bound to the queue is not released, and the callback gets
 * the zero buffer for it. Before any entry leaves, the pools of the
 * entries are opened in this process and their binding to the queue
 * learned (a daemon round trip per pool new to this handle), so that a
 * process killed in the call leaks no buffer.
 * MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, the trigger-callback status. */
int mbq_buffer_queue_reset(mbq_buffer_queue *queue);
int mbq_buffer_queue_reset_with_callback(mbq_buffer_queue *queue,
                                         void (*callback)(mbq_buffer buffer, void *refcon),
                                         void *refcon);
/* CMBufferQueueCallForEachBuffer: dequeue order; the first non-zero return
 * stops the walk and is returned. The callback must not call into the queue.
 * An entry of an unbound pool (or one whose pool cannot be mapped) is
 * passed as the zero buffer. MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING. */
int mbq_buffer_queue_call_for_each_buffer(mbq_buffer_queue *queue,
                                          int (*callback)(mbq_buffer buffer, void *refcon),
                                          void *refcon);
/* CMBufferQueueSetValidationCallback, for this process's enqueues: a
 * non-zero return rejects the buffer and is returned by enqueue
 * (MBQ_BQ_ERR_INVALID_BUFFER is the conventional value). NULL removes it.
 * MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING (queue NULL), -ENOMEM. Each
 * distinct callback and refcon pair set keeps a small record until the
 * queue handle is closed. */
int mbq_buffer_queue_set_validation_callback(mbq_buffer_queue *queue,
                                             int (*callback)(mbq_buffer_queue *queue,
                                                             mbq_buffer buffer, void *refcon),
                                             void *refcon);

/* Triggers. Conditions carry Core Media's numbers. */
typedef enum mbq_trigger_condition {
    MBQ_TRIGGER_WHEN_DURATION_BECOMES_LESS_THAN = 1,
    MBQ_TRIGGER_WHEN_DURATION_BECOMES_LESS_THAN_OR_EQUAL_TO = 2,
    MBQ_TRIGGER_WHEN_DURATION_BECOMES_GREATER_THAN = 3,
    MBQ_TRIGGER_WHEN_DURATION_BECOMES_GREATER_THAN_OR_EQUAL_TO = 4,
    MBQ_TRIGGER_WHEN_MIN_PRESENTATION_TIME_STAMP_CHANGES = 5,
    MBQ_TRIGGER_WHEN_MAX_PRESENTATION_TIME_STAMP_CHANGES = 6,
    MBQ_TRIGGER_WHEN_DATA_BECOMES_READY = 7,
    MBQ_TRIGGER_WHEN_END_OF_DATA_REACHED = 8,
    MBQ_TRIGGER_WHEN_RESET = 9,
    MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_LESS_THAN = 10,
    MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN = 11,
    MBQ_TRIGGER_WHEN_DURATION_BECOMES_GREATER_THAN_OR_EQUAL_TO_AND_BUFFER_COUNT_BECOMES_GREATER_THAN =
        12,
} mbq_trigger_condition;

typedef uint64_t mbq_trigger_token;

/* CMBufferQueueInstallTrigger: for conditions 1-9. Data readiness
 * (condition 7) is the head buffer's ready flag: installed while the head
 * is present but not ready, it does not fire; it fires when that head
 * becomes ready and mbq_buffer_queue_notify_data_ready() is called.
 * The time is used by conditions 1-4 and
 * must be numeric with epoch 0, else MBQ_BQ_ERR_BAD_TRIGGER_DURATION.
 * Integer conditions give MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION. The trigger
 * fires at once if already true, then on each false-to-true edge, whichever
 * process changes the queue. An installed trigger costs the operations
 * that cannot make it true (the other side's, or a count far from its
 * threshold) one load and a compare; the others take the whole queue's
 * lock to evaluate it. token_out is required (the eventfd is found
 * through it). The trigger belongs to this process and is removed when it
 * closes the queue or exits. Also MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING,
 * -ENOSPC (the queue has 128 triggers, in all processes together: each
 * is an eventfd in every process that has the queue open, all of a
 * queue's are handed over in one message at open, and an evaluation
 * looks at each), -EDQUOT (this client has --max-triggers
 * installed, or this user --max-objects over all its connections),
 * -EIDRM, control errors. */
int mbq_buffer_queue_install_trigger(mbq_buffer_queue *queue, mbq_trigger_condition condition,
                                     mbq_time time, mbq_trigger_token *token_out);
/* For conditions 10 and 11; errors as above. */
int mbq_buffer_queue_install_trigger_with_integer_threshold(mbq_buffer_queue *queue,
                                                            mbq_trigger_condition condition,
                                                            int64_t threshold,
                                                            mbq_trigger_token *token_out);
/* For condition 12; errors as above. */
int mbq_buffer_queue_install_trigger_with_time_and_threshold(mbq_buffer_queue *queue,
                                                             mbq_trigger_condition condition,
                                                             mbq_time time, int64_t threshold,
                                                             mbq_trigger_token *token_out);
/* MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN if the token is not installed here;
 * MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, control errors. */
int mbq_buffer_queue_remove_trigger(mbq_buffer_queue *queue, mbq_trigger_token token);
/* The condition's current level; false for the event conditions 5, 6, 9
 * and for an unknown token. */
bool mbq_buffer_queue_test_trigger(mbq_buffer_queue *queue, mbq_trigger_token token);
/* The trigger's eventfd: readable once the trigger fired; read 8 bytes to
 * consume (the value is the number of firings since the last read). Owned
 * by the library. -1 for an unknown token. */
int mbq_buffer_queue_trigger_fd(mbq_buffer_queue *queue, mbq_trigger_token token);
/* After a buffer in the queue became ready: lets the data-ready trigger
 * fire. MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, -EUCLEAN. */
int mbq_buffer_queue_notify_data_ready(mbq_buffer_queue *queue);

/* Counters beyond Core Media (what mbqctl shows). */
typedef struct mbq_buffer_queue_stats {
    size_t size; /* set by the caller: sizeof(mbq_buffer_queue_stats) */
    uint64_t count, capacity, enqueued, dequeued, dropped, rejected_full, high_water;
    uint64_t total_size;
    mbq_time duration;
    bool end_of_data;
} mbq_buffer_queue_stats;
/* MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, -EINVAL (size field too small). */
int mbq_buffer_queue_get_stats(mbq_buffer_queue *queue, mbq_buffer_queue_stats *stats);

/* ---- trigger dispatcher --------------------------------------------------- */

/* Runs callbacks for fired triggers in the caller's thread. Inside a
 * callback, the queue may be inspected but not modified: mutations of that
 * queue (enqueue, dequeue, copy head, reset, mark end of data) return
 * MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK (-12766), as in Core
 * Media. Inspection (counts, duration, timestamps, test_trigger,
 * call_for_each_buffer), other queues, pools and buffers, and installing or
 * removing triggers, may be called. */
typedef struct mbq_dispatcher mbq_dispatcher;
typedef void (*mbq_trigger_callback)(void *refcon, mbq_buffer_queue *queue,
                                     mbq_trigger_token token);

/* -EINVAL (out NULL), -ENOMEM, the errors of epoll_create1(2). */
int mbq_dispatcher_create(mbq_dispatcher **out);
void mbq_dispatcher_destroy(mbq_dispatcher *dispatcher);
/* Calls callback each time the trigger fires. The trigger stays owned by
 * its queue; remove it from the dispatcher before removing the trigger.
 * MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN
 * (not a trigger of the queue), -EEXIST (added already), -ENOMEM, the
 * errors of epoll_ctl(2). */
int mbq_dispatcher_add(mbq_dispatcher *dispatcher, mbq_buffer_queue *queue,
                       mbq_trigger_token token, mbq_trigger_callback callback, void *refcon);
/* MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING, MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN. */
int mbq_dispatcher_remove(mbq_dispatcher *dispatcher, mbq_buffer_queue *queue,
                          mbq_trigger_token token);
/* One fd (epoll) that is readable when any added trigger fired; -EINVAL
 * for NULL. */
int mbq_dispatcher_fd(mbq_dispatcher *dispatcher);
/* Waits up to timeout_ms (-1: forever, 0: poll) and runs the callbacks of
 * fired triggers. Returns how many ran, or a negative errno. */
int mbq_dispatcher_dispatch(mbq_dispatcher *dispatcher, int timeout_ms);

/* ---- simple queues (CMSimpleQueue) ---------------------------------------- */

typedef struct mbq_simple_queue mbq_simple_queue;

typedef struct mbq_simple_queue_options {
    size_t size; /* sizeof(mbq_simple_queue_options) */
    uint32_t mode;
    bool exclusive;
    uint64_t flags; /* MBQ_OPEN_IF_EXISTS (see "Create-or-open") */
} mbq_simple_queue_options;

/* capacity: 1..2^24; 0 gives MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING, negative
 * or too large MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE. options may be NULL.
 * Also -EINVAL (client or out NULL, bad name, size field, mode), -EEXIST,
 * -EACCES, -EDQUOT, -ENOSPC (as for mbq_pool_create),
 * MBQ_SQ_ERR_ALLOCATION_FAILED, -EBADMSG, control errors. */
int mbq_simple_queue_create(mbq_client *client, const char *name, int32_t capacity,
                            const mbq_simple_queue_options *options, mbq_simple_queue **out);
/* -EINVAL, -ENOENT, -EACCES, -EBADMSG, control errors. */
int mbq_simple_queue_open(mbq_client *client, const char *name, mbq_simple_queue **out);
void mbq_simple_queue_close(mbq_simple_queue *queue);
/* Values are non-zero 64-bit words (0 means "empty" on dequeue): plain
 * values, not buffer references. A value that names a buffer holds no
 * reference to it, and a process killed with a value in hand leaves
 * nothing for mbqd to release; pass buffers through buffer queues.
 * MBQ_SQ_ERR_QUEUE_IS_FULL, MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING, -EUCLEAN
 * (the shared counters are corrupt). */
int mbq_simple_queue_enqueue(mbq_simple_queue *queue, uint64_t value);
uint64_t mbq_simple_queue_dequeue(mbq_simple_queue *queue);
uint64_t mbq_simple_queue_get_head(mbq_simple_queue *queue);
/* Not synchronised with a running producer or consumer (as in Core Media).
 * MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING. */
int mbq_simple_queue_reset(mbq_simple_queue *queue);
int32_t mbq_simple_queue_get_capacity(mbq_simple_queue *queue);
int32_t mbq_simple_queue_get_count(mbq_simple_queue *queue);
float mbq_simple_queue_get_fullness(mbq_simple_queue *queue);

/* ---- introspection (what mbqctl uses) ------------------------------------- */

typedef enum mbq_object_kind {
    MBQ_OBJECT_BUFFER_QUEUE = 1,
    MBQ_OBJECT_SIMPLE_QUEUE = 2,
    MBQ_OBJECT_POOL = 3,
} mbq_object_kind;

/* The producers' pids mbq_object_info gives, at most (as many as mbqd
 * records in a queue's header). */
#define MBQ_PRODUCER_PIDS 6

typedef struct mbq_client_usage {
    uint32_t pid, uid;
    char name[64];
    uint64_t buffers_held; /* pools: references this client holds */
    uint32_t triggers;     /* buffer queues: triggers it installed */
} mbq_client_usage;

typedef struct mbq_object_info {
    size_t size; /* set by the caller: sizeof(mbq_object_info) */
    char name[256];
    mbq_object_kind kind;
    uint64_t object_id;
    uint32_t owner_uid, owner_gid, mode, open_count;
    uint64_t segment_size;
    /* buffer queue */
    uint32_t capacity, order, full_policy, triggers;
    uint64_t count, enqueued, dequeued, dropped, rejected_full, high_water, total_size;
    mbq_time duration;
    bool end_of_data;
    /* pool */
    uint64_t block_size;
    uint32_t block_count, blocks_used, blocks_warm, blocks_cold;
    uint64_t allocations, frees, aged_out;
    bool invalidated;
    /* simple queue */
    int32_t sq_capacity, sq_count;
    /* the clients that have it open (stat only; shown to the object's owner
     * and root only, otherwise client_count is 0) */
    uint32_t client_count;
    mbq_client_usage clients[32];
    /* buffer queue (stat only): entries naming a pool not bound to the
     * queue, which the daemon ignored and consumers refused */
    uint64_t forged_entries;
    /* stat only, buffer queues and pools: */
    bool approximate;        /* a lock stayed held: counters read without it */
    uint64_t lock_takeovers; /* locks mbqd took from owners not entitled to them */
    /* pool of size classes (stat only; pool_class_count 0 otherwise): each
     * class's figures, warm counting free blocks kept in clients' caches
     * too; block_size above (pool) is the largest class's, block_count every
     * class's */
    uint32_t pool_class_count;
    struct {
        uint64_t block_size;
        uint32_t block_count, used, warm, cold, cached;
    } pool_classes[MBQ_POOL_MAX_CLASSES];
    /* buffer queue (stat only), see mbq_buffer_queue_declare_producer: the
     * declarations of producers mbqd counts; the pids of up to
     * MBQ_PRODUCER_PIDS of them (producer_pid_count 0 but for the owner and
     * root, as clients); whether the queue is "producer lost"; and whether
     * clients[i] declared itself a producer of it (owner and root only) */
    uint32_t producers;
    uint32_t producer_pid_count;
    uint32_t producer_pids[MBQ_PRODUCER_PIDS];
    bool producer_lost;
    bool client_is_producer[32];
} mbq_object_info;

/* What one user is charged: the objects it owns and their bytes, for as
 * long as they exist; its limits (0: none). */
typedef struct mbq_user_usage {
    size_t size; /* set by the caller: sizeof(mbq_user_usage) */
    uint32_t uid;
    uint32_t objects, max_objects;
    uint64_t bytes, max_bytes;
} mbq_user_usage;

/* Lists the objects whose name starts with prefix (NULL: all) that this
 * user may open or owns, into an array of max entries (the first one's
 * size field is the stride); returns the number of objects (which may
 * exceed max). -EINVAL (client NULL, infos NULL with max > 0, a size field
 * too small, prefix longer than 255), control errors. */
int mbq_list(mbq_client *client, const char *prefix, mbq_object_info *infos, size_t max);
/* Everything the daemon knows about one object, with live counters; its
 * clients (and a queue's producers' pids) only for its owner and root.
 * -EINVAL (bad name, size field), -ENOENT, -EACCES (this user may not open
 * it), control errors. */
int mbq_stat(mbq_client *client, const char *name, mbq_object_info *info);
/* What users are charged: the caller's own line (root: every user's, by
 * uid) into max entries (the first one's size is the stride); total and
 * max_total (may be NULL) get the bytes of all segments and their cap (0:
 * none). Returns the number of users (which may exceed max), -EINVAL, or
 * -ENOTCONN/-ETIMEDOUT/-EPROTO as for every control request. */
int mbq_usage(mbq_client *client, mbq_user_usage *users, size_t max, uint64_t *total,
              uint64_t *max_total);
/* Copies the daemon's explanation of the last request of this client that
 * failed (e.g. which quota an -EDQUOT hit) into buf (NUL-terminated, cut
 * to len); "" if none. Returns buf. Thread-safe; with several threads the
 * last failure may be another thread's. */
char *mbq_client_last_error(mbq_client *client, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
