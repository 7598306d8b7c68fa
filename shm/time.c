/* mbq_time: Core Media's CMTime arithmetic, implemented from the rules in
 * the reference (section 6 of coremedia-semantics.md).
 *
 * Times live in shared memory and are the keys the queues sort and trigger
 * on, so every function here must give a defined answer for any bit
 * pattern another process may have left behind, and must be exact: all
 * intermediate arithmetic is done on exact rationals in __int128, rounding
 * happens once at the end, and floating point is used only where the API
 * itself speaks in seconds. A time that claims to be numeric but has a
 * timescale <= 0, or that carries more than one implied-value flag, has no
 * meaning, and every function treats it exactly like an invalid time. */
#include <mbq/time.h>

#include <math.h>

/* The five kinds, numbered in the order CMTimeCompare puts them. */
enum time_kind {
    KIND_NEG_INF = 0,
    KIND_NUMERIC = 1,
    KIND_INDEFINITE = 2,
    KIND_POS_INF = 3,
    KIND_INVALID = 4,
};

typedef __int128 i128;

static enum time_kind classify(mbq_time t)
{
    if (!(t.flags & MBQ_TIME_FLAG_VALID))
        return KIND_INVALID;
    switch (t.flags & MBQ_TIME_FLAG_IMPLIED_VALUE_MASK) {
    case 0:
        /* A numeric value is meaningless without a positive denominator. */
        return t.timescale > 0 ? KIND_NUMERIC : KIND_INVALID;
    case MBQ_TIME_FLAG_POSITIVE_INFINITY:
        return KIND_POS_INF;
    case MBQ_TIME_FLAG_NEGATIVE_INFINITY:
        return KIND_NEG_INF;
    case MBQ_TIME_FLAG_INDEFINITE:
        return KIND_INDEFINITE;
    default:
        /* Two implied values at once (say +inf and -inf) cannot be ordered
         * or combined consistently; treat it as the garbage it is. */
        return KIND_INVALID;
    }
}

static int sign128(i128 x)
{
    return (x > 0) - (x < 0);
}

static bool fits_int64(i128 x)
{
    return x >= INT64_MIN && x <= INT64_MAX;
}

/* n / d rounded by method, for d > 0. Callers keep |n| < 2^126 and
 * d < 2^126, so neither the quotient adjustment nor 2*|r| can overflow.
 * QuickTime is resolved to a direction by the caller, since it depends on
 * whether precision is being lost or gained. */
static i128 div_round(i128 n, i128 d, mbq_time_rounding method, bool *inexact)
{
    i128 q = n / d;
    i128 r = n % d; /* same sign as n: C division truncates */
    if (r == 0) {
        *inexact = false;
        return q;
    }
    *inexact = true;
    int s = sign128(n);
    switch (method) {
    case MBQ_TIME_ROUND_TOWARD_ZERO:
        return q;
    case MBQ_TIME_ROUND_AWAY_FROM_ZERO:
        return q + s;
    case MBQ_TIME_ROUND_TOWARD_POSITIVE_INFINITY:
        return s > 0 ? q + 1 : q;
    case MBQ_TIME_ROUND_TOWARD_NEGATIVE_INFINITY:
        return s < 0 ? q - 1 : q;
    case MBQ_TIME_ROUND_HALF_AWAY_FROM_ZERO:
    default: {
        i128 ar = r < 0 ? -r : r;
        return 2 * ar >= d ? q + s : q;
    }
    }
}

static mbq_time infinity_of_sign(int s)
{
    return s < 0 ? MBQ_TIME_NEGATIVE_INFINITY : MBQ_TIME_POSITIVE_INFINITY;
}

static mbq_time numeric(int64_t value, int32_t timescale, int64_t epoch,
                        bool rounded)
{
    mbq_time t = {value, timescale,
                  MBQ_TIME_FLAG_VALID |
                      (rounded ? MBQ_TIME_FLAG_HAS_BEEN_ROUNDED : 0u),
                  epoch};
    return t;
}

