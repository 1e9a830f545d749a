/*
 * Unit tests for the TLS engine (common/tls/tls.c): loading certificates and
 * keys (with clear errors), and a full conversation with an OpenSSL client
 * over memory BIOs: handshake, data both ways, close_notify both ways,
 * garbage input and an old protocol version refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/base/buf.h"
#include "inval/errors.h"
#include "common/tls/tls.h"
#include "tests/unit/check.h"

static char dir[64];
static char cert_path[128], key_path[128], other_key_path[128];
static char garbage_path[128], other_ca_path[128], other_ca_key[128];
static inv_tls_ctx_t *ctx; /* loaded from cert_path and key_path */

/* Writes a fresh P-256 key to key_file and, when cert_file is not NULL, a
 * self-signed certificate for it. Returns 0 on success. */
static int make_key_and_cert(const char *key_file, const char *cert_file) {
  EVP_PKEY *pkey = EVP_EC_gen("P-256");
  X509 *x = NULL;
  FILE *f;
  int rc = -1;

  if (pkey == NULL) return -1;
  f = fopen(key_file, "w");
  if (f == NULL) goto out;
  PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
  fclose(f);
  if (cert_file != NULL) {
    X509_NAME *name;
    x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    if (X509_sign(x, pkey, EVP_sha256()) == 0) goto out;
    f = fopen(cert_file, "w");
    if (f == NULL) goto out;
    PEM_write_X509(f, x);
    fclose(f);
  }
  rc = 0;
out:
  X509_free(x);
  EVP_PKEY_free(pkey);
  return rc;
}

static void test_ctx_errors(void) {
  inv_tls_ctx_t *c = NULL;
  char err[512], missing[160];

  snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
  CHECK_EQ_INT(inv_tls_ctx_new(missing, key_path, &c, err, sizeof(err)),
               INV_ECONFIG);
  CHECK(c == NULL);
  CHECK(strstr(err, missing) != NULL);
  CHECK(strstr(err, "No such file") != NULL);

  CHECK_EQ_INT(inv_tls_ctx_new(garbage_path, key_path, &c, err, sizeof(err)),
               INV_ECONFIG);
  CHECK(strstr(err, "tls-cert") != NULL);
  CHECK(strstr(err, garbage_path) != NULL);
  CHECK(strstr(err, "cannot load certificate") != NULL);

  CHECK_EQ_INT(inv_tls_ctx_new(cert_path, garbage_path, &c, err, sizeof(err)),
               INV_ECONFIG);
  CHECK(strstr(err, "tls-key") != NULL);
  CHECK(strstr(err, "cannot load private key") != NULL);

  CHECK_EQ_INT(inv_tls_ctx_new(cert_path, other_key_path, &c, err, sizeof(err)),
               INV_ECONFIG);
  CHECK(strstr(err, "does not match") != NULL);

  CHECK_EQ_INT(inv_tls_ctx_new(cert_path, "", &c, err, sizeof(err)),
               INV_ECONFIG);

  CHECK_EQ_INT(inv_tls_ctx_new(cert_path, key_path, &c, err, sizeof(err)), 0);
  CHECK(c != NULL);
  inv_tls_ctx_free(c);
  inv_tls_ctx_free(NULL);
  inv_tls_free(NULL);
}

/* An in-memory client talking to one inv_tls_t server. */
typedef struct pair_s {
  SSL_CTX *cctx;
  SSL *client;
  BIO *c_in, *c_out; /* owned by client */
  inv_tls_t *server;
  inv_buf_t plain; /* what the server decrypted */
  inv_buf_t wire;  /* what the server wants to send */
  int server_rc;   /* the last inv_tls_read() result */
} pair_t;

static int collect_cb(void *data, const char *p, size_t len) {
  return inv_buf_append(data, p, len);
}

