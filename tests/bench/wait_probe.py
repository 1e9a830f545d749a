"""What a WAIT after every shard write costs, against one WAIT per node.

    wait_probe.py [WRITES] [ROUNDS]

Starts a throwaway primary and its replica (tests/integration/harness.py)
and times, on one connection, a pipeline of WRITES (default 21, the shards
of one of 3 primaries) log writes (XADD through EVAL, as the publisher's
script) in two shapes, ROUNDS times each, alternating:

  pairs   EVAL, WAIT 1 0, EVAL, WAIT 1 0, ...   (a WAIT per write)
  single  EVAL, EVAL, ..., WAIT 1 0            (one WAIT for all)

and the same writes with no WAIT. Redis does not read a blocked client's
next command, so the pairs' WAITs cannot overlap. Prints one JSON line of
p50 / p99 microseconds per shape.
"""

import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402

WRITE = ("local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000, '*', "
         "'p', ARGV[1]) return id")


def timed(r, writes, shape):
    p = r.pipeline(transaction=False)
    for i in range(writes):
        p.eval(WRITE, 1, f"probe:{{{i}}}", "x" * 60)
        if shape == "pairs":
            p.execute_command("WAIT", 1, 0)
    if shape == "single":
        p.execute_command("WAIT", 1, 0)
    t0 = time.monotonic()
    out = p.execute()
    dt = (time.monotonic() - t0) * 1e6
    if shape != "none":
        assert all(x == 1 for x in out if isinstance(x, int)), out
    return dt


def pct(values, q):
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))])


def main():
    writes = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    work = tempfile.mkdtemp(prefix="inval-wait-probe-",
                            dir=os.environ.get("INVAL_TEST_RUNDIR"))
    primary = harness.RedisServer(work)
    replica = harness.RedisServer(
        work, extra_args=("--replicaof", harness.HOST, primary.port))
    try:
        primary.start()
        replica.start()
        r = primary.client(timeout=30)
        harness.wait_until(
            lambda: r.info("replication").get("connected_slaves") == 1,
            30, what="the replica in sync")
        got = {"pairs": [], "single": [], "none": []}
        for _ in range(rounds):
            for shape in got:
                got[shape].append(timed(r, writes, shape))
        print(json.dumps({"writes": writes, "rounds": rounds, **{
            shape: {"p50": pct(v, 0.5), "p99": pct(v, 0.99)}
            for shape, v in got.items()}}))
    finally:
        replica.stop()
        primary.stop()


if __name__ == "__main__":
    main()
