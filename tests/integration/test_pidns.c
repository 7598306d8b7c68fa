/* Clients in different pid namespaces share a queue and a pool: one, in a
 * namespace of its own (unshare --pid --fork), holds the queue's tail lock
 * and two buffers of the pool and is killed with SIGKILL; another, in a
 * second namespace, gets -EBUSY while the holder lives, then gets through:
 * the lock is taken over, and the daemon reclaims the dead one's buffers.
 *
 * What makes it work is the daemon-assigned client id (shm/lock.h): a
 * thread id means another thread in each namespace, a client id means the
 * same process everywhere. The clients are this binary run again under
 * unshare (argv[1] "holder" or "peer"), driven through their stdin and
 * stdout. Where unshare is not permitted the test says why and passes. */
#include "harness.h"
#include "segments.h"

#include <lock_layout.h>
#include <bq_layout.h>
#include <seg_layout.h>

#include <inttypes.h>
#include <sys/mman.h>

#define BOUND_MS 20000

/* This binary's copy of shm/ is not libmbq's: it is told the identity the
 * library got, and the table, which the library mapped. */
static void adopt_library_identity(mbq_client *c)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return;
    char line[512];
    unsigned long lo = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "memfd:mbq-ids"))
            sscanf(line, "%lx", &lo); /* the last: the newest daemon's */
    fclose(f);
    if (lo)
        slock_set_identity(mbq_client_id(c), (const struct slock_ids *)lo);
}

static uint64_t object_id_of(mbq_client *c, const char *name)
{
    mbq_object_info info = {.size = sizeof info};
    return mbq_stat(c, name, &info) == 0 ? info.object_id : 0;
}

/* ---- the clients, in their namespaces ------------------------------------ */

static int holder_main(const char *sock)
{
    mbq_client *c;
    mbq_buffer_queue *q;
    mbq_pool *p;
    mbq_buffer b[2];
    if (mbq_connect(sock, "ns-holder", &c) != 0 || mbq_buffer_queue_open(c, "ns/q", &q) != 0 ||
        mbq_pool_open(c, "ns/pool", &p) != 0 || mbq_pool_allocate(p, 64, &b[0]) != 0 ||
        mbq_pool_allocate(p, 64, &b[1]) != 0)
        return 2;
    /* a client id, not a thread id */
    adopt_library_identity(c);
    uint32_t id = slock_identity();
    struct bq_shared *sh = test_segment_mapping(object_id_of(c, "ns/q"));
    if (!sh || id == 0)
        return 3;
    if (slock_lock(&sh->tail.lock.lock) < 0)
        return 4;
    printf("ready %u %u %d\n", id, atomic_load(&sh->tail.lock.lock.word), (int)getpid());
    fflush(stdout);
    for (;;)
        pause(); /* killed here, the lock and the buffers held */
}

static int peer_main(const char *sock)
{
    mbq_client *c;
    mbq_buffer_queue *q;
    mbq_pool *p;
    if (mbq_connect(sock, "ns-peer", &c) != 0 || mbq_buffer_queue_open(c, "ns/q", &q) != 0 ||
        mbq_pool_open(c, "ns/buf", &p) != 0)
        return 2;
    char cmd[32];
    while (fgets(cmd, sizeof cmd, stdin)) {
        bool until_ok = strncmp(cmd, "recover", 7) == 0;
        uint64_t t0 = h_now_ns();
        int r, tries = 0;
        do {
            mbq_buffer b;
            if ((r = mbq_pool_allocate(p, 64, &b)) != 0)
                break;
            r = mbq_buffer_queue_enqueue_and_release(q, b);
            if (r != 0)
                mbq_buffer_release(b);
            tries++;
        } while (until_ok && r == -EBUSY && h_now_ns() - t0 < (uint64_t)BOUND_MS * 1000000u);
        printf("%d %d %" PRIu64 " %u\n", r, tries, (h_now_ns() - t0) / 1000000u, mbq_client_id(c));
        fflush(stdout);
    }
    mbq_disconnect(c);
    return 0;
}

