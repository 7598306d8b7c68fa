/* What the gst-check tests share: one mbqd for the whole test binary, an
 * observer connection reading counters through mbq_stat, a buffer maker, an
 * EOS waiter, and the main that sets them up around the cases. */
#ifndef MBQ_GST_TESTS_COMMON_H
#define MBQ_GST_TESTS_COMMON_H

#include "harness.h"

#include <gst/check/gstharness.h>
#include <gst/gst.h>

static struct mbqd d;
static mbq_client *observer;

static inline mbq_object_info stat_of(const char *name)
{
    mbq_object_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    int r = mbq_stat(observer, name, &info);
    if (r != 0)
        fprintf(stderr, "mbq_stat(%s): %s\n", name, mbq_status_string(r));
    return info;
}

static inline GstBuffer *make_buffer(gsize size, guint8 fill, GstClockTime pts)
{
    GstBuffer *b = gst_buffer_new_allocate(NULL, size, NULL);
    gst_buffer_memset(b, 0, fill, size);
    GST_BUFFER_PTS(b) = pts;
    return b;
}

static inline bool pull_until_eos(GstHarness *h)
{
    for (int i = 0; i < 64; i++) {
        GstEvent *e = gst_harness_pull_event(h); /* waits up to 60 s */
        if (!e)
            return false;
        bool eos = GST_EVENT_TYPE(e) == GST_EVENT_EOS;
        gst_event_unref(e);
        if (eos)
            return true;
    }
    return false;
}

/* Starts mbqd (MBQ_SOCKET names it for the elements), GStreamer and the
 * observer, runs the cases, and stops them: the test's exit status. */
static inline int gst_test_main(const struct check_case *cases, size_t n, int argc, char **argv)
{
    if (mbqd_start(&d) != 0)
        return 1;
    setenv("MBQ_SOCKET", d.sock, 1);
    gst_init(NULL, NULL);
    if (!gst_registry_find_plugin(gst_registry_get(), "mbq")) {
        fprintf(stderr, "the mbq plugin is not in the registry (GST_PLUGIN_PATH?)\n");
        mbqd_stop(&d);
        return 1;
    }
    observer = h_connect(&d, "observer");
    if (!observer)
        return 1;
    int rc = check_run(cases, n, argc, argv);
    mbq_disconnect(observer);
    gst_deinit();
    if (mbqd_stop(&d) != 0)
        rc = 1;
    return rc;
}

#endif
