/*
 * The MessagePack-RPC server: listener, sessions, framing, dispatch and
 * output (see rpc_server.h for the rules it applies).
 *
 * A session moves through four states:
 *   OPEN      reading, decoding and dispatching;
 *   DRAINING  no more dispatch; queued output is flushed, and input is read
 *             and thrown away so that unread bytes do not turn our close
 *             into a reset that could destroy the last reply in flight;
 *   SHUTDOWN  output flushed and our side shut down (FIN sent); we wait a
 *             moment for the peer's end of file before closing;
 *   CLOSED    uv_close() called on the socket and the timer.
 * A per-session timer bounds every wait: the idle timeout while OPEN, the
 * drain and linger bounds afterwards.
 *
 * Output goes through three buffers: out (plaintext replies), wire (bytes
 * for the socket: the same bytes, or TLS records) and inflight (the bytes of
 * the one uv_write in progress). Replies that finish while a write is in
 * progress pile up in out and leave together in the next write, so many
 * replies share one system call.
 *
 * Memory: a session stays allocated while its handles are open or while
 * requests reference it, whichever ends last, so a handler may finish a
 * request after the client left (the reply is dropped).
 */
#include "proto/server/rpc_server.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/base/buf.h"
#include "common/base/check.h"
#include "inval/errors.h"
#include "common/server/listen.h"
#include "common/base/queue.h"
#include "common/tls/tls.h"
#include "proto/event.h"

/* One read's worth of input; shared by every session of a server because a
 * read callback consumes its bytes before returning. */
#define INV__RPC_READ_BUF 65536
/* Unfinished requests per session before the server stops reading from it:
 * a client pipelining faster than the handler finishes is slowed down
 * rather than queued without bound. */
#define INV__RPC_MAX_PENDING 4096
/* How long a session closed for a protocol error, an idle timeout or its
 * peer's end of file may take to flush its last output. */
#define INV__RPC_DRAIN_MS 5000
/* How long a connection over max_clients may take to receive EBUSY. */
#define INV__RPC_REJECT_MS 2000
/* A TLS client must finish its handshake within this long (or within the
 * idle timeout, when that is shorter), so half-open handshakes cannot hold
 * sessions. */
#define INV__RPC_HANDSHAKE_MS 10000
/* TLS handshakes in flight by default; each holds OpenSSL's state and
 * buffers (tens of KB) until it ends. */
#define INV__RPC_HANDSHAKES_MAX 512
/* After a burst of at least this many handshakes in flight, the memory
 * they held is handed back to the system once none is left (glibc keeps
 * freed heap otherwise, and a flood's peak would stay the resident size). */
#define INV__RPC_TRIM_AFTER 64
/* Client certificate identities read at hello. */
#define INV__RPC_MAX_CERT_IDS 8
/* Plaintext on the TLS port is logged at most once per this many ms, so a
 * flood of such connections cannot flood the log. */
#define INV__RPC_PLAINTEXT_LOG_MS 1000
/* After our FIN, how long we wait for the peer's before closing anyway. */
#define INV__RPC_LINGER_MS 2000
/* Connections over max_clients being told EBUSY at once; beyond this they
 * are closed without a word, so a connection flood cannot hold memory. */
#define INV__RPC_MAX_REJECTING 256
/* Output buffers above this capacity are released once empty, so a burst
 * does not leave every idle session holding megabytes. */
#define INV__RPC_KEEP_BUF 65536
#define INV__RPC_DEFAULT_OUT_LIMIT (4u * 1024 * 1024)

typedef enum {
  SESS_OPEN = 0,
  SESS_DRAINING,
  SESS_SHUTDOWN,
  SESS_CLOSED
} sess_state_t;

typedef struct inv__rpc_session_s session_t;

struct inv__rpc_session_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  inv_rpc_server_t *server; /* NULL once the handles are closed */
  inv_queue_t node;         /* on the server's sessions until freed */
  inv_queue_t kick_node;    /* on the kick list while its dispatch waits */
  inv_queue_t hs_node;      /* on the handshake list, from its TLS accept
                             * until its handshake is done or it is freed */
  inv_framer_t framer;
  inv_tls_t *tls; /* NULL for plain TCP */
  inv_buf_t out, wire, inflight;
  sess_state_t state;
  unsigned handles; /* of tcp and timer, not yet closed */
  size_t pending;   /* requests handed out and not finished */
  unsigned writing : 1;
  unsigned reading : 1;
  unsigned processing : 1; /* inside session_process(): no re-entry */
  unsigned blocked : 1;    /* input waits for permission to dispatch */
  unsigned eof : 1;        /* the peer finished sending */
  unsigned out_paused : 1; /* unsent output over out_limit */
  unsigned authed : 1;
  unsigned rejecting : 1; /* over max_clients: EBUSY, then close */
  unsigned counted : 1;   /* counted in stats.clients */
  unsigned tls_failed : 1;
  unsigned handshaken : 1; /* TLS handshake done (or no TLS) */
  char peer[64];
  char principal[INV_RPC_PRINCIPAL_MAX]; /* "" until hello says who */
};

struct inv_rpc_req_s {
  session_t *sess;
  uint32_t msgid;
  int notify;
  int authenticates; /* a hello with the right token: success auths */
  char principal[INV_RPC_PRINCIPAL_MAX]; /* whom that hello authenticates */
  inv_buf_t buf;
  msgpack_packer pk;
};

struct inv_rpc_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_idle_t kick_idle; /* dispatches input left waiting by a pause */
  uv_timer_t linger_timer;
  inv_rpc_handler_cb handler;
  void *data;
  inv_codec_limits_t limits;
  size_t max_clients;
  uint64_t idle_timeout_ms;
  size_t out_limit;
  char *auth_token; /* NULL: no authentication */
  size_t auth_len;
  char *log_ctx;
  inv_tls_ctx_t *tls_ctx;
  inv_rpc_auth_cb auth_cb;
  void *auth_data;
  size_t handshakes_max;
  uint64_t handshake_ms;
  inv_queue_t handshakes; /* session_t.hs_node: TLS handshakes, oldest first */
  size_t hs_live;         /* of those, the ones not closing */
  size_t hs_peak;         /* most handshakes since the last trim */
  uint64_t shed_logged_ms;
  uint64_t shed_unlogged;
  inv_queue_t sessions; /* session_t.node */
  inv_queue_t kick;     /* session_t.kick_node: dispatch deferred */
  size_t nrejecting;
  uint64_t plaintext_logged_ms; /* loop time of the last plaintext line */
  uint64_t plaintext_unlogged;  /* plaintext closes since that line */
  unsigned handles; /* listener, kick_idle and linger_timer still open */
  int listening;
  int paused;
  int closing;
  int own_closed; /* kick_idle and linger_timer closed */
  void (*closed_cb)(void *data);
  void *closed_data;
  int port;
  inv_rpc_server_stats_t stats;
  uint64_t errors[INV_RPC_MAX_ERRNO];
  char readbuf[INV__RPC_READ_BUF];
};

