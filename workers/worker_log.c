/*
 * Everything the worker reads from or writes to the cluster rather than its
 * own node: log reads (XINFO STREAM, XRANGE pages) for catch-up and for
 * hints, gap detection, the takeover position on promotion (HGETALL of the
 * heartbeats), its own heartbeat (HSET) and the "behind" figure. Only what
 * the log returns moves a position.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errors.h"
#include "common/heartbeat.h"
#include "common/log.h"
#include "workers/worker_int.h"

/* A log request remembers which catch-up pass issued it, so that replies
 * for a pass that was abandoned (rewind, disconnect) are ignored. */
typedef struct req_s {
  inv_worker_t *w;
  uint64_t gen;
} req_t;

static req_t *new_req(inv_worker_t *w) {
  req_t *r = malloc(sizeof(*r));
  if (r != NULL) {
    r->w = w;
    r->gen = w->catchup_gen;
  }
  return r;
}

/* Sends a command routed by key. Returns 0, or a negative code (cb is then
 * not called and data stays the caller's). */
static int log_cmd(inv_worker_t *w, const char *key, int argc, const char **argv,
                   inv_cluster_reply_cb cb, void *data) {
  size_t lens[8];
  for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
  return inv_cluster_command_argv(w->logc, key, strlen(key), argc, argv, lens,
                                  cb, data);
}

/* A catch-up step failed: go idle; the role timer restarts intake. */
static void catchup_failed(inv_worker_t *w, const char *what, int err,
                           const redisReply *reply) {
  if (reply != NULL)
    inv_log_warn(w->ctx, "%s failed: %.*s; retrying", what, (int)reply->len,
                 reply->str);
  else
    inv_log_warn(w->ctx, "%s failed: %s; retrying", what, inv_strerror(err));
  inv__worker_go_idle(w);
}

/* Reads a stream id from a string reply. Returns 0 or INV_EINVAL. */
static int reply_sid(const redisReply *r, inv_sid_t *out) {
  if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
    return INV_EINVAL;
  return inv_sid_parse(r->str, r->len, out);
}

static const redisReply *map_get(const redisReply *arr, const char *name) {
  if (arr == NULL || arr->type != REDIS_REPLY_ARRAY) return NULL;
  size_t n = strlen(name);
  for (size_t i = 0; i + 1 < arr->elements; i += 2) {
    const redisReply *k = arr->element[i];
    if (k->type == REDIS_REPLY_STRING && k->len == n && memcmp(k->str, name, n) == 0)
      return arr->element[i + 1];
  }
  return NULL;
}

static void page_cb(inv_cluster_t *c, redisReply *reply, int err, void *data);

void inv__worker_next_page(inv_worker_t *w) {
  char start[INV_SID_STRLEN + 1], count[32];
  if (w->intake != INV__IN_CATCHUP || w->closing) return;
  if (inv__worker_backpressured(w)) {
    w->catchup_waiting = 1;
    w->st.intake_paused = 1;
    return;
  }
  start[0] = '(';
  inv_sid_format(w->seen, start + 1);
  snprintf(count, sizeof(count), "%lld", w->conf->catchup_page);
  const char *argv[6] = {"XRANGE", INV_LOG_KEY, start, "+", "COUNT", count};
  req_t *r = new_req(w);
  if (r == NULL || log_cmd(w, INV_LOG_KEY, 6, argv, page_cb, r) != 0) {
    free(r);
    catchup_failed(w, "XRANGE", INV_ENOMEM, NULL);
    return;
  }
  /* Every hint held now names an entry the log holds already, if real. */
  w->hint_sent = w->hint_max;
  w->catchup_inflight++;
}

/* Moves seen past an entry the log returned that cannot be applied. */
static void pass_over(inv_worker_t *w, inv_sid_t id) {
  if (inv_sid_cmp(id, w->seen) > 0) w->seen = id;
}

