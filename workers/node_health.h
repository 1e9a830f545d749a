/*
 * The health of the worker's own Redis node: every interval the poller sends
 * INFO (memory, stats, clients, keyspace and cluster sections) on the
 * worker's command connection and, on a cluster node, CLUSTER INFO. The
 * figures of the last successful poll are kept and exported in the worker's
 * `stats` (the "node" map) and on /metrics with the prefix "inval_node_".
 *
 * A poll is skipped while the connection is down or the previous poll is
 * still out, so at most two commands of the poller are ever pending.
 */
#ifndef INV_NODE_HEALTH_H
#define INV_NODE_HEALTH_H

#include <msgpack.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/buf.h"
#include "common/redis/redis_conn.h"

#define INV_NODE_HEALTH_INTERVAL_MS 5000

/* XX(key, metric, TYPE, help): key is the name in the "node" map, metric
 * the Prometheus name after "inval_node_" (counters get "_total"). The
 * counters are Redis's own (they restart at 0 with the node). */
#define INV_NODE_HEALTH_MAP(XX)                                          \
  XX(up, up, GAUGE, "1 when the last poll of the node succeeded")        \
  XX(cluster_enabled, cluster_enabled, GAUGE,                            \
     "1 when the node runs in cluster mode")                             \
  XX(cluster_state_ok, cluster_state, GAUGE,                             \
     "1 when CLUSTER INFO says cluster_state:ok (always 1 standalone)")  \
  XX(slots_fail, cluster_slots_fail, GAUGE,                              \
     "hash slots in the FAIL state (CLUSTER INFO cluster_slots_fail)")   \
  XX(slots_pfail, cluster_slots_pfail, GAUGE,                            \
     "hash slots in the PFAIL state (CLUSTER INFO cluster_slots_pfail)") \
  XX(used_memory, memory_used_bytes, GAUGE,                              \
     "memory used by the node (INFO used_memory)")                       \
  XX(maxmemory, memory_max_bytes, GAUGE,                                 \
     "the node's maxmemory; 0 when unlimited")                           \
  XX(evicted_keys, evicted_keys, COUNTER,                                \
     "keys evicted by maxmemory (INFO evicted_keys)")                    \
  XX(keyspace_hits, keyspace_hits, COUNTER,                              \
     "successful key lookups (INFO keyspace_hits)")                      \
  XX(keyspace_misses, keyspace_misses, COUNTER,                          \
     "failed key lookups (INFO keyspace_misses)")                        \
  XX(connected_clients, connected_clients, GAUGE,                        \
     "client connections open on the node")                              \
  XX(keys, keys, GAUGE, "keys in every database of the node")            \
  XX(polls, polls, COUNTER, "polls of the node that succeeded")          \
  XX(poll_errors, poll_errors, COUNTER,                                  \
     "polls that failed (no reply, an error, or a reply not understood)")

typedef struct inv_node_figures_s {
#define INV_NODE_HEALTH_FIELD(key, metric, type, help) uint64_t key;
  INV_NODE_HEALTH_MAP(INV_NODE_HEALTH_FIELD)
#undef INV_NODE_HEALTH_FIELD
  double fragmentation; /* INFO mem_fragmentation_ratio */
} inv_node_figures_t;

typedef struct inv_node_health_s inv_node_health_t;

/* Starts polling conn every interval_ms (the first poll after one
 * interval). conn is borrowed and must stay valid until the close callback
 * of inv_node_health_close has run. Returns 0 and *out, or INV_ENOMEM. */
int inv_node_health_start(uv_loop_t *loop, inv_redis_t *conn,
                          uint64_t interval_ms, inv_node_health_t **out);

/* Polls now (unless a poll is out). */
void inv_node_health_poll(inv_node_health_t *nh);

/* Parses one INFO reply into f (fields not in the text are left as they
 * are). Returns 1 when the text held used_memory, else 0. */
int inv_node_health_parse_info(const char *text, size_t len,
                               inv_node_figures_t *f);

/* Parses one CLUSTER INFO reply into f. Returns 1 when it held
 * cluster_state, else 0. */
int inv_node_health_parse_cluster_info(const char *text, size_t len,
                                       inv_node_figures_t *f);

const inv_node_figures_t *inv_node_health_figures(const inv_node_health_t *nh);

/* Packs the figures as one msgpack map: "addr" (the node's address), every
 * row of the X-macro and "mem_fragmentation_ratio" (a float). */
void inv_node_health_pack(msgpack_packer *pk, const char *addr,
                          const inv_node_figures_t *f);

/* Appends the inval_node_* metrics. Returns 0 or INV_ENOMEM. */
int inv_node_health_prometheus(inv_buf_t *out, const inv_node_figures_t *f);

/* Stops the timer; closed_cb(data) runs once the timer is closed and no
 * reply of the poller is pending (the connection fails pending commands when
 * it closes). Accepts NULL (closed_cb is then not called). */
void inv_node_health_close(inv_node_health_t *nh, void (*closed_cb)(void *),
                           void *data);

#endif