static void session_process(session_t *sess);
static void session_flush(session_t *sess);
static void session_update_reading(session_t *sess);
static void session_close_hard(session_t *sess);
static void session_begin_close(session_t *sess, uint64_t bound_ms);
static void server_check_done(inv_rpc_server_t *s);

/* ---- options ---------------------------------------------------------- */

void inv_rpc_server_opts_from_conf(const inv_server_conf_t *conf,
                                   inv_rpc_server_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  inv_codec_limits_default(&opts->limits);
  opts->limits.max_message_bytes = conf->max_message_bytes;
  opts->max_clients = conf->max_clients > 0 ? (size_t)conf->max_clients : 0;
  opts->idle_timeout_ms = conf->idle_timeout_ms;
  opts->out_limit = INV__RPC_DEFAULT_OUT_LIMIT;
  opts->tls_cert = conf->tls_cert;
  opts->tls_key = conf->tls_key;
  opts->auth_token = conf->auth_token != NULL && conf->auth_token[0] != '\0'
                         ? conf->auth_token
                         : NULL;
  opts->log_ctx = "listener";
  opts->tls_handshakes_max = INV__RPC_HANDSHAKES_MAX;
  opts->tls_handshake_timeout_ms = INV__RPC_HANDSHAKE_MS;
}

/* ---- small helpers ---------------------------------------------------- */

static void buf_swap(inv_buf_t *a, inv_buf_t *b) {
  inv_buf_t t = *a;
  *a = *b;
  *b = t;
}

/* Empties b, releasing its memory when it grew large. */
static void buf_recycle(inv_buf_t *b) {
  if (b->cap > INV__RPC_KEEP_BUF)
    inv_buf_free(b);
  else
    inv_buf_reset(b);
}

static void count_error(inv_rpc_server_t *s, int code) {
  int n = code < 0 ? -code : code;
  if (s != NULL && n > 0 && n < INV_RPC_MAX_ERRNO) s->errors[n]++;
}

/* A msgpack writer that drops everything: notifications' replies are packed
 * into it so handlers need no special case. */
static int discard_write(void *data, const char *p, size_t len) {
  (void)data;
  (void)p;
  (void)len;
  return 0;
}

/* ---- the kick list: deferred dispatch --------------------------------- */

/* Input that waited (global pause, out_limit, too many pending requests) is
 * dispatched from an idle callback rather than from inside the call that
 * lifted the wait, because that call is often the owner's own code (a
 * reply, inv_rpc_server_pause()) that does not expect its handler to run
 * re-entrantly. */
static void kick_idle_cb(uv_idle_t *h) {
  inv_rpc_server_t *s = h->data;
  inv_queue_t *q;
  /* The head is taken afresh on every turn: processing one session may
   * kick or free others. */
  while ((q = inv_queue_pop(&s->kick)) != NULL)
    session_process(INV_QUEUE_DATA(q, session_t, kick_node));
  uv_idle_stop(&s->kick_idle);
}

static void session_kick(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  if (inv_queue_linked(&sess->kick_node) || s == NULL || s->own_closed) return;
  inv_queue_insert_tail(&s->kick, &sess->kick_node);
  uv_idle_start(&s->kick_idle, kick_idle_cb);
}

static void session_unkick(session_t *sess) {
  inv_queue_remove(&sess->kick_node);
}

/* ---- TLS handshakes in flight ------------------------------------------ */

static void hs_add(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  inv_queue_insert_tail(&s->handshakes, &sess->hs_node);
  s->hs_live++;
  s->stats.tls_handshakes++;
  if (s->stats.tls_handshakes > s->hs_peak)
    s->hs_peak = s->stats.tls_handshakes;
}

/* The handshake is over, done or closing: it no longer counts as live. A
 * closing one stays listed until its memory is freed. */
static void hs_end(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  if (!inv_queue_linked(&sess->hs_node) || sess->handshaken ||
      sess->state == SESS_CLOSED)
    return;
  INV_CHECK(s->hs_live > 0);
  s->hs_live--;
}

static void hs_unlist(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  if (!inv_queue_linked(&sess->hs_node)) return;
  inv_queue_remove(&sess->hs_node);
  INV_CHECK(s->stats.tls_handshakes > 0);
  s->stats.tls_handshakes--;
}

/* Gives the heap a burst of handshakes left behind back to the system, once
 * the last of them is freed. */
static void hs_maybe_trim(inv_rpc_server_t *s) {
  if (!inv_queue_empty(&s->handshakes) || s->hs_peak < INV__RPC_TRIM_AFTER)
    return;
  inv_log_debug(s->log_ctx,
                "a burst of %zu TLS handshakes is over; "
                "returning its memory",
                s->hs_peak);
  s->hs_peak = 0;
  malloc_trim(0);
}

/* ---- session lifetime ------------------------------------------------- */

static void session_free(session_t *sess) {
  inv_framer_free(&sess->framer);
  inv_tls_free(sess->tls);
  inv_buf_free(&sess->out);
  inv_buf_free(&sess->wire);
  inv_buf_free(&sess->inflight);
  free(sess);
}

/* A session's state only moves forward: open, draining, shut down, closed
 * (steps may be skipped). */
static void session_set_state(session_t *sess, sess_state_t to) {
  INV_CHECK(to > sess->state);
  sess->state = to;
}

static void session_maybe_free(session_t *sess) {
  if (sess->handles == 0 && sess->pending == 0) session_free(sess);
}

/* Runs for the socket and the timer; the second one detaches the session
 * from the server. */
static void session_close_cb(uv_handle_t *h) {
  session_t *sess = h->data;
  inv_rpc_server_t *s = sess->server;

  INV_CHECK(sess->handles > 0);
  if (--sess->handles > 0) return;
  session_unkick(sess);
  hs_unlist(sess);
  inv_queue_remove(&sess->node);
  if (sess->counted) {
    INV_CHECK(s->stats.clients > 0);
    s->stats.clients--;
  }
  if (sess->rejecting) {
    INV_CHECK(s->nrejecting > 0);
    s->nrejecting--;
  }
  sess->server = NULL;
  session_maybe_free(sess);
  hs_maybe_trim(s);
  server_check_done(s);
}

/* Closes the socket now, dropping unsent output. Safe to call repeatedly. */
static void session_close_hard(session_t *sess) {
  if (sess->state == SESS_CLOSED) return;
  hs_end(sess);
  session_set_state(sess, SESS_CLOSED);
  sess->reading = 0;
  /* Nothing reads or writes through TLS once closed, and its state and
   * buffers are most of a session's memory: they go now rather than when
   * the handles are closed, which for a flood of connections accepted in
   * one loop iteration would be only after all of them. */
  inv_tls_free(sess->tls);
  sess->tls = NULL;
  uv_close((uv_handle_t *)&sess->tcp, session_close_cb);
  uv_close((uv_handle_t *)&sess->timer, session_close_cb);
}

static void session_timer_cb(uv_timer_t *t);

static void session_arm_timer(session_t *sess, uint64_t ms) {
  uv_timer_start(&sess->timer, session_timer_cb, ms, 0);
}

/* Restarts the idle countdown (input arrived, or the last request
 * finished). Until the TLS handshake is done the handshake bound runs
 * instead. */
