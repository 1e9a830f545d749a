"""The Python read path (proto/python/inval/cache.py) against real Redis,
standalone and the 6-node cluster: hits, regeneration with TTL, the
stampede lock (200 concurrent readers, exactly one regeneration, the
others waiting or served the stale copy), fenced commits (the stale-set
race, deterministic and as a randomized stress), a crashed regenerator,
a regenerator that raises, keys whose lock cannot share their slot, and
the key names against Redis's own CLUSTER KEYSLOT.

The package is imported from the source tree."""

import os
import random
import subprocess
import sys
import threading
import time

import pytest

import harness

PKG_DIR = os.path.join(harness.REPO_ROOT, "proto", "python")
sys.path.insert(0, PKG_DIR)

import inval  # noqa: E402
from inval import Counters, get_or_fill  # noqa: E402
from inval import keys as ikeys  # noqa: E402

LONG_MS = 60000  # waits that must never run out on a loaded machine


@pytest.fixture(params=["standalone", "cluster"])
def r(request):
    """A redis.Redis on the module's standalone server, or a
    redis.cluster.RedisCluster on the module's cluster (both flushed)."""
    return request.getfixturevalue(request.param).client()


class Regen:
    """A regenerator that counts its calls and returns value (a callable
    or bytes), after sleeping delay seconds."""

    def __init__(self, value=b"fresh", delay=0.0, then=None):
        self.value = value
        self.delay = delay
        self.then = then
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.then:
            self.then()
        return self.value() if callable(self.value) else self.value


def state(r, key):
    return inval.inspect(r, key)


def test_hit_does_not_regenerate(r):
    r.set(b"user:{1}", b"cached")
    regen = Regen()
    c = Counters()
    res = get_or_fill(r, "user:{1}", 60, regen, counters=c)
    assert res.value == b"cached" and res.source == "hit" and res.hit
    assert not (res.regenerated or res.stale or res.fenced or res.polled)
    assert regen.calls == 0
    assert c.snapshot()["hits"] == 1 and c.snapshot()["misses"] == 0


@pytest.mark.parametrize("key", ["user:{7}:profile", "plain:7", b"bin\x00\xff"])
def test_miss_regenerates_and_commits_with_ttl(r, key):
    regen = Regen(b"v1")
    c = Counters()
    res = get_or_fill(r, key, 30, regen, counters=c)
    assert res.value == b"v1" and res.source == "filled" and res.regenerated
    assert not (res.hit or res.fenced or res.fallback or res.unlocked)
    st = state(r, key)
    assert st.value == b"v1"
    assert 0 < st.value_ttl_ms <= 30000
    assert st.lock is None and st.stale is None
    # The next read is a hit and does not regenerate.
    res2 = get_or_fill(r, key, 30, regen, counters=c)
    assert res2.source == "hit" and res2.value == b"v1" and regen.calls == 1
    snap = c.snapshot()
    assert (snap["misses"], snap["regenerations"], snap["commits"],
            snap["hits"]) == (1, 1, 1, 1)


def test_no_ttl_and_timedelta_ttl(r):
    import datetime
    get_or_fill(r, "nottl", None, Regen(b"a"))
    assert state(r, "nottl").value_ttl_ms == -1
    get_or_fill(r, "td", datetime.timedelta(milliseconds=1500), Regen(b"b"))
    assert 0 < state(r, "td").value_ttl_ms <= 1500


def test_bad_arguments_are_refused_before_redis(r):
    regen = Regen()
    with pytest.raises(ValueError, match="ttl must not be negative"):
        get_or_fill(r, "k", -1, regen)
    with pytest.raises(TypeError, match="ttl must be seconds"):
        get_or_fill(r, "k", "60", regen)
    with pytest.raises(TypeError, match="regen must be callable"):
        get_or_fill(r, "k", 60, b"value")
    with pytest.raises(ValueError, match="lock_ttl_ms must be at least 1"):
        get_or_fill(r, "k", 60, regen, lock_ttl_ms=0)
    with pytest.raises(TypeError, match="a key must be str or bytes"):
        get_or_fill(r, 42, 60, regen)
    with pytest.raises(ValueError, match="the key must not be empty"):
        get_or_fill(r, "", 60, regen)
    with pytest.raises(ValueError, match="backoff_max_ms must be at least 9"):
        get_or_fill(r, "k", 60, regen, backoff_min_ms=9, backoff_max_ms=8)
    assert regen.calls == 0 and r.exists("k", "{k}:lock") == 0


