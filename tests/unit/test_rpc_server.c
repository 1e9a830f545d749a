/*
 * Unit tests for the RPC server (proto/server/rpc_server.c), in-process: the
 * server runs on this thread's libuv loop and a client thread talks to it
 * over loopback with blocking sockets. What the integration tests cannot
 * see from outside is checked here under the sanitizers: a request finished
 * after its client left, requests finished after inv_rpc_server_close()
 * has freed the server, notifications' replies discarded, the global pause,
 * and a loop that ends with every handle released.
 */
#include <arpa/inet.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "inval/errors.h"
#include "common/base/log.h"
#include "proto/server/rpc_server.h"
#include "proto/codec.h"
#include "proto/event.h"
#include "tests/unit/check.h"

/* ---- the server side (loop thread) ------------------------------------ */

static uv_loop_t loop;
static inv_rpc_server_t *srv;
static int srv_port;
static inv_rpc_req_t *held[16];
static int nheld;
static uv_timer_t unpause_timer, release_timer;
static int closed_called;
static int released_after_close;
static inv_rpc_server_stats_t final_stats;
static uint64_t final_enomethod, final_eauth, final_eunavail, final_enomem;

static void release_held(void) {
  for (int i = 0; i < nheld; i++) {
    inv_pack_str(inv_rpc_reply_begin(held[i]), "late");
    inv_rpc_reply_end(held[i]);
  }
  nheld = 0;
}

static void unpause_cb(uv_timer_t *t) {
  (void)t;
  inv_rpc_server_pause(srv, 0);
}

static void release_cb(uv_timer_t *t) {
  /* The server is gone by now; its requests are still valid. */
  released_after_close = closed_called;
  release_held();
  uv_close((uv_handle_t *)t, NULL);
  uv_close((uv_handle_t *)&unpause_timer, NULL);
}

static void closed_cb(void *data) {
  (void)data;
  closed_called++;
}

/* hello through the shared answer, with one extra entry. */
static void do_hello(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  inv_rpc_hello_t hello = {
      .server = "test", .max_message_bytes = 4096, .check_params = 1};
  (void)data;
  msgpack_packer *pk = inv_rpc_hello_begin(req, msg, &hello, 1);
  if (pk == NULL) return;
  inv_pack_str(pk, "extra");
  inv_pack_str(pk, "yes");
  inv_rpc_reply_end(req);
}

/* Fails with an internal code, which must reach the client as EUNAVAIL. */
static void do_internal(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  (void)msg;
  (void)data;
  inv_rpc_reply_error(req, INV_ENOMEM, "out of memory");
}

static const inv_rpc_method_t table[] = {
    {"hello", do_hello},
    {"internal", do_internal},
    {NULL, NULL},
};

static void handler(inv_rpc_req_t *req, const inv_msg_t *msg, void *data) {
  msgpack_packer *pk;
  (void)data;

  if (inv_rpc_method_is(msg, "ping")) {
    inv_pack_str(inv_rpc_reply_begin(req), "PONG");
    inv_rpc_reply_end(req);
  } else if (inv_rpc_method_is(msg, "echo")) {
    pk = inv_rpc_reply_begin(req);
    msgpack_pack_object(pk, msg->params);
    inv_rpc_reply_end(req);
  } else if (inv_rpc_method_is(msg, "peer")) {
    inv_pack_str(inv_rpc_reply_begin(req), inv_rpc_req_peer(req));
    inv_rpc_reply_end(req);
  } else if (inv_rpc_method_is(msg, "hold")) {
    held[nheld++] = req;
  } else if (inv_rpc_method_is(msg, "release")) {
    pk = inv_rpc_reply_begin(req);
    msgpack_pack_int(pk, nheld);
    release_held();
    inv_rpc_reply_end(req);
  } else if (inv_rpc_method_is(msg, "pause")) {
    inv_rpc_server_pause(srv, 1);
    uv_timer_start(&unpause_timer, unpause_cb, 300, 0);
    inv_pack_str(inv_rpc_reply_begin(req), "OK");
    inv_rpc_reply_end(req);
  } else if (inv_rpc_method_is(msg, "close")) {
    final_stats = *inv_rpc_server_stats(srv);
    final_enomethod = inv_rpc_server_errors(srv, INV_ENOMETHOD);
    final_eauth = inv_rpc_server_errors(srv, INV_EAUTH);
    final_eunavail = inv_rpc_server_errors(srv, INV_EUNAVAIL);
    final_enomem = inv_rpc_server_errors(srv, INV_ENOMEM);
    inv_pack_str(inv_rpc_reply_begin(req), "bye");
    inv_rpc_reply_end(req);
    inv_rpc_server_close(srv, 1000, closed_cb, NULL);
    srv = NULL;
    uv_timer_start(&release_timer, release_cb, 1500, 0);
  } else {
    inv_rpc_dispatch(req, msg, table, NULL);
  }
}

