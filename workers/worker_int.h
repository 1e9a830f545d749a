/*
 * The worker's internals, shared by worker.c (lifecycle and timers),
 * worker_topology.c (role and slot map), worker_intake.c (live messages,
 * applying entries, completion tracking) and worker_log.c (catch-up, gaps,
 * takeover, heartbeats).
 *
 * Positions. "seen" is the id of the last log entry dispatched (live or
 * from the log); entries with ids <= seen are skipped. "done" is the
 * watermark: every entry <= done has finished (its UNLINKs answered, its
 * scans complete), and it is what the state file and heartbeats record, so
 * a crash never skips an unfinished entry. Entries between done and seen
 * are open in the completion watermark (watermark.h). An entry whose work
 * could not be handed out (out of memory) stays open, marked failed, and
 * the work is dispatched again on the next role poll; an UNLINK answered
 * with an error is resent by the unlinker with a backoff, and a scan whose
 * listing failed is run again by the scanner, so neither lets the
 * watermark pass before the work is done.
 *
 * Trust. Positions move only by entries the log returned (XRANGE). A
 * message on the broadcast or on a shard channel is only a hint that the
 * log has something after seen: anyone who can reach Redis can PUBLISH a
 * forged payload, id or prev. A hint whose id is <= seen is ignored; any
 * other hint asks for a read of the log from seen. Reads are coalesced (at
 * most one in flight; a hint arriving meanwhile asks for one more page
 * only if the read in flight may not cover it) and paged like a catch-up.
 * A hint whose id the log still does not reach once the read is done is
 * rejected (counted in hints_rejected, logged at a bounded rate). A
 * position read from the state file or the heartbeats is checked against
 * the log's last-generated-id before it is used.
 *
 * Intake states: IDLE (not subscribed, role or map unknown, or a takeover
 * pending; hints are held), CATCHUP (reading the log from seen: a catch-up
 * pass, or a read asked for by hints), LIVE (the log was read to its end;
 * waiting for the next hint).
 */
#ifndef INV_WORKER_INT_H
#define INV_WORKER_INT_H

#include <stdint.h>
#include <uv.h>

#include "common/latency.h"
#include "common/redis_cluster.h"
#include "common/redis_conn.h"
#include "proto/event.h"
#include "workers/scanner.h"
#include "workers/slot_map.h"
#include "workers/node_health.h"
#include "workers/stream_id.h"
#include "workers/unlinker.h"
#include "workers/watermark.h"
#include "workers/worker.h"
#include "workers/worker_stats.h"

#define INV__RING_CAP 65536        /* entries in flight (between done and seen) */
/* Dispatches that failed (out of memory) and wait for the next role poll;
 * past this many, the worker replays the log from done instead. */
#define INV__RETRIES_MAX 10000
#define INV__HINTS_HELD 64         /* hint ids checked after each read */
#define INV__REJECT_LOG_MS 10000   /* at most one rejected-hint line this often */
/* Pattern jobs waiting (for the next shared pass, or a pinned-job slot)
 * past which intake pauses, and the memory they may hold. Large enough that
 * a request of the publisher's largest size (max-events, 10,000) of
 * patterns, or many such requests, is taken in at once: a waiting pattern
 * costs the next pass only a hash lookup per key, not a SCAN of its own.
 * 100,000 patterns of the usual few dozen bytes hold about 20 MiB; the byte
 * bound stops long patterns (up to 16 KiB each) before they hold more than
 * 64 MiB. Exact keys have their own bounds (max-pending-keys, the
 * watermark's capacity). */
#define INV__PATTERNS_WAITING_MAX 100000
#define INV__PATTERNS_WAITING_BYTES (64u << 20)
#define INV__MAP_REFRESH_MS 5000
#define INV__BEHIND_MAX 1000
#define INV__TAKEOVER_RECHECK_MS 60000 /* keep asking the heartbeats this long */

