/*
 * Tenants: the file format, credential lookup, namespace rules and token
 * buckets (see tenants.h).
 */
#include "service/tenants.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "inval/errors.h"
#include "common/base/glob.h"

/* Limits that keep a hostile or broken file from costing much. */
#define TENANTS_FILE_MAX (4 * 1024 * 1024)
#define TENANTS_WORD_MAX 4096
#define TENANTS_TOKEN_FILE_MAX 4096
#define TENANTS_RATE_MAX 100000000.0

typedef enum { CRED_TOKEN = 0, CRED_CERT = 1 } cred_kind_t;

typedef struct {
  cred_kind_t kind;
  unsigned char digest[32]; /* CRED_TOKEN: SHA-256 of the token */
  char *cert_id;            /* CRED_CERT: owned */
  size_t tenant;            /* index into tenants */
} cred_t;

struct inv_tenants_s {
  inv_tenant_t *tenants;
  size_t n, cap;
  cred_t *creds;
  size_t ncreds, credcap;
};

/* ---- small helpers ------------------------------------------------------ */

static void sha256(const void *p, size_t len, unsigned char out[32]) {
  unsigned int n = 32;
  EVP_Digest(p, len, out, &n, EVP_sha256(), NULL);
}

static int line_err(char *err, size_t errlen, const char *name, int line,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int line_err(char *err, size_t errlen, const char *name, int line,
                    const char *fmt, ...) {
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  snprintf(err, errlen, "%s:%d: %s", name, line, msg);
  return INV_ECONFIG;
}

static int name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > INV_TENANT_NAME_MAX) return 0;
  for (; *s; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
      return 0;
  }
  return 1;
}

static void tenant_release(inv_tenant_t *t) {
  for (size_t i = 0; i < t->nns; i++) free(t->ns[i]);
  free(t->ns);
  free(t->ns_len);
  t->ns = NULL;
  t->ns_len = NULL;
  t->nns = 0;
}

void inv_tenants_free(inv_tenants_t *ts) {
  if (ts == NULL) return;
  for (size_t i = 0; i < ts->n; i++) tenant_release(&ts->tenants[i]);
  for (size_t i = 0; i < ts->ncreds; i++) free(ts->creds[i].cert_id);
  free(ts->tenants);
  free(ts->creds);
  free(ts);
}

/* ---- the tokenizer ------------------------------------------------------ */

/* Cuts the next word of a line at *cur into word (NUL-terminated, at most
 * TENANTS_WORD_MAX bytes). Returns 1 for a word, 0 at the end of the line
 * (or a comment), -1 with msg set for a bad word. */
static int next_word(const char **cur, char *word, char *msg, size_t msglen) {
  const char *p = *cur;
  size_t n = 0;
  while (*p == ' ' || *p == '\t' || *p == '\r') p++;
  if (*p == '\0' || *p == '#') {
    *cur = p;
    return 0;
  }
  if (*p == '"') {
    p++;
    for (;;) {
      if (*p == '\0') {
        snprintf(msg, msglen, "unterminated quoted word");
        return -1;
      }
      if (*p == '"') {
        p++;
        break;
      }
      if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
      if (n >= TENANTS_WORD_MAX) {
        snprintf(msg, msglen, "word longer than %d bytes", TENANTS_WORD_MAX);
        return -1;
      }
      word[n++] = *p++;
    }
    if (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r') {
      snprintf(msg, msglen, "a quoted word must end before the next one");
      return -1;
    }
  } else {
    while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r') {
      if (n >= TENANTS_WORD_MAX) {
        snprintf(msg, msglen, "word longer than %d bytes", TENANTS_WORD_MAX);
        return -1;
      }
      word[n++] = *p++;
    }
  }
  word[n] = '\0';
  *cur = p;
  return 1;
}

/* ---- building the table ------------------------------------------------- */

