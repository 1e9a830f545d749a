/*
 * The MessagePack-RPC server that both daemons run (the publisher's client
 * port and the worker's admin port): a libuv TCP listener, optionally TLS,
 * one session per client, framing and decoding with proto/codec.h, and
 * dispatch of each request or notification to the owner's handler.
 *
 * The server owns the generic rules, so every daemon applies them alike:
 *   - max_clients: a connection over the limit gets an EBUSY error
 *     notification and is closed (and counted);
 *   - idle_timeout_ms: a session with no input and no request in flight
 *     for that long is closed (and logged at debug);
 *   - the codec limits: a frame over max_message_bytes, too deep or with
 *     too many items gets ETOOBIG; bytes that are not msgpack get EPROTO;
 *   - a decodable frame that is not msgpack-rpc gets an EPROTO response
 *     when its msgid is known, and the session goes on;
 *   - a framing error leaves the stream unusable: the session sends an
 *     error response (or, with no msgid known, the notification
 *     [2, "error", [{"code": .., "message": ..}]]), flushes, logs the reason
 *     with the peer address and closes;
 *   - auth_token: when set, every method other than "hello" and "ping" on a
 *     session that has not sent hello with the right token gets EAUTH; a
 *     hello with a wrong token gets EAUTH and is not passed to the handler.
 *     A hello with the right token authenticates the session only when the
 *     handler answers it with success (inv_rpc_reply_end()): a failed hello
 *     (bad params, wrong token) changes nothing on the session;
 *   - auth_cb (instead of auth_token): the owner decides who a hello
 *     authenticates, from its token and the client certificate's
 *     identities, and names the principal (a tenant); the same rules as
 *     for auth_token apply otherwise. inv_rpc_req_principal() gives every
 *     later request the name, and inv_rpc_server_revoke() takes it back;
 *   - TLS handshakes: at most tls_handshakes_max are in flight. One more
 *     closes the oldest one still in flight (counted in
 *     tls_handshakes_shed, logged at most once a second), so stalled
 *     handshakes cannot hold memory without bound and a new client is
 *     still served while they stall. A handshake not done within
 *     tls_handshake_timeout_ms (or the idle timeout, when shorter) is
 *     closed. Once a burst of handshakes is over, the memory they held is
 *     given back to the system;
 *   - TLS: a first byte that is not a TLS handshake record is plaintext on
 *     the TLS port: the session gets the notification
 *     [2, "error", [{"code": "EPROTO", ...}]] in plaintext and is closed at
 *     once, counted in tls_plaintext_closes and logged with the peer (at
 *     most one line a second, with the count of those not logged). A client
 *     that sends nothing is closed by the handshake bound;
 *   - out_limit: when a session's unsent output passes this many bytes the
 *     server stops reading from it until the output drains (a client that
 *     does not read its replies cannot grow our memory).
 *
 * Requests: the handler gets an inv_rpc_req_t for every request and every
 * notification, and must finish it exactly once with inv_rpc_reply_end()
 * (after inv_rpc_reply_begin()) or inv_rpc_reply_error(), synchronously or
 * later (after Redis round trips). For a notification the server discards
 * the reply, so handlers need no special case. If the client went away in
 * the meantime the reply is dropped; a request stays valid until finished.
 * Replies go out in the order they are finished, not the order requests
 * came in; msgid matches them.
 *
 * Every error reply sent through the server is counted per code
 * (inv_rpc_server_errors()), which is where "rejected per error code"
 * figures come from.
 */
#ifndef INV_RPC_SERVER_H
#define INV_RPC_SERVER_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/config.h"
#include "inval/errors.h"
#include "common/base/log.h"
#include "proto/codec.h"

typedef struct inv_rpc_server_s inv_rpc_server_t;
typedef struct inv_rpc_req_s inv_rpc_req_t;

/* Error numbers counted per code are below this (see inval/errors.h). */
#define INV_RPC_MAX_ERRNO INV_ERR_NUM_LIMIT

