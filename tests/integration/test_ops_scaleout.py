"""The scale-out procedure of docs/OPERATIONS.md, step by step, on a real
3+3 cluster with inval running: add an empty primary, start its worker,
move slots to it with `redis-cli --cluster rebalance
--cluster-use-empty-masters`, check the cluster with `redis-cli --cluster
check`, and invalidate. The log shards whose home slot moved to the new
node are consumed by the new node's worker, which deletes their keys; every
key not invalidated survives."""

import subprocess

import harness
from workerlib import (SHARD_SLOTS, Topo, poll, assert_keyset, key_events,
                       keys_present, load_keys, send_events, settle,
                       shard_of_key, start_workers, wait_applied, wait_gone,
                       wait_maps_current, wstats)


def redis_cli(*args, timeout=120):
    res = subprocess.run(["redis-cli", *args], capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_scale_out_with_workers(fresh_cluster, publisher_factory,
                                worker_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    pub = publisher_factory(cluster.seeds)
    workers = start_workers(topo, worker_factory)
    keys = [f"so:{i}" for i in range(4000)]
    load_keys(topo, keys)

    # 1. A new, empty node joins as a primary (no slots yet).
    new = harness.RedisServer(cluster.workdir, cluster=True)
    new.start()
    cluster.nodes.append(new)  # the fixture stops it with the others
    redis_cli("--cluster", "add-node", new.addr, cluster.seeds[0])
    poll(lambda: all(n.cluster_info().get("cluster_known_nodes") == "7" and
                     n.cluster_info().get("cluster_state") == "ok"
                     for n in cluster.running()), 60,
         "every node knows the new one, and the new one sees the cluster ok")
    # 2. Its worker starts before any slot moves, so it is live when the
    #    first slot arrives.
    wnew = worker_factory(new)

    def new_worker_live():
        st = wstats(wnew)
        return st["connected"] and st["live"] and st["role"] == "primary"
    poll(new_worker_live, 40, "the new node's worker live as a primary")
    workers = workers + [wnew]
    # 3. Slots move to it.
    redis_cli("--cluster", "rebalance", cluster.seeds[0],
              "--cluster-use-empty-masters", "--cluster-yes", timeout=300)
    cluster.wait_ok(60)
    out = cluster.cluster_check()
    assert "4 masters" in out or out.count("M: ") == 4, out
    owners = topo.owners()
    on_new = [k for k in keys if owners[harness.key_slot(k)].port == new.port]
    assert len(on_new) > len(keys) // 8, "the rebalance moved too few keys"

    # 4. Invalidations after the scale-out: half the keys, including keys
    #    that now live on the new node. Every worker's slot map has caught
    #    up first (within a refresh period, 5 s): until then the old owner
    #    of a moved shard may still read it (its reads follow MOVED), which
    #    loses nothing but would blur the count below.
    wait_maps_current(topo, workers)
    gone = set(keys[::2])
    last = send_events(pub, key_events(sorted(gone)))
    wait_gone(topo, "so:*", gone, 60, "invalidated keys removed")
    wait_applied(workers, last)
    settle(workers)
    assert_keyset(keys_present(topo, "so:*"), set(keys) - gone,
                  "keys after the scale-out")
    st = wstats(wnew)
    assert st["role"] == "primary", st
    # The new worker consumes the shards whose stream moved with their home
    # slot, and deletes their keys that live on its node.
    theirs = {k for k in gone & set(on_new)
              if owners[shard_of_key(k) * SHARD_SLOTS].port == new.port}
    assert theirs, "no shard's home slot moved to the new node"
    assert st["shards"] >= 1, st
    assert st["keys_unlinked"] >= len(theirs), st
