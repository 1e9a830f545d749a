/*
 * The workers view. A refresh is one HGETALL; while one is in flight no
 * other is sent, so a slow Redis costs at most one outstanding command.
 * The reply's callback reaches the view through a small token that
 * outlives it, because the cluster client may answer after the view was
 * closed.
 */
#include "service/workers_view.h"

#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "proto/heartbeat.h"
#include "common/base/latency.h"
#include "common/base/log.h"
#include "proto/codec.h"

/* The link between one HGETALL and the view; view is NULL once closed. */
typedef struct view_token_s {
  inv_workers_view_t *view;
} view_token_t;

struct inv_workers_view_s {
  inv_cluster_t *cluster;
  uv_timer_t timer;
  view_token_t *inflight; /* the refresh awaiting its reply, or NULL */
  inv_heartbeat_t *records;
  size_t count;
  size_t bad; /* values the last read skipped as not heartbeat records */
};

static int record_cmp(const void *a, const void *b) {
  return strcmp(((const inv_heartbeat_t *)a)->id,
                ((const inv_heartbeat_t *)b)->id);
}

static void view_reply_cb(inv_cluster_t *c, redisReply *reply, int err,
                          void *data) {
  (void)c;
  view_token_t *tok = data;
  inv_workers_view_t *v = tok->view;
  free(tok);
  if (v == NULL) return;
  v->inflight = NULL;
  if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
      inv_log_debug("workers", "HGETALL %s: %.*s", INV_HEARTBEAT_KEY,
                    (int)reply->len, reply->str);
    return; /* keep the last known records */
  }
  size_t n = reply->elements / 2;
  if (n > INV_WORKERS_VIEW_MAX) n = INV_WORKERS_VIEW_MAX;
  inv_heartbeat_t *recs = n ? calloc(n, sizeof(*recs)) : NULL;
  if (n && recs == NULL) return;
  size_t k = 0, bad = 0;
  for (size_t i = 0; i < n; i++) {
    const redisReply *field = reply->element[2 * i];
    const redisReply *val = reply->element[2 * i + 1];
    /* Anything that reaches Redis can write this hash: a value that is not
     * a record is skipped and counted, never trusted. */
    if (field->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING ||
        inv_heartbeat_decode(val->str, val->len, &recs[k]) < 0) {
      bad++;
      continue;
    }
    if (recs[k].id[0] == '\0') {
      size_t fl = field->len < sizeof(recs[k].id) - 1 ? field->len
                                                      : sizeof(recs[k].id) - 1;
      memcpy(recs[k].id, field->str, fl);
    }
    k++;
  }
  if (bad != v->bad && bad > 0)
    inv_log_warn("workers",
                 "%zu value%s of %s %s not heartbeat records "
                 "(skipped)",
                 bad, bad == 1 ? "" : "s", INV_HEARTBEAT_KEY,
                 bad == 1 ? "is" : "are");
  v->bad = bad;
  if (k > 1) qsort(recs, k, sizeof(*recs), record_cmp);
  free(v->records);
  v->records = recs;
  v->count = k;
}

static void view_timer_cb(uv_timer_t *t) {
  inv_workers_view_t *v = t->data;
  if (v->inflight != NULL || !inv_cluster_ready(v->cluster)) return;
  view_token_t *tok = calloc(1, sizeof(*tok));
  if (tok == NULL) return;
  tok->view = v;
  const char *argv[2] = {"HGETALL", INV_HEARTBEAT_KEY};
  size_t argvlen[2] = {7, sizeof(INV_HEARTBEAT_KEY) - 1};
  if (inv_cluster_command_argv(v->cluster, INV_HEARTBEAT_KEY,
                               sizeof(INV_HEARTBEAT_KEY) - 1, 2, argv, argvlen,
                               view_reply_cb, tok) < 0) {
    free(tok);
    return;
  }
  v->inflight = tok;
}

int inv_workers_view_create(uv_loop_t *loop, inv_cluster_t *cluster,
                            inv_workers_view_t **out) {
  inv_workers_view_t *v = calloc(1, sizeof(*v));
  if (v == NULL) return INV_ENOMEM;
  v->cluster = cluster;
  uv_timer_init(loop, &v->timer);
  v->timer.data = v;
  uv_timer_start(&v->timer, view_timer_cb, 100, INV_WORKERS_VIEW_REFRESH_MS);
  *out = v;
  return 0;
}

size_t inv_workers_view_count(const inv_workers_view_t *v, size_t *stale) {
  uint64_t now = inv_wall_ms();
  size_t s = 0;
  for (size_t i = 0; i < v->count; i++)
    s += (size_t)inv_heartbeat_is_stale(&v->records[i], now);
  if (stale != NULL) *stale = s;
  return v->count;
}

size_t inv_workers_view_bad(const inv_workers_view_t *v) { return v->bad; }

void inv_workers_view_pack(const inv_workers_view_t *v, msgpack_packer *pk) {
  uint64_t now = inv_wall_ms();
  msgpack_pack_array(pk, v->count);
  for (size_t i = 0; i < v->count; i++) {
    const inv_heartbeat_t *hb = &v->records[i];
    /* "shards" is always listed, [] for a worker that consumes none (a
     * replica's), so that a reader tells "no shard" from an old record. */
    int no_shards = hb->nshards == 0;
    msgpack_pack_map(pk, inv_heartbeat_entries(hb) + 1 + (uint32_t)no_shards);
    inv_heartbeat_pack_entries(pk, hb);
    if (no_shards) {
      inv_pack_str(pk, "shards");
      msgpack_pack_array(pk, 0);
    }
    inv_pack_str(pk, "stale");
    if (inv_heartbeat_is_stale(hb, now))
      msgpack_pack_true(pk);
    else
      msgpack_pack_false(pk);
  }
}

static void view_closed_cb(uv_handle_t *h) {
  inv_workers_view_t *v = h->data;
  free(v->records);
  free(v);
}

void inv_workers_view_close(inv_workers_view_t *v) {
  if (v == NULL) return;
  if (v->inflight != NULL) v->inflight->view = NULL;
  v->inflight = NULL;
  uv_close((uv_handle_t *)&v->timer, view_closed_cb);
}
