/* Pool fast path: pool_alloc + pool_release of a cached (warm) block, in one
 * process, 10M pairs per run. The pool lock is uncontended, so a pair should
 * make no system call: the voluntary/involuntary context switches of the
 * loop (from /proc/self/status) are printed next to the time, and
 * `strace -c -f` on this binary shows the rest (setup only).
 *
 *   RESULT pool_alloc_free_ns=<median> ns min=.. max=.. runs=N
 *   RESULT pool_loop_voluntary_ctxsw=<total over all runs>
 *   RESULT pool_loop_involuntary_ctxsw=<total over all runs> */
#include "bench_common.h"

#include "pool.h"

#define ITERS 10000000u
#define RUNS 5
#define BLOCK_SIZE (64u * 1024u)
#define BLOCKS 16u

/* One counter from /proc/self/status, or -1. */
static long status_counter(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

int main(void)
{
    struct pool p;
    struct pool_params prm = {.block_size = BLOCK_SIZE, .block_count = BLOCKS, .prefault = true};
    int r = pool_create(&prm, &p);
    if (r != 0)
        bench_die("pool_create: %d", r);
    (void)bench_ns_per_tick();

    uint64_t h;
    for (unsigned i = 0; i < 100000; i++) { /* warm up caches and the holdings page */
        if (pool_alloc(&p, BLOCK_SIZE, &h) != 0 || pool_release(&p, h, true) != 0)
            bench_die("warm-up failed");
    }

    double ns[RUNS];
    long vol = 0, invol = 0;
    for (int run = 0; run < RUNS; run++) {
        long v0 = status_counter("voluntary_ctxt_switches");
        long i0 = status_counter("nonvoluntary_ctxt_switches");
        uint64_t t0 = bench_ticks();
        for (unsigned i = 0; i < ITERS; i++) {
            if (__builtin_expect(pool_alloc(&p, BLOCK_SIZE, &h) != 0, 0) ||
                __builtin_expect(pool_release(&p, h, true) != 0, 0))
                bench_die("alloc/release failed at %u", i);
        }
        uint64_t t1 = bench_ticks();
        long v1 = status_counter("voluntary_ctxt_switches");
        long i1 = status_counter("nonvoluntary_ctxt_switches");
        ns[run] = bench_ticks_to_ns(t1 - t0) / ITERS;
        vol += v1 - v0;
        invol += i1 - i0;
    }

    struct pool_stats s;
    if (pool_stats(&p, &s) != 0 || s.used != 0 || s.warm != BLOCKS)
        bench_die("pool not whole after the loop");
    double sorted[RUNS];
    memcpy(sorted, ns, sizeof(ns));
    double med = bench_median(sorted, RUNS);
    bench_result_range("pool_alloc_free_ns", med, sorted[0], sorted[RUNS - 1], RUNS, "ns");
    printf("RESULT pool_loop_voluntary_ctxsw=%ld\n", vol);
    printf("RESULT pool_loop_involuntary_ctxsw=%ld\n", invol);
    printf("RESULT pool_loop_iterations=%u\n", ITERS * RUNS);
    pool_detach(&p);
    return 0;
}
