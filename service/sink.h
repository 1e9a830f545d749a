/*
 * The Redis sink: hands one batch payload to Redis with a single script
 * call on the node owning cache:invalidation:log, which appends the log
 * entry and publishes the broadcast atomically, and reports the entry id.
 *
 * The script (see sink.c) runs
 *   XADD cache:invalidation:log MAXLEN ~ <max-log-len> * p <payload>
 *   PUBLISH cache:invalidation <payload + "id": <entry id>>
 * and returns the id. The published map is built inside the script from
 * the log payload: its first byte (fixmap of 3) becomes a fixmap of 4 and
 * the pair "id": <id> is appended, so the events travel to Redis once.
 * Calls use EVALSHA; a NOSCRIPT reply (a fresh node, a failover, SCRIPT
 * FLUSH) is answered once with EVAL of the full script, which also caches
 * it on that node.
 *
 * Replicated acks: with ack_replicas N > 0 in force, the script is followed
 * on the same connection by WAIT N <budget> (one pair through the cluster
 * client, inv_cluster_pair_argv), and the batch succeeds only when WAIT
 * counted at least N replicas. Fewer is INV_EUNAVAIL naming the node and
 * "k of N replicas confirmed": the entry is in the log then, so workers may
 * still apply it (clients retry; invalidations are idempotent). With
 * ack_replicas "default" (-1), N is 1 when the log's node has at least one
 * replica as the cluster client last saw it (CLUSTER SLOTS, or INFO
 * replication standalone), else 0; 0 sends the script alone.
 * Redis runs the WAITs of one connection one after another: while replicas
 * do not confirm, each blocks for its budget, so the batches pipelined
 * behind it fail too (and the connection may time out and reconnect). They
 * are answered EUNAVAIL within redis-timeout all the same, never acked.
 *
 * The fast path (proto/PROTOCOL.md, "Shard channels"): in a cluster the
 * PUBLISH reaches the other nodes over the cluster bus, which costs
 * milliseconds. So once the script confirmed, the sink also sends the
 * published map plus "prev" (the id of the entry before it, returned by the
 * script) with SPUBLISH to the shard channel of every other primary whose
 * connection is up. These copies are best effort and never delay or fail
 * the batch: the bus copy and the log remain the guarantee, and workers
 * take a copy only when its "prev" is the last entry they took in.
 */
#ifndef INV_SINK_H
#define INV_SINK_H

#include <stddef.h>

#include "common/redis_cluster.h"

typedef struct inv_sink_s inv_sink_t;

/*
 * Called exactly once per inv_sink_send(). On success err is 0 and
 * id[0..idlen) is the log entry id. On failure err is INV_EUNAVAIL (Redis
 * unreachable, or no confirmation before the cluster client's deadline) or
 * INV_EREDIS (Redis answered with an error), and msg says why. id and msg
 * are valid only during the call.
 */
typedef void (*inv_sink_done_cb)(void *data, int err, const char *id,
                                 size_t idlen, const char *msg);

typedef struct inv_sink_stats_s {
  uint64_t script_loads;  /* NOSCRIPT answered with EVAL */
  uint64_t wait_failed;   /* WAIT counted fewer replicas than required */
  uint64_t shard_sent;    /* fast-path SPUBLISHes sent */
  uint64_t shard_failed;  /* ... answered with an error or dropped */
  uint64_t shard_skipped; /* ... not sent: the primary's connection was down
                             or its queue full */
} inv_sink_stats_t;

/* Creates a sink sending through cluster (borrowed; it must outlive the
 * sink's pending sends). max_log_len is the MAXLEN ~ bound; shard_publish
 * turns the fast path on; ack_replicas is the replicas an ack waits for,
 * or -1 for the default (see above). Returns 0 and *out, or INV_ENOMEM. */
int inv_sink_create(inv_cluster_t *cluster, long long max_log_len,
                    int shard_publish, int ack_replicas, inv_sink_t **out);

/* The replicas the next batch waits for: the configured number, or what
 * the default means for the log's node now. */
int inv_sink_ack_replicas(const inv_sink_t *s);

/*
 * Sends one batch. payload is the msgpack map {"v", "ts", "events"} packed
 * as a fixmap of exactly 3 entries (first byte 0x83); it is borrowed and
 * must stay valid until cb runs. Returns 0, or INV_EINVAL (payload does not
 * start with a fixmap of 3), INV_ENOMEM or INV_ESHUTDOWN (the cluster
 * client is closing); on error cb is never called.
 */
int inv_sink_send(inv_sink_t *s, const char *payload, size_t len,
                  inv_sink_done_cb cb, void *data);

const inv_sink_stats_t *inv_sink_stats(const inv_sink_t *s);

/* Frees the sink. Sends still pending keep a pointer to it, so call this
 * only after the cluster client has failed or finished them (its
 * closed_cb). Accepts NULL. */
void inv_sink_free(inv_sink_t *s);

/* Writes which Redis node the sink writes to now, for the cause of an
 * EUNAVAIL answer: "the log's node 127.0.0.1:7001" or "... (not
 * connected)" or "no node known yet". */
void inv_sink_describe(const inv_sink_t *s, char *out, size_t outlen);

#endif
