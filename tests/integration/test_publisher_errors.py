"""Every error code of inval-publisher, and that a broken client never
hurts another: EPROTO, EINVAL (each event rule), ETOOBIG (event count and
frame size), ENOMETHOD, EUNAVAIL, EBUSY and EAUTH; garbage bytes, a
truncated frame and an oversize frame each get their error and the server
still serves a second client."""

import socket
import struct
import time

import pytest

import harness
from harness import HOST
import pubtest
from pubtest import backend, connect, ev, invalidate, stats  # noqa: F401


def code_of(reply):
    err, _ = reply
    assert err is not None, reply
    return err["code"]


def error_in(msg):
    """The error map of an error response or of an error notification."""
    if msg[0] == 1:
        return msg[2]
    assert msg[0] == 2 and msg[1] == "error", msg
    return msg[2][0]


def serves_another_client(pub):
    with connect(pub) as c:
        err, res = invalidate(c, [ev("key", "still:serving")])
        return err is None and res["accepted"] == 1


@pytest.fixture
def pub(standalone, publisher_factory):
    return publisher_factory(standalone.addr, "--max-events", 5,
                             "--max-key-len", 64, "--max-message-bytes", 4096)


def test_enomethod(pub):
    with connect(pub) as c:
        err, _ = c.call("no_such_method")
        assert err["code"] == "ENOMETHOD"
        assert "no_such_method" in err["message"]
        assert c.call("ping") == (None, "PONG")


@pytest.mark.parametrize("event,why", [
    ({"kind": "key", "target": ""}, "empty"),
    ({"kind": "bogus", "target": "x"}, "kind"),
    ({"kind": "key"}, "target"),
    ({"target": "x"}, "kind"),
    ({"kind": "key", "target": "x", "mode": "gentle"}, "mode"),
    ({"kind": "key", "target": "k" * 65}, "limit"),
    ({"kind": "pattern", "target": "*"}, "every key"),
    ({"kind": "pattern", "target": "**"}, "every key"),
    ({"kind": "pattern", "target": "*?*"}, "every key"),
    ({"kind": "prefix", "target": ""}, "every key"),
    ({"kind": "key", "target": 42}, "target"),
    ("not a map", "map"),
])
def test_einval_event_rules(pub, event, why):
    with connect(pub) as c:
        # A valid event next to the bad one: the request fails as a whole.
        err, res = invalidate(c, [ev("key", "ok"), event])
        assert err is not None and err["code"] == "EINVAL", (err, res)
        assert "event 1" in err["message"]
        assert why in err["message"], err["message"]
    st = stats(pub)
    assert st["events_acked"] == 0
    assert st["events_rejected"] == 2


def test_einval_params(pub):
    with connect(pub) as c:
        assert code_of(c.call("invalidate")) == "EINVAL"
        assert code_of(c.call("invalidate", "key")) == "EINVAL"
        assert code_of(c.call("invalidate", [])) == "EINVAL"
        assert code_of(c.call("hello", {"proto": 2})) == "EINVAL"
        assert code_of(c.call("hello", "x")) == "EINVAL"


def test_allow_flush_accepts_match_all(standalone, publisher_factory):
    pub = publisher_factory(standalone.addr, "--allow-flush")
    with connect(pub) as c:
        err, res = invalidate(c, [ev("pattern", "*"), ev("prefix", "")])
        assert err is None, err
        assert res["accepted"] == 2


def test_etoobig_event_count(pub):
    with connect(pub) as c:
        err, _ = invalidate(c, [ev("key", f"k{i}") for i in range(6)])
        assert err["code"] == "ETOOBIG"
        err, res = invalidate(c, [ev("key", f"k{i}") for i in range(5)])
        assert err is None and res["accepted"] == 5


