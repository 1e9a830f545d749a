/*
 * The worker's counters, declared once. Each row of INV_WORKER_STATS_MAP is
 *   XX(key, metric, TYPE, help)
 * where key is the name in the `stats` map and metric the Prometheus name
 * after the "inval_worker_" prefix (counters get "_total" added by
 * common/base/stats.h). Every row is documented in workers/STATS.md and
 * tests/integration/test_worker_basic.py checks that the key set of `stats`
 * equals that table.
 *
 * Besides these numbers the stats map holds four strings: "version",
 * "worker_id", "role" ("primary", "replica" or "unknown") and
 * "last_applied_id". On /metrics the role is inval_worker_role{role=".."} 1
 * and the version inval_worker_info{version=".."} 1.
 */
#ifndef INV_WORKER_STATS_H
#define INV_WORKER_STATS_H

#include <msgpack.h>
#include <stdint.h>

#include "common/base/buf.h"
#include "common/base/latency.h"

#define INV_WORKER_STATS_MAP(XX)                                               \
  XX(uptime_s, uptime_seconds, GAUGE, "seconds since the worker started")      \
  XX(is_primary, is_primary, GAUGE, "1 while the worker's node is a primary")  \
  XX(owned_slots, owned_slots, GAUGE,                                          \
     "hash slots the node owns (16384 for standalone Redis)")                  \
  XX(importing_slots, importing_slots, GAUGE,                                  \
     "hash slots the node is importing (ASKING + UNLINK)")                     \
  XX(connected, connected, GAUGE,                                              \
     "1 while both the command and the subscriber connection are up")          \
  XX(subscribed, subscribed, GAUGE,                                            \
     "1 while the hint connection is up (SSUBSCRIBE to the shards' channels)") \
  XX(shards, shards, GAUGE,                                                    \
     "log shards consumed: those whose stream lives on this primary")          \
  XX(shards_live, shards_live, GAUGE, "consumed shards read to their end")     \
  XX(hints, hints, COUNTER,                                                    \
     "hint messages heard on the shards' channels (each asks for a read)")     \
  XX(log_reads, log_reads, COUNTER, "XREADGROUP commands sent")                \
  XX(empty_reads, empty_reads, COUNTER,                                        \
     "reads of a shard that has no stream yet (answered NOGROUP, not an "      \
     "error)")                                                                 \
  XX(entries_acked, entries_acked, COUNTER,                                    \
     "log entries acknowledged (XACK) once their work was done")               \
  XX(remote_unlinks, remote_unlinks, COUNTER,                                  \
     "keys deleted on another node (a shard's range split across primaries, "  \
     "or a slot that moved)")                                                  \
  XX(groups_created, groups_created, COUNTER,                                  \
     "consumer groups the worker had to create (a stream without its group)")  \
  XX(intake_transitions, intake_transitions, COUNTER,                          \
     "shard state changes (workers/intake.h)")                                 \
  XX(live, live, GAUGE, "1 once every consumed shard was read to its end")     \
  XX(events_received, events_received, COUNTER,                                \
     "events read from the log shards")                                        \
  XX(events_applied, events_applied, COUNTER,                                  \
     "events dispatched while the node was a primary")                         \
  XX(events_refused, events_refused, COUNTER,                                  \
     "malformed patterns, and flushes refused without allow-flush")            \
  XX(decode_errors, decode_errors, COUNTER,                                    \
     "payloads or log entries that could not be decoded")                      \
  XX(keys_unlinked, keys_unlinked, COUNTER,                                    \
     "keys removed by hard invalidation (values, locks, stale copies)")        \
  XX(stale_copies, stale_copies, COUNTER,                                      \
     "values moved to their stale copy by soft invalidation")                  \
  XX(keys_scanned, keys_scanned, COUNTER,                                      \
     "keys returned by SCAN or GETKEYSINSLOT and examined")                    \
  XX(unlinks_sent, unlinks_sent, COUNTER,                                      \
     "UNLINK commands (one per key, or per up to 64 keys of a slot) and "      \
     "soft-invalidation scripts sent")                                         \
  XX(unlink_redirects, unlink_redirects, COUNTER,                              \
     "keys whose UNLINK was answered MOVED or ASK (another node's keys)")      \
  XX(pending_keys, pending_keys, GAUGE,                                        \
     "exact keys queued or in flight for UNLINK")                              \
  XX(scans_running, scans_running, GAUGE,                                      \
     "pattern jobs being served now (the shared pass and pinned jobs)")        \
  XX(scans_pending, scans_pending, GAUGE,                                      \
     "pattern jobs waiting for the next shared pass or a pinned-job slot")     \
  XX(scans_waiting_bytes, scans_waiting_bytes, GAUGE,                          \
     "memory held by the waiting pattern jobs, bytes")                         \
  XX(scans_done, scans_done, COUNTER, "scan jobs finished")                    \
  XX(scan_passes, scan_passes, COUNTER,                                        \
     "shared SCAN passes over the node (each serves every waiting pattern)")   \
  XX(pass_patterns, pass_patterns, COUNTER,                                    \
     "distinct patterns served by shared passes (/ scan_passes: per pass)")    \
  XX(scan_calls, scan_calls, COUNTER, "SCAN commands sent")                    \
  XX(keys_matched, keys_matched, COUNTER,                                      \
     "listed keys that a pattern matched and that went to UNLINK")             \
  XX(reserved_skipped, reserved_skipped, COUNTER,                              \
     "listed keys a pattern matched but left: the service's own keys")         \
  XX(scans_merged, scans_merged, COUNTER,                                      \
     "patterns merged into an identical pending scan job")                     \
  XX(slot_sweeps, slot_sweeps, COUNTER,                                        \
     "pinned patterns run on other primaries (the slot is not ours, or "       \
     "migrates)")                                                              \
  XX(slot_scans, slot_scans, COUNTER,                                          \
     "hash-tag-pinned patterns handled with GETKEYSINSLOT")                    \
  XX(replays, replays, COUNTER,                                                \
     "shards read again from their pending entries after failed work")         \
  XX(gaps, gaps, COUNTER,                                                      \
     "log entries trimmed away before they were applied (pending entries "     \
     "without content)")                                                       \
  XX(intake_paused, intake_paused, GAUGE,                                      \
     "1 while reading the log is paused by a bound (PROTOCOL.md 4.1)")         \
  XX(last_applied_ms, last_applied_timestamp_seconds, TIMESTAMP_MS,            \
     "time part of the last applied log id (ms in stats, s on /metrics)")      \
  XX(lag_ms_p50, lag_ms_p50, RECENT,                                           \
     "median of now - event ts over the last 30 s, ms")                        \
  XX(lag_ms_p99, lag_ms_p99, RECENT,                                           \
     "99th percentile of now - event ts over the last 30 s, ms")               \
  XX(lag_ms_max, lag_ms_max, RECENT,                                           \
     "largest now - event ts over the last 30 s, ms")                          \
  XX(behind, behind, GAUGE,                                                    \
     "log entries read and not yet acknowledged, over every shard")            \
  XX(heartbeats, heartbeats, COUNTER, "heartbeat records written")             \
  XX(duplicate_workers, duplicate_workers, COUNTER,                            \
     "fresh heartbeats of another process found under our id at start")        \
  XX(slot_map_refreshes, slot_map_refreshes, COUNTER,                          \
     "slot map and role refreshes of the node")                                \
  XX(redis_round_trips, redis_round_trips, COUNTER,                            \
     "commands sent to Redis (own node and log reads)")                        \
  XX(redis_errors, redis_errors, COUNTER,                                      \
     "Redis commands that failed or got an error reply")                       \
  XX(redis_reconnects, redis_reconnects, COUNTER,                              \
     "Redis connections re-established")                                       \
  XX(script_loads, script_loads, COUNTER,                                      \
     "NOSCRIPT replies answered by sending the script with EVAL")              \
  XX(unlink_retries, unlink_retries, COUNTER,                                  \
     "keys sent again after an error reply (e.g. NOPERM), with backoff")       \
  XX(scan_retries, scan_retries, COUNTER,                                      \
     "patterns scanned again after their listing or an UNLINK failed")

