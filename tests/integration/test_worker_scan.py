"""Prefix, pattern and hash-tag-pinned invalidations over a large keyspace.

The module loads about 125,000 keys once per backend (standalone Redis, and
the 6-node cluster) with pipelined SETs on the owning node. Each test starts
its own workers (one per node, fresh counters) and a publisher, and works in
its own key namespace, so the tests do not disturb each other's keys.

- Prefixes and patterns (classes, negated classes, ranges, '?', escapes, and
  a prefix full of glob metacharacters, which must be taken literally)
  remove exactly the keys that match, on every primary; every other key of
  the namespace survives, and so does the filler.
- A pattern pinned to one slot by its hash tag ({user:42}:*) is handled by
  that slot's owner alone, with GETKEYSINSLOT: the owner examines exactly
  the keys of that slot, not the keyspace, and every other worker's
  keys_scanned stays 0. Only the matching keys of the slot go.
"""

import time

import pytest

import harness
from workerlib import (Topo, assert_keyset, flushed_topo, ev, key_slot, keys_present,
                       load_keys, node_keys, send_events, settle,
                       start_workers, wait_applied, wait_gone, wstats)

FILLER = 60000


def pattern_layout():
    """(events, gone, kept) for the prefix/pattern test, all keys under
    "sp:" (the filler is separate)."""
    gone, kept = [], []
    # Prefix: "sp:a:" and nothing else, not even "sp:a" or "sp:ab:".
    gone += [f"sp:a:{i}" for i in range(12000)]
    kept += [f"sp:b:{i}" for i in range(6000)]
    kept += [f"sp:ab:{i}" for i in range(2000)]
    kept += ["sp:a", "sp:a;", "sp:A:1"]
    # Class with a range: a digit 0-4 right after "sp:c:".
    for i in range(10000):
        (gone if str(i)[0] in "01234" else kept).append(f"sp:c:{i}:x")
    kept += [f"sp:c:{i}:y" for i in range(2000)]
    # Negated class: anything but 'a' after "sp:n:".
    gone += [f"sp:n:b{i}" for i in range(3000)]
    kept += [f"sp:n:a{i}" for i in range(3000)]
    # '?': exactly two characters between the colons.
    gone += [f"sp:q:{i:02d}:z" for i in range(100)]
    kept += [f"sp:q:{i}:z" for i in range(100, 2000)]
    # Escapes: a literal '*' and a literal '['.
    gone += [f"sp:e:*:{i}" for i in range(2000)]
    kept += [f"sp:e:x:{i}" for i in range(2000)]
    gone += [f"sp:e:[{i}]" for i in range(1000)]
    kept += [f"sp:e:{i}]" for i in range(1000)]
    # A prefix made of glob metacharacters: only the literal bytes match.
    gone += [f"sp:g*[x]?{i}" for i in range(2000)]
    kept += [f"sp:gA[x]B{i}" for i in range(1000)]
    kept += [f"sp:gxxB{i}" for i in range(1000)]
    events = [
        ev("prefix", "sp:a:"),
        ev("pattern", "sp:c:[0-4]*:x"),
        ev("pattern", "sp:n:[^a]*"),
        ev("pattern", "sp:q:??:z"),
        ev("pattern", "sp:e:\\*:*"),
        ev("pattern", "sp:e:\\[*"),
        ev("prefix", "sp:g*[x]?"),
        # A duplicate: merged or run twice, the result is the same.
        ev("pattern", "sp:n:[^a]*"),
    ]
    return events, gone, kept


def pinned_layout():
    """Keys for the pinned test: the slot of {user:42} holds matching and
    non-matching keys; other slots hold look-alikes."""
    gone = [f"{{user:42}}:k{i}" for i in range(3000)]
    gone += [f"{{user:42}}:a{i}" for i in range(500)]  # matches [ak]* too
    kept = [f"{{user:42}}x{i}" for i in range(1000)]   # same slot, no ':'
    kept += [f"{{user:42}}:b{i}" for i in range(300)]  # same slot, not [ak]
    kept += [f"user:42:k{i}" for i in range(2000)]     # no tag: elsewhere
    kept += [f"{{user:43}}:k{i}" for i in range(1000)]
    return gone, kept


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def loaded(request):
    """The module's Redis (standalone or cluster), flushed and loaded once
    with every test's keys plus filler."""
    topo = flushed_topo(request, request.param)
    _, gone, kept = pattern_layout()
    pgone, pkept = pinned_layout()
    filler = [f"fill:{i}" for i in range(FILLER)]
    load_keys(topo, gone + kept + pgone + pkept + filler)
    return topo


