/* Finding an object's segment in this process, as a hostile client that
 * writes around the library can: for tests that scribble on a segment.
 * Header-only; needs the shm/ include directory. */
#ifndef MBQ_TEST_SEGMENTS_H
#define MBQ_TEST_SEGMENTS_H

#include <bq.h>
#include <seg.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The library's mapping of the object with that id (found in
 * /proc/self/maps among the memfds it mapped), or NULL. */
static inline void *test_segment_mapping(uint64_t object_id)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return NULL;
    char line[512];
    void *found = NULL;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off;
        if (!strstr(line, "memfd:mbq-") || sscanf(line, "%lx-%lx %*s %lx", &lo, &hi, &off) != 3 ||
            off != 0)
            continue;
        struct seg s = {.fd = -1, .base = (void *)lo, .size = hi - lo};
        if (seg_object_id(&s) == object_id)
            found = (void *)lo;
    }
    fclose(f);
    return found;
}

/* A mapping of its own of the buffer queue with that id, attached from
 * one of this process's memfds: 0, or -ENOENT. */
static inline int test_attach_queue_segment(uint64_t object_id, struct bq *out)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -errno;
    int r = -ENOENT;
    struct dirent *e;
    while (r < 0 && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        char link[PATH_MAX], path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        if (strncmp(link, "/memfd:", 7) != 0 || bq_attach(fd, out) != 0)
            continue;
        if (seg_object_id(&out->seg) == object_id)
            r = 0;
        else
            bq_detach(out);
    }
    closedir(d);
    return r;
}

#endif