static void session_touch(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  if (sess->state != SESS_OPEN || s == NULL || !sess->handshaken) return;
  if (s->idle_timeout_ms > 0)
    session_arm_timer(sess, s->idle_timeout_ms);
  else
    uv_timer_stop(&sess->timer);
}

/* Stops dispatching and closes once the output queued so far is written;
 * bound_ms caps the whole goodbye. */
static void session_begin_close(session_t *sess, uint64_t bound_ms) {
  if (sess->state != SESS_OPEN) return;
  if (bound_ms == 0) {
    session_close_hard(sess);
    return;
  }
  session_set_state(sess, SESS_DRAINING);
  session_arm_timer(sess, bound_ms);
  session_flush(sess);
  session_update_reading(sess);
}

static void session_timer_cb(uv_timer_t *t) {
  session_t *sess = t->data;
  inv_rpc_server_t *s = sess->server;

  if (sess->state != SESS_OPEN) {
    inv_log_debug(s->log_ctx, "%s: closing without waiting any longer",
                  sess->peer);
    session_close_hard(sess);
    return;
  }
  if (!sess->handshaken) {
    s->stats.tls_handshake_timeouts++;
    inv_log_debug(s->log_ctx, "%s: TLS handshake not done in time; closing",
                  sess->peer);
    session_close_hard(sess);
    return;
  }
  if (s->idle_timeout_ms == 0) return;
  if (sess->pending > 0) {
    /* Not idle: the client waits for us. Look again later. */
    session_touch(sess);
    return;
  }
  s->stats.idle_closes++;
  inv_log_debug(s->log_ctx, "%s: idle for %llu ms, closing", sess->peer,
                (unsigned long long)s->idle_timeout_ms);
  session_begin_close(sess, INV__RPC_DRAIN_MS);
}

/* ---- output ------------------------------------------------------------ */

static size_t session_unsent(const session_t *sess) {
  return sess->out.len + sess->wire.len + sess->inflight.len;
}

/* Recomputes out_paused with hysteresis: reading stops at out_limit and
 * starts again once half of it is gone. */
static void session_update_out(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  size_t unsent = session_unsent(sess);
  if (s == NULL) return;
  if (!sess->out_paused && unsent >= s->out_limit)
    sess->out_paused = 1;
  else if (sess->out_paused && unsent <= s->out_limit / 2)
    sess->out_paused = 0;
}

static int session_accepts_output(const session_t *sess) {
  return sess->server != NULL &&
         (sess->state == SESS_OPEN || sess->state == SESS_DRAINING);
}

/* Queues one complete frame. Returns 0, or INV_ENOMEM (nothing queued). */
static int session_queue(session_t *sess, const char *p, size_t len) {
  if (!session_accepts_output(sess)) return 0;
  if (inv_buf_append(&sess->out, p, len) != 0) return INV_ENOMEM;
  session_update_out(sess);
  return 0;
}

static void session_write_cb(uv_write_t *w, int status) {
  session_t *sess = w->data;
  inv_rpc_server_t *s = sess->server;

  sess->writing = 0;
  if (status == 0 && s != NULL) s->stats.bytes_out += sess->inflight.len;
  buf_recycle(&sess->inflight);
  if (status < 0) {
    if (status != UV_ECANCELED)
      inv_log_debug(s->log_ctx, "%s: write failed: %s", sess->peer,
                    uv_strerror(status));
    session_close_hard(sess);
    return;
  }
  if (sess->state == SESS_CLOSED) return;
  session_flush(sess);
  session_update_reading(sess);
}

static void session_shutdown_cb(uv_shutdown_t *req, int status) {
  session_t *sess = req->data;
  if (sess->state == SESS_CLOSED) return;
  if (status < 0 || sess->eof) {
    session_close_hard(sess);
    return;
  }
  session_arm_timer(sess, INV__RPC_LINGER_MS);
  session_update_reading(sess);
}

static void session_start_write(session_t *sess) {
  uv_buf_t b;
  int rc;

  buf_swap(&sess->wire, &sess->inflight);
  b = uv_buf_init(sess->inflight.data, (unsigned)sess->inflight.len);
  rc = uv_write(&sess->write_req, (uv_stream_t *)&sess->tcp, &b, 1,
                session_write_cb);
  if (rc != 0) {
    inv_log_debug(sess->server->log_ctx, "%s: write failed: %s", sess->peer,
                  uv_strerror(rc));
    session_close_hard(sess);
    return;
  }
  sess->writing = 1;
}

/* Moves out to wire (through TLS when on) and starts a write when none is
 * in progress. A DRAINING session whose output is all written says
 * close_notify (TLS) and shuts its side down. */
static void session_flush(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  int rc;

  if (s == NULL || sess->state >= SESS_SHUTDOWN) return;
  if (sess->out.len > 0) {
    if (sess->tls != NULL) {
      if (!sess->tls_failed &&
          (rc = inv_tls_write(sess->tls, &sess->out, &sess->wire)) != 0) {
        inv_log_warn(
            s->log_ctx, "%s: TLS write failed: %s", sess->peer,
            rc == INV_ENOMEM ? "out of memory" : inv_tls_errstr(sess->tls));
        session_close_hard(sess);
        return;
      }
    } else if (sess->wire.len == 0) {
      buf_swap(&sess->out, &sess->wire);
    } else {
      if (inv_buf_append(&sess->wire, sess->out.data, sess->out.len) != 0) {
        inv_log_error(s->log_ctx, "%s: out of memory for output", sess->peer);
        session_close_hard(sess);
        return;
      }
      inv_buf_reset(&sess->out);
    }
  }
  if (!sess->writing && sess->wire.len > 0) {
    session_start_write(sess);
    return;
  }
  if (sess->state != SESS_DRAINING || sess->writing) return;
  if (sess->out.len > 0 && !sess->tls_failed) return; /* TLS handshake first */
  if (sess->tls != NULL && !sess->tls_failed) {
    if (inv_tls_shutdown(sess->tls, &sess->wire) == 0 && sess->wire.len > 0) {
      session_start_write(sess);
      return;
    }
  }
  session_set_state(sess, SESS_SHUTDOWN);
  if (uv_shutdown(&sess->shutdown_req, (uv_stream_t *)&sess->tcp,
                  session_shutdown_cb) != 0)
    session_close_hard(sess);
}

/* Packs an error for the session itself rather than for a request into b:
 * an error response when msgid is known, else the notification
 * [2, "error", [{"code": .., "message": ..}]]. Counts it per code. */
static void pack_session_error(inv_rpc_server_t *s, inv_buf_t *b, int has_msgid,
                               uint32_t msgid, int code, const char *message) {
  msgpack_packer pk;

  msgpack_packer_init(&pk, b, inv_buf_msgpack_write);
  if (has_msgid) {
    inv_pack_response_error(&pk, msgid, inv_err_name(code), message);
  } else {
    inv_pack_notify_header(&pk, "error");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    inv_pack_str(&pk, "code");
    inv_pack_str(&pk, inv_err_name(code));
    inv_pack_str(&pk, "message");
    inv_pack_str(&pk, message);
  }
  count_error(s, code);
}

