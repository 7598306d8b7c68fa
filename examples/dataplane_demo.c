/* mbq data-plane demo: a producer process and a consumer process share a
 * memory pool and a buffer queue through sealed memfds, with no daemon.
 *
 * The parent creates the pool and the queue, then forks a producer and a
 * consumer; each attaches to the segments from the inherited fds, as an
 * unrelated process given the fds would. The producer fills pool buffers with
 * synthetic NV12 frames (frame number, timestamps and a checksum in each)
 * at a fixed rate and enqueues them; the consumer blocks on the queue,
 * verifies every frame and its timestamp order, releases the buffer, and
 * prints what flows once a second. The producer marks end of data when done;
 * the consumer drains and prints a summary. The parent checks both exit
 * statuses and that every buffer went back to the pool. */
#include "bq.h"
#include "futex.h"
#include "pool.h"

#include <errno.h>
#include <getopt.h>
#include <mbq/status.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEMO_POOL_ID 1

struct frame_header {
    uint64_t number;
    uint64_t produced_ns; /* CLOCK_MONOTONIC when enqueued */
    uint32_t width, height;
    uint64_t checksum; /* over the pixel bytes after the header */
};

struct demo_opts {
    unsigned frames, fps, width, height, blocks;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* The hooks that tie the queue's references to the pool. */
static int hook_retain(void *ctx, uint32_t pool_id, uint64_t h, bool by_client)
{
    return pool_id == DEMO_POOL_ID ? pool_retain(ctx, h, by_client) : -EINVAL;
}

static void hook_release(void *ctx, uint32_t pool_id, uint64_t h)
{
    if (pool_id == DEMO_POOL_ID)
        pool_release(ctx, h, false);
}

static uint64_t checksum(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, 8 bytes at a time */
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < n / 8; i++)
        h = (h ^ w[i]) * 1099511628211ull;
    return h;
}

static size_t frame_bytes(const struct demo_opts *o)
{
    return (size_t)o->width * o->height * 3 / 2; /* NV12: Y plane + interleaved UV */
}

static int run_producer(int pool_fd, int q_fd, const struct demo_opts *o)
{
    struct pool pool;
    struct bq q;
    if (pool_attach(pool_fd, &pool) < 0 || bq_attach(q_fd, &q) < 0)
        return 2;
    bq_set_hooks(&q, &(struct bq_hooks){.ctx = &pool, .retain = hook_retain,
                                        .release = hook_release});
    size_t bytes = sizeof(struct frame_header) + frame_bytes(o);
    uint64_t period = 1000000000ull / o->fps, start = mono_ns();
    unsigned waits = 0;
    for (unsigned n = 0; n < o->frames && !stop_requested; n++) {
        uint64_t due = start + n * period;
        struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
                              .tv_nsec = (long)(due % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR &&
               !stop_requested)
            ;
        uint64_t h;
        int r;
        /* The pool is the back-pressure: if every block is in flight, the
         * consumer is behind; wait for one to come back. */
        while ((r = pool_alloc(&pool, bytes, &h)) == MBQ_POOL_ERR_ALLOCATION_FAILED &&
               !stop_requested) {
            waits++;
            sched_yield();
        }
        if (r < 0)
            break;
        uint8_t *data = pool_data(&pool, h);
        struct frame_header *fh = (struct frame_header *)data;
        uint8_t *pix = data + sizeof(*fh);
        /* a moving gradient, so each frame differs */
        for (unsigned y = 0; y < o->height; y++)
            memset(pix + (size_t)y * o->width, (int)((y + n) & 0xff), o->width);
        memset(pix + (size_t)o->width * o->height, 128, frame_bytes(o) - (size_t)o->width * o->height);
        fh->number = n;
        fh->width = o->width;
        fh->height = o->height;
        fh->checksum = checksum(pix, frame_bytes(o));
        struct bq_entry e = {
            .handle = h,
            .pool_id = DEMO_POOL_ID,
            .pts = mbq_time_make((int64_t)n, (int32_t)o->fps),
            .dts = mbq_time_make((int64_t)n, (int32_t)o->fps),
            .duration = mbq_time_make(1, (int32_t)o->fps),
            .size = bytes,
        };
        fh->produced_ns = mono_ns();
        r = bq_enqueue(&q, &e);
        pool_release(&pool, h, true); /* the queue holds its own reference now */
        if (r != 0) {
            fprintf(stderr, "producer: enqueue failed: %d\n", r);
            break;
        }
    }
    bq_mark_end_of_data(&q);
    printf("producer: done, %u frames of %ux%u NV12 (%zu bytes each)%s\n", o->frames, o->width,
           o->height, bytes, waits ? ", waited for free buffers" : "");
    fflush(stdout);
    bq_detach(&q);
    pool_detach(&pool);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_consumer(int pool_fd, int q_fd, const struct demo_opts *o)
{
    struct pool pool;
    struct bq q;
    if (pool_attach(pool_fd, &pool) < 0 || bq_attach(q_fd, &q) < 0)
        return 2;
    bq_set_hooks(&q, &(struct bq_hooks){.ctx = &pool, .retain = hook_retain,
                                        .release = hook_release});
    uint64_t *lat = calloc(o->frames ? o->frames : 1, sizeof(*lat));
    if (!lat)
        return 2;
    uint64_t expected = 0, bad = 0, second_start = mono_ns(), in_second = 0, total = 0;
    mbq_time last_pts = MBQ_TIME_NEGATIVE_INFINITY;
    for (;;) {
        struct bq_entry e;
        int r = bq_dequeue_wait(&q, &e, 2000000000);
        if (r == -ENODATA)
            break;
        if (r == -ETIMEDOUT && stop_requested)
            break;
        if (r != 0) {
            fprintf(stderr, "consumer: dequeue failed: %d\n", r);
            bad++;
            break;
        }
        uint64_t now = mono_ns();
        pool_adopt(&pool, e.handle);
        const uint8_t *data = pool_data(&pool, e.handle);
        const struct frame_header *fh = (const struct frame_header *)data;
        if (!data || fh->number != expected ||
            fh->checksum != checksum(data + sizeof(*fh), frame_bytes(o)) ||
            mbq_time_compare(e.pts, last_pts) <= 0)
            bad++;
        if (data && total < o->frames)
            lat[total] = now - fh->produced_ns;
        last_pts = e.pts;
        expected = (data ? fh->number : expected) + 1;
        pool_release(&pool, e.handle, true);
        total++;
        in_second++;
        if (now - second_start >= 1000000000u) {
            struct pool_stats ps;
            pool_stats(&pool, &ps);
            printf("consumer: frame %6llu  pts %7.3f s  %3llu fps  latency %5.1f us  "
                   "queue depth %lld  pool %u/%u in use  errors %llu\n",
                   (unsigned long long)(expected - 1), mbq_time_get_seconds(e.pts),
                   (unsigned long long)in_second, (double)(now - fh->produced_ns) / 1e3,
                   (long long)bq_count(&q), ps.used, ps.block_count, (unsigned long long)bad);
            fflush(stdout);
            in_second = 0;
            second_start = now;
        }
    }
    size_t n = total < o->frames ? total : o->frames;
    qsort(lat, n, sizeof(*lat), cmp_u64);
    printf("consumer: summary: %llu frames, %llu errors, enqueue->dequeue latency "
           "p50 %.1f us, p99 %.1f us, max %.1f us\n",
           (unsigned long long)total, (unsigned long long)bad,
           n ? lat[n / 2] / 1e3 : 0.0, n ? lat[n * 99 / 100] / 1e3 : 0.0,
           n ? lat[n - 1] / 1e3 : 0.0);
    fflush(stdout);
    free(lat);
    bq_detach(&q);
    pool_detach(&pool);
    return bad || (total != o->frames && !stop_requested) ? 1 : 0;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--frames N] [--fps N] [--width W] [--height H] [--blocks N]\n"
            "Streams synthetic NV12 frames from a producer process to a consumer process\n"
            "through an mbq pool and buffer queue in shared memory.\n",
            argv0);
}

