/*
 * TLS as a byte engine with no I/O of its own: the server side (the RPC
 * listener) and the client side (connections to Redis), on one engine.
 *
 * OpenSSL runs on a pair of memory BIOs: the owner feeds the ciphertext it
 * read from the socket with inv_tls_read() and gets the plaintext back
 * through a callback, hands plaintext to inv_tls_write() and gets the
 * ciphertext to send appended to a buffer. The owner (the RPC session on a
 * libuv stream) writes that buffer to the socket, so OpenSSL never touches
 * a file descriptor and never blocks the loop. The handshake happens
 * implicitly: until it is done inv_tls_write() keeps the plaintext queued,
 * and every inv_tls_read() may append handshake records to send.
 *
 * Only TLS 1.2 and later are offered; renegotiation is refused. A TLS
 * failure is sticky: after INV_EPROTO, reads and writes return INV_EPROTO
 * again and inv_tls_shutdown() appends nothing.
 *
 * A peer that does not speak TLS at all is told apart at its first byte: a
 * TLS client opens with a handshake record (content type 0x16), so any other
 * first byte is plaintext (an RPC frame, an HTTP request) sent to the wrong
 * port. OpenSSL would wait for more bytes on some of these (a byte with the
 * high bit set reads as the start of an SSLv2 hello), so the check happens
 * before OpenSSL sees anything.
 */
#ifndef INV_TLS_H
#define INV_TLS_H

#include <stddef.h>

#include "common/base/buf.h"

typedef struct inv_tls_ctx_s inv_tls_ctx_t;
typedef struct inv_tls_s inv_tls_t;

/*
 * Loads the PEM certificate chain and private key and checks that they
 * match. Returns 0 and *out, or INV_ECONFIG with err naming the file and
 * OpenSSL's reason ("tls-key /etc/inval/key.pem: cannot load private key:
 * no start line"), or INV_ENOMEM. The caller owns *out.
 */
int inv_tls_ctx_new(const char *cert_file, const char *key_file,
                    inv_tls_ctx_t **out, char *err, size_t errlen);

/* Frees the context. Connections made from it hold their own reference, so
 * it may be freed before them. Accepts NULL. */
void inv_tls_ctx_free(inv_tls_ctx_t *ctx);

/* Creates the server side of one connection. Returns 0 and *out, or
 * INV_ENOMEM. The caller owns *out. */
int inv_tls_new(inv_tls_ctx_t *ctx, inv_tls_t **out);

/* Frees the connection. Accepts NULL. */
void inv_tls_free(inv_tls_t *t);

/* Receives decrypted bytes; returns 0 to go on or a negative code to stop
 * (inv_tls_read() then returns that code). */
typedef int (*inv_tls_plain_cb)(void *data, const char *p, size_t len);

/*
 * Feeds len bytes of ciphertext read from the peer. Every byte of plaintext
 * they complete is passed to plain_cb, and whatever TLS must send in return
 * (handshake records, alerts) is appended to wire. Returns 0; INV_ECLOSED
 * when the peer sent close_notify (the plaintext before it was delivered);
 * INV_EPROTO for a TLS failure (inv_tls_errstr() says why; wire may hold an
 * alert worth sending before closing) or for a first byte that is not a
 * handshake record (then inv_tls_plaintext() is 1 and wire is untouched);
 * INV_ENOMEM; or plain_cb's code.
 */
int inv_tls_read(inv_tls_t *t, const char *data, size_t len,
                 inv_tls_plain_cb plain_cb, void *cb_data, inv_buf_t *wire);

/*
 * Encrypts as much of plain as TLS can take now, consumes it from plain and
 * appends the records to wire. Before the handshake is done nothing is
 * consumed. Returns 0, INV_EPROTO (see inv_tls_errstr()) or INV_ENOMEM.
 */
int inv_tls_write(inv_tls_t *t, inv_buf_t *plain, inv_buf_t *wire);

/* Appends a close_notify alert to wire, once (later calls append nothing).
 * Returns 0 or INV_ENOMEM. */
int inv_tls_shutdown(inv_tls_t *t, inv_buf_t *wire);

/* 1 when the peer's first byte showed that it does not speak TLS. */
int inv_tls_plaintext(const inv_tls_t *t);

