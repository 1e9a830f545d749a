/*
 * invalctl stats: the server's stats map as an aligned table, or as JSON
 * (--json). Works against the publisher and a worker's admin port alike,
 * since both answer `stats` with a map.
 *
 * The table prints scalar entries first, one per line with aligned values;
 * then each nested map (such as "errors", by code) as a titled group; then
 * the "workers" section (heartbeat records), one line per worker with stale
 * or missing ones flagged; and the "node" section of a worker (its Redis
 * node's health), or a "nodes" array of such maps, one line per node; from
 * the publisher, whose records carry each worker's node summary
 * ("health"), one line per node of those.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/codec.h"
#include "proto/invalctl/invalctl.h"

static int is_scalar(const msgpack_object *o) {
  return o->type != MSGPACK_OBJECT_MAP && o->type != MSGPACK_OBJECT_ARRAY;
}

/* Prints a scalar value (strings escaped, so one value is one field). */
static void print_scalar(FILE *out, const msgpack_object *o) {
  switch (o->type) {
    case MSGPACK_OBJECT_NIL:
      fputs("-", out);
      break;
    case MSGPACK_OBJECT_BOOLEAN:
      fputs(o->via.boolean ? "yes" : "no", out);
      break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      fprintf(out, "%" PRIu64, o->via.u64);
      break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      fprintf(out, "%" PRId64, o->via.i64);
      break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      fprintf(out, "%g", o->via.f64);
      break;
    case MSGPACK_OBJECT_STR:
      inv__ctl_print_escaped(out, o->via.str.ptr, o->via.str.size);
      break;
    case MSGPACK_OBJECT_BIN:
      inv__ctl_print_escaped(out, o->via.bin.ptr, o->via.bin.size);
      break;
    default:
      inv__ctl_print_json(out, o, 0, 0);
      break;
  }
}

/* The width of a key as printed. */
static size_t key_width(const msgpack_object *k) {
  if (k->type == MSGPACK_OBJECT_STR) return k->via.str.size;
  if (k->type == MSGPACK_OBJECT_BIN) return k->via.bin.size;
  return 8;
}

static void print_key(FILE *out, const msgpack_object *k, size_t width) {
  size_t w = key_width(k);
  print_scalar(out, k);
  for (; w < width; w++) fputc(' ', out);
}

/* Prints a map's scalar entries aligned, then its nested entries as
 * groups, indented by level. Arrays of scalars print on one line. */
/* 1 when key names a section printed by a function of its own. */
static int is_section(const msgpack_object *key) {
  return inv_obj_streq(key, "workers") || inv_obj_streq(key, "node") ||
         inv_obj_streq(key, "nodes");
}

static void print_map(FILE *out, const msgpack_object *m, int level,
                      int skip_sections) {
  uint32_t i;
  size_t width = 0;
  for (i = 0; i < m->via.map.size; i++) {
    const msgpack_object_kv *kv = &m->via.map.ptr[i];
    if (key_width(&kv->key) > width) width = key_width(&kv->key);
  }
  for (i = 0; i < m->via.map.size; i++) {
    const msgpack_object_kv *kv = &m->via.map.ptr[i];
    if (!is_scalar(&kv->val)) continue;
    fprintf(out, "%*s", level * 2, "");
    print_key(out, &kv->key, width + 2);
    print_scalar(out, &kv->val);
    fputc('\n', out);
  }
  for (i = 0; i < m->via.map.size; i++) {
    const msgpack_object_kv *kv = &m->via.map.ptr[i];
    if (is_scalar(&kv->val)) continue;
    if (skip_sections && is_section(&kv->key)) continue;
    fprintf(out, "%*s", level * 2, "");
    if (kv->val.type == MSGPACK_OBJECT_MAP) {
      print_scalar(out, &kv->key);
      fputs(":\n", out);
      if (kv->val.via.map.size == 0)
        fprintf(out, "%*s(none)\n", (level + 1) * 2, "");
      else
        print_map(out, &kv->val, level + 1, 0);
    } else {
      uint32_t j;
      print_key(out, &kv->key, width + 2);
      for (j = 0; j < kv->val.via.array.size; j++) {
        if (j > 0) fputs(", ", out);
        print_scalar(out, &kv->val.via.array.ptr[j]);
      }
      if (kv->val.via.array.size == 0) fputs("(none)", out);
      fputc('\n', out);
    }
  }
}

