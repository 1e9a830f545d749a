/*
 * The worker's lifecycle: connections, timers, stats and the graceful stop
 * (see worker.h and worker_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/log.h"
#include "common/redis/redis_conf.h"
#include "common/tls/tls.h"
#include "proto/codec.h"
#include "workers/worker_int.h"

static void role_timer_cb(uv_timer_t *t) {
  inv_worker_t *w = t->data;
  inv__worker_poll_role(w);
  /* A failed slot-map refresh is retried here rather than by the slower
   * periodic refresh: intake waits for the map. */
  if (!w->map_known && !w->map_inflight && inv_redis_is_connected(w->cmd))
    inv__worker_refresh_map(w);
  /* The intake's retry point: failed reads, subscriptions, failed work;
   * and, every INV__POLL_MS, a read of every live shard. */
  uint64_t now = uv_now(w->loop);
  int poll = now - w->last_poll_ms >= INV__POLL_MS;
  if (poll) w->last_poll_ms = now;
  inv_intake_tick(w->intake, poll);
  w->st.shards_live = inv_intake_live(w->intake);
}

static void map_timer_cb(uv_timer_t *t) {
  inv_worker_t *w = t->data;
  if (inv_redis_is_connected(w->cmd)) inv__worker_refresh_map(w);
}

static void no_op(inv_redis_t *conn, unsigned first_slot, void *data) {
  (void)conn;
  (void)first_slot;
  (void)data;
}

static void hb_timer_cb(uv_timer_t *t) {
  inv_worker_t *w = t->data;
  /* Keeps a connection to every primary open (the cluster client opens
   * one on this call where there is none), so that a sweep of a pinned
   * pattern finds them up. */
  inv_cluster_each_primary(w->cluster, 0, no_op, NULL);
  w->st.behind = inv_intake_open_entries(w->intake);
  inv__worker_heartbeat(w);
}

static void cmd_event_cb(inv_redis_t *r, inv_redis_event_t ev, void *data) {
  inv_worker_t *w = data;
  (void)r;
  if (w->closing) return;
  if (ev == INV_REDIS_CONNECTED) {
    inv_log_info(w->ctx, "commands connection to %s up", w->node);
    w->standalone_node = 0; /* the node may have restarted in cluster mode */
    inv_unlinker_set_any_slot(w->unl, 0); /* until the map says otherwise */
    inv_unlinker_flush(w->unl);
    inv_scanner_resume(w->scn);
    inv__worker_poll_role(w);
    inv__worker_refresh_map(w);
    inv_node_health_poll(w->node_health);
  } else {
    inv_log_warn(w->ctx, "lost the connection to %s", w->node);
    /* Reads and acknowledgements in flight are lost with it: the shards
     * are attached again, from their pending entries, once it is back. */
    inv__worker_update_shards(w);
  }
}

/* An UNLINK got MOVED: our slot map is stale. */
static void moved_cb(void *data) { inv__worker_refresh_map(data); }

static void init_timer(inv_worker_t *w, uv_timer_t *t, uv_timer_cb cb,
                       uint64_t every) {
  uv_timer_init(w->loop, t);
  t->data = w;
  uv_timer_start(t, cb, every, every);
}

