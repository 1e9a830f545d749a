"""invalctl bench against a real inval-publisher on a real standalone Redis:
the --json figures agree with what the log holds, errors are counted by
code with the documented exit codes, bad flags are refused before
connecting, and a small --e2e run with a worker sees every seeded key go
(and leaves the node's notify-keyspace-events setting as it found it)."""

import csv
import io
import json
import signal
import subprocess
import time

import msgpack
import pytest

import harness
import pubtest
import workerlib
from harness import HOST

# Standalone, every log entry is in shard 0's stream.
LOG_KEY = pubtest.LOG_KEY.encode()


def bench(port, *args, timeout=60):
    return harness.invalctl("-H", f"{HOST}:{port}", "bench", *args,
                            timeout=timeout)


def bench_json(port, *args, timeout=60, code=0):
    res = bench(port, *args, "--json", timeout=timeout)
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    return json.loads(res.stdout)


def logged_targets(redis_server):
    """Every event target in the log, in log order."""
    out = []
    for _, fields in redis_server.client().xrange(LOG_KEY, "-", "+"):
        payload = msgpack.unpackb(fields[b"p"], raw=False)
        out.extend(e["target"] for e in payload["events"])
    return out


def check_latency(lat, count):
    assert lat["count"] == count
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]


def test_json_figures_match_the_log(standalone, publisher_factory):
    pub = publisher_factory(standalone)
    fig = bench_json(pub.port, "-c", "4", "-n", "2000", "-P", "8",
                     "--keyspace", "500")
    assert fig["kind"] == "key" and fig["clients"] == 4
    assert fig["pipeline"] == 8 and fig["keys_per_event"] == 1
    assert fig["sent_events"] == fig["acked_events"] == 2000
    assert fig["sent_requests"] == fig["acked_requests"] == 2000
    assert fig["refused_requests"] == 0 and fig["lost_requests"] == 0
    assert fig["errors"] == {}
    assert fig["seconds"] > 0
    assert fig["events_per_sec"] == pytest.approx(2000 / fig["seconds"],
                                                  rel=0.01)
    check_latency(fig["ack_latency_us"], 2000)
    # The other side: the publisher logged exactly those events, cycling
    # through the 500 names of the keyspace.
    targets = logged_targets(standalone)
    assert len(targets) == 2000
    assert set(targets) == {f"bench:key:{i}" for i in range(500)}


def test_keys_per_event_and_kinds(standalone, publisher_factory):
    pub = publisher_factory(standalone)
    fig = bench_json(pub.port, "-c", "2", "-n", "1000", "-P", "4",
                     "--keys-per-event", "10", "--kind", "pattern",
                     "--key-prefix", "kp:")
    assert fig["acked_events"] == 1000 and fig["acked_requests"] == 100
    assert fig["requests_per_sec"] == pytest.approx(
        fig["events_per_sec"] / 10, rel=0.01)
    check_latency(fig["ack_latency_us"], 100)
    targets = logged_targets(standalone)
    assert len(targets) == 1000
    assert all(t.startswith("kp:pat:") and t.endswith(":*") for t in targets)
    assert len(standalone.client().xrange(LOG_KEY, "-", "+")) <= 100


def test_text_output(standalone, publisher_factory):
    pub = publisher_factory(standalone)
    res = bench(pub.port, "-c", "2", "-n", "300", "--kind", "prefix")
    assert res.returncode == 0, res.stderr
    assert "300 events acked" in res.stdout
    for word in ("events/s:", "requests/s:", "ack latency ms: p50",
                 "errors: none"):
        assert word in res.stdout, res.stdout
    # Not a terminal: no progress line.
    assert "\r" not in res.stderr


def test_duration_and_rate(standalone, publisher_factory):
    pub = publisher_factory(standalone)
    fig = bench_json(pub.port, "-c", "2", "-P", "4", "--duration", "1",
                     "--rate", "400")
    # Paced: never more than the rate allows over the sending time (plus
    # one request), and every event sent was acked.
    assert 0 < fig["sent_events"] <= 400 * 1.0 + 1
    assert fig["acked_events"] == fig["sent_events"]
    assert len(logged_targets(standalone)) == fig["sent_events"]


def test_refused_events_counted_by_code(standalone, publisher_factory):
    pub = publisher_factory(standalone, "--max-key-len", "8")
    fig = bench_json(pub.port, "-c", "2", "-n", "50", "-P", "4", code=1)
    assert fig["acked_events"] == 0
    assert fig["refused_requests"] == 50
    assert fig["errors"] == {"EINVAL": 50}
    assert logged_targets(standalone) == []


