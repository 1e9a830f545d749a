/*
 * Unit tests for service/batcher.c against a fake sink: no network, no
 * Redis. The fake keeps every batch it was sent and answers its shard
 * writes only when a test says so, so each test decides what Redis did and
 * when. Time runs on a real libuv loop with short timers; no check depends
 * on how fast the machine is (only lower bounds on elapsed time, which
 * timers guarantee, and generous upper bounds on how long a wait may run).
 */
#include "service/batcher.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "inval/errors.h"
#include "common/base/latency.h"
#include "common/base/log.h"
#include "tests/unit/check.h"

/* ---- the fake sink --------------------------------------------------- */

#define FAKE_MAX_CALLS 32

typedef struct fake_sink_s fake_sink_t;

struct inv_sink_call_s {
  fake_sink_t *sink;
  inv_sink_done_cb cb;
  void *data;
  int detached;
  size_t nevents;
  size_t events_len;
  uint64_t mask;     /* shards this batch writes */
  uint64_t answered; /* shards answered so far */
};

struct fake_sink_s {
  int ready;   /* the topology is known */
  int cluster; /* route by shard; otherwise everything to shard 0 */
  int refuse;  /* send fails at once with this code */
  struct inv_sink_call_s calls[FAKE_MAX_CALLS];
  size_t ncalls;
};

static int fake_ready(const void *s) { return ((const fake_sink_t *)s)->ready; }

/* In a cluster an event for every shard (-1) goes to shards 0 to 3 here,
 * which is enough to see a batch fan out. */
static uint64_t fake_route_mask(const void *s, int shard) {
  if (!((const fake_sink_t *)s)->cluster) return 1;
  return shard < 0 ? 0xf : (uint64_t)1 << shard;
}

static int fake_send(void *sp, const char *events, size_t events_len,
                     const inv_sink_event_t *ev, size_t nevents, uint64_t ts_ms,
                     inv_sink_done_cb cb, void *data, inv_sink_call_t **call) {
  fake_sink_t *s = sp;
  (void)events;
  (void)ts_ms;
  if (s->refuse != 0) return s->refuse;
  if (s->ncalls == FAKE_MAX_CALLS) return INV_ENOMEM;
  struct inv_sink_call_s *c = &s->calls[s->ncalls++];
  memset(c, 0, sizeof(*c));
  c->sink = s;
  c->cb = cb;
  c->data = data;
  c->nevents = nevents;
  c->events_len = events_len;
  for (size_t i = 0; i < nevents; i++)
    c->mask |= fake_route_mask(s, ev[i].shard);
  *call = c;
  return 0;
}

static void fake_describe(const inv_sink_call_t *call, char *out,
                          size_t outlen) {
  snprintf(out, outlen, "fake call of %zu events", call->nevents);
}

static void fake_detach(inv_sink_call_t *call) { call->detached = 1; }

static const inv_sink_ops_t fake_ops = {
    .ready = fake_ready,
    .route_mask = fake_route_mask,
    .send = fake_send,
    .call_describe = fake_describe,
    .call_detach = fake_detach,
};

/* Answers shard of call n: err 0 with entry id, or err with a message.
 * A detached call is answered to nobody, as the real sink does. */
static void fake_answer(fake_sink_t *s, size_t n, unsigned shard, int err,
                        const char *id) {
  struct inv_sink_call_s *c = &s->calls[n];
  c->answered |= (uint64_t)1 << shard;
  if (c->detached) return;
  c->cb(c->data, shard, err, id, id != NULL ? strlen(id) : 0,
        err != 0 ? "fake shard write failed" : NULL, c->answered == c->mask);
}

/* Answers every shard of call n with success. */
static void fake_ack_all(fake_sink_t *s, size_t n) {
  for (unsigned k = 0; k < 64; k++)
    if (s->calls[n].mask >> k & 1) fake_answer(s, n, k, 0, "100-0");
}

/* ---- requests and their completions ---------------------------------- */

typedef struct done_s {
  int calls; /* completions seen: must end at exactly 1 */
  int order; /* 1 + how many requests completed before this one */
  int err;
  char msg[256];
  size_t nevents;
  char id[48];
  size_t nids;
  inv_payload_id_t ids[4];
} done_t;

static int completed; /* completions so far, for the order */