int inv_worker_create(uv_loop_t *loop, const inv_worker_conf_t *conf,
                      inv_worker_t **out, char *err, size_t errlen) {
  inv_redis_opts_t ro = {0};
  inv_intake_ops_t ops;
  int rc = INV_ENOMEM;
  inv_worker_t *w = calloc(1, sizeof(*w));
  if (w == NULL) {
    snprintf(err, errlen, "out of memory");
    return INV_ENOMEM;
  }
  w->loop = loop;
  w->conf = conf;
  w->started_us = inv_now_us();
  inv_addr_format(&conf->redis, w->node, sizeof(w->node));
  snprintf(w->id, sizeof(w->id), "%s",
           conf->worker_id && conf->worker_id[0] ? conf->worker_id : w->node);
  snprintf(w->ctx, sizeof(w->ctx), "worker %s", w->id);
  inv__worker_intake_ops(w, &ops);
  size_t page = (size_t)conf->catchup_page;
  size_t cap = page > INV__SHARD_OPEN_MAX ? page : INV__SHARD_OPEN_MAX;
  if (inv_intake_create(&ops, page, cap, w->ctx, &w->intake) != 0) goto err_oom;

  inv_redis_opts_default(&ro);
  ro.command_timeout_ms = conf->redis_timeout_ms;
  rc = inv_redis_conf_apply(&conf->redis_client, &ro, err, errlen);
  if (rc != 0) goto err;
  rc = INV_ENOMEM;
  /* Each connection names its role: the log lines of three connections
   * to one node tell apart. */
  ro.name = "commands";
  if (inv_redis_create(loop, conf->redis.host, conf->redis.port, &ro,
                       cmd_event_cb, NULL, w, &w->cmd) != 0)
    goto err_oom;
  /* The hint connection may wait long for messages: no command timeout. */
  ro.command_timeout_ms = 0;
  ro.name = "hints";
  if (inv_redis_create(loop, conf->redis.host, conf->redis.port, &ro,
                       inv__worker_hints_event, inv__worker_hints_push, w,
                       &w->hints) != 0)
    goto err_oom;
  ro.command_timeout_ms = conf->redis_timeout_ms;
  ro.name = "cluster";
  if (inv_cluster_create(loop, &conf->redis, 1, &ro, &w->cluster) != 0)
    goto err_oom;
  inv_redis_conf_release(&ro); /* the connections hold their own copies */
  if (inv_unlinker_create(loop, w->cmd, &w->st, conf->stale_grace_ms, moved_cb,
                          w, &w->unl) != 0)
    goto err_oom;
  inv_unlinker_set_redirect(w->unl, inv__worker_unlink_elsewhere, w);
  inv_scanner_opts_t so = {conf->scan_count, conf->max_scans,
                           conf->scan_inflight};
  if (inv_scanner_create(loop, w->cmd, w->unl, &w->map, &so, &w->st,
                         inv__worker_scan_done_cb, w, &w->scn) != 0)
    goto err_oom;

  init_timer(w, &w->role_timer, role_timer_cb, conf->role_poll_ms);
  init_timer(w, &w->map_timer, map_timer_cb, INV__MAP_REFRESH_MS);
  init_timer(w, &w->hb_timer, hb_timer_cb, conf->heartbeat_interval_ms);
  if (inv_node_health_start(loop, w->cmd, INV_NODE_HEALTH_INTERVAL_MS,
                            &w->node_health) != 0)
    goto err_oom;
  inv_log_info(w->ctx, "serving node %s", w->node);
  *out = w;
  return 0;

err_oom:
  snprintf(err, errlen, "out of memory");
err:
  inv_redis_conf_release(&ro);
  /* Nothing has run on the loop yet, so the connections close cleanly;
   * the loop run by the caller on exit releases them. */
  inv_scanner_close(w->scn);
  inv_unlinker_close(w->unl);
  inv_cluster_close(w->cluster, NULL, NULL);
  inv_redis_close(w->hints, NULL, NULL);
  inv_redis_close(w->cmd, NULL, NULL);
  inv_intake_destroy(w->intake);
  free(w);
  return rc;
}

static void snapshot(inv_worker_t *w, inv_worker_stats_t *s) {
  inv_cluster_stats_t cs;
  const inv_redis_stats_t *a = inv_redis_stats(w->cmd);
  const inv_redis_stats_t *b = inv_redis_stats(w->hints);
  *s = w->st;
  inv_cluster_get_stats(w->cluster, &cs);
  s->uptime_s = (inv_now_us() - w->started_us) / 1000000;
  s->is_primary = w->role == INV__ROLE_PRIMARY;
  s->connected = inv_worker_connected(w);
  s->shards = inv_intake_attached(w->intake);
  s->shards_live = inv_intake_live(w->intake);
  /* Live: the role is known (and a primary's map), and every shard
   * consumed was read to its end; a replica consumes none. */
  s->live = (w->role == INV__ROLE_REPLICA ||
             (w->role == INV__ROLE_PRIMARY && w->map_known)) &&
            s->shards_live == s->shards;
  s->intake_transitions = inv_intake_transitions(w->intake);
  s->replays = inv_intake_replays(w->intake);
  s->behind = inv_intake_open_entries(w->intake);
  s->pending_keys = w->pending_keys;
  s->scans_running = inv_scanner_running(w->scn);
  s->scans_pending = inv_scanner_pending(w->scn);
  s->last_applied_ms = inv_intake_last_acked(w->intake).ms;
  inv_latency_t recent; /* recorded in us; the figures are in ms */
  inv_latency_window_get(&w->lag.recent, inv_now_us(), &recent);
  s->lag_ms_p50 = inv_latency_quantile(&recent, 0.5) / 1000;
  s->lag_ms_p99 = inv_latency_quantile(&recent, 0.99) / 1000;
  s->lag_ms_max = recent.max_us / 1000;
  s->redis_round_trips = a->commands + b->commands + cs.round_trips;
  s->redis_errors = a->errors + b->errors + cs.errors;
  /* A NOSCRIPT answered with EVAL is a script load, and a NOGROUP from a
   * shard with no stream an empty read: neither is an error. */
  uint64_t expected = s->script_loads + s->empty_reads;
  s->redis_errors -= s->redis_errors < expected ? s->redis_errors : expected;
  s->redis_reconnects = a->reconnects + b->reconnects + cs.reconnects;
}

