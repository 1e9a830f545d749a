/*
 * The cache read path: cache-aside with a regeneration lock, the client
 * side of proto/PROTOCOL.md, "Regeneration: key contract, scripts and read
 * path".
 *
 * inv_cache_get_or_fill(K):
 *   1. GET K: a hit is returned (INV_CACHE_HIT).
 *   2. On a miss, SET L(K) <token> NX PX lock_ttl_ms, with a fresh 128-bit
 *      random token, and MGET K S(K) right behind it in the same round
 *      trip (pipelined; the names share K's slot, so the MGET sees K or
 *      S(K) whenever either exists). The winner returns K when it is there
 *      (a previous holder committed just before our SET NX: INV_CACHE_WAITED,
 *      and the lock given back); otherwise it calls regen_cb and commits
 *      with commit.lua, which writes K only while L(K) still holds the
 *      token. A refused commit means an invalidation fenced the
 *      regeneration: the fresh value is returned (INV_CACHE_FENCED) and the
 *      cache is left alone. A failing regen_cb gives the lock back
 *      (unlock.lua) and its error is returned.
 *   3. A loser returns K when the MGET found it (committed since our GET,
 *      INV_CACHE_WAITED), else the stale copy S(K) when there is one
 *      (stale = 1, INV_CACHE_STALE). Otherwise it polls K, L(K) and S(K)
 *      in one MGET with jittered exponential backoff for up to wait_ms,
 *      returning K (INV_CACHE_WAITED) or a stale copy that a soft
 *      invalidation made meanwhile (INV_CACHE_STALE), and tries the lock
 *      again (step 2) whenever it is gone, so that a crashed regenerator's
 *      lock, once expired, is taken over. When wait_ms runs out it calls
 *      regen_cb itself and returns that value without caching it
 *      (INV_CACHE_FALLBACK, counted). With no_stale, S(K) is never read.
 * A key whose lock name cannot keep its slot (keyname.h) is read with plain
 * GET, regenerated and SET with its TTL (INV_CACHE_UNLOCKED).
 *
 * Threads: everything here runs on the caller's thread and blocks on
 * Redis; a router (below) and a stats struct belong to one thread.
 */
#ifndef INV_CACHE_H
#define INV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "inval/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the Redis router ------------------------------------------------
 * A small synchronous Redis router on blocking connections (plain TCP or
 * TLS, AUTH with an ACL user): standalone Redis or a Redis Cluster.
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
typedef struct inv_cache_redis_s inv_cache_redis_t;

struct inv_tls_ctx_s;

typedef struct inv_cache_redis_opts_s {
  int timeout_ms;            /* connect and command timeout; 0: 2000 */
  const char *password;      /* NULL: no AUTH */
  const char *username;      /* ACL user (with password); NULL: "default" */
  struct inv_tls_ctx_s *tls; /* NULL: plain TCP. A TLS client context of
                              * the service's own tools (a reference is
                              * taken); not made by the public API yet */
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

/* MOVED and ASK replies followed so far. */
uint64_t inv_cache_redis_redirects(const inv_cache_redis_t *r);

/* The last error message (connection or protocol), "" if none. */
const char *inv_cache_redis_errstr(const inv_cache_redis_t *r);

/* ---- the read path ---------------------------------------------------- */

/* Produces the value of key from the source of truth. On success stores a
 * malloc'ed buffer in *data (ownership passes to the caller of
 * inv_cache_get_or_fill) with its length in *len and returns 0; on failure
 * returns a negative code of the callback's choosing, which
 * inv_cache_get_or_fill returns unchanged. */
typedef int (*inv_regen_cb)(void *arg, const char *key, size_t keylen,
                            char **data, size_t *len);

/* Counters of one thread's read path; zero-initialise. */
typedef struct inv_cache_stats_s {
  uint64_t hits;          /* GET K answered */
  uint64_t misses;        /* GET K was empty on the first try */
  uint64_t regenerations; /* regen_cb calls, fallbacks included */
  uint64_t commits;       /* commit.lua wrote K */
  uint64_t fenced;        /* commit.lua refused: the lock was gone */
  uint64_t stale_served;  /* the stale copy was returned */
  uint64_t waited;        /* another reader's fresh value was returned */
  uint64_t fallbacks;     /* a loser gave up waiting and regenerated */
  uint64_t regen_errors;  /* regen_cb failed (the lock was given back) */
  uint64_t takeovers;     /* a loser took the lock while polling */
} inv_cache_stats_t;

typedef struct inv_cache_opts_s {
  uint64_t lock_ttl_ms;     /* 0: 5000. Longer than any regeneration. */
  uint64_t wait_ms;         /* a loser's polling budget; 0: 1000 */
  uint64_t backoff_min_ms;  /* first poll delay; 0: 2 */
  uint64_t backoff_max_ms;  /* delay cap (doubles up to it); 0: 50 */
  int no_stale;             /* 1: never return the stale copy */
  inv_cache_stats_t *stats; /* not owned; NULL: not counted */
} inv_cache_opts_t;

typedef enum {
  INV_CACHE_HIT = 0,
  INV_CACHE_FILLED,   /* regenerated and committed by this call */
  INV_CACHE_FENCED,   /* regenerated, commit refused: not cached */
  INV_CACHE_STALE,    /* the stale copy */
  INV_CACHE_WAITED,   /* another reader's value, after polling */
  INV_CACHE_FALLBACK, /* regenerated after the wait ran out: not cached */
  INV_CACHE_UNLOCKED  /* no lock for this key name: plain GET/SET */
} inv_cache_source_t;

typedef struct inv_cache_value_s {
  char *data; /* malloc'ed, owned by the caller (inv_cache_value_free) */
  size_t len;
  int stale; /* 1 for INV_CACHE_STALE */
  inv_cache_source_t source;
} inv_cache_value_t;

/* "hit", "filled", "fenced", "stale", "waited", "fallback", "unlocked". */
const char *inv_cache_source_name(inv_cache_source_t s);

/* Reads key through the lock protocol (above). ttl_ms is the TTL of a
 * committed value (0: none). opts may be NULL (all defaults). Returns 0
 * with *value filled, a Redis error (INV_EIO, INV_ETIMEDOUT, INV_EREDIS,
 * INV_ENOMEM), or regen_cb's own negative code. On error *value is empty. */
int inv_cache_get_or_fill(inv_cache_redis_t *redis, const char *key,
                          size_t keylen, uint64_t ttl_ms, inv_regen_cb regen_cb,
                          void *regen_arg, const inv_cache_opts_t *opts,
                          inv_cache_value_t *value);

/* Frees value->data and empties *value. Accepts NULL. */
void inv_cache_value_free(inv_cache_value_t *value);

/* Writes a fresh lock token (128 random bits as 32 lowercase hex digits and
 * a NUL) to out. Returns 0, or INV_EIO when no randomness is available. */
int inv_cache_token(char out[33]);

#ifdef __cplusplus
}
#endif

#endif
