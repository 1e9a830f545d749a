/*
 * The worker's intake: one explicit state machine per log shard, and the
 * only owner of that state (proto/log_shard.h, PROTOCOL.md section 11).
 *
 * Pure code: no libuv, no hiredis. The worker's I/O modules report facts
 * (a shard is wanted or not, a subscription was confirmed, a hint arrived,
 * a read returned, an operation finished) and the machine answers with
 * actions through the callbacks of inv_intake_ops_t (subscribe, read,
 * acknowledge). No I/O module ever switches a state itself. Every
 * transition goes through one function that checks it against the table
 * of legal transitions (INV_CHECK aborts on an illegal one: a bug) and logs
 * it at debug level.
 *
 * States of a shard:
 *
 *   OFF          not consumed here: its stream is not on this node, or the
 *                node is not a primary.
 *   SUBSCRIBING  wanted: SSUBSCRIBE to its hint channel is out. Reading
 *                waits for it, so that an entry logged after the read is
 *                announced by a hint (subscribe first, then read).
 *   PENDING      reading the consumer's pending entries (XREADGROUP ... 0,
 *                then after the last one returned): what a previous
 *                worker of this shard (this process before a restart, the
 *                old primary's worker before a failover, the old owner's
 *                before a migration) read and did not acknowledge.
 *   NEW          reading new entries (XREADGROUP ... >).
 *   LIVE         read to the end; a hint (or the periodic tick) reads
 *                again.
 *
 *   OFF -> SUBSCRIBING -> PENDING -> NEW <-> LIVE, and any state -> OFF.
 *
 * A read is in flight or due in PENDING and NEW; it is due (not sent)
 * while the worker's bounds hold intake back (ops.backpressured) or the
 * shard's watermark has no room, and inv_intake_resume sends it. A page is
 * never larger than the room left in the shard's watermark, so every entry
 * a read returns can be opened. A hint that arrives during a read makes
 * one more read follow it.
 *
 * Completion: each entry read is opened in the shard's completion
 * watermark (watermark.h) under a tag that also names the shard (the top
 * INV_INTAKE_SHARD_BITS bits). Entries are acknowledged (XACK, in one
 * command per advance) once the watermark passes them: never an entry
 * whose work is outstanding or failed. An operation that failed marks its
 * shard for a replay: on the next tick the shard's open work is dropped
 * and the shard read again from its pending entries, which hold every
 * entry not acknowledged, so failed work is always redone.
 */
#ifndef INV_WORKER_INTAKE_H
#define INV_WORKER_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/log_shard.h"
#include "proto/stream_id.h"

#define INV_INTAKE_SHARD_BITS 6
#define INV_INTAKE_TAG_SHARD(tag) \
  ((unsigned)((tag) >> (64 - INV_INTAKE_SHARD_BITS)))

typedef enum {
  INV_SHARD_OFF = 0,
  INV_SHARD_SUBSCRIBING,
  INV_SHARD_PENDING,
  INV_SHARD_NEW,
  INV_SHARD_LIVE,
  INV_SHARD_STATES
} inv_shard_state_t;

/* How a read ended, as the reader reports it. */
typedef enum {
  INV_READ_OK = 0, /* n entries returned (all opened before this) */
  INV_READ_RETRY,  /* nothing taken, read again now (a group was made) */
  INV_READ_EMPTY,  /* the stream does not exist yet */
  INV_READ_FAILED, /* an error or no answer: read again on the tick */
  INV_READ_MOVED   /* the stream is not on this node (MOVED, ASK) */
} inv_read_outcome_t;

typedef struct inv_intake_ops_s {
  void *ctx;
  /* Sends SSUBSCRIBE for shard's hint channel; its answer comes back
   * through inv_intake_subscribed. Returns 0, or < 0 (nothing was sent:
   * the tick tries again). */
  int (*subscribe)(void *ctx, unsigned shard);
  /* Sends XREADGROUP for at most count entries of shard: its pending
   * entries after `after` when pending, else new entries. The reply is
   * reported through inv_intake_open (each entry) and inv_intake_read_done,
   * both with gen: a read sent before the shard left or was replayed is
   * told apart by it. Returns 0, or < 0 (the read stays due). */
  int (*read)(void *ctx, unsigned shard, uint64_t gen, int pending,
              inv_sid_t after, size_t count);
  /* Sends XACK for the n ids of shard (no answer is reported: an
   * acknowledgement lost is an entry read again, which is harmless). */
  void (*ack)(void *ctx, unsigned shard, const inv_sid_t *ids, size_t n);
  /* The shard's open entries were dropped (it left, or it is replayed):
   * the caller drops what it keeps for them. May be NULL. */
  void (*dropped)(void *ctx, unsigned shard);
  /* 1 while the worker's own bounds (keys pending, patterns waiting) hold
   * reading back. */
  int (*backpressured)(void *ctx);
} inv_intake_ops_t;

