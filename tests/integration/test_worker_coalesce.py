"""Same-slot exact keys share multi-key UNLINKs (workers/unlinker.h).

The worker sends consecutive hard invalidations of keys of one slot (keys
with one hash tag, such as {user:42}:profile and {user:42}:orders) as one
UNLINK K1 L1 S1 K2 L2 S2 ... of up to 64 keys, and never puts keys of
different slots in one command, except on standalone Redis, which has no
slots to respect.

1. Same slot, standalone and cluster: 3,000 named keys of one tag, some with
   a lock and a stale copy, interleaved in the events with soft
   invalidations of the same tag (which keep their own script) and with
   keys of other tags and untagged keys (other slots). Every named key, its
   lock and its stale copy go; soft keys become stale copies; keys of the
   same tag that were not named survive with their locks and stale copies.
   The node counts far fewer UNLINK commands than keys (INFO commandstats),
   exactly the worker's unlinks_sent, and rejects none (no CROSSSLOT).
2. A slot half migrated (private cluster): the multi-key UNLINKs of both
   ends meet TRYAGAIN (some of their keys are on the other node) and fall
   back to one command per key, and per name where K, its lock and its
   stale copy are split too. Every named name goes, wherever it is, and
   nothing else.
"""

import pytest

from regenlib import names
from workerlib import (SlotMover, Topo, assert_keyset, ev, keys_present,
                       load_keys, poll, send_events, settle, start_workers,
                       tag_for_each_slot, wait_applied, wait_gone, worker_of,
                       wstats)

BATCH_MAX = 64  # INV_UNLINK_BATCH_MAX


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def unlink_stats(node):
    """(calls, rejected_calls, failed_calls) of UNLINK on node since the
    last CONFIG RESETSTAT."""
    e = node.client().info("commandstats").get("cmdstat_unlink", {})
    return (int(e.get("calls", 0)), int(e.get("rejected_calls", 0)),
            int(e.get("failed_calls", 0)))


def soft(key):
    return dict(ev("key", key), mode="soft")


def with_names(keys, lock_every, stale_every):
    """keys plus the locks of every lock_every-th and the stale copies of
    every stale_every-th one."""
    out = list(keys)
    for i, k in enumerate(keys):
        lock, stale = names(k)
        if i % lock_every == 0:
            out.append(lock)
        if i % stale_every == 0:
            out.append(stale)
    return out


