/*
 * CLUSTER SLOTS and MOVED / ASK parsing (see cluster_reply.h).
 */
#include "common/redis/cluster_reply.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"
#include "common/base/slot.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the message when the caller gave room for one. */
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (err == NULL || errlen == 0) return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* 1 when the endpoint means "the node that answered": empty, or "?". */
static int is_unknown_endpoint(const char *s, size_t len) {
  return len == 0 || (len == 1 && s[0] == '?');
}

/* Checks a host's bytes: shorter than INV_CLUSTER_HOST_MAX and free of
 * NUL, which would cut it short in every C string it is copied into. */
static int host_ok(const char *s, size_t len) {
  return len < INV_CLUSTER_HOST_MAX && memchr(s, '\0', len) == NULL;
}

/* Reads one node of a range: [host, port, id?, ...]. Returns 0, or -1 with
 * *why. A replica's port may be 0 (see the header). */
static int parse_node(const redisReply *n, int replica, inv_cluster_node_t *out,
                      const char **why) {
  const redisReply *h, *p;
  long long minport = replica ? 0 : 1;
  memset(out, 0, sizeof(*out));
  if (n == NULL || n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
      n->element == NULL) {
    *why = "a node is not an array of host and port";
    return -1;
  }
  h = n->element[0];
  p = n->element[1];
  if (h == NULL ||
      (h->type != REDIS_REPLY_STRING && h->type != REDIS_REPLY_NIL) ||
      (h->type == REDIS_REPLY_STRING && h->len > 0 && h->str == NULL)) {
    *why = "a node's host is not a string";
    return -1;
  }
  if (h->type == REDIS_REPLY_STRING && !host_ok(h->str, h->len)) {
    *why = "a node's host is too long or holds a NUL";
    return -1;
  }
  if (p == NULL || p->type != REDIS_REPLY_INTEGER || p->integer < minport ||
      p->integer > 65535) {
    *why = replica ? "a node's port is not an integer within 0..65535"
                   : "a node's port is not an integer within 1..65535";
    return -1;
  }
  if (h->type == REDIS_REPLY_STRING && !is_unknown_endpoint(h->str, h->len)) {
    out->host = h->str;
    out->hostlen = h->len;
  }
  out->port = (int)p->integer;
  if (n->elements >= 3) {
    const redisReply *id = n->element[2];
    if (id == NULL || id->type != REDIS_REPLY_STRING ||
        (id->len > 0 && id->str == NULL)) {
      *why = "a node's id is not a string";
      return -1;
    }
    out->id = id->str;
    out->idlen = id->len;
  }
  return 0;
}

/* Reads entry i of the reply: [lo, hi, primary, replica...]. Returns 0, or
 * INV_EPROTO with err. */
static int parse_range(const redisReply *e, size_t i, inv_cluster_range_t *out,
                       char *err, size_t errlen) {
  const char *why = NULL;
  inv_cluster_node_t replica;
  long long lo, hi;
  if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
      e->element == NULL || e->element[0] == NULL || e->element[1] == NULL ||
      e->element[0]->type != REDIS_REPLY_INTEGER ||
      e->element[1]->type != REDIS_REPLY_INTEGER) {
    set_err(err, errlen,
            "CLUSTER SLOTS entry %zu is not [lo, hi, primary, ...]", i);
    return INV_EPROTO;
  }
  lo = e->element[0]->integer;
  hi = e->element[1]->integer;
  if (lo < 0 || hi >= INV_SLOTS || lo > hi) {
    set_err(err, errlen,
            "CLUSTER SLOTS entry %zu: slots %lld-%lld are not a "
            "range within 0-%d",
            i, lo, hi, INV_SLOTS - 1);
    return INV_EPROTO;
  }
  if (parse_node(e->element[2], 0, &out->primary, &why) != 0) {
    set_err(err, errlen, "CLUSTER SLOTS entry %zu: primary: %s", i, why);
    return INV_EPROTO;
  }
  for (size_t r = 3; r < e->elements; r++) {
    if (parse_node(e->element[r], 1, &replica, &why) != 0) {
      set_err(err, errlen, "CLUSTER SLOTS entry %zu: replica %zu: %s", i, r - 3,
              why);
      return INV_EPROTO;
    }
  }
  out->lo = (unsigned)lo;
  out->hi = (unsigned)hi;
  out->nreplicas = e->elements - 3;
  return 0;
}