static int add_tenant(inv_tenants_t *ts, const char *name) {
  if (ts->n == ts->cap) {
    size_t cap = ts->cap ? ts->cap * 2 : 8;
    inv_tenant_t *t = realloc(ts->tenants, cap * sizeof(*t));
    if (t == NULL) return INV_ENOMEM;
    ts->tenants = t;
    ts->cap = cap;
  }
  inv_tenant_t *t = &ts->tenants[ts->n++];
  memset(t, 0, sizeof(*t));
  snprintf(t->name, sizeof(t->name), "%s", name);
  return 0;
}

static int add_cred(inv_tenants_t *ts, cred_t *c) {
  if (ts->ncreds == ts->credcap) {
    size_t cap = ts->credcap ? ts->credcap * 2 : 8;
    cred_t *p = realloc(ts->creds, cap * sizeof(*p));
    if (p == NULL) return INV_ENOMEM;
    ts->creds = p;
    ts->credcap = cap;
  }
  ts->creds[ts->ncreds++] = *c;
  return 0;
}

/* The tenant owning an equal credential, or -1. */
static long cred_owner(const inv_tenants_t *ts, const cred_t *c) {
  for (size_t i = 0; i < ts->ncreds; i++) {
    const cred_t *o = &ts->creds[i];
    if (o->kind != c->kind) continue;
    if (c->kind == CRED_TOKEN ? memcmp(o->digest, c->digest, 32) == 0
                              : strcmp(o->cert_id, c->cert_id) == 0)
      return (long)o->tenant;
  }
  return -1;
}

static int add_namespace(inv_tenant_t *t, const char *ns, size_t len) {
  char **nsv = realloc(t->ns, (t->nns + 1) * sizeof(*nsv));
  if (nsv == NULL) return INV_ENOMEM;
  t->ns = nsv;
  size_t *lens = realloc(t->ns_len, (t->nns + 1) * sizeof(*lens));
  if (lens == NULL) return INV_ENOMEM;
  t->ns_len = lens;
  char *copy = malloc(len + 1);
  if (copy == NULL) return INV_ENOMEM;
  memcpy(copy, ns, len);
  copy[len] = '\0';
  t->ns[t->nns] = copy;
  t->ns_len[t->nns] = len;
  t->nns++;
  return 0;
}

/* Checks one namespace and adds it. */
static int take_namespace(inv_tenant_t *t, const char *ns, size_t len,
                          const char *name, int line, char *err,
                          size_t errlen) {
  if (len == 0)
    return line_err(err, errlen, name, line,
                    "tenant %s: empty namespace (an admin has no namespaces "
                    "at all)",
                    t->name);
  if (len > INV_TENANT_NS_MAX)
    return line_err(err, errlen, name, line,
                    "tenant %s: namespace longer than %d bytes", t->name,
                    INV_TENANT_NS_MAX);
  /* A namespace inside the service's own keys, or one those keys lie in,
   * would name keys no event may touch. */
  if (inv_key_reserved(ns, len) ||
      (len <= sizeof(INV_NAMESPACE) - 1 && memcmp(ns, INV_NAMESPACE, len) == 0))
    return line_err(err, errlen, name, line,
                    "tenant %s: namespace \"%.*s\" covers the service's own "
                    "keys (" INV_NAMESPACE ")",
                    t->name, (int)len, ns);
  return add_namespace(t, ns, len) < 0 ? INV_ENOMEM : 0;
}

/* Reads the first line of a token file into tok (NUL-terminated). */
static int read_token_file(const char *dir, const char *path, char *tok,
                           size_t toklen, char *msg, size_t msglen) {
  char full[4096 + 256];
  if (path[0] != '/' && dir != NULL && dir[0] != '\0')
    snprintf(full, sizeof(full), "%s/%s", dir, path);
  else
    snprintf(full, sizeof(full), "%s", path);
  FILE *f = fopen(full, "r");
  if (f == NULL) {
    snprintf(msg, msglen, "token-file %.200s: %s", full, strerror(errno));
    return -1;
  }
  size_t n = fread(tok, 1, toklen - 1, f);
  fclose(f);
  tok[n] = '\0';
  tok[strcspn(tok, "\r\n")] = '\0';
  if (tok[0] == '\0') {
    snprintf(msg, msglen, "token-file %.200s: empty", full);
    return -1;
  }
  return 0;
}

