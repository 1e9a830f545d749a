/*
 * Atomic state file with ownership records (see state_file.h).
 */
#include "workers/state_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/errors.h"

int inv_state_path(const char *dir, const char *id, char *out, size_t outlen) {
  int n = snprintf(out, outlen, "%s/worker-", dir);
  if (n < 0 || (size_t)n >= outlen) return INV_EINVAL;
  size_t len = (size_t)n;
  for (const char *p = id; *p; p++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (len + 1 >= outlen) return INV_EINVAL;
    out[len++] = ok ? c : '_';
  }
  if (len + sizeof(".state") > outlen) return INV_EINVAL;
  memcpy(out + len, ".state", sizeof(".state"));
  return 0;
}

unsigned inv_state_slot_count(const uint8_t slots[INV_SLOTS / 8]) {
  unsigned n = 0;
  for (size_t i = 0; i < INV_SLOTS / 8; i++)
    n += (unsigned)__builtin_popcount(slots[i]);
  return n;
}

/* Reads one unsigned slot number from [*p, end). Returns 0 or -1. */
static int parse_slot(const char **p, const char *end, unsigned *out) {
  unsigned v = 0;
  const char *s = *p;
  if (s == end || *s < '0' || *s > '9') return -1;
  while (s < end && *s >= '0' && *s <= '9' && s - *p < 6)
    v = v * 10 + (unsigned)(*s++ - '0');
  if (v >= INV_SLOTS || (s < end && *s >= '0' && *s <= '9')) return -1;
  *p = s;
  *out = v;
  return 0;
}

/* Parses "-" or "a-b,c,..." (the whole of [p, end)) into bits (ORed in).
 * Returns 0 or -1. */
static int parse_ranges(const char *p, const char *end, uint8_t *bits) {
  if (end - p == 1 && *p == '-') return 0;
  while (p < end) {
    unsigned a, b;
    if (parse_slot(&p, end, &a) != 0) return -1;
    b = a;
    if (p < end && *p == '-') {
      p++;
      if (parse_slot(&p, end, &b) != 0 || b < a) return -1;
    }
    for (unsigned s = a; s <= b; s++) bits[s >> 3] |= (uint8_t)(1u << (s & 7));
    if (p == end) break;
    if (*p != ',' || ++p == end) return -1;
  }
  return 0;
}

/* Splits the next space-separated word off [*p, end). */
static int next_word(const char **p, const char *end, const char **w,
                     size_t *len) {
  const char *s = *p;
  while (s < end && *s == ' ') s++;
  const char *e = s;
  while (e < end && *e != ' ') e++;
  if (e == s) return -1;
  *w = s;
  *len = (size_t)(e - s);
  *p = e;
  return 0;
}

static int word_is(const char *w, size_t len, const char *lit) {
  return len == strlen(lit) && memcmp(w, lit, len) == 0;
}

static void merge_owed(inv_state_t *st, const inv_state_owed_t *o) {
  for (int i = 0; i < st->nowed; i++) {
    inv_state_owed_t *m = &st->owed[i];
    if (m->all != o->all) continue;
    if (inv_sid_cmp(o->from, m->from) < 0) m->from = o->from;
    if (inv_sid_cmp(o->upto, m->upto) > 0) m->upto = o->upto;
    for (size_t j = 0; j < sizeof(m->slots); j++) m->slots[j] |= o->slots[j];
    return;
  }
  st->owed[st->nowed++] = *o;
}

/* Parses one record line. Returns 0 or -1. */
static int parse_record(const char *p, const char *end, inv_state_t *st) {
  const char *w;
  size_t n;
  if (next_word(&p, end, &w, &n) != 0) return -1;
  if (word_is(w, n, "role")) {
    if (next_word(&p, end, &w, &n) != 0) return -1;
    if (word_is(w, n, "primary")) {
      st->role = INV_STATE_PRIMARY;
      st->master[0] = '\0';
    } else if (word_is(w, n, "replica")) {
      if (next_word(&p, end, &w, &n) != 0 || n >= sizeof(st->master)) return -1;
      st->role = INV_STATE_REPLICA;
      memcpy(st->master, w, n);
      st->master[n] = '\0';
    } else {
      return -1;
    }
  } else if (word_is(w, n, "slots")) {
    if (next_word(&p, end, &w, &n) != 0) return -1;
    memset(st->slots, 0, sizeof(st->slots));
    if (parse_ranges(w, w + n, st->slots) != 0) return -1;
    st->has_slots = 1;
  } else if (word_is(w, n, "owed")) {
    inv_state_owed_t o;
    memset(&o, 0, sizeof(o));
    if (next_word(&p, end, &w, &n) != 0 || inv_sid_parse(w, n, &o.from) != 0 ||
        next_word(&p, end, &w, &n) != 0 || inv_sid_parse(w, n, &o.upto) != 0 ||
        next_word(&p, end, &w, &n) != 0)
      return -1;
    if (word_is(w, n, "all")) o.all = 1;
    else if (parse_ranges(w, w + n, o.slots) != 0) return -1;
    merge_owed(st, &o);
  } else {
    return -1;
  }
  return next_word(&p, end, &w, &n) == 0 ? -1 : 0; /* nothing after it */
}

