/* Unit tests for inval/errors.h (common/base/errors.c): names, descriptions,
 * reverse lookup and the retryable and wire sets, checked against the X-macro
 * table itself. */
#include "inval/errors.h"

#include <string.h>

#include "tests/unit/check.h"

static void test_names(void) {
  CHECK_EQ_STR(inv_err_name(INV_EPROTO), "EPROTO");
  CHECK_EQ_STR(inv_err_name(INV_EINVAL), "EINVAL");
  CHECK_EQ_STR(inv_err_name(INV_EBUSY), "EBUSY");
  CHECK_EQ_STR(inv_err_name(INV_EREDIS), "EREDIS");
  CHECK_EQ_INT(INV_EPROTO, -1);
  CHECK_EQ_INT(INV_ENOMEM, -20);
  CHECK_EQ_STR(inv_err_name(0), "EUNKNOWN");
  CHECK_EQ_STR(inv_err_name(INV_EPERM), "EPERM");
  CHECK_EQ_INT(INV_EPERM, -9);
  CHECK_EQ_STR(inv_err_name(-10), "EUNKNOWN");
  CHECK_EQ_STR(inv_err_name(1), "EUNKNOWN");
  CHECK_EQ_STR(inv_err_name(-1000), "EUNKNOWN");
}

static void test_strerror(void) {
  CHECK_EQ_STR(inv_strerror(INV_EBUSY), "shed by backpressure; retry later");
  CHECK_EQ_STR(inv_strerror(INV_ETIMEDOUT), "timed out");
  CHECK_EQ_STR(inv_strerror(0), "unknown error");
  CHECK_EQ_STR(inv_strerror(12345), "unknown error");
}

static void test_from_name(void) {
  CHECK_EQ_INT(inv_err_from_name("EBUSY", 5), INV_EBUSY);
  CHECK_EQ_INT(inv_err_from_name("EUNAVAIL", 8), INV_EUNAVAIL);
  /* Only name[0..len) counts: a longer buffer is fine. */
  CHECK_EQ_INT(inv_err_from_name("EAUTHxyz", 5), INV_EAUTH);
  CHECK_EQ_INT(inv_err_from_name("EBUS", 4), 0);
  CHECK_EQ_INT(inv_err_from_name("ebusy", 5), 0);
  CHECK_EQ_INT(inv_err_from_name("", 0), 0);
  CHECK_EQ_INT(inv_err_from_name(NULL, 0), 0);
  CHECK_EQ_INT(inv_err_from_name("EUNKNOWN", 8), 0);
}

static void test_round_trip(void) {
  /* Every code in the table maps to a name that maps back to it, and has
   * a description. */
  int n = 0;
#define ROUND(name, num, msg)                                        \
  CHECK_EQ_INT(inv_err_from_name(#name, strlen(#name)), INV_##name); \
  CHECK_EQ_STR(inv_err_name(INV_##name), #name);                     \
  CHECK_EQ_STR(inv_strerror(INV_##name), msg);                       \
  n++;
  INV_ERRNO_MAP(ROUND)
#undef ROUND
  CHECK_EQ_INT(n, 16);
}

static void test_retryable(void) {
  CHECK_EQ_INT(inv_err_is_retryable(INV_EUNAVAIL), 1);
  CHECK_EQ_INT(inv_err_is_retryable(INV_EBUSY), 1);
  CHECK_EQ_INT(inv_err_is_retryable(INV_ESHUTDOWN), 1);
  CHECK_EQ_INT(inv_err_is_retryable(INV_EINVAL), 0);
  CHECK_EQ_INT(inv_err_is_retryable(INV_EPROTO), 0);
  CHECK_EQ_INT(inv_err_is_retryable(INV_ETIMEDOUT), 0);
  CHECK_EQ_INT(inv_err_is_retryable(0), 0);
}

static void test_wire(void) {
  /* The wire block is exactly the codes numbered below the internal
   * block; gaps and internal codes never go on the wire. */
  CHECK_EQ_INT(inv_err_is_wire(INV_EPROTO), 1);
  CHECK_EQ_INT(inv_err_is_wire(INV_EUNAVAIL), 1);
  CHECK_EQ_INT(inv_err_is_wire(INV_EPERM), 1);
  CHECK_EQ_INT(inv_err_is_wire(INV_ENOMEM), 0);
  CHECK_EQ_INT(inv_err_is_wire(INV_ECLOSED), 0);
  CHECK_EQ_INT(inv_err_is_wire(INV_EREDIS), 0);
  CHECK_EQ_INT(inv_err_is_wire(-10), 0);
  CHECK_EQ_INT(inv_err_is_wire(0), 0);
  CHECK_EQ_INT(inv_err_is_wire(1), 0);
  CHECK_EQ_INT(inv_err_is_wire(-INV_ERR_NUM_LIMIT), 0);
  int wire = 0;
#define WIRE(name, num, msg) wire += inv_err_is_wire(INV_##name);
  INV_ERRNO_MAP(WIRE)
#undef WIRE
  CHECK_EQ_INT(wire, 9);
}

int main(void) {
  RUN(test_names);
  RUN(test_strerror);
  RUN(test_from_name);
  RUN(test_round_trip);
  RUN(test_retryable);
  RUN(test_wire);
  return check_summary();
}
