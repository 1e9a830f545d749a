"""Scenario 11: the fan-out cost of an unpinned prefix or pattern.

In a cluster an unpinned prefix or pattern (no leading hash tag) goes to
every one of the 64 log shards: one shard write (EVALSHA, and WAIT with
ack-replicas 1) per shard, spread over the primaries, against one for an
exact key. One client sends requests one at a time through the publisher
(no pipelining, so that each request is its own batch): blocks of exact-key
requests and of unpinned-pattern requests in turn. Figures: the ack latency
of each kind (p50 / p99) and the Redis CPU every request costs, from the
CPU time of every redis-server (primaries and replicas) over the block,
less the idle rate measured over 2 s before it. No workers run, so the CPU
is the writes' (and the replication's), not the pattern's SCAN, which the
workers pay separately (scenarios 3 and 8). With --before-build DIR the
programs of that build (e.g. main's central log: one write for either
kind) take their turn on the same cluster.
"""

import time

import benchlib
from benchlib import HOST, Env, log
from harness import RpcClient

TITLE = "Fan-out cost of an unpinned pattern (64 shard writes) vs an exact key"

IDLE_S = 2.0


def redis_cpu(env):
    return sum(benchlib.cpu_seconds(n.pid) for n in env.topo.nodes())


def block(env, kind, count, tag):
    """Sends count requests of kind one at a time; returns (latencies in
    us, Redis CPU us per request)."""
    with RpcClient(HOST, env.publisher.port, timeout=30) as c:
        c.call("ping")
        c0 = redis_cpu(env)
        time.sleep(IDLE_S)
        c1 = redis_cpu(env)
        lat = []
        t_start = time.monotonic()
        for i in range(count):
            if kind == "key":
                e = {"kind": "key", "target": f"{tag}:k:{i}"}
            else:
                e = {"kind": "pattern", "target": f"{tag}:p{i}:*"}
            t0 = time.monotonic()
            err, _ = c.call("invalidate", [e])
            lat.append((time.monotonic() - t0) * 1e6)
            assert err is None, err
        wall = time.monotonic() - t_start
        c2 = redis_cpu(env)
    idle = (c1 - c0) * wall / IDLE_S
    return lat, max(0.0, c2 - c1 - idle) * 1e6 / count


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def run(ctx):
    count = max(100, int(1000 * ctx.scale))
    builds = benchlib.builds(ctx)
    res = {}
    with Env(ctx.workdir("s11"), workers=False,
             publisher_args=ctx.pub_args) as env:
        for i in range(ctx.runs):
            for label, build in builds:
                if env.build != build:
                    env.use_build(build)
                for kind in ("key", "pattern"):
                    lat, cpu = block(env, kind, count, f"s11r{i}")
                    r = (pct(lat, 50), pct(lat, 99), cpu)
                    res.setdefault((label, kind), []).append(r)
                    log(f"s11 {label} {kind} run {i + 1}: ack p50 "
                        f"{r[0]:.0f} us, p99 {r[1]:.0f} us, Redis CPU "
                        f"{r[2]:.0f} us/request")

    rows = []
    for label, _ in builds:
        k = benchlib.medians(res[(label, "key")])
        p = benchlib.medians(res[(label, "pattern")])
        rows += [{
            "figure": f"{label}: Redis CPU per request, unpinned pattern vs "
                      "exact key (every node, replicas included)",
            "inval": f"{p[2]:,.0f} us",
            "baseline": f"exact key {k[2]:,.0f} us",
            "ratio": p[2] / k[2] if k[2] else None, "target": "report",
            "met": None}, {
            "figure": f"{label}: ack latency p50 / p99, unpinned pattern vs "
                      "exact key (one request at a time)",
            "inval": f"{p[0] / 1000:.2f} / {p[1] / 1000:.2f} ms",
            "baseline": f"exact key {k[0] / 1000:.2f} / {k[1] / 1000:.2f} ms",
            "ratio": p[0] / k[0] if k[0] else None, "target": "report",
            "met": None}]
    return {
        "id": 11, "title": TITLE, "rows": rows,
        "commands": [f"invalidate [{{key s11rN:k:I}}] x {count}, then "
                     f"[{{pattern s11rN:pI:*}}] x {count}, one request at a "
                     "time over the RPC port (tests/bench/s11_fanout.py); "
                     "Redis CPU from /proc/<pid>/stat of every node"],
        "notes": [f"{count} requests per block; per run (ack p50 us, p99 us, "
                  "Redis CPU us/request): " + "; ".join(
                      f"{label} {kind}: "
                      f"{[tuple(round(x) for x in r) for r in runs]}"
                      for (label, kind), runs in sorted(res.items())) +
                  ". The publisher's ack-replicas: " +
                  (ctx.ack_replicas or "its default (1 with replicas)") +
                  "; above 0, every shard write is followed by a WAIT."],
    }
