/*
 * Unit tests of service/tenants.c: parsing (and the line numbers of its
 * errors), authentication by token and by certificate identity, the
 * namespace rule for keys, prefixes and patterns (escapes, classes,
 * wildcards), the token bucket, and what a reload carries over.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "inval/errors.h"
#include "service/tenants.h"

static inv_tenants_t *parse_ok(const char *text) {
  inv_tenants_t *ts = NULL;
  char err[300] = "";
  int rc = inv_tenants_parse("t.conf", NULL, text, &ts, err, sizeof(err));
  if (rc != 0) fprintf(stderr, "unexpected parse error: %s\n", err);
  CHECK_EQ_INT(rc, 0);
  return ts;
}

/* Expects text to be refused with a message containing want. */
static void parse_bad(const char *text, const char *want) {
  inv_tenants_t *ts = NULL;
  char err[300] = "";
  int rc = inv_tenants_parse("t.conf", NULL, text, &ts, err, sizeof(err));
  CHECK_EQ_INT(rc, INV_ECONFIG);
  CHECK(ts == NULL);
  if (strstr(err, want) == NULL)
    fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
  CHECK(strstr(err, want) != NULL);
}

static const inv_tenant_t *by_token(const inv_tenants_t *ts, const char *t) {
  return inv_tenants_authenticate(ts, t, strlen(t), NULL, 0);
}

static void test_parse(void) {
  inv_tenants_t *ts = parse_ok(
      "# comment\n"
      "\n"
      "tenant shop token s3cret namespaces shop:,cart: rate 100\n"
      "tenant ops token \"op token\"   # an admin\n"
      "tenant web cert CN=web.example namespace web: namespace \"a b:\" "
      "rate 10 burst 50\n");
  if (ts == NULL) return;
  CHECK_EQ_INT(inv_tenants_count(ts), 3);
  inv_tenant_t *shop = inv_tenants_find(ts, "shop");
  CHECK(shop != NULL && shop->nns == 2 && shop->rate == 100 &&
        shop->burst == 100);
  CHECK_EQ_STR(shop->ns_text, "shop:, cart:");
  inv_tenant_t *ops = inv_tenants_find(ts, "ops");
  CHECK(ops != NULL && ops->nns == 0 && ops->rate == 0);
  inv_tenant_t *web = inv_tenants_find(ts, "web");
  CHECK(web != NULL && web->nns == 2 && web->burst == 50);
  CHECK(inv_tenants_find(ts, "nobody") == NULL);
  inv_tenants_free(ts);

  /* An empty file is a valid table with no tenant. */
  ts = parse_ok("# nothing\n");
  CHECK_EQ_INT(inv_tenants_count(ts), 0);
  inv_tenants_free(ts);
  inv_tenants_free(NULL);
}

static void test_parse_errors(void) {
  parse_bad("tenant a token x\n\nfrobnicate\n", "t.conf:3: unknown directive");
  parse_bad("tenant a namespaces a:\n", "t.conf:1: tenant a has no credential");
  parse_bad("tenant a token x\ntenant a token y\n",
            "t.conf:2: tenant a is "
            "defined twice");
  parse_bad("tenant a token x\ntenant b token x\n",
            "t.conf:2: tenant b: that token already belongs to tenant a");
  parse_bad("tenant a cert CN=x\ntenant b cert CN=x\n",
            "that cert already belongs to tenant a");
  parse_bad("tenant a token x namespaces shop:,,b:\n", "empty namespace");
  parse_bad("tenant a token x namespace cache:invalidation:log\n",
            "the service's own keys");
  parse_bad("tenant a token x namespace cache:\n", "the service's own keys");
  parse_bad("tenant a token x rate -1\n", "rate \"-1\" is not a number");
  parse_bad("tenant a token x rate fast\n", "rate \"fast\"");
  parse_bad("tenant a token x rate 5 burst 0.5\n", "burst must be at least 1");
  parse_bad("tenant a token x colour blue\n", "unknown word \"colour\"");
  parse_bad("tenant a token\n", "a value must follow each word");
  parse_bad("tenant bad/name token x\n", "tenant name \"bad/name\"");
  parse_bad("tenant\n", "tenant needs a name");
  parse_bad("tenant a token \"open\n", "unterminated quoted word");
  parse_bad("tenant a token-file /nonexistent/tok\n",
            "token-file /nonexistent/tok: No such file");
  parse_bad("tenant a token \"\"\n", "empty token");
}