/* Reads an unsigned field of a record; 0 and *found = 0 when absent. */
static uint64_t rec_u64(const msgpack_object *rec, const char *key,
                        int *found) {
  const msgpack_object *v = inv_map_get(rec, key);
  if (v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
    if (found != NULL) *found = 1;
    return v->via.u64;
  }
  if (found != NULL) *found = 0;
  return 0;
}

static void rec_str(FILE *out, const msgpack_object *rec, const char *key,
                    int width) {
  const msgpack_object *v = inv_map_get(rec, key);
  int w = 0;
  if (v != NULL &&
      (v->type == MSGPACK_OBJECT_STR || v->type == MSGPACK_OBJECT_BIN)) {
    print_scalar(out, v);
    w = (int)(v->type == MSGPACK_OBJECT_STR ? v->via.str.size
                                            : v->via.bin.size);
  } else {
    fputc('-', out);
    w = 1;
  }
  for (; w < width; w++) fputc(' ', out);
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Prints one heartbeat record and returns 1 when it is flagged. A record
 * is MISSING when it says so ("missing": true) or has no heartbeat time,
 * and STALE when it says so or when now - ts_ms > ttl_ms. */
static int print_worker(FILE *out, const msgpack_object *rec,
                        const msgpack_object *fallback_id) {
  int has_ts, has_ttl;
  uint64_t ts = rec_u64(rec, "ts_ms", &has_ts);
  uint64_t ttl = rec_u64(rec, "ttl_ms", &has_ttl);
  uint64_t now = wall_ms();
  const msgpack_object *stale = inv_map_get(rec, "stale");
  const msgpack_object *missing = inv_map_get(rec, "missing");
  int is_missing =
      (missing != NULL && missing->type == MSGPACK_OBJECT_BOOLEAN &&
       missing->via.boolean) ||
      !has_ts;
  int is_stale =
      !is_missing && ((stale != NULL && stale->type == MSGPACK_OBJECT_BOOLEAN)
                          ? stale->via.boolean
                          : (has_ttl && now > ts && now - ts > ttl));
  fputs("  ", out);
  if (inv_map_get(rec, "id") == NULL && fallback_id != NULL) {
    size_t w = key_width(fallback_id);
    print_scalar(out, fallback_id);
    for (; w < 22; w++) fputc(' ', out);
  } else {
    rec_str(out, rec, "id", 22);
  }
  fputc(' ', out);
  rec_str(out, rec, "node", 22);
  fputc(' ', out);
  rec_str(out, rec, "role", 8);
  fputc(' ', out);
  {
    const msgpack_object *sh = inv_map_get(rec, "shards");
    if (sh != NULL && sh->type == MSGPACK_OBJECT_ARRAY)
      fprintf(out, "%6u ", sh->via.array.size);
    else
      fprintf(out, "%6s ", "-");
  }
  rec_str(out, rec, "last_id", 20);
  fprintf(out, " %8" PRIu64 " %8" PRIu64, rec_u64(rec, "lag_ms", NULL),
          rec_u64(rec, "behind", NULL));
  if (is_missing) {
    fputs("  MISSING (no heartbeat)\n", out);
    return 1;
  }
  if (is_stale) {
    fprintf(out, "  STALE (last heartbeat %.1f s ago, ttl %.1f s)\n",
            now > ts ? (double)(now - ts) / 1000.0 : 0.0, (double)ttl / 1000.0);
    return 1;
  }
  fprintf(out, "  ok (%.1f s ago)\n",
          now > ts ? (double)(now - ts) / 1000.0 : 0.0);
  return 0;
}

/* Prints the workers section: an array of records, or a map of worker id
 * to record. */
static void print_workers(FILE *out, const msgpack_object *w) {
  uint32_t i, n = 0, flagged = 0;
  if (w->type == MSGPACK_OBJECT_ARRAY)
    n = w->via.array.size;
  else if (w->type == MSGPACK_OBJECT_MAP)
    n = w->via.map.size;
  fprintf(out, "workers (%u):\n", n);
  if (n == 0) {
    fputs("  MISSING: no worker heartbeat found (are the workers running?)\n",
          out);
    return;
  }
  fprintf(out, "  %-22s %-22s %-8s %6s %-20s %8s %8s  %s\n", "ID", "NODE",
          "ROLE", "SHARDS", "LAST_ID", "LAG_MS", "BEHIND", "HEARTBEAT");
  for (i = 0; i < n; i++) {
    const msgpack_object *rec, *id = NULL;
    if (w->type == MSGPACK_OBJECT_ARRAY) {
      rec = &w->via.array.ptr[i];
    } else {
      id = &w->via.map.ptr[i].key;
      rec = &w->via.map.ptr[i].val;
    }
    if (rec->type != MSGPACK_OBJECT_MAP) {
      fputs("  (a record that is not a map)  MISSING\n", out);
      flagged++;
      continue;
    }
    flagged += (uint32_t)print_worker(out, rec, id);
  }
  if (flagged > 0)
    fprintf(out, "WARNING: %u of %u workers stale or missing\n", flagged, n);
}

/* A float field of a node record (0 when absent). */
static double rec_f64(const msgpack_object *rec, const char *key) {
  const msgpack_object *v = inv_map_get(rec, key);
  if (v == NULL) return 0.0;
  if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
    return v->via.f64;
  if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (double)v->via.u64;
  return 0.0;
}

/* Prints one node-health record (a worker's "node" map, or the "health"
 * map of a heartbeat) as one line, named by the addr_key entry of named. */
static void print_node(FILE *out, const msgpack_object *rec,
                       const msgpack_object *named, const char *addr_key) {
  int has_up;
  uint64_t up = rec_u64(rec, "up", &has_up);
  uint64_t used = rec_u64(rec, "used_memory", NULL);
  uint64_t max = rec_u64(rec, "maxmemory", NULL);
  const char *state = !has_up || !up                           ? "down"
                      : rec_u64(rec, "cluster_state_ok", NULL) ? "ok"
                                                               : "fail";
  fputs("  ", out);
  rec_str(out, named, addr_key, 22);
  fprintf(out, " %-5s %10" PRIu64 " %12" PRIu64 " %12" PRIu64, state,
          rec_u64(rec, "slots_fail", NULL), used, max);
  if (max > 0)
    fprintf(out, " %5.1f%%", 100.0 * (double)used / (double)max);
  else
    fputs("      -", out);
  fprintf(
      out, " %6.2f %10" PRIu64 " %12" PRIu64 " %12" PRIu64 " %8" PRIu64 "\n",
      rec_f64(rec, "mem_fragmentation_ratio"),
      rec_u64(rec, "evicted_keys", NULL), rec_u64(rec, "keyspace_hits", NULL),
      rec_u64(rec, "keyspace_misses", NULL),
      rec_u64(rec, "connected_clients", NULL));
}

/* Prints the node section: one map ("node", a worker's own node) or an
 * array of them ("nodes"). */
static void print_nodes_header(FILE *out, uint32_t n) {
  fprintf(out, "nodes (%u):\n", n);
  fprintf(out, "  %-22s %-5s %10s %12s %12s %6s %6s %10s %12s %12s %8s\n",
          "NODE", "STATE", "SLOTS_FAIL", "USED_BYTES", "MAX_BYTES", "USED%",
          "FRAG", "EVICTED", "HITS", "MISSES", "CLIENTS");
}

static void print_nodes(FILE *out, const msgpack_object *o) {
  uint32_t n = o->type == MSGPACK_OBJECT_ARRAY ? o->via.array.size : 1;
  print_nodes_header(out, n);
  for (uint32_t i = 0; i < n; i++) {
    const msgpack_object *rec =
        o->type == MSGPACK_OBJECT_ARRAY ? &o->via.array.ptr[i] : o;
    if (rec->type == MSGPACK_OBJECT_MAP) print_node(out, rec, rec, "addr");
  }
}

/* The node summary a heartbeat record carries ("health"), or NULL. */
static const msgpack_object *worker_health(const msgpack_object *rec) {
  const msgpack_object *h;
  if (rec->type != MSGPACK_OBJECT_MAP) return NULL;
  h = inv_map_get(rec, "health");
  return h != NULL && h->type == MSGPACK_OBJECT_MAP ? h : NULL;
}

/* Prints the nodes the publisher knows from the workers' heartbeats (the
 * array of records): one line per worker that sent its node's figures. */
static void print_worker_nodes(FILE *out, const msgpack_object *w) {
  uint32_t i, n = 0;
  if (w->type != MSGPACK_OBJECT_ARRAY) return;
  for (i = 0; i < w->via.array.size; i++)
    n += worker_health(&w->via.array.ptr[i]) != NULL;
  if (n == 0) return;
  print_nodes_header(out, n);
  for (i = 0; i < w->via.array.size; i++) {
    const msgpack_object *rec = &w->via.array.ptr[i];
    const msgpack_object *h = worker_health(rec);
    if (h != NULL) print_node(out, h, rec, "node");
  }
}

static int run(const inv_ctl_opts_t *opts, int argc, char **argv) {
  inv_client_t *c = NULL;
  inv_client_result_t *res = NULL;
  const msgpack_object *o, *workers, *nodes;
  int json = 0, i, rc;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      json = 1;
    else
      return inv__ctl_usage_error("stats", "unexpected argument %s", argv[i]);
  }
  rc = inv__ctl_fetch_stats(opts, &c, &res);
  if (rc != 0) return rc;
  o = inv_client_result_obj(res);
  if (json) {
    inv__ctl_print_json(stdout, o, 2, 0);
    fputc('\n', stdout);
  } else if (o->type != MSGPACK_OBJECT_MAP) {
    print_scalar(stdout, o);
    fputc('\n', stdout);
  } else {
    print_map(stdout, o, 0, 1);
    workers = inv_map_get(o, "workers");
    if (workers != NULL && !is_scalar(workers)) print_workers(stdout, workers);
    nodes = inv_map_get(o, "node");
    if (nodes == NULL) nodes = inv_map_get(o, "nodes");
    if (nodes != NULL && !is_scalar(nodes))
      print_nodes(stdout, nodes);
    else if (workers != NULL)
      print_worker_nodes(stdout, workers);
  }
  inv_client_result_free(res);
  inv_client_close(c);
  return INV_CTL_EXIT_OK;
}

const inv_ctl_cmd_t inv__ctl_cmd_stats = {
    "stats", "print the server's counters (a table, or --json)",
    "Usage: invalctl [OPTIONS] stats [--json]\n"
    "\n"
    "Prints the server's stats map: counters one per line with aligned\n"
    "values, nested maps (errors by code, ...) as groups, and, when the\n"
    "server reports worker heartbeats, one line per worker (SHARDS: the\n"
    "number of log shards it consumes) with STALE or MISSING flagged, and the "
    "Redis nodes' health, one line per node\n"
    "(state, failed slots, memory, fragmentation, evictions, hits, misses,\n"
    "clients): from the publisher, as each worker's heartbeat reports its\n"
    "node; from a worker's admin port, its own node.\n"
    "\n"
    "  --json   the same map as JSON, exact and machine readable (strings\n"
    "           that are not UTF-8 are escaped byte by byte as \\u00XX)\n",
    run};