typedef struct inv_intake_s inv_intake_t;

/* Creates the machine, every shard OFF. page is the largest read (>= 1),
 * cap the open entries per shard (>= page). ops is copied; name prefixes
 * the log lines. Returns 0 and *out, or INV_EINVAL / INV_ENOMEM. */
int inv_intake_create(const inv_intake_ops_t *ops, size_t page, size_t cap,
                      const char *name, inv_intake_t **out);
void inv_intake_destroy(inv_intake_t *in); /* accepts NULL */

/* Fact: the shards that should be consumed here now (bit s of wanted[s/8]
 * for shard s). Shards that become wanted are subscribed to; shards that
 * are no longer wanted go OFF and their open work is dropped. */
void inv_intake_set_wanted(inv_intake_t *in,
                           const uint8_t wanted[INV_LOG_SHARDS / 8]);

/* Fact: SSUBSCRIBE for shard was answered (ok 0: refused; the shard is
 * read anyway, and the tick reads it while no hint can come). */
void inv_intake_subscribed(inv_intake_t *in, unsigned shard, int ok);

/* Fact: the hint connection went down (every subscription is gone). The
 * shards are subscribed again by inv_intake_hints_up. */
void inv_intake_hints_down(inv_intake_t *in);
void inv_intake_hints_up(inv_intake_t *in);

/* Fact: a hint for shard arrived (its content is never used). */
void inv_intake_hint(inv_intake_t *in, unsigned shard);

/* During a read's reply: opens entry id of shard. Returns 0 and *tag, or
 * INV_EBUSY when gen is stale or the shard is not reading (ignore the
 * entry: it stays pending in Redis) or its watermark is full (not reached:
 * pages fit). */
int inv_intake_open(inv_intake_t *in, unsigned shard, uint64_t gen,
                    inv_sid_t id, uint64_t *tag);

/* Fact: the read of shard ended with outcome; after is the last id it
 * returned (for a pending read) and n the number of entries. */
void inv_intake_read_done(inv_intake_t *in, unsigned shard, uint64_t gen,
                          inv_read_outcome_t outcome, size_t n, inv_sid_t last);

/* Operation accounting for the entry tag names (watermark.h): begin
 * before handing work out, done or failed when it ends. They return 1, or
 * 0 for a stale tag (the shard left or was replayed since): ignore it.
 * done and failed acknowledge the entries the watermark passes. */
int inv_intake_op_begin(inv_intake_t *in, uint64_t tag);
int inv_intake_op_done(inv_intake_t *in, uint64_t tag);
int inv_intake_op_failed(inv_intake_t *in, uint64_t tag);

/* The periodic tick: replays shards with failed work, subscribes shards
 * whose SSUBSCRIBE could not be sent, resends reads that failed, and reads
 * LIVE shards that have no subscription. With poll_live, every LIVE shard
 * is read, those without a stream included (a safety net: a hint is not
 * heard when the stream is written on another node, as while its slot
 * migrates), from its pending entries when it has none open. */
void inv_intake_tick(inv_intake_t *in, int poll_live);

/* The worker's bounds freed room: sends the reads that were due. */
void inv_intake_resume(inv_intake_t *in);

/* Figures. */
inv_shard_state_t inv_intake_state(const inv_intake_t *in, unsigned shard);
const char *inv_shard_state_name(inv_shard_state_t s);
/* The last id acknowledged on shard ("0-0" before any). */
inv_sid_t inv_intake_acked(const inv_intake_t *in, unsigned shard);
/* The largest of those over the shards not OFF ("0-0" for none): a
 * worker's "last applied id" in stats and heartbeats. */
inv_sid_t inv_intake_last_acked(const inv_intake_t *in);
size_t inv_intake_attached(const inv_intake_t *in); /* shards not OFF */
size_t inv_intake_live(const inv_intake_t *in);     /* shards LIVE */
size_t inv_intake_open_entries(const inv_intake_t *in);
uint64_t inv_intake_transitions(const inv_intake_t *in);
uint64_t inv_intake_replays(const inv_intake_t *in);

#endif
