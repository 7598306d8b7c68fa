/* mbq-preview: the viewfinder of the demo pipeline.
 *
 * Opens the buffer queue demo/preview (retrying while mbq-capture has not
 * created it yet) and shows one frame per display refresh (--fps, default
 * 30, slower than the camera's 60). The queue holds one frame and drops it
 * when a newer one comes, so the preview always takes the newest frame and
 * never slows the camera down: gaps in the frame numbers are drops, counted, not
 * errors. A corrupt frame, a frame number going back or a presentation time
 * that does not rise is an error. "Display" is a pass over a 1/8-scaled
 * picture. Once a second it prints the frame rate, latency and drops; at end
 * of data (-ENODATA) a summary. */
#include "pipeline.h"


#define PROG "preview"

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
    struct consumer cfg = {
        .prog = PROG,
        .client_name = "mbq-preview",
        .queue = PIPELINE_PREVIEW_QUEUE,
        .usage = usage,
        .option = "--fps",
        .option_value = &cfg.fps,
        .option_max = 1000,
        .gaps_are_drops = true,
        .fps = 30,
        .work = display_work,
        .print_second = print_second,
    };
    return consumer_main(argc, argv, &cfg);
}
