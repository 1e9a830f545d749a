"""Scenario 6: stampede. 500 concurrent readers (5 processes x 100
threads, tests/bench/stampede_reader.py) read 10 hot keys for 10 s while
the keys are invalidated through inval every 100 ms (one request of 10
soft key events). A regeneration takes 20 ms. Compared: inval's read path
(inval.get_or_fill in the Python package: a lock per key, the stale copy
served meanwhile, a fenced commit) against a plain GET / regenerate / SET
cache-aside on the same cluster and the same invalidations. Figures:
regenerations (the load a stampede puts on the database) and the readers'
p99 latency.
"""

import json
import os
import subprocess
import time

import benchlib
from benchlib import HOST, PYTHON, Env, log, median

TITLE = "Stampede (500 readers, 10 hot keys invalidated every 100 ms, 10 s)"
HERE = os.path.dirname(os.path.abspath(__file__))
PROCS, THREADS, KEYS, REGEN_MS = 5, 100, 10, 20


def pct(values, q):
    if not values:
        return 0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def one(env, mode, seconds):
    argv = [PYTHON, os.path.join(HERE, "stampede_reader.py"), mode,
            env.seeds[0], THREADS, seconds, KEYS, REGEN_MS]
    procs = [subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(PROCS)]
    for p in procs:  # every process has its threads up
        if p.stderr.readline().strip() != "ready":
            raise RuntimeError(f"reader failed: {p.communicate()}")
    events = [{"kind": "key", "target": f"hot:{i}", "mode": "soft"}
              for i in range(KEYS)]
    sent = 0
    with benchlib.harness.RpcClient(HOST, env.publisher.port) as c:
        t_end = time.monotonic() + seconds
        nxt = time.monotonic()
        while time.monotonic() < t_end:
            benchlib.harness.rpc_ok(c, "invalidate", events)
            sent += 1
            nxt += 0.1
            time.sleep(max(0.0, nxt - time.monotonic()))
    reads = regens = errors = 0
    lat = []
    counters = {}
    for p in procs:
        out, err = p.communicate(timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"reader exited with {p.returncode}: {err}")
        r = json.loads(out)
        reads += r["reads"]
        regens += r["regenerations"]
        errors += r["errors"]
        lat += r["latency_us"]
        for k, v in r.get("read_path", {}).items():
            counters[k] = counters.get(k, 0) + v
    return {"reads": reads, "regens": regens, "errors": errors,
            "p99": pct(lat, 0.99), "p50": pct(lat, 0.5),
            "invalidations": sent, **({"read_path": counters}
                                       if counters else {})}, argv


def run(ctx):
    seconds = max(2, round(10 * min(1.0, ctx.scale * 10)))
    res = {"inval": [], "plain": []}
    with Env(ctx.workdir("s6")) as env:
        for i in range(ctx.runs):
            for mode in ("plain", "inval"):
                r, argv = one(env, mode, seconds)
                res[mode].append(r)
                log(f"s6 run {i + 1} {mode}: {r}")
    ri = median([r["regens"] for r in res["inval"]])
    rp = median([r["regens"] for r in res["plain"]])
    pi = median([r["p99"] for r in res["inval"]])
    pp = median([r["p99"] for r in res["plain"]])
    inv_sent = median([r["invalidations"] for r in res["inval"]])
    return {
        "id": 6, "title": TITLE,
        "rows": [
            {"figure": f"regenerations in {seconds} s "
                       f"(~{inv_sent:.0f} invalidations x {KEYS} keys)",
             "inval": f"{ri:,.0f}", "baseline": f"plain cache-aside {rp:,.0f}",
             "ratio": rp / ri if ri else None, "target": "fewer",
             "met": ri < rp},
            {"figure": "reader p99", "inval": f"{pi / 1000:.1f} ms",
             "baseline": f"{pp / 1000:.1f} ms",
             "ratio": pp / pi if pi else None, "target": "report",
             "met": None}],
        "commands": [benchlib.cmdline(argv).replace(" inval ", " inval|plain ")
                     + f"   # x{PROCS} processes, while invalidate "
                     f"{KEYS} soft key events every 100 ms"],
        "notes": [f"Per run: inval {res['inval']}; plain {res['plain']} "
                  "(reads, regenerations, reader errors, latency in us). "
                  "Both readers run in Python on the same two cores as "
                  "Redis and inval, so latencies include GIL and scheduler "
                  "waits; the regeneration counts are the robust figure."],
    }
