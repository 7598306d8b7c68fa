/* Tests that build a queue's state by hand (a half-done insert, a scribble)
 * reach its entries as the queue stores them (struct bq_slot) through the
 * queue's own accessors. */
#ifndef MBQ_TESTS_BQ_SLOTS_H
#define MBQ_TESTS_BQ_SLOTS_H

#include "bq_layout.h"

static inline void slot_copy(struct bq *q, uint64_t dst, uint64_t src)
{
    struct bq_entry t;
    bq_slot_read(q, src, &t);
    bq_slot_write(q, dst, &t);
}

static inline mbq_time slot_pts(const struct bq *q, uint64_t i)
{
    struct bq_entry t;
    bq_slot_read(q, i, &t);
    return t.pts;
}

#endif
