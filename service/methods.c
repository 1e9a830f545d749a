/*
 * The publisher's RPC methods. invalidate validates every event before
 * accepting any, so a request is accepted or refused as a whole, packing
 * each as it is read, then hands the packed events to the batcher, whose
 * completion answers the request once Redis confirmed (or failed) its
 * batch.
 */
#include "service/methods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/latency.h"
#include "proto/codec.h"
#include "proto/log_shard.h"

#define INV_PUB_SERVER_NAME "inval-publisher"

static void do_ping(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  (void)msg;
  (void)data;
  msgpack_packer *pk = inv_rpc_reply_begin(req);
  inv_pack_str(pk, "PONG");
  inv_rpc_reply_end(req);
}

/* hello [{"proto": 1, "client": str, "token": str?}]: the shared answer
 * plus the event limit. */
static void do_hello(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  inv_pub_methods_t *m = data;
  inv_rpc_hello_t hello = {
      .server = INV_PUB_SERVER_NAME,
      .max_message_bytes = m->conf->server.max_message_bytes,
      .check_params = 1,
  };
  msgpack_packer *pk = inv_rpc_hello_begin(req, msg, &hello, 1);
  if (pk == NULL) return;
  inv_pack_str(pk, "max_events");
  msgpack_pack_uint64(pk, (uint64_t)m->conf->max_events);
  inv_rpc_reply_end(req);
}

/* Refuses an invalidate request whose n events were counted as received. */
static void refuse(inv_pub_methods_t *m, inv_rpc_req_t *req, size_t n, int code,
                   const char *text) {
  m->stats->events_rejected += n;
  if (inv_rpc_req_is_notify(req)) m->stats->notifications_failed++;
  inv_rpc_reply_error(req, code, "%s", text);
}

int inv_pub_methods_auth(void *data, const char *token, size_t token_len,
                         const char *const *cert_ids, size_t ncert_ids,
                         char *principal, size_t principal_len) {
  inv_pub_methods_t *m = data;
  const inv_tenant_t *t = inv_tenants_authenticate(m->tenants, token, token_len,
                                                   cert_ids, ncert_ids);
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
                          inv_tenant_t **out) {
  *out = NULL;
  if (m->tenants == NULL) return 0;
  *out = inv_tenants_find(m->tenants, inv_rpc_req_principal(req));
  if (*out != NULL) return 0;
  refuse(m, req, n, INV_EAUTH,
         "this session's tenant is no longer known: send hello again");
  return -1;
}

/* Answers an invalidate request the batcher completed: {"id": the largest
 * of its entries' ids, "accepted": n, "ids": [[shard, id], ...]}, or the
 * error. */
static void invalidate_done(void *data, const inv_batcher_result_t *res) {
  inv_rpc_req_t *req = data;
  if (res->err != 0) {
    inv_rpc_reply_error(req, res->err, "%s", res->msg);
    return;
  }
  msgpack_packer *pk = inv_rpc_reply_begin(req);
  msgpack_pack_map(pk, 3);
  inv_pack_str(pk, "id");
  inv_pack_str(pk, res->id);
  inv_pack_str(pk, "accepted");
  msgpack_pack_uint64(pk, res->nevents);
  inv_pack_str(pk, "ids");
  msgpack_pack_array(pk, res->nids);
  for (size_t i = 0; i < res->nids; i++) {
    msgpack_pack_array(pk, 2);
    msgpack_pack_unsigned_int(pk, res->ids[i].shard);
    inv_pack_str(pk, res->ids[i].id);
  }
  inv_rpc_reply_end(req);
}

/* Makes the scratch space ready for n events. Returns 0 or INV_ENOMEM. */
static int scratch_reset(inv_pub_methods_t *m, size_t n) {
  /* A rare huge request does not keep its memory for good. */
  if (m->packed.cap > ((size_t)1 << 20)) inv_buf_free(&m->packed);
  inv_buf_reset(&m->packed);
  if (n <= m->capev) return 0;
  inv_sink_event_t *ev = realloc(m->ev, n * sizeof(*ev));
  if (ev == NULL) return INV_ENOMEM;
  m->ev = ev;
  m->capev = n;
  return 0;
}

/* Packs ev as event i of the request into the scratch space. Returns 0, or
 * INV_ENOMEM when its bytes could not be written. */
static int scratch_add(inv_pub_methods_t *m, msgpack_packer *pk, size_t i,
                       const inv_event_t *ev) {
  inv_sink_event_t *e = &m->ev[i];
  e->off = m->packed.len;
  inv_event_pack(pk, ev);
  e->len = m->packed.len - e->off;
  e->shard = inv_log_event_shard(ev);
  /* A packed event is never empty: no bytes means the buffer failed. */
  return e->len > 0 ? 0 : INV_ENOMEM;
}

/* Checks event i against the session's tenant; refuses the request with
 * EPERM (naming the event and the namespaces) and returns -1 when it
 * reaches outside them. */
