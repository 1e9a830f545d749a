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

/* Every code numbers 1 to INV_ERR_NUM_LIMIT - 1, so that per-code arrays
 * hold it; the wire block ends before the internal one starts (the first
 * internal code is ENOMEM, the last wire code EPERM). */
#define INV_ERR_RANGE_CHECK(name, num, msg)              \
  _Static_assert((num) > 0 && (num) < INV_ERR_NUM_LIMIT, \
                 "error code " #name " is outside 1..INV_ERR_NUM_LIMIT-1");
INV_ERRNO_MAP(INV_ERR_RANGE_CHECK)
#undef INV_ERR_RANGE_CHECK
_Static_assert(-INV_EPERM < INV_ERR_FIRST_INTERNAL &&
                   -INV_ENOMEM == INV_ERR_FIRST_INTERNAL,
               "wire codes end before INV_ERR_FIRST_INTERNAL, where the "
               "internal ones start");

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

int inv_err_is_wire(int err) {
  return err < 0 && -err < INV_ERR_FIRST_INTERNAL && err_find(err) != NULL;
}
