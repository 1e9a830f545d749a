/*
 * redis_check: runs one named scenario of inv_redis_t / inv_cluster_t
 * against real Redis servers and says what it saw.
 *
 *   redis_check SCENARIO [ADDR...] [PASSWORD]
 *
 * Scenarios (ADDR is HOST:PORT):
 *   parse                 redirect parsing, no server needed
 *   pipeline ADDR         50,000 INCRs in one go, EBUSY bound, binary args,
 *                         a command the caller formatted itself
 *   reconnect ADDR        prints READY, waits for the server to go away and
 *                         come back, checks CONNECTED again and commands
 *   timeout ADDR          pauses the server (CLIENT PAUSE), checks that a
 *                         command times out and the connection recovers
 *   subscribe ADDR        pub/sub: confirmations, messages, pattern
 *                         messages, PING and leaving subscribe mode
 *   reentrant ADDR        closing and resetting from inside callbacks,
 *                         resolver path, dead port
 *   auth ADDR PASSWORD    AUTH with the right and a wrong password, and
 *                         through the cluster client
 *   cluster SEEDS...      26,384 keys (every slot) set and read back through
 *                         the cluster client, keyless PUBLISH, EBUSY bound
 *   migrate SEEDS...      prints READY, then reads keys of slot {mig} in
 *                         rounds until the key redis_check:stop exists
 *   failover SEEDS...     prints READY, then writes keys and PUBLISHes
 *                         (keyless) in rounds until redis_check:stop
 *                         exists; the last round must pass
 *   down SEEDS...         commands must fail with EUNAVAIL within the
 *                         deadline once no node answers
 *   cluster_close SEEDS...  closing with commands queued and in flight,
 *                         and from inside a callback
 *
 * Output is "key=value" lines and "FAIL: ..." lines on stdout; the exit
 * status is 0 when every expectation held, 1 otherwise, 2 on bad usage.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/addr.h"
#include "common/redis/cluster_reply.h"
#include "common/base/config.h"
#include "inval/errors.h"
#include "common/base/log.h"
#include "common/redis/redis_cluster.h"
#include "common/redis/redis_conn.h"
#include "common/base/slot.h"

static uv_loop_t *loop;
static int failures;
static uv_timer_t watchdog;
static inv_addr_t addrs[16];
static size_t naddrs;
static const char *password_arg;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
  failures++;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
}

static void watchdog_cb(uv_timer_t *h) {
  (void)h;
  fail("time limit reached");
  /* Give up without cleanup: the loop may hold anything at this point. */
  fflush(stdout);
  exit(1);
}

static void watchdog_start(uint64_t ms) {
  uv_timer_init(loop, &watchdog);
  uv_timer_start(&watchdog, watchdog_cb, ms, 0);
}

static void watchdog_stop(void) { uv_close((uv_handle_t *)&watchdog, NULL); }

static uint64_t now_ms(void) { return uv_now(loop); }

static int reply_is(const redisReply *r, int type, const char *str) {
  return r != NULL && r->type == type &&
         (str == NULL ||
          (r->len == strlen(str) && memcmp(r->str, str, r->len) == 0));
}

static inv_redis_t *make_conn(const inv_addr_t *a, const inv_redis_opts_t *o,
                              inv_redis_event_cb ev, inv_redis_push_cb push,
                              void *data) {
  inv_redis_t *r = NULL;
  int rc = inv_redis_create(loop, a->host, a->port, o, ev, push, data, &r);
  if (rc != 0) {
    fail("inv_redis_create: %s", inv_strerror(rc));
    exit(1);
  }
  return r;
}

/* A timer that runs a function once after a delay and closes itself. */
typedef struct later_s {
  uv_timer_t t;
  void (*fn)(void *);
  void *arg;
} later_t;

static void later_closed(uv_handle_t *h) { free(h->data); }

static void later_cb(uv_timer_t *h) {
  later_t *l = h->data;
  l->fn(l->arg);
  uv_close((uv_handle_t *)h, later_closed);
}

static void later(uint64_t ms, void (*fn)(void *), void *arg) {
  later_t *l = malloc(sizeof(*l));
  if (l == NULL) abort();
  l->fn = fn;
  l->arg = arg;
  uv_timer_init(loop, &l->t);
  l->t.data = l;
  uv_timer_start(&l->t, later_cb, ms, 0);
}

/* ---- parse ------------------------------------------------------------ */

static int scenario_parse(void) {
  redisReply rep;
  inv_cluster_redirect_t rd;

  memset(&rep, 0, sizeof(rep));
  rep.type = REDIS_REPLY_ERROR;
  rep.str = "MOVED 3999 127.0.0.1:6381";
  rep.len = strlen(rep.str);
  if (inv_cluster_redirect_parse(&rep, &rd) != 1 || rd.ask != 0 ||
      rd.slot != 3999 || strcmp(rd.host, "127.0.0.1") != 0 || rd.port != 6381)
    fail("MOVED not parsed");
  rep.str = "ASK 16383 ::1:7000";
  rep.len = strlen(rep.str);
  if (inv_cluster_redirect_parse(&rep, &rd) != 1 || rd.ask != 1 ||
      rd.slot != 16383 || strcmp(rd.host, "::1") != 0 || rd.port != 7000)
    fail("ASK with IPv6 not parsed");
  rep.str = "MOVED 12 :7001";
  rep.len = strlen(rep.str);
  if (inv_cluster_redirect_parse(&rep, &rd) != 1 || rd.host[0] != '\0' ||
      rd.port != 7001)
    fail("MOVED with empty host not parsed");
  {
    static const char *bad[] = {
        "MOVED 16384 h:1", "MOVED x h:1",     "MOVED 1 h",  "MOVED 1 h:0",
        "ASK 1",           "ERR MOVED 1 h:2", "TRYAGAIN x", "MOVED 1 h:70000"};
    size_t i;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      rep.str = (char *)bad[i];
      rep.len = strlen(rep.str);
      if (inv_cluster_redirect_parse(&rep, &rd) == 1)
        fail("\"%s\" parsed as a redirect", bad[i]);
    }
  }
  {
    static char longer[400];
    memset(longer, 'h', sizeof(longer));
    memcpy(longer, "MOVED 1 ", 8);
    memcpy(longer + sizeof(longer) - 3, ":1", 3);
    rep.str = longer;
    rep.len = strlen(rep.str);
    if (inv_cluster_redirect_parse(&rep, &rd) == 1)
      fail("host longer than the buffer accepted");
  }
  rep.type = REDIS_REPLY_STATUS;
  rep.str = "MOVED 1 h:2";
  rep.len = strlen(rep.str);
  if (inv_cluster_redirect_parse(&rep, &rd) == 1)
    fail("status reply parsed as a redirect");
  say("parse=done");
  return 0;
}

/* ---- pipeline --------------------------------------------------------- */

#define PIPE_N 50000

static struct {
  inv_redis_t *r, *small;
  int started, small_started;
  int incr_replies, incr_errors;
  long long last;
  int small_replies;
  int closed;
} pl;

static void pl_closed(void *d) {
  (void)d;
  pl.closed++;
  if (pl.closed == 2) watchdog_stop();
}

