"""Raw Redis pub/sub latency, no inval involved: PUBLISH on node A at a
paced RATE per second, each message carrying its send time, and a
subscriber on node B reporting the delivery latency. With A != B in a
cluster the message crosses the cluster bus, as an inval broadcast does on
its way to every other primary's worker. Prints JSON {p50, p90, p99, max}
in microseconds.

Usage: pubsub_probe.py PUB_PORT SUB_PORT RATE COUNT
"""

import json
import sys
import threading
import time

import redis


def main():
    pub_port, sub_port = int(sys.argv[1]), int(sys.argv[2])
    rate, count = float(sys.argv[3]), int(sys.argv[4])
    ps = redis.Redis(port=sub_port).pubsub()
    ps.subscribe("inval-bench-probe")
    ps.get_message(timeout=5)
    lat = []

    def sub():
        while len(lat) < count:
            m = ps.get_message(timeout=10)
            if m is None:
                return
            if m["type"] == "message":
                lat.append((time.perf_counter() - float(m["data"])) * 1e6)

    t = threading.Thread(target=sub)
    t.start()
    p = redis.Redis(port=pub_port)
    nxt = time.perf_counter()
    for _ in range(count):
        p.publish("inval-bench-probe", repr(time.perf_counter()))
        nxt += 1 / rate
        d = nxt - time.perf_counter()
        if d > 0:
            time.sleep(d)
    t.join()
    lat.sort()
    n = len(lat)
    if n < count:
        raise SystemExit(f"only {n} of {count} messages arrived")
    print(json.dumps({"p50": round(lat[n // 2]), "p90": round(lat[n * 9 // 10]),
                      "p99": round(lat[n * 99 // 100]), "max": round(lat[-1])}))


if __name__ == "__main__":
    main()
