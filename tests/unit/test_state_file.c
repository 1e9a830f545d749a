/* Unit tests for workers/state_file: the path, a save/load round trip,
 * a missing file, a file that is not an id, a failed save that leaves
 * the old file intact, and the ownership records (role, slots, owed
 * replays): their round trip, an old file without them, merging, and a
 * corrupt record. */
#include "workers/state_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errors.h"
#include "tests/unit/check.h"

static char dir[64];

static void test_path(void) {
  char out[128];
  CHECK_EQ_INT(inv_state_path("/var/lib/inval", "127.0.0.1:7000", out, sizeof(out)), 0);
  CHECK_EQ_STR(out, "/var/lib/inval/worker-127.0.0.1_7000.state");
  CHECK_EQ_INT(inv_state_path(".", "a/b c*", out, sizeof(out)), 0);
  CHECK_EQ_STR(out, "./worker-a_b_c_.state");
  /* "/d/worker-id.state" needs 19 bytes with its NUL. */
  CHECK_EQ_INT(inv_state_path("/d", "id", out, 18), INV_EINVAL);
  CHECK_EQ_INT(inv_state_path("/d", "id", out, 19), 0);
  CHECK_EQ_INT(inv_state_path("/a/long/directory", "id", out, 8), INV_EINVAL);
}

static void test_round_trip(void) {
  char path[128], err[256];
  inv_sid_t id = {0, 0}, saved = {1796003616646ull, 3};
  snprintf(path, sizeof(path), "%s/worker-x.state", dir);
  CHECK_EQ_INT(inv_state_load(path, &id, err, sizeof(err)), 0); /* none yet */
  CHECK_EQ_INT(inv_state_save(path, saved, err, sizeof(err)), 0);
  CHECK_EQ_INT(inv_state_load(path, &id, err, sizeof(err)), 1);
  CHECK(inv_sid_cmp(id, saved) == 0);
  saved.seq = 4;
  CHECK_EQ_INT(inv_state_save(path, saved, err, sizeof(err)), 0);
  CHECK_EQ_INT(inv_state_load(path, &id, err, sizeof(err)), 1);
  CHECK(id.seq == 4);
  char tmp[160];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  CHECK(access(tmp, F_OK) != 0); /* renamed away */
}

static void test_bad_file(void) {
  char path[128], err[256];
  inv_sid_t id = {9, 9};
  snprintf(path, sizeof(path), "%s/worker-bad.state", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f == NULL) return;
  fputs("not an id\n", f);
  fclose(f);
  CHECK_EQ_INT(inv_state_load(path, &id, err, sizeof(err)), INV_EINVAL);
  CHECK(strstr(err, "not a stream id") != NULL && strstr(err, path) != NULL);
  CHECK(id.ms == 9);
}

static void test_failed_save_keeps_old(void) {
  char sub[96], path[160], err[256];
  inv_sid_t id;
  snprintf(sub, sizeof(sub), "%s/ro", dir);
  CHECK_EQ_INT(mkdir(sub, 0755), 0);
  snprintf(path, sizeof(path), "%s/worker-ro.state", sub);
  CHECK_EQ_INT(inv_state_save(path, (inv_sid_t){5, 5}, err, sizeof(err)), 0);
  CHECK_EQ_INT(chmod(sub, 0555), 0);
  if (access(sub, W_OK) == 0) { /* running as root: permissions do not bind */
    chmod(sub, 0755);
    return;
  }
  CHECK_EQ_INT(inv_state_save(path, (inv_sid_t){6, 6}, err, sizeof(err)), INV_EIO);
  CHECK(strstr(err, ".tmp") != NULL);
  CHECK_EQ_INT(inv_state_load(path, &id, err, sizeof(err)), 1);
  CHECK(id.ms == 5 && id.seq == 5);
  chmod(sub, 0755);
}


static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f == NULL) return;
  fputs(text, f);
  fclose(f);
}

static int bit(const uint8_t *bits, unsigned s) { return (bits[s >> 3] >> (s & 7)) & 1; }

