/* mbq-demo: runs the demo pipeline (capture -> encode, capture -> preview)
 * and says whether it worked.
 *
 * Unless $MBQ_SOCKET names a daemon that answers, it starts its own mbqd on a
 * socket in a fresh temporary directory (its log goes there too) and stops it
 * at the end. It starts mbq-encode and mbq-preview first (they wait for their
 * queues to appear), then mbq-capture, each with $MBQ_SOCKET set and in its
 * own process group, so that Ctrl-C reaches only the launcher: the first
 * Ctrl-C asks capture to stop (it marks end of data and the consumers drain
 * their queues), a second stops everything, a third kills.
 *
 * When all three are done it reads the small reports they wrote, the pool's
 * and queues' counters from the daemon (what `mbqctl stat` shows), prints a
 * summary and exits 0 only if every process succeeded, every captured frame
 * reached the encoder intact and in order, the preview lost nothing beyond
 * its queue's drops, and every buffer went back to the pool. */
#include "pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MBQ_DEMO_MBQD
#define MBQ_DEMO_MBQD ""
#endif
#ifndef MBQ_DEMO_MBQCTL
#define MBQ_DEMO_MBQCTL ""
#endif

#define DRAIN_LIMIT_NS 15000000000ull  /* consumers' time to finish once capture is done */
#define DAEMON_START_NS 5000000000ull
#define DAEMON_STOP_NS 5000000000ull
#define DIR_MAX 1024 /* leaves room in PATH_MAX for the file names we append */

enum { CAPTURE, ENCODE, PREVIEW, NPROC };
static const char *const proc_names[NPROC] = {"capture", "encode", "preview"};

struct child {
    pid_t pid;     /* 0 once reaped */
    int status;    /* from waitpid */
    bool started, exited;
};

struct demo {
    uint32_t frames, fps, preview_fps, encode_delay_ms;
    const char *corrupt_frame; /* for tests: passed to capture */
    const char *order;
    char dir[DIR_MAX];    /* our temporary directory */
    char socket[PATH_MAX];
    char bindir[DIR_MAX]; /* where mbq-demo and its programs are */
    char reports[NPROC][PATH_MAX];
    bool own_daemon;
    bool keep_dir; /* keep reports and the daemon's log when the run fails */
    struct child daemon;
    struct child kids[NPROC];
    mbq_client *client;
    sigset_t sigs; /* blocked in the launcher, taken with sigtimedwait */
    int interrupts;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mbq-demo [OPTIONS]\n"
            "Runs the mbq demo pipeline and checks it: mbq-capture makes 1920x1080 NV12\n"
            "frames into the pool demo/frames and two buffer queues: demo/encode (never\n"
            "drops), read by mbq-encode, which checks every frame, and demo/preview (drops\n"
            "the oldest), read by mbq-preview, which shows the newest.\n"
            "  --frames N         frames to capture (default 600 = 10 s; 0: until Ctrl-C)\n"
            "  --fps N            capture rate (default 60)\n"
            "  --preview-fps N    preview refresh rate (default 30; 0: as fast as it can)\n"
            "  --order fifo|pts   demo/encode's order (default fifo; pts: sorted by PTS)\n"
            "  --slow-encoder MS  the encoder spends MS ms more per frame, so that capture\n"
            "                     must wait for it (back-pressure: nothing is dropped)\n"
            "  --corrupt-frame N  for tests: capture damages frame N after its checksum\n"
            "  --no-keep          remove the temporary directory even if the run fails\n"
            "A private mbqd runs in a temporary directory unless $MBQ_SOCKET names a\n"
            "running one. Ctrl-C stops the capture; the queues drain, then the summary.\n"
            "Exit status: 0 if every frame reached the encoder intact and in order and\n"
            "every buffer went back to the pool; 1 otherwise; 2 for bad usage.\n");
}

/* ---- processes ---------------------------------------------------------------- */

/* Forks and execs argv with stdout/stderr as given (-1: inherit). The child
 * gets its own process group (Ctrl-C is the launcher's to handle) and
 * SIGTERM if the launcher dies. */
