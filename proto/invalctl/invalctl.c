/*
 * invalctl: the command-line client of inval-publisher (and of a worker's
 * admin port), in the style of redis-cli:
 *   invalctl [-H host:port] [--tls] ... COMMAND [ARGS...]
 * This file parses the global options and dispatches to the commands; the
 * shared helpers for connecting and reporting errors live here too.
 */
#include "proto/invalctl/invalctl.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/base/addr.h"
#include "common/base/config.h"
#include "inval/errors.h"

#define DEFAULT_HOST "127.0.0.1:7700"

static const inv_ctl_cmd_t *const commands[] = {
    &inv__ctl_cmd_invalidate, &inv__ctl_cmd_stats,
    &inv__ctl_cmd_ping,       &inv__ctl_cmd_tail,
    &inv__ctl_cmd_get,        &inv__ctl_cmd_bench,
    &inv__ctl_cmd_check,      NULL};

static void print_usage(FILE *out) {
  size_t i;
  fprintf(
      out,
      "Usage: invalctl [OPTIONS] COMMAND [ARGS...]\n"
      "\n"
      "The command-line client of inval-publisher (and of a worker's admin\n"
      "port, which serves stats and ping).\n"
      "\n"
      "Options (before or after the command; not after \"--\"):\n"
      "  -H, --host HOST:PORT  server address (default " DEFAULT_HOST
      ", or $INVAL_HOST)\n"
      "  -h HOST, -p PORT      the host and the port alone, as in redis-cli\n"
      "                        (-h without a host is --help)\n"
      "  --tls                 speak TLS\n"
      "  --tls-ca FILE         CA certificates (PEM) that verify the server\n"
      "                        (default: the system's CA store)\n"
      "  --insecure            TLS without verifying the certificate\n"
      "  --token TOKEN         authentication token sent in hello\n"
      "                        (default $INVAL_TOKEN)\n"
      "  --timeout MS          connect and reply timeout (default 5000)\n"
      "  -h, --help            this help; `invalctl help COMMAND` for a "
      "command\n"
      "  --version             print the version\n"
      "\n"
      "Commands:\n");
  for (i = 0; commands[i] != NULL; i++)
    fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(
      out,
      "  %-12s %s\n"
      "\n"
      "Exit codes:\n"
      "  0  success\n"
      "  1  the server replied with an error (printed as \"error: CODE: "
      "message\")\n"
      "  2  usage error\n"
      "  3  cannot connect to the server, or the connection failed or timed "
      "out\n"
      "  4  invalidate --wait: acked, but not applied by every worker in time\n"
      "  5  check: a worker is stale or missing, or a node is unhealthy\n",
      "help", "help COMMAND: describe a command");
}

static const inv_ctl_cmd_t *find_command(const char *name) {
  size_t i;
  for (i = 0; commands[i] != NULL; i++)
    if (strcmp(commands[i]->name, name) == 0) return commands[i];
  return NULL;
}

int inv__ctl_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fputs("error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (cmd != NULL)
    fprintf(stderr, "\n(see `invalctl help %s`)\n", cmd);
  else
    fputs("\n(see `invalctl --help`)\n", stderr);
  return INV_CTL_EXIT_USAGE;
}

int inv__ctl_parse_uint(const char *s, uint64_t max, uint64_t *out) {
  char *end;
  unsigned long long v;
  if (s == NULL || *s < '0' || *s > '9') return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > max) return -1;
  *out = v;
  return 0;
}

/* Returns 1 when host:port answers a RESP PING the way Redis does ("+PONG"
 * or an error reply such as "-NOAUTH"), within timeout_ms. A MessagePack-RPC
 * server reads "PING\r\n" as a msgpack fixint and never answers it so. */
