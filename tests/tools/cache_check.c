/*
 * cache_check: drives the C read path (proto/cache.h) against real Redis
 * for tests/integration/test_regen_*.py. Every mode prints "name value"
 * lines on stdout for the test to parse, then the summed read-path
 * counters as "stat.<name> N" (stampede and readers also print
 * "redirects N", the MOVED/ASK replies their routers followed).
 *
 *   cache_check get -r SEEDS -k KEY -v VALUE [--regen-ms N] [--fail]
 *       One get-or-fill whose regenerator returns VALUE (or fails).
 *       Prints "source S", "value V", "stale 0|1", or "error CODE".
 *   cache_check stampede -r SEEDS -k KEY -v VALUE --threads N [--regen-ms N]
 *       N threads, each with its own connection, start together (a
 *       barrier) and read KEY once. Prints "regenerations N" and, per
 *       outcome, "got <source> <value> <count>".
 *   cache_check fenced -r SEEDS -k KEY -s SOURCE_KEY
 *       One get-or-fill whose regenerator reads SOURCE_KEY, prints
 *       "loaded <value>", and waits for a line on stdin before returning
 *       it: the test changes the source and invalidates in between.
 *   cache_check readers -r SEEDS -k KEY -s SOURCE_KEY --threads N
 *                       [--regen-max-ms N]
 *       N threads read KEY in a loop until stdin closes; each regeneration
 *       reads SOURCE_KEY and then takes a random 0..N ms.
 *
 * Common options: --ttl-ms N (value TTL, default 0: none), --lock-ttl-ms N,
 * --wait-ms N, --no-stale. SEEDS is HOST:PORT[,HOST:PORT...].
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/errors.h"
#include "proto/cache.h"

#define MAX_SEEDS 16
#define MAX_THREADS 1000

static const char *seeds[MAX_SEEDS];
static size_t nseeds;
static const char *key, *value = "v", *source_key;
static long regen_ms, regen_max_ms = 10, threads = 1;
static int fail_regen;
static uint64_t ttl_ms;
static inv_cache_opts_t copts;
static atomic_long regenerations;
static atomic_int stop_readers;

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static inv_cache_redis_t *open_redis(void) {
  inv_cache_redis_t *r;
  char err[256];
  inv_cache_redis_opts_t o = {5000, NULL};
  if (inv_cache_redis_open(seeds, nseeds, &o, &r, err, sizeof(err)) != 0) {
    fprintf(stderr, "cache_check: %s\n", err);
    exit(3);
  }
  return r;
}

static int dup_value(const char *v, size_t len, char **data, size_t *outlen) {
  *data = malloc(len + 1);
  if (*data == NULL) return INV_ENOMEM;
  memcpy(*data, v, len);
  (*data)[len] = '\0';
  *outlen = len;
  return 0;
}

/* Returns the fixed value after regen_ms, or fails on --fail. */
static int fixed_regen(void *arg, const char *k, size_t klen, char **data,
                       size_t *len) {
  (void)arg;
  (void)k;
  (void)klen;
  atomic_fetch_add(&regenerations, 1);
  if (regen_ms > 0) sleep_ms(regen_ms);
  if (fail_regen) return INV_EIO;
  return dup_value(value, strlen(value), data, len);
}

/* Reads the source of truth (GET source_key on its own connection, arg). */
static int read_source(inv_cache_redis_t *src, char **data, size_t *len) {
  const char *argv[2] = {"GET", source_key};
  size_t lens[2] = {3, strlen(source_key)};
  redisReply *rep;
  int rc = inv_cache_redis_command(src, source_key, lens[1], 2, argv, lens, &rep);
  if (rc != 0) return rc;
  if (rep->type == REDIS_REPLY_STRING) rc = dup_value(rep->str, rep->len, data, len);
  else rc = dup_value("none", 4, data, len);
  freeReplyObject(rep);
  return rc;
}

static int fenced_regen(void *arg, const char *k, size_t klen, char **data,
                        size_t *len) {
  char line[64];
  (void)k;
  (void)klen;
  atomic_fetch_add(&regenerations, 1);
  int rc = read_source(arg, data, len);
  if (rc != 0) return rc;
  printf("loaded %s\n", *data);
  fflush(stdout);
  if (fgets(line, sizeof(line), stdin) == NULL) return INV_ECLOSED;
  return 0;
}

typedef struct reader_s {
  pthread_t tid;
  unsigned seed;
  inv_cache_redis_t *r, *src;
  inv_cache_stats_t st;
  int rc;
  inv_cache_value_t v;
} reader_t;

