/*
 * Network addresses as "HOST:PORT" text: what the config directives, the
 * daemons' listeners, the Redis seeds and invalctl's options all take.
 * Pure code: no name resolution, no I/O.
 */
#ifndef INV_ADDR_H
#define INV_ADDR_H

#include <stddef.h>

typedef struct inv_addr_s {
  char host[256]; /* a name or an address, NUL-terminated; IPv6 unbracketed */
  int port;       /* 0 to 65535 */
} inv_addr_t;

/* Parses "HOST:PORT" or "[V6]:PORT" from the NUL-terminated text. A host
 * with a ':' must be bracketed (its port would be ambiguous); a host of 256
 * bytes or more, or one holding a blank, a control byte, ',', '[', ']',
 * '#', '"' or '\\', is refused. Returns 0, or INV_EINVAL (text NULL or not
 * an address; out is then unchanged). */
int inv_addr_parse(const char *text, inv_addr_t *out);

/* Formats addr as "host:port" (the host bracketed when it holds a ':') into
 * out, truncated to outlen - 1 bytes; nothing is written when outlen is 0. */
void inv_addr_format(const inv_addr_t *addr, char *out, size_t outlen);

#endif