static void test_token_file(void) {
  char dir[] = "/tmp/inv-tenants-XXXXXX";
  char path[128], conf[128];
  inv_tenants_t *ts = NULL;
  char err[300];
  if (mkdtemp(dir) == NULL) {
    CHECK(0);
    return;
  }
  snprintf(path, sizeof(path), "%s/shop.token", dir);
  FILE *f = fopen(path, "w");
  fputs("filesecret\n", f);
  fclose(f);
  snprintf(conf, sizeof(conf), "%s/tenants.conf", dir);
  f = fopen(conf, "w");
  fputs("tenant shop token-file shop.token namespace shop:\n", f);
  fclose(f);
  CHECK_EQ_INT(inv_tenants_load_file(conf, &ts, err, sizeof(err)), 0);
  CHECK(ts != NULL && by_token(ts, "filesecret") != NULL);
  CHECK(ts != NULL && by_token(ts, "filesecret\n") == NULL);
  inv_tenants_free(ts);
  unlink(path);
  unlink(conf);
  rmdir(dir);
  CHECK_EQ_INT(inv_tenants_load_file(conf, &ts, err, sizeof(err)), INV_ECONFIG);
  CHECK(strstr(err, "cannot open") != NULL);
}

static void test_authenticate(void) {
  inv_tenants_t *ts = parse_ok(
      "tenant shop token s3cret cert CN=shop namespace shop:\n"
      "tenant web cert web.example namespace web:\n");
  if (ts == NULL) return;
  CHECK_EQ_STR(by_token(ts, "s3cret")->name, "shop");
  CHECK(by_token(ts, "s3cre") == NULL);
  CHECK(by_token(ts, "s3cret ") == NULL);
  CHECK(by_token(ts, "") == NULL);
  const char *ids[] = {"CN=other,O=x", "web.example"};
  const inv_tenant_t *t = inv_tenants_authenticate(ts, NULL, 0, ids, 2);
  CHECK(t != NULL && strcmp(t->name, "web") == 0);
  /* A wrong token decides, whatever the certificate says. */
  CHECK(inv_tenants_authenticate(ts, "bad", 3, ids, 2) == NULL);
  const char *none[] = {"CN=nobody"};
  CHECK(inv_tenants_authenticate(ts, NULL, 0, none, 1) == NULL);
  CHECK(inv_tenants_authenticate(ts, NULL, 0, NULL, 0) == NULL);
  inv_tenants_free(ts);
}

static int allows(const inv_tenant_t *t, inv_kind_t kind, const char *s) {
  return inv_tenant_allows(t, kind, s, strlen(s));
}

static void test_namespaces(void) {
  inv_tenants_t *ts = parse_ok(
      "tenant shop token a namespaces shop:,cart:\n"
      "tenant admin token b\n");
  if (ts == NULL) return;
  inv_tenant_t *t = inv_tenants_find(ts, "shop");
  /* Exact keys, by their bytes; a hash tag changes nothing. */
  CHECK_EQ_INT(allows(t, INV_KIND_KEY, "shop:1"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_KEY, "cart:9"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_KEY, "shop:"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_KEY, "shop"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_KEY, "shoe:1"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_KEY, "{shop:}x"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_KEY, "{user}:shop:1"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_KEY, "shop:{user:1}"), 1);
  CHECK_EQ_INT(inv_tenant_allows(t, INV_KIND_KEY, "shop:\0x", 7), 1);
  /* Prefixes: shorter than the namespace reaches outside it. */
  CHECK_EQ_INT(allows(t, INV_KIND_PREFIX, "shop:"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_PREFIX, "shop:a"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_PREFIX, "shop"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_PREFIX, "s"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_PREFIX, ""), 0);
  /* Patterns are judged by what they can match. */
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop:*"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop:x*"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop:?"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop:[ab]"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "\\s\\h\\o\\p:x*"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop\\:*"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop*"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "sho[p]:*"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "?hop:*"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "*"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "*shop:*"), 0);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop[:]*"), 0);
  /* A malformed class ends the literal part where the matcher does. */
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop:[abc"), 1);
  CHECK_EQ_INT(allows(t, INV_KIND_PATTERN, "shop[:"), 0);
  /* An admin may touch anything. */
  inv_tenant_t *a = inv_tenants_find(ts, "admin");
  CHECK_EQ_INT(allows(a, INV_KIND_PATTERN, "*"), 1);
  CHECK_EQ_INT(allows(a, INV_KIND_KEY, "other"), 1);
  inv_tenants_free(ts);
}

