"""What Redis holds for one value key, for debugging and tests (the Python
counterpart of `invalctl get`)."""

from dataclasses import dataclass

from . import keys


@dataclass(frozen=True)
class KeyState:
    """The value K, its stale copy S(K) and lock L(K) with their remaining
    TTLs in ms (None when the key is absent, -1 when it has no TTL).
    lock is the holder's token. unlocked keys (their lock cannot share
    their slot) have no S(K) and L(K)."""

    key: bytes
    value: object
    value_ttl_ms: object
    stale: object
    stale_ttl_ms: object
    lock: object
    lock_ttl_ms: object
    unlocked: bool


def _ttl(pttl):
    return None if pttl == -2 else pttl


def inspect(r, key):
    """A KeyState for key, read in one pipelined round trip. Raises
    redis.RedisError when Redis fails."""
    k = keys.to_bytes(key)
    unlocked = not keys.same_slot(k)
    names = [k] if unlocked else [k, keys.stale_key(k), keys.lock_key(k)]
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.get(name)
        pipe.pttl(name)
    out = pipe.execute()
    out += [None, -2] * (3 - len(names))
    return KeyState(k, out[0], _ttl(out[1]), out[2], _ttl(out[3]), out[4],
                    _ttl(out[5]), unlocked)
