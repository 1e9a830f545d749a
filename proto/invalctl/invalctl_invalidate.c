/*
 * invalctl invalidate: sends key, prefix and pattern events. Events from
 * the command line and from stdin ("-") go through one batcher: a request
 * holds up to the server's max_events events and stays under its
 * max_message_bytes; up to --window requests are in flight at once
 * (pipelined over one connection), and the acks are matched by msgid.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common/base/buf.h"
#include "inval/errors.h"
#include "proto/codec.h"
#include "proto/invalctl/invalctl.h"
#include "proto/log_shard.h"
#include "proto/stream_id.h"

#define DEFAULT_MAX_EVENTS 1000
#define DEFAULT_MAX_BYTES (1024 * 1024)
#define DEFAULT_WINDOW 32
/* Bytes an event adds to a request besides its target (see client.c). */
#define EVENT_OVERHEAD 48
/* How often --wait polls the publisher's stats (whose workers view is
 * itself refreshed about once a second). */
#define WAIT_POLL_MS 200
/* How often the progress line of "invalidate -" is redrawn. */
#define PROGRESS_EVERY_S 0.25

typedef struct sender_s {
  const inv_ctl_opts_t *opts;
  inv_client_t *c;
  inv_mode_t mode;
  size_t window;
  size_t max_events, max_bytes;
  /* The batch being filled: kinds and target offsets into keys. */
  inv_event_t *batch;
  size_t *offsets;
  size_t n, bytes;
  inv_buf_t keys;
  uint64_t acked, requests, sent;
  int progress; /* stderr is a terminal: show a progress line */
  double t0, progress_at;
  char last_id[INV_SID_STRLEN];
  /* Per log shard, the newest entry id the acks named ("" for a shard no
   * ack named): what --wait waits for. */
  char shard_ids[INV_LOG_SHARDS][INV_SID_STRLEN];
  int exit_code; /* first failure's exit code; 0 while all is well */
} sender_t;

/* Returns 1 when log id a ("ms-seq") is after b. */
static int id_after(const char *a, const char *b) {
  unsigned long long ams = 0, aseq = 0, bms = 0, bseq = 0;
  sscanf(a, "%llu-%llu", &ams, &aseq);
  sscanf(b, "%llu-%llu", &bms, &bseq);
  return ams > bms || (ams == bms && aseq > bseq);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Redraws the progress line (on a terminal only) at most every
 * PROGRESS_EVERY_S, or now when force is set. */
static void show_progress(sender_t *s, int force) {
  double t = now_s();
  if (!s->progress || (!force && t - s->progress_at < PROGRESS_EVERY_S)) return;
  s->progress_at = t;
  fprintf(stderr, "\r%llu events sent, %llu acked (%.0f events/s)   ",
          (unsigned long long)s->sent, (unsigned long long)s->acked,
          t > s->t0 ? (double)s->acked / (t - s->t0) : 0.0);
  fflush(stderr);
}

/* Waits for one reply and accounts for it. */
static void collect(sender_t *s) {
  inv_client_reply_t r;
  int rc = inv_client_next_reply(s->c, -1, &r);
  if (rc != 0) {
    int code = inv__ctl_call_error(s->opts, s->c, rc);
    if (s->exit_code == 0) s->exit_code = code;
    return;
  }
  if (r.err != 0) {
    if (s->exit_code == 0) {
      fprintf(stderr, "error: %s: %s\n", r.errname, r.errstr);
      s->exit_code = INV_CTL_EXIT_SERVER;
    }
    return;
  }
  if (!r.has_ack) {
    if (s->exit_code == 0) {
      fprintf(stderr, "error: the server's reply is not an invalidate ack\n");
      s->exit_code = INV_CTL_EXIT_SERVER;
    }
    return;
  }
  s->acked += r.ack.accepted;
  if (s->last_id[0] == '\0' || id_after(r.ack.id, s->last_id))
    snprintf(s->last_id, sizeof s->last_id, "%s", r.ack.id);
  for (size_t k = 0; k < r.ack.nids; k++) {
    char *have = s->shard_ids[r.ack.ids[k].shard];
    if (have[0] == '\0' || id_after(r.ack.ids[k].id, have))
      snprintf(have, sizeof s->shard_ids[0], "%s", r.ack.ids[k].id);
  }
  show_progress(s, 0);
}

/* Sends the batch being filled, first waiting for replies while the
 * window is full. */
static void send_batch(sender_t *s) {
  size_t i;
  int rc;
  if (s->n == 0 || s->exit_code != 0) return;
  while (inv_client_outstanding(s->c) >= s->window && s->exit_code == 0)
    collect(s);
  if (s->exit_code != 0) return;
  for (i = 0; i < s->n; i++) s->batch[i].target = s->keys.data + s->offsets[i];
  rc = inv_client_send_invalidate(s->c, s->batch, s->n, NULL);
  if (rc != 0) {
    s->exit_code = inv__ctl_call_error(s->opts, s->c, rc);
    return;
  }
  s->requests++;
  s->sent += s->n;
  s->n = 0;
  s->bytes = 0;
  inv_buf_reset(&s->keys);
}

/* Adds one event to the batch, sending the batch first when the event
 * would not fit. Returns 0, or -1 when sending has failed. */
static int add_event(sender_t *s, inv_kind_t kind, const char *target,
                     size_t len) {
  if (s->n > 0 &&
      (s->n >= s->max_events || s->bytes + EVENT_OVERHEAD + len > s->max_bytes))
    send_batch(s);
  if (s->exit_code != 0) return -1;
  s->offsets[s->n] = s->keys.len;
  if (inv_buf_append(&s->keys, target, len) != 0) {
    fprintf(stderr, "error: out of memory\n");
    s->exit_code = INV_CTL_EXIT_CONNECT;
    return -1;
  }
  s->batch[s->n].kind = kind;
  s->batch[s->n].mode = s->mode;
  s->batch[s->n].target_len = len;
  s->n++;
  s->bytes += EVENT_OVERHEAD + len;
  return 0;
}

/* Reads keys from stdin, one per line; empty lines are skipped. */
static int add_stdin(sender_t *s) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int rc = 0;
  while ((len = getline(&line, &cap, stdin)) >= 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (len == 0) continue;
    if (add_event(s, INV_KIND_KEY, line, (size_t)len) != 0) {
      rc = -1;
      break;
    }
  }
  free(line);
  return rc;
}

