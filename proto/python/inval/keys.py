"""Key names of the regeneration contract (proto/PROTOCOL.md, "Key
contract") and the Redis Cluster hash slot.

For a value key K the lock key L(K) and the stale copy S(K) are built from
a base B(K): K itself when K has a non-empty hash tag, otherwise "{K}",
which hashes like K. L(K) = B(K) + ":lock" and S(K) = B(K) + ":stale", so
all three live in K's slot and one script can touch them together. When
the rule cannot keep the slot of both names (K = "a}{b" has no tag, but
"{a}{b}" has the tag "a"), a reader works without lock and stale copy;
same_slot() tells which case applies.

Keys are handled as bytes: a str is encoded as UTF-8, as redis-py does
with its default encoding.
"""

import binascii

NUM_SLOTS = 16384
LOCK_SUFFIX = b":lock"
STALE_SUFFIX = b":stale"


def to_bytes(key):
    """The key as bytes: bytes-like values are copied, a str is encoded as
    UTF-8. Raises TypeError for anything else."""
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"a key must be str or bytes, not {type(key).__name__}")


def crc16(data):
    """CRC16-CCITT (XMODEM) of data, the checksum Redis Cluster hashes keys
    with: the standard library's crc_hqx from a zero start value."""
    return binascii.crc_hqx(to_bytes(data), 0)


def hash_tag(key):
    """The key's hash tag as bytes (the bytes between the first '{' and the
    first '}' after it), or None when the key has no non-empty tag."""
    k = to_bytes(key)
    start = k.find(b"{")
    if start < 0:
        return None
    end = k.find(b"}", start + 1)
    if end <= start + 1:
        return None
    return k[start + 1:end]


def key_slot(key):
    """The cluster hash slot (0 ... 16383) of key: the CRC16 of its hash
    tag when it has a non-empty one, else of the whole key."""
    tag = hash_tag(key)
    return crc16(tag if tag is not None else to_bytes(key)) % NUM_SLOTS


def base(key):
    """B(K): K when it has a non-empty hash tag, else b"{" + K + b"}"."""
    k = to_bytes(key)
    return k if hash_tag(k) is not None else b"{" + k + b"}"


def lock_key(key):
    """L(K) = B(K) + b":lock"."""
    return base(key) + LOCK_SUFFIX


def stale_key(key):
    """S(K) = B(K) + b":stale"."""
    return base(key) + STALE_SUFFIX


def same_slot(key):
    """True when L(K) and S(K) both hash to K's slot, so the lock and the
    stale copy may be used; False for keys such as "a}{b", whose wrapped
    base gains a different tag. Both names are checked, as the C side
    does: for an untagged K starting with "}" the base "{}..." has an
    empty tag, so L(K) and S(K) are hashed whole and one of them may land
    in K's slot by chance while the other does not ("}x9069")."""
    slot = key_slot(key)
    return key_slot(lock_key(key)) == slot and key_slot(stale_key(key)) == slot