static void pl_bin_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)d;
  if (err != 0 || rep->type != REDIS_REPLY_STRING || rep->len != 5 ||
      memcmp(rep->str, "a\0b\r\n", 5) != 0)
    fail("binary GET did not return the 5 bytes set");
  else
    say("binary=ok");
  const inv_redis_stats_t *st = inv_redis_stats(r);
  say("commands=%llu writes=%llu errors=%llu connects=%llu",
      (unsigned long long)st->commands, (unsigned long long)st->writes,
      (unsigned long long)st->errors, (unsigned long long)st->connects);
  if (st->writes > 5)
    fail("%llu writes for %d commands: not pipelined",
         (unsigned long long)st->writes, PIPE_N);
  if (st->commands < PIPE_N + 1)
    fail("commands stat %llu < %d", (unsigned long long)st->commands, PIPE_N);
  inv_redis_close(r, pl_closed, NULL);
}

/* SET pl:fmt ok, formatted by the caller (inv_redis_command_formatted). */
static const char fmt_set[] = "*3\r\n$3\r\nSET\r\n$6\r\npl:fmt\r\n$2\r\nok\r\n";

static void pl_fmt_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)r;
  (void)d;
  if (err != 0 || !reply_is(rep, REDIS_REPLY_STATUS, "OK"))
    fail("formatted SET failed");
}

static void pl_incr_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)d;
  pl.incr_replies++;
  if (err != 0 || rep->type != REDIS_REPLY_INTEGER)
    pl.incr_errors++;
  else if (rep->integer != pl.last + 1)
    pl.incr_errors++;
  else
    pl.last = rep->integer;
  if (pl.incr_replies == PIPE_N) {
    const char *argv[] = {"SET", "pl:bin", "a\0b\r\n"};
    const size_t len[] = {3, 6, 5};
    const char *gargv[] = {"GET", "pl:bin"};
    const size_t glen[] = {3, 6};
    say("incr_replies=%d incr_errors=%d final=%lld", pl.incr_replies,
        pl.incr_errors, pl.last);
    if (pl.incr_errors != 0 || pl.last != PIPE_N)
      fail("INCR pipeline: %d errors, final %lld", pl.incr_errors, pl.last);
    if (inv_redis_pending(r) != 0)
      fail("pending %zu after all replies", inv_redis_pending(r));
    if (inv_redis_command_formatted(r, "", 0, pl_fmt_cb, NULL) != INV_EINVAL)
      fail("an empty formatted command was not refused with EINVAL");
    if (inv_redis_command_formatted(r, fmt_set, sizeof(fmt_set) - 1, pl_fmt_cb,
                                    NULL) != 0)
      fail("formatted SET not queued");
    if (inv_redis_command_argv(r, 3, argv, len, NULL, NULL) != 0 ||
        inv_redis_command_argv(r, 2, gargv, glen, pl_bin_cb, NULL) != 0)
      fail("binary SET/GET not queued");
  }
}

static void pl_del_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)r;
  (void)d;
  if (err != 0 || rep->type != REDIS_REPLY_INTEGER) fail("DEL failed");
}

static void pl_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  int i, rc;
  (void)d;
  if (ev != INV_REDIS_CONNECTED || pl.started) return;
  pl.started = 1;
  if (inv_redis_command(r, pl_del_cb, NULL, "DEL %s", "pl:counter") != 0)
    fail("DEL not queued");
  for (i = 0; i < PIPE_N; i++) {
    rc = inv_redis_command(r, pl_incr_cb, NULL, "INCR %s", "pl:counter");
    if (rc != 0) {
      fail("INCR %d not queued: %s", i, inv_strerror(rc));
      break;
    }
  }
  say("queued=%d pending=%zu", i, inv_redis_pending(r));
}

static void pl_small_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)d;
  if (err != 0 || !reply_is(rep, REDIS_REPLY_STATUS, "PONG"))
    fail("PING failed on the small connection");
  if (++pl.small_replies == 10) {
    if (inv_redis_pending(r) != 0) fail("pending not 0 after the replies");
    inv_redis_close(r, pl_closed, NULL);
  }
}

static void pl_small_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  int i, rc;
  (void)d;
  if (ev != INV_REDIS_CONNECTED || pl.small_started) return;
  pl.small_started = 1;
  for (i = 0; i < 10; i++)
    if (inv_redis_command(r, pl_small_cb, NULL, "PING") != 0)
      fail("PING %d refused under max_pending", i);
  rc = inv_redis_command(r, pl_small_cb, NULL, "PING");
  say("over_max_pending=%s", inv_err_name(rc));
  if (rc != INV_EBUSY)
    fail("11th command with max_pending 10 gave %d, not EBUSY", rc);
}

static int scenario_pipeline(void) {
  inv_redis_opts_t o;
  watchdog_start(60000);
  inv_redis_opts_default(&o);
  pl.r = make_conn(&addrs[0], &o, pl_event, NULL, NULL);
  o.max_pending = 10;
  pl.small = make_conn(&addrs[0], &o, pl_small_event, NULL, NULL);
  if (inv_redis_command(pl.r, NULL, NULL, "PING") != INV_ECLOSED)
    fail("command accepted before CONNECTED");
  return 0;
}

/* ---- reconnect -------------------------------------------------------- */

static struct {
  inv_redis_t *r;
  uv_timer_t tick;
  int connected, disconnected, ready;
  int ping_ok, ping_closed_sync, ping_closed_async;
  int done;
} rc_;

static void rc_closed(void *d) {
  (void)d;
  watchdog_stop();
}

static void rc_get_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  const inv_redis_stats_t *st = inv_redis_stats(r);
  (void)d;
  if (err != 0 || !reply_is(rep, REDIS_REPLY_STRING, "2"))
    fail("GET after reconnect did not return 2");
  say("connected=%d disconnected=%d ping_ok=%d ping_closed_sync=%d "
      "ping_closed_async=%d",
      rc_.connected, rc_.disconnected, rc_.ping_ok, rc_.ping_closed_sync,
      rc_.ping_closed_async);
  say("connects=%llu reconnects=%llu", (unsigned long long)st->connects,
      (unsigned long long)st->reconnects);
  if (st->connects != 2 || st->reconnects != 1)
    fail("connects/reconnects are %llu/%llu, not 2/1",
         (unsigned long long)st->connects, (unsigned long long)st->reconnects);
  if (rc_.disconnected != 1)
    fail("DISCONNECTED announced %d times", rc_.disconnected);
  rc_.done = 1;
  uv_close((uv_handle_t *)&rc_.tick, NULL);
  inv_redis_close(r, rc_closed, NULL);
}

static void rc_set_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)r;
  (void)d;
  if (err != 0 || !reply_is(rep, REDIS_REPLY_STATUS, "OK"))
    fail("SET failed: %s", err ? inv_strerror(err) : rep->str);
  if (!rc_.ready) {
    rc_.ready = 1;
    say("READY");
  }
}

static void rc_ping_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)r;
  (void)d;
  if (err == INV_ECLOSED)
    rc_.ping_closed_async++;
  else if (err != 0)
    fail("PING failed with %s", inv_strerror(err));
  else if (reply_is(rep, REDIS_REPLY_STATUS, "PONG"))
    rc_.ping_ok++;
}

static void rc_tick(uv_timer_t *h) {
  int rc;
  (void)h;
  if (rc_.done) return;
  rc = inv_redis_command(rc_.r, rc_ping_cb, NULL, "PING");
  if (rc == INV_ECLOSED)
    rc_.ping_closed_sync++;
  else if (rc != 0)
    fail("PING refused with %s", inv_strerror(rc));
}

