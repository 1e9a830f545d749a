/* Unit tests for common/cluster_reply: CLUSTER SLOTS replies and MOVED /
 * ASK error replies, built by hand as hiredis would hand them over. Good
 * replies (replicas, node ids, Redis 7's metadata, the endpoints that mean
 * "the node that answered"), every kind of malformed reply (the callback
 * must then never run), and the boundaries: slot 16383/16384, port
 * 0/65535/65536, host length, IPv6 hosts. */
#include "common/redis/cluster_reply.h"

#include <string.h>

#include "inval/errors.h"
#include "common/base/slot.h"
#include "tests/unit/check.h"

#define ID_A "07c37dfeb235213a872192d90877d0cd55635b91"
#define ID_B "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"

static redisReply pool[128];
static redisReply *ptrs[128];
static size_t used, pused;

static void reset(void) { used = pused = 0; }

static redisReply *node_of(int type) {
  redisReply *r = &pool[used++];
  memset(r, 0, sizeof(*r));
  r->type = type;
  return r;
}

static redisReply *num(long long v) {
  redisReply *r = node_of(REDIS_REPLY_INTEGER);
  r->integer = v;
  return r;
}

static redisReply *strn(const char *s, size_t len) {
  redisReply *r = node_of(REDIS_REPLY_STRING);
  r->str = (char *)s;
  r->len = len;
  return r;
}

static redisReply *str(const char *s) { return strn(s, strlen(s)); }

static redisReply *nil(void) { return node_of(REDIS_REPLY_NIL); }

static redisReply *arr(size_t n, redisReply **items) {
  redisReply *r = node_of(REDIS_REPLY_ARRAY);
  r->elements = n;
  r->element = &ptrs[pused];
  for (size_t i = 0; i < n; i++) ptrs[pused++] = items[i];
  return r;
}

static redisReply *node(redisReply *host, long long port, const char *id) {
  if (id == NULL) return arr(2, (redisReply *[]){host, num(port)});
  return arr(3, (redisReply *[]){host, num(port), str(id)});
}

static redisReply *range(long long lo, long long hi, redisReply *primary) {
  return arr(3, (redisReply *[]){num(lo), num(hi), primary});
}

/* What the callback saw. */
typedef struct seen_s {
  size_t n;
  inv_cluster_range_t r[8];
  int stop_at; /* stop (return 7) at this range index; -1 never */
} seen_t;

static int collect(const inv_cluster_range_t *range, void *data) {
  seen_t *s = data;
  if ((int)s->n == s->stop_at) return 7;
  if (s->n < 8) s->r[s->n] = *range;
  s->n++;
  return 0;
}

static int walk(const redisReply *reply, seen_t *s, char *err, size_t errlen) {
  memset(s, 0, sizeof(*s));
  s->stop_at = -1;
  return inv_cluster_slots_each(reply, collect, s, err, errlen);
}

static int host_is(const inv_cluster_node_t *n, const char *want) {
  return n->hostlen == strlen(want) && memcmp(n->host, want, n->hostlen) == 0;
}

