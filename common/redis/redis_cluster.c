/*
 * Cluster-aware Redis client (see redis_cluster.h for the contract).
 *
 * Every command the user issues is a cmd_t that lives on the "all" list,
 * in issue order, until its callback has run. Because every command gets
 * the same timeout, the head of that list always has the earliest
 * deadline, so one timer enforces all deadlines. A command that cannot be
 * sent right now (topology unknown, owner not connected, retry backoff) is
 * also on the "wait" list; a retry timer and the events that can unblock it
 * (a node connected, a slot map loaded) send it again.
 *
 * A command sent to a node is "in flight": the node connection holds a
 * pointer to it until it answers. When the deadline (or close) answers the
 * user first, the command stays allocated as a zombie until the node's
 * answer arrives, because the node connection still refers to it.
 *
 * Nothing here calls a user callback from inside inv_cluster_command_argv:
 * callbacks run only from timers and node replies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/check.h"
#include "common/redis/cluster_reply.h"
#include "inval/errors.h"
#include "common/base/log.h"
#include "common/base/queue.h"
#include "common/redis/redis_cluster.h"
#include "common/tls/tls.h"
#include "common/base/slot.h"

#define LOG_CTX "cluster"

#define MAX_REDIRECTS 5
#define REFRESH_PERIOD_MS 5000
/* On-demand refreshes (MOVED, unreachable owner) come at most this often:
 * during a failover every command would otherwise ask for one. */
#define REFRESH_MIN_GAP_MS 200
/* Retries after TRYAGAIN, CLUSTERDOWN or a dropped node back off from
 * RETRY_BASE_MS to RETRY_MAX_MS; blocked commands are re-examined at least
 * every RETRY_TICK_MS. */
#define RETRY_BASE_MS 10
#define RETRY_MAX_MS 500
#define RETRY_TICK_MS 100

typedef enum { MODE_UNKNOWN = 0, MODE_STANDALONE, MODE_CLUSTER } cl_mode_t;

typedef struct node_s {
  inv_cluster_t *c;
  char host[256];
  int port;
  inv_redis_t *conn; /* created when first needed; NULL when closed */
  int seed;
  int primary;         /* owns slots in the current map */
  int replicas;        /* its replicas in the last CLUSTER SLOTS (failed ones
                        * are not listed), or connected_slaves standalone */
  unsigned first_slot; /* while primary: the lowest slot it owns */
  uint64_t conn_since; /* loop ms when conn was created */
} node_t;

typedef struct cmd_s {
  inv_cluster_t *c;
  inv_queue_t all_node;  /* on the all list until answered */
  inv_queue_t wait_node; /* on the wait list while it waits */
  int inflight;          /* node connection callbacks that hold this command */
  int answered;          /* the user callback has run */
  int has_key;
  unsigned slot;
  int argc;
  const char **argv;
  size_t *argvlen;
  inv_cluster_reply_cb cb;
  void *data;
  uint64_t deadline; /* loop ms; 0 = none */
  uint64_t next_try; /* loop ms before which it is not retried */
  int redirects;
  int attempts;
  node_t *target;  /* MOVED/ASK destination for the next send */
  int asking;      /* the next send is ASKING + command */
  node_t *avoid;   /* keyless: the node that just failed it */
  node_t *sent_to; /* where the in-flight send went */
  /* A pair (inv_cluster_pair_argv): the follow-up command goes right after
   * the first on the same connection. first is a copy of the first reply
   * once it was final; await is the connection whose follow-up reply
   * completes the pair, NULL while no send of the pair is at that point. */
  int argc2;
  const char **argv2;
  size_t *argvlen2;
  int budget_arg; /* argv2 index set to the budget at send time; -1 none */
  char budget[24];
  redisReply *first;
  inv_redis_t *follow_conn; /* where this send's follow-up went, if sent */
  inv_redis_t *await;
} cmd_t;

struct inv_cluster_s {
  uv_loop_t *loop;
  int answer_resent; /* the command being answered was sent more than once */
  inv_redis_opts_t opts; /* its password, username, tls and name are ours */
  char name[49];         /* its connections' role in log lines */
  char *password;
  char *username;

  node_t **nodes;
  size_t nnodes, nodes_cap;
  node_t **slots;  /* INV_SLOTS owners; NULL = unknown */
  node_t *single;  /* standalone mode: the node */
  node_t *keyless; /* sticky choice for keyless commands */
  cl_mode_t mode;
  int ready;

  inv_queue_t all;    /* cmd_t.all_node: every unanswered command, by age */
  inv_queue_t wait;   /* cmd_t.wait_node: the commands not sent yet */
  size_t nwait;       /* commands on the wait list */
  size_t outstanding; /* commands on the all list */

  uv_timer_t refresh_timer;
  uv_timer_t retry_timer;
  uv_timer_t deadline_timer;
  int refreshing;
  int refresh_wanted;
  uint64_t last_refresh;
  size_t rr;

  int closing;
  int open;
  uint64_t closed_reconnects;
  inv_cluster_stats_t stats;
  inv_redis_closed_cb closed_cb;
  void *closed_data;
};

static void refresh_timer_cb(uv_timer_t *h);
static void retry_timer_cb(uv_timer_t *h);
static void deadline_timer_cb(uv_timer_t *h);
static void request_refresh(inv_cluster_t *c);
static int try_send(inv_cluster_t *c, cmd_t *cmd);

/* ---- lists ------------------------------------------------------------ */

/* The oldest unanswered command (the earliest deadline), or NULL. */
static cmd_t *all_first(const inv_cluster_t *c) {
  inv_queue_t *q = inv_queue_head(&c->all);
  return q != NULL ? INV_QUEUE_DATA(q, cmd_t, all_node) : NULL;
}