/* ---- the test --------------------------------------------------------------- */

struct nsproc {
    pid_t pid; /* unshare's; its child dies with it (--kill-child) */
    FILE *in, *out;
};

static const char *unshare_mode;

/* Whether unshare may make a pid namespace here, and with which options. */
static bool unshare_usable(void)
{
    static const char *modes[] = {"", "--user --map-root-user "};
    for (size_t i = 0; i < 2; i++) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "unshare %s--pid --fork --kill-child true >/dev/null 2>&1",
                 modes[i]);
        if (system(cmd) == 0) {
            unshare_mode = modes[i];
            return true;
        }
    }
    return false;
}

static int ns_start(struct nsproc *n, const char *self, const char *role, const char *sock)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in[0], 0);
        dup2(out[1], 1);
        const char *argv[16];
        int k = 0;
        argv[k++] = "unshare";
        if (*unshare_mode) {
            argv[k++] = "--user";
            argv[k++] = "--map-root-user";
        }
        argv[k++] = "--pid";
        argv[k++] = "--fork";
        argv[k++] = "--kill-child";
        argv[k++] = self;
        argv[k++] = role;
        argv[k++] = sock;
        argv[k] = NULL;
        execvp("unshare", (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    n->pid = pid;
    n->in = fdopen(in[1], "w");
    n->out = fdopen(out[0], "r");
    return n->in && n->out ? 0 : -1;
}

/* A line from the client within BOUND_MS, or false. */
static bool ns_line(struct nsproc *n, char *buf, size_t len)
{
    struct pollfd p = {.fd = fileno(n->out), .events = POLLIN};
    if (poll(&p, 1, BOUND_MS) != 1)
        return false;
    return fgets(buf, (int)len, n->out) != NULL;
}

static mbq_object_info stat_of(mbq_client *c, const char *name)
{
    mbq_object_info info = {.size = sizeof info};
    CHECK_STATUS(mbq_stat(c, name, &info), 0);
    return info;
}

static char self_exe[PATH_MAX];

static void test_clients_in_two_pid_namespaces(void)
{
    if (!unshare_usable()) {
        printf("# skipped: unshare --pid --fork is not permitted here\n");
        return;
    }
    struct mbqd d;
    REQUIRE(mbqd_start(&d) == 0);
    mbq_client *c;
    REQUIRE(mbq_connect(d.sock, "ns-test", &c) == 0);
    mbq_pool_options po = {.size = sizeof po, .block_size = 4096, .block_count = 8, .mode = 0666};
    mbq_pool *pool, *buf;
    REQUIRE(mbq_pool_create(c, "ns/pool", &po, &pool) == 0);
    REQUIRE(mbq_pool_create(c, "ns/buf", &po, &buf) == 0);
    mbq_buffer_queue_options qo = {.size = sizeof qo, .capacity = 8, .mode = 0666};
    mbq_buffer_queue *q;
    REQUIRE(mbq_buffer_queue_create(c, "ns/q", &qo, &q) == 0);

    struct nsproc h, p;
    REQUIRE(ns_start(&h, self_exe, "holder", d.sock) == 0);
    char line[128];
    REQUIRE(ns_line(&h, line, sizeof line));
    unsigned id = 0, word = 0;
    int inner_pid = 0;
    REQUIRE(sscanf(line, "ready %u %u %d", &id, &word, &inner_pid) == 3);
    printf("# the holder is pid %d in its namespace, client id %u; the tail lock word %#x\n",
           inner_pid, id, word);
    CHECK(word & SLOCK_CID);
    CHECK_EQ((word >> SLOCK_CID_SHIFT) & SLOCK_CID_MAX, id);
    CHECK_EQ(stat_of(c, "ns/pool").blocks_used, 2);

    REQUIRE(ns_start(&p, self_exe, "peer", d.sock) == 0);
    /* while the holder lives: the lock is held, the peer gets -EBUSY */
    fputs("try\n", p.in);
    fflush(p.in);
    REQUIRE(ns_line(&p, line, sizeof line));
    int r = 0, tries = 0;
    unsigned ms = 0, peer_id = 0;
    REQUIRE(sscanf(line, "%d %d %u %u", &r, &tries, &ms, &peer_id) == 4);
    CHECK_STATUS(r, -EBUSY);
    CHECK(peer_id != 0 && peer_id != id);
    printf("# the peer (client id %u, another namespace) got -EBUSY after %u ms\n", peer_id, ms);

    /* the holder dies holding the lock and two buffers */
    kill(h.pid, SIGKILL);
    CHECK(h_wait_pid(h.pid, BOUND_MS) == 128 + SIGKILL);
    fputs("recover\n", p.in);
    fflush(p.in);
    REQUIRE(ns_line(&p, line, sizeof line));
    REQUIRE(sscanf(line, "%d %d %u %u", &r, &tries, &ms, &peer_id) == 4);
    CHECK_STATUS(r, 0);
    printf("# after the holder's death the peer got through in %u ms (%d tries)\n", ms, tries);
    /* its buffers come back: its pool slot names its client id */
    bool reclaimed = false;
    for (uint64_t dl = h_now_ns() + (uint64_t)BOUND_MS * 1000000u;
         !reclaimed && h_now_ns() < dl;) {
        reclaimed = stat_of(c, "ns/pool").blocks_used == 0;
        if (!reclaimed)
            h_pause_us(10000);
    }
    CHECK(reclaimed);
    CHECK_EQ(stat_of(c, "ns/q").count, 1);

    fclose(p.in);
    CHECK_EQ(h_wait_pid(p.pid, BOUND_MS), 0);
    fclose(p.out);
    fclose(h.in);
    fclose(h.out);
    mbq_buffer_queue_close(q);
    mbq_pool_close(pool);
    mbq_pool_close(buf);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&d);
}

