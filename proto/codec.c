/*
 * The wire codec: an incremental msgpack framer with hard limits, the
 * msgpack-rpc message decoder and the packing helpers. No I/O.
 *
 * The framer never decodes values. It reads only object headers (type byte
 * plus length or count field) and keeps, per open array or map, the number
 * of children still expected. That is enough to know where an object ends
 * and to enforce every limit from the headers alone: a str32 that declares
 * four gigabytes is refused as soon as its five header bytes arrive, and an
 * array that declares more elements than the remaining byte budget could
 * hold is refused before any element is read. The scan resumes where it
 * stopped on the next feed, so each byte is looked at once however the
 * input is split.
 */
#include "proto/codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "proto/codec_check.h"

/* msgpack-c's decoder keeps MSGPACK_EMBED_STACK_SIZE open containers at
 * most (32 in the library as built); deeper input fails to decode. */
#include <msgpack/unpack_define.h>

/* The framer's stack holds one counter per open container, and msgpack-c's
 * decoder refuses to open more than MSGPACK_EMBED_STACK_SIZE containers, so
 * max_depth is capped at the smaller of the two: a frame the framer passes
 * can always be decoded. */
#define FRAMER_STACK_SLOTS                   \
  (sizeof(((inv_framer_t *)0)->scan_stack) / \
   sizeof(((inv_framer_t *)0)->scan_stack[0]))
#define DEPTH_CAP                                                           \
  (MSGPACK_EMBED_STACK_SIZE < FRAMER_STACK_SLOTS ? MSGPACK_EMBED_STACK_SIZE \
                                                 : FRAMER_STACK_SLOTS)

/* A buffer left larger than this by a big frame is released once it is
 * empty, so thousands of idle sessions do not each keep a megabyte. */
#define FRAMER_KEEP_BYTES (64 * 1024)
#define FRAMER_MIN_CAP 4096

enum { SCAN_MORE = 0, SCAN_DONE = 1 };
enum { OBJ_FIXED, OBJ_BYTES, OBJ_ARRAY, OBJ_MAP };

void inv_codec_limits_default(inv_codec_limits_t *lim) {
  lim->max_message_bytes = 1024 * 1024;
  lim->max_depth = 16;
  lim->max_items = 1000000;
}

/* Zero fields of lim mean "the default"; max_depth is capped at DEPTH_CAP. */
void inv_framer_init(inv_framer_t *f, const inv_codec_limits_t *lim) {
  memset(f, 0, sizeof(*f));
  inv_codec_limits_default(&f->lim);
  if (lim != NULL) {
    if (lim->max_message_bytes > 0)
      f->lim.max_message_bytes = lim->max_message_bytes;
    if (lim->max_depth > 0) f->lim.max_depth = lim->max_depth;
    if (lim->max_items > 0) f->lim.max_items = lim->max_items;
  }
  if (f->lim.max_depth > DEPTH_CAP) f->lim.max_depth = DEPTH_CAP;
}

void inv_framer_free(inv_framer_t *f) {
  if (f == NULL) return;
  free(f->buf);
  f->buf = NULL;
  f->len = f->cap = f->pos = 0;
}

/* Records a sticky error with its reason and returns it. */
static int scan_fail(inv_framer_t *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int scan_fail(inv_framer_t *f, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->errstr, sizeof(f->errstr), fmt, ap);
  va_end(ap);
  f->err = err;
  return err;
}

