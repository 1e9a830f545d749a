/*
 * TLS on memory BIOs. See tls.h for the contract; this file only adapts
 * OpenSSL's calls to the buffers and codes the rest of inval uses. The
 * server and the client share every byte-moving function; they differ only
 * in their contexts and in the side each SSL object starts on.
 */
#include "common/tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "inval/errors.h"

/* Ciphertext moves between the BIOs and our buffers in chunks of one TLS
 * record at most, so the stack copy stays small. */
#define INV__TLS_CHUNK 16384
/* The content type of a TLS handshake record: every TLS client's first
 * byte. */
#define INV__TLS_HANDSHAKE_RECORD 0x16

struct inv_tls_ctx_s {
  SSL_CTX *ssl_ctx;
  int refs;          /* references beyond the creator's */
  int client;        /* made by inv_tls_client_ctx_new() */
  int insecure;      /* client: no verification */
  char *server_name; /* client: the name to verify, NULL: the host */
};

struct inv_tls_s {
  SSL *ssl;
  BIO *wbio; /* owned by ssl; what TLS wants to send */
  BIO *rbio; /* owned by ssl; what the peer sent */
  int shutdown_sent;
  int failed;    /* a fatal TLS error happened: no more TLS calls */
  int got_input; /* the peer's first byte has been checked */
  int plaintext; /* that first byte was not a handshake record */
  char errstr[160];
};

/* Writes OpenSSL's most specific reason for the failure just seen into out
 * and clears the error queue. The first queued error is the root cause
 * (later ones are the callers that passed it up). */
static void tls_reason(char *out, size_t outlen, const char *fallback) {
  unsigned long e = ERR_peek_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  if (reason != NULL) {
    snprintf(out, outlen, "%s", reason);
  } else if (e != 0) {
    ERR_error_string_n(e, out, outlen);
  } else {
    snprintf(out, outlen, "%s", fallback);
  }
  ERR_clear_error();
}

/* A key with a passphrase would otherwise make OpenSSL prompt on the
 * terminal, which would block a daemon; refusing makes loading fail with a
 * clear reason instead. */
static int tls_no_passphrase_cb(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return 0;
}

/* Checks that path can be opened for reading, so a missing file or a bad
 * permission is reported with errno's words rather than OpenSSL's. */
static int tls_check_readable(const char *what, const char *path, char *err,
                              size_t errlen) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errlen, "%s %s: cannot open: %s", what, path,
             strerror(errno));
    return INV_ECONFIG;
  }
  fclose(f);
  return 0;
}

/* Loads a certificate chain and its private key into ssl_ctx and checks
 * that they match; cert_what and key_what name the directives in errors.
 * Returns 0 or INV_ECONFIG with err set. */
static int tls_load_pair(SSL_CTX *ssl_ctx, const char *cert_what,
                         const char *cert_file, const char *key_what,
                         const char *key_file, char *err, size_t errlen) {
  char reason[128];

  if (SSL_CTX_use_certificate_chain_file(ssl_ctx, cert_file) != 1) {
    tls_reason(reason, sizeof(reason), "unknown reason");
    snprintf(err, errlen, "%s %s: cannot load certificate: %s", cert_what,
             cert_file, reason);
    return INV_ECONFIG;
  }
  if (SSL_CTX_use_PrivateKey_file(ssl_ctx, key_file, SSL_FILETYPE_PEM) != 1) {
    /* OpenSSL checks the key against the certificate while loading it, so
     * a mismatch surfaces here rather than in SSL_CTX_check_private_key. */
    unsigned long e = ERR_peek_error();
    int mismatch = ERR_GET_LIB(e) == ERR_LIB_X509 &&
                   (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
                    ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH);
    tls_reason(reason, sizeof(reason), "unknown reason");
    if (mismatch)
      snprintf(err, errlen, "%s %s does not match %s %s: %s", key_what,
               key_file, cert_what, cert_file, reason);
    else
      snprintf(err, errlen, "%s %s: cannot load private key: %s", key_what,
               key_file, reason);
    return INV_ECONFIG;
  }
  if (SSL_CTX_check_private_key(ssl_ctx) != 1) {
    tls_reason(reason, sizeof(reason), "unknown reason");
    snprintf(err, errlen, "%s %s does not match %s %s: %s", key_what, key_file,
             cert_what, cert_file, reason);
    return INV_ECONFIG;
  }
  return 0;
}