/* The command that has waited longest, or NULL. */
static cmd_t *wait_first(const inv_cluster_t *c) {
  inv_queue_t *q = inv_queue_head(&c->wait);
  return q != NULL ? INV_QUEUE_DATA(q, cmd_t, wait_node) : NULL;
}

static void all_remove(inv_cluster_t *c, cmd_t *cmd) {
  INV_CHECK(inv_queue_linked(&cmd->all_node) && c->outstanding > 0);
  inv_queue_remove(&cmd->all_node);
  c->outstanding--;
}

static void wait_remove(inv_cluster_t *c, cmd_t *cmd) {
  if (!inv_queue_linked(&cmd->wait_node)) return;
  INV_CHECK(c->nwait > 0);
  inv_queue_remove(&cmd->wait_node);
  c->nwait--;
}

static void wait_push(inv_cluster_t *c, cmd_t *cmd) {
  inv_queue_insert_tail(&c->wait, &cmd->wait_node);
  c->nwait++;
}

/* Runs the retry pass on the next loop turn, coalescing many triggers. */
static void kick(inv_cluster_t *c) {
  if (!c->closing) uv_timer_start(&c->retry_timer, retry_timer_cb, 0, 0);
}

static void arm_retry(inv_cluster_t *c, uint64_t delay) {
  uint64_t due;
  if (c->closing) return;
  if (uv_is_active((uv_handle_t *)&c->retry_timer)) {
    due = uv_timer_get_due_in(&c->retry_timer);
    if (due <= delay) return;
  }
  uv_timer_start(&c->retry_timer, retry_timer_cb, delay, 0);
}

static void arm_deadline(inv_cluster_t *c) {
  uint64_t now;
  cmd_t *first = all_first(c);
  if (c->closing || first == NULL || first->deadline == 0) {
    uv_timer_stop(&c->deadline_timer);
    return;
  }
  now = uv_now(c->loop);
  uv_timer_start(&c->deadline_timer, deadline_timer_cb,
                 first->deadline > now ? first->deadline - now : 0, 0);
}

static void reply_free(redisReply *r);

static void cmd_free(cmd_t *cmd) {
  reply_free(cmd->first);
  free(cmd);
}

/* Answers the user (once) and frees cmd unless a node still holds it. */
static void finish(inv_cluster_t *c, cmd_t *cmd, redisReply *reply, int err) {
  int was_head = all_first(c) == cmd;
  /* A node that holds cmd frees it when it answers, possibly during the
   * callback (the callback may close the client), so cmd is not touched
   * after the callback unless this function owns it. */
  int held = cmd->inflight;
  INV_CHECK(!cmd->answered);
  wait_remove(c, cmd);
  all_remove(c, cmd);
  cmd->answered = 1;
  if (err < 0 || (reply != NULL && reply->type == REDIS_REPLY_ERROR))
    c->stats.errors++;
  if (was_head) arm_deadline(c);
  c->answer_resent = cmd->redirects > 0 || cmd->attempts > 0;
  cmd->cb(c, reply, err, cmd->data);
  if (!held) cmd_free(cmd);
}

/* Puts cmd back on the wait list after a transient failure, with backoff. */
static void requeue(inv_cluster_t *c, cmd_t *cmd) {
  uint64_t delay = RETRY_BASE_MS, now = uv_now(c->loop);
  int i;
  for (i = 0; i < cmd->attempts && delay < RETRY_MAX_MS; i++) delay *= 2;
  if (delay > RETRY_MAX_MS) delay = RETRY_MAX_MS;
  cmd->attempts++;
  cmd->next_try = now + delay;
  wait_push(c, cmd);
  arm_retry(c, delay);
}

/* ---- nodes ------------------------------------------------------------ */

static node_t *find_node(inv_cluster_t *c, const char *host, int port) {
  size_t i;
  for (i = 0; i < c->nnodes; i++)
    if (c->nodes[i]->port == port && strcmp(c->nodes[i]->host, host) == 0)
      return c->nodes[i];
  return NULL;
}

/* Returns the node for host:port, adding it when new, or NULL on ENOMEM. */
static node_t *add_node(inv_cluster_t *c, const char *host, int port) {
  node_t *n = find_node(c, host, port);
  if (n != NULL) return n;
  if (strlen(host) >= sizeof(n->host)) return NULL;
  if (c->nnodes == c->nodes_cap) {
    size_t ncap = c->nodes_cap ? c->nodes_cap * 2 : 8;
    node_t **nn = realloc(c->nodes, ncap * sizeof(*nn));
    if (nn == NULL) return NULL;
    c->nodes = nn;
    c->nodes_cap = ncap;
  }
  n = calloc(1, sizeof(*n));
  if (n == NULL) return NULL;
  n->c = c;
  strcpy(n->host, host);
  n->port = port;
  c->nodes[c->nnodes++] = n;
  return n;
}

/* Frees c and what it owns, once no handle or connection of it is open
 * (or none was ever opened). */
static void cluster_free(inv_cluster_t *c) {
  for (size_t i = 0; i < c->nnodes; i++) free(c->nodes[i]);
  free(c->nodes);
  free(c->slots);
  free(c->password);
  free(c->username);
  inv_tls_ctx_free(c->opts.tls);
  free(c);
}

static void node_closed_cb(void *data) {
  inv_cluster_t *c = data;
  c->open--;
  if (c->closing && c->open == 0) {
    inv_redis_closed_cb cb = c->closed_cb;
    void *cbdata = c->closed_data;
    cluster_free(c);
    if (cb != NULL) cb(cbdata);
  }
}

static void timer_closed_cb(uv_handle_t *h) { node_closed_cb(h->data); }

static void node_close_conn(node_t *n) {
  inv_redis_t *conn = n->conn;
  if (conn == NULL) return;
  n->conn = NULL;
  n->c->closed_reconnects += inv_redis_stats(conn)->reconnects;
  inv_redis_close(conn, node_closed_cb, n->c);
}

