/*
 * The regeneration key contract (see keyname.h).
 */
#include "proto/keyname.h"

#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/glob.h"
#include "common/base/slot.h"

#define LOCK_LEN (sizeof(INV_LOCK_SUFFIX) - 1)
#define STALE_LEN (sizeof(INV_STALE_SUFFIX) - 1)

/* Writes B(key) to out (needs len + 2 bytes); returns its length. */
static size_t write_base(const char *key, size_t len, char *out) {
  if (inv_hash_tag(key, len, NULL, NULL)) {
    memcpy(out, key, len);
    return len;
  }
  out[0] = '{';
  memcpy(out + 1, key, len);
  out[len + 1] = '}';
  return len + 2;
}

int inv_regen_names(const char *key, size_t len, inv_regen_names_t *out) {
  memset(out, 0, sizeof(*out));
  /* One block: base + ":lock" NUL, base + ":stale" NUL. */
  size_t cap = 2 * (len + 2) + LOCK_LEN + STALE_LEN + 2;
  char *mem = malloc(cap);
  if (mem == NULL) return INV_ENOMEM;
  size_t blen = write_base(key, len, mem);
  memcpy(mem + blen, INV_LOCK_SUFFIX, LOCK_LEN + 1);
  out->lock = mem;
  out->lock_len = blen + LOCK_LEN;
  out->stale = mem + out->lock_len + 1;
  memcpy(out->stale, mem, blen);
  memcpy(out->stale + blen, INV_STALE_SUFFIX, STALE_LEN + 1);
  out->stale_len = blen + STALE_LEN;
  unsigned slot = inv_key_slot(key, len);
  out->keeps_slot = inv_key_slot(out->lock, out->lock_len) == slot &&
                    inv_key_slot(out->stale, out->stale_len) == slot;
  if (!out->keeps_slot) {
    free(mem);
    out->lock = out->stale = NULL;
    out->lock_len = out->stale_len = 0;
  }
  return 0;
}

void inv_regen_names_free(inv_regen_names_t *names) {
  if (names == NULL) return;
  free(names->lock); /* the block starts at the lock name */
  names->lock = names->stale = NULL;
}

/* Whether key (a lock or stale name, as kind says) is that name of the
 * value key k[0..klen), where k matches pat and its names keep its slot. */
static int derived_of(const char *pat, size_t patlen, const char *k,
                      size_t klen, const char *key, size_t len,
                      inv_regen_kind_t kind) {
  inv_regen_names_t n;
  if (!inv_glob_match(pat, patlen, k, klen)) return 0;
  if (inv_regen_names(k, klen, &n) != 0) return 0;
  int same = 0;
  if (n.keeps_slot) {
    const char *name = kind == INV_REGEN_LOCK ? n.lock : n.stale;
    size_t nlen = kind == INV_REGEN_LOCK ? n.lock_len : n.stale_len;
    same = nlen == len && memcmp(name, key, len) == 0;
  }
  inv_regen_names_free(&n);
  return same;
}

inv_regen_kind_t inv_regen_classify(const char *pat, size_t patlen,
                                    const char *key, size_t len, size_t *vstart,
                                    size_t *vlen) {
  inv_regen_kind_t kind;
  size_t blen;
  if (len > LOCK_LEN &&
      memcmp(key + len - LOCK_LEN, INV_LOCK_SUFFIX, LOCK_LEN) == 0) {
    kind = INV_REGEN_LOCK;
    blen = len - LOCK_LEN;
  } else if (len > STALE_LEN &&
             memcmp(key + len - STALE_LEN, INV_STALE_SUFFIX, STALE_LEN) == 0) {
    kind = INV_REGEN_STALE;
    blen = len - STALE_LEN;
  } else {
    return INV_REGEN_VALUE;
  }
  /* A tagged K is its own base. */
  if (derived_of(pat, patlen, key, blen, key, len, kind)) {
    if (vstart) *vstart = 0;
    if (vlen) *vlen = blen;
    return kind;
  }
  /* An untagged K is the base without its outer braces. */
  if (blen >= 3 && key[0] == '{' && key[blen - 1] == '}' &&
      derived_of(pat, patlen, key + 1, blen - 2, key, len, kind)) {
    if (vstart) *vstart = 1;
    if (vlen) *vlen = blen - 2;
    return kind;
  }
  return INV_REGEN_VALUE;
}

size_t inv_regen_cover_pattern(const char *pat, size_t patlen, char *out) {
  /* Walk the tokens as the matcher does, to see whether the last one is
   * finished. */
  size_t p = 0;
  while (p < patlen) {
    if (pat[p] == '\\') {
      if (p + 1 >= patlen) return 0; /* a lone trailing backslash */
      p += 2;
    } else if (pat[p] == '[') {
      p++;
      if (p < patlen && pat[p] == '^') p++;
      for (;;) {
        if (p >= patlen) return 0; /* a class without its ']' */
        if (pat[p] == '\\' && patlen - p >= 2) {
          p++;
        } else if (pat[p] == ']') {
          break;
        } else if (patlen - p >= 3 && pat[p + 1] == '-') {
          p += 2;
        }
        p++;
      }
      p++;
    } else {
      p++;
    }
  }
  out[0] = '*';
  memcpy(out + 1, pat, patlen);
  out[patlen + 1] = '*';
  return patlen + 2;
}
