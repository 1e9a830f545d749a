/* Unit tests for common/glob: Redis KEYS/SCAN MATCH semantics, literal
 * prefixes, pinned slots and prefix escaping.
 *
 * Besides hand-written cases, the reference port of Redis's recursive
 * stringmatchlen() (tests/fuzz/glob_ref.h, with its 1000-level nesting
 * limit) is checked against inv_glob_match() on a few hundred thousand
 * random pattern/key pairs. */
#include "common/base/glob.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inval/errors.h"
#include "common/base/latency.h"
#include "common/base/slot.h"
#include "tests/fuzz/glob_ref.h"
#include "tests/unit/check.h"

#define M(p, s) inv_glob_match(p, strlen(p), s, strlen(s))

/* ---- hand-written cases ------------------------------------------------ */

static void test_literals(void) {
  CHECK_EQ_INT(M("abc", "abc"), 1);
  CHECK_EQ_INT(M("abc", "abd"), 0);
  CHECK_EQ_INT(M("abc", "ab"), 0);
  CHECK_EQ_INT(M("abc", "abcd"), 0);
  CHECK_EQ_INT(M("", ""), 1);
  CHECK_EQ_INT(M("", "a"), 0);
  CHECK_EQ_INT(M("a", ""), 0);
  /* Byte-wise: no case folding. */
  CHECK_EQ_INT(M("ABC", "abc"), 0);
}

static void test_star_question(void) {
  CHECK_EQ_INT(M("*", "anything"), 1);
  CHECK_EQ_INT(M("*", ""), 1);  /* KEYS * lists the empty key */
  CHECK_EQ_INT(M("**", ""), 0); /* ... but only "*" itself does */
  CHECK_EQ_INT(M("?", ""), 0);
  CHECK_EQ_INT(M("*a", ""), 0);
  CHECK_EQ_INT(M("**", "x"), 1);
  CHECK_EQ_INT(M("user:*", "user:"), 1);
  CHECK_EQ_INT(M("user:*", "user:42"), 1);
  CHECK_EQ_INT(M("user:*", "use"), 0);
  CHECK_EQ_INT(M("*:42", "user:42"), 1);
  CHECK_EQ_INT(M("*:42", "user:421"), 0);
  CHECK_EQ_INT(M("a*b*c", "abc"), 1);
  CHECK_EQ_INT(M("a*b*c", "aXXbYYc"), 1);
  CHECK_EQ_INT(M("a*b*c", "aXXbYYcZ"), 0);
  CHECK_EQ_INT(M("a*b*c", "acb"), 0);
  CHECK_EQ_INT(M("*ab", "aab"), 1);
  CHECK_EQ_INT(M("*abc", "ab"), 0);
  CHECK_EQ_INT(M("a*", "a"), 1);
  CHECK_EQ_INT(M("a*?", "a"), 0);
  CHECK_EQ_INT(M("a*?", "ab"), 1);
  CHECK_EQ_INT(M("?", "x"), 1);
  CHECK_EQ_INT(M("?", "xy"), 0);
  CHECK_EQ_INT(M("h?llo", "hello"), 1);
  CHECK_EQ_INT(M("h?llo", "hllo"), 0);
  CHECK_EQ_INT(M("h*llo", "hllo"), 1);
  CHECK_EQ_INT(M("*?*", "a"), 1);
  CHECK_EQ_INT(M("*?*?", "a"), 0);
  CHECK_EQ_INT(M("a**b", "ab"), 1);
  CHECK_EQ_INT(M("a*b**", "ab"), 1);
}

