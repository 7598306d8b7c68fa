/* The public constants of <mbq/mbq.h> bound to their twins in shm/ (and
 * common/), which the daemon and the shared-memory layer use: a public
 * header cannot include shm/, so each value is written twice, and this
 * file is where the build checks the two agree. Nothing else is here.
 *
 * It is compiled into the library and, alone with common/ and shm/, in the
 * i686 leg of scripts/test.sh (MBQ_LAYERS_ONLY with -m32), so that these
 * and shm/'s layout assertions are evaluated for 32-bit processes too. */
#include <mbq/mbq.h>

#include "bq.h"
#include "common/objname.h"
#include "pool.h"
#include "seg.h"
#include "sq.h"

/* Buffer queues. */
_Static_assert(MBQ_BUFFER_QUEUE_DEFAULT_CAPACITY == BQ_DEFAULT_CAPACITY, "default capacity");
_Static_assert(MBQ_ORDER_FIFO == (int)BQ_ORDER_FIFO, "order FIFO");
_Static_assert(MBQ_ORDER_PRESENTATION_TIME == (int)BQ_ORDER_PTS, "order PTS");
_Static_assert(MBQ_ORDER_DECODE_TIME == (int)BQ_ORDER_DTS, "order DTS");
_Static_assert(MBQ_FULL_FAIL == (int)BQ_FULL_FAIL, "full policy fail");
_Static_assert(MBQ_FULL_DROP_OLDEST == (int)BQ_FULL_DROP_OLDEST, "full policy drop oldest");
_Static_assert(MBQ_PRODUCER_PIDS == BQ_PRODUCER_PIDS, "producers' pids a queue's header keeps");

/* Pools. */
_Static_assert(MBQ_POOL_MAX_CLASSES == POOL_MAX_CLASSES, "size classes per pool");

/* Trigger conditions (Core Media's numbers, both sides). */
#define TWIN_TRIGGER(pub, shm) _Static_assert((int)(pub) == (int)(shm), #pub " == " #shm)
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_DURATION_BECOMES_LESS_THAN, BQ_TRIGGER_DURATION_LESS_THAN);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_DURATION_BECOMES_LESS_THAN_OR_EQUAL_TO,
             BQ_TRIGGER_DURATION_LESS_THAN_OR_EQUAL);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_DURATION_BECOMES_GREATER_THAN, BQ_TRIGGER_DURATION_GREATER_THAN);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_DURATION_BECOMES_GREATER_THAN_OR_EQUAL_TO,
             BQ_TRIGGER_DURATION_GREATER_THAN_OR_EQUAL);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_MIN_PRESENTATION_TIME_STAMP_CHANGES, BQ_TRIGGER_MIN_PTS_CHANGES);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_MAX_PRESENTATION_TIME_STAMP_CHANGES, BQ_TRIGGER_MAX_PTS_CHANGES);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_DATA_BECOMES_READY, BQ_TRIGGER_DATA_BECOMES_READY);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_END_OF_DATA_REACHED, BQ_TRIGGER_END_OF_DATA_REACHED);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_RESET, BQ_TRIGGER_RESET);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_LESS_THAN, BQ_TRIGGER_COUNT_LESS_THAN);
TWIN_TRIGGER(MBQ_TRIGGER_WHEN_BUFFER_COUNT_BECOMES_GREATER_THAN, BQ_TRIGGER_COUNT_GREATER_THAN);
TWIN_TRIGGER(
    MBQ_TRIGGER_WHEN_DURATION_BECOMES_GREATER_THAN_OR_EQUAL_TO_AND_BUFFER_COUNT_BECOMES_GREATER_THAN,
    BQ_TRIGGER_DURATION_GE_AND_COUNT_GT);

/* Pools and buffers. */
_Static_assert(MBQ_FORMAT_MAX == POOL_FORMAT_MAX, "the header's format limit is the pool's");
_Static_assert(MBQ_ATTACHMENTS_MAX == POOL_ATTACH_MAX, "the header's attachment area is the pool's");
_Static_assert(MBQ_BUFFER_FLAG_SYNC == POOL_FLAGS_DEFAULT, "a new buffer is a sync sample");

/* Object kinds, names and modes. */
_Static_assert(MBQ_OBJECT_BUFFER_QUEUE == (int)SEG_KIND_BUFFER_QUEUE, "kind buffer queue");
_Static_assert(MBQ_OBJECT_SIMPLE_QUEUE == (int)SEG_KIND_SIMPLE_QUEUE, "kind simple queue");
_Static_assert(MBQ_OBJECT_POOL == (int)SEG_KIND_POOL, "kind pool");
_Static_assert(MBQ_NAME_MAX == OBJNAME_MAX, "name length");
_Static_assert(MBQ_MODE_MASK == OBJMODE_MASK, "mode bits");

/* ISO C wants a translation unit to declare something. */
extern const int mbq_abi_twins_checked;
