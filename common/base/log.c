/*
 * Logging to stderr, one line per message:
 *   2026-11-25T06:30:00.123Z INFO  [sink] connected to 127.0.0.1:7000
 * Each line is written with a single fprintf so that lines from different
 * threads or processes sharing stderr do not interleave within a line.
 */
#include "common/base/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "inval/errors.h"

const char *const inv_log_level_names[] = {"debug", "info", "warn", "error",
                                           NULL};

/* The padded names printed in the level column, in enum order. */
static const char *const log_level_tags[] = {"DEBUG", "INFO ", "WARN ",
                                             "ERROR"};

static atomic_int log_level = INV_LOG_INFO;

void inv_log_set_level(inv_log_level_t level) {
  if (level < INV_LOG_DEBUG) level = INV_LOG_DEBUG;
  if (level > INV_LOG_ERROR) level = INV_LOG_ERROR;
  atomic_store(&log_level, (int)level);
}

inv_log_level_t inv_log_get_level(void) {
  return (inv_log_level_t)atomic_load(&log_level);
}

int inv_log_parse_level(const char *name, inv_log_level_t *out) {
  if (name == NULL) return INV_EINVAL;
  for (int i = 0; inv_log_level_names[i] != NULL; i++) {
    if (strcasecmp(name, inv_log_level_names[i]) == 0) {
      if (out) *out = (inv_log_level_t)i;
      return 0;
    }
  }
  return INV_EINVAL;
}

/* Replaces line breaks in a message by spaces: a message carrying a key
 * with a newline must still occupy exactly one log line. */
static void log_flatten(char *s) {
  for (; *s; s++) {
    if (*s == '\n' || *s == '\r') *s = ' ';
  }
}

void inv_log(inv_log_level_t level, const char *ctx, const char *fmt, ...) {
  if ((int)level < atomic_load(&log_level)) return;
  if (level < INV_LOG_DEBUG || level > INV_LOG_ERROR) level = INV_LOG_ERROR;

  struct timespec ts;
  struct tm tm;
  char when[40];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000L);

  /* Most messages fit the stack buffer; a longer one is formatted again
   * into a heap buffer, and if that allocation fails the truncated text is
   * logged rather than nothing. */
  char small[1024];
  char *msg = small;
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (len < 0) {
    snprintf(small, sizeof(small), "(unformattable log message)");
  } else if ((size_t)len >= sizeof(small)) {
    char *big = malloc((size_t)len + 1);
    if (big != NULL) {
      va_start(ap, fmt);
      vsnprintf(big, (size_t)len + 1, fmt, ap);
      va_end(ap);
      msg = big;
    }
  }
  log_flatten(msg);
  fprintf(stderr, "%s %s [%s] %s\n", when, log_level_tags[level],
          ctx ? ctx : "-", msg);
  if (msg != small) free(msg);
}
