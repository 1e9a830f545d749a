/*
 * cache_check: drives the C read path (inval/cache.h) against real Redis
 * for tests/integration/test_regen_*.py and benchmark scenario 6. Every
 * mode but hotkeys prints "name value" lines on stdout for the test to
 * parse, then the summed read-path counters as "stat.<name> N" (stampede
 * and readers also print "redirects N", the MOVED/ASK replies their
 * routers followed).
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
 *   cache_check hotkeys -r SEEDS --mode inval|plain --threads N --seconds S
 *                       --keys K [--regen-ms R] [--key-prefix P]
 *       A stampede load: N threads, each with its own router, start
 *       together and for S seconds read keys P0..P(K-1) (P: "hot:") picked
 *       at random, each read timed. inval reads through
 *       inv_cache_get_or_fill with the library's defaults unless options
 *       say otherwise (a soft invalidation's stale copy is served); plain
 *       is the cache-aside baseline without the read path: GET K, and on a
 *       miss regenerate (R ms) and SET K with --ttl-ms. Prints "ready" on
 *       stderr once every router is connected, just before the readers
 *       start, then ONE JSON object on stdout: reads, regenerations,
 *       errors (failed reads, not timed) and first_error, latency_us
 *       (count, p50, p90, p99, max, mean over every successful read),
 *       by_source (the same per outcome: the read path's sources; plain's
 *       regenerating reads are "unlocked", the read path's name for a
 *       plain GET/SET), read_path (inval: the summed counters) and
 *       redirects.
 *
 * Common options: --ttl-ms N (value TTL, default 0: none), --lock-ttl-ms N,
 * --wait-ms N, --no-stale. SEEDS is HOST:PORT[,HOST:PORT...].
 * Exit codes: 0 success, 1 a read failed (reported on stdout), 2 usage,
 * 3 no connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inval/errors.h"
#include "common/base/latency.h"
#include "inval/cache.h"
#include "proto/client/cache_redis.h"

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
/* hotkeys: plain cache-aside instead of the read path, run length, key
 * count and the key names (prefix + index). */
static int hot_plain = -1;
static double hot_seconds;
static long hot_keys;
static const char *hot_prefix = "hot:";
static char **hot_names;

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static inv_cache_redis_t *open_redis(void) {
  inv_cache_redis_t *r;
  char err[256];
  inv_cache_redis_opts_t o = {.timeout_ms = 5000};
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
  int rc =
      inv_cache_redis_command(src, source_key, lens[1], 2, argv, lens, &rep);
  if (rc != 0) return rc;
  if (rep->type == REDIS_REPLY_STRING)
    rc = dup_value(rep->str, rep->len, data, len);
  else
    rc = dup_value("none", 4, data, len);
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
  if (rc == 0 && regen_max_ms > 0)
    sleep_ms(rand_r(&t->seed) % (regen_max_ms + 1));
  return rc;
}

/* Every counter of inv_cache_stats_t with its name, so that summing and
 * both output formats list the same fields once. */
static const struct {
  const char *name;
  size_t off;
} stat_fields[] = {
    {"hits", offsetof(inv_cache_stats_t, hits)},
    {"misses", offsetof(inv_cache_stats_t, misses)},
    {"regenerations", offsetof(inv_cache_stats_t, regenerations)},
    {"commits", offsetof(inv_cache_stats_t, commits)},
    {"fenced", offsetof(inv_cache_stats_t, fenced)},
    {"stale_served", offsetof(inv_cache_stats_t, stale_served)},
    {"waited", offsetof(inv_cache_stats_t, waited)},
    {"fallbacks", offsetof(inv_cache_stats_t, fallbacks)},
    {"regen_errors", offsetof(inv_cache_stats_t, regen_errors)},
    {"takeovers", offsetof(inv_cache_stats_t, takeovers)},
};
#define NSTAT_FIELDS (sizeof(stat_fields) / sizeof(stat_fields[0]))

/* The value of counter stat_fields[i] in s. */
static uint64_t stat_value(const inv_cache_stats_t *s, size_t i) {
  return *(const uint64_t *)((const char *)s + stat_fields[i].off);
}

static void add_stats(inv_cache_stats_t *sum, const inv_cache_stats_t *s) {
  for (size_t i = 0; i < NSTAT_FIELDS; i++)
    *(uint64_t *)((char *)sum + stat_fields[i].off) += stat_value(s, i);
}

static void print_stats(const inv_cache_stats_t *s) {
  for (size_t i = 0; i < NSTAT_FIELDS; i++)
    printf("stat.%s %" PRIu64 "\n", stat_fields[i].name, stat_value(s, i));
}

