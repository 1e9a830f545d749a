/*
 * A Redis client that works the same against standalone Redis and Redis
 * Cluster, built on inv_redis_t connections.
 *
 * It starts from seed addresses. On connect it asks CLUSTER SLOTS; a node
 * that answers "cluster support disabled" makes this a standalone client
 * (every command goes to that node). In cluster mode each command is routed
 * to the primary owning the slot of its key. MOVED refreshes the slot map
 * and resends to the named node; ASK sends ASKING + the command to the
 * named node once. At most 5 redirects per command. When the owner is
 * unreachable, the map is refreshed from any reachable node (seeds and
 * every node seen) and the command is retried with backoff until its
 * deadline (command_timeout_ms from when it was issued); then the callback
 * gets INV_EUNAVAIL. The map is also refreshed periodically (every 5 s).
 *
 * Callbacks follow inv_redis_t's rules: exactly once, reply owned by the
 * client and valid only during the callback, err < 0 with a NULL reply on
 * failure. A Redis error reply other than MOVED/ASK/TRYAGAIN/CLUSTERDOWN is
 * passed through as a reply. TRYAGAIN and CLUSTERDOWN are retried like an
 * unreachable owner.
 */
#ifndef INV_REDIS_CLUSTER_H
#define INV_REDIS_CLUSTER_H

#include "common/base/addr.h"
#include "common/redis/redis_conn.h"

typedef struct inv_cluster_s inv_cluster_t;

typedef void (*inv_cluster_reply_cb)(inv_cluster_t *c, redisReply *reply,
                                     int err, void *data);

typedef struct inv_cluster_stats_s {
  uint64_t round_trips; /* commands sent to nodes, redirects included */
  uint64_t errors;      /* failed commands and error replies */
  uint64_t redirects;   /* MOVED + ASK followed */
  uint64_t reconnects;  /* sum over node connections */
  uint64_t map_refreshes;
} inv_cluster_stats_t;

/* Creates the client and starts connecting to the seeds. Returns 0 and
 * *out, or INV_EINVAL (no seeds) / INV_ENOMEM. */
int inv_cluster_create(uv_loop_t *loop, const inv_addr_t *seeds, size_t nseeds,
                       const inv_redis_opts_t *opts, inv_cluster_t **out);

/* Sends a command routed by key (key may be NULL for keyless commands such
 * as PUBLISH: any reachable primary is used). argv is copied. Returns 0, or
 * INV_ENOMEM / INV_ESHUTDOWN (client closing); on error cb is not called. */
int inv_cluster_command_argv(inv_cluster_t *c, const char *key, size_t keylen,
                             int argc, const char **argv, const size_t *argvlen,
                             inv_cluster_reply_cb cb, void *data);

/*
 * Sends a pair: the command argv routed by key, then argv2 (keyless, such
 * as WAIT) right behind it on the same node connection, so that argv2 acts
 * on what argv did. Redirects, TRYAGAIN and lost connections are handled
 * for the first command as above, and the pair is always sent again as a
 * whole: a follow-up that went behind a redirected first command reached
 * the wrong node, and its answer is ignored. When budget_arg >= 0,
 * argv2[budget_arg] is replaced at each send by the milliseconds left
 * before the deadline, less a fifth (at least 1; 0 when deadlines are off),
 * so that a blocking follow-up answers before the deadline does.
 *
 * cb is called exactly once. On success reply is an array of two elements,
 * the first command's reply and the follow-up's (either may be an error
 * reply). err is INV_EUNAVAIL also when the first command ran but the
 * follow-up got no answer (the connection dropped between them): the pair
 * is not sent again then, since that would run the first command twice.
 * Returns 0, or INV_EINVAL (no key, no follow-up, budget_arg out of range),
 * INV_EBUSY, INV_ENOMEM or INV_ESHUTDOWN; on error cb is not called.
 */