static int pair_init(pair_t *p, int max_version) {
  memset(p, 0, sizeof(*p));
  p->cctx = SSL_CTX_new(TLS_client_method());
  if (max_version != 0) {
    SSL_CTX_set_security_level(p->cctx, 0);
    SSL_CTX_set_min_proto_version(p->cctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(p->cctx, max_version);
  }
  p->client = SSL_new(p->cctx);
  p->c_in = BIO_new(BIO_s_mem());
  p->c_out = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(p->c_in, -1);
  SSL_set_bio(p->client, p->c_in, p->c_out);
  SSL_set_connect_state(p->client);
  return inv_tls_new(ctx, &p->server);
}

static void pair_free(pair_t *p) {
  SSL_free(p->client);
  SSL_CTX_free(p->cctx);
  inv_tls_free(p->server);
  inv_buf_free(&p->plain);
  inv_buf_free(&p->wire);
}

/* Moves bytes both ways until neither side has anything to send. */
static void pair_pump(pair_t *p) {
  char chunk[16384];
  for (int round = 0; round < 64; round++) {
    int moved = 0, n;
    while ((n = BIO_read(p->c_out, chunk, sizeof(chunk))) > 0) {
      p->server_rc = inv_tls_read(p->server, chunk, (size_t)n, collect_cb,
                                  &p->plain, &p->wire);
      moved = 1;
    }
    if (p->wire.len > 0) {
      BIO_write(p->c_in, p->wire.data, (int)p->wire.len);
      inv_buf_reset(&p->wire);
      moved = 1;
    }
    if (!SSL_is_init_finished(p->client)) SSL_do_handshake(p->client);
    if (!moved && BIO_ctrl_pending(p->c_out) == 0) break;
  }
}

/* Reads what the client can decrypt now into out. */
static void client_read_all(pair_t *p, inv_buf_t *out) {
  char chunk[16384];
  int n;
  while ((n = SSL_read(p->client, chunk, sizeof(chunk))) > 0)
    inv_buf_append(out, chunk, (size_t)n);
}

static void test_conversation(void) {
  pair_t p;
  inv_buf_t out = {0}, got = {0};
  size_t big = 1 << 20;
  char *payload = malloc(big);

  for (size_t i = 0; i < big; i++) payload[i] = (char)('a' + i % 26);
  CHECK_EQ_INT(pair_init(&p, 0), 0);

  /* Before the handshake nothing can be encrypted. */
  inv_buf_append(&out, "early", 5);
  CHECK_EQ_INT(inv_tls_write(p.server, &out, &p.wire), 0);
  CHECK_EQ_INT(out.len, 5);
  CHECK_EQ_INT(inv_tls_handshake_done(p.server), 0);

  SSL_do_handshake(p.client);
  pair_pump(&p);
  CHECK(SSL_is_init_finished(p.client));
  CHECK_EQ_INT(inv_tls_handshake_done(p.server), 1);
  CHECK_EQ_INT(p.server_rc, 0);
  CHECK_EQ_INT(inv_tls_plaintext(p.server), 0);

  /* The queued plaintext goes out now. */
  CHECK_EQ_INT(inv_tls_write(p.server, &out, &p.wire), 0);
  CHECK_EQ_INT(out.len, 0);
  pair_pump(&p);
  client_read_all(&p, &got);
  CHECK_EQ_INT(got.len, 5);
  CHECK(got.len == 5 && memcmp(got.data, "early", 5) == 0);

  /* Client to server, a megabyte. */
  for (size_t off = 0; off < big;) {
    int n = SSL_write(p.client, payload + off, (int)(big - off));
    CHECK(n > 0);
    if (n <= 0) break;
    off += (size_t)n;
    pair_pump(&p);
  }
  CHECK_EQ_INT(p.plain.len, big);
  CHECK(p.plain.len == big && memcmp(p.plain.data, payload, big) == 0);

  /* Server to client, a megabyte. */
  inv_buf_reset(&got);
  inv_buf_append(&out, payload, big);
  CHECK_EQ_INT(inv_tls_write(p.server, &out, &p.wire), 0);
  CHECK_EQ_INT(out.len, 0);
  pair_pump(&p);
  client_read_all(&p, &got);
  CHECK_EQ_INT(got.len, big);
  CHECK(got.len == big && memcmp(got.data, payload, big) == 0);

  /* Our close_notify reaches the client, once. */
  CHECK_EQ_INT(inv_tls_shutdown(p.server, &p.wire), 0);
  CHECK(p.wire.len > 0);
  BIO_write(p.c_in, p.wire.data, (int)p.wire.len);
  inv_buf_reset(&p.wire);
  CHECK_EQ_INT(inv_tls_shutdown(p.server, &p.wire), 0);
  CHECK_EQ_INT(p.wire.len, 0);
  {
    char c;
    int n = SSL_read(p.client, &c, 1);
    CHECK_EQ_INT(SSL_get_error(p.client, n), SSL_ERROR_ZERO_RETURN);
  }
  /* The client's close_notify is the end of the stream. */
  SSL_shutdown(p.client);
  {
    char chunk[4096];
    int n = BIO_read(p.c_out, chunk, sizeof(chunk));
    CHECK(n > 0);
    CHECK_EQ_INT(
        inv_tls_read(p.server, chunk, (size_t)n, collect_cb, &p.plain, &p.wire),
        INV_ECLOSED);
  }
  pair_free(&p);
  inv_buf_free(&out);
  inv_buf_free(&got);
  free(payload);
}

static void test_garbage(void) {
  inv_tls_t *t = NULL;
  inv_buf_t plain = {0}, wire = {0};
  /* Someone pointing a web client at the TLS port. (Bytes with the high
   * bit set would be taken for an SSLv2 hello header and awaited.) */
  const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

  CHECK_EQ_INT(inv_tls_new(ctx, &t), 0);
  CHECK_EQ_INT(
      inv_tls_read(t, junk, sizeof(junk) - 1, collect_cb, &plain, &wire),
      INV_EPROTO);
  CHECK(inv_tls_errstr(t)[0] != '\0');
  CHECK_EQ_INT(plain.len, 0);
  /* After a failure, shutdown appends nothing and does not crash. */
  inv_buf_reset(&wire);
  CHECK_EQ_INT(inv_tls_shutdown(t, &wire), 0);
  CHECK_EQ_INT(wire.len, 0);
  inv_tls_free(t);
  inv_buf_free(&plain);
  inv_buf_free(&wire);
}

/* Plaintext on the TLS port is refused at its first byte, before OpenSSL
 * sees it: an RPC frame's first byte (0x94, high bit set) would otherwise
 * be taken for an SSLv2 hello header and waited on. */
static void test_plaintext_first_byte(void) {
  static const struct {
    const char *bytes;
    size_t len;
  } cases[] = {
      {"\x94\x00\x01\xa4ping\x90", 9}, /* [0, 1, "ping", []] */
      {"GET / HTTP/1.1\r\n\r\n", 18},
      {"\x80", 1},
      {"\x00", 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    inv_tls_t *t = NULL;
    inv_buf_t plain = {0}, wire = {0};
    char first[8];
    CHECK_EQ_INT(inv_tls_new(ctx, &t), 0);
    CHECK_EQ_INT(inv_tls_plaintext(t), 0);
    CHECK_EQ_INT(inv_tls_read(t, cases[i].bytes, cases[i].len, collect_cb,
                              &plain, &wire),
                 INV_EPROTO);
    CHECK_EQ_INT(inv_tls_plaintext(t), 1);
    snprintf(first, sizeof(first), "0x%02x", (unsigned char)cases[i].bytes[0]);
    CHECK(strstr(inv_tls_errstr(t), first) != NULL);
    CHECK(strstr(inv_tls_errstr(t), "plaintext") != NULL);
    CHECK_EQ_INT(plain.len, 0);
    CHECK_EQ_INT(wire.len, 0); /* no TLS alert for a peer without TLS */
    /* Sticky, as every TLS failure. */
    CHECK_EQ_INT(inv_tls_read(t, "\x16", 1, collect_cb, &plain, &wire),
                 INV_EPROTO);
    inv_tls_free(t);
    inv_buf_free(&plain);
    inv_buf_free(&wire);
  }
}

/* A handshake record's first byte alone is not judged: it is fed on and
 * TLS waits for the rest. */
static void test_handshake_first_byte_waits(void) {
  inv_tls_t *t = NULL;
  inv_buf_t plain = {0}, wire = {0};
  CHECK_EQ_INT(inv_tls_new(ctx, &t), 0);
  CHECK_EQ_INT(inv_tls_read(t, "\x16", 1, collect_cb, &plain, &wire), 0);
  CHECK_EQ_INT(inv_tls_plaintext(t), 0);
  CHECK_EQ_INT(wire.len, 0);
  inv_tls_free(t);
  inv_buf_free(&plain);
  inv_buf_free(&wire);
}

static void test_old_protocol_refused(void) {
  pair_t p;
  CHECK_EQ_INT(pair_init(&p, TLS1_1_VERSION), 0);
  SSL_do_handshake(p.client);
  if (BIO_ctrl_pending(p.c_out) == 0) {
    /* This OpenSSL cannot even offer TLS 1.1: nothing to refuse. */
    pair_free(&p);
    return;
  }
  pair_pump(&p);
  CHECK_EQ_INT(p.server_rc, INV_EPROTO);
  CHECK_EQ_INT(inv_tls_handshake_done(p.server), 0);
  CHECK(!SSL_is_init_finished(p.client));
  pair_free(&p);
}

/* Runs the client engine against the server engine until neither has
 * anything to send. Returns the last nonzero code of either side, or 0. */
static int pump_engines(inv_tls_t *cli, inv_tls_t *srv, inv_buf_t *to_srv,
                        inv_buf_t *cli_plain, inv_buf_t *srv_plain) {
  inv_buf_t to_cli = {0};
  int rc = 0, i;
  for (i = 0; i < 20 && (to_srv->len > 0 || to_cli.len > 0); i++) {
    inv_buf_t out = {0};
    int r = inv_tls_read(srv, to_srv->data, to_srv->len, collect_cb, srv_plain,
                         &out);
    if (r != 0) rc = r;
    inv_buf_free(to_srv);
    inv_buf_append(&to_cli, out.data, out.len);
    inv_buf_free(&out);
    if (to_cli.len > 0) {
      r = inv_tls_read(cli, to_cli.data, to_cli.len, collect_cb, cli_plain,
                       to_srv);
      if (r != 0) rc = r;
      inv_buf_free(&to_cli);
    }
  }
  inv_buf_free(&to_cli);
  return rc;
}

/* The client side: a handshake with the server engine verified against the
 * server's (self-signed) certificate as CA, data both ways; then a wrong
 * name, and a CA that does not know the server, each refused with the
 * certificate check's own reason. */
static void test_client_engine(void) {
  inv_tls_client_conf_t conf = {cert_path, NULL, NULL, NULL, NULL, 0};
  inv_tls_ctx_t *cctx = NULL;
  inv_tls_t *cli = NULL, *srv = NULL;
  inv_buf_t wire = {0}, cplain = {0}, splain = {0}, msg = {0};
  char err[512];

  CHECK_EQ_INT(inv_tls_client_ctx_new(&conf, &cctx, err, sizeof(err)), 0);
  CHECK_EQ_INT(inv_tls_client_new(ctx, "localhost", &cli), INV_EINVAL);

  CHECK_EQ_INT(inv_tls_client_new(cctx, "localhost", &cli), 0);
  CHECK_EQ_INT(inv_tls_new(ctx, &srv), 0);
  CHECK_EQ_INT(inv_tls_start(cli, &wire), 0);
  CHECK(wire.len > 0 && (unsigned char)wire.data[0] == 0x16);
  CHECK_EQ_INT(pump_engines(cli, srv, &wire, &cplain, &splain), 0);
  CHECK(inv_tls_handshake_done(cli));
  CHECK(inv_tls_verify_error(cli) == NULL);
  inv_buf_append(&msg, "PING\r\n", 6);
  CHECK_EQ_INT(inv_tls_write(cli, &msg, &wire), 0);
  CHECK_EQ_INT((int)msg.len, 0);
  CHECK_EQ_INT(pump_engines(cli, srv, &wire, &cplain, &splain), 0);
  CHECK(splain.len == 6 && memcmp(splain.data, "PING\r\n", 6) == 0);
  inv_buf_append(&msg, "+PONG\r\n", 7);
  CHECK_EQ_INT(inv_tls_write(srv, &msg, &wire), 0);
  CHECK_EQ_INT(
      inv_tls_read(cli, wire.data, wire.len, collect_cb, &cplain, &msg), 0);
  CHECK(cplain.len == 7 && memcmp(cplain.data, "+PONG\r\n", 7) == 0);
  inv_buf_free(&wire);
  inv_buf_free(&msg);
  inv_tls_free(cli);
  inv_tls_free(srv);

  /* The certificate names localhost, not this. */
  CHECK_EQ_INT(inv_tls_client_new(cctx, "elsewhere.example", &cli), 0);
  CHECK_EQ_INT(inv_tls_new(ctx, &srv), 0);
  CHECK_EQ_INT(inv_tls_start(cli, &wire), 0);
  CHECK_EQ_INT(pump_engines(cli, srv, &wire, &cplain, &splain), INV_EPROTO);
  CHECK(strstr(inv_tls_errstr(cli), "certificate verify failed") != NULL);
  CHECK(inv_tls_verify_error(cli) != NULL &&
        strstr(inv_tls_verify_error(cli), "hostname mismatch") != NULL);
  inv_tls_free(cli);
  inv_tls_free(srv);
  inv_tls_ctx_free(cctx);

  /* A CA that did not sign the server's certificate. */
  conf.ca_file = other_ca_path;
  CHECK_EQ_INT(inv_tls_client_ctx_new(&conf, &cctx, err, sizeof(err)), 0);
  inv_tls_ctx_ref(cctx); /* one more reference: two frees to release */
  CHECK_EQ_INT(inv_tls_client_new(cctx, "localhost", &cli), 0);
  inv_tls_ctx_free(cctx);
  CHECK_EQ_INT(inv_tls_new(ctx, &srv), 0);
  CHECK_EQ_INT(inv_tls_start(cli, &wire), 0);
  CHECK_EQ_INT(pump_engines(cli, srv, &wire, &cplain, &splain), INV_EPROTO);
  CHECK(inv_tls_verify_error(cli) != NULL);
  inv_tls_free(cli);
  inv_tls_free(srv);
  inv_tls_ctx_free(cctx);

  /* Configuration errors name the file. */
  conf.ca_file = garbage_path;
  CHECK_EQ_INT(inv_tls_client_ctx_new(&conf, &cctx, err, sizeof(err)),
               INV_ECONFIG);
  CHECK(strstr(err, garbage_path) != NULL);
  conf.ca_file = cert_path;
  conf.cert_file = cert_path; /* without its key */
  CHECK_EQ_INT(inv_tls_client_ctx_new(&conf, &cctx, err, sizeof(err)),
               INV_ECONFIG);
  CHECK(strstr(err, "both") != NULL);
  inv_buf_free(&wire);
  inv_buf_free(&cplain);
  inv_buf_free(&splain);
}

int main(void) {
  char err[512];
  FILE *f;

  snprintf(dir, sizeof(dir), "/tmp/inv-test-tls-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
  snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
  snprintf(other_key_path, sizeof(other_key_path), "%s/other.pem", dir);
  snprintf(garbage_path, sizeof(garbage_path), "%s/garbage.pem", dir);
  snprintf(other_ca_path, sizeof(other_ca_path), "%s/otherca.pem", dir);
  snprintf(other_ca_key, sizeof(other_ca_key), "%s/otherca.key", dir);
  if (make_key_and_cert(key_path, cert_path) != 0 ||
      make_key_and_cert(other_ca_key, other_ca_path) != 0 ||
      make_key_and_cert(other_key_path, NULL) != 0) {
    fprintf(stderr, "cannot make a test certificate\n");
    return 1;
  }
  f = fopen(garbage_path, "w");
  fputs("-----BEGIN NOTHING-----\nnot a pem file\n", f);
  fclose(f);

  RUN(test_ctx_errors);
  if (inv_tls_ctx_new(cert_path, key_path, &ctx, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  RUN(test_conversation);
  RUN(test_garbage);
  RUN(test_plaintext_first_byte);
  RUN(test_handshake_first_byte_waits);
  RUN(test_old_protocol_refused);
  RUN(test_client_engine);
  inv_tls_ctx_free(ctx);

  unlink(cert_path);
  unlink(key_path);
  unlink(other_key_path);
  unlink(garbage_path);
  unlink(other_ca_path);
  unlink(other_ca_key);
  rmdir(dir);
  return check_summary();
}
