/* mbq-capture: the camera of the demo pipeline.
 *
 * Creates (or opens) the pool demo/frames and two buffer queues: demo/encode
 * (capacity 8, full policy "fail": the encoder path never loses a frame) and
 * demo/preview (capacity 1, "drop oldest": the preview always takes the
 * newest frame). At a fixed rate, paced on absolute CLOCK_MONOTONIC deadlines, it
 * allocates a block, draws a synthetic NV12 frame with a header (number,
 * capture time, checksum), sets its timing (pts = dts = n/fps, duration
 * 1/fps), enqueues the same buffer into both queues (zero copy: the encoder's
 * queue takes a reference, the preview's takes over capture's own with
 * mbq_buffer_queue_enqueue_and_release).
 *
 * Back-pressure: when demo/encode is full, capture does not spin. A trigger
 * "buffer count becomes less than <capacity>" installed at start makes an
 * eventfd readable whenever the encoder frees a slot; capture polls it and
 * retries. At the end (--frames, SIGINT or SIGTERM) it marks end of data on
 * both queues, so that the consumers drain them and exit. */
#include "pipeline.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "capture"
#define STALL_LIMIT_NS 10000000000ull /* give up if the encoder takes nothing for 10 s */

static volatile sig_atomic_t stop;

struct capture_opts {
    uint32_t frames, fps, width, height, blocks;
    int64_t corrupt_frame; /* -1: none */
    mbq_buffer_queue_order order;
    const char *report;
};

struct capture_counts {
    uint64_t frames, waited, late, pool_waits, errors, elapsed_ns;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mbq-capture [--frames N] [--fps N] [--width W] [--height H] [--blocks N]\n"
            "                   [--order fifo|pts] [--report FILE] [--corrupt-frame N]\n"
            "Produces synthetic 1920x1080 NV12 frames into the mbq buffer queues\n"
            "demo/encode (never drops) and demo/preview (drops the oldest), from the\n"
            "pool demo/frames, creating them if needed. Runs until --frames N frames\n"
            "(default: until SIGINT/SIGTERM), then marks end of data on both queues.\n"
            "The daemon is found through $MBQ_SOCKET or the default socket.\n"
            "--corrupt-frame N (for tests) damages frame N after its checksum.\n");
}

static int create_objects(mbq_client *c, const struct capture_opts *o, mbq_pool **pool,
                          mbq_buffer_queue **enc, mbq_buffer_queue **prev)
{
    uint64_t bytes = FRAME_HEADER_SIZE + frame_pixel_bytes(o->width, o->height);
    mbq_pool_options po = {.size = sizeof(po), .block_size = bytes, .block_count = o->blocks};
    int r = mbq_pool_create(c, PIPELINE_POOL, &po, pool);
    if (r < 0) {
        fprintf(stderr, PROG ": cannot create pool %s: %s\n", PIPELINE_POOL, mbq_status_string(r));
        return r;
    }
    mbq_buffer_queue_options eo = {.size = sizeof(eo), .capacity = PIPELINE_ENCODE_CAPACITY,
                                   .order = o->order, .full_policy = MBQ_FULL_FAIL};
    r = mbq_buffer_queue_create(c, PIPELINE_ENCODE_QUEUE, &eo, enc);
    if (r < 0) {
        fprintf(stderr, PROG ": cannot create queue %s: %s\n", PIPELINE_ENCODE_QUEUE,
                mbq_status_string(r));
        return r;
    }
    mbq_buffer_queue_options pv = {.size = sizeof(pv), .capacity = PIPELINE_PREVIEW_CAPACITY,
                                   .order = MBQ_ORDER_FIFO, .full_policy = MBQ_FULL_DROP_OLDEST};
    r = mbq_buffer_queue_create(c, PIPELINE_PREVIEW_QUEUE, &pv, prev);
    if (r < 0) {
        fprintf(stderr, PROG ": cannot create queue %s: %s\n", PIPELINE_PREVIEW_QUEUE,
                mbq_status_string(r));
        return r;
    }
    /* Queues left at end of data by an earlier run (on a shared daemon)
     * would refuse every enqueue: start them afresh. */
    mbq_buffer_queue *qs[2] = {*enc, *prev};
    for (int i = 0; i < 2; i++)
        if (mbq_buffer_queue_contains_end_of_data(qs[i])) {
            printf(PROG ": %s holds end of data from an earlier run; resetting it\n",
                   i == 0 ? PIPELINE_ENCODE_QUEUE : PIPELINE_PREVIEW_QUEUE);
            mbq_buffer_queue_reset(qs[i]);
        }
    return 0;
}