/* Reads a string field of a heartbeat record into out ("-" when absent). */
static void rec_text(const msgpack_object *rec, const char *key, char *out,
                     size_t outlen) {
  const msgpack_object *v = inv_map_get(rec, key);
  if (v != NULL && v->type == MSGPACK_OBJECT_STR)
    snprintf(out, outlen, "%.*s", (int)v->via.str.size, v->via.str.ptr);
  else if (v != NULL && v->type == MSGPACK_OBJECT_BIN)
    snprintf(out, outlen, "%.*s", (int)v->via.bin.size, v->via.bin.ptr);
  else
    snprintf(out, outlen, "-");
}

/* Returns 1 when the fresh heartbeat record rec is a primary's and lists
 * shard ("shards": [[shard, "acked id"], ...]); its acked id goes to
 * acked. */
static int rec_shard(const msgpack_object *rec, unsigned shard, char *acked,
                     size_t ackedlen) {
  const msgpack_object *stale = inv_map_get(rec, "stale");
  const msgpack_object *sh = inv_map_get(rec, "shards");
  char role[16];
  rec_text(rec, "role", role, sizeof role);
  if (strcmp(role, "primary") != 0) return 0;
  if (stale != NULL && stale->type == MSGPACK_OBJECT_BOOLEAN &&
      stale->via.boolean)
    return 0;
  if (sh == NULL || sh->type != MSGPACK_OBJECT_ARRAY) return 0;
  for (uint32_t k = 0; k < sh->via.array.size; k++) {
    const msgpack_object *e = &sh->via.array.ptr[k];
    if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
        e->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        e->via.array.ptr[0].via.u64 != shard ||
        e->via.array.ptr[1].type != MSGPACK_OBJECT_STR)
      continue;
    snprintf(acked, ackedlen, "%.*s", (int)e->via.array.ptr[1].via.str.size,
             e->via.array.ptr[1].via.str.ptr);
    return 1;
  }
  return 0;
}

