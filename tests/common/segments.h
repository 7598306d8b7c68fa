/* Finding an object's segment in this process, as a hostile client that
 * writes around the library can: for tests that scribble on a segment.
 * Header-only; needs the shm/ include directory. */
#ifndef MBQ_TEST_SEGMENTS_H
#define MBQ_TEST_SEGMENTS_H

#include <bq.h>
#include <pool.h>
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

/* A mapping of its own of the object with that id, attached (attach,
 * detach, seg_of: the object kind's) from one of this process's memfds
 * into obj: 0, or -ENOENT. */
static inline int test_attach_segment(uint64_t object_id, int (*attach)(int fd, void *obj),
                                      void (*detach)(void *obj), struct seg *(*seg_of)(void *obj),
                                      void *obj)
{
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return -errno;
    int r = -ENOENT;
    struct dirent *e;
    while (r < 0 && (e = readdir(dir))) {
        int fd = atoi(e->d_name);
        char link[PATH_MAX], path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        if (strncmp(link, "/memfd:", 7) != 0 || attach(fd, obj) != 0)
            continue;
        if (seg_object_id(seg_of(obj)) == object_id)
            r = 0;
        else
            detach(obj);
    }
    closedir(dir);
    return r;
}

static inline int test_bq_attach(int fd, void *q) { return bq_attach(fd, q); }
static inline void test_bq_detach(void *q) { bq_detach(q); }
static inline struct seg *test_bq_seg(void *q) { return &((struct bq *)q)->seg; }
static inline int test_pool_attach(int fd, void *p) { return pool_attach(fd, p); }
static inline void test_pool_detach(void *p) { pool_detach(p); }
static inline struct seg *test_pool_seg(void *p) { return &((struct pool *)p)->seg; }

/* The buffer queue, and the pool (which takes a client slot of its own),
 * with that id. */
static inline int test_attach_queue_segment(uint64_t object_id, struct bq *out)
{
    return test_attach_segment(object_id, test_bq_attach, test_bq_detach, test_bq_seg, out);
}

static inline int test_attach_pool_segment(uint64_t object_id, struct pool *out)
{
    return test_attach_segment(object_id, test_pool_attach, test_pool_detach, test_pool_seg, out);
}

#endif