static void node_event_cb(inv_redis_t *r, inv_redis_event_t ev, void *data) {
  node_t *n = data;
  inv_cluster_t *c = n->c;
  (void)r;
  if (c->closing) return;
  if (ev == INV_REDIS_CONNECTED) {
    if (c->mode == MODE_UNKNOWN || c->refresh_wanted) request_refresh(c);
    kick(c);
  } else if (c->mode == MODE_CLUSTER && n->primary) {
    /* A primary went away: it may be failing over. */
    request_refresh(c);
  }
}

/* Returns n's connection, creating it when needed, or NULL on failure. */
static inv_redis_t *node_conn(node_t *n) {
  inv_cluster_t *c = n->c;
  if (n->conn == NULL && !c->closing) {
    if (inv_redis_create(c->loop, n->host, n->port, &c->opts, node_event_cb,
                         NULL, n, &n->conn) != 0) {
      n->conn = NULL;
      return NULL;
    }
    c->open++;
    n->conn_since = uv_now(c->loop);
  }
  return n->conn;
}

static int node_ready(node_t *n) {
  return n != NULL && n->conn != NULL && inv_redis_is_connected(n->conn);
}

/* ---- slot map --------------------------------------------------------- */

static int is_error_with(const redisReply *reply, const char *text) {
  return reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
         strstr(reply->str, text) != NULL;
}

/* A CLUSTER SLOTS reply being loaded into a fresh table. */
typedef struct slots_load_s {
  inv_cluster_t *c;
  node_t *from;   /* the node that answered */
  node_t **table; /* INV_SLOTS owners */
  long covered;   /* slots given an owner */
} slots_load_t;

/* Takes one range of the reply into the table. Returns 0 or INV_ENOMEM. */
static int load_range(const inv_cluster_range_t *range, void *data) {
  slots_load_t *l = data;
  char host[INV_CLUSTER_HOST_MAX];
  node_t *n;
  unsigned s;
  inv_cluster_node_host(&range->primary, l->from->host, host);
  n = add_node(l->c, host, range->primary.port);
  if (n == NULL) return INV_ENOMEM;
  /* Redis leaves out the replicas it marked as failed. */
  n->replicas = (int)range->nreplicas;
  for (s = range->lo; s <= range->hi; s++) {
    if (l->table[s] == NULL) l->covered++;
    l->table[s] = n;
  }
  return 0;
}

/* Loads a CLUSTER SLOTS reply into a fresh table. Returns the number of
 * slots covered, or a negative code (INV_EPROTO with err when the reply is
 * malformed). */
static long parse_slots(inv_cluster_t *c, node_t *from, const redisReply *reply,
                        node_t **table, char *err, size_t errlen) {
  slots_load_t l = {c, from, table, 0};
  int rc = inv_cluster_slots_each(reply, load_range, &l, err, errlen);
  return rc < 0 ? rc : l.covered;
}

static void apply_map(inv_cluster_t *c, node_t *from, node_t **table,
                      long covered) {
  size_t i, nprimaries = 0;
  int changed = c->mode != MODE_CLUSTER ||
                memcmp(table, c->slots, INV_SLOTS * sizeof(*table)) != 0;
  memcpy(c->slots, table, INV_SLOTS * sizeof(*table));
  for (i = 0; i < c->nnodes; i++) c->nodes[i]->primary = 0;
  for (i = 0; i < INV_SLOTS; i++)
    if (c->slots[i] != NULL && !c->slots[i]->primary) {
      c->slots[i]->primary = 1;
      c->slots[i]->first_slot = (unsigned)i;
      nprimaries++;
    }
  c->mode = MODE_CLUSTER;
  c->ready = 1;
  c->stats.map_refreshes++;
  if (changed)
    inv_log_info(LOG_CTX,
                 "slot map from %s:%d: %zu primaries, %ld of %d "
                 "slots covered",
                 from->host, from->port, nprimaries, covered, INV_SLOTS);
  /* Connections to nodes that are neither primaries nor seeds are not
   * needed any more (a failed-over primary, a replica we asked). */
  for (i = 0; i < c->nnodes; i++) {
    node_t *n = c->nodes[i];
    if (!n->primary && !n->seed && n != from) node_close_conn(n);
  }
}

/* Reads connected_slaves from an INFO replication answer. */
static void replication_cb(inv_redis_t *r, redisReply *reply, int err,
                           void *data) {
  node_t *n = data;
  const char *p;
  (void)r;
  if (err < 0 || reply->type != REDIS_REPLY_STRING || reply->str == NULL)
    return;
  p = strstr(reply->str, "connected_slaves:");
  if (p != NULL) n->replicas = atoi(p + 17);
}

/* Standalone: asks the node how many replicas are connected to it, which
 * CLUSTER SLOTS tells in a cluster. Called when the node is found and on
 * every refresh period, so a replica that comes or goes is seen within one
 * period. */
static void probe_replicas(inv_cluster_t *c) {
  static const char *argv[] = {"INFO", "replication"};
  static const size_t argvlen[] = {4, 11};
  if (c->single != NULL && node_ready(c->single))
    (void)inv_redis_command_argv(c->single->conn, 2, argv, argvlen,
                                 replication_cb, c->single);
}

static void become_standalone(inv_cluster_t *c, node_t *n) {
  size_t i;
  c->mode = MODE_STANDALONE;
  c->single = n;
  c->ready = 1;
  inv_log_info(LOG_CTX, "%s:%d is a standalone Redis", n->host, n->port);
  for (i = 0; i < c->nnodes; i++)
    if (c->nodes[i] != n) node_close_conn(c->nodes[i]);
  probe_replicas(c);
}

