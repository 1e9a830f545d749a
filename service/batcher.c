/*
 * The batcher. Batches move OPEN -> READY (closed, FIFO) -> INFLIGHT (sent)
 * -> answered and freed. A batch that times out while INFLIGHT is answered
 * with EUNAVAIL at once and freed, its sink call detached: the sink keeps
 * its own copies of what it writes and frees them with the last answer.
 *
 * While INFLIGHT, each request is answered as soon as the log shards its
 * events went to have answered: acked when all of them succeeded, failed
 * at the first failure. A batch that mixes requests for a healthy node and
 * for a failed one thus delays only the latter (the blast radius of a node
 * is the requests that touch its shards).
 *
 * Batches close in order and are sent in order, so every INFLIGHT batch
 * closed before every READY one: the oldest deadline is the head of the
 * INFLIGHT list, or else the head of the READY list. One timer serves all
 * deadlines.
 */
#include "service/batcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/buf.h"
#include "inval/errors.h"
#include "common/base/check.h"
#include "common/base/log.h"
#include "common/base/queue.h"
#include "proto/log_shard.h"
#include "proto/stream_id.h"

typedef enum { BATCH_OPEN, BATCH_READY, BATCH_INFLIGHT } batch_state_t;

/* One request waiting in a batch. */
typedef struct batch_req_s {
  inv_batcher_done_cb cb;
  void *data;
  size_t nevents;
  uint64_t t0_us;
  int notify;
  int answered;
  uint64_t mask;    /* the shards its events went to, once sent */
  unsigned waiting; /* of those, shards that have not answered yet */
} batch_req_t;

typedef struct batch_s {
  inv_queue_t node; /* in the READY or INFLIGHT list */
  inv_batcher_t *b;
  batch_state_t state;
  inv_sink_call_t *call; /* while INFLIGHT */
  int failed;            /* a shard write failed */
  uint64_t written;      /* shards whose entry is confirmed */
  char ids[INV_LOG_SHARDS][INV_SID_STRLEN]; /* their entry ids */
  uint64_t deadline_us;                     /* set when the batch closes */
  size_t nevents;
  batch_req_t *reqs; /* owned */
  size_t nreqs, capreqs;
  inv_buf_t events;     /* the packed events, back to back */
  inv_sink_event_t *ev; /* per event: bytes in events, shard */
  size_t capev;
} batch_t;

typedef struct batch_list_s {
  inv_queue_t q;
  size_t count;
} batch_list_t;

struct inv_batcher_s {
  uv_loop_t *loop;
  inv_batcher_opts_t opts;
  const inv_sink_ops_t *sink;
  void *sink_data;
  inv_pub_stats_t *stats;
  inv_latency_obs_t *latency;

  batch_t *open;
  batch_list_t ready, inflight;
  size_t pending;
  int paused;

  int draining;
  void (*drain_cb)(void *data);
  void *drain_data;

  uv_timer_t delay_timer; /* batch_delay_us >= 1000 */
  uv_check_t check;       /* batch_delay_us < 1000 */
  uv_timer_t deadline_timer;
  uv_timer_t drain_timer;    /* defers drain_cb out of inv_batcher_drain */
  uv_timer_t topology_timer; /* sends again once the sink knows the topology */
  int handles_open;
};

static void list_push(batch_list_t *l, batch_t *x) {
  inv_queue_insert_tail(&l->q, &x->node);
  l->count++;
}

static void list_remove(batch_list_t *l, batch_t *x) {
  INV_CHECK(l->count > 0 && inv_queue_linked(&x->node));
  inv_queue_remove(&x->node);
  l->count--;
}

/* The oldest batch of l, or NULL. */
static batch_t *list_head(const batch_list_t *l) {
  inv_queue_t *q = inv_queue_head(&l->q);
  return q != NULL ? INV_QUEUE_DATA(q, batch_t, node) : NULL;
}

static void batch_free(batch_t *x) {
  if (x == NULL) return;
  free(x->reqs);
  free(x->ev);
  inv_buf_free(&x->events);
  free(x);
}

static void batcher_pump(inv_batcher_t *b);
static void batcher_arm_deadline(inv_batcher_t *b);
static void batcher_drain_timer_cb(uv_timer_t *t);

