/*
 * Internal to inval_server: opening a listening TCP socket for the RPC
 * server and the /metrics endpoint. Binding happens with plain system calls
 * before any libuv handle exists, so a failed start (port in use, bad
 * address) leaves nothing to close asynchronously.
 */
#ifndef INV_LISTEN_H
#define INV_LISTEN_H

#include <stddef.h>
#include <uv.h>

#include "common/base/addr.h"

/* Backlog for every listener: enough for a thousand clients connecting in
 * one burst (the kernel caps it at net.core.somaxconn). */
#define INV__LISTEN_BACKLOG 4096

/*
 * Resolves addr (a numeric address or a name, resolved once, at start),
 * binds it with SO_REUSEADDR and listens. Returns 0 with *fd (owned by the
 * caller, close-on-exec) and *port (the port bound, useful when addr's port
 * is 0), or INV_EIO with err naming the address and the reason.
 */
int inv__listen_open(const inv_addr_t *addr, uv_os_sock_t *fd, int *port,
                     char *err, size_t errlen);

/* Formats a peer or socket address as "1.2.3.4:5" or "[::1]:5" into out;
 * "?" when the family is unknown. */
void inv__sockaddr_format(const struct sockaddr *sa, char *out, size_t outlen);

#endif
