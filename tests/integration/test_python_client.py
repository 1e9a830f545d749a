"""The Python publisher client (proto/python/inval/client.py) against a real
inval-publisher on standalone Redis and the 6-node cluster: hello, ping,
stats, invalidate of every kind and mode (checked in the log), pipelining
with replies matched by msgid, error codes raised as InvalError, auth
tokens, TLS, connection failures, a worker's admin port, and an
end-to-end invalidation applied by inval-worker.

The package is imported from the source tree."""

import os
import socket
import sys

import pytest

import harness
from harness import HOST
from pubtest import Topo, backend, expect_event, sid  # noqa: F401
from test_invalctl import make_cert

sys.path.insert(0, os.path.join(harness.REPO_ROOT, "proto", "python"))

import inval  # noqa: E402
from inval import (Client, InvalConnectionError, InvalError,  # noqa: E402
                   InvalTimeoutError, key, pattern, prefix)


def logged_events(b):
    return [e for _, p in b.log_entries() for e in p["events"]]


def test_hello_ping_stats(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    with Client(HOST, pub.port, client_name="pytest/1") as c:
        assert c.server["server"] == "inval-publisher"
        assert c.server["proto"] == 1
        assert c.server["max_message_bytes"] == 1048576
        assert c.server["max_events"] == 10000
        assert c.ping() == "PONG"
        c.invalidate([key("st:1")])
        st = c.stats()
        assert st["events_acked"] >= 1 and st["clients"] >= 1
        assert isinstance(st["workers"], list)


def test_invalidate_every_kind_and_mode(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    events = [key("user:42"), prefix("session:42:", mode="soft"),
              pattern("cart:*:items", mode="hard"), key(b"bin\xff\x00key"),
              pattern("{tag}:*", mode="soft")]
    with Client(HOST, pub.port) as c:
        ack = c.invalidate(events)
        c.notify_invalidate([key("notified")])  # never answered
        assert c.ping() == "PONG"
    assert ack["accepted"] == 5
    # The ack names one entry per shard the events went to (all 64 in a
    # cluster, for the unpinned prefix and pattern), each holding exactly
    # the events routed there; "id" is the newest of them.
    want = backend.expected_entries(events)
    assert [s for s, _ in ack["ids"]] == sorted(want)
    assert ack["id"] == max((i for _, i in ack["ids"]), key=sid)
    got = backend.entries_of(ack)
    assert {k: p["events"] for k, p in got.items()} == want
    harness.wait_until(lambda: "notified" in
                       [e["target"] for e in logged_events(backend)], 30,
                       what="the notification logged")


def test_pipelined_replies_matched_by_msgid(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    n = 3000
    with Client(HOST, pub.port, max_outstanding=64, timeout=30) as c:
        pending = []
        for i in range(n):
            batch = [key(f"pl:{i}:{j}") for j in range(i % 3 + 1)]
            pending.append((len(batch), c.invalidate_async(batch)))
            if i % 500 == 0:
                pending.append((None, c.send("ping")))
        for size, p in pending:
            res = p.result()
            if size is None:
                assert res == "PONG"
            else:
                assert res["accepted"] == size, (p.msgid, res)
    targets = {e["target"] for e in logged_events(backend)}
    want = {f"pl:{i}:{j}" for i in range(n) for j in range(i % 3 + 1)}
    assert targets == want


def test_error_codes_raise_invalerror(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr], "--max-events", 10,
                            "--max-message-bytes", 4096)
    with Client(HOST, pub.port) as c:
        with pytest.raises(InvalError) as ei:
            c.invalidate([key("ok"), key("")])
        assert ei.value.code == "EINVAL" and not ei.value.retryable
        assert ei.value.message == "event 1: target is empty"
        with pytest.raises(InvalError) as ei:
            c.invalidate([{"kind": "key", "target": "k", "ttl": 5}])
        assert ei.value.code == "EINVAL" and "unknown field" in ei.value.message
        with pytest.raises(InvalError) as ei:
            c.invalidate([key("k", mode="softly")])
        assert ei.value.code == "EINVAL"
        with pytest.raises(InvalError) as ei:
            c.invalidate([pattern("*")])
        assert ei.value.code == "EINVAL" and "--allow-flush" in ei.value.message
        with pytest.raises(InvalError) as ei:
            c.invalidate([key(f"k{i}") for i in range(11)])
        assert ei.value.code == "ETOOBIG"
        with pytest.raises(InvalError) as ei:
            c.call("frobnicate")
        assert ei.value.code == "ENOMETHOD"
        # Over max_message_bytes: refused locally, nothing is sent.
        with pytest.raises(InvalError) as ei:
            c.invalidate([key("x" * 5000)])
        assert ei.value.code == "ETOOBIG" and "4096" in ei.value.message
        # The connection is still good, and none of the above was logged.
        assert c.ping() == "PONG"
        c.invalidate([key("after-errors")])
    assert [e["target"] for e in logged_events(Topo(standalone))] == \
        ["after-errors"]


def test_frame_over_limit_closes_connection(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr], "--max-message-bytes", 4096)
    # Without hello the client does not know the limit: the server refuses
    # the frame with an ETOOBIG reply and closes the connection.
    c = Client(HOST, pub.port, hello=False)
    with pytest.raises(InvalError) as ei:
        c.invalidate([key("x" * 5000)])
    assert ei.value.code == "ETOOBIG"
    with pytest.raises(InvalConnectionError) as ei:
        c.ping()
    assert ei.value.code == "ECLOSED"
    with pytest.raises(InvalConnectionError):
        c.ping()
    c.close()


def test_error_notification_breaks_client(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr])
    c = Client(HOST, pub.port)
    c._sock.sendall(b"\xc1")  # never valid msgpack: EPROTO, then close
    with pytest.raises(InvalConnectionError) as ei:
        c.ping()
    assert ei.value.code in ("EPROTO", "ECLOSED")
    with pytest.raises(InvalConnectionError) as ei:
        c.ping()
    assert ei.value.code == "ECLOSED"
    c.close()