/* The exact rational num/den expressed at timescale ts with default
 * rounding. When the value does not fit in 64 bits the timescale is halved
 * (each attempt rounds the exact rational afresh, so errors never
 * accumulate) and at timescale 1 the result saturates to an infinity.
 * Requires den > 0, 0 < ts, and |num| * ts < 2^126. HAS_BEEN_ROUNDED is set
 * only when the final value is not exact, or when rounded_in says an input
 * was already rounded. */
static mbq_time from_rational(i128 num, i128 den, int32_t ts, int64_t epoch,
                              bool rounded_in)
{
    for (;;) {
        bool inexact;
        i128 v = div_round(num * ts, den, MBQ_TIME_ROUND_DEFAULT, &inexact);
        if (fits_int64(v))
            return numeric((int64_t)v, ts, epoch, rounded_in || inexact);
        if (ts == 1)
            return infinity_of_sign(sign128(num));
        ts /= 2;
    }
}

mbq_time mbq_time_make(int64_t value, int32_t timescale)
{
    return mbq_time_make_with_epoch(value, timescale, 0);
}

mbq_time mbq_time_make_with_epoch(int64_t value, int32_t timescale, int64_t epoch)
{
    if (timescale <= 0)
        return MBQ_TIME_INVALID;
    return numeric(value, timescale, epoch, false);
}

/* seconds == m * 2^e exactly, so seconds * ts is the exact rational
 * m * ts * 2^e: no floating-point product, hence no hidden rounding. Returns
 * false when the rounded value does not fit in 64 bits. */
static bool seconds_at_scale(int64_t m, int e, int32_t ts, int64_t *value,
                             bool *inexact)
{
    i128 n = (i128)m * ts; /* |n| < 2^84 */
    if (n == 0) {
        *value = 0;
        *inexact = false;
        return true;
    }
    if (e >= 0) {
        /* Bound |n| by 2^(63-e) before scaling so the product stays inside
         * i128; the exact range check (INT64_MIN fits, -INT64_MIN does not)
         * comes after. A multiply, not a shift: shifting a negative is UB. */
        i128 an = n < 0 ? -n : n;
        if (e > 63 || an > ((i128)1 << (63 - e)))
            return false;
        i128 v = n * ((i128)1 << e);
        if (!fits_int64(v))
            return false;
        *value = (int64_t)v;
        *inexact = false;
        return true;
    }
    if (-e >= 120) {
        /* 2^-e dwarfs |n| < 2^84: the nearest value is 0, and it is not
         * exact because n != 0. */
        *value = 0;
        *inexact = true;
        return true;
    }
    i128 v = div_round(n, (i128)1 << -e, MBQ_TIME_ROUND_DEFAULT, inexact);
    if (!fits_int64(v))
        return false;
    *value = (int64_t)v;
    return true;
}

mbq_time mbq_time_make_with_seconds(double seconds, int32_t preferred_timescale)
{
    if (preferred_timescale <= 0 || isnan(seconds))
        return MBQ_TIME_INVALID;
    if (isinf(seconds))
        return infinity_of_sign(seconds < 0 ? -1 : 1);

    int e;
    double f = frexp(seconds, &e); /* |f| in [0.5, 1), or 0 */
    /* 2^53 * f is an integer below 2^53 in magnitude (doubles carry 53
     * significant bits), so the conversion is exact. */
    int64_t m = (int64_t)ldexp(f, 53);
    e -= 53;

    for (int32_t ts = preferred_timescale;; ts /= 2) {
        int64_t value;
        bool inexact;
        if (seconds_at_scale(m, e, ts, &value, &inexact))
            return numeric(value, ts, 0, inexact);
        if (ts == 1)
            return infinity_of_sign(m < 0 ? -1 : 1);
    }
}

double mbq_time_get_seconds(mbq_time t)
{
    switch (classify(t)) {
    case KIND_NUMERIC:
        return (double)t.value / (double)t.timescale;
    case KIND_POS_INF:
        return INFINITY;
    case KIND_NEG_INF:
        return -INFINITY;
    case KIND_INDEFINITE:
    case KIND_INVALID:
    default:
        return NAN;
    }
}