/* Patterns longer than the head the rule reads, with escapes at the cut. */
static void test_namespaces_long(void) {
  char ns[INV_TENANT_NS_MAX + 1], line[2 * INV_TENANT_NS_MAX];
  char pat[4 * INV_TENANT_NS_MAX + 64];
  memset(ns, 'n', INV_TENANT_NS_MAX);
  ns[INV_TENANT_NS_MAX] = '\0';
  snprintf(line, sizeof(line), "tenant long token a namespace %s\n", ns);
  inv_tenants_t *ts = parse_ok(line);
  if (ts == NULL) return;
  inv_tenant_t *t = inv_tenants_find(ts, "long");
  /* Every namespace byte escaped: 512 pattern bytes for 256 literal ones. */
  size_t n = 0;
  for (int i = 0; i < INV_TENANT_NS_MAX; i++) {
    pat[n++] = '\\';
    pat[n++] = 'n';
  }
  memcpy(pat + n, "\\xyz*", 6);
  CHECK_EQ_INT(inv_tenant_allows(t, INV_KIND_PATTERN, pat, n + 5), 1);
  /* One escaped byte short, the rest a wildcard: refused. */
  CHECK_EQ_INT(inv_tenant_allows(t, INV_KIND_PATTERN, pat, n - 2), 0);
  memcpy(pat + n - 2, "*", 2);
  CHECK_EQ_INT(inv_tenant_allows(t, INV_KIND_PATTERN, pat, strlen(pat)), 0);
  /* The last namespace byte differs, far beyond a short head. */
  memset(pat, 'n', 3 * INV_TENANT_NS_MAX);
  pat[INV_TENANT_NS_MAX - 1] = 'm';
  memcpy(pat + 3 * INV_TENANT_NS_MAX, "*", 2);
  CHECK_EQ_INT(inv_tenant_allows(t, INV_KIND_PATTERN, pat, strlen(pat)), 0);
  pat[INV_TENANT_NS_MAX - 1] = 'n';
  CHECK_EQ_INT(inv_tenant_allows(t, INV_KIND_PATTERN, pat, strlen(pat)), 1);
  inv_tenants_free(ts);
}

static void test_bucket(void) {
  inv_tenants_t *ts = parse_ok(
      "tenant slow token a rate 10\n"
      "tenant free token b\n");
  if (ts == NULL) return;
  inv_tenant_t *t = inv_tenants_find(ts, "slow");
  uint64_t now = 1000000, retry = 0;
  t->refilled_us = now;
  /* A full bucket: ten events pass, the eleventh waits 100 ms. */
  CHECK_EQ_INT(inv_tenant_take(t, 10, now, &retry), 0);
  CHECK_EQ_INT(inv_tenant_take(t, 1, now, &retry), INV_EBUSY);
  CHECK(retry >= 100 && retry <= 101);
  CHECK_EQ_INT(inv_tenant_take(t, 1, now + 100000, &retry), 0);
  /* A request over the burst passes from a full bucket, into debt. */
  CHECK_EQ_INT(inv_tenant_take(t, 30, now + 2000000, &retry), 0);
  CHECK_EQ_INT(inv_tenant_take(t, 1, now + 2000000, &retry), INV_EBUSY);
  CHECK(retry >= 2000 && retry <= 2101);
  /* The clock going backwards refills nothing and breaks nothing. */
  CHECK_EQ_INT(inv_tenant_take(t, 1, now, &retry), INV_EBUSY);
  inv_tenant_t *f = inv_tenants_find(ts, "free");
  CHECK_EQ_INT(inv_tenant_take(f, 1000000, now, &retry), 0);
  inv_tenants_free(ts);
}

static void test_reload(void) {
  inv_tenants_t *old = parse_ok(
      "tenant a token x namespace a: rate 10\n"
      "tenant b token y namespace b:\n"
      "tenant c token z namespace c:\n");
  inv_tenants_t *ts = parse_ok(
      "tenant a token x namespace a: rate 10\n"
      "tenant b token y namespace b2:\n"
      "tenant d token w namespace d:\n");
  if (old == NULL || ts == NULL) return;
  inv_tenant_t *oa = inv_tenants_find(old, "a");
  oa->accepted = 5;
  oa->refused = 2;
  oa->limited = 1;
  oa->tokens = 3;
  oa->refilled_us = 77;
  inv_tenants_carry(ts, old);
  inv_tenant_t *a = inv_tenants_find(ts, "a");
  CHECK(a->accepted == 5 && a->refused == 2 && a->limited == 1);
  CHECK(a->tokens == 3 && a->refilled_us == 77);
  CHECK_EQ_INT(inv_tenants_find(ts, "d")->accepted, 0);
  char text[200];
  inv_tenants_describe_change(old, ts, text, sizeof(text));
  CHECK_EQ_STR(text, "3 tenants; added d; removed c; changed b");
  inv_tenants_describe_change(ts, ts, text, sizeof(text));
  CHECK_EQ_STR(text, "3 tenants; unchanged");
  inv_tenants_describe_change(NULL, ts, text, sizeof(text));
  CHECK_EQ_STR(text, "3 tenants; added a, b, d");
  inv_tenants_free(old);
  inv_tenants_free(ts);
}

int main(void) {
  RUN(test_parse);
  RUN(test_parse_errors);
  RUN(test_token_file);
  RUN(test_authenticate);
  RUN(test_namespaces);
  RUN(test_namespaces_long);
  RUN(test_bucket);
  RUN(test_reload);
  return check_summary();
}
