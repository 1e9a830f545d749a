/*
 * The inval-worker daemon's wiring (see worker_daemon.h). The admin port
 * serves "hello" (same shape as the publisher's, without the event limits),
 * "ping" ("PONG") and "stats" (the map documented in workers/STATS.md).
 */
#include "workers/worker_daemon.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "common/server/daemon.h"
#include "inval/errors.h"
#include "common/base/log.h"
#include "common/server/metrics_http.h"
#include "proto/server/rpc_server.h"
#include "proto/codec.h"
#include "proto/event.h"
#include "workers/worker.h"

typedef struct daemon_s {
  uv_loop_t *loop;
  const inv_worker_conf_t *conf;
  inv_worker_t *worker;
  inv_rpc_server_t *server;
  inv_metrics_http_t *metrics;
  inv_daemon_t *daemon;
  int stopping;
} daemon_t;

static void do_ping(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  (void)msg;
  (void)data;
  inv_pack_str(inv_rpc_reply_begin(req), "PONG");
  inv_rpc_reply_end(req);
}

static void do_stats(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  daemon_t *d = data;
  (void)msg;
  if (d->worker == NULL) {
    inv_rpc_reply_error(req, INV_ESHUTDOWN, "the worker is stopping");
    return;
  }
  inv_worker_pack_stats(d->worker, inv_rpc_reply_begin(req));
  inv_rpc_reply_end(req);
}

/* hello: the shared answer, without the publisher's event limits. Its
 * params are not checked: the admin port has always answered any hello. */
static void do_hello(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  daemon_t *d = data;
  inv_rpc_hello_t hello = {
      .server = INV_WORKER_SERVER_NAME,
      .max_message_bytes = d->conf->server.max_message_bytes,
      .check_params = 0,
  };
  if (inv_rpc_hello_begin(req, msg, &hello, 0) != NULL) inv_rpc_reply_end(req);
}

static const inv_rpc_method_t methods[] = {
    {"ping", do_ping},
    {"stats", do_stats},
    {"hello", do_hello},
    {NULL, NULL},
};

static void handle(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  inv_rpc_dispatch(req, msg, methods, data);
}

static int render_metrics(inv_buf_t *out, void *data) {
  daemon_t *d = data;
  if (d->worker == NULL) return INV_ESHUTDOWN;
  return inv_worker_render_metrics(out, d->worker);
}

static int ready(char *reason, size_t len, void *data) {
  daemon_t *d = data;
  if (d->worker == NULL || d->stopping) {
    snprintf(reason, len, "shutting down");
    return 0;
  }
  return inv_worker_ready(d->worker, reason, len);
}

static void worker_stopped(void *data) {
  daemon_t *d = data;
  d->worker = NULL;
  inv_log_info("worker", "stopped");
}

static void close_servers(daemon_t *d) {
  inv_metrics_http_close(d->metrics);
  d->metrics = NULL;
  inv_rpc_server_close(d->server, 1000, NULL, NULL);
  d->server = NULL;
  inv_daemon_close(d->daemon);
  d->daemon = NULL;
}

static void signal_stop(void *data) {
  daemon_t *d = data;
  if (d->stopping) return;
  d->stopping = 1;
  close_servers(d);
  if (d->worker != NULL) inv_worker_stop(d->worker, worker_stopped, d);
}

/* Ready for the service manager (READY=1) once its servers listen (true by
 * the time this is asked) and it is connected to its Redis node. /ready asks
 * more (caught up with the log), but a long catch-up must not make the
 * service manager think the start failed. */
static int worker_started(char *status, size_t len, void *data) {
  daemon_t *d = data;
  if (!inv_worker_connected(d->worker)) return 0;
  snprintf(status, len, "connected to %s:%d", d->conf->redis.host,
           d->conf->redis.port);
  return 1;
}

/* SIGHUP: what a worker can reload without dropping a connection is its
 * TLS toward Redis (rotated certificates). */
static void reload(void *data) {
  daemon_t *d = data;
  char err[512];
  if (d->stopping || d->worker == NULL) return;
  if (!d->conf->redis_client.tls) {
    inv_log_info("worker", "reload: nothing to reload (no TLS toward Redis)");
    return;
  }
  if (inv_worker_reload_redis_tls(d->worker, err, sizeof(err)) != 0) {
    inv_log_error("worker",
                  "reload: %s; keeping the TLS settings toward "
                  "Redis as they were",
                  err);
    return;
  }
  inv_log_info("worker",
               "reload: TLS toward Redis: certificates read again; "
               "new connections use them");
}

static int start(daemon_t *d, char *err, size_t errlen) {
  int rc;
  const inv_worker_conf_t *conf = d->conf;
  inv_log_set_level((inv_log_level_t)conf->server.log_level);
  rc = inv_worker_create(d->loop, conf, &d->worker, err, errlen);
  if (rc < 0) return rc;
  if (conf->server.listen.port != 0) {
    inv_rpc_server_opts_t sopts;
    inv_rpc_server_opts_from_conf(&conf->server, &sopts);
    sopts.log_ctx = "admin";
    rc = inv_rpc_server_start(d->loop, &conf->server.listen, &sopts, handle, d,
                              &d->server, err, errlen);
    if (rc < 0) return rc;
    inv_log_info("worker", "admin port %d", inv_rpc_server_port(d->server));
  }
  if (conf->server.metrics_listen.port != 0) {
    rc = inv_metrics_http_start(d->loop, &conf->server.metrics_listen,
                                render_metrics, d, &d->metrics, err, errlen);
    if (rc < 0) return rc;
    inv_metrics_http_set_ready(d->metrics, ready, d);
    inv_log_info("worker", "metrics port %d",
                 inv_metrics_http_port(d->metrics));
  }
  rc = inv_daemon_start(d->loop, signal_stop, d, &d->daemon);
  if (rc < 0) {
    snprintf(err, errlen, "cannot install signal handlers: %s",
             inv_strerror(rc));
    return rc;
  }
  inv_daemon_notify_when_ready(d->daemon, worker_started, d);
  inv_daemon_on_reload(d->daemon, reload, d);
  inv_log_info("worker", "inval-worker %s started", INV_VERSION);
  return 0;
}

int inv_worker_daemon_run(const inv_worker_conf_t *conf, char *err,
                          size_t errlen) {
  uv_loop_t loop;
  daemon_t d;
  int rc = uv_loop_init(&loop);
  if (rc != 0) {
    snprintf(err, errlen, "cannot create the event loop: %s", uv_strerror(rc));
    return INV_EIO;
  }
  memset(&d, 0, sizeof(d));
  d.loop = &loop;
  d.conf = conf;
  rc = start(&d, err, errlen);
  if (rc < 0) {
    /* Release whatever started; the loop below runs the closes. */
    d.stopping = 1;
    close_servers(&d);
    if (d.worker != NULL) inv_worker_stop(d.worker, worker_stopped, &d);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0)
    inv_log_warn("worker", "event loop closed with handles still open");
  return rc;
}
