"""The C read path (inval/cache.h, driven by tests/tools/cache_check) and
the Python one (proto/python/inval/cache.py) on the same keys, on
standalone Redis and the 6-node cluster: a value committed by one is a hit
for the other, a lock held by one makes the other serve the stale copy or
wait for the holder's value, an invalidation fences a C regeneration while
Python refills the key, and a mixed stampede regenerates exactly once.

The package is imported from the source tree."""

import os
import subprocess
import sys
import threading
import time

import pytest

import harness

sys.path.insert(0, os.path.join(harness.REPO_ROOT, "proto", "python"))

import inval  # noqa: E402
from inval import Counters, get_or_fill  # noqa: E402

LONG_MS = 60000


class Side:
    """The backend as both clients see it: seeds for cache_check, a
    redis-py client, and the node that owns a key."""

    def __init__(self, kind, target):
        self.kind = kind
        self.target = target
        self.seeds = ",".join(target.seeds if kind == "cluster"
                              else [target.addr])
        self.r = target.client()

    def node_for(self, key):
        if self.kind == "cluster":
            return self.target.node_for_key(key)
        return self.target

    def calls(self, key, command):
        """How many times the node owning key has executed command (lower
        case) so far."""
        stats = self.node_for(key).client().info("commandstats")
        return stats.get(f"cmdstat_{command}", {}).get("calls", 0)


@pytest.fixture(params=["standalone", "cluster"])
def side(request):
    return Side(request.param, request.getfixturevalue(request.param))


def parse(out):
    """cache_check's "name value" lines as a dict (and "got" lines as a
    list of (source, value, count))."""
    res = {"got": []}
    for line in out.splitlines():
        name, _, rest = line.partition(" ")
        if name == "got":
            src, val, n = rest.split(" ")  # the tests use values without spaces
            res["got"].append((src, val, int(n)))
        else:
            res.setdefault(name, rest)
    return res


