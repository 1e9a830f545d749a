/*
 * Scan jobs (see scanner.h).
 *
 * A submitted pattern is a pat_t. Unpinned ones wait in one FIFO until the
 * next shared pass takes them all; a pinned one becomes a run of its own
 * (one pattern, GETKEYSINSLOT) in the pending list, of which at most
 * max-scans run at once. A run (run_t) is what sends the listing commands
 * and pushes keys: the shared pass is a run with many patterns and no
 * MATCH, a pinned job a run with one.
 *
 * Local matching of a listing against many patterns goes through the run's
 * prefix index: every key that matches a pattern starts with the pattern's
 * literal prefix, and so does every lock and stale copy of such a key, once
 * the outer '{' of an untagged base is dropped. So the patterns a key can
 * concern are those filed under one of the key's own prefixes (one hash
 * lookup per distinct literal-prefix length), under the prefixes of the key
 * without its first byte when that is '{', and those with an empty literal
 * prefix. Only those are matched with inv_glob_match.
 */
#include "workers/scanner.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/check.h"
#include "inval/errors.h"
#include "common/base/glob.h"
#include "common/base/latency.h"
#include "common/base/log.h"
#include "common/base/queue.h"
#include "proto/event.h"
#include "proto/keyname.h"

/* A slot with more keys than this is walked with SCAN instead of being
 * listed in one GETKEYSINSLOT reply, which would be held in memory. */
#define SLOT_LIST_MAX 100000

/* How far back in the pending list a pinned pattern looks for an identical
 * one to join: enough for the repeats of one request, without a quadratic
 * cost when very many are pending. */
#define PINNED_MERGE_LOOKBACK 64

/* A run's state only moves forward, in this order (run_set_state). */
enum { JOB_PENDING, JOB_RUNNING, JOB_CANCELLED };
enum { PHASE_SCAN, PHASE_COUNT, PHASE_GETKEYS };
enum { OP_NONE = 0, OP_RAW, OP_SOFT, OP_HARD }; /* ranks: the strongest wins */

typedef struct key_s {
  char *key;
  size_t len;
  int asking;
  inv_unlink_op_t op;
} key_t_;

/* One submitted pattern with its mode and every tag that asked for it. */
typedef struct pat_s {
  inv_queue_t node;   /* on the waiting FIFO or the again list */
  struct pat_s *next; /* its prefix-index chain, while in a run */
  char *pat;
  size_t patlen;
  char *lit; /* literal prefix, escapes removed (in pat's block) */
  size_t litlen;
  inv_unlink_op_t mode; /* INV_UNLINK_HARD or INV_UNLINK_SOFT */
  int pinned;
  unsigned slot;
  uint64_t *tags;
  size_t ntags, tagcap;
} pat_t;

/* A run's patterns filed by literal prefix (open addressing). */
typedef struct bucket_s {
  const char *lit;
  size_t len;
  pat_t *head;
} bucket_t;

typedef struct pindex_s {
  bucket_t *b;
  size_t mask;
  size_t *lens; /* distinct non-zero literal-prefix lengths, ascending */
  size_t nlens;
  pat_t *any;   /* patterns with an empty literal prefix */
  pat_t **cand; /* scratch: the candidates of one key */
  size_t candcap;
} pindex_t;

/* A page's matched value keys, to skip locks and stale copies that their
 * value key's command already removes (open addressing, pointers into the
 * reply). */
typedef struct span_s {
  const char *p;
  size_t len;
} span_t;

typedef struct page_set_s {
  span_t *slots;
  size_t mask;
} page_set_t;

typedef struct run_s {
  inv_queue_t node; /* on the pending or the running list */
  inv_scanner_t *s;
  pat_t **pats;
  size_t npats;
  pindex_t idx;
  char *match; /* SCAN MATCH: "*" pat "*" (NULL: no MATCH) */
  size_t matchlen;
  int shared; /* the shared pass (else a pinned job) */
  int pinned;
  unsigned slot;
  int state;
  int phase;
  char cursor[32];
  long long slot_count; /* COUNTKEYSINSLOT answer */
  int cmd_inflight;     /* a SCAN/COUNT/GETKEYS command awaits its reply */
  int stalled;          /* its command failed; resend on resume */
  int listed;           /* the listing is finished (cursor 0, GETKEYS done) */
  size_t inflight;      /* keys handed to the unlinker, not yet done */
  key_t_ *keys;         /* matched keys of the last page, not yet pushed */
  size_t nkeys, kidx;
  /* For the log lines of its start and end (run_log_start/_end). */
  uint64_t started_us;
  uint64_t scanned, matched, failed;
  int logged; /* its start was logged, so its end is */
  int error;  /* its listing failed: its patterns run again */
} run_t;

typedef struct list_s {
  inv_queue_t q; /* run_t.node */
  size_t n;      /* runs on q */
} list_t;

