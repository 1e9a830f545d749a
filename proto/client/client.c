/*
 * The C client library: one MessagePack-RPC connection over TCP or TLS,
 * with blocking calls and a pipelined API. See inval/client.h.
 *
 * The socket is non-blocking from the start. Writes go to an output buffer
 * that inv_client_flush() drains; reads go into an inv_framer_t, which
 * yields one response frame at a time, decoded with inv_msg_decode(), so
 * there is one parser for the protocol on both sides. The reply handed out
 * last (c->cur) may point into the framer's buffer, so it is released at
 * the start of every public call, before the buffer can move.
 */
#include "inval/client.h"
#include "proto/event.h"

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

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/base/buf.h"
#include "common/base/queue.h"
#include "inval/errors.h"
#include "proto/codec.h"
#include "proto/log_shard.h"
#include "proto/stream_id.h"

#define CLIENT_DEFAULT_TIMEOUT_MS 5000
#define CLIENT_DEFAULT_MAX_OUTSTANDING 4096
/* Buffered output past this size is written out by the send calls
 * themselves, so a long pipeline does not grow memory without bound. */
#define CLIENT_AUTOFLUSH_BYTES (256 * 1024)
/* Replies can be large (stats with many workers); the server's limit is
 * for requests, ours for responses is generous but still bounded. */
#define CLIENT_MAX_REPLY_BYTES (64u * 1024 * 1024)

/* A response to a pipelined request that arrived while a blocking call
 * waited for its own; kept in arrival order for inv_client_next_reply(). */
typedef struct stash_s {
  inv_queue_t node; /* on the client's stash until returned */
  size_t len;
  char data[];
} stash_t;

struct inv_client_s {
  int fd;
  SSL_CTX *ssl_ctx;
  SSL *ssl;
  int ssl_want_read; /* the last TLS write wanted to read first */
  int broken;        /* a connection-level failure happened */
  int err;
  char errname[16];
  char errstr[256];
  int timeout_ms;
  size_t max_outstanding;
  inv_client_server_t server;
  inv_framer_t framer;
  inv_buf_t out; /* out.data[out_pos..out.len) is still to be written */
  size_t out_pos;
  uint32_t next_msgid;
  size_t outstanding;
  inv_queue_t stash;  /* stash_t.node, in arrival order */
  size_t stash_count; /* below outstanding (see stash_push) */
  /* The reply returned last by inv_client_next_reply(). */
  inv_msg_t cur;
  int cur_valid;
  stash_t *cur_stash;
};

struct inv_client_result_s {
  inv_msg_t msg;
  char *frame; /* the response bytes msg may point into */
};

/* ---- small helpers ---------------------------------------------------- */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline) {
  int64_t left = deadline - now_ms();
  return left < 0 ? 0 : (left > 1000000000 ? 1000000000 : (int)left);
}

