/*
 * Intake: live messages as hints, applying log entries and tracking their
 * completion (see worker_int.h for the states, positions and trust).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/errors.h"
#include "common/glob.h"
#include "common/log.h"
#include "common/slot.h"
#include "workers/worker_int.h"

/* Pattern work does not pause intake while its jobs only wait: they share
 * the next SCAN pass, so exact keys behind them are applied at once. Only
 * the bounds on what waits (count and memory) pause it. */
int inv__worker_backpressured(const inv_worker_t *w) {
  return w->pending_keys >= (uint64_t)w->conf->max_pending_keys ||
         inv_watermark_full(w->wm) ||
         inv_scanner_pending(w->scn) >= INV__PATTERNS_WAITING_MAX ||
         inv_scanner_waiting_bytes(w->scn) >= INV__PATTERNS_WAITING_BYTES;
}

/* Moves done past every finished entry. */
static void advance(inv_worker_t *w) { inv_watermark_advance(w->wm, &w->done); }

/* What a completion means for its entry. 0: the work is done. INV_ECLOSED:
 * cancelled (a rewind, or the stop); the entry stays open, so done never
 * passes it (at the stop the next start replays it; a rewind resets the
 * watermark). Any other error: the work was not done and cannot be
 * dispatched again from here (only the unlinker or the scanner knew it):
 * the entry is marked failed and the log is replayed from done on the
 * next role poll. The unlinker and the scanner retry their own failures,
 * so this is a safety net. */
static void op_settle(inv_worker_t *w, uint64_t tag, int err, const char *what) {
  if (err == 0) {
    if (inv_watermark_op_done(w->wm, tag)) advance(w);
  } else if (err != INV_ECLOSED) {
    if (inv_watermark_op_failed(w->wm, tag)) {
      inv_log_error(w->ctx, "%s failed (%s): replaying the log from the last "
                    "applied entry", what, inv_strerror(err));
      w->replay_due = 1;
    }
  }
}

/* Completion of an exact key's UNLINK. */
static void key_done_cb(void *owner, uint64_t tag, int err) {
  inv_worker_t *w = owner;
  INV_CHECK(w->pending_keys > 0);
  w->pending_keys--;
  w->st.pending_keys = w->pending_keys;
  op_settle(w, tag, err, "UNLINK");
  if (!w->in_rewind) inv__worker_progress(w);
}

/* Completion of a scan job (given to the scanner at creation). */
void inv__worker_scan_done_cb(void *owner, uint64_t tag, int err);
void inv__worker_scan_done_cb(void *owner, uint64_t tag, int err) {
  inv_worker_t *w = owner;
  op_settle(w, tag, err, "pattern scan");
  if (!w->in_rewind) inv__worker_progress(w);
}

static int in_replay_slots(const inv_worker_t *w, unsigned slot) {
  return (w->replay_slots[slot >> 3] >> (slot & 7)) & 1;
}

/* Dispatches one pattern (a prefix already turned into a pattern). limited
 * means only keys of the replay slots are wanted. Returns 1 when a scan job
 * was submitted for tag, 0 when there is nothing to do, or INV_ENOMEM. */
static int apply_pattern(inv_worker_t *w, const char *pat, size_t len,
                         inv_unlink_op_t mode, int limited, uint64_t tag) {
  unsigned slot = 0;
  int pinned = 0;
  if (inv_glob_check(pat, len) != 0) {
    /* The publisher refuses these always; one written to the log by other
     * means is passed over the same way. */
    w->st.events_refused++;
    inv_log_warn(w->ctx, "refused pattern '%.*s': it is malformed (a '[' "
                 "without its ']', or a trailing lone '\\')", (int)len, pat);
    return 0;
  }
  if (inv_glob_matches_everything(pat, len) && !w->conf->allow_flush) {
    w->st.events_refused++;
    inv_log_warn(w->ctx, "refused pattern '%.*s': it matches every key "
                 "(allow-flush is off)", (int)len, pat);
    return 0;
  }
  if (w->map.cluster && inv_glob_pinned_slot(pat, len, &slot)) {
    /* Only the slot's owner (or importer) has such keys. */
    if (!inv_slot_map_owns(&w->map, slot) && !inv_slot_map_imports(&w->map, slot))
      return 0;
    if (limited && !in_replay_slots(w, slot)) return 0;
    pinned = 1;
  }
  if (inv_scanner_submit(w->scn, pat, len, mode, pinned, slot, tag) != 0)
    return INV_ENOMEM;
  return 1;
}

