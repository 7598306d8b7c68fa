/* The demo pipeline's shared helpers (see pipeline.h): frame drawing and
 * checking, latency histograms, report files, signals, opening objects
 * that another process creates, and the consumers' (encode, preview) main
 * loop. Nothing here keeps global state except the stop flag the signal
 * handler sets (and a consumer's own flag it points at). */
#include "pipeline.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

size_t frame_pixel_bytes(uint32_t width, uint32_t height)
{
    return (size_t)width * height + (size_t)width * (height / 2);
}

void frame_draw(uint8_t *pixels, uint32_t width, uint32_t height, uint64_t n)
{
    /* A box 1/8 of the height, sliding 8 pixels a frame, over a gradient
     * that scrolls 2 rows a frame: enough motion to see any stale frame. */
    uint32_t box = height / 8 ? height / 8 : 1;
    if (box > width)
        box = width;
    uint32_t box_x = (uint32_t)((n * 8) % (width - box + 1));
    uint32_t box_y = (height - box) / 2;
    for (uint32_t y = 0; y < height; y++) {
        uint8_t *row = pixels + (size_t)y * width;
        memset(row, (int)((y + 2 * n) & 0xff), width);
        if (y >= box_y && y < box_y + box)
            memset(row + box_x, 235, box);
    }
    /* Chroma: neutral grey, tinted by the frame number. */
    uint8_t *uv = pixels + (size_t)width * height;
    memset(uv, (int)(96 + (n & 63)), (size_t)width * (height / 2));
}

uint64_t frame_checksum(const uint8_t *p, size_t len)
{
    const uint64_t prime = 1099511628211ull;
    uint64_t h[4] = {1469598103934665603ull, 0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full,
                     0x165667b19e3779f9ull};
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, sizeof(w));
        for (int k = 0; k < 4; k++)
            h[k] = (h[k] ^ w[k]) * prime;
    }
    for (; i < len; i++)
        h[0] = (h[0] ^ p[i]) * prime;
    return h[0] ^ (h[1] * 3) ^ (h[2] * 5) ^ (h[3] * 7);
}

const char *frame_check(mbq_buffer buffer, struct frame_view *v)
{
    size_t capacity = 0;
    v->number_known = false;
    const uint8_t *data = mbq_buffer_get_data(buffer, &capacity);
    if (!data)
        return "buffer has no data (stale handle?)";
    if (capacity < FRAME_HEADER_SIZE)
        return "block smaller than a frame header";
    memcpy(&v->h, data, sizeof(v->h)); /* read shared memory once */
    const struct frame_header *h = &v->h;
    if (h->magic != FRAME_MAGIC)
        return "bad frame magic";
    if (h->width == 0 || h->height == 0 || h->width > FRAME_MAX_DIMENSION ||
        h->height > FRAME_MAX_DIMENSION)
        return "bad frame dimensions";
    if (h->pixel_bytes != frame_pixel_bytes(h->width, h->height) ||
        h->pixel_bytes > capacity - FRAME_HEADER_SIZE)
        return "frame size does not fit its block";
    if (mbq_buffer_get_data_size(buffer) != FRAME_HEADER_SIZE + h->pixel_bytes)
        return "buffer data size differs from the frame's";
    v->pixels = data + FRAME_HEADER_SIZE;
    v->number_known = true; /* a well-formed header; the pixels may still be bad */
    if (frame_checksum(v->pixels, h->pixel_bytes) != h->checksum)
        return "checksum mismatch";

    mbq_time dts, pts, duration;
    if (mbq_buffer_get_timing(buffer, &dts, &pts, &duration) != 0)
        return "cannot read the buffer's timing";
    if (!mbq_time_is_numeric(duration) || duration.value <= 0 ||
        h->number > (uint64_t)INT64_MAX / (uint64_t)duration.value)
        return "bad duration";
    mbq_time expect = mbq_time_make((int64_t)h->number * duration.value, duration.timescale);
    if (mbq_time_compare(pts, expect) != 0)
        return "pts does not match the frame number";
    if (mbq_time_compare(dts, pts) != 0)
        return "dts differs from pts";
    v->pts = pts;
    return NULL;
}

uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool sleep_until_ns(uint64_t deadline_ns, const volatile sig_atomic_t *stop)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    while (!(stop && *stop)) {
        int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (r == 0)
            return true;
        if (r != EINTR)
            return true; /* cannot happen with a valid timespec; do not spin */
    }
    return false;
}

/* ---- latency histogram ---------------------------------------------------- */

