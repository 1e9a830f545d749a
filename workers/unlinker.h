/*
 * The UNLINK pipeline to the worker's own node.
 *
 * Keys are pushed one at a time, from exact-key events and from scan jobs,
 * each with its operation (the key contract of proto/keyname.h):
 *   INV_UNLINK_HARD  a value key K: UNLINK K L(K) S(K), one command since
 *                    the three share K's slot (never CROSSSLOT);
 *   INV_UNLINK_SOFT  a value key K: EVALSHA soft.lua K L(K) S(K) grace_ms,
 *                    resent as EVAL after a NOSCRIPT reply;
 *   INV_UNLINK_RAW   this exact key alone: UNLINK key (a lock or stale copy
 *                    found by a scan).
 * A value key whose lock name cannot keep its slot gets UNLINK K for both
 * hard and soft.
 *
 * Consecutive HARD and RAW keys of the FIFO that share a slot (hash-tagged
 * keys such as {user:42}:profile and {user:42}:orders) and the same ASKING
 * need go out as ONE multi-key command, UNLINK K1 L1 S1 K2 L2 S2 ..., of at
 * most INV_UNLINK_BATCH_MAX keys (and about 16 KiB of names): Redis's cost
 * per command (parsing, lookup, redirect check, reply) is then paid once
 * for many keys. Its integer reply counts every name removed. Keys of
 * different slots never share a command, so it is never CROSSSLOT.
 *
 * Every command of a loop iteration goes out in one write (inv_redis_t
 * pipelines them). A key in a slot the node is importing is sent as
 * ASKING + UNLINK. At most INV_UNLINK_MAX_INFLIGHT commands (so at most
 * INV_UNLINK_MAX_INFLIGHT * INV_UNLINK_BATCH_MAX keys) are awaiting
 * replies; the rest wait in a FIFO whose length the owner bounds
 * (max-pending-keys, scan-inflight).
 *
 * Each key carries (done_cb's) owner and tag; done_cb is called exactly
 * once per pushed key: with 0 when Redis answered (removed, absent, or
 * MOVED/ASK: the key is another node's business), or INV_ECLOSED when the
 * key was dropped by inv_unlinker_clear() or at close; never for a key
 * whose delete failed. A key answered with another error reply (NOPERM
 * from an ACL, a failing soft.lua, READONLY) is not deleted, so it is sent
 * again, alone, after a backoff (100 ms doubling up to 5 s; counted in
 * unlink_retries and logged at most every 10 s) until it succeeds or is
 * dropped: its owner's position must not pass it. A key whose command
 * failed because the connection dropped or timed out, or that got
 * LOADING/BUSY/TRYAGAIN, is queued again and resent (deletes are
 * idempotent), so a node restart loses nothing. A multi-key command answered
 * TRYAGAIN (its slot is migrating and its keys are split between the two nodes)
 * is resent key by key, each key in a command of its own; a HARD or SOFT
 * command of one key answered TRYAGAIN (K, L(K), S(K) are split) is resent as
 * three single-key UNLINKs, one after the other. MOVED or ASK for a multi-key
 * command concerns all of its keys (they share a slot): each is handed to the
 * redirect hook (inv_unlinker_set_redirect), which deletes it where it
 * lives now; without a hook it counts as done. unlinks_sent counts
 * commands, not keys.
 */
#ifndef INV_WORKER_UNLINKER_H
#define INV_WORKER_UNLINKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/redis/redis_conn.h"
#include "proto/keyname.h"
#include "workers/worker_stats.h"

#define INV_UNLINK_MAX_INFLIGHT 10000

/* The most keys one multi-key UNLINK carries: enough to make Redis's cost
 * per command small next to its cost per key, small enough that one
 * command stays short (192 names) and a TRYAGAIN resends little. */
#define INV_UNLINK_BATCH_MAX 64

typedef struct inv_unlinker_s inv_unlinker_t;

typedef enum {
  INV_UNLINK_HARD = 0,
  INV_UNLINK_SOFT = 1,
  INV_UNLINK_RAW = 2
} inv_unlink_op_t;

typedef void (*inv_unlink_done_cb)(void *owner, uint64_t tag, int err);

/* Called when a reply was MOVED (the slot map is stale). */
typedef void (*inv_unlink_moved_cb)(void *data);

/* Creates the pipeline on r (not owned). stats (not owned) gets
 * keys_unlinked, stale_copies, unlinks_sent and unlink_redirects.
 * grace_ms is the TTL of the stale copies soft invalidation makes. Returns
 * 0 and *out, or INV_ENOMEM. */
int inv_unlinker_create(uv_loop_t *loop, inv_redis_t *r,
                        inv_worker_stats_t *stats, uint64_t grace_ms,
                        inv_unlink_moved_cb moved_cb, void *moved_data,
                        inv_unlinker_t **out);

/* Queues op on key (copied). Sending is deferred to the end of the
 * current loop pass's callbacks (within the in-flight bound), so that keys
 * pushed together can share commands; they still leave in the same write
 * as before. asking selects ASKING before the command. Returns 0, or INV_ENOMEM
 * (done_cb will not be called). */
int inv_unlinker_push(inv_unlinker_t *u, const char *key, size_t len,
                      inv_unlink_op_t op, int asking,
                      inv_unlink_done_cb done_cb, void *owner, uint64_t tag);

/* Called for a key the node answered MOVED or ASK for, with its op (a
 * split soft key comes as HARD), its done_cb, owner and tag: from then on
 * the hook owns the key and must call done_cb exactly once. */
typedef void (*inv_unlink_redirect_fn)(void *data, const char *key, size_t len,
                                       inv_unlink_op_t op,
                                       inv_unlink_done_cb done_cb, void *owner,
                                       uint64_t tag);

/* Sets the redirect hook (NULL: a redirected key is done). */
void inv_unlinker_set_redirect(inv_unlinker_t *u, inv_unlink_redirect_fn fn,
                               void *data);

/* any = 1 for standalone Redis, where no command is bound to one slot:
 * consecutive hard keys of any slots then share a multi-key UNLINK. Should
 * the node answer CROSSSLOT (it is a cluster node after all), each key of
 * that command is resent alone. Off at creation. */
void inv_unlinker_set_any_slot(inv_unlinker_t *u, int any);

/* Sends queued keys (after a reconnect, or after replies freed room). After
 * a transient error reply it sends nothing until the 100 ms retry timer
 * fires, so a node that answers LOADING or CLUSTERDOWN is not flooded. */
void inv_unlinker_flush(inv_unlinker_t *u);

/* Drops every queued (unsent) key and every key waiting for its resend,
 * calling its done_cb with INV_ECLOSED. Keys in flight complete normally. */
void inv_unlinker_clear(inv_unlinker_t *u);

size_t inv_unlinker_queued(const inv_unlinker_t *u);
size_t inv_unlinker_inflight(const inv_unlinker_t *u);
/* Keys waiting for their resend after an error reply. */
size_t inv_unlinker_retrying(const inv_unlinker_t *u);

/* Clears the queue, and from now on fails (rather than requeues) keys
 * whose command fails; frees u once nothing is in flight. The connection
 * must be closed by its owner, which fails the commands in flight. Accepts
 * NULL. */
void inv_unlinker_close(inv_unlinker_t *u);

#endif