mbq_time mbq_time_convert_scale(mbq_time t, int32_t new_timescale,
                                mbq_time_rounding method)
{
    /* A bad target is a caller error, whatever the source is. */
    if (new_timescale <= 0)
        return MBQ_TIME_INVALID;
    switch (classify(t)) {
    case KIND_INVALID:
        return MBQ_TIME_INVALID;
    case KIND_NUMERIC:
        break;
    default:
        return t; /* infinities and indefinite have no scale to convert */
    }
    if (t.timescale == new_timescale)
        return t;

    bool lose_precision = new_timescale < t.timescale;
    mbq_time_rounding m = method;
    if (method == MBQ_TIME_ROUND_QUICKTIME)
        m = lose_precision ? MBQ_TIME_ROUND_TOWARD_ZERO
                           : MBQ_TIME_ROUND_AWAY_FROM_ZERO;

    bool inexact;
    i128 v = div_round((i128)t.value * new_timescale, t.timescale, m, &inexact);
    /* QuickTime never lets a negative time collapse to zero, so that a
     * small negative offset stays distinguishable from none. */
    if (method == MBQ_TIME_ROUND_QUICKTIME && v == 0 && t.value < 0)
        v = -1;
    /* The caller demanded this timescale, so unlike add there is no
     * halving to fall back on: an unrepresentable value saturates. */
    if (!fits_int64(v))
        return infinity_of_sign(sign128(v));
    bool rounded = inexact || (t.flags & MBQ_TIME_FLAG_HAS_BEEN_ROUNDED);
    return numeric((int64_t)v, new_timescale, t.epoch, rounded);
}

bool mbq_time_is_valid(mbq_time t)
{
    return classify(t) != KIND_INVALID;
}

bool mbq_time_is_invalid(mbq_time t)
{
    return classify(t) == KIND_INVALID;
}

bool mbq_time_is_positive_infinity(mbq_time t)
{
    return classify(t) == KIND_POS_INF;
}

bool mbq_time_is_negative_infinity(mbq_time t)
{
    return classify(t) == KIND_NEG_INF;
}

bool mbq_time_is_indefinite(mbq_time t)
{
    return classify(t) == KIND_INDEFINITE;
}

bool mbq_time_is_numeric(mbq_time t)
{
    return classify(t) == KIND_NUMERIC;
}

bool mbq_time_has_been_rounded(mbq_time t)
{
    return classify(t) == KIND_NUMERIC &&
           (t.flags & MBQ_TIME_FLAG_HAS_BEEN_ROUNDED);
}

