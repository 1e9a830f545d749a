"""Scenario 1: publisher throughput.

inval: events acked per second by one inval-publisher, 50 connections with
16 requests in flight each, one key per event (invalctl bench). Baseline:
redis-benchmark -P 16 with 50 connections running PUBLISH
cache:invalidation with a payload the size of a one-event broadcast, on the
primary that holds log shard 0. No workers run in either case: both pay the
same cluster-bus fan-out of the broadcast, and inval also the log shard
scripts (one per shard a batch touches).

With --before-build DIR (run.sh), the publisher of that build (e.g. main's,
with the central log) runs in turn with this tree's on the same cluster,
run for run, so that the two are compared under the same load of the
machine.
"""

import msgpack

import benchlib
from benchlib import HOST, Env, log, median

TITLE = "Publisher throughput (events acked/s vs raw PUBLISH/s)"


def payload_size():
    """Bytes of the broadcast of one key event, as the publisher sends it."""
    p = {"v": 2, "ts": 1764467353123,
         "events": [{"kind": "key", "target": "bench:key:123456",
                     "mode": "hard"}],
         "ids": [[62, "1764467353123-0"]]}
    return len(msgpack.packb(p))


def redis_benchmark(node, n, payload):
    argv = ["redis-benchmark", "-h", HOST, "-p", node.port, "-c", "50",
            "-n", n, "-P", "16", "--csv", "PUBLISH", "cache:invalidation",
            payload]
    res, _ = benchlib.run(argv)
    line = [ln for ln in res.stdout.strip().splitlines()
            if ln.startswith('"PUBLISH')][-1]
    return float(line.split(",")[1].strip('"')), argv


def run(ctx):
    n = max(20000, int(400000 * ctx.scale))
    size = payload_size()
    payload = "x" * size
    inval, base, p99s, before = [], [], [], []
    with Env(ctx.workdir("s1"), workers=False,
             publisher_args=ctx.pub_args) as env:
        node = env.topo.shard_node(0)
        env.bench("-c", 50, "-n", 20000, "-P", 16)  # warm-up
        for i in range(ctx.runs):
            rps, base_argv = redis_benchmark(node, n, payload)
            base.append(rps)
            if ctx.before:
                env.use_build(ctx.before)
                env.bench("-c", 50, "-n", 20000, "-P", 16)  # warm-up
                fig, _ = env.bench("-c", 50, "-n", n, "-P", 16,
                                   "--keys-per-event", 1)
                assert fig["acked_events"] == n and not fig["errors"], fig
                before.append(fig["events_per_sec"])
                env.use_build(None)
                env.bench("-c", 50, "-n", 20000, "-P", 16)  # warm-up
            fig, inval_argv = env.bench("-c", 50, "-n", n, "-P", 16,
                                        "--keys-per-event", 1)
            assert fig["acked_events"] == n and not fig["errors"], fig
            inval.append(fig["events_per_sec"])
            p99s.append(fig["ack_latency_us"]["p99"])
            log(f"s1 run {i + 1}: inval {inval[-1]:.0f} events/s, "
                f"PUBLISH {rps:.0f}/s" +
                (f", before {before[-1]:.0f} events/s" if before else ""))
        with benchlib.harness.RpcClient(HOST, env.publisher.port) as c:
            st = benchlib.harness.rpc_ok(c, "stats")
    mi, mb = median(inval), median(base)
    return {
        "id": 1, "title": TITLE,
        "rows": [{
            "figure": "events/s (one key per event, 50 conns, pipeline 16)",
            "inval": f"{mi:,.0f}/s", "baseline": f"{mb:,.0f} PUBLISH/s",
            "ratio": mi / mb, "target": ">= 3x", "met": mi / mb >= 3},
            *([{"figure": "events/s, the build before the change (same "
                "cluster, alternating runs)",
                "inval": f"{mi:,.0f}/s",
                "baseline": f"before {median(before):,.0f}/s",
                "ratio": mi / median(before), "target": "no regression",
                "met": mi >= 0.95 * median(before)}] if before else []),
            {"figure": "inval ack latency p99 at that load",
             "inval": f"{median(p99s) / 1000:.1f} ms", "baseline": "",
             "ratio": None, "target": "", "met": None}],
        "commands": [benchlib.cmdline(inval_argv),
                     benchlib.cmdline(base_argv).replace(payload,
                                                         f"<{size} bytes>")],
        "notes": [f"{n:,} events per run; payload {size} bytes, the size of "
                  f"a one-event broadcast; medians of {ctx.runs} alternating "
                  f"runs: inval {sorted(round(x) for x in inval)}, "
                  f"PUBLISH {sorted(round(x) for x in base)}" +
                  (", the build before (--before-build) "
                   f"{sorted(round(x) for x in before)}" if before else "") +
                  ". The publisher "
                  f"confirmed {st['batches']:,} batches averaging "
                  f"{st['batch_events_avg']} events: a batch costs one "
                  "shard write (and WAIT, with ack-replicas 1) per shard it "
                  "touches and one PUBLISH, where the baseline pays a "
                  "PUBLISH (and its fan-out over the cluster bus to every "
                  "other node) per message."],
    }