struct inv_scanner_s {
  uv_loop_t *loop;
  inv_redis_t *r;
  inv_unlinker_t *u;
  const inv_slot_map_t *map;
  inv_scanner_opts_t opts;
  inv_worker_stats_t *stats;
  inv_unlink_done_cb done_cb;
  void *owner;
  inv_queue_t waiting; /* pat_t.node: unpinned, for the next pass */
  size_t nwaiting;     /* patterns waiting: FIFO + again list + pending runs */
  size_t waiting_bytes;
  run_t *pass;             /* the shared pass running, or NULL */
  list_t pending, running; /* runs; pending ones are pinned */
  size_t zombies;          /* cancelled runs waiting for their commands */
  /* Loops that cancel runs and call done_cb hold the scanner: while held
   * it is not freed, even when the last zombie so far is, because the
   * loop may yet make more zombies (see inv_scanner_cancel_all). */
  unsigned holds;
  int closing;
  uv_timer_t retry;
  int retry_armed;
  uv_idle_t kick; /* starts a pass once this loop pass's submits are in */
  /* Patterns of runs that failed (a listing error, or an UNLINK that did
   * not complete), waiting for again_timer to run them again; counted in
   * nwaiting. again_streak is the number of failed runs in a row (the
   * backoff grows with it; a run that succeeds resets it). */
  inv_queue_t again; /* pat_t.node */
  uv_timer_t again_timer;
  unsigned again_streak;
  int open_handles;
  /* Scan log lines are rate-limited: a flood of small passes must not
   * flood the log. */
  uint64_t log_next_us; /* no start line before this */
  uint64_t log_skipped; /* runs not logged since the last start line */
};

/* A start line at most every SCAN_LOG_EVERY_US; a run that took at least
 * SCAN_LOG_SLOW_US logs its end in any case. */
#define SCAN_LOG_EVERY_US 1000000u
#define SCAN_LOG_SLOW_US 1000000u
#define SCAN_LOG_PATTERNS 3

static void list_push(list_t *l, run_t *j) {
  inv_queue_insert_tail(&l->q, &j->node);
  l->n++;
}

static void list_remove(list_t *l, run_t *j) {
  INV_CHECK(inv_queue_linked(&j->node) && l->n > 0);
  inv_queue_remove(&j->node);
  l->n--;
}

static void run_set_state(run_t *j, int to) {
  INV_CHECK(to > j->state);
  j->state = to;
}

static run_t *run_of(inv_queue_t *q) {
  return q != NULL ? INV_QUEUE_DATA(q, run_t, node) : NULL;
}

static pat_t *pat_of(inv_queue_t *q) {
  return q != NULL ? INV_QUEUE_DATA(q, pat_t, node) : NULL;
}

/* What a waiting pattern counts against the byte bound. */
static size_t pat_bytes(const pat_t *p) {
  return sizeof(*p) + 2 * p->patlen + p->tagcap * sizeof(uint64_t);
}

/* Counts p as waiting (on the FIFO, the again list or in a pending run). */
static void waiting_add(inv_scanner_t *s, const pat_t *p) {
  s->nwaiting++;
  s->waiting_bytes += pat_bytes(p);
}

/* Counts p as no longer waiting. */
static void waiting_sub(inv_scanner_t *s, const pat_t *p) {
  INV_CHECK(s->nwaiting > 0 && s->waiting_bytes >= pat_bytes(p));
  s->nwaiting--;
  s->waiting_bytes -= pat_bytes(p);
}

static void pat_free(pat_t *p) {
  if (p == NULL) return;
  free(p->pat);
  free(p->tags);
  free(p);
}

static int add_tag(pat_t *p, uint64_t tag) {
  if (p->ntags == p->tagcap) {
    size_t cap = p->tagcap ? p->tagcap * 2 : 2;
    uint64_t *t = realloc(p->tags, cap * sizeof(*t));
    if (t == NULL) return INV_ENOMEM;
    p->tags = t;
    p->tagcap = cap;
  }
  p->tags[p->ntags++] = tag;
  return 0;
}

/* Calls done_cb with err for every tag of p, then frees p. */
static void pat_finish(inv_scanner_t *s, pat_t *p, int err) {
  uint64_t *tags = p->tags;
  size_t ntags = p->ntags;
  p->tags = NULL;
  pat_free(p);
  for (size_t i = 0; i < ntags; i++) s->done_cb(s->owner, tags[i], err);
  free(tags);
}

static void free_keys(run_t *j) {
  for (size_t i = j->kidx; i < j->nkeys; i++) free(j->keys[i].key);
  free(j->keys);
  j->keys = NULL;
  j->nkeys = j->kidx = 0;
}

static void index_free(pindex_t *x) {
  free(x->b);
  free(x->lens);
  free(x->cand);
  memset(x, 0, sizeof(*x));
}

/* Frees j and whatever patterns it still holds (their tags uncalled). */
static void run_free(run_t *j) {
  free_keys(j);
  for (size_t i = 0; i < j->npats; i++) pat_free(j->pats[i]);
  free(j->pats);
  index_free(&j->idx);
  free(j->match);
  free(j);
}

static void maybe_free_scanner(inv_scanner_t *s);

/* Frees a cancelled run once nothing of it is in flight. */
static void zombie_check(run_t *j) {
  inv_scanner_t *s = j->s;
  if (j->state != JOB_CANCELLED || j->cmd_inflight || j->inflight > 0) return;
  INV_CHECK(s->zombies > 0);
  s->zombies--;
  run_free(j);
  maybe_free_scanner(s);
}

static size_t running_patterns(const inv_scanner_t *s) {
  size_t n = 0;
  for (const inv_queue_t *q = inv_queue_head(&s->running.q); q != NULL;
       q = inv_queue_next(&s->running.q, q))
    n += INV_QUEUE_DATA(q, const run_t, node)->npats;
  return n;
}

static void update_gauges(inv_scanner_t *s) {
  s->stats->scans_running = running_patterns(s);
  s->stats->scans_pending = s->nwaiting;
  s->stats->scans_waiting_bytes = s->waiting_bytes;
}

static void start_pending(inv_scanner_t *s);
static void start_pass(inv_scanner_t *s);
static void pump(run_t *j);

static void retry_cb(uv_timer_t *t) {
  inv_scanner_t *s = t->data;
  s->retry_armed = 0;
  inv_scanner_resume(s);
  start_pass(s);
}

