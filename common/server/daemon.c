/*
 * Signal handling around a daemon's loop (daemon.h), and the listening
 * socket helper both servers of inval_server use (listen.h).
 */
#include "common/server/daemon.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "inval/errors.h"
#include "common/server/listen.h"
#include "common/base/log.h"

/* How often readiness is asked for until it is given. */
#define READY_POLL_MS 200

struct inv_daemon_s {
  uv_signal_t sigint;
  uv_signal_t sigterm;
  uv_signal_t sighup;
  inv_daemon_reload_cb reload_cb;
  void *reload_data;
  uv_timer_t notify_timer; /* readiness polls, then watchdog pings */
  inv_daemon_stop_cb stop_cb;
  void *data;
  inv_daemon_ready_fn ready;
  void *ready_data;
  uint64_t watchdog_ms; /* 0: the service manager wants no watchdog */
  int notified_ready;
  int stopping;
  int handles; /* handles not yet closed */
};

/* Runs on the loop (libuv turns the signal into a callback), so it may log
 * and call back into the daemon. */
static void daemon_signal_cb(uv_signal_t *h, int signum) {
  inv_daemon_t *d = h->data;
  if (d->stopping) {
    /* The operator asked twice: stop waiting for the graceful path. */
    inv_log_warn("daemon", "%s again while stopping; exiting now",
                 strsignal(signum));
    _exit(1);
  }
  d->stopping = 1;
  inv_log_info("daemon", "%s: stopping", strsignal(signum));
  sd_notify(0, "STOPPING=1");
  d->stop_cb(d->data);
}

/* SIGHUP: the reload, framed for the service manager. */
static void daemon_sighup_cb(uv_signal_t *h, int signum) {
  inv_daemon_t *d = h->data;
  (void)signum;
  if (d->stopping) return;
  if (d->reload_cb == NULL) {
    inv_log_info("daemon", "SIGHUP: nothing to reload");
    return;
  }
  inv_log_info("daemon", "SIGHUP: reloading");
  /* MONOTONIC_USEC lets systemd's Type=notify-reload match this reload to
   * its own SIGHUP. */
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)(uv_hrtime() / 1000));
  d->reload_cb(d->reload_data);
  if (d->notified_ready) sd_notify(0, "READY=1");
}

void inv_daemon_on_reload(inv_daemon_t *d, inv_daemon_reload_cb cb,
                          void *data) {
  d->reload_cb = cb;
  d->reload_data = data;
}

/* Asks for readiness until it is given (then sends READY=1), and sends the
 * watchdog's keep-alive at every tick after that. */
static void daemon_notify_cb(uv_timer_t *t) {
  inv_daemon_t *d = t->data;
  char status[200] = "";
  if (!d->notified_ready) {
    if (d->stopping || !d->ready(status, sizeof(status), d->ready_data)) {
      if (d->watchdog_ms > 0) sd_notify(0, "WATCHDOG=1");
      return;
    }
    d->notified_ready = 1;
    sd_notifyf(0, "READY=1\nSTATUS=%s", status[0] ? status : "ready");
    inv_log_info("daemon", "ready%s%s", status[0] ? ": " : "", status);
    uv_timer_stop(t);
    if (d->watchdog_ms > 0)
      uv_timer_start(t, daemon_notify_cb, d->watchdog_ms / 2,
                     d->watchdog_ms / 2);
    return;
  }
  sd_notify(0, "WATCHDOG=1");
}

void inv_daemon_notify_when_ready(inv_daemon_t *d, inv_daemon_ready_fn ready,
                                  void *data) {
  uint64_t usec = 0;
  d->ready = ready;
  d->ready_data = data;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000)
    d->watchdog_ms = usec / 1000;
  uv_timer_start(&d->notify_timer, daemon_notify_cb, 0, READY_POLL_MS);
}

static void daemon_close_cb(uv_handle_t *h) {
  inv_daemon_t *d = h->data;
  if (--d->handles == 0) free(d);
}

