/*
 * The node health poller (node_health.h). The figures of a poll are built in
 * a scratch copy and published only when INFO (and, on a cluster node,
 * CLUSTER INFO) answered, so the exported figures always come from one
 * complete poll; a failed poll only sets up to 0 and counts an error.
 */
#include "workers/node_health.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/log.h"
#include "common/base/stats.h"
#include "proto/codec.h"

#define NH_PREFIX "inval_node"

struct inv_node_health_s {
  uv_timer_t timer;
  inv_redis_t *conn;
  inv_node_figures_t fig;     /* the last complete poll */
  inv_node_figures_t scratch; /* the poll in progress */
  int pending;                /* poller commands not yet answered */
  int closing;
  int timer_open;
  void (*closed_cb)(void *);
  void *closed_data;
};

static const inv_stat_desc_t nh_metrics[] = {
#define NH_METRIC(key, metric, type, help) \
  {#metric, INV_STAT_##type, offsetof(inv_node_figures_t, key), help},
    INV_NODE_HEALTH_MAP(NH_METRIC)
#undef NH_METRIC
};

static const inv_stat_desc_t nh_keys[] = {
#define NH_KEY(key, metric, type, help) \
  {#key, INV_STAT_##type, offsetof(inv_node_figures_t, key), help},
    INV_NODE_HEALTH_MAP(NH_KEY)
#undef NH_KEY
};

#define NH_NSTATS (sizeof(nh_keys) / sizeof(nh_keys[0]))

/* Calls the close callback once nothing of nh is outstanding. */
static void nh_maybe_free(inv_node_health_t *nh) {
  if (!nh->closing || nh->timer_open || nh->pending > 0) return;
  void (*cb)(void *) = nh->closed_cb;
  void *data = nh->closed_data;
  free(nh);
  if (cb != NULL) cb(data);
}

/* Calls fn(name, value) for each "name:value" line of an INFO-style text.
 * Values end at "\r\n" or "\n". */
static void each_field(const char *text, size_t len,
                       void (*fn)(const char *name, size_t nlen,
                                  const char *val, size_t vlen, void *arg),
                       void *arg) {
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol != NULL ? eol : end;
    const char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon != NULL && p[0] != '#') {
      const char *v = colon + 1, *ve = line_end;
      if (ve > v && ve[-1] == '\r') ve--;
      fn(p, (size_t)(colon - p), v, (size_t)(ve - v), arg);
    }
    p = eol != NULL ? eol + 1 : end;
  }
}

/* Parses the decimal digits at the start of v[0..n) (0 if none). */
static uint64_t parse_u64(const char *v, size_t n) {
  uint64_t x = 0;
  for (size_t i = 0; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
    uint64_t d = (uint64_t)(v[i] - '0');
    if (x > (UINT64_MAX - d) / 10) return UINT64_MAX;
    x = x * 10 + d;
  }
  return x;
}

static int name_is(const char *name, size_t nlen, const char *want) {
  return nlen == strlen(want) && memcmp(name, want, nlen) == 0;
}

/* Finds "keys=" in a keyspace line such as "keys=3,expires=0,avg_ttl=0". */
static uint64_t keyspace_keys(const char *v, size_t n) {
  if (n >= 5 && memcmp(v, "keys=", 5) == 0) return parse_u64(v + 5, n - 5);
  return 0;
}

typedef struct {
  inv_node_figures_t *f;
  int have_memory;
  int have_state;
} parse_ctx_t;

static void info_field(const char *name, size_t nlen, const char *v,
                       size_t vlen, void *arg) {
  parse_ctx_t *ctx = arg;
  inv_node_figures_t *f = ctx->f;
  if (name_is(name, nlen, "used_memory")) {
    f->used_memory = parse_u64(v, vlen);
    ctx->have_memory = 1;
  } else if (name_is(name, nlen, "maxmemory")) {
    f->maxmemory = parse_u64(v, vlen);
  } else if (name_is(name, nlen, "mem_fragmentation_ratio")) {
    char num[32];
    size_t k = vlen < sizeof(num) - 1 ? vlen : sizeof(num) - 1;
    memcpy(num, v, k);
    num[k] = '\0';
    f->fragmentation = strtod(num, NULL);
  } else if (name_is(name, nlen, "evicted_keys")) {
    f->evicted_keys = parse_u64(v, vlen);
  } else if (name_is(name, nlen, "keyspace_hits")) {
    f->keyspace_hits = parse_u64(v, vlen);
  } else if (name_is(name, nlen, "keyspace_misses")) {
    f->keyspace_misses = parse_u64(v, vlen);
  } else if (name_is(name, nlen, "connected_clients")) {
    f->connected_clients = parse_u64(v, vlen);
  } else if (name_is(name, nlen, "cluster_enabled")) {
    f->cluster_enabled = parse_u64(v, vlen) != 0;
  } else if (nlen > 2 && memcmp(name, "db", 2) == 0 && name[2] >= '0' &&
             name[2] <= '9') {
    f->keys += keyspace_keys(v, vlen);
  }
}

int inv_node_health_parse_info(const char *text, size_t len,
                               inv_node_figures_t *f) {
  parse_ctx_t ctx = {f, 0, 0};
  f->keys = 0;
  each_field(text, len, info_field, &ctx);
  return ctx.have_memory;
}

