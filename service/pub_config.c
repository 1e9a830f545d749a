/*
 * The publisher's directive table. Bounds are chosen so that a value inside
 * them cannot break an invariant elsewhere: batches hold at least one
 * event, at least one batch may be in flight, and the pending bound admits
 * at least one request.
 */
#include "service/pub_config.h"

#include <string.h>

/* ack-replicas takes "default" or a count; the count is an enum name so
 * that the word and the numbers share one row (index = count + 1). */
static const char *const ack_replicas_names[] = {
    "default", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", NULL};

const inv_conf_row_t inv_pub_conf_rows[] = {
    INV_SERVER_CONF_ROWS(inv_pub_conf_t, server, "127.0.0.1:7700"),
    {"tls-client-ca", INV_CONF_STRING, offsetof(inv_pub_conf_t, tls_client_ca),
     0, 0, NULL, NULL,
     "PEM CA bundle; when set, clients must present a certificate it signed "
     "(mTLS)"},
    {"tls-handshakes-max", INV_CONF_INT,
     offsetof(inv_pub_conf_t, tls_handshakes_max), 1, 1000000, "512", NULL,
     "TLS handshakes in flight at most; one more closes the oldest"},
    {"tls-handshake-timeout", INV_CONF_MS,
     offsetof(inv_pub_conf_t, tls_handshake_timeout_ms), 100, 600000, "10s",
     NULL, "a TLS handshake not done within this time is closed"},
    {"tenants-file", INV_CONF_STRING, offsetof(inv_pub_conf_t, tenants_file), 0,
     0, NULL, NULL,
     "tenants: credentials, namespaces and rates (reloaded on SIGHUP); "
     "replaces auth-token"},
    {"redis", INV_CONF_ADDR_LIST, offsetof(inv_pub_conf_t, redis), 0, 0,
     "127.0.0.1:6379", NULL,
     "a Redis seed node HOST:PORT (repeat for several seeds)"},
    INV_REDIS_CONF_ROWS(inv_pub_conf_t, redis_client),
    {"redis-timeout", INV_CONF_MS, offsetof(inv_pub_conf_t, redis_timeout_ms),
     10, 600000, "5s", NULL,
     "a batch Redis has not confirmed within this time fails with EUNAVAIL"},
    {"max-events", INV_CONF_INT, offsetof(inv_pub_conf_t, max_events), 1,
     1000000, "10000", NULL, "most events in one invalidate request"},
    {"max-key-len", INV_CONF_SIZE, offsetof(inv_pub_conf_t, max_key_len), 1,
     512 * 1024 * 1024LL, "16k", NULL, "longest event target in bytes"},
    {"allow-flush", INV_CONF_BOOL, offsetof(inv_pub_conf_t, allow_flush), 0, 0,
     "no", NULL, "accept patterns and prefixes that match every key"},
    {"batch-max-events", INV_CONF_INT,
     offsetof(inv_pub_conf_t, batch_max_events), 1, 1000000, "1000", NULL,
     "a batch is sent to Redis once it holds this many events"},
    {"batch-delay-us", INV_CONF_INT, offsetof(inv_pub_conf_t, batch_delay_us),
     0, 10000000, "200", NULL,
     "longest wait for more events before a batch is sent, in microseconds "
     "(below 1000: until the input already received is read)"},
    {"max-pending-events", INV_CONF_INT,
     offsetof(inv_pub_conf_t, max_pending_events), 1, 100000000, "100000", NULL,
     "unacked events past which clients are paused or get EBUSY"},
    {"max-inflight-batches", INV_CONF_INT,
     offsetof(inv_pub_conf_t, max_inflight_batches), 1, 100000, "64", NULL,
     "most batches awaiting Redis confirmation at once"},
    {"max-log-len", INV_CONF_INT, offsetof(inv_pub_conf_t, max_log_len), 1,
     1000000000000LL, "100000", NULL,
     "approximate length cap of each log shard stream, "
     "cache:invalidation:log:{<tag>} (XADD MAXLEN ~)"},
    {"ack-replicas", INV_CONF_ENUM, offsetof(inv_pub_conf_t, ack_replicas), 0,
     0, "default", ack_replicas_names,
     "ack a batch only once this many replicas of each log shard's node "
     "have its entry (WAIT); default: 1 when that node has a replica, else 0"},
};

const size_t inv_pub_conf_nrows =
    sizeof(inv_pub_conf_rows) / sizeof(inv_pub_conf_rows[0]);

void inv_pub_conf_free(inv_pub_conf_t *conf) {
  if (conf == NULL) return;
  inv_conf_free(inv_pub_conf_rows, inv_pub_conf_nrows, conf);
  memset(conf, 0, sizeof(*conf));
}
