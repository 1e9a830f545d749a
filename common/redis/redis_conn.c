/*
 * One Redis connection on libuv (see redis_conn.h for the contract).
 *
 * Life of a connection: the conn_timer starts an attempt (first at once,
 * later after a jittered backoff); the host is resolved (numeric addresses
 * skip the resolver), a transport connects (TCP, or TLS with its handshake
 * done), AUTH is sent when a password is set (AUTH user password for an
 * ACL user), and only then is INV_REDIS_CONNECTED announced. Any failure drops
 * the transport, fails the pending commands and arms the conn_timer again.
 *
 * Commands are formatted at once into the output buffer and their callbacks
 * pushed on a bounded ring; an idle handle flushes the buffer in one write
 * on the next loop pass, so everything issued in one pass shares a write.
 * Replies pop the ring in order. The cmd_timer watches only the oldest
 * command: every command has the same timeout, so the oldest is always the
 * first to expire.
 *
 * Memory is released only from libuv callbacks (close callbacks or the
 * resolver's callback), never from inside a function a user callback can
 * call, so inv_redis_close() is safe anywhere.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "inval/errors.h"
#include "common/base/log.h"
#include "common/redis/redis_conn.h"
#include "common/redis/redis_transport.h"
#include "common/tls/tls.h"

#define LOG_CTX "redis"

/* The ring starts small and doubles up to max_pending. */
#define RING_MIN 64

typedef enum {
  ST_IDLE = 0,   /* no transport; the conn_timer will start an attempt */
  ST_RESOLVING,  /* waiting for the resolver */
  ST_CONNECTING, /* transport connecting */
  ST_AUTH,       /* connected, AUTH sent, not announced yet */
  ST_CONNECTED,  /* announced; commands accepted */
  ST_CLOSED      /* inv_redis_close() was called */
} conn_state_t;

/* What a pending command is, for subscribe-mode bookkeeping. */
typedef enum {
  K_PLAIN = 0,
  K_SUBSCRIBE,
  K_PSUBSCRIBE,
  K_SSUBSCRIBE,
  K_UNSUBSCRIBE,
  K_PUNSUBSCRIBE,
  K_SUNSUBSCRIBE
} cmd_kind_t;

typedef struct pending_s {
  inv_redis_reply_cb cb;
  void *data;
  uint64_t deadline;      /* loop time in ms; 0 when timeouts are disabled */
  int replies;            /* replies still expected; -1: unsubscribe-all */
  unsigned char kind;     /* cmd_kind_t */
  unsigned char internal; /* sent by this layer (AUTH): not in user stats */
} pending_t;

typedef struct resolve_s {
  uv_getaddrinfo_t req;
  inv_redis_t *r;
} resolve_t;

struct inv_redis_s {
  uv_loop_t *loop;
  char *host;
  int port;
  /* "host:port" or "host:port (name)": how log lines name the connection,
   * so that a process's several connections to one node tell apart. */
  char who[320];
  char *password;
  char *username;
  inv_redis_opts_t opts; /* opts.password, username and tls are ours */
  inv_redis_event_cb event_cb;
  inv_redis_push_cb push_cb;
  void *data;

  conn_state_t state;
  inv_transport_t *tr; /* current transport, NULL when none */
  resolve_t *resolve;  /* current resolution, NULL when none */
  redisReader *reader; /* one per transport */
  int in_read;         /* a read callback is iterating replies */

  inv_buf_t out;     /* formatted commands not yet written */
  uint64_t out_cmds; /* commands in out */

  pending_t *ring;
  size_t ring_cap, ring_head, ring_count;

  uv_timer_t conn_timer; /* connect timeout, or the wait before an attempt */
  uv_timer_t cmd_timer;  /* the oldest pending command's deadline */
  uv_idle_t flush_idle;  /* flushes out on the next loop pass */
  int open;              /* handles, transports and resolutions not released */

  unsigned backoff_n; /* failed attempts since the last success */
  int ever_connected;
  int announced;       /* CONNECTED was announced for this transport */
  int fail_logged;     /* a failed attempt was logged at warn level */
  char last_fail[160]; /* the reason logged last in this failing streak */

  /* Subscribe mode: counts of subscriptions, kept from confirmations. */
  int subscribed;
  long sub_total; /* channels + patterns, as Redis last reported */
  long sub_shard; /* shard channels, as Redis last reported */
  long n_channels, n_patterns, n_shard;

