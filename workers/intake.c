/*
 * The intake state machine (see intake.h for the states and the rules).
 */
#include "workers/intake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/check.h"
#include "inval/errors.h"
#include "common/base/log.h"
#include "workers/watermark.h"

#define TAG_LOW_MASK ((UINT64_C(1) << (64 - INV_INTAKE_SHARD_BITS)) - 1)

typedef struct shard_s {
  inv_shard_state_t state;
  uint64_t gen;   /* bumped when the shard leaves or is replayed */
  int subscribed; /* SSUBSCRIBE confirmed on the current connection */
  int sub_inflight;
  int inflight;    /* a read is out (possibly of an older gen) */
  int again;       /* a hint arrived while the read was out */
  int read_failed; /* the last read failed: the tick resends it */
  int replay_due;  /* work failed: drop it and read the pending entries */
  int empty;       /* the stream did not exist at the last read */
  size_t asked;    /* count of the read out */
  inv_sid_t after; /* PENDING: the last pending id read */
  inv_sid_t acked;
  inv_watermark_t *wm;
  inv_sid_t *ids; /* ring of the open entries' ids, in order */
  size_t head, count;
} shard_t;

struct inv_intake_s {
  inv_intake_ops_t ops;
  size_t page, cap;
  int hints_up;
  char name[64];
  uint64_t transitions, replays;
  shard_t shards[INV_LOG_SHARDS];
};

static const char *const state_names[INV_SHARD_STATES] = {
    "off", "subscribing", "pending", "new", "live"};

/* legal[from][to]: the transitions of intake.h. A shard is replayed from
 * any reading state back to PENDING, and an absent stream ends a read of
 * either kind (PENDING or NEW -> LIVE). */
static const unsigned char legal[INV_SHARD_STATES][INV_SHARD_STATES] = {
    /*                 off sub pen new live */
    /* off         */ {0, 1, 0, 0, 0},
    /* subscribing */ {1, 0, 1, 0, 0},
    /* pending     */ {1, 0, 1, 1, 1},
    /* new         */ {1, 0, 1, 0, 1},
    /* live        */ {1, 0, 1, 1, 0},
};

const char *inv_shard_state_name(inv_shard_state_t s) {
  return s < INV_SHARD_STATES ? state_names[s] : "?";
}

/* The one place a shard's state changes. */
static void set_state(inv_intake_t *in, unsigned shard, inv_shard_state_t to,
                      const char *why) {
  shard_t *s = &in->shards[shard];
  INV_CHECK(legal[s->state][to]);
  inv_log_debug(in->name, "shard %u: %s -> %s (%s)", shard,
                state_names[s->state], state_names[to], why);
  s->state = to;
  in->transitions++;
}

int inv_intake_create(const inv_intake_ops_t *ops, size_t page, size_t cap,
                      const char *name, inv_intake_t **out) {
  if (page == 0 || cap < page) return INV_EINVAL;
  inv_intake_t *in = calloc(1, sizeof(*in));
  if (in == NULL) return INV_ENOMEM;
  in->ops = *ops;
  in->page = page;
  in->cap = cap;
  snprintf(in->name, sizeof(in->name), "%s", name);
  *out = in;
  return 0;
}

void inv_intake_destroy(inv_intake_t *in) {
  if (in == NULL) return;
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++) {
    inv_watermark_destroy(in->shards[i].wm);
    free(in->shards[i].ids);
  }
  free(in);
}

/* Drops the shard's open entries: their work's completions carry a stale
 * tag from now on, and they stay pending in Redis for the next reader. */
static void drop_open(inv_intake_t *in, unsigned shard) {
  shard_t *s = &in->shards[shard];
  s->gen++;
  s->again = 0;
  s->read_failed = 0;
  s->replay_due = 0;
  s->head = s->count = 0;
  if (s->wm != NULL) inv_watermark_reset(s->wm);
  if (in->ops.dropped != NULL) in->ops.dropped(in->ops.ctx, shard);
}

