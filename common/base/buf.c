/*
 * Growable byte buffer. The buffer keeps one spare byte past len that is
 * always NUL, so text assembled in it can be handed to C string functions.
 */
#include "common/base/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval/errors.h"

int inv_buf_reserve(inv_buf_t *b, size_t extra) {
  if (extra > SIZE_MAX - b->len - 1) return INV_ENOMEM;
  size_t need = b->len + extra + 1;
  if (b->data != NULL && need <= b->cap) return 0;
  size_t cap = b->cap < 64 ? 64 : b->cap;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (p == NULL) return INV_ENOMEM;
  if (b->data == NULL) p[0] = '\0';
  b->data = p;
  b->cap = cap;
  return 0;
}

int inv_buf_append(inv_buf_t *b, const void *p, size_t len) {
  int rc = inv_buf_reserve(b, len);
  if (rc != 0) return rc;
  if (len > 0) memcpy(b->data + b->len, p, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

int inv_buf_printf(inv_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return INV_ENOMEM;
  int rc = inv_buf_reserve(b, (size_t)n);
  if (rc != 0) return rc;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

void inv_buf_consume(inv_buf_t *b, size_t n) {
  if (n >= b->len) {
    inv_buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

void inv_buf_reset(inv_buf_t *b) {
  b->len = 0;
  if (b->data != NULL) b->data[0] = '\0';
}

void inv_buf_free(inv_buf_t *b) {
  if (b == NULL) return;
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

int inv_buf_msgpack_write(void *data, const char *p, size_t len) {
  return inv_buf_append((inv_buf_t *)data, p, len);
}
