/*
 * Scan jobs (see scanner.h).
 */
#include "workers/scanner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/glob.h"
#include "common/log.h"
#include "proto/keyname.h"

/* A slot with more keys than this is walked with SCAN instead of being
 * listed in one GETKEYSINSLOT reply, which would be held in memory. */
#define SLOT_LIST_MAX 100000

enum { JOB_PENDING, JOB_RUNNING, JOB_CANCELLED };
enum { PHASE_SCAN, PHASE_COUNT, PHASE_GETKEYS };

typedef struct key_s {
  char *key;
  size_t len;
  int asking;
  inv_unlink_op_t op;
} key_t_;

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

typedef struct job_s {
  struct job_s *next, *prev;
  inv_scanner_t *s;
  char *pat;
  size_t patlen;
  char *match;           /* SCAN MATCH: "*" pat "*" (NULL: no MATCH) */
  size_t matchlen;
  inv_unlink_op_t mode;  /* INV_UNLINK_HARD or INV_UNLINK_SOFT */
  int pinned;
  unsigned slot;
  int state;
  int phase;
  char cursor[32];
  long long slot_count;  /* COUNTKEYSINSLOT answer */
  int cmd_inflight;      /* a SCAN/COUNT/GETKEYS command awaits its reply */
  int stalled;           /* its command failed; resend on resume */
  int listed;            /* the listing is finished (cursor 0, GETKEYS done) */
  size_t inflight;       /* keys handed to the unlinker, not yet done */
  key_t_ *keys;          /* matched keys of the last page, not yet pushed */
  size_t nkeys, kidx;
  uint64_t *tags;
  size_t ntags, tagcap;
} job_t;

typedef struct list_s {
  job_t *head, *tail;
  size_t n;
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
  list_t pending, running;
  size_t zombies; /* cancelled jobs waiting for their commands */
  int closing;
  uv_timer_t retry;
  int retry_armed;
};

static void list_push(list_t *l, job_t *j) {
  j->next = NULL;
  j->prev = l->tail;
  if (l->tail) l->tail->next = j;
  else l->head = j;
  l->tail = j;
  l->n++;
}

static void list_remove(list_t *l, job_t *j) {
  if (j->prev) j->prev->next = j->next;
  else l->head = j->next;
  if (j->next) j->next->prev = j->prev;
  else l->tail = j->prev;
  j->next = j->prev = NULL;
  l->n--;
}

static void free_keys(job_t *j) {
  for (size_t i = j->kidx; i < j->nkeys; i++) free(j->keys[i].key);
  free(j->keys);
  j->keys = NULL;
  j->nkeys = j->kidx = 0;
}

static void job_free(job_t *j) {
  free_keys(j);
  free(j->pat);
  free(j->match);
  free(j->tags);
  free(j);
}

static void maybe_free_scanner(inv_scanner_t *s);

/* Frees a cancelled job once nothing of it is in flight. */
static void zombie_check(job_t *j) {
  inv_scanner_t *s = j->s;
  if (j->state != JOB_CANCELLED || j->cmd_inflight || j->inflight > 0) return;
  s->zombies--;
  job_free(j);
  maybe_free_scanner(s);
}

static void update_gauges(inv_scanner_t *s) {
  s->stats->scans_running = s->running.n;
  s->stats->scans_pending = s->pending.n;
}

static void start_pending(inv_scanner_t *s);
static void pump(job_t *j);

static void retry_cb(uv_timer_t *t) {
  inv_scanner_t *s = t->data;
  s->retry_armed = 0;
  inv_scanner_resume(s);
}

static void arm_retry(inv_scanner_t *s) {
  if (s->retry_armed || s->closing) return;
  s->retry_armed = 1;
  uv_timer_start(&s->retry, retry_cb, 200, 0);
}

/* Calls done_cb for every tag of j with err, then frees j. */
static void job_finish(job_t *j, int err) {
  inv_scanner_t *s = j->s;
  uint64_t *tags = j->tags;
  size_t ntags = j->ntags;
  j->tags = NULL;
  j->ntags = 0;
  job_free(j);
  for (size_t i = 0; i < ntags; i++) s->done_cb(s->owner, tags[i], err);
  free(tags);
}

static void complete(job_t *j) {
  inv_scanner_t *s = j->s;
  list_remove(&s->running, j);
  s->stats->scans_done++;
  job_finish(j, 0);
  start_pending(s);
  update_gauges(s);
}

static void key_done_cb(void *owner, uint64_t tag, int err) {
  job_t *j = owner;
  (void)tag;
  (void)err;
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
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)p[i]) * UINT64_C(1099511628211);
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

/* What the job does with key k of a listing: a value key matching the
 * pattern gets the job's mode; a lock of a matching value key is removed;
 * so is a stale copy, in hard mode only (soft invalidation keeps stale
 * copies). A lock or stale copy whose value key is in the same listing is
 * skipped: the value key's command removes it. Returns 0 to skip. */