/* Applies one XRANGE entry [id, [field, value, ...]]. */
static void apply_entry(inv_worker_t *w, const redisReply *e) {
  inv_sid_t id;
  char err[128];
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
      reply_sid(e->element[0], &id) != 0) {
    w->st.decode_errors++;
    return;
  }
  if (inv_sid_cmp(id, w->log_top) > 0) w->log_top = id;
  const redisReply *p = map_get(e->element[1], "p");
  if (p == NULL || p->type != REDIS_REPLY_STRING) {
    w->st.decode_errors++;
    inv_log_warn(w->ctx, "log entry %.*s has no payload field p",
                 (int)e->element[0]->len, e->element[0]->str);
    pass_over(w, id);
    return;
  }
  inv_payload_t pl;
  if (inv_payload_decode(p->str, p->len, &pl, err, sizeof(err)) != 0) {
    w->st.decode_errors++;
    inv_log_warn(w->ctx, "log entry %.*s: %s", (int)e->element[0]->len,
                 e->element[0]->str, err);
    pass_over(w, id);
  } else {
    inv__worker_apply(w, id, &pl, !w->hint_read);
  }
  inv_payload_destroy(&pl);
}

static void page_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  req_t *r = data;
  inv_worker_t *w = r->w;
  int stale = r->gen != w->catchup_gen;
  (void)c;
  free(r);
  w->catchup_inflight--;
  if (stale || w->closing || w->intake != INV__IN_CATCHUP) return;
  if (err < 0 || reply->type != REDIS_REPLY_ARRAY) {
    catchup_failed(w, "XRANGE", err, err < 0 ? NULL : reply);
    return;
  }
  size_t i = 0;
  for (; i < reply->elements; i++) {
    if (inv__worker_backpressured(w)) break;
    apply_entry(w, reply->element[i]);
  }
  if (i < reply->elements || reply->elements >= (size_t)w->conf->catchup_page) {
    inv__worker_next_page(w); /* more log, or paused mid-page */
    return;
  }
  /* A short page: the log's end. A hint that arrived after the last page
   * was asked for, or a rejected one (a hint skipped as covered by that
   * page may have been real), calls for one more read. */
  if (w->read_again || inv__worker_hints_settle(w)) {
    w->read_again = 0;
    inv__worker_next_page(w);
    return;
  }
  w->intake = INV__IN_LIVE;
  w->hint_read = 0;
}

void inv__worker_begin_read(inv_worker_t *w) {
  if (w->intake != INV__IN_LIVE || w->closing) return;
  w->intake = INV__IN_CATCHUP;
  w->hint_read = 1;
  w->read_again = 0;
  inv__worker_next_page(w);
}

/* on-gap rescan: replays the whole log, applying only prefixes and
 * patterns up to upto (an id the log has reached). */
static void rescan(inv_worker_t *w, inv_sid_t upto) {
  inv_log_warn(w->ctx, "on-gap rescan: re-running every prefix and pattern "
               "event in the log; exact keys named in lost entries may be stale");
  inv__worker_rewind(w, (inv_sid_t){0, 0}, 0, "on-gap rescan");
  w->patterns_only_upto = upto;
}

/* Our position is past the log's last-generated-id, so it was never an
 * id of this log: a wrong or poisoned state file, or a log that was
 * deleted or restored from an older backup. Entries after the log's last
 * id up to our position may exist elsewhere or not at all, so the range is
 * reported as a gap, and intake goes on from the log's last id (dropping
 * any work on the impossible ids). */
static void beyond_log(inv_worker_t *w, inv_sid_t last) {
  char a[INV_SID_STRLEN], b[INV_SID_STRLEN];
  inv_log_error(w->ctx, "our position %s is beyond the log's last id %s (a "
                "wrong state file, or a log deleted or restored from an older "
                "backup): going on from %s", inv_sid_format(w->seen, a),
                inv_sid_format(last, b), b);
  w->st.gaps++;
  w->log_top = last;
  inv_log_error(w->ctx, "GAP: entries in (%s, %s] may be missing from the "
                "log: invalidations may have been lost", b, a);
  if (w->conf->on_gap == INV_ON_GAP_RESCAN) {
    rescan(w, last);
    return;
  }
  inv__worker_rewind(w, last, 0, "position beyond the log's end");
}

