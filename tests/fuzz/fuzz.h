/*
 * What every fuzz target in tests/fuzz shares: the entry point libFuzzer
 * calls (and replay_main.c drives without libFuzzer), the invariant check
 * and a small deterministic random generator.
 *
 * A target is one file that defines LLVMFuzzerTestOneInput and checks its
 * invariants with FUZZ_ASSERT. tests/fuzz/fuzz.cmake builds it twice (see
 * inv_fuzz_target there): linked with replay_main.c as the CTest test
 * fuzz.NAME_replay in every build tree, and with libFuzzer when clang and
 * -DINV_FUZZ=ON are used.
 */
#ifndef INV_FUZZ_H
#define INV_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts on a broken invariant, which both libFuzzer and the replay driver
 * report as a failure (with ASan's stack trace in sanitizer builds). */
#define FUZZ_ASSERT(cond)                                                  \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                      \
      abort();                                                             \
    }                                                                      \
  } while (0)

/* xorshift64*: small, deterministic, good enough to pick sizes and
 * mutations. *s must not be zero. */
static inline uint64_t fuzz_rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

#endif
