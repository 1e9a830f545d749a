/*
 * glob_tool: reads "pattern<TAB>key" lines from stdin and prints 1 or 0
 * per line, the result of inv_glob_match(pattern, key). The pattern ends at
 * the first TAB; the key is the rest of the line without its '\n' (so a
 * pattern cannot hold a TAB, but a key can). A line without a TAB is
 * matched against the empty key. Used by tests/integration/test_slot_glob.py
 * to compare with Redis KEYS. Exits 0, or 1 on a read error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/glob.h"

int main(void) {
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