void inv_worker_pack_stats(inv_worker_t *w, msgpack_packer *pk) {
  inv_worker_stats_t s;
  char last[INV_SID_STRLEN];
  snapshot(w, &s);
  inv_sid_format(inv_intake_last_acked(w->intake), last);
  inv_worker_stats_info_t info = {w->id, inv__worker_role_name(w->role), last,
                                  NULL};
  inv_worker_stats_pack(pk, &s, &info, 1);
  inv_pack_str(pk, "node");
  inv_node_health_pack(pk, w->node, inv_node_health_figures(w->node_health));
}

int inv_worker_render_metrics(inv_buf_t *out, void *worker) {
  inv_worker_t *w = worker;
  inv_worker_stats_t s;
  char last[INV_SID_STRLEN];
  snapshot(w, &s);
  inv_sid_format(inv_intake_last_acked(w->intake), last);
  inv_worker_stats_info_t info = {w->id, inv__worker_role_name(w->role), last,
                                  &w->lag.hist};
  int rc = inv_worker_stats_prometheus(out, &s, &info);
  if (rc != 0) return rc;
  return inv_node_health_prometheus(out,
                                    inv_node_health_figures(w->node_health));
}

int inv_worker_reload_redis_tls(inv_worker_t *w, char *err, size_t errlen) {
  inv_tls_ctx_t *ctx = NULL;
  inv_redis_t *conns[3];
  size_t i;
  int rc;
  if (!w->conf->redis_client.tls) return 0;
  rc = inv_redis_conf_tls(&w->conf->redis_client, &ctx, err, errlen);
  if (rc != 0) return rc;
  conns[0] = w->cmd;
  conns[1] = w->hints;
  conns[2] = w->hb_primary;
  for (i = 0; i < sizeof(conns) / sizeof(conns[0]); i++)
    if (conns[i] != NULL) inv_redis_set_tls(conns[i], ctx);
  if (w->cluster != NULL) inv_cluster_set_tls(w->cluster, ctx);
  inv_tls_ctx_free(ctx);
  return 0;
}

int inv_worker_connected(const inv_worker_t *w) {
  return inv_redis_is_connected(w->cmd) && inv_redis_is_connected(w->hints);
}

int inv_worker_ready(inv_worker_t *w, char *reason, size_t len) {
  if (!inv_worker_connected(w)) {
    snprintf(reason, len, "Redis node %s not reachable", w->node);
    return 0;
  }
  size_t attached = inv_intake_attached(w->intake);
  size_t live = inv_intake_live(w->intake);
  if (live < attached) {
    snprintf(reason, len, "catching up: %zu of %zu shards read to their end",
             live, attached);
    return 0;
  }
  if (w->role == INV__ROLE_REPLICA)
    snprintf(reason, len, "ready: standby (replica of %s)", w->master_addr);
  else
    snprintf(reason, len, "ready: live on %zu shards", attached);
  return 1;
}

static void handle_closed_cb(uv_handle_t *h);

static void release(inv_worker_t *w) {
  if (--w->open_handles > 0) return;
  void (*cb)(void *) = w->stop_cb;
  void *data = w->stop_data;
  inv_intake_destroy(w->intake);
  free(w);
  if (cb) cb(data);
}

static void handle_closed_cb(uv_handle_t *h) { release(h->data); }
static void conn_closed_cb(void *data) { release(data); }

void inv_worker_stop(inv_worker_t *w, void (*done_cb)(void *data), void *data) {
  w->stop_cb = done_cb;
  w->stop_data = data;
  inv_log_info(w->ctx,
               "stopping: %zu scan jobs cancelled, %zu keys unsent, "
               "%zu log entries left pending for the next start",
               inv_scanner_running(w->scn) + inv_scanner_pending(w->scn),
               inv_unlinker_queued(w->unl), inv_intake_open_entries(w->intake));
  /* Work cancelled here is never acknowledged: its entries stay pending
   * in their consumer groups, and the next reader applies them. */
  w->closing = 1;
  inv__worker_update_shards(w);
  inv_scanner_close(w->scn);
  inv_unlinker_close(w->unl);
  w->open_handles = 1 + 3 + 4; /* this call, timers, connections */
  if (w->hb_primary != NULL) {
    w->open_handles++;
    inv_redis_close(w->hb_primary, conn_closed_cb, w);
    w->hb_primary = NULL;
  }
  uv_close((uv_handle_t *)&w->role_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&w->map_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&w->hb_timer, handle_closed_cb);
  inv_node_health_close(w->node_health, conn_closed_cb, w);
  inv_cluster_close(w->cluster, conn_closed_cb, w);
  inv_redis_close(w->hints, conn_closed_cb, w);
  inv_redis_close(w->cmd, conn_closed_cb, w);
  release(w);
}
