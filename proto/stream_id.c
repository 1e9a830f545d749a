/*
 * Stream id parsing and ordering (see stream_id.h).
 */
#include "proto/stream_id.h"

#include <stdio.h>

#include "inval/errors.h"

/* Reads a decimal number from s[*i..len) up to a '-' or the end. Returns 0,
 * or INV_EINVAL on no digits or overflow. */
static int read_u64(const char *s, size_t len, size_t *i, uint64_t *out) {
  uint64_t v = 0;
  size_t start = *i;
  while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
    uint64_t d = (uint64_t)(s[*i] - '0');
    if (v > (UINT64_MAX - d) / 10) return INV_EINVAL;
    v = v * 10 + d;
    (*i)++;
  }
  if (*i == start) return INV_EINVAL;
  *out = v;
  return 0;
}

int inv_sid_parse(const char *s, size_t len, inv_sid_t *out) {
  inv_sid_t id = {0, 0};
  size_t i = 0;
  if (len >= INV_SID_STRLEN) return INV_EINVAL;
  if (read_u64(s, len, &i, &id.ms) != 0) return INV_EINVAL;
  if (i < len) {
    if (s[i] != '-') return INV_EINVAL;
    i++;
    if (read_u64(s, len, &i, &id.seq) != 0 || i != len) return INV_EINVAL;
  }
  *out = id;
  return 0;
}

char *inv_sid_format(inv_sid_t id, char *out) {
  snprintf(out, INV_SID_STRLEN, "%llu-%llu", (unsigned long long)id.ms,
           (unsigned long long)id.seq);
  return out;
}

int inv_sid_cmp(inv_sid_t a, inv_sid_t b) {
  if (a.ms != b.ms) return a.ms < b.ms ? -1 : 1;
  if (a.seq != b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

inv_sid_t inv_sid_minus_ms(inv_sid_t a, uint64_t window_ms) {
  inv_sid_t r = {0, 0};
  if (a.ms > window_ms) r.ms = a.ms - window_ms;
  return r;
}
