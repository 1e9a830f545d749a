"""Scenario 12: delivery of a shard entry to its worker, hints against
blocking reads.

The worker learns of a new entry in one of its shards by an SSUBSCRIBE hint
(the write script SPUBLISHes the entry id on the shard's channel; the worker
then runs XREADGROUP ... > on that stream). The alternative is one
connection per shard with XREADGROUP ... BLOCK 0 ... > always outstanding.
delivery_probe.py measures both on one redis-server with 21 shards (64
shards over 3 primaries) and a writer sending entries with the log's write
script at 1,000 entries/s: the time from the send to the reader having the
entry, and the CPU the reader and Redis spend per entry. The two mechanisms
run alternately, run for run. The reader is Python (redis-py's connection,
select for the blocking connections), in both mechanisms alike.
"""

import json
import os

import benchlib
from benchlib import PYTHON, log, median
from harness import RedisServer

HERE = os.path.dirname(os.path.abspath(__file__))

TITLE = "Delivery to the worker: SSUBSCRIBE hints vs blocking XREADGROUP"

SHARDS = 21
RATE = 1000


def run(ctx):
    count = max(2000, int(10000 * ctx.scale))
    res = {"hint": [], "block": []}
    server = RedisServer(ctx.workdir("s12"))
    server.start()
    try:
        for i in range(ctx.runs):
            for mode in ("hint", "block"):
                argv = [PYTHON, os.path.join(HERE, "delivery_probe.py"),
                        server.port, mode, SHARDS, RATE, count]
                cpu0 = benchlib.cpu_seconds(server.pid)
                out, _ = benchlib.run(argv, timeout=120 + 2 * count / RATE)
                r = json.loads(out.stdout)
                r["redis_us"] = ((benchlib.cpu_seconds(server.pid) - cpu0) *
                                 1e6 / count)
                r["reader_us"] = r["reader_cpu_s"] * 1e6 / count
                res[mode].append(r)
                log(f"s12 {mode} run {i + 1}: p50 {r['p50']} us, p99 "
                    f"{r['p99']} us, reader {r['reader_us']:.0f} us/entry, "
                    f"Redis {r['redis_us']:.0f} us/entry")
    finally:
        server.stop()

    def med(mode, k):
        return median([r[k] for r in res[mode]])

    h50, h99 = med("hint", "p50"), med("hint", "p99")
    b50, b99 = med("block", "p50"), med("block", "p99")
    faster = "hints" if h50 < b50 else "blocking reads"
    return {
        "id": 12, "title": TITLE,
        "rows": [
            {"figure": f"write to reader having the entry, p50 / p99 "
                       f"({SHARDS} shards on the node, {RATE:,} entries/s)",
             "inval": f"hints {h50 / 1000:.2f} / {h99 / 1000:.2f} ms",
             "baseline": f"blocking XREADGROUP {b50 / 1000:.2f} / "
                         f"{b99 / 1000:.2f} ms",
             "ratio": b50 / h50 if h50 else None, "target": "report",
             "met": None},
            {"figure": "CPU per entry: reader / Redis",
             "inval": f"hints {med('hint', 'reader_us'):.0f} / "
                      f"{med('hint', 'redis_us'):.0f} us",
             "baseline": f"blocking {med('block', 'reader_us'):.0f} / "
                         f"{med('block', 'redis_us'):.0f} us",
             "ratio": None, "target": "", "met": None}],
        "commands": [benchlib.cmdline(argv).replace(
            f" {server.port} block ", " PORT hint|block ").replace(
            HERE + "/", "tests/bench/")],
        "notes": [f"{count:,} entries per run; faster at p50: {faster}. Per "
                  "run: " + "; ".join(
                      f"{mode}: " + ", ".join(
                          f"[p50 {r['p50']} us, p99 {r['p99']} us, max "
                          f"{r['max']} us, reader {r['reader_us']:.0f} "
                          f"us/entry, Redis {r['redis_us']:.0f} us/entry]"
                          for r in runs)
                      for mode, runs in res.items()) + ".",
                  "Redis CPU per entry includes the writer's script call "
                  "(XADD and SPUBLISH), the same in both. "
                  "A ratio above 1 means hints are faster. The hint path "
                  "has one more trip than a blocking read (the hint, then "
                  "the XREADGROUP round trip), but one connection per node "
                  "instead of one per shard; in the Python reader each trip "
                  "also costs interpreter time, which the C worker does "
                  "not pay, so the difference measured here is an upper "
                  "bound of the C worker's."],
    }
