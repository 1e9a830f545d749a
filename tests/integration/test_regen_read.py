"""The C read path against real Redis, standalone and cluster,
with invalidations sent through a real publisher and applied by real
workers. The read path runs in tests/tools/cache_check.c (regenerators,
threads, each thread with its own connections).

- Stampede: 200 concurrent readers right after the hot key's invalidation,
  with a 50 ms regenerator: exactly one regeneration; in soft mode the
  others get the stale copy (or, once committed, the new value); in hard
  mode they wait and get the new value.
- Stale set, deterministic: a reader takes the lock and loads the old
  value; the source changes and the invalidation is applied; the commit is
  refused and the cache never holds the old value.
- Stale set, randomized: 1,000 rounds of write + invalidate while readers
  with slow regenerators hammer the key; after every applied invalidation
  the cache holds nothing older than the write.
- A crashed regenerator (lock taken, never committed): another reader
  regenerates once the lock expires; a reader whose wait runs out first
  regenerates without caching; a failing regenerator gives the lock back.
"""

import random
import re
import subprocess
import time

import pytest

import harness
from regenlib import (Invalidator, cache_check, client, ev, names, seeds_arg,
                      worker_for)
from workerlib import Topo, start_workers


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def setup_service(topo, worker_factory, publisher_factory, *worker_args):
    workers = start_workers(topo, worker_factory, *worker_args)
    pub = publisher_factory(topo.seeds)
    return workers, Invalidator(pub)


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_stampede(topo, mode, worker_factory, publisher_factory):
    key = "hot:profile:7"
    lock, stale = names(key)
    r = client(topo)
    workers, inv = setup_service(topo, worker_factory, publisher_factory,
                                 "--stale-grace", "60s")
    r.set(key, "old")
    inv.wait(worker_for(topo, workers, key), inv.send(ev("key", key, mode)))
    assert r.get(key) is None
    assert r.get(lock) is None
    if mode == "soft":
        assert r.get(stale) == b"old"
        assert 0 < r.pttl(stale) <= 60000
    else:
        assert r.get(stale) is None

    rc, out = cache_check("stampede", topo, key, "-v", "new", "--threads",
                          200, "--regen-ms", 50, "--wait-ms", 30000)
    assert rc == 0 and not out["errors"], out
    assert out["regenerations"] == 1, out
    assert out["stat.regenerations"] == 1 and out["stat.commits"] == 1, out
    got = out["got"]
    assert got.get(("filled", "new")) == 1, got
    assert sum(got.values()) == 200, got
    assert out["stat.fallbacks"] == 0 and out["stat.fenced"] == 0, out
    if mode == "soft":
        # Everyone else got the stale copy, or the new value once it was
        # committed; never anything else.
        assert set(got) <= {("filled", "new"), ("stale", "old"),
                            ("hit", "new"), ("waited", "new")}, got
        assert got.get(("stale", "old"), 0) > 0, got
        assert out["stat.stale_served"] == got.get(("stale", "old"), 0)
    else:
        assert set(got) <= {("filled", "new"), ("waited", "new"),
                            ("hit", "new")}, got
        assert got.get(("waited", "new"), 0) > 0, got
        assert out["stat.stale_served"] == 0, out
    # The commit wrote K and removed the lock and the stale copy.
    assert r.get(key) == b"new"
    assert r.get(lock) is None and r.get(stale) is None
    inv.close()


