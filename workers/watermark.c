/*
 * The completion watermark (see watermark.h): a ring of open entries,
 * indexed by sequence number modulo its capacity.
 */
#include <stdlib.h>

#include "common/base/check.h"
#include "inval/errors.h"
#include "workers/watermark.h"

#define SEQ_MASK ((UINT64_C(1) << INV_WATERMARK_SEQ_BITS) - 1)
#define GEN_MASK \
  ((UINT64_C(1) << (INV_WATERMARK_TAG_BITS - INV_WATERMARK_SEQ_BITS)) - 1)

typedef struct entry_s {
  inv_sid_t id;
  uint64_t seq;
  uint32_t outstanding; /* operations handed out, not yet done or failed */
  uint32_t failed;      /* operations failed, not yet re-issued */
} entry_t;

struct inv_watermark_s {
  entry_t *ring;
  size_t cap;
  uint64_t head, tail; /* sequence numbers: [head, tail) are open */
  uint64_t gen;
  uint64_t failed; /* sum of the entries' failed counts */
};

int inv_watermark_create(size_t cap, inv_watermark_t **out) {
  if (cap == 0 || cap > SEQ_MASK) return INV_EINVAL;
  inv_watermark_t *wm = calloc(1, sizeof(*wm));
  if (wm == NULL) return INV_ENOMEM;
  wm->ring = calloc(cap, sizeof(*wm->ring));
  if (wm->ring == NULL) {
    free(wm);
    return INV_ENOMEM;
  }
  wm->cap = cap;
  *out = wm;
  return 0;
}

void inv_watermark_destroy(inv_watermark_t *wm) {
  if (wm == NULL) return;
  free(wm->ring);
  free(wm);
}

int inv_watermark_add(inv_watermark_t *wm, inv_sid_t id, uint64_t *tag) {
  if (inv_watermark_full(wm)) return INV_EBUSY;
  uint64_t seq = wm->tail++;
  entry_t *e = &wm->ring[seq % wm->cap];
  e->id = id;
  e->seq = seq;
  e->outstanding = 1;
  e->failed = 0;
  *tag = ((wm->gen & GEN_MASK) << INV_WATERMARK_SEQ_BITS) | (seq & SEQ_MASK);
  return 0;
}

/* The open entry tag names, or NULL when tag is of an older generation or
 * names no open entry. The 48 bits of the tag are taken as a distance from
 * head (modulo 2^48), so a sequence that wrapped still finds its entry. */
static entry_t *lookup(inv_watermark_t *wm, uint64_t tag) {
  if ((tag >> INV_WATERMARK_SEQ_BITS) != (wm->gen & GEN_MASK)) return NULL;
  uint64_t dist = ((tag & SEQ_MASK) - (wm->head & SEQ_MASK)) & SEQ_MASK;
  if (dist >= wm->tail - wm->head) return NULL;
  entry_t *e = &wm->ring[(wm->head + dist) % wm->cap];
  INV_CHECK(e->seq == wm->head + dist);
  return e;
}

int inv_watermark_op_begin(inv_watermark_t *wm, uint64_t tag) {
  entry_t *e = lookup(wm, tag);
  if (e == NULL) return 0;
  INV_CHECK(e->outstanding < UINT32_MAX);
  e->outstanding++;
  return 1;
}

int inv_watermark_op_done(inv_watermark_t *wm, uint64_t tag) {
  entry_t *e = lookup(wm, tag);
  if (e == NULL) return 0;
  INV_CHECK(e->outstanding > 0);
  e->outstanding--;
  return 1;
}

int inv_watermark_op_failed(inv_watermark_t *wm, uint64_t tag) {
  entry_t *e = lookup(wm, tag);
  if (e == NULL) return 0;
  INV_CHECK(e->outstanding > 0);
  INV_CHECK(e->failed < UINT32_MAX);
  e->outstanding--;
  e->failed++;
  wm->failed++;
  return 1;
}

int inv_watermark_op_retry(inv_watermark_t *wm, uint64_t tag) {
  entry_t *e = lookup(wm, tag);
  if (e == NULL) return 0;
  INV_CHECK(e->failed > 0 && wm->failed > 0);
  INV_CHECK(e->outstanding < UINT32_MAX);
  e->failed--;
  wm->failed--;
  e->outstanding++;
  return 1;
}

size_t inv_watermark_advance(inv_watermark_t *wm, inv_sid_t *done) {
  size_t n = 0;
  while (wm->head < wm->tail) {
    const entry_t *e = &wm->ring[wm->head % wm->cap];
    if (e->outstanding > 0 || e->failed > 0) break;
    *done = e->id;
    wm->head++;
    n++;
  }
  return n;
}

size_t inv_watermark_open(const inv_watermark_t *wm) {
  return (size_t)(wm->tail - wm->head);
}

int inv_watermark_full(const inv_watermark_t *wm) {
  return wm->tail - wm->head >= wm->cap;
}

int inv_watermark_empty(const inv_watermark_t *wm) {
  return wm->tail == wm->head;
}

uint64_t inv_watermark_failed(const inv_watermark_t *wm) { return wm->failed; }

void inv_watermark_reset(inv_watermark_t *wm) {
  wm->head = wm->tail;
  wm->failed = 0;
  wm->gen++;
}

int inv__watermark_set_seq(inv_watermark_t *wm, uint64_t seq) {
  if (!inv_watermark_empty(wm)) return INV_EBUSY;
  wm->head = wm->tail = seq;
  return 0;
}
