"""The C client library (inval/client.h) against a real inval-publisher, on
standalone Redis and the 6-node cluster, driven by tests/tools/client_check:
100,000 events pipelined over one connection with many requests
outstanding (every ack matched to its msgid), the outstanding bound,
blocking calls among pipelined ones, error replies, connection failures and
TLS."""

import json
import os
import socket
import subprocess

import msgpack
import pytest

import harness
import pubtest
from pubtest import backend  # noqa: F401 (the fixture)
from harness import HOST



def check(*args, timeout=180):
    r = subprocess.run([harness.binary("client_check"), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return json.loads(r.stdout)


def logged_targets(backend):
    """Every target in the log shard streams (exact keys only: each is in
    one entry)."""
    return [e["target"] for _, p in backend.log_entries() for e in p["events"]]


def test_pipeline_100k_events(backend, publisher_factory):
    """Every ack carries its shard entries, with id the newest of them
    (client_check checks each one)."""
    pub = publisher_factory(backend.seeds)
    res = check("pipeline", HOST, pub.port, 100000, 100, 256)
    assert res["acked"] == 100000
    assert res["requests"] == 1000
    assert res["max_outstanding"] > 100
    targets = logged_targets(backend)
    assert len(targets) == 100000
    assert set(targets) == {f"cc:{i}" for i in range(100000)}
    print(f"client library: 100000 events in {res['seconds']} s "
          f"({100000 / max(res['seconds'], 1e-9):.0f} events/s)")


def test_bound_blocking_among_pipelined_and_notify(standalone,
                                                   publisher_factory):
    pub = publisher_factory([standalone.addr])
    res = check("bound", HOST, pub.port)
    assert res["replies"] == 4
    # Four acked requests and one notification reached the log.
    harness.wait_until(
        lambda: len(logged_targets(pubtest.Topo(standalone)))
        == 5, 10,
        what="the notification logged")


def test_error_replies(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr])
    res = check("errors", HOST, pub.port)
    assert res["code"] == "EINVAL"
    assert res["message"] == "event 0: target is empty"
    assert res["id"]
    # Standalone, every event is logged in shard 0.
    assert res["ids"] == [[0, res["id"]]]


def test_connect_failures():
    port = harness.free_port()
    res = check("connect", HOST, port)
    assert res == {"code": "ECONNREFUSED", "message": "Connection refused"}
    srv = socket.socket()
    srv.bind((HOST, 0))
    srv.listen(4)
    try:
        res = check("connect", HOST, srv.getsockname()[1])
        assert res["code"] == "ETIMEDOUT"
    finally:
        srv.close()


def test_pipeline_over_tls(standalone, publisher_factory, workdir):
    cert = os.path.join(workdir, "server.crt")
    key = os.path.join(workdir, "server.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    pub = publisher_factory([standalone.addr], "--tls-cert", cert,
                            "--tls-key", key)
    res = check("pipeline", HOST, pub.port, 20000, 50, 64, cert)
    assert res["acked"] == 20000
    logged = logged_targets(pubtest.Topo(standalone))
    assert len(logged) == 20000
