"""One process of readers for scenario 6 (stampede): THREADS threads read
random keys of KEYS hot keys for SECONDS seconds, through either inval's
read path (inval.get_or_fill: lock, stale copy, fenced commit) or a plain
cache-aside (GET; on a miss regenerate and SET). A regeneration sleeps
REGEN_MS, standing in for the database query. Prints one JSON object: reads,
regenerations, errors, the read path's own counters (inval mode) and
every read's latency in microseconds.

Usage: stampede_reader.py inval|plain HOST:PORT THREADS SECONDS KEYS REGEN_MS
"""

import json
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                "proto", "python"))

from redis.cluster import ClusterNode, RedisCluster  # noqa: E402

import inval  # noqa: E402

TTL_S = 3600


def main():
    mode, seed = sys.argv[1], sys.argv[2]
    threads, seconds = int(sys.argv[3]), float(sys.argv[4])
    nkeys, regen_s = int(sys.argv[5]), int(sys.argv[6]) / 1000.0
    host, _, port = seed.rpartition(":")
    r = RedisCluster(startup_nodes=[ClusterNode(host, int(port))],
                     max_connections=threads * 2)
    lock = threading.Lock()
    totals = {"reads": 0, "regenerations": 0, "errors": 0}
    lat = []
    start = threading.Event()

    def regen():
        with lock:
            totals["regenerations"] += 1
        time.sleep(regen_s)
        return b"fresh"

    def reader():
        mine = []
        n = err = 0
        start.wait()
        end = time.monotonic() + seconds
        rnd = random.Random()
        while time.monotonic() < end:
            key = f"hot:{rnd.randrange(nkeys)}"
            t0 = time.monotonic()
            try:
                if mode == "inval":
                    inval.get_or_fill(r, key, TTL_S, regen)
                elif r.get(key) is None:
                    r.set(key, regen(), ex=TTL_S)
            except Exception:  # noqa: BLE001 - counted, the run goes on
                err += 1
                continue
            mine.append(int((time.monotonic() - t0) * 1e6))
            n += 1
        with lock:
            totals["reads"] += n
            totals["errors"] += err
            lat.extend(mine)

    ts = [threading.Thread(target=reader) for _ in range(threads)]
    for t in ts:
        t.start()
    print("ready", file=sys.stderr, flush=True)
    start.set()
    for t in ts:
        t.join()
    if mode == "inval":
        totals["read_path"] = inval.COUNTERS.snapshot()
    totals["latency_us"] = lat
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