static uint64_t read_be(const unsigned char *p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

/* One finished value closes every container whose last child it was. */
static void scan_value_done(inv_framer_t *f) {
  while (f->scan_depth > 0) {
    if (--f->scan_stack[f->scan_depth - 1] > 0) break;
    f->scan_depth--;
  }
}

/*
 * Classifies the header byte b: sets *kind, and either *size (the whole
 * value's bytes, OBJ_FIXED), or *lenbytes (the size of the length or count
 * field that follows b) and *extra (header bytes after that field: the ext
 * type). For fixstr, fixarray and fixmap the count is in b: *lenbytes is 0
 * and *n is set. Returns 0, or -1 for 0xc1, the one byte msgpack never uses.
 */
static int classify(unsigned char b, int *kind, uint64_t *size,
                    unsigned *lenbytes, unsigned *extra, uint64_t *n,
                    const char **what) {
  *size = 0;
  *lenbytes = 0;
  *extra = 0;
  *n = 0;
  *what = "a value";
  if (b <= 0x7f || b >= 0xe0) { /* positive and negative fixint */
    *kind = OBJ_FIXED;
    *size = 1;
    return 0;
  }
  if (b <= 0x8f) {
    *kind = OBJ_MAP;
    *n = b & 0x0f;
    *what = "a map";
    return 0;
  }
  if (b <= 0x9f) {
    *kind = OBJ_ARRAY;
    *n = b & 0x0f;
    *what = "an array";
    return 0;
  }
  if (b <= 0xbf) { /* fixstr: at most 31 bytes, treated as fixed */
    *kind = OBJ_FIXED;
    *size = 1 + (uint64_t)(b & 0x1f);
    *what = "a str";
    return 0;
  }
  *kind = OBJ_FIXED;
  switch (b) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
      *size = 1;
      return 0; /* nil, bools */
    case 0xc1:
      return -1;
    case 0xc4:
    case 0xc5:
    case 0xc6: /* bin 8/16/32 */
      *kind = OBJ_BYTES;
      *lenbytes = 1u << (b - 0xc4);
      *what = "a bin";
      return 0;
    case 0xc7:
    case 0xc8:
    case 0xc9: /* ext 8/16/32: length, then type */
      *kind = OBJ_BYTES;
      *lenbytes = 1u << (b - 0xc7);
      *extra = 1;
      *what = "an ext";
      return 0;
    case 0xca:
      *size = 5;
      return 0; /* float32 */
    case 0xcb:
      *size = 9;
      return 0; /* float64 */
    case 0xcc:
    case 0xd0:
      *size = 2;
      return 0;
    case 0xcd:
    case 0xd1:
      *size = 3;
      return 0;
    case 0xce:
    case 0xd2:
      *size = 5;
      return 0;
    case 0xcf:
    case 0xd3:
      *size = 9;
      return 0;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: /* fixext */
      *size = 2 + ((uint64_t)1 << (b - 0xd4));
      *what = "an ext";
      return 0;
    case 0xd9:
    case 0xda:
    case 0xdb: /* str 8/16/32 */
      *kind = OBJ_BYTES;
      *lenbytes = 1u << (b - 0xd9);
      *what = "a str";
      return 0;
    case 0xdc:
    case 0xdd: /* array 16/32 */
      *kind = OBJ_ARRAY;
      *lenbytes = 2u << (b - 0xdc);
      *what = "an array";
      return 0;
    default: /* 0xde, 0xdf: map 16/32 */
      *kind = OBJ_MAP;
      *lenbytes = 2u << (b - 0xde);
      *what = "a map";
      return 0;
  }
}

/*
 * Advances the scan of the object starting at p[0], given that p[0..avail)
 * is available, from f->scan_off on. Returns SCAN_DONE when the object is
 * complete (its length is f->scan_off, which is <= avail), SCAN_MORE when
 * more bytes are needed, or a sticky error (INV_EPROTO, INV_ETOOBIG) with
 * f->errstr set. checking selects the wording of size errors: when the
 * whole input is known (inv__msgpack_check), an object that does not fit
 * is truncated rather than too big.
 */
static int scan(inv_framer_t *f, const unsigned char *p, size_t avail,
                int checking) {
  const uint64_t max = f->lim.max_message_bytes;

  for (;;) {
    if (f->scan_off > 0 && f->scan_depth == 0)
      return f->scan_off <= avail ? SCAN_DONE : SCAN_MORE;
    if (f->scan_off >= avail) return SCAN_MORE;

    const size_t off = f->scan_off;
    const unsigned char *h = p + off;
    const size_t have = avail - off;
    int kind;
    uint64_t size, n;
    unsigned lenbytes, extra;
    const char *what;

    if (classify(h[0], &kind, &size, &lenbytes, &extra, &n, &what) != 0)
      return scan_fail(f, INV_EPROTO,
                       "byte 0xc1 at offset %zu is not valid msgpack", off);
    if (lenbytes > 0) {
      if (have < 1 + (size_t)lenbytes) return SCAN_MORE; /* header split */
      n = read_be(h + 1, lenbytes);
    }

    if (kind == OBJ_FIXED || kind == OBJ_BYTES) {
      if (kind == OBJ_BYTES) size = 1 + (uint64_t)lenbytes + extra + n;
      if ((uint64_t)off + size > max) {
        if (checking)
          return scan_fail(f, INV_ETOOBIG,
                           "the data ends inside %s of %llu bytes at "
                           "offset %zu",
                           what, (unsigned long long)size, off);
        if (kind == OBJ_BYTES)
          return scan_fail(f, INV_ETOOBIG,
                           "%s of %llu bytes does not fit in "
                           "max_message_bytes (%llu)",
                           what, (unsigned long long)n,
                           (unsigned long long)max);
        return scan_fail(f, INV_ETOOBIG,
                         "message is over max_message_bytes (%llu)",
                         (unsigned long long)max);
      }
      f->scan_off = off + (size_t)size;
      scan_value_done(f);
      continue;
    }

    /* An array or a map. */
    const uint64_t hdr = 1 + (uint64_t)lenbytes;
    const uint64_t children = kind == OBJ_MAP ? 2 * n : n;
    if (f->scan_depth + 1 > f->lim.max_depth)
      return scan_fail(f, INV_ETOOBIG, "nesting is deeper than %u levels",
                       f->lim.max_depth);
    if (n > (uint64_t)(f->lim.max_items - f->scan_items))
      return scan_fail(f, INV_ETOOBIG,
                       "more than %zu array elements and map pairs in one "
                       "message",
                       f->lim.max_items);
    /* Every child takes at least one byte, so the declared count alone
     * can exceed the budget; refusing here also bounds what msgpack-c will
     * allocate for the element storage. */
    if ((uint64_t)off + hdr + children > max || children > UINT32_MAX) {
      if (checking)
        return scan_fail(f, INV_ETOOBIG,
                         "the data ends inside %s of %llu %s at offset %zu",
                         what, (unsigned long long)n,
                         kind == OBJ_MAP ? "pairs" : "elements", off);
      return scan_fail(f, INV_ETOOBIG,
                       "%s of %llu %s does not fit in max_message_bytes "
                       "(%llu)",
                       what, (unsigned long long)n,
                       kind == OBJ_MAP ? "pairs" : "elements",
                       (unsigned long long)max);
    }
    f->scan_items += (size_t)n;
    f->scan_off = off + (size_t)hdr;
    if (n == 0) {
      scan_value_done(f);
    } else {
      f->scan_stack[f->scan_depth++] = (uint32_t)children;
    }
  }
}