int inv_daemon_start(uv_loop_t *loop, inv_daemon_stop_cb stop_cb, void *data,
                     inv_daemon_t **out) {
  struct sigaction sa;
  inv_daemon_t *d;

  *out = NULL;
  d = calloc(1, sizeof(*d));
  if (d == NULL) return INV_ENOMEM;
  d->stop_cb = stop_cb;
  d->data = data;

  /* A peer that closes while we write must cost an EPIPE, not the process. */
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, NULL);

  /* uv_signal_init and uv_signal_start fail only for bad arguments, which
   * these are not, so no error path leaves a half-open handle behind. */
  uv_signal_init(loop, &d->sigint);
  uv_signal_init(loop, &d->sigterm);
  uv_signal_init(loop, &d->sighup);
  uv_timer_init(loop, &d->notify_timer);
  d->sigint.data = d;
  d->sigterm.data = d;
  d->sighup.data = d;
  d->notify_timer.data = d;
  d->handles = 4;
  uv_signal_start(&d->sigint, daemon_signal_cb, SIGINT);
  uv_signal_start(&d->sigterm, daemon_signal_cb, SIGTERM);
  uv_signal_start(&d->sighup, daemon_sighup_cb, SIGHUP);
  /* Watching for signals is no reason to keep the loop alive: once the
   * daemon's own handles are closed the loop ends by itself. */
  uv_unref((uv_handle_t *)&d->sigint);
  uv_unref((uv_handle_t *)&d->sigterm);
  uv_unref((uv_handle_t *)&d->sighup);
  uv_unref((uv_handle_t *)&d->notify_timer);
  *out = d;
  return 0;
}

void inv_daemon_close(inv_daemon_t *d) {
  if (d == NULL) return;
  uv_close((uv_handle_t *)&d->sigint, daemon_close_cb);
  uv_close((uv_handle_t *)&d->sigterm, daemon_close_cb);
  uv_close((uv_handle_t *)&d->sighup, daemon_close_cb);
  uv_close((uv_handle_t *)&d->notify_timer, daemon_close_cb);
}

void inv__sockaddr_format(const struct sockaddr *sa, char *out, size_t outlen) {
  char host[64];
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, host, sizeof(host));
    snprintf(out, outlen, "%s:%d", host, ntohs(in->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, host, sizeof(host));
    snprintf(out, outlen, "[%s]:%d", host, ntohs(in6->sin6_port));
  } else {
    snprintf(out, outlen, "?");
  }
}

int inv__listen_open(const inv_addr_t *addr, uv_os_sock_t *fd, int *port,
                     char *err, size_t errlen) {
  struct addrinfo hints, *res = NULL;
  struct sockaddr_storage bound;
  socklen_t boundlen = sizeof(bound);
  char portstr[16], text[300];
  int s = -1, one = 1, gai;

  *fd = -1;
  *port = 0;
  inv_addr_format(addr, text, sizeof(text));
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(portstr, sizeof(portstr), "%d", addr->port);
  gai = getaddrinfo(addr->host[0] ? addr->host : NULL, portstr, &hints, &res);
  if (gai != 0 || res == NULL) {
    snprintf(err, errlen, "cannot resolve %s: %s", text, gai_strerror(gai));
    goto err;
  }
  s = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
  if (s < 0) {
    snprintf(err, errlen, "cannot listen on %s: socket: %s", text,
             strerror(errno));
    goto err;
  }
  /* A restarted daemon must be able to bind while old connections sit in
   * TIME_WAIT. */
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (res->ai_family == AF_INET6)
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(s, res->ai_addr, res->ai_addrlen) != 0 ||
      listen(s, INV__LISTEN_BACKLOG) != 0) {
    snprintf(err, errlen, "cannot listen on %s: %s", text, strerror(errno));
    goto err;
  }
  if (getsockname(s, (struct sockaddr *)&bound, &boundlen) != 0) {
    snprintf(err, errlen, "cannot listen on %s: getsockname: %s", text,
             strerror(errno));
    goto err;
  }
  if (bound.ss_family == AF_INET)
    *port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  else
    *port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
  freeaddrinfo(res);
  *fd = s;
  return 0;

err:
  if (s >= 0) close(s);
  if (res != NULL) freeaddrinfo(res);
  return INV_EIO;
}
