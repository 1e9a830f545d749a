/*
 * TLS transport for Redis connections (see redis_transport.h): the client
 * side of the TLS engine (tls.h) on top of a plain TCP transport.
 *
 * The TCP transport below moves ciphertext; this layer turns it into
 * plaintext and back with inv_tls_read() / inv_tls_write(), exactly as the
 * RPC server does for its sessions, so OpenSSL never touches the socket and
 * never blocks the loop. connect_cb is held back until the handshake is
 * done, so the owner's first command (AUTH) already travels encrypted and a
 * certificate that fails verification is a failed connect with a reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/redis/redis_transport.h"
#include "common/tls/tls.h"

typedef struct tls_transport_s {
  inv_transport_t base; /* first: the vtable functions cast back to us */
  inv_transport_t *tcp; /* the ciphertext below; its data points to us */
  inv_tls_t *tls;
  inv_buf_t plain;      /* written before the handshake was done */
  int connected;        /* connect_cb has run with status 0 */
  int connect_reported; /* connect_cb has run at all */
  int closing;
  char errstr[256];
} tls_transport_t;

static const inv_transport_cbs_t tcp_cbs;

/* Sends what the engine queued for the peer. Returns 0 or a libuv error. */
static int send_wire(tls_transport_t *t, inv_buf_t *wire) {
  if (wire->len == 0) {
    inv_buf_free(wire);
    return 0;
  }
  return t->tcp->vt->write(t->tcp, wire);
}

/* Records why TLS failed, with the certificate check's own words when the
 * failure was a refused certificate. */
static void note_failure(tls_transport_t *t) {
  const char *why = inv_tls_errstr(t->tls);
  const char *verify = inv_tls_verify_error(t->tls);
  const char *hint = "";
  if (strstr(why, "wrong version number") != NULL ||
      strstr(why, "packet length too long") != NULL ||
      strstr(why, "record layer failure") != NULL)
    hint = " (the server did not answer in TLS: is this its TLS port?)";
  if (verify != NULL && strstr(why, "certificate verify failed") != NULL)
    snprintf(t->errstr, sizeof(t->errstr), "%s: %s", why, verify);
  else
    snprintf(t->errstr, sizeof(t->errstr), "%s%s", why, hint);
}

/* Reports a failure: through connect_cb while the connection is not yet
 * announced, through error_cb afterwards. */
static void report(tls_transport_t *t, int status) {
  if (t->closing) return;
  if (!t->connect_reported) {
    t->connect_reported = 1;
    t->base.cbs->connect_cb(&t->base, status);
  } else {
    t->base.cbs->error_cb(&t->base, status);
  }
}

/* Announces the finished handshake and sends what was written before it.
 * Returns 0, or -1 when the owner closed the transport meanwhile. */
static int announce(tls_transport_t *t) {
  inv_buf_t wire = {0};
  int rc;
  t->connected = t->connect_reported = 1;
  t->base.cbs->connect_cb(&t->base, 0);
  if (t->closing) return -1;
  if (t->plain.len == 0) return 0;
  rc = inv_tls_write(t->tls, &t->plain, &wire);
  if (rc == 0)
    rc = send_wire(t, &wire);
  else
    inv_buf_free(&wire);
  if (rc != 0) {
    report(t, rc == INV_EPROTO ? UV_EPROTO : UV_ENOMEM);
    return -1;
  }
  return 0;
}

static int plain_cb(void *data, const char *p, size_t len) {
  tls_transport_t *t = data;
  if (t->closing) return INV_ECLOSED;
  if (!t->connected && announce(t) != 0) return INV_ECLOSED;
  t->base.cbs->read_cb(&t->base, p, len);
  return t->closing ? INV_ECLOSED : 0;
}

static void tcp_connect_cb(inv_transport_t *tcp, int status) {
  tls_transport_t *t = tcp->data;
  inv_buf_t wire = {0};
  int rc;
  if (t->closing) return;
  if (status < 0) {
    report(t, status);
    return;
  }
  rc = inv_tls_start(t->tls, &wire);
  if (rc != 0) {
    inv_buf_free(&wire);
    note_failure(t);
    report(t, rc == INV_EPROTO ? UV_EPROTO : UV_ENOMEM);
    return;
  }
  if ((rc = send_wire(t, &wire)) != 0) report(t, rc);
}

