/* Producers of buffer queues: who declared itself one, and "producer lost"
 * (producers.c). */
#ifndef MBQD_PRODUCERS_H
#define MBQD_PRODUCERS_H

#include "session.h"

/* DeclareProducer: h's session produces into h's queue (declare), or one
 * of its declarations ends (withdraw; no-op without one). */
void producers_declare(Handle *h);
void producers_withdraw(Handle *h);
/* Every declaration of h ends (its queue closed, or its session ended). */
void producers_drop(Handle *h);
/* A restored queue: the producers the previous instance recorded in its
 * header become pids waiting to declare again or exit. */
void producers_restore(Object *o);
/* pid, a process of before the restart, is gone. */
void producers_pid_gone(Object *o, pid_t pid);
/* Stat: the pids of up to BQ_PRODUCER_PIDS of o's producers (those the
 * header names), their number; whether o is "producer lost" (the header's
 * flag, which its blocking dequeuers obey). The count is o->producers. */
unsigned producers_pids(const Object *o, uint32_t pids[BQ_PRODUCER_PIDS]);
bool producers_lost(const Object *o);
/* Calls fn for each pid a restored queue still waits for. */
void producers_for_each_restored(const Object *o, void (*fn)(pid_t pid, void *ctx), void *ctx);

#endif
