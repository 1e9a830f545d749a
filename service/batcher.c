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

#include "common/buf.h"
#include "inval/errors.h"
#include "common/log.h"
#include "proto/codec.h"
#include "proto/event.h"
#include "proto/log_shard.h"

typedef enum { BATCH_OPEN, BATCH_READY, BATCH_INFLIGHT } batch_state_t;

/* One request waiting in a batch. */
typedef struct batch_req_s {
  inv_rpc_req_t *req;
  size_t nevents;
  uint64_t t0_us;
  int notify;
  int answered;
  uint64_t mask;    /* the shards its events went to, once sent */
  unsigned waiting; /* of those, shards that have not answered yet */
} batch_req_t;

typedef struct batch_s {
  struct batch_s *prev, *next; /* in the READY or INFLIGHT list */
  inv_batcher_t *b;
  batch_state_t state;
  inv_sink_call_t *call;       /* while INFLIGHT */
  int failed;                  /* a shard write failed */
  uint64_t written;            /* shards whose entry is confirmed */
  char ids[INV_LOG_SHARDS][48]; /* their entry ids */
  uint64_t deadline_us;        /* set when the batch closes */
  size_t nevents;
  batch_req_t *reqs;           /* owned */
  size_t nreqs, capreqs;
  inv_buf_t events;            /* the packed events, back to back */
  inv_sink_event_t *ev;        /* per event: bytes in events, shard */
  size_t capev;
} batch_t;

typedef struct batch_list_s {
  batch_t *head, *tail;
  size_t count;
} batch_list_t;

struct inv_batcher_s {
  uv_loop_t *loop;
  inv_batcher_opts_t opts;
  inv_sink_t *sink;
  inv_rpc_server_t *server;
  inv_pub_stats_t *stats;
  inv_latency_obs_t *latency;

  batch_t *open;
  batch_list_t ready, inflight;
  size_t pending;
  int paused;

  msgpack_packer pk;         /* writes into open->events during begin/commit */
  batch_req_t staged;        /* the request between begin and commit */
  size_t staged_added;       /* its events added so far */

  int draining;
  void (*drain_cb)(void *data);
  void *drain_data;

  uv_timer_t delay_timer;    /* batch_delay_us >= 1000 */
  uv_check_t check;          /* batch_delay_us < 1000 */
  uv_timer_t deadline_timer;
  uv_timer_t drain_timer;    /* defers drain_cb out of inv_batcher_drain */
  uv_timer_t topology_timer; /* sends again once the sink knows the topology */
  int handles_open;
};

static void list_push(batch_list_t *l, batch_t *x) {
  x->next = NULL;
  x->prev = l->tail;
  if (l->tail != NULL) l->tail->next = x;
  else l->head = x;
  l->tail = x;
  l->count++;
}

