/* Unit tests for common/buf: growth, NUL termination, consume, reset and
 * the msgpack write callback. */
#include "common/base/buf.h"

#include <msgpack.h>
#include <stdint.h>
#include <string.h>

#include "tests/unit/check.h"

static void test_append(void) {
  inv_buf_t b = {0};
  CHECK_EQ_INT(inv_buf_append(&b, "abc", 3), 0);
  CHECK_EQ_INT(b.len, 3);
  CHECK(b.cap > b.len);
  CHECK_EQ_STR(b.data, "abc");
  CHECK_EQ_INT(inv_buf_append(&b, "", 0), 0);
  CHECK_EQ_INT(b.len, 3);
  /* Binary bytes, including NUL, are kept. */
  CHECK_EQ_INT(inv_buf_append(&b, "\0\xff", 2), 0);
  CHECK_EQ_INT(b.len, 5);
  CHECK(memcmp(b.data, "abc\0\xff", 5) == 0);
  CHECK_EQ_INT(b.data[5], 0);
  inv_buf_free(&b);
  CHECK(b.data == NULL);
  CHECK_EQ_INT(b.len, 0);
  CHECK_EQ_INT(b.cap, 0);
}

static void test_empty_append(void) {
  /* Appending nothing to a zeroed buffer (NULL source) is valid. */
  inv_buf_t b = {0};
  CHECK_EQ_INT(inv_buf_append(&b, NULL, 0), 0);
  CHECK_EQ_INT(b.len, 0);
  inv_buf_free(&b);
}

static void test_growth(void) {
  inv_buf_t b = {0};
  char chunk[1000];
  for (size_t i = 0; i < sizeof(chunk); i++) chunk[i] = (char)('a' + i % 26);
  for (int i = 0; i < 1000; i++) {
    if (inv_buf_append(&b, chunk, sizeof(chunk)) != 0) break;
  }
  CHECK_EQ_INT(b.len, 1000000);
  CHECK(b.cap >= b.len + 1);
  int same = 1;
  for (size_t i = 0; i < b.len; i++) {
    if (b.data[i] != (char)('a' + (i % 1000) % 26)) same = 0;
  }
  CHECK(same);
  CHECK_EQ_INT(b.data[b.len], 0);
  inv_buf_free(&b);
}

static void test_printf(void) {
  inv_buf_t b = {0};
  CHECK_EQ_INT(inv_buf_printf(&b, "%s=%d", "x", 42), 0);
  CHECK_EQ_INT(b.len, 4);
  CHECK_EQ_STR(b.data, "x=42");
  CHECK_EQ_INT(inv_buf_printf(&b, "%s", ""), 0);
  CHECK_EQ_INT(b.len, 4);
  CHECK_EQ_INT(inv_buf_printf(&b, " %05.1f|%-3s|", 3.14159, "a"), 0);
  CHECK_EQ_STR(b.data, "x=42 003.1|a  |");
  /* A long formatted string forces growth in the middle of printf. */
  char big[5000];
  memset(big, 'z', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  CHECK_EQ_INT(inv_buf_printf(&b, "[%s]", big), 0);
  CHECK_EQ_INT(b.len, 15 + 2 + 4999);
  CHECK_EQ_INT(b.data[15], '[');
  CHECK_EQ_INT(b.data[b.len - 1], ']');
  CHECK_EQ_INT(b.data[b.len], 0);
  inv_buf_free(&b);
}

static void test_consume_reset(void) {
  inv_buf_t b = {0};
  inv_buf_append(&b, "hello world", 11);
  inv_buf_consume(&b, 0);
  CHECK_EQ_STR(b.data, "hello world");
  inv_buf_consume(&b, 6);
  CHECK_EQ_INT(b.len, 5);
  CHECK_EQ_STR(b.data, "world");
  inv_buf_consume(&b, 5);
  CHECK_EQ_INT(b.len, 0);
  CHECK_EQ_STR(b.data, "");
  inv_buf_append(&b, "again", 5);
  size_t cap = b.cap;
  inv_buf_reset(&b);
  CHECK_EQ_INT(b.len, 0);
  CHECK_EQ_INT(b.cap, cap);
  CHECK(b.data != NULL);
  CHECK_EQ_STR(b.data, "");
  inv_buf_printf(&b, "%d", 7);
  CHECK_EQ_STR(b.data, "7");
  inv_buf_free(&b);
  /* Resetting or consuming an empty zeroed buffer is harmless. */
  inv_buf_t z = {0};
  inv_buf_reset(&z);
  inv_buf_consume(&z, 0);
  CHECK(z.data == NULL);
  inv_buf_free(&z);
  inv_buf_free(NULL);
  CHECK(1);
}

static void test_reserve(void) {
  inv_buf_t b = {0};
  CHECK_EQ_INT(inv_buf_reserve(&b, 100), 0);
  CHECK(b.data != NULL);
  CHECK(b.cap >= 101);
  CHECK_EQ_INT(b.len, 0);
  CHECK_EQ_STR(b.data, "");
  /* The caller writes into the room and advances len itself. */
  memcpy(b.data, "abc", 3);
  b.len = 3;
  b.data[b.len] = '\0';
  size_t cap = b.cap;
  CHECK_EQ_INT(inv_buf_reserve(&b, cap - 4), 0);
  CHECK_EQ_INT(b.cap, cap); /* it fits: no reallocation */
  CHECK_EQ_INT(inv_buf_reserve(&b, cap), 0);
  CHECK(b.cap >= 3 + cap + 1);
  CHECK_EQ_STR(b.data, "abc");
  CHECK_EQ_INT(inv_buf_append(&b, "d", 1), 0);
  CHECK_EQ_STR(b.data, "abcd");
  CHECK(inv_buf_reserve(&b, (size_t)-1) != 0); /* too much: unchanged */
  CHECK_EQ_STR(b.data, "abcd");
  inv_buf_free(&b);
}

static void test_msgpack(void) {
  inv_buf_t b = {0};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &b, inv_buf_msgpack_write);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_str(&pk, 1);
  msgpack_pack_str_body(&pk, "v", 1);
  msgpack_pack_uint64(&pk, 300);
  /* fixmap(1) fixstr "v" uint16 300 */
  CHECK_EQ_INT(b.len, 6);
  CHECK(memcmp(b.data, "\x81\xa1v\xcd\x01\x2c", 6) == 0);
  CHECK_EQ_INT(inv_buf_msgpack_write(&b, "x", 1), 0);
  CHECK_EQ_INT(b.len, 7);
  inv_buf_free(&b);
}

int main(void) {
  RUN(test_append);
  RUN(test_empty_append);
  RUN(test_growth);
  RUN(test_printf);
  RUN(test_consume_reset);
  RUN(test_reserve);
  RUN(test_msgpack);
  return check_summary();
}
