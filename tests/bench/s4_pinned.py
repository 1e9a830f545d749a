"""Scenario 4: a pinned pattern. 100 keys {user:42}:0..99 in a cluster of
1,000,000 keys: the pattern {user:42}:* has a literal hash tag, so only the
owner of that one slot works (CLUSTER GETKEYSINSLOT), against the same
pattern without the pin, user:42:* over 100 keys user:42:0..99, which
every primary must SCAN in full. Both go through inval; each is timed from
the send to DBSIZE showing the 100 keys gone, and the 100 keys are put back
before every run.
"""

import benchlib
from benchlib import Env, log, median

TITLE = "Pinned pattern ({user:42}:* vs user:42:*, 100 keys in 1M)"


def one(env, pattern, keys, prim):
    benchlib.load_keys(env, keys)
    before = benchlib.dbsizes(prim)
    groups = benchlib.group_by_owner(env, keys)
    expected = {n: before[n] - len(groups.get(n, ())) for n in prim}
    t0, _ = benchlib.invalidate(env, [{"kind": "pattern",
                                       "target": pattern}])
    dt = benchlib.wait_dbsize(prim, expected, t0, interval=0.0005)
    for n, ks in groups.items():
        left = sum(n.client().exists(k) for k in ks)
        assert left == 0, f"{left} of the {pattern} keys left on {n.addr}"
    return dt


def run(ctx):
    total = max(10000, int(1000000 * ctx.scale))
    pinned = [f"{{user:42}}:{i}" for i in range(100)]
    plain = [f"user:42:{i}" for i in range(100)]
    filler = [f"item:{i}" for i in range(total - 200)]
    t_pin, t_scan = [], []
    with Env(ctx.workdir("s4")) as env:
        benchlib.warm_up(env)
        benchlib.load_keys(env, filler)
        prim = env.topo.primaries()
        for i in range(ctx.runs):
            t_scan.append(one(env, "user:42:*", plain, prim))
            t_pin.append(one(env, "{user:42}:*", pinned, prim))
            log(f"s4 run {i + 1}: pinned {t_pin[-1] * 1000:.2f} ms, "
                f"full scan {t_scan[-1] * 1000:.1f} ms")
        # The filler must be untouched.
        left = sum(benchlib.dbsizes(prim).values())
    mp, ms = median(t_pin), median(t_scan)
    return {
        "id": 4, "title": TITLE,
        "rows": [{"figure": f"remove 100 keys among {total:,}",
                  "inval": f"pinned {mp * 1000:.2f} ms",
                  "baseline": f"unpinned (full SCAN) {ms * 1000:.0f} ms",
                  "ratio": ms / mp, "target": ">= 100x",
                  "met": ms / mp >= 100}],
        "commands": ["invalctl invalidate --pattern '{user:42}:*'   vs   "
                     "invalctl invalidate --pattern 'user:42:*'  (timed "
                     "from the send over the RPC port to DBSIZE)"],
        "notes": [f"Per run: pinned {[round(x * 1000, 2) for x in t_pin]} "
                  f"ms, full scan {[round(x * 1000, 1) for x in t_scan]} ms. "
                  f"DBSIZE is polled every 0.5 ms, so the pinned figure is "
                  f"good to about a millisecond. {left:,} keys remained "
                  "(the filler plus the log and heartbeat keys)."],
    }
