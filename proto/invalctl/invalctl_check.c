/*
 * invalctl check: a deploy gate, in the manner of `redis-cli --cluster
 * check`. It reads the publisher's `stats` (whose "workers" section holds
 * every worker's heartbeat record, each with a summary of its Redis node's
 * health) and exits 0 only when all is well; otherwise it prints each
 * problem on a line of its own and exits INV_CTL_EXIT_CHECK.
 *
 * What it can know is what the heartbeats say: the publisher exposes no
 * slot owners, and a heartbeat record stays in Redis after its worker is
 * gone, so a worker that ever ran and stopped shows up as STALE. A primary
 * whose worker never ran is invisible to the heartbeats: --primaries N
 * states how many primaries the cluster has, and fewer fresh primary
 * workers than that is a problem.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "proto/codec.h"
#include "proto/invalctl/invalctl.h"

typedef struct check_s {
  FILE *out;
  unsigned problems;
  unsigned fresh;
  unsigned primaries; /* fresh workers that report role primary */
} check_t;

/* Prints a record's string field (escaped), or "-". */
static void put_str(FILE *out, const msgpack_object *rec, const char *key) {
  const msgpack_object *v = inv_map_get(rec, key);
  if (v != NULL && v->type == MSGPACK_OBJECT_STR)
    inv__ctl_print_escaped(out, v->via.str.ptr, v->via.str.size);
  else if (v != NULL && v->type == MSGPACK_OBJECT_BIN)
    inv__ctl_print_escaped(out, v->via.bin.ptr, v->via.bin.size);
  else
    fputc('-', out);
}

/* An unsigned field, or dflt when absent or of another type. */
static uint64_t get_u64(const msgpack_object *m, const char *key,
                        uint64_t dflt) {
  const msgpack_object *v = inv_map_get(m, key);
  return v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64
                                                                 : dflt;
}

static int get_bool(const msgpack_object *m, const char *key) {
  const msgpack_object *v = inv_map_get(m, key);
  return v != NULL && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
}

/* Starts a problem line: "WHAT worker ID (node NODE): ". */
static void problem(check_t *ck, const char *what, const msgpack_object *rec) {
  ck->problems++;
  fprintf(ck->out, "%s worker ", what);
  put_str(ck->out, rec, "id");
  fputs(" (node ", ck->out);
  put_str(ck->out, rec, "node");
  fputs("): ", ck->out);
}

/* Checks the node summary of a fresh worker's record. */
static void check_health(check_t *ck, const msgpack_object *rec) {
  const msgpack_object *h = inv_map_get(rec, "health");
  if (h == NULL || h->type != MSGPACK_OBJECT_MAP) {
    /* An older worker, or one whose node was not polled yet: nothing to
     * judge, said but not failed, so a rolling upgrade can pass. */
    fputs("note: worker ", ck->out);
    put_str(ck->out, rec, "id");
    fputs(" sends no node figures; its node is not checked\n", ck->out);
    return;
  }
  if (get_u64(h, "up", 0) == 0) {
    problem(ck, "NODE-DOWN", rec);
    fputs("the worker's last poll of its node failed\n", ck->out);
    return;
  }
  if (get_u64(h, "cluster_state_ok", 0) == 0) {
    problem(ck, "CLUSTER-FAIL", rec);
    fputs("the node reports cluster_state:fail\n", ck->out);
  }
  uint64_t fail = get_u64(h, "slots_fail", 0);
  if (fail > 0) {
    problem(ck, "SLOTS-FAIL", rec);
    fprintf(ck->out, "%" PRIu64 " hash slot%s in the FAIL state\n", fail,
            fail == 1 ? "" : "s");
  }
}

static void check_worker(check_t *ck, const msgpack_object *rec) {
  if (rec->type != MSGPACK_OBJECT_MAP) {
    ck->problems++;
    fputs("BAD-RECORD a workers entry that is not a map\n", ck->out);
    return;
  }
  if (get_bool(rec, "stale") || inv_map_get(rec, "ts_ms") == NULL) {
    uint64_t ts = get_u64(rec, "ts_ms", 0), ttl = get_u64(rec, "ttl_ms", 0);
    problem(ck, "STALE", rec);
    fprintf(ck->out,
            "no heartbeat for longer than its ttl (%.1f s); last at "
            "%" PRIu64 " ms\n",
            (double)ttl / 1000.0, ts);
    return;
  }
  ck->fresh++;
  const msgpack_object *role = inv_map_get(rec, "role");
  if (role != NULL && inv_obj_streq(role, "primary")) ck->primaries++;
  check_health(ck, rec);
}

