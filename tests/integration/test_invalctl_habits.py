"""invalctl's operability: global options after the command, redis-cli's
-h HOST -p PORT, ping without a token, a Redis port named as such, tail
--count counting events, the progress line of "invalidate -" on a terminal,
and invalidate --wait against a real worker."""

import os
import pty
import subprocess
import time

import msgpack

import harness
import pubtest
from harness import HOST

# Standalone, every log entry is in shard 0's stream.
LOG_KEY = pubtest.LOG_KEY.encode()
WORKERS_KEY = "cache:invalidation:workers"


def ctl(*args, **kw):
    return harness.invalctl(*args, **kw)


def log_targets(r):
    out = []
    for _, f in r.xrange(LOG_KEY, "-", "+"):
        p = msgpack.unpackb(f[b"p"], raw=False)
        out += [e["target"] for e in p["events"]]
    return out


def test_global_options_after_the_command(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr])
    addr = f"{HOST}:{pub.port}"
    r = ctl("stats", "-H", addr)
    assert r.returncode == 0 and "events_acked" in r.stdout, r.stderr
    r = ctl("ping", "--timeout", "3000", "--host", addr)
    assert r.returncode == 0 and r.stdout.startswith("PONG"), r.stderr
    # Global options are taken anywhere before "--", never after it.
    r = ctl("invalidate", "after:1", "-H", addr, "--", "-H", "--tls")
    assert r.returncode == 0, r.stderr
    assert log_targets(standalone.client()) == ["after:1", "-H", "--tls"]


