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

#include "common/buf.h"

typedef enum { INV_STAT_COUNTER, INV_STAT_GAUGE } inv_stat_type_t;

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

/* Appends "# HELP", "# TYPE" and the sample line for each entry. Returns 0
 * or INV_ENOMEM. */
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

#endif
