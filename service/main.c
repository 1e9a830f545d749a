/*
 * inval-publisher's entry point: the command line (defaults, config file,
 * flags), then the daemon. Exit status: 0 after a graceful stop or for
 * --help, --version and --check-config; 2 for a configuration error (the
 * message names the file and line, or the flag); 1 when the daemon cannot
 * start (for example the port is taken).
 */
#include <stdio.h>

#include "common/base/config.h"
#include "service/pub_config.h"
#include "service/publisher.h"

int main(int argc, char **argv) {
  inv_pub_conf_t conf = {0};
  char err[512] = "";
  inv_cli_action_t action;
  int rc = inv_cli_parse(argc, argv, inv_pub_conf_rows, inv_pub_conf_nrows,
                         &conf, "inval-publisher",
                         "Accepts cache invalidation events over "
                         "MessagePack-RPC and logs and broadcasts them "
                         "through Redis.",
                         INV_VERSION, &action, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "inval-publisher: %s\n", err);
    inv_pub_conf_free(&conf);
    return 2;
  }
  if (action != INV_CLI_RUN) {
    inv_pub_conf_free(&conf);
    return 0;
  }
  rc = inv_publisher_run(&conf, err, sizeof(err));
  if (rc < 0) fprintf(stderr, "inval-publisher: %s\n", err);
  inv_pub_conf_free(&conf);
  return rc < 0 ? 1 : 0;
}
