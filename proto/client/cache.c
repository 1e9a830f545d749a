/*
 * The cache read path (see cache.h).
 */
#include "inval/cache.h"
#include "proto/client/cache_redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "inval/errors.h"
#include "proto/keyname.h"
#include "proto/scripts.h"

#define DEFAULT_LOCK_TTL_MS 5000
#define DEFAULT_WAIT_MS 1000
#define DEFAULT_BACKOFF_MIN_MS 2
#define DEFAULT_BACKOFF_MAX_MS 50

#define COUNT(o, field)                  \
  do {                                   \
    if ((o)->stats) (o)->stats->field++; \
  } while (0)

typedef struct ctx_s {
  inv_cache_redis_t *r;
  const char *key;
  size_t keylen;
  uint64_t ttl_ms;
  inv_regen_cb cb;
  void *arg;
  inv_cache_opts_t o;
  inv_regen_names_t names;
  char token[33];
  uint64_t rng; /* xorshift state for the backoff jitter */
} ctx_t;

const char *inv_cache_source_name(inv_cache_source_t s) {
  static const char *const names[] = {"hit",    "filled",   "fenced",  "stale",
                                      "waited", "fallback", "unlocked"};
  return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

void inv_cache_value_free(inv_cache_value_t *value) {
  if (value == NULL) return;
  free(value->data);
  memset(value, 0, sizeof(*value));
}

int inv_cache_token(char out[33]) {
  unsigned char raw[16];
  size_t got = 0;
  while (got < sizeof(raw)) {
    ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return INV_EIO;
    }
    got += (size_t)n;
  }
  for (size_t i = 0; i < sizeof(raw); i++)
    snprintf(out + 2 * i, 3, "%02x", raw[i]);
  return 0;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static uint64_t next_rand(ctx_t *c) {
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  return c->rng;
}

/* Runs a one-key command. Returns 0 with *reply, or a negative code. */
static int cmd(ctx_t *c, int argc, const char **argv, const size_t *lens,
               redisReply **reply) {
  return inv_cache_redis_command(c->r, argv[1], lens[1], argc, argv, lens,
                                 reply);
}

/* What a look (one MGET of K and its stale copy) found. */
enum { FOUND_NOTHING = 0, FOUND_STALE = 1, FOUND_VALUE = 2 };

/* Copies a string reply's bytes into value (NUL-terminated). Returns 0 or
 * INV_ENOMEM. */
static int take_string(const redisReply *r, inv_cache_value_t *value) {
  value->data = malloc(r->len + 1);
  if (value->data == NULL) return INV_ENOMEM;
  memcpy(value->data, r->str, r->len);
  value->data[r->len] = '\0';
  value->len = r->len;
  return 0;
}

/* GET name. Returns 1 with *value taken (data copied), 0 when absent, or a
 * negative code. */
static int get_into(ctx_t *c, const char *name, size_t len,
                    inv_cache_value_t *value) {
  const char *argv[2] = {"GET", name};
  size_t lens[2] = {3, len};
  redisReply *rep;
  int rc = cmd(c, 2, argv, lens, &rep);
  if (rc != 0) return rc;
  if (rep->type == REDIS_REPLY_NIL) {
    freeReplyObject(rep);
    return 0;
  }
  if (rep->type != REDIS_REPLY_STRING) {
    freeReplyObject(rep);
    return INV_EREDIS;
  }
  rc = take_string(rep, value);
  freeReplyObject(rep);
  return rc == 0 ? 1 : rc;
}

/* A look at the key in one MGET: K, then L(K) when asked, then S(K)
 * unless no_stale. The names share K's slot, and a commit (K written, S(K)
 * deleted) and a soft invalidation (K renamed to S(K)) are each atomic, so
 * one MGET sees K or S(K) whenever either exists; separate GETs could miss
 * both between a commit and the next soft invalidation. */
typedef struct look_s {
  const char *argv[4];
  size_t lens[4];
  int argc;
  int lock_at, stale_at; /* reply indexes of L(K) and S(K); -1: not asked */
} look_t;

static void look_init(ctx_t *c, int with_lock, look_t *l) {
  l->argv[0] = "MGET";
  l->lens[0] = 4;
  l->argv[1] = c->key;
  l->lens[1] = c->keylen;
  l->argc = 2;
  l->lock_at = l->stale_at = -1;
  if (with_lock) {
    l->lock_at = l->argc - 1;
    l->argv[l->argc] = c->names.lock;
    l->lens[l->argc++] = c->names.lock_len;
  }
  if (!c->o.no_stale) {
    l->stale_at = l->argc - 1;
    l->argv[l->argc] = c->names.stale;
    l->lens[l->argc++] = c->names.stale_len;
  }
}

/* Reads the MGET reply of look l. Returns FOUND_VALUE with K in *value,
 * FOUND_STALE with S(K) in *value, FOUND_NOTHING, or a negative code; with
 * lock_held non-NULL (L(K) asked), sets it to whether L(K) exists. */
static int look_parse(const look_t *l, const redisReply *rep, int *lock_held,
                      inv_cache_value_t *value) {
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)(l->argc - 1))
    return INV_EREDIS;
  if (lock_held != NULL && l->lock_at >= 0)
    *lock_held = rep->element[l->lock_at]->type != REDIS_REPLY_NIL;
  int at = rep->element[0]->type == REDIS_REPLY_STRING ? 0
           : l->stale_at >= 0 &&
                   rep->element[l->stale_at]->type == REDIS_REPLY_STRING
               ? l->stale_at
               : -1;
  if (at < 0) return FOUND_NOTHING;
  int rc = take_string(rep->element[at], value);
  if (rc != 0) return rc;
  return at == 0 ? FOUND_VALUE : FOUND_STALE;
}