/* Queues an error for the session itself (see pack_session_error()). */
static void session_send_error(session_t *sess, int has_msgid, uint32_t msgid,
                               int code, const char *message) {
  inv_buf_t b = {0};

  pack_session_error(sess->server, &b, has_msgid, msgid, code, message);
  if (b.data != NULL) (void)session_queue(sess, b.data, b.len);
  inv_buf_free(&b);
}

/* The peer sent plaintext to the TLS port. It is told so in plaintext (the
 * one thing it can read), then closed at once rather than left to the
 * handshake bound. The log line is rate-limited: anyone can open such
 * connections, as many as they like. */
static void session_refuse_plaintext(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  uint64_t now = uv_now(s->loop);

  s->stats.tls_plaintext_closes++;
  if (s->plaintext_logged_ms == 0 ||
      now - s->plaintext_logged_ms >= INV__RPC_PLAINTEXT_LOG_MS) {
    if (s->plaintext_unlogged > 0)
      inv_log_warn(s->log_ctx,
                   "%s: %s; closing (and %llu more since the "
                   "last such line)",
                   sess->peer, inv_tls_errstr(sess->tls),
                   (unsigned long long)s->plaintext_unlogged);
    else
      inv_log_warn(s->log_ctx, "%s: %s; closing", sess->peer,
                   inv_tls_errstr(sess->tls));
    s->plaintext_logged_ms = now > 0 ? now : 1;
    s->plaintext_unlogged = 0;
  } else {
    s->plaintext_unlogged++;
  }
  sess->tls_failed = 1;
  inv_buf_reset(&sess->out);
  /* Straight to wire: TLS has nothing to wrap it in. */
  pack_session_error(s, &sess->wire, 0, 0, INV_EPROTO,
                     "this port speaks TLS: connect with TLS");
  session_begin_close(sess, INV__RPC_DRAIN_MS);
}

/* ---- input ------------------------------------------------------------- */

static int session_can_dispatch(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  if (s == NULL || sess->state != SESS_OPEN || sess->rejecting || s->paused)
    return 0;
  session_update_out(sess);
  return !sess->out_paused && sess->pending < INV__RPC_MAX_PENDING;
}

static void session_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  session_t *sess = h->data;
  (void)hint;
  *buf = uv_buf_init(sess->server->readbuf, INV__RPC_READ_BUF);
}

static void session_read_cb(uv_stream_t *stream, ssize_t nread,
                            const uv_buf_t *buf);

/* Reads while the session may dispatch; after the goodbye started it reads
 * and discards until the peer's end of file. Queues deferred dispatch when
 * waiting input may now go on. */
static void session_update_reading(session_t *sess) {
  int want;

  if (sess->server == NULL || sess->state == SESS_CLOSED) return;
  if (sess->eof)
    want = 0;
  else if (sess->state == SESS_OPEN)
    want = session_can_dispatch(sess);
  else
    want = 1;
  if (want && !sess->reading) {
    if (uv_read_start((uv_stream_t *)&sess->tcp, session_alloc_cb,
                      session_read_cb) == 0)
      sess->reading = 1;
  } else if (!want && sess->reading) {
    uv_read_stop((uv_stream_t *)&sess->tcp);
    sess->reading = 0;
  }
  if (sess->blocked && session_can_dispatch(sess)) session_kick(sess);
}

/* Once the peer finished sending and every request is answered, the
 * session says goodbye. */
static void session_check_eof(session_t *sess) {
  inv_rpc_server_t *s = sess->server;
  if (s == NULL || sess->state != SESS_OPEN || !sess->eof || sess->processing ||
      sess->blocked || sess->pending > 0)
    return;
  if (sess->framer.err == 0 && sess->framer.len > sess->framer.pos)
    inv_log_debug(s->log_ctx, "%s: closed in the middle of a frame",
                  sess->peer);
  session_begin_close(sess, INV__RPC_DRAIN_MS);
}

/* Reads the msgid of a request whose frame the framer refused, from the
 * bytes still buffered ([0, msgid, ...] with msgid as a positive fixint or
 * an unsigned integer), so the error can answer that request. Returns 1
 * when found. */
static int framer_peek_msgid(const inv_framer_t *f, uint32_t *msgid) {
  const unsigned char *p;
  size_t n, i;

  if (f->buf == NULL || f->len <= f->pos) return 0;
  p = (const unsigned char *)f->buf + f->pos;
  n = f->len - f->pos;
  if (p[0] == 0x94)
    i = 1;
  else if (p[0] == 0xdc && n >= 3 && p[1] == 0 && p[2] == 4)
    i = 3;
  else if (p[0] == 0xdd && n >= 5 && p[1] == 0 && p[2] == 0 && p[3] == 0 &&
           p[4] == 4)
    i = 5;
  else
    return 0;
  if (i >= n || p[i] != 0x00) return 0;
  i++;
  if (i >= n) return 0;
  if (p[i] <= 0x7f) {
    *msgid = p[i];
  } else if (p[i] == 0xcc && i + 1 < n) {
    *msgid = p[i + 1];
  } else if (p[i] == 0xcd && i + 2 < n) {
    *msgid = (uint32_t)p[i + 1] << 8 | p[i + 2];
  } else if (p[i] == 0xce && i + 4 < n) {
    *msgid = (uint32_t)p[i + 1] << 24 | (uint32_t)p[i + 2] << 16 |
             (uint32_t)p[i + 3] << 8 | p[i + 4];
  } else {
    return 0;
  }
  return 1;
}

/* The stream cannot be parsed any further: answer, flush and close. */
static void session_framing_error(session_t *sess, int code) {
  inv_rpc_server_t *s = sess->server;
  uint32_t msgid = 0;
  int has_msgid = framer_peek_msgid(&sess->framer, &msgid);
  const char *reason =
      sess->framer.errstr[0] ? sess->framer.errstr : inv_strerror(code);

  s->stats.protocol_closes++;
  inv_log_warn(s->log_ctx, "%s: %s: %s; closing", sess->peer,
               inv_err_name(code), reason);
  session_send_error(sess, has_msgid, msgid, code, reason);
  session_begin_close(sess, INV__RPC_DRAIN_MS);
}

static inv_rpc_req_t *req_new(session_t *sess, const inv_msg_t *msg) {
  inv_rpc_req_t *req = calloc(1, sizeof(*req));
  if (req == NULL) return NULL;
  req->sess = sess;
  req->notify = msg->type == INV_MSG_NOTIFY;
  req->msgid = req->notify ? 0 : msg->msgid;
  sess->pending++;
  return req;
}

/* Finds hello's token. Returns 1 with *p and *len set, 0 when hello has
 * no token, -1 when its token is not a string. */
static int hello_token(const inv_msg_t *msg, const char **p, size_t *len) {
  const msgpack_object *tok;

  if (msg->params.type != MSGPACK_OBJECT_ARRAY ||
      msg->params.via.array.size < 1)
    return 0;
  tok = inv_map_get(&msg->params.via.array.ptr[0], "token");
  if (tok == NULL || tok->type == MSGPACK_OBJECT_NIL) return 0;
  if (tok->type == MSGPACK_OBJECT_STR) {
    *p = tok->via.str.ptr;
    *len = tok->via.str.size;
  } else if (tok->type == MSGPACK_OBJECT_BIN) {
    *p = tok->via.bin.ptr;
    *len = tok->via.bin.size;
  } else {
    return -1;
  }
  return 1;
}

