/*
 * Unit tests for proto/event.c: the event rules with every error message,
 * event packing, and the payload decoder.
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/slot.h"
#include "proto/codec.h"
#include "proto/event.h"
#include "proto/log_shard.h"
#include "tests/unit/check.h"

/* One test object: built by packing, then unpacked for the parser. */
typedef struct {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
} obj_t;

static void obj_begin(obj_t *o) {
  msgpack_sbuffer_init(&o->sb);
  msgpack_packer_init(&o->pk, &o->sb, msgpack_sbuffer_write);
  msgpack_unpacked_init(&o->u);
}

static const msgpack_object *obj_end(obj_t *o) {
  size_t off = 0;
  if (msgpack_unpack_next(&o->u, o->sb.data, o->sb.size, &off) !=
      MSGPACK_UNPACK_SUCCESS)
    return NULL;
  return &o->u.data;
}

static void obj_free(obj_t *o) {
  msgpack_unpacked_destroy(&o->u);
  msgpack_sbuffer_destroy(&o->sb);
}

static void pstr(msgpack_packer *pk, const char *s) { inv_pack_str(pk, s); }

static void pbin(msgpack_packer *pk, const char *s, size_t n) {
  msgpack_pack_bin(pk, n);
  if (n > 0) msgpack_pack_bin_body(pk, s, n);
}

/* Packs {"kind": kind, "target": target, "mode": mode}, leaving out the
 * fields given as NULL. */
static void pack_ev(msgpack_packer *pk, const char *kind, const char *target,
                    const char *mode) {
  msgpack_pack_map(pk, (kind != NULL) + (target != NULL) + (mode != NULL));
  if (kind) {
    pstr(pk, "kind");
    pstr(pk, kind);
  }
  if (target) {
    pstr(pk, "target");
    pstr(pk, target);
  }
  if (mode) {
    pstr(pk, "mode");
    pstr(pk, mode);
  }
}

static const inv_event_rules_t strict_rules = {10, 0};
static const inv_event_rules_t flush_rules = {10, 1};

/* Parses the event built by pack_ev and expects success. */
static void expect_ok(const char *kind, const char *target, const char *mode,
                      const inv_event_rules_t *rules, inv_kind_t want_kind,
                      inv_mode_t want_mode) {
  obj_t o;
  inv_event_t ev;
  char err[256];
  obj_begin(&o);
  pack_ev(&o.pk, kind, target, mode);
  int rc = inv_event_parse(obj_end(&o), rules, 0, &ev, err, sizeof(err));
  CHECK_EQ_INT(rc, 0);
  if (rc != 0) fprintf(stderr, "  %s\n", err);
  CHECK_EQ_INT(ev.kind, want_kind);
  CHECK_EQ_INT(ev.mode, want_mode);
  CHECK_EQ_INT(ev.target_len, strlen(target));
  CHECK(ev.target_len == 0 || memcmp(ev.target, target, ev.target_len) == 0);
  obj_free(&o);
}

/* Parses o with rules and index and expects EINVAL with exactly msg. */
static void expect_err_obj(obj_t *o, const inv_event_rules_t *rules,
                           size_t index, const char *msg) {
  inv_event_t ev;
  char err[256];
  int rc = inv_event_parse(obj_end(o), rules, index, &ev, err, sizeof(err));
  CHECK_EQ_INT(rc, INV_EINVAL);
  CHECK_EQ_STR(err, msg);
  CHECK(ev.target == NULL && ev.target_len == 0);
}

static void expect_err(const char *kind, const char *target, const char *mode,
                       const inv_event_rules_t *rules, size_t index,
                       const char *msg) {
  obj_t o;
  obj_begin(&o);
  pack_ev(&o.pk, kind, target, mode);
  expect_err_obj(&o, rules, index, msg);
  obj_free(&o);
}

