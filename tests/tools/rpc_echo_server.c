/*
 * rpc_echo_server: a small daemon on top of inval_server, for the tests of
 * the shared serving layer (tests/integration/test_rpc_server.py). It takes
 * the flags every inval daemon shares (INV_SERVER_CONF_ROWS) and answers:
 *   echo [any...]        its params, as they came
 *   ping []              "PONG"
 *   hello [{...}]        {"server": "rpc_echo"}
 *   slow [ms, tag...]    its params, after ms milliseconds (a uv timer), so
 *                        replies come out of order and requests can be in
 *                        flight at shutdown (they then get ESHUTDOWN)
 *   fail ["ECODE"]       an error reply with that code ("EBUSY", ...)
 *   pause [ms]           stops reading from every client for ms, then
 *                        answers
 *   stats []             the server's counters and errors per code
 * and anything else with ENOMETHOD. /metrics renders the same counters.
 * SIGTERM or SIGINT: stop accepting, answer pending slow requests with
 * ESHUTDOWN, close with a 2 s linger and exit 0. A start failure (bad TLS
 * files, port in use) exits 2.
 */
#include <msgpack.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/base/config.h"
#include "common/server/daemon.h"
#include "inval/errors.h"
#include "common/base/log.h"
#include "common/server/metrics_http.h"
#include "proto/server/rpc_server.h"
#include "common/base/stats.h"
#include "proto/codec.h"

#define ECHO_CTX "echo"
#define ECHO_PREFIX "inval_rpc_echo"

typedef struct echo_conf_s {
  inv_server_conf_t server;
} echo_conf_t;

static const inv_conf_row_t echo_rows[] = {
    INV_SERVER_CONF_ROWS(echo_conf_t, server, "127.0.0.1:7799"),
};
#define ECHO_NROWS (sizeof(echo_rows) / sizeof(echo_rows[0]))

/* The server's counters, rendered through the shared stats tables. */
static const inv_stat_desc_t echo_stat_desc[] = {
    {"clients", INV_STAT_GAUGE, offsetof(inv_rpc_server_stats_t, clients),
     "client connections open now"},
    {"connections", INV_STAT_COUNTER,
     offsetof(inv_rpc_server_stats_t, connections), "connections accepted"},
    {"rejected_clients", INV_STAT_COUNTER,
     offsetof(inv_rpc_server_stats_t, rejected_clients),
     "connections refused over max-clients"},
    {"requests", INV_STAT_COUNTER, offsetof(inv_rpc_server_stats_t, requests),
     "requests and notifications decoded"},
    {"protocol_closes", INV_STAT_COUNTER,
     offsetof(inv_rpc_server_stats_t, protocol_closes),
     "sessions closed for a framing error"},
    {"tls_plaintext_closes", INV_STAT_COUNTER,
     offsetof(inv_rpc_server_stats_t, tls_plaintext_closes),
     "sessions closed for plaintext on the TLS port"},
    {"idle_closes", INV_STAT_COUNTER,
     offsetof(inv_rpc_server_stats_t, idle_closes),
     "sessions closed by the idle timeout"},
    {"bytes_in", INV_STAT_COUNTER, offsetof(inv_rpc_server_stats_t, bytes_in),
     "bytes read from clients"},
    {"bytes_out", INV_STAT_COUNTER, offsetof(inv_rpc_server_stats_t, bytes_out),
     "bytes written to clients"},
};
#define ECHO_NSTATS (sizeof(echo_stat_desc) / sizeof(echo_stat_desc[0]))

/* The wire error codes, for the per-code counters. */
static const int echo_codes[] = {
#define ECHO_CODE(name, num, msg) INV_##name,
    INV_ERRNO_MAP(ECHO_CODE)
#undef ECHO_CODE
};
#define ECHO_NCODES (sizeof(echo_codes) / sizeof(echo_codes[0]))

typedef struct slow_s slow_t;

typedef struct echo_app_s {
  uv_loop_t loop;
  inv_rpc_server_t *server;
  inv_metrics_http_t *metrics;
  inv_daemon_t *daemon;
  uv_timer_t pause_timer;
  int pause_timer_open;
  inv_rpc_req_t *pause_req; /* the pause request waiting for its end */
  slow_t *slow;             /* slow requests not answered yet */
  int stopping;
} echo_app_t;

/* A slow request: its params, packed, and the timer that answers it. */
struct slow_s {
  uv_timer_t timer;
  echo_app_t *app;
  inv_rpc_req_t *req;
  msgpack_sbuffer params;
  slow_t *prev, *next;
};

static void slow_unlink(slow_t *sl) {
  if (sl->prev != NULL)
    sl->prev->next = sl->next;
  else
    sl->app->slow = sl->next;
  if (sl->next != NULL) sl->next->prev = sl->prev;
  sl->prev = sl->next = NULL;
}

static void slow_close_cb(uv_handle_t *h) {
  slow_t *sl = h->data;
  msgpack_sbuffer_destroy(&sl->params);
  free(sl);
}