/* Checks hello's token in constant time. */
static int hello_token_ok(const inv_rpc_server_t *s, const inv_msg_t *msg) {
  const char *p = NULL;
  size_t len = 0;
  if (hello_token(msg, &p, &len) != 1) return 0;
  return len == s->auth_len && CRYPTO_memcmp(p, s->auth_token, len) == 0;
}

/* Asks the owner's auth_cb who hello authenticates; 1 with principal set,
 * 0 with why set. */
static int hello_auth_cb(session_t *sess, const inv_msg_t *msg, char *principal,
                         char *why) {
  inv_rpc_server_t *s = sess->server;
  char ids[INV__RPC_MAX_CERT_IDS][INV_TLS_ID_MAX];
  const char *idv[INV__RPC_MAX_CERT_IDS];
  const char *tok = NULL;
  size_t toklen = 0, nids = 0;
  char out[INV_RPC_PRINCIPAL_MAX] = "";

  int has = hello_token(msg, &tok, &toklen);
  if (has < 0) {
    snprintf(why, INV_RPC_PRINCIPAL_MAX, "token must be a string");
    return 0;
  }
  if (sess->tls != NULL)
    nids = inv_tls_peer_ids(sess->tls, ids, INV__RPC_MAX_CERT_IDS);
  for (size_t i = 0; i < nids; i++) idv[i] = ids[i];
  if (s->auth_cb(s->auth_data, has ? tok : NULL, toklen, idv, nids, out,
                 sizeof(out)) != 0) {
    snprintf(why, INV_RPC_PRINCIPAL_MAX, "%s", out[0] ? out : "refused");
    return 0;
  }
  snprintf(principal, INV_RPC_PRINCIPAL_MAX, "%s", out);
  return 1;
}

/* Decodes one frame and dispatches it. */
static void session_dispatch(session_t *sess, const char *frame, size_t len) {
  inv_rpc_server_t *s = sess->server;
  inv_rpc_req_t *req;
  inv_msg_t msg;
  char errstr[128] = "";

  if (inv_msg_decode(frame, len, &msg, errstr) != 0) {
    inv_log_debug(s->log_ctx, "%s: EPROTO: %s", sess->peer, errstr);
    session_send_error(sess, msg.has_msgid, msg.msgid, INV_EPROTO, errstr);
    inv_msg_destroy(&msg);
    return;
  }
  if (msg.type == INV_MSG_RESPONSE) {
    session_send_error(sess, 0, 0, INV_EPROTO,
                       "unexpected response: the server sends no requests");
    inv_msg_destroy(&msg);
    return;
  }
  s->stats.requests++;
  req = req_new(sess, &msg);
  if (req == NULL) {
    inv_log_error(s->log_ctx, "%s: out of memory for a request; closing",
                  sess->peer);
    inv_msg_destroy(&msg);
    session_close_hard(sess);
    return;
  }
  if (s->auth_token != NULL || s->auth_cb != NULL) {
    if (inv_rpc_method_is(&msg, "hello")) {
      /* The session is authenticated only once the handler accepted the
       * whole hello (see req_finish()), so a hello that fails for any
       * reason leaves the session as it was. */
      char why[INV_RPC_PRINCIPAL_MAX] = "wrong token";
      req->authenticates = s->auth_cb != NULL
                               ? hello_auth_cb(sess, &msg, req->principal, why)
                               : hello_token_ok(s, &msg);
      if (!req->authenticates) {
        inv_log_info(s->log_ctx, "%s: hello refused: %s", sess->peer, why);
        inv_rpc_reply_error(req, INV_EAUTH, "%s", why);
        inv_msg_destroy(&msg);
        return;
      }
    } else if (!sess->authed && !inv_rpc_method_is(&msg, "ping")) {
      inv_rpc_reply_error(req, INV_EAUTH,
                          "authentication required: send hello with the token");
      inv_msg_destroy(&msg);
      return;
    }
  }
  s->handler(req, &msg, s->data);
  inv_msg_destroy(&msg);
}

/* Dispatches every complete frame while the session may, then flushes the
 * replies that finished meanwhile in one write. */
static void session_process(session_t *sess) {
  const char *frame;
  size_t len;
  int rc;

  if (sess->processing || sess->server == NULL) return;
  sess->processing = 1;
  for (;;) {
    if (!session_can_dispatch(sess)) {
      sess->blocked = sess->state == SESS_OPEN;
      break;
    }
    rc = inv_framer_next(&sess->framer, &frame, &len);
    if (rc == 0) {
      sess->blocked = 0;
      break;
    }
    if (rc < 0) {
      sess->blocked = 0;
      session_framing_error(sess, rc);
      break;
    }
    session_dispatch(sess, frame, len);
  }
  sess->processing = 0;
  session_flush(sess);
  session_update_reading(sess);
  session_check_eof(sess);
}

static int session_plain_cb(void *data, const char *p, size_t len) {
  session_t *sess = data;
  if (sess->state != SESS_OPEN) return 0; /* the goodbye discards input */
  return inv_framer_feed(&sess->framer, p, len) == INV_ENOMEM ? INV_ENOMEM : 0;
}

static void session_on_eof(session_t *sess) {
  sess->eof = 1;
  sess->reading = 0; /* libuv stops reading at end of file */
  if (sess->state == SESS_OPEN)
    session_process(sess);
  else if (sess->state == SESS_SHUTDOWN)
    session_close_hard(sess);
}

static void session_read_cb(uv_stream_t *stream, ssize_t nread,
                            const uv_buf_t *buf) {
  session_t *sess = stream->data;
  inv_rpc_server_t *s = sess->server;
  int rc;

  if (nread == 0 || sess->state == SESS_CLOSED) return;
  if (nread < 0) {
    if (nread == UV_EOF) {
      session_on_eof(sess);
    } else {
      inv_log_debug(s->log_ctx, "%s: read failed: %s", sess->peer,
                    uv_strerror((int)nread));
      session_close_hard(sess);
    }
    return;
  }
  s->stats.bytes_in += (uint64_t)nread;
  if (sess->state == SESS_SHUTDOWN ||
      (sess->state == SESS_DRAINING && sess->tls == NULL))
    return;
  session_touch(sess);
  if (sess->tls != NULL) {
    if (sess->tls_failed) return;
    rc = inv_tls_read(sess->tls, buf->base, (size_t)nread, session_plain_cb,
                      sess, &sess->wire);
    if (rc == INV_ECLOSED) {
      session_on_eof(sess);
      return;
    }
    if (rc == INV_EPROTO && inv_tls_plaintext(sess->tls) &&
        sess->state == SESS_OPEN) {
      session_refuse_plaintext(sess);
      return;
    }
    if (rc != 0) {
      sess->tls_failed = 1;
      inv_log_warn(
          s->log_ctx, "%s: TLS: %s; closing", sess->peer,
          rc == INV_ENOMEM ? "out of memory" : inv_tls_errstr(sess->tls));
      inv_buf_reset(&sess->out);
      /* Send OpenSSL's alert, if any, then close. */
      if (sess->state == SESS_OPEN)
        session_begin_close(sess, INV__RPC_DRAIN_MS);
      else
        session_flush(sess);
      return;
    }
    if (sess->state != SESS_OPEN) {
      session_flush(sess); /* handshake records, then the goodbye */
      return;
    }
    if (!sess->handshaken && inv_tls_handshake_done(sess->tls)) {
      hs_end(sess);
      hs_unlist(sess);
      sess->handshaken = 1;
      session_touch(sess);
    }
  } else {
    rc = inv_framer_feed(&sess->framer, buf->base, (size_t)nread);
    if (rc == INV_ENOMEM) {
      inv_log_error(s->log_ctx, "%s: out of memory for input; closing",
                    sess->peer);
      session_close_hard(sess);
      return;
    }
  }
  session_process(sess);
}

