/*
 * Unit tests for proto/codec.c: the framer (splits, pipelining, limits,
 * sticky errors, bounded memory) and the msgpack-rpc decoder (every shape
 * rule), plus the packing helpers.
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "proto/codec.h"
#include "tests/unit/check.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
  msgpack_sbuffer sb;
  msgpack_packer pk;
} packbuf_t;

static void pb_init(packbuf_t *b) {
  msgpack_sbuffer_init(&b->sb);
  msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void pb_free(packbuf_t *b) { msgpack_sbuffer_destroy(&b->sb); }

/* Appends raw bytes (for hand-made headers). */
static void pb_raw(packbuf_t *b, const void *p, size_t n) {
  msgpack_sbuffer_write(&b->sb, p, n);
}

static void pack_event(msgpack_packer *pk, const char *kind,
                       const char *target) {
  msgpack_pack_map(pk, 2);
  inv_pack_str(pk, "kind");
  inv_pack_str(pk, kind);
  inv_pack_str(pk, "target");
  inv_pack_str(pk, target);
}

/* A request "invalidate" with one key event. */
static void pack_invalidate(msgpack_packer *pk, uint32_t msgid,
                            const char *key) {
  inv_pack_request_header(pk, msgid, "invalidate");
  msgpack_pack_array(pk, 1);
  msgpack_pack_array(pk, 1);
  pack_event(pk, "key", key);
}

/* Feeds all of data and collects frame lengths; returns the number of
 * frames, or the framer's error. */
static int drain(inv_framer_t *f, size_t *lens, size_t maxlens) {
  const char *fr;
  size_t len;
  int n = 0, rc;
  while ((rc = inv_framer_next(f, &fr, &len)) == 1) {
    if ((size_t)n < maxlens) lens[n] = len;
    n++;
  }
  return rc < 0 ? rc : n;
}

static int decode(const char *p, size_t n, inv_msg_t *msg, char *errstr) {
  return inv_msg_decode(p, n, msg, errstr);
}

static int method_is(const inv_msg_t *m, const char *s) {
  return m->method != NULL && m->method_len == strlen(s) &&
         memcmp(m->method, s, m->method_len) == 0;
}

/* ---- round trips ----------------------------------------------------------
 */

static void test_roundtrip_request(void) {
  packbuf_t b;
  inv_framer_t f;
  inv_msg_t msg;
  char err[128];
  const char *fr;
  size_t len;

  pb_init(&b);
  pack_invalidate(&b.pk, 7, "user:1");
  inv_framer_init(&f, NULL);
  CHECK_EQ_INT(inv_framer_feed(&f, b.sb.data, b.sb.size), 0);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 1);
  CHECK_EQ_INT(len, b.sb.size);
  CHECK(memcmp(fr, b.sb.data, len) == 0);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 0);

  CHECK_EQ_INT(decode(b.sb.data, b.sb.size, &msg, err), 0);
  CHECK_EQ_STR(err, "");
  CHECK_EQ_INT(msg.type, INV_MSG_REQUEST);
  CHECK_EQ_INT(msg.has_msgid, 1);
  CHECK_EQ_INT(msg.msgid, 7);
  CHECK(method_is(&msg, "invalidate"));
  CHECK_EQ_INT(msg.params.type, MSGPACK_OBJECT_ARRAY);
  CHECK_EQ_INT(msg.params.via.array.size, 1);
  const msgpack_object *events = &msg.params.via.array.ptr[0];
  CHECK_EQ_INT(events->type, MSGPACK_OBJECT_ARRAY);
  CHECK_EQ_INT(events->via.array.size, 1);
  const msgpack_object *t = inv_map_get(&events->via.array.ptr[0], "target");
  CHECK(t != NULL && inv_obj_streq(t, "user:1"));
  inv_msg_destroy(&msg);
  inv_framer_free(&f);
  pb_free(&b);
}

static void test_roundtrip_response(void) {
  packbuf_t b;
  inv_msg_t msg;
  char err[128];

  pb_init(&b);
  inv_pack_response_header(&b.pk, 0xffffffffu);
  inv_pack_str(&b.pk, "PONG");
  CHECK_EQ_INT(decode(b.sb.data, b.sb.size, &msg, err), 0);
  CHECK_EQ_INT(msg.type, INV_MSG_RESPONSE);
  CHECK_EQ_INT(msg.has_msgid, 1);
  CHECK(msg.msgid == 0xffffffffu);
  CHECK_EQ_INT(msg.error.type, MSGPACK_OBJECT_NIL);
  CHECK(inv_obj_streq(&msg.result, "PONG"));
  CHECK(msg.method == NULL);
  inv_msg_destroy(&msg);
  pb_free(&b);

  pb_init(&b);
  inv_pack_response_error(&b.pk, 42, "EBUSY", "shed by backpressure");
  CHECK_EQ_INT(decode(b.sb.data, b.sb.size, &msg, err), 0);
  CHECK_EQ_INT(msg.type, INV_MSG_RESPONSE);
  CHECK_EQ_INT(msg.msgid, 42);
  CHECK_EQ_INT(msg.error.type, MSGPACK_OBJECT_MAP);
  const msgpack_object *code = inv_map_get(&msg.error, "code");
  const msgpack_object *text = inv_map_get(&msg.error, "message");
  CHECK(code != NULL && inv_obj_streq(code, "EBUSY"));
  CHECK(text != NULL && inv_obj_streq(text, "shed by backpressure"));
  CHECK_EQ_INT(msg.result.type, MSGPACK_OBJECT_NIL);
  inv_msg_destroy(&msg);
  pb_free(&b);
}

