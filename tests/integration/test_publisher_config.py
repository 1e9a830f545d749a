"""inval-publisher's command line and config file: --help, --version,
--check-config, a bad config line (exit 2, the message names the line), an
unknown flag, file values applied and overridden by flags, a port in use,
and a run under valgrind that must exit 0 with no leak or error."""

import os
import subprocess

import pytest

import harness
from harness import HOST
from pubtest import connect, ev, invalidate


def run(*args, cwd=None):
    return subprocess.run([harness.binary("inval-publisher"), *map(str, args)],
                          capture_output=True, text=True, timeout=30, cwd=cwd)


def write(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_help():
    res = run("--help")
    assert res.returncode == 0
    for flag in ("--listen", "--redis", "--metrics-listen", "--log-level",
                 "--redis-timeout", "--max-events", "--max-key-len",
                 "--allow-flush", "--batch-max-events", "--batch-delay-us",
                 "--max-pending-events", "--max-inflight-batches",
                 "--max-log-len", "--max-clients",
                 "--idle-timeout",
                 "--max-message-bytes", "--check-config", "--version"):
        assert flag in res.stdout, flag


def test_version():
    res = run("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == "inval-publisher 0.1.0"


def test_check_config(workdir):
    path = write(workdir, "pub.conf",
                 "# a comment\nmax-events 5\nredis 127.0.0.1:7000\n"
                 "redis-timeout 750ms\nbatch-delay-us 500\n")
    res = run("--config", path, "--check-config", "--max-events", 7)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "max-events 7" in lines          # the flag wins over the file
    assert "batch-delay-us 500" in lines
    assert "redis 127.0.0.1:7000" in lines
    assert "listen 127.0.0.1:7700" in lines  # default


def test_check_config_hides_secrets(workdir):
    path = write(workdir, "pub.conf", "auth-token tok-8d1f\n"
                 "redis-password pw-77a2\n")
    res = run("--config", path, "--check-config")
    assert res.returncode == 0, res.stderr
    assert "tok-8d1f" not in res.stdout and "pw-77a2" not in res.stdout
    lines = res.stdout.splitlines()
    assert "# auth-token (set, not shown)" in lines
    assert "# redis-password (set, not shown)" in lines


def test_config_file_seeds_replace_the_default(workdir):
    """The seeds named in a file are the seeds: the default 127.0.0.1:6379
    applies only when none is given."""
    path = write(workdir, "pub.conf", "redis 127.0.0.1:7000\n")
    res = run("--config", path, "--check-config")
    assert res.returncode == 0, res.stderr
    seeds = [l for l in res.stdout.splitlines() if l.startswith("redis ")]
    assert seeds == ["redis 127.0.0.1:7000"]


@pytest.mark.parametrize("line,why", [
    ("batch-delay-us abc", "batch-delay-us"),
    ("max-pending-events 0", "max-pending-events"),
    ("no-such-directive 1", "no-such-directive"),
    ("redis localhost", "redis"),
    ("allow-flush maybe", "allow-flush"),
    ("redis-timeout 5 parsecs", "redis-timeout"),
])
def test_bad_config_line(workdir, line, why):
    path = write(workdir, "bad.conf", f"max-events 5\n# fine so far\n{line}\n")
    res = run("--config", path)
    assert res.returncode == 2
    assert f"bad.conf:3:" in res.stderr, res.stderr
    assert why in res.stderr
    assert res.stdout == ""


def test_bad_flags():
    res = run("--bogus")
    assert res.returncode == 2 and "--bogus" in res.stderr
    res = run("--max-events", "-1")
    assert res.returncode == 2 and "max-events" in res.stderr
    res = run("--config", "/nonexistent/pub.conf")
    assert res.returncode == 2 and "/nonexistent/pub.conf" in res.stderr


def test_file_settings_apply(standalone, workdir, publisher_factory):
    path = write(workdir, "pub.conf", "max-events 3\nmax-key-len 10\n")
    pub = publisher_factory(standalone.addr, "--config", path,
                            "--max-key-len", 20)
    with connect(pub) as c:
        err, res = c.call("hello", {"proto": 1, "client": "cfg"})
        assert res["max_events"] == 3
        assert invalidate(c, [ev("key", "k")] * 4)[0]["code"] == "ETOOBIG"
        assert invalidate(c, [ev("key", "x" * 20)])[0] is None
        assert invalidate(c, [ev("key", "x" * 21)])[0]["code"] == "EINVAL"


def test_port_in_use(standalone, workdir):
    res = run("--listen", standalone.addr, "--redis", standalone.addr)
    assert res.returncode == 1
    assert str(standalone.port) in res.stderr


@pytest.mark.skipif(harness.sanitized_build(),
                    reason="valgrind cannot run an ASan build; ASan checks it")
def test_valgrind_clean(standalone, publisher_factory):
    """A publisher under valgrind serves requests and stops on SIGTERM with
    exit 0 and no leak (the harness makes valgrind exit 99 on any error)."""
    pub = publisher_factory(standalone.addr, metrics=True, valgrind=True,
                            ready_timeout=60)
    with connect(pub, timeout=20) as c:
        assert c.call("hello", {"proto": 1, "client": "vg"})[0] is None
        for i in range(5):
            assert invalidate(c, [ev("key", f"v{i}"),
                                  ev("pattern", f"v{i}:*")])[0] is None
        assert invalidate(c, [ev("key", "")])[0]["code"] == "EINVAL"
        c.notify("invalidate", [[ev("key", "vn")]])
        assert c.call("stats")[0] is None
        import urllib.request
        urllib.request.urlopen(f"http://{HOST}:{pub.metrics_port}/metrics",
                               timeout=20).read()
        c.send_raw(b"\xc1")
    assert pub.stop(60) == 0, pub.log_tail()
