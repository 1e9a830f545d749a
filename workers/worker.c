/*
 * The worker's lifecycle: connections, timers, the state file, stats and
 * the graceful stop (see worker.h and worker_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/redis_conf.h"
#include "common/tls.h"
#include "proto/codec.h"
#include "workers/state_file.h"
#include "workers/worker_int.h"

void inv__worker_scan_done_cb(void *owner, uint64_t tag, int err);

void inv__worker_owed_settle(inv_worker_t *w) {
  char a[INV_SID_STRLEN];
  if (w->replay_limited && inv_sid_cmp(w->done, w->replay_upto) >= 0) {
    w->replay_limited = 0;
    inv_log_info(w->ctx, "owed replay of gained slots done (up to %s)",
                 inv_sid_format(w->replay_upto, a));
  }
  if (w->takeover_owed && inv_sid_cmp(w->done, w->takeover_upto) >= 0) {
    w->takeover_owed = 0;
    inv_log_info(w->ctx, "owed takeover replay done (up to %s)",
                 inv_sid_format(w->takeover_upto, a));
  }
}

/* The state to persist now. While a promotion waits for the heartbeats the
 * takeover is not recorded yet, so the file keeps saying "replica": a
 * restart then takes over again. Before the first role is known, the role
 * and slots read at start-up are kept. */
static void build_state(const inv_worker_t *w, inv_state_t *st) {
  memset(st, 0, sizeof(*st));
  st->pos = w->done;
  int role = w->role == INV__ROLE_UNKNOWN ? w->boot_role : w->role;
  if (role == INV__ROLE_PRIMARY && w->takeover_pending) role = INV__ROLE_REPLICA;
  st->role = role == INV__ROLE_PRIMARY   ? INV_STATE_PRIMARY
             : role == INV__ROLE_REPLICA ? INV_STATE_REPLICA
                                         : INV_STATE_ROLE_NONE;
  if (st->role == INV_STATE_REPLICA)
    snprintf(st->master, sizeof(st->master), "%s", w->master_addr);
  if (st->role == INV_STATE_PRIMARY && w->known_slots_valid) {
    st->has_slots = 1;
    memcpy(st->slots, w->known_slots, sizeof(st->slots));
  }
  if (w->takeover_owed) {
    inv_state_owed_t *o = &st->owed[st->nowed++];
    o->from = w->takeover_from;
    o->upto = w->takeover_upto;
    o->all = 1;
  }
  if (w->replay_limited) {
    inv_state_owed_t *o = &st->owed[st->nowed++];
    o->from = w->replay_from;
    o->upto = w->replay_upto;
    memcpy(o->slots, w->replay_slots, sizeof(o->slots));
  }
}

void inv__worker_save_state(inv_worker_t *w) {
  char err[256];
  inv_state_t st;
  if (!w->have_position) return;
  inv__worker_owed_settle(w);
  build_state(w, &st);
  if (w->saved_valid && memcmp(&st, w->saved_state, sizeof(st)) == 0) return;
  if (inv_state_write(w->state_path, &st, err, sizeof(err)) != 0) {
    inv_log_error(w->ctx, "cannot save state: %s", err);
    return;
  }
  *w->saved_state = st;
  w->saved = w->done;
  w->saved_valid = 1;
  w->st.state_saves++;
}

/* Takes in what the state file says beyond the position: the role and
 * slots it was saved with, and the replays still owed. A record that
 * cannot be read (rc INV_EPROTO) costs a takeover-style replay of every
 * slot from the position minus takeover-window: the worker cannot tell
 * what it owed, so it re-runs what any ownership change could need. */
static void load_owed(inv_worker_t *w, const inv_state_t *st, int rc,
                      const char *why) {
  char a[INV_SID_STRLEN], b[INV_SID_STRLEN];
  if (rc == INV_EPROTO) {
    inv_sid_t start = inv_sid_minus_ms(st->pos, w->conf->takeover_window_ms);
    inv_log_error(w->ctx, "%s: replaying every slot from %s, the takeover "
                  "window before the saved position", why,
                  inv_sid_format(start, a));
    w->seen = w->done = start;
    w->takeover_owed = 1;
    w->takeover_from = start;
    w->takeover_upto = st->pos;
    return;
  }
  w->boot_role = st->role == INV_STATE_PRIMARY   ? INV__ROLE_PRIMARY
                 : st->role == INV_STATE_REPLICA ? INV__ROLE_REPLICA
                                                 : INV__ROLE_UNKNOWN;
  if (st->role == INV_STATE_REPLICA && strcmp(st->master, "-") != 0)
    snprintf(w->master_addr, sizeof(w->master_addr), "%s", st->master);
  if (st->has_slots) {
    w->known_slots_valid = 1;
    memcpy(w->known_slots, st->slots, sizeof(w->known_slots));
  }
  for (int i = 0; i < st->nowed; i++) {
    const inv_state_owed_t *o = &st->owed[i];
    if (o->all) {
      w->takeover_owed = 1;
      w->takeover_from = o->from;
      w->takeover_upto = o->upto;
    } else {
      w->replay_limited = 1;
      w->replay_from = o->from;
      w->replay_upto = o->upto;
      memcpy(w->replay_slots, o->slots, sizeof(w->replay_slots));
    }
    inv_log_info(w->ctx, "state: owed replay of %s in (%s, %s]",
                 o->all ? "every slot (takeover)" : "gained slots",
                 inv_sid_format(o->from, a), inv_sid_format(o->upto, b));
  }
}

