/* Unit tests for mbq_time: the CMTime rules of the reference, case by case,
 * with exact expected fields (never just "is numeric"). */
#include <math.h>

#include <mbq/time.h>

#include "check.h"

#define V MBQ_TIME_FLAG_VALID
#define R MBQ_TIME_FLAG_HAS_BEEN_ROUNDED

/* All four fields, so a wrong timescale or a stray flag cannot hide. */
#define CHECK_TIME(t, v, ts, fl, ep)                                          \
    do {                                                                      \
        mbq_time ct_ = (t);                                                   \
        CHECK_EQ(ct_.value, (v));                                             \
        CHECK_EQ(ct_.timescale, (ts));                                        \
        CHECK_EQ(ct_.flags, (fl));                                            \
        CHECK_EQ(ct_.epoch, (ep));                                            \
    } while (0)

#define CHECK_INVALID(t) CHECK_TIME((t), 0, 0, 0u, 0)
#define CHECK_POS_INF(t) CHECK_TIME((t), 0, 0, V | MBQ_TIME_FLAG_POSITIVE_INFINITY, 0)
#define CHECK_NEG_INF(t) CHECK_TIME((t), 0, 0, V | MBQ_TIME_FLAG_NEGATIVE_INFINITY, 0)
#define CHECK_INDEFINITE(t) CHECK_TIME((t), 0, 0, V | MBQ_TIME_FLAG_INDEFINITE, 0)

static mbq_time T(int64_t value, int32_t timescale)
{
    return mbq_time_make(value, timescale);
}

static mbq_time TE(int64_t value, int32_t timescale, int64_t epoch)
{
    return mbq_time_make_with_epoch(value, timescale, epoch);
}

static mbq_time rounded(mbq_time t)
{
    t.flags |= R;
    return t;
}

static const mbq_time PINF = MBQ_TIME_POSITIVE_INFINITY;
static const mbq_time NINF = MBQ_TIME_NEGATIVE_INFINITY;
static const mbq_time INDEF = MBQ_TIME_INDEFINITE;
static const mbq_time INVAL = MBQ_TIME_INVALID;

/* Bit patterns another process might leave in shared memory. */
static const mbq_time GARBAGE_TS0 = {5, 0, MBQ_TIME_FLAG_VALID, 0};
static const mbq_time GARBAGE_TSNEG = {5, -30, MBQ_TIME_FLAG_VALID, 0};
static const mbq_time GARBAGE_TSMIN = {-7, INT32_MIN,
                                       MBQ_TIME_FLAG_VALID |
                                           MBQ_TIME_FLAG_HAS_BEEN_ROUNDED,
                                       3};
static const mbq_time GARBAGE_TWO_IMPLIED = {
    0, 0,
    MBQ_TIME_FLAG_VALID | MBQ_TIME_FLAG_POSITIVE_INFINITY |
        MBQ_TIME_FLAG_NEGATIVE_INFINITY,
    0};

static void test_make(void)
{
    CHECK_TIME(T(3, 30), 3, 30, V, 0);
    CHECK_TIME(T(INT64_MIN, 1), INT64_MIN, 1, V, 0);
    CHECK_TIME(T(-1, MBQ_TIME_MAX_TIMESCALE), -1, MBQ_TIME_MAX_TIMESCALE, V, 0);
    CHECK_TIME(TE(7, 600, -4), 7, 600, V, -4);
    CHECK_INVALID(T(1, 0));
    CHECK_INVALID(T(1, -1));
    CHECK_INVALID(T(1, INT32_MIN));
    CHECK_INVALID(TE(1, 0, 9));

    mbq_time zero = MBQ_TIME_ZERO;
    CHECK(mbq_time_is_numeric(zero));
    CHECK_EQ(sizeof(mbq_time), 24);
}

static void test_predicates(void)
{
    CHECK(mbq_time_is_invalid(INVAL));
    CHECK(!mbq_time_is_valid(INVAL));
    CHECK(mbq_time_is_valid(PINF) && mbq_time_is_positive_infinity(PINF));
    CHECK(!mbq_time_is_numeric(PINF) && !mbq_time_is_negative_infinity(PINF));
    CHECK(mbq_time_is_valid(NINF) && mbq_time_is_negative_infinity(NINF));
    CHECK(mbq_time_is_valid(INDEF) && mbq_time_is_indefinite(INDEF));
    CHECK(!mbq_time_is_numeric(INDEF));
    CHECK(mbq_time_is_numeric(T(1, 2)));
    CHECK(!mbq_time_has_been_rounded(T(1, 2)));
    CHECK(mbq_time_has_been_rounded(rounded(T(1, 2))));
    /* The rounded bit means nothing on a non-numeric time. */
    CHECK(!mbq_time_has_been_rounded(rounded(PINF)));
    /* Implied-value bits without the valid bit are still invalid. */
    mbq_time no_valid = {0, 0, MBQ_TIME_FLAG_POSITIVE_INFINITY, 0};
    CHECK(mbq_time_is_invalid(no_valid));
    CHECK(!mbq_time_is_positive_infinity(no_valid));
    /* Infinities ignore their other fields. */
    mbq_time odd_inf = {123, -5, V | MBQ_TIME_FLAG_NEGATIVE_INFINITY, 8};
    CHECK(mbq_time_is_negative_infinity(odd_inf));
}