enum { INV__ROLE_UNKNOWN = 0, INV__ROLE_PRIMARY = 1, INV__ROLE_REPLICA = 2 };
enum { INV__IN_IDLE = 0, INV__IN_CATCHUP, INV__IN_LIVE };

/* A key or pattern whose dispatch failed, kept to be dispatched again
 * for the same entry (tag). */
typedef struct inv__retry_s {
  struct inv__retry_s *next;
  uint64_t tag;
  int kind;              /* INV_KIND_KEY or INV_KIND_PATTERN */
  inv_unlink_op_t mode;
  int limited;
  size_t len;
  char target[];
} inv__retry_t;

struct inv_worker_s {
  uv_loop_t *loop;
  const inv_worker_conf_t *conf;
  char id[300];
  char node[300];
  char state_path[4200];
  char ctx[320]; /* log context "worker <id>" */
  uint64_t started_us;

  inv_redis_t *cmd;     /* own node: commands */
  inv_redis_t *sub;     /* own node: the subscription */
  inv_redis_t *shard;   /* own node: the shard channel (worker_shard.c) */
  inv_cluster_t *logc;  /* the log and heartbeats, routed by key */
  /* A standalone replica is read-only, so its heartbeats go to its primary
   * over this connection, kept while it is one (else NULL). */
  inv_redis_t *hb_primary;
  char hb_primary_addr[300];
  /* Who this process is in its heartbeat ("host/pid/random hex", made on
   * the first heartbeat), and whether the record under our id was read
   * before our first write (a second worker for the same id is warned
   * about, worker_log.c). */
  char instance[64];
  int hb_checked;
  inv_unlinker_t *unl;
  inv_scanner_t *scn;

  /* Topology. */
  int role;
  char master_addr[300]; /* while a replica: its primary, "host:port" */
  int role_inflight;
  int map_known;         /* the map matches the current role */
  int map_inflight;
  int map_dirty;         /* refresh again when the current one returns */
  int map_role;          /* role when the map was taken */
  int standalone_node;   /* CLUSTER MYID said cluster support is disabled;
                            cleared on every reconnect of cmd */
  inv_slot_map_t map;
  int takeover_pending;  /* promoted: waiting for the heartbeats */
  int takeover_inflight; /* the HGETALL of the heartbeats is out */
  int takeover_recheck;  /* replayed from our own position because the
                            heartbeats could not be read: read them again */
  uint64_t takeover_since_us; /* when the promotion was seen */
  inv_sid_t takeover_from;    /* where the takeover replay started */

  /* Positions. */
  int have_position;
  inv_sid_t seen, done, saved;
  int saved_valid;       /* the state file holds saved */
  inv_sid_t gap_ref;     /* position checked against the log's trimming */
  int gap_ref_set;       /* a rewind set gap_ref (else the check uses seen) */
  int gap_skip;          /* the next catch-up pass does not check for a gap */
  inv_sid_t patterns_only_upto; /* rescan: entries <= this: only patterns */
  /* Slots gained: entries <= replay_upto touch only keys of replay_slots
   * (they were applied already for the slots owned before). */
  int replay_limited;
  inv_sid_t replay_upto;
  uint8_t replay_slots[INV_SLOTS / 8];
  inv_sid_t replay_from; /* where that replay started (reported only) */

  /* Owed replays (worker.c, PROTOCOL.md 11). What an ownership change
   * still requires must survive a kill -9: a limited replay for gained
   * slots (replay_* above, while replay_limited) and a takeover after a
   * promotion (takeover_owed: entries up to takeover_upto re-run for every
   * slot) are written to the state file with the position, at once when
   * they start, and leave it only when done passes their upto. The file
   * also records the role and the slots owned, so that a worker restarted
   * after a promotion or a slot gain it never saw still replays. */
  int takeover_owed;
  inv_sid_t takeover_upto;
  int boot_role;         /* the role the state file recorded (until the
                            first role is known) */
  int known_slots_valid; /* known_slots: slots owned as a primary the last
                            time the map was taken (or the state file's) */
  uint8_t known_slots[INV_SLOTS / 8];
  struct inv_state_s *saved_state; /* what the state file holds now */

