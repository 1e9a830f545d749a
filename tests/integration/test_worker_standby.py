"""A standalone primary with one replica, a worker on each: promotion
outside a cluster.

The primary's worker is frozen (SIGSTOP) and events for its keys are acked
(the publisher waits for the replica: ack-replicas defaults to 1). The
replica's worker, a hot standby, consumes nothing and deletes nothing. The
heartbeats hash is made unreadable (a string under its name), to show that
nothing is guessed from heartbeats any more, and the replica is promoted
(REPLICAOF NO ONE). Its worker resumes exactly where the frozen one stood,
from the consumer group that the replica holds: the events logged while the
old worker was frozen are delivered to it, the keys go, and every other key
survives.
"""

import signal

import pytest

from harness import HOST, RedisServer
from workerlib import (HB_KEY, Topo, assert_keyset, key_events, keys_present,
                       load_keys, poll, send_events, shard_key, wait_applied,
                       wait_gone, worker_ready, wstats)

FLAGS = ("--role-poll", "200ms", "--heartbeat-interval", "200ms")


@pytest.fixture
def pair(workdir):
    primary = RedisServer(workdir).start()
    replica = RedisServer(workdir, extra_args=("--replicaof", HOST,
                                               primary.port)).start()
    yield primary, replica
    replica.stop()
    primary.stop()


def test_promotion_resumes_from_the_group(pair, worker_factory,
                                          publisher_factory):
    primary, replica = pair
    poll(lambda: replica.info("replication").get("master_link_status") ==
         "up", 20, "replica linked")
    wp = worker_factory(primary, *FLAGS)
    wr = worker_factory(replica, *FLAGS)
    poll(lambda: worker_ready(wp, primary) and worker_ready(wr, replica), 30,
         "workers live")
    assert wstats(wr)["role"] == "replica"
    pub = publisher_factory([primary.addr])
    named = [f"sb:{i}" for i in range(500)]
    kept = [f"sb:{i}:x" for i in range(500)]
    load_keys(Topo(primary), named + kept)
    # A first entry, applied by the primary's worker: the group is at it.
    first = send_events(pub, key_events(["sb:warm"]))
    wait_applied([wp], first)
    key = shard_key(0)

    wp.signal(signal.SIGSTOP)
    try:
        send_events(pub, key_events(named), chunk=50)
        r = replica.client()
        assert len(r.keys("sb:*")) == len(named) + len(kept)
        st = wstats(wr)
        assert st["unlinks_sent"] == 0 and st["shards"] == 0, st
        # The replica holds the group, behind the log by what the frozen
        # worker never read.
        group = r.xinfo_groups(key)[0]
        assert group["last-delivered-id"].decode() == first, group
        assert r.xlen(key) >= 2  # the first entry, then the batches

        # Heartbeats unreadable: the promotion does not need them.
        p = primary.client()
        p.delete(HB_KEY)
        p.set(HB_KEY, "not a hash")
        assert p.execute_command("WAIT", 1, 5000) == 1
        r.execute_command("REPLICAOF", "NO", "ONE")
        wait_gone(Topo(replica), "sb:*", set(named), 30,
                  "keys removed by the promoted node's worker")
    finally:
        wp.signal(signal.SIGCONT)
    wait_applied([wr])
    assert_keyset(keys_present(Topo(replica), "sb:*"), set(kept),
                  "sb: keys on the promoted node")
    st = wstats(wr)
    assert st["role"] == "primary" and st["shards"] == 1, st
    assert st["events_received"] == len(named), st
    assert st["gaps"] == 0, st