/* Creates a context for method (server or client) with what both sides
 * share: TLS 1.2 or later, no renegotiation, no passphrase prompt, and the
 * write modes the engine relies on (partial writes let inv_tls_write()
 * consume record by record; a moving buffer is allowed because our
 * plaintext buffer may be reallocated between a refused write and its
 * retry; idle connections release their buffers). Returns 0 and *out, or
 * INV_ENOMEM / INV_ECONFIG with err set. */
static int tls_ctx_create(const SSL_METHOD *method, inv_tls_ctx_t **out,
                          char *err, size_t errlen) {
  char reason[128];
  inv_tls_ctx_t *ctx = calloc(1, sizeof(*ctx));
  *out = NULL;
  if (ctx == NULL) {
    snprintf(err, errlen, "out of memory");
    return INV_ENOMEM;
  }
  ctx->ssl_ctx = SSL_CTX_new(method);
  if (ctx->ssl_ctx == NULL) {
    tls_reason(reason, sizeof(reason), "cannot create the TLS context");
    snprintf(err, errlen, "TLS: %s", reason);
    free(ctx);
    return INV_ENOMEM;
  }
  if (SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_2_VERSION) != 1) {
    tls_reason(reason, sizeof(reason), "cannot require TLS 1.2");
    snprintf(err, errlen, "TLS: %s", reason);
    inv_tls_ctx_free(ctx);
    return INV_ECONFIG;
  }
  SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                     SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(ctx->ssl_ctx, tls_no_passphrase_cb);
  *out = ctx;
  return 0;
}

int inv_tls_ctx_new(const char *cert_file, const char *key_file,
                    inv_tls_ctx_t **out, char *err, size_t errlen) {
  inv_tls_ctx_t *ctx = NULL;
  int rc;

  *out = NULL;
  ERR_clear_error();
  if (cert_file == NULL || cert_file[0] == '\0' || key_file == NULL ||
      key_file[0] == '\0') {
    snprintf(err, errlen, "tls-cert and tls-key must both be set");
    rc = INV_ECONFIG;
    goto err;
  }
  if ((rc = tls_check_readable("tls-cert", cert_file, err, errlen)) != 0 ||
      (rc = tls_check_readable("tls-key", key_file, err, errlen)) != 0)
    goto err;

  if ((rc = tls_ctx_create(TLS_server_method(), &ctx, err, errlen)) != 0)
    goto err;
  SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* No server-side session cache: it would grow with every client. TLS 1.3
   * tickets still allow resumption without state here. */
  SSL_CTX_set_session_cache_mode(ctx->ssl_ctx, SSL_SESS_CACHE_OFF);

  if ((rc = tls_load_pair(ctx->ssl_ctx, "tls-cert", cert_file, "tls-key",
                          key_file, err, errlen)) != 0)
    goto err;
  *out = ctx;
  return 0;

err:
  inv_tls_ctx_free(ctx);
  ERR_clear_error();
  return rc;
}

void inv_tls_ctx_free(inv_tls_ctx_t *ctx) {
  if (ctx == NULL) return;
  if (ctx->refs > 0) {
    ctx->refs--;
    return;
  }
  SSL_CTX_free(ctx->ssl_ctx);
  free(ctx->server_name);
  free(ctx);
}

int inv_tls_new(inv_tls_ctx_t *ctx, inv_tls_t **out) {
  inv_tls_t *t = NULL;
  BIO *rbio = NULL, *wbio = NULL;

  *out = NULL;
  t = calloc(1, sizeof(*t));
  if (t == NULL) goto err;
  t->ssl = SSL_new(ctx->ssl_ctx);
  rbio = BIO_new(BIO_s_mem());
  wbio = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || rbio == NULL || wbio == NULL) goto err;
  /* An empty memory BIO reports "retry" rather than end of file, which is
   * what lets SSL_read say WANT_READ while the socket has nothing more. */
  BIO_set_mem_eof_return(rbio, -1);
  BIO_set_mem_eof_return(wbio, -1);
  SSL_set_bio(t->ssl, rbio, wbio); /* ssl owns both BIOs from here */
  t->rbio = rbio;
  t->wbio = wbio;
  SSL_set_accept_state(t->ssl);
  *out = t;
  return 0;

err:
  if (t != NULL && t->rbio == NULL) {
    BIO_free(rbio);
    BIO_free(wbio);
  }
  inv_tls_free(t);
  ERR_clear_error();
  return INV_ENOMEM;
}