static void test_classes(void) {
  CHECK_EQ_INT(M("h[ae]llo", "hello"), 1);
  CHECK_EQ_INT(M("h[ae]llo", "hallo"), 1);
  CHECK_EQ_INT(M("h[ae]llo", "hillo"), 0);
  CHECK_EQ_INT(M("h[^e]llo", "hallo"), 1);
  CHECK_EQ_INT(M("h[^e]llo", "hello"), 0);
  CHECK_EQ_INT(M("h[a-b]llo", "hbllo"), 1);
  CHECK_EQ_INT(M("h[a-b]llo", "hcllo"), 0);
  CHECK_EQ_INT(M("[a-z]", "m"), 1);
  CHECK_EQ_INT(M("[a-z]", "A"), 0);
  /* A reversed range is swapped. */
  CHECK_EQ_INT(M("[z-a]", "m"), 1);
  CHECK_EQ_INT(M("[z-a]", "A"), 0);
  CHECK_EQ_INT(M("[0-9a-f]", "c"), 1);
  CHECK_EQ_INT(M("[0-9a-f]", "5"), 1);
  CHECK_EQ_INT(M("[0-9a-f]", "g"), 0);
  CHECK_EQ_INT(M("[^0-9]", "5"), 0);
  CHECK_EQ_INT(M("[^0-9]", "x"), 1);
  /* Escapes inside a class. */
  CHECK_EQ_INT(M("[\\]]", "]"), 1);
  CHECK_EQ_INT(M("[\\]]", "\\"), 0);
  CHECK_EQ_INT(M("[\\-]", "-"), 1);
  CHECK_EQ_INT(M("[a\\-z]", "m"), 0);
  CHECK_EQ_INT(M("[a\\-z]", "-"), 1);
  CHECK_EQ_INT(M("[\\^a]", "^"), 1);
  /* "[]" is an empty class: it matches nothing. */
  CHECK_EQ_INT(M("[]", "a"), 0);
  CHECK_EQ_INT(M("[]]", "]"), 0);
  CHECK_EQ_INT(M("[^]", "a"), 1);
  /* "[a-]" is the range 'a'..']' (']' < 'a', so ']'..'a'), after which the
   * class continues until the next ']' or the end of the pattern. */
  CHECK_EQ_INT(M("[a-]", "_"), 1);
  CHECK_EQ_INT(M("[a-]", "b"), 0);
  CHECK_EQ_INT(M("[a-]x]", "_"), 1);
  /* Unterminated classes end with the pattern. */
  CHECK_EQ_INT(M("[abc", "b"), 1);
  CHECK_EQ_INT(M("[abc", "d"), 0);
  CHECK_EQ_INT(M("a[", "ab"), 0);
  CHECK_EQ_INT(M("a[^", "ab"), 1);
  CHECK_EQ_INT(M("[", "["), 0);
  CHECK_EQ_INT(M("x[a-", "x-"), 1);
  CHECK_EQ_INT(M("x[a-", "xb"), 0);
  CHECK_EQ_INT(M("[\\", "\\"), 1);
  /* A class is one byte. */
  CHECK_EQ_INT(M("[ab]", "ab"), 0);
  CHECK_EQ_INT(M("[ab]*", "ab"), 1);
}

static void test_escapes(void) {
  CHECK_EQ_INT(M("\\*", "*"), 1);
  CHECK_EQ_INT(M("\\*", "a"), 0);
  CHECK_EQ_INT(M("\\?", "?"), 1);
  CHECK_EQ_INT(M("\\?", "x"), 0);
  CHECK_EQ_INT(M("\\[a]", "[a]"), 1);
  CHECK_EQ_INT(M("\\[a]", "a"), 0);
  CHECK_EQ_INT(M("\\\\", "\\"), 1);
  CHECK_EQ_INT(M("\\a", "a"), 1);
  CHECK_EQ_INT(M("a\\*b*", "a*bcd"), 1);
  CHECK_EQ_INT(M("a\\*b*", "axbcd"), 0);
  /* A trailing lone backslash is a literal backslash. */
  CHECK_EQ_INT(M("a\\", "a\\"), 1);
  CHECK_EQ_INT(M("a\\", "a"), 0);
  CHECK_EQ_INT(M("\\", "\\"), 1);
  CHECK_EQ_INT(M("*\\", "abc\\"), 1);
}

