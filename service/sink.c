/*
 * The Redis sink. A batch is split by shard into one log entry per shard it
 * touches; each entry is written by one call of proto/scripts/log_append.lua,
 * which creates the stream's consumer group before the first entry, appends
 * the entry and publishes its id as a hint on the shard's channel,
 * atomically on the node that owns the shard.
 */
#include "service/sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/latency.h"
#include "common/base/log.h"
#include "common/base/slot.h"
#include "proto/event.h"
#include "proto/scripts.h"
#include "proto/stream_id.h"

/* Route masks have one bit per shard. */
_Static_assert(INV_LOG_SHARDS == 64, "a uint64_t mask holds every shard");

/* A payload head: fixmap, "v": 2, "ts": uint64, "events": array header. */
#define SINK_HEAD_MAX 32

struct inv_sink_s {
  inv_cluster_t *cluster;
  char maxlen[24];
  int ack_replicas;             /* configured; -1 = the default */
  uint64_t broadcast_logged_us; /* last broadcast failure logged */
  uint64_t broadcast_unlogged;  /* failures since then */
  inv_sink_stats_t stats;
};

/* One shard entry of a batch being written.
 *
 * Replicated acks wait once per node, not once per entry: WAIT blocks its
 * connection until the replicas caught up, so one WAIT per entry would
 * serialize a batch's entries on each node. The writes of a batch that go
 * to one node (as the cluster client's map says when the batch is sent)
 * form a group; its last write (the lead) is sent paired with WAIT, the
 * others plainly before it on the same connection, so the lead's WAIT
 * covers them all. A member succeeds with its lead. A member whose script
 * was resent (a redirect, a retry) or answered after its lead ran on
 * another connection or after that WAIT: it confirms with a WAIT of its
 * own (PING + WAIT, on the connection the key is routed to). */
typedef struct sink_write_s {
  inv_sink_call_t *call;
  int done;
  unsigned shard;
  int tried_eval;
  int replicas;   /* replicas to wait for; 0: no WAIT */
  int paired;     /* the next send carries WAIT (the lead, or confirming) */
  int confirming; /* the pair is PING + WAIT after the script succeeded */
  int lead;       /* index of the group's lead in call->writes */
  int script_ok;  /* a member's script succeeded; waiting for its lead */
  int lead_err;   /* the lead's outcome once known: 0 ok, else the error */
  int lead_known;
  char lead_msg[160];
  size_t off, len; /* the payload in call->buf */
  char key[INV_LOG_NAME_MAX];
  char channel[INV_LOG_NAME_MAX];
  char id[INV_SID_STRLEN];
  size_t idlen;
} sink_write_t;

/* One batch in progress. It lives until its last write answered, even when
 * the batch was answered (failed) before that. */
struct inv_sink_call_s {
  inv_sink_t *sink;
  inv_sink_done_cb cb; /* NULL once the batch was answered */
  void *data;
  char *buf; /* the entries' payloads, then the broadcast's head
                and events at bcast_off */
  size_t bcast_off, bcast_len;
  size_t nwrites, outstanding;
  int failed;            /* a write failed: no broadcast */
  sink_write_t writes[]; /* ascending shard order */
};

int inv_sink_create(inv_cluster_t *cluster, long long max_log_len,
                    int ack_replicas, inv_sink_t **out) {
  inv_sink_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return INV_ENOMEM;
  s->cluster = cluster;
  s->ack_replicas = ack_replicas < 0 ? -1 : ack_replicas;
  snprintf(s->maxlen, sizeof(s->maxlen), "%lld", max_log_len);
  *out = s;
  return 0;
}

int inv_sink_ready(const inv_sink_t *s) {
  return inv_cluster_ready(s->cluster);
}

uint64_t inv_sink_route_mask(const inv_sink_t *s, int shard) {
  if (!inv_cluster_is_cluster(s->cluster)) return 1;
  return shard < 0 ? UINT64_MAX : (uint64_t)1 << shard;
}

int inv_sink_ack_replicas(const inv_sink_t *s, unsigned shard) {
  if (s->ack_replicas >= 0) return s->ack_replicas;
  char key[INV_LOG_NAME_MAX];
  size_t n = inv_log_shard_key(shard, key);
  /* Unknown (topology not loaded yet) counts as none: the first batches
   * of a fresh publisher are then not held back by a guess. */
  return inv_cluster_replicas(s->cluster, key, n) > 0 ? 1 : 0;
}

