/*
 * The Redis sink: writes one batch to the sharded log (proto/log_shard.h)
 * and then broadcasts it.
 *
 * Each event of a batch is routed to a shard: in a cluster to
 * inv_log_event_shard() (one shard, or every shard for an unpinned prefix
 * or pattern), on a standalone server to shard 0. The batch becomes one
 * log entry per shard it touches, holding only that shard's events in
 * batch order, {"v": 2, "ts", "events"}, written by one script call routed
 * by the shard's stream key:
 *   if the stream does not exist: XGROUP CREATE <stream> inval 0 MKSTREAM
 *   XADD <stream> MAXLEN ~ <max-log-len> * p <payload>
 *   SPUBLISH <shard channel> <entry id>
 * The group is created with the stream, so no entry is ever written before
 * the cursor that will read it. Calls use EVALSHA; a NOSCRIPT reply (a
 * fresh node, a failover, SCRIPT FLUSH) is answered once with EVAL of the
 * full script, which also caches it on that node.
 *
 * Every shard write of a batch is issued in the same call, so the cluster
 * client pipelines them per node within one loop iteration.
 *
 * Replicated acks: with ack_replicas N > 0 in force for a shard, its
 * script is followed on the same connection by WAIT N <budget> (one pair,
 * inv_cluster_pair_argv), and that write succeeds only when WAIT counted
 * at least N replicas. With ack_replicas "default" (-1), N is 1 when the
 * node of the shard's stream has at least one replica as the cluster
 * client last saw it, else 0 (the script alone).
 *
 * Outcome: each shard write is reported as it ends (so that the caller can
 * answer a request as soon as the shards it touched answered), failures
 * with INV_EUNAVAIL (unreachable, not confirmed in time, too few replicas)
 * or INV_EREDIS (an error reply), naming the shard and its node; entries
 * already written stay (delivery is at least once). When every write of
 * the batch succeeded the sink sends one PUBLISH cache:invalidation
 * of the broadcast {"v": 2, "ts", "events": [every event], "ids": [[shard,
 * id], ...]} before answering; it is not awaited, and a failure only counts
 * in broadcast_failed (logged at most once per 10 s).
 *
 * Memory: the sink copies what it needs from the batch in inv_sink_send(),
 * so the caller's buffers may go as soon as it returns; a send's own memory
 * is freed when its last shard write answered (the cluster client answers
 * every command by its deadline), whether or not the batch was answered
 * before that.
 */
#ifndef INV_SINK_H
#define INV_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "common/redis/redis_cluster.h"
#include "proto/log_shard.h"

typedef struct inv_sink_s inv_sink_t;
/* One batch being written, until its callback ran or it was detached. */
typedef struct inv_sink_call_s inv_sink_call_t;

/* One event of a batch: its packed bytes events[off..off+len) and its
 * cluster route, inv_log_event_shard() (-1: every shard). */
typedef struct inv_sink_event_s {
  size_t off, len;
  int shard;
} inv_sink_event_t;

/*
 * Called once per shard write of an inv_sink_send() (unless the call was
 * detached), as each one ends, in any order: on success err is 0 and
 * id[0..idlen) is the entry's id; on failure err is INV_EUNAVAIL or
 * INV_EREDIS and msg says why, naming the shard and its node. last is 1 on
 * the final call (the broadcast, if every write succeeded, was sent just
 * before it); the sink does not touch data after it. id and msg are valid
 * only during the call.
 */
typedef void (*inv_sink_done_cb)(void *data, unsigned shard, int err,
                                 const char *id, size_t idlen, const char *msg,
                                 int last);

typedef struct inv_sink_stats_s {
  uint64_t script_loads;     /* NOSCRIPT answered with EVAL */
  uint64_t wait_failed;      /* WAIT counted fewer replicas than required */
  uint64_t wait_confirms;    /* entries that needed a WAIT of their own (a
                                redirect or a retry moved them off their
                                node group's connection) */
  uint64_t shard_writes;     /* script calls issued (EVAL retries included) */
  uint64_t log_entries;      /* shard entries of sent batches */
  uint64_t broadcast_failed; /* broadcasts not sent or refused */
} inv_sink_stats_t;

