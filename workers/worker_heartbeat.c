/*
 * The worker's heartbeat: a record written every heartbeat-interval into
 * the hash cache:invalidation:workers (proto/heartbeat.h), for
 * monitoring only: nothing reads a position from it any more, since each
 * shard's cursor lives in its consumer group.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inval/errors.h"
#include "proto/heartbeat.h"
#include "common/base/log.h"
#include "workers/worker_int.h"

static void hb_result(inv_worker_t *w, redisReply *reply, int err) {
  w->hb_inflight = 0;
  if (err == 0 && reply->type != REDIS_REPLY_ERROR)
    w->st.heartbeats++;
  else if (!w->closing)
    inv_log_debug(w->ctx, "heartbeat failed: %s",
                  err < 0 ? inv_strerror(err) : reply->str);
}

static void hb_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  (void)c;
  hb_result(data, reply, err);
}

static void hb_direct_cb(inv_redis_t *r, redisReply *reply, int err,
                         void *data) {
  (void)r;
  hb_result(data, reply, err);
}

/* The connection a standalone replica's heartbeat goes over (to its
 * primary, opened on first use and replaced when the primary changes), or
 * NULL when it goes through the cluster client (a cluster node, a primary). */
static inv_redis_t *hb_primary(inv_worker_t *w) {
  int want = w->standalone_node && w->role == INV__ROLE_REPLICA &&
             w->master_addr[0] != '\0';
  if (w->hb_primary != NULL &&
      (!want || strcmp(w->hb_primary_addr, w->master_addr) != 0)) {
    inv_redis_close(w->hb_primary, NULL, NULL);
    w->hb_primary = NULL;
  }
  if (!want || w->hb_primary != NULL) return w->hb_primary;
  char host[300];
  const char *colon = strrchr(w->master_addr, ':');
  if (colon == NULL || (size_t)(colon - w->master_addr) >= sizeof(host))
    return NULL;
  memcpy(host, w->master_addr, (size_t)(colon - w->master_addr));
  host[colon - w->master_addr] = '\0';
  inv_redis_opts_t ro;
  inv_redis_opts_default(&ro);
  ro.command_timeout_ms = w->conf->redis_timeout_ms;
  ro.name = "heartbeat to primary";
  char why[512];
  if (inv_redis_conf_apply(&w->conf->redis_client, &ro, why, sizeof why) != 0) {
    inv_log_error(w->ctx, "%s", why);
    return NULL;
  }
  int rc = inv_redis_create(w->loop, host, atoi(colon + 1), &ro, NULL, NULL, w,
                            &w->hb_primary);
  inv_redis_conf_release(&ro);
  if (rc != 0) {
    w->hb_primary = NULL;
    return NULL;
  }
  snprintf(w->hb_primary_addr, sizeof(w->hb_primary_addr), "%s",
           w->master_addr);
  return w->hb_primary;
}

/* Makes the instance string: host, pid and 64 random bits, so that two
 * processes, and two starts of one, never share it. */
static void make_instance(inv_worker_t *w) {
  char host[32] = "";
  unsigned char rnd[8] = {0};
  char hex[17];
  if (gethostname(host, sizeof(host)) != 0) host[0] = '\0';
  host[sizeof(host) - 1] = '\0';
  /* Without entropy the clock still tells two starts apart. */
  if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
    uint64_t t = inv_now_us() ^ inv_wall_ms();
    memcpy(rnd, &t, sizeof(rnd));
  }
  for (size_t i = 0; i < sizeof(rnd); i++)
    snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
  snprintf(w->instance, sizeof(w->instance), "%s/%ld/%s", host, (long)getpid(),
           hex);
}

/* Sends one command of the heartbeat, over direct when set, else through
 * the cluster client. Returns 0 or a negative code (no callback then). */
static int hb_send(inv_worker_t *w, inv_redis_t *direct, int argc,
                   const char **argv, const size_t *lens,
                   inv_cluster_reply_cb cb, inv_redis_reply_cb direct_cb) {
  if (direct != NULL)
    return inv_redis_command_argv(direct, argc, argv, lens, direct_cb, w);
  return inv_cluster_command_argv(w->cluster, INV_HEARTBEAT_KEY,
                                  strlen(INV_HEARTBEAT_KEY), argc, argv, lens,
                                  cb, w);
}

/* The answer to the HGET of our own record before the first heartbeat: a
 * fresh record of another process means a second worker serves (or
 * served a moment ago) the same id. Both would apply every event, which is
 * harmless, but their heartbeats overwrite each other and hide one, so it
 * is said loudly; this worker goes on. */
