/* The lock watch: locks held by owners not entitled to them (see lockwatch.c). */
#ifndef MBQD_LOCKWATCH_H
#define MBQD_LOCKWATCH_H

#include "registry.h"

#include <stdint.h>

/* Once per timer tick: checks every lock word of every object, breaks those
 * held too long by an owner not entitled to them, and retries the trigger
 * removals that found their queue locked. */
void lockwatch_tick(Registry *r, uint64_t now);
/* How many locks of that object the watch took from owners not entitled
 * to them, since this daemon started. */
uint64_t lockwatch_broken(uint32_t object_id);

#endif
