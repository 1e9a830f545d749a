"""cache_check hotkeys (tests/tools/cache_check.c), the stampede load of
benchmark scenario 6, in a short run against real Redis with a real
publisher and worker: 50 readers on 2 hot keys while the test softly
invalidates both every 100 ms.

- Both modes read, and print one complete JSON object whose figures agree
  with each other (every read timed once, per-outcome counts adding up,
  the read path's counters matching in inval mode).
- The read path regenerates far less than plain cache-aside under the
  same invalidations.
- Bad options are usage errors (exit 2).
"""

import json
import subprocess
import time

import pytest

import harness
from regenlib import Invalidator, ev, seeds_arg
from workerlib import Topo, start_workers

KEYS, THREADS, SECONDS = 2, 50, 2
LATENCY_FIELDS = {"count", "p50", "p90", "p99", "max", "mean"}
READ_PATH_FIELDS = {"hits", "misses", "regenerations", "commits", "fenced",
                    "stale_served", "waited", "fallbacks", "regen_errors",
                    "takeovers"}


def hotkeys(topo, *args):
    return [harness.binary("cache_check"), "hotkeys", "-r", seeds_arg(topo),
            *map(str, args)]


def run_under_invalidations(topo, inv, mode):
    """Runs the readers in mode while every hot key is softly invalidated
    every 100 ms; returns the parsed JSON."""
    argv = hotkeys(topo, "--mode", mode, "--threads", THREADS, "--seconds",
                   SECONDS, "--keys", KEYS, "--regen-ms", 20, "--ttl-ms",
                   600000)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stderr.readline().strip() == "ready"
        events = [ev("key", f"hot:{i}", "soft") for i in range(KEYS)]
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            inv.send(*events)
            time.sleep(0.1)
        out, err = p.communicate(timeout=60)
    finally:
        harness.reap(p)
    assert p.returncode == 0, (out, err)
    return json.loads(out)


def check_complete(r, mode):
    assert r["mode"] == mode and r["threads"] == THREADS, r
    assert r["keys"] == KEYS and r["seconds"] == SECONDS, r
    assert r["errors"] == 0 and r["first_error"] is None, r
    assert r["reads"] > 1000, r
    lat = r["latency_us"]
    assert set(lat) == LATENCY_FIELDS, lat
    assert lat["count"] == r["reads"], r
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat
    assert sum(s["count"] for s in r["by_source"].values()) == r["reads"], r
    for s in r["by_source"].values():
        assert set(s) == LATENCY_FIELDS, s
    assert isinstance(r["redirects"], int), r


def test_hotkeys_inval_against_plain(standalone, worker_factory,
                                     publisher_factory):
    topo = Topo(standalone)
    start_workers(topo, worker_factory)
    inv = Invalidator(publisher_factory(topo.seeds))
    try:
        plain = run_under_invalidations(topo, inv, "plain")
        inval = run_under_invalidations(topo, inv, "inval")
    finally:
        inv.close()
    check_complete(plain, "plain")
    check_complete(inval, "inval")

    assert plain["read_path"] is None, plain
    assert set(plain["by_source"]) <= {"hit", "unlocked"}, plain
    assert plain["by_source"]["unlocked"]["count"] == plain["regenerations"]

    rp = inval["read_path"]
    assert set(rp) == READ_PATH_FIELDS, rp
    assert rp["hits"] + rp["misses"] == inval["reads"], rp
    assert rp["regenerations"] == inval["regenerations"], inval
    assert rp["stale_served"] > 0, rp  # soft invalidations: stale copies
    assert set(inval["by_source"]) <= {"hit", "filled", "fenced", "stale",
                                       "waited", "fallback"}, inval
    for name, counter in (("hit", "hits"), ("filled", "commits"),
                          ("fenced", "fenced"), ("stale", "stale_served"),
                          ("waited", "waited"), ("fallback", "fallbacks")):
        got = inval["by_source"].get(name, {"count": 0})["count"]
        assert got == rp[counter], (name, inval)

    # About 20 rounds of 2 invalidated keys: the read path regenerates
    # each about once a round, plain cache-aside once per reader that
    # missed, which with 25 readers per key is most of them.
    assert 0 < inval["regenerations"] * 3 < plain["regenerations"], \
        (inval["regenerations"], plain["regenerations"])


@pytest.mark.parametrize("args", [
    ["--mode", "lru", "--threads", 2, "--seconds", 1, "--keys", 1],
    ["--threads", 2, "--seconds", 1, "--keys", 1],
    ["--mode", "plain", "--threads", 2, "--keys", 1],
    ["--mode", "plain", "--threads", 2, "--seconds", 1],
    ["--mode", "plain", "--threads", 0, "--seconds", 1, "--keys", 1],
    ["--mode", "plain", "--threads", 2, "--seconds", "x", "--keys", 1],
    ["--mode", "plain", "--threads", 2, "--seconds", 1, "--keys", "1k"],
])
def test_hotkeys_usage(standalone, args):
    p = subprocess.run(hotkeys(Topo(standalone), *args), capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert "usage:" in p.stderr and p.stdout == "", p.stderr
