/*
 * The intake's I/O (intake.h): SSUBSCRIBE to a shard's hint channel on the
 * worker's own node; XREADGROUP of the shard's stream, XACK of finished
 * entries, and XGROUP CREATE when a stream has lost its group, through the
 * cluster client, routed by the stream key: in the normal case that is the
 * own node (the worker consumes the shards whose stream its node holds),
 * and while the stream's slot migrates the client follows ASK to wherever
 * the stream is. Replies are reported to the intake as facts; this file
 * never decides what to read. The gap check it starts after a shard's
 * pending entries is worker_gap.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/log.h"
#include "workers/worker_int.h"

/* One request of the reader: the shard it is for and the shard's
 * generation when it was sent. */
typedef struct req_s {
  inv_worker_t *w;
  unsigned shard;
  uint64_t gen;
  int pending; /* a read of the pending entries */
} req_t;

static req_t *new_req(inv_worker_t *w, unsigned shard, uint64_t gen) {
  req_t *q = malloc(sizeof(*q));
  if (q == NULL) return NULL;
  q->w = w;
  q->shard = shard;
  q->gen = gen;
  q->pending = 0;
  return q;
}

static int starts(const redisReply *r, const char *prefix) {
  size_t n = strlen(prefix);
  return r->type == REDIS_REPLY_ERROR && r->len >= n &&
         memcmp(r->str, prefix, n) == 0;
}

/* ---- hints ------------------------------------------------------------ */

static void ssubscribe_cb(inv_redis_t *r, redisReply *reply, int err,
                          void *data) {
  req_t *q = data;
  inv_worker_t *w = q->w;
  (void)r;
  unsigned shard = q->shard;
  free(q);
  if (w->closing) return;
  if (err < 0 || reply->type == REDIS_REPLY_ERROR) {
    char ch[INV_LOG_NAME_MAX];
    inv_log_shard_channel(shard, ch);
    inv_log_warn(w->ctx,
                 "SSUBSCRIBE %s failed: %s (the shard is read every "
                 "tick instead)",
                 ch, err < 0 ? inv_strerror(err) : reply->str);
    if (err == 0 && (starts(reply, "MOVED") || starts(reply, "ASK")))
      inv__worker_refresh_map(w);
    inv_intake_subscribed(w->intake, shard, 0);
    return;
  }
  inv_intake_subscribed(w->intake, shard, 1);
}

static int op_subscribe(void *ctx, unsigned shard) {
  inv_worker_t *w = ctx;
  char ch[INV_LOG_NAME_MAX];
  size_t n = inv_log_shard_channel(shard, ch);
  const char *argv[2] = {"SSUBSCRIBE", ch};
  size_t lens[2] = {10, n};
  if (!inv_redis_is_connected(w->hints)) return INV_ECLOSED;
  req_t *q = new_req(w, shard, 0);
  if (q == NULL) return INV_ENOMEM;
  int rc = inv_redis_command_argv(w->hints, 2, argv, lens, ssubscribe_cb, q);
  if (rc != 0) free(q);
  return rc;
}

void inv__worker_hints_event(inv_redis_t *r, inv_redis_event_t ev, void *data) {
  inv_worker_t *w = data;
  (void)r;
  if (w->closing) return;
  w->st.subscribed = ev == INV_REDIS_CONNECTED;
  if (ev == INV_REDIS_CONNECTED)
    inv_intake_hints_up(w->intake);
  else
    inv_intake_hints_down(w->intake);
}

