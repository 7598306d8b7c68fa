/* A session: the daemon's side of one client connection (see session.c). */
#ifndef MBQD_SESSION_H
#define MBQD_SESSION_H

#include "conn.h"
#include "registry.h"

#include <mbq.pb-c.h>
#include <wire.h>

typedef struct Reclaimer Reclaimer;
typedef struct Session Session;

/* Quotas: per user (--max-objects, --max-bytes), for all users together
 * (--max-total-bytes), per client (--max-triggers). 0: no limit, except
 * max_triggers. */
typedef struct SessionLimits {
    uint32_t max_objects;     /* objects a user owns (uid 0 exempt) */
    uint32_t max_triggers;    /* triggers one client has installed at once */
    uint64_t max_bytes;       /* bytes of segments a user owns (uid 0 exempt) */
    uint64_t max_total_bytes; /* bytes of all segments together */
} SessionLimits;

/* A session's hold on one object it opened (Create or Open). */
typedef struct Handle {
    Object *object;
    Session *session;
    unsigned opens;    /* Create/Open replies minus Closes; > 0 */
    unsigned triggers; /* triggers this session installed on object */
    unsigned producer; /* DeclareProducer calls not withdrawn (producers.c) */
    struct list object_link;  /* Object.handles */
    struct list session_link; /* Session.handles */
} Handle;

struct Session {
    Reclaimer *reclaimer; /* told when the session ends */
    Conn *conn;
    Registry *registry;
    const SessionLimits *limits;
    uint64_t id;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    int pidfd; /* owned; -1 if the kernel gave none */
    bool hello;
    uint32_t client_id; /* identity.c: its process's id, 0 none */
    char name[64]; /* Hello.client_name, printable ASCII only */
    struct list handles;
    unsigned n_objects;
    unsigned n_triggers;
};

/* Creates a session for a connection; takes pidfd. */
int session_new(Session **ret, Reclaimer *reclaimer, Conn *conn, Registry *registry,
                const SessionLimits *limits, uint64_t id, pid_t pid, uid_t uid, gid_t gid,
                int pidfd);
/* Ends a session: removes its triggers (telling the other sessions), closes
 * its objects, releases the buffer references its process held if the
 * process is gone, logs, frees. At SESSION_END_SHUTDOWN it leaves shared
 * memory alone, since the clients live on. Accepts NULL; returns NULL. */
Session *session_end(Session *s, enum session_end why, const char *detail);

/* Handles one received packet (fds are consumed). Returns 0, or a negative
 * errno once the session has replied with an error and must be dropped. */
int session_dispatch(Session *s, const uint8_t *buf, size_t len, struct wire_fds *fds);
/* Replies to a packet that could not be received whole, then the caller
 * drops the session. */
void session_protocol_error(Session *s, int status, const char *error);

#endif
