/* Unit tests for common/slot: CRC16 and key slots with hash tags. The
 * expected slots were taken from Redis 7 CLUSTER KEYSLOT; the integration
 * test test_slot_glob.py compares 20,000 more keys live. */
#include "common/base/slot.h"

#include <string.h>

#include "tests/unit/check.h"

#define SLOT(s) inv_key_slot(s, strlen(s))

static void test_crc16(void) {
  CHECK_EQ_INT(inv_crc16("123456789", 9), 0x31C3);
  CHECK_EQ_INT(inv_crc16("", 0), 0);
  CHECK_EQ_INT(inv_crc16(NULL, 0), 0);
  CHECK_EQ_INT(inv_crc16("A", 1), 0x58E5);
}

static void test_known_slots(void) {
  CHECK_EQ_INT(SLOT("123456789"), 12739);
  CHECK_EQ_INT(SLOT("foo"), 12182);
  CHECK_EQ_INT(SLOT("bar"), 5061);
  CHECK_EQ_INT(SLOT("somekey"), 11058);
  CHECK_EQ_INT(SLOT("hello"), 866);
  CHECK_EQ_INT(SLOT("user:42"), 15880);
  CHECK_EQ_INT(SLOT(""), 0);
  CHECK_EQ_INT(inv_key_slot("\xff\x00\x80", 3), 7915);
}

static void test_hash_tags(void) {
  CHECK_EQ_INT(SLOT("{user1000}.following"), 3443);
  CHECK_EQ_INT(SLOT("{user1000}.followers"), 3443);
  CHECK_EQ_INT(SLOT("x{user:42}y"), SLOT("user:42"));
  /* "{}" is an empty tag: the whole key is hashed. */
  CHECK_EQ_INT(SLOT("foo{}{bar}"), 8363);
  CHECK_EQ_INT(SLOT("{}"), 15257);
  /* The tag runs from the first '{' to the first '}' after it. */
  CHECK_EQ_INT(SLOT("foo{{bar}}zap"), 4015);
  CHECK_EQ_INT(SLOT("foo{{bar}}zap"), SLOT("{bar"));
  CHECK_EQ_INT(SLOT("foo{bar}{zap}"), 5061);
  CHECK_EQ_INT(SLOT("{"), 4092);
  CHECK_EQ_INT(SLOT("}"), 12090);
  CHECK_EQ_INT(SLOT("a{b"), 13340);
  CHECK_EQ_INT(SLOT("}{a}"), SLOT("a"));
}

static void test_hash_tag_positions(void) {
  size_t start = 99, len = 99;
  CHECK_EQ_INT(inv_hash_tag("ab{cd}ef", 8, &start, &len), 1);
  CHECK_EQ_INT(start, 3);
  CHECK_EQ_INT(len, 2);
  CHECK_EQ_INT(inv_hash_tag("{x}", 3, &start, &len), 1);
  CHECK_EQ_INT(start, 1);
  CHECK_EQ_INT(len, 1);
  CHECK_EQ_INT(inv_hash_tag("{}", 2, &start, &len), 0);
  CHECK_EQ_INT(inv_hash_tag("{}{x}", 5, &start, &len), 0);
  CHECK_EQ_INT(inv_hash_tag("abc", 3, &start, &len), 0);
  CHECK_EQ_INT(inv_hash_tag("{abc", 4, &start, &len), 0);
  CHECK_EQ_INT(inv_hash_tag("", 0, &start, &len), 0);
  /* keylen bounds the search: the '}' past it does not count. */
  CHECK_EQ_INT(inv_hash_tag("{ab}", 3, &start, &len), 0);
  /* Binary-safe: a NUL inside the tag is part of it. */
  CHECK_EQ_INT(inv_hash_tag("{a\0b}", 5, &start, &len), 1);
  CHECK_EQ_INT(len, 3);
  CHECK_EQ_INT(inv_key_slot("{a\0b}zz", 7), inv_key_slot("a\0b", 3));
  /* NULL outputs are allowed. */
  CHECK_EQ_INT(inv_hash_tag("{q}", 3, NULL, NULL), 1);
}

static void test_range(void) {
  /* Every slot is in range, and a simple sweep reaches many distinct ones. */
  static unsigned char seen[INV_SLOTS];
  char key[32];
  int ok = 1, distinct = 0;
  for (int i = 0; i < 100000; i++) {
    int n = snprintf(key, sizeof(key), "key:%d", i);
    unsigned s = inv_key_slot(key, (size_t)n);
    if (s >= INV_SLOTS)
      ok = 0;
    else if (!seen[s]++)
      distinct++;
  }
  CHECK(ok);
  CHECK(distinct > 16000);
}

static void test_slot_tags(void) {
  /* Every slot's tag hashes to it, and no smaller number does. */
  char digits[16];
  int ok = 1, minimal = 1;
  for (unsigned slot = 0; slot < INV_SLOTS; slot++) {
    uint32_t tag = inv_slot_tag(slot);
    int n = snprintf(digits, sizeof(digits), "%u", (unsigned)tag);
    if (inv_key_slot(digits, (size_t)n) != slot) ok = 0;
    if (tag >= 110000) ok = 0;
  }
  for (uint32_t t = 0; t < 20000; t++) {
    int n = snprintf(digits, sizeof(digits), "%u", (unsigned)t);
    if (inv_slot_tag(inv_key_slot(digits, (size_t)n)) > t) minimal = 0;
  }
  CHECK(ok);
  CHECK(minimal);
  /* "0" is the smallest tag of all, so it is its slot's tag. */
  CHECK_EQ_INT(inv_slot_tag(inv_key_slot("0", 1)), 0);
}

int main(void) {
  RUN(test_crc16);
  RUN(test_known_slots);
  RUN(test_hash_tags);
  RUN(test_hash_tag_positions);
  RUN(test_range);
  RUN(test_slot_tags);
  return check_summary();
}