  uint64_t rng;
  inv_redis_stats_t stats;
  inv_redis_closed_cb closed_cb;
  void *closed_data;
};

static void conn_timer_cb(uv_timer_t *h);
/* 1 when a failure for reason should be logged at warn or error level:
 * the first of a failing streak, or one whose reason differs from the one
 * logged last (a streak that began with a dropped connection and goes on
 * with certificate errors must show those). Repeats go to debug level, since
 * a wrong password or certificate retries forever. */
static int fail_worth_logging(inv_redis_t *r, const char *reason) {
  if (r->fail_logged &&
      strncmp(r->last_fail, reason, sizeof(r->last_fail) - 1) == 0)
    return 0;
  snprintf(r->last_fail, sizeof(r->last_fail), "%s", reason);
  return 1;
}

static void drop(inv_redis_t *r, const char *why);

/* ---- small helpers ---------------------------------------------------- */

void inv_redis_opts_default(inv_redis_opts_t *o) {
  o->connect_timeout_ms = 2000;
  o->command_timeout_ms = 5000;
  o->backoff_min_ms = 50;
  o->backoff_max_ms = 2000;
  o->max_pending = 100000;
  o->password = NULL;
  o->username = NULL;
  o->tls = NULL;
  o->name = NULL;
}

static uint64_t next_rand(inv_redis_t *r) {
  /* xorshift64: jitter only needs to spread reconnects, not be secure. */
  uint64_t x = r->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  r->rng = x;
  return x;
}

/* Returns the next backoff delay: min * 2^n capped at max, then a random
 * point in its upper half, so that many clients do not reconnect in step. */
static uint64_t backoff_delay(inv_redis_t *r) {
  uint64_t d = r->opts.backoff_min_ms;
  unsigned i;
  for (i = 0; i < r->backoff_n && d < r->opts.backoff_max_ms; i++) d *= 2;
  if (d > r->opts.backoff_max_ms) d = r->opts.backoff_max_ms;
  if (r->backoff_n < 64) r->backoff_n++;
  return d / 2 + next_rand(r) % (d - d / 2 + 1);
}

static void maybe_free(inv_redis_t *r) {
  inv_redis_closed_cb cb;
  void *data;
  if (r->state != ST_CLOSED || r->open > 0) return;
  cb = r->closed_cb;
  data = r->closed_data;
  inv_buf_free(&r->out);
  free(r->ring);
  free(r->host);
  free(r->password);
  free(r->username);
  inv_tls_ctx_free(r->opts.tls);
  free(r);
  if (cb != NULL) cb(data);
}

static void handle_closed_cb(uv_handle_t *h) {
  inv_redis_t *r = h->data;
  r->open--;
  maybe_free(r);
}

/* ---- pending ring ----------------------------------------------------- */

/* Makes room for one more entry. Returns 0 or INV_ENOMEM. */
static int ring_reserve(inv_redis_t *r) {
  size_t ncap, i;
  pending_t *n;
  if (r->ring_count < r->ring_cap) return 0;
  ncap = r->ring_cap ? r->ring_cap * 2 : RING_MIN;
  n = malloc(ncap * sizeof(*n));
  if (n == NULL) return INV_ENOMEM;
  for (i = 0; i < r->ring_count; i++)
    n[i] = r->ring[(r->ring_head + i) % r->ring_cap];
  free(r->ring);
  r->ring = n;
  r->ring_cap = ncap;
  r->ring_head = 0;
  return 0;
}

static pending_t *ring_front(inv_redis_t *r) {
  return r->ring_count ? &r->ring[r->ring_head] : NULL;
}

static pending_t ring_pop(inv_redis_t *r) {
  pending_t p = r->ring[r->ring_head];
  r->ring_head = (r->ring_head + 1) % r->ring_cap;
  r->ring_count--;
  return p;
}

/* Fails every pending command with err. Callbacks may issue commands or
 * close r; each entry is popped before its callback runs, so the loop stays
 * consistent whatever they do. */
static void fail_pending(inv_redis_t *r, int err) {
  while (r->ring_count > 0) {
    pending_t p = ring_pop(r);
    if (!p.internal) r->stats.errors++;
    if (p.cb != NULL) p.cb(r, NULL, err, p.data);
  }
}

