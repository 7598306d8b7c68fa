/* mbq-stream: a producer and a consumer of numbered buffers, for the
 * real-systemd tests (run inside the nspawn container by ci-test.sh).
 *
 *   mbq-stream producer --count N [--pace-us U] [--gate SEQ:PATH]... [NAMES]
 *   mbq-stream consumer --count N --progress PATH [--stall-s S] [NAMES]
 *   mbq-stream holder --count N [NAMES]
 *   NAMES: [--pool NAME] [--queue NAME] [--socket PATH]
 *
 * Both create-or-open one pool and one FIFO buffer queue (same options, so
 * either may start first). The producer allocates N buffers, writes the
 * sequence number and a pattern derived from it into each, enqueues it and
 * drops its own reference, one every U microseconds (absolute schedule),
 * then marks end of data. Before buffer SEQ of a --gate it waits until PATH
 * exists (bounded): the test script opens the gate once it has done what it
 * wanted done while the stream runs (a daemon restart), so the stream is
 * guaranteed to straddle it and data keeps flowing up to the gate.
 *
 * The consumer dequeues with a blocking wait until end of data, checks that
 * buffer k carries sequence number k (exactly once, in order) with an intact
 * payload, releases it, and publishes how many it has received in PATH (a
 * decimal number, replaced atomically by rename) for the script to poll.
 *
 * Everything on the stream path is the data plane: no daemon is needed while
 * it runs, which is what a restart must not disturb. Afterwards both make
 * one control call (mbq_list) to see whether the library's connection works
 * again after the restarts, and report it on its own line ("control: ...").
 *
 * The holder allocates N buffers of the pool, says "holding N" and waits to
 * be killed: the test kills it with SIGKILL around a daemon restart and
 * checks that the daemon gets the blocks back.
 *
 * Output: one "key=value ..." summary line per program, prefixed with the
 * role; exit 0 when everything checked out, 1 otherwise, 2 on bad usage. */
#include <mbq/mbq.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD_BYTES 256
#define BLOCK_SIZE 4096
#define BLOCK_COUNT 64
#define QUEUE_CAPACITY 32
#define MAX_GATES 8
#define GATE_WAIT_S 60    /* a gate not opened within this fails the run */
#define RETRY_LIMIT_S 30  /* a full queue / empty pool for this long fails */
#define CONNECT_WAIT_S 10 /* socket activation should answer at once */

static const char *role = "?";

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void sleep_until_ns(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static double elapsed_s(uint64_t t0)
{
    return (double)(now_ns() - t0) / 1e9;
}

/* The payload of buffer seq: the number, then bytes derived from it. */
static uint8_t pattern_byte(uint64_t seq, size_t i)
{
    uint64_t x = (seq + 1) * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull;
    return (uint8_t)(x >> 56);
}

static void fill(uint8_t *p, uint64_t seq)
{
    memcpy(p, &seq, sizeof(seq));
    for (size_t i = sizeof(seq); i < PAYLOAD_BYTES; i++)
        p[i] = pattern_byte(seq, i);
}

static bool intact(const uint8_t *p, uint64_t seq)
{
    for (size_t i = sizeof(seq); i < PAYLOAD_BYTES; i++)
        if (p[i] != pattern_byte(seq, i))
            return false;
    return true;
}

struct args {
    const char *socket_path, *pool_name, *queue_name, *progress;
    uint64_t count;
    unsigned pace_us, stall_s;
    unsigned ngates;
    struct {
        uint64_t seq;
        const char *path;
    } gates[MAX_GATES];
};

static int usage(void)
{
    fprintf(stderr, "usage: mbq-stream producer --count N [--pace-us U] [--gate SEQ:PATH]...\n"
                    "       mbq-stream consumer --count N --progress PATH [--stall-s S]\n"
                    "       mbq-stream holder --count N\n"
                    "       common: [--pool NAME] [--queue NAME] [--socket PATH]\n");
    return 2;
}

static int parse(int argc, char **argv, struct args *a)
{
    *a = (struct args){.pool_name = "ci/pool", .queue_name = "ci/queue", .stall_s = 20};
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return -1;
        i++;
        if (!strcmp(k, "--count"))
            a->count = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--pace-us"))
            a->pace_us = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(k, "--stall-s"))
            a->stall_s = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(k, "--progress"))
            a->progress = v;
        else if (!strcmp(k, "--pool"))
            a->pool_name = v;
        else if (!strcmp(k, "--queue"))
            a->queue_name = v;
        else if (!strcmp(k, "--socket"))
            a->socket_path = v;
        else if (!strcmp(k, "--gate")) {
            char *colon = strchr(v, ':');
            if (!colon || a->ngates == MAX_GATES)
                return -1;
            a->gates[a->ngates].seq = strtoull(v, NULL, 10);
            a->gates[a->ngates].path = colon + 1;
            a->ngates++;
        } else
            return -1;
    }
    return a->count ? 0 : -1;
}

