/* mbqctl: inspect and manage mbqd's objects from the command line.
 *
 * An ordinary client of the public library (<mbq/mbq.h> only). Every
 * command is one connection: list, stat, create, unlink, and watch, which
 * samples the objects' counters every --interval and shows depth, rates per
 * second computed between consecutive samples, drops and the buffers each
 * client holds — as a refreshed table, or with --json as one JSON object per
 * line per sample (--count stops it, for scripts and tests).
 *
 * Exit status: 0 ok, 1 the operation failed (a message on stderr), 2 usage. */
#include <mbq/mbq.h>

#include "common/clock.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct ctl {
    const char *socket;
    bool json;
    mbq_client *client;
};

static const char usage_text[] =
    "Usage: mbqctl [--socket PATH] [--json] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  list [PREFIX]                      objects whose name starts with PREFIX\n"
    "  stat NAME                          everything about one object\n"
    "  create buffer-queue NAME [--capacity N] [--order fifo|pts|dts] [--drop-oldest]\n"
    "                                     [--mode MODE]\n"
    "  create simple-queue NAME --capacity N [--mode MODE]\n"
    "  create pool NAME --block-size N --blocks N [--age-out SECONDS] [--mode MODE]\n"
    "  create pool NAME --classes SIZExCOUNT[,SIZExCOUNT...] [--age-out SECONDS] [--mode MODE]\n"
    "  unlink NAME                        remove a name (the object lives while open)\n"
    "  usage                              objects and bytes charged to users (your own;\n"
    "                                     root: every user's); list --json has them too\n"
    "  watch [NAME...] [--interval MS] [--count N]\n"
    "                                     live counters; all objects if no NAME\n"
    "\n"
    "Options:\n"
    "  --socket PATH   mbqd's socket (default: $MBQ_SOCKET, /run/mbq/mbqd.sock for\n"
    "                  root, else $XDG_RUNTIME_DIR/mbq/mbqd.sock)\n"
    "  --json          machine-readable output\n"
    "  --help          this text\n"
    "  --version       versions of mbqctl, libmbq and the protocol\n"
    "\n"
    "Sizes take a k, M or G suffix (powers of 1024); MODE is octal (0644).\n"
    "Exit status: 0 ok, 1 operation failed, 2 usage error.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "mbqctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'mbqctl --help'.\n");
    return EXIT_USAGE;
}

/* The connection whose daemon explains failures (mbq_client_last_error). */
static mbq_client *fail_client;

static int fail(const char *what, const char *name, int status)
{
    if (name)
        fprintf(stderr, "mbqctl: %s %s: %s\n", what, name, mbq_status_string(status));
    else
        fprintf(stderr, "mbqctl: %s: %s\n", what, mbq_status_string(status));
    char why[400];
    if (fail_client && *mbq_client_last_error(fail_client, why, sizeof(why)))
        fprintf(stderr, "mbqctl: %s\n", why);
    return EXIT_FAIL;
}

static int ctl_connect(struct ctl *ctl)
{
    int r = mbq_connect(ctl->socket, "mbqctl", &ctl->client);
    fail_client = ctl->client;
    if (r < 0) {
        char path[256];
        const char *where = ctl->socket;
        if (!where)
            where = mbq_default_socket_path(path, sizeof(path)) >= 0 ? path : "(no default)";
        return fail("cannot connect to mbqd at", where, r);
    }
    return EXIT_OK;
}

/* ---- parsing --------------------------------------------------------------- */

static bool parse_u64(const char *s, uint64_t max, bool suffixes, uint64_t *out)
{
    if (!s || !*s || *s == '-')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    uint64_t mult = 1;
    if (suffixes && *end) {
        switch (*end) {
        case 'k': case 'K': mult = 1ull << 10; break;
        case 'm': case 'M': mult = 1ull << 20; break;
        case 'g': case 'G': mult = 1ull << 30; break;
        default: return false;
        }
        end++;
    }
    if (*end || v > max / mult)
        return false;
    *out = v * mult;
    return true;
}

static bool parse_mode(const char *s, uint32_t *out)
{
    if (!s || !*s)
        return false;
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 8);
    if (errno || *end || (v & ~(unsigned long)MBQ_MODE_MASK))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* ---- JSON ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* A JSON string: quotes, escapes, and U+FFFD for bytes that are not UTF-8. */
static void json_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c == '\n') {
            fputs("\\n", f);
            p++;
        } else if (c == '\t') {
            fputs("\\t", f);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc(c, f);
            p++;
        } else {
            size_t n = utf8_seq(p);
            if (n) {
                fwrite(p, 1, n, f);
                p += n;
            } else {
                fputs("\\ufffd", f);
                p++;
            }
        }
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

/* ---- formatting ------------------------------------------------------------- */

static const char *kind_name(mbq_object_kind k)
{
    switch (k) {
    case MBQ_OBJECT_BUFFER_QUEUE: return "buffer-queue";
    case MBQ_OBJECT_SIMPLE_QUEUE: return "simple-queue";
    case MBQ_OBJECT_POOL: return "pool";
    default: return "unknown";
    }
}