/* ---- the client side (client thread) ---------------------------------- */

typedef struct cl_s {
  int fd;
  msgpack_unpacker up;
} cl_t;

static int cl_open(cl_t *c) {
  struct sockaddr_in sa;
  struct timeval tv = {5, 0};

  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)srv_port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  msgpack_unpacker_init(&c->up, 4096);
  return connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
}

static void cl_close(cl_t *c) {
  close(c->fd);
  msgpack_unpacker_destroy(&c->up);
}

/* Sends [0, msgid, method, [param]] ([] when param is NULL), or the
 * notification [2, method, ...] when msgid is negative. */
static void cl_send(cl_t *c, long msgid, const char *method,
                    const char *param) {
  msgpack_sbuffer sb;
  msgpack_packer pk;

  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  if (msgid >= 0)
    inv_pack_request_header(&pk, (uint32_t)msgid, method);
  else
    inv_pack_notify_header(&pk, method);
  msgpack_pack_array(&pk, param != NULL ? 1 : 0);
  if (param != NULL) inv_pack_str(&pk, param);
  if (send(c->fd, sb.data, sb.size, 0) != (ssize_t)sb.size)
    fprintf(stderr, "short send\n");
  msgpack_sbuffer_destroy(&sb);
}

/* Reads the next message into *out. Returns 1, 0 at end of stream, -1 on
 * timeout or error. */
static int cl_read(cl_t *c, msgpack_unpacked *out) {
  for (;;) {
    if (msgpack_unpacker_next(&c->up, out) == MSGPACK_UNPACK_SUCCESS) return 1;
    msgpack_unpacker_reserve_buffer(&c->up, 4096);
    ssize_t n = recv(c->fd, msgpack_unpacker_buffer(&c->up),
                     msgpack_unpacker_buffer_capacity(&c->up), 0);
    if (n == 0) return 0;
    if (n < 0) return -1;
    msgpack_unpacker_buffer_consumed(&c->up, (size_t)n);
  }
}

/* Reads a response and checks its msgid and its str result (or, with
 * err_code, its error code). */
static void cl_expect(cl_t *c, uint32_t msgid, const char *result,
                      const char *err_code) {
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  int rc = cl_read(c, &u);
  CHECK_EQ_INT(rc, 1);
  if (rc == 1) {
    msgpack_object *a = u.data.via.array.ptr;
    CHECK(u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 4);
    CHECK_EQ_INT(a[0].via.u64, 1);
    CHECK_EQ_INT(a[1].via.u64, msgid);
    if (err_code != NULL) {
      const msgpack_object *code = inv_map_get(&a[2], "code");
      CHECK(code != NULL && inv_obj_streq(code, err_code));
    } else if (result != NULL) {
      CHECK(a[2].type == MSGPACK_OBJECT_NIL);
      CHECK(inv_obj_streq(&a[3], result));
    }
  }
  msgpack_unpacked_destroy(&u);
}

