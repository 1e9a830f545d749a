/*
 * The publisher's RPC methods: hello, invalidate, stats and ping, behind
 * one inv_rpc_handler_cb. Anything else gets ENOMETHOD.
 */
#ifndef INV_PUB_METHODS_H
#define INV_PUB_METHODS_H

#include <msgpack.h>

#include "common/rpc_server.h"
#include "proto/event.h"
#include "service/batcher.h"
#include "service/pub_config.h"
#include "service/pub_stats.h"

/* What the handlers need; everything is borrowed from the publisher. */
typedef struct inv_pub_methods_s {
  const inv_pub_conf_t *conf;
  inv_event_rules_t rules;
  inv_batcher_t *batcher;
  inv_pub_stats_t *stats;       /* notifications, events_* counters */
  /* Packs the whole stats map (one msgpack object). */
  void (*pack_stats)(msgpack_packer *pk, void *data);
  void *pack_stats_data;
} inv_pub_methods_t;

/* The rpc server handler; data is an inv_pub_methods_t. Finishes every
 * request exactly once, now or (invalidate) when its batch is answered. */
void inv_pub_methods_handle(inv_rpc_req_t *req, const inv_msg_t *msg,
                            void *data);

#endif
