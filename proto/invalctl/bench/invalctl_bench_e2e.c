/*
 * invalctl bench --e2e: the end-to-end probe. It measures what a cache
 * user cares about, the time from sending an invalidation to the key being
 * gone on its node, with keyevent notifications: each primary announces
 * every DEL and UNLINK it executes on __keyevent@0__:<command> (and a
 * soft invalidation's RENAME of the key to its stale copy on
 * __keyevent@0__:rename_from), so the probe learns the moment a key went
 * without polling for it. The probe
 * seeds its keys with pipelined SETs on the owning primaries first.
 *
 * Blocking connections (proto/client/redis_sync.h: plain or TLS, AUTH as an ACL
 * user) are enough here: commands run before the load starts and after it
 * ends, and the subscriber sockets are only read when poll() says they
 * are readable.
 */
#include <stdlib.h>
#include <string.h>

#include "common/base/addr.h"
#include "common/redis/cluster_reply.h"
#include "common/base/config.h"
#include "common/base/slot.h"
#include "proto/invalctl/bench/invalctl_bench.h"
#include "proto/client/redis_sync.h"

#define SEED_BATCH 1000
#define MAX_PRIMARIES 64

typedef struct node_s {
  char host[256];
  int port;
  inv_redis_sync_t *cmd; /* commands: CONFIG, SET */
  inv_redis_sync_t *sub; /* the keyevent subscription */
  char old_flags[64];    /* notify-keyspace-events before we changed it */
  int flags_changed;
  size_t pending; /* SETs appended without their replies read */
} node_t;

struct inv_bench_e2e_s {
  inv_bench_e2e_opts_t opts;
  char prefix[200]; /* "<key_prefix>e2e:" */
  size_t prefix_len;
  int is_cluster;
  node_t nodes[MAX_PRIMARIES];
  size_t nnodes;
  uint16_t owner[INV_SLOTS]; /* slot -> index into nodes */
  uint64_t *sent_us;         /* per event: when it was sent, 0: not yet */
  unsigned char *gone;       /* per event: its key was reported gone */
  uint64_t ngone, early;
  inv_latency_t lat;
};

/* Connects to one node with the probe's credentials and TLS settings.
 * Returns the connection, or NULL with err ("redis: TLS to HOST:PORT:
 * certificate verify failed: ...", in redis_sync's words, which name the
 * node). */
static inv_redis_sync_t *connect_node(const inv_bench_e2e_t *e,
                                      const char *host, int port, char *err,
                                      size_t errlen) {
  inv_redis_sync_opts_t so = {e->opts.timeout_ms, e->opts.username,
                              e->opts.password, e->opts.tls};
  inv_redis_sync_t *c = NULL;
  char why[400];
  if (inv_redis_sync_connect(host, port, &so, &c, why, sizeof why) != 0) {
    snprintf(err, errlen, "redis: %s", why);
    return NULL;
  }
  return c;
}

/* Sends one command of NUL-terminated arguments on c and waits for its
 * reply. Returns the reply, which may be an error reply when errors_ok,
 * or NULL with err (an I/O failure, or an error reply otherwise: Redis's
 * own words, so that a NOPERM names the command the ACL user lacks). */
static redisReply *command(inv_redis_sync_t *c, const char *host, int port,
                           int errors_ok, char *err, size_t errlen, int argc,
                           const char **argv) {
  redisReply *r = NULL;
  if (inv_redis_sync_command(c, argc, argv, NULL, &r) != 0) {
    snprintf(err, errlen, "redis: %s", inv_redis_sync_errstr(c));
    return NULL;
  }
  if (r->type == REDIS_REPLY_ERROR && !errors_ok) {
    snprintf(err, errlen, "redis %s:%d: %s: %s", host, port, argv[0], r->str);
    freeReplyObject(r);
    return NULL;
  }
  return r;
}

/* Adds a primary (once) and returns its index, or -1 when full. */
static int add_node(inv_bench_e2e_t *e, const char *host, int port) {
  size_t i;
  for (i = 0; i < e->nnodes; i++)
    if (e->nodes[i].port == port && strcmp(e->nodes[i].host, host) == 0)
      return (int)i;
  if (e->nnodes >= MAX_PRIMARIES) return -1;
  snprintf(e->nodes[e->nnodes].host, sizeof e->nodes[0].host, "%s", host);
  e->nodes[e->nnodes].port = port;
  return (int)e->nnodes++;
}

/* A CLUSTER SLOTS answer being taken into the primaries and slot owners. */
typedef struct slots_take_s {
  inv_bench_e2e_t *e;
  const inv_addr_t *seed; /* the node that answered */
} slots_take_t;

