"""The Prometheus rules under deploy/prometheus pass `promtool check rules`,
and their unit tests (deploy/prometheus/*.test.yml: each alert fires in one
test and stays silent in another) pass `promtool test rules`."""

import glob
import os
import shutil
import subprocess

import harness

PROM_DIR = os.path.join(harness.REPO_ROOT, "deploy", "prometheus")


def promtool(*args):
    # tests/run.sh installs Debian's prometheus package: a missing promtool
    # is a broken environment, never a reason to skip.
    exe = shutil.which("promtool")
    assert exe, "promtool not found: apt-get install prometheus"
    res = subprocess.run([exe, *args], capture_output=True, text=True,
                         timeout=60, cwd=PROM_DIR)
    return res.returncode, res.stdout + res.stderr


def test_rules_check():
    rules = glob.glob(os.path.join(PROM_DIR, "*-rules.yml"))
    assert rules
    rc, out = promtool("check", "rules", *rules)
    assert rc == 0, out


def test_rules_unit_tests():
    tests = glob.glob(os.path.join(PROM_DIR, "*.test.yml"))
    assert tests
    rc, out = promtool("test", "rules", *tests)
    assert rc == 0 and "SUCCESS" in out, out


def rule_alerts():
    import yaml
    with open(os.path.join(PROM_DIR, "inval-rules.yml")) as f:
        rules = yaml.safe_load(f)
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"]
            if "alert" in r}


def test_every_alert_fires_and_stays_silent():
    import yaml
    with open(os.path.join(PROM_DIR, "inval-rules.test.yml")) as f:
        spec = yaml.safe_load(f)
    fires, silent = set(), set()
    for t in spec["tests"]:
        for a in t["alert_rule_test"]:
            (fires if a["exp_alerts"] else silent).add(a["alertname"])
    alerts = set(rule_alerts())
    assert len(alerts) >= 18, alerts
    assert alerts - fires == set(), "alerts without a test that fires them"
    assert alerts - silent == set(), "alerts without a test where they are silent"


def test_every_alert_has_a_runbook_section():
    """docs/OPERATIONS.md has a "### <alert>" section for every alert under
    "## Alerts and what to do", and a runbook_url points at its section."""
    with open(os.path.join(harness.REPO_ROOT, "docs", "OPERATIONS.md")) as f:
        doc = f.read()
    assert "\n## Alerts and what to do\n" in doc
    part = doc.split("\n## Alerts and what to do\n", 1)[1].split("\n## ")[0]
    sections = {ln[4:].strip() for ln in part.splitlines()
                if ln.startswith("### ")}
    alerts = rule_alerts()
    assert set(alerts) - sections == set(), "alerts without a runbook"
    for name, rule in alerts.items():
        url = rule.get("annotations", {}).get("runbook_url")
        if url is not None:
            assert url == f"docs/OPERATIONS.md#{name.lower()}", (name, url)
    assert "runbook_url" in alerts["InvalRedisScaleOut"]["annotations"]
