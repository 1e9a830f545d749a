"""A primary dies while events stream: no acked invalidation is lost.

A private 3+3 cluster, one worker per node, one publisher. The keys exist
(and are replicated) before anything is killed. Exact-key events stream in
small paced batches; once a fifth of them are acked, one primary is killed
with SIGKILL. The stream keeps going through the failover (retrying on
EUNAVAIL, EBUSY and dropped connections) until after its replica has been
promoted, and a last set of events is sent only once the promotion is done.
The promoted replica's worker must resume the victim's log shards from
their consumer groups (replicated state: nothing is guessed), and every
invalidated key must be gone from the primaries (the victim's slots are
checked on the new primary), while every key that was not named survives.

The victim holds log shards like every primary; acks wait for a replica
(ack-replicas defaults to 1), so no acked entry is lost with it. It does not
hold the heartbeats (only so that the monitoring figures stay readable).
"""

import time

from workerlib import (HB_KEY, Streamer, Topo, assert_keyset,
                       chunks, key_events, key_slot, keys_present, load_keys,
                       node_keys, poll, send_events, settle, start_workers,
                       wait_applied, wait_gone, worker_of, wstats)


def test_primary_killed_while_streaming(fresh_cluster, worker_factory,
                                        publisher_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    owners = topo.owners()
    victim = next(p for p in topo.primaries()
                  if p.port != owners[key_slot(HB_KEY)].port)
    heir = cluster.replica_of(victim)
    assert heir is not None

    named = [f"fo:{i}" for i in range(9000)]
    late = [f"fo:late:{i}" for i in range(1000)]
    kept = [f"fo:{i}" for i in range(9000, 12000)] + \
           [f"fo:{i}:x" for i in range(0, 9000, 3)]
    load_keys(topo, named + late + kept)
    # Replicated before the kill: WAIT on every primary.
    for p in topo.primaries():
        assert p.client().execute_command("WAIT", 1, 5000) >= 1
    victim_keys = node_keys(victim, "fo:*")
    assert len(victim_keys & set(named)) > 1000

    workers = start_workers(topo, worker_factory, "--role-poll", "200ms",
                            "--heartbeat-interval", "200ms")
    pub = publisher_factory(topo.seeds)
    heir_worker = worker_of(workers, heir)
    assert wstats(heir_worker)["role"] == "replica"

    batches = chunks(key_events(named), 10)  # 900 requests
    stream = Streamer(pub, batches, pace=0.01, window=2)
    stream.start()
    stream.wait_acked(len(batches) // 5, 60)
    acked_at_kill = stream.acked
    killed = time.monotonic()
    new_primary = cluster.kill_primary(victim, timeout=60)
    assert new_primary.port == heir.port
    healthy_s = time.monotonic() - killed
    poll(lambda: wstats(heir_worker)["role"] == "primary", 20,
         "the heir's worker acting as primary", interval=0.02)
    acting_s = time.monotonic() - killed
    acked_at_promotion = stream.acked
    # Events sent strictly after the promotion.
    send_events(pub, key_events(late), chunk=100)
    ids = stream.finish(180)
    assert acked_at_kill < acked_at_promotion or \
        acked_at_promotion < len(batches), "nothing streamed over the failover"

    gone = set(named) | set(late)
    wait_gone(topo, "fo:*", gone, 90, "invalidated keys removed")
    clean_s = time.monotonic() - killed
    survivors = [w for w in workers if w.node != victim.addr]
    wait_applied(survivors, max(ids))
    settle(survivors)
    assert_keyset(keys_present(topo, "fo:*"), set(kept),
                  "fo: keys after the failover")
    # The victim's former keys, checked on the node that now has them.
    assert_keyset(node_keys(new_primary, "fo:*"),
                  {k for k in kept if topo.owner_of(k).port == heir.port},
                  "keys on the promoted node")

    st = wstats(heir_worker)
    assert st["keys_unlinked"] > 0, st
    assert st["owned_slots"] > 0, st
    assert st["shards"] > 0 and st["gaps"] == 0, st
    assert "node role: replica -> primary" in heir_worker.log(), \
        heir_worker.log_tail(30)
    print(f"cluster failed over and healthy {healthy_s:.1f} s after the "
          f"kill, heir's worker acting {acting_s:.1f} s after it, every "
          f"invalidated key gone {clean_s:.1f} s after it")
    print(f"acked at kill {acked_at_kill}, at promotion {acked_at_promotion}"
          f" of {len(batches)}; publisher retries {stream.sender.retries} "
          f"{dict(stream.sender.errors)}")
