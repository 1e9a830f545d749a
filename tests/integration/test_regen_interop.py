"""The C read path (tests/tools/cache_check.c) and the Python package
(proto/python, imported from the source tree) on the same keys, standalone
and cluster: both follow one contract, so a reader in either
language sees the other's values, stale copies and locks.

- A value Python commits is a hit for C, and the other way round.
- While C holds the lock (its regenerator paused), a Python reader serves
  the stale copy, or waits and then gets the value C commits; a Python
  reader whose wait runs out regenerates without caching.
- A lock Python takes fences nothing of C's, and C's commit fences a
  Python reader that lost its lock to an invalidation.
"""

import os
import subprocess
import sys

import pytest

import harness
from regenlib import cache_check, client, names, seeds_arg
from workerlib import Topo

sys.path.insert(0, os.path.join(harness.REPO_ROOT, "proto", "python"))
from inval import cache as pycache  # noqa: E402


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def test_values_cross_languages(topo):
    r = client(topo)
    res = pycache.get_or_fill(r, "io:py", 60, lambda: b"from-python")
    assert res.source == "filled"
    rc, out = cache_check("get", topo, "io:py", "-v", "from-c")
    assert rc == 0 and out["source"] == "hit" and out["value"] == "from-python"

    rc, out = cache_check("get", topo, "{io}:c", "-v", "from-c",
                          "--ttl-ms", 60000)
    assert rc == 0 and out["source"] == "filled"
    res = pycache.get_or_fill(r, "{io}:c", 60, lambda: b"from-python")
    assert res.source == "hit" and res.value == b"from-c"


def test_c_lock_seen_by_python(topo):
    r = client(topo)
    key, src = "io:locked", "{io:locked}:src"
    lock, stale = names(key)
    r.set(src, "c-value")
    argv = [harness.binary("cache_check"), "fenced", "-r", seeds_arg(topo),
            "-k", key, "-s", src, "--lock-ttl-ms", "60000"]
    c_reader = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert c_reader.stdout.readline().strip() == "loaded c-value"
        assert len(r.get(lock)) == 32
        # Python loses the lock: no stale copy, the wait runs out.
        res = pycache.get_or_fill(r, key, 60, lambda: b"py", wait_ms=100)
        assert res.source == "fallback" and res.value == b"py"
        assert r.get(key) is None
        # With a stale copy, Python serves it.
        r.set(stale, "old", px=30000)
        res = pycache.get_or_fill(r, key, 60, lambda: b"py", wait_ms=100)
        assert res.source == "stale" and res.value == b"old"
        # C commits: its commit.lua removes the stale copy too.
        out, _ = c_reader.communicate("go\n", timeout=30)
    finally:
        harness.reap(c_reader)
    assert "source filled" in out, out
    assert r.get(key) == b"c-value" and r.get(stale) is None
    assert r.get(lock) is None
    res = pycache.get_or_fill(r, key, 60, lambda: b"py")
    assert res.source == "hit" and res.value == b"c-value"


def test_python_lock_seen_by_c(topo):
    r = client(topo)
    key = "io:pylock"
    lock, stale = names(key)
    state = {}

    def regen():
        # While Python regenerates: C loses the lock and serves the stale
        # copy; then an invalidation deletes the lock.
        state["lock"] = r.get(lock)
        r.set(stale, "older", px=30000)
        state["c"] = cache_check("get", topo, key, "-v", "c")
        r.delete(lock)
        return b"py-stale-load"

    res = pycache.get_or_fill(r, key, 60, regen)
    assert len(state["lock"]) == 32
    rc, out = state["c"]
    assert rc == 0 and out["source"] == "stale" and out["value"] == "older"
    # Python was fenced: the cache stays empty, and C fills it next.
    assert res.source == "fenced" and res.value == b"py-stale-load"
    assert r.get(key) is None
    rc, out = cache_check("get", topo, key, "-v", "c-fresh")
    assert rc == 0 and out["source"] == "filled"
    assert r.get(key) == b"c-fresh" and r.get(stale) is None