/* Dispatches one exact key. Returns 1 when an UNLINK was queued for tag,
 * 0 when there is nothing to do, or INV_ENOMEM. */
static int apply_key(inv_worker_t *w, const char *key, size_t len,
                     inv_unlink_op_t mode, int limited, uint64_t tag) {
  int asking = 0;
  /* The publisher refuses these; an entry written to the log by other
   * means must not delete the service's own keys either. */
  if (inv_key_reserved(key, len)) {
    w->st.reserved_skipped++;
    return 0;
  }
  if (w->map.cluster) {
    unsigned slot = inv_key_slot(key, len);
    if (limited && !in_replay_slots(w, slot)) return 0;
    if (!inv_slot_map_owns(&w->map, slot)) {
      if (!inv_slot_map_imports(&w->map, slot)) return 0;
      asking = 1;
    }
  }
  if (inv_unlinker_push(w->unl, key, len, mode, asking, key_done_cb, w, tag) != 0)
    return INV_ENOMEM;
  w->pending_keys++;
  w->st.pending_keys = w->pending_keys;
  return 1;
}

/* Dispatches one event's target of kind (a prefix is turned into a
 * pattern here). Returns 1, 0 or INV_ENOMEM as apply_key does. */
static int dispatch(inv_worker_t *w, int kind, const char *target, size_t len,
                    inv_unlink_op_t mode, int limited, uint64_t tag) {
  if (kind == INV_KIND_KEY) return apply_key(w, target, len, mode, limited, tag);
  if (kind == INV_KIND_PATTERN)
    return apply_pattern(w, target, len, mode, limited, tag);
  char *pat = malloc(2 * len + 1);
  if (pat == NULL) return INV_ENOMEM;
  size_t n = inv_glob_from_prefix(target, len, pat);
  int rc = apply_pattern(w, pat, n, mode, limited, tag);
  free(pat);
  return rc;
}

static void retry_append(inv_worker_t *w, inv__retry_t *r) {
  r->next = NULL;
  if (w->retry_tail) w->retry_tail->next = r;
  else w->retry_head = r;
  w->retry_tail = r;
  w->nretry++;
}

/* Keeps a failed dispatch for inv__worker_retry_tick. When it cannot be
 * kept (the bound, or memory), the entry stays failed and the log is
 * replayed from done instead: its work is never skipped. */
static void keep_retry(inv_worker_t *w, int kind, const char *target,
                       size_t len, inv_unlink_op_t mode, int limited,
                       uint64_t tag) {
  inv__retry_t *r = NULL;
  if (w->nretry < INV__RETRIES_MAX) r = malloc(sizeof(*r) + len);
  if (r == NULL) {
    w->replay_due = 1;
    return;
  }
  r->tag = tag;
  r->kind = kind;
  r->mode = mode;
  r->limited = limited;
  r->len = len;
  memcpy(r->target, target, len);
  retry_append(w, r);
}

/* Dispatches one event as an operation of the entry tag names: counted
 * before it is handed out; when it fails, the entry is marked failed (it
 * stays open) and the event is kept to be dispatched again. */
