/*
 * The node's role (ROLE, polled every role-poll) and its slot map
 * (CLUSTER MYID + CLUSTER SLOTS + CLUSTER NODES, pipelined in one round
 * trip), both asked of the worker's own node only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "workers/worker_int.h"

const char *inv__worker_role_name(int role) {
  return role == INV__ROLE_PRIMARY   ? "primary"
         : role == INV__ROLE_REPLICA ? "replica"
                                     : "unknown";
}

static void role_changed(inv_worker_t *w, int old, int now) {
  /* A worker that starts on a primary whose state file says "replica" was
   * down, or had not saved since, when its node was promoted: it owes the
   * takeover all the same. */
  int promoted = now == INV__ROLE_PRIMARY &&
                 (old == INV__ROLE_REPLICA ||
                  (old == INV__ROLE_UNKNOWN && w->boot_role == INV__ROLE_REPLICA));
  inv_log_info(w->ctx, "node role: %s -> %s%s", inv__worker_role_name(old),
               inv__worker_role_name(now),
               promoted && old == INV__ROLE_UNKNOWN
                   ? " (the state file says replica: promoted meanwhile)"
                   : "");
  w->role = now;
  w->boot_role = INV__ROLE_UNKNOWN;
  if (now != INV__ROLE_PRIMARY || promoted) {
    /* A replica owes nothing (its new primary's worker replays), and a
     * promotion's takeover covers every slot. */
    w->known_slots_valid = 0;
    w->replay_limited = 0;
    if (now != INV__ROLE_PRIMARY) w->takeover_owed = 0;
  }
  w->st.is_primary = now == INV__ROLE_PRIMARY;
  w->map_known = 0;
  inv__worker_shard_update(w); /* none until the new map is known */
  inv__worker_go_idle(w);
  w->takeover_pending = 0;
  w->takeover_recheck = 0;
  if (old == INV__ROLE_PRIMARY) {
    /* Demoted: the new primary's worker replays past our position. */
    inv__worker_stand_down(w);
  }
  if (promoted) {
    w->takeover_pending = 1;
    w->takeover_since_us = inv_now_us();
    inv__worker_takeover(w);
  }
  inv__worker_refresh_map(w);
}

static void role_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  inv_worker_t *w = data;
  (void)r;
  w->role_inflight = 0;
  if (w->closing || err < 0 || reply->type != REDIS_REPLY_ARRAY ||
      reply->elements < 1 || reply->element[0]->type != REDIS_REPLY_STRING)
    return;
  const redisReply *kind = reply->element[0];
  int now = INV__ROLE_UNKNOWN;
  if (strcmp(kind->str, "master") == 0) {
    now = INV__ROLE_PRIMARY;
  } else if (strcmp(kind->str, "slave") == 0 && reply->elements >= 3 &&
             reply->element[1]->type == REDIS_REPLY_STRING &&
             reply->element[2]->type == REDIS_REPLY_INTEGER) {
    now = INV__ROLE_REPLICA;
    snprintf(w->master_addr, sizeof(w->master_addr), "%s:%lld",
             reply->element[1]->str, reply->element[2]->integer);
  }
  if (now != w->role && now != INV__ROLE_UNKNOWN) role_changed(w, w->role, now);
}

void inv__worker_poll_role(inv_worker_t *w) {
  if (w->role_inflight || w->closing) return;
  if (inv_redis_command(w->cmd, role_cb, w, "ROLE") == 0) w->role_inflight = 1;
}

/* One refresh: three pipelined commands whose replies arrive in order.
 * Each callback drops a reference; the last one publishes the result. */
typedef struct map_req_s {
  inv_worker_t *w;
  int refs;
  int standalone;
  int failed;
  int have_map;
  char myid[64];
  size_t myidlen;
  inv_slot_map_t map;
} map_req_t;