static void test_roundtrip_notify(void) {
  packbuf_t b;
  inv_msg_t msg;
  char err[128];

  pb_init(&b);
  inv_pack_notify_header(&b.pk, "invalidate");
  msgpack_pack_array(&b.pk, 1);
  msgpack_pack_array(&b.pk, 0);
  CHECK_EQ_INT(decode(b.sb.data, b.sb.size, &msg, err), 0);
  CHECK_EQ_INT(msg.type, INV_MSG_NOTIFY);
  CHECK_EQ_INT(msg.has_msgid, 0);
  CHECK(method_is(&msg, "invalidate"));
  CHECK_EQ_INT(msg.params.via.array.size, 1);
  inv_msg_destroy(&msg);
  pb_free(&b);

  /* An empty method name is well formed; dispatch answers ENOMETHOD. */
  pb_init(&b);
  inv_pack_notify_header(&b.pk, "");
  msgpack_pack_array(&b.pk, 0);
  CHECK_EQ_INT(decode(b.sb.data, b.sb.size, &msg, err), 0);
  CHECK_EQ_INT(msg.method_len, 0);
  inv_msg_destroy(&msg);
  pb_free(&b);
}

/* ---- splits and pipelining ----------------------------------------------- */

/* Builds a stream of varied messages and records where each ends. */
static size_t build_stream(packbuf_t *b, size_t *ends, size_t maxends) {
  size_t n = 0;
  char big[70000];

  memset(big, 'x', sizeof(big));
  pack_invalidate(&b->pk, 1, "k");
  ends[n++] = b->sb.size;
  inv_pack_response_error(&b->pk, 2, "EINVAL", "event 0: target is empty");
  ends[n++] = b->sb.size;
  inv_pack_notify_header(&b->pk, "ping");
  msgpack_pack_array(&b->pk, 0);
  ends[n++] = b->sb.size;
  /* str16 and bin32 payloads, floats, ints of every width, ext, nesting. */
  inv_pack_request_header(&b->pk, 0x12345678u, "stats");
  msgpack_pack_array(&b->pk, 9);
  msgpack_pack_str(&b->pk, 300);
  msgpack_pack_str_body(&b->pk, big, 300);
  msgpack_pack_bin(&b->pk, sizeof(big));
  msgpack_pack_bin_body(&b->pk, big, sizeof(big));
  msgpack_pack_double(&b->pk, 1.5);
  msgpack_pack_float(&b->pk, 2.5f);
  msgpack_pack_int64(&b->pk, -5000000000LL);
  msgpack_pack_uint64(&b->pk, 18000000000000000000ULL);
  msgpack_pack_ext(&b->pk, 4, 7);
  msgpack_pack_ext_body(&b->pk, "abcd", 4);
  msgpack_pack_ext(&b->pk, 20, 9);
  msgpack_pack_ext_body(&b->pk, big, 20);
  msgpack_pack_map(&b->pk, 2);
  msgpack_pack_true(&b->pk);
  msgpack_pack_array(&b->pk, 2);
  msgpack_pack_nil(&b->pk);
  msgpack_pack_map(&b->pk, 0);
  msgpack_pack_int8(&b->pk, -3);
  msgpack_pack_array(&b->pk, 0);
  ends[n++] = b->sb.size;
  /* Bare top-level scalars are frames too (the decoder refuses them). */
  msgpack_pack_int(&b->pk, 5);
  ends[n++] = b->sb.size;
  inv_pack_response_header(&b->pk, 3);
  inv_pack_str(&b->pk, "PONG");
  ends[n++] = b->sb.size;
  CHECK((size_t)n <= maxends);
  return n;
}

static int check_frames(inv_framer_t *f, const packbuf_t *b, const size_t *ends,
                        size_t nends, size_t *got) {
  const char *fr;
  size_t len;
  int rc;
  while ((rc = inv_framer_next(f, &fr, &len)) == 1) {
    size_t start = *got == 0 ? 0 : ends[*got - 1];
    if (*got >= nends || len != ends[*got] - start ||
        memcmp(fr, b->sb.data + start, len) != 0)
      return -1;
    (*got)++;
  }
  return rc;
}