static void role_timer_cb(uv_timer_t *t) {
  inv_worker_t *w = t->data;
  inv__worker_poll_role(w);
  inv__worker_takeover_tick(w);
  /* A failed slot-map refresh is retried here rather than by the slower
   * periodic refresh: intake waits for the map. */
  if (!w->map_known && !w->map_inflight && inv_redis_is_connected(w->cmd))
    inv__worker_refresh_map(w);
  /* Also the retry point of an intake that went idle after a failure, and
   * of dispatches that failed. */
  inv__worker_retry_tick(w);
  inv__worker_maybe_start(w);
}

static void map_timer_cb(uv_timer_t *t) {
  inv_worker_t *w = t->data;
  if (inv_redis_is_connected(w->cmd)) inv__worker_refresh_map(w);
}

static void save_timer_cb(uv_timer_t *t) { inv__worker_save_state(t->data); }

static void hb_timer_cb(uv_timer_t *t) {
  inv_worker_t *w = t->data;
  inv__worker_refresh_behind(w);
  inv__worker_verify_live(w);
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
  }
}

static void subscribe_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  inv_worker_t *w = data;
  (void)r;
  if (w->closing) return;
  if (err < 0 || reply->type == REDIS_REPLY_ERROR) {
    inv_log_warn(w->ctx, "SUBSCRIBE failed: %s",
                 err < 0 ? inv_strerror(err) : reply->str);
    inv_redis_reset(w->sub);
    return;
  }
  inv_log_info(w->ctx, "subscribed to %s", INV_CHANNEL);
  w->subscribed = 1;
  w->st.subscribed = 1;
  /* Subscribe first, then read the log: nothing falls in between. */
  inv__worker_maybe_start(w);
}

static void sub_event_cb(inv_redis_t *r, inv_redis_event_t ev, void *data) {
  inv_worker_t *w = data;
  if (w->closing) return;
  if (ev == INV_REDIS_CONNECTED) {
    if (inv_redis_subscribe(r, INV_CHANNEL, subscribe_cb, w) != 0)
      inv_redis_reset(r);
  } else {
    w->subscribed = 0;
    w->st.subscribed = 0;
    inv__worker_go_idle(w);
  }
}

