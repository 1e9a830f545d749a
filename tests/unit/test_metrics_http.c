/*
 * Unit tests for the /metrics endpoint (common/server/metrics_http.c),
 * in-process: the endpoint runs on this thread's libuv loop and a client thread
 * sends raw HTTP over loopback. Checks the status lines, the headers, request
 * size bounds, a failing renderer, and that closing releases everything.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "common/base/buf.h"
#include "inval/errors.h"
#include "common/base/log.h"
#include "common/server/metrics_http.h"
#include "tests/unit/check.h"

static uv_loop_t loop;
static inv_metrics_http_t *mh;
static int mh_port;
static int renders;
static int render_fails;
static uv_async_t done;

static int render(inv_buf_t *out, void *data) {
  (void)data;
  renders++;
  if (render_fails) return INV_ENOMEM;
  return inv_buf_printf(out,
                        "# TYPE test_renders_total counter\n"
                        "test_renders_total %d\n",
                        renders);
}

static void done_cb(uv_async_t *a) {
  inv_metrics_http_close(mh);
  uv_close((uv_handle_t *)a, NULL);
}

/* Sends req (len bytes; in pieces of chunk bytes with a pause between them
 * when chunk is not 0) and reads the whole answer into resp (NUL-
 * terminated). Returns the number of bytes read, or -1. */
static ssize_t http_chunked(const char *req, size_t len, size_t chunk,
                            char *resp, size_t cap) {
  struct sockaddr_in sa;
  struct timeval tv = {8, 0};
  size_t got = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)mh_port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  for (size_t off = 0; off < len;) {
    size_t n = chunk == 0 || len - off < chunk ? len - off : chunk;
    if (send(fd, req + off, n, MSG_NOSIGNAL) < 0) {
      close(fd);
      return -1;
    }
    off += n;
    if (chunk != 0) usleep(2000);
  }
  for (;;) {
    ssize_t n = recv(fd, resp + got, cap - 1 - got, 0);
    if (n <= 0) break;
    got += (size_t)n;
    if (got == cap - 1) break;
  }
  resp[got] = '\0';
  close(fd);
  return (ssize_t)got;
}

static ssize_t http(const char *req, size_t len, char *resp, size_t cap) {
  return http_chunked(req, len, 0, resp, cap);
}

static ssize_t http_str(const char *req, char *resp, size_t cap) {
  return http(req, strlen(req), resp, cap);
}

static void test_get_metrics(void) {
  char resp[4096];
  const char *body;
  CHECK(http_str("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", resp,
                 sizeof(resp)) > 0);
  CHECK(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK(strstr(resp, "\r\nContent-Type: text/plain; version=0.0.4\r\n") !=
        NULL);
  body = strstr(resp, "\r\n\r\n");
  CHECK(body != NULL);
  if (body != NULL) {
    char want[64];
    body += 4;
    snprintf(want, sizeof(want), "\r\nContent-Length: %zu\r\n", strlen(body));
    CHECK(strstr(resp, want) != NULL);
    CHECK(strstr(body, "test_renders_total 1\n") != NULL);
  }
  /* A query string is allowed; HTTP/1.0 too. */
  CHECK(http_str("GET /metrics?name[]=x HTTP/1.0\r\n\r\n", resp, sizeof(resp)) >
        0);
  CHECK(strncmp(resp, "HTTP/1.1 200 ", 13) == 0);
  /* A request split in many small writes still works. */
  {
    const char *req = "GET /metrics HTTP/1.1\r\n\r\n";
    CHECK(http_chunked(req, strlen(req), 1, resp, sizeof(resp)) > 0);
    CHECK(strstr(resp, "test_renders_total 3\n") != NULL);
  }
}

static void test_errors(void) {
  char resp[4096];
  char *big;

  CHECK(http_str("GET / HTTP/1.1\r\n\r\n", resp, sizeof(resp)) > 0);
  CHECK(strncmp(resp, "HTTP/1.1 404 ", 13) == 0);
  CHECK(http_str("GET /metrics/x HTTP/1.1\r\n\r\n", resp, sizeof(resp)) > 0);
  CHECK(strncmp(resp, "HTTP/1.1 404 ", 13) == 0);
  CHECK(http_str("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", resp,
                 sizeof(resp)) > 0);
  CHECK(strncmp(resp, "HTTP/1.1 405 ", 13) == 0);
  CHECK(strstr(resp, "\r\nAllow: GET\r\n") != NULL);
  CHECK(http_str("nonsense\r\n\r\n", resp, sizeof(resp)) > 0);
  CHECK(strncmp(resp, "HTTP/1.1 400 ", 13) == 0);
  CHECK(http_str("GET /metrics SPDY/3\r\n\r\n", resp, sizeof(resp)) > 0);
  CHECK(strncmp(resp, "HTTP/1.1 400 ", 13) == 0);

  render_fails = 1;
  CHECK(http_str("GET /metrics HTTP/1.1\r\n\r\n", resp, sizeof(resp)) > 0);
  CHECK(strncmp(resp, "HTTP/1.1 500 ", 13) == 0);
  render_fails = 0;

  /* Headers that never end within 8 KiB: closed without an answer. */
  big = malloc(10000);
  memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
  memset(big + 26, 'a', 10000 - 26);
  CHECK_EQ_INT(http(big, 10000, resp, sizeof(resp)), 0);
  free(big);
}

static void *client_main(void *arg) {
  (void)arg;
  RUN(test_get_metrics);
  RUN(test_errors);
  uv_async_send(&done);
  return NULL;
}

int main(void) {
  inv_addr_t addr;
  pthread_t th;
  char err[256];

  alarm(60);
  inv_log_set_level(INV_LOG_WARN);
  uv_loop_init(&loop);
  uv_async_init(&loop, &done, done_cb);
  inv_addr_parse("127.0.0.1:0", &addr);
  CHECK_EQ_INT(
      inv_metrics_http_start(&loop, &addr, render, NULL, &mh, err, sizeof(err)),
      0);
  mh_port = inv_metrics_http_port(mh);
  CHECK(mh_port > 0);
  inv_metrics_http_close(NULL);

  /* Binding the same port again fails with a message naming it. */
  {
    inv_metrics_http_t *again = NULL;
    inv_addr_t same = addr;
    same.port = mh_port;
    CHECK_EQ_INT(inv_metrics_http_start(&loop, &same, render, NULL, &again, err,
                                        sizeof(err)),
                 INV_EIO);
    CHECK(again == NULL && strstr(err, "127.0.0.1:") != NULL);
  }

  pthread_create(&th, NULL, client_main, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  return check_summary();
}
