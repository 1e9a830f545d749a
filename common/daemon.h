/*
 * What every inval daemon does around its loop: SIGINT and SIGTERM start a
 * graceful stop (once; a second signal while stopping exits at once with
 * status 1), SIGPIPE is ignored, and the configured log level is applied.
 */
#ifndef INV_DAEMON_H
#define INV_DAEMON_H

#include <uv.h>

typedef struct inv_daemon_s inv_daemon_t;

typedef void (*inv_daemon_stop_cb)(void *data);

/* Installs the signal handlers on loop. stop_cb runs once, on the loop, at
 * the first SIGINT or SIGTERM. Returns 0 and *out, or INV_ENOMEM. */
int inv_daemon_start(uv_loop_t *loop, inv_daemon_stop_cb stop_cb, void *data,
                     inv_daemon_t **out);

/* Closes the signal handles (the loop can then end). Accepts NULL. */
void inv_daemon_close(inv_daemon_t *d);

#endif