/* Sends hello [{"proto": proto, "client": "t"}]. */
static void cl_send_hello(cl_t *c, uint32_t msgid, int proto) {
  msgpack_sbuffer sb;
  msgpack_packer pk;

  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  inv_pack_request_header(&pk, msgid, "hello");
  msgpack_pack_array(&pk, 1);
  msgpack_pack_map(&pk, 2);
  inv_pack_str(&pk, "proto");
  msgpack_pack_int(&pk, proto);
  inv_pack_str(&pk, "client");
  inv_pack_str(&pk, "t");
  if (send(c->fd, sb.data, sb.size, 0) != (ssize_t)sb.size)
    fprintf(stderr, "short send\n");
  msgpack_sbuffer_destroy(&sb);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void scenario_basic(void) {
  cl_t c;
  CHECK_EQ_INT(cl_open(&c), 0);
  cl_send(&c, 1, "ping", NULL);
  cl_expect(&c, 1, "PONG", NULL);
  /* A notification's reply is discarded: the next reply is the ping's. */
  cl_send(&c, -1, "echo", "dropped");
  cl_send(&c, -1, "nothing", NULL);
  cl_send(&c, 2, "ping", NULL);
  cl_expect(&c, 2, "PONG", NULL);
  cl_send(&c, 3, "nothing", NULL);
  cl_expect(&c, 3, NULL, "ENOMETHOD");
  cl_send(&c, 4, "peer", NULL);
  {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK_EQ_INT(cl_read(&c, &u), 1);
    const msgpack_object *r = &u.data.via.array.ptr[3];
    CHECK(r->type == MSGPACK_OBJECT_STR && r->via.str.size > 10 &&
          memcmp(r->via.str.ptr, "127.0.0.1:", 10) == 0);
    msgpack_unpacked_destroy(&u);
  }
  cl_close(&c);
}

/* The shared hello checks its params and packs the common entries before
 * the daemon's own; an internal code leaves as EUNAVAIL; a method in no
 * table gets ENOMETHOD from the dispatch. */
static void scenario_dispatch(void) {
  cl_t c;
  CHECK_EQ_INT(cl_open(&c), 0);
  cl_send(&c, 1, "hello", "not a map");
  cl_expect(&c, 1, NULL, "EINVAL");
  cl_send_hello(&c, 2, 2);
  cl_expect(&c, 2, NULL, "EINVAL");
  cl_send_hello(&c, 3, INV_PROTO_VERSION);
  {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK_EQ_INT(cl_read(&c, &u), 1);
    const msgpack_object *r = &u.data.via.array.ptr[3];
    CHECK(u.data.via.array.ptr[2].type == MSGPACK_OBJECT_NIL);
    CHECK(r->type == MSGPACK_OBJECT_MAP && r->via.map.size == 5);
    const msgpack_object *v = inv_map_get(r, "server");
    CHECK(v != NULL && inv_obj_streq(v, "test"));
    v = inv_map_get(r, "max_message_bytes");
    CHECK(v != NULL && v->via.u64 == 4096);
    v = inv_map_get(r, "proto");
    CHECK(v != NULL && v->via.u64 == INV_PROTO_VERSION);
    CHECK(inv_map_get(r, "version") != NULL);
    v = inv_map_get(r, "extra");
    CHECK(v != NULL && inv_obj_streq(v, "yes"));
    msgpack_unpacked_destroy(&u);
  }
  cl_send(&c, 4, "internal", NULL);
  cl_expect(&c, 4, NULL, "EUNAVAIL");
  cl_send(&c, 5, "hellox", NULL);
  cl_expect(&c, 5, NULL, "ENOMETHOD");
  cl_close(&c);
}

static void scenario_late_reply(void) {
  cl_t a, b;
  CHECK_EQ_INT(cl_open(&a), 0);
  cl_send(&a, 1, "hold", NULL);
  cl_send(&a, 2, "ping", NULL);
  cl_expect(&a, 2, "PONG", NULL); /* hold was dispatched before this */
  cl_close(&a);
  usleep(100 * 1000); /* the server sees a's end and closes */
  CHECK_EQ_INT(cl_open(&b), 0);
  cl_send(&b, 7, "release", NULL); /* finishes a's request: dropped */
  {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK_EQ_INT(cl_read(&b, &u), 1);
    CHECK_EQ_INT(u.data.via.array.ptr[1].via.u64, 7);
    CHECK_EQ_INT(u.data.via.array.ptr[3].via.u64, 1);
    msgpack_unpacked_destroy(&u);
  }
  cl_send(&b, 8, "ping", NULL);
  cl_expect(&b, 8, "PONG", NULL);
  cl_close(&b);
}

static void scenario_pause(void) {
  cl_t a, b;
  double t0;
  CHECK_EQ_INT(cl_open(&a), 0);
  CHECK_EQ_INT(cl_open(&b), 0);
  cl_send(&a, 1, "pause", NULL);
  cl_expect(&a, 1, "OK", NULL);
  t0 = now_s();
  cl_send(&b, 2, "ping", NULL);
  cl_expect(&b, 2, "PONG", NULL);
  CHECK(now_s() - t0 > 0.2);
  /* Resumed: several requests in one write are all answered. */
  cl_send(&a, 3, "ping", NULL);
  cl_send(&a, 4, "echo", "x");
  cl_send(&a, 5, "ping", NULL);
  cl_expect(&a, 3, "PONG", NULL);
  cl_expect(&a, 4, NULL, NULL);
  cl_expect(&a, 5, "PONG", NULL);
  cl_close(&a);
  cl_close(&b);
}

static void scenario_close(void) {
  cl_t a, b;
  msgpack_unpacked u;
  CHECK_EQ_INT(cl_open(&a), 0);
  CHECK_EQ_INT(cl_open(&b), 0);
  cl_send(&a, 1, "hold", NULL);
  cl_send(&a, 2, "ping", NULL);
  cl_expect(&a, 2, "PONG", NULL);
  cl_send(&b, 3, "close", NULL);
  cl_expect(&b, 3, "bye", NULL);
  /* Both sessions are closed; the held request gets no reply. */
  msgpack_unpacked_init(&u);
  CHECK_EQ_INT(cl_read(&b, &u), 0);
  CHECK_EQ_INT(cl_read(&a, &u), 0);
  msgpack_unpacked_destroy(&u);
  cl_close(&a);
  cl_close(&b);
}

static void *client_main(void *arg) {
  (void)arg;
  RUN(scenario_basic);
  RUN(scenario_dispatch);
  RUN(scenario_late_reply);
  RUN(scenario_pause);
  RUN(scenario_close);
  return NULL;
}

int main(void) {
  inv_rpc_server_opts_t opts;
  inv_addr_t addr;
  pthread_t th;
  char err[256];

  alarm(60); /* a hang is a failure, not a stuck test run */
  inv_log_set_level(INV_LOG_WARN);
  uv_loop_init(&loop);
  uv_timer_init(&loop, &unpause_timer);
  uv_timer_init(&loop, &release_timer);
  memset(&opts, 0, sizeof(opts));
  inv_codec_limits_default(&opts.limits);
  opts.max_clients = 100;
  opts.log_ctx = "test";
  inv_addr_parse("127.0.0.1:0", &addr);

  /* A bad start leaves nothing behind. */
  opts.tls_cert = "/nonexistent/cert.pem";
  CHECK_EQ_INT(inv_rpc_server_start(&loop, &addr, &opts, handler, NULL, &srv,
                                    err, sizeof(err)),
               INV_ECONFIG);
  CHECK(srv == NULL && strstr(err, "tls-") != NULL);
  opts.tls_key = "/nonexistent/key.pem";
  CHECK_EQ_INT(inv_rpc_server_start(&loop, &addr, &opts, handler, NULL, &srv,
                                    err, sizeof(err)),
               INV_ECONFIG);
  CHECK(strstr(err, "/nonexistent/cert.pem") != NULL);
  opts.tls_cert = opts.tls_key = NULL;

  CHECK_EQ_INT(inv_rpc_server_start(&loop, &addr, &opts, handler, NULL, &srv,
                                    err, sizeof(err)),
               0);
  srv_port = inv_rpc_server_port(srv);
  CHECK(srv_port > 0);
  inv_rpc_server_close(NULL, 0, NULL, NULL);

  pthread_create(&th, NULL, client_main, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);

  CHECK_EQ_INT(closed_called, 1);
  CHECK_EQ_INT(released_after_close, 1);
  CHECK_EQ_INT(final_enomethod, 3); /* the notification's counts too */
  CHECK_EQ_INT(final_eunavail, 1);  /* the internal code, as sent */
  CHECK_EQ_INT(final_enomem, 0);
  CHECK_EQ_INT(final_eauth, 0);
  CHECK(final_stats.connections >= 6);
  CHECK(final_stats.requests >= 15);
  CHECK(final_stats.bytes_in > 0 && final_stats.bytes_out > 0);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  return check_summary();
}