static pid_t spawn(struct demo *d, char *const argv[], int out_fd)
{
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "mbq-demo: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        setpgid(pid, pid); /* also in the child: whichever runs first */
        return pid;
    }
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    sigprocmask(SIG_UNBLOCK, &d->sigs, NULL);
    if (out_fd >= 0) {
        dup2(out_fd, STDOUT_FILENO);
        dup2(out_fd, STDERR_FILENO);
    }
    if (strchr(argv[0], '/'))
        execv(argv[0], argv);
    else
        execvp(argv[0], argv);
    fprintf(stderr, "mbq-demo: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static struct child *child_by_pid(struct demo *d, pid_t pid)
{
    if (d->daemon.pid == pid)
        return &d->daemon;
    for (int i = 0; i < NPROC; i++)
        if (d->kids[i].pid == pid)
            return &d->kids[i];
    return NULL;
}

/* Reaps whatever exited; true if anything did. */
static bool reap(struct demo *d)
{
    bool any = false;
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0)
            return any;
        struct child *ch = child_by_pid(d, pid);
        if (ch) {
            ch->status = st;
            ch->exited = true;
            ch->pid = 0;
            any = true;
        }
    }
}

static bool running(const struct child *ch)
{
    return ch->started && !ch->exited;
}

static void signal_child(const struct child *ch, int sig)
{
    if (running(ch) && ch->pid > 0)
        kill(ch->pid, sig);
}

static bool child_ok(const struct child *ch)
{
    return ch->exited && WIFEXITED(ch->status) && WEXITSTATUS(ch->status) == 0;
}

static void describe_status(const struct child *ch, char *buf, size_t len)
{
    if (!ch->started)
        snprintf(buf, len, "not started");
    else if (!ch->exited)
        snprintf(buf, len, "still running");
    else if (WIFEXITED(ch->status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(ch->status));
    else if (WIFSIGNALED(ch->status))
        snprintf(buf, len, "killed by SIG%s", sigabbrev_np(WTERMSIG(ch->status)) ?: "?");
    else
        snprintf(buf, len, "status %#x", ch->status);
}

/* Waits for one signal or timeout_ns; handles Ctrl-C (and SIGTERM) and
 * reaps children. */
static void wait_events(struct demo *d, uint64_t timeout_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u),
                          .tv_nsec = (long)(timeout_ns % 1000000000u)};
    int sig = sigtimedwait(&d->sigs, NULL, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
        d->interrupts++;
        if (d->interrupts == 1 && running(&d->kids[CAPTURE])) {
            printf("\nmbq-demo: stopping: capture marks end of data, encode and preview "
                   "drain their queues (Ctrl-C again to stop at once)\n");
            signal_child(&d->kids[CAPTURE], SIGTERM);
        } else if (d->interrupts <= 2) {
            printf("\nmbq-demo: stopping every process now\n");
            for (int i = 0; i < NPROC; i++)
                signal_child(&d->kids[i], SIGTERM);
        } else {
            for (int i = 0; i < NPROC; i++)
                signal_child(&d->kids[i], SIGKILL);
        }
    }
    reap(d);
}

/* ---- the daemon ------------------------------------------------------------------ */

/* The program to run for name: $env if set, else the path the build knows,
 * else the one next to mbq-demo, else name itself (looked up in $PATH). */
static void find_program(const struct demo *d, const char *env, const char *built,
                         const char *name, char *buf, size_t len)
{
    const char *e = getenv(env);
    char sibling[PATH_MAX];
    snprintf(sibling, sizeof(sibling), "%s/%s", d->bindir, name);
    if (e && *e)
        snprintf(buf, len, "%s", e);
    else if (*built && access(built, X_OK) == 0)
        snprintf(buf, len, "%s", built);
    else if (access(sibling, X_OK) == 0)
        snprintf(buf, len, "%s", sibling);
    else
        snprintf(buf, len, "%s", name);
}

static void print_file_tail(const char *path, int max_lines)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char lines[32][256];
    int n = 0;
    if (max_lines > 32)
        max_lines = 32;
    while (fgets(lines[n % max_lines], sizeof(lines[0]), f))
        n++;
    fclose(f);
    for (int i = n > max_lines ? n - max_lines : 0; i < n; i++)
        fprintf(stderr, "  | %s", lines[i % max_lines]);
}

/* Connects to $MBQ_SOCKET's daemon if one answers, else starts mbqd on a
 * socket in our directory and waits until it serves. */