  /* Completion tracking. */
  inv_watermark_t *wm;
  uint64_t pending_keys;         /* exact keys handed to the unlinker */
  inv__retry_t *retry_head, *retry_tail; /* failed dispatches, in order */
  size_t nretry;
  int replay_due;  /* a failure could not be kept for a retry: replay */

  /* Intake. */
  int in_rewind;         /* callbacks of cancelled work must not resume intake */
  int intake;
  int subscribed;
  int read_again;        /* a hint arrived that the read in flight may miss */
  int hint_read;         /* this CATCHUP pass was asked for by hints */
  int catchup_inflight;
  int catchup_waiting;   /* a page is due once backpressure clears */
  uint64_t catchup_gen;

  /* Hints (worker_intake.c). hints[] holds the ids beyond seen that
   * arrived since the last read ended; hint_max is the largest of them
   * (also of those that did not fit), hint_sent what hint_max was when the
   * last page was asked for: the log held every real entry up to it then.
   * log_top is the largest id the log has shown (an entry read, or its
   * last-generated-id). */
  inv_sid_t hints[INV__HINTS_HELD];
  const char *hint_src[INV__HINTS_HELD];
  size_t nhints;
  inv_sid_t hint_max, hint_sent, log_top;
  uint64_t rejected_unlogged;  /* rejected since the last log line */
  uint64_t rejected_logged_ms; /* when that line was written */

  /* Live verification (worker_log.c): Pub/Sub in a cluster is carried
   * over the cluster bus, which drops a message when a link between two
   * nodes is being re-established, while our own subscription stays up.
   * A lost hint leaves entries unread until the next one. Every heartbeat
   * interval a live worker compares the log's last id with seen: when the
   * same last id was already there at the previous check and is still
   * unread, its hint was lost and the log is read. */
  int verify_inflight;
  int verify_prev_set;
  inv_sid_t verify_prev_last; /* the log's last id at the previous check */

  /* The shard channel (worker_shard.c): the one wanted now ("" for none)
   * and the one SSUBSCRIBE was sent for on the current connection. */
  char shard_channel[INV_SHARD_CHANNEL_MAX];
  char shard_on[INV_SHARD_CHANNEL_MAX];
  int shard_inflight;
  int shard_warned;      /* a failed SSUBSCRIBE was logged as a warning */

  /* Figures. */
  inv_worker_stats_t st;
  inv_latency_obs_t lag;
  inv_node_health_t *node_health; /* polls the node (node_health.h) */
  uint64_t last_lag_ms;
  int behind_inflight;
  int hb_inflight;

  /* Timers. */
  uv_timer_t role_timer, map_timer, save_timer, hb_timer;
  int closing;
  int open_handles;
  void (*stop_cb)(void *data);
  void *stop_data;
};

/* Topology (worker_topology.c). */
void inv__worker_poll_role(inv_worker_t *w);
void inv__worker_refresh_map(inv_worker_t *w);

/* Intake (worker_intake.c). */
/* A live message on source (the broadcast or a shard channel) is a hint;
 * see the top of this file. Returns 1 when it asked for a log read (its
 * id was beyond seen), 0 when its id was taken in already or is covered by
 * the read in flight (counted in events_skipped), or INV_EPROTO when no id
 * could be read from it (counted in decode_errors and logged). */
int inv__worker_hint(inv_worker_t *w, const char *data, size_t len,
                     const char *source);
/* A read of the log ended at its end: checks the held hints against seen,
 * rejects those beyond it. Returns 1 when one more read is due (a hint
 * was rejected, so hints skipped as covered by the read may not have
 * been). */
