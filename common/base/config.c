/*
 * Table-driven configuration: config files in redis.conf style and command
 * line flags, both applied through the same rows.
 *
 * File syntax, one directive per line:
 *   directive value [value ...]
 * Tokens are separated by spaces or tabs. A token may be double-quoted to
 * hold spaces or '#'; inside quotes \" is a quote and \\ a backslash (any
 * other backslash is kept as it is, so "C:\dir" needs no doubling). A '#'
 * that starts a token starts a comment running to the end of the line; a
 * '#' inside a token ("abc#1") is part of it. Directive names compare
 * case-insensitively. Every type takes exactly one value except
 * INV_CONF_ADDR_LIST, which takes one or more (separated by spaces or
 * commas) and appends them to the list.
 *
 * Rows of type INT, SIZE and MS whose min and max are both 0 have no bounds
 * (a range admitting only 0 would make the directive pointless).
 */
#include "common/base/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "inval/errors.h"

#define CONF_MSG_MAX 512

/* Formats a message into err (if err is not NULL). */
static void conf_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conf_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static void *conf_field(const inv_conf_row_t *row, void *cfg) {
  return (char *)cfg + row->offset;
}

static const void *conf_cfield(const inv_conf_row_t *row, const void *cfg) {
  return (const char *)cfg + row->offset;
}