static unsigned lat_index(uint64_t v)
{
    const uint64_t sub = 1u << LAT_SUB_BITS;
    if (v < sub)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e > LAT_MAX_EXP) {
        e = LAT_MAX_EXP;
        v = (2ull << LAT_MAX_EXP) - 1;
    }
    return ((e - LAT_SUB_BITS + 1) << LAT_SUB_BITS) | (unsigned)((v >> (e - LAT_SUB_BITS)) & (sub - 1));
}

/* The middle of bucket i. */
static uint64_t lat_value(unsigned i)
{
    const unsigned sub = 1u << LAT_SUB_BITS;
    if (i < sub)
        return i;
    unsigned k = i >> LAT_SUB_BITS, s = i & (sub - 1);
    uint64_t lo = (uint64_t)(sub + s) << (k - 1);
    return lo + ((1ull << (k - 1)) >> 1);
}

void lat_hist_reset(struct lat_hist *h)
{
    memset(h, 0, sizeof(*h));
}

void lat_hist_add(struct lat_hist *h, uint64_t ns)
{
    h->bucket[lat_index(ns)]++;
    h->count++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

uint64_t lat_hist_quantile(const struct lat_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q >= 1.0)
        return h->max_ns;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LAT_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = lat_value(i);
            return v < h->max_ns ? v : h->max_ns;
        }
    }
    return h->max_ns;
}

const char *fmt_ns(char *buf, size_t len, uint64_t ns)
{
    if (ns < 1000)
        snprintf(buf, len, "%llu ns", (unsigned long long)ns);
    else if (ns < 10000)
        snprintf(buf, len, "%.1f us", (double)ns / 1e3);
    else if (ns < 1000000)
        snprintf(buf, len, "%.0f us", (double)ns / 1e3);
    else if (ns < 10000000)
        snprintf(buf, len, "%.2f ms", (double)ns / 1e6);
    else if (ns < 1000000000)
        snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
    else
        snprintf(buf, len, "%.2f s", (double)ns / 1e9);
    return buf;
}

void rate_frame(struct rate *r, uint64_t now_ns)
{
    if (r->frames++ == 0)
        r->first_ns = now_ns;
    r->last_ns = now_ns;
}

double rate_next_window(struct rate *r)
{
    double fps = 0;
    if (r->frames && r->prev_last_ns && r->last_ns > r->prev_last_ns)
        fps = (double)r->frames * 1e9 / (double)(r->last_ns - r->prev_last_ns);
    else if (r->frames > 1 && r->last_ns > r->first_ns)
        fps = (double)(r->frames - 1) * 1e9 / (double)(r->last_ns - r->first_ns);
    if (r->frames)
        r->prev_last_ns = r->last_ns;
    r->frames = 0;
    return fps;
}

/* ---- processes -------------------------------------------------------------- */

static volatile sig_atomic_t *stop_flag;

static void on_stop_signal(int sig)
{
    (void)sig;
    if (stop_flag)
        *stop_flag = 1;
}

void install_stop_handler(volatile sig_atomic_t *flag)
{
    stop_flag = flag;
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void pipeline_stdio_init(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
}

bool parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "%s: expected a number from %u to %u, got '%s'\n", opt, min, max, s);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

int pipeline_connect(const char *prog, mbq_client **out)
{
    int r = mbq_connect(NULL, prog, out);
    if (r < 0) {
        char path[256] = "?";
        const char *env = getenv("MBQ_SOCKET");
        if (env && *env)
            snprintf(path, sizeof(path), "%s", env);
        else
            mbq_default_socket_path(path, sizeof(path));
        fprintf(stderr, "%s: cannot connect to mbqd at %s: %s\n", prog, path,
                mbq_status_string(r));
    }
    return r;
}

int pipeline_open_queue(const char *prog, mbq_client *c, const char *name, double timeout_s,
                        const volatile sig_atomic_t *stop, mbq_buffer_queue **out)
{
    uint64_t start = mono_ns(), deadline = start + (uint64_t)(timeout_s * 1e9);
    bool said = false;
    for (;;) {
        int r = mbq_buffer_queue_open(c, name, out);
        if (r != -ENOENT || (stop && *stop) || mono_ns() >= deadline) {
            if (r == -ENOENT)
                fprintf(stderr, "%s: %s does not exist (is mbq-capture running?)\n", prog, name);
            else if (r < 0)
                fprintf(stderr, "%s: cannot open %s: %s\n", prog, name, mbq_status_string(r));
            return r;
        }
        if (!said && mono_ns() - start > 1000000000u) {
            printf("%s: waiting for %s to be created\n", prog, name);
            said = true;
        }
        sleep_until_ns(mono_ns() + 10000000u, stop); /* 10 ms */
    }
}