static int connect_retry(const struct args *a, mbq_client **c)
{
    uint64_t t0 = now_ns();
    for (;;) {
        int r = mbq_connect(a->socket_path, role, c);
        if (r == 0 || elapsed_s(t0) > CONNECT_WAIT_S) {
            if (r < 0)
                printf("%s: FAIL connect: %s\n", role, mbq_status_string(r));
            return r;
        }
        sleep_us(20000);
    }
}

static int open_objects(const struct args *a, mbq_client *c, mbq_pool **pool, mbq_buffer_queue **q)
{
    mbq_pool_options po = {.size = sizeof(po), .block_size = BLOCK_SIZE,
                           .block_count = BLOCK_COUNT, .mode = 0600};
    int r = mbq_pool_create(c, a->pool_name, &po, pool);
    if (r < 0) {
        printf("%s: FAIL pool_create(%s): %s\n", role, a->pool_name, mbq_status_string(r));
        return r;
    }
    mbq_buffer_queue_options qo = {.size = sizeof(qo), .capacity = QUEUE_CAPACITY,
                                   .order = MBQ_ORDER_FIFO, .full_policy = MBQ_FULL_FAIL,
                                   .mode = 0600};
    r = mbq_buffer_queue_create(c, a->queue_name, &qo, q);
    if (r < 0) {
        printf("%s: FAIL buffer_queue_create(%s): %s\n", role, a->queue_name,
               mbq_status_string(r));
        return r;
    }
    return 0;
}

/* One control call after the stream: does the library talk to the daemon
 * again (it was restarted underneath)? Retried briefly: a reconnect may
 * take a moment. */
static void report_control(mbq_client *c)
{
    uint64_t t0 = now_ns();
    int r;
    do {
        r = mbq_list(c, "ci/", NULL, 0);
        if (r >= 0)
            break;
        sleep_us(50000);
    } while (elapsed_s(t0) < 3);
    if (r >= 0)
        printf("%s: control: ok (mbq_list after the stream: %d objects)\n", role, r);
    else
        printf("%s: control: error %d (%s) from mbq_list after the stream\n", role, r,
               mbq_status_string(r));
}

static int producer(const struct args *a)
{
    mbq_client *c = NULL;
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    if (connect_retry(a, &c) < 0 || open_objects(a, c, &pool, &q) < 0)
        return 1;
    printf("%s: started count=%" PRIu64 " pace_us=%u gates=%u\n", role, a->count, a->pace_us,
           a->ngates);
    fflush(stdout);

    uint64_t full_retries = 0, alloc_retries = 0, t0 = now_ns();
    unsigned gate = 0;
    int fail = 0;
    for (uint64_t seq = 1; seq <= a->count && !fail; seq++) {
        if (gate < a->ngates && seq == a->gates[gate].seq) {
            uint64_t tg = now_ns();
            while (access(a->gates[gate].path, F_OK) < 0) {
                if (elapsed_s(tg) > GATE_WAIT_S) {
                    printf("%s: FAIL gate %s before seq %" PRIu64 " not opened in %d s\n", role,
                           a->gates[gate].path, seq, GATE_WAIT_S);
                    fail = 1;
                    break;
                }
                sleep_us(2000);
            }
            printf("%s: gate %u passed at seq %" PRIu64 " (waited %.3f s)\n", role, gate, seq,
                   elapsed_s(tg));
            fflush(stdout);
            gate++;
            t0 = now_ns() - (seq - 1) * a->pace_us * 1000ull; /* no catch-up burst */
            if (fail)
                break;
        }
        if (a->pace_us)
            sleep_until_ns(t0 + (seq - 1) * a->pace_us * 1000ull);

        mbq_buffer b;
        uint64_t tr = now_ns();
        int r;
        while ((r = mbq_pool_allocate(pool, PAYLOAD_BYTES, &b)) == MBQ_POOL_ERR_ALLOCATION_FAILED &&
               elapsed_s(tr) < RETRY_LIMIT_S) {
            alloc_retries++;
            sleep_us(200);
        }
        if (r < 0) {
            printf("%s: FAIL allocate seq %" PRIu64 ": %s\n", role, seq, mbq_status_string(r));
            fail = 1;
            break;
        }
        uint8_t *p = mbq_buffer_get_data(b, NULL);
        if (!p) {
            printf("%s: FAIL no data for a new buffer at seq %" PRIu64 "\n", role, seq);
            fail = 1;
            break;
        }
        fill(p, seq);
        mbq_buffer_set_data_size(b, PAYLOAD_BYTES);
        mbq_time t = mbq_time_make((int64_t)seq, 1000);
        mbq_buffer_set_timing(b, t, t, mbq_time_make(1, 1000));
        tr = now_ns();
        while ((r = mbq_buffer_queue_enqueue(q, b)) == MBQ_BQ_ERR_QUEUE_IS_FULL &&
               elapsed_s(tr) < RETRY_LIMIT_S) {
            full_retries++;
            sleep_us(200);
        }
        if (r < 0) {
            printf("%s: FAIL enqueue seq %" PRIu64 ": %s\n", role, seq, mbq_status_string(r));
            fail = 1;
        }
        r = mbq_buffer_release(b);
        if (r < 0 && !fail) {
            printf("%s: FAIL release seq %" PRIu64 ": %s\n", role, seq, mbq_status_string(r));
            fail = 1;
        }
    }
    int r = mbq_buffer_queue_mark_end_of_data(q);
    if (r < 0) {
        printf("%s: FAIL mark_end_of_data: %s\n", role, mbq_status_string(r));
        fail = 1;
    }
    printf("%s: done fail=%d full_retries=%" PRIu64 " alloc_retries=%" PRIu64 "\n", role, fail,
           full_retries, alloc_retries);
    report_control(c);
    fflush(stdout);
    /* Keep the producer's objects open until the consumer has drained:
     * closing is the consumer's business. Disconnect releases ours. */
    mbq_disconnect(c);
    return fail;
}

