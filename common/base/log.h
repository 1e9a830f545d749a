/*
 * Logging: one line per message on stderr, with UTC time, level and context:
 *   2026-11-25T06:30:00.123Z INFO  [sink] connected to 127.0.0.1:7000
 * The context names the component ("listener", "sink", "worker
 * 127.0.0.1:7001"). Messages below the configured level are dropped before
 * formatting.
 */
#ifndef INV_LOG_H
#define INV_LOG_H

typedef enum {
  INV_LOG_DEBUG = 0,
  INV_LOG_INFO = 1,
  INV_LOG_WARN = 2,
  INV_LOG_ERROR = 3
} inv_log_level_t;

void inv_log_set_level(inv_log_level_t level);
inv_log_level_t inv_log_get_level(void);

/* The level names in enum order, NULL-terminated: a config ENUM table. */
extern const char *const inv_log_level_names[];

/* Parses "debug", "info", "warn" or "error". Returns 0, or INV_EINVAL. */
int inv_log_parse_level(const char *name, inv_log_level_t *out);

void inv_log(inv_log_level_t level, const char *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define inv_log_debug(ctx, ...) inv_log(INV_LOG_DEBUG, ctx, __VA_ARGS__)
#define inv_log_info(ctx, ...) inv_log(INV_LOG_INFO, ctx, __VA_ARGS__)
#define inv_log_warn(ctx, ...) inv_log(INV_LOG_WARN, ctx, __VA_ARGS__)
#define inv_log_error(ctx, ...) inv_log(INV_LOG_ERROR, ctx, __VA_ARGS__)

#endif
