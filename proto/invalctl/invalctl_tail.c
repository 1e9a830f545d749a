/*
 * invalctl tail: subscribes to cache:invalidation on one Redis node and
 * prints every event of every payload as it arrives:
 *   ID TS KIND MODE TARGET
 * A blocking connection (proto/client/redis_sync.h: plain or TLS, AUTH with an
 * ACL user) is enough for a command-line tool; replies are awaited in
 * short slices so that SIGINT ends the loop cleanly.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/addr.h"
#include "proto/event.h"
#include "proto/invalctl/invalctl.h"
#include "proto/log_shard.h"
#include "proto/client/redis_sync.h"

#define DEFAULT_REDIS "127.0.0.1:7000"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

/* Writes where ev of broadcast p was logged: "SHARD:ID" of its entry, or
 * "*" for an event logged in every shard (an unpinned prefix or pattern
 * in a cluster) or one whose entry the broadcast does not name. With a
 * single entry every event is in it (a standalone server logs all events
 * in shard 0). */
static void event_entry(const inv_payload_t *p, const inv_event_t *ev,
                        char *out, size_t outlen) {
  int shard = p->nids == 1 ? (int)p->ids[0].shard : inv_log_event_shard(ev);
  for (size_t k = 0; shard >= 0 && k < p->nids; k++) {
    if (p->ids[k].shard == (unsigned)shard) {
      snprintf(out, outlen, "%u:%s", p->ids[k].shard, p->ids[k].id);
      return;
    }
  }
  snprintf(out, outlen, "*");
}

/* Prints the events of one payload, at most max of them; a payload we
 * cannot decode gets a warning line instead. Returns the events printed
 * (an undecodable payload counts as one line). */
static uint64_t print_payload(const char *data, size_t len, uint64_t max) {
  inv_payload_t p;
  char why[128], ts[40], entry[64];
  size_t i;
  memset(&p, 0, sizeof p);
  if (inv_payload_decode(data, len, &p, why, sizeof why) != 0) {
    printf("warning: undecodable payload (%zu bytes): %s\n", len, why);
    inv_payload_destroy(&p);
    fflush(stdout);
    return 1;
  }
  inv__ctl_format_ts(p.ts_ms, ts, sizeof ts);
  for (i = 0; i < p.nevents && i < max; i++) {
    const inv_event_t *ev = &p.events[i];
    event_entry(&p, ev, entry, sizeof entry);
    printf("%s %s %s %s ", entry, ts, inv_kind_name(ev->kind),
           inv_mode_name(ev->mode));
    inv__ctl_print_escaped(stdout, ev->target, ev->target_len);
    fputc('\n', stdout);
  }
  if (p.nevents == 0) printf("- %s (no events)\n", ts);
  fflush(stdout);
  inv_payload_destroy(&p);
  return i;
}

/* Waits for the next reply, checking for SIGINT. Returns 1 with *reply,
 * 0 when interrupted, -1 on a connection error (printed). */
static int next_reply(inv_redis_sync_t *rc, redisReply **reply) {
  for (;;) {
    int r = inv_redis_sync_reply(rc, 250, reply);
    if (r == 1) return 1;
    if (r < 0) {
      fprintf(stderr, "error: redis: %s\n", inv_redis_sync_errstr(rc));
      return -1;
    }
    if (interrupted) return 0;
  }
}