int inv__msgpack_check(const char *data, size_t len, char *errstr,
                       size_t errlen) {
  inv_framer_t f;
  int rc;

  memset(&f, 0, sizeof(f));
  f.lim.max_message_bytes = len;
  f.lim.max_depth = DEPTH_CAP;
  f.lim.max_items = (size_t)-1;
  if (len == 0) {
    snprintf(errstr, errlen, "no data");
    return INV_EPROTO;
  }
  rc = scan(&f, (const unsigned char *)data, len, 1);
  if (rc < 0) {
    snprintf(errstr, errlen, "%s", f.errstr);
    return INV_EPROTO;
  }
  if (rc == SCAN_MORE) {
    snprintf(errstr, errlen, "the data ends inside a header");
    return INV_EPROTO;
  }
  if (f.scan_off != len) {
    snprintf(errstr, errlen, "%zu bytes follow the object", len - f.scan_off);
    return INV_EPROTO;
  }
  if (errlen > 0) errstr[0] = '\0';
  return 0;
}

/*
 * Copies data in after moving the unconsumed bytes to the front. The
 * buffer grows geometrically while small and exactly once it nears the
 * message limit, so it stays close to one partial frame plus one read.
 */
int inv_framer_feed(inv_framer_t *f, const char *data, size_t len) {
  size_t rest, need;

  if (f->err != 0) return f->err;
  if (len == 0) return 0;
  rest = f->len - f->pos;
  if (f->pos > 0) {
    if (rest > 0) memmove(f->buf, f->buf + f->pos, rest);
    f->len = rest;
    f->pos = 0;
  }
  if (rest == 0 && f->cap > FRAMER_KEEP_BYTES && len <= FRAMER_KEEP_BYTES) {
    free(f->buf);
    f->buf = NULL;
    f->cap = 0;
  }
  if (len > (size_t)-1 - rest) return INV_ENOMEM;
  need = rest + len;
  if (need > f->cap) {
    size_t ncap = f->cap < FRAMER_MIN_CAP ? FRAMER_MIN_CAP : f->cap;
    while (ncap < need && ncap <= (size_t)-1 / 2) ncap *= 2;
    if (ncap < need || ncap > f->lim.max_message_bytes + FRAMER_KEEP_BYTES)
      ncap = need > FRAMER_MIN_CAP ? need : FRAMER_MIN_CAP;
    char *nbuf = realloc(f->buf, ncap);
    if (nbuf == NULL) return INV_ENOMEM;
    f->buf = nbuf;
    f->cap = ncap;
  }
  memcpy(f->buf + f->len, data, len);
  f->len += len;
  return 0;
}