/* The counters as one JSON object, {"hits": N, ...}. */
static void json_stats(const inv_cache_stats_t *s) {
  for (size_t i = 0; i < NSTAT_FIELDS; i++)
    printf("%s\"%s\": %" PRIu64, i ? ", " : "{", stat_fields[i].name,
           stat_value(s, i));
  printf("}");
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
  if (rc != 0)
    printf("error %s\n", inv_err_name(rc));
  else
    printf("source %s\nvalue %.*s\n", inv_cache_source_name(v.source),
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
      if (ts[j].rc == 0 && ts[j].v.data != NULL &&
          ts[j].v.source == ts[i].v.source && ts[j].v.len == ts[i].v.len &&
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
  for (long i = 0; i < threads; i++)
    redirects += inv_cache_redis_redirects(ts[i].r);
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

/* hotkeys (see the header). One reader: its router, counters and latency
 * histograms, one for every read and one per source, merged by the main
 * thread when every reader has stopped. */
#define HOT_SOURCES (INV_CACHE_UNLOCKED + 1)

typedef struct hot_reader_s {
  pthread_t tid;
  unsigned seed;
  inv_cache_redis_t *r;
  inv_cache_stats_t st;
  uint64_t reads, errors;
  int first_error;
  inv_latency_t all;
  inv_latency_t by_source[HOT_SOURCES];
} hot_reader_t;

/* Sends one command on key k's slot and frees the reply. Returns 1 when
 * the reply was a string, 0 when it was nil or a status, or a negative code
 * (an error reply is INV_EREDIS). */
static int plain_command(hot_reader_t *t, const char *k, size_t klen, int argc,
                         const char **argv, const size_t *lens) {
  redisReply *rep;
  int rc = inv_cache_redis_command(t->r, k, klen, argc, argv, lens, &rep);
  if (rc != 0) return rc;
  rc = rep->type == REDIS_REPLY_STRING ? 1
       : rep->type == REDIS_REPLY_NIL || rep->type == REDIS_REPLY_STATUS
           ? 0
           : INV_EREDIS;
  freeReplyObject(rep);
  return rc;
}

/* The baseline without the read path: GET k; on a miss the same
 * regenerator as the read path's, then SET k with the value TTL. Nothing
 * stops concurrent readers of a missing key from all regenerating, which is
 * the stampede being measured. Returns 0 with *source (hit, or unlocked for
 * a regenerating read) or a negative code. */
static int plain_read(hot_reader_t *t, const char *k,
                      inv_cache_source_t *source) {
  size_t klen = strlen(k);
  const char *get[2] = {"GET", k};
  size_t getlens[2] = {3, klen};
  int rc = plain_command(t, k, klen, 2, get, getlens);
  if (rc < 0) return rc;
  if (rc == 1) {
    *source = INV_CACHE_HIT;
    return 0;
  }
  char *data = NULL, ttl[24];
  size_t len = 0;
  if ((rc = fixed_regen(NULL, k, klen, &data, &len)) != 0) return rc;
  int n = snprintf(ttl, sizeof(ttl), "%" PRIu64, ttl_ms);
  const char *set[5] = {"SET", k, data, "PX", ttl};
  size_t setlens[5] = {3, klen, len, 2, (size_t)n};
  rc = plain_command(t, k, klen, ttl_ms > 0 ? 5 : 3, set, setlens);
  free(data);
  if (rc < 0) return rc;
  *source = INV_CACHE_UNLOCKED;
  return 0;
}

/* One read through the product's read path with the tool's options (the
 * library's defaults unless given). Returns 0 with *source, or its code. */
static int inval_read(hot_reader_t *t, const char *k,
                      inv_cache_source_t *source) {
  inv_cache_opts_t o = copts;
  inv_cache_value_t v;
  o.stats = &t->st;
  int rc = inv_cache_get_or_fill(t->r, k, strlen(k), ttl_ms, fixed_regen, NULL,
                                 &o, &v);
  if (rc == 0) *source = v.source;
  inv_cache_value_free(&v);
  return rc;
}

/* Reads random hot keys until hot_seconds have passed since the barrier
 * let every reader go. A failed read is counted, not timed. */
static void *hot_thread(void *arg) {
  hot_reader_t *t = arg;
  pthread_barrier_wait(&barrier);
  uint64_t end = inv_now_us() + (uint64_t)(hot_seconds * 1e6);
  for (uint64_t t0 = inv_now_us(); t0 < end; t0 = inv_now_us()) {
    const char *k =
        hot_names[(unsigned long)rand_r(&t->seed) % (unsigned long)hot_keys];
    inv_cache_source_t source = INV_CACHE_HIT;
    int rc = hot_plain ? plain_read(t, k, &source) : inval_read(t, k, &source);
    if (rc != 0) {
      t->errors++;
      if (t->first_error == 0) t->first_error = rc;
      continue;
    }
    uint64_t us = inv_now_us() - t0;
    t->reads++;
    inv_latency_record(&t->all, us);
    inv_latency_record(&t->by_source[source], us);
  }
  return NULL;
}

/* A histogram as JSON: count, p50, p90, p99, max and mean in microseconds. */
static void json_latency(const inv_latency_t *l) {
  printf("{\"count\": %" PRIu64 ", \"p50\": %" PRIu64 ", \"p90\": %" PRIu64
         ", \"p99\": %" PRIu64 ", \"max\": %" PRIu64 ", \"mean\": %.1f}",
         l->count, inv_latency_quantile(l, 0.5), inv_latency_quantile(l, 0.9),
         inv_latency_quantile(l, 0.99), l->max_us,
         l->count > 0 ? (double)l->sum_us / (double)l->count : 0.0);
}

/* Merges every reader's figures and prints the one JSON object. */
static void hot_report(hot_reader_t *ts) {
  static inv_latency_t all, by_source[HOT_SOURCES];
  inv_cache_stats_t sum = {0};
  uint64_t reads = 0, errors = 0, redirects = 0;
  int first_error = 0;
  for (long i = 0; i < threads; i++) {
    reads += ts[i].reads;
    errors += ts[i].errors;
    if (first_error == 0) first_error = ts[i].first_error;
    redirects += inv_cache_redis_redirects(ts[i].r);
    add_stats(&sum, &ts[i].st);
    inv_latency_merge(&all, &ts[i].all);
    for (int s = 0; s < HOT_SOURCES; s++)
      inv_latency_merge(&by_source[s], &ts[i].by_source[s]);
  }
  printf(
      "{\"mode\": \"%s\", \"threads\": %ld, \"seconds\": %g, "
      "\"keys\": %ld, \"regen_ms\": %ld,\n \"reads\": %" PRIu64
      ", \"regenerations\": %ld, \"errors\": %" PRIu64,
      hot_plain ? "plain" : "inval", threads, hot_seconds, hot_keys, regen_ms,
      reads, (long)atomic_load(&regenerations), errors);
  if (first_error != 0)
    printf(", \"first_error\": \"%s\"", inv_err_name(first_error));
  else
    printf(", \"first_error\": null");
  printf(",\n \"latency_us\": ");
  json_latency(&all);
  printf(",\n \"by_source\": {");
  for (int s = 0, n = 0; s < HOT_SOURCES; s++) {
    if (by_source[s].count == 0) continue;
    printf("%s\"%s\": ", n++ ? ",\n   " : "",
           inv_cache_source_name((inv_cache_source_t)s));
    json_latency(&by_source[s]);
  }
  printf("},\n \"read_path\": ");
  if (hot_plain)
    printf("null");
  else
    json_stats(&sum);
  printf(",\n \"redirects\": %" PRIu64 "}\n", redirects);
}

/* Makes the key names prefix + 0 .. prefix + (hot_keys - 1). Returns 0, or
 * -1 when out of memory. */
static int hot_make_names(void) {
  size_t len = strlen(hot_prefix) + 24;
  hot_names = calloc((size_t)hot_keys, sizeof(*hot_names));
  if (hot_names == NULL) return -1;
  for (long i = 0; i < hot_keys; i++) {
    if ((hot_names[i] = malloc(len)) == NULL) return -1;
    snprintf(hot_names[i], len, "%s%ld", hot_prefix, i);
  }
  return 0;
}

static void hot_free_names(void) {
  for (long i = 0; hot_names != NULL && i < hot_keys; i++) free(hot_names[i]);
  free(hot_names);
  hot_names = NULL;
}

static int run_hotkeys(void) {
  hot_reader_t *ts = calloc((size_t)threads, sizeof(*ts));
  if (ts == NULL || hot_make_names() != 0) {
    fprintf(stderr, "cache_check: out of memory\n");
    free(ts);
    hot_free_names();
    return 3;
  }
  /* Connect every reader first, so that the run times reads only. */
  for (long i = 0; i < threads; i++) {
    ts[i].r = open_redis();
    ts[i].seed = (unsigned)(i * 7919 + 17);
  }
  pthread_barrier_init(&barrier, NULL, (unsigned)threads);
  fprintf(stderr, "ready\n");
  for (long i = 0; i < threads; i++)
    pthread_create(&ts[i].tid, NULL, hot_thread, &ts[i]);
  for (long i = 0; i < threads; i++) pthread_join(ts[i].tid, NULL);
  hot_report(ts);
  uint64_t errors = 0;
  for (long i = 0; i < threads; i++) {
    errors += ts[i].errors;
    inv_cache_redis_close(ts[i].r);
  }
  pthread_barrier_destroy(&barrier);
  free(ts);
  hot_free_names();
  return errors > 0 ? 1 : 0;
}

/* Parses a whole decimal number in [min, max] into *out. Returns 0, or -1
 * when s is not one. */
static int parse_long(const char *s, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) return -1;
  *out = v;
  return 0;
}

static int usage(const char *why) {
  fprintf(stderr,
          "cache_check: %s\nusage: cache_check get|stampede|fenced|readers "
          "-r HOST:PORT[,..] -k KEY [options]\n"
          "       cache_check hotkeys -r HOST:PORT[,..] --mode inval|plain "
          "--threads N --seconds S --keys K [--regen-ms R] [options]\n"
          "(see tests/tools/cache_check.c's header)\n",
          why);
  return 2;
}

/* Checks the hotkeys options once parsed. Returns 0 or usage()'s code. */
static int check_hotkeys(void) {
  if (hot_plain < 0) return usage("hotkeys needs --mode inval|plain");
  if (!(hot_seconds > 0)) return usage("hotkeys needs --seconds S (S > 0)");
  if (hot_keys < 1) return usage("hotkeys needs --keys K (K >= 1)");
  return 0;
}

int main(int argc, char **argv) {
  static char seedbuf[4096];
  if (argc < 2) return usage("no mode");
  const char *mode = argv[1];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--no-stale") == 0) {
      copts.no_stale = 1;
      continue;
    }
    if (strcmp(a, "--fail") == 0) {
      fail_regen = 1;
      continue;
    }
    if (next == NULL) return usage(a);
    i++;
    if (strcmp(a, "-r") == 0) {
      snprintf(seedbuf, sizeof(seedbuf), "%s", next);
      for (char *tok = strtok(seedbuf, ","); tok && nseeds < MAX_SEEDS;
           tok = strtok(NULL, ","))
        seeds[nseeds++] = tok;
    } else if (strcmp(a, "-k") == 0)
      key = next;
    else if (strcmp(a, "-v") == 0)
      value = next;
    else if (strcmp(a, "-s") == 0)
      source_key = next;
    else if (strcmp(a, "--threads") == 0) {
      if (parse_long(next, 1, MAX_THREADS, &threads) != 0)
        return usage("--threads: not a number in 1..1000");
    } else if (strcmp(a, "--regen-ms") == 0) {
      if (parse_long(next, 0, 3600000, &regen_ms) != 0)
        return usage("--regen-ms: not a number in 0..3600000");
    } else if (strcmp(a, "--mode") == 0) {
      if (strcmp(next, "inval") != 0 && strcmp(next, "plain") != 0)
        return usage("--mode: inval or plain");
      hot_plain = strcmp(next, "plain") == 0;
    } else if (strcmp(a, "--seconds") == 0) {
      char *end;
      hot_seconds = strtod(next, &end);
      if (end == next || *end != '\0' ||
          !(hot_seconds > 0 && hot_seconds <= 86400))
        return usage("--seconds: not a number in (0, 86400]");
    } else if (strcmp(a, "--keys") == 0) {
      if (parse_long(next, 1, 1000000, &hot_keys) != 0)
        return usage("--keys: not a number in 1..1000000");
    } else if (strcmp(a, "--key-prefix") == 0)
      hot_prefix = next;
    else if (strcmp(a, "--regen-max-ms") == 0)
      regen_max_ms = atol(next);
    else if (strcmp(a, "--ttl-ms") == 0)
      ttl_ms = strtoull(next, NULL, 10);
    else if (strcmp(a, "--lock-ttl-ms") == 0)
      copts.lock_ttl_ms = strtoull(next, NULL, 10);
    else if (strcmp(a, "--wait-ms") == 0)
      copts.wait_ms = strtoull(next, NULL, 10);
    else
      return usage(a);
  }
  if (nseeds == 0) return usage("-r is required");
  if (strcmp(mode, "hotkeys") == 0) {
    int rc = check_hotkeys();
    return rc != 0 ? rc : run_hotkeys();
  }
  if (key == NULL) return usage("-k is required");
  if (strcmp(mode, "get") == 0) return run_get();
  if (strcmp(mode, "fenced") == 0)
    return source_key ? run_fenced() : usage("-s");
  if (strcmp(mode, "stampede") == 0) return run_threads(1);
  if (strcmp(mode, "readers") == 0)
    return source_key ? run_threads(0) : usage("-s");
  return usage("unknown mode");
}