static void test_slots_good(void) {
  seen_t s;
  char err[160] = "";
  reset();
  /* Redis 7 adds a fourth element to each node: its metadata. */
  redisReply *meta =
      arr(2, (redisReply *[]){str("hostname"), str("a.example")});
  redisReply *a =
      arr(4, (redisReply *[]){str("10.0.0.1"), num(7000), str(ID_A), meta});
  redisReply *ra = arr(4, (redisReply *[]){num(0), num(5460), a,
                                           node(str("10.0.0.4"), 7003, ID_B)});
  redisReply *rb = range(5461, 10922, node(str("::1"), 7001, ID_B));
  redisReply *rc = range(10923, 16383, node(str("10.0.0.3"), 65535, NULL));
  redisReply *reply = arr(3, (redisReply *[]){ra, rb, rc});

  CHECK_EQ_INT(walk(reply, &s, err, sizeof(err)), 0);
  CHECK_EQ_INT(s.n, 3);
  CHECK(s.r[0].lo == 0 && s.r[0].hi == 5460 && s.r[0].nreplicas == 1);
  CHECK(host_is(&s.r[0].primary, "10.0.0.1") && s.r[0].primary.port == 7000);
  CHECK(s.r[0].primary.idlen == 40 && memcmp(s.r[0].primary.id, ID_A, 40) == 0);
  CHECK(s.r[1].lo == 5461 && s.r[1].hi == 10922 && s.r[1].nreplicas == 0);
  CHECK(host_is(&s.r[1].primary, "::1") && s.r[1].primary.port == 7001);
  /* The last slot and the last port; no node id (Redis 3). */
  CHECK(s.r[2].lo == 10923 && s.r[2].hi == 16383);
  CHECK(s.r[2].primary.port == 65535);
  CHECK(s.r[2].primary.id == NULL && s.r[2].primary.idlen == 0);
  CHECK_EQ_STR(err, ""); /* untouched on success */

  /* An empty reply: no slots assigned yet. */
  reset();
  CHECK_EQ_INT(walk(arr(0, NULL), &s, NULL, 0), 0);
  CHECK_EQ_INT(s.n, 0);

  /* One-slot ranges at both ends. */
  reset();
  reply =
      arr(2, (redisReply *[]){range(0, 0, node(str("h"), 1, ID_A)),
                              range(16383, 16383, node(str("h"), 1, ID_A))});
  CHECK_EQ_INT(walk(reply, &s, NULL, 0), 0);
  CHECK(s.n == 2 && s.r[0].hi == 0 && s.r[1].lo == 16383);
}

static void test_unknown_endpoints(void) {
  seen_t s;
  char host[INV_CLUSTER_HOST_MAX];
  reset();
  /* "" (no address known yet), nil (unknown-endpoint) and "?" (hostname
   * endpoint with no hostname) all mean the node that answered. */
  redisReply *reply =
      arr(4, (redisReply *[]){range(0, 1, node(str(""), 7000, ID_A)),
                              range(2, 3, node(nil(), 7001, ID_A)),
                              range(4, 5, node(str("?"), 7002, ID_A)),
                              range(6, 7, node(str("?x"), 7003, ID_A))});
  CHECK_EQ_INT(walk(reply, &s, NULL, 0), 0);
  CHECK_EQ_INT(s.n, 4);
  CHECK(s.r[0].primary.hostlen == 0 && s.r[0].primary.port == 7000);
  CHECK(s.r[1].primary.hostlen == 0 && s.r[1].primary.port == 7001);
  CHECK(s.r[2].primary.hostlen == 0 && s.r[2].primary.port == 7002);
  CHECK(host_is(&s.r[3].primary, "?x")); /* a real (odd) name */
  inv_cluster_node_host(&s.r[1].primary, "10.1.1.1", host);
  CHECK_EQ_STR(host, "10.1.1.1");
  inv_cluster_node_host(&s.r[3].primary, "10.1.1.1", host);
  CHECK_EQ_STR(host, "?x");
}

static void test_slots_callback(void) {
  seen_t s;
  reset();
  redisReply *reply =
      arr(3, (redisReply *[]){range(0, 1, node(str("a"), 1, ID_A)),
                              range(2, 3, node(str("b"), 2, ID_A)),
                              range(4, 5, node(str("c"), 3, ID_A))});
  /* The callback's non-zero value stops the walk and is returned. */
  memset(&s, 0, sizeof(s));
  s.stop_at = 1;
  CHECK_EQ_INT(inv_cluster_slots_each(reply, collect, &s, NULL, 0), 7);
  CHECK_EQ_INT(s.n, 1);
  CHECK(host_is(&s.r[0].primary, "a"));
  /* No callback: only checked. */
  CHECK_EQ_INT(inv_cluster_slots_each(reply, NULL, NULL, NULL, 0), 0);
}

/* Expects reply to be refused: INV_EPROTO, a message holding want, and
 * the callback never run (the good entries before the bad one included). */
static void refused(const redisReply *reply, const char *want, int line) {
  seen_t s;
  char err[200] = "";
  int rc = walk(reply, &s, err, sizeof(err));
  if (rc != INV_EPROTO || s.n != 0 || strstr(err, want) == NULL)
    fprintf(stderr, "line %d: rc %d, %zu ranges seen, err \"%s\"\n", line, rc,
            s.n, err);
  CHECK_EQ_INT(rc, INV_EPROTO);
  CHECK_EQ_INT(s.n, 0);
  CHECK(strstr(err, want) != NULL);
}