/* Digest of what defines tenant t (namespaces, rate, credentials), so a
 * reload can say which tenants changed. */
static void tenant_digest(inv_tenants_t *ts, size_t idx) {
  inv_tenant_t *t = &ts->tenants[idx];
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned int n = 32;
  if (md == NULL) return;
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  for (size_t i = 0; i < t->nns; i++)
    EVP_DigestUpdate(md, t->ns[i], t->ns_len[i] + 1);
  EVP_DigestUpdate(md, &t->rate, sizeof(t->rate));
  EVP_DigestUpdate(md, &t->burst, sizeof(t->burst));
  for (size_t i = 0; i < ts->ncreds; i++) {
    const cred_t *c = &ts->creds[i];
    if (c->tenant != idx) continue;
    if (c->kind == CRED_TOKEN)
      EVP_DigestUpdate(md, c->digest, 32);
    else
      EVP_DigestUpdate(md, c->cert_id, strlen(c->cert_id) + 1);
  }
  EVP_DigestFinal_ex(md, t->def_digest, &n);
  EVP_MD_CTX_free(md);
}

static void tenant_ns_text(inv_tenant_t *t) {
  size_t off = 0;
  t->ns_text[0] = '\0';
  for (size_t i = 0; i < t->nns && off < sizeof(t->ns_text); i++) {
    int w = snprintf(t->ns_text + off, sizeof(t->ns_text) - off, "%s%.*s",
                     i ? ", " : "", (int)t->ns_len[i], t->ns[i]);
    if (w < 0) break;
    off += (size_t)w;
  }
  if (off >= sizeof(t->ns_text))
    memcpy(t->ns_text + sizeof(t->ns_text) - 4, "...", 4);
}

static int parse_rate(const char *word, double *out) {
  char *end;
  errno = 0;
  double v = strtod(word, &end);
  if (errno != 0 || end == word || *end != '\0' || !(v >= 0) ||
      v > TENANTS_RATE_MAX)
    return -1;
  *out = v;
  return 0;
}

