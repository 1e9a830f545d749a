"""inval-publisher when Redis fails: every node down gives EUNAVAIL (never
an ack) and the publisher recovers by itself once Redis is back; killing a
cluster primary (the log's owner, or another) does not stop it for longer
than the cluster's own failover."""

import threading
import time

import harness
from pubtest import (LOG_KEY, Backend, Subscriber, ack_with_retry, connect, ev,
                     invalidate, stats)


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
    backend = Backend("cluster", fresh_cluster)
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


def test_kill_log_owner_primary(fresh_cluster, publisher_factory):
    """Kill the primary that owns the log while a client keeps sending: the
    client sees EUNAVAIL at most during the failover, then acks resume; a
    subscriber on another node receives the events acked afterwards, and
    the new primary's log holds them."""
    backend = Backend("cluster", fresh_cluster)
    pub = publisher_factory(fresh_cluster.seeds, "--redis-timeout", "2s")
    owner = backend.log_node()
    sub = Subscriber(backend.other_node())
    with connect(pub) as c:
        assert invalidate(c, [ev("key", "before")])[0] is None
    acked, failures, stop = [], [], threading.Event()

    def sender():
        i = 0
        while not stop.is_set():
            try:
                with connect(pub) as c:
                    while not stop.is_set():
                        err, res = invalidate(c, [ev("key", f"load:{i}")],
                                              timeout=10)
                        if err is None:
                            acked.append((res["id"], f"load:{i}"))
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
    assert backend.log_node().port == new.port
    # Acks resume after the failover.
    harness.wait_until(lambda: len(acked) > killed_at + 20, 60,
                       what="acks after the failover")
    after = ack_with_retry(lambda: connect(pub), [ev("key", "after")], 30)[0]
    stop.set()
    t.join(15)
    assert all(isinstance(f, dict) for f in failures), failures
    log = dict(backend.log_entries())
    assert after["id"] in log
    # Everything acked once the new primary took over is in its log. (Acks
    # from just before the kill may be lost with the old primary if they
    # had not reached its replica: Redis replication is asynchronous.)
    missing = [(eid, tgt) for eid, tgt in acked[promoted_at:]
               if eid not in log]
    assert not missing, missing
    got = sub.collect(1000, timeout=3)
    seen = {p["id"] for p in got}
    assert after["id"] in seen
    sub.close()
    print(f"acked {len(acked)}, {len(failures)} EUNAVAIL around the kill, "
          f"{len(acked) - promoted_at} checked after the promotion")


def test_kill_other_primary(fresh_cluster, publisher_factory):
    """Killing a primary that does not own the log does not interrupt
    publishing."""
    backend = Backend("cluster", fresh_cluster)
    pub = publisher_factory(fresh_cluster.seeds, "--redis-timeout", "2s")
    other = backend.other_node()
    with connect(pub) as c:
        assert invalidate(c, [ev("key", "before")])[0] is None
        other.kill()
        for i in range(20):
            err, res = invalidate(c, [ev("key", f"k{i}")], timeout=5)
            assert err is None, err
            time.sleep(0.05)
    log = dict(backend.log_entries())
    assert res["id"] in log