static void slow_timer_cb(uv_timer_t *t) {
  slow_t *sl = t->data;
  msgpack_unpacked u;
  msgpack_packer *pk;

  msgpack_unpacked_init(&u);
  pk = inv_rpc_reply_begin(sl->req);
  if (msgpack_unpack_next(&u, sl->params.data, sl->params.size, NULL) ==
      MSGPACK_UNPACK_SUCCESS)
    msgpack_pack_object(pk, u.data);
  else
    msgpack_pack_nil(pk);
  msgpack_unpacked_destroy(&u);
  inv_rpc_reply_end(sl->req);
  slow_unlink(sl);
  uv_close((uv_handle_t *)&sl->timer, slow_close_cb);
}

static void handle_slow(echo_app_t *app, inv_rpc_req_t *req,
                        const inv_msg_t *msg) {
  const msgpack_object *params = &msg->params;
  msgpack_packer pk;
  slow_t *sl;
  uint64_t ms;

  if (params->via.array.size < 1 ||
      params->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
    inv_rpc_reply_error(req, INV_EINVAL, "slow takes [ms, ...]");
    return;
  }
  ms = params->via.array.ptr[0].via.u64;
  sl = calloc(1, sizeof(*sl));
  if (sl == NULL) {
    inv_rpc_reply_error(req, INV_ENOMEM, "out of memory");
    return;
  }
  sl->app = app;
  sl->req = req;
  msgpack_sbuffer_init(&sl->params);
  msgpack_packer_init(&pk, &sl->params, msgpack_sbuffer_write);
  msgpack_pack_object(&pk, *params);
  uv_timer_init(&app->loop, &sl->timer);
  sl->timer.data = sl;
  sl->next = app->slow;
  if (app->slow != NULL) app->slow->prev = sl;
  app->slow = sl;
  uv_timer_start(&sl->timer, slow_timer_cb, ms, 0);
}

static void pause_timer_cb(uv_timer_t *t) {
  echo_app_t *app = t->data;
  inv_rpc_server_pause(app->server, 0);
  if (app->pause_req != NULL) {
    inv_pack_str(inv_rpc_reply_begin(app->pause_req), "OK");
    inv_rpc_reply_end(app->pause_req);
    app->pause_req = NULL;
  }
}

static void handle_pause(echo_app_t *app, inv_rpc_req_t *req,
                         const inv_msg_t *msg) {
  const msgpack_object *params = &msg->params;
  if (params->via.array.size != 1 ||
      params->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
    inv_rpc_reply_error(req, INV_EINVAL, "pause takes [ms]");
    return;
  }
  if (app->pause_req != NULL) {
    inv_rpc_reply_error(req, INV_EBUSY, "already paused");
    return;
  }
  app->pause_req = req;
  inv_rpc_server_pause(app->server, 1);
  uv_timer_start(&app->pause_timer, pause_timer_cb,
                 params->via.array.ptr[0].via.u64, 0);
}

static void handle_fail(inv_rpc_req_t *req, const inv_msg_t *msg) {
  const msgpack_object *params = &msg->params;
  int code = 0;
  if (params->via.array.size >= 1 &&
      params->via.array.ptr[0].type == MSGPACK_OBJECT_STR)
    code = inv_err_from_name(params->via.array.ptr[0].via.str.ptr,
                             params->via.array.ptr[0].via.str.size);
  if (code == 0) {
    inv_rpc_reply_error(req, INV_EINVAL, "fail takes [\"ECODE\"]");
    return;
  }
  inv_rpc_reply_error(req, code, "failed on request");
}

static void handle_stats(echo_app_t *app, inv_rpc_req_t *req) {
  const inv_rpc_server_stats_t *st = inv_rpc_server_stats(app->server);
  msgpack_packer *pk = inv_rpc_reply_begin(req);

  msgpack_pack_map(pk, ECHO_NSTATS + 1);
  inv_stats_pack(pk, echo_stat_desc, ECHO_NSTATS, st);
  inv_pack_str(pk, "errors");
  msgpack_pack_map(pk, ECHO_NCODES);
  for (size_t i = 0; i < ECHO_NCODES; i++) {
    inv_pack_str(pk, inv_err_name(echo_codes[i]));
    msgpack_pack_uint64(pk, inv_rpc_server_errors(app->server, echo_codes[i]));
  }
  inv_rpc_reply_end(req);
}

static int method_is(const inv_msg_t *msg, const char *name) {
  size_t n = strlen(name);
  return msg->method_len == n && memcmp(msg->method, name, n) == 0;
}

static void echo_handler(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  echo_app_t *app = data;
  msgpack_packer *pk;

  if (method_is(msg, "echo")) {
    pk = inv_rpc_reply_begin(req);
    msgpack_pack_object(pk, msg->params);
    inv_rpc_reply_end(req);
  } else if (method_is(msg, "ping")) {
    inv_pack_str(inv_rpc_reply_begin(req), "PONG");
    inv_rpc_reply_end(req);
  } else if (method_is(msg, "hello")) {
    pk = inv_rpc_reply_begin(req);
    msgpack_pack_map(pk, 1);
    inv_pack_str(pk, "server");
    inv_pack_str(pk, "rpc_echo");
    inv_rpc_reply_end(req);
  } else if (method_is(msg, "slow")) {
    handle_slow(app, req, msg);
  } else if (method_is(msg, "fail")) {
    handle_fail(req, msg);
  } else if (method_is(msg, "pause")) {
    handle_pause(app, req, msg);
  } else if (method_is(msg, "stats")) {
    handle_stats(app, req);
  } else {
    inv_rpc_reply_error(req, INV_ENOMETHOD, "no such method: %.*s",
                        (int)msg->method_len, msg->method);
  }
}

