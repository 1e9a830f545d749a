"""Scenario 9: each primary's CPU per event, 3 primaries against 6.

A fixed total load (10,000 key events/s for 20 s, one key per event, keys
spread over every slot, invalctl bench --rate) goes through the publisher
to a cluster of N primaries with a replica each and a worker per node, for
N = 3 and then 6. The CPU time every redis-server and every worker used
during the load (user + system, /proc/<pid>/stat) is divided by the events
sent: microseconds per event. The cluster's idle CPU (cron, cluster bus
pings, heartbeats) is measured over 5 s before the load, scaled to its
length, and subtracted, so that the figure is the cost of the events.

With the sharded log a primary holds 64/N shards and receives only their
entries, so each node's cost should fall as nodes are added; with the
central log (--before-build DIR, e.g. main's) one primary logs every event
and every worker reads every entry. Both builds run in turn on the same
cluster, run for run.
"""

import time

import benchlib
from benchlib import Env, log

TITLE = "CPU per event on each primary, 3 vs 6 primaries (10k events/s)"

IDLE_S = 5.0


def cpu_of(pids):
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = benchlib.cpu_seconds(pid)
        except OSError:
            out[name] = 0.0
    return out


def pids(env):
    """{(kind, addr): pid} of primaries, replicas and their workers."""
    prim = {n.addr for n in env.topo.primaries()}
    out = {}
    for n in env.topo.nodes():
        out[("primary" if n.addr in prim else "replica", n.addr)] = n.pid
    for w in env.workers:
        kind = "pworker" if w.node in prim else "rworker"
        out[(kind, w.node)] = w.pid
    return out


def measure(env, n, rate, tag):
    """Runs the load once; returns ({(kind, addr): us per event}, argv)."""
    ps = pids(env)
    a = cpu_of(ps)
    time.sleep(IDLE_S)
    b = cpu_of(ps)
    fig, argv = env.bench("-c", 10, "-P", 16, "-n", n, "--rate", rate,
                          "--keyspace", 1000000, "--key-prefix", f"{tag}:",
                          timeout=600)
    c = cpu_of(ps)
    assert fig["acked_events"] == n and not fig["errors"], fig
    wall = n / rate
    out = {}
    for k in ps:
        idle = (b[k] - a[k]) * wall / IDLE_S
        out[k] = max(0.0, (c[k] - b[k]) - idle) * 1e6 / n
    return out, argv


def summary(per):
    """(mean primary us/event, max primary, mean primary worker, total of
    every process) from one run's {(kind, addr): us/event}."""
    prim = [v for (k, _), v in per.items() if k == "primary"]
    pw = [v for (k, _), v in per.items() if k == "pworker"]
    return (sum(prim) / len(prim), max(prim), sum(pw) / len(pw),
            sum(per.values()))


def fmt(s):
    return (f"{s[0]:.1f} us/event (max {s[1]:.1f}); its worker "
            f"{s[2]:.1f} us/event")


def run(ctx):
    rate = 10000
    n = max(20000, int(200000 * ctx.scale))
    builds = benchlib.builds(ctx)
    res = {}  # (label, primaries) -> [summary per run]
    raw = {}
    argv = None
    for nprim in (3, 6):
        with Env(ctx.workdir(f"s9-{nprim}"), primaries=nprim) as env:
            for i in range(ctx.runs):
                for label, build in builds:
                    if env.build != build:
                        env.use_build(build)
                    per, argv = measure(env, n, rate, f"s9r{i}")
                    s = summary(per)
                    res.setdefault((label, nprim), []).append(s)
                    raw.setdefault((label, nprim), []).append(
                        [round(v, 1) for _, v in sorted(per.items())])
                    log(f"s9 {label}, {nprim} primaries, run {i + 1}: "
                        f"primary {s[0]:.1f} us/event (max {s[1]:.1f}), "
                        f"worker {s[2]:.1f}, all {s[3]:.1f}")

    rows = []
    for label, _ in builds:
        m3 = benchlib.medians(res[(label, 3)])
        m6 = benchlib.medians(res[(label, 6)])
        falls = m6[0] < m3[0] and m6[1] < m3[1]
        rows += [
            {"figure": f"{label}: each primary's Redis CPU per event, 3 "
                       "primaries",
             "inval": fmt(m3), "baseline": "", "ratio": None, "target": "",
             "met": None},
            {"figure": f"{label}: same, 6 primaries (same total load)",
             "inval": fmt(m6), "baseline": f"3 primaries {m3[0]:.1f}",
             "ratio": m3[0] / m6[0] if m6[0] else None,
             "target": "falls" if label == "this build" else "",
             "met": falls if label == "this build" else None},
            {"figure": f"{label}: every process (Redis nodes and workers) "
                       "per event, 3 / 6 primaries",
             "inval": f"{m3[3]:.1f} / {m6[3]:.1f} us/event", "baseline": "",
             "ratio": None, "target": "", "met": None}]
    notes = [f"{n:,} events per run at {rate:,}/s (keys bench:key:N over a "
             f"1,000,000 keyspace, absent: the worker's UNLINK finds "
             f"nothing), {ctx.runs} runs per build and size, alternating "
             f"builds on one cluster per size. Per run (mean primary, max "
             f"primary, mean primary's worker, every process; us/event): " +
             "; ".join(f"{label}, {p} primaries: "
                       f"{[tuple(round(x, 1) for x in r) for r in runs]}"
                       for (label, p), runs in sorted(res.items())) + ".",
             "Every process's us/event, per run, sorted by (kind, address): " +
             "; ".join(f"{label}, {p} primaries: {r}"
                       for (label, p), r in sorted(raw.items())) + ".",
             "CPU from /proc/<pid>/stat (utime + stime, 10 ms ticks) over "
             "the load, less the idle rate measured over the 5 s before it. "
             "The broadcast (one classic PUBLISH per batch) reaches every "
             "node over the cluster bus in both builds, so part of each "
             "node's cost does not shrink with more nodes."]
    return {
        "id": 9, "title": TITLE, "rows": rows,
        "commands": [benchlib.cmdline(argv).replace(
            f"s9r{ctx.runs - 1}:", "s9rN:") +
            "   # on 3+3, then 6+6 primaries; CPU from /proc/<pid>/stat"],
        "notes": notes,
    }