static void rc_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  (void)d;
  if (ev == INV_REDIS_DISCONNECTED) {
    rc_.disconnected++;
    say("event=disconnected pending=%zu", inv_redis_pending(r));
    if (inv_redis_is_connected(r)) fail("connected during DISCONNECTED");
    return;
  }
  rc_.connected++;
  say("event=connected n=%d", rc_.connected);
  if (rc_.connected == 1) {
    inv_redis_command(r, rc_set_cb, NULL, "SET rc:key 1");
  } else if (rc_.connected == 2) {
    inv_redis_command(r, rc_set_cb, NULL, "SET rc:key 2");
    inv_redis_command(r, rc_get_cb, NULL, "GET rc:key");
  }
}

static int scenario_reconnect(void) {
  inv_redis_opts_t o;
  watchdog_start(60000);
  inv_redis_opts_default(&o);
  o.backoff_min_ms = 50;
  o.backoff_max_ms = 400;
  rc_.r = make_conn(&addrs[0], &o, rc_event, NULL, NULL);
  uv_timer_init(loop, &rc_.tick);
  uv_timer_start(&rc_.tick, rc_tick, 50, 50);
  return 0;
}

/* ---- timeout ---------------------------------------------------------- */

#define TO_TIMEOUT_MS 500
#define TO_PAUSE_MS 2000

static struct {
  inv_redis_t *ctl, *r;
  int ctl_up, r_up, paused;
  uint64_t sent_at;
  int first_err, others_closed, timeouts_seen, connected;
  int recovering, done, closed;
} to;

static void to_closed(void *d) {
  (void)d;
  if (++to.closed == 2) watchdog_stop();
}

static void to_retry(void *arg);

static void to_recover_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  const inv_redis_stats_t *st;
  (void)d;
  if (err != 0) {
    if (err == INV_ETIMEDOUT) to.timeouts_seen++;
    later(100, to_retry, NULL); /* still paused: try again */
    return;
  }
  if (!reply_is(rep, REDIS_REPLY_STATUS, "PONG"))
    fail("PING after the pause gave a wrong reply");
  st = inv_redis_stats(r);
  say("recovered_after_ms=%llu timeouts=%llu reconnects=%llu",
      (unsigned long long)(now_ms() - to.sent_at),
      (unsigned long long)st->timeouts, (unsigned long long)st->reconnects);
  if (st->timeouts < 1) fail("timeouts stat is 0");
  if (st->reconnects < 1) fail("no reconnect after the timeout");
  to.done = 1;
  inv_redis_close(to.r, to_closed, NULL);
  inv_redis_close(to.ctl, to_closed, NULL);
}

static void to_retry(void *arg) {
  (void)arg;
  if (to.done) return;
  if (inv_redis_command(to.r, to_recover_cb, NULL, "PING") != 0)
    later(100, to_retry, NULL);
}

static void to_ping_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  uint64_t elapsed = now_ms() - to.sent_at;
  int idx = (int)(intptr_t)d;
  (void)r;
  (void)rep;
  if (idx == 0) {
    to.first_err = err;
    say("first_err=%s elapsed_ms=%llu", inv_err_name(err),
        (unsigned long long)elapsed);
    if (err != INV_ETIMEDOUT)
      fail("the paused command ended with %d, not ETIMEDOUT", err);
    if (elapsed + 20 < TO_TIMEOUT_MS || elapsed > TO_TIMEOUT_MS + 600)
      fail("timed out after %llu ms, expected about %d",
           (unsigned long long)elapsed, TO_TIMEOUT_MS);
  } else if (err == INV_ECLOSED) {
    to.others_closed++;
    if (to.others_closed == 2) {
      say("others_closed=%d", to.others_closed);
      later(100, to_retry, NULL);
    }
  } else {
    fail("queued command %d ended with %d, not ECLOSED", idx, err);
  }
}

static void to_pause_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  int i;
  (void)r;
  (void)d;
  if (err != 0 || !reply_is(rep, REDIS_REPLY_STATUS, "OK")) {
    fail("CLIENT PAUSE failed");
    exit(1);
  }
  to.sent_at = now_ms();
  for (i = 0; i < 3; i++)
    if (inv_redis_command(to.r, to_ping_cb, (void *)(intptr_t)i, "PING") != 0)
      fail("PING %d not queued", i);
}

static void to_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  (void)d;
  if (ev != INV_REDIS_CONNECTED) return;
  if (r == to.ctl)
    to.ctl_up = 1;
  else
    to.r_up++;
  if (to.ctl_up && to.r_up && !to.paused) {
    to.paused = 1;
    if (inv_redis_command(to.ctl, to_pause_cb, NULL, "CLIENT PAUSE %d ALL",
                          TO_PAUSE_MS) != 0)
      fail("CLIENT PAUSE not queued");
  }
}

static int scenario_timeout(void) {
  inv_redis_opts_t o;
  watchdog_start(30000);
  inv_redis_opts_default(&o);
  o.command_timeout_ms = 0;
  to.ctl = make_conn(&addrs[0], &o, to_event, NULL, NULL);
  o.command_timeout_ms = TO_TIMEOUT_MS;
  o.backoff_min_ms = 20;
  o.backoff_max_ms = 100;
  to.r = make_conn(&addrs[0], &o, to_event, NULL, NULL);
  return 0;
}

/* ---- subscribe -------------------------------------------------------- */

#define SUB_N 1000
#define SUB_PN 10

static struct {
  inv_redis_t *sub, *pub;
  int sub_up, pub_up, confirms, started;
  int messages, pmessages, order_errors, pong;
  int closed;
} sb;

static void sb_closed(void *d) {
  (void)d;
  if (++sb.closed == 2) watchdog_stop();
}

static void sb_get_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)d;
  if (err != 0 || !reply_is(rep, REDIS_REPLY_STRING, "after"))
    fail("GET after leaving subscribe mode failed");
  else
    say("normal_after_unsubscribe=ok");
  inv_redis_close(r, sb_closed, NULL);
  inv_redis_close(sb.pub, sb_closed, NULL);
}

static void sb_punsub_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)d;
  if (err != 0 || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
      !reply_is(rep->element[0], REDIS_REPLY_STRING, "punsubscribe") ||
      rep->element[2]->integer != 0)
    fail("PUNSUBSCRIBE confirmation wrong");
  if (inv_redis_command(r, sb_get_cb, NULL, "GET sb:key") != 0)
    fail("GET not queued after unsubscribing");
}

static void sb_unsub_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)r;
  (void)d;
  /* UNSUBSCRIBE without arguments with three channels: the callback runs
   * once, with the last confirmation (count 1: the pattern remains). */
  if (err != 0 || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
      !reply_is(rep->element[0], REDIS_REPLY_STRING, "unsubscribe") ||
      rep->element[2]->integer != 1)
    fail("UNSUBSCRIBE confirmation wrong");
  else
    say("unsubscribe_all=ok");
}