def test_csv_reads_like_redis_benchmark(standalone, publisher_factory):
    """--csv prints redis-benchmark's --csv header (but its min column) and
    one row for the acks, which Python's csv module reads back."""
    pub = publisher_factory(standalone)
    res = bench(pub.port, "-c", "2", "-n", "200", "-P", "4", "--csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["test"] for r in rows] == ["INVALIDATE key"]
    row = rows[0]
    assert set(row) == {"test", "rps", "avg_latency_ms", "p50_latency_ms",
                        "p95_latency_ms", "p99_latency_ms", "max_latency_ms"}
    assert float(row["rps"]) > 0
    assert 0 < float(row["p50_latency_ms"]) <= float(row["max_latency_ms"])
    assert len(logged_targets(standalone)) == 200


def test_unreachable_publisher():
    port = harness.free_port()
    res = bench(port, "-c", "2", "-n", "10")
    assert res.returncode == 3
    assert "error: connection 1 to" in res.stderr


def interrupt_run(standalone, pub, clients, action):
    """Starts a long paced bench run, calls action(proc) once the first
    events are logged, and returns (exit code, stdout, stderr)."""
    proc = subprocess.Popen(
        [harness.binary("invalctl"), "-H", f"{HOST}:{pub.port}", "bench",
         "-c", str(clients), "--duration", "120", "--rate", "2000",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        harness.wait_until(lambda: standalone.client().xlen(LOG_KEY) > 0, 30,
                           what="the first events logged")
        action(proc)
        out, err = proc.communicate(timeout=30)
    finally:
        harness.reap(proc)
    return proc.returncode, out, err


def test_publisher_killed_mid_run(standalone, publisher_factory):
    pub = publisher_factory(standalone)
    code, out, err = interrupt_run(standalone, pub, 3, lambda _: pub.kill())
    assert code == 3, (out, err)
    fig = json.loads(out)
    assert fig["acked_events"] > 0
    assert sum(fig["errors"].values()) == 3  # one per connection
    assert set(fig["errors"]) <= {"ECLOSED", "EIO"}
    assert "error: " in err


@pytest.mark.parametrize("args, message", [
    (["-c", "0"], "-c wants a number from 1"),
    (["-n", "x"], "-n wants a number of events"),
    (["-P", "5000"], "-P wants a number from 1 to 4096"),
    (["--kind", "glob"], "--kind wants key, prefix or pattern"),
    (["--keys-per-event", "0"], "--keys-per-event wants a number"),
    (["--duration", "-1"], "--duration wants a positive number"),
    (["--rate"], "--rate needs a value"),
    (["--e2e", "-n", "5"], "--e2e needs --redis"),
    (["--e2e", "--redis", "127.0.0.1:1"], "--e2e needs -n"),
    (["--redis", "127.0.0.1:1"], "--redis is only used with --e2e"),
    (["--redis", "nope", "--e2e", "-n", "1"], "--redis wants HOST:PORT"),
    (["--bogus"], "unknown argument --bogus"),
    (["--json", "--csv"], "--json and --csv exclude each other"),
])
def test_bad_flags(args, message):
    # Port 1 is never served: a usage error must come before connecting.
    res = bench(1, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr
    assert "invalctl help bench" in res.stderr
    assert res.stdout == ""


def test_help_lists_bench():
    res = harness.invalctl("help", "bench")
    assert res.returncode == 0 and "--keys-per-event" in res.stdout
    res = harness.invalctl("--help")
    assert "bench" in res.stdout


@pytest.mark.parametrize("notify, soft", [(False, False), (True, False),
                                          (False, True)])
def test_e2e_standalone(standalone, publisher_factory, worker_factory,
                        notify, soft):
    r = standalone.client()
    r.config_set("notify-keyspace-events", "Kx")
    r.set("bystander", "stays")
    worker = worker_factory(standalone)
    topo = workerlib.Topo(standalone)
    workerlib.wait_workers_live(topo, [worker])
    pub = publisher_factory(standalone)
    args = ["-c", "2", "-n", "300", "-P", "4", "--rate", "3000", "--e2e",
            "--redis", standalone.addr, "--wait", "30"]
    if notify:
        args.append("--notify")
    if soft:
        args.append("--soft")
    fig = bench_json(pub.port, *args)
    assert fig["mode"] == ("soft" if soft else "hard")
    e2e = fig["e2e"]
    assert e2e["primaries"] == 1 and e2e["cluster"] is False
    assert e2e["keys"] == 300 and e2e["gone"] == 300 and e2e["early"] == 0
    check_latency(e2e["latency_us"], 300)
    if notify:
        assert fig["acked_events"] == 0 and fig["sent_events"] == 300
    else:
        assert fig["acked_events"] == 300
    # Both sides: the seeded keys are gone, the bystander stays, and the
    # node's notification flags are back to what they were.
    assert r.keys("bench:e2e:*") == []
    assert r.get("bystander") == b"stays"
    if soft:
        # A soft invalidation keeps each value as its stale copy.
        stale = [k for k in r.keys("*") if b"bench:e2e:" in k]
        assert len(stale) == 300, stale[:5]
    flags = r.config_get("notify-keyspace-events")["notify-keyspace-events"]
    assert sorted(flags) == sorted("Kx")


def test_e2e_reports_keys_not_gone(standalone, publisher_factory):
    # No worker runs: nothing deletes the keys, and bench says so.
    pub = publisher_factory(standalone)
    start = time.monotonic()
    fig = bench_json(pub.port, "-c", "1", "-n", "20", "--e2e", "--redis",
                     standalone.addr, "--wait", "0.5", code=1)
    assert time.monotonic() - start < 30
    assert fig["acked_events"] == 20 and fig["e2e"]["gone"] == 0
    assert len(standalone.client().keys("bench:e2e:*")) == 20


def test_sigint_stops_a_run(standalone, publisher_factory):
    pub = publisher_factory(standalone)
    code, out, err = interrupt_run(
        standalone, pub, 2, lambda proc: proc.send_signal(signal.SIGINT))
    assert code == 0, (out, err)
    fig = json.loads(out)
    assert fig["acked_events"] == fig["sent_events"] > 0
    assert len(logged_targets(standalone)) == fig["acked_events"]
