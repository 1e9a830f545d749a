/*
 * invalctl bench: a load generator for inval-publisher, in the manner of
 * redis-benchmark. CLIENTS connections each keep up to PIPELINE invalidate
 * requests in flight (the client library's pipelined API, every socket in
 * one poll loop); each request carries K events of one kind. It reports
 * events/s and requests/s acked, the ack latency (request buffered to
 * reply read) and the errors by code; with --e2e it also measures the
 * time from sending each event to its key being gone on its Redis node
 * (see invalctl_bench_e2e.c).
 */
#define _GNU_SOURCE /* ppoll: pacing with a sub-millisecond timeout */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/base/addr.h"
#include "common/base/config.h"
#include "inval/errors.h"
#include "common/base/latency.h"
#include "proto/invalctl/invalctl.h"
#include "proto/invalctl/bench/invalctl_bench.h"

#define MAX_KEYS_PER_EVENT 1000
#define MAX_CLIENTS 10000
#define MAX_ERROR_CODES 32
#define TARGET_MAX 256

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  /* The first SIGINT stops sending; the second stops waiting. */
  interrupted = interrupted + 1;
}

typedef struct conn_s {
  inv_client_t *c;
  uint64_t *sent_us; /* ring indexed by msgid & ring_mask */
  int dead;
} conn_t;

typedef struct err_count_s {
  char name[16];
  uint64_t count;
} err_count_t;

typedef struct bench_s {
  const inv_ctl_opts_t *opts;
  /* Options. */
  uint64_t clients, pipeline, kpe, events, keyspace;
  inv_kind_t kind;
  inv_mode_t mode;
  int notify, json, csv, have_n;
  double duration, rate, wait_s;
  const char *key_prefix;
  inv_bench_e2e_opts_t e2e_opts;
  inv_ctl_redis_t redis_opts; /* --redis-user, --redis-tls, ... */
  int redis_flags;            /* one of those was given */
  int e2e;
  /* State. */
  conn_t *conns;
  uint32_t ring_mask;
  inv_bench_e2e_t *probe;
  inv_event_t *batch;
  char *targets;       /* kpe * TARGET_MAX bytes */
  uint64_t next_event; /* events handed out so far */
  uint64_t acked_events, acked_requests, sent_requests, refused_requests;
  uint64_t lost_requests; /* in flight on a connection that broke */
  inv_latency_t lat;
  err_count_t errs[MAX_ERROR_CODES];
  size_t nerrs;
  int broken;  /* a connection failed */
  int refused; /* the server refused a request */
  char probe_err[256];
  uint64_t t0, t_end_send, t_end;
} bench_t;

/* Counts one error under its code name. Past MAX_ERROR_CODES - 1 distinct
 * names, the rest share the last slot, named "OTHER". */
static void count_error(bench_t *b, const char *name) {
  size_t i;
  for (i = 0; i < b->nerrs; i++) {
    if (strcmp(b->errs[i].name, name) == 0) {
      b->errs[i].count++;
      return;
    }
  }
  if (b->nerrs == MAX_ERROR_CODES - 1) name = "OTHER";
  if (b->nerrs == MAX_ERROR_CODES) {
    b->errs[MAX_ERROR_CODES - 1].count++;
    return;
  }
  snprintf(b->errs[b->nerrs].name, sizeof b->errs[0].name, "%s", name);
  b->errs[b->nerrs++].count = 1;
}

/* ---- options ----------------------------------------------------------- */