static void test_every_split_point(void) {
  packbuf_t b;
  size_t ends[16], nends;
  int bad = 0;

  pb_init(&b);
  nends = build_stream(&b, ends, 16);
  /* Two pieces split at every offset (one step per 97 bytes inside the
   * large bin payload to keep the test quick, every byte elsewhere). */
  for (size_t s = 0; s <= b.sb.size;
       s += (s > 600 && s < b.sb.size - 600) ? 97 : 1) {
    inv_framer_t f;
    size_t got = 0;
    inv_framer_init(&f, NULL);
    if (inv_framer_feed(&f, b.sb.data, s) != 0) bad++;
    if (check_frames(&f, &b, ends, nends, &got) != 0) bad++;
    if (inv_framer_feed(&f, b.sb.data + s, b.sb.size - s) != 0) bad++;
    if (check_frames(&f, &b, ends, nends, &got) != 0) bad++;
    if (got != nends) bad++;
    inv_framer_free(&f);
  }
  CHECK_EQ_INT(bad, 0);

  /* One byte at a time: every frame appears exactly when its last byte is
   * fed, not before. */
  {
    inv_framer_t f;
    size_t got = 0;
    const char *fr;
    size_t len;
    inv_framer_init(&f, NULL);
    bad = 0;
    for (size_t i = 0; i < b.sb.size; i++) {
      if (inv_framer_feed(&f, b.sb.data + i, 1) != 0) bad++;
      int rc = inv_framer_next(&f, &fr, &len);
      if (rc == 1) {
        size_t start = got == 0 ? 0 : ends[got - 1];
        if (i + 1 != ends[got] || len != ends[got] - start ||
            memcmp(fr, b.sb.data + start, len) != 0)
          bad++;
        got++;
        if (inv_framer_next(&f, &fr, &len) != 0) bad++;
      } else if (rc != 0) {
        bad++;
      }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(got, nends);
    inv_framer_free(&f);
  }
  pb_free(&b);
}

/* Splits inside multi-byte headers (str32, array32, map32 length fields). */
static void test_split_headers(void) {
  static const unsigned char msg[] = {
      0x94, 0x00, 0xce, 0x00, 0x01, 0x00, 0x00,           /* [0, 65536, */
      0xdb, 0x00, 0x00, 0x00, 0x04, 'p',  'i',  'n', 'g', /* str32 "ping", */
      0xdd, 0x00, 0x00, 0x00, 0x01,                       /* array32 of 1: */
      0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 'a',  0xc0}; /* map32 {"a": nil}] */
  for (size_t s1 = 0; s1 <= sizeof(msg); s1++) {
    for (size_t s2 = s1; s2 <= sizeof(msg); s2++) {
      inv_framer_t f;
      size_t lens[2];
      int n1, n2, n3;
      inv_framer_init(&f, NULL);
      inv_framer_feed(&f, (const char *)msg, s1);
      n1 = drain(&f, lens, 2);
      inv_framer_feed(&f, (const char *)msg + s1, s2 - s1);
      n2 = drain(&f, lens, 2);
      inv_framer_feed(&f, (const char *)msg + s2, sizeof(msg) - s2);
      n3 = drain(&f, lens, 2);
      if (n1 != (s1 == sizeof(msg)) ||
          n2 != (s1 < sizeof(msg) && s2 == sizeof(msg)) ||
          n3 != (s2 < sizeof(msg)) || lens[0] != sizeof(msg))
        CHECK(!"split inside a header gave a wrong frame");
      inv_framer_free(&f);
    }
  }
  {
    inv_msg_t m;
    char err[128];
    CHECK_EQ_INT(decode((const char *)msg, sizeof(msg), &m, err), 0);
    CHECK_EQ_INT(m.msgid, 65536);
    CHECK(method_is(&m, "ping"));
    inv_msg_destroy(&m);
  }
}

static void test_pipelined(void) {
  packbuf_t b;
  inv_framer_t f;
  const char *fr;
  size_t len;
  int count = 0, bad = 0;
  char key[32];

  pb_init(&b);
  for (uint32_t i = 0; i < 5000; i++) {
    snprintf(key, sizeof(key), "user:%u", i);
    pack_invalidate(&b.pk, i, key);
  }
  inv_framer_init(&f, NULL);
  CHECK_EQ_INT(inv_framer_feed(&f, b.sb.data, b.sb.size), 0);
  while (inv_framer_next(&f, &fr, &len) == 1) {
    inv_msg_t m;
    char err[128];
    if (decode(fr, len, &m, err) != 0 || m.msgid != (uint32_t)count) bad++;
    inv_msg_destroy(&m);
    count++;
  }
  CHECK_EQ_INT(count, 5000);
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(f.err, 0);
  inv_framer_free(&f);
  pb_free(&b);
}

/* ---- limits ----------------------------------------------------------------
 */

/* Expects err from next() after feeding exactly p[0..n), then the same
 * error again from next() and feed() (sticky). */
static void expect_error(const inv_codec_limits_t *lim, const void *p, size_t n,
                         int err, const char *needle) {
  inv_framer_t f;
  const char *fr;
  size_t len;
  inv_framer_init(&f, lim);
  CHECK_EQ_INT(inv_framer_feed(&f, p, n), 0);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), err);
  CHECK_EQ_INT(f.err, err);
  CHECK(strstr(f.errstr, needle) != NULL);
  if (strstr(f.errstr, needle) == NULL)
    fprintf(stderr, "  errstr was: %s (wanted %s)\n", f.errstr, needle);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), err);
  CHECK_EQ_INT(inv_framer_feed(&f, "\x90", 1), err);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), err);
  inv_framer_free(&f);
}