int inv_cluster_slots_each(const redisReply *reply, inv_cluster_range_cb cb,
                           void *data, char *err, size_t errlen) {
  inv_cluster_range_t range;
  size_t i;
  int rc;
  if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
      (reply->elements > 0 && reply->element == NULL)) {
    set_err(err, errlen, "CLUSTER SLOTS reply is not an array");
    return INV_EPROTO;
  }
  /* Everything is checked before anything is handed over, so that a
   * caller never acts on half of a malformed map. */
  for (i = 0; i < reply->elements; i++)
    if ((rc = parse_range(reply->element[i], i, &range, err, errlen)) != 0)
      return rc;
  if (cb == NULL) return 0;
  for (i = 0; i < reply->elements; i++) {
    (void)parse_range(reply->element[i], i, &range, NULL, 0);
    if ((rc = cb(&range, data)) != 0) return rc;
  }
  return 0;
}

void inv_cluster_node_host(const inv_cluster_node_t *n, const char *asked,
                           char host[INV_CLUSTER_HOST_MAX]) {
  if (n->hostlen == 0) {
    snprintf(host, INV_CLUSTER_HOST_MAX, "%s", asked);
    return;
  }
  memcpy(host, n->host, n->hostlen); /* < INV_CLUSTER_HOST_MAX: checked */
  host[n->hostlen] = '\0';
}

/* Reads the decimal number at s up to the byte stop, within [min, max].
 * Returns the number, or -1. strtol alone would take a sign, leading
 * blanks, and digits past the range (ERANGE); each is refused. */
static long parse_decimal(const char *s, char stop, const char **next, long min,
                          long max) {
  char *end;
  long v;
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno != 0 || *end != stop || v < min || v > max) return -1;
  *next = end;
  return v;
}

int inv_cluster_redirect_parse(const redisReply *reply,
                               inv_cluster_redirect_t *out) {
  /* "MOVED 16383 " + host + ":65535", and room to see a longer reply. */
  char text[INV_CLUSTER_HOST_MAX + 32];
  const char *p, *colon, *end;
  long slot, port;
  size_t hl;

  if (reply == NULL || reply->type != REDIS_REPLY_ERROR || reply->str == NULL)
    return 0;
  if (reply->len >= 6 && memcmp(reply->str, "MOVED ", 6) == 0) {
    out->ask = 0;
  } else if (reply->len >= 4 && memcmp(reply->str, "ASK ", 4) == 0) {
    out->ask = 1;
  } else {
    return 0;
  }
  if (reply->len >= sizeof(text) || memchr(reply->str, '\0', reply->len))
    return INV_EPROTO;
  memcpy(text, reply->str, reply->len);
  text[reply->len] = '\0';
  p = text + (out->ask ? 4 : 6);
  slot = parse_decimal(p, ' ', &p, 0, INV_SLOTS - 1);
  if (slot < 0) return INV_EPROTO;
  p++; /* the space */
  /* The port follows the last colon: an IPv6 host needs no brackets. */
  colon = strrchr(p, ':');
  if (colon == NULL) return INV_EPROTO;
  port = parse_decimal(colon + 1, '\0', &end, 1, 65535);
  if (port < 0) return INV_EPROTO;
  hl = (size_t)(colon - p);
  if (hl >= sizeof(out->host) || memchr(p, ' ', hl) != NULL) return INV_EPROTO;
  if (is_unknown_endpoint(p, hl)) hl = 0;
  memcpy(out->host, p, hl);
  out->host[hl] = '\0';
  out->slot = (unsigned)slot;
  out->port = (int)port;
  return 1;
}
