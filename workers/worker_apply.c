/*
 * Applying a log entry: each event goes to the unlinker (an exact key the
 * node owns or imports), to another node through the cluster client (an
 * exact key of a slot the node does not own: a shard's range split across
 * primaries, or a slot that moved), or to the scanner (prefixes and
 * patterns). Every piece of work is an operation of its entry in the
 * intake's watermark, so the entry is acknowledged only once all of it
 * completed; work that failed leaves the entry open and makes the intake
 * read the shard's pending entries again (intake.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/check.h"
#include "inval/errors.h"
#include "common/base/glob.h"
#include "common/base/log.h"
#include "common/base/slot.h"
#include "proto/keyname.h"
#include "proto/scripts.h"
#include "workers/worker_int.h"

/* Pattern work does not pause intake while its jobs only wait: they share
 * the next SCAN pass, so exact keys behind them are applied at once. Only
 * the bounds on what waits (count and memory) pause it. */
int inv__worker_backpressured(inv_worker_t *w) {
  int b = w->pending_keys >= (uint64_t)w->conf->max_pending_keys ||
          inv_scanner_pending(w->scn) >= INV__PATTERNS_WAITING_MAX ||
          inv_scanner_waiting_bytes(w->scn) >= INV__PATTERNS_WAITING_BYTES;
  w->st.intake_paused = (uint64_t)b;
  return b;
}

/* What a completion means for its entry. 0: done. INV_ECLOSED: cancelled
 * (the stop, or the shard left): the entry stays pending in Redis for the
 * next reader. Anything else: the work was not done; the entry stays open
 * and the intake reads the shard's pending entries again. */
static void op_settle(inv_worker_t *w, uint64_t tag, int err,
                      const char *what) {
  if (err == 0) {
    inv_intake_op_done(w->intake, tag);
  } else if (err != INV_ECLOSED && inv_intake_op_failed(w->intake, tag)) {
    inv_log_error(w->ctx,
                  "%s failed (%s): its log entry stays pending and "
                  "is applied again",
                  what, inv_strerror(err));
  }
}

/* Reading may go on once the bounds have room again. */
static void progress(inv_worker_t *w) {
  if (w->closing || inv__worker_backpressured(w)) return;
  inv_intake_resume(w->intake);
}

static void key_done_cb(void *owner, uint64_t tag, int err) {
  inv_worker_t *w = owner;
  INV_CHECK(w->pending_keys > 0);
  w->pending_keys--;
  w->st.pending_keys = w->pending_keys;
  op_settle(w, tag, err, "UNLINK");
  progress(w);
}

void inv__worker_scan_done_cb(void *owner, uint64_t tag, int err) {
  inv_worker_t *w = owner;
  op_settle(w, tag, err, "pattern scan");
  progress(w);
}

/* One key being deleted on another node. A hard delete sends its names
 * as single-key UNLINKs, so that none is ever refused with TRYAGAIN while
 * its slot migrates (the cluster client follows MOVED and ASK for each); a
 * soft one runs soft.lua on the key's node, and falls back to the hard
 * delete if that fails (its names split by a migration, say): the safe
 * side of a soft invalidation. */
typedef struct remote_s {
  inv_worker_t *w;
  inv_unlink_done_cb done_cb;
  void *owner;
  uint64_t tag;
  int pending; /* commands unanswered, plus the hold while sending */
  int err;     /* the first failure, or 0 */
  int n;       /* names: the key, and its lock and stale copy if any */
  const char *name[3];
  size_t len[3];
  char buf[]; /* the names' bytes */
} remote_t;

static void remote_release(remote_t *r) {
  if (--r->pending > 0) return;
  r->done_cb(r->owner, r->tag, r->err);
  free(r);
}

static void remote_cb(inv_cluster_t *c, redisReply *reply, int err,
                      void *data) {
  remote_t *r = data;
  (void)c;
  if (r->err == 0) {
    if (err < 0)
      r->err = err;
    else if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
      r->err = INV_EREDIS;
  }
  remote_release(r);
}

static void remote_hard(remote_t *r) {
  for (int i = 0; i < r->n; i++) {
    const char *argv[2] = {"UNLINK", r->name[i]};
    size_t argvlen[2] = {6, r->len[i]};
    r->pending++;
    if (inv_cluster_command_argv(r->w->cluster, r->name[i], r->len[i], 2, argv,
                                 argvlen, remote_cb, r) != 0) {
      r->pending--;
      if (r->err == 0) r->err = INV_ENOMEM;
    }
  }
}

