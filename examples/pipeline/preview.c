/* mbq-preview: the viewfinder of the demo pipeline.
 *
 * Opens the buffer queue demo/preview (retrying while mbq-capture has not
 * created it yet) and shows one frame per display refresh (--fps, default
 * 30, slower than the camera's 60). The queue holds 4 frames and drops the
 * oldest when full, so the preview always works on recent frames and never
 * slows the camera down: gaps in the frame numbers are drops, counted, not
 * errors. A corrupt frame, a frame number going back or a presentation time
 * that does not rise is an error. "Display" is a pass over a 1/8-scaled
 * picture. Once a second it prints the frame rate, latency and drops; at end
 * of data (-ENODATA) a summary. */
#include "pipeline.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define PROG "preview"

static volatile sig_atomic_t stop;

static void usage(FILE *f)
{
    fprintf(f, "usage: mbq-preview [--fps N] [--open-timeout SECONDS] [--report FILE]\n"
               "Shows (checks) the newest frames of the mbq buffer queue demo/preview, made\n"
               "by mbq-capture, at N frames a second (default 30; 0: as fast as they come),\n"
               "and prints figures once a second until end of data. The daemon is found\n"
               "through $MBQ_SOCKET.\n");
}

/* Stands in for scaling to a preview window: every 8th pixel of every 8th row. */
static uint64_t display_work(const struct frame_view *v)
{
    uint64_t sum = 0;
    for (uint32_t y = 0; y < v->h.height; y += 8) {
        const uint8_t *row = v->pixels + (size_t)y * v->h.width;
        for (uint32_t x = 0; x < v->h.width; x += 8)
            sum += row[x];
    }
    return sum;
}

static void print_second(struct consumer_stats *s, mbq_buffer_queue *q, uint64_t now)
{
    char p50[32], max[32], queue_drops[48] = "";
    fmt_ns(p50, sizeof(p50), lat_hist_quantile(&s->win_latency, 0.5));
    fmt_ns(max, sizeof(max), s->win_latency.max_ns);
    uint64_t dropped = s->win_dropped;
    mbq_buffer_queue_stats qs = {.size = sizeof(qs)};
    if (mbq_buffer_queue_get_stats(q, &qs) == 0)
        snprintf(queue_drops, sizeof(queue_drops), " (queue total %llu)",
                 (unsigned long long)qs.dropped);
    double fps = consumer_stats_next_window(s, now);
    printf(PROG ":  frame %6lld  %5.1f fps, latency p50 %s max %s, dropped %llu%s, errors %llu\n",
           (long long)s->next_number - 1, fps, p50, max, (unsigned long long)dropped, queue_drops,
           (unsigned long long)s->errors);
}

int main(int argc, char **argv)
{
    const char *report = NULL;
    uint32_t open_timeout = 10, fps = 30;
    static const struct option longopts[] = {
        {"fps", required_argument, NULL, 'f'},
        {"open-timeout", required_argument, NULL, 't'},
        {"report", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    for (int ch; (ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        bool ok = true;
        switch (ch) {
        case 'f': ok = parse_u32("--fps", optarg, 0, 1000, &fps); break;
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
    if (pipeline_connect("mbq-preview", &c) < 0)
        return 1;
    mbq_buffer_queue *q = NULL;
    if (pipeline_open_queue(PROG, c, PIPELINE_PREVIEW_QUEUE, open_timeout, &stop, &q) < 0) {
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
    volatile uint64_t sink = 0;
    const uint64_t period = fps ? 1000000000ull / fps : 0;
    uint64_t next_refresh = mono_ns();
    bool end_of_data = false, fatal = false;
    while (!stop) {
        /* Wait for the display's next refresh, without catching up on
         * missed ones: a display shows what is there now. */
        if (period) {
            if (!sleep_until_ns(next_refresh, &stop))
                break;
            uint64_t now = mono_ns();
            next_refresh += period;
            if (next_refresh < now)
                next_refresh = now + period;
        }
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
                consumer_stats_frame(s, PROG, &v, now, true);
                sink += display_work(&v);
            }
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
    printf(PROG ": done: %llu frame%s shown, %llu dropped, %llu error%s%s; %s\n",
           (unsigned long long)s->frames, plural(s->frames), (unsigned long long)s->dropped,
           (unsigned long long)s->errors, plural(s->errors),
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
