/* Unit tests for common/config (values, files, printing, command line) and
 * common/log (levels and line format; the level names are a config ENUM
 * table). */
#include "common/base/config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inval/errors.h"
#include "common/base/log.h"
#include "tests/unit/check.h"

typedef struct {
  long long max_clients;
  size_t max_frame;
  uint64_t timeout;
  int allow_flush;
  char *name;
  inv_addr_t listen;
  inv_addr_list_t seeds;
  int log_level;
  char *password;
  char *token;
  long long offset;
  uint64_t idle;
} tcfg_t;

static const inv_conf_row_t rows[] = {
    {"max-clients", INV_CONF_INT, offsetof(tcfg_t, max_clients), 1, 100000,
     "10000", NULL, "Most clients at once."},
    {"max-frame", INV_CONF_SIZE, offsetof(tcfg_t, max_frame), 1024,
     64 * 1024 * 1024, "1m", NULL, "Largest frame."},
    {"timeout", INV_CONF_MS, offsetof(tcfg_t, timeout), 1, 600000, "5s", NULL,
     "Redis timeout."},
    {"allow-flush", INV_CONF_BOOL, offsetof(tcfg_t, allow_flush), 0, 0, "no",
     NULL, "Allow flush events."},
    {"name", INV_CONF_STRING, offsetof(tcfg_t, name), 0, 0, "inval", NULL,
     "Instance name."},
    {"listen", INV_CONF_ADDR, offsetof(tcfg_t, listen), 0, 0, "127.0.0.1:7700",
     NULL, "Address to listen on."},
    {"seed", INV_CONF_ADDR_LIST, offsetof(tcfg_t, seeds), 0, 0, NULL, NULL,
     "Redis seed node."},
    {"log-level", INV_CONF_ENUM, offsetof(tcfg_t, log_level), 0, 0, "info",
     inv_log_level_names, "Log level."},
    {"password", INV_CONF_STRING, offsetof(tcfg_t, password), 0, 0, NULL, NULL,
     "Redis password."},
    {"token", INV_CONF_SECRET, offsetof(tcfg_t, token), 0, 0, NULL, NULL,
     "Auth token."},
    {"offset", INV_CONF_INT, offsetof(tcfg_t, offset), 0, 0, "-5", NULL,
     "Unbounded integer."},
    {"idle", INV_CONF_MS, offsetof(tcfg_t, idle), 0, 0, NULL, NULL,
     "Unbounded duration."},
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

static char err[512];

/* Sets one directive on a configuration holding the defaults. */
static int set1(tcfg_t *c, const char *name, const char *value) {
  err[0] = '\0';
  return inv_conf_set(rows, NROWS, c, name, value, err, sizeof(err));
}

static void fresh(tcfg_t *c) {
  memset(c, 0, sizeof(*c));
  if (inv_conf_defaults(rows, NROWS, c, err, sizeof(err)) != 0) {
    fprintf(stderr, "defaults failed: %s\n", err);
  }
}

/* ---- addresses --------------------------------------------------------- */

static void test_addr(void) {
  inv_addr_t a;
  char text[300];
  CHECK_EQ_INT(inv_addr_parse("127.0.0.1:7000", &a), 0);
  CHECK_EQ_STR(a.host, "127.0.0.1");
  CHECK_EQ_INT(a.port, 7000);
  inv_addr_format(&a, text, sizeof(text));
  CHECK_EQ_STR(text, "127.0.0.1:7000");
  CHECK_EQ_INT(inv_addr_parse("[::1]:7700", &a), 0);
  CHECK_EQ_STR(a.host, "::1");
  CHECK_EQ_INT(a.port, 7700);
  inv_addr_format(&a, text, sizeof(text));
  CHECK_EQ_STR(text, "[::1]:7700");
  CHECK_EQ_INT(inv_addr_parse("localhost:0", &a), 0);
  CHECK_EQ_INT(a.port, 0);
  CHECK_EQ_INT(inv_addr_parse("redis.example:65535", &a), 0);
  CHECK_EQ_STR(a.host, "redis.example");
  CHECK_EQ_INT(a.port, 65535);
  const char *bad[] = {"host",   "host:",    ":80",     "h:65536",
                       "::1:80", "[::1]",    "[::1]80", "h:8x",
                       "h: 80",  "h:123456", "",        "[]:80",
                       "h:-1",   "a b:80",   "h:+80",   "[::1:80"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = inv_addr_parse(bad[i], &a);
    if (rc != INV_EINVAL)
      fprintf(stderr, "accepted bad address '%s'\n", bad[i]);
    CHECK_EQ_INT(rc, INV_EINVAL);
  }
  CHECK_EQ_INT(inv_addr_parse(NULL, &a), INV_EINVAL);
  char longhost[300];
  memset(longhost, 'h', 255);
  strcpy(longhost + 255, ":1");
  CHECK_EQ_INT(inv_addr_parse(longhost, &a), 0);
  CHECK_EQ_INT(strlen(a.host), 255);
  memset(longhost, 'h', 256);
  strcpy(longhost + 256, ":1");
  CHECK_EQ_INT(inv_addr_parse(longhost, &a), INV_EINVAL);
  /* Formatting truncates to the buffer and stays terminated. */
  inv_addr_parse("127.0.0.1:7000", &a);
  inv_addr_format(&a, text, 5);
  CHECK_EQ_STR(text, "127.");
}

/* ---- defaults and single values ---------------------------------------- */

static void test_defaults(void) {
  tcfg_t c;
  fresh(&c);
  CHECK_EQ_INT(c.max_clients, 10000);
  CHECK_EQ_INT(c.max_frame, 1024 * 1024);
  CHECK_EQ_INT(c.timeout, 5000);
  CHECK_EQ_INT(c.allow_flush, 0);
  CHECK_EQ_STR(c.name, "inval");
  CHECK_EQ_STR(c.listen.host, "127.0.0.1");
  CHECK_EQ_INT(c.listen.port, 7700);
  CHECK_EQ_INT(c.seeds.count, 0);
  CHECK(c.seeds.items == NULL);
  CHECK_EQ_INT(c.log_level, INV_LOG_INFO);
  CHECK(c.password == NULL);
  CHECK_EQ_INT(c.offset, -5);
  CHECK_EQ_INT(c.idle, 0);
  inv_conf_free(rows, NROWS, &c);
  CHECK(c.name == NULL);
  inv_conf_free(rows, NROWS, &c); /* idempotent */
  inv_conf_free(rows, NROWS, NULL);

  /* A bad default is reported (a table bug) and nothing leaks. */
  static const inv_conf_row_t badrows[] = {
      {"name", INV_CONF_STRING, offsetof(tcfg_t, name), 0, 0, "x", NULL, ""},
      {"max-clients", INV_CONF_INT, offsetof(tcfg_t, max_clients), 1, 10, "11",
       NULL, ""},
  };
  memset(&c, 0, sizeof(c));
  CHECK_EQ_INT(inv_conf_defaults(badrows, 2, &c, err, sizeof(err)), INV_EINVAL);
  CHECK_EQ_STR(err, "default of max-clients: 11 is above the maximum 10");
  CHECK(c.name == NULL);
}

static void test_int(void) {
  tcfg_t c;
  fresh(&c);
  CHECK_EQ_INT(set1(&c, "max-clients", "1"), 0);
  CHECK_EQ_INT(c.max_clients, 1);
  CHECK_EQ_INT(set1(&c, "max-clients", "100000"), 0);
  CHECK_EQ_INT(c.max_clients, 100000);
  CHECK_EQ_INT(set1(&c, "max-clients", "0"), INV_EINVAL);
  CHECK_EQ_STR(err, "max-clients: 0 is below the minimum 1");
  CHECK_EQ_INT(set1(&c, "max-clients", "100001"), INV_EINVAL);
  CHECK_EQ_STR(err, "max-clients: 100001 is above the maximum 100000");
  CHECK_EQ_INT(set1(&c, "max-clients", "-3"), INV_EINVAL);
  CHECK_EQ_STR(err, "max-clients: -3 is below the minimum 1");
  CHECK_EQ_INT(set1(&c, "max-clients", "abc"), INV_EINVAL);
  CHECK_EQ_STR(err, "max-clients: 'abc' is not an integer");
  CHECK_EQ_INT(set1(&c, "max-clients", "12abc"), INV_EINVAL);
  CHECK_EQ_INT(set1(&c, "max-clients", ""), INV_EINVAL);
  CHECK_EQ_INT(set1(&c, "max-clients", " 5"), INV_EINVAL);
  CHECK_EQ_INT(set1(&c, "max-clients", "5 "), INV_EINVAL);
  CHECK_EQ_INT(set1(&c, "max-clients", "1.5"), INV_EINVAL);
  CHECK_EQ_INT(set1(&c, "max-clients", "99999999999999999999"), INV_EINVAL);
  /* Failed sets leave the value alone. */
  CHECK_EQ_INT(c.max_clients, 100000);
  /* min == max == 0 means no bounds. */
  CHECK_EQ_INT(set1(&c, "offset", "-9223372036854775808"), 0);
  CHECK(c.offset == -9223372036854775807LL - 1);
  CHECK_EQ_INT(set1(&c, "offset", "9223372036854775807"), 0);
  CHECK(c.offset == 9223372036854775807LL);
  inv_conf_free(rows, NROWS, &c);
}

static void test_size(void) {
  tcfg_t c;
  fresh(&c);
  CHECK_EQ_INT(set1(&c, "max-frame", "4096"), 0);
  CHECK_EQ_INT(c.max_frame, 4096);
  CHECK_EQ_INT(set1(&c, "max-frame", "1k"), 0);
  CHECK_EQ_INT(c.max_frame, 1024);
  CHECK_EQ_INT(set1(&c, "max-frame", "16K"), 0);
  CHECK_EQ_INT(c.max_frame, 16384);
  CHECK_EQ_INT(set1(&c, "max-frame", "2m"), 0);
  CHECK_EQ_INT(c.max_frame, 2 * 1024 * 1024);
  CHECK_EQ_INT(set1(&c, "max-frame", "64M"), 0);
  CHECK_EQ_INT(c.max_frame, 64 * 1024 * 1024);
  CHECK_EQ_INT(set1(&c, "max-frame", "1g"), INV_EINVAL);
  CHECK_EQ_STR(err, "max-frame: 1073741824 is above the maximum 67108864");
  CHECK_EQ_INT(set1(&c, "max-frame", "1023"), INV_EINVAL);
  CHECK_EQ_STR(err, "max-frame: 1023 is below the minimum 1024");
  CHECK_EQ_INT(set1(&c, "max-frame", "0"), INV_EINVAL);
  const char *bad[] = {"k",           "1.5k", "-1",
                       "1kb",         "1 k",  "",
                       "1t",          "0x10", "99999999999999999999",
                       "17179869184g"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CHECK_EQ_INT(set1(&c, "max-frame", bad[i]), INV_EINVAL);
  }
  CHECK_EQ_INT(set1(&c, "max-frame", "k"), INV_EINVAL);
  CHECK_EQ_STR(
      err, "max-frame: 'k' is not a size (a number with optional k, m or g)");
  CHECK_EQ_INT(c.max_frame, 64 * 1024 * 1024);
  inv_conf_free(rows, NROWS, &c);
}

static void test_ms(void) {
  tcfg_t c;
  fresh(&c);
  CHECK_EQ_INT(set1(&c, "timeout", "250"), 0);
  CHECK_EQ_INT(c.timeout, 250);
  CHECK_EQ_INT(set1(&c, "timeout", "250ms"), 0);
  CHECK_EQ_INT(c.timeout, 250);
  CHECK_EQ_INT(set1(&c, "timeout", "2s"), 0);
  CHECK_EQ_INT(c.timeout, 2000);
  CHECK_EQ_INT(set1(&c, "timeout", "1m"), 0);
  CHECK_EQ_INT(c.timeout, 60000);
  CHECK_EQ_INT(set1(&c, "timeout", "10m"), 0);
  CHECK_EQ_INT(c.timeout, 600000);
  CHECK_EQ_INT(set1(&c, "timeout", "11m"), INV_EINVAL);
  CHECK_EQ_STR(err, "timeout: 660000ms is above the maximum 600000ms");
  CHECK_EQ_INT(set1(&c, "timeout", "0s"), INV_EINVAL);
  CHECK_EQ_STR(err, "timeout: 0ms is below the minimum 1ms");
  const char *bad[] = {"5h", "s", "ms", "1.5s", "-1", "", "1 s", "1sm", "1mss"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CHECK_EQ_INT(set1(&c, "timeout", bad[i]), INV_EINVAL);
  }
  CHECK_EQ_INT(set1(&c, "timeout", "5h"), INV_EINVAL);
  CHECK_EQ_STR(err,
               "timeout: '5h' is not a duration (a number with optional ms, s "
               "or m)");
  CHECK_EQ_INT(c.timeout, 600000);
  CHECK_EQ_INT(set1(&c, "idle", "0"), 0);
  CHECK_EQ_INT(c.idle, 0);
  CHECK_EQ_INT(set1(&c, "idle", "18446744073709551615"), 0);
  CHECK(c.idle == UINT64_MAX);
  CHECK_EQ_INT(set1(&c, "idle", "18446744073709551615s"), INV_EINVAL);
  inv_conf_free(rows, NROWS, &c);
}

static void test_bool(void) {
  tcfg_t c;
  fresh(&c);
  const char *yes[] = {"yes", "true", "on", "1", "YES", "True"};
  const char *no[] = {"no", "false", "off", "0", "NO", "Off"};
  for (size_t i = 0; i < 6; i++) {
    c.allow_flush = 0;
    CHECK_EQ_INT(set1(&c, "allow-flush", yes[i]), 0);
    CHECK_EQ_INT(c.allow_flush, 1);
    CHECK_EQ_INT(set1(&c, "allow-flush", no[i]), 0);
    CHECK_EQ_INT(c.allow_flush, 0);
  }
  CHECK_EQ_INT(set1(&c, "allow-flush", "maybe"), INV_EINVAL);
  CHECK_EQ_STR(err,
               "allow-flush: 'maybe' is not a boolean (yes/no, true/false, "
               "on/off, 1/0)");
  CHECK_EQ_INT(set1(&c, "allow-flush", ""), INV_EINVAL);
  CHECK_EQ_INT(set1(&c, "allow-flush", "2"), INV_EINVAL);
  inv_conf_free(rows, NROWS, &c);
}

static void test_string_enum_addr(void) {
  tcfg_t c;
  fresh(&c);
  CHECK_EQ_INT(set1(&c, "name", "first"), 0);
  CHECK_EQ_STR(c.name, "first");
  CHECK_EQ_INT(set1(&c, "name", "second value"), 0); /* old one freed */
  CHECK_EQ_STR(c.name, "second value");
  CHECK_EQ_INT(set1(&c, "name", ""), 0);
  CHECK_EQ_STR(c.name, "");
  CHECK_EQ_INT(set1(&c, "password", "s3cret"), 0);
  CHECK_EQ_STR(c.password, "s3cret");

  CHECK_EQ_INT(set1(&c, "log-level", "debug"), 0);
  CHECK_EQ_INT(c.log_level, INV_LOG_DEBUG);
  CHECK_EQ_INT(set1(&c, "log-level", "ERROR"), 0);
  CHECK_EQ_INT(c.log_level, INV_LOG_ERROR);
  CHECK_EQ_INT(set1(&c, "log-level", "trace"), INV_EINVAL);
  CHECK_EQ_STR(err,
               "log-level: 'trace' is not one of: debug, info, warn, error");
  CHECK_EQ_INT(c.log_level, INV_LOG_ERROR);

  CHECK_EQ_INT(set1(&c, "listen", "0.0.0.0:9000"), 0);
  CHECK_EQ_STR(c.listen.host, "0.0.0.0");
  CHECK_EQ_INT(c.listen.port, 9000);
  CHECK_EQ_INT(set1(&c, "listen", "nope"), INV_EINVAL);
  CHECK_EQ_STR(err, "listen: 'nope' is not HOST:PORT");
  CHECK_EQ_INT(c.listen.port, 9000);

  CHECK_EQ_INT(set1(&c, "seed", "127.0.0.1:7000"), 0);
  CHECK_EQ_INT(set1(&c, "seed", "127.0.0.1:7001,[::1]:7002 h:7003"), 0);
  CHECK_EQ_INT(c.seeds.count, 4);
  CHECK_EQ_INT(c.seeds.items[0].port, 7000);
  CHECK_EQ_STR(c.seeds.items[2].host, "::1");
  CHECK_EQ_INT(c.seeds.items[3].port, 7003);
  /* A bad entry leaves the list as it was. */
  CHECK_EQ_INT(set1(&c, "seed", "127.0.0.1:7004,bad"), INV_EINVAL);
  CHECK_EQ_STR(err, "seed: 'bad' is not HOST:PORT");
  CHECK_EQ_INT(c.seeds.count, 4);
  CHECK_EQ_INT(set1(&c, "seed", " , "), INV_EINVAL);
  CHECK_EQ_STR(err, "seed: missing value");

  CHECK_EQ_INT(set1(&c, "nope", "1"), INV_EINVAL);
  CHECK_EQ_STR(err, "unknown directive 'nope'");
  CHECK_EQ_INT(set1(&c, "MAX-CLIENTS", "9"), 0);
  CHECK_EQ_INT(c.max_clients, 9);
  CHECK_EQ_INT(set1(&c, "name", NULL), INV_EINVAL);
  CHECK_EQ_STR(err, "name: missing value");
  inv_conf_free(rows, NROWS, &c);
  CHECK(c.seeds.items == NULL);
  CHECK_EQ_INT(c.seeds.count, 0);
  CHECK(c.password == NULL);
}

/* ---- files ------------------------------------------------------------- */

static int load(tcfg_t *c, const char *text) {
  err[0] = '\0';
  return inv_conf_load_string(rows, NROWS, c, "test.conf", text, err,
                              sizeof(err));
}

static void test_load_string(void) {
  tcfg_t c;
  fresh(&c);
  const char *text =
      "# a comment\n"
      "\n"
      "   \t\n"
      "max-clients 50\n"
      "  timeout\t3s   # trailing comment\n"
      "name \"hello # world\"\n"
      "password \"a \\\"quoted\\\" \\\\ value\"\n"
      "seed 127.0.0.1:7000 127.0.0.1:7001\n"
      "seed 127.0.0.1:7002\r\n"
      "allow-flush yes\r\n"
      "listen [::1]:7800\n"
      "LOG-LEVEL warn\n"
      "max-frame 2m";
  CHECK_EQ_INT(load(&c, text), 0);
  CHECK_EQ_STR(err, "");
  CHECK_EQ_INT(c.max_clients, 50);
  CHECK_EQ_INT(c.timeout, 3000);
  CHECK_EQ_STR(c.name, "hello # world");
  CHECK_EQ_STR(c.password, "a \"quoted\" \\ value");
  CHECK_EQ_INT(c.seeds.count, 3);
  CHECK_EQ_INT(c.seeds.items[2].port, 7002);
  CHECK_EQ_INT(c.allow_flush, 1);
  CHECK_EQ_STR(c.listen.host, "::1");
  CHECK_EQ_INT(c.log_level, INV_LOG_WARN);
  CHECK_EQ_INT(c.max_frame, 2 * 1024 * 1024);
  inv_conf_free(rows, NROWS, &c);

  /* Values and tokens: '#' inside a token is kept; other backslashes are
   * literal; a quoted empty string is a value; duplicates replace. */
  fresh(&c);
  CHECK_EQ_INT(load(&c, "name abc#1\npassword \"C:\\dir\"\nname \"\"\n"), 0);
  CHECK_EQ_STR(c.name, "");
  CHECK_EQ_STR(c.password, "C:\\dir");
  CHECK_EQ_INT(load(&c, "name one\nname two\nname three\n"), 0);
  CHECK_EQ_STR(c.name, "three");
  CHECK_EQ_INT(load(&c, ""), 0);
  CHECK_EQ_INT(load(&c, "\n\n# only comments\n"), 0);
  inv_conf_free(rows, NROWS, &c);
}

static void test_load_errors(void) {
  struct {
    const char *text;
    const char *want;
  } cases[] = {
      {"max-clients 10\n\nmax-clients 0\n",
       "test.conf:3: max-clients: 0 is below the minimum 1"},
      {"# x\nnope 1\n", "test.conf:2: unknown directive 'nope'"},
      {"name \"unterminated\n", "test.conf:1: name: unbalanced quotes"},
      {"name \"a\"b\n",
       "test.conf:1: name: a closing quote must be followed by a space"},
      {"name a b\n",
       "test.conf:1: name: takes one value, got 'a' and 'b' (write a unit "
       "without a space, and quote a value with spaces)"},
      /* The count comes before the range: not "5ms is below the minimum". */
      {"timeout 5 s\n",
       "test.conf:1: timeout: takes one value, got '5' and 's' (write a unit "
       "without a space, and quote a value with spaces)"},
      {"max-frame 64 k\n",
       "test.conf:1: max-frame: takes one value, got '64' and 'k' (write a "
       "unit without a space, and quote a value with spaces)"},
      {"\n\n\n\ntimeout\n", "test.conf:5: timeout: missing value"},
      {"timeout # only a comment\n", "test.conf:1: timeout: missing value"},
      {"allow-flush maybe\n",
       "test.conf:1: allow-flush: 'maybe' is not a boolean (yes/no, "
       "true/false, on/off, 1/0)"},
      {"seed 1.2.3.4:5 x\n", "test.conf:1: seed: 'x' is not HOST:PORT"},
      {"max-frame 1g\r\n",
       "test.conf:1: max-frame: 1073741824 is above the maximum 67108864"},
      {"\"max-clients\" 5\nmax-clients\n",
       "test.conf:2: max-clients: missing value"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    tcfg_t c;
    fresh(&c);
    CHECK(load(&c, cases[i].text) < 0);
    CHECK_EQ_STR(err, cases[i].want);
    inv_conf_free(rows, NROWS, &c);
  }
}

/* Writes text to a new temporary file and returns its path (static). */
static const char *write_temp(const char *text) {
  static char path[64];
  strcpy(path, "/tmp/inval-test-config-XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) return NULL;
  FILE *f = fdopen(fd, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

static void test_load_file(void) {
  tcfg_t c;
  fresh(&c);
  const char *path = write_temp("max-clients 77\nseed 10.0.0.1:6379\n");
  CHECK(path != NULL);
  char saved[64];
  snprintf(saved, sizeof(saved), "%s", path);
  CHECK_EQ_INT(inv_conf_load_file(rows, NROWS, &c, saved, err, sizeof(err)), 0);
  CHECK_EQ_INT(c.max_clients, 77);
  CHECK_EQ_INT(c.seeds.count, 1);
  unlink(saved);
  path = write_temp("max-clients 1\nmax-clients x\n");
  snprintf(saved, sizeof(saved), "%s", path);
  CHECK_EQ_INT(inv_conf_load_file(rows, NROWS, &c, saved, err, sizeof(err)),
               INV_EINVAL);
  char want[200];
  snprintf(want, sizeof(want), "%s:2: max-clients: 'x' is not an integer",
           saved);
  CHECK_EQ_STR(err, want);
  unlink(saved);
  CHECK_EQ_INT(inv_conf_load_file(rows, NROWS, &c, "/nonexistent/inval.conf",
                                  err, sizeof(err)),
               INV_EIO);
  CHECK_EQ_STR(err, "/nonexistent/inval.conf: No such file or directory");
  /* A large file (over the read chunk) loads line by line. */
  size_t n = 5000;
  char *big = malloc(n * 24 + 1);
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    len += (size_t)sprintf(big + len, "max-clients %zu\n", i + 1);
  }
  path = write_temp(big);
  snprintf(saved, sizeof(saved), "%s", path);
  CHECK_EQ_INT(inv_conf_load_file(rows, NROWS, &c, saved, err, sizeof(err)), 0);
  CHECK_EQ_INT(c.max_clients, 5000);
  unlink(saved);
  free(big);
  inv_conf_free(rows, NROWS, &c);
}

/* Input is bounded before it is applied: the buffer entry point takes any
 * bytes, refuses a NUL byte (naming its line) and anything over
 * INV_CONF_MAX_BYTES, and an address list stops at INV_CONF_ADDR_LIST_MAX
 * without sizing an array from its separators. */
static void test_load_bounds(void) {
  tcfg_t c;
  fresh(&c);
  /* No terminator needed: the length bounds the text. */
  CHECK_EQ_INT(
      inv_conf_load_buffer(rows, NROWS, &c, "b.conf",
                           "max-clients 12max-clients 9", 14, err, sizeof(err)),
      0);
  CHECK_EQ_INT(c.max_clients, 12);
  CHECK_EQ_INT(
      inv_conf_load_buffer(rows, NROWS, &c, "b.conf", "name a\nname b\0c\n", 16,
                           err, sizeof(err)),
      INV_EINVAL);
  CHECK_EQ_STR(err, "b.conf:2: contains a NUL byte");
  CHECK_EQ_STR(c.name, "inval"); /* refused before any line was applied */

  size_t big = INV_CONF_MAX_BYTES + 1;
  char *text = malloc(big);
  CHECK(text != NULL);
  memset(text, '#', big);
  CHECK_EQ_INT(inv_conf_load_buffer(rows, NROWS, &c, "b.conf", text, big, err,
                                    sizeof(err)),
               INV_EINVAL);
  CHECK_EQ_STR(err, "b.conf: is over 1048576 bytes");
  CHECK_EQ_INT(inv_conf_load_buffer(rows, NROWS, &c, "b.conf", text, big - 1,
                                    err, sizeof(err)),
               0); /* one comment */

  /* 1 MiB of commas is no address, and sizes no array from its commas. */
  memcpy(text, "seed ", 5);
  memset(text + 5, ',', big - 7);
  text[big - 2] = '\n';
  CHECK_EQ_INT(inv_conf_load_buffer(rows, NROWS, &c, "b.conf", text, big - 1,
                                    err, sizeof(err)),
               INV_EINVAL);
  CHECK_EQ_STR(err, "b.conf:1: seed: missing value");
  /* The list holds INV_CONF_ADDR_LIST_MAX addresses and no more. */
  size_t len = (size_t)sprintf(text, "seed");
  for (unsigned i = 0; i < INV_CONF_ADDR_LIST_MAX; i++)
    len += (size_t)sprintf(text + len, " h%u:1", i);
  text[len++] = '\n';
  CHECK_EQ_INT(inv_conf_load_buffer(rows, NROWS, &c, "b.conf", text, len, err,
                                    sizeof(err)),
               0);
  CHECK_EQ_INT(c.seeds.count, INV_CONF_ADDR_LIST_MAX);
  CHECK_EQ_INT(inv_conf_load_string(rows, NROWS, &c, "b.conf", "seed h:2\n",
                                    err, sizeof(err)),
               INV_EINVAL);
  CHECK_EQ_STR(err, "b.conf:1: seed: more than 1024 addresses");
  CHECK_EQ_INT(c.seeds.count, INV_CONF_ADDR_LIST_MAX);
  inv_conf_free(rows, NROWS, &c);
  fresh(&c);
  len = (size_t)sprintf(text, "seed h:1");
  for (unsigned i = 0; i < INV_CONF_ADDR_LIST_MAX; i++)
    len += (size_t)sprintf(text + len, ",h%u:1", i);
  text[len++] = '\n';
  CHECK_EQ_INT(inv_conf_load_buffer(rows, NROWS, &c, "b.conf", text, len, err,
                                    sizeof(err)),
               INV_EINVAL);
  CHECK_EQ_STR(err, "b.conf:1: seed: more than 1024 addresses");
  CHECK_EQ_INT(c.seeds.count, 0);

  /* A file over the limit is refused while it is read. */
  memset(text, '#', big);
  text[big - 1] = '\0';
  char saved[64];
  const char *path = write_temp(text);
  CHECK(path != NULL);
  snprintf(saved, sizeof(saved), "%s", path);
  free(text);
  CHECK_EQ_INT(inv_conf_load_file(rows, NROWS, &c, saved, err, sizeof(err)), 0);
  FILE *f = fopen(saved, "ab");
  CHECK(f != NULL);
  fputs("##", f);
  fclose(f);
  CHECK_EQ_INT(inv_conf_load_file(rows, NROWS, &c, saved, err, sizeof(err)),
               INV_EINVAL);
  char want[128];
  snprintf(want, sizeof(want), "%s: is over 1048576 bytes", saved);
  CHECK_EQ_STR(err, want);
  unlink(saved);
  inv_conf_free(rows, NROWS, &c);
}

/* Hosts that could not be read back from a printed config are refused,
 * and a string holding a control character is printed quoted. */
static void test_addr_print_safe(void) {
  inv_addr_t a;
  CHECK_EQ_INT(inv_addr_parse("[#x]:1", &a), INV_EINVAL);
  CHECK_EQ_INT(inv_addr_parse("[\"x]:1", &a), INV_EINVAL);
  CHECK_EQ_INT(inv_addr_parse("a\\b:1", &a), INV_EINVAL);
  CHECK_EQ_INT(inv_addr_parse("h\x80:1", &a), INV_EINVAL);
  CHECK_EQ_INT(inv_addr_parse("[fe80::1]:1", &a), 0);
}

/* ---- printing ---------------------------------------------------------- */

static char *print_to_string(const tcfg_t *c, int help) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (help) {
    inv_conf_print_help(f, rows, NROWS);
  } else {
    inv_conf_print(f, rows, NROWS, c);
  }
  fclose(f);
  return text;
}

static void test_print_round_trip(void) {
  tcfg_t c, d;
  fresh(&c);
  char *text = print_to_string(&c, 0);
  CHECK(strstr(text, "max-clients 10000\n") != NULL);
  CHECK(strstr(text, "max-frame 1m\n") != NULL);
  CHECK(strstr(text, "timeout 5s\n") != NULL);
  CHECK(strstr(text, "allow-flush no\n") != NULL);
  CHECK(strstr(text, "name inval\n") != NULL);
  CHECK(strstr(text, "listen 127.0.0.1:7700\n") != NULL);
  CHECK(strstr(text, "# seed (not set)\n") != NULL);
  CHECK(strstr(text, "log-level info\n") != NULL);
  CHECK(strstr(text, "# password (not set)\n") != NULL);
  CHECK(strstr(text, "# token (not set)\n") != NULL);
  CHECK(strstr(text, "offset -5\n") != NULL);
  CHECK(strstr(text, "idle 0ms\n") != NULL);
  free(text);

  CHECK_EQ_INT(load(&c,
                    "name \"two words # \\\"q\\\" \\\\\"\npassword \"\"\n"
                    "seed [::1]:1\nseed h:2\nmax-frame 1025\n"
                    "timeout 1500\nidle 2m\nallow-flush on\n"),
               0);
  text = print_to_string(&c, 0);
  CHECK(strstr(text, "name \"two words # \\\"q\\\" \\\\\"\n") != NULL);
  CHECK(strstr(text, "password \"\"\n") != NULL);
  CHECK(strstr(text, "seed [::1]:1\nseed h:2\n") != NULL);
  CHECK(strstr(text, "max-frame 1025\n") != NULL);
  CHECK(strstr(text, "timeout 1500ms\n") != NULL);
  CHECK(strstr(text, "idle 2m\n") != NULL);
  /* What is printed loads back to the same configuration. */
  fresh(&d);
  CHECK_EQ_INT(load(&d, text), 0);
  CHECK_EQ_STR(d.name, c.name);
  CHECK_EQ_STR(d.password, "");
  CHECK_EQ_INT(d.seeds.count, 2);
  CHECK_EQ_INT(d.max_frame, 1025);
  CHECK_EQ_INT(d.timeout, 1500);
  CHECK_EQ_INT(d.idle, 120000);
  CHECK_EQ_INT(d.allow_flush, 1);
  free(text);
  inv_conf_free(rows, NROWS, &c);
  inv_conf_free(rows, NROWS, &d);
}

static void test_print_secret(void) {
  /* A secret is loaded like a string but printed only as "set". */
  tcfg_t c;
  fresh(&c);
  CHECK_EQ_INT(set1(&c, "token", "s3cr3t-value"), 0);
  CHECK_EQ_STR(c.token, "s3cr3t-value");
  char *text = print_to_string(&c, 0);
  CHECK(strstr(text, "# token (set, not shown)\n") != NULL);
  CHECK(strstr(text, "s3cr3t-value") == NULL);
  free(text);
  inv_conf_free(rows, NROWS, &c);
}

/* --help and the printed config write a size or a duration the same way,
 * whatever the spelling of the row's default. */
typedef struct fmt_cfg_s {
  uint64_t idle, tiny, odd;
  size_t buf, exact;
} fmt_cfg_t;

static void test_one_format(void) {
  static const inv_conf_row_t frows[] = {
      {"idle-timeout", INV_CONF_MS, offsetof(fmt_cfg_t, idle), 0, 0, "300s",
       NULL, "Idle."},
      {"tiny", INV_CONF_MS, offsetof(fmt_cfg_t, tiny), 0, 0, "1500", NULL,
       "Tiny."},
      {"odd", INV_CONF_MS, offsetof(fmt_cfg_t, odd), 0, 0, "0", NULL, "Odd."},
      {"buf", INV_CONF_SIZE, offsetof(fmt_cfg_t, buf), 0, 0, "65536", NULL,
       "Buf."},
      {"exact", INV_CONF_SIZE, offsetof(fmt_cfg_t, exact), 0, 0, "1000", NULL,
       "Exact."},
  };
  static const char *const want[] = {"5m", "1500ms", "0ms", "64k", "1000"};
  size_t n = sizeof(frows) / sizeof(frows[0]);
  fmt_cfg_t c;
  char err[256], *help = NULL, *conf = NULL;
  size_t hlen = 0, clen = 0;
  memset(&c, 0, sizeof(c));
  CHECK_EQ_INT(inv_conf_defaults(frows, n, &c, err, sizeof(err)), 0);
  FILE *h = open_memstream(&help, &hlen), *f = open_memstream(&conf, &clen);
  CHECK(h != NULL && f != NULL);
  inv_conf_print_help(h, frows, n);
  inv_conf_print(f, frows, n, &c);
  fclose(h);
  fclose(f);
  for (size_t i = 0; i < n; i++) {
    char line[64], def[64];
    snprintf(line, sizeof(line), "%s %s\n", frows[i].name, want[i]);
    snprintf(def, sizeof(def), "(default: %s)\n", want[i]);
    CHECK(strstr(conf, line) != NULL);
    CHECK(strstr(help, def) != NULL);
  }
  CHECK(strstr(help, "300s") == NULL && strstr(help, "65536") == NULL);
  free(help);
  free(conf);
}

static void test_print_help(void) {
  char *text = print_to_string(NULL, 1);
  CHECK(strstr(text, "--max-clients N") != NULL);
  CHECK(strstr(text, "Most clients at once. (default: 10000)\n") != NULL);
  CHECK(strstr(text, "--max-frame BYTES") != NULL);
  CHECK(strstr(text, "--timeout MS") != NULL);
  CHECK(strstr(text, "--allow-flush [yes|no]") != NULL);
  CHECK(strstr(text, "--listen HOST:PORT") != NULL);
  CHECK(strstr(text, "--log-level debug|info|warn|error") != NULL);
  CHECK(strstr(text, "Redis password.\n") != NULL); /* no default shown */
  CHECK(strstr(text, "Redis seed node. (repeatable)\n") != NULL);
  /* One line per row. */
  int lines = 0;
  for (char *p = text; *p; p++) lines += *p == '\n';
  CHECK_EQ_INT(lines, (int)NROWS);
  free(text);
}

/* ---- command line ------------------------------------------------------ */

typedef struct {
  int rc;
  inv_cli_action_t action;
  char out[8192];
} cli_result_t;

/* Runs inv_cli_parse on a NULL-terminated argument list, capturing what it
 * writes to stdout. */
static void cli(tcfg_t *c, cli_result_t *r, const char *const *args) {
  char *argv[64];
  int argc = 0;
  argv[argc++] = (char *)"inval-test";
  for (; *args && argc < 63; args++) argv[argc++] = (char *)*args;
  argv[argc] = NULL;
  fflush(stdout);
  int saved = dup(1);
  FILE *tmp = tmpfile();
  dup2(fileno(tmp), 1);
  memset(c, 0xa5, sizeof(*c)); /* the parser must not trust the struct */
  err[0] = '\0';
  r->action = (inv_cli_action_t)99;
  r->rc = inv_cli_parse(argc, argv, rows, NROWS, c, "inval-test",
                        "Test daemon summary.", "0.1.0", &r->action, err,
                        sizeof(err));
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  rewind(tmp);
  size_t n = fread(r->out, 1, sizeof(r->out) - 1, tmp);
  r->out[n] = '\0';
  fclose(tmp);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_cli_basic(void) {
  tcfg_t c;
  cli_result_t r;
  cli(&c, &r, (const char *const[]){NULL});
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(r.action, INV_CLI_RUN);
  CHECK_EQ_INT(c.max_clients, 10000);
  CHECK_EQ_STR(c.name, "inval");
  CHECK_EQ_STR(r.out, "");
  inv_conf_free(rows, NROWS, &c);

  cli(&c, &r,
      ARGS("--max-clients", "5", "--timeout=2s", "--allow-flush", "--name",
           "x y", "--log-level=debug", "--seed", "127.0.0.1:1",
           "--seed=127.0.0.1:2,127.0.0.1:3", "--listen", "[::1]:9"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(r.action, INV_CLI_RUN);
  CHECK_EQ_INT(c.max_clients, 5);
  CHECK_EQ_INT(c.timeout, 2000);
  CHECK_EQ_INT(c.allow_flush, 1);
  CHECK_EQ_STR(c.name, "x y");
  CHECK_EQ_INT(c.log_level, INV_LOG_DEBUG);
  CHECK_EQ_INT(c.seeds.count, 3);
  CHECK_EQ_INT(c.seeds.items[2].port, 3);
  CHECK_EQ_STR(c.listen.host, "::1");
  inv_conf_free(rows, NROWS, &c);

  /* Bare BOOL flags mean yes, and may take a boolean word. */
  cli(&c, &r, ARGS("--allow-flush", "--max-clients", "3"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(c.allow_flush, 1);
  CHECK_EQ_INT(c.max_clients, 3);
  inv_conf_free(rows, NROWS, &c);
  cli(&c, &r, ARGS("--allow-flush", "yes", "--allow-flush", "no"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(c.allow_flush, 0);
  inv_conf_free(rows, NROWS, &c);
  cli(&c, &r, ARGS("--allow-flush=off"));
  CHECK_EQ_INT(c.allow_flush, 0);
  inv_conf_free(rows, NROWS, &c);
  cli(&c, &r, ARGS("--allow-flush"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(c.allow_flush, 1);
  inv_conf_free(rows, NROWS, &c);
  /* A value starting with '-' is still the value of a non-BOOL flag, and
   * "--name=" sets an empty string. */
  cli(&c, &r, ARGS("--offset", "-7", "--name="));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(c.offset, -7);
  CHECK_EQ_STR(c.name, "");
  inv_conf_free(rows, NROWS, &c);
}

static void test_cli_errors(void) {
  tcfg_t c;
  cli_result_t r;
  struct {
    const char *const *args;
    const char *want;
  } cases[] = {
      {ARGS("--foo"), "unknown option --foo; see --help"},
      {ARGS("--max-clients", "5", "--foo=bar"),
       "unknown option --foo; see --help"},
      {ARGS("stray"), "unexpected argument 'stray'; see --help"},
      {ARGS("-x"), "unexpected argument '-x'; see --help"},
      {ARGS("--"), "unexpected argument '--'; see --help"},
      {ARGS("--max-clients"), "--max-clients: missing value"},
      {ARGS("--max-clients", "0"), "--max-clients: 0 is below the minimum 1"},
      {ARGS("--timeout=forever"),
       "--timeout: 'forever' is not a duration (a number with optional ms, s "
       "or m)"},
      {ARGS("--allow-flush=maybe"),
       "--allow-flush: 'maybe' is not a boolean (yes/no, true/false, on/off, "
       "1/0)"},
      {ARGS("--name", "a", "--seed", "bad"), "--seed: 'bad' is not HOST:PORT"},
      {ARGS("-c"), "--config: missing file name"},
      {ARGS("--config", "/nonexistent/x.conf"),
       "/nonexistent/x.conf: No such file or directory"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cli(&c, &r, cases[i].args);
    CHECK(r.rc < 0);
    CHECK_EQ_STR(err, cases[i].want);
    CHECK_EQ_STR(r.out, "");
    /* On error the configuration is already released. */
    CHECK(c.name == NULL);
    CHECK(c.seeds.items == NULL);
    inv_conf_free(rows, NROWS, &c);
  }
}

static void test_cli_config_file(void) {
  tcfg_t c;
  cli_result_t r;
  char path[64];
  snprintf(path, sizeof(path), "%s",
           write_temp("max-clients 50\ntimeout 9s\nseed 10.0.0.1:1\n"
                      "seed 10.0.0.2:2\nname fromfile\n"));
  /* Flags win over the file whatever their order. */
  cli(&c, &r, ARGS("--max-clients", "7", "-c", path));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(c.max_clients, 7);
  CHECK_EQ_INT(c.timeout, 9000);
  CHECK_EQ_STR(c.name, "fromfile");
  CHECK_EQ_INT(c.seeds.count, 2);
  inv_conf_free(rows, NROWS, &c);
  cli(&c, &r, ARGS("--config", path, "--max-clients", "8", "--name", "flag"));
  CHECK_EQ_INT(c.max_clients, 8);
  CHECK_EQ_STR(c.name, "flag");
  inv_conf_free(rows, NROWS, &c);
  char eq[80];
  snprintf(eq, sizeof(eq), "--config=%s", path);
  cli(&c, &r, ARGS(eq));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(c.max_clients, 50);
  inv_conf_free(rows, NROWS, &c);
  /* Command-line seeds replace the file's list; several flags append to
   * each other. */
  cli(&c, &r, ARGS("--seed", "1.1.1.1:1", "-c", path, "--seed", "2.2.2.2:2"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(c.seeds.count, 2);
  CHECK_EQ_STR(c.seeds.items[0].host, "1.1.1.1");
  CHECK_EQ_STR(c.seeds.items[1].host, "2.2.2.2");
  inv_conf_free(rows, NROWS, &c);
  /* --check-config prints the effective configuration. */
  cli(&c, &r, ARGS("-c", path, "--check-config", "--max-clients", "9"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(r.action, INV_CLI_CHECK);
  CHECK(strstr(r.out, "max-clients 9\n") != NULL);
  CHECK(strstr(r.out, "timeout 9s\n") != NULL);
  CHECK(strstr(r.out, "seed 10.0.0.1:1\nseed 10.0.0.2:2\n") != NULL);
  inv_conf_free(rows, NROWS, &c);
  /* An invalid file under --check-config is an error, not a check. */
  char bad[64];
  snprintf(bad, sizeof(bad), "%s", write_temp("name ok\n\nmax-clients -1\n"));
  cli(&c, &r, ARGS("--check-config", "-c", bad));
  CHECK(r.rc < 0);
  char want[200];
  snprintf(want, sizeof(want), "%s:3: max-clients: -1 is below the minimum 1",
           bad);
  CHECK_EQ_STR(err, want);
  CHECK_EQ_STR(r.out, "");
  inv_conf_free(rows, NROWS, &c);
  unlink(bad);
  unlink(path);
}

static void test_cli_help_version(void) {
  tcfg_t c;
  cli_result_t r;
  cli(&c, &r, ARGS("--help"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(r.action, INV_CLI_HELP);
  CHECK(strncmp(r.out, "Usage: inval-test [OPTIONS]\nTest daemon summary.\n",
                49) == 0);
  CHECK(strstr(r.out, "--config FILE") != NULL);
  CHECK(strstr(r.out, "--check-config") != NULL);
  CHECK(strstr(r.out, "--version") != NULL);
  CHECK(strstr(r.out, "--max-clients N") != NULL);
  CHECK(strstr(r.out, "(default: 10000)") != NULL);
  inv_conf_free(rows, NROWS, &c);
  /* --help wins over errors elsewhere on the line. */
  cli(&c, &r, ARGS("--bogus", "-h", "--max-clients", "0"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(r.action, INV_CLI_HELP);
  CHECK(strstr(r.out, "Usage: inval-test") != NULL);
  inv_conf_free(rows, NROWS, &c);
  cli(&c, &r, ARGS("--version"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(r.action, INV_CLI_VERSION);
  CHECK_EQ_STR(r.out, "inval-test 0.1.0\n");
  inv_conf_free(rows, NROWS, &c);
  cli(&c, &r, ARGS("--check-config"));
  CHECK_EQ_INT(r.rc, 0);
  CHECK_EQ_INT(r.action, INV_CLI_CHECK);
  CHECK(strstr(r.out, "max-clients 10000\n") != NULL);
  inv_conf_free(rows, NROWS, &c);
}

/* ---- logging ----------------------------------------------------------- */

/* Runs fn with stderr captured into out. */
static void capture_stderr(void (*fn)(void), char *out, size_t outlen) {
  fflush(stderr);
  int saved = dup(2);
  FILE *tmp = tmpfile();
  dup2(fileno(tmp), 2);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  rewind(tmp);
  size_t n = fread(out, 1, outlen - 1, tmp);
  out[n] = '\0';
  fclose(tmp);
}

static void log_some(void) {
  inv_log_set_level(INV_LOG_INFO);
  inv_log_debug("sink", "dropped %d", 1);
  inv_log_info("sink", "connected to %s:%d", "127.0.0.1", 7000);
  inv_log_warn("worker 127.0.0.1:7001", "two\nlines");
  inv_log_error("x", "%s", "boom");
}

static char long_msg[3000];
static void log_long(void) {
  memset(long_msg, 'q', sizeof(long_msg) - 1);
  long_msg[sizeof(long_msg) - 1] = '\0';
  inv_log_error("ctx", "<%s>", long_msg);
}

static void test_log(void) {
  inv_log_level_t lvl = INV_LOG_ERROR;
  CHECK_EQ_INT(inv_log_parse_level("debug", &lvl), 0);
  CHECK_EQ_INT(lvl, INV_LOG_DEBUG);
  CHECK_EQ_INT(inv_log_parse_level("warn", &lvl), 0);
  CHECK_EQ_INT(lvl, INV_LOG_WARN);
  CHECK_EQ_INT(inv_log_parse_level("error", &lvl), 0);
  CHECK_EQ_INT(lvl, INV_LOG_ERROR);
  CHECK_EQ_INT(inv_log_parse_level("info", &lvl), 0);
  CHECK_EQ_INT(lvl, INV_LOG_INFO);
  CHECK_EQ_INT(inv_log_parse_level("verbose", &lvl), INV_EINVAL);
  CHECK_EQ_INT(lvl, INV_LOG_INFO);
  CHECK_EQ_INT(inv_log_parse_level(NULL, &lvl), INV_EINVAL);
  CHECK_EQ_STR(inv_log_level_names[0], "debug");
  CHECK_EQ_STR(inv_log_level_names[3], "error");
  CHECK(inv_log_level_names[4] == NULL);
  inv_log_set_level(INV_LOG_WARN);
  CHECK_EQ_INT(inv_log_get_level(), INV_LOG_WARN);

  char out[8192];
  capture_stderr(log_some, out, sizeof(out));
  /* Three lines: the debug one is dropped. */
  int lines = 0;
  for (char *p = out; *p; p++) lines += *p == '\n';
  CHECK_EQ_INT(lines, 3);
  /* 2026-11-25T06:30:00.123Z INFO  [sink] connected to 127.0.0.1:7000 */
  CHECK(strlen(out) > 25);
  CHECK(out[4] == '-' && out[7] == '-' && out[10] == 'T' && out[13] == ':' &&
        out[16] == ':' && out[19] == '.' && out[23] == 'Z' && out[24] == ' ');
  CHECK(strncmp(out + 25, "INFO  [sink] connected to 127.0.0.1:7000\n", 41) ==
        0);
  CHECK(strstr(out, "Z WARN  [worker 127.0.0.1:7001] two lines\n") != NULL);
  CHECK(strstr(out, "Z ERROR [x] boom\n") != NULL);
  CHECK(strstr(out, "dropped") == NULL);

  capture_stderr(log_long, out, sizeof(out));
  CHECK(strstr(out, "Z ERROR [ctx] <") != NULL);
  CHECK_EQ_INT(strlen(out), 25 + 12 + 2 + 2999 + 1);
  CHECK(strstr(out, "qqq>\n") != NULL);
  inv_log_set_level(INV_LOG_INFO);
}

int main(void) {
  RUN(test_addr);
  RUN(test_defaults);
  RUN(test_int);
  RUN(test_size);
  RUN(test_ms);
  RUN(test_bool);
  RUN(test_string_enum_addr);
  RUN(test_load_string);
  RUN(test_load_errors);
  RUN(test_load_file);
  RUN(test_load_bounds);
  RUN(test_addr_print_safe);
  RUN(test_print_round_trip);
  RUN(test_print_secret);
  RUN(test_print_help);
  RUN(test_cli_basic);
  RUN(test_cli_errors);
  RUN(test_cli_config_file);
  RUN(test_one_format);
  RUN(test_cli_help_version);
  RUN(test_log);
  return check_summary();
}
