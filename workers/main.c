/*
 * inval-worker's entry point: the command line (defaults, config file,
 * flags), then the daemon. Exit status: 0 after a graceful stop or for
 * --help, --version and --check-config; 2 for a configuration error; 1 when
 * the daemon cannot start (for example the admin port is taken).
 */
#include <stdio.h>

#include "common/base/config.h"
#include "workers/worker_daemon.h"
#include "workers/worker_conf.h"

int main(int argc, char **argv) {
  inv_worker_conf_t conf = {0};
  char err[512] = "";
  inv_cli_action_t action;
  int rc = inv_cli_parse(argc, argv, inv_worker_conf_rows,
                         inv_worker_conf_nrows, &conf, "inval-worker",
                         "Applies cache invalidations to the keys its own "
                         "Redis node owns: one worker per node.",
                         INV_VERSION, &action, err, sizeof(err));
  if (rc == 0 && (action == INV_CLI_RUN || action == INV_CLI_CHECK))
    rc = inv_worker_conf_check(&conf, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "inval-worker: %s\n", err);
    inv_worker_conf_free(&conf);
    return 2;
  }
  if (action != INV_CLI_RUN) {
    inv_worker_conf_free(&conf);
    return 0;
  }
  rc = inv_worker_daemon_run(&conf, err, sizeof(err));
  if (rc < 0) fprintf(stderr, "inval-worker: %s\n", err);
  inv_worker_conf_free(&conf);
  return rc < 0 ? 1 : 0;
}
