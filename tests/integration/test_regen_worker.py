"""The worker's side of the regeneration contract, through a real
publisher and real workers, on standalone Redis and the cluster.

- Exact keys: hard removes K, its lock and its stale copy in one UNLINK;
  soft moves K to its stale copy with the --stale-grace TTL and removes the
  lock; with K absent, soft removes only the lock. A key whose names cannot
  keep its slot ("a}{b") is plainly unlinked in both modes.
- Patterns (SCAN, and GETKEYSINSLOT for a pattern pinned by its hash tag):
  every matching value key gets the rule; locks (and, hard, stale copies)
  of matching keys go even when the value is absent; a lock is never taken
  for a value key of its own (no "{x:lock}:lock" churn); keys that do not
  match, and their locks and stale copies, are untouched. The whole
  keyspace is compared with the exact expected set afterwards.
- The soft script is loaded on demand: after SCRIPT FLUSH the worker's
  EVALSHA gets NOSCRIPT and falls back to EVAL.
"""

import pytest

from regenlib import Invalidator, client, ev, names, worker_for
from workerlib import Topo, key_slot, start_workers, wait_applied, wstats

GRACE_MS = 45000
# The most keys one multi-key UNLINK carries (INV_UNLINK_BATCH_MAX).
BATCH_MAX = 64


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def flush_scripts(topo):
    for n in topo.primaries():
        n.client().script_flush()


def snapshot(topo):
    """{key: (value, pttl)} of every cache key on the primaries (the
    service's own keys, cache:invalidation:*, left out)."""
    out = {}
    for p in topo.primaries():
        c = p.client()
        for k in keys_present_node(c):
            if not k.startswith("cache:invalidation"):
                out[k] = (c.get(k), c.pttl(k))
    return out


def keys_present_node(c):
    return [k.decode("utf-8", "surrogateescape") for k in c.scan_iter(count=2000)]


def total(workers, stat):
    return sum(wstats(w)[stat] for w in workers)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_exact_keys(topo, mode, worker_factory, publisher_factory):
    r = client(topo)
    workers = start_workers(topo, worker_factory, "--stale-grace", "45s")
    inv = Invalidator(publisher_factory(topo.seeds))
    present = ["ex:1", "{ex}:2"]          # value, lock and stale copy
    absent = ["ex:3", "{ex}:4"]           # lock and stale copy only
    odd = "ex:a}{b"                       # no lock, no stale copy
    bystander = "ex:5"
    assert names(odd) is None
    for k in present:
        lock, stale = names(k)
        r.set(k, "val:" + k)
        r.set(lock, "f" * 32, px=60000)
        r.set(stale, "older")
    for k in absent:
        lock, stale = names(k)
        r.set(lock, "f" * 32, px=60000)
        r.set(stale, "older")
    r.set(odd, "odd")
    r.set(bystander, "keep")
    r.set(names(bystander)[0], "e" * 32)
    flush_scripts(topo)
    last = inv.send(*[ev("key", k, mode) for k in present + absent + [odd]])
    wait_applied(workers, last)

    for k in present:
        lock, stale = names(k)
        assert r.get(k) is None and r.get(lock) is None, k
        if mode == "hard":
            assert r.get(stale) is None, k
        else:
            assert r.get(stale) == ("val:" + k).encode(), k
            assert 0 < r.pttl(stale) <= GRACE_MS, (k, r.pttl(stale))
    for k in absent:
        lock, stale = names(k)
        assert r.get(lock) is None, k
        # Hard removes the stale copy; soft leaves it as it was.
        assert r.get(stale) == (None if mode == "hard" else b"older"), k
    assert r.get(odd) is None
    assert r.exists("{ex:a}{b}:stale") == 0
    assert r.get(bystander) == b"keep"
    assert r.get(names(bystander)[0]) == b"e" * 32
    if mode == "soft":
        assert total(workers, "stale_copies") == len(present)
        # 2 locks + the odd key: soft never counts as unlinked but the
        # odd key, which is plainly unlinked.
        assert total(workers, "keys_unlinked") == 1
    else:
        assert total(workers, "keys_unlinked") == 3 * len(present) + \
            2 * len(absent) + 1
        assert total(workers, "stale_copies") == 0
    inv.close()


