/*
 * Unit tests for the intake state machine (workers/intake.c), driven by
 * scripted facts: the operations record what the machine asked for.
 */
#include <string.h>

#include "check.h"
#include "inval/errors.h"
#include "workers/intake.h"

/* What the machine asked for, as the fake operations saw it. */
typedef struct rec_s {
  int subscribes[INV_LOG_SHARDS];
  int reads;
  unsigned read_shard;
  uint64_t read_gen;
  int read_pending;
  inv_sid_t read_after;
  size_t read_count;
  int acks;
  inv_sid_t acked[16];
  size_t nacked;
  int dropped;
  int busy;
} rec_t;

static rec_t rec;

static int f_subscribe(void *ctx, unsigned shard) {
  (void)ctx;
  rec.subscribes[shard]++;
  return 0;
}

static int f_read(void *ctx, unsigned shard, uint64_t gen, int pending,
                  inv_sid_t after, size_t count) {
  (void)ctx;
  rec.reads++;
  rec.read_shard = shard;
  rec.read_gen = gen;
  rec.read_pending = pending;
  rec.read_after = after;
  rec.read_count = count;
  return 0;
}

static void f_ack(void *ctx, unsigned shard, const inv_sid_t *ids, size_t n) {
  (void)ctx;
  (void)shard;
  rec.acks++;
  for (size_t i = 0; i < n && rec.nacked < 16; i++)
    rec.acked[rec.nacked++] = ids[i];
}

static void f_dropped(void *ctx, unsigned shard) {
  (void)ctx;
  (void)shard;
  rec.dropped++;
}

static int f_busy(void *ctx) {
  (void)ctx;
  return rec.busy;
}

static inv_sid_t sid(uint64_t ms) { return (inv_sid_t){ms, 0}; }
static const inv_sid_t zero = {0, 0};

static inv_intake_t *make(size_t page, size_t cap) {
  inv_intake_ops_t ops = {NULL, f_subscribe, f_read, f_ack, f_dropped, f_busy};
  inv_intake_t *in = NULL;
  memset(&rec, 0, sizeof(rec));
  CHECK_EQ_INT(inv_intake_create(&ops, page, cap, "test", &in), 0);
  return in;
}

static void want(inv_intake_t *in, int shard) {
  uint8_t w[INV_LOG_SHARDS / 8] = {0};
  if (shard >= 0) w[shard / 8] = (uint8_t)(1u << (shard % 8));
  inv_intake_set_wanted(in, w);
}

/* Attaches shard 3 and reads it to LIVE with no pending entries. */
static void to_live(inv_intake_t *in) {
  inv_intake_hints_up(in);
  want(in, 3);
  inv_intake_subscribed(in, 3, 1);
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_OK, 0, zero);
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_OK, 0, zero);
}