int inv_cluster_pair_argv(inv_cluster_t *c, const char *key, size_t keylen,
                          int argc, const char **argv, const size_t *argvlen,
                          int argc2, const char **argv2, const size_t *argvlen2,
                          int budget_arg, inv_cluster_reply_cb cb, void *data);

/* The number of replicas of the node serving key, as last seen: in a
 * cluster the replicas CLUSTER SLOTS lists for its slot (Redis leaves out
 * those it marked as failed), refreshed with the slot map (every 5 s and
 * on every topology change); standalone, connected_slaves of INFO
 * replication, asked every 5 s. -1 while unknown. */
int inv_cluster_replicas(const inv_cluster_t *c, const char *key,
                         size_t keylen);

/* Called for each primary by inv_cluster_each_primary(): first_slot is the
 * lowest slot it owns in the current map and conn its connection, which
 * is up. conn is borrowed for the call; commands sent on it directly are
 * not routed, redirected or retried by the cluster client. */
typedef void (*inv_cluster_primary_fn)(inv_redis_t *conn, unsigned first_slot,
                                       void *data);

/* In cluster mode, calls fn for every primary of the current slot map
 * except the owner of skip_slot, whose connection is up. A primary that has
 * no connection yet gets one started for next time. Returns the number of
 * primaries passed over because their connection was not up (0 outside
 * cluster mode, where fn is never called). fn must not close c. */
size_t inv_cluster_each_primary(inv_cluster_t *c, unsigned skip_slot,
                                inv_cluster_primary_fn fn, void *data);

/* Asks for a slot map refresh soon (at most one every 200 ms): for a
 * caller that learned, outside the routed commands, that the map is stale
 * (a MOVED answer on a connection from inv_cluster_each_primary). */
void inv_cluster_refresh(inv_cluster_t *c);

/* 1 once the topology is known (standalone seed answered, or a slot map is
 * loaded), else 0. */
int inv_cluster_ready(const inv_cluster_t *c);

/* 1 when the topology is known and every primary's connection (the single
 * node's, standalone) is up now, else 0: what a readiness check asks. */
int inv_cluster_reachable(const inv_cluster_t *c);

/* Makes every node's next connection attempts use TLS context ctx (see
 * inv_redis_set_tls()), nodes found later included. c must have been
 * created with TLS. */
void inv_cluster_set_tls(inv_cluster_t *c, struct inv_tls_ctx_s *ctx);

/* During a reply callback: 1 when the command being answered was sent
 * more than once (MOVED or ASK followed, or resent after TRYAGAIN,
 * CLUSTERDOWN or a lost connection), so it may have run on another
 * connection than the one it was first queued on; else 0. */
int inv_cluster_answer_resent(const inv_cluster_t *c);

/* An opaque identity of the node that serves key in the current map
 * (commands routed to the same identity go out on one connection, in
 * order), or NULL when no map is known. Valid until the next map
 * refresh; only for comparing. */
const void *inv_cluster_node_of(const inv_cluster_t *c, const char *key,
                                size_t keylen);

/* Writes "host:port" of the node that serves key now (its slot's owner, or
 * the single node of standalone Redis) and whether it is connected, as
 * "host:port" or "host:port (not connected)", to out; "no node known yet"
 * when the map is not known. For error messages that name their cause. */
void inv_cluster_describe_owner(const inv_cluster_t *c, const char *key,
                                size_t keylen, char *out, size_t outlen);

/* 1 in cluster mode, 0 standalone or not yet known. */
int inv_cluster_is_cluster(const inv_cluster_t *c);

/* The stats, summed with the node connections' reconnects. */
void inv_cluster_get_stats(const inv_cluster_t *c, inv_cluster_stats_t *out);

/* Fails every queued command with INV_ECLOSED, closes all connections and
 * frees c once they are released; closed_cb (may be NULL) is called then.
 * Accepts NULL. */
void inv_cluster_close(inv_cluster_t *c, inv_redis_closed_cb closed_cb,
                       void *data);

#endif
