"""The publisher's view of the nodes and the deploy gate, on a standalone
Redis with real workers and publisher.

- A worker's heartbeat carries its node's figures: the publisher's `stats`
  lists them in each worker record ("health"), and `invalctl stats`
  against the publisher prints one line per node.
- `invalctl check` exits 0 while every worker is fresh and every node
  healthy, and 5 with one line per problem otherwise: no worker at all, a
  stale worker, a node whose cluster_state is fail, failed slots, a node
  its worker cannot poll, fewer primaries than --primaries. Records that
  say so are written into the heartbeat hash (anything that reaches Redis
  can write it, and that is how a real cluster's failures would look); the
  healthy worker's own line must stay out of the problems.
- A second worker started for a node that a live worker serves (the same
  heartbeat id) warns, counts duplicate_workers, and goes on; the first
  worker counts nothing.
"""

import time

import msgpack

from harness import HOST, invalctl
from pubtest import stats
from workerlib import invalctl_stats, poll, wstats

HB_KEY = "cache:invalidation:workers"
CHECK_EXIT = 5


def check(pub, *args):
    return invalctl("-H", f"{HOST}:{pub.port}", "check", *args, timeout=20)


def forged(wid, node, *, stale=False, health=None, role="primary"):
    now = int(time.time() * 1000)
    rec = {"id": wid, "node": node, "role": role, "last_id": "0-0",
           "lag_ms": 0, "behind": 0, "ts_ms": now - (600000 if stale else 0),
           "ttl_ms": 60000, "instance": f"elsewhere/1/{wid}"}
    if health is not None:
        rec["health"] = health
    return msgpack.packb(rec)


HEALTHY = {"up": 1, "cluster_state_ok": 1, "slots_fail": 0,
           "used_memory": 1000, "maxmemory": 0, "evicted_keys": 0,
           "keyspace_hits": 0, "keyspace_misses": 0, "connected_clients": 1,
           "mem_fragmentation_ratio": 1.0}


def wait_worker_health(pub, node, n=1):
    def seen():
        recs = [r for r in stats(pub)["workers"]
                if r["node"] == node and "health" in r]
        return recs if len(recs) >= n else None
    return poll(seen, 20, f"a heartbeat of {node} with node figures")


