/* Unit tests for proto/heartbeat: the record round trip, and the length
 * checks that keep a hostile value of cache:invalidation:workers from
 * costing an allocation its bytes cannot justify. */
#include "proto/heartbeat.h"

#include <stdlib.h>
#include <string.h>

#include "common/base/buf.h"
#include "inval/errors.h"
#include "tests/unit/check.h"

static int sbuf_write(void *data, const char *buf, size_t len) {
  return msgpack_sbuffer_write(data, buf, len);
}

static int is_zero(const inv_heartbeat_t *hb) {
  static const inv_heartbeat_t zero;
  return memcmp(hb, &zero, sizeof(zero)) == 0;
}

static void test_round_trip(void) {
  inv_heartbeat_t hb, back;
  inv_buf_t buf;
  memset(&hb, 0, sizeof(hb));
  strcpy(hb.id, "w1");
  strcpy(hb.node, "127.0.0.1:7001");
  strcpy(hb.role, "primary");
  strcpy(hb.last_id, "17-4");
  hb.lag_ms = 3;
  hb.behind = 9;
  hb.ts_ms = 1732518000999ull;
  hb.ttl_ms = 15000;
  memset(&buf, 0, sizeof(buf));
  CHECK_EQ_INT(inv_heartbeat_encode(&hb, &buf), 0);
  memset(&back, 0x5a, sizeof(back));
  CHECK_EQ_INT(inv_heartbeat_decode(buf.data, buf.len, &back), 0);
  CHECK_EQ_STR(back.id, "w1");
  CHECK_EQ_STR(back.node, "127.0.0.1:7001");
  CHECK_EQ_STR(back.role, "primary");
  CHECK_EQ_STR(back.last_id, "17-4");
  CHECK(back.lag_ms == 3 && back.behind == 9 &&
        back.ts_ms == 1732518000999ull && back.ttl_ms == 15000);
  /* A record without the optional keys (as older workers write it) has
   * eight entries and decodes with them empty. */
  CHECK_EQ_INT((unsigned char)buf.data[0], 0x88);
  CHECK_EQ_STR(back.instance, "");
  CHECK_EQ_INT(back.has_health, 0);
  inv_buf_free(&buf);
}

/* The optional instance and health summary travel and come back. */
static void test_round_trip_health(void) {
  inv_heartbeat_t hb, back;
  inv_buf_t buf;
  memset(&hb, 0, sizeof(hb));
  strcpy(hb.id, "w2");
  strcpy(hb.instance, "box/4242/9f86d081884c7d65");
  hb.has_health = 1;
  hb.health.up = 1;
  hb.health.cluster_state_ok = 1;
  hb.health.slots_fail = 3;
  hb.health.used_memory = 1u << 20;
  hb.health.maxmemory = 1u << 30;
  hb.health.evicted_keys = 5;
  hb.health.keyspace_hits = 70;
  hb.health.keyspace_misses = 30;
  hb.health.connected_clients = 12;
  hb.health.fragmentation = 1.25;
  memset(&buf, 0, sizeof(buf));
  CHECK_EQ_INT(inv_heartbeat_encode(&hb, &buf), 0);
  CHECK_EQ_INT((unsigned char)buf.data[0], 0x8a);
  CHECK(buf.len < 1000);
  CHECK_EQ_INT(inv_heartbeat_decode(buf.data, buf.len, &back), 0);
  CHECK_EQ_STR(back.instance, "box/4242/9f86d081884c7d65");
  CHECK_EQ_INT(back.has_health, 1);
  CHECK(memcmp(&back.health, &hb.health, sizeof(hb.health)) == 0);
  inv_buf_free(&buf);
}

/* A "health" that is not a map is ignored; a ratio that is not a finite
 * positive number reads as 0 and a huge one is clamped. */
static void test_health_hostile(void) {
  inv_heartbeat_t hb;
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, sbuf_write);
  msgpack_pack_map(&pk, 2);
  msgpack_pack_str_with_body(&pk, "id", 2);
  msgpack_pack_str_with_body(&pk, "w", 1);
  msgpack_pack_str_with_body(&pk, "health", 6);
  msgpack_pack_array(&pk, 1);
  msgpack_pack_uint64(&pk, 1);
  CHECK_EQ_INT(inv_heartbeat_decode(sb.data, sb.size, &hb), 0);
  CHECK_EQ_STR(hb.id, "w");
  CHECK_EQ_INT(hb.has_health, 0);
  for (int i = 0; i < 2; i++) {
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "health", 6);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "mem_fragmentation_ratio", 23);
    msgpack_pack_double(&pk, i == 0 ? 0.0 / 0.0 : 1e300);
    msgpack_pack_str_with_body(&pk, "slots_fail", 10);
    msgpack_pack_uint64(&pk, 7);
    CHECK_EQ_INT(inv_heartbeat_decode(sb.data, sb.size, &hb), 0);
    CHECK_EQ_INT(hb.has_health, 1);
    CHECK(hb.health.slots_fail == 7);
    CHECK(hb.health.fragmentation == (i == 0 ? 0.0 : INV_HEARTBEAT_FRAG_MAX));
  }
  msgpack_sbuffer_destroy(&sb);
}

