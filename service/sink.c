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
#include "common/slot.h"
#include "proto/event.h"

/* KEYS[1] = log key; ARGV[1] = MAXLEN, ARGV[2] = log payload (fixmap 3),
 * ARGV[3] = channel. "\132" is 0x84 (fixmap 4) and "\162id" is the fixstr
 * "id"; cmsgpack.pack(id) packs the id as a msgpack str. Returns the new
 * entry's id and the id of the entry before it ("0-0" for none), which the
 * fast-path copies carry as "prev". */
static const char sink_script[] =
    "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', "
    "'p', ARGV[2])\n"
    "redis.call('PUBLISH', ARGV[3], '\\132' .. string.sub(ARGV[2], 2) .. "
    "'\\162id' .. cmsgpack.pack(id))\n"
    "local prev = '0-0'\n"
    "if last[1] then prev = last[1][1] end\n"
    "return {id, prev}\n";

struct inv_sink_s {
  inv_cluster_t *cluster;
  char sha[41];
  char maxlen[24];
  int shard_publish;
  unsigned log_slot; /* the log key's slot: its owner needs no copy */
  int shard_warned;  /* a refused copy was logged; cleared by a success */
  int ack_replicas;  /* configured; -1 = the default */
  inv_sink_stats_t stats;
};

/* One send in progress. */
typedef struct sink_call_s {
  inv_sink_t *sink;
  const char *payload;
  size_t len;
  int tried_eval;
  int replicas; /* WAIT for this many after the script; 0: no WAIT */
  inv_sink_done_cb cb;
  void *data;
} sink_call_t;

int inv_sink_create(inv_cluster_t *cluster, long long max_log_len,
                    int shard_publish, int ack_replicas, inv_sink_t **out) {
  inv_sink_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return INV_ENOMEM;
  s->cluster = cluster;
  s->ack_replicas = ack_replicas < 0 ? -1 : ack_replicas;
  s->shard_publish = shard_publish;
  s->log_slot = inv_key_slot(INV_LOG_KEY, sizeof(INV_LOG_KEY) - 1);
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)sink_script, strlen(sink_script), md);
  for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
    snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
  snprintf(s->maxlen, sizeof(s->maxlen), "%lld", max_log_len);
  *out = s;
  return 0;
}

int inv_sink_ack_replicas(const inv_sink_t *s) {
  if (s->ack_replicas >= 0) return s->ack_replicas;
  /* Unknown (topology not loaded yet) counts as none: the first batches
   * of a fresh publisher are then not held back by a guess. */
  return inv_cluster_replicas(s->cluster, INV_LOG_KEY,
                              sizeof(INV_LOG_KEY) - 1) > 0
             ? 1
             : 0;
}

static void sink_reply_cb(inv_cluster_t *c, redisReply *reply, int err,
                          void *data);

/* Issues EVALSHA (or EVAL once the node said NOSCRIPT), followed by WAIT
 * when the call waits for replicas. WAIT's timeout is filled in by the
 * cluster client at each send: what is left of redis-timeout. Returns 0
 * or the cluster client's error. */
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
  if (call->replicas == 0)
    return inv_cluster_command_argv(s->cluster, INV_LOG_KEY,
                                    sizeof(INV_LOG_KEY) - 1, 7, argv, argvlen,
                                    sink_reply_cb, call);
  char nrep[16];
  snprintf(nrep, sizeof(nrep), "%d", call->replicas);
  const char *wargv[3] = {"WAIT", nrep, "0"};
  size_t wargvlen[3] = {4, strlen(nrep), 1};
  return inv_cluster_pair_argv(s->cluster, INV_LOG_KEY,
                               sizeof(INV_LOG_KEY) - 1, 7, argv, argvlen, 3,
                               wargv, wargvlen, 2, sink_reply_cb, call);
}

