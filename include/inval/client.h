/*
 * The C client library for inval-publisher (and for the worker's admin
 * port, which speaks the same protocol): MessagePack-RPC over TCP or TLS.
 *
 * A client is one connection, used from one thread at a time. It offers:
 *   - blocking calls: inv_client_invalidate(), inv_client_ping(),
 *     inv_client_stats() and the generic inv_client_call();
 *   - a pipelined API for many outstanding requests:
 *     inv_client_send_invalidate() packs a request into the client's output
 *     buffer (no system call), inv_client_flush() writes what is buffered,
 *     and inv_client_next_reply() returns responses in arrival order, which
 *     the server may choose freely; msgid matches them to requests;
 *   - inv_client_notify_invalidate(): fire-and-forget (never answered).
 *
 * The socket is non-blocking inside; every wait uses poll() with a timeout.
 * While a flush waits for the socket to drain, the client keeps reading the
 * replies that arrive, so a server that stops reading until its output
 * drains cannot deadlock a client that writes a long pipeline.
 *
 * Errors: every function returns 0 (or a documented non-negative value) or
 * a negative INV_E* code from inval/errors.h. inv_client_errcode() and
 * inv_client_errstr() give the code and a message for the last failure:
 * the server's own code (mapped from its name with inv_err_from_name) and
 * message for an error response, or the system's errno text for a
 * connection failure (INV_ECONNREFUSED, INV_ETIMEDOUT, INV_ECLOSED,
 * INV_EIO). After a connection-level failure the client is broken: every
 * later call returns INV_ECLOSED; close it and connect again.
 *
 * Ownership: the client owns its socket, TLS state and buffers. Results
 * handed out by inv_client_next_reply() point into the client and stay
 * valid until the next call on the same client; results of blocking calls
 * are returned in an inv_client_result_t that the caller owns and frees.
 * Events passed in are only read during the call.
 */
#ifndef INV_CLIENT_H
#define INV_CLIENT_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "inval/errors.h"
#include "inval/event.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct inv_client_s inv_client_t;

typedef struct inv_client_opts_s {
  const char *client_name; /* sent in hello; NULL: "inval-client" */
  const char *token;       /* sent in hello when not NULL */
  int connect_timeout_ms;  /* TCP connect + TLS handshake + hello; 0: 5000 */
  int timeout_ms;          /* each blocking call and flush; 0: 5000 */
  int tls;                 /* 1: speak TLS */
  const char *tls_ca_file; /* PEM CA bundle; NULL: the system's default paths */
  int tls_verify; /* 1 (default): verify the certificate and the name */
  const char
      *tls_server_name; /* SNI and name to verify; NULL: the host argument */
  const char
      *tls_cert_file; /* PEM client certificate chain (mTLS); NULL: none */
  const char *tls_key_file; /* its private key; NULL: in tls_cert_file */
  size_t max_outstanding;   /* pipelined requests without a reply; 0: 4096 */
  int skip_hello;           /* 1: no hello (a server with auth-token then
                               serves only ping); server info stays empty */
} inv_client_opts_t;

/* Fills the defaults: everything 0/NULL except tls_verify = 1. Passing NULL
 * opts to inv_client_connect() means these defaults. */
void inv_client_opts_default(inv_client_opts_t *opts);

/* What the server said in its hello result. */
typedef struct inv_client_server_s {
  char name[64]; /* "inval-publisher"; "" when the server has no hello */
  char version[32];
  int proto;
  size_t max_message_bytes; /* 0 when unknown */
  size_t max_events;        /* 0 when unknown */
} inv_client_server_t;

/* The most entries an ack names: one per log shard (INV_LOG_SHARDS in
 * proto/log_shard.h, which client.c checks; the number is part of the
 * protocol). */
#define INV_CLIENT_ACK_IDS_MAX 64

/* The result of an invalidate request: {"id", "accepted", "ids"}
 * (PROTOCOL.md section 5). */
typedef struct inv_client_ack_s {
  char id[INV_SID_STRLEN]; /* the largest of ids[].id, compared as (ms, seq) */
  uint64_t accepted;       /* events accepted */
  /* The log shard entries that hold the request's events, one per shard,
   * as the server listed them (ascending shards); nids is 0 when the server
   * sent no "ids". Each id names an entry of its shard's stream only. */
  size_t nids;
  inv_payload_id_t ids[INV_CLIENT_ACK_IDS_MAX];
} inv_client_ack_t;

/* A result the caller owns (stats, generic calls). */
typedef struct inv_client_result_s inv_client_result_t;

/* The object inside r; valid until inv_client_result_free(r). */
const msgpack_object *inv_client_result_obj(const inv_client_result_t *r);

void inv_client_result_free(inv_client_result_t *r); /* accepts NULL */

/*
 * Connects to host:port (a name or a numeric address), within
 * opts->connect_timeout_ms: non-blocking TCP connect, the TLS handshake
 * when opts->tls, then hello with the client name and token. A server that
 * answers hello with ENOMETHOD (a worker's admin port) is accepted and its
 * server info stays empty. Returns 0 and *out (owned by the caller, freed
 * with inv_client_close()), or a negative code with a message in err
 * (always NUL-terminated when errlen > 0): INV_ECONNREFUSED,
 * INV_ETIMEDOUT, INV_EIO (name resolution, TLS handshake or certificate
 * verification, with OpenSSL's reason), INV_ECLOSED, INV_ENOMEM, or the
 * server's code for a refused hello (INV_EAUTH for a wrong token).
 */