/* XINFO STREAM: set a fresh worker's position, check that ours is an id
 * of this log, or check for a gap. */
static void xinfo_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  req_t *r = data;
  inv_worker_t *w = r->w;
  int stale = r->gen != w->catchup_gen;
  char a[INV_SID_STRLEN], b[INV_SID_STRLEN];
  (void)c;
  free(r);
  w->catchup_inflight--;
  if (stale || w->closing || w->intake != INV__IN_CATCHUP) return;
  inv_sid_t last = {0, 0}, first = {0, 0}, maxdel = {0, 0};
  int has_first = 0, has_maxdel = 0, has_added = 0, has_len = 0;
  long long added = 0, len = 0;
  if (err < 0) {
    catchup_failed(w, "XINFO STREAM", err, NULL);
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    if (!(reply->len >= 10 && strstr(reply->str, "no such key") != NULL)) {
      catchup_failed(w, "XINFO STREAM", 0, reply);
      return;
    }
    /* No log yet: an empty log at 0-0, nothing ever added. */
    has_added = 1;
  } else {
    reply_sid(map_get(reply, "last-generated-id"), &last);
    has_maxdel = reply_sid(map_get(reply, "max-deleted-entry-id"), &maxdel) == 0;
    const redisReply *ea = map_get(reply, "entries-added");
    const redisReply *ln = map_get(reply, "length");
    if (ea != NULL && ea->type == REDIS_REPLY_INTEGER) {
      has_added = 1;
      added = ea->integer;
    }
    if (ln != NULL && ln->type == REDIS_REPLY_INTEGER) {
      has_len = 1;
      len = ln->integer;
    }
    const redisReply *fe = map_get(reply, "first-entry");
    if (fe != NULL && fe->type == REDIS_REPLY_ARRAY && fe->elements >= 1)
      has_first = reply_sid(fe->element[0], &first) == 0;
  }
  if (inv_sid_cmp(last, w->log_top) > 0) w->log_top = last;
  if (!w->have_position) {
    w->have_position = 1;
    if (w->conf->from_start) {
      w->seen = w->done = (inv_sid_t){0, 0};
      inv_log_info(w->ctx, "no state: reading the whole log (from-start)");
    } else {
      w->seen = w->done = last;
      inv_log_info(w->ctx, "no state: starting at the log's end, %s",
                   inv_sid_format(last, a));
    }
    w->gap_ref_set = 0;
    inv__worker_next_page(w);
    return;
  }
  if (inv_sid_cmp(w->seen, last) > 0) {
    beyond_log(w, last);
    return;
  }
  inv_sid_t ref = w->gap_ref_set ? w->gap_ref : w->seen;
  w->gap_ref_set = 0;
  if (w->gap_skip) {
    /* A replay that starts before our position on purpose (rescan, slots
     * gained) is not a gap. */
    w->gap_skip = 0;
    inv__worker_next_page(w);
    return;
  }
  /* Trimming does not move max-deleted-entry-id (only XDEL does), so a
   * trim is seen as entries-added > length (something was removed) with
   * the first entry now past ref: the log no longer reaches back to our
   * position. A log trimmed empty has lost entries when its last id is past
   * ref. The one false alarm is a trim that ended exactly at ref. */
  int trimmed = has_added && has_len && added > len;
  int gap = (has_maxdel && inv_sid_cmp(maxdel, ref) > 0) ||
            (trimmed && (inv_sid_is_zero(ref) ||
                         (has_first ? inv_sid_cmp(first, ref) > 0
                                    : inv_sid_cmp(last, ref) > 0)));
  if (gap) {
    w->st.gaps++;
    inv_log_error(w->ctx, "GAP: the log was trimmed past our position %s "
                  "(first entry now %s): invalidations were lost",
                  inv_sid_format(ref, a), has_first ? inv_sid_format(first, b) : "none");
    if (w->conf->on_gap == INV_ON_GAP_RESCAN) {
      rescan(w, w->seen);
      return;
    }
  }
  inv__worker_next_page(w);
}