static void sb_push(inv_redis_t *r, redisReply *msg, void *d) {
  (void)d;
  if (reply_is(msg->element[0], REDIS_REPLY_STRING, "message")) {
    char want[32];
    snprintf(want, sizeof(want), "m%d", sb.messages);
    if (!reply_is(msg->element[1], REDIS_REPLY_STRING, "sb:chan") ||
        !reply_is(msg->element[2], REDIS_REPLY_STRING, want))
      sb.order_errors++;
    sb.messages++;
  } else if (reply_is(msg->element[0], REDIS_REPLY_STRING, "pmessage")) {
    if (!reply_is(msg->element[1], REDIS_REPLY_STRING, "sb:p*"))
      sb.order_errors++;
    sb.pmessages++;
  } else {
    fail("unexpected push");
  }
  if (sb.messages == SUB_N && sb.pmessages == SUB_PN) {
    say("messages=%d pmessages=%d order_errors=%d", sb.messages, sb.pmessages,
        sb.order_errors);
    if (sb.order_errors)
      fail("%d messages out of order or wrong", sb.order_errors);
    if (inv_redis_command(r, sb_unsub_cb, NULL, "UNSUBSCRIBE") != 0 ||
        inv_redis_command(r, sb_punsub_cb, NULL, "PUNSUBSCRIBE") != 0)
      fail("unsubscribe not queued");
  }
}

static void sb_publish(void) {
  int i;
  if (sb.started || sb.confirms < 4 || !sb.pub_up || !sb.pong) return;
  sb.started = 1;
  inv_redis_command(sb.pub, NULL, NULL, "SET sb:key after");
  for (i = 0; i < SUB_N; i++)
    if (inv_redis_command(sb.pub, NULL, NULL, "PUBLISH sb:chan m%d", i) != 0)
      fail("PUBLISH not queued");
  for (i = 0; i < SUB_PN; i++)
    inv_redis_command(sb.pub, NULL, NULL, "PUBLISH sb:p%d x", i);
}

static void sb_confirm_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  static const char *kinds[] = {"subscribe", "psubscribe", "subscribe",
                                "subscribe"};
  int idx = (int)(intptr_t)d;
  (void)r;
  if (err != 0 || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
      !reply_is(rep->element[0], REDIS_REPLY_STRING, kinds[idx]) ||
      rep->element[2]->integer != idx + 1)
    fail("confirmation %d wrong", idx);
  sb.confirms++;
  sb_publish();
}

static void sb_pong_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)r;
  (void)d;
  /* In subscribe mode PING answers ["pong", ""]. */
  if (err != 0 || rep->type != REDIS_REPLY_ARRAY ||
      !reply_is(rep->element[0], REDIS_REPLY_STRING, "pong"))
    fail("PING in subscribe mode wrong");
  sb.pong = 1;
  sb_publish();
}

static void sb_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  (void)d;
  if (ev != INV_REDIS_CONNECTED) return;
  if (r == sb.pub) {
    sb.pub_up = 1;
    sb_publish();
    return;
  }
  if (inv_redis_subscribe(r, "sb:chan", sb_confirm_cb, (void *)0) != 0 ||
      inv_redis_command(r, sb_confirm_cb, (void *)1, "PSUBSCRIBE sb:p*") != 0 ||
      inv_redis_command(r, sb_confirm_cb, (void *)2, "SUBSCRIBE sb:other") !=
          0 ||
      inv_redis_command(r, sb_pong_cb, NULL, "PING") != 0)
    fail("subscribe commands not queued");
  /* The third confirmation counts 3; a fourth for a second channel. */
  if (inv_redis_command(r, sb_confirm_cb, (void *)3, "SUBSCRIBE sb:chan2") != 0)
    fail("subscribe not queued");
}

static int scenario_subscribe(void) {
  watchdog_start(30000);
  sb.sub = make_conn(&addrs[0], NULL, sb_event, sb_push, NULL);
  sb.pub = make_conn(&addrs[0], NULL, sb_event, NULL, NULL);
  return 0;
}

/* ---- reentrant -------------------------------------------------------- */

static struct {
  inv_redis_t *a, *b, *c, *d, *e, *f, *g, *gpub;
  int a_ok, a_closed_err, a_late, a_closed_cbs;
  int b_closed, c_events, c_closed, d_ok, d_closed, e_closed;
  int f_connected, f_closed, f_after_reset;
  int g_msgs, g_closed, g_up, gpub_up, gpub_closed;
  int total_closed;
} re;

#define RE_TOTAL 8

static void re_closed(void *d) {
  int *flag = d;
  (*flag)++;
  if (++re.total_closed == RE_TOTAL) {
    say("a_ok=%d a_closed_err=%d a_late=%d", re.a_ok, re.a_closed_err,
        re.a_late);
    say("b_closed=%d c_events=%d d_ok=%d e_closed=%d f_after_reset=%d "
        "g_msgs=%d",
        re.b_closed, re.c_events, re.d_ok, re.e_closed, re.f_after_reset,
        re.g_msgs);
    if (re.a_ok != 10 || re.a_closed_err != 990 || re.a_late)
      fail("close inside a reply callback: %d ok, %d ECLOSED, %d late", re.a_ok,
           re.a_closed_err, re.a_late);
    if (re.c_events != 0) fail("events on a connection to a dead port");
    if (re.d_ok != 1) fail("resolver path did not work");
    if (re.f_after_reset != 1)
      fail("reset inside a callback did not reconnect");
    if (re.g_msgs != 10)
      fail("push after close in push_cb: %d messages", re.g_msgs);
    watchdog_stop();
  }
}

static void re_a_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)rep;
  (void)d;
  if (re.a_closed_cbs) {
    re.a_late++;
    return;
  }
  if (err == INV_ECLOSED) {
    re.a_closed_err++;
    if (inv_redis_command(r, re_a_cb, NULL, "PING") == 0)
      fail("command accepted while closing");
    inv_redis_close(r, NULL, NULL); /* again: must be a no-op */
    return;
  }
  if (err == 0 && ++re.a_ok == 10)
    inv_redis_close(r, re_closed, &re.a_closed_cbs);
}

static void re_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  int i;
  (void)d;
  if (r == re.a && ev == INV_REDIS_CONNECTED) {
    for (i = 0; i < 1000; i++) inv_redis_command(r, re_a_cb, NULL, "PING");
  } else if (r == re.b && ev == INV_REDIS_CONNECTED) {
    inv_redis_command(r, NULL, NULL, "PING");
    inv_redis_close(r, re_closed, &re.b_closed);
  } else if (r == re.c) {
    re.c_events++;
  }
}

static void re_c_close(void *arg) {
  (void)arg;
  inv_redis_close(re.c, re_closed, &re.c_closed);
}

static void re_d_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)d;
  if (err == 0 && reply_is(rep, REDIS_REPLY_STATUS, "PONG")) re.d_ok++;
  inv_redis_close(r, re_closed, &re.d_closed);
}

static void re_d_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  (void)d;
  if (ev == INV_REDIS_CONNECTED) inv_redis_command(r, re_d_cb, NULL, "PING");
}

static void re_f_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)rep;
  (void)d;
  if (err == 0 && re.f_connected == 1)
    inv_redis_reset(r); /* from inside a reply callback */
  else if (err == 0 && re.f_connected == 2) {
    re.f_after_reset++;
    inv_redis_close(r, re_closed, &re.f_closed);
  }
}

static void re_f_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  (void)d;
  if (ev != INV_REDIS_CONNECTED) return;
  re.f_connected++;
  inv_redis_command(r, re_f_cb, NULL, "PING");
  inv_redis_command(r, re_f_cb, NULL, "PING");
}

