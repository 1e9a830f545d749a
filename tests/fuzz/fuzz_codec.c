/*
 * Fuzz target for the wire codec: framer, message decoder, event rules and
 * payload decoder, with their invariants checked on every input.
 *
 * Input layout: byte 0 picks the framer limits and the flush rule, byte 1
 * seeds the sizes of the pieces the stream is fed in, the rest is the byte
 * stream a client would send.
 *
 * Invariants (any violation aborts, which both libFuzzer and the replay
 * driver report):
 *   - frames are non-empty, never longer than max_message_bytes, and are
 *     exactly the stream's bytes in order, however the stream is split;
 *   - every frame is one complete msgpack object that msgpack-c decodes;
 *     bytes left over without an error are an incomplete object;
 *   - after an error, next() and feed() keep returning that error, and the
 *     error is EPROTO or ETOOBIG with a reason;
 *   - decoding yields 0 or EPROTO with a reason, and a decoded message has
 *     the documented shape and survives re-encoding;
 *   - accepted events obey the rules and survive inv_event_pack.
 *
 * Built two ways by inv_fuzz_target (tests/fuzz/fuzz.cmake): as a libFuzzer
 * binary with clang and INV_FUZZ=ON, and always with replay_main.c (the
 * CTest test fuzz.codec_replay).
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "proto/codec.h"
#include "proto/codec_check.h"
#include "proto/event.h"
#include "proto/log_shard.h"
#include "tests/fuzz/fuzz.h"

static int sbuf_write(void *data, const char *buf, size_t len) {
  return msgpack_sbuffer_write(data, buf, len);
}

/* Checks one accepted event against the rules and packs it round. */
static void check_event(const inv_event_t *ev, const inv_event_rules_t *rules) {
  FUZZ_ASSERT(ev->kind <= INV_KIND_PATTERN);
  FUZZ_ASSERT(ev->mode <= INV_MODE_SOFT);
  FUZZ_ASSERT(ev->target_len <= rules->max_key_len);
  FUZZ_ASSERT(ev->target_len > 0 ||
              (ev->kind == INV_KIND_PREFIX && rules->allow_flush));

  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
  size_t off = 0;
  inv_event_t back;
  char err[128];
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, sbuf_write);
  inv_event_pack(&pk, ev);
  msgpack_unpacked_init(&u);
  FUZZ_ASSERT(msgpack_unpack_next(&u, sb.data, sb.size, &off) ==
              MSGPACK_UNPACK_SUCCESS);
  FUZZ_ASSERT(inv_event_parse(&u.data, rules, 0, &back, err, sizeof(err)) == 0);
  FUZZ_ASSERT(back.kind == ev->kind && back.mode == ev->mode &&
              back.target_len == ev->target_len);
  FUZZ_ASSERT(back.target_len == 0 ||
              memcmp(back.target, ev->target, back.target_len) == 0);
  msgpack_unpacked_destroy(&u);
  msgpack_sbuffer_destroy(&sb);
}

/* Runs the event rules over params[0] when it is an array, as the
 * publisher's invalidate does. */
static void check_events(const msgpack_object *params,
                         const inv_event_rules_t *rules) {
  if (params->via.array.size == 0) return;
  const msgpack_object *list = &params->via.array.ptr[0];
  if (list->type != MSGPACK_OBJECT_ARRAY) return;
  for (uint32_t i = 0; i < list->via.array.size; i++) {
    inv_event_t ev;
    char err[128];
    int rc = inv_event_parse(&list->via.array.ptr[i], rules, i, &ev, err,
                             sizeof(err));
    FUZZ_ASSERT(rc == 0 || rc == INV_EINVAL);
    FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
    if (rc == 0) {
      check_event(&ev, rules);
    } else {
      FUZZ_ASSERT(strncmp(err, "event ", 6) == 0);
    }
  }
}

/* Re-encodes a decoded message with the packing helpers and decodes it
 * again: the header fields must come back unchanged. */
static void check_reencode(const inv_msg_t *m) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  inv_msg_t back;
  char err[128];
  char method[64];

  if (m->type == INV_MSG_RESPONSE) return; /* no helper packs any error */
  if (m->method_len >= sizeof(method) ||
      memchr(m->method, '\0', m->method_len) != NULL)
    return; /* the helpers take NUL-terminated names */
  memcpy(method, m->method, m->method_len);
  method[m->method_len] = '\0';
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, sbuf_write);
  if (m->type == INV_MSG_REQUEST)
    inv_pack_request_header(&pk, m->msgid, method);
  else
    inv_pack_notify_header(&pk, method);
  msgpack_pack_object(&pk, m->params);
  FUZZ_ASSERT(inv_msg_decode(sb.data, sb.size, &back, err) == 0);
  FUZZ_ASSERT(back.type == m->type && back.method_len == m->method_len);
  FUZZ_ASSERT(back.method_len == 0 ||
              memcmp(back.method, m->method, m->method_len) == 0);
  FUZZ_ASSERT(m->type != INV_MSG_REQUEST || back.msgid == m->msgid);
  FUZZ_ASSERT(back.params.via.array.size == m->params.via.array.size);
  inv_msg_destroy(&back);
  msgpack_sbuffer_destroy(&sb);
}

