/*
 * inval-publisher: wires the configuration, the Redis cluster client, the
 * sink, the batcher, the RPC server, the /metrics endpoint and the signal
 * handling into one daemon on one libuv loop.
 *
 * Shutdown (SIGTERM, SIGINT or inv_publisher_stop()): stop accepting
 * connections and close /metrics, close the open batch, wait until every
 * accepted request has been acked or failed (at most redis-timeout, since
 * every batch has that deadline), answer requests that arrive meanwhile
 * with ESHUTDOWN, then close the client sessions (after their replies are
 * written), the Redis connections and the signal handles. The loop then
 * ends and inv_publisher_run() returns 0.
 */
#ifndef INV_PUBLISHER_H
#define INV_PUBLISHER_H

#include <stddef.h>
#include <uv.h>

#include "service/pub_config.h"

typedef struct inv_publisher_s inv_publisher_t;

/* Starts the publisher on loop with conf (borrowed; it must outlive the
 * publisher). Returns 0 and *out, or INV_ECONFIG / INV_EIO / INV_ENOMEM
 * with err set (nothing is left running on loop then, once the loop has
 * run the pending close callbacks). */
int inv_publisher_start(uv_loop_t *loop, const inv_pub_conf_t *conf,
                        inv_publisher_t **out, char *err, size_t errlen);

/* The RPC port actually bound. */
int inv_publisher_port(const inv_publisher_t *p);

/* Starts the graceful stop described above (once; later calls are
 * ignored). */
void inv_publisher_stop(inv_publisher_t *p);

/* Frees p after its loop has ended (every handle closed). Accepts NULL. */
void inv_publisher_free(inv_publisher_t *p);

/* Creates a loop, starts the publisher, runs until it has stopped, and
 * releases everything. Returns 0 after a graceful stop, or the start error
 * with err set. */
int inv_publisher_run(const inv_pub_conf_t *conf, char *err, size_t errlen);

#endif