static void re_g_push(inv_redis_t *r, redisReply *msg, void *d) {
  (void)msg;
  (void)d;
  if (re.g_closed) {
    fail("push after close");
    return;
  }
  if (++re.g_msgs == 10) inv_redis_close(r, re_closed, &re.g_closed);
}

static void re_g_start(void) {
  int i;
  if (!re.g_up || !re.gpub_up) return;
  for (i = 0; i < 100; i++)
    inv_redis_command(re.gpub, NULL, NULL, "PUBLISH re:g %d", i);
  inv_redis_command(re.gpub, NULL, NULL, "PING");
}

static void re_g_sub_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)r;
  (void)rep;
  (void)d;
  if (err == 0) {
    re.g_up = 1;
    re_g_start();
  }
}

static void re_g_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  (void)d;
  if (ev != INV_REDIS_CONNECTED) return;
  if (r == re.g) {
    inv_redis_subscribe(r, "re:g", re_g_sub_cb, NULL);
  } else {
    re.gpub_up = 1;
    re_g_start();
  }
}

static void re_gpub_close(void *arg) {
  (void)arg;
  inv_redis_close(re.gpub, re_closed, &re.gpub_closed);
}

static int scenario_reentrant(void) {
  inv_addr_t dead, local;
  inv_redis_opts_t o;
  watchdog_start(30000);
  re.a = make_conn(&addrs[0], NULL, re_event, NULL, NULL);
  re.b = make_conn(&addrs[0], NULL, re_event, NULL, NULL);
  snprintf(dead.host, sizeof(dead.host), "127.0.0.1");
  dead.port = 1;
  inv_redis_opts_default(&o);
  o.backoff_min_ms = 10;
  o.backoff_max_ms = 40;
  re.c = make_conn(&dead, &o, re_event, NULL, NULL);
  later(400, re_c_close, NULL);
  local = addrs[0];
  if (strcmp(local.host, "127.0.0.1") == 0)
    snprintf(local.host, sizeof(local.host), "localhost");
  re.d = make_conn(&local, NULL, re_d_event, NULL, NULL);
  re.e = make_conn(&addrs[0], NULL, NULL, NULL, NULL);
  inv_redis_close(re.e, re_closed, &re.e_closed); /* before the loop runs */
  re.f = make_conn(&addrs[0], &o, re_f_event, NULL, NULL);
  re.g = make_conn(&addrs[0], NULL, re_g_event, re_g_push, NULL);
  re.gpub = make_conn(&addrs[0], NULL, re_g_event, NULL, NULL);
  later(1500, re_gpub_close, NULL);
  return 0;
}

/* ---- auth ------------------------------------------------------------- */

static struct {
  inv_redis_t *good, *bad;
  inv_cluster_t *cl;
  int good_ok, bad_events, cluster_ok, closed;
} au;

static void au_closed(void *d) {
  (void)d;
  if (++au.closed == 3) {
    say("good_ok=%d bad_events=%d cluster_ok=%d", au.good_ok, au.bad_events,
        au.cluster_ok);
    if (au.cluster_ok != 1) fail("cluster client with a password failed");
    if (au.good_ok != 1) fail("authenticated PING failed");
    if (au.bad_events != 0) fail("CONNECTED announced with a wrong password");
    watchdog_stop();
  }
}

static void au_ping_cb(inv_redis_t *r, redisReply *rep, int err, void *d) {
  (void)r;
  (void)d;
  if (err == 0 && reply_is(rep, REDIS_REPLY_STATUS, "PONG")) au.good_ok++;
}

static void au_event(inv_redis_t *r, inv_redis_event_t ev, void *d) {
  (void)d;
  if (r == au.bad) {
    au.bad_events++;
    return;
  }
  if (ev == INV_REDIS_CONNECTED) inv_redis_command(r, au_ping_cb, NULL, "PING");
}

static void au_cluster_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  (void)d;
  if (err == 0 && reply_is(rep, REDIS_REPLY_STATUS, "OK"))
    au.cluster_ok++;
  else
    fail("SET through the cluster client: %s",
         err ? inv_strerror(err) : rep->str);
  inv_cluster_close(c, au_closed, NULL);
}

static void au_finish(void *arg) {
  (void)arg;
  say("bad_connects=%llu",
      (unsigned long long)inv_redis_stats(au.bad)->connects);
  inv_redis_close(au.good, au_closed, NULL);
  inv_redis_close(au.bad, au_closed, NULL);
}

static int scenario_auth(void) {
  inv_redis_opts_t o;
  if (password_arg == NULL) {
    fprintf(stderr, "auth needs ADDR PASSWORD\n");
    return 2;
  }
  watchdog_start(30000);
  inv_redis_opts_default(&o);
  o.password = password_arg;
  au.good = make_conn(&addrs[0], &o, au_event, NULL, NULL);
  o.password = "not-the-password";
  o.backoff_min_ms = 100;
  o.backoff_max_ms = 200;
  au.bad = make_conn(&addrs[0], &o, au_event, NULL, NULL);
  o.password = password_arg;
  if (inv_cluster_create(loop, addrs, 1, &o, &au.cl) != 0) {
    fail("cluster client not created");
    return 1;
  }
  {
    const char *argv[] = {"SET", "auth:key", "v"};
    if (inv_cluster_command_argv(au.cl, "auth:key", 8, 3, argv, NULL,
                                 au_cluster_cb, NULL) != 0)
      fail("SET not queued");
  }
  later(1500, au_finish, NULL);
  return 0;
}

/* ---- cluster ---------------------------------------------------------- */

#define CL_PLAIN 10000

static struct {
  inv_cluster_t *c, *small;
  char **keys;
  size_t nkeys;
  size_t set_ok, set_bad, get_ok, get_bad, replies;
  int small_ok, small_replies;
  int closed;
} cl;

static void cl_closed(void *d) {
  (void)d;
  if (++cl.closed == 2) watchdog_stop();
}

static void print_cluster_stats(inv_cluster_t *c) {
  inv_cluster_stats_t st;
  inv_cluster_get_stats(c, &st);
  say("mode=%s round_trips=%llu redirects=%llu errors=%llu "
      "map_refreshes=%llu reconnects=%llu",
      inv_cluster_is_cluster(c) ? "cluster" : "standalone",
      (unsigned long long)st.round_trips, (unsigned long long)st.redirects,
      (unsigned long long)st.errors, (unsigned long long)st.map_refreshes,
      (unsigned long long)st.reconnects);
}

static void cl_small_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  (void)d;
  if (err == 0 && reply_is(rep, REDIS_REPLY_STATUS, "OK")) cl.small_ok++;
  if (++cl.small_replies == 100) {
    say("small_ok=%d", cl.small_ok);
    if (cl.small_ok != 100) fail("bounded client: %d of 100 ok", cl.small_ok);
    inv_cluster_close(c, cl_closed, NULL);
  }
}

static void cl_start_small(void) {
  inv_redis_opts_t o;
  int i, rc = 0;
  inv_redis_opts_default(&o);
  o.max_pending = 100;
  if (inv_cluster_create(loop, addrs, naddrs, &o, &cl.small) != 0) {
    fail("second cluster client not created");
    exit(1);
  }
  for (i = 0; i <= 100; i++) {
    char key[32];
    const char *argv[3] = {"SET", key, "v"};
    snprintf(key, sizeof(key), "small:%d", i);
    rc = inv_cluster_command_argv(cl.small, key, strlen(key), 3, argv, NULL,
                                  cl_small_cb, NULL);
    if (rc != 0) break;
  }
  say("small_refused_at=%d rc=%s", i, inv_err_name(rc));
  if (i != 100 || rc != INV_EBUSY)
    fail("max_pending 100 did not refuse the 101st command");
}

