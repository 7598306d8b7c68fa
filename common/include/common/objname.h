/* Object names and modes: the one rule the library (which rejects a bad
 * name or mode before it asks) and the daemon (which rejects it from any
 * client, and from a stored record after a restart) both apply.
 *
 * A name is 1..OBJNAME_MAX bytes of [A-Za-z0-9._-] components separated by
 * single '/', none of them empty, "." or "..": it can never name a path
 * outside its own namespace, whatever the daemon later does with it. A mode
 * is permission bits only (OBJMODE_MASK): no setuid, setgid or sticky bit,
 * which mean nothing for these objects. <mbq/mbq.h> states the same limits
 * (MBQ_NAME_MAX, MBQ_MODE_MASK); client/abi_twins.c checks they agree. */
#ifndef MBQ_COMMON_OBJNAME_H
#define MBQ_COMMON_OBJNAME_H

#include <stdbool.h>
#include <stdint.h>

#define OBJNAME_MAX 255
#define OBJMODE_MASK 0777u

bool objname_valid(const char *name);

static inline bool objmode_valid(uint32_t mode)
{
    return (mode & ~OBJMODE_MASK) == 0;
}

#endif