/* Allocates a block, waiting (1 ms at a time) while every block is in use:
 * with enough blocks this does not happen, and it is counted if it does. */
static int allocate_frame(mbq_pool *pool, size_t bytes, struct capture_counts *k, mbq_buffer *out)
{
    uint64_t start = mono_ns();
    bool waited = false;
    for (;;) {
        int r = mbq_pool_allocate(pool, bytes, out);
        if (r != MBQ_POOL_ERR_ALLOCATION_FAILED)
            return r;
        if (!waited)
            k->pool_waits++;
        waited = true;
        if (stop || mono_ns() - start > STALL_LIMIT_NS)
            return r;
        sleep_until_ns(mono_ns() + 1000000u, &stop);
    }
}

/* Enqueues into the encoder queue, waiting on the trigger's eventfd while
 * the queue is full. 0, 1 if stopped while waiting, or a status. */
static int enqueue_encode(mbq_buffer_queue *q, int trigger_fd, mbq_buffer b,
                          struct capture_counts *k)
{
    uint64_t start = 0;
    for (;;) {
        int r = mbq_buffer_queue_enqueue(q, b);
        if (r != MBQ_BQ_ERR_QUEUE_IS_FULL)
            return r;
        if (start == 0) {
            start = mono_ns();
            k->waited++;
        }
        if (stop)
            return 1;
        if (mono_ns() - start > STALL_LIMIT_NS) {
            fprintf(stderr, PROG ": the encoder has taken no frame for %llu s; giving up\n",
                    STALL_LIMIT_NS / 1000000000ull);
            return r;
        }
        /* The trigger fires on every full -> not full edge after our failed
         * enqueue, so this cannot miss a wake-up; a stale event from an
         * earlier edge costs one extra retry. The timeout only bounds how
         * long a stop request waits. */
        struct pollfd p = {.fd = trigger_fd, .events = POLLIN};
        int n = poll(&p, 1, 200);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
            return -errno;
        }
        if (n > 0) {
            uint64_t fired;
            if (read(trigger_fd, &fired, sizeof(fired)) < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, PROG ": reading the trigger's eventfd: %s\n", strerror(errno));
                return -errno;
            }
        }
    }
}

static void print_second(mbq_client *c, mbq_buffer_queue *enc, mbq_buffer_queue *prev,
                         uint64_t last_number, double fps, const struct capture_counts *k)
{
    char pool_part[64] = "";
    mbq_object_info info = {.size = sizeof(info)};
    if (mbq_stat(c, PIPELINE_POOL, &info) == 0)
        snprintf(pool_part, sizeof(pool_part), ", pool %u/%u in use", info.blocks_used,
                 info.block_count);
    printf(PROG ":  frame %6llu  %5.1f fps, queues encode %lld/%d preview %lld/%d%s, "
           "waited for the encoder %llu\n",
           (unsigned long long)last_number, fps, (long long)mbq_buffer_queue_get_buffer_count(enc),
           PIPELINE_ENCODE_CAPACITY, (long long)mbq_buffer_queue_get_buffer_count(prev),
           PIPELINE_PREVIEW_CAPACITY, pool_part, (unsigned long long)k->waited);
}

