/*
 * Unit tests for the sharded log's names and routing (proto/log_shard.c).
 */
#include <string.h>

#include "check.h"
#include "common/base/slot.h"
#include "proto/log_shard.h"

static void test_names_live_in_home_slot(void) {
  char key[INV_LOG_NAME_MAX], ch[INV_LOG_NAME_MAX];
  for (unsigned s = 0; s < INV_LOG_SHARDS; s++) {
    size_t kl = inv_log_shard_key(s, key);
    size_t cl = inv_log_shard_channel(s, ch);
    CHECK_EQ_INT(kl, strlen(key));
    CHECK_EQ_INT(cl, strlen(ch));
    CHECK(strncmp(key, "cache:invalidation:log:{", 24) == 0);
    CHECK(strncmp(ch, "cache:invalidation:shard:{", 26) == 0);
    /* Both hash into the first slot of the shard's range, so they move
     * with it. */
    CHECK_EQ_INT(inv_key_slot(key, kl), s * INV_LOG_SHARD_SLOTS);
    CHECK_EQ_INT(inv_key_slot(ch, cl), s * INV_LOG_SHARD_SLOTS);
    CHECK_EQ_INT(inv_log_shard_from_name(key, kl), s);
    CHECK_EQ_INT(inv_log_shard_from_name(ch, cl), s);
    CHECK(inv_key_reserved(key, kl));
  }
  /* Slot 0's canonical tag is 3560 (common/base/slot.h). */
  inv_log_shard_key(0, key);
  CHECK_EQ_STR(key, "cache:invalidation:log:{3560}");
}

static void test_from_name_refuses_others(void) {
  const char *bad[] = {"cache:invalidation:log",
                       "cache:invalidation:log:{}",
                       "cache:invalidation:log:{3560",
                       "cache:invalidation:log:{x}",
                       "cache:invalidation:log:{0}", /* not a home slot's tag */
                       "cache:invalidation:log:{0003560}",
                       "cache:invalidation:log:{99999999}",
                       "user:1",
                       ""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    CHECK_EQ_INT(inv_log_shard_from_name(bad[i], strlen(bad[i])), -1);
}

static int route(inv_kind_t kind, const char *target) {
  inv_event_t ev = {kind, INV_MODE_HARD, target, strlen(target)};
  return inv_log_event_shard(&ev);
}

static void test_event_routing(void) {
  const char *keys[] = {"user:42", "{user:42}:profile", "a", "{}x", "k{t}"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    CHECK_EQ_INT(route(INV_KIND_KEY, keys[i]),
                 inv_key_slot(keys[i], strlen(keys[i])) / INV_LOG_SHARD_SLOTS);
  /* A pinned prefix or pattern goes to its tag's shard. */
  unsigned tag_shard = inv_key_slot("user:42", 7) / INV_LOG_SHARD_SLOTS;
  CHECK_EQ_INT(route(INV_KIND_PREFIX, "{user:42}:"), tag_shard);
  CHECK_EQ_INT(route(INV_KIND_PATTERN, "{user:42}:*"), tag_shard);
  CHECK_EQ_INT(route(INV_KIND_PREFIX, "x{user:42}"), tag_shard);
  /* Unpinned ones go everywhere: an open tag, an empty tag, a wildcard in
   * the tag, no tag. */
  CHECK_EQ_INT(route(INV_KIND_PREFIX, "user:"), -1);
  CHECK_EQ_INT(route(INV_KIND_PREFIX, "{user:42"), -1);
  CHECK_EQ_INT(route(INV_KIND_PREFIX, "{}user"), -1);
  CHECK_EQ_INT(route(INV_KIND_PATTERN, "user:*"), -1);
  CHECK_EQ_INT(route(INV_KIND_PATTERN, "{user:*}:x"), -1);
  CHECK_EQ_INT(route(INV_KIND_PATTERN, "*"), -1);
}

int main(void) {
  test_names_live_in_home_slot();
  test_from_name_refuses_others();
  test_event_routing();
  return check_summary();
}
