/*
 * A blocking Redis connection over a socket, plain or TLS (see
 * redis_sync.h). TLS runs on the same memory-BIO engine as everything else
 * in inval: ciphertext read from the socket is fed to inv_tls_read(), whose
 * plaintext goes straight into the redisReader, and formatted commands go
 * through inv_tls_write() before send(). So a reply that TLS already
 * decrypted always waits in the reader, never in OpenSSL, and poll() on
 * the socket stays a true "is there more" test.
 */
#include "proto/client/redis_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/base/buf.h"
#include "inval/errors.h"
#include "common/tls/tls.h"

struct inv_redis_sync_s {
  int fd;
  int timeout_ms;
  char where[300]; /* "host:port", for messages */
  inv_tls_t *tls;  /* NULL: plain TCP */
  redisReader *reader;
  inv_buf_t out; /* formatted commands not sent yet (plaintext) */
  char errstr[320];
};

static int fail(inv_redis_sync_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the error message and returns code. */
static int fail(inv_redis_sync_t *c, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
  va_end(ap);
  return code;
}

/* Records a TLS failure in the words of the Redis connections on libuv. */
static int tls_failed(inv_redis_sync_t *c) {
  const char *why = inv_tls_errstr(c->tls);
  const char *verify = inv_tls_verify_error(c->tls);
  if (verify != NULL && strstr(why, "certificate verify failed") != NULL)
    return fail(c, INV_EIO, "TLS to %s: %s: %s", c->where, why, verify);
  return fail(c, INV_EIO, "TLS to %s: %s", c->where, why);
}

/* Waits until fd is ready for events, up to ms. Returns 1, 0 on timeout,
 * or -1 (errno). */
static int wait_fd(int fd, short events, int ms) {
  struct pollfd p = {fd, events, 0};
  int n;
  do n = poll(&p, 1, ms);
  while (n < 0 && errno == EINTR);
  return n;
}

/* Sends all of b and empties it. Returns 0 or an error code. */
static int send_all(inv_redis_sync_t *c, inv_buf_t *b) {
  size_t off = 0;
  while (off < b->len) {
    ssize_t n = send(c->fd, b->data + off, b->len - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int w = wait_fd(c->fd, POLLOUT, c->timeout_ms);
      if (w > 0) continue;
      inv_buf_free(b);
      return fail(c, INV_ETIMEDOUT, "%s: write timed out", c->where);
    }
    inv_buf_free(b);
    return fail(c, INV_EIO, "%s: write failed: %s", c->where, strerror(errno));
  }
  inv_buf_free(b);
  return 0;
}

static int feed_reader(void *data, const char *p, size_t len) {
  inv_redis_sync_t *c = data;
  return redisReaderFeed(c->reader, p, len) == REDIS_OK ? 0 : INV_ENOMEM;
}

/* Reads what the socket has (waiting up to ms) into the reader, through
 * TLS when on. Returns 1 when bytes came, 0 on timeout, or an error. */
static int read_some(inv_redis_sync_t *c, int ms) {
  char buf[16384];
  inv_buf_t wire = {0};
  ssize_t n;
  int w, rc;

  w = wait_fd(c->fd, POLLIN, ms);
  if (w == 0) return 0;
  if (w < 0) return fail(c, INV_EIO, "%s: poll: %s", c->where, strerror(errno));
  do n = recv(c->fd, buf, sizeof(buf), 0);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
  if (n < 0)
    return fail(c, INV_EIO, "%s: read failed: %s", c->where, strerror(errno));
  if (n == 0) {
    if (c->tls != NULL && !inv_tls_handshake_done(c->tls))
      return fail(c, INV_EIO,
                  "TLS to %s: the server closed the connection "
                  "during the handshake (is this its TLS port? does it want "
                  "a client certificate?)",
                  c->where);
    return fail(c, INV_EIO, "%s: connection closed by the server", c->where);
  }
  if (c->tls == NULL)
    return feed_reader(c, buf, (size_t)n) == 0
               ? 1
               : fail(c, INV_ENOMEM, "out of memory");
  rc = inv_tls_read(c->tls, buf, (size_t)n, feed_reader, c, &wire);
  if (wire.len > 0) {
    int src = send_all(c, &wire);
    if (rc == 0 && src != 0) return src;
  }
  inv_buf_free(&wire);
  if (rc == INV_EPROTO) return tls_failed(c);
  if (rc == INV_ECLOSED)
    return fail(c, INV_EIO, "%s: connection closed by the server", c->where);
  if (rc != 0) return fail(c, INV_ENOMEM, "out of memory");
  return 1;
}

/* Sends the queued commands. Returns 0 or an error code. */
static int flush_out(inv_redis_sync_t *c) {
  inv_buf_t wire = {0};
  int rc;
  if (c->out.len == 0) return 0;
  if (c->tls == NULL) return send_all(c, &c->out);
  rc = inv_tls_write(c->tls, &c->out, &wire);
  if (rc != 0) {
    inv_buf_free(&wire);
    return rc == INV_EPROTO ? tls_failed(c)
                            : fail(c, INV_ENOMEM, "out of memory");
  }
  return send_all(c, &wire);
}

int inv_redis_sync_append(inv_redis_sync_t *c, int argc, const char **argv,
                          const size_t *lens) {
  char *cmd = NULL;
  int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
  int rc;
  if (len < 0) return INV_ENOMEM;
  rc = inv_buf_append(&c->out, cmd, (size_t)len);
  redisFreeCommand(cmd);
  return rc == 0 ? 0 : INV_ENOMEM;
}

/* Milliseconds on the monotonic clock. */
static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int inv_redis_sync_reply(inv_redis_sync_t *c, int wait_ms, redisReply **reply) {
  long long deadline = now_ms() + (wait_ms < 0 ? c->timeout_ms : wait_ms);
  int rc;
  *reply = NULL;
  if ((rc = flush_out(c)) != 0) return rc;
  for (;;) {
    void *r = NULL;
    long long left;
    if (redisReaderGetReply(c->reader, &r) != REDIS_OK)
      return fail(c, INV_EIO, "%s: protocol error: %s", c->where,
                  c->reader->errstr);
    if (r != NULL) {
      *reply = r;
      return 1;
    }
    left = deadline - now_ms();
    if (left <= 0 || (rc = read_some(c, (int)left)) == 0) {
      if (wait_ms >= 0) return 0;
      return fail(c, INV_ETIMEDOUT, "%s: no reply within %d ms", c->where,
                  c->timeout_ms);
    }
    if (rc < 0) return rc;
  }
}

int inv_redis_sync_fd(const inv_redis_sync_t *c) { return c->fd; }

int inv_redis_sync_read(inv_redis_sync_t *c) { return read_some(c, 0); }

int inv_redis_sync_command(inv_redis_sync_t *c, int argc, const char **argv,
                           const size_t *lens, redisReply **reply) {
  int rc = inv_redis_sync_append(c, argc, argv, lens);
  if (rc != 0) return rc;
  rc = inv_redis_sync_reply(c, -1, reply);
  return rc == 1 ? 0 : rc;
}

/* Opens a TCP connection to host:port within the timeout. Returns 0 or an
 * error code (with errstr). */
static int open_socket(inv_redis_sync_t *c, const char *host, int port) {
  struct addrinfo hints, *res = NULL, *ai;
  char service[16];
  int rc = INV_ECONNREFUSED, g, one = 1;

  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  snprintf(service, sizeof(service), "%d", port);
  if ((g = getaddrinfo(host, service, &hints, &res)) != 0)
    return fail(c, INV_ECONNREFUSED, "cannot resolve %s: %s", host,
                gai_strerror(g));
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    int err = 0;
    socklen_t elen = sizeof(err);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, c->timeout_ms) <= 0) {
        rc = errno == EINPROGRESS ? INV_ETIMEDOUT : INV_ECONNREFUSED;
        fail(c, rc, "cannot connect to %s: %s", c->where,
             rc == INV_ETIMEDOUT ? "timed out" : strerror(errno));
        close(fd);
        continue;
      }
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
        fail(c, INV_ECONNREFUSED, "cannot connect to %s: %s", c->where,
             strerror(err ? err : errno));
        close(fd);
        continue;
      }
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    rc = 0;
    break;
  }
  freeaddrinfo(res);
  return rc;
}