int inv_state_read(const char *path, inv_state_t *st, char *err, size_t errlen) {
  memset(st, 0, sizeof(*st));
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return INV_EIO;
  }
  /* One byte more than allowed tells an oversized file from a full one. */
  char *text = malloc(INV_STATE_MAX_BYTES + 1);
  if (text == NULL) {
    fclose(f);
    snprintf(err, errlen, "%s: out of memory", path);
    return INV_EIO;
  }
  size_t len = fread(text, 1, INV_STATE_MAX_BYTES + 1, f);
  int rerr = ferror(f);
  fclose(f);
  int rc = 1;
  if (rerr || len > INV_STATE_MAX_BYTES) {
    snprintf(err, errlen, "%s: %s", path,
             rerr ? "read error" : "larger than a state file can be");
    rc = INV_EIO;
    goto out;
  }
  const char *p = text, *end = text + len;
  for (int line = 1; p < end || line == 1; line++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl != NULL ? nl : end;
    const char *next = nl != NULL ? nl + 1 : end;
    while (e > p && (e[-1] == '\r' || e[-1] == ' ')) e--;
    if (line == 1) {
      if (inv_sid_parse(p, (size_t)(e - p), &st->pos) != 0) {
        snprintf(err, errlen, "%s: not a stream id", path);
        rc = INV_EINVAL;
        goto out;
      }
    } else if (e > p && parse_record(p, e, st) != 0) {
      inv_sid_t pos = st->pos;
      memset(st, 0, sizeof(*st));
      st->pos = pos;
      snprintf(err, errlen, "%s: line %d is not a role, slots or owed record",
               path, line);
      rc = INV_EPROTO;
      goto out;
    }
    p = next;
  }
out:
  free(text);
  return rc;
}

/* Appends the ranges of a slot bitmap ("-" when empty). */
static int put_ranges(inv_buf_t *b, const uint8_t *bits) {
  int any = 0;
  for (unsigned s = 0; s < INV_SLOTS; s++) {
    if (!((bits[s >> 3] >> (s & 7)) & 1)) continue;
    unsigned e = s;
    while (e + 1 < INV_SLOTS && ((bits[(e + 1) >> 3] >> ((e + 1) & 7)) & 1)) e++;
    int rc = e == s ? inv_buf_printf(b, "%s%u", any ? "," : "", s)
                    : inv_buf_printf(b, "%s%u-%u", any ? "," : "", s, e);
    if (rc != 0) return rc;
    any = 1;
    s = e;
  }
  return any ? 0 : inv_buf_append(b, "-", 1);
}

static int format_state(inv_buf_t *b, const inv_state_t *st) {
  char a[INV_SID_STRLEN], c[INV_SID_STRLEN];
  int rc = inv_buf_printf(b, "%s\n", inv_sid_format(st->pos, a));
  if (rc == 0 && st->role == INV_STATE_PRIMARY)
    rc = inv_buf_printf(b, "role primary\n");
  else if (rc == 0 && st->role == INV_STATE_REPLICA)
    rc = inv_buf_printf(b, "role replica %s\n",
                        st->master[0] != '\0' ? st->master : "-");
  if (rc == 0 && st->has_slots) {
    rc = inv_buf_printf(b, "slots ");
    if (rc == 0) rc = put_ranges(b, st->slots);
    if (rc == 0) rc = inv_buf_append(b, "\n", 1);
  }
  for (int i = 0; rc == 0 && i < st->nowed && i < INV_STATE_OWED_MAX; i++) {
    const inv_state_owed_t *o = &st->owed[i];
    rc = inv_buf_printf(b, "owed %s %s ", inv_sid_format(o->from, a),
                        inv_sid_format(o->upto, c));
    if (rc == 0) rc = o->all ? inv_buf_printf(b, "all") : put_ranges(b, o->slots);
    if (rc == 0) rc = inv_buf_append(b, "\n", 1);
  }
  return rc;
}

int inv_state_write(const char *path, const inv_state_t *st, char *err,
                    size_t errlen) {
  char tmp[4200], dirbuf[4200];
  inv_buf_t text = {0};
  int fd = -1;
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
    snprintf(err, errlen, "%s: path too long", path);
    return INV_EIO;
  }
  if (format_state(&text, st) != 0) {
    inv_buf_free(&text);
    snprintf(err, errlen, "%s: out of memory", path);
    return INV_EIO;
  }
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) goto err;
  if (write(fd, text.data, text.len) != (ssize_t)text.len) goto err;
  if (fsync(fd) != 0) goto err;
  if (close(fd) != 0) {
    fd = -1;
    goto err;
  }
  fd = -1;
  if (rename(tmp, path) != 0) goto err;
  inv_buf_free(&text);
  /* The rename is durable only once the directory is synced. */
  snprintf(dirbuf, sizeof(dirbuf), "%s", path);
  fd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  return 0;
err:
  snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
  if (fd >= 0) close(fd);
  unlink(tmp);
  inv_buf_free(&text);
  return INV_EIO;
}

int inv_state_load(const char *path, inv_sid_t *out, char *err, size_t errlen) {
  inv_state_t *st = malloc(sizeof(*st));
  if (st == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    return INV_EIO;
  }
  int rc = inv_state_read(path, st, err, errlen);
  if (rc == INV_EPROTO) rc = 1;
  if (rc == 1) *out = st->pos;
  free(st);
  return rc;
}

int inv_state_save(const char *path, inv_sid_t id, char *err, size_t errlen) {
  inv_state_t *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    return INV_EIO;
  }
  st->pos = id;
  int rc = inv_state_write(path, st, err, errlen);
  free(st);
  return rc;
}