static void test_oversize_declared(void) {
  /* A request whose method is a str32 declaring ~4 GB: refused on its
   * header, long before any body byte. */
  static const unsigned char str32[] = {0x94, 0x00, 0x01, 0xdb,
                                        0xff, 0xff, 0xff, 0xf0};
  static const unsigned char bin32[] = {0x94, 0x00, 0x01, 0xa1, 'x', 0x91,
                                        0xc6, 0x00, 0x20, 0x00, 0x00};
  static const unsigned char ext32[] = {0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01};
  static const unsigned char arr32[] = {0xdd, 0x3b, 0x9a, 0xca, 0x00};
  static const unsigned char map32[] = {0xdf, 0x00, 0x08, 0x00, 0x00};
  static const unsigned char str16[] = {0xda, 0x01, 0x00};
  inv_codec_limits_t small = {200, 16, 1000000};
  inv_codec_limits_t many = {1024 * 1024, 16, (size_t)-1};

  expect_error(NULL, str32, sizeof(str32), INV_ETOOBIG, "a str of 4294967280");
  expect_error(NULL, bin32, sizeof(bin32), INV_ETOOBIG, "a bin of 2097152");
  expect_error(NULL, ext32, sizeof(ext32), INV_ETOOBIG,
               "an ext of 2147483647 bytes");
  expect_error(NULL, arr32, sizeof(arr32), INV_ETOOBIG,
               "more than 1000000 array elements and map pairs");
  expect_error(&many, arr32, sizeof(arr32), INV_ETOOBIG,
               "an array of 1000000000 elements does not fit in "
               "max_message_bytes (1048576)");
  /* 524288 pairs need at least 1 MiB + 5 bytes. */
  expect_error(NULL, map32, sizeof(map32), INV_ETOOBIG, "map of 524288 pairs");
  /* 256 bytes of str do not fit a 200-byte limit. */
  expect_error(&small, str16, sizeof(str16), INV_ETOOBIG, "str of 256 bytes");

  /* After the error the refused frame's bytes are still in the buffer at
   * pos, so that the server can read its msgid for the error response. */
  {
    inv_framer_t f;
    const char *fr;
    size_t len;
    inv_framer_init(&f, NULL);
    inv_framer_feed(&f, "\x91\x01", 2);
    inv_framer_feed(&f, (const char *)str32, sizeof(str32));
    CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 1);
    CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), INV_ETOOBIG);
    CHECK_EQ_INT(f.len - f.pos, sizeof(str32));
    CHECK(f.buf != NULL && memcmp(f.buf + f.pos, str32, sizeof(str32)) == 0);
    inv_framer_free(&f);
    CHECK(f.buf == NULL);
  }

  /* A frame that only becomes too big as its bytes arrive (150 uint8
   * values of two bytes each): the error comes as soon as the header of
   * the value that would cross the limit is seen, not at the frame's end. */
  {
    inv_framer_t f;
    const char *fr;
    size_t len, fed = 0;
    unsigned char hdr[] = {0xdc, 0x00, 150}; /* array16 of 150 */
    unsigned char u8[] = {0xcc, 0xff};
    int rc = 0;
    inv_framer_init(&f, &small);
    inv_framer_feed(&f, (const char *)hdr, sizeof(hdr));
    fed = sizeof(hdr);
    while ((rc = inv_framer_next(&f, &fr, &len)) == 0 && fed < 400) {
      inv_framer_feed(&f, (const char *)&u8[(fed - sizeof(hdr)) % 2], 1);
      fed++;
    }
    CHECK_EQ_INT(rc, INV_ETOOBIG);
    CHECK_EQ_INT(fed, 200); /* the value at offset 199 would end at 201 */
    CHECK(strstr(f.errstr, "max_message_bytes (200)") != NULL);
    inv_framer_free(&f);
  }

  /* Exactly at the limit is fine. */
  {
    packbuf_t b;
    inv_framer_t f;
    const char *fr;
    size_t len;
    pb_init(&b);
    msgpack_pack_str(&b.pk, 198);
    for (int i = 0; i < 198; i++) pb_raw(&b, "z", 1);
    CHECK_EQ_INT(b.sb.size, 200);
    inv_framer_init(&f, &small);
    inv_framer_feed(&f, b.sb.data, b.sb.size);
    CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 1);
    CHECK_EQ_INT(len, 200);
    inv_framer_free(&f);
    pb_free(&b);
  }
}

static void nest(packbuf_t *b, unsigned levels) {
  for (unsigned i = 0; i < levels; i++) msgpack_pack_array(&b->pk, 1);
  msgpack_pack_nil(&b->pk);
}

