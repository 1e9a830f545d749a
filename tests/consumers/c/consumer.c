/*
 * A C application of the installed client library, built with the flags of
 * pkg-config inval-client: the pipelined publisher client and the error
 * table, through the public headers only.
 *
 *   consumer HOST PUBLISHER_PORT PREFIX
 *
 * Pings the publisher, checks that an empty request is refused before it
 * is sent, then sends a hard invalidation of every key that starts with
 * PREFIX with the pipelined calls and waits for its ack. Prints one line
 * per step and exits 0, or prints the failure and exits 1.
 */
#include <inval/client.h>
#include <inval/errors.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, int rc, const char *detail) {
  printf("%s: %s (%s): %s\n", what, inv_err_name(rc), inv_strerror(rc), detail);
  return 1;
}

static int run(inv_client_t *c, const char *prefix) {
  inv_event_t ev = {INV_KIND_PREFIX, INV_MODE_HARD, prefix, strlen(prefix)};
  inv_client_reply_t reply;
  uint32_t msgid = 0;
  int rc = inv_client_ping(c);
  if (rc < 0) return fail("ping", rc, inv_client_errstr(c));
  printf("ping ok\n");
  rc = inv_client_send_invalidate(c, &ev, 0, NULL);
  if (rc != INV_EINVAL) return fail("empty request not refused", rc, "");
  printf("empty request: %s\n", inv_err_name(rc));
  rc = inv_client_send_invalidate(c, &ev, 1, &msgid);
  if (rc == 0) rc = inv_client_flush(c);
  if (rc == 0) rc = inv_client_next_reply(c, -1, &reply);
  if (rc < 0) return fail("invalidate", rc, inv_client_errstr(c));
  if (reply.err != 0 || !reply.has_ack || reply.msgid != msgid)
    return fail("invalidate", reply.err, reply.errstr);
  printf("acked %llu in %zu shard entry\n",
         (unsigned long long)reply.ack.accepted, reply.ack.nids);
  return 0;
}

int main(int argc, char **argv) {
  inv_client_t *c = NULL;
  char err[256];
  int rc;
  if (argc != 4) {
    fprintf(stderr, "usage: %s HOST PUBLISHER_PORT PREFIX\n", argv[0]);
    return 2;
  }
  rc = inv_client_connect(argv[1], atoi(argv[2]), NULL, &c, err, sizeof(err));
  if (rc < 0) return fail("connect", rc, err);
  rc = run(c, argv[3]);
  inv_client_close(c);
  return rc;
}
