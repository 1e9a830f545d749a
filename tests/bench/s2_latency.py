"""Scenario 2: end-to-end latency at a steady 10,000 events/s.

invalctl bench --e2e seeds one key per event, sends key events at a paced
10k events/s through the publisher, and times each key from the moment its
request was buffered to the moment its primary announced the UNLINK
(keyevent notification): publisher batching, the per-shard log script,
the hint (SPUBLISH of the entry id on the shard's node), the worker's
XREADGROUP of the entry, the worker and the UNLINK are all inside the
figure. The same load is also run on standalone Redis.

The cluster figures are taken with the publisher's --ack-replicas 1 (the
default with replicas: each shard write waits for its replica) and 0, in
turn on the same cluster, run for run. With --before-build DIR (run.sh) the
programs of that build (e.g. main's central log) take their turn as well.
"""

import json
import os

import benchlib
from benchlib import PYTHON, Env, log, median

HERE = os.path.dirname(os.path.abspath(__file__))

TITLE = "End-to-end latency at 10k events/s (send to key gone)"


def measure(ctx, env, n, rate, what, runs=None):
    p50, p99, mx, ack = [], [], [], []
    for i in range(ctx.runs if runs is None else runs):
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
    owns), so every entry is logged in a shard on that primary and applied
    by its worker: the primaries should not differ. Returns {label: (p50,
    p99)}."""
    out = {}
    for node in env.topo.primaries():
        tag = benchlib.tag_on(env, node)
        fig, _ = env.bench("-c", 10, "-P", 16, "-n", n, "--rate", rate,
                           "--e2e", "--redis", env.seeds[0],
                           "--key-prefix", f"{{{tag}}}:s2:")
        lat = fig["e2e"]["latency_us"]
        label = f"primary {len(out)} ({node.addr})"
        out[label] = (lat["p50"], lat["p99"])
        log(f"s2 keys on {node.addr} ({label}): p50 {lat['p50']} us, "
            f"p99 {lat['p99']} us")
    return out


def bus_floor(env):
    """Raw Redis PUBLISH -> subscriber latency at 3,000 messages/s, from
    one primary to another (across the cluster bus) and on the same
    primary: the floor under inval's figures."""
    prim = env.topo.primaries()
    src, other = prim[0], prim[1]
    out = {}
    for label, sub in (("same node", src), ("via bus", other)):
        argv = [PYTHON, os.path.join(HERE, "pubsub_probe.py"), src.port,
                sub.port, 3000, 6000]
        res, _ = benchlib.run(argv, timeout=120)
        out[label] = json.loads(res.stdout)
        log(f"s2 raw PUBLISH {label}: {out[label]}")
    return out, argv


def shard_counters(env):
    """Hints received and shard entries acknowledged by all workers."""
    hints = acked = 0
    for w in env.workers:
        st = benchlib.workerlib.wstats(w)
        hints += st["hints"]
        acked += st["entries_acked"]
    return hints, acked


def configs(ctx):
    """(label, build, publisher args) of the cluster's alternating turns."""
    out = [("ack-replicas 1", None, ["--ack-replicas", "1"]),
           ("ack-replicas 0", None, ["--ack-replicas", "0"])]
    if ctx.before:
        out += [("before, ack-replicas 1", ctx.before,
                 ["--ack-replicas", "1"]),
                ("before, ack-replicas 0", ctx.before,
                 ["--ack-replicas", "0"])]
    return out


def run(ctx):
    rate = 10000
    n = max(20000, int(100000 * ctx.scale))
    turns = configs(ctx)
    figs = {label: ([], [], [], []) for label, _, _ in turns}
    with Env(ctx.workdir("s2"), publisher_args=turns[0][2]) as env:
        for i in range(ctx.runs):
            for label, build, args in turns:
                env.use_build(build, args)
                r = measure(ctx, env, n, rate, label, runs=1)
                for acc, v in zip(figs[label], r[:4]):
                    acc.extend(v)
                if label == turns[0][0]:
                    argv = r[4]
        env.use_build(None, turns[0][2])
        by_node = split_by_node(env, n, rate)
        hints, entries = shard_counters(env)
        floor, probe_argv = bus_floor(env)
    # The standalone server has no replica: it keeps the publisher's
    # default (no WAIT), since an ack-replicas above 0 could never be met.
    with Env(ctx.workdir("s2-standalone"), cluster=False) as env:
        s50, s99, _, sack, _ = measure(ctx, env, n, rate, "standalone")
    p50, p99, mx, ack = figs[turns[0][0]]
    m50, m99 = median(p50), median(p99)
    z50, z99 = median(figs["ack-replicas 0"][0]), \
        median(figs["ack-replicas 0"][1])
    per_turn = " ".join(
        f"{label}: p50 {f[0]} us, p99 {f[1]} us, max {f[2]} us, ack p50 "
        f"{f[3]} us." for label, f in figs.items())
    return {
        "id": 2, "title": TITLE,
        "rows": [
            {"figure": "e2e p50 (ack-replicas 1)",
             "inval": f"{m50 / 1000:.2f} ms",
             "baseline": "", "ratio": None, "target": "<= 0.5 ms",
             "met": m50 <= 500},
            {"figure": "e2e p99 (ack-replicas 1)",
             "inval": f"{m99 / 1000:.2f} ms",
             "baseline": "", "ratio": None, "target": "<= 1.5 ms",
             "met": m99 <= 1500},
            {"figure": "e2e p50 (ack-replicas 0)",
             "inval": f"{z50 / 1000:.2f} ms",
             "baseline": "", "ratio": None, "target": "<= 0.5 ms",
             "met": z50 <= 500},
            {"figure": "e2e p99 (ack-replicas 0)",
             "inval": f"{z99 / 1000:.2f} ms",
             "baseline": "", "ratio": None, "target": "<= 1.5 ms",
             "met": z99 <= 1500},
            *[{"figure": f"e2e p50 / p99, the build before, {label[8:]}",
               "inval": "", "baseline":
               f"{median(figs[label][0]) / 1000:.2f} / "
               f"{median(figs[label][1]) / 1000:.2f} ms",
               "ratio": None, "target": "", "met": None}
              for label, _, _ in turns if label.startswith("before")],
            {"figure": "e2e max (median of runs, ack-replicas 1)",
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
        "commands": [benchlib.cmdline(argv).replace("s2r0:", "s2rN:") +
                     "   # publisher --ack-replicas 1, then 0" +
                     ("; then the --before-build tree's programs" if ctx.before
                      else ""),
                     benchlib.cmdline(probe_argv)],
        "notes": [f"{n:,} events per run at {rate:,}/s; turns alternate "
                  f"run for run on one cluster (the publisher and workers "
                  f"restarted for each turn). Per turn and run: {per_turn} "
                  f"Standalone per run: p50 {s50} us, p99 {s99} us, ack p50 "
                  f"{sack} us. Workers (in the per-primary runs) received "
                  f"{hints:,} hints and acknowledged {entries:,} shard "
                  "entries. No baseline: "
                  "there is no alternative that deletes on every node from "
                  "one send."],
    }
