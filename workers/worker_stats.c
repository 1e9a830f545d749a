/*
 * Rendering of the worker's counters (see worker_stats.h).
 */
#include "workers/worker_stats.h"

#include <stddef.h>
#include <string.h>

#include "common/base/stats.h"

static const inv_stat_desc_t desc[] = {
#define INV_WORKER_STATS_DESC(key, metric, type, help) \
  {#metric, INV_STAT_##type, offsetof(inv_worker_stats_t, key), help},
    INV_WORKER_STATS_MAP(INV_WORKER_STATS_DESC)
#undef INV_WORKER_STATS_DESC
};

static const char *const keys[] = {
#define INV_WORKER_STATS_KEY(key, metric, type, help) #key,
    INV_WORKER_STATS_MAP(INV_WORKER_STATS_KEY)
#undef INV_WORKER_STATS_KEY
};

#define NSTATS (sizeof(desc) / sizeof(desc[0]))

static void pack_str(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

void inv_worker_stats_pack(msgpack_packer *pk, const inv_worker_stats_t *v,
                           const inv_worker_stats_info_t *info,
                           size_t extra_entries) {
  /* The map keys are the stats keys, which may differ from the metric
   * names in desc, so the entries are packed here rather than with
   * inv_stats_pack. */
  msgpack_pack_map(pk, NSTATS + 4 + extra_entries);
  for (size_t i = 0; i < NSTATS; i++) {
    uint64_t val;
    memcpy(&val, (const char *)v + desc[i].offset, sizeof(val));
    pack_str(pk, keys[i]);
    msgpack_pack_uint64(pk, val);
  }
  pack_str(pk, "version");
  pack_str(pk, INV_VERSION);
  pack_str(pk, "worker_id");
  pack_str(pk, info->worker_id);
  pack_str(pk, "role");
  pack_str(pk, info->role);
  pack_str(pk, "last_applied_id");
  pack_str(pk, info->last_applied_id);
}

int inv_worker_stats_prometheus(inv_buf_t *out, const inv_worker_stats_t *v,
                                const inv_worker_stats_info_t *info) {
  int rc = inv_stats_prometheus(out, "inval_worker", desc, NSTATS, v);
  if (rc != 0) return rc;
  rc = inv_stats_prometheus_labelled(
      out, "inval_worker", "role", INV_STAT_GAUGE,
      "the node's role as the worker sees it", "role", info->role, 1, 1);
  if (rc != 0) return rc;
  rc = inv_stats_prometheus_labelled(out, "inval_worker", "info",
                                     INV_STAT_GAUGE, "worker version",
                                     "version", INV_VERSION, 1, 1);
  if (rc != 0) return rc;
  if (info->lag != NULL) {
    rc = inv_stats_prometheus_histogram(
        out, "inval_worker", "apply_lag_seconds",
        "time from an event's ts (set by the publisher) to its apply",
        info->lag);
    if (rc != 0) return rc;
  }
  return inv_stats_prometheus_process(out);
}
