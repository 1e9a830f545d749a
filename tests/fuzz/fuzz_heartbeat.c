/*
 * Fuzz target for inv_heartbeat_decode, which the publisher, invalctl and
 * the workers run on every value of cache:invalidation:workers: a hash
 * that anything reaching Redis can write.
 *
 * Invariants:
 *   - the decoder answers 0 or INV_EPROTO; on INV_EPROTO the record is all
 *     zero; input over INV_HEARTBEAT_MAX_BYTES is always refused;
 *   - a decoded record's strings are NUL-terminated inside their fields;
 *   - the optional fields stay in bounds: the instance is NUL-terminated,
 *     the fragmentation ratio finite and in [0, INV_HEARTBEAT_FRAG_MAX];
 *   - re-encoding a decoded record and decoding it again gives the same
 *     record (strings compared as C strings), and the encoding fits in
 *     INV_HEARTBEAT_MAX_BYTES;
 *   - the staleness test agrees with its definition.
 */
#include <stdint.h>
#include <string.h>

#include "common/base/buf.h"
#include "inval/errors.h"
#include "proto/heartbeat.h"
#include "tests/fuzz/fuzz.h"

static void check_strings(const inv_heartbeat_t *hb) {
  FUZZ_ASSERT(memchr(hb->id, '\0', sizeof(hb->id)) != NULL);
  FUZZ_ASSERT(memchr(hb->node, '\0', sizeof(hb->node)) != NULL);
  FUZZ_ASSERT(memchr(hb->role, '\0', sizeof(hb->role)) != NULL);
  FUZZ_ASSERT(memchr(hb->last_id, '\0', sizeof(hb->last_id)) != NULL);
  FUZZ_ASSERT(memchr(hb->instance, '\0', sizeof(hb->instance)) != NULL);
  FUZZ_ASSERT(hb->has_health == 0 || hb->has_health == 1);
  FUZZ_ASSERT(hb->health.fragmentation >= 0 &&
              hb->health.fragmentation <= INV_HEARTBEAT_FRAG_MAX);
}

static void check_same(const inv_heartbeat_t *a, const inv_heartbeat_t *b) {
  FUZZ_ASSERT(strcmp(a->id, b->id) == 0 && strcmp(a->node, b->node) == 0);
  FUZZ_ASSERT(strcmp(a->role, b->role) == 0);
  FUZZ_ASSERT(strcmp(a->last_id, b->last_id) == 0);
  FUZZ_ASSERT(a->lag_ms == b->lag_ms && a->behind == b->behind);
  FUZZ_ASSERT(a->ts_ms == b->ts_ms && a->ttl_ms == b->ttl_ms);
  FUZZ_ASSERT(strcmp(a->instance, b->instance) == 0);
  FUZZ_ASSERT(a->has_health == b->has_health);
  FUZZ_ASSERT(memcmp(&a->health, &b->health, sizeof(a->health)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const inv_heartbeat_t zero;
  inv_heartbeat_t hb, back;
  inv_buf_t buf;
  int rc;

  memset(&hb, 0x5a, sizeof(hb));
  rc = inv_heartbeat_decode((const char *)data, size, &hb);
  FUZZ_ASSERT(rc == 0 || rc == INV_EPROTO);
  if (size > INV_HEARTBEAT_MAX_BYTES) FUZZ_ASSERT(rc == INV_EPROTO);
  if (rc != 0) {
    FUZZ_ASSERT(memcmp(&hb, &zero, sizeof(hb)) == 0);
    return 0;
  }
  check_strings(&hb);

  memset(&buf, 0, sizeof(buf));
  FUZZ_ASSERT(inv_heartbeat_encode(&hb, &buf) == 0);
  FUZZ_ASSERT(buf.len <= INV_HEARTBEAT_MAX_BYTES);
  FUZZ_ASSERT(inv_heartbeat_decode(buf.data, buf.len, &back) == 0);
  check_same(&hb, &back);
  inv_buf_free(&buf);

  {
    uint64_t now = hb.ts_ms + hb.lag_ms; /* any clock reading will do */
    int stale = inv_heartbeat_is_stale(&hb, now);
    FUZZ_ASSERT(stale == (now > hb.ts_ms && now - hb.ts_ms > hb.ttl_ms));
    FUZZ_ASSERT(inv_heartbeat_is_stale(&hb, hb.ts_ms) == 0);
  }
  return 0;
}
