/* mbq data-plane demo: a producer process and a consumer process share a
 * memory pool and a buffer queue through mbqd, using <mbq/mbq.h> only.
 *
 * The parent connects to mbqd (--socket, else $MBQ_SOCKET or the default
 * path), creates a pool and a buffer queue under names of its own, then
 * forks a producer and a consumer; each connects on its own and opens both
 * by name, as an unrelated process would. The producer fills pool buffers
 * with synthetic NV12 frames (frame number, timestamps and a checksum in
 * each) at a fixed rate and enqueues them; the consumer blocks on the queue,
 * verifies every frame and its timestamp order, releases the buffer, and
 * prints what flows once a second. The producer marks end of data when
 * done; the consumer drains and prints a summary. The parent checks both
 * exit statuses and that every buffer went back to the pool, then unlinks
 * the names. Start a daemon first, e.g. `mbqd --socket /tmp/mbq.sock &`. */
#include <mbq/mbq.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct frame_header {
    uint64_t number;
    uint64_t produced_ns; /* CLOCK_MONOTONIC when enqueued */
    uint32_t width, height;
    uint64_t checksum; /* over the pixel bytes after the header */
};

struct demo_opts {
    unsigned frames, fps, width, height, blocks;
    const char *socket; /* NULL: the default */
    char pool_name[64], queue_name[64];
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* What a child process holds: its own connection and handles. */
struct side {
    mbq_client *client;
    mbq_pool *pool;
    mbq_buffer_queue *queue;
};

static int side_open(struct side *sd, const struct demo_opts *o, const char *who)
{
    *sd = (struct side){0};
    int r = mbq_connect(o->socket, who, &sd->client);
    if (r == 0)
        r = mbq_pool_open(sd->client, o->pool_name, &sd->pool);
    if (r == 0)
        r = mbq_buffer_queue_open(sd->client, o->queue_name, &sd->queue);
    if (r != 0)
        fprintf(stderr, "%s: %s\n", who, mbq_status_string(r));
    return r;
}

static void side_close(struct side *sd)
{
    mbq_buffer_queue_close(sd->queue);
    mbq_pool_close(sd->pool);
    mbq_disconnect(sd->client);
}

static void fill_frame(uint8_t *data, unsigned n, const struct demo_opts *o)
{
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
}

static int run_producer(const struct demo_opts *o)
{
    struct side sd;
    if (side_open(&sd, o, "demo-producer") != 0)
        return 2;
    size_t bytes = sizeof(struct frame_header) + frame_bytes(o);
    uint64_t period = 1000000000ull / o->fps, start = mono_ns();
    int r = 0;
    for (unsigned n = 0; n < o->frames && !stop_requested; n++) {
        uint64_t due = start + n * period;
        struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
                              .tv_nsec = (long)(due % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR &&
               !stop_requested)
            ;
        /* The pool is the back-pressure: if every block is in flight, the
         * consumer is behind; wait (a second at most) for one to come back. */
        mbq_buffer b;
        r = mbq_pool_allocate_wait(sd.pool, bytes, 1000000000, &b);
        if (r != 0)
            break;
        uint8_t *data = mbq_buffer_get_data(b, NULL);
        fill_frame(data, n, o);
        mbq_time t = mbq_time_make((int64_t)n, (int32_t)o->fps);
        mbq_buffer_set_timing(b, t, t, mbq_time_make(1, (int32_t)o->fps));
        mbq_buffer_set_data_size(b, bytes);
        ((struct frame_header *)data)->produced_ns = mono_ns();
        r = mbq_buffer_queue_enqueue_and_release(sd.queue, b);
        if (r != 0) {
            mbq_buffer_release(b);
            break;
        }
    }
    if (r != 0)
        fprintf(stderr, "producer: %s\n", mbq_status_string(r));
    mbq_buffer_queue_mark_end_of_data(sd.queue);
    printf("producer: done, %u frames of %ux%u NV12 (%zu bytes each)\n", o->frames, o->width,
           o->height, bytes);
    fflush(stdout);
    side_close(&sd);
    return r != 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Whether the frame in b is the expected one, intact and after last_pts. */
static bool frame_ok(mbq_buffer b, uint64_t expected, mbq_time last_pts, const struct demo_opts *o,
                     uint64_t *produced_ns, mbq_time *pts)
{
    const uint8_t *data = mbq_buffer_get_data(b, NULL);
    mbq_time dts, dur;
    if (!data || mbq_buffer_get_timing(b, &dts, pts, &dur) != 0)
        return false;
    const struct frame_header *fh = (const struct frame_header *)data;
    *produced_ns = fh->produced_ns;
    return fh->number == expected && fh->checksum == checksum(data + sizeof(*fh), frame_bytes(o)) &&
           mbq_time_compare(*pts, last_pts) > 0;
}

static int run_consumer(const struct demo_opts *o)
{
    struct side sd;
    if (side_open(&sd, o, "demo-consumer") != 0)
        return 2;
    uint64_t *lat = calloc(o->frames ? o->frames : 1, sizeof(*lat));
    if (!lat)
        return 2;
    uint64_t bad = 0, second_start = mono_ns(), in_second = 0, total = 0;
    mbq_time last_pts = MBQ_TIME_NEGATIVE_INFINITY;
    for (;;) {
        mbq_buffer b;
        int r = mbq_buffer_queue_dequeue_wait(sd.queue, 2000000000, &b);
        if (r == -ENODATA || (r == -ETIMEDOUT && stop_requested))
            break;
        if (r != 0) {
            fprintf(stderr, "consumer: dequeue failed: %s\n", mbq_status_string(r));
            bad++;
            break;
        }
        uint64_t now = mono_ns(), produced = now;
        mbq_time pts = MBQ_TIME_INVALID;
        if (!frame_ok(b, total, last_pts, o, &produced, &pts))
            bad++;
        if (total < o->frames)
            lat[total] = now - produced;
        last_pts = pts;
        mbq_buffer_release(b);
        total++;
        in_second++;
        if (now - second_start >= 1000000000u) {
            printf("consumer: frame %6llu  pts %7.3f s  %3llu fps  latency %5.1f us  "
                   "queue depth %lld  errors %llu\n",
                   (unsigned long long)(total - 1), mbq_time_get_seconds(pts),
                   (unsigned long long)in_second, (double)(now - produced) / 1e3,
                   (long long)mbq_buffer_queue_get_buffer_count(sd.queue), (unsigned long long)bad);
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
    side_close(&sd);
    return bad || (total != o->frames && !stop_requested) ? 1 : 0;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--socket PATH] [--frames N] [--fps N] [--width W] [--height H] "
            "[--blocks N]\n"
            "Streams synthetic NV12 frames from a producer process to a consumer process\n"
            "through an mbq pool and buffer queue in shared memory (mbqd must be running).\n",
            argv0);
}

/* Creates the pool and the queue the children open by name. */
static int create_objects(mbq_client *c, const struct demo_opts *o, mbq_pool **pool,
                          mbq_buffer_queue **queue)
{
    size_t bytes = sizeof(struct frame_header) + frame_bytes(o);
    mbq_pool_options po = {.size = sizeof po, .block_size = bytes, .block_count = o->blocks,
                           .exclusive = true};
    int r = mbq_pool_create(c, o->pool_name, &po, pool);
    if (r != 0) {
        fprintf(stderr, "pool %s: %s\n", o->pool_name, mbq_status_string(r));
        return r;
    }
    mbq_buffer_queue_options qo = {.size = sizeof qo, .capacity = o->blocks,
                                   .order = MBQ_ORDER_PRESENTATION_TIME, .exclusive = true};
    r = mbq_buffer_queue_create(c, o->queue_name, &qo, queue);
    if (r != 0)
        fprintf(stderr, "queue %s: %s\n", o->queue_name, mbq_status_string(r));
    return r;
}

/* Runs the producer and the consumer; 0 if both succeeded. */
static int run_children(const struct demo_opts *o)
{
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (kids[i] == 0)
            _exit(i == 0 ? run_producer(o) : run_consumer(o));
    }
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        int st;
        while (waitpid(kids[i], &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed = 1;
    }
    return failed;
}

int main(int argc, char **argv)
{
    struct demo_opts o = {.frames = 300, .fps = 60, .width = 1920, .height = 1080, .blocks = 8};
    static const struct option longopts[] = {
        {"frames", required_argument, NULL, 'n'}, {"fps", required_argument, NULL, 'f'},
        {"width", required_argument, NULL, 'w'},  {"height", required_argument, NULL, 'h'},
        {"blocks", required_argument, NULL, 'b'}, {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, '?'},
        {0},
    };
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        unsigned long v = 0;
        if (c == 's') {
            o.socket = optarg;
            continue;
        }
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
    snprintf(o.pool_name, sizeof o.pool_name, "demo/%d/pool", (int)getpid());
    snprintf(o.queue_name, sizeof o.queue_name, "demo/%d/frames", (int)getpid());

    mbq_client *c = NULL;
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    int r = mbq_connect(o.socket, "demo", &c);
    if (r != 0) {
        fprintf(stderr, "cannot connect to mbqd: %s (start it first, or give --socket)\n",
                mbq_status_string(r));
        return 1;
    }
    int failed = create_objects(c, &o, &pool, &q) != 0;
    if (!failed) {
        printf("mbq data-plane demo: pool of %u x %zu-byte blocks, buffer queue (sorted by PTS, "
               "capacity %u), %u frames at %u fps\n",
               o.blocks, sizeof(struct frame_header) + frame_bytes(&o), o.blocks, o.frames, o.fps);
        fflush(stdout);
        failed = run_children(&o);
    }
    mbq_buffer_queue_stats qs = {.size = sizeof qs};
    mbq_object_info pi = {.size = sizeof pi};
    if (!failed && mbq_buffer_queue_get_stats(q, &qs) == 0 && mbq_stat(c, o.pool_name, &pi) == 0) {
        printf("queue: %llu enqueued, %llu dequeued, high-water %llu; pool: %u of %u blocks in "
               "use at exit\n",
               (unsigned long long)qs.enqueued, (unsigned long long)qs.dequeued,
               (unsigned long long)qs.high_water, pi.blocks_used, pi.block_count);
        failed = pi.blocks_used != 0;
    }
    printf("%s\n", failed ? "FAILED" : "ok: every frame arrived intact and in order, "
                                       "every buffer returned to the pool");
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_unlink(c, o.queue_name);
    mbq_unlink(c, o.pool_name);
    mbq_disconnect(c);
    return failed;
}
