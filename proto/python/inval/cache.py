"""The cache-aside read path with a stampede lock, stale copies and fenced
commits, for redis.Redis and redis.cluster.RedisCluster.

get_or_fill() follows the regeneration contract of proto/PROTOCOL.md:

1. GET K. On a hit, done.
2. On a miss, SET L(K) <token> NX PX <lock_ttl_ms>. The winner calls
   regen() and commits with commit.lua, which writes K (with its TTL) only
   while L(K) still holds the winner's token, and deletes L(K) and S(K).
   A refused commit means an invalidation deleted the lock meanwhile (the
   winner was fenced): the winner gets its fresh value, the cache is left
   alone. When regen() raises, the lock is given up (unlock.lua) and the
   exception propagates.
3. A loser serves S(K), flagged stale, when it exists. Otherwise it polls
   K with jittered exponential backoff for up to wait_ms. When the lock
   disappears without a value (the regenerator failed, was fenced or
   crashed and its lock expired) the loser tries to take the lock itself.
   After wait_ms it calls regen() and returns the value without caching it
   (counted as "uncached").

A key whose lock cannot share its slot (see keys.same_slot) is read
without lock and stale copy: GET, and on a miss regen() and SET with TTL.

Every Redis round trip touches keys of one slot only, so the same code
works against a cluster; redis-py follows MOVED and ASK redirections.
"""

import datetime
import random
import secrets
import threading
import time
from dataclasses import dataclass

import redis

from . import keys, lua

DEFAULT_WAIT_MS = 1000
DEFAULT_LOCK_TTL_MS = 10000
DEFAULT_POLL_MIN_MS = 5
DEFAULT_POLL_MAX_MS = 100


@dataclass(frozen=True)
class FillResult:
    """What get_or_fill() returned and how it got it.

    value is the reply of Redis (bytes, or str with decode_responses) when
    it came from the cache, and regen()'s own return value when this call
    regenerated it. Flags:
      hit          the value came from K (also after waiting: see waited)
      stale        the value is the stale copy S(K)
      regenerated  this call ran regen()
      fenced       regenerated, but the commit was refused (not cached)
      uncached     regenerated after waiting wait_ms, without caching
      waited       this call waited for another reader's regeneration
      lockless     K's lock cannot share its slot: no lock was used
    """

    value: object
    hit: bool = False
    stale: bool = False
    regenerated: bool = False
    fenced: bool = False
    uncached: bool = False
    waited: bool = False
    lockless: bool = False


class Counters:
    """Thread-safe event counters of the read path. FIELDS:
      hits           values served from K (including after waiting)
      misses         GET K found nothing
      stale_served   stale copies served
      regenerations  regen() calls (every kind)
      regen_errors   regen() calls that raised
      commits        commits that wrote K
      fenced         commits refused because the lock was gone
      waits          losers that found no stale copy and waited
      uncached       regenerations after waiting wait_ms, not cached
      lockless       misses on keys whose lock cannot share their slot
    """

    FIELDS = ("hits", "misses", "stale_served", "regenerations",
              "regen_errors", "commits", "fenced", "waits", "uncached",
              "lockless")

    def __init__(self):
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.FIELDS, 0)

    def add(self, name, n=1):
        """Adds n to counter name. Raises KeyError for an unknown name."""
        with self._lock:
            if name not in self._values:
                raise KeyError(f"unknown counter {name!r}")
            self._values[name] += n

    def snapshot(self):
        """A dict copy of every counter, taken atomically."""
        with self._lock:
            return dict(self._values)

    def reset(self):
        """Sets every counter back to zero."""
        with self._lock:
            for name in self._values:
                self._values[name] = 0


# The counters get_or_fill() uses when the caller passes none.
COUNTERS = Counters()