def test_auth_token(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr], "--auth-token", "s3cret")
    with Client(HOST, pub.port, token="s3cret") as c:
        assert c.invalidate([key("tok:1")])["accepted"] == 1
    with pytest.raises(InvalError) as ei:
        Client(HOST, pub.port, token="wrong")
    assert ei.value.code == "EAUTH"
    with Client(HOST, pub.port, hello=False) as c:
        assert c.ping() == "PONG"  # allowed before hello
        with pytest.raises(InvalError) as ei:
            c.invalidate([key("tok:2")])
        assert ei.value.code == "EAUTH"
        with pytest.raises(InvalError):
            c.hello(token="nope")
        assert c.hello(token="s3cret")["server"] == "inval-publisher"
        c.invalidate([key("tok:3")])
    targets = [e["target"] for e in logged_events(Topo(standalone))]
    assert targets == ["tok:1", "tok:3"]


def test_tls(standalone, publisher_factory, workdir):
    cert, keyf = make_cert(workdir, "server")
    other, _ = make_cert(workdir, "other", cn="other")
    pub = publisher_factory([standalone.addr], "--tls-cert", cert,
                            "--tls-key", keyf)
    with Client(HOST, pub.port, tls=True, tls_ca_file=cert,
                tls_server_name="localhost") as c:
        assert c.ping() == "PONG"
        pending = [c.invalidate_async([key(f"tls:{i}")]) for i in range(200)]
        assert all(p.result()["accepted"] == 1 for p in pending)
    with pytest.raises(InvalConnectionError) as ei:
        Client(HOST, pub.port, tls=True, tls_ca_file=other,
               tls_server_name="localhost")
    assert ei.value.code == "EIO" and "verification failed" in ei.value.message
    with Client(HOST, pub.port, tls=True, tls_verify=False) as c:
        assert c.ping() == "PONG"
    # Plain TCP against the TLS port gets no answer.
    with pytest.raises((InvalTimeoutError, InvalConnectionError)):
        Client(HOST, pub.port, connect_timeout=1, timeout=1)
    assert len(logged_events(Topo(standalone))) == 200


def test_connect_failures():
    port = harness.free_port()
    with pytest.raises(InvalConnectionError) as ei:
        Client(HOST, port)
    assert ei.value.code == "ECONNREFUSED"
    srv = socket.socket()
    srv.bind((HOST, 0))
    srv.listen(4)
    try:
        # Accepted by the kernel but never answered: hello times out.
        with pytest.raises(InvalTimeoutError) as ei:
            Client(HOST, srv.getsockname()[1], connect_timeout=0.5)
        assert ei.value.code == "ETIMEDOUT"
    finally:
        srv.close()
    with pytest.raises(ValueError):
        Client(HOST, port, max_outstanding=0)