static void test_depth(void) {
  inv_codec_limits_t lim = {0, 4, 0};
  packbuf_t b;
  inv_framer_t f;
  const char *fr;
  size_t len;

  pb_init(&b);
  nest(&b, 4);
  inv_framer_init(&f, &lim);
  inv_framer_feed(&f, b.sb.data, b.sb.size);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 1);
  inv_framer_free(&f);
  pb_free(&b);

  pb_init(&b);
  nest(&b, 5);
  expect_error(&lim, b.sb.data, b.sb.size, INV_ETOOBIG,
               "nesting is deeper than 4 levels");
  pb_free(&b);

  /* An empty container one level too deep counts as well. */
  pb_init(&b);
  for (int i = 0; i < 4; i++) msgpack_pack_array(&b.pk, 1);
  msgpack_pack_map(&b.pk, 0);
  expect_error(&lim, b.sb.data, b.sb.size, INV_ETOOBIG, "deeper than 4");
  pb_free(&b);

  /* Default 16. */
  pb_init(&b);
  nest(&b, 17);
  expect_error(NULL, b.sb.data, b.sb.size, INV_ETOOBIG, "deeper than 16");
  pb_free(&b);

  /* A limit above what msgpack-c decodes is capped at 32; 32 levels decode. */
  lim.max_depth = 1000;
  inv_framer_init(&f, &lim);
  CHECK_EQ_INT(f.lim.max_depth, 32);
  pb_init(&b);
  nest(&b, 32);
  inv_framer_feed(&f, b.sb.data, b.sb.size);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 1);
  {
    inv_msg_t m;
    char err[128];
    CHECK_EQ_INT(decode(fr, len, &m, err), INV_EPROTO);
    CHECK(strstr(err, "message type is not 0") != NULL);
    inv_msg_destroy(&m);
  }
  inv_framer_free(&f);
  pb_free(&b);
  pb_init(&b);
  nest(&b, 33);
  expect_error(&lim, b.sb.data, b.sb.size, INV_ETOOBIG, "deeper than 32");
  pb_free(&b);
}

static void test_items(void) {
  inv_codec_limits_t lim = {0, 0, 10};
  packbuf_t b;
  inv_framer_t f;
  const char *fr;
  size_t len;

  /* 4 + 6 = 10 items: fine. */
  pb_init(&b);
  msgpack_pack_array(&b.pk, 4);
  for (int i = 0; i < 3; i++) msgpack_pack_int(&b.pk, i);
  msgpack_pack_map(&b.pk, 3); /* 3 pairs + 3 more elements below */
  for (int i = 0; i < 3; i++) {
    msgpack_pack_int(&b.pk, i);
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_nil(&b.pk);
  }
  inv_framer_init(&f, &lim);
  inv_framer_feed(&f, b.sb.data, b.sb.size);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 1);
  CHECK_EQ_INT(len, b.sb.size);
  /* The count is per frame: the same frame again is fine too. */
  inv_framer_feed(&f, b.sb.data, b.sb.size);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 1);
  inv_framer_free(&f);
  pb_free(&b);

  pb_init(&b);
  msgpack_pack_array(&b.pk, 11);
  expect_error(&lim, b.sb.data, b.sb.size, INV_ETOOBIG,
               "more than 10 array elements and map pairs");
  pb_free(&b);

  pb_init(&b);
  msgpack_pack_array(&b.pk, 2);
  msgpack_pack_map(&b.pk, 5);
  for (int i = 0; i < 5; i++) {
    msgpack_pack_int(&b.pk, i);
    msgpack_pack_int(&b.pk, i);
  }
  msgpack_pack_array(&b.pk, 4);
  expect_error(&lim, b.sb.data, b.sb.size, INV_ETOOBIG, "more than 10");
  pb_free(&b);
}

static void test_c1(void) {
  static const unsigned char lone[] = {0xc1};
  static const unsigned char inside[] = {0x94, 0x00, 0x01, 0xc1};
  static const unsigned char after[] = {0x93, 0x02, 0xa1, 'p', 0x90, 0xc1};
  inv_framer_t f;
  const char *fr;
  size_t len;

  expect_error(NULL, lone, sizeof(lone), INV_EPROTO, "0xc1 at offset 0");
  expect_error(NULL, inside, sizeof(inside), INV_EPROTO, "0xc1 at offset 3");
  /* A valid frame before the bad byte is still delivered. */
  inv_framer_init(&f, NULL);
  inv_framer_feed(&f, (const char *)after, sizeof(after));
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 1);
  CHECK_EQ_INT(len, 5);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), INV_EPROTO);
  CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), INV_EPROTO);
  inv_framer_free(&f);
  inv_framer_free(NULL);
}