def _stampede(r, key, nreaders, counters, field, count):
    """nreaders threads call get_or_fill on key at once. The regenerator
    takes 50 ms and then also waits (up to 60 s, for a loaded machine)
    until counter field reaches count, so that every reader provably got
    as far as the test needs before the value is committed. Returns
    (results, regenerator)."""
    def until_losers_counted():
        harness.wait_until(
            lambda: counters.snapshot()[field] >= count, 60,
            what=f"counter {field} at {count}")

    regen = Regen(b"new", delay=0.05, then=until_losers_counted)
    barrier = threading.Barrier(nreaders)
    results = [None] * nreaders
    errors = []

    def reader(i):
        try:
            barrier.wait(60)
            results[i] = get_or_fill(r, key, 60, regen, wait_ms=LONG_MS,
                                     lock_ttl_ms=LONG_MS, counters=counters)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,))
               for i in range(nreaders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert all(res is not None for res in results)
    return results, regen


def test_stampede_hard_one_regeneration_others_wait(r):
    key = "hot:{stampede}:hard"
    r.set(key, b"old")
    inval.apply_key(r, key, "hard")
    assert r.exists(key) == 0
    c = Counters()
    # Every reader missed before the value is committed.
    results, regen = _stampede(r, key, 200, c, "misses", 200)
    assert regen.calls == 1
    assert [res.value for res in results] == [b"new"] * 200
    assert sorted(res.source for res in results) == \
        ["filled"] + ["waited"] * 199
    snap = c.snapshot()
    assert snap["regenerations"] == 1 and snap["commits"] == 1
    assert snap["waited"] == 199 and snap["misses"] == 200
    assert snap["fallbacks"] == 0 and snap["fenced"] == 0
    assert snap["stale_served"] == 0
    st = state(r, key)
    assert st.value == b"new" and st.lock is None and st.stale is None


def test_stampede_soft_others_get_stale_copy(r):
    key = "hot:{stampede}:soft"
    r.set(key, b"old")
    assert inval.apply_key(r, key, "soft", grace_ms=LONG_MS)
    st = state(r, key)
    assert st.value is None and st.stale == b"old"
    assert 0 < st.stale_ttl_ms <= LONG_MS
    c = Counters()
    # Every loser was served the stale copy before the value is committed.
    results, regen = _stampede(r, key, 200, c, "stale_served", 199)
    assert regen.calls == 1
    assert sorted((res.source, res.value) for res in results) == \
        [("filled", b"new")] + [("stale", b"old")] * 199
    snap = c.snapshot()
    assert snap["regenerations"] == 1 and snap["stale_served"] == 199
    assert snap["waited"] == 0 and snap["fallbacks"] == 0
    # The commit replaced the stale copy with the new value.
    st = state(r, key)
    assert st.value == b"new" and st.stale is None and st.lock is None


def test_fenced_commit_leaves_cache_untouched(r):
    """Deterministic stale set: the reader takes the lock and loads the
    old value; the source changes and the invalidation deletes the lock;
    another reader caches the new value; then the first reader commits.
    The commit is refused and the cache keeps the new value."""
    key = "acct:{9}"
    source = {"v": b"old"}
    c = Counters()

    def loaded_then_overtaken():
        loaded = source["v"]
        source["v"] = b"new"
        inval.apply_key(r, key, "hard")
        assert state(r, key).lock is None
        other = get_or_fill(r, key, 60, lambda: source["v"], counters=c)
        assert other.source == "filled" and other.value == b"new"
        return loaded

    res = get_or_fill(r, key, 60, loaded_then_overtaken, counters=c)
    assert res.source == "fenced" and res.regenerated and res.value == b"old"
    st = state(r, key)
    assert st.value == b"new" and st.lock is None and st.stale is None
    snap = c.snapshot()
    assert snap["fenced"] == 1 and snap["commits"] == 1


def test_fenced_commit_when_lock_deleted(r):
    key = "acct:{10}"

    def lock_deleted():
        r.delete(ikeys.lock_key(key))

    res = get_or_fill(r, key, 60, Regen(b"loaded", then=lock_deleted))
    assert res.fenced and res.value == b"loaded"
    st = state(r, key)
    assert st.value is None and st.lock is None and st.stale is None


def test_soft_invalidation_during_regeneration_fences(r):
    key = "acct:{11}"
    r.set(ikeys.stale_key(key), b"older")

    def soft_invalidated():
        assert inval.apply_key(r, key, "soft") is False  # K was absent

    res = get_or_fill(r, key, 60, Regen(b"loaded", then=soft_invalidated))
    assert res.fenced
    st = state(r, key)
    assert st.value is None and st.lock is None and st.stale == b"older"


def test_stale_set_randomized_stress(r):
    """1,000 rounds: two readers fill the key while a writer changes the
    source and invalidates (hard or soft). After each round the cache holds
    nothing or the current version, never an older one."""
    key = "stress:{ss}"
    rounds = 1000
    source = {"v": 0}
    rng = random.Random(4)
    barrier = threading.Barrier(3)
    errors = []
    c = Counters()

    def regen():
        v = source["v"]
        if rng.random() < 0.5:
            time.sleep(rng.random() / 1000)
        return str(v).encode()

    def reader():
        try:
            for _ in range(rounds):
                barrier.wait(60)
                get_or_fill(r, key, 60, regen, wait_ms=LONG_MS,
                            lock_ttl_ms=LONG_MS, counters=c)
                barrier.wait(60)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    stale_seen = []
    try:
        for i in range(rounds):
            barrier.wait(60)
            time.sleep(rng.random() / 1000)
            source["v"] = i + 1
            inval.apply_key(r, key, rng.choice(["hard", "soft"]))
            barrier.wait(60)
            cached = r.get(key)
            if cached is not None and cached != str(i + 1).encode():
                stale_seen.append((i, cached))
            assert r.exists(ikeys.lock_key(key)) == 0
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert not stale_seen, stale_seen[:5]
    snap = c.snapshot()
    assert snap["commits"] > 0 and snap["hits"] > 0
    print(f"stale-set stress: {rounds} rounds, {snap['commits']} commits, "
          f"{snap['fenced']} fenced, {snap['stale_served']} stale served")


CRASHER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import redis
import inval
host, port, cluster = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
if cluster:
    from redis.cluster import RedisCluster
    r = RedisCluster(host=host, port=port)
else:
    r = redis.Redis(host=host, port=port)
inval.get_or_fill(r, sys.argv[5], 60, lambda: os._exit(3),
                  lock_ttl_ms=int(sys.argv[6]))
"""


def test_crashed_regenerator_lock_expires(request, r):
    """A process takes the lock and dies inside regen(). Readers meanwhile
    wait and fall back to an uncached regeneration; a reader that waits
    longer than the lock's TTL takes the lock over and commits."""
    key = "crash:{c}"
    is_cluster = "cluster" in request.node.callspec.id
    node = r.get_default_node() if is_cluster else None
    port = node.port if node else r.connection_pool.connection_kwargs["port"]
    lock_ttl = 5000
    p = subprocess.run([sys.executable, "-c", CRASHER, PKG_DIR, harness.HOST,
                        str(port), "1" if is_cluster else "0", key,
                        str(lock_ttl)], capture_output=True, timeout=60)
    assert p.returncode == 3, p.stderr
    st = state(r, key)
    assert st.value is None and st.lock is not None
    assert len(st.lock) == 32 and 0 < st.lock_ttl_ms <= lock_ttl

    c = Counters()
    regen = Regen(b"fallback")
    res = get_or_fill(r, key, 60, regen, wait_ms=50, lock_ttl_ms=lock_ttl,
                      counters=c)
    assert res.source == "fallback" and res.polled
    assert res.value == b"fallback"
    assert c.snapshot()["fallbacks"] == 1
    st = state(r, key)
    assert st.value is None and st.lock is not None  # not cached

    regen2 = Regen(b"recovered")
    res2 = get_or_fill(r, key, 60, regen2, wait_ms=LONG_MS,
                       lock_ttl_ms=lock_ttl, counters=c)
    assert res2.source == "filled" and res2.polled
    assert res2.value == b"recovered" and regen2.calls == 1
    assert c.snapshot()["takeovers"] == 1
    st = state(r, key)
    assert st.value == b"recovered" and st.lock is None


def test_regen_raising_releases_lock(r):
    key = "err:{e}"
    c = Counters()

    def boom():
        assert state(r, key).lock is not None  # we hold it
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        get_or_fill(r, key, 60, boom, counters=c)
    st = state(r, key)
    assert st.lock is None and st.value is None
    assert c.snapshot()["regen_errors"] == 1
    # The next reader takes the lock at once instead of waiting.
    res = get_or_fill(r, key, 60, Regen(b"ok"), wait_ms=0, counters=c)
    assert res.source == "filled" and not res.polled and res.value == b"ok"
    with pytest.raises(TypeError, match="regen\\(\\) must return"):
        get_or_fill(r, "err:{none}", 60, lambda: None)
    assert state(r, "err:{none}").lock is None


def test_unlock_spares_a_lock_taken_since(r):
    key = "err:{steal}"
    lk = ikeys.lock_key(key)

    def stolen_then_fail():
        r.set(lk, b"someone-else")
        raise KeyError("gone")

    with pytest.raises(KeyError):
        get_or_fill(r, key, 60, stolen_then_fail)
    assert r.get(lk) == b"someone-else"


def test_loser_serves_stale_or_waits(r):
    key = "loser:{l}"
    lk, sk = ikeys.lock_key(key), ikeys.stale_key(key)
    r.set(lk, b"holder", px=LONG_MS)
    r.set(sk, b"stale-v", px=LONG_MS)
    regen = Regen(b"mine")
    res = get_or_fill(r, key, 60, regen)
    assert res.stale and res.value == b"stale-v" and regen.calls == 0
    # Without serve_stale the loser waits and then regenerates, uncached.
    c = Counters()
    res = get_or_fill(r, key, 60, regen, serve_stale=False, wait_ms=100,
                      counters=c)
    assert res.source == "fallback" and res.value == b"mine"
    assert regen.calls == 1 and c.snapshot()["fallbacks"] == 1
    assert r.get(key) is None and r.get(lk) == b"holder"
    # A value committed while a loser waits is picked up.
    timer = threading.Timer(0.2, lambda: r.set(key, b"committed"))
    timer.start()
    res = get_or_fill(r, key, 60, regen, serve_stale=False, wait_ms=LONG_MS)
    timer.join()
    assert res.source == "waited" and res.polled
    assert res.value == b"committed"


def test_unlocked_key_works_without_lock(r):
    key = "a}{b"
    assert not inval.same_slot(key)
    regen = Regen(b"v")
    res = get_or_fill(r, key, 20, regen)
    assert res.source == "unlocked" and res.regenerated and res.value == b"v"
    assert 0 < r.pttl(key) <= 20000
    assert r.exists(b"{a}{b}:lock") == 0
    res = get_or_fill(r, key, 20, regen)
    assert res.hit and regen.calls == 1
    assert inval.apply_key(r, key, "soft") is True
    assert r.exists(key) == 0 and r.exists(b"{a}{b}:stale") == 0


# "}x9069": L(K) lands in K's slot by chance, S(K) does not (both are
# hashed whole, since "{}x9069}" has an empty tag).
KEYS = ["user:42", "{user}:42", "a{b}c", "{}x", "x{}", "a}{b", "{a}{b}",
        "{{x}}", "}", "{", b"\xff\x00{\x01}", "ümlaut", "}x9069"]


def test_names_and_slots_agree_with_redis(cluster):
    cl = cluster.client()
    for k in KEYS:
        kb = ikeys.to_bytes(k)
        node = cluster.primaries()[0].client()
        want = node.execute_command("CLUSTER", "KEYSLOT", kb)
        assert ikeys.key_slot(kb) == want == harness.key_slot(kb), k
        lk, sk = ikeys.lock_key(kb), ikeys.stale_key(kb)
        same = (node.execute_command("CLUSTER", "KEYSLOT", lk) == want ==
                node.execute_command("CLUSTER", "KEYSLOT", sk))
        assert ikeys.same_slot(kb) == same, k
        if ikeys.hash_tag(kb) is not None:
            assert lk == kb + b":lock" and sk == kb + b":stale"
        else:
            assert lk == b"{" + kb + b"}:lock"
    assert ikeys.lock_key("user:42") == b"{user:42}:lock"
    assert ikeys.stale_key("{user}:42") == b"{user}:42:stale"
    assert not ikeys.same_slot("a}{b") and not ikeys.same_slot("{}x")
    assert ikeys.key_slot(ikeys.lock_key("}x9069")) == ikeys.key_slot("}x9069")
    assert not ikeys.same_slot("}x9069")
    assert cl.ping()


def test_scripts_reloaded_after_script_flush(r):
    """EVALSHA answered NOSCRIPT (the server lost its script cache, or a
    failover promoted a replica that never saw SCRIPT LOAD): the script is
    loaded again and the commit goes through."""
    get_or_fill(r, "sf:{1}", 60, Regen(b"a"))
    r.script_flush()
    res = get_or_fill(r, "sf:{2}", 60, Regen(b"b"))
    assert res.source == "filled" and r.get("sf:{2}") == b"b"
    assert state(r, "sf:{2}").lock is None
