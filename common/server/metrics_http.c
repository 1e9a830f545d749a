/*
 * The /metrics endpoint (metrics_http.h): one request per connection, read
 * into a fixed 8 KiB buffer, answered and closed. Every connection has a
 * timer that bounds its whole life, so a client that sends slowly, or does
 * not read the answer, is closed after 5 s.
 */
#include "common/server/metrics_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/check.h"
#include "inval/errors.h"
#include "common/server/listen.h"
#include "common/base/log.h"
#include "common/base/queue.h"

#define INV__HTTP_MAX_REQUEST 8192
#define INV__HTTP_TIMEOUT_MS 5000
#define INV__HTTP_MAX_CONNS 64
#define INV__HTTP_CTX "metrics"

typedef struct http_conn_s http_conn_t;

struct http_conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  inv_metrics_http_t *m;
  inv_queue_t node; /* on the server's connections until freed */
  inv_buf_t resp;
  size_t len;
  int handles; /* tcp and timer, not yet closed */
  int closing;
  int answered;
  char req[INV__HTTP_MAX_REQUEST];
};

struct inv_metrics_http_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  inv_metrics_render_cb render_cb;
  void *data;
  inv_metrics_ready_cb ready_cb;
  void *ready_data;
  inv_queue_t conns; /* http_conn_t.node */
  size_t nconns;     /* connections on conns */
  int listener_open;
  int closing;
  int port;
};

static void http_maybe_free(inv_metrics_http_t *m) {
  if (m->closing && !m->listener_open && inv_queue_empty(&m->conns)) free(m);
}

static void conn_close_cb(uv_handle_t *h) {
  http_conn_t *c = h->data;
  inv_metrics_http_t *m = c->m;

  INV_CHECK(c->handles > 0);
  if (--c->handles > 0) return;
  INV_CHECK(m->nconns > 0);
  inv_queue_remove(&c->node);
  m->nconns--;
  inv_buf_free(&c->resp);
  free(c);
  http_maybe_free(m);
}

static void conn_close(http_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
  uv_close((uv_handle_t *)&c->timer, conn_close_cb);
}

static void conn_timer_cb(uv_timer_t *t) {
  http_conn_t *c = t->data;
  inv_log_debug(INV__HTTP_CTX, "request not done within %d ms; closing",
                INV__HTTP_TIMEOUT_MS);
  conn_close(c);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status) {
  (void)status;
  conn_close(req->data);
}

static void conn_write_cb(uv_write_t *w, int status) {
  http_conn_t *c = w->data;
  if (c->closing) return;
  if (status < 0 || uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp,
                                conn_shutdown_cb) != 0)
    conn_close(c);
}

/* Builds the whole response in c->resp and writes it. */
static void conn_respond(http_conn_t *c, int status, const char *reason,
                         const char *ctype, const char *body, size_t bodylen,
                         const char *extra_header) {
  uv_buf_t b;
  int rc;

  c->answered = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  rc = inv_buf_printf(&c->resp,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: %s\r\n"
                      "Content-Length: %zu\r\n"
                      "%s"
                      "Connection: close\r\n\r\n",
                      status, reason, ctype, bodylen,
                      extra_header != NULL ? extra_header : "");
  if (rc == 0 && bodylen > 0) rc = inv_buf_append(&c->resp, body, bodylen);
  if (rc != 0) {
    conn_close(c);
    return;
  }
  b = uv_buf_init(c->resp.data, (unsigned)c->resp.len);
  if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb) !=
      0)
    conn_close(c);
}

static void conn_respond_text(http_conn_t *c, int status, const char *reason,
                              const char *extra_header) {
  char body[64];
  int n = snprintf(body, sizeof(body), "%d %s\n", status, reason);
  conn_respond(c, status, reason, "text/plain; charset=utf-8", body, (size_t)n,
               extra_header);
}

static void conn_serve_metrics(http_conn_t *c) {
  inv_buf_t body = {0};
  int rc = c->m->render_cb(&body, c->m->data);
  if (rc != 0) {
    inv_log_warn(INV__HTTP_CTX, "rendering the metrics failed: %s",
                 inv_strerror(rc));
    inv_buf_free(&body);
    conn_respond_text(c, 500, "Internal Server Error", NULL);
    return;
  }
  conn_respond(c, 200, "OK", "text/plain; version=0.0.4", body.data, body.len,
               NULL);
  inv_buf_free(&body);
}

/* Answers a health check: status line and a body of the reason and a
 * newline. */
static void conn_serve_health(http_conn_t *c, int ok, const char *reason) {
  char body[256];
  int n = snprintf(body, sizeof(body), "%s\n", reason);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof(body)) n = (int)sizeof(body) - 1;
  conn_respond(c, ok ? 200 : 503, ok ? "OK" : "Service Unavailable",
               "text/plain; charset=utf-8", body, (size_t)n, NULL);
}

static void conn_serve_ready(http_conn_t *c) {
  char reason[200] = "ready";
  int ok = 1;
  if (c->m->ready_cb != NULL) {
    reason[0] = '\0';
    ok = c->m->ready_cb(reason, sizeof(reason), c->m->ready_data);
    if (reason[0] == '\0')
      snprintf(reason, sizeof(reason), "%s", ok ? "ready" : "not ready");
  }
  conn_serve_health(c, ok, reason);
}

/* 1 when path[0..len) is want. */
static int path_is(const char *path, size_t len, const char *want) {
  return len == strlen(want) && memcmp(path, want, len) == 0;
}

