/*
 * The worker's internals, shared by its modules. Calls go downwards only:
 *
 *   worker.c            lifecycle: connections, timers, stats, the stop
 *   worker_topology.c   role and slot map of the own node: reports the
 *                       shards to consume to the intake (facts)
 *   worker_reader.c     the intake's I/O: SSUBSCRIBE, XREADGROUP, XACK,
 *                       XGROUP CREATE; reports replies to the intake
 *   worker_apply.c      an entry's events to the unlinker, the scanner or
 *                       another node; completions to the intake
 *   worker_sweep.c      a pinned pattern's slot on the other primaries
 *   worker_heartbeat.c  the heartbeat record (monitoring only)
 *   intake.c            the state machine (owns every shard's state)
 *
 * Trust. Only entries that XREADGROUP returns are applied, and only their
 * acknowledgement moves a shard's cursor, which lives in Redis (the
 * consumer group, replicated and migrated with the stream). A message on
 * a hint channel carries nothing that is used: it only asks for a read.
 */
#ifndef INV_WORKER_INT_H
#define INV_WORKER_INT_H

#include <stdint.h>
#include <uv.h>

#include "common/base/latency.h"
#include "common/redis/redis_cluster.h"
#include "common/redis/redis_conn.h"
#include "proto/event.h"
#include "proto/log_shard.h"
#include "workers/intake.h"
#include "workers/node_health.h"
#include "workers/scanner.h"
#include "workers/slot_map.h"
#include "proto/stream_id.h"
#include "workers/unlinker.h"
#include "workers/worker.h"
#include "workers/worker_stats.h"

/* Open entries per shard. Each entry is a publisher batch (up to
 * batch-max-events events), so this bounds a shard's work in flight. */
#define INV__SHARD_OPEN_MAX 4096
/* Pattern jobs waiting (for the next shared pass, or a pinned-job slot)
 * past which intake pauses, and the memory they may hold. Large enough that
 * a request of the publisher's largest size (max-events, 10,000) of
 * patterns, or many such requests, is taken in at once: a waiting pattern
 * costs the next pass only a hash lookup per key, not a SCAN of its own.
 * 100,000 patterns of the usual few dozen bytes hold about 20 MiB; the byte
 * bound stops long patterns (up to 16 KiB each) before they hold more than
 * 64 MiB. Exact keys have their own bounds (max-pending-keys, the
 * watermark's capacity). */
#define INV__PATTERNS_WAITING_MAX 100000
#define INV__PATTERNS_WAITING_BYTES (64u << 20)
#define INV__MAP_REFRESH_MS 5000
/* Every consumed shard is read this often even without a hint: a safety
 * net only (hints come from the shard's own node, atomically with the
 * entry). */
#define INV__POLL_MS 5000

enum { INV__ROLE_UNKNOWN = 0, INV__ROLE_PRIMARY = 1, INV__ROLE_REPLICA = 2 };

struct inv_worker_s {
  uv_loop_t *loop;
  const inv_worker_conf_t *conf;
  char id[300];
  char node[300];
  char ctx[320]; /* log context "worker <id>" */
  uint64_t started_us;

  inv_redis_t *cmd;       /* own node: reads, acks, UNLINK, SCAN, topology */
  inv_redis_t *hints;     /* own node: the shards' hint channels */
  inv_cluster_t *cluster; /* heartbeats, and keys that live elsewhere */
  /* A standalone replica is read-only, so its heartbeats go to its primary
   * over this connection, kept while it is one (else NULL). */
  inv_redis_t *hb_primary;
  char hb_primary_addr[300];
  /* Who this process is in its heartbeat ("host/pid/random hex"), and
   * whether the record under our id was read before our first write. */
  char instance[64];
  int hb_checked;
  inv_unlinker_t *unl;
  inv_scanner_t *scn;
  inv_intake_t *intake;

  /* Topology. */
  int role;
  char master_addr[300]; /* while a replica: its primary, "host:port" */
  int role_inflight;
  int map_known; /* the map matches the current role */
  int map_inflight;
  int map_dirty;       /* refresh again when the current one returns */
  int standalone_node; /* CLUSTER MYID said cluster support is disabled;
                          cleared on every reconnect of cmd */
  int orphan_warned;   /* a primary owning no shard's home was logged */
  inv_slot_map_t map;

  uint64_t pending_keys; /* exact keys handed to the unlinker or elsewhere */
  uint64_t last_poll_ms; /* loop time of the last periodic read of shards */

  /* Figures. */
  inv_worker_stats_t st;
  inv_latency_obs_t lag;
  inv_node_health_t *node_health;
  uint64_t last_lag_ms;
  int hb_inflight;

  /* Timers. */
  uv_timer_t role_timer, map_timer, hb_timer;
  int closing;
  int open_handles;
  void (*stop_cb)(void *data);
  void *stop_data;
};

/* Topology (worker_topology.c). */
void inv__worker_poll_role(inv_worker_t *w);
void inv__worker_refresh_map(inv_worker_t *w);
/* Tells the intake which shards to consume now (none unless the node is a
 * primary whose map is known and whose command connection is up). */
void inv__worker_update_shards(inv_worker_t *w);
const char *inv__worker_role_name(int role);

/* Reader (worker_reader.c): the intake's operations. */
void inv__worker_intake_ops(inv_worker_t *w, inv_intake_ops_t *ops);
/* Checks shard for entries lost before delivery (worker_gap.c): started
 * when a shard's pending entries are read, before its first read of new
 * entries. Counts gaps and logs them; changes nothing else. */
void inv__worker_check_gap(inv_worker_t *w, unsigned shard);
void inv__worker_hints_event(inv_redis_t *r, inv_redis_event_t ev, void *data);
void inv__worker_hints_push(inv_redis_t *r, redisReply *msg, void *data);

/* Apply (worker_apply.c). */
/* Dispatches the events of one decoded entry of the entry tag names, and
 * releases the entry's hold. */
void inv__worker_apply(inv_worker_t *w, uint64_t tag, inv_payload_t *p);
/* Whether the worker's bounds on work in flight hold reading back; the
 * one place the intake_paused gauge is set. */
int inv__worker_backpressured(inv_worker_t *w);
/* Keys of another node, and keys the own node answered MOVED or ASK for:
 * the unlinker's redirect hook (unlinker.h). */
void inv__worker_unlink_elsewhere(void *data, const char *key, size_t len,
                                  inv_unlink_op_t op,
                                  inv_unlink_done_cb done_cb, void *owner,
                                  uint64_t tag);
void inv__worker_scan_done_cb(void *owner, uint64_t tag, int err);

/* Sweep (worker_sweep.c): the keys of slot that pattern reaches on the
 * primaries other than the own node (the slot's owner when that is not
 * us, and any node that may import it), deleted through the cluster
 * client. One operation of the entry tag names, completed through
 * inv__worker_scan_done_cb. Returns 1, or INV_ENOMEM (nothing started). */
int inv__worker_sweep(inv_worker_t *w, const char *pat, size_t len,
                      inv_unlink_op_t mode, unsigned slot, uint64_t tag);

/* Heartbeat (worker_heartbeat.c). */
void inv__worker_heartbeat(inv_worker_t *w);

#endif
