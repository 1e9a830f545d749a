/*
 * The sharded log's names and routing (log_shard.h).
 */
#include "proto/log_shard.h"

#include <stdio.h>
#include <string.h>

#include "common/base/glob.h"

size_t inv_log_shard_key(unsigned shard, char out[INV_LOG_NAME_MAX]) {
  int n = snprintf(out, INV_LOG_NAME_MAX, INV_LOG_KEY_PREFIX "{%u}",
                   (unsigned)inv_slot_tag(inv_log_shard_home_slot(shard)));
  return (size_t)n;
}

size_t inv_log_shard_channel(unsigned shard, char out[INV_LOG_NAME_MAX]) {
  int n = snprintf(out, INV_LOG_NAME_MAX, INV_SHARD_CHANNEL_PREFIX "{%u}",
                   (unsigned)inv_slot_tag(inv_log_shard_home_slot(shard)));
  return (size_t)n;
}

int inv_log_shard_from_name(const char *name, size_t len) {
  const char *tag;
  size_t taglen;
  size_t klen = sizeof(INV_LOG_KEY_PREFIX) - 1;
  size_t clen = sizeof(INV_SHARD_CHANNEL_PREFIX) - 1;
  if (len > klen + 2 && memcmp(name, INV_LOG_KEY_PREFIX, klen) == 0) {
    tag = name + klen;
    taglen = len - klen;
  } else if (len > clen + 2 &&
             memcmp(name, INV_SHARD_CHANNEL_PREFIX, clen) == 0) {
    tag = name + clen;
    taglen = len - clen;
  } else {
    return -1;
  }
  /* "{<digits>}": at most six digits (every tag is below 110000). */
  if (taglen < 3 || taglen > 8 || tag[0] != '{' || tag[taglen - 1] != '}')
    return -1;
  unsigned long v = 0;
  for (size_t i = 1; i + 1 < taglen; i++) {
    if (tag[i] < '0' || tag[i] > '9') return -1;
    v = v * 10 + (unsigned long)(tag[i] - '0');
  }
  unsigned slot = inv_key_slot(tag, taglen);
  unsigned shard = inv_log_shard_of_slot(slot);
  if (slot != inv_log_shard_home_slot(shard) || v != inv_slot_tag(slot))
    return -1;
  return (int)shard;
}

int inv_log_event_shard(const inv_event_t *ev) {
  size_t start, taglen;
  unsigned slot;
  switch (ev->kind) {
    case INV_KIND_KEY:
      return (int)inv_log_shard_of_slot(
          inv_key_slot(ev->target, ev->target_len));
    case INV_KIND_PREFIX:
      /* Every key that starts with a prefix holding a complete tag has that
       * tag: its first '{' and the first '}' after it are the prefix's. */
      if (inv_hash_tag(ev->target, ev->target_len, &start, &taglen))
        return (int)inv_log_shard_of_slot(
            inv_key_slot(ev->target, ev->target_len));
      return -1;
    case INV_KIND_PATTERN:
      if (inv_glob_pinned_slot(ev->target, ev->target_len, &slot))
        return (int)inv_log_shard_of_slot(slot);
      return -1;
  }
  return -1;
}
