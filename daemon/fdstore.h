/* Keeping the objects in the service manager's file descriptor store, so
 * that a restarted mbqd finds them again (see fdstore.c). */
#ifndef MBQD_FDSTORE_H
#define MBQD_FDSTORE_H

#include "registry.h"

#include <mbq.pb-c.h>

typedef struct FdStore FdStore;

/* The record's format version (DaemonState.version and the header's). */
#define FDSTORE_STATE_VERSION 1u
/* Stored descriptors' names: "seg-<object id>", "trg-<object id>-<token,
 * 16 hex digits>", and the state record under one of two names that take
 * turns (the new record is stored before the old one is removed, and
 * FDSTOREREMOVE removes by name). */
#define FDSTORE_NAME_MAX 64
#define FDSTORE_STATE_NAME_0 "state-0"
#define FDSTORE_STATE_NAME_1 "state-1"

void fdstore_segment_name(char name[FDSTORE_NAME_MAX], uint32_t object_id);
void fdstore_trigger_name(char name[FDSTORE_NAME_MAX], uint32_t object_id, uint64_t token);

/* A store for the manager's FileDescriptorStoreMax = max (> 0). It does
 * nothing until fdstore_attach(). */
int fdstore_new(FdStore **ret, Registry *r, unsigned max);
/* Detaches from the registry and frees; the manager's store is left as it
 * is (for the next instance). Accepts NULL; returns NULL. */
FdStore *fdstore_free(FdStore *st);

/* After a restore: n descriptors (segments and triggers) are in the store
 * already, and the current record is stored under state_name (NULL: none)
 * with that generation. */
void fdstore_adopt(FdStore *st, unsigned n, const char *state_name, uint64_t generation);
/* Becomes the registry's observer: from now on every change is stored. */
void fdstore_attach(FdStore *st);
/* Removes every stored descriptor named name (one restore did not use). */
void fdstore_drop(FdStore *st, const char *name);
/* Writes a new state record now, changed or not. 0 or -errno. */
int fdstore_commit(FdStore *st);
/* Descriptors stored (segments and triggers, not the record). */
unsigned fdstore_count(const FdStore *st);
unsigned fdstore_max(const FdStore *st);

/* Reads a state record from fd (a sealed memfd the store gave back),
 * checking everything: the header's magic, version and sizes, the
 * checksum, and that the payload decodes. Returns 0 with *ret set (free
 * with mbq__v1__daemon_state__free_unpacked(*ret, NULL)), -EBADMSG for a
 * record that fails a check, or -errno. */
int fdstore_read_state(int fd, Mbq__V1__DaemonState **ret);

#endif