/* Memory stays near one frame plus one read, and drops after a big frame. */
static void test_bounded_buffer(void) {
  packbuf_t b;
  inv_framer_t f;
  const char *fr;
  size_t len, maxcap = 0;
  static char chunk[65536];
  const size_t read_size = sizeof(chunk);

  pb_init(&b);
  msgpack_pack_bin(&b.pk, 1000000);
  for (int i = 0; i < 1000000 / 1000; i++) {
    char k[1000];
    memset(k, i & 0xff, sizeof(k));
    msgpack_pack_bin_body(&b.pk, k, sizeof(k));
  }
  pack_invalidate(&b.pk, 9, "tail");
  inv_framer_init(&f, NULL);
  int frames = 0;
  for (size_t off = 0; off < b.sb.size; off += read_size) {
    size_t n = b.sb.size - off < read_size ? b.sb.size - off : read_size;
    CHECK_EQ_INT(inv_framer_feed(&f, b.sb.data + off, n), 0);
    if (f.cap > maxcap) maxcap = f.cap;
    while (inv_framer_next(&f, &fr, &len) == 1) frames++;
  }
  CHECK_EQ_INT(frames, 2);
  CHECK(maxcap <= f.lim.max_message_bytes + 2 * read_size);
  /* A small read after the big frame releases the big buffer. */
  memset(chunk, 0x90, 16);
  CHECK_EQ_INT(inv_framer_feed(&f, chunk, 16), 0);
  CHECK(f.cap <= 64 * 1024);
  CHECK_EQ_INT(drain(&f, NULL, 0), 16);
  inv_framer_free(&f);
  pb_free(&b);
}

static void test_limits_default(void) {
  inv_codec_limits_t lim;
  inv_framer_t f;
  inv_codec_limits_default(&lim);
  CHECK_EQ_INT(lim.max_message_bytes, 1024 * 1024);
  CHECK_EQ_INT(lim.max_depth, 16);
  CHECK_EQ_INT(lim.max_items, 1000000);
  lim.max_message_bytes = 0;
  lim.max_items = 5;
  inv_framer_init(&f, &lim);
  CHECK_EQ_INT(f.lim.max_message_bytes, 1024 * 1024);
  CHECK_EQ_INT(f.lim.max_items, 5);
  CHECK_EQ_INT(f.err, 0);
  CHECK_EQ_INT(f.errstr[0], 0);
  /* Feeding nothing and asking for a frame is fine. */
  {
    const char *fr;
    size_t len;
    CHECK_EQ_INT(inv_framer_feed(&f, "", 0), 0);
    CHECK_EQ_INT(inv_framer_next(&f, &fr, &len), 0);
  }
  inv_framer_free(&f);
}

/* ---- decoding: every shape rule ------------------------------------------ */

typedef void (*builder_fn)(msgpack_packer *pk);

static void expect_decode(builder_fn build, int has_msgid, uint32_t msgid,
                          const char *needle) {
  packbuf_t b;
  inv_msg_t m;
  char err[128];
  int rc;
  pb_init(&b);
  build(&b.pk);
  rc = decode(b.sb.data, b.sb.size, &m, err);
  CHECK_EQ_INT(rc, INV_EPROTO);
  CHECK_EQ_INT(m.has_msgid, has_msgid);
  if (has_msgid) CHECK_EQ_INT(m.msgid, msgid);
  CHECK(strstr(err, needle) != NULL);
  if (strstr(err, needle) == NULL)
    fprintf(stderr, "  errstr was: %s (wanted %s)\n", err, needle);
  inv_msg_destroy(&m);
  pb_free(&b);
}

