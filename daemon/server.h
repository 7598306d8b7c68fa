/* The server: the listening socket, and each accepted client's connection
 * and session (see server.c). */
#ifndef MBQD_SERVER_H
#define MBQD_SERVER_H

#include "registry.h"
#include "session.h"

struct event_base;
typedef struct PidWatch PidWatch;
typedef struct Server Server;
typedef struct Reclaimer Reclaimer;

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
/* Whether a live session other than except belongs to process pid. */
bool server_pid_has_session(Server *srv, pid_t pid, const Session *except);

#endif
