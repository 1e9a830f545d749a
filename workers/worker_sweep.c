/*
 * A pattern pinned to one slot, on nodes other than the worker's own.
 *
 * A pinned pattern is logged in the shard of its slot only, so the worker
 * that consumes that shard answers for every key of the slot, wherever it
 * lives: on its own node (the scanner's pinned job), on the slot's owner
 * when that is another node (the shard's range is split between two
 * primaries), and on a node that imports the slot while it migrates. Each
 * such node is asked CLUSTER COUNTKEYSINSLOT and, when it holds keys,
 * CLUSTER GETKEYSINSLOT; the keys the pattern reaches (a matching value key
 * in the pattern's mode, the lock of one, the stale copy of one for a hard
 * pattern; never the service's own keys) are deleted through the cluster
 * client, which follows MOVED and ASK. The sweep completes its operation
 * (inv__worker_scan_done_cb) once every node answered and every delete
 * finished; any failure fails it, and the intake reads the entry again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/glob.h"
#include "common/base/log.h"
#include "common/base/slot.h"
#include "proto/keyname.h"
#include "workers/worker_int.h"

/* Keys listed per node at most: a slot holds far fewer in practice, and
 * the bound keeps one reply's size in check. */
#define SWEEP_KEYS_MAX 1000000

typedef struct sweep_s {
  inv_worker_t *w;
  char *pat;
  size_t patlen;
  inv_unlink_op_t mode;
  unsigned slot;
  uint64_t tag;
  int pending; /* node listings and deletes not finished, plus the hold */
  int err;
} sweep_t;

static void sweep_release(sweep_t *sw) {
  if (--sw->pending > 0) return;
  inv_worker_t *w = sw->w;
  uint64_t tag = sw->tag;
  int err = sw->err;
  free(sw->pat);
  free(sw);
  inv__worker_scan_done_cb(w, tag, err);
}

static void delete_done_cb(void *owner, uint64_t tag, int err) {
  sweep_t *sw = owner;
  (void)tag;
  if (err != 0 && sw->err == 0) sw->err = err;
  sweep_release(sw);
}

/* Deletes what the pattern reaches among the listed keys. */
static void take_listing(sweep_t *sw, const redisReply *keys) {
  for (size_t i = 0; i < keys->elements; i++) {
    const redisReply *k = keys->element[i];
    if (k->type != REDIS_REPLY_STRING) continue;
    if (inv_key_reserved(k->str, k->len)) {
      sw->w->st.reserved_skipped++;
      continue;
    }
    inv_unlink_op_t op;
    switch (
        inv_regen_classify(sw->pat, sw->patlen, k->str, k->len, NULL, NULL)) {
      case INV_REGEN_LOCK:
        op = INV_UNLINK_RAW;
        break;
      case INV_REGEN_STALE:
        if (sw->mode != INV_UNLINK_HARD) continue;
        op = INV_UNLINK_RAW;
        break;
      default:
        if (!inv_glob_match(sw->pat, sw->patlen, k->str, k->len)) continue;
        op = sw->mode;
        break;
    }
    sw->w->st.keys_matched++;
    sw->pending++;
    inv__worker_unlink_elsewhere(sw->w, k->str, k->len, op, delete_done_cb, sw,
                                 sw->tag);
  }
}

/* One node's part: COUNTKEYSINSLOT, then GETKEYSINSLOT for that many. The
 * node is reached either over a primary's connection of the cluster
 * client, or through the cluster client routed to the slot's owner. */
typedef struct part_s {
  sweep_t *sw;
  inv_redis_t *conn; /* NULL: routed to the slot's owner */
} part_t;

static int part_send(part_t *p, int argc, const char **argv,
                     const size_t *lens);