/* Records code and the formatted message as c's last error. */
static void vrecord_err(inv_client_t *c, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void vrecord_err(inv_client_t *c, int code, const char *fmt,
                        va_list ap) {
  c->err = code;
  c->errname[0] = '\0';
  vsnprintf(c->errstr, sizeof c->errstr, fmt, ap);
}

/* Records a failure on c and returns code, so that callers can write
 * "return set_err(c, INV_EIO, ...)". */
static int set_err(inv_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(inv_client_t *c, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vrecord_err(c, code, fmt, ap);
  va_end(ap);
  return code;
}

/* Marks the connection unusable: after a transport failure the stream
 * position is unknown, so nothing more can be sent or read on it. */
static int set_broken(inv_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_broken(inv_client_t *c, int code, const char *fmt, ...) {
  va_list ap;
  c->broken = 1;
  va_start(ap, fmt);
  vrecord_err(c, code, fmt, ap);
  va_end(ap);
  return code;
}

/* Appends OpenSSL's first queued error reason to buf, and clears the
 * queue so that a later failure does not report a stale reason. */
static void ssl_reason(char *buf, size_t len) {
  unsigned long e = ERR_get_error();
  if (e != 0)
    ERR_error_string_n(e, buf, len);
  else
    snprintf(buf, len, "%s", "unknown TLS error");
  ERR_clear_error();
}

/* Copies a str/bin object into a fixed buffer, NUL-terminated and
 * truncated to fit. */
static void copy_obj_str(const msgpack_object *o, char *dst, size_t dstlen) {
  size_t n = 0;
  const char *p = NULL;
  if (o != NULL && o->type == MSGPACK_OBJECT_STR) {
    p = o->via.str.ptr;
    n = o->via.str.size;
  } else if (o != NULL && o->type == MSGPACK_OBJECT_BIN) {
    p = o->via.bin.ptr;
    n = o->via.bin.size;
  }
  if (n >= dstlen) n = dstlen - 1;
  if (n > 0) memcpy(dst, p, n);
  dst[n] = '\0';
}

/* Reads an error object {"code": .., "message": ..} into code, name and
 * message. An unknown code name maps to INV_EPROTO (the name is kept). */
static int parse_error_obj(const msgpack_object *e, char *name, size_t namelen,
                           char *msg, size_t msglen) {
  const msgpack_object *code = inv_map_get(e, "code");
  const msgpack_object *text = inv_map_get(e, "message");
  int err;
  copy_obj_str(code, name, namelen);
  copy_obj_str(text, msg, msglen);
  if (name[0] == '\0') snprintf(name, namelen, "%s", "EPROTO");
  err = inv_err_from_name(name, strlen(name));
  return err != 0 ? err : INV_EPROTO;
}

/* Reads a string object of 1 to INV_SID_STRLEN - 1 bytes without a NUL into
 * out. Returns 1, or 0 when o is not one. */
static int read_entry_id(const msgpack_object *o, char out[INV_SID_STRLEN]) {
  const char *p;
  size_t n;
  if (o->type == MSGPACK_OBJECT_STR) {
    p = o->via.str.ptr;
    n = o->via.str.size;
  } else if (o->type == MSGPACK_OBJECT_BIN) {
    p = o->via.bin.ptr;
    n = o->via.bin.size;
  } else {
    return 0;
  }
  if (n == 0 || n >= INV_SID_STRLEN || memchr(p, '\0', n) != NULL) return 0;
  memcpy(out, p, n);
  out[n] = '\0';
  return 1;
}

_Static_assert(INV_CLIENT_ACK_IDS_MAX == INV_LOG_SHARDS,
               "an ack names at most one entry per log shard");

/* Reads an ack's optional "ids": [[shard < INV_LOG_SHARDS, id str], ...]
 * into ack. Returns 1, or 0 when ids is there but has another shape (the
 * server's answer is then not an ack we understand). */
static int parse_ack_ids(const msgpack_object *ids, inv_client_ack_t *ack) {
  ack->nids = 0;
  if (ids == NULL || ids->type == MSGPACK_OBJECT_NIL) return 1;
  if (ids->type != MSGPACK_OBJECT_ARRAY || ids->via.array.size > INV_LOG_SHARDS)
    return 0;
  for (uint32_t i = 0; i < ids->via.array.size; i++) {
    const msgpack_object *e = &ids->via.array.ptr[i];
    if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
        e->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        e->via.array.ptr[0].via.u64 >= INV_LOG_SHARDS ||
        !read_entry_id(&e->via.array.ptr[1], ack->ids[i].id))
      return 0;
    ack->ids[i].shard = (unsigned)e->via.array.ptr[0].via.u64;
    ack->nids = (size_t)i + 1;
  }
  return 1;
}

/* Fills ack from an invalidate result {"id": str, "accepted": n, "ids":
 * [[shard, id], ...]} ("ids" optional). Returns 1 when result has that
 * shape. */
static int parse_ack(const msgpack_object *result, inv_client_ack_t *ack) {
  const msgpack_object *id = inv_map_get(result, "id");
  const msgpack_object *n = inv_map_get(result, "accepted");
  if (id == NULL || n == NULL || n->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
      (id->type != MSGPACK_OBJECT_STR && id->type != MSGPACK_OBJECT_BIN))
    return 0;
  if (!parse_ack_ids(inv_map_get(result, "ids"), ack)) return 0;
  copy_obj_str(id, ack->id, sizeof ack->id);
  ack->accepted = n->via.u64;
  return 1;
}

/* Releases the reply handed out last; its memory may live in the framer's
 * buffer, which the coming call may move. */
static void release_cur(inv_client_t *c) {
  if (c->cur_valid) {
    inv_msg_destroy(&c->cur);
    c->cur_valid = 0;
  }
  free(c->cur_stash);
  c->cur_stash = NULL;
}

/* ---- transport -------------------------------------------------------- */

/* Writes what it can. Returns the bytes written (> 0), 0 when the socket
 * would block, or a negative code (the client is then broken). */
static ssize_t io_write(inv_client_t *c, const char *p, size_t len) {
  if (c->ssl != NULL) {
    int n, e;
    ERR_clear_error();
    n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0) return n;
    e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_WANT_READ) {
      c->ssl_want_read = 1;
      return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
      return set_broken(c, INV_ECLOSED, "connection closed by the server");
    if (e == SSL_ERROR_SYSCALL && errno != 0)
      return set_broken(
          c, errno == EPIPE || errno == ECONNRESET ? INV_ECLOSED : INV_EIO,
          "write: %s", strerror(errno));
    {
      char why[160];
      ssl_reason(why, sizeof why);
      return set_broken(c, INV_EIO, "TLS write: %s", why);
    }
  }
  for (;;) {
    ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return set_broken(
        c, errno == EPIPE || errno == ECONNRESET ? INV_ECLOSED : INV_EIO,
        "write: %s", strerror(errno));
  }
}

/* Reads everything available into the framer. Returns the bytes read
 * (>= 0; 0 when nothing was ready), or a negative code: INV_ECLOSED when
 * the server closed the connection, INV_EIO, INV_ENOMEM, or the framer's
 * error for a reply stream we cannot parse. */
static ssize_t io_read(inv_client_t *c) {
  char buf[16384];
  ssize_t total = 0;
  for (;;) {
    ssize_t n;
    int rc;
    if (c->ssl != NULL) {
      int e;
      ERR_clear_error();
      n = SSL_read(c->ssl, buf, sizeof buf);
      if (n <= 0) {
        e = SSL_get_error(c->ssl, (int)n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return total;
        if (e == SSL_ERROR_ZERO_RETURN ||
            (e == SSL_ERROR_SYSCALL && errno == 0))
          return set_broken(c, INV_ECLOSED, "connection closed by the server");
        if (e == SSL_ERROR_SYSCALL)
          return set_broken(c, errno == ECONNRESET ? INV_ECLOSED : INV_EIO,
                            "read: %s", strerror(errno));
        {
          char why[160];
          ssl_reason(why, sizeof why);
          return set_broken(c, INV_EIO, "TLS read: %s", why);
        }
      }
      c->ssl_want_read = 0;
    } else {
      n = recv(c->fd, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return total;
        return set_broken(c, errno == ECONNRESET ? INV_ECLOSED : INV_EIO,
                          "read: %s", strerror(errno));
      }
      if (n == 0)
        return set_broken(c, INV_ECLOSED, "connection closed by the server");
    }
    rc = inv_framer_feed(&c->framer, buf, (size_t)n);
    if (rc != 0)
      return set_broken(c, rc, "bad reply stream: %s",
                        rc == INV_ENOMEM ? "out of memory" : c->framer.errstr);
    total += n;
    if ((size_t)n < sizeof buf && (c->ssl == NULL || SSL_pending(c->ssl) == 0))
      return total;
  }
}

/* Waits for the socket. Returns the poll revents (0 on timeout), or a
 * negative code. */
static int wait_fd(inv_client_t *c, short events, int timeout_ms) {
  struct pollfd pfd;
  int n;
  pfd.fd = c->fd;
  pfd.events = events;
  pfd.revents = 0;
  do {
    n = poll(&pfd, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return set_broken(c, INV_EIO, "poll: %s", strerror(errno));
  return n == 0 ? 0 : pfd.revents;
}

/* Writes the output buffer out, reading replies whenever they arrive so
 * that a server that stops reading until we read cannot deadlock us. Gives
 * up after timeout_ms without progress. */
static int flush_out(inv_client_t *c, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  while (c->out_pos < c->out.len) {
    ssize_t n = io_write(c, c->out.data + c->out_pos, c->out.len - c->out_pos);
    int rev;
    if (n < 0) return (int)n;
    if (n > 0) {
      c->out_pos += (size_t)n;
      deadline = now_ms() + timeout_ms;
      continue;
    }
    rev = wait_fd(c, c->ssl_want_read ? POLLIN : (POLLIN | POLLOUT),
                  remaining_ms(deadline));
    if (rev < 0) return rev;
    if (rev == 0)
      /* Part of a frame may be on the wire already: the stream cannot
       * be resumed safely by a caller that gives up on it. */
      return set_broken(c, INV_ETIMEDOUT, "write timed out after %d ms",
                        timeout_ms);
    if (rev & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = io_read(c);
      if (r < 0) return (int)r;
      if (r > 0) deadline = now_ms() + timeout_ms;
    }
  }
  inv_buf_reset(&c->out);
  c->out_pos = 0;
  return 0;
}

/* Takes the next response from the framer. Returns 1 with *frame and *len
 * (valid until the next feed or call) and msg decoded from them (the
 * caller destroys it), 0 when no frame is complete, or a negative code.
 * Notifications are handled here: the server's "error" notification
 * announces that it closes the connection and why. */
static int next_frame(inv_client_t *c, const char **frame, size_t *len,
                      inv_msg_t *msg) {
  for (;;) {
    char why[128];
    int rc = inv_framer_next(&c->framer, frame, len);
    if (rc <= 0) {
      if (rc < 0)
        return set_broken(c, rc, "bad reply stream: %s", c->framer.errstr);
      return 0;
    }
    memset(msg, 0, sizeof *msg);
    rc = inv_msg_decode(*frame, *len, msg, why);
    if (rc != 0) {
      inv_msg_destroy(msg);
      return set_broken(c, INV_EPROTO, "bad reply: %s", why);
    }
    if (msg->type == INV_MSG_RESPONSE) return 1;
    if (msg->type == INV_MSG_NOTIFY && msg->method_len == 5 &&
        memcmp(msg->method, "error", 5) == 0 &&
        msg->params.via.array.size > 0) {
      char name[16], text[200];
      int code = parse_error_obj(&msg->params.via.array.ptr[0], name,
                                 sizeof name, text, sizeof text);
      inv_msg_destroy(msg);
      set_broken(c, code, "%s", text);
      snprintf(c->errname, sizeof c->errname, "%s", name);
      return code;
    }
    /* Any other notification or request from a server has no meaning for
     * this client; skipping it keeps the stream usable. */
    inv_msg_destroy(msg);
  }
}

/* Keeps a response to a pipelined request for inv_client_next_reply().
 * Each one answers a request counted in outstanding, so a server that
 * sends more responses than there are pipelined requests is broken, and
 * the stash stays bounded by max_outstanding. */
static int stash_push(inv_client_t *c, const char *frame, size_t len,
                      uint32_t msgid) {
  stash_t *s;
  if (c->stash_count >= c->outstanding)
    return set_broken(c, INV_EPROTO, "a reply to no request (msgid %u)",
                      (unsigned)msgid);
  s = malloc(sizeof *s + len);
  if (s == NULL) return set_err(c, INV_ENOMEM, "out of memory");
  inv_queue_init(&s->node);
  s->len = len;
  memcpy(s->data, frame, len);
  inv_queue_insert_tail(&c->stash, &s->node);
  c->stash_count++;
  return 0;
}

/* Takes the oldest stashed response off the stash, or returns NULL. */
static stash_t *stash_pop(inv_client_t *c) {
  inv_queue_t *q = inv_queue_pop(&c->stash);
  if (q == NULL) return NULL;
  c->stash_count--;
  return INV_QUEUE_DATA(q, stash_t, node);
}

/* Makes room for n more bytes in the output buffer, so that packing a
 * message of at most n bytes cannot fail half way (which would leave a
 * partial frame in the stream). Returns 0 or INV_ENOMEM. */
static int reserve_out(inv_client_t *c, size_t n) {
  size_t len = c->out.len;
  if (c->out.cap - c->out.len >= n) return 0;
  if (c->out_pos > 0 && c->out_pos == c->out.len) {
    inv_buf_reset(&c->out);
    c->out_pos = 0;
    len = 0;
  }
  {
    char *zero = calloc(1, n);
    int rc;
    if (zero == NULL) return set_err(c, INV_ENOMEM, "out of memory");
    rc = inv_buf_append(&c->out, zero, n);
    free(zero);
    if (rc != 0) return set_err(c, INV_ENOMEM, "out of memory");
  }
  c->out.len = len;
  return 0;
}

/* Packs and buffers [0, msgid, method, params] with pre-packed params.
 * Returns 0 and *msgid. */
static int buffer_request(inv_client_t *c, const char *method,
                          const char *params, size_t params_len,
                          uint32_t *msgid) {
  msgpack_packer pk;
  uint32_t id;
  if (reserve_out(c, 32 + strlen(method) + params_len) != 0) return INV_ENOMEM;
  id = c->next_msgid++;
  if (c->next_msgid == 0) c->next_msgid = 1;
  msgpack_packer_init(&pk, &c->out, inv_buf_msgpack_write);
  inv_pack_request_header(&pk, id, method);
  if (params == NULL || params_len == 0)
    msgpack_pack_array(&pk, 0);
  else
    inv_buf_append(&c->out, params, params_len);
  *msgid = id;
  return 0;
}

/* Sends a buffered request and waits for the response with that msgid.
 * Other responses are stashed for inv_client_next_reply(). On success
 * *frame_out holds a malloc'd copy of the response (the caller frees it)
 * and *msg its decode (the caller destroys it). An error response returns
 * the server's code with c's error set. */
static int wait_response(inv_client_t *c, uint32_t msgid, int timeout_ms,
                         char **frame_out, inv_msg_t *msg) {
  int64_t deadline = now_ms() + timeout_ms;
  int rc = flush_out(c, timeout_ms);
  if (rc != 0) return rc;
  for (;;) {
    const char *frame;
    size_t len;
    inv_msg_t got;
    rc = next_frame(c, &frame, &len, &got);
    if (rc < 0) return rc;
    if (rc == 0) {
      int rev = wait_fd(c, POLLIN, remaining_ms(deadline));
      ssize_t r;
      if (rev < 0) return rev;
      if (rev == 0) /* Its late reply could not be told from a pipelined one. */
        return set_broken(c, INV_ETIMEDOUT, "no reply within %d ms",
                          timeout_ms);
      r = io_read(c);
      if (r < 0) return (int)r;
      continue;
    }
    if (got.msgid != msgid) {
      uint32_t other = got.msgid;
      inv_msg_destroy(&got);
      rc = stash_push(c, frame, len, other);
      if (rc != 0) return rc;
      continue;
    }
    inv_msg_destroy(&got);
    {
      char why[128];
      char *copy = malloc(len);
      if (copy == NULL) return set_err(c, INV_ENOMEM, "out of memory");
      memcpy(copy, frame, len);
      memset(msg, 0, sizeof *msg);
      rc = inv_msg_decode(copy, len, msg, why);
      if (rc != 0) {
        inv_msg_destroy(msg);
        free(copy);
        return set_broken(c, INV_EPROTO, "bad reply: %s", why);
      }
      if (msg->error.type != MSGPACK_OBJECT_NIL) {
        char name[16], text[256];
        int code =
            parse_error_obj(&msg->error, name, sizeof name, text, sizeof text);
        inv_msg_destroy(msg);
        free(copy);
        set_err(c, code, "%s", text);
        snprintf(c->errname, sizeof c->errname, "%s", name);
        return code;
      }
      *frame_out = copy;
      return 0;
    }
  }
}

/* Common entry check of every call: releases the last pipelined reply and
 * refuses to work on a broken connection. */
static int begin_call(inv_client_t *c) {
  release_cur(c);
  if (c->broken) {
    int code = INV_ECLOSED;
    /* Keep the original reason, but answer with the documented code. */
    c->err = code;
    return code;
  }
  c->err = 0;
  c->errname[0] = '\0';
  c->errstr[0] = '\0';
  return 0;
}

/* One blocking call with pre-packed params. */
static int call(inv_client_t *c, const char *method, const char *params,
                size_t params_len, int timeout_ms, inv_client_result_t **out) {
  uint32_t id = 0;
  inv_client_result_t *res;
  char *frame = NULL;
  inv_msg_t msg;
  int rc;
  if (out != NULL) *out = NULL;
  rc = buffer_request(c, method, params, params_len, &id);
  if (rc != 0) return rc;
  rc = wait_response(c, id, timeout_ms, &frame, &msg);
  if (rc != 0) return rc;
  if (out == NULL) {
    inv_msg_destroy(&msg);
    free(frame);
    return 0;
  }
  res = malloc(sizeof *res);
  if (res == NULL) {
    inv_msg_destroy(&msg);
    free(frame);
    return set_err(c, INV_ENOMEM, "out of memory");
  }
  res->msg = msg;
  res->frame = frame;
  *out = res;
  return 0;
}

/* ---- connect ---------------------------------------------------------- */

static int set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Connects one address within the deadline. Returns the socket, or a
 * negative code with msg set. */
static int tcp_connect_one(const struct addrinfo *ai, int64_t deadline,
                           char *msg, size_t msglen) {
  int fd =
      socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  int one = 1, soerr = 0, rc;
  socklen_t sl = sizeof soerr;
  if (fd < 0) {
    snprintf(msg, msglen, "%s", strerror(errno));
    return INV_EIO;
  }
  if (set_nonblock(fd) != 0) {
    snprintf(msg, msglen, "%s", strerror(errno));
    close(fd);
    return INV_EIO;
  }
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) goto ok;
  if (errno != EINPROGRESS) {
    soerr = errno;
    goto fail;
  }
  for (;;) {
    struct pollfd pfd = {fd, POLLOUT, 0};
    rc = poll(&pfd, 1, remaining_ms(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) {
      soerr = errno;
      goto fail;
    }
    if (rc == 0) {
      snprintf(msg, msglen, "%s", "connect timed out");
      close(fd);
      return INV_ETIMEDOUT;
    }
    break;
  }
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
  if (soerr != 0) goto fail;
ok:
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
fail:
  snprintf(msg, msglen, "%s", strerror(soerr));
  close(fd);
  if (soerr == ECONNREFUSED) return INV_ECONNREFUSED;
  if (soerr == ETIMEDOUT) return INV_ETIMEDOUT;
  return INV_EIO;
}

/* Resolves host and tries each address in turn. */
static int tcp_connect(inv_client_t *c, const char *host, int port,
                       int64_t deadline) {
  struct addrinfo hints, *res = NULL, *ai;
  char portstr[16], msg[200] = "no address";
  int rc, last = INV_EIO;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(portstr, sizeof portstr, "%d", port);
  rc = getaddrinfo(host, portstr, &hints, &res);
  if (rc != 0)
    return set_broken(c, INV_EIO, "cannot resolve %s: %s", host,
                      gai_strerror(rc));
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    int fd = tcp_connect_one(ai, deadline, msg, sizeof msg);
    if (fd >= 0) {
      c->fd = fd;
      freeaddrinfo(res);
      return 0;
    }
    last = fd;
    if (fd == INV_ETIMEDOUT) break;
  }
  freeaddrinfo(res);
  return set_broken(c, last, "%s", msg);
}

static int is_ip_literal(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 ||
         inet_pton(AF_INET6, host, buf) == 1;
}

/* Sets up TLS on c->fd and runs the handshake within the deadline. */
static int tls_connect(inv_client_t *c, const char *host,
                       const inv_client_opts_t *o, int64_t deadline) {
  const char *name = o->tls_server_name != NULL ? o->tls_server_name : host;
  char why[200];
  c->ssl_ctx = SSL_CTX_new(TLS_client_method());
  if (c->ssl_ctx == NULL) goto ssl_err;
  SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(c->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (o->tls_verify) {
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    if (o->tls_ca_file != NULL) {
      if (SSL_CTX_load_verify_locations(c->ssl_ctx, o->tls_ca_file, NULL) !=
          1) {
        ssl_reason(why, sizeof why);
        return set_broken(c, INV_EIO, "cannot load CA file %s: %s",
                          o->tls_ca_file, why);
      }
    } else if (SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
      goto ssl_err;
    }
  } else {
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_NONE, NULL);
  }
  /* A client certificate, for a server that asks for one (tls-client-ca),
   * which may also name this client's tenant. */
  if (o->tls_cert_file != NULL) {
    const char *key =
        o->tls_key_file != NULL ? o->tls_key_file : o->tls_cert_file;
    if (SSL_CTX_use_certificate_chain_file(c->ssl_ctx, o->tls_cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(c->ssl_ctx, key, SSL_FILETYPE_PEM) != 1) {
      ssl_reason(why, sizeof why);
      return set_broken(c, INV_EIO, "cannot load client certificate %s: %s",
                        o->tls_cert_file, why);
    }
  }
  c->ssl = SSL_new(c->ssl_ctx);
  if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) goto ssl_err;
  /* SNI carries host names only (RFC 6066); an address is checked as an
   * IP subjectAltName instead. */
  if (is_ip_literal(name)) {
    if (o->tls_verify &&
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1)
      goto ssl_err;
  } else {
    SSL_set_tlsext_host_name(c->ssl, name);
    if (o->tls_verify && SSL_set1_host(c->ssl, name) != 1) goto ssl_err;
  }
  for (;;) {
    int rc, e, rev;
    ERR_clear_error();
    rc = SSL_connect(c->ssl);
    if (rc == 1) return 0;
    e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      rev = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                    remaining_ms(deadline));
      if (rev < 0) return rev;
      if (rev == 0)
        return set_broken(c, INV_ETIMEDOUT, "TLS handshake timed out");
      continue;
    }
    if (SSL_get_verify_result(c->ssl) != X509_V_OK) {
      long v = SSL_get_verify_result(c->ssl);
      ERR_clear_error();
      return set_broken(c, INV_EIO, "TLS certificate verification failed: %s",
                        X509_verify_cert_error_string(v));
    }
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
      int saved = errno;
      ERR_clear_error();
      if (e == SSL_ERROR_SYSCALL && saved != 0)
        return set_broken(c, INV_EIO, "TLS handshake failed: %s",
                          strerror(saved));
      return set_broken(c, INV_ECLOSED,
                        "TLS handshake failed: connection closed by the "
                        "server (is it speaking TLS?)");
    }
    ssl_reason(why, sizeof why);
    return set_broken(c, INV_EIO, "TLS handshake failed: %s", why);
  }
ssl_err:
  ssl_reason(why, sizeof why);
  return set_broken(c, INV_EIO, "TLS setup failed: %s", why);
}