static void slots_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  node_t *from = data, **table;
  inv_cluster_t *c = from->c;
  long covered;
  char why[200] = "";
  (void)r;

  c->refreshing = 0;
  if (c->closing) return;
  c->rr++; /* the next refresh asks another node */
  if (err < 0) {
    request_refresh(c);
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    if (is_error_with(reply, "cluster support disabled")) {
      if (c->mode == MODE_UNKNOWN) become_standalone(c, from);
      kick(c);
      return;
    }
    inv_log_warn(LOG_CTX, "%s:%d: CLUSTER SLOTS failed: %.*s", from->host,
                 from->port, (int)reply->len, reply->str);
    request_refresh(c);
    return;
  }
  table = calloc(INV_SLOTS, sizeof(*table));
  if (table == NULL) {
    request_refresh(c);
    return;
  }
  covered = parse_slots(c, from, reply, table, why, sizeof(why));
  if (covered > 0) {
    apply_map(c, from, table, covered);
    kick(c);
  } else if (covered == 0) {
    inv_log_warn(LOG_CTX, "%s:%d: no slots are assigned yet", from->host,
                 from->port);
  } else if (covered == INV_EPROTO) {
    inv_log_warn(LOG_CTX, "%s:%d: malformed CLUSTER SLOTS reply: %s",
                 from->host, from->port, why);
  } else {
    inv_log_warn(LOG_CTX, "%s:%d: CLUSTER SLOTS reply not loaded: %s",
                 from->host, from->port, inv_strerror((int)covered));
  }
  free(table);
  if (covered <= 0 || c->refresh_wanted) request_refresh(c);
}

/* Sends CLUSTER SLOTS to a connected node, trying seeds and every node
 * seen, round robin. When none is connected, makes sure each has a
 * connection attempt going; the first to connect asks. */
static void do_refresh(inv_cluster_t *c) {
  static const char *argv[] = {"CLUSTER", "SLOTS"};
  static const size_t argvlen[] = {7, 5};
  size_t i;

  uv_timer_start(&c->refresh_timer, refresh_timer_cb, REFRESH_PERIOD_MS, 0);
  /* A refresh that got no answer for a whole period (command timeouts
   * disabled, node hung) no longer blocks the next one. */
  if (c->refreshing &&
      uv_now(c->loop) - c->last_refresh < 2 * REFRESH_PERIOD_MS)
    return;
  if (c->mode == MODE_STANDALONE) probe_replicas(c);
  if (c->mode == MODE_STANDALONE || c->nnodes == 0) return;
  for (i = 0; i < c->nnodes; i++) {
    node_t *n = c->nodes[(c->rr + i) % c->nnodes];
    if (!node_ready(n)) continue;
    if (inv_redis_command_argv(n->conn, 2, argv, argvlen, slots_cb, n) == 0) {
      c->rr = (c->rr + i) % c->nnodes;
      c->refreshing = 1;
      c->refresh_wanted = 0;
      c->last_refresh = uv_now(c->loop);
      return;
    }
  }
  c->refresh_wanted = 1;
  for (i = 0; i < c->nnodes; i++) (void)node_conn(c->nodes[i]);
}

/* Asks for a refresh as soon as the rate limit allows. */
static void request_refresh(inv_cluster_t *c) {
  uint64_t now, next;
  if (c->closing || c->mode == MODE_STANDALONE) return;
  if (c->refreshing) {
    /* The answer in flight may predate what prompted this request; while
     * the topology is still unknown, though, any answer will do (a failed
     * one asks again). */
    if (c->mode == MODE_CLUSTER) c->refresh_wanted = 1;
    return;
  }
  c->refresh_wanted = 1;
  now = uv_now(c->loop);
  next = c->last_refresh + REFRESH_MIN_GAP_MS;
  if (c->last_refresh == 0 || next <= now) {
    do_refresh(c);
    return;
  }
  if (uv_timer_get_due_in(&c->refresh_timer) > next - now)
    uv_timer_start(&c->refresh_timer, refresh_timer_cb, next - now, 0);
}

static void refresh_timer_cb(uv_timer_t *h) { do_refresh(h->data); }

/* ---- routing and sending ---------------------------------------------- */

/* A keyless command goes to a connected primary, sticking to the last one
 * used so that consecutive commands keep their order. */
static node_t *pick_keyless(inv_cluster_t *c, cmd_t *cmd) {
  size_t i;
  if (c->keyless != NULL && c->keyless != cmd->avoid && c->keyless->primary &&
      node_ready(c->keyless))
    return c->keyless;
  for (i = 0; i < c->nnodes; i++) {
    node_t *n = c->nodes[(c->rr + i) % c->nnodes];
    if (n->primary && n != cmd->avoid && node_ready(n)) return c->keyless = n;
  }
  /* Nothing connected: start connections to every primary and wait. The
   * avoided node is allowed again next time: it may be the only one. */
  for (i = 0; i < c->nnodes; i++)
    if (c->nodes[i]->primary) (void)node_conn(c->nodes[i]);
  cmd->avoid = NULL;
  return NULL;
}

static node_t *route(inv_cluster_t *c, cmd_t *cmd) {
  if (c->mode == MODE_STANDALONE) return c->single;
  if (c->mode != MODE_CLUSTER) return NULL;
  if (cmd->target != NULL) return cmd->target;
  if (cmd->has_key) return c->slots[cmd->slot];
  return pick_keyless(c, cmd);
}

static void asking_cb(inv_redis_t *r, redisReply *reply, int err, void *data) {
  (void)r;
  (void)reply;
  (void)err;
  (void)data;
}

static void node_reply_cb(inv_redis_t *r, redisReply *reply, int err,
                          void *data);
static void follow_reply_cb(inv_redis_t *r, redisReply *reply, int err,
                            void *data);