/* ---- report files ----------------------------------------------------------- */

FILE *report_open(const char *path)
{
    FILE *f = fopen(path, "we");
    if (!f)
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
    return f;
}

void report_u64(FILE *f, const char *key, uint64_t v)
{
    if (f)
        fprintf(f, "%s %llu\n", key, (unsigned long long)v);
}

bool report_close(FILE *f, const char *path)
{
    if (!f)
        return false;
    bool ok = !ferror(f);
    if (fclose(f) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, "cannot write %s\n", path);
    return ok;
}

bool report_get(const char *path, const char *key, uint64_t *out)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[256], k[128];
    unsigned long long v;
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        if (sscanf(line, "%127s %llu", k, &v) == 2 && strcmp(k, key) == 0) {
            *out = v;
            found = true;
        }
    fclose(f);
    return found;
}

/* ---- consumer statistics ------------------------------------------------------ */

void consumer_stats_init(struct consumer_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->last_pts = MBQ_TIME_NEGATIVE_INFINITY;
    s->win_start_ns = mono_ns();
}

double consumer_stats_next_window(struct consumer_stats *s, uint64_t now_ns)
{
    lat_hist_reset(&s->win_latency);
    s->win_dropped = 0;
    s->win_start_ns = now_ns;
    return rate_next_window(&s->rate);
}

void consumer_stats_bad_frame(struct consumer_stats *s, const char *prog,
                             const struct frame_view *v, const char *problem)
{
    s->errors++;
    if (v->number_known) {
        /* Its number is sound: account for it so that it is not also
         * reported as missing (or as a drop). */
        fprintf(stderr, "%s: ERROR: frame %llu: %s\n", prog, (unsigned long long)v->h.number,
                problem);
        if (v->h.number >= s->next_number)
            s->next_number = v->h.number + 1;
    } else if (s->next_number) {
        fprintf(stderr, "%s: ERROR: the frame after frame %llu: %s\n", prog,
                (unsigned long long)(s->next_number - 1), problem);
    } else {
        fprintf(stderr, "%s: ERROR: the first frame: %s\n", prog, problem);
    }
}

void consumer_stats_frame(struct consumer_stats *s, const char *prog, const struct frame_view *v,
                          uint64_t now_ns, bool gaps_are_drops)
{
    uint64_t n = v->h.number;
    s->frames++;
    rate_frame(&s->rate, now_ns);
    if (n > s->next_number) {
        uint64_t missing = n - s->next_number;
        if (gaps_are_drops) {
            s->dropped += missing;
            s->win_dropped += missing;
        } else {
            s->errors++;
            fprintf(stderr, "%s: ERROR: frames %llu..%llu missing (got %llu)\n", prog,
                    (unsigned long long)s->next_number, (unsigned long long)(n - 1),
                    (unsigned long long)n);
        }
    } else if (n < s->next_number) {
        s->errors++;
        fprintf(stderr, "%s: ERROR: frame %llu after frame %llu (out of order or repeated)\n",
                prog, (unsigned long long)n, (unsigned long long)(s->next_number - 1));
    }
    if (n + 1 > s->next_number)
        s->next_number = n + 1;
    if (mbq_time_compare(v->pts, s->last_pts) <= 0) {
        s->errors++;
        fprintf(stderr, "%s: ERROR: frame %llu: pts %.4f s not after the previous %.4f s\n", prog,
                (unsigned long long)n, mbq_time_get_seconds(v->pts),
                mbq_time_get_seconds(s->last_pts));
    }
    s->last_pts = v->pts;
    /* Timestamps from another process: ignore ones from the future. */
    if (v->h.capture_ns <= now_ns) {
        lat_hist_add(&s->latency, now_ns - v->h.capture_ns);
        lat_hist_add(&s->win_latency, now_ns - v->h.capture_ns);
    }
    if (v->h.enqueue_ns <= now_ns)
        lat_hist_add(&s->queue_wait, now_ns - v->h.enqueue_ns);
}

void consumer_stats_report(const struct consumer_stats *s, FILE *f)
{
    report_u64(f, "frames", s->frames);
    report_u64(f, "errors", s->errors);
    report_u64(f, "dropped", s->dropped);
    report_u64(f, "next_number", s->next_number);
    report_u64(f, "latency_p50_ns", lat_hist_quantile(&s->latency, 0.5));
    report_u64(f, "latency_p99_ns", lat_hist_quantile(&s->latency, 0.99));
    report_u64(f, "latency_max_ns", s->latency.max_ns);
    report_u64(f, "queue_wait_p50_ns", lat_hist_quantile(&s->queue_wait, 0.5));
}

