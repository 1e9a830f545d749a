/*
 * The completion watermark: which log entries may be recorded as applied.
 *
 * Pure code (no I/O, no libuv or hiredis), driven by the worker's intake.
 * Entries are added in log order, each under its id; an entry owns a count
 * of operations outstanding (UNLINKs, scan jobs) and a count of operations
 * that failed and are not yet re-issued. The watermark ("done") moves past
 * the oldest entries only while both counts are zero, so an entry whose
 * work was skipped (out of memory, an error reply) is never passed: it
 * stays open, blocking every later entry, until its failed operations are
 * re-issued (inv_watermark_op_retry) and complete.
 *
 * Operations are named by a tag (inv_watermark_add returns it): the
 * watermark's generation in bits 48-57 and the entry's sequence number in
 * the low 48 (the top 6 bits are always 0). inv_watermark_reset (a rewind)
 * bumps the generation, so completions of work dispatched before it are told
 * apart and ignored. Sequence numbers keep counting across resets and wrap
 * modulo 2^48; a tag is matched against the entries open now, so wrapping
 * is harmless.
 *
 * Capacity is fixed at creation: inv_watermark_full() says when no entry
 * can be added, which the caller uses for backpressure (stop reading the
 * log) rather than as an error.
 *
 * Counters never underflow: an operation that completes or fails more
 * often than it began is a bug in the caller, and INV_CHECK aborts with a
 * message (common/base/check.h) in every build.
 */
#ifndef INV_WORKER_WATERMARK_H
#define INV_WORKER_WATERMARK_H

#include <stddef.h>
#include <stdint.h>

#include "proto/stream_id.h"

#define INV_WATERMARK_SEQ_BITS 48
/* Tags use only the low INV_WATERMARK_TAG_BITS bits (a 10-bit generation
 * above the sequence number), so that a caller may keep its own bits in
 * the top ones (the intake names the shard there). */
#define INV_WATERMARK_TAG_BITS 58

typedef struct inv_watermark_s inv_watermark_t;

/* Creates an empty watermark holding at most cap (>= 1) open entries.
 * Returns 0 and *out (owned by the caller, freed with
 * inv_watermark_destroy), or INV_EINVAL for cap 0, or INV_ENOMEM. */
int inv_watermark_create(size_t cap, inv_watermark_t **out);

/* Frees wm. Accepts NULL. */
void inv_watermark_destroy(inv_watermark_t *wm);

/* Opens an entry for log id (ids must grow; the caller checks that) with
 * one operation outstanding: the caller's hold while it dispatches the
 * entry's work, released with inv_watermark_op_done like any other. Writes
 * the entry's tag to *tag. Returns 0, or INV_EBUSY when the watermark is
 * full (nothing is added: take the entry again later). */
int inv_watermark_add(inv_watermark_t *wm, inv_sid_t id, uint64_t *tag);

/* One more operation of the entry tag names is outstanding (call before
 * handing the work out, so that a completion called back at once finds
 * it counted). Returns 1, or 0 when tag is stale (the entry was reset
 * away): then nothing is counted. */
int inv_watermark_op_begin(inv_watermark_t *wm, uint64_t tag);

/* One outstanding operation of the entry finished its work. Returns 1, or
 * 0 for a stale tag (ignored). Aborts if no operation was outstanding. */
int inv_watermark_op_done(inv_watermark_t *wm, uint64_t tag);

/* One outstanding operation of the entry could not do its work (an
 * allocation failed, or Redis answered with an error): the entry is marked
 * failed and stays open until the operation is re-issued and completes.
 * Returns 1, or 0 for a stale tag (ignored). Aborts if no operation was
 * outstanding. */
int inv_watermark_op_failed(inv_watermark_t *wm, uint64_t tag);

/* The caller re-issues one failed operation of the entry: it is
 * outstanding again (and may fail again). Returns 1, or 0 for a stale tag.
 * Aborts if the entry has no failed operation. */
int inv_watermark_op_retry(inv_watermark_t *wm, uint64_t tag);

/* Closes every finished entry at the head (no operation outstanding, none
 * failed), in log order. Returns how many were closed; when some were,
 * *done gets the id of the last one (else it is left alone). */
size_t inv_watermark_advance(inv_watermark_t *wm, inv_sid_t *done);

/* Open entries (finished ones not yet advanced past included), whether no
 * entry can be added, and whether none is open. */
size_t inv_watermark_open(const inv_watermark_t *wm);
int inv_watermark_full(const inv_watermark_t *wm);
int inv_watermark_empty(const inv_watermark_t *wm);

/* Failed operations not yet re-issued, over every open entry. */
uint64_t inv_watermark_failed(const inv_watermark_t *wm);

/* Drops every open entry and starts a new generation: tags handed out
 * before are stale from now on. */
void inv_watermark_reset(inv_watermark_t *wm);

/* For tests: starts the sequence numbers of an empty watermark at seq, to
 * reach their wrap-around. Returns 0, or INV_EBUSY when entries are open. */
int inv__watermark_set_seq(inv_watermark_t *wm, uint64_t seq);

#endif