/* Reports pressure to the owner's hook, once per change. */
static void batcher_set_paused(inv_batcher_t *b, int paused) {
  if (b->paused == paused) return;
  b->paused = paused;
  if (paused) b->stats->backpressure_pauses++;
  if (b->opts.pressure_cb != NULL)
    b->opts.pressure_cb(b->opts.pressure_data, paused);
  inv_log_debug("batcher", "%s reading: %zu events pending",
                paused ? "paused" : "resumed", b->pending);
}

/* Lowers the pending count after n events were answered, resumes reading
 * once half the bound is free, and finishes a drain that has nothing left. */
static void batcher_release(inv_batcher_t *b, size_t n) {
  INV_CHECK(n <= b->pending);
  b->pending -= n;
  if (b->paused && b->pending <= b->opts.max_pending_events / 2)
    batcher_set_paused(b, 0);
  /* The drain callback runs from the batcher's own timer, never from
   * inside a sink or server callback, so it may close anything. */
  if (b->draining && b->pending == 0 && b->drain_cb != NULL)
    uv_timer_start(&b->drain_timer, batcher_drain_timer_cb, 0, 0);
}

/* Returns 1 when stream id a is after b, by (ms, seq). Both come from
 * Redis replies of at most 47 bytes. */
static int id_after(const char *a, const char *b) {
  unsigned long long ams = 0, aseq = 0, bms = 0, bseq = 0;
  sscanf(a, "%llu-%llu", &ams, &aseq);
  sscanf(b, "%llu-%llu", &bms, &bseq);
  return ams > bms || (ams == bms && aseq > bseq);
}

/* Completes request r of x with success: the ids of the shards its events
 * went to, in shard order, and the largest of them. */
static void batch_req_ack(inv_batcher_t *b, batch_t *x, batch_req_t *r) {
  inv_payload_id_t ids[INV_LOG_SHARDS];
  size_t n = 0, largest = 0;
  for (unsigned k = 0; k < INV_LOG_SHARDS; k++)
    if (r->mask >> k & 1) {
      ids[n].shard = k;
      memcpy(ids[n].id, x->ids[k], sizeof(ids[n].id));
      if (n > 0 && id_after(ids[n].id, ids[largest].id)) largest = n;
      n++;
    }
  inv_batcher_result_t res = {.nevents = r->nevents,
                              .id = n > 0 ? ids[largest].id : "",
                              .ids = ids,
                              .nids = n};
  uint64_t now = inv_now_us();
  inv_latency_observe(b->latency, now, now - r->t0_us);
  b->stats->events_acked += r->nevents;
  r->answered = 1;
  r->cb(r->data, &res);
}

/* Completes request r with err (an INV_E* code) and msg. */
static void batch_req_fail(inv_batcher_t *b, batch_req_t *r, int err,
                           const char *msg) {
  if (r->notify) b->stats->notifications_failed++;
  b->stats->events_rejected += r->nevents;
  r->answered = 1;
  inv_batcher_result_t res = {.err = err, .msg = msg, .nevents = r->nevents};
  r->cb(r->data, &res);
}

/* Answers every request of x not answered yet with err and msg, counts the
 * batch failed and releases its pending events. */
static void batch_fail(inv_batcher_t *b, batch_t *x, int err, const char *msg) {
  size_t n = 0;
  for (size_t i = 0; i < x->nreqs; i++)
    if (!x->reqs[i].answered) {
      n += x->reqs[i].nevents;
      batch_req_fail(b, &x->reqs[i], err, msg);
    }
  b->stats->batches_failed++;
  INV_CHECK(n <= b->pending);
  b->pending -= n;
}

static void batch_sink_cb(void *data, unsigned shard, int err, const char *id,
                          size_t idlen, const char *msg, int last) {
  batch_t *x = data;
  inv_batcher_t *b = x->b;
  uint64_t bit = (uint64_t)1 << shard;
  size_t released = 0;
  if (err == 0) {
    snprintf(x->ids[shard], sizeof(x->ids[shard]), "%.*s", (int)idlen, id);
    x->written |= bit;
  } else if (!x->failed) {
    x->failed = 1;
    inv_log_warn("batcher", "batch of %zu events: %s", x->nevents, msg);
  }
  for (size_t i = 0; i < x->nreqs; i++) {
    batch_req_t *r = &x->reqs[i];
    if (r->answered || !(r->mask & bit)) continue;
    if (err != 0) {
      batch_req_fail(b, r, INV_EUNAVAIL, msg);
      released += r->nevents;
    } else if (--r->waiting == 0) {
      batch_req_ack(b, x, r);
      released += r->nevents;
    }
  }
  if (!last) {
    if (released > 0) batcher_release(b, released);
    return;
  }
  list_remove(&b->inflight, x);
  if (x->failed) {
    b->stats->batches_failed++;
  } else {
    b->stats->batches++;
    b->stats->batch_events_total += x->nevents;
  }
  batch_free(x);
  batcher_pump(b);
  batcher_arm_deadline(b);
  if (released > 0) batcher_release(b, released);
}

