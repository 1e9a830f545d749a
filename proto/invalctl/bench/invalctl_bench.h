/*
 * Private to invalctl bench: what the load generator (invalctl_bench.c)
 * shares with its end-to-end probe (invalctl_bench_e2e.c).
 *
 * The probe seeds one key per event on the Redis primaries that own them,
 * subscribes to the keyevent notifications for del, unlink and rename_from
 * (a soft invalidation renames the key to its stale copy) on every primary, and
 * turns each notification of a seeded key into a latency sample: the time from
 * the moment the load generator buffered the event to the moment the key's node
 * announced it gone. Keys are named
 * "<key prefix>e2e:<index>" (plus ":k" for prefix and pattern events), so
 * a notification is matched to its send time by parsing the index.
 */
#ifndef INV_INVALCTL_BENCH_H
#define INV_INVALCTL_BENCH_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/latency.h"
#include "proto/event.h"

#define INV_BENCH_MAX_SEEDS 16

typedef struct inv_bench_e2e_s inv_bench_e2e_t;
struct inv_tls_ctx_s;

typedef struct inv_bench_e2e_opts_s {
  const char *seeds[INV_BENCH_MAX_SEEDS]; /* "host:port" of Redis nodes */
  size_t nseeds;
  const char *key_prefix;    /* names are "<key_prefix>e2e:<index>..." */
  inv_kind_t kind;           /* the kind of event the load generator sends */
  uint64_t nkeys;            /* one key per event, indexes 0..nkeys-1 */
  int timeout_ms;            /* connect and command timeout */
  const char *username;      /* with password: AUTH username password */
  const char *password;      /* NULL: no AUTH */
  struct inv_tls_ctx_s *tls; /* TLS to every node, or NULL: plain TCP */
} inv_bench_e2e_opts_t;

/*
 * Connects to the nodes (standalone or cluster: CLUSTER SLOTS tells), turns
 * on keyevent notifications for generic commands (E and g) on every
 * primary, subscribes to __keyevent@0__:del, :unlink and :rename_from, and
 * seeds every key. Returns 0 and *out, or -1 with a message in err. The caller
 * owns *out and frees it with inv__bench_e2e_free(), which also restores each
 * primary's notify-keyspace-events setting.
 */
int inv__bench_e2e_start(const inv_bench_e2e_opts_t *opts,
                         inv_bench_e2e_t **out, char *err, size_t errlen);

void inv__bench_e2e_free(inv_bench_e2e_t *e); /* accepts NULL */

/* The target of event index i, written to buf (NUL-terminated). Returns
 * its length. The seeded key for i is the target itself for kind key, and
 * the target's prefix followed by "k" for prefix and pattern. */
size_t inv__bench_e2e_target(const inv_bench_e2e_t *e, uint64_t i, char *buf,
                             size_t buflen);

/* Records that event index i was sent at now_us. */
void inv__bench_e2e_sent(inv_bench_e2e_t *e, uint64_t i, uint64_t now_us);

/* Fills up to max pollfds with the subscriber sockets; returns the count. */
size_t inv__bench_e2e_pollfds(const inv_bench_e2e_t *e, struct pollfd *pfd,
                              size_t max);

/* Reads what arrived on the subscriber sockets whose revents are set in
 * pfd[0..n) (as filled by inv__bench_e2e_pollfds) and records a latency
 * sample for every seeded key reported gone. Returns 0, or -1 with a
 * message in err when a subscription broke. */
int inv__bench_e2e_read(inv_bench_e2e_t *e, const struct pollfd *pfd, size_t n,
                        char *err, size_t errlen);

/* Keys reported gone so far, and the latency histogram (send to gone). */
uint64_t inv__bench_e2e_gone(const inv_bench_e2e_t *e);
const inv_latency_t *inv__bench_e2e_latency(const inv_bench_e2e_t *e);

/* Notifications for seeded keys whose event had not been sent yet (a
 * sign that something else deletes the benchmark's keys). */
uint64_t inv__bench_e2e_early(const inv_bench_e2e_t *e);

/* The number of primaries watched, and 1 when the nodes form a cluster. */
size_t inv__bench_e2e_primaries(const inv_bench_e2e_t *e);
int inv__bench_e2e_is_cluster(const inv_bench_e2e_t *e);

#endif