static void test_garbage_is_invalid(void)
{
    const mbq_time g[] = {GARBAGE_TS0, GARBAGE_TSNEG, GARBAGE_TSMIN,
                          GARBAGE_TWO_IMPLIED};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        CHECK(mbq_time_is_invalid(g[i]));
        CHECK(!mbq_time_is_valid(g[i]));
        CHECK(!mbq_time_is_numeric(g[i]));
        CHECK(!mbq_time_is_positive_infinity(g[i]));
        CHECK(!mbq_time_is_negative_infinity(g[i]));
        CHECK(!mbq_time_is_indefinite(g[i]));
        CHECK(!mbq_time_has_been_rounded(g[i]));
        CHECK(isnan(mbq_time_get_seconds(g[i])));
        CHECK_EQ(mbq_time_compare(g[i], INVAL), 0);
        CHECK_EQ(mbq_time_compare(g[i], PINF), 1);
        CHECK_EQ(mbq_time_compare(T(1, 1), g[i]), -1);
        CHECK_INVALID(mbq_time_add(g[i], T(1, 1)));
        CHECK_INVALID(mbq_time_add(T(1, 1), g[i]));
        CHECK_INVALID(mbq_time_add(g[i], PINF));
        CHECK_INVALID(mbq_time_subtract(INDEF, g[i]));
        CHECK_INVALID(mbq_time_multiply(g[i], 2));
        CHECK_INVALID(mbq_time_convert_scale(g[i], 600, MBQ_TIME_ROUND_DEFAULT));
        CHECK_INVALID(mbq_time_absolute_value(g[i]));
        /* Garbage wins max (it sorts as invalid) but comes back canonical. */
        CHECK_INVALID(mbq_time_maximum(T(1, 1), g[i]));
        CHECK_INVALID(mbq_time_minimum(g[i], INVAL));
        CHECK_TIME(mbq_time_minimum(g[i], T(1, 1)), 1, 1, V, 0);
    }
}

static void test_compare_total_order(void)
{
    /* One representative per rank, lowest first; every pair is checked. */
    const mbq_time order[] = {NINF, T(-5, 1), T(0, 1), T(7, 3), INDEF, PINF,
                              INVAL};
    const size_t n = sizeof order / sizeof order[0];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int want = (i > j) - (i < j);
            CHECK_EQ(mbq_time_compare(order[i], order[j]), want);
        }
    }
    /* Extremes of the numeric range still sit between the infinities. */
    CHECK_EQ(mbq_time_compare(NINF, T(INT64_MIN, 1)), -1);
    CHECK_EQ(mbq_time_compare(T(INT64_MAX, 1), INDEF), -1);
    CHECK_EQ(mbq_time_compare(T(INT64_MAX, 1), PINF), -1);
    CHECK_EQ(mbq_time_compare(PINF, INVAL), -1);
    /* All invalid times are equal, whatever their other bits. */
    mbq_time inval2 = {42, 600, MBQ_TIME_FLAG_HAS_BEEN_ROUNDED, 9};
    CHECK_EQ(mbq_time_compare(INVAL, inval2), 0);
    /* Specials equal themselves even with stray fields. */
    mbq_time pinf2 = {9, 600, V | MBQ_TIME_FLAG_POSITIVE_INFINITY | R, 4};
    CHECK_EQ(mbq_time_compare(PINF, pinf2), 0);
    mbq_time indef2 = {1, 1, V | MBQ_TIME_FLAG_INDEFINITE, -3};
    CHECK_EQ(mbq_time_compare(indef2, INDEF), 0);
    CHECK_EQ(mbq_time_compare(NINF, NINF), 0);
}

