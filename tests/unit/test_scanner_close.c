/*
 * Unit test of the scanner's close order (workers/scanner.c), in-process on
 * a libuv loop. The Redis connection goes to a silent fake server on
 * loopback (it accepts and reads, and never answers), so a listing command
 * stays in flight for as long as the test likes. No Redis is needed.
 *
 * inv_scanner_close cancels the pending runs before the running ones. A
 * pending run has nothing in flight and is freed at once; the scanner must
 * still not be freed then, because the running run cancelled after it
 * waits for its command's reply, which comes to the scanner later (here
 * only when the connection is closed, loop turns after the scanner's).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "inval/errors.h"
#include "common/base/log.h"
#include "common/redis/redis_conn.h"
#include "tests/unit/check.h"
#include "workers/scanner.h"
#include "workers/slot_map.h"
#include "workers/unlinker.h"
#include "workers/worker_stats.h"

#define NTAGS 3

static uv_loop_t loop;
static uv_tcp_t fake;      /* the silent server's listener */
static uv_tcp_t fake_conn; /* the one connection it accepts */
static int fake_accepted;
static char discard[4096];

/* Per tag: how often done_cb ran, and the last error. */
static int done_calls[NTAGS];
static int done_err[NTAGS];
static int redis_closed;

static void fake_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)h;
  (void)size;
  *buf = uv_buf_init(discard, sizeof(discard));
}

static void fake_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  if (n < 0) uv_read_stop(s);
}

static void fake_accept_cb(uv_stream_t *listener, int status) {
  if (status < 0 || fake_accepted) return;
  uv_tcp_init(&loop, &fake_conn);
  if (uv_accept(listener, (uv_stream_t *)&fake_conn) != 0) {
    uv_close((uv_handle_t *)&fake_conn, NULL);
    return;
  }
  fake_accepted = 1;
  uv_read_start((uv_stream_t *)&fake_conn, fake_alloc_cb, fake_read_cb);
}

/* Starts the silent server on a free loopback port; returns the port. */
static int fake_start(void) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_init(&loop, &fake);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if (uv_tcp_bind(&fake, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&fake, 8, fake_accept_cb) != 0 ||
      uv_tcp_getsockname(&fake, (struct sockaddr *)&bound, &len) != 0)
    return -1;
  return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void done_cb(void *owner, uint64_t tag, int err) {
  (void)owner;
  if (tag >= NTAGS) return;
  done_calls[tag]++;
  done_err[tag] = err;
}

static void redis_closed_cb(void *data) {
  (void)data;
  redis_closed = 1;
}

/* Counts the open handles whose data is the object at address owner (the
 * scanner's timers and idle carry it as data). The address is kept as a
 * number: the object may be freed by the time it is asked about. */
typedef struct walk_s {
  uintptr_t owner;
  int n;
} walk_t;

static void walk_cb(uv_handle_t *h, void *arg) {
  walk_t *w = arg;
  if ((uintptr_t)h->data == w->owner && !uv_is_closing(h)) w->n++;
}

static int handles_of(uintptr_t owner) {
  walk_t w = {owner, 0};
  uv_walk(&loop, walk_cb, &w);
  return w.n;
}

/* Runs the loop without blocking until cond() holds or 10 s have passed
 * (a bound for a broken scanner, not a speed target). */
static int run_until(int (*cond)(void *), void *arg) {
  uint64_t end = uv_hrtime() + 10000000000ull;
  while (!cond(arg) && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_sleep(1);
  }
  return cond(arg);
}

static int is_connected(void *r) {
  return inv_redis_is_connected(r) && fake_accepted;
}
static int is_closed(void *unused) {
  (void)unused;
  return redis_closed;
}

static void test_close_waits_for_the_last_zombie(void) {
  inv_redis_opts_t ro;
  inv_redis_t *r = NULL;
  inv_unlinker_t *u = NULL;
  inv_scanner_t *scn = NULL;
  inv_worker_stats_t stats;
  inv_slot_map_t map;
  inv_scanner_opts_t so = {
      .scan_count = 100, .max_scans = 1, .scan_inflight = 10};
  int port = fake_start();

  CHECK(port > 0);
  memset(&stats, 0, sizeof(stats));
  inv_slot_map_standalone(&map);
  inv_redis_opts_default(&ro);
  ro.command_timeout_ms = 0; /* the silent server must not be timed out */
  CHECK_EQ_INT(
      inv_redis_create(&loop, "127.0.0.1", port, &ro, NULL, NULL, NULL, &r), 0);
  if (r == NULL) return;
  CHECK(run_until(is_connected, r));
  CHECK_EQ_INT(inv_unlinker_create(&loop, r, &stats, 1000, NULL, NULL, &u), 0);
  CHECK_EQ_INT(
      inv_scanner_create(&loop, r, u, &map, &so, &stats, done_cb, NULL, &scn),
      0);
  if (u == NULL || scn == NULL) return;
  uintptr_t scn_addr = (uintptr_t)scn;
  CHECK_EQ_INT(handles_of(scn_addr), 3);

  /* Tag 0 runs (its SCAN goes out and is never answered), tag 1 waits for
   * a slot among max_scans, tag 2 waits for the next shared pass. */
  CHECK_EQ_INT(inv_scanner_submit(scn, "{a}x*", 5, INV_UNLINK_HARD, 1, 0, 0),
               0);
  CHECK_EQ_INT(inv_scanner_submit(scn, "{b}y*", 5, INV_UNLINK_HARD, 1, 0, 1),
               0);
  CHECK_EQ_INT(inv_scanner_submit(scn, "z*", 2, INV_UNLINK_HARD, 0, 0, 2), 0);
  CHECK_EQ_INT(inv_scanner_running(scn), 1);
  CHECK_EQ_INT(inv_redis_pending(r), 1);

  inv_scanner_close(scn);
  /* Every tag is answered once, with INV_ECLOSED, by the close itself. */
  for (int t = 0; t < NTAGS; t++) {
    CHECK_EQ_INT(done_calls[t], 1);
    CHECK_EQ_INT(done_err[t], INV_ECLOSED);
  }
  /* Loop turns pass: the scanner's handles must stay open, since the
   * running run's command is still in flight and its reply comes to the
   * scanner. */
  for (int i = 0; i < 20; i++) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_EQ_INT(handles_of(scn_addr), 3);
  CHECK_EQ_INT(inv_redis_pending(r), 1);

  /* The connection's close fails the SCAN: the last zombie goes, and the
   * scanner with it (the sanitizer build checks that nothing is touched
   * after the free, nor leaked). */
  inv_unlinker_close(u);
  inv_redis_close(r, redis_closed_cb, NULL);
  CHECK(run_until(is_closed, NULL));
  for (int i = 0; i < 20; i++) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_EQ_INT(handles_of(scn_addr), 0);
  for (int t = 0; t < NTAGS; t++) CHECK_EQ_INT(done_calls[t], 1);
}

int main(void) {
  inv_log_set_level(INV_LOG_WARN);
  uv_loop_init(&loop);
  RUN(test_close_waits_for_the_last_zombie);
  if (fake_accepted) uv_close((uv_handle_t *)&fake_conn, NULL);
  uv_close((uv_handle_t *)&fake, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  return check_summary();
}