/* Gives the range's slots to its primary. A primary past MAX_PRIMARIES
 * leaves its slots without an owner, which take_slots reports. */
static int take_range(const inv_cluster_range_t *range, void *data) {
  slots_take_t *t = data;
  char host[INV_CLUSTER_HOST_MAX];
  unsigned s;
  int idx;
  inv_cluster_node_host(&range->primary, t->seed->host, host);
  idx = add_node(t->e, host, range->primary.port);
  if (idx < 0) return 0;
  for (s = range->lo; s <= range->hi; s++) t->e->owner[s] = (uint16_t)idx;
  return 0;
}

/* Takes CLUSTER SLOTS's answer into the primaries and the slot owners.
 * Returns 0, or -1 with err when the answer is malformed or a slot has no
 * owner. */
static int take_slots(inv_bench_e2e_t *e, const inv_addr_t *seed,
                      const redisReply *r, char *err, size_t errlen) {
  slots_take_t t = {e, seed};
  char why[200];
  unsigned s;
  e->is_cluster = 1;
  for (s = 0; s < INV_SLOTS; s++) e->owner[s] = UINT16_MAX;
  if (inv_cluster_slots_each(r, take_range, &t, why, sizeof why) != 0) {
    snprintf(err, errlen, "redis %s:%d: %s", seed->host, seed->port, why);
    return -1;
  }
  for (s = 0; s < INV_SLOTS; s++) {
    if (e->owner[s] == UINT16_MAX) {
      snprintf(err, errlen, "the cluster does not cover slot %u", s);
      return -1;
    }
  }
  return 0;
}

/* Reads the topology from one seed: CLUSTER SLOTS, or the seed itself when
 * cluster support is disabled. Any other error reply (a NOPERM for an ACL
 * user without +cluster|slots) is reported, not taken for a standalone
 * server. Returns 0 or -1 with err. */
static int discover(inv_bench_e2e_t *e, const inv_addr_t *seed, char *err,
                    size_t errlen) {
  static const char *const slots_argv[] = {"CLUSTER", "SLOTS"};
  inv_redis_sync_t *c = connect_node(e, seed->host, seed->port, err, errlen);
  redisReply *r;
  int rc = 0;
  if (c == NULL) return -1;
  r = command(c, seed->host, seed->port, 1, err, errlen, 2,
              (const char **)slots_argv);
  inv_redis_sync_free(c);
  if (r == NULL) return -1;
  if (r->type == REDIS_REPLY_ERROR) {
    if (strstr(r->str, "cluster support disabled") != NULL) {
      /* A standalone server owns every slot. */
      e->is_cluster = 0;
      add_node(e, seed->host, seed->port);
      memset(e->owner, 0, sizeof e->owner);
    } else {
      snprintf(err, errlen, "redis %s:%d: CLUSTER SLOTS: %s", seed->host,
               seed->port, r->str);
      rc = -1;
    }
  } else {
    rc = take_slots(e, seed, r, err, errlen);
  }
  freeReplyObject(r);
  return rc;
}

/* Reports the error reply r of node n (and frees it). Returns -1. */
static int error_reply(const node_t *n, const char *what, redisReply *r,
                       char *err, size_t errlen) {
  snprintf(err, errlen, "redis %s:%d: %s: %s", n->host, n->port, what, r->str);
  freeReplyObject(r);
  return -1;
}

/* Turns on E (keyevent) and g (generic commands) on the node, keeping the
 * flags it had, and subscribes to the del, unlink and rename_from events. */
static int watch_node(inv_bench_e2e_t *e, node_t *n, char *err, size_t errlen) {
  const char *get_argv[] = {"CONFIG", "GET", "notify-keyspace-events"};
  const char *set_argv[] = {"CONFIG", "SET", "notify-keyspace-events", NULL};
  const char *sub_argv[] = {"SUBSCRIBE", "__keyevent@0__:del",
                            "__keyevent@0__:unlink",
                            "__keyevent@0__:rename_from"};
  redisReply *r;
  char flags[80];
  int i;
  r = command(n->cmd, n->host, n->port, 0, err, errlen, 3, get_argv);
  if (r == NULL) return -1;
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
      r->element[1]->type == REDIS_REPLY_STRING)
    snprintf(n->old_flags, sizeof n->old_flags, "%s", r->element[1]->str);
  freeReplyObject(r);
  snprintf(flags, sizeof flags, "%s%s%s", n->old_flags,
           strchr(n->old_flags, 'E') ? "" : "E",
           strchr(n->old_flags, 'g') || strchr(n->old_flags, 'A') ? "" : "g");
  if (strcmp(flags, n->old_flags) != 0) {
    set_argv[3] = flags;
    r = command(n->cmd, n->host, n->port, 0, err, errlen, 4, set_argv);
    if (r == NULL) return -1;
    freeReplyObject(r);
    n->flags_changed = 1;
  }
  n->sub = connect_node(e, n->host, n->port, err, errlen);
  if (n->sub == NULL) return -1;
  if (inv_redis_sync_append(n->sub, 4, sub_argv, NULL) != 0) {
    snprintf(err, errlen, "redis %s:%d: out of memory", n->host, n->port);
    return -1;
  }
  /* One confirmation per channel; an ACL user without the channels gets
   * a NOPERM here, before any load is sent. */
  for (i = 0; i < 3; i++) {
    r = NULL;
    if (inv_redis_sync_reply(n->sub, -1, &r) != 1) {
      snprintf(err, errlen, "redis: subscribe: %s",
               inv_redis_sync_errstr(n->sub));
      return -1;
    }
    if (r->type == REDIS_REPLY_ERROR)
      return error_reply(n, "SUBSCRIBE", r, err, errlen);
    freeReplyObject(r);
  }
  return 0;
}

