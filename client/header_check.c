/* Compile check: the public header stands alone as strict C11 (and, through
 * header_check.cpp, as C++). Built with -Wall -Wextra -pedantic -Werror. */
#include <mbq/mbq.h>

int mbq_header_check_c(void);
int mbq_header_check_c(void)
{
    mbq_buffer b = {0, 0};
    return (int)(sizeof(b) + sizeof(mbq_object_info)) > 0 ? MBQ_OK : -1;
}