static void arm_retry(inv_scanner_t *s) {
  if (s->retry_armed || s->closing) return;
  s->retry_armed = 1;
  uv_timer_start(&s->retry, retry_cb, 200, 0);
}

/* Schedules the start of a pass later in this loop iteration, so that the
 * patterns submitted by one burst of callbacks (one request's events, one
 * catch-up page) share it. */
static void kick_soon(inv_scanner_t *s);

/* Writes the first SCAN_LOG_PATTERNS patterns of j into out. */
static void run_patterns(const run_t *j, char *out, size_t outlen) {
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = 0; i < j->npats && i < SCAN_LOG_PATTERNS && n < outlen; i++)
    n += (size_t)snprintf(
        out + n, outlen - n, "%s'%.*s'", i ? ", " : "",
        (int)(j->pats[i]->patlen > 64 ? 64 : j->pats[i]->patlen),
        j->pats[i]->pat);
  if (j->npats > SCAN_LOG_PATTERNS && n < outlen)
    snprintf(out + n, outlen - n, ", ... (%zu in all)", j->npats);
}

static const char *run_kind(const run_t *j) {
  return j->shared ? "scan pass" : "pinned scan";
}

static void run_log_start(run_t *j) {
  inv_scanner_t *s = j->s;
  char pats[300];
  j->started_us = inv_now_us();
  if (j->started_us < s->log_next_us) {
    s->log_skipped++;
    return;
  }
  run_patterns(j, pats, sizeof(pats));
  if (j->pinned)
    inv_log_info("scanner", "%s of slot %u started: %s", run_kind(j), j->slot,
                 pats);
  else
    inv_log_info(
        "scanner", "%s started: %zu pattern%s: %s%s", run_kind(j), j->npats,
        j->npats == 1 ? "" : "s", pats,
        s->log_skipped ? " (earlier runs not logged, see scans_done)" : "");
  s->log_skipped = 0;
  s->log_next_us = j->started_us + SCAN_LOG_EVERY_US;
  j->logged = 1;
}

static void run_log_end(const run_t *j) {
  uint64_t took = inv_now_us() - j->started_us;
  if (!j->logged && took < SCAN_LOG_SLOW_US) return;
  inv_log_info("scanner",
               "%s done: %zu pattern%s, %" PRIu64
               " keys scanned, "
               "%" PRIu64 " matched, %" PRIu64 " removed, %" PRIu64
               " failed, "
               "%.3f s",
               run_kind(j), j->npats, j->npats == 1 ? "" : "s", j->scanned,
               j->matched, j->matched - j->failed, j->failed,
               (double)took / 1e6);
}

static void again_cb(uv_timer_t *t);
static void wait_push(inv_scanner_t *s, pat_t *p);
static run_t *run_new(inv_scanner_t *s, pat_t **pats, size_t npats);

/* Keeps the patterns of a failed run to be run again after a backoff of
 * 200 ms doubling with each failed run in a row, up to 5 s: their work
 * was not done, so their tags are not answered (the owner's position
 * must not pass them). */
static void run_again(inv_scanner_t *s, pat_t **pats, size_t npats) {
  for (size_t i = 0; i < npats; i++) {
    inv_queue_insert_tail(&s->again, &pats[i]->node);
    waiting_add(s, pats[i]);
  }
  s->stats->scan_retries += npats;
  unsigned shift = s->again_streak < 5 ? s->again_streak : 5;
  uint64_t delay = (uint64_t)200 << shift;
  if (delay > 5000) delay = 5000;
  s->again_streak++;
  if (!uv_is_active((uv_handle_t *)&s->again_timer))
    uv_timer_start(&s->again_timer, again_cb, delay, 0);
}

/* Hands the failed patterns back: unpinned ones to the next pass, pinned
 * ones to runs of their own. A pinned one that cannot get its run (out of
 * memory) waits for the next round. */
static void again_cb(uv_timer_t *t) {
  inv_scanner_t *s = t->data;
  inv_queue_t todo;
  pat_t *p;
  /* The list is taken whole: the patterns kept for the next round go back
   * on it. */
  inv_queue_init(&todo);
  inv_queue_move(&s->again, &todo);
  while ((p = pat_of(inv_queue_pop(&todo))) != NULL) {
    waiting_sub(s, p);
    if (!p->pinned) {
      wait_push(s, p);
    } else {
      pat_t **one = malloc(sizeof(*one));
      if (one != NULL) one[0] = p;
      run_t *j = one ? run_new(s, one, 1) : NULL;
      if (j == NULL) {
        free(one);
        inv_queue_insert_tail(&s->again, &p->node);
        waiting_add(s, p);
      } else {
        j->pinned = 1;
        j->slot = p->slot;
        j->state = JOB_PENDING;
        list_push(&s->pending, j);
        waiting_add(s, p);
      }
    }
  }
  if (!inv_queue_empty(&s->again))
    uv_timer_start(&s->again_timer, again_cb, 5000, 0);
  start_pending(s);
  kick_soon(s);
  update_gauges(s);
}

static void complete(run_t *j) {
  inv_scanner_t *s = j->s;
  run_log_end(j);
  list_remove(&s->running, j);
  if (j == s->pass) s->pass = NULL;
  pat_t **pats = j->pats;
  size_t npats = j->npats;
  int failed = j->error || j->failed > 0;
  j->pats = NULL;
  j->npats = 0;
  run_free(j);
  if (failed) {
    run_again(s, pats, npats);
  } else {
    s->again_streak = 0;
    s->stats->scans_done += npats;
    for (size_t i = 0; i < npats; i++) pat_finish(s, pats[i], 0);
  }
  free(pats);
  start_pending(s);
  if (!inv_queue_empty(&s->waiting)) kick_soon(s);
  update_gauges(s);
}