#define REFUSED(reply, want) refused((reply), (want), __LINE__)

/* A reply of one good range and then bad. */
static redisReply *after_good(redisReply *bad) {
  return arr(2, (redisReply *[]){range(0, 9, node(str("h"), 1, ID_A)), bad});
}

static void test_slots_malformed(void) {
  redisReply *e;
  reset();
  REFUSED(NULL, "not an array");
  e = str("ERR This instance has cluster support disabled");
  e->type = REDIS_REPLY_ERROR;
  REFUSED(e, "not an array");
  REFUSED(num(3), "not an array");
  /* Entries. */
  reset();
  REFUSED(after_good(num(1)), "entry 1 is not");
  reset();
  REFUSED(after_good(arr(2, (redisReply *[]){num(0), num(1)})),
          "entry 1 is not");
  reset();
  REFUSED(after_good(arr(
              3, (redisReply *[]){str("0"), num(1), node(str("h"), 1, ID_A)})),
          "entry 1 is not");
  reset();
  REFUSED(after_good(
              arr(3, (redisReply *[]){num(0), nil(), node(str("h"), 1, ID_A)})),
          "entry 1 is not");
  reset();
  e = arr(3, (redisReply *[]){num(0), num(1), node(str("h"), 1, ID_A)});
  e->element[1] = NULL;
  REFUSED(after_good(e), "entry 1 is not");
  /* Ranges. */
  reset();
  REFUSED(after_good(range(10, 5, node(str("h"), 1, ID_A))), "slots 10-5");
  reset();
  REFUSED(after_good(range(0, 16384, node(str("h"), 1, ID_A))),
          "slots 0-16384");
  reset();
  REFUSED(after_good(range(16384, 16384, node(str("h"), 1, ID_A))),
          "within 0-16383");
  reset();
  REFUSED(after_good(range(-1, 3, node(str("h"), 1, ID_A))), "slots -1-3");
  /* The primary. */
  reset();
  REFUSED(after_good(range(0, 1, str("h:1"))),
          "primary: a node is not an array");
  reset();
  REFUSED(after_good(range(0, 1, arr(1, (redisReply *[]){str("h")}))),
          "primary: a node is not an array");
  reset();
  REFUSED(after_good(range(0, 1, node(num(5), 1, ID_A))),
          "host is not a string");
  reset();
  REFUSED(
      after_good(range(0, 1, arr(2, (redisReply *[]){str("h"), str("7000")}))),
      "port is not an integer");
  reset();
  REFUSED(after_good(range(0, 1, node(str("h"), 0, ID_A))),
          "primary: a node's port");
  reset();
  REFUSED(after_good(range(0, 1, node(str("h"), 65536, ID_A))), "port");
  reset();
  REFUSED(after_good(range(0, 1, node(str("h"), -7000, ID_A))), "port");
  reset();
  REFUSED(after_good(
              range(0, 1, arr(3, (redisReply *[]){str("h"), num(1), num(9)}))),
          "id is not a string");
  reset();
  REFUSED(after_good(range(0, 1, node(strn("h\0st", 4), 1, ID_A))),
          "holds a NUL");
  /* Replicas: checked too, but port 0 (no port for this transport) is
   * allowed. */
  reset();
  REFUSED(after_good(arr(4, (redisReply *[]){num(0), num(1),
                                             node(str("h"), 1, ID_A), num(2)})),
          "replica 0: a node is not an array");
  reset();
  REFUSED(after_good(
              arr(5, (redisReply *[]){num(0), num(1), node(str("h"), 1, ID_A),
                                      node(str("r"), 0, ID_B),
                                      node(str("r"), 70000, ID_B)})),
          "replica 1: a node's port");
  reset();
  {
    seen_t s;
    redisReply *ok =
        arr(4, (redisReply *[]){num(0), num(1), node(str("h"), 1, ID_A),
                                node(str("r"), 0, ID_B)});
    CHECK_EQ_INT(walk(arr(1, (redisReply *[]){ok}), &s, NULL, 0), 0);
    CHECK(s.n == 1 && s.r[0].nreplicas == 1);
  }
  /* A NULL element pointer where the count says there are some. */
  reset();
  e = arr(0, NULL);
  e->elements = 2;
  e->element = NULL;
  REFUSED(e, "not an array");
}

