/* Unit tests for workers/slot_map: ownership from a CLUSTER SLOTS reply
 * (built by hand, as hiredis would hand it over), importing slots from the
 * "myself" line of CLUSTER NODES (migrating ones are not imports), the
 * standalone map, gained slots, and malformed replies. */
#include "workers/slot_map.h"

#include <string.h>

#include "inval/errors.h"
#include "tests/unit/check.h"

#define MYID "07c37dfeb235213a872192d90877d0cd55635b91"
#define OTHER "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"

static redisReply pool[64];
static redisReply *ptrs[64];
static size_t used, pused;

static redisReply *num(long long v) {
  redisReply *r = &pool[used++];
  memset(r, 0, sizeof(*r));
  r->type = REDIS_REPLY_INTEGER;
  r->integer = v;
  return r;
}

static redisReply *str(const char *s) {
  redisReply *r = &pool[used++];
  memset(r, 0, sizeof(*r));
  r->type = REDIS_REPLY_STRING;
  r->str = (char *)s;
  r->len = strlen(s);
  return r;
}

static redisReply *arr(size_t n, redisReply **items) {
  redisReply *r = &pool[used++];
  memset(r, 0, sizeof(*r));
  r->type = REDIS_REPLY_ARRAY;
  r->elements = n;
  r->element = &ptrs[pused];
  for (size_t i = 0; i < n; i++) ptrs[pused++] = items[i];
  return r;
}

/* One CLUSTER SLOTS entry: lo hi [host port id]. */
static redisReply *range(long long lo, long long hi, const char *id) {
  redisReply *node =
      arr(3, (redisReply *[]){str("127.0.0.1"), num(7000), str(id)});
  return arr(3, (redisReply *[]){num(lo), num(hi), node});
}

static redisReply *slots_reply(void) {
  used = pused = 0;
  redisReply *a = range(0, 99, MYID), *b = range(100, 16282, OTHER),
             *c = range(16283, 16383, MYID);
  return arr(3, (redisReply *[]){a, b, c});
}

static const char nodes_text[] = OTHER
    " 127.0.0.1:7001@17001 master - 0 0 2 connected 100-16282 [7->-" MYID
    "]\n" MYID
    " 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-99 16283-16383"
    " [200-<-" OTHER "] [50->-" OTHER "] [16383-<-" OTHER "]\n";

static void test_owned_and_importing(void) {
  inv_slot_map_t m;
  CHECK_EQ_INT(inv_slot_map_from_cluster(&m, MYID, strlen(MYID), slots_reply(),
                                         nodes_text, strlen(nodes_text)),
               0);
  CHECK(m.cluster);
  CHECK_EQ_INT(m.nowned, 100 + 101);
  CHECK(inv_slot_map_owns(&m, 0) && inv_slot_map_owns(&m, 99));
  CHECK(!inv_slot_map_owns(&m, 100) && !inv_slot_map_owns(&m, 16282));
  CHECK(inv_slot_map_owns(&m, 16283) && inv_slot_map_owns(&m, 16383));
  /* Importing: the myself line's [slot-<-id] only; [50->-id] is a slot we
   * migrate away, and the other node's [7->-..] is not ours either. */
  CHECK_EQ_INT(m.nimporting, 2);
  CHECK(inv_slot_map_imports(&m, 200) && inv_slot_map_imports(&m, 16383));
  CHECK(!inv_slot_map_imports(&m, 50) && !inv_slot_map_imports(&m, 7));
  /* Migrating: the myself line's [slot->-id] only. */
  CHECK(inv_slot_map_migrates(&m, 50));
  CHECK(!inv_slot_map_migrates(&m, 7) && !inv_slot_map_migrates(&m, 200));
}

static void test_no_nodes_text(void) {
  inv_slot_map_t m;
  CHECK_EQ_INT(
      inv_slot_map_from_cluster(&m, MYID, strlen(MYID), slots_reply(), NULL, 0),
      0);
  CHECK_EQ_INT(m.nimporting, 0);
  CHECK_EQ_INT(m.nowned, 201);
  CHECK_EQ_INT(
      inv_slot_map_from_cluster(&m, "nobody", 6, slots_reply(), NULL, 0), 0);
  CHECK_EQ_INT(m.nowned, 0); /* a replica's id owns nothing */
}

static void test_standalone_and_gained(void) {
  inv_slot_map_t all, m, none;
  inv_slot_map_standalone(&all);
  CHECK(!all.cluster && all.nowned == INV_SLOTS);
  CHECK(inv_slot_map_owns(&all, 0) && inv_slot_map_owns(&all, INV_SLOTS - 1));
  CHECK_EQ_INT(
      inv_slot_map_from_cluster(&m, MYID, strlen(MYID), slots_reply(), NULL, 0),
      0);
  memset(&none, 0, sizeof(none));
  CHECK_EQ_INT(inv_slot_map_gained(&none, &m), 201);
  CHECK_EQ_INT(inv_slot_map_gained(&m, &m), 0);
  CHECK_EQ_INT(inv_slot_map_gained(&m, &all), INV_SLOTS - 201);
  CHECK_EQ_INT(inv_slot_map_gained(&all, &m), 0);
}

static void test_malformed(void) {
  inv_slot_map_t m;
  inv_slot_map_standalone(&m);
  used = pused = 0;
  redisReply *bad_range = arr(1, (redisReply *[]){range(10, 5, MYID)});
  CHECK_EQ_INT(
      inv_slot_map_from_cluster(&m, MYID, strlen(MYID), bad_range, NULL, 0),
      INV_EPROTO);
  used = pused = 0;
  redisReply *past = arr(1, (redisReply *[]){range(0, 16384, MYID)});
  CHECK_EQ_INT(inv_slot_map_from_cluster(&m, MYID, strlen(MYID), past, NULL, 0),
               INV_EPROTO);
  used = pused = 0;
  redisReply *short_entry =
      arr(1, (redisReply *[]){arr(2, (redisReply *[]){num(0), num(1)})});
  CHECK_EQ_INT(
      inv_slot_map_from_cluster(&m, MYID, strlen(MYID), short_entry, NULL, 0),
      INV_EPROTO);
  CHECK_EQ_INT(inv_slot_map_from_cluster(&m, MYID, strlen(MYID), NULL, NULL, 0),
               INV_EPROTO);
  CHECK(!m.cluster && m.nowned == INV_SLOTS); /* unchanged on error */
}

int main(void) {
  RUN(test_owned_and_importing);
  RUN(test_no_nodes_text);
  RUN(test_standalone_and_gained);
  RUN(test_malformed);
  return check_summary();
}