/* Parses one "tenant ..." line (cur is after the word "tenant"). */
static int parse_tenant_line(inv_tenants_t *ts, const char *cur,
                             const char *name, const char *dir, int line,
                             char *word, char *err, size_t errlen) {
  char msg[300];
  int r, rc, ncred = 0, burst_set = 0;

  if ((r = next_word(&cur, word, msg, sizeof(msg))) <= 0)
    return line_err(err, errlen, name, line, "%s",
                    r < 0 ? msg : "tenant needs a name");
  if (!name_ok(word))
    return line_err(
        err, errlen, name, line,
        "tenant name \"%.64s\" must be 1 to %d of A-Z a-z 0-9 _ . -", word,
        INV_TENANT_NAME_MAX);
  if (inv_tenants_find(ts, word) != NULL)
    return line_err(err, errlen, name, line, "tenant %s is defined twice",
                    word);
  if (add_tenant(ts, word) < 0) return INV_ENOMEM;
  size_t idx = ts->n - 1;
  inv_tenant_t *t = &ts->tenants[idx];

  for (;;) {
    char key[32];
    if ((r = next_word(&cur, word, msg, sizeof(msg))) < 0)
      return line_err(err, errlen, name, line, "%s", msg);
    if (r == 0) break;
    snprintf(key, sizeof(key), "%s", word);
    if ((r = next_word(&cur, word, msg, sizeof(msg))) <= 0)
      return line_err(err, errlen, name, line, "%s",
                      r < 0 ? msg : "a value must follow each word");
    if (strcmp(key, "token") == 0 || strcmp(key, "token-file") == 0 ||
        strcmp(key, "cert") == 0) {
      cred_t c = {0};
      c.tenant = idx;
      if (strcmp(key, "cert") == 0) {
        c.kind = CRED_CERT;
        c.cert_id = strdup(word);
        if (c.cert_id == NULL) return INV_ENOMEM;
      } else {
        char tok[TENANTS_TOKEN_FILE_MAX];
        const char *secret = word;
        if (strcmp(key, "token-file") == 0) {
          if (read_token_file(dir, word, tok, sizeof(tok), msg, sizeof(msg)) <
              0)
            return line_err(err, errlen, name, line, "tenant %s: %s", t->name,
                            msg);
          secret = tok;
        }
        if (secret[0] == '\0')
          return line_err(err, errlen, name, line, "tenant %s: empty token",
                          t->name);
        c.kind = CRED_TOKEN;
        sha256(secret, strlen(secret), c.digest);
        OPENSSL_cleanse(tok, sizeof(tok));
      }
      long owner = cred_owner(ts, &c);
      if (owner >= 0) {
        free(c.cert_id);
        return line_err(err, errlen, name, line,
                        "tenant %s: that %s already belongs to tenant %s",
                        t->name, c.kind == CRED_CERT ? "cert" : "token",
                        ts->tenants[owner].name);
      }
      if (add_cred(ts, &c) < 0) {
        free(c.cert_id);
        return INV_ENOMEM;
      }
      ncred++;
    } else if (strcmp(key, "namespace") == 0) {
      if ((rc = take_namespace(t, word, strlen(word), name, line, err,
                               errlen)) < 0)
        return rc;
    } else if (strcmp(key, "namespaces") == 0) {
      const char *p = word;
      for (;;) {
        size_t len = strcspn(p, ",");
        if ((rc = take_namespace(t, p, len, name, line, err, errlen)) < 0)
          return rc;
        if (p[len] == '\0') break;
        p += len + 1;
      }
    } else if (strcmp(key, "rate") == 0 || strcmp(key, "burst") == 0) {
      double v;
      if (parse_rate(word, &v) < 0)
        return line_err(err, errlen, name, line,
                        "tenant %s: %s \"%.32s\" is not a number of events "
                        "from 0 to %.0f",
                        t->name, key, word, TENANTS_RATE_MAX);
      if (key[0] == 'r') {
        t->rate = v;
      } else {
        t->burst = v;
        burst_set = 1;
      }
    } else {
      return line_err(err, errlen, name, line,
                      "tenant %s: unknown word \"%.32s\" (token, token-file, "
                      "cert, namespace, namespaces, rate, burst)",
                      t->name, key);
    }
  }
  if (ncred == 0)
    return line_err(err, errlen, name, line,
                    "tenant %s has no credential (token, token-file or cert)",
                    t->name);
  if (!burst_set) t->burst = t->rate;
  if (t->rate > 0 && t->burst < 1)
    return line_err(err, errlen, name, line,
                    "tenant %s: burst must be at least 1 event", t->name);
  t->tokens = t->burst;
  tenant_ns_text(t);
  return 0;
}

int inv_tenants_parse(const char *name, const char *dir, const char *text,
                      inv_tenants_t **out, char *err, size_t errlen) {
  inv_tenants_t *ts;
  char *word = NULL, *linebuf = NULL;
  int rc = INV_ENOMEM, line = 0;
  char msg[200];

  *out = NULL;
  ts = calloc(1, sizeof(*ts));
  word = malloc(TENANTS_WORD_MAX + 1);
  if (ts == NULL || word == NULL) goto err;
  const char *p = text;
  while (*p != '\0') {
    size_t len = strcspn(p, "\n");
    line++;
    free(linebuf);
    linebuf = malloc(len + 1);
    if (linebuf == NULL) goto err;
    memcpy(linebuf, p, len);
    linebuf[len] = '\0';
    p += len + (p[len] == '\n');
    const char *cur = linebuf;
    int r = next_word(&cur, word, msg, sizeof(msg));
    if (r < 0) {
      rc = line_err(err, errlen, name, line, "%s", msg);
      goto err;
    }
    if (r == 0) continue;
    if (strcmp(word, "tenant") != 0) {
      rc = line_err(err, errlen, name, line,
                    "unknown directive \"%.32s\" (expected tenant)", word);
      goto err;
    }
    if ((rc = parse_tenant_line(ts, cur, name, dir, line, word, err, errlen)) <
        0)
      goto err;
  }
  for (size_t i = 0; i < ts->n; i++) tenant_digest(ts, i);
  free(word);
  free(linebuf);
  *out = ts;
  return 0;

err:
  if (rc == INV_ENOMEM) snprintf(err, errlen, "%s: out of memory", name);
  free(word);
  free(linebuf);
  inv_tenants_free(ts);
  return rc;
}