static int connect_or_start_daemon(struct demo *d)
{
    const char *env = getenv("MBQ_SOCKET");
    if (env && *env) {
        int r = mbq_connect(env, "mbq-demo", &d->client);
        if (r == 0) {
            snprintf(d->socket, sizeof(d->socket), "%s", env);
            return 0;
        }
        printf("mbq-demo: no daemon answers on MBQ_SOCKET=%s (%s); starting a private one\n",
               env, mbq_status_string(r));
    }
    /* Our daemon is not a systemd service, even if we run under one. */
    static const char *const sd_vars[] = {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
                                          "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"};
    for (size_t i = 0; i < sizeof(sd_vars) / sizeof(sd_vars[0]); i++)
        unsetenv(sd_vars[i]);

    char mbqd[PATH_MAX], log[PATH_MAX + 16];
    find_program(d, "MBQD", MBQ_DEMO_MBQD, "mbqd", mbqd, sizeof(mbqd));
    snprintf(d->socket, sizeof(d->socket), "%s/mbqd.sock", d->dir);
    snprintf(log, sizeof(log), "%s/mbqd.log", d->dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "mbq-demo: cannot create %s: %s\n", log, strerror(errno));
        return -1;
    }
    char *argv[] = {mbqd, "--socket", d->socket, NULL};
    d->daemon.pid = spawn(d, argv, fd);
    close(fd);
    if (d->daemon.pid < 0)
        return -1;
    d->daemon.started = true;
    d->own_daemon = true;

    uint64_t deadline = mono_ns() + DAEMON_START_NS;
    int r;
    while ((r = mbq_connect(d->socket, "mbq-demo", &d->client)) < 0) {
        wait_events(d, 20000000u);
        if (d->daemon.exited || d->interrupts || mono_ns() > deadline) {
            char st[64];
            describe_status(&d->daemon, st, sizeof(st));
            if (d->interrupts)
                fprintf(stderr, "mbq-demo: interrupted while starting mbqd\n");
            else
                fprintf(stderr, "mbq-demo: %s did not start serving on %s (%s; last error: %s)\n",
                        mbqd, d->socket, st, mbq_status_string(r));
            fprintf(stderr, "mbq-demo: mbqd's log (%s):\n", log);
            print_file_tail(log, 20);
            return -1;
        }
    }
    return 0;
}

static void stop_daemon(struct demo *d)
{
    if (!running(&d->daemon))
        return;
    signal_child(&d->daemon, SIGTERM);
    uint64_t deadline = mono_ns() + DAEMON_STOP_NS;
    while (running(&d->daemon) && mono_ns() < deadline)
        wait_events(d, 50000000u);
    if (running(&d->daemon)) {
        fprintf(stderr, "mbq-demo: mbqd did not stop within %llu s of SIGTERM; killing it\n",
                DAEMON_STOP_NS / 1000000000ull);
        signal_child(&d->daemon, SIGKILL);
        while (running(&d->daemon))
            wait_events(d, 50000000u);
        d->daemon.status = -1; /* counts as a failure whatever the kill says */
    }
}

/* ---- the pipeline ------------------------------------------------------------------ */

static int start_pipeline(struct demo *d)
{
    char prog[NPROC][PATH_MAX], num[4][16];
    for (int i = 0; i < NPROC; i++) {
        snprintf(prog[i], sizeof(prog[i]), "%s/mbq-%s", d->bindir, proc_names[i]);
        snprintf(d->reports[i], sizeof(d->reports[i]), "%s/%s.report", d->dir, proc_names[i]);
    }
    snprintf(num[0], sizeof(num[0]), "%u", d->frames);
    snprintf(num[1], sizeof(num[1]), "%u", d->fps);
    snprintf(num[2], sizeof(num[2]), "%u", d->preview_fps);
    snprintf(num[3], sizeof(num[3]), "%u", d->encode_delay_ms);
    char *argv[NPROC][12] = {
        [CAPTURE] = {prog[CAPTURE], "--frames", num[0], "--fps", num[1], "--order",
                     (char *)d->order, "--report", d->reports[CAPTURE],
                     d->corrupt_frame ? "--corrupt-frame" : NULL, (char *)d->corrupt_frame,
                     NULL},
        [ENCODE] = {prog[ENCODE], "--delay-ms", num[3], "--report", d->reports[ENCODE], NULL},
        [PREVIEW] = {prog[PREVIEW], "--fps", num[2], "--report", d->reports[PREVIEW], NULL},
    };
    /* The consumers first: they wait for capture to create their queues. */
    static const int order[NPROC] = {ENCODE, PREVIEW, CAPTURE};
    for (int k = 0; k < NPROC; k++) {
        int i = order[k];
        pid_t pid = spawn(d, argv[i], -1);
        if (pid < 0)
            return -1;
        d->kids[i].pid = pid;
        d->kids[i].started = true;
    }
    return 0;
}

