/*
 * The Redis sink. One Lua script does the log append and the broadcast, so
 * a subscriber never sees an id that is not in the log and the log never
 * holds an entry that was not broadcast.
 */
#include "service/sink.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "proto/event.h"

/* KEYS[1] = log key; ARGV[1] = MAXLEN, ARGV[2] = log payload (fixmap 3),
 * ARGV[3] = channel. "\132" is 0x84 (fixmap 4) and "\162id" is the fixstr
 * "id"; cmsgpack.pack(id) packs the id as a msgpack str. */
static const char sink_script[] =
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', "
    "'p', ARGV[2])\n"
    "redis.call('PUBLISH', ARGV[3], '\\132' .. string.sub(ARGV[2], 2) .. "
    "'\\162id' .. cmsgpack.pack(id))\n"
    "return id\n";

struct inv_sink_s {
  inv_cluster_t *cluster;
  char sha[41];
  char maxlen[24];
  inv_sink_stats_t stats;
};

/* One send in progress. */
typedef struct sink_call_s {
  inv_sink_t *sink;
  const char *payload;
  size_t len;
  int tried_eval;
  inv_sink_done_cb cb;
  void *data;
} sink_call_t;

int inv_sink_create(inv_cluster_t *cluster, long long max_log_len,
                    inv_sink_t **out) {
  inv_sink_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return INV_ENOMEM;
  s->cluster = cluster;
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)sink_script, strlen(sink_script), md);
  for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
    snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
  snprintf(s->maxlen, sizeof(s->maxlen), "%lld", max_log_len);
  *out = s;
  return 0;
}

static void sink_reply_cb(inv_cluster_t *c, redisReply *reply, int err,
                          void *data);

/* Issues EVALSHA (or EVAL once the node said NOSCRIPT). Returns 0 or the
 * cluster client's error. */
static int sink_issue(sink_call_t *call) {
  inv_sink_t *s = call->sink;
  const char *argv[7];
  size_t argvlen[7];
  if (call->tried_eval) {
    argv[0] = "EVAL";
    argv[1] = sink_script;
  } else {
    argv[0] = "EVALSHA";
    argv[1] = s->sha;
  }
  argv[2] = "1";
  argv[3] = INV_LOG_KEY;
  argv[4] = s->maxlen;
  argv[5] = call->payload;
  argv[6] = INV_CHANNEL;
  for (int i = 0; i < 7; i++) argvlen[i] = strlen(argv[i]);
  argvlen[5] = call->len;
  return inv_cluster_command_argv(s->cluster, INV_LOG_KEY,
                                  sizeof(INV_LOG_KEY) - 1, 7, argv, argvlen,
                                  sink_reply_cb, call);
}

int inv_sink_send(inv_sink_t *s, const char *payload, size_t len,
                  inv_sink_done_cb cb, void *data) {
  if (len < 1 || (unsigned char)payload[0] != 0x83) return INV_EINVAL;
  sink_call_t *call = calloc(1, sizeof(*call));
  if (call == NULL) return INV_ENOMEM;
  call->sink = s;
  call->payload = payload;
  call->len = len;
  call->cb = cb;
  call->data = data;
  int rc = sink_issue(call);
  if (rc < 0) free(call);
  return rc;
}

/* Finishes call with its outcome and frees it. */
static void sink_finish(sink_call_t *call, int err, const char *id,
                        size_t idlen, const char *msg) {
  call->cb(call->data, err, id, idlen, msg);
  free(call);
}

static void sink_reply_cb(inv_cluster_t *c, redisReply *reply, int err,
                          void *data) {
  (void)c;
  sink_call_t *call = data;
  char msg[160];
  if (err < 0 || reply == NULL) {
    snprintf(msg, sizeof(msg), "Redis did not confirm the batch: %s",
             inv_strerror(err < 0 ? err : INV_EIO));
    sink_finish(call, INV_EUNAVAIL, NULL, 0, msg);
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    if (!call->tried_eval && reply->len >= 8 &&
        memcmp(reply->str, "NOSCRIPT", 8) == 0) {
      call->tried_eval = 1;
      call->sink->stats.script_loads++;
      int rc = sink_issue(call);
      if (rc == 0) return;
      snprintf(msg, sizeof(msg), "cannot resend the script: %s",
               inv_strerror(rc));
      sink_finish(call, INV_EUNAVAIL, NULL, 0, msg);
      return;
    }
    snprintf(msg, sizeof(msg), "Redis refused the batch: %.*s",
             (int)(reply->len > 120 ? 120 : reply->len), reply->str);
    inv_log_warn("sink", "%s", msg);
    sink_finish(call, INV_EREDIS, NULL, 0, msg);
    return;
  }
  if (reply->type != REDIS_REPLY_STRING || reply->len == 0) {
    snprintf(msg, sizeof(msg), "unexpected reply type %d from the script",
             reply->type);
    inv_log_error("sink", "%s", msg);
    sink_finish(call, INV_EREDIS, NULL, 0, msg);
    return;
  }
  sink_finish(call, 0, reply->str, reply->len, NULL);
}

const inv_sink_stats_t *inv_sink_stats(const inv_sink_t *s) {
  return &s->stats;
}

void inv_sink_free(inv_sink_t *s) { free(s); }
