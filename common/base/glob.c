/*
 * Glob matching with the exact semantics of Redis's stringmatchlen() (as
 * used by KEYS and SCAN MATCH in Redis 7), including its quirks, without
 * its recursion:
 *
 * - '*' matches any run of bytes, '?' any one byte, '\x' the byte x.
 * - '[...]' matches one byte: '^' first negates; '\x' inside is the literal
 *   x; "a-z" is a range whose ends are swapped when reversed ("[z-a]" is
 *   "[a-z]"); a range needs three bytes left in the pattern, so "[a-]"
 *   is the range 'a'..']' and the class then continues; a class missing its
 *   ']' ends with the pattern. Range ends compare as C `char` values, as
 *   Redis does (signed on x86-64).
 * - A trailing lone '\' is a literal backslash.
 * - The empty key matches only the empty pattern and "*" (Redis's
 *   stringmatchlen() never matches an empty string against "*"; KEYS and
 *   SCAN treat the pattern "*" as "every key" before calling it).
 * - Since Redis 7.0.9, a match that has to pass through more than 1000
 *   '*' runs fails (its protection against abusive patterns). We mirror
 *   that limit so both sides agree on the same keys.
 *
 * Every token other than '*' consumes exactly one byte of the key, so the
 * classic matcher that remembers only the last '*' and backtracks to it is
 * equivalent to Redis's recursion (which itself gives up as soon as the
 * innermost '*' fails at every position). It runs in O(patlen * slen) time
 * in the worst case and constant space.
 */
#include "common/base/glob.h"

#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/slot.h"

/* The depth limit of Redis's stringmatchlen_impl(): the rest of the
 * pattern after the 1001st '*' run is never tried. */
#define GLOB_MAX_STAR_RUNS 1000

/* Matches the one-byte token at pat[*pi] (not '*') against c. Advances *pi
 * past the token and returns 1 on a match, 0 otherwise. Where the token ends
 * never depends on c. When bad is not NULL, *bad is set to 1 if the token is
 * malformed (a class that runs to the end of the pattern without its ']',
 * or a lone '\' at the end); Redis matches those anyway, as done here. */
static int glob_token(const char *pat, size_t patlen, size_t *pi, char c,
                      int *bad) {
  size_t p = *pi;
  switch (pat[p]) {
    case '?':
      *pi = p + 1;
      return 1;
    case '[': {
      int not, match = 0;
      p++;
      not = p < patlen && pat[p] == '^';
      if (not ) p++;
      for (;;) {
        if (p >= patlen) {
          /* Unterminated class: Redis steps back one byte here and then
           * forward again, ending exactly at the end of the pattern. */
          if (bad) *bad = 1;
          p = patlen;
          break;
        }
        if (pat[p] == '\\' && patlen - p >= 2) {
          p++;
          if (pat[p] == c) match = 1;
        } else if (pat[p] == ']') {
          p++;
          break;
        } else if (patlen - p >= 3 && pat[p + 1] == '-') {
          int start = pat[p], end = pat[p + 2], ci = c;
          if (start > end) {
            int t = start;
            start = end;
            end = t;
          }
          p += 2;
          if (ci >= start && ci <= end) match = 1;
        } else if (pat[p] == c) {
          match = 1;
        }
        p++;
      }
      *pi = p;
      return not ? !match : match;
    }
    case '\\':
      if (patlen - p >= 2) {
        p++;
      } else if (bad) {
        *bad = 1;
      }
      /* fall through */
    default:
      *pi = p + 1;
      return pat[p] == c;
  }
}

int inv_glob_match(const char *pat, size_t patlen, const char *s, size_t slen) {
  if (slen == 0) return patlen == 0 || (patlen == 1 && pat[0] == '*');

  size_t p = 0, i = 0;
  int have_star = 0;
  size_t star_p = 0, star_i = 0; /* resume points after the last '*' run */
  unsigned star_runs = 0;        /* '*' runs passed on the current path */
  while (i < slen) {
    if (p < patlen && pat[p] == '*') {
      while (p < patlen && pat[p] == '*') p++;
      if (p == patlen) return 1;
      if (++star_runs > GLOB_MAX_STAR_RUNS) return 0;
      have_star = 1;
      star_p = p;
      star_i = i;
      continue;
    }
    if (p < patlen && glob_token(pat, patlen, &p, s[i], NULL)) {
      i++;
      continue;
    }
    if (!have_star) return 0;
    /* Let the last '*' swallow one more byte and retry the rest. Earlier
     * stars need never be revisited: this is the same cut Redis makes with
     * its skipLongerMatches flag. */
    p = star_p;
    i = ++star_i;
  }
  while (p < patlen && pat[p] == '*') p++;
  return p == patlen;
}