int main(int argc, char **argv)
{
    struct demo_opts o = {.frames = 300, .fps = 60, .width = 1920, .height = 1080, .blocks = 8};
    static const struct option longopts[] = {
        {"frames", required_argument, NULL, 'n'}, {"fps", required_argument, NULL, 'f'},
        {"width", required_argument, NULL, 'w'},  {"height", required_argument, NULL, 'h'},
        {"blocks", required_argument, NULL, 'b'}, {"help", no_argument, NULL, '?'},
        {0},
    };
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        unsigned long v = 0;
        if (optarg) {
            char *end;
            v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 100000) {
                fprintf(stderr, "invalid value: %s (expected 1..100000)\n", optarg);
                return 2;
            }
        }
        switch (c) {
        case 'n': o.frames = (unsigned)v; break;
        case 'f': o.fps = (unsigned)v; break;
        case 'w': o.width = (unsigned)(v + 7) / 8 * 8; break;
        case 'h': o.height = (unsigned)(v + 1) / 2 * 2; break;
        case 'b': o.blocks = (unsigned)v; break;
        default: usage(argv[0]); return 2;
        }
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    size_t bytes = sizeof(struct frame_header) + frame_bytes(&o);
    struct pool pool;
    struct bq q;
    int r = pool_create(&(struct pool_params){.block_size = bytes, .block_count = o.blocks,
                                              .prefault = true},
                        &pool);
    if (r < 0) {
        fprintf(stderr, "pool_create: %d\n", r);
        return 1;
    }
    r = bq_create(&(struct bq_params){.capacity = o.blocks, .order = BQ_ORDER_PTS}, &q);
    if (r < 0) {
        fprintf(stderr, "bq_create: %d\n", r);
        return 1;
    }
    printf("mbq data-plane demo: pool of %u x %zu-byte blocks, buffer queue (sorted by PTS, "
           "capacity %u), %u frames at %u fps\n",
           o.blocks, bytes, o.blocks, o.frames, o.fps);
    fflush(stdout);

    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (kids[i] == 0)
            _exit(i == 0 ? run_producer(pool.seg.fd, q.seg.fd, &o)
                         : run_consumer(pool.seg.fd, q.seg.fd, &o));
    }
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        int st;
        while (waitpid(kids[i], &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed = 1;
    }
    pool_reclaim_dead(&pool);
    struct pool_stats ps;
    pool_stats(&pool, &ps);
    struct bq_stats qs;
    bq_stats(&q, &qs);
    printf("queue: %llu enqueued, %llu dequeued, high-water %llu; pool: %llu allocations, "
           "%u of %u blocks in use at exit\n",
           (unsigned long long)qs.enqueued, (unsigned long long)qs.dequeued,
           (unsigned long long)qs.high_water, (unsigned long long)ps.allocs, ps.used,
           ps.block_count);
    if (ps.used != 0)
        failed = 1;
    printf("%s\n", failed ? "FAILED" : "ok: every frame arrived intact and in order, "
                                       "every buffer returned to the pool");
    bq_detach(&q);
    pool_detach(&pool);
    return failed;
}