/* Sends the follow-up of a pair right after its first command on conn,
 * with the budget argument set to what is left of the deadline less a
 * fifth, so that the node's own answer (say, WAIT's count) comes before the
 * deadline does, and before a caller's own timer of the same length that
 * started a little earlier (the publisher's batch deadline). Without a
 * deadline the budget is 0 (WAIT: no limit). */
static void send_follow_up(inv_cluster_t *c, cmd_t *cmd, inv_redis_t *conn) {
  uint64_t now = uv_now(c->loop), left = 0;
  cmd->await = NULL;
  cmd->follow_conn = NULL;
  if (cmd->budget_arg >= 0) {
    if (cmd->deadline != 0) {
      left = cmd->deadline > now ? cmd->deadline - now : 0;
      left -= left / 5;
      if (left == 0) left = 1; /* 0 would mean no limit at all */
    }
    snprintf(cmd->budget, sizeof(cmd->budget), "%llu",
             (unsigned long long)left);
    cmd->argv2[cmd->budget_arg] = cmd->budget;
    cmd->argvlen2[cmd->budget_arg] = strlen(cmd->budget);
  }
  /* Capacity was checked, so only ENOMEM fails here; the first reply then
   * finds no follow-up and the pair fails with INV_EUNAVAIL. */
  if (inv_redis_command_argv(conn, cmd->argc2, cmd->argv2, cmd->argvlen2,
                             follow_reply_cb, cmd) == 0) {
    cmd->inflight++;
    cmd->follow_conn = conn;
  }
}

/* Sends cmd to its node. Returns 1 when sent, 0 when it has to wait (the
 * caller queues it); never calls the user callback. */
static int try_send(inv_cluster_t *c, cmd_t *cmd) {
  static const char *asking_argv[] = {"ASKING"};
  static const size_t asking_len[] = {6};
  node_t *n = route(c, cmd);
  inv_redis_t *conn;

  if (n == NULL) {
    request_refresh(c); /* no-op until the topology is known */
    return 0;
  }
  conn = node_conn(n);
  if (conn == NULL || !inv_redis_is_connected(conn)) {
    /* A connection that has had time to fail suggests the owner is gone:
     * learn whether the slot has a new owner. A fresh one is just
     * connecting. */
    if (c->mode == MODE_CLUSTER &&
        uv_now(c->loop) - n->conn_since >= REFRESH_MIN_GAP_MS)
      request_refresh(c);
    return 0;
  }
  /* Both commands of a pair go, or neither. */
  if (cmd->argc2 > 0 &&
      inv_redis_pending(conn) + 2 + (size_t)cmd->asking > c->opts.max_pending)
    return 0;
  if (cmd->asking) {
    /* ASKING must be followed by this very command: if the connection
     * could take ASKING but not the command, the next command on it would
     * be run under ASKING by mistake. */
    if (inv_redis_pending(conn) + 2 > c->opts.max_pending ||
        inv_redis_command_argv(conn, 1, asking_argv, asking_len, asking_cb,
                               NULL) != 0)
      return 0;
  }
  if (inv_redis_command_argv(conn, cmd->argc, cmd->argv, cmd->argvlen,
                             node_reply_cb, cmd) != 0)
    return 0; /* EBUSY or ENOMEM: the caller queues it for a retry */
  cmd->inflight++;
  if (cmd->argc2 > 0) send_follow_up(c, cmd, conn);
  cmd->sent_to = n;
  cmd->asking = 0;
  cmd->target = NULL;
  c->stats.round_trips++;
  if (c->keyless == NULL && !cmd->has_key) c->keyless = n;
  return 1;
}

static void send_or_wait(inv_cluster_t *c, cmd_t *cmd) {
  if (try_send(c, cmd)) return;
  cmd->next_try = 0;
  wait_push(c, cmd);
  arm_retry(c, RETRY_TICK_MS);
}

/* Follows a MOVED or ASK reply. Returns 1 when handled (resent, queued or
 * failed), 0 when reply is not a redirect. */
static int follow_redirect(inv_cluster_t *c, cmd_t *cmd, node_t *from,
                           const redisReply *reply) {
  inv_cluster_redirect_t rd;
  node_t *to;

  if (inv_cluster_redirect_parse(reply, &rd) != 1) return 0;
  if (rd.host[0] == '\0') snprintf(rd.host, sizeof(rd.host), "%s", from->host);
  c->stats.redirects++;
  if (++cmd->redirects > MAX_REDIRECTS) {
    inv_log_warn(LOG_CTX, "too many redirects for slot %u", rd.slot);
    finish(c, cmd, NULL, INV_EUNAVAIL);
    return 1;
  }
  to = add_node(c, rd.host, rd.port);
  if (to == NULL) {
    requeue(c, cmd);
    return 1;
  }
  cmd->target = to;
  if (rd.ask) {
    cmd->asking = 1;
  } else {
    /* The slot moved for good: route every command for it there now, and
     * learn what else changed. */
    if (c->mode == MODE_CLUSTER) {
      c->slots[rd.slot] = to;
      to->primary = 1;
    }
    request_refresh(c);
  }
  send_or_wait(c, cmd);
  return 1;
}

/* Returns a deep copy of reply, or NULL on ENOMEM. */
static redisReply *reply_copy(const redisReply *reply) {
  redisReply *out = calloc(1, sizeof(*out));
  size_t i;
  if (out == NULL) return NULL;
  out->type = reply->type;
  out->integer = reply->integer;
  if (reply->str != NULL) {
    out->str = malloc(reply->len + 1);
    if (out->str == NULL) goto err;
    memcpy(out->str, reply->str, reply->len);
    out->str[reply->len] = '\0';
    out->len = reply->len;
  }
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
    out->element = calloc(reply->elements, sizeof(*out->element));
    if (out->element == NULL) goto err;
    out->elements = reply->elements;
    for (i = 0; i < reply->elements; i++)
      if ((out->element[i] = reply_copy(reply->element[i])) == NULL) goto err;
  }
  return out;