/* Writes a payload head for nevents events at out; returns its length
 * (at most SINK_HEAD_MAX). map_size is 3 for an entry, 4 for the
 * broadcast (whose "ids" follow the events). */
static size_t pack_head(char *out, unsigned map_size, uint64_t ts_ms,
                        size_t nevents) {
  unsigned char *u = (unsigned char *)out;
  size_t n = 0;
  u[n++] = (unsigned char)(0x80 | map_size);
  memcpy(u + n, "\xa1v\x02", 3); /* "v": INV_PAYLOAD_VERSION */
  n += 3;
  memcpy(u + n, "\xa2ts\xcf", 4);
  n += 4;
  for (int i = 7; i >= 0; i--) u[n++] = (unsigned char)(ts_ms >> (8 * i));
  memcpy(u + n,
         "\xa6"
         "events",
         7);
  n += 7;
  if (nevents < 16) {
    u[n++] = (unsigned char)(0x90 | nevents);
  } else if (nevents < 65536) {
    u[n++] = 0xdc;
    u[n++] = (unsigned char)(nevents >> 8);
    u[n++] = (unsigned char)nevents;
  } else {
    u[n++] = 0xdd;
    for (int i = 3; i >= 0; i--) u[n++] = (unsigned char)(nevents >> (8 * i));
  }
  return n;
}

static void sink_reply_cb(inv_cluster_t *c, redisReply *reply, int err,
                          void *data);

/* Groups the writes of call that wait for replicas by node: the last
 * write to each node leads its group and carries the WAIT. */
static void sink_group(inv_sink_call_t *call) {
  const void *node[INV_LOG_SHARDS];
  for (size_t i = 0; i < call->nwrites; i++) {
    sink_write_t *w = &call->writes[i];
    w->lead = (int)i;
    node[i] = inv_cluster_node_of(call->sink->cluster, w->key, strlen(w->key));
  }
  for (size_t i = call->nwrites; i-- > 0;) {
    sink_write_t *w = &call->writes[i];
    if (w->replicas == 0) continue;
    w->paired = 1; /* unless a later write to its node leads */
    for (size_t j = i + 1; j < call->nwrites; j++)
      if (node[j] != NULL && node[j] == node[i] &&
          call->writes[j].replicas > 0) {
        w->paired = 0;
        w->lead = call->writes[j].lead;
        break;
      }
  }
}

/* Issues w's EVALSHA (or EVAL once its node said NOSCRIPT), followed by
 * WAIT when it waits for replicas. WAIT's timeout is filled in by the
 * cluster client at each send: what is left of redis-timeout. Returns 0
 * or the cluster client's error. */
static int sink_issue(sink_write_t *w) {
  inv_sink_t *s = w->call->sink;
  const char *argv[7];
  size_t argvlen[7];
  char nrep[16];
  snprintf(nrep, sizeof(nrep), "%d", w->replicas);
  const char *wargv[3] = {"WAIT", nrep, "0"};
  size_t wargvlen[3] = {4, strlen(nrep), 1};
  if (w->confirming) {
    const char *pargv[1] = {"PING"};
    size_t pargvlen[1] = {4};
    return inv_cluster_pair_argv(s->cluster, w->key, strlen(w->key), 1, pargv,
                                 pargvlen, 3, wargv, wargvlen, 2, sink_reply_cb,
                                 w);
  }
  argv[0] = w->tried_eval ? "EVAL" : "EVALSHA";
  argv[1] =
      w->tried_eval ? inv_script_log_append.src : inv_script_log_append.sha;
  argv[2] = "1";
  argv[3] = w->key;
  argv[4] = s->maxlen;
  argv[5] = w->call->buf + w->off;
  argv[6] = w->channel;
  for (int i = 0; i < 7; i++)
    if (i != 5) argvlen[i] = strlen(argv[i]);
  argvlen[5] = w->len;
  s->stats.shard_writes++;
  if (!w->paired)
    return inv_cluster_command_argv(s->cluster, w->key, argvlen[3], 7, argv,
                                    argvlen, sink_reply_cb, w);
  return inv_cluster_pair_argv(s->cluster, w->key, argvlen[3], 7, argv, argvlen,
                               3, wargv, wargvlen, 2, sink_reply_cb, w);
}

