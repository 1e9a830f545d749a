"""A worker names each Redis connection in its log lines, and logs each
scan run's start and end at info, on a standalone
Redis with the real publisher: a prefix event over 3000 keys logs the pass
with its pattern, then the keys listed, matched and removed and the
duration; the 1000 keys under the prefix are gone and the 2000 others
survive. A flood of passes is rate-limited: 20 passes in a row log at most one
start line a second."""

import re
import time

from harness import HOST, RpcClient, rpc_ok
from workerlib import poll, wstats


def send(pub, events):
    with RpcClient(HOST, pub.port) as c:
        rpc_ok(c, "hello", {"proto": 1, "client": "pytest"})
        for e in events:
            rpc_ok(c, "invalidate", [e])


def test_scan_pass_logged_with_figures(standalone, worker_factory,
                                       publisher_factory):
    r = standalone.client()
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"gone:{i}", "v")
    for i in range(2000):
        pipe.set(f"kept:{i}", "v")
    pipe.execute()
    w = worker_factory(standalone)
    poll(lambda: wstats(w)["live"] == 1, 20, "the worker live")
    pub = publisher_factory(standalone)
    send(pub, [{"kind": "prefix", "target": "gone:"}])
    poll(lambda: wstats(w)["scans_done"] >= 1, 20, "the scan done")
    poll(lambda: "scan pass done" in w.log(), 10, "the end line")
    log = w.log()
    start = re.search(r"scan pass started: 1 pattern: '([^']*)'", log)
    assert start and start.group(1).startswith("gone:"), log[-2000:]
    end = re.search(r"scan pass done: 1 pattern, (\d+) keys scanned, "
                    r"(\d+) matched, (\d+) removed, 0 failed, [0-9.]+ s", log)
    assert end, log[-2000:]
    # SCAN MATCH filters on the server: "scanned" counts what it returned.
    assert int(end.group(1)) >= 1000 and int(end.group(2)) == 1000
    assert int(end.group(3)) == 1000
    assert len(list(r.scan_iter("gone:*", count=1000))) == 0
    assert len(list(r.scan_iter("kept:*", count=1000))) == 2000

    # A flood of small passes, one after the other: at most one start line
    # a second (and one more at the edges).
    before = w.log().count("scan pass started")
    passes0 = wstats(w)["scan_passes"]
    t0 = time.monotonic()
    with RpcClient(HOST, pub.port) as c:
        rpc_ok(c, "hello", {"proto": 1, "client": "pytest"})
        for i in range(20):
            done = wstats(w)["scans_done"]
            rpc_ok(c, "invalidate", [{"kind": "prefix", "target": f"no{i}:"}])
            poll(lambda: wstats(w)["scans_done"] > done, 20, f"pass {i}")
    elapsed = time.monotonic() - t0
    assert wstats(w)["scan_passes"] - passes0 == 20
    starts = w.log().count("scan pass started") - before
    assert starts <= int(elapsed) + 2 and starts < 20, (starts, elapsed)


def test_each_connection_names_its_role(standalone, worker_factory):
    w = worker_factory(standalone)
    poll(lambda: wstats(w)["live"] == 1, 20, "the worker live")
    addr = standalone.addr
    poll(lambda: f"connected to {addr} (cluster)" in w.log(), 10,
         "the cluster client's line")
    lines = [ln for ln in w.log().splitlines()
             if "[redis] connected to " in ln]
    roles = sorted(ln.rsplit("(", 1)[1].rstrip(")") for ln in lines
                   if f"connected to {addr} (" in ln)
    assert roles == ["cluster", "commands", "hints"], lines
    # No bare "connected to host:port" line is left to guess at.
    assert not any(ln.endswith(f"connected to {addr}") for ln in lines), lines