static void map_done(inv_worker_t *w, map_req_t *m) {
  w->map_inflight = 0;
  if (w->closing) return;
  w->st.slot_map_refreshes++;
  if (m->failed) {
    w->map_dirty = 0;
    return; /* the periodic refresh tries again */
  }
  /* The slots owned before: the last map taken as a primary, or the state
   * file's (a gain while the worker was down, or before it saw it). */
  int had = w->known_slots_valid && w->role == INV__ROLE_PRIMARY;
  inv_slot_map_t old;
  memset(&old, 0, sizeof(old));
  memcpy(old.owned, w->known_slots, sizeof(old.owned));
  w->map = m->map;
  inv_unlinker_set_any_slot(w->unl, !w->map.cluster);
  w->map_known = 1;
  w->map_role = w->role;
  w->st.owned_slots = w->map.nowned;
  w->st.importing_slots = w->map.nimporting;
  inv__worker_shard_update(w);
  unsigned gained = had && w->map.cluster ? inv_slot_map_gained(&old, &w->map)
                                          : 0;
  if (w->role == INV__ROLE_PRIMARY && w->map.cluster) {
    /* An owed replay drops the slots the node no longer owns: their keys
     * are another node's now. */
    if (w->replay_limited)
      for (size_t i = 0; i < sizeof(w->replay_slots); i++)
        w->replay_slots[i] &= w->map.owned[i];
    w->known_slots_valid = 1;
    memcpy(w->known_slots, w->map.owned, sizeof(w->known_slots));
  } else if (w->role != INV__ROLE_UNKNOWN) {
    /* Before the first ROLE reply the state file's slots stay. */
    w->known_slots_valid = 0;
  }
  if (w->map_dirty) {
    w->map_dirty = 0;
    inv__worker_refresh_map(w);
  }
  if (gained > 0) {
    char why[64];
    uint8_t slots[INV_SLOTS / 8];
    /* Entries up to done finished for the slots owned before; later ones
     * (done, seen] are cancelled by the rewind and must be re-run whole,
     * so only entries <= done are limited to the gained slots. */
    inv_sid_t upto = w->done;
    for (size_t i = 0; i < sizeof(slots); i++)
      slots[i] = (uint8_t)(w->map.owned[i] & ~old.owned[i]);
    if (w->replay_limited && inv_sid_cmp(w->seen, w->replay_upto) <= 0) {
      /* A replay for earlier gains is still running: cover both. */
      for (size_t i = 0; i < sizeof(slots); i++) slots[i] |= w->replay_slots[i];
      if (inv_sid_cmp(w->replay_upto, upto) > 0) upto = w->replay_upto;
    }
    snprintf(why, sizeof(why), "%u slots gained", gained);
    /* Keys that came with the slots may have missed their events on the
     * old owner (deleted there before they moved, here before they
     * arrived): replay the takeover window for those slots only. */
    inv_sid_t from = inv_sid_minus_ms(w->done, w->conf->takeover_window_ms);
    inv__worker_rewind(w, from, 0, why);
    w->replay_limited = 1;
    w->replay_from = from;
    w->replay_upto = upto;
    memcpy(w->replay_slots, slots, sizeof(slots));
    /* The replay is owed from now on: on disk before any save could put a
     * position past its entries (a kill -9 would lose it otherwise). */
    inv__worker_save_state(w);
    return;
  }
  inv__worker_maybe_start(w);
}

static void map_unref(map_req_t *m) {
  if (--m->refs > 0) return;
  if (m->standalone && !m->failed) {
    inv_slot_map_standalone(&m->map);
    m->w->standalone_node = 1;
  }
  else if (!m->have_map) m->failed = 1;
  map_done(m->w, m);
  free(m);
}

static void myid_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  map_req_t *m = data;
  (void)r;
  if (err < 0) {
    m->failed = 1;
  } else if (reply->type == REDIS_REPLY_ERROR) {
    /* "ERR This instance has cluster support disabled". */
    if (strstr(reply->str, "cluster support disabled") != NULL) m->standalone = 1;
    else m->failed = 1;
  } else if (reply->type == REDIS_REPLY_STRING && reply->len < sizeof(m->myid)) {
    memcpy(m->myid, reply->str, reply->len);
    m->myidlen = reply->len;
  } else {
    m->failed = 1;
  }
  map_unref(m);
}

static void slots_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  map_req_t *m = data;
  (void)r;
  if (!m->failed && !m->standalone) {
    /* Parsed now: the reply dies with the callback. Importing slots are
     * added by nodes_cb. */
    if (err < 0 || reply->type != REDIS_REPLY_ARRAY ||
        inv_slot_map_from_cluster(&m->map, m->myid, m->myidlen, reply, NULL, 0) != 0)
      m->failed = 1;
    else
      m->have_map = 1;
  }
  map_unref(m);
}

static void nodes_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  map_req_t *m = data;
  (void)r;
  if (!m->failed && m->have_map) {
    if (err == 0 && (reply->type == REDIS_REPLY_STRING ||
                     reply->type == REDIS_REPLY_STATUS)) {
      inv_slot_map_t imp;
      redisReply empty;
      memset(&empty, 0, sizeof(empty));
      empty.type = REDIS_REPLY_ARRAY;
      if (inv_slot_map_from_cluster(&imp, "", 0, &empty, reply->str, reply->len) == 0) {
        memcpy(m->map.importing, imp.importing, sizeof(imp.importing));
        m->map.nimporting = imp.nimporting;
      }
    } else {
      m->failed = 1;
    }
  }
  map_unref(m);
}

void inv__worker_refresh_map(inv_worker_t *w) {
  static const char *const cmds[3] = {"MYID", "SLOTS", "NODES"};
  static const inv_redis_reply_cb cbs[3] = {myid_cb, slots_cb, nodes_cb};
  if (w->closing) return;
  if (w->map_inflight) {
    w->map_dirty = 1;
    return;
  }
  map_req_t *m = calloc(1, sizeof(*m));
  if (m == NULL) return;
  m->w = w;
  m->refs = 1; /* held while queuing */
  w->map_inflight = 1;
  if (w->standalone_node) {
    /* Known since this connection's first refresh: nothing to ask. */
    m->standalone = 1;
    map_unref(m);
    return;
  }
  for (int i = 0; i < 3; i++) {
    const char *argv[2] = {"CLUSTER", cmds[i]};
    size_t lens[2] = {7, strlen(cmds[i])};
    if (inv_redis_command_argv(w->cmd, 2, argv, lens, cbs[i], m) != 0) {
      m->failed = 1;
      break;
    }
    m->refs++;
  }
  map_unref(m);
}