/* Routes every event: fills per-shard event counts and bytes. Returns 0,
 * or INV_EINVAL for an event outside the buffer. */
static int sink_route(const inv_sink_event_t *ev, size_t nevents,
                      size_t events_len, int standalone,
                      size_t count[INV_LOG_SHARDS],
                      size_t bytes[INV_LOG_SHARDS]) {
  for (size_t i = 0; i < nevents; i++) {
    if (ev[i].off > events_len || ev[i].len > events_len - ev[i].off ||
        ev[i].shard >= INV_LOG_SHARDS)
      return INV_EINVAL;
    int shard = standalone ? 0 : ev[i].shard;
    unsigned lo = shard < 0 ? 0 : (unsigned)shard;
    unsigned hi = shard < 0 ? INV_LOG_SHARDS : lo + 1;
    for (unsigned k = lo; k < hi; k++) {
      count[k]++;
      bytes[k] += ev[i].len;
    }
  }
  return 0;
}

int inv_sink_send(inv_sink_t *s, const char *events, size_t events_len,
                  const inv_sink_event_t *ev, size_t nevents, uint64_t ts_ms,
                  inv_sink_done_cb cb, void *data, inv_sink_call_t **out) {
  size_t count[INV_LOG_SHARDS] = {0}, bytes[INV_LOG_SHARDS] = {0};
  size_t nwrites = 0, total = SINK_HEAD_MAX + events_len;
  int standalone = !inv_cluster_is_cluster(s->cluster);
  if (nevents == 0) return INV_EINVAL;
  int rc = sink_route(ev, nevents, events_len, standalone, count, bytes);
  if (rc < 0) return rc;
  for (unsigned k = 0; k < INV_LOG_SHARDS; k++)
    if (count[k] > 0) {
      nwrites++;
      total += SINK_HEAD_MAX + bytes[k];
    }
  inv_sink_call_t *call =
      calloc(1, sizeof(*call) + nwrites * sizeof(sink_write_t));
  if (call != NULL) call->buf = malloc(total);
  if (call == NULL || call->buf == NULL) {
    if (call != NULL) free(call);
    return INV_ENOMEM;
  }
  call->sink = s;
  call->cb = cb;
  call->data = data;
  call->nwrites = nwrites;
  /* Lay out each entry's payload: its head, then its events appended in
   * batch order below. */
  size_t at = 0, fill[INV_LOG_SHARDS];
  for (unsigned k = 0, w = 0; k < INV_LOG_SHARDS; k++) {
    if (count[k] == 0) continue;
    sink_write_t *wr = &call->writes[w++];
    wr->call = call;
    wr->shard = k;
    wr->off = at;
    at += pack_head(call->buf + at, 3, ts_ms, count[k]);
    fill[k] = at;
    at += bytes[k];
    wr->len = at - wr->off;
    inv_log_shard_key(k, wr->key);
    inv_log_shard_channel(k, wr->channel);
    wr->replicas = inv_sink_ack_replicas(s, k);
  }
  sink_group(call);
  for (size_t i = 0; i < nevents; i++) {
    int shard = standalone ? 0 : ev[i].shard;
    unsigned lo = shard < 0 ? 0 : (unsigned)shard;
    unsigned hi = shard < 0 ? INV_LOG_SHARDS : lo + 1;
    for (unsigned k = lo; k < hi; k++) {
      memcpy(call->buf + fill[k], events + ev[i].off, ev[i].len);
      fill[k] += ev[i].len;
    }
  }
  /* The broadcast's head and every event; its "ids" are added once known. */
  call->bcast_off = at;
  at += pack_head(call->buf + at, 4, ts_ms, nevents);
  memcpy(call->buf + at, events, events_len);
  call->bcast_len = at + events_len - call->bcast_off;

  /* Every write goes out now, so that the cluster client pipelines them
   * per node in this loop iteration. A write the client refuses fails the
   * batch; those already issued are answered later and free the call. */
  for (size_t w = 0; w < nwrites; w++) {
    call->outstanding++;
    rc = sink_issue(&call->writes[w]);
    if (rc < 0) {
      /* The writes already issued may still land (delivery is at least
       * once); their answers free the call. */
      call->cb = NULL;
      if (--call->outstanding == 0) {
        free(call->buf);
        free(call);
      }
      return rc;
    }
  }
  s->stats.log_entries += nwrites;
  *out = call;
  return 0;
}