void inv__worker_begin_catchup(inv_worker_t *w, int check_position) {
  inv__worker_go_idle(w); /* abandons the replies of any earlier pass */
  w->intake = INV__IN_CATCHUP;
  w->read_again = 0;
  w->st.catchups++;
  if (!check_position) {
    inv__worker_next_page(w);
    return;
  }
  const char *argv[3] = {"XINFO", "STREAM", INV_LOG_KEY};
  req_t *r = new_req(w);
  if (r == NULL || log_cmd(w, INV_LOG_KEY, 3, argv, xinfo_cb, r) != 0) {
    free(r);
    catchup_failed(w, "XINFO STREAM", INV_ENOMEM, NULL);
    return;
  }
  w->catchup_inflight++;
}

/* Finds the position the old primary's worker last reported in an HGETALL
 * reply of the heartbeats. Returns 1 and *pos when found (the earliest, if
 * several workers served that node), else 0. Anyone can write the hash, so
 * a position only ever makes the replay start further back (the callers
 * take the earlier of it and ours), and one beyond the furthest id the log
 * has shown us is not an id of this log: it is rejected (counted, logged)
 * and passed over. */
static int old_position(inv_worker_t *w, const redisReply *reply, inv_sid_t *pos) {
  int found = 0;
  for (size_t i = 0; i + 1 < reply->elements; i += 2) {
    const redisReply *v = reply->element[i + 1];
    inv_heartbeat_t hb;
    inv_sid_t id;
    if (v->type != REDIS_REPLY_STRING ||
        inv_heartbeat_decode(v->str, v->len, &hb) != 0 ||
        strcmp(hb.node, w->master_addr) != 0 ||
        inv_sid_parse(hb.last_id, strlen(hb.last_id), &id) != 0)
      continue;
    if (!inv_sid_is_zero(w->log_top) && inv_sid_cmp(id, w->log_top) > 0) {
      inv__worker_reject_ids(w, 1, id, INV_HEARTBEAT_KEY);
      continue;
    }
    inv_log_info(w->ctx, "old primary %s's worker %s last applied %s", hb.node,
                 hb.id, hb.last_id);
    if (!found || inv_sid_cmp(id, *pos) < 0) *pos = id;
    found = 1;
  }
  return found;
}

/* Rewinds to start for a takeover and records it as owed up to where the
 * worker was, saving at once: until then the state file says "replica"
 * (or holds an earlier takeover), and after it a kill -9 at any moment
 * still leaves the replay to do. */
static void owe_takeover(inv_worker_t *w, inv_sid_t start, const char *why) {
  if (!w->takeover_owed || inv_sid_cmp(w->done, w->takeover_upto) > 0)
    w->takeover_upto = w->done;
  w->takeover_owed = 1;
  inv__worker_rewind(w, start, 1, why);
  inv__worker_save_state(w);
}

/* Ends the wait of a promotion: replays from the takeover window before
 * from. */
static void takeover_start(inv_worker_t *w, inv_sid_t from, const char *why) {
  char a[INV_SID_STRLEN];
  inv_sid_t start = inv_sid_minus_ms(from, w->conf->takeover_window_ms);
  w->takeover_pending = 0;
  w->takeover_from = start;
  inv_log_info(w->ctx, "promoted: taking over from %s", inv_sid_format(start, a));
  owe_takeover(w, start, why);
}

