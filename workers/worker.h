/*
 * inval-worker: the per-node invalidation worker.
 *
 * One worker serves one Redis node. It subscribes to cache:invalidation on
 * that node, reads cache:invalidation:log (through the cluster client,
 * wherever the log lives) to catch up losslessly, and, while its node is a
 * primary, removes the keys each event names among those its node owns:
 * exact keys with pipelined UNLINK, prefixes and patterns with scan jobs.
 * On a replica it is a hot standby that only tracks the ids it saw.
 */
#ifndef INV_WORKER_H
#define INV_WORKER_H

#include <msgpack.h>
#include <uv.h>

#include "common/base/buf.h"
#include "workers/worker_conf.h"

typedef struct inv_worker_s inv_worker_t;

/* Creates the worker and starts connecting (conf must outlive it). Loads
 * the state file. Returns 0 and *out, or INV_ENOMEM / INV_EIO (unreadable
 * state file) / INV_EINVAL with err set. */
int inv_worker_create(uv_loop_t *loop, const inv_worker_conf_t *conf,
                      inv_worker_t **out, char *err, size_t errlen);

/* Packs the `stats` map. */
void inv_worker_pack_stats(inv_worker_t *w, msgpack_packer *pk);

/* For /ready: returns 1 when the worker is connected to its node and caught
 * up (intake live), else 0; writes a one-line reason into reason[0..len). */
int inv_worker_ready(inv_worker_t *w, char *reason, size_t len);

/* Appends the /metrics text. Returns 0 or INV_ENOMEM. */
int inv_worker_render_metrics(inv_buf_t *out, void *worker);

/* Graceful stop: cancels scans, saves the state file, closes every
 * connection and timer and frees w; done_cb (may be NULL) runs then. */
/* Reads the TLS files toward Redis again (SIGHUP) and makes every
 * connection's next attempt use them; open connections keep their
 * session. Returns 0 (also when the worker does not speak TLS to Redis), or
 * INV_ECONFIG / INV_ENOMEM with err set, the old settings kept. */
int inv_worker_reload_redis_tls(inv_worker_t *w, char *err, size_t errlen);

/* 1 when both of the worker's connections to its node are up. */
int inv_worker_connected(const inv_worker_t *w);

void inv_worker_stop(inv_worker_t *w, void (*done_cb)(void *data), void *data);

#endif