static void soft_cb(inv_cluster_t *c, redisReply *reply, int err, void *data) {
  remote_t *r = data;
  (void)c;
  if (err < 0 || reply == NULL || reply->type == REDIS_REPLY_ERROR) {
    r->w->st.unlink_retries++;
    remote_hard(r);
  } else {
    r->w->st.stale_copies +=
        reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
  }
  remote_release(r);
}

static int remote_soft(remote_t *r) {
  char grace[24];
  snprintf(grace, sizeof(grace), "%llu",
           (unsigned long long)r->w->conf->stale_grace_ms);
  const char *argv[7] = {"EVAL",     inv_script_soft.src, "3",  r->name[0],
                         r->name[1], r->name[2],          grace};
  size_t lens[7] = {4,         inv_script_soft.len, 1, r->len[0], r->len[1],
                    r->len[2], strlen(grace)};
  r->pending++;
  if (inv_cluster_command_argv(r->w->cluster, r->name[0], r->len[0], 7, argv,
                               lens, soft_cb, r) == 0)
    return 0;
  r->pending--;
  return INV_ENOMEM;
}

void inv__worker_unlink_elsewhere(void *data, const char *key, size_t len,
                                  inv_unlink_op_t op,
                                  inv_unlink_done_cb done_cb, void *owner,
                                  uint64_t tag) {
  inv_worker_t *w = data;
  inv_regen_names_t names = {0};
  size_t total = len;
  if (op != INV_UNLINK_RAW) {
    if (inv_regen_names(key, len, &names) != 0) {
      done_cb(owner, tag, INV_ENOMEM);
      return;
    }
    if (names.keeps_slot) total += names.lock_len + names.stale_len;
  }
  remote_t *r = calloc(1, sizeof(*r) + total + 1);
  if (r == NULL) {
    inv_regen_names_free(&names);
    done_cb(owner, tag, INV_ENOMEM);
    return;
  }
  r->w = w;
  r->done_cb = done_cb;
  r->owner = owner;
  r->tag = tag;
  r->pending = 1; /* the hold */
  char *at = r->buf;
  const char *src[3] = {key, names.lock, names.stale};
  size_t srclen[3] = {len, names.lock_len, names.stale_len};
  r->n = op != INV_UNLINK_RAW && names.keeps_slot ? 3 : 1;
  for (int i = 0; i < r->n; i++) {
    memcpy(at, src[i], srclen[i]);
    r->name[i] = at;
    r->len[i] = srclen[i];
    at += srclen[i];
  }
  inv_regen_names_free(&names);
  w->st.remote_unlinks++;
  if (op != INV_UNLINK_SOFT || r->n != 3 || remote_soft(r) != 0) remote_hard(r);
  remote_release(r);
}

/* Dispatches one pattern (a prefix already turned into a pattern).
 * Returns 1 when a scan job was submitted for tag, 0 when there is nothing
 * to do, or INV_ENOMEM. */
static int apply_pattern(inv_worker_t *w, const char *pat, size_t len,
                         inv_unlink_op_t mode, uint64_t tag) {
  unsigned slot = 0;
  int pinned = 0;
  if (inv_glob_check(pat, len) != 0) {
    /* The publisher refuses these always; one written to the log by other
     * means is passed over the same way. */
    w->st.events_refused++;
    inv_log_warn(w->ctx,
                 "refused pattern '%.*s': it is malformed (a '[' "
                 "without its ']', or a trailing lone '\\')",
                 (int)len, pat);
    return 0;
  }
  if (inv_glob_matches_everything(pat, len) && !w->conf->allow_flush) {
    w->st.events_refused++;
    inv_log_warn(w->ctx,
                 "refused pattern '%.*s': it matches every key "
                 "(allow-flush is off)",
                 (int)len, pat);
    return 0;
  }
  if (w->map.cluster && inv_glob_pinned_slot(pat, len, &slot)) {
    /* Only the slot's owner, and a node importing it, have such keys. This
     * worker answers for all of them: its node's with the scanner, the
     * others' with a sweep (an operation of its own), when the slot is not
     * ours or is migrating away. */
    if (!inv_slot_map_owns(&w->map, slot) ||
        inv_slot_map_migrates(&w->map, slot)) {
      if (inv_intake_op_begin(w->intake, tag) &&
          inv__worker_sweep(w, pat, len, mode, slot, tag) != 1)
        inv_intake_op_failed(w->intake, tag);
    }
    if (!inv_slot_map_owns(&w->map, slot) &&
        !inv_slot_map_imports(&w->map, slot))
      return 0;
    pinned = 1;
  }
  if (inv_scanner_submit(w->scn, pat, len, mode, pinned, slot, tag) != 0)
    return INV_ENOMEM;
  return 1;
}