/* ---- command timeout -------------------------------------------------- */

static void cmd_timer_cb(uv_timer_t *h);

static void cmd_timer_arm(inv_redis_t *r) {
  pending_t *p = ring_front(r);
  uint64_t now;
  if (p == NULL || p->deadline == 0 ||
      uv_is_active((uv_handle_t *)&r->cmd_timer))
    return;
  now = uv_now(r->loop);
  uv_timer_start(&r->cmd_timer, cmd_timer_cb,
                 p->deadline > now ? p->deadline - now : 0, 0);
}

static void cmd_timer_cb(uv_timer_t *h) {
  inv_redis_t *r = h->data;
  pending_t *front = ring_front(r);
  pending_t p;

  if (front == NULL || front->deadline == 0) return;
  if (front->deadline > uv_now(r->loop)) {
    cmd_timer_arm(r);
    return;
  }
  p = ring_pop(r);
  r->stats.timeouts++;
  if (!p.internal) r->stats.errors++;
  if (p.cb != NULL) p.cb(r, NULL, INV_ETIMEDOUT, p.data);
  /* The callback may have closed or reset the connection already. */
  if (r->state != ST_CLOSED && r->state != ST_IDLE) {
    char why[64];
    snprintf(why, sizeof(why), "no reply within %llu ms",
             (unsigned long long)r->opts.command_timeout_ms);
    drop(r, why);
  }
}

/* ---- output ----------------------------------------------------------- */

static void flush(inv_redis_t *r) {
  int rc;
  if (r->out.len == 0 || r->tr == NULL) return;
  r->stats.writes++;
  r->stats.commands += r->out_cmds;
  r->out_cmds = 0;
  rc = r->tr->vt->write(r->tr, &r->out);
  if (rc < 0) {
    inv_log_warn(LOG_CTX, "%s: write failed: %s", r->who, uv_strerror(rc));
    drop(r, "write failed");
  }
}

static void flush_idle_cb(uv_idle_t *h) {
  inv_redis_t *r = h->data;
  uv_idle_stop(h);
  flush(r);
}

/* Reads "*N\r\n$L\r\nNAME\r\n" at the start of a formatted command: sets
 * *argc and the name. Returns 0, or -1 when the text is not that shape
 * (never for hiredis's own formatting). */
static int peek_command(const char *cmd, size_t len, long *argc,
                        const char **name, size_t *namelen) {
  char *end;
  long n, l;
  if (len < 4 || cmd[0] != '*') return -1;
  n = strtol(cmd + 1, &end, 10);
  if (end + 2 > cmd + len || end[0] != '\r' || n < 1) return -1;
  end += 2;
  if (end >= cmd + len || *end != '$') return -1;
  l = strtol(end + 1, &end, 10);
  if (l < 0 || end + 2 + l > cmd + len) return -1;
  *argc = n;
  *name = end + 2;
  *namelen = (size_t)l;
  return 0;
}

static cmd_kind_t command_kind(const char *name, size_t len) {
  static const struct {
    const char *name;
    cmd_kind_t kind;
  } kinds[] = {
      {"SUBSCRIBE", K_SUBSCRIBE},       {"PSUBSCRIBE", K_PSUBSCRIBE},
      {"SSUBSCRIBE", K_SSUBSCRIBE},     {"UNSUBSCRIBE", K_UNSUBSCRIBE},
      {"PUNSUBSCRIBE", K_PUNSUBSCRIBE}, {"SUNSUBSCRIBE", K_SUNSUBSCRIBE}};
  size_t i;
  for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
    if (strlen(kinds[i].name) == len &&
        strncasecmp(kinds[i].name, name, len) == 0)
      return kinds[i].kind;
  return K_PLAIN;
}

/* Queues a formatted command (cmd is copied). internal commands may be sent
 * before CONNECTED is announced. Returns 0, INV_ECLOSED, INV_EBUSY or
 * INV_ENOMEM. */
