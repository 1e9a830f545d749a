/*
 * Fuzz target for common/glob: the matcher as a differential against a
 * plain recursive port of Redis 7's stringmatchlen() (util.c, with its
 * 1000-level nesting limit and KEYS/SCAN's "*" shortcut), and the rules
 * built on it.
 *
 * The reference lives in tests/fuzz/glob_ref.h (the unit test uses it too).
 *
 * Input layout: bytes 0 and 1 are the pattern's length (little-endian, cut
 * to what is left), then the pattern, then the key. Both may hold any byte.
 *
 * Invariants (any violation aborts, which both libFuzzer and the replay
 * driver report):
 *   - inv_glob_match() agrees with the reference on the key;
 *   - inv_glob_check() is 0 or INV_EINVAL;
 *   - a flush has no unmatched byte, and a non-empty pattern without one
 *     is a flush unless it is past the nesting limit (then it matches
 *     nothing);
 *   - with an unmatched byte b, the reference matches no key of b's
 *     (lengths 1 to 8, and the key's own length); a well-formed pattern
 *     that is no flush leaves its witness unmatched;
 *   - a flush matches the key exactly when it matches the key of 'a's of
 *     the same length (only lengths decide);
 *   - a matching key starts with the pattern's literal prefix and, when the
 *     pattern is pinned, hashes to its slot.
 *
 * Built two ways by inv_fuzz_target() (tests/fuzz/glob.cmake): as the
 * libFuzzer binary fuzz_glob with clang and INV_FUZZ=ON, and always as
 * fuzz_glob_replay (the CTest test fuzz.glob_replay, replay_main.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/glob.h"
#include "common/base/slot.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/glob_ref.h"

/* Bounds the reference's work: its recursion walks the key once per '*'
 * run at worst, which is quadratic, not exponential (skipLongerMatches). */
#define MAX_KEY 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t plen = (size_t)data[0] | (size_t)data[1] << 8;
  if (plen > size - 2) plen = size - 2;
  size_t slen = size - 2 - plen;
  if (slen > MAX_KEY) slen = MAX_KEY;

  /* Copies, so that the sanitizers see every read past a length. The
   * pattern gets its sds terminator. */
  char *pat = malloc(plen + 1);
  char *key = malloc(slen ? slen : 1);
  char *probe = malloc(slen > 8 ? slen : 8);
  char *lit = malloc(plen ? plen : 1);
  FUZZ_ASSERT(pat && key && probe && lit);
  memcpy(pat, data + 2, plen);
  pat[plen] = '\0';
  memcpy(key, data + 2 + plen, slen);

  int m = inv_glob_match(pat, plen, key, slen);
  FUZZ_ASSERT(m == glob_ref_match(pat, plen, key, slen));

  int check = inv_glob_check(pat, plen);
  FUZZ_ASSERT(check == 0 || check == INV_EINVAL);
  int flush = inv_glob_matches_everything(pat, plen);
  int b = inv_glob_unmatched_byte(pat, plen);
  FUZZ_ASSERT(b >= -1 && b <= 255);
  FUZZ_ASSERT(!flush || b < 0);

  if (b >= 0) {
    for (size_t n = 1; n <= 8; n++) {
      memset(probe, b, n);
      FUZZ_ASSERT(!glob_ref_match(pat, plen, probe, n));
    }
    if (slen > 0) {
      memset(probe, b, slen);
      FUZZ_ASSERT(!glob_ref_match(pat, plen, probe, slen));
    }
  } else if (flush) {
    memset(probe, 'a', slen);
    FUZZ_ASSERT(m == glob_ref_match(pat, plen, probe, slen));
  } else {
    /* No byte is restricted, yet no flush: the empty pattern, or one past
     * the nesting limit, which matches no key at all. */
    FUZZ_ASSERT(plen == 0 || !m);
    if (plen > 0) {
      memset(probe, 'a', 8);
      FUZZ_ASSERT(!glob_ref_match(pat, plen, probe, 8));
    }
  }

  if (m) {
    size_t n = inv_glob_literal_prefix(pat, plen, lit);
    FUZZ_ASSERT(n <= slen && memcmp(lit, key, n) == 0);
    unsigned slot;
    if (inv_glob_pinned_slot(pat, plen, &slot))
      FUZZ_ASSERT(inv_key_slot(key, slen) == slot);
  }

  free(lit);
  free(probe);
  free(key);
  free(pat);
  return 0;
}
