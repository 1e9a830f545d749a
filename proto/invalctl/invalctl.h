/*
 * Private to invalctl: what its command files share. invalctl.c parses the
 * global options and dispatches to one inv__ctl_cmd_* function per command,
 * each in its own file (invalctl_invalidate.c, invalctl_stats.c, ...).
 *
 * Every command returns the process exit code:
 *   0  success
 *   1  the server replied with an error ("error: EINVAL: ...")
 *   2  usage error
 *   3  cannot connect, or the connection failed or timed out
 *   4  invalidate --wait: acked, but not applied by every worker in time
 * and prints its own error line on stderr.
 */
#ifndef INV_INVALCTL_H
#define INV_INVALCTL_H

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>

#include "inval/client.h"
#include "proto/event.h"

enum {
  INV_CTL_EXIT_OK = 0,
  INV_CTL_EXIT_SERVER = 1,
  INV_CTL_EXIT_USAGE = 2,
  INV_CTL_EXIT_CONNECT = 3,
  INV_CTL_EXIT_WAIT = 4, /* invalidate --wait: acked, not applied in time */
  INV_CTL_EXIT_CHECK = 5 /* check: a worker or a node is unwell */
};

/* The global options, given before or after the command (up to "--"). */
typedef struct inv_ctl_opts_s {
  char host[256];
  int port;
  int tls;
  const char *tls_ca;
  int insecure; /* TLS without certificate verification */
  const char *token;
  int timeout_ms;
} inv_ctl_opts_t;

/* One command: its name, a one-line summary, its usage text (for help
 * COMMAND) and its entry point. argv[0] is the command name. */
typedef struct inv_ctl_cmd_s {
  const char *name;
  const char *summary;
  const char *usage;
  int (*run)(const inv_ctl_opts_t *opts, int argc, char **argv);
} inv_ctl_cmd_t;

extern const inv_ctl_cmd_t inv__ctl_cmd_invalidate;
extern const inv_ctl_cmd_t inv__ctl_cmd_stats;
extern const inv_ctl_cmd_t inv__ctl_cmd_ping;
extern const inv_ctl_cmd_t inv__ctl_cmd_tail;
extern const inv_ctl_cmd_t inv__ctl_cmd_get;
extern const inv_ctl_cmd_t inv__ctl_cmd_bench;
extern const inv_ctl_cmd_t inv__ctl_cmd_check;

/* Prints "error: MESSAGE" and a pointer to help on stderr; returns
 * INV_CTL_EXIT_USAGE. */
int inv__ctl_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Connects to the publisher named by opts. Returns 0 with *out, or prints
 * the error and returns the exit code (1 when the server refused hello,
 * 3 when it could not be reached). */
int inv__ctl_connect(const inv_ctl_opts_t *opts, inv_client_t **out);

/* As inv__ctl_connect(), but without a token it skips hello: a server
 * with auth-token serves ping before hello. */
int inv__ctl_connect_ping(const inv_ctl_opts_t *opts, inv_client_t **out);

/* Connects to the server named by opts and asks for its stats. Returns 0
 * with *c and *res (the caller frees both), or prints the error and returns
 * the exit code, with nothing left to free. */
int inv__ctl_fetch_stats(const inv_ctl_opts_t *opts, inv_client_t **c,
                         inv_client_result_t **res);

/* Prints the error of a failed call on c (code rc) and returns the exit
 * code: 1 for an error the server sent, 3 for a transport failure. */
int inv__ctl_call_error(const inv_ctl_opts_t *opts, inv_client_t *c, int rc);

/* The Redis connection options of tail, get and bench --e2e (redis-cli's
 * names behind "redis-", since --tls and --insecure belong to the
 * publisher connection). The password comes from $INVAL_REDIS_PASSWORD
 * only, never from the command line, where `ps` shows it. */
typedef struct inv_ctl_redis_s {
  const char *user;     /* --redis-user */
  const char *password; /* $INVAL_REDIS_PASSWORD */
  int tls;              /* --redis-tls (implied by the file options) */
  const char *cacert, *cert, *key, *sni; /* --redis-cacert/-cert/-key/-sni */
  int insecure;                          /* --redis-insecure */
  struct inv_tls_ctx_s *tls_ctx;         /* made by inv__ctl_redis_setup() */
} inv_ctl_redis_t;

#define INV_CTL_REDIS_USAGE                                                    \
  "  --redis-user USER      ACL user for Redis (password: "                    \
  "$INVAL_REDIS_PASSWORD)\n"                                                   \
  "  --redis-tls            TLS to Redis; --redis-cacert FILE, --redis-cert\n" \
  "                         FILE --redis-key FILE (client certificate),\n"     \
  "                         --redis-sni NAME, --redis-insecure (tests only)\n"

/* Takes the Redis option at argv[*i] into ro. Returns 1 when taken (*i
 * moved past its value), 0 when not one, -1 after a usage error. */
int inv__ctl_redis_opt(const char *cmd, int argc, char **argv, int *i,
                       inv_ctl_redis_t *ro);

/* Reads $INVAL_REDIS_PASSWORD and makes the TLS context. Returns 0, or
 * prints the error and returns an exit code. */
int inv__ctl_redis_setup(inv_ctl_redis_t *ro);

/* Releases what inv__ctl_redis_setup() made. */
void inv__ctl_redis_free(inv_ctl_redis_t *ro);

/* Parses a non-negative decimal integer that fits in max. Returns 0 or -1. */
int inv__ctl_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* Writes bytes with every byte outside printable ASCII (and the space and
 * backslash) escaped as \xNN or \\, so that one value stays one field. */
void inv__ctl_print_escaped(FILE *out, const char *p, size_t len);

/* Writes o as JSON: exact integers, strings (str and bin alike) escaped so
 * that the output is valid JSON whatever their bytes (bytes that are not
 * UTF-8 become \u00XX), map keys of any type as strings. */
void inv__ctl_print_json(FILE *out, const msgpack_object *o, int indent,
                         int level);

/* Formats a ms-since-epoch time as "2026-11-25T06:30:00.123Z". */
void inv__ctl_format_ts(uint64_t ts_ms, char *out, size_t outlen);

#endif