static void test_compare_numeric(void)
{
    CHECK_EQ(mbq_time_compare(T(1, 2), T(2, 4)), 0);
    CHECK_EQ(mbq_time_compare(T(1, 3), T(333, 1000)), 1);
    CHECK_EQ(mbq_time_compare(T(-1, 3), T(-333, 1000)), -1);
    CHECK_EQ(mbq_time_compare(T(0, 1), T(0, 600)), 0);
    /* The rounded flag does not take part in ordering. */
    CHECK_EQ(mbq_time_compare(rounded(T(1, 2)), T(1, 2)), 0);
    /* Differ by 1/4 at 2^59: a double would call these equal. */
    CHECK_EQ(mbq_time_compare(T((INT64_C(1) << 60) + 1, 2),
                              T((INT64_C(1) << 61) + 1, 4)), 1);
    CHECK_EQ(mbq_time_compare(T(INT64_MAX, MBQ_TIME_MAX_TIMESCALE),
                              T(INT64_MAX - 1, MBQ_TIME_MAX_TIMESCALE - 1)), -1);
    CHECK_EQ(mbq_time_compare(T(INT64_MIN, 1), T(INT64_MIN, 2)), -1);
    CHECK_EQ(mbq_time_compare(T(INT64_MIN, 1), T(INT64_MAX, 1)), -1);
    /* Epochs: the larger epoch is greater regardless of value. */
    CHECK_EQ(mbq_time_compare(TE(-100, 1, 1), TE(100, 1, 0)), 1);
    CHECK_EQ(mbq_time_compare(TE(INT64_MAX, 1, -1), TE(INT64_MIN, 1, 0)), -1);
    CHECK_EQ(mbq_time_compare(TE(1, 2, 5), TE(2, 4, 5)), 0);
    CHECK_EQ(mbq_time_compare(TE(1, 2, 5), TE(2, 3, 5)), -1);
    /* Epochs order numbers only: the specials keep their rank. */
    CHECK_EQ(mbq_time_compare(TE(1, 1, INT64_MAX), INDEF), -1);
    CHECK_EQ(mbq_time_compare(TE(1, 1, INT64_MIN), NINF), 1);
}

static void test_min_max(void)
{
    CHECK_NEG_INF(mbq_time_minimum(T(1, 1), NINF));
    CHECK_TIME(mbq_time_maximum(T(1, 1), NINF), 1, 1, V, 0);
    CHECK_TIME(mbq_time_minimum(T(1, 2), T(1, 3)), 1, 3, V, 0);
    CHECK_TIME(mbq_time_maximum(T(1, 2), T(1, 3)), 1, 2, V, 0);
    /* Pitfall 9: invalid wins a max scan, +inf loses to it. */
    CHECK_INVALID(mbq_time_maximum(PINF, INVAL));
    CHECK_POS_INF(mbq_time_minimum(PINF, INVAL));
    CHECK_INDEFINITE(mbq_time_maximum(T(INT64_MAX, 1), INDEF));
    /* Ties return the first argument. */
    CHECK_TIME(mbq_time_minimum(T(1, 2), T(2, 4)), 1, 2, V, 0);
    CHECK_TIME(mbq_time_maximum(T(1, 2), T(2, 4)), 1, 2, V, 0);
    CHECK_TIME(mbq_time_maximum(TE(0, 1, 2), TE(5, 1, 1)), 0, 1, V, 2);
}

static void test_add_infinities(void)
{
    CHECK_POS_INF(mbq_time_add(PINF, PINF));
    CHECK_NEG_INF(mbq_time_add(NINF, NINF));
    CHECK_INVALID(mbq_time_add(PINF, NINF));
    CHECK_INVALID(mbq_time_add(NINF, PINF));
    /* Exactly one infinite: that infinity, over numbers and indefinite. */
    CHECK_POS_INF(mbq_time_add(PINF, T(-5, 1)));
    CHECK_POS_INF(mbq_time_add(T(INT64_MIN, 1), PINF));
    CHECK_NEG_INF(mbq_time_add(NINF, T(INT64_MAX, 1)));
    CHECK_NEG_INF(mbq_time_add(T(3, 7), NINF));
    CHECK_POS_INF(mbq_time_add(INDEF, PINF));
    CHECK_NEG_INF(mbq_time_add(NINF, INDEF));
    /* Epochs do not matter once an infinity is involved. */
    CHECK_POS_INF(mbq_time_add(TE(1, 1, 3), PINF));
}

static void test_subtract_infinities(void)
{
    CHECK_INVALID(mbq_time_subtract(PINF, PINF));
    CHECK_INVALID(mbq_time_subtract(NINF, NINF));
    CHECK_POS_INF(mbq_time_subtract(PINF, NINF));
    CHECK_NEG_INF(mbq_time_subtract(NINF, PINF));
    CHECK_POS_INF(mbq_time_subtract(PINF, T(5, 1)));
    CHECK_NEG_INF(mbq_time_subtract(NINF, T(-5, 1)));
    CHECK_NEG_INF(mbq_time_subtract(T(5, 1), PINF));
    CHECK_POS_INF(mbq_time_subtract(T(5, 1), NINF));
    CHECK_NEG_INF(mbq_time_subtract(INDEF, PINF));
    CHECK_POS_INF(mbq_time_subtract(INDEF, NINF));
    CHECK_POS_INF(mbq_time_subtract(PINF, INDEF));
}

static void test_add_invalid_priority(void)
{
    mbq_time ops[] = {T(1, 1), PINF, NINF, INDEF, INVAL};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        CHECK_INVALID(mbq_time_add(INVAL, ops[i]));
        CHECK_INVALID(mbq_time_add(ops[i], INVAL));
        CHECK_INVALID(mbq_time_subtract(INVAL, ops[i]));
        CHECK_INVALID(mbq_time_subtract(ops[i], INVAL));
    }
    /* Invalid beats even an epoch mismatch and an overflow. */
    CHECK_INVALID(mbq_time_add(TE(INT64_MAX, 1, 1), INVAL));
}