static void takeover_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  inv_worker_t *w = data;
  inv_sid_t old;
  char a[INV_SID_STRLEN];
  (void)c;
  w->takeover_inflight = 0;
  if (w->closing || (!w->takeover_pending && !w->takeover_recheck)) return;
  if (err < 0 || reply->type != REDIS_REPLY_ARRAY) {
    if (w->takeover_pending) {
      inv_log_warn(w->ctx, "could not read the heartbeats (%s); replaying from "
                   "our own position and asking again",
                   err < 0 ? inv_strerror(err) : reply->str);
      w->takeover_recheck = 1;
      takeover_start(w, w->done, "promotion");
    }
    return;
  }
  int found = old_position(w, reply, &old);
  if (w->takeover_pending) {
    inv_sid_t from = w->done;
    if (found && inv_sid_cmp(old, from) < 0) from = old;
    takeover_start(w, from, "promotion");
    return;
  }
  /* A recheck after replaying from our own position. */
  w->takeover_recheck = 0;
  if (!found) return;
  inv_sid_t start = inv_sid_minus_ms(old, w->conf->takeover_window_ms);
  if (inv_sid_cmp(start, w->takeover_from) >= 0) return;
  inv_log_warn(w->ctx, "the old primary's worker was behind our replay: "
               "replaying from %s", inv_sid_format(start, a));
  w->takeover_from = start;
  owe_takeover(w, start, "promotion (old worker behind)");
}

void inv__worker_takeover(inv_worker_t *w) {
  const char *argv[2] = {"HGETALL", INV_HEARTBEAT_KEY};
  if (w->takeover_inflight || w->closing) return;
  if (log_cmd(w, INV_HEARTBEAT_KEY, 2, argv, takeover_cb, w) == 0) {
    w->takeover_inflight = 1;
    return;
  }
  if (w->takeover_pending) {
    /* The heartbeats cannot be asked now: replay from our own position at
     * once, and ask again on the next role polls. */
    w->takeover_recheck = 1;
    takeover_start(w, w->done, "promotion");
  }
}

void inv__worker_takeover_tick(inv_worker_t *w) {
  if (!w->takeover_recheck || w->role != INV__ROLE_PRIMARY) return;
  if (inv_now_us() - w->takeover_since_us > INV__TAKEOVER_RECHECK_MS * 1000ull) {
    w->takeover_recheck = 0;
    inv_log_error(w->ctx, "the heartbeats stayed unreadable after the promotion: "
                  "events the old primary's worker had not applied more than "
                  "takeover-window before our position may be missed");
    return;
  }
  inv__worker_takeover(w);
}

static void hb_result(inv_worker_t *w, redisReply *reply, int err) {
  w->hb_inflight = 0;
  if (err == 0 && reply->type != REDIS_REPLY_ERROR) w->st.heartbeats++;
  else if (!w->closing)
    inv_log_debug(w->ctx, "heartbeat failed: %s",
                  err < 0 ? inv_strerror(err) : reply->str);
}

static void hb_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  (void)c;
  hb_result(data, reply, err);
}

static void hb_direct_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  (void)r;
  hb_result(data, reply, err);
}

/* The connection a standalone replica's heartbeat goes over (to its
 * primary, opened on first use and replaced when the primary changes), or
 * NULL when it goes through the log client (a cluster node, a primary). */
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
  if (colon == NULL || (size_t)(colon - w->master_addr) >= sizeof(host)) return NULL;
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
  snprintf(w->hb_primary_addr, sizeof(w->hb_primary_addr), "%s", w->master_addr);
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
  snprintf(w->instance, sizeof(w->instance), "%s/%ld/%s", host,
           (long)getpid(), hex);
}

/* Sends one command of the heartbeat, over direct when set, else through
 * the log client. Returns 0 or a negative code (no callback then). */
static int hb_send(inv_worker_t *w, inv_redis_t *direct, int argc,
                   const char **argv, const size_t *lens,
                   inv_cluster_reply_cb cb, inv_redis_reply_cb direct_cb) {
  if (direct != NULL)
    return inv_redis_command_argv(direct, argc, argv, lens, direct_cb, w);
  return inv_cluster_command_argv(w->logc, INV_HEARTBEAT_KEY,
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
    inv_log_warn(w->ctx, "another worker (%s) wrote a heartbeat as %s for "
                 "node %s %.1f s ago: if it still runs, two workers serve "
                 "one node and their heartbeats overwrite each other; give "
                 "each worker its own --worker-id or stop one",
                 hb.instance[0] ? hb.instance : "an older version", w->id,
                 hb.node, now > hb.ts_ms ? (double)(now - hb.ts_ms) / 1000.0 : 0.0);
  }
  inv__worker_heartbeat(w);
}

