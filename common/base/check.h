/*
 * Invariant checks that stay on in every build.
 *
 * CMake's RelWithDebInfo and Release add -DNDEBUG, which turns assert()
 * into nothing, so a counter that underflows in production would wrap
 * silently and a position could move past unfinished work. INV_CHECK is
 * what redis's serverAssert is: the condition is always evaluated, and
 * when it is false the process prints where and why and aborts (a core
 * dump, and in the sanitizer build a stack trace). Use it for states that
 * mean a bug in inval, never for bad input (which gets an error code).
 */
#ifndef INV_CHECK_H
#define INV_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define INV_CHECK(cond)                                                        \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: %s: invariant failed: %s\n", __FILE__, __LINE__, \
              __func__, #cond);                                                \
      fflush(stderr);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#endif