/* ---- accepting ---------------------------------------------------------- */

/* Makes room for one more TLS handshake: at the limit, the oldest one still
 * in flight is closed. A stalled handshake is old by nature, while a real
 * client's takes a round trip or two, so a flood of stalled ones pushes
 * out its own and a new client still gets through. */
static void server_shed_handshake(inv_rpc_server_t *s) {
  session_t *old = NULL;
  inv_queue_t *q;
  uint64_t now;

  if (s->hs_live < s->handshakes_max) return;
  for (q = inv_queue_head(&s->handshakes); q != NULL;
       q = inv_queue_next(&s->handshakes, q)) {
    old = INV_QUEUE_DATA(q, session_t, hs_node);
    if (old->state != SESS_CLOSED) break;
  }
  if (q == NULL) return;
  s->stats.tls_handshakes_shed++;
  now = uv_now(s->loop);
  if (s->shed_logged_ms == 0 ||
      now - s->shed_logged_ms >= INV__RPC_PLAINTEXT_LOG_MS) {
    inv_log_warn(s->log_ctx,
                 "%zu TLS handshakes in flight (tls-handshakes-max)"
                 "; closing the oldest, %s (and %llu more since the last such "
                 "line)",
                 s->hs_live, old->peer, (unsigned long long)s->shed_unlogged);
    s->shed_logged_ms = now > 0 ? now : 1;
    s->shed_unlogged = 0;
  } else {
    s->shed_unlogged++;
  }
  session_close_hard(old);
}

static void server_conn_cb(uv_stream_t *listener, int status) {
  inv_rpc_server_t *s = listener->data;
  struct sockaddr_storage peer;
  int peerlen = sizeof(peer);
  session_t *sess;

  if (status < 0) {
    inv_log_warn(s->log_ctx, "accept failed: %s", uv_strerror(status));
    return;
  }
  sess = calloc(1, sizeof(*sess));
  if (sess == NULL) {
    inv_log_error(s->log_ctx, "out of memory for a new client");
    return;
  }
  uv_tcp_init(s->loop, &sess->tcp);
  uv_timer_init(s->loop, &sess->timer);
  sess->tcp.data = sess;
  sess->timer.data = sess;
  sess->write_req.data = sess;
  sess->shutdown_req.data = sess;
  sess->handles = 2;
  sess->server = s;
  inv_framer_init(&sess->framer, &s->limits);
  snprintf(sess->peer, sizeof(sess->peer), "?");
  inv_queue_insert_tail(&s->sessions, &sess->node);

  if (uv_accept(listener, (uv_stream_t *)&sess->tcp) != 0) {
    session_close_hard(sess);
    return;
  }
  uv_tcp_nodelay(&sess->tcp, 1);
  if (uv_tcp_getpeername(&sess->tcp, (struct sockaddr *)&peer, &peerlen) == 0)
    inv__sockaddr_format((struct sockaddr *)&peer, sess->peer,
                         sizeof(sess->peer));
  s->stats.connections++;
  if (s->tls_ctx != NULL && inv_tls_new(s->tls_ctx, &sess->tls) != 0) {
    inv_log_error(s->log_ctx, "%s: out of memory for TLS", sess->peer);
    session_close_hard(sess);
    return;
  }
  if (s->closing) {
    session_close_hard(sess);
    return;
  }
  if (s->max_clients > 0 && s->stats.clients >= s->max_clients) {
    s->stats.rejected_clients++;
    if (s->nrejecting >= INV__RPC_MAX_REJECTING) {
      count_error(s, INV_EBUSY);
      session_close_hard(sess);
      return;
    }
    sess->rejecting = 1;
    s->nrejecting++;
    inv_log_debug(s->log_ctx, "%s: over max-clients %zu; refusing", sess->peer,
                  s->max_clients);
    session_send_error(sess, 0, 0, INV_EBUSY, "too many clients; retry later");
    session_begin_close(sess, INV__RPC_REJECT_MS);
    return;
  }
  sess->counted = 1;
  s->stats.clients++;
  inv_log_debug(s->log_ctx, "%s: connected", sess->peer);
  sess->handshaken = sess->tls == NULL;
  if (sess->handshaken) {
    session_touch(sess);
  } else {
    server_shed_handshake(s);
    hs_add(sess);
    session_arm_timer(
        sess, s->idle_timeout_ms > 0 && s->idle_timeout_ms < s->handshake_ms
                  ? s->idle_timeout_ms
                  : s->handshake_ms);
  }
  session_update_reading(sess);
}

/* ---- the server --------------------------------------------------------- */

static void server_free(inv_rpc_server_t *s) {
  inv_tls_ctx_free(s->tls_ctx);
  free(s->auth_token);
  free(s->log_ctx);
  free(s);
}

static void server_handle_close_cb(uv_handle_t *h) {
  inv_rpc_server_t *s = h->data;
  INV_CHECK(s->handles > 0);
  s->handles--;
  server_check_done(s);
}

/* Once closing and every session is gone, closes the server's own handles;
 * once those are closed too, frees s and reports. */
static void server_check_done(inv_rpc_server_t *s) {
  void (*cb)(void *);
  void *data;

  if (!s->closing || !inv_queue_empty(&s->sessions)) return;
  if (!s->own_closed) {
    s->own_closed = 1;
    uv_close((uv_handle_t *)&s->kick_idle, server_handle_close_cb);
    uv_close((uv_handle_t *)&s->linger_timer, server_handle_close_cb);
    return;
  }
  if (s->handles > 0) return;
  cb = s->closed_cb;
  data = s->closed_data;
  server_free(s);
  if (cb != NULL) cb(data);
}

/* A server context: certificate and key, and the client CA when set. */
static int server_tls_ctx(const char *cert, const char *key, const char *ca,
                          inv_tls_ctx_t **out, char *err, size_t errlen) {
  int rc = inv_tls_ctx_new(cert, key, out, err, errlen);
  if (rc != 0 || ca == NULL || ca[0] == '\0') return rc;
  if ((rc = inv_tls_ctx_set_client_ca(*out, ca, err, errlen)) != 0) {
    inv_tls_ctx_free(*out);
    *out = NULL;
  }
  return rc;
}