static void cluster_field(const char *name, size_t nlen, const char *v,
                          size_t vlen, void *arg) {
  parse_ctx_t *ctx = arg;
  if (name_is(name, nlen, "cluster_state")) {
    ctx->f->cluster_state_ok = vlen == 2 && memcmp(v, "ok", 2) == 0;
    ctx->have_state = 1;
  } else if (name_is(name, nlen, "cluster_slots_fail")) {
    ctx->f->slots_fail = parse_u64(v, vlen);
  } else if (name_is(name, nlen, "cluster_slots_pfail")) {
    ctx->f->slots_pfail = parse_u64(v, vlen);
  }
}

int inv_node_health_parse_cluster_info(const char *text, size_t len,
                                       inv_node_figures_t *f) {
  parse_ctx_t ctx = {f, 0, 0};
  each_field(text, len, cluster_field, &ctx);
  return ctx.have_state;
}

/* Ends a poll: publishes the scratch figures when ok. */
static void nh_poll_done(inv_node_health_t *nh, int ok) {
  if (ok) {
    uint64_t polls = nh->fig.polls, errors = nh->fig.poll_errors;
    nh->fig = nh->scratch;
    nh->fig.polls = polls + 1;
    nh->fig.poll_errors = errors;
    nh->fig.up = 1;
  } else {
    nh->fig.up = 0;
    nh->fig.poll_errors++;
  }
}

static int reply_text(const redisReply *reply) {
  return reply != NULL && (reply->type == REDIS_REPLY_STRING ||
                           reply->type == REDIS_REPLY_STATUS);
}

static void cluster_info_cb(inv_redis_t *r, redisReply *reply, int err,
                            void *data) {
  inv_node_health_t *nh = data;
  (void)r;
  nh->pending--;
  if (!nh->closing) {
    nh_poll_done(nh, err == 0 && reply_text(reply) &&
                         inv_node_health_parse_cluster_info(
                             reply->str, reply->len, &nh->scratch));
  }
  nh_maybe_free(nh);
}

static void info_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  inv_node_health_t *nh = data;
  nh->pending--;
  if (nh->closing) {
    nh_maybe_free(nh);
    return;
  }
  nh->scratch = nh->fig;
  if (err < 0 || !reply_text(reply) ||
      !inv_node_health_parse_info(reply->str, reply->len, &nh->scratch)) {
    nh_poll_done(nh, 0);
    return;
  }
  if (!nh->scratch.cluster_enabled) {
    /* A standalone node has no cluster state that could fail. */
    nh->scratch.cluster_state_ok = 1;
    nh->scratch.slots_fail = 0;
    nh->scratch.slots_pfail = 0;
    nh_poll_done(nh, 1);
    return;
  }
  if (inv_redis_command(r, cluster_info_cb, nh, "CLUSTER INFO") != 0) {
    nh_poll_done(nh, 0);
    return;
  }
  nh->pending++;
}

void inv_node_health_poll(inv_node_health_t *nh) {
  if (nh->closing || nh->pending > 0) return;
  if (!inv_redis_is_connected(nh->conn)) {
    nh->fig.up = 0;
    return;
  }
  /* Plain INFO (the default sections) holds memory, stats, clients,
   * keyspace and cluster on every Redis version; several named sections
   * in one INFO need Redis 7. */
  if (inv_redis_command(nh->conn, info_cb, nh, "INFO") != 0) {
    nh_poll_done(nh, 0);
    return;
  }
  nh->pending++;
}

static void nh_timer_cb(uv_timer_t *t) { inv_node_health_poll(t->data); }

int inv_node_health_start(uv_loop_t *loop, inv_redis_t *conn,
                          uint64_t interval_ms, inv_node_health_t **out) {
  inv_node_health_t *nh = calloc(1, sizeof(*nh));
  if (nh == NULL) return INV_ENOMEM;
  nh->conn = conn;
  uv_timer_init(loop, &nh->timer);
  nh->timer.data = nh;
  nh->timer_open = 1;
  uv_timer_start(&nh->timer, nh_timer_cb, interval_ms, interval_ms);
  *out = nh;
  return 0;
}

const inv_node_figures_t *inv_node_health_figures(const inv_node_health_t *nh) {
  return &nh->fig;
}

void inv_node_health_pack(msgpack_packer *pk, const char *addr,
                          const inv_node_figures_t *f) {
  msgpack_pack_map(pk, NH_NSTATS + 2);
  inv_pack_str(pk, "addr");
  inv_pack_str(pk, addr);
  inv_stats_pack(pk, nh_keys, NH_NSTATS, f);
  inv_pack_str(pk, "mem_fragmentation_ratio");
  msgpack_pack_double(pk, f->fragmentation);
}

int inv_node_health_prometheus(inv_buf_t *out, const inv_node_figures_t *f) {
  int rc = inv_stats_prometheus(out, NH_PREFIX, nh_metrics, NH_NSTATS, f);
  if (rc != 0) return rc;
  return inv_stats_prometheus_value(
      out, NH_PREFIX, "mem_fragmentation_ratio", INV_STAT_GAUGE,
      "resident memory over used memory (INFO mem_fragmentation_ratio)",
      f->fragmentation);
}

static void nh_timer_closed(uv_handle_t *h) {
  inv_node_health_t *nh = h->data;
  nh->timer_open = 0;
  nh_maybe_free(nh);
}

void inv_node_health_close(inv_node_health_t *nh, void (*closed_cb)(void *),
                           void *data) {
  if (nh == NULL || nh->closing) return;
  nh->closing = 1;
  nh->closed_cb = closed_cb;
  nh->closed_data = data;
  uv_close((uv_handle_t *)&nh->timer, nh_timer_closed);
}