static void test_add_indefinite(void)
{
    CHECK_INDEFINITE(mbq_time_add(INDEF, T(1, 2)));
    CHECK_INDEFINITE(mbq_time_add(T(1, 2), INDEF));
    CHECK_INDEFINITE(mbq_time_add(INDEF, INDEF));
    CHECK_INDEFINITE(mbq_time_subtract(INDEF, INDEF));
    CHECK_INDEFINITE(mbq_time_subtract(T(1, 2), INDEF));
    /* Indefinite is decided before epochs are looked at. */
    mbq_time indef_ep = {0, 0, V | MBQ_TIME_FLAG_INDEFINITE, 7};
    CHECK_INDEFINITE(mbq_time_add(TE(1, 1, 3), indef_ep));
}

static void test_add_epochs(void)
{
    /* Same non-zero epoch: a duration, epoch 0. */
    CHECK_TIME(mbq_time_add(TE(1, 10, 4), TE(2, 10, 4)), 3, 10, V, 0);
    CHECK_TIME(mbq_time_subtract(TE(5, 10, 4), TE(2, 10, 4)), 3, 10, V, 0);
    /* Different non-zero epochs: unrelated timelines. */
    CHECK_INVALID(mbq_time_add(TE(1, 10, 4), TE(2, 10, 5)));
    CHECK_INVALID(mbq_time_subtract(TE(1, 10, -1), TE(2, 10, 1)));
    /* Epoch 0 combines with any epoch and takes it. */
    CHECK_TIME(mbq_time_add(TE(1, 10, 0), TE(2, 10, 5)), 3, 10, V, 5);
    CHECK_TIME(mbq_time_add(TE(1, 10, 5), TE(2, 10, 0)), 3, 10, V, 5);
    CHECK_TIME(mbq_time_subtract(TE(1, 10, 0), TE(2, 10, -9)), -1, 10, V, -9);
    CHECK_TIME(mbq_time_add(T(1, 10), T(2, 10)), 3, 10, V, 0);
}

static void test_add_timescales(void)
{
    /* Equal timescales are kept and nothing is reduced. */
    CHECK_TIME(mbq_time_add(T(1, 600), T(2, 600)), 3, 600, V, 0);
    CHECK_TIME(mbq_time_add(T(2, 4), T(2, 4)), 4, 4, V, 0);
    CHECK_TIME(mbq_time_subtract(T(1, 600), T(1, 600)), 0, 600, V, 0);
    /* Otherwise the LCM. */
    CHECK_TIME(mbq_time_add(T(1, 30), T(1, 25)), 11, 150, V, 0);
    CHECK_TIME(mbq_time_subtract(T(1, 30), T(1, 25)), -1, 150, V, 0);
    CHECK_TIME(mbq_time_add(T(3, 4), T(1, 2)), 5, 4, V, 0);
    CHECK_TIME(mbq_time_add(T(1, 90000), T(1, 600)), 151, 90000, V, 0);
    CHECK_TIME(mbq_time_add(T(-1, 3), T(1, 7)), -4, 21, V, 0);
}

static void test_add_lcm_above_max(void)
{
    /* 46349 and 46351 are coprime; their LCM is 2148322499 > 0x7fffffff.
     * 1/46349 + 1/46351 = 92700/2148322499 = 92663.80.../0x7fffffff. */
    CHECK_TIME(mbq_time_add(T(1, 46349), T(1, 46351)), 92664,
               MBQ_TIME_MAX_TIMESCALE, V | R, 0);
    /* 1/46349 - 1/46351 = 1.99921.../0x7fffffff. */
    CHECK_TIME(mbq_time_subtract(T(1, 46349), T(1, 46351)), 2,
               MBQ_TIME_MAX_TIMESCALE, V | R, 0);
    CHECK_TIME(mbq_time_subtract(T(1, 46351), T(1, 46349)), -2,
               MBQ_TIME_MAX_TIMESCALE, V | R, 0);
    /* 1 s + 1 s lands exactly on the clamped timescale: nothing was lost,
     * so the result is not marked rounded. */
    CHECK_TIME(mbq_time_add(T(46349, 46349), T(46351, 46351)),
               2 * (int64_t)MBQ_TIME_MAX_TIMESCALE, MBQ_TIME_MAX_TIMESCALE, V, 0);
}