int inv_tenants_load_file(const char *path, inv_tenants_t **out, char *err,
                          size_t errlen) {
  char dir[4096];
  FILE *f;
  char *text;
  long size;
  int rc;

  *out = NULL;
  f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errlen, "tenants-file %s: cannot open: %s", path,
             strerror(errno));
    return INV_ECONFIG;
  }
  /* The size is checked before the buffer is allocated. */
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    snprintf(err, errlen, "tenants-file %s: cannot read", path);
    return INV_ECONFIG;
  }
  if (size > TENANTS_FILE_MAX) {
    fclose(f);
    snprintf(err, errlen, "tenants-file %s: larger than %d bytes", path,
             TENANTS_FILE_MAX);
    return INV_ECONFIG;
  }
  text = malloc((size_t)size + 1);
  if (text == NULL) {
    fclose(f);
    snprintf(err, errlen, "out of memory");
    return INV_ENOMEM;
  }
  size_t n = fread(text, 1, (size_t)size, f);
  fclose(f);
  text[n] = '\0';
  if (strlen(text) != n) {
    free(text);
    snprintf(err, errlen, "tenants-file %s: holds a NUL byte", path);
    return INV_ECONFIG;
  }
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash != NULL)
    *slash = '\0';
  else
    dir[0] = '\0';
  rc =
      inv_tenants_parse(path, slash == dir ? "/" : dir, text, out, err, errlen);
  free(text);
  return rc;
}

/* ---- lookups --------------------------------------------------------------
 */

size_t inv_tenants_count(const inv_tenants_t *ts) {
  return ts != NULL ? ts->n : 0;
}

inv_tenant_t *inv_tenants_at(inv_tenants_t *ts, size_t i) {
  return &ts->tenants[i];
}

inv_tenant_t *inv_tenants_find(inv_tenants_t *ts, const char *name) {
  for (size_t i = 0; ts != NULL && i < ts->n; i++)
    if (strcmp(ts->tenants[i].name, name) == 0) return &ts->tenants[i];
  return NULL;
}

const inv_tenant_t *inv_tenants_authenticate(const inv_tenants_t *ts,
                                             const char *token,
                                             size_t token_len,
                                             const char *const *cert_ids,
                                             size_t ncert_ids) {
  if (ts == NULL) return NULL;
  if (token != NULL) {
    unsigned char d[32];
    const inv_tenant_t *found = NULL;
    sha256(token, token_len, d);
    /* Every token is compared, so the time taken does not say which one
     * (or whether any) matched. */
    for (size_t i = 0; i < ts->ncreds; i++) {
      const cred_t *c = &ts->creds[i];
      int eq = c->kind == CRED_TOKEN && CRYPTO_memcmp(c->digest, d, 32) == 0;
      if (eq) found = &ts->tenants[c->tenant];
    }
    return found;
  }
  for (size_t k = 0; k < ncert_ids; k++) {
    for (size_t i = 0; i < ts->ncreds; i++) {
      const cred_t *c = &ts->creds[i];
      if (c->kind == CRED_CERT && strcmp(c->cert_id, cert_ids[k]) == 0)
        return &ts->tenants[c->tenant];
    }
  }
  return NULL;
}

/* 1 when the len bytes at s start with one of t's namespaces. */
static int in_namespace(const inv_tenant_t *t, const char *s, size_t len) {
  for (size_t i = 0; i < t->nns; i++)
    if (len >= t->ns_len[i] && memcmp(s, t->ns[i], t->ns_len[i]) == 0) return 1;
  return 0;
}