/*
 * Settings every daemon with an RPC port shares. Both daemons embed this
 * struct in their config and list INV_SERVER_CONF_ROWS in their config
 * table, so the directives, bounds and help text exist once.
 */
typedef struct inv_server_conf_s {
  inv_addr_t listen;         /* port 0: the RPC port is disabled */
  inv_addr_t metrics_listen; /* port 0: /metrics is disabled */
  int log_level;             /* index into inv_log_level_names */
  long long max_clients;
  uint64_t idle_timeout_ms; /* 0 disables */
  size_t max_message_bytes;
  char *tls_cert; /* PEM files; TLS is on when both are set */
  char *tls_key;
  char *auth_token; /* NULL or "": no authentication */
} inv_server_conf_t;

#define INV_SERVER_CONF_ROWS(type, field, listen_default)                       \
  {"listen",       INV_CONF_ADDR, offsetof(type, field.listen),         0, 0,   \
   listen_default, NULL,          "address of the MessagePack-RPC port"},       \
      {"metrics-listen",                                                        \
       INV_CONF_ADDR,                                                           \
       offsetof(type, field.metrics_listen),                                    \
       0,                                                                       \
       0,                                                                       \
       NULL,                                                                    \
       NULL,                                                                    \
       "address of the Prometheus /metrics endpoint (off when unset)"},         \
      {"log-level", INV_CONF_ENUM,       offsetof(type, field.log_level), 0, 0, \
       "info",      inv_log_level_names, "debug, info, warn or error"},         \
      {"max-clients",                                                           \
       INV_CONF_INT,                                                            \
       offsetof(type, field.max_clients),                                       \
       1,                                                                       \
       1000000,                                                                 \
       "10000",                                                                 \
       NULL,                                                                    \
       "most concurrent client connections"},                                   \
      {"idle-timeout",                                                          \
       INV_CONF_MS,                                                             \
       offsetof(type, field.idle_timeout_ms),                                   \
       0,                                                                       \
       86400000,                                                                \
       "300s",                                                                  \
       NULL,                                                                    \
       "close a silent client after this long (0: never)"},                     \
      {"max-message-bytes",                                                     \
       INV_CONF_SIZE,                                                           \
       offsetof(type, field.max_message_bytes),                                 \
       1024,                                                                    \
       64 * 1024 * 1024,                                                        \
       "1m",                                                                    \
       NULL,                                                                    \
       "largest request frame accepted"},                                       \
      {"tls-cert",                                                              \
       INV_CONF_STRING,                                                         \
       offsetof(type, field.tls_cert),                                          \
       0,                                                                       \
       0,                                                                       \
       NULL,                                                                    \
       NULL,                                                                    \
       "PEM certificate chain; with tls-key, clients must speak TLS"},          \
      {"tls-key",                                                               \
       INV_CONF_STRING,                                                         \
       offsetof(type, field.tls_key),                                           \
       0,                                                                       \
       0,                                                                       \
       NULL,                                                                    \
       NULL,                                                                    \
       "PEM private key for tls-cert"},                                         \
  {                                                                             \
    "auth-token", INV_CONF_SECRET, offsetof(type, field.auth_token), 0, 0,      \
        NULL, NULL, "token clients must present in hello (off when unset)"      \
  }

/* Decides who a hello authenticates: token (NULL when hello has none) and
 * the identities of the verified client certificate (see
 * inv_tls_peer_ids(); none without mTLS). Returns 0 with the principal's
 * name written to principal (NUL-terminated, at most principal_len bytes
 * with the NUL), or INV_EAUTH with why written to principal (for the
 * client; never the token). */
typedef int (*inv_rpc_auth_cb)(void *data, const char *token, size_t token_len,
                               const char *const *cert_ids, size_t ncert_ids,
                               char *principal, size_t principal_len);

