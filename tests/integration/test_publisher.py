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
from pubtest import (Subscriber, backend, connect, ev, expect_event,  # noqa: F401
                     invalidate, stats)


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
            acks.append(res["id"])
    want = {}
    for events, eid in zip(requests, acks):
        want.setdefault(eid, []).extend(expect_event(e) for e in events)

    for sub in subs:
        got = sub.collect(len(want))
        assert [p["id"] for p in got] == sorted(want, key=acks.index)
        for p in got:
            assert p["v"] == 1
            assert abs(p["ts"] - time.time() * 1000) < 60000
            assert p["events"] == want[p["id"]]
        assert sub.quiet(0.5), "more broadcasts than acked batches"
        sub.close()

    log = backend.log_entries()
    assert [eid for eid, _ in log] == sorted(want, key=acks.index)
    for eid, payload in log:
        assert set(payload) == {"v", "ts", "events"}
        assert payload["events"] == want[eid]


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
            results[i] = res["id"]
    ids = set(results.values())
    assert len(ids) < n, "pipelined requests were not batched"
    log = dict(backend.log_entries())
    assert set(log) == ids
    for i, eid in results.items():
        assert {"kind": "key", "target": f"k:{i}", "mode": "hard"} in \
            log[eid]["events"]
    got = sub.collect(len(ids))
    assert {p["id"] for p in got} == ids
    assert sum(len(p["events"]) for p in got) == n
    st = stats(pub)
    assert st["events_acked"] == n
    assert st["batches"] == len(ids)
    assert st["batch_events_total"] == n
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
               for e, f in r.xrange("cache:invalidation:log")}
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
        targets = [e["target"] for _, p in backend.log_entries()
                   for e in p["events"]]
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
        backend.pause_log_node(2000)
        t0 = time.monotonic()
        c.request(77, "invalidate", [[ev("key", "paused:1")]])
        with pytest.raises(TimeoutError):
            c.wait_response(77, timeout=1.5)
        err, res = c.wait_response(77, timeout=10)
        elapsed = time.monotonic() - t0
        assert err is None, err
        assert elapsed >= 1.8, f"acked after {elapsed:.2f}s, inside the pause"
        log = dict(backend.log_entries())
        assert res["id"] in log
        assert log[res["id"]]["events"] == [
            {"kind": "key", "target": "paused:1", "mode": "hard"}]


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
        backend.pause_log_node(2000)
        t0 = time.monotonic()
        err, res = invalidate(c, [ev("key", "timeout:1")], timeout=5)
        elapsed = time.monotonic() - t0
        assert err is not None and err["code"] == "EUNAVAIL", (err, res)
        assert 0.4 <= elapsed < 1.9, elapsed
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
    entries = standalone.client().xrange("cache:invalidation:log")
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