def test_oversize_frame(pub):
    """A frame over max-message-bytes is refused from its header alone, the
    connection is closed, and another client is served."""
    with connect(pub) as c:
        big = harness.pack([0, 1, "invalidate",
                            [[ev("key", "x" * 60)] * 5 + [{"pad": "y" * 8000}]]])
        assert len(big) > 4096
        c.send_raw(big)
        assert error_in(c.read_message(timeout=5))["code"] == "ETOOBIG"
        assert c.closed(5)
    assert serves_another_client(pub)
    assert stats(pub)["errors"]["ETOOBIG"] >= 1


def test_garbage_bytes(pub):
    with connect(pub) as c:
        c.send_raw(b"\xc1\xc1GET / HTTP/1.1\r\n\r\n")
        assert error_in(c.read_message(timeout=5))["code"] == "EPROTO"
        assert c.closed(5)
    assert serves_another_client(pub)
    st = stats(pub)
    assert st["protocol_closes"] >= 1
    assert st["errors"]["EPROTO"] >= 1


def test_eproto_not_rpc_keeps_session(pub):
    """A decodable frame that is not msgpack-rpc gets EPROTO with its
    msgid; the session goes on."""
    with connect(pub) as c:
        c.send_raw(harness.pack([0, 7, 12345, []]))
        msg = c.read_message(timeout=5)
        assert msg[0] == 1 and msg[1] == 7 and msg[2]["code"] == "EPROTO"
        c.send_raw(harness.pack([9, 8, "ping", []]))
        assert error_in(c.read_message(timeout=5))["code"] == "EPROTO"
        assert c.call("ping") == (None, "PONG")


