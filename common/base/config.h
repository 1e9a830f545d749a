/*
 * Configuration: one table per daemon, one row per directive.
 *
 * A directive is both a config-file line ("max-clients 10000", redis.conf
 * style: directive, whitespace, value; '#' starts a comment; values may be
 * double-quoted) and a command-line flag ("--max-clients 10000" or
 * "--max-clients=10000"). Flags override the file whatever their order.
 * Errors name the file and line ("publisher.conf:12: max-clients: 0 is below
 * the minimum 1") or the flag.
 *
 * Values live in the daemon's own config struct at the row's offset:
 *   INV_CONF_INT      long long, within [min, max]
 *   INV_CONF_SIZE     size_t; accepts suffixes k, m, g (powers of 1024)
 *   INV_CONF_MS       uint64_t milliseconds; accepts suffixes ms, s, m
 *   INV_CONF_BOOL     int; yes/no, true/false, on/off, 1/0; a bare flag
 *                     ("--allow-flush") means yes
 *   INV_CONF_STRING   char * (owned, freed by inv_conf_free)
 *   INV_CONF_SECRET   as STRING (a password or token), but
 *                     inv_conf_print only says whether it is set
 *   INV_CONF_ADDR     inv_addr_t, "HOST:PORT" ("[::1]:7700" for IPv6)
 *   INV_CONF_ADDR_LIST inv_addr_list_t; each occurrence appends, and the first
 *                     one replaces the default. Occurrences
 *                     on the command line replace the file's list.
 *   INV_CONF_ENUM     int index into enum_names
 */
#ifndef INV_CONFIG_H
#define INV_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/base/addr.h"

typedef enum {
  INV_CONF_INT,
  INV_CONF_SIZE,
  INV_CONF_MS,
  INV_CONF_BOOL,
  INV_CONF_STRING,
  INV_CONF_SECRET,
  INV_CONF_ADDR,
  INV_CONF_ADDR_LIST,
  INV_CONF_ENUM
} inv_conf_type_t;

typedef struct inv_addr_list_s {
  inv_addr_t *items; /* owned */
  size_t count;
} inv_addr_list_t;

typedef struct inv_conf_row_s {
  const char *name; /* directive; the flag is "--" name */
  inv_conf_type_t type;
  size_t offset;                 /* offsetof(daemon config struct, field) */
  long long min, max;            /* bounds for INT, SIZE and MS */
  const char *def;               /* default as text; NULL means unset/empty */
  const char *const *enum_names; /* ENUM only: NULL-terminated */
  const char *help;              /* one line for --help */
} inv_conf_row_t;

/* Applies every row's default. Returns 0, or a negative code with err set. */
int inv_conf_defaults(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                      char *err, size_t errlen);

/* Sets one directive from text. Returns 0, INV_EINVAL (unknown directive or
 * bad value; err says which and why) or INV_ENOMEM. */
int inv_conf_set(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                 const char *name, const char *value, char *err, size_t errlen);

/* Loads a config file through inv_conf_load_buffer. Errors are
 * "PATH:LINE: message", or "PATH: message" for one that cannot be read or
 * is over INV_CONF_MAX_BYTES. */
int inv_conf_load_file(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                       const char *path, char *err, size_t errlen);

/* The largest config file or buffer accepted: far above any real config,
 * small enough that a mistaken path (a log, a device) fails at once. */
#define INV_CONF_MAX_BYTES (1024u * 1024u)

/* The most addresses an INV_CONF_ADDR_LIST holds. */
#define INV_CONF_ADDR_LIST_MAX 1024u

/* Loads a config from data[0..datalen) (any bytes; no terminator needed):
 * the parser behind inv_conf_load_file. name is used in error messages.
 * Input over INV_CONF_MAX_BYTES, or holding a NUL byte, is refused before
 * any line is applied. Returns 0, INV_EINVAL or INV_ENOMEM with err set to
 * "NAME:LINE: message"; directives before the bad line stay applied. */
int inv_conf_load_buffer(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                         const char *name, const char *data, size_t datalen,
                         char *err, size_t errlen);

/* inv_conf_load_buffer on a NUL-terminated string (tests). */
int inv_conf_load_string(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                         const char *name, const char *text, char *err,
                         size_t errlen);

/* Releases owned strings and lists. */
void inv_conf_free(const inv_conf_row_t *rows, size_t nrows, void *cfg);

/* Writes "--name VALUE  help (default: X)" lines. */
void inv_conf_print_help(FILE *out, const inv_conf_row_t *rows, size_t nrows);

/* Writes the effective configuration as config-file lines. A secret is
 * written as a comment saying whether it is set, never its value. */
void inv_conf_print(FILE *out, const inv_conf_row_t *rows, size_t nrows,
                    const void *cfg);

typedef enum {
  INV_CLI_RUN = 0, /* start the daemon */
  INV_CLI_HELP,    /* --help was given: usage printed to stdout */
  INV_CLI_VERSION, /* --version was given: version printed to stdout */
  INV_CLI_CHECK    /* --check-config: config valid, printed to stdout */
} inv_cli_action_t;

/*
 * The whole command line of a daemon: defaults, then "--config FILE" (or
 * "-c FILE") if given, then every other flag on top. Handles --help,
 * --version and --check-config. prog, summary and version are used for
 * --help and --version text. Returns 0 with *action set, or a negative code
 * with err set to a message meant for the user ("unknown option --foo; see
 * --help"). On error cfg has already been released (inv_conf_free on it
 * again is harmless); the caller prints err and exits 2. After a successful
 * return the caller owns cfg and releases it with inv_conf_free().
 */
int inv_cli_parse(int argc, char **argv, const inv_conf_row_t *rows,
                  size_t nrows, void *cfg, const char *prog,
                  const char *summary, const char *version,
                  inv_cli_action_t *action, char *err, size_t errlen);

#endif
