/*
 * "HOST:PORT" addresses (see addr.h).
 */
#include "common/base/addr.h"

#include <stdio.h>
#include <string.h>

#include "inval/errors.h"

int inv_addr_parse(const char *text, inv_addr_t *out) {
  if (text == NULL) return INV_EINVAL;
  const char *host, *hostend, *portp;
  if (text[0] == '[') {
    host = text + 1;
    hostend = strchr(host, ']');
    if (hostend == NULL || hostend[1] != ':') return INV_EINVAL;
    portp = hostend + 2;
  } else {
    hostend = strrchr(text, ':');
    if (hostend == NULL) return INV_EINVAL;
    host = text;
    /* An IPv6 address must be bracketed, or its port is ambiguous. */
    if (memchr(host, ':', (size_t)(hostend - host)) != NULL) return INV_EINVAL;
    portp = hostend + 1;
  }
  size_t hostlen = (size_t)(hostend - host);
  if (hostlen == 0 || hostlen >= sizeof(out->host)) return INV_EINVAL;
  for (size_t i = 0; i < hostlen; i++) {
    unsigned char c = (unsigned char)host[i];
    /* Besides separators, '#', '"' and '\\' are refused: no host name
     * holds them, and a host starting with one would not read back from
     * the config file that inv_conf_print writes. */
    if (c <= ' ' || c >= 0x7f || c == ',' || c == '[' || c == ']' || c == '#' ||
        c == '"' || c == '\\')
      return INV_EINVAL;
  }
  if (*portp == '\0' || strlen(portp) > 5) return INV_EINVAL;
  long port = 0;
  for (const char *p = portp; *p; p++) {
    if (*p < '0' || *p > '9') return INV_EINVAL;
    port = port * 10 + (*p - '0');
  }
  if (port > 65535) return INV_EINVAL;
  memcpy(out->host, host, hostlen);
  out->host[hostlen] = '\0';
  out->port = (int)port;
  return 0;
}

void inv_addr_format(const inv_addr_t *addr, char *out, size_t outlen) {
  if (outlen == 0) return;
  if (strchr(addr->host, ':') != NULL) {
    snprintf(out, outlen, "[%s]:%d", addr->host, addr->port);
  } else {
    snprintf(out, outlen, "%s:%d", addr->host, addr->port);
  }
}
