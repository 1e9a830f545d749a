"""Replicated acks: with ack-replicas N (default: 1 when the shard's node
has a replica) the publisher acks a batch only once WAIT counted N
replicas. A stopped replica turns acks into EUNAVAIL within redis-timeout,
never a false ack; ack-replicas 0 keeps acking. The double fault on a
cluster (a primary's replica stopped, then the primary, which holds log
shards, killed and the replica promoted with TAKEOVER) loses no acked
invalidation."""

import signal
import time

import pytest

import harness
from harness import RedisServer
from pubtest import ack_with_retry, connect, ev, invalidate, stats
from workerlib import (SHARD_SLOTS, Topo, key_events, key_slot, keys_present,
                       load_keys, poll, shard_key, shard_of_key, start_workers,
                       wait_gone, worker_of)


@pytest.fixture
def replicated(workdir):
    """A standalone primary with one replica, in sync."""
    primary = RedisServer(workdir).start()
    replica = RedisServer(workdir, extra_args=(
        "--replicaof", harness.HOST, primary.port)).start()
    try:
        poll(lambda: replica.info("replication").get("master_link_status")
             == "up" and primary.client().execute_command("WAIT", 1, 100)
             >= 1, 20, "the replica in sync")
        yield primary, replica
    finally:
        if replica.alive():
            resume(replica)
        replica.stop()
        primary.stop()


def pause(node):
    """SIGSTOP a redis-server: it keeps its connections but answers
    nothing, like a hung host."""
    node.proc.signal(signal.SIGSTOP)


def resume(node):
    node.proc.signal(signal.SIGCONT)


def log_ids(node, shard=0):
    """The entry ids of log shard shard's stream on node (standalone, every
    entry is in shard 0)."""
    return {e.decode() for e, _ in node.client().xrange(shard_key(shard))}


def test_default_waits_for_the_replica(replicated, publisher_factory):
    primary, replica = replicated
    pub = publisher_factory(primary.addr, "--redis-timeout", "2s")
    poll(lambda: stats(pub)["ack_replicas"] == 1, 10,
         "the default meaning 1 replica")
    # The first batch on a fresh node also loads the script; on a loaded
    # machine its WAIT may run out of time, which is EUNAVAIL, never an ack.
    res, _ = ack_with_retry(lambda: connect(pub), [ev("key", "before")], 20)
    # WAIT confirmed it, so the replica holds the entry already.
    assert res["id"] in log_ids(replica)
    with connect(pub) as c:

        pause(replica)
        try:
            for i in range(3):
                t0 = time.monotonic()
                err, res = invalidate(c, [ev("key", f"stopped:{i}")],
                                      timeout=5)
                assert err is not None and err["code"] == "EUNAVAIL", res
                # WAIT's own answer names the count; on a slow build the
                # batch deadline may fire first, which names the node too.
                # Either way it is no ack.
                msg = err["message"]
                assert ("0 of 1 replicas confirmed" in msg or
                        "did not take or confirm the batch" in msg), err
                assert primary.addr in msg, err
                assert time.monotonic() - t0 < 4.5
            with pytest.raises(TimeoutError):
                c.read_message(timeout=1.0)  # no late ack
        finally:
            resume(replica)
    res, _ = ack_with_retry(lambda: connect(pub), [ev("key", "after")], 20)
    assert res["id"] in log_ids(replica)
    st = stats(pub)
    assert st["wait_failed"] >= 1
    assert st["ack_replicas"] == 1
    # The refused batches are in the log all the same (EUNAVAIL may have
    # been logged), and what was acked before and after survives.
    ids = log_ids(primary)
    assert len(ids) >= 5
    assert {res["id"]} <= ids


def test_more_replicas_than_exist(replicated, publisher_factory):
    primary, _ = replicated
    pub = publisher_factory(primary.addr, "--redis-timeout", "1s",
                            "--ack-replicas", "2")
    assert stats(pub)["ack_replicas"] == 2
    with connect(pub) as c:
        msgs = []
        for i in range(4):
            err, res = invalidate(c, [ev("key", f"k{i}")], timeout=5)
            assert err is not None and err["code"] == "EUNAVAIL", res
            msgs.append(err["message"])
    # The first batch meets NOSCRIPT, and its WAIT then blocks the budget
    # away before the EVAL: later ones report WAIT's count.
    assert any("1 of 2 replicas confirmed" in m for m in msgs), msgs
    assert stats(pub)["wait_failed"] >= 1


