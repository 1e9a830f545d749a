/*
 * The UNLINK pipeline (see unlinker.h).
 */
#include "workers/unlinker.h"

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"

typedef struct item_s {
  struct item_s *next;
  inv_unlinker_t *u;
  inv_unlink_done_cb done_cb;
  void *owner;
  uint64_t tag;
  int asking;
  size_t len;
  char key[]; /* len bytes */
} item_t;

struct inv_unlinker_s {
  uv_loop_t *loop;
  inv_redis_t *r;
  inv_worker_stats_t *stats;
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
                        inv_unlink_moved_cb moved_cb, void *moved_data,
                        inv_unlinker_t **out) {
  inv_unlinker_t *u = calloc(1, sizeof(*u));
  if (u == NULL) return INV_ENOMEM;
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

static void unlink_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  item_t *it = data;
  inv_unlinker_t *u = it->u;
  (void)r;
  u->inflight--;
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
    u->stats->keys_unlinked += (uint64_t)reply->integer;
    finish(it, 0);
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
      finish(it, 0);
    } else {
      inv_log_warn("unlinker", "UNLINK failed: %.*s", (int)reply->len, reply->str);
      finish(it, INV_EREDIS);
    }
  } else {
    finish(it, 0);
  }
  if (u->closing) maybe_free(u);
  else inv_unlinker_flush(u);
}

void inv_unlinker_flush(inv_unlinker_t *u) {
  while (u->head != NULL && u->inflight < INV_UNLINK_MAX_INFLIGHT &&
         !u->closing) {
    item_t *it = u->head;
    const char *argv[2] = {"UNLINK", it->key};
    size_t lens[2] = {6, it->len};
    if (it->asking) {
      const char *aargv[1] = {"ASKING"};
      size_t alen[1] = {6};
      if (inv_redis_command_argv(u->r, 1, aargv, alen, asking_cb, NULL) != 0)
        return; /* disconnected or full: flushed again later */
    }
    if (inv_redis_command_argv(u->r, 2, argv, lens, unlink_cb, it) != 0)
      return;
    u->head = it->next;
    if (u->head == NULL) u->tail = NULL;
    u->queued--;
    u->inflight++;
    u->stats->unlinks_sent++;
  }
}

int inv_unlinker_push(inv_unlinker_t *u, const char *key, size_t len,
                      int asking, inv_unlink_done_cb done_cb, void *owner,
                      uint64_t tag) {
  item_t *it = malloc(sizeof(*it) + len + 1);
  if (it == NULL) return INV_ENOMEM;
  it->u = u;
  it->done_cb = done_cb;
  it->owner = owner;
  it->tag = tag;
  it->asking = asking;
  it->len = len;
  memcpy(it->key, key, len);
  it->key[len] = '\0';
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
