/* Unit tests for workers/state_file: the path, a save/load round trip,
 * a missing file, a file that is not an id, and a failed save that leaves
 * the old file intact. */
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
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_summary();
}