/* Completes the TLS handshake. Returns 0 or an error code. */
static int handshake(inv_redis_sync_t *c) {
  inv_buf_t wire = {0};
  long long deadline = now_ms() + c->timeout_ms;
  int rc = inv_tls_start(c->tls, &wire);
  if (rc != 0) {
    inv_buf_free(&wire);
    return rc == INV_EPROTO ? tls_failed(c)
                            : fail(c, INV_ENOMEM, "out of memory");
  }
  if ((rc = send_all(c, &wire)) != 0) return rc;
  while (!inv_tls_handshake_done(c->tls)) {
    long long left = deadline - now_ms();
    if (left <= 0 || (rc = read_some(c, (int)left)) == 0)
      return fail(c, INV_ETIMEDOUT, "TLS to %s: handshake timed out", c->where);
    if (rc < 0) return rc;
  }
  return 0;
}

/* Sends AUTH [user] password. Returns 0 or an error code. */
static int auth(inv_redis_sync_t *c, const char *user, const char *password) {
  const char *argv[3];
  size_t lens[3];
  redisReply *rep = NULL;
  int argc = 0, rc;
  argv[argc] = "AUTH";
  lens[argc++] = 4;
  if (user != NULL && user[0] != '\0') {
    argv[argc] = user;
    lens[argc++] = strlen(user);
  }
  argv[argc] = password;
  lens[argc++] = strlen(password);
  rc = inv_redis_sync_command(c, argc, argv, lens, &rep);
  if (rc != 0) return rc;
  if (rep->type == REDIS_REPLY_ERROR) {
    fail(c, INV_EREDIS, "%s: AUTH as user \"%s\" failed: %s", c->where,
         user != NULL && user[0] != '\0' ? user : "default", rep->str);
    freeReplyObject(rep);
    return INV_EREDIS;
  }
  freeReplyObject(rep);
  return 0;
}