/* Dispatches one exact key. Returns 1 when its delete was handed out for
 * tag, 0 when there is nothing to do, or INV_ENOMEM. */
static int apply_key(inv_worker_t *w, const char *key, size_t len,
                     inv_unlink_op_t mode, uint64_t tag) {
  int asking = 0;
  /* The publisher refuses these; an entry written to the log by other
   * means must not delete the service's own keys either. */
  if (inv_key_reserved(key, len)) {
    w->st.reserved_skipped++;
    return 0;
  }
  if (w->map.cluster) {
    unsigned slot = inv_key_slot(key, len);
    if (!inv_slot_map_owns(&w->map, slot)) {
      if (!inv_slot_map_imports(&w->map, slot)) {
        /* This shard's entry names a key that lives elsewhere: it is ours
         * to delete all the same, wherever it is. */
        w->pending_keys++;
        w->st.pending_keys = w->pending_keys;
        inv__worker_unlink_elsewhere(w, key, len, mode, key_done_cb, w, tag);
        return 1;
      }
      asking = 1;
    }
  }
  if (inv_unlinker_push(w->unl, key, len, mode, asking, key_done_cb, w, tag) !=
      0)
    return INV_ENOMEM;
  w->pending_keys++;
  w->st.pending_keys = w->pending_keys;
  return 1;
}

/* Dispatches one event's target of kind (a prefix is turned into a
 * pattern here). Returns 1, 0 or INV_ENOMEM as apply_key does. */
static int dispatch(inv_worker_t *w, int kind, const char *target, size_t len,
                    inv_unlink_op_t mode, uint64_t tag) {
  if (kind == INV_KIND_KEY) return apply_key(w, target, len, mode, tag);
  if (kind == INV_KIND_PATTERN) return apply_pattern(w, target, len, mode, tag);
  char *pat = malloc(2 * len + 1);
  if (pat == NULL) return INV_ENOMEM;
  size_t n = inv_glob_from_prefix(target, len, pat);
  int rc = apply_pattern(w, pat, n, mode, tag);
  free(pat);
  return rc;
}

void inv__worker_apply(inv_worker_t *w, uint64_t tag, inv_payload_t *p) {
  uint64_t now = inv_wall_ms();
  w->st.events_received += p->nevents;
  w->last_lag_ms = now > p->ts_ms ? now - p->ts_ms : 0;
  inv_latency_observe(&w->lag, inv_now_us(), w->last_lag_ms * 1000);
  for (size_t i = 0; i < p->nevents; i++) {
    const inv_event_t *ev = &p->events[i];
    /* Hard: the value, its lock and its stale copy go; soft: the value
     * becomes the stale copy and the lock goes (proto/keyname.h). */
    inv_unlink_op_t mode =
        ev->mode == INV_MODE_SOFT ? INV_UNLINK_SOFT : INV_UNLINK_HARD;
    if (!inv_intake_op_begin(w->intake, tag)) break;
    w->st.events_applied++;
    int rc = dispatch(w, ev->kind, ev->target, ev->target_len, mode, tag);
    if (rc == 1) continue;
    if (rc == 0) {
      inv_intake_op_done(w->intake, tag);
      continue;
    }
    /* Out of memory: the entry stays open and failed, and the intake reads
     * it again from the shard's pending entries on its next tick. */
    inv_log_error(w->ctx,
                  "out of memory: %s '%.*s' not applied yet; its "
                  "entry is read again",
                  ev->kind == INV_KIND_KEY ? "key" : "pattern",
                  (int)(ev->target_len > 200 ? 200 : ev->target_len),
                  ev->target);
    inv_intake_op_failed(w->intake, tag);
  }
  /* Release the entry's hold. */
  inv_intake_op_done(w->intake, tag);
}
