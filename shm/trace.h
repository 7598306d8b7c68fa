/* Debugging aid, compiled only with -DMBQ_POOL_TRACE=ON (the default build
 * has none of it: MBQ_TRACE is empty): a history of every reference event
 * of each pool block — intents set and cleared, claims, retains, releases,
 * holdings, recounts, cache moves, and the queue entries naming the block
 * (published, moved, taken by a dequeue, a drop or a reset) — in a file
 * that every process of a run maps (the MBQ_TRACE_FILE environment
 * variable; nothing is recorded without it). Each block index (the first
 * 256) has its own ring of 2048 events, so the history of a block that
 * nobody touches any more, a leaked one, stays there however long the run
 * goes on. scripts/pool-trace.py reads it.
 *
 * It is for one pool per run (events carry the block index, not the pool)
 * and costs two atomic adds per event on shared lines: it changes the
 * timing it observes. */
#ifndef MBQ_SHM_TRACE_H
#define MBQ_SHM_TRACE_H
#include <stdint.h>

enum mbq_trace_op {
    TR_INTENT_SET = 1, /* a: handle, b: which | slot << 8 */
    TR_INTENT_CLR,     /* a: handle, b: which | slot << 8 */
    TR_CLAIM,          /* a: old ref, b: new ref (allocation's claim) */
    TR_RETAIN,         /* a: new ref, b: by_client */
    TR_RELEASE,        /* a: new ref, b: by_client */
    TR_DISOWN,         /* a: handle, b: holding after */
    TR_ADOPT,          /* a: handle, b: holding after */
    TR_HOLD_SET,       /* a: slot, b: value (allocation) */
    TR_DROPREFS,       /* a: new ref, b: k */
    TR_AUDIT,          /* a: rc | n << 32, b: result code */
    TR_FREE,           /* a: ref */
    TR_CACHE,          /* a: old ref, b: new ref (cache moves) */
    TR_PUB,            /* a: handle, b: queue tag | index << 16 */
    TR_TAKE,           /* a: handle, b: queue tag | index << 16 | kind << 12 */
    TR_MOVE,           /* a: handle, b: queue tag | dst << 16 */
    TR_COMPLETE,       /* a: handle, b: queue tag | index << 16 */
    TR_DROPALL,        /* a: handle, b: queue tag | index << 16 */
    TR_RECLAIM_HOLD,   /* a: slot, b: k */
    TR_INTENT_FORGET,  /* a: handle, b: slot */
    TR_OVERFLOW,       /* a: slot, b: +1/-1 */
};

#ifdef MBQ_POOL_TRACE
void mbq_trace(uint32_t idx, uint32_t op, uint64_t a, uint64_t b);
#define MBQ_TRACE(idx, op, a, b) mbq_trace((uint32_t)(idx), (op), (uint64_t)(a), (uint64_t)(b))
#else
#define MBQ_TRACE(idx, op, a, b) ((void)0)
#endif
#endif
