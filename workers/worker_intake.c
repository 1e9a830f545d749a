/*
 * Intake: live messages, the live queue, applying log entries and tracking
 * their completion (see worker_int.h for the states and positions).
 */
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/glob.h"
#include "common/log.h"
#include "common/slot.h"
#include "workers/worker_int.h"

#define TAG_SEQ_BITS 48
#define TAG_SEQ_MASK ((UINT64_C(1) << TAG_SEQ_BITS) - 1)

static uint64_t make_tag(const inv_worker_t *w, uint64_t seq) {
  return (w->gen << TAG_SEQ_BITS) | (seq & TAG_SEQ_MASK);
}

int inv__worker_backpressured(const inv_worker_t *w) {
  return w->pending_keys >= (uint64_t)w->conf->max_pending_keys ||
         w->ring_tail - w->ring_head >= INV__RING_CAP - 1 ||
         inv_scanner_pending(w->scn) >= INV__SCANS_PENDING_MAX;
}

int inv__worker_takes_live(const inv_worker_t *w) {
  return w->intake == INV__IN_LIVE && w->lq_head == NULL &&
         !inv__worker_backpressured(w);
}

/* Moves done past every finished entry at the head of the ring. */
static void advance(inv_worker_t *w) {
  while (w->ring_head < w->ring_tail) {
    inv__ring_entry_t *e = &w->ring[w->ring_head % INV__RING_CAP];
    if (e->outstanding > 0) break;
    w->done = e->id;
    w->ring_head++;
  }
}

/* One operation of the entry named by tag finished. Tags of an older
 * generation (before a rewind) are ignored. */
static void ring_dec(inv_worker_t *w, uint64_t tag) {
  if ((tag >> TAG_SEQ_BITS) != (w->gen & ((UINT64_C(1) << (64 - TAG_SEQ_BITS)) - 1)))
    return;
  uint64_t seq = tag & TAG_SEQ_MASK;
  if (seq < (w->ring_head & TAG_SEQ_MASK) || seq >= (w->ring_tail & TAG_SEQ_MASK))
    return;
  inv__ring_entry_t *e = &w->ring[seq % INV__RING_CAP];
  if ((e->seq & TAG_SEQ_MASK) != seq || e->outstanding == 0) return;
  e->outstanding--;
  advance(w);
}

/* Completion of an exact key's UNLINK. */
static void key_done_cb(void *owner, uint64_t tag, int err) {
  inv_worker_t *w = owner;
  w->pending_keys--;
  w->st.pending_keys = w->pending_keys;
  /* A cancelled key leaves its entry unfinished, so done never passes it
   * (at shutdown the next start replays it; a rewind empties the ring). */
  if (err != INV_ECLOSED) ring_dec(w, tag);
  if (!w->in_rewind) inv__worker_progress(w);
}

/* Completion of a scan job (given to the scanner at creation). */
void inv__worker_scan_done_cb(void *owner, uint64_t tag, int err);
void inv__worker_scan_done_cb(void *owner, uint64_t tag, int err) {
  inv_worker_t *w = owner;
  if (err != INV_ECLOSED) ring_dec(w, tag);
  if (!w->in_rewind) inv__worker_progress(w);
}

static int in_replay_slots(const inv_worker_t *w, unsigned slot) {
  return (w->replay_slots[slot >> 3] >> (slot & 7)) & 1;
}

/* Dispatches one pattern (a prefix already turned into a pattern). limited
 * means only keys of the replay slots are wanted. Returns 1 when a scan job
 * was submitted for tag. */
static int apply_pattern(inv_worker_t *w, const char *pat, size_t len,
                         inv_unlink_op_t mode, int limited, uint64_t tag) {
  unsigned slot = 0;
  int pinned = 0;
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
  if (inv_scanner_submit(w->scn, pat, len, mode, pinned, slot, tag) != 0) {
    inv_log_error(w->ctx, "out of memory: pattern '%.*s' not applied", (int)len, pat);
    return 0;
  }
  return 1;
}