def ttl_to_ms(ttl):
    """A value TTL in milliseconds from seconds (int or float) or a
    datetime.timedelta; None and 0 mean "no TTL" (0). Raises ValueError for
    a negative TTL or one that rounds to 0 ms, TypeError for other types."""
    if ttl is None:
        return 0
    if isinstance(ttl, datetime.timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = ttl
    else:
        raise TypeError("ttl must be seconds (int or float), a timedelta "
                        f"or None, not {type(ttl).__name__}")
    if seconds < 0:
        raise ValueError(f"ttl must not be negative (got {ttl!r})")
    if seconds == 0:
        return 0
    ms = int(round(seconds * 1000))
    if ms < 1:
        raise ValueError(f"ttl {ttl!r} is shorter than 1 ms")
    return ms


def _check_ms(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (milliseconds), not "
                        f"{type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum} (got {value})")


_VALUE_TYPES = (bytes, bytearray, memoryview, str, int, float)


def _call_regen(regen, counters):
    counters.add("regenerations")
    try:
        value = regen()
    except BaseException:
        counters.add("regen_errors")
        raise
    if isinstance(value, bool) or not isinstance(value, _VALUE_TYPES):
        counters.add("regen_errors")
        raise TypeError("regen() must return bytes, str, int or float, not "
                        f"{type(value).__name__}")
    return value


def _unlock(r, lk, token):
    """Gives up the lock if it is still ours. Errors are swallowed: this
    runs while another exception propagates, and the lock expires after
    its TTL anyway."""
    try:
        lua.script("unlock")(keys=[lk], args=[token], client=r)
    except redis.RedisError:
        pass


def _regenerate(r, k, lk, sk, token, ttl_ms, regen, counters, waited):
    """Runs regen() as the lock holder and commits the value."""
    try:
        value = _call_regen(regen, counters)
        committed = lua.script("commit")(keys=[k, lk, sk],
                                         args=[token, value, ttl_ms],
                                         client=r)
    except BaseException:
        _unlock(r, lk, token)
        raise
    if committed == 1:
        counters.add("commits")
        return FillResult(value, regenerated=True, waited=waited)
    counters.add("fenced")
    return FillResult(value, regenerated=True, fenced=True, waited=waited)


def _take_lock(r, lk, lock_ttl_ms):
    """A fresh 128-bit token when SET L(K) NX PX succeeded, else None."""
    token = secrets.token_hex(16)
    return token if r.set(lk, token, nx=True, px=lock_ttl_ms) else None


def get_or_fill(r, key, ttl, regen, *, wait_ms=DEFAULT_WAIT_MS,
                lock_ttl_ms=DEFAULT_LOCK_TTL_MS, serve_stale=True,
                poll_min_ms=DEFAULT_POLL_MIN_MS,
                poll_max_ms=DEFAULT_POLL_MAX_MS, counters=None):
    """Reads key through the cache, regenerating it at most once across
    concurrent readers. Returns a FillResult.

    r is a redis.Redis or redis.cluster.RedisCluster; key is str or bytes
    (str is encoded as UTF-8). ttl is the value's TTL in seconds (int or
    float) or a timedelta; None or 0 store it without TTL. regen() takes no
    arguments and returns the fresh value as bytes, str, int or float.
    wait_ms bounds how long a loser waits for another reader's value;
    lock_ttl_ms is the lock's lifetime, which must cover a regeneration
    (a crashed regenerator blocks others for at most that long).
    serve_stale=False makes losers wait even when a stale copy exists.
    Losers poll every poll_min_ms at first, doubling up to poll_max_ms,
    each sleep drawn uniformly from its upper half.

    Raises TypeError or ValueError for bad arguments (before touching
    Redis), whatever regen() raises (after giving up the lock), and
    redis.RedisError when Redis fails."""
    k = keys.to_bytes(key)
    ttl_ms = ttl_to_ms(ttl)
    if not callable(regen):
        raise TypeError("regen must be callable")
    _check_ms("wait_ms", wait_ms, 0)
    _check_ms("lock_ttl_ms", lock_ttl_ms, 1)
    _check_ms("poll_min_ms", poll_min_ms, 1)
    _check_ms("poll_max_ms", poll_max_ms, poll_min_ms)
    c = counters if counters is not None else COUNTERS

    value = r.get(k)
    if value is not None:
        c.add("hits")
        return FillResult(value, hit=True)
    c.add("misses")

    if not keys.same_slot(k):
        c.add("lockless")
        value = _call_regen(regen, c)
        r.set(k, value, px=ttl_ms or None)
        return FillResult(value, regenerated=True, lockless=True)

    lk, sk = keys.lock_key(k), keys.stale_key(k)
    token = _take_lock(r, lk, lock_ttl_ms)
    if token is not None:
        return _regenerate(r, k, lk, sk, token, ttl_ms, regen, c, False)

    # Another reader regenerates. The value may have been committed since
    # our GET; otherwise serve the stale copy if there is one.
    if serve_stale:
        value, stale = r.mget(k, sk)
    else:
        value, stale = r.get(k), None
    if value is not None:
        c.add("hits")
        return FillResult(value, hit=True)
    if stale is not None:
        c.add("stale_served")
        return FillResult(stale, stale=True)
    return _wait(r, k, lk, sk, ttl_ms, regen, c, wait_ms, lock_ttl_ms,
                 serve_stale, poll_min_ms, poll_max_ms)


def _wait(r, k, lk, sk, ttl_ms, regen, c, wait_ms, lock_ttl_ms, serve_stale,
          poll_min_ms, poll_max_ms):
    """A loser's bounded wait: polls K, L(K) (and S(K)) in one MGET with
    jittered exponential backoff, takes the lock over when it vanished
    without a value, and regenerates without caching after wait_ms."""
    c.add("waits")
    deadline = time.monotonic() + wait_ms / 1000.0
    delay = poll_min_ms / 1000.0
    polled = [k, lk, sk] if serve_stale else [k, lk]
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(remaining, random.uniform(delay / 2, delay)))
        delay = min(delay * 2, poll_max_ms / 1000.0)
        found = r.mget(polled)
        if found[0] is not None:
            c.add("hits")
            return FillResult(found[0], hit=True, waited=True)
        if serve_stale and found[2] is not None:
            c.add("stale_served")
            return FillResult(found[2], stale=True, waited=True)
        if found[1] is None:
            token = _take_lock(r, lk, lock_ttl_ms)
            if token is not None:
                return _regenerate(r, k, lk, sk, token, ttl_ms, regen, c,
                                   True)
    c.add("uncached")
    value = _call_regen(regen, c)
    return FillResult(value, regenerated=True, uncached=True, waited=True)