static int run(mbq_client *c, const struct capture_opts *o, struct capture_counts *k)
{
    mbq_pool *pool = NULL;
    mbq_buffer_queue *enc = NULL, *prev = NULL;
    mbq_buffer_queue_stats es = {.size = sizeof(es)};
    mbq_trigger_token token;
    int fail = 1, r;
    if (create_objects(c, o, &pool, &enc, &prev) < 0)
        goto out;

    r = mbq_buffer_queue_get_stats(enc, &es);
    if (r < 0) {
        fprintf(stderr, PROG ": cannot read %s's counters: %s\n", PIPELINE_ENCODE_QUEUE,
                mbq_status_string(r));
        goto out;
    }
    r = mbq_buffer_queue_install_trigger_with_integer_threshold(
        enc, MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_LESS_THAN, (int64_t)es.capacity, &token);
    if (r < 0) {
        fprintf(stderr, PROG ": cannot install a trigger on %s: %s\n", PIPELINE_ENCODE_QUEUE,
                mbq_status_string(r));
        goto out;
    }
    int trigger_fd = mbq_buffer_queue_trigger_fd(enc, token);
    if (trigger_fd < 0) {
        fprintf(stderr, PROG ": the trigger on %s has no eventfd\n", PIPELINE_ENCODE_QUEUE);
        goto out;
    }

    size_t bytes = FRAME_HEADER_SIZE + frame_pixel_bytes(o->width, o->height);
    printf(PROG ": %ux%u NV12 at %u fps, %u blocks of %.2f MiB; when %s is full, capture "
           "waits for its trigger \"count < %llu\"\n",
           o->width, o->height, o->fps, o->blocks, (double)bytes / (1024 * 1024),
           PIPELINE_ENCODE_QUEUE, (unsigned long long)es.capacity);

    const uint64_t start = mono_ns();
    uint64_t sec_start = start, last_capture_ns = start;
    struct rate rate = {0};
    fail = 0;
    for (uint64_t n = 0; (o->frames == 0 || n < o->frames) && !stop; n++) {
        uint64_t due = start + n * 1000000000ull / o->fps;
        if (!sleep_until_ns(due, &stop))
            break;
        uint64_t now = mono_ns();
        if (now - due > 1000000000ull / o->fps)
            k->late++;

        mbq_buffer b;
        r = allocate_frame(pool, bytes, k, &b);
        if (r < 0) {
            if (stop)
                break;
            fprintf(stderr, PROG ": cannot allocate frame %llu: %s\n", (unsigned long long)n,
                    mbq_status_string(r));
            fail = 1;
            break;
        }
        size_t capacity = 0;
        uint8_t *data = mbq_buffer_get_data(b, &capacity);
        if (!data || capacity < bytes) {
            fprintf(stderr, PROG ": allocated block is %s\n", data ? "too small" : "unmapped");
            mbq_buffer_release(b);
            fail = 1;
            break;
        }
        uint8_t *pixels = data + FRAME_HEADER_SIZE;
        frame_draw(pixels, o->width, o->height, n);
        struct frame_header h = {
            .magic = FRAME_MAGIC,
            .width = o->width,
            .height = o->height,
            .number = n,
            .capture_ns = now,
            .pixel_bytes = bytes - FRAME_HEADER_SIZE,
            .checksum = frame_checksum(pixels, bytes - FRAME_HEADER_SIZE),
        };
        if ((int64_t)n == o->corrupt_frame)
            pixels[(bytes - FRAME_HEADER_SIZE) / 2] ^= 0x5a;
        mbq_time pts = mbq_time_make((int64_t)n, (int32_t)o->fps);
        if ((r = mbq_buffer_set_timing(b, pts, pts, mbq_time_make(1, (int32_t)o->fps))) < 0 ||
            (r = mbq_buffer_set_data_size(b, bytes)) < 0) {
            fprintf(stderr, PROG ": cannot set the buffer's timing or size: %s\n",
                    mbq_status_string(r));
            mbq_buffer_release(b);
            fail = 1;
            break;
        }
        h.enqueue_ns = mono_ns();
        memcpy(data, &h, sizeof(h));

        /* The encoder first: if it never takes the frame (stop while
         * waiting), the preview does not get it either. */
        r = enqueue_encode(enc, trigger_fd, b, k);
        if (r == 0) {
            k->frames++; /* captured = handed to the encoder */
            last_capture_ns = now;
            rate_frame(&rate, now);
            /* The preview queue takes over our reference (the encoder's
             * queue took its own): no release afterwards. */
            if ((r = mbq_buffer_queue_enqueue_and_release(prev, b)) != 0)
                fprintf(stderr, PROG ": cannot enqueue frame %llu into %s: %s\n",
                        (unsigned long long)n, PIPELINE_PREVIEW_QUEUE, mbq_status_string(r));
            else
                b = (mbq_buffer){0};
        } else if (r < 0) {
            fprintf(stderr, PROG ": cannot enqueue frame %llu into %s: %s\n",
                    (unsigned long long)n, PIPELINE_ENCODE_QUEUE, mbq_status_string(r));
        }
        int rr = b.pool_ ? mbq_buffer_release(b) : 0; /* unless a queue took it over */
        if (rr < 0) {
            fprintf(stderr, PROG ": cannot release frame %llu: %s\n", (unsigned long long)n,
                    mbq_status_string(rr));
            r = rr;
        }
        if (r == 1)
            break; /* stopped while the encoder was full */
        if (r != 0) {
            fail = 1;
            break;
        }

        now = mono_ns();
        if (now - sec_start >= 1000000000u) {
            print_second(c, enc, prev, n, rate_next_window(&rate), k);
            sec_start = now;
        }
    }
    /* From the first frame's start to the last one's end. */
    k->elapsed_ns = k->frames ? last_capture_ns - start + 1000000000ull / o->fps : 0;
    double secs = (double)k->elapsed_ns / 1e9;
    printf(PROG ": done: %llu frame%s in %.2f s (%.1f fps); waited for the encoder %llu time%s, "
           "%llu frame%s late%s\n",
           (unsigned long long)k->frames, plural(k->frames), secs,
           secs > 0 ? (double)k->frames / secs : 0.0, (unsigned long long)k->waited,
           plural(k->waited), (unsigned long long)k->late, plural(k->late),
           stop ? " (stopped by a signal)" : "");
    if (k->pool_waits)
        printf(PROG ": every pool block was in use %llu times\n",
               (unsigned long long)k->pool_waits);

out:
    /* Whatever happened, let the consumers drain and finish. */
    if (enc && (r = mbq_buffer_queue_mark_end_of_data(enc)) < 0) {
        fprintf(stderr, PROG ": cannot mark end of data on %s: %s\n", PIPELINE_ENCODE_QUEUE,
                mbq_status_string(r));
        fail = 1;
    }
    if (prev && (r = mbq_buffer_queue_mark_end_of_data(prev)) < 0) {
        fprintf(stderr, PROG ": cannot mark end of data on %s: %s\n", PIPELINE_PREVIEW_QUEUE,
                mbq_status_string(r));
        fail = 1;
    }
    mbq_buffer_queue_close(prev);
    mbq_buffer_queue_close(enc);
    mbq_pool_close(pool);
    if (fail)
        k->errors++;
    return fail;
}

