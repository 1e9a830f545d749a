/*
 * The synchronous Redis router of the read path (see cache_redis.h).
 */
#include "proto/client/cache_redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/addr.h"
#include "common/redis/cluster_reply.h"
#include "common/base/config.h"
#include "inval/errors.h"
#include "common/base/slot.h"
#include "common/tls/tls.h"
#include "proto/client/redis_sync.h"

#define MAX_NODES 1024
#define MAX_REDIRECTS 16
#define MAX_BUSY_RETRIES 40 /* TRYAGAIN / CLUSTERDOWN, 50 ms apart */

typedef struct node_s {
  inv_addr_t addr;
  inv_redis_sync_t *c; /* NULL until needed, and after an I/O error */
} node_t;

struct inv_cache_redis_s {
  int cluster;
  int timeout_ms;
  char *password;
  char *username;
  inv_tls_ctx_t *tls; /* a reference, or NULL: plain TCP */
  node_t *nodes;
  size_t nnodes;
  short slots[INV_SLOTS]; /* node index of each slot, -1 unknown */
  uint64_t redirects;     /* MOVED and ASK replies followed */
  char errstr[256];
};

static void set_err(inv_cache_redis_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records the last error message (truncated to errstr's size). */
static void set_err(inv_cache_redis_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->errstr, sizeof(r->errstr), fmt, ap);
  va_end(ap);
}

/* Returns the node index for addr, adding it if new; -1 when full. */
static int node_index(inv_cache_redis_t *r, const char *host, int port) {
  for (size_t i = 0; i < r->nnodes; i++)
    if (r->nodes[i].addr.port == port &&
        strcmp(r->nodes[i].addr.host, host) == 0)
      return (int)i;
  if (r->nnodes == MAX_NODES || strlen(host) >= sizeof(r->nodes[0].addr.host))
    return -1;
  node_t *n = &r->nodes[r->nnodes];
  memset(n, 0, sizeof(*n));
  strcpy(n->addr.host, host);
  n->addr.port = port;
  return (int)r->nnodes++;
}

static void drop_conn(node_t *n) {
  inv_redis_sync_free(n->c);
  n->c = NULL;
}

/* Returns the node's connection, connecting (TLS handshake and AUTH
 * included) first if needed; NULL with errstr set on failure. */
static inv_redis_sync_t *conn(inv_cache_redis_t *r, node_t *n) {
  inv_redis_sync_opts_t o = {r->timeout_ms, r->username, r->password, r->tls};
  if (n->c != NULL) return n->c;
  if (inv_redis_sync_connect(n->addr.host, n->addr.port, &o, &n->c, r->errstr,
                             sizeof(r->errstr)) != 0)
    n->c = NULL;
  return n->c;
}

/* A CLUSTER SLOTS reply being taken into the slot map. */
typedef struct map_load_s {
  inv_cache_redis_t *r;
  const char *asked; /* the host of the node that answered */
} map_load_t;

/* Points the range's slots at its primary. A primary that does not fit in
 * the node table leaves its slots unknown, to be asked again. */
static int map_range(const inv_cluster_range_t *range, void *data) {
  map_load_t *l = data;
  char host[INV_CLUSTER_HOST_MAX];
  inv_cluster_node_host(&range->primary, l->asked, host);
  int idx = node_index(l->r, host, range->primary.port);
  if (idx < 0) return 0;
  for (unsigned s = range->lo; s <= range->hi; s++) l->r->slots[s] = (short)idx;
  return 0;
}

/* Reads CLUSTER SLOTS from node i into the slot map. Returns 1 when the
 * node is a cluster node (map filled), 0 when cluster support is disabled,
 * -1 on failure (a malformed reply leaves the map as it was). */
static int load_map(inv_cache_redis_t *r, int i) {
  static const char *argv[2] = {"CLUSTER", "SLOTS"};
  static const size_t lens[2] = {7, 5};
  inv_redis_sync_t *c = conn(r, &r->nodes[i]);
  if (c == NULL) return -1;
  redisReply *rep = NULL;
  if (inv_redis_sync_command(c, 2, argv, lens, &rep) != 0) {
    set_err(r, "CLUSTER SLOTS: %s", inv_redis_sync_errstr(c));
    drop_conn(&r->nodes[i]);
    return -1;
  }
  int rc = -1;
  char why[200];
  map_load_t l = {r, r->nodes[i].addr.host};
  if (rep->type == REDIS_REPLY_ERROR) {
    if (strstr(rep->str, "cluster support disabled") != NULL)
      rc = 0;
    else
      set_err(r, "CLUSTER SLOTS: %s", rep->str);
  } else if (inv_cluster_slots_each(rep, NULL, NULL, why, sizeof(why)) != 0) {
    set_err(r, "%s:%d: %s", l.asked, r->nodes[i].addr.port, why);
  } else {
    for (size_t s = 0; s < INV_SLOTS; s++) r->slots[s] = -1;
    (void)inv_cluster_slots_each(rep, map_range, &l, NULL, 0);
    rc = 1;
  }
  freeReplyObject(rep);
  return rc;
}

/* Refreshes the map from any node that answers. Returns 0 or -1. */
static int refresh_map(inv_cache_redis_t *r) {
  for (size_t i = 0; i < r->nnodes; i++)
    if (load_map(r, (int)i) == 1) return 0;
  return -1;
}

int inv_cache_redis_open(const char *const *seeds, size_t nseeds,
                         const inv_cache_redis_opts_t *opts,
                         inv_cache_redis_t **out, char *err, size_t errlen) {
  inv_cache_redis_t *r = calloc(1, sizeof(*r));
  int rc = INV_ENOMEM;
  if (r == NULL || (r->nodes = calloc(MAX_NODES, sizeof(node_t))) == NULL)
    goto err;
  r->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 2000;
  if (opts && opts->password && (r->password = strdup(opts->password)) == NULL)
    goto err;
  if (opts && opts->username && (r->username = strdup(opts->username)) == NULL)
    goto err;
  if (opts && opts->tls) r->tls = inv_tls_ctx_ref(opts->tls);
  rc = INV_EINVAL;
  if (nseeds == 0) {
    set_err(r, "no Redis address given");
    goto err;
  }
  for (size_t i = 0; i < nseeds; i++) {
    inv_addr_t a;
    if (inv_addr_parse(seeds[i], &a) != 0) {
      set_err(r, "bad Redis address \"%s\" (want HOST:PORT)", seeds[i]);
      goto err;
    }
    if (node_index(r, a.host, a.port) < 0) goto err;
  }
  rc = INV_ECONNREFUSED;
  for (size_t i = 0; i < nseeds; i++) {
    int m = load_map(r, (int)i);
    if (m < 0) continue;
    r->cluster = m;
    if (!m) {
      /* Standalone: the seed that answered is the only node. */
      node_t keep = r->nodes[i];
      for (size_t j = 0; j < r->nnodes; j++)
        if (j != i) drop_conn(&r->nodes[j]);
      r->nodes[0] = keep;
      r->nnodes = 1;
    }
    *out = r;
    return 0;
  }
err:
  if (err && errlen)
    snprintf(err, errlen, "%s", r ? r->errstr : "out of memory");
  inv_cache_redis_close(r);
  return rc;
}

void inv_cache_redis_close(inv_cache_redis_t *r) {
  if (r == NULL) return;
  if (r->nodes)
    for (size_t i = 0; i < r->nnodes; i++) drop_conn(&r->nodes[i]);
  free(r->nodes);
  free(r->password);
  free(r->username);
  inv_tls_ctx_free(r->tls);
  free(r);
}

int inv_cache_redis_is_cluster(const inv_cache_redis_t *r) {
  return r->cluster;
}

const char *inv_cache_redis_errstr(const inv_cache_redis_t *r) {
  return r->errstr;
}

uint64_t inv_cache_redis_redirects(const inv_cache_redis_t *r) {
  return r->redirects;
}

static int starts(const redisReply *rep, const char *prefix) {
  return rep->type == REDIS_REPLY_ERROR &&
         strncmp(rep->str, prefix, strlen(prefix)) == 0;
}

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Sends the command (after ASKING when asking) on node n and reads its
 * reply. Returns the reply, or NULL (connection dropped, errstr set). */
static redisReply *send_on(inv_cache_redis_t *r, node_t *n, int asking,
                           int argc, const char **argv, const size_t *lens) {
  static const char *ask_argv[1] = {"ASKING"};
  static const size_t ask_len[1] = {6};
  inv_redis_sync_t *c = conn(r, n);
  if (c == NULL) return NULL;
  redisReply *rep = NULL;
  if (asking && inv_redis_sync_append(c, 1, ask_argv, ask_len) != 0) goto io;
  if (inv_redis_sync_append(c, argc, argv, lens) != 0) goto io;
  if (asking) {
    if (inv_redis_sync_reply(c, -1, &rep) != 1) goto io;
    freeReplyObject(rep);
    rep = NULL;
  }
  if (inv_redis_sync_reply(c, -1, &rep) != 1) goto io;
  return rep;
io:
  set_err(r, "redis %s", inv_redis_sync_errstr(c));
  drop_conn(n);
  return NULL;
}

int inv_cache_redis_command(inv_cache_redis_t *r, const char *key,
                            size_t keylen, int argc, const char **argv,
                            const size_t *lens, redisReply **reply) {
  unsigned slot = inv_key_slot(key, keylen);
  int asking = 0, ask_node = -1, reconnected = 0, busy = 0;
  for (int attempt = 0; attempt < MAX_REDIRECTS;) {
    int idx = 0;
    if (r->cluster) {
      idx = ask_node >= 0 ? ask_node : r->slots[slot];
      if (idx < 0) {
        if (refresh_map(r) != 0 || r->slots[slot] < 0) {
          attempt++;
          pause_ms(50);
          continue;
        }
        idx = r->slots[slot];
      }
    }
    redisReply *rep = send_on(r, &r->nodes[idx], asking, argc, argv, lens);
    asking = 0;
    ask_node = -1;
    if (rep == NULL) {
      /* Reconnect once: a restarted node or a failover. */
      if (reconnected++) return INV_EIO;
      attempt++;
      if (r->cluster) refresh_map(r);
      continue;
    }
    if (rep->type == REDIS_REPLY_ERROR && r->cluster) {
      inv_cluster_redirect_t rd;
      if (inv_cluster_redirect_parse(rep, &rd) == 1) {
        /* An empty host is the node that answered. */
        int to = rd.host[0] != '\0'
                     ? node_index(r, rd.host, rd.port)
                     : node_index(r, r->nodes[idx].addr.host, rd.port);
        freeReplyObject(rep);
        if (to < 0) return INV_ENOMEM;
        r->redirects++;
        attempt++;
        if (rd.ask) {
          asking = 1;
          ask_node = to;
        } else {
          r->slots[slot] = (short)to;
        }
        continue;
      }
      /* A multi-key command whose keys are split by a migration in
       * progress (TRYAGAIN), or a cluster electing a new primary. */
      if ((starts(rep, "TRYAGAIN") || starts(rep, "CLUSTERDOWN")) &&
          busy++ < MAX_BUSY_RETRIES) {
        freeReplyObject(rep);
        pause_ms(50);
        continue;
      }
    }
    *reply = rep;
    return 0;
  }
  set_err(r, "too many redirections for one command");
  return INV_EREDIS;
}

/* 1 when a pipelined reply must be sent again through
 * inv_cache_redis_command, which follows redirections and waits out a
 * busy cluster. */
static int needs_resend(const inv_cache_redis_t *r, const redisReply *rep) {
  return r->cluster && rep->type == REDIS_REPLY_ERROR &&
         (starts(rep, "MOVED ") || starts(rep, "ASK ") ||
          starts(rep, "TRYAGAIN") || starts(rep, "CLUSTERDOWN"));
}

/* Writes the n commands to node nd at once and reads their replies in
 * order, keeping them in replies[] up to the first that needs_resend (that
 * one and the rest are freed). Returns how many were kept: fewer than n
 * after such a reply or a lost connection (dropped, errstr set). */
static int pipeline_on(inv_cache_redis_t *r, node_t *nd, int n, const int *argc,
                       const char **const *argv, const size_t *const *lens,
                       redisReply **replies) {
  int kept = 0, stop = 0;
  inv_redis_sync_t *c = conn(r, nd);
  if (c == NULL) return 0;
  for (int i = 0; i < n; i++)
    if (inv_redis_sync_append(c, argc[i], argv[i], lens[i]) != 0) goto io;
  for (int i = 0; i < n; i++) {
    redisReply *rep = NULL;
    if (inv_redis_sync_reply(c, -1, &rep) != 1) goto io;
    if (stop || needs_resend(r, rep)) {
      stop = 1;
      freeReplyObject(rep);
      continue;
    }
    replies[kept++] = rep;
  }
  return kept;
io:
  set_err(r, "redis %s", inv_redis_sync_errstr(c));
  drop_conn(nd);
  return kept;
}

int inv_cache_redis_pipeline(inv_cache_redis_t *r, const char *key,
                             size_t keylen, int n, const int *argc,
                             const char **const *argv,
                             const size_t *const *lens, redisReply **replies) {
  if (n < 1 || n > INV_CACHE_PIPELINE_MAX) return INV_EINVAL;
  int done = 0;
  short idx = r->cluster ? r->slots[inv_key_slot(key, keylen)] : 0;
  /* An unknown slot owner is left to inv_cache_redis_command to find. */
  if (idx >= 0)
    done = pipeline_on(r, &r->nodes[idx], n, argc, argv, lens, replies);
  for (; done < n; done++) {
    int rc = inv_cache_redis_command(r, key, keylen, argc[done], argv[done],
                                     lens[done], &replies[done]);
    if (rc != 0) {
      while (done-- > 0) freeReplyObject(replies[done]);
      return rc;
    }
  }
  return 0;
}

int inv_cache_redis_eval(inv_cache_redis_t *r, const inv_script_t *s, int nkeys,
                         const char **keys, const size_t *klens, int nargs,
                         const char **args, const size_t *alens,
                         redisReply **reply) {
  enum { MAX_ARGS = 16 };
  const char *argv[MAX_ARGS];
  size_t lens[MAX_ARGS];
  char nk[16];
  if (nkeys < 1 || 3 + nkeys + nargs > MAX_ARGS) return INV_EINVAL;
  snprintf(nk, sizeof(nk), "%d", nkeys);
  argv[0] = "EVALSHA";
  lens[0] = 7;
  argv[1] = s->sha;
  lens[1] = strlen(s->sha);
  argv[2] = nk;
  lens[2] = strlen(nk);
  for (int i = 0; i < nkeys; i++) {
    argv[3 + i] = keys[i];
    lens[3 + i] = klens[i];
  }
  for (int i = 0; i < nargs; i++) {
    argv[3 + nkeys + i] = args[i];
    lens[3 + nkeys + i] = alens[i];
  }
  int argc = 3 + nkeys + nargs;
  int rc =
      inv_cache_redis_command(r, keys[0], klens[0], argc, argv, lens, reply);
  if (rc != 0 || !starts(*reply, "NOSCRIPT")) return rc;
  freeReplyObject(*reply);
  *reply = NULL;
  argv[0] = "EVAL";
  lens[0] = 4;
  argv[1] = s->src;
  lens[1] = s->len;
  return inv_cache_redis_command(r, keys[0], klens[0], argc, argv, lens, reply);
}