static void test_subscribe_then_pending_then_new(void) {
  inv_intake_t *in = make(10, 100);
  uint64_t t1, t2;
  inv_intake_hints_up(in);
  want(in, 3);
  /* Subscribe first: no read before the subscription is confirmed. */
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_SUBSCRIBING);
  CHECK_EQ_INT(rec.subscribes[3], 1);
  CHECK_EQ_INT(rec.reads, 0);
  inv_intake_subscribed(in, 3, 1);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_PENDING);
  CHECK_EQ_INT(rec.reads, 1);
  CHECK_EQ_INT(rec.read_pending, 1);
  CHECK(inv_sid_is_zero(rec.read_after));
  CHECK_EQ_INT(rec.read_count, 10);
  /* Two pending entries: the next pending page starts after the last. */
  uint64_t gen = rec.read_gen;
  CHECK_EQ_INT(inv_intake_open(in, 3, gen, sid(1), &t1), 0);
  CHECK_EQ_INT(inv_intake_open(in, 3, gen, sid(2), &t2), 0);
  CHECK_EQ_INT(INV_INTAKE_TAG_SHARD(t1), 3);
  /* Ids must grow within a shard. */
  uint64_t t0;
  CHECK_EQ_INT(inv_intake_open(in, 3, gen, sid(2), &t0), INV_EBUSY);
  inv_intake_read_done(in, 3, gen, INV_READ_OK, 2, sid(2));
  CHECK_EQ_INT(rec.reads, 2);
  CHECK_EQ_INT(rec.read_pending, 1);
  CHECK(inv_sid_cmp(rec.read_after, sid(2)) == 0);
  CHECK_EQ_INT(rec.read_count, 10); /* a page: the room left is larger */
  inv_intake_read_done(in, 3, gen, INV_READ_OK, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_NEW);
  CHECK_EQ_INT(rec.read_pending, 0);
  inv_intake_read_done(in, 3, gen, INV_READ_OK, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_LIVE);
  CHECK_EQ_INT(inv_intake_live(in), 1);
  /* Completion out of order: nothing is acknowledged past an open entry. */
  CHECK_EQ_INT(inv_intake_op_done(in, t2), 1);
  CHECK_EQ_INT(rec.acks, 0);
  CHECK_EQ_INT(inv_intake_op_done(in, t1), 1);
  CHECK_EQ_INT(rec.nacked, 2);
  CHECK(inv_sid_cmp(rec.acked[0], sid(1)) == 0);
  CHECK(inv_sid_cmp(rec.acked[1], sid(2)) == 0);
  CHECK(inv_sid_cmp(inv_intake_acked(in, 3), sid(2)) == 0);
  CHECK(inv_sid_cmp(inv_intake_last_acked(in), sid(2)) == 0);
  /* A shard that left no longer counts. */
  want(in, -1);
  CHECK(inv_sid_is_zero(inv_intake_last_acked(in)));
  inv_intake_destroy(in);
}

static void test_hints(void) {
  inv_intake_t *in = make(10, 100);
  to_live(in);
  int reads = rec.reads;
  inv_intake_hint(in, 3);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_NEW);
  CHECK_EQ_INT(rec.reads, reads + 1);
  /* A hint during the read makes one more read follow it, even after a
   * short page. */
  inv_intake_hint(in, 3);
  inv_intake_hint(in, 3);
  CHECK_EQ_INT(rec.reads, reads + 1);
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_OK, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_NEW);
  CHECK_EQ_INT(rec.reads, reads + 2);
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_OK, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_LIVE);
  /* Hints of a shard not consumed here change nothing. */
  inv_intake_hint(in, 4);
  CHECK_EQ_INT(inv_intake_state(in, 4), INV_SHARD_OFF);
  CHECK_EQ_INT(rec.reads, reads + 2);
  inv_intake_destroy(in);
}

static void test_failed_work_is_replayed(void) {
  inv_intake_t *in = make(10, 100);
  uint64_t t;
  to_live(in);
  inv_intake_hint(in, 3);
  uint64_t gen = rec.read_gen;
  CHECK_EQ_INT(inv_intake_open(in, 3, gen, sid(5), &t), 0);
  inv_intake_read_done(in, 3, gen, INV_READ_OK, 1, sid(5));
  CHECK_EQ_INT(inv_intake_op_begin(in, t), 1);
  CHECK_EQ_INT(inv_intake_op_done(in, t), 1); /* the hold */
  CHECK_EQ_INT(inv_intake_op_failed(in, t), 1);
  /* The entry stays open and is never acknowledged. */
  CHECK_EQ_INT(rec.acks, 0);
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_OK, 0, zero);
  int reads = rec.reads;
  inv_intake_tick(in, 0);
  /* The tick drops the open work and reads the pending entries again. */
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_PENDING);
  CHECK_EQ_INT(rec.reads, reads + 1);
  CHECK_EQ_INT(rec.read_pending, 1);
  CHECK(inv_sid_is_zero(rec.read_after));
  CHECK(rec.read_gen != gen);
  CHECK_EQ_INT(inv_intake_replays(in), 1);
  /* Completions of the dropped work are stale. */
  CHECK_EQ_INT(inv_intake_op_begin(in, t), 0);
  CHECK_EQ_INT(rec.acks, 0);
  /* The entry comes back as pending and, done this time, is acknowledged. */
  CHECK_EQ_INT(inv_intake_open(in, 3, gen, sid(5), &t),
               INV_EBUSY); /* stale gen */
  CHECK_EQ_INT(inv_intake_open(in, 3, rec.read_gen, sid(5), &t), 0);
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_OK, 1, sid(5));
  CHECK_EQ_INT(inv_intake_op_done(in, t), 1);
  CHECK_EQ_INT(rec.nacked, 1);
  CHECK(inv_sid_cmp(rec.acked[0], sid(5)) == 0);
  inv_intake_destroy(in);
}

