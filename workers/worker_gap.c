/*
 * The gap check of a log shard (see inv__worker_check_gap in
 * worker_int.h): XINFO STREAM and XINFO GROUPS of the shard's stream, sent
 * through the cluster client, tell whether entries left the stream before
 * the group "inval" was delivered them. Such entries' invalidations are
 * lost: the check counts them in `gaps` and says so in a GAP log line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/log.h"
#include "workers/worker_int.h"

/* A gap check of one shard: XINFO STREAM, then XINFO GROUPS. */
typedef struct gap_req_s {
  inv_worker_t *w;
  unsigned shard;
  int refs; /* callbacks to come */
  int have_stream;
  inv_sid_t first, max_deleted;
  long long length;
} gap_req_t;

static const redisReply *field(const redisReply *r, const char *name) {
  if (r == NULL || r->type != REDIS_REPLY_ARRAY) return NULL;
  for (size_t i = 0; i + 1 < r->elements; i += 2)
    if (r->element[i]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[i]->str, name) == 0)
      return r->element[i + 1];
  return NULL;
}

static int field_sid(const redisReply *r, const char *name, inv_sid_t *out) {
  const redisReply *v = field(r, name);
  if (v != NULL && v->type == REDIS_REPLY_ARRAY && v->elements >= 1)
    v = v->element[0]; /* first-entry: [id, fields] */
  return v != NULL && v->type == REDIS_REPLY_STRING &&
         inv_sid_parse(v->str, v->len, out) == 0;
}

static void gap_stream_cb(inv_cluster_t *c, redisReply *reply, int err,
                          void *data) {
  gap_req_t *g = data;
  (void)c;
  const redisReply *len = err == 0 ? field(reply, "length") : NULL;
  if (len != NULL && len->type == REDIS_REPLY_INTEGER) {
    g->have_stream = 1;
    g->length = len->integer;
    if (!field_sid(reply, "first-entry", &g->first))
      g->first = (inv_sid_t){UINT64_MAX, UINT64_MAX}; /* empty */
    if (!field_sid(reply, "max-deleted-entry-id", &g->max_deleted))
      g->max_deleted = (inv_sid_t){0, 0};
  }
  if (--g->refs == 0) free(g);
}

/* Entries that left the stream before the group was delivered them are
 * lost: trimming (MAXLEN) removes the oldest entries, so when the stream's
 * first entry is past the group's last-delivered id, every entry it holds
 * is undelivered, and the group's lag (entries added after the last one
 * delivered) beyond the stream's length counts the lost ones; a deletion
 * (XDEL) past the last-delivered id shows in max-deleted-entry-id. */
static void gap_groups_cb(inv_cluster_t *c, redisReply *reply, int err,
                          void *data) {
  gap_req_t *g = data;
  inv_worker_t *w = g->w;
  (void)c;
  char a[INV_SID_STRLEN], b[INV_SID_STRLEN], key[INV_LOG_NAME_MAX];
  const redisReply *grp = NULL;
  if (err == 0 && reply->type == REDIS_REPLY_ARRAY)
    for (size_t i = 0; i < reply->elements; i++) {
      const redisReply *name = field(reply->element[i], "name");
      if (name != NULL && name->type == REDIS_REPLY_STRING &&
          strcmp(name->str, INV_LOG_GROUP) == 0)
        grp = reply->element[i];
    }
  inv_sid_t delivered;
  if (!w->closing && g->have_stream && grp != NULL &&
      field_sid(grp, "last-delivered-id", &delivered)) {
    const redisReply *lag = field(grp, "lag");
    long long lost = -1;
    if (inv_sid_cmp(g->first, delivered) > 0 && lag != NULL &&
        lag->type == REDIS_REPLY_INTEGER && lag->integer > g->length)
      lost = lag->integer - g->length;
    else if (inv_sid_cmp(g->max_deleted, delivered) > 0 &&
             (lag == NULL || lag->type != REDIS_REPLY_INTEGER))
      lost = 0; /* deleted entries, how many is unknown */
    if (lost >= 0) {
      w->st.gaps++;
      inv_log_shard_key(g->shard, key);
      inv_log_error(
          w->ctx,
          "GAP: %s lost %s entries after %s before they "
          "were read (first entry now %s): their invalidations "
          "are lost; raise max-log-len, or keep workers running",
          key, lost > 0 ? (snprintf(b, sizeof(b), "%lld", lost), b) : "some",
          inv_sid_format(delivered, a),
          g->length > 0 ? inv_sid_format(g->first, b) : "none");
    }
  }
  if (--g->refs == 0) free(g);
}

void inv__worker_check_gap(inv_worker_t *w, unsigned shard) {
  char key[INV_LOG_NAME_MAX];
  size_t n = inv_log_shard_key(shard, key);
  const char *sargv[3] = {"XINFO", "STREAM", key};
  const char *gargv[3] = {"XINFO", "GROUPS", key};
  size_t lens[3] = {5, 6, n};
  gap_req_t *g = calloc(1, sizeof(*g));
  if (g == NULL) return;
  g->w = w;
  g->shard = shard;
  g->refs = 1;
  if (inv_cluster_command_argv(w->cluster, key, n, 3, sargv, lens,
                               gap_stream_cb, g) != 0) {
    free(g);
    return;
  }
  if (inv_cluster_command_argv(w->cluster, key, n, 3, gargv, lens,
                               gap_groups_cb, g) == 0)
    g->refs++;
}