static void test_owed_round_trip(void) {
  char path[128], err[256];
  inv_state_t st, back;
  snprintf(path, sizeof(path), "%s/worker-owed.state", dir);
  memset(&st, 0, sizeof(st));
  st.pos = (inv_sid_t){1796003616646ull, 3};
  st.role = INV_STATE_PRIMARY;
  st.has_slots = 1;
  for (unsigned s = 0; s <= 5460; s++) st.slots[s >> 3] |= (uint8_t)(1u << (s & 7));
  st.slots[16383 >> 3] |= 0x80;
  st.nowed = 2;
  st.owed[0] = (inv_state_owed_t){{1796003586646ull, 3}, {1796003616646ull, 3}, 1, {0}};
  st.owed[1].from = (inv_sid_t){10, 0};
  st.owed[1].upto = (inv_sid_t){20, 5};
  st.owed[1].slots[100 >> 3] |= (uint8_t)(1u << (100 & 7));
  st.owed[1].slots[101 >> 3] |= (uint8_t)(1u << (101 & 7));
  st.owed[1].slots[7000 >> 3] |= (uint8_t)(1u << (7000 & 7));
  CHECK_EQ_INT(inv_state_write(path, &st, err, sizeof(err)), 0);
  CHECK_EQ_INT(inv_state_read(path, &back, err, sizeof(err)), 1);
  CHECK(memcmp(&st, &back, sizeof(st)) == 0);
  CHECK_EQ_INT((int)inv_state_slot_count(back.slots), 5462);
  CHECK_EQ_INT((int)inv_state_slot_count(back.owed[1].slots), 3);
  /* The position alone is what inv_state_load gives. */
  inv_sid_t id;
  CHECK_EQ_INT(inv_state_load(path, &id, err, sizeof(err)), 1);
  CHECK(inv_sid_cmp(id, st.pos) == 0);
  /* A replica with its primary, nothing owed. */
  memset(&st, 0, sizeof(st));
  st.pos = (inv_sid_t){7, 7};
  st.role = INV_STATE_REPLICA;
  snprintf(st.master, sizeof(st.master), "127.0.0.1:7001");
  CHECK_EQ_INT(inv_state_write(path, &st, err, sizeof(err)), 0);
  CHECK_EQ_INT(inv_state_read(path, &back, err, sizeof(err)), 1);
  CHECK(memcmp(&st, &back, sizeof(st)) == 0);
}

static void test_old_file_and_merge(void) {
  char path[128], err[256];
  inv_state_t st;
  snprintf(path, sizeof(path), "%s/worker-old.state", dir);
  write_text(path, "1796003616646-3\n"); /* written before the records */
  CHECK_EQ_INT(inv_state_read(path, &st, err, sizeof(err)), 1);
  CHECK(st.pos.ms == 1796003616646ull && st.pos.seq == 3);
  CHECK(st.role == INV_STATE_ROLE_NONE && !st.has_slots && st.nowed == 0);
  /* Two records of one kind merge: earliest from, latest upto, union. */
  write_text(path, "50-0\nrole primary\nslots -\nowed 10-0 60-0 5-6\n"
                   "owed 5-0 40-0 9\nowed 30-0 70-0 all\n");
  CHECK_EQ_INT(inv_state_read(path, &st, err, sizeof(err)), 1);
  CHECK(st.has_slots && inv_state_slot_count(st.slots) == 0);
  CHECK_EQ_INT(st.nowed, 2);
  CHECK(!st.owed[0].all && st.owed[0].from.ms == 5 && st.owed[0].upto.ms == 60);
  CHECK(bit(st.owed[0].slots, 5) && bit(st.owed[0].slots, 6) &&
        bit(st.owed[0].slots, 9) && !bit(st.owed[0].slots, 7));
  CHECK(st.owed[1].all && st.owed[1].from.ms == 30 && st.owed[1].upto.ms == 70);
}

static void test_corrupt_record(void) {
  static const char *const bad[] = {
      "50-0\nowed 10-0 60-0\n",          /* no slot set */
      "50-0\nowed 10-0 60-0 16384\n",    /* slot out of range */
      "50-0\nowed 10-0 60-0 9-3\n",      /* backwards range */
      "50-0\nowed x 60-0 all\n",         /* not an id */
      "50-0\nslots 1,,2\n",
      "50-0\nrole leader\n",
      "50-0\nrole primary extra\n",
      "50-0\nsomething else\n",
  };
  char path[128], err[256];
  inv_state_t st;
  snprintf(path, sizeof(path), "%s/worker-corrupt.state", dir);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_text(path, bad[i]);
    CHECK_EQ_INT(inv_state_read(path, &st, err, sizeof(err)), INV_EPROTO);
    CHECK(strstr(err, "line 2") != NULL);
    CHECK(st.pos.ms == 50 && st.nowed == 0 && st.role == INV_STATE_ROLE_NONE);
  }
  /* Too large to be a state file: refused before it is parsed. */
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f == NULL) return;
  fputs("50-0\n", f);
  for (unsigned i = 0; i < INV_STATE_MAX_BYTES; i += 8) fputs("slots 1\n", f);
  fclose(f);
  CHECK_EQ_INT(inv_state_read(path, &st, err, sizeof(err)), INV_EIO);
  CHECK(strstr(err, "larger") != NULL);
}

int main(void) {
  snprintf(dir, sizeof(dir), "/tmp/inv-state-test-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  RUN(test_path);
  RUN(test_round_trip);
  RUN(test_bad_file);
  RUN(test_failed_save_keeps_old);
  RUN(test_owed_round_trip);
  RUN(test_old_file_and_merge);
  RUN(test_corrupt_record);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_summary();
}
