// Compile check: the public header stands alone as C++ (see header_check.c).
#include <mbq/mbq.h>

int mbq_header_check_cpp();
int mbq_header_check_cpp()
{
    mbq_buffer b = {nullptr, 0};
    mbq_buffer_queue_options o = {};
    o.size = sizeof(o);
    return b.pool_ == nullptr && o.size ? MBQ_OK : -1;
}
