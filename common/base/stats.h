/*
 * Rendering counters for `stats` (a msgpack map) and /metrics (Prometheus
 * text). Each daemon declares its counters once in an X-macro and builds an
 * inv_stat_desc_t table from it; see service/pub_stats.h. Values are
 * uint64_t fields of one struct, addressed by offset.
 *
 * Prometheus names are prefix + "_" + name, for example with prefix
 * "inval_publisher": inval_publisher_events_acked_total for a COUNTER named
 * events_acked (the "_total" suffix is added for counters only).
 */
#ifndef INV_STATS_H
#define INV_STATS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/buf.h"
#include "common/base/latency.h"

/* COUNTER and GAUGE go to both outputs. RECENT is a figure over a recent
 * window (a percentile of common/base/latency.h's window) for `stats` only:
 * /metrics carries a histogram instead, from which Prometheus computes
 * quantiles over the range it chooses. TIMESTAMP_MS is a wall-clock time in
 * milliseconds in `stats` and a gauge in seconds (base units) on /metrics,
 * whose name should end in "_timestamp_seconds". */
typedef enum {
  INV_STAT_COUNTER,
  INV_STAT_GAUGE,
  INV_STAT_RECENT,
  INV_STAT_TIMESTAMP_MS
} inv_stat_type_t;

typedef struct inv_stat_desc_s {
  const char *name;
  inv_stat_type_t type;
  size_t offset; /* offsetof(values struct, uint64_t field) */
  const char *help;
} inv_stat_desc_t;

/* Packs n entries of "name": value into pk. The caller has packed the map
 * header (so it can add more entries, such as strings or nested maps). */
void inv_stats_pack(msgpack_packer *pk, const inv_stat_desc_t *desc, size_t n,
                    const void *values);

/* Appends "# HELP", "# TYPE" and the sample line for each entry but the
 * RECENT ones. Returns 0 or INV_ENOMEM. */
int inv_stats_prometheus(inv_buf_t *out, const char *prefix,
                         const inv_stat_desc_t *desc, size_t n,
                         const void *values);

/* Appends one labelled sample, e.g. name{code="EBUSY"} 3, with HELP/TYPE
 * lines only when first is nonzero. */
int inv_stats_prometheus_labelled(inv_buf_t *out, const char *prefix,
                                  const char *name, inv_stat_type_t type,
                                  const char *help, const char *label,
                                  const char *label_value, uint64_t value,
                                  int first);

/* Appends one unlabelled sample with its HELP/TYPE lines, the value printed
 * as a float (a ratio, or seconds). type is COUNTER ("_total" is added) or
 * GAUGE. Returns 0 or INV_ENOMEM. */
int inv_stats_prometheus_value(inv_buf_t *out, const char *prefix,
                               const char *name, inv_stat_type_t type,
                               const char *help, double value);

/* Appends h as the histogram prefix_name (name should end in "_seconds"):
 * one _bucket line per bound plus le="+Inf", then _sum in seconds and
 * _count. Returns 0 or INV_ENOMEM. */
int inv_stats_prometheus_histogram(inv_buf_t *out, const char *prefix,
                                   const char *name, const char *help,
                                   const inv_hist_t *h);

/* Appends the standard process metrics of the calling process, read from
 * /proc/self: process_start_time_seconds, process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds and process_max_fds. A figure that cannot be read is
 * left out (never a made-up value). Returns 0 or INV_ENOMEM. */
int inv_stats_prometheus_process(inv_buf_t *out);

#endif