static void issue(inv_worker_t *w, int kind, const char *target, size_t len,
                  inv_unlink_op_t mode, int limited, uint64_t tag) {
  if (!inv_watermark_op_begin(w->wm, tag)) return;
  int rc = dispatch(w, kind, target, len, mode, limited, tag);
  if (rc == 1) return;
  if (rc == 0) {
    inv_watermark_op_done(w->wm, tag);
    return;
  }
  inv_watermark_op_failed(w->wm, tag);
  if (w->nretry == 0 && !w->replay_due)
    inv_log_error(w->ctx, "out of memory: %s '%.*s' not applied yet; its log "
                  "entry stays open and it is dispatched again on the next "
                  "role poll", kind == INV_KIND_KEY ? "key" : "pattern",
                  (int)(len > 200 ? 200 : len), target);
  keep_retry(w, kind, target, len, mode, limited, tag);
}

void inv__worker_retry_clear(inv_worker_t *w) {
  inv__retry_t *r = w->retry_head;
  while (r != NULL) {
    inv__retry_t *next = r->next;
    free(r);
    r = next;
  }
  w->retry_head = w->retry_tail = NULL;
  w->nretry = 0;
  w->replay_due = 0;
}

void inv__worker_retry_tick(inv_worker_t *w) {
  if (w->closing) return;
  if (w->replay_due) {
    /* Some failed work was not kept: the log holds it. */
    inv__worker_rewind(w, w->done, 0, "work that could not be handed out "
                       "is dispatched again");
    return;
  }
  inv__retry_t *r = w->retry_head;
  w->retry_head = w->retry_tail = NULL;
  w->nretry = 0;
  while (r != NULL) {
    inv__retry_t *next = r->next;
    /* A tag reset away by a rewind is stale: the replay dispatches it. */
    if (inv_watermark_op_retry(w->wm, r->tag)) {
      w->st.apply_retries++;
      int rc = dispatch(w, r->kind, r->target, r->len, r->mode, r->limited,
                        r->tag);
      if (rc == INV_ENOMEM) {
        inv_watermark_op_failed(w->wm, r->tag);
        retry_append(w, r);
        r = next;
        continue;
      }
      if (rc == 0) inv_watermark_op_done(w->wm, r->tag);
    }
    free(r);
    r = next;
  }
  advance(w);
  inv__worker_progress(w);
}

int inv__worker_apply(inv_worker_t *w, inv_sid_t id, inv_payload_t *p,
                      int from_log) {
  if (inv_sid_cmp(id, w->seen) <= 0) {
    w->st.events_skipped++;
    return 0;
  }
  /* Entries come from the log read of a catch-up pass or of hints only. */
  INV_CHECK(w->intake == INV__IN_CATCHUP);
  uint64_t tag = 0;
  if (w->role == INV__ROLE_PRIMARY && inv_watermark_add(w->wm, id, &tag) != 0) {
    /* Full: intake checks the backpressure before each entry, so this is
     * not reached; should it be, seen stays and the entry is read again. */
    return 0;
  }
  w->st.events_received += p->nevents;
  if (from_log) w->st.catchup_events += p->nevents;
  uint64_t now = inv_wall_ms();
  w->last_lag_ms = now > p->ts_ms ? now - p->ts_ms : 0;
  inv_latency_observe(&w->lag, inv_now_us(), w->last_lag_ms * 1000);
  if (w->role != INV__ROLE_PRIMARY) {
    /* A standby tracks what it saw and deletes nothing. */
    w->seen = id;
    if (inv_watermark_empty(w->wm)) w->done = id;
    return 1;
  }
  int only_patterns = !inv_sid_is_zero(w->patterns_only_upto) &&
                      inv_sid_cmp(id, w->patterns_only_upto) <= 0;
  /* Unpinned patterns are re-run whole in a limited replay: filtering a
   * SCAN by slot would cost the same. */
  int limited = w->replay_limited && w->map.cluster &&
                inv_sid_cmp(id, w->replay_upto) <= 0;
  /* The entry holds one operation until every event is dispatched. */
  for (size_t i = 0; i < p->nevents; i++) {
    const inv_event_t *ev = &p->events[i];
    if (only_patterns && ev->kind == INV_KIND_KEY) continue;
    w->st.events_applied++;
    /* Hard: the value, its lock and its stale copy go; soft: the value
     * becomes the stale copy and the lock goes (proto/keyname.h). */
    inv_unlink_op_t mode = ev->mode == INV_MODE_SOFT ? INV_UNLINK_SOFT : INV_UNLINK_HARD;
    issue(w, ev->kind, ev->target, ev->target_len, mode, limited, tag);
  }
  w->seen = id;
  /* Release the hold; progress is not resumed from here, so that reading
   * a page never recurses through apply. */
  inv_watermark_op_done(w->wm, tag);
  advance(w);
  return 1;
}

