/* Unit tests for common/latency: bucket accuracy, quantiles, reset, merge
 * and the clocks. */
#include "common/base/latency.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/unit/check.h"

static int within(uint64_t got, double want, double tolerance) {
  double d = (double)got - want;
  if (d < 0) d = -d;
  return d <= want * tolerance + 0.5;
}

static void test_empty(void) {
  inv_latency_t h;
  memset(&h, 0, sizeof(h));
  CHECK_EQ_INT(inv_latency_quantile(&h, 0.5), 0);
  CHECK_EQ_INT(inv_latency_quantile(&h, 0.99), 0);
  CHECK_EQ_INT(inv_latency_quantile(&h, 1.0), 0);
  CHECK_EQ_INT(h.count, 0);
}

static void test_small_values_exact(void) {
  inv_latency_t h = {0};
  for (uint64_t v = 0; v < 16; v++) inv_latency_record(&h, v);
  CHECK_EQ_INT(h.count, 16);
  CHECK_EQ_INT(h.max_us, 15);
  CHECK_EQ_INT(h.sum_us, 120);
  CHECK_EQ_INT(inv_latency_quantile(&h, 1.0 / 16), 0);
  CHECK_EQ_INT(inv_latency_quantile(&h, 0.5), 7);
  CHECK_EQ_INT(inv_latency_quantile(&h, 1.0), 15);
  /* Values up to 31 have one bucket each too. */
  inv_latency_reset(&h);
  inv_latency_record(&h, 17);
  CHECK_EQ_INT(inv_latency_quantile(&h, 0.5), 17);
}

static void test_single_values(void) {
  /* A histogram holding one value reports it within 6% at any quantile. */
  uint64_t values[] = {1,       5,         16,         31,
                       32,      33,        100,        999,
                       1000,    12345,     65535,      65536,
                       1000000, 123456789, 1ull << 40, (1ull << 43) - 1};
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    inv_latency_t h = {0};
    inv_latency_record(&h, values[i]);
    uint64_t p50 = inv_latency_quantile(&h, 0.5);
    CHECK(within(p50, (double)values[i], 0.0625));
    CHECK(p50 <= values[i]); /* clamped to max */
    CHECK_EQ_INT(inv_latency_quantile(&h, 1.0), values[i]);
    CHECK_EQ_INT(h.max_us, values[i]);
  }
}

static void test_uniform(void) {
  inv_latency_t h = {0};
  for (uint64_t v = 1; v <= 100000; v++) inv_latency_record(&h, v);
  CHECK_EQ_INT(h.count, 100000);
  CHECK_EQ_INT(h.max_us, 100000);
  CHECK(within(inv_latency_quantile(&h, 0.5), 50000, 0.06));
  CHECK(within(inv_latency_quantile(&h, 0.9), 90000, 0.06));
  CHECK(within(inv_latency_quantile(&h, 0.99), 99000, 0.06));
  CHECK(within(inv_latency_quantile(&h, 0.001), 100, 0.06));
  CHECK_EQ_INT(inv_latency_quantile(&h, 1.0), 100000);
  /* Out-of-range q is clamped rather than trusted. */
  CHECK_EQ_INT(inv_latency_quantile(&h, 2.0), 100000);
  CHECK(inv_latency_quantile(&h, 0.0) <= 1);
}

static void test_random_quantiles(void) {
  /* Log-uniform samples over 1 us .. 10 s, compared with the sorted truth. */
  enum { N = 20000 };
  static uint64_t samples[N];
  inv_latency_t h = {0};
  srand(7);
  for (int i = 0; i < N; i++) {
    int shift = rand() % 23;
    uint64_t v = (1ull << shift) + (uint64_t)rand() % (1ull << shift);
    samples[i] = v;
    inv_latency_record(&h, v);
  }
  /* Insertion sort would be slow; a counting pass per quantile is enough. */
  double qs[] = {0.5, 0.9, 0.99, 0.999};
  for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
    uint64_t est = inv_latency_quantile(&h, qs[k]);
    size_t below = 0, at_or_below = 0;
    for (int i = 0; i < N; i++) {
      if (samples[i] < est * 0.94) below++;
      if (samples[i] <= est * 1.06) at_or_below++;
    }
    /* The estimate is within 6% of the sample at rank q*N: at most q*N
     * samples lie clearly below it and at least q*N at or near it. */
    CHECK(below <= (size_t)(qs[k] * N));
    CHECK(at_or_below >= (size_t)(qs[k] * N));
  }
}

static void test_huge_and_reset(void) {
  inv_latency_t h = {0};
  inv_latency_record(&h, UINT64_MAX / 4);
  inv_latency_record(&h, 10);
  CHECK_EQ_INT(h.count, 2);
  CHECK(h.max_us == UINT64_MAX / 4);
  CHECK_EQ_INT(inv_latency_quantile(&h, 0.5), 10);
  CHECK(inv_latency_quantile(&h, 1.0) == UINT64_MAX / 4);
  CHECK(inv_latency_quantile(&h, 0.99) > 0);
  inv_latency_reset(&h);
  CHECK_EQ_INT(h.count, 0);
  CHECK_EQ_INT(h.max_us, 0);
  CHECK_EQ_INT(h.sum_us, 0);
  uint64_t total = 0;
  for (int i = 0; i < INV_LATENCY_BUCKETS; i++) total += h.buckets[i];
  CHECK_EQ_INT(total, 0);
  CHECK_EQ_INT(inv_latency_quantile(&h, 0.5), 0);
}