/* Parses the request line once the headers are complete and answers. */
static void conn_handle_request(http_conn_t *c) {
  char *line = c->req, *eol, *sp1, *sp2, *path_end;
  size_t path_len;

  eol = memchr(line, '\r', c->len);
  if (eol == NULL) {
    conn_respond_text(c, 400, "Bad Request", NULL);
    return;
  }
  *eol = '\0';
  sp1 = strchr(line, ' ');
  sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
  if (sp1 == NULL || sp2 == NULL || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
      sp1 == line || sp2 == sp1 + 1) {
    conn_respond_text(c, 400, "Bad Request", NULL);
    return;
  }
  *sp1 = '\0';
  *sp2 = '\0';
  if (strcmp(line, "GET") != 0) {
    conn_respond_text(c, 405, "Method Not Allowed", "Allow: GET\r\n");
    return;
  }
  path_end = strchr(sp1 + 1, '?');
  path_len =
      path_end != NULL ? (size_t)(path_end - (sp1 + 1)) : strlen(sp1 + 1);
  if (path_is(sp1 + 1, path_len, "/metrics")) {
    conn_serve_metrics(c);
    return;
  }
  if (path_is(sp1 + 1, path_len, "/healthz")) {
    conn_serve_health(c, 1, "ok");
    return;
  }
  if (path_is(sp1 + 1, path_len, "/ready")) {
    conn_serve_ready(c);
    return;
  }
  conn_respond_text(c, 404, "Not Found", NULL);
}

static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  http_conn_t *c = h->data;
  (void)hint;
  *buf =
      uv_buf_init(c->req + c->len, (unsigned)(INV__HTTP_MAX_REQUEST - c->len));
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread,
                         const uv_buf_t *buf) {
  http_conn_t *c = stream->data;
  size_t from;
  (void)buf;

  if (nread == 0 || c->closing || c->answered) return;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  /* The end of the headers may straddle two reads: look from 3 bytes
   * before the new data. */
  from = c->len > 3 ? c->len - 3 : 0;
  c->len += (size_t)nread;
  for (size_t i = from; i + 4 <= c->len; i++) {
    if (memcmp(c->req + i, "\r\n\r\n", 4) == 0) {
      conn_handle_request(c);
      return;
    }
  }
  if (c->len == INV__HTTP_MAX_REQUEST) {
    inv_log_debug(INV__HTTP_CTX, "request headers over %d bytes; closing",
                  INV__HTTP_MAX_REQUEST);
    conn_close(c);
  }
}

static void http_conn_cb(uv_stream_t *listener, int status) {
  inv_metrics_http_t *m = listener->data;
  http_conn_t *c;

  if (status < 0) {
    inv_log_warn(INV__HTTP_CTX, "accept failed: %s", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL) {
    inv_log_error(INV__HTTP_CTX, "out of memory for a connection");
    return;
  }
  c->m = m;
  uv_tcp_init(m->loop, &c->tcp);
  uv_timer_init(m->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->write_req.data = c;
  c->shutdown_req.data = c;
  c->handles = 2;
  inv_queue_insert_tail(&m->conns, &c->node);
  m->nconns++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  /* nconns counts this one too. */
  if (m->nconns > INV__HTTP_MAX_CONNS) {
    inv_log_debug(INV__HTTP_CTX, "over %d connections; closing the newest",
                  INV__HTTP_MAX_CONNS);
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, conn_timer_cb, INV__HTTP_TIMEOUT_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) != 0)
    conn_close(c);
}

int inv_metrics_http_start(uv_loop_t *loop, const inv_addr_t *addr,
                           inv_metrics_render_cb render_cb, void *data,
                           inv_metrics_http_t **out, char *err, size_t errlen) {
  inv_metrics_http_t *m;
  uv_os_sock_t fd;
  char where[300];
  int rc;

  *out = NULL;
  m = calloc(1, sizeof(*m));
  if (m == NULL) {
    snprintf(err, errlen, "out of memory");
    return INV_ENOMEM;
  }
  inv_queue_init(&m->conns);
  if ((rc = inv__listen_open(addr, &fd, &m->port, err, errlen)) != 0) {
    free(m);
    return rc;
  }
  m->loop = loop;
  m->render_cb = render_cb;
  m->data = data;
  /* The socket already listens, so none of these can fail. */
  uv_tcp_init(loop, &m->listener);
  m->listener.data = m;
  uv_tcp_open(&m->listener, fd);
  uv_listen((uv_stream_t *)&m->listener, INV__LISTEN_BACKLOG, http_conn_cb);
  m->listener_open = 1;
  inv_addr_format(addr, where, sizeof(where));
  inv_log_info(INV__HTTP_CTX, "serving /metrics on %s (port %d)", where,
               m->port);
  *out = m;
  return 0;
}

int inv_metrics_http_port(const inv_metrics_http_t *m) { return m->port; }

void inv_metrics_http_set_ready(inv_metrics_http_t *m, inv_metrics_ready_cb cb,
                                void *data) {
  m->ready_cb = cb;
  m->ready_data = data;
}

static void listener_close_cb(uv_handle_t *h) {
  inv_metrics_http_t *m = h->data;
  m->listener_open = 0;
  http_maybe_free(m);
}

void inv_metrics_http_close(inv_metrics_http_t *m) {
  inv_queue_t *q, *n;
  if (m == NULL || m->closing) return;
  m->closing = 1;
  uv_close((uv_handle_t *)&m->listener, listener_close_cb);
  INV_QUEUE_FOREACH(q, n, &m->conns)
  conn_close(INV_QUEUE_DATA(q, http_conn_t, node));
}
