"""Roles, slot maps and where a worker sends its commands, on a private 3+3
cluster with one worker per node.

1. Own node first: after CONFIG RESETSTAT, exact keys and a prefix are
   invalidated; each primary ran the UNLINKs of its own worker, plus the
   few single-key ones other workers sent for keys of a shard range split
   between two primaries; replicas ran no SCAN and their workers sent
   nothing.
2. Periodic slot-map refresh: a slot (not a log shard's home) moves with no
   event in flight; both workers' owned_slots follow within the refresh
   period.
3. Promotion with the old worker frozen: a primary's worker is frozen
   (SIGSTOP), events for keys of that primary's own shards are acked (the
   standby consumes nothing and deletes nothing), then the replica is
   promoted by CLUSTER FAILOVER FORCE. Its worker notices within about a
   second (ROLE polling) and resumes the shards from their consumer groups,
   which the replica holds: the keys go, with no window guessed. Unfrozen,
   the old worker notices its demotion and stops acting.
4. A graceful fail-back with both workers running: each follows its node's
   new role within about a second, and only the new primary's worker acts.
5. (Second test.) The primary that holds the heartbeats dies after its own
   worker did: the promoted replica's worker applies the entries its
   predecessor never read, with the heartbeats gone with the primary.
"""

import signal
import time

from workerlib import (HB_KEY, SHARD_SLOTS, SlotMover, Topo, assert_keyset,
                       command_calls, ev, key_events, key_slot, keys_present,
                       load_keys, poll, send_events, settle, start_workers,
                       tag_for_each_slot, wait_applied, wait_gone, worker_of,
                       wstats)


def owned(w):
    return wstats(w)["owned_slots"]