static void key_done_cb(void *owner, uint64_t tag, int err) {
  run_t *j = owner;
  (void)tag;
  if (err != 0) j->failed++;
  INV_CHECK(j->inflight > 0);
  j->inflight--;
  if (j->state == JOB_CANCELLED) {
    zombie_check(j);
    return;
  }
  pump(j);
}

/* Whether the node answers this slot's keys: owner, or importer (ASKING). */
static int slot_mode(const inv_scanner_t *s, const char *key, size_t len,
                     int *asking) {
  if (!s->map->cluster) {
    *asking = 0;
    return 1;
  }
  unsigned slot = inv_key_slot(key, len);
  if (inv_slot_map_owns(s->map, slot)) {
    *asking = 0;
    return 1;
  }
  if (inv_slot_map_imports(s->map, slot)) {
    *asking = 1;
    return 1;
  }
  return 0;
}

static uint64_t span_hash(const char *p, size_t len) {
  uint64_t h = UINT64_C(14695981039346656037);
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)p[i]) * UINT64_C(1099511628211);
  return h;
}

/* Adds (or with add == 0, looks up) p[0..len). Returns 1 when present. */
static int page_set(page_set_t *s, const char *p, size_t len, int add) {
  for (size_t i = span_hash(p, len) & s->mask;; i = (i + 1) & s->mask) {
    span_t *e = &s->slots[i];
    if (e->p == NULL) {
      if (add) {
        e->p = p;
        e->len = len;
      }
      return 0;
    }
    if (e->len == len && memcmp(e->p, p, len) == 0) return 1;
  }
}

