/*
 * The Redis Cluster replies that route commands: CLUSTER SLOTS (which
 * primary serves which range of slots) and the MOVED / ASK error replies.
 *
 * Pure: the functions read a hiredis redisReply tree and do no I/O, so the
 * async cluster client, the read path's blocking router, the worker's slot
 * map and invalctl share one parser. Every type, length and range is
 * checked before it is used; a malformed reply is an error with a message,
 * never a crash.
 *
 * Endpoints. Redis names a node by its preferred endpoint. An empty one (a
 * node that does not know its own address yet), a nil one (Redis 7's
 * cluster-preferred-endpoint-type unknown-endpoint: "use the address you
 * asked, with this port") and "?" (a hostname endpoint type with no
 * hostname set) all mean "the node that answered". The parsers report them
 * as an empty host; the caller puts in the address it sent the command to.
 * A host is at most INV_CLUSTER_HOST_MAX - 1 bytes and contains no NUL.
 */
#ifndef INV_CLUSTER_REPLY_H
#define INV_CLUSTER_REPLY_H

#include <hiredis/hiredis.h>
#include <stddef.h>

/* Size of a host buffer, NUL included; longer hosts are malformed (a DNS
 * name has at most 253 bytes, an IPv6 address at most 45). */
#define INV_CLUSTER_HOST_MAX 256

/* One node of a CLUSTER SLOTS range. host points into the reply (not
 * NUL-terminated) and lives as long as it; hostlen 0 means "the node that
 * answered". id is the node id when the reply gives one (Redis 4 and
 * later), else NULL with idlen 0. */
typedef struct inv_cluster_node_s {
  const char *host;
  size_t hostlen;
  int port; /* 1..65535 */
  const char *id;
  size_t idlen;
} inv_cluster_node_t;

/* One entry of a CLUSTER SLOTS reply: slots lo..hi (inclusive,
 * lo <= hi < INV_SLOTS) served by primary, with nreplicas replicas listed
 * after it (Redis leaves out the replicas it marked as failed). */
typedef struct inv_cluster_range_s {
  unsigned lo, hi;
  inv_cluster_node_t primary;
  size_t nreplicas;
} inv_cluster_range_t;

/* Called for each range, in reply order. Returns 0 to go on, anything else
 * to stop (inv_cluster_slots_each then returns that value). */
typedef int (*inv_cluster_range_cb)(const inv_cluster_range_t *range,
                                    void *data);

/* Walks a CLUSTER SLOTS reply. The whole reply is checked first: when any
 * part of it is malformed, cb is never called, and INV_EPROTO is returned
 * with a message naming the entry in err (errlen may be 0, err then NULL).
 * Otherwise cb runs once per range and the function returns 0, or the
 * first non-zero value cb returned. cb may be NULL: the reply is only
 * checked (0 or INV_EPROTO). A reply that is not an array (an error
 * reply included) is malformed; callers tell "cluster support disabled"
 * apart themselves. Replicas are checked like primaries, except that their
 * port may be 0 (no port for the transport the client uses). */
int inv_cluster_slots_each(const redisReply *reply, inv_cluster_range_cb cb,
                           void *data, char *err, size_t errlen);

/* Writes n's host into host as a C string, or asked (the address the
 * command went to, truncated to fit) when n's host is empty. */
void inv_cluster_node_host(const inv_cluster_node_t *n, const char *asked,
                           char host[INV_CLUSTER_HOST_MAX]);

/* A MOVED or ASK redirect. host is NUL-terminated; "" means "the node
 * that answered" (see the top of this file). */
typedef struct inv_cluster_redirect_s {
  int ask;       /* 1: ASK (once, after ASKING); 0: MOVED (the slot moved) */
  unsigned slot; /* < INV_SLOTS */
  char host[INV_CLUSTER_HOST_MAX];
  int port; /* 1..65535 */
} inv_cluster_redirect_t;

/* Parses "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>". The
 * port follows the last colon, so an IPv6 host needs no brackets
 * ("ASK 1 ::1:7000" is host "::1", port 7000). Returns 1 with *out filled;
 * 0 when reply is not an error reply starting with "MOVED " or "ASK "; or
 * INV_EPROTO when it does but the rest is malformed (slot or port out of
 * range or not a number, no colon, host too long, trailing text), *out
 * then undefined. */
int inv_cluster_redirect_parse(const redisReply *reply,
                               inv_cluster_redirect_t *out);

#endif
