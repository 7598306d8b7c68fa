/* mbq status codes.
 *
 * Functions return 0 on success. Where Core Media defines a status for a
 * failure, mbq returns exactly that value (the MBQ_BQ_ERR_*, MBQ_SQ_ERR_* and
 * MBQ_POOL_ERR_* constants below carry Core Media's numbers). Every other
 * failure is a negative errno value (-EINVAL, -ENOMEM, ...); the two ranges
 * never overlap, since errno values are small. mbq adds a few errno meanings
 * of its own, listed at the end. */
#ifndef MBQ_STATUS_H
#define MBQ_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MBQ_OK = 0,

    /* CMBufferQueue */
    MBQ_BQ_ERR_ALLOCATION_FAILED = -12760,
    MBQ_BQ_ERR_REQUIRED_PARAMETER_MISSING = -12761,
    MBQ_BQ_ERR_INVALID_CALLBACKS = -12762,
    MBQ_BQ_ERR_ENQUEUE_AFTER_END_OF_DATA = -12763,
    MBQ_BQ_ERR_QUEUE_IS_FULL = -12764,
    MBQ_BQ_ERR_BAD_TRIGGER_DURATION = -12765,
    MBQ_BQ_ERR_CANNOT_MODIFY_QUEUE_FROM_TRIGGER_CALLBACK = -12766,
    MBQ_BQ_ERR_INVALID_TRIGGER_CONDITION = -12767,
    MBQ_BQ_ERR_INVALID_TRIGGER_TOKEN = -12768,
    MBQ_BQ_ERR_INVALID_BUFFER = -12769,

    /* CMSimpleQueue */
    MBQ_SQ_ERR_ALLOCATION_FAILED = -12770,
    MBQ_SQ_ERR_REQUIRED_PARAMETER_MISSING = -12771,
    MBQ_SQ_ERR_PARAMETER_OUT_OF_RANGE = -12772,
    MBQ_SQ_ERR_QUEUE_IS_FULL = -12773,

    /* CMMemoryPool */
    MBQ_POOL_ERR_ALLOCATION_FAILED = -15490,
    MBQ_POOL_ERR_INVALID_PARAMETER = -15491,
};

/* errno values with an mbq-specific meaning:
 *   -EBADMSG   a segment's header or layout failed validation (corrupt or
 *              not an mbq segment); nothing was mapped or changed.
 *   -EUCLEAN   an object's shared state was found inconsistent and could not
 *              be repaired; the operation did nothing.
 *   -ESTALE    a buffer handle refers to a block that has since been freed
 *              (its generation no longer matches).
 *   -ETIMEDOUT a blocking call's deadline passed.
 *   -EBUSY     a lock of the object stayed held by a live process that does
 *              not let go (stopped, hung, or a forged owner) for the wait
 *              limit: 1 s in a client (or the call's own timeout, if
 *              shorter), 10 ms in mbqd. Nothing was done; the call may be
 *              retried. mbqd takes a forged lock back within about a second.
 *   -EAGAIN    a non-blocking dequeue found nothing (where a status is
 *              returned rather than a NULL/0 value). */

#ifdef __cplusplus
}
#endif
#endif