/* Reads the id of a live message: from its tail when it ends the way the
 * log script appends it (no decoding), else by a full decode (a shard copy
 * ends with prev). Returns 0, or INV_EPROTO (counted and logged). */
static int hint_id(inv_worker_t *w, const char *data, size_t len,
                   const char *source, inv_sid_t *id) {
  char text[48], err[128];
  inv_payload_t p;
  if (inv_payload_tail_id(data, len, text) == 0 &&
      inv_sid_parse(text, strlen(text), id) == 0)
    return 0;
  int rc = inv_payload_decode(data, len, &p, err, sizeof(err));
  if (rc == 0 && inv_sid_parse(p.id, strlen(p.id), id) != 0) {
    snprintf(err, sizeof(err), "payload id '%.60s' is not a stream id", p.id);
    rc = INV_EPROTO;
  }
  inv_payload_destroy(&p);
  if (rc != 0) {
    w->st.decode_errors++;
    inv_log_warn(w->ctx, "undecodable message on %s: %s", source, err);
    return INV_EPROTO;
  }
  return 0;
}

/* Remembers a hint id beyond seen until the next read has ended. When the
 * list is full, ids the log has reached meanwhile make room; if none has,
 * the id only raises hint_max (and is rejected, if it must be, without
 * being counted on its own). */
static void hold_hint(inv_worker_t *w, inv_sid_t id, const char *source) {
  if (inv_sid_cmp(id, w->hint_max) > 0) w->hint_max = id;
  if (w->nhints == INV__HINTS_HELD) {
    size_t n = 0;
    for (size_t i = 0; i < w->nhints; i++) {
      if (inv_sid_cmp(w->hints[i], w->seen) <= 0) continue;
      w->hints[n] = w->hints[i];
      w->hint_src[n++] = w->hint_src[i];
    }
    w->nhints = n;
    if (n == INV__HINTS_HELD) return;
  }
  w->hints[w->nhints] = id;
  w->hint_src[w->nhints++] = source;
}

int inv__worker_hint(inv_worker_t *w, const char *data, size_t len,
                     const char *source) {
  inv_sid_t id;
  if (w->closing) return 0;
  if (hint_id(w, data, len, source, &id) != 0) return INV_EPROTO;
  /* Taken in already. */
  if (inv_sid_cmp(id, w->seen) <= 0) {
    w->st.events_skipped++;
    return 0;
  }
  /* While a read is under way, an id no newer than a hint that arrived
   * before the page in flight was asked for needs no read of its own: the
   * log held it then if it is real (stream ids only grow). Most of these are
   * the broadcast twins of shard copies. It is still held, so that the end
   * of the read judges it like the others (a forged one is rejected). */
  if (w->intake == INV__IN_CATCHUP && inv_sid_cmp(id, w->hint_sent) <= 0) {
    w->st.events_skipped++;
    hold_hint(w, id, source);
    return 0;
  }
  hold_hint(w, id, source);
  if (w->intake == INV__IN_LIVE) inv__worker_begin_read(w);
  else if (w->intake == INV__IN_CATCHUP) w->read_again = 1;
  /* IDLE: the catch-up that starts intake reads past it. */
  return 1;
}

