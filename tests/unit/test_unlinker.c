/*
 * Unit tests for the UNLINK pipeline (workers/unlinker.c) over a fake
 * connection: this file defines inv_redis_command_formatted(), which the
 * unlinker sends through, so each command is recorded (its RESP parsed back
 * into arguments) and answered here with a hand-made reply. The error
 * replies Redis gives mid-migration (TRYAGAIN, MOVED, ASK, CROSSSLOT) and
 * the transient ones are then driven exactly, one command at a time.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "check.h"
#include "inval/errors.h"
#include "workers/unlinker.h"

#define MAX_SENT 64
#define MAX_ARGV 200

/* One command the unlinker handed to the connection. */
typedef struct sent_s {
  int argc;
  char *argv[MAX_ARGV];
  inv_redis_reply_cb cb;
  void *data;
  int answered;
} sent_t;

static sent_t sent[MAX_SENT];
static int nsent;
static int refuse; /* the connection refuses commands (disconnected) */

/* Parses the RESP array cmd back into its arguments. */
static void parse_resp(const char *cmd, sent_t *s) {
  const char *p = cmd + 1;
  s->argc = atoi(p);
  p = strchr(p, '\n') + 1;
  for (int i = 0; i < s->argc && i < MAX_ARGV; i++) {
    size_t len = (size_t)atol(p + 1);
    p = strchr(p, '\n') + 1;
    s->argv[i] = malloc(len + 1);
    memcpy(s->argv[i], p, len);
    s->argv[i][len] = '\0';
    p += len + 2;
  }
}

int inv_redis_command_formatted(inv_redis_t *r, const char *cmd, size_t len,
                                inv_redis_reply_cb cb, void *data) {
  (void)r;
  (void)len;
  if (refuse) return INV_ECLOSED;
  CHECK(nsent < MAX_SENT);
  if (nsent >= MAX_SENT) return INV_EBUSY;
  sent_t *s = &sent[nsent++];
  memset(s, 0, sizeof(*s));
  parse_resp(cmd, s);
  s->cb = cb;
  s->data = data;
  return 0;
}

static void forget_sent(void) {
  for (int i = 0; i < nsent; i++)
    for (int j = 0; j < sent[i].argc && j < MAX_ARGV; j++)
      free(sent[i].argv[j]);
  nsent = 0;
}

/* Answers command i with an error reply (text) or, text NULL, with the
 * integer n; err < 0 fails it as a dropped connection would. */
static void answer(int i, const char *text, long long n, int err) {
  redisReply reply;
  memset(&reply, 0, sizeof(reply));
  if (text != NULL) {
    reply.type = REDIS_REPLY_ERROR;
    reply.str = (char *)text;
    reply.len = strlen(text);
  } else {
    reply.type = REDIS_REPLY_INTEGER;
    reply.integer = n;
  }
  CHECK(i < nsent && !sent[i].answered);
  if (i >= nsent || sent[i].answered) return; /* reported above */
  sent[i].answered = 1;
  sent[i].cb(NULL, err < 0 ? NULL : &reply, err, sent[i].data);
}

/* What the owner saw. */
static int done_count, done_err[32];
static uint64_t done_tag[32];
static int moved_calls;
static int redirected;
static char redirected_key[8][64];
static int redirected_op[8];

static void done_cb(void *owner, uint64_t tag, int err) {
  (void)owner;
  if (done_count < 32) {
    done_tag[done_count] = tag;
    done_err[done_count] = err;
  }
  done_count++;
}

static void moved_cb(void *data) {
  (void)data;
  moved_calls++;
}

static void redirect_fn(void *data, const char *key, size_t len,
                        inv_unlink_op_t op, inv_unlink_done_cb cb, void *owner,
                        uint64_t tag) {
  (void)data;
  if (redirected < 8) {
    snprintf(redirected_key[redirected], sizeof(redirected_key[0]), "%.*s",
             (int)len, key);
    redirected_op[redirected] = op;
  }
  redirected++;
  cb(owner, tag, 0); /* deleted where the key lives now */
}