err:
  reply_free(out);
  return NULL;
}

/* Frees what reply_copy made. Accepts NULL. */
static void reply_free(redisReply *r) {
  size_t i;
  if (r == NULL) return;
  for (i = 0; i < r->elements; i++) reply_free(r->element[i]);
  free(r->element);
  free(r->str);
  free(r);
}

/* The first command of a pair has its final reply: keep it until the
 * follow-up sent behind it on the same connection answers. */
static void pair_first_done(inv_cluster_t *c, cmd_t *cmd, inv_redis_t *r,
                            const redisReply *reply) {
  if (cmd->follow_conn != r) {
    finish(c, cmd, NULL, INV_EUNAVAIL);
    return;
  }
  cmd->first = reply_copy(reply);
  if (cmd->first == NULL) {
    finish(c, cmd, NULL, INV_ENOMEM);
    return;
  }
  cmd->await = r;
}

/* The follow-up's reply. Only the follow-up sent behind the first reply
 * just kept completes the pair: one sent behind a first command that was
 * redirected, refused with TRYAGAIN or lost went to the wrong node or ran
 * too early, so its reply is dropped (the pair has been or will be sent
 * again as a whole). Replies on one connection come in order, so a stale
 * follow-up on the connection of the current send arrives before the
 * current first reply, while await is still NULL. */
static void follow_reply_cb(inv_redis_t *r, redisReply *reply, int err,
                            void *data) {
  cmd_t *cmd = data;
  inv_cluster_t *c = cmd->c;
  redisReply pair, *both[2];

  INV_CHECK(cmd->inflight > 0);
  cmd->inflight--;
  if (cmd->answered) {
    if (cmd->inflight == 0) cmd_free(cmd);
    return;
  }
  if (cmd->await != r) return;
  cmd->await = NULL;
  if (c->closing) {
    finish(c, cmd, NULL, INV_ECLOSED);
    return;
  }
  if (err < 0) {
    /* The first command ran; sending it again would repeat it. */
    finish(c, cmd, NULL, INV_EUNAVAIL);
    return;
  }
  memset(&pair, 0, sizeof(pair));
  pair.type = REDIS_REPLY_ARRAY;
  pair.elements = 2;
  both[0] = cmd->first;
  both[1] = reply;
  pair.element = both;
  finish(c, cmd, &pair, 0);
}

static void node_reply_cb(inv_redis_t *r, redisReply *reply, int err,
                          void *data) {
  cmd_t *cmd = data;
  inv_cluster_t *c = cmd->c;
  node_t *from = cmd->sent_to;

  INV_CHECK(cmd->inflight > 0);
  cmd->inflight--;
  if (cmd->answered) {
    /* A zombie: its user was answered at the deadline. */
    if (cmd->inflight == 0) cmd_free(cmd);
    return;
  }
  if (c->closing) {
    finish(c, cmd, NULL, INV_ECLOSED);
    return;
  }
  if (err < 0) {
    if (err == INV_ETIMEDOUT) {
      /* The node timed out from the send, which was after the issue, so
       * the command's own deadline has passed too. */
      finish(c, cmd, NULL, INV_EUNAVAIL);
      return;
    }
    /* The node dropped: try again, elsewhere for a keyless command. */
    if (!cmd->has_key) cmd->avoid = from;
    requeue(c, cmd);
    if (c->mode == MODE_CLUSTER) request_refresh(c);
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    if (follow_redirect(c, cmd, from, reply)) return;
    if (strncmp(reply->str, "TRYAGAIN", 8) == 0 ||
        strncmp(reply->str, "CLUSTERDOWN", 11) == 0) {
      requeue(c, cmd);
      if (reply->str[0] == 'C') request_refresh(c);
      return;
    }
  }
  if (cmd->argc2 > 0) {
    pair_first_done(c, cmd, r, reply);
    return;
  }
  finish(c, cmd, reply, 0);
}

/* ---- timers ----------------------------------------------------------- */

/* Sends what can be sent from the wait list. Never calls user callbacks:
 * failures at the deadline are the deadline timer's job. */
static void retry_timer_cb(uv_timer_t *h) {
  inv_cluster_t *c = h->data;
  uint64_t now = uv_now(c->loop), wake = 0;
  size_t n = c->nwait;
  int blocked = 0;
  cmd_t *cmd;

  /* Each waiting command is taken from the head once and either sent or
   * put back at the tail, so the order among waiting commands holds. */
  while (n-- > 0 && (cmd = wait_first(c)) != NULL) {
    wait_remove(c, cmd);
    if (cmd->next_try > now) {
      if (wake == 0 || cmd->next_try < wake) wake = cmd->next_try;
      wait_push(c, cmd);
    } else if (!try_send(c, cmd)) {
      blocked = 1;
      wait_push(c, cmd);
    }
  }
  if (inv_queue_empty(&c->wait)) return;
  if (blocked || wake == 0 || wake - now > RETRY_TICK_MS)
    arm_retry(c, RETRY_TICK_MS);
  else
    arm_retry(c, wake - now);
}

static void deadline_timer_cb(uv_timer_t *h) {
  inv_cluster_t *c = h->data;
  uint64_t now = uv_now(c->loop);
  cmd_t *cmd;
  while (!c->closing && (cmd = all_first(c)) != NULL && cmd->deadline != 0 &&
         cmd->deadline <= now)
    finish(c, cmd, NULL, INV_EUNAVAIL);
  arm_deadline(c);
}

/* ---- public ----------------------------------------------------------- */

