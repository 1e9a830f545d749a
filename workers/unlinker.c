/*
 * The UNLINK pipeline (see unlinker.h).
 */
#include "workers/unlinker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "proto/scripts.h"

typedef struct item_s {
  struct item_s *next;
  inv_unlinker_t *u;
  inv_unlink_done_cb done_cb;
  void *owner;
  uint64_t tag;
  int asking;
  int op;   /* inv_unlink_op_t; RAW when the names cannot keep the slot */
  int eval; /* soft: send EVAL (the script cache lacked it) */
  int split; /* 0, or 1..3: L(K), K, S(K) sent one by one (see unlink_cb) */
  size_t len, lock_len, stale_len;
  char *lock, *stale; /* inside key[], for HARD and SOFT */
  char key[];         /* key NUL lock NUL stale NUL */
} item_t;

struct inv_unlinker_s {
  uv_loop_t *loop;
  inv_redis_t *r;
  inv_worker_stats_t *stats;
  char grace[24]; /* soft.lua's ARGV[1] */
  inv_unlink_moved_cb moved_cb;
  void *moved_data;
  item_t *head, *tail; /* unsent keys, FIFO */
  size_t queued;
  size_t inflight;
  int closing;
  int retry_armed;
  uv_timer_t retry; /* resends after a LOADING/BUSY/TRYAGAIN reply */
};

int inv_unlinker_create(uv_loop_t *loop, inv_redis_t *r, inv_worker_stats_t *stats,
                        uint64_t grace_ms, inv_unlink_moved_cb moved_cb,
                        void *moved_data, inv_unlinker_t **out) {
  inv_unlinker_t *u = calloc(1, sizeof(*u));
  if (u == NULL) return INV_ENOMEM;
  snprintf(u->grace, sizeof(u->grace), "%llu", (unsigned long long)grace_ms);
  u->loop = loop;
  u->r = r;
  u->stats = stats;
  u->moved_cb = moved_cb;
  u->moved_data = moved_data;
  uv_timer_init(loop, &u->retry);
  u->retry.data = u;
  *out = u;
  return 0;
}

static void enqueue(inv_unlinker_t *u, item_t *it) {
  it->next = NULL;
  if (u->tail) u->tail->next = it;
  else u->head = it;
  u->tail = it;
  u->queued++;
}

static void finish(item_t *it, int err) {
  inv_unlink_done_cb cb = it->done_cb;
  void *owner = it->owner;
  uint64_t tag = it->tag;
  free(it);
  cb(owner, tag, err);
}

static void maybe_free(inv_unlinker_t *u);

static void retry_cb(uv_timer_t *t) {
  inv_unlinker_t *u = t->data;
  u->retry_armed = 0;
  inv_unlinker_flush(u);
}

/* Whether an error reply means "try again later" rather than "never". */
static int is_transient(const redisReply *reply) {
  static const char *const prefixes[] = {"LOADING", "BUSY", "TRYAGAIN",
                                         "CLUSTERDOWN", "MASTERDOWN", NULL};
  for (int i = 0; prefixes[i]; i++) {
    size_t n = strlen(prefixes[i]);
    if (reply->len >= n && memcmp(reply->str, prefixes[i], n) == 0) return 1;
  }
  return 0;
}

static void asking_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  (void)r;
  (void)reply;
  (void)err;
  (void)data;
  /* The UNLINK that follows carries the outcome. */
}

/* A split item's name is answered: queue the next one, or finish. */
static void next_or_finish(inv_unlinker_t *u, item_t *it, int err) {
  if (it->split > 0 && it->split < 3 && !u->closing) {
    it->split++;
    enqueue(u, it);
  } else {
    finish(it, err);
  }
}

