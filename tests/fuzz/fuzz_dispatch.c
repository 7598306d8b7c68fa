/* libFuzzer target: the daemon's request dispatch, in process.
 *
 * Three sessions of different credentials (root; uid 1000 gid 1000; uid
 * 1001 gid 1000, so that group bits matter) share one registry, as clients
 * of one mbqd do. The input is a sequence of packets, each addressed to one
 * session:
 *     u8 selector   session = selector % 3; bit 7: end that session first
 *                   (as a hang-up would) and start a new one
 *     u16 length    little endian
 *     length bytes  the packet, as received from the socket
 * Each session starts with a valid Hello so that the fuzzer spends its time
 * past it. session_dispatch() runs exactly as in mbqd; what would go to the
 * socket (conn_send) is packed and dropped, the reclaimer is told nothing
 * (every session's process is this one, alive). A session that breaks the
 * protocol is ended and replaced, as the server does. At the end every
 * session ends and the registry is freed: leaks, double frees and
 * inconsistent registry state (objects, charges, bindings, triggers) show
 * up under ASan/UBSan.
 *
 * Limits are small (1 MiB per user, 4 MiB together, 8 objects per user) so
 * that an input cannot make the target slow by creating large pools: the
 * quotas under test are what bound it. */
#include "log.h"
#include "reclaim.h"
#include "registry.h"
#include "session.h"
#include "trigger.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ---- what conn.c and reclaim.c would provide ---- */

int conn_send(Conn *c, const Mbq__V1__ServerMessage *msg, const int *fds, unsigned nfds)
{
    (void)c;
    (void)fds;
    (void)nfds;
    static uint8_t buf[WIRE_MAX_PACKET];
    size_t n = mbq__v1__server_message__get_packed_size(msg);
    if (n > sizeof(buf))
        return -EMSGSIZE;
    mbq__v1__server_message__pack(msg, buf);
    return 0;
}

void conn_drop(Conn *c, enum session_end why, const char *detail)
{
    (void)c;
    (void)why;
    (void)detail;
}

void reclaimer_session_ended(Reclaimer *rc, pid_t pid, int pidfd, struct reclaim_outcome *ret)
{
    (void)rc;
    (void)pid;
    if (pidfd >= 0)
        close(pidfd);
    ret->result = RECLAIM_SHARED;
    ret->released = 0;
    ret->pools = 0;
}

/* ---- the harness ---- */

#define N_SESSIONS 3

static const SessionLimits limits = {
    .max_objects = 8,
    .max_triggers = 8,
    .max_bytes = 1u << 20,
    .max_total_bytes = 4u << 20,
};

static const struct {
    uid_t uid;
    gid_t gid;
} creds[N_SESSIONS] = {{0, 0}, {1000, 1000}, {1001, 1000}};

static uint64_t next_session_id;

static Session *session_start(Registry *r, unsigned i)
{
    Session *s;
    if (session_new(&s, NULL, (Conn *)(uintptr_t)(i + 1), r, &limits, ++next_session_id, getpid(),
                    creds[i].uid, creds[i].gid, -1) < 0)
        return NULL;
    Mbq__V1__Hello h = MBQ__V1__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 1;
    h.client_name = (char *)"fuzz";
    Mbq__V1__Request req = MBQ__V1__REQUEST__INIT;
    req.id = 1;
    req.body_case = MBQ__V1__REQUEST__BODY_HELLO;
    req.hello = &h;
    uint8_t buf[256];
    size_t n = mbq__v1__request__pack(&req, buf);
    struct wire_fds fds = {.n = 0};
    if (session_dispatch(s, buf, n, &fds) < 0)
        return session_end(s, SESSION_END_PROTOCOL, NULL);
    return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_LEVEL_ERROR); /* the fuzzer's output, not the daemon's */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Registry *r;
    if (registry_new(&r) < 0)
        return 0;
    registry_set_finalizer(r, trigger_object_finalize);
    Session *s[N_SESSIONS];
    for (unsigned i = 0; i < N_SESSIONS; i++)
        s[i] = session_start(r, i);

    size_t off = 0;
    while (off + 3 <= size) {
        uint8_t sel = data[off];
        size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
        off += 3;
        if (len > size - off)
            len = size - off;
        unsigned i = (sel & 0x7f) % N_SESSIONS;
        if ((sel & 0x80) && s[i]) {
            session_end(s[i], SESSION_END_EOF, NULL);
            s[i] = session_start(r, i);
        }
        if (!s[i])
            s[i] = session_start(r, i);
        if (s[i]) {
            struct wire_fds fds = {.n = 0};
            if (session_dispatch(s[i], data + off, len, &fds) < 0)
                s[i] = session_end(s[i], SESSION_END_PROTOCOL, NULL);
        }
        off += len;
    }

    for (unsigned i = 0; i < N_SESSIONS; i++)
        session_end(s[i], SESSION_END_EOF, NULL);
    registry_free(r);
    return 0;
}