static void test_add_overflow(void)
{
    /* Halving the timescale makes room, exactly. */
    CHECK_TIME(mbq_time_add(T(INT64_MAX, 600), T(INT64_MAX, 600)), INT64_MAX,
               300, V, 0);
    CHECK_TIME(mbq_time_add(T(INT64_MAX, 2), T(1, 2)), INT64_C(1) << 62, 1, V, 0);
    CHECK_TIME(mbq_time_subtract(T(0, 2), T(INT64_MIN, 2)), INT64_C(1) << 62, 1,
               V, 0);
    /* Halving 3 gives 1: (2^63 + 1) / 3 is exact, 2^63 / 3 = ...602.67
     * is not. */
    CHECK_TIME(mbq_time_add(T(INT64_MAX, 3), T(2, 3)),
               INT64_C(3074457345618258603), 1, V, 0);
    CHECK_TIME(mbq_time_add(T(INT64_MAX, 3), T(1, 3)),
               INT64_C(3074457345618258603), 1, V | R, 0);
    /* Still too big at timescale 1: the infinity of the result's sign. */
    CHECK_POS_INF(mbq_time_add(T(INT64_MAX, 1), T(1, 1)));
    CHECK_NEG_INF(mbq_time_subtract(T(INT64_MIN, 1), T(1, 1)));
    CHECK_NEG_INF(mbq_time_add(T(INT64_MIN, 1), T(INT64_MIN, 1)));
    CHECK_POS_INF(mbq_time_subtract(T(0, 1), T(INT64_MIN, 1)));
    /* LCM 35, sum 12 * INT64_MAX / 35: the timescale halves 35 -> 17 -> 8
     * -> 4 -> 2, where 24 * INT64_MAX / 35 = ...124.8 finally fits. */
    CHECK_TIME(mbq_time_add(T(INT64_MAX, 7), T(INT64_MAX, 5)),
               INT64_C(6324597968128989125), 2, V | R, 0);
    CHECK_NEG_INF(mbq_time_add(TE(INT64_MIN, 1, 3), TE(-1, 1, 3)));
    /* The extremes themselves are fine when the result fits. */
    CHECK_TIME(mbq_time_add(T(INT64_MIN, 1), T(0, 1)), INT64_MIN, 1, V, 0);
    CHECK_TIME(mbq_time_add(T(INT64_MIN, 1), T(INT64_MAX, 1)), -1, 1, V, 0);
    CHECK_TIME(mbq_time_subtract(T(-1, 1), T(INT64_MAX, 1)), INT64_MIN, 1, V, 0);
}

static void test_add_rounded_flag(void)
{
    CHECK_TIME(mbq_time_add(rounded(T(1, 10)), T(2, 10)), 3, 10, V | R, 0);
    CHECK_TIME(mbq_time_add(T(1, 10), rounded(T(2, 10))), 3, 10, V | R, 0);
    CHECK_TIME(mbq_time_subtract(rounded(T(1, 30)), T(1, 25)), -1, 150, V | R, 0);
    CHECK_TIME(mbq_time_add(T(1, 10), T(2, 10)), 3, 10, V, 0);
    /* A special result carries no rounded flag. */
    CHECK_POS_INF(mbq_time_add(rounded(T(1, 1)), PINF));
    CHECK_INDEFINITE(mbq_time_add(rounded(T(1, 1)), INDEF));
    /* Unknown flag bits are not copied into results. */
    mbq_time odd = T(1, 10);
    odd.flags |= 1u << 7;
    CHECK_TIME(mbq_time_add(odd, T(1, 10)), 2, 10, V, 0);
}

static void test_convert_scale_methods(void)
{
    /* 7/10 -> 2.8/4 and -7/10 -> -2.8/4 (losing precision). */
    static const struct {
        mbq_time_rounding m;
        int64_t pos, neg;
    } rows[] = {
        {MBQ_TIME_ROUND_HALF_AWAY_FROM_ZERO, 3, -3},
        {MBQ_TIME_ROUND_TOWARD_ZERO, 2, -2},
        {MBQ_TIME_ROUND_AWAY_FROM_ZERO, 3, -3},
        {MBQ_TIME_ROUND_QUICKTIME, 2, -2},
        {MBQ_TIME_ROUND_TOWARD_POSITIVE_INFINITY, 3, -2},
        {MBQ_TIME_ROUND_TOWARD_NEGATIVE_INFINITY, 2, -3},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK_TIME(mbq_time_convert_scale(T(7, 10), 4, rows[i].m), rows[i].pos,
                   4, V | R, 0);
        CHECK_TIME(mbq_time_convert_scale(T(-7, 10), 4, rows[i].m), rows[i].neg,
                   4, V | R, 0);
        /* Exact conversions are untouched by any method. */
        CHECK_TIME(mbq_time_convert_scale(T(-1, 2), 600, rows[i].m), -300, 600,
                   V, 0);
        CHECK_TIME(mbq_time_convert_scale(T(300, 600), 2, rows[i].m), 1, 2, V, 0);
    }
    /* Below one half: 1/10 -> 0.4/4. */
    CHECK_TIME(mbq_time_convert_scale(T(1, 10), 4, MBQ_TIME_ROUND_DEFAULT), 0, 4,
               V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(1, 10), 4, MBQ_TIME_ROUND_AWAY_FROM_ZERO),
               1, 4, V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(-1, 10), 4,
                                      MBQ_TIME_ROUND_TOWARD_NEGATIVE_INFINITY),
               -1, 4, V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(-1, 10), 4,
                                      MBQ_TIME_ROUND_TOWARD_POSITIVE_INFINITY),
               0, 4, V | R, 0);
    /* Exactly one half rounds away from zero by default. */
    CHECK_TIME(mbq_time_convert_scale(T(5, 10), 1, MBQ_TIME_ROUND_DEFAULT), 1, 1,
               V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(-5, 10), 1, MBQ_TIME_ROUND_DEFAULT), -1, 1,
               V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(15, 10), 1, MBQ_TIME_ROUND_DEFAULT), 2, 1,
               V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(-25, 10), 1, MBQ_TIME_ROUND_DEFAULT), -3, 1,
               V | R, 0);
}

