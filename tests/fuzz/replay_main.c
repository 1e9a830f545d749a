/*
 * The replay driver that every fuzz target is linked with when it is not
 * built for libFuzzer: main() runs every file of the target's corpus, then
 * a fixed number of deterministic mutations of them, through the target's
 * LLVMFuzzerTestOneInput. CTest runs it in every build tree, the sanitizer
 * tree included, so the targets' invariants are checked on every build
 * without clang or libFuzzer.
 *
 * Usage: fuzz_NAME_replay CORPUS_DIR [ITERATIONS]
 * Exits 1 when the corpus directory holds no file (a misnamed directory
 * must not pass as an empty, green run); a broken invariant aborts.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tests/fuzz/fuzz.h"

/* Inputs longer than this are cut when loaded and never grown past it. */
#define REPLAY_MAX_INPUT 8192

/* In a sanitizer build, ASan by default fills the first 4 KiB of every
 * allocation and keeps 256 MiB of freed memory in quarantine; msgpack-c
 * allocates an 8 KiB zone per decode, so that filling dominated the run.
 * Neither affects what ASan detects here. This is ASan's documented hook
 * for defaults; options set in ASAN_OPTIONS still win. */
#if defined(__SANITIZE_ADDRESS__)
#define REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REPLAY_ASAN 1
#endif
#endif
#ifdef REPLAY_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "max_malloc_fill_size=0:quarantine_size_mb=16";
}
#endif

typedef struct {
  unsigned char *data;
  size_t len;
} input_t;

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the names of dir's entries (hidden ones skipped), sorted so that
 * every run sees the same order. Returns their count, or -1 when dir
 * cannot be read. Aborts when out of memory (a test tool). */
static int list_names(const char *dir, char ***out) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0;

  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof(*names));
      if (nn == NULL) abort();
      names = nn;
    }
    names[n] = strdup(e->d_name);
    if (names[n] == NULL) abort();
    n++;
  }
  closedir(d);
  if (n > 0) qsort(names, n, sizeof(*names), cmp_names);
  *out = names;
  return (int)n;
}

/* Loads the regular files of dir in name order. Returns their count, or
 * -1 when dir cannot be read. */
static int load_corpus(const char *dir, input_t **out) {
  char **names = NULL;
  int n = list_names(dir, &names);
  input_t *in;
  int got = 0;

  if (n < 0) return -1;
  in = calloc(n ? (size_t)n : 1, sizeof(*in));
  if (in == NULL) abort();
  for (int i = 0; i < n; i++) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    free(names[i]);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) continue;
    in[got].data = malloc(REPLAY_MAX_INPUT);
    if (in[got].data == NULL) abort();
    in[got].len = fread(in[got].data, 1, REPLAY_MAX_INPUT, fp);
    fclose(fp);
    got++;
  }
  free(names);
  *out = in;
  return got;
}

/* Bytes that are msgpack headers, text delimiters or boundaries: the
 * places where decoders make decisions. */
static const unsigned char interesting[] = {
    0x00, 0x01, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x91, 0x93, 0x94, 0x9f,
    0xa0, 0xa4, 0xbf, 0xc0, 0xc1, 0xc2, 0xc4, 0xc5, 0xc6, 0xc7, 0xc9,
    0xca, 0xcb, 0xce, 0xcf, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc,
    0xdd, 0xde, 0xdf, 0xe0, 0xff, '-',  '0',  '9',  ' ',  '\t', '\n',
    '\r', '"',  '\\', '#',  ':',  '[',  ']',  ','};

/* Applies one random edit to buf[0..*len), keeping it within max. */
static void mutate(unsigned char *buf, size_t *len, size_t max,
                   const input_t *other, uint64_t *s) {
  uint64_t r = fuzz_rng_next(s);
  size_t n = *len;
  size_t pos = n ? (size_t)(fuzz_rng_next(s) % n) : 0;

  switch (r % 9) {
    case 0: /* flip a bit */
      if (n) buf[pos] ^= (unsigned char)(1u << ((r >> 8) & 7));
      break;
    case 1: /* an interesting byte */
      if (n) buf[pos] = interesting[(r >> 8) % sizeof(interesting)];
      break;
    case 2: /* insert a byte */
      if (n < max) {
        memmove(buf + pos + 1, buf + pos, n - pos);
        buf[pos] = (unsigned char)(r >> 16);
        n++;
      }
      break;
    case 3: { /* delete a run */
      size_t k = 1 + (size_t)((r >> 8) % 8);
      if (pos + k > n) k = n - pos;
      memmove(buf + pos, buf + pos + k, n - pos - k);
      n -= k;
      break;
    }
    case 4: /* truncate */
      n = pos;
      break;
    case 5: /* a big length field: 0xff bytes */
      for (size_t i = pos; i < n && i < pos + 4; i++) buf[i] = 0xff;
      break;
    case 6: { /* duplicate a run elsewhere (pipelining, repeats) */
      unsigned char tmp[64];
      size_t k = 1 + (size_t)((r >> 8) % sizeof(tmp));
      size_t at = (size_t)((r >> 20) % (n + 1));
      if (n >= max || pos >= n) break;
      if (k > n - pos) k = n - pos;
      if (k > max - n) k = max - n;
      memcpy(tmp, buf + pos, k);
      memmove(buf + at + k, buf + at, n - at);
      memcpy(buf + at, tmp, k);
      n += k;
      break;
    }
    case 7: { /* splice in the tail of another input */
      size_t from = other->len ? (size_t)((r >> 8) % other->len) : 0;
      size_t k = other->len - from;
      if (pos + k > max) k = max - pos;
      memcpy(buf + pos, other->data + from, k);
      if (pos + k > n) n = pos + k;
      break;
    }
    default: /* small integer tweak: lengths and counts off by one */
      if (n) buf[pos] = (unsigned char)(buf[pos] + ((r >> 8) & 1 ? 1 : -1));
      break;
  }
  *len = n;
}

int main(int argc, char **argv) {
  const char *prog =
      strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  long iterations = argc > 2 ? atol(argv[2]) : 100000;
  input_t *corpus = NULL;
  unsigned char buf[REPLAY_MAX_INPUT];
  uint64_t s = 0x5EEDC0DEC0FFEEULL;
  struct timespec t0, t1;
  int n;

  if (argc < 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR [ITERATIONS]\n", prog);
    return 2;
  }
  n = load_corpus(argv[1], &corpus);
  if (n <= 0) {
    fprintf(stderr, "%s: no corpus files in %s\n", prog, argv[1]);
    free(corpus);
    return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < n; i++)
    LLVMFuzzerTestOneInput(corpus[i].data, corpus[i].len);
  for (long i = 0; i < iterations; i++) {
    const input_t *base = &corpus[fuzz_rng_next(&s) % (uint64_t)n];
    const input_t *other = &corpus[fuzz_rng_next(&s) % (uint64_t)n];
    size_t len = base->len;
    memcpy(buf, base->data, len);
    int edits = 1 + (int)(fuzz_rng_next(&s) % 4);
    for (int k = 0; k < edits; k++) mutate(buf, &len, sizeof(buf), other, &s);
    LLVMFuzzerTestOneInput(buf, len);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%s: %d corpus files, %ld mutations, %.2f s\n", prog, n, iterations,
         (double)(t1.tv_sec - t0.tv_sec) +
             (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  for (int i = 0; i < n; i++) free(corpus[i].data);
  free(corpus);
  return 0;
}
