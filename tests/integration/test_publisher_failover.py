"""inval-publisher when Redis fails: every node down gives EUNAVAIL (never
an ack) and the publisher recovers by itself once Redis is back; killing a
cluster primary that holds log shards stops the acks of events for those
shards for no longer than the cluster's own failover, and the promoted
replica's shard streams hold what was acked; killing another primary does
not stop the acks of events whose shards live elsewhere
(test_publisher_shards.py measures that blast radius under load)."""

import threading
import time

import harness
from pubtest import (LOG_KEY, Subscriber, Topo, ack_with_retry, connect, ev,
                     invalidate, shard_key, shard_of_key, stats)


def keys_of_shards_on(backend, node, n, prefix):
    """n keys whose slot and whose log shard's stream both live on node."""
    out = []
    i = 0
    while len(out) < n:
        k = f"{prefix}:{i}"
        i += 1
        if (backend.target.node_for_key(k).port == node.port and
                backend.shard_node(shard_of_key(k)).port == node.port):
            out.append(k)
    return out


def in_streams(backend, res):
    """True when every entry res["ids"] names is in its shard's stream."""
    for shard, eid in res["ids"]:
        c = backend.shard_node(shard).client()
        if len(c.xrange(shard_key(shard), eid, eid)) != 1:
            return False
    return True


def test_standalone_down_then_back(standalone, publisher_factory):
    pub = publisher_factory(standalone.addr, "--redis-timeout", "1s")
    with connect(pub) as c:
        assert invalidate(c, [ev("key", "before")])[0] is None
        standalone.kill()
        for i in range(3):
            err, res = invalidate(c, [ev("key", f"down:{i}")], timeout=5)
            assert err is not None and err["code"] == "EUNAVAIL", (err, res)
            # The answer names the cause: which node, and that it is down.
            assert f"log shard 0 on {standalone.addr}" in err["message"], err
        standalone.start()
        res, _ = ack_with_retry(lambda: connect(pub), [ev("key", "after")], 30)
    entries = {e.decode() for e, _ in
               standalone.client().xrange(LOG_KEY)}
    assert res["id"] in entries
    st = stats(pub)
    assert st["redis_reconnects"] >= 1
    assert st["errors"]["EUNAVAIL"] >= 3


def test_cluster_all_down_then_back(fresh_cluster, publisher_factory):
    backend = Topo(fresh_cluster)
    pub = publisher_factory(fresh_cluster.seeds, "--redis-timeout", "1s")
    with connect(pub) as c:
        assert invalidate(c, [ev("key", "before")])[0] is None
        for n in fresh_cluster.nodes:
            n.stop()
        t0 = time.monotonic()
        err, res = invalidate(c, [ev("key", "down")], timeout=8)
        assert err is not None and err["code"] == "EUNAVAIL", (err, res)
        assert time.monotonic() - t0 < 4
        with __import__("pytest").raises(TimeoutError):
            c.read_message(timeout=1.0)  # no late ack
    for n in fresh_cluster.nodes:
        n.start()
    fresh_cluster.wait_ok(60)
    res, _ = ack_with_retry(lambda: connect(pub), [ev("key", "after")], 60)
    ids = [eid for eid, _ in backend.log_entries()]
    assert res["id"] in ids
    targets = [e["target"] for _, p in backend.log_entries()
               for e in p["events"]]
    assert "down" not in targets


def test_kill_shard_owner_primary(fresh_cluster, publisher_factory):
    """Kill the primary that holds log shard 0 while a client keeps sending
    events for keys of that node's shards: the client sees EUNAVAIL at most
    during the failover, then acks resume; a subscriber on another node
    receives the events acked afterwards, and the promoted replica's shard
    streams hold them."""
    backend = Topo(fresh_cluster)
    pub = publisher_factory(fresh_cluster.seeds, "--redis-timeout", "2s")
    owner = backend.shard_node(0)
    keys = keys_of_shards_on(backend, owner, 50, "load")
    sub = Subscriber(backend.other_node(0))
    with connect(pub) as c:
        assert invalidate(c, [ev("key", "before")])[0] is None
    acked, failures, stop = [], [], threading.Event()

    def sender():
        i = 0
        while not stop.is_set():
            try:
                with connect(pub) as c:
                    while not stop.is_set():
                        k = keys[i % len(keys)]
                        err, res = invalidate(c, [ev("key", k)], timeout=10)
                        if err is None:
                            acked.append((res, k))
                        else:
                            assert err["code"] == "EUNAVAIL", err
                            failures.append(err)
                        i += 1
                        time.sleep(0.02)
            except (ConnectionError, OSError, TimeoutError) as exc:
                failures.append(exc)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    time.sleep(0.5)
    killed_at = len(acked)
    new = fresh_cluster.kill_primary(owner)
    promoted_at = len(acked)
    assert backend.shard_node(0).port == new.port
    # Acks resume after the failover.
    harness.wait_until(lambda: len(acked) > killed_at + 20, 60,
                       what="acks after the failover")
    after = ack_with_retry(lambda: connect(pub), [ev("key", keys[0])], 30)[0]
    stop.set()
    t.join(15)
    assert all(isinstance(f, dict) for f in failures), failures
    assert [s for s, _ in after["ids"]] == [shard_of_key(keys[0])]
    assert in_streams(backend, after)
    # Everything acked once the new primary took over is in its shard
    # streams. (Acks from just before the kill may be lost with the old
    # primary if they had not reached its replica: Redis replication is
    # asynchronous.)
    missing = [(res["ids"], k) for res, k in acked[promoted_at:]
               if not in_streams(backend, res)]
    assert not missing, missing
    got = sub.collect(1000, timeout=3)
    assert after["ids"] in [p["ids"] for p in got]
    sub.close()
    print(f"acked {len(acked)}, {len(failures)} EUNAVAIL around the kill, "
          f"{len(acked) - promoted_at} checked after the promotion")


def test_kill_other_primary(fresh_cluster, publisher_factory):
    """Killing a primary does not interrupt the acks of events whose keys
    and log shards live on the other primaries; each ack names entries of
    those shards only, and the streams hold them."""
    backend = Topo(fresh_cluster)
    pub = publisher_factory(fresh_cluster.seeds, "--redis-timeout", "2s")
    other = backend.other_node(0)
    keep = backend.shard_node(0)
    keys = keys_of_shards_on(backend, keep, 20, "k")
    with connect(pub) as c:
        assert invalidate(c, [ev("key", "before")])[0] is None
        other.kill()
        acks = []
        for k in keys:
            err, res = invalidate(c, [ev("key", k)], timeout=5)
            assert err is None, err
            acks.append(res)
            time.sleep(0.05)
    for k, res in zip(keys, acks):
        assert [s for s, _ in res["ids"]] == [shard_of_key(k)]
        assert in_streams(backend, res)