/* 1 once the cluster client knows whether Redis is a cluster (its first
 * topology answer): events are routed only then. */
int inv_sink_ready(const inv_sink_t *s);

/* The shards an event routed shard (inv_log_event_shard: -1 for every
 * shard) is written to now, as a bit mask (bit k: shard k): every event
 * goes to shard 0 of a standalone server. */
uint64_t inv_sink_route_mask(const inv_sink_t *s, int shard);

/* Creates a sink sending through cluster (borrowed; it must outlive the
 * sink's pending sends). max_log_len is the MAXLEN ~ bound of each shard
 * stream; ack_replicas is the replicas an ack waits for, or -1 for the
 * default (see above). Returns 0 and *out, or INV_ENOMEM. */
int inv_sink_create(inv_cluster_t *cluster, long long max_log_len,
                    int ack_replicas, inv_sink_t **out);

/* The replicas the next write to shard waits for: the configured number,
 * or what the default means for that shard's node now. */
int inv_sink_ack_replicas(const inv_sink_t *s, unsigned shard);

/*
 * Sends one batch of nevents (>= 1) events, packed back to back in events
 * and described by ev, stamped ts_ms. Nothing is borrowed past the call.
 * Returns 0 and *call (valid until cb ran or inv_sink_call_detach()), or
 * INV_EINVAL (no events, or an event out of events' bounds), INV_ENOMEM or
 * INV_ESHUTDOWN (the cluster client is closing); on error cb is never
 * called (the shard writes issued before the refused one may still land:
 * delivery is at least once).
 */
int inv_sink_send(inv_sink_t *s, const char *events, size_t events_len,
                  const inv_sink_event_t *ev, size_t nevents, uint64_t ts_ms,
                  inv_sink_done_cb cb, void *data, inv_sink_call_t **call);

/* Writes what call still waits for, for a timeout's message: "log shard 3
 * on 127.0.0.1:7001 (not connected)" for its first unanswered write. */
void inv_sink_call_describe(const inv_sink_call_t *call, char *out,
                            size_t outlen);

/* Gives up a call whose batch was answered otherwise (a timeout, a
 * shutdown): its callback will not run, and its memory goes with its last
 * write's answer. call is invalid afterwards. */
void inv_sink_call_detach(inv_sink_call_t *call);

const inv_sink_stats_t *inv_sink_stats(const inv_sink_t *s);

/* Frees the sink. Sends still pending keep a pointer to it, so call this
 * only after the cluster client has failed or finished them (its
 * closed_cb). Accepts NULL. */
void inv_sink_free(inv_sink_t *s);

/* Writes which Redis node holds shard's stream now, for the cause of an
 * EUNAVAIL answer: "log shard 3 on 127.0.0.1:7001", "... (not connected)"
 * or "... no node known yet". */
void inv_sink_describe(const inv_sink_t *s, unsigned shard, char *out,
                       size_t outlen);

/*
 * What the batcher needs of a sink, as a table of operations so that a
 * fake sink can stand in for Redis in tests. Each has the contract of the
 * function of the same name above, with the sink passed as a void pointer;
 * call_describe and call_detach need no sink (a fake one defines its own
 * struct inv_sink_call_s). inv_sink_redis_ops is this Redis sink's table.
 */
typedef struct inv_sink_ops_s {
  int (*ready)(const void *sink);
  uint64_t (*route_mask)(const void *sink, int shard);
  int (*send)(void *sink, const char *events, size_t events_len,
              const inv_sink_event_t *ev, size_t nevents, uint64_t ts_ms,
              inv_sink_done_cb cb, void *data, inv_sink_call_t **call);
  void (*call_describe)(const inv_sink_call_t *call, char *out, size_t outlen);
  void (*call_detach)(inv_sink_call_t *call);
} inv_sink_ops_t;

extern const inv_sink_ops_t inv_sink_redis_ops;

#endif