int inv__worker_hints_settle(inv_worker_t *w);
/* Counts n ids from source that the log does not confirm (the largest is
 * id) and logs them at most once per INV__REJECT_LOG_MS. */
void inv__worker_reject_ids(inv_worker_t *w, uint64_t n, inv_sid_t id,
                            const char *source);
/* Applies one entry read from the log (id and its decoded payload).
 * from_log counts catch-up events (a catch-up pass, not a hint's read).
 * Returns 1 when applied, 0 when skipped (id <= seen). */
int inv__worker_apply(inv_worker_t *w, inv_sid_t id, inv_payload_t *p,
                      int from_log);
int inv__worker_backpressured(const inv_worker_t *w);
/* Something finished: resume a log read paused by backpressure. */
void inv__worker_progress(inv_worker_t *w);
/* Starts intake when subscribed, the role and map are known and no
 * takeover is pending. */
void inv__worker_maybe_start(inv_worker_t *w);
/* Stops intake (IDLE): replies of the running catch-up are ignored. */
void inv__worker_go_idle(inv_worker_t *w);
/* Drops all outstanding work and restarts from start (deletes are
 * idempotent). With check_gap, the next catch-up checks the log's
 * trimming against the position before the rewind. */
void inv__worker_rewind(inv_worker_t *w, inv_sid_t start, int check_gap,
                        const char *why);
/* Ends every outstanding entry (demotion: a standby owns nothing). */
void inv__worker_stand_down(inv_worker_t *w);
/* Called on every role poll: dispatches again the keys and patterns whose
 * dispatch failed, or replays the log from done when a failure could not
 * be kept for a retry. */
void inv__worker_retry_tick(inv_worker_t *w);
/* Frees what is kept for retries (at stop). */
void inv__worker_retry_clear(inv_worker_t *w);

/* Shard channel (worker_shard.c). */
/* Subscribes to the channel the role and map call for, leaving the old
 * one; called when the map or the role changed. */
void inv__worker_shard_update(inv_worker_t *w);
void inv__worker_shard_event(inv_redis_t *r, inv_redis_event_t ev, void *data);
void inv__worker_shard_push(inv_redis_t *r, redisReply *msg, void *data);

/* Log (worker_log.c). */
/* Starts a catch-up pass: with check_position, XINFO STREAM first (gaps,
 * a position beyond the log's end, a fresh worker's start). */
void inv__worker_begin_catchup(inv_worker_t *w, int check_position);
/* While LIVE: reads the log from seen for the hints held. */
void inv__worker_begin_read(inv_worker_t *w);
void inv__worker_next_page(inv_worker_t *w);
/* Reads the heartbeats to find where the old primary's worker stood and
 * replays from there minus the takeover window. When they cannot be read it
 * replays from its own position at once (never stalling intake) and reads
 * them again on every role poll for INV__TAKEOVER_RECHECK_MS, replaying
 * further back if the old worker turns out to have been behind. */
void inv__worker_takeover(inv_worker_t *w);
/* Called on every role poll: asks the heartbeats again while a recheck is
 * due. */
void inv__worker_takeover_tick(inv_worker_t *w);
void inv__worker_heartbeat(inv_worker_t *w);
void inv__worker_refresh_behind(inv_worker_t *w);
/* Called every heartbeat interval while live: compares the log's last id
 * (XINFO STREAM) with seen and reads the log when a hint was lost. */
void inv__worker_verify_live(inv_worker_t *w);

/* Lifecycle (worker.c). */
/* Saves the position with the role, the slots and the owed replays when
 * any of them changed. Owed replays that done has passed are dropped
 * first. Blocking (a few KiB, fsync): called every state-save-interval and
 * at once when an owed replay is recorded. */
void inv__worker_save_state(inv_worker_t *w);
/* Drops owed replays that done has passed. */
void inv__worker_owed_settle(inv_worker_t *w);
const char *inv__worker_role_name(int role);

#endif
