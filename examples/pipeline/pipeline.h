/* What the demo pipeline's programs share: the object names, the layout of
 * a synthetic frame, its checksum and checks, latency statistics, the small
 * report files the launcher reads, a few process helpers, and the loop
 * both consumers run.
 *
 * A frame is one pool block: a 64-byte header followed by an NV12 picture
 * (a Y plane of width x height bytes, then an interleaved UV plane of half
 * that). Everything a consumer reads from a block is shared memory written
 * by another process, so the header is copied out once and checked against
 * the block's size before any pixel is touched. */
#ifndef MBQ_PIPELINE_H
#define MBQ_PIPELINE_H

#include <mbq/mbq.h>

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PIPELINE_POOL "demo/frames"
#define PIPELINE_ENCODE_QUEUE "demo/encode"
#define PIPELINE_PREVIEW_QUEUE "demo/preview"
#define PIPELINE_ENCODE_CAPACITY 8
/* One slot, dropping the oldest: whatever the preview takes is the newest
 * frame captured (a deeper queue would hand it the oldest it kept, several
 * camera periods behind). */
#define PIPELINE_PREVIEW_CAPACITY 1

#define FRAME_MAGIC 0x4d425146u
#define FRAME_HEADER_SIZE 64
#define FRAME_MAX_DIMENSION 8192

struct frame_header {
    uint32_t magic;
    uint32_t width, height;
    uint32_t reserved;
    uint64_t number;      /* 0, 1, 2, ... in capture order */
    uint64_t capture_ns;  /* CLOCK_MONOTONIC when the frame was due */
    uint64_t enqueue_ns;  /* CLOCK_MONOTONIC just before the first enqueue */
    uint64_t pixel_bytes; /* bytes of picture after the header */
    uint64_t checksum;    /* frame_checksum() over those bytes */
};
_Static_assert(sizeof(struct frame_header) <= FRAME_HEADER_SIZE, "frame header too large");

/* NV12: a full-resolution Y plane, then a half-resolution interleaved UV plane. */
size_t frame_pixel_bytes(uint32_t width, uint32_t height);
/* Draws frame n: a scrolling gradient with a moving bright box, row by row
 * with memset so that it costs a fraction of a millisecond. */
void frame_draw(uint8_t *pixels, uint32_t width, uint32_t height, uint64_t n);
/* A 64-bit checksum over len bytes: four interleaved FNV-1a lanes over
 * 8-byte words, so that it runs near memory speed. */
uint64_t frame_checksum(const uint8_t *p, size_t len);

/* A dequeued frame after frame_check(): a private copy of its header, its
 * pixels (in shared memory) and its presentation time. */
struct frame_view {
    struct frame_header h;
    const uint8_t *pixels;
    mbq_time pts;
    bool number_known; /* h is well-formed, even if frame_check() failed later */
};
/* Checks that buffer holds a well-formed frame: header, size, checksum, and
 * timing consistent with its number (pts = dts = number x duration).
 * NULL if so, else a short description of what is wrong. */
const char *frame_check(mbq_buffer buffer, struct frame_view *v);

/* "s" unless n is 1: "1 error", "2 errors". */
static inline const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

uint64_t mono_ns(void);
/* Sleeps until the CLOCK_MONOTONIC deadline; false if *stop got set first. */
bool sleep_until_ns(uint64_t deadline_ns, const volatile sig_atomic_t *stop);

/* Latency statistics: a log-linear histogram (64 sub-buckets per power of
 * two, every figure within 1.6 %) from 1 ns to about 30 minutes in constant
 * memory, however long the run. */
#define LAT_SUB_BITS 6
#define LAT_MAX_EXP 40
#define LAT_BUCKETS ((LAT_MAX_EXP - LAT_SUB_BITS + 2) << LAT_SUB_BITS)
struct lat_hist {
    uint64_t count, max_ns;
    uint32_t bucket[LAT_BUCKETS];
};
void lat_hist_reset(struct lat_hist *h);
void lat_hist_add(struct lat_hist *h, uint64_t ns);
/* The q-quantile (0 < q <= 1) in nanoseconds; 0 for an empty histogram. */
uint64_t lat_hist_quantile(const struct lat_hist *h, double q);
/* A human figure ("850 us", "12.3 ms") in buf; returns buf. */
const char *fmt_ns(char *buf, size_t len, uint64_t ns);

/* Sets *flag on SIGINT and SIGTERM, without SA_RESTART. */
void install_stop_handler(volatile sig_atomic_t *flag);
/* Makes stdout line-buffered, so that the lines of the pipeline's
 * processes interleave whole even through a pipe. */
void pipeline_stdio_init(void);

/* Parses a decimal in [min, max]; prints a message naming opt if not. */
bool parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *out);

