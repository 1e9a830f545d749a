"""The publisher's side of the sharded log against real Redis: where each
event is written (XLEN over the 64 shard streams, INFO commandstats on
every primary), the consumer group created with the stream, the broadcast
and ack ids, and the blast radius of a killed primary."""

import threading
import time

import harness
from pubtest import (SHARDS, Subscriber, backend, connect, decode,  # noqa: F401
                     ev, expect_event, invalidate, route,
                     shard_key, stats)


def xlens(backend):
    return [backend.shard_node(k).client().xlen(shard_key(k))
            for k in range(SHARDS)]


def primaries(backend):
    if not backend.is_cluster:
        return [backend.target]
    return [n for n in backend.target.running() if n.role() == "master"]


def cmdstats(node):
    """{command: calls} from INFO commandstats."""
    info = node.client().info("commandstats")
    return {k[len("cmdstat_"):]: v["calls"] for k, v in info.items()}


def test_routing(backend, publisher_factory):
    """An exact key lands in the shard of its slot, a pinned pattern in
    exactly one shard, an unpinned prefix and pattern in all 64 (one in a
    standalone server, where everything is shard 0); each entry costs one
    EVALSHA and one XADD on the primary of its shard, and nothing else is
    written anywhere."""
    pub = publisher_factory(backend.seeds)
    with connect(pub) as c:
        # Loads the script on every primary, so the counts below are exact.
        assert invalidate(c, [ev("prefix", "warm:")])[0] is None
        base = xlens(backend)
        for n in primaries(backend):
            n.client().config_resetstat()
        cases = [
            ([ev("key", "user:1")], [route(ev("key", "user:1"))]),
            ([ev("pattern", "{user:42}:*")],
             [route(ev("key", "user:42"))]),
            ([ev("prefix", "session:")], list(range(SHARDS))),
            ([ev("pattern", "report:*:2026", "soft")], list(range(SHARDS))),
        ]
        for events, shards in cases:
            if not backend.is_cluster:
                shards = [0]
            before = xlens(backend)
            err, ack = invalidate(c, events)
            assert err is None, err
            after = xlens(backend)
            grew = [k for k in range(SHARDS) if after[k] != before[k]]
            assert grew == shards, events
            assert all(after[k] - before[k] == 1 for k in grew)
            # (e) the ack names exactly the entries written.
            assert [s for s, _ in ack["ids"]] == shards
            for shard, payload in backend.entries_of(ack).items():
                assert payload["events"] == [expect_event(e) for e in events]
    total = sum(len(s) if backend.is_cluster else 1 for _, s in cases)
    assert sum(xlens(backend)) - sum(base) == total
    per_node = {}
    for k in range(SHARDS):
        node = backend.shard_node(k)
        per_node[node.port] = per_node.get(node.port, 0) + \
            xlens(backend)[k] - base[k]
    for n in primaries(backend):
        st = cmdstats(n)
        assert st.get("evalsha", 0) == per_node.get(n.port, 0), (n.addr, st)
        assert st.get("xadd", 0) == per_node.get(n.port, 0), (n.addr, st)
        assert st.get("eval", 0) == 0, (n.addr, st)
        assert st.get("spublish", 0) == per_node.get(n.port, 0)
        assert st.get("publish", 0) <= len(cases)  # the broadcasts
    # Replicated acks wait once per node a request's entries went to, not
    # once per entry (64 entries of an unpinned prefix: 3 WAITs).
    replicated = stats(pub)["ack_replicas"] > 0
    for n in primaries(backend):
        touched = sum(1 for _, shards in cases if any(
            backend.shard_node(k).port == n.port
            for k in (shards if backend.is_cluster else [0])))
        assert cmdstats(n).get("wait", 0) == (touched if replicated else 0), \
            (n.addr, cmdstats(n).get("wait"), touched)
    st = stats(pub)
    # The warm-up found no script anywhere: one EVAL after each NOSCRIPT.
    assert st["log_entries"] == total + (SHARDS if backend.is_cluster else 1)
    assert st["shard_writes"] == st["log_entries"] + st["script_loads"]
    assert st["script_loads"] == (SHARDS if backend.is_cluster else 1)
    assert st["broadcast_failed"] == 0


def test_group_created_with_first_entry(backend, publisher_factory):
    """A stream is created with its consumer group "inval" at 0, so the
    group delivers the very first entry."""
    pub = publisher_factory(backend.seeds)
    shard = 0 if not backend.is_cluster else route(ev("key", "first:1"))
    key = shard_key(shard)
    r = backend.shard_node(shard).client()
    assert not r.exists(key)
    with connect(pub) as c:
        err, ack = invalidate(c, [ev("key", "first:1")])
        assert err is None, err
    groups = r.xinfo_groups(key)
    assert [g["name"] for g in groups] == [b"inval"]
    assert groups[0]["last-delivered-id"] == b"0-0"
    assert groups[0]["pending"] == 0
    got = r.xreadgroup("inval", "worker", {key: ">"}, count=10)
    assert [e.decode() for e, _ in got[0][1]] == [dict(ack["ids"])[shard]]
    # Other shards were not created.
    others = [k for k in range(SHARDS) if k != shard]
    assert not any(backend.shard_node(k).client().exists(shard_key(k))
                   for k in others)