static int slow_source_regen(void *arg, const char *k, size_t klen, char **data,
                             size_t *len) {
  reader_t *t = arg;
  (void)k;
  (void)klen;
  atomic_fetch_add(&regenerations, 1);
  int rc = read_source(t->src, data, len);
  if (rc == 0 && regen_max_ms > 0) sleep_ms(rand_r(&t->seed) % (regen_max_ms + 1));
  return rc;
}

static void add_stats(inv_cache_stats_t *sum, const inv_cache_stats_t *s) {
  sum->hits += s->hits;
  sum->misses += s->misses;
  sum->regenerations += s->regenerations;
  sum->commits += s->commits;
  sum->fenced += s->fenced;
  sum->stale_served += s->stale_served;
  sum->waited += s->waited;
  sum->fallbacks += s->fallbacks;
  sum->regen_errors += s->regen_errors;
  sum->takeovers += s->takeovers;
}

static void print_stats(const inv_cache_stats_t *s) {
  printf("stat.hits %llu\nstat.misses %llu\nstat.regenerations %llu\n"
         "stat.commits %llu\nstat.fenced %llu\nstat.stale_served %llu\n"
         "stat.waited %llu\nstat.fallbacks %llu\nstat.regen_errors %llu\n"
         "stat.takeovers %llu\n",
         (unsigned long long)s->hits, (unsigned long long)s->misses,
         (unsigned long long)s->regenerations, (unsigned long long)s->commits,
         (unsigned long long)s->fenced, (unsigned long long)s->stale_served,
         (unsigned long long)s->waited, (unsigned long long)s->fallbacks,
         (unsigned long long)s->regen_errors, (unsigned long long)s->takeovers);
}

static int run_get(void) {
  inv_cache_redis_t *r = open_redis();
  inv_cache_stats_t st = {0};
  inv_cache_value_t v;
  copts.stats = &st;
  int rc = inv_cache_get_or_fill(r, key, strlen(key), ttl_ms, fixed_regen, NULL,
                                 &copts, &v);
  if (rc != 0) {
    printf("error %s\n", inv_err_name(rc));
  } else {
    printf("source %s\nvalue %.*s\nstale %d\n", inv_cache_source_name(v.source),
           (int)v.len, v.data, v.stale);
  }
  print_stats(&st);
  inv_cache_value_free(&v);
  inv_cache_redis_close(r);
  return rc == 0 ? 0 : 1;
}

static int run_fenced(void) {
  inv_cache_redis_t *r = open_redis(), *src = open_redis();
  inv_cache_stats_t st = {0};
  inv_cache_value_t v;
  copts.stats = &st;
  int rc = inv_cache_get_or_fill(r, key, strlen(key), ttl_ms, fenced_regen, src,
                                 &copts, &v);
  if (rc != 0) printf("error %s\n", inv_err_name(rc));
  else printf("source %s\nvalue %.*s\n", inv_cache_source_name(v.source),
              (int)v.len, v.data);
  print_stats(&st);
  inv_cache_value_free(&v);
  inv_cache_redis_close(src);
  inv_cache_redis_close(r);
  return rc == 0 ? 0 : 1;
}

static pthread_barrier_t barrier;

static void *stampede_thread(void *arg) {
  reader_t *t = arg;
  inv_cache_opts_t o = copts;
  o.stats = &t->st;
  pthread_barrier_wait(&barrier);
  t->rc = inv_cache_get_or_fill(t->r, key, strlen(key), ttl_ms, fixed_regen,
                                NULL, &o, &t->v);
  return NULL;
}

static void *reader_thread(void *arg) {
  reader_t *t = arg;
  inv_cache_opts_t o = copts;
  o.stats = &t->st;
  while (!atomic_load(&stop_readers)) {
    inv_cache_value_t v;
    int rc = inv_cache_get_or_fill(t->r, key, strlen(key), ttl_ms,
                                   slow_source_regen, t, &o, &v);
    if (rc != 0 && t->rc == 0) t->rc = rc;
    inv_cache_value_free(&v);
  }
  return NULL;
}

