/*
 * The Redis client directives the daemons share: who to authenticate as
 * (an ACL user, a password or a file holding it) and how to speak TLS to
 * Redis. Each daemon embeds one inv_redis_conf_t in its config struct and
 * lists INV_REDIS_CONF_ROWS in its directive table, so the publisher and
 * the worker spell and check these directives the same way.
 *
 * Secrets: redis-password is a SECRET row (--check-config prints "set, not
 * shown"), and redis-password-file keeps the password off the command line
 * entirely (where `ps` shows it to every user of the machine).
 */
#ifndef INV_REDIS_CONF_H
#define INV_REDIS_CONF_H

#include <stddef.h>

#include "common/base/config.h"
#include "common/redis/redis_conn.h"

typedef struct inv_redis_conf_s {
  char *user;          /* NULL: the "default" user */
  char *password;      /* NULL: see password_file, else no AUTH */
  char *password_file; /* read at start; one trailing newline stripped */
  int tls;             /* speak TLS to Redis */
  char *tls_ca_file;   /* NULL with tls_ca_dir NULL: the system store */
  char *tls_ca_dir;
  char *tls_cert_file; /* client certificate (mTLS), with tls_key_file */
  char *tls_key_file;
  char *tls_server_name; /* NULL: verify the address connected to */
  int tls_insecure;      /* no certificate verification: tests only */
} inv_redis_conf_t;

/* The rows of the directives above, for a daemon's table: type is the
 * daemon's config struct and field the inv_redis_conf_t inside it. */
#define INV_REDIS_CONF_ROWS(type, field)                                       \
  {"redis-user",                                                               \
   INV_CONF_STRING,                                                            \
   offsetof(type, field.user),                                                 \
   0,                                                                          \
   0,                                                                          \
   NULL,                                                                       \
   NULL,                                                                       \
   "ACL user: AUTH user password on every Redis connection"},                  \
      {"redis-password",                                                       \
       INV_CONF_SECRET,                                                        \
       offsetof(type, field.password),                                         \
       0,                                                                      \
       0,                                                                      \
       NULL,                                                                   \
       NULL,                                                                   \
       "password sent with AUTH on every Redis connection"},                   \
      {"redis-password-file",                                                  \
       INV_CONF_STRING,                                                        \
       offsetof(type, field.password_file),                                    \
       0,                                                                      \
       0,                                                                      \
       NULL,                                                                   \
       NULL,                                                                   \
       "file holding the Redis password (read at start; keep it mode 0600)"},  \
      {"redis-tls", INV_CONF_BOOL, offsetof(type, field.tls),          0, 0,   \
       "no",        NULL,          "speak TLS to Redis (its tls-port)"},       \
      {"redis-tls-ca-cert-file",                                               \
       INV_CONF_STRING,                                                        \
       offsetof(type, field.tls_ca_file),                                      \
       0,                                                                      \
       0,                                                                      \
       NULL,                                                                   \
       NULL,                                                                   \
       "CA certificates (PEM) that verify Redis (default: the system store)"}, \
      {"redis-tls-ca-cert-dir",                                                \
       INV_CONF_STRING,                                                        \
       offsetof(type, field.tls_ca_dir),                                       \
       0,                                                                      \
       0,                                                                      \
       NULL,                                                                   \
       NULL,                                                                   \
       "directory of hashed CA certificates that verify Redis"},               \
      {"redis-tls-cert-file",                                                  \
       INV_CONF_STRING,                                                        \
       offsetof(type, field.tls_cert_file),                                    \
       0,                                                                      \
       0,                                                                      \
       NULL,                                                                   \
       NULL,                                                                   \
       "client certificate (PEM) for Redis's tls-auth-clients"},               \
      {"redis-tls-key-file",                                                   \
       INV_CONF_STRING,                                                        \
       offsetof(type, field.tls_key_file),                                     \
       0,                                                                      \
       0,                                                                      \
       NULL,                                                                   \
       NULL,                                                                   \
       "private key (PEM) of redis-tls-cert-file"},                            \
      {"redis-tls-server-name",                                                \
       INV_CONF_STRING,                                                        \
       offsetof(type, field.tls_server_name),                                  \
       0,                                                                      \
       0,                                                                      \
       NULL,                                                                   \
       NULL,                                                                   \
       "name sent in SNI and verified in Redis's certificate (default: the "   \
       "address connected to)"},                                               \
  {                                                                            \
    "redis-tls-insecure", INV_CONF_BOOL, offsetof(type, field.tls_insecure),   \
        0, 0, "no", NULL, "do not verify Redis's certificate (tests only)"     \
  }

/*
 * Fills o->password, o->username and o->tls from conf: reads the password
 * file (refused when both redis-password and redis-password-file are set;
 * a warning when the file is readable by group or others) and creates the
 * TLS client context. Returns 0, or INV_ECONFIG / INV_ENOMEM with err set
 * (naming the directive and the file). On success release the filled
 * fields with inv_redis_conf_release() once every connection made with o
 * was created (connections keep their own copies).
 */
int inv_redis_conf_apply(const inv_redis_conf_t *conf, inv_redis_opts_t *o,
                         char *err, size_t errlen);

/*
 * Creates the TLS client context that conf describes (redis-tls yes),
 * reading its CA, certificate and key files now. inv_redis_conf_apply()
 * uses it at start, and a reload (SIGHUP) to pick up rotated files.
 * Returns 0 and *out (the caller owns one reference), or INV_ECONFIG /
 * INV_ENOMEM with err naming the directive and the file.
 */
int inv_redis_conf_tls(const inv_redis_conf_t *conf, struct inv_tls_ctx_s **out,
                       char *err, size_t errlen);

/* Releases what inv_redis_conf_apply() put in o and clears those fields. */
void inv_redis_conf_release(inv_redis_opts_t *o);

/*
 * Reads a password file: the whole file, one trailing "\n" or "\r\n"
 * stripped, at most 4096 bytes, no NUL. Sets *warn to 1 when the file is
 * readable by group or others. Returns 0 and *out (the caller frees it), or
 * INV_ECONFIG / INV_ENOMEM with err set.
 */
int inv_redis_read_password_file(const char *path, char **out, int *warn,
                                 char *err, size_t errlen);

#endif
