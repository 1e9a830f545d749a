/*
 * The worker's directive table. Bounds keep every queue and timer
 * meaningful: at least one scan job, one key in flight and one pending key.
 */
#include "workers/worker_conf.h"

#include <stdio.h>
#include <string.h>

#include "inval/errors.h"

const inv_conf_row_t inv_worker_conf_rows[] = {
    INV_SERVER_CONF_ROWS(inv_worker_conf_t, server, NULL),
    {"redis", INV_CONF_ADDR, offsetof(inv_worker_conf_t, redis), 0, 0, NULL,
     NULL, "the worker's own Redis node HOST:PORT (required)"},
    INV_REDIS_CONF_ROWS(inv_worker_conf_t, redis_client),
    {"redis-timeout", INV_CONF_MS,
     offsetof(inv_worker_conf_t, redis_timeout_ms), 10, 600000, "5s", NULL,
     "a Redis command unanswered this long fails"},
    {"worker-id", INV_CONF_STRING, offsetof(inv_worker_conf_t, worker_id), 0, 0,
     NULL, NULL, "name in heartbeats (default: the node address)"},
    {"scan-count", INV_CONF_INT, offsetof(inv_worker_conf_t, scan_count), 1,
     1000000, "1000", NULL, "SCAN COUNT for prefix and pattern jobs"},
    {"max-scans", INV_CONF_INT, offsetof(inv_worker_conf_t, max_scans), 1, 1024,
     "4", NULL, "scan jobs running at once"},
    {"scan-inflight", INV_CONF_INT, offsetof(inv_worker_conf_t, scan_inflight),
     1, 1000000, "1000", NULL, "UNLINKs in flight per scan job"},
    {"catchup-page", INV_CONF_INT, offsetof(inv_worker_conf_t, catchup_page), 1,
     1000000, "1000", NULL,
     "log entries per XREADGROUP (and the first bound on entries in flight per "
     "shard)"},
    {"role-poll", INV_CONF_MS, offsetof(inv_worker_conf_t, role_poll_ms), 10,
     60000, "500ms", NULL, "how often ROLE is asked"},
    {"heartbeat-interval", INV_CONF_MS,
     offsetof(inv_worker_conf_t, heartbeat_interval_ms), 10, 3600000, "1s",
     NULL, "how often the heartbeat record is written"},
    {"heartbeat-ttl", INV_CONF_MS,
     offsetof(inv_worker_conf_t, heartbeat_ttl_ms), 10, 86400000, "5s", NULL,
     "a heartbeat older than this is stale"},
    {"max-pending-keys", INV_CONF_INT,
     offsetof(inv_worker_conf_t, max_pending_keys), 1, 100000000, "100000",
     NULL, "exact keys queued for UNLINK past which the log is not read"},
    {"stale-grace", INV_CONF_MS, offsetof(inv_worker_conf_t, stale_grace_ms), 1,
     86400000, "30s", NULL,
     "soft invalidation keeps a value as its stale copy this long"},
    {"allow-flush", INV_CONF_BOOL, offsetof(inv_worker_conf_t, allow_flush), 0,
     0, "no", NULL, "apply patterns and prefixes that match every key"},
};

const size_t inv_worker_conf_nrows =
    sizeof(inv_worker_conf_rows) / sizeof(inv_worker_conf_rows[0]);

int inv_worker_conf_check(const inv_worker_conf_t *conf, char *err,
                          size_t errlen) {
  if (conf->redis.port == 0) {
    snprintf(err, errlen,
             "--redis HOST:PORT is required (the worker's own node)");
    return INV_ECONFIG;
  }
  return 0;
}

void inv_worker_conf_free(inv_worker_conf_t *conf) {
  if (conf == NULL) return;
  inv_conf_free(inv_worker_conf_rows, inv_worker_conf_nrows, conf);
  memset(conf, 0, sizeof(*conf));
}