static void cl_publish_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  (void)d;
  if (err != 0 || rep->type != REDIS_REPLY_INTEGER)
    fail("keyless PUBLISH failed");
  else
    say("publish=ok");
  print_cluster_stats(c);
  inv_cluster_close(c, cl_closed, NULL);
}

static void cl_get_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  size_t i = (size_t)(uintptr_t)d;
  char want[64];
  snprintf(want, sizeof(want), "val:%s", cl.keys[i]);
  if (err == 0 && reply_is(rep, REDIS_REPLY_STRING, want))
    cl.get_ok++;
  else if (cl.get_bad++ < 5)
    fail("GET %s: %s", cl.keys[i], err ? inv_strerror(err) : "wrong value");
  if (++cl.replies == 2 * cl.nkeys) {
    const char *argv[] = {"PUBLISH", "chk:cluster", "hello"};
    say("set_ok=%zu get_ok=%zu", cl.set_ok, cl.get_ok);
    if (cl.set_ok != cl.nkeys || cl.get_ok != cl.nkeys)
      fail("not every key was set and read back");
    if (inv_cluster_command_argv(c, NULL, 0, 3, argv, NULL, cl_publish_cb,
                                 NULL) != 0)
      fail("PUBLISH not queued");
    cl_start_small();
  }
}

static void cl_set_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  size_t i;
  (void)d;
  if (err == 0 && reply_is(rep, REDIS_REPLY_STATUS, "OK"))
    cl.set_ok++;
  else if (cl.set_bad++ < 5)
    fail("SET: %s", err ? inv_strerror(err) : rep->str);
  if (++cl.replies == cl.nkeys) {
    if (!inv_cluster_ready(c)) fail("not ready after the replies");
    for (i = 0; i < cl.nkeys; i++) {
      const char *argv[] = {"GET", cl.keys[i]};
      if (inv_cluster_command_argv(c, cl.keys[i], strlen(cl.keys[i]), 2, argv,
                                   NULL, cl_get_cb, (void *)(uintptr_t)i) != 0)
        fail("GET not queued");
    }
  }
}

/* Keys key:0..9999 plus one key per slot, so every slot is exercised. */
static void cl_make_keys(void) {
  char buf[64];
  unsigned long n;
  size_t filled = 0, i;
  char **per_slot = calloc(INV_SLOTS, sizeof(char *));
  cl.keys = calloc(CL_PLAIN + INV_SLOTS, sizeof(char *));
  if (per_slot == NULL || cl.keys == NULL) abort();
  for (i = 0; i < CL_PLAIN; i++) {
    snprintf(buf, sizeof(buf), "key:%zu", i);
    cl.keys[cl.nkeys++] = strdup(buf);
  }
  for (n = 0; filled < INV_SLOTS; n++) {
    unsigned s;
    snprintf(buf, sizeof(buf), "slotkey:%lu", n);
    s = inv_key_slot(buf, strlen(buf));
    if (per_slot[s] == NULL) {
      per_slot[s] = strdup(buf);
      filled++;
    }
  }
  for (i = 0; i < INV_SLOTS; i++) cl.keys[cl.nkeys++] = per_slot[i];
  free(per_slot);
}

static void cl_free_keys(void) {
  size_t i;
  for (i = 0; i < cl.nkeys; i++) free(cl.keys[i]);
  free(cl.keys);
}

static int scenario_cluster(void) {
  size_t i;
  int rc;
  watchdog_start(120000);
  cl_make_keys();
  rc = inv_cluster_create(loop, addrs, naddrs, NULL, &cl.c);
  if (rc != 0) {
    fail("inv_cluster_create: %s", inv_strerror(rc));
    return 1;
  }
  /* Everything is issued before the topology is known: it must queue. */
  for (i = 0; i < cl.nkeys; i++) {
    char val[64];
    const char *argv[] = {"SET", cl.keys[i], val};
    snprintf(val, sizeof(val), "val:%s", cl.keys[i]);
    rc = inv_cluster_command_argv(cl.c, cl.keys[i], strlen(cl.keys[i]), 3, argv,
                                  NULL, cl_set_cb, NULL);
    if (rc != 0) {
      fail("SET not queued: %s", inv_strerror(rc));
      return 1;
    }
  }
  say("keys=%zu ready_at_start=%d", cl.nkeys, inv_cluster_ready(cl.c));
  return 0;
}

/* ---- migrate ---------------------------------------------------------- */

#define MG_KEYS 200

static struct {
  inv_cluster_t *c;
  int phase; /* 0 setting up, 1 rounds, 2 final round, 3 done */
  int outstanding;
  int rounds, reads_ok, reads_bad, incr_ok, incr_bad;
  long long counter;
  int stop_seen;
} mg;

static void mg_round(void *arg);

static void mg_closed(void *d) {
  (void)d;
  watchdog_stop();
}

static void mg_check_done(inv_cluster_t *c) {
  inv_cluster_stats_t st;
  if (--mg.outstanding > 0) return;
  if (mg.phase == 0) {
    mg.phase = 1;
    say("READY");
    later(20, mg_round, NULL);
    return;
  }
  mg.rounds++;
  if (mg.phase == 1) {
    if (mg.stop_seen) mg.phase = 2;
    later(mg.phase == 2 ? 0 : 20, mg_round, NULL);
    return;
  }
  inv_cluster_get_stats(c, &st);
  say("rounds=%d reads_ok=%d reads_bad=%d incr_ok=%d incr_bad=%d "
      "counter=%lld",
      mg.rounds, mg.reads_ok, mg.reads_bad, mg.incr_ok, mg.incr_bad,
      mg.counter);
  print_cluster_stats(c);
  if (mg.reads_bad || mg.incr_bad) fail("commands failed during the migration");
  if (mg.counter != mg.incr_ok)
    fail("counter %lld after %d INCRs", mg.counter, mg.incr_ok);
  inv_cluster_close(c, mg_closed, NULL);
}

static void mg_read_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  int i = (int)(intptr_t)d;
  char want[32];
  snprintf(want, sizeof(want), "v%d", i);
  if (mg.phase == 0) {
    if (err != 0 || !reply_is(rep, REDIS_REPLY_STATUS, "OK"))
      fail("setup SET failed");
  } else if (err == 0 && reply_is(rep, REDIS_REPLY_STRING, want)) {
    mg.reads_ok++;
  } else if (mg.reads_bad++ < 5) {
    fail("GET {mig}:%d: %s", i,
         err                              ? inv_strerror(err)
         : rep->type == REDIS_REPLY_ERROR ? rep->str
                                          : "wrong value");
  }
  mg_check_done(c);
}

static void mg_incr_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  (void)d;
  if (err == 0 && rep->type == REDIS_REPLY_INTEGER) {
    mg.incr_ok++;
    mg.counter = rep->integer;
  } else if (mg.incr_bad++ < 5) {
    fail("INCR: %s", err ? inv_strerror(err) : rep->str);
  }
  mg_check_done(c);
}

static void mg_stop_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  (void)d;
  if (err == 0 && rep->type == REDIS_REPLY_STRING) mg.stop_seen = 1;
  mg_check_done(c);
}

