/*
 * A minimal HTTP/1.x endpoint for Prometheus: GET /metrics answers 200 with
 * text/plain; version=0.0.4 and the body that render_cb appends. GET
 * /healthz answers 200 "ok" whenever the loop runs (the process is alive);
 * GET /ready answers 200 or 503 with the one-line reason that the ready
 * callback gives (200 "ready" when none is set). Any other path is 404, any
 * other method 405. Each connection serves one request and
 * is closed; requests over 8 KiB, or slower than 5 s, are closed. At most 64
 * connections at once. It never blocks the loop.
 */
#ifndef INV_METRICS_HTTP_H
#define INV_METRICS_HTTP_H

#include <uv.h>

#include "common/base/addr.h"
#include "common/base/buf.h"

typedef struct inv_metrics_http_s inv_metrics_http_t;

/* Appends the Prometheus text. Returns 0, or a negative code (the request
 * then gets 500). */
typedef int (*inv_metrics_render_cb)(inv_buf_t *out, void *data);

/* Binds addr and listens. Returns 0 and *out, or INV_EIO / INV_ENOMEM with
 * err set. */
int inv_metrics_http_start(uv_loop_t *loop, const inv_addr_t *addr,
                           inv_metrics_render_cb render_cb, void *data,
                           inv_metrics_http_t **out, char *err, size_t errlen);

/* Says whether the daemon can do its job now: returns 1 (ready) or 0, and
 * writes a one-line reason (no newline) into reason[0..len). */
typedef int (*inv_metrics_ready_cb)(char *reason, size_t len, void *data);

/* Sets the callback of /ready. */
void inv_metrics_http_set_ready(inv_metrics_http_t *m, inv_metrics_ready_cb cb,
                                void *data);

int inv_metrics_http_port(const inv_metrics_http_t *m);

/* Closes the listener and connections, then frees m. Accepts NULL. */
void inv_metrics_http_close(inv_metrics_http_t *m);

#endif
