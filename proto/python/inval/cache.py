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
   The SET NX and a read of K and S(K) go in one pipelined round trip: a
   winner that finds K was committed just before its SET NX returns that
   value and gives the lock back instead of regenerating twice.
3. A loser serves S(K), flagged stale, when it exists. Otherwise it polls
   K with jittered exponential backoff for up to wait_ms. When the lock
   disappears without a value (the regenerator failed, was fenced or
   crashed and its lock expired) the loser tries to take the lock itself.
   After wait_ms it calls regen() and returns the value without caching it
   (counted as a fallback).

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

# The defaults of the C read path (inval/cache.h), so that readers in both
# languages behave alike on the same keys.
DEFAULT_WAIT_MS = 1000
DEFAULT_LOCK_TTL_MS = 5000
DEFAULT_BACKOFF_MIN_MS = 2
DEFAULT_BACKOFF_MAX_MS = 50

# Where a value came from; the names of inv_cache_source_name() in C.
SOURCES = ("hit", "filled", "fenced", "stale", "waited", "fallback",
           "unlocked")


@dataclass(frozen=True)
class FillResult:
    """What get_or_fill() returned and where it came from.

    value is the reply of Redis (bytes, or str with decode_responses) when
    it came from the cache, and regen()'s own return value when this call
    regenerated it. source is one of SOURCES:
      hit       GET K answered at once
      filled    this call regenerated the value and committed it
      fenced    this call regenerated it, but the commit was refused
                because an invalidation deleted the lock (not cached)
      stale     the stale copy S(K), while another reader regenerates
      waited    another reader's fresh value, found after losing the lock
      fallback  regenerated after waiting wait_ms in vain (not cached)
      unlocked  K's lock cannot share its slot: regenerated and SET
                without lock
    polled is true when this call waited in the polling loop (a reader
    that took the lock over from a crashed holder has source "filled" and
    polled true). The boolean properties group the sources."""

    value: object
    source: str
    polled: bool = False

    @property
    def hit(self):
        """The value came from K (at once or after waiting)."""
        return self.source in ("hit", "waited")

    @property
    def stale(self):
        return self.source == "stale"

    @property
    def regenerated(self):
        """This call ran regen()."""
        return self.source in ("filled", "fenced", "fallback", "unlocked")

    @property
    def fenced(self):
        return self.source == "fenced"

    @property
    def fallback(self):
        """Regenerated without caching after the wait ran out."""
        return self.source == "fallback"

    @property
    def unlocked(self):
        return self.source == "unlocked"


