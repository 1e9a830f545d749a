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

/*
 * A Prometheus histogram of durations: fixed bucket bounds in seconds,
 * suited to sub-millisecond through tens of seconds, and counts that only
 * grow, so Prometheus computes quantiles over any range it likes with
 * histogram_quantile(q, rate(..._bucket[5m])). A zeroed inv_hist_t is empty
 * and valid. buckets[i] counts the samples in (bound[i-1], bound[i]]; the
 * samples above the last bound are count minus their sum (le="+Inf").
 */
#define INV_HIST_NBOUNDS 18

/* The upper bounds in microseconds, ascending: 100 us .. 60 s. */
extern const uint64_t inv_hist_bounds_us[INV_HIST_NBOUNDS];

typedef struct inv_hist_s {
  uint64_t count;
  uint64_t sum_us;
  uint64_t buckets[INV_HIST_NBOUNDS];
} inv_hist_t;

void inv_hist_record(inv_hist_t *h, uint64_t us);

/*
 * Percentiles over a sliding window, for the `stats` method: the samples of
 * the last INV_LATENCY_WINDOW_SLOTS slots of INV_LATENCY_SLOT_US each (the
 * current slot included), so a burst of old samples, such as a catch-up
 * after downtime, leaves the figures within 30 s. A zeroed window is empty.
 */
#define INV_LATENCY_WINDOW_SLOTS 6
#define INV_LATENCY_SLOT_US 5000000u

typedef struct inv_latency_window_s {
  uint64_t epoch[INV_LATENCY_WINDOW_SLOTS]; /* slot number + 1; 0 = unused */
  inv_latency_t slot[INV_LATENCY_WINDOW_SLOTS];
} inv_latency_window_t;

/* Records us, taken at now_us (inv_now_us()). */
void inv_latency_window_record(inv_latency_window_t *w, uint64_t now_us,
                               uint64_t us);

/* Sets *out to the merge of the slots that are still in the window at
 * now_us. */
void inv_latency_window_get(const inv_latency_window_t *w, uint64_t now_us,
                            inv_latency_t *out);

/* What a daemon keeps for one duration: the lifetime histogram for
 * /metrics and the sliding window for `stats`. A zeroed one is empty. */
typedef struct inv_latency_obs_s {
  inv_hist_t hist;
  inv_latency_window_t recent;
} inv_latency_obs_t;

void inv_latency_observe(inv_latency_obs_t *o, uint64_t now_us, uint64_t us);

/* Monotonic clock in microseconds and wall clock in milliseconds. */
uint64_t inv_now_us(void);
uint64_t inv_wall_ms(void);

#endif