static void test_binary(void) {
  CHECK_EQ_INT(inv_glob_match("a\0*", 3, "a\0bc", 4), 1);
  CHECK_EQ_INT(inv_glob_match("a\0*", 3, "a\1bc", 4), 0);
  CHECK_EQ_INT(inv_glob_match("?", 1, "\0", 1), 1);
  CHECK_EQ_INT(inv_glob_match("[\0]", 3, "\0", 1), 1);
  CHECK_EQ_INT(inv_glob_match("\xff*", 2, "\xff\xfe", 2), 1);
  CHECK_EQ_INT(inv_glob_match("[\x80-\xff]", 5, "\x90", 1), 1);
  CHECK_EQ_INT(inv_glob_match("[\x80-\xff]", 5, "a", 1), 0);
  /* Range ends compare as C char, like Redis: on platforms where char is
   * signed, "[a-\xff]" spans -1..'a' and holds '0' but not 'b'. */
  if ((char)0xff < 0) {
    CHECK_EQ_INT(inv_glob_match("[a-\xff]", 5, "0", 1), 1);
    CHECK_EQ_INT(inv_glob_match("[a-\xff]", 5, "b", 1), 0);
  } else {
    CHECK_EQ_INT(inv_glob_match("[a-\xff]", 5, "b", 1), 1);
    CHECK_EQ_INT(inv_glob_match("[a-\xff]", 5, "0", 1), 0);
  }
  /* Lengths bound the strings: bytes past them are ignored. */
  CHECK_EQ_INT(inv_glob_match("abX", 2, "abY", 2), 1);
}

static void test_pathological(void) {
  /* Exponential for a naive backtracker; linear-ish here. */
  char s[20001];
  memset(s, 'a', sizeof(s) - 1);
  s[sizeof(s) - 1] = '\0';
  const char *pat = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
  uint64_t t0 = inv_now_us();
  CHECK_EQ_INT(M(pat, s), 0);
  CHECK_EQ_INT(M("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a", s), 1);
  uint64_t t1 = inv_now_us();
  CHECK(t1 - t0 < 2000000);
  /* A match that needs more than 1000 '*' runs fails, as in Redis. */
  size_t n = 1001;
  char *many = malloc(2 * n + 2);
  for (size_t i = 0; i < n; i++) {
    many[2 * i] = '*';
    many[2 * i + 1] = 'a';
  }
  many[2 * n] = '\0';
  CHECK_EQ_INT(inv_glob_match(many, 2 * n, s, n), 0);
  CHECK_EQ_INT(glob_ref_match(many, 2 * n, s, n), 0);
  CHECK_EQ_INT(inv_glob_match(many, 2 * 1000, s, n), 1);
  CHECK_EQ_INT(glob_ref_match(many, 2 * 1000, s, n), 1);
  /* A trailing '*' run needs no further nesting. */
  many[2 * n] = '*';
  CHECK_EQ_INT(inv_glob_match(many, 2 * 1000 + 1, s, n), 1);
  CHECK_EQ_INT(inv_glob_match(many, 2 * n + 1, s, n), 0);
  CHECK_EQ_INT(glob_ref_match(many, 2 * n + 1, s, n), 0);
  free(many);
}

/* ---- randomized agreement with the reference model --------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (unsigned)(rng_state % n);
}

static void test_random_vs_reference(void) {
  static const char pat_alpha[] = "ab*?[]^-\\\x80\xff";
  static const char key_alpha[] = "ab[]^-\\*?\x80\xff";
  char pat[16], key[16];
  int mismatches = 0;
  for (int iter = 0; iter < 300000; iter++) {
    size_t plen = rnd(10), klen = rnd(9);
    for (size_t i = 0; i < plen; i++)
      pat[i] = pat_alpha[rnd(sizeof(pat_alpha) - 1)];
    for (size_t i = 0; i < klen; i++)
      key[i] = key_alpha[rnd(sizeof(key_alpha) - 1)];
    int got = inv_glob_match(pat, plen, key, klen);
    int want = glob_ref_match(pat, plen, key, klen);
    if (got != want && mismatches++ < 5) {
      fprintf(stderr, "mismatch: pattern \"%.*s\" key \"%.*s\": %d != %d\n",
              (int)plen, pat, (int)klen, key, got, want);
    }
  }
  CHECK_EQ_INT(mismatches, 0);
}

/* ---- helpers: literal prefix, pinned slot, everything, from_prefix ----- */