def test_broadcast_carries_every_event_once(backend, publisher_factory):
    """(d) Each acked batch is broadcast once with all of its events in
    request order and the ids of its entries, which the streams hold."""
    pub = publisher_factory(backend.seeds)
    sub = Subscriber(backend.other_node())
    n = 120
    with connect(pub) as c:
        frames = b"".join(harness.pack([0, i + 1, "invalidate", [[
            ev("key", f"b:{i}"),
            ev("prefix", f"bp:{i}:") if i % 40 == 0 else ev("key", f"c:{i}")]]])
            for i in range(n))
        c.send_raw(frames)
        acks = {}
        for i in range(n):
            err, res = c.wait_response(i + 1, timeout=15)
            assert err is None, err
            acks[i] = res
    got = sub.collect(n, timeout=3)
    sub.close()
    batches = [{tuple(x) for x in p["ids"]} for p in got]
    # (e) each ack names its own shards' entries, all of one batch.
    for i, a in acks.items():
        mine = {tuple(x) for x in a["ids"]}
        want = {route(ev("key", f"b:{i}"))}
        want |= set(range(SHARDS)) if i % 40 == 0 else \
            {route(ev("key", f"c:{i}"))}
        if not backend.is_cluster:
            want = {0}
        assert {s for s, _ in mine} == want
        assert sum(mine <= b for b in batches) == 1
    assert stats(pub)["batches"] == len(got)
    targets = [e["target"] for p in got for e in p["events"]]
    assert sorted(targets) == sorted(
        [f"b:{i}" for i in range(n)] +
        [f"bp:{i}:" if i % 40 == 0 else f"c:{i}" for i in range(n)])
    for p in got:
        ack = {"ids": p["ids"]}
        entries = backend.entries_of(ack)
        # Every event of an entry is one of the broadcast's, in its order.
        for payload in entries.values():
            it = iter(p["events"])
            assert all(any(e == x for x in it) for e in payload["events"])


def _keys_on(cluster, node, n, prefix):
    """n keys whose log shards live on node."""
    out = []
    i = 0
    while len(out) < n:
        k = f"{prefix}:{i}"
        if cluster.node_for_key(shard_key(route(ev("key", k)))).port == \
                node.port:
            out.append(k)
        i += 1
    return out


def test_blast_radius_of_a_killed_primary(partial_cluster, publisher_factory):
    """(f) With one primary SIGKILLed, requests whose keys live on the other
    two primaries keep being acked with no gap over 200 ms; the failed
    node's keys get EUNAVAIL or are acked after the promotion, and every
    ack names entries that the streams hold."""
    cl = partial_cluster
    pub = publisher_factory(cl.seeds, "--redis-timeout", "1s")
    prim = [n for n in cl.running() if n.role() == "master"]
    victim = prim[0]
    healthy = [k for n in prim[1:] for k in _keys_on(cl, n, 20, f"h{n.port}")]
    doomed = _keys_on(cl, victim, 20, "d")
    stop = threading.Event()
    out = {"h": [], "d": [], "h_err": [], "d_err": []}

    def run(keys, tag):
        i = 0
        c = connect(pub)
        while not stop.is_set():
            k = keys[i % len(keys)]
            i += 1
            t0 = time.monotonic()
            err, res = invalidate(c, [ev("key", k)], timeout=10)
            t1 = time.monotonic()
            if err is None:
                out[tag].append((t1, k, res))
            else:
                out[tag + "_err"].append((t1, err["code"]))
                assert err["code"] == "EUNAVAIL", err
                time.sleep(0.02)
            if t1 - t0 < 0.002:
                time.sleep(0.002)
        c.close()

    threads = [threading.Thread(target=run, args=(healthy, "h")),
               threading.Thread(target=run, args=(doomed, "d"))]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t_kill = time.monotonic()
    cl.kill_primary(victim)
    t_promoted = time.monotonic()
    # Keep going until the failed node's keys are acked again.
    harness.wait_until(lambda: any(t > t_promoted for t, _, _ in out["d"]),
                       30, what="acks for the failed node's keys")
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(30)

    times = [t for t, _, _ in out["h"]]
    gaps = [b - a for a, b in zip(times, times[1:]) if b > t_kill - 0.5]
    worst = max(gaps)
    print(f"healthy acks: {len(times)}, worst gap {worst * 1000:.1f} ms; "
          f"failed-node keys: {len(out['d'])} acked, {len(out['d_err'])} "
          f"EUNAVAIL; promotion took {t_promoted - t_kill:.2f} s")
    assert out["h_err"] == [], out["h_err"][:5]
    assert worst <= 0.2, f"healthy keys waited {worst * 1000:.0f} ms"
    # Never acked while unwritten: every acked entry is in its stream now
    # (the promoted replica had it, or it was written after promotion).
    for tag in ("h", "d"):
        for _, k, res in out[tag]:
            shard = route(ev("key", k))
            eid = dict(res["ids"])[shard]
            rows = cl.node_for_key(shard_key(shard)).client().xrange(
                shard_key(shard), eid, eid)
            assert len(rows) == 1, (tag, k, eid)
            assert expect_event(ev("key", k)) in \
                decode(rows[0][1][b"p"])["events"]
