/*
 * Internal to the service (not installed): the msgpack structure check
 * that the framer uses, offered to every decoder of bytes from the network
 * or from Redis (the payload decoder, proto/heartbeat.c) so that they never
 * hand msgpack-c an object whose declared sizes do not fit in its bytes.
 *
 * msgpack-c allocates an array's or map's element storage from the declared
 * count before it has seen the elements, so a five-byte "array of four
 * billion elements" would make it request about 100 GB. Checking the
 * headers first bounds every allocation by a small multiple of the input
 * length.
 */
#ifndef INV_CODEC_CHECK_H
#define INV_CODEC_CHECK_H

#include <stddef.h>

/* Checks that data[0..len) is exactly one complete msgpack object whose
 * declared sizes fit in len bytes, nested no deeper than msgpack-c can
 * decode. Returns 0, or INV_EPROTO with errstr (errlen bytes, NUL
 * terminated) saying what is wrong. Reads data only; allocates nothing. */
int inv__msgpack_check(const char *data, size_t len, char *errstr,
                       size_t errlen);

#endif