int inv_sink_send(inv_sink_t *s, const char *payload, size_t len,
                  inv_sink_done_cb cb, void *data) {
  if (len < 1 || (unsigned char)payload[0] != 0x83) return INV_EINVAL;
  sink_call_t *call = calloc(1, sizeof(*call));
  if (call == NULL) return INV_ENOMEM;
  call->sink = s;
  call->payload = payload;
  call->len = len;
  call->replicas = inv_sink_ack_replicas(s);
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

/* ---- the fast path ----------------------------------------------------- */

/* One fast-path copy being handed to the primaries. */
typedef struct shard_copy_s {
  inv_sink_t *sink;
  const char *data;
  size_t len;
} shard_copy_t;

/* Appends s[0..n) packed as a msgpack str (n < 256) at out; returns the
 * bytes written. */
static size_t pack_short_str(char *out, const char *s, size_t n) {
  size_t head = 1;
  if (n < 32) {
    out[0] = (char)(0xa0 | n);
  } else {
    out[0] = (char)0xd9;
    out[1] = (char)n;
    head = 2;
  }
  memcpy(out + head, s, n);
  return head + n;
}

static void shard_reply_cb(inv_redis_t *r, redisReply *reply, int err,
                           void *data) {
  inv_sink_t *s = data;
  int ask;
  unsigned slot;
  char host[256];
  int port;
  if (err == 0 && reply->type != REDIS_REPLY_ERROR) {
    s->shard_warned = 0;
    return;
  }
  s->stats.shard_failed++;
  if (err < 0) return; /* the connection went: its reconnect is logged */
  if (inv_redis_parse_redirect(reply, &ask, &slot, host, sizeof(host), &port)) {
    /* The primary no longer owns the channel's slot: our map is stale,
     * and the next copies would miss too until it is refreshed. */
    inv_cluster_refresh(s->cluster);
  } else if (!s->shard_warned) {
    /* Refused (NOPERM from an ACL, say): said once until a copy goes
     * through again, since every batch would repeat it. */
    inv_log_warn("sink", "fast-path copy to %s:%d refused: %.*s (entries "
                 "still arrive through the broadcast)", inv_redis_host(r),
                 inv_redis_port(r), (int)(reply->len > 120 ? 120 : reply->len),
                 reply->str);
    s->shard_warned = 1;
  }
}

static void shard_send_one(inv_redis_t *conn, unsigned first_slot,
                           void *data) {
  shard_copy_t *copy = data;
  char channel[INV_SHARD_CHANNEL_MAX];
  inv_shard_channel(first_slot, channel);
  const char *argv[3] = {"SPUBLISH", channel, copy->data};
  size_t argvlen[3] = {8, strlen(channel), copy->len};
  if (inv_redis_command_argv(conn, 3, argv, argvlen, shard_reply_cb,
                             copy->sink) == 0)
    copy->sink->stats.shard_sent++;
  else
    copy->sink->stats.shard_skipped++;
}

/* Sends the published map of a confirmed entry, plus "prev", to the other
 * primaries' shard channels: the log payload's fixmap 3 becomes a fixmap
 * of 5 with "id" and "prev" appended. */
static void shard_publish(inv_sink_t *s, const char *payload, size_t len,
                          const redisReply *id, const redisReply *prev) {
  if (!s->shard_publish || !inv_cluster_is_cluster(s->cluster) ||
      id->len >= 256 || prev->len >= 256)
    return;
  char *buf = malloc(len + id->len + prev->len + 16);
  if (buf == NULL) {
    s->stats.shard_skipped++;
    return;
  }
  size_t n = 0;
  buf[n++] = (char)0x85;
  memcpy(buf + n, payload + 1, len - 1);
  n += len - 1;
  n += pack_short_str(buf + n, "id", 2);
  n += pack_short_str(buf + n, id->str, id->len);
  n += pack_short_str(buf + n, "prev", 4);
  n += pack_short_str(buf + n, prev->str, prev->len);
  shard_copy_t copy = {s, buf, n};
  s->stats.shard_skipped +=
      inv_cluster_each_primary(s->cluster, s->log_slot, shard_send_one, &copy);
  free(buf);
}

/* Checks WAIT's answer to a pair. Returns 0 when at least call->replicas
 * replicas confirmed, else -1 with msg set (and wait_failed counted). */
static int sink_check_wait(sink_call_t *call, const redisReply *wait_reply,
                           char *msg, size_t msglen) {
  char node[320];
  if (wait_reply->type == REDIS_REPLY_INTEGER && wait_reply->integer >= call->replicas)
    return 0;
  call->sink->stats.wait_failed++;
  inv_sink_describe(call->sink, node, sizeof(node));
  if (wait_reply->type == REDIS_REPLY_INTEGER)
    snprintf(msg, msglen,
             "the batch is logged but not replicated in time: %lld of %d "
             "replicas confirmed (%s)", wait_reply->integer, call->replicas, node);
  else
    snprintf(msg, msglen, "WAIT failed: %.*s (%s)",
             (int)(wait_reply->len > 120 ? 120 : wait_reply->len),
             wait_reply->str != NULL ? wait_reply->str : "", node);
  return -1;
}

static void sink_reply_cb(inv_cluster_t *c, redisReply *reply, int err,
                          void *data) {
  (void)c;
  sink_call_t *call = data;
  char msg[480], node[320];
  const redisReply *wait_reply = NULL;
  if (call->replicas > 0 && err == 0 && reply != NULL) {
    /* A pair: the script's reply, then WAIT's. */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
      sink_finish(call, INV_EREDIS, NULL, 0, "unexpected reply to WAIT");
      return;
    }
    wait_reply = reply->element[1];
    reply = reply->element[0];
  }
  if (err < 0 || reply == NULL) {
    inv_sink_describe(call->sink, node, sizeof(node));
    snprintf(msg, sizeof(msg), "Redis did not confirm the batch: %s (%s)",
             inv_strerror(err < 0 ? err : INV_EIO), node);
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
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
      reply->element[0]->type != REDIS_REPLY_STRING ||
      reply->element[0]->len == 0 ||
      reply->element[1]->type != REDIS_REPLY_STRING) {
    snprintf(msg, sizeof(msg), "unexpected reply (type %d) from the script",
             reply->type);
    inv_log_error("sink", "%s", msg);
    sink_finish(call, INV_EREDIS, NULL, 0, msg);
    return;
  }
  if (wait_reply != NULL && sink_check_wait(call, wait_reply, msg, sizeof(msg)) != 0) {
    /* No fast-path copy either: workers will find the entry in the log,
     * as they would any entry whose copy was lost. */
    sink_finish(call, INV_EUNAVAIL, NULL, 0, msg);
    return;
  }
  shard_publish(call->sink, call->payload, call->len, reply->element[0],
                reply->element[1]);
  sink_finish(call, 0, reply->element[0]->str, reply->element[0]->len, NULL);
}

const inv_sink_stats_t *inv_sink_stats(const inv_sink_t *s) {
  return &s->stats;
}

void inv_sink_free(inv_sink_t *s) { free(s); }

void inv_sink_describe(const inv_sink_t *s, char *out, size_t outlen) {
  char node[300];
  inv_cluster_describe_owner(s->cluster, INV_LOG_KEY, sizeof(INV_LOG_KEY) - 1,
                             node, sizeof(node));
  snprintf(out, outlen, "the log's node %s", node);
}