/* After a failed capture: makes sure the consumers see end of data (or,
 * if their queue never came to be, stops them). */
static void end_queues_for_consumers(struct demo *d)
{
    static const char *const queues[NPROC] = {NULL, PIPELINE_ENCODE_QUEUE,
                                              PIPELINE_PREVIEW_QUEUE};
    for (int i = ENCODE; i <= PREVIEW; i++) {
        if (!running(&d->kids[i]))
            continue;
        mbq_buffer_queue *q;
        if (mbq_buffer_queue_open(d->client, queues[i], &q) == 0) {
            if (!mbq_buffer_queue_contains_end_of_data(q)) {
                printf("mbq-demo: capture did not mark end of data on %s; marking it\n",
                       queues[i]);
                mbq_buffer_queue_mark_end_of_data(q);
            }
            mbq_buffer_queue_close(q);
        } else {
            signal_child(&d->kids[i], SIGTERM);
        }
    }
}

static bool reached_end_of_data(const struct demo *d, int i)
{
    uint64_t v = 0;
    return report_get(d->reports[i], "end_of_data", &v) && v == 1;
}

static void run_pipeline(struct demo *d)
{
    bool capture_seen_done = false, consumer_failed_noted = false;
    int drain_stage = 0;
    uint64_t capture_done_ns = 0;
    while (running(&d->kids[CAPTURE]) || running(&d->kids[ENCODE]) ||
           running(&d->kids[PREVIEW])) {
        wait_events(d, 100000000u);
        uint64_t now = mono_ns();
        if (!capture_seen_done && !running(&d->kids[CAPTURE])) {
            capture_seen_done = true;
            capture_done_ns = now;
            if (!child_ok(&d->kids[CAPTURE]))
                end_queues_for_consumers(d);
        }
        /* A consumer that stopped before end of data leaves capture without
         * a reader (one that got there may exit before capture does). */
        for (int i = ENCODE; i <= PREVIEW; i++)
            if (d->kids[i].exited && !child_ok(&d->kids[i]) && running(&d->kids[CAPTURE]) &&
                !reached_end_of_data(d, i) && !consumer_failed_noted) {
                consumer_failed_noted = true;
                printf("mbq-demo: %s failed; stopping capture\n", proc_names[i]);
                signal_child(&d->kids[CAPTURE], SIGTERM);
            }
        if (capture_seen_done && drain_stage < 2 &&
            now - capture_done_ns > DRAIN_LIMIT_NS + (uint64_t)drain_stage * 3000000000ull) {
            fprintf(stderr, "mbq-demo: %s did not finish %llu s after capture; %s\n",
                    running(&d->kids[ENCODE]) ? "encode" : "preview",
                    DRAIN_LIMIT_NS / 1000000000ull, drain_stage ? "killing" : "stopping it");
            for (int i = ENCODE; i <= PREVIEW; i++)
                signal_child(&d->kids[i], drain_stage ? SIGKILL : SIGTERM);
            drain_stage++;
        }
    }
}

/* ---- the summary ---------------------------------------------------------------------- */

struct report_values {
    bool present;
    uint64_t frames, errors, dropped, next_number, end_of_data;
    uint64_t p50, p99, max, queue_p50;
    uint64_t waited, late, elapsed_ns;
};

static void load_report(const char *path, struct report_values *v)
{
    memset(v, 0, sizeof(*v));
    v->present = report_get(path, "frames", &v->frames);
    report_get(path, "errors", &v->errors);
    report_get(path, "dropped", &v->dropped);
    report_get(path, "next_number", &v->next_number);
    report_get(path, "end_of_data", &v->end_of_data);
    report_get(path, "latency_p50_ns", &v->p50);
    report_get(path, "latency_p99_ns", &v->p99);
    report_get(path, "latency_max_ns", &v->max);
    report_get(path, "queue_wait_p50_ns", &v->queue_p50);
    report_get(path, "waited", &v->waited);
    report_get(path, "late", &v->late);
    report_get(path, "elapsed_ns", &v->elapsed_ns);
}

