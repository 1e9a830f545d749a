/* Unit tests for workers/watermark: the position that may be recorded as
 * applied moves over finished entries only, in log order, never over an
 * entry whose work failed until that work is re-issued and finished; stale
 * tags after a reset are ignored; capacity bounds the open entries; tags
 * survive the wrap of the 48-bit sequence; counters that would underflow
 * abort the process. */
#include "workers/watermark.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "inval/errors.h"
#include "tests/unit/check.h"

static inv_sid_t sid(uint64_t ms) { return (inv_sid_t){ms, 0}; }

static inv_watermark_t *make(size_t cap) {
  inv_watermark_t *wm = NULL;
  if (inv_watermark_create(cap, &wm) != 0) abort();
  return wm;
}

/* Adds entry ms with n operations begun (the hold released). */
static uint64_t add_ops(inv_watermark_t *wm, uint64_t ms, int n) {
  uint64_t tag = 0;
  CHECK_EQ_INT(inv_watermark_add(wm, sid(ms), &tag), 0);
  for (int i = 0; i < n; i++) CHECK_EQ_INT(inv_watermark_op_begin(wm, tag), 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, tag), 1); /* the hold */
  return tag;
}

static void test_create_rejects(void) {
  inv_watermark_t *wm = NULL;
  CHECK_EQ_INT(inv_watermark_create(0, &wm), INV_EINVAL);
  CHECK(wm == NULL);
  inv_watermark_destroy(NULL);
}

static void test_zero_ops_complete_at_once(void) {
  inv_watermark_t *wm = make(8);
  inv_sid_t done = sid(0);
  add_ops(wm, 10, 0);
  add_ops(wm, 11, 0);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 2);
  CHECK(inv_sid_cmp(done, sid(11)) == 0);
  CHECK(inv_watermark_empty(wm));
  /* Nothing more to close: done is left alone. */
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  CHECK(inv_sid_cmp(done, sid(11)) == 0);
  inv_watermark_destroy(wm);
}

static void test_hold_keeps_entry_open(void) {
  inv_watermark_t *wm = make(8);
  inv_sid_t done = sid(0);
  uint64_t tag;
  CHECK_EQ_INT(inv_watermark_add(wm, sid(5), &tag), 0);
  /* Still dispatching: the hold keeps the entry open. */
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  CHECK(inv_sid_is_zero(done));
  CHECK_EQ_INT(inv_watermark_op_done(wm, tag), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 1);
  CHECK(inv_sid_cmp(done, sid(5)) == 0);
  inv_watermark_destroy(wm);
}

