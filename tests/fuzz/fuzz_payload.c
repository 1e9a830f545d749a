/*
 * Fuzz target for what a worker runs on whatever arrives on the channels
 * and in the log: inv_payload_decode on arbitrary bytes, then, for a
 * payload that decodes, what the worker does next with it: a broadcast's
 * entry ids parsed as stream ids, and every event turned into the keys and
 * patterns it deletes (slots, lock and stale names, the prefix and cover
 * patterns).
 *
 * Invariants:
 *   - decoding yields 0, INV_EPROTO with a reason, or INV_ENOMEM, and
 *     inv_payload_destroy is safe in every case;
 *   - a decoded payload has version INV_PAYLOAD_VERSION, at most
 *     INV_LOG_SHARDS ids, each of a shard below INV_LOG_SHARDS and a
 *     non-empty NUL-free id of at most 47 bytes, known kinds and modes, and
 *     targets inside the input;
 *   - a key's lock and stale copy hash to the key's slot, or there are none;
 *   - a prefix's SCAN pattern matches the prefix and its extensions, and
 *     when it is pinned to one slot, those keys hash to that slot;
 *   - the cover pattern of a prefix matches the prefix's lock and stale
 *     names, which inv_regen_classify then reads as lock and stale.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/glob.h"
#include "common/base/slot.h"
#include "proto/event.h"
#include "proto/keyname.h"
#include "proto/log_shard.h"
#include "tests/fuzz/fuzz.h"
#include "proto/stream_id.h"

/* The lock and stale copy of key keep its slot, or do not exist. */
static void check_key(const char *key, size_t len) {
  inv_regen_names_t n;
  unsigned slot = inv_key_slot(key, len);
  FUZZ_ASSERT(slot < INV_SLOTS);
  if (inv_regen_names(key, len, &n) != 0) return; /* out of memory */
  if (n.keeps_slot) {
    FUZZ_ASSERT(inv_key_slot(n.lock, n.lock_len) == slot);
    FUZZ_ASSERT(inv_key_slot(n.stale, n.stale_len) == slot);
    FUZZ_ASSERT(n.lock[n.lock_len] == '\0' && n.stale[n.stale_len] == '\0');
  } else {
    FUZZ_ASSERT(n.lock == NULL && n.stale == NULL);
  }
  inv_regen_names_free(&n);
}

/* What the worker scans for a pattern: its pinned slot, if any, and the
 * cover pattern that finds locks and stale copies too. A key known to
 * match pat (or NULL) is checked against both. */
static void check_pattern(const char *pat, size_t len, const char *key,
                          size_t keylen) {
  unsigned slot;
  int pinned = inv_glob_pinned_slot(pat, len, &slot);
  char *cover = malloc(len + 2);
  size_t clen;
  if (cover == NULL) return;
  (void)inv_glob_matches_everything(pat, len);
  clen = inv_regen_cover_pattern(pat, len, cover);
  FUZZ_ASSERT(clen <= len + 2);
  if (pinned) FUZZ_ASSERT(slot < INV_SLOTS);
  if (key != NULL) {
    inv_regen_names_t n;
    FUZZ_ASSERT(inv_glob_match(pat, len, key, keylen) == 1);
    if (pinned) FUZZ_ASSERT(inv_key_slot(key, keylen) == slot);
    if (clen > 0) FUZZ_ASSERT(inv_glob_match(cover, clen, key, keylen) == 1);
    if (inv_regen_names(key, keylen, &n) == 0) {
      if (n.keeps_slot) {
        size_t vs, vl;
        if (clen > 0) {
          FUZZ_ASSERT(inv_glob_match(cover, clen, n.lock, n.lock_len) == 1);
          FUZZ_ASSERT(inv_glob_match(cover, clen, n.stale, n.stale_len) == 1);
        }
        FUZZ_ASSERT(inv_regen_classify(pat, len, n.lock, n.lock_len, &vs,
                                       &vl) == INV_REGEN_LOCK);
        FUZZ_ASSERT(inv_regen_classify(pat, len, n.stale, n.stale_len, &vs,
                                       &vl) == INV_REGEN_STALE);
      }
      inv_regen_names_free(&n);
    }
  }
  free(cover);
}

/* A prefix becomes the pattern prefix + '*': the prefix itself and any
 * extension of it must match. */
static void check_prefix(const char *prefix, size_t len) {
  char *pat = malloc(2 * len + 1);
  char *ext = malloc(len + 3);
  if (pat != NULL && ext != NULL) {
    size_t n = inv_glob_from_prefix(prefix, len, pat);
    FUZZ_ASSERT(n >= len + 1 && n <= 2 * len + 1);
    FUZZ_ASSERT(pat[n - 1] == '*');
    if (len > 0) check_pattern(pat, n, prefix, len);
    if (len > 0) memcpy(ext, prefix, len);
    memcpy(ext + len, "\0}", 2);
    check_pattern(pat, n, ext, len + 2);
  }
  free(pat);
  free(ext);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  inv_payload_t p;
  char err[128];
  const char *in = (const char *)data;
  int rc = inv_payload_decode(in, size, &p, err, sizeof(err));

  FUZZ_ASSERT(rc == 0 || rc == INV_EPROTO || rc == INV_ENOMEM);
  FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
  if (rc == INV_EPROTO) FUZZ_ASSERT(err[0] != '\0');
  if (rc == 0) {
    inv_sid_t id;
    FUZZ_ASSERT(err[0] == '\0');
    FUZZ_ASSERT(p.version == INV_PAYLOAD_VERSION);
    FUZZ_ASSERT(p.nids <= INV_LOG_SHARDS && (p.nids == 0 || p.ids != NULL));
    for (size_t i = 0; i < p.nids; i++) {
      FUZZ_ASSERT(p.ids[i].shard < INV_LOG_SHARDS);
      FUZZ_ASSERT(p.ids[i].id[0] != '\0' &&
                  strlen(p.ids[i].id) < sizeof(p.ids[i].id));
      (void)inv_sid_parse(p.ids[i].id, strlen(p.ids[i].id), &id);
    }
    FUZZ_ASSERT(p.nevents == 0 || p.events != NULL);
    for (size_t i = 0; i < p.nevents; i++) {
      const inv_event_t *ev = &p.events[i];
      FUZZ_ASSERT(ev->kind <= INV_KIND_PATTERN && ev->mode <= INV_MODE_SOFT);
      FUZZ_ASSERT(
          ev->target_len == 0 ||
          (ev->target >= in && ev->target + ev->target_len <= in + size));
      if (ev->kind == INV_KIND_KEY) {
        check_key(ev->target, ev->target_len);
      } else if (ev->kind == INV_KIND_PATTERN) {
        check_pattern(ev->target, ev->target_len, NULL, 0);
      } else {
        check_prefix(ev->target, ev->target_len);
      }
    }
  }
  inv_payload_destroy(&p);
  inv_payload_destroy(&p); /* twice: destroy leaves it reusable */
  return 0;
}
