/* testing.h - the few macros the C unit tests share.
 *
 * A unit test is a program that exits 0 (pass), 1 (fail) or 77 (skip), as
 * automake's harness expects.  CHECK records a failure and carries on so one
 * run reports every broken case; the program's exit status says the rest.
 */
#ifndef EBSFS_TESTING_H
#define EBSFS_TESTING_H

#include <stdio.h>
#include <string.h>

/* A test in several files keeps one count: all files but one define
 * TESTING_EXTERN before including this. */
#ifdef TESTING_EXTERN
extern int test_failures;
#else
int test_failures;
#endif

#define CHECK(cond) do { \
    if (!(cond)) { \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      test_failures++; \
    } \
  } while (0)

#define CHECK_STREQ(a, b) do { \
    const char *a_ = (a), *b_ = (b); \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) { \
      fprintf(stderr, "%s:%d: CHECK_STREQ failed: %s\n  got:      %s\n  expected: %s\n", \
              __FILE__, __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
      test_failures++; \
    } \
  } while (0)

#define CHECK_INTEQ(a, b) do { \
    long long a_ = (long long) (a), b_ = (long long) (b); \
    if (a_ != b_) { \
      fprintf(stderr, "%s:%d: CHECK_INTEQ failed: %s = %lld, expected %lld\n", \
              __FILE__, __LINE__, #a, a_, b_); \
      test_failures++; \
    } \
  } while (0)

#define TEST_EXIT() do { \
    if (test_failures) fprintf(stderr, "%d check(s) failed\n", test_failures); \
    return test_failures ? 1 : 0; \
  } while (0)

#endif
