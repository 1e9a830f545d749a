/*
 * Slot map parsing (see slot_map.h).
 */
#include "workers/slot_map.h"

#include <stdlib.h>
#include <string.h>

#include "common/redis/cluster_reply.h"
#include "inval/errors.h"

static void set_bit(uint8_t *bits, unsigned slot) {
  bits[slot >> 3] |= (uint8_t)(1u << (slot & 7));
}

static unsigned count_bits(const uint8_t *bits) {
  unsigned n = 0;
  for (size_t i = 0; i < INV_SLOTS / 8; i++)
    n += (unsigned)__builtin_popcount(bits[i]);
  return n;
}

void inv_slot_map_standalone(inv_slot_map_t *m) {
  memset(m, 0, sizeof(*m));
  memset(m->owned, 0xff, sizeof(m->owned));
  m->nowned = INV_SLOTS;
}

/* Parses the decimal number at s[0..len). Returns -1 when it is not one. */
static long parse_num(const char *s, size_t len) {
  long v = 0;
  if (len == 0 || len > 6) return -1;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* Marks the importing and migrating slots listed on the "myself" line of
 * CLUSTER NODES: tokens of the form "[slot-<-nodeid]" and
 * "[slot->-nodeid]". */
static void parse_moving(uint8_t *importing, uint8_t *migrating,
                         const char *nodes, size_t len) {
  const char *p = nodes, *end = nodes + len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL) eol = end;
    /* The flags are the third field; "myself" is one of them. */
    const char *f = p;
    int field = 0, mine = 0;
    while (f < eol && field < 3) {
      const char *sp = memchr(f, ' ', (size_t)(eol - f));
      if (sp == NULL) sp = eol;
      if (field == 2) {
        const char *q = f;
        while (q < sp) {
          const char *c = memchr(q, ',', (size_t)(sp - q));
          if (c == NULL) c = sp;
          if (c - q == 6 && memcmp(q, "myself", 6) == 0) mine = 1;
          q = c + 1;
        }
      }
      field++;
      f = sp + 1;
    }
    if (mine) {
      const char *q = p;
      while (q < eol) {
        const char *sp = memchr(q, ' ', (size_t)(eol - q));
        if (sp == NULL) sp = eol;
        size_t tl = (size_t)(sp - q);
        if (tl > 4 && q[0] == '[' && q[tl - 1] == ']') {
          const char *arrow = NULL;
          uint8_t *bits = NULL;
          for (const char *a = q + 1; a + 3 <= q + tl; a++) {
            if (memcmp(a, "-<-", 3) == 0)
              bits = importing;
            else if (memcmp(a, "->-", 3) == 0)
              bits = migrating;
            if (bits != NULL) {
              arrow = a;
              break;
            }
          }
          if (arrow != NULL) {
            long slot = parse_num(q + 1, (size_t)(arrow - q - 1));
            if (slot >= 0 && slot < INV_SLOTS) set_bit(bits, (unsigned)slot);
          }
        }
        q = sp + 1;
      }
      return;
    }
    p = eol + 1;
  }
}

/* The node whose ranges are being marked owned. */
typedef struct owner_s {
  inv_slot_map_t *map;
  const char *myid;
  size_t myidlen;
} owner_t;

/* Marks a range owned when its primary is our node. Returns 0, or
 * INV_EPROTO when the reply gives no node ids (Redis before 4). */
static int own_range(const inv_cluster_range_t *range, void *data) {
  owner_t *o = data;
  if (range->primary.id == NULL) return INV_EPROTO;
  if (range->primary.idlen != o->myidlen ||
      memcmp(range->primary.id, o->myid, o->myidlen) != 0)
    return 0;
  for (unsigned s = range->lo; s <= range->hi; s++) set_bit(o->map->owned, s);
  return 0;
}

int inv_slot_map_from_cluster(inv_slot_map_t *m, const char *myid,
                              size_t myidlen, const redisReply *slots,
                              const char *nodes, size_t nodeslen) {
  inv_slot_map_t n;
  owner_t o = {&n, myid, myidlen};
  memset(&n, 0, sizeof(n));
  n.cluster = 1;
  if (inv_cluster_slots_each(slots, own_range, &o, NULL, 0) != 0)
    return INV_EPROTO;
  if (nodes != NULL) parse_moving(n.importing, n.migrating, nodes, nodeslen);
  n.nowned = count_bits(n.owned);
  n.nimporting = count_bits(n.importing);
  *m = n;
  return 0;
}

unsigned inv_slot_map_gained(const inv_slot_map_t *old,
                             const inv_slot_map_t *now) {
  unsigned n = 0;
  for (size_t i = 0; i < INV_SLOTS / 8; i++)
    n += (unsigned)__builtin_popcount(now->owned[i] & (uint8_t)~old->owned[i]);
  return n;
}