/* 1 once the handshake has completed. */
int inv_tls_handshake_done(const inv_tls_t *t);

/* The reason of the last INV_EPROTO, for logs ("" when there is none). */
const char *inv_tls_errstr(const inv_tls_t *t);

/* ---- the client side --------------------------------------------------
 *
 * A client connection runs on the same engine: inv_tls_read(),
 * inv_tls_write(), inv_tls_shutdown() and inv_tls_errstr() behave as above
 * (the first-byte check is the server's and is skipped), and
 * inv_tls_start() produces the ClientHello that a client must send first.
 */

/* What a client context is made of. Strings are only read during
 * inv_tls_client_ctx_new(). */
typedef struct inv_tls_client_conf_s {
  const char *ca_file;   /* PEM CA bundle that verifies the server */
  const char *ca_dir;    /* c_rehash'ed CA directory; with neither of the
                          * two, the system's default store is used */
  const char *cert_file; /* client certificate (mTLS), with key_file */
  const char *key_file;
  const char *server_name; /* SNI and the name verified; NULL: the host
                            * connected to (a name, or an IP address that
                            * must be in the certificate's IP SANs) */
  int insecure;            /* no certificate verification (tests only) */
} inv_tls_client_conf_t;

/*
 * Creates a client context: TLS 1.2 or later, the server's certificate
 * verified against the CAs unless insecure. Returns 0 and *out, or
 * INV_ECONFIG with err naming the file and OpenSSL's reason
 * ("tls-ca-cert-file /x.pem: cannot load CA certificates: no certificate or
 * crl found"), or INV_ENOMEM. The caller owns *out.
 */
int inv_tls_client_ctx_new(const inv_tls_client_conf_t *conf,
                           inv_tls_ctx_t **out, char *err, size_t errlen);

/* Takes one more reference to ctx (each is dropped by inv_tls_ctx_free()),
 * for an owner that must keep it past the creator's lifetime. Returns ctx.
 * Not thread-safe: share a context between threads only by creating it
 * before they start and freeing it after they end. */
inv_tls_ctx_t *inv_tls_ctx_ref(inv_tls_ctx_t *ctx);

/* Creates the client side of one connection to host (verified as the
 * context says). Returns 0 and *out, INV_EINVAL when ctx is a server
 * context, or INV_ENOMEM. The caller owns *out. */
int inv_tls_client_new(inv_tls_ctx_t *ctx, const char *host, inv_tls_t **out);

/* Appends the ClientHello to wire: call once, right after the TCP
 * connection is up. Returns 0, INV_EPROTO or INV_ENOMEM. */
int inv_tls_start(inv_tls_t *t, inv_buf_t *wire);

/* Why the server's certificate was refused ("unable to get local issuer
 * certificate", "certificate has expired", "hostname mismatch"), or NULL
 * when it was not (or was not checked yet). */
const char *inv_tls_verify_error(const inv_tls_t *t);

/* ---- client certificates and reload (server side) ---------------------- */

/* Longest certificate identity inv_tls_peer_ids() returns; longer ones are
 * left out rather than cut, since a cut name could equal another. */
#define INV_TLS_ID_MAX 256

/*
 * Requires every client to present a certificate that chains to a CA of
 * the PEM bundle ca_file (mTLS): a client without one, or with one from
 * another CA, fails its handshake. Returns 0, or INV_ECONFIG with err
 * naming the file.
 */
int inv_tls_ctx_set_client_ca(inv_tls_ctx_t *ctx, const char *ca_file,
                              char *err, size_t errlen);

/* Describes the context's certificate for logs: its subject and the start
 * of its SHA-256 fingerprint ("CN=inval sha256 3f:a0:..."). */
void inv_tls_ctx_describe(const inv_tls_ctx_t *ctx, char *out, size_t outlen);

/*
 * The identities of the verified client certificate, at most max of them:
 * its subject in RFC 2253 form ("CN=shop,O=Acme"), its common name, then
 * its DNS, email and URI subject alternative names, in that order. Names
 * holding a NUL byte or longer than INV_TLS_ID_MAX - 1 bytes are skipped.
 * Returns how many were written (0 without a client certificate).
 */
size_t inv_tls_peer_ids(const inv_tls_t *t, char (*ids)[INV_TLS_ID_MAX],
                        size_t max);

#endif
