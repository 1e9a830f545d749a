/*
 * Prefix and pattern invalidation on the worker's own node: scan jobs.
 *
 * Patterns that are not pinned to one slot wait in a FIFO for the next
 * shared pass: one SCAN cursor COUNT n over the whole node, one page per
 * round trip (so it never blocks the loop), that serves every pattern
 * waiting when it started; a pattern submitted meanwhile waits for the next
 * pass, which starts when this one ends. Patterns submitted in one loop
 * iteration (one request, one catch-up page) start their pass together.
 * The pass sends no MATCH, except when it serves a single pattern P: then
 * MATCH "*P*", which matches the value keys that match P and also their
 * locks and stale copies ("{K}:lock", "K:stale", proto/keyname.h). Its
 * keys are matched here, each only against the patterns whose literal
 * prefix it starts with (a hash lookup per distinct prefix length) and
 * those without one. Identical patterns (same bytes and mode) of a pass
 * are merged. Every listed key is classified (inv_regen_classify,
 * inv_glob_match): a matching value key gets the mode of its patterns
 * (hard wins over soft; hard: UNLINK K L S; soft: soft.lua), a lock of a
 * matching value key is unlinked even when the value is absent (that is the
 * regeneration in flight to fence), a stale copy likewise for a hard
 * pattern only; a lock or stale copy whose value key is in the same listing
 * is left to the value key's command, and never is a lock handled as a
 * value key in its own right. The service's own keys (inv_key_reserved) are
 * never taken, whatever matched them (counted in reserved_skipped). Keys
 * whose slot the node owns (or imports: ASKING) go to the unlinker; at most
 * scan-inflight of a pass's (or pinned job's) keys are in flight, and the
 * next page is asked only below that bound.
 *
 * A pattern pinned to one slot by its hash tag (common/base/glob.h) is run on a
 * cluster node with CLUSTER COUNTKEYSINSLOT + GETKEYSINSLOT, filtered with
 * inv_glob_match: its cost grows with that slot's keys, not the keyspace.
 * The caller only submits pinned jobs for slots the node owns or imports.
 * At most max-scans pinned jobs run at once (besides the shared pass); the
 * others wait in a FIFO, where a new job with the same pattern as one of
 * the last few waiting is merged into it (a running job is never joined: it
 * may already have passed keys written after it started).
 *
 * Completion: done_cb (given at creation) is called once per submitted
 * (owner, tag) when its job finished (err 0: for a pass, when the pass
 * ended and every UNLINK it sent was answered) or was cancelled
 * (INV_ECLOSED); never for a job whose work failed. A run whose listing
 * failed (an error reply to SCAN or GETKEYSINSLOT, an unexpected reply, out
 * of memory) or one of whose UNLINKs did not complete runs again, all its
 * patterns, after a backoff (200 ms doubling with each failed run in a
 * row, up to 5 s; counted in scan_retries); until then they count as
 * waiting (inv_scanner_pending).
 */
#ifndef INV_WORKER_SCANNER_H
#define INV_WORKER_SCANNER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/redis/redis_conn.h"
#include "workers/slot_map.h"
#include "workers/unlinker.h"
#include "workers/worker_stats.h"

typedef struct inv_scanner_s inv_scanner_t;

typedef struct inv_scanner_opts_s {
  long long scan_count;
  long long max_scans;
  long long scan_inflight;
} inv_scanner_opts_t;

/* r, u, map and stats are not owned and must outlive the scanner. map is
 * read whenever keys are filtered, so it always reflects the latest
 * refresh. Returns 0 and *out, or INV_ENOMEM. */
int inv_scanner_create(uv_loop_t *loop, inv_redis_t *r, inv_unlinker_t *u,
                       const inv_slot_map_t *map,
                       const inv_scanner_opts_t *opts,
                       inv_worker_stats_t *stats, inv_unlink_done_cb done_cb,
                       void *owner, inv_scanner_t **out);

/* Submits a job for pattern (copied) in mode (INV_UNLINK_HARD or
 * INV_UNLINK_SOFT; a waiting job is joined only by one of the same mode).
 * pinned/slot say whether it is run with GETKEYSINSLOT on that slot.
 * Returns 0, or INV_ENOMEM (done_cb will not be called for tag). */
int inv_scanner_submit(inv_scanner_t *s, const char *pattern, size_t len,
                       inv_unlink_op_t mode, int pinned, unsigned slot,
                       uint64_t tag);

/* Cancels every job, waiting and running: done_cb gets INV_ECLOSED for
 * each tag now. Jobs with commands in flight are freed when those
 * complete. */
void inv_scanner_cancel_all(inv_scanner_t *s);

/* Re-sends the commands of jobs stalled by a dropped connection. */
void inv_scanner_resume(inv_scanner_t *s);

/* Patterns being served now (the pass's and the pinned jobs running). */
size_t inv_scanner_running(const inv_scanner_t *s);
/* Patterns waiting (for the next pass or a pinned-job slot), and the
 * memory they hold: what the owner bounds. */
size_t inv_scanner_pending(const inv_scanner_t *s);
size_t inv_scanner_waiting_bytes(const inv_scanner_t *s);

/* Cancels everything and frees s once no command is in flight (the
 * connection's owner closes it, failing what is in flight), and never
 * before the cancelling is over: the replies to commands still in flight
 * may come any time later, in any order with the unlinker's and the
 * connection's close. Accepts NULL. */
void inv_scanner_close(inv_scanner_t *s);

#endif
