"""Lossless catch-up after a worker is killed with SIGKILL.

The keys exist before anything starts. 10,000 exact-key events stream
through the publisher in small paced batches; after a quarter of them are
acked, one worker (standalone: the only one; cluster: a primary's) is killed
with SIGKILL, and it is started again while the stream still runs. It keeps
no state of its own: the consumer groups of its node's log shards hold what
it had read and acknowledged. Every invalidated key must be gone, every key
with the same prefix that was not named must still be there, and the
restarted worker must have read the entries logged while it was down.
"""

import pytest

from workerlib import (Streamer, Topo, assert_keyset, chunks, key_events,
                       keys_present, load_keys, poll, settle, start_workers,
                       wait_applied, wait_gone, worker_ready, wstats)


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def test_kill9_worker_restart_catches_up(topo, worker_factory,
                                         publisher_factory):
    named = [f"cu:{i}" for i in range(10000)]
    kept = [f"cu:{i}" for i in range(10000, 13000)] + \
           [f"cu:{i}:x" for i in range(0, 10000, 4)]
    load_keys(topo, named + kept)
    workers = start_workers(topo, worker_factory)
    pub = publisher_factory(topo.seeds)
    victim_node = topo.primaries()[0]
    victim = next(w for w in workers if w.node == victim_node.addr)
    assert wstats(victim)["role"] == "primary"

    batches = chunks(key_events(named), 25)  # 400 requests
    stream = Streamer(pub, batches, pace=0.01, window=2)
    stream.start()
    stream.wait_acked(len(batches) // 4, 60)
    victim.kill()
    killed_at = stream.acked
    # Let a good part of the stream pass while the worker is down.
    stream.wait_acked(killed_at + len(batches) // 4, 60)
    # Entries logged meanwhile wait in the groups of the victim's shards.
    down_shards = topo.shard_state()
    waiting = sum(last > delivered for last, delivered, _ in
                  (down_shards[s] for s in down_shards
                   if topo.shard_node(s).port == victim_node.port))
    assert waiting > 0, down_shards
    restarted = worker_factory(victim_node)
    workers = [w for w in workers if w is not victim] + [restarted]
    poll(lambda: worker_ready(restarted, victim_node), 40,
         "restarted worker live")
    restarted_at = stream.acked
    ids = stream.finish(120)
    assert killed_at < len(batches)

    wait_gone(topo, "cu:*", set(named), 60, "invalidated keys removed")
    wait_applied(workers, max(ids))
    settle(workers)
    assert_keyset(keys_present(topo, "cu:*"), set(kept),
                  "cu: keys after the stream")

    st = wstats(restarted)
    assert st["events_received"] > 0, st
    assert st["gaps"] == 0, st
    assert st["decode_errors"] == 0, st
    # The stream really was in flight around the crash and the restart.
    assert killed_at < restarted_at <= len(batches)