/* Sets each request's shard mask before x is sent. */
static void batch_route(inv_batcher_t *b, batch_t *x) {
  size_t e = 0;
  for (size_t i = 0; i < x->nreqs; i++) {
    batch_req_t *r = &x->reqs[i];
    r->mask = 0;
    for (size_t k = 0; k < r->nevents; k++, e++)
      r->mask |= b->sink->route_mask(b->sink_data, x->ev[e].shard);
    r->waiting = (unsigned)__builtin_popcountll(r->mask);
  }
}

static void batcher_topology_cb(uv_timer_t *t);

/* Sends READY batches while in-flight slots are free. A batch the sink
 * cannot take is failed at once. Until the sink knows whether Redis is a
 * cluster (a fresh publisher's first milliseconds), batches wait, READY,
 * and the pump looks again every 10 ms: routing one then would put every
 * event in shard 0 (standalone) and an unpinned pattern would reach one
 * node only. Their deadlines run meanwhile. */
static void batcher_pump(inv_batcher_t *b) {
  if (list_head(&b->ready) != NULL && !b->sink->ready(b->sink_data)) {
    if (!uv_is_active((uv_handle_t *)&b->topology_timer))
      uv_timer_start(&b->topology_timer, batcher_topology_cb, 10, 0);
    return;
  }
  batch_t *x;
  while (b->inflight.count < b->opts.max_inflight_batches &&
         (x = list_head(&b->ready)) != NULL) {
    list_remove(&b->ready, x);
    batch_route(b, x);
    int rc =
        b->sink->send(b->sink_data, x->events.data, x->events.len, x->ev,
                      x->nevents, inv_wall_ms(), batch_sink_cb, x, &x->call);
    if (rc < 0) {
      batch_fail(b, x, rc == INV_ESHUTDOWN ? INV_ESHUTDOWN : INV_EUNAVAIL,
                 inv_strerror(rc));
      batch_free(x);
      batcher_release(b, 0);
      continue;
    }
    x->state = BATCH_INFLIGHT;
    list_push(&b->inflight, x);
  }
}

/* Closes the open batch (if any) and sends what the in-flight bound allows. */
static void batcher_close_open(inv_batcher_t *b) {
  batch_t *x = b->open;
  if (x == NULL) return;
  b->open = NULL;
  uv_timer_stop(&b->delay_timer);
  uv_check_stop(&b->check);
  x->state = BATCH_READY;
  x->deadline_us = inv_now_us() + b->opts.timeout_ms * 1000;
  list_push(&b->ready, x);
  batcher_pump(b);
  batcher_arm_deadline(b);
}

static void batcher_delay_cb(uv_timer_t *t) { batcher_close_open(t->data); }

static void batcher_topology_cb(uv_timer_t *t) { batcher_pump(t->data); }

static void batcher_check_cb(uv_check_t *c) { batcher_close_open(c->data); }

/* Fails every batch whose deadline has passed. */
static void batcher_deadline_cb(uv_timer_t *t) {
  inv_batcher_t *b = t->data;
  uint64_t now = inv_now_us();
  char msg[480], node[320];
  batch_t *x;
  while ((x = list_head(&b->inflight)) != NULL && x->deadline_us <= now) {
    list_remove(&b->inflight, x);
    b->sink->call_describe(x->call, node, sizeof(node));
    snprintf(msg, sizeof(msg),
             "Redis did not confirm the batch within %llu ms (%s)",
             (unsigned long long)b->opts.timeout_ms, node);
    inv_log_warn("batcher", "batch of %zu events timed out in flight",
                 x->nevents);
    batch_fail(b, x, INV_EUNAVAIL, msg);
    b->sink->call_detach(x->call);
    batch_free(x);
    batcher_release(b, 0);
  }
  snprintf(msg, sizeof(msg),
           "Redis did not confirm the batch within %llu ms (it waited for "
           "a free in-flight slot)",
           (unsigned long long)b->opts.timeout_ms);
  while ((x = list_head(&b->ready)) != NULL && x->deadline_us <= now) {
    list_remove(&b->ready, x);
    inv_log_warn("batcher", "batch of %zu events timed out before sending",
                 x->nevents);
    batch_fail(b, x, INV_EUNAVAIL, msg);
    batch_free(x);
    batcher_release(b, 0);
  }
  batcher_pump(b);
  batcher_arm_deadline(b);
}