static void hb_check_result(inv_worker_t *w, redisReply *reply, int err) {
  inv_heartbeat_t hb;
  w->hb_inflight = 0;
  w->hb_checked = 1;
  if (w->closing) return;
  if (err == 0 && reply->type == REDIS_REPLY_STRING &&
      inv_heartbeat_decode(reply->str, reply->len, &hb) == 0 &&
      !inv_heartbeat_is_stale(&hb, inv_wall_ms()) &&
      strcmp(hb.instance, w->instance) != 0) {
    uint64_t now = inv_wall_ms();
    w->st.duplicate_workers++;
    inv_log_warn(w->ctx,
                 "another worker (%s) wrote a heartbeat as %s for "
                 "node %s %.1f s ago: if it still runs, two workers serve "
                 "one node and their heartbeats overwrite each other; give "
                 "each worker its own --worker-id or stop one",
                 hb.instance[0] ? hb.instance : "an older version", w->id,
                 hb.node,
                 now > hb.ts_ms ? (double)(now - hb.ts_ms) / 1000.0 : 0.0);
  }
  inv__worker_heartbeat(w);
}

static void hb_check_cb(inv_cluster_t *c, redisReply *reply, int err,
                        void *data) {
  (void)c;
  hb_check_result(data, reply, err);
}

static void hb_check_direct_cb(inv_redis_t *r, redisReply *reply, int err,
                               void *data) {
  (void)r;
  hb_check_result(data, reply, err);
}

/* Fills hb's health summary from the node poller's last figures. */
static void hb_health(inv_worker_t *w, inv_heartbeat_t *hb) {
  const inv_node_figures_t *f = inv_node_health_figures(w->node_health);
  if (f == NULL || f->polls == 0) return; /* nothing polled yet */
  hb->has_health = 1;
#define HB_COPY(key) hb->health.key = f->key;
  INV_HEARTBEAT_HEALTH_MAP(HB_COPY)
#undef HB_COPY
  hb->health.fragmentation = f->fragmentation;
  if (!(hb->health.fragmentation >= 0)) hb->health.fragmentation = 0;
  if (hb->health.fragmentation > INV_HEARTBEAT_FRAG_MAX)
    hb->health.fragmentation = INV_HEARTBEAT_FRAG_MAX;
}

/* Fills the record's positions: each consumed shard's last acknowledged
 * id, and the largest of them as last_id. */
static void hb_positions(inv_worker_t *w, inv_heartbeat_t *hb) {
  hb->nshards = 0;
  for (unsigned s = 0; s < INV_LOG_SHARDS; s++) {
    if (inv_intake_state(w->intake, s) == INV_SHARD_OFF) continue;
    hb->shards[hb->nshards].shard = s;
    inv_sid_format(inv_intake_acked(w->intake, s),
                   hb->shards[hb->nshards].acked);
    hb->nshards++;
  }
  inv_sid_format(inv_intake_last_acked(w->intake), hb->last_id);
}

void inv__worker_heartbeat(inv_worker_t *w) {
  inv_heartbeat_t hb;
  inv_buf_t buf = {0};
  inv_redis_t *direct = hb_primary(w);
  if (w->hb_inflight || (direct != NULL ? !inv_redis_is_connected(direct)
                                        : !inv_cluster_ready(w->cluster)))
    return;
  if (w->instance[0] == '\0') make_instance(w);
  if (!w->hb_checked) {
    const char *argv[3] = {"HGET", INV_HEARTBEAT_KEY, w->id};
    size_t lens[3] = {4, strlen(INV_HEARTBEAT_KEY), strlen(w->id)};
    if (hb_send(w, direct, 3, argv, lens, hb_check_cb, hb_check_direct_cb) == 0)
      w->hb_inflight = 1;
    return;
  }
  memset(&hb, 0, sizeof(hb));
  snprintf(hb.id, sizeof(hb.id), "%.255s", w->id);
  snprintf(hb.node, sizeof(hb.node), "%.255s", w->node);
  snprintf(hb.role, sizeof(hb.role), "%s", inv__worker_role_name(w->role));
  hb_positions(w, &hb);
  hb.lag_ms = w->last_lag_ms;
  hb.behind = w->st.behind;
  hb.ts_ms = inv_wall_ms();
  hb.ttl_ms = w->conf->heartbeat_ttl_ms;
  snprintf(hb.instance, sizeof(hb.instance), "%s", w->instance);
  hb_health(w, &hb);
  if (inv_heartbeat_encode(&hb, &buf) == 0) {
    const char *argv[4] = {"HSET", INV_HEARTBEAT_KEY, w->id, buf.data};
    size_t lens[4] = {4, strlen(INV_HEARTBEAT_KEY), strlen(w->id), buf.len};
    if (hb_send(w, direct, 4, argv, lens, hb_cb, hb_direct_cb) == 0)
      w->hb_inflight = 1;
  }
  inv_buf_free(&buf);
}