static void test_leave_and_stale_replies(void) {
  inv_intake_t *in = make(10, 100);
  uint64_t t;
  to_live(in);
  inv_intake_hint(in, 3);
  uint64_t gen = rec.read_gen;
  want(in, -1);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_OFF);
  CHECK_EQ_INT(inv_intake_attached(in), 0);
  CHECK(rec.dropped >= 1);
  /* The read sent before the shard left is ignored. */
  CHECK_EQ_INT(inv_intake_open(in, 3, gen, sid(9), &t), INV_EBUSY);
  inv_intake_read_done(in, 3, gen, INV_READ_OK, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_OFF);
  /* Coming back subscribes again and starts from the pending entries. */
  int subs = rec.subscribes[3];
  want(in, 3);
  CHECK_EQ_INT(rec.subscribes[3], subs + 1);
  inv_intake_subscribed(in, 3, 1);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_PENDING);
  /* A stream answered from another node makes the shard leave. */
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_MOVED, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_OFF);
  inv_intake_destroy(in);
}

static void test_backpressure_and_room(void) {
  inv_intake_t *in = make(4, 4);
  uint64_t t[4];
  to_live(in);
  rec.busy = 1;
  int reads = rec.reads;
  inv_intake_hint(in, 3);
  CHECK_EQ_INT(rec.reads, reads); /* due, not sent */
  rec.busy = 0;
  inv_intake_resume(in);
  CHECK_EQ_INT(rec.reads, reads + 1);
  /* A full page fills the watermark: the next read waits for room. */
  for (int i = 0; i < 4; i++)
    CHECK_EQ_INT(
        inv_intake_open(in, 3, rec.read_gen, sid(10 + (uint64_t)i), &t[i]), 0);
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_OK, 4, sid(13));
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_NEW);
  CHECK_EQ_INT(rec.reads, reads + 1);
  CHECK_EQ_INT(inv_intake_op_done(in, t[0]), 1);
  CHECK_EQ_INT(rec.reads, reads + 2);
  CHECK_EQ_INT(rec.read_count, 1);
  inv_intake_destroy(in);
}

