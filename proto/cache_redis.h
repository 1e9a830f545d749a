/*
 * A small synchronous Redis router for the cache read path (cache.h), on
 * blocking connections (redis_sync.h: plain TCP or TLS, AUTH with an ACL
 * user): standalone Redis or a Redis Cluster.
 *
 * A cluster is recognised by CLUSTER SLOTS at open; commands then go to
 * the node owning their key's slot, with MOVED (the slot map entry is
 * updated and the command resent) and ASK (ASKING + the command, on the
 * named node) followed up to 16 times, and TRYAGAIN / CLUSTERDOWN retried
 * every 50 ms for up to 2 s. A dropped connection is reopened
 * and the map refreshed once per command. Standalone Redis gets every
 * command on its one connection.
 *
 * One router is one set of blocking connections: it is not thread-safe.
 * Give each thread its own.
 */
#ifndef INV_CACHE_REDIS_H
#define INV_CACHE_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/scripts.h"

typedef struct inv_cache_redis_s inv_cache_redis_t;

struct inv_tls_ctx_s;

typedef struct inv_cache_redis_opts_s {
  int timeout_ms;       /* connect and command timeout; 0: 2000 */
  const char *password; /* NULL: no AUTH */
  const char *username; /* ACL user (with password); NULL: "default" */
  struct inv_tls_ctx_s *tls; /* TLS client context (common/tls.h; a
                              * reference is taken), or NULL: plain TCP */
} inv_cache_redis_opts_t;

/* Connects to the first reachable seed ("host:port") and learns whether it
 * is a cluster. opts may be NULL. Returns 0 and *out, or INV_EINVAL (a bad
 * seed), INV_ECONNREFUSED (no seed answered), INV_EREDIS, INV_ENOMEM, each
 * with a message in err. */
int inv_cache_redis_open(const char *const *seeds, size_t nseeds,
                         const inv_cache_redis_opts_t *opts,
                         inv_cache_redis_t **out, char *err, size_t errlen);

/* Closes every connection and frees r. Accepts NULL. */
void inv_cache_redis_close(inv_cache_redis_t *r);

/* 1 when r talks to a cluster. */
int inv_cache_redis_is_cluster(const inv_cache_redis_t *r);

/* Sends one command whose keys all hash to the slot of key[0..keylen) and
 * returns its reply in *reply (the caller frees it with freeReplyObject;
 * an error reply other than a redirection is returned as a reply). Returns
 * 0, or INV_EIO / INV_ETIMEDOUT (connection lost or silent, after one
 * reconnect), INV_EREDIS (too many redirections), INV_ENOMEM. */
int inv_cache_redis_command(inv_cache_redis_t *r, const char *key,
                            size_t keylen, int argc, const char **argv,
                            const size_t *lens, redisReply **reply);

/* Sends n commands (1 <= n <= INV_CACHE_PIPELINE_MAX) whose keys all hash
 * to the slot of key in one write and reads their replies, in order, into
 * replies[0..n): one round trip where inv_cache_redis_command would take n.
 * A reply that is a redirection, TRYAGAIN or CLUSTERDOWN, or a connection
 * lost before every reply came, makes that command and every one after it
 * go again one at a time through inv_cache_redis_command, so they still
 * run in order; a command after the first may then run twice, so only the
 * first may be one whose repetition matters (a SET NX followed by reads).
 * Returns 0 with every reply (the caller frees each with freeReplyObject),
 * or inv_cache_redis_command's codes (and INV_EINVAL for a bad n) with no
 * reply left. */
#define INV_CACHE_PIPELINE_MAX 4
int inv_cache_redis_pipeline(inv_cache_redis_t *r, const char *key,
                             size_t keylen, int n, const int *argc,
                             const char **const *argv,
                             const size_t *const *lens, redisReply **replies);

/* Runs script s with EVALSHA on the slot of keys[0], falling back to EVAL
 * on NOSCRIPT (which loads it for the next call). Same returns as
 * inv_cache_redis_command. */
int inv_cache_redis_eval(inv_cache_redis_t *r, const inv_script_t *s,
                         int nkeys, const char **keys, const size_t *klens,
                         int nargs, const char **args, const size_t *alens,
                         redisReply **reply);

/* MOVED and ASK replies followed so far. */
uint64_t inv_cache_redis_redirects(const inv_cache_redis_t *r);

/* The last error message (connection or protocol), "" if none. */
const char *inv_cache_redis_errstr(const inv_cache_redis_t *r);

#endif
