/* The server: the listening socket and every connection's I/O (see server.c). */
#ifndef MBQD_SERVER_H
#define MBQD_SERVER_H

#include "registry.h"
#include "session.h"

#include <mbq.pb-c.h>

struct event_base;
typedef struct PidWatch PidWatch;
typedef struct Reclaimer Reclaimer;

/* Queued outgoing packets after which a client that does not read is dropped. */
#define CONN_MAX_QUEUED 256

/* With listen_fd < 0: takes the socket at path (creating its directory,
 * removing a stale socket file, refusing if another daemon answers there)
 * and starts accepting. With listen_fd >= 0 (taken; a listening
 * SOCK_SEQPACKET socket the service manager passed): accepts on it, and
 * never touches the socket file, which belongs to the manager. Returns 0,
 * -EADDRINUSE (a daemon answers), -ENOTSOCK (path is something else), or
 * -errno; logs the reason. Client exits are waited for through pw. */
int server_new(Server **ret, struct event_base *base, Registry *registry, PidWatch *pw,
               const SessionLimits *limits, const char *path, int listen_fd);
/* Where clients connect, for messages ("?" if unknown). */
const char *server_address(const Server *srv);
/* Stops accepting, removes the socket file (if it is still ours), ends every
 * session in shutdown mode. Accepts NULL; returns NULL. */
Server *server_free(Server *srv);
size_t server_session_count(const Server *srv);
Reclaimer *server_reclaimer(Server *srv);
/* Whether a live session other than except belongs to process pid. */
bool server_pid_has_session(Server *srv, pid_t pid, const Session *except);

/* Sends msg with nfds borrowed descriptors, now or (duplicated) later, in
 * order. Returns 0; -EMSGSIZE if it cannot fit a packet (nothing sent, the
 * connection stays); -ENOTCONN on a dropped connection; another -errno
 * after dropping the connection (socket error, or CONN_MAX_QUEUED reached). */
int conn_send(Conn *c, const Mbq__V1__ServerMessage *msg, const int *fds, unsigned nfds);
/* Stops all I/O on c at once; the session ends (session_end) from the event
 * loop right after the current callback, never inside it. */
void conn_drop(Conn *c, enum session_end why, const char *detail);

#endif
