/*
 * The byte transport under a Redis connection (private to inval_redis).
 *
 * A transport is one connection attempt: it is created, connects once to an
 * already resolved address, carries bytes both ways and is closed. The
 * Redis protocol code in redis_conn.c talks to it only through the vtable:
 * plain TCP (redis_tcp.c) and TLS over that TCP (redis_tls.c) implement it.
 *
 * Callback rules: connect_cb runs once, unless close() came first. read_cb
 * hands over bytes that are valid only during the call. error_cb reports
 * the end of the stream (UV_EOF) or a read or write failure; the owner is
 * expected to close the transport then. After close() no callback but
 * closed_cb runs, and closed_cb runs exactly once, from the loop, after
 * which the transport's memory is gone. The transport never frees itself
 * inside one of its own callbacks.
 */
#ifndef INV_REDIS_TRANSPORT_H
#define INV_REDIS_TRANSPORT_H

#include <stddef.h>
#include <uv.h>

#include "common/base/buf.h"

typedef struct inv_transport_s inv_transport_t;

typedef struct inv_transport_cbs_s {
  /* status is 0 or a negative libuv error. */
  void (*connect_cb)(inv_transport_t *t, int status);
  void (*read_cb)(inv_transport_t *t, const char *buf, size_t len);
  /* status is UV_EOF or a negative libuv error. */
  void (*error_cb)(inv_transport_t *t, int status);
  void (*closed_cb)(inv_transport_t *t);
} inv_transport_cbs_t;

typedef struct inv_transport_vt_s {
  /* Starts connecting to addr. Returns 0 (connect_cb will run) or a
   * negative libuv error (it will not). */
  int (*connect)(inv_transport_t *t, const struct sockaddr *addr);
  /* Queues buf's bytes for writing and takes over its memory: *buf is left
   * empty and the bytes are freed once written or failed. Returns 0, or a
   * negative libuv error (the memory is released as well). */
  int (*write)(inv_transport_t *t, inv_buf_t *buf);
  /* Starts closing; closed_cb follows from the loop. Call it once. */
  void (*close)(inv_transport_t *t);
  /* The reason of the last failure beyond what its libuv code says ("TLS:
   * certificate verify failed: unable to get local issuer certificate"),
   * or NULL. May be NULL itself. */
  const char *(*errstr)(inv_transport_t *t);
} inv_transport_vt_t;

struct inv_transport_s {
  const inv_transport_vt_t *vt;
  const inv_transport_cbs_t *cbs;
  void *data; /* the owner's pointer, untouched by the transport */
};

/* Creates a plain TCP transport (TCP_NODELAY, keepalive). Returns 0 and
 * *out, or INV_ENOMEM / INV_EIO. The caller owns *out until it calls
 * vt->close(). */
int inv__transport_tcp_create(uv_loop_t *loop, const inv_transport_cbs_t *cbs,
                              void *data, inv_transport_t **out);

/* Creates a TLS transport: TCP, then a handshake as the client of tls
 * (a client context, which may be freed before the transport) verifying
 * host as the context says. connect_cb runs once the handshake is done; a
 * handshake that fails gives connect_cb UV_EPROTO and errstr() the reason.
 * Returns 0 and *out, or INV_ENOMEM / INV_EIO / INV_EINVAL. */
struct inv_tls_ctx_s;
int inv__transport_tls_create(uv_loop_t *loop, struct inv_tls_ctx_s *tls,
                              const char *host, const inv_transport_cbs_t *cbs,
                              void *data, inv_transport_t **out);

#endif