class Counters:
    """Thread-safe counters of the read path, named as the fields of
    inv_cache_stats_t in C:
      hits           GET K answered at once
      misses         GET K was empty on the first try
      regenerations  regen() calls, fallbacks included
      commits        values written to K (commit.lua, or SET when unlocked)
      fenced         commits refused because the lock was gone
      stale_served   stale copies returned
      waited         another reader's fresh value returned
      fallbacks      losers that gave up waiting and regenerated
      regen_errors   regen() calls that raised (the lock was given back)
      takeovers      losers that took the lock while polling
    """

    FIELDS = ("hits", "misses", "regenerations", "commits", "fenced",
              "stale_served", "waited", "fallbacks", "regen_errors",
              "takeovers")

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
    often runs while another exception propagates, and the lock expires
    after its TTL anyway."""
    try:
        lua.script("unlock")(keys=[lk], args=[token], client=r)
    except redis.RedisError:
        pass


def _regenerate(r, k, lk, sk, token, ttl_ms, regen, c, polled):
    """Runs regen() as the lock holder and commits the value."""
    try:
        value = _call_regen(regen, c)
        committed = lua.script("commit")(keys=[k, lk, sk],
                                         args=[token, value, ttl_ms],
                                         client=r)
    except BaseException:
        _unlock(r, lk, token)
        raise
    if committed == 1:
        c.add("commits")
        return FillResult(value, "filled", polled)
    c.add("fenced")
    return FillResult(value, "fenced", polled)


def _attempt(r, k, lk, sk, lock_ttl_ms, serve_stale):
    """SET L(K) <fresh token> NX PX, then MGET K (and S(K)), in one
    pipelined round trip. Returns (token or None when the lock is held by
    another reader, K's value, S(K)'s value or None). Reading K after the
    SET tells a winner whether the previous holder committed between our
    first GET and our SET NX (its commit deleted its lock)."""
    token = secrets.token_hex(16)
    pipe = r.pipeline(transaction=False)
    pipe.set(lk, token, nx=True, px=lock_ttl_ms)
    if serve_stale:
        pipe.execute_command("MGET", k, sk)
    else:
        pipe.execute_command("MGET", k)
    won, found = pipe.execute()
    return (token if won else None), found[0], \
        (found[1] if serve_stale else None)


def get_or_fill(r, key, ttl, regen, *, wait_ms=DEFAULT_WAIT_MS,
                lock_ttl_ms=DEFAULT_LOCK_TTL_MS, serve_stale=True,
                backoff_min_ms=DEFAULT_BACKOFF_MIN_MS,
                backoff_max_ms=DEFAULT_BACKOFF_MAX_MS, counters=None):
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
    Losers poll after backoff_min_ms at first, doubling up to
    backoff_max_ms, each sleep drawn uniformly from the upper half.
    counters (a Counters) defaults to the module's COUNTERS.

    Raises TypeError or ValueError for bad arguments (before touching
    Redis), whatever regen() raises (after giving up the lock), and
    redis.RedisError when Redis fails."""
    k = keys.to_bytes(key)
    if not k:
        raise ValueError("the key must not be empty")
    ttl_ms = ttl_to_ms(ttl)
    if not callable(regen):
        raise TypeError("regen must be callable")
    _check_ms("wait_ms", wait_ms, 0)
    _check_ms("lock_ttl_ms", lock_ttl_ms, 1)
    _check_ms("backoff_min_ms", backoff_min_ms, 1)
    _check_ms("backoff_max_ms", backoff_max_ms, backoff_min_ms)
    c = counters if counters is not None else COUNTERS

    value = r.get(k)
    if value is not None:
        c.add("hits")
        return FillResult(value, "hit")
    c.add("misses")

    if not keys.same_slot(k):
        value = _call_regen(regen, c)
        r.set(k, value, px=ttl_ms or None)
        c.add("commits")
        return FillResult(value, "unlocked")

    lk, sk = keys.lock_key(k), keys.stale_key(k)
    found = _attempt(r, k, lk, sk, lock_ttl_ms, serve_stale)
    res = _resolve(r, k, lk, sk, ttl_ms, regen, c, found, False)
    if res is not None:
        return res
    return _wait(r, k, lk, sk, ttl_ms, regen, c, wait_ms, lock_ttl_ms,
                 serve_stale, backoff_min_ms, backoff_max_ms)


def _resolve(r, k, lk, sk, ttl_ms, regen, c, found, polled):
    """Acts on what _attempt() found; None means "wait"."""
    token, value, stale = found
    if value is not None:
        if token is not None:
            _unlock(r, lk, token)
        c.add("waited")
        return FillResult(value, "waited", polled)
    if token is not None:
        if polled:
            c.add("takeovers")
        return _regenerate(r, k, lk, sk, token, ttl_ms, regen, c, polled)
    if stale is not None:
        c.add("stale_served")
        return FillResult(stale, "stale", polled)
    return None


def _wait(r, k, lk, sk, ttl_ms, regen, c, wait_ms, lock_ttl_ms, serve_stale,
          backoff_min_ms, backoff_max_ms):
    """A loser's bounded wait: polls K, L(K) (and S(K)) in one MGET with
    jittered exponential backoff, tries the lock again when it vanished
    without a value (its holder crashed and the lock expired, or it was
    fenced), and regenerates without caching after wait_ms."""
    deadline = time.monotonic() + wait_ms / 1000.0
    delay = backoff_min_ms / 1000.0
    polled = [k, lk, sk] if serve_stale else [k, lk]
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(remaining, random.uniform(delay / 2, delay)))
        delay = min(delay * 2, backoff_max_ms / 1000.0)
        found = r.execute_command("MGET", *polled)
        if found[0] is not None:
            c.add("waited")
            return FillResult(found[0], "waited", True)
        if serve_stale and found[2] is not None:
            c.add("stale_served")
            return FillResult(found[2], "stale", True)
        if found[1] is None:
            res = _resolve(r, k, lk, sk, ttl_ms, regen, c,
                           _attempt(r, k, lk, sk, lock_ttl_ms, serve_stale),
                           True)
            if res is not None:
                return res
    c.add("fallbacks")
    value = _call_regen(regen, c)
    return FillResult(value, "fallback", True)