static void test_matches_everything(void) {
#define E(p) inv_glob_matches_everything(p, sizeof(p) - 1)
  CHECK_EQ_INT(E("*"), 1);
  CHECK_EQ_INT(E("**"), 1);
  CHECK_EQ_INT(E("*?*"), 1);
  CHECK_EQ_INT(E("?*"), 1);
  /* No token restricts a byte: only the lengths decide, so these are
   * flushes too. */
  CHECK_EQ_INT(E("?"), 1);
  CHECK_EQ_INT(E("??"), 1);
  CHECK_EQ_INT(E("??*"), 1);
  /* An empty negated class takes any byte. */
  CHECK_EQ_INT(E("*[^]*"), 1);
  CHECK_EQ_INT(E("[^]*"), 1);
  CHECK_EQ_INT(E("*[^]"), 1);
  CHECK_EQ_INT(E("[^]"), 1);
  /* Unclosed negated classes (malformed, but judged all the same). */
  CHECK_EQ_INT(E("*[^"), 1);
  CHECK_EQ_INT(E("[^"), 1);
  /* Range ends compare as signed char: 0x80..0x7f spans all 256. */
  if ((char)0x80 < 0) {
    CHECK_EQ_INT(E("*[\x80-\x7f]*"), 1);
    /* ... while 0x00..0xff is the range -1..0: two bytes. */
    CHECK_EQ_INT(E("*[\x00-\xff]*"), 0);
  }
  CHECK_EQ_INT(E("[^\x01-\x01][^]*"), 0);
  CHECK_EQ_INT(E("[^a-a]*"), 0);
  CHECK_EQ_INT(E("[\x01-\x7f\x80-\xff\\\x00]*"), 1);
  CHECK_EQ_INT(E("[^\\\x00]*"), 0);
  /* A literal byte, escaped or not, restricts. */
  CHECK_EQ_INT(E("a*"), 0);
  CHECK_EQ_INT(E("\\*"), 0);
  CHECK_EQ_INT(E("[*]"), 0);
  CHECK_EQ_INT(E("*\\"), 0);
  CHECK_EQ_INT(E("["), 0); /* an empty unclosed class takes nothing */
  CHECK_EQ_INT(E("*["), 0);
  CHECK_EQ_INT(E("[]*"), 0);
  /* The empty pattern matches the empty key only. */
  CHECK_EQ_INT(E(""), 0);
#undef E
  /* Past 1000 '*' runs followed by a token, Redis gives up: the pattern
   * matches no key at all, so it is no flush. A trailing run is free. */
  size_t n = 1001;
  char *many = malloc(2 * n + 1);
  for (size_t i = 0; i < n; i++) {
    many[2 * i] = '*';
    many[2 * i + 1] = '?';
  }
  many[2 * n] = '*';
  CHECK_EQ_INT(inv_glob_matches_everything(many, 2 * n), 0);
  CHECK_EQ_INT(inv_glob_match(many, 2 * n, "x", 1), 0);
  CHECK_EQ_INT(inv_glob_matches_everything(many, 2 * 1000 + 1), 1);
  CHECK_EQ_INT(inv_glob_matches_everything(many + 1, 2 * n), 1);
  free(many);
}