static void test_slots_host_length(void) {
  static char host[1u << 20];
  seen_t s;
  memset(host, 'h', sizeof(host));
  reset();
  /* The longest host that fits, with its NUL, in INV_CLUSTER_HOST_MAX. */
  redisReply *ok =
      range(0, 1, node(strn(host, INV_CLUSTER_HOST_MAX - 1), 1, ID_A));
  CHECK_EQ_INT(walk(arr(1, (redisReply *[]){ok}), &s, NULL, 0), 0);
  CHECK_EQ_INT(s.r[0].primary.hostlen, INV_CLUSTER_HOST_MAX - 1);
  char copy[INV_CLUSTER_HOST_MAX];
  inv_cluster_node_host(&s.r[0].primary, "x", copy);
  CHECK_EQ_INT(strlen(copy), INV_CLUSTER_HOST_MAX - 1);
  reset();
  REFUSED(arr(1, (redisReply *[]){range(
                     0, 1, node(strn(host, INV_CLUSTER_HOST_MAX), 1, ID_A))}),
          "too long");
  reset();
  REFUSED(arr(1, (redisReply *[]){range(0, 1,
                                        node(strn(host, 1u << 20), 1, ID_A))}),
          "too long");
}

/* Parses text as an error reply (or of the given type). */
static int redirect(const char *text, size_t len, int type,
                    inv_cluster_redirect_t *rd) {
  redisReply r;
  memset(&r, 0, sizeof(r));
  r.type = type;
  r.str = (char *)text;
  r.len = len;
  memset(rd, 0x5a, sizeof(*rd));
  return inv_cluster_redirect_parse(&r, rd);
}

static int moved(const char *text, inv_cluster_redirect_t *rd) {
  return redirect(text, strlen(text), REDIS_REPLY_ERROR, rd);
}

static void test_redirect_good(void) {
  inv_cluster_redirect_t rd;
  CHECK_EQ_INT(moved("MOVED 3999 127.0.0.1:6381", &rd), 1);
  CHECK(rd.ask == 0 && rd.slot == 3999 && rd.port == 6381);
  CHECK_EQ_STR(rd.host, "127.0.0.1");
  CHECK_EQ_INT(moved("ASK 0 redis-3.example.com:1", &rd), 1);
  CHECK(rd.ask == 1 && rd.slot == 0 && rd.port == 1);
  CHECK_EQ_STR(rd.host, "redis-3.example.com");
  /* The last slot and the last port. */
  CHECK_EQ_INT(moved("MOVED 16383 h:65535", &rd), 1);
  CHECK(rd.slot == 16383 && rd.port == 65535);
  /* IPv6: the port follows the last colon. */
  CHECK_EQ_INT(moved("ASK 16383 ::1:6379", &rd), 1);
  CHECK_EQ_STR(rd.host, "::1");
  CHECK(rd.ask == 1 && rd.port == 6379);
  CHECK_EQ_INT(moved("MOVED 12 2001:db8::7:7000", &rd), 1);
  CHECK_EQ_STR(rd.host, "2001:db8::7");
  CHECK_EQ_INT(rd.port, 7000);
  /* The node that answered: unknown-endpoint sends an empty host. */
  CHECK_EQ_INT(moved("MOVED 12 :7001", &rd), 1);
  CHECK_EQ_STR(rd.host, "");
  CHECK_EQ_INT(rd.port, 7001);
  CHECK_EQ_INT(moved("MOVED 12 ?:7001", &rd), 1);
  CHECK_EQ_STR(rd.host, "");
  /* Only len bytes count: what follows them is not part of the reply. */
  CHECK_EQ_INT(redirect("MOVED 1 h:23456789", 12, REDIS_REPLY_ERROR, &rd), 1);
  CHECK_EQ_INT(rd.port, 23);
}