static uv_loop_t loop;
static inv_worker_stats_t stats;

/* Runs the loop until at least want commands were sent (the deferred
 * flush, or a retry timer) or 5 s passed (a bound, not a speed target). */
static void run_until_sent(int want) {
  uint64_t start = uv_now(&loop);
  while (nsent < want && uv_now(&loop) - start < 5000) {
    uv_run(&loop, UV_RUN_ONCE);
    uv_update_time(&loop);
  }
}

static inv_unlinker_t *make(void) {
  inv_unlinker_t *u = NULL;
  forget_sent();
  refuse = 0;
  done_count = moved_calls = redirected = 0;
  memset(&stats, 0, sizeof(stats));
  CHECK_EQ_INT(
      inv_unlinker_create(&loop, NULL, &stats, 1000, moved_cb, NULL, &u), 0);
  inv_unlinker_set_redirect(u, redirect_fn, NULL);
  return u;
}

static void push(inv_unlinker_t *u, const char *key, inv_unlink_op_t op,
                 uint64_t tag) {
  CHECK_EQ_INT(
      inv_unlinker_push(u, key, strlen(key), op, 0, done_cb, NULL, tag), 0);
}

static void finish(inv_unlinker_t *u) {
  inv_unlinker_close(u);
  uv_run(&loop, UV_RUN_NOWAIT);
  forget_sent();
}

/* Keys of one slot pushed together share one UNLINK with their lock and
 * stale names; its integer reply finishes them all. */
static void test_same_slot_keys_share_a_command(void) {
  inv_unlinker_t *u = make();
  push(u, "{u:1}:a", INV_UNLINK_HARD, 1);
  push(u, "{u:1}:b", INV_UNLINK_HARD, 2);
  push(u, "{u:1}:c", INV_UNLINK_HARD, 3);
  run_until_sent(1);
  CHECK_EQ_INT(nsent, 1);
  CHECK_EQ_STR(sent[0].argv[0], "UNLINK");
  CHECK_EQ_INT(sent[0].argc, 1 + 3 * 3);
  CHECK_EQ_STR(sent[0].argv[1], "{u:1}:a");
  CHECK_EQ_STR(sent[0].argv[7], "{u:1}:c");
  answer(0, NULL, 3, 0);
  CHECK_EQ_INT(done_count, 3);
  CHECK_EQ_INT(done_err[0], 0);
  CHECK_EQ_INT(done_tag[2], 3);
  CHECK_EQ_INT(stats.keys_unlinked, 3);
  finish(u);
}

/* TRYAGAIN for a multi-key command (its slot migrates and its keys are
 * split): each key is resent in a command of its own, never together. */
static void test_tryagain_multi_key_resends_each_key_alone(void) {
  inv_unlinker_t *u = make();
  push(u, "{u:2}:a", INV_UNLINK_HARD, 1);
  push(u, "{u:2}:b", INV_UNLINK_HARD, 2);
  run_until_sent(1);
  CHECK_EQ_INT(nsent, 1);
  answer(0, "TRYAGAIN Multiple keys request during rehashing of slot", 0, 0);
  CHECK_EQ_INT(done_count, 0); /* not done: resent */
  run_until_sent(3);
  CHECK_EQ_INT(nsent, 3);
  CHECK_EQ_STR(sent[1].argv[1], "{u:2}:a");
  CHECK_EQ_INT(sent[1].argc, 4); /* K, L(K), S(K) */
  CHECK_EQ_STR(sent[2].argv[1], "{u:2}:b");
  CHECK_EQ_INT(sent[2].argc, 4);
  answer(1, NULL, 1, 0);
  answer(2, NULL, 1, 0);
  CHECK_EQ_INT(done_count, 2);
  finish(u);
}

/* TRYAGAIN for one key's K, L(K), S(K) (split between the two nodes):
 * they are resent as three single-key UNLINKs, the lock first, one after
 * the other, and the key is done after the third. */
