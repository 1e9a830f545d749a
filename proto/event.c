/*
 * Invalidation events: reading and validating the event objects that
 * clients send, packing them for Redis, and decoding the payload that the
 * publisher logs and broadcasts.
 *
 * Two readers share one field parser. The publisher's reader
 * (inv_event_parse) is strict: an unknown or duplicate field is refused,
 * because a field the service does not understand (say a misspelt "mode")
 * would otherwise be silently ignored and the client would believe in an
 * invalidation that behaves differently from what it asked for. The
 * payload reader (inv_payload_decode) runs in workers and tools on data
 * that the publisher already validated, so it checks shape only and
 * ignores fields it does not know: an older worker must keep applying the
 * events of a newer publisher rather than drop them.
 */
#include "proto/event.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/glob.h"
#include "common/base/slot.h"
#include "proto/codec.h"
#include "proto/codec_check.h"
#include "proto/log_shard.h"
#include "proto/stream_id.h"

/* How many bytes of a client-supplied string an error message quotes. */
#define QUOTE_MAX 32

static const char *const kind_names[] = {"key", "prefix", "pattern"};
static const char *const mode_names[] = {"hard", "soft"};

int inv_key_reserved(const char *key, size_t len) {
  static const char ns[] = INV_NAMESPACE;
  const size_t nslen = sizeof(ns) - 1;
  if (len < nslen || memcmp(key, ns, nslen) != 0) return 0;
  return len == nslen || key[nslen] == ':';
}

const char *inv_kind_name(inv_kind_t kind) {
  if ((unsigned)kind < sizeof(kind_names) / sizeof(kind_names[0]))
    return kind_names[kind];
  return "unknown";
}

const char *inv_mode_name(inv_mode_t mode) {
  if ((unsigned)mode < sizeof(mode_names) / sizeof(mode_names[0]))
    return mode_names[mode];
  return "unknown";
}