def start_fenced_reader(topo, key, src):
    argv = [harness.binary("cache_check"), "fenced", "-r", seeds_arg(topo),
            "-k", key, "-s", src, "--lock-ttl-ms", 60000]
    return subprocess.Popen(list(map(str, argv)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_stale_set_deterministic(topo, mode, worker_factory,
                                 publisher_factory):
    key = "acct:{42}:balance"
    src = "src:{42}:balance"
    lock, stale = names(key)
    r = client(topo)
    workers, inv = setup_service(topo, worker_factory, publisher_factory)
    w = worker_for(topo, workers, key)
    r.set(src, "100")
    reader = start_fenced_reader(topo, key, src)
    try:
        # 1. The reader missed, took the lock and loaded the old value.
        assert reader.stdout.readline().strip() == "loaded 100"
        token = r.get(lock)
        assert token is not None and re.fullmatch(rb"[0-9a-f]{32}", token)
        # 2. The source changes, then its invalidation is applied.
        r.set(src, "50")
        inv.wait(w, inv.send(ev("key", key, mode)))
        assert r.get(lock) is None, "the invalidation must delete the lock"
        # 3. The reader commits what it loaded: refused.
        out, err = reader.communicate("go\n", timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err
    assert "source fenced" in out and "value 100" in out, out
    assert "stat.fenced 1" in out and "stat.commits 0" in out, out
    # The cache never holds the old value.
    assert r.get(key) is None
    assert r.get(lock) is None and r.get(stale) is None
    # The next reader fills it from the new source.
    rc, res = cache_check("get", topo, key, "-v", "50")
    assert rc == 0 and res["source"] == "filled", res
    assert r.get(key) == b"50"
    inv.close()


def test_stale_set_randomized(topo, worker_factory, publisher_factory):
    rounds = 1000
    key = "stress:item"
    src = "{stress:item}:source"
    r = client(topo)
    workers, inv = setup_service(topo, worker_factory, publisher_factory)
    w = worker_for(topo, workers, key)
    r.set(src, "0")
    argv = [harness.binary("cache_check"), "readers", "-r", seeds_arg(topo),
            "-k", key, "-s", src, "--threads", 4, "--regen-max-ms", 6,
            "--lock-ttl-ms", 30000, "--wait-ms", 5000]
    readers = subprocess.Popen(list(map(str, argv)), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    rng = random.Random(4242)
    violations = []

    def check(floor, when):
        v = r.get(key)
        if v is not None and int(v) < floor:
            violations.append((when, floor, int(v)))

    try:
        for i in range(1, rounds + 1):
            check(i - 1, f"before write {i}")
            r.set(src, str(i))
            mode = rng.choice(["hard", "soft"])
            inv.wait(w, inv.send(ev("key", key, mode)))
            check(i, f"after invalidation {i} ({mode})")
            if rng.random() < 0.3:
                time.sleep(rng.random() * 0.005)
        out, err = readers.communicate("", timeout=60)
    finally:
        if readers.poll() is None:
            readers.kill()
            readers.wait()
    assert readers.returncode == 0, err
    assert not violations, f"stale values survived: {violations[:10]}"
    stats = dict(line.split(" ") for line in out.splitlines()
                 if line.startswith("stat."))
    # The race was exercised: some regenerations were fenced.
    assert int(stats["stat.fenced"]) > 0, out
    assert int(stats["stat.commits"]) > 0, out
    # Quiet again: whatever is cached is the last value.
    v = r.get(key)
    assert v is None or int(v) == rounds
    inv.close()


def test_crashed_regenerator(topo):
    key = "crash:1"
    lock, _ = names(key)
    r = client(topo)
    # A reader took the lock and died: nobody commits.
    r.set(lock, "0123456789abcdef0123456789abcdef", px=1500)
    t0 = time.monotonic()
    rc, out = cache_check("get", topo, key, "-v", "fresh", "--wait-ms", 20000)
    took = time.monotonic() - t0
    assert rc == 0, out
    assert out["source"] == "filled" and out["value"] == "fresh", out
    assert out["stat.takeovers"] == 1 and out["stat.regenerations"] == 1, out
    assert took >= 1.0, f"regenerated before the lock expired ({took:.2f}s)"
    assert r.get(key) == b"fresh" and r.get(lock) is None

    # A reader whose wait runs out first regenerates without caching.
    key2 = "crash:2"
    lock2, _ = names(key2)
    r.set(lock2, "0123456789abcdef0123456789abcdef", px=60000)
    rc, out = cache_check("get", topo, key2, "-v", "mine", "--wait-ms", 200)
    assert rc == 0 and out["source"] == "fallback" and out["value"] == "mine"
    assert out["stat.fallbacks"] == 1, out
    assert r.get(key2) is None
    assert r.get(lock2) == b"0123456789abcdef0123456789abcdef"


def test_regenerator_failure_and_stale_flag(topo):
    key = "fail:1"
    lock, stale = names(key)
    r = client(topo)
    rc, out = cache_check("get", topo, key, "--fail")
    assert rc == 1 and out["errors"] == ["EIO"], out
    assert out["stat.regen_errors"] == 1, out
    # The lock was given back: the next reader regenerates at once.
    assert r.get(lock) is None and r.get(key) is None
    # A loser returns the stale copy, flagged, and leaves it in place.
    r.set(stale, "older")
    r.set(lock, "ffffffffffffffffffffffffffffffff", px=60000)
    rc, out = cache_check("get", topo, key, "-v", "x")
    assert rc == 0 and out["source"] == "stale" and out["stale"] == "1", out
    assert out["value"] == "older"
    # --no-stale waits instead, then falls back.
    rc, out = cache_check("get", topo, key, "-v", "x", "--no-stale",
                          "--wait-ms", 100)
    assert rc == 0 and out["source"] == "fallback", out
    # A key whose names cannot keep its slot is read and filled unlocked.
    odd = "a}{b"
    assert names(odd) is None
    rc, out = cache_check("get", topo, odd, "-v", "plain", "--ttl-ms", 60000)
    assert rc == 0 and out["source"] == "unlocked", out
    assert r.get(odd) == b"plain" and 0 < r.pttl(odd) <= 60000
    rc, out = cache_check("get", topo, odd, "-v", "other")
    assert out["source"] == "hit" and out["value"] == "plain", out