/* A poll: MGET K L(K) [S(K)]. Returns look_parse's result. */
static int poll_once(ctx_t *c, int *lock_held, inv_cache_value_t *value) {
  look_t l;
  redisReply *rep;
  look_init(c, 1, &l);
  int rc = cmd(c, l.argc, l.argv, l.lens, &rep);
  if (rc != 0) return rc;
  rc = look_parse(&l, rep, lock_held, value);
  freeReplyObject(rep);
  return rc;
}

static void unlock(ctx_t *c);

/* SET L(K) <token> NX PX lock_ttl, with a fresh token (PROTOCOL.md 14.3),
 * and MGET K [S(K)], pipelined in one round trip: the lock attempt and a
 * look at what is there right after it. Sets *won to 1 when the lock was
 * taken (and gives it back if the look then fails). Returns look_parse's
 * result or a negative code. */
static int attempt(ctx_t *c, int *won, inv_cache_value_t *value) {
  int rc = inv_cache_token(c->token);
  if (rc != 0) return rc;
  if (c->rng == 0) {
    /* The backoff jitter's seed: any bits of the first token will do. */
    memcpy(&c->rng, c->token, sizeof(c->rng));
    c->rng |= 1; /* xorshift needs a non-zero state */
  }
  char ttl[24];
  snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)c->o.lock_ttl_ms);
  const char *lock_argv[6] = {"SET", c->names.lock, c->token, "NX", "PX", ttl};
  const size_t lock_lens[6] = {3, c->names.lock_len, 32, 2, 2, strlen(ttl)};
  look_t l;
  look_init(c, 0, &l);
  const int argc[2] = {6, l.argc};
  const char **const argv[2] = {lock_argv, l.argv};
  const size_t *const lens[2] = {lock_lens, l.lens};
  redisReply *reps[2];
  rc = inv_cache_redis_pipeline(c->r, c->key, c->keylen, 2, argc, argv, lens,
                                reps);
  if (rc != 0) return rc;
  *won = 0;
  if (reps[0]->type == REDIS_REPLY_STATUS)
    *won = 1;
  else if (reps[0]->type != REDIS_REPLY_NIL)
    rc = INV_EREDIS;
  if (rc == 0) rc = look_parse(&l, reps[1], NULL, value);
  freeReplyObject(reps[0]);
  freeReplyObject(reps[1]);
  if (rc < 0 && *won) unlock(c);
  return rc;
}

