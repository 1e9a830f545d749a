/*
 * Worker heartbeats: the record each inval-worker writes every
 * heartbeat-interval into the hash cache:invalidation:workers (field = the
 * worker id, value = the encoded record), and that the publisher and
 * invalctl read to list workers.
 *
 * The record is a msgpack map with exactly these keys:
 *   "id"      str  worker id (by default its node address "host:port")
 *   "node"    str  the Redis node it serves, "host:port"
 *   "role"    str  "primary", "replica" or "unknown"
 *   "last_id" str  the last log id it applied ("0-0" before any)
 *   "lag_ms"  uint now - ts of the most recent event it applied
 *   "behind"  uint log entries after last_id (capped, see workers/STATS.md)
 *   "ts_ms"   uint wall clock (ms since epoch) when written
 *   "ttl_ms"  uint how long the record stays fresh
 * Records are never expired by Redis: a record is stale when
 * now - ts_ms > ttl_ms, so a worker that vanished stays visible, flagged.
 */
#ifndef INV_HEARTBEAT_H
#define INV_HEARTBEAT_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define INV_HEARTBEAT_KEY "cache:invalidation:workers"

typedef struct inv_heartbeat_s {
  char id[256];
  char node[256];
  char role[16];
  char last_id[48];
  uint64_t lag_ms;
  uint64_t behind;
  uint64_t ts_ms;
  uint64_t ttl_ms;
} inv_heartbeat_t;

/* Packs hb as the 8-key map above into pk (for embedding in a reply). */
void inv_heartbeat_pack(msgpack_packer *pk, const inv_heartbeat_t *hb);

/* Appends the encoded record to out. Returns 0, or INV_ENOMEM (out may then
 * hold a partial record; the caller resets it). */
int inv_heartbeat_encode(const inv_heartbeat_t *hb, inv_buf_t *out);

/* The longest record inv_heartbeat_decode accepts. An encoded record is
 * under 700 bytes (its strings are bounded by the fields above); the hash is
 * writable by anything that reaches Redis, so a longer value is refused
 * before any of it is decoded. */
#define INV_HEARTBEAT_MAX_BYTES 4096

/* Decodes a record. Unknown keys are ignored; a missing key leaves its field
 * zero or empty; strings longer than their field are truncated. The bytes
 * are checked before msgpack-c sees them (proto/codec_check.h), so a
 * declared count or length that the bytes cannot hold costs no allocation.
 * Returns 0, or INV_EPROTO (hb is then zeroed) when data is empty, longer
 * than INV_HEARTBEAT_MAX_BYTES, not exactly one well-formed msgpack object,
 * or not a map. */
int inv_heartbeat_decode(const char *data, size_t len, inv_heartbeat_t *hb);

/* Returns 1 when the record is stale at now_ms (now_ms - ts_ms > ttl_ms),
 * else 0. A record from the future (clock skew) is fresh. */
int inv_heartbeat_is_stale(const inv_heartbeat_t *hb, uint64_t now_ms);

#endif