static void test_valid_events(void) {
  expect_ok("key", "user:1", NULL, &strict_rules, INV_KIND_KEY, INV_MODE_HARD);
  expect_ok("key", "user:1", "hard", &strict_rules, INV_KIND_KEY,
            INV_MODE_HARD);
  expect_ok("key", "user:1", "soft", &strict_rules, INV_KIND_KEY,
            INV_MODE_SOFT);
  expect_ok("prefix", "user:", NULL, &strict_rules, INV_KIND_PREFIX,
            INV_MODE_HARD);
  expect_ok("pattern", "user:*", "soft", &strict_rules, INV_KIND_PATTERN,
            INV_MODE_SOFT);
  expect_ok("pattern", "*a", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  expect_ok("pattern", "{u:1}:*", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  /* Exactly max_key_len bytes is allowed. */
  expect_ok("key", "0123456789", NULL, &strict_rules, INV_KIND_KEY,
            INV_MODE_HARD);
  /* With allow_flush, flushes are accepted. */
  expect_ok("prefix", "", NULL, &flush_rules, INV_KIND_PREFIX, INV_MODE_HARD);
  expect_ok("pattern", "*", NULL, &flush_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  /* NULL rules: no length limit, no flushes. */
  expect_ok("key", "a-key-well-over-ten-bytes", NULL, NULL, INV_KIND_KEY,
            INV_MODE_HARD);
  expect_err("pattern", "*", NULL, NULL, 0,
             "event 0: pattern \"*\" matches every key (refused unless the "
             "publisher runs with --allow-flush)");

  /* A bin target with arbitrary bytes, and a nil mode. */
  {
    obj_t o;
    inv_event_t ev;
    char err[256];
    obj_begin(&o);
    msgpack_pack_map(&o.pk, 3);
    pstr(&o.pk, "target");
    pbin(&o.pk, "a\0\xff", 3);
    pstr(&o.pk, "mode");
    msgpack_pack_nil(&o.pk);
    pstr(&o.pk, "kind");
    pstr(&o.pk, "key");
    CHECK_EQ_INT(
        inv_event_parse(obj_end(&o), &strict_rules, 0, &ev, err, sizeof(err)),
        0);
    CHECK_EQ_INT(ev.target_len, 3);
    CHECK(memcmp(ev.target, "a\0\xff", 3) == 0);
    CHECK_EQ_INT(ev.mode, INV_MODE_HARD);
    CHECK_EQ_STR(err, "");
    obj_free(&o);
  }
}

static void test_kind_errors(void) {
  expect_err(NULL, "k", NULL, &strict_rules, 1, "event 1: kind is missing");
  expect_err("keys", "k", NULL, &strict_rules, 1,
             "event 1: unknown kind \"keys\" (expected key, prefix or "
             "pattern)");
  expect_err("", "k", NULL, &strict_rules, 1,
             "event 1: unknown kind \"\" (expected key, prefix or pattern)");
  expect_err("KEY", "k", NULL, &strict_rules, 1,
             "event 1: unknown kind \"KEY\" (expected key, prefix or "
             "pattern)");
  {
    obj_t o;
    obj_begin(&o);
    msgpack_pack_map(&o.pk, 2);
    pstr(&o.pk, "kind");
    msgpack_pack_int(&o.pk, 0);
    pstr(&o.pk, "target");
    pstr(&o.pk, "k");
    expect_err_obj(&o, &strict_rules, 1,
                   "event 1: kind is not a string (got int)");
    obj_free(&o);
  }
  /* A kind given as bin is refused: names are strings. */
  {
    obj_t o;
    obj_begin(&o);
    msgpack_pack_map(&o.pk, 2);
    pstr(&o.pk, "kind");
    pbin(&o.pk, "key", 3);
    pstr(&o.pk, "target");
    pstr(&o.pk, "k");
    expect_err_obj(&o, &strict_rules, 1,
                   "event 1: kind is not a string (got bin)");
    obj_free(&o);
  }
  /* Client bytes in messages are escaped and cut. */
  expect_err("a\"b\\c\n\x01\x7f", "k", NULL, &strict_rules, 1,
             "event 1: unknown kind \"a\\\"b\\\\c\\x0a\\x01\\x7f\" (expected "
             "key, prefix or pattern)");
  expect_err("0123456789abcdef0123456789abcdefTAIL", "k", NULL, &strict_rules,
             1,
             "event 1: unknown kind \"0123456789abcdef0123456789abcdef...\" "
             "(expected key, prefix or pattern)");
}

static void test_target_errors(void) {
  expect_err("key", NULL, NULL, &strict_rules, 2, "event 2: target is missing");
  expect_err("key", "", NULL, &strict_rules, 3, "event 3: target is empty");
  expect_err("pattern", "", NULL, &strict_rules, 3, "event 3: target is empty");
  expect_err("key", "", NULL, &flush_rules, 3, "event 3: target is empty");
  expect_err("key", "0123456789A", NULL, &strict_rules, 4,
             "event 4: target is 11 bytes, over the limit of 10");
  expect_err("prefix", "0123456789A", NULL, &flush_rules, 4,
             "event 4: target is 11 bytes, over the limit of 10");
  {
    obj_t o;
    obj_begin(&o);
    msgpack_pack_map(&o.pk, 2);
    pstr(&o.pk, "kind");
    pstr(&o.pk, "key");
    pstr(&o.pk, "target");
    msgpack_pack_array(&o.pk, 0);
    expect_err_obj(&o, &strict_rules, 2,
                   "event 2: target is not a string or binary (got array)");
    obj_free(&o);
  }
  {
    obj_t o;
    obj_begin(&o);
    msgpack_pack_map(&o.pk, 2);
    pstr(&o.pk, "kind");
    pstr(&o.pk, "key");
    pstr(&o.pk, "target");
    msgpack_pack_nil(&o.pk);
    expect_err_obj(&o, &strict_rules, 2,
                   "event 2: target is not a string or binary (got nil)");
    obj_free(&o);
  }
  /* An empty bin target is empty too. */
  {
    obj_t o;
    obj_begin(&o);
    msgpack_pack_map(&o.pk, 2);
    pstr(&o.pk, "kind");
    pstr(&o.pk, "key");
    pstr(&o.pk, "target");
    pbin(&o.pk, "", 0);
    expect_err_obj(&o, &strict_rules, 3, "event 3: target is empty");
    obj_free(&o);
  }
}

static void test_mode_errors(void) {
  expect_err("key", "k", "softly", &strict_rules, 5,
             "event 5: unknown mode \"softly\" (expected hard or soft)");
  expect_err("key", "k", "", &strict_rules, 5,
             "event 5: unknown mode \"\" (expected hard or soft)");
  {
    obj_t o;
    obj_begin(&o);
    msgpack_pack_map(&o.pk, 3);
    pstr(&o.pk, "kind");
    pstr(&o.pk, "key");
    pstr(&o.pk, "target");
    pstr(&o.pk, "k");
    pstr(&o.pk, "mode");
    msgpack_pack_true(&o.pk);
    expect_err_obj(&o, &strict_rules, 5,
                   "event 5: mode is not a string (got bool)");
    obj_free(&o);
  }
}

static void test_field_errors(void) {
  obj_t o;

  obj_begin(&o);
  msgpack_pack_array(&o.pk, 2);
  pstr(&o.pk, "key");
  pstr(&o.pk, "k");
  expect_err_obj(&o, &strict_rules, 0, "event 0: expected a map, got array");
  obj_free(&o);

  obj_begin(&o);
  pstr(&o.pk, "user:1");
  expect_err_obj(&o, &strict_rules, 0, "event 0: expected a map, got str");
  obj_free(&o);

  obj_begin(&o);
  msgpack_pack_map(&o.pk, 3);
  pstr(&o.pk, "kind");
  pstr(&o.pk, "key");
  pstr(&o.pk, "target");
  pstr(&o.pk, "k");
  pstr(&o.pk, "ttl");
  msgpack_pack_int(&o.pk, 5);
  expect_err_obj(&o, &strict_rules, 6,
                 "event 6: unknown field \"ttl\" (expected kind, target, "
                 "mode)");
  obj_free(&o);

  /* A misspelt field is refused rather than ignored. */
  obj_begin(&o);
  msgpack_pack_map(&o.pk, 3);
  pstr(&o.pk, "kind");
  pstr(&o.pk, "key");
  pstr(&o.pk, "target");
  pstr(&o.pk, "k");
  pstr(&o.pk, "mod");
  pstr(&o.pk, "soft");
  expect_err_obj(&o, &strict_rules, 6,
                 "event 6: unknown field \"mod\" (expected kind, target, "
                 "mode)");
  obj_free(&o);

  obj_begin(&o);
  msgpack_pack_map(&o.pk, 3);
  pstr(&o.pk, "kind");
  pstr(&o.pk, "key");
  pstr(&o.pk, "target");
  pstr(&o.pk, "k");
  msgpack_pack_int(&o.pk, 1);
  pstr(&o.pk, "x");
  expect_err_obj(&o, &strict_rules, 6, "event 6: a field name is not a string");
  obj_free(&o);

  obj_begin(&o);
  msgpack_pack_map(&o.pk, 3);
  pstr(&o.pk, "kind");
  pstr(&o.pk, "key");
  pstr(&o.pk, "target");
  pstr(&o.pk, "k");
  pstr(&o.pk, "kind");
  pstr(&o.pk, "prefix");
  expect_err_obj(&o, &strict_rules, 6, "event 6: duplicate field \"kind\"");
  obj_free(&o);

  /* An empty map: the first missing field is named. */
  obj_begin(&o);
  msgpack_pack_map(&o.pk, 0);
  expect_err_obj(&o, &strict_rules, 7, "event 7: kind is missing");
  obj_free(&o);
}

/* Writes s as the parser's error messages quote client bytes (short ones):
 * '"' and '\\' escaped, bytes outside 0x20..0x7e as \xNN. */
static void quoted(const char *s, char *out, size_t cap) {
  size_t o = 0;
  for (; *s && o + 5 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20 || c >= 0x7f) {
      o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
}

static void test_flush_rules(void) {
  /* No token restricts a byte: refused whatever the spelling. */
  static const char *const everything[] = {
      "*",  "**",    "***",  "*?*",  "?*",    "*??",          "?",
      "??", "*[^]*", "[^]*", "*[^]", "[^]?*", "*[\x80-\x7f]*"};
  char want[300];

  expect_err("prefix", "", NULL, &strict_rules, 7,
             "event 7: an empty prefix matches every key (refused unless "
             "the publisher runs with --allow-flush)");
  for (size_t i = 0; i < sizeof(everything) / sizeof(everything[0]); i++) {
    if ((char)0x80 >= 0 && strchr(everything[i], '\x80')) continue;
    char q[64];
    quoted(everything[i], q, sizeof(q));
    snprintf(want, sizeof(want),
             "event 8: pattern \"%s\" matches every key (refused unless the "
             "publisher runs with --allow-flush)",
             q);
    expect_err("pattern", everything[i], NULL, &strict_rules, 8, want);
    expect_ok("pattern", everything[i], NULL, &flush_rules, INV_KIND_PATTERN,
              INV_MODE_HARD);
  }
  /* A key or prefix named "*" is literal and matches one key or one
   * literal prefix, so it is no flush. */
  expect_ok("key", "*", NULL, &strict_rules, INV_KIND_KEY, INV_MODE_HARD);
  expect_ok("prefix", "*", NULL, &strict_rules, INV_KIND_PREFIX, INV_MODE_HARD);
  /* Escaped or literal characters, or a class that misses a byte, make a
   * pattern selective. */
  expect_ok("pattern", "\\*", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  expect_ok("pattern", "a*", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  expect_ok("pattern", "[a]*", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  expect_ok("pattern", "*x*", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  expect_ok("pattern", "[^a-a][^]*", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  expect_ok("pattern", "[]*", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
}

static void test_malformed_patterns(void) {
  static const char *const bad[] = {"[",    "*[",  "*[^", "a[bc", "[\\]",
                                    "[a-]", "*\\", "\\",  "x[a-"};
  char want[300];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char q[64];
    quoted(bad[i], q, sizeof(q));
    snprintf(want, sizeof(want),
             "event 2: pattern \"%s\" is malformed (a '[' without its "
             "closing ']', or a trailing lone '\\'); refused even with "
             "--allow-flush",
             q);
    expect_err("pattern", bad[i], NULL, &strict_rules, 2, want);
    expect_err("pattern", bad[i], NULL, &flush_rules, 2, want);
  }
  /* The same bytes as a key or a prefix are literal, hence fine. */
  expect_ok("key", "a[bc", NULL, &strict_rules, INV_KIND_KEY, INV_MODE_HARD);
  expect_ok("prefix", "x\\", NULL, &strict_rules, INV_KIND_PREFIX,
            INV_MODE_HARD);
  /* Closed classes and escaped brackets are well-formed. */
  expect_ok("pattern", "[\\]]*", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  expect_ok("pattern", "[a-]]", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
  expect_ok("pattern", "\\[*", NULL, &strict_rules, INV_KIND_PATTERN,
            INV_MODE_HARD);
}

static void test_reserved_targets(void) {
  static const inv_event_rules_t big = {100, 0}, big_flush = {100, 1};
  static const char *const kinds[] = {"key", "prefix"};
  static const char *const reserved[] = {
      "cache:invalidation", "cache:invalidation:", "cache:invalidation:log",
      "cache:invalidation:workers", "cache:invalidation:shard:{0}"};
  char want[300];
  for (size_t k = 0; k < 2; k++) {
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
      snprintf(want, sizeof(want),
               "event 5: %s \"%s\" lies in the service's own namespace "
               "(cache:invalidation and cache:invalidation:*), which no "
               "event may delete",
               kinds[k], reserved[i]);
      expect_err(kinds[k], reserved[i], NULL, &big, 5, want);
      expect_err(kinds[k], reserved[i], NULL, &big_flush, 5, want);
    }
  }
  /* Outside the namespace, or only partly inside it (a prefix whose keys
   * the workers sort out one by one). */
  expect_ok("prefix", "cache:", NULL, &big, INV_KIND_PREFIX, INV_MODE_HARD);
  expect_ok("prefix", "cache:invalidatio", NULL, &big, INV_KIND_PREFIX,
            INV_MODE_HARD);
  expect_ok("prefix", "cache:invalidations", NULL, &big, INV_KIND_PREFIX,
            INV_MODE_HARD);
  expect_ok("key", "cache:user:1", NULL, &big, INV_KIND_KEY, INV_MODE_HARD);
  expect_ok("key", "{cache:invalidation}:x", NULL, &big, INV_KIND_KEY,
            INV_MODE_HARD);
  /* A pattern that can reach the service's keys stays legal. */
  expect_ok("pattern", "cache:invalidation:*", NULL, &big, INV_KIND_PATTERN,
            INV_MODE_HARD);
  expect_ok("pattern", "cache:*", NULL, &big, INV_KIND_PATTERN, INV_MODE_HARD);
}

static void test_names(void) {
  CHECK_EQ_STR(inv_kind_name(INV_KIND_KEY), "key");
  CHECK_EQ_STR(inv_kind_name(INV_KIND_PREFIX), "prefix");
  CHECK_EQ_STR(inv_kind_name(INV_KIND_PATTERN), "pattern");
  CHECK_EQ_STR(inv_kind_name((inv_kind_t)7), "unknown");
  CHECK_EQ_STR(inv_mode_name(INV_MODE_HARD), "hard");
  CHECK_EQ_STR(inv_mode_name(INV_MODE_SOFT), "soft");
  CHECK_EQ_STR(inv_mode_name((inv_mode_t)9), "unknown");
}

static void test_reserved_keys(void) {
  CHECK(inv_key_reserved("cache:invalidation", 18));
  CHECK(inv_key_reserved("cache:invalidation:", 19));
  CHECK(inv_key_reserved("cache:invalidation:log:{3560}", 29));
  CHECK(inv_key_reserved("cache:invalidation:workers", 26));
  CHECK(!inv_key_reserved("cache:invalidations", 19));
  CHECK(!inv_key_reserved("cache:invalidatio", 17));
  CHECK(!inv_key_reserved("cache:user:1", 12));
  CHECK(!inv_key_reserved("", 0));
  CHECK(!inv_key_reserved("{cache:invalidation}:lock", 25));
}

static void test_pack_roundtrip(void) {
  const inv_event_t in[] = {
      {INV_KIND_KEY, INV_MODE_HARD, "user:1", 6},
      {INV_KIND_PREFIX, INV_MODE_SOFT, "sess\0ion:", 9},
      {INV_KIND_PATTERN, INV_MODE_HARD, "{t}:*", 5},
      {INV_KIND_PREFIX, INV_MODE_HARD, "", 0},
  };
  for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
    obj_t o;
    inv_event_t out;
    char err[256];
    obj_begin(&o);
    inv_event_pack(&o.pk, &in[i]);
    const msgpack_object *obj = obj_end(&o);
    CHECK(obj != NULL);
    if (obj == NULL) continue;
    CHECK_EQ_INT(obj->type, MSGPACK_OBJECT_MAP);
    CHECK_EQ_INT(obj->via.map.size, 3);
    /* The target is packed as str, whatever its bytes. */
    CHECK_EQ_INT(inv_map_get(obj, "target")->type, MSGPACK_OBJECT_STR);
    CHECK_EQ_INT(inv_event_parse(obj, &flush_rules, i, &out, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(out.kind, in[i].kind);
    CHECK_EQ_INT(out.mode, in[i].mode);
    CHECK_EQ_INT(out.target_len, in[i].target_len);
    CHECK(out.target_len == 0 ||
          memcmp(out.target, in[i].target, out.target_len) == 0);
    obj_free(&o);
  }
}

/* ---- payload ----------------------------------------------------------- */

static void pack_payload_head(msgpack_packer *pk, size_t nfields,
                              const char *id, uint64_t ts) {
  msgpack_pack_map(pk, nfields);
  pstr(pk, "v");
  msgpack_pack_int(pk, INV_PAYLOAD_VERSION);
  if (id != NULL) {
    pstr(pk, "id");
    pstr(pk, id);
  }
  pstr(pk, "ts");
  msgpack_pack_uint64(pk, ts);
}

static int decode_obj(obj_t *o, inv_payload_t *p, char *err, size_t errlen) {
  return inv_payload_decode(o->sb.data, o->sb.size, p, err, errlen);
}

static void test_payload_ok(void) {
  obj_t o;
  inv_payload_t p;
  char err[256];

  /* An "id" (which version 1 broadcasts carried) is one more unknown field;
   * str and bin targets, default mode. */
  obj_begin(&o);
  pack_payload_head(&o.pk, 4, "1700000000000-7", 1700000000123ULL);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 3);
  pack_ev(&o.pk, "key", "user:1", NULL);
  msgpack_pack_map(&o.pk, 3);
  pstr(&o.pk, "kind");
  pstr(&o.pk, "prefix");
  pstr(&o.pk, "target");
  pbin(&o.pk, "s\xffx:", 4);
  pstr(&o.pk, "mode");
  pstr(&o.pk, "soft");
  pack_ev(&o.pk, "pattern", "*", "hard");
  CHECK_EQ_INT(decode_obj(&o, &p, err, sizeof(err)), 0);
  CHECK_EQ_STR(err, "");
  CHECK_EQ_INT(p.version, INV_PAYLOAD_VERSION);
  CHECK(p.ts_ms == 1700000000123ULL);
  CHECK_EQ_INT(p.nevents, 3);
  if (p.nevents == 3) {
    CHECK_EQ_INT(p.events[0].kind, INV_KIND_KEY);
    CHECK_EQ_INT(p.events[0].mode, INV_MODE_HARD);
    CHECK(p.events[0].target_len == 6 &&
          memcmp(p.events[0].target, "user:1", 6) == 0);
    CHECK_EQ_INT(p.events[1].kind, INV_KIND_PREFIX);
    CHECK_EQ_INT(p.events[1].mode, INV_MODE_SOFT);
    CHECK(p.events[1].target_len == 4 &&
          memcmp(p.events[1].target, "s\xffx:", 4) == 0);
    /* Shape only: a flush pattern in a payload is the publisher's call. */
    CHECK_EQ_INT(p.events[2].kind, INV_KIND_PATTERN);
  }
  inv_payload_destroy(&p);
  obj_free(&o);

  /* The log-entry form: no id, unknown fields ignored at both levels, an
   * empty prefix (a permitted flush) and an empty events list elsewhere. */
  obj_begin(&o);
  msgpack_pack_map(&o.pk, 5);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 1);
  msgpack_pack_map(&o.pk, 3);
  pstr(&o.pk, "kind");
  pstr(&o.pk, "prefix");
  pstr(&o.pk, "target");
  pstr(&o.pk, "");
  pstr(&o.pk, "future");
  msgpack_pack_int(&o.pk, 1);
  pstr(&o.pk, "ts");
  msgpack_pack_int(&o.pk, 5);
  pstr(&o.pk, "origin");
  pstr(&o.pk, "publisher-2");
  msgpack_pack_int(&o.pk, 99);
  msgpack_pack_nil(&o.pk);
  pstr(&o.pk, "v");
  msgpack_pack_int(&o.pk, INV_PAYLOAD_VERSION);
  CHECK_EQ_INT(decode_obj(&o, &p, err, sizeof(err)), 0);
  CHECK(p.ts_ms == 5);
  CHECK_EQ_INT(p.nevents, 1);
  CHECK(p.nevents == 1 && p.events[0].target_len == 0);
  inv_payload_destroy(&p);
  obj_free(&o);

  obj_begin(&o);
  pack_payload_head(&o.pk, 4, NULL, 1);
  pstr(&o.pk, "id");
  msgpack_pack_nil(&o.pk);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 0);
  CHECK_EQ_INT(decode_obj(&o, &p, err, sizeof(err)), 0);
  CHECK_EQ_INT(p.nevents, 0);
  CHECK(p.events == NULL);
  inv_payload_destroy(&p);
  obj_free(&o);
  inv_payload_destroy(NULL);
}

/* Builds a payload from parts and expects EPROTO with exactly msg. */
static void expect_payload_err(obj_t *o, const char *msg) {
  inv_payload_t p;
  char err[256];
  int rc = decode_obj(o, &p, err, sizeof(err));
  CHECK_EQ_INT(rc, INV_EPROTO);
  CHECK_EQ_STR(err, msg);
  inv_payload_destroy(&p);
}

static void test_payload_errors(void) {
  obj_t o;

  obj_begin(&o);
  msgpack_pack_map(&o.pk, 3);
  pstr(&o.pk, "v");
  msgpack_pack_int(&o.pk, 1);
  pstr(&o.pk, "ts");
  msgpack_pack_int(&o.pk, 1);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 0);
  expect_payload_err(&o, "payload version 1 is not supported (expected 2)");
  obj_free(&o);

  obj_begin(&o);
  msgpack_pack_map(&o.pk, 1);
  pstr(&o.pk, "v");
  pstr(&o.pk, "1");
  expect_payload_err(&o,
                     "payload version is not an unsigned integer (got str)");
  obj_free(&o);

  obj_begin(&o);
  msgpack_pack_map(&o.pk, 2);
  pstr(&o.pk, "ts");
  msgpack_pack_int(&o.pk, 1);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 0);
  expect_payload_err(&o, "payload has no \"v\" field");
  obj_free(&o);

  obj_begin(&o);
  msgpack_pack_map(&o.pk, 2);
  pstr(&o.pk, "v");
  msgpack_pack_int(&o.pk, INV_PAYLOAD_VERSION);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 0);
  expect_payload_err(&o, "payload has no \"ts\" field");
  obj_free(&o);

  obj_begin(&o);
  msgpack_pack_map(&o.pk, 3);
  pstr(&o.pk, "v");
  msgpack_pack_int(&o.pk, INV_PAYLOAD_VERSION);
  pstr(&o.pk, "ts");
  msgpack_pack_int(&o.pk, -1);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 0);
  expect_payload_err(&o, "payload ts is not an unsigned integer (got int)");
  obj_free(&o);

  obj_begin(&o);
  pack_payload_head(&o.pk, 2, NULL, 1);
  expect_payload_err(&o, "payload has no \"events\" field");
  obj_free(&o);

  obj_begin(&o);
  pack_payload_head(&o.pk, 3, NULL, 1);
  pstr(&o.pk, "events");
  msgpack_pack_map(&o.pk, 0);
  expect_payload_err(&o, "payload events is not an array (got map)");
  obj_free(&o);

  obj_begin(&o);
  pack_payload_head(&o.pk, 3, NULL, 1);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 2);
  pack_ev(&o.pk, "key", "a", NULL);
  pack_ev(&o.pk, "slot", "a", NULL);
  expect_payload_err(&o,
                     "event 1: unknown kind \"slot\" (expected key, "
                     "prefix or pattern)");
  obj_free(&o);

  obj_begin(&o);
  pack_payload_head(&o.pk, 3, NULL, 1);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 1);
  pack_ev(&o.pk, "key", NULL, NULL);
  expect_payload_err(&o, "event 0: target is missing");
  obj_free(&o);

  /* An "id" of any type or length is ignored like every unknown field:
   * version 2 payloads carry none, and an entry's id is its stream id. */
  {
    inv_payload_t p;
    char err[256];
    obj_begin(&o);
    msgpack_pack_map(&o.pk, 4);
    pstr(&o.pk, "v");
    msgpack_pack_int(&o.pk, INV_PAYLOAD_VERSION);
    pstr(&o.pk, "id");
    msgpack_pack_int(&o.pk, 17);
    pstr(&o.pk, "ts");
    msgpack_pack_int(&o.pk, 1);
    pstr(&o.pk, "events");
    msgpack_pack_array(&o.pk, 0);
    CHECK_EQ_INT(decode_obj(&o, &p, err, sizeof(err)), 0);
    inv_payload_destroy(&p);
    obj_free(&o);
  }

  obj_begin(&o);
  msgpack_pack_map(&o.pk, 2);
  pstr(&o.pk, "v");
  msgpack_pack_int(&o.pk, INV_PAYLOAD_VERSION);
  pstr(&o.pk, "v");
  msgpack_pack_int(&o.pk, INV_PAYLOAD_VERSION);
  expect_payload_err(&o, "payload has a duplicate \"v\"");
  obj_free(&o);

  obj_begin(&o);
  msgpack_pack_array(&o.pk, 0);
  expect_payload_err(&o, "payload is not a map (got array)");
  obj_free(&o);

  /* Bytes that are not one msgpack object. */
  {
    inv_payload_t p;
    char err[256];
    CHECK_EQ_INT(inv_payload_decode("\xc1", 1, &p, err, sizeof(err)),
                 INV_EPROTO);
    CHECK(strstr(err, "payload is not msgpack: byte 0xc1") != NULL);
    inv_payload_destroy(&p);
    CHECK_EQ_INT(inv_payload_decode("\x80\x80", 2, &p, err, sizeof(err)),
                 INV_EPROTO);
    CHECK_EQ_STR(err, "payload is not msgpack: 1 bytes follow the object");
    inv_payload_destroy(&p);
    CHECK_EQ_INT(
        inv_payload_decode("\xdf\xff\xff\xff\xff", 5, &p, err, sizeof(err)),
        INV_EPROTO);
    CHECK(strstr(err, "the data ends inside a map") != NULL);
    inv_payload_destroy(&p);
    CHECK_EQ_INT(inv_payload_decode("", 0, &p, err, sizeof(err)), INV_EPROTO);
    inv_payload_destroy(&p);
    /* A zero-length errstr buffer is never written. */
    CHECK_EQ_INT(inv_payload_decode("\x90", 1, &p, err, 0), INV_EPROTO);
    inv_payload_destroy(&p);
  }
}

/* What the publisher builds (inv_event_pack inside the map) decodes back. */
static void test_payload_roundtrip(void) {
  obj_t o;
  inv_payload_t p;
  char err[256];
  const inv_event_t evs[2] = {{INV_KIND_KEY, INV_MODE_SOFT, "a", 1},
                              {INV_KIND_PATTERN, INV_MODE_HARD, "b*", 2}};

  obj_begin(&o);
  pack_payload_head(&o.pk, 4, "5-0", 42);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 2);
  inv_event_pack(&o.pk, &evs[0]);
  inv_event_pack(&o.pk, &evs[1]);
  CHECK_EQ_INT(decode_obj(&o, &p, err, sizeof(err)), 0);
  CHECK_EQ_INT(p.nevents, 2);
  for (size_t i = 0; i < p.nevents && i < 2; i++) {
    CHECK_EQ_INT(p.events[i].kind, evs[i].kind);
    CHECK_EQ_INT(p.events[i].mode, evs[i].mode);
    CHECK(p.events[i].target_len == evs[i].target_len &&
          memcmp(p.events[i].target, evs[i].target, evs[i].target_len) == 0);
  }
  inv_payload_destroy(&p);
  obj_free(&o);
}

/* A target travels as str when it is UTF-8 and as bin otherwise, with its
 * bytes unchanged either way. */
static void test_pack_target_type(void) {
  static const struct {
    const char *bytes;
    size_t len;
    int utf8;
  } cases[] = {
      {"user:42", 7, 1},      {"", 0, 1},
      {"caf\xc3\xa9", 5, 1},  {"\xf0\x9f\x98\x80", 4, 1},
      {"k\xff\xfe", 3, 0},    {"\xc3", 1, 0}, /* cut short */
      {"\xc0\xaf", 2, 0},                     /* overlong '/' */
      {"\xed\xa0\x80", 3, 0},                 /* a surrogate */
      {"a\0b", 3, 1},                         /* NUL is UTF-8 */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    obj_t o;
    inv_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = INV_KIND_KEY;
    ev.target = cases[i].bytes;
    ev.target_len = cases[i].len;
    CHECK_EQ_INT(inv_utf8_valid(cases[i].bytes, cases[i].len), cases[i].utf8);
    obj_begin(&o);
    inv_event_pack(&o.pk, &ev);
    const msgpack_object *m = obj_end(&o);
    CHECK(m != NULL);
    const msgpack_object *t = inv_map_get(m, "target");
    CHECK(t != NULL);
    CHECK_EQ_INT(t->type,
                 cases[i].utf8 ? MSGPACK_OBJECT_STR : MSGPACK_OBJECT_BIN);
    CHECK(t->via.str.size == cases[i].len &&
          memcmp(t->via.str.ptr, cases[i].bytes, cases[i].len) == 0);
    obj_free(&o);
  }
}

/* The broadcast's "ids": [[shard, id], ...] is read into p.ids; a shard out
 * of range, a wrong shape or more entries than shards is refused. */
static void test_payload_ids(void) {
  obj_t o;
  inv_payload_t p;
  char err[256];

  obj_begin(&o);
  pack_payload_head(&o.pk, 4, NULL, 9);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 0);
  pstr(&o.pk, "ids");
  msgpack_pack_array(&o.pk, 2);
  msgpack_pack_array(&o.pk, 2);
  msgpack_pack_int(&o.pk, 0);
  pstr(&o.pk, "5-1");
  msgpack_pack_array(&o.pk, 2);
  msgpack_pack_int(&o.pk, 63);
  pstr(&o.pk, "6-0");
  CHECK_EQ_INT(decode_obj(&o, &p, err, sizeof(err)), 0);
  CHECK_EQ_INT(p.nids, 2);
  if (p.nids == 2) {
    CHECK_EQ_INT(p.ids[0].shard, 0);
    CHECK_EQ_STR(p.ids[0].id, "5-1");
    CHECK_EQ_INT(p.ids[1].shard, 63);
    CHECK_EQ_STR(p.ids[1].id, "6-0");
  }
  inv_payload_destroy(&p);
  CHECK(p.ids == NULL && p.nids == 0);
  obj_free(&o);

  static const struct {
    int shard; /* -1: a string instead of [shard, id] */
    const char *id;
    const char *msg;
  } bad[] = {
      {64, "1-0", "payload ids[0] is not [shard, id] with a shard below 64"},
      {-1, "1-0", "payload ids[0] is not [shard, id] with a shard below 64"},
      {3, "", "payload ids[0] has no id"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    obj_begin(&o);
    pack_payload_head(&o.pk, 4, NULL, 9);
    pstr(&o.pk, "events");
    msgpack_pack_array(&o.pk, 0);
    pstr(&o.pk, "ids");
    msgpack_pack_array(&o.pk, 1);
    if (bad[i].shard < 0) {
      pstr(&o.pk, bad[i].id);
    } else {
      msgpack_pack_array(&o.pk, 2);
      msgpack_pack_int(&o.pk, bad[i].shard);
      pstr(&o.pk, bad[i].id);
    }
    expect_payload_err(&o, bad[i].msg);
    obj_free(&o);
  }

  obj_begin(&o);
  pack_payload_head(&o.pk, 4, NULL, 9);
  pstr(&o.pk, "events");
  msgpack_pack_array(&o.pk, 0);
  pstr(&o.pk, "ids");
  msgpack_pack_array(&o.pk, 65);
  for (int i = 0; i < 65; i++) msgpack_pack_nil(&o.pk);
  expect_payload_err(&o, "payload ids has 65 entries, over 64");
  obj_free(&o);
}

int main(void) {
  RUN(test_valid_events);
  RUN(test_kind_errors);
  RUN(test_target_errors);
  RUN(test_mode_errors);
  RUN(test_field_errors);
  RUN(test_flush_rules);
  RUN(test_malformed_patterns);
  RUN(test_reserved_targets);
  RUN(test_names);
  RUN(test_reserved_keys);
  RUN(test_pack_roundtrip);
  RUN(test_payload_ok);
  RUN(test_payload_errors);
  RUN(test_payload_roundtrip);
  RUN(test_payload_ids);
  RUN(test_pack_target_type);
  return check_summary();
}
