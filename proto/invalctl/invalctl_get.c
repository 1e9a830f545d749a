/*
 * invalctl get KEY: shows what Redis holds for one cached key under the
 * regeneration contract (proto/keyname.h): the value, its stale copy and
 * its lock (holder token), each with its TTL, read through the read path's
 * router (standalone or cluster, MOVED/ASK followed). For debugging a
 * stampede or a stuck regeneration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/slot.h"
#include "proto/client/cache_redis.h"
#include "proto/invalctl/invalctl.h"
#include "proto/keyname.h"

#define DEFAULT_REDIS "127.0.0.1:7000"
#define MAX_SEEDS 16

/* Prints "WHAT NAME VALUE ttl=T" (or "WHAT NAME (absent)") for one key.
 * label is "value", "stale" or "lock" (whose value is its holder's token).
 * Returns 0 or an exit code. */
static int show(inv_cache_redis_t *r, const char *label, const char *name,
                size_t len) {
  const char *gargv[2] = {"GET", name}, *targv[2] = {"PTTL", name};
  size_t lens[2] = {3, len}, tlens[2] = {4, len};
  redisReply *v = NULL, *t = NULL;
  int rc = inv_cache_redis_command(r, name, len, 2, gargv, lens, &v);
  if (rc == 0) rc = inv_cache_redis_command(r, name, len, 2, targv, tlens, &t);
  if (rc != 0) {
    fprintf(stderr, "error: redis: %s (%s)\n", inv_cache_redis_errstr(r),
            inv_strerror(rc));
    freeReplyObject(v);
    return INV_CTL_EXIT_CONNECT;
  }
  int exit_code = INV_CTL_EXIT_OK;
  printf("%-5s ", label);
  inv__ctl_print_escaped(stdout, name, len);
  if (v->type == REDIS_REPLY_NIL) {
    printf(" (absent)\n");
  } else if (v->type == REDIS_REPLY_STRING && t->type == REDIS_REPLY_INTEGER) {
    printf(strcmp(label, "lock") == 0 ? " holder=" : " ");
    inv__ctl_print_escaped(stdout, v->str, v->len);
    if (t->integer < 0)
      printf(" ttl=none\n");
    else
      printf(" ttl=%lldms\n", t->integer);
  } else {
    /* A key of another type (WRONGTYPE) or an error reply. */
    printf(" (unreadable: %s)\n",
           v->type == REDIS_REPLY_ERROR ? v->str : "not a string");
    exit_code = INV_CTL_EXIT_SERVER;
  }
  freeReplyObject(v);
  freeReplyObject(t);
  return exit_code;
}

static int run(const inv_ctl_opts_t *opts, int argc, char **argv) {
  const char *node = getenv("INVAL_REDIS");
  const char *key = NULL;
  char seedbuf[4096];
  const char *seeds[MAX_SEEDS];
  size_t nseeds = 0;
  char err[256];
  inv_cache_redis_t *r;
  inv_regen_names_t names;
  inv_ctl_redis_t rds = {0};
  int i, exit_code, taken;
  if (node == NULL || *node == '\0') node = DEFAULT_REDIS;
  for (i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "-r") == 0 || strcmp(argv[i], "--redis") == 0) &&
        i + 1 < argc) {
      node = argv[++i];
    } else if ((taken = inv__ctl_redis_opt("get", argc, argv, &i, &rds)) != 0) {
      if (taken < 0) return INV_CTL_EXIT_USAGE;
    } else if (key == NULL &&
               (argv[i][0] != '-' || strcmp(argv[i], "--") == 0)) {
      if (strcmp(argv[i], "--") == 0) {
        if (i + 1 >= argc) break;
        i++;
      }
      key = argv[i];
    } else {
      return inv__ctl_usage_error("get", "unexpected argument %s", argv[i]);
    }
  }
  if (key == NULL || *key == '\0')
    return inv__ctl_usage_error("get", "KEY is required");
  if (strlen(node) >= sizeof(seedbuf))
    return inv__ctl_usage_error("get", "-r is too long");
  strcpy(seedbuf, node);
  for (char *tok = strtok(seedbuf, ","); tok != NULL; tok = strtok(NULL, ",")) {
    if (nseeds == MAX_SEEDS)
      return inv__ctl_usage_error("get", "at most %d addresses in -r",
                                  MAX_SEEDS);
    seeds[nseeds++] = tok;
  }
  if ((exit_code = inv__ctl_redis_setup(&rds)) != 0) return exit_code;
  inv_cache_redis_opts_t ro = {opts->timeout_ms, rds.password, rds.user,
                               rds.tls_ctx};
  int rc = inv_cache_redis_open(seeds, nseeds, &ro, &r, err, sizeof(err));
  inv__ctl_redis_free(&rds); /* the router holds its own reference */
  if (rc == INV_EINVAL) return inv__ctl_usage_error("get", "%s", err);
  if (rc != 0) {
    fprintf(stderr, "error: %s\n", err);
    return INV_CTL_EXIT_CONNECT;
  }
  if (inv_regen_names(key, strlen(key), &names) != 0) {
    fprintf(stderr, "error: out of memory\n");
    inv_cache_redis_close(r);
    return INV_CTL_EXIT_CONNECT;
  }
  printf("slot  %u\n", inv_key_slot(key, strlen(key)));
  exit_code = show(r, "value", key, strlen(key));
  if (exit_code == 0 && names.keeps_slot) {
    exit_code = show(r, "stale", names.stale, names.stale_len);
    if (exit_code == 0) exit_code = show(r, "lock", names.lock, names.lock_len);
  } else if (exit_code == 0) {
    printf(
        "note  this key has no lock or stale copy: their names would leave "
        "its hash slot, so readers use plain GET/SET\n");
  }
  inv_regen_names_free(&names);
  inv_cache_redis_close(r);
  return exit_code;
}

const inv_ctl_cmd_t inv__ctl_cmd_get = {
    "get", "show a cached key's value, stale copy and lock, with their TTLs",
    "Usage: invalctl [OPTIONS] get [-r HOST:PORT[,HOST:PORT...]] KEY\n"
    "\n"
    "Reads KEY and, under the regeneration contract (proto/PROTOCOL.md),\n"
    "its stale copy and its lock, from standalone Redis or a cluster (any\n"
    "node as seed). Prints:\n"
    "  slot  SLOT\n"
    "  value KEY VALUE ttl=none|Nms     or  value KEY (absent)\n"
    "  stale NAME VALUE ttl=...         or  stale NAME (absent)\n"
    "  lock  NAME holder=TOKEN ttl=...  or  lock NAME (absent)\n"
    "Names and values are escaped (\\xNN) where a byte is not printable.\n"
    "\n"
    "  -r, --redis HOST:PORT  the Redis node(s) (default " DEFAULT_REDIS
    ", or $INVAL_REDIS)\n" INV_CTL_REDIS_USAGE
    "\n"
    "Exit codes: 0 shown, 1 a key could not be read (not a string), 2 usage,\n"
    "3 cannot connect or the connection was lost.\n",
    run};