def test_same_slot_keys_share_commands(topo, worker_factory,
                                       publisher_factory):
    tag = "co:42"
    named = [f"{{{tag}}}:k{i}" for i in range(3000)]
    kept = [f"{{{tag}}}:x{i}" for i in range(300)]
    softs = [f"{{{tag}}}:s{i}" for i in range(30)]
    others = [f"{{co:{i}}}:k" for i in range(100)] + \
        [f"co:plain:{i}" for i in range(100)]
    # Events: runs of 97 same-tag keys, then a soft key, a key of another
    # tag and an untagged key, so runs of the tag are cut at every step.
    events = []
    for j in range(0, len(named), 97):
        events += [ev("key", k) for k in named[j:j + 97]]
        step = j // 97
        if step < len(softs):
            events.append(soft(softs[step]))
        if step < len(others) // 2:
            events += [ev("key", others[step]),
                       ev("key", others[len(others) // 2 + step])]
    assert all(s in {e["target"] for e in events} for s in softs)
    named_other = [o for o in others if o in {e["target"] for e in events}]

    workers = start_workers(topo, worker_factory, "--stale-grace", "60s")
    pub = publisher_factory(topo.seeds)
    doomed = with_names(named, 3, 5) + with_names(named_other, 2, 2)
    survivors = with_names(kept, 2, 3)
    load_keys(topo, doomed + survivors + softs)
    owner = topo.owner_of(named[0])
    for p in topo.primaries():
        p.client().config_resetstat()

    last = send_events(pub, events, chunk=1000)
    wait_gone(topo, "*co*", set(doomed), 60, "named keys and names removed")
    wait_applied(workers, last)
    settle(workers)

    stales = {names(k)[1] for k in softs}
    assert_keyset(keys_present(topo, "*co*"),
                  set(survivors) | stales, "keys after the invalidation")
    w = worker_of(workers, owner)
    st = wstats(w)
    calls, rejected, failed = unlink_stats(owner)
    assert rejected == 0 and failed == 0, (rejected, failed)
    # Every same-tag run of 97 keys takes 2 commands (64 + 33); the other
    # keys on this node take one each; soft keys use scripts instead.
    # (A run cut by the end of a payload may take one more.)
    runs = -(-len(named) // 97)
    if topo.is_cluster:
        own_other = sum(1 for o in named_other
                        if topo.owner_of(o).port == owner.port)
        assert -(-len(named) // BATCH_MAX) <= calls - own_other <= 3 * runs, \
            (calls, own_other, st)
    else:
        # Standalone Redis has no slots to respect: the other tags' and the
        # untagged keys join the runs, which only the soft keys cut.
        hard = len(named) + len(named_other)
        assert -(-hard // BATCH_MAX) <= calls <= 3 * runs, (calls, st)
    assert calls < len(named) // 10, calls
    # The rest of unlinks_sent is the soft keys' scripts: EVALSHA each,
    # and EVAL again for those that got NOSCRIPT. (The node's own script
    # counts include the publisher's.)
    scripts = st["unlinks_sent"] - calls
    assert len(softs) <= scripts <= 2 * len(softs), (st, calls)
    on_owner = [k for k in doomed if topo.owner_of(k).port == owner.port]
    assert st["keys_unlinked"] == len(on_owner), st
    assert st["stale_copies"] == len(softs), st


def test_tryagain_falls_back_to_single_keys(fresh_cluster, worker_factory,
                                            publisher_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    owners = topo.owners()
    src, dst = topo.quiet_primary()
    # A slot of src that is not a log shard's home: this test moves keys,
    # not a shard's stream (test_worker_reshard.py moves those).
    slot = next(s for s in range(len(owners))
                if owners[s].port == src.port and s % 256 != 0)
    tag = tag_for_each_slot()[slot]
    named = [f"{{{tag}}}:k{i}" for i in range(400)]
    kept = [f"{{{tag}}}:x{i}" for i in range(100)]
    doomed = with_names(named, 2, 3)
    survivors = with_names(kept, 2, 2)
    load_keys(topo, doomed + survivors)

    workers = start_workers(topo, worker_factory, "--role-poll", "200ms")
    pub = publisher_factory(topo.seeds)
    wsrc, wdst = worker_of(workers, src), worker_of(workers, dst)
    mover = SlotMover(cluster, src, dst)
    mover.begin(slot)
    # Every third name moves: value keys, locks and stale copies alike, so
    # that runs of keys and K with its names are split between the nodes.
    moved = [k for i, k in enumerate(sorted(doomed + survivors)) if i % 3 == 0]
    mover.migrate_keys(moved)
    poll(lambda: wstats(wdst)["importing_slots"] == 1, 30,
         "dst's worker sees the importing slot")
    for p in (src, dst):
        p.client().config_resetstat()

    last = send_events(pub, [ev("key", k) for k in named], chunk=len(named))
    wait_gone(topo, f"{{{tag}}}*", set(doomed), 60, "named names removed")
    wait_applied(workers, last, asking=True)
    settle(workers)

    assert_keyset(keys_present(topo, f"{{{tag}}}*"), set(survivors),
                  "keys after the invalidation")
    # The events are in the shard of the slot, which src's worker consumes:
    # src rejected the multi-key UNLINKs whose names were split (TRYAGAIN)
    # or gone (ASK); the worker then sent single-key ones, and those of
    # names on dst through the cluster client, which followed ASK. dst's
    # own worker received none of these events.
    calls, rejected, _ = unlink_stats(src)
    assert rejected > 0, (src.addr, calls, rejected)
    st = wstats(wsrc)
    assert st["unlink_redirects"] > 0 and st["remote_unlinks"] > 0, st
    assert 0 < st["keys_unlinked"] <= len(set(doomed) - set(moved)), st
    assert wstats(wdst)["events_received"] == 0, wstats(wdst)
    mover.migrate(slot)
    mover.finish(slot)