/* Sends the shard's read when one is due and allowed. */
static void pump(inv_intake_t *in, unsigned shard) {
  shard_t *s = &in->shards[shard];
  if ((s->state != INV_SHARD_PENDING && s->state != INV_SHARD_NEW) ||
      s->inflight || s->read_failed)
    return;
  if (in->ops.backpressured(in->ops.ctx)) return;
  size_t room = in->cap - inv_watermark_open(s->wm);
  if (room == 0) return;
  size_t count = room < in->page ? room : in->page;
  int pending = s->state == INV_SHARD_PENDING;
  if (in->ops.read(in->ops.ctx, shard, s->gen, pending,
                   pending ? s->after : (inv_sid_t){0, 0}, count) != 0) {
    s->read_failed = 1;
    return;
  }
  s->inflight = 1;
  s->asked = count;
  s->again = 0;
}

static void subscribe(inv_intake_t *in, unsigned shard) {
  shard_t *s = &in->shards[shard];
  if (!in->hints_up || s->subscribed || s->sub_inflight) return;
  if (in->ops.subscribe(in->ops.ctx, shard) == 0) s->sub_inflight = 1;
}

/* Starts reading the shard from its pending entries. */
static void begin_pending(inv_intake_t *in, unsigned shard, const char *why) {
  shard_t *s = &in->shards[shard];
  set_state(in, shard, INV_SHARD_PENDING, why);
  s->after = (inv_sid_t){0, 0};
  s->empty = 0;
  pump(in, shard);
}

static int attach(inv_intake_t *in, unsigned shard) {
  shard_t *s = &in->shards[shard];
  if (s->wm == NULL && inv_watermark_create(in->cap, &s->wm) != 0) return -1;
  if (s->ids == NULL) {
    s->ids = malloc(in->cap * sizeof(*s->ids));
    if (s->ids == NULL) return -1;
  }
  drop_open(in, shard);
  s->acked = (inv_sid_t){0, 0};
  set_state(in, shard, INV_SHARD_SUBSCRIBING, "its stream is on this node");
  /* A subscription left from an earlier attachment may have ended with
   * the slot's move: subscribing again is harmless, and its answer is
   * what starts the reading. */
  s->subscribed = 0;
  subscribe(in, shard);
  return 0;
}

static void detach(inv_intake_t *in, unsigned shard, const char *why) {
  shard_t *s = &in->shards[shard];
  if (s->state == INV_SHARD_OFF) return;
  drop_open(in, shard);
  set_state(in, shard, INV_SHARD_OFF, why);
  /* The subscription stays until the hint connection is renewed; hints of
   * an OFF shard are ignored. */
}

void inv_intake_set_wanted(inv_intake_t *in,
                           const uint8_t wanted[INV_LOG_SHARDS / 8]) {
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++) {
    int want = (wanted[i / 8] >> (i % 8)) & 1;
    shard_t *s = &in->shards[i];
    if (want && s->state == INV_SHARD_OFF) {
      if (attach(in, i) != 0)
        inv_log_error(in->name,
                      "shard %u: out of memory; attaching again "
                      "on the next map refresh",
                      i);
    } else if (!want && s->state != INV_SHARD_OFF) {
      detach(in, i, "its stream is no longer on this primary");
    }
  }
}

void inv_intake_subscribed(inv_intake_t *in, unsigned shard, int ok) {
  shard_t *s = &in->shards[shard];
  s->sub_inflight = 0;
  s->subscribed = ok;
  if (s->state == INV_SHARD_SUBSCRIBING) {
    begin_pending(in, shard, ok ? "subscribed" : "subscription refused");
  } else if (ok && s->state == INV_SHARD_LIVE) {
    /* Entries logged while no subscription was up had no hint heard. */
    set_state(in, shard, INV_SHARD_NEW, "subscribed again");
    pump(in, shard);
  }
}

void inv_intake_hints_down(inv_intake_t *in) {
  in->hints_up = 0;
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++) {
    in->shards[i].subscribed = 0;
    in->shards[i].sub_inflight = 0;
  }
}

void inv_intake_hints_up(inv_intake_t *in) {
  in->hints_up = 1;
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++)
    if (in->shards[i].state != INV_SHARD_OFF) subscribe(in, i);
}

