/*
 * Rendering of counter tables for the `stats` method (msgpack) and for
 * /metrics (Prometheus text exposition format 0.0.4).
 */
#include "common/base/stats.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "inval/errors.h"

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

/* The HELP/TYPE lines of a histogram family. */
static int stats_histogram_header(inv_buf_t *out, const char *prefix,
                                  const char *name, const char *help) {
  int rc = inv_buf_printf(out, "# HELP %s_%s ", prefix, name);
  if (rc == 0) rc = stats_escape(out, help ? help : "", 0);
  if (rc == 0) {
    rc = inv_buf_printf(out, "\n# TYPE %s_%s histogram\n", prefix, name);
  }
  return rc;
}

int inv_stats_prometheus(inv_buf_t *out, const char *prefix,
                         const inv_stat_desc_t *desc, size_t n,
                         const void *values) {
  for (size_t i = 0; i < n; i++) {
    uint64_t v = stats_value(values, desc[i].offset);
    int rc;
    if (desc[i].type == INV_STAT_RECENT) continue;
    if (desc[i].type == INV_STAT_TIMESTAMP_MS) {
      rc = inv_stats_prometheus_value(out, prefix, desc[i].name, INV_STAT_GAUGE,
                                      desc[i].help, (double)v / 1000.0);
      if (rc != 0) return rc;
      continue;
    }
    const char *suffix = desc[i].type == INV_STAT_COUNTER ? "_total" : "";
    rc = stats_header(out, prefix, desc[i].name, suffix, desc[i].type,
                      desc[i].help);
    if (rc == 0) {
      rc = inv_buf_printf(out, "%s_%s%s %" PRIu64 "\n", prefix, desc[i].name,
                          suffix, v);
    }
    if (rc != 0) return rc;
  }
  return 0;
}

int inv_stats_prometheus_value(inv_buf_t *out, const char *prefix,
                               const char *name, inv_stat_type_t type,
                               const char *help, double value) {
  const char *suffix = type == INV_STAT_COUNTER ? "_total" : "";
  int rc = stats_header(out, prefix, name, suffix, type, help);
  if (rc == 0)
    rc = inv_buf_printf(out, "%s_%s%s %.15g\n", prefix, name, suffix, value);
  return rc;
}

int inv_stats_prometheus_histogram(inv_buf_t *out, const char *prefix,
                                   const char *name, const char *help,
                                   const inv_hist_t *h) {
  uint64_t cumulative = 0;
  int rc = stats_histogram_header(out, prefix, name, help);
  for (unsigned i = 0; i < INV_HIST_NBOUNDS && rc == 0; i++) {
    cumulative += h->buckets[i];
    rc = inv_buf_printf(out, "%s_%s_bucket{le=\"%g\"} %" PRIu64 "\n", prefix,
                        name, (double)inv_hist_bounds_us[i] / 1e6, cumulative);
  }
  if (rc == 0)
    rc = inv_buf_printf(out, "%s_%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", prefix,
                        name, h->count);
  if (rc == 0)
    rc =
        inv_buf_printf(out, "%s_%s_sum %.6f\n%s_%s_count %" PRIu64 "\n", prefix,
                       name, (double)h->sum_us / 1e6, prefix, name, h->count);
  return rc;
}

/* Reads the system boot time (seconds since the epoch) from /proc/stat.
 * Returns 0 when it cannot be read. */
static uint64_t stats_boot_time(void) {
  char line[256];
  uint64_t btime = 0;
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL) return 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "btime ", 6) == 0) {
      btime = strtoull(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  return btime;
}

/* Counts the entries of /proc/self/fd, minus the one opendir holds.
 * Returns -1 when the directory cannot be read. */
static long stats_open_fds(void) {
  long n = 0;
  struct dirent *e;
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n > 0 ? n - 1 : 0;
}

int inv_stats_prometheus_process(inv_buf_t *out) {
  char buf[1024];
  unsigned long long utime = 0, stime = 0, starttime = 0, vsize = 0;
  long long rss = 0;
  int have_stat = 0, rc = 0;
  long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  FILE *f = fopen("/proc/self/stat", "r");
  if (f != NULL) {
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    /* The command name (field 2) is in parentheses and may hold spaces:
     * the fields counted below start after its last ')', at field 3. */
    const char *p = strrchr(buf, ')');
    if (p != NULL &&
        sscanf(p + 1,
               " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu"
               " %*s %*s %*s %*s %*s %*s %llu %llu %lld",
               &utime, &stime, &starttime, &vsize, &rss) == 5)
      have_stat = ticks > 0 && page > 0;
  }
  if (have_stat) {
    uint64_t btime = stats_boot_time();
    if (btime != 0)
      rc = inv_stats_prometheus_value(
          out, "process", "start_time_seconds", INV_STAT_GAUGE,
          "Start time of the process since unix epoch in seconds.",
          (double)btime + (double)starttime / (double)ticks);
    if (rc == 0)
      rc = inv_stats_prometheus_value(
          out, "process", "cpu_seconds", INV_STAT_COUNTER,
          "Total user and system CPU time spent in seconds.",
          (double)(utime + stime) / (double)ticks);
    if (rc == 0)
      rc = inv_stats_prometheus_value(
          out, "process", "resident_memory_bytes", INV_STAT_GAUGE,
          "Resident memory size in bytes.", (double)rss * (double)page);
    if (rc == 0)
      rc = inv_stats_prometheus_value(
          out, "process", "virtual_memory_bytes", INV_STAT_GAUGE,
          "Virtual memory size in bytes.", (double)vsize);
  }
  long fds = stats_open_fds();
  if (rc == 0 && fds >= 0)
    rc = inv_stats_prometheus_value(out, "process", "open_fds", INV_STAT_GAUGE,
                                    "Number of open file descriptors.",
                                    (double)fds);
  struct rlimit rl;
  if (rc == 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
      rl.rlim_cur != RLIM_INFINITY)
    rc = inv_stats_prometheus_value(out, "process", "max_fds", INV_STAT_GAUGE,
                                    "Maximum number of open file descriptors.",
                                    (double)rl.rlim_cur);
  return rc;
}

int inv_stats_prometheus_labelled(inv_buf_t *out, const char *prefix,
                                  const char *name, inv_stat_type_t type,
                                  const char *help, const char *label,
                                  const char *label_value, uint64_t value,
                                  int first) {
  const char *suffix = type == INV_STAT_COUNTER ? "_total" : "";
  int rc = 0;
  if (first) rc = stats_header(out, prefix, name, suffix, type, help);
  if (rc == 0)
    rc = inv_buf_printf(out, "%s_%s%s{%s=\"", prefix, name, suffix, label);
  if (rc == 0) rc = stats_escape(out, label_value ? label_value : "", 1);
  if (rc == 0) rc = inv_buf_printf(out, "\"} %" PRIu64 "\n", value);
  return rc;
}
