"""deploy/grafana/inval.json is valid JSON with the three rows (publisher,
workers, Redis nodes), and every metric its queries name is one that the
running daemons export (a histogram's _bucket series included)."""

import json
import os
import re

import harness

DASHBOARD = os.path.join(harness.REPO_ROOT, "deploy", "grafana", "inval.json")


def test_dashboard_queries_use_exported_metrics(standalone, publisher_factory,
                                                worker_factory):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["Publisher", "Workers", "Redis nodes"]
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    used = set()
    for e in exprs:
        used |= set(re.findall(r"\b((?:inval|process)_[a-z0-9_]+)", e))
    assert any(u.startswith("inval_node_") for u in used)
    pub = publisher_factory(standalone.addr, metrics=True)
    wrk = worker_factory(standalone, metrics=True)
    have = set()
    for port in (pub.metrics_port, wrk.metrics_port):
        have |= harness.wait_until(lambda p=port: harness.metric_names(p), 10,
                                   what="/metrics")
    assert used <= have, f"not exported: {sorted(used - have)}"