static int run(const inv_ctl_opts_t *opts, int argc, char **argv) {
  inv_client_t *c = NULL;
  inv_client_result_t *res = NULL;
  uint64_t want_primaries = 0;
  check_t ck = {stdout, 0, 0, 0};
  int i, rc;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--primaries") == 0 && i + 1 < argc) {
      if (inv__ctl_parse_uint(argv[++i], 100000, &want_primaries) != 0)
        return inv__ctl_usage_error("check",
                                    "--primaries wants a count, "
                                    "not %s",
                                    argv[i]);
    } else {
      return inv__ctl_usage_error("check", "unexpected argument %s", argv[i]);
    }
  }
  rc = inv__ctl_fetch_stats(opts, &c, &res);
  if (rc != 0) return rc;
  const msgpack_object *o = inv_client_result_obj(res);
  const msgpack_object *w =
      o->type == MSGPACK_OBJECT_MAP ? inv_map_get(o, "workers") : NULL;
  if (w == NULL || w->type != MSGPACK_OBJECT_ARRAY) {
    fprintf(stderr,
            "invalctl check: the server's stats list no workers: "
            "point -H at the publisher\n");
    rc = INV_CTL_EXIT_SERVER;
    goto out;
  }
  if (w->via.array.size == 0) {
    ck.problems++;
    fputs("MISSING no worker heartbeat found (are the workers running?)\n",
          ck.out);
  }
  for (uint32_t k = 0; k < w->via.array.size; k++)
    check_worker(&ck, &w->via.array.ptr[k]);
  if (ck.primaries < want_primaries) {
    ck.problems++;
    fprintf(ck.out,
            "PRIMARIES %u fresh primary worker%s, %" PRIu64
            " expected (a primary has no live worker)\n",
            ck.primaries, ck.primaries == 1 ? "" : "s", want_primaries);
  }
  if (get_u64(o, "heartbeat_bad_records", 0) > 0)
    fprintf(ck.out,
            "note: %" PRIu64
            " values of the heartbeat hash are not "
            "heartbeat records\n",
            get_u64(o, "heartbeat_bad_records", 0));
  if (ck.problems > 0) {
    fprintf(ck.out,
            "FAIL: %u problem%s (%u of %u workers fresh, %u "
            "primaries)\n",
            ck.problems, ck.problems == 1 ? "" : "s", ck.fresh,
            w->via.array.size, ck.primaries);
    rc = INV_CTL_EXIT_CHECK;
  } else {
    fprintf(ck.out,
            "OK: %u workers fresh, %u primaries, every node "
            "healthy\n",
            ck.fresh, ck.primaries);
    rc = INV_CTL_EXIT_OK;
  }
out:
  inv_client_result_free(res);
  inv_client_close(c);
  return rc;
}

const inv_ctl_cmd_t inv__ctl_cmd_check = {
    "check", "exit non-zero when a worker or a node is unwell (a deploy gate)",
    "Usage: invalctl [OPTIONS] check [--primaries N]\n"
    "\n"
    "Asks the publisher's stats and checks what the workers' heartbeats say:\n"
    "every worker fresh (no STALE record), and each worker's Redis node up,\n"
    "with cluster_state ok and no hash slot in FAIL. With --primaries N, at\n"
    "least N fresh workers must serve a primary (a primary whose worker never\n"
    "ran leaves no record to see). Prints each problem on its own line "
    "(STALE,\n"
    "MISSING, NODE-DOWN, CLUSTER-FAIL, SLOTS-FAIL, PRIMARIES) and a summary.\n"
    "A worker that sends no node figures (an older version) is noted, not\n"
    "failed.\n"
    "\n"
    "Exit status: 0 when all is well, 5 when a problem was found, and the\n"
    "usual 1-3 when the publisher could not be asked.\n",
    run};