int inv_tenant_allows(const inv_tenant_t *t, inv_kind_t kind,
                      const char *target, size_t len) {
  if (t->nns == 0) return 1;
  if (kind != INV_KIND_PATTERN) return in_namespace(t, target, len);
  /* Only the first INV_TENANT_NS_MAX literal bytes can decide, so the
   * literal prefix is read from a bounded head of the pattern: 2 bytes per
   * literal byte at most (an escape), plus 2 for an escape the cut may
   * split. A split escape reads as a trailing literal '\', past those
   * INV_TENANT_NS_MAX bytes, which is why the length is capped there. */
  char lit[2 * INV_TENANT_NS_MAX + 2];
  size_t head = len < sizeof(lit) ? len : sizeof(lit);
  size_t n = inv_glob_literal_prefix(target, head, lit);
  if (head < len && n > INV_TENANT_NS_MAX) n = INV_TENANT_NS_MAX;
  return in_namespace(t, lit, n);
}

int inv_tenant_take(inv_tenant_t *t, size_t n, uint64_t now_us,
                    uint64_t *retry_after_ms) {
  if (t->rate <= 0) return 0;
  if (now_us > t->refilled_us) {
    t->tokens += (double)(now_us - t->refilled_us) * t->rate / 1e6;
    if (t->tokens > t->burst) t->tokens = t->burst;
  }
  t->refilled_us = now_us;
  double need = (double)n < t->burst ? (double)n : t->burst;
  if (t->tokens >= need) {
    t->tokens -= (double)n;
    return 0;
  }
  double ms = (need - t->tokens) * 1000.0 / t->rate;
  *retry_after_ms = (uint64_t)ms + 1;
  return INV_EBUSY;
}

void inv_tenants_carry(inv_tenants_t *ts, const inv_tenants_t *old) {
  if (ts == NULL || old == NULL) return;
  for (size_t i = 0; i < ts->n; i++) {
    inv_tenant_t *t = &ts->tenants[i];
    const inv_tenant_t *o = inv_tenants_find((inv_tenants_t *)old, t->name);
    if (o == NULL) continue;
    t->accepted = o->accepted;
    t->refused = o->refused;
    t->limited = o->limited;
    /* A bucket keeps what it had (a reload is no way to reset a limit),
     * within the new burst. */
    t->refilled_us = o->refilled_us;
    t->tokens = o->tokens < t->burst ? o->tokens : t->burst;
  }
}

/* Appends " WHAT a, b" to out for the tenants of a that are (present) or
 * are not in b, and (changed) differ. */
static void describe_list(const inv_tenants_t *a, const inv_tenants_t *b,
                          int changed, const char *what, char *out,
                          size_t outlen) {
  size_t off = strlen(out);
  int first = 1;
  for (size_t i = 0; a != NULL && i < a->n && off < outlen; i++) {
    const inv_tenant_t *t = &a->tenants[i];
    const inv_tenant_t *o = inv_tenants_find((inv_tenants_t *)b, t->name);
    if (changed ? o == NULL || memcmp(o->def_digest, t->def_digest, 32) == 0
                : o != NULL)
      continue;
    int w = snprintf(out + off, outlen - off, "%s%s", first ? "; " : ", ",
                     first ? what : "");
    if (w < 0) return;
    off += (size_t)w;
    if (off >= outlen) return;
    w = snprintf(out + off, outlen - off, "%s%s", first ? " " : "", t->name);
    if (w < 0) return;
    off += (size_t)w;
    first = 0;
  }
}

void inv_tenants_describe_change(const inv_tenants_t *old,
                                 const inv_tenants_t *ts, char *out,
                                 size_t outlen) {
  snprintf(out, outlen, "%zu tenant%s", inv_tenants_count(ts),
           inv_tenants_count(ts) == 1 ? "" : "s");
  size_t before = strlen(out);
  describe_list(ts, old, 0, "added", out, outlen);
  describe_list(old, ts, 0, "removed", out, outlen);
  describe_list(ts, old, 1, "changed", out, outlen);
  if (strlen(out) == before && outlen > before)
    snprintf(out + before, outlen - before, "; unchanged");
}