int inv_framer_next(inv_framer_t *f, const char **frame, size_t *len) {
  size_t avail;
  int rc;

  if (f->err != 0) return f->err;
  avail = f->len - f->pos;
  if (avail == 0) return 0; /* scan_off is 0 too: nothing of a frame yet */
  rc = scan(f, (const unsigned char *)f->buf + f->pos, avail, 0);
  /* After an error the unconsumed bytes stay in buf from pos on (they are
   * bounded by the limit plus one read): whoever reports the error may look
   * at the refused frame's first bytes, for instance for its msgid. */
  if (rc < 0) return rc;
  if (rc == SCAN_MORE) return 0;
  *frame = f->buf + f->pos;
  *len = f->scan_off;
  f->pos += f->scan_off;
  f->scan_off = 0;
  f->scan_items = 0;
  f->scan_depth = 0;
  /* The bytes stay where they are, so *frame remains valid; the next feed
   * simply starts writing at the front again. */
  if (f->pos == f->len) f->pos = f->len = 0;
  return 1;
}

/* ---- message decoding ------------------------------------------------- */

const char *inv_msgpack_type_name(msgpack_object_type t) {
  switch (t) {
    case MSGPACK_OBJECT_NIL:
      return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
      return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      return "int";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      return "float";
    case MSGPACK_OBJECT_STR:
      return "str";
    case MSGPACK_OBJECT_BIN:
      return "bin";
    case MSGPACK_OBJECT_ARRAY:
      return "array";
    case MSGPACK_OBJECT_MAP:
      return "map";
    case MSGPACK_OBJECT_EXT:
      return "ext";
  }
  return "unknown";
}

static int decode_fail(char *errstr, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int decode_fail(char *errstr, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errstr, 128, fmt, ap);
  va_end(ap);
  return INV_EPROTO;
}

/* Reads a[1] as the msgid: an unsigned integer that fits in 32 bits. */
static int read_msgid(const msgpack_object *o, inv_msg_t *msg, char *errstr) {
  if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
    return decode_fail(errstr,
                       "msgid is not an unsigned 32-bit integer (got %s)",
                       o->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                           ? "a larger int"
                           : inv_msgpack_type_name(o->type));
  msg->msgid = (uint32_t)o->via.u64;
  msg->has_msgid = 1;
  return 0;
}

static int read_method(const msgpack_object *o, inv_msg_t *msg, char *errstr) {
  if (o->type != MSGPACK_OBJECT_STR)
    return decode_fail(errstr, "method is not a string (got %s)",
                       inv_msgpack_type_name(o->type));
  /* msgpack-c leaves ptr NULL for an empty string; callers compare the
   * name with memcmp, which must not be handed NULL. */
  msg->method = o->via.str.size > 0 ? o->via.str.ptr : "";
  msg->method_len = o->via.str.size;
  return 0;
}

static int read_params(const msgpack_object *o, inv_msg_t *msg, char *errstr) {
  if (o->type != MSGPACK_OBJECT_ARRAY)
    return decode_fail(errstr, "params is not an array (got %s)",
                       inv_msgpack_type_name(o->type));
  msg->params = *o;
  return 0;
}

int inv_msg_decode(const char *frame, size_t len, inv_msg_t *msg,
                   char errstr[128]) {
  char why[128]; /* as large as the framer's errstr, which it receives */
  size_t off = 0;
  const msgpack_object *root, *a;
  uint32_t n;
  int rc;

  memset(msg, 0, sizeof(*msg));
  msgpack_unpacked_init(&msg->unpacked);
  errstr[0] = '\0';

  if (inv__msgpack_check(frame, len, why, sizeof(why)) != 0)
    return decode_fail(errstr, "not a msgpack object: %s", why);
  switch (msgpack_unpack_next(&msg->unpacked, frame, len, &off)) {
    case MSGPACK_UNPACK_SUCCESS:
      break;
    case MSGPACK_UNPACK_NOMEM_ERROR:
      return decode_fail(errstr, "out of memory while decoding");
    default:
      return decode_fail(errstr, "not a msgpack object");
  }

  root = &msg->unpacked.data;
  if (root->type != MSGPACK_OBJECT_ARRAY)
    return decode_fail(errstr, "expected an array of 3 or 4 elements, got %s",
                       inv_msgpack_type_name(root->type));
  n = root->via.array.size;
  a = root->via.array.ptr;
  if (n == 0)
    return decode_fail(errstr,
                       "expected an array of 3 or 4 elements, got an empty "
                       "array");
  if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > 2)
    return decode_fail(errstr,
                       "message type is not 0 (request), 1 (response) or 2 "
                       "(notification)");
  msg->type = (inv_msg_type_t)a[0].via.u64;

  switch (msg->type) {
    case INV_MSG_REQUEST:
    case INV_MSG_RESPONSE:
      /* The msgid is read first so that an error reply can name the
       * request even when the rest of the message is wrong. */
      if (n >= 2 && (rc = read_msgid(&a[1], msg, errstr)) != 0) return rc;
      if (n != 4)
        return decode_fail(
            errstr,
            "%s: expected an array of 4 elements, "
            "got %u",
            msg->type == INV_MSG_REQUEST ? "request" : "response", n);
      if (msg->type == INV_MSG_REQUEST) {
        if ((rc = read_method(&a[2], msg, errstr)) != 0) return rc;
        if ((rc = read_params(&a[3], msg, errstr)) != 0) return rc;
      } else {
        if (a[2].type != MSGPACK_OBJECT_NIL && a[2].type != MSGPACK_OBJECT_MAP)
          return decode_fail(errstr, "error is neither nil nor a map (got %s)",
                             inv_msgpack_type_name(a[2].type));
        msg->error = a[2];
        msg->result = a[3];
      }
      return 0;
    case INV_MSG_NOTIFY:
      if (n != 3)
        return decode_fail(errstr,
                           "notification: expected an array of 3 "
                           "elements, got %u",
                           n);
      if ((rc = read_method(&a[1], msg, errstr)) != 0) return rc;
      return read_params(&a[2], msg, errstr);
  }
  return decode_fail(errstr, "unknown message type");
}