static void unlink_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  item_t *it = data;
  inv_unlinker_t *u = it->u;
  (void)r;
  u->inflight--;
  if (err == 0 && reply->type == REDIS_REPLY_ERROR && it->op != INV_UNLINK_RAW &&
      it->split == 0 && reply->len >= 8 && memcmp(reply->str, "TRYAGAIN", 8) == 0) {
    /* K's slot is being migrated and K, L(K), S(K) are not all on this node,
     * so no multi-key command runs there until the migration ends: delete
     * them one by one instead (one that left gets ASK, the other node's
     * business). A soft invalidation becomes a hard one. */
    it->split = 1;
    if (u->closing) {
      finish(it, INV_ECLOSED);
      maybe_free(u);
      return;
    }
    enqueue(u, it);
    inv_unlinker_flush(u);
    return;
  }
  if (err < 0 || (reply->type == REDIS_REPLY_ERROR && is_transient(reply))) {
    if (u->closing) {
      finish(it, INV_ECLOSED);
      maybe_free(u);
      return;
    }
    /* Deletes are idempotent: resend once the node answers again. A dropped
     * connection is flushed by its reconnect; other cases by a timer. */
    enqueue(u, it);
    if (err == 0 && !u->retry_armed) {
      u->retry_armed = 1;
      uv_timer_start(&u->retry, retry_cb, 100, 0);
    }
    return;
  }
  if (reply->type == REDIS_REPLY_INTEGER) {
    if (it->op == INV_UNLINK_SOFT && !it->split)
      u->stats->stale_copies += (uint64_t)reply->integer;
    else u->stats->keys_unlinked += (uint64_t)reply->integer;
    next_or_finish(u, it, 0);
  } else if (reply->type == REDIS_REPLY_ERROR && it->op == INV_UNLINK_SOFT &&
             !it->eval && !it->split && reply->len >= 8 && memcmp(reply->str, "NOSCRIPT", 8) == 0) {
    /* The node's script cache lacks soft.lua (a restart or SCRIPT FLUSH):
     * resend as EVAL, which loads it for the next EVALSHA. */
    if (u->closing) {
      finish(it, INV_ECLOSED);
    } else {
      it->eval = 1;
      enqueue(u, it);
    }
  } else if (reply->type == REDIS_REPLY_ERROR) {
    int ask;
    unsigned slot;
    char host[256];
    int port;
    if (inv_redis_parse_redirect(reply, &ask, &slot, host, sizeof(host), &port)) {
      /* The key lives (or now lives) on another node, whose worker deletes
       * it. MOVED also means our slot map is stale. */
      u->stats->unlink_redirects++;
      if (!ask && u->moved_cb && !u->closing) u->moved_cb(u->moved_data);
      next_or_finish(u, it, 0);
    } else {
      inv_log_warn("unlinker", "%s failed: %.*s",
                   it->op == INV_UNLINK_SOFT ? "soft invalidation" : "UNLINK",
                   (int)reply->len, reply->str);
      finish(it, INV_EREDIS);
    }
  } else {
    finish(it, 0);
  }
  if (u->closing) maybe_free(u);
  else inv_unlinker_flush(u);
}

/* Fills argv/lens with it's command; returns argc. */
static int build_command(const inv_unlinker_t *u, const item_t *it,
                         const char **argv, size_t *lens) {
  if (it->op == INV_UNLINK_RAW || it->split > 0) {
    argv[0] = "UNLINK";
    lens[0] = 6;
    /* Split: the lock first, so that a regeneration is fenced before its
     * value goes; then K; then S(K). */
    argv[1] = it->split == 1 ? it->lock : it->split == 3 ? it->stale : it->key;
    lens[1] = it->split == 1 ? it->lock_len
              : it->split == 3 ? it->stale_len
                               : it->len;
    return 2;
  }
  if (it->op == INV_UNLINK_HARD) {
    const char *a[4] = {"UNLINK", it->key, it->lock, it->stale};
    size_t l[4] = {6, it->len, it->lock_len, it->stale_len};
    memcpy(argv, a, sizeof(a));
    memcpy(lens, l, sizeof(l));
    return 4;
  }
  const inv_script_t *s = &inv_script_soft;
  const char *a[7] = {it->eval ? "EVAL" : "EVALSHA", it->eval ? s->src : s->sha,
                      "3", it->key, it->lock, it->stale, u->grace};
  size_t l[7] = {it->eval ? 4u : 7u, it->eval ? s->len : strlen(s->sha), 1,
                 it->len, it->lock_len, it->stale_len, strlen(u->grace)};
  memcpy(argv, a, sizeof(a));
  memcpy(lens, l, sizeof(l));
  return 7;
}