def pattern_layout():
    """(state, matched, orphan_locks, orphan_stales, odd) for the pattern
    test: state is {key: value} of everything written; the matched keys
    are value keys matching "pr:s:*" or "{prt}:s:*"."""
    state, matched, orphan_locks, orphan_stales = {}, [], [], []
    for i in range(300):
        for k in (f"pr:s:{i}", f"{{prt}}:s:{i}"):
            matched.append(k)
            state[k] = f"v{i}"
            lock, stale = names(k)
            if i % 3 == 0:
                state[lock] = "a" * 32
            if i % 5 == 0:
                state[stale] = "older"
    for i in range(20):
        for k in (f"pr:s:gone{i}", f"{{prt}}:s:gone{i}"):
            lock, stale = names(k)
            state[lock] = "b" * 32          # a regeneration in flight
            orphan_locks.append(lock)
            if i % 2 == 0:
                state[stale] = "older"
                orphan_stales.append(stale)
    # Look-alikes that must survive, with their locks and stale copies:
    # other namespaces, a key holding the pattern as a substring (which the
    # SCAN cover "*pr:s:**" lists), and the tagged namespace's neighbours.
    for k in ["pr:x:1", "zz:pr:s:1", "pr:s", "{prt}:x:1", "{prt}x:s:1",
              "{pr:s:1}x"]:
        state[k] = "keep"
        lock, stale = names(k)
        state[lock] = "c" * 32
        state[stale] = "keep-stale"
    odd = "pr:s:a}{b"
    state[odd] = "odd"
    return state, matched, orphan_locks, orphan_stales, odd


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_pattern(topo, mode, worker_factory, publisher_factory):
    r = client(topo)
    workers = start_workers(topo, worker_factory, "--stale-grace", "45s",
                            "--scan-count", "100")
    inv = Invalidator(publisher_factory(topo.seeds))
    state, matched, orphan_locks, orphan_stales, odd = pattern_layout()
    if topo.is_cluster:
        pipe = r.pipeline()
        for k, v in state.items():
            pipe.set(k, v)
        pipe.execute()
    else:
        r.mset(state)
    flush_scripts(topo)
    before = snapshot(topo)
    assert set(before) == set(state)

    def derived_of(prefix):
        return [k for k in state if k.startswith(prefix) and
                k.endswith((":lock", ":stale"))]

    # The prefix first (SCAN everywhere), then the pinned pattern (in the
    # cluster: GETKEYSINSLOT on the owner of {prt} only).
    sent0 = total(workers, "unlinks_sent")
    wait_applied(workers, inv.send(ev("prefix", "pr:s:", mode)))
    sent1 = total(workers, "unlinks_sent")
    wait_applied(workers, inv.send(ev("pattern", "{prt}:s:*", mode)))
    sent2 = total(workers, "unlinks_sent")

    expected = dict(state)
    for k in matched:
        lock, stale = names(k)
        expected.pop(lock, None)
        if mode == "hard":
            expected.pop(k)
            expected.pop(stale, None)
        else:
            expected[stale] = expected.pop(k)
    for lock in orphan_locks:
        expected.pop(lock)
    if mode == "hard":
        for stale in orphan_stales:
            expected.pop(stale)
    expected.pop(odd)
    after = snapshot(topo)
    missing = sorted(set(expected) - set(after))
    extra = sorted(set(after) - set(expected))
    assert not missing and not extra, (missing[:8], extra[:8])
    fresh_stale = {names(k)[1] for k in matched} if mode == "soft" else set()
    for k, v in expected.items():
        assert after[k][0] == v.encode(), (k, after[k], v)
        if k in fresh_stale:
            # A fresh stale copy with the grace TTL, replacing older ones.
            assert 0 < after[k][1] <= GRACE_MS, (k, after[k])
        else:
            # Untouched keys keep their (absent) TTL.
            assert (after[k][1] < 0) == (before[k][1] < 0), (k, after[k])
    if mode == "soft":
        assert total(workers, "stale_copies") == len(matched)

    # Commands: at most one per value key (K, L and S at once, never split
    # here), plus one per lock or stale copy acted on whose value key was
    # not in the same listing (orphans always; in SCAN pages, a value key
    # and its lock may fall in different pages). Plain deletes of one slot
    # that follow each other share a multi-key UNLINK of up to BATCH_MAX
    # keys, so commands can be fewer, but never fewer than the slots acted
    # on in a cluster (and soft value keys each keep their script). SCAN may also return
    # a key twice while the table shrinks under the deletions, hence only a
    # loose upper bound there.
    n_values = len(matched) // 2
    orphans = [k for k in orphan_locks + (orphan_stales if mode == "hard"
                                          else [])]
    scan_orphans = sum(1 for k in orphans if k.startswith("{pr:s:"))
    pin_orphans = sum(1 for k in orphans if k.startswith("{prt}"))
    scan_derived = len(derived_of("{pr:s:"))
    scan_names = [k for k in matched + orphans + [odd]
                  if k.startswith(("pr:s:", "{pr:s:"))]
    # Standalone Redis has no slots: commands are bounded below only by
    # their size (64 keys of three names at most).
    least = (len({key_slot(k) for k in scan_names}) if topo.is_cluster
             else -(-len(scan_names) // (3 * BATCH_MAX)))
    assert least <= sent1 - sent0 <= \
        2 * (n_values + 1 + scan_derived), (least, sent1 - sent0)
    pin_least = (n_values + -(-pin_orphans // BATCH_MAX) if mode == "soft"
                 else -(-(n_values + pin_orphans) // BATCH_MAX))
    if topo.is_cluster:
        # GETKEYSINSLOT's one listing holds each value key with its lock
        # and stale copy: at most one command per value key and orphan.
        owner = worker_for(topo, workers, "{prt}")
        assert wstats(owner)["slot_scans"] == 1
        assert pin_least <= sent2 - sent1 <= n_values + pin_orphans, \
            (sent2 - sent1)
    else:
        assert pin_least <= sent2 - sent1 <= \
            2 * (n_values + len(derived_of("{prt}"))), (sent2 - sent1)
    inv.close()


def test_soft_after_script_flush(topo, worker_factory, publisher_factory):
    """NOSCRIPT twice: on a fresh cache and after SCRIPT FLUSH."""
    r = client(topo)
    workers = start_workers(topo, worker_factory, "--stale-grace", "10s")
    inv = Invalidator(publisher_factory(topo.seeds))
    for round_ in range(2):
        flush_scripts(topo)
        keys = [f"ns:{round_}:{i}" for i in range(50)]
        for k in keys:
            r.set(k, "x")
        wait_applied(workers, inv.send(*[ev("key", k, "soft") for k in keys]))
        for k in keys:
            assert r.get(k) is None and r.get(names(k)[1]) == b"x", k
            assert 0 < r.pttl(names(k)[1]) <= 10000
    assert total(workers, "stale_copies") == 100
    inv.close()
