"""A standalone primary with one replica, a worker on each (issue 3:
takeover outside a cluster). Both workers' heartbeats reach the primary.

The primary's worker is frozen (SIGSTOP) and events for its keys are acked;
the replica's worker, a hot standby, tracks them and deletes nothing. The
heartbeats hash is then made unreadable (a string under its name) and the
replica promoted (REPLICAOF NO ONE). Its worker notices within about a
second, cannot read where the old worker stood, replays from its own
position at once, and keeps asking. Once the heartbeats are readable again
it finds the old worker's position, which is further back than the
takeover window reached (the events are older than the window), replays
from there, and the keys go. Every other key survives.
"""

import signal

import pytest

from harness import HOST, RedisServer
from workerlib import (HB_KEY, Topo, assert_keyset, heartbeats, key_events,
                       keys_present, load_keys, poll, send_past_window, sid,
                       wait_applied, wait_gone, worker_ready, wstats)

WINDOW_MS = 1000
FLAGS = ("--takeover-window", f"{WINDOW_MS}ms", "--role-poll", "200ms",
         "--heartbeat-interval", "200ms")


@pytest.fixture
def pair(workdir):
    primary = RedisServer(workdir).start()
    replica = RedisServer(workdir, extra_args=("--replicaof", HOST,
                                               primary.port)).start()
    yield primary, replica
    replica.stop()
    primary.stop()


def test_promotion_rereads_heartbeats(pair, worker_factory,
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
    # Both heartbeats reach the primary, the replica's too (its own node
    # is read-only, so it writes to its primary).
    poll(lambda: {k: v["role"] for k, v in heartbeats(Topo(primary)).items()}
         == {wp.node: "primary", wr.node: "replica"}, 10, "heartbeats written")
    frozen_at = wstats(wp)["last_applied_id"]

    wp.signal(signal.SIGSTOP)
    try:
        last = send_past_window(pub, wr, key_events(named), WINDOW_MS,
                                "sb-tick")
        assert primary.client().execute_command("WAIT", 1, 5000) == 1
        r = replica.client()
        assert len(r.keys("sb:*")) == len(named) + len(kept)
        assert wstats(wr)["unlinks_sent"] == 0

        # Heartbeats unreadable at the promotion.
        p = primary.client()
        saved = p.hgetall(HB_KEY)
        assert wp.node in {k.decode() for k in saved}
        p.delete(HB_KEY)
        p.set(HB_KEY, "not a hash")
        assert primary.client().execute_command("WAIT", 1, 5000) == 1
        r.execute_command("REPLICAOF", "NO", "ONE")
        poll(lambda: "could not read the heartbeats" in wr.log(), 10,
             "the promoted worker tried the heartbeats", interval=0.05)
        assert wstats(wr)["role"] == "primary"
        # Its own position plus the window does not reach the events.
        poll(lambda: wstats(wr)["live"], 10, "replayed from its own position")
        assert len(r.keys("sb:*")) == len(named) + len(kept)

        # Readable again: it finds the old worker's position and replays.
        r.delete(HB_KEY)
        r.hset(HB_KEY, mapping=saved)
        wait_gone(Topo(replica), "sb:*", set(named), 30,
                  "keys removed after the re-read")
    finally:
        wp.signal(signal.SIGCONT)
    wait_applied([wr], last)
    assert_keyset(keys_present(Topo(replica), "sb:*"), set(kept),
                  "sb: keys on the promoted node")
    log = wr.log()
    assert "the old primary's worker was behind our replay" in log, \
        wr.log_tail(20)
    told = next(line for line in log.splitlines()
                if f"old primary {primary.addr}'s worker" in line)
    # A heartbeat may be a beat behind where the worker froze.
    assert sid(told.split("last applied ")[1].split()[0]) <= sid(frozen_at)
    st = wstats(wr)
    assert st["replays"] >= 2, st