void inv_unlinker_flush(inv_unlinker_t *u) {
  /* After a transient error reply (LOADING, CLUSTERDOWN, ...) the queue
   * waits for the retry timer: resending on every other reply would spin
   * for as long as the node refuses. */
  if (u->retry_armed) return;
  while (u->head != NULL && u->inflight < INV_UNLINK_MAX_INFLIGHT &&
         !u->closing) {
    item_t *it = u->head;
    const char *argv[7];
    size_t lens[7];
    int argc = build_command(u, it, argv, lens);
    if (it->asking) {
      const char *aargv[1] = {"ASKING"};
      size_t alen[1] = {6};
      if (inv_redis_command_argv(u->r, 1, aargv, alen, asking_cb, NULL) != 0)
        return; /* disconnected or full: flushed again later */
    }
    if (inv_redis_command_argv(u->r, argc, argv, lens, unlink_cb, it) != 0)
      return;
    u->head = it->next;
    if (u->head == NULL) u->tail = NULL;
    u->queued--;
    u->inflight++;
    u->stats->unlinks_sent++;
  }
}

int inv_unlinker_push(inv_unlinker_t *u, const char *key, size_t len,
                      inv_unlink_op_t op, int asking,
                      inv_unlink_done_cb done_cb, void *owner, uint64_t tag) {
  inv_regen_names_t names = {0};
  if (op != INV_UNLINK_RAW) {
    if (inv_regen_names(key, len, &names) != 0) return INV_ENOMEM;
    if (!names.keeps_slot) op = INV_UNLINK_RAW; /* K alone, hard or soft */
  }
  size_t extra = op == INV_UNLINK_RAW ? 0 : names.lock_len + names.stale_len + 2;
  item_t *it = malloc(sizeof(*it) + len + 1 + extra);
  if (it == NULL) {
    inv_regen_names_free(&names);
    return INV_ENOMEM;
  }
  it->u = u;
  it->done_cb = done_cb;
  it->owner = owner;
  it->tag = tag;
  it->asking = asking;
  it->op = op;
  it->eval = 0;
  it->split = 0;
  it->len = len;
  memcpy(it->key, key, len);
  it->key[len] = '\0';
  it->lock = it->stale = NULL;
  it->lock_len = it->stale_len = 0;
  if (op != INV_UNLINK_RAW) {
    it->lock = it->key + len + 1;
    memcpy(it->lock, names.lock, names.lock_len + 1);
    it->lock_len = names.lock_len;
    it->stale = it->lock + names.lock_len + 1;
    memcpy(it->stale, names.stale, names.stale_len + 1);
    it->stale_len = names.stale_len;
  }
  inv_regen_names_free(&names);
  enqueue(u, it);
  inv_unlinker_flush(u);
  return 0;
}

void inv_unlinker_clear(inv_unlinker_t *u) {
  item_t *it = u->head;
  u->head = u->tail = NULL;
  u->queued = 0;
  while (it != NULL) {
    item_t *next = it->next;
    finish(it, INV_ECLOSED);
    it = next;
  }
}

size_t inv_unlinker_queued(const inv_unlinker_t *u) { return u->queued; }
size_t inv_unlinker_inflight(const inv_unlinker_t *u) { return u->inflight; }

static void free_cb(uv_handle_t *h) { free(h->data); }

static void maybe_free(inv_unlinker_t *u) {
  if (u->inflight > 0 || u->closing != 1) return;
  u->closing = 2; /* freeing: never twice */
  uv_close((uv_handle_t *)&u->retry, free_cb);
}

void inv_unlinker_close(inv_unlinker_t *u) {
  if (u == NULL) return;
  u->closing = 1;
  uv_timer_stop(&u->retry);
  inv_unlinker_clear(u);
  maybe_free(u);
}
