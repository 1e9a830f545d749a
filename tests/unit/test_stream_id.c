/* Unit tests for proto/stream_id: parsing, numeric order (not string
 * order), formatting and the takeover-window subtraction. */
#include "proto/stream_id.h"

#include <string.h>

#include "inval/errors.h"
#include "tests/unit/check.h"

static int parse(const char *s, inv_sid_t *out) {
  return inv_sid_parse(s, strlen(s), out);
}

static void test_parse(void) {
  inv_sid_t id = {7, 7};
  CHECK_EQ_INT(parse("1526919030474-55", &id), 0);
  CHECK(id.ms == 1526919030474ull && id.seq == 55);
  CHECK_EQ_INT(parse("42", &id), 0); /* "ms" alone: seq 0 */
  CHECK(id.ms == 42 && id.seq == 0);
  CHECK_EQ_INT(parse("18446744073709551615-18446744073709551615", &id), 0);
  CHECK(id.ms == UINT64_MAX && id.seq == UINT64_MAX);
}

static void test_parse_rejects(void) {
  static const char *const bad[] = {"",
                                    "-",
                                    "5-",
                                    "-5",
                                    "1-2-3",
                                    "a-1",
                                    "1-b",
                                    " 1-2",
                                    "1-2 ",
                                    "18446744073709551616-0",
                                    "0-18446744073709551616",
                                    NULL};
  for (int i = 0; bad[i]; i++) {
    inv_sid_t id = {3, 4};
    CHECK_EQ_INT(parse(bad[i], &id), INV_EINVAL);
    CHECK(id.ms == 3 && id.seq == 4); /* unchanged on error */
  }
  inv_sid_t id;
  CHECK_EQ_INT(inv_sid_parse("12-34", 4, &id), 0); /* length bounds it */
  CHECK(id.ms == 12 && id.seq == 3);
}

/* Untrusted text is bounded before it is read: leading zeros would let an
 * id of any length parse, so one of INV_SID_STRLEN bytes or more is
 * refused, while the longest real id (41 bytes) still parses. */
static void test_parse_length_bound(void) {
  char buf[1 << 16];
  inv_sid_t id = {3, 4};
  memset(buf, '0', sizeof(buf));
  buf[sizeof(buf) - 2] = '7';
  CHECK_EQ_INT(inv_sid_parse(buf, sizeof(buf) - 1, &id), INV_EINVAL);
  CHECK(id.ms == 3 && id.seq == 4);
  CHECK_EQ_INT(inv_sid_parse(buf, INV_SID_STRLEN, &id), INV_EINVAL);
  CHECK_EQ_INT(inv_sid_parse(buf, INV_SID_STRLEN - 1, &id), 0);
  CHECK(id.ms == 0 && id.seq == 0);
  CHECK_EQ_INT(parse("18446744073709551615-18446744073709551615", &id), 0);
}

static void test_order_and_format(void) {
  inv_sid_t a = {9, 0}, b = {10, 0}, c = {10, 1};
  char buf[INV_SID_STRLEN];
  CHECK(inv_sid_cmp(a, b) < 0); /* "9-0" > "10-0" as strings */
  CHECK(inv_sid_cmp(c, b) > 0 && inv_sid_cmp(b, b) == 0);
  CHECK_EQ_STR(inv_sid_format(c, buf), "10-1");
  inv_sid_t max = {UINT64_MAX, UINT64_MAX}, back;
  inv_sid_format(max, buf);
  CHECK_EQ_INT(parse(buf, &back), 0);
  CHECK(inv_sid_cmp(back, max) == 0);
  CHECK(inv_sid_is_zero((inv_sid_t){0, 0}) && !inv_sid_is_zero(a));
}

static void test_minus_ms(void) {
  inv_sid_t r = inv_sid_minus_ms((inv_sid_t){100000, 5}, 30000);
  CHECK(r.ms == 70000 && r.seq == 0);
  r = inv_sid_minus_ms((inv_sid_t){30000, 5}, 30000);
  CHECK(inv_sid_is_zero(r)); /* younger than the window: the log's start */
  r = inv_sid_minus_ms((inv_sid_t){5, 1}, 0);
  CHECK(r.ms == 5 && r.seq == 0);
}

int main(void) {
  RUN(test_parse);
  RUN(test_parse_rejects);
  RUN(test_parse_length_bound);
  RUN(test_order_and_format);
  RUN(test_minus_ms);
  return check_summary();
}
