/*
 * Log-linear latency histogram. Values below 16 us get one bucket each;
 * above, every power of two [2^e, 2^(e+1)) is split into 16 equal
 * sub-buckets, so a bucket is at most 1/16 of its lower bound wide and the
 * midpoint we report is within about 3% (always under 6.25%) of any value
 * in it. 640 buckets cover values up to 2^43 us (about 100 days); larger
 * values land in the last bucket and are still exact in max_us.
 */
#include "common/base/latency.h"

#include <string.h>
#include <time.h>

#define SUB_BITS 4
#define SUB_COUNT (1u << SUB_BITS)

/* Returns the bucket index for a value in microseconds. */
static unsigned latency_bucket(uint64_t us) {
  if (us < SUB_COUNT) return (unsigned)us;
  unsigned e = 63u - (unsigned)__builtin_clzll(us); /* floor(log2(us)) >= 4 */
  unsigned sub = (unsigned)(us >> (e - SUB_BITS)) & (SUB_COUNT - 1);
  unsigned idx = (e - SUB_BITS + 1) * SUB_COUNT + sub;
  return idx < INV_LATENCY_BUCKETS ? idx : INV_LATENCY_BUCKETS - 1;
}

/* Sets [*lo, *hi] to the inclusive range of values that fall in bucket. */
static void latency_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi) {
  if (idx < SUB_COUNT) {
    *lo = *hi = idx;
    return;
  }
  unsigned e = idx / SUB_COUNT + SUB_BITS - 1;
  uint64_t sub = idx % SUB_COUNT;
  uint64_t width = (uint64_t)1 << (e - SUB_BITS);
  *lo = ((uint64_t)1 << e) + sub * width;
  *hi = *lo + width - 1;
}

void inv_latency_record(inv_latency_t *h, uint64_t us) {
  h->count++;
  h->sum_us += us;
  if (us > h->max_us) h->max_us = us;
  h->buckets[latency_bucket(us)]++;
}

uint64_t inv_latency_quantile(const inv_latency_t *h, double q) {
  if (h->count == 0) return 0;
  if (!(q > 0.0)) q = 0.0;
  if (q >= 1.0) return h->max_us;
  /* The rank of the sample we want, 1-based: ceil(q * count). */
  double want = q * (double)h->count;
  uint64_t rank = (uint64_t)want;
  if ((double)rank < want) rank++;
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < INV_LATENCY_BUCKETS; i++) {
    seen += h->buckets[i];
    if (seen >= rank) {
      uint64_t lo, hi;
      latency_bucket_range(i, &lo, &hi);
      uint64_t mid = lo + (hi - lo) / 2;
      return mid < h->max_us ? mid : h->max_us;
    }
  }
  return h->max_us;
}

void inv_latency_reset(inv_latency_t *h) { memset(h, 0, sizeof(*h)); }

void inv_latency_merge(inv_latency_t *dst, const inv_latency_t *src) {
  dst->count += src->count;
  dst->sum_us += src->sum_us;
  if (src->max_us > dst->max_us) dst->max_us = src->max_us;
  for (unsigned i = 0; i < INV_LATENCY_BUCKETS; i++)
    dst->buckets[i] += src->buckets[i];
}

const uint64_t inv_hist_bounds_us[INV_HIST_NBOUNDS] = {
    100,     250,     500,     1000,     2500,     5000,
    10000,   25000,   50000,   100000,   250000,   500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000};

void inv_hist_record(inv_hist_t *h, uint64_t us) {
  h->count++;
  h->sum_us += us;
  /* Few bounds, and most samples fall in the first ones: a linear search
   * is as fast as a binary one here. */
  for (unsigned i = 0; i < INV_HIST_NBOUNDS; i++) {
    if (us <= inv_hist_bounds_us[i]) {
      h->buckets[i]++;
      return;
    }
  }
}

void inv_latency_window_record(inv_latency_window_t *w, uint64_t now_us,
                               uint64_t us) {
  uint64_t epoch = now_us / INV_LATENCY_SLOT_US + 1;
  unsigned i = (unsigned)(epoch % INV_LATENCY_WINDOW_SLOTS);
  if (w->epoch[i] != epoch) {
    /* The slot held samples from a full window ago: start it afresh. */
    inv_latency_reset(&w->slot[i]);
    w->epoch[i] = epoch;
  }
  inv_latency_record(&w->slot[i], us);
}

void inv_latency_window_get(const inv_latency_window_t *w, uint64_t now_us,
                            inv_latency_t *out) {
  uint64_t epoch = now_us / INV_LATENCY_SLOT_US + 1;
  inv_latency_reset(out);
  for (unsigned i = 0; i < INV_LATENCY_WINDOW_SLOTS; i++) {
    if (w->epoch[i] != 0 && w->epoch[i] <= epoch &&
        epoch - w->epoch[i] < INV_LATENCY_WINDOW_SLOTS)
      inv_latency_merge(out, &w->slot[i]);
  }
}

void inv_latency_observe(inv_latency_obs_t *o, uint64_t now_us, uint64_t us) {
  inv_hist_record(&o->hist, us);
  inv_latency_window_record(&o->recent, now_us, us);
}

uint64_t inv_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t inv_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