static size_t pow2_above(size_t n) {
  size_t cap = 8;
  while (cap < 2 * n) cap *= 2;
  return cap;
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

static bucket_t *bucket_find(const pindex_t *x, const char *lit, size_t len) {
  for (size_t i = span_hash(lit, len) & x->mask;; i = (i + 1) & x->mask) {
    bucket_t *b = &x->b[i];
    if (b->lit == NULL || (b->len == len && memcmp(b->lit, lit, len) == 0))
      return b;
  }
}

/* Files the run's patterns by literal prefix. Returns 0 or INV_ENOMEM. */
static int index_build(run_t *j) {
  pindex_t *x = &j->idx;
  size_t cap = pow2_above(j->npats);
  x->b = calloc(cap, sizeof(*x->b));
  x->lens = malloc(j->npats * sizeof(*x->lens));
  x->candcap = j->npats + 1;
  x->cand = malloc(x->candcap * sizeof(*x->cand));
  if (x->b == NULL || x->lens == NULL || x->cand == NULL) return INV_ENOMEM;
  x->mask = cap - 1;
  for (size_t i = 0; i < j->npats; i++) {
    pat_t *p = j->pats[i];
    if (p->litlen == 0) {
      p->next = x->any;
      x->any = p;
      continue;
    }
    bucket_t *b = bucket_find(x, p->lit, p->litlen);
    if (b->lit == NULL) {
      b->lit = p->lit;
      b->len = p->litlen;
      x->lens[x->nlens++] = p->litlen;
    }
    p->next = b->head;
    b->head = p;
  }
  qsort(x->lens, x->nlens, sizeof(*x->lens), cmp_size);
  size_t n = 0;
  for (size_t i = 0; i < x->nlens; i++)
    if (n == 0 || x->lens[n - 1] != x->lens[i]) x->lens[n++] = x->lens[i];
  x->nlens = n;
  return 0;
}

static int cand_push(pindex_t *x, size_t *n, pat_t *p) {
  if (*n == x->candcap) {
    pat_t **c = realloc(x->cand, 2 * x->candcap * sizeof(*c));
    if (c == NULL) return INV_ENOMEM;
    x->cand = c;
    x->candcap *= 2;
  }
  x->cand[(*n)++] = p;
  return 0;
}

static int cand_add_prefixed(pindex_t *x, size_t *n, const char *k,
                             size_t len) {
  for (size_t i = 0; i < x->nlens && x->lens[i] <= len; i++) {
    bucket_t *b = bucket_find(x, k, x->lens[i]);
    for (pat_t *p = b->head; p != NULL; p = p->next)
      if (cand_push(x, n, p) != 0) return INV_ENOMEM;
  }
  return 0;
}

/* Fills x->cand with the patterns key k can concern (see the top of this
 * file); a pattern may appear twice. Returns the count, or 0 on ENOMEM
 * (the key is then passed over, as a failed allocation skips a page). */
static size_t candidates(pindex_t *x, const char *k, size_t len) {
  size_t n = 0;
  for (pat_t *p = x->any; p != NULL; p = p->next)
    if (cand_push(x, &n, p) != 0) return 0;
  if (cand_add_prefixed(x, &n, k, len) != 0) return 0;
  if (len > 1 && k[0] == '{' && cand_add_prefixed(x, &n, k + 1, len - 1) != 0)
    return 0;
  return n;
}

/* Whether some candidate pattern matches k as a value key. */
static int matches_value(pindex_t *x, const char *k, size_t len) {
  size_t n = candidates(x, k, len);
  for (size_t i = 0; i < n; i++) {
    const pat_t *p = x->cand[i];
    if (inv_regen_classify(p->pat, p->patlen, k, len, NULL, NULL) ==
            INV_REGEN_VALUE &&
        inv_glob_match(p->pat, p->patlen, k, len))
      return 1;
  }
  return 0;
}

/* What the run does with key k of a listing, the strongest wish of its
 * patterns: a value key matching a pattern gets that pattern's mode (hard
 * over soft: a hard invalidation removes what a soft one keeps); a lock of
 * a matching value key is removed; so is a stale copy, for a hard pattern
 * only (soft invalidation keeps stale copies). A lock or stale copy whose
 * value key matched in the same listing is skipped: the value key's
 * command removes it. Returns OP_NONE to skip. */
static int key_op(pindex_t *x, const char *k, size_t len, page_set_t *values) {
  int best = OP_NONE;
  size_t n = candidates(x, k, len);
  for (size_t i = 0; i < n && best != OP_HARD; i++) {
    const pat_t *p = x->cand[i];
    size_t vs, vl;
    inv_regen_kind_t kind =
        inv_regen_classify(p->pat, p->patlen, k, len, &vs, &vl);
    if (kind == INV_REGEN_VALUE) {
      if (!inv_glob_match(p->pat, p->patlen, k, len)) continue;
      int op = p->mode == INV_UNLINK_SOFT ? OP_SOFT : OP_HARD;
      if (op > best) best = op;
      continue;
    }
    if (kind == INV_REGEN_STALE && p->mode == INV_UNLINK_SOFT) continue;
    if (page_set(values, k + vs, vl, 0)) continue;
    if (best < OP_RAW) best = OP_RAW;
  }
  return best;
}

static inv_unlink_op_t unlink_op(int op) {
  return op == OP_HARD   ? INV_UNLINK_HARD
         : op == OP_SOFT ? INV_UNLINK_SOFT
                         : INV_UNLINK_RAW;
}

/* Copies the keys of an array reply that the run acts on and the node
 * answers for into j->keys (see key_op); the service's own keys are never
 * taken, whatever matched them. Returns 0 or INV_ENOMEM. */
static int take_keys(run_t *j, const redisReply *arr) {
  inv_scanner_t *s = j->s;
  int rc = INV_ENOMEM;
  free_keys(j);
  if (arr->elements == 0) return 0;
  s->stats->keys_scanned += arr->elements;
  j->scanned += arr->elements;
  size_t cap = pow2_above(arr->elements);
  page_set_t values = {calloc(cap, sizeof(span_t)), cap - 1};
  j->keys = calloc(arr->elements, sizeof(*j->keys));
  if (values.slots == NULL || j->keys == NULL) goto out;
  /* First the value keys, so that their locks and stale copies are known
   * wherever they stand in the listing. */
  for (size_t i = 0; i < arr->elements; i++) {
    const redisReply *k = arr->element[i];
    if (k->type != REDIS_REPLY_STRING) continue;
    if (matches_value(&j->idx, k->str, k->len))
      page_set(&values, k->str, k->len, 1);
  }
  for (size_t i = 0; i < arr->elements; i++) {
    const redisReply *k = arr->element[i];
    int asking;
    if (k->type != REDIS_REPLY_STRING) continue;
    int op = key_op(&j->idx, k->str, k->len, &values);
    if (op == OP_NONE) continue;
    if (inv_key_reserved(k->str, k->len)) {
      s->stats->reserved_skipped++;
      continue;
    }
    if (!slot_mode(s, k->str, k->len, &asking)) continue;
    char *copy = malloc(k->len + 1);
    if (copy == NULL) goto out;
    memcpy(copy, k->str, k->len);
    copy[k->len] = '\0';
    j->keys[j->nkeys].key = copy;
    j->keys[j->nkeys].len = k->len;
    j->keys[j->nkeys].asking = asking;
    j->keys[j->nkeys].op = unlink_op(op);
    j->nkeys++;
  }
  s->stats->keys_matched += j->nkeys;
  j->matched += j->nkeys;
  rc = 0;
out:
  free(values.slots);
  return rc;
}

static void cmd_cb(inv_redis_t *r, redisReply *reply, int err, void *data);

/* Sends the run's next listing command. */
static void send_next(run_t *j) {
  inv_scanner_t *s = j->s;
  char count[32], slot[16];
  int rc;
  snprintf(count, sizeof(count), "%lld", s->opts.scan_count);
  snprintf(slot, sizeof(slot), "%u", j->slot);
  if (j->phase == PHASE_SCAN) {
    /* MATCH the cover pattern of a lone pattern, so that locks and stale
     * copies come along; take_keys tells the kinds apart. */
    const char *argv[6] = {"SCAN", j->cursor, "COUNT",
                           count,  "MATCH",   j->match};
    size_t lens[6] = {4, strlen(j->cursor), 5, strlen(count), 5, j->matchlen};
    rc = inv_redis_command_argv(s->r, j->match ? 6 : 4, argv, lens, cmd_cb, j);
    if (rc == 0) s->stats->scan_calls++;
  } else if (j->phase == PHASE_COUNT) {
    const char *argv[3] = {"CLUSTER", "COUNTKEYSINSLOT", slot};
    size_t lens[3] = {7, 15, strlen(slot)};
    rc = inv_redis_command_argv(s->r, 3, argv, lens, cmd_cb, j);
  } else {
    char n[32];
    snprintf(n, sizeof(n), "%lld", j->slot_count);
    const char *argv[4] = {"CLUSTER", "GETKEYSINSLOT", slot, n};
    size_t lens[4] = {7, 13, strlen(slot), strlen(n)};
    rc = inv_redis_command_argv(s->r, 4, argv, lens, cmd_cb, j);
  }
  if (rc != 0) {
    /* Not connected or the connection is full: resent by resume. */
    j->stalled = 1;
    if (rc != INV_ECLOSED) arm_retry(s);
    return;
  }
  j->stalled = 0;
  j->cmd_inflight = 1;
}

/* Hands keys to the unlinker within the in-flight bound, then asks for the
 * next page or completes the run. */
static void pump(run_t *j) {
  inv_scanner_t *s = j->s;
  size_t limit = (size_t)s->opts.scan_inflight;
  while (j->kidx < j->nkeys && j->inflight < limit) {
    key_t_ *k = &j->keys[j->kidx];
    if (inv_unlinker_push(s->u, k->key, k->len, k->op, k->asking, key_done_cb,
                          j, 0) != 0) {
      /* Out of memory: a key's completion pumps again; with none in
       * flight, the retry timer does. */
      if (j->inflight == 0 && !j->cmd_inflight) {
        j->stalled = 1;
        arm_retry(s);
      }
      return;
    }
    free(k->key);
    j->kidx++;
    j->inflight++;
  }
  if (j->kidx < j->nkeys || j->cmd_inflight || j->stalled) return;
  free_keys(j);
  if (j->listed) {
    if (j->inflight == 0) complete(j);
    return;
  }
  if (j->inflight < limit) send_next(j);
}

/* The run's patterns, for log lines: the pattern of a lone one. */
static void log_failure(const run_t *j, const char *what, const char *detail,
                        int detail_len) {
  if (j->npats == 1)
    inv_log_error("scanner", "%s of '%.*s' failed: %.*s (it runs again)", what,
                  (int)j->pats[0]->patlen, j->pats[0]->pat, detail_len, detail);
  else
    inv_log_error("scanner",
                  "%s of a shared pass (%zu patterns) failed: %.*s "
                  "(they run again)",
                  what, j->npats, detail_len, detail);
}

static void cmd_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  run_t *j = data;
  inv_scanner_t *s = j->s;
  (void)r;
  j->cmd_inflight = 0;
  if (j->state == JOB_CANCELLED) {
    zombie_check(j);
    return;
  }
  if (err < 0) {
    j->stalled =
        1; /* a timeout drops the connection too: resent on reconnect */
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    if (reply->len >= 7 && (memcmp(reply->str, "LOADING", 7) == 0 ||
                            memcmp(reply->str, "BUSY", 4) == 0)) {
      j->stalled = 1;
      arm_retry(s);
      return;
    }
    log_failure(j, "scan", reply->str, (int)reply->len);
    j->error = 1;
    j->listed = 1;
    pump(j);
    return;
  }
  int rc = 0;
  if (j->phase == PHASE_SCAN) {
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY ||
        reply->element[0]->len >= sizeof(j->cursor)) {
      inv_log_error("scanner", "unexpected SCAN reply: the patterns run again");
      j->error = 1;
      j->listed = 1;
    } else {
      memcpy(j->cursor, reply->element[0]->str, reply->element[0]->len);
      j->cursor[reply->element[0]->len] = '\0';
      if (strcmp(j->cursor, "0") == 0) j->listed = 1;
      rc = take_keys(j, reply->element[1]);
    }
  } else if (j->phase == PHASE_COUNT) {
    j->slot_count = reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
    if (j->slot_count <= 0) {
      j->listed = 1;
    } else if (j->slot_count > SLOT_LIST_MAX) {
      /* Too many keys for one listing: walk them with SCAN instead. */
      j->phase = PHASE_SCAN;
    } else {
      j->phase = PHASE_GETKEYS;
    }
  } else {
    j->listed = 1;
    if (reply->type == REDIS_REPLY_ARRAY) rc = take_keys(j, reply);
  }
  if (rc != 0) {
    log_failure(j, "listing", "out of memory", 13);
    free_keys(j);
    j->error = 1;
    j->listed = 1;
  }
  pump(j);
}