struct verdict {
    int failures;
    char text[1024];
};

static void fail_because(struct verdict *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail_because(struct verdict *v, const char *fmt, ...)
{
    size_t used = strlen(v->text);
    if (used + 3 >= sizeof(v->text))
        return;
    if (v->failures++)
        used += (size_t)snprintf(v->text + used, sizeof(v->text) - used, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->text + used, sizeof(v->text) - used, fmt, ap);
    va_end(ap);
}

static const char *lat_text(char *buf, size_t len, const struct report_values *r)
{
    char a[32], b[32], c[32], q[32];
    snprintf(buf, len, "latency p50 %s, p99 %s, max %s (in the queue p50 %s)",
             fmt_ns(a, sizeof(a), r->p50), fmt_ns(b, sizeof(b), r->p99),
             fmt_ns(c, sizeof(c), r->max), fmt_ns(q, sizeof(q), r->queue_p50));
    return buf;
}

/* Reads what the summary needs from the daemon, then unlinks the demo's
 * objects (they are per run) and stops the daemon if it is ours. */
static int summarise(struct demo *d)
{
    struct report_values rep[NPROC];
    for (int i = 0; i < NPROC; i++)
        load_report(d->reports[i], &rep[i]);
    /* The queues go first: frames still in them (if a consumer died) hold
     * pool blocks until the queues are destroyed. Then every block must be
     * back in the pool. */
    mbq_object_info pool = {.size = sizeof(pool)}, pq = {.size = sizeof(pq)};
    int pq_r = mbq_stat(d->client, PIPELINE_PREVIEW_QUEUE, &pq);
    mbq_unlink(d->client, PIPELINE_ENCODE_QUEUE);
    mbq_unlink(d->client, PIPELINE_PREVIEW_QUEUE);
    int pool_r = mbq_stat(d->client, PIPELINE_POOL, &pool);
    mbq_unlink(d->client, PIPELINE_POOL);
    mbq_disconnect(d->client);
    d->client = NULL;
    stop_daemon(d);

    struct verdict v = {0};
    char buf[256], st[64];
    const struct report_values *cap = &rep[CAPTURE], *enc = &rep[ENCODE], *pre = &rep[PREVIEW];
    printf("\n---- summary ---------------------------------------------------------------\n");

    if (cap->present) {
        double secs = (double)cap->elapsed_ns / 1e9;
        printf("capture   %llu frame%s in %.2f s (%.1f fps); waited for the encoder %llu time%s\n",
               (unsigned long long)cap->frames, plural(cap->frames), secs,
               secs > 0 ? (double)cap->frames / secs : 0.0, (unsigned long long)cap->waited,
               plural(cap->waited));
    } else {
        printf("capture   no report\n");
    }
    if (enc->present) {
        printf("encode    %llu of %llu frames intact and in order, %llu error%s; %s\n",
               (unsigned long long)enc->frames, (unsigned long long)cap->frames,
               (unsigned long long)enc->errors, plural(enc->errors),
               lat_text(buf, sizeof(buf), enc));
    } else {
        printf("encode    no report\n");
    }
    if (pre->present) {
        printf("preview   %llu frame%s shown, %llu dropped (its queue dropped %s), %llu error%s; "
               "%s\n",
               (unsigned long long)pre->frames, plural(pre->frames),
               (unsigned long long)pre->dropped,
               pq_r == 0 ? (snprintf(st, sizeof(st), "%llu", (unsigned long long)pq.dropped), st)
                         : "?",
               (unsigned long long)pre->errors, plural(pre->errors),
               lat_text(buf, sizeof(buf), pre));
    } else {
        printf("preview   no report\n");
    }
    if (pool_r == 0)
        printf("pool      %s: %llu allocations, %llu frees, %u of %u blocks in use\n",
               PIPELINE_POOL, (unsigned long long)pool.allocations,
               (unsigned long long)pool.frees, pool.blocks_used, pool.block_count);
    else
        printf("pool      cannot read %s's counters: %s\n", PIPELINE_POOL,
               mbq_status_string(pool_r));
    if (d->own_daemon) {
        describe_status(&d->daemon, st, sizeof(st));
        printf("daemon    private mbqd %s (%s)\n",
               child_ok(&d->daemon) ? "stopped cleanly" : "did not stop cleanly", st);
    } else {
        printf("daemon    shared mbqd at %s (left running)\n", d->socket);
    }

    for (int i = 0; i < NPROC; i++)
        if (!child_ok(&d->kids[i])) {
            describe_status(&d->kids[i], st, sizeof(st));
            fail_because(&v, "%s failed (%s)", proc_names[i], st);
        }
    if (d->own_daemon && !child_ok(&d->daemon)) {
        describe_status(&d->daemon, st, sizeof(st));
        fail_because(&v, "mbqd failed (%s)", st);
    }
    if (cap->present && enc->present) {
        if (enc->frames != cap->frames || enc->next_number != cap->frames)
            fail_because(&v, "only %llu of %llu frames reached the encoder intact",
                         (unsigned long long)enc->frames, (unsigned long long)cap->frames);
        if (enc->errors)
            fail_because(&v, "the encoder saw %llu bad frame%s", (unsigned long long)enc->errors,
                         plural(enc->errors));
        if (!enc->end_of_data)
            fail_because(&v, "the encoder did not reach end of data");
    }
    if (cap->present && pre->present) {
        if (pre->errors)
            fail_because(&v, "the preview saw %llu bad frame%s", (unsigned long long)pre->errors,
                         plural(pre->errors));
        /* The queue keeps the newest frames: the preview must see the last
         * one, and every frame it missed must be one its queue dropped. */
        if (pre->end_of_data && pre->next_number != cap->frames)
            fail_because(&v, "the preview's last frame was %lld, not %lld",
                         (long long)pre->next_number - 1, (long long)cap->frames - 1);
        if (pq_r == 0 && !pre->errors && pre->dropped != pq.dropped)
            fail_because(&v, "the preview missed %llu frames but its queue dropped %llu",
                         (unsigned long long)pre->dropped, (unsigned long long)pq.dropped);
    }
    if (pool_r == 0 && (pool.blocks_used != 0 || pool.allocations != pool.frees))
        fail_because(&v, "%u pool block%s never came back", pool.blocks_used,
                     plural(pool.blocks_used));
    if (pool_r != 0)
        fail_because(&v, "the pool's counters could not be read");

    if (v.failures && d->interrupts >= 2)
        printf("result    FAILED, as expected after a second Ctrl-C (queued frames were not "
               "encoded): %s\n", v.text);
    else if (v.failures)
        printf("result    FAILED: %s\n", v.text);
    else
        printf("result    OK: every frame reached the encoder intact and in order, and every "
               "buffer went back to the pool%s\n",
               d->interrupts ? " (stopped early by Ctrl-C)" : "");
    return v.failures ? 1 : 0;
}

/* ---- main ---------------------------------------------------------------------------- */

static void remove_dir(struct demo *d)
{
    static const char *const files[] = {"capture.report", "encode.report", "preview.report",
                                        "mbqd.log", "mbqd.sock"};
    char path[PATH_MAX + 32];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", d->dir, files[i]);
        unlink(path);
    }
    if (rmdir(d->dir) < 0)
        fprintf(stderr, "mbq-demo: could not remove %s: %s\n", d->dir, strerror(errno));
}