static int enqueue(inv_redis_t *r, const char *cmd, size_t len,
                   inv_redis_reply_cb cb, void *data, int internal) {
  pending_t *p;
  long argc = 1;
  const char *name = "";
  size_t namelen = 0;
  cmd_kind_t kind;

  if (r->state == ST_CLOSED || r->tr == NULL) return INV_ECLOSED;
  if (!internal && r->state != ST_CONNECTED) return INV_ECLOSED;
  if (r->ring_count >= r->opts.max_pending) return INV_EBUSY;
  if (ring_reserve(r) != 0) return INV_ENOMEM;
  if (inv_buf_append(&r->out, cmd, len) != 0) return INV_ENOMEM;
  (void)peek_command(cmd, len, &argc, &name, &namelen);
  kind = command_kind(name, namelen);

  p = &r->ring[(r->ring_head + r->ring_count) % r->ring_cap];
  r->ring_count++;
  p->cb = cb;
  p->data = data;
  p->deadline = r->opts.command_timeout_ms
                    ? uv_now(r->loop) + r->opts.command_timeout_ms
                    : 0;
  p->kind = (unsigned char)kind;
  p->internal = (unsigned char)(internal != 0);
  p->replies = 1;
  if (kind != K_PLAIN) {
    if (argc > 1)
      p->replies = (int)(argc - 1);
    else if (kind == K_UNSUBSCRIBE || kind == K_PUNSUBSCRIBE ||
             kind == K_SUNSUBSCRIBE)
      p->replies = -1;
  }
  r->out_cmds++;
  if (!uv_is_active((uv_handle_t *)&r->flush_idle))
    uv_idle_start(&r->flush_idle, flush_idle_cb);
  cmd_timer_arm(r);
  return 0;
}

int inv_redis_command_argv(inv_redis_t *r, int argc, const char **argv,
                           const size_t *argvlen, inv_redis_reply_cb cb,
                           void *data) {
  char *cmd = NULL;
  int len, rc;
  if (r == NULL || argc < 1 || argv == NULL) return INV_EINVAL;
  if (r->state != ST_CONNECTED) return INV_ECLOSED;
  len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
  if (len < 0) return INV_ENOMEM;
  rc = enqueue(r, cmd, (size_t)len, cb, data, 0);
  redisFreeCommand(cmd);
  return rc;
}

int inv_redis_command_formatted(inv_redis_t *r, const char *cmd, size_t len,
                                inv_redis_reply_cb cb, void *data) {
  if (r == NULL || cmd == NULL || len == 0) return INV_EINVAL;
  if (r->state != ST_CONNECTED) return INV_ECLOSED;
  return enqueue(r, cmd, len, cb, data, 0);
}

int inv_redis_command(inv_redis_t *r, inv_redis_reply_cb cb, void *data,
                      const char *fmt, ...) {
  char *cmd = NULL;
  va_list ap;
  int len, rc;
  if (r == NULL || fmt == NULL) return INV_EINVAL;
  if (r->state != ST_CONNECTED) return INV_ECLOSED;
  va_start(ap, fmt);
  len = redisvFormatCommand(&cmd, fmt, ap);
  va_end(ap);
  if (len == -2) return INV_EINVAL; /* hiredis: invalid format string */
  if (len < 0) return INV_ENOMEM;
  rc = enqueue(r, cmd, (size_t)len, cb, data, 0);
  redisFreeCommand(cmd);
  return rc;
}

int inv_redis_subscribe(inv_redis_t *r, const char *channel,
                        inv_redis_reply_cb cb, void *data) {
  const char *argv[2];
  size_t argvlen[2];
  if (channel == NULL) return INV_EINVAL;
  argv[0] = "SUBSCRIBE";
  argvlen[0] = 9;
  argv[1] = channel;
  argvlen[1] = strlen(channel);
  return inv_redis_command_argv(r, 2, argv, argvlen, cb, data);
}

/* ---- replies ---------------------------------------------------------- */

static int elem_is(const redisReply *e, const char *s) {
  size_t n = strlen(s);
  return e != NULL &&
         (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) &&
         e->len == n && strncasecmp(e->str, s, n) == 0;
}

/* Returns 1 when reply is a published message (subscribe mode only). */
static int is_push(const redisReply *reply) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return 0;
  if (reply->elements == 3 && (elem_is(reply->element[0], "message") ||
                               elem_is(reply->element[0], "smessage")))
    return 1;
  return reply->elements == 4 && elem_is(reply->element[0], "pmessage");
}

/* Updates the subscription counts from a confirmation such as
 * ["subscribe", channel, count]; count is channels + patterns, or shard
 * channels for the s- commands, after the command took effect. */
