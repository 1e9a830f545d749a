/*
 * One Redis connection on libuv, speaking RESP2 with hiredis's reply reader
 * (redisReader) and command formatter (redisFormatCommandArgv).
 *
 * Commands are pipelined: every command issued in the same loop iteration
 * goes out in one write, and replies are matched to callbacks in FIFO
 * order. The connection reconnects by itself with capped, jittered
 * exponential backoff; each (re)connection is announced through event_cb so
 * the owner can re-send AUTH, SUBSCRIBE, SCRIPT LOAD and the like.
 *
 * The byte transport is a small vtable (inv_transport_t): plain TCP, or TLS
 * when opts.tls is set. With TLS, the handshake (and the server's
 * certificate check) is part of connecting: a failure is logged once per
 * failing streak with OpenSSL's reason ("TLS to 127.0.0.1:6390: certificate
 * verify failed: unable to get local issuer certificate") and retried like
 * any failed connect.
 *
 * Callbacks: a command's callback is called exactly once, with the reply or
 * with an error (err < 0, reply NULL): INV_ECLOSED when the connection
 * dropped or was closed, INV_ETIMEDOUT when no reply came within
 * command_timeout_ms (the connection is then dropped and re-established,
 * because a Redis that does not answer cannot be trusted to answer the
 * next command in order). A Redis error reply is a reply
 * (reply->type == REDIS_REPLY_ERROR, err == 0). The reply is owned by the
 * connection and valid only during the callback. When a function that takes
 * a callback returns an error, the callback will never be called.
 *
 * Pub/Sub: after inv_redis_subscribe() the connection is in subscribe mode;
 * every "message"/"pmessage"/"smessage" array goes to push_cb, and so does
 * a "sunsubscribe" Redis sends unasked (the shard channel's slot left the
 * node); only
 * (P)SUBSCRIBE, (P)UNSUBSCRIBE and PING may be sent. Subscriptions are not
 * re-sent on reconnect by this layer: the owner does it on
 * INV_REDIS_CONNECTED, which is also the moment to start log catch-up.
 */
#ifndef INV_REDIS_CONN_H
#define INV_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct inv_redis_s inv_redis_t;

typedef enum {
  INV_REDIS_CONNECTED = 1, /* ready for commands */
  INV_REDIS_DISCONNECTED =
      2 /* pending commands have been failed; a reconnect is scheduled */
} inv_redis_event_t;

typedef void (*inv_redis_reply_cb)(inv_redis_t *r, redisReply *reply, int err,
                                   void *data);
typedef void (*inv_redis_event_cb)(inv_redis_t *r, inv_redis_event_t ev,
                                   void *data);
typedef void (*inv_redis_push_cb)(inv_redis_t *r, redisReply *msg, void *data);
typedef void (*inv_redis_closed_cb)(void *data);

typedef struct inv_redis_opts_s {
  uint64_t connect_timeout_ms; /* default 2000 */
  uint64_t command_timeout_ms; /* default 5000; 0 disables */
  uint64_t backoff_min_ms;     /* default 50 */
  uint64_t backoff_max_ms;     /* default 2000 */
  size_t max_pending;          /* commands awaiting replies; default 100000 */
  const char *password;        /* AUTH on connect when not NULL (copied) */
  const char *username;        /* with password: AUTH username password, for
                                * an ACL user (copied); NULL: "default" */
  struct inv_tls_ctx_s *tls;   /* a TLS client context (common/tls/tls.h): TLS
                                * when not NULL; a reference is taken */
  const char *name;            /* the connection's role in log lines, e.g.
                                * "worker subscriber" (copied, at most 48
                                * bytes kept); NULL: the address alone */
} inv_redis_opts_t;

void inv_redis_opts_default(inv_redis_opts_t *o);

typedef struct inv_redis_stats_s {
  uint64_t commands;   /* commands written */
  uint64_t writes;     /* write calls (round trips, roughly) */
  uint64_t errors;     /* error replies + failed commands */
  uint64_t connects;   /* successful connections */
  uint64_t reconnects; /* connections after the first */
  uint64_t timeouts;
} inv_redis_stats_t;

/* Creates a connection and starts connecting (host may be a name or an
 * address; resolution is asynchronous). event_cb and push_cb may be NULL.
 * Returns 0 and *out, or INV_ENOMEM / INV_EINVAL. */
int inv_redis_create(uv_loop_t *loop, const char *host, int port,
                     const inv_redis_opts_t *opts, inv_redis_event_cb event_cb,
                     inv_redis_push_cb push_cb, void *data, inv_redis_t **out);

/* Queues a command. Returns 0, INV_ECLOSED when not connected (no queueing
 * while disconnected: the caller decides whether to wait or fail), INV_EBUSY
 * when max_pending commands are outstanding, or INV_ENOMEM. */
int inv_redis_command_argv(inv_redis_t *r, int argc, const char **argv,
                           const size_t *argvlen, inv_redis_reply_cb cb,
                           void *data);

/* Queues a command the caller already formatted as RESP (an array of bulk
 * strings, what redisFormatCommandArgv makes); cmd[0..len) is copied. For
 * callers that send many commands of one shape and format them faster than
 * hiredis's per-argument formatting. Same return values as
 * inv_redis_command_argv, and INV_EINVAL for an empty command. */
int inv_redis_command_formatted(inv_redis_t *r, const char *cmd, size_t len,
                                inv_redis_reply_cb cb, void *data);

/* printf-style variant, using hiredis's redisFormatCommand rules (%s, %b). */
int inv_redis_command(inv_redis_t *r, inv_redis_reply_cb cb, void *data,
                      const char *fmt, ...);

/* Sends SUBSCRIBE channel and enters subscribe mode. cb gets the
 * confirmation. Same return values as inv_redis_command_argv. */
int inv_redis_subscribe(inv_redis_t *r, const char *channel,
                        inv_redis_reply_cb cb, void *data);

/* Makes the next connection attempts use TLS context ctx (a new reference
 * is taken and the old one dropped); the current connection, if any, keeps
 * the session it has. For a reload of rotated certificates. r must have
 * been created with TLS. */
void inv_redis_set_tls(inv_redis_t *r, struct inv_tls_ctx_s *ctx);

int inv_redis_is_connected(const inv_redis_t *r);
const char *inv_redis_host(const inv_redis_t *r);
int inv_redis_port(const inv_redis_t *r);
size_t inv_redis_pending(const inv_redis_t *r);
const inv_redis_stats_t *inv_redis_stats(const inv_redis_t *r);

/* Drops the current connection (failing pending commands with INV_ECLOSED)
 * and reconnects after the backoff. */
void inv_redis_reset(inv_redis_t *r);

/* Stops reconnecting, fails pending commands with INV_ECLOSED, closes the
 * handles and frees r; closed_cb (may be NULL) runs once everything is
 * released. Accepts NULL. Safe to call from inside any callback. */
void inv_redis_close(inv_redis_t *r, inv_redis_closed_cb closed_cb, void *data);

#endif