static void b_map(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }
static void b_str(msgpack_packer *pk) { inv_pack_str(pk, "hello"); }
static void b_empty(msgpack_packer *pk) { msgpack_pack_array(pk, 0); }
static void b_type3(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 3);
  msgpack_pack_int(pk, 1);
  inv_pack_str(pk, "ping");
  msgpack_pack_array(pk, 0);
}
static void b_type_str(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  inv_pack_str(pk, "0");
  msgpack_pack_int(pk, 1);
  inv_pack_str(pk, "ping");
  msgpack_pack_array(pk, 0);
}
static void b_type_neg(msgpack_packer *pk) {
  msgpack_pack_array(pk, 3);
  msgpack_pack_int(pk, -1);
  inv_pack_str(pk, "ping");
  msgpack_pack_array(pk, 0);
}
static void b_req_short(msgpack_packer *pk) {
  msgpack_pack_array(pk, 3);
  msgpack_pack_int(pk, 0);
  msgpack_pack_int(pk, 17);
  inv_pack_str(pk, "ping");
}
static void b_req_long(msgpack_packer *pk) {
  msgpack_pack_array(pk, 5);
  msgpack_pack_int(pk, 0);
  msgpack_pack_int(pk, 18);
  inv_pack_str(pk, "ping");
  msgpack_pack_array(pk, 0);
  msgpack_pack_nil(pk);
}
static void b_req_one(msgpack_packer *pk) {
  msgpack_pack_array(pk, 1);
  msgpack_pack_int(pk, 0);
}
static void b_msgid_neg(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 0);
  msgpack_pack_int(pk, -1);
  inv_pack_str(pk, "ping");
  msgpack_pack_array(pk, 0);
}
static void b_msgid_big(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 0);
  msgpack_pack_uint64(pk, 0x100000000ULL);
  inv_pack_str(pk, "ping");
  msgpack_pack_array(pk, 0);
}
static void b_msgid_str(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 0);
  inv_pack_str(pk, "1");
  inv_pack_str(pk, "ping");
  msgpack_pack_array(pk, 0);
}
static void b_msgid_float(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 0);
  msgpack_pack_double(pk, 1.0);
  inv_pack_str(pk, "ping");
  msgpack_pack_array(pk, 0);
}
static void b_method_int(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 0);
  msgpack_pack_int(pk, 21);
  msgpack_pack_int(pk, 1);
  msgpack_pack_array(pk, 0);
}
static void b_method_bin(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 0);
  msgpack_pack_int(pk, 22);
  msgpack_pack_bin(pk, 4);
  msgpack_pack_bin_body(pk, "ping", 4);
  msgpack_pack_array(pk, 0);
}
static void b_params_map(msgpack_packer *pk) {
  inv_pack_request_header(pk, 23, "ping");
  msgpack_pack_map(pk, 0);
}
static void b_params_nil(msgpack_packer *pk) {
  inv_pack_request_header(pk, 24, "ping");
  msgpack_pack_nil(pk);
}
static void b_resp_error_str(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 1);
  msgpack_pack_int(pk, 25);
  inv_pack_str(pk, "oops");
  msgpack_pack_nil(pk);
}
static void b_resp_short(msgpack_packer *pk) {
  msgpack_pack_array(pk, 3);
  msgpack_pack_int(pk, 1);
  msgpack_pack_int(pk, 26);
  msgpack_pack_nil(pk);
}
static void b_resp_msgid_neg(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 1);
  msgpack_pack_int(pk, -26);
  msgpack_pack_nil(pk);
  msgpack_pack_nil(pk);
}
static void b_notify_long(msgpack_packer *pk) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_int(pk, 2);
  inv_pack_str(pk, "invalidate");
  msgpack_pack_array(pk, 0);
  msgpack_pack_nil(pk);
}
static void b_notify_method_int(msgpack_packer *pk) {
  msgpack_pack_array(pk, 3);
  msgpack_pack_int(pk, 2);
  msgpack_pack_int(pk, 5);
  msgpack_pack_array(pk, 0);
}
static void b_notify_params_str(msgpack_packer *pk) {
  inv_pack_notify_header(pk, "invalidate");
  inv_pack_str(pk, "[]");
}

static void test_decode_shapes(void) {
  expect_decode(b_map, 0, 0, "expected an array of 3 or 4 elements, got map");
  expect_decode(b_str, 0, 0, "expected an array of 3 or 4 elements, got str");
  expect_decode(b_empty, 0, 0, "got an empty array");
  expect_decode(b_type3, 0, 0, "message type is not 0 (request)");
  expect_decode(b_type_str, 0, 0, "message type is not 0");
  expect_decode(b_type_neg, 0, 0, "message type is not 0");
  expect_decode(b_req_short, 1, 17,
                "request: expected an array of 4 elements, got 3");
  expect_decode(b_req_long, 1, 18,
                "request: expected an array of 4 elements, got 5");
  expect_decode(b_req_one, 0, 0,
                "request: expected an array of 4 elements, got 1");
  expect_decode(b_msgid_neg, 0, 0,
                "msgid is not an unsigned 32-bit integer (got int)");
  expect_decode(b_msgid_big, 0, 0,
                "msgid is not an unsigned 32-bit integer (got a larger int)");
  expect_decode(b_msgid_str, 0, 0,
                "msgid is not an unsigned 32-bit integer (got str)");
  expect_decode(b_msgid_float, 0, 0, "(got float)");
  expect_decode(b_method_int, 1, 21, "method is not a string (got int)");
  expect_decode(b_method_bin, 1, 22, "method is not a string (got bin)");
  expect_decode(b_params_map, 1, 23, "params is not an array (got map)");
  expect_decode(b_params_nil, 1, 24, "params is not an array (got nil)");
  expect_decode(b_resp_error_str, 1, 25,
                "error is neither nil nor a map (got str)");
  expect_decode(b_resp_short, 1, 26,
                "response: expected an array of 4 elements, got 3");
  expect_decode(b_resp_msgid_neg, 0, 0,
                "msgid is not an unsigned 32-bit integer");
  expect_decode(b_notify_long, 0, 0,
                "notification: expected an array of 3 elements, got 4");
  expect_decode(b_notify_method_int, 0, 0, "method is not a string (got int)");
  expect_decode(b_notify_params_str, 0, 0, "params is not an array (got str)");
}

