/*
 * Plain TCP transport for Redis connections (see redis_transport.h).
 *
 * One uv_tcp_t per connection attempt. Reads land in a fixed buffer inside
 * the transport, so a busy connection allocates nothing per read; each
 * write owns its bytes until libuv reports it done.
 */
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/redis/redis_transport.h"

/* Read buffer size: large enough that a pipeline of small replies arrives
 * in a few reads, small enough to keep idle connections cheap. */
#define TCP_READ_BUF 65536

/* Keepalive probes start after this many idle seconds, so a silent peer on
 * a subscribed (mostly idle) connection is noticed in minutes, not hours. */
#define TCP_KEEPALIVE_S 30

typedef struct tcp_transport_s {
  inv_transport_t base; /* first: the vtable functions cast back to us */
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  int closing;
  char rbuf[TCP_READ_BUF];
} tcp_transport_t;

typedef struct tcp_write_s {
  uv_write_t req;
  inv_buf_t buf; /* owned until the write callback */
  tcp_transport_t *t;
} tcp_write_t;

static void tcp_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tcp_transport_t *t = h->data;
  (void)suggested;
  buf->base = t->rbuf;
  buf->len = sizeof(t->rbuf);
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tcp_transport_t *t = s->data;
  (void)buf;
  if (t->closing || nread == 0) return;
  if (nread < 0) {
    uv_read_stop(s);
    t->base.cbs->error_cb(&t->base, (int)nread);
    return;
  }
  t->base.cbs->read_cb(&t->base, t->rbuf, (size_t)nread);
}

static void tcp_connect_cb(uv_connect_t *req, int status) {
  tcp_transport_t *t = req->data;
  int rc;
  if (t->closing) return;
  if (status == 0) {
    /* Options are applied once the socket exists; failures only cost
     * latency or slower dead-peer detection, so they are not fatal. */
    (void)uv_tcp_nodelay(&t->tcp, 1);
    (void)uv_tcp_keepalive(&t->tcp, 1, TCP_KEEPALIVE_S);
    rc = uv_read_start((uv_stream_t *)&t->tcp, tcp_alloc_cb, tcp_read_cb);
    if (rc < 0) status = rc;
  }
  t->base.cbs->connect_cb(&t->base, status);
}

static int tcp_connect(inv_transport_t *base, const struct sockaddr *addr) {
  tcp_transport_t *t = (tcp_transport_t *)base;
  t->connect_req.data = t;
  return uv_tcp_connect(&t->connect_req, &t->tcp, addr, tcp_connect_cb);
}

static void tcp_write_cb(uv_write_t *req, int status) {
  tcp_write_t *w = req->data;
  tcp_transport_t *t = w->t;
  inv_buf_free(&w->buf);
  free(w);
  if (status < 0 && !t->closing) t->base.cbs->error_cb(&t->base, status);
}

static int tcp_write(inv_transport_t *base, inv_buf_t *buf) {
  tcp_transport_t *t = (tcp_transport_t *)base;
  tcp_write_t *w;
  uv_buf_t ub;
  int rc;

  w = malloc(sizeof(*w));
  if (w == NULL) {
    inv_buf_free(buf);
    return UV_ENOMEM;
  }
  w->buf = *buf;
  memset(buf, 0, sizeof(*buf));
  w->t = t;
  w->req.data = w;
  ub = uv_buf_init(w->buf.data, (unsigned)w->buf.len);
  rc = uv_write(&w->req, (uv_stream_t *)&t->tcp, &ub, 1, tcp_write_cb);
  if (rc < 0) {
    inv_buf_free(&w->buf);
    free(w);
  }
  return rc;
}

static void tcp_close_cb(uv_handle_t *h) {
  tcp_transport_t *t = h->data;
  t->base.cbs->closed_cb(&t->base);
  free(t);
}

static void tcp_close(inv_transport_t *base) {
  tcp_transport_t *t = (tcp_transport_t *)base;
  t->closing = 1;
  uv_close((uv_handle_t *)&t->tcp, tcp_close_cb);
}

static const inv_transport_vt_t tcp_vt = {tcp_connect, tcp_write, tcp_close,
                                          NULL};

int inv__transport_tcp_create(uv_loop_t *loop, const inv_transport_cbs_t *cbs,
                              void *data, inv_transport_t **out) {
  tcp_transport_t *t;

  t = calloc(1, sizeof(*t));
  if (t == NULL) return INV_ENOMEM;
  if (uv_tcp_init(loop, &t->tcp) != 0) {
    free(t);
    return INV_EIO;
  }
  t->tcp.data = t;
  t->base.vt = &tcp_vt;
  t->base.cbs = cbs;
  t->base.data = data;
  *out = &t->base;
  return 0;
}
