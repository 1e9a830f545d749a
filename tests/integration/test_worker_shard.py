"""The fast path: shard channels (proto/PROTOCOL.md, "Shard channels").

In a cluster the publisher also sends every logged entry, with "prev" (the
entry before it), by SPUBLISH to the shard channel of each primary other
than the log's node, so that a worker need not wait for the cluster bus to
carry the PUBLISH. A copy, like the broadcast, is only a hint: its id makes
the worker read the log from the last id it read, and only what the log
returns is applied.

- Entries reach the primaries' workers through their shard channels, each
  entry is applied exactly once (the broadcast twin is a skipped
  duplicate), invalidated keys are gone and the others survive.
- A copy whose prev was never read (the entry before it was lost on both
  paths) makes the worker read both entries from the log at once. The
  copy's own events are never applied: the log's are.
- When the node's lowest slot moves away, the worker follows: it listens
  on the channel of its new lowest slot, and the fast path works again.
- Standalone Redis has no bus hop: no copies, no shard subscription.
"""

import msgpack

from harness import HOST, RpcClient, key_slot, rpc_ok
from workerlib import (LOG_KEY, SlotMover, Topo, assert_keyset, key_events,
                       keys_present, load_keys, log_entry, poll, send_events,
                       settle, sid, start_workers, wait_applied, wait_gone,
                       wait_maps_current, worker_of, wstats)


def pstats(pub):
    with RpcClient(HOST, pub.port) as c:
        return rpc_ok(c, "stats")


def shard_channel(slot):
    """The channel of the shard whose lowest slot is slot: the smallest
    number whose decimal digits hash to slot, as a hash tag."""
    n = 0
    while key_slot(str(n)) != slot:
        n += 1
    return f"cache:invalidation:shard:{{{n}}}"


def lowest_slot(topo, node):
    return min(s for s, o in enumerate(topo.owners()) if o.port == node.port)


def keys_on(topo, node, prefix, count):
    """count keys named prefix<i> that node owns."""
    owners = topo.owners()
    out, i = [], 0
    while len(out) < count:
        k = f"{prefix}{i}"
        if owners[key_slot(k)].port == node.port:
            out.append(k)
        i += 1
    return out


def listening(node):
    return sorted(c.decode() for c in
                  node.client().execute_command("PUBSUB", "SHARDCHANNELS"))


def other_primaries(topo):
    log_port = topo.log_node().port
    return [p for p in topo.primaries() if p.port != log_port]