static int looks_like_redis(const char *host, int port, int timeout_ms) {
  struct addrinfo hints, *res = NULL;
  char service[16], reply[8];
  struct pollfd pfd;
  int fd = -1, found = 0;
  ssize_t n;

  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  snprintf(service, sizeof service, "%d", port);
  if (getaddrinfo(host, service, &hints, &res) != 0) return 0;
  fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) goto out;
  if (write(fd, "PING\r\n", 6) != 6) goto out;
  pfd.fd = fd;
  pfd.events = POLLIN;
  if (poll(&pfd, 1, timeout_ms) <= 0) goto out;
  n = read(fd, reply, sizeof reply);
  found = n >= 5 && (memcmp(reply, "+PONG", 5) == 0 || reply[0] == '-');
out:
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return found;
}

/* A hint for "no reply" from host:port: a Redis port keeps a msgpack frame
 * waiting for its end of line and never answers, and a TLS port never
 * answers a plaintext hello. Returns "" when there is nothing to add. */
static const char *no_reply_hint(const inv_ctl_opts_t *opts) {
  if (looks_like_redis(opts->host, opts->port,
                       opts->timeout_ms < 1000 ? opts->timeout_ms : 1000))
    return " (this looks like a Redis port: it answers PING like Redis; "
           "-H wants the publisher's address, e.g. " DEFAULT_HOST ")";
  if (!opts->tls) return " (if the server speaks TLS, add --tls or --tls-ca)";
  return "";
}

/* Connects with hello (or without, see inv__ctl_connect_ping()). */
static int ctl_connect(const inv_ctl_opts_t *opts, int skip_hello,
                       inv_client_t **out) {
  inv_client_opts_t co;
  char err[256];
  int rc;
  inv_client_opts_default(&co);
  co.skip_hello = skip_hello;
  co.client_name = "invalctl";
  co.token = opts->token;
  co.connect_timeout_ms = opts->timeout_ms;
  co.timeout_ms = opts->timeout_ms;
  co.tls = opts->tls;
  co.tls_ca_file = opts->tls_ca;
  co.tls_verify = !opts->insecure;
  rc = inv_client_connect(opts->host, opts->port, &co, out, err, sizeof err);
  if (rc == 0) return INV_CTL_EXIT_OK;
  /* A wire code came from the server, not from the transport. */
  if (inv_err_is_wire(rc)) {
    fprintf(stderr, "error: %s: %s\n", inv_err_name(rc), err);
    return INV_CTL_EXIT_SERVER;
  }
  /* No reply at all: say what may be wrong. */
  fprintf(stderr, "error: cannot connect to %s:%d: %s%s\n", opts->host,
          opts->port, err, rc == INV_ETIMEDOUT ? no_reply_hint(opts) : "");
  return INV_CTL_EXIT_CONNECT;
}

int inv__ctl_connect(const inv_ctl_opts_t *opts, inv_client_t **out) {
  return ctl_connect(opts, 0, out);
}

int inv__ctl_connect_ping(const inv_ctl_opts_t *opts, inv_client_t **out) {
  return ctl_connect(opts, opts->token == NULL, out);
}

int inv__ctl_call_error(const inv_ctl_opts_t *opts, inv_client_t *c, int rc) {
  const char *name = inv_client_errname(c);
  if (name[0] != '\0') {
    fprintf(stderr, "error: %s: %s\n", name, inv_client_errstr(c));
    return INV_CTL_EXIT_SERVER;
  }
  fprintf(stderr, "error: %s:%d: %s (%s)%s\n", opts->host, opts->port,
          inv_client_errstr(c), inv_err_name(rc),
          rc == INV_ETIMEDOUT ? no_reply_hint(opts) : "");
  return inv_err_is_wire(rc) ? INV_CTL_EXIT_SERVER : INV_CTL_EXIT_CONNECT;
}

int inv__ctl_fetch_stats(const inv_ctl_opts_t *opts, inv_client_t **c,
                         inv_client_result_t **res) {
  int rc = inv__ctl_connect(opts, c);
  if (rc != 0) return rc;
  rc = inv_client_stats(*c, res);
  if (rc != 0) {
    rc = inv__ctl_call_error(opts, *c, rc);
    inv_client_close(*c);
    *c = NULL;
    return rc;
  }
  return 0;
}