static void test_empty_shard_and_failures(void) {
  inv_intake_t *in = make(10, 100);
  inv_intake_hints_up(in);
  want(in, 7);
  inv_intake_subscribed(in, 7, 1);
  inv_intake_read_done(in, 7, rec.read_gen, INV_READ_EMPTY, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 7), INV_SHARD_LIVE);
  int reads = rec.reads;
  /* A shard with no stream is read by the periodic read only, not by the
   * read of unsubscribed shards on every tick. */
  inv_intake_hints_down(in);
  inv_intake_tick(in, 0);
  CHECK_EQ_INT(rec.reads, reads);
  inv_intake_tick(in, 1);
  CHECK_EQ_INT(rec.reads, reads + 1);
  /* With nothing open, the periodic read starts from the pending entries
   * (another reader's dropped deliveries). */
  CHECK_EQ_INT(rec.read_pending, 1);
  CHECK_EQ_INT(inv_intake_state(in, 7), INV_SHARD_PENDING);
  inv_intake_read_done(in, 7, rec.read_gen, INV_READ_EMPTY, 0, zero);
  inv_intake_hints_up(in);
  inv_intake_subscribed(in, 7, 1);
  CHECK_EQ_INT(inv_intake_state(in, 7), INV_SHARD_NEW); /* subscribed again */
  inv_intake_read_done(in, 7, rec.read_gen, INV_READ_EMPTY, 0, zero);
  reads = rec.reads;
  inv_intake_hint(in, 7);
  CHECK_EQ_INT(rec.reads, reads + 1);
  /* A failed read is sent again by the tick, not at once. */
  inv_intake_read_done(in, 7, rec.read_gen, INV_READ_FAILED, 0, zero);
  CHECK_EQ_INT(rec.reads, reads + 1);
  inv_intake_tick(in, 0);
  CHECK_EQ_INT(rec.reads, reads + 2);
  /* A refused subscription still leads to reading, and the tick reads a
   * live shard that has no subscription. */
  inv_intake_read_done(in, 7, rec.read_gen, INV_READ_OK, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 7), INV_SHARD_LIVE);
  inv_intake_hints_down(in);
  reads = rec.reads;
  inv_intake_tick(in, 0);
  CHECK_EQ_INT(rec.reads, reads + 1);
  inv_intake_destroy(in);
}

/* The stream is made (and its hint heard) while a read that will find no
 * stream is out: the hint must not be lost to the "no stream yet" answer. */
static void test_hint_during_empty_read(void) {
  inv_intake_t *in = make(10, 100);
  to_live(in);
  inv_intake_tick(in, 1); /* the periodic read, from the pending entries */
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_PENDING);
  int reads = rec.reads;
  inv_intake_hint(in, 3);
  CHECK_EQ_INT(rec.reads, reads); /* one read at a time */
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_EMPTY, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_NEW);
  CHECK_EQ_INT(rec.reads, reads + 1);
  CHECK_EQ_INT(rec.read_pending, 0);
  /* The same while reading new entries. */
  inv_intake_hint(in, 3);
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_EMPTY, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_NEW);
  CHECK_EQ_INT(rec.reads, reads + 2);
  /* Without a hint, no stream means nothing to read. */
  inv_intake_read_done(in, 3, rec.read_gen, INV_READ_EMPTY, 0, zero);
  CHECK_EQ_INT(inv_intake_state(in, 3), INV_SHARD_LIVE);
  CHECK_EQ_INT(rec.reads, reads + 2);
  inv_intake_destroy(in);
}

static void test_no_hint_connection(void) {
  inv_intake_t *in = make(10, 100);
  uint8_t w[INV_LOG_SHARDS / 8] = {0};
  w[1] = 0x02; /* shard 9 */
  inv_intake_set_wanted(in, w);
  CHECK_EQ_INT(inv_intake_state(in, 9), INV_SHARD_SUBSCRIBING);
  CHECK_EQ_INT(rec.subscribes[9], 0);
  inv_intake_tick(in, 0);
  CHECK_EQ_INT(inv_intake_state(in, 9), INV_SHARD_PENDING);
  CHECK_EQ_INT(rec.reads, 1);
  /* Once the connection is up the shard is subscribed. */
  inv_intake_hints_up(in);
  CHECK_EQ_INT(rec.subscribes[9], 1);
  CHECK(inv_intake_transitions(in) >= 2);
  inv_intake_destroy(in);
}

int main(void) {
  test_subscribe_then_pending_then_new();
  test_hints();
  test_failed_work_is_replayed();
  test_leave_and_stale_replies();
  test_backpressure_and_room();
  test_empty_shard_and_failures();
  test_hint_during_empty_read();
  test_no_hint_connection();
  return check_summary();
}
