"""Live messages that never arrive (issue 3: lossless delivery).

In a cluster a PUBLISH reaches the other nodes over the cluster bus, which
drops it when the link between two nodes is being re-established; the
worker's own subscription stays up, so reconnect-time catch-up does not
help. The worker compares what it took in with the log every heartbeat
interval. Here the loss is made on purpose: an entry is written to the log
without being published.

- The lost entry is the log's last one: once it has not been read for a
  whole interval, every worker (primaries and standbys) reads the log, and
  its keys go.
- The lost entry is followed by one that arrives: a live message is only a
  hint to read the log from the last id read, so that read brings both,
  and nothing is counted as lost.
- Nothing else is touched, and nothing is reported lost while nothing is.
"""

import pytest

from workerlib import (Topo, assert_keyset, key_events, keys_present,
                       load_keys, log_entry, poll, settle, start_workers,
                       wait_applied, wait_gone, wstats)


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def test_lost_messages_replayed(topo, worker_factory):
    workers = start_workers(topo, worker_factory, "--heartbeat-interval",
                            "200ms")
    tail = [f"ll:t:{i}" for i in range(300)]
    first = [f"ll:a:{i}" for i in range(300)]
    second = [f"ll:b:{i}" for i in range(300)]
    fine = [f"ll:f:{i}" for i in range(300)]
    kept = [f"ll:k:{i}" for i in range(300)]
    load_keys(topo, tail + first + second + fine + kept)

    # Published normally: no replay, nothing counted as lost.
    e = log_entry(topo, key_events(fine))
    wait_gone(topo, "ll:*", set(fine), 30, "published entry applied")
    wait_applied(workers, e)
    poll(lambda: all(wstats(w)["live_lost"] == 0 for w in workers), 5,
         "no loss reported")

    # The log's last entry never arrives.
    e = log_entry(topo, key_events(tail), publish=False)
    wait_gone(topo, "ll:*", set(tail), 30, "unpublished last entry read")
    wait_applied(workers, e)
    for w in workers:
        st = wstats(w)
        assert st["live_lost"] >= 1, (w.name, st)
    lost_before = {w.name: wstats(w)["live_lost"] for w in workers}

    # A lost entry followed by one that arrives.
    log_entry(topo, key_events(first), publish=False)
    e = log_entry(topo, key_events(second))
    wait_gone(topo, "ll:*", set(first) | set(second), 30,
              "lost entry before a published one read")
    wait_applied(workers, e)
    settle(workers)
    assert_keyset(keys_present(topo, "ll:*"), set(kept), "ll: keys")
    for w in workers:
        st = wstats(w)
        assert st["live_lost"] == lost_before[w.name], (w.name, st)
        assert "never arrived" in w.log(), w.log_tail(20)
