"""invalctl against a real inval-publisher and real Redis (standalone and the
6-node cluster): invalidate (keys, prefix, pattern, soft, stdin), stats
(table and JSON), ping, tail, the exit codes and messages of each failure,
TLS and token authentication."""

import json
import os
import re
import signal
import socket
import subprocess
import time

import msgpack
import pytest

import harness
import pubtest
from harness import HOST
from pubtest import Topo, backend, decode  # noqa: F401 (backend: the fixture)

CHANNEL = b"cache:invalidation"
ACK_RE = re.compile(r"^acked (\d+) events, id (\d+-\d+)[^\n]*\nids((?: \d+:\d+-\d+)+)\n")


def run(port, *args, timeout=60, input=None, tls_args=()):
    """Runs invalctl against the publisher on port."""
    return harness.invalctl("-H", f"{HOST}:{port}", *tls_args, *args,
                            timeout=timeout, input=input)


def ack_of(stdout):
    """The ack invalctl printed, as the protocol's map: {"accepted", "id",
    "ids": [[shard, id], ...]} (its "ids SHARD:ID ..." line)."""
    m = ACK_RE.match(stdout)
    assert m, stdout
    ids = [[int(a), b] for a, b in
           (x.split(":") for x in m.group(3).split())]
    return {"accepted": int(m.group(1)), "id": m.group(2), "ids": ids}


def subscribe(backend):
    ps = backend.any_node_client().pubsub()
    ps.subscribe(CHANNEL)
    harness.wait_until(lambda: ps.get_message(timeout=0.2) is not None, 5,
                       what="subscribe confirmation")
    return ps


def received(ps, count, timeout=10):
    out = []
    deadline = time.time() + timeout
    while len(out) < count and time.time() < deadline:
        m = ps.get_message(timeout=0.2)
        if m and m["type"] == "message":
            out.append(decode(m["data"]))
    return out


def test_invalidate_keys_prefix_pattern_soft(backend, publisher_factory):
    """invalctl prints the ack's shard entries; each holds exactly the
    events routed to its shard, and the broadcast names the same entries."""
    pub = publisher_factory(backend.seeds)
    ps = subscribe(backend)
    sent = [pubtest.ev("key", "user:1"), pubtest.ev("key", "user:2"),
            pubtest.ev("prefix", "sess:"), pubtest.ev("pattern", "cart:*:items")]
    r = run(pub.port, "invalidate", "user:1", "user:2", "--prefix", "sess:",
            "--pattern", "cart:*:items")
    assert r.returncode == 0, r.stderr
    ack = ack_of(r.stdout)
    assert ack["accepted"] == 4
    want = backend.expected_entries(sent)
    assert [s for s, _ in ack["ids"]] == sorted(want)
    assert ack["id"] == max((i for _, i in ack["ids"]), key=pubtest.sid)
    got = backend.entries_of(ack)
    assert {k: v["events"] for k, v in got.items()} == want
    r = run(pub.port, "invalidate", "--soft", "user:3")
    assert r.returncode == 0, r.stderr
    soft = ack_of(r.stdout)
    soft_want = [{"kind": "key", "target": "user:3", "mode": "soft"}]
    assert [s for s, _ in soft["ids"]] == [backend.shard_for("user:3")]
    assert [p["events"] for p in backend.entries_of(soft).values()] == [
        soft_want]

    msgs = received(ps, 2)
    assert [(x["ids"], x["events"]) for x in msgs] == [
        (ack["ids"], [pubtest.expect_event(e) for e in sent]),
        (soft["ids"], soft_want)]
    ps.close()