/* Returns the row named name[0..len), case-insensitively, or NULL. */
static const inv_conf_row_t *conf_find(const inv_conf_row_t *rows, size_t nrows,
                                       const char *name, size_t len) {
  for (size_t i = 0; i < nrows; i++) {
    if (strlen(rows[i].name) == len &&
        strncasecmp(rows[i].name, name, len) == 0)
      return &rows[i];
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */

/* Parses a run of decimal digits at *s into *out, advancing *s. Returns 0,
 * or -1 if there is no digit or the number overflows 64 bits. */
static int conf_digits(const char **s, uint64_t *out) {
  const char *p = *s;
  uint64_t v = 0;
  if (*p < '0' || *p > '9') return -1;
  for (; *p >= '0' && *p <= '9'; p++) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *s = p;
  *out = v;
  return 0;
}

/* Checks an unsigned value against the row's bounds. Returns 0, or -1 with
 * msg set. unit is appended to the numbers ("" or "ms"). */
static int conf_check_ubounds(const inv_conf_row_t *row, uint64_t v,
                              const char *unit, char *msg, size_t msglen) {
  if (row->min == 0 && row->max == 0) return 0;
  if (row->min > 0 && v < (uint64_t)row->min) {
    conf_err(msg, msglen, "%" PRIu64 "%s is below the minimum %lld%s", v, unit,
             row->min, unit);
    return -1;
  }
  if (row->max < 0 || v > (uint64_t)row->max) {
    conf_err(msg, msglen, "%" PRIu64 "%s is above the maximum %lld%s", v, unit,
             row->max, unit);
    return -1;
  }
  return 0;
}

static int conf_parse_int(const inv_conf_row_t *row, const char *value,
                          long long *out, char *msg, size_t msglen) {
  char *end;
  errno = 0;
  long long v = strtoll(value, &end, 10);
  if (value[0] == '\0' || isspace((unsigned char)value[0]) || *end != '\0' ||
      errno == ERANGE) {
    conf_err(msg, msglen, "'%s' is not an integer", value);
    return -1;
  }
  if (!(row->min == 0 && row->max == 0)) {
    if (v < row->min) {
      conf_err(msg, msglen, "%lld is below the minimum %lld", v, row->min);
      return -1;
    }
    if (v > row->max) {
      conf_err(msg, msglen, "%lld is above the maximum %lld", v, row->max);
      return -1;
    }
  }
  *out = v;
  return 0;
}

static int conf_parse_size(const inv_conf_row_t *row, const char *value,
                           size_t *out, char *msg, size_t msglen) {
  const char *p = value;
  uint64_t v, mult = 1;
  if (conf_digits(&p, &v) != 0) goto bad;
  switch (*p) {
    case '\0':
      break;
    case 'k':
    case 'K':
      mult = 1024;
      p++;
      break;
    case 'm':
    case 'M':
      mult = 1024 * 1024;
      p++;
      break;
    case 'g':
    case 'G':
      mult = 1024 * 1024 * 1024;
      p++;
      break;
    default:
      goto bad;
  }
  if (*p != '\0') goto bad;
  if (v > SIZE_MAX / mult) {
    conf_err(msg, msglen, "'%s' is too large", value);
    return -1;
  }
  v *= mult;
  if (conf_check_ubounds(row, v, "", msg, msglen) != 0) return -1;
  *out = (size_t)v;
  return 0;
bad:
  conf_err(msg, msglen, "'%s' is not a size (a number with optional k, m or g)",
           value);
  return -1;
}

static int conf_parse_ms(const inv_conf_row_t *row, const char *value,
                         uint64_t *out, char *msg, size_t msglen) {
  const char *p = value;
  uint64_t v, mult = 1;
  if (conf_digits(&p, &v) != 0) goto bad;
  if (strcasecmp(p, "ms") == 0 || *p == '\0') {
    mult = 1;
  } else if (strcasecmp(p, "s") == 0) {
    mult = 1000;
  } else if (strcasecmp(p, "m") == 0) {
    mult = 60000;
  } else {
    goto bad;
  }
  if (v > UINT64_MAX / mult) {
    conf_err(msg, msglen, "'%s' is too large", value);
    return -1;
  }
  v *= mult;
  if (conf_check_ubounds(row, v, "ms", msg, msglen) != 0) return -1;
  *out = v;
  return 0;
bad:
  conf_err(msg, msglen,
           "'%s' is not a duration (a number with optional ms, s or m)", value);
  return -1;
}

/* Returns 1 or 0 for a boolean word, -1 for anything else. */
static int conf_bool_word(const char *value) {
  static const char *const yes[] = {"yes", "true", "on", "1"};
  static const char *const no[] = {"no", "false", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(value, yes[i]) == 0) return 1;
    if (strcasecmp(value, no[i]) == 0) return 0;
  }
  return -1;
}

static int conf_parse_enum(const inv_conf_row_t *row, const char *value,
                           int *out, char *msg, size_t msglen) {
  const char *const *names = row->enum_names;
  for (int i = 0; names && names[i]; i++) {
    if (strcasecmp(value, names[i]) == 0) {
      *out = i;
      return 0;
    }
  }
  int n = snprintf(msg, msglen, "'%s' is not one of:", value);
  for (int i = 0; names && names[i] && n >= 0 && (size_t)n < msglen; i++) {
    n += snprintf(msg + n, msglen - (size_t)n, "%s %s", i ? "," : "", names[i]);
  }
  return -1;
}

/* Parses a list of addresses separated by commas and/or whitespace and
 * appends them to list (or replaces it when replace is set). The list is
 * unchanged on error. Returns 0, INV_EINVAL or INV_ENOMEM, with msg set. */
static int conf_addr_list_add(inv_addr_list_t *list, const char *value,
                              int replace, char *msg, size_t msglen) {
  size_t cap = 1;
  for (const char *p = value; *p; p++) {
    if (*p == ',' || isspace((unsigned char)*p)) cap++;
  }
  /* A value of separators alone would otherwise size a huge array. */
  if (cap > INV_CONF_ADDR_LIST_MAX) cap = INV_CONF_ADDR_LIST_MAX;
  inv_addr_t *fresh = calloc(cap, sizeof(*fresh));
  char *copy = strdup(value);
  size_t n = 0;
  int rc = INV_ENOMEM;
  if (fresh == NULL || copy == NULL) {
    conf_err(msg, msglen, "out of memory");
    goto out;
  }
  rc = INV_EINVAL;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ", \t\r\n", &save); tok != NULL;
       tok = strtok_r(NULL, ", \t\r\n", &save)) {
    if (n == cap) {
      conf_err(msg, msglen, "more than %u addresses", INV_CONF_ADDR_LIST_MAX);
      goto out;
    }
    if (inv_addr_parse(tok, &fresh[n]) != 0) {
      conf_err(msg, msglen, "'%s' is not HOST:PORT", tok);
      goto out;
    }
    n++;
  }
  if (n == 0) {
    conf_err(msg, msglen, "missing value");
    goto out;
  }
  size_t keep = replace ? 0 : list->count;
  if (keep + n > INV_CONF_ADDR_LIST_MAX) {
    conf_err(msg, msglen, "more than %u addresses", INV_CONF_ADDR_LIST_MAX);
    goto out;
  }
  inv_addr_t *items =
      realloc(replace ? NULL : list->items, (keep + n) * sizeof(*items));
  if (items == NULL) {
    rc = INV_ENOMEM;
    conf_err(msg, msglen, "out of memory");
    goto out;
  }
  memcpy(items + keep, fresh, n * sizeof(*items));
  if (replace) free(list->items);
  list->items = items;
  list->count = keep + n;
  rc = 0;
