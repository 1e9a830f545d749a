"""Roles, slot maps and where a worker sends its commands (issue 3), on a
private 3+3 cluster with one worker per node.

1. Own node only: after CONFIG RESETSTAT, exact keys and a prefix are
   invalidated; every UNLINK a primary executed came from its own worker
   (the node's UNLINK count equals that worker's unlinks_sent), replicas ran
   no SCAN, and their workers sent nothing.
2. Periodic slot-map refresh: a slot moves with no event in flight (so no
   MOVED reply prompts a refresh); both workers' owned_slots follow within
   the refresh period.
3. Takeover past the old worker's position: a primary's worker is frozen
   (SIGSTOP), events for that primary's keys are acked (the standby tracks
   them, deleting nothing), then the replica is promoted by CLUSTER
   FAILOVER, once the events are older than the takeover window. Its worker
   notices within about a second (ROLE polling), reads the frozen worker's
   last heartbeat position, replays the log from the takeover window before
   it, and removes the keys. Unfrozen, the old
   worker notices its demotion and stops acting.
4. A graceful fail-back with both workers running: each follows its node's
   new role within about a second, and only the new primary's worker acts.
5. (Second test.) The primary that holds the heartbeats dies after its own
   worker: the promoted replica's worker still finds the dead worker's last
   position and replays from there.
"""

import signal
import time

from workerlib import (HB_KEY, LOG_KEY, SlotMover, Topo, assert_keyset,
                       command_calls, ev, key_events, key_slot, keys_present,
                       load_keys, poll, send_events, send_past_window, settle,
                       sid, start_workers, tag_for_each_slot, wait_applied,
                       wait_gone, worker_of, wstats)

WINDOW_MS = 1000


def owned(w):
    return wstats(w)["owned_slots"]


def test_own_node_slot_refresh_and_takeover(fresh_cluster, worker_factory,
                                            publisher_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    workers = start_workers(topo, worker_factory, "--takeover-window",
                            f"{WINDOW_MS}ms", "--role-poll", "500ms")
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
    for n in topo.nodes():
        st = wstats(worker_of(workers, n))
        if n.role() == "master":
            assert st["unlinks_sent"] > 0, st
            assert command_calls(n, "unlink") == st["unlinks_sent"], \
                (n.addr, st)
        else:
            assert command_calls(n, "scan") == 0, n.addr
            assert st["unlinks_sent"] == 0 and st["keys_scanned"] == 0, st
        assert command_calls(n, "asking") == 0, n.addr

    # 2. A slot moves with nothing in flight: the periodic refresh sees it.
    owners = topo.owners()
    fixed = {key_slot(LOG_KEY), key_slot(HB_KEY)}
    victim, other = topo.quiet_primary()
    wv, wo = worker_of(workers, victim), worker_of(workers, other)
    before_v, before_o = owned(wv), owned(wo)
    refreshes = wstats(wv)["slot_map_refreshes"]
    slot = next(s for s in range(len(owners)) if owners[s].port == other.port
                and s not in fixed)
    t0 = time.monotonic()
    SlotMover(cluster, other, victim).move(slot)
    poll(lambda: owned(wv) == before_v + 1 and owned(wo) == before_o - 1,
         20, "slot maps refreshed")
    refresh_s = time.monotonic() - t0
    assert wstats(wv)["slot_map_refreshes"] > refreshes
    cluster.wait_ok(60)

    # 3. Takeover past a frozen worker's position.
    heir = cluster.replica_of(victim)
    wh = worker_of(workers, heir)
    tags = tag_for_each_slot()
    mine = [s for s, o in enumerate(topo.owners()) if o.port == victim.port]
    tk = [f"tk:{{{tags[s]}}}:{i}" for s in mine[:300] for i in range(3)]
    tk_kept = [f"tk:{{{tags[s]}}}:x" for s in mine[:300]]
    load_keys(topo, tk + tk_kept)
    assert victim.client().execute_command("WAIT", 1, 5000) >= 1
    frozen_at = wstats(wv)["last_applied_id"]
    wv.signal(signal.SIGSTOP)
    try:
        # Beyond the window of the heir's own position at the promotion:
        # only the frozen worker's reported position reaches them.
        send_past_window(pub, wh, key_events(tk), WINDOW_MS, "tk-tick")
        # Nobody acted: the frozen worker cannot, the standby must not.
        assert_keyset(keys_present(topo, "tk:*"), set(tk) | set(tk_kept),
                      "tk: keys before the failover")
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

    # The heir replayed from the frozen worker's last heartbeat position
    # (at or before where it froze: a heartbeat may be a beat behind) minus
    # the takeover window.
    log = wh.log().splitlines()
    told = next(line for line in log if f"{victim.addr}'s worker" in line)
    old_pos = told.split("last applied ")[1].split()[0]
    assert sid(old_pos) <= sid(frozen_at), told
    start = next(line for line in log
                 if "replaying the log from" in line and "promotion" in line)
    replay_from = start.split("replaying the log from ")[1].split()[0]
    assert sid(replay_from)[0] <= sid(old_pos)[0] - WINDOW_MS, start

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


def test_takeover_when_heartbeats_lived_on_the_dead_primary(
        fresh_cluster, worker_factory, publisher_factory):
    """The primary holding the heartbeats dies after its own worker did.
    Its replica's worker is promoted while the heartbeat key is unreachable
    or moving: it must still reach back to the dead worker's last reported
    position (replayed from the replica's copy of the heartbeats), since
    the events it missed are older than the takeover window."""
    cluster = fresh_cluster
    topo = Topo(cluster)
    victim = topo.owner_of(HB_KEY)
    assert victim.port != topo.owner_of(LOG_KEY).port
    heir = cluster.replica_of(victim)
    workers = start_workers(topo, worker_factory, "--takeover-window",
                            f"{WINDOW_MS}ms", "--heartbeat-interval", "200ms")
    pub = publisher_factory(topo.seeds)
    wv, wh = worker_of(workers, victim), worker_of(workers, heir)
    tags = tag_for_each_slot()
    mine = [s for s, o in enumerate(topo.owners()) if o.port == victim.port]
    tk = [f"hk:{{{tags[s]}}}:{i}" for s in mine[:300] for i in range(3)]
    kept = [f"hk:{{{tags[s]}}}:x" for s in mine[:300]]
    load_keys(topo, tk + kept)
    wv.kill()
    last = send_past_window(pub, wh, key_events(tk), WINDOW_MS, "hk-tick")
    for p in topo.primaries():  # keys, log and heartbeats on the replicas
        assert p.client().execute_command("WAIT", 1, 5000) >= 1
    assert_keyset(keys_present(topo, "hk:*"), set(tk) | set(kept),
                  "hk: keys before the failover")

    cluster.kill_primary(victim, timeout=60)
    poll(lambda: wstats(wh)["role"] == "primary", 20, "heir's worker acting")
    wait_gone(topo, "hk:*", set(tk), 60, "keys removed by the heir")
    survivors = [w for w in workers if w is not wv]
    wait_applied(survivors, last)
    settle(survivors)
    assert_keyset(keys_present(topo, "hk:*"), set(kept), "hk: survivors")
    log = wh.log()
    assert f"old primary {victim.addr}'s worker" in log, wh.log_tail(30)
    path = "re-read" if "could not read the heartbeats" in log else "direct"
    print(f"heartbeats read at promotion: {path}")