static void mg_send(const char *key, int argc, const char **argv,
                    inv_cluster_reply_cb cb, void *data) {
  if (inv_cluster_command_argv(mg.c, key, strlen(key), argc, argv, NULL, cb,
                               data) != 0) {
    fail("command not queued");
    exit(1);
  }
  mg.outstanding++;
}

static void mg_round(void *arg) {
  int i;
  char key[32];
  (void)arg;
  for (i = 0; i < MG_KEYS; i++) {
    const char *argv[] = {"GET", key};
    snprintf(key, sizeof(key), "{mig}:%d", i);
    mg_send(key, 2, argv, mg_read_cb, (void *)(intptr_t)i);
  }
  {
    const char *argv[] = {"INCR", "{mig}:counter"};
    mg_send("{mig}:counter", 2, argv, mg_incr_cb, NULL);
  }
  {
    const char *argv[] = {"GET", "redis_check:stop"};
    mg_send("redis_check:stop", 2, argv, mg_stop_cb, NULL);
  }
}

static int scenario_migrate(void) {
  int i, rc;
  char key[32], val[32];
  watchdog_start(120000);
  rc = inv_cluster_create(loop, addrs, naddrs, NULL, &mg.c);
  if (rc != 0) {
    fail("inv_cluster_create: %s", inv_strerror(rc));
    return 1;
  }
  for (i = 0; i < MG_KEYS; i++) {
    const char *argv[] = {"SET", key, val};
    snprintf(key, sizeof(key), "{mig}:%d", i);
    snprintf(val, sizeof(val), "v%d", i);
    mg_send(key, 3, argv, mg_read_cb, (void *)(intptr_t)i);
  }
  return 0;
}

/* ---- failover --------------------------------------------------------- */

#define FO_KEYS 100

static struct {
  inv_cluster_t *c;
  int phase; /* 0 setup, 1 rounds, 2 final round */
  int outstanding, round, stop_seen;
  int ok, unavail, other, final_ok, verify_ok;
  int pub_ok, pub_unavail, final_pub_ok;
} fo;

static void fo_round(void *arg);

static void fo_closed(void *d) {
  (void)d;
  watchdog_stop();
}

static void fo_verify_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  char want[32];
  (void)d;
  snprintf(want, sizeof(want), "%d", fo.round);
  if (err == 0 && reply_is(rep, REDIS_REPLY_STRING, want)) fo.verify_ok++;
  if (--fo.outstanding == 0) {
    say("rounds=%d ok=%d unavail=%d other=%d final_ok=%d verify_ok=%d",
        fo.round, fo.ok, fo.unavail, fo.other, fo.final_ok, fo.verify_ok);
    say("pub_ok=%d pub_unavail=%d final_pub_ok=%d", fo.pub_ok, fo.pub_unavail,
        fo.final_pub_ok);
    if (fo.final_pub_ok != 1) fail("keyless PUBLISH failed after the failover");
    print_cluster_stats(c);
    if (fo.other) fail("%d commands failed other than with EUNAVAIL", fo.other);
    if (fo.final_ok != FO_KEYS || fo.verify_ok != FO_KEYS)
      fail("the round after the failover did not fully succeed");
    inv_cluster_close(c, fo_closed, NULL);
  }
}

static void fo_send(const char *key, int argc, const char **argv,
                    inv_cluster_reply_cb cb) {
  if (inv_cluster_command_argv(fo.c, key, strlen(key), argc, argv, NULL, cb,
                               NULL) != 0) {
    fail("command not queued");
    exit(1);
  }
  fo.outstanding++;
}

/* One command of the round is answered; the last one moves on. */
static void fo_answered(void) {
  int i;
  char key[32];
  if (--fo.outstanding > 0) return;
  if (fo.phase == 0) {
    if (fo.ok != FO_KEYS) fail("setup round failed");
    fo.phase = 1;
    say("READY");
  } else if (fo.phase == 2) {
    for (i = 0; i < FO_KEYS; i++) {
      const char *argv[] = {"GET", key};
      snprintf(key, sizeof(key), "fo:%d", i);
      fo_send(key, 2, argv, fo_verify_cb);
    }
    return;
  } else if (fo.stop_seen) {
    fo.phase = 2;
  }
  later(100, fo_round, NULL);
}

static void fo_set_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  (void)c;
  (void)d;
  if (err == 0 && reply_is(rep, REDIS_REPLY_STATUS, "OK")) {
    fo.ok++;
    if (fo.phase == 2) fo.final_ok++;
  } else if (err == INV_EUNAVAIL) {
    fo.unavail++;
  } else if (fo.other++ < 5) {
    fail("SET: %s", err ? inv_strerror(err) : rep->str);
  }
  fo_answered();
}

static void fo_pub_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  (void)c;
  (void)d;
  if (err == 0 && rep->type == REDIS_REPLY_INTEGER) {
    fo.pub_ok++;
    if (fo.phase == 2) fo.final_pub_ok++;
  } else if (err == INV_EUNAVAIL) {
    fo.pub_unavail++;
  } else if (fo.other++ < 5) {
    fail("PUBLISH: %s", err ? inv_strerror(err) : rep->str);
  }
  fo_answered();
}

static void fo_stop_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  (void)c;
  (void)d;
  if (err == 0 && rep->type == REDIS_REPLY_STRING) fo.stop_seen = 1;
  fo_answered();
}

static void fo_round(void *arg) {
  int i;
  char key[32], val[32];
  (void)arg;
  fo.round++;
  snprintf(val, sizeof(val), "%d", fo.round);
  for (i = 0; i < FO_KEYS; i++) {
    const char *argv[] = {"SET", key, val};
    snprintf(key, sizeof(key), "fo:%d", i);
    fo_send(key, 3, argv, fo_set_cb);
  }
  {
    const char *argv[] = {"PUBLISH", "fo:chan", val};
    if (inv_cluster_command_argv(fo.c, NULL, 0, 3, argv, NULL, fo_pub_cb,
                                 NULL) != 0) {
      fail("PUBLISH not queued");
      exit(1);
    }
    fo.outstanding++;
  }
  if (fo.phase == 1) {
    const char *argv[] = {"GET", "redis_check:stop"};
    fo_send("redis_check:stop", 2, argv, fo_stop_cb);
  }
}

static int scenario_failover(void) {
  int rc;
  watchdog_start(180000);
  rc = inv_cluster_create(loop, addrs, naddrs, NULL, &fo.c);
  if (rc != 0) {
    fail("inv_cluster_create: %s", inv_strerror(rc));
    return 1;
  }
  fo_round(NULL);
  return 0;
}

/* ---- down ------------------------------------------------------------- */

#define DN_TIMEOUT_MS 1000

static struct {
  inv_cluster_t *c;
  uint64_t sent_at;
  int ready, ok, consecutive, failures_seen;
} dn;

static void dn_send(void *arg);

static void dn_closed(void *d) {
  (void)d;
  watchdog_stop();
}