/* Sends hello and records the server's answer. */
static int hello(inv_client_t *c, const inv_client_opts_t *o, int64_t deadline,
                 int total_ms) {
  inv_buf_t params = {0};
  msgpack_packer pk;
  inv_client_result_t *res = NULL;
  const msgpack_object *r, *v;
  int rc;
  msgpack_packer_init(&pk, &params, inv_buf_msgpack_write);
  msgpack_pack_array(&pk, 1);
  msgpack_pack_map(&pk, o->token != NULL ? 3 : 2);
  inv_pack_str(&pk, "proto");
  msgpack_pack_int(&pk, INV_PROTO_VERSION);
  inv_pack_str(&pk, "client");
  inv_pack_str(&pk, o->client_name != NULL ? o->client_name : "inval-client");
  if (o->token != NULL) {
    inv_pack_str(&pk, "token");
    inv_pack_str(&pk, o->token);
  }
  if (params.data == NULL) return set_broken(c, INV_ENOMEM, "out of memory");
  rc = call(c, "hello", params.data, params.len, remaining_ms(deadline), &res);
  inv_buf_free(&params);
  if (rc == INV_ENOMETHOD) return 0; /* a worker's admin port */
  if (rc == INV_ETIMEDOUT)
    return set_broken(c, rc, "no reply to hello within %d ms", total_ms);
  if (rc != 0) return rc;
  r = inv_client_result_obj(res);
  copy_obj_str(inv_map_get(r, "server"), c->server.name, sizeof c->server.name);
  copy_obj_str(inv_map_get(r, "version"), c->server.version,
               sizeof c->server.version);
  v = inv_map_get(r, "proto");
  if (v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
    c->server.proto = (int)v->via.u64;
  v = inv_map_get(r, "max_message_bytes");
  if (v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
    c->server.max_message_bytes = (size_t)v->via.u64;
  v = inv_map_get(r, "max_events");
  if (v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
    c->server.max_events = (size_t)v->via.u64;
  inv_client_result_free(res);
  return 0;
}

void inv_client_opts_default(inv_client_opts_t *opts) {
  memset(opts, 0, sizeof *opts);
  opts->tls_verify = 1;
}

int inv_client_connect(const char *host, int port,
                       const inv_client_opts_t *opts, inv_client_t **out,
                       char *err, size_t errlen) {
  inv_client_opts_t defaults;
  inv_client_t *c;
  inv_codec_limits_t lim;
  int64_t deadline;
  int rc, total_ms;
  *out = NULL;
  if (opts == NULL) {
    inv_client_opts_default(&defaults);
    opts = &defaults;
  }
  c = calloc(1, sizeof *c);
  if (c == NULL) {
    if (errlen > 0) snprintf(err, errlen, "%s", "out of memory");
    return INV_ENOMEM;
  }
  inv_queue_init(&c->stash);
  c->fd = -1;
  c->next_msgid = 1;
  c->timeout_ms =
      opts->timeout_ms > 0 ? opts->timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
  c->max_outstanding = opts->max_outstanding > 0
                           ? opts->max_outstanding
                           : CLIENT_DEFAULT_MAX_OUTSTANDING;
  inv_codec_limits_default(&lim);
  lim.max_message_bytes = CLIENT_MAX_REPLY_BYTES;
  inv_framer_init(&c->framer, &lim);
  total_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                          : CLIENT_DEFAULT_TIMEOUT_MS;
  deadline = now_ms() + total_ms;
  rc = tcp_connect(c, host, port, deadline);
  if (rc != 0) goto err;
  if (opts->tls) {
    rc = tls_connect(c, host, opts, deadline);
    if (rc != 0) goto err;
  }
  rc = opts->skip_hello ? 0 : hello(c, opts, deadline, total_ms);
  if (rc != 0) goto err;
  c->err = 0;
  c->errstr[0] = '\0';
  *out = c;
  return 0;
err:
  if (errlen > 0) snprintf(err, errlen, "%s", c->errstr);
  inv_client_close(c);
  return rc;
}

void inv_client_close(inv_client_t *c) {
  stash_t *s;
  if (c == NULL) return;
  release_cur(c);
  if (c->ssl != NULL) {
    /* A close_notify is polite but must never block or fail the close. */
    if (!c->broken) SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
  }
  SSL_CTX_free(c->ssl_ctx);
  ERR_clear_error();
  if (c->fd >= 0) close(c->fd);
  while ((s = stash_pop(c)) != NULL) free(s);
  inv_framer_free(&c->framer);
  inv_buf_free(&c->out);
  free(c);
}

int inv_client_errcode(const inv_client_t *c) { return c->err; }
const char *inv_client_errstr(const inv_client_t *c) { return c->errstr; }
const char *inv_client_errname(const inv_client_t *c) { return c->errname; }
const inv_client_server_t *inv_client_server(const inv_client_t *c) {
  return &c->server;
}
int inv_client_fd(const inv_client_t *c) { return c->fd; }
size_t inv_client_outstanding(const inv_client_t *c) { return c->outstanding; }

const msgpack_object *inv_client_result_obj(const inv_client_result_t *r) {
  return &r->msg.result;
}

void inv_client_result_free(inv_client_result_t *r) {
  if (r == NULL) return;
  inv_msg_destroy(&r->msg);
  free(r->frame);
  free(r);
}

/* ---- blocking calls --------------------------------------------------- */

/* Packs [[event, ...]] as the params of an invalidate message. */
static void pack_events(msgpack_packer *pk, const inv_event_t *events,
                        size_t n) {
  size_t i;
  msgpack_pack_array(pk, 1);
  msgpack_pack_array(pk, n);
  for (i = 0; i < n; i++) inv_event_pack(pk, &events[i]);
}

/* Buffers one invalidate request or notification. Checks the size against
 * the server's limit so that an oversize request (which the server answers
 * by closing the connection) is refused here instead. */
static int buffer_invalidate(inv_client_t *c, const inv_event_t *events,
                             size_t n, int notify, uint32_t *msgid) {
  msgpack_packer pk;
  size_t before, i, need = 64;
  uint32_t id = 0;
  if (n == 0) return set_err(c, INV_EINVAL, "no events to send");
  /* An event packs to at most 48 bytes plus its target. */
  for (i = 0; i < n; i++) need += 48 + events[i].target_len;
  if (reserve_out(c, need) != 0) return INV_ENOMEM;
  before = c->out.len;
  msgpack_packer_init(&pk, &c->out, inv_buf_msgpack_write);
  if (notify) {
    inv_pack_notify_header(&pk, "invalidate");
  } else {
    id = c->next_msgid++;
    if (c->next_msgid == 0) c->next_msgid = 1;
    inv_pack_request_header(&pk, id, "invalidate");
  }
  pack_events(&pk, events, n);
  if (c->server.max_message_bytes > 0 &&
      c->out.len - before > c->server.max_message_bytes) {
    size_t sz = c->out.len - before;
    c->out.len = before;
    return set_err(c, INV_ETOOBIG,
                   "request of %zu bytes is over the server's limit of %zu", sz,
                   c->server.max_message_bytes);
  }
  if (msgid != NULL) *msgid = id;
  return 0;
}

int inv_client_invalidate(inv_client_t *c, const inv_event_t *events, size_t n,
                          inv_client_ack_t *ack) {
  uint32_t id = 0;
  char *frame = NULL;
  inv_msg_t msg;
  int rc = begin_call(c);
  if (rc != 0) return rc;
  rc = buffer_invalidate(c, events, n, 0, &id);
  if (rc != 0) return rc;
  rc = wait_response(c, id, c->timeout_ms, &frame, &msg);
  if (rc != 0) return rc;
  if (ack != NULL) {
    memset(ack, 0, sizeof *ack);
    if (!parse_ack(&msg.result, ack)) {
      inv_msg_destroy(&msg);
      free(frame);
      return set_err(c, INV_EPROTO,
                     "invalidate result is not {id, accepted, ids}");
    }
  }
  inv_msg_destroy(&msg);
  free(frame);
  return 0;
}

int inv_client_ping(inv_client_t *c) {
  inv_client_result_t *res = NULL;
  int rc = begin_call(c);
  if (rc != 0) return rc;
  rc = call(c, "ping", NULL, 0, c->timeout_ms, &res);
  if (rc != 0) return rc;
  if (!inv_obj_streq(inv_client_result_obj(res), "PONG"))
    rc = set_err(c, INV_EPROTO, "ping result is not \"PONG\"");
  inv_client_result_free(res);
  return rc;
}

int inv_client_stats(inv_client_t *c, inv_client_result_t **out) {
  int rc;
  *out = NULL;
  rc = begin_call(c);
  if (rc != 0) return rc;
  return call(c, "stats", NULL, 0, c->timeout_ms, out);
}

int inv_client_call(inv_client_t *c, const char *method, const char *params,
                    size_t params_len, inv_client_result_t **out) {
  int rc;
  if (out != NULL) *out = NULL;
  rc = begin_call(c);
  if (rc != 0) return rc;
  return call(c, method, params, params_len, c->timeout_ms, out);
}

/* ---- pipelined API ---------------------------------------------------- */

int inv_client_send_invalidate(inv_client_t *c, const inv_event_t *events,
                               size_t n, uint32_t *msgid) {
  int rc = begin_call(c);
  if (rc != 0) return rc;
  if (c->outstanding >= c->max_outstanding)
    return set_err(c, INV_EBUSY,
                   "%zu requests are already waiting for replies (the "
                   "limit); read replies with inv_client_next_reply first",
                   c->outstanding);
  rc = buffer_invalidate(c, events, n, 0, msgid);
  if (rc != 0) return rc;
  c->outstanding++;
  if (c->out.len - c->out_pos >= CLIENT_AUTOFLUSH_BYTES)
    return flush_out(c, c->timeout_ms);
  return 0;
}

int inv_client_notify_invalidate(inv_client_t *c, const inv_event_t *events,
                                 size_t n) {
  int rc = begin_call(c);
  if (rc != 0) return rc;
  rc = buffer_invalidate(c, events, n, 1, NULL);
  if (rc != 0) return rc;
  if (c->out.len - c->out_pos >= CLIENT_AUTOFLUSH_BYTES)
    return flush_out(c, c->timeout_ms);
  return 0;
}

int inv_client_flush(inv_client_t *c) {
  int rc = begin_call(c);
  if (rc != 0) return rc;
  return flush_out(c, c->timeout_ms);
}

/* Fills r from a decoded response whose memory stays alive until
 * release_cur(); c->cur takes msg over. */
static int deliver(inv_client_t *c, inv_msg_t *msg, inv_client_reply_t *r) {
  memset(r, 0, sizeof *r);
  c->cur = *msg;
  c->cur_valid = 1;
  r->msgid = c->cur.msgid;
  if (c->cur.error.type != MSGPACK_OBJECT_NIL) {
    r->err = parse_error_obj(&c->cur.error, r->errname, sizeof r->errname,
                             r->errstr, sizeof r->errstr);
    r->result.type = MSGPACK_OBJECT_NIL;
  } else {
    r->result = c->cur.result;
    r->has_ack = parse_ack(&r->result, &r->ack);
  }
  if (c->outstanding > 0) c->outstanding--;
  return 0;
}

int inv_client_next_reply(inv_client_t *c, int timeout_ms,
                          inv_client_reply_t *r) {
  int64_t deadline;
  int rc = begin_call(c);
  if (rc != 0) return rc;
  if (timeout_ms < 0) timeout_ms = c->timeout_ms;
  stash_t *s = stash_pop(c);
  if (s != NULL) {
    inv_msg_t msg;
    char why[128];
    c->cur_stash = s;
    memset(&msg, 0, sizeof msg);
    rc = inv_msg_decode(s->data, s->len, &msg, why);
    if (rc != 0) {
      inv_msg_destroy(&msg);
      return set_broken(c, INV_EPROTO, "bad reply: %s", why);
    }
    return deliver(c, &msg, r);
  }
  if (c->outstanding == 0)
    return set_err(c, INV_EINVAL, "no request is waiting for a reply");
  rc = flush_out(c, c->timeout_ms);
  if (rc != 0) return rc;
  deadline = now_ms() + timeout_ms;
  for (;;) {
    const char *frame;
    size_t len;
    int rev;
    ssize_t n;
    inv_msg_t msg;
    rc = next_frame(c, &frame, &len, &msg);
    if (rc < 0) return rc;
    if (rc == 1) return deliver(c, &msg, r);
    rev = wait_fd(c, POLLIN, remaining_ms(deadline));
    if (rev < 0) return rev;
    if (rev == 0)
      return set_err(c, INV_ETIMEDOUT, "no reply within %d ms", timeout_ms);
    n = io_read(c);
    if (n < 0) return (int)n;
  }
}