int inv_cluster_create(uv_loop_t *loop, const inv_addr_t *seeds, size_t nseeds,
                       const inv_redis_opts_t *opts, inv_cluster_t **out) {
  inv_cluster_t *c = NULL;
  inv_tls_ctx_t *tls;
  size_t i;
  int rc = INV_ENOMEM;

  if (loop == NULL || seeds == NULL || nseeds == 0 || out == NULL)
    return INV_EINVAL;
  c = calloc(1, sizeof(*c));
  if (c == NULL) goto err;
  inv_queue_init(&c->all);
  inv_queue_init(&c->wait);
  if (opts != NULL)
    c->opts = *opts;
  else
    inv_redis_opts_default(&c->opts);
  snprintf(c->name, sizeof(c->name), "%s",
           c->opts.name != NULL ? c->opts.name : "cluster");
  c->opts.name = c->name;
  tls = c->opts.tls;
  c->opts.tls = NULL; /* referenced below, once nothing else can fail */
  if (c->opts.max_pending == 0 || c->opts.connect_timeout_ms == 0) {
    rc = INV_EINVAL;
    goto err;
  }
  if (c->opts.password != NULL) {
    c->password = strdup(c->opts.password);
    if (c->password == NULL) goto err;
  }
  c->opts.password = c->password;
  if (c->opts.username != NULL) {
    c->username = strdup(c->opts.username);
    if (c->username == NULL) goto err;
  }
  c->opts.username = c->username;
  c->slots = calloc(INV_SLOTS, sizeof(*c->slots));
  if (c->slots == NULL) goto err;
  c->loop = loop;
  for (i = 0; i < nseeds; i++) {
    node_t *n;
    if (seeds[i].port <= 0 || seeds[i].port > 65535 || seeds[i].host[0] == 0) {
      rc = INV_EINVAL;
      goto err;
    }
    n = add_node(c, seeds[i].host, seeds[i].port);
    if (n == NULL) goto err;
    n->seed = 1;
  }
  /* Every node connection takes its own reference as well; this one keeps
   * the context for the nodes still to be discovered. */
  if (tls != NULL) c->opts.tls = inv_tls_ctx_ref(tls);
  uv_timer_init(loop, &c->refresh_timer);
  uv_timer_init(loop, &c->retry_timer);
  uv_timer_init(loop, &c->deadline_timer);
  c->refresh_timer.data = c->retry_timer.data = c->deadline_timer.data = c;
  c->open = 3;
  /* Connect to every seed; the first to answer CLUSTER SLOTS tells the
   * topology. The periodic timer also covers seeds that never connect. */
  for (i = 0; i < c->nnodes; i++) (void)node_conn(c->nodes[i]);
  uv_timer_start(&c->refresh_timer, refresh_timer_cb, REFRESH_PERIOD_MS, 0);
  *out = c;
  return 0;

err:
  if (c != NULL) cluster_free(c);
  return rc;
}

/* Copies argv into the block at *bytes (argvlen[] and argv[] at *vec);
 * advances both. */
static void copy_args(int argc, const char **argv, const size_t *argvlen,
                      const char ***out_argv, size_t **out_len, char **vec,
                      char **bytes) {
  int i;
  *out_len = (size_t *)*vec;
  *out_argv = (const char **)(*out_len + argc);
  *vec = (char *)(*out_argv + argc);
  for (i = 0; i < argc; i++) {
    size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
    memcpy(*bytes, argv[i], len);
    (*out_argv)[i] = *bytes;
    (*out_len)[i] = len;
    *bytes += len;
  }
}

static size_t args_size(int argc, const char **argv, const size_t *argvlen) {
  size_t total = (size_t)argc * (sizeof(size_t) + sizeof(char *));
  int i;
  for (i = 0; i < argc; i++) total += argvlen ? argvlen[i] : strlen(argv[i]);
  return total;
}

/* Issues a command, or a pair when argc2 > 0 (see the header). */
static int issue(inv_cluster_t *c, const char *key, size_t keylen, int argc,
                 const char **argv, const size_t *argvlen, int argc2,
                 const char **argv2, const size_t *argvlen2, int budget_arg,
                 inv_cluster_reply_cb cb, void *data) {
  cmd_t *cmd;
  char *vec, *bytes;
  size_t vecs;

  if (c == NULL || argc < 1 || argv == NULL || cb == NULL) return INV_EINVAL;
  if (c->closing) return INV_ESHUTDOWN;
  if (c->outstanding >= c->opts.max_pending) return INV_EBUSY;
  /* One block: the command, then argvlen[] and argv[] of each command (the
   * pointer arrays first, so they stay aligned), then the bytes. */
  vecs = (size_t)(argc + argc2) * (sizeof(size_t) + sizeof(char *));
  cmd = malloc(sizeof(*cmd) + args_size(argc, argv, argvlen) +
               (argc2 > 0 ? args_size(argc2, argv2, argvlen2) : 0));
  if (cmd == NULL) return INV_ENOMEM;
  memset(cmd, 0, sizeof(*cmd));
  cmd->c = c;
  vec = (char *)(cmd + 1);
  bytes = vec + vecs;
  cmd->argc = argc;
  copy_args(argc, argv, argvlen, &cmd->argv, &cmd->argvlen, &vec, &bytes);
  cmd->budget_arg = -1;
  if (argc2 > 0) {
    cmd->argc2 = argc2;
    copy_args(argc2, argv2, argvlen2, &cmd->argv2, &cmd->argvlen2, &vec,
              &bytes);
    cmd->budget_arg = budget_arg;
  }
  cmd->cb = cb;
  cmd->data = data;
  cmd->has_key = key != NULL;
  cmd->slot = key != NULL ? inv_key_slot(key, keylen) : 0;
  cmd->deadline = c->opts.command_timeout_ms
                      ? uv_now(c->loop) + c->opts.command_timeout_ms
                      : 0;

  inv_queue_insert_tail(&c->all, &cmd->all_node);
  c->outstanding++;
  if (!uv_is_active((uv_handle_t *)&c->deadline_timer)) arm_deadline(c);
  send_or_wait(c, cmd);
  return 0;
}

