/*
 * The publisher's counters, declared once. Each row of INV_PUB_STATS_MAP is
 *   XX(key, metric, TYPE, help)
 * where key is the name in the `stats` map and metric is the Prometheus
 * name after the "inval_publisher_" prefix (counters get "_total" added by
 * common/base/stats.h, which is why connections_total is the metric
 * "connections"). Every row is documented in service/STATS.md, and
 * tests/integration/test_publisher_stats.py checks that the key set of
 * `stats` equals that table.
 *
 * Besides these numbers the stats map holds four structured entries:
 * "version" (str) and "errors" (map code -> count, every wire error code
 * present), rendered here, "tenants" (inv_pub_stats_pack_tenants()) and
 * "workers" (service/workers_view.h), which the caller packs as extra
 * entries.
 */
#ifndef INV_PUB_STATS_H
#define INV_PUB_STATS_H

#include <msgpack.h>
#include <stdint.h>

#include "common/base/buf.h"
#include "common/base/latency.h"
#include "proto/server/rpc_server.h"
#include "service/tenants.h"

#define INV_PUB_STATS_MAP(XX)                                                  \
  XX(uptime_s, uptime_seconds, GAUGE, "seconds since the publisher started")   \
  XX(clients, clients, GAUGE, "client connections open now")                   \
  XX(connections_total, connections, COUNTER,                                  \
     "client connections accepted since start")                                \
  XX(rejected_clients, rejected_clients, COUNTER,                              \
     "connections refused because max-clients was reached")                    \
  XX(protocol_closes, protocol_closes, COUNTER,                                \
     "connections closed after a framing error")                               \
  XX(idle_closes, idle_closes, COUNTER,                                        \
     "connections closed by the idle timeout")                                 \
  XX(tls_plaintext_closes, tls_plaintext_closes, COUNTER,                      \
     "connections closed for sending plaintext to the TLS port")               \
  XX(tls_handshakes, tls_handshakes, GAUGE, "TLS handshakes in flight now")    \
  XX(tls_handshakes_shed, tls_handshakes_shed, COUNTER,                        \
     "TLS handshakes closed to stay within tls-handshakes-max")                \
  XX(tls_handshake_timeouts, tls_handshake_timeouts, COUNTER,                  \
     "TLS handshakes closed by tls-handshake-timeout")                         \
  XX(bytes_in, bytes_in, COUNTER, "bytes read from clients")                   \
  XX(bytes_out, bytes_out, COUNTER, "bytes written to clients")                \
  XX(requests, requests, COUNTER, "requests and notifications decoded")        \
  XX(notifications, notifications, COUNTER,                                    \
     "invalidate notifications received (fire-and-forget)")                    \
  XX(notifications_failed, notifications_failed, COUNTER,                      \
     "invalidate notifications that failed (never answered)")                  \
  XX(events_received, events_received, COUNTER,                                \
     "events in invalidate requests and notifications")                        \
  XX(events_acked, events_acked, COUNTER,                                      \
     "events confirmed by Redis (logged and broadcast)")                       \
  XX(events_rejected, events_rejected, COUNTER,                                \
     "events whose request failed with an error")                              \
  XX(batches, batches, COUNTER, "batches confirmed by Redis")                  \
  XX(batches_failed, batches_failed, COUNTER,                                  \
     "batches Redis refused or did not confirm in time")                       \
  XX(batch_events_total, batch_events, COUNTER, "events in confirmed batches") \
  XX(batch_events_avg, batch_events_avg, GAUGE,                                \
     "average events per confirmed batch (rounded down)")                      \
  XX(redis_round_trips, redis_round_trips, COUNTER,                            \
     "commands sent to Redis nodes, redirects included")                       \
  XX(redis_errors, redis_errors, COUNTER,                                      \
     "Redis commands that failed or got an error reply")                       \
  XX(redis_reconnects, redis_reconnects, COUNTER,                              \
     "Redis connections re-established")                                       \
  XX(redis_redirects, redis_redirects, COUNTER,                                \
     "MOVED and ASK redirects followed")                                       \
  XX(script_loads, script_loads, COUNTER,                                      \
     "NOSCRIPT replies answered by sending the script with EVAL")              \
  XX(shard_writes, shard_writes, COUNTER,                                      \
     "log shard script calls sent (EVALSHA, and EVAL after NOSCRIPT)")         \
  XX(log_entries, log_entries, COUNTER,                                        \
     "log shard entries of sent batches (one per shard a batch touches)")      \
  XX(broadcast_failed, broadcast_failed, COUNTER,                              \
     "broadcasts on cache:invalidation not sent or refused (acks unaffected)") \
  XX(pending_events, pending_events, GAUGE,                                    \
     "events accepted and not yet answered")                                   \
  XX(inflight_batches, inflight_batches, GAUGE,                                \
     "batches sent to Redis and not yet confirmed")                            \
  XX(backpressure_pauses, backpressure_pauses, COUNTER,                        \
     "times reading from clients was paused by max-pending-events")            \
  XX(paused, paused, GAUGE, "1 while reading from clients is paused")          \
  XX(ack_latency_p50_us, ack_latency_p50_us, RECENT,                           \
     "median time from request to ack over the last 30 s, microseconds")       \
  XX(ack_latency_p99_us, ack_latency_p99_us, RECENT,                           \
     "99th percentile time from request to ack over the last 30 s, "           \
     "microseconds")                                                           \
  XX(ack_latency_max_us, ack_latency_max_us, RECENT,                           \
     "longest time from request to ack over the last 30 s, microseconds")      \
  XX(workers_known, workers_known, GAUGE,                                      \
     "worker heartbeat records in cache:invalidation:workers")                 \
  XX(workers_stale, workers_stale, GAUGE,                                      \
     "worker heartbeat records older than their ttl_ms")                       \
  XX(heartbeat_bad_records, heartbeat_bad_records, GAUGE,                      \
     "values in cache:invalidation:workers that are not heartbeat records")    \
  XX(wait_failed, wait_failed, COUNTER,                                        \
     "batches logged but answered EUNAVAIL: WAIT counted too few replicas")    \
  XX(wait_confirms, wait_confirms, COUNTER,                                    \
     "shard entries that needed a WAIT of their own (one WAIT per node "       \
     "covers the others)")                                                     \
  XX(ack_replicas, ack_replicas, GAUGE,                                        \
     "replicas an ack waits for now (ack-replicas, or what default means)")

