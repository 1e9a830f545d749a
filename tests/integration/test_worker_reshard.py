"""Slots moving while invalidations flow.

A private 3+3 cluster; one worker per node and a publisher. Slots move from
one primary (src) to another (dst) by hand, the way `redis-cli --cluster
reshard` does it: SETSLOT IMPORTING/MIGRATING, GETKEYSINSLOT + MIGRATE,
SETSLOT NODE. The heartbeat key's slot does not move; log shard streams in
the moving slots move with them, consumer group included.

1. The ASKING path. One slot is left half migrated: some of its keys are on
   dst (importing), the rest still on src (migrating). Exact keys, a pattern
   pinned to that slot and an unpinned prefix are invalidated while it is in
   that state. The worker that consumes the slot's log shard deletes every
   named key, wherever it is: on src directly, on dst with ASKING (its
   cluster client follows ASK), and the pinned pattern's keys on both nodes
   (its node's with GETKEYSINSLOT, the other's with a sweep). Nothing else
   goes.
2. The reshard. That slot and 200 more move while 4,500 exact keys and
   pinned prefixes of the moving slots stream through the publisher, so
   events land before, during and after their slot moves. Afterwards every
   invalidated key is gone, wherever it ended up, and every key that was
   not named survives, on the node that now owns it; every shard stream
   that moved is consumed by dst's worker, its group drained.
3. A slot moves under its events faster than any worker's slot map
   refreshes: the shard's worker follows MOVED and ASK for each key, so the
   keys go all the same.
"""

import random

from workerlib import (SlotMover, Streamer, Topo,
                       assert_keyset, chunks, command_calls, ev, key_events,
                       key_slot, keys_present, load_keys, node_keys, poll,
                       send_events, settle, start_workers, tag_for_each_slot,
                       wait_applied, wait_gone, wait_maps_current, worker_of,
                       wstats)

MOVING = 200       # slots moved while the stream runs
PER_SLOT = 30      # keys in each of them


def layout(ask_tag, tags):
    """(phase-1 gone, phase-1 kept, phase-1 events, moving keys)."""
    gone = [f"rs:{{{ask_tag}}}:k{i}" for i in range(0, 100, 2)]
    kept = [f"rs:{{{ask_tag}}}:k{i}" for i in range(1, 100, 2)]
    gone += [f"rs:{{{ask_tag}}}:p{i}" for i in range(40)]      # pinned
    kept += [f"rs:{{{ask_tag}}}:q{i}" for i in range(40)]
    gone += [f"rsu:{{{ask_tag}}}:{i}" for i in range(40)]      # unpinned
    gone += [f"rsu:{i}" for i in range(300)]                   # elsewhere
    kept += [f"rsv:{{{ask_tag}}}:{i}" for i in range(40)]
    events = key_events(gone[:50]) + [ev("pattern", f"rs:{{{ask_tag}}}:p*"),
                                      ev("prefix", "rsu:")]
    moving = {t: [f"rs:{{{t}}}:m{i}" for i in range(PER_SLOT)] for t in tags}
    return gone, kept, events, moving