/* Appends the ids ([[shard, id], ...]) to the broadcast of call and sends
 * it with PUBLISH, not awaited. */
static void sink_broadcast_cb(inv_cluster_t *c, redisReply *reply, int err,
                              void *data);

static void sink_broadcast(inv_sink_call_t *call) {
  inv_sink_t *s = call->sink;
  size_t n = call->bcast_len;
  char *b = malloc(n + 4 + 3 + call->nwrites * (3 + 2 + INV_SID_STRLEN));
  if (b == NULL) {
    sink_broadcast_cb(s->cluster, NULL, INV_ENOMEM, s);
    return;
  }
  memcpy(b, call->buf + call->bcast_off, n);
  unsigned char *u = (unsigned char *)b;
  memcpy(b + n,
         "\xa3"
         "ids",
         4);
  n += 4;
  if (call->nwrites < 16) {
    u[n++] = (unsigned char)(0x90 | call->nwrites);
  } else {
    u[n++] = 0xdc;
    u[n++] = (unsigned char)(call->nwrites >> 8);
    u[n++] = (unsigned char)call->nwrites;
  }
  for (size_t i = 0; i < call->nwrites; i++) {
    const sink_write_t *w = &call->writes[i];
    u[n++] = 0x92;
    u[n++] = (unsigned char)w->shard; /* positive fixint: below 128 */
    if (w->idlen < 32) {
      u[n++] = (unsigned char)(0xa0 | w->idlen);
    } else {
      u[n++] = 0xd9;
      u[n++] = (unsigned char)w->idlen;
    }
    memcpy(b + n, w->id, w->idlen);
    n += w->idlen;
  }
  const char *argv[3] = {"PUBLISH", INV_CHANNEL, b};
  size_t argvlen[3] = {7, sizeof(INV_CHANNEL) - 1, n};
  int rc = inv_cluster_command_argv(s->cluster, NULL, 0, 3, argv, argvlen,
                                    sink_broadcast_cb, s);
  free(b); /* the cluster client copied argv */
  if (rc < 0) sink_broadcast_cb(s->cluster, NULL, rc, s);
}

static void sink_broadcast_cb(inv_cluster_t *c, redisReply *reply, int err,
                              void *data) {
  (void)c;
  inv_sink_t *s = data;
  if (err == 0 && reply != NULL && reply->type != REDIS_REPLY_ERROR) return;
  s->stats.broadcast_failed++;
  /* Every batch would say the same while Redis refuses (an ACL) or is
   * away: one line per 10 s, with the count of those not logged. */
  uint64_t now = inv_now_us();
  if (s->broadcast_logged_us != 0 && now - s->broadcast_logged_us < 10000000) {
    s->broadcast_unlogged++;
    return;
  }
  char why[160];
  if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
    snprintf(why, sizeof(why), "%.*s",
             (int)(reply->len > 120 ? 120 : reply->len), reply->str);
  else
    snprintf(why, sizeof(why), "%s", inv_strerror(err < 0 ? err : INV_EIO));
  inv_log_warn("sink",
               "broadcast on " INV_CHANNEL
               " failed: %s (%llu more "
               "since the last report; the log entries are written)",
               why, (unsigned long long)s->broadcast_unlogged);
  s->broadcast_logged_us = now;
  s->broadcast_unlogged = 0;
}

/* Ends write w: err is 0 when its entry (and WAIT) succeeded. Reports it,
 * broadcasts the batch after its last successful write, and frees the call
 * after its last write. */
static void sink_write_done(sink_write_t *w, int err, const char *msg);

/* The lead of a group has its outcome: members whose script succeeded
 * share it; members not answered yet take it when they are. */
static void sink_confirm(sink_write_t *w);