int32_t mbq_time_compare(mbq_time a, mbq_time b)
{
    enum time_kind ka = classify(a), kb = classify(b);
    if (ka != kb)
        return ka < kb ? -1 : 1;
    if (ka != KIND_NUMERIC)
        return 0; /* each special value, and every invalid, equals its kind */
    if (a.epoch != b.epoch)
        return a.epoch < b.epoch ? -1 : 1;
    /* Timescales are positive, so cross-multiplying keeps the order; both
     * products are below 2^94 in magnitude. */
    i128 l = (i128)a.value * b.timescale;
    i128 r = (i128)b.value * a.timescale;
    return (l > r) - (l < r);
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b != 0) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* a + sign*b, the common core of add and subtract; sign is +1 or -1. */
static mbq_time add_signed(mbq_time a, mbq_time b, int sign)
{
    enum time_kind ka = classify(a), kb = classify(b);
    if (ka == KIND_INVALID || kb == KIND_INVALID)
        return MBQ_TIME_INVALID;

    /* Subtracting an infinity adds the opposite one, which yields the
     * reference's subtract table from its add table. */
    int ia = ka == KIND_POS_INF ? 1 : ka == KIND_NEG_INF ? -1 : 0;
    int ib = kb == KIND_POS_INF ? sign : kb == KIND_NEG_INF ? -sign : 0;
    if (ia != 0 && ib != 0)
        return ia == ib ? infinity_of_sign(ia) : MBQ_TIME_INVALID;
    if (ia != 0 || ib != 0)
        return infinity_of_sign(ia + ib);

    if (ka == KIND_INDEFINITE || kb == KIND_INDEFINITE)
        return MBQ_TIME_INDEFINITE;

    /* Two times on the same non-zero timeline differ by a duration, which
     * lives in epoch 0; times on different timelines cannot be combined. */
    int64_t epoch;
    if (a.epoch != 0 && b.epoch != 0) {
        if (a.epoch != b.epoch)
            return MBQ_TIME_INVALID;
        epoch = 0;
    } else {
        epoch = a.epoch != 0 ? a.epoch : b.epoch;
    }

    /* The exact sum over the LCM of the timescales (< 2^62). Each term is
     * below 2^63 * 2^31 in magnitude, so num stays below 2^95, and the
     * scaling in from_rational below 2^126. */
    int64_t lcm = (int64_t)a.timescale / gcd64(a.timescale, b.timescale) *
                  b.timescale;
    i128 num = (i128)a.value * (lcm / a.timescale) +
               (i128)sign * b.value * (lcm / b.timescale);
    int32_t ts = lcm > MBQ_TIME_MAX_TIMESCALE ? MBQ_TIME_MAX_TIMESCALE
                                              : (int32_t)lcm;
    bool rounded_in = (a.flags | b.flags) & MBQ_TIME_FLAG_HAS_BEEN_ROUNDED;
    return from_rational(num, lcm, ts, epoch, rounded_in);
}

mbq_time mbq_time_add(mbq_time a, mbq_time b)
{
    return add_signed(a, b, 1);
}

mbq_time mbq_time_subtract(mbq_time a, mbq_time b)
{
    return add_signed(a, b, -1);
}

mbq_time mbq_time_multiply(mbq_time t, int32_t multiplier)
{
    switch (classify(t)) {
    case KIND_INVALID:
        return MBQ_TIME_INVALID;
    case KIND_INDEFINITE:
        return MBQ_TIME_INDEFINITE;
    case KIND_POS_INF:
    case KIND_NEG_INF: {
        /* Infinity times zero has no value (Core Media does not define
         * it); invalid is the only honest answer. */
        if (multiplier == 0)
            return MBQ_TIME_INVALID;
        int s = classify(t) == KIND_POS_INF ? 1 : -1;
        return infinity_of_sign(multiplier < 0 ? -s : s);
    }
    case KIND_NUMERIC:
    default:
        break;
    }
    /* |value * multiplier| < 2^94; from_rational scales it by at most
     * 2^31 more. */
    i128 num = (i128)t.value * multiplier;
    return from_rational(num, t.timescale, t.timescale, t.epoch,
                         t.flags & MBQ_TIME_FLAG_HAS_BEEN_ROUNDED);
}

/* Garbage that wins a comparison (it sorts as invalid) must not leak out
 * as-is; hand back the canonical invalid time instead. */
static mbq_time sanitized(mbq_time t)
{
    return classify(t) == KIND_INVALID ? MBQ_TIME_INVALID : t;
}

mbq_time mbq_time_minimum(mbq_time a, mbq_time b)
{
    return sanitized(mbq_time_compare(a, b) <= 0 ? a : b);
}

mbq_time mbq_time_maximum(mbq_time a, mbq_time b)
{
    return sanitized(mbq_time_compare(a, b) >= 0 ? a : b);
}

mbq_time mbq_time_absolute_value(mbq_time t)
{
    switch (classify(t)) {
    case KIND_INVALID:
        return MBQ_TIME_INVALID;
    case KIND_NEG_INF:
        return MBQ_TIME_POSITIVE_INFINITY;
    case KIND_NUMERIC:
        break;
    default:
        return t;
    }
    if (t.value >= 0)
        return t;
    /* -INT64_MIN does not fit: treat it like any other overflow. */
    return from_rational(-(i128)t.value, t.timescale, t.timescale, t.epoch,
                         t.flags & MBQ_TIME_FLAG_HAS_BEEN_ROUNDED);
}
