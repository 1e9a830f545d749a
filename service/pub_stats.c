/*
 * Rendering of the publisher's counters through common/base/stats.h. The two
 * descriptor tables (stats keys and Prometheus names) come from the one
 * X-macro in pub_stats.h, so a counter cannot exist in one place only.
 */
#include "service/pub_stats.h"

#include <stddef.h>

#include "inval/errors.h"
#include "common/base/stats.h"

#define INV_PUB_PROM_PREFIX "inval_publisher"

static const inv_stat_desc_t stat_keys[] = {
#define INV_PUB_STATS_KEY(key, metric, type, help) \
  {#key, INV_STAT_##type, offsetof(inv_pub_stats_t, key), help},
    INV_PUB_STATS_MAP(INV_PUB_STATS_KEY)
#undef INV_PUB_STATS_KEY
};

static const inv_stat_desc_t stat_metrics[] = {
#define INV_PUB_STATS_METRIC(key, metric, type, help) \
  {#metric, INV_STAT_##type, offsetof(inv_pub_stats_t, key), help},
    INV_PUB_STATS_MAP(INV_PUB_STATS_METRIC)
#undef INV_PUB_STATS_METRIC
};

#define NSTATS (sizeof(stat_keys) / sizeof(stat_keys[0]))

void inv_pub_stats_pack(msgpack_packer *pk, const inv_pub_stats_t *v,
                        const inv_pub_errors_t *errors, size_t extra_entries) {
  size_t ncodes = 0;
  for (int n = 1; n < INV_RPC_MAX_ERRNO; n++)
    ncodes += (size_t)inv_err_is_wire(-n);

  msgpack_pack_map(pk, NSTATS + 2 + extra_entries);
  inv_stats_pack(pk, stat_keys, NSTATS, v);
  inv_pack_str(pk, "version");
  inv_pack_str(pk, INV_VERSION);
  inv_pack_str(pk, "errors");
  msgpack_pack_map(pk, ncodes);
  for (int n = 1; n < INV_RPC_MAX_ERRNO; n++) {
    if (!inv_err_is_wire(-n)) continue;
    inv_pack_str(pk, inv_err_name(-n));
    msgpack_pack_uint64(pk, errors->count[n]);
  }
}

int inv_pub_stats_prometheus(inv_buf_t *out, const inv_pub_stats_t *v,
                             const inv_pub_errors_t *errors,
                             const inv_hist_t *ack_latency) {
  int rc =
      inv_stats_prometheus(out, INV_PUB_PROM_PREFIX, stat_metrics, NSTATS, v);
  if (rc < 0) return rc;
  rc = inv_stats_prometheus_labelled(out, INV_PUB_PROM_PREFIX, "info",
                                     INV_STAT_GAUGE, "build information",
                                     "version", INV_VERSION, 1, 1);
  if (rc < 0) return rc;
  int first = 1;
  for (int n = 1; n < INV_RPC_MAX_ERRNO; n++) {
    if (!inv_err_is_wire(-n)) continue;
    rc = inv_stats_prometheus_labelled(
        out, INV_PUB_PROM_PREFIX, "errors", INV_STAT_COUNTER,
        "error replies sent, by code", "code", inv_err_name(-n),
        errors->count[n], first);
    if (rc < 0) return rc;
    first = 0;
  }
  rc = inv_stats_prometheus_histogram(
      out, INV_PUB_PROM_PREFIX, "ack_latency_seconds",
      "time from a request's arrival to its ack, acked requests only",
      ack_latency);
  if (rc < 0) return rc;
  return inv_stats_prometheus_process(out);
}

/* The outcomes of a tenant's events, in the order they are rendered. */
static const char *const tenant_outcomes[] = {"accepted", "refused", "limited"};

static uint64_t tenant_outcome(const inv_tenant_t *t, int i) {
  return i == 0 ? t->accepted : i == 1 ? t->refused : t->limited;
}

void inv_pub_stats_pack_tenants(msgpack_packer *pk, inv_tenants_t *ts) {
  size_t n = inv_tenants_count(ts);
  msgpack_pack_map(pk, n);
  for (size_t i = 0; i < n; i++) {
    const inv_tenant_t *t = inv_tenants_at(ts, i);
    inv_pack_str(pk, t->name);
    msgpack_pack_map(pk, 3);
    for (int k = 0; k < 3; k++) {
      inv_pack_str(pk, tenant_outcomes[k]);
      msgpack_pack_uint64(pk, tenant_outcome(t, k));
    }
  }
}

int inv_pub_stats_prometheus_tenants(inv_buf_t *out, inv_tenants_t *ts) {
  size_t n = inv_tenants_count(ts);
  if (n == 0) return 0;
  /* Tenant names are [A-Za-z0-9_.-] (tenants.h), so they need no escaping
   * as label values. */
  if (inv_buf_printf(out,
                     "# HELP " INV_PUB_PROM_PREFIX "_tenant_events_total "
                     "events per tenant and outcome (accepted, refused with "
                     "EPERM, limited by the tenant's rate)\n"
                     "# TYPE " INV_PUB_PROM_PREFIX "_tenant_events_total "
                     "counter\n") < 0)
    return INV_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const inv_tenant_t *t = inv_tenants_at(ts, i);
    for (int k = 0; k < 3; k++) {
      if (inv_buf_printf(out,
                         INV_PUB_PROM_PREFIX "_tenant_events_total{tenant=\"%s"
                                             "\",outcome=\"%s\"} %llu\n",
                         t->name, tenant_outcomes[k],
                         (unsigned long long)tenant_outcome(t, k)) < 0)
        return INV_ENOMEM;
    }
  }
  return 0;
}