static int parse_double(const char *s, double lo, double hi, double *out) {
  char *end;
  double v;
  if (s == NULL || *s == '\0') return -1;
  errno = 0;
  v = strtod(s, &end);
  if (errno != 0 || *end != '\0' || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

static int parse_args(bench_t *b, inv_ctl_opts_t *o, int argc, char **argv) {
  int i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    uint64_t u;
#define NEED_VALUE()                                               \
  do {                                                             \
    if (v == NULL)                                                 \
      return inv__ctl_usage_error("bench", "%s needs a value", a); \
    i++;                                                           \
  } while (0)
#define UINT_OPT(flag, field, lo, hi)                                    \
  if (strcmp(a, flag) == 0) {                                            \
    NEED_VALUE();                                                        \
    if (inv__ctl_parse_uint(v, hi, &u) != 0 || u < lo)                   \
      return inv__ctl_usage_error(                                       \
          "bench", "%s wants a number from %llu to %llu, not \"%s\"", a, \
          (unsigned long long)(lo), (unsigned long long)(hi), v);        \
    field = u;                                                           \
    continue;                                                            \
  }
    UINT_OPT("-c", b->clients, 1, MAX_CLIENTS)
    UINT_OPT("-P", b->pipeline, 1, 4096)
    UINT_OPT("--keys-per-event", b->kpe, 1, MAX_KEYS_PER_EVENT)
    UINT_OPT("--keyspace", b->keyspace, 1, UINT64_C(1) << 40)
    if (strcmp(a, "-n") == 0) {
      NEED_VALUE();
      if (inv__ctl_parse_uint(v, UINT64_C(1) << 40, &u) != 0 || u == 0)
        return inv__ctl_usage_error(
            "bench", "-n wants a number of events from 1, not \"%s\"", v);
      b->events = u;
      b->have_n = 1;
      continue;
    }
    if (strcmp(a, "-H") == 0 || strcmp(a, "--host") == 0) {
      inv_addr_t addr;
      NEED_VALUE();
      if (inv_addr_parse(v, &addr) != 0)
        return inv__ctl_usage_error("bench", "%s wants HOST:PORT, not \"%s\"",
                                    a, v);
      snprintf(o->host, sizeof o->host, "%s", addr.host);
      o->port = addr.port;
      continue;
    }
    if (strcmp(a, "--kind") == 0) {
      NEED_VALUE();
      if (strcmp(v, "key") == 0)
        b->kind = INV_KIND_KEY;
      else if (strcmp(v, "prefix") == 0)
        b->kind = INV_KIND_PREFIX;
      else if (strcmp(v, "pattern") == 0)
        b->kind = INV_KIND_PATTERN;
      else
        return inv__ctl_usage_error(
            "bench", "--kind wants key, prefix or pattern, not \"%s\"", v);
      continue;
    }
    if (strcmp(a, "--duration") == 0 || strcmp(a, "--rate") == 0 ||
        strcmp(a, "--wait") == 0) {
      double d;
      NEED_VALUE();
      if (parse_double(v, 0.001, 1e9, &d) != 0)
        return inv__ctl_usage_error(
            "bench", "%s wants a positive number, not \"%s\"", a, v);
      if (a[2] == 'd')
        b->duration = d;
      else if (a[2] == 'r')
        b->rate = d;
      else
        b->wait_s = d;
      continue;
    }
    if (strcmp(a, "--key-prefix") == 0) {
      NEED_VALUE();
      if (strlen(v) > 100)
        return inv__ctl_usage_error("bench",
                                    "--key-prefix is longer than 100 bytes");
      b->key_prefix = v;
      continue;
    }
    if (strcmp(a, "--redis") == 0) {
      inv_addr_t addr;
      NEED_VALUE();
      if (inv_addr_parse(v, &addr) != 0)
        return inv__ctl_usage_error("bench",
                                    "--redis wants HOST:PORT, not \"%s\"", v);
      if (b->e2e_opts.nseeds == INV_BENCH_MAX_SEEDS)
        return inv__ctl_usage_error("bench", "at most %d --redis seeds",
                                    INV_BENCH_MAX_SEEDS);
      b->e2e_opts.seeds[b->e2e_opts.nseeds++] = v;
      continue;
    }
    {
      int taken = inv__ctl_redis_opt("bench", argc, argv, &i, &b->redis_opts);
      if (taken < 0) return INV_CTL_EXIT_USAGE;
      if (taken > 0) {
        b->redis_flags = 1;
        continue;
      }
    }
    if (strcmp(a, "--notify") == 0) {
      b->notify = 1;
      continue;
    }
    if (strcmp(a, "--json") == 0) {
      b->json = 1;
      continue;
    }
    if (strcmp(a, "--csv") == 0) {
      b->csv = 1;
      continue;
    }
    if (strcmp(a, "--e2e") == 0) {
      b->e2e = 1;
      continue;
    }
    if (strcmp(a, "--soft") == 0) {
      b->mode = INV_MODE_SOFT;
      continue;
    }
#undef UINT_OPT
#undef NEED_VALUE
    return inv__ctl_usage_error("bench", "unknown argument %s", a);
  }
  if (b->json && b->csv)
    return inv__ctl_usage_error("bench", "--json and --csv exclude each other");
  if (b->e2e && b->e2e_opts.nseeds == 0)
    return inv__ctl_usage_error("bench",
                                "--e2e needs --redis HOST:PORT (a node "
                                "of the Redis the workers serve)");
  if (!b->e2e && (b->e2e_opts.nseeds > 0 || b->redis_flags))
    return inv__ctl_usage_error("bench", "--redis%s is only used with --e2e",
                                b->e2e_opts.nseeds > 0 ? "" : "-* options");
  if (b->e2e && !b->have_n)
    return inv__ctl_usage_error("bench", "--e2e needs -n (the keys to seed)");
  if (b->duration > 0 && !b->have_n) b->events = UINT64_MAX;
  return 0;
}

/* ---- targets ----------------------------------------------------------- */

/* Writes the target of event i. Without --e2e, events cycle through
 * --keyspace names: "<prefix>key:<n>", "<prefix>p:<n>:" (prefix) or
 * "<prefix>pat:<n>:*" (pattern). */
static size_t make_target(const bench_t *b, uint64_t i, char *buf) {
  int n;
  if (b->probe != NULL)
    return inv__bench_e2e_target(b->probe, i, buf, TARGET_MAX);
  i %= b->keyspace;
  switch (b->kind) {
    case INV_KIND_PREFIX:
      n = snprintf(buf, TARGET_MAX, "%sp:%" PRIu64 ":", b->key_prefix, i);
      break;
    case INV_KIND_PATTERN:
      n = snprintf(buf, TARGET_MAX, "%spat:%" PRIu64 ":*", b->key_prefix, i);
      break;
    default:
      n = snprintf(buf, TARGET_MAX, "%skey:%" PRIu64, b->key_prefix, i);
      break;
  }
  return n < 0 ? 0 : (size_t)n;
}

/* ---- the load loop ------------------------------------------------------ */

/* Marks a connection broken: its requests in flight are lost. */
static void conn_broke(bench_t *b, conn_t *cn, int rc) {
  if (cn->dead) return;
  cn->dead = 1;
  b->broken = 1;
  count_error(b, inv_err_name(rc));
  b->lost_requests += inv_client_outstanding(cn->c);
  fprintf(stderr, "%serror: %s:%d: %s\n",
          isatty(STDERR_FILENO) ? "\r\033[K" : "", b->opts->host, b->opts->port,
          inv_client_errstr(cn->c));
}

/* Buffers one request of up to kpe events on cn. Returns 1 when sent, 0
 * when nothing is left to send, -1 when the connection broke. The send
 * time is taken per request, so that a long round over many connections
 * does not make the later requests look slower. */
static int send_one(bench_t *b, conn_t *cn) {
  uint64_t k, first = b->next_event, n = b->kpe, now = inv_now_us();
  uint32_t msgid = 0;
  int rc;
  if (first >= b->events) return 0;
  if (b->events - first < n) n = b->events - first;
  for (k = 0; k < n; k++) {
    char *t = b->targets + k * TARGET_MAX;
    b->batch[k].kind = b->kind;
    b->batch[k].mode = b->mode;
    b->batch[k].target = t;
    b->batch[k].target_len = make_target(b, first + k, t);
  }
  if (b->notify)
    rc = inv_client_notify_invalidate(cn->c, b->batch, (size_t)n);
  else
    rc = inv_client_send_invalidate(cn->c, b->batch, (size_t)n, &msgid);
  if (rc != 0) {
    if (rc == INV_ETOOBIG || rc == INV_EINVAL) {
      /* A request the client refuses to send will never fit: give up. */
      count_error(b, inv_err_name(rc));
      fprintf(stderr, "error: %s\n", inv_client_errstr(cn->c));
      b->events = b->next_event;
      b->refused = 1;
      return 0;
    }
    conn_broke(b, cn, rc);
    return -1;
  }
  b->next_event += n;
  b->sent_requests++;
  if (!b->notify) cn->sent_us[msgid & b->ring_mask] = now;
  if (b->probe != NULL)
    for (k = 0; k < n; k++) inv__bench_e2e_sent(b->probe, first + k, now);
  return 1;
}

/* Reads every reply that has arrived on cn. */
static void read_replies(bench_t *b, conn_t *cn) {
  for (;;) {
    inv_client_reply_t r;
    int rc;
    if (inv_client_outstanding(cn->c) == 0) return;
    rc = inv_client_next_reply(cn->c, 0, &r);
    if (rc == INV_ETIMEDOUT) return;
    if (rc != 0) {
      conn_broke(b, cn, rc);
      return;
    }
    if (r.err != 0) {
      count_error(b, r.errname[0] != '\0' ? r.errname : inv_err_name(r.err));
      b->refused_requests++;
      b->refused = 1;
    } else if (!r.has_ack) {
      count_error(b, "EPROTO");
      b->refused_requests++;
      b->refused = 1;
    } else {
      uint64_t now = inv_now_us(), t = cn->sent_us[r.msgid & b->ring_mask];
      inv_latency_record(&b->lat, now > t ? now - t : 0);
      b->acked_events += r.ack.accepted;
      b->acked_requests++;
    }
  }
}

static uint64_t in_flight(const bench_t *b) {
  uint64_t i, n = 0;
  for (i = 0; i < b->clients; i++)
    if (!b->conns[i].dead) n += inv_client_outstanding(b->conns[i].c);
  return n;
}

static int all_dead(const bench_t *b) {
  uint64_t i;
  for (i = 0; i < b->clients; i++)
    if (!b->conns[i].dead) return 0;
  return 1;
}

static void progress(const bench_t *b, uint64_t now, uint64_t *last_events,
                     uint64_t *last_t) {
  uint64_t done = b->notify ? b->next_event : b->acked_events;
  double dt = (double)(now - *last_t) / 1e6;
  fprintf(stderr, "\r\033[K%6.1f s  %s %" PRIu64 " events  %.0f events/s",
          (double)(now - b->t0) / 1e6, b->notify ? "sent" : "acked", done,
          dt > 0 ? (double)(done - *last_events) / dt : 0.0);
  if (!b->notify)
    fprintf(stderr, "  ack p50 %.3f ms",
            inv_latency_quantile(&b->lat, 0.5) / 1e3);
  if (b->probe != NULL)
    fprintf(stderr, "  gone %" PRIu64, inv__bench_e2e_gone(b->probe));
  if (b->nerrs > 0) fprintf(stderr, "  errors!");
  fflush(stderr);
  *last_events = done;
  *last_t = now;
}

/* True when the probe still waits for keys whose events were acked (or
 * sent, with --notify). */
static int probe_waiting(const bench_t *b) {
  uint64_t want;
  if (b->probe == NULL) return 0;
  want = b->notify ? b->next_event : b->acked_events;
  return inv__bench_e2e_gone(b->probe) < want;
}

/* Runs the load. Sending stops at -n events, after --duration, or on
 * SIGINT; replies are then drained (for up to the timeout) and the probe
 * waits up to --wait seconds for the last keys. */
static void run_load(bench_t *b) {
  size_t nfds = (size_t)b->clients + 64;
  struct pollfd *pfd = calloc(nfds, sizeof *pfd);
  uint64_t last_events = 0, last_t, next_progress, deadline_send = UINT64_MAX;
  uint64_t drain_deadline = 0, probe_deadline = 0;
  int tty = isatty(STDERR_FILENO), sending = 1;
  size_t rr = 0;
  if (pfd == NULL) {
    fprintf(stderr, "error: out of memory\n");
    b->broken = 1;
    return;
  }
  b->t0 = last_t = inv_now_us();
  next_progress = b->t0 + 1000000;
  if (b->duration > 0) deadline_send = b->t0 + (uint64_t)(b->duration * 1e6);
  for (;;) {
    uint64_t now = inv_now_us(), i;
    size_t n = 0, nprobe = 0;
    int64_t wait_us = 100000;
    struct timespec ts;
    if (sending && (interrupted || now >= deadline_send ||
                    b->next_event >= b->events || all_dead(b))) {
      sending = 0;
      b->t_end_send = now;
      drain_deadline = now + (uint64_t)b->opts->timeout_ms * 1000;
    }
    if (!sending) {
      if (interrupted > 1 || all_dead(b)) break;
      if (in_flight(b) > 0 && now < drain_deadline) {
        /* still draining */
      } else {
        if (b->t_end == 0) {
          b->t_end = now;
          probe_deadline = now + (uint64_t)(b->wait_s * 1e6);
        }
        if (!probe_waiting(b) || now >= probe_deadline || interrupted) break;
      }
    }
    /* Send: round robin over connections with room in their pipeline,
     * within the --rate budget. */
    if (sending) {
      uint64_t budget = UINT64_MAX;
      if (b->rate > 0) {
        double allowed = b->rate * (double)(now - b->t0) / 1e6;
        double owed = allowed - (double)b->next_event;
        budget = owed >= 1 ? (uint64_t)(owed + b->kpe - 1) / b->kpe : 0;
        if (budget == 0) wait_us = (int64_t)((1.0 - owed) * 1e6 / b->rate) + 1;
      }
      for (i = 0; i < b->clients && budget > 0; i++) {
        conn_t *cn = &b->conns[(rr + i) % b->clients];
        int sent = 0;
        while (!cn->dead && budget > 0 && b->next_event < b->events &&
               (b->notify ? sent < (int)b->pipeline
                          : inv_client_outstanding(cn->c) < b->pipeline)) {
          if (send_one(b, cn) != 1) break;
          sent++;
          budget--;
        }
        if (sent > 0 && !cn->dead) {
          int rc = inv_client_flush(cn->c);
          if (rc != 0)
            conn_broke(b, cn, rc);
          else if (!b->notify)
            /* A flush that had to wait read the replies that came
             * meanwhile; poll() will not report those again. */
            read_replies(b, cn);
        }
      }
      rr = (rr + 1) % b->clients;
      if (b->notify && b->rate == 0) wait_us = 0;
    }
    for (i = 0; i < b->clients; i++) {
      if (b->conns[i].dead || inv_client_outstanding(b->conns[i].c) == 0)
        continue;
      pfd[n].fd = inv_client_fd(b->conns[i].c);
      pfd[n].events = POLLIN;
      pfd[n].revents = 0;
      n++;
    }
    if (b->probe != NULL)
      nprobe = inv__bench_e2e_pollfds(b->probe, pfd + n, nfds - n);
    if (tty) {
      int64_t until = (int64_t)(next_progress - now);
      if (until < wait_us) wait_us = until < 0 ? 0 : until;
    }
    ts.tv_sec = wait_us / 1000000;
    ts.tv_nsec = (wait_us % 1000000) * 1000;
    if (ppoll(pfd, n + nprobe, &ts, NULL) < 0 && errno != EINTR) {
      fprintf(stderr, "error: poll: %s\n", strerror(errno));
      b->broken = 1;
      break;
    }
    /* Replies: the clients whose sockets are readable. */
    {
      size_t j = 0;
      for (i = 0; i < b->clients; i++) {
        conn_t *cn = &b->conns[i];
        if (cn->dead || inv_client_outstanding(cn->c) == 0) continue;
        if (j < n && pfd[j].fd == inv_client_fd(cn->c)) {
          if (pfd[j].revents != 0) read_replies(b, cn);
          j++;
        }
      }
    }
    if (nprobe > 0 && b->probe_err[0] == '\0' &&
        inv__bench_e2e_read(b->probe, pfd + n, nprobe, b->probe_err,
                            sizeof b->probe_err) != 0) {
      fprintf(stderr, "error: %s\n", b->probe_err);
      b->broken = 1;
      break;
    }
    now = inv_now_us();
    if (tty && now >= next_progress) {
      progress(b, now, &last_events, &last_t);
      next_progress = now + 1000000;
    }
  }
  if (b->t_end_send == 0) b->t_end_send = inv_now_us();
  if (b->t_end == 0) b->t_end = inv_now_us();
  if (!b->notify) b->lost_requests += in_flight(b);
  if (tty) fputs("\r\033[K", stderr);
  free(pfd);
}

/* ---- report ------------------------------------------------------------- */

static void report_text(const bench_t *b, double secs) {
  size_t i;
  const char *kind = inv_kind_name(b->kind);
  uint64_t done = b->notify ? b->next_event : b->acked_events;
  printf("====== invalctl bench: %s events, %" PRIu64 " per request ======\n",
         kind, b->kpe);
  printf("  %" PRIu64 " clients, pipeline %" PRIu64 "%s%s\n", b->clients,
         b->pipeline, b->notify ? ", notifications (no acks)" : "",
         b->rate > 0 ? ", paced" : "");
  printf("  %" PRIu64 " events %s in %.3f s\n", done,
         b->notify ? "sent" : "acked", secs);
  printf("  events/s:   %.0f\n", secs > 0 ? (double)done / secs : 0.0);
  printf("  requests/s: %.0f\n",
         secs > 0
             ? (double)(b->notify ? b->sent_requests : b->acked_requests) / secs
             : 0.0);
  if (!b->notify)
    printf("  ack latency ms: p50 %.3f  p95 %.3f  p99 %.3f  max %.3f\n",
           inv_latency_quantile(&b->lat, 0.5) / 1e3,
           inv_latency_quantile(&b->lat, 0.95) / 1e3,
           inv_latency_quantile(&b->lat, 0.99) / 1e3, b->lat.max_us / 1e3);
  if (b->probe != NULL) {
    const inv_latency_t *l = inv__bench_e2e_latency(b->probe);
    printf("  end to end (send -> key gone, %zu primaries%s): %" PRIu64
           " of %" PRIu64 " keys gone\n",
           inv__bench_e2e_primaries(b->probe),
           inv__bench_e2e_is_cluster(b->probe) ? ", cluster" : "",
           inv__bench_e2e_gone(b->probe), b->next_event);
    printf("  e2e latency ms: p50 %.3f  p95 %.3f  p99 %.3f  max %.3f\n",
           inv_latency_quantile(l, 0.5) / 1e3,
           inv_latency_quantile(l, 0.95) / 1e3,
           inv_latency_quantile(l, 0.99) / 1e3, l->max_us / 1e3);
  }
  if (b->nerrs == 0 && b->lost_requests == 0) {
    printf("  errors: none\n");
    return;
  }
  printf("  errors:");
  for (i = 0; i < b->nerrs; i++)
    printf(" %s %" PRIu64, b->errs[i].name, b->errs[i].count);
  if (b->lost_requests > 0)
    printf(" (requests lost in flight: %" PRIu64 ")", b->lost_requests);
  printf("\n");
}

static void json_latency(const inv_latency_t *l) {
  printf("{\"p50\": %" PRIu64 ", \"p95\": %" PRIu64 ", \"p99\": %" PRIu64
         ", \"max\": %" PRIu64 ", \"mean\": %.1f, \"count\": %" PRIu64 "}",
         inv_latency_quantile(l, 0.5), inv_latency_quantile(l, 0.95),
         inv_latency_quantile(l, 0.99), l->max_us,
         l->count > 0 ? (double)l->sum_us / (double)l->count : 0.0, l->count);
}

static void report_json(const bench_t *b, double secs) {
  size_t i;
  uint64_t done = b->notify ? b->next_event : b->acked_events;
  uint64_t reqs = b->notify ? b->sent_requests : b->acked_requests;
  printf("{\"kind\": \"%s\", \"mode\": \"%s\", \"clients\": %" PRIu64
         ", \"pipeline\": %" PRIu64 ", \"keys_per_event\": %" PRIu64
         ", \"notify\": %s, \"rate\": %.1f,\n",
         inv_kind_name(b->kind), inv_mode_name(b->mode), b->clients,
         b->pipeline, b->kpe, b->notify ? "true" : "false", b->rate);
  printf(" \"sent_events\": %" PRIu64 ", \"sent_requests\": %" PRIu64
         ", \"acked_events\": %" PRIu64 ", \"acked_requests\": %" PRIu64
         ", \"refused_requests\": %" PRIu64 ", \"lost_requests\": %" PRIu64
         ",\n",
         b->next_event, b->sent_requests, b->acked_events, b->acked_requests,
         b->refused_requests, b->lost_requests);
  printf(
      " \"seconds\": %.6f, \"events_per_sec\": %.1f, \"requests_per_sec\": "
      "%.1f,\n \"ack_latency_us\": ",
      secs, secs > 0 ? (double)done / secs : 0.0,
      secs > 0 ? (double)reqs / secs : 0.0);
  json_latency(&b->lat);
  printf(",\n \"errors\": {");
  for (i = 0; i < b->nerrs; i++)
    printf("%s\"%s\": %" PRIu64, i > 0 ? ", " : "", b->errs[i].name,
           b->errs[i].count);
  printf("}");
  if (b->probe != NULL) {
    printf(
        ",\n \"e2e\": {\"primaries\": %zu, \"cluster\": %s, \"keys\": %" PRIu64
        ", \"gone\": %" PRIu64 ", \"early\": %" PRIu64 ", \"latency_us\": ",
        inv__bench_e2e_primaries(b->probe),
        inv__bench_e2e_is_cluster(b->probe) ? "true" : "false", b->next_event,
        inv__bench_e2e_gone(b->probe), inv__bench_e2e_early(b->probe));
    json_latency(inv__bench_e2e_latency(b->probe));
    printf("}");
  }
  printf("}\n");
}

/* One CSV row in redis-benchmark's --csv columns: the test's name, the
 * rate, then latencies in milliseconds (min is not kept; 0 when empty). */
static void csv_row(const char *test, double rate, const inv_latency_t *l) {
  printf("\"%s\",\"%.2f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\"\n", test,
         rate, l->count > 0 ? (double)l->sum_us / (double)l->count / 1e3 : 0.0,
         inv_latency_quantile(l, 0.5) / 1e3,
         inv_latency_quantile(l, 0.95) / 1e3,
         inv_latency_quantile(l, 0.99) / 1e3, l->max_us / 1e3);
}

/* The figures as CSV with redis-benchmark's header (less its min column),
 * so the same spreadsheet or script reads both: one row for the acks
 * (events/s), one for end to end with --e2e. */
static void report_csv(const bench_t *b, double secs) {
  uint64_t done = b->notify ? b->next_event : b->acked_events;
  char test[64];
  printf(
      "\"test\",\"rps\",\"avg_latency_ms\",\"p50_latency_ms\","
      "\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n");
  snprintf(test, sizeof(test), "INVALIDATE %s%s", inv_kind_name(b->kind),
           b->notify ? " (notify)" : "");
  csv_row(test, secs > 0 ? (double)done / secs : 0.0, &b->lat);
  if (b->probe != NULL)
    csv_row("E2E (send to key gone)", secs > 0 ? (double)done / secs : 0.0,
            inv__bench_e2e_latency(b->probe));
}

/* ---- entry point -----------------------------------------------------------
 */

static int run(const inv_ctl_opts_t *gopts, int argc, char **argv) {
  bench_t b;
  inv_ctl_opts_t o = *gopts;
  uint64_t i;
  uint32_t ring = 1;
  int rc, exit_code = INV_CTL_EXIT_OK;
  double secs;
  memset(&b, 0, sizeof b);
  b.clients = 50;
  b.pipeline = 16;
  b.kpe = 1;
  b.events = 100000;
  b.keyspace = 1000000;
  b.kind = INV_KIND_KEY;
  b.mode = INV_MODE_HARD;
  b.wait_s = 10;
  b.key_prefix = "bench:";
  rc = parse_args(&b, &o, argc, argv);
  if (rc != 0) return rc;
  b.opts = &o;
  while (ring < b.pipeline + 2) ring <<= 1;
  b.ring_mask = ring - 1;

  b.conns = calloc((size_t)b.clients, sizeof *b.conns);
  b.batch = calloc((size_t)b.kpe, sizeof *b.batch);
  b.targets = malloc((size_t)b.kpe * TARGET_MAX);
  if (b.conns == NULL || b.batch == NULL || b.targets == NULL) {
    fprintf(stderr, "error: out of memory\n");
    exit_code = INV_CTL_EXIT_CONNECT;
    goto done;
  }
  if (b.e2e) {
    char err[256];
    b.e2e_opts.key_prefix = b.key_prefix;
    b.e2e_opts.kind = b.kind;
    b.e2e_opts.nkeys = b.events;
    b.e2e_opts.timeout_ms = o.timeout_ms;
    if ((exit_code = inv__ctl_redis_setup(&b.redis_opts)) != 0) goto done;
    b.e2e_opts.username = b.redis_opts.user;
    b.e2e_opts.password = b.redis_opts.password;
    b.e2e_opts.tls = b.redis_opts.tls_ctx;
    if (inv__bench_e2e_start(&b.e2e_opts, &b.probe, err, sizeof err) != 0) {
      fprintf(stderr, "error: --e2e: %s\n", err);
      exit_code = INV_CTL_EXIT_CONNECT;
      goto done;
    }
  }
  for (i = 0; i < b.clients; i++) {
    inv_client_opts_t co;
    char err[256];
    inv_client_opts_default(&co);
    co.client_name = "invalctl-bench";
    co.token = o.token;
    co.connect_timeout_ms = o.timeout_ms;
    co.timeout_ms = o.timeout_ms;
    co.tls = o.tls;
    co.tls_ca_file = o.tls_ca;
    co.tls_verify = !o.insecure;
    co.max_outstanding = (size_t)b.pipeline;
    b.conns[i].sent_us = calloc(ring, sizeof(uint64_t));
    if (b.conns[i].sent_us == NULL) {
      fprintf(stderr, "error: out of memory\n");
      exit_code = INV_CTL_EXIT_CONNECT;
      goto done;
    }
    rc =
        inv_client_connect(o.host, o.port, &co, &b.conns[i].c, err, sizeof err);
    if (rc != 0) {
      fprintf(stderr, "error: connection %" PRIu64 " to %s:%d: %s (%s)\n",
              i + 1, o.host, o.port, err, inv_err_name(rc));
      exit_code =
          inv_err_is_wire(rc) ? INV_CTL_EXIT_SERVER : INV_CTL_EXIT_CONNECT;
      goto done;
    }
  }
  signal(SIGINT, on_signal);
  run_load(&b);
  signal(SIGINT, SIG_DFL);
  secs =
      (double)(b.t_end_send > b.t0 ? (b.notify ? b.t_end_send : b.t_end) - b.t0
                                   : 0) /
      1e6;
  if (b.json)
    report_json(&b, secs);
  else if (b.csv)
    report_csv(&b, secs);
  else
    report_text(&b, secs);
  fflush(stdout);
  if (b.broken || b.lost_requests > 0)
    exit_code = INV_CTL_EXIT_CONNECT;
  else if (b.refused || (b.probe != NULL && probe_waiting(&b)))
    exit_code = INV_CTL_EXIT_SERVER;
  if (b.probe != NULL && probe_waiting(&b))
    fprintf(stderr, "error: %" PRIu64 " keys were not gone within %.1f s\n",
            (b.notify ? b.next_event : b.acked_events) -
                inv__bench_e2e_gone(b.probe),
            b.wait_s);
done:
  if (b.conns != NULL) {
    for (i = 0; i < b.clients; i++) {
      inv_client_close(b.conns[i].c);
      free(b.conns[i].sent_us);
    }
  }
  free(b.conns);
  free(b.batch);
  free(b.targets);
  inv__bench_e2e_free(b.probe);
  inv__ctl_redis_free(&b.redis_opts);
  return exit_code;
}

const inv_ctl_cmd_t inv__ctl_cmd_bench = {
    "bench", "load-test the publisher (events/s, ack and end-to-end latency)",
    "Usage: invalctl [OPTIONS] bench [-H HOST:PORT] [-c CLIENTS] [-n EVENTS]\n"
    "                [-P PIPELINE] [--keys-per-event K] [--kind KIND]\n"
    "                [--notify] [--duration S] [--rate EVENTS_PER_S]\n"
    "                [--keyspace N] [--key-prefix P] [--soft] [--json|--csv]\n"
    "                [--e2e --redis HOST:PORT... [--wait S]\n"
    "                 [--redis-user USER] [--redis-tls ...]]\n"
    "\n"
    "Sends invalidations to the publisher as fast as it acks them (or at\n"
    "--rate) and prints events/s, requests/s, the ack latency (request\n"
    "buffered to ack read) p50/p95/p99/max and the errors by code. A live\n"
    "progress line is shown on a terminal (stderr, once a second).\n"
    "\n"
    "  -H HOST:PORT        the publisher (also a global option)\n"
    "  -c CLIENTS          connections (default 50)\n"
    "  -n EVENTS           events to send (default 100000; unlimited with\n"
    "                      --duration alone)\n"
    "  -P PIPELINE         requests in flight per connection (default 16)\n"
    "  --keys-per-event K  events (keys) per invalidate request (default 1)\n"
    "  --kind KIND         key (default), prefix or pattern; targets are\n"
    "                      <P>key:<N>, <P>p:<N>: or <P>pat:<N>:* with N\n"
    "                      cycling through --keyspace (default 1000000)\n"
    "                      and P the --key-prefix (default \"bench:\").\n"
    "                      Prefix and pattern events make every worker\n"
    "                      SCAN its node.\n"
    "  --notify            send notifications (never acked): the rate is\n"
    "                      what was written, not what was carried out\n"
    "  --duration S        stop sending after S seconds\n"
    "  --rate R            pace the sending at R events/s in total\n"
    "  --soft              soft mode events\n"
    "  --json              print the figures as one JSON object (latencies\n"
    "                      in microseconds)\n"
    "  --csv               print the figures as CSV with redis-benchmark's\n"
    "                      --csv columns (latencies in milliseconds): one\n"
    "                      row for the acks, one for --e2e\n"
    "  --e2e               end to end: seed one key per event on the Redis\n"
    "                      primaries (<P>e2e:<N>, or <P>e2e:<N>:k for prefix\n"
    "                      and pattern), then measure the time from sending\n"
    "                      each event to its key being gone on its node, with\n"
    "                      keyevent notifications (notify-keyspace-events "
    "gets\n"
    "                      E and g while the run lasts); workers must run\n"
    "  --redis HOST:PORT   a Redis node (standalone or any cluster node);\n"
    "                      repeat for more seeds\n" INV_CTL_REDIS_USAGE
    "                         (the ACL user needs what README's \"Redis TLS\n"
    "                         and ACL users\" gives inval-bench)\n"
    "  --wait S            how long to wait for the last keys (default 10)\n"
    "\n"
    "Ctrl-C stops sending; the replies in flight are still collected and\n"
    "the figures printed (a second Ctrl-C stops waiting for them).\n"
    "\n"
    "Exit codes: 0 every event acked (and, with --e2e, every key gone),\n"
    "1 the server refused requests or keys were not gone in time, 2 usage,\n"
    "3 a connection failed (requests in flight on it count as lost).\n",
    run};