static void test_unmatched_byte(void) {
#define U(p) inv_glob_unmatched_byte(p, sizeof(p) - 1)
  CHECK_EQ_INT(U("*"), -1);
  CHECK_EQ_INT(U("*[^]?"), -1);
  CHECK_EQ_INT(U("a*"), 0); /* the first byte 'a' rejects is 0 */
  CHECK_EQ_INT(U("\x00*"), 1);
  CHECK_EQ_INT(U("*[^\x00-\x02]"), 0);
  CHECK_EQ_INT(U("[\x00-\x02]"), 3);
  CHECK_EQ_INT(U("?[^\\\x00]"), 0);
  CHECK_EQ_INT(U("["), 0);
#undef U
}

static void test_check(void) {
#define C(p) inv_glob_check(p, sizeof(p) - 1)
  CHECK_EQ_INT(C(""), 0);
  CHECK_EQ_INT(C("*"), 0);
  CHECK_EQ_INT(C("user:[0-9]*"), 0);
  CHECK_EQ_INT(C("[]"), 0);
  CHECK_EQ_INT(C("[]]"), 0);
  CHECK_EQ_INT(C("[^]"), 0);
  CHECK_EQ_INT(C("[\\]]"), 0);
  CHECK_EQ_INT(C("[a-]x]"), 0);
  CHECK_EQ_INT(C("\\["), 0);
  CHECK_EQ_INT(C("\\\\"), 0);
  CHECK_EQ_INT(C("a]"), 0);
  CHECK_EQ_INT(C("[[]"), 0);
  CHECK_EQ_INT(C("[\\\\]"), 0);
  CHECK_EQ_INT(C("[*]*"), 0);
  /* Classes without their ']'. */
  CHECK_EQ_INT(C("["), INV_EINVAL);
  CHECK_EQ_INT(C("*["), INV_EINVAL);
  CHECK_EQ_INT(C("[^"), INV_EINVAL);
  CHECK_EQ_INT(C("a[bc"), INV_EINVAL);
  CHECK_EQ_INT(C("[\\]"), INV_EINVAL); /* "\]" is a literal ']' */
  CHECK_EQ_INT(C("[a-]"), INV_EINVAL); /* the range 'a'..']' */
  CHECK_EQ_INT(C("[\\"), INV_EINVAL);
  CHECK_EQ_INT(C("x[a-"), INV_EINVAL);
  CHECK_EQ_INT(C("[]]["), INV_EINVAL);
  /* A lone '\' at the end. */
  CHECK_EQ_INT(C("\\"), INV_EINVAL);
  CHECK_EQ_INT(C("*\\"), INV_EINVAL);
  CHECK_EQ_INT(C("a\\\\\\"), INV_EINVAL);
  CHECK_EQ_INT(C("a\\\\"), 0);
  /* Binary bytes are ordinary literals. */
  CHECK_EQ_INT(inv_glob_check("\0[\0]\xff", 5), 0);
  CHECK_EQ_INT(inv_glob_check("\0[\0", 3), INV_EINVAL);
#undef C
}

/* The flush rule, checked against the reference model on random patterns:
 * a pattern with an unmatched byte b leaves every key of b's alone, and a
 * flush matches a key exactly when it matches the key of the same length
 * made of 'a's (only lengths decide). */