/* A run over pats[0..npats) (the array and its patterns are taken over),
 * with its index and, for a lone pattern, its MATCH. Returns NULL on
 * ENOMEM, and then pats stays the caller's. */
static run_t *run_new(inv_scanner_t *s, pat_t **pats, size_t npats) {
  run_t *j = calloc(1, sizeof(*j));
  if (j == NULL) return NULL;
  j->s = s;
  j->pats = pats;
  j->npats = npats;
  strcpy(j->cursor, "0");
  if (index_build(j) != 0) goto err;
  if (npats == 1) {
    const pat_t *p = pats[0];
    j->match = malloc(p->patlen + 3);
    if (j->match == NULL) goto err;
    j->matchlen = inv_regen_cover_pattern(p->pat, p->patlen, j->match);
    if (j->matchlen == 0) {
      free(j->match); /* no MATCH: every key is filtered here */
      j->match = NULL;
    } else {
      j->match[j->matchlen] = '\0';
    }
  }
  return j;
err:
  j->pats = NULL;
  j->npats = 0;
  run_free(j);
  return NULL;
}

static void start_run(inv_scanner_t *s, run_t *j) {
  run_set_state(j, JOB_RUNNING);
  run_log_start(j);
  list_push(&s->running, j);
  if (j->pinned && s->map->cluster) {
    j->phase = PHASE_COUNT;
    s->stats->slot_scans++;
  } else {
    j->phase = PHASE_SCAN;
  }
  pump(j);
}

static void start_pending(inv_scanner_t *s) {
  run_t *j;
  INV_CHECK(s->running.n >= (s->pass != NULL));
  while (!s->closing &&
         s->running.n - (s->pass != NULL) < (size_t)s->opts.max_scans &&
         (j = run_of(inv_queue_head(&s->pending.q))) != NULL) {
    list_remove(&s->pending, j);
    waiting_sub(s, j->pats[0]);
    start_run(s, j);
  }
  update_gauges(s);
}

/* Appends an unpinned pattern to the waiting FIFO. */
static void wait_push(inv_scanner_t *s, pat_t *p) {
  inv_queue_insert_tail(&s->waiting, &p->node);
  waiting_add(s, p);
}