/* The longest principal name, with its NUL. */
#define INV_RPC_PRINCIPAL_MAX 64

typedef struct inv_rpc_server_opts_s {
  inv_codec_limits_t limits;
  size_t max_clients;
  uint64_t idle_timeout_ms;
  size_t out_limit;     /* default 4 MiB */
  const char *tls_cert; /* NULL: plain TCP */
  const char *tls_key;
  const char *auth_token;    /* NULL: no authentication */
  const char *log_ctx;       /* log context, e.g. "listener" */
  const char *tls_client_ca; /* NULL: no client certificates (no mTLS) */
  size_t tls_handshakes_max; /* 0: the default, 512 */
  uint64_t tls_handshake_timeout_ms; /* 0: the default, 10 s */
  inv_rpc_auth_cb auth_cb;           /* non-NULL: replaces auth_token */
  void *auth_data;
} inv_rpc_server_opts_t;

/* Fills opts from a daemon's server config (limits from max_message_bytes,
 * the rest from the codec defaults). */
void inv_rpc_server_opts_from_conf(const inv_server_conf_t *conf,
                                   inv_rpc_server_opts_t *opts);

/* Called once per request or notification. msg is valid only during the
 * call; copy what must outlive it. method is msg->method. */
typedef void (*inv_rpc_handler_cb)(inv_rpc_req_t *req, const inv_msg_t *msg,
                                   void *data);

typedef struct inv_rpc_server_stats_s {
  uint64_t clients;          /* gauge: sessions open now */
  uint64_t connections;      /* sessions accepted since start */
  uint64_t rejected_clients; /* refused over max_clients */
  uint64_t requests;         /* requests and notifications decoded */
  uint64_t protocol_closes;  /* sessions closed for a framing error */
  uint64_t idle_closes;
  uint64_t tls_plaintext_closes;   /* plaintext first byte on the TLS port */
  uint64_t tls_handshakes;         /* gauge: TLS handshakes in flight */
  uint64_t tls_handshakes_shed;    /* closed by tls_handshakes_max */
  uint64_t tls_handshake_timeouts; /* closed by the handshake timeout */
  uint64_t bytes_in, bytes_out;
} inv_rpc_server_stats_t;

/* Binds addr and starts listening (TLS is set up here: a bad certificate or
 * key fails now, with err naming the file). Returns 0 and *out, or
 * INV_ECONFIG / INV_EIO / INV_ENOMEM with err set. */
int inv_rpc_server_start(uv_loop_t *loop, const inv_addr_t *addr,
                         const inv_rpc_server_opts_t *opts,
                         inv_rpc_handler_cb handler, void *data,
                         inv_rpc_server_t **out, char *err, size_t errlen);

/* The port actually bound (useful with port 0 in tests). */
int inv_rpc_server_port(const inv_rpc_server_t *s);

/* Stops (paused != 0) or resumes reading from every session: the daemon's
 * global backpressure. Accepting goes on; new sessions start paused. */
void inv_rpc_server_pause(inv_rpc_server_t *s, int paused);

const inv_rpc_server_stats_t *inv_rpc_server_stats(const inv_rpc_server_t *s);

/* Error replies sent with code -n (1 <= n < INV_RPC_MAX_ERRNO). */
uint64_t inv_rpc_server_errors(const inv_rpc_server_t *s, int code);

/* Closes the listener; open sessions go on (to finish their requests). */
void inv_rpc_server_stop_accepting(inv_rpc_server_t *s);

/* Closes every session once its queued output is written (at most
 * linger_ms), then frees s; closed_cb (may be NULL) runs once all handles
 * are released. Requests still unfinished stay valid and their replies are
 * dropped. Accepts NULL. */
void inv_rpc_server_close(inv_rpc_server_t *s, uint64_t linger_ms,
                          void (*closed_cb)(void *data), void *data);