void inv_intake_hint(inv_intake_t *in, unsigned shard) {
  shard_t *s = &in->shards[shard];
  s->empty = 0;
  switch (s->state) {
    case INV_SHARD_LIVE:
      set_state(in, shard, INV_SHARD_NEW, "hint");
      pump(in, shard);
      break;
    case INV_SHARD_PENDING:
    case INV_SHARD_NEW:
      if (s->inflight) s->again = 1;
      break;
    default:
      break; /* OFF: not ours; SUBSCRIBING: the first read covers it */
  }
}

int inv_intake_open(inv_intake_t *in, unsigned shard, uint64_t gen,
                    inv_sid_t id, uint64_t *tag) {
  shard_t *s = &in->shards[shard];
  uint64_t t;
  if (gen != s->gen ||
      (s->state != INV_SHARD_PENDING && s->state != INV_SHARD_NEW))
    return INV_EBUSY;
  if (s->count > 0) {
    /* Ids only grow within a shard; a reply that broke this would make the
     * watermark's order wrong, so the entry is left pending instead. */
    inv_sid_t last = s->ids[(s->head + s->count - 1) % in->cap];
    if (inv_sid_cmp(id, last) <= 0) return INV_EBUSY;
  }
  if (inv_watermark_add(s->wm, id, &t) != 0) return INV_EBUSY;
  s->ids[(s->head + s->count) % in->cap] = id;
  s->count++;
  *tag = ((uint64_t)shard << (64 - INV_INTAKE_SHARD_BITS)) | t;
  return 0;
}

/* Acknowledges the entries the watermark passed. */
static void advance(inv_intake_t *in, unsigned shard) {
  shard_t *s = &in->shards[shard];
  inv_sid_t done;
  size_t n = inv_watermark_advance(s->wm, &done);
  if (n == 0) return;
  INV_CHECK(n <= s->count);
  while (n > 0) {
    /* The ring may wrap: one XACK per contiguous run. */
    size_t run = in->cap - s->head;
    if (run > n) run = n;
    in->ops.ack(in->ops.ctx, shard, s->ids + s->head, run);
    s->head = (s->head + run) % in->cap;
    s->count -= run;
    n -= run;
  }
  s->acked = done;
  /* Room freed in the watermark may let a due read go. */
  pump(in, shard);
}

void inv_intake_read_done(inv_intake_t *in, unsigned shard, uint64_t gen,
                          inv_read_outcome_t outcome, size_t n,
                          inv_sid_t last) {
  shard_t *s = &in->shards[shard];
  s->inflight = 0;
  if (gen != s->gen) {
    pump(in, shard); /* a read of the shard's new generation may be due */
    return;
  }
  switch (outcome) {
    case INV_READ_OK:
      if (s->state == INV_SHARD_PENDING) {
        if (n == 0)
          set_state(in, shard, INV_SHARD_NEW, "pending entries read");
        else
          s->after = last;
      } else if (s->state == INV_SHARD_NEW && n < s->asked && !s->again) {
        set_state(in, shard, INV_SHARD_LIVE, "read to the end");
      }
      break;
    case INV_READ_RETRY:
      break;
    case INV_READ_EMPTY:
      s->empty = 1;
      /* A hint heard while the read was out means the stream was made after
       * Redis answered: read again rather than wait for the periodic read. */
      if (s->again) {
        s->empty = 0;
        if (s->state == INV_SHARD_PENDING)
          set_state(in, shard, INV_SHARD_NEW,
                    "hint during a read of no stream");
      } else if (s->state == INV_SHARD_PENDING || s->state == INV_SHARD_NEW) {
        set_state(in, shard, INV_SHARD_LIVE, "no stream yet");
      }
      break;
    case INV_READ_FAILED:
      s->read_failed = 1;
      return;
    case INV_READ_MOVED:
      detach(in, shard, "its stream answered from another node");
      return;
  }
  advance(in, shard);
  pump(in, shard);
}

