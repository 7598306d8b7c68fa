/* Client ids and the liveness table (see identity.c). */
#ifndef MBQD_IDENTITY_H
#define MBQD_IDENTITY_H

#include <lock.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct systemd_fd;

/* Its name in the service manager's fd store. */
#define IDENTITY_FDNAME "ids"

/* At start: takes the stored table out of what the manager passed (its fd
 * becomes -1 there), or makes a new one and, with store, keeps it in the
 * fd store. 0 or -errno. */
int identity_setup(struct event_base *base, struct systemd_fd *passed, int n_passed, bool store);
/* Creates the table, or adopts stored_fd (taken; -1: none), the table of
 * a previous instance from the fd store, and makes id 1 the daemon's own.
 * 0 or -errno (-EBADMSG: the stored table is not one). */
int identity_init(struct event_base *base, int stored_fd);
/* The table's descriptors: read-write (for the fd store), read-only (for
 * clients). Borrowed. */
int identity_fd(void);
int identity_ro_fd(void);
/* A connection of process pid (pidfd borrowed, -1 if none) said Hello,
 * asking for id asked (0: none): its process's id, or 0 if none is free. */
uint32_t identity_attach(pid_t pid, int pidfd, uint32_t asked);
/* A connection with that id ended. */
void identity_detach(uint32_t id);
bool identity_alive(uint32_t id);
pid_t identity_pid(uint32_t id);
/* The process of an owner in the client-id form (0 for any other). */
pid_t identity_owner_pid(uint32_t owner);
/* The lock watch's sweep over every lock word: ids dead before it began and
 * named by no word during it are given out again. */
void identity_sweep_begin(void);
void identity_sweep_note(uint32_t owner);
void identity_sweep_end(void);

#endif