/* Checks one stats reply's workers against the shards the acks named. A
 * shard is applied when a fresh primary's worker lists it with an acked id
 * at or after the ack's id for it (PROTOCOL.md section 12). Returns the
 * number of shards not applied yet, listed in lagging ("shard S (worker W
 * at ID)" or "shard S (no fresh primary's worker consumes it)"); *workers
 * counts the distinct workers that confirmed a shard. */
static unsigned check_shards(const sender_t *s, const msgpack_object *stats,
                             unsigned *workers, inv_buf_t *lagging) {
  const msgpack_object *w = inv_map_get(stats, "workers");
  uint32_t nw =
      (w != NULL && w->type == MSGPACK_OBJECT_ARRAY) ? w->via.array.size : 0;
  unsigned shard, behind = 0;
  unsigned char *used = nw > 0 ? calloc(nw, 1) : NULL;
  *workers = 0;
  inv_buf_reset(lagging);
  for (shard = 0; shard < INV_LOG_SHARDS; shard++) {
    const char *want = s->shard_ids[shard];
    char acked[INV_SID_STRLEN], line[400] = "";
    uint32_t i, done = 0;
    if (want[0] == '\0') continue;
    for (i = 0; i < nw && !done; i++) {
      const msgpack_object *rec = &w->via.array.ptr[i];
      char wid[128];
      if (rec->type != MSGPACK_OBJECT_MAP ||
          !rec_shard(rec, shard, acked, sizeof acked))
        continue;
      if (strcmp(acked, want) == 0 || id_after(acked, want)) {
        done = 1;
        if (used != NULL && !used[i]) {
          used[i] = 1;
          (*workers)++;
        }
        continue;
      }
      rec_text(rec, "id", wid, sizeof wid);
      snprintf(line, sizeof line, "%sshard %u (worker %s at %s)",
               behind > 0 ? ", " : "", shard, wid, acked);
    }
    if (done) continue;
    if (line[0] == '\0')
      snprintf(line, sizeof line,
               "%sshard %u (no fresh primary's worker "
               "consumes it)",
               behind > 0 ? ", " : "", shard);
    (void)inv_buf_append(lagging, line, strlen(line));
    behind++;
  }
  (void)inv_buf_append(lagging, "", 1); /* NUL-terminated */
  free(used);
  return behind;
}

/* --wait: polls the publisher's stats until every shard the acks named is
 * applied (check_shards), for at most timeout_ms. Returns the exit code:
 * 0, INV_CTL_EXIT_WAIT (not applied in time, the shards named) or the
 * code of a failed stats call. */
static int wait_applied(sender_t *s, int timeout_ms) {
  double deadline = now_s() + timeout_ms / 1000.0;
  inv_buf_t lagging = {0};
  unsigned shards = 0, workers = 0, behind = 0, i;
  int rc;
  for (i = 0; i < INV_LOG_SHARDS; i++) shards += s->shard_ids[i][0] != '\0';
  if (shards == 0) {
    fprintf(stderr,
            "error: the acks named no log shard entry to wait for "
            "(a publisher that sends no \"ids\")\n");
    return INV_CTL_EXIT_WAIT;
  }
  for (;;) {
    inv_client_result_t *res = NULL;
    rc = inv_client_stats(s->c, &res);
    if (rc != 0) {
      rc = inv__ctl_call_error(s->opts, s->c, rc);
      break;
    }
    behind = check_shards(s, inv_client_result_obj(res), &workers, &lagging);
    inv_client_result_free(res);
    if (behind == 0) {
      printf("applied in all %u shards by %u primary worker%s\n", shards,
             workers, workers == 1 ? "" : "s");
      rc = INV_CTL_EXIT_OK;
      break;
    }
    if (now_s() >= deadline) {
      fprintf(stderr,
              "error: not applied within %d ms in %u of %u shards: "
              "%s\n",
              timeout_ms, behind, shards, lagging.data);
      rc = INV_CTL_EXIT_WAIT;
      break;
    }
    usleep(WAIT_POLL_MS * 1000);
  }
  inv_buf_free(&lagging);
  return rc;
}

/* Prints the entries the acks named: "ids SHARD:ID ...", ascending shards
 * (the newest entry per shard when several requests were sent). */