void inv__worker_reject_ids(inv_worker_t *w, uint64_t n, inv_sid_t id,
                            const char *source) {
  char a[INV_SID_STRLEN], b[INV_SID_STRLEN];
  uint64_t now = inv_wall_ms();
  w->st.hints_rejected += n;
  w->rejected_unlogged += n;
  if (w->rejected_logged_ms != 0 && now - w->rejected_logged_ms < INV__REJECT_LOG_MS)
    return;
  inv_log_warn(w->ctx, "ignored %llu id(s) the log does not have (latest: "
               "%s on %s; the log ends at %s): forged or replayed messages "
               "never move a position",
               (unsigned long long)w->rejected_unlogged, inv_sid_format(id, a),
               source, inv_sid_format(w->log_top, b));
  w->rejected_unlogged = 0;
  w->rejected_logged_ms = now;
}

int inv__worker_hints_settle(inv_worker_t *w) {
  uint64_t n = 0;
  inv_sid_t worst = {0, 0};
  const char *src = INV_CHANNEL;
  for (size_t i = 0; i < w->nhints; i++) {
    if (inv_sid_cmp(w->hints[i], w->seen) <= 0) continue;
    n++;
    if (inv_sid_cmp(w->hints[i], worst) > 0) {
      worst = w->hints[i];
      src = w->hint_src[i];
    }
  }
  if (n == 0 && inv_sid_cmp(w->hint_max, w->seen) > 0) {
    n = 1; /* ids that did not fit in hints[] */
    worst = w->hint_max;
  }
  w->nhints = 0;
  w->hint_max = w->hint_sent = (inv_sid_t){0, 0};
  if (n == 0) return 0;
  inv__worker_reject_ids(w, n, worst, src);
  return 1;
}

void inv__worker_progress(inv_worker_t *w) {
  if (w->closing || inv__worker_backpressured(w)) return;
  w->st.intake_paused = 0;
  if (w->intake == INV__IN_CATCHUP && w->catchup_waiting) {
    w->catchup_waiting = 0;
    inv__worker_next_page(w);
  }
}

void inv__worker_go_idle(inv_worker_t *w) {
  w->intake = INV__IN_IDLE;
  w->hint_read = 0;
  /* The next live period compares with a fresh last id. */
  w->verify_prev_set = 0;
  w->catchup_gen++;
  w->catchup_waiting = 0;
  w->st.intake_paused = 0;
}

void inv__worker_maybe_start(inv_worker_t *w) {
  if (w->closing || w->intake != INV__IN_IDLE || !w->subscribed ||
      w->role == INV__ROLE_UNKNOWN || !w->map_known || w->takeover_pending ||
      !inv_cluster_ready(w->logc))
    return;
  inv__worker_begin_catchup(w, 1);
}

/* Cancels every scan, queued UNLINK and kept retry, and resets the
 * watermark (completions of the dropped work are stale from now on). */
static void drop_work(inv_worker_t *w) {
  w->in_rewind = 1;
  inv_scanner_cancel_all(w->scn);
  inv_unlinker_clear(w->unl);
  w->in_rewind = 0;
  inv__worker_retry_clear(w);
  inv_watermark_reset(w->wm);
}

void inv__worker_rewind(inv_worker_t *w, inv_sid_t start, int check_gap,
                        const char *why) {
  char a[INV_SID_STRLEN], b[INV_SID_STRLEN];
  drop_work(w);
  if (check_gap) {
    w->gap_ref = w->done;
    w->gap_ref_set = 1;
    w->gap_skip = 0;
  } else {
    w->gap_ref_set = 0;
    w->gap_skip = 1;
  }
  inv_log_info(w->ctx, "replaying the log from %s (was at %s): %s",
               inv_sid_format(start, a), inv_sid_format(w->done, b), why);
  w->seen = w->done = start;
  w->patterns_only_upto = (inv_sid_t){0, 0};
  w->replay_limited = 0;
  w->st.replays++;
  inv__worker_go_idle(w);
  inv__worker_maybe_start(w);
}

void inv__worker_stand_down(inv_worker_t *w) {
  drop_work(w);
  w->done = w->seen;
  w->patterns_only_upto = (inv_sid_t){0, 0};
  w->replay_limited = 0;
}