static void note_confirmation(inv_redis_t *r, const redisReply *reply,
                              cmd_kind_t kind) {
  long count, before;
  int shard = kind == K_SSUBSCRIBE || kind == K_SUNSUBSCRIBE;
  long *n;

  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
      reply->element[2]->type != REDIS_REPLY_INTEGER)
    return;
  count = (long)reply->element[2]->integer;
  before = shard ? r->sub_shard : r->sub_total;
  if (kind == K_SUBSCRIBE || kind == K_UNSUBSCRIBE)
    n = &r->n_channels;
  else if (kind == K_PSUBSCRIBE || kind == K_PUNSUBSCRIBE)
    n = &r->n_patterns;
  else
    n = &r->n_shard;
  if (count > before)
    *n += count - before;
  else if (count < before)
    *n = *n > before - count ? *n - (before - count) : 0;
  if (shard)
    r->sub_shard = count;
  else
    r->sub_total = count;
  if (kind == K_SUBSCRIBE || kind == K_PSUBSCRIBE || kind == K_SSUBSCRIBE)
    r->subscribed = 1;
  else if (r->sub_total == 0 && r->sub_shard == 0)
    r->subscribed = 0; /* Redis leaves subscribe mode with the last one */
}

/* Returns 1 when reply is a "sunsubscribe" no SUNSUBSCRIBE of ours asked
 * for: Redis unsubscribes clients from a shard channel whose slot left the
 * node. */
static int is_server_sunsubscribe(const redisReply *reply,
                                  const pending_t *front) {
  return reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
         elem_is(reply->element[0], "sunsubscribe") &&
         (front == NULL || front->kind != K_SUNSUBSCRIBE);
}

static void dispatch_reply(inv_redis_t *r, redisReply *reply) {
  pending_t *front;
  pending_t p;
  cmd_kind_t kind;

  if (r->subscribed && is_push(reply)) {
    if (r->push_cb != NULL) r->push_cb(r, reply, r->data);
    return;
  }
  front = ring_front(r);
  if (r->subscribed && is_server_sunsubscribe(reply, front)) {
    note_confirmation(r, reply, K_SUNSUBSCRIBE);
    if (r->push_cb != NULL) r->push_cb(r, reply, r->data);
    return;
  }
  if (front == NULL) {
    inv_log_warn(LOG_CTX,
                 "%s: unexpected reply with no command pending; "
                 "reconnecting",
                 r->who);
    drop(r, "unexpected reply");
    return;
  }
  kind = (cmd_kind_t)front->kind;
  if (front->replies == -1) {
    /* UNSUBSCRIBE without arguments: one reply per subscription of that
     * kind, or one when there is none. Every earlier command is answered
     * by now, so the counts are exact. */
    long n = kind == K_UNSUBSCRIBE    ? r->n_channels
             : kind == K_PUNSUBSCRIBE ? r->n_patterns
                                      : r->n_shard;
    front->replies = n > 0 ? (int)n : 1;
  }
  if (kind != K_PLAIN) note_confirmation(r, reply, kind);
  if (--front->replies > 0)
    return; /* more confirmations of the same command to come */
  p = ring_pop(r);
  if (reply->type == REDIS_REPLY_ERROR && !p.internal) r->stats.errors++;
  if (p.cb != NULL) p.cb(r, reply, 0, p.data);
}

static void on_read(inv_transport_t *t, const char *buf, size_t len) {
  inv_redis_t *r = t->data;
  redisReader *rd = r->reader;
  void *reply;

  if (t != r->tr || rd == NULL) return;
  if (redisReaderFeed(rd, buf, len) != REDIS_OK) {
    drop(r, "out of memory in the reply reader");
    return;
  }
  r->in_read++;
  for (;;) {
    reply = NULL;
    if (redisReaderGetReply(rd, &reply) != REDIS_OK) {
      inv_log_error(LOG_CTX, "%s: protocol error: %s", r->who, rd->errstr);
      drop(r, "protocol error");
      break;
    }
    if (reply == NULL) break;
    dispatch_reply(r, reply);
    freeReplyObject(reply);
    /* A callback may have dropped, reset or closed the connection. */
    if (r->reader != rd || r->tr != t) break;
  }
  r->in_read--;
  if (r->reader != rd) redisReaderFree(rd);
}

/* ---- connection life -------------------------------------------------- */

