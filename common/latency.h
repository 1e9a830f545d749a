/*
 * A fixed-size latency histogram in microseconds for p50/p99/max figures.
 * Buckets are log-linear (16 sub-buckets per power of two), so a quantile
 * is within about 6% of the true value; memory is constant whatever the
 * number of samples. A zeroed inv_latency_t is empty and valid.
 */
#ifndef INV_LATENCY_H
#define INV_LATENCY_H

#include <stdint.h>

#define INV_LATENCY_BUCKETS (40 * 16)

typedef struct inv_latency_s {
  uint64_t count;
  uint64_t max_us;
  uint64_t sum_us;
  uint64_t buckets[INV_LATENCY_BUCKETS];
} inv_latency_t;

void inv_latency_record(inv_latency_t *h, uint64_t us);

/* Returns the q-quantile (0 < q <= 1) in microseconds, 0 when empty. */
uint64_t inv_latency_quantile(const inv_latency_t *h, double q);

void inv_latency_reset(inv_latency_t *h);

/* Adds every sample of src to dst, as if each had been recorded in dst:
 * per-thread histograms are merged this way into one whose quantiles are
 * those of all the samples together. */
void inv_latency_merge(inv_latency_t *dst, const inv_latency_t *src);

/* Monotonic clock in microseconds and wall clock in milliseconds. */
uint64_t inv_now_us(void);
uint64_t inv_wall_ms(void);

#endif
