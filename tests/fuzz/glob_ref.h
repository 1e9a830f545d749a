/*
 * The reference for glob matching in tests: a plain recursive port of
 * Redis 7's stringmatchlen_impl() (util.c, case-sensitive, with the
 * 1000-level nesting limit of Redis 7.0.9 and later), written as Redis
 * writes it so that a reader can compare the two line by line. Used by
 * tests/unit/test_glob.c and tests/fuzz/fuzz_glob.c as the judge of
 * inv_glob_match(). Header-only: every function is static.
 */
#ifndef INV_TESTS_GLOB_REF_H
#define INV_TESTS_GLOB_REF_H

#include <stdlib.h>
#include <string.h>

/* Kept step by step as Redis writes it, pointer arithmetic included. The
 * pattern must be NUL-terminated past patternLen, as an sds string is: the
 * algorithm peeks at the terminator. */
static int glob_ref_impl(const char *pattern, int patternLen,
                         const char *string, int stringLen,
                         int *skipLongerMatches, int nesting) {
  if (nesting > 1000) return 0;
  while (patternLen && stringLen) {
    switch (pattern[0]) {
      case '*':
        while (patternLen && pattern[1] == '*') {
          pattern++;
          patternLen--;
        }
        if (patternLen == 1) return 1;
        while (stringLen) {
          if (glob_ref_impl(pattern + 1, patternLen - 1, string, stringLen,
                            skipLongerMatches, nesting + 1))
            return 1;
          if (*skipLongerMatches) return 0;
          string++;
          stringLen--;
        }
        *skipLongerMatches = 1;
        return 0;
      case '?':
        string++;
        stringLen--;
        break;
      case '[': {
        int not, match;
        pattern++;
        patternLen--;
        not = pattern[0] == '^';
        if (not ) {
          pattern++;
          patternLen--;
        }
        match = 0;
        while (1) {
          if (pattern[0] == '\\' && patternLen >= 2) {
            pattern++;
            patternLen--;
            if (pattern[0] == string[0]) match = 1;
          } else if (pattern[0] == ']') {
            break;
          } else if (patternLen == 0) {
            pattern--;
            patternLen++;
            break;
          } else if (patternLen >= 3 && pattern[1] == '-') {
            int start = pattern[0];
            int end = pattern[2];
            int c = string[0];
            if (start > end) {
              int t = start;
              start = end;
              end = t;
            }
            pattern += 2;
            patternLen -= 2;
            if (c >= start && c <= end) match = 1;
          } else if (pattern[0] == string[0]) {
            match = 1;
          }
          pattern++;
          patternLen--;
        }
        if (not ) match = !match;
        if (!match) return 0;
        string++;
        stringLen--;
        break;
      }
      case '\\':
        if (patternLen >= 2) {
          pattern++;
          patternLen--;
        }
        /* fall through */
      default:
        if (pattern[0] != string[0]) return 0;
        string++;
        stringLen--;
        break;
    }
    pattern++;
    patternLen--;
    if (stringLen == 0) {
      while (*pattern == '*') {
        pattern++;
        patternLen--;
      }
      break;
    }
  }
  return patternLen == 0 && stringLen == 0;
}

/* Returns 1 if Redis's SCAN MATCH (or KEYS) pat lists the key s. SCAN and
 * KEYS take the pattern "*" as "every key" before matching; any other
 * pattern goes to stringmatchlen() as a NUL-terminated copy. */
static int glob_ref_match(const char *pat, size_t plen, const char *s,
                          size_t slen) {
  int skip = 0, r;
  if (plen == 1 && pat[0] == '*') return 1;
  char *copy = malloc(plen + 1);
  if (copy == NULL) abort();
  if (plen > 0) memcpy(copy, pat, plen);
  copy[plen] = '\0';
  r = glob_ref_impl(copy, (int)plen, s, (int)slen, &skip, 0);
  free(copy);
  return r;
}

#endif