static const char *order_name(uint32_t o)
{
    return o == MBQ_ORDER_PRESENTATION_TIME ? "pts" : o == MBQ_ORDER_DECODE_TIME ? "dts" : "fifo";
}

static const char *policy_name(uint32_t p)
{
    return p == MBQ_FULL_DROP_OLDEST ? "drop-oldest" : "fail";
}

static double duration_seconds(mbq_time t)
{
    return mbq_time_is_numeric(t) ? mbq_time_get_seconds(t) : NAN;
}

/* Fields of an object as JSON members (no braces); stat adds the clients. */
static void json_pool_classes(FILE *f, const mbq_object_info *o)
{
    fputs(",\"classes\":[", f);
    for (uint32_t c = 0; c < o->pool_class_count && c < MBQ_POOL_MAX_CLASSES; c++)
        fprintf(f,
                "%s{\"block_size\":%" PRIu64 ",\"block_count\":%u,\"used\":%u,\"warm\":%u,"
                "\"cold\":%u,\"cached\":%u}",
                c ? "," : "", o->pool_classes[c].block_size, o->pool_classes[c].block_count,
                o->pool_classes[c].used, o->pool_classes[c].warm, o->pool_classes[c].cold,
                o->pool_classes[c].cached);
    fputc(']', f);
}

static void json_object_fields(FILE *f, const mbq_object_info *o, bool with_stats)
{
    fputs("\"name\":", f);
    json_str(f, o->name);
    fprintf(f, ",\"kind\":\"%s\",\"object_id\":%" PRIu64 ",\"owner_uid\":%u,\"owner_gid\":%u,"
               "\"mode\":\"%04o\",\"open_count\":%u,\"segment_size\":%" PRIu64,
            kind_name(o->kind), o->object_id, o->owner_uid, o->owner_gid, o->mode, o->open_count,
            o->segment_size);
    switch (o->kind) {
    case MBQ_OBJECT_BUFFER_QUEUE:
        fprintf(f, ",\"capacity\":%u,\"order\":\"%s\",\"full_policy\":\"%s\"", o->capacity,
                order_name(o->order), policy_name(o->full_policy));
        if (with_stats) {
            fprintf(f, ",\"count\":%" PRIu64 ",\"enqueued\":%" PRIu64 ",\"dequeued\":%" PRIu64
                       ",\"dropped\":%" PRIu64 ",\"rejected_full\":%" PRIu64
                       ",\"high_water\":%" PRIu64 ",\"total_size\":%" PRIu64
                       ",\"triggers\":%u,\"end_of_data\":%s,\"duration_seconds\":",
                    o->count, o->enqueued, o->dequeued, o->dropped, o->rejected_full,
                    o->high_water, o->total_size, o->triggers, o->end_of_data ? "true" : "false");
            json_num(f, duration_seconds(o->duration));
            fprintf(f, ",\"forged_entries\":%" PRIu64, o->forged_entries);
            fprintf(f, ",\"approximate\":%s,\"lock_takeovers\":%" PRIu64,
                    o->approximate ? "true" : "false", o->lock_takeovers);
            fprintf(f, ",\"producers\":%u,\"producer_pids\":[", o->producers);
            for (uint32_t i = 0; i < o->producer_pid_count && i < MBQ_PRODUCER_PIDS; i++)
                fprintf(f, "%s%u", i ? "," : "", o->producer_pids[i]);
            fprintf(f, "],\"producer_lost\":%s", o->producer_lost ? "true" : "false");
        }
        break;
    case MBQ_OBJECT_SIMPLE_QUEUE:
        fprintf(f, ",\"capacity\":%d", o->sq_capacity);
        if (with_stats)
            fprintf(f, ",\"count\":%d", o->sq_count);
        break;
    case MBQ_OBJECT_POOL:
        fprintf(f, ",\"block_size\":%" PRIu64 ",\"block_count\":%u", o->block_size,
                o->block_count);
        if (with_stats)
            fprintf(f, ",\"blocks_used\":%u,\"blocks_warm\":%u,\"blocks_cold\":%u,"
                       "\"allocations\":%" PRIu64 ",\"frees\":%" PRIu64 ",\"aged_out\":%" PRIu64
                       ",\"invalidated\":%s",
                    o->blocks_used, o->blocks_warm, o->blocks_cold, o->allocations, o->frees,
                    o->aged_out, o->invalidated ? "true" : "false");
        if (with_stats)
            fprintf(f, ",\"approximate\":%s,\"lock_takeovers\":%" PRIu64,
                    o->approximate ? "true" : "false", o->lock_takeovers);
        if (with_stats && o->pool_class_count)
            json_pool_classes(f, o);
        break;
    }
}

static void json_clients(FILE *f, const mbq_object_info *o)
{
    size_t max = sizeof(o->clients) / sizeof(o->clients[0]);
    fputs(",\"clients\":[", f);
    for (size_t i = 0; i < o->client_count && i < max; i++) {
        const mbq_client_usage *u = &o->clients[i];
        fprintf(f, "%s{\"pid\":%u,\"uid\":%u,\"name\":", i ? "," : "", u->pid, u->uid);
        json_str(f, u->name);
        fprintf(f, ",\"buffers_held\":%" PRIu64 ",\"triggers\":%u", u->buffers_held,
                u->triggers);
        if (o->kind == MBQ_OBJECT_BUFFER_QUEUE)
            fprintf(f, ",\"producer\":%s", o->client_is_producer[i] ? "true" : "false");
        fputc('}', f);
    }
    fputs("]", f);
}