static void on_done(void *data, const inv_batcher_result_t *res) {
  done_t *d = data;
  d->calls++;
  d->order = ++completed;
  d->err = res->err;
  d->nevents = res->nevents;
  snprintf(d->msg, sizeof(d->msg), "%s", res->msg != NULL ? res->msg : "");
  if (res->err == 0) {
    snprintf(d->id, sizeof(d->id), "%s", res->id);
    d->nids = res->nids;
    for (size_t i = 0; i < res->nids && i < 4; i++) d->ids[i] = res->ids[i];
  }
}

/* Submits a request of n events, every one routed to shard (the packed
 * bytes are filler: the batcher only carries them). */
static int submit(inv_batcher_t *b, done_t *d, size_t n, int shard) {
  char bytes[4 * 128];
  inv_sink_event_t ev[128];
  if (n > 128) return INV_EINVAL;
  memset(bytes, 0xa0, sizeof(bytes));
  for (size_t i = 0; i < n; i++)
    ev[i] = (inv_sink_event_t){.off = i * 4, .len = 4, .shard = shard};
  inv_batcher_req_t req = {.events = bytes,
                           .events_len = n * 4,
                           .ev = ev,
                           .nevents = n,
                           .t0_us = inv_now_us(),
                           .cb = on_done,
                           .data = d};
  return inv_batcher_submit(b, &req);
}

/* ---- the fixture ----------------------------------------------------- */

typedef struct fixture_s {
  uv_loop_t loop;
  fake_sink_t sink;
  inv_pub_stats_t stats;
  inv_latency_obs_t latency;
  inv_batcher_t *b;
  int pressure[8]; /* the hook's calls, in order */
  int npressure;
} fixture_t;

static void on_pressure(void *data, int paused) {
  fixture_t *f = data;
  if (f->npressure < 8) f->pressure[f->npressure] = paused;
  f->npressure++;
}

static void fixture_start(fixture_t *f, inv_batcher_opts_t opts) {
  memset(f, 0, sizeof(*f));
  uv_loop_init(&f->loop);
  f->sink.ready = 1;
  opts.pressure_cb = on_pressure;
  opts.pressure_data = f;
  completed = 0;
  CHECK_EQ_INT(inv_batcher_create(&f->loop, &opts, &fake_ops, &f->sink,
                                  &f->stats, &f->latency, &f->b),
               0);
}

static void fixture_stop(fixture_t *f) {
  inv_batcher_close(f->b);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&f->loop), 0);
}

/* The guard of a wait: it repeats, so that once it has fired no single
 * loop turn can block on a later timer (a batcher's delay may be a
 * minute) however late the test process was scheduled. */