static shard_t *tag_shard(inv_intake_t *in, uint64_t tag, uint64_t *low) {
  *low = tag & TAG_LOW_MASK;
  shard_t *s = &in->shards[INV_INTAKE_TAG_SHARD(tag)];
  return s->wm != NULL ? s : NULL;
}

int inv_intake_op_begin(inv_intake_t *in, uint64_t tag) {
  uint64_t low;
  shard_t *s = tag_shard(in, tag, &low);
  return s != NULL && inv_watermark_op_begin(s->wm, low);
}

int inv_intake_op_done(inv_intake_t *in, uint64_t tag) {
  uint64_t low;
  shard_t *s = tag_shard(in, tag, &low);
  if (s == NULL || !inv_watermark_op_done(s->wm, low)) return 0;
  advance(in, INV_INTAKE_TAG_SHARD(tag));
  return 1;
}

int inv_intake_op_failed(inv_intake_t *in, uint64_t tag) {
  uint64_t low;
  shard_t *s = tag_shard(in, tag, &low);
  if (s == NULL || !inv_watermark_op_failed(s->wm, low)) return 0;
  s->replay_due = 1;
  return 1;
}

void inv_intake_tick(inv_intake_t *in, int poll_live) {
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++) {
    shard_t *s = &in->shards[i];
    if (s->state == INV_SHARD_OFF) continue;
    if (s->replay_due) {
      inv_log_warn(in->name,
                   "shard %u: work failed; reading its pending "
                   "entries again",
                   i);
      in->replays++;
      drop_open(in, i);
      begin_pending(in, i, "replay of failed work");
      continue;
    }
    subscribe(in, i);
    if (s->state == INV_SHARD_SUBSCRIBING && !in->hints_up) {
      begin_pending(in, i, "no hint connection");
      continue;
    }
    s->read_failed = 0;
    /* A shard with no stream yet is read too: while its slot migrates,
     * the stream may be made on the importing node, whose hints this
     * worker does not hear. */
    if (s->state == INV_SHARD_LIVE && poll_live && s->count == 0) {
      /* With nothing open, the periodic read starts from the pending
       * entries: an entry delivered to another reader that dropped it (an
       * old owner still reading after a reshard or a promotion, its reads
       * following MOVED) stays pending, and is applied here. */
      begin_pending(in, i, "periodic read");
      continue;
    }
    if (s->state == INV_SHARD_LIVE &&
        (poll_live || (!s->subscribed && !s->empty)))
      set_state(in, i, INV_SHARD_NEW,
                poll_live ? "periodic read" : "unsubscribed");
    pump(in, i);
  }
}

void inv_intake_resume(inv_intake_t *in) {
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++) pump(in, i);
}

inv_shard_state_t inv_intake_state(const inv_intake_t *in, unsigned shard) {
  return in->shards[shard].state;
}

inv_sid_t inv_intake_acked(const inv_intake_t *in, unsigned shard) {
  return in->shards[shard].acked;
}

inv_sid_t inv_intake_last_acked(const inv_intake_t *in) {
  inv_sid_t top = {0, 0};
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++)
    if (in->shards[i].state != INV_SHARD_OFF &&
        inv_sid_cmp(in->shards[i].acked, top) > 0)
      top = in->shards[i].acked;
  return top;
}

size_t inv_intake_attached(const inv_intake_t *in) {
  size_t n = 0;
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++)
    n += in->shards[i].state != INV_SHARD_OFF;
  return n;
}

size_t inv_intake_live(const inv_intake_t *in) {
  size_t n = 0;
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++)
    n += in->shards[i].state == INV_SHARD_LIVE;
  return n;
}

size_t inv_intake_open_entries(const inv_intake_t *in) {
  size_t n = 0;
  for (unsigned i = 0; i < INV_LOG_SHARDS; i++)
    if (in->shards[i].wm != NULL) n += inv_watermark_open(in->shards[i].wm);
  return n;
}

uint64_t inv_intake_transitions(const inv_intake_t *in) {
  return in->transitions;
}

uint64_t inv_intake_replays(const inv_intake_t *in) { return in->replays; }