def test_stdin_25000_keys(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    keys = [f"bulk:{i}" for i in range(25000)]
    t0 = time.time()
    r = run(pub.port, "invalidate", "-", input="\n".join(keys) + "\n\n")
    elapsed = time.time() - t0
    assert r.returncode == 0, r.stderr
    ack = ack_of(r.stdout)
    assert ack["accepted"] == 25000
    assert "events/s" in r.stderr
    seen = []
    for _, p in backend.log_entries():
        seen.extend(e["target"] for e in p["events"])
    assert sorted(seen) == sorted(keys)
    # Each shard's printed entry is the newest entry of that shard.
    want = sorted({backend.shard_for(k) for k in keys})
    assert [s for s, _ in ack["ids"]] == want
    for shard, eid in ack["ids"]:
        node = backend.shard_node(shard).client()
        newest = node.xrevrange(pubtest.shard_key(shard), "+", "-", count=1)
        assert newest[0][0].decode() == eid
    # The publisher sent more than one request's worth in one process run:
    # the figure is in the test output for the record.
    print(f"{backend.kind}: 25000 keys via stdin in {elapsed:.3f} s; "
          f"invalctl says: {r.stderr.strip()}")


def test_keys_with_spaces_and_dash_separator(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr])
    r = run(pub.port, "invalidate", "--", "-odd", "with space")
    assert r.returncode == 0, r.stderr
    ack = ack_of(r.stdout)
    log = Topo(standalone).entries_of(ack)
    assert [e["target"] for e in log[0]["events"]] == ["-odd", "with space"]


