/*
 * A minimal unit-test harness: CHECK records a failure with file and line
 * and goes on; each test file's main runs its cases with RUN and returns
 * check_summary(), which prints "N passed, N failed" and yields the exit
 * status (non-zero when any check failed).
 */
#ifndef INV_TEST_CHECK_H
#define INV_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      check_passed++;                                                          \
    } else {                                                                   \
      check_failed++;                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_EQ_INT(a, b)                                              \
  do {                                                                  \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);     \
    if (check_a_ == check_b_) {                                         \
      check_passed++;                                                   \
    } else {                                                            \
      check_failed++;                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
              __FILE__, __LINE__, #a, #b, check_a_, check_b_);          \
    }                                                                   \
  } while (0)

#define CHECK_EQ_STR(a, b)                                                  \
  do {                                                                      \
    const char *check_a_ = (a), *check_b_ = (b);                            \
    if (check_a_ && check_b_ && strcmp(check_a_, check_b_) == 0) {          \
      check_passed++;                                                       \
    } else {                                                                \
      check_failed++;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", \
              __FILE__, __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",   \
              check_b_ ? check_b_ : "(null)");                              \
    }                                                                       \
  } while (0)

#define RUN(test_fn)                                                    \
  do {                                                                  \
    int check_before_ = check_failed;                                   \
    test_fn();                                                          \
    fprintf(stderr, "%s %s\n",                                          \
            check_failed == check_before_ ? "ok  " : "FAIL", #test_fn); \
  } while (0)

static inline int check_summary(void) {
  printf("%d passed, %d failed\n", check_passed, check_failed);
  return check_failed == 0 && check_passed > 0 ? 0 : 1;
}

#endif