void inv__ctl_format_ts(uint64_t ts_ms, char *out, size_t outlen) {
  time_t secs = (time_t)(ts_ms / 1000);
  struct tm tm;
  char day[32];
  gmtime_r(&secs, &tm);
  strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, outlen, "%s.%03uZ", day, (unsigned)(ts_ms % 1000));
}

void inv__ctl_print_escaped(FILE *out, const char *p, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)p[i];
    if (ch == '\\')
      fputs("\\\\", out);
    else if (ch > 0x20 && ch < 0x7f)
      fputc(ch, out);
    else
      fprintf(out, "\\x%02x", ch);
  }
}

/* Takes an option's value: "--opt=value" or "--opt value". Returns the
 * value, or NULL when arg is not this option. *i moves past a separate
 * value; *missing is set when the value is absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *name,
                             const char *alias, int *missing) {
  const char *arg = argv[*i];
  size_t n = strlen(name);
  if (strncmp(arg, name, n) == 0 && arg[n] == '=') return arg + n + 1;
  if (strcmp(arg, name) != 0 && (alias == NULL || strcmp(arg, alias) != 0))
    return NULL;
  if (*i + 1 >= argc) {
    *missing = 1;
    return NULL;
  }
  return argv[++*i];
}

static int parse_host(const char *text, inv_ctl_opts_t *o) {
  inv_addr_t addr;
  if (inv_addr_parse(text, &addr) != 0) return -1;
  snprintf(o->host, sizeof o->host, "%s", addr.host);
  o->port = addr.port;
  return 0;
}

/* 1 when "-h" at argv[i] is redis-cli's -h HOST: a value follows that is
 * neither an option nor a command. Otherwise -h is --help. */
static int dash_h_is_host(int argc, char **argv, int i) {
  const char *v = i + 1 < argc ? argv[i + 1] : NULL;
  return strcmp(argv[i], "-h") == 0 && v != NULL && v[0] != '-' &&
         v[0] != '\0' && find_command(v) == NULL && strcmp(v, "help") != 0;
}

/*
 * Takes the global option at argv[*i], if it is one, into o (moving *i past
 * its value). Returns 1 when taken, 0 when argv[*i] is not a global option,
 * or -1 after printing a usage error.
 */
static int take_global(int argc, char **argv, int *i, inv_ctl_opts_t *o) {
  const char *a = argv[*i], *v;
  int missing = 0;
  uint64_t u;

  if (strcmp(a, "--tls") == 0) {
    o->tls = 1;
    return 1;
  }
  if (strcmp(a, "--insecure") == 0) {
    o->insecure = 1;
    return 1;
  }
  if (dash_h_is_host(argc, argv, *i)) {
    v = argv[++*i];
    if (strlen(v) >= sizeof o->host || strchr(v, ':') != NULL) {
      inv__ctl_usage_error(NULL,
                           "-h wants a host name or an IPv4 address "
                           "(for HOST:PORT use -H), not \"%s\"",
                           v);
      return -1;
    }
    snprintf(o->host, sizeof o->host, "%s", v);
    return 1;
  }
  if ((v = opt_value(argc, argv, i, "--port", "-p", &missing)) != NULL) {
    if (inv__ctl_parse_uint(v, 65535, &u) != 0 || u == 0) {
      inv__ctl_usage_error(NULL, "-p wants a port (1..65535), not \"%s\"", v);
      return -1;
    }
    o->port = (int)u;
    return 1;
  }
  if ((v = opt_value(argc, argv, i, "--host", "-H", &missing)) != NULL) {
    if (parse_host(v, o) != 0) {
      inv__ctl_usage_error(NULL, "--host wants HOST:PORT, not \"%s\"", v);
      return -1;
    }
    return 1;
  }
  if ((v = opt_value(argc, argv, i, "--tls-ca", NULL, &missing)) != NULL) {
    o->tls_ca = v;
    o->tls = 1;
    return 1;
  }
  if ((v = opt_value(argc, argv, i, "--token", NULL, &missing)) != NULL) {
    o->token = v;
    return 1;
  }
  if ((v = opt_value(argc, argv, i, "--timeout", NULL, &missing)) != NULL) {
    if (inv__ctl_parse_uint(v, 86400000, &u) != 0 || u == 0) {
      inv__ctl_usage_error(
          NULL, "--timeout wants milliseconds (1..86400000), not \"%s\"", v);
      return -1;
    }
    o->timeout_ms = (int)u;
    return 1;
  }
  if (missing) {
    inv__ctl_usage_error(NULL, "%s needs a value", a);
    return -1;
  }
  return 0;
}

