/*
 * The publisher's view of the workers: the records of the hash
 * cache:invalidation:workers (proto/heartbeat.h), re-read once a second in
 * the background through the cluster client, so `stats` and /metrics never
 * cost a Redis round trip. The view keeps at most INV_WORKERS_VIEW_MAX
 * records (sorted by id).
 */
#ifndef INV_WORKERS_VIEW_H
#define INV_WORKERS_VIEW_H

#include <msgpack.h>
#include <stddef.h>
#include <uv.h>

#include "common/redis/redis_cluster.h"

#define INV_WORKERS_VIEW_MAX 1024
#define INV_WORKERS_VIEW_REFRESH_MS 1000

typedef struct inv_workers_view_s inv_workers_view_t;

/* Creates the view and starts its refresh timer. cluster is borrowed and
 * must stay open until inv_workers_view_close(). Returns 0 and *out, or
 * INV_ENOMEM. */
int inv_workers_view_create(uv_loop_t *loop, inv_cluster_t *cluster,
                            inv_workers_view_t **out);

/* Records known now, and how many of them are stale at the wall clock. */
size_t inv_workers_view_count(const inv_workers_view_t *v, size_t *stale);

/* Values of the hash, at the last read, that were not heartbeat records
 * (inv_heartbeat_decode refused them); they are skipped, not listed. */
size_t inv_workers_view_bad(const inv_workers_view_t *v);

/* Packs the records as an array of maps: the heartbeat's keys (the eight,
 * and "instance" and the node's "health" summary when the worker sent
 * them) plus "stale" (bool). */
void inv_workers_view_pack(const inv_workers_view_t *v, msgpack_packer *pk);

/* Stops refreshing and frees v once its timer is closed; a refresh still
 * in flight is detached and its reply ignored. Call it before closing the
 * cluster client. Accepts NULL. */
void inv_workers_view_close(inv_workers_view_t *v);

#endif