static uint64_t pat_hash(const pat_t *p) {
  return span_hash(p->pat, p->patlen) ^ (uint64_t)p->mode;
}

/* Adds every tag of p to q, or none. Returns 0 or INV_ENOMEM. */
static int merge_tags(pat_t *q, const pat_t *p) {
  size_t before = q->ntags;
  for (size_t t = 0; t < p->ntags; t++) {
    if (add_tag(q, p->tags[t]) != 0) {
      q->ntags = before;
      return INV_ENOMEM;
    }
  }
  return 0;
}

/* Takes the waiting FIFO, merging identical patterns (same bytes and mode)
 * into the first one. Returns the distinct patterns and their count, or
 * NULL on ENOMEM (the FIFO is then left as it was). */
static pat_t **take_waiting(inv_scanner_t *s, size_t *out_n) {
  size_t cap = pow2_above(s->nwaiting);
  pat_t **seen = calloc(cap, sizeof(*seen));
  pat_t **pats = malloc(s->nwaiting * sizeof(*pats));
  if (seen == NULL || pats == NULL) {
    free(seen);
    free(pats);
    return NULL;
  }
  size_t n = 0;
  pat_t *p;
  while ((p = pat_of(inv_queue_pop(&s->waiting))) != NULL) {
    waiting_sub(s, p);
    size_t i = pat_hash(p) & (cap - 1);
    for (; seen[i] != NULL; i = (i + 1) & (cap - 1)) {
      const pat_t *q = seen[i];
      if (q->mode == p->mode && q->patlen == p->patlen &&
          memcmp(q->pat, p->pat, p->patlen) == 0)
        break;
    }
    pat_t *q = seen[i];
    if (q != NULL && merge_tags(q, p) == 0) {
      /* Identical: its tags join the first one. */
      s->stats->scans_merged += p->ntags;
      pat_free(p);
    } else if (q != NULL) {
      /* Its tags could not join (out of memory): it runs as a pattern of
       * its own in the pass, at the cost of matching it twice. */
      p->next = NULL;
      pats[n++] = p;
    } else {
      seen[i] = p;
      p->next = NULL;
      pats[n++] = p;
    }
  }
  free(seen);
  *out_n = n;
  return pats;
}

/* Starts the shared pass over every waiting pattern, unless one runs. */
static void start_pass(inv_scanner_t *s) {
  if (s->closing || s->pass != NULL || inv_queue_empty(&s->waiting)) return;
  size_t n;
  pat_t **pats = take_waiting(s, &n);
  run_t *j = pats ? run_new(s, pats, n) : NULL;
  if (j == NULL) {
    /* Out of memory: the patterns wait again, and the retry timer tries
     * once more, since nothing else may come to start a pass. */
    for (size_t i = 0; pats != NULL && i < n; i++) wait_push(s, pats[i]);
    free(pats);
    inv_log_error("scanner", "out of memory starting a scan pass");
    arm_retry(s);
    update_gauges(s);
    return;
  }
  j->shared = 1;
  s->pass = j;
  s->stats->scan_passes++;
  s->stats->pass_patterns += n;
  start_run(s, j);
  update_gauges(s);
}

static void kick_cb(uv_idle_t *h) {
  inv_scanner_t *s = h->data;
  uv_idle_stop(h);
  start_pass(s);
}

static void kick_soon(inv_scanner_t *s) {
  if (s->closing || s->pass != NULL) return;
  uv_idle_start(&s->kick, kick_cb);
}

int inv_scanner_create(uv_loop_t *loop, inv_redis_t *r, inv_unlinker_t *u,
                       const inv_slot_map_t *map,
                       const inv_scanner_opts_t *opts,
                       inv_worker_stats_t *stats, inv_unlink_done_cb done_cb,
                       void *owner, inv_scanner_t **out) {
  inv_scanner_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return INV_ENOMEM;
  inv_queue_init(&s->waiting);
  inv_queue_init(&s->again);
  inv_queue_init(&s->pending.q);
  inv_queue_init(&s->running.q);
  s->loop = loop;
  s->r = r;
  s->u = u;
  s->map = map;
  s->opts = *opts;
  s->stats = stats;
  s->done_cb = done_cb;
  s->owner = owner;
  uv_timer_init(loop, &s->retry);
  uv_timer_init(loop, &s->again_timer);
  uv_idle_init(loop, &s->kick);
  s->retry.data = s->again_timer.data = s->kick.data = s;
  s->open_handles = 3;
  *out = s;
  return 0;
}

static pat_t *pat_new(const char *pattern, size_t len, inv_unlink_op_t mode,
                      int pinned, unsigned slot, uint64_t tag) {
  pat_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  /* One block: the pattern, NUL, its literal prefix. */
  p->pat = malloc(2 * len + 1);
  if (p->pat == NULL || add_tag(p, tag) != 0) {
    pat_free(p);
    return NULL;
  }
  memcpy(p->pat, pattern, len);
  p->pat[len] = '\0';
  p->patlen = len;
  p->lit = p->pat + len + 1;
  p->litlen = inv_glob_literal_prefix(pattern, len, p->lit);
  p->mode = mode;
  p->pinned = pinned;
  p->slot = slot;
  return p;
}

/* Joins tag to a pending pinned run of the same pattern and mode among the
 * last few. Returns 1 when joined. */