/* ---- list ---------------------------------------------------------------------- */

/* "users":[...],"total_bytes":N,"max_total_bytes":N (no braces); "users":[]
 * if the daemon cannot say. */
static void json_usage(FILE *f, mbq_client *c)
{
    mbq_user_usage u[64];
    u[0].size = sizeof(u[0]);
    uint64_t total = 0, max_total = 0;
    int n = mbq_usage(c, u, 64, &total, &max_total);
    fputs("\"users\":[", f);
    for (int i = 0; i < n && i < 64; i++)
        fprintf(f, "%s{\"uid\":%u,\"objects\":%u,\"max_objects\":%u,\"bytes\":%" PRIu64
                   ",\"max_bytes\":%" PRIu64 "}",
                i ? "," : "", u[i].uid, u[i].objects, u[i].max_objects, u[i].bytes, u[i].max_bytes);
    fprintf(f, "],\"total_bytes\":%" PRIu64 ",\"max_total_bytes\":%" PRIu64, total, max_total);
}

static int cmd_usage(struct ctl *ctl)
{
    mbq_user_usage u[1024];
    u[0].size = sizeof(u[0]);
    uint64_t total = 0, max_total = 0;
    int n = mbq_usage(ctl->client, u, 1024, &total, &max_total);
    if (n < 0)
        return fail("usage", NULL, n);
    if (ctl->json) {
        fputs("{", stdout);
        json_usage(stdout, ctl->client);
        fputs("}\n", stdout);
        return EXIT_OK;
    }
    printf("%10s %8s %8s %16s %16s\n", "UID", "OBJECTS", "MAX", "BYTES", "MAX_BYTES");
    for (int i = 0; i < n && i < 1024; i++)
        printf("%10u %8u %8u %16" PRIu64 " %16" PRIu64 "\n", u[i].uid, u[i].objects,
               u[i].max_objects, u[i].bytes, u[i].max_bytes);
    printf("all users: %" PRIu64 " bytes of %" PRIu64 " (0: no limit)\n", total, max_total);
    return EXIT_OK;
}

static int cmd_list(struct ctl *ctl, const char *prefix)
{
    size_t max = 256;
    mbq_object_info *infos = NULL;
    int n;
    for (;;) {
        free(infos);
        infos = calloc(max, sizeof(*infos));
        if (!infos)
            return fail("list", NULL, -ENOMEM);
        infos[0].size = sizeof(*infos);
        n = mbq_list(ctl->client, prefix, infos, max);
        if (n < 0) {
            free(infos);
            return fail("list", prefix, n);
        }
        if ((size_t)n <= max)
            break;
        max = (size_t)n + 16;
    }
    if (ctl->json) {
        fputs("{\"objects\":[", stdout);
        for (int i = 0; i < n; i++) {
            fputs(i ? ",{" : "{", stdout);
            json_object_fields(stdout, &infos[i], false);
            fputs("}", stdout);
        }
        fputs("],", stdout);
        json_usage(stdout, ctl->client);
        fputs("}\n", stdout);
    } else {
        printf("%-13s %-32s %6s %5s %5s  %s\n", "KIND", "NAME", "ID", "MODE", "OPEN", "CONFIG");
        for (int i = 0; i < n; i++) {
            const mbq_object_info *o = &infos[i];
            char cfg[128];
            switch (o->kind) {
            case MBQ_OBJECT_BUFFER_QUEUE:
                snprintf(cfg, sizeof(cfg), "capacity=%u order=%s full=%s", o->capacity,
                         order_name(o->order), policy_name(o->full_policy));
                break;
            case MBQ_OBJECT_SIMPLE_QUEUE:
                snprintf(cfg, sizeof(cfg), "capacity=%d", o->sq_capacity);
                break;
            case MBQ_OBJECT_POOL:
                snprintf(cfg, sizeof(cfg), "block_size=%" PRIu64 " blocks=%u", o->block_size,
                         o->block_count);
                break;
            default: cfg[0] = '\0';
            }
            printf("%-13s %-32s %6" PRIu64 " %04o %5u  %s\n", kind_name(o->kind), o->name,
                   o->object_id, o->mode, o->open_count, cfg);
        }
    }
    free(infos);
    return EXIT_OK;
}

/* ---- stat ------------------------------------------------------------------------ */