static void test_random_flush_rule(void) {
  static const char pat_alpha[] = "a*?[]^-\\\x80\x7f\xff";
  char pat[12], key[16];
  int bad = 0, flushes = 0;
  for (int iter = 0; iter < 100000; iter++) {
    size_t plen = 1 + rnd(10);
    for (size_t i = 0; i < plen; i++)
      pat[i] = pat_alpha[rnd(sizeof(pat_alpha) - 1)];
    int b = inv_glob_unmatched_byte(pat, plen);
    int flush = inv_glob_matches_everything(pat, plen);
    if (flush != (b < 0)) bad++;
    if (b >= 0) {
      for (size_t k = 1; k <= 14; k++) {
        memset(key, b, k);
        if (glob_ref_match(pat, plen, key, k)) bad++;
      }
    } else {
      char same[16];
      flushes++;
      size_t klen = rnd(15);
      for (size_t i = 0; i < klen; i++) key[i] = (char)rnd(256);
      memset(same, 'a', klen);
      if (glob_ref_match(pat, plen, key, klen) !=
          glob_ref_match(pat, plen, same, klen))
        bad++;
    }
    if (bad && bad < 3)
      fprintf(stderr, "flush rule fails on \"%.*s\"\n", (int)plen, pat);
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(flushes > 1000);
}

static void test_literal_prefix(void) {
  char out[64];
#define LP(p) inv_glob_literal_prefix(p, strlen(p), out)
  CHECK_EQ_INT(LP("user:*"), 5);
  CHECK(memcmp(out, "user:", 5) == 0);
  CHECK_EQ_INT(LP("abc"), 3);
  CHECK_EQ_INT(LP("*abc"), 0);
  CHECK_EQ_INT(LP(""), 0);
  CHECK_EQ_INT(LP("ab?c"), 2);
  CHECK_EQ_INT(LP("ab[c]"), 2);
  CHECK_EQ_INT(LP("a]b*"), 3);
  CHECK_EQ_INT(LP("a\\*b*"), 3);
  CHECK(memcmp(out, "a*b", 3) == 0);
  CHECK_EQ_INT(LP("\\{a\\}*"), 3);
  CHECK(memcmp(out, "{a}", 3) == 0);
  CHECK_EQ_INT(LP("ab\\"), 3);
  CHECK(memcmp(out, "ab\\", 3) == 0);
  CHECK_EQ_INT(LP("\\\\x?"), 2);
  CHECK(memcmp(out, "\\x", 2) == 0);
  CHECK_EQ_INT(inv_glob_literal_prefix("ab*", 3, NULL), 2);
  CHECK_EQ_INT(inv_glob_literal_prefix("a\0b*", 4, out), 3);
  CHECK(memcmp(out, "a\0b", 3) == 0);
#undef LP
}

static void test_pinned_slot(void) {
  unsigned slot = 99999;
#define PIN(p) inv_glob_pinned_slot(p, strlen(p), &slot)
  CHECK_EQ_INT(PIN("{user:42}:*"), 1);
  CHECK_EQ_INT(slot, inv_key_slot("user:42", 7));
  CHECK_EQ_INT(PIN("x{ab}*"), 1);
  CHECK_EQ_INT(slot, inv_key_slot("ab", 2));
  CHECK_EQ_INT(PIN("{a}"), 1);
  CHECK_EQ_INT(slot, inv_key_slot("a", 1));
  CHECK_EQ_INT(PIN("{a}{b}*"), 1);
  CHECK_EQ_INT(slot, inv_key_slot("a", 1));
  slot = 77;
  CHECK_EQ_INT(PIN("user:*"), 0);
  CHECK_EQ_INT(slot, 77);
  CHECK_EQ_INT(PIN("*{a}"), 0);
  CHECK_EQ_INT(PIN("{user:*}"), 0); /* tag not closed inside the prefix */
  CHECK_EQ_INT(PIN("{user*"), 0);
  CHECK_EQ_INT(PIN("{}*"), 0);    /* empty tag: whole key is hashed */
  CHECK_EQ_INT(PIN("{}{a}*"), 0); /* first tag is empty, so no tag */
  CHECK_EQ_INT(PIN("{?}*"), 0);
  CHECK_EQ_INT(PIN("{[ab]}*"), 0);
  CHECK_EQ_INT(PIN("user:42"), 0);
  CHECK_EQ_INT(PIN(""), 0);
  CHECK_EQ_INT(PIN("*"), 0);
  /* Escaped braces are literal bytes of the key, so they count. */
  CHECK_EQ_INT(PIN("\\{a\\}*"), 1);
  CHECK_EQ_INT(slot, inv_key_slot("a", 1));
  CHECK_EQ_INT(PIN("\\{a}*"), 1);
  CHECK_EQ_INT(slot, inv_key_slot("a", 1));
  CHECK_EQ_INT(PIN("{a\\}b}*"), 1); /* tag is "a" (the first '}' closes it) */
  CHECK_EQ_INT(slot, inv_key_slot("a", 1));
  CHECK_EQ_INT(PIN("{a\\*}*"), 1); /* tag "a*" with a literal star */
  CHECK_EQ_INT(slot, inv_key_slot("a*", 2));
  CHECK_EQ_INT(PIN("{a\\*"), 0);
  CHECK_EQ_INT(PIN("\\{\\}x*"), 0); /* literal "{}": empty tag */
  CHECK_EQ_INT(PIN("{a\\"), 0);
  /* A hash tag holding an escaped backslash. */
  CHECK_EQ_INT(PIN("{\\\\}*"), 1);
  CHECK_EQ_INT(slot, inv_key_slot("\\", 1));
  /* Long patterns (heap path). */
  char longpat[2000];
  memset(longpat, 'z', sizeof(longpat));
  memcpy(longpat + 1500, "{tag}*", 6);
  CHECK_EQ_INT(inv_glob_pinned_slot(longpat, 1506, &slot), 1);
  CHECK_EQ_INT(slot, inv_key_slot("tag", 3));
  CHECK_EQ_INT(inv_glob_pinned_slot(longpat, 1503, &slot), 0);
  /* Every key that matches a pinned pattern has that slot. */
  const char *keys[] = {"{user:42}:", "{user:42}:a", "{user:42}:{x}",
                        "{user:42}:}{"};
  CHECK_EQ_INT(PIN("{user:42}:*"), 1);
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    CHECK_EQ_INT(M("{user:42}:*", keys[i]), 1);
    CHECK_EQ_INT(inv_key_slot(keys[i], strlen(keys[i])), slot);
  }
#undef PIN
}

