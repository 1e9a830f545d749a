/*
 * Error codes shared by every inval component.
 *
 * Every failure in inval is a negative code from the one table below. The
 * name of a code ("EPROTO") is also the stable string sent on the wire in an
 * error response, so the first block of the table is part of the protocol
 * and is documented in proto/PROTOCOL.md. Functions that can fail return 0
 * (or a non-negative count) on success and one of these codes on failure.
 */
#ifndef INV_ERRORS_H
#define INV_ERRORS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, number, description). Wire codes first, internal codes after. */
#define INV_ERRNO_MAP(XX)                                            \
  XX(EPROTO, 1, "malformed frame or not msgpack-rpc")                \
  XX(EINVAL, 2, "invalid parameters or event")                       \
  XX(ETOOBIG, 3, "message or event count over the limit")            \
  XX(ENOMETHOD, 4, "no such method")                                 \
  XX(EUNAVAIL, 5, "Redis did not take or confirm the batch; retry")  \
  XX(EBUSY, 6, "shed by backpressure; retry later")                  \
  XX(EAUTH, 7, "authentication required or token rejected")          \
  XX(ESHUTDOWN, 8, "server is shutting down; retry elsewhere")       \
  XX(EPERM, 9, "the credential may not touch that key or namespace") \
  XX(ENOMEM, 20, "out of memory")                                    \
  XX(EIO, 21, "input/output error")                                  \
  XX(ETIMEDOUT, 22, "timed out")                                     \
  XX(ECLOSED, 23, "connection closed")                               \
  XX(ECONNREFUSED, 24, "connection refused")                         \
  XX(ECONFIG, 25, "bad configuration")                               \
  XX(EREDIS, 26, "Redis replied with an error")

typedef enum {
#define INV_ERR_ENUM(name, num, msg) INV_##name = -(num),
  INV_ERRNO_MAP(INV_ERR_ENUM)
#undef INV_ERR_ENUM
} inv_errno_t;

/* Numbers below INV_ERR_FIRST_INTERNAL are wire codes; from it up to
 * INV_ERR_NUM_LIMIT (excluded) internal ones, which never go on the wire.
 * Arrays counted per code are INV_ERR_NUM_LIMIT long. errors.c asserts at
 * compile time that every code of the table fits these ranges. */
#define INV_ERR_FIRST_INTERNAL 20
#define INV_ERR_NUM_LIMIT 32

/* Returns the code's name without prefix ("EPROTO"), or "EUNKNOWN". */
const char *inv_err_name(int err);

/* Returns the code's one-line description, or "unknown error". */
const char *inv_strerror(int err);

/* Returns the code named by name[0..len) ("EBUSY"), or 0 if there is none. */
int inv_err_from_name(const char *name, size_t len);

/* Returns 1 for codes a client should retry (EUNAVAIL, EBUSY, ESHUTDOWN). */
int inv_err_is_retryable(int err);

/* Returns 1 for a code that may go on the wire in an error response (a
 * code of the table numbered below INV_ERR_FIRST_INTERNAL), 0 for an
 * internal code or a number that is no code. */
int inv_err_is_wire(int err);

#ifdef __cplusplus
}
#endif

#endif