static void print_ids(const sender_t *s) {
  unsigned shard;
  fputs("ids", stdout);
  for (shard = 0; shard < INV_LOG_SHARDS; shard++)
    if (s->shard_ids[shard][0] != '\0')
      printf(" %u:%s", shard, s->shard_ids[shard]);
  fputc('\n', stdout);
}

static int run(const inv_ctl_opts_t *opts, int argc, char **argv) {
  sender_t s;
  const inv_client_server_t *info;
  int i, nevents = 0, use_stdin = 0, only_args = 0, rc, wait = 0;
  memset(&s, 0, sizeof s);
  s.opts = opts;
  s.mode = INV_MODE_HARD;
  s.window = DEFAULT_WINDOW;

  /* First pass: options and a count of events, so that usage errors are
   * reported before connecting. */
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!only_args && strcmp(a, "--") == 0) {
      only_args = 1;
    } else if (!only_args && strcmp(a, "--soft") == 0) {
      s.mode = INV_MODE_SOFT;
    } else if (!only_args && strcmp(a, "--hard") == 0) {
      s.mode = INV_MODE_HARD;
    } else if (!only_args && strcmp(a, "--wait") == 0) {
      wait = 1;
    } else if (!only_args &&
               (strcmp(a, "--prefix") == 0 || strcmp(a, "--pattern") == 0)) {
      if (i + 1 >= argc)
        return inv__ctl_usage_error("invalidate", "%s needs a value", a);
      i++;
      nevents++;
    } else if (!only_args && strcmp(a, "--window") == 0) {
      uint64_t w;
      if (i + 1 >= argc || inv__ctl_parse_uint(argv[i + 1], 4096, &w) != 0 ||
          w == 0)
        return inv__ctl_usage_error("invalidate",
                                    "--window wants a number from 1 to 4096");
      s.window = (size_t)w;
      i++;
    } else if (!only_args && strcmp(a, "-") == 0) {
      use_stdin = 1;
    } else if (!only_args && a[0] == '-' && a[1] != '\0') {
      return inv__ctl_usage_error("invalidate", "unknown option %s", a);
    } else {
      nevents++;
    }
  }
  if (nevents == 0 && !use_stdin)
    return inv__ctl_usage_error("invalidate",
                                "nothing to invalidate: give KEY..., --prefix "
                                "P, --pattern P or - (keys from stdin)");

  rc = inv__ctl_connect(opts, &s.c);
  if (rc != 0) return rc;
  info = inv_client_server(s.c);
  s.max_events = info->max_events > 0 ? info->max_events : DEFAULT_MAX_EVENTS;
  s.max_bytes =
      info->max_message_bytes > 0 ? info->max_message_bytes : DEFAULT_MAX_BYTES;
  /* Leave room for the request's own header. */
  s.max_bytes = s.max_bytes > 128 ? s.max_bytes - 64 : s.max_bytes;
  s.batch = calloc(s.max_events, sizeof *s.batch);
  s.offsets = calloc(s.max_events, sizeof *s.offsets);
  if (s.batch == NULL || s.offsets == NULL) {
    fprintf(stderr, "error: out of memory\n");
    s.exit_code = INV_CTL_EXIT_CONNECT;
    goto done;
  }

  s.t0 = now_s();
  s.progress = use_stdin && isatty(STDERR_FILENO);
  only_args = 0;
  for (i = 1; i < argc && s.exit_code == 0; i++) {
    const char *a = argv[i];
    if (!only_args && strcmp(a, "--") == 0) {
      only_args = 1;
    } else if (!only_args &&
               (strcmp(a, "--soft") == 0 || strcmp(a, "--hard") == 0 ||
                strcmp(a, "--wait") == 0 || strcmp(a, "-") == 0)) {
      continue;
    } else if (!only_args && strcmp(a, "--window") == 0) {
      i++;
    } else if (!only_args && strcmp(a, "--prefix") == 0) {
      i++;
      add_event(&s, INV_KIND_PREFIX, argv[i], strlen(argv[i]));
    } else if (!only_args && strcmp(a, "--pattern") == 0) {
      i++;
      add_event(&s, INV_KIND_PATTERN, argv[i], strlen(argv[i]));
    } else {
      add_event(&s, INV_KIND_KEY, a, strlen(a));
    }
  }
  if (use_stdin && s.exit_code == 0) add_stdin(&s);
  send_batch(&s);
  if (s.exit_code == 0) {
    rc = inv_client_flush(s.c);
    if (rc != 0) s.exit_code = inv__ctl_call_error(opts, s.c, rc);
  }
  /* Drain every reply, even after a failure, so that no ack goes
   * unreported; a broken connection ends this at once. */
  while (inv_client_outstanding(s.c) > 0 && s.exit_code != INV_CTL_EXIT_CONNECT)
    collect(&s);
  if (s.progress) {
    show_progress(&s, 1);
    fputc('\n', stderr);
  }
  if (s.exit_code == 0) {
    if (s.requests > 1)
      printf("acked %llu events, id %s (%llu requests; the newest id)\n",
             (unsigned long long)s.acked, s.last_id,
             (unsigned long long)s.requests);
    else
      printf("acked %llu events, id %s\n", (unsigned long long)s.acked,
             s.last_id);
    print_ids(&s);
    if (use_stdin) {
      double dt = now_s() - s.t0;
      fprintf(stderr, "%llu events in %llu requests in %.3f s: %.0f events/s\n",
              (unsigned long long)s.acked, (unsigned long long)s.requests, dt,
              dt > 0 ? (double)s.acked / dt : 0.0);
    }
    fflush(stdout);
    if (wait) s.exit_code = wait_applied(&s, opts->timeout_ms);
  } else if (s.acked > 0) {
    fprintf(stderr, "note: %llu events were acked before the failure\n",
            (unsigned long long)s.acked);
  }