static void print_stat_text(const mbq_object_info *o)
{
    printf("name:          %s\n", o->name);
    printf("kind:          %s\n", kind_name(o->kind));
    printf("object id:     %" PRIu64 "\n", o->object_id);
    printf("owner:         uid %u gid %u, mode %04o\n", o->owner_uid, o->owner_gid, o->mode);
    printf("open:          %u\n", o->open_count);
    printf("segment size:  %" PRIu64 "\n", o->segment_size);
    switch (o->kind) {
    case MBQ_OBJECT_BUFFER_QUEUE:
        printf("capacity:      %u (order %s, when full: %s)\n", o->capacity, order_name(o->order),
               policy_name(o->full_policy));
        printf("count:         %" PRIu64 " (high water %" PRIu64 ")\n", o->count, o->high_water);
        printf("total size:    %" PRIu64 "\n", o->total_size);
        printf("duration:      %.6g s\n", duration_seconds(o->duration));
        printf("end of data:   %s\n", o->end_of_data ? "yes" : "no");
        printf("enqueued:      %" PRIu64 "\n", o->enqueued);
        printf("dequeued:      %" PRIu64 "\n", o->dequeued);
        printf("dropped:       %" PRIu64 "\n", o->dropped);
        printf("rejected full: %" PRIu64 "\n", o->rejected_full);
        printf("triggers:      %u\n", o->triggers);
        printf("forged:        %" PRIu64 " entries naming a pool not bound to the queue\n",
               o->forged_entries);
        printf("lock takeovers: %" PRIu64 "%s\n", o->lock_takeovers,
               o->approximate ? " (a lock stays held: figures approximate)" : "");
        printf("producers:     %u", o->producers);
        for (uint32_t i = 0; i < o->producer_pid_count && i < MBQ_PRODUCER_PIDS; i++)
            printf("%s%u", i ? ", " : " (pid ", o->producer_pids[i]);
        printf("%s\n", o->producer_pid_count ? ")" : "");
        printf("producer lost: %s\n", o->producer_lost ? "yes" : "no");
        break;
    case MBQ_OBJECT_SIMPLE_QUEUE:
        printf("capacity:      %d\n", o->sq_capacity);
        printf("count:         %d\n", o->sq_count);
        break;
    case MBQ_OBJECT_POOL:
        printf("block size:    %" PRIu64 "\n", o->block_size);
        printf("blocks:        %u (used %u, warm %u, cold %u)\n", o->block_count, o->blocks_used,
               o->blocks_warm, o->blocks_cold);
        for (uint32_t c = 0; c < o->pool_class_count && c < MBQ_POOL_MAX_CLASSES; c++)
            printf("class %u:       %" PRIu64 " B x %u (used %u, warm %u, cold %u, cached %u)\n",
                   c, o->pool_classes[c].block_size, o->pool_classes[c].block_count,
                   o->pool_classes[c].used, o->pool_classes[c].warm, o->pool_classes[c].cold,
                   o->pool_classes[c].cached);
        printf("allocations:   %" PRIu64 "\n", o->allocations);
        printf("frees:         %" PRIu64 "\n", o->frees);
        printf("aged out:      %" PRIu64 "\n", o->aged_out);
        printf("invalidated:   %s\n", o->invalidated ? "yes" : "no");
        printf("lock takeovers: %" PRIu64 "%s\n", o->lock_takeovers,
               o->approximate ? " (a lock stays held: figures approximate)" : "");
        break;
    }
    size_t max = sizeof(o->clients) / sizeof(o->clients[0]);
    printf("clients:       %u\n", o->client_count);
    for (size_t i = 0; i < o->client_count && i < max; i++) {
        const mbq_client_usage *u = &o->clients[i];
        printf("  pid %-8u uid %-6u %-20s buffers held %-6" PRIu64 " triggers %u%s\n", u->pid,
               u->uid, u->name, u->buffers_held, u->triggers,
               o->kind == MBQ_OBJECT_BUFFER_QUEUE && o->client_is_producer[i] ? " producer" : "");
    }
}

static int cmd_stat(struct ctl *ctl, const char *name)
{
    mbq_object_info info = {.size = sizeof(info)};
    int r = mbq_stat(ctl->client, name, &info);
    if (r < 0)
        return fail("stat", name, r);
    if (ctl->json) {
        fputs("{", stdout);
        json_object_fields(stdout, &info, true);
        json_clients(stdout, &info);
        fputs(",", stdout);
        json_usage(stdout, ctl->client);
        fputs("}\n", stdout);
    } else {
        print_stat_text(&info);
    }
    return EXIT_OK;
}

/* ---- create / unlink ----------------------------------------------------------------- */

/* What `create` was asked for. */
struct create_args {
    const char *kind, *name;
    bool bq, sq, pool;
    uint64_t capacity, block_size, blocks;
    uint32_t nclasses;
    mbq_pool_class classes[MBQ_POOL_MAX_CLASSES];
    bool have_capacity, drop_oldest;
    double age_out;
    uint32_t mode;
    mbq_buffer_queue_order order;
};

static bool parse_order(const char *s, mbq_buffer_queue_order *out)
{
    static const struct {
        const char *name;
        mbq_buffer_queue_order order;
    } orders[] = {{"fifo", MBQ_ORDER_FIFO},
                  {"pts", MBQ_ORDER_PRESENTATION_TIME},
                  {"dts", MBQ_ORDER_DECODE_TIME}};
    for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++)
        if (!strcmp(s, orders[i].name)) {
            *out = orders[i].order;
            return true;
        }
    return false;
}

/* --classes SIZExCOUNT[,SIZExCOUNT...]: the pool's size classes, as given
 * (mbqd checks their order and sizes). */