static void dn_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  uint64_t elapsed = now_ms() - dn.sent_at;
  (void)rep;
  (void)d;
  if (!dn.ready) {
    dn.ready = 1;
    say("first=%s", err ? inv_err_name(err) : "ok");
    say("READY");
  }
  if (err == 0) {
    dn.ok++;
    dn.consecutive = 0;
  } else {
    dn.failures_seen++;
    say("failure=%s elapsed_ms=%llu", inv_err_name(err),
        (unsigned long long)elapsed);
    if (err != INV_EUNAVAIL)
      fail("failed with %s, not EUNAVAIL", inv_err_name(err));
    if (elapsed + 20 < DN_TIMEOUT_MS || elapsed > DN_TIMEOUT_MS + 500)
      fail("failed after %llu ms; the deadline is %d ms",
           (unsigned long long)elapsed, DN_TIMEOUT_MS);
    dn.consecutive++;
  }
  if (dn.consecutive >= 3) {
    say("ok=%d failures=%d ready=%d", dn.ok, dn.failures_seen,
        inv_cluster_ready(c));
    print_cluster_stats(c);
    inv_cluster_close(c, dn_closed, NULL);
    return;
  }
  later(100, dn_send, NULL);
}

static void dn_send(void *arg) {
  const char *argv[] = {"GET", "down:key"};
  (void)arg;
  dn.sent_at = now_ms();
  if (inv_cluster_command_argv(dn.c, "down:key", 8, 2, argv, NULL, dn_cb,
                               NULL) != 0) {
    fail("GET not queued");
    exit(1);
  }
}

static int scenario_down(void) {
  inv_redis_opts_t o;
  int rc;
  watchdog_start(120000);
  inv_redis_opts_default(&o);
  o.command_timeout_ms = DN_TIMEOUT_MS;
  o.connect_timeout_ms = 500;
  rc = inv_cluster_create(loop, addrs, naddrs, &o, &dn.c);
  if (rc != 0) {
    fail("inv_cluster_create: %s", inv_strerror(rc));
    return 1;
  }
  dn_send(NULL);
  return 0;
}

/* ---- cluster_close ---------------------------------------------------- */

static struct {
  inv_cluster_t *early, *mid;
  int early_closed_err, early_other, mid_ok, mid_closed_err, mid_other;
  int late, closed;
} cc;

static void cc_closed(void *d) {
  (void)d;
  if (++cc.closed < 2) return;
  say("early_closed=%d early_other=%d mid_ok=%d mid_closed=%d mid_other=%d "
      "late=%d",
      cc.early_closed_err, cc.early_other, cc.mid_ok, cc.mid_closed_err,
      cc.mid_other, cc.late);
  if (cc.early_closed_err != 1000 || cc.early_other)
    fail(
        "close before the topology was known did not fail every command "
        "with ECLOSED");
  if (cc.mid_ok < 1 || cc.mid_ok + cc.mid_closed_err != 1000 || cc.mid_other)
    fail("close inside a callback: %d ok, %d ECLOSED, %d other", cc.mid_ok,
         cc.mid_closed_err, cc.mid_other);
  if (cc.late) fail("%d callbacks after close", cc.late);
  watchdog_stop();
}

static void cc_early_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  const char *argv[] = {"GET", "x"};
  (void)rep;
  (void)d;
  if (cc.closed)
    cc.late++;
  else if (err == INV_ECLOSED)
    cc.early_closed_err++;
  else
    cc.early_other++;
  if (inv_cluster_command_argv(c, "x", 1, 2, argv, NULL, cc_early_cb, NULL) !=
      INV_ESHUTDOWN)
    fail("command accepted while closing");
}

static void cc_mid_cb(inv_cluster_t *c, redisReply *rep, int err, void *d) {
  (void)rep;
  (void)d;
  if (cc.closed > 1)
    cc.late++;
  else if (err == 0) {
    /* Close from inside the first reply's callback: every other command,
     * sent or not, is answered ECLOSED right away. */
    if (++cc.mid_ok == 1) inv_cluster_close(c, cc_closed, NULL);
  } else if (err == INV_ECLOSED)
    cc.mid_closed_err++;
  else
    cc.mid_other++;
}

static int scenario_cluster_close(void) {
  int i;
  char key[32];
  watchdog_start(30000);
  if (inv_cluster_create(loop, addrs, naddrs, NULL, &cc.early) != 0 ||
      inv_cluster_create(loop, addrs, naddrs, NULL, &cc.mid) != 0) {
    fail("cluster client not created");
    return 1;
  }
  for (i = 0; i < 1000; i++) {
    const char *argv[] = {"SET", key, "v"};
    snprintf(key, sizeof(key), "cc:%d", i);
    if (inv_cluster_command_argv(cc.early, key, strlen(key), 3, argv, NULL,
                                 cc_early_cb, NULL) != 0 ||
        inv_cluster_command_argv(cc.mid, key, strlen(key), 3, argv, NULL,
                                 cc_mid_cb, NULL) != 0)
      fail("SET not queued");
  }
  inv_cluster_close(cc.early, cc_closed, NULL);
  inv_cluster_close(cc.early, cc_closed, NULL); /* twice: a no-op */
  inv_cluster_close(NULL, NULL, NULL);
  return 0;
}

/* ---- main ------------------------------------------------------------- */

static const struct {
  const char *name;
  int (*fn)(void);
  int min_addrs;
} scenarios[] = {
    {"parse", scenario_parse, 0},
    {"pipeline", scenario_pipeline, 1},
    {"reconnect", scenario_reconnect, 1},
    {"timeout", scenario_timeout, 1},
    {"subscribe", scenario_subscribe, 1},
    {"reentrant", scenario_reentrant, 1},
    {"auth", scenario_auth, 1},
    {"cluster", scenario_cluster, 1},
    {"migrate", scenario_migrate, 1},
    {"failover", scenario_failover, 1},
    {"down", scenario_down, 1},
    {"cluster_close", scenario_cluster_close, 1},
};

static int usage(void) {
  size_t i;
  fprintf(stderr,
          "usage: redis_check SCENARIO [HOST:PORT...] [PASSWORD]\n"
          "scenarios:");
  for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
    fprintf(stderr, " %s", scenarios[i].name);
  fprintf(stderr, "\n");
  return 2;
}

int main(int argc, char **argv) {
  size_t i;
  int a, rc = -1;
  const char *level = getenv("REDIS_CHECK_LOG");

  if (argc < 2) return usage();
  if (level != NULL) {
    inv_log_level_t l;
    if (inv_log_parse_level(level, &l) == 0) inv_log_set_level(l);
  }
  for (a = 2; a < argc; a++) {
    if (strcmp(argv[1], "auth") == 0 && a == argc - 1 && naddrs > 0) {
      password_arg = argv[a];
      break;
    }
    if (naddrs == sizeof(addrs) / sizeof(addrs[0]) ||
        inv_addr_parse(argv[a], &addrs[naddrs]) != 0) {
      fprintf(stderr, "bad address %s\n", argv[a]);
      return 2;
    }
    naddrs++;
  }
  loop = uv_default_loop();
  for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
    if (strcmp(argv[1], scenarios[i].name) != 0) continue;
    if (naddrs < (size_t)scenarios[i].min_addrs) return usage();
    rc = scenarios[i].fn();
    break;
  }
  if (rc < 0) return usage();
  if (rc == 2) return 2;
  if (rc == 0) uv_run(loop, UV_RUN_DEFAULT);
  if (cl.keys != NULL) cl_free_keys();
  if (uv_loop_close(loop) != 0) fail("handles still open at exit");
  say(failures ? "RESULT FAIL" : "RESULT OK");
  return failures ? 1 : 0;
}