void inv__worker_hints_push(inv_redis_t *r, redisReply *msg, void *data) {
  inv_worker_t *w = data;
  (void)r;
  if (w->closing || msg->type != REDIS_REPLY_ARRAY || msg->elements != 3 ||
      msg->element[0]->type != REDIS_REPLY_STRING ||
      msg->element[1]->type != REDIS_REPLY_STRING)
    return;
  int shard =
      inv_log_shard_from_name(msg->element[1]->str, msg->element[1]->len);
  if (shard < 0) return;
  if (strcmp(msg->element[0]->str, "smessage") == 0) {
    /* Only that the shard has something new: the message's content is
     * never used (anyone who can reach Redis can send one). */
    w->st.hints++;
    inv_intake_hint(w->intake, (unsigned)shard);
  } else if (strcmp(msg->element[0]->str, "sunsubscribe") == 0) {
    /* The channel's slot left the node: find where we stand now. */
    inv_intake_subscribed(w->intake, (unsigned)shard, 0);
    inv__worker_refresh_map(w);
  }
}

/* ---- reads ------------------------------------------------------------ */

/* Applies one entry [id, [field, value, ...] or nil] of a read. Returns
 * the entry's id in *id; 1 when it was taken, 0 when not (a stale read).*/
static int take_entry(inv_worker_t *w, req_t *q, const redisReply *e,
                      inv_sid_t *id) {
  char err[256], idtext[INV_SID_STRLEN];
  uint64_t tag;
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
      e->element[0]->type != REDIS_REPLY_STRING ||
      inv_sid_parse(e->element[0]->str, e->element[0]->len, id) != 0) {
    w->st.decode_errors++;
    return 0;
  }
  if (inv_intake_open(w->intake, q->shard, q->gen, *id, &tag) != 0) return 0;
  const redisReply *f = e->element[1];
  if (f->type != REDIS_REPLY_ARRAY) {
    /* A pending entry that the stream's trimming removed before it was
     * applied: its events are lost. Said loudly; acknowledged, since
     * nothing can apply it any more. */
    w->st.gaps++;
    inv_log_error(w->ctx,
                  "GAP: log entry %s of shard %u was trimmed before "
                  "it was applied; its invalidations are lost (raise "
                  "max-log-len, or keep workers running)",
                  inv_sid_format(*id, idtext), q->shard);
    inv_intake_op_done(w->intake, tag);
    return 1;
  }
  const redisReply *p = NULL;
  for (size_t i = 0; i + 1 < f->elements; i += 2)
    if (f->element[i]->type == REDIS_REPLY_STRING && f->element[i]->len == 1 &&
        f->element[i]->str[0] == 'p' &&
        f->element[i + 1]->type == REDIS_REPLY_STRING)
      p = f->element[i + 1];
  inv_payload_t payload;
  memset(&payload, 0, sizeof(payload));
  int rc = p == NULL
               ? INV_EPROTO
               : inv_payload_decode(p->str, p->len, &payload, err, sizeof(err));
  if (p == NULL) snprintf(err, sizeof(err), "no field p");
  if (rc != 0) {
    /* The decoder may hold memory after a failure too. */
    inv_payload_destroy(&payload);
    /* Never applied, never retried: the entry would block its shard. */
    w->st.decode_errors++;
    inv_log_error(w->ctx,
                  "log entry %s of shard %u cannot be read: %s; it "
                  "is acknowledged without being applied",
                  inv_sid_format(*id, idtext), q->shard, err);
    inv_intake_op_done(w->intake, tag);
    return 1;
  }
  inv__worker_apply(w, tag, &payload);
  inv_payload_destroy(&payload);
  return 1;
}

static void group_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  req_t *q = data;
  inv_worker_t *w = q->w;
  (void)c;
  inv_read_outcome_t out = INV_READ_FAILED;
  if (err == 0 && reply->type != REDIS_REPLY_ERROR) {
    char key[INV_LOG_NAME_MAX];
    inv_log_shard_key(q->shard, key);
    w->st.groups_created++;
    inv_log_warn(w->ctx,
                 "the stream %s had no consumer group %s: created it "
                 "at 0, so every entry the stream holds is applied (again)",
                 key, INV_LOG_GROUP);
    out = INV_READ_RETRY;
  } else if (err == 0 && starts(reply, "BUSYGROUP")) {
    out = INV_READ_RETRY; /* created meanwhile by the publisher */
  } else if (err == 0 && strstr(reply->str, "requires the key to exist")) {
    out = INV_READ_EMPTY; /* deleted meanwhile */
  }
  if (!w->closing)
    inv_intake_read_done(w->intake, q->shard, q->gen, out, 0,
                         (inv_sid_t){0, 0});
  free(q);
}

