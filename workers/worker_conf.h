/*
 * The worker's configuration: one struct and one table of directives.
 *
 * Every field is a row of inv_worker_conf_rows, so the config file, the
 * command-line flags, --help and --check-config all come from the table.
 * The shared RPC-server directives come from INV_SERVER_CONF_ROWS; the
 * admin port (--listen) is off unless given.
 */
#ifndef INV_WORKER_CONF_H
#define INV_WORKER_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/config.h"
#include "common/redis/redis_conf.h"
#include "proto/server/rpc_server.h"

typedef struct inv_worker_conf_s {
  inv_server_conf_t server;
  inv_addr_t redis;              /* the worker's own node (required) */
  inv_redis_conf_t redis_client; /* user, password, TLS toward Redis */
  uint64_t redis_timeout_ms;     /* command timeout */
  char *worker_id;               /* NULL or "": the node address */
  long long scan_count;          /* SCAN COUNT */
  long long max_scans;           /* concurrent scan jobs */
  long long scan_inflight;       /* UNLINKs in flight per scan job */
  long long catchup_page;        /* XREADGROUP COUNT */
  uint64_t role_poll_ms;
  uint64_t heartbeat_interval_ms;
  uint64_t heartbeat_ttl_ms;
  long long max_pending_keys;
  uint64_t stale_grace_ms; /* TTL of stale copies (soft invalidation) */
  int allow_flush;
} inv_worker_conf_t;

extern const inv_conf_row_t inv_worker_conf_rows[];
extern const size_t inv_worker_conf_nrows;

/* Checks what single rows cannot (--redis was given). Returns 0, or
 * INV_ECONFIG with err set. */
int inv_worker_conf_check(const inv_worker_conf_t *conf, char *err,
                          size_t errlen);

/* Releases what conf owns. Accepts NULL. */
void inv_worker_conf_free(inv_worker_conf_t *conf);

#endif
