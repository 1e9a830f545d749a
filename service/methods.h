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

#include "common/base/buf.h"
#include "proto/server/rpc_server.h"
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
  inv_pub_stats_t *stats; /* notifications, events_* counters */
  /* NULL: no tenants, every session may touch any key. Otherwise each
   * session's principal names its tenant, looked up at every request so
   * that a reload's new definition applies at once. */
  inv_tenants_t *tenants;
  /* Packs the whole stats map (one msgpack object). */
  void (*pack_stats)(msgpack_packer *pk, void *data);
  void *pack_stats_data;
  /* Owned scratch space for the request being parsed: its events packed
   * back to back, and where each one lies. Zeroed with the struct; freed by
   * inv_pub_methods_release(). */
  inv_buf_t packed;
  inv_sink_event_t *ev;
  size_t capev;
} inv_pub_methods_t;

/* Frees m's scratch space (not m, whose fields are borrowed). */
void inv_pub_methods_release(inv_pub_methods_t *m);

/* The rpc server's auth_cb (rpc_server.h) for a table of tenants; data is
 * an inv_pub_methods_t with tenants set. */
int inv_pub_methods_auth(void *data, const char *token, size_t token_len,
                         const char *const *cert_ids, size_t ncert_ids,
                         char *principal, size_t principal_len);

/* The rpc server handler; data is an inv_pub_methods_t. Finishes every
 * request exactly once, now or (invalidate) when the batcher completes
 * it. invalidate parses each event once, packing it as it goes, and hands
 * the packed events to the batcher. */
void inv_pub_methods_handle(inv_rpc_req_t *req, const inv_msg_t *msg,
                            void *data);

#endif