static char *dup_or_null(const char *p) { return p != NULL ? strdup(p) : NULL; }

int inv_rpc_server_start(uv_loop_t *loop, const inv_addr_t *addr,
                         const inv_rpc_server_opts_t *opts,
                         inv_rpc_handler_cb handler, void *data,
                         inv_rpc_server_t **out, char *err, size_t errlen) {
  inv_rpc_server_t *s = NULL;
  uv_os_sock_t fd = -1;
  inv_codec_limits_t def;
  char where[300];
  int rc, tls_cert_set, tls_key_set;

  *out = NULL;
  rc = INV_ENOMEM;
  s = calloc(1, sizeof(*s));
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    goto err;
  }
  inv_queue_init(&s->sessions);
  inv_queue_init(&s->kick);
  inv_queue_init(&s->handshakes);
  s->loop = loop;
  s->handler = handler;
  s->data = data;
  inv_codec_limits_default(&def);
  s->limits = opts->limits;
  if (s->limits.max_message_bytes == 0)
    s->limits.max_message_bytes = def.max_message_bytes;
  if (s->limits.max_depth == 0) s->limits.max_depth = def.max_depth;
  if (s->limits.max_items == 0) s->limits.max_items = def.max_items;
  s->max_clients = opts->max_clients;
  s->idle_timeout_ms = opts->idle_timeout_ms;
  s->out_limit =
      opts->out_limit > 0 ? opts->out_limit : INV__RPC_DEFAULT_OUT_LIMIT;
  s->auth_cb = opts->auth_cb;
  s->auth_data = opts->auth_data;
  s->handshakes_max = opts->tls_handshakes_max > 0 ? opts->tls_handshakes_max
                                                   : INV__RPC_HANDSHAKES_MAX;
  s->handshake_ms = opts->tls_handshake_timeout_ms > 0
                        ? opts->tls_handshake_timeout_ms
                        : INV__RPC_HANDSHAKE_MS;
  s->log_ctx = strdup(opts->log_ctx != NULL ? opts->log_ctx : "listener");
  if (s->log_ctx == NULL) {
    snprintf(err, errlen, "out of memory");
    goto err;
  }
  if (opts->auth_token != NULL && opts->auth_token[0] != '\0') {
    s->auth_token = dup_or_null(opts->auth_token);
    if (s->auth_token == NULL) {
      snprintf(err, errlen, "out of memory");
      goto err;
    }
    s->auth_len = strlen(s->auth_token);
  }

  tls_cert_set = opts->tls_cert != NULL && opts->tls_cert[0] != '\0';
  tls_key_set = opts->tls_key != NULL && opts->tls_key[0] != '\0';
  if (tls_cert_set != tls_key_set) {
    snprintf(err, errlen, "%s is set without %s; TLS needs both",
             tls_cert_set ? "tls-cert" : "tls-key",
             tls_cert_set ? "tls-key" : "tls-cert");
    rc = INV_ECONFIG;
    goto err;
  }
  if (tls_cert_set &&
      (rc = server_tls_ctx(opts->tls_cert, opts->tls_key, opts->tls_client_ca,
                           &s->tls_ctx, err, errlen)) != 0)
    goto err;
  if (!tls_cert_set && opts->tls_client_ca != NULL &&
      opts->tls_client_ca[0] != '\0') {
    snprintf(err, errlen, "tls-client-ca is set without tls-cert and tls-key");
    rc = INV_ECONFIG;
    goto err;
  }

  if ((rc = inv__listen_open(addr, &fd, &s->port, err, errlen)) != 0) goto err;

  /* No step below fails for a socket that is already listening, so from
   * here on there is nothing to undo asynchronously. */
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  uv_tcp_open(&s->listener, fd);
  uv_listen((uv_stream_t *)&s->listener, INV__LISTEN_BACKLOG, server_conn_cb);
  uv_idle_init(loop, &s->kick_idle);
  s->kick_idle.data = s;
  uv_timer_init(loop, &s->linger_timer);
  s->linger_timer.data = s;
  s->handles = 3;
  s->listening = 1;

  inv_addr_format(addr, where, sizeof(where));
  inv_log_info(s->log_ctx, "listening on %s (port %d%s%s%s)", where, s->port,
               s->tls_ctx != NULL ? ", TLS" : "",
               opts->tls_client_ca != NULL && opts->tls_client_ca[0] != '\0'
                   ? ", client certificates"
                   : "",
               s->auth_token != NULL || s->auth_cb != NULL ? ", auth" : "");
  *out = s;
  return 0;

err:
  if (s != NULL) server_free(s);
  return rc;
}

int inv_rpc_server_port(const inv_rpc_server_t *s) { return s->port; }

void inv_rpc_server_pause(inv_rpc_server_t *s, int paused) {
  inv_queue_t *q, *n;
  paused = paused != 0;
  if (s->paused == paused) return;
  s->paused = paused;
  INV_QUEUE_FOREACH(q, n, &s->sessions)
  session_update_reading(INV_QUEUE_DATA(q, session_t, node));
}

const inv_rpc_server_stats_t *inv_rpc_server_stats(const inv_rpc_server_t *s) {
  return &s->stats;
}

uint64_t inv_rpc_server_errors(const inv_rpc_server_t *s, int code) {
  int n = code < 0 ? -code : code;
  return n > 0 && n < INV_RPC_MAX_ERRNO ? s->errors[n] : 0;
}

void inv_rpc_server_stop_accepting(inv_rpc_server_t *s) {
  if (s == NULL || !s->listening) return;
  s->listening = 0;
  uv_close((uv_handle_t *)&s->listener, server_handle_close_cb);
}

static void server_linger_cb(uv_timer_t *t) {
  inv_rpc_server_t *s = t->data;
  inv_queue_t *q, *n;
  INV_QUEUE_FOREACH(q, n, &s->sessions)
  session_close_hard(INV_QUEUE_DATA(q, session_t, node));
}

void inv_rpc_server_close(inv_rpc_server_t *s, uint64_t linger_ms,
                          void (*closed_cb)(void *data), void *data) {
  inv_queue_t *q, *n;

  if (s == NULL || s->closing) return;
  s->closing = 1;
  s->closed_cb = closed_cb;
  s->closed_data = data;
  inv_rpc_server_stop_accepting(s);
  INV_QUEUE_FOREACH(q, n, &s->sessions) {
    session_t *sess = INV_QUEUE_DATA(q, session_t, node);
    if (sess->state == SESS_OPEN) session_begin_close(sess, linger_ms);
  }
  if (linger_ms > 0 && !inv_queue_empty(&s->sessions))
    uv_timer_start(&s->linger_timer, server_linger_cb, linger_ms, 0);
  server_check_done(s);
}