void inv_msg_destroy(inv_msg_t *msg) {
  if (msg == NULL) return;
  msgpack_unpacked_destroy(&msg->unpacked);
  msgpack_unpacked_init(&msg->unpacked);
}

int inv_obj_streq(const msgpack_object *o, const char *s) {
  size_t n = strlen(s);
  if (o->type == MSGPACK_OBJECT_STR)
    return o->via.str.size == n &&
           (n == 0 || memcmp(o->via.str.ptr, s, n) == 0);
  if (o->type == MSGPACK_OBJECT_BIN)
    return o->via.bin.size == n &&
           (n == 0 || memcmp(o->via.bin.ptr, s, n) == 0);
  return 0;
}

const msgpack_object *inv_map_get(const msgpack_object *map, const char *key) {
  if (map == NULL || map->type != MSGPACK_OBJECT_MAP) return NULL;
  for (uint32_t i = 0; i < map->via.map.size; i++) {
    const msgpack_object_kv *kv = &map->via.map.ptr[i];
    if (inv_obj_streq(&kv->key, key)) return &kv->val;
  }
  return NULL;
}

/* ---- packing ---------------------------------------------------------- */

void inv_pack_str(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  if (n > 0) msgpack_pack_str_body(pk, s, n);
}

void inv_pack_request_header(msgpack_packer *pk, uint32_t msgid,
                             const char *method) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_uint8(pk, INV_MSG_REQUEST);
  msgpack_pack_uint32(pk, msgid);
  inv_pack_str(pk, method);
}

void inv_pack_notify_header(msgpack_packer *pk, const char *method) {
  msgpack_pack_array(pk, 3);
  msgpack_pack_uint8(pk, INV_MSG_NOTIFY);
  inv_pack_str(pk, method);
}

void inv_pack_response_header(msgpack_packer *pk, uint32_t msgid) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_uint8(pk, INV_MSG_RESPONSE);
  msgpack_pack_uint32(pk, msgid);
  msgpack_pack_nil(pk);
}

void inv_pack_response_error(msgpack_packer *pk, uint32_t msgid,
                             const char *code, const char *message) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_uint8(pk, INV_MSG_RESPONSE);
  msgpack_pack_uint32(pk, msgid);
  msgpack_pack_map(pk, 2);
  inv_pack_str(pk, "code");
  inv_pack_str(pk, code);
  inv_pack_str(pk, "message");
  inv_pack_str(pk, message);
  msgpack_pack_nil(pk);
}

/* Returns the length of the valid UTF-8 sequence starting at p (at most
 * len bytes), or 0 when the bytes there are not valid UTF-8. Overlong
 * forms and surrogates are invalid. */
size_t inv_utf8_seq(const unsigned char *p, size_t len) {
  size_t n, i;
  uint32_t cp;
  if (p[0] < 0x80) return 1;
  if (p[0] >= 0xc2 && p[0] <= 0xdf) {
    n = 2;
    cp = p[0] & 0x1f;
  } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
    n = 3;
    cp = p[0] & 0x0f;
  } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
    n = 4;
    cp = p[0] & 0x07;
  } else {
    return 0;
  }
  if (len < n) return 0;
  for (i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

int inv_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, n;
  while (i < len) {
    if ((n = inv_utf8_seq(p + i, len - i)) == 0) return 0;
    i += n;
  }
  return 1;
}
