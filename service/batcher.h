/*
 * The batcher: collects the accepted events of many requests into batches,
 * hands each batch to a sink, and completes every request of a batch when
 * the sink confirmed it (with its log ids) or failed to (EUNAVAIL).
 *
 * It knows no transport: a request is already parsed and packed events
 * with a completion callback, the sink is a table of operations (the Redis
 * sink in the daemon, a fake one in tests), and intake pressure is a hook
 * the owner wires to whatever reads requests.
 *
 * Rules:
 *   - a request's events always land in one batch (a request larger than
 *     batch_max_events makes a batch of its own);
 *   - a batch is closed when it holds batch_max_events events, or
 *     batch_delay_us after its first request (below 1 ms the batch closes
 *     at the end of the current loop iteration, after every input that was
 *     ready has been read: libuv timers have millisecond resolution);
 *   - at most max_inflight_batches batches await Redis at once; closed
 *     batches beyond that wait in a FIFO;
 *   - a batch not confirmed timeout_ms after it closed fails with EUNAVAIL,
 *     whether it was sent or not. If Redis executes a timed-out script
 *     later, the entry is in the log and broadcast although the client was
 *     told EUNAVAIL: delivery is at-least-once, never a false ack;
 *   - pending events (accepted, not yet answered) are bounded by
 *     max_pending_events: a request whose events do not fit under the
 *     bound gets EBUSY (unless nothing is pending, so that any request
 *     within max-events can pass), and once the bound is reached the
 *     pressure hook is called with paused 1 (the publisher stops reading
 *     client input) and, once pending events fell to half the bound, with
 *     paused 0.
 *     Memory is thus bounded by max_pending_events plus one request.
 */
#ifndef INV_BATCHER_H
#define INV_BATCHER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/latency.h"
#include "proto/event.h"
#include "service/pub_stats.h"
#include "service/sink.h"

typedef struct inv_batcher_s inv_batcher_t;

/* Called with paused 1 when pending events reach max_pending_events and
 * with 0 once they fell to half of it (or a drain began). */
typedef void (*inv_batcher_pressure_cb)(void *data, int paused);

typedef struct inv_batcher_opts_s {
  size_t batch_max_events;
  uint64_t batch_delay_us;
  size_t max_pending_events;
  size_t max_inflight_batches;
  uint64_t timeout_ms;
  inv_batcher_pressure_cb pressure_cb; /* NULL: pressure is not reported */
  void *pressure_data;
} inv_batcher_opts_t;

/* How a request ended. On success (err 0) ids holds one [shard, id] per
 * log shard its events went to, in shard order, and id is the largest of
 * them by (ms, seq); on failure err is INV_EUNAVAIL or INV_ESHUTDOWN and
 * msg says why. Everything is valid only during the callback. */
typedef struct inv_batcher_result_s {
  int err;
  const char *msg;
  size_t nevents;
  const char *id;
  const inv_payload_id_t *ids;
  size_t nids;
} inv_batcher_result_t;

/* Completes one request, exactly once (see inv_batcher_submit()). */
typedef void (*inv_batcher_done_cb)(void *data,
                                    const inv_batcher_result_t *res);

/* One request: nevents (>= 1) already validated events, packed back to
 * back in events[0..events_len) and described by ev (offsets into events
 * and routes, see sink.h). t0_us is its arrival (inv_now_us()) for the
 * latency figures; notify is 1 when nobody reads its answer, so that a
 * failure also counts in notifications_failed. */
typedef struct inv_batcher_req_s {
  const char *events;
  size_t events_len;
  const inv_sink_event_t *ev;
  size_t nevents;
  uint64_t t0_us;
  int notify;
  inv_batcher_done_cb cb;
  void *data;
} inv_batcher_req_t;

/*
 * Creates a batcher writing through sink (ops on sink_data; both borrowed).
 * stats and latency are borrowed and must outlive the batcher; the batcher
 * updates the counters events_acked, events_rejected, notifications_failed,
 * batches, batches_failed, batch_events_total, backpressure_pauses and
 * records ack latencies. Returns 0 and *out, or INV_ENOMEM.
 */
int inv_batcher_create(uv_loop_t *loop, const inv_batcher_opts_t *opts,
                       const inv_sink_ops_t *sink, void *sink_data,
                       inv_pub_stats_t *stats, inv_latency_obs_t *latency,
                       inv_batcher_t **out);

/*
 * Accepts one request; its events always land in one batch. The batcher
 * copies what it needs, so req and its buffers may go when this returns.
 * Returns 0, after which req->cb runs exactly once: usually from a later
 * loop callback, but from inside this call when the batch it closes is
 * refused by the sink at once. Or returns, without ever calling req->cb:
 * INV_EBUSY (the pending bound would be passed), INV_ESHUTDOWN (draining),
 * INV_EINVAL (no events, no cb, or an event outside events) or
 * INV_ENOMEM.
 */
int inv_batcher_submit(inv_batcher_t *b, const inv_batcher_req_t *req);

/* Events accepted and not yet answered. */
size_t inv_batcher_pending(const inv_batcher_t *b);

/* Batches sent to the sink and not yet confirmed (timed-out ones
 * excluded). */
size_t inv_batcher_inflight(const inv_batcher_t *b);

/* 1 while the batcher reports pressure (paused intake). */
int inv_batcher_paused(const inv_batcher_t *b);

/*
 * Starts draining: new requests get ESHUTDOWN, the open batch is closed at
 * once, and done_cb runs (from a later loop callback, never from inside
 * this call) when every accepted request has been answered. Pressure is
 * released, so that nothing stays paused while the daemon stops.
 */
void inv_batcher_drain(inv_batcher_t *b, void (*done_cb)(void *data),
                       void *data);

/*
 * Fails every request still pending with ESHUTDOWN, closes the timers and
 * frees b once its handles are released. Batches still awaiting the sink
 * are detached and freed by their sink callback, so the sink (and the
 * cluster client) must outlive the batcher until those callbacks ran.
 * Accepts NULL.
 */
void inv_batcher_close(inv_batcher_t *b);

#endif
