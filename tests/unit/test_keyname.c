/* Unit tests for proto/keyname (the regeneration key contract) and the
 * embedded scripts: lock and stale names, the slot fallback, how a pattern
 * scan classifies keys, the cover pattern, and that the embedded sources
 * and SHA1s are the .lua files' own. */
#include "proto/keyname.h"

#include <stdlib.h>
#include <string.h>

#include "common/base/glob.h"
#include "common/base/slot.h"
#include "proto/log_shard.h"
#include "proto/scripts.h"
#include "tests/unit/check.h"

#define S(x) x, strlen(x)

static void check_names(const char *key, const char *lock, const char *stale) {
  inv_regen_names_t n;
  CHECK_EQ_INT(inv_regen_names(S(key), &n), 0);
  CHECK_EQ_INT(n.keeps_slot, 1);
  CHECK_EQ_STR(n.lock, lock);
  CHECK_EQ_STR(n.stale, stale);
  CHECK_EQ_INT(n.lock_len, strlen(lock));
  CHECK_EQ_INT(n.stale_len, strlen(stale));
  CHECK_EQ_INT(inv_key_slot(n.lock, n.lock_len), inv_key_slot(S(key)));
  CHECK_EQ_INT(inv_key_slot(n.stale, n.stale_len), inv_key_slot(S(key)));
  inv_regen_names_free(&n);
}

static void test_names(void) {
  check_names("user:42", "{user:42}:lock", "{user:42}:stale");
  check_names("{user:42}:profile", "{user:42}:profile:lock",
              "{user:42}:profile:stale");
  check_names("a{b}c", "a{b}c:lock", "a{b}c:stale");
  /* Only a '{' without '}': wrapped. */
  check_names("a{b", "{a{b}:lock", "{a{b}:stale");
}

static void test_slot_fallback(void) {
  inv_regen_names_t n;
  /* "{a}{b}" would hash "a", not "a}{b": no lock, no stale copy. */
  CHECK_EQ_INT(inv_regen_names(S("a}{b"), &n), 0);
  CHECK_EQ_INT(n.keeps_slot, 0);
  CHECK(n.lock == NULL && n.stale == NULL);
  inv_regen_names_free(&n);
  CHECK_EQ_INT(inv_regen_names(S("x}y"), &n), 0);
  CHECK_EQ_INT(n.keeps_slot, 0);
  inv_regen_names_free(&n);
  /* "{}x" has no tag ("{}" is empty), but "{{}x}:lock" would hash "{". */
  CHECK_EQ_INT(inv_regen_names(S("{}x"), &n), 0);
  CHECK_EQ_INT(n.keeps_slot, 0);
  inv_regen_names_free(&n);
  inv_regen_names_free(NULL);
  /* Binary keys with NULs keep their bytes. */
  CHECK_EQ_INT(inv_regen_names("k\0z", 3, &n), 0);
  CHECK_EQ_INT(n.keeps_slot, 1);
  CHECK_EQ_INT(n.lock_len, 3 + 2 + 5);
  CHECK(memcmp(n.lock, "{k\0z}:lock", 10) == 0);
  inv_regen_names_free(&n);
}

#define CLS(p, k) inv_regen_classify(S(p), S(k), NULL, NULL)

