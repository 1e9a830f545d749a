/*
 * glob_tool: the local glob functions, for tests that compare them with a
 * live Redis. Two modes:
 *
 *   glob_tool           reads "pattern<TAB>key" lines from stdin and prints
 *                       1 or 0 per line, the result of inv_glob_match(). The
 *                       pattern ends at the first TAB; the key is the rest of
 *                       the line without its '\n' (so a pattern cannot hold a
 *                       TAB, but a key can). A line without a TAB is matched
 *                       against the empty key. Used by test_slot_glob.py.
 *
 *   glob_tool --batch   binary-safe: reads a line "P K", then P patterns and
 *                       K keys, one per line, each in hex ("" is empty). For
 *                       each pattern prints one line:
 *                         <check> <flush> <byte> <matches>
 *                       check is 0 or 1 for inv_glob_check() == 0 (well-
 *                       formed), flush inv_glob_matches_everything(), byte
 *                       inv_glob_unmatched_byte() (-1 for none), and matches
 *                       K characters '0'/'1', inv_glob_match() on each key.
 *                       Used by test_glob_differential.py.
 *
 * Exits 0, 1 on a read error, 2 on malformed batch input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/base/glob.h"

typedef struct {
  char *data;
  size_t len;
} blob_t;

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads one hex line into *b (allocated). Returns 0, or -1 at the end of
 * input or on a line that is not hex. */
static int read_hex(char **line, size_t *cap, blob_t *b) {
  ssize_t n = getline(line, cap, stdin);
  if (n < 0) return -1;
  size_t len = (size_t)n;
  if (len > 0 && (*line)[len - 1] == '\n') len--;
  if (len % 2 != 0) return -1;
  b->len = len / 2;
  b->data = malloc(b->len ? b->len : 1);
  if (b->data == NULL) return -1;
  for (size_t i = 0; i < b->len; i++) {
    int hi = hexval((*line)[2 * i]), lo = hexval((*line)[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      free(b->data);
      return -1;
    }
    b->data[i] = (char)(hi << 4 | lo);
  }
  return 0;
}

static int batch(void) {
  char *line = NULL;
  size_t cap = 0, np = 0, nk = 0, got = 0;
  blob_t *items = NULL;
  char *row = NULL;
  int rc = 2;

  if (getline(&line, &cap, stdin) < 0 || sscanf(line, "%zu %zu", &np, &nk) != 2)
    goto out;
  /* Bound the counts before allocating: a test sends thousands, not more. */
  if (np > 1000000 || nk > 1000000) goto out;
  items = calloc(np + nk + 1, sizeof(*items));
  if (items == NULL) goto out;
  for (; got < np + nk; got++)
    if (read_hex(&line, &cap, &items[got]) != 0) goto out;

  row = malloc(nk + 1);
  if (row == NULL) goto out;
  for (size_t p = 0; p < np; p++) {
    const blob_t *pat = &items[p];
    for (size_t k = 0; k < nk; k++) {
      const blob_t *key = &items[np + k];
      row[k] =
          inv_glob_match(pat->data, pat->len, key->data, key->len) ? '1' : '0';
    }
    row[nk] = '\0';
    printf("%d %d %d %s\n", inv_glob_check(pat->data, pat->len) == 0,
           inv_glob_matches_everything(pat->data, pat->len),
           inv_glob_unmatched_byte(pat->data, pat->len), row);
  }
  rc = fflush(stdout) != 0 ? 1 : 0;
out:
  free(row);
  if (rc == 2) fprintf(stderr, "glob_tool: malformed batch input\n");
  for (size_t i = 0; i < got; i++) free(items[i].data);
  free(items);
  free(line);
  return rc;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--batch") == 0) return batch();

  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    size_t len = (size_t)n;
    if (len > 0 && line[len - 1] == '\n') len--;
    char *tab = memchr(line, '\t', len);
    size_t patlen = tab ? (size_t)(tab - line) : len;
    const char *key = tab ? tab + 1 : line + len;
    size_t keylen = len - patlen - (tab ? 1 : 0);
    printf("%d\n", inv_glob_match(line, patlen, key, keylen));
  }
  int rc = ferror(stdin) ? 1 : 0;
  free(line);
  if (fflush(stdout) != 0) rc = 1;
  return rc;
}
