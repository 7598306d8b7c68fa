/* A connection: one client socket's reads, writes and output queue (see
 * conn.c). Below the session: it knows packets, not the protocol. */
#ifndef MBQD_CONN_H
#define MBQD_CONN_H

#include <mbq.pb-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <wire.h>

struct event_base;
typedef struct Conn Conn;

/* Queued outgoing packets after which a client that does not read is dropped. */
#define CONN_MAX_QUEUED 256

/* The reasons a connection (and so its session) ends. */
enum session_end {
    SESSION_END_EOF,      /* the client closed the connection, or died */
    SESSION_END_ERROR,    /* a socket error */
    SESSION_END_PROTOCOL, /* the client broke the protocol */
    SESSION_END_SLOW,     /* the client did not read its messages */
    SESSION_END_SHUTDOWN, /* the daemon is stopping */
};

/* What a connection reports to its owner, always from the event loop. */
typedef struct ConnEvents {
    /* One packet (fds consumed). < 0: drop the connection (protocol). */
    int (*packet)(void *userdata, const uint8_t *buf, size_t len, struct wire_fds *fds);
    /* A packet that could not be received whole arrived; the connection is
     * dropped right after. */
    void (*truncated)(void *userdata);
    /* The connection was dropped (conn_drop), in a later callback than the
     * one that dropped it; the owner ends its session and frees c. */
    void (*ended)(void *userdata, enum session_end why, const char *detail);
} ConnEvents;

/* Takes fd (a connected, non-blocking SOCK_SEQPACKET socket). Reads start
 * with conn_start(). */
int conn_new(Conn **ret, struct event_base *base, int fd, const ConnEvents *events,
             void *userdata);
int conn_start(Conn *c);
/* Who is at the other end, for the log lines the connection writes. */
void conn_set_peer(Conn *c, uint64_t session_id, pid_t pid, uid_t uid);
/* Accepts NULL; returns NULL. */
Conn *conn_free(Conn *c);

/* Sends msg with nfds borrowed descriptors, now or (duplicated) later, in
 * order. Returns 0; -EMSGSIZE if it cannot fit a packet (nothing sent, the
 * connection stays); -ENOTCONN on a dropped connection; another -errno
 * after dropping the connection (socket error, or CONN_MAX_QUEUED reached). */
int conn_send(Conn *c, const Mbq__V1__ServerMessage *msg, const int *fds, unsigned nfds);
/* Stops all I/O on c at once; events->ended runs from the event loop right
 * after the current callback, never inside it. A second drop is ignored. */
void conn_drop(Conn *c, enum session_end why, const char *detail);
/* Whether c was dropped; if so, why (detail: NULL if none). */
bool conn_dropped(const Conn *c, enum session_end *why, const char **detail);

#endif