static void schedule_attempt(inv_redis_t *r, uint64_t delay) {
  uv_timer_start(&r->conn_timer, conn_timer_cb, delay, 0);
}

/* Tears down the current transport (or resolution), fails the pending
 * commands with INV_ECLOSED and, unless r is closed, schedules the next
 * attempt and announces DISCONNECTED if CONNECTED had been announced. */
static void drop(inv_redis_t *r, const char *why) {
  int was_announced = r->announced;
  uint64_t delay;

  r->announced = 0;
  if (r->tr != NULL) {
    r->tr->vt->close(r->tr);
    r->tr = NULL;
  }
  if (r->resolve != NULL) {
    (void)uv_cancel((uv_req_t *)&r->resolve->req);
    r->resolve = NULL; /* its callback sees it is stale and frees it */
  }
  if (r->reader != NULL && r->in_read == 0) redisReaderFree(r->reader);
  r->reader = NULL; /* on_read frees the one it is iterating */
  inv_buf_free(&r->out);
  r->out_cmds = 0;
  uv_idle_stop(&r->flush_idle);
  uv_timer_stop(&r->cmd_timer);
  uv_timer_stop(&r->conn_timer);
  r->subscribed = 0;
  r->sub_total = r->sub_shard = 0;
  r->n_channels = r->n_patterns = r->n_shard = 0;
  if (r->state != ST_CLOSED) r->state = ST_IDLE;

  fail_pending(r, INV_ECLOSED);
  if (r->state == ST_CLOSED || r->state != ST_IDLE ||
      uv_is_active((uv_handle_t *)&r->conn_timer))
    return; /* a callback closed r, or already arranged the next attempt */
  delay = backoff_delay(r);
  if (fail_worth_logging(r, why) || was_announced) {
    inv_log_warn(LOG_CTX, "%s: %s; reconnecting in %llu ms", r->who, why,
                 (unsigned long long)delay);
    r->fail_logged = 1;
  } else {
    inv_log_debug(LOG_CTX, "%s: %s; reconnecting in %llu ms", r->who, why,
                  (unsigned long long)delay);
  }
  schedule_attempt(r, delay);
  if (was_announced && r->event_cb != NULL)
    r->event_cb(r, INV_REDIS_DISCONNECTED, r->data);
}

static void announce(inv_redis_t *r) {
  uv_timer_stop(&r->conn_timer);
  r->state = ST_CONNECTED;
  r->announced = 1;
  r->backoff_n = 0;
  r->fail_logged = 0;
  r->stats.connects++;
  if (r->ever_connected) r->stats.reconnects++;
  r->ever_connected = 1;
  inv_log_info(LOG_CTX, "connected to %s", r->who);
  if (r->event_cb != NULL) r->event_cb(r, INV_REDIS_CONNECTED, r->data);
}

static void auth_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  (void)data;
  if (err != 0) return; /* the connection is already being dropped */
  if (reply->type == REDIS_REPLY_ERROR) {
    /* Logged once per failing streak (fail_worth_logging): a wrong
     * password retries forever. */
    inv_log(fail_worth_logging(r, "AUTH") ? INV_LOG_ERROR : INV_LOG_DEBUG,
            LOG_CTX, "%s: AUTH as user \"%s\" failed: %.*s", r->who,
            r->username != NULL ? r->username : "default", (int)reply->len,
            reply->str);
    drop(r, "authentication failed");
    return;
  }
  announce(r);
}

/* The transport's own reason for a failure (a TLS one), or NULL. */
static const char *transport_reason(inv_transport_t *t) {
  return t->vt->errstr != NULL ? t->vt->errstr(t) : NULL;
}

/* Drops after a TLS failure, logging the reason at error level once per
 * failing streak: a certificate problem does not mend itself, and the
 * retries would otherwise hide it at debug level. */
static void drop_tls(inv_redis_t *r, const char *reason) {
  inv_log(fail_worth_logging(r, reason) ? INV_LOG_ERROR : INV_LOG_DEBUG,
          LOG_CTX, "TLS to %s: %s", r->who, reason);
  drop(r, "TLS failed");
}