int inv_rpc_server_reload_tls(inv_rpc_server_t *s, const char *cert,
                              const char *key, const char *client_ca,
                              char *what, size_t whatlen, char *err,
                              size_t errlen) {
  inv_tls_ctx_t *ctx = NULL;
  char before[200], after[200];
  int rc;

  if (s->tls_ctx == NULL) {
    snprintf(err, errlen,
             "TLS was off at start; turning it on needs a "
             "restart");
    return INV_ECONFIG;
  }
  if ((rc = server_tls_ctx(cert, key, client_ca, &ctx, err, errlen)) != 0)
    return rc;
  inv_tls_ctx_describe(s->tls_ctx, before, sizeof(before));
  inv_tls_ctx_describe(ctx, after, sizeof(after));
  if (strcmp(before, after) == 0)
    snprintf(what, whatlen, "certificate unchanged (%s)", after);
  else
    snprintf(what, whatlen, "certificate %s -> %s", before, after);
  /* Open sessions hold their own reference to the old context. */
  inv_tls_ctx_free(s->tls_ctx);
  s->tls_ctx = ctx;
  return 0;
}

size_t inv_rpc_server_revoke(inv_rpc_server_t *s,
                             int (*keep)(void *data, const char *principal),
                             void *data) {
  size_t n = 0;
  inv_queue_t *q;
  for (q = inv_queue_head(&s->sessions); q != NULL;
       q = inv_queue_next(&s->sessions, q)) {
    session_t *sess = INV_QUEUE_DATA(q, session_t, node);
    if (!sess->authed || keep(data, sess->principal)) continue;
    inv_log_info(s->log_ctx,
                 "%s: %s is no longer known; the session must "
                 "send hello again",
                 sess->peer, sess->principal);
    sess->authed = 0;
    sess->principal[0] = '\0';
    n++;
  }
  return n;
}

/* ---- requests ----------------------------------------------------------- */

int inv_rpc_req_is_notify(const inv_rpc_req_t *req) { return req->notify; }

const char *inv_rpc_req_peer(const inv_rpc_req_t *req) {
  return req->sess->peer;
}

const char *inv_rpc_req_principal(const inv_rpc_req_t *req) {
  return req->sess->principal;
}

msgpack_packer *inv_rpc_reply_begin(inv_rpc_req_t *req) {
  if (req->notify) {
    msgpack_packer_init(&req->pk, NULL, discard_write);
  } else {
    inv_buf_reset(&req->buf);
    msgpack_packer_init(&req->pk, &req->buf, inv_buf_msgpack_write);
    inv_pack_response_header(&req->pk, req->msgid);
  }
  return &req->pk;
}

/* Queues req's packed reply (unless it is a notification's or the session
 * is gone), frees req and lets the session go on. ok is 1 for a success
 * reply: only that lets a hello authenticate the session. */
static void req_finish(inv_rpc_req_t *req, int ok) {
  session_t *sess = req->sess;

  if (ok && req->authenticates) {
    sess->authed = 1;
    memcpy(sess->principal, req->principal, sizeof(sess->principal));
  }

  if (!req->notify && req->buf.len > 0 &&
      session_queue(sess, req->buf.data, req->buf.len) != 0) {
    inv_log_error(sess->server->log_ctx, "%s: out of memory for a reply",
                  sess->peer);
    session_close_hard(sess);
  }
  inv_buf_free(&req->buf);
  free(req);
  INV_CHECK(sess->pending > 0);
  sess->pending--;
  if (sess->server == NULL) {
    session_maybe_free(sess);
    return;
  }
  /* Inside session_process() the flush happens once, after the batch. */
  if (!sess->processing) session_flush(sess);
  if (sess->pending == 0) session_touch(sess);
  session_update_reading(sess);
  session_check_eof(sess);
}

void inv_rpc_reply_end(inv_rpc_req_t *req) { req_finish(req, 1); }

void inv_rpc_reply_error(inv_rpc_req_t *req, int code, const char *fmt, ...) {
  char message[512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(message, sizeof(message), fmt, ap);
  va_end(ap);
  if (!inv_err_is_wire(code)) code = INV_EUNAVAIL;
  /* Notifications' errors are never sent, but they are rejections all the
   * same, so they are counted with the rest. */
  count_error(req->sess->server, code);
  if (!req->notify) {
    inv_buf_reset(&req->buf);
    msgpack_packer_init(&req->pk, &req->buf, inv_buf_msgpack_write);
    inv_pack_response_error(&req->pk, req->msgid, inv_err_name(code), message);
  }
  req_finish(req, 0);
}

/* ---- method dispatch and hello, shared by the daemons ------------------ */

int inv_rpc_method_is(const inv_msg_t *msg, const char *name) {
  size_t n = strlen(name);
  return msg->method_len == n && memcmp(msg->method, name, n) == 0;
}

void inv_rpc_dispatch(inv_rpc_req_t *req, const inv_msg_t *msg,
                      const inv_rpc_method_t *table, void *data) {
  for (const inv_rpc_method_t *m = table; m->name != NULL; m++)
    if (inv_rpc_method_is(msg, m->name)) {
      m->cb(req, msg, data);
      return;
    }
  inv_rpc_reply_error(req, INV_ENOMETHOD, "no method \"%.*s\"",
                      (int)(msg->method_len > 64 ? 64 : msg->method_len),
                      msg->method);
}

/* Checks hello's params; returns 0, or answers EINVAL and returns -1. */
static int hello_check(inv_rpc_req_t *req, const inv_msg_t *msg) {
  const msgpack_object *params = &msg->params;
  if (params->via.array.size != 1 ||
      params->via.array.ptr[0].type != MSGPACK_OBJECT_MAP) {
    inv_rpc_reply_error(req, INV_EINVAL,
                        "hello expects [{\"proto\": 1, \"client\": str}]");
    return -1;
  }
  const msgpack_object *arg = &params->via.array.ptr[0];
  const msgpack_object *proto = inv_map_get(arg, "proto");
  if (proto == NULL || proto->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
      proto->via.u64 != INV_PROTO_VERSION) {
    inv_rpc_reply_error(req, INV_EINVAL,
                        "unsupported protocol version (this server speaks %d)",
                        INV_PROTO_VERSION);
    return -1;
  }
  const msgpack_object *client = inv_map_get(arg, "client");
  if (client != NULL && client->type != MSGPACK_OBJECT_STR &&
      client->type != MSGPACK_OBJECT_BIN) {
    inv_rpc_reply_error(req, INV_EINVAL, "hello: client must be a string");
    return -1;
  }
  return 0;
}

msgpack_packer *inv_rpc_hello_begin(inv_rpc_req_t *req, const inv_msg_t *msg,
                                    const inv_rpc_hello_t *hello,
                                    size_t extra) {
  if (hello->check_params && hello_check(req, msg) < 0) return NULL;
  msgpack_packer *pk = inv_rpc_reply_begin(req);
  msgpack_pack_map(pk, 4 + extra);
  inv_pack_str(pk, "server");
  inv_pack_str(pk, hello->server);
  inv_pack_str(pk, "version");
  inv_pack_str(pk, INV_VERSION);
  inv_pack_str(pk, "proto");
  msgpack_pack_int(pk, INV_PROTO_VERSION);
  inv_pack_str(pk, "max_message_bytes");
  msgpack_pack_uint64(pk, hello->max_message_bytes);
  return pk;
}