/* Replaces the TLS certificate, key and client CA with freshly loaded
 * ones (SIGHUP). Sessions open now keep the ones they started with; new
 * ones get the new. On error nothing changes. Writes what changed to what
 * ("CN=a sha256 ... -> CN=b sha256 ..." or "unchanged"). Returns 0,
 * INV_ECONFIG with err set (a bad file; or TLS was off at start and cannot
 * be turned on now) or INV_ENOMEM. */
int inv_rpc_server_reload_tls(inv_rpc_server_t *s, const char *cert,
                              const char *key, const char *client_ca,
                              char *what, size_t whatlen, char *err,
                              size_t errlen);

/* Takes the authentication back from every session whose principal keep()
 * refuses (a tenant removed by a reload): its next request other than
 * hello and ping gets EAUTH. Returns how many sessions lost it. */
size_t inv_rpc_server_revoke(inv_rpc_server_t *s,
                             int (*keep)(void *data, const char *principal),
                             void *data);

/* The principal the request's session authenticated as (see auth_cb), or
 * "" when none. */
const char *inv_rpc_req_principal(const inv_rpc_req_t *req);

/* 1 for a notification (its reply will be discarded). */
int inv_rpc_req_is_notify(const inv_rpc_req_t *req);

/* The peer's address as text ("127.0.0.1:53122"), for logs. */
const char *inv_rpc_req_peer(const inv_rpc_req_t *req);

/* Packs the response header with a nil error and returns the packer for
 * the result: pack exactly one object, then call inv_rpc_reply_end(). */
msgpack_packer *inv_rpc_reply_begin(inv_rpc_req_t *req);

/* Sends the response and frees req. */
void inv_rpc_reply_end(inv_rpc_req_t *req);

/* Sends [1, msgid, {"code": inv_err_name(code), "message": ...}, nil],
 * counts it, and frees req. code is an INV_E* value. This is the wire
 * boundary: an internal code (inv_err_is_wire() is 0: ENOMEM, EIO, ...)
 * goes out, and is counted, as EUNAVAIL (retryable), with the message
 * unchanged, so handlers need not map codes themselves. */
void inv_rpc_reply_error(inv_rpc_req_t *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns 1 when msg's method is name (a NUL-terminated string). */
int inv_rpc_method_is(const inv_msg_t *msg, const char *name);

/* One row of a daemon's method table. */
typedef struct inv_rpc_method_s {
  const char *name;      /* NULL ends the table */
  inv_rpc_handler_cb cb; /* called with the data given to the dispatch */
} inv_rpc_method_t;

/* Calls the handler of the row of table that names msg's method, with
 * data; a method no row names gets ENOMETHOD ("no method \"x\"", the name
 * cut to 64 bytes). Every daemon's handler is this call on its table, so
 * the unknown-method answer exists once. */
void inv_rpc_dispatch(inv_rpc_req_t *req, const inv_msg_t *msg,
                      const inv_rpc_method_t *table, void *data);

/* What a daemon says of itself in its hello answer. */
typedef struct inv_rpc_hello_s {
  const char *server; /* "inval-publisher", "inval-worker" */
  uint64_t max_message_bytes;
  int check_params; /* 1: params must be [{"proto": 1, ...}] */
} inv_rpc_hello_t;

/*
 * Answers hello (PROTOCOL.md §5). With check_params, params must be one
 * map with "proto": INV_PROTO_VERSION and an optional str or bin "client";
 * otherwise req gets EINVAL saying what is wrong and NULL is returned
 * (req is finished). Else packs a map of 4 + extra entries, "server",
 * "version", "proto" and "max_message_bytes" first, and returns the packer
 * for the caller's extra key-value pairs: pack exactly extra pairs, then
 * call inv_rpc_reply_end(). The token is checked before the handler runs
 * (see auth_token above), not here.
 */
msgpack_packer *inv_rpc_hello_begin(inv_rpc_req_t *req, const inv_msg_t *msg,
                                    const inv_rpc_hello_t *hello, size_t extra);

#endif