/* Moves the global options among the command's arguments (up to "--") into
 * o, leaving the command's own arguments in argv[0..*argc). Returns 0 or -1
 * after a usage error. */
static int take_globals_after_command(int *argc, char **argv,
                                      inv_ctl_opts_t *o) {
  int i, n = 1, rest = 0;
  for (i = 1; i < *argc; i++) {
    int r = 0;
    if (!rest && strcmp(argv[i], "--") == 0) rest = 1;
    if (!rest && (r = take_global(*argc, argv, &i, o)) < 0) return -1;
    if (r == 0) argv[n++] = argv[i];
  }
  *argc = n;
  argv[n] = NULL;
  return 0;
}

int main(int argc, char **argv) {
  inv_ctl_opts_t o;
  const inv_ctl_cmd_t *cmd;
  const char *env;
  int i, r, cargc;
  memset(&o, 0, sizeof o);
  o.timeout_ms = 5000;
  /* A server that closes a TLS connection must not kill us with SIGPIPE;
   * write errors are reported instead. */
  signal(SIGPIPE, SIG_IGN);
  env = getenv("INVAL_HOST");
  if (parse_host(env != NULL && *env != '\0' ? env : DEFAULT_HOST, &o) != 0)
    return inv__ctl_usage_error(NULL, "INVAL_HOST is not HOST:PORT: %s", env);
  env = getenv("INVAL_TOKEN");
  if (env != NULL && *env != '\0') o.token = env;

  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if ((r = take_global(argc, argv, &i, &o)) != 0) {
      if (r < 0) return INV_CTL_EXIT_USAGE;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      print_usage(stdout);
      return INV_CTL_EXIT_OK;
    }
    if (strcmp(a, "--version") == 0) {
      printf("invalctl %s\n", INV_VERSION);
      return INV_CTL_EXIT_OK;
    }
    return inv__ctl_usage_error(NULL, "unknown option %s", a);
  }
  if (i >= argc) return inv__ctl_usage_error(NULL, "no command given");
  if (strcmp(argv[i], "help") == 0) {
    if (i + 1 >= argc) {
      print_usage(stdout);
      return INV_CTL_EXIT_OK;
    }
    cmd = find_command(argv[i + 1]);
    if (cmd == NULL)
      return inv__ctl_usage_error(NULL, "unknown command \"%s\"", argv[i + 1]);
    fputs(cmd->usage, stdout);
    return INV_CTL_EXIT_OK;
  }
  cmd = find_command(argv[i]);
  if (cmd == NULL)
    return inv__ctl_usage_error(NULL, "unknown command \"%s\"", argv[i]);
  cargc = argc - i;
  if (take_globals_after_command(&cargc, argv + i, &o) != 0)
    return INV_CTL_EXIT_USAGE;
  {
    int j;
    for (j = i + 1; j < i + cargc; j++) {
      if (strcmp(argv[j], "--") == 0) break;
      if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0) {
        fputs(cmd->usage, stdout);
        return INV_CTL_EXIT_OK;
      }
    }
  }
  return cmd->run(&o, cargc, argv + i);
}
