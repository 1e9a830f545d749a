/*
 * The publisher daemon's wiring and lifecycle. The publisher itself owns no
 * libuv handle: every handle lives in a component that closes and frees
 * itself, and the publisher only waits for the two components that report
 * their end (the cluster client and the rpc server) before it can be freed.
 *
 * SIGHUP reloads what can change without dropping a connection: the
 * tenants file and the server's TLS certificate, key and client CA. Each
 * part is loaded in full before it replaces the old one, so a bad file
 * changes nothing (the error is logged and the old settings stay).
 */
#include "service/publisher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/server/daemon.h"
#include "inval/errors.h"
#include "common/base/latency.h"
#include "common/base/log.h"
#include "common/server/metrics_http.h"
#include "common/redis/redis_cluster.h"
#include "common/redis/redis_conf.h"
#include "proto/server/rpc_server.h"
#include "common/tls/tls.h"
#include "service/batcher.h"
#include "service/methods.h"
#include "service/pub_stats.h"
#include "service/sink.h"
#include "service/workers_view.h"

struct inv_publisher_s {
  uv_loop_t *loop;
  const inv_pub_conf_t *conf;
  uint64_t started_us;

  inv_cluster_t *cluster;
  inv_sink_t *sink;
  inv_batcher_t *batcher;
  inv_rpc_server_t *server;
  inv_metrics_http_t *metrics;
  inv_daemon_t *daemon;
  inv_workers_view_t *workers;

  inv_pub_methods_t methods;
  inv_pub_stats_t stats;     /* counters kept by methods and the batcher */
  inv_latency_obs_t latency; /* ack latency */
  inv_tenants_t *tenants;    /* NULL without tenants-file */

  int stopping;
  int closes_pending;   /* cluster and server close callbacks to come */
  int free_when_closed; /* start failed: nobody else will free p */
};

/* Fills out with every figure, live counters and gauges alike. */
static void publisher_snapshot(inv_publisher_t *p, inv_pub_stats_t *out,
                               inv_pub_errors_t *errors) {
  *out = p->stats;
  out->uptime_s = (inv_now_us() - p->started_us) / 1000000;
  if (p->server != NULL) {
    const inv_rpc_server_stats_t *ss = inv_rpc_server_stats(p->server);
    out->clients = ss->clients;
    out->connections_total = ss->connections;
    out->rejected_clients = ss->rejected_clients;
    out->protocol_closes = ss->protocol_closes;
    out->idle_closes = ss->idle_closes;
    out->tls_plaintext_closes = ss->tls_plaintext_closes;
    out->tls_handshakes = ss->tls_handshakes;
    out->tls_handshakes_shed = ss->tls_handshakes_shed;
    out->tls_handshake_timeouts = ss->tls_handshake_timeouts;
    out->bytes_in = ss->bytes_in;
    out->bytes_out = ss->bytes_out;
    out->requests = ss->requests;
  }
  memset(errors, 0, sizeof(*errors));
  for (int n = 1; n < INV_RPC_MAX_ERRNO && p->server != NULL; n++)
    errors->count[n] = inv_rpc_server_errors(p->server, -n);
  if (p->cluster != NULL) {
    inv_cluster_stats_t cs;
    inv_cluster_get_stats(p->cluster, &cs);
    out->redis_round_trips = cs.round_trips;
    out->redis_errors = cs.errors;
    out->redis_reconnects = cs.reconnects;
    out->redis_redirects = cs.redirects;
  }
  if (p->sink != NULL) {
    const inv_sink_stats_t *ks = inv_sink_stats(p->sink);
    out->script_loads = ks->script_loads;
    out->shard_writes = ks->shard_writes;
    out->log_entries = ks->log_entries;
    out->broadcast_failed = ks->broadcast_failed;
    out->wait_failed = ks->wait_failed;
    out->wait_confirms = ks->wait_confirms;
    out->ack_replicas = (uint64_t)inv_sink_ack_replicas(p->sink, 0);
    /* Each NOSCRIPT reply (expected once per node after its start or a
     * SCRIPT FLUSH) was answered with EVAL: it is a script load, not an
     * error, although the cluster client counted it as an error reply. */
    out->redis_errors -= out->redis_errors < ks->script_loads
                             ? out->redis_errors
                             : ks->script_loads;
  }
  out->batch_events_avg =
      out->batches ? out->batch_events_total / out->batches : 0;
  if (p->batcher != NULL) {
    out->pending_events = inv_batcher_pending(p->batcher);
    out->inflight_batches = inv_batcher_inflight(p->batcher);
    out->paused = (uint64_t)inv_batcher_paused(p->batcher);
  }
  inv_latency_t recent;
  inv_latency_window_get(&p->latency.recent, inv_now_us(), &recent);
  out->ack_latency_p50_us = inv_latency_quantile(&recent, 0.50);
  out->ack_latency_p99_us = inv_latency_quantile(&recent, 0.99);
  out->ack_latency_max_us = recent.max_us;
  if (p->workers != NULL) {
    size_t stale;
    out->workers_known = inv_workers_view_count(p->workers, &stale);
    out->workers_stale = stale;
    out->heartbeat_bad_records = inv_workers_view_bad(p->workers);
  }
}

