"""Exact-key invalidations over every hash slot.

20,000 named keys, at least one in each of the 16384 slots, are invalidated
in batches through a real inval-publisher, with one inval-worker per node
(standalone: one; cluster: six, three of them hot standbys). Every named key
must be gone, and every key that shares the prefix but was not named must
survive. In the cluster each primary's worker must have removed exactly the
named keys of its own slots, and no standby may have removed anything.
"""

import collections

import pytest

from workerlib import (NUM_SLOTS, SHARD_SLOTS, Topo, assert_keyset,
                       key_events, key_slot, keys_present, load_keys,
                       send_events, settle, shard_of_key, start_workers,
                       tag_for_each_slot, wait_applied, wait_gone, wstats)


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def named_and_kept():
    """20,000 named keys covering every slot, and 10,000 survivors with the
    same "ek:" prefix (longer names, and numbers past the named range)."""
    tags = tag_for_each_slot()
    named = [f"ek:{{{tags[s]}}}:{s}" for s in range(NUM_SLOTS)]
    named += [f"ek:{i}" for i in range(20000 - NUM_SLOTS)]
    kept = [f"ek:{{{tags[s]}}}:{s}:x" for s in range(0, NUM_SLOTS, 3)]
    kept += [f"ek:{i}" for i in range(20000 - NUM_SLOTS, 20000 - NUM_SLOTS +
                                      10000 - len(kept))]
    return named, kept


def test_exact_keys_every_slot(topo, worker_factory, publisher_factory):
    named, kept = named_and_kept()
    assert len({key_slot(k) for k in named}) == NUM_SLOTS
    assert len(named) == 20000 and len(kept) == 10000
    assert not set(named) & set(kept)
    workers = start_workers(topo, worker_factory)
    pub = publisher_factory(topo.seeds)
    load_keys(topo, named + kept)
    assert_keyset(keys_present(topo, "ek:*"), set(named) | set(kept),
                  "keys before the invalidation")

    last = send_events(pub, key_events(named), chunk=1000)

    wait_gone(topo, "ek:*", set(named), 60, "named keys removed")
    wait_applied(workers, last)
    settle(workers)
    assert_keyset(keys_present(topo, "ek:*"), set(kept),
                  "keys after the invalidation")

    # Locality: each event reaches one worker only, the one of the node
    # that holds its key's log shard; that worker deletes the key on its
    # own node, or (for the few slots of a shard whose range is split
    # between two primaries) on the key's node.
    owners = topo.owners()
    home = collections.Counter()   # events per node holding their shard
    local = collections.Counter()  # ... whose key lives on that node too
    for k in named:
        h = owners[shard_of_key(k) * SHARD_SLOTS].addr
        home[h] += 1
        local[h] += owners[key_slot(k)].addr == h
    received = 0
    for w in workers:
        st = wstats(w)
        assert st["decode_errors"] == 0, (w.name, st)
        received += st["events_received"]
        if st["role"] == "primary":
            assert st["events_received"] == home[w.node], (w.name, st)
            assert st["keys_unlinked"] == local[w.node], (w.name, st)
            assert st["remote_unlinks"] == home[w.node] - local[w.node], \
                (w.name, st)
        else:
            assert st["events_received"] == 0, (w.name, st)
            assert st["unlinks_sent"] == 0, (w.name, st)
    assert received == len(named)
    if topo.is_cluster:
        # Almost every key is deleted where it is logged.
        assert sum(local.values()) >= 0.95 * len(named), local