static int key_op(const job_t *j, const redisReply *k, page_set_t *values,
                  inv_unlink_op_t *op) {
  size_t vs, vl;
  inv_regen_kind_t kind = inv_regen_classify(j->pat, j->patlen, k->str, k->len,
                                             &vs, &vl);
  if (kind == INV_REGEN_VALUE) {
    if (!inv_glob_match(j->pat, j->patlen, k->str, k->len)) return 0;
    *op = j->mode;
    return 1;
  }
  if (kind == INV_REGEN_STALE && j->mode == INV_UNLINK_SOFT) return 0;
  if (page_set(values, k->str + vs, vl, 0)) return 0;
  *op = INV_UNLINK_RAW;
  return 1;
}

/* Copies the keys of an array reply that the job acts on and the node
 * answers for into j->keys (see key_op). Returns 0 or INV_ENOMEM. */
static int take_keys(job_t *j, const redisReply *arr) {
  inv_scanner_t *s = j->s;
  int rc = INV_ENOMEM;
  free_keys(j);
  if (arr->elements == 0) return 0;
  s->stats->keys_scanned += arr->elements;
  size_t cap = 4;
  while (cap < 2 * arr->elements) cap *= 2;
  page_set_t values = {calloc(cap, sizeof(span_t)), cap - 1};
  j->keys = calloc(arr->elements, sizeof(*j->keys));
  if (values.slots == NULL || j->keys == NULL) goto out;
  /* First the value keys, so that their locks and stale copies are known
   * wherever they stand in the listing. */
  for (size_t i = 0; i < arr->elements; i++) {
    const redisReply *k = arr->element[i];
    if (k->type != REDIS_REPLY_STRING) continue;
    if (inv_regen_classify(j->pat, j->patlen, k->str, k->len, NULL, NULL) ==
            INV_REGEN_VALUE &&
        inv_glob_match(j->pat, j->patlen, k->str, k->len))
      page_set(&values, k->str, k->len, 1);
  }
  for (size_t i = 0; i < arr->elements; i++) {
    const redisReply *k = arr->element[i];
    int asking;
    inv_unlink_op_t op;
    if (k->type != REDIS_REPLY_STRING) continue;
    if (!key_op(j, k, &values, &op)) continue;
    if (!slot_mode(s, k->str, k->len, &asking)) continue;
    char *copy = malloc(k->len + 1);
    if (copy == NULL) goto out;
    memcpy(copy, k->str, k->len);
    copy[k->len] = '\0';
    j->keys[j->nkeys].key = copy;
    j->keys[j->nkeys].len = k->len;
    j->keys[j->nkeys].asking = asking;
    j->keys[j->nkeys].op = op;
    j->nkeys++;
  }
  rc = 0;
out:
  free(values.slots);
  return rc;
}

static void cmd_cb(inv_redis_t *r, redisReply *reply, int err, void *data);

