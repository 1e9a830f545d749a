"""Gaps: log entries that left a shard's stream before they were applied.

Standalone Redis (one shard), one worker, events sent through a real
publisher. A worker learns of lost entries from Redis itself:

- entries trimmed (XTRIM, or the publisher's MAXLEN) before the group was
  delivered them: the stream's first entry is past the group's
  last-delivered id and the group's lag exceeds the stream's length;
- entries deleted (XDEL) past the last-delivered id (max-deleted-entry-id);
- entries delivered but not acknowledged (a worker died with them) that
  were trimmed since: they come back from the pending list without content.

Each is counted in `gaps` (and /metrics) and logged as an error naming the
shard; the worker goes on with what the stream still holds. Keys named only
by lost entries stay; everything after is applied.
"""

from workerlib import (Topo, assert_keyset, ev, key_events, keys_present,
                       load_keys, metric, poll, send_events, shard_key,
                       wait_applied, wait_gone, worker_ready, wstats)


def start(topo, worker_factory):
    w = worker_factory(topo.target, metrics=True)
    poll(lambda: worker_ready(w, topo.target), 30, "worker live")
    return w


def stopped_worker_with_backlog(topo, worker_factory, pub):
    """A worker that applied a first entry and was stopped; then entries
    naming lost:* were logged. Returns the stream key."""
    w = start(topo, worker_factory)
    wait_applied([w], send_events(pub, key_events(["warm"])))
    assert w.stop() == 0
    send_events(pub, key_events([f"lost:{i}" for i in range(100)]))
    send_events(pub, [ev("prefix", "lostp:")])
    return shard_key(0)


def check_gap_then_recovery(topo, worker_factory, pub, what, gaps=1,
                            said=None):
    """Starts a worker, waits until it counted gaps and logged said (by
    default the GAP line naming shard 0), then checks that what comes next
    is applied and that only what the lost entries named is left."""
    after = [f"after:{i}" for i in range(100)]
    w = start(topo, worker_factory)
    poll(lambda: wstats(w)["gaps"] == gaps, 10, f"the gap counted ({what})")
    assert metric(w, "inval_worker_gaps_total") == gaps
    said = said or "GAP: " + shard_key(0)
    assert said in w.log(), w.log_tail(20)
    last = send_events(pub, key_events(after) + [ev("prefix", "afterp:")])
    wait_gone(topo, "after*", set(after) | {f"afterp:{i}" for i in range(50)},
              20, "entries after the gap applied")
    wait_applied([w], last)
    # Only what the lost entries named is left.
    assert_keyset({k for k in keys_present(topo, "*")
                   if not k.startswith("cache:invalidation")},
                  {f"lost:{i}" for i in range(100)} |
                  {f"lostp:{i}" for i in range(50)} | {"kept"},
                  f"keys after a gap ({what})")
    assert wstats(w)["gaps"] == gaps
    return w


def load(topo):
    load_keys(topo, [f"lost:{i}" for i in range(100)] +
              [f"lostp:{i}" for i in range(50)] +
              [f"after:{i}" for i in range(100)] +
              [f"afterp:{i}" for i in range(50)] + ["kept"])


def test_trimmed_before_delivery(standalone, worker_factory,
                                 publisher_factory):
    topo = Topo(standalone)
    pub = publisher_factory(topo.seeds)
    key = stopped_worker_with_backlog(topo, worker_factory, pub)
    r = standalone.client()
    assert r.xtrim(key, maxlen=0, approximate=False) >= 2
    load(topo)
    check_gap_then_recovery(topo, worker_factory, pub, "XTRIM")


def test_deleted_before_delivery(standalone, worker_factory,
                                 publisher_factory):
    topo = Topo(standalone)
    pub = publisher_factory(topo.seeds)
    key = stopped_worker_with_backlog(topo, worker_factory, pub)
    r = standalone.client()
    undelivered = [eid for eid, _ in r.xrange(key)][-2:]
    assert r.xdel(key, *undelivered) == 2
    load(topo)
    check_gap_then_recovery(topo, worker_factory, pub, "XDEL")


def test_pending_entries_trimmed(standalone, worker_factory,
                                 publisher_factory):
    topo = Topo(standalone)
    pub = publisher_factory(topo.seeds)
    key = stopped_worker_with_backlog(topo, worker_factory, pub)
    r = standalone.client()
    # A worker read the backlog and died before acknowledging it: the
    # entries are pending for the consumer every worker reads as.
    got = r.xreadgroup("inval", "worker", {key: ">"})
    assert len(got[0][1]) == 2
    assert r.xtrim(key, maxlen=0, approximate=False) >= 2
    load(topo)
    w = check_gap_then_recovery(topo, worker_factory, pub, "pending", gaps=2,
                                said="was trimmed before it was applied")
    assert w.log().count("was trimmed before it was applied") == 2
    # Acknowledged, so they no longer block the shard.
    assert r.xpending(key, "inval")["pending"] == 0
