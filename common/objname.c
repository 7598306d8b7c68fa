/* objname_valid(): see common/objname.h for the rule. */
#include "common/objname.h"

#include <string.h>

static bool objname_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

bool objname_valid(const char *name)
{
    if (!name)
        return false;
    size_t len = strnlen(name, OBJNAME_MAX + 1);
    if (len == 0 || len > OBJNAME_MAX)
        return false;
    const char *c = name;
    for (;;) {
        const char *start = c;
        while (*c && *c != '/') {
            if (!objname_char_ok(*c))
                return false;
            c++;
        }
        size_t n = (size_t)(c - start);
        if (n == 0 || (n == 1 && start[0] == '.') || (n == 2 && start[0] == '.' && start[1] == '.'))
            return false;
        if (*c == '\0')
            return true;
        c++; /* '/': another component must follow */
    }
}