static void test_merge(void) {
  /* Two halves merged answer like one histogram of every sample. */
  inv_latency_t a = {0}, b = {0}, whole = {0};
  for (uint64_t v = 1; v <= 10000; v++) {
    inv_latency_record(v % 2 ? &a : &b, v * 3);
    inv_latency_record(&whole, v * 3);
  }
  inv_latency_merge(&a, &b);
  CHECK(memcmp(&a, &whole, sizeof(a)) == 0);
  /* Merging an empty histogram changes nothing; into an empty one copies. */
  inv_latency_t empty = {0}, copy = {0};
  inv_latency_merge(&a, &empty);
  CHECK(memcmp(&a, &whole, sizeof(a)) == 0);
  inv_latency_merge(&copy, &whole);
  CHECK(memcmp(&copy, &whole, sizeof(copy)) == 0);
  CHECK_EQ_INT(inv_latency_quantile(&copy, 1.0), 30000);
}

static void test_clocks(void) {
  uint64_t a = inv_now_us();
  struct timespec ts = {0, 2000000};
  nanosleep(&ts, NULL);
  uint64_t b = inv_now_us();
  CHECK(b >= a + 1500);
  CHECK(b - a < 5000000);
  uint64_t w = inv_wall_ms();
  uint64_t t = (uint64_t)time(NULL);
  CHECK(w / 1000 >= t - 1 && w / 1000 <= t + 1);
}

/* Bucket edges are inclusive (le), values past the last bound count only
 * in count (+Inf), and sum is exact. */
static void test_hist_buckets(void) {
  static inv_hist_t h;
  memset(&h, 0, sizeof(h));
  inv_hist_record(&h, 0);
  inv_hist_record(&h, 100);      /* le 0.0001 */
  inv_hist_record(&h, 101);      /* le 0.00025 */
  inv_hist_record(&h, 1000000);  /* le 1 */
  inv_hist_record(&h, 61000000); /* +Inf only */
  CHECK_EQ_INT(h.count, 5);
  CHECK(h.sum_us == 0 + 100 + 101 + 1000000 + 61000000);
  CHECK_EQ_INT(h.buckets[0], 2);
  CHECK_EQ_INT(h.buckets[1], 1);
  CHECK_EQ_INT(h.buckets[12], 1);
  CHECK(inv_hist_bounds_us[12] == 1000000);
  uint64_t in_bounds = 0;
  for (unsigned i = 0; i < INV_HIST_NBOUNDS; i++) {
    in_bounds += h.buckets[i];
    if (i > 0) CHECK(inv_hist_bounds_us[i] > inv_hist_bounds_us[i - 1]);
  }
  CHECK_EQ_INT(in_bounds, 4);
}

/* The window forgets samples older than its span and keeps recent ones. */
static void test_window_slides(void) {
  static inv_latency_window_t w;
  inv_latency_t got;
  const uint64_t slot = INV_LATENCY_SLOT_US;
  uint64_t t0 = 1000 * slot;
  memset(&w, 0, sizeof(w));
  inv_latency_window_get(&w, t0, &got);
  CHECK_EQ_INT(got.count, 0);
  for (int i = 0; i < 100; i++) inv_latency_window_record(&w, t0, 7000000);
  inv_latency_window_record(&w, t0 + 2 * slot, 300);
  inv_latency_window_get(&w, t0 + 2 * slot, &got);
  CHECK_EQ_INT(got.count, 101);
  CHECK_EQ_INT(got.max_us, 7000000);
  /* One full window after the burst, only the later sample is left. */
  inv_latency_window_get(&w, t0 + INV_LATENCY_WINDOW_SLOTS * slot, &got);
  CHECK_EQ_INT(got.count, 1);
  CHECK_EQ_INT(got.max_us, 300);
  /* A slot reused a window later starts afresh. */
  inv_latency_window_record(&w, t0 + INV_LATENCY_WINDOW_SLOTS * slot, 50);
  inv_latency_window_get(&w, t0 + INV_LATENCY_WINDOW_SLOTS * slot, &got);
  CHECK_EQ_INT(got.count, 2);
  CHECK_EQ_INT(inv_latency_quantile(&got, 1.0), 300);
  /* Long idle: empty. */
  inv_latency_window_get(&w, t0 + 100 * slot, &got);
  CHECK_EQ_INT(got.count, 0);
}

int main(void) {
  RUN(test_empty);
  RUN(test_small_values_exact);
  RUN(test_single_values);
  RUN(test_uniform);
  RUN(test_random_quantiles);
  RUN(test_huge_and_reset);
  RUN(test_merge);
  RUN(test_clocks);
  RUN(test_hist_buckets);
  RUN(test_window_slides);
  return check_summary();
}
