/* A minimal test harness: each unit test binary is a list of cases run in
 * order in one process; a failed CHECK prints file:line and the expression
 * and marks the case failed. The binary prints "N passed, N failed" last and
 * exits non-zero on any failure. CTest runs each binary as one test. */
#ifndef MBQ_TEST_CHECK_H
#define MBQ_TEST_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_case_failed;

#define CHECK(expr)                                                           \
    do {                                                                      \
        if (!(expr)) {                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,  \
                    #expr);                                                   \
            check_case_failed = 1;                                            \
        }                                                                     \
    } while (0)

#define CHECK_EQ(a, b)                                                        \
    do {                                                                      \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);       \
        if (check_a_ != check_b_) {                                           \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_);          \
            check_case_failed = 1;                                            \
        }                                                                     \
    } while (0)

/* Stops the case at once (for checks later steps depend on). */
#define REQUIRE(expr)                                                         \
    do {                                                                      \
        if (!(expr)) {                                                        \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, \
                    #expr);                                                   \
            check_case_failed = 1;                                            \
            return;                                                           \
        }                                                                     \
    } while (0)

struct check_case {
    const char *name;
    void (*fn)(void);
};

static inline int check_run(const struct check_case *cases, size_t n, int argc,
                            char **argv)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        check_case_failed = 0;
        cases[i].fn();
        printf("%s %s\n", check_case_failed ? "FAIL" : "ok  ", cases[i].name);
        fflush(stdout);
        if (check_case_failed)
            failed++;
        else
            passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define CHECK_MAIN(...)                                                       \
    int main(int argc, char **argv)                                           \
    {                                                                         \
        static const struct check_case cases_[] = {__VA_ARGS__};              \
        return check_run(cases_, sizeof cases_ / sizeof cases_[0], argc, argv); \
    }
#define CASE(fn) {#fn, fn}

#endif
