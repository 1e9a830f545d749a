/*
 * The publisher's configuration: one struct and one table of directives.
 *
 * Every field is a row of inv_pub_conf_rows, so the config file, the
 * command-line flags, --help and --check-config all come from the table.
 * The shared RPC-server directives (listen, metrics-listen, log-level,
 * max-clients, idle-timeout, max-message-bytes, tls-*, auth-token) come
 * from INV_SERVER_CONF_ROWS.
 */
#ifndef INV_PUB_CONFIG_H
#define INV_PUB_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/config.h"
#include "common/redis/redis_conf.h"
#include "proto/server/rpc_server.h"

typedef struct inv_pub_conf_s {
  inv_server_conf_t server;
  inv_addr_list_t redis;          /* seed nodes */
  inv_redis_conf_t redis_client;  /* user, password, TLS toward Redis */
  uint64_t redis_timeout_ms;      /* a batch unconfirmed this long fails */
  long long max_events;           /* events per request */
  size_t max_key_len;             /* longest event target */
  int allow_flush;                /* accept patterns matching every key */
  long long batch_max_events;     /* a batch is flushed when this full */
  long long batch_delay_us;       /* ... or after this long */
  long long max_pending_events;   /* backpressure bound on unacked events */
  long long max_inflight_batches; /* batches awaiting Redis at once */
  long long max_log_len;          /* XADD MAXLEN ~ of each log shard */
  char *tls_client_ca;            /* NULL: no client certificates */
  long long tls_handshakes_max;   /* TLS handshakes in flight */
  uint64_t tls_handshake_timeout_ms;
  char *tenants_file; /* NULL: one auth-token (or none) */
  int ack_replicas;   /* enum index: 0 "default", else N + 1 */
} inv_pub_conf_t;

extern const inv_conf_row_t inv_pub_conf_rows[];
extern const size_t inv_pub_conf_nrows;

/* Releases what conf owns (strings, the seed list). Accepts NULL. */
void inv_pub_conf_free(inv_pub_conf_t *conf);

#endif