static void hb_check_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
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

void inv__worker_heartbeat(inv_worker_t *w) {
  inv_heartbeat_t hb;
  inv_buf_t buf = {0};
  inv_redis_t *direct = hb_primary(w);
  if (w->hb_inflight ||
      (direct != NULL ? !inv_redis_is_connected(direct) : !inv_cluster_ready(w->logc)))
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
  inv_sid_format(w->done, hb.last_id);
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

static void behind_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  inv_worker_t *w = data;
  (void)c;
  w->behind_inflight = 0;
  if (err == 0 && reply->type == REDIS_REPLY_ARRAY) w->st.behind = reply->elements;
}

void inv__worker_refresh_behind(inv_worker_t *w) {
  char start[INV_SID_STRLEN + 1], count[16];
  if (w->behind_inflight || !inv_cluster_ready(w->logc) || !w->have_position)
    return;
  start[0] = '(';
  inv_sid_format(w->done, start + 1);
  snprintf(count, sizeof(count), "%d", INV__BEHIND_MAX);
  const char *argv[6] = {"XRANGE", INV_LOG_KEY, start, "+", "COUNT", count};
  size_t lens[6];
  for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
  if (inv_cluster_command_argv(w->logc, INV_LOG_KEY, strlen(INV_LOG_KEY), 6, argv,
                               lens, behind_cb, w) == 0)
    w->behind_inflight = 1;
}

/* The log's last entry has been there for a whole check interval and was
 * never read: its hint was lost. Reading the log from seen brings it and
 * anything else the hints missed. */
static void live_lost(inv_worker_t *w, inv_sid_t last) {
  char a[INV_SID_STRLEN];
  w->st.live_lost++;
  inv_log_warn(w->ctx, "log entries up to %s never arrived on %s (a cluster "
               "bus link dropped them?): reading the log",
               inv_sid_format(last, a), INV_CHANNEL);
  inv__worker_begin_read(w);
}

static void verify_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  req_t *r = data;
  inv_worker_t *w = r->w;
  int stale = r->gen != w->catchup_gen;
  inv_sid_t last;
  (void)c;
  free(r);
  w->verify_inflight = 0;
  if (stale || w->closing || w->intake != INV__IN_LIVE || err < 0 ||
      reply->type != REDIS_REPLY_ARRAY ||
      reply_sid(map_get(reply, "last-generated-id"), &last) != 0)
    return;
  if (inv_sid_cmp(last, w->log_top) > 0) w->log_top = last;
  int cmp = inv_sid_cmp(last, w->seen);
  if (cmp < 0) {
    /* The log went back behind us while we stayed connected (deleted, or
     * restored from a backup): a catch-up pass checks and reports it. */
    inv__worker_begin_catchup(w, 1);
    return;
  }
  if (cmp > 0 && w->verify_prev_set &&
      inv_sid_cmp(last, w->verify_prev_last) == 0) {
    live_lost(w, last);
    return;
  }
  w->verify_prev_last = last;
  w->verify_prev_set = 1;
}

void inv__worker_verify_live(inv_worker_t *w) {
  const char *argv[3] = {"XINFO", "STREAM", INV_LOG_KEY};
  if (w->verify_inflight || w->intake != INV__IN_LIVE || w->closing ||
      !inv_cluster_ready(w->logc))
    return;
  req_t *r = new_req(w);
  if (r == NULL) return;
  if (log_cmd(w, INV_LOG_KEY, 3, argv, verify_cb, r) != 0) {
    free(r);
    return;
  }
  w->verify_inflight = 1;
}