static int run(const inv_ctl_opts_t *opts, int argc, char **argv) {
  const char *node = getenv("INVAL_REDIS");
  inv_addr_t addr;
  uint64_t count = 0, seen = 0;
  inv_redis_sync_t *rc;
  redisReply *reply;
  struct sigaction sa;
  inv_ctl_redis_t rds = {0};
  char err[512];
  int i, taken, exit_code = INV_CTL_EXIT_OK;
  if (node == NULL || *node == '\0') node = DEFAULT_REDIS;
  for (i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "-r") == 0 || strcmp(argv[i], "--redis") == 0) &&
        i + 1 < argc) {
      node = argv[++i];
    } else if ((taken = inv__ctl_redis_opt("tail", argc, argv, &i, &rds)) !=
               0) {
      if (taken < 0) return INV_CTL_EXIT_USAGE;
    } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
      if (inv__ctl_parse_uint(argv[++i], UINT64_MAX, &count) != 0 || count == 0)
        return inv__ctl_usage_error("tail", "--count wants a positive number");
    } else {
      return inv__ctl_usage_error("tail", "unexpected argument %s", argv[i]);
    }
  }
  if (inv_addr_parse(node, &addr) != 0)
    return inv__ctl_usage_error("tail", "-r wants HOST:PORT, not \"%s\"", node);

  if ((exit_code = inv__ctl_redis_setup(&rds)) != 0) return exit_code;
  {
    inv_redis_sync_opts_t so = {opts->timeout_ms, rds.user, rds.password,
                                rds.tls_ctx};
    int crc =
        inv_redis_sync_connect(addr.host, addr.port, &so, &rc, err, sizeof err);
    inv__ctl_redis_free(&rds);
    if (crc != 0) {
      fprintf(stderr, "error: cannot connect to %s:%d: %s\n", addr.host,
              addr.port, err);
      return INV_CTL_EXIT_CONNECT;
    }
  }
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  {
    const char *argv2[2] = {"SUBSCRIBE", INV_CHANNEL};
    size_t lens[2] = {9, strlen(INV_CHANNEL)};
    if (inv_redis_sync_append(rc, 2, argv2, lens) != 0) {
      fprintf(stderr, "error: out of memory\n");
      inv_redis_sync_free(rc);
      return INV_CTL_EXIT_CONNECT;
    }
  }
  while (count == 0 || seen < count) {
    int r = next_reply(rc, &reply);
    if (r <= 0) {
      exit_code = r < 0 ? INV_CTL_EXIT_CONNECT : INV_CTL_EXIT_OK;
      break;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      fprintf(stderr, "error: redis: %s\n", reply->str);
      freeReplyObject(reply);
      exit_code = INV_CTL_EXIT_SERVER;
      break;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[0]->type == REDIS_REPLY_STRING) {
      const char *kind = reply->element[0]->str;
      if (strcmp(kind, "subscribe") == 0) {
        fprintf(stderr, "subscribed to %s on %s:%d\n", INV_CHANNEL, addr.host,
                addr.port);
      } else if (strcmp(kind, "message") == 0 &&
                 reply->element[2]->type == REDIS_REPLY_STRING) {
        seen += print_payload(reply->element[2]->str, reply->element[2]->len,
                              count > 0 ? count - seen : UINT64_MAX);
      }
    }
    freeReplyObject(reply);
  }
  if (interrupted)
    fprintf(stderr, "interrupted after %llu events\n",
            (unsigned long long)seen);
  inv_redis_sync_free(rc);
  return exit_code;
}

const inv_ctl_cmd_t inv__ctl_cmd_tail = {
    "tail", "print the events broadcast on cache:invalidation, live",
    "Usage: invalctl [OPTIONS] tail [-r HOST:PORT] [--count N]\n"
    "\n"
    "Subscribes to the broadcast cache:invalidation on one Redis node\n"
    "(classic PUBLISH reaches every node of a cluster) and prints one line\n"
    "per event:\n"
    "  ENTRY TS KIND MODE TARGET\n"
    "ENTRY is the log shard entry that holds the event, SHARD:ID (from the\n"
    "broadcast's \"ids\"), or * for an event logged in every shard (a prefix\n"
    "or pattern not pinned to one slot, in a cluster); TS the publish time\n"
    "(UTC); TARGET escaped (\\xNN) where a byte is not printable. A payload\n"
    "that cannot be decoded (another version, another producer's bytes)\n"
    "prints a \"warning: undecodable payload\" line instead. The broadcast is\n"
    "at most once: a consumer that must not miss an event reads the shard\n"
    "streams (proto/PROTOCOL.md section 11). Ctrl-C stops.\n"
    "\n"
    "  -r, --redis HOST:PORT  the Redis node (default " DEFAULT_REDIS
    ", or $INVAL_REDIS)\n"
    "  --count N              stop after N events (lines), even in the middle\n"
    "                         of a message\n" INV_CTL_REDIS_USAGE
    "\n"
    "Exit codes: 0 stopped (--count reached or Ctrl-C), 1 Redis replied with\n"
    "an error, 2 usage, 3 cannot connect or the connection was lost.\n",
    run};
