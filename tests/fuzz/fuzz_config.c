/*
 * Fuzz target for the config parser (common/base/config.c): an arbitrary file
 * body through inv_conf_load_buffer, the code behind inv_conf_load_file,
 * against a table with one row of every type.
 *
 * Invariants:
 *   - loading answers 0, INV_EINVAL or INV_ENOMEM; a failure's message
 *     names the file and line ("fuzz.conf:3: ...") and is NUL-terminated;
 *   - whatever was loaded, fully or up to a bad line, is released by
 *     inv_conf_free without a leak (libFuzzer's leak check) or a double free;
 *   - a config that loads prints (inv_conf_print) to a file that loads
 *     again into the same values, and prints the same text again (secrets
 *     aside, which are printed as comments by design);
 *   - an address list never holds more than INV_CONF_ADDR_LIST_MAX entries.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/config.h"
#include "inval/errors.h"
#include "tests/fuzz/fuzz.h"

typedef struct {
  long long count;
  long long any;
  size_t size;
  uint64_t wait;
  int flag;
  char *name;
  char *secret;
  inv_addr_t listen;
  inv_addr_list_t seeds;
  int level;
} fcfg_t;

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

#define O(f) offsetof(fcfg_t, f)
static const inv_conf_row_t rows[] = {
    {"count", INV_CONF_INT, O(count), 1, 1000000, "10", NULL, "a bounded int"},
    {"any", INV_CONF_INT, O(any), 0, 0, NULL, NULL, "an unbounded int"},
    {"size", INV_CONF_SIZE, O(size), 1, 1LL << 40, "1m", NULL, "a size"},
    {"wait", INV_CONF_MS, O(wait), 0, 3600000, "5s", NULL, "a duration"},
    {"flag", INV_CONF_BOOL, O(flag), 0, 0, "no", NULL, "a boolean"},
    {"name", INV_CONF_STRING, O(name), 0, 0, NULL, NULL, "a string"},
    {"secret", INV_CONF_SECRET, O(secret), 0, 0, NULL, NULL, "a secret"},
    {"listen", INV_CONF_ADDR, O(listen), 0, 0, "127.0.0.1:7700", NULL,
     "an address"},
    {"seed", INV_CONF_ADDR_LIST, O(seeds), 0, 0, "127.0.0.1:6379", NULL,
     "addresses"},
    {"level", INV_CONF_ENUM, O(level), 0, 0, "info", levels, "an enum"},
};
#undef O
#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* Defaults, then an empty address list, as inv_cli_parse prepares a
 * config before it loads files (a list's default stands only when no file
 * names an address, and is put back after loading). */
static void fresh_cfg(fcfg_t *cfg) {
  char err[256];
  memset(cfg, 0, sizeof(*cfg));
  FUZZ_ASSERT(inv_conf_defaults(rows, NROWS, cfg, err, sizeof(err)) == 0);
  free(cfg->seeds.items);
  cfg->seeds.items = NULL;
  cfg->seeds.count = 0;
}

/* Prints cfg as a config file into a malloc'd string (*len bytes). */
static char *print_cfg(const fcfg_t *cfg, size_t *len) {
  char *text = NULL;
  FILE *f = open_memstream(&text, len);
  FUZZ_ASSERT(f != NULL);
  inv_conf_print(f, rows, NROWS, cfg);
  FUZZ_ASSERT(fclose(f) == 0);
  return text;
}

static void check_round_trip(const fcfg_t *cfg) {
  fcfg_t again;
  char err[256];
  size_t len1, len2;
  /* A secret is printed as a comment by design: compare without it. */
  fcfg_t shown = *cfg;
  shown.secret = NULL;
  char *text1 = print_cfg(&shown, &len1), *text2;

  fresh_cfg(&again);
  if (inv_conf_load_buffer(rows, NROWS, &again, "printed.conf", text1, len1,
                           err, sizeof(err)) != 0) {
    fprintf(stderr, "printed config does not load: %s\n%s", err, text1);
    FUZZ_ASSERT(0);
  }
  text2 = print_cfg(&again, &len2);
  if (!(len1 == len2 && memcmp(text1, text2, len1) == 0))
    fprintf(stderr, "first print:\n%s\nsecond print:\n%s\n", text1, text2);
  FUZZ_ASSERT(len1 == len2 && memcmp(text1, text2, len1) == 0);
  FUZZ_ASSERT(again.seeds.count == cfg->seeds.count);
  FUZZ_ASSERT((again.name == NULL) == (cfg->name == NULL));
  FUZZ_ASSERT(again.name == NULL || strcmp(again.name, cfg->name) == 0);
  free(text1);
  free(text2);
  inv_conf_free(rows, NROWS, &again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fcfg_t cfg;
  char err[256];
  int rc;

  fresh_cfg(&cfg);
  memset(err, 'x', sizeof(err));
  rc = inv_conf_load_buffer(rows, NROWS, &cfg, "fuzz.conf", (const char *)data,
                            size, err, sizeof(err));
  FUZZ_ASSERT(rc == 0 || rc == INV_EINVAL || rc == INV_ENOMEM);
  FUZZ_ASSERT(cfg.seeds.count <= INV_CONF_ADDR_LIST_MAX);
  FUZZ_ASSERT(cfg.count >= 1 && cfg.count <= 1000000);
  FUZZ_ASSERT(cfg.wait <= 3600000 && cfg.level >= 0 && cfg.level <= 3);
  if (rc != 0) {
    FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
    FUZZ_ASSERT(strncmp(err, "fuzz.conf:", 10) == 0);
  } else {
    check_round_trip(&cfg);
  }
  inv_conf_free(rows, NROWS, &cfg);
  inv_conf_free(rows, NROWS, &cfg); /* harmless twice */
  return 0;
}
