/*
 * The Redis client directives (see redis_conf.h): turning them into
 * connection options once, at start.
 */
#include "common/redis/redis_conf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "inval/errors.h"
#include "common/base/log.h"
#include "common/tls/tls.h"

/* A password longer than this is a wrong file, not a password. */
#define PASSWORD_MAX 4096

int inv_redis_read_password_file(const char *path, char **out, int *warn,
                                 char *err, size_t errlen) {
  char buf[PASSWORD_MAX + 2];
  struct stat st;
  size_t n;
  FILE *f;

  *out = NULL;
  *warn = 0;
  f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errlen, "redis-password-file %s: cannot open: %s", path,
             strerror(errno));
    return INV_ECONFIG;
  }
  if (fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    *warn = 1;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  if (ferror(f)) {
    snprintf(err, errlen, "redis-password-file %s: cannot read: %s", path,
             strerror(errno));
    fclose(f);
    return INV_ECONFIG;
  }
  fclose(f);
  if (n > PASSWORD_MAX) {
    snprintf(err, errlen, "redis-password-file %s: longer than %d bytes", path,
             PASSWORD_MAX);
    return INV_ECONFIG;
  }
  buf[n] = '\0';
  if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  if (n > 0 && buf[n - 1] == '\r') buf[--n] = '\0';
  if (strlen(buf) != n) {
    snprintf(err, errlen, "redis-password-file %s: holds a NUL byte", path);
    return INV_ECONFIG;
  }
  if (n == 0) {
    snprintf(err, errlen, "redis-password-file %s: is empty", path);
    return INV_ECONFIG;
  }
  *out = strdup(buf);
  memset(buf, 0, sizeof(buf));
  if (*out == NULL) {
    snprintf(err, errlen, "out of memory");
    return INV_ENOMEM;
  }
  return 0;
}

static int is_set(const char *s) { return s != NULL && s[0] != '\0'; }

int inv_redis_conf_tls(const inv_redis_conf_t *conf, inv_tls_ctx_t **out,
                       char *err, size_t errlen) {
  inv_tls_client_conf_t tc = {conf->tls_ca_file,     conf->tls_ca_dir,
                              conf->tls_cert_file,   conf->tls_key_file,
                              conf->tls_server_name, conf->tls_insecure};
  char why[400];
  int rc = inv_tls_client_ctx_new(&tc, out, why, sizeof(why));
  if (rc != 0) snprintf(err, errlen, "redis-tls: %s", why);
  return rc;
}

int inv_redis_conf_apply(const inv_redis_conf_t *conf, inv_redis_opts_t *o,
                         char *err, size_t errlen) {
  char *password = NULL;
  inv_tls_ctx_t *tls = NULL;
  int rc, warn = 0;

  if (is_set(conf->password) && is_set(conf->password_file)) {
    snprintf(err, errlen,
             "redis-password and redis-password-file are both "
             "set; keep one");
    return INV_ECONFIG;
  }
  if (is_set(conf->password_file)) {
    rc = inv_redis_read_password_file(conf->password_file, &password, &warn,
                                      err, errlen);
    if (rc != 0) return rc;
    if (warn)
      inv_log_warn("config",
                   "redis-password-file %s is readable by group "
                   "or others; chmod 600 it",
                   conf->password_file);
  } else if (is_set(conf->password)) {
    password = strdup(conf->password);
    if (password == NULL) goto nomem;
  }
  if (is_set(conf->user) && password == NULL) {
    snprintf(err, errlen,
             "redis-user %s needs redis-password or "
             "redis-password-file",
             conf->user);
    return INV_ECONFIG;
  }
  if (conf->tls) {
    rc = inv_redis_conf_tls(conf, &tls, err, errlen);
    if (rc != 0) {
      free(password);
      return rc;
    }
  } else if (is_set(conf->tls_ca_file) || is_set(conf->tls_ca_dir) ||
             is_set(conf->tls_cert_file) || is_set(conf->tls_key_file) ||
             is_set(conf->tls_server_name) || conf->tls_insecure) {
    /* A TLS setting without TLS is a half-done setup that would otherwise
     * silently send the password in clear text. */
    snprintf(err, errlen,
             "redis-tls-* settings are given but redis-tls is "
             "no; add redis-tls yes");
    free(password);
    return INV_ECONFIG;
  }
  o->password = password;
  o->username = is_set(conf->user) ? conf->user : NULL;
  o->tls = tls;
  return 0;

nomem:
  snprintf(err, errlen, "out of memory");
  return INV_ENOMEM;
}

void inv_redis_conf_release(inv_redis_opts_t *o) {
  if (o->password != NULL) {
    /* The const is ours to drop: apply() allocated this copy. */
    char *p = (char *)(uintptr_t)o->password;
    memset(p, 0, strlen(p));
    free(p);
  }
  inv_tls_ctx_free(o->tls);
  o->password = NULL;
  o->username = NULL;
  o->tls = NULL;
}
