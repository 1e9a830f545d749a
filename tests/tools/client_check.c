/*
 * client_check: drives the C client library (inval/client.h) for
 * tests/integration/test_client_lib.py. Each mode prints one JSON line of
 * figures on stdout and exits 0 when every check held, 1 otherwise (with
 * the failed check on stderr).
 *
 *   client_check pipeline HOST PORT EVENTS BATCH WINDOW [CA_FILE]
 *       sends EVENTS key events in requests of BATCH events with up to
 *       WINDOW requests outstanding; every ack must match an outstanding
 *       msgid exactly once and carry BATCH accepted events.
 *   client_check bound HOST PORT
 *       the outstanding bound, a blocking call while replies are pending,
 *       a notification, and next_reply with nothing outstanding.
 *   client_check errors HOST PORT
 *       an event with an empty target: INV_EINVAL with the server message.
 *   client_check connect HOST PORT
 *       prints the code of a connect attempt (for refused and timeouts).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inval/errors.h"
#include "inval/client.h"
#include "proto/event.h"

#define FAIL(...)                                  \
  do {                                             \
    fprintf(stderr, "client_check: " __VA_ARGS__); \
    fputc('\n', stderr);                           \
    goto out;                                      \
  } while (0)

/* Returns 1 when ack names at least one shard entry, its shards ascend,
 * and its id is the newest of its entries' ids (as (ms, seq)). */