def test_worker_admin_port_and_end_to_end(standalone, publisher_factory,
                                          worker_factory):
    """A worker's admin port serves hello, ping and stats; invalidations sent
    by the Python client are applied by inval-worker: what must go is gone,
    what must stay stays."""
    r = standalone.client()
    for i in range(20):
        r.set(f"e2e:user:{i}", b"v")
        r.set(f"e2e:keep:{i}", b"v")
    r.set("e2e:single", b"v")
    w = worker_factory(standalone)
    with Client(HOST, w.port) as admin:
        assert admin.server["server"] == "inval-worker"
        assert admin.ping() == "PONG"
        assert "last_applied_id" in admin.stats()
    pub = publisher_factory([standalone.addr])
    harness.wait_until(lambda: _subscribed(w), 30, what="worker ready")
    with Client(HOST, pub.port) as c:
        c.invalidate([key("e2e:single"), prefix("e2e:user:")])
    harness.wait_until(lambda: r.exists("e2e:single") == 0 and
                       not r.keys("e2e:user:*"), 30,
                       what="the worker applied the invalidations")
    assert len(r.keys("e2e:keep:*")) == 20


def _subscribed(w):
    with Client(HOST, w.port) as admin:
        st = admin.stats()
    return st["live"] == 1


def test_end_to_end_soft_invalidation_and_fencing(backend, publisher_factory,
                                                  worker_factory):
    """Through the real service: a soft prefix invalidation sent by the
    Python client leaves stale copies with the worker's grace TTL and no
    locks; a hard key invalidation deletes the lock of a regeneration in
    flight, so its commit is refused and the pre-write value never lands."""
    import threading

    r = backend.target.client()
    workers = [worker_factory(n, "--stale-grace", 20000)
               for n in backend.nodes() if n.role() == "master"]
    pub = publisher_factory(backend.seeds)
    for w in workers:
        harness.wait_until(lambda: _subscribed(w), 30, what="worker live")
    for i in range(30):
        r.set(f"soft:{i}", f"old{i}".encode())
    r.set("soft-keep", b"v")
    with Client(HOST, pub.port) as c:
        c.invalidate([prefix("soft:", mode="soft")])
    harness.wait_until(
        lambda: all(inval.inspect(r, f"soft:{i}").value is None
                    for i in range(30)), 30, what="soft invalidation applied")
    for i in range(30):
        st = inval.inspect(r, f"soft:{i}")
        assert st.stale == f"old{i}".encode() and st.lock is None
        assert 0 < st.stale_ttl_ms <= 20000
    assert r.get("soft-keep") == b"v"

    # A regeneration in flight is fenced by a hard invalidation.
    loaded = threading.Event()
    release = threading.Event()
    out = {}

    def slow_regen():
        loaded.set()
        assert release.wait(60)
        return b"pre-write"

    def reader():
        out["res"] = inval.get_or_fill(r, "acct:{77}", 60, slow_regen,
                                       lock_ttl_ms=60000)

    t = threading.Thread(target=reader)
    t.start()
    try:
        assert loaded.wait(30)
        assert inval.inspect(r, "acct:{77}").lock is not None
        with Client(HOST, pub.port) as c:
            c.invalidate([key("acct:{77}")])
        harness.wait_until(lambda: inval.inspect(r, "acct:{77}").lock is None,
                           30, what="the worker deleted the lock")
    finally:
        release.set()
        t.join(60)
    assert out["res"].source == "fenced" and out["res"].value == b"pre-write"
    assert r.get("acct:{77}") is None


def test_late_reply_after_timeout(standalone, publisher_factory):
    """A reply that misses its timeout raises InvalTimeoutError; the client
    stays usable and the late reply is matched by msgid."""
    b = Topo(standalone)
    pub = publisher_factory([standalone.addr])
    with Client(HOST, pub.port, timeout=30) as c:
        b.pause_log_node(20000)
        try:
            p = c.invalidate_async([key("late:1")])
            with pytest.raises(InvalTimeoutError) as ei:
                p.result(timeout=0.3)
            assert ei.value.code == "ETIMEDOUT" and ei.value.retryable is False
            assert c.ping() == "PONG"  # answered without Redis
        finally:
            b.unpause_log_node()
        assert p.result()["accepted"] == 1
        assert c.invalidate([key("late:2")])["accepted"] == 1
    assert [e["target"] for e in logged_events(b)] == ["late:1", "late:2"]


def test_client_shared_between_threads(standalone, publisher_factory):
    import threading

    pub = publisher_factory([standalone.addr])
    errors = []
    with Client(HOST, pub.port, timeout=30) as c:
        def worker(t):
            try:
                pending = [c.invalidate_async([key(f"th:{t}:{i}")] * (i % 2 + 1))
                           for i in range(200)]
                for i, p in enumerate(pending):
                    assert p.result()["accepted"] == i % 2 + 1
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,))
                   for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors[:3]
    targets = [e["target"] for e in logged_events(Topo(standalone))]
    assert len(targets) == 8 * 300
    assert set(targets) == {f"th:{t}:{i}" for t in range(8) for i in range(200)}
