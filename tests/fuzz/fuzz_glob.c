/*
 * Fuzz target for common/glob: the matcher as a differential against a
 * plain recursive port of Redis 7's stringmatchlen() (util.c, with its
 * 1000-level nesting limit and KEYS/SCAN's "*" shortcut), and the rules
 * built on it.
 *
 * The reference lives in tests/fuzz/glob_ref.h (the unit test uses it too).
 *
 * Input layout: bytes 0 and 1 are the pattern's length (little-endian, cut
 * to what is left), then the pattern, then the key. Both may hold any byte.
 *
 * Invariants (any violation aborts, which both libFuzzer and the replay
 * driver report):
 *   - inv_glob_match() agrees with the reference on the key;
 *   - inv_glob_check() is 0 or INV_EINVAL;
 *   - a flush has no unmatched byte, and a non-empty pattern without one
 *     is a flush unless it is past the nesting limit (then it matches
 *     nothing);
 *   - with an unmatched byte b, the reference matches no key of b's
 *     (lengths 1 to 8, and the key's own length); a well-formed pattern
 *     that is no flush leaves its witness unmatched;
 *   - a flush matches the key exactly when it matches the key of 'a's of
 *     the same length (only lengths decide);
 *   - a matching key starts with the pattern's literal prefix and, when the
 *     pattern is pinned, hashes to its slot.
 *
 * Built two ways (tests/fuzz/glob.cmake): as the libFuzzer binary
 * fuzz_glob with clang and INV_FUZZ=ON, and always, with -DINV_FUZZ_REPLAY,
 * as fuzz_glob_replay, whose main() runs every file of the corpus
 * directory and then a fixed sequence of pseudo-random mutations of them
 * (the CTest test fuzz.glob_replay).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/glob.h"
#include "common/slot.h"
#include "tests/fuzz/glob_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                     \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,   \
              #cond);                                                         \
      abort();                                                                \
    }                                                                         \
  } while (0)

/* Bounds the reference's work: its recursion walks the key once per '*'
 * run at worst, which is quadratic, not exponential (skipLongerMatches). */
#define MAX_KEY 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t plen = (size_t)data[0] | (size_t)data[1] << 8;
  if (plen > size - 2) plen = size - 2;
  size_t slen = size - 2 - plen;
  if (slen > MAX_KEY) slen = MAX_KEY;

  /* Copies, so that the sanitizers see every read past a length. The
   * pattern gets its sds terminator. */
  char *pat = malloc(plen + 1);
  char *key = malloc(slen ? slen : 1);
  char *probe = malloc(slen > 8 ? slen : 8);
  char *lit = malloc(plen ? plen : 1);
  FUZZ_ASSERT(pat && key && probe && lit);
  memcpy(pat, data + 2, plen);
  pat[plen] = '\0';
  memcpy(key, data + 2 + plen, slen);

  int m = inv_glob_match(pat, plen, key, slen);
  FUZZ_ASSERT(m == glob_ref_match(pat, plen, key, slen));

  int check = inv_glob_check(pat, plen);
  FUZZ_ASSERT(check == 0 || check == INV_EINVAL);
  int flush = inv_glob_matches_everything(pat, plen);
  int b = inv_glob_unmatched_byte(pat, plen);
  FUZZ_ASSERT(b >= -1 && b <= 255);
  FUZZ_ASSERT(!flush || b < 0);

  if (b >= 0) {
    for (size_t n = 1; n <= 8; n++) {
      memset(probe, b, n);
      FUZZ_ASSERT(!glob_ref_match(pat, plen, probe, n));
    }
    if (slen > 0) {
      memset(probe, b, slen);
      FUZZ_ASSERT(!glob_ref_match(pat, plen, probe, slen));
    }
  } else if (flush) {
    memset(probe, 'a', slen);
    FUZZ_ASSERT(m == glob_ref_match(pat, plen, probe, slen));
  } else {
    /* No byte is restricted, yet no flush: the empty pattern, or one past
     * the nesting limit, which matches no key at all. */
    FUZZ_ASSERT(plen == 0 || !m);
    if (plen > 0) {
      memset(probe, 'a', 8);
      FUZZ_ASSERT(!glob_ref_match(pat, plen, probe, 8));
    }
  }

  if (m) {
    size_t n = inv_glob_literal_prefix(pat, plen, lit);
    FUZZ_ASSERT(n <= slen && memcmp(lit, key, n) == 0);
    unsigned slot;
    if (inv_glob_pinned_slot(pat, plen, &slot))
      FUZZ_ASSERT(inv_key_slot(key, slen) == slot);
  }

  free(lit);
  free(probe);
  free(key);
  free(pat);
  return 0;
}