void inv_tls_free(inv_tls_t *t) {
  if (t == NULL) return;
  SSL_free(t->ssl);
  free(t);
}

/* Moves everything TLS queued for the peer into wire. Returns 0 or
 * INV_ENOMEM. */
static int tls_drain(inv_tls_t *t, inv_buf_t *wire) {
  char chunk[INV__TLS_CHUNK];
  while (BIO_ctrl_pending(t->wbio) > 0) {
    int n = BIO_read(t->wbio, chunk, sizeof(chunk));
    if (n <= 0) break;
    if (inv_buf_append(wire, chunk, (size_t)n) != 0) return INV_ENOMEM;
  }
  return 0;
}

/* Records why the last SSL call failed and returns INV_EPROTO. */
static int tls_fail(inv_tls_t *t, int ssl_err) {
  const char *fallback = ssl_err == SSL_ERROR_SYSCALL
                             ? "connection broken during TLS"
                             : "TLS failure";
  tls_reason(t->errstr, sizeof(t->errstr), fallback);
  t->failed = 1;
  return INV_EPROTO;
}

int inv_tls_read(inv_tls_t *t, const char *data, size_t len,
                 inv_tls_plain_cb plain_cb, void *cb_data, inv_buf_t *wire) {
  char plain[INV__TLS_CHUNK];
  int rc = 0;

  if (t->failed) return INV_EPROTO;
  if (!t->got_input && len > 0) {
    unsigned char first = (unsigned char)data[0];
    t->got_input = 1;
    if (first != INV__TLS_HANDSHAKE_RECORD) {
      snprintf(t->errstr, sizeof(t->errstr),
               "not a TLS handshake (first byte 0x%02x, TLS starts with "
               "0x%02x): plaintext on the TLS port",
               first, INV__TLS_HANDSHAKE_RECORD);
      t->plaintext = 1;
      t->failed = 1;
      return INV_EPROTO;
    }
  }
  ERR_clear_error();
  while (len > 0) {
    int chunk = len > INT_MAX ? INT_MAX : (int)len;
    int n = BIO_write(t->rbio, data, chunk);
    if (n <= 0) return INV_ENOMEM;
    data += n;
    len -= (size_t)n;
  }
  for (;;) {
    int n = SSL_read(t->ssl, plain, sizeof(plain));
    if (n > 0) {
      rc = plain_cb(cb_data, plain, (size_t)n);
      if (rc != 0) break;
      continue;
    }
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      rc = INV_ECLOSED;
      break;
    }
    rc = tls_fail(t, e);
    break;
  }
  int drc = tls_drain(t, wire);
  return rc != 0 ? rc : drc;
}

int inv_tls_write(inv_tls_t *t, inv_buf_t *plain, inv_buf_t *wire) {
  size_t off = 0;
  int rc = 0;

  if (t->failed) return INV_EPROTO;
  if (!SSL_is_init_finished(t->ssl)) return 0;
  ERR_clear_error();
  while (off < plain->len) {
    size_t left = plain->len - off;
    int chunk = left > INT_MAX ? INT_MAX : (int)left;
    int n = SSL_write(t->ssl, plain->data + off, chunk);
    if (n > 0) {
      off += (size_t)n;
      continue;
    }
    int e = SSL_get_error(t->ssl, n);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
      rc = tls_fail(t, e);
    break;
  }
  inv_buf_consume(plain, off);
  int drc = tls_drain(t, wire);
  return rc != 0 ? rc : drc;
}

int inv_tls_shutdown(inv_tls_t *t, inv_buf_t *wire) {
  if (t->shutdown_sent) return 0;
  t->shutdown_sent = 1;
  /* OpenSSL forbids SSL_shutdown() after a fatal error; there is nothing
   * to say then anyway (the alert already went out). */
  if (t->failed || !SSL_is_init_finished(t->ssl)) return 0;
  ERR_clear_error();
  (void)SSL_shutdown(t->ssl);
  ERR_clear_error();
  return tls_drain(t, wire);
}

int inv_tls_plaintext(const inv_tls_t *t) { return t->plaintext; }

int inv_tls_handshake_done(const inv_tls_t *t) {
  return SSL_is_init_finished(t->ssl) ? 1 : 0;
}

const char *inv_tls_errstr(const inv_tls_t *t) { return t->errstr; }

/* ---- the client side -------------------------------------------------- */

