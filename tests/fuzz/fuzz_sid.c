/*
 * Fuzz target for the stream-id parser (proto/stream_id.c), which reads
 * ids from Redis replies, payloads, heartbeat records and the state file.
 *
 * Invariants:
 *   - inv_sid_parse answers 0 or INV_EINVAL and leaves out unchanged on
 *     INV_EINVAL;
 *   - it accepts exactly what an independent reading accepts: under
 *     INV_SID_STRLEN bytes of "DIGITS" or "DIGITS-DIGITS", each number
 *     within 64 bits, with the same values;
 *   - a parsed id formats to text that parses to the same id, and that
 *     text is canonical (formatting it again gives the same bytes);
 *   - inv_sid_cmp is antisymmetric and agrees with the numbers, and
 *     inv_sid_minus_ms never moves an id forward.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "tests/fuzz/fuzz.h"
#include "proto/stream_id.h"

/* Reads one decimal number of s[0..n) (n > 0, digits only) with strtoull.
 * Returns 0, or -1 when it does not fit in 64 bits. */
static int ref_number(const char *s, size_t n, uint64_t *out) {
  char buf[INV_SID_STRLEN];
  char *end;
  unsigned long long v;
  memcpy(buf, s, n);
  buf[n] = '\0';
  errno = 0;
  v = strtoull(buf, &end, 10);
  if (errno == ERANGE || *end != '\0') return -1;
  *out = (uint64_t)v;
  return 0;
}

/* The reference reading of an id. Returns 0 with *out, or -1. */
static int ref_parse(const char *s, size_t len, inv_sid_t *out) {
  size_t dash = len, digits = 0;
  if (len == 0 || len >= INV_SID_STRLEN) return -1;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '-' && dash == len) {
      dash = i;
    } else if (s[i] >= '0' && s[i] <= '9') {
      digits++;
    } else {
      return -1;
    }
  }
  if (dash == 0 || dash + 1 == len) return -1;
  out->seq = 0;
  if (ref_number(s, dash, &out->ms) != 0) return -1;
  if (dash < len && ref_number(s + dash + 1, len - dash - 1, &out->seq) != 0)
    return -1;
  return digits > 0 ? 0 : -1;
}

static void check_one(const char *s, size_t len, inv_sid_t *parsed, int *ok) {
  inv_sid_t id = {0xdead, 0xbeef}, ref = {0, 0};
  int rc = inv_sid_parse(s, len, &id);
  int rrc = ref_parse(s, len, &ref);
  FUZZ_ASSERT(rc == 0 || rc == INV_EINVAL);
  FUZZ_ASSERT((rc == 0) == (rrc == 0));
  *ok = rc == 0;
  if (rc != 0) {
    FUZZ_ASSERT(id.ms == 0xdead && id.seq == 0xbeef);
    return;
  }
  FUZZ_ASSERT(inv_sid_cmp(id, ref) == 0);
  {
    char text[INV_SID_STRLEN], again[INV_SID_STRLEN];
    inv_sid_t back;
    FUZZ_ASSERT(inv_sid_format(id, text) == text);
    FUZZ_ASSERT(strlen(text) < INV_SID_STRLEN);
    FUZZ_ASSERT(inv_sid_parse(text, strlen(text), &back) == 0);
    FUZZ_ASSERT(back.ms == id.ms && back.seq == id.seq);
    FUZZ_ASSERT(strcmp(inv_sid_format(back, again), text) == 0);
  }
  *parsed = id;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  inv_sid_t a = {0, 0}, b = {0, 0};
  int oka, okb;
  /* The whole input, then its two halves at the first space: two ids to
   * compare. */
  const char *sp = memchr(s, ' ', size);
  size_t first = sp ? (size_t)(sp - s) : size;
  check_one(s, size, &a, &oka);
  check_one(s, first, &a, &oka);
  check_one(sp ? sp + 1 : s, sp ? size - first - 1 : 0, &b, &okb);
  if (oka && okb) {
    int ab = inv_sid_cmp(a, b), ba = inv_sid_cmp(b, a);
    FUZZ_ASSERT((ab > 0) - (ab < 0) == -((ba > 0) - (ba < 0)));
    FUZZ_ASSERT((ab < 0) == (a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq)));
    FUZZ_ASSERT(inv_sid_cmp(inv_sid_minus_ms(a, b.ms), a) <= 0);
  }
  return 0;
}
