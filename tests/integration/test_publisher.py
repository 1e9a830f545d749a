"""inval-publisher against real Redis, standalone and the 6-node cluster:
hello / invalidate / stats / ping, what the log and the broadcast hold,
acks only after Redis confirmed, notifications, pipelining, many
connections, and a graceful stop with requests in flight."""

import socket
import time

import msgpack
import pytest

import harness
from harness import HOST, RpcClient
from pubtest import (LOG_KEY, Subscriber, backend, connect,  # noqa: F401
                     decode, ev, expect_event, invalidate,
                     shard_key, sid, stats)


def test_hello_ping_stats(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    with connect(pub) as c:
        err, res = c.call("hello", {"proto": 1, "client": "pytest"})
        assert err is None
        assert res["server"] == "inval-publisher"
        assert res["version"] == "0.1.0"
        assert res["proto"] == 1
        assert res["max_message_bytes"] == 1024 * 1024
        assert res["max_events"] == 10000
        assert c.call("ping") == (None, "PONG")
        err, st = c.call("stats")
        assert err is None
        assert st["version"] == "0.1.0"
        assert st["clients"] >= 1
        err, res = invalidate(c, [ev("key", "user:1")])
        assert err is None, err
        assert res["accepted"] == 1 and "-" in res["id"]


def test_invalidate_logged_and_broadcast(backend, publisher_factory):
    """A subscriber on a node that does not own the log receives exactly
    the acked events with the acked ids, and the log holds the same."""
    pub = publisher_factory(backend.seeds)
    subs = [Subscriber(backend.other_node())]
    if backend.is_cluster:
        owner = backend.log_node()
        subs.append(Subscriber(backend.target.replica_of(owner)))
    before = len(backend.shard_entries())
    requests = [
        [ev("key", "user:1")],
        [ev("key", "user:2", "soft"), ev("prefix", "session:"),
         ev("pattern", "report:*:2026", "hard")],
        [ev("key", b"bin\x00key\xff")],
        [ev("pattern", "{user:42}:*", "soft")],
    ]
    acks = []
    with connect(pub) as c:
        for events in requests:
            err, res = invalidate(c, events)
            assert err is None, err
            assert res["accepted"] == len(events)
            acks.append(res)
    for events, ack in zip(requests, acks):
        # One entry per shard the request touched, ids in shard order, and
        # "id" the largest of them.
        want = backend.expected_entries(events)
        assert [s for s, _ in ack["ids"]] == sorted(want)
        assert ack["id"] == max((i for _, i in ack["ids"]), key=sid)
        entries = backend.entries_of(ack)
        for shard, payload in entries.items():
            assert set(payload) == {"v", "ts", "events"}
            assert payload["v"] == 2
            assert payload["events"] == want[shard]

    for sub in subs:
        got = sub.collect(len(acks))
        assert [p["ids"] for p in got] == [a["ids"] for a in acks]
        for p, events in zip(got, requests):
            assert p["v"] == 2 and set(p) == {"v", "ts", "events", "ids"}
            assert abs(p["ts"] - time.time() * 1000) < 60000
            assert p["events"] == [expect_event(e) for e in events]
        assert sub.quiet(0.5), "more broadcasts than acked batches"
        sub.close()
    # Nothing but the acked entries was written.
    assert len(backend.shard_entries()) - before == \
        sum(len(a["ids"]) for a in acks)


def test_pipelined_requests_share_batches(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    sub = Subscriber(backend.other_node())
    n = 300
    with connect(pub) as c:
        frames = b"".join(harness.pack([0, i + 1, "invalidate",
                                        [[ev("key", f"k:{i}")]]])
                          for i in range(n))
        c.send_raw(frames)
        results = {}
        for i in range(n):
            err, res = c.wait_response(i + 1, timeout=15)
            assert err is None, err
            results[i] = res
    # One broadcast per batch; a request's ack names the entries of its
    # batch that hold its events.
    got = sub.collect(n, timeout=3)
    batches = [{tuple(x) for x in p["ids"]} for p in got]
    assert len(batches) < n, "pipelined requests were not batched"
    assert sum(len(p["events"]) for p in got) == n
    for i, res in results.items():
        mine = {tuple(x) for x in res["ids"]}
        assert len(mine) == 1 and any(mine <= b for b in batches)
        shard, eid = res["ids"][0]
        assert shard == backend.shard_for(f"k:{i}")
        rows = backend.shard_node(shard).client().xrange(
            shard_key(shard), eid, eid)
        assert {"kind": "key", "target": f"k:{i}", "mode": "hard"} in \
            decode(rows[0][1][b"p"])["events"]
    assert len(backend.shard_entries()) == sum(len(b) for b in batches)
    st = stats(pub)
    assert st["events_acked"] == n
    assert st["batches"] == len(batches)
    assert st["batch_events_total"] == n
    assert st["log_entries"] == sum(len(b) for b in batches)
    sub.close()


def test_batch_limits_respected(standalone, publisher_factory):
    """batch-max-events splits batches, but a request's events always stay
    in one batch."""
    pub = publisher_factory(standalone.addr, "--batch-max-events", 4,
                            "--batch-delay-us", 20000)
    with connect(pub) as c:
        sizes = [3, 3, 2, 6, 1]
        for i, k in enumerate(sizes):
            c.request(i + 1, "invalidate",
                      [[ev("key", f"r{i}:{j}") for j in range(k)]])
        ids = []
        for i in range(len(sizes)):
            err, res = c.wait_response(i + 1, timeout=10)
            assert err is None
            assert res["accepted"] == sizes[i]
            ids.append(res["id"])
    r = standalone.client()
    entries = {e.decode(): msgpack.unpackb(f[b"p"], raw=False)
               for e, f in r.xrange(LOG_KEY)}
    for i, eid in enumerate(ids):
        targets = [e["target"] for e in entries[eid]["events"]]
        assert [f"r{i}:{j}" for j in range(sizes[i])] == \
            [t for t in targets if t.startswith(f"r{i}:")]
    for payload in entries.values():
        # A batch closes once full; only a single request can exceed it.
        assert len(payload["events"]) <= 6


def test_notifications_fire_and_forget(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    with connect(pub) as c:
        c.notify("invalidate", [[ev("key", "note:1")]])
        c.notify("invalidate", [[ev("key", "")]])          # invalid: dropped
        c.notify("invalidate", [[ev("pattern", "*")]])     # invalid: dropped
        c.notify("invalidate", [[ev("prefix", "note:p:")]])
        with pytest.raises(TimeoutError):
            c.read_message(timeout=1.0)  # never answered
        assert c.call("ping") == (None, "PONG")

    def logged():
        targets = [e["target"] for e in backend.events()]
        return sorted(targets) == ["note:1", "note:p:"]

    harness.wait_until(logged, 10, what="notified events in the log")
    st = stats(pub)
    assert st["notifications"] == 4
    assert st["notifications_failed"] == 2
    assert st["events_acked"] == 2
    assert st["events_rejected"] == 2
    assert st["errors"]["EINVAL"] == 2


def test_ack_only_after_redis_confirmed(backend, publisher_factory):
    """While the log's node is paused for writes no ack arrives; it comes
    once Redis ran the script, and the event is then in the log."""
    pub = publisher_factory(backend.seeds)
    with connect(pub) as c:
        assert invalidate(c, [ev("key", "warmup")])[0] is None
        backend.pause_log_node(2000, shard=backend.shard_for("paused:1"))
        t0 = time.monotonic()
        c.request(77, "invalidate", [[ev("key", "paused:1")]])
        with pytest.raises(TimeoutError):
            c.wait_response(77, timeout=1.5)
        err, res = c.wait_response(77, timeout=10)
        elapsed = time.monotonic() - t0
        assert err is None, err
        assert elapsed >= 1.8, f"acked after {elapsed:.2f}s, inside the pause"
        assert list(backend.entries_of(res).values()) == [{
            "v": 2, "ts": backend.entries_of(res)[res["ids"][0][0]]["ts"],
            "events": [{"kind": "key", "target": "paused:1",
                        "mode": "hard"}]}]


def test_unconfirmed_batch_gets_eunavail(backend, publisher_factory):
    """With --redis-timeout 500ms and the log's node paused for 2 s the
    request fails with EUNAVAIL and is never acked. The script call was
    sent before the timeout, so whether Redis runs it after the pause
    depends on whether the paused command survives the publisher dropping
    that connection: the event is then either absent from the log, or
    present exactly once (at-least-once delivery; the client was told to
    retry). Either way the publisher recovers by itself."""
    pub = publisher_factory(backend.seeds, "--redis-timeout", "500ms")
    with connect(pub) as c:
        assert invalidate(c, [ev("key", "warmup")])[0] is None
        backend.pause_log_node(2000, shard=backend.shard_for("timeout:1"))
        t0 = time.monotonic()
        err, res = invalidate(c, [ev("key", "timeout:1")], timeout=5)
        elapsed = time.monotonic() - t0
        assert err is not None and err["code"] == "EUNAVAIL", (err, res)
        assert 0.4 <= elapsed < 1.9, elapsed
        # The message names the shard and the node it waited for.
        shard = backend.shard_for("timeout:1")
        node = backend.shard_node(shard)
        assert f"log shard {shard} on {node.addr}" in err["message"], err
        # No late ack on this connection.
        with pytest.raises(TimeoutError):
            c.read_message(timeout=2.0)
        harness.wait_until(
            lambda: invalidate(c, [ev("key", "after")], timeout=3)[0] is None,
            15, what="publisher recovered")
    targets = [e["target"] for _, p in backend.log_entries()
               for e in p["events"]]
    assert targets.count("timeout:1") <= 1
    print("event after EUNAVAIL present in log:", "timeout:1" in targets)


def test_thousand_concurrent_connections(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    n = 1000
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection((HOST, pub.port), timeout=10)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendall(harness.pack([0, i, "invalidate",
                                    [[ev("key", f"conn:{i}")]]]))
        ids = {}
        for i, s in enumerate(socks):
            unp = msgpack.Unpacker(raw=False)
            deadline = time.monotonic() + 30
            msg = None
            while msg is None and time.monotonic() < deadline:
                data = s.recv(4096)
                assert data, f"connection {i} closed"
                unp.feed(data)
                for m in unp:
                    msg = m
            assert msg is not None and msg[0] == 1 and msg[1] == i
            assert msg[2] is None, msg[2]
            ids[i] = msg[3]["id"]
        st = stats(pub)
        assert st["clients"] >= n
        assert st["connections_total"] >= n
    finally:
        for s in socks:
            s.close()
    targets = sorted(e["target"] for _, p in backend.log_entries()
                     for e in p["events"])
    assert targets == sorted(f"conn:{i}" for i in range(n))
    assert stats(pub)["events_acked"] == n


def test_sigterm_answers_pending_requests(standalone, publisher_factory):
    """SIGTERM with a request waiting on a paused Redis: the publisher stops
    accepting, still acks the request once Redis confirms, and exits 0."""
    pub = publisher_factory(standalone.addr)
    c, late = connect(pub), connect(pub)
    assert invalidate(c, [ev("key", "warm")])[0] is None
    standalone.client().execute_command("CLIENT", "PAUSE", 1500, "WRITE")
    c.request(5, "invalidate", [[ev("key", "in-flight")]])
    time.sleep(0.3)
    pub.signal(15)
    time.sleep(0.3)
    assert not harness.port_accepts(pub.port), "still accepting after SIGTERM"
    # An open session may still talk, but new events are refused.
    err, _ = invalidate(late, [ev("key", "too-late")], timeout=5)
    assert err["code"] == "ESHUTDOWN"
    assert late.call("ping") == (None, "PONG")
    late.close()
    err, res = c.wait_response(5, timeout=10)
    assert err is None, err
    assert pub.wait(10) == 0
    pub.stopped = True
    entries = standalone.client().xrange(LOG_KEY)
    assert res["id"].encode() in [e for e, _ in entries]
    c.close()
    assert "every accepted request is answered" in pub.log()


def test_sigterm_fails_unconfirmable_requests(workdir, publisher_factory):
    """With Redis gone, SIGTERM still answers the pending request (EUNAVAIL
    at the redis-timeout) and exits 0."""
    dead = f"{HOST}:{harness.free_port()}"
    pub = publisher_factory(dead, "--redis-timeout", "1s")
    c = connect(pub)
    c.request(9, "invalidate", [[ev("key", "nowhere")]])
    time.sleep(0.2)
    pub.signal(15)
    err, res = c.wait_response(9, timeout=10)
    assert err is not None and err["code"] in ("EUNAVAIL", "ESHUTDOWN")
    assert pub.wait(10) == 0
    pub.stopped = True
    c.close()


def test_inflight_bound(standalone, publisher_factory):
    """With one batch in flight at most, closed batches wait their turn and
    are sent in order once Redis answers."""
    pub = publisher_factory(standalone.addr, "--max-inflight-batches", 1,
                            "--batch-max-events", 1)
    c = connect(pub)
    assert invalidate(c, [ev("key", "warm")])[0] is None
    standalone.client().execute_command("CLIENT", "PAUSE", 1500, "WRITE")
    for i in range(5):
        c.request(i + 1, "invalidate", [[ev("key", f"q{i}")]])
    time.sleep(0.3)
    st = stats(pub)
    assert st["inflight_batches"] == 1
    assert st["pending_events"] == 5
    ids = [c.wait_response(i + 1, timeout=10)[1]["id"] for i in range(5)]
    c.close()
    assert len(set(ids)) == 5
    assert ids == sorted(ids, key=lambda x: tuple(map(int, x.split("-"))))
    assert stats(pub)["inflight_batches"] == 0
