/*
 * The batcher: collects the accepted events of many requests into batches,
 * hands each batch to the sink, and answers every request of a batch when
 * Redis confirmed it (ack with the log id) or failed to (EUNAVAIL).
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
 *     within max-events can pass), and once the bound is reached the rpc
 *     server stops dispatching and reading client input
 *     (inv_rpc_server_pause) until pending events fall to half the bound.
 *     Memory is thus bounded by max_pending_events plus one request.
 */
#ifndef INV_BATCHER_H
#define INV_BATCHER_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/latency.h"
#include "common/rpc_server.h"
#include "proto/event.h"
#include "service/pub_stats.h"
#include "service/sink.h"

typedef struct inv_batcher_s inv_batcher_t;

typedef struct inv_batcher_opts_s {
  size_t batch_max_events;
  uint64_t batch_delay_us;
  size_t max_pending_events;
  size_t max_inflight_batches;
  uint64_t timeout_ms;
} inv_batcher_opts_t;

/*
 * Creates a batcher. sink, server (may be NULL: no pausing), stats and
 * latency are borrowed and must outlive the batcher; the batcher updates
 * the counters events_acked, events_rejected, notifications_failed,
 * batches, batches_failed, batch_events_total, backpressure_pauses and
 * records ack latencies. Returns 0 and *out, or INV_ENOMEM.
 */
int inv_batcher_create(uv_loop_t *loop, const inv_batcher_opts_t *opts,
                       inv_sink_t *sink, inv_rpc_server_t *server,
                       inv_pub_stats_t *stats, inv_latency_obs_t *latency,
                       inv_batcher_t **out);

/* Sets the rpc server to pause (it is created after the batcher). */
void inv_batcher_set_server(inv_batcher_t *b, inv_rpc_server_t *server);

/*
 * Starts adding a request of nevents (>= 1) already validated events: the
 * caller then adds exactly nevents events with inv_batcher_add() and calls
 * inv_batcher_commit(), with no other batcher call in between. On error
 * nothing was added and the caller answers req itself: INV_EBUSY (pending
 * bound would be passed), INV_ESHUTDOWN (draining) or INV_ENOMEM. t0_us is
 * the request's arrival (inv_now_us()) for the latency figures.
 */
int inv_batcher_begin(inv_batcher_t *b, inv_rpc_req_t *req, size_t nevents,
                      uint64_t t0_us);

/* Adds one event of the request begun last (packed and routed to its log
 * shard now; room for it was made by inv_batcher_begin). */
void inv_batcher_add(inv_batcher_t *b, const inv_event_t *ev);

/* Completes the request begun last; from now on the batcher answers it. */
void inv_batcher_commit(inv_batcher_t *b);

/* Events accepted and not yet answered. */
size_t inv_batcher_pending(const inv_batcher_t *b);

/* Batches sent to Redis and not yet confirmed (timed-out ones excluded). */
size_t inv_batcher_inflight(const inv_batcher_t *b);

/* 1 while the batcher keeps the rpc server paused. */
int inv_batcher_paused(const inv_batcher_t *b);

/*
 * Starts draining: new requests get ESHUTDOWN, the open batch is closed at
 * once, and done_cb runs (from a later loop callback, never from inside
 * this call) when every accepted request has been answered. Reading is
 * resumed so that nothing stays paused while the daemon stops.
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