static void test_convert_scale_quicktime(void)
{
    const mbq_time_rounding qt = MBQ_TIME_ROUND_QUICKTIME;
    /* Gaining precision (3 -> 10): away from zero. */
    CHECK_TIME(mbq_time_convert_scale(T(1, 3), 10, qt), 4, 10, V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(-1, 3), 10, qt), -4, 10, V | R, 0);
    /* Losing precision (600 -> 30): toward zero ... */
    CHECK_TIME(mbq_time_convert_scale(T(59, 600), 30, qt), 2, 30, V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(-59, 600), 30, qt), -2, 30, V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(1, 600), 30, qt), 0, 30, V | R, 0);
    /* ... but a negative value never becomes 0. */
    CHECK_TIME(mbq_time_convert_scale(T(-1, 600), 30, qt), -1, 30, V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(-19, 600), 30, qt), -1, 30, V | R, 0);
    CHECK_TIME(mbq_time_convert_scale(T(-1, MBQ_TIME_MAX_TIMESCALE), 1, qt), -1, 1,
               V | R, 0);
    /* The other methods do let it become 0. */
    CHECK_TIME(mbq_time_convert_scale(T(-1, 600), 30, MBQ_TIME_ROUND_TOWARD_ZERO),
               0, 30, V | R, 0);
    /* Zero itself stays zero. */
    CHECK_TIME(mbq_time_convert_scale(T(0, 600), 30, qt), 0, 30, V, 0);
}

static void test_convert_scale_special(void)
{
    /* Same timescale: returned as is, flags included. */
    CHECK_TIME(mbq_time_convert_scale(rounded(TE(7, 10, 2)), 10,
                                      MBQ_TIME_ROUND_DEFAULT), 7, 10, V | R, 2);
    /* Epoch and an earlier rounding carry over. */
    CHECK_TIME(mbq_time_convert_scale(rounded(TE(1, 2, -6)), 4,
                                      MBQ_TIME_ROUND_DEFAULT), 2, 4, V | R, -6);
    CHECK_TIME(mbq_time_convert_scale(TE(1, 2, -6), 4, MBQ_TIME_ROUND_DEFAULT), 2,
               4, V, -6);
    /* Non-numeric stays as is. */
    CHECK_POS_INF(mbq_time_convert_scale(PINF, 600, MBQ_TIME_ROUND_DEFAULT));
    CHECK_NEG_INF(mbq_time_convert_scale(NINF, 600, MBQ_TIME_ROUND_DEFAULT));
    CHECK_INDEFINITE(mbq_time_convert_scale(INDEF, 600, MBQ_TIME_ROUND_QUICKTIME));
    CHECK_INVALID(mbq_time_convert_scale(INVAL, 600, MBQ_TIME_ROUND_DEFAULT));
    /* A bad target timescale is invalid, even for a special source. */
    CHECK_INVALID(mbq_time_convert_scale(T(1, 2), 0, MBQ_TIME_ROUND_DEFAULT));
    CHECK_INVALID(mbq_time_convert_scale(T(1, 2), -600, MBQ_TIME_ROUND_DEFAULT));
    CHECK_INVALID(mbq_time_convert_scale(T(1, 2), INT32_MIN, MBQ_TIME_ROUND_DEFAULT));
    CHECK_INVALID(mbq_time_convert_scale(PINF, 0, MBQ_TIME_ROUND_DEFAULT));
    /* Unrepresentable at the demanded timescale: saturate by sign. */
    CHECK_POS_INF(mbq_time_convert_scale(T(INT64_MAX, 1), 2, MBQ_TIME_ROUND_DEFAULT));
    CHECK_NEG_INF(mbq_time_convert_scale(T(INT64_MIN, 1), MBQ_TIME_MAX_TIMESCALE,
                                         MBQ_TIME_ROUND_TOWARD_ZERO));
    /* Extremes that do fit. */
    CHECK_TIME(mbq_time_convert_scale(T(INT64_MIN, 2), 1, MBQ_TIME_ROUND_DEFAULT),
               INT64_MIN / 2, 1, V, 0);
    CHECK_TIME(mbq_time_convert_scale(T(INT64_MAX, MBQ_TIME_MAX_TIMESCALE), 1,
                                      MBQ_TIME_ROUND_TOWARD_ZERO),
               INT64_C(4294967298), 1, V | R, 0);
    /* An unknown method number falls back to the default. */
    CHECK_TIME(mbq_time_convert_scale(T(5, 10), 1, (mbq_time_rounding)99), 1, 1,
               V | R, 0);
}

