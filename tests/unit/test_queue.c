/* Unit tests for common/base/queue.h: order of insertion at both ends, removal
 * anywhere (and twice), iteration that frees as it goes, moving a whole
 * queue, and an element on two queues at once. */
#include "common/base/queue.h"

#include <stdlib.h>

#include "tests/unit/check.h"

typedef struct elem_s {
  int id;
  inv_queue_t node;
  inv_queue_t other; /* a second queue the element may also be on */
} elem_t;

/* Writes the ids of h's elements, front to back, into ids (at most max);
 * returns how many there are. Walks backwards too and checks that both
 * directions agree, so a broken prev link fails as well. */
static size_t ids_of(const inv_queue_t *h, int *ids, size_t max) {
  size_t n = 0, back = 0;
  for (const inv_queue_t *q = inv_queue_head(h); q != NULL;
       q = inv_queue_next(h, q)) {
    if (n < max) ids[n] = INV_QUEUE_DATA(q, const elem_t, node)->id;
    n++;
  }
  for (const inv_queue_t *q = inv_queue_tail(h); q != NULL;
       q = inv_queue_prev(h, q)) {
    back++;
    CHECK(back <= n &&
          INV_QUEUE_DATA(q, const elem_t, node)->id == ids[n - back]);
  }
  CHECK_EQ_INT(back, n);
  return n;
}

static void test_empty(void) {
  inv_queue_t h;
  inv_queue_init(&h);
  CHECK(inv_queue_empty(&h));
  CHECK(inv_queue_head(&h) == NULL);
  CHECK(inv_queue_tail(&h) == NULL);
  CHECK(inv_queue_pop(&h) == NULL);
  /* A zeroed node (an element from calloc) is unlinked, and removing it
   * does nothing. */
  elem_t e = {0};
  CHECK(!inv_queue_linked(&e.node));
  inv_queue_remove(&e.node);
  CHECK(!inv_queue_linked(&e.node));
  CHECK(inv_queue_empty(&h));
}

static void test_order(void) {
  inv_queue_t h;
  elem_t e[4] = {{.id = 1}, {.id = 2}, {.id = 3}, {.id = 4}};
  int ids[8];
  inv_queue_init(&h);
  inv_queue_insert_tail(&h, &e[1].node);
  inv_queue_insert_tail(&h, &e[2].node);
  inv_queue_insert_head(&h, &e[0].node);
  inv_queue_insert_tail(&h, &e[3].node);
  CHECK_EQ_INT(ids_of(&h, ids, 8), 4);
  for (int i = 0; i < 4; i++) CHECK_EQ_INT(ids[i], i + 1);
  CHECK(inv_queue_head(&h) == &e[0].node);
  CHECK(inv_queue_tail(&h) == &e[3].node);
  CHECK(inv_queue_next(&h, &e[3].node) == NULL);
  CHECK(inv_queue_prev(&h, &e[0].node) == NULL);
  for (int i = 0; i < 4; i++) CHECK(inv_queue_linked(&e[i].node));
}

static void test_remove(void) {
  inv_queue_t h;
  elem_t e[3] = {{.id = 1}, {.id = 2}, {.id = 3}};
  int ids[8];
  inv_queue_init(&h);
  for (int i = 0; i < 3; i++) inv_queue_insert_tail(&h, &e[i].node);
  /* The middle one goes; removing it again changes nothing. */
  inv_queue_remove(&e[1].node);
  CHECK(!inv_queue_linked(&e[1].node));
  inv_queue_remove(&e[1].node);
  CHECK_EQ_INT(ids_of(&h, ids, 8), 2);
  CHECK_EQ_INT(ids[0], 1);
  CHECK_EQ_INT(ids[1], 3);
  /* A removed node can be queued again, here at the front. */
  inv_queue_insert_head(&h, &e[1].node);
  CHECK_EQ_INT(ids_of(&h, ids, 8), 3);
  CHECK_EQ_INT(ids[0], 2);
  /* Popping takes from the front until nothing is left. */
  CHECK(inv_queue_pop(&h) == &e[1].node);
  CHECK(inv_queue_pop(&h) == &e[0].node);
  CHECK(inv_queue_pop(&h) == &e[2].node);
  CHECK(inv_queue_pop(&h) == NULL);
  CHECK(inv_queue_empty(&h));
  for (int i = 0; i < 3; i++) CHECK(!inv_queue_linked(&e[i].node));
}

