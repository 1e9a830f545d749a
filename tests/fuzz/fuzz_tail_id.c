/*
 * Fuzz target for inv_payload_tail_id, the worker's shortcut that reads a
 * broadcast's id from its last bytes to skip duplicates without a decode.
 *
 * Invariants:
 *   - on arbitrary bytes it answers 0 or -1; an answer is 1 to 47 NUL-free
 *     bytes that are exactly the input's last bytes, behind a str header
 *     of that length and the key "id";
 *   - on a payload packed the way the log script packs it (a map whose last
 *     pair is "id" and a stream id), built from the input's bytes, it finds
 *     exactly that id whatever the fields before it hold.
 */
#include <msgpack.h>
#include <stdint.h>
#include <string.h>

#include "proto/event.h"
#include "tests/fuzz/fuzz.h"

static int sbuf_write(void *data, const char *buf, size_t len) {
  return msgpack_sbuffer_write(data, buf, len);
}

static void check_answer(const char *in, size_t size) {
  char out[48];
  int rc;
  memset(out, 'x', sizeof(out));
  rc = inv_payload_tail_id(in, size, out);
  FUZZ_ASSERT(rc == 0 || rc == -1);
  if (rc == 0) {
    size_t n = strnlen(out, sizeof(out));
    FUZZ_ASSERT(n >= 1 && n <= 47);
    FUZZ_ASSERT(size >= n + 4);
    FUZZ_ASSERT(memcmp(out, in + size - n, n) == 0);
    FUZZ_ASSERT(memchr(in + size - n, '\0', n) == NULL);
  }
}

/* Packs {"v":1, "x": <input bytes>, "ts":..., "events":[], "id": ID} with
 * ID a stream id made of the input's first bytes (digits and one '-'). */
static void check_packed(const uint8_t *data, size_t size) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  char id[48], out[48];
  size_t idlen = 1 + (size > 0 ? data[0] % 41 : 0);
  for (size_t i = 0; i < idlen; i++) {
    unsigned char c = i + 1 < size ? data[i + 1] : (unsigned char)i;
    id[i] = (char)('0' + c % 10);
  }
  if (idlen > 2 && size > 1) id[1 + data[1] % (idlen - 2)] = '-';
  id[idlen] = '\0';

  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, sbuf_write);
  msgpack_pack_map(&pk, 5);
  msgpack_pack_str_with_body(&pk, "v", 1);
  msgpack_pack_uint64(&pk, 1);
  msgpack_pack_str_with_body(&pk, "x", 1);
  msgpack_pack_str_with_body(&pk, data, size); /* any bytes before the id */
  msgpack_pack_str_with_body(&pk, "ts", 2);
  msgpack_pack_uint64(&pk, size);
  msgpack_pack_str_with_body(&pk, "events", 6);
  msgpack_pack_array(&pk, 0);
  msgpack_pack_str_with_body(&pk, "id", 2);
  msgpack_pack_str_with_body(&pk, id, idlen);
  FUZZ_ASSERT(inv_payload_tail_id(sb.data, sb.size, out) == 0);
  FUZZ_ASSERT(strcmp(out, id) == 0);
  check_answer(sb.data, sb.size);
  msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_answer((const char *)data, size);
  check_packed(data, size);
  return 0;
}
