"""Scenario 6: stampede. 500 concurrent readers read 10 hot keys for 10 s
while the keys are invalidated through inval every 100 ms (one request of
10 soft key events through the publisher). A regeneration takes 20 ms.
Compared: inval's C read path (inv_cache_get_or_fill, inval/cache.h: a
lock per key, the stale copy served meanwhile, a fenced commit) against a
plain GET / regenerate / SET cache-aside on the same cluster and the same
invalidations. Figures: regenerations (the load a stampede puts on the
database) and the readers' p50 and p99 latency.

The readers are one C process with 500 threads (tests/tools/cache_check
hotkeys), each thread with its own blocking connections, for both modes:
one process gives exact percentiles over every read, and C threads wait
on nothing but their own socket, so the latencies are the read path's and
Redis's rather than an interpreter's (the Python readers used before,
5 processes x 100 threads, measured mostly GIL waits).
"""

import json
import subprocess
import time

import benchlib
from benchlib import HOST, Env, harness, log, median

TITLE = "Stampede (500 readers, 10 hot keys invalidated every 100 ms, 10 s)"
THREADS, KEYS, REGEN_MS = 500, 10, 20
TTL_MS = 3600000


def readers_argv(env, mode, seconds):
    return [benchlib.harness.binary("cache_check"), "hotkeys",
            "-r", env.seeds[0], "--mode", mode, "--threads", THREADS,
            "--seconds", seconds, "--keys", KEYS, "--regen-ms", REGEN_MS,
            "--ttl-ms", TTL_MS]


def invalidate_every_100ms(env, seconds):
    """Sends one request of KEYS soft key events every 100 ms for seconds;
    returns how many requests were acked."""
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
    return sent


def one(env, mode, seconds):
    """One run of the readers in mode (inval or plain) under the
    invalidations; returns (cache_check's JSON plus "invalidations",
    argv)."""
    argv = [str(a) for a in readers_argv(env, mode, seconds)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        if p.stderr.readline().strip() != "ready":  # every router connected
            out, err = p.communicate(timeout=60)
            raise RuntimeError(f"{benchlib.cmdline(argv)} failed "
                               f"({p.returncode}): {out[-1000:]} {err[-1000:]}")
        sent = invalidate_every_100ms(env, seconds)
        out, err = p.communicate(timeout=seconds + 120)
    finally:
        harness.reap(p)
    # Exit 1 means some reads failed: they are counted in "errors".
    if p.returncode not in (0, 1):
        raise RuntimeError(f"{benchlib.cmdline(argv)} exited with "
                           f"{p.returncode}: {err[-2000:]}")
    r = json.loads(out)
    r["invalidations"] = sent
    return r, argv


def ms(us):
    return f"{us / 1000:.1f} ms"


def summary(r):
    """One run in a line: reads, regenerations, errors, p50/p99/max."""
    lat = r["latency_us"]
    return (f"{r['reads']:,} reads, {r['regenerations']:,} regenerations, "
            f"{r['errors']} errors, p50 {ms(lat['p50'])}, p99 "
            f"{ms(lat['p99'])}, max {ms(lat['max'])}")


def by_source(r):
    """Per outcome: count and p50/p99/max of the reads that ended that
    way."""
    return "; ".join(f"{name} {s['count']:,} (p50 {ms(s['p50'])}, p99 "
                     f"{ms(s['p99'])}, max {ms(s['max'])})"
                     for name, s in r["by_source"].items())


def notes(res, seconds):
    out = []
    for mode in ("inval", "plain"):
        for i, r in enumerate(res[mode]):
            out.append(f"{mode} run {i + 1}: {summary(r)}, "
                       f"{r['invalidations']} invalidation requests. "
                       f"By outcome: {by_source(r)}." +
                       (f" Read-path counters: {json.dumps(r['read_path'])}."
                        if r["read_path"] else ""))
    out.append(f"Readers: one cache_check process, {THREADS} threads, each "
               "with its own blocking connections, reading random keys of "
               f"hot:0..hot:{KEYS - 1} back to back for {seconds} s; a "
               f"regeneration sleeps {REGEN_MS} ms. inval reads with "
               "inv_cache_get_or_fill and the library's defaults (lock TTL "
               "5 s, wait 1 s, backoff 2..50 ms, stale copies served); "
               "plain is GET, and on a miss regenerate and SET with the "
               "TTL. \"unlocked\" above is plain's regenerating read. "
               "Latencies are timed in the reader, per read, and include "
               "queueing: 500 readers that never pause keep the two cores "
               "(6 Redis nodes, the workers, the publisher and the readers) "
               "saturated, so every round trip waits its turn. A plain "
               "reader that misses sleeps through its regeneration and so "
               "leaves the queue; an inval reader that misses makes two "
               "round trips (GET, then SET NX and an MGET of the value and "
               "the stale copy, pipelined) and returns the stale copy at "
               "once.")
    out.append("The Python readers measured before (5 processes x 100 "
               "threads of stampede_reader.py, redis-py) are no longer run: "
               "their latencies were GIL and scheduler waits (p50 50-90 ms "
               "for a 20 ms regeneration), and they doubled the scenario's "
               "wall time.")
    return out


def run(ctx):
    seconds = max(2, round(10 * min(1.0, ctx.scale * 10)))
    res = {"inval": [], "plain": []}
    argv = None
    with Env(ctx.workdir("s6")) as env:
        for i in range(ctx.runs):
            for mode in ("plain", "inval"):
                r, argv = one(env, mode, seconds)
                res[mode].append(r)
                log(f"s6 run {i + 1} {mode}: {summary(r)}")

    def med(mode, f):
        return median([f(r) for r in res[mode]])

    ri = med("inval", lambda r: r["regenerations"])
    rp = med("plain", lambda r: r["regenerations"])
    inv_sent = med("inval", lambda r: r["invalidations"])
    rows = [{"figure": f"regenerations in {seconds} s "
                       f"(~{inv_sent:.0f} invalidations x {KEYS} keys)",
             "inval": f"{ri:,.0f}", "baseline": f"plain cache-aside {rp:,.0f}",
             "ratio": rp / ri if ri else None, "target": "fewer",
             "met": ri < rp}]
    for q in ("p50", "p99"):
        li = med("inval", lambda r: r["latency_us"][q])
        lp = med("plain", lambda r: r["latency_us"][q])
        rows.append({"figure": f"reader {q} (C readers)", "inval": ms(li),
                     "baseline": ms(lp), "ratio": lp / li if li else None,
                     "target": "report", "met": None})
    cmd = benchlib.cmdline(argv).replace("--mode inval", "--mode inval|plain")
    return {
        "id": 6, "title": TITLE, "rows": rows,
        "commands": [cmd + f"   # while invalidate {KEYS} soft key events "
                     "every 100 ms through the publisher"],
        "notes": notes(res, seconds),
    }
