/*
 * The UNLINK pipeline (see unlinker.h).
 *
 * Queued keys wait in a FIFO of items. inv_unlinker_flush() turns the head
 * of the FIFO into one command: a run of consecutive plain deletes (HARD or
 * RAW) of the same slot and the same ASKING need becomes one multi-key
 * UNLINK; anything else (a SOFT script, a split name, a key resent alone
 * after TRYAGAIN) is a command of its own. The items a command carries
 * leave the FIFO chained by their next pointers, the first one being the
 * command's callback data, so that its reply settles all of them.
 *
 * Commands are formatted here, straight to RESP, and handed to the
 * connection already formatted: hiredis's generic formatter prints every
 * argument's length with sprintf, a large share of the worker's CPU per key
 * under a flood of exact keys.
 */
#include "workers/unlinker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/buf.h"
#include "common/base/check.h"
#include "common/redis/cluster_reply.h"
#include "inval/errors.h"
#include "common/base/log.h"
#include "common/base/queue.h"
#include "common/base/slot.h"
#include "proto/scripts.h"

/* A multi-key UNLINK stops growing past this many bytes of names (but
 * always carries at least one key), so that long keys cannot build a huge
 * command. */
#define BATCH_NAME_BYTES 16384

/* A key answered with an error that is not transient is sent again after
 * RETRY_FIRST_MS, doubling up to RETRY_MAX_MS; at most one log line every
 * RETRY_LOG_MS tells of such failures. */
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000
#define RETRY_LOG_MS 10000

typedef struct item_s {
  inv_queue_t node;    /* on the FIFO or the later list */
  struct item_s *next; /* once sent: the next item of the same command */
  inv_unlinker_t *u;
  inv_unlink_done_cb done_cb;
  void *owner;
  uint64_t tag;
  int asking;
  int op;    /* inv_unlink_op_t; RAW when the names cannot keep the slot */
  int eval;  /* soft: send EVAL (the script cache lacked it) */
  int split; /* 0, or 1..3: L(K), K, S(K) sent one by one (see unlink_cb) */
  int solo;  /* never coalesced again: its multi-key command got TRYAGAIN
                or an error reply */
  unsigned failures; /* error replies so far (the backoff grows with them) */
  uint64_t due_ms;   /* while waiting in the later list: when to resend */
  unsigned slot;     /* K's slot, which L(K) and S(K) share */
  size_t nitems; /* for the first item of a sent command: items it carries */
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
  inv_unlink_redirect_fn redirect_fn; /* NULL: a redirected key is done */
  void *redirect_data;
  inv_queue_t fifo; /* item_t.node: unsent keys */
  size_t queued;    /* items on fifo */
  size_t inflight;  /* commands awaiting replies */
  int closing;
  int retry_armed;
  int any_slot;     /* standalone Redis: keys of any slot share commands */
  uv_timer_t retry; /* resends after a LOADING/BUSY/TRYAGAIN reply */
  /* Keys answered with an error reply, waiting for their resend (the
   * unsorted list is walked when the timer fires: it is as long as the
   * owner's bound on keys pending). */
  inv_queue_t later; /* item_t.node */
  size_t nlater;     /* items on later */
  uv_timer_t later_timer;
  uint64_t later_due_ms;     /* when later_timer fires, while active */
  uint64_t failed_logged_ms; /* the last "failed" log line, loop time */
  uint64_t failed_unlogged;  /* error replies since then */
  uv_check_t soon_check; /* the deferred flush, after this loop pass's I/O */
  uv_idle_t soon_idle;   /* the same, when the push came outside I/O */
  int open_handles;      /* handles not yet closed; u is freed at 0 */
  inv_buf_t cmd;         /* the command being formatted, reused */
};

int inv_unlinker_create(uv_loop_t *loop, inv_redis_t *r,
                        inv_worker_stats_t *stats, uint64_t grace_ms,
                        inv_unlink_moved_cb moved_cb, void *moved_data,
                        inv_unlinker_t **out) {
  inv_unlinker_t *u = calloc(1, sizeof(*u));
  if (u == NULL) return INV_ENOMEM;
  inv_queue_init(&u->fifo);
  inv_queue_init(&u->later);
  snprintf(u->grace, sizeof(u->grace), "%llu", (unsigned long long)grace_ms);
  u->loop = loop;
  u->r = r;
  u->stats = stats;
  u->moved_cb = moved_cb;
  u->moved_data = moved_data;
  uv_timer_init(loop, &u->retry);
  uv_timer_init(loop, &u->later_timer);
  uv_check_init(loop, &u->soon_check);
  uv_idle_init(loop, &u->soon_idle);
  u->retry.data = u->later_timer.data = u->soon_check.data = u->soon_idle.data =
      u;
  u->open_handles = 4;
  *out = u;
  return 0;
}