out:
  free(fresh);
  free(copy);
  return rc;
}

/* Sets one row from text. For ADDR_LIST rows, replace empties the list
 * first. Returns 0, INV_EINVAL or INV_ENOMEM with msg set to the reason
 * (without the directive's name). */
static int conf_set_row(const inv_conf_row_t *row, void *cfg, const char *value,
                        int replace, char *msg, size_t msglen) {
  void *field = conf_field(row, cfg);
  if (value == NULL) {
    conf_err(msg, msglen, "missing value");
    return INV_EINVAL;
  }
  switch (row->type) {
    case INV_CONF_INT: {
      long long v;
      if (conf_parse_int(row, value, &v, msg, msglen) != 0) return INV_EINVAL;
      memcpy(field, &v, sizeof(v));
      return 0;
    }
    case INV_CONF_SIZE: {
      size_t v;
      if (conf_parse_size(row, value, &v, msg, msglen) != 0) return INV_EINVAL;
      memcpy(field, &v, sizeof(v));
      return 0;
    }
    case INV_CONF_MS: {
      uint64_t v;
      if (conf_parse_ms(row, value, &v, msg, msglen) != 0) return INV_EINVAL;
      memcpy(field, &v, sizeof(v));
      return 0;
    }
    case INV_CONF_BOOL: {
      int v = conf_bool_word(value);
      if (v < 0) {
        conf_err(msg, msglen,
                 "'%s' is not a boolean (yes/no, true/false, on/off, 1/0)",
                 value);
        return INV_EINVAL;
      }
      memcpy(field, &v, sizeof(v));
      return 0;
    }
    case INV_CONF_STRING:
    case INV_CONF_SECRET: {
      char *v = strdup(value);
      if (v == NULL) {
        conf_err(msg, msglen, "out of memory");
        return INV_ENOMEM;
      }
      char *old;
      memcpy(&old, field, sizeof(old));
      free(old);
      memcpy(field, &v, sizeof(v));
      return 0;
    }
    case INV_CONF_ADDR: {
      inv_addr_t a;
      if (inv_addr_parse(value, &a) != 0) {
        conf_err(msg, msglen, "'%s' is not HOST:PORT", value);
        return INV_EINVAL;
      }
      memcpy(field, &a, sizeof(a));
      return 0;
    }
    case INV_CONF_ADDR_LIST:
      return conf_addr_list_add((inv_addr_list_t *)field, value, replace, msg,
                                msglen);
    case INV_CONF_ENUM: {
      int v;
      if (conf_parse_enum(row, value, &v, msg, msglen) != 0) return INV_EINVAL;
      memcpy(field, &v, sizeof(v));
      return 0;
    }
  }
  conf_err(msg, msglen, "bad row type %d", (int)row->type);
  return INV_EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Public setters                                                           */

int inv_conf_defaults(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                      char *err, size_t errlen) {
  char msg[CONF_MSG_MAX];
  /* Owned fields are overwritten without being freed: cfg is expected to
   * be fresh (or released by inv_conf_free). */
  for (size_t i = 0; i < nrows; i++) {
    void *field = conf_field(&rows[i], cfg);
    switch (rows[i].type) {
      case INV_CONF_INT:
        memset(field, 0, sizeof(long long));
        break;
      case INV_CONF_SIZE:
        memset(field, 0, sizeof(size_t));
        break;
      case INV_CONF_MS:
        memset(field, 0, sizeof(uint64_t));
        break;
      case INV_CONF_BOOL:
      case INV_CONF_ENUM:
        memset(field, 0, sizeof(int));
        break;
      case INV_CONF_STRING:
      case INV_CONF_SECRET: {
        char *null = NULL;
        memcpy(field, &null, sizeof(null));
        break;
      }
      case INV_CONF_ADDR:
        memset(field, 0, sizeof(inv_addr_t));
        break;
      case INV_CONF_ADDR_LIST:
        memset(field, 0, sizeof(inv_addr_list_t));
        break;
    }
  }
  for (size_t i = 0; i < nrows; i++) {
    if (rows[i].def == NULL) continue;
    int rc = conf_set_row(&rows[i], cfg, rows[i].def, 1, msg, sizeof(msg));
    if (rc != 0) {
      conf_err(err, errlen, "default of %s: %s", rows[i].name, msg);
      inv_conf_free(rows, nrows, cfg);
      return rc;
    }
  }
  return 0;
}

int inv_conf_set(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                 const char *name, const char *value, char *err,
                 size_t errlen) {
  char msg[CONF_MSG_MAX];
  const inv_conf_row_t *row = conf_find(rows, nrows, name, strlen(name));
  if (row == NULL) {
    conf_err(err, errlen, "unknown directive '%s'", name);
    return INV_EINVAL;
  }
  int rc = conf_set_row(row, cfg, value, 0, msg, sizeof(msg));
  if (rc != 0) conf_err(err, errlen, "%s: %s", row->name, msg);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */

/* Cuts the next token out of the line at *cur, unquoting it in place.
 * Returns 1 with *tok set, 0 at the end of the line (or at a comment), or
 * -1 with msg set for a malformed quote. */
static int conf_next_token(char **cur, char **tok, char *msg, size_t msglen) {
  char *p = *cur;
  while (*p == ' ' || *p == '\t') p++;
  if (*p == '\0' || *p == '#') {
    *cur = p;
    return 0;
  }
  if (*p != '"') {
    *tok = p;
    while (*p != '\0' && *p != ' ' && *p != '\t') p++;
    if (*p != '\0') *p++ = '\0';
    *cur = p;
    return 1;
  }
  char *w = p;
  *tok = w;
  p++;
  for (;;) {
    if (*p == '\0') {
      conf_err(msg, msglen, "unbalanced quotes");
      return -1;
    }
    if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) {
      *w++ = p[1];
      p += 2;
    } else if (*p == '"') {
      p++;
      break;
    } else {
      *w++ = *p++;
    }
  }
  if (*p != '\0' && *p != ' ' && *p != '\t') {
    conf_err(msg, msglen, "a closing quote must be followed by a space");
    return -1;
  }
  *w = '\0';
  *cur = p;
  return 1;
}

/* Applies one line (modified in place). Returns 0 or a negative code with
 * msg set to "message" or "directive: message". */
static int conf_apply_line(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                           char *line, char *msg, size_t msglen) {
  char *cur = line, *name, *value;
  char why[CONF_MSG_MAX];
  int t = conf_next_token(&cur, &name, msg, msglen);
  if (t <= 0) return t < 0 ? INV_EINVAL : 0;
  const inv_conf_row_t *row = conf_find(rows, nrows, name, strlen(name));
  if (row == NULL) {
    conf_err(msg, msglen, "unknown directive '%s'", name);
    return INV_EINVAL;
  }
  int nvalues = 0;
  for (;;) {
    t = conf_next_token(&cur, &value, why, sizeof(why));
    if (t < 0) {
      conf_err(msg, msglen, "%s: %s", row->name, why);
      return INV_EINVAL;
    }
    if (t == 0) break;
    /* The count is checked before the value: "redis-timeout 5 s" is two
     * values, not a five-millisecond timeout that is below the minimum. */
    if (nvalues == 0 && row->type != INV_CONF_ADDR_LIST) {
      char *extra, *rest = cur;
      t = conf_next_token(&rest, &extra, why, sizeof(why));
      if (t < 0) {
        conf_err(msg, msglen, "%s: %s", row->name, why);
        return INV_EINVAL;
      }
      if (t > 0) {
        conf_err(msg, msglen,
                 "%s: takes one value, got '%s' and '%s' (write "
                 "a unit without a space, and quote a value with spaces)",
                 row->name, value, extra);
        return INV_EINVAL;
      }
    }
    int rc = conf_set_row(row, cfg, value, 0, why, sizeof(why));
    if (rc != 0) {
      conf_err(msg, msglen, "%s: %s", row->name, why);
      return rc;
    }
    nvalues++;
  }
  if (nvalues == 0) {
    conf_err(msg, msglen, "%s: missing value", row->name);
    return INV_EINVAL;
  }
  return 0;
}

int inv_conf_load_buffer(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                         const char *name, const char *data, size_t datalen,
                         char *err, size_t errlen) {
  char msg[CONF_MSG_MAX];
  unsigned lineno = 0;
  const char *p = data, *end = data + datalen;
  const char *nul;
  if (datalen > INV_CONF_MAX_BYTES) {
    conf_err(err, errlen, "%s: is over %u bytes", name, INV_CONF_MAX_BYTES);
    return INV_EINVAL;
  }
  /* Each line is copied into a NUL-terminated string, so a NUL byte would
   * silently cut it: refuse the input instead, naming the line. */
  nul = datalen > 0 ? memchr(data, '\0', datalen) : NULL;
  if (nul != NULL) {
    unsigned at = 1;
    for (const char *q = data; q < nul; q++) at += *q == '\n';
    conf_err(err, errlen, "%s:%u: contains a NUL byte", name, at);
    return INV_EINVAL;
  }
  while (p < end) {
    lineno++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    char *line = malloc(len + 1);
    if (line == NULL) {
      conf_err(err, errlen, "%s:%u: out of memory", name, lineno);
      return INV_ENOMEM;
    }
    memcpy(line, p, len);
    line[len] = '\0';
    if (len > 0 && line[len - 1] == '\r') line[len - 1] = '\0';
    int rc = conf_apply_line(rows, nrows, cfg, line, msg, sizeof(msg));
    free(line);
    if (rc != 0) {
      conf_err(err, errlen, "%s:%u: %s", name, lineno, msg);
      return rc;
    }
    p += len;
    if (p < end) p++; /* the newline */
  }
  return 0;
}

int inv_conf_load_string(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                         const char *name, const char *text, char *err,
                         size_t errlen) {
  return inv_conf_load_buffer(rows, nrows, cfg, name, text, strlen(text), err,
                              errlen);
}

int inv_conf_load_file(const inv_conf_row_t *rows, size_t nrows, void *cfg,
                       const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  char *text = NULL;
  size_t len = 0, cap = 0;
  int rc;
  if (f == NULL) {
    conf_err(err, errlen, "%s: %s", path, strerror(errno));
    return INV_EIO;
  }
  /* The buffer grows with what was read, and reading stops one chunk past
   * the limit, so a huge file (or a device) costs no more than that. */
  for (;;) {
    if (len > INV_CONF_MAX_BYTES) {
      conf_err(err, errlen, "%s: is over %u bytes", path, INV_CONF_MAX_BYTES);
      rc = INV_EINVAL;
      goto out;
    }
    if (cap - len < 4096) {
      size_t ncap = cap ? cap * 2 : 8192;
      char *ntext = realloc(text, ncap);
      if (ntext == NULL) {
        conf_err(err, errlen, "%s: out of memory", path);
        rc = INV_ENOMEM;
        goto out;
      }
      text = ntext;
      cap = ncap;
    }
    size_t n = fread(text + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0) break;
  }
  if (ferror(f)) {
    conf_err(err, errlen, "%s: read error", path);
    rc = INV_EIO;
    goto out;
  }
  rc = inv_conf_load_buffer(rows, nrows, cfg, path, text, len, err, errlen);
out:
  free(text);
  fclose(f);
  return rc;
}

void inv_conf_free(const inv_conf_row_t *rows, size_t nrows, void *cfg) {
  if (rows == NULL || cfg == NULL) return;
  for (size_t i = 0; i < nrows; i++) {
    void *field = conf_field(&rows[i], cfg);
    if (rows[i].type == INV_CONF_STRING || rows[i].type == INV_CONF_SECRET) {
      char *s;
      memcpy(&s, field, sizeof(s));
      free(s);
      s = NULL;
      memcpy(field, &s, sizeof(s));
    } else if (rows[i].type == INV_CONF_ADDR_LIST) {
      inv_addr_list_t *list = field;
      free(list->items);
      list->items = NULL;
      list->count = 0;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Printing                                                                 */

/* The placeholder shown after a flag in --help. */
static void conf_metavar(const inv_conf_row_t *row, char *out, size_t outlen) {
  switch (row->type) {
    case INV_CONF_INT:
      snprintf(out, outlen, "N");
      return;
    case INV_CONF_SIZE:
      snprintf(out, outlen, "BYTES");
      return;
    case INV_CONF_MS:
      snprintf(out, outlen, "MS");
      return;
    case INV_CONF_BOOL:
      snprintf(out, outlen, "[yes|no]");
      return;
    case INV_CONF_STRING:
    case INV_CONF_SECRET:
      snprintf(out, outlen, "TEXT");
      return;
    case INV_CONF_ADDR:
    case INV_CONF_ADDR_LIST:
      snprintf(out, outlen, "HOST:PORT");
      return;
    case INV_CONF_ENUM: {
      size_t n = 0;
      out[0] = '\0';
      for (int i = 0; row->enum_names && row->enum_names[i] && n < outlen;
           i++) {
        n += (size_t)snprintf(out + n, outlen - n, "%s%s", i ? "|" : "",
                              row->enum_names[i]);
      }
      return;
    }
  }
  snprintf(out, outlen, "VALUE");
}

/* Formats a size (type INV_CONF_SIZE: bytes, in the largest of g, m, k
 * that divides it) or a duration (INV_CONF_MS: in the largest of m, s, ms
 * that divides it) as the config file and --check-config write it. --help
 * shows defaults through this function too, so both say the same thing. */
static void conf_format_number(inv_conf_type_t type, uint64_t v, char *out,
                               size_t outlen) {
  static const struct {
    uint64_t mult;
    const char *unit;
  } sizes[] = {{1024ull * 1024 * 1024, "g"},
               {1024 * 1024, "m"},
               {1024, "k"},
               {1, ""}},
    durations[] = {{60000, "m"}, {1000, "s"}, {1, "ms"}};
  int is_size = type == INV_CONF_SIZE;
  size_t n = is_size ? 4 : 3;
  for (size_t i = 0; i < n; i++) {
    uint64_t m = is_size ? sizes[i].mult : durations[i].mult;
    if (m == 1 || (v != 0 && v % m == 0)) {
      snprintf(out, outlen, "%" PRIu64 "%s", v / m,
               is_size ? sizes[i].unit : durations[i].unit);
      return;
    }
  }
}

/* The default of a row as --help shows it: a size or a duration in the
 * canonical form of conf_format_number, anything else as written. */
static const char *conf_default_text(const inv_conf_row_t *row, char *buf,
                                     size_t buflen) {
  inv_conf_row_t unbounded = *row;
  char why[CONF_MSG_MAX];
  unbounded.min = unbounded.max = 0;
  if (row->type == INV_CONF_MS) {
    uint64_t v;
    if (conf_parse_ms(&unbounded, row->def, &v, why, sizeof(why)) == 0) {
      conf_format_number(row->type, v, buf, buflen);
      return buf;
    }
  } else if (row->type == INV_CONF_SIZE) {
    size_t v;
    if (conf_parse_size(&unbounded, row->def, &v, why, sizeof(why)) == 0) {
      conf_format_number(row->type, v, buf, buflen);
      return buf;
    }
  }
  return row->def;
}

void inv_conf_print_help(FILE *out, const inv_conf_row_t *rows, size_t nrows) {
  char meta[128];
  int width = 0;
  for (size_t i = 0; i < nrows; i++) {
    conf_metavar(&rows[i], meta, sizeof(meta));
    int w = (int)(strlen(rows[i].name) + strlen(meta) + 3);
    if (w > width) width = w;
  }
  for (size_t i = 0; i < nrows; i++) {
    char flag[512];
    conf_metavar(&rows[i], meta, sizeof(meta));
    snprintf(flag, sizeof(flag), "--%s %s", rows[i].name, meta);
    fprintf(out, "  %-*s  %s", width, flag, rows[i].help ? rows[i].help : "");
    if (rows[i].def != NULL)
      fprintf(out, " (default: %s)",
              conf_default_text(&rows[i], meta, sizeof(meta)));
    if (rows[i].type == INV_CONF_ADDR_LIST) fprintf(out, " (repeatable)");
    fputc('\n', out);
  }
}

/* Writes a value as a config-file token, quoted when it would not read
 * back as one token otherwise. */
static void conf_print_token(FILE *out, const char *s) {
  int quote = s[0] == '\0' || s[0] == '"' || s[0] == '#';
  /* A control character is quoted too: a '\r' at the end of an unquoted
   * line would be taken for a CRLF line end and dropped. */
  for (const char *p = s; *p && !quote; p++) {
    if (*p == ' ' || *p == '\t' || (unsigned char)*p < 0x20 || *p == 0x7f)
      quote = 1;
  }
  if (!quote) {
    fputs(s, out);
    return;
  }
  fputc('"', out);
  for (const char *p = s; *p; p++) {
    if (*p == '"' || *p == '\\') fputc('\\', out);
    fputc(*p, out);
  }
  fputc('"', out);
}

void inv_conf_print(FILE *out, const inv_conf_row_t *rows, size_t nrows,
                    const void *cfg) {
  char text[300];
  for (size_t i = 0; i < nrows; i++) {
    const inv_conf_row_t *row = &rows[i];
    const void *field = conf_cfield(row, cfg);
    switch (row->type) {
      case INV_CONF_INT: {
        long long v;
        memcpy(&v, field, sizeof(v));
        fprintf(out, "%s %lld\n", row->name, v);
        break;
      }
      case INV_CONF_SIZE: {
        size_t v;
        memcpy(&v, field, sizeof(v));
        conf_format_number(row->type, v, text, sizeof(text));
        fprintf(out, "%s %s\n", row->name, text);
        break;
      }
      case INV_CONF_MS: {
        uint64_t v;
        memcpy(&v, field, sizeof(v));
        conf_format_number(row->type, v, text, sizeof(text));
        fprintf(out, "%s %s\n", row->name, text);
        break;
      }
      case INV_CONF_BOOL: {
        int v;
        memcpy(&v, field, sizeof(v));
        fprintf(out, "%s %s\n", row->name, v ? "yes" : "no");
        break;
      }
      case INV_CONF_STRING: {
        const char *s;
        memcpy(&s, field, sizeof(s));
        if (s == NULL) {
          fprintf(out, "# %s (not set)\n", row->name);
        } else {
          fprintf(out, "%s ", row->name);
          conf_print_token(out, s);
          fputc('\n', out);
        }
        break;
      }
      case INV_CONF_SECRET: {
        const char *s;
        memcpy(&s, field, sizeof(s));
        fprintf(out, "# %s (%s)\n", row->name,
                s == NULL ? "not set" : "set, not shown");
        break;
      }
      case INV_CONF_ADDR: {
        const inv_addr_t *a = field;
        if (a->host[0] == '\0') {
          fprintf(out, "# %s (not set)\n", row->name);
        } else {
          inv_addr_format(a, text, sizeof(text));
          fprintf(out, "%s %s\n", row->name, text);
        }
        break;
      }
      case INV_CONF_ADDR_LIST: {
        const inv_addr_list_t *list = field;
        if (list->count == 0) fprintf(out, "# %s (not set)\n", row->name);
        for (size_t j = 0; j < list->count; j++) {
          inv_addr_format(&list->items[j], text, sizeof(text));
          fprintf(out, "%s %s\n", row->name, text);
        }
        break;
      }
      case INV_CONF_ENUM: {
        int v;
        memcpy(&v, field, sizeof(v));
        int n = 0;
        while (row->enum_names && row->enum_names[n]) n++;
        if (v >= 0 && v < n) {
          fprintf(out, "%s %s\n", row->name, row->enum_names[v]);
        } else {
          fprintf(out, "# %s (invalid value %d)\n", row->name, v);
        }
        break;
      }
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */

typedef struct {
  const inv_conf_row_t *row;
  const char *value;
} cli_flag_t;

static void cli_usage(FILE *out, const inv_conf_row_t *rows, size_t nrows,
                      const char *prog, const char *summary) {
  fprintf(out, "Usage: %s [OPTIONS]\n", prog);
  if (summary && summary[0]) fprintf(out, "%s\n", summary);
  fprintf(out,
          "\nOptions:\n"
          "  -c, --config FILE  read directives from FILE (flags override it)\n"
          "  --check-config     validate the configuration, print it and exit\n"
          "  -h, --help         print this help and exit\n"
          "  --version          print the version and exit\n"
          "\nSettings (in a config file, write \"name value\" without the "
          "dashes):\n");
  inv_conf_print_help(out, rows, nrows);
}

/* Returns 1 if arg is a boolean word that a bare BOOL flag may take as its
 * value ("--allow-flush no"). */
static int cli_is_bool_value(const char *arg) {
  return arg != NULL && arg[0] != '-' && conf_bool_word(arg) >= 0;
}

int inv_cli_parse(int argc, char **argv, const inv_conf_row_t *rows,
                  size_t nrows, void *cfg, const char *prog,
                  const char *summary, const char *version,
                  inv_cli_action_t *action, char *err, size_t errlen) {
  char msg[CONF_MSG_MAX];
  int help = 0, show_version = 0, check = 0, rc;
  int failed = 0; /* first error kept in err; --help still wins */
  size_t nflags = 0, nfiles = 0;
  size_t slots = argc > 0 ? (size_t)argc : 1;
  cli_flag_t *flags = NULL;
  const char **files = NULL;
  unsigned char *replaced = NULL;

  *action = INV_CLI_RUN;
  /* Defaults first: from here on cfg is in a defined state that
   * inv_conf_free() can release. */
  rc = inv_conf_defaults(rows, nrows, cfg, err, errlen);
  if (rc != 0) return rc;
  flags = calloc(slots, sizeof(*flags));
  files = calloc(slots, sizeof(*files));
  replaced = calloc(nrows ? nrows : 1, 1);
  if (flags == NULL || files == NULL || replaced == NULL) {
    conf_err(err, errlen, "out of memory");
    rc = INV_ENOMEM;
    goto out;
  }

  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      help = 1;
      continue;
    }
    if (strcmp(arg, "--version") == 0) {
      show_version = 1;
      continue;
    }
    if (strcmp(arg, "--check-config") == 0) {
      check = 1;
      continue;
    }
    if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
      if (i + 1 >= argc) {
        if (!failed++) conf_err(err, errlen, "--config: missing file name");
        continue;
      }
      files[nfiles++] = argv[++i];
      continue;
    }
    if (strncmp(arg, "--config=", 9) == 0) {
      files[nfiles++] = arg + 9;
      continue;
    }
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
      if (!failed++) {
        conf_err(err, errlen, "unexpected argument '%s'; see --help", arg);
      }
      continue;
    }
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t namelen = eq ? (size_t)(eq - name) : strlen(name);
    const inv_conf_row_t *row = conf_find(rows, nrows, name, namelen);
    if (row == NULL) {
      if (!failed++) {
        conf_err(err, errlen, "unknown option --%.*s; see --help", (int)namelen,
                 name);
      }
      continue;
    }
    const char *value;
    if (eq != NULL) {
      value = eq + 1;
    } else if (row->type == INV_CONF_BOOL) {
      value = cli_is_bool_value(i + 1 < argc ? argv[i + 1] : NULL) ? argv[++i]
                                                                   : "yes";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      if (!failed++) conf_err(err, errlen, "--%s: missing value", row->name);
      continue;
    }
    flags[nflags].row = row;
    flags[nflags].value = value;
    nflags++;
  }

  if (help) {
    cli_usage(stdout, rows, nrows, prog, summary);
    *action = INV_CLI_HELP;
    rc = 0;
    goto out;
  }
  if (show_version) {
    printf("%s %s\n", prog, version);
    *action = INV_CLI_VERSION;
    rc = 0;
    goto out;
  }
  if (failed) {
    rc = INV_EINVAL;
    goto out;
  }
  /* A list's default (the seed 127.0.0.1:6379, say) stands only while no
   * file or flag names one: the first address given replaces it. */
  for (size_t r = 0; r < nrows; r++) {
    if (rows[r].type != INV_CONF_ADDR_LIST) continue;
    inv_addr_list_t *list = conf_field(&rows[r], cfg);
    free(list->items);
    list->items = NULL;
    list->count = 0;
  }
  for (size_t f = 0; f < nfiles; f++) {
    rc = inv_conf_load_file(rows, nrows, cfg, files[f], err, errlen);
    if (rc != 0) goto out;
  }
  for (size_t f = 0; f < nflags; f++) {
    const inv_conf_row_t *row = flags[f].row;
    size_t idx = (size_t)(row - rows);
    int replace = row->type == INV_CONF_ADDR_LIST && !replaced[idx];
    replaced[idx] = 1;
    rc = conf_set_row(row, cfg, flags[f].value, replace, msg, sizeof(msg));
    if (rc != 0) {
      conf_err(err, errlen, "--%s: %s", row->name, msg);
      goto out;
    }
  }
  for (size_t r = 0; r < nrows; r++) {
    inv_addr_list_t *list = conf_field(&rows[r], cfg);
    if (rows[r].type != INV_CONF_ADDR_LIST || list->count > 0 ||
        rows[r].def == NULL) {
      continue;
    }
    rc = conf_set_row(&rows[r], cfg, rows[r].def, 1, msg, sizeof(msg));
    if (rc != 0) {
      conf_err(err, errlen, "default of %s: %s", rows[r].name, msg);
      goto out;
    }
  }
  if (check) {
    inv_conf_print(stdout, rows, nrows, cfg);
    *action = INV_CLI_CHECK;
  }
  rc = 0;
out:
  /* On error the configuration is released here, so a caller that prints
   * err and exits leaks nothing; inv_conf_free() on it again is harmless. */
  if (rc != 0) inv_conf_free(rows, nrows, cfg);
  free(flags);
  free(files);
  free(replaced);
  return rc;
}