static void batcher_arm_deadline(inv_batcher_t *b) {
  batch_t *x = list_head(&b->inflight) != NULL ? list_head(&b->inflight)
                                               : list_head(&b->ready);
  if (x == NULL) {
    uv_timer_stop(&b->deadline_timer);
    return;
  }
  uint64_t now = inv_now_us();
  uint64_t ms = x->deadline_us > now ? (x->deadline_us - now + 999) / 1000 : 0;
  uv_timer_start(&b->deadline_timer, batcher_deadline_cb, ms, 0);
}

int inv_batcher_create(uv_loop_t *loop, const inv_batcher_opts_t *opts,
                       const inv_sink_ops_t *sink, void *sink_data,
                       inv_pub_stats_t *stats, inv_latency_obs_t *latency,
                       inv_batcher_t **out) {
  inv_batcher_t *b = calloc(1, sizeof(*b));
  if (b == NULL) return INV_ENOMEM;
  inv_queue_init(&b->ready.q);
  inv_queue_init(&b->inflight.q);
  b->loop = loop;
  b->opts = *opts;
  if (b->opts.batch_max_events == 0) b->opts.batch_max_events = 1;
  if (b->opts.max_inflight_batches == 0) b->opts.max_inflight_batches = 1;
  if (b->opts.max_pending_events == 0) b->opts.max_pending_events = 1;
  b->sink = sink;
  b->sink_data = sink_data;
  b->stats = stats;
  b->latency = latency;
  uv_timer_init(loop, &b->delay_timer);
  uv_check_init(loop, &b->check);
  uv_timer_init(loop, &b->deadline_timer);
  uv_timer_init(loop, &b->drain_timer);
  uv_timer_init(loop, &b->topology_timer);
  b->delay_timer.data = b->check.data = b;
  b->deadline_timer.data = b->drain_timer.data = b;
  b->topology_timer.data = b;
  b->handles_open = 5;
  *out = b;
  return 0;
}

/* Returns 1 when every event of req lies inside its packed bytes. */
static int req_valid(const inv_batcher_req_t *req) {
  if (req->nevents == 0 || req->cb == NULL) return 0;
  for (size_t i = 0; i < req->nevents; i++) {
    const inv_sink_event_t *e = &req->ev[i];
    if (e->off > req->events_len || e->len > req->events_len - e->off) return 0;
  }
  return 1;
}

/* Makes room in the open batch (opened if need be) for one more request
 * of n events, so that adding it cannot fail. Returns 0 or INV_ENOMEM. */
static int batch_open_room(inv_batcher_t *b, size_t n, size_t bytes) {
  if (b->open == NULL) {
    batch_t *x = calloc(1, sizeof(*x));
    if (x == NULL) return INV_ENOMEM;
    x->b = b;
    x->state = BATCH_OPEN;
    b->open = x;
  }
  batch_t *x = b->open;
  if (x->nreqs == x->capreqs) {
    size_t cap = x->capreqs ? 2 * x->capreqs : 8;
    batch_req_t *r = realloc(x->reqs, cap * sizeof(*r));
    if (r == NULL) return INV_ENOMEM;
    x->reqs = r;
    x->capreqs = cap;
  }
  if (x->nevents + n > x->capev) {
    size_t cap = x->capev ? 2 * x->capev : 64;
    while (cap < x->nevents + n) cap *= 2;
    inv_sink_event_t *ev = realloc(x->ev, cap * sizeof(*ev));
    if (ev == NULL) return INV_ENOMEM;
    x->ev = ev;
    x->capev = cap;
  }
  return inv_buf_reserve(&x->events, bytes) < 0 ? INV_ENOMEM : 0;
}

