/* mbq-encode: the encoder of the demo pipeline.
 *
 * Opens the buffer queue demo/encode (retrying while mbq-capture has not
 * created it yet) and takes frames with a blocking dequeue. The encoder path
 * must be lossless: capture waits rather than drop (the queue's full policy
 * is "fail"), so every frame is checked — checksum, header, timing, numbers
 * that follow each other with no gap and presentation times that rise — and
 * anything else is an error. "Encoding" is a pass over a quarter of the
 * picture. Once a second it prints the frame rate, the capture -> encode
 * latency over that second and the queue depth; at end of data (-ENODATA)
 * it prints a summary and exits, non-zero if any frame was wrong. */
#include "pipeline.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define PROG "encode"

static volatile sig_atomic_t stop;

static void usage(FILE *f)
{
    fprintf(f, "usage: mbq-encode [--delay-ms N] [--open-timeout SECONDS] [--report FILE]\n"
               "Consumes the frames of the mbq buffer queue demo/encode (made by mbq-capture),\n"
               "checks that none is missing, corrupt or out of order, and prints figures\n"
               "once a second until end of data. --delay-ms makes each frame take N ms more\n"
               "(a slow encoder: capture then waits, it never drops). The daemon is found\n"
               "through $MBQ_SOCKET.\n");
}

/* Stands in for an encoder: a horizontal-gradient pass over every fourth
 * row of the luma plane, the kind of pass a motion search makes. */
static uint64_t encode_work(const struct frame_view *v)
{
    uint64_t activity = 0;
    for (uint32_t y = 0; y < v->h.height; y += 4) {
        const uint8_t *row = v->pixels + (size_t)y * v->h.width;
        for (uint32_t x = 1; x < v->h.width; x++)
            activity += (uint64_t)abs((int)row[x] - (int)row[x - 1]);
    }
    return activity;
}

static void print_second(struct consumer_stats *s, mbq_buffer_queue *q, uint64_t now)
{
    char p50[32], max[32];
    fmt_ns(p50, sizeof(p50), lat_hist_quantile(&s->win_latency, 0.5));
    fmt_ns(max, sizeof(max), s->win_latency.max_ns);
    double fps = consumer_stats_next_window(s, now);
    printf(PROG ":   frame %6lld  %5.1f fps, latency p50 %s max %s, queue %lld/%d, errors %llu\n",
           (long long)s->next_number - 1, fps, p50, max,
           (long long)mbq_buffer_queue_get_buffer_count(q), PIPELINE_ENCODE_CAPACITY,
           (unsigned long long)s->errors);
}

int main(int argc, char **argv)
{
    const char *report = NULL;
    uint32_t open_timeout = 10, delay_ms = 0;
    static const struct option longopts[] = {
        {"delay-ms", required_argument, NULL, 'd'},
        {"open-timeout", required_argument, NULL, 't'},
        {"report", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    for (int ch; (ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        bool ok = true;
        switch (ch) {
        case 'd': ok = parse_u32("--delay-ms", optarg, 0, 10000, &delay_ms); break;
        case 't': ok = parse_u32("--open-timeout", optarg, 0, 3600, &open_timeout); break;
        case 'r': report = optarg; break;
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
    pipeline_stdio_init();
    install_stop_handler(&stop);

    mbq_client *c;
    if (pipeline_connect("mbq-encode", &c) < 0)
        return 1;
    mbq_buffer_queue *q = NULL;
    if (pipeline_open_queue(PROG, c, PIPELINE_ENCODE_QUEUE, open_timeout, &stop, &q) < 0) {
        mbq_disconnect(c);
        return 1;
    }

    struct consumer_stats *s = malloc(sizeof(*s));
    if (!s) {
        fprintf(stderr, PROG ": out of memory\n");
        mbq_buffer_queue_close(q);
        mbq_disconnect(c);
        return 1;
    }
    consumer_stats_init(s);
    volatile uint64_t sink = 0; /* keeps the simulated work from being optimised away */
    bool end_of_data = false, fatal = false;
    while (!stop) {
        uint64_t now = mono_ns(), next_print = s->win_start_ns + 1000000000u;
        int64_t timeout = now < next_print ? (int64_t)(next_print - now) : 0;
        mbq_buffer b;
        int r = mbq_buffer_queue_dequeue_wait(q, timeout, &b);
        now = mono_ns();
        if (r == -ENODATA) {
            end_of_data = true;
            break;
        }
        if (r == 0) {
            struct frame_view v;
            const char *problem = frame_check(b, &v);
            if (problem) {
                consumer_stats_bad_frame(s, PROG, &v, problem);
            } else {
                consumer_stats_frame(s, PROG, &v, now, false);
                sink += encode_work(&v);
            }
            if (delay_ms)
                sleep_until_ns(mono_ns() + (uint64_t)delay_ms * 1000000u, &stop);
            if ((r = mbq_buffer_release(b)) < 0) {
                fprintf(stderr, PROG ": ERROR: cannot release a frame: %s\n",
                        mbq_status_string(r));
                s->errors++;
            }
        } else if (r != -ETIMEDOUT && r != -EINTR) {
            fprintf(stderr, PROG ": ERROR: dequeue failed: %s\n", mbq_status_string(r));
            s->errors++;
            fatal = true;
            break;
        }
        if (now - s->win_start_ns >= 1000000000u)
            print_second(s, q, now);
    }
    (void)sink;

    char lat[160];
    consumer_stats_latency_line(s, lat, sizeof(lat));
    printf(PROG ": done: %llu frame%s, %llu error%s%s; %s\n", (unsigned long long)s->frames,
           plural(s->frames), (unsigned long long)s->errors, plural(s->errors),
           end_of_data ? "" : fatal ? " (stopped on an error)" : " (stopped by a signal)", lat);
    int fail = s->errors > 0 || fatal;
    if (report) {
        FILE *f = report_open(report);
        consumer_stats_report(s, f);
        report_u64(f, "end_of_data", end_of_data);
        if (!report_close(f, report))
            fail = 1;
    }
    free(s);
    mbq_buffer_queue_close(q);
    mbq_disconnect(c);
    return fail;
}