int inv_tls_client_ctx_new(const inv_tls_client_conf_t *conf,
                           inv_tls_ctx_t **out, char *err, size_t errlen) {
  inv_tls_ctx_t *ctx = NULL;
  char reason[128];
  int has_cert, has_key, rc;

  *out = NULL;
  ERR_clear_error();
  has_cert = conf->cert_file != NULL && conf->cert_file[0] != '\0';
  has_key = conf->key_file != NULL && conf->key_file[0] != '\0';
  if (has_cert != has_key) {
    snprintf(err, errlen,
             "a client certificate and its key must both be "
             "set, or neither");
    rc = INV_ECONFIG;
    goto err;
  }
  if ((conf->ca_file != NULL && conf->ca_file[0] != '\0' &&
       (rc = tls_check_readable("CA file", conf->ca_file, err, errlen)) != 0) ||
      (has_cert &&
       (rc = tls_check_readable("client certificate", conf->cert_file, err,
                                errlen)) != 0) ||
      (has_key && (rc = tls_check_readable("client key", conf->key_file, err,
                                           errlen)) != 0))
    goto err;

  if ((rc = tls_ctx_create(TLS_client_method(), &ctx, err, errlen)) != 0)
    goto err;
  ctx->client = 1;
  ctx->insecure = conf->insecure != 0;
  if (conf->server_name != NULL && conf->server_name[0] != '\0' &&
      (ctx->server_name = strdup(conf->server_name)) == NULL) {
    snprintf(err, errlen, "out of memory");
    rc = INV_ENOMEM;
    goto err;
  }
  rc = INV_ECONFIG;
  SSL_CTX_set_verify(ctx->ssl_ctx,
                     ctx->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  {
    const char *file = conf->ca_file != NULL && conf->ca_file[0] != '\0'
                           ? conf->ca_file
                           : NULL;
    const char *dirp =
        conf->ca_dir != NULL && conf->ca_dir[0] != '\0' ? conf->ca_dir : NULL;
    int ok = file != NULL || dirp != NULL
                 ? SSL_CTX_load_verify_locations(ctx->ssl_ctx, file, dirp)
                 : SSL_CTX_set_default_verify_paths(ctx->ssl_ctx);
    if (ok != 1) {
      tls_reason(reason, sizeof(reason), "unknown reason");
      snprintf(err, errlen, "CA %s: cannot load CA certificates: %s",
               file != NULL   ? file
               : dirp != NULL ? dirp
                              : "(system store)",
               reason);
      goto err;
    }
  }
  if (has_cert &&
      (rc = tls_load_pair(ctx->ssl_ctx, "client certificate", conf->cert_file,
                          "client key", conf->key_file, err, errlen)) != 0)
    goto err;
  *out = ctx;
  return 0;

err:
  inv_tls_ctx_free(ctx);
  ERR_clear_error();
  return rc;
}

inv_tls_ctx_t *inv_tls_ctx_ref(inv_tls_ctx_t *ctx) {
  ctx->refs++;
  return ctx;
}

/* 1 when host is a numeric IPv4 or IPv6 address. */
static int tls_is_ip(const char *host) {
  unsigned char a[16];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

int inv_tls_client_new(inv_tls_ctx_t *ctx, const char *host, inv_tls_t **out) {
  const char *name;
  inv_tls_t *t;
  int rc;

  *out = NULL;
  if (!ctx->client) return INV_EINVAL;
  if ((rc = inv_tls_new(ctx, &t)) != 0) return rc;
  SSL_set_connect_state(t->ssl);
  /* The first-byte check is for a server's plaintext clients; a server may
   * rightly open with an alert, so the client lets OpenSSL judge. */
  t->got_input = 1;
  name = ctx->server_name != NULL ? ctx->server_name : host;
  if (name == NULL || name[0] == '\0') goto done;
  if (tls_is_ip(name)) {
    /* SNI carries host names only; an address is checked against the
     * certificate's IP SANs instead. */
    if (!ctx->insecure &&
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) != 1)
      goto nomem;
  } else {
    if (SSL_set_tlsext_host_name(t->ssl, name) != 1) goto nomem;
    if (!ctx->insecure && SSL_set1_host(t->ssl, name) != 1) goto nomem;
  }
done:
  *out = t;
  return 0;

nomem:
  inv_tls_free(t);
  ERR_clear_error();
  return INV_ENOMEM;
}

int inv_tls_start(inv_tls_t *t, inv_buf_t *wire) {
  int n, e;
  if (t->failed) return INV_EPROTO;
  ERR_clear_error();
  n = SSL_do_handshake(t->ssl);
  if (n != 1) {
    e = SSL_get_error(t->ssl, n);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
      return tls_fail(t, e);
  }
  return tls_drain(t, wire);
}

const char *inv_tls_verify_error(const inv_tls_t *t) {
  long v = SSL_get_verify_result(t->ssl);
  if (v == X509_V_OK) return NULL;
  return X509_verify_cert_error_string(v);
}

/* ---- client certificates and reload (server side) ---------------------- */

int inv_tls_ctx_set_client_ca(inv_tls_ctx_t *ctx, const char *ca_file,
                              char *err, size_t errlen) {
  char reason[128];
  STACK_OF(X509_NAME) * names;
  int rc;

  ERR_clear_error();
  if ((rc = tls_check_readable("tls-client-ca", ca_file, err, errlen)) != 0)
    return rc;
  if (SSL_CTX_load_verify_locations(ctx->ssl_ctx, ca_file, NULL) != 1) {
    tls_reason(reason, sizeof(reason), "unknown reason");
    snprintf(err, errlen, "tls-client-ca %s: cannot load: %s", ca_file, reason);
    return INV_ECONFIG;
  }
  /* The CA names tell a client which of its certificates to present. */
  names = SSL_load_client_CA_file(ca_file);
  if (names == NULL) {
    tls_reason(reason, sizeof(reason), "no certificate in the file");
    snprintf(err, errlen, "tls-client-ca %s: cannot load: %s", ca_file, reason);
    return INV_ECONFIG;
  }
  SSL_CTX_set_client_CA_list(ctx->ssl_ctx, names);
  SSL_CTX_set_verify(ctx->ssl_ctx,
                     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  ERR_clear_error();
  return 0;
}

void inv_tls_ctx_describe(const inv_tls_ctx_t *ctx, char *out, size_t outlen) {
  X509 *cert = ctx != NULL ? SSL_CTX_get0_certificate(ctx->ssl_ctx) : NULL;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char subject[200] = "?";

  if (cert == NULL) {
    snprintf(out, outlen, "no certificate");
    return;
  }
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
  X509_digest(cert, EVP_sha256(), md, &mdlen);
  snprintf(out, outlen, "%s sha256 %02x:%02x:%02x:%02x:%02x:%02x:...", subject,
           md[0], md[1], md[2], md[3], md[4], md[5]);
  ERR_clear_error();
}

/* Appends the len bytes at p to ids when they fit and hold no NUL. */
static size_t tls_add_id(char (*ids)[INV_TLS_ID_MAX], size_t n, size_t max,
                         const unsigned char *p, int len) {
  if (n >= max || p == NULL || len <= 0 || len >= INV_TLS_ID_MAX ||
      memchr(p, 0, (size_t)len) != NULL)
    return n;
  memcpy(ids[n], p, (size_t)len);
  ids[n][len] = '\0';
  return n + 1;
}

size_t inv_tls_peer_ids(const inv_tls_t *t, char (*ids)[INV_TLS_ID_MAX],
                        size_t max) {
  X509 *cert;
  size_t n = 0;

  if (t == NULL || t->ssl == NULL ||
      (cert = SSL_get0_peer_certificate(t->ssl)) == NULL ||
      SSL_get_verify_result(t->ssl) != X509_V_OK)
    return 0;
  X509_NAME *subject = X509_get_subject_name(cert);
  BIO *bio = BIO_new(BIO_s_mem());
  if (bio != NULL) {
    char *p = NULL;
    X509_NAME_print_ex(bio, subject, 0,
                       XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    long len = BIO_get_mem_data(bio, &p);
    n = tls_add_id(ids, n, max, (const unsigned char *)p,
                   len > INT_MAX ? -1 : (int)len);
    BIO_free(bio);
  }
  int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx >= 0) {
    ASN1_STRING *cn =
        X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
    n = tls_add_id(ids, n, max, ASN1_STRING_get0_data(cn),
                   ASN1_STRING_length(cn));
  }
  GENERAL_NAMES *sans =
      X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
    if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI)
      n = tls_add_id(ids, n, max, ASN1_STRING_get0_data(g->d.ia5),
                     ASN1_STRING_length(g->d.ia5));
  }
  GENERAL_NAMES_free(sans);
  ERR_clear_error();
  return n;
}