static void list_remove(batch_list_t *l, batch_t *x) {
  if (x->prev != NULL) x->prev->next = x->next;
  else l->head = x->next;
  if (x->next != NULL) x->next->prev = x->prev;
  else l->tail = x->prev;
  x->prev = x->next = NULL;
  l->count--;
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

/* Lowers the pending count after n events were answered, resumes reading
 * once half the bound is free, and finishes a drain that has nothing left. */
static void batcher_release(inv_batcher_t *b, size_t n) {
  b->pending -= n;
  if (b->paused && b->pending <= b->opts.max_pending_events / 2) {
    b->paused = 0;
    if (b->server != NULL) inv_rpc_server_pause(b->server, 0);
    inv_log_debug("batcher", "resumed reading: %zu events pending",
                  b->pending);
  }
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

/* Acks request r of x: {"id": the largest of its entries' ids, "accepted":
 * n, "ids": [[shard, id], ...] of the shards its events went to}. */
static void batch_req_ack(inv_batcher_t *b, batch_t *x, batch_req_t *r) {
  unsigned n = 0, largest = 0;
  for (unsigned k = 0; k < INV_LOG_SHARDS; k++)
    if (r->mask >> k & 1) {
      if (n == 0 || id_after(x->ids[k], x->ids[largest])) largest = k;
      n++;
    }
  msgpack_packer *pk = inv_rpc_reply_begin(r->req);
  msgpack_pack_map(pk, 3);
  inv_pack_str(pk, "id");
  inv_pack_str(pk, x->ids[largest]);
  inv_pack_str(pk, "accepted");
  msgpack_pack_uint64(pk, r->nevents);
  inv_pack_str(pk, "ids");
  msgpack_pack_array(pk, n);
  for (unsigned k = 0; k < INV_LOG_SHARDS; k++)
    if (r->mask >> k & 1) {
      msgpack_pack_array(pk, 2);
      msgpack_pack_unsigned_int(pk, k);
      inv_pack_str(pk, x->ids[k]);
    }
  inv_rpc_reply_end(r->req);
  uint64_t now = inv_now_us();
  inv_latency_observe(b->latency, now, now - r->t0_us);
  b->stats->events_acked += r->nevents;
  r->answered = 1;
}

/* Fails request r with err (an INV_E* code) and msg. */
static void batch_req_fail(inv_batcher_t *b, batch_req_t *r, int err,
                           const char *msg) {
  if (r->notify) b->stats->notifications_failed++;
  inv_rpc_reply_error(r->req, err, "%s", msg);
  b->stats->events_rejected += r->nevents;
  r->answered = 1;
}

/* Answers every request of x not answered yet with err and msg, counts the
 * batch failed and releases its pending events. */
static void batch_fail(inv_batcher_t *b, batch_t *x, int err,
                       const char *msg) {
  size_t n = 0;
  for (size_t i = 0; i < x->nreqs; i++)
    if (!x->reqs[i].answered) {
      n += x->reqs[i].nevents;
      batch_req_fail(b, &x->reqs[i], err, msg);
    }
  b->stats->batches_failed++;
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
      r->mask |= inv_sink_route_mask(b->sink, x->ev[e].shard);
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
  if (b->ready.head != NULL && !inv_sink_ready(b->sink)) {
    if (!uv_is_active((uv_handle_t *)&b->topology_timer))
      uv_timer_start(&b->topology_timer, batcher_topology_cb, 10, 0);
    return;
  }
  while (b->ready.head != NULL &&
         b->inflight.count < b->opts.max_inflight_batches) {
    batch_t *x = b->ready.head;
    list_remove(&b->ready, x);
    batch_route(b, x);
    int rc = inv_sink_send(b->sink, x->events.data, x->events.len, x->ev,
                           x->nevents, inv_wall_ms(), batch_sink_cb, x,
                           &x->call);
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

static void batcher_delay_cb(uv_timer_t *t) {
  batcher_close_open(t->data);
}

static void batcher_topology_cb(uv_timer_t *t) { batcher_pump(t->data); }

static void batcher_check_cb(uv_check_t *c) { batcher_close_open(c->data); }

/* Fails every batch whose deadline has passed. */
static void batcher_deadline_cb(uv_timer_t *t) {
  inv_batcher_t *b = t->data;
  uint64_t now = inv_now_us();
  char msg[480], node[320];
  while (b->inflight.head != NULL && b->inflight.head->deadline_us <= now) {
    batch_t *x = b->inflight.head;
    list_remove(&b->inflight, x);
    inv_sink_call_describe(x->call, node, sizeof(node));
    snprintf(msg, sizeof(msg),
             "Redis did not confirm the batch within %llu ms (%s)",
             (unsigned long long)b->opts.timeout_ms, node);
    inv_log_warn("batcher", "batch of %zu events timed out in flight",
                 x->nevents);
    batch_fail(b, x, INV_EUNAVAIL, msg);
    inv_sink_call_detach(x->call);
    batch_free(x);
    batcher_release(b, 0);
  }
  snprintf(msg, sizeof(msg),
           "Redis did not confirm the batch within %llu ms (it waited for "
           "a free in-flight slot)", (unsigned long long)b->opts.timeout_ms);
  while (b->ready.head != NULL && b->ready.head->deadline_us <= now) {
    batch_t *x = b->ready.head;
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
  batch_t *x = b->inflight.head != NULL ? b->inflight.head : b->ready.head;
  if (x == NULL) {
    uv_timer_stop(&b->deadline_timer);
    return;
  }
  uint64_t now = inv_now_us();
  uint64_t ms = x->deadline_us > now ? (x->deadline_us - now + 999) / 1000 : 0;
  uv_timer_start(&b->deadline_timer, batcher_deadline_cb, ms, 0);
}

int inv_batcher_create(uv_loop_t *loop, const inv_batcher_opts_t *opts,
                       inv_sink_t *sink, inv_rpc_server_t *server,
                       inv_pub_stats_t *stats, inv_latency_obs_t *latency,
                       inv_batcher_t **out) {
  inv_batcher_t *b = calloc(1, sizeof(*b));
  if (b == NULL) return INV_ENOMEM;
  b->loop = loop;
  b->opts = *opts;
  if (b->opts.batch_max_events == 0) b->opts.batch_max_events = 1;
  if (b->opts.max_inflight_batches == 0) b->opts.max_inflight_batches = 1;
  if (b->opts.max_pending_events == 0) b->opts.max_pending_events = 1;
  b->sink = sink;
  b->server = server;
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

void inv_batcher_set_server(inv_batcher_t *b, inv_rpc_server_t *server) {
  b->server = server;
}

int inv_batcher_begin(inv_batcher_t *b, inv_rpc_req_t *req, size_t nevents,
                      uint64_t t0_us) {
  if (b->draining) return INV_ESHUTDOWN;
  if (b->pending > 0 && b->pending + nevents > b->opts.max_pending_events)
    return INV_EBUSY;
  if (b->open != NULL &&
      b->open->nevents + nevents > b->opts.batch_max_events)
    batcher_close_open(b);
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
  if (x->nevents + nevents > x->capev) {
    /* Room for every event now, so that inv_batcher_add cannot fail. */
    size_t cap = x->capev ? 2 * x->capev : 64;
    while (cap < x->nevents + nevents) cap *= 2;
    inv_sink_event_t *ev = realloc(x->ev, cap * sizeof(*ev));
    if (ev == NULL) return INV_ENOMEM;
    x->ev = ev;
    x->capev = cap;
  }
  b->staged.req = req;
  b->staged.nevents = nevents;
  b->staged.t0_us = t0_us;
  b->staged.notify = inv_rpc_req_is_notify(req);
  b->staged_added = 0;
  msgpack_packer_init(&b->pk, &x->events, inv_buf_msgpack_write);
  return 0;
}

void inv_batcher_add(inv_batcher_t *b, const inv_event_t *ev) {
  batch_t *x = b->open;
  inv_sink_event_t *e = &x->ev[x->nevents + b->staged_added++];
  e->off = x->events.len;
  inv_event_pack(&b->pk, ev);
  e->len = x->events.len - e->off;
  e->shard = inv_log_event_shard(ev);
}

void inv_batcher_commit(inv_batcher_t *b) {
  batch_t *x = b->open;
  x->reqs[x->nreqs++] = b->staged;
  x->nevents += b->staged.nevents;
  b->pending += b->staged.nevents;
  if (b->pending >= b->opts.max_pending_events && !b->paused) {
    b->paused = 1;
    b->stats->backpressure_pauses++;
    if (b->server != NULL) inv_rpc_server_pause(b->server, 1);
    inv_log_debug("batcher", "paused reading: %zu events pending",
                  b->pending);
  }
  if (x->nevents >= b->opts.batch_max_events) {
    batcher_close_open(b);
  } else if (x->nreqs == 1) {
    if (b->opts.batch_delay_us < 1000)
      uv_check_start(&b->check, batcher_check_cb);
    else
      uv_timer_start(&b->delay_timer, batcher_delay_cb,
                     (b->opts.batch_delay_us + 999) / 1000, 0);
  }
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
  if (b->paused) {
    b->paused = 0;
    if (b->server != NULL) inv_rpc_server_pause(b->server, 0);
  }
  batcher_close_open(b);
  if (b->pending == 0)
    uv_timer_start(&b->drain_timer, batcher_drain_timer_cb, 0, 0);
}

static void batcher_handle_closed(uv_handle_t *h) {
  inv_batcher_t *b = h->data;
  if (--b->handles_open == 0) free(b);
}

/* Fails and frees every batch of list l (abandoning in-flight ones). */
static void batcher_fail_list(inv_batcher_t *b, batch_list_t *l,
                              int abandon) {
  while (l->head != NULL) {
    batch_t *x = l->head;
    list_remove(l, x);
    batch_fail(b, x, INV_ESHUTDOWN, "the publisher is shutting down");
    if (abandon) inv_sink_call_detach(x->call);
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
