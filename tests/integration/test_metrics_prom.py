"""The Prometheus side of both daemons against real Redis: `promtool check
metrics` accepts each /metrics text (base units, histograms, HELP/TYPE), the
latencies are histograms in seconds and the precomputed percentiles are
gone from /metrics (they stay in `stats`, over a recent window), the
process_* metrics are there, the worker exports its node's health, /healthz
and /ready answer 200/503 with a reason, and a clean stack counts no Redis
error for the expected first NOSCRIPT."""

import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

import harness
from harness import HOST, RpcClient
from pubtest import connect, ev, invalidate, stats

PROMTOOL = shutil.which("promtool")


def need_promtool():
    # tests/run.sh installs Debian's prometheus package, so a missing
    # promtool is a broken environment, never a reason to skip.
    assert PROMTOOL, "promtool not found: apt-get install prometheus"


def get(port, path):
    """(status, body) of GET path on the metrics port."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}",
                                    timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def promtool_check(text):
    res = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                         capture_output=True, text=True, timeout=30)
    return res.returncode, res.stdout + res.stderr


def samples(text):
    """{sample name with labels: float value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def worker_stats(w):
    with RpcClient(HOST, w.port) as c:
        err, st = c.call("stats")
    assert err is None, err
    return st


@pytest.fixture
def stack(standalone, publisher_factory, worker_factory):
    pub = publisher_factory(standalone.addr, metrics=True)
    wrk = worker_factory(standalone, metrics=True)
    harness.wait_until(lambda: worker_stats(wrk)["live"], 20,
                       what="worker live")
    return standalone, pub, wrk


def test_promtool_accepts_both_daemons(stack):
    need_promtool()
    r, pub, wrk = stack
    r.client().set("gone", "v")
    r.client().set("kept", "v")
    with connect(pub) as c:
        for i in range(5):
            assert invalidate(c, [ev("key", "gone")])[0] is None
    harness.wait_until(lambda: r.client().exists("gone") == 0, 10,
                       what="key invalidated")
    assert r.client().get("kept") == b"v"
    harness.wait_until(
        lambda: samples(get(wrk.metrics_port, "/metrics")[1])
        ["inval_worker_apply_lag_seconds_count"] >= 5, 10, what="lag counted")
    for port in (pub.metrics_port, wrk.metrics_port):
        status, text = get(port, "/metrics")
        assert status == 200
        rc, out = promtool_check(text)
        assert rc == 0 and out.strip() == "", out
        # No abbreviated units left, and nothing precomputed.
        assert not re.search(r"^inval_\w*_(ms|us)(_|\b)", text, re.M), text
        assert not re.search(r"_p(50|99)", text)
        for name in ("process_start_time_seconds", "process_cpu_seconds_total",
                     "process_resident_memory_bytes", "process_open_fds"):
            assert name in samples(text), name
        s = samples(text)
        assert s["process_resident_memory_bytes"] > 1e6
        assert s["process_open_fds"] >= 3
    pub_s = samples(get(pub.metrics_port, "/metrics")[1])
    assert pub_s["inval_publisher_ack_latency_seconds_count"] == 5
    assert pub_s['inval_publisher_ack_latency_seconds_bucket{le="+Inf"}'] == 5
    assert 0 < pub_s["inval_publisher_ack_latency_seconds_sum"] < 5
    # Cumulative buckets never decrease.
    les = [v for k, v in pub_s.items()
           if k.startswith("inval_publisher_ack_latency_seconds_bucket")]
    assert les == sorted(les) and les[-1] == 5
    st = stats(pub)
    assert 0 < st["ack_latency_p50_us"] <= st["ack_latency_max_us"]


def test_worker_exports_node_health(stack):
    r, pub, wrk = stack
    client = r.client()
    client.config_set("maxmemory", str(512 * 1024 * 1024))
    client.set("hit", "v")
    client.get("hit")
    client.get("miss-1")
    client.get("miss-2")
    before = worker_stats(wrk)["node"]["polls"]
    # The poller runs on connect and then every 5 s.
    st = harness.wait_until(
        lambda: (lambda s: s if s["node"]["polls"] > before else None)(
            worker_stats(wrk)), 8, what="a node poll")
    node = st["node"]
    assert node["up"] == 1 and node["cluster_enabled"] == 0
    assert node["cluster_state_ok"] == 1 and node["slots_fail"] == 0
    assert node["maxmemory"] == 512 * 1024 * 1024
    assert 0 < node["used_memory"] < node["maxmemory"]
    assert node["keyspace_hits"] >= 1 and node["keyspace_misses"] >= 2
    assert node["connected_clients"] >= 3 and node["keys"] >= 1
    assert node["mem_fragmentation_ratio"] > 0
    s = samples(get(wrk.metrics_port, "/metrics")[1])
    assert s["inval_node_memory_max_bytes"] == 512 * 1024 * 1024
    assert s["inval_node_cluster_state"] == 1
    assert s["inval_node_keyspace_misses_total"] >= 2
    assert s["inval_node_mem_fragmentation_ratio"] > 0
    client.config_set("maxmemory", "0")
    out = subprocess.run(
        [harness.binary("invalctl"), "-H", f"{HOST}:{wrk.port}", "stats"],
        capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if r.addr in ln and "ok" in ln]
    assert lines, out.stdout


def test_health_endpoints(stack):
    r, pub, wrk = stack
    for port in (pub.metrics_port, wrk.metrics_port):
        assert get(port, "/healthz") == (200, "ok\n")
        status, body = get(port, "/ready")
        assert status == 200 and body.startswith("ready"), body
        assert get(port, "/nope")[0] == 404
    r.stop()
    try:
        for port, what in ((pub.metrics_port, "Redis not reachable"),
                           (wrk.metrics_port, "not reachable")):
            status, body = harness.wait_until(
                lambda p=port: (lambda sb: sb if sb[0] == 503 else None)(
                    get(p, "/ready")), 10, what="/ready 503")
            assert what in body and body.endswith("\n") and \
                body.count("\n") == 1, body
            # Alive, though not ready.
            assert get(port, "/healthz") == (200, "ok\n")
    finally:
        r.start()
    for port in (pub.metrics_port, wrk.metrics_port):
        harness.wait_until(lambda p=port: get(p, "/ready")[0] == 200, 20,
                           what="ready again")


def test_clean_stack_counts_no_redis_error(stack):
    r, pub, wrk = stack
    client = r.client()
    client.set("hard-target", "v")
    client.set("soft-target", "v")
    client.set("bystander", "v")
    # On standalone Redis the worker's topology probes (CLUSTER commands)
    # are refused once at start; only the NOSCRIPT part is checked here.
    worker_errors = worker_stats(wrk)["redis_errors"]
    with connect(pub) as c:
        # The first batch meets NOSCRIPT (a fresh script cache) and loads the
        # script; so does the worker's first soft invalidation: script
        # loads, not errors.
        assert invalidate(c, [ev("key", "hard-target")])[0] is None
        assert invalidate(c, [ev("key", "soft-target", "soft")])[0] is None
    harness.wait_until(lambda: client.exists("hard-target", "soft-target")
                       == 0, 10, what="keys invalidated")
    assert client.get("bystander") == b"v"
    st = stats(pub)
    assert st["script_loads"] == 1 and st["redis_errors"] == 0
    ws = harness.wait_until(
        lambda: (lambda s: s if s["script_loads"] == 1 else None)(
            worker_stats(wrk)), 10, what="worker script load")
    assert ws["redis_errors"] == worker_errors, client.info("errorstats")
    assert client.info("errorstats")["errorstat_NOSCRIPT"] == "count=2"