static void enqueue(inv_unlinker_t *u, item_t *it) {
  inv_queue_insert_tail(&u->fifo, &it->node);
  u->queued++;
}

static item_t *item_of(inv_queue_t *q) {
  return q != NULL ? INV_QUEUE_DATA(q, item_t, node) : NULL;
}

/* The oldest unsent item, or NULL. */
static item_t *fifo_first(const inv_unlinker_t *u) {
  return item_of(inv_queue_head(&u->fifo));
}

/* The unsent item after it, or NULL. */
static const item_t *fifo_next(const inv_unlinker_t *u, const item_t *it) {
  const inv_queue_t *q = inv_queue_next(&u->fifo, &it->node);
  return q != NULL ? INV_QUEUE_DATA(q, const item_t, node) : NULL;
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

/* Runs the deferred flush once, from whichever of its two handles fires
 * first. */
static void soon_run(inv_unlinker_t *u) {
  uv_check_stop(&u->soon_check);
  uv_idle_stop(&u->soon_idle);
  inv_unlinker_flush(u);
}

static void soon_check_cb(uv_check_t *h) { soon_run(h->data); }
static void soon_idle_cb(uv_idle_t *h) { soon_run(h->data); }

/* Flushes later in this loop pass rather than now, so that the keys pushed
 * by one burst of callbacks (the keys of a payload, the replies of one
 * read) are in the FIFO together and same-slot runs share a command. The
 * check handle runs right after this pass's I/O callbacks, before the
 * connection's own write on the next pass, so a key pushed from I/O goes
 * out no later than before; the idle handle keeps the loop from blocking
 * in poll when the push came from a timer or idle callback. */
static void flush_soon(inv_unlinker_t *u) {
  if (u->closing || uv_is_active((uv_handle_t *)&u->soon_check)) return;
  uv_check_start(&u->soon_check, soon_check_cb);
  uv_idle_start(&u->soon_idle, soon_idle_cb);
}

static int reply_starts(const redisReply *reply, const char *prefix) {
  size_t n = strlen(prefix);
  return reply->len >= n && memcmp(reply->str, prefix, n) == 0;
}

/* Whether an error reply means "try again later" rather than "never". */
static int is_transient(const redisReply *reply) {
  static const char *const prefixes[] = {
      "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", NULL};
  for (int i = 0; prefixes[i]; i++)
    if (reply_starts(reply, prefixes[i])) return 1;
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

/* Queues an item again for a resend, or fails it when the unlinker is
 * closing (a closing unlinker sends nothing more). */
static void requeue_or_close(inv_unlinker_t *u, item_t *it) {
  if (u->closing)
    finish(it, INV_ECLOSED);
  else
    enqueue(u, it);
}

static void later_cb(uv_timer_t *t);

/* Starts (or brings forward) the timer of the later list to due_ms. */
static void later_arm(inv_unlinker_t *u, uint64_t due_ms) {
  uint64_t now = uv_now(u->loop);
  if (uv_is_active((uv_handle_t *)&u->later_timer) && u->later_due_ms <= due_ms)
    return;
  u->later_due_ms = due_ms;
  uv_timer_start(&u->later_timer, later_cb, due_ms > now ? due_ms - now : 0, 0);
}

/* Moves the keys whose backoff has passed back to the FIFO. */
static void later_cb(uv_timer_t *t) {
  inv_unlinker_t *u = t->data;
  uint64_t now = uv_now(u->loop), next_due = UINT64_MAX;
  inv_queue_t *q, *n;
  INV_QUEUE_FOREACH(q, n, &u->later) {
    item_t *it = item_of(q);
    if (it->due_ms <= now) {
      INV_CHECK(u->nlater > 0);
      inv_queue_remove(q);
      u->nlater--;
      enqueue(u, it);
    } else if (it->due_ms < next_due) {
      next_due = it->due_ms;
    }
  }
  if (next_due != UINT64_MAX) later_arm(u, next_due);
  inv_unlinker_flush(u);
}

/* An error reply that no resend at once would change (NOPERM from an ACL,
 * a failing script, READONLY before the role poll sees a demotion): the
 * key is not deleted, so it is not finished (its owner must not count it
 * done) but sent again, alone, after a backoff. The owner's rewind or
 * demotion drops it (inv_unlinker_clear). */
static void requeue_later(inv_unlinker_t *u, item_t *it) {
  if (u->closing) {
    finish(it, INV_ECLOSED);
    return;
  }
  unsigned shift = it->failures < 16 ? it->failures : 16;
  uint64_t delay = (uint64_t)RETRY_FIRST_MS << shift;
  if (delay > RETRY_MAX_MS) delay = RETRY_MAX_MS;
  it->failures++;
  it->solo = 1; /* one denied key must not hold back the others */
  it->due_ms = uv_now(u->loop) + delay;
  inv_queue_insert_tail(&u->later, &it->node);
  u->nlater++;
  u->stats->unlink_retries++;
  later_arm(u, it->due_ms);
}

/* Logs an error reply at most once per RETRY_LOG_MS, with the count of
 * those not logged. */
static void log_failed(inv_unlinker_t *u, const item_t *it,
                       const redisReply *reply) {
  uint64_t now = uv_now(u->loop);
  u->failed_unlogged++;
  if (u->failed_logged_ms != 0 && now - u->failed_logged_ms < RETRY_LOG_MS)
    return;
  inv_log_warn(
      "unlinker",
      "%s failed: %.*s (%llu error repl%s since the last "
      "such line; %zu key(s) waiting to be sent again, backoff up to "
      "%d ms; their log entries stay open until they succeed)",
      it->op == INV_UNLINK_SOFT && !it->split ? "soft invalidation" : "UNLINK",
      (int)reply->len, reply->str, (unsigned long long)u->failed_unlogged,
      u->failed_unlogged == 1 ? "y" : "ies", u->nlater + it->nitems,
      RETRY_MAX_MS);
  u->failed_unlogged = 0;
  u->failed_logged_ms = now ? now : 1;
}

/* What a reply means for each item of its command. */
typedef enum {
  SETTLE_REQUEUE,  /* resend: requeue_or_close() */
  SETTLE_SOLO,     /* resend in commands of its own (after TRYAGAIN) */
  SETTLE_ANSWERED, /* this name is done: next_or_finish() with 0 */
  SETTLE_LATER,    /* an error reply: resend after a backoff */
  SETTLE_ELSEWHERE /* MOVED or ASK: handed to the redirect hook */
} settle_t;

/* Hands a key that lives on another node to the redirect hook, which
 * calls its done_cb from now on; without a hook the key is done. Its
 * value, lock and stale copy go together, even when only some of them
 * were reached here (deletes are idempotent). */
static void hand_elsewhere(inv_unlinker_t *u, item_t *it) {
  if (u->redirect_fn == NULL || u->closing) {
    finish(it, u->closing ? INV_ECLOSED : 0);
    return;
  }
  inv_unlink_done_cb cb = it->done_cb;
  void *owner = it->owner;
  uint64_t tag = it->tag;
  int op = it->split ? INV_UNLINK_HARD : it->op;
  u->redirect_fn(u->redirect_data, it->key, it->len, (inv_unlink_op_t)op, cb,
                 owner, tag);
  free(it);
}

/* Applies what to every item of the command led by first. The chain is
 * read before each item is handled, because finishing an item frees it and
 * a requeued one may be sent again (and chained anew) by a done_cb that
 * pushes and flushes new keys. */
static void settle_all(inv_unlinker_t *u, item_t *first, settle_t what) {
  item_t *it = first;
  while (it != NULL) {
    item_t *next = it->next;
    switch (what) {
      case SETTLE_SOLO:
        it->solo = 1;
        requeue_or_close(u, it);
        break;
      case SETTLE_REQUEUE:
        requeue_or_close(u, it);
        break;
      case SETTLE_ANSWERED:
        next_or_finish(u, it, 0);
        break;
      case SETTLE_LATER:
        requeue_later(u, it);
        break;
      case SETTLE_ELSEWHERE:
        hand_elsewhere(u, it);
        break;
    }
    it = next;
  }
}

/* Whether the command led by it is a HARD or SOFT command on K, L(K) and
 * S(K) alone: a TRYAGAIN then means those three are split between two
 * nodes, and they are resent as three single-key UNLINKs. */
static int splittable(const item_t *it) {
  return it->nitems == 1 && it->op != INV_UNLINK_RAW && it->split == 0;
}

/* Settles an error reply to the command led by it. */
static void on_error_reply(inv_unlinker_t *u, item_t *it,
                           const redisReply *reply) {
  inv_cluster_redirect_t rd;
  if (it->nitems > 1 &&
      (reply_starts(reply, "TRYAGAIN") || reply_starts(reply, "CROSSSLOT"))) {
    /* TRYAGAIN: the slot is migrating and some of the command's keys are
     * not on this node, so no multi-key command runs there until the
     * migration ends. CROSSSLOT: keys of several slots went together to a
     * node taken for standalone Redis that is a cluster node (it restarted
     * in cluster mode). Either way each key is resent alone (and a lone
     * HARD key may split further). */
    settle_all(u, it, SETTLE_SOLO);
  } else if (reply_starts(reply, "TRYAGAIN") && splittable(it)) {
    /* K's slot is being migrated and K, L(K), S(K) are not all on this
     * node: delete them one by one instead (one that left gets ASK, the
     * other node's business). A soft invalidation becomes a hard one. */
    it->split = 1;
    requeue_or_close(u, it);
  } else if (is_transient(reply)) {
    /* Deletes are idempotent: resend once the node answers again, after
     * the retry timer rather than at once. */
    settle_all(u, it, SETTLE_REQUEUE);
    if (!u->retry_armed && !u->closing) {
      u->retry_armed = 1;
      uv_timer_start(&u->retry, retry_cb, 100, 0);
    }
  } else if (it->op == INV_UNLINK_SOFT && !it->eval && !it->split &&
             reply_starts(reply, "NOSCRIPT")) {
    /* The node's script cache lacks soft.lua (a restart or SCRIPT FLUSH):
     * resend as EVAL, which loads it for the next EVALSHA. */
    it->eval = 1;
    u->stats->script_loads++;
    requeue_or_close(u, it);
  } else if (inv_cluster_redirect_parse(reply, &rd) == 1) {
    /* The keys (one command's keys share a slot) live, or now live, on
     * another node: the redirect hook deletes them there. MOVED also means
     * our slot map is stale. Counted per key, as when each key had its
     * command. */
    u->stats->unlink_redirects += it->nitems;
    if (!rd.ask && u->moved_cb && !u->closing) u->moved_cb(u->moved_data);
    settle_all(u, it, SETTLE_ELSEWHERE);
  } else {
    log_failed(u, it, reply);
    settle_all(u, it, SETTLE_LATER);
  }
}

static void unlink_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  item_t *it = data;
  inv_unlinker_t *u = it->u;
  (void)r;
  INV_CHECK(u->inflight > 0);
  u->inflight--;
  if (err < 0) {
    /* The connection dropped or timed out: its reconnect flushes again. */
    settle_all(u, it, SETTLE_REQUEUE);
  } else if (reply->type == REDIS_REPLY_ERROR) {
    on_error_reply(u, it, reply);
  } else {
    if (reply->type == REDIS_REPLY_INTEGER) {
      if (it->op == INV_UNLINK_SOFT && !it->split)
        u->stats->stale_copies += (uint64_t)reply->integer;
      else
        u->stats->keys_unlinked += (uint64_t)reply->integer;
    }
    settle_all(u, it, SETTLE_ANSWERED);
  }
  if (u->closing)
    maybe_free(u);
  else
    flush_soon(u);
}

/* Whether it is a plain delete that may share a multi-key UNLINK. */
static int coalescable(const item_t *it) {
  return it->op != INV_UNLINK_SOFT && it->split == 0 && !it->solo;
}

/* The most arguments a command has: UNLINK and three names per key. */
#define MAX_ARGS (1 + 3 * INV_UNLINK_BATCH_MAX)

/* How many items from first on go in one command: consecutive coalescable
 * items of first's slot (any slot on standalone Redis) and ASKING need, up
 * to INV_UNLINK_BATCH_MAX keys and about BATCH_NAME_BYTES bytes of names;
 * 1 when first is not coalescable. */
static size_t command_span(const inv_unlinker_t *u, const item_t *first) {
  if (!coalescable(first)) return 1;
  size_t n = 0, bytes = 0;
  for (const item_t *it = first; it != NULL && n < INV_UNLINK_BATCH_MAX;
       it = fifo_next(u, it)) {
    if (n > 0 &&
        (!coalescable(it) || (!u->any_slot && it->slot != first->slot) ||
         it->asking != first->asking || bytes >= BATCH_NAME_BYTES))
      break;
    n++;
    bytes += it->len + it->lock_len + it->stale_len;
  }
  return n;
}

/* Fills argv/lens (MAX_ARGS entries) with the command for the n items from
 * first on (command_span()): a multi-key UNLINK of their names, a
 * single-key UNLINK for a split item, or soft.lua's EVALSHA (EVAL after
 * NOSCRIPT). Returns argc. */
static int build_args(const inv_unlinker_t *u, const item_t *first, size_t n,
                      const char **argv, size_t *lens) {
  int argc = 0;
  if (first->op == INV_UNLINK_SOFT && first->split == 0) {
    const inv_script_t *s = &inv_script_soft;
    const char *a[7] = {first->eval ? "EVAL" : "EVALSHA",
                        first->eval ? s->src : s->sha,
                        "3",
                        first->key,
                        first->lock,
                        first->stale,
                        u->grace};
    size_t l[7] = {first->eval ? 4u : 7u,
                   first->eval ? s->len : strlen(s->sha),
                   1,
                   first->len,
                   first->lock_len,
                   first->stale_len,
                   strlen(u->grace)};
    memcpy(argv, a, sizeof(a));
    memcpy(lens, l, sizeof(l));
    return 7;
  }
  argv[argc] = "UNLINK";
  lens[argc++] = 6;
  if (first->split > 0) {
    /* Split: the lock first, so that a regeneration is fenced before its
     * value goes; then K; then S(K). */
    argv[argc] = first->split == 1   ? first->lock
                 : first->split == 3 ? first->stale
                                     : first->key;
    lens[argc++] = first->split == 1   ? first->lock_len
                   : first->split == 3 ? first->stale_len
                                       : first->len;
    return argc;
  }
  const item_t *it = first;
  for (size_t i = 0; i < n; i++, it = fifo_next(u, it)) {
    argv[argc] = it->key;
    lens[argc++] = it->len;
    if (it->op == INV_UNLINK_HARD) {
      argv[argc] = it->lock;
      lens[argc++] = it->lock_len;
      argv[argc] = it->stale;
      lens[argc++] = it->stale_len;
    }
  }
  return argc;
}

/* Writes marker, the decimal n and CRLF at p (at most 23 bytes): a RESP
 * array ('*') or bulk string ('$') header. Returns the end. */
static char *put_header(char *p, char marker, size_t n) {
  char digits[20];
  size_t i = sizeof(digits);
  do {
    digits[--i] = (char)('0' + n % 10);
    n /= 10;
  } while (n > 0);
  *p++ = marker;
  memcpy(p, digits + i, sizeof(digits) - i);
  p += sizeof(digits) - i;
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

/* Formats argv as a RESP command into b (replacing its contents), the
 * bytes redisFormatCommandArgv would make, in one reservation and without
 * printf. Returns 0 or INV_ENOMEM. */
static int format_resp(inv_buf_t *b, int argc, const char **argv,
                       const size_t *lens) {
  size_t need = 23;
  for (int i = 0; i < argc; i++) need += 23 + lens[i] + 2;
  inv_buf_reset(b);
  if (inv_buf_reserve(b, need) != 0) return INV_ENOMEM;
  char *p = put_header(b->data, '*', (size_t)argc);
  for (int i = 0; i < argc; i++) {
    p = put_header(p, '$', lens[i]);
    memcpy(p, argv[i], lens[i]);
    p += lens[i];
    *p++ = '\r';
    *p++ = '\n';
  }
  *p = '\0';
  b->len = (size_t)(p - b->data);
  return 0;
}

/* Takes the first n items off the FIFO, chained to each other by next in
 * FIFO order (the last one's next is NULL). */
static item_t *take(inv_unlinker_t *u, size_t n) {
  item_t *first = NULL, **link = &first;
  INV_CHECK(n > 0 && u->queued >= n);
  for (size_t i = 0; i < n; i++) {
    item_t *it = item_of(inv_queue_pop(&u->fifo));
    INV_CHECK(it != NULL);
    *link = it;
    link = &it->next;
  }
  *link = NULL;
  u->queued -= n;
  first->nitems = n;
  return first;
}

void inv_unlinker_set_redirect(inv_unlinker_t *u, inv_unlink_redirect_fn fn,
                               void *data) {
  u->redirect_fn = fn;
  u->redirect_data = data;
}

void inv_unlinker_set_any_slot(inv_unlinker_t *u, int any) {
  u->any_slot = any != 0;
}

void inv_unlinker_flush(inv_unlinker_t *u) {
  static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
  /* After a transient error reply (LOADING, CLUSTERDOWN, ...) the queue
   * waits for the retry timer: resending on every other reply would spin
   * for as long as the node refuses. */
  if (u->retry_armed) return;
  item_t *first;
  while ((first = fifo_first(u)) != NULL &&
         u->inflight < INV_UNLINK_MAX_INFLIGHT && !u->closing) {
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    size_t n = command_span(u, first);
    int argc = build_args(u, first, n, argv, lens);
    if (format_resp(&u->cmd, argc, argv, lens) != 0)
      return; /* out of memory: the next reply or push tries again */
    if (first->asking &&
        inv_redis_command_formatted(u->r, asking, sizeof(asking) - 1, asking_cb,
                                    NULL) != 0)
      return; /* disconnected or full: flushed again later */
    if (inv_redis_command_formatted(u->r, u->cmd.data, u->cmd.len, unlink_cb,
                                    first) != 0)
      return;
    (void)take(u, n);
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
  size_t extra =
      op == INV_UNLINK_RAW ? 0 : names.lock_len + names.stale_len + 2;
  item_t *it = malloc(sizeof(*it) + len + 1 + extra);
  if (it == NULL) {
    inv_regen_names_free(&names);
    return INV_ENOMEM;
  }
  inv_queue_init(&it->node);
  it->next = NULL;
  it->u = u;
  it->done_cb = done_cb;
  it->owner = owner;
  it->tag = tag;
  it->asking = asking;
  it->op = op;
  it->eval = 0;
  it->split = 0;
  it->solo = 0;
  it->failures = 0;
  it->due_ms = 0;
  it->slot = inv_key_slot(key, len);
  it->nitems = 0;
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
  flush_soon(u);
  return 0;
}

/* Finishes every item of list with INV_ECLOSED. */
static void finish_list(inv_queue_t *list) {
  item_t *it;
  while ((it = item_of(inv_queue_pop(list))) != NULL) finish(it, INV_ECLOSED);
}

/* Both lists are taken whole before any done_cb runs: what a done_cb
 * pushes meanwhile is not cancelled here. */
void inv_unlinker_clear(inv_unlinker_t *u) {
  inv_queue_t fifo, later;
  inv_queue_init(&fifo);
  inv_queue_init(&later);
  inv_queue_move(&u->fifo, &fifo);
  inv_queue_move(&u->later, &later);
  u->queued = u->nlater = 0;
  uv_timer_stop(&u->later_timer);
  finish_list(&fifo);
  finish_list(&later);
}

size_t inv_unlinker_queued(const inv_unlinker_t *u) { return u->queued; }
size_t inv_unlinker_inflight(const inv_unlinker_t *u) { return u->inflight; }
size_t inv_unlinker_retrying(const inv_unlinker_t *u) { return u->nlater; }

static void free_cb(uv_handle_t *h) {
  inv_unlinker_t *u = h->data;
  INV_CHECK(u->open_handles > 0);
  if (--u->open_handles > 0) return;
  inv_buf_free(&u->cmd);
  free(u);
}

static void maybe_free(inv_unlinker_t *u) {
  if (u->inflight > 0 || u->closing != 1) return;
  u->closing = 2; /* freeing: never twice */
  uv_close((uv_handle_t *)&u->retry, free_cb);
  uv_close((uv_handle_t *)&u->later_timer, free_cb);
  uv_close((uv_handle_t *)&u->soon_check, free_cb);
  uv_close((uv_handle_t *)&u->soon_idle, free_cb);
}

void inv_unlinker_close(inv_unlinker_t *u) {
  if (u == NULL) return;
  u->closing = 1;
  uv_timer_stop(&u->retry);
  uv_check_stop(&u->soon_check);
  uv_idle_stop(&u->soon_idle);
  inv_unlinker_clear(u);
  maybe_free(u);
}