/* The liveness table cannot be written by a client: the descriptor the
 * daemon hands out is read-only, and so is every mapping of it. */
static void test_liveness_table_read_only(void)
{
    struct mbqd d;
    REQUIRE(mbqd_start(&d) == 0);
    mbq_client *c;
    REQUIRE(mbq_connect(d.sock, "ro-test", &c) == 0);
    CHECK(mbq_client_id(c) >= 2);
    int found = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    REQUIRE(f);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, "memfd:mbq-ids"))
            continue;
        found++;
        char perms[8];
        REQUIRE(sscanf(line, "%*s %7s", perms) == 1);
        CHECK(perms[1] == '-'); /* mapped without write */
        unsigned long lo, hi;
        REQUIRE(sscanf(line, "%lx-%lx", &lo, &hi) == 2);
        /* it cannot be made writable */
        CHECK(mprotect((void *)lo, 4096, PROT_READ | PROT_WRITE) < 0);
        /* nor written through the file reopened read-write (memfds can be,
         * through /proc, where permitted): the daemon sealed it */
        char path[96];
        snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", lo, hi);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        printf("# reopening the table read-write: %s\n", fd < 0 ? strerror(errno) : "allowed");
        if (fd >= 0) {
            void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            CHECK(m == MAP_FAILED);
            uint32_t one = 1;
            CHECK(pwrite(fd, &one, sizeof one, 8) < 0);
            close(fd);
        }
    }
    fclose(f);
    CHECK(found >= 1); /* one per daemon this process met */
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&d);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "holder") == 0)
        return holder_main(argv[2]);
    if (argc == 3 && strcmp(argv[1], "peer") == 0)
        return peer_main(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = 0;
    static const struct check_case cases[] = {CASE(test_clients_in_two_pid_namespaces),
                                              CASE(test_liveness_table_read_only)};
    return check_run(cases, sizeof cases / sizeof cases[0], argc > 1 ? 2 : 1, argv);
}
