/*
 * The publisher's RPC methods. invalidate validates every event before
 * accepting any, so a request is accepted or refused as a whole, then hands
 * the events to the batcher, which answers the request once Redis
 * confirmed (or failed) its batch.
 */
#include "service/methods.h"

#include <stdio.h>
#include <string.h>

#include "inval/errors.h"
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

int inv_pub_methods_auth(void *data, const char *token, size_t token_len,
                         const char *const *cert_ids, size_t ncert_ids,
                         char *principal, size_t principal_len) {
  inv_pub_methods_t *m = data;
  const inv_tenant_t *t = inv_tenants_authenticate(m->tenants, token,
                                                   token_len, cert_ids,
                                                   ncert_ids);
  if (t == NULL) {
    snprintf(principal, principal_len, "%s",
             token != NULL   ? "wrong token"
             : ncert_ids > 0 ? "no tenant for this client certificate"
                             : "authentication required: hello needs a "
                               "token");
    return INV_EAUTH;
  }
  snprintf(principal, principal_len, "%s", t->name);
  return 0;
}

/* Writes up to 48 bytes of p to out (at least 4 * 48 + 4 bytes) with every
 * byte outside printable ASCII, the quote and the backslash escaped, so an
 * error message stays one readable, valid UTF-8 string. */
static void quote_target(const char *p, size_t len, char *out) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0, n = len > 48 ? 48 : len;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out[o++] = (char)c;
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  if (n < len) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

/* The session's tenant (NULL without tenants). Returns 0, or refuses the
 * request with EAUTH when the tenant is gone (a reload removed it). */
static int session_tenant(inv_pub_methods_t *m, inv_rpc_req_t *req, size_t n,
                          inv_tenant_t **out);

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
  inv_tenant_t *tenant;
  if (session_tenant(m, req, n, &tenant) < 0) return;
  char errstr[512];
  inv_event_t ev;
  for (size_t i = 0; i < n; i++) {
    if (inv_event_parse(&events->ptr[i], &m->rules, i, &ev, errstr,
                        sizeof(errstr)) < 0) {
      refuse(m, req, n, INV_EINVAL, errstr);
      return;
    }
    if (tenant != NULL &&
        !inv_tenant_allows(tenant, ev.kind, ev.target, ev.target_len)) {
      char quoted[4 * 48 + 4];
      quote_target(ev.target, ev.target_len, quoted);
      snprintf(errstr, sizeof(errstr),
               "event %zu (%s \"%s\") reaches outside the namespaces of "
               "tenant %s (%s)", i, inv_kind_name(ev.kind), quoted,
               tenant->name, tenant->ns_text);
      tenant->refused += n;
      refuse(m, req, n, INV_EPERM, errstr);
      return;
    }
  }
  uint64_t retry_ms = 0;
  if (tenant != NULL &&
      inv_tenant_take(tenant, n, inv_now_us(), &retry_ms) < 0) {
    snprintf(errstr, sizeof(errstr),
             "tenant %s is over its rate of %.0f events/s; retry after "
             "%llu ms", tenant->name, tenant->rate,
             (unsigned long long)retry_ms);
    tenant->limited += n;
    refuse(m, req, n, INV_EBUSY, errstr);
    return;
  }
  int rc = inv_batcher_begin(m->batcher, req, n, t0);
  if (rc < 0) {
    /* The events were not taken: they do not count against the rate. */
    if (tenant != NULL && tenant->rate > 0) tenant->tokens += (double)n;
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
    inv_batcher_add(m->batcher, &ev);
  }
  if (tenant != NULL) tenant->accepted += n;
  inv_batcher_commit(m->batcher);
}

static int session_tenant(inv_pub_methods_t *m, inv_rpc_req_t *req, size_t n,
                          inv_tenant_t **out) {
  *out = NULL;
  if (m->tenants == NULL) return 0;
  *out = inv_tenants_find(m->tenants, inv_rpc_req_principal(req));
  if (*out != NULL) return 0;
  refuse(m, req, n, INV_EAUTH,
         "this session's tenant is no longer known: send hello again");
  return -1;
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
