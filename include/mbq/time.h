/* mbq_time: Core Media's CMTime, with its flags and rules.
 *
 * A rational time value/timescale with flags (valid, rounded, +infinity,
 * -infinity, indefinite) and an epoch. The layout matches CMTime's field
 * order and offsets (0/8/12/16, 24 bytes); mbq aligns it to 8 bytes, which
 * changes nothing on the offsets. All-zero memory is an invalid time.
 *
 * Comparison is a total order:
 *   -infinity < numeric < indefinite < +infinity < invalid,
 * all invalid times equal, numeric times of a larger epoch greater.
 * Addition and subtraction follow CMTimeAdd/CMTimeSubtract: invalid wins,
 * then infinities, then indefinite; differing non-zero epochs give invalid,
 * equal non-zero epochs give epoch 0, epoch 0 takes the other's epoch;
 * timescales combine to their LCM (clamped to MBQ_TIME_MAX_TIMESCALE with
 * rounding); overflow halves the timescale, then becomes +/-infinity.
 * Every function here is pure and thread-safe. */
#ifndef MBQ_TIME_H
#define MBQ_TIME_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MBQ_TIME_FLAG_VALID = 1u << 0,
    MBQ_TIME_FLAG_HAS_BEEN_ROUNDED = 1u << 1,
    MBQ_TIME_FLAG_POSITIVE_INFINITY = 1u << 2,
    MBQ_TIME_FLAG_NEGATIVE_INFINITY = 1u << 3,
    MBQ_TIME_FLAG_INDEFINITE = 1u << 4,
    MBQ_TIME_FLAG_IMPLIED_VALUE_MASK = (1u << 2) | (1u << 3) | (1u << 4),
};

#define MBQ_TIME_MAX_TIMESCALE 0x7fffffff

typedef struct mbq_time {
    int64_t value;
    int32_t timescale;
    uint32_t flags;
    int64_t epoch;
} mbq_time;

#define MBQ_TIME_INVALID ((mbq_time){0, 0, 0, 0})
#define MBQ_TIME_ZERO ((mbq_time){0, 1, MBQ_TIME_FLAG_VALID, 0})
#define MBQ_TIME_POSITIVE_INFINITY \
    ((mbq_time){0, 0, MBQ_TIME_FLAG_VALID | MBQ_TIME_FLAG_POSITIVE_INFINITY, 0})
#define MBQ_TIME_NEGATIVE_INFINITY \
    ((mbq_time){0, 0, MBQ_TIME_FLAG_VALID | MBQ_TIME_FLAG_NEGATIVE_INFINITY, 0})
#define MBQ_TIME_INDEFINITE \
    ((mbq_time){0, 0, MBQ_TIME_FLAG_VALID | MBQ_TIME_FLAG_INDEFINITE, 0})

/* Rounding methods, with CMTimeRoundingMethod's numbers. */
typedef enum mbq_time_rounding {
    MBQ_TIME_ROUND_HALF_AWAY_FROM_ZERO = 1,
    MBQ_TIME_ROUND_TOWARD_ZERO = 2,
    MBQ_TIME_ROUND_AWAY_FROM_ZERO = 3,
    MBQ_TIME_ROUND_QUICKTIME = 4,
    MBQ_TIME_ROUND_TOWARD_POSITIVE_INFINITY = 5,
    MBQ_TIME_ROUND_TOWARD_NEGATIVE_INFINITY = 6,
    MBQ_TIME_ROUND_DEFAULT = MBQ_TIME_ROUND_HALF_AWAY_FROM_ZERO,
} mbq_time_rounding;

/* value/timescale, epoch 0. A timescale <= 0 gives an invalid time. */
mbq_time mbq_time_make(int64_t value, int32_t timescale);
mbq_time mbq_time_make_with_epoch(int64_t value, int32_t timescale, int64_t epoch);
/* Nearest time to seconds at preferred_timescale; see CMTimeMakeWithSeconds. */
mbq_time mbq_time_make_with_seconds(double seconds, int32_t preferred_timescale);
/* NaN for invalid or indefinite, +/-INFINITY for the infinities. */
double mbq_time_get_seconds(mbq_time t);
mbq_time mbq_time_convert_scale(mbq_time t, int32_t new_timescale,
                                mbq_time_rounding method);

bool mbq_time_is_valid(mbq_time t);
bool mbq_time_is_invalid(mbq_time t);
bool mbq_time_is_positive_infinity(mbq_time t);
bool mbq_time_is_negative_infinity(mbq_time t);
bool mbq_time_is_indefinite(mbq_time t);
bool mbq_time_is_numeric(mbq_time t);
bool mbq_time_has_been_rounded(mbq_time t);

/* -1, 0 or 1 under the total order above. */
int32_t mbq_time_compare(mbq_time a, mbq_time b);
mbq_time mbq_time_add(mbq_time a, mbq_time b);
mbq_time mbq_time_subtract(mbq_time a, mbq_time b);
mbq_time mbq_time_multiply(mbq_time t, int32_t multiplier);
mbq_time mbq_time_minimum(mbq_time a, mbq_time b);
mbq_time mbq_time_maximum(mbq_time a, mbq_time b);
mbq_time mbq_time_absolute_value(mbq_time t);

#ifdef __cplusplus
}
#endif
#endif