def test_zero_acks_while_the_replica_is_stopped(replicated,
                                                publisher_factory):
    primary, replica = replicated
    pub = publisher_factory(primary.addr, "--redis-timeout", "1s",
                            "--ack-replicas", "0")
    pause(replica)
    try:
        with connect(pub) as c:
            for i in range(5):
                err, res = invalidate(c, [ev("key", f"k{i}")], timeout=5)
                assert err is None, err
                assert res["id"] in log_ids(primary)
    finally:
        resume(replica)
    st = stats(pub)
    assert st["ack_replicas"] == 0 and st["wait_failed"] == 0


def test_default_without_a_replica_is_zero(standalone, publisher_factory):
    pub = publisher_factory(standalone.addr, "--redis-timeout", "1s")
    with connect(pub) as c:
        err, res = invalidate(c, [ev("key", "k")], timeout=5)
    assert err is None, err
    st = stats(pub)
    assert st["ack_replicas"] == 0 and st["wait_failed"] == 0


def test_double_fault(fresh_cluster, worker_factory, publisher_factory):
    """SIGSTOP the replica of a primary that holds log shards: events for
    that primary's shards are not acked. Kill the primary, resume the
    replica, promote it with CLUSTER FAILOVER TAKEOVER: every acked entry is
    in its shard's stream on the heir and every acked key is gone, while
    the keys never invalidated survive."""
    cluster = fresh_cluster
    topo = Topo(cluster)
    victim = topo.primaries()[0]
    heir = cluster.replica_of(victim)
    assert heir is not None
    owners = topo.owners()
    # Keys the victim holds whose shard's stream it holds too.
    mine = [k for k in (f"df:{i}" for i in range(3000))
            if owners[key_slot(k)].port == victim.port and
            owners[shard_of_key(k) * SHARD_SLOTS].port == victim.port]
    acked_keys, refused_keys, kept = mine[:40], mine[40:60], mine[60:160]
    assert len(kept) == 100
    shards = {shard_of_key(k) for k in mine}
    load_keys(topo, mine)
    for p in topo.primaries():
        assert p.client().execute_command("WAIT", 1, 5000) >= 1

    workers = start_workers(topo, worker_factory, "--role-poll", "200ms")
    pub = publisher_factory(topo.seeds, "--redis-timeout", "1s",
                            "--ack-replicas", "1")
    # The victim's worker is down: it must not be what deletes the acked
    # keys, the heir's worker must find them in the promoted shards.
    victim_worker = worker_of(workers, victim)
    victim_worker.signal(signal.SIGSTOP)
    acked_ids = []
    try:
        with connect(pub) as c:
            for i in range(0, len(acked_keys), 10):
                err, res = invalidate(c, key_events(acked_keys[i:i + 10]),
                                      timeout=5)
                assert err is None, err
                assert {s for s, _ in res["ids"]} <= shards, res
                acked_ids.extend((s, eid) for s, eid in res["ids"])
            pause(heir)
            try:
                for i in range(0, len(refused_keys), 10):
                    err, res = invalidate(
                        c, key_events(refused_keys[i:i + 10]), timeout=5)
                    assert err is not None and err["code"] == "EUNAVAIL", res
                with pytest.raises(TimeoutError):
                    c.read_message(timeout=0.5)  # no late ack
                victim.kill()
            finally:
                resume(heir)
        heir.client().execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
        poll(lambda: heir.role() == "master", 20, "the heir promoted")
        poll(lambda: all(topo.shard_node(s).port == heir.port
                         for s in shards), 30,
             "the heir serving the shards' home slots")
    finally:
        victim_worker.signal(signal.SIGCONT)
    # No acked invalidation is missing from the promoted shards ...
    missing = [(s, eid) for s, eid in acked_ids if eid not in log_ids(heir, s)]
    assert not missing, missing
    # ... every acked key is gone once the heir's worker applied it ...
    wait_gone(topo, "df:*", set(acked_keys), 60, "acked keys removed")
    # ... and what no event named survives.
    present = keys_present(topo, "df:*")
    assert set(kept) <= present, sorted(set(kept) - present)[:8]
    assert stats(pub)["wait_failed"] >= 1