done:
  free(s.batch);
  free(s.offsets);
  inv_buf_free(&s.keys);
  inv_client_close(s.c);
  return s.exit_code;
}

const inv_ctl_cmd_t inv__ctl_cmd_invalidate = {
    "invalidate", "send invalidation events (keys, --prefix, --pattern, -)",
    "Usage: invalctl [OPTIONS] invalidate [--soft] [--window N] [--wait]\n"
    "                [--prefix P]... [--pattern P]... [KEY...] [-]\n"
    "\n"
    "Sends invalidation events and waits until the publisher acked them\n"
    "(logged in the log shard streams cache:invalidation:log:{<tag>} and\n"
    "broadcast on cache:invalidation).\n"
    "\n"
    "  KEY...         exact keys; many keys go in one request\n"
    "  --prefix P     every key starting with P\n"
    "                 (a key or a prefix inside the service's own\n"
    "                 cache:invalidation namespace is always refused)\n"
    "  --pattern P    every key matching the glob P (Redis MATCH syntax);\n"
    "                 a pattern that restricts no byte (\"*\", \"?*\",\n"
    "                 \"*[^]*\") is refused unless the publisher runs with\n"
    "                 --allow-flush; a malformed one (an unclosed '[', a\n"
    "                 trailing '\\') always\n"
    "  -              also read keys from stdin, one per line (empty lines\n"
    "                 are skipped); they go in batches of the server's\n"
    "                 max_events, pipelined, and the rate is printed on\n"
    "                 stderr (with a progress line when it is a terminal)\n"
    "  --soft         soft mode (keep a stale copy for regeneration)\n"
    "  --window N     requests in flight at once (default 32)\n"
    "  --wait         after the ack, wait until, for every shard entry of\n"
    "                 the acks, a fresh primary's worker in the publisher's\n"
    "                 stats has acknowledged that shard at or after the\n"
    "                 entry's id, for at most --timeout ms; prints\n"
    "                 \"applied in all N shards by M primary workers\"\n"
    "  --             the arguments after it are keys, even \"-x\"\n"
    "\n"
    "Prints \"acked N events, id ID\" (ID the newest entry id of the acks),\n"
    "then \"ids SHARD:ID ...\": the log shard entries that hold the events,\n"
    "one per shard (with several requests, each shard's newest). Exit codes:\n"
    "0 acked (and applied, with --wait), 1 the server refused (\"error:\n"
    "EINVAL: event 0: target is empty\"), 2 usage, 3 connection, 4 acked but\n"
    "not applied in every shard within --timeout (the message names the\n"
    "shards not there yet and the worker of each).\n",
    run};