static void on_connect(inv_transport_t *t, int status) {
  inv_redis_t *r = t->data;
  const char *argv[3];
  size_t argvlen[3];
  char *cmd = NULL;
  int len, rc, argc;

  if (t != r->tr) return;
  if (status < 0) {
    char why[128];
    const char *reason = transport_reason(t);
    if (reason != NULL) {
      drop_tls(r, reason);
      return;
    }
    snprintf(why, sizeof(why), "connect failed: %s", uv_strerror(status));
    drop(r, why);
    return;
  }
  r->reader = redisReaderCreate();
  if (r->reader == NULL) {
    drop(r, "out of memory");
    return;
  }
  if (r->password == NULL) {
    announce(r);
    return;
  }
  r->state = ST_AUTH;
  argc = 0;
  argv[argc] = "AUTH";
  argvlen[argc++] = 4;
  if (r->username != NULL) {
    argv[argc] = r->username;
    argvlen[argc++] = strlen(r->username);
  }
  argv[argc] = r->password;
  argvlen[argc++] = strlen(r->password);
  len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
  rc = len < 0 ? INV_ENOMEM : enqueue(r, cmd, (size_t)len, auth_cb, NULL, 1);
  redisFreeCommand(cmd);
  if (rc < 0) drop(r, "cannot queue AUTH");
}

static void on_error(inv_transport_t *t, int status) {
  inv_redis_t *r = t->data;
  char why[128];
  if (t != r->tr) return;
  if (transport_reason(t) != NULL) {
    drop_tls(r, transport_reason(t));
    return;
  }
  if (status == UV_EOF)
    snprintf(why, sizeof(why), "connection closed by the server");
  else
    snprintf(why, sizeof(why), "connection error: %s", uv_strerror(status));
  drop(r, why);
}

static void on_transport_closed(inv_transport_t *t) {
  inv_redis_t *r = t->data;
  r->open--;
  maybe_free(r);
}

static const inv_transport_cbs_t transport_cbs = {on_connect, on_read, on_error,
                                                  on_transport_closed};

static void connect_addr(inv_redis_t *r, const struct sockaddr *addr) {
  inv_transport_t *t;
  char why[128];
  int rc;

  if (r->opts.tls != NULL)
    rc = inv__transport_tls_create(r->loop, r->opts.tls, r->host,
                                   &transport_cbs, r, &t);
  else
    rc = inv__transport_tcp_create(r->loop, &transport_cbs, r, &t);
  if (rc < 0) {
    drop(r, "cannot create a socket");
    return;
  }
  r->open++;
  r->tr = t;
  r->state = ST_CONNECTING;
  rc = t->vt->connect(t, addr);
  if (rc < 0) {
    snprintf(why, sizeof(why), "connect failed: %s", uv_strerror(rc));
    drop(r, why);
  }
}

static void resolve_cb(uv_getaddrinfo_t *req, int status,
                       struct addrinfo *res) {
  resolve_t *rs = req->data;
  inv_redis_t *r = rs->r;
  char why[160];

  if (r->resolve == rs) {
    r->resolve = NULL;
    if (status < 0 || res == NULL) {
      snprintf(why, sizeof(why), "cannot resolve %s: %s", r->host,
               uv_strerror(status));
      drop(r, why);
    } else {
      connect_addr(r, res->ai_addr);
    }
  }
  uv_freeaddrinfo(res);
  free(rs);
  r->open--;
  maybe_free(r);
}

static void start_attempt(inv_redis_t *r) {
  struct sockaddr_storage ss;
  struct addrinfo hints;
  resolve_t *rs;
  int rc;

  uv_timer_start(&r->conn_timer, conn_timer_cb, r->opts.connect_timeout_ms, 0);
  memset(&ss, 0, sizeof(ss));
  if (uv_ip4_addr(r->host, r->port, (struct sockaddr_in *)&ss) == 0 ||
      uv_ip6_addr(r->host, r->port, (struct sockaddr_in6 *)&ss) == 0) {
    connect_addr(r, (const struct sockaddr *)&ss);
    return;
  }
  rs = malloc(sizeof(*rs));
  if (rs == NULL) {
    drop(r, "out of memory");
    return;
  }
  rs->r = r;
  rs->req.data = rs;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  {
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    rc = uv_getaddrinfo(r->loop, &rs->req, resolve_cb, r->host, port, &hints);
  }
  if (rc < 0) {
    free(rs);
    drop(r, "cannot start resolving");
    return;
  }
  r->open++;
  r->resolve = rs;
  r->state = ST_RESOLVING;
}