/* Counts n more pending events and reports pressure at the bound. */
static void batcher_hold(inv_batcher_t *b, size_t n) {
  b->pending += n;
  if (b->pending >= b->opts.max_pending_events) batcher_set_paused(b, 1);
}

int inv_batcher_submit(inv_batcher_t *b, const inv_batcher_req_t *req) {
  if (!req_valid(req)) return INV_EINVAL;
  if (b->draining) return INV_ESHUTDOWN;
  size_t n = req->nevents;
  if (b->pending > 0 && b->pending + n > b->opts.max_pending_events)
    return INV_EBUSY;
  if (b->open != NULL && b->open->nevents + n > b->opts.batch_max_events)
    batcher_close_open(b);
  int rc = batch_open_room(b, n, req->events_len);
  if (rc < 0) return rc;
  batch_t *x = b->open;
  size_t base = x->events.len;
  (void)inv_buf_append(&x->events, req->events, req->events_len);
  for (size_t i = 0; i < n; i++) {
    x->ev[x->nevents + i] = req->ev[i];
    x->ev[x->nevents + i].off += base;
  }
  x->reqs[x->nreqs++] = (batch_req_t){.cb = req->cb,
                                      .data = req->data,
                                      .nevents = n,
                                      .t0_us = req->t0_us,
                                      .notify = req->notify};
  x->nevents += n;
  batcher_hold(b, n);
  if (x->nevents >= b->opts.batch_max_events) {
    batcher_close_open(b);
  } else if (x->nreqs == 1) {
    if (b->opts.batch_delay_us < 1000)
      uv_check_start(&b->check, batcher_check_cb);
    else
      uv_timer_start(&b->delay_timer, batcher_delay_cb,
                     (b->opts.batch_delay_us + 999) / 1000, 0);
  }
  return 0;
}

size_t inv_batcher_pending(const inv_batcher_t *b) { return b->pending; }

size_t inv_batcher_inflight(const inv_batcher_t *b) {
  return b->inflight.count;
}

int inv_batcher_paused(const inv_batcher_t *b) { return b->paused; }

static void batcher_drain_timer_cb(uv_timer_t *t) {
  inv_batcher_t *b = t->data;
  if (b->pending == 0 && b->drain_cb != NULL) {
    void (*cb)(void *) = b->drain_cb;
    b->drain_cb = NULL;
    cb(b->drain_data);
  }
}

void inv_batcher_drain(inv_batcher_t *b, void (*done_cb)(void *data),
                       void *data) {
  b->draining = 1;
  b->drain_cb = done_cb;
  b->drain_data = data;
  batcher_set_paused(b, 0);
  batcher_close_open(b);
  if (b->pending == 0)
    uv_timer_start(&b->drain_timer, batcher_drain_timer_cb, 0, 0);
}

static void batcher_handle_closed(uv_handle_t *h) {
  inv_batcher_t *b = h->data;
  if (--b->handles_open == 0) free(b);
}

/* Fails and frees every batch of list l (abandoning in-flight ones). */
static void batcher_fail_list(inv_batcher_t *b, batch_list_t *l, int abandon) {
  batch_t *x;
  while ((x = list_head(l)) != NULL) {
    list_remove(l, x);
    batch_fail(b, x, INV_ESHUTDOWN, "the publisher is shutting down");
    if (abandon) b->sink->call_detach(x->call);
    batch_free(x);
  }
}

void inv_batcher_close(inv_batcher_t *b) {
  if (b == NULL) return;
  if (b->open != NULL) {
    batch_t *x = b->open;
    b->open = NULL;
    batch_fail(b, x, INV_ESHUTDOWN, "the publisher is shutting down");
    batch_free(x);
  }
  batcher_fail_list(b, &b->ready, 0);
  batcher_fail_list(b, &b->inflight, 1);
  b->drain_cb = NULL;
  uv_close((uv_handle_t *)&b->delay_timer, batcher_handle_closed);
  uv_close((uv_handle_t *)&b->check, batcher_handle_closed);
  uv_close((uv_handle_t *)&b->deadline_timer, batcher_handle_closed);
  uv_close((uv_handle_t *)&b->drain_timer, batcher_handle_closed);
  uv_close((uv_handle_t *)&b->topology_timer, batcher_handle_closed);
}