/* Reads the replies of the SETs appended to n. */
static int drain_sets(node_t *n, char *err, size_t errlen) {
  while (n->pending > 0) {
    redisReply *r = NULL;
    if (inv_redis_sync_reply(n->cmd, -1, &r) != 1) {
      snprintf(err, errlen, "redis: seeding: %s",
               inv_redis_sync_errstr(n->cmd));
      return -1;
    }
    n->pending--;
    if (r->type == REDIS_REPLY_ERROR)
      return error_reply(n, "seeding", r, err, errlen);
    freeReplyObject(r);
  }
  return 0;
}

size_t inv__bench_e2e_target(const inv_bench_e2e_t *e, uint64_t i, char *buf,
                             size_t buflen) {
  const char *suffix = e->opts.kind == INV_KIND_PREFIX    ? ":"
                       : e->opts.kind == INV_KIND_PATTERN ? ":*"
                                                          : "";
  int n = snprintf(buf, buflen, "%s%llu%s", e->prefix, (unsigned long long)i,
                   suffix);
  return n < 0 ? 0 : (size_t)n < buflen ? (size_t)n : buflen - 1;
}

/* The seeded key of event i. */
static size_t seeded_key(const inv_bench_e2e_t *e, uint64_t i, char *buf,
                         size_t buflen) {
  int n = snprintf(buf, buflen, "%s%llu%s", e->prefix, (unsigned long long)i,
                   e->opts.kind == INV_KIND_KEY ? "" : ":k");
  return n < 0 ? 0 : (size_t)n < buflen ? (size_t)n : buflen - 1;
}

static int seed(inv_bench_e2e_t *e, char *err, size_t errlen) {
  uint64_t i;
  size_t j;
  char key[256];
  for (i = 0; i < e->opts.nkeys; i++) {
    size_t len = seeded_key(e, i, key, sizeof key);
    node_t *n = &e->nodes[e->owner[inv_key_slot(key, len)]];
    const char *argv[3] = {"SET", key, "1"};
    const size_t lens[3] = {3, len, 1};
    if (inv_redis_sync_append(n->cmd, 3, argv, lens) != 0) {
      snprintf(err, errlen, "out of memory while seeding");
      return -1;
    }
    if (++n->pending >= SEED_BATCH && drain_sets(n, err, errlen) != 0)
      return -1;
  }
  for (j = 0; j < e->nnodes; j++)
    if (drain_sets(&e->nodes[j], err, errlen) != 0) return -1;
  return 0;
}

