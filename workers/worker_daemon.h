/*
 * The inval-worker daemon around the worker: the admin MessagePack-RPC
 * port (hello, ping, stats), /metrics, signals and the loop.
 */
#ifndef INV_WORKER_DAEMON_H
#define INV_WORKER_DAEMON_H

#include <stddef.h>

#include "workers/worker_conf.h"

#define INV_WORKER_SERVER_NAME "inval-worker"

/* Runs the worker until SIGTERM/SIGINT. Returns 0 after a graceful stop,
 * or a negative code with err set when it cannot start. */
int inv_worker_daemon_run(const inv_worker_conf_t *conf, char *err,
                          size_t errlen);

#endif