/* Calls regen_cb into value. Returns 0 or its code. */
static int regenerate(ctx_t *c, inv_cache_value_t *value) {
  char *data = NULL;
  size_t len = 0;
  COUNT(&c->o, regenerations);
  int rc = c->cb(c->arg, c->key, c->keylen, &data, &len);
  if (rc != 0) {
    COUNT(&c->o, regen_errors);
    free(data);
    return rc < 0 ? rc : INV_EIO;
  }
  value->data = data;
  value->len = len;
  return 0;
}

/* Runs a script on K's slot; returns its integer reply or a negative code. */
static int run_script(ctx_t *c, const inv_script_t *s, int nkeys,
                      const char **keys, const size_t *klens, int nargs,
                      const char **args, const size_t *alens) {
  redisReply *rep;
  int rc = inv_cache_redis_eval(c->r, s, nkeys, keys, klens, nargs, args, alens,
                                &rep);
  if (rc != 0) return rc;
  rc = rep->type == REDIS_REPLY_INTEGER ? (int)rep->integer : INV_EREDIS;
  freeReplyObject(rep);
  return rc;
}

/* Gives the lock back (unlock.lua); errors are ignored: the lock expires. */
static void unlock(ctx_t *c) {
  const char *keys[1] = {c->names.lock};
  size_t klens[1] = {c->names.lock_len};
  const char *args[1] = {c->token};
  size_t alens[1] = {32};
  run_script(c, &inv_script_unlock, 1, keys, klens, 1, args, alens);
}

/* The lock holder's part, given what the attempt's look found right after
 * the lock was taken: regenerate, then commit or be fenced. */
static int win(ctx_t *c, int found, inv_cache_value_t *value) {
  /* The previous holder may have committed between our GET K and our
   * SET NX (its commit deleted its lock): then K is there now, and a
   * second regeneration would be wasted. */
  if (found == FOUND_VALUE) {
    unlock(c);
    COUNT(&c->o, waited);
    value->source = INV_CACHE_WAITED;
    return 0;
  }
  inv_cache_value_free(value); /* a stale copy the look read, not needed */
  int rc = regenerate(c, value);
  if (rc != 0) {
    unlock(c);
    return rc;
  }
  char ttl[24];
  snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)c->ttl_ms);
  const char *keys[3] = {c->key, c->names.lock, c->names.stale};
  size_t klens[3] = {c->keylen, c->names.lock_len, c->names.stale_len};
  const char *args[3] = {c->token, value->data ? value->data : "", ttl};
  size_t alens[3] = {32, value->len, strlen(ttl)};
  rc = run_script(c, &inv_script_commit, 3, keys, klens, 3, args, alens);
  if (rc < 0) {
    inv_cache_value_free(value);
    return rc;
  }
  if (rc == 1) {
    COUNT(&c->o, commits);
    value->source = INV_CACHE_FILLED;
  } else {
    COUNT(&c->o, fenced);
    value->source = INV_CACHE_FENCED;
  }
  return 0;
}

/* A key without lock or stale copy: regenerate and SET with the TTL. */
static int fill_unlocked(ctx_t *c, inv_cache_value_t *value) {
  int rc = regenerate(c, value);
  if (rc != 0) return rc;
  char ttl[24];
  int n = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)c->ttl_ms);
  const char *argv[5] = {"SET", c->key, value->data ? value->data : "", "PX",
                         ttl};
  size_t lens[5] = {3, c->keylen, value->len, 2, (size_t)n};
  redisReply *rep;
  rc = cmd(c, c->ttl_ms > 0 ? 5 : 3, argv, lens, &rep);
  if (rc != 0) {
    inv_cache_value_free(value);
    return rc;
  }
  freeReplyObject(rep);
  COUNT(&c->o, commits);
  value->source = INV_CACHE_UNLOCKED;
  return 0;
}

/* Turns what a look found into a loser's answer: returns 0 with *value
 * (K: waited; S(K): stale), 1 when nothing was found, or found's negative
 * code. */
static int serve_found(ctx_t *c, int found, inv_cache_value_t *value) {
  if (found < 0) return found;
  if (found == FOUND_VALUE) {
    COUNT(&c->o, waited);
    value->source = INV_CACHE_WAITED;
    return 0;
  }
  if (found == FOUND_STALE) {
    COUNT(&c->o, stale_served);
    value->stale = 1;
    value->source = INV_CACHE_STALE;
    return 0;
  }
  return 1;
}

