/*
 * The fast path (proto/PROTOCOL.md, "Shard channels"): a primary's worker
 * also listens on its shard's channel, where the publisher sends each
 * logged entry with SPUBLISH straight to this node instead of waiting for
 * the cluster bus to carry the PUBLISH from the log's node.
 *
 * The channel is the one of the lowest slot the node owns, as both sides
 * read it from their slot maps; while they disagree (a reshard of that
 * slot) copies go unheard, which only costs speed. A copy is a hint like
 * the broadcast (worker_int.h): its id asks for a read of the log, and its
 * content and its "prev" are not used, so a lost, early or forged copy can
 * never make the worker skip or invent an entry. A copy that asked for the
 * read makes its broadcast twin a duplicate, which intake skips by id.
 */
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "workers/worker_int.h"

/* The channel the node should listen on now, or "" for none. */
static void wanted_channel(const inv_worker_t *w,
                           char out[INV_SHARD_CHANNEL_MAX]) {
  out[0] = '\0';
  if (w->closing || w->role != INV__ROLE_PRIMARY || !w->map_known ||
      w->map_role != INV__ROLE_PRIMARY || !w->map.cluster ||
      w->map.nowned == 0)
    return;
  for (unsigned slot = 0; slot < INV_SLOTS; slot++) {
    if (inv_slot_map_owns(&w->map, slot)) {
      inv_shard_channel(slot, out);
      return;
    }
  }
}

static void ssubscribe_cb(inv_redis_t *r, redisReply *reply, int err,
                          void *data) {
  inv_worker_t *w = data;
  (void)r;
  w->shard_inflight = 0;
  if (w->closing) return;
  if (err < 0 || reply->type == REDIS_REPLY_ERROR) {
    /* MOVED: the map changed, so look again now. Anything else (NOPERM
     * from an ACL, say) is retried by each periodic map refresh, and
     * logged as a warning once until a subscription succeeds. */
    const char *why = err < 0 ? inv_strerror(err) : reply->str;
    if (w->shard_warned)
      inv_log_debug(w->ctx, "SSUBSCRIBE %s failed: %s", w->shard_channel, why);
    else
      inv_log_warn(w->ctx, "SSUBSCRIBE %s failed: %s (entries still arrive "
                   "through the broadcast)", w->shard_channel, why);
    w->shard_warned = 1;
    w->shard_on[0] = '\0';
    if (err == 0 && strncmp(reply->str, "MOVED", 5) == 0)
      inv__worker_refresh_map(w);
    return;
  }
  inv_log_info(w->ctx, "listening on shard channel %s", w->shard_channel);
  w->shard_warned = 0;
  w->st.shard_subscribed = 1;
}

/* Sends SSUBSCRIBE for the wanted channel on a connection that has none. */
static void subscribe_wanted(inv_worker_t *w) {
  const char *argv[2] = {"SSUBSCRIBE", w->shard_channel};
  size_t argvlen[2] = {10, strlen(w->shard_channel)};
  if (w->shard_channel[0] == '\0' || w->shard_on[0] != '\0' ||
      w->shard_inflight || !inv_redis_is_connected(w->shard))
    return;
  if (inv_redis_command_argv(w->shard, 2, argv, argvlen, ssubscribe_cb, w) == 0) {
    w->shard_inflight = 1;
    memcpy(w->shard_on, w->shard_channel, sizeof(w->shard_on));
  }
}

void inv__worker_shard_update(inv_worker_t *w) {
  char want[INV_SHARD_CHANNEL_MAX];
  wanted_channel(w, want);
  memcpy(w->shard_channel, want, sizeof(want));
  if (w->shard_on[0] != '\0' && strcmp(w->shard_on, want) != 0) {
    /* Leaving a channel: a fresh connection is simpler than matching an
     * SUNSUBSCRIBE with the replies still in flight. */
    w->shard_on[0] = '\0';
    w->st.shard_subscribed = 0;
    inv_redis_reset(w->shard);
    return; /* the reconnection subscribes to the wanted channel */
  }
  subscribe_wanted(w);
}

void inv__worker_shard_event(inv_redis_t *r, inv_redis_event_t ev, void *data) {
  inv_worker_t *w = data;
  (void)r;
  if (w->closing) return;
  w->shard_on[0] = '\0';
  w->shard_inflight = 0;
  w->st.shard_subscribed = 0;
  if (ev == INV_REDIS_CONNECTED) subscribe_wanted(w);
}

/* Hands one copy to intake as a hint (see the top of the file). */
static void on_copy(inv_worker_t *w, const char *data, size_t len) {
  int rc = inv__worker_hint(w, data, len, w->shard_on);
  if (rc > 0) w->st.shard_taken++;
  else if (rc == 0) w->st.shard_passed++;
}

void inv__worker_shard_push(inv_redis_t *r, redisReply *msg, void *data) {
  inv_worker_t *w = data;
  (void)r;
  if (w->closing || msg->type != REDIS_REPLY_ARRAY || msg->elements != 3 ||
      msg->element[0]->type != REDIS_REPLY_STRING)
    return;
  if (strcmp(msg->element[0]->str, "smessage") == 0 &&
      msg->element[2]->type == REDIS_REPLY_STRING) {
    on_copy(w, msg->element[2]->str, msg->element[2]->len);
  } else if (strcmp(msg->element[0]->str, "sunsubscribe") == 0) {
    /* The channel's slot left the node: find where we stand now. */
    inv_log_info(w->ctx, "shard channel %s left the node", w->shard_on);
    w->shard_on[0] = '\0';
    w->st.shard_subscribed = 0;
    inv__worker_refresh_map(w);
  }
}
