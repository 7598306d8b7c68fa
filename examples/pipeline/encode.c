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

#include <stdlib.h>

#define PROG "encode"

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
    struct consumer cfg = {
        .prog = PROG,
        .client_name = "mbq-encode",
        .queue = PIPELINE_ENCODE_QUEUE,
        .usage = usage,
        .option = "--delay-ms",
        .option_value = &cfg.delay_ms,
        .option_max = 10000,
        .work = encode_work,
        .print_second = print_second,
    };
    return consumer_main(argc, argv, &cfg);
}