def test_entries_arrive_on_shard_channels(cluster, publisher_factory,
                                          worker_factory):
    topo = Topo(cluster)
    workers = start_workers(topo, worker_factory)
    pub = publisher_factory(cluster)
    others = other_primaries(topo)
    for p in others:
        poll(lambda p=p: listening(p) == [shard_channel(lowest_slot(topo, p))],
             15, f"the worker of {p.addr} listening on its shard channel")
    gone = [f"sc:g:{i}" for i in range(3000)]
    kept = [f"sc:k:{i}" for i in range(1000)]
    load_keys(topo, gone + kept)
    # The first entry opens the publisher's connections to every primary.
    wait_applied(workers, send_events(pub, key_events(["sc:warm"])))
    before = {w.name: wstats(w) for w in workers}
    last = send_events(pub, key_events(gone), chunk=50, window=1)
    wait_gone(topo, "sc:*", set(gone), 30, "invalidated keys gone")
    wait_applied(workers, last)
    settle(workers)
    assert_keyset(keys_present(topo, "sc:*"), set(kept), "sc: keys")

    for p in others:
        w = worker_of(workers, p)
        st, b = wstats(w), before[w.name]
        assert st["shard_subscribed"] == 1, st
        assert st["shard_taken"] > b["shard_taken"], (w.name, st)
        if st["replays"] == b["replays"]:
            # Every entry once: the broadcast twins were skipped.
            assert st["events_received"] - b["events_received"] == \
                len(gone), (w.name, st)
            assert st["events_skipped"] > b["events_skipped"], (w.name, st)
    log_worker = worker_of(workers, topo.log_node())
    assert wstats(log_worker)["shard_taken"] == 0
    ps = pstats(pub)
    # One request at a time: one entry each, a copy to each other primary.
    assert ps["shard_sent"] >= 2 * (len(gone) // 50), ps
    assert ps["shard_failed"] == 0, ps


def copy_of(entry_id, prev, events):
    """The fast-path copy of a log entry, as the publisher sends it."""
    return msgpack.packb({"v": 1, "ts": int(sid(entry_id)[0]),
                          "events": [dict(e, mode="hard") for e in events],
                          "id": entry_id, "prev": prev})


def test_copy_asks_for_the_log(cluster, worker_factory):
    topo = Topo(cluster)
    # A long heartbeat keeps the log check from finding the lost entries:
    # only the copy can make the worker read them this soon.
    workers = start_workers(topo, worker_factory, "--heartbeat-interval", "5s")
    p = other_primaries(topo)[0]
    w = worker_of(workers, p)
    channel = shard_channel(lowest_slot(topo, p))
    poll(lambda: listening(p) == [channel], 15, "shard channel subscription")
    lost = keys_on(topo, p, "so:a:", 50)
    early = keys_on(topo, p, "so:b:", 50)
    inorder = keys_on(topo, p, "so:c:", 50)
    kept = keys_on(topo, p, "so:k:", 50)
    load_keys(topo, lost + early + inorder + kept)
    e0 = log_entry(topo, key_events(["so:warm"]))
    wait_applied(workers, e0)
    b = wstats(w)

    # e1 is lost on both paths; the copy of e2 (prev e1) arrives and the
    # log brings both.
    e1 = log_entry(topo, key_events(lost), publish=False)
    e2 = log_entry(topo, key_events(early), publish=False)
    p.client().execute_command("SPUBLISH", channel,
                               copy_of(e2, e1, key_events(early)))
    wait_gone(topo, "so:[ab]:*", set(lost) | set(early), 3,
              "both entries read from the log on the copy's hint")
    poll(lambda: sid(wstats(w)["last_applied_id"]) == sid(e2), 3,
         "the worker at e2")
    st = wstats(w)
    assert st["shard_taken"] == b["shard_taken"] + 1, st
    assert st["live_lost"] == b["live_lost"], st
    assert st["hints_rejected"] == b["hints_rejected"], st

    # The next copy carries other events than its log entry: the log's
    # events are applied, the copy's are not.
    b = wstats(w)
    e3 = log_entry(topo, key_events(inorder), publish=False)
    p.client().execute_command("SPUBLISH", channel,
                               copy_of(e3, e2, key_events(kept)))
    wait_gone(topo, "so:c:*", set(inorder), 3, "the logged entry applied")
    poll(lambda: wstats(w)["shard_taken"] == b["shard_taken"] + 1, 3,
         "the copy asked for the read")
    settle(workers)
    assert_keyset(keys_present(topo, "so:*"), set(kept), "so: keys")


def test_channel_follows_lowest_slot(fresh_cluster, publisher_factory,
                                     worker_factory):
    topo = Topo(fresh_cluster)
    workers = start_workers(topo, worker_factory)
    pub = publisher_factory(fresh_cluster)
    p = other_primaries(topo)[0]
    dst = [q for q in topo.primaries() if q.port != p.port][0]
    w = worker_of(workers, p)
    low = lowest_slot(topo, p)
    poll(lambda: listening(p) == [shard_channel(low)], 15,
         "listening on the lowest slot's channel")

    SlotMover(fresh_cluster, p, dst).move(low)
    wait_maps_current(topo, workers)
    new_low = lowest_slot(topo, p)
    assert new_low > low
    poll(lambda: listening(p) == [shard_channel(new_low)], 15,
         "listening on the new lowest slot's channel")
    assert wstats(w)["shard_subscribed"] == 1

    # The publisher's map catches up within its refresh period; from then
    # on copies reach the new channel.
    gone = keys_on(topo, p, "mv:g:", 200)
    kept = keys_on(topo, p, "mv:k:", 200)
    load_keys(topo, gone + kept)
    b = wstats(w)

    def taken_again():
        send_events(pub, key_events(gone[:1] + ["mv:tick"]))
        return wstats(w)["shard_taken"] > b["shard_taken"]
    poll(taken_again, 20, "copies taken on the new channel", interval=0.5)
    wait_applied(workers, send_events(pub, key_events(gone), chunk=20))
    settle(workers)
    assert_keyset(keys_present(topo, "mv:*"), set(kept), "mv: keys")


def test_standalone_has_no_copies(standalone, publisher_factory,
                                  worker_factory):
    topo = Topo(standalone)
    workers = start_workers(topo, worker_factory)
    pub = publisher_factory(standalone)
    keys = [f"sa:{i}" for i in range(100)]
    load_keys(topo, keys + ["sa:kept"])
    wait_applied(workers, send_events(pub, key_events(keys)))
    wait_gone(topo, "sa:*", set(keys), 10, "keys gone")
    assert keys_present(topo, "sa:*") == {"sa:kept"}
    st = wstats(workers[0])
    assert st["shard_subscribed"] == 0 and st["shard_taken"] == 0, st
    ps = pstats(pub)
    assert ps["shard_sent"] == 0 and ps["shard_skipped"] == 0, ps
    assert listening(standalone) == []


def test_shard_publish_off(cluster, publisher_factory, worker_factory):
    """--shard-publish no: only the broadcast, and nothing is lost."""
    topo = Topo(cluster)
    workers = start_workers(topo, worker_factory)
    pub = publisher_factory(cluster, "--shard-publish", "no")
    keys = [f"off:{i}" for i in range(500)]
    load_keys(topo, keys + ["off:kept"])
    wait_applied(workers, send_events(pub, key_events(keys), chunk=50))
    wait_gone(topo, "off:*", set(keys), 30, "keys gone")
    settle(workers)
    assert keys_present(topo, "off:*") == {"off:kept"}
    ps = pstats(pub)
    assert ps["shard_sent"] == 0, ps
    for w in workers:
        assert wstats(w)["shard_taken"] == 0, w.name
    assert topo.log_client().xlen(LOG_KEY) > 0


def test_refused_subscription_falls_back(cluster, publisher_factory,
                                         worker_factory):
    """An ACL that refuses SSUBSCRIBE and SPUBLISH: the workers and the
    publisher warn once each, entries still arrive through the broadcast,
    and the subscription is made once it is allowed (each slot map refresh
    tries again)."""
    topo = Topo(cluster)
    nodes = topo.nodes()
    try:
        for n in nodes:
            n.client().execute_command("ACL", "SETUSER", "default",
                                       "-ssubscribe", "-spublish")
        workers = start_workers(topo, worker_factory)
        pub = publisher_factory(cluster)
        others = other_primaries(topo)
        for p in others:
            w = worker_of(workers, p)
            poll(lambda w=w: "NOPERM" in w.log(), 15, "the refusal logged")
        keys = [f"acl:{i}" for i in range(300)]
        load_keys(topo, keys + ["acl:kept"])
        wait_applied(workers, send_events(pub, key_events(keys), chunk=30))
        wait_gone(topo, "acl:*", set(keys), 30, "keys gone by the broadcast")
        assert keys_present(topo, "acl:*") == {"acl:kept"}
        for p in others:
            w = worker_of(workers, p)
            st = wstats(w)
            assert st["shard_subscribed"] == 0 and st["shard_taken"] == 0, st
            assert w.log().count("SSUBSCRIBE") == 1, w.log_tail(20)
            assert listening(p) == []
        ps = pstats(pub)
        assert ps["shard_sent"] > 0 and ps["shard_failed"] > 0, ps
        assert pub.log().count("fast-path copy") == 1, pub.log_tail(20)
    finally:
        for n in nodes:
            n.client().execute_command("ACL", "SETUSER", "default",
                                       "+ssubscribe", "+spublish")
    for p in others:
        poll(lambda p=p: listening(p) ==
             [shard_channel(lowest_slot(topo, p))], 15,
             f"the worker of {p.addr} subscribed once allowed")
