"""Scenario 10: the ack stall when a primary is killed.

Two clients send one exact-key invalidate request at a time, back to back
(a 2 ms pause after a quick answer, 20 ms after an error), through the
publisher (--redis-timeout 1s): one for keys whose log shard lives on the
victim primary, one for keys whose shards live on the other primaries (as
tests/integration/test_publisher_shards.py's blast-radius test). After 1 s
the victim (the primary of log shard 0; with the central log, the log's
primary) is SIGKILLed; its replica is promoted after the cluster node
timeout (2 s in the harness). Figures: the longest time between two acks
of each client from just before the kill, and the errors (EUNAVAIL) each
saw. No workers run: the figure is the publisher's acks.

Run with cluster-require-full-coverage no (the nodes that still own their
slots keep serving them) and with Redis's default yes (every node answers
CLUSTERDOWN from the failure's detection until the promotion). With
--before-build DIR the programs of that build (e.g. main's central log) are
measured the same way, on a fresh cluster each.
"""

import threading
import time

import benchlib
from benchlib import HOST, Env, log, median
from harness import RpcClient, key_slot

TITLE = "Ack stall when a primary is killed (keys on it vs elsewhere)"

SHARD_SLOTS = 256
LOG_KEY = "cache:invalidation:log"


def keys_on(env, victim, want_on, n, prefix):
    """n keys whose log shard's stream is (want_on) or is not on victim."""
    owners = env.topo.owners()
    out, i = [], 0
    while len(out) < n:
        k = f"{prefix}:{i}"
        shard = key_slot(k) // SHARD_SLOTS
        on = owners[shard * SHARD_SLOTS].port == victim.port
        if on == want_on:
            out.append(k)
        i += 1
    return out


def sender(port, keys, stop, acks, errs):
    c = RpcClient(HOST, port, timeout=10)
    i = 0
    try:
        while not stop.is_set():
            k = keys[i % len(keys)]
            i += 1
            t0 = time.monotonic()
            try:
                err, _ = c.call("invalidate", [{"kind": "key", "target": k}],
                                timeout=10)
            except Exception as e:  # noqa: BLE001 - a dropped connection
                err = {"code": type(e).__name__}
                c.close()
                c = RpcClient(HOST, port, timeout=10)
            t1 = time.monotonic()
            if err is None:
                acks.append(t1)
            else:
                errs.append((t1, err.get("code")))
                time.sleep(0.02)
            if t1 - t0 < 0.002:
                time.sleep(0.002)
    finally:
        c.close()


def worst_gap(times, t_from):
    ts = [t for t in times if t >= t_from - 0.5]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    return max(gaps) if gaps else float("inf")


def one(ctx, build, coverage, i):
    args = () if coverage == "yes" else ("--cluster-require-full-coverage",
                                         "no")
    with Env(ctx.workdir(f"s10-{coverage}-{i}"), workers=False,
             redis_args=args, build=build,
             publisher_args=["--redis-timeout", "1s"]) as env:
        if build is None:
            victim = env.topo.shard_node(0)
        else:
            victim = env.topo.owners()[key_slot(LOG_KEY)]
        doomed = keys_on(env, victim, True, 20, "d")
        healthy = keys_on(env, victim, False, 40, "h")
        stop = threading.Event()
        out = {"h": [], "d": [], "h_err": [], "d_err": []}
        threads = [threading.Thread(target=sender, args=(
            env.publisher.port, keys, stop, out[tag], out[tag + "_err"]))
            for tag, keys in (("h", healthy), ("d", doomed))]
        for t in threads:
            t.start()
        time.sleep(1.0)
        t_kill = time.monotonic()
        env.redis.kill_primary(victim)
        t_healthy = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                t > t_healthy for t in out["d"]):
            time.sleep(0.05)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
    r = {"healthy_gap": worst_gap(out["h"], t_kill),
         "doomed_gap": worst_gap(out["d"], t_kill),
         "promotion": t_healthy - t_kill,
         "h_err": len(out["h_err"]), "d_err": len(out["d_err"]),
         "h_acks": len(out["h"]), "d_acks": len(out["d"])}
    log(f"s10 {'before' if build else 'this build'}, full-coverage "
        f"{coverage}, run {i + 1}: healthy worst gap "
        f"{r['healthy_gap'] * 1000:.0f} ms ({r['h_err']} errors), victim's "
        f"keys {r['doomed_gap'] * 1000:.0f} ms ({r['d_err']} errors), "
        f"promoted and healthy after {r['promotion']:.2f} s")
    return r


def run(ctx):
    builds = benchlib.builds(ctx)
    res = {}
    for i in range(ctx.runs):
        for coverage in ("no", "yes"):
            for label, build in builds:
                res.setdefault((label, coverage), []).append(
                    one(ctx, build, coverage, i))
    rows = []
    order = sorted(res.items(),
                   key=lambda kv: (kv[0][0] != "this build", kv[0][1]))
    for (label, coverage), runs in order:
        hg = median([r["healthy_gap"] for r in runs])
        dg = median([r["doomed_gap"] for r in runs])
        pr = median([r["promotion"] for r in runs])
        mine = label == "this build" and coverage == "no"
        rows.append({
            "figure": f"{label}, cluster-require-full-coverage {coverage}: "
                      "longest wait between acks, keys whose shard is on "
                      "other primaries / on the killed one",
            "inval": f"{hg * 1000:,.0f} ms / {dg * 1000:,.0f} ms",
            "baseline": f"promotion seen after {pr:.1f} s",
            "ratio": None, "target": "others <= 200 ms" if mine else "",
            "met": hg <= 0.2 if mine else None})
    notes = ["Per run: " + "; ".join(
        f"{label}, full-coverage {cov}: " + ", ".join(
            f"[others {r['healthy_gap'] * 1000:.0f} ms, {r['h_acks']} acks, "
            f"{r['h_err']} errors; victim's {r['doomed_gap'] * 1000:.0f} ms, "
            f"{r['d_acks']} acks, {r['d_err']} errors; promotion "
            f"{r['promotion']:.2f} s]" for r in runs)
        for (label, cov), runs in sorted(res.items())) + ".",
        "'promotion seen' is the time from the SIGKILL until the harness "
        "saw the replica promoted and the cluster healthy again (polled "
        "every 0.1 s), an upper bound of the promotion itself. With the "
        "central log (before) the victim is the log's primary, so every "
        "key is 'on the killed one' and the other client stalls as well."]
    return {
        "id": 10, "title": TITLE, "rows": rows,
        "commands": ["invalidate [{key K}] one request at a time per client "
                     "(keys whose shard is on the victim / elsewhere), "
                     "publisher --redis-timeout 1s; SIGKILL of the primary "
                     "of shard 0 after 1 s (tests/bench/s10_failover.py)"],
        "notes": notes,
    }
