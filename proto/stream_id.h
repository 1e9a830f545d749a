/*
 * Redis stream ids ("ms-seq") as numbers, so that ids compare numerically
 * (string order would put "9-0" after "10-0").
 */
#ifndef INV_PROTO_STREAM_ID_H
#define INV_PROTO_STREAM_ID_H

#include <stddef.h>
#include <stdint.h>

#include "inval/event.h"

typedef struct inv_sid_s {
  uint64_t ms;
  uint64_t seq;
} inv_sid_t;

/* INV_SID_STRLEN, the size of an id's text buffer, is public: it sizes
 * the ids of the client's acks (inval/event.h). */

/* Parses "ms-seq" or "ms" (seq 0) from s[0..len): decimal digits only, each
 * number within 64 bits. Ids come from Redis replies, payloads, heartbeat
 * records and the state file, so s is untrusted: text of INV_SID_STRLEN
 * bytes or more is refused before it is read (no id is that long; leading
 * zeros could otherwise make any length parse). Returns 0, or INV_EINVAL
 * (out is then unchanged). */
int inv_sid_parse(const char *s, size_t len, inv_sid_t *out);

/* Writes "ms-seq" to out (INV_SID_STRLEN bytes). Returns out. */
char *inv_sid_format(inv_sid_t id, char *out);

/* Returns <0, 0 or >0 as a is before, equal to or after b. */
int inv_sid_cmp(inv_sid_t a, inv_sid_t b);

/* The id window_ms before a: (a.ms - window_ms)-0, or 0-0 when a is
 * younger than the window. */
inv_sid_t inv_sid_minus_ms(inv_sid_t a, uint64_t window_ms);

static inline int inv_sid_is_zero(inv_sid_t a) {
  return a.ms == 0 && a.seq == 0;
}

#endif