/* Bytes handed to the decoder directly (not through the framer). */
static void test_decode_raw(void) {
  static const unsigned char trailing[] = {0x93, 0x02, 0xa1, 'p', 0x90, 0x90};
  static const unsigned char truncated[] = {0x94, 0x00, 0x01, 0xa4, 'p', 'i'};
  static const unsigned char huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x00};
  static const unsigned char bad[] = {0x93, 0x02, 0xc1, 0x90};
  inv_msg_t m;
  char err[128];

  CHECK_EQ_INT(decode((const char *)trailing, sizeof(trailing), &m, err),
               INV_EPROTO);
  CHECK(strstr(err, "1 bytes follow the object") != NULL);
  inv_msg_destroy(&m);
  CHECK_EQ_INT(decode((const char *)truncated, sizeof(truncated), &m, err),
               INV_EPROTO);
  CHECK(strstr(err, "the data ends inside a str") != NULL);
  inv_msg_destroy(&m);
  /* Four billion declared elements in six bytes: refused before msgpack-c
   * could try to allocate storage for them. */
  CHECK_EQ_INT(decode((const char *)huge, sizeof(huge), &m, err), INV_EPROTO);
  CHECK(strstr(err, "the data ends inside an array of 4294967295") != NULL);
  inv_msg_destroy(&m);
  CHECK_EQ_INT(decode((const char *)bad, sizeof(bad), &m, err), INV_EPROTO);
  CHECK(strstr(err, "0xc1") != NULL);
  inv_msg_destroy(&m);
  CHECK_EQ_INT(decode("", 0, &m, err), INV_EPROTO);
  CHECK(strstr(err, "no data") != NULL);
  inv_msg_destroy(&m);
  inv_msg_destroy(NULL);
}

static void test_map_helpers(void) {
  packbuf_t b;
  msgpack_unpacked u;
  size_t off = 0;

  pb_init(&b);
  msgpack_pack_map(&b.pk, 3);
  inv_pack_str(&b.pk, "code");
  inv_pack_str(&b.pk, "EINVAL");
  msgpack_pack_bin(&b.pk, 7);
  msgpack_pack_bin_body(&b.pk, "message", 7);
  msgpack_pack_bin(&b.pk, 2);
  msgpack_pack_bin_body(&b.pk, "hi", 2);
  msgpack_pack_int(&b.pk, 5);
  inv_pack_str(&b.pk, "five");
  msgpack_unpacked_init(&u);
  CHECK_EQ_INT(msgpack_unpack_next(&u, b.sb.data, b.sb.size, &off),
               MSGPACK_UNPACK_SUCCESS);
  const msgpack_object *v = inv_map_get(&u.data, "code");
  CHECK(v != NULL && inv_obj_streq(v, "EINVAL"));
  CHECK(v != NULL && !inv_obj_streq(v, "EINVA"));
  CHECK(v != NULL && !inv_obj_streq(v, "EINVALX"));
  v = inv_map_get(&u.data, "message");
  CHECK(v != NULL && inv_obj_streq(v, "hi"));
  CHECK(inv_map_get(&u.data, "absent") == NULL);
  CHECK(inv_map_get(&u.data, "") == NULL);
  CHECK(inv_map_get(NULL, "code") == NULL);
  CHECK(inv_map_get(&u.data.via.map.ptr[0].val, "code") == NULL);
  CHECK(!inv_obj_streq(&u.data.via.map.ptr[2].key, "5"));
  msgpack_unpacked_destroy(&u);
  pb_free(&b);
}

/* The packing helpers produce exactly the documented bytes. */
static void test_pack_bytes(void) {
  packbuf_t b;
  static const unsigned char ping[] = {0x94, 0x00, 0x05, 0xa4, 'p',
                                       'i',  'n',  'g',  0x90};
  static const unsigned char err[] = {0x94, 0x01, 0xcd, 0x01, 0x00, 0x82, 0xa4,
                                      'c',  'o',  'd',  'e',  0xa5, 'E',  'B',
                                      'U',  'S',  'Y',  0xa7, 'm',  'e',  's',
                                      's',  'a',  'g',  'e',  0xa1, 'x',  0xc0};
  pb_init(&b);
  inv_pack_request_header(&b.pk, 5, "ping");
  msgpack_pack_array(&b.pk, 0);
  CHECK_EQ_INT(b.sb.size, sizeof(ping));
  CHECK(b.sb.size == sizeof(ping) &&
        memcmp(b.sb.data, ping, sizeof(ping)) == 0);
  pb_free(&b);
  pb_init(&b);
  inv_pack_response_error(&b.pk, 256, "EBUSY", "x");
  CHECK_EQ_INT(b.sb.size, sizeof(err));
  CHECK(b.sb.size == sizeof(err) && memcmp(b.sb.data, err, sizeof(err)) == 0);
  pb_free(&b);
}

int main(void) {
  RUN(test_roundtrip_request);
  RUN(test_roundtrip_response);
  RUN(test_roundtrip_notify);
  RUN(test_every_split_point);
  RUN(test_split_headers);
  RUN(test_pipelined);
  RUN(test_oversize_declared);
  RUN(test_depth);
  RUN(test_items);
  RUN(test_c1);
  RUN(test_bounded_buffer);
  RUN(test_limits_default);
  RUN(test_decode_shapes);
  RUN(test_decode_raw);
  RUN(test_map_helpers);
  RUN(test_pack_bytes);
  return check_summary();
}