static void test_classify(void) {
  size_t vs = 99, vl = 99;
  CHECK_EQ_INT(inv_regen_classify(S("user:*"), S("{user:1}:lock"), &vs, &vl),
               INV_REGEN_LOCK);
  CHECK_EQ_INT(vs, 1);
  CHECK_EQ_INT(vl, 6);
  CHECK_EQ_INT(CLS("user:*", "{user:1}:stale"), INV_REGEN_STALE);
  CHECK_EQ_INT(CLS("user:*", "user:1"), INV_REGEN_VALUE);
  /* The lock of a key that does not match. */
  CHECK_EQ_INT(CLS("user:*", "{session:1}:lock"), INV_REGEN_VALUE);
  /* Tagged keys: K + suffix. */
  CHECK_EQ_INT(inv_regen_classify(S("{u}:*"), S("{u}:a:lock"), &vs, &vl),
               INV_REGEN_LOCK);
  CHECK_EQ_INT(vs, 0);
  CHECK_EQ_INT(vl, 5);
  CHECK_EQ_INT(CLS("{u}:*", "{u}:a:stale"), INV_REGEN_STALE);
  /* "{u}:a:lock" matches "{u}:*" itself, yet it is the lock of "{u}:a". */
  CHECK(inv_glob_match(S("{u}:*"), S("{u}:a:lock")));
  /* A lock of a lock is the lock of "{u}:a:lock", which matches. */
  CHECK_EQ_INT(CLS("{u}:*", "{u}:a:lock:lock"), INV_REGEN_LOCK);
  /* Not the contract's name: "{u}:a" is tagged, so "{{u}:a}:lock" is no
   * lock of it. */
  CHECK_EQ_INT(CLS("{u}:*", "{{u}:a}:lock"), INV_REGEN_VALUE);
  /* A key whose names cannot keep the slot has no lock. */
  CHECK_EQ_INT(CLS("a*", "{a}{b}:lock"), INV_REGEN_VALUE);
  /* Bare suffixes are value keys. */
  CHECK_EQ_INT(CLS("*", ":lock"), INV_REGEN_VALUE);
  CHECK_EQ_INT(CLS("*", "{}:stale"), INV_REGEN_VALUE);
}

static void test_cover(void) {
  char out[64];
  size_t n = inv_regen_cover_pattern(S("user:*"), out);
  CHECK_EQ_INT(n, 8);
  CHECK(memcmp(out, "*user:*", 7) == 0 && out[7] == '*');
  /* The cover matches values, locks and stale copies. */
  CHECK(inv_glob_match(out, n, S("user:1")));
  CHECK(inv_glob_match(out, n, S("{user:1}:lock")));
  CHECK(inv_glob_match(out, n, S("{user:1}:stale")));
  n = inv_regen_cover_pattern(S("{u}:[ak]?"), out);
  CHECK(inv_glob_match(out, n, S("{u}:a1:lock")));
  CHECK(inv_regen_cover_pattern(S("a[bc]\\*"), out) == 9);
  /* Unfinished constructs: no cover. */
  CHECK_EQ_INT(inv_regen_cover_pattern(S("a[bc"), out), 0);
  CHECK_EQ_INT(inv_regen_cover_pattern(S("ab\\"), out), 0);
  CHECK_EQ_INT(inv_regen_cover_pattern(S("a[\\]"), out), 0);
}

/* The embedded sources are the files, byte for byte. */
static void check_script(const inv_script_t *s, const char *file) {
  char path[512];
  snprintf(path, sizeof(path), "%s/proto/scripts/%s", INV_SOURCE_DIR, file);
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  if (f == NULL) return;
  char buf[8192];
  size_t n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  CHECK_EQ_INT(n, s->len);
  CHECK(memcmp(buf, s->src, n) == 0);
  CHECK_EQ_INT(strlen(s->src), s->len);
  CHECK_EQ_INT(strlen(s->sha), 40);
}

static void test_scripts(void) {
  check_script(&inv_script_commit, "commit.lua");
  check_script(&inv_script_unlock, "unlock.lua");
  check_script(&inv_script_soft, "soft.lua");
  check_script(&inv_script_log_append, "log_append.lua");
  CHECK_EQ_STR(inv_script_soft.name, "soft");
  CHECK_EQ_STR(inv_script_log_append.name, "log_append");
  /* The log script spells the consumer group out; it must be the group the
   * workers read with. */
  CHECK(strstr(inv_script_log_append.src,
               "'CREATE', KEYS[1], '" INV_LOG_GROUP "', '0'") != NULL);
}

int main(void) {
  RUN(test_names);
  RUN(test_slot_fallback);
  RUN(test_classify);
  RUN(test_cover);
  RUN(test_scripts);
  return check_summary();
}