static void sub_push_cb(inv_redis_t *r, redisReply *msg, void *data) {
  inv_worker_t *w = data;
  (void)r;
  if (msg->type != REDIS_REPLY_ARRAY || msg->elements != 3 ||
      msg->element[0]->type != REDIS_REPLY_STRING ||
      strcmp(msg->element[0]->str, "message") != 0 ||
      msg->element[2]->type != REDIS_REPLY_STRING)
    return;
  inv__worker_hint(w, msg->element[2]->str, msg->element[2]->len, INV_CHANNEL);
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
  if (inv_state_path(conf->state_dir ? conf->state_dir : ".", w->id, w->state_path,
                     sizeof(w->state_path)) != 0) {
    snprintf(err, errlen, "state-dir path too long");
    rc = INV_EINVAL;
    goto err;
  }
  rc = INV_ENOMEM;
  w->saved_state = calloc(1, sizeof(*w->saved_state));
  if (w->saved_state == NULL) goto err_oom;
  rc = inv_state_read(w->state_path, w->saved_state, err, errlen);
  if (rc == INV_EIO || rc == INV_EINVAL) goto err;
  if (rc == 1 || rc == INV_EPROTO) {
    char a[INV_SID_STRLEN];
    w->have_position = 1;
    w->seen = w->done = w->saved = w->saved_state->pos;
    w->saved_valid = 1;
    inv_log_info(w->ctx, "state %s: last applied %s", w->state_path,
                 inv_sid_format(w->seen, a));
    load_owed(w, w->saved_state, rc, err);
  }
  rc = INV_ENOMEM;
  if (inv_watermark_create(INV__RING_CAP, &w->wm) != 0) goto err_oom;

  inv_redis_opts_default(&ro);
  ro.command_timeout_ms = conf->redis_timeout_ms;
  rc = inv_redis_conf_apply(&conf->redis_client, &ro, err, errlen);
  if (rc != 0) goto err;
  rc = INV_ENOMEM;
  /* Each connection names its role: the log lines of four connections to
   * one node tell apart. */
  ro.name = "commands";
  if (inv_redis_create(loop, conf->redis.host, conf->redis.port, &ro, cmd_event_cb,
                       NULL, w, &w->cmd) != 0)
    goto err_oom;
  /* The subscriber may wait long for messages: no command timeout. */
  ro.command_timeout_ms = 0;
  ro.name = "subscriber";
  if (inv_redis_create(loop, conf->redis.host, conf->redis.port, &ro, sub_event_cb,
                       sub_push_cb, w, &w->sub) != 0)
    goto err_oom;
  ro.name = "shard channel";
  if (inv_redis_create(loop, conf->redis.host, conf->redis.port, &ro,
                       inv__worker_shard_event, inv__worker_shard_push, w,
                       &w->shard) != 0)
    goto err_oom;
  ro.command_timeout_ms = conf->redis_timeout_ms;
  ro.name = "log";
  if (inv_cluster_create(loop, &conf->redis, 1, &ro, &w->logc) != 0) goto err_oom;
  inv_redis_conf_release(&ro); /* the connections hold their own copies */
  if (inv_unlinker_create(loop, w->cmd, &w->st, conf->stale_grace_ms,
                          moved_cb, w, &w->unl) != 0)
    goto err_oom;
  inv_scanner_opts_t so = {conf->scan_count, conf->max_scans, conf->scan_inflight};
  if (inv_scanner_create(loop, w->cmd, w->unl, &w->map, &so, &w->st,
                         inv__worker_scan_done_cb, w, &w->scn) != 0)
    goto err_oom;

  init_timer(w, &w->role_timer, role_timer_cb, conf->role_poll_ms);
  init_timer(w, &w->map_timer, map_timer_cb, INV__MAP_REFRESH_MS);
  init_timer(w, &w->save_timer, save_timer_cb, conf->state_save_interval_ms);
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
  inv_cluster_close(w->logc, NULL, NULL);
  inv_redis_close(w->shard, NULL, NULL);
  inv_redis_close(w->sub, NULL, NULL);
  inv_redis_close(w->cmd, NULL, NULL);
  free(w->saved_state);
  inv_watermark_destroy(w->wm);
  free(w);
  return rc;
}

static void snapshot(inv_worker_t *w, inv_worker_stats_t *s) {
  inv_cluster_stats_t cs;
  const inv_redis_stats_t *a = inv_redis_stats(w->cmd);
  const inv_redis_stats_t *b = inv_redis_stats(w->sub);
  const inv_redis_stats_t *c = inv_redis_stats(w->shard);
  *s = w->st;
  inv_cluster_get_stats(w->logc, &cs);
  s->uptime_s = (inv_now_us() - w->started_us) / 1000000;
  s->is_primary = w->role == INV__ROLE_PRIMARY;
  s->connected = inv_redis_is_connected(w->cmd) && inv_redis_is_connected(w->sub);
  s->subscribed = (uint64_t)w->subscribed;
  /* A read asked for by hints is part of live operation. */
  s->live = w->intake == INV__IN_LIVE ||
            (w->intake == INV__IN_CATCHUP && w->hint_read);
  s->pending_keys = w->pending_keys;
  s->scans_running = inv_scanner_running(w->scn);
  s->scans_pending = inv_scanner_pending(w->scn);
  s->last_applied_ms = w->done.ms;
  inv__worker_owed_settle(w);
  s->replay_owed = (uint64_t)(w->replay_limited + w->takeover_owed);
  /* A takeover re-runs every slot the node owns. */
  s->replay_owed_slots = w->takeover_owed ? w->map.nowned
                         : w->replay_limited ? inv_state_slot_count(w->replay_slots)
                                             : 0;
  inv_latency_t recent; /* recorded in us; the figures are in ms */
  inv_latency_window_get(&w->lag.recent, inv_now_us(), &recent);
  s->lag_ms_p50 = inv_latency_quantile(&recent, 0.5) / 1000;
  s->lag_ms_p99 = inv_latency_quantile(&recent, 0.99) / 1000;
  s->lag_ms_max = recent.max_us / 1000;
  s->redis_round_trips = a->commands + b->commands + c->commands + cs.round_trips;
  s->redis_errors = a->errors + b->errors + c->errors + cs.errors;
  /* A NOSCRIPT answered with EVAL is a script load, not an error. */
  s->redis_errors -= s->redis_errors < s->script_loads ? s->redis_errors
                                                       : s->script_loads;
  s->redis_reconnects =
      a->reconnects + b->reconnects + c->reconnects + cs.reconnects;
}

