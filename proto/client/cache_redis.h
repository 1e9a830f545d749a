/*
 * The raw commands of the cache read path's Redis router (inval/cache.h
 * has the router itself: open, close and what it reports). Internal: the
 * read path (proto/client/cache.c) and invalctl send Redis commands with these,
 * on blocking connections (redis_sync.h).
 */
#ifndef INV_CACHE_REDIS_H
#define INV_CACHE_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "inval/cache.h"
#include "proto/scripts.h"

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
int inv_cache_redis_eval(inv_cache_redis_t *r, const inv_script_t *s, int nkeys,
                         const char **keys, const size_t *klens, int nargs,
                         const char **args, const size_t *alens,
                         redisReply **reply);

#endif