def test_node_lines_and_check(standalone, worker_factory, publisher_factory):
    pub = publisher_factory(standalone)
    r = check(pub)
    assert r.returncode == CHECK_EXIT, (r.stdout, r.stderr)
    assert "MISSING no worker heartbeat found" in r.stdout, r.stdout

    w = worker_factory(standalone, "--heartbeat-interval", "200ms")
    rec = wait_worker_health(pub, standalone.addr)[0]
    h = rec["health"]
    assert h["up"] == 1 and h["cluster_state_ok"] == 1, h
    assert h["used_memory"] > 0 and h["connected_clients"] >= 2, h
    assert "instance" in rec and rec["stale"] is False, rec

    out = invalctl_stats(pub.port).stdout
    assert "nodes (1):" in out, out
    node_lines = [ln for ln in out.splitlines()
                  if ln.startswith(f"  {standalone.addr} ") and " ok " in ln]
    assert len(node_lines) == 2, out  # the worker line and the node line

    r = check(pub, "--primaries", "1")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.startswith("OK: 1 workers fresh, 1 primaries"), r.stdout

    # Each failure alone, then all together; the real worker stays fine.
    cli = standalone.client()
    cases = {
        "STALE": forged("w-stale", "10.0.0.1:7000", stale=True,
                        health=HEALTHY),
        "CLUSTER-FAIL": forged("w-cl", "10.0.0.2:7000",
                               health=dict(HEALTHY, cluster_state_ok=0)),
        "SLOTS-FAIL": forged("w-sl", "10.0.0.3:7000",
                             health=dict(HEALTHY, slots_fail=12)),
        "NODE-DOWN": forged("w-dn", "10.0.0.4:7000",
                            health=dict(HEALTHY, up=0)),
    }
    for what, value in cases.items():
        cli.hset(HB_KEY, f"forged-{what}", value)
        poll(lambda: len(stats(pub)["workers"]) == 2, 10,
             f"the publisher sees the {what} record")
        r = check(pub)
        assert r.returncode == CHECK_EXIT, (what, r.stdout, r.stderr)
        problems = [ln for ln in r.stdout.splitlines()
                    if not ln.startswith(("note:", "FAIL:"))]
        assert len(problems) == 1 and problems[0].startswith(what), r.stdout
        assert standalone.addr not in r.stdout, r.stdout
        assert "FAIL: 1 problem " in r.stdout, r.stdout
        cli.hdel(HB_KEY, f"forged-{what}")
        poll(lambda: len(stats(pub)["workers"]) == 1, 10,
             f"the {what} record gone from the publisher's view")

    r = check(pub, "--primaries", "2")
    assert r.returncode == CHECK_EXIT, r.stdout
    assert "PRIMARIES 1 fresh primary worker, 2 expected" in r.stdout, r.stdout

    # Back to healthy: the gate opens again.
    r = check(pub)
    assert r.returncode == 0, r.stdout

    # The worker gone: its record turns stale and the gate closes.
    w.kill()
    # The default heartbeat ttl is long; shorten the wait by rewriting the
    # record as old (what the worker's silence would give in time).
    raw = cli.hget(HB_KEY, standalone.addr)
    old = msgpack.unpackb(raw, raw=False)
    old["ts_ms"] -= old["ttl_ms"] + 1000
    cli.hset(HB_KEY, standalone.addr, msgpack.packb(old))
    poll(lambda: stats(pub)["workers_stale"] == 1, 10, "a stale worker")
    r = check(pub)
    assert r.returncode == CHECK_EXIT, r.stdout
    assert r.stdout.startswith(f"STALE worker {standalone.addr}"), r.stdout


def test_check_against_a_worker_is_refused(standalone, worker_factory):
    w = worker_factory(standalone)
    r = invalctl("-H", f"{HOST}:{w.port}", "check", timeout=20)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "point -H at the publisher" in r.stderr, r.stderr
    r = invalctl("-H", f"{HOST}:{w.port}", "check", "--primaries", "x",
                 timeout=20)
    assert r.returncode == 2, r.stderr


def test_second_worker_for_one_node_warns(standalone, worker_factory,
                                          workdir):
    first = worker_factory(standalone, "--heartbeat-interval", "200ms")
    poll(lambda: wstats(first)["heartbeats"] >= 2, 20, "first heartbeats")
    second = worker_factory(standalone, "--heartbeat-interval", "200ms")
    poll(lambda: wstats(second)["duplicate_workers"] == 1, 20,
         "the second worker counting the first")
    poll(lambda: "another worker (" in second.log(), 10, "the warning")
    line = next(ln for ln in second.log().splitlines()
                if "another worker (" in ln)
    assert f"as {standalone.addr} for node {standalone.addr}" in line, line
    assert "WARN" in line.upper(), line
    # The second goes on serving, and the first counted nothing.
    poll(lambda: wstats(second)["heartbeats"] >= 1, 20, "second heartbeats")
    assert wstats(first)["duplicate_workers"] == 0
    assert "another worker (" not in first.log()
    # A restart of one worker alone after its record went stale warns not.
    cli = standalone.client()
    first.kill()
    second.kill()
    raw = cli.hget("cache:invalidation:workers", standalone.addr)
    old = msgpack.unpackb(raw, raw=False)
    old["ts_ms"] -= old["ttl_ms"] + 1000
    cli.hset("cache:invalidation:workers", standalone.addr,
             msgpack.packb(old))
    third = worker_factory(standalone, "--heartbeat-interval", "200ms")
    poll(lambda: wstats(third)["heartbeats"] >= 1, 20, "third heartbeats")
    assert wstats(third)["duplicate_workers"] == 0