static void publisher_pack_stats(msgpack_packer *pk, void *data) {
  inv_publisher_t *p = data;
  inv_pub_stats_t v;
  inv_pub_errors_t errors;
  publisher_snapshot(p, &v, &errors);
  inv_pub_stats_pack(pk, &v, &errors, 2);
  inv_pack_str(pk, "tenants");
  inv_pub_stats_pack_tenants(pk, p->tenants);
  inv_pack_str(pk, "workers");
  if (p->workers != NULL)
    inv_workers_view_pack(p->workers, pk);
  else
    msgpack_pack_array(pk, 0);
}

static int publisher_render_metrics(inv_buf_t *out, void *data) {
  inv_publisher_t *p = data;
  inv_pub_stats_t v;
  inv_pub_errors_t errors;
  publisher_snapshot(p, &v, &errors);
  int rc = inv_pub_stats_prometheus(out, &v, &errors, &p->latency.hist);
  return rc < 0 ? rc : inv_pub_stats_prometheus_tenants(out, p->tenants);
}

/* /ready, and READY=1 for the service manager: Redis must be reachable
 * (every primary's connection up), since a publisher that cannot reach it
 * answers every request EUNAVAIL. It listens before this is first asked. */
static int publisher_ready(char *reason, size_t len, void *data) {
  inv_publisher_t *p = data;
  if (p->stopping) {
    snprintf(reason, len, "shutting down");
    return 0;
  }
  if (!inv_cluster_reachable(p->cluster)) {
    snprintf(reason, len, "Redis not reachable");
    return 0;
  }
  snprintf(reason, len, "ready");
  return 1;
}

/* One of the two reported closes finished; frees p after a failed start. */
static void publisher_close_done(inv_publisher_t *p) {
  if (--p->closes_pending == 0 && p->free_when_closed) inv_publisher_free(p);
}

static void publisher_cluster_closed(void *data) {
  inv_publisher_t *p = data;
  inv_sink_free(p->sink);
  p->sink = NULL;
  inv_log_info("publisher", "Redis connections closed");
  publisher_close_done(p);
}

static void publisher_server_closed(void *data) {
  inv_publisher_t *p = data;
  inv_log_debug("publisher", "client sessions closed");
  publisher_close_done(p);
}

/* Closes every component that exists. The batcher goes first so that its
 * last answers reach the server before the sessions close, and before the
 * cluster client, whose close fails (and so frees) any abandoned batch. */
static void publisher_close_all(inv_publisher_t *p) {
  inv_batcher_close(p->batcher);
  p->batcher = NULL;
  inv_metrics_http_close(p->metrics);
  p->metrics = NULL;
  inv_workers_view_close(p->workers);
  p->workers = NULL;
  if (p->server != NULL) {
    p->closes_pending++;
    inv_rpc_server_close(p->server, 2000, publisher_server_closed, p);
    p->server = NULL;
  }
  if (p->cluster != NULL) {
    p->closes_pending++;
    inv_cluster_close(p->cluster, publisher_cluster_closed, p);
    p->cluster = NULL;
  } else {
    inv_sink_free(p->sink);
    p->sink = NULL;
  }
  inv_daemon_close(p->daemon);
  p->daemon = NULL;
}

/* The batcher's pressure hook: client input stops while too many events
 * await Redis (the server is created after the batcher, and is gone while
 * the publisher closes). */
static void publisher_pressure(void *data, int paused) {
  inv_publisher_t *p = data;
  if (p->server != NULL) inv_rpc_server_pause(p->server, paused);
}

static void publisher_drained(void *data) {
  inv_publisher_t *p = data;
  inv_log_info("publisher", "every accepted request is answered; closing");
  publisher_close_all(p);
}

static void publisher_signal_stop(void *data) { inv_publisher_stop(data); }

/* A session keeps its tenant across a reload while a tenant of that name
 * still exists. */
static int publisher_keep_principal(void *data, const char *principal) {
  inv_publisher_t *p = data;
  return inv_tenants_find(p->tenants, principal) != NULL;
}

