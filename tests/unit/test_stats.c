/* Unit tests for common/stats: msgpack packing and Prometheus text. */
#include "common/base/stats.h"

#include <msgpack.h>
#include <stddef.h>
#include <string.h>

#include "tests/unit/check.h"

typedef struct {
  uint64_t events_acked;
  uint64_t clients;
  uint64_t big;
} test_values_t;

static const inv_stat_desc_t desc[] = {
    {"events_acked", INV_STAT_COUNTER, offsetof(test_values_t, events_acked),
     "Events acknowledged to clients."},
    {"clients", INV_STAT_GAUGE, offsetof(test_values_t, clients),
     "Connected clients."},
    {"big", INV_STAT_COUNTER, offsetof(test_values_t, big),
     "A help text with a \\ backslash\nand a newline."},
};

static void test_pack(void) {
  test_values_t v = {7, 3, UINT64_MAX};
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 4);
  inv_stats_pack(&pk, desc, 3, &v);
  msgpack_pack_str(&pk, 4);
  msgpack_pack_str_body(&pk, "role", 4);
  msgpack_pack_str(&pk, 7);
  msgpack_pack_str_body(&pk, "primary", 7);

  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  int rc = msgpack_unpack_next(&up, sb.data, sb.size, &off);
  CHECK_EQ_INT(rc, MSGPACK_UNPACK_SUCCESS);
  CHECK_EQ_INT(off, sb.size);
  msgpack_object o = up.data;
  CHECK_EQ_INT(o.type, MSGPACK_OBJECT_MAP);
  CHECK_EQ_INT(o.via.map.size, 4);
  const char *names[] = {"events_acked", "clients", "big"};
  uint64_t want[] = {7, 3, UINT64_MAX};
  for (uint32_t i = 0; i < 3 && i < o.via.map.size; i++) {
    msgpack_object_kv *kv = &o.via.map.ptr[i];
    CHECK_EQ_INT(kv->key.type, MSGPACK_OBJECT_STR);
    CHECK(kv->key.via.str.size == strlen(names[i]) &&
          memcmp(kv->key.via.str.ptr, names[i], kv->key.via.str.size) == 0);
    CHECK_EQ_INT(kv->val.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    CHECK(kv->val.via.u64 == want[i]);
  }
  msgpack_unpacked_destroy(&up);
  msgpack_sbuffer_destroy(&sb);
}

static void test_pack_zero(void) {
  test_values_t v = {0, 0, 0};
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  inv_stats_pack(&pk, desc, 0, &v);
  CHECK_EQ_INT(sb.size, 0);
  inv_stats_pack(&pk, desc, 1, &v);
  /* fixstr(12) "events_acked" then positive fixint 0 */
  CHECK_EQ_INT(sb.size, 14);
  CHECK_EQ_INT((unsigned char)sb.data[0], 0xa0 | 12);
  CHECK_EQ_INT((unsigned char)sb.data[13], 0);
  msgpack_sbuffer_destroy(&sb);
}

static void test_prometheus(void) {
  test_values_t v = {7, 3, 18446744073709551615ull};
  inv_buf_t out = {0};
  CHECK_EQ_INT(inv_stats_prometheus(&out, "inval_publisher", desc, 3, &v), 0);
  const char *want =
      "# HELP inval_publisher_events_acked_total Events acknowledged to "
      "clients.\n"
      "# TYPE inval_publisher_events_acked_total counter\n"
      "inval_publisher_events_acked_total 7\n"
      "# HELP inval_publisher_clients Connected clients.\n"
      "# TYPE inval_publisher_clients gauge\n"
      "inval_publisher_clients 3\n"
      "# HELP inval_publisher_big_total A help text with a \\\\ "
      "backslash\\nand "
      "a newline.\n"
      "# TYPE inval_publisher_big_total counter\n"
      "inval_publisher_big_total 18446744073709551615\n";
  CHECK_EQ_STR(out.data, want);
  CHECK_EQ_INT(out.len, strlen(want));
  /* Appends after what the buffer holds. */
  CHECK_EQ_INT(inv_stats_prometheus(&out, "x", desc + 1, 1, &v), 0);
  CHECK(strstr(out.data, "\nx_clients 3\n") != NULL);
  CHECK(strncmp(out.data, want, strlen(want)) == 0);
  inv_buf_free(&out);
}

static void test_labelled(void) {
  inv_buf_t out = {0};
  CHECK_EQ_INT(inv_stats_prometheus_labelled(&out, "inval_publisher", "errors",
                                             INV_STAT_COUNTER, "Errors sent.",
                                             "code", "EBUSY", 3, 1),
               0);
  CHECK_EQ_INT(inv_stats_prometheus_labelled(&out, "inval_publisher", "errors",
                                             INV_STAT_COUNTER, "Errors sent.",
                                             "code", "EINVAL", 0, 0),
               0);
  CHECK_EQ_INT(inv_stats_prometheus_labelled(&out, "inval_worker", "role",
                                             INV_STAT_GAUGE, "Role.", "role",
                                             "a\"b\\c\nd", 1, 1),
               0);
  const char *want =
      "# HELP inval_publisher_errors_total Errors sent.\n"
      "# TYPE inval_publisher_errors_total counter\n"
      "inval_publisher_errors_total{code=\"EBUSY\"} 3\n"
      "inval_publisher_errors_total{code=\"EINVAL\"} 0\n"
      "# HELP inval_worker_role Role.\n"
      "# TYPE inval_worker_role gauge\n"
      "inval_worker_role{role=\"a\\\"b\\\\c\\nd\"} 1\n";
  CHECK_EQ_STR(out.data, want);
  inv_buf_free(&out);
}

int main(void) {
  RUN(test_pack);
  RUN(test_pack_zero);
  RUN(test_prometheus);
  RUN(test_labelled);
  return check_summary();
}