static void test_from_prefix(void) {
  char out[64];
  size_t n = inv_glob_from_prefix("user:", 5, out);
  CHECK_EQ_INT(n, 6);
  CHECK(memcmp(out, "user:*", 6) == 0);
  n = inv_glob_from_prefix("", 0, out);
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(out[0], '*');
  const char *nasty = "a*b?c[d]e\\f{g}";
  n = inv_glob_from_prefix(nasty, strlen(nasty), out);
  const char *want = "a\\*b\\?c\\[d\\]e\\\\f{g}*";
  CHECK_EQ_INT(n, strlen(want));
  CHECK(memcmp(out, want, n) == 0);
  /* The pattern matches exactly the keys that start with the prefix. */
  CHECK_EQ_INT(inv_glob_match(out, n, nasty, strlen(nasty)), 1);
  CHECK_EQ_INT(inv_glob_match(out, n, "a*b?c[d]e\\f{g}tail", 18), 1);
  CHECK_EQ_INT(inv_glob_match(out, n, "aXb?c[d]e\\f{g}", 14), 0);
  CHECK_EQ_INT(inv_glob_literal_prefix(out, n, NULL), strlen(nasty));
  /* Worst case size is 2 * len + 1. */
  n = inv_glob_from_prefix("**", 2, out);
  CHECK_EQ_INT(n, 5);
  CHECK(memcmp(out, "\\*\\**", 5) == 0);
  /* Binary prefix. */
  n = inv_glob_from_prefix("\0\xff", 2, out);
  CHECK_EQ_INT(n, 3);
  CHECK_EQ_INT(inv_glob_match(out, n, "\0\xff\x01", 3), 1);
  CHECK_EQ_INT(inv_glob_match(out, n, "\0\xfe\x01", 3), 0);
}

int main(void) {
  RUN(test_literals);
  RUN(test_star_question);
  RUN(test_classes);
  RUN(test_escapes);
  RUN(test_binary);
  RUN(test_pathological);
  RUN(test_random_vs_reference);
  RUN(test_matches_everything);
  RUN(test_unmatched_byte);
  RUN(test_check);
  RUN(test_random_flush_rule);
  RUN(test_literal_prefix);
  RUN(test_pinned_slot);
  RUN(test_from_prefix);
  return check_summary();
}