static int run_threads(int stampede) {
  reader_t *ts = calloc((size_t)threads, sizeof(*ts));
  inv_cache_stats_t sum = {0};
  int failed = 0;
  if (ts == NULL) return 3;
  /* Connect every thread first, so the barrier releases readers only. */
  for (long i = 0; i < threads; i++) {
    ts[i].r = open_redis();
    if (!stampede) ts[i].src = open_redis();
    ts[i].seed = (unsigned)(i * 7919 + 17);
  }
  pthread_barrier_init(&barrier, NULL, (unsigned)threads);
  for (long i = 0; i < threads; i++)
    pthread_create(&ts[i].tid, NULL, stampede ? stampede_thread : reader_thread,
                   &ts[i]);
  if (!stampede) {
    char line[64];
    while (fgets(line, sizeof(line), stdin) != NULL) {
    }
    atomic_store(&stop_readers, 1);
  }
  for (long i = 0; i < threads; i++) pthread_join(ts[i].tid, NULL);
  printf("regenerations %ld\n", (long)atomic_load(&regenerations));
  /* Outcomes, grouped: "got <source> <value> <count>". */
  for (long i = 0; i < threads; i++) {
    add_stats(&sum, &ts[i].st);
    if (ts[i].rc != 0) {
      printf("error %s\n", inv_err_name(ts[i].rc));
      failed = 1;
    }
    if (!stampede || ts[i].rc != 0 || ts[i].v.data == NULL) continue;
    long n = 0;
    for (long j = i; j < threads; j++) {
      if (ts[j].rc == 0 && ts[j].v.data != NULL && ts[j].v.source == ts[i].v.source &&
          ts[j].v.len == ts[i].v.len &&
          memcmp(ts[j].v.data, ts[i].v.data, ts[i].v.len) == 0) {
        n++;
        if (j != i) inv_cache_value_free(&ts[j].v);
      }
    }
    printf("got %s %.*s %ld\n", inv_cache_source_name(ts[i].v.source),
           (int)ts[i].v.len, ts[i].v.data, n);
    inv_cache_value_free(&ts[i].v);
  }
  print_stats(&sum);
  uint64_t redirects = 0;
  for (long i = 0; i < threads; i++) redirects += inv_cache_redis_redirects(ts[i].r);
  printf("redirects %llu\n", (unsigned long long)redirects);
  for (long i = 0; i < threads; i++) {
    inv_cache_value_free(&ts[i].v);
    inv_cache_redis_close(ts[i].r);
    inv_cache_redis_close(ts[i].src);
  }
  pthread_barrier_destroy(&barrier);
  free(ts);
  return failed;
}

static int usage(const char *why) {
  fprintf(stderr, "cache_check: %s\nusage: cache_check get|stampede|fenced|readers "
          "-r HOST:PORT[,..] -k KEY [options] (see the file's header)\n", why);
  return 2;
}

int main(int argc, char **argv) {
  static char seedbuf[4096];
  if (argc < 2) return usage("no mode");
  const char *mode = argv[1];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--no-stale") == 0) { copts.no_stale = 1; continue; }
    if (strcmp(a, "--fail") == 0) { fail_regen = 1; continue; }
    if (next == NULL) return usage(a);
    i++;
    if (strcmp(a, "-r") == 0) {
      snprintf(seedbuf, sizeof(seedbuf), "%s", next);
      for (char *tok = strtok(seedbuf, ","); tok && nseeds < MAX_SEEDS; tok = strtok(NULL, ","))
        seeds[nseeds++] = tok;
    } else if (strcmp(a, "-k") == 0) key = next;
    else if (strcmp(a, "-v") == 0) value = next;
    else if (strcmp(a, "-s") == 0) source_key = next;
    else if (strcmp(a, "--threads") == 0) threads = atol(next);
    else if (strcmp(a, "--regen-ms") == 0) regen_ms = atol(next);
    else if (strcmp(a, "--regen-max-ms") == 0) regen_max_ms = atol(next);
    else if (strcmp(a, "--ttl-ms") == 0) ttl_ms = strtoull(next, NULL, 10);
    else if (strcmp(a, "--lock-ttl-ms") == 0) copts.lock_ttl_ms = strtoull(next, NULL, 10);
    else if (strcmp(a, "--wait-ms") == 0) copts.wait_ms = strtoull(next, NULL, 10);
    else return usage(a);
  }
  if (nseeds == 0 || key == NULL) return usage("-r and -k are required");
  if (threads < 1 || threads > MAX_THREADS) return usage("--threads out of range");
  if (strcmp(mode, "get") == 0) return run_get();
  if (strcmp(mode, "fenced") == 0) return source_key ? run_fenced() : usage("-s");
  if (strcmp(mode, "stampede") == 0) return run_threads(1);
  if (strcmp(mode, "readers") == 0) return source_key ? run_threads(0) : usage("-s");
  return usage("unknown mode");
}
