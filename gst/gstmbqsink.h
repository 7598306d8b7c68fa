#ifndef GST_MBQ_SINK_H
#define GST_MBQ_SINK_H

#include <gst/base/gstbasesink.h>

G_BEGIN_DECLS

#define GST_TYPE_MBQ_SINK (gst_mbq_sink_get_type())
G_DECLARE_FINAL_TYPE(GstMbqSink, gst_mbq_sink, GST, MBQ_SINK, GstBaseSink)

typedef enum {
    GST_MBQ_ORDER_FIFO = 0,
    GST_MBQ_ORDER_PTS = 1,
    GST_MBQ_ORDER_DTS = 2,
} GstMbqOrder;

typedef enum {
    GST_MBQ_FULL_BLOCK = 0,
    GST_MBQ_FULL_DROP_OLDEST = 1,
    GST_MBQ_FULL_DROP_NEWEST = 2,
    GST_MBQ_FULL_FAIL = 3,
} GstMbqFullPolicy;

G_END_DECLS

#endif