/* The stream answered NOGROUP and exists: it lost its group (or another
 * client made it without one). */
static void create_group(inv_worker_t *w, req_t *q) {
  char key[INV_LOG_NAME_MAX];
  size_t n = inv_log_shard_key(q->shard, key);
  const char *argv[5] = {"XGROUP", "CREATE", key, INV_LOG_GROUP, "0"};
  size_t lens[5] = {6, 6, n, sizeof(INV_LOG_GROUP) - 1, 1};
  if (inv_cluster_command_argv(w->cluster, key, n, 5, argv, lens, group_cb,
                               q) != 0) {
    inv_intake_read_done(w->intake, q->shard, q->gen, INV_READ_FAILED, 0,
                         (inv_sid_t){0, 0});
    free(q);
  }
}

static void exists_cb(inv_cluster_t *c, redisReply *reply, int err,
                      void *data) {
  req_t *q = data;
  inv_worker_t *w = q->w;
  (void)c;
  if (w->closing) {
    free(q);
    return;
  }
  if (err == 0 && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
    create_group(w, q);
    return;
  }
  inv_intake_read_done(w->intake, q->shard, q->gen,
                       err == 0 && reply->type == REDIS_REPLY_INTEGER
                           ? INV_READ_EMPTY
                           : INV_READ_FAILED,
                       0, (inv_sid_t){0, 0});
  free(q);
}

/* NOGROUP: the stream does not exist (the usual case: nothing was ever
 * logged in this shard; the publisher makes the stream and its group
 * together) or it lost its group. EXISTS tells the two apart. The NOGROUP
 * reply is expected, so it is counted in empty_reads rather than as a
 * Redis error. */
static void check_exists(inv_worker_t *w, req_t *q) {
  char key[INV_LOG_NAME_MAX];
  size_t n = inv_log_shard_key(q->shard, key);
  const char *argv[2] = {"EXISTS", key};
  size_t lens[2] = {6, n};
  w->st.empty_reads++;
  if (inv_cluster_command_argv(w->cluster, key, n, 2, argv, lens, exists_cb,
                               q) != 0) {
    inv_intake_read_done(w->intake, q->shard, q->gen, INV_READ_FAILED, 0,
                         (inv_sid_t){0, 0});
    free(q);
  }
}

static void read_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  req_t *q = data;
  inv_worker_t *w = q->w;
  (void)c;
  inv_sid_t last = {0, 0}, id;
  size_t n = 0;
  inv_read_outcome_t out = INV_READ_OK;
  if (w->closing) {
    free(q);
    return;
  }
  if (err < 0) {
    out = INV_READ_FAILED;
  } else if (reply->type == REDIS_REPLY_ERROR) {
    if (starts(reply, "NOGROUP")) {
      check_exists(w, q);
      return;
    }
    if (starts(reply, "MOVED") || starts(reply, "ASK")) {
      out = INV_READ_MOVED;
      inv__worker_refresh_map(w);
    } else {
      out = INV_READ_FAILED;
      inv_log_warn(w->ctx, "XREADGROUP on shard %u failed: %s", q->shard,
                   reply->str);
    }
  } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
             reply->element[0]->type == REDIS_REPLY_ARRAY &&
             reply->element[0]->elements == 2 &&
             reply->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
    const redisReply *entries = reply->element[0]->element[1];
    for (size_t i = 0; i < entries->elements; i++) {
      if (take_entry(w, q, entries->element[i], &id)) {
        n++;
        last = id;
      }
    }
  } else if (reply->type != REDIS_REPLY_NIL) {
    w->st.decode_errors++;
    out = INV_READ_FAILED;
  }
  /* The pending entries are read: before the first read of new ones (sent
   * by the intake from read_done, so after these on the same connection),
   * check whether the stream lost entries the group never delivered. */
  if (out == INV_READ_OK && q->pending && n == 0)
    inv__worker_check_gap(w, q->shard);
  inv_intake_read_done(w->intake, q->shard, q->gen, out, n, last);
  free(q);
}