static void test_make_with_seconds(void)
{
    /* Exact. */
    CHECK_TIME(mbq_time_make_with_seconds(1.5, 600), 900, 600, V, 0);
    CHECK_TIME(mbq_time_make_with_seconds(-2.25, 4), -9, 4, V, 0);
    CHECK_TIME(mbq_time_make_with_seconds(0.0, 30), 0, 30, V, 0);
    CHECK_TIME(mbq_time_make_with_seconds(-0.0, 30), 0, 30, V, 0);
    CHECK_TIME(mbq_time_make_with_seconds(1e10, 1), 10000000000, 1, V, 0);
    /* Inexact: default rounding, flagged. */
    CHECK_TIME(mbq_time_make_with_seconds(1.0 / 3.0, 30), 10, 30, V | R, 0);
    CHECK_TIME(mbq_time_make_with_seconds(-1.0 / 3.0, 30), -10, 30, V | R, 0);
    CHECK_TIME(mbq_time_make_with_seconds(0.5, 1), 1, 1, V | R, 0);
    CHECK_TIME(mbq_time_make_with_seconds(-0.5, 1), -1, 1, V | R, 0);
    CHECK_TIME(mbq_time_make_with_seconds(0.49, 1), 0, 1, V | R, 0);
    /* 0.1 is not a binary fraction: 600 * 0.1 is 60 only after rounding. */
    CHECK_TIME(mbq_time_make_with_seconds(0.1, 600), 60, 600, V | R, 0);
    CHECK_TIME(mbq_time_make_with_seconds(5e-324, MBQ_TIME_MAX_TIMESCALE), 0,
               MBQ_TIME_MAX_TIMESCALE, V | R, 0);
    CHECK_TIME(mbq_time_make_with_seconds(-5e-324, 1), 0, 1, V | R, 0);
    /* Specials and bad timescales. */
    CHECK_INVALID(mbq_time_make_with_seconds(NAN, 600));
    CHECK_INVALID(mbq_time_make_with_seconds(-NAN, 600));
    CHECK_INVALID(mbq_time_make_with_seconds(1.0, 0));
    CHECK_INVALID(mbq_time_make_with_seconds(1.0, -600));
    CHECK_INVALID(mbq_time_make_with_seconds(INFINITY, 0));
    CHECK_POS_INF(mbq_time_make_with_seconds(INFINITY, 600));
    CHECK_NEG_INF(mbq_time_make_with_seconds(-INFINITY, 600));
    /* Overflow halves the timescale: 0x7fffffff -> 0x3fffffff -> 0x1fffffff. */
    CHECK_TIME(mbq_time_make_with_seconds(1e10, MBQ_TIME_MAX_TIMESCALE),
               INT64_C(5368709110000000000), 0x1fffffff, V, 0);
    /* 2^62 s fits only at timescale 1 (600 -> 300 -> ... -> 2 -> 1). */
    CHECK_TIME(mbq_time_make_with_seconds(4611686018427387904.0, 600),
               INT64_C(1) << 62, 1, V, 0);
    CHECK_TIME(mbq_time_make_with_seconds(-9223372036854775808.0, 1), INT64_MIN,
               1, V, 0);
    /* ... and beyond timescale 1 it saturates. */
    CHECK_POS_INF(mbq_time_make_with_seconds(9223372036854775808.0, 600));
    CHECK_TIME(mbq_time_make_with_seconds(-9223372036854775808.0, 2), INT64_MIN,
               1, V, 0);
    CHECK_NEG_INF(mbq_time_make_with_seconds(-18446744073709551616.0, 2));
    CHECK_POS_INF(mbq_time_make_with_seconds(1e300, 600));
    CHECK_NEG_INF(mbq_time_make_with_seconds(-1e300, MBQ_TIME_MAX_TIMESCALE));
}

static void test_get_seconds(void)
{
    CHECK(mbq_time_get_seconds(T(3, 2)) == 1.5);
    CHECK(mbq_time_get_seconds(T(-1, 4)) == -0.25);
    CHECK(mbq_time_get_seconds(T(0, 600)) == 0.0);
    CHECK(mbq_time_get_seconds(TE(90, 600, 7)) == 0.15); /* epoch ignored */
    CHECK(mbq_time_get_seconds(T(INT64_MIN, 1)) == -9223372036854775808.0);
    CHECK(isnan(mbq_time_get_seconds(INVAL)));
    CHECK(isnan(mbq_time_get_seconds(INDEF)));
    CHECK(isinf(mbq_time_get_seconds(PINF)) && mbq_time_get_seconds(PINF) > 0);
    CHECK(isinf(mbq_time_get_seconds(NINF)) && mbq_time_get_seconds(NINF) < 0);
    /* Round trip through seconds for an exact value. */
    CHECK_TIME(mbq_time_make_with_seconds(mbq_time_get_seconds(T(-9, 4)), 4), -9, 4,
               V, 0);
}

