/*
 * The sharded log (PROTOCOL.md section 10): the log is partitioned the way
 * Redis Cluster partitions keys, so that an event is logged, replicated,
 * delivered and applied on the node that owns its keys.
 *
 * There are INV_LOG_SHARDS shards, each covering a contiguous range of
 * INV_LOG_SHARD_SLOTS hash slots: shard i covers slots
 * [i * INV_LOG_SHARD_SLOTS, (i + 1) * INV_LOG_SHARD_SLOTS). A shard's stream
 * and its hint channel are named with the canonical tag of the first slot
 * of its range (inv_slot_tag), so both live in that slot: resharding,
 * MIGRATE and failover carry the stream, and the consumer group inside it,
 * along with the keys of the range.
 *
 *   stream   cache:invalidation:log:{<tag>}     consumer group "inval"
 *   channel  cache:invalidation:shard:{<tag>}   SPUBLISH <entry id>
 *
 * The number of shards is part of the protocol: every publisher and worker
 * of a deployment must agree on it.
 */
#ifndef INV_LOG_SHARD_H
#define INV_LOG_SHARD_H

#include <stddef.h>

#include "common/base/slot.h"
#include "proto/event.h"

#define INV_LOG_SHARDS 64
#define INV_LOG_SHARD_SLOTS (INV_SLOTS / INV_LOG_SHARDS)
/* The version of the log entry and broadcast payloads ("v"). */
#define INV_PAYLOAD_VERSION 2
#define INV_LOG_KEY_PREFIX INV_NAMESPACE ":log:"
/* The consumer group of every shard stream, and the one consumer name
 * every worker reads as: after a failover or a migration the next worker
 * finds the entries its predecessor read but did not acknowledge in that
 * consumer's pending list, with no claiming. */
#define INV_LOG_GROUP "inval"
#define INV_LOG_CONSUMER "worker"
/* Longest shard stream or channel name, NUL included. */
#define INV_LOG_NAME_MAX 48

/* The shard that logs events for keys in slot (0..16383). */
static inline unsigned inv_log_shard_of_slot(unsigned slot) {
  return slot / INV_LOG_SHARD_SLOTS;
}

/* The first slot of shard's range, where its stream and channel live. */
static inline unsigned inv_log_shard_home_slot(unsigned shard) {
  return shard * INV_LOG_SHARD_SLOTS;
}

/* Writes shard's stream key, "cache:invalidation:log:{<tag>}", NUL-terminated;
 * returns its length. */
size_t inv_log_shard_key(unsigned shard, char out[INV_LOG_NAME_MAX]);

/* Writes shard's hint channel, "cache:invalidation:shard:{<tag>}",
 * NUL-terminated; returns its length. */
size_t inv_log_shard_channel(unsigned shard, char out[INV_LOG_NAME_MAX]);

/* Returns the shard whose stream key or channel is name[0..len), or -1 when
 * it is neither. */
int inv_log_shard_from_name(const char *name, size_t len);

/* Where an event is logged in a cluster: the shard of its slot for an
 * exact key, a prefix that holds a complete non-empty hash tag, or a
 * pattern pinned to one slot (inv_glob_pinned_slot); -1 for every shard
 * (an unpinned prefix or pattern: any node may hold its keys). On a
 * standalone server every event goes to shard 0. */
int inv_log_event_shard(const inv_event_t *ev);

#endif
