/* mbq-gst-probe: gst-launch-1.0 with two measuring probes, for
 * scripts/bench-gst.sh.
 *
 * Latency across processes needs one clock and one key per frame, and
 * neither buffer timestamps (each pipeline has its own base time, and
 * shmsrc does not carry them) nor frame counts (frames can be dropped) give
 * both. So the capture side stamps the frame itself: --stamp NAME writes, on
 * the src pad of element NAME, a 24-byte record into the first bytes of the
 * frame (a magic word, the frame's sequence number, CLOCK_MONOTONIC now).
 * --read NAME:FILE reads the record on the sink pad of element NAME (the
 * encoder) and, at the end, writes one line per frame to FILE: "seq t_stamp
 * t_read" in nanoseconds, CLOCK_MONOTONIC, which every process on the
 * machine shares. The probes only copy 24 bytes; the lines are written after
 * the pipeline has stopped. The stamp overwrites 24 bytes of luma in the
 * top-left corner of the picture.
 *
 * --stats FILE writes the process's CPU time (user + system, seconds) and
 * peak resident set (KiB, which counts the pages of shared memory the
 * process touched) from getrusage() at exit.
 *
 * Runs until end of stream or an error (exit 1); SIGINT sends end of stream
 * (as gst-launch-1.0 -e). Usage:
 *   mbq-gst-probe [--stamp NAME] [--read NAME:FILE] [--stats FILE] PIPELINE... */
#include <gst/gst.h>

#include <glib-unix.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define STAMP_MAGIC 0x4d42515354414d50ull /* "MBQSTAMP" */
#define MAX_ROWS (1u << 20)

struct stamp {
    uint64_t magic, seq, t_ns;
};

struct row {
    uint64_t seq, t_stamp, t_read;
};

static uint64_t stamp_seq;
static struct row *rows;
static guint nrows, unstamped;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static GstPadProbeReturn stamp_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    GstBuffer *buf = gst_buffer_make_writable(GST_PAD_PROBE_INFO_BUFFER(info));
    GST_PAD_PROBE_INFO_DATA(info) = buf;
    GstMapInfo map;
    if (gst_buffer_map(buf, &map, GST_MAP_WRITE)) {
        if (map.size >= sizeof(struct stamp)) {
            struct stamp s = {STAMP_MAGIC, stamp_seq++, mono_ns()};
            memcpy(map.data, &s, sizeof(s));
        }
        gst_buffer_unmap(buf, &map);
    }
    return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn read_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    uint64_t now = mono_ns();
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    struct stamp s;
    if (gst_buffer_extract(buf, 0, &s, sizeof(s)) == sizeof(s) && s.magic == STAMP_MAGIC &&
        nrows < MAX_ROWS)
        rows[nrows++] = (struct row){s.seq, s.t_ns, now};
    else
        unstamped++;
    return GST_PAD_PROBE_OK;
}

static gboolean add_probe(GstElement *pipeline, const char *name, const char *pad_name,
                          GstPadProbeCallback cb)
{
    GstElement *e = gst_bin_get_by_name(GST_BIN(pipeline), name);
    if (!e) {
        fprintf(stderr, "mbq-gst-probe: no element named '%s' in the pipeline\n", name);
        return FALSE;
    }
    GstPad *pad = gst_element_get_static_pad(e, pad_name);
    gst_object_unref(e);
    if (!pad) {
        fprintf(stderr, "mbq-gst-probe: element '%s' has no %s pad\n", name, pad_name);
        return FALSE;
    }
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, cb, NULL, NULL);
    gst_object_unref(pad);
    return TRUE;
}

static gboolean on_sigint(gpointer pipeline)
{
    gst_element_send_event(GST_ELEMENT(pipeline), gst_event_new_eos());
    return G_SOURCE_CONTINUE;
}

static gboolean on_bus(GstBus *bus, GstMessage *msg, gpointer loop_and_status)
{
    void **p = loop_and_status;
    switch (GST_MESSAGE_TYPE(msg)) {
    case GST_MESSAGE_EOS:
        g_main_loop_quit(p[0]);
        break;
    case GST_MESSAGE_ERROR: {
        GError *err = NULL;
        gchar *dbg = NULL;
        gst_message_parse_error(msg, &err, &dbg);
        fprintf(stderr, "mbq-gst-probe: ERROR from %s: %s\n%s\n", GST_OBJECT_NAME(msg->src),
                err->message, dbg ? dbg : "");
        g_clear_error(&err);
        g_free(dbg);
        *(int *)p[1] = 1;
        g_main_loop_quit(p[0]);
        break;
    }
    default:
        break;
    }
    return TRUE;
}

int main(int argc, char **argv)
{
    gst_init(&argc, &argv);
    const char *stamp = NULL, *read_spec = NULL, *stats = NULL;
    int i = 1;
    for (; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--stamp") == 0)
            stamp = argv[i + 1];
        else if (strcmp(argv[i], "--read") == 0)
            read_spec = argv[i + 1];
        else if (strcmp(argv[i], "--stats") == 0)
            stats = argv[i + 1];
        else
            break;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: mbq-gst-probe [--stamp NAME] [--read NAME:FILE] [--stats FILE] "
                        "PIPELINE...\n");
        return 2;
    }
    gchar *desc = g_strjoinv(" ", argv + i);
    GError *err = NULL;
    GstElement *pipeline = gst_parse_launch(desc, &err);
    g_free(desc);
    if (!pipeline || err) {
        fprintf(stderr, "mbq-gst-probe: %s\n", err ? err->message : "cannot parse the pipeline");
        return 1;
    }
    gchar *read_name = NULL, *read_file = NULL;
    if (read_spec) {
        const char *colon = strchr(read_spec, ':');
        if (!colon) {
            fprintf(stderr, "mbq-gst-probe: --read NAME:FILE\n");
            return 2;
        }
        read_name = g_strndup(read_spec, (gsize)(colon - read_spec));
        read_file = g_strdup(colon + 1);
        rows = g_new(struct row, MAX_ROWS);
        if (!add_probe(pipeline, read_name, "sink", read_probe))
            return 1;
    }
    if (stamp && !add_probe(pipeline, stamp, "src", stamp_probe))
        return 1;

    GMainLoop *loop = g_main_loop_new(NULL, FALSE);
    int status = 0;
    void *p[2] = {loop, &status};
    GstBus *bus = gst_element_get_bus(pipeline);
    gst_bus_add_watch(bus, on_bus, p);
    g_unix_signal_add(SIGINT, on_sigint, pipeline);
    if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
        fprintf(stderr, "mbq-gst-probe: the pipeline does not start\n");
        status = 1;
    } else {
        g_main_loop_run(loop);
    }
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(pipeline);

    if (read_file) {
        FILE *f = fopen(read_file, "w");
        if (!f) {
            perror(read_file);
            return 1;
        }
        for (guint k = 0; k < nrows; k++)
            fprintf(f, "%llu %llu %llu\n", (unsigned long long)rows[k].seq,
                    (unsigned long long)rows[k].t_stamp, (unsigned long long)rows[k].t_read);
        fclose(f);
        if (unstamped)
            fprintf(stderr, "mbq-gst-probe: %u buffers without a stamp\n", unstamped);
    }
    if (stats) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        FILE *f = fopen(stats, "w");
        if (f) {
            fprintf(f, "cpu_s %.3f\nrss_kb %ld\nstamped %llu\n",
                    (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                        (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
                    ru.ru_maxrss, (unsigned long long)stamp_seq);
            fclose(f);
        }
    }
    return status;
}