static void test_in_order(void) {
  inv_watermark_t *wm = make(8);
  inv_sid_t done = sid(0);
  uint64_t a = add_ops(wm, 1, 2), b = add_ops(wm, 2, 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  CHECK_EQ_INT(inv_watermark_op_done(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 1);
  CHECK(inv_sid_cmp(done, sid(1)) == 0);
  CHECK_EQ_INT(inv_watermark_op_done(wm, b), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 1);
  CHECK(inv_sid_cmp(done, sid(2)) == 0);
  CHECK(inv_watermark_empty(wm));
  inv_watermark_destroy(wm);
}

static void test_out_of_order(void) {
  inv_watermark_t *wm = make(8);
  inv_sid_t done = sid(0);
  uint64_t a = add_ops(wm, 1, 1), b = add_ops(wm, 2, 1), c = add_ops(wm, 3, 1);
  /* Later entries finish first: done waits for the oldest. */
  CHECK_EQ_INT(inv_watermark_op_done(wm, c), 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, b), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  CHECK(inv_sid_is_zero(done));
  CHECK_EQ_INT(inv_watermark_open(wm), 3);
  CHECK_EQ_INT(inv_watermark_op_done(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 3);
  CHECK(inv_sid_cmp(done, sid(3)) == 0);
  inv_watermark_destroy(wm);
}

static void test_failed_blocks_until_retried(void) {
  inv_watermark_t *wm = make(8);
  inv_sid_t done = sid(0);
  uint64_t a = add_ops(wm, 1, 2), b = add_ops(wm, 2, 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_op_failed(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, b), 1);
  /* Nothing is outstanding, but a's work was skipped: neither a nor the
   * finished b behind it may be passed. */
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  CHECK(inv_sid_is_zero(done));
  CHECK_EQ_INT(inv_watermark_failed(wm), 1);
  /* Re-issued, and failing again: still blocked. */
  CHECK_EQ_INT(inv_watermark_op_retry(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_failed(wm), 0);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  CHECK_EQ_INT(inv_watermark_op_failed(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  /* Re-issued and done: both close. */
  CHECK_EQ_INT(inv_watermark_op_retry(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_failed(wm), 0);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 2);
  CHECK(inv_sid_cmp(done, sid(2)) == 0);
  inv_watermark_destroy(wm);
}

static void test_failed_later_entry_lets_earlier_pass(void) {
  inv_watermark_t *wm = make(8);
  inv_sid_t done = sid(0);
  uint64_t a = add_ops(wm, 1, 1), b = add_ops(wm, 2, 1), c = add_ops(wm, 3, 0);
  (void)c;
  CHECK_EQ_INT(inv_watermark_op_failed(wm, b), 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 1);
  CHECK(inv_sid_cmp(done, sid(1)) == 0); /* up to the failed one, not past */
  CHECK_EQ_INT(inv_watermark_open(wm), 2);
  inv_watermark_destroy(wm);
}

static void test_stale_tags_after_reset(void) {
  inv_watermark_t *wm = make(8);
  inv_sid_t done = sid(0);
  uint64_t old = add_ops(wm, 1, 1);
  uint64_t failed_old = add_ops(wm, 2, 1);
  CHECK_EQ_INT(inv_watermark_op_failed(wm, failed_old), 1);
  inv_watermark_reset(wm);
  CHECK(inv_watermark_empty(wm));
  CHECK_EQ_INT(inv_watermark_failed(wm), 0);
  uint64_t fresh = add_ops(wm, 1, 1);
  CHECK(fresh != old);
  /* Completions of the old generation count for nothing. */
  CHECK_EQ_INT(inv_watermark_op_done(wm, old), 0);
  CHECK_EQ_INT(inv_watermark_op_failed(wm, old), 0);
  CHECK_EQ_INT(inv_watermark_op_begin(wm, old), 0);
  CHECK_EQ_INT(inv_watermark_op_retry(wm, failed_old), 0);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  CHECK_EQ_INT(inv_watermark_op_done(wm, fresh), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 1);
  CHECK(inv_sid_cmp(done, sid(1)) == 0);
  /* A tag of an entry already closed is stale too. */
  CHECK_EQ_INT(inv_watermark_op_done(wm, fresh), 0);
  inv_watermark_destroy(wm);
}

static void test_capacity(void) {
  inv_watermark_t *wm = make(4);
  inv_sid_t done = sid(0);
  uint64_t tags[4], tag = 0;
  for (int i = 0; i < 4; i++) {
    CHECK(!inv_watermark_full(wm));
    tags[i] = add_ops(wm, (uint64_t)i + 1, 1);
  }
  CHECK(inv_watermark_full(wm));
  CHECK_EQ_INT(inv_watermark_add(wm, sid(9), &tag), INV_EBUSY);
  CHECK_EQ_INT(inv_watermark_open(wm), 4);
  /* Finishing the last does not free room: the head is still open. */
  CHECK_EQ_INT(inv_watermark_op_done(wm, tags[3]), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  CHECK(inv_watermark_full(wm));
  CHECK_EQ_INT(inv_watermark_op_done(wm, tags[0]), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 1);
  CHECK(!inv_watermark_full(wm));
  /* The freed slot is reused; the old entries' tags still hit their own. */
  uint64_t e = add_ops(wm, 5, 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, tags[0]), 0);
  CHECK_EQ_INT(inv_watermark_op_done(wm, tags[1]), 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, tags[2]), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 3);
  CHECK(inv_sid_cmp(done, sid(4)) == 0);
  CHECK_EQ_INT(inv_watermark_op_done(wm, e), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 1);
  CHECK(inv_sid_cmp(done, sid(5)) == 0);
  inv_watermark_destroy(wm);
}

static void test_sequence_wrap(void) {
  inv_watermark_t *wm = make(4);
  inv_sid_t done = sid(0);
  uint64_t mask = (UINT64_C(1) << INV_WATERMARK_SEQ_BITS) - 1;
  CHECK_EQ_INT(inv__watermark_set_seq(wm, mask - 1), 0);
  uint64_t a = add_ops(wm, 1, 1), b = add_ops(wm, 2, 1), c = add_ops(wm, 3, 1);
  /* The third entry's 48-bit sequence wrapped to 0. */
  CHECK_EQ_INT(c & mask, 0);
  CHECK_EQ_INT(inv_watermark_op_done(wm, c), 1);
  CHECK_EQ_INT(inv_watermark_op_done(wm, b), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 0);
  CHECK_EQ_INT(inv_watermark_op_done(wm, a), 1);
  CHECK_EQ_INT(inv_watermark_advance(wm, &done), 3);
  CHECK(inv_sid_cmp(done, sid(3)) == 0);
  /* After the wrap, a reset still tells the generations apart. */
  uint64_t d = add_ops(wm, 4, 1);
  inv_watermark_reset(wm);
  CHECK_EQ_INT(inv_watermark_op_done(wm, d), 0);
  CHECK_EQ_INT(inv__watermark_set_seq(wm, 7), 0);
  add_ops(wm, 5, 0);
  CHECK_EQ_INT(inv__watermark_set_seq(wm, 9), INV_EBUSY);
  inv_watermark_destroy(wm);
}

/* Runs fn in a child and returns 1 when it died of SIGABRT. */
static int aborts(void (*fn)(void)) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    /* The child's message is expected; keep the test output readable. */
    if (freopen("/dev/null", "w", stderr) == NULL) _exit(3);
    fn();
    _exit(0);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return 0;
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void done_twice(void) {
  inv_watermark_t *wm = make(4);
  uint64_t t = add_ops(wm, 1, 0); /* only the hold, released */
  uint64_t t2 = add_ops(wm, 2, 1);
  inv_watermark_op_done(wm, t2);
  inv_watermark_op_done(wm, t2); /* underflow */
  (void)t;
}

static void retry_without_failure(void) {
  inv_watermark_t *wm = make(4);
  uint64_t t = add_ops(wm, 1, 1);
  inv_watermark_op_retry(wm, t);
}

static void fail_without_op(void) {
  inv_watermark_t *wm = make(4);
  uint64_t t = add_ops(wm, 1, 1);
  inv_watermark_op_done(wm, t);
  inv_watermark_op_failed(wm, t);
}

static void test_underflow_aborts(void) {
  CHECK(aborts(done_twice));
  CHECK(aborts(retry_without_failure));
  CHECK(aborts(fail_without_op));
}

int main(void) {
  RUN(test_create_rejects);
  RUN(test_zero_ops_complete_at_once);
  RUN(test_hold_keeps_entry_open);
  RUN(test_in_order);
  RUN(test_out_of_order);
  RUN(test_failed_blocks_until_retried);
  RUN(test_failed_later_entry_lets_earlier_pass);
  RUN(test_stale_tags_after_reset);
  RUN(test_capacity);
  RUN(test_sequence_wrap);
  RUN(test_underflow_aborts);
  return check_summary();
}