static void publish(const char *path, uint64_t n)
{
    char tmp[4096], buf[32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    int len = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", n);
    if (write(fd, buf, (size_t)len) == len)
        rename(tmp, path);
    close(fd);
}

static int consumer(const struct args *a)
{
    if (!a->progress)
        return usage();
    mbq_client *c = NULL;
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    publish(a->progress, 0);
    if (connect_retry(a, &c) < 0 || open_objects(a, c, &pool, &q) < 0)
        return 1;
    printf("%s: started count=%" PRIu64 "\n", role, a->count);
    fflush(stdout);

    uint64_t expect = 1, received = 0, out_of_order = 0, corrupt = 0, bad_size = 0;
    uint64_t max_gap_ns = 0, last = now_ns();
    int fail = 0, r;
    for (;;) {
        mbq_buffer b;
        r = mbq_buffer_queue_dequeue_wait(q, (int64_t)a->stall_s * 1000000000, &b);
        if (r == -ENODATA)
            break;
        if (r < 0) {
            printf("%s: FAIL dequeue after %" PRIu64 " buffers: %s\n", role, received,
                   mbq_status_string(r));
            fail = 1;
            break;
        }
        uint64_t t = now_ns();
        if (t - last > max_gap_ns)
            max_gap_ns = t - last;
        last = t;
        const uint8_t *p = mbq_buffer_get_data(b, NULL);
        uint64_t seq = 0;
        if (p)
            memcpy(&seq, p, sizeof(seq));
        if (!p || !intact(p, seq)) {
            if (corrupt++ < 5)
                printf("%s: corrupt payload in buffer #%" PRIu64 " (seq field %" PRIu64 ")\n",
                       role, received + 1, seq);
        } else if (seq != expect) {
            if (out_of_order++ < 5)
                printf("%s: expected seq %" PRIu64 ", got %" PRIu64 " (%s)\n", role, expect, seq,
                       seq < expect ? "duplicate/old" : "gap");
        }
        if (mbq_buffer_get_data_size(b) != PAYLOAD_BYTES)
            bad_size++;
        if (p && seq >= expect)
            expect = seq + 1;
        received++;
        r = mbq_buffer_release(b);
        if (r < 0 && !fail) {
            printf("%s: FAIL release of buffer #%" PRIu64 ": %s\n", role, received,
                   mbq_status_string(r));
            fail = 1;
        }
        publish(a->progress, received);
    }
    bool ok = !fail && received == a->count && expect == a->count + 1 && !out_of_order &&
              !corrupt && !bad_size;
    printf("%s: done %s received=%" PRIu64 " expected=%" PRIu64 " out_of_order=%" PRIu64
           " corrupt=%" PRIu64 " bad_size=%" PRIu64 " max_gap_ms=%.1f\n",
           role, ok ? "exactly-once-in-order" : "MISMATCH", received, a->count, out_of_order,
           corrupt, bad_size, (double)max_gap_ns / 1e6);
    report_control(c);
    fflush(stdout);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_disconnect(c);
    return ok ? 0 : 1;
}

static int holder(const struct args *a)
{
    mbq_client *c = NULL;
    mbq_pool *pool = NULL;
    mbq_buffer_queue *q = NULL;
    if (connect_retry(a, &c) < 0 || open_objects(a, c, &pool, &q) < 0)
        return 1;
    for (uint64_t i = 0; i < a->count; i++) {
        mbq_buffer b;
        int r = mbq_pool_allocate(pool, PAYLOAD_BYTES, &b);
        if (r < 0) {
            printf("%s: FAIL allocate %" PRIu64 ": %s\n", role, i + 1, mbq_status_string(r));
            return 1;
        }
        fill(mbq_buffer_get_data(b, NULL), i + 1);
    }
    printf("%s: holding %" PRIu64 "\n", role, a->count);
    fflush(stdout);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct args a;
    if (argc < 2 || parse(argc, argv, &a) < 0)
        return usage();
    role = argv[1];
    if (!strcmp(role, "producer"))
        return producer(&a);
    if (!strcmp(role, "consumer"))
        return consumer(&a);
    if (!strcmp(role, "holder"))
        return holder(&a);
    return usage();
}
