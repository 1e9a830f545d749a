/*
 * The publisher's RPC methods. invalidate validates every event before
 * accepting any, so a request is accepted or refused as a whole, then hands
 * the events to the batcher, which answers the request once Redis
 * confirmed (or failed) its batch.
 */
#include "service/methods.h"

#include <string.h>

#include "common/errors.h"
#include "common/latency.h"
#include "proto/codec.h"

#define INV_PUB_SERVER_NAME "inval-publisher"

/* Returns 1 when the method of msg is name. */
static int method_is(const inv_msg_t *msg, const char *name) {
  size_t n = strlen(name);
  return msg->method_len == n && memcmp(msg->method, name, n) == 0;
}

static void do_ping(inv_rpc_req_t *req) {
  msgpack_packer *pk = inv_rpc_reply_begin(req);
  inv_pack_str(pk, "PONG");
  inv_rpc_reply_end(req);
}

/* hello [{"proto": 1, "client": str, "token": str?}]. The token itself is
 * checked by the rpc server before the call reaches here. */
static void do_hello(inv_pub_methods_t *m, inv_rpc_req_t *req,
                     const inv_msg_t *msg) {
  const msgpack_object *params = &msg->params;
  if (params->via.array.size != 1 ||
      params->via.array.ptr[0].type != MSGPACK_OBJECT_MAP) {
    inv_rpc_reply_error(req, INV_EINVAL,
                        "hello expects [{\"proto\": 1, \"client\": str}]");
    return;
  }
  const msgpack_object *arg = &params->via.array.ptr[0];
  const msgpack_object *proto = inv_map_get(arg, "proto");
  if (proto == NULL || proto->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
      proto->via.u64 != INV_PROTO_VERSION) {
    inv_rpc_reply_error(req, INV_EINVAL,
                        "unsupported protocol version (this server speaks %d)",
                        INV_PROTO_VERSION);
    return;
  }
  const msgpack_object *client = inv_map_get(arg, "client");
  if (client != NULL && client->type != MSGPACK_OBJECT_STR &&
      client->type != MSGPACK_OBJECT_BIN) {
    inv_rpc_reply_error(req, INV_EINVAL, "hello: client must be a string");
    return;
  }
  msgpack_packer *pk = inv_rpc_reply_begin(req);
  msgpack_pack_map(pk, 5);
  inv_pack_str(pk, "server");
  inv_pack_str(pk, INV_PUB_SERVER_NAME);
  inv_pack_str(pk, "version");
  inv_pack_str(pk, INV_VERSION);
  inv_pack_str(pk, "proto");
  msgpack_pack_int(pk, INV_PROTO_VERSION);
  inv_pack_str(pk, "max_message_bytes");
  msgpack_pack_uint64(pk, m->conf->server.max_message_bytes);
  inv_pack_str(pk, "max_events");
  msgpack_pack_uint64(pk, (uint64_t)m->conf->max_events);
  inv_rpc_reply_end(req);
}

/* Refuses an invalidate request whose n events were counted as received. */
static void refuse(inv_pub_methods_t *m, inv_rpc_req_t *req, size_t n,
                   int code, const char *text) {
  m->stats->events_rejected += n;
  if (inv_rpc_req_is_notify(req)) m->stats->notifications_failed++;
  inv_rpc_reply_error(req, code, "%s", text);
}

/* invalidate [[event, ...]] */
static void do_invalidate(inv_pub_methods_t *m, inv_rpc_req_t *req,
                          const inv_msg_t *msg, uint64_t t0) {
  const msgpack_object *params = &msg->params;
  if (inv_rpc_req_is_notify(req)) m->stats->notifications++;
  if (params->via.array.size != 1 ||
      params->via.array.ptr[0].type != MSGPACK_OBJECT_ARRAY) {
    refuse(m, req, 0, INV_EINVAL, "invalidate expects [[event, ...]]");
    return;
  }
  const msgpack_object_array *events = &params->via.array.ptr[0].via.array;
  size_t n = events->size;
  m->stats->events_received += n;
  if (n == 0) {
    refuse(m, req, 0, INV_EINVAL, "invalidate needs at least one event");
    return;
  }
  if (n > (size_t)m->conf->max_events) {
    char text[96];
    snprintf(text, sizeof(text), "%zu events is over the limit of %lld", n,
             m->conf->max_events);
    refuse(m, req, n, INV_ETOOBIG, text);
    return;
  }
  char errstr[160];
  inv_event_t ev;
  for (size_t i = 0; i < n; i++) {
    if (inv_event_parse(&events->ptr[i], &m->rules, i, &ev, errstr,
                        sizeof(errstr)) < 0) {
      refuse(m, req, n, INV_EINVAL, errstr);
      return;
    }
  }
  msgpack_packer *pk;
  int rc = inv_batcher_begin(m->batcher, req, n, t0, &pk);
  if (rc < 0) {
    const char *text = rc == INV_EBUSY ? "too many unacked events; retry later"
                       : rc == INV_ESHUTDOWN ? "the publisher is shutting down"
                                             : inv_strerror(rc);
    refuse(m, req, n, rc == INV_ENOMEM ? INV_EUNAVAIL : rc, text);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    /* Already validated above, so this parse cannot fail. */
    inv_event_parse(&events->ptr[i], &m->rules, i, &ev, errstr,
                    sizeof(errstr));
    inv_event_pack(pk, &ev);
  }
  inv_batcher_commit(m->batcher);
}

static void do_stats(inv_pub_methods_t *m, inv_rpc_req_t *req) {
  msgpack_packer *pk = inv_rpc_reply_begin(req);
  m->pack_stats(pk, m->pack_stats_data);
  inv_rpc_reply_end(req);
}

void inv_pub_methods_handle(inv_rpc_req_t *req, const inv_msg_t *msg,
                            void *data) {
  inv_pub_methods_t *m = data;
  uint64_t t0 = inv_now_us();
  if (method_is(msg, "invalidate")) {
    do_invalidate(m, req, msg, t0);
  } else if (method_is(msg, "ping")) {
    do_ping(req);
  } else if (method_is(msg, "stats")) {
    do_stats(m, req);
  } else if (method_is(msg, "hello")) {
    do_hello(m, req, msg);
  } else {
    inv_rpc_reply_error(req, INV_ENOMETHOD, "no method \"%.*s\"",
                        (int)(msg->method_len > 64 ? 64 : msg->method_len),
                        msg->method);
  }
}