static void tcp_read_cb(inv_transport_t *tcp, const char *buf, size_t len) {
  tls_transport_t *t = tcp->data;
  inv_buf_t wire = {0};
  int rc, src;
  if (t->closing) return;
  rc = inv_tls_read(t->tls, buf, len, plain_cb, t, &wire);
  if (t->closing) {
    inv_buf_free(&wire);
    return;
  }
  /* Handshake records, or an alert explaining a failure: sent either way. */
  src = send_wire(t, &wire);
  if (rc == INV_EPROTO) {
    note_failure(t);
    report(t, UV_EPROTO);
  } else if (rc == INV_ECLOSED) {
    report(t, UV_EOF);
  } else if (rc != 0) {
    report(t, UV_ENOMEM);
  } else if (src != 0) {
    report(t, src);
  } else if (!t->connected && inv_tls_handshake_done(t->tls)) {
    (void)announce(t);
  }
}

static void tcp_error_cb(inv_transport_t *tcp, int status) {
  tls_transport_t *t = tcp->data;
  if (t->closing) return;
  if (!t->connected && status == UV_EOF)
    snprintf(t->errstr, sizeof(t->errstr),
             "the server closed the connection during the TLS handshake "
             "(is this its TLS port? does it want a client certificate?)");
  report(t, status);
}

static void tcp_closed_cb(inv_transport_t *tcp) {
  tls_transport_t *t = tcp->data;
  t->base.cbs->closed_cb(&t->base);
  inv_tls_free(t->tls);
  inv_buf_free(&t->plain);
  free(t);
}

static const inv_transport_cbs_t tcp_cbs = {tcp_connect_cb, tcp_read_cb,
                                            tcp_error_cb, tcp_closed_cb};

static int tls_connect(inv_transport_t *base, const struct sockaddr *addr) {
  tls_transport_t *t = (tls_transport_t *)base;
  return t->tcp->vt->connect(t->tcp, addr);
}

static int tls_write(inv_transport_t *base, inv_buf_t *buf) {
  tls_transport_t *t = (tls_transport_t *)base;
  inv_buf_t wire = {0};
  int rc;
  if (!t->connected) {
    rc = inv_buf_append(&t->plain, buf->data, buf->len);
    inv_buf_free(buf);
    return rc == 0 ? 0 : UV_ENOMEM;
  }
  rc = inv_tls_write(t->tls, buf, &wire);
  inv_buf_free(buf);
  if (rc != 0) {
    inv_buf_free(&wire);
    if (rc == INV_EPROTO) note_failure(t);
    return rc == INV_EPROTO ? UV_EPROTO : UV_ENOMEM;
  }
  return send_wire(t, &wire);
}

static void tls_close(inv_transport_t *base) {
  tls_transport_t *t = (tls_transport_t *)base;
  inv_buf_t wire = {0};
  t->closing = 1;
  /* A close_notify, best effort: Redis does not need it, but it tells an
   * orderly close from a cut connection in the server's log. */
  if (inv_tls_shutdown(t->tls, &wire) != 0 || send_wire(t, &wire) != 0)
    inv_buf_free(&wire);
  t->tcp->vt->close(t->tcp);
}

static const char *tls_errstr(inv_transport_t *base) {
  tls_transport_t *t = (tls_transport_t *)base;
  return t->errstr[0] != '\0' ? t->errstr : NULL;
}

static const inv_transport_vt_t tls_vt = {tls_connect, tls_write, tls_close,
                                          tls_errstr};

int inv__transport_tls_create(uv_loop_t *loop, inv_tls_ctx_t *tls,
                              const char *host, const inv_transport_cbs_t *cbs,
                              void *data, inv_transport_t **out) {
  tls_transport_t *t;
  int rc;

  t = calloc(1, sizeof(*t));
  if (t == NULL) return INV_ENOMEM;
  rc = inv_tls_client_new(tls, host, &t->tls);
  if (rc != 0) {
    free(t);
    return rc;
  }
  rc = inv__transport_tcp_create(loop, &tcp_cbs, t, &t->tcp);
  if (rc != 0) {
    inv_tls_free(t->tls);
    free(t);
    return rc;
  }
  t->base.vt = &tls_vt;
  t->base.cbs = cbs;
  t->base.data = data;
  *out = &t->base;
  return 0;
}