def test_stats_table_and_json(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    assert run(pub.port, "invalidate", "k1", "k2").returncode == 0
    r = run(pub.port, "stats")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    rows = {}
    for line in lines:
        m = re.match(r"^(\w+)( +)(\S+)$", line)
        if m:
            rows[m.group(1)] = m.group(3)
    assert int(rows["events_acked"]) >= 2
    assert "errors:" in lines
    assert any(re.match(r"^  EINVAL +\d+$", line) for line in lines)
    # Values are aligned in one column.
    cols = {len(line) - len(line.split()[-1]) for line in lines
            if re.match(r"^\w+ +\S+$", line) and not line.endswith(":")}
    assert len(cols) == 1, cols

    r = run(pub.port, "stats", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st
    for key in ("events_acked", "events_received", "requests", "clients",
                "uptime_s", "version", "errors"):
        assert key in st, key
    assert st["events_acked"] >= 2
    assert isinstance(st["errors"], dict) and "EINVAL" in st["errors"]


def test_stats_workers_section(standalone, publisher_factory):
    """Heartbeat records written into cache:invalidation:workers show up as
    one line per worker; the stale one is flagged."""
    now = int(time.time() * 1000)
    rec = {"id": "127.0.0.1:7000", "node": "127.0.0.1:7000", "role": "primary",
           "last_id": "1-0", "lag_ms": 3, "behind": 0, "ts_ms": now,
           "ttl_ms": 60000, "shards": [[0, "1-0"], [5, "0-0"], [9, "1-0"]]}
    old = dict(rec, id="127.0.0.1:7001", node="127.0.0.1:7001",
               role="replica", ts_ms=now - 120000, ttl_ms=3000)
    del old["shards"]
    cli = standalone.client()
    cli.hset("cache:invalidation:workers", rec["id"], msgpack.packb(rec))
    cli.hset("cache:invalidation:workers", old["id"], msgpack.packb(old))
    pub = publisher_factory([standalone.addr])

    def listed():
        r = run(pub.port, "stats")
        return r if "workers (2)" in r.stdout else None

    r = harness.wait_until(listed, 10, what="workers in stats")
    lines = r.stdout.splitlines()
    fresh = [x for x in lines if x.strip().startswith("127.0.0.1:7000")]
    stale = [x for x in lines if x.strip().startswith("127.0.0.1:7001")]
    assert len(fresh) == 1 and "primary" in fresh[0] and "ok" in fresh[0]
    assert len(stale) == 1 and "STALE" in stale[0] and "replica" in stale[0]
    # The SHARDS column counts the shards a worker consumes.
    assert fresh[0].split()[3] == "3" and stale[0].split()[3] == "0"
    assert "1 of 2 workers stale or missing" in r.stdout
    st = json.loads(run(pub.port, "stats", "--json").stdout)
    assert len(st["workers"]) == 2
    by_id = {w["id"]: w for w in st["workers"]}
    assert by_id["127.0.0.1:7000"]["shards"] == [[0, "1-0"], [5, "0-0"],
                                                 [9, "1-0"]]
    # A record without shards is listed with none.
    assert by_id["127.0.0.1:7001"]["shards"] == []


def test_stats_json_escapes_binary_strings(standalone, publisher_factory):
    """A heartbeat record whose id is not UTF-8 (and holds quotes and
    control bytes) still gives valid JSON, and a table line that keeps one
    value in one field."""
    now = int(time.time() * 1000)
    bad_id = b'w\xff\xfe"q\\\x01\n\xe2\x82\xac'
    rec = {"id": bad_id, "node": "127.0.0.1:7000", "role": "primary",
           "last_id": "1-0", "lag_ms": 0, "behind": 0, "ts_ms": now,
           "ttl_ms": 60000}
    standalone.client().hset("cache:invalidation:workers", bad_id,
                             msgpack.packb(rec, use_bin_type=False))
    pub = publisher_factory([standalone.addr])

    def listed():
        r = run(pub.port, "stats", "--json")
        return r if json.loads(r.stdout).get("workers") else None

    r = harness.wait_until(listed, 10, what="the worker in stats")
    st = json.loads(r.stdout)
    # Bytes that are not UTF-8 come back as U+00XX; valid UTF-8 (the euro
    # sign) stays as it is.
    assert st["workers"][0]["id"] == 'w\u00ff\u00fe"q\\\x01\n\u20ac'
    table = run(pub.port, "stats").stdout
    line = [x for x in table.splitlines() if x.startswith("  w")][0]
    assert line.split()[0] == 'w\\xff\\xfe"q\\\\\\x01\\x0a\\xe2\\x82\\xac'


def test_ping(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr])
    r = run(pub.port, "ping")
    assert r.returncode == 0, r.stderr
    assert re.match(r"^PONG \(\d+\.\d+ ms\)$", r.stdout.strip())


@pytest.mark.skipif(not harness.have_binary("inval-worker"),
                    reason="inval-worker is not built")
def test_stats_and_ping_on_worker_admin_port(standalone, worker_factory):
    w = worker_factory(standalone.addr)
    r = run(w.port, "ping")
    assert r.returncode == 0, r.stderr
    r = run(w.port, "stats", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)
    assert run(w.port, "stats").returncode == 0


def test_tail(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    proc = subprocess.Popen(
        [harness.binary("invalctl"), "tail", "-r", backend.any_node_addr(),
         "--count", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        line = proc.stderr.readline()
        assert "subscribed to cache:invalidation" in line, line
        r1 = run(pub.port, "invalidate", "t:1", "t two", "--prefix", "tp:")
        r2 = run(pub.port, "invalidate", "--soft", "--pattern", "tq:*")
        assert r1.returncode == 0 and r2.returncode == 0
        out, err = proc.communicate(timeout=15)
    finally:
        harness.reap(proc)
    assert proc.returncode == 0, err
    ids1 = dict(ack_of(r1.stdout)["ids"])
    ids2 = dict(ack_of(r2.stdout)["ids"])

    def entry(ids, key):
        """The ENTRY column of an event: its shard's entry, or * for an
        event fanned out to every shard of a cluster."""
        if key is None:
            return "*" if backend.is_cluster else f"0:{ids[0]}"
        shard = backend.shard_for(key)
        return f"{shard}:{ids[shard]}"
    lines = out.splitlines()
    assert len(lines) == 4, out
    fields = [line.split(" ") for line in lines]
    assert all(len(f) == 5 for f in fields), out
    assert [(f[0], f[2], f[3], f[4]) for f in fields] == [
        (entry(ids1, "t:1"), "key", "hard", "t:1"),
        (entry(ids1, "t two"), "key", "hard", "t\\x20two"),
        (entry(ids1, None), "prefix", "hard", "tp:"),
        (entry(ids2, None), "pattern", "soft", "tq:*")]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", fields[0][1])


def test_tail_undecodable_and_sigint(standalone):
    proc = subprocess.Popen(
        [harness.binary("invalctl"), "tail", "-r", standalone.addr],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "subscribed" in proc.stderr.readline()
        standalone.client().publish(CHANNEL, b"\xc1garbage")
        line = proc.stdout.readline()
        assert line.startswith("warning: undecodable payload"), line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        harness.reap(proc)
    assert proc.returncode == 0
    assert "interrupted after 1 events" in err


def test_tail_cannot_connect():
    port = harness.free_port()
    r = harness.invalctl("tail", "-r", f"{HOST}:{port}")
    assert r.returncode == 3
    assert f"error: cannot connect to {HOST}:{port}" in r.stderr


def test_connection_refused():
    port = harness.free_port()
    for args in (["ping"], ["stats"], ["invalidate", "k"]):
        r = run(port, *args)
        assert r.returncode == 3, args
        assert r.stderr.strip() == (f"error: cannot connect to {HOST}:{port}: "
                                    "Connection refused"), r.stderr


def test_default_host_and_env(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr])
    env = dict(os.environ, INVAL_HOST=f"{HOST}:{pub.port}")
    r = subprocess.run([harness.binary("invalctl"), "ping"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    env.pop("INVAL_HOST")
    r = subprocess.run([harness.binary("invalctl"), "--timeout", "2000",
                        "ping"], env=env, capture_output=True, text=True,
                       timeout=30)
    # Whatever runs on the default port, the address is 127.0.0.1:7700.
    assert r.returncode == 0 or "127.0.0.1:7700" in r.stderr


def test_no_reply_times_out():
    """A server that accepts and never answers: exit 3 after --timeout."""
    srv = socket.socket()
    srv.bind((HOST, 0))
    srv.listen(4)
    try:
        t0 = time.time()
        r = run(srv.getsockname()[1], "--timeout", "500", "stats")
        assert r.returncode == 3
        assert "no reply to hello within 500 ms" in r.stderr
        # Without a token, ping sends no hello: its own request times out.
        r = run(srv.getsockname()[1], "--timeout", "500", "ping")
        assert r.returncode == 3
        assert "no reply within 500 ms" in r.stderr
        assert time.time() - t0 < 10
    finally:
        srv.close()


def test_server_errors(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr])
    r = run(pub.port, "invalidate", "--pattern", "*")
    assert r.returncode == 1
    assert r.stderr.startswith("error: EINVAL: "), r.stderr
    assert "*" in r.stderr
    r = run(pub.port, "invalidate", "")
    assert r.returncode == 1
    assert r.stderr.strip() == "error: EINVAL: event 0: target is empty"
    r = run(pub.port, "invalidate", "--prefix", "")
    assert r.returncode == 1 and "error: EINVAL" in r.stderr
    # An event over the key-length limit.
    r = run(pub.port, "invalidate", "x" * 100000)
    assert r.returncode == 1 and "error: E" in r.stderr


def test_eunavail_when_redis_down(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr], "--redis-timeout", "1000")
    assert run(pub.port, "invalidate", "before").returncode == 0
    standalone.stop()
    try:
        r = run(pub.port, "--timeout", "20000", "invalidate", "k")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert r.stderr.startswith("error: EUNAVAIL: "), r.stderr
        assert r.stdout == ""
    finally:
        standalone.start()
    harness.wait_until(
        lambda: run(pub.port, "invalidate", "after").returncode == 0, 30,
        what="the publisher recovered")


@pytest.mark.parametrize("args", [
    [],
    ["bogus"],
    ["--bogus", "ping"],
    ["-H"],
    ["-H", "nohostport", "ping"],
    ["--timeout", "abc", "ping"],
    ["invalidate"],
    ["invalidate", "--prefix"],
    ["invalidate", "--frob", "k"],
    ["invalidate", "--window", "0", "k"],
    ["stats", "extra"],
    ["ping", "extra"],
    ["tail", "--count", "x"],
    ["help", "bogus"],
])
def test_usage_errors(args):
    r = harness.invalctl(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stderr.startswith("error: "), r.stderr
    assert "help" in r.stderr


def test_help_and_version():
    r = harness.invalctl("--help")
    assert r.returncode == 0
    for word in ("invalidate", "stats", "ping", "tail", "Exit codes",
                 "--tls-ca", "--token", "--timeout"):
        assert word in r.stdout, word
    for code in ("0", "1", "2", "3"):
        assert re.search(rf"^  {code}  ", r.stdout, re.M), code
    for cmd in ("invalidate", "stats", "ping", "tail"):
        r = harness.invalctl("help", cmd)
        assert r.returncode == 0 and r.stdout.startswith("Usage:"), cmd
        r2 = harness.invalctl(cmd, "--help")
        assert r2.returncode == 0 and r2.stdout == r.stdout
    r = harness.invalctl("--version")
    assert r.returncode == 0 and r.stdout.strip() == "invalctl 0.1.0"


def make_cert(workdir, name, cn="localhost"):
    cert = os.path.join(workdir, f"{name}.crt")
    key = os.path.join(workdir, f"{name}.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={cn}",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def test_tls(standalone, publisher_factory, workdir):
    cert, key = make_cert(workdir, "server")
    other, _ = make_cert(workdir, "other", cn="other")
    pub = publisher_factory([standalone.addr], "--tls-cert", cert,
                            "--tls-key", key)
    r = run(pub.port, "ping", tls_args=("--tls-ca", cert))
    assert r.returncode == 0, r.stderr
    r = run(pub.port, "invalidate", "tls:1", tls_args=("--tls-ca", cert))
    assert r.returncode == 0, r.stderr
    ack = ack_of(r.stdout)
    assert [e["target"] for e in Topo(standalone).entries_of(
        ack)[0]["events"]] == ["tls:1"]
    r = harness.invalctl("-H", f"localhost:{pub.port}", "--tls-ca", cert,
                         "stats", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["events_acked"] >= 1
    # A CA that did not sign the certificate: exit 3, with the reason.
    r = run(pub.port, "ping", tls_args=("--tls-ca", other))
    assert r.returncode == 3
    assert r.stderr.startswith(f"error: cannot connect to {HOST}:{pub.port}: "
                               "TLS certificate verification failed"), r.stderr
    # The system CA store does not know a self-signed certificate either.
    r = run(pub.port, "ping", tls_args=("--tls",))
    assert r.returncode == 3 and "verification failed" in r.stderr
    r = run(pub.port, "ping", tls_args=("--tls", "--insecure"))
    assert r.returncode == 0, r.stderr
    # Plain TCP against the TLS port is told so at once (in plaintext).
    for cmd in ("ping", "stats"):
        t0 = time.monotonic()
        r = run(pub.port, "--timeout", "5000", cmd)
        assert r.returncode == 1, r.stderr
        assert r.stderr.strip() == ("error: EPROTO: this port speaks TLS: "
                                    "connect with TLS"), r.stderr
        assert time.monotonic() - t0 < 2


def test_token(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr], "--auth-token", "s3cret")
    r = run(pub.port, "--token", "s3cret", "invalidate", "tok:1")
    assert r.returncode == 0, r.stderr
    r = run(pub.port, "--token", "wrong", "invalidate", "tok:2")
    assert r.returncode == 1
    assert r.stderr.startswith("error: EAUTH: "), r.stderr
    r = run(pub.port, "invalidate", "tok:3")
    assert r.returncode == 1
    assert r.stderr.startswith("error: EAUTH: "), r.stderr
    env = dict(os.environ, INVAL_TOKEN="s3cret")
    r = subprocess.run([harness.binary("invalctl"), "-H", f"{HOST}:{pub.port}",
                        "stats"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