static bool parse_classes(const char *s, struct create_args *a)
{
    a->nclasses = 0;
    while (*s) {
        char *end;
        if (a->nclasses == MBQ_POOL_MAX_CLASSES || *s < '0' || *s > '9')
            return false;
        errno = 0;
        unsigned long long size = strtoull(s, &end, 10);
        if (errno || *end != 'x')
            return false;
        s = end + 1;
        if (*s < '0' || *s > '9')
            return false;
        unsigned long long count = strtoull(s, &end, 10);
        if (errno || count > UINT32_MAX || (*end && *end != ','))
            return false;
        a->classes[a->nclasses++] = (mbq_pool_class){.block_size = size,
                                                     .block_count = (uint32_t)count};
        s = *end ? end + 1 : end;
    }
    return a->nclasses > 0;
}

/* One option of `create` (getopt's c, with optarg). EXIT_OK or a usage error. */
static int create_option(struct ctl *ctl, struct create_args *a, int c)
{
    char *end;
    switch (c) {
    case 'c':
        if (!parse_u64(optarg, a->sq ? (1u << 24) : (1u << 20), false, &a->capacity))
            return usage_error("bad --capacity '%s'", optarg);
        a->have_capacity = true;
        return EXIT_OK;
    case 'o':
        return parse_order(optarg, &a->order)
                   ? EXIT_OK
                   : usage_error("bad --order '%s' (fifo, pts or dts)", optarg);
    case 'd':
        a->drop_oldest = true;
        return EXIT_OK;
    case 'b':
        return parse_u64(optarg, UINT64_MAX, true, &a->block_size) && a->block_size
                   ? EXIT_OK
                   : usage_error("bad --block-size '%s'", optarg);
    case 'n':
        return parse_u64(optarg, UINT32_MAX, true, &a->blocks) && a->blocks
                   ? EXIT_OK
                   : usage_error("bad --blocks '%s'", optarg);
    case 'C':
        return parse_classes(optarg, a)
                   ? EXIT_OK
                   : usage_error("bad --classes '%s' (SIZExCOUNT[,SIZExCOUNT...], at most 8)", optarg);
    case 'a':
        a->age_out = strtod(optarg, &end);
        return !*end && a->age_out >= 0 && a->age_out <= 1e6
                   ? EXIT_OK
                   : usage_error("bad --age-out '%s' (seconds)", optarg);
    case 'm':
        return parse_mode(optarg, &a->mode)
                   ? EXIT_OK
                   : usage_error("bad --mode '%s' (octal, e.g. 0644)", optarg);
    case 'j':
        ctl->json = true;
        return EXIT_OK;
    case 's':
        ctl->socket = optarg;
        return EXIT_OK;
    default:
        return EXIT_USAGE;
    }
}

/* Whether the options fit the kind. EXIT_OK or a usage error. */
static int create_check(const struct create_args *a)
{
    if ((!a->bq && (a->order != MBQ_ORDER_FIFO || a->drop_oldest)) ||
        (!a->pool && (a->block_size || a->blocks || a->nclasses)) ||
        (a->pool && a->have_capacity))
        return usage_error("an option does not apply to a %s", a->kind);
    if (a->pool && a->nclasses && (a->block_size || a->blocks))
        return usage_error("%s", "a pool takes --classes or --block-size and --blocks, not both");
    if (a->pool && a->nclasses)
        return EXIT_OK;
    if (a->sq && (!a->have_capacity || a->capacity == 0))
        return usage_error("%s", "a simple queue needs --capacity N (1..16777216)");
    if (a->pool && (!a->block_size || !a->blocks))
        return usage_error("%s", "a pool needs --block-size N and --blocks N");
    return EXIT_OK;
}

/* Creates the object (exclusively) and closes it again: it lives on in mbqd. */
static int create_object(struct ctl *ctl, const struct create_args *a)
{
    int r;
    if (a->bq) {
        mbq_buffer_queue_options o = {
            .size = sizeof(o),
            .capacity = (uint32_t)a->capacity,
            .order = a->order,
            .full_policy = a->drop_oldest ? MBQ_FULL_DROP_OLDEST : MBQ_FULL_FAIL,
            .mode = a->mode,
            .exclusive = true};
        mbq_buffer_queue *q;
        r = mbq_buffer_queue_create(ctl->client, a->name, &o, &q);
        if (r == 0)
            mbq_buffer_queue_close(q);
    } else if (a->sq) {
        mbq_simple_queue_options o = {.size = sizeof(o), .mode = a->mode, .exclusive = true};
        mbq_simple_queue *q;
        r = mbq_simple_queue_create(ctl->client, a->name, (int32_t)a->capacity, &o, &q);
        if (r == 0)
            mbq_simple_queue_close(q);
    } else {
        mbq_pool_options o = {.size = sizeof(o),
                              .block_size = a->block_size,
                              .block_count = (uint32_t)a->blocks,
                              .age_out_seconds = a->age_out,
                              .mode = a->mode,
                              .exclusive = true,
                              .class_count = a->nclasses};
        memcpy(o.classes, a->classes, sizeof(o.classes));
        mbq_pool *p;
        r = mbq_pool_create(ctl->client, a->name, &o, &p);
        if (r == 0)
            mbq_pool_close(p);
    }
    return r;
}

