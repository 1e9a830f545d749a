"""systemd integration: the daemons speak the notify protocol (READY=1 once
listening and connected to Redis, WATCHDOG=1 when a watchdog is asked for,
STOPPING=1 on SIGTERM) to whatever socket $NOTIFY_SOCKET names, and the
installed units pass `systemd-analyze verify`."""

import os
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

import harness


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self):
        # Socket paths are limited to 107 bytes: a short private directory,
        # not the test's deep work directory.
        self.dir = tempfile.mkdtemp(prefix="inval-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, field, timeout=10):
        """Collects datagrams until one holds the line `field`; returns
        that datagram's lines."""
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(4096).decode()
            lines = data.split("\n")
            self.messages.append(lines)
            if field in lines:
                return lines

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_publisher_notifies_ready_watchdog_and_stopping(
        workdir, publisher_factory):
    sink = NotifySocket()
    redis = harness.RedisServer(workdir)
    try:
        # Redis is down at first: the publisher listens, but is not ready.
        pub = publisher_factory(f"{harness.HOST}:{redis.port}",
                                env={"NOTIFY_SOCKET": sink.path,
                                     "WATCHDOG_USEC": "400000"})
        lines = sink.wait_for("WATCHDOG=1")
        assert not any("READY=1" in m for m in sink.messages), sink.messages
        redis.start()
        lines = sink.wait_for("READY=1")
        assert "STATUS=ready" in lines, lines
        # Pings keep coming at half the watchdog period after readiness.
        before = len(sink.messages)
        sink.wait_for("WATCHDOG=1", timeout=2)
        assert len(sink.messages) > before
        assert pub.stop() == 0
        sink.wait_for("STOPPING=1", timeout=5)
        assert sum("READY=1" in m for m in sink.messages) == 1
    finally:
        redis.stop()
        sink.close()


def test_worker_notifies_ready_once_connected(workdir, standalone,
                                              worker_factory):
    sink = NotifySocket()
    try:
        w = worker_factory(standalone.addr, env={"NOTIFY_SOCKET": sink.path})
        lines = sink.wait_for("READY=1")
        assert f"STATUS=connected to {standalone.addr}" in lines, lines
        assert w.stop() == 0
        sink.wait_for("STOPPING=1", timeout=5)
        # No watchdog was asked for, so none is sent.
        assert not any("WATCHDOG=1" in m for m in sink.messages)
    finally:
        sink.close()


def test_installed_units_pass_systemd_analyze_verify(workdir):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    prefix = os.path.join(workdir, "prefix")
    res = subprocess.run(["cmake", "--install", harness.build_dir(),
                          "--prefix", prefix], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    units = os.path.join(prefix, "lib/systemd/system")
    paths = [os.path.join(units, "inval-publisher.service"),
             os.path.join(units, "inval-worker@7000.service")]
    # A template is verified through an instance of it.
    shutil.copy(os.path.join(units, "inval-worker@.service"), paths[1])
    for path in paths:
        with open(path) as f:
            text = f.read()
        assert re.search(r"^Type=notify$", text, re.M), path
        assert re.search(r"^WatchdogSec=", text, re.M), path
    res = subprocess.run(["systemd-analyze", "verify", "--man=no"] + paths,
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    # Lines about units outside ours (the host's own) are not ours to judge.
    ours = [l for l in (res.stdout + res.stderr).splitlines()
            if "inval-" in l]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr
