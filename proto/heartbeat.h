/*
 * Worker heartbeats: the record each inval-worker writes every
 * heartbeat-interval into the hash cache:invalidation:workers (field = the
 * worker id, value = the encoded record), and that the publisher and
 * invalctl read to list workers.
 *
 * The record is a msgpack map with these keys:
 *   "id"      str  worker id (by default its node address "host:port")
 *   "node"    str  the Redis node it serves, "host:port"
 *   "role"    str  "primary", "replica" or "unknown"
 *   "last_id" str  the last log id it applied ("0-0" before any)
 *   "lag_ms"  uint now - ts of the most recent event it applied
 *   "behind"  uint log entries after last_id (capped, see workers/STATS.md)
 *   "ts_ms"   uint wall clock (ms since epoch) when written
 *   "ttl_ms"  uint how long the record stays fresh
 * and, optionally (a record without them still decodes):
 *   "shards"   array  [[shard uint, "acked id" str], ...]: the log shards
 *                   it consumes and the last id it acknowledged in each
 *   "instance" str  who wrote it: "host/pid/random hex", different for each
 *                   start of a worker, so that a second worker writing the
 *                   same id can be told apart (at most 63 bytes kept)
 *   "health"   map  the node's figures at the worker's last poll
 *                   (workers/node_health.h): "up", "cluster_state_ok",
 *                   "slots_fail", "used_memory", "maxmemory",
 *                   "evicted_keys", "keyspace_hits", "keyspace_misses",
 *                   "connected_clients" (uint) and
 *                   "mem_fragmentation_ratio" (float); unknown keys ignored
 * Records are never expired by Redis: a record is stale when
 * now - ts_ms > ttl_ms, so a worker that vanished stays visible, flagged.
 */
#ifndef INV_HEARTBEAT_H
#define INV_HEARTBEAT_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/buf.h"
#include "proto/stream_id.h"

#define INV_HEARTBEAT_KEY "cache:invalidation:workers"

/* The node figures a heartbeat carries (a summary of the worker's node
 * health poll). XX(key): one unsigned figure each. */
/* clang-format off: one figure per line (clang-format has no stable layout
 * for a list of bare macro calls). */
#define INV_HEARTBEAT_HEALTH_MAP(XX) \
  XX(up)                             \
  XX(cluster_state_ok)               \
  XX(slots_fail)                     \
  XX(used_memory)                    \
  XX(maxmemory)                      \
  XX(evicted_keys)                   \
  XX(keyspace_hits)                  \
  XX(keyspace_misses)                \
  XX(connected_clients)
/* clang-format on */

typedef struct inv_heartbeat_health_s {
#define INV_HEARTBEAT_HEALTH_FIELD(key) uint64_t key;
  INV_HEARTBEAT_HEALTH_MAP(INV_HEARTBEAT_HEALTH_FIELD)
#undef INV_HEARTBEAT_HEALTH_FIELD
  /* Finite and in [0, INV_HEARTBEAT_FRAG_MAX]: the decoder clamps it. */
  double fragmentation;
} inv_heartbeat_health_t;

#define INV_HEARTBEAT_FRAG_MAX 1e6
/* Shard positions a record carries: one per log shard at most. */
#define INV_HEARTBEAT_SHARDS_MAX 64

typedef struct inv_heartbeat_s {
  char id[256];
  char node[256];
  char role[16];
  char last_id[INV_SID_STRLEN];
  uint64_t lag_ms;
  uint64_t behind;
  uint64_t ts_ms;
  uint64_t ttl_ms;
  char instance[64]; /* "" when the record has none */
  /* The log shards the worker consumes, each with the last id it
   * acknowledged ("shards": [[shard, "id"], ...]; at most
   * INV_HEARTBEAT_SHARDS_MAX, entries of another shape are skipped). */
  size_t nshards;
  struct {
    unsigned shard;
    char acked[INV_SID_STRLEN];
  } shards[INV_HEARTBEAT_SHARDS_MAX];
  int has_health; /* 1 when health holds figures */
  inv_heartbeat_health_t health;
} inv_heartbeat_t;

/* Packs hb as the map above into pk (for embedding in a reply): the eight
 * keys, plus "instance" when set and "health" when has_health. */
void inv_heartbeat_pack(msgpack_packer *pk, const inv_heartbeat_t *hb);

/* The number of map entries inv_heartbeat_pack writes for hb, for a caller
 * that adds entries of its own: it packs the map header itself and then
 * calls inv_heartbeat_pack_entries. */
uint32_t inv_heartbeat_entries(const inv_heartbeat_t *hb);
void inv_heartbeat_pack_entries(msgpack_packer *pk, const inv_heartbeat_t *hb);

/* Appends the encoded record to out. Returns 0, or INV_ENOMEM (out may then
 * hold a partial record; the caller resets it). */
int inv_heartbeat_encode(const inv_heartbeat_t *hb, inv_buf_t *out);

/* The longest record inv_heartbeat_decode accepts. An encoded record is
 * under 1000 bytes (its strings are bounded by the fields above); the hash is
 * writable by anything that reaches Redis, so a longer value is refused
 * before any of it is decoded. */
#define INV_HEARTBEAT_MAX_BYTES 4096

/* Decodes a record. Unknown keys are ignored; a missing key leaves its field
 * zero or empty; strings longer than their field are truncated; a "health"
 * value that is not a map is ignored (has_health stays 0). The bytes
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
