/*
 * Error names and descriptions, generated from the one table in errors.h so
 * that a new code cannot be added without its name and description.
 */
#include "inval/errors.h"

#include <string.h>

typedef struct {
  int code;
  const char *name;
  const char *desc;
} err_entry_t;

static const err_entry_t err_table[] = {
#define INV_ERR_ROW(name, num, msg) {-(num), #name, msg},
    INV_ERRNO_MAP(INV_ERR_ROW)
#undef INV_ERR_ROW
};

#define ERR_COUNT (sizeof(err_table) / sizeof(err_table[0]))

/* Returns the table row of err, or NULL for a code not in the table. */
static const err_entry_t *err_find(int err) {
  for (size_t i = 0; i < ERR_COUNT; i++) {
    if (err_table[i].code == err) return &err_table[i];
  }
  return NULL;
}

const char *inv_err_name(int err) {
  const err_entry_t *e = err_find(err);
  return e ? e->name : "EUNKNOWN";
}

const char *inv_strerror(int err) {
  const err_entry_t *e = err_find(err);
  return e ? e->desc : "unknown error";
}

int inv_err_from_name(const char *name, size_t len) {
  if (name == NULL) return 0;
  for (size_t i = 0; i < ERR_COUNT; i++) {
    const char *n = err_table[i].name;
    if (strlen(n) == len && memcmp(n, name, len) == 0) return err_table[i].code;
  }
  return 0;
}

int inv_err_is_retryable(int err) {
  return err == INV_EUNAVAIL || err == INV_EBUSY || err == INV_ESHUTDOWN;
}