static int join_pending(inv_scanner_t *s, const char *pattern, size_t len,
                        inv_unlink_op_t mode, uint64_t tag) {
  size_t looked = 0;
  for (inv_queue_t *q = inv_queue_tail(&s->pending.q);
       q != NULL && looked < PINNED_MERGE_LOOKBACK;
       q = inv_queue_prev(&s->pending.q, q), looked++) {
    pat_t *p = run_of(q)->pats[0];
    if (p->patlen == len && p->mode == mode &&
        memcmp(p->pat, pattern, len) == 0) {
      size_t before = pat_bytes(p);
      if (add_tag(p, tag) != 0) return 0;
      s->waiting_bytes += pat_bytes(p) - before;
      s->stats->scans_merged++;
      return 1;
    }
  }
  return 0;
}

int inv_scanner_submit(inv_scanner_t *s, const char *pattern, size_t len,
                       inv_unlink_op_t mode, int pinned, unsigned slot,
                       uint64_t tag) {
  if (pinned && join_pending(s, pattern, len, mode, tag)) return 0;
  pat_t *p = pat_new(pattern, len, mode, pinned, slot, tag);
  if (p == NULL) return INV_ENOMEM;
  if (pinned) {
    pat_t **one = malloc(sizeof(*one));
    if (one != NULL) one[0] = p;
    run_t *j = one ? run_new(s, one, 1) : NULL;
    if (j == NULL) {
      free(one);
      pat_free(p);
      return INV_ENOMEM;
    }
    j->pinned = 1;
    j->slot = slot;
    j->state = JOB_PENDING;
    list_push(&s->pending, j);
    waiting_add(s, p);
    start_pending(s);
    return 0;
  }
  wait_push(s, p);
  kick_soon(s);
  update_gauges(s);
  return 0;
}

/* Cancels every run of l. A run with nothing in flight is freed at once,
 * the others become zombies; done_cb runs for every tag. The head is taken
 * afresh on every turn, since done_cb may change the lists. */
static void cancel_list(inv_scanner_t *s, list_t *l) {
  run_t *j;
  while ((j = run_of(inv_queue_head(&l->q))) != NULL) {
    list_remove(l, j);
    if (j == s->pass) s->pass = NULL;
    if (j->state == JOB_PENDING) waiting_sub(s, j->pats[0]);
    pat_t **pats = j->pats;
    size_t npats = j->npats;
    j->pats = NULL;
    j->npats = 0;
    index_free(&j->idx);
    free_keys(j);
    run_set_state(j, JOB_CANCELLED);
    s->zombies++;
    zombie_check(j);
    for (size_t i = 0; i < npats; i++) pat_finish(s, pats[i], INV_ECLOSED);
    free(pats);
  }
}

/* Cancels every pattern of list (counted in nwaiting). */
static void cancel_pats(inv_scanner_t *s, inv_queue_t *list) {
  pat_t *p;
  while ((p = pat_of(inv_queue_pop(list))) != NULL) {
    waiting_sub(s, p);
    pat_finish(s, p, INV_ECLOSED);
  }
}

static void hold(inv_scanner_t *s) { s->holds++; }

/* Ends a hold; the last one frees a closing scanner that nothing else
 * keeps. */
static void release(inv_scanner_t *s) {
  INV_CHECK(s->holds > 0);
  if (--s->holds == 0) maybe_free_scanner(s);
}

/* Held throughout: a run cancelled early with nothing in flight is freed
 * at once, which must not free a closing scanner while a run cancelled
 * later still has a command in flight whose reply will come to it. */
void inv_scanner_cancel_all(inv_scanner_t *s) {
  hold(s);
  uv_idle_stop(&s->kick);
  uv_timer_stop(&s->again_timer);
  s->again_streak = 0;
  /* Both lists are taken whole before any done_cb runs: what a done_cb
   * submits meanwhile is not cancelled here. */
  inv_queue_t waiting, again;
  inv_queue_init(&waiting);
  inv_queue_init(&again);
  inv_queue_move(&s->waiting, &waiting);
  inv_queue_move(&s->again, &again);
  cancel_pats(s, &waiting);
  cancel_pats(s, &again);
  cancel_list(s, &s->pending);
  cancel_list(s, &s->running);
  update_gauges(s);
  release(s);
}

void inv_scanner_resume(inv_scanner_t *s) {
  inv_queue_t *q, *n;
  INV_QUEUE_FOREACH(q, n, &s->running.q) {
    run_t *j = run_of(q);
    if (j->stalled && !j->cmd_inflight) {
      j->stalled = 0;
      pump(j); /* may complete and free j */
    }
  }
}

size_t inv_scanner_running(const inv_scanner_t *s) {
  return running_patterns(s);
}
size_t inv_scanner_pending(const inv_scanner_t *s) { return s->nwaiting; }
size_t inv_scanner_waiting_bytes(const inv_scanner_t *s) {
  return s->waiting_bytes;
}

static void free_cb(uv_handle_t *h) {
  inv_scanner_t *s = h->data;
  INV_CHECK(s->open_handles > 0);
  if (--s->open_handles == 0) free(s);
}

static void maybe_free_scanner(inv_scanner_t *s) {
  if (s->closing != 1 || s->zombies > 0 || s->holds > 0) return;
  s->closing = 2;
  uv_close((uv_handle_t *)&s->retry, free_cb);
  uv_close((uv_handle_t *)&s->again_timer, free_cb);
  uv_close((uv_handle_t *)&s->kick, free_cb);
}

void inv_scanner_close(inv_scanner_t *s) {
  if (s == NULL) return;
  hold(s);
  s->closing = 1;
  uv_timer_stop(&s->retry);
  uv_timer_stop(&s->again_timer);
  uv_idle_stop(&s->kick);
  inv_scanner_cancel_all(s);
  /* Frees s now when nothing is in flight; else the last zombie does. */
  release(s);
}
