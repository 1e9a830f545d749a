/*
 * What every inval daemon does around its loop: SIGINT and SIGTERM start a
 * graceful stop (once; a second signal while stopping exits at once with
 * status 1), SIGHUP asks for a reload (see inv_daemon_on_reload(); without
 * one it is logged and ignored, never fatal), SIGPIPE is ignored, and the
 * configured log level is applied.
 */
#ifndef INV_DAEMON_H
#define INV_DAEMON_H

#include <stddef.h>
#include <uv.h>

typedef struct inv_daemon_s inv_daemon_t;

typedef void (*inv_daemon_stop_cb)(void *data);

/* Installs the signal handlers on loop. stop_cb runs once, on the loop, at
 * the first SIGINT or SIGTERM. Returns 0 and *out, or INV_ENOMEM. */
int inv_daemon_start(uv_loop_t *loop, inv_daemon_stop_cb stop_cb, void *data,
                     inv_daemon_t **out);

/* Says whether the daemon is ready to serve, with a one-line status or
 * reason in status. Returns 1 when ready, 0 when not. The same shape as the
 * /ready callback of metrics_http.h, so one function can serve both. */
typedef int (*inv_daemon_ready_fn)(char *status, size_t len, void *data);

/* Tells the service manager when the daemon is ready, with systemd's
 * notify protocol (libsystemd's sd_notify, so $NOTIFY_SOCKET decides where
 * it goes; without it nothing is sent). ready is asked every 200 ms until it
 * returns 1; then READY=1 is sent once, with a STATUS line. When the
 * service manager asks for a watchdog ($WATCHDOG_USEC), WATCHDOG=1 is sent
 * from the loop at half that period, so a loop that hangs gets the process
 * restarted. The first SIGINT or SIGTERM sends STOPPING=1. Call it once,
 * after inv_daemon_start(). */
void inv_daemon_notify_when_ready(inv_daemon_t *d, inv_daemon_ready_fn ready,
                                  void *data);

/* Runs on the loop at every SIGHUP (not while stopping). The service
 * manager is told RELOADING=1 before and READY=1 after, whatever the
 * outcome: a reload that fails keeps the old settings, so the daemon is
 * still ready. */
typedef void (*inv_daemon_reload_cb)(void *data);

/* Sets the reload callback (NULL: SIGHUP is only logged). */
void inv_daemon_on_reload(inv_daemon_t *d, inv_daemon_reload_cb cb, void *data);

/* Closes the signal handles (the loop can then end). Accepts NULL. */
void inv_daemon_close(inv_daemon_t *d);

#endif
