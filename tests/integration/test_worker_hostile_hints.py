"""Hostile and stray input on the worker's side of the sharded log.

Anything that can reach Redis can PUBLISH on cache:invalidation or SPUBLISH
on a shard's hint channel. A hint only asks the worker to read its shard;
its content is never used, so forged messages (well-formed payloads naming
keys that must survive, future ids, garbage) delete nothing and move no
cursor, while real invalidations go on being applied. The cursor lives in
each shard stream's consumer group:

- a group destroyed by hand is made again at 0 by the worker (every entry
  the stream still holds is applied again, which is harmless), counted in
  groups_created;
- a stream deleted by hand is made again, with its group, by the
  publisher's next write;
- an entry of another payload version (an older publisher's, or a forgery)
  is refused with a clear message and acknowledged, never applied.
"""

import time

import msgpack
import pytest

from workerlib import (CHANNEL, SHARDS, Topo, assert_keyset, key_events,
                       keys_present, load_keys, poll, send_events, shard_key,
                       start_workers, wait_applied, wait_gone, wstats)


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def payload(keys, version=2, **extra):
    """A well-formed payload naming keys."""
    return msgpack.packb(dict({"v": version, "ts": int(time.time() * 1000),
                               "events": [dict(e, mode="hard")
                                          for e in key_events(keys)]},
                              **extra))


def test_forged_hints_change_nothing(topo, worker_factory, publisher_factory):
    victims = [f"hh:victim:{i}" for i in range(50)]
    targets = [f"hh:target:{i}" for i in range(300)]
    load_keys(topo, victims + targets)
    workers = start_workers(topo, worker_factory)
    pub = publisher_factory(topo.seeds)
    warm = send_events(pub, key_events(["hh:warm"]))
    wait_applied(workers, warm)
    before = {w.name: wstats(w) for w in workers}

    forgeries = [payload(victims, id="99999999999999-0"),
                 b"99999999999999-0", b"18446744073709551615-18446744073709551615",
                 b"\xc1garbage", b"", b"x" * 100000]
    sent = 0
    owners = topo.owners()
    for shard in range(SHARDS):
        channel = shard_key(shard).replace(":log:", ":shard:")
        node = owners[shard * (16384 // SHARDS)] if topo.is_cluster \
            else topo.target
        c = node.client()
        for f in forgeries:
            sent += c.execute_command("SPUBLISH", channel, f)
    for f in forgeries:
        topo.primaries()[0].client().publish(CHANNEL, f)
    assert sent > 0  # every primary's worker listens on its shards' channels

    last = send_events(pub, key_events(targets), chunk=50)
    wait_gone(topo, "hh:target:*", set(targets), 30, "real targets removed")
    wait_applied(workers, last)
    assert_keyset(keys_present(topo, "hh:victim:*"), set(victims),
                  "keys named only by forged messages")
    heard = sum(wstats(w)["hints"] - before[w.name]["hints"] for w in workers)
    assert heard >= sent, (heard, sent)
    for w in workers:
        st = wstats(w)
        assert st["decode_errors"] == 0 and st["gaps"] == 0, (w.name, st)
        assert st["events_received"] - before[w.name]["events_received"] <= \
            len(targets), (w.name, st)
    # Each real event was received once, by its shard's worker.
    assert sum(wstats(w)["events_received"] - before[w.name]["events_received"]
               for w in workers) == len(targets)


def test_group_and_stream_removed_by_hand(standalone, worker_factory,
                                         publisher_factory):
    topo = Topo(standalone)
    r = standalone.client()
    key = shard_key(0)
    (w,) = start_workers(topo, worker_factory)
    pub = publisher_factory(topo.seeds)
    first = send_events(pub, key_events(["gs:warm"]))
    wait_applied([w], first)

    # The group destroyed: the worker makes it again at 0 and re-applies
    # what the stream holds; nothing is lost.
    assert r.xgroup_destroy(key, "inval") == 1
    load_keys(topo, ["gs:warm", "gs:1", "gs:kept"])
    last = send_events(pub, key_events(["gs:1"]))
    wait_gone(topo, "gs:*", {"gs:warm", "gs:1"}, 20,
              "the entries re-applied from a group made at 0")
    wait_applied([w], last)
    st = wstats(w)
    assert st["groups_created"] == 1, st
    assert "had no consumer group" in w.log()

    # The stream deleted: the publisher's next write makes it and its
    # group again.
    assert r.delete(key) == 1
    load_keys(topo, ["gs:2"])
    last = send_events(pub, key_events(["gs:2"]))
    wait_gone(topo, "gs:*", {"gs:2"}, 20, "applied from the new stream")
    wait_applied([w], last)
    assert r.xinfo_groups(key)[0]["name"] == b"inval"
    assert_keyset(keys_present(topo, "gs:*"), {"gs:kept"}, "gs: keys")

    # An entry of payload version 1: refused, named in the log,
    # acknowledged (so it blocks nothing), never applied.
    load_keys(topo, ["gs:v1", "gs:3"])
    r.xadd(key, {"p": payload(["gs:v1"], version=1)})
    r.execute_command("SPUBLISH", key.replace(":log:", ":shard:"), "x")
    last = send_events(pub, key_events(["gs:3"]))
    wait_gone(topo, "gs:*", {"gs:3"}, 20, "the next entry applied")
    wait_applied([w], last)
    assert r.exists("gs:v1") == 1
    assert wstats(w)["decode_errors"] == 1
    assert "payload version 1 is not supported (expected 2)" in w.log()
