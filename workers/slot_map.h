/*
 * The hash slots the worker's own node owns, imports and migrates away, as
 * bitmaps.
 *
 * Ownership comes from CLUSTER SLOTS, read by common/redis/cluster_reply.h (a
 * range is ours when its primary's node id equals CLUSTER MYID); importing
 * and migrating slots come from the "myself" line of CLUSTER NODES
 * ("[slot-<-from-id]", "[slot->-to-id]"). A standalone node owns every
 * slot. This module only parses replies; worker_topology.c asks for them.
 */
#ifndef INV_WORKER_SLOT_MAP_H
#define INV_WORKER_SLOT_MAP_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/slot.h"

typedef struct inv_slot_map_s {
  int cluster; /* 0: standalone, owns everything */
  unsigned nowned;
  unsigned nimporting;
  uint8_t owned[INV_SLOTS / 8];
  uint8_t importing[INV_SLOTS / 8];
  uint8_t migrating[INV_SLOTS / 8]; /* owned slots moving to another node */
} inv_slot_map_t;

/* Makes m the map of a standalone node (every slot owned). */
void inv_slot_map_standalone(inv_slot_map_t *m);

/* Builds a cluster map from the node id, a CLUSTER SLOTS reply and the text
 * of CLUSTER NODES (may be NULL: no importing slots). Returns 0, or
 * INV_EPROTO when the SLOTS reply is malformed or gives no node ids (m is
 * then unchanged). */
int inv_slot_map_from_cluster(inv_slot_map_t *m, const char *myid,
                              size_t myidlen, const redisReply *slots,
                              const char *nodes, size_t nodeslen);

static inline int inv_slot_map_owns(const inv_slot_map_t *m, unsigned slot) {
  return (m->owned[slot >> 3] >> (slot & 7)) & 1;
}

static inline int inv_slot_map_imports(const inv_slot_map_t *m, unsigned slot) {
  return (m->importing[slot >> 3] >> (slot & 7)) & 1;
}

static inline int inv_slot_map_migrates(const inv_slot_map_t *m,
                                        unsigned slot) {
  return (m->migrating[slot >> 3] >> (slot & 7)) & 1;
}

/* The number of slots owned in now but not in old. */
unsigned inv_slot_map_gained(const inv_slot_map_t *old,
                             const inv_slot_map_t *now);

#endif