static void conn_timer_cb(uv_timer_t *h) {
  inv_redis_t *r = h->data;
  if (r->state == ST_IDLE)
    start_attempt(r);
  else if (r->state != ST_CONNECTED && r->state != ST_CLOSED)
    drop(r, "connect timeout");
}

/* ---- public ----------------------------------------------------------- */

int inv_redis_create(uv_loop_t *loop, const char *host, int port,
                     const inv_redis_opts_t *opts, inv_redis_event_cb event_cb,
                     inv_redis_push_cb push_cb, void *data, inv_redis_t **out) {
  inv_redis_t *r = NULL;
  inv_redis_opts_t o;

  if (loop == NULL || host == NULL || host[0] == '\0' || port <= 0 ||
      port > 65535 || out == NULL)
    return INV_EINVAL;
  if (opts != NULL)
    o = *opts;
  else
    inv_redis_opts_default(&o);
  if (o.connect_timeout_ms == 0 || o.max_pending == 0 ||
      o.backoff_min_ms > o.backoff_max_ms)
    return INV_EINVAL;
  if (o.backoff_min_ms == 0) o.backoff_min_ms = 1;
  if (o.backoff_max_ms == 0) o.backoff_max_ms = 1;

  r = calloc(1, sizeof(*r));
  if (r == NULL) goto err;
  r->host = strdup(host);
  if (r->host == NULL) goto err;
  if (o.name != NULL && o.name[0] != '\0')
    snprintf(r->who, sizeof(r->who), "%.255s:%d (%.48s)", host, port, o.name);
  else
    snprintf(r->who, sizeof(r->who), "%.255s:%d", host, port);
  o.name = NULL; /* not kept: who holds it */
  if (o.password != NULL) {
    r->password = strdup(o.password);
    if (r->password == NULL) goto err;
  }
  if (o.username != NULL) {
    r->username = strdup(o.username);
    if (r->username == NULL) goto err;
  }
  o.password = r->password;
  o.username = r->username;
  if (o.tls != NULL) o.tls = inv_tls_ctx_ref(o.tls);
  r->opts = o;
  r->loop = loop;
  r->port = port;
  r->event_cb = event_cb;
  r->push_cb = push_cb;
  r->data = data;
  r->state = ST_IDLE;
  r->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)r) | 1;

  /* Initializing timers and idle handles cannot fail on a valid loop. */
  uv_timer_init(loop, &r->conn_timer);
  uv_timer_init(loop, &r->cmd_timer);
  uv_idle_init(loop, &r->flush_idle);
  r->conn_timer.data = r->cmd_timer.data = r->flush_idle.data = r;
  r->open = 3;
  /* The first attempt starts from the loop, so nothing happens inside
   * this call and every callback comes from the loop. */
  schedule_attempt(r, 0);
  *out = r;
  return 0;

err:
  if (r != NULL) {
    free(r->host);
    free(r->password);
    free(r->username);
    free(r);
  }
  return INV_ENOMEM;
}

void inv_redis_set_tls(inv_redis_t *r, inv_tls_ctx_t *ctx) {
  inv_tls_ctx_t *old = r->opts.tls;
  r->opts.tls = inv_tls_ctx_ref(ctx);
  inv_tls_ctx_free(old);
}

int inv_redis_is_connected(const inv_redis_t *r) {
  return r != NULL && r->state == ST_CONNECTED;
}

const char *inv_redis_host(const inv_redis_t *r) { return r->host; }

int inv_redis_port(const inv_redis_t *r) { return r->port; }

size_t inv_redis_pending(const inv_redis_t *r) { return r->ring_count; }

const inv_redis_stats_t *inv_redis_stats(const inv_redis_t *r) {
  return &r->stats;
}

void inv_redis_reset(inv_redis_t *r) {
  if (r == NULL || r->state == ST_CLOSED || r->state == ST_IDLE) return;
  drop(r, "reset by the owner");
}

void inv_redis_close(inv_redis_t *r, inv_redis_closed_cb closed_cb,
                     void *data) {
  if (r == NULL || r->state == ST_CLOSED) return;
  r->state = ST_CLOSED;
  r->closed_cb = closed_cb;
  r->closed_data = data;
  drop(r, "closed");
  uv_close((uv_handle_t *)&r->conn_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&r->cmd_timer, handle_closed_cb);
  uv_close((uv_handle_t *)&r->flush_idle, handle_closed_cb);
}