int inv_glob_check(const char *pat, size_t patlen) {
  size_t p = 0;
  int bad = 0;
  while (p < patlen && !bad) {
    if (pat[p] == '*') {
      p++;
      continue;
    }
    glob_token(pat, patlen, &p, 0, &bad);
  }
  return bad ? INV_EINVAL : 0;
}

/* Returns the first byte value (0..255) that the one-byte token at pat[*pi]
 * rejects, or -1 when it accepts all 256. Advances *pi past the token. The
 * token is tried on every byte with the matcher's own glob_token(), so the
 * answer is the matcher's, quirks included (signed ranges, "[a-]", "[^]",
 * an unclosed class). */
static int glob_token_rejects(const char *pat, size_t patlen, size_t *pi) {
  size_t start = *pi;
  int rejected = -1;
  for (int b = 0; b < 256; b++) {
    *pi = start;
    if (!glob_token(pat, patlen, pi, (char)(unsigned char)b, NULL)) {
      rejected = b;
      break;
    }
  }
  if (rejected >= 0) {
    /* Where a token ends does not depend on the byte tried. */
    *pi = start;
    glob_token(pat, patlen, pi, 0, NULL);
  }
  return rejected;
}

int inv_glob_unmatched_byte(const char *pat, size_t patlen) {
  size_t p = 0;
  while (p < patlen) {
    if (pat[p] == '*') {
      p++;
      continue;
    }
    int b = glob_token_rejects(pat, patlen, &p);
    if (b >= 0) return b;
  }
  return -1;
}

int inv_glob_matches_everything(const char *pat, size_t patlen) {
  /* The empty pattern matches the empty key only. */
  if (patlen == 0) return 0;
  if (inv_glob_unmatched_byte(pat, patlen) >= 0) return 0;
  /* Every token takes every byte. A match still has to pass each '*' run
   * that some token follows; past GLOB_MAX_STAR_RUNS of them Redis (and
   * inv_glob_match) gives up, so such a pattern matches no key at all. */
  unsigned runs = 0;
  for (size_t p = 0; p < patlen; p++) {
    if (pat[p] == '*' && (p + 1 == patlen || pat[p + 1] != '*')) {
      if (p + 1 < patlen) runs++;
    }
  }
  return runs <= GLOB_MAX_STAR_RUNS;
}

size_t inv_glob_literal_prefix(const char *pat, size_t patlen, char *out) {
  size_t n = 0;
  for (size_t p = 0; p < patlen; p++) {
    char c = pat[p];
    if (c == '*' || c == '?' || c == '[') break;
    if (c == '\\' && p + 1 < patlen) c = pat[++p];
    if (out) out[n] = c;
    n++;
  }
  return n;
}

int inv_glob_pinned_slot(const char *pat, size_t patlen, unsigned *slot) {
  if (patlen == 0) return 0;
  /* The literal prefix is at most patlen bytes; short patterns (the usual
   * case) avoid the heap. */
  char stackbuf[512];
  char *lit = stackbuf;
  char *heap = NULL;
  if (patlen > sizeof(stackbuf)) {
    heap = malloc(patlen);
    if (heap == NULL) return 0;
    lit = heap;
  }
  size_t litlen = inv_glob_literal_prefix(pat, patlen, lit);
  size_t start, len;
  /* inv_hash_tag() only reports a tag whose closing '}' it found, so a tag
   * found in the prefix is exactly the tag of every key that starts with
   * the prefix, which every matching key does. */
  int pinned = inv_hash_tag(lit, litlen, &start, &len);
  if (pinned && slot) *slot = inv_crc16(lit + start, len) & (INV_SLOTS - 1);
  free(heap);
  return pinned;
}

size_t inv_glob_from_prefix(const char *prefix, size_t prefixlen, char *out) {
  size_t n = 0;
  for (size_t i = 0; i < prefixlen; i++) {
    char c = prefix[i];
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') {
      out[n++] = '\\';
    }
    out[n++] = c;
  }
  out[n++] = '*';
  return n;
}