def test_redis_cli_host_and_port(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr])
    for args in (["-h", HOST, "-p", pub.port, "ping"],
                 ["ping", "-h", HOST, "-p", pub.port],
                 ["-p", pub.port, "stats"]):
        r = ctl(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert "Usage" not in r.stdout, args
    # -h alone (or before a command) is still help, and says so.
    r = ctl("-h")
    assert r.returncode == 0 and "-h HOST, -p PORT" in r.stdout
    r = ctl("stats", "-h")
    assert r.returncode == 0 and r.stdout.startswith("Usage: invalctl")
    # What cannot be mapped fails loudly.
    for args in (["-h", f"{HOST}:{pub.port}", "ping"], ["-p", "x", "ping"],
                 ["ping", "-p", "70000"], ["ping", "-p"]):
        r = ctl(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: ") and r.stdout == "", args


def test_ping_needs_no_token(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr], "--auth-token", "s3cret")
    addr = f"{HOST}:{pub.port}"
    r = ctl("-H", addr, "ping")
    assert r.returncode == 0 and r.stdout.startswith("PONG"), r.stderr
    # Everything else still needs the token; a wrong one is still refused.
    r = ctl("-H", addr, "stats")
    assert r.returncode == 1 and "EAUTH" in r.stderr
    r = ctl("-H", addr, "--token", "wrong", "ping")
    assert r.returncode == 1 and "EAUTH" in r.stderr
    r = ctl("-H", addr, "--token", "s3cret", "stats")
    assert r.returncode == 0, r.stderr


def test_a_redis_port_is_named(standalone):
    for cmd in ("ping", "stats"):
        t0 = time.monotonic()
        r = ctl("-H", standalone.addr, "--timeout", "700", cmd)
        assert r.returncode == 3, (cmd, r.stderr)
        assert "looks like a Redis port" in r.stderr, r.stderr
        assert time.monotonic() - t0 < 5
    # A silent server that is not Redis is not called one.
    import socket
    srv = socket.socket()
    srv.bind((HOST, 0))
    srv.listen(4)
    try:
        r = ctl("-H", f"{HOST}:{srv.getsockname()[1]}", "--timeout", "500",
                "ping")
        assert r.returncode == 3 and "Redis" not in r.stderr, r.stderr
    finally:
        srv.close()


def test_tail_count_counts_events(standalone, publisher_factory):
    pub = publisher_factory([standalone.addr])
    proc = subprocess.Popen(
        [harness.binary("invalctl"), "tail", "-r", standalone.addr,
         "--count", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert "subscribed" in proc.stderr.readline()
        r = ctl("-H", f"{HOST}:{pub.port}", "invalidate", "c:1", "c:2", "c:3")
        assert r.returncode == 0, r.stderr
        out, err = proc.communicate(timeout=15)
    finally:
        harness.reap(proc)
    assert proc.returncode == 0, err
    assert [ln.split(" ")[4] for ln in out.splitlines()] == ["c:1", "c:2"]


def test_invalidate_stdin_progress_on_a_terminal(standalone, publisher_factory):
    """A progress line on stderr when stderr is a terminal; none in a pipe."""
    pub = publisher_factory([standalone.addr])
    argv = [harness.binary("invalctl"), "-H", f"{HOST}:{pub.port}",
            "invalidate", "-"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    try:
        proc.stdin.write(b"".join(b"p:%d\n" % i for i in range(3000)))
        proc.stdin.flush()
        time.sleep(0.6)  # longer than the redraw interval
        proc.stdin.write(b"".join(b"q:%d\n" % i for i in range(3000)))
        proc.stdin.close()
        out = proc.stdout.read()
        assert proc.wait(timeout=30) == 0
        err = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(master)
        harness.reap(proc)
    assert out.startswith(b"acked 6000 events"), out
    assert b"\r" in err and b"events sent" in err, err
    assert b"6000 events sent, 6000 acked" in err, err
    r = ctl("-H", f"{HOST}:{pub.port}", "invalidate", "-",
            input="".join(f"r:{i}\n" for i in range(3000)))
    assert r.returncode == 0 and "events sent" not in r.stderr


def test_invalidate_wait_for_the_workers(standalone, publisher_factory,
                                         worker_factory):
    r = standalone.client()
    r.set("w:gone", "v")
    r.set("w:kept", "v")
    pub = publisher_factory([standalone.addr])
    worker_factory(standalone.addr)
    addr = f"{HOST}:{pub.port}"

    def listed():
        st = ctl("-H", addr, "stats", "--json")
        return '"primary"' in st.stdout
    harness.wait_until(listed, 20, what="the worker in the publisher's stats")
    res = ctl("-H", addr, "invalidate", "--wait", "--timeout", "15000",
              "w:gone")
    assert res.returncode == 0, res.stderr
    assert "applied in all 1 shards by 1 primary worker\n" in res.stdout
    # Applied means gone, at the moment invalctl returns.
    assert r.exists("w:gone") == 0
    assert r.get("w:kept") == b"v"


def test_invalidate_wait_names_the_workers_behind(standalone,
                                                  publisher_factory):
    """A primary's worker that never gets there (here a heartbeat record with
    no worker behind it, listing shard 0 at 1-0): exit 4 after --timeout,
    naming the shard and the worker."""
    rec = {"id": "wk-behind", "node": "127.0.0.1:7000", "role": "primary",
           "last_id": "1-0", "lag_ms": 0, "behind": 0,
           "ts_ms": int(time.time() * 1000), "ttl_ms": 60000,
           "shards": [[0, "1-0"]]}
    standalone.client().hset(WORKERS_KEY, rec["id"], msgpack.packb(rec))
    pub = publisher_factory([standalone.addr])
    addr = f"{HOST}:{pub.port}"
    harness.wait_until(lambda: "wk-behind" in ctl("-H", addr, "stats").stdout,
                       10, what="the record in stats")
    t0 = time.monotonic()
    res = ctl("-H", addr, "invalidate", "--wait", "--timeout", "1000", "w:x")
    assert res.returncode == 4, (res.stdout, res.stderr)
    assert res.stdout.startswith("acked 1 events")
    assert "in 1 of 1 shards: shard 0 (worker wk-behind at 1-0)" in res.stderr
    assert time.monotonic() - t0 < 10
    assert log_targets(standalone.client()) == ["w:x"]


def test_invalidate_wait_counts_fresh_primaries_only(standalone,
                                                     publisher_factory):
    """--wait takes a shard as applied only from a fresh primary's record:
    a replica's record and a stale primary's record that list the shard far
    ahead do not count; a fresh primary's record at or after the id does."""
    now = int(time.time() * 1000)
    ahead = [[0, "99999999999999-0"]]
    base = {"node": "127.0.0.1:7000", "last_id": "99999999999999-0",
            "lag_ms": 0, "behind": 0, "ttl_ms": 60000, "shards": ahead}
    cli = standalone.client()
    cli.hset(WORKERS_KEY, "wk-replica", msgpack.packb(
        dict(base, id="wk-replica", role="replica", ts_ms=now)))
    cli.hset(WORKERS_KEY, "wk-stale", msgpack.packb(
        dict(base, id="wk-stale", role="primary", ts_ms=now - 120000)))
    pub = publisher_factory([standalone.addr])
    addr = f"{HOST}:{pub.port}"
    harness.wait_until(lambda: "wk-stale" in ctl("-H", addr, "stats").stdout,
                       10, what="the records in stats")
    res = ctl("-H", addr, "invalidate", "--wait", "--timeout", "800", "w:y")
    assert res.returncode == 4, (res.stdout, res.stderr)
    assert ("shard 0 (no fresh primary's worker consumes it)"
            in res.stderr), res.stderr
    cli.hset(WORKERS_KEY, "wk-fresh", msgpack.packb(
        dict(base, id="wk-fresh", role="primary", ts_ms=now)))
    harness.wait_until(lambda: "wk-fresh" in ctl("-H", addr, "stats").stdout,
                       10, what="the fresh record in stats")
    res = ctl("-H", addr, "invalidate", "--wait", "--timeout", "5000", "w:z")
    assert res.returncode == 0, res.stderr
    assert "applied in all 1 shards by 1 primary worker\n" in res.stdout
    assert log_targets(cli) == ["w:y", "w:z"]