static void test_redirect_not_one(void) {
  inv_cluster_redirect_t rd;
  static const char *others[] = {"ERR MOVED 1 h:2",
                                 "TRYAGAIN x",
                                 "MOVED",
                                 "MOVEDX 1 h:2",
                                 "ASKING",
                                 "moved 1 h:2",
                                 "",
                                 "CLUSTERDOWN The cluster is down"};
  for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
    CHECK_EQ_INT(moved(others[i], &rd), 0);
  CHECK_EQ_INT(redirect("MOVED 1 h:2", 11, REDIS_REPLY_STATUS, &rd), 0);
  CHECK_EQ_INT(redirect("MOVED 1 h:2", 11, REDIS_REPLY_STRING, &rd), 0);
  CHECK_EQ_INT(redirect(NULL, 0, REDIS_REPLY_ERROR, &rd), 0);
  CHECK_EQ_INT(inv_cluster_redirect_parse(NULL, &rd), 0);
}

static void test_redirect_malformed(void) {
  inv_cluster_redirect_t rd;
  static const char *bad[] = {"MOVED 16384 h:1",
                              "MOVED 99999999999999999999 h:1",
                              "MOVED -1 h:1",
                              "MOVED +5 h:1",
                              "MOVED  5 h:1",
                              "MOVED x h:1",
                              "MOVED 1",
                              "MOVED 1 ",
                              "ASK 1",
                              "MOVED 1 h",
                              "MOVED 1 h:",
                              "MOVED 1 h:0",
                              "MOVED 1 h:65536",
                              "MOVED 1 h:70000",
                              "MOVED 1 h:-1",
                              "MOVED 1 h:+1",
                              "MOVED 1 h:1x",
                              "MOVED 1 h:1 extra",
                              "MOVED 1 a b:1",
                              "MOVED 1 h: 1",
                              "MOVED 1h:1",
                              "ASK 5:1",
                              "MOVED 1 h:99999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = moved(bad[i], &rd);
    if (rc != INV_EPROTO) fprintf(stderr, "\"%s\" gave %d\n", bad[i], rc);
    CHECK_EQ_INT(rc, INV_EPROTO);
  }
  /* A NUL inside the reply's bytes. */
  CHECK_EQ_INT(redirect("MOVED 1 h\0x:1", 13, REDIS_REPLY_ERROR, &rd),
               INV_EPROTO);
}

static void test_redirect_host_length(void) {
  static char text[INV_CLUSTER_HOST_MAX + 64];
  inv_cluster_redirect_t rd;
  size_t n;
  /* The longest host that fits: INV_CLUSTER_HOST_MAX - 1 bytes. */
  memcpy(text, "ASK 7 ", 6);
  memset(text + 6, 'h', INV_CLUSTER_HOST_MAX - 1);
  n = 6 + INV_CLUSTER_HOST_MAX - 1;
  memcpy(text + n, ":65535", 7);
  CHECK_EQ_INT(moved(text, &rd), 1);
  CHECK_EQ_INT(strlen(rd.host), INV_CLUSTER_HOST_MAX - 1);
  CHECK(rd.ask == 1 && rd.slot == 7 && rd.port == 65535);
  /* One byte more. */
  memset(text + 6, 'h', INV_CLUSTER_HOST_MAX);
  memcpy(text + 6 + INV_CLUSTER_HOST_MAX, ":1", 3);
  CHECK_EQ_INT(moved(text, &rd), INV_EPROTO);
  /* A huge one, which is never copied. */
  static char huge[1 << 16];
  memset(huge, 'h', sizeof(huge) - 1);
  memcpy(huge, "MOVED 1 ", 8);
  memcpy(huge + sizeof(huge) - 3, ":1", 3);
  CHECK_EQ_INT(moved(huge, &rd), INV_EPROTO);
}

int main(void) {
  RUN(test_slots_good);
  RUN(test_unknown_endpoints);
  RUN(test_slots_callback);
  RUN(test_slots_malformed);
  RUN(test_slots_host_length);
  RUN(test_redirect_good);
  RUN(test_redirect_not_one);
  RUN(test_redirect_malformed);
  RUN(test_redirect_host_length);
  return check_summary();
}