#ifdef INV_FUZZ_REPLAY
/*
 * The replay driver: every file of the corpus directory, then a fixed
 * number of deterministic mutations of them (byte edits that favour the
 * glob metacharacters, inserts, deletes, splices), so that CTest checks the
 * same invariants on every build without libFuzzer.
 */
#include <dirent.h>
#include <time.h>

#define REPLAY_MAX 4096
#define REPLAY_MAX_FILES 4096

static uint64_t rng_next(uint64_t *s) {
  /* xorshift64*: small and deterministic. */
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

typedef struct {
  uint8_t data[REPLAY_MAX];
  size_t len;
} input_t;

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the regular files of dir (name order, at most REPLAY_MAX bytes
 * each, at most REPLAY_MAX_FILES) into a new array. Returns the count, or
 * -1 when dir cannot be read. */
static int load(const char *dir, input_t **out) {
  static char *names[REPLAY_MAX_FILES];
  DIR *d = opendir(dir);
  struct dirent *e;
  size_t n = 0, got = 0;
  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL && n < REPLAY_MAX_FILES) {
    if (e->d_name[0] == '.') continue;
    names[n] = strdup(e->d_name);
    FUZZ_ASSERT(names[n] != NULL);
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof(*names), by_name);
  *out = calloc(n ? n : 1, sizeof(**out));
  FUZZ_ASSERT(*out != NULL);
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    free(names[i]);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) continue;
    (*out)[got].len = fread((*out)[got].data, 1, REPLAY_MAX, fp);
    fclose(fp);
    got++;
  }
  return (int)got;
}

static void mutate(input_t *in, const input_t *other, uint64_t *s) {
  static const uint8_t meta[] = "*?[]^-\\a\x00\x7f\x80\xff";
  uint64_t r = rng_next(s);
  size_t n = in->len, pos = n ? (size_t)(rng_next(s) % n) : 0;
  switch (r % 6) {
    case 0: /* a metacharacter or edge byte */
      if (n > 2) in->data[pos] = meta[(r >> 8) % (sizeof(meta) - 1)];
      break;
    case 1: /* insert one */
      if (n < REPLAY_MAX && pos >= 2) {
        memmove(in->data + pos + 1, in->data + pos, n - pos);
        in->data[pos] = meta[(r >> 8) % (sizeof(meta) - 1)];
        in->len++;
      }
      break;
    case 2: /* delete a run */
      if (pos >= 2) {
        size_t k = 1 + (size_t)((r >> 8) % 4);
        if (k > n - pos) k = n - pos;
        memmove(in->data + pos, in->data + pos + k, n - pos - k);
        in->len -= k;
      }
      break;
    case 3: /* move the pattern/key split */
      if (n >= 2) in->data[0] = (uint8_t)(in->data[0] + (int)((r >> 8) % 5) - 2);
      break;
    case 4: /* splice in the tail of another input */
      if (pos >= 2 && other->len > 2) {
        size_t from = 2 + (size_t)((r >> 8) % (other->len - 2));
        size_t k = other->len - from;
        if (pos + k > REPLAY_MAX) k = REPLAY_MAX - pos;
        memcpy(in->data + pos, other->data + from, k);
        if (pos + k > n) in->len = pos + k;
      }
      break;
    default: /* flip a bit */
      if (n > 2) in->data[pos] ^= (uint8_t)(1u << ((r >> 8) & 7));
      break;
  }
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "tests/fuzz/corpus/glob";
  long iterations = argc > 2 ? atol(argv[2]) : 200000;
  input_t *corpus = NULL, work;
  uint64_t s = 0x61C0B5EEDULL;
  struct timespec t0, t1;
  int n = load(dir, &corpus);
  if (n <= 0) {
    fprintf(stderr, "fuzz_glob_replay: no corpus files in %s\n", dir);
    free(corpus);
    return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < n; i++) LLVMFuzzerTestOneInput(corpus[i].data, corpus[i].len);
  for (long i = 0; i < iterations; i++) {
    work = corpus[rng_next(&s) % (uint64_t)n];
    const input_t *other = &corpus[rng_next(&s) % (uint64_t)n];
    int edits = 1 + (int)(rng_next(&s) % 4);
    for (int k = 0; k < edits; k++) mutate(&work, other, &s);
    LLVMFuzzerTestOneInput(work.data, work.len);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("fuzz_glob_replay: %d corpus files, %ld mutations, %.2f s\n", n,
         iterations,
         (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  free(corpus);
  return 0;
}
#endif
