/*
 * The publisher's RPC methods: hello, invalidate, stats and ping, behind
 * one inv_rpc_handler_cb. Anything else gets ENOMETHOD.
 *
 * With tenants, invalidate also checks every event against the session's
 * tenant (EPERM for one outside its namespaces, naming the event and the
 * namespaces) and takes the request's events from the tenant's rate (EBUSY
 * with "retry after N ms"), in that order and before anything is accepted,
 * and counts the events per tenant: accepted, refused, limited.
 */
#ifndef INV_PUB_METHODS_H
#define INV_PUB_METHODS_H

#include <msgpack.h>

#include "common/rpc_server.h"
#include "proto/event.h"
#include "service/batcher.h"
#include "service/pub_config.h"
#include "service/pub_stats.h"
#include "service/tenants.h"

/* What the handlers need; everything is borrowed from the publisher. */
typedef struct inv_pub_methods_s {
  const inv_pub_conf_t *conf;
  inv_event_rules_t rules;
  inv_batcher_t *batcher;
  inv_pub_stats_t *stats;       /* notifications, events_* counters */
  /* NULL: no tenants, every session may touch any key. Otherwise each
   * session's principal names its tenant, looked up at every request so
   * that a reload's new definition applies at once. */
  inv_tenants_t *tenants;
  /* Packs the whole stats map (one msgpack object). */
  void (*pack_stats)(msgpack_packer *pk, void *data);
  void *pack_stats_data;
} inv_pub_methods_t;

/* The rpc server's auth_cb (rpc_server.h) for a table of tenants; data is
 * an inv_pub_methods_t with tenants set. */
int inv_pub_methods_auth(void *data, const char *token, size_t token_len,
                         const char *const *cert_ids, size_t ncert_ids,
                         char *principal, size_t principal_len);

/* The rpc server handler; data is an inv_pub_methods_t. Finishes every
 * request exactly once, now or (invalidate) when its batch is answered. */
void inv_pub_methods_handle(inv_rpc_req_t *req, const inv_msg_t *msg,
                            void *data);

#endif