def test_prefix_and_pattern_exact_matches(loaded, worker_factory,
                                          publisher_factory):
    topo = loaded
    events, gone, kept = pattern_layout()
    gone, kept = set(gone), set(kept)
    assert not gone & kept
    total = sum(p.client().dbsize() for p in topo.primaries())
    assert total >= 100000, total
    assert_keyset(keys_present(topo, "sp:*"), gone | kept, "sp: keys before")
    workers = start_workers(topo, worker_factory, "--scan-count", "500")
    pub = publisher_factory(topo.seeds)
    filler_before = sum(len(node_keys(p, "fill:*")) for p in topo.primaries())

    t0 = time.monotonic()
    last = send_events(pub, events, chunk=len(events))

    wait_gone(topo, "sp:*", gone, 90, "matching keys removed")
    wait_applied(workers, last, 90)
    settle(workers)
    elapsed = time.monotonic() - t0
    assert_keyset(keys_present(topo, "sp:*"), kept, "sp: keys after")
    owners = topo.owners()
    for p in topo.primaries():
        # Every primary still holds exactly its own non-matching keys.
        assert_keyset(node_keys(p, "sp:*"),
                      {k for k in kept if owners[key_slot(k)].port == p.port},
                      f"sp: keys on {p.addr}")
    print(f"{topo.kind}: {len(gone)} keys unlinked out of {total} in "
          f"{elapsed:.2f} s ({len(gone) / elapsed:.0f} keys/s, "
          f"{total / elapsed:.0f} keys/s scanned)")
    filler_after = sum(len(node_keys(p, "fill:*")) for p in topo.primaries())
    assert filler_after == filler_before == FILLER

    primaries = {p.addr for p in topo.primaries()}
    gone_per_node = {}
    for k in gone:
        a = owners[key_slot(k)].addr
        gone_per_node[a] = gone_per_node.get(a, 0) + 1
    for w in workers:
        st = wstats(w)
        if w.node in primaries:
            # Every primary held matches and removed exactly its own.
            assert gone_per_node.get(w.node, 0) > 0
            assert st["keys_unlinked"] == gone_per_node[w.node], (w.name, st)
            assert st["scans_done"] + st["scans_merged"] >= len(events), \
                (w.name, st)
            assert st["scans_running"] == 0 and st["scans_pending"] == 0
            assert st["keys_scanned"] >= gone_per_node[w.node], (w.name, st)
            assert st["unlink_redirects"] == 0, (w.name, st)
        else:
            assert st["keys_unlinked"] == 0 and st["keys_scanned"] == 0, \
                (w.name, st)


def test_pinned_pattern_owner_only(loaded, worker_factory, publisher_factory):
    topo = loaded
    if not topo.is_cluster:
        pytest.skip("slot pinning only matters in a cluster")
    gone, kept = pinned_layout()
    gone, kept = set(gone), set(kept)
    owner = topo.owner_of("{user:42}")
    slot = key_slot("{user:42}")
    in_slot = owner.client().execute_command("CLUSTER", "COUNTKEYSINSLOT",
                                             slot)
    # Our keys, plus any filler key that happens to share the slot.
    assert in_slot >= 3000 + 500 + 1000 + 300
    workers = start_workers(topo, worker_factory)
    pub = publisher_factory(topo.seeds)
    before = {p.addr: p.client().dbsize() for p in topo.primaries()}

    last = send_events(pub, [ev("pattern", "{user:42}:k*"),
                             ev("pattern", "{user:42}:[ak]*")], chunk=2)

    wait_gone(topo, "*user:4[23]*", gone, 60, "pinned matches removed")
    wait_applied(workers, last)
    settle(workers)
    assert_keyset(keys_present(topo, "*user:4[23]*"), kept,
                  "user:42/43 keys after")
    after = {p.addr: p.client().dbsize() for p in topo.primaries()}
    for addr in before:
        want = before[addr] - (len(gone) if addr == owner.addr else 0)
        assert after[addr] == want, (addr, before[addr], after[addr])
    for w in workers:
        st = wstats(w)
        if w.node == owner.addr:
            assert st["slot_scans"] == 2, st
            # GETKEYSINSLOT lists the slot's keys, not the keyspace: at most
            # every key of the slot once per pattern.
            assert in_slot <= st["keys_scanned"] <= 2 * in_slot, st
            assert st["keys_unlinked"] == len(gone), st
        else:
            assert st["keys_scanned"] == 0, (w.name, st)
            assert st["keys_unlinked"] == 0, (w.name, st)
            assert st["slot_scans"] == 0, (w.name, st)
            assert st["scans_done"] == 0, (w.name, st)
    assert harness.key_slot("{user:42}") == slot