static void test_tryagain_one_key_splits_its_names(void) {
  inv_unlinker_t *u = make();
  push(u, "{u:3}:a", INV_UNLINK_HARD, 7);
  run_until_sent(1);
  answer(0, "TRYAGAIN Multiple keys request during rehashing of slot", 0, 0);
  run_until_sent(2);
  CHECK_EQ_INT(nsent, 2);
  CHECK_EQ_INT(sent[1].argc, 2);
  CHECK(strstr(sent[1].argv[1], ":lock") != NULL);
  answer(1, NULL, 0, 0);
  CHECK_EQ_INT(done_count, 0);
  run_until_sent(3);
  CHECK_EQ_INT(sent[2].argc, 2);
  CHECK_EQ_STR(sent[2].argv[1], "{u:3}:a");
  answer(2, NULL, 1, 0);
  run_until_sent(4);
  CHECK_EQ_INT(sent[3].argc, 2);
  CHECK(strcmp(sent[3].argv[1], "{u:3}:a") != 0 &&
        strstr(sent[3].argv[1], ":lock") == NULL);
  CHECK_EQ_INT(done_count, 0);
  answer(3, NULL, 1, 0);
  CHECK_EQ_INT(done_count, 1);
  CHECK_EQ_INT(done_tag[0], 7);
  finish(u);
}

/* MOVED for a multi-key command concerns all its keys: each goes to the
 * redirect hook (a soft key split earlier comes as hard), the slot map is
 * refreshed once, and every key counts as a redirect. ASK hands keys over
 * too, without a map refresh. */
static void test_moved_and_ask_hand_keys_to_the_redirect_hook(void) {
  inv_unlinker_t *u = make();
  push(u, "{u:4}:a", INV_UNLINK_HARD, 1);
  push(u, "{u:4}:b", INV_UNLINK_HARD, 2);
  run_until_sent(1);
  answer(0, "MOVED 3300 127.0.0.1:7001", 0, 0);
  CHECK_EQ_INT(redirected, 2);
  CHECK_EQ_STR(redirected_key[0], "{u:4}:a");
  CHECK_EQ_STR(redirected_key[1], "{u:4}:b");
  CHECK_EQ_INT(redirected_op[0], INV_UNLINK_HARD);
  CHECK_EQ_INT(moved_calls, 1);
  CHECK_EQ_INT(stats.unlink_redirects, 2);
  CHECK_EQ_INT(done_count, 2); /* the hook finished them */
  push(u, "{u:5}:a", INV_UNLINK_RAW, 3);
  run_until_sent(2);
  answer(1, "ASK 5000 127.0.0.1:7002", 0, 0);
  CHECK_EQ_INT(redirected, 3);
  CHECK_EQ_INT(moved_calls, 1);
  CHECK_EQ_INT(done_count, 3);
  /* Without a hook, a redirected key is done (another node's business). */
  inv_unlinker_set_redirect(u, NULL, NULL);
  push(u, "{u:6}:a", INV_UNLINK_RAW, 4);
  run_until_sent(3);
  answer(2, "MOVED 1 127.0.0.1:7003", 0, 0);
  CHECK_EQ_INT(redirected, 3);
  CHECK_EQ_INT(done_count, 4);
  CHECK_EQ_INT(done_err[3], 0);
  finish(u);
}

/* A transient reply (LOADING) resends after the retry timer, not at
 * once; a dropped connection resends too; neither finishes the key. */