static void part_reply(part_t *p, redisReply *reply, int err) {
  sweep_t *sw = p->sw;
  if (err < 0 || reply == NULL || reply->type == REDIS_REPLY_ERROR) {
    if (sw->err == 0) sw->err = err < 0 ? err : INV_EREDIS;
  } else if (reply->type == REDIS_REPLY_INTEGER) {
    if (reply->integer > 0) {
      char slot[16], count[24];
      long long n =
          reply->integer < SWEEP_KEYS_MAX ? reply->integer : SWEEP_KEYS_MAX;
      snprintf(slot, sizeof(slot), "%u", sw->slot);
      snprintf(count, sizeof(count), "%lld", n);
      const char *argv[4] = {"CLUSTER", "GETKEYSINSLOT", slot, count};
      size_t lens[4] = {7, 13, strlen(slot), strlen(count)};
      if (part_send(p, 4, argv, lens) == 0) return; /* p lives on */
      if (sw->err == 0) sw->err = INV_ENOMEM;
    }
  } else if (reply->type == REDIS_REPLY_ARRAY) {
    sw->w->st.keys_scanned += reply->elements;
    take_listing(sw, reply);
  }
  free(p);
  sweep_release(sw);
}

static void part_conn_cb(inv_redis_t *r, redisReply *reply, int err,
                         void *data) {
  (void)r;
  part_reply(data, reply, err);
}

static void part_routed_cb(inv_cluster_t *c, redisReply *reply, int err,
                           void *data) {
  (void)c;
  part_reply(data, reply, err);
}

static int part_send(part_t *p, int argc, const char **argv,
                     const size_t *lens) {
  if (p->conn != NULL)
    return inv_redis_command_argv(p->conn, argc, argv, lens, part_conn_cb, p);
  /* Routed by a key of the slot: "{<tag>}" hashes to it. */
  char route[16];
  int n = snprintf(route, sizeof(route), "{%u}",
                   (unsigned)inv_slot_tag(p->sw->slot));
  return inv_cluster_command_argv(p->sw->w->cluster, route, (size_t)n, argc,
                                  argv, lens, part_routed_cb, p);
}

static void part_start(sweep_t *sw, inv_redis_t *conn) {
  char slot[16];
  snprintf(slot, sizeof(slot), "%u", sw->slot);
  const char *argv[3] = {"CLUSTER", "COUNTKEYSINSLOT", slot};
  size_t lens[3] = {7, 15, strlen(slot)};
  part_t *p = malloc(sizeof(*p));
  if (p == NULL) {
    if (sw->err == 0) sw->err = INV_ENOMEM;
    return;
  }
  p->sw = sw;
  p->conn = conn;
  sw->pending++;
  if (part_send(p, 3, argv, lens) != 0) {
    free(p);
    sw->pending--;
    if (sw->err == 0) sw->err = INV_ENOMEM;
  }
}

static void each_primary(inv_redis_t *conn, unsigned first_slot, void *data) {
  sweep_t *sw = data;
  (void)first_slot;
  /* The own node's part is the scanner's pinned job. */
  if (strcmp(inv_redis_host(conn), sw->w->conf->redis.host) == 0 &&
      inv_redis_port(conn) == sw->w->conf->redis.port)
    return;
  part_start(sw, conn);
}

int inv__worker_sweep(inv_worker_t *w, const char *pat, size_t len,
                      inv_unlink_op_t mode, unsigned slot, uint64_t tag) {
  sweep_t *sw = calloc(1, sizeof(*sw));
  if (sw == NULL || (sw->pat = malloc(len ? len : 1)) == NULL) {
    free(sw);
    return INV_ENOMEM;
  }
  memcpy(sw->pat, pat, len);
  sw->patlen = len;
  sw->w = w;
  sw->mode = mode;
  sw->slot = slot;
  sw->tag = tag;
  sw->pending = 1; /* the hold while parts start */
  w->st.slot_sweeps++;
  /* The owner, when it is not this node, through the routed client; every
   * other primary (one may import the slot) over its connection. A primary
   * whose connection is not up yet fails the sweep: it runs again. */
  if (!inv_slot_map_owns(&w->map, slot)) part_start(sw, NULL);
  if (inv_cluster_each_primary(w->cluster, slot, each_primary, sw) > 0 &&
      sw->err == 0)
    sw->err = INV_EIO;
  sweep_release(sw);
  return 1;
}