int inv_cluster_command_argv(inv_cluster_t *c, const char *key, size_t keylen,
                             int argc, const char **argv, const size_t *argvlen,
                             inv_cluster_reply_cb cb, void *data) {
  return issue(c, key, keylen, argc, argv, argvlen, 0, NULL, NULL, -1, cb,
               data);
}

int inv_cluster_pair_argv(inv_cluster_t *c, const char *key, size_t keylen,
                          int argc, const char **argv, const size_t *argvlen,
                          int argc2, const char **argv2, const size_t *argvlen2,
                          int budget_arg, inv_cluster_reply_cb cb, void *data) {
  if (key == NULL || argc2 < 1 || argv2 == NULL || budget_arg >= argc2)
    return INV_EINVAL;
  return issue(c, key, keylen, argc, argv, argvlen, argc2, argv2, argvlen2,
               budget_arg < 0 ? -1 : budget_arg, cb, data);
}

size_t inv_cluster_each_primary(inv_cluster_t *c, unsigned skip_slot,
                                inv_cluster_primary_fn fn, void *data) {
  size_t i, down = 0;
  node_t *skip;
  if (c == NULL || c->closing || c->mode != MODE_CLUSTER) return 0;
  skip = c->slots[skip_slot % INV_SLOTS];
  for (i = 0; i < c->nnodes; i++) {
    node_t *n = c->nodes[i];
    if (!n->primary || n == skip) continue;
    if (node_conn(n) != NULL && inv_redis_is_connected(n->conn))
      fn(n->conn, n->first_slot, data);
    else
      down++;
  }
  return down;
}

void inv_cluster_refresh(inv_cluster_t *c) {
  if (c != NULL) request_refresh(c);
}

int inv_cluster_ready(const inv_cluster_t *c) { return c != NULL && c->ready; }

int inv_cluster_reachable(const inv_cluster_t *c) {
  size_t i;
  if (c == NULL || c->closing || !c->ready) return 0;
  if (c->mode == MODE_STANDALONE)
    return c->single->conn != NULL && inv_redis_is_connected(c->single->conn);
  for (i = 0; i < c->nnodes; i++) {
    const node_t *n = c->nodes[i];
    if (n->primary && (n->conn == NULL || !inv_redis_is_connected(n->conn)))
      return 0;
  }
  return 1;
}

int inv_cluster_is_cluster(const inv_cluster_t *c) {
  return c != NULL && c->mode == MODE_CLUSTER;
}

void inv_cluster_get_stats(const inv_cluster_t *c, inv_cluster_stats_t *out) {
  size_t i;
  *out = c->stats;
  out->reconnects = c->closed_reconnects;
  for (i = 0; i < c->nnodes; i++)
    if (c->nodes[i]->conn != NULL)
      out->reconnects += inv_redis_stats(c->nodes[i]->conn)->reconnects;
}

void inv_cluster_close(inv_cluster_t *c, inv_redis_closed_cb closed_cb,
                       void *data) {
  cmd_t *cmd;
  size_t i;
  if (c == NULL || c->closing) return;
  c->closing = 1;
  c->closed_cb = closed_cb;
  c->closed_data = data;
  /* Answer everyone first; in-flight commands become zombies that the
   * node connections release as they close. */
  while ((cmd = all_first(c)) != NULL) finish(c, cmd, NULL, INV_ECLOSED);
  for (i = 0; i < c->nnodes; i++) node_close_conn(c->nodes[i]);
  uv_close((uv_handle_t *)&c->refresh_timer, timer_closed_cb);
  uv_close((uv_handle_t *)&c->retry_timer, timer_closed_cb);
  uv_close((uv_handle_t *)&c->deadline_timer, timer_closed_cb);
}

int inv_cluster_replicas(const inv_cluster_t *c, const char *key,
                         size_t keylen) {
  const node_t *n = NULL;
  if (c == NULL) return -1;
  if (c->mode == MODE_STANDALONE)
    n = c->single;
  else if (c->mode == MODE_CLUSTER)
    n = c->slots[inv_key_slot(key, keylen)];
  return n != NULL ? n->replicas : -1;
}

int inv_cluster_answer_resent(const inv_cluster_t *c) {
  return c->answer_resent;
}

const void *inv_cluster_node_of(const inv_cluster_t *c, const char *key,
                                size_t keylen) {
  if (c->mode == MODE_STANDALONE) return c->single;
  if (c->slots == NULL) return NULL;
  return c->slots[inv_key_slot(key, keylen)];
}

void inv_cluster_describe_owner(const inv_cluster_t *c, const char *key,
                                size_t keylen, char *out, size_t outlen) {
  const node_t *n = NULL;
  if (c->mode == MODE_STANDALONE)
    n = c->single;
  else if (c->slots != NULL)
    n = c->slots[inv_key_slot(key, keylen)];
  if (n == NULL) {
    snprintf(out, outlen, "no node known yet");
    return;
  }
  snprintf(out, outlen, "%s:%d%s", n->host, n->port,
           n->conn != NULL && inv_redis_is_connected(n->conn)
               ? ""
               : " (not connected)");
}

void inv_cluster_set_tls(inv_cluster_t *c, inv_tls_ctx_t *ctx) {
  size_t i;
  inv_tls_ctx_t *old = c->opts.tls;
  c->opts.tls = inv_tls_ctx_ref(ctx);
  inv_tls_ctx_free(old);
  for (i = 0; i < c->nnodes; i++)
    if (c->nodes[i]->conn != NULL) inv_redis_set_tls(c->nodes[i]->conn, ctx);
}