def test_reshard_while_streaming(fresh_cluster, worker_factory,
                                 publisher_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    owners = topo.owners()
    src, dst = topo.quiet_primary()
    src_slots = [s for s in range(len(owners)) if owners[s].port == src.port]
    ask_slot, stream_slots = src_slots[0], src_slots[1:1 + MOVING]
    tags = tag_for_each_slot()
    gone1, kept1, events1, moving = layout(
        tags[ask_slot], [tags[s] for s in stream_slots])
    moving_keys = [k for ks in moving.values() for k in ks]
    other = [f"ot:{i}" for i in range(3000)]
    late_slot = src_slots[1 + MOVING]
    late = [f"rs:{{{tags[late_slot]}}}:z{i}" for i in range(40)]
    load_keys(topo, gone1 + kept1 + moving_keys + other + late)

    workers = start_workers(topo, worker_factory, "--role-poll", "200ms")
    pub = publisher_factory(topo.seeds)
    wsrc, wdst = worker_of(workers, src), worker_of(workers, dst)
    for p in topo.primaries():
        p.client().config_resetstat()

    # Phase 1: one slot half migrated.
    mover = SlotMover(cluster, src, dst)
    mover.begin(ask_slot)
    # Every other key of each kind moves: named and kept ones on both ends.
    moved = {k for k in gone1 + kept1 if key_slot(k) == ask_slot and
             int(k.rpartition(":")[2].lstrip("kpq")) % 4 < 2}
    mover.migrate_keys(moved)
    poll(lambda: wstats(wdst)["importing_slots"] == 1, 30,
         "dst's worker sees the importing slot")
    assert wstats(wsrc)["owned_slots"] == len(src_slots)
    held = {p.port: node_keys(p, "rs*") for p in topo.primaries()}
    assert moved & set(gone1) and set(gone1) - moved, "a half migration"
    assert moved <= held[dst.port]

    last = send_events(pub, events1, chunk=len(events1))
    wait_gone(topo, "rs*", set(gone1), 60, "phase-1 keys removed")
    wait_applied(workers, last, asking=True)
    settle(workers)
    assert_keyset(keys_present(topo, "rs*"),
                  set(kept1) | set(moving_keys) | set(late),
                  "keys after phase 1")
    # Keys on dst of a slot it does not own yet: only ASKING reaches them.
    imported = {k for k in held[dst.port] & set(gone1)
                if key_slot(k) == ask_slot}
    assert imported
    assert command_calls(dst, "asking") >= len(imported)
    # The pinned pattern ran where its shard is consumed only: a local
    # GETKEYSINSLOT job there, and a sweep of the other node's part (run
    # again should a node not answer).
    stats = [wstats(w) for w in workers]
    assert sum(st["slot_sweeps"] > 0 for st in stats) == 1, stats
    assert sum(st["slot_scans"] > 0 for st in stats) <= 1, stats

    # Phase 2: move that slot and 200 more while events stream.
    rng = random.Random(7)
    named = [k for ks in moving.values() for k in ks[:PER_SLOT // 2]]
    named += other[:1500]
    rng.shuffle(named)
    batches = chunks(key_events(named), 10)
    # Pinned prefixes of the moving slots: keys m1* of every tenth slot.
    pinned = [f"rs:{{{t}}}:m1" for t in list(moving)[::10]]
    for i, p in enumerate(pinned):
        batches.insert(i * 20, [ev("prefix", p)])
    stream = Streamer(pub, batches, pace=0.01, window=2)
    stream.start()
    stream.wait_acked(len(batches) // 10, 60)
    acked_before = stream.acked
    mover.migrate(ask_slot)
    mover.finish(ask_slot)
    for s in stream_slots:
        mover.move(s)
    acked_after = stream.acked
    ids = stream.finish(120)
    assert acked_before < acked_after < len(batches), \
        "the reshard did not overlap the stream"

    cluster.wait_ok(60)
    wait_maps_current(topo, workers)
    gone = set(named)
    for p in pinned:
        gone |= {k for k in moving_keys if k.startswith(p)}
    kept = set(moving_keys) - gone
    wait_gone(topo, "rs*", gone, 60, "invalidated keys removed")
    wait_applied(workers, max(ids), asking=True)
    settle(workers)
    assert_keyset(keys_present(topo, "rs*"), kept | set(kept1) | set(late),
                  "keys after the reshard")
    assert_keyset(keys_present(topo, "ot:*"), set(other) - gone,
                  "keys outside the moved slots")
    # The moved slots' survivors are on dst now, none left on src.
    on_moved = {k for k in kept | set(kept1)
                if key_slot(k) in set(stream_slots) | {ask_slot}}
    assert_keyset(node_keys(dst, "rs*") & on_moved, on_moved,
                  "moved survivors on dst")
    assert not node_keys(src, "rs*") & on_moved
    assert wstats(wdst)["owned_slots"] == \
        sum(1 for o in topo.owners() if o.port == dst.port)

    # Every shard stream that moved is dst's to consume now, drained.
    for s, (generated, delivered, pending) in topo.shard_state().items():
        assert generated == delivered and pending == 0, (s, generated,
                                                        delivered, pending)

    # Phase 3: a slot moves under its events, faster than any slot map
    # refresh: the shard's worker follows MOVED and ASK for each key.
    mover.begin(late_slot)
    mover.migrate(late_slot)
    last = send_events(pub, key_events(late[:20]), chunk=20)
    mover.finish(late_slot)
    cluster.wait_ok(60)
    cluster.cluster_check()  # as an operator would after a reshard
    wait_maps_current(topo, workers)
    wait_gone(topo, "rs*", set(late[:20]), 60, "keys moved under their events")
    settle(workers)
    wait_applied(workers, last, asking=True)
    assert_keyset(keys_present(topo, "rs*"), kept | set(kept1) |
                  set(late[20:]), "keys after phase 3")
    sd, ss = wstats(wdst), wstats(wsrc)
    print(f"moved {mover.moved_keys} keys in {MOVING + 1} slots while "
          f"{acked_after - acked_before} of {len(batches)} batches were "
          f"acked; dst unlinked {sd['keys_unlinked']} (remote "
          f"{sd['remote_unlinks']}), src unlinked {ss['keys_unlinked']} "
          f"(redirects {ss['unlink_redirects']}, remote "
          f"{ss['remote_unlinks']})")