static int echo_render(inv_buf_t *out, void *data) {
  echo_app_t *app = data;
  const inv_rpc_server_stats_t *st = inv_rpc_server_stats(app->server);
  int rc =
      inv_stats_prometheus(out, ECHO_PREFIX, echo_stat_desc, ECHO_NSTATS, st);
  for (size_t i = 0; rc == 0 && i < ECHO_NCODES; i++)
    rc = inv_stats_prometheus_labelled(
        out, ECHO_PREFIX, "errors", INV_STAT_COUNTER,
        "error replies sent, per code", "code", inv_err_name(echo_codes[i]),
        inv_rpc_server_errors(app->server, echo_codes[i]), i == 0);
  return rc;
}

static void echo_stop_cb(void *data) {
  echo_app_t *app = data;
  if (app->stopping) return;
  app->stopping = 1;
  inv_rpc_server_stop_accepting(app->server);
  /* Answer what is in flight before saying goodbye, as a real daemon
   * flushes or fails its pending work. */
  while (app->slow != NULL) {
    slow_t *sl = app->slow;
    slow_unlink(sl);
    inv_rpc_reply_error(sl->req, INV_ESHUTDOWN, "server is shutting down");
    uv_close((uv_handle_t *)&sl->timer, slow_close_cb);
  }
  if (app->pause_req != NULL) {
    inv_rpc_reply_error(app->pause_req, INV_ESHUTDOWN,
                        "server is shutting down");
    app->pause_req = NULL;
  }
  uv_close((uv_handle_t *)&app->pause_timer, NULL);
  inv_rpc_server_close(app->server, 2000, NULL, NULL);
  app->server = NULL;
  inv_metrics_http_close(app->metrics);
  app->metrics = NULL;
  inv_daemon_close(app->daemon);
  app->daemon = NULL;
}

int main(int argc, char **argv) {
  static echo_app_t app;
  echo_conf_t conf;
  inv_rpc_server_opts_t opts;
  inv_cli_action_t action;
  char err[512];
  int rc, status = 0;

  memset(&conf, 0, sizeof(conf));
  rc =
      inv_cli_parse(argc, argv, echo_rows, ECHO_NROWS, &conf, "rpc_echo_server",
                    "a test daemon for inval's MessagePack-RPC server",
                    INV_VERSION, &action, err, sizeof(err));
  if (rc != 0) {
    fprintf(stderr, "rpc_echo_server: %s\n", err);
    inv_conf_free(echo_rows, ECHO_NROWS, &conf);
    return 2;
  }
  if (action != INV_CLI_RUN) {
    inv_conf_free(echo_rows, ECHO_NROWS, &conf);
    return 0;
  }
  inv_log_set_level((inv_log_level_t)conf.server.log_level);

  uv_loop_init(&app.loop);
  uv_timer_init(&app.loop, &app.pause_timer);
  app.pause_timer.data = &app;
  if (inv_daemon_start(&app.loop, echo_stop_cb, &app, &app.daemon) != 0) {
    inv_log_error(ECHO_CTX, "out of memory");
    status = 2;
    goto out;
  }
  inv_rpc_server_opts_from_conf(&conf.server, &opts);
  opts.log_ctx = ECHO_CTX;
  rc = inv_rpc_server_start(&app.loop, &conf.server.listen, &opts, echo_handler,
                            &app, &app.server, err, sizeof(err));
  if (rc != 0) {
    inv_log_error(ECHO_CTX, "cannot start: %s", err);
    status = 2;
    goto out;
  }
  if (conf.server.metrics_listen.port != 0) {
    rc = inv_metrics_http_start(&app.loop, &conf.server.metrics_listen,
                                echo_render, &app, &app.metrics, err,
                                sizeof(err));
    if (rc != 0) {
      inv_log_error(ECHO_CTX, "cannot start /metrics: %s", err);
      status = 2;
      goto out;
    }
  }
  uv_run(&app.loop, UV_RUN_DEFAULT);
  inv_log_info(ECHO_CTX, "stopped");

out:
  if (status != 0) {
    /* Release what was opened, then let the loop run the close callbacks. */
    inv_rpc_server_close(app.server, 0, NULL, NULL);
    inv_metrics_http_close(app.metrics);
    inv_daemon_close(app.daemon);
    uv_close((uv_handle_t *)&app.pause_timer, NULL);
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (uv_loop_close(&app.loop) != 0) {
    inv_log_error(ECHO_CTX, "handles left open at exit");
    if (status == 0) status = 1;
  }
  inv_conf_free(echo_rows, ECHO_NROWS, &conf);
  return status;
}