static int op_read(void *ctx, unsigned shard, uint64_t gen, int pending,
                   inv_sid_t after, size_t count) {
  inv_worker_t *w = ctx;
  char key[INV_LOG_NAME_MAX], countbuf[24], from[INV_SID_STRLEN];
  size_t n = inv_log_shard_key(shard, key);
  snprintf(countbuf, sizeof(countbuf), "%zu", count);
  if (pending)
    inv_sid_format(after, from);
  else
    snprintf(from, sizeof(from), ">");
  const char *argv[9] = {"XREADGROUP",     "GROUP", INV_LOG_GROUP,
                         INV_LOG_CONSUMER, "COUNT", countbuf,
                         "STREAMS",        key,     from};
  size_t lens[9];
  for (int i = 0; i < 9; i++) lens[i] = strlen(argv[i]);
  lens[7] = n;
  req_t *q = new_req(w, shard, gen);
  if (q == NULL) return INV_ENOMEM;
  q->pending = pending;
  int rc =
      inv_cluster_command_argv(w->cluster, key, n, 9, argv, lens, read_cb, q);
  if (rc != 0) {
    free(q);
    return rc;
  }
  w->st.log_reads++;
  return 0;
}

/* ---- acknowledgements --------------------------------------------------- */

static void ack_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  inv_worker_t *w = data;
  (void)c;
  if (err == 0 && reply->type == REDIS_REPLY_INTEGER)
    w->st.entries_acked += (uint64_t)reply->integer;
}

static void op_ack(void *ctx, unsigned shard, const inv_sid_t *ids, size_t n) {
  inv_worker_t *w = ctx;
  char key[INV_LOG_NAME_MAX];
  size_t klen = inv_log_shard_key(shard, key);
  /* The ids as text, back to back: XACK key group id... */
  char *text = malloc(n * INV_SID_STRLEN);
  const char **argv = malloc((n + 3) * sizeof(*argv));
  size_t *lens = malloc((n + 3) * sizeof(*lens));
  if (text == NULL || argv == NULL || lens == NULL) {
    /* Not acknowledged: the entries stay pending and are applied again by
     * the shard's next reader, which is harmless. */
    free(text);
    free(argv);
    free(lens);
    return;
  }
  argv[0] = "XACK";
  lens[0] = 4;
  argv[1] = key;
  lens[1] = klen;
  argv[2] = INV_LOG_GROUP;
  lens[2] = sizeof(INV_LOG_GROUP) - 1;
  for (size_t i = 0; i < n; i++) {
    argv[3 + i] = inv_sid_format(ids[i], text + i * INV_SID_STRLEN);
    lens[3 + i] = strlen(argv[3 + i]);
  }
  inv_cluster_command_argv(w->cluster, key, klen, (int)(n + 3), argv, lens,
                           ack_cb, w);
  free(text);
  free(argv);
  free(lens);
}

static int op_backpressured(void *ctx) {
  return inv__worker_backpressured(ctx);
}

void inv__worker_intake_ops(inv_worker_t *w, inv_intake_ops_t *ops) {
  memset(ops, 0, sizeof(*ops));
  ops->ctx = w;
  ops->subscribe = op_subscribe;
  ops->read = op_read;
  ops->ack = op_ack;
  ops->backpressured = op_backpressured;
}