typedef struct inv_pub_stats_s {
#define INV_PUB_STATS_FIELD(key, metric, type, help) uint64_t key;
  INV_PUB_STATS_MAP(INV_PUB_STATS_FIELD)
#undef INV_PUB_STATS_FIELD
} inv_pub_stats_t;

/* Per-code error counts, indexed by the code's number (1 = EPROTO). */
typedef struct inv_pub_errors_s {
  uint64_t count[INV_RPC_MAX_ERRNO];
} inv_pub_errors_t;

/* Packs the stats map: a map header with room for extra_entries more
 * entries, then every counter, "version" and "errors". The caller packs
 * exactly extra_entries key/value pairs afterwards (the "workers" section). */
void inv_pub_stats_pack(msgpack_packer *pk, const inv_pub_stats_t *v,
                        const inv_pub_errors_t *errors, size_t extra_entries);

/* Appends the Prometheus text for the same figures: every counter but the
 * RECENT percentiles, then inval_publisher_info{version=".."} 1,
 * inval_publisher_errors_total{code=".."} per wire code, the histogram
 * inval_publisher_ack_latency_seconds (ack, since start) and the process_*
 * metrics. Returns 0 or INV_ENOMEM. */
int inv_pub_stats_prometheus(inv_buf_t *out, const inv_pub_stats_t *v,
                             const inv_pub_errors_t *errors,
                             const inv_hist_t *ack_latency);

/* Packs the per-tenant counters: a map tenant name -> {"accepted": n,
 * "refused": n, "limited": n} (events), empty without tenants (ts NULL). */
void inv_pub_stats_pack_tenants(msgpack_packer *pk, inv_tenants_t *ts);

/* Appends inval_publisher_tenant_events_total{tenant="..",outcome=
 * "accepted|refused|limited"} for every tenant (nothing without tenants).
 * Returns 0 or INV_ENOMEM. */
int inv_pub_stats_prometheus_tenants(inv_buf_t *out, inv_tenants_t *ts);

#endif