void inv_worker_pack_stats(inv_worker_t *w, msgpack_packer *pk) {
  inv_worker_stats_t s;
  char last[INV_SID_STRLEN];
  snapshot(w, &s);
  inv_worker_stats_info_t info = {w->id, inv__worker_role_name(w->role),
                                  inv_sid_format(w->done, last), NULL};
  inv_worker_stats_pack(pk, &s, &info, 1);
  inv_pack_str(pk, "node");
  inv_node_health_pack(pk, w->node, inv_node_health_figures(w->node_health));
}

int inv_worker_render_metrics(inv_buf_t *out, void *worker) {
  inv_worker_t *w = worker;
  inv_worker_stats_t s;
  char last[INV_SID_STRLEN];
  snapshot(w, &s);
  inv_worker_stats_info_t info = {w->id, inv__worker_role_name(w->role),
                                  inv_sid_format(w->done, last),
                                  &w->lag.hist};
  int rc = inv_worker_stats_prometheus(out, &s, &info);
  if (rc != 0) return rc;
  return inv_node_health_prometheus(out, inv_node_health_figures(w->node_health));
}

int inv_worker_reload_redis_tls(inv_worker_t *w, char *err, size_t errlen) {
  inv_tls_ctx_t *ctx = NULL;
  inv_redis_t *conns[4];
  size_t i;
  int rc;
  if (!w->conf->redis_client.tls) return 0;
  rc = inv_redis_conf_tls(&w->conf->redis_client, &ctx, err, errlen);
  if (rc != 0) return rc;
  conns[0] = w->cmd;
  conns[1] = w->sub;
  conns[2] = w->shard;
  conns[3] = w->hb_primary;
  for (i = 0; i < sizeof(conns) / sizeof(conns[0]); i++)
    if (conns[i] != NULL) inv_redis_set_tls(conns[i], ctx);
  if (w->logc != NULL) inv_cluster_set_tls(w->logc, ctx);
  inv_tls_ctx_free(ctx);
  return 0;
}

int inv_worker_connected(const inv_worker_t *w) {
  return inv_redis_is_connected(w->cmd) && inv_redis_is_connected(w->sub);
}

int inv_worker_ready(inv_worker_t *w, char *reason, size_t len) {
  if (!inv_worker_connected(w)) {
    snprintf(reason, len, "Redis node %s not reachable", w->node);
    return 0;
  }
  if (w->intake != INV__IN_LIVE) {
    snprintf(reason, len, "catching up (not live yet)");
    return 0;
  }
  snprintf(reason, len, "ready: live");
  return 1;
}

static void handle_closed_cb(uv_handle_t *h);

static void release(inv_worker_t *w) {
  if (--w->open_handles > 0) return;
  void (*cb)(void *) = w->stop_cb;
  void *data = w->stop_data;
  free(w->saved_state);
  inv__worker_retry_clear(w);
  inv_watermark_destroy(w->wm);
  free(w);
  if (cb) cb(data);
}

static void handle_closed_cb(uv_handle_t *h) { release(h->data); }
static void conn_closed_cb(void *data) { release(data); }

void inv_worker_stop(inv_worker_t *w, void (*done_cb)(void *data), void *data) {
  char a[INV_SID_STRLEN];
  w->stop_cb = done_cb;
  w->stop_data = data;
  inv_log_info(w->ctx, "stopping: %zu scan jobs cancelled, %zu keys unsent",
               inv_scanner_running(w->scn) + inv_scanner_pending(w->scn),
               inv_unlinker_queued(w->unl));
  /* Cancelled work stays open in the watermark, so done does not pass it:
   * the next start replays it from the log. */
  inv__worker_go_idle(w);
  w->closing = 1;
  w->in_rewind = 1;
  inv_scanner_close(w->scn);
  inv_unlinker_close(w->unl);
  inv__worker_save_state(w);
  inv_log_info(w->ctx, "state saved: last applied %s", inv_sid_format(w->done, a));
  w->open_handles = 1 + 4 + 4; /* this call, timers, connections */
  if (w->hb_primary != NULL) {
    w->open_handles++;
    inv_redis_close(w->hb_primary, conn_closed_cb, w);
    w->hb_primary = NULL;
  }
  uv_close((uv_handle_t *)&w->role_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&w->map_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&w->save_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&w->hb_timer, handle_closed_cb);
  w->open_handles++;
  inv_node_health_close(w->node_health, conn_closed_cb, w);
  inv_cluster_close(w->logc, conn_closed_cb, w);
  inv_redis_close(w->shard, conn_closed_cb, w);
  inv_redis_close(w->sub, conn_closed_cb, w);
  inv_redis_close(w->cmd, conn_closed_cb, w);
  release(w);
}
