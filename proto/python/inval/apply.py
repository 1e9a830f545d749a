"""The worker's invalidation rule for one value key, applied directly.

inval-worker applies every invalidation event on the Redis node that owns
the key. apply_key() does the same for one key from Python, for tests and
for single-process applications that run without a worker:
  hard  UNLINK K, S(K) and L(K): deleting the lock fences any regeneration
        in flight (its commit is refused).
  soft  soft.lua: move K to S(K) with the grace TTL and delete L(K); when K
        is absent only the lock is deleted.
A key whose lock cannot share its slot has neither lock nor stale copy:
both modes delete K only.
"""

from . import keys, lua

DEFAULT_GRACE_MS = 30000
MODES = ("hard", "soft")


def apply_key(r, key, mode="hard", grace_ms=DEFAULT_GRACE_MS):
    """Invalidates key on r (redis.Redis or redis.cluster.RedisCluster).
    Returns True when the value K existed (deleted or moved to S(K)).
    Raises ValueError for an unknown mode or a grace_ms below 1, and
    redis.RedisError when Redis fails."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (expected hard or soft)")
    if isinstance(grace_ms, bool) or not isinstance(grace_ms, int) or \
            grace_ms < 1:
        raise ValueError(f"grace_ms must be an int of at least 1 "
                         f"(got {grace_ms!r})")
    k = keys.to_bytes(key)
    if not keys.same_slot(k):
        return r.unlink(k) == 1
    lk, sk = keys.lock_key(k), keys.stale_key(k)
    if mode == "soft":
        return lua.script("soft")(keys=[k, lk, sk], args=[grace_ms],
                                  client=r) == 1
    # One round trip: EXISTS and UNLINK of three keys of one slot, in a
    # pipeline. execute_command keeps the UNLINK one command: the cluster
    # client's unlink() would split it by slot, which its pipeline refuses.
    pipe = r.pipeline(transaction=False)
    pipe.execute_command("EXISTS", k)
    pipe.execute_command("UNLINK", k, sk, lk)
    existed, _ = pipe.execute()
    return existed == 1