/* Dispatches one exact key. Returns 1 when an UNLINK was queued for tag. */
static int apply_key(inv_worker_t *w, const char *key, size_t len,
                     inv_unlink_op_t mode, int limited, uint64_t tag) {
  int asking = 0;
  if (w->map.cluster) {
    unsigned slot = inv_key_slot(key, len);
    if (limited && !in_replay_slots(w, slot)) return 0;
    if (!inv_slot_map_owns(&w->map, slot)) {
      if (!inv_slot_map_imports(&w->map, slot)) return 0;
      asking = 1;
    }
  }
  if (inv_unlinker_push(w->unl, key, len, mode, asking, key_done_cb, w, tag) != 0) {
    inv_log_error(w->ctx, "out of memory: key not unlinked");
    return 0;
  }
  w->pending_keys++;
  w->st.pending_keys = w->pending_keys;
  return 1;
}

int inv__worker_apply(inv_worker_t *w, inv_sid_t id, inv_payload_t *p,
                      int from_log) {
  if (inv_sid_cmp(id, w->seen) <= 0) {
    w->st.events_skipped++;
    return 0;
  }
  w->st.events_received += p->nevents;
  if (from_log) w->st.catchup_events += p->nevents;
  inv__worker_count_taken(w, id);
  uint64_t now = inv_wall_ms();
  w->last_lag_ms = now > p->ts_ms ? now - p->ts_ms : 0;
  inv_latency_observe(&w->lag, inv_now_us(), w->last_lag_ms * 1000);
  if (w->role != INV__ROLE_PRIMARY) {
    /* A standby tracks what it saw and deletes nothing. */
    w->seen = id;
    if (w->ring_head == w->ring_tail) w->done = id;
    return 1;
  }
  int only_patterns = !inv_sid_is_zero(w->patterns_only_upto) &&
                      inv_sid_cmp(id, w->patterns_only_upto) <= 0;
  /* Unpinned patterns are re-run whole in a limited replay: filtering a
   * SCAN by slot would cost the same. */
  int limited = w->replay_limited && w->map.cluster &&
                inv_sid_cmp(id, w->replay_upto) <= 0;
  uint64_t seq = w->ring_tail++;
  inv__ring_entry_t *e = &w->ring[seq % INV__RING_CAP];
  e->id = id;
  e->seq = seq;
  e->outstanding = 1; /* held until every event is dispatched */
  uint64_t tag = make_tag(w, seq);
  for (size_t i = 0; i < p->nevents; i++) {
    const inv_event_t *ev = &p->events[i];
    if (only_patterns && ev->kind == INV_KIND_KEY) continue;
    w->st.events_applied++;
    /* Hard: the value, its lock and its stale copy go; soft: the value
     * becomes the stale copy and the lock goes (proto/keyname.h). */
    inv_unlink_op_t mode = ev->mode == INV_MODE_SOFT ? INV_UNLINK_SOFT : INV_UNLINK_HARD;
    if (ev->kind == INV_KIND_KEY) {
      e->outstanding +=
          (uint32_t)apply_key(w, ev->target, ev->target_len, mode, limited, tag);
    } else if (ev->kind == INV_KIND_PATTERN) {
      e->outstanding += (uint32_t)apply_pattern(w, ev->target, ev->target_len,
                                                mode, limited, tag);
    } else {
      char *pat = malloc(2 * ev->target_len + 1);
      if (pat == NULL) {
        inv_log_error(w->ctx, "out of memory: prefix not applied");
        continue;
      }
      size_t n = inv_glob_from_prefix(ev->target, ev->target_len, pat);
      e->outstanding += (uint32_t)apply_pattern(w, pat, n, mode, limited, tag);
      free(pat);
    }
  }
  w->seen = id;
  /* Release the hold; progress is not resumed from here, so that draining
   * never recurses through apply. */
  e->outstanding--;
  advance(w);
  return 1;
}

int inv__worker_decode(inv_worker_t *w, const char *data, size_t len,
                       const char *source, inv_payload_t *p, inv_sid_t *id) {
  char err[128];
  int rc = inv_payload_decode(data, len, p, err, sizeof(err));
  if (rc == 0 && inv_sid_parse(p->id, strlen(p->id), id) != 0) {
    snprintf(err, sizeof(err), "payload id '%s' is not a stream id", p->id);
    rc = INV_EPROTO;
  }
  if (rc != 0) {
    w->st.decode_errors++;
    inv_log_warn(w->ctx, "undecodable message on %s: %s", source, err);
  }
  return rc;
}