/* Sends the job's next listing command. */
static void send_next(job_t *j) {
  inv_scanner_t *s = j->s;
  char count[32], slot[16];
  int rc;
  snprintf(count, sizeof(count), "%lld", s->opts.scan_count);
  snprintf(slot, sizeof(slot), "%u", j->slot);
  if (j->phase == PHASE_SCAN) {
    /* MATCH the cover pattern, so that locks and stale copies come along;
     * take_keys tells the kinds apart. */
    const char *argv[6] = {"SCAN", j->cursor, "COUNT", count, "MATCH", j->match};
    size_t lens[6] = {4, strlen(j->cursor), 5, strlen(count), 5, j->matchlen};
    rc = inv_redis_command_argv(s->r, j->match ? 6 : 4, argv, lens, cmd_cb, j);
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
 * next page or completes the job. */
static void pump(job_t *j) {
  inv_scanner_t *s = j->s;
  size_t limit = (size_t)s->opts.scan_inflight;
  while (j->kidx < j->nkeys && j->inflight < limit) {
    key_t_ *k = &j->keys[j->kidx];
    if (inv_unlinker_push(s->u, k->key, k->len, k->op, k->asking, key_done_cb,
                          j, 0) != 0)
      break;
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

static void cmd_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  job_t *j = data;
  inv_scanner_t *s = j->s;
  (void)r;
  j->cmd_inflight = 0;
  if (j->state == JOB_CANCELLED) {
    zombie_check(j);
    return;
  }
  if (err < 0) {
    j->stalled = 1; /* a timeout drops the connection too: resent on reconnect */
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    if (reply->len >= 7 && (memcmp(reply->str, "LOADING", 7) == 0 ||
                            memcmp(reply->str, "BUSY", 4) == 0)) {
      j->stalled = 1;
      arm_retry(s);
      return;
    }
    inv_log_error("scanner", "scan of '%.*s' failed: %.*s", (int)j->patlen,
                  j->pat, (int)reply->len, reply->str);
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
      inv_log_error("scanner", "unexpected SCAN reply");
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
    inv_log_error("scanner", "out of memory listing '%.*s'", (int)j->patlen, j->pat);
    free_keys(j);
    j->listed = 1;
  }
  pump(j);
}

static void start_job(inv_scanner_t *s, job_t *j) {
  j->state = JOB_RUNNING;
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
  while (!s->closing && s->pending.head != NULL &&
         s->running.n < (size_t)s->opts.max_scans) {
    job_t *j = s->pending.head;
    list_remove(&s->pending, j);
    start_job(s, j);
  }
  update_gauges(s);
}

int inv_scanner_create(uv_loop_t *loop, inv_redis_t *r, inv_unlinker_t *u,
                       const inv_slot_map_t *map, const inv_scanner_opts_t *opts,
                       inv_worker_stats_t *stats, inv_unlink_done_cb done_cb,
                       void *owner, inv_scanner_t **out) {
  inv_scanner_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return INV_ENOMEM;
  s->loop = loop;
  s->r = r;
  s->u = u;
  s->map = map;
  s->opts = *opts;
  s->stats = stats;
  s->done_cb = done_cb;
  s->owner = owner;
  uv_timer_init(loop, &s->retry);
  s->retry.data = s;
  *out = s;
  return 0;
}

static int add_tag(job_t *j, uint64_t tag) {
  if (j->ntags == j->tagcap) {
    size_t cap = j->tagcap ? j->tagcap * 2 : 4;
    uint64_t *t = realloc(j->tags, cap * sizeof(*t));
    if (t == NULL) return INV_ENOMEM;
    j->tags = t;
    j->tagcap = cap;
  }
  j->tags[j->ntags++] = tag;
  return 0;
}

int inv_scanner_submit(inv_scanner_t *s, const char *pattern, size_t len,
                       inv_unlink_op_t mode, int pinned, unsigned slot,
                       uint64_t tag) {
  for (job_t *j = s->pending.head; j != NULL; j = j->next) {
    if (j->patlen == len && j->mode == mode && memcmp(j->pat, pattern, len) == 0) {
      if (add_tag(j, tag) != 0) return INV_ENOMEM;
      s->stats->scans_merged++;
      return 0;
    }
  }
  job_t *j = calloc(1, sizeof(*j));
  if (j == NULL) return INV_ENOMEM;
  j->s = s;
  j->pat = malloc(len + 1);
  j->match = malloc(len + 3);
  if (j->pat == NULL || j->match == NULL || add_tag(j, tag) != 0) goto err;
  memcpy(j->pat, pattern, len);
  j->pat[len] = '\0';
  j->patlen = len;
  j->matchlen = inv_regen_cover_pattern(pattern, len, j->match);
  if (j->matchlen == 0) {
    free(j->match); /* no MATCH: every key is filtered here */
    j->match = NULL;
  } else {
    j->match[j->matchlen] = '\0';
  }
  j->mode = mode;
  j->pinned = pinned;
  j->slot = slot;
  strcpy(j->cursor, "0");
  j->state = JOB_PENDING;
  list_push(&s->pending, j);
  start_pending(s);
  return 0;
err:
  free(j->pat);
  free(j->match);
  free(j->tags);
  free(j);
  return INV_ENOMEM;
}

static void cancel_list(inv_scanner_t *s, list_t *l) {
  while (l->head != NULL) {
    job_t *j = l->head;
    list_remove(l, j);
    uint64_t *tags = j->tags;
    size_t ntags = j->ntags;
    j->tags = NULL;
    j->ntags = 0;
    free_keys(j);
    j->state = JOB_CANCELLED;
    s->zombies++;
    zombie_check(j);
    for (size_t i = 0; i < ntags; i++) s->done_cb(s->owner, tags[i], INV_ECLOSED);
    free(tags);
  }
}

void inv_scanner_cancel_all(inv_scanner_t *s) {
  cancel_list(s, &s->pending);
  cancel_list(s, &s->running);
  update_gauges(s);
}

void inv_scanner_resume(inv_scanner_t *s) {
  job_t *j = s->running.head;
  while (j != NULL) {
    job_t *next = j->next;
    if (j->stalled && !j->cmd_inflight) {
      j->stalled = 0;
      pump(j); /* may complete and free j */
    }
    j = next;
  }
}

size_t inv_scanner_running(const inv_scanner_t *s) { return s->running.n; }
size_t inv_scanner_pending(const inv_scanner_t *s) { return s->pending.n; }

static void free_cb(uv_handle_t *h) { free(h->data); }

static void maybe_free_scanner(inv_scanner_t *s) {
  if (s->closing != 1 || s->zombies > 0) return;
  s->closing = 2;
  uv_close((uv_handle_t *)&s->retry, free_cb);
}

void inv_scanner_close(inv_scanner_t *s) {
  if (s == NULL) return;
  s->closing = 1;
  uv_timer_stop(&s->retry);
  inv_scanner_cancel_all(s);
  maybe_free_scanner(s);
}