/* Connects to the daemon ($MBQ_SOCKET, else the default socket), printing
 * why not on failure. */
int pipeline_connect(const char *prog, mbq_client **out);
/* Opens a buffer queue that another process creates, retrying on -ENOENT
 * for up to timeout_s seconds (or until *stop). Prints why on failure.
 * (The pool need not be opened: libmbq maps a dequeued buffer's pool.) */
int pipeline_open_queue(const char *prog, mbq_client *c, const char *name, double timeout_s,
                        const volatile sig_atomic_t *stop, mbq_buffer_queue **out);

/* Report files: "key value" lines a program writes at exit when given
 * --report PATH, which the launcher reads for its summary. */
FILE *report_open(const char *path);
void report_u64(FILE *f, const char *key, uint64_t v);
/* Closes f; false (with a message) if anything failed to be written. */
bool report_close(FILE *f, const char *path);
/* The value of key in the report at path; false if absent or unreadable. */
bool report_get(const char *path, const char *key, uint64_t *out);

/* A frame rate over windows of about a second that neither gains nor loses
 * the frame at a window's edge: a window's frames over the time from the
 * previous window's last frame to its own last one. */
struct rate {
    uint64_t frames, first_ns, last_ns, prev_last_ns;
};
void rate_frame(struct rate *r, uint64_t now_ns);
/* The window's rate; then starts the next window. */
double rate_next_window(struct rate *r);

/* What a consumer (encode, preview) counts and prints. */
struct consumer_stats {
    uint64_t frames, errors, dropped;
    uint64_t next_number; /* the number expected next */
    mbq_time last_pts;
    struct lat_hist latency;     /* capture -> dequeue, whole run */
    struct lat_hist queue_wait;  /* enqueue -> dequeue, whole run */
    struct lat_hist win_latency; /* capture -> dequeue, this second */
    uint64_t win_dropped, win_start_ns;
    struct rate rate;
};
void consumer_stats_init(struct consumer_stats *s);
/* Counts an error for a frame frame_check() refused, and says why. */
void consumer_stats_bad_frame(struct consumer_stats *s, const char *prog,
                             const struct frame_view *v, const char *problem);
/* Accounts a frame dequeued at now_ns: latency, and the order checks.
 * Frame numbers must rise; a jump forward counts as drops when gaps_are_drops,
 * else as an error (the missing numbers are reported once). PTS must rise. */
void consumer_stats_frame(struct consumer_stats *s, const char *prog, const struct frame_view *v,
                          uint64_t now_ns, bool gaps_are_drops);
/* Ends the once-a-second window: returns its frame rate and resets it. */
double consumer_stats_next_window(struct consumer_stats *s, uint64_t now_ns);
void consumer_stats_report(const struct consumer_stats *s, FILE *f);
/* The summary line's latency part: "latency p50 .. p99 .. max .., in queue p50 ..". */
void consumer_stats_latency_line(const struct consumer_stats *s, char *buf, size_t len);

/* A consumer program (encode, preview): what sets one apart from the other.
 * Both parse the same options and run the same loop (consumer_main). */
struct consumer {
    const char *prog;        /* prefix of its messages: "encode" */
    const char *client_name; /* the name it gives mbqd: "mbq-encode" */
    const char *queue;       /* the buffer queue it takes frames from */
    void (*usage)(FILE *f);
    /* Its own option ("--fps"): a number from 0 to option_max, stored in
     * *option_value (fps or delay_ms below). */
    const char *option;
    uint32_t option_max;
    uint32_t *option_value;
    /* Gaps in the frame numbers are drops (a queue that drops the oldest),
     * not errors; the summary then counts them. */
    bool gaps_are_drops;
    /* Takes at most fps frames a second, without catching up on missed
     * refreshes (a display); 0: takes frames as they come. */
    uint32_t fps;
    /* Spends this much longer on every frame before releasing it (a slow
     * encoder). */
    uint32_t delay_ms;
    /* The simulated work on a good frame; the result only keeps it from
     * being optimised away. */
    uint64_t (*work)(const struct frame_view *v);
    /* Prints the once-a-second line, and starts the next window
     * (consumer_stats_next_window). */
    void (*print_second)(struct consumer_stats *s, mbq_buffer_queue *q, uint64_t now_ns);
};
/* The whole of a consumer's main(): parses --open-timeout, --report,
 * --help and cfg's own option (into cfg), then connects, opens the queue
 * and takes frames until end of data, a dequeue error or SIGINT/SIGTERM;
 * checks and accounts every frame, prints the summary and writes the
 * report. Returns the exit status: 0; 1 if anything was wrong; 2 for bad
 * options. */
int consumer_main(int argc, char **argv, struct consumer *cfg);

#endif