static int cmd_create(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {
        {"capacity", required_argument, NULL, 'c'},
        {"order", required_argument, NULL, 'o'},
        {"drop-oldest", no_argument, NULL, 'd'},
        {"block-size", required_argument, NULL, 'b'},
        {"blocks", required_argument, NULL, 'n'},
        {"classes", required_argument, NULL, 'C'},
        {"age-out", required_argument, NULL, 'a'},
        {"mode", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {0},
    };
    if (argc < 3)
        return usage_error("%s", "create needs a kind (buffer-queue, simple-queue, pool) and a name");
    struct create_args a = {.kind = argv[1], .name = argv[2], .order = MBQ_ORDER_FIFO};
    a.bq = !strcmp(a.kind, "buffer-queue");
    a.sq = !strcmp(a.kind, "simple-queue");
    a.pool = !strcmp(a.kind, "pool");
    if (!a.bq && !a.sq && !a.pool)
        return usage_error("unknown kind '%s' (buffer-queue, simple-queue or pool)", a.kind);
    /* options after the name: parse argv[2..] as its own vector (argv[2],
     * the name, stands where getopt expects the program name) */
    int oargc = argc - 2;
    char **oargv = argv + 2;
    optind = 0; /* glibc: start over */
    int c, r;
    while ((c = getopt_long(oargc, oargv, "", opts, NULL)) != -1)
        if ((r = create_option(ctl, &a, c)) != EXIT_OK)
            return r;
    if (optind < oargc)
        return usage_error("unexpected argument '%s'", oargv[optind]);
    if ((r = create_check(&a)) != EXIT_OK)
        return r;

    if ((r = ctl_connect(ctl)))
        return r;
    r = create_object(ctl, &a);
    if (r < 0)
        return fail("create", a.name, r);
    if (ctl->json) {
        fputs("{\"created\":", stdout);
        json_str(stdout, a.name);
        printf(",\"kind\":\"%s\"}\n", a.kind);
    }
    return EXIT_OK;
}

static int cmd_unlink(struct ctl *ctl, const char *name)
{
    int r = mbq_unlink(ctl->client, name);
    if (r < 0)
        return fail("unlink", name, r);
    if (ctl->json) {
        fputs("{\"unlinked\":", stdout);
        json_str(stdout, name);
        fputs("}\n", stdout);
    }
    return EXIT_OK;
}

/* ---- watch ------------------------------------------------------------------------- */

struct watch_prev {
    char name[256];
    mbq_object_kind kind;
    uint64_t object_id;
    uint64_t in, out; /* enqueued/dequeued, or allocations/frees */
};

struct watch_row {
    mbq_object_info info;
    double in_rate, out_rate; /* NAN on the first sample of an object */
};

static double now_seconds(void)
{
    return (double)mono_ns() / 1e9;
}

static uint64_t depth_of(const mbq_object_info *o)
{
    switch (o->kind) {
    case MBQ_OBJECT_BUFFER_QUEUE: return o->count;
    case MBQ_OBJECT_SIMPLE_QUEUE: return o->sq_count > 0 ? (uint64_t)o->sq_count : 0;
    case MBQ_OBJECT_POOL: return o->blocks_used;
    default: return 0;
    }
}

static uint64_t capacity_of(const mbq_object_info *o)
{
    switch (o->kind) {
    case MBQ_OBJECT_BUFFER_QUEUE: return o->capacity;
    case MBQ_OBJECT_SIMPLE_QUEUE: return o->sq_capacity > 0 ? (uint64_t)o->sq_capacity : 0;
    case MBQ_OBJECT_POOL: return o->block_count;
    default: return 0;
    }
}

static void counters_of(const mbq_object_info *o, uint64_t *in, uint64_t *out)
{
    *in = o->kind == MBQ_OBJECT_POOL ? o->allocations : o->enqueued;
    *out = o->kind == MBQ_OBJECT_POOL ? o->frees : o->dequeued;
}

static void format_rate(char *buf, size_t len, double v)
{
    if (isnan(v))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.1f", v);
}

static void print_watch_table(const struct watch_row *rows, size_t n, unsigned sample,
                              bool tty)
{
    if (tty)
        fputs("\033[H\033[2J", stdout);
    else if (sample > 1)
        fputc('\n', stdout);
    printf("%-32s %-13s %8s %8s %10s %10s %8s  %s\n", "NAME", "KIND", "DEPTH", "CAP", "IN/s",
           "OUT/s", "DROPS", "HELD BY CLIENT");
    for (size_t i = 0; i < n; i++) {
        const mbq_object_info *o = &rows[i].info;
        char in[32], out[32], held[512] = "";
        format_rate(in, sizeof(in), rows[i].in_rate);
        format_rate(out, sizeof(out), rows[i].out_rate);
        size_t used = 0, max = sizeof(o->clients) / sizeof(o->clients[0]);
        for (size_t k = 0; k < o->client_count && k < max && used < sizeof(held); k++) {
            const mbq_client_usage *u = &o->clients[k];
            if (o->kind != MBQ_OBJECT_POOL)
                continue;
            int w = snprintf(held + used, sizeof(held) - used, "%s%u(%s)=%" PRIu64,
                             used ? " " : "", u->pid, u->name, u->buffers_held);
            if (w < 0)
                break;
            used += (size_t)w;
        }
        char drops[32] = "-";
        if (o->kind == MBQ_OBJECT_BUFFER_QUEUE)
            snprintf(drops, sizeof(drops), "%" PRIu64, o->dropped);
        printf("%-32s %-13s %8" PRIu64 " %8" PRIu64 " %10s %10s %8s  %s\n", o->name,
               kind_name(o->kind), depth_of(o), capacity_of(o), in, out, drops, held);
    }
    fflush(stdout);
}

static void print_watch_json(const struct watch_row *rows, size_t n, unsigned sample,
                             double elapsed)
{
    printf("{\"sample\":%u,\"time\":", sample);
    json_num(stdout, elapsed);
    fputs(",\"objects\":[", stdout);
    for (size_t i = 0; i < n; i++) {
        const mbq_object_info *o = &rows[i].info;
        fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
        json_str(stdout, o->name);
        printf(",\"kind\":\"%s\",\"depth\":%" PRIu64 ",\"capacity\":%" PRIu64, kind_name(o->kind),
               depth_of(o), capacity_of(o));
        if (o->kind != MBQ_OBJECT_SIMPLE_QUEUE) {
            bool pool = o->kind == MBQ_OBJECT_POOL;
            fputs(pool ? ",\"alloc_rate\":" : ",\"enqueue_rate\":", stdout);
            json_num(stdout, rows[i].in_rate);
            fputs(pool ? ",\"free_rate\":" : ",\"dequeue_rate\":", stdout);
            json_num(stdout, rows[i].out_rate);
        }
        if (o->kind == MBQ_OBJECT_BUFFER_QUEUE)
            printf(",\"dropped\":%" PRIu64 ",\"rejected_full\":%" PRIu64, o->dropped,
                   o->rejected_full);
        json_clients(stdout, o);
        fputs("}", stdout);
    }
    fputs("]}\n", stdout);
    fflush(stdout);
}

static volatile sig_atomic_t watch_stop;

static void on_signal(int sig)
{
    (void)sig;
    watch_stop = 1;
}

/* The state of `watch` between samples. */
struct watch {
    char **names; /* the objects named on the command line; none: all */
    size_t nnames;
    mbq_object_info *listed; /* without names: what mbq_list gave */
    struct watch_row *rows;
    size_t nrows;
    struct watch_prev *prev; /* the counters of the last sample */
    size_t nprev;
};

static void watch_done(struct watch *w)
{
    free(w->prev);
    free(w->rows);
    free(w->listed);
}

/* Without names: every object now, into w->listed, and their count into
 * *n. EXIT_OK, or fail()'s status. */
static int watch_list(struct ctl *ctl, struct watch *w, size_t *n)
{
    size_t max = 256;
    int got;
    for (;;) {
        free(w->listed);
        w->listed = calloc(max, sizeof(*w->listed));
        if (!w->listed)
            return fail("watch", NULL, -ENOMEM);
        w->listed[0].size = sizeof(*w->listed);
        got = mbq_list(ctl->client, NULL, w->listed, max);
        if (got < 0 || (size_t)got <= max)
            break;
        max = (size_t)got + 16;
    }
    if (got < 0)
        return fail("watch: list", NULL, got);
    *n = (size_t)got;
    return EXIT_OK;
}

/* The rates of row against the last sample (dt seconds ago). A simple queue
 * keeps no counters: no rates. */
static void watch_rates(const struct watch *w, struct watch_row *row, double dt)
{
    row->in_rate = row->out_rate = NAN;
    uint64_t in, out;
    counters_of(&row->info, &in, &out);
    for (size_t k = 0; k < w->nprev && row->info.kind != MBQ_OBJECT_SIMPLE_QUEUE; k++) {
        if (w->prev[k].object_id == row->info.object_id && w->prev[k].kind == row->info.kind &&
            dt > 0) {
            row->in_rate = (double)(in - w->prev[k].in) / dt;
            row->out_rate = (double)(out - w->prev[k].out) / dt;
        }
    }
}

/* One sample: stat every object into w->rows, with rates; then remember
 * the counters for the next. */
static int watch_sample(struct ctl *ctl, struct watch *w, double dt)
{
    size_t n = w->nnames;
    int r;
    if (!w->nnames && (r = watch_list(ctl, w, &n)) != EXIT_OK)
        return r;
    free(w->rows);
    w->rows = calloc(n ? n : 1, sizeof(*w->rows));
    if (!w->rows)
        return fail("watch", NULL, -ENOMEM);
    w->nrows = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = w->nnames ? w->names[i] : w->listed[i].name;
        struct watch_row *row = &w->rows[w->nrows];
        row->info.size = sizeof(row->info);
        r = mbq_stat(ctl->client, name, &row->info);
        if (r == -ENOENT && !w->nnames)
            continue; /* went away since the list */
        if (r < 0)
            return fail("watch: stat", name, r);
        watch_rates(w, row, dt);
        w->nrows++;
    }
    free(w->prev);
    w->prev = calloc(w->nrows ? w->nrows : 1, sizeof(*w->prev));
    if (!w->prev)
        return fail("watch", NULL, -ENOMEM);
    for (size_t i = 0; i < w->nrows; i++) {
        w->prev[i].kind = w->rows[i].info.kind;
        w->prev[i].object_id = w->rows[i].info.object_id;
        counters_of(&w->rows[i].info, &w->prev[i].in, &w->prev[i].out);
    }
    w->nprev = w->nrows;
    return EXIT_OK;
}