def cache_check(side, mode, key, *args, timeout=120):
    p = subprocess.run([harness.binary("cache_check"), mode, "-r", side.seeds,
                        "-k", key, *map(str, args)], capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, (p.stdout, p.stderr)
    return parse(p.stdout)


def start_cache_check(side, mode, key, *args):
    return subprocess.Popen([harness.binary("cache_check"), mode, "-r",
                             side.seeds, "-k", key, *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


class BlockedRegen:
    """A Python regenerator that holds its lock until released."""

    def __init__(self, value):
        self.value = value
        self.release = threading.Event()
        self.calls = 0

    def __call__(self):
        self.calls += 1
        assert self.release.wait(LONG_MS / 1000)
        return self.value


def run_python_holder(side, key, regen):
    """Starts a Python reader that takes the lock of key and blocks in
    regen; returns (thread, result holder) once the lock is held."""
    out = {}

    def reader():
        out["res"] = get_or_fill(side.r, key, 60, regen, lock_ttl_ms=LONG_MS)

    t = threading.Thread(target=reader)
    t.start()
    harness.wait_until(lambda: inval.inspect(side.r, key).lock is not None,
                       30, what="the Python reader holds the lock")
    return t, out


def test_values_committed_by_one_are_hits_for_the_other(side):
    res = cache_check(side, "get", "ix:{1}", "-v", "from-c", "--ttl-ms", 30000)
    assert res["source"] == "filled" and res["value"] == "from-c"
    called = []
    py = get_or_fill(side.r, "ix:{1}", 30, lambda: called.append(1) or b"x")
    assert py.source == "hit" and py.value == b"from-c" and not called
    assert 0 < side.r.pttl("ix:{1}") <= 30000

    py = get_or_fill(side.r, "ix:2", 30, lambda: b"from-python")
    assert py.source == "filled"
    res = cache_check(side, "get", "ix:2", "-v", "unused")
    assert res["source"] == "hit" and res["value"] == "from-python"
    assert res["stat.regenerations"] == "0"


def test_python_holds_lock_c_serves_stale(side):
    key = "ix:{stale}"
    side.r.set(key, b"old")
    assert inval.apply_key(side.r, key, "soft", grace_ms=LONG_MS)
    regen = BlockedRegen(b"py-new")
    t, out = run_python_holder(side, key, regen)
    try:
        res = cache_check(side, "get", key, "-v", "c-value")
        assert res["source"] == "stale" and res["value"] == "old"
        assert res["stale"] == "1" and res["stat.regenerations"] == "0"
    finally:
        regen.release.set()
        t.join(60)
    assert out["res"].source == "filled"
    st = inval.inspect(side.r, key)
    assert st.value == b"py-new" and st.stale is None and st.lock is None


def test_python_holds_lock_c_waits_for_its_value(side):
    key = "ix:{wait}"
    regen = BlockedRegen(b"py-value")
    t, out = run_python_holder(side, key, regen)
    before = side.calls(key, "mget")
    c = start_cache_check(side, "get", key, "-v", "c-value", "--wait-ms",
                          LONG_MS, "--lock-ttl-ms", LONG_MS)
    try:
        # The C reader lost the lock, found neither value nor stale copy
        # (one MGET) and is polling (one MGET per poll) before the holder
        # commits.
        harness.wait_until(lambda: side.calls(key, "mget") >= before + 3, 30,
                           what="the C reader polling")
    finally:
        regen.release.set()
        t.join(60)
    stdout, stderr = c.communicate(timeout=120)
    assert c.returncode == 0, (stdout, stderr)
    res = parse(stdout)
    assert res["source"] == "waited" and res["value"] == "py-value"
    assert res["stat.regenerations"] == "0" and res["stat.fallbacks"] == "0"
    assert out["res"].source == "filled"
    assert side.r.get(key) == b"py-value"


def test_c_regeneration_fenced_while_python_refills(side):
    """C takes the lock and loads v1; meanwhile a Python reader serves the
    stale copy; the source changes to v2 and the key is invalidated; a
    Python reader fills v2; C's commit is then refused and v2 stays."""
    key, src = "ix:{fence}", "ix:{fence}:source"
    side.r.set(key, b"v0")
    assert inval.apply_key(side.r, key, "soft", grace_ms=LONG_MS)
    side.r.set(src, b"v1")
    c = start_cache_check(side, "fenced", key, "-s", src, "--lock-ttl-ms",
                          LONG_MS)
    try:
        assert c.stdout.readline().strip() == "loaded v1"
        holder = inval.inspect(side.r, key).lock
        assert holder is not None and len(holder) == 32
        py = get_or_fill(side.r, key, 60, lambda: side.r.get(src))
        assert py.source == "stale" and py.value == b"v0"
        side.r.set(src, b"v2")
        assert inval.apply_key(side.r, key, "hard") is False
        py = get_or_fill(side.r, key, 60, lambda: side.r.get(src))
        assert py.source == "filled" and py.value == b"v2"
        c.stdin.write("go\n")
        c.stdin.flush()
        stdout, stderr = c.communicate(timeout=60)
    finally:
        harness.reap(c)
    assert c.returncode == 0, (stdout, stderr)
    res = parse(stdout)
    assert res["source"] == "fenced" and res["value"] == "v1"
    st = inval.inspect(side.r, key)
    assert st.value == b"v2" and st.lock is None and st.stale is None


def test_mixed_stampede_regenerates_once(side):
    key = "ix:{mixed}"
    c = start_cache_check(side, "stampede", key, "-v", "c-won", "--threads",
                          100, "--regen-ms", 1000, "--wait-ms", LONG_MS,
                          "--lock-ttl-ms", LONG_MS)
    py_calls = []

    def regen():
        py_calls.append(1)
        time.sleep(1.0)
        return b"py-won"

    counters = Counters()
    barrier = threading.Barrier(100)
    results = []

    def reader():
        barrier.wait(60)
        results.append(get_or_fill(side.r, key, 60, regen, wait_ms=LONG_MS,
                                   lock_ttl_ms=LONG_MS, counters=counters))

    threads = [threading.Thread(target=reader) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stdout, stderr = c.communicate(timeout=120)
    assert c.returncode == 0, (stdout, stderr)
    res = parse(stdout)
    c_regens = int(res["regenerations"])
    assert c_regens + len(py_calls) == 1, (stdout, py_calls)
    winner = "c-won" if c_regens else "py-won"
    assert len(results) == 100
    assert {r.value for r in results} == {winner.encode()}
    assert {val for _, val, _ in res["got"]} == {winner}
    assert sum(n for _, _, n in res["got"]) == 100
    assert side.r.get(key) == winner.encode()
    print(f"mixed stampede: {winner} regenerated; C outcomes {res['got']}, "
          f"Python {counters.snapshot()}")


def test_both_read_unlocked_keys_without_lock(side):
    """Keys whose lock or stale copy cannot share their slot are read
    without lock by both ("}x9069": only the lock lands in K's slot)."""
    for key in ("a}{b", "}x9069"):
        res = cache_check(side, "get", key, "-v", "c-plain", "--ttl-ms", 30000)
        assert res["source"] == "unlocked" and res["value"] == "c-plain"
        py = get_or_fill(side.r, key, 30, lambda: b"unused")
        assert py.source == "hit" and py.value == b"c-plain"
        side.r.delete(key)
        py = get_or_fill(side.r, key, 30, lambda: b"py-plain")
        assert py.source == "unlocked"
        res = cache_check(side, "get", key, "-v", "unused")
        assert res["source"] == "hit" and res["value"] == "py-plain"
        assert side.r.exists(b"{" + key.encode() + b"}:lock") == 0