int main(int argc, char **argv)
{
    struct capture_opts o = {.fps = 60, .width = 1920, .height = 1080, .blocks = 16,
                             .order = MBQ_ORDER_FIFO, .corrupt_frame = -1};
    static const struct option longopts[] = {
        {"frames", required_argument, NULL, 'n'}, {"fps", required_argument, NULL, 'f'},
        {"width", required_argument, NULL, 'W'},  {"height", required_argument, NULL, 'H'},
        {"blocks", required_argument, NULL, 'b'}, {"order", required_argument, NULL, 'o'},
        {"report", required_argument, NULL, 'r'}, {"corrupt-frame", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},         {0},
    };
    uint32_t corrupt;
    for (int ch; (ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        bool ok = true;
        switch (ch) {
        case 'n': ok = parse_u32("--frames", optarg, 0, UINT32_MAX, &o.frames); break;
        case 'f': ok = parse_u32("--fps", optarg, 1, 1000, &o.fps); break;
        case 'W': ok = parse_u32("--width", optarg, 16, FRAME_MAX_DIMENSION, &o.width); break;
        case 'H': ok = parse_u32("--height", optarg, 16, FRAME_MAX_DIMENSION, &o.height); break;
        case 'b': ok = parse_u32("--blocks", optarg, 1, 1024, &o.blocks); break;
        case 'o':
            if (strcmp(optarg, "fifo") == 0)
                o.order = MBQ_ORDER_FIFO;
            else if (strcmp(optarg, "pts") == 0)
                o.order = MBQ_ORDER_PRESENTATION_TIME;
            else {
                fprintf(stderr, "--order: expected fifo or pts, got '%s'\n", optarg);
                ok = false;
            }
            break;
        case 'r': o.report = optarg; break;
        case 'x':
            ok = parse_u32("--corrupt-frame", optarg, 0, UINT32_MAX, &corrupt);
            o.corrupt_frame = corrupt;
            break;
        case 'h': usage(stdout); return 0;
        default: ok = false;
        }
        if (!ok) {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    o.height &= ~1u; /* NV12 needs an even height */
    /* Frames can sit in both queues and in each consumer's hands at once. */
    uint32_t need = PIPELINE_ENCODE_CAPACITY + PIPELINE_PREVIEW_CAPACITY + 3;
    if (o.blocks < need)
        fprintf(stderr, PROG ": warning: %u blocks may run out; %u never do\n", o.blocks, need);

    pipeline_stdio_init();
    install_stop_handler(&stop);
    mbq_client *c;
    if (pipeline_connect("mbq-capture", &c) < 0)
        return 1;
    struct capture_counts k = {0};
    int fail = run(c, &o, &k);
    mbq_disconnect(c);

    if (o.report) {
        FILE *f = report_open(o.report);
        report_u64(f, "frames", k.frames);
        report_u64(f, "waited", k.waited);
        report_u64(f, "late", k.late);
        report_u64(f, "pool_waits", k.pool_waits);
        report_u64(f, "errors", k.errors);
        report_u64(f, "elapsed_ns", k.elapsed_ns);
        if (!report_close(f, o.report))
            fail = 1;
    }
    return fail;
}