static int fail(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *errstr, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (errlen > 0) vsnprintf(errstr, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* Writes at most QUOTE_MAX bytes of p[0..n) to out (at least 4 * QUOTE_MAX
 * + 4 bytes) as printable text: other bytes become \xNN, quotes and
 * backslashes are escaped, and "..." marks a cut. Client bytes go into log
 * lines and error messages, so they must not carry control characters. */
static const char *quote(char *out, const char *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (size_t i = 0; i < n && i < QUOTE_MAX; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20 || c >= 0x7f) {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    } else {
      out[o++] = (char)c;
    }
  }
  if (n > QUOTE_MAX) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
  return out;
}

/* Returns the index of the str o in names[0..count), or -1. */
static int lookup(const msgpack_object *o, const char *const *names,
                  size_t count) {
  for (size_t i = 0; i < count; i++)
    if (inv_obj_streq(o, names[i])) return (int)i;
  return -1;
}

/*
 * Reads kind, target and mode from the map o into ev. With strict set, a
 * field name that is not a string or not one of the three is refused;
 * without it, such fields are skipped. A duplicate field is refused in both
 * cases since either reading of it would be a guess. Returns 0, or -1 with
 * errstr set ("event 3: ...").
 */
static int event_read(const msgpack_object *o, size_t index, int strict,
                      inv_event_t *ev, char *errstr, size_t errlen) {
  static const char *const fields[] = {"kind", "target", "mode"};
  const msgpack_object *val[3] = {NULL, NULL, NULL};
  char q[4 * QUOTE_MAX + 4];
  int i;

  memset(ev, 0, sizeof(*ev));
  if (o->type != MSGPACK_OBJECT_MAP)
    return fail(errstr, errlen, "event %zu: expected a map, got %s", index,
                inv_msgpack_type_name(o->type));
  for (uint32_t k = 0; k < o->via.map.size; k++) {
    const msgpack_object *key = &o->via.map.ptr[k].key;
    if (key->type != MSGPACK_OBJECT_STR) {
      if (!strict) continue;
      return fail(errstr, errlen, "event %zu: a field name is not a string",
                  index);
    }
    i = lookup(key, fields, 3);
    if (i < 0) {
      if (!strict) continue;
      return fail(errstr, errlen,
                  "event %zu: unknown field \"%s\" (expected kind, target, "
                  "mode)",
                  index, quote(q, key->via.str.ptr, key->via.str.size));
    }
    if (val[i] != NULL)
      return fail(errstr, errlen, "event %zu: duplicate field \"%s\"", index,
                  fields[i]);
    val[i] = &o->via.map.ptr[k].val;
  }

  if (val[0] == NULL)
    return fail(errstr, errlen, "event %zu: kind is missing", index);
  if (val[0]->type != MSGPACK_OBJECT_STR)
    return fail(errstr, errlen, "event %zu: kind is not a string (got %s)",
                index, inv_msgpack_type_name(val[0]->type));
  i = lookup(val[0], kind_names, 3);
  if (i < 0)
    return fail(errstr, errlen,
                "event %zu: unknown kind \"%s\" (expected key, prefix or "
                "pattern)",
                index, quote(q, val[0]->via.str.ptr, val[0]->via.str.size));
  ev->kind = (inv_kind_t)i;

  if (val[1] == NULL)
    return fail(errstr, errlen, "event %zu: target is missing", index);
  if (val[1]->type == MSGPACK_OBJECT_STR) {
    ev->target = val[1]->via.str.ptr;
    ev->target_len = val[1]->via.str.size;
  } else if (val[1]->type == MSGPACK_OBJECT_BIN) {
    ev->target = val[1]->via.bin.ptr;
    ev->target_len = val[1]->via.bin.size;
  } else {
    return fail(errstr, errlen,
                "event %zu: target is not a string or binary (got %s)", index,
                inv_msgpack_type_name(val[1]->type));
  }

  /* An absent or nil mode is the default, hard. */
  ev->mode = INV_MODE_HARD;
  if (val[2] != NULL && val[2]->type != MSGPACK_OBJECT_NIL) {
    if (val[2]->type != MSGPACK_OBJECT_STR)
      return fail(errstr, errlen, "event %zu: mode is not a string (got %s)",
                  index, inv_msgpack_type_name(val[2]->type));
    i = lookup(val[2], mode_names, 2);
    if (i < 0)
      return fail(errstr, errlen,
                  "event %zu: unknown mode \"%s\" (expected hard or soft)",
                  index, quote(q, val[2]->via.str.ptr, val[2]->via.str.size));
    ev->mode = (inv_mode_t)i;
  }
  return 0;
}

int inv_event_parse(const msgpack_object *o, const inv_event_rules_t *rules,
                    size_t index, inv_event_t *ev, char *errstr,
                    size_t errlen) {
  static const inv_event_rules_t no_rules = {0, 0};
  char q[4 * QUOTE_MAX + 4];

  if (rules == NULL) rules = &no_rules; /* no length limit, no flushes */
  if (errlen > 0) errstr[0] = '\0';
  if (event_read(o, index, 1, ev, errstr, errlen) != 0) goto err;

  /* An empty prefix is a flush (handled below); an empty key or pattern
   * names nothing useful and is a client bug. */
  if (ev->target_len == 0 && ev->kind != INV_KIND_PREFIX) {
    fail(errstr, errlen, "event %zu: target is empty", index);
    goto err;
  }
  if (rules->max_key_len > 0 && ev->target_len > rules->max_key_len) {
    fail(errstr, errlen,
         "event %zu: target is %zu bytes, over the limit of %zu", index,
         ev->target_len, rules->max_key_len);
    goto err;
  }
  /* These two hold even with allow_flush: a malformed pattern is a client
   * bug whatever Redis would make of it ("*[^" matches every key), and no
   * event may delete the service's own keys. A pattern that merely can
   * reach them stays legal: workers pass over reserved keys. */
  if (ev->kind == INV_KIND_PATTERN &&
      inv_glob_check(ev->target, ev->target_len) != 0) {
    fail(errstr, errlen,
         "event %zu: pattern \"%s\" is malformed (a '[' without its closing "
         "']', or a trailing lone '\\'); refused even with --allow-flush",
         index, quote(q, ev->target, ev->target_len));
    goto err;
  }
  if (ev->kind != INV_KIND_PATTERN &&
      inv_key_reserved(ev->target, ev->target_len)) {
    fail(errstr, errlen,
         "event %zu: %s \"%s\" lies in the service's own namespace "
         "(" INV_NAMESPACE " and " INV_NAMESPACE
         ":*), which no event may "
         "delete",
         index, inv_kind_name(ev->kind), quote(q, ev->target, ev->target_len));
    goto err;
  }
  if (!rules->allow_flush) {
    if (ev->kind == INV_KIND_PREFIX && ev->target_len == 0) {
      fail(errstr, errlen,
           "event %zu: an empty prefix matches every key (refused unless the "
           "publisher runs with --allow-flush)",
           index);
      goto err;
    }
    if (ev->kind == INV_KIND_PATTERN &&
        inv_glob_matches_everything(ev->target, ev->target_len)) {
      fail(errstr, errlen,
           "event %zu: pattern \"%s\" matches every key (refused unless the "
           "publisher runs with --allow-flush)",
           index, quote(q, ev->target, ev->target_len));
      goto err;
    }
  }
  return 0;

err:
  memset(ev, 0, sizeof(*ev));
  return INV_EINVAL;
}

void inv_event_pack(msgpack_packer *pk, const inv_event_t *ev) {
  msgpack_pack_map(pk, 3);
  inv_pack_str(pk, "kind");
  inv_pack_str(pk, inv_kind_name(ev->kind));
  inv_pack_str(pk, "target");
  /* A target that is not UTF-8 travels as bin: standard decoders turn a
   * str into text and would fail on it, or replace its bytes. */
  if (inv_utf8_valid(ev->target, ev->target_len)) {
    msgpack_pack_str(pk, ev->target_len);
    if (ev->target_len > 0)
      msgpack_pack_str_body(pk, ev->target, ev->target_len);
  } else {
    msgpack_pack_bin(pk, ev->target_len);
    msgpack_pack_bin_body(pk, ev->target, ev->target_len);
  }
  inv_pack_str(pk, "mode");
  inv_pack_str(pk, inv_mode_name(ev->mode));
}

/* ---- payload ---------------------------------------------------------- */

static int payload_fail(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int payload_fail(char *errstr, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (errlen > 0) vsnprintf(errstr, errlen, fmt, ap);
  va_end(ap);
  return INV_EPROTO;
}

/* Reads the log entry id v (named name in messages) into out (sizeof out ==
 * INV_SID_STRLEN); a missing or nil value leaves out empty. Returns 0 or
 * INV_EPROTO with errstr. */
static int read_id(const msgpack_object *v, const char *name,
                   char out[INV_SID_STRLEN], char *errstr, size_t errlen) {
  const char *s;
  size_t n;
  out[0] = '\0';
  if (v == NULL || v->type == MSGPACK_OBJECT_NIL) return 0;
  if (v->type == MSGPACK_OBJECT_STR) {
    s = v->via.str.ptr;
    n = v->via.str.size;
  } else if (v->type == MSGPACK_OBJECT_BIN) {
    s = v->via.bin.ptr;
    n = v->via.bin.size;
  } else {
    return payload_fail(errstr, errlen, "payload %s is not a string (got %s)",
                        name, inv_msgpack_type_name(v->type));
  }
  if (n >= INV_SID_STRLEN)
    return payload_fail(errstr, errlen, "payload %s is %zu bytes, over %d",
                        name, n, INV_SID_STRLEN - 1);
  if (memchr(s, '\0', n) != NULL)
    return payload_fail(errstr, errlen, "payload %s contains a NUL byte", name);
  if (n > 0) memcpy(out, s, n);
  out[n] = '\0';
  return 0;
}

/* Reads the broadcast's optional "ids": [[shard uint < INV_LOG_SHARDS, id
 * str], ...], at most one per shard, into p->ids. Returns 0, INV_EPROTO
 * with errstr, or INV_ENOMEM. */
static int read_ids(const msgpack_object *v, inv_payload_t *p, char *errstr,
                    size_t errlen) {
  char name[32];
  if (v == NULL || v->type == MSGPACK_OBJECT_NIL) return 0;
  if (v->type != MSGPACK_OBJECT_ARRAY)
    return payload_fail(errstr, errlen, "payload ids is not an array (got %s)",
                        inv_msgpack_type_name(v->type));
  if (v->via.array.size > INV_LOG_SHARDS)
    return payload_fail(errstr, errlen, "payload ids has %u entries, over %d",
                        v->via.array.size, INV_LOG_SHARDS);
  if (v->via.array.size == 0) return 0;
  p->ids = calloc(v->via.array.size, sizeof(*p->ids));
  if (p->ids == NULL) return INV_ENOMEM;
  for (uint32_t k = 0; k < v->via.array.size; k++) {
    const msgpack_object *e = &v->via.array.ptr[k];
    if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
        e->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        e->via.array.ptr[0].via.u64 >= INV_LOG_SHARDS)
      return payload_fail(errstr, errlen,
                          "payload ids[%u] is not [shard, id] with a shard "
                          "below %d",
                          k, INV_LOG_SHARDS);
    p->ids[k].shard = (unsigned)e->via.array.ptr[0].via.u64;
    snprintf(name, sizeof(name), "ids[%u]", k);
    int rc = read_id(&e->via.array.ptr[1], name, p->ids[k].id, errstr, errlen);
    if (rc == 0 && p->ids[k].id[0] == '\0')
      rc = payload_fail(errstr, errlen, "payload %s has no id", name);
    if (rc != 0) return rc;
    p->nids = (size_t)k + 1;
  }
  return 0;
}

int inv_payload_decode(const char *data, size_t len, inv_payload_t *p,
                       char *errstr, size_t errlen) {
  static const char *const fields[] = {"v", "ts", "events", "ids"};
  const msgpack_object *val[4] = {NULL, NULL, NULL, NULL};
  const msgpack_object *root;
  char why[100];
  size_t off = 0;
  int i, rc;

  memset(p, 0, sizeof(*p));
  msgpack_unpacked_init(&p->unpacked);
  if (errlen > 0) errstr[0] = '\0';

  if (inv__msgpack_check(data, len, why, sizeof(why)) != 0)
    return payload_fail(errstr, errlen, "payload is not msgpack: %s", why);
  switch (msgpack_unpack_next(&p->unpacked, data, len, &off)) {
    case MSGPACK_UNPACK_SUCCESS:
      break;
    case MSGPACK_UNPACK_NOMEM_ERROR:
      return INV_ENOMEM;
    default:
      return payload_fail(errstr, errlen, "payload is not msgpack");
  }

  root = &p->unpacked.data;
  if (root->type != MSGPACK_OBJECT_MAP)
    return payload_fail(errstr, errlen, "payload is not a map (got %s)",
                        inv_msgpack_type_name(root->type));
  for (uint32_t k = 0; k < root->via.map.size; k++) {
    const msgpack_object *key = &root->via.map.ptr[k].key;
    if (key->type != MSGPACK_OBJECT_STR) continue;
    i = lookup(key, fields, 4);
    if (i < 0) continue; /* newer fields are ignored, see the top */
    if (val[i] != NULL)
      return payload_fail(errstr, errlen, "payload has a duplicate \"%s\"",
                          fields[i]);
    val[i] = &root->via.map.ptr[k].val;
  }

  if (val[0] == NULL)
    return payload_fail(errstr, errlen, "payload has no \"v\" field");
  if (val[0]->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
      val[0]->via.u64 != INV_PAYLOAD_VERSION) {
    if (val[0]->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
      return payload_fail(errstr, errlen,
                          "payload version %llu is not supported (expected "
                          "%d)",
                          (unsigned long long)val[0]->via.u64,
                          INV_PAYLOAD_VERSION);
    return payload_fail(errstr, errlen,
                        "payload version is not an unsigned integer (got %s)",
                        inv_msgpack_type_name(val[0]->type));
  }
  p->version = INV_PAYLOAD_VERSION;

  rc = read_ids(val[3], p, errstr, errlen);
  if (rc != 0) return rc;

  if (val[1] == NULL)
    return payload_fail(errstr, errlen, "payload has no \"ts\" field");
  if (val[1]->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
    return payload_fail(errstr, errlen,
                        "payload ts is not an unsigned integer (got %s)",
                        inv_msgpack_type_name(val[1]->type));
  p->ts_ms = val[1]->via.u64;

  if (val[2] == NULL)
    return payload_fail(errstr, errlen, "payload has no \"events\" field");
  if (val[2]->type != MSGPACK_OBJECT_ARRAY)
    return payload_fail(errstr, errlen,
                        "payload events is not an array (got %s)",
                        inv_msgpack_type_name(val[2]->type));
  if (val[2]->via.array.size > 0) {
    p->events = calloc(val[2]->via.array.size, sizeof(*p->events));
    if (p->events == NULL) return INV_ENOMEM;
  }
  for (uint32_t k = 0; k < val[2]->via.array.size; k++) {
    if (event_read(&val[2]->via.array.ptr[k], k, 0, &p->events[k], errstr,
                   errlen) != 0)
      return INV_EPROTO;
    p->nevents = (size_t)k + 1;
  }
  return 0;
}

void inv_payload_destroy(inv_payload_t *p) {
  if (p == NULL) return;
  free(p->events);
  p->events = NULL;
  p->nevents = 0;
  free(p->ids);
  p->ids = NULL;
  p->nids = 0;
  msgpack_unpacked_destroy(&p->unpacked);
  msgpack_unpacked_init(&p->unpacked);
}