static void check_frame(const char *frame, size_t len,
                        const inv_event_rules_t *rules) {
  inv_msg_t m;
  char err[128];
  int rc;

  /* One complete msgpack object: the structure check passes, and the
   * decoder's msgpack-c pass succeeds (only the rpc shape may fail). */
  {
    char why[128];
    FUZZ_ASSERT(inv__msgpack_check(frame, len, why, sizeof(why)) == 0);
  }

  rc = inv_msg_decode(frame, len, &m, err);
  FUZZ_ASSERT(rc == 0 || rc == INV_EPROTO);
  FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
  FUZZ_ASSERT(strncmp(err, "not a msgpack object", 20) != 0);
  FUZZ_ASSERT(strncmp(err, "out of memory", 13) != 0);
  if (rc == 0) {
    FUZZ_ASSERT(err[0] == '\0');
    FUZZ_ASSERT(m.type <= INV_MSG_NOTIFY);
    FUZZ_ASSERT(m.has_msgid == (m.type != INV_MSG_NOTIFY));
    if (m.type == INV_MSG_RESPONSE) {
      FUZZ_ASSERT(m.error.type == MSGPACK_OBJECT_NIL ||
                  m.error.type == MSGPACK_OBJECT_MAP);
      (void)inv_map_get(&m.error, "code");
    } else {
      FUZZ_ASSERT(m.method != NULL);
      FUZZ_ASSERT(m.params.type == MSGPACK_OBJECT_ARRAY);
      check_events(&m.params, rules);
      check_reencode(&m);
    }
  } else {
    FUZZ_ASSERT(err[0] != '\0');
  }
  inv_msg_destroy(&m);

  {
    inv_payload_t p;
    char perr[128];
    rc = inv_payload_decode(frame, len, &p, perr, sizeof(perr));
    FUZZ_ASSERT(rc == 0 || rc == INV_EPROTO || rc == INV_ENOMEM);
    if (rc == 0) {
      FUZZ_ASSERT(p.version == INV_PAYLOAD_VERSION);
      FUZZ_ASSERT(p.nids <= INV_LOG_SHARDS);
      for (size_t i = 0; i < p.nevents; i++) {
        FUZZ_ASSERT(p.events[i].kind <= INV_KIND_PATTERN);
        FUZZ_ASSERT(p.events[i].mode <= INV_MODE_SOFT);
      }
    } else if (rc == INV_EPROTO) {
      FUZZ_ASSERT(perr[0] != '\0');
    }
    inv_payload_destroy(&p);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  inv_codec_limits_t lim;
  inv_event_rules_t rules;
  inv_framer_t f;
  uint64_t seed;
  const char *stream;
  size_t slen, fed = 0, consumed = 0;
  int err = 0;

  if (size < 2) return 0;
  /* Small limits so that fuzzing reaches them; byte 0 also picks defaults
   * now and then. */
  inv_codec_limits_default(&lim);
  if ((data[0] & 0xc0) != 0xc0) {
    lim.max_message_bytes = 16 + (size_t)(data[0] & 0x0f) * 256;
    lim.max_depth = 1 + ((data[0] >> 4) & 0x03) * 5;
    lim.max_items = 2 + (size_t)data[1] * 4;
  }
  rules.max_key_len = 64;
  rules.allow_flush = data[1] & 0x80 ? 1 : 0;
  seed = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)data[1] << 32) ^ size;
  stream = (const char *)data + 2;
  slen = size - 2;

  inv_framer_init(&f, &lim);
  for (;;) {
    const char *fr;
    size_t len;
    int rc;
    if (fed < slen) {
      uint64_t r = fuzz_rng_next(&seed);
      size_t piece = (r & 3) == 0 ? slen - fed : 1 + (size_t)((r >> 8) % 97);
      if (piece > slen - fed) piece = slen - fed;
      rc = inv_framer_feed(&f, stream + fed, piece);
      if (err != 0) {
        FUZZ_ASSERT(rc == err);
      } else {
        FUZZ_ASSERT(rc == 0);
      }
      fed += piece;
    }
    while ((rc = inv_framer_next(&f, &fr, &len)) == 1) {
      FUZZ_ASSERT(err == 0);
      FUZZ_ASSERT(len > 0 && len <= f.lim.max_message_bytes);
      FUZZ_ASSERT(consumed + len <= fed);
      FUZZ_ASSERT(memcmp(fr, stream + consumed, len) == 0);
      consumed += len;
      check_frame(fr, len, &rules);
    }
    if (rc < 0) {
      FUZZ_ASSERT(rc == INV_EPROTO || rc == INV_ETOOBIG);
      FUZZ_ASSERT(err == 0 || rc == err);
      FUZZ_ASSERT(f.err == rc && f.errstr[0] != '\0');
      err = rc;
    }
    if (fed == slen) break;
  }
  if (err != 0) {
    const char *fr;
    size_t len;
    FUZZ_ASSERT(inv_framer_next(&f, &fr, &len) == err);
    FUZZ_ASSERT(inv_framer_feed(&f, "\x90", 1) == err);
    FUZZ_ASSERT(inv_framer_next(&f, &fr, &len) == err);
  } else if (consumed < slen) {
    /* What is left is the start of an object, within the limits. */
    msgpack_unpacked u;
    size_t off = 0;
    FUZZ_ASSERT(slen - consumed <= f.lim.max_message_bytes + 9);
    msgpack_unpacked_init(&u);
    FUZZ_ASSERT(msgpack_unpack_next(&u, stream + consumed, slen - consumed,
                                    &off) == MSGPACK_UNPACK_CONTINUE);
    msgpack_unpacked_destroy(&u);
  }
  inv_framer_free(&f);

  /* The decoders also take arbitrary bytes directly. */
  {
    inv_msg_t m;
    inv_payload_t p;
    char e[128];
    int rc = inv_msg_decode(stream, slen, &m, e);
    FUZZ_ASSERT(rc == 0 || rc == INV_EPROTO);
    inv_msg_destroy(&m);
    rc = inv_payload_decode(stream, slen, &p, e, sizeof(e));
    FUZZ_ASSERT(rc == 0 || rc == INV_EPROTO || rc == INV_ENOMEM);
    inv_payload_destroy(&p);
  }
  return 0;
}
