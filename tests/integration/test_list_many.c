/* mbq_list over more objects than one reply of the daemon holds (64 KiB,
 * about 1,500 objects): the library asks page by page, so every object is
 * listed once, in name order, and the count is right; a caller's array
 * smaller than the list gets the first objects and the whole count. */
#include "harness.h"

enum { OBJECTS = 2600 };

static struct mbqd D;

static void list_spans_pages(void)
{
    const char *const args[] = {"--max-objects", "4000", NULL};
    REQUIRE(mbqd_start_args(&D, args) == 0);
    mbq_client *c = NULL;
    CHECK_STATUS(mbq_connect(D.sock, "list-many", &c), 0);
    for (int i = 0; i < OBJECTS; i++) {
        char name[64];
        snprintf(name, sizeof name, "many/q%05d", i);
        mbq_simple_queue *q = NULL;
        CHECK_STATUS(mbq_simple_queue_create(c, name, 4, NULL, &q), 0);
        mbq_simple_queue_close(q);
    }
    mbq_object_info *infos = calloc(OBJECTS + 8, sizeof(*infos));
    CHECK(infos != NULL);
    infos[0].size = sizeof(*infos);
    CHECK_STATUS(mbq_list(c, "many/", infos, OBJECTS + 8), OBJECTS);
    for (int i = 0; i < OBJECTS; i++) {
        char want[64];
        snprintf(want, sizeof want, "many/q%05d", i);
        if (strcmp(infos[i].name, want) != 0) {
            fprintf(stderr, "entry %d is '%s', not '%s'\n", i, infos[i].name, want);
            CHECK(false);
        }
        CHECK_EQ(infos[i].kind, MBQ_OBJECT_SIMPLE_QUEUE);
    }
    /* a smaller array: its objects, and the count of all */
    memset(infos, 0, (OBJECTS + 8) * sizeof(*infos));
    infos[0].size = sizeof(*infos);
    CHECK_STATUS(mbq_list(c, "many/", infos, 10), OBJECTS);
    CHECK(strcmp(infos[9].name, "many/q00009") == 0);
    CHECK_EQ(infos[10].size, 0u); /* nothing written past max */
    free(infos);
    mbq_disconnect(c);
    CHECK_MBQD_STOP(&D);
}

CHECK_MAIN(CASE(list_spans_pages))
