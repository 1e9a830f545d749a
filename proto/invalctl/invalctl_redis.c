/*
 * invalctl's Redis connection options (see inv_ctl_redis_t in invalctl.h),
 * shared by the commands that talk to Redis directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tls/tls.h"
#include "proto/invalctl/invalctl.h"

int inv__ctl_redis_opt(const char *cmd, int argc, char **argv, int *i,
                       inv_ctl_redis_t *ro) {
  static const char *const valued[] = {"--redis-user", "--redis-cacert",
                                       "--redis-cert", "--redis-key",
                                       "--redis-sni",  NULL};
  const char *a = argv[*i];
  size_t k;
  if (strcmp(a, "--redis-tls") == 0) {
    ro->tls = 1;
    return 1;
  }
  if (strcmp(a, "--redis-insecure") == 0) {
    ro->insecure = ro->tls = 1;
    return 1;
  }
  if (strcmp(a, "--redis-password") == 0) {
    inv__ctl_usage_error(cmd,
                         "the Redis password is not taken from the "
                         "command line (ps shows it): set "
                         "$INVAL_REDIS_PASSWORD");
    return -1;
  }
  for (k = 0; valued[k] != NULL; k++) {
    if (strcmp(a, valued[k]) != 0) continue;
    if (*i + 1 >= argc) {
      inv__ctl_usage_error(cmd, "%s needs a value", a);
      return -1;
    }
    const char *v = argv[++*i];
    switch (k) {
      case 0:
        ro->user = v;
        break;
      case 1:
        ro->cacert = v;
        ro->tls = 1;
        break;
      case 2:
        ro->cert = v;
        ro->tls = 1;
        break;
      case 3:
        ro->key = v;
        ro->tls = 1;
        break;
      default:
        ro->sni = v;
        ro->tls = 1;
        break;
    }
    return 1;
  }
  return 0;
}

int inv__ctl_redis_setup(inv_ctl_redis_t *ro) {
  const char *pw = getenv("INVAL_REDIS_PASSWORD");
  char err[512];
  if (pw != NULL && pw[0] != '\0') ro->password = pw;
  if (ro->user != NULL && ro->password == NULL) {
    fprintf(stderr, "error: --redis-user %s needs $INVAL_REDIS_PASSWORD\n",
            ro->user);
    return INV_CTL_EXIT_USAGE;
  }
  if (!ro->tls) return INV_CTL_EXIT_OK;
  inv_tls_client_conf_t tc = {ro->cacert, NULL,    ro->cert,
                              ro->key,    ro->sni, ro->insecure};
  if (inv_tls_client_ctx_new(&tc, &ro->tls_ctx, err, sizeof err) != 0) {
    fprintf(stderr, "error: redis TLS: %s\n", err);
    return INV_CTL_EXIT_USAGE;
  }
  return INV_CTL_EXIT_OK;
}

void inv__ctl_redis_free(inv_ctl_redis_t *ro) {
  inv_tls_ctx_free(ro->tls_ctx);
  ro->tls_ctx = NULL;
}