static void sink_lead_done(sink_write_t *lead, int covers, int err,
                           const char *msg) {
  inv_sink_call_t *call = lead->call;
  int self = (int)(lead - call->writes);
  lead->lead_known = 1;
  lead->lead_err = err;
  snprintf(lead->lead_msg, sizeof(lead->lead_msg), "%s", msg ? msg : "");
  /* Members first: the call may be freed by the last done. The lead
   * itself is still outstanding, so no member's end frees it. */
  for (size_t i = 0; i < call->nwrites; i++) {
    sink_write_t *m = &call->writes[i];
    if (m == lead || m->lead != self || !m->script_ok || m->done) continue;
    m->script_ok = 0;
    if (covers)
      sink_write_done(m, err, err ? lead->lead_msg : NULL);
    else
      sink_confirm(m);
  }
  sink_write_done(lead, err, msg);
}

static void sink_write_done(sink_write_t *w, int err, const char *msg) {
  inv_sink_call_t *call = w->call;
  w->done = 1;
  if (err != 0) call->failed = 1;
  int last = --call->outstanding == 0;
  if (last && !call->failed && call->cb != NULL) sink_broadcast(call);
  if (call->cb != NULL)
    call->cb(call->data, w->shard, err, err == 0 ? w->id : NULL,
             err == 0 ? w->idlen : 0, msg, last);
  if (!last) return;
  free(call->buf);
  free(call);
}

/* Checks WAIT's answer to a pair. Returns 0 when at least w->replicas
 * replicas confirmed, else -1 with msg set (and wait_failed counted). */
static int sink_check_wait(sink_write_t *w, const redisReply *wait_reply,
                           char *msg, size_t msglen) {
  char node[320];
  if (wait_reply->type == REDIS_REPLY_INTEGER &&
      wait_reply->integer >= w->replicas)
    return 0;
  w->call->sink->stats.wait_failed++;
  inv_sink_describe(w->call->sink, w->shard, node, sizeof(node));
  if (wait_reply->type == REDIS_REPLY_INTEGER)
    snprintf(msg, msglen,
             "the batch is logged but not replicated in time: %lld of %d "
             "replicas confirmed (%s)",
             wait_reply->integer, w->replicas, node);
  else
    snprintf(msg, msglen, "WAIT failed: %.*s (%s)",
             (int)(wait_reply->len > 120 ? 120 : wait_reply->len),
             wait_reply->str != NULL ? wait_reply->str : "", node);
  return -1;
}

/* Sends a member's own PING + WAIT once its script succeeded. */
static void sink_confirm(sink_write_t *w) {
  char msg[160];
  w->paired = 1;
  w->confirming = 1;
  w->call->sink->stats.wait_confirms++;
  int rc = sink_issue(w);
  if (rc == 0) return;
  snprintf(msg, sizeof(msg), "cannot send WAIT: %s", inv_strerror(rc));
  sink_write_done(w, INV_EUNAVAIL, msg);
}

/* Ends w with err: a lead with its members, anything else alone. */
static void sink_end(sink_write_t *w, int is_lead, int covers, int err,
                     const char *msg) {
  if (is_lead)
    sink_lead_done(w, covers, err, msg);
  else
    sink_write_done(w, err, msg);
}

