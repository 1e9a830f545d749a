"""Worker heartbeats as the publisher and invalctl show them, on the 6-node
cluster.

- Before any worker runs, `invalctl stats` says no worker heartbeat was
  found (MISSING) and the publisher knows no worker.
- With one worker per node, `invalctl stats` lists all six, each with its
  node's real role (3 primary, 3 replica) and a fresh heartbeat; the
  `stats` RPC's `workers` section holds the same six records, whose last_id
  follows what the workers applied.
- A worker killed with SIGKILL stops writing: once its TTL has passed its
  record is flagged stale (RPC `stale`, invalctl STALE and a warning, the
  publisher's workers_stale), while the five others stay fresh.
"""

import json
import time

from pubtest import stats
from workerlib import (Topo, ev, invalctl_stats, invalctl_worker_lines, poll,
                       role_name, send_events, sid, start_workers,
                       wait_applied)

TTL_MS = 1500


def test_six_workers_listed_then_one_stale(cluster, worker_factory,
                                           publisher_factory):
    topo = Topo(cluster)
    pub = publisher_factory(topo.seeds)
    r = invalctl_stats(pub.port)
    assert r.returncode == 0, r.stderr
    assert "workers (0):" in r.stdout and "MISSING" in r.stdout, r.stdout
    assert stats(pub)["workers_known"] == 0

    workers = start_workers(topo, worker_factory, "--heartbeat-interval",
                            "200ms", "--heartbeat-ttl", f"{TTL_MS}ms")
    roles = {w.node: role_name(topo.node(w.node)) for w in workers}
    assert sorted(roles.values()) == ["primary"] * 3 + ["replica"] * 3

    def listed():
        out = invalctl_stats(pub.port).stdout
        lines = invalctl_worker_lines(out)
        return (out, lines) if len(lines) == 6 else None
    out, lines = poll(listed, 20, "six workers in invalctl stats")
    assert "workers (6):" in out, out
    for w in workers:
        line = lines[w.node]  # the default worker id is the node address
        fields = line.split()
        assert fields[1] == w.node and fields[2] == roles[w.node], line
        assert " ok (" in line, line
    assert "WARNING" not in out, out

    # The RPC section, with positions that follow what was applied.
    last = send_events(pub, [ev("key", "hb:1"), ev("prefix", "hb:p:")])
    wait_applied(workers, last)

    # Each primary's record carries, as last_id, the last entry of the
    # shards its node holds (the prefix event went to every shard); a
    # standby consumes no shard.
    shards = topo.shard_state()
    newest = {}
    for s, (generated, _, _) in shards.items():
        port = topo.shard_node(s).addr
        newest[port] = max(newest.get(port, (0, 0)), generated)
    assert max(newest.values()) == sid(last)

    def caught_up():
        st = stats(pub)
        recs = st["workers"]
        return st if len(recs) == 6 and all(
            sid(x["last_id"]) == newest.get(x["node"], (0, 0))
            for x in recs) else None
    st = poll(caught_up, 20, "heartbeats carrying the last acknowledged ids")
    assert st["workers_known"] == 6 and st["workers_stale"] == 0, st
    for rec in st["workers"]:
        assert rec["id"] == rec["node"] and rec["role"] == roles[rec["node"]]
        assert rec["stale"] is False and rec["ttl_ms"] == TTL_MS, rec
    js = json.loads(invalctl_stats(pub.port, "--json").stdout)
    assert sorted((w["id"], w["role"]) for w in js["workers"]) == \
        sorted(roles.items())

    # Kill one (a replica's: the others keep working) and wait for stale.
    victim = next(w for w in workers if roles[w.node] == "replica")
    victim.kill()
    killed = time.monotonic()

    def flagged():
        st = stats(pub)
        by_node = {x["node"]: x for x in st["workers"]}
        return st if by_node[victim.node]["stale"] else None
    st = poll(flagged, 30, "the killed worker flagged stale")
    stale_after = time.monotonic() - killed
    # Its last heartbeat was at most one interval (plus scheduling) old.
    assert stale_after >= TTL_MS / 1000 - 0.8, stale_after
    assert st["workers_known"] == 6 and st["workers_stale"] == 1, st
    assert [x["node"] for x in st["workers"] if x["stale"]] == [victim.node]
    out = invalctl_stats(pub.port).stdout
    lines = invalctl_worker_lines(out)
    assert "STALE" in lines[victim.node], out
    assert all(" ok (" in lines[w.node] for w in workers if w is not victim)
    assert "WARNING: 1 of 6 workers stale or missing" in out, out
    print(f"worker flagged stale {stale_after:.1f} s after SIGKILL "
          f"(ttl {TTL_MS} ms)")