int inv_client_connect(const char *host, int port,
                       const inv_client_opts_t *opts, inv_client_t **out,
                       char *err, size_t errlen);

/* Closes the connection and frees everything. Accepts NULL. Buffered
 * requests that were not flushed are dropped. */
void inv_client_close(inv_client_t *c);

/* The code of the last failure (0 when none) and its message ("" when
 * none). The message stays valid until the next call on c. */
int inv_client_errcode(const inv_client_t *c);
const char *inv_client_errstr(const inv_client_t *c);

/* The server's code name as it was sent ("EINVAL"), for the last error
 * response; "" otherwise. Useful when the name is not one we know. */
const char *inv_client_errname(const inv_client_t *c);

/* The server's hello result. */
const inv_client_server_t *inv_client_server(const inv_client_t *c);

/* The socket, for callers that poll several clients. */
int inv_client_fd(const inv_client_t *c);

/* ---- blocking calls ---------------------------------------------------
 * Each sends one request (after flushing anything buffered), then waits up
 * to opts.timeout_ms for its response. Responses to pipelined requests that
 * arrive meanwhile are kept for inv_client_next_reply(). A timeout
 * (INV_ETIMEDOUT) leaves the client broken, since a late reply could not
 * be told apart from a pipelined one. An error response
 * returns the server's code (INV_EINVAL, INV_EUNAVAIL, ...); a server code
 * we do not know returns INV_EPROTO with inv_client_errname() telling it. */

/* Sends events[0..n) in one request. Returns 0 and fills *ack (may be
 * NULL), or a negative code. */
int inv_client_invalidate(inv_client_t *c, const inv_event_t *events, size_t n,
                          inv_client_ack_t *ack);

/* Returns 0 when the server answered "PONG". */
int inv_client_ping(inv_client_t *c);

/* Fetches the stats map. Returns 0 and *out (owned by the caller), or a
 * negative code (and *out = NULL). */
int inv_client_stats(inv_client_t *c, inv_client_result_t **out);

/* Calls method with params: params is a packed msgpack array (NULL/0 means
 * []). Returns 0 and *out (may be NULL when the result is not wanted), or
 * a negative code. */
int inv_client_call(inv_client_t *c, const char *method, const char *params,
                    size_t params_len, inv_client_result_t **out);

/* ---- pipelined API ---------------------------------------------------- */

/* One response, as returned by inv_client_next_reply(). */
typedef struct inv_client_reply_s {
  uint32_t msgid;
  int err;               /* 0, or the server's code (INV_EPROTO when unknown) */
  char errname[16];      /* the code's name as sent, "" for success */
  char errstr[256];      /* the server's message, "" for success */
  msgpack_object result; /* nil on error; points into the client */
  int has_ack;           /* 1 when result is an invalidate ack ... */
  inv_client_ack_t ack;  /* ... and then its ids and count */
} inv_client_reply_t;

/*
 * Packs an invalidate request for events[0..n) into the output buffer
 * without writing it (see inv_client_flush()). Returns 0 and *msgid (may be
 * NULL), or: INV_EBUSY when max_outstanding requests already wait for their
 * replies (read some with inv_client_next_reply() first); INV_ETOOBIG when
 * the request would exceed the server's max_message_bytes (nothing is
 * buffered); INV_EINVAL for n == 0; INV_ECLOSED on a broken client.
 * The buffer is written out by itself once it passes 256 KiB.
 */
int inv_client_send_invalidate(inv_client_t *c, const inv_event_t *events,
                               size_t n, uint32_t *msgid);

/* Like inv_client_send_invalidate() as a notification: the server never
 * answers it, and counts its failures only. Returns 0 or a negative code. */
int inv_client_notify_invalidate(inv_client_t *c, const inv_event_t *events,
                                 size_t n);

/* Writes everything buffered, within opts.timeout_ms of no progress
 * (reading incoming replies meanwhile). Returns 0, INV_ETIMEDOUT (the
 * client is then broken: part of a request may have been written),
 * INV_ECLOSED or INV_EIO. */
int inv_client_flush(inv_client_t *c);

/* Requests sent with inv_client_send_invalidate() still waiting for
 * inv_client_next_reply(). */
size_t inv_client_outstanding(const inv_client_t *c);

/*
 * Flushes, then waits up to timeout_ms (< 0: opts.timeout_ms) for the next
 * response to a pipelined request and fills *r. An error response is a
 * successful return: r->err tells it. Returns 0, INV_EINVAL when no request
 * is outstanding, INV_ETIMEDOUT (the client stays usable), INV_ECLOSED or
 * INV_EIO (the client is broken; a server that announced why it closes,
 * such as EBUSY over max clients, returns that code instead). r->result and
 * the strings stay valid until the next call on c.
 */
int inv_client_next_reply(inv_client_t *c, int timeout_ms,
                          inv_client_reply_t *r);

#ifdef __cplusplus
}
#endif

#endif