def test_truncated_frame(pub):
    """Half a frame and then end of file: the server drops the session
    (there is no msgid to answer) and serves the next client."""
    frame = harness.pack([0, 3, "invalidate", [[ev("key", "half")]]])
    s = socket.create_connection((HOST, pub.port), timeout=5)
    s.sendall(frame[: len(frame) // 2])
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    assert serves_another_client(pub)
    r = connect(pub)
    st = r.call("stats")[1]
    r.close()
    assert st["events_received"] == 1  # only serves_another_client's event


def test_eunavail_when_redis_unreachable(workdir, publisher_factory):
    dead = f"{HOST}:{harness.free_port()}"
    pub = publisher_factory(dead, "--redis-timeout", "700ms")
    with connect(pub) as c:
        t0 = time.monotonic()
        err, _ = invalidate(c, [ev("key", "lost")], timeout=5)
        assert err["code"] == "EUNAVAIL"
        assert time.monotonic() - t0 < 3
        assert c.call("ping") == (None, "PONG")
    st = stats(pub)
    assert st["events_acked"] == 0 and st["batches_failed"] >= 1
    assert st["errors"]["EUNAVAIL"] == 1


def test_ebusy_and_pause(standalone, publisher_factory):
    """With --max-pending-events 5 and Redis paused: a 3-event request is
    pending, a second that would pass the bound gets EBUSY at once; a third
    that reaches the bound pauses reading, so a fourth client waits until
    Redis confirms, then is served."""
    pub = publisher_factory(standalone.addr, "--max-pending-events", 5)
    a, b, d = connect(pub), connect(pub), connect(pub)
    try:
        assert invalidate(a, [ev("key", "warm")])[0] is None
        standalone.client().execute_command("CLIENT", "PAUSE", 2000, "WRITE")
        t0 = time.monotonic()
        a.request(1, "invalidate", [[ev("key", f"a{i}") for i in range(3)]])
        time.sleep(0.2)
        err, _ = invalidate(b, [ev("key", f"b{i}") for i in range(3)],
                            timeout=1.5)
        assert err["code"] == "EBUSY"
        assert time.monotonic() - t0 < 1.5
        b.request(2, "invalidate", [[ev("key", f"c{i}") for i in range(2)]])
        time.sleep(0.2)
        d.request(3, "invalidate", [[ev("key", "d0")]])
        with pytest.raises(TimeoutError):
            d.wait_response(3, timeout=1.0)
        for cl, mid in ((a, 1), (b, 2), (d, 3)):
            err, res = cl.wait_response(mid, timeout=10)
            assert err is None, err
        assert time.monotonic() - t0 >= 1.8
    finally:
        a.close(), b.close(), d.close()
    st = stats(pub)
    assert st["errors"]["EBUSY"] == 1
    assert st["backpressure_pauses"] >= 1
    assert st["paused"] == 0 and st["pending_events"] == 0


def test_eauth(standalone, publisher_factory):
    pub = publisher_factory(standalone.addr, "--auth-token", "s3cret")
    with connect(pub) as c:
        assert c.call("ping") == (None, "PONG")
        assert code_of(invalidate(c, [ev("key", "x")])) == "EAUTH"
        assert code_of(c.call("stats")) == "EAUTH"
        assert code_of(c.call("hello", {"proto": 1, "client": "t",
                                        "token": "wrong"})) == "EAUTH"
    with connect(pub) as c:
        err, res = c.call("hello", {"proto": 1, "client": "t",
                                    "token": "s3cret"})
        assert err is None, err
        err, res = invalidate(c, [ev("key", "x")])
        assert err is None and res["accepted"] == 1
        err, st = c.call("stats")
        assert st["errors"]["EAUTH"] == 3


def test_oversize_declared_in_header(pub):
    """A frame whose header declares more than max-message-bytes is refused
    before its body arrives."""
    with connect(pub) as c:
        c.send_raw(b"\x94\x00\x01\xdb" + struct.pack(">I", 1 << 20))
        assert error_in(c.read_message(timeout=5))["code"] == "ETOOBIG"
        assert c.closed(5)
    assert serves_another_client(pub)


def test_bad_client_does_not_disturb_others(pub):
    good = connect(pub)
    assert invalidate(good, [ev("key", "g1")])[0] is None
    bad = socket.create_connection((HOST, pub.port), timeout=5)
    bad.sendall(b"\xc1" * 100)
    bad.close()
    bad2 = socket.create_connection((HOST, pub.port), timeout=5)
    bad2.sendall(b"\xdb" + struct.pack(">I", 1 << 30))  # str32 of 1 GiB
    time.sleep(0.2)
    bad2.close()
    assert invalidate(good, [ev("key", "g2")])[0] is None
    good.close()


@pytest.mark.parametrize("params", [
    {"proto": 99, "client": "t", "token": "s3cret"},
    {"client": "t", "token": "s3cret"},
    {"proto": 1, "client": 5, "token": "s3cret"},
], ids=["proto", "no-proto", "client"])
def test_failed_hello_does_not_authenticate(standalone, publisher_factory,
                                            params):
    """A hello with the right token but otherwise invalid params is refused
    with EINVAL and changes nothing: the session stays unauthenticated, so
    the invalidate after it gets EAUTH and nothing reaches the log. A valid
    hello on the same session then authenticates it."""
    pub = publisher_factory(standalone.addr, "--auth-token", "s3cret")
    backend = pubtest.Topo(standalone)
    with connect(pub) as c:
        assert code_of(c.call("hello", params)) == "EINVAL"
        assert code_of(invalidate(c, [ev("key", "refused")])) == "EAUTH"
        assert code_of(c.call("stats")) == "EAUTH"
        assert backend.log_entries() == []
        err, _ = c.call("hello", {"proto": 1, "client": "t",
                                  "token": "s3cret"})
        assert err is None, err
        err, res = invalidate(c, [ev("key", "accepted")])
        assert err is None and res["accepted"] == 1
        targets = [e["target"] for _, p in backend.log_entries()
                   for e in p["events"]]
        assert targets == ["accepted"]
        # A later failed hello leaves the session authenticated.
        assert code_of(c.call("hello", params)) == "EINVAL"
        err, res = invalidate(c, [ev("key", "still")])
        assert err is None and res["accepted"] == 1
