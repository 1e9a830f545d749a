"""The service's own keys (cache:invalidation and everything under
cache:invalidation:) are never deleted by an event, whatever matched them.

Workers and the publisher run with --allow-flush. Three rounds, each on a
freshly loaded keyspace: the prefix "cache:", the pattern "cache:*" and the
pattern "*". Each must remove every application key it reaches (cache:user:1
and, for "cache:" and "cache:*", the look-alike cache:invalidationx, which
is not reserved) while the log, the heartbeats, a key named exactly
cache:invalidation and a key of our own below cache:invalidation: survive.
Standalone Redis and the cluster.
"""

import pytest

from workerlib import (HB_KEY, assert_keyset, shard_key, shard_of_key, ev, flushed_topo,
                       keys_present, load_keys, poll, send_events, settle,
                       start_workers, wait_applied, wait_gone, wstats)

# Reserved keys the test writes itself; the log and the heartbeats are
# written by the service.
OURS = ["cache:invalidation", "cache:invalidation:extra:1",
        "cache:invalidation:{x}:y"]
APP = [f"cache:user:{i}" for i in range(200)] + ["cache:invalidationx",
                                                 "cache:invalidation-x"]
OTHER = [f"other:{i}" for i in range(200)]


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return flushed_topo(request, request.param)


ROUNDS = [
    # (event, keys that must go, keys that must survive besides the
    # reserved ones)
    (ev("prefix", "cache:"), set(APP), set(OTHER)),
    (ev("pattern", "cache:*"), set(APP), set(OTHER)),
    (ev("pattern", "*"), set(APP) | set(OTHER), set()),
]


def test_reserved_keys_survive(topo, worker_factory, publisher_factory):
    workers = start_workers(topo, worker_factory, "--allow-flush")
    pub = publisher_factory(topo.seeds, "--allow-flush")
    # One event first, so that the log and the heartbeats exist.
    last = send_events(pub, [ev("key", "warm-up")])
    wait_applied(workers, last)
    poll(lambda: HB_KEY in keys_present(topo, "cache:*"), 20,
         "heartbeats written")
    for event, gone, kept in ROUNDS:
        load_keys(topo, OURS + APP + OTHER)
        present = keys_present(topo)
        reserved = {k for k in present if k == "cache:invalidation" or
                    k.startswith("cache:invalidation:")}
        log_key = shard_key(shard_of_key("warm-up") if topo.is_cluster else 0)
        assert {log_key, HB_KEY, *OURS} <= reserved, sorted(present)[:20]
        skipped_before = sum(wstats(w)["reserved_skipped"] for w in workers)

        last = send_events(pub, [event])
        wait_gone(topo, "*", gone, 60, f"keys reached by {event}")
        wait_applied(workers, last)
        settle(workers)

        after = keys_present(topo)
        # Exactly: the reserved keys (the log may only have grown: an
        # unpinned event adds an entry to every shard, making the streams
        # that did not exist yet), and what the event does not reach.
        assert reserved <= after, (event, sorted(reserved - after))
        ours_after = {k for k in after if k == "cache:invalidation" or
                      k.startswith("cache:invalidation:")}
        assert_keyset(after - ours_after, kept, f"after {event}")
        skipped = sum(wstats(w)["reserved_skipped"] for w in workers)
        # Every reserved key the event reached was seen and left alone.
        assert skipped - skipped_before >= len(reserved), (event, skipped)