typedef struct inv_worker_stats_s {
#define INV_WORKER_STATS_FIELD(key, metric, type, help) uint64_t key;
  INV_WORKER_STATS_MAP(INV_WORKER_STATS_FIELD)
#undef INV_WORKER_STATS_FIELD
} inv_worker_stats_t;

/* The strings and the histogram that go with the numbers. */
typedef struct inv_worker_stats_info_s {
  const char *worker_id;
  const char *role;
  const char *last_applied_id;
  const inv_hist_t *lag; /* apply lag since start (/metrics only) */
} inv_worker_stats_info_t;

/* Packs the stats map: a map header with room for extra_entries more
 * entries, then every counter, "version", "worker_id", "role" and
 * "last_applied_id". The caller packs exactly extra_entries key/value pairs
 * afterwards (the "node" map). */
void inv_worker_stats_pack(msgpack_packer *pk, const inv_worker_stats_t *v,
                           const inv_worker_stats_info_t *info,
                           size_t extra_entries);

/* Appends the Prometheus text: every counter but the RECENT percentiles,
 * inval_worker_role{role=..} 1, inval_worker_info{version=..} 1, the
 * histogram inval_worker_apply_lag_seconds and the process_* metrics.
 * Returns 0 or INV_ENOMEM. */
int inv_worker_stats_prometheus(inv_buf_t *out, const inv_worker_stats_t *v,
                                const inv_worker_stats_info_t *info);

#endif
