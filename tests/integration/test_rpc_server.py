"""The shared MessagePack-RPC serving layer (proto/server/rpc_server.c, tls.c,
metrics_http.c, daemon.c), driven through tests/tools/rpc_echo_server.

Every bad-input case checks that the server answers as the protocol says,
closes (or keeps) the session as it must, and still serves a second client.
"""

import os
import resource
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.request
import warnings

import msgpack
import pytest

import harness
from harness import HOST, Daemon, RpcClient, pack

# Under valgrind (INVAL_TEST_VALGRIND=1) everything is many times slower:
# time bounds that a test asserts are stretched by this factor.
SLOW = 5 if os.environ.get("INVAL_TEST_VALGRIND") == "1" else 1

pytestmark = pytest.mark.skipif(not harness.have_binary("rpc_echo_server"),
                                reason="rpc_echo_server is not built")


@pytest.fixture
def echo_factory(workdir, request):
    """echo_factory(*args, metrics=False, name=None) -> Daemon with .port
    (and .metrics_port). Daemons still running at the end are stopped with
    SIGTERM and must exit 0."""
    started = []

    def factory(*args, metrics=False, name=None):
        port = harness.free_port()
        argv = [harness.binary("rpc_echo_server"), "--listen",
                f"{HOST}:{port}", "--log-level", "debug"]
        metrics_port = None
        if metrics:
            metrics_port = harness.free_port()
            argv += ["--metrics-listen", f"{HOST}:{metrics_port}"]
        argv += [str(a) for a in args]
        d = Daemon(argv, workdir, name or f"echo-{len(started) + 1}",
                   ready_port=port)
        d.metrics_port = metrics_port
        started.append(d)
        return d

    yield factory
    problems = []
    for d in started:
        if d.stopped:
            continue
        code = d.stop()
        if code != 0:
            problems.append(f"{d.name} exited with {code}:\n{d.log_tail(30)}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def echo(echo_factory):
    return echo_factory()


def assert_serves(port, tls=False):
    """A fresh client is served normally."""
    with RpcClient(HOST, port, tls=tls) as c:
        assert c.call("echo", "still", "here") == (None, ["still", "here"])


def stats(port):
    with RpcClient(HOST, port) as c:
        err, result = c.call("stats")
        assert err is None
        return result


def read_until_closed(client, timeout=5):
    """Every message the server sends before it closes the connection."""
    msgs = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            msgs.append(client.read_message(
                timeout=max(0.05, deadline - time.monotonic())))
        except ConnectionError:
            return msgs
        except TimeoutError:
            raise AssertionError(f"server did not close; got {msgs!r}")


def recv_to_eof(sock):
    """Every byte the server sends before it closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def error_code(msg):
    """The error code carried by a response or an error notification."""
    if msg[0] == harness.RESPONSE:
        return msg[2]["code"]
    assert msg[0] == harness.NOTIFY and msg[1] == "error", msg
    return msg[2][0]["code"]


# --------------------------------------------------------------------------
# Methods and dispatch.

def test_methods(echo):
    with RpcClient(HOST, echo.port) as c:
        assert c.call("ping") == (None, "PONG")
        assert c.call("echo", 1, "two", [3], {"four": 4}, b"\x05") == (
            None, [1, "two", [3], {"four": 4}, b"\x05"])
        assert c.call("hello", {"proto": 1}) == (None, {"server": "rpc_echo"})
        err, _ = c.call("fail", "EUNAVAIL")
        assert err["code"] == "EUNAVAIL"
        # An unknown method is the daemon's to answer: the server passes it.
        err, _ = c.call("no_such_method")
        assert err["code"] == "ENOMETHOD"
        assert "no_such_method" in err["message"]
        # A notification gets no reply, even when its handler fails.
        c.notify("fail", ["EINVAL"])
        c.notify("echo", [1])
        assert c.call("ping") == (None, "PONG")
    st = stats(echo.port)
    assert st["errors"]["EUNAVAIL"] == 1
    assert st["errors"]["ENOMETHOD"] == 1
    assert st["errors"]["EINVAL"] == 1  # the notification's, counted too


def test_out_of_order_replies(echo):
    with RpcClient(HOST, echo.port) as c:
        c.request(1, "slow", [400, "first"])
        c.request(2, "slow", [100, "second"])
        c.request(3, "echo", ["third"])
        got = [c.read_message() for _ in range(3)]
        assert [m[1] for m in got] == [3, 2, 1]
        assert got[2] == [1, 1, None, [400, "first"]]


def test_pipelined_10000_requests(echo):
    n = 10000
    with RpcClient(HOST, echo.port, timeout=30) as c:
        blob = b"".join(pack([0, i, "echo", [i, "x" * (i % 50)]])
                        for i in range(n))
        c.send_raw(blob)
        seen = {}
        for _ in range(n):
            m = c.read_message()
            assert m[0] == harness.RESPONSE and m[2] is None
            seen[m[1]] = m[3]
        assert len(seen) == n
        assert all(seen[i] == [i, "x" * (i % 50)] for i in range(n))


def test_1000_concurrent_connections(echo):
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 500), hard))
    socks = []
    sel = selectors.DefaultSelector()
    try:
        for i in range(n):
            s = socket.create_connection((HOST, echo.port), timeout=10)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendall(pack([0, i, "echo", [i]]))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ,
                         (i, msgpack.Unpacker(raw=False)))
        answered = set()
        deadline = time.monotonic() + 30
        while len(answered) < n and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                i, unpacker = key.data
                data = key.fileobj.recv(65536)
                assert data, f"connection {i} closed without an answer"
                unpacker.feed(data)
                for m in unpacker:
                    assert m == [1, i, None, [i]]
                    answered.add(i)
                    sel.unregister(key.fileobj)
        assert len(answered) == n
        assert stats(echo.port)["clients"] >= n
    finally:
        sel.close()
        for s in socks:
            s.close()
    assert_serves(echo.port)


def test_pause_holds_every_session(echo):
    with RpcClient(HOST, echo.port) as a, RpcClient(HOST, echo.port) as b:
        a.request(1, "pause", [600])
        time.sleep(0.1)
        t0 = time.monotonic()
        assert b.call("ping") == (None, "PONG")
        assert time.monotonic() - t0 >= 0.3
        assert a.read_message() == [1, 1, None, "OK"]


# --------------------------------------------------------------------------
# Bad input.

def test_garbage_bytes(echo):
    with RpcClient(HOST, echo.port) as c:
        c.send_raw(b"\xc1" * 64)
        msgs = read_until_closed(c)
        assert len(msgs) == 1 and error_code(msgs[0]) == "EPROTO"
        assert msgs[0][0] == harness.NOTIFY  # no msgid to answer
    assert_serves(echo.port)
    st = stats(echo.port)
    assert st["protocol_closes"] == 1 and st["errors"]["EPROTO"] == 1
    assert "EPROTO" in echo.log() and "closing" in echo.log()


def test_garbage_after_good_requests(echo):
    with RpcClient(HOST, echo.port) as c:
        c.send_raw(pack([0, 1, "echo", ["a"]]) + pack([0, 2, "ping", []]) +
                   b"\xc1")
        msgs = read_until_closed(c)
        assert msgs[0] == [1, 1, None, ["a"]]
        assert msgs[1] == [1, 2, None, "PONG"]
        assert error_code(msgs[2]) == "EPROTO"
    assert_serves(echo.port)


def test_truncated_frame_then_close(echo):
    frame = pack([0, 1, "echo", ["x" * 1000]])
    for cut in (1, 5, len(frame) // 2, len(frame) - 1):
        with RpcClient(HOST, echo.port) as c:
            c.send_raw(frame[:cut])
        assert_serves(echo.port)
    # A truncated frame keeps the session waiting for the rest.
    with RpcClient(HOST, echo.port) as c:
        c.send_raw(frame[:10])
        assert not c.closed(timeout=0.3)
        c.send_raw(frame[10:])
        assert c.read_message() == [1, 1, None, ["x" * 1000]]


def test_oversize_frame(echo):
    with RpcClient(HOST, echo.port) as c:
        # [0, 1, "echo", [<str of 100 MiB>]]: refused from its header alone.
        c.send_raw(b"\x94\x00\x01\xa4echo\x91\xdb" +
                   struct.pack(">I", 100 * 1024 * 1024) + b"x" * 1000)
        msgs = read_until_closed(c)
        assert len(msgs) == 1
        assert msgs[0][:2] == [1, 1] and msgs[0][2]["code"] == "ETOOBIG"
    assert_serves(echo.port)
    assert stats(echo.port)["errors"]["ETOOBIG"] == 1


def test_oversize_frame_with_smaller_limit(echo_factory):
    d = echo_factory("--max-message-bytes", "4k")
    with RpcClient(HOST, d.port) as c:
        assert c.call("echo", "y" * 3000) == (None, ["y" * 3000])
        c.request(7, "echo", ["y" * 5000])
        msgs = read_until_closed(c)
        assert msgs[0][:2] == [1, 7] and msgs[0][2]["code"] == "ETOOBIG"
    assert_serves(d.port)


def test_too_deep(echo):
    deep = "leaf"
    for _ in range(100):
        deep = [deep]
    with RpcClient(HOST, echo.port) as c:
        c.send_raw(pack([0, 5, "echo", [deep]]))
        msgs = read_until_closed(c)
        assert len(msgs) == 1 and error_code(msgs[0]) == "ETOOBIG"
    assert_serves(echo.port)


def test_not_msgpack_rpc_keeps_session(echo):
    with RpcClient(HOST, echo.port) as c:
        # Decodable but not msgpack-rpc: answered by msgid when it has one.
        c.send_raw(pack([0, 7, "echo"]))
        m = c.read_message()
        assert m[:2] == [1, 7] and m[2]["code"] == "EPROTO"
        c.send_raw(pack([0, 8, 12, []]))
        m = c.read_message()
        assert m[:2] == [1, 8] and m[2]["code"] == "EPROTO"
        # Without a msgid: an error notification.
        for bad in ([9, "x"], 42, "hello", {"a": 1}, [1, 3, None, None]):
            c.send_raw(pack(bad))
            m = c.read_message()
            assert error_code(m) == "EPROTO", bad
            assert m[0] == harness.NOTIFY
        # The session goes on.
        assert c.call("echo", "ok") == (None, ["ok"])
        assert not c.closed(timeout=0.2)
    assert_serves(echo.port)
    assert stats(echo.port)["protocol_closes"] == 0


# --------------------------------------------------------------------------
# Limits.

def test_max_clients(echo_factory):
    d = echo_factory("--max-clients", "3")
    # The harness's readiness probe was a client too: let its close land.
    time.sleep(0.3)
    clients = []
    try:
        for _ in range(3):
            clients.append(RpcClient(HOST, d.port))
            assert clients[-1].call("ping") == (None, "PONG")
        with RpcClient(HOST, d.port) as extra:
            msgs = read_until_closed(extra)
            assert len(msgs) == 1
            assert msgs[0][:2] == [2, "error"]
            assert msgs[0][2][0]["code"] == "EBUSY"
        # The sessions already open go on.
        for c in clients:
            assert c.call("echo", 1) == (None, [1])
        st = clients[0].call("stats")[1]
        assert st["rejected_clients"] == 1 and st["errors"]["EBUSY"] == 1
    finally:
        for c in clients:
            c.close()
    # Once a client left, a new one is served again.
    harness.wait_until(lambda: _served(d.port), 5, what="a free slot")


def _served(port):
    with RpcClient(HOST, port) as c:
        return c.call("ping") == (None, "PONG")


def test_idle_timeout(echo_factory):
    d = echo_factory("--idle-timeout", "300ms")
    with RpcClient(HOST, d.port) as idle:
        t0 = time.monotonic()
        assert idle.closed(timeout=3)
        assert 0.25 <= time.monotonic() - t0 < 2.5
    # A request in flight is no idleness: the reply comes, then the close.
    with RpcClient(HOST, d.port) as busy:
        busy.request(1, "slow", [900])
        assert busy.read_message(timeout=3) == [1, 1, None, [900]]
        assert busy.closed(timeout=3)
    # Input keeps a session alive.
    with RpcClient(HOST, d.port) as chatty:
        for _ in range(6):
            time.sleep(0.1)
            assert chatty.call("ping") == (None, "PONG")
    assert stats(d.port)["idle_closes"] >= 2


def test_auth(echo_factory):
    d = echo_factory("--auth-token", "s3cret")
    with RpcClient(HOST, d.port) as c:
        err, _ = c.call("echo", 1)
        assert err["code"] == "EAUTH"
        assert c.call("ping") == (None, "PONG")
        err, _ = c.call("hello", {"proto": 1, "token": "wrong"})
        assert err["code"] == "EAUTH"
        err, _ = c.call("hello", {"proto": 1})
        assert err["code"] == "EAUTH"
        err, _ = c.call("echo", 1)
        assert err["code"] == "EAUTH"
        assert c.call("hello", {"proto": 1, "token": "s3cret"}) == (
            None, {"server": "rpc_echo"})
        assert c.call("echo", 1) == (None, [1])
    # Authentication is per session.
    with RpcClient(HOST, d.port) as c:
        err, _ = c.call("echo", 2)
        assert err["code"] == "EAUTH"
    assert stats_authed(d.port)["errors"]["EAUTH"] == 5


def stats_authed(port):
    with RpcClient(HOST, port) as c:
        c.call("hello", {"token": "s3cret"})
        return c.call("stats")[1]


def _vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_client_that_never_reads(echo):
    """out_limit: the server stops reading from a client that does not read
    its replies, so its memory stays bounded."""
    payload = "z" * 32768
    frame = pack([0, 1, "echo", [payload]])
    assert_serves(echo.port)
    before = _vmrss_kib(echo.pid)
    s = socket.create_connection((HOST, echo.port))
    s.setblocking(False)
    sent, last_progress = 0, time.monotonic()
    pending = b""
    limit = 512 * 1024 * 1024
    while sent < limit and time.monotonic() - last_progress < 1.5:
        if not pending:
            pending = frame * 32
        try:
            n = s.send(pending)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        pending = pending[n:]
        sent += n
        last_progress = time.monotonic()
    after = _vmrss_kib(echo.pid)
    try:
        assert sent < 128 * 1024 * 1024, "the server never stopped reading"
        assert after - before < 64 * 1024, (before, after, sent)
        # Other clients are not held up by the stuck one.
        assert_serves(echo.port)
    finally:
        s.close()
    assert_serves(echo.port)


# --------------------------------------------------------------------------
# TLS.

def make_cert(workdir, name="server"):
    cert = os.path.join(workdir, f"{name}.crt")
    key = os.path.join(workdir, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-subj", "/CN=localhost", "-days", "2",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls(echo_factory, workdir):
    cert, key = make_cert(workdir)
    d = echo_factory("--tls-cert", cert, "--tls-key", key)
    with RpcClient(HOST, d.port, tls=True, cafile=cert,
                   server_hostname="localhost") as c:
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert c.call("ping") == (None, "PONG")
        big = "b" * 200000
        assert c.call("echo", big) == (None, [big])
        n = 2000
        c.send_raw(b"".join(pack([0, i, "echo", [i]]) for i in range(n)))
        got = {}
        for _ in range(n):
            m = c.read_message()
            got[m[1]] = m[3]
        assert got == {i: [i] for i in range(n)}
        c.request(1, "slow", [200, "late"])
        c.request(2, "echo", ["early"])
        assert [c.read_message()[1] for _ in range(2)] == [2, 1]
    # Garbage inside TLS is still a framing error, answered over TLS.
    with RpcClient(HOST, d.port, tls=True) as c:
        c.send_raw(b"\xc1")
        msgs = read_until_closed(c)
        assert len(msgs) == 1 and error_code(msgs[0]) == "EPROTO"
    # A plaintext client on the TLS port is turned away; others go on.
    with socket.create_connection((HOST, d.port), timeout=5) as plain:
        plain.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"PONG" not in recv_to_eof(plain)
    assert "TLS" in d.log()
    assert_serves(d.port, tls=True)


def test_tls_refuses_old_protocols(echo_factory, workdir):
    cert, key = make_cert(workdir)
    d = echo_factory("--tls-cert", cert, "--tls-key", key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, OSError, ssl.SSLError):
        pytest.skip("this Python cannot offer TLS 1.1")
    with socket.create_connection((HOST, d.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                pass
    harness.wait_until(lambda: "TLS: " in d.log(), 5,
                       what="the server to log the refused handshake")
    assert_serves(d.port, tls=True)


def test_tls_handshake_is_bounded(echo_factory, workdir):
    """A client that never completes the handshake is closed (here by the
    idle timeout, which bounds the handshake when it is shorter): one that
    sends nothing, and one that stops inside its first TLS record."""
    cert, key = make_cert(workdir)
    d = echo_factory("--tls-cert", cert, "--tls-key", key,
                     "--idle-timeout", "500ms" if SLOW == 1 else "8s")
    # A handshake record header announcing 512 bytes that never come.
    for opening in (b"", b"\x16\x03\x01\x02\x00"):
        with socket.create_connection((HOST, d.port), timeout=20) as raw:
            if opening:
                raw.sendall(opening)
            t0 = time.monotonic()
            try:
                assert raw.recv(100) == b""
            except ConnectionResetError:
                pass
            took = time.monotonic() - t0
            assert 0.3 < took < (3 if SLOW == 1 else 15), (opening, took)
    assert stats_tls(d.port, cert)["tls_plaintext_closes"] == 0
    assert_serves(d.port, tls=True)


def stats_tls(port, cert):
    with RpcClient(HOST, port, tls=True, cafile=cert,
                   server_hostname="localhost") as c:
        err, result = c.call("stats")
        assert err is None
        return result


def test_tls_port_closes_plaintext_at_once(echo_factory, workdir):
    """Plaintext on the TLS port (an RPC frame, an HTTP request) is told so
    in plaintext and closed within a second, logged with the peer and
    counted; the handshake bound (10 s here) is not what closes it. A TLS
    client is served before, between and after."""
    cert, key = make_cert(workdir)
    d = echo_factory("--tls-cert", cert, "--tls-key", key)
    assert_serves(d.port, tls=True)
    for opening in (pack([0, 1, "ping", []]), b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection((HOST, d.port), timeout=5) as raw:
            peer = "%s:%d" % raw.getsockname()[:2]
            raw.sendall(opening)
            t0 = time.monotonic()
            data = recv_to_eof(raw)
            assert time.monotonic() - t0 < 1 * SLOW
        msg = msgpack.unpackb(data, raw=False)
        assert msg[0] == harness.NOTIFY and error_code(msg) == "EPROTO"
        assert "TLS" in msg[2][0]["message"]
        assert b"PONG" not in data

        def logged():
            return [ln for ln in d.log().splitlines()
                    if peer in ln and "plaintext on the TLS port" in ln]
        harness.wait_until(logged, 5,
                           what="the server to log the plaintext peer")
        assert "first byte 0x%02x" % opening[0] in logged()[0]
        assert_serves(d.port, tls=True)
        time.sleep(1.1)  # past the log line's rate limit
    assert stats_tls(d.port, cert)["tls_plaintext_closes"] == 2


def test_tls_plaintext_flood_is_logged_sparingly(echo_factory, workdir):
    """Anyone can open plaintext connections to the TLS port: they are all
    closed and counted, but logged at most about once a second."""
    cert, key = make_cert(workdir)
    d = echo_factory("--tls-cert", cert, "--tls-key", key)
    n = 40
    t0 = time.monotonic()
    for _ in range(n):
        with socket.create_connection((HOST, d.port), timeout=5) as raw:
            raw.sendall(b"PING\r\n")
            recv_to_eof(raw)
    elapsed = time.monotonic() - t0
    assert stats_tls(d.port, cert)["tls_plaintext_closes"] == n
    lines = [ln for ln in d.log().splitlines()
             if "plaintext on the TLS port" in ln]
    assert 1 <= len(lines) <= int(elapsed) + 2, (elapsed, lines)
    assert_serves(d.port, tls=True)


def _start_fails(workdir, name, *args):
    port = harness.free_port()
    argv = [harness.binary("rpc_echo_server"), "--listen", f"{HOST}:{port}",
            *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          cwd=workdir)
    return proc.returncode, proc.stdout + proc.stderr


def test_tls_bad_cert_is_a_clear_startup_error(workdir):
    cert, key = make_cert(workdir)
    other_cert, other_key = make_cert(workdir, "other")
    missing = os.path.join(workdir, "missing.crt")
    code, out = _start_fails(workdir, "missing", "--tls-cert", missing,
                             "--tls-key", key)
    assert code == 2
    assert missing in out and "No such file" in out

    garbage = os.path.join(workdir, "garbage.crt")
    with open(garbage, "w") as f:
        f.write("this is not a certificate\n")
    code, out = _start_fails(workdir, "garbage", "--tls-cert", garbage,
                             "--tls-key", key)
    assert code == 2
    assert garbage in out and "certificate" in out

    code, out = _start_fails(workdir, "badkey", "--tls-cert", cert,
                             "--tls-key", garbage)
    assert code == 2
    assert garbage in out and "private key" in out

    code, out = _start_fails(workdir, "mismatch", "--tls-cert", cert,
                             "--tls-key", other_key)
    assert code == 2
    assert other_key in out and "does not match" in out

    code, out = _start_fails(workdir, "half", "--tls-cert", cert)
    assert code == 2 and "tls-key" in out


def test_port_in_use_is_a_startup_error(echo, workdir):
    argv = [harness.binary("rpc_echo_server"), "--listen",
            f"{HOST}:{echo.port}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert f"{HOST}:{echo.port}" in proc.stderr
    assert "in use" in proc.stderr


# --------------------------------------------------------------------------
# /metrics.

def _http(port, path, method="GET"):
    req = urllib.request.Request(f"http://{HOST}:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_metrics_http(echo_factory):
    d = echo_factory(metrics=True)
    with RpcClient(HOST, d.port) as c:
        c.call("fail", "EBUSY")
        status, headers, body = _http(d.metrics_port, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4"
    assert int(headers["Content-Length"]) == len(body)
    text = body.decode()
    assert "# TYPE inval_rpc_echo_requests_total counter" in text
    assert "inval_rpc_echo_clients 1" in text
    assert 'inval_rpc_echo_errors_total{code="EBUSY"} 1' in text

    assert _http(d.metrics_port, "/metrics?x=1")[0] == 200
    assert _http(d.metrics_port, "/")[0] == 404
    assert _http(d.metrics_port, "/metricsx")[0] == 404
    assert _http(d.metrics_port, "/metrics", method="POST")[0] == 405

    # Headers over 8 KiB: closed without an answer.
    with socket.create_connection((HOST, d.metrics_port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 9000)
        try:
            data = s.recv(100)
        except ConnectionResetError:  # closed with our bytes unread
            data = b""
        assert data == b""
    # Garbage request line: 400.
    with socket.create_connection((HOST, d.metrics_port), timeout=5) as s:
        s.sendall(b"HELLO\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    # A client that sends half a request is closed after 5 s; meanwhile
    # others are served.
    with socket.create_connection((HOST, d.metrics_port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        assert _http(d.metrics_port, "/metrics")[0] == 200
        t0 = time.monotonic()
        assert s.recv(100) == b""
        assert 3.5 < time.monotonic() - t0 < 8


# --------------------------------------------------------------------------
# Shutdown.

def test_sigterm_with_requests_in_flight(echo):
    clients = [RpcClient(HOST, echo.port) for _ in range(3)]
    try:
        for c in clients:
            for i in range(1, 6):
                c.request(i, "slow", [30000, i])
            # Answered after the slow ones were dispatched: all in flight.
            c.request(99, "ping", [])
            assert c.read_message() == [1, 99, None, "PONG"]
        echo.signal(signal.SIGTERM)
        for c in clients:
            msgs = read_until_closed(c)
            assert sorted(m[1] for m in msgs) == [1, 2, 3, 4, 5]
            assert all(m[2]["code"] == "ESHUTDOWN" for m in msgs)
        assert echo.wait(10) == 0
    finally:
        for c in clients:
            c.close()
    echo.stopped = True
    assert "stopping" in echo.log()


def test_sigterm_with_a_client_that_never_reads(echo):
    """The linger bound: unsent output does not hold the exit forever."""
    s = socket.create_connection((HOST, echo.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    frame = pack([0, 1, "echo", ["q" * 65536]]) * 16
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            s.send(frame)
        except BlockingIOError:
            time.sleep(0.05)
    t0 = time.monotonic()
    code = echo.stop(timeout=15)
    s.close()
    assert code == 0
    assert time.monotonic() - t0 < 6 * SLOW
