"""The stats of inval-publisher: the key set of `stats` and the metric
names of /metrics equal the table in service/STATS.md (so the docs and the
code cannot drift), the counters move as documented, and the "workers"
section reflects cache:invalidation:workers with stale flags."""

import os
import re
import time
import urllib.request

import msgpack

import harness
from pubtest import backend, connect, ev, invalidate, stats  # noqa: F401

STATS_MD = os.path.join(harness.REPO_ROOT, "service", "STATS.md")


def documented():
    """{key: (type, metric)} from the table in service/STATS.md."""
    rows = {}
    with open(STATS_MD) as f:
        for line in f:
            m = re.match(r"\|\s*`([a-z0-9_]+)`\s*\|\s*(\w+)\s*\|\s*([^|]*)\|",
                         line)
            if m:
                metric = re.sub(r"[`\s]", "", m.group(3))
                rows[m.group(1)] = (m.group(2), metric)
    assert len(rows) > 20, "STATS.md table not found"
    return rows


def metric_names(text):
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


def test_stats_keys_match_docs(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    st = stats(pub)
    doc = documented()
    assert set(st) == set(doc), (
        f"undocumented: {set(st) - set(doc)}; "
        f"documented but missing: {set(doc) - set(st)}")
    for key, (typ, _) in doc.items():
        if typ in ("counter", "gauge"):
            assert isinstance(st[key], int) and st[key] >= 0, key
    assert isinstance(st["version"], str)
    assert set(st["errors"]) == {"EPROTO", "EINVAL", "ETOOBIG", "ENOMETHOD",
                                 "EUNAVAIL", "EBUSY", "EAUTH", "ESHUTDOWN",
                                 "EPERM"}
    assert isinstance(st["workers"], list)


def test_metrics_match_docs(standalone, publisher_factory):
    pub = publisher_factory(standalone.addr, metrics=True)
    with connect(pub) as c:
        assert invalidate(c, [ev("key", "m1")])[0] is None
    body = urllib.request.urlopen(
        f"http://127.0.0.1:{pub.metrics_port}/metrics", timeout=5).read()
    text = body.decode()
    want = set()
    for key, (typ, metric) in documented().items():
        m = re.match(r"(inval_[a-z0-9_]+)", metric)
        if m:
            want.add(m.group(1))
    want.discard("inval_publisher_workers")
    # Per-tenant counters exist only with tenants-file (test_tenants.py).
    want.discard("inval_publisher_tenant_events_total")
    # The ack-latency histogram and the process_* metrics (STATS.md notes).
    want |= {f"inval_publisher_ack_latency_seconds{s}"
             for s in ("_bucket", "_sum", "_count")}
    names = {n for n in metric_names(text) if not n.startswith("process_")}
    assert names == want
    assert all(n.startswith(("inval_", "process_"))
               for n in metric_names(text))
    assert 'inval_publisher_errors_total{code="EINVAL"} 0' in text
    assert "inval_publisher_events_acked_total 1" in text
    assert 'inval_publisher_info{version="0.1.0"} 1' in text


def test_counters_move(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    with connect(pub) as c:
        for i in range(10):
            err, _ = invalidate(c, [ev("key", f"a{i}"), ev("prefix", f"p{i}:")])
            assert err is None
        assert invalidate(c, [ev("key", "")])[0]["code"] == "EINVAL"
        assert c.call("nope")[0]["code"] == "ENOMETHOD"
        c.notify("invalidate", [[ev("key", "n1")]])
        harness.wait_until(lambda: c.call("stats")[1]["events_acked"] == 21,
                           10, what="notification acked")
        err, st = c.call("stats")
    assert st["events_received"] == 22
    assert st["events_acked"] == 21
    assert st["events_rejected"] == 1
    assert st["events_received"] == st["events_acked"] + \
        st["events_rejected"] + st["pending_events"]
    assert st["notifications"] == 1
    assert st["errors"]["EINVAL"] == 1 and st["errors"]["ENOMETHOD"] == 1
    assert st["batches"] >= 2 and st["batch_events_total"] == 21
    assert st["batch_events_avg"] == 21 // st["batches"]
    assert st["requests"] >= 14
    assert st["redis_round_trips"] >= st["batches"]
    assert 0 < st["ack_latency_p50_us"] <= st["ack_latency_p99_us"] <= \
        st["ack_latency_max_us"]
    assert st["clients"] == 1 and st["connections_total"] >= 1
    assert st["pending_events"] == 0 and st["inflight_batches"] == 0
    assert st["uptime_s"] >= 0


def heartbeat(wid, ts_ms, ttl_ms=3000):
    return msgpack.packb({"id": wid, "node": wid, "role": "primary",
                          "last_id": "1-0", "lag_ms": 5, "behind": 0,
                          "ts_ms": ts_ms, "ttl_ms": ttl_ms},
                         use_bin_type=True)


def test_workers_section(backend, publisher_factory):
    pub = publisher_factory(backend.seeds)
    now = int(time.time() * 1000)
    r = backend.target.client()
    r.hset("cache:invalidation:workers", mapping={
        "127.0.0.1:1": heartbeat("127.0.0.1:1", now + 60000, 600000),
        "127.0.0.1:2": heartbeat("127.0.0.1:2", now - 120000, 3000),
    })

    def both():
        st = stats(pub)
        return st if len(st["workers"]) == 2 else None

    st = harness.wait_until(both, 10, what="workers in stats")
    by_id = {w["id"]: w for w in st["workers"]}
    assert by_id["127.0.0.1:1"]["stale"] is False
    assert by_id["127.0.0.1:2"]["stale"] is True
    assert by_id["127.0.0.1:1"]["role"] == "primary"
    assert set(by_id["127.0.0.1:1"]) == {"id", "node", "role", "last_id",
                                         "lag_ms", "behind", "ts_ms",
                                         "ttl_ms", "stale", "shards"}
    # A record without shards (an older worker's) is listed with none.
    assert by_id["127.0.0.1:1"]["shards"] == []
    assert st["workers_known"] == 2 and st["workers_stale"] == 1
    # The view is refreshed in the background, not per stats call.
    rt = [stats(pub)["redis_round_trips"] for _ in range(20)]
    assert rt[-1] - rt[0] <= 3
