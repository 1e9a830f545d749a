/*
 * Rendering of counter tables for the `stats` method (msgpack) and for
 * /metrics (Prometheus text exposition format 0.0.4).
 */
#include "common/stats.h"

#include <inttypes.h>
#include <string.h>

#include "common/errors.h"

/* Reads the uint64_t field at offset in values. */
static uint64_t stats_value(const void *values, size_t offset) {
  uint64_t v;
  memcpy(&v, (const char *)values + offset, sizeof(v));
  return v;
}

void inv_stats_pack(msgpack_packer *pk, const inv_stat_desc_t *desc, size_t n,
                    const void *values) {
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(desc[i].name);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, desc[i].name, len);
    msgpack_pack_uint64(pk, stats_value(values, desc[i].offset));
  }
}

/* Appends text with the escapes Prometheus requires: in HELP text a
 * backslash and a newline, in label values also a double quote. */
static int stats_escape(inv_buf_t *out, const char *s, int quote) {
  int rc = 0;
  for (; *s && rc == 0; s++) {
    if (*s == '\\') {
      rc = inv_buf_append(out, "\\\\", 2);
    } else if (*s == '\n') {
      rc = inv_buf_append(out, "\\n", 2);
    } else if (quote && *s == '"') {
      rc = inv_buf_append(out, "\\\"", 2);
    } else {
      rc = inv_buf_append(out, s, 1);
    }
  }
  return rc;
}

/* Appends the "# HELP" and "# TYPE" lines of one metric family. */
static int stats_header(inv_buf_t *out, const char *prefix, const char *name,
                        const char *suffix, inv_stat_type_t type,
                        const char *help) {
  int rc = inv_buf_printf(out, "# HELP %s_%s%s ", prefix, name, suffix);
  if (rc == 0) rc = stats_escape(out, help ? help : "", 0);
  if (rc == 0) {
    rc = inv_buf_printf(out, "\n# TYPE %s_%s%s %s\n", prefix, name, suffix,
                        type == INV_STAT_COUNTER ? "counter" : "gauge");
  }
  return rc;
}

int inv_stats_prometheus(inv_buf_t *out, const char *prefix,
                         const inv_stat_desc_t *desc, size_t n,
                         const void *values) {
  for (size_t i = 0; i < n; i++) {
    const char *suffix = desc[i].type == INV_STAT_COUNTER ? "_total" : "";
    int rc = stats_header(out, prefix, desc[i].name, suffix, desc[i].type,
                          desc[i].help);
    if (rc == 0) {
      rc = inv_buf_printf(out, "%s_%s%s %" PRIu64 "\n", prefix, desc[i].name,
                          suffix, stats_value(values, desc[i].offset));
    }
    if (rc != 0) return rc;
  }
  return 0;
}

int inv_stats_prometheus_labelled(inv_buf_t *out, const char *prefix,
                                  const char *name, inv_stat_type_t type,
                                  const char *help, const char *label,
                                  const char *label_value, uint64_t value,
                                  int first) {
  const char *suffix = type == INV_STAT_COUNTER ? "_total" : "";
  int rc = 0;
  if (first) rc = stats_header(out, prefix, name, suffix, type, help);
  if (rc == 0) rc = inv_buf_printf(out, "%s_%s%s{%s=\"", prefix, name, suffix, label);
  if (rc == 0) rc = stats_escape(out, label_value ? label_value : "", 1);
  if (rc == 0) rc = inv_buf_printf(out, "\"} %" PRIu64 "\n", value);
  return rc;
}