static int tenant_check(inv_pub_methods_t *m, inv_rpc_req_t *req, size_t n,
                        inv_tenant_t *tenant, size_t i, const inv_event_t *ev) {
  if (tenant == NULL ||
      inv_tenant_allows(tenant, ev->kind, ev->target, ev->target_len))
    return 0;
  char quoted[4 * 48 + 4], errstr[512];
  quote_target(ev->target, ev->target_len, quoted);
  snprintf(errstr, sizeof(errstr),
           "event %zu (%s \"%s\") reaches outside the namespaces of "
           "tenant %s (%s)",
           i, inv_kind_name(ev->kind), quoted, tenant->name, tenant->ns_text);
  tenant->refused += n;
  refuse(m, req, n, INV_EPERM, errstr);
  return -1;
}

/* Parses, checks and packs the n events of a request into the scratch
 * space, each once. Returns 0, or refuses req and returns -1. */
static int parse_events(inv_pub_methods_t *m, inv_rpc_req_t *req,
                        const msgpack_object_array *events,
                        inv_tenant_t *tenant) {
  size_t n = events->size;
  if (scratch_reset(m, n) < 0) {
    refuse(m, req, n, INV_EUNAVAIL, inv_strerror(INV_ENOMEM));
    return -1;
  }
  msgpack_packer pk;
  msgpack_packer_init(&pk, &m->packed, inv_buf_msgpack_write);
  char errstr[512];
  inv_event_t ev;
  for (size_t i = 0; i < n; i++) {
    if (inv_event_parse(&events->ptr[i], &m->rules, i, &ev, errstr,
                        sizeof(errstr)) < 0) {
      refuse(m, req, n, INV_EINVAL, errstr);
      return -1;
    }
    if (tenant_check(m, req, n, tenant, i, &ev) < 0) return -1;
    if (scratch_add(m, &pk, i, &ev) < 0) {
      refuse(m, req, n, INV_EUNAVAIL, inv_strerror(INV_ENOMEM));
      return -1;
    }
  }
  return 0;
}

/* Takes n events from the tenant's rate; refuses req with EBUSY and
 * returns -1 when it is spent. */
static int tenant_take(inv_pub_methods_t *m, inv_rpc_req_t *req, size_t n,
                       inv_tenant_t *tenant) {
  uint64_t retry_ms = 0;
  if (tenant == NULL ||
      inv_tenant_take(tenant, n, inv_now_us(), &retry_ms) == 0)
    return 0;
  char errstr[512];
  snprintf(errstr, sizeof(errstr),
           "tenant %s is over its rate of %.0f events/s; retry after "
           "%llu ms",
           tenant->name, tenant->rate, (unsigned long long)retry_ms);
  tenant->limited += n;
  refuse(m, req, n, INV_EBUSY, errstr);
  return -1;
}

/* invalidate [[event, ...]] */
static void do_invalidate(inv_rpc_req_t *req, const inv_msg_t *msg,
                          void *data) {
  inv_pub_methods_t *m = data;
  uint64_t t0 = inv_now_us();
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
  if (parse_events(m, req, events, tenant) < 0) return;
  if (tenant_take(m, req, n, tenant) < 0) return;
  inv_batcher_req_t breq = {
      .events = m->packed.data,
      .events_len = m->packed.len,
      .ev = m->ev,
      .nevents = n,
      .t0_us = t0,
      .notify = inv_rpc_req_is_notify(req),
      .cb = invalidate_done,
      .data = req,
  };
  /* From here on req belongs to the batcher: its completion may even run
   * inside the submit. */
  int rc = inv_batcher_submit(m->batcher, &breq);
  if (rc == 0) {
    if (tenant != NULL) tenant->accepted += n;
    return;
  }
  /* The events were not taken: they do not count against the rate. */
  if (tenant != NULL && tenant->rate > 0) tenant->tokens += (double)n;
  const char *text = rc == INV_EBUSY ? "too many unacked events; retry later"
                     : rc == INV_ESHUTDOWN ? "the publisher is shutting down"
                                           : inv_strerror(rc);
  /* An internal code (ENOMEM) goes out as EUNAVAIL: see
   * inv_rpc_reply_error(). */
  refuse(m, req, n, rc, text);
}

static void do_stats(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  inv_pub_methods_t *m = data;
  (void)msg;
  msgpack_packer *pk = inv_rpc_reply_begin(req);
  m->pack_stats(pk, m->pack_stats_data);
  inv_rpc_reply_end(req);
}

static const inv_rpc_method_t methods[] = {
    {"invalidate", do_invalidate}, {"ping", do_ping}, {"stats", do_stats},
    {"hello", do_hello},           {NULL, NULL},
};

void inv_pub_methods_handle(inv_rpc_req_t *req, const inv_msg_t *msg,
                            void *data) {
  inv_rpc_dispatch(req, msg, methods, data);
}

void inv_pub_methods_release(inv_pub_methods_t *m) {
  inv_buf_free(&m->packed);
  free(m->ev);
  m->ev = NULL;
  m->capev = 0;
}
