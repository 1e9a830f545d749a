/*
 * A growable byte buffer. Used for output frames, Prometheus text and any
 * place that assembles bytes. A zeroed inv_buf_t is a valid empty buffer.
 * The buffer owns data; inv_buf_free() releases it and leaves it empty.
 */
#ifndef INV_BUF_H
#define INV_BUF_H

#include <stddef.h>

typedef struct inv_buf_s {
  char *data;
  size_t len;
  size_t cap;
} inv_buf_t;

/* Appends len bytes. Returns 0, or INV_ENOMEM (the buffer is unchanged). */
int inv_buf_append(inv_buf_t *b, const void *p, size_t len);

/* Makes room for extra more bytes plus the NUL, without changing len, so
 * that a caller may write up to extra bytes at data + len itself and then
 * advance len (and keep data NUL-terminated). Returns 0, or INV_ENOMEM (the
 * buffer is unchanged). */
int inv_buf_reserve(inv_buf_t *b, size_t extra);

/* Appends formatted text (no NUL counted in len, but data stays
 * NUL-terminated). Returns 0, or INV_ENOMEM. */
int inv_buf_printf(inv_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Drops the first n bytes (n <= len). */
void inv_buf_consume(inv_buf_t *b, size_t n);

void inv_buf_reset(inv_buf_t *b); /* len = 0, keeps memory */
void inv_buf_free(inv_buf_t *b);  /* accepts NULL */

/* msgpack-c write callback: msgpack_packer_init(&pk, buf,
 * inv_buf_msgpack_write). */
int inv_buf_msgpack_write(void *data, const char *p, size_t len);

#endif