int inv__bench_e2e_start(const inv_bench_e2e_opts_t *opts,
                         inv_bench_e2e_t **out, char *err, size_t errlen) {
  inv_bench_e2e_t *e;
  size_t i;
  int rc = -1;
  *out = NULL;
  e = calloc(1, sizeof *e);
  if (e == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  e->opts = *opts;
  snprintf(e->prefix, sizeof e->prefix, "%se2e:", opts->key_prefix);
  e->prefix_len = strlen(e->prefix);
  e->sent_us = calloc(opts->nkeys > 0 ? opts->nkeys : 1, sizeof *e->sent_us);
  e->gone = calloc(opts->nkeys > 0 ? opts->nkeys : 1, 1);
  if (e->sent_us == NULL || e->gone == NULL) {
    snprintf(err, errlen, "out of memory for %llu keys",
             (unsigned long long)opts->nkeys);
    goto done;
  }
  /* The first seed that answers tells the topology. */
  for (i = 0; i < opts->nseeds; i++) {
    inv_addr_t a;
    if (inv_addr_parse(opts->seeds[i], &a) != 0) {
      snprintf(err, errlen, "--redis wants HOST:PORT, not \"%s\"",
               opts->seeds[i]);
      goto done;
    }
    if (discover(e, &a, err, errlen) == 0) break;
  }
  if (e->nnodes == 0) goto done;
  for (i = 0; i < e->nnodes; i++) {
    node_t *n = &e->nodes[i];
    n->cmd = connect_node(e, n->host, n->port, err, errlen);
    if (n->cmd == NULL || watch_node(e, n, err, errlen) != 0) goto done;
  }
  if (seed(e, err, errlen) != 0) goto done;
  rc = 0;
done:
  if (rc != 0) {
    inv__bench_e2e_free(e);
    return rc;
  }
  *out = e;
  return 0;
}

void inv__bench_e2e_free(inv_bench_e2e_t *e) {
  size_t i;
  if (e == NULL) return;
  for (i = 0; i < e->nnodes; i++) {
    node_t *n = &e->nodes[i];
    if (n->flags_changed && n->cmd != NULL) {
      /* A connection that broke gives its error here, and the setting
       * stays as the probe left it: nothing better can be done. */
      const char *argv[] = {"CONFIG", "SET", "notify-keyspace-events",
                            n->old_flags};
      redisReply *r = NULL;
      if (inv_redis_sync_command(n->cmd, 4, argv, NULL, &r) == 0)
        freeReplyObject(r);
    }
    inv_redis_sync_free(n->cmd);
    inv_redis_sync_free(n->sub);
  }
  free(e->sent_us);
  free(e->gone);
  free(e);
}

void inv__bench_e2e_sent(inv_bench_e2e_t *e, uint64_t i, uint64_t now_us) {
  if (i < e->opts.nkeys) e->sent_us[i] = now_us;
}

size_t inv__bench_e2e_pollfds(const inv_bench_e2e_t *e, struct pollfd *pfd,
                              size_t max) {
  size_t i;
  for (i = 0; i < e->nnodes && i < max; i++) {
    pfd[i].fd = inv_redis_sync_fd(e->nodes[i].sub);
    pfd[i].events = POLLIN;
    pfd[i].revents = 0;
  }
  return i;
}

/* Accounts for one notified key. */
static void key_gone(inv_bench_e2e_t *e, const char *key, size_t len,
                     uint64_t now) {
  uint64_t idx = 0;
  size_t p;
  if (len <= e->prefix_len || memcmp(key, e->prefix, e->prefix_len) != 0)
    return;
  for (p = e->prefix_len; p < len && key[p] >= '0' && key[p] <= '9'; p++)
    idx = idx * 10 + (uint64_t)(key[p] - '0');
  if (p == e->prefix_len || idx >= e->opts.nkeys || e->gone[idx]) return;
  if (e->opts.kind == INV_KIND_KEY ? p != len
                                   : len - p != 2 || memcmp(key + p, ":k", 2))
    return;
  if (e->sent_us[idx] == 0) {
    e->early++;
    return;
  }
  e->gone[idx] = 1;
  e->ngone++;
  inv_latency_record(&e->lat,
                     now > e->sent_us[idx] ? now - e->sent_us[idx] : 0);
}

int inv__bench_e2e_read(inv_bench_e2e_t *e, const struct pollfd *pfd, size_t n,
                        char *err, size_t errlen) {
  size_t i;
  for (i = 0; i < n && i < e->nnodes; i++) {
    node_t *nd = &e->nodes[i];
    uint64_t now;
    redisReply *r;
    int rc;
    if (pfd[i].revents == 0) continue;
    if (inv_redis_sync_read(nd->sub) < 0) {
      snprintf(err, errlen, "redis: subscription lost: %s",
               inv_redis_sync_errstr(nd->sub));
      return -1;
    }
    now = inv_now_us();
    while ((rc = inv_redis_sync_reply(nd->sub, 0, &r)) == 1) {
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
          r->element[2]->type == REDIS_REPLY_STRING)
        key_gone(e, r->element[2]->str, r->element[2]->len, now);
      freeReplyObject(r);
    }
    if (rc < 0) {
      snprintf(err, errlen, "redis: subscription lost: %s",
               inv_redis_sync_errstr(nd->sub));
      return -1;
    }
  }
  return 0;
}

uint64_t inv__bench_e2e_gone(const inv_bench_e2e_t *e) { return e->ngone; }

const inv_latency_t *inv__bench_e2e_latency(const inv_bench_e2e_t *e) {
  return &e->lat;
}

uint64_t inv__bench_e2e_early(const inv_bench_e2e_t *e) { return e->early; }

size_t inv__bench_e2e_primaries(const inv_bench_e2e_t *e) { return e->nnodes; }

int inv__bench_e2e_is_cluster(const inv_bench_e2e_t *e) {
  return e->is_cluster;
}
