#ifndef GST_MBQ_SRC_H
#define GST_MBQ_SRC_H

#include <gst/base/gstpushsrc.h>

G_BEGIN_DECLS

#define GST_TYPE_MBQ_SRC (gst_mbq_src_get_type())
G_DECLARE_FINAL_TYPE(GstMbqSrc, gst_mbq_src, GST, MBQ_SRC, GstPushSrc)

G_END_DECLS

#endif
