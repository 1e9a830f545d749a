/*
 * The node's role (ROLE, polled every role-poll) and its slot map
 * (CLUSTER MYID + CLUSTER SLOTS + CLUSTER NODES, pipelined in one round
 * trip), both asked of the worker's own node only. From them follow the
 * shards the worker consumes: those whose stream's slot (the first of the
 * shard's range) the node owns as a primary, and on standalone Redis
 * shard 0. These are facts for the intake, which attaches and detaches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/log.h"
#include "workers/worker_int.h"

const char *inv__worker_role_name(int role) {
  return role == INV__ROLE_PRIMARY   ? "primary"
         : role == INV__ROLE_REPLICA ? "replica"
                                     : "unknown";
}

void inv__worker_update_shards(inv_worker_t *w) {
  uint8_t wanted[INV_LOG_SHARDS / 8];
  memset(wanted, 0, sizeof(wanted));
  if (!w->closing && w->role == INV__ROLE_PRIMARY && w->map_known &&
      inv_redis_is_connected(w->cmd)) {
    if (!w->map.cluster) {
      wanted[0] = 1; /* standalone Redis: one shard holds every event */
    } else {
      for (unsigned s = 0; s < INV_LOG_SHARDS; s++)
        if (inv_slot_map_owns(&w->map, inv_log_shard_home_slot(s)))
          wanted[s / 8] |= (uint8_t)(1u << (s % 8));
    }
  }
  inv_intake_set_wanted(w->intake, wanted);
  w->st.shards = inv_intake_attached(w->intake);
  /* A primary that owns slots but no shard's home slot consumes nothing:
   * exact keys of its slots are still deleted (by the workers of their
   * shards, through the cluster), but an unpinned pattern reaches no
   * worker that scans this node. Said once per such map. */
  int orphan = !w->closing && w->role == INV__ROLE_PRIMARY && w->map_known &&
               inv_redis_is_connected(w->cmd) && w->map.cluster &&
               w->map.nowned > 0 && w->st.shards == 0;
  if (orphan && !w->orphan_warned)
    inv_log_warn(w->ctx,
                 "this primary owns %u slots but no log shard's home "
                 "slot (a multiple of %u): no unpinned prefix or pattern "
                 "reaches this node; move slots in aligned ranges of %u "
                 "(docs/OPERATIONS.md)",
                 w->map.nowned, INV_LOG_SHARD_SLOTS, INV_LOG_SHARD_SLOTS);
  w->orphan_warned = orphan;
}

/* A new role: nothing is guessed. A promoted node's worker consumes the
 * shards its node now holds from their consumer groups, which the node
 * replicated; a demoted one stops, leaving what it had not acknowledged
 * pending for the new primary's worker. */
static void role_changed(inv_worker_t *w, int old, int now) {
  inv_log_info(w->ctx, "node role: %s -> %s", inv__worker_role_name(old),
               inv__worker_role_name(now));
  w->role = now;
  w->st.is_primary = now == INV__ROLE_PRIMARY;
  w->map_known = 0;
  inv__worker_update_shards(w);
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
  w->map = m->map;
  inv_unlinker_set_any_slot(w->unl, !w->map.cluster);
  w->map_known = 1;
  w->st.owned_slots = w->map.nowned;
  w->st.importing_slots = w->map.nimporting;
  inv__worker_update_shards(w);
  if (w->map_dirty) {
    w->map_dirty = 0;
    inv__worker_refresh_map(w);
  }
}

static void map_unref(map_req_t *m) {
  if (--m->refs > 0) return;
  if (m->standalone && !m->failed) {
    inv_slot_map_standalone(&m->map);
    m->w->standalone_node = 1;
  } else if (!m->have_map)
    m->failed = 1;
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
    if (strstr(reply->str, "cluster support disabled") != NULL)
      m->standalone = 1;
    else
      m->failed = 1;
  } else if (reply->type == REDIS_REPLY_STRING &&
             reply->len < sizeof(m->myid)) {
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
    if (err < 0 || inv_slot_map_from_cluster(&m->map, m->myid, m->myidlen,
                                             reply, NULL, 0) != 0)
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
      if (inv_slot_map_from_cluster(&imp, "", 0, &empty, reply->str,
                                    reply->len) == 0) {
        memcpy(m->map.importing, imp.importing, sizeof(imp.importing));
        memcpy(m->map.migrating, imp.migrating, sizeof(imp.migrating));
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