static int watch_options(struct ctl *ctl, int argc, char **argv, uint64_t *interval_ms,
                         uint64_t *count)
{
    static const struct option opts[] = {
        {"interval", required_argument, NULL, 'i'},
        {"count", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {0},
    };
    optind = 0; /* glibc: start over on the command's own vector */
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            if (!parse_u64(optarg, 3600000, false, interval_ms) || *interval_ms == 0)
                return usage_error("bad --interval '%s' (milliseconds)", optarg);
            break;
        case 'n':
            if (!parse_u64(optarg, UINT32_MAX, false, count) || *count == 0)
                return usage_error("bad --count '%s'", optarg);
            break;
        case 'j': ctl->json = true; break;
        case 's': ctl->socket = optarg; break;
        default: return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

static int cmd_watch(struct ctl *ctl, int argc, char **argv)
{
    uint64_t interval_ms = 1000, count = 0;
    int r = watch_options(ctl, argc, argv, &interval_ms, &count);
    if (r != EXIT_OK)
        return r;
    struct watch w = {.names = argv + optind, .nnames = (size_t)(argc - optind)};
    if ((r = ctl_connect(ctl)))
        return r;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    bool tty = !ctl->json && isatty(STDOUT_FILENO);
    double start = now_seconds(), last = start;
    int status = EXIT_OK;
    for (unsigned sample = 1; !watch_stop; sample++) {
        double now = now_seconds();
        if ((status = watch_sample(ctl, &w, now - last)) != EXIT_OK)
            break;
        last = now;
        if (ctl->json)
            print_watch_json(w.rows, w.nrows, sample, now - start);
        else
            print_watch_table(w.rows, w.nrows, sample, tty);
        if (count && sample >= count)
            break;
        struct timespec ts = {.tv_sec = (time_t)(interval_ms / 1000),
                              .tv_nsec = (long)(interval_ms % 1000) * 1000000L};
        while (!watch_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    watch_done(&w);
    return status;
}

/* ---- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    struct ctl ctl = {0};
    int c;
    /* "+": stop at the command; its own options follow it */
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 's': ctl.socket = optarg; break;
        case 'j': ctl.json = true; break;
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        case 'V':
            printf("mbqctl %d.%d.%d (libmbq %d.%d.%d, protocol %d)\n", MBQ_VERSION_MAJOR,
                   MBQ_VERSION_MINOR, MBQ_VERSION_PATCH, MBQ_VERSION_MAJOR, MBQ_VERSION_MINOR,
                   MBQ_VERSION_PATCH, MBQ_PROTOCOL_VERSION);
            return EXIT_OK;
        default: fputs("Try 'mbqctl --help'.\n", stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return usage_error("%s", "no command given");
    const char *cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    int status;

    if (!strcmp(cmd, "create")) {
        status = cmd_create(&ctl, sub_argc, sub_argv);
    } else if (!strcmp(cmd, "watch")) {
        status = cmd_watch(&ctl, sub_argc, sub_argv);
    } else if (!strcmp(cmd, "list") || !strcmp(cmd, "stat") || !strcmp(cmd, "unlink") ||
               !strcmp(cmd, "usage")) {
        /* these take at most one operand and the global options */
        static const struct option sub[] = {
            {"json", no_argument, NULL, 'j'},
            {"socket", required_argument, NULL, 's'},
            {0},
        };
        optind = 0;
        while ((c = getopt_long(sub_argc, sub_argv, "", sub, NULL)) != -1) {
            if (c == 'j')
                ctl.json = true;
            else if (c == 's')
                ctl.socket = optarg;
            else
                return EXIT_USAGE;
        }
        int operands = sub_argc - optind;
        const char *arg = operands ? sub_argv[optind] : NULL;
        bool is_list = !strcmp(cmd, "list");
        if (operands > 1)
            return usage_error("too many arguments for %s", cmd);
        bool is_usage = !strcmp(cmd, "usage");
        if (is_usage && arg)
            return usage_error("%s takes no arguments", cmd);
        if (!is_list && !is_usage && !arg)
            return usage_error("%s needs a NAME", cmd);
        status = ctl_connect(&ctl);
        if (status == EXIT_OK) {
            if (is_list)
                status = cmd_list(&ctl, arg);
            else if (is_usage)
                status = cmd_usage(&ctl);
            else if (!strcmp(cmd, "stat"))
                status = cmd_stat(&ctl, arg);
            else
                status = cmd_unlink(&ctl, arg);
        }
    } else {
        return usage_error("unknown command '%s'", cmd);
    }
    mbq_disconnect(ctl.client);
    if (fflush(stdout) != 0 && status == EXIT_OK) {
        fprintf(stderr, "mbqctl: cannot write output: %s\n", strerror(errno));
        status = EXIT_FAIL;
    }
    return status;
}
