/*
 * slot_tool: reads keys from stdin, one per line (the '\n' is not part of
 * the key; any other byte, '\r' included, is), and prints each key's slot
 * as computed by inv_key_slot(), one decimal number per line.
 * Used by tests/integration/test_slot_glob.py to compare with Redis's
 * CLUSTER KEYSLOT. Exits 0, or 1 on a read or allocation error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "common/base/slot.h"

int main(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    size_t len = (size_t)n;
    if (len > 0 && line[len - 1] == '\n') len--;
    printf("%u\n", inv_key_slot(line, len));
  }
  int rc = ferror(stdin) ? 1 : 0;
  free(line);
  if (fflush(stdout) != 0) rc = 1;
  return rc;
}