def test_own_node_slot_refresh_and_takeover(fresh_cluster, worker_factory,
                                            publisher_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    workers = start_workers(topo, worker_factory, "--role-poll", "500ms")
    pub = publisher_factory(topo.seeds)
    for n in topo.nodes():
        n.client().config_resetstat()

    # 1. Commands go to the worker's own node only.
    named = [f"on:{i}" for i in range(2000)]
    kept = [f"on:{i}" for i in range(2000, 3000)]
    pref = [f"onp:{i}" for i in range(1000)]
    load_keys(topo, named + kept + pref)
    last = send_events(pub, key_events(named) + [ev("prefix", "onp:")])
    wait_gone(topo, "on*", set(named) | set(pref), 30, "keys removed")
    wait_applied(workers, last)
    settle(workers)
    assert_keyset(keys_present(topo, "on*"), set(kept), "on: keys")
    # Single-key UNLINKs of names (value, lock, stale copy) that other
    # workers deleted here: at most three per key they sent elsewhere.
    remote = sum(wstats(w)["remote_unlinks"] for w in workers)
    for n in topo.nodes():
        st = wstats(worker_of(workers, n))
        if n.role() == "master":
            assert st["unlinks_sent"] > 0, st
            assert st["unlinks_sent"] <= command_calls(n, "unlink") <= \
                st["unlinks_sent"] + 3 * remote, (n.addr, st, remote)
        else:
            assert command_calls(n, "scan") == 0, n.addr
            assert st["unlinks_sent"] == 0 and st["keys_scanned"] == 0, st
        assert command_calls(n, "asking") == 0, n.addr

    # 2. A slot moves with nothing in flight: the periodic refresh sees it.
    owners = topo.owners()
    victim, other = topo.quiet_primary()
    wv, wo = worker_of(workers, victim), worker_of(workers, other)
    before_v, before_o = owned(wv), owned(wo)
    refreshes = wstats(wv)["slot_map_refreshes"]
    slot = next(s for s in range(len(owners)) if owners[s].port == other.port
                and s % SHARD_SLOTS != 0 and s != key_slot(HB_KEY))
    t0 = time.monotonic()
    SlotMover(cluster, other, victim).move(slot)
    poll(lambda: owned(wv) == before_v + 1 and owned(wo) == before_o - 1,
         20, "slot maps refreshed")
    refresh_s = time.monotonic() - t0
    assert wstats(wv)["slot_map_refreshes"] > refreshes
    cluster.wait_ok(60)

    # 3. Promotion with the old worker frozen.
    heir = cluster.replica_of(victim)
    wh = worker_of(workers, heir)
    tags = tag_for_each_slot()
    owners = topo.owners()
    # Slots of the victim whose log shard the victim holds too.
    mine = [s for s, o in enumerate(owners) if o.port == victim.port and
            owners[s - s % SHARD_SLOTS].port == victim.port]
    tk = [f"tk:{{{tags[s]}}}:{i}" for s in mine[:300] for i in range(3)]
    tk_kept = [f"tk:{{{tags[s]}}}:x" for s in mine[:300]]
    load_keys(topo, tk + tk_kept)
    assert victim.client().execute_command("WAIT", 1, 5000) >= 1
    wv.signal(signal.SIGSTOP)
    try:
        send_events(pub, key_events(tk), chunk=100)
        # Nobody acted: the frozen worker cannot, the standby must not.
        assert_keyset(keys_present(topo, "tk:*"), set(tk) | set(tk_kept),
                      "tk: keys before the failover")
        assert wstats(wh)["shards"] == 0
        heir.client().execute_command("CLUSTER", "FAILOVER", "FORCE")
        poll(lambda: heir.role() == "master", 30, "heir promoted",
             interval=0.02)
        promoted = time.monotonic()
        poll(lambda: wstats(wh)["role"] == "primary", 10,
             "heir's worker acting", interval=0.02)
        detect_s = time.monotonic() - promoted
        wait_gone(topo, "tk:*", set(tk), 30, "keys removed by the heir")
    finally:
        wv.signal(signal.SIGCONT)
    thawed = time.monotonic()
    poll(lambda: wstats(wv)["role"] == "replica", 10, "old worker demoted",
         interval=0.02)
    demote_s = time.monotonic() - thawed
    cluster.wait_ok(60)
    assert detect_s < 3.0, detect_s
    assert demote_s < 3.0, demote_s
    st = wstats(wh)
    assert st["shards"] > 0 and st["events_received"] >= len(tk), st
    assert wstats(wv)["shards"] == 0

    # The demoted worker acts no more; the heir handles the slots now.
    sent = wstats(wv)["unlinks_sent"]
    more = [f"tk:{{{tags[s]}}}:m" for s in mine[:100]]
    load_keys(topo, more)
    last = send_events(pub, key_events(more))
    wait_gone(topo, "tk:*", set(more), 30, "keys removed after the failover")
    wait_applied([w for w in workers], last)
    settle(workers)
    assert wstats(wv)["unlinks_sent"] == sent
    assert_keyset(keys_present(topo, "tk:*"), set(tk_kept), "tk: survivors")

    # 4. Fail back with both workers running: each sees its node's new role
    # within about a second of the change.
    victim.client().execute_command("CLUSTER", "FAILOVER")
    poll(lambda: victim.role() == "master" and heir.role() == "slave", 30,
         "failed back", interval=0.02)
    changed = time.monotonic()
    poll(lambda: wstats(wv)["role"] == "primary" and
         wstats(wh)["role"] == "replica", 10, "workers follow the fail-back",
         interval=0.02)
    back_s = time.monotonic() - changed
    assert back_s < 3.0, back_s
    cluster.wait_ok(60)
    again = [f"tk:{{{tags[s]}}}:a" for s in mine[:100]]
    load_keys(topo, again)
    sent = wstats(wh)["unlinks_sent"]
    last = send_events(pub, key_events(again))
    wait_gone(topo, "tk:*", set(again), 30, "keys removed after fail-back")
    wait_applied(workers, last)
    settle(workers)
    assert wstats(wh)["unlinks_sent"] == sent
    assert_keyset(keys_present(topo, "tk:*"), set(tk_kept), "tk: survivors")
    print(f"slot map refreshed {refresh_s:.1f} s after a quiet move; "
          f"promotion seen by the worker {detect_s * 1000:.0f} ms after "
          f"ROLE changed; demotion seen {demote_s * 1000:.0f} ms after the "
          f"old worker resumed; fail-back seen by both workers "
          f"{back_s * 1000:.0f} ms after the roles changed")


def test_promotion_after_the_old_worker_died(fresh_cluster, worker_factory,
                                            publisher_factory):
    """The primary holding the heartbeats dies after its own worker did:
    the entries logged meanwhile were never read. Its replica's worker,
    promoted, reads them from the consumer groups the replica holds."""
    cluster = fresh_cluster
    topo = Topo(cluster)
    victim = topo.owner_of(HB_KEY)
    heir = cluster.replica_of(victim)
    workers = start_workers(topo, worker_factory, "--heartbeat-interval",
                            "200ms")
    pub = publisher_factory(topo.seeds)
    wv, wh = worker_of(workers, victim), worker_of(workers, heir)
    tags = tag_for_each_slot()
    owners = topo.owners()
    mine = [s for s, o in enumerate(owners) if o.port == victim.port and
            owners[s - s % SHARD_SLOTS].port == victim.port]
    tk = [f"hk:{{{tags[s]}}}:{i}" for s in mine[:300] for i in range(3)]
    kept = [f"hk:{{{tags[s]}}}:x" for s in mine[:300]]
    load_keys(topo, tk + kept)
    wv.kill()
    send_events(pub, key_events(tk), chunk=100)
    for p in topo.primaries():  # keys, log and heartbeats on the replicas
        assert p.client().execute_command("WAIT", 1, 5000) >= 1
    assert_keyset(keys_present(topo, "hk:*"), set(tk) | set(kept),
                  "hk: keys before the failover")

    cluster.kill_primary(victim, timeout=60)
    poll(lambda: wstats(wh)["role"] == "primary", 20, "heir's worker acting")
    wait_gone(topo, "hk:*", set(tk), 60, "keys removed by the heir")
    survivors = [w for w in workers if w is not wv]
    wait_applied(survivors)
    settle(survivors)
    assert_keyset(keys_present(topo, "hk:*"), set(kept), "hk: survivors")
    st = wstats(wh)
    assert st["events_received"] >= len(tk) and st["gaps"] == 0, st