/* The foreach keeps the next node, so the body may free the current
 * element: the odd ones are freed here, the even ones must survive. */
static void test_foreach_frees(void) {
  inv_queue_t h, *q, *n;
  int ids[16];
  inv_queue_init(&h);
  for (int i = 0; i < 10; i++) {
    elem_t *e = calloc(1, sizeof(*e));
    if (e == NULL) return;
    e->id = i;
    inv_queue_insert_tail(&h, &e->node);
  }
  INV_QUEUE_FOREACH(q, n, &h) {
    elem_t *e = INV_QUEUE_DATA(q, elem_t, node);
    if (e->id % 2 == 1) {
      inv_queue_remove(q);
      free(e);
    }
  }
  CHECK_EQ_INT(ids_of(&h, ids, 16), 5);
  for (int i = 0; i < 5; i++) CHECK_EQ_INT(ids[i], 2 * i);
  /* Then all of them, through the same loop. */
  INV_QUEUE_FOREACH(q, n, &h) {
    inv_queue_remove(q);
    free(INV_QUEUE_DATA(q, elem_t, node));
  }
  CHECK(inv_queue_empty(&h));
}

static void test_move(void) {
  inv_queue_t h, aside;
  elem_t e[3] = {{.id = 1}, {.id = 2}, {.id = 3}};
  int ids[8];
  inv_queue_init(&h);
  inv_queue_init(&aside);
  /* Moving an empty queue leaves both empty. */
  inv_queue_move(&h, &aside);
  CHECK(inv_queue_empty(&h) && inv_queue_empty(&aside));
  for (int i = 0; i < 3; i++) inv_queue_insert_tail(&h, &e[i].node);
  inv_queue_move(&h, &aside);
  CHECK(inv_queue_empty(&h));
  CHECK_EQ_INT(ids_of(&aside, ids, 8), 3);
  for (int i = 0; i < 3; i++) CHECK_EQ_INT(ids[i], i + 1);
  /* What joins h meanwhile stays on h. */
  inv_queue_remove(&e[2].node);
  inv_queue_insert_tail(&h, &e[2].node);
  CHECK_EQ_INT(ids_of(&aside, ids, 8), 2);
  CHECK_EQ_INT(ids_of(&h, ids, 8), 1);
  CHECK_EQ_INT(ids[0], 3);
}

/* One element on two queues through two nodes: leaving one keeps the
 * other. */
static void test_two_queues(void) {
  inv_queue_t a, b;
  elem_t e[2] = {{.id = 1}, {.id = 2}};
  int ids[8];
  inv_queue_init(&a);
  inv_queue_init(&b);
  for (int i = 0; i < 2; i++) {
    inv_queue_insert_tail(&a, &e[i].node);
    inv_queue_insert_head(&b, &e[i].other);
  }
  inv_queue_remove(&e[0].node);
  CHECK_EQ_INT(ids_of(&a, ids, 8), 1);
  CHECK_EQ_INT(ids[0], 2);
  CHECK(inv_queue_head(&b) == &e[1].other);
  CHECK(inv_queue_tail(&b) == &e[0].other);
  CHECK(INV_QUEUE_DATA(inv_queue_tail(&b), elem_t, other) == &e[0]);
}

int main(void) {
  RUN(test_empty);
  RUN(test_order);
  RUN(test_remove);
  RUN(test_foreach_frees);
  RUN(test_move);
  RUN(test_two_queues);
  return check_summary();
}