static void publisher_reload_tenants(inv_publisher_t *p) {
  inv_tenants_t *ts = NULL;
  char err[512], what[400];
  if (p->conf->tenants_file == NULL) return;
  if (inv_tenants_load_file(p->conf->tenants_file, &ts, err, sizeof(err)) < 0) {
    inv_log_error("publisher", "reload: %s; keeping the tenants as they were",
                  err);
    return;
  }
  inv_tenants_carry(ts, p->tenants);
  inv_tenants_describe_change(p->tenants, ts, what, sizeof(what));
  inv_tenants_free(p->tenants);
  p->tenants = ts;
  p->methods.tenants = ts;
  size_t revoked =
      inv_rpc_server_revoke(p->server, publisher_keep_principal, p);
  inv_log_info("publisher",
               "reload: tenants-file %s: %s; %zu session%s "
               "signed out",
               p->conf->tenants_file, what, revoked, revoked == 1 ? "" : "s");
}

static void publisher_reload_tls(inv_publisher_t *p) {
  const inv_server_conf_t *sc = &p->conf->server;
  char err[512], what[600];
  if (sc->tls_cert == NULL || sc->tls_cert[0] == '\0') return;
  if (inv_rpc_server_reload_tls(p->server, sc->tls_cert, sc->tls_key,
                                p->conf->tls_client_ca, what, sizeof(what), err,
                                sizeof(err)) < 0) {
    inv_log_error("publisher",
                  "reload: %s; keeping the TLS settings as they "
                  "were",
                  err);
    return;
  }
  inv_log_info("publisher", "reload: TLS for clients: %s%s%s", what,
               p->conf->tls_client_ca != NULL ? "; client CA " : "",
               p->conf->tls_client_ca != NULL ? p->conf->tls_client_ca : "");
}

/* TLS toward Redis: the CA, client certificate and key are read again
 * from their files; new connections use them, open ones keep theirs (a
 * rotated certificate is thus picked up at the next reconnect, never by
 * dropping a working connection). A file that does not load keeps the old
 * settings. */
static void publisher_reload_redis_tls(inv_publisher_t *p) {
  inv_tls_ctx_t *ctx = NULL;
  char err[512];
  if (!p->conf->redis_client.tls) return;
  if (inv_redis_conf_tls(&p->conf->redis_client, &ctx, err, sizeof(err)) != 0) {
    inv_log_error("publisher",
                  "reload: %s; keeping the TLS settings toward "
                  "Redis as they were",
                  err);
    return;
  }
  inv_cluster_set_tls(p->cluster, ctx);
  inv_tls_ctx_free(ctx);
  inv_log_info("publisher",
               "reload: TLS toward Redis: certificates read "
               "again; new connections use them");
}

static void publisher_reload(void *data) {
  inv_publisher_t *p = data;
  if (p->stopping || p->server == NULL) return;
  publisher_reload_tenants(p);
  publisher_reload_tls(p);
  publisher_reload_redis_tls(p);
}

void inv_publisher_stop(inv_publisher_t *p) {
  if (p->stopping) return;
  p->stopping = 1;
  inv_log_info("publisher", "stopping: %zu events pending",
               inv_batcher_pending(p->batcher));
  inv_rpc_server_stop_accepting(p->server);
  inv_metrics_http_close(p->metrics);
  p->metrics = NULL;
  inv_batcher_drain(p->batcher, publisher_drained, p);
}

