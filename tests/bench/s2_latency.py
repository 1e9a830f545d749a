"""Scenario 2: end-to-end latency at a steady 10,000 events/s.

invalctl bench --e2e seeds one key per event, sends key events at a paced
10k events/s through the publisher, and times each key from the moment its
request was buffered to the moment its primary announced the UNLINK
(keyevent notification): publisher batching, XADD + PUBLISH, the cluster
bus, the worker and the UNLINK are all inside the figure.
"""

import benchlib
from benchlib import Env, log, median

TITLE = "End-to-end latency at 10k events/s (send to key gone)"


def run(ctx):
    rate = 10000
    n = max(20000, int(100000 * ctx.scale))
    p50, p99, mx = [], [], []
    with Env(ctx.workdir("s2")) as env:
        for i in range(ctx.runs):
            fig, argv = env.bench("-c", 10, "-P", 16, "-n", n, "--rate", rate,
                                  "--e2e", "--redis", env.seeds[0],
                                  "--key-prefix", f"s2r{i}:", "--wait", 30)
            e2e = fig["e2e"]
            assert e2e["gone"] == n and not fig["errors"], fig
            p50.append(e2e["latency_us"]["p50"])
            p99.append(e2e["latency_us"]["p99"])
            mx.append(e2e["latency_us"]["max"])
            log(f"s2 run {i + 1}: p50 {p50[-1]} us, p99 {p99[-1]} us")
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
            {"figure": "e2e max (median of runs)",
             "inval": f"{median(mx) / 1000:.1f} ms", "baseline": "",
             "ratio": None, "target": "", "met": None}],
        "commands": [benchlib.cmdline(argv).replace(f"s2r{ctx.runs - 1}:",
                                                    "s2rN:")],
        "notes": [f"{n:,} events per run at {rate:,}/s; per-run p50 "
                  f"{p50} us, p99 {p99} us. No baseline: there is no "
                  "alternative that deletes on every node from one send."],
    }
