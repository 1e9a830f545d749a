"""Scenario 2: end-to-end latency at a steady 10,000 events/s.

invalctl bench --e2e seeds one key per event, sends key events at a paced
10k events/s through the publisher, and times each key from the moment its
request was buffered to the moment its primary announced the UNLINK
(keyevent notification): publisher batching, the log script, the delivery
to the worker (first-hand on the log's node, through the shard-channel
fast path or the cluster bus elsewhere), the worker and the UNLINK are all
inside the figure. The same load is also run with the fast path off
(--shard-publish no, delivery over the cluster bus only: the design before
it) and on standalone Redis.
"""

import json
import os

import benchlib
from benchlib import PYTHON, Env, log, median

HERE = os.path.dirname(os.path.abspath(__file__))

TITLE = "End-to-end latency at 10k events/s (send to key gone)"


def measure(ctx, env, n, rate, what):
    p50, p99, mx, ack = [], [], [], []
    for i in range(ctx.runs):
        fig, argv = env.bench("-c", 10, "-P", 16, "-n", n, "--rate", rate,
                              "--e2e", "--redis", env.seeds[0],
                              "--key-prefix", f"s2r{i}:", "--wait", 30)
        e2e = fig["e2e"]
        assert e2e["gone"] == n and not fig["errors"], fig
        p50.append(e2e["latency_us"]["p50"])
        p99.append(e2e["latency_us"]["p99"])
        mx.append(e2e["latency_us"]["max"])
        ack.append(fig["ack_latency_us"]["p50"])
        log(f"s2 {what} run {i + 1}: p50 {p50[-1]} us, p99 {p99[-1]} us "
            f"(ack p50 {ack[-1]} us)")
    return p50, p99, mx, ack, argv


def split_by_node(env, n, rate):
    """One run per primary with every key on that primary (a hash tag it
    owns): the primary that owns the log gets the broadcast first-hand,
    the others through the cluster bus. Returns {label: (p50, p99)}."""
    log_node = env.topo.owner_of("cache:invalidation:log")
    out = {}
    for node in env.topo.primaries():
        tag = benchlib.tag_on(env, node)
        fig, _ = env.bench("-c", 10, "-P", 16, "-n", n, "--rate", rate,
                           "--e2e", "--redis", env.seeds[0],
                           "--key-prefix", f"{{{tag}}}:s2:")
        lat = fig["e2e"]["latency_us"]
        label = ("the log's node" if node.port == log_node.port
                 else f"another primary ({len(out)})")
        out[label] = (lat["p50"], lat["p99"])
        log(f"s2 keys on {node.addr} ({label}): p50 {lat['p50']} us, "
            f"p99 {lat['p99']} us")
    return out


def bus_floor(env):
    """Raw Redis PUBLISH -> subscriber latency at 3,000 messages/s, from
    the log's primary to another primary (across the cluster bus) and on
    the same primary: the floor under inval's figures."""
    prim = env.topo.primaries()
    log_node = env.topo.owner_of("cache:invalidation:log")
    other = [n for n in prim if n.port != log_node.port][0]
    out = {}
    for label, sub in (("same node", log_node), ("via bus", other)):
        argv = [PYTHON, os.path.join(HERE, "pubsub_probe.py"), log_node.port,
                sub.port, 3000, 6000]
        res, _ = benchlib.run(argv, timeout=120)
        out[label] = json.loads(res.stdout)
        log(f"s2 raw PUBLISH {label}: {out[label]}")
    return out, argv


def shard_counters(env):
    """Copies taken and passed over by all workers."""
    taken = passed = 0
    for w in env.workers:
        st = benchlib.workerlib.wstats(w)
        taken += st["shard_taken"]
        passed += st["shard_passed"]
    return taken, passed


def run(ctx):
    rate = 10000
    n = max(20000, int(100000 * ctx.scale))
    with Env(ctx.workdir("s2"), publisher_args=ctx.pub_args) as env:
        p50, p99, mx, ack, argv = measure(ctx, env, n, rate, "cluster")
        taken, passed = shard_counters(env)
        by_node = split_by_node(env, n, rate)
        floor, probe_argv = bus_floor(env)
    with Env(ctx.workdir("s2-bus"),
             publisher_args=["--shard-publish", "no"] + ctx.pub_args) as env:
        b50, b99, _, back, _ = measure(ctx, env, n, rate, "bus only")
    # The standalone server has no replica: it keeps the publisher's
    # default (no WAIT), since an ack-replicas above 0 could never be met.
    with Env(ctx.workdir("s2-standalone"), cluster=False) as env:
        s50, s99, _, sack, _ = measure(ctx, env, n, rate, "standalone")
    m50, m99 = median(p50), median(p99)
    return {
        "id": 2, "title": TITLE,
        "rows": [
            {"figure": "e2e p50", "inval": f"{m50 / 1000:.2f} ms",
             "baseline": "", "ratio": None, "target": "<= 0.5 ms",
             "met": m50 <= 500},
            {"figure": "e2e p99", "inval": f"{m99 / 1000:.2f} ms",
             "baseline": "", "ratio": None, "target": "<= 2 ms",
             "met": m99 <= 2000},
            {"figure": "e2e p50 / p99 without the fast path (cluster bus "
                       "only, --shard-publish no)",
             "inval": f"{median(b50) / 1000:.2f} / {median(b99) / 1000:.2f} "
                      "ms", "baseline": "", "ratio": None, "target": "",
             "met": None},
            {"figure": "e2e max (median of runs)",
             "inval": f"{median(mx) / 1000:.1f} ms", "baseline": "",
             "ratio": None, "target": "", "met": None},
            *[{"figure": f"e2e p50 / p99, all keys on one primary: {k}",
               "inval": f"{v[0] / 1000:.2f} / {v[1] / 1000:.2f} ms",
               "baseline": "", "ratio": None, "target": "", "met": None}
              for k, v in sorted(by_node.items())],
            *[{"figure": f"raw Redis PUBLISH to subscriber, {k}, 3k msg/s "
                         "(no inval)",
               "inval": "", "baseline": f"{v['p50'] / 1000:.2f} / "
                                        f"{v['p99'] / 1000:.2f} ms",
               "ratio": None, "target": "", "met": None}
              for k, v in sorted(floor.items())],
            {"figure": "e2e p50 / p99, standalone Redis (same load)",
             "inval": f"{median(s50) / 1000:.2f} / "
                      f"{median(s99) / 1000:.2f} ms", "baseline": "",
             "ratio": None, "target": "", "met": None}],
        "commands": [benchlib.cmdline(argv).replace(f"s2r{ctx.runs - 1}:",
                                                    "s2rN:"),
                     benchlib.cmdline(probe_argv)],
        "notes": [f"{n:,} events per run at {rate:,}/s. Cluster per run: "
                  f"p50 {p50} us, p99 {p99} us, ack p50 {ack} us. "
                  f"Fast path off per run: p50 {b50} us, p99 {b99} us, ack "
                  f"p50 {back} us. "
                  f"Standalone per run: p50 {s50} us, p99 {s99} us, ack p50 "
                  f"{sack} us. Workers took {taken:,} entries from their "
                  f"shard channels and passed over {passed:,} copies (the "
                  "broadcast came first, or intake was busy). No baseline: "
                  "there is no alternative that deletes on every node from "
                  "one send."],
    }
