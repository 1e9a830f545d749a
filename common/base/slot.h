/*
 * Redis Cluster key slots: CRC16 (XMODEM) modulo 16384, hashing only the
 * hash tag when the key has a non-empty one (the part between the first
 * '{' and the first '}' after it), exactly as the cluster specification says.
 */
#ifndef INV_SLOT_H
#define INV_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define INV_SLOTS 16384

/* CRC16-CCITT (XMODEM), as Redis uses: "123456789" gives 0x31C3. */
uint16_t inv_crc16(const char *buf, size_t len);

/* The slot of a key, 0..16383. */
unsigned inv_key_slot(const char *key, size_t len);

/* If key has a non-empty hash tag, returns 1 and sets *start and *len to
 * the tag's position (without braces). Otherwise returns 0. */
int inv_hash_tag(const char *key, size_t keylen, size_t *start, size_t *len);

/* The canonical tag of a slot: the smallest non-negative integer whose
 * decimal digits hash to slot, so "{<tag>}" names a key (or a sharded
 * channel) in that slot. All tags are below 110000. The table behind it is
 * built on the first call (about 5 ms) and is not thread-safe until then. */
uint32_t inv_slot_tag(unsigned slot);

#endif