static void test_transient_replies_and_drops_resend(void) {
  inv_unlinker_t *u = make();
  push(u, "{u:7}:a", INV_UNLINK_HARD, 1);
  run_until_sent(1);
  answer(0, "LOADING Redis is loading the dataset in memory", 0, 0);
  CHECK_EQ_INT(nsent, 1);
  inv_unlinker_flush(u); /* a flush before the retry timer sends nothing */
  CHECK_EQ_INT(nsent, 1);
  CHECK_EQ_INT(inv_unlinker_queued(u), 1);
  run_until_sent(2); /* the 100 ms retry timer */
  CHECK_EQ_INT(nsent, 2);
  CHECK_EQ_STR(sent[1].argv[1], "{u:7}:a");
  answer(1, NULL, 0, INV_ETIMEDOUT);
  CHECK_EQ_INT(done_count, 0);
  run_until_sent(3);
  CHECK_EQ_INT(nsent, 3);
  answer(2, NULL, 1, 0);
  CHECK_EQ_INT(done_count, 1);
  CHECK_EQ_INT(done_err[0], 0);
  finish(u);
}

/* A soft key whose script the node lacks is resent as EVAL. */
static void test_noscript_resends_as_eval(void) {
  inv_unlinker_t *u = make();
  push(u, "{u:8}:a", INV_UNLINK_SOFT, 1);
  run_until_sent(1);
  CHECK_EQ_STR(sent[0].argv[0], "EVALSHA");
  answer(0, "NOSCRIPT No matching script. Please use EVAL.", 0, 0);
  run_until_sent(2);
  CHECK_EQ_STR(sent[1].argv[0], "EVAL");
  CHECK_EQ_STR(sent[1].argv[3], "{u:8}:a");
  answer(1, NULL, 1, 0);
  CHECK_EQ_INT(done_count, 1);
  CHECK_EQ_INT(stats.script_loads, 1);
  finish(u);
}

/* Standalone mode sends keys of any slots together; CROSSSLOT (the node
 * is a cluster node after all) resends each alone. */
static void test_crossslot_resends_each_alone(void) {
  inv_unlinker_t *u = make();
  inv_unlinker_set_any_slot(u, 1);
  push(u, "alpha", INV_UNLINK_RAW, 1);
  push(u, "beta", INV_UNLINK_RAW, 2);
  run_until_sent(1);
  CHECK_EQ_INT(sent[0].argc, 3);
  answer(0, "CROSSSLOT Keys in request don't hash to the same slot", 0, 0);
  run_until_sent(3);
  CHECK_EQ_INT(nsent, 3);
  CHECK_EQ_INT(sent[1].argc, 2);
  CHECK_EQ_INT(sent[2].argc, 2);
  answer(1, NULL, 1, 0);
  answer(2, NULL, 1, 0);
  CHECK_EQ_INT(done_count, 2);
  finish(u);
}

/* A refused send keeps the key queued; clear and close finish what was
 * never sent with INV_ECLOSED. */
static void test_refused_send_then_close(void) {
  inv_unlinker_t *u = make();
  refuse = 1;
  push(u, "{u:9}:a", INV_UNLINK_HARD, 1);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_EQ_INT(nsent, 0);
  CHECK_EQ_INT(inv_unlinker_queued(u), 1);
  refuse = 0;
  inv_unlinker_flush(u);
  CHECK_EQ_INT(nsent, 1);
  push(u, "{u:10}:a", INV_UNLINK_HARD, 2);
  refuse = 1;
  inv_unlinker_close(u); /* the queued key is dropped */
  CHECK_EQ_INT(done_count, 1);
  CHECK_EQ_INT(done_err[0], INV_ECLOSED);
  answer(0, NULL, 0, INV_ECLOSED); /* the connection's close fails the rest */
  CHECK_EQ_INT(done_count, 2);
  CHECK_EQ_INT(done_err[1], INV_ECLOSED);
  uv_run(&loop, UV_RUN_NOWAIT);
  forget_sent();
}

int main(void) {
  uv_loop_init(&loop);
  test_same_slot_keys_share_a_command();
  test_tryagain_multi_key_resends_each_key_alone();
  test_tryagain_one_key_splits_its_names();
  test_moved_and_ask_hand_keys_to_the_redirect_hook();
  test_transient_replies_and_drops_resend();
  test_noscript_resends_as_eval();
  test_crossslot_resends_each_alone();
  test_refused_send_then_close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  return check_summary();
}
