/* See trace.h: a debugging aid compiled only with MBQ_POOL_TRACE. */
#include "trace.h"

#ifdef MBQ_POOL_TRACE
#include "lock.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define TRACE_BLOCKS 256
#define TRACE_RING 2048

struct trace_ev {
    uint64_t seq;
    uint32_t who, op;
    uint64_t a, b;
};
struct trace_file {
    _Atomic uint64_t seq;
    _Atomic uint64_t n[TRACE_BLOCKS];
    struct trace_ev ev[TRACE_BLOCKS][TRACE_RING];
};

static struct trace_file *trace_map;
static int trace_state; /* 0 unknown, 1 mapped, -1 off */

void mbq_trace(uint32_t idx, uint32_t op, uint64_t a, uint64_t b)
{
    if (trace_state == 0) {
        const char *f = getenv("MBQ_TRACE_FILE");
        trace_state = -1;
        if (f && *f) {
            int fd = open(f, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd >= 0 && ftruncate(fd, sizeof(struct trace_file)) == 0) {
                void *m = mmap(NULL, sizeof(struct trace_file), PROT_READ | PROT_WRITE, MAP_SHARED,
                               fd, 0);
                if (m != MAP_FAILED) {
                    trace_map = m;
                    trace_state = 1;
                }
            }
            if (fd >= 0)
                close(fd);
        }
    }
    if (trace_state != 1 || idx >= TRACE_BLOCKS)
        return;
    uint64_t k = atomic_fetch_add(&trace_map->n[idx], 1);
    struct trace_ev *e = &trace_map->ev[idx][k % TRACE_RING];
    e->seq = atomic_fetch_add(&trace_map->seq, 1);
    e->who = slock_kernel_tid();
    e->op = op;
    e->a = a;
    e->b = b;
}
#endif