static void test_multiply(void)
{
    CHECK_TIME(mbq_time_multiply(T(3, 10), 4), 12, 10, V, 0);
    CHECK_TIME(mbq_time_multiply(T(3, 10), -1), -3, 10, V, 0);
    CHECK_TIME(mbq_time_multiply(T(3, 10), 0), 0, 10, V, 0);
    CHECK_TIME(mbq_time_multiply(TE(3, 10, 8), 2), 6, 10, V, 8);
    CHECK_TIME(mbq_time_multiply(rounded(T(3, 10)), 2), 6, 10, V | R, 0);
    CHECK_TIME(mbq_time_multiply(T(5, 1), INT32_MIN), -5 * (INT64_C(1) << 31), 1,
               V, 0);
    /* Overflow: halve the timescale, exactly if possible ... */
    CHECK_TIME(mbq_time_multiply(T(INT64_MAX, 4), 2), INT64_MAX, 2, V, 0);
    /* ... rounding if not: (2^64 - 2) / 3 = 6148914691236517204.67 ... */
    CHECK_TIME(mbq_time_multiply(T(INT64_MAX, 3), 2),
               INT64_C(6148914691236517205), 1, V | R, 0);
    /* ... and saturate at timescale 1. */
    CHECK_POS_INF(mbq_time_multiply(T(INT64_MIN, 1), -1));
    CHECK_POS_INF(mbq_time_multiply(T(INT64_MIN, 1), INT32_MIN));
    CHECK_NEG_INF(mbq_time_multiply(T(INT64_MAX, 1), INT32_MIN));
    CHECK_NEG_INF(mbq_time_multiply(T(INT64_MAX, MBQ_TIME_MAX_TIMESCALE), INT32_MIN));
    /* Infinities: sign from both operands; times 0 is undefined. */
    CHECK_POS_INF(mbq_time_multiply(PINF, 2));
    CHECK_NEG_INF(mbq_time_multiply(PINF, -2));
    CHECK_NEG_INF(mbq_time_multiply(NINF, 1));
    CHECK_POS_INF(mbq_time_multiply(NINF, INT32_MIN));
    CHECK_INVALID(mbq_time_multiply(PINF, 0));
    CHECK_INVALID(mbq_time_multiply(NINF, 0));
    CHECK_INDEFINITE(mbq_time_multiply(INDEF, 5));
    CHECK_INDEFINITE(mbq_time_multiply(INDEF, 0));
    CHECK_INDEFINITE(mbq_time_multiply(INDEF, -1));
    CHECK_INVALID(mbq_time_multiply(INVAL, 1));
}

static void test_absolute_value(void)
{
    CHECK_TIME(mbq_time_absolute_value(T(-3, 10)), 3, 10, V, 0);
    CHECK_TIME(mbq_time_absolute_value(T(3, 10)), 3, 10, V, 0);
    CHECK_TIME(mbq_time_absolute_value(T(0, 10)), 0, 10, V, 0);
    CHECK_TIME(mbq_time_absolute_value(rounded(TE(-3, 10, 2))), 3, 10, V | R, 2);
    CHECK_POS_INF(mbq_time_absolute_value(NINF));
    CHECK_POS_INF(mbq_time_absolute_value(PINF));
    CHECK_INDEFINITE(mbq_time_absolute_value(INDEF));
    CHECK_INVALID(mbq_time_absolute_value(INVAL));
    /* -INT64_MIN does not fit: the usual overflow path. */
    CHECK_TIME(mbq_time_absolute_value(T(INT64_MIN, 2)), INT64_C(1) << 62, 1, V, 0);
    CHECK_TIME(mbq_time_absolute_value(T(INT64_MIN, 3)),
               INT64_C(3074457345618258603), 1, V | R, 0);
    CHECK_POS_INF(mbq_time_absolute_value(T(INT64_MIN, 1)));
    CHECK_TIME(mbq_time_absolute_value(T(INT64_MIN + 1, 1)), INT64_MAX, 1, V, 0);
}

CHECK_MAIN(CASE(test_make), CASE(test_predicates), CASE(test_garbage_is_invalid),
           CASE(test_compare_total_order), CASE(test_compare_numeric),
           CASE(test_min_max), CASE(test_add_infinities),
           CASE(test_subtract_infinities), CASE(test_add_invalid_priority),
           CASE(test_add_indefinite), CASE(test_add_epochs),
           CASE(test_add_timescales), CASE(test_add_lcm_above_max),
           CASE(test_add_overflow), CASE(test_add_rounded_flag),
           CASE(test_convert_scale_methods), CASE(test_convert_scale_quicktime),
           CASE(test_convert_scale_special), CASE(test_make_with_seconds),
           CASE(test_get_seconds), CASE(test_multiply),
           CASE(test_absolute_value))