void consumer_stats_latency_line(const struct consumer_stats *s, char *buf, size_t len)
{
    char a[32], b[32], c[32], d[32];
    snprintf(buf, len, "latency p50 %s, p99 %s, max %s (in the queue p50 %s)",
             fmt_ns(a, sizeof(a), lat_hist_quantile(&s->latency, 0.5)),
             fmt_ns(b, sizeof(b), lat_hist_quantile(&s->latency, 0.99)),
             fmt_ns(c, sizeof(c), s->latency.max_ns),
             fmt_ns(d, sizeof(d), lat_hist_quantile(&s->queue_wait, 0.5)));
}

/* ---- the consumer loop ------------------------------------------------------------- */

static volatile sig_atomic_t consumer_stop;

static int consumer_run(const struct consumer *cfg, uint32_t open_timeout_s, const char *report)
{
    const char *prog = cfg->prog;
    volatile sig_atomic_t *stop = &consumer_stop;
    mbq_client *c;
    if (pipeline_connect(cfg->client_name, &c) < 0)
        return 1;
    mbq_buffer_queue *q = NULL;
    if (pipeline_open_queue(prog, c, cfg->queue, open_timeout_s, stop, &q) < 0) {
        mbq_disconnect(c);
        return 1;
    }

    struct consumer_stats *s = malloc(sizeof(*s));
    if (!s) {
        fprintf(stderr, "%s: out of memory\n", prog);
        mbq_buffer_queue_close(q);
        mbq_disconnect(c);
        return 1;
    }
    consumer_stats_init(s);
    volatile uint64_t sink = 0; /* keeps the simulated work from being optimised away */
    const uint64_t period = cfg->fps ? 1000000000ull / cfg->fps : 0;
    uint64_t next_refresh = mono_ns();
    bool end_of_data = false, fatal = false;
    while (!*stop) {
        /* Wait for the display's next refresh, without catching up on
         * missed ones: a display shows what is there now. */
        if (period) {
            if (!sleep_until_ns(next_refresh, stop))
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
                consumer_stats_bad_frame(s, prog, &v, problem);
            } else {
                consumer_stats_frame(s, prog, &v, now, cfg->gaps_are_drops);
                sink += cfg->work(&v);
            }
            if (cfg->delay_ms)
                sleep_until_ns(mono_ns() + (uint64_t)cfg->delay_ms * 1000000u, stop);
            if ((r = mbq_buffer_release(b)) < 0) {
                fprintf(stderr, "%s: ERROR: cannot release a frame: %s\n", prog,
                        mbq_status_string(r));
                s->errors++;
            }
        } else if (r != -ETIMEDOUT && r != -EINTR) {
            fprintf(stderr, "%s: ERROR: dequeue failed: %s\n", prog, mbq_status_string(r));
            s->errors++;
            fatal = true;
            break;
        }
        if (now - s->win_start_ns >= 1000000000u)
            cfg->print_second(s, q, now);
    }
    (void)sink;

    char lat[160], dropped[48] = "";
    consumer_stats_latency_line(s, lat, sizeof(lat));
    if (cfg->gaps_are_drops)
        snprintf(dropped, sizeof(dropped), " shown, %llu dropped", (unsigned long long)s->dropped);
    printf("%s: done: %llu frame%s%s, %llu error%s%s; %s\n", prog, (unsigned long long)s->frames,
           plural(s->frames), dropped, (unsigned long long)s->errors, plural(s->errors),
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

int consumer_main(int argc, char **argv, struct consumer *cfg)
{
    const char *report = NULL;
    uint32_t open_timeout = 10;
    const struct option longopts[] = {
        {cfg->option + 2, required_argument, NULL, 'o'},
        {"open-timeout", required_argument, NULL, 't'},
        {"report", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    for (int ch; (ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        bool ok = true;
        switch (ch) {
        case 'o': ok = parse_u32(cfg->option, optarg, 0, cfg->option_max, cfg->option_value); break;
        case 't': ok = parse_u32("--open-timeout", optarg, 0, 3600, &open_timeout); break;
        case 'r': report = optarg; break;
        case 'h': cfg->usage(stdout); return 0;
        default: ok = false;
        }
        if (!ok) {
            cfg->usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        cfg->usage(stderr);
        return 2;
    }
    pipeline_stdio_init();
    install_stop_handler(&consumer_stop);
    return consumer_run(cfg, open_timeout, report);
}