static int ack_ids_ok(const inv_client_ack_t *ack) {
  unsigned long long ms, seq, best_ms = 0, best_seq = 0, id_ms, id_seq;
  if (ack->nids == 0 || sscanf(ack->id, "%llu-%llu", &id_ms, &id_seq) != 2)
    return 0;
  for (size_t k = 0; k < ack->nids; k++) {
    if (k > 0 && ack->ids[k].shard <= ack->ids[k - 1].shard) return 0;
    if (sscanf(ack->ids[k].id, "%llu-%llu", &ms, &seq) != 2) return 0;
    if (ms > best_ms || (ms == best_ms && seq > best_seq)) {
      best_ms = ms;
      best_seq = seq;
    }
  }
  return best_ms == id_ms && best_seq == id_seq;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A bitmap of outstanding msgids (they are issued from 1 upwards). */
typedef struct idset_s {
  unsigned char *bits;
  size_t cap;
} idset_t;

static int idset_put(idset_t *s, uint32_t id, int on) {
  size_t byte = id / 8;
  int had;
  if (byte >= s->cap) {
    size_t ncap = (byte + 1) * 2;
    unsigned char *nb = realloc(s->bits, ncap);
    if (nb == NULL) return -1;
    memset(nb + s->cap, 0, ncap - s->cap);
    s->bits = nb;
    s->cap = ncap;
  }
  had = (s->bits[byte] >> (id % 8)) & 1;
  if (on)
    s->bits[byte] |= (unsigned char)(1u << (id % 8));
  else
    s->bits[byte] &= (unsigned char)~(1u << (id % 8));
  return had;
}

static int do_connect(const char *host, int port, const char *ca,
                      size_t max_outstanding, inv_client_t **c) {
  inv_client_opts_t o;
  char err[256];
  int rc;
  inv_client_opts_default(&o);
  o.client_name = "client_check";
  o.max_outstanding = max_outstanding;
  o.timeout_ms = 20000;
  if (ca != NULL) {
    o.tls = 1;
    o.tls_ca_file = ca;
  }
  rc = inv_client_connect(host, port, &o, c, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "client_check: connect: %s: %s\n", inv_err_name(rc), err);
  return rc;
}

static int mode_pipeline(const char *host, int port, long total, long batch,
                         long window, const char *ca) {
  inv_client_t *c = NULL;
  inv_event_t *evs = NULL;
  char *keys = NULL;
  idset_t ids = {NULL, 0};
  long sent = 0, acked = 0, requests = 0, replies = 0, i;
  size_t max_seen = 0;
  double t0;
  int ok = 0;
  if (do_connect(host, port, ca, (size_t)window, &c) != 0) return 1;
  evs = calloc((size_t)batch, sizeof *evs);
  keys = malloc((size_t)batch * 32);
  if (evs == NULL || keys == NULL) FAIL("out of memory");
  t0 = now_s();
  while (sent < total || inv_client_outstanding(c) > 0) {
    if (sent < total && inv_client_outstanding(c) < (size_t)window) {
      long n = total - sent < batch ? total - sent : batch;
      uint32_t id;
      int rc;
      for (i = 0; i < n; i++) {
        char *k = keys + i * 32;
        evs[i].kind = INV_KIND_KEY;
        evs[i].mode = INV_MODE_HARD;
        evs[i].target = k;
        evs[i].target_len = (size_t)snprintf(k, 32, "cc:%ld", sent + i);
      }
      rc = inv_client_send_invalidate(c, evs, (size_t)n, &id);
      if (rc != 0) FAIL("send: %s: %s", inv_err_name(rc), inv_client_errstr(c));
      if (idset_put(&ids, id, 1) != 0) FAIL("msgid %" PRIu32 " reused", id);
      sent += n;
      requests++;
      if (inv_client_outstanding(c) > max_seen)
        max_seen = inv_client_outstanding(c);
      continue;
    }
    {
      inv_client_reply_t r;
      int rc = inv_client_next_reply(c, 20000, &r);
      if (rc != 0)
        FAIL("next_reply: %s: %s", inv_err_name(rc), inv_client_errstr(c));
      if (r.err != 0) FAIL("error reply: %s: %s", r.errname, r.errstr);
      if (!r.has_ack) FAIL("reply %" PRIu32 " is not an ack", r.msgid);
      if (!ack_ids_ok(&r.ack))
        FAIL("ack %" PRIu32 ": id %s is not the newest of its %zu ids", r.msgid,
             r.ack.id, r.ack.nids);
      if (idset_put(&ids, r.msgid, 0) != 1)
        FAIL("reply for msgid %" PRIu32 " that is not outstanding", r.msgid);
      acked += (long)r.ack.accepted;
      replies++;
    }
  }
  if (acked != total) FAIL("acked %ld of %ld events", acked, total);
  if (replies != requests)
    FAIL("%ld replies to %ld requests", replies, requests);
  printf(
      "{\"events\": %ld, \"requests\": %ld, \"acked\": %ld, "
      "\"max_outstanding\": %zu, \"seconds\": %.3f}\n",
      total, requests, acked, max_seen, now_s() - t0);
  ok = 1;
out:
  free(evs);
  free(keys);
  free(ids.bits);
  inv_client_close(c);
  return ok ? 0 : 1;
}

static int mode_bound(const char *host, int port) {
  inv_client_t *c = NULL;
  inv_event_t ev = {INV_KIND_KEY, INV_MODE_HARD, "cc:bound", 8};
  inv_client_reply_t r;
  uint32_t ids[4];
  int rc, i, got = 0, ok = 0;
  if (do_connect(host, port, NULL, 4, &c) != 0) return 1;
  for (i = 0; i < 4; i++) {
    rc = inv_client_send_invalidate(c, &ev, 1, &ids[i]);
    if (rc != 0) FAIL("send %d: %s", i, inv_err_name(rc));
  }
  rc = inv_client_send_invalidate(c, &ev, 1, NULL);
  if (rc != INV_EBUSY)
    FAIL("a fifth request gave %s, not EBUSY", inv_err_name(rc));
  if (strstr(inv_client_errstr(c), "waiting for replies") == NULL)
    FAIL("unclear EBUSY message: %s", inv_client_errstr(c));
  /* A blocking call while four replies are pending: they are kept. */
  rc = inv_client_ping(c);
  if (rc != 0) FAIL("ping among pipelined requests: %s", inv_err_name(rc));
  rc = inv_client_notify_invalidate(c, &ev, 1);
  if (rc != 0) FAIL("notify: %s", inv_err_name(rc));
  for (i = 0; i < 4; i++) {
    int j, match = 0;
    rc = inv_client_next_reply(c, 5000, &r);
    if (rc != 0) FAIL("next_reply %d: %s", i, inv_err_name(rc));
    for (j = 0; j < 4; j++) match |= r.msgid == ids[j];
    if (!match || !r.has_ack || r.ack.accepted != 1)
      FAIL("unexpected reply msgid %" PRIu32, r.msgid);
    got++;
  }
  rc = inv_client_next_reply(c, 100, &r);
  if (rc != INV_EINVAL)
    FAIL("next_reply with nothing outstanding: %s", inv_err_name(rc));
  /* The notification was never answered; the connection still works. */
  rc = inv_client_ping(c);
  if (rc != 0) FAIL("ping after notify: %s", inv_err_name(rc));
  printf("{\"replies\": %d, \"ebusy\": true}\n", got);
  ok = 1;
out:
  inv_client_close(c);
  return ok ? 0 : 1;
}

static int mode_errors(const char *host, int port) {
  inv_client_t *c = NULL;
  inv_event_t ev = {INV_KIND_KEY, INV_MODE_HARD, "", 0};
  inv_client_ack_t ack;
  inv_client_result_t *res = NULL;
  int rc, ok = 0;
  if (do_connect(host, port, NULL, 0, &c) != 0) return 1;
  rc = inv_client_invalidate(c, &ev, 1, &ack);
  if (rc != INV_EINVAL) FAIL("empty target gave %s", inv_err_name(rc));
  if (strcmp(inv_client_errname(c), "EINVAL") != 0 ||
      strstr(inv_client_errstr(c), "empty") == NULL)
    FAIL("error %s: %s", inv_client_errname(c), inv_client_errstr(c));
  printf("{\"code\": \"%s\", \"message\": \"%s\"", inv_client_errname(c),
         inv_client_errstr(c));
  rc = inv_client_call(c, "nosuch", NULL, 0, &res);
  if (rc != INV_ENOMETHOD || res != NULL)
    FAIL("nosuch gave %s", inv_err_name(rc));
  /* The connection survives error replies. */
  ev.target = "cc:ok";
  ev.target_len = 5;
  rc = inv_client_invalidate(c, &ev, 1, &ack);
  if (rc != 0 || ack.accepted != 1 || ack.id[0] == '\0')
    FAIL("invalidate after errors: %s", inv_err_name(rc));
  rc = inv_client_stats(c, &res);
  if (rc != 0 || inv_client_result_obj(res)->type != MSGPACK_OBJECT_MAP)
    FAIL("stats: %s", inv_err_name(rc));
  inv_client_result_free(res);
  if (!ack_ids_ok(&ack)) FAIL("ack id %s is not the newest of its ids", ack.id);
  printf(", \"id\": \"%s\", \"ids\": [", ack.id);
  for (size_t k = 0; k < ack.nids; k++)
    printf("%s[%u, \"%s\"]", k > 0 ? ", " : "", ack.ids[k].shard,
           ack.ids[k].id);
  printf("]}\n");
  ok = 1;
out:
  inv_client_close(c);
  return ok ? 0 : 1;
}

static int mode_connect(const char *host, int port) {
  inv_client_t *c = NULL;
  inv_client_opts_t o;
  char err[256] = "";
  int rc;
  inv_client_opts_default(&o);
  o.connect_timeout_ms = 1000;
  rc = inv_client_connect(host, port, &o, &c, err, sizeof err);
  printf("{\"code\": \"%s\", \"message\": \"%s\"}\n",
         rc == 0 ? "OK" : inv_err_name(rc), err);
  inv_client_close(c);
  inv_client_close(NULL);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 7 && strcmp(argv[1], "pipeline") == 0)
    return mode_pipeline(argv[2], atoi(argv[3]), atol(argv[4]), atol(argv[5]),
                         atol(argv[6]), argc > 7 ? argv[7] : NULL);
  if (argc == 4 && strcmp(argv[1], "bound") == 0)
    return mode_bound(argv[2], atoi(argv[3]));
  if (argc == 4 && strcmp(argv[1], "errors") == 0)
    return mode_errors(argv[2], atoi(argv[3]));
  if (argc == 4 && strcmp(argv[1], "connect") == 0)
    return mode_connect(argv[2], atoi(argv[3]));
  fprintf(stderr,
          "usage: client_check pipeline|bound|errors|connect HOST PORT ...\n");
  return 2;
}