int inv_redis_sync_connect(const char *host, int port,
                           const inv_redis_sync_opts_t *opts,
                           inv_redis_sync_t **out, char *err, size_t errlen) {
  inv_redis_sync_t *c = calloc(1, sizeof(*c));
  int rc;

  *out = NULL;
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return INV_ENOMEM;
  }
  c->fd = -1;
  c->timeout_ms =
      opts != NULL && opts->timeout_ms > 0 ? opts->timeout_ms : 2000;
  snprintf(c->where, sizeof(c->where), "%s:%d", host, port);
  c->reader = redisReaderCreate();
  if (c->reader == NULL) {
    rc = fail(c, INV_ENOMEM, "out of memory");
    goto err;
  }
  if ((rc = open_socket(c, host, port)) != 0) goto err;
  if (opts != NULL && opts->tls != NULL) {
    rc = inv_tls_client_new(opts->tls, host, &c->tls);
    if (rc != 0) {
      fail(c, rc, "TLS to %s: cannot set up the connection", c->where);
      goto err;
    }
    if ((rc = handshake(c)) != 0) goto err;
  }
  if (opts != NULL && opts->password != NULL &&
      (rc = auth(c, opts->username, opts->password)) != 0)
    goto err;
  *out = c;
  return 0;

err:
  snprintf(err, errlen, "%s", c->errstr);
  inv_redis_sync_free(c);
  return rc;
}

const char *inv_redis_sync_errstr(const inv_redis_sync_t *c) {
  return c->errstr;
}

void inv_redis_sync_free(inv_redis_sync_t *c) {
  if (c == NULL) return;
  if (c->fd >= 0) close(c->fd);
  inv_tls_free(c->tls);
  if (c->reader != NULL) redisReaderFree(c->reader);
  inv_buf_free(&c->out);
  free(c);
}