static bool find_bindir(struct demo *d)
{
    ssize_t n = readlink("/proc/self/exe", d->bindir, sizeof(d->bindir) - 1);
    if (n <= 0)
        return false;
    d->bindir[n] = 0;
    char *slash = strrchr(d->bindir, '/');
    if (!slash)
        return false;
    *slash = 0;
    return true;
}

int main(int argc, char **argv)
{
    static struct demo d = {.frames = 600, .fps = 60, .preview_fps = 30, .order = "fifo",
                            .keep_dir = true};
    static const struct option longopts[] = {
        {"frames", required_argument, NULL, 'n'},      {"fps", required_argument, NULL, 'f'},
        {"preview-fps", required_argument, NULL, 'p'}, {"order", required_argument, NULL, 'o'},
        {"slow-encoder", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
        {"corrupt-frame", required_argument, NULL, 'x'}, {"no-keep", no_argument, NULL, 'k'},
        {0},
    };
    for (int ch; (ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        bool ok = true;
        switch (ch) {
        case 'n': ok = parse_u32("--frames", optarg, 0, UINT32_MAX, &d.frames); break;
        case 'f': ok = parse_u32("--fps", optarg, 1, 1000, &d.fps); break;
        case 'p': ok = parse_u32("--preview-fps", optarg, 0, 1000, &d.preview_fps); break;
        case 's': ok = parse_u32("--slow-encoder", optarg, 0, 10000, &d.encode_delay_ms); break;
        case 'x': d.corrupt_frame = optarg; break; /* capture checks it */
        case 'k': d.keep_dir = false; break;
        case 'o':
            ok = strcmp(optarg, "fifo") == 0 || strcmp(optarg, "pts") == 0;
            if (ok)
                d.order = optarg;
            else
                fprintf(stderr, "--order: expected fifo or pts, got '%s'\n", optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: ok = false;
        }
        if (!ok) {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    pipeline_stdio_init();
    sigemptyset(&d.sigs);
    sigaddset(&d.sigs, SIGINT);
    sigaddset(&d.sigs, SIGTERM);
    sigaddset(&d.sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, &d.sigs, NULL);

    if (!find_bindir(&d)) {
        fprintf(stderr, "mbq-demo: cannot find my own directory\n");
        return 1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(d.dir, sizeof(d.dir), "%s/mbq-demo.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(d.dir)) {
        fprintf(stderr, "mbq-demo: cannot create a directory in %s: %s\n",
                tmp && *tmp ? tmp : "/tmp", strerror(errno));
        return 1;
    }
    if (connect_or_start_daemon(&d) < 0) {
        stop_daemon(&d);
        if (d.keep_dir)
            fprintf(stderr, "mbq-demo: kept %s for inspection\n", d.dir);
        else
            remove_dir(&d);
        return 1;
    }
    /* Objects left by an earlier run on a shared daemon would carry its
     * counters and state: start afresh. */
    static const char *const names[] = {PIPELINE_ENCODE_QUEUE, PIPELINE_PREVIEW_QUEUE,
                                        PIPELINE_POOL};
    if (!d.own_daemon)
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (mbq_unlink(d.client, names[i]) == 0)
                printf("mbq-demo: removed %s, left over from an earlier run\n", names[i]);
    setenv("MBQ_SOCKET", d.socket, 1);

    char mbqctl[PATH_MAX];
    find_program(&d, "MBQCTL", MBQ_DEMO_MBQCTL, "mbqctl", mbqctl, sizeof(mbqctl));
    double secs = (double)d.frames / d.fps;
    printf("mbq demo pipeline: ");
    if (d.frames)
        printf("%u frames (%.1f s)", d.frames, secs);
    else
        printf("until Ctrl-C");
    printf(" of 1920x1080 NV12 at %u fps\n", d.fps);
    char slow[48] = "";
    if (d.encode_delay_ms)
        snprintf(slow, sizeof(slow), ", +%u ms a frame", d.encode_delay_ms);
    printf("  capture --> %s (%s, capacity %d, never drops) --> encode (checks every frame%s)\n",
           PIPELINE_ENCODE_QUEUE, strcmp(d.order, "fifo") == 0 ? "FIFO" : "sorted by PTS",
           PIPELINE_ENCODE_CAPACITY, slow);
    printf("          --> %s (capacity %d, drops the oldest) --> preview (%u fps)\n",
           PIPELINE_PREVIEW_QUEUE, PIPELINE_PREVIEW_CAPACITY, d.preview_fps);
    printf("  frames live in the pool %s and are shared by both queues, never copied\n",
           PIPELINE_POOL);
    printf("  daemon: %s mbqd on %s\n", d.own_daemon ? "private" : "shared", d.socket);
    printf("  watch it from another terminal:  MBQ_SOCKET=%s %s watch\n", d.socket, mbqctl);
    printf("  Ctrl-C stops the capture; the queues drain and the summary follows.\n\n");

    int result = 1;
    if (start_pipeline(&d) == 0) {
        run_pipeline(&d);
        result = summarise(&d);
    } else {
        for (int i = 0; i < NPROC; i++)
            signal_child(&d.kids[i], SIGTERM);
        while (running(&d.kids[0]) || running(&d.kids[1]) || running(&d.kids[2]))
            wait_events(&d, 100000000u);
        mbq_disconnect(d.client);
        stop_daemon(&d);
    }
    if (result == 0 || !d.keep_dir)
        remove_dir(&d);
    else
        printf("mbq-demo: reports and mbqd's log kept in %s\n", d.dir);
    return result;
}
