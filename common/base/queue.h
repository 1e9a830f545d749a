/*
 * An intrusive doubly linked queue, in the style of libuv's queue.h.
 *
 * A queue is a circular list around a head node: an element embeds an
 * inv_queue_t node and is found again from it with INV_QUEUE_DATA. Nothing
 * here allocates, so linking and unlinking cannot fail, and an element can
 * sit on several queues at once through several nodes.
 *
 *   typedef struct job_s { int id; inv_queue_t node; } job_t;
 *   inv_queue_t jobs;
 *   inv_queue_init(&jobs);
 *   inv_queue_insert_tail(&jobs, &job->node);
 *   for (inv_queue_t *q = inv_queue_head(&jobs); q != NULL; ...)
 *
 * Contracts:
 * - A head must be initialised with inv_queue_init before any other call.
 * - An element's node is either on one queue or unlinked. A node that was
 *   zeroed (calloc) or initialised, or that inv_queue_remove took off its
 *   queue, is unlinked; removing an unlinked node does nothing, so
 *   inv_queue_linked tells whether an element is queued without a flag of
 *   its own.
 * - Inserting a node that is already on a queue corrupts both queues: it
 *   is a bug in the caller, and INV_CHECK aborts on it.
 * - inv_queue_head/_tail/_next return NULL at the end, never the head
 *   node, so an element pointer is never made from the head by mistake.
 * - INV_QUEUE_FOREACH allows removing (and freeing) the current element,
 *   not any other one. A loop whose body may run arbitrary callbacks (which
 *   may remove other elements) takes the head again on every turn instead,
 *   or moves the whole queue aside first with inv_queue_move.
 */
#ifndef INV_QUEUE_H
#define INV_QUEUE_H

#include <stddef.h>

#include "common/base/check.h"

typedef struct inv_queue_s {
  struct inv_queue_s *next;
  struct inv_queue_s *prev;
} inv_queue_t;

/* The element of type `type` whose member `field` (an inv_queue_t) is at
 * ptr. The conditional never evaluates its second operand; it is there so
 * that a ptr that is not an inv_queue_t *, or a field that is not an
 * inv_queue_t, is a compile error rather than a silent bad cast. */
#define INV_QUEUE_DATA(ptr, type, field)                        \
  ((type *)(void *)((char *)(1 ? (ptr) : &((type *)0)->field) - \
                    offsetof(type, field)))

/* Iterates q over the nodes of queue h, front to back, keeping the next
 * node in n so that the body may remove (and free) q's element. */
#define INV_QUEUE_FOREACH(q, n, h) \
  for ((q) = (h)->next, (n) = (q)->next; (q) != (h); (q) = (n), (n) = (q)->next)

/* Makes h an empty queue, or q an unlinked node. */
static inline void inv_queue_init(inv_queue_t *h) {
  h->next = h;
  h->prev = h;
}

static inline int inv_queue_empty(const inv_queue_t *h) { return h->next == h; }

/* Whether node q is on a queue (see the contracts above). */
static inline int inv_queue_linked(const inv_queue_t *q) {
  return q->next != NULL && q->next != q;
}

/* The first node of h, or NULL when h is empty. */
static inline inv_queue_t *inv_queue_head(const inv_queue_t *h) {
  return h->next != h ? h->next : NULL;
}

/* The last node of h, or NULL when h is empty. */
static inline inv_queue_t *inv_queue_tail(const inv_queue_t *h) {
  return h->prev != h ? h->prev : NULL;
}

/* The node after q on queue h, or NULL when q is the last one. */
static inline inv_queue_t *inv_queue_next(const inv_queue_t *h,
                                          const inv_queue_t *q) {
  return q->next != h ? q->next : NULL;
}

/* The node before q on queue h, or NULL when q is the first one. */
static inline inv_queue_t *inv_queue_prev(const inv_queue_t *h,
                                          const inv_queue_t *q) {
  return q->prev != h ? q->prev : NULL;
}

static inline void inv_queue_insert_head(inv_queue_t *h, inv_queue_t *q) {
  INV_CHECK(!inv_queue_linked(q));
  q->next = h->next;
  q->prev = h;
  q->next->prev = q;
  h->next = q;
}

static inline void inv_queue_insert_tail(inv_queue_t *h, inv_queue_t *q) {
  INV_CHECK(!inv_queue_linked(q));
  q->next = h;
  q->prev = h->prev;
  q->prev->next = q;
  h->prev = q;
}

/* Takes q off its queue and leaves it unlinked; does nothing when q is on
 * no queue. */
static inline void inv_queue_remove(inv_queue_t *q) {
  if (!inv_queue_linked(q)) return;
  q->prev->next = q->next;
  q->next->prev = q->prev;
  inv_queue_init(q);
}

/* Takes the first node off h and returns it, or NULL when h is empty. */
static inline inv_queue_t *inv_queue_pop(inv_queue_t *h) {
  inv_queue_t *q = inv_queue_head(h);
  if (q != NULL) inv_queue_remove(q);
  return q;
}

/* Moves every node of h, in order, to the empty queue n and leaves h
 * empty. n must not be on h. */
static inline void inv_queue_move(inv_queue_t *h, inv_queue_t *n) {
  INV_CHECK(inv_queue_empty(n));
  if (inv_queue_empty(h)) return;
  n->next = h->next;
  n->prev = h->prev;
  n->next->prev = n;
  n->prev->next = n;
  inv_queue_init(h);
}

#endif
