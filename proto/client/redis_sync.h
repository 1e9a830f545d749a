/*
 * One blocking Redis connection, plain TCP or TLS, for the read path
 * (cache_redis.c) and invalctl: hiredis 0.14's blocking redisContext cannot
 * speak TLS, so this owns the socket, runs the TLS engine (common/tls/tls.h)
 * over it, and keeps hiredis for what it is good at: redisFormatCommandArgv
 * to format and redisReader to parse.
 *
 * Every wait is bounded by timeout_ms (connect, TLS handshake, each read
 * and write). After an error the connection is unusable: free it.
 */
#ifndef INV_REDIS_SYNC_H
#define INV_REDIS_SYNC_H

#include <hiredis/hiredis.h>
#include <stddef.h>

struct inv_tls_ctx_s;

typedef struct inv_redis_sync_s inv_redis_sync_t;

typedef struct inv_redis_sync_opts_s {
  int timeout_ms;            /* 0: 2000 */
  const char *username;      /* with password: AUTH username password */
  const char *password;      /* NULL: no AUTH */
  struct inv_tls_ctx_s *tls; /* a TLS client context, or NULL: plain TCP */
} inv_redis_sync_opts_t;

/* Connects (and completes the TLS handshake and AUTH). Returns 0 and *out,
 * or INV_ECONNREFUSED / INV_ETIMEDOUT / INV_EIO (cannot connect; a TLS
 * failure: "TLS to 127.0.0.1:6390: certificate verify failed: ..."),
 * INV_EREDIS (AUTH refused: "AUTH as user "u" failed: WRONGPASS ...") or
 * INV_ENOMEM, with err set. */
int inv_redis_sync_connect(const char *host, int port,
                           const inv_redis_sync_opts_t *opts,
                           inv_redis_sync_t **out, char *err, size_t errlen);

/* Queues one command (sent by the next get_reply). Returns 0 or
 * INV_ENOMEM. */
int inv_redis_sync_append(inv_redis_sync_t *c, int argc, const char **argv,
                          const size_t *lens);

/* Sends what is queued and waits up to wait_ms (-1: the timeout; the
 * timeout then is an error) for the next reply. Returns 1 with *reply (the
 * caller frees it), 0 when wait_ms passed without one, or INV_EIO /
 * INV_ETIMEDOUT / INV_ENOMEM (see inv_redis_sync_errstr()). A wait_ms of 0
 * never reads the socket: it returns a reply that inv_redis_sync_read()
 * (or an earlier call) already took in, or 0. */
int inv_redis_sync_reply(inv_redis_sync_t *c, int wait_ms, redisReply **reply);

/* The socket, for poll() by a caller that waits on several connections
 * (pub/sub readers). Every byte read from it is decrypted into the reply
 * reader at once, so POLLIN is a true "there is more" test. */
int inv_redis_sync_fd(const inv_redis_sync_t *c);

/* Reads once what the socket holds, without waiting, into the reply
 * reader: call it when poll() reports the fd readable, then take the
 * replies with inv_redis_sync_reply(c, 0, ...) until it returns 0. Reading
 * once per readiness keeps a busy subscription from starving the caller's
 * other work. Returns 1 when bytes came, 0 when none, or INV_EIO /
 * INV_ENOMEM (a closed connection is INV_EIO). */
int inv_redis_sync_read(inv_redis_sync_t *c);

/* Sends one command and waits for its reply: 0 with *reply, or
 * inv_redis_sync_reply()'s error codes. */
int inv_redis_sync_command(inv_redis_sync_t *c, int argc, const char **argv,
                           const size_t *lens, redisReply **reply);

/* The last error ("" if none). */
const char *inv_redis_sync_errstr(const inv_redis_sync_t *c);

/* Closes and frees. Accepts NULL. */
void inv_redis_sync_free(inv_redis_sync_t *c);

#endif
