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
 * Built two ways (tests/fuzz/fuzz.cmake): as a libFuzzer binary with clang
 * and INV_FUZZ=ON, and always, with -DINV_FUZZ_REPLAY, as a replay driver
 * whose main() runs every corpus file and then a fixed sequence of
 * pseudo-random mutations of them (the CTest test fuzz.codec_replay).
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "proto/codec.h"
#include "proto/codec_check.h"
#include "proto/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                     \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,   \
              #cond);                                                         \
      abort();                                                                \
    }                                                                         \
  } while (0)

static uint64_t rng_next(uint64_t *s) {
  /* xorshift64*: small, deterministic, good enough to pick sizes. */
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

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
  FUZZ_ASSERT(inv_event_parse(&u.data, rules, 0, &back, err, sizeof(err)) ==
              0);
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
      FUZZ_ASSERT(p.version == INV_PROTO_VERSION);
      FUZZ_ASSERT(strlen(p.id) < sizeof(p.id));
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
      uint64_t r = rng_next(&seed);
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

#ifdef INV_FUZZ_REPLAY
/*
 * The replay driver: runs every file of the corpus directory, then a fixed
 * number of deterministic mutations of them, so that CTest exercises the
 * same invariants on every build without libFuzzer.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>

#define REPLAY_MAX_INPUT 8192

/* In a sanitizer build, ASan by default fills the first 4 KiB of every
 * allocation and keeps 256 MiB of freed memory in quarantine; msgpack-c
 * allocates an 8 KiB zone per decode, so that filling dominated the run.
 * Neither affects what ASan detects here. This is ASan's documented hook
 * for defaults; options set in ASAN_OPTIONS still win. */
#if defined(__SANITIZE_ADDRESS__)
#define REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REPLAY_ASAN 1
#endif
#endif
#ifdef REPLAY_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "max_malloc_fill_size=0:quarantine_size_mb=16";
}
#endif
#ifndef INV_FUZZ_CORPUS_DIR
#define INV_FUZZ_CORPUS_DIR "tests/fuzz/corpus"
#endif

typedef struct {
  unsigned char *data;
  size_t len;
} input_t;

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads the regular files of dir in name order. Returns their count, or
 * -1 when dir cannot be read. */
static int load_corpus(const char *dir, input_t **out) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0;
  input_t *in;

  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof(*names));
      if (nn == NULL) abort();
      names = nn;
    }
    names[n] = strdup(e->d_name);
    if (names[n] == NULL) abort();
    n++;
  }
  closedir(d);
  if (n > 0) qsort(names, n, sizeof(*names), cmp_names);
  in = calloc(n ? n : 1, sizeof(*in));
  if (in == NULL) abort();
  size_t got = 0;
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    free(names[i]);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) continue;
    in[got].data = malloc(REPLAY_MAX_INPUT);
    if (in[got].data == NULL) abort();
    in[got].len = fread(in[got].data, 1, REPLAY_MAX_INPUT, fp);
    fclose(fp);
    got++;
  }
  free(names);
  *out = in;
  return (int)got;
}

static const unsigned char interesting[] = {
    0x00, 0x01, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x91, 0x93, 0x94, 0x9f,
    0xa0, 0xa4, 0xbf, 0xc0, 0xc1, 0xc2, 0xc4, 0xc5, 0xc6, 0xc7, 0xc9,
    0xca, 0xcb, 0xce, 0xcf, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc,
    0xdd, 0xde, 0xdf, 0xe0, 0xff};

/* Applies one random edit to buf[0..*len), keeping it within max. */
static void mutate(unsigned char *buf, size_t *len, size_t max,
                   const input_t *other, uint64_t *s) {
  uint64_t r = rng_next(s);
  size_t n = *len;
  size_t pos = n ? (size_t)(rng_next(s) % n) : 0;

  switch (r % 9) {
    case 0: /* flip a bit */
      if (n) buf[pos] ^= (unsigned char)(1u << ((r >> 8) & 7));
      break;
    case 1: /* an interesting header byte */
      if (n) buf[pos] = interesting[(r >> 8) % sizeof(interesting)];
      break;
    case 2: /* insert a byte */
      if (n < max) {
        memmove(buf + pos + 1, buf + pos, n - pos);
        buf[pos] = (unsigned char)(r >> 16);
        n++;
      }
      break;
    case 3: { /* delete a run */
      size_t k = 1 + (size_t)((r >> 8) % 8);
      if (pos + k > n) k = n - pos;
      memmove(buf + pos, buf + pos + k, n - pos - k);
      n -= k;
      break;
    }
    case 4: /* truncate */
      n = pos;
      break;
    case 5: /* a big length field: 0xff bytes */
      for (size_t i = pos; i < n && i < pos + 4; i++) buf[i] = 0xff;
      break;
    case 6: { /* duplicate a run elsewhere (pipelining, repeats) */
      unsigned char tmp[64];
      size_t k = 1 + (size_t)((r >> 8) % sizeof(tmp));
      size_t at = (size_t)((r >> 20) % (n + 1));
      if (n >= max || pos >= n) break;
      if (k > n - pos) k = n - pos;
      if (k > max - n) k = max - n;
      memcpy(tmp, buf + pos, k);
      memmove(buf + at + k, buf + at, n - at);
      memcpy(buf + at, tmp, k);
      n += k;
      break;
    }
    case 7: { /* splice in the tail of another input */
      size_t from = other->len ? (size_t)((r >> 8) % other->len) : 0;
      size_t k = other->len - from;
      if (pos + k > max) k = max - pos;
      memcpy(buf + pos, other->data + from, k);
      if (pos + k > n) n = pos + k;
      break;
    }
    default: /* small integer tweak: lengths and counts off by one */
      if (n) buf[pos] = (unsigned char)(buf[pos] + ((r >> 8) & 1 ? 1 : -1));
      break;
  }
  *len = n;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : INV_FUZZ_CORPUS_DIR;
  long iterations = argc > 2 ? atol(argv[2]) : 200000;
  input_t *corpus = NULL;
  unsigned char buf[REPLAY_MAX_INPUT];
  uint64_t s = 0x5EEDC0DEC0FFEEULL;
  struct timespec t0, t1;
  int n;

  n = load_corpus(dir, &corpus);
  if (n <= 0) {
    fprintf(stderr, "fuzz_codec_replay: no corpus files in %s\n", dir);
    free(corpus);
    return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < n; i++) LLVMFuzzerTestOneInput(corpus[i].data, corpus[i].len);
  for (long i = 0; i < iterations; i++) {
    const input_t *base = &corpus[rng_next(&s) % (uint64_t)n];
    const input_t *other = &corpus[rng_next(&s) % (uint64_t)n];
    size_t len = base->len;
    memcpy(buf, base->data, len);
    int edits = 1 + (int)(rng_next(&s) % 4);
    for (int k = 0; k < edits; k++) mutate(buf, &len, sizeof(buf), other, &s);
    LLVMFuzzerTestOneInput(buf, len);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("fuzz_codec_replay: %d corpus files, %ld mutations, %.2f s\n", n,
         iterations,
         (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  for (int i = 0; i < n; i++) free(corpus[i].data);
  free(corpus);
  return 0;
}
#endif