void inv__worker_live_clear(inv_worker_t *w) {
  inv__live_msg_t *m = w->lq_head;
  while (m != NULL) {
    inv__live_msg_t *next = m->next;
    free(m);
    m = next;
  }
  w->lq_head = w->lq_tail = NULL;
  w->lq_len = 0;
}

/* 1 when the message is the broadcast of an entry already taken in (the
 * twin of a shard-channel copy, or an entry read from the log meanwhile),
 * found from the id the log script appends last, without decoding the
 * events. Counted as skipped. Anything else is for the full decode. */
static int known_duplicate(inv_worker_t *w, const char *data, size_t len) {
  char text[48];
  inv_sid_t id;
  if (inv_payload_tail_id(data, len, text) != 0 ||
      inv_sid_parse(text, strlen(text), &id) != 0 ||
      inv_sid_cmp(id, w->seen) > 0)
    return 0;
  w->st.events_skipped++;
  return 1;
}

/* Decodes a live message and applies it (or skips it as a duplicate). */
static void take_live(inv_worker_t *w, const char *data, size_t len) {
  inv_payload_t p;
  inv_sid_t id;
  if (known_duplicate(w, data, len)) return;
  if (inv__worker_decode(w, data, len, INV_CHANNEL, &p, &id) == 0)
    inv__worker_apply(w, id, &p, 0);
  inv_payload_destroy(&p);
}

void inv__worker_on_message(inv_worker_t *w, const char *data, size_t len) {
  if (w->closing) return;
  if (inv__worker_takes_live(w)) {
    take_live(w, data, len);
    return;
  }
  /* Queued as received: it is decoded once, when drained. */
  if (w->intake == INV__IN_CATCHUP && w->resync) return; /* the next pass reads it */
  if (w->lq_len >= INV__LIVE_QUEUE_MAX) {
    /* Too much to hold: drop the queue and read the log again, which has
     * every one of these entries. */
    inv__worker_live_clear(w);
    w->resync = 1;
    if (w->intake == INV__IN_LIVE || w->intake == INV__IN_DRAIN)
      inv__worker_begin_catchup(w, 0);
    return;
  }
  inv__live_msg_t *m = malloc(sizeof(*m) + len);
  if (m == NULL) {
    inv__worker_live_clear(w);
    w->resync = 1;
    if (w->intake == INV__IN_LIVE || w->intake == INV__IN_DRAIN)
      inv__worker_begin_catchup(w, 0);
    return;
  }
  m->next = NULL;
  m->len = len;
  memcpy(m->data, data, len);
  if (w->lq_tail) w->lq_tail->next = m;
  else w->lq_head = m;
  w->lq_tail = m;
  w->lq_len++;
  if (w->intake == INV__IN_LIVE) w->intake = INV__IN_DRAIN;
}

void inv__worker_drain(inv_worker_t *w) {
  while (w->intake == INV__IN_DRAIN && w->lq_head != NULL) {
    if (inv__worker_backpressured(w)) {
      w->st.intake_paused = 1;
      return; /* resumed by progress */
    }
    inv__live_msg_t *m = w->lq_head;
    w->lq_head = m->next;
    if (w->lq_head == NULL) w->lq_tail = NULL;
    w->lq_len--;
    take_live(w, m->data, m->len);
    free(m);
  }
  w->st.intake_paused = 0;
  if (w->intake == INV__IN_DRAIN) w->intake = INV__IN_LIVE;
}

void inv__worker_progress(inv_worker_t *w) {
  if (w->closing || inv__worker_backpressured(w)) return;
  w->st.intake_paused = 0;
  if (w->intake == INV__IN_CATCHUP && w->catchup_waiting) {
    w->catchup_waiting = 0;
    inv__worker_next_page(w);
  } else if (w->intake == INV__IN_DRAIN) {
    inv__worker_drain(w);
  }
}

void inv__worker_go_idle(inv_worker_t *w) {
  w->intake = INV__IN_IDLE;
  /* The next live period verifies from a fresh base. */
  w->verify_base_valid = 0;
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

/* Cancels every scan and queued UNLINK and empties the ring. */
static void drop_work(inv_worker_t *w) {
  w->in_rewind = 1;
  inv_scanner_cancel_all(w->scn);
  inv_unlinker_clear(w->unl);
  w->in_rewind = 0;
  w->gen++;
  w->ring_head = w->ring_tail = 0;
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