static void guard_cb(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs the loop until done(f) holds or limit_ms passed (a generous bound:
 * only a broken batcher reaches it). */
static void run_while(fixture_t *f,
                      int (*done)(const fixture_t *, const void *),
                      const void *arg, uint64_t limit_ms) {
  int expired = 0;
  uv_timer_t guard;
  uv_update_time(&f->loop);
  uv_timer_init(&f->loop, &guard);
  guard.data = &expired;
  uv_timer_start(&guard, guard_cb, limit_ms, limit_ms);
  while (!done(f, arg) && !expired) uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int flag_set(const fixture_t *f, const void *flag) {
  (void)f;
  return *(const int *)flag;
}

static int batch_sent(const fixture_t *f, const void *arg) {
  (void)arg;
  return f->sink.ncalls > 0;
}

/* Runs the loop until *flag is set or limit_ms passed. */
static void run_until(fixture_t *f, const int *flag, uint64_t limit_ms) {
  run_while(f, flag_set, flag, limit_ms);
}

/* Runs the loop until the sink was sent a batch or limit_ms passed. */
static void run_until_sent(fixture_t *f, uint64_t limit_ms) {
  run_while(f, batch_sent, NULL, limit_ms);
}

/* Runs the loop for about ms, whatever happens. */
static void run_for(fixture_t *f, uint64_t ms) {
  static const int never = 0;
  run_until(f, &never, ms);
}

static const inv_batcher_opts_t base_opts = {
    .batch_max_events = 100,
    .batch_delay_us = 60000000, /* a minute: only a full batch goes */
    .max_pending_events = 1000,
    .max_inflight_batches = 4,
    .timeout_ms = 60000,
};

/* ---- tests ----------------------------------------------------------- */

/* A batch goes as soon as it is full, and not before. */
static void test_full_batch_goes(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_max_events = 3;
  fixture_start(&f, o);
  done_t a = {0}, b = {0};
  CHECK_EQ_INT(submit(f.b, &a, 2, 0), 0);
  run_for(&f, 5);
  CHECK_EQ_INT(f.sink.ncalls, 0);
  CHECK_EQ_INT(submit(f.b, &b, 1, 0), 0);
  CHECK_EQ_INT(f.sink.ncalls, 1);
  CHECK_EQ_INT(f.sink.calls[0].nevents, 3);
  CHECK_EQ_INT(f.sink.calls[0].events_len, 12);
  CHECK_EQ_INT(inv_batcher_pending(f.b), 3);
  CHECK_EQ_INT(inv_batcher_inflight(f.b), 1);
  /* Nobody is answered before the sink confirmed. */
  CHECK_EQ_INT(a.calls + b.calls, 0);
  fake_ack_all(&f.sink, 0);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(b.calls, 1);
  CHECK_EQ_INT(a.err, 0);
  CHECK_EQ_INT(a.nevents, 2);
  CHECK_EQ_STR(a.id, "100-0");
  CHECK_EQ_INT(inv_batcher_pending(f.b), 0);
  CHECK_EQ_INT(f.stats.batches, 1);
  CHECK_EQ_INT(f.stats.batch_events_total, 3);
  CHECK_EQ_INT(f.stats.events_acked, 3);
  CHECK_EQ_INT(f.latency.hist.count, 2);
  fixture_stop(&f);
}

/* A request that would overflow the open batch closes it first: its
 * events stay together in the next batch. */
static void test_request_not_split(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_max_events = 4;
  fixture_start(&f, o);
  done_t a = {0}, b = {0};
  CHECK_EQ_INT(submit(f.b, &a, 3, 0), 0);
  CHECK_EQ_INT(submit(f.b, &b, 3, 0), 0);
  CHECK_EQ_INT(f.sink.ncalls, 1);
  CHECK_EQ_INT(f.sink.calls[0].nevents, 3);
  fake_ack_all(&f.sink, 0);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(b.calls, 0);
  CHECK_EQ_INT(inv_batcher_pending(f.b), 3);
  fixture_stop(&f);
  /* Closing failed what was still open, never acked it. */
  CHECK_EQ_INT(b.calls, 1);
  CHECK_EQ_INT(b.err, INV_ESHUTDOWN);
}

/* A batch that is not full goes when its delay passed, not before. */
static void test_delay(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_delay_us = 30000;
  fixture_start(&f, o);
  done_t a = {0}, b = {0};
  uv_update_time(&f.loop);
  uint64_t t0 = inv_now_us();
  CHECK_EQ_INT(submit(f.b, &a, 1, 0), 0);
  CHECK_EQ_INT(submit(f.b, &b, 1, 0), 0);
  CHECK_EQ_INT(f.sink.ncalls, 0);
  run_until_sent(&f, 5000);
  CHECK_EQ_INT(f.sink.ncalls, 1);
  CHECK_EQ_INT(f.sink.calls[0].nevents, 2);
  /* libuv counts whole milliseconds from its cached loop time, so the
   * timer may fire up to 1 ms short of 30 ms by the microsecond clock. */
  CHECK((inv_now_us() - t0) / 1000 >= 25);
  fake_ack_all(&f.sink, 0);
  CHECK_EQ_INT(a.err + b.err, 0);
  CHECK_EQ_INT(a.calls + b.calls, 2);
  fixture_stop(&f);
}

/* Below a millisecond the batch closes at the end of the loop iteration:
 * requests submitted together share it. */
static void test_zero_delay(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_delay_us = 0;
  fixture_start(&f, o);
  done_t a = {0}, b = {0};
  CHECK_EQ_INT(submit(f.b, &a, 1, 0), 0);
  CHECK_EQ_INT(submit(f.b, &b, 2, 0), 0);
  CHECK_EQ_INT(f.sink.ncalls, 0);
  uv_run(&f.loop, UV_RUN_NOWAIT);
  CHECK_EQ_INT(f.sink.ncalls, 1);
  CHECK_EQ_INT(f.sink.calls[0].nevents, 3);
  fake_ack_all(&f.sink, 0);
  CHECK_EQ_INT(a.calls + b.calls, 2);
  fixture_stop(&f);
}

/* With one batch in flight at a time, batches go and are answered in the
 * order they closed. */
static void test_order(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_max_events = 1;
  o.max_inflight_batches = 1;
  fixture_start(&f, o);
  done_t d[3] = {{0}};
  for (int i = 0; i < 3; i++) CHECK_EQ_INT(submit(f.b, &d[i], 1, 0), 0);
  CHECK_EQ_INT(f.sink.ncalls, 1);
  CHECK_EQ_INT(inv_batcher_inflight(f.b), 1);
  for (size_t i = 0; i < 3; i++) {
    CHECK_EQ_INT(f.sink.ncalls, i + 1);
    fake_ack_all(&f.sink, i);
  }
  for (int i = 0; i < 3; i++) {
    CHECK_EQ_INT(d[i].calls, 1);
    CHECK_EQ_INT(d[i].order, i + 1);
  }
  CHECK_EQ_INT(f.stats.batches, 3);
  fixture_stop(&f);
}

/* Within one batch each request completes as soon as the shards its
 * events went to answered: a healthy shard's request is acked while a
 * slow one waits, and a failed shard fails only the requests that touch
 * it. The ack names every shard and the largest id by (ms, seq). */
static void test_per_request(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_max_events = 4;
  fixture_start(&f, o);
  f.sink.cluster = 1;
  done_t a = {0}, b = {0}, c = {0};
  inv_sink_event_t ev[2] = {{0, 4, 1}, {4, 4, 2}};
  inv_batcher_req_t req = {.events = "abcdefgh",
                           .events_len = 8,
                           .ev = ev,
                           .nevents = 2,
                           .cb = on_done,
                           .data = &a};
  CHECK_EQ_INT(inv_batcher_submit(f.b, &req), 0); /* shards 1 and 2 */
  CHECK_EQ_INT(submit(f.b, &b, 1, 2), 0);         /* shard 2 */
  CHECK_EQ_INT(submit(f.b, &c, 1, 3), 0);         /* shard 3: full */
  CHECK_EQ_INT(f.sink.ncalls, 1);
  CHECK_EQ_INT(f.sink.calls[0].mask, 0xe);
  fake_answer(&f.sink, 0, 2, 0, "9-7");
  CHECK_EQ_INT(b.calls, 1);
  CHECK_EQ_INT(b.err, 0);
  CHECK_EQ_STR(b.id, "9-7");
  CHECK_EQ_INT(a.calls + c.calls, 0);
  CHECK_EQ_INT(inv_batcher_pending(f.b), 3);
  fake_answer(&f.sink, 0, 3, INV_EUNAVAIL, NULL);
  CHECK_EQ_INT(c.calls, 1);
  CHECK_EQ_INT(c.err, INV_EUNAVAIL);
  CHECK_EQ_STR(c.msg, "fake shard write failed");
  CHECK_EQ_INT(a.calls, 0);
  fake_answer(&f.sink, 0, 1, 0, "10-0");
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(a.err, 0);
  CHECK_EQ_STR(a.id, "10-0"); /* 10-0 is after 9-7, though not as text */
  CHECK_EQ_INT(a.nids, 2);
  CHECK_EQ_INT(a.ids[0].shard, 1);
  CHECK_EQ_STR(a.ids[0].id, "10-0");
  CHECK_EQ_INT(a.ids[1].shard, 2);
  CHECK_EQ_STR(a.ids[1].id, "9-7");
  CHECK_EQ_INT(inv_batcher_pending(f.b), 0);
  CHECK_EQ_INT(f.stats.batches_failed, 1);
  CHECK_EQ_INT(f.stats.events_acked, 3);
  CHECK_EQ_INT(f.stats.events_rejected, 1);
  fixture_stop(&f);
}

/* A batch not confirmed within the timeout fails with EUNAVAIL and its
 * sink call is detached: a late answer acks nobody. A batch that waited
 * for an in-flight slot times out too, saying so. */
static void test_abandon_after_timeout(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_max_events = 1;
  o.max_inflight_batches = 1;
  o.timeout_ms = 30;
  fixture_start(&f, o);
  done_t a = {0}, b = {0};
  uv_update_time(&f.loop);
  uint64_t t0 = inv_now_us();
  CHECK_EQ_INT(submit(f.b, &a, 1, 0), 0);
  CHECK_EQ_INT(submit(f.b, &b, 1, 0), 0);
  CHECK_EQ_INT(f.sink.ncalls, 1);
  run_until(&f, &b.calls, 5000);
  CHECK((inv_now_us() - t0) / 1000 >= 29);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(a.err, INV_EUNAVAIL);
  CHECK(strstr(a.msg, "within 30 ms (fake call of 1 events)") != NULL);
  CHECK_EQ_INT(b.calls, 1);
  CHECK_EQ_INT(b.err, INV_EUNAVAIL);
  CHECK(strstr(b.msg, "free in-flight slot") != NULL);
  CHECK_EQ_INT(f.sink.calls[0].detached, 1);
  CHECK_EQ_INT(f.sink.ncalls, 1); /* b never went */
  CHECK_EQ_INT(inv_batcher_pending(f.b), 0);
  CHECK_EQ_INT(inv_batcher_inflight(f.b), 0);
  /* Redis confirming the first batch late acks nobody. */
  fake_ack_all(&f.sink, 0);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(a.err, INV_EUNAVAIL);
  CHECK_EQ_INT(f.stats.events_acked, 0);
  CHECK_EQ_INT(f.stats.events_rejected, 2);
  CHECK_EQ_INT(f.stats.batches_failed, 2);
  fixture_stop(&f);
}

/* A sink that refuses a batch at once fails its requests at once, from
 * inside the submit that closed it; the next batch goes as usual. */
static void test_sink_refuses(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_max_events = 1;
  fixture_start(&f, o);
  done_t a = {0}, b = {0};
  f.sink.refuse = INV_ENOMEM;
  CHECK_EQ_INT(submit(f.b, &a, 1, 0), 0);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(a.err, INV_EUNAVAIL);
  CHECK_EQ_INT(inv_batcher_pending(f.b), 0);
  f.sink.refuse = 0;
  CHECK_EQ_INT(submit(f.b, &b, 1, 0), 0);
  CHECK_EQ_INT(f.sink.ncalls, 1);
  fake_ack_all(&f.sink, 0);
  CHECK_EQ_INT(b.err, 0);
  CHECK_EQ_INT(b.calls, 1);
  fixture_stop(&f);
}

/* The pressure hook is called once when pending events reach the bound
 * and once when they fell to half of it; a request over the bound gets
 * EBUSY unless nothing is pending. */
static void test_pressure(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_max_events = 1;
  o.max_pending_events = 4;
  o.max_inflight_batches = 8;
  fixture_start(&f, o);
  done_t d[5] = {{0}};
  for (int i = 0; i < 3; i++) CHECK_EQ_INT(submit(f.b, &d[i], 1, 0), 0);
  CHECK_EQ_INT(f.npressure, 0);
  CHECK_EQ_INT(submit(f.b, &d[3], 1, 0), 0);
  CHECK_EQ_INT(f.npressure, 1);
  CHECK_EQ_INT(f.pressure[0], 1);
  CHECK_EQ_INT(inv_batcher_paused(f.b), 1);
  CHECK_EQ_INT(submit(f.b, &d[4], 1, 0), INV_EBUSY);
  fake_ack_all(&f.sink, 0); /* 3 pending: still paused */
  CHECK_EQ_INT(f.npressure, 1);
  fake_ack_all(&f.sink, 1); /* 2 pending: half the bound */
  CHECK_EQ_INT(f.npressure, 2);
  CHECK_EQ_INT(f.pressure[1], 0);
  CHECK_EQ_INT(inv_batcher_paused(f.b), 0);
  fake_ack_all(&f.sink, 2);
  fake_ack_all(&f.sink, 3);
  CHECK_EQ_INT(d[4].calls, 0); /* refused at submit, never completed */
  CHECK_EQ_INT(f.stats.backpressure_pauses, 1);
  /* With nothing pending, a request larger than the bound still passes,
   * and pauses intake at once. */
  done_t big = {0};
  CHECK_EQ_INT(submit(f.b, &big, 6, 0), 0);
  CHECK_EQ_INT(f.npressure, 3);
  CHECK_EQ_INT(f.pressure[2], 1);
  fake_ack_all(&f.sink, 4);
  CHECK_EQ_INT(big.calls, 1);
  CHECK_EQ_INT(f.npressure, 4);
  CHECK_EQ_INT(f.pressure[3], 0);
  fixture_stop(&f);
}

/* Until the sink knows the topology, closed batches wait (and are routed
 * only then); their deadlines run meanwhile. */
static void test_topology_wait(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.batch_max_events = 1;
  fixture_start(&f, o);
  f.sink.ready = 0;
  done_t a = {0};
  CHECK_EQ_INT(submit(f.b, &a, 1, 5), 0);
  run_for(&f, 40);
  CHECK_EQ_INT(f.sink.ncalls, 0);
  CHECK_EQ_INT(a.calls, 0);
  f.sink.ready = 1;
  f.sink.cluster = 1;
  run_until_sent(&f, 5000);
  CHECK_EQ_INT(f.sink.ncalls, 1);
  CHECK_EQ_INT(f.sink.calls[0].mask, (uint64_t)1 << 5);
  fake_answer(&f.sink, 0, 5, 0, "7-0");
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(a.ids[0].shard, 5);
  fixture_stop(&f);

  /* A topology that never comes: the request fails by its deadline. */
  o.timeout_ms = 30;
  fixture_start(&f, o);
  f.sink.ready = 0;
  done_t b = {0};
  CHECK_EQ_INT(submit(f.b, &b, 1, 0), 0);
  run_until(&f, &b.calls, 5000);
  CHECK_EQ_INT(b.calls, 1);
  CHECK_EQ_INT(b.err, INV_EUNAVAIL);
  CHECK_EQ_INT(f.sink.ncalls, 0);
  fixture_stop(&f);
}

static int drained;
static void on_drained(void *data) {
  (void)data;
  drained++;
}

/* Draining refuses new requests, sends the open batch at once, releases
 * pressure and reports once every accepted request was answered, never
 * from inside the drain call. Closing fails what is left and detaches
 * in-flight calls. */
static void test_drain_and_close(void) {
  fixture_t f;
  inv_batcher_opts_t o = base_opts;
  o.max_pending_events = 2;
  fixture_start(&f, o);
  done_t a = {0}, b = {0}, c = {0};
  CHECK_EQ_INT(submit(f.b, &a, 2, 0), 0);
  CHECK_EQ_INT(f.npressure, 1);
  drained = 0;
  inv_batcher_drain(f.b, on_drained, NULL);
  CHECK_EQ_INT(f.npressure, 2);
  CHECK_EQ_INT(f.pressure[1], 0);
  CHECK_EQ_INT(f.sink.ncalls, 1);
  CHECK_EQ_INT(submit(f.b, &b, 1, 0), INV_ESHUTDOWN);
  fake_ack_all(&f.sink, 0);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(drained, 0);
  uv_run(&f.loop, UV_RUN_NOWAIT);
  CHECK_EQ_INT(drained, 1);
  fixture_stop(&f);

  fixture_start(&f, base_opts);
  CHECK_EQ_INT(submit(f.b, &c, 100, 0), 0); /* full: in flight */
  CHECK_EQ_INT(inv_batcher_inflight(f.b), 1);
  fixture_stop(&f);
  CHECK_EQ_INT(c.calls, 1);
  CHECK_EQ_INT(c.err, INV_ESHUTDOWN);
  CHECK_EQ_INT(f.sink.calls[0].detached, 1);
}

/* Bad requests are refused whole, and their callback never runs. */
static void test_bad_requests(void) {
  fixture_t f;
  fixture_start(&f, base_opts);
  done_t a = {0};
  inv_sink_event_t ev = {.off = 6, .len = 4, .shard = 0};
  inv_batcher_req_t req = {.events = "abcdefgh",
                           .events_len = 8,
                           .ev = &ev,
                           .nevents = 1,
                           .cb = on_done,
                           .data = &a};
  CHECK_EQ_INT(inv_batcher_submit(f.b, &req), INV_EINVAL);
  ev.off = 4;
  ev.len = (size_t)-1;
  CHECK_EQ_INT(inv_batcher_submit(f.b, &req), INV_EINVAL);
  ev.len = 4;
  req.nevents = 0;
  CHECK_EQ_INT(inv_batcher_submit(f.b, &req), INV_EINVAL);
  CHECK_EQ_INT(inv_batcher_pending(f.b), 0);
  req.nevents = 1;
  CHECK_EQ_INT(inv_batcher_submit(f.b, &req), 0);
  CHECK_EQ_INT(inv_batcher_pending(f.b), 1);
  fixture_stop(&f);
  CHECK_EQ_INT(a.calls, 1);
  CHECK_EQ_INT(a.err, INV_ESHUTDOWN);
}

int main(void) {
  inv_log_set_level(INV_LOG_ERROR);
  RUN(test_full_batch_goes);
  RUN(test_request_not_split);
  RUN(test_delay);
  RUN(test_zero_delay);
  RUN(test_order);
  RUN(test_per_request);
  RUN(test_abandon_after_timeout);
  RUN(test_sink_refuses);
  RUN(test_pressure);
  RUN(test_topology_wait);
  RUN(test_drain_and_close);
  RUN(test_bad_requests);
  return check_summary();
}