static void sink_reply_cb(inv_cluster_t *c, redisReply *reply, int err,
                          void *data) {
  sink_write_t *w = data;
  inv_sink_t *s = w->call->sink;
  char msg[480], node[320];
  const redisReply *wait_reply = NULL;
  int is_lead =
      w->paired && !w->confirming && w->lead == (int)(w - w->call->writes);
  /* A lead whose pair was resent had its WAIT run on another connection
   * than its members' scripts: they confirm on their own. */
  int covers = !inv_cluster_answer_resent(c);
  if (w->paired && err == 0 && reply != NULL) {
    /* A pair: the script's (or PING's) reply, then WAIT's. */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
      sink_end(w, is_lead, covers, INV_EREDIS, "unexpected reply to WAIT");
      return;
    }
    wait_reply = reply->element[1];
    reply = reply->element[0];
  }
  if (err < 0 || reply == NULL) {
    inv_sink_describe(s, w->shard, node, sizeof(node));
    snprintf(msg, sizeof(msg), "Redis did not confirm the batch: %s (%s)",
             inv_strerror(err < 0 ? err : INV_EIO), node);
    sink_end(w, is_lead, covers, INV_EUNAVAIL, msg);
    return;
  }
  if (w->confirming) {
    if (sink_check_wait(w, wait_reply, msg, sizeof(msg)) != 0)
      sink_write_done(w, INV_EUNAVAIL, msg);
    else
      sink_write_done(w, 0, NULL);
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    if (!w->tried_eval && reply->len >= 8 &&
        memcmp(reply->str, "NOSCRIPT", 8) == 0) {
      w->tried_eval = 1;
      s->stats.script_loads++;
      int rc = sink_issue(w);
      if (rc == 0) return;
      snprintf(msg, sizeof(msg), "cannot resend the script: %s",
               inv_strerror(rc));
      sink_end(w, is_lead, covers, INV_EUNAVAIL, msg);
      return;
    }
    inv_sink_describe(s, w->shard, node, sizeof(node));
    snprintf(msg, sizeof(msg), "Redis refused the batch: %.*s (%s)",
             (int)(reply->len > 120 ? 120 : reply->len), reply->str, node);
    inv_log_warn("sink", "%s", msg);
    sink_end(w, is_lead, covers, INV_EREDIS, msg);
    return;
  }
  if (reply->type != REDIS_REPLY_STRING || reply->len == 0 ||
      reply->len >= INV_SID_STRLEN) {
    snprintf(msg, sizeof(msg), "unexpected reply (type %d) from the script",
             reply->type);
    inv_log_error("sink", "%s", msg);
    sink_end(w, is_lead, covers, INV_EREDIS, msg);
    return;
  }
  memcpy(w->id, reply->str, reply->len);
  w->idlen = reply->len;
  w->id[w->idlen] = '\0';
  if (wait_reply != NULL) {
    int rc = sink_check_wait(w, wait_reply, msg, sizeof(msg)) != 0
                 ? INV_EUNAVAIL
                 : 0;
    sink_end(w, is_lead, covers, rc, rc ? msg : NULL);
    return;
  }
  if (w->replicas > 0) {
    /* A member: its lead's WAIT covers it if the script ran on the lead's
     * connection before that WAIT, that is, sent once, with the EVALSHA
     * that went out with the batch, and answered before the lead. */
    const sink_write_t *lead = &w->call->writes[w->lead];
    if (!covers || w->tried_eval || lead->lead_known)
      sink_confirm(w);
    else
      w->script_ok = 1;
    return;
  }
  sink_write_done(w, 0, NULL);
}

const inv_sink_stats_t *inv_sink_stats(const inv_sink_t *s) {
  return &s->stats;
}

void inv_sink_free(inv_sink_t *s) { free(s); }

void inv_sink_call_describe(const inv_sink_call_t *call, char *out,
                            size_t outlen) {
  for (size_t i = 0; i < call->nwrites; i++)
    if (!call->writes[i].done) {
      inv_sink_describe(call->sink, call->writes[i].shard, out, outlen);
      return;
    }
  snprintf(out, outlen, "every log shard answered");
}

void inv_sink_call_detach(inv_sink_call_t *call) { call->cb = NULL; }

void inv_sink_describe(const inv_sink_t *s, unsigned shard, char *out,
                       size_t outlen) {
  char key[INV_LOG_NAME_MAX], node[300];
  size_t n = inv_log_shard_key(shard, key);
  inv_cluster_describe_owner(s->cluster, key, n, node, sizeof(node));
  snprintf(out, outlen, "log shard %u on %s", shard, node);
}

/* ---- the batcher's view of this sink (inv_sink_ops_t) ----------------- */

static int ops_ready(const void *s) { return inv_sink_ready(s); }

static uint64_t ops_route_mask(const void *s, int shard) {
  return inv_sink_route_mask(s, shard);
}

static int ops_send(void *s, const char *events, size_t events_len,
                    const inv_sink_event_t *ev, size_t nevents, uint64_t ts_ms,
                    inv_sink_done_cb cb, void *data, inv_sink_call_t **call) {
  return inv_sink_send(s, events, events_len, ev, nevents, ts_ms, cb, data,
                       call);
}

const inv_sink_ops_t inv_sink_redis_ops = {
    .ready = ops_ready,
    .route_mask = ops_route_mask,
    .send = ops_send,
    .call_describe = inv_sink_call_describe,
    .call_detach = inv_sink_call_detach,
};