int inv_publisher_start(uv_loop_t *loop, const inv_pub_conf_t *conf,
                        inv_publisher_t **out, char *err, size_t errlen) {
  int rc;
  char addr[300];
  inv_publisher_t *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    snprintf(err, errlen, "out of memory");
    return INV_ENOMEM;
  }
  p->loop = loop;
  p->conf = conf;
  p->started_us = inv_now_us();
  inv_log_set_level((inv_log_level_t)conf->server.log_level);

  inv_redis_opts_t ropts;
  inv_redis_opts_default(&ropts);
  ropts.command_timeout_ms = conf->redis_timeout_ms;
  rc = inv_redis_conf_apply(&conf->redis_client, &ropts, err, errlen);
  if (rc < 0) goto err;
  rc = inv_cluster_create(loop, conf->redis.items, conf->redis.count, &ropts,
                          &p->cluster);
  inv_redis_conf_release(&ropts); /* the client holds its own copies */
  if (rc < 0) {
    snprintf(err, errlen, "cannot create the Redis client: %s",
             inv_strerror(rc));
    goto err;
  }
  rc = inv_sink_create(p->cluster, conf->max_log_len, conf->ack_replicas - 1,
                       &p->sink);
  if (rc < 0) {
    snprintf(err, errlen, "out of memory");
    goto err;
  }
  rc = inv_workers_view_create(loop, p->cluster, &p->workers);
  if (rc < 0) {
    snprintf(err, errlen, "out of memory");
    goto err;
  }
  inv_batcher_opts_t bopts = {
      .batch_max_events = (size_t)conf->batch_max_events,
      .batch_delay_us = (uint64_t)conf->batch_delay_us,
      .max_pending_events = (size_t)conf->max_pending_events,
      .max_inflight_batches = (size_t)conf->max_inflight_batches,
      .timeout_ms = conf->redis_timeout_ms,
      .pressure_cb = publisher_pressure,
      .pressure_data = p,
  };
  rc = inv_batcher_create(loop, &bopts, &inv_sink_redis_ops, p->sink, &p->stats,
                          &p->latency, &p->batcher);
  if (rc < 0) {
    snprintf(err, errlen, "out of memory");
    goto err;
  }
  p->methods.conf = conf;
  p->methods.rules.max_key_len = conf->max_key_len;
  p->methods.rules.allow_flush = conf->allow_flush;
  p->methods.batcher = p->batcher;
  p->methods.stats = &p->stats;
  p->methods.pack_stats = publisher_pack_stats;
  p->methods.pack_stats_data = p;

  inv_rpc_server_opts_t sopts;
  inv_rpc_server_opts_from_conf(&conf->server, &sopts);
  sopts.log_ctx = "listener";
  sopts.tls_client_ca = conf->tls_client_ca;
  sopts.tls_handshakes_max = (size_t)conf->tls_handshakes_max;
  sopts.tls_handshake_timeout_ms = conf->tls_handshake_timeout_ms;
  if (conf->tenants_file != NULL) {
    if (sopts.auth_token != NULL) {
      snprintf(err, errlen,
               "auth-token and tenants-file are both set: give "
               "the token a tenant line instead");
      rc = INV_ECONFIG;
      goto err;
    }
    rc = inv_tenants_load_file(conf->tenants_file, &p->tenants, err, errlen);
    if (rc < 0) goto err;
    char what[400];
    inv_tenants_describe_change(NULL, p->tenants, what, sizeof(what));
    inv_log_info("publisher", "tenants-file %s: %s", conf->tenants_file, what);
    p->methods.tenants = p->tenants;
    sopts.auth_cb = inv_pub_methods_auth;
    sopts.auth_data = &p->methods;
  }
  rc = inv_rpc_server_start(loop, &conf->server.listen, &sopts,
                            inv_pub_methods_handle, &p->methods, &p->server,
                            err, errlen);
  if (rc < 0) goto err;

  if (conf->server.metrics_listen.port != 0) {
    rc = inv_metrics_http_start(loop, &conf->server.metrics_listen,
                                publisher_render_metrics, p, &p->metrics, err,
                                errlen);
    if (rc < 0) goto err;
    inv_metrics_http_set_ready(p->metrics, publisher_ready, p);
  }
  rc = inv_daemon_start(loop, publisher_signal_stop, p, &p->daemon);
  if (rc < 0) {
    snprintf(err, errlen, "cannot install signal handlers: %s",
             inv_strerror(rc));
    goto err;
  }
  inv_daemon_notify_when_ready(p->daemon, publisher_ready, p);
  inv_daemon_on_reload(p->daemon, publisher_reload, p);
  inv_addr_format(&conf->server.listen, addr, sizeof(addr));
  inv_log_info("publisher", "inval-publisher %s listening on %s (port %d)",
               INV_VERSION, addr, inv_rpc_server_port(p->server));
  if (p->metrics != NULL) {
    inv_addr_format(&conf->server.metrics_listen, addr, sizeof(addr));
    inv_log_info("publisher", "metrics on http://%s/metrics", addr);
  }
  *out = p;
  return 0;

err:
  p->free_when_closed = 1;
  p->closes_pending++; /* held until every close below is issued */
  publisher_close_all(p);
  publisher_close_done(p);
  return rc;
}

int inv_publisher_port(const inv_publisher_t *p) {
  return inv_rpc_server_port(p->server);
}

void inv_publisher_free(inv_publisher_t *p) {
  if (p == NULL) return;
  inv_pub_methods_release(&p->methods);
  inv_tenants_free(p->tenants);
  free(p);
}

int inv_publisher_run(const inv_pub_conf_t *conf, char *err, size_t errlen) {
  uv_loop_t loop;
  int rc = uv_loop_init(&loop);
  if (rc != 0) {
    snprintf(err, errlen, "cannot create the event loop: %s", uv_strerror(rc));
    return INV_EIO;
  }
  inv_publisher_t *p = NULL;
  rc = inv_publisher_start(&loop, conf, &p, err, errlen);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0)
    inv_log_warn("publisher", "event loop closed with handles still open");
  if (rc < 0) return rc;
  inv_publisher_free(p);
  inv_log_info("publisher", "stopped");
  return 0;
}