/* Declared sizes that the bytes cannot hold are refused before msgpack-c
 * sees them; the record is zeroed. */
static void test_huge_headers(void) {
  static const struct {
    const char *data;
    size_t len;
  } bad[] = {
      {"\xdd\xff\xff\xff\xff", 5},            /* array32 of 2^32-1 */
      {"\xdf\xff\xff\xff\xff", 5},            /* map32 */
      {"\xc6\xff\xff\xff\xff", 5},            /* bin32 of 4 GiB */
      {"\xdb\xff\xff\xff\xff", 5},            /* str32 */
      {"\x81\xa2id\xdd\xff\xff\xff\xff", 9},  /* inside a record */
      {"\x81\xa2id\xc6\x00\x00\x00\x09x", 9}, /* 9 bytes promised, 1 given */
      {"\xc1", 1},                            /* never valid */
      {"\x80\x80", 2},                        /* two objects */
      {"", 0},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    inv_heartbeat_t hb;
    memset(&hb, 0x5a, sizeof(hb));
    CHECK_EQ_INT(inv_heartbeat_decode(bad[i].data, bad[i].len, &hb),
                 INV_EPROTO);
    CHECK(is_zero(&hb));
  }
}

static void test_deep_and_long(void) {
  inv_heartbeat_t hb;
  size_t n = 100000;
  char *deep = malloc(n + 5);
  CHECK(deep != NULL);
  memcpy(deep, "\x81\xa2id", 4);
  memset(deep + 4, 0x91, n);
  deep[n + 4] = (char)0xc0;
  CHECK_EQ_INT(inv_heartbeat_decode(deep, n + 5, &hb), INV_EPROTO);
  CHECK(is_zero(&hb));
  free(deep);

  /* A well-formed record over INV_HEARTBEAT_MAX_BYTES is refused too, and
   * one just under it is read (strings truncated to their fields). */
  msgpack_sbuffer sb;
  msgpack_packer pk;
  for (int over = 0; over <= 1; over++) {
    size_t idlen = INV_HEARTBEAT_MAX_BYTES - 16 + (size_t)over * 17;
    char *id = malloc(idlen);
    CHECK(id != NULL);
    memset(id, 'w', idlen);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, sbuf_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_str_with_body(&pk, id, idlen);
    msgpack_pack_str_with_body(&pk, "ts_ms", 5);
    msgpack_pack_uint64(&pk, 7);
    CHECK_EQ_INT(sb.size > INV_HEARTBEAT_MAX_BYTES, over);
    CHECK_EQ_INT(inv_heartbeat_decode(sb.data, sb.size, &hb),
                 over ? INV_EPROTO : 0);
    if (!over) {
      CHECK_EQ_INT(strlen(hb.id), sizeof(hb.id) - 1);
      CHECK(hb.ts_ms == 7);
    }
    msgpack_sbuffer_destroy(&sb);
    free(id);
  }
}

/* Numbers sent as floats are clamped, never converted out of range. */
static void test_float_numbers(void) {
  inv_heartbeat_t hb;
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, sbuf_write);
  msgpack_pack_map(&pk, 4);
  msgpack_pack_str_with_body(&pk, "ts_ms", 5);
  msgpack_pack_double(&pk, 1e30);
  msgpack_pack_str_with_body(&pk, "lag_ms", 6);
  msgpack_pack_double(&pk, -5.0);
  msgpack_pack_str_with_body(&pk, "ttl_ms", 6);
  msgpack_pack_double(&pk, 1500.9);
  msgpack_pack_str_with_body(&pk, "behind", 6);
  msgpack_pack_double(&pk, 0.0 / 0.0);
  CHECK_EQ_INT(inv_heartbeat_decode(sb.data, sb.size, &hb), 0);
  CHECK(hb.ts_ms == UINT64_MAX && hb.lag_ms == 0 && hb.ttl_ms == 1500 &&
        hb.behind == 0);
  msgpack_sbuffer_destroy(&sb);
}

int main(void) {
  RUN(test_round_trip);
  RUN(test_round_trip_health);
  RUN(test_health_hostile);
  RUN(test_huge_headers);
  RUN(test_deep_and_long);
  RUN(test_float_numbers);
  return check_summary();
}
