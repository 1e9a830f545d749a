/*
 * invalctl ping: one ping request; prints PONG and the round trip time.
 */
#include <string.h>
#include <time.h>

#include "proto/invalctl/invalctl.h"

static int run(const inv_ctl_opts_t *opts, int argc, char **argv) {
  inv_client_t *c = NULL;
  struct timespec t0, t1;
  double ms;
  int rc;
  if (argc > 1)
    return inv__ctl_usage_error("ping", "ping takes no arguments (got %s)",
                                argv[1]);
  rc = inv__ctl_connect_ping(opts, &c);
  if (rc != 0) return rc;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  rc = inv_client_ping(c);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (rc != 0) {
    rc = inv__ctl_call_error(opts, c, rc);
    inv_client_close(c);
    return rc;
  }
  ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
       (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  printf("PONG (%.3f ms)\n", ms);
  inv_client_close(c);
  return INV_CTL_EXIT_OK;
}

const inv_ctl_cmd_t inv__ctl_cmd_ping = {
    "ping", "check the server answers; prints PONG and the round trip",
    "Usage: invalctl [OPTIONS] ping\n"
    "\n"
    "Connects, sends one ping and prints \"PONG (0.123 ms)\" with the round\n"
    "trip time of the ping alone. Without a token no hello is sent, since a\n"
    "server with auth-token answers ping before hello. Exit codes: 0 PONG, 1 "
    "the server\n"
    "replied with an error, 3 cannot connect or no reply in --timeout.\n",
    run};
