"""Blast radius, end to end: one primary dies while invalidations for keys
on all three primaries stream, with a worker on every node.

A private 3+3 cluster with cluster-require-full-coverage no (with the
default, every node refuses every command from the failure's detection to
the promotion, and nothing could be logged anywhere). Each request names a
fresh key that exists, so every ack can be checked against Redis. Requests
for keys whose log shard lives on the two healthy primaries keep being
acked with no gap over 200 ms; requests for the failed node's keys get
EUNAVAIL (retried) until its replica is promoted. Afterwards every acked key
is gone, those acked just before the kill included (their entries reached
the replica before the ack: ack-replicas 1), and no key that was never
named was removed.
"""

import threading
import time

from harness import HOST, RpcClient
from workerlib import (SHARD_SLOTS, Topo, assert_keyset, keys_present,
                       load_keys, poll, shard_of_key, start_workers,
                       wait_applied, worker_of)

PER_NODE = 3000


def keys_by_home(topo, prefix, n):
    """{primary port: n fresh keys whose log shard that primary holds}."""
    owners = topo.owners()
    out = {p.port: [] for p in topo.primaries()}
    i = 0
    while any(len(v) < n for v in out.values()):
        k = f"{prefix}:{i}"
        i += 1
        port = owners[shard_of_key(k) * SHARD_SLOTS].port
        if len(out[port]) < n:
            out[port].append(k)
    return out


def test_healthy_nodes_keep_acking(partial_cluster, worker_factory,
                                   publisher_factory):
    cl = partial_cluster
    topo = Topo(cl)
    workers = start_workers(topo, worker_factory, "--role-poll", "200ms")
    pub = publisher_factory(cl.seeds, "--redis-timeout", "1s")
    victim = topo.primaries()[0]
    heir = cl.replica_of(victim)
    by_home = keys_by_home(topo, "br", PER_NODE)
    kept = [f"br:kept:{i}" for i in range(500)]
    load_keys(topo, [k for ks in by_home.values() for k in ks] + kept)
    for p in topo.primaries():
        assert p.client().execute_command("WAIT", 1, 5000) >= 1

    stop = threading.Event()
    acked = {port: [] for port in by_home}   # (time, key)
    refused = {port: 0 for port in by_home}

    def run(port):
        keys = by_home[port]
        with RpcClient(HOST, pub.port, timeout=10) as c:
            i = 0
            while not stop.is_set() and i < len(keys):
                err, _ = c.call("invalidate", [{"kind": "key",
                                                "target": keys[i]}])
                if err is None:
                    acked[port].append((time.monotonic(), keys[i]))
                    i += 1
                    time.sleep(0.003)
                else:
                    assert err["code"] == "EUNAVAIL", err
                    refused[port] += 1
                    time.sleep(0.02)

    threads = [threading.Thread(target=run, args=(p,)) for p in by_home]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t_kill = time.monotonic()
    cl.kill_primary(victim, timeout=60)
    t_promoted = time.monotonic()
    poll(lambda: any(t > t_promoted for t, _ in acked[victim.port]), 30,
         "acks for the failed node's keys again")
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(30)

    worst = {}
    for port, rows in acked.items():
        times = [t for t, _ in rows if t > t_kill - 0.5]
        worst[port] = max((b - a for a, b in zip(times, times[1:])),
                          default=0.0)
    print(f"promotion {t_promoted - t_kill:.2f} s after the kill; worst ack "
          f"gap per node (ms): "
          f"{ {p: round(g * 1000, 1) for p, g in worst.items()} }; "
          f"EUNAVAIL {refused}")
    for p in topo.primaries():
        if p.port in worst and p.port != victim.port:
            assert worst[p.port] <= 0.2, (p.port, worst)
            assert refused[p.port] == 0, refused
    assert refused[victim.port] > 0 or worst[victim.port] > 1.0

    # Every acked key is gone; nothing else was removed.
    gone = {k for rows in acked.values() for _, k in rows}
    survivors = [w for w in workers if w.node != victim.addr]
    poll(lambda: not (keys_present(topo, "br:*") & gone), 60,
         "every acked key removed")
    wait_applied(survivors)
    named = {k for ks in by_home.values() for k in ks}
    assert_keyset(keys_present(topo, "br:*"), (named - gone) | set(kept),
                  "br: keys after the failover")
    assert worker_of(workers, heir).alive()