/* The loser's part, given what the attempt's look found: K (committed
 * since our GET) or the stale copy, else poll for either (taking the lock
 * when it is gone), else fall back to regenerating without caching. */
static int lose(ctx_t *c, int found, inv_cache_value_t *value) {
  int rc = serve_found(c, found, value);
  if (rc <= 0) return rc;
  uint64_t deadline = now_ms() + c->o.wait_ms;
  uint64_t delay = c->o.backoff_min_ms;
  for (;;) {
    uint64_t now = now_ms();
    if (now >= deadline) break;
    /* Full jitter in [delay/2, delay], never past the deadline. */
    uint64_t d = delay / 2 + next_rand(c) % (delay - delay / 2 + 1);
    if (d > deadline - now) d = deadline - now;
    sleep_ms(d);
    delay = delay * 2 > c->o.backoff_max_ms ? c->o.backoff_max_ms : delay * 2;
    /* A stale copy may have appeared meanwhile: a soft invalidation of a
     * value committed since our first look renames it to S(K). */
    int lock_held = 1, won = 0;
    rc = serve_found(c, poll_once(c, &lock_held, value), value);
    if (rc <= 0) return rc;
    if (lock_held) continue;
    /* Neither value nor lock: the holder crashed (its lock expired), was
     * fenced or failed; whoever takes the lock now regenerates. */
    rc = attempt(c, &won, value);
    if (rc < 0) return rc;
    if (won) {
      COUNT(&c->o, takeovers);
      return win(c, rc, value);
    }
    rc = serve_found(c, rc, value);
    if (rc <= 0) return rc;
  }
  COUNT(&c->o, fallbacks);
  rc = regenerate(c, value);
  if (rc == 0) value->source = INV_CACHE_FALLBACK;
  return rc;
}

static void apply_defaults(inv_cache_opts_t *o, const inv_cache_opts_t *in) {
  if (in)
    *o = *in;
  else
    memset(o, 0, sizeof(*o));
  if (o->lock_ttl_ms == 0) o->lock_ttl_ms = DEFAULT_LOCK_TTL_MS;
  if (o->wait_ms == 0) o->wait_ms = DEFAULT_WAIT_MS;
  if (o->backoff_min_ms == 0) o->backoff_min_ms = DEFAULT_BACKOFF_MIN_MS;
  if (o->backoff_max_ms == 0) o->backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
  if (o->backoff_max_ms < o->backoff_min_ms)
    o->backoff_max_ms = o->backoff_min_ms;
}

int inv_cache_get_or_fill(inv_cache_redis_t *redis, const char *key,
                          size_t keylen, uint64_t ttl_ms, inv_regen_cb regen_cb,
                          void *regen_arg, const inv_cache_opts_t *opts,
                          inv_cache_value_t *value) {
  ctx_t c;
  int rc;
  memset(value, 0, sizeof(*value));
  if (redis == NULL || key == NULL || keylen == 0 || regen_cb == NULL)
    return INV_EINVAL;
  memset(&c, 0, sizeof(c));
  c.r = redis;
  c.key = key;
  c.keylen = keylen;
  c.ttl_ms = ttl_ms;
  c.cb = regen_cb;
  c.arg = regen_arg;
  apply_defaults(&c.o, opts);

  rc = get_into(&c, key, keylen, value);
  if (rc < 0) return rc;
  if (rc == 1) {
    COUNT(&c.o, hits);
    value->source = INV_CACHE_HIT;
    return 0;
  }
  COUNT(&c.o, misses);
  if ((rc = inv_regen_names(key, keylen, &c.names)) != 0) return rc;
  if (!c.names.keeps_slot) {
    rc = fill_unlocked(&c, value);
    goto out;
  }
  int won = 0;
  rc = attempt(&c, &won, value);
  if (rc >= 0) rc = won ? win(&c, rc, value) : lose(&c, rc, value);
out:
  inv_regen_names_free(&c.names);
  if (rc != 0) inv_cache_value_free(value);
  return rc;
}
