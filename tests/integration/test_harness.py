"""Checks of the test harness itself, against real redis-server processes:
the cluster fixture is 3 primaries + 3 replicas in sync over all 16384
slots, failover helpers work, and every process started is cleaned up."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import msgpack
import pytest

import harness
from harness import HOST, NUM_SLOTS, Daemon, RedisServer, RpcClient
from inval.keys import crc16  # the package's, as the harness uses it


def test_free_ports_are_distinct_and_bindable():
    ports = [harness.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    for p in ports:
        assert 0 < p and p + 10000 <= 65535
        s = socket.socket()
        s.bind((HOST, p))
        s.close()


def test_key_slot_matches_spec(standalone):
    assert harness.key_slot("123456789") == 0x31C3 % NUM_SLOTS
    assert harness.key_slot("{user:42}:a") == harness.key_slot("user:42")
    assert harness.key_slot("a{}b") == crc16(b"a{}b") % NUM_SLOTS


def test_standalone_is_running_and_flushed(standalone):
    c = standalone.client()
    assert c.ping()
    assert c.dbsize() == 0
    c.set(b"k", b"v")
    assert standalone.role() == "master"
    cfg = c.config_get("save")
    assert cfg["save"] == ""


def test_standalone_flushed_again_and_restartable(standalone):
    c = standalone.client()
    assert c.dbsize() == 0
    old_pid = standalone.pid
    standalone.restart()
    assert standalone.pid != old_pid
    assert harness.pid_gone(old_pid)
    assert standalone.client().ping()


def test_cluster_shape(cluster):
    assert len(cluster.nodes) == 6
    primaries = cluster.primaries()
    replicas = cluster.replicas()
    assert len(primaries) == 3 and len(replicas) == 3
    assert len(cluster.seeds) == 6
    # Every node agrees on who owns each slot, and all slots are owned by
    # the three primaries.
    views = [n.slot_owners() for n in cluster.nodes]
    assert all(v == views[0] for v in views)
    assert set(views[0]) == {p.port for p in primaries}
    for n in cluster.nodes:
        assert n.cluster_info()["cluster_state"] == "ok"
        assert n.cluster_info()["cluster_slots_assigned"] == str(NUM_SLOTS)
    # One replica per primary, linked and acknowledging the primary's offset.
    for p in primaries:
        rs = cluster.replicas_of(p)
        assert len(rs) == 1
        assert cluster.replica_of(p) is rs[0]
        assert cluster.primary_of(rs[0]) is p
        assert rs[0].info("replication")["master_link_status"] == "up"
        assert p.client().execute_command("WAIT", 1, 2000) == 1


def test_cluster_flushed_and_routed(cluster):
    c = cluster.client()
    assert c.dbsize() == 0
    keys = [f"key:{i}".encode() for i in range(300)]
    for k in keys:
        c.set(k, b"x")
    for k in keys:
        owner = cluster.node_for_key(k)
        slot = harness.key_slot(k)
        assert owner.client().execute_command("CLUSTER", "KEYSLOT", k) == slot
        assert owner.client().get(k) == b"x"
    # Replicas receive the writes.
    for p in cluster.primaries():
        assert p.client().execute_command("WAIT", 1, 2000) == 1
        r = cluster.replica_of(p)
        assert r.client().dbsize() == p.client().dbsize()
    assert sum(p.client().dbsize() for p in cluster.primaries()) == 300


def test_cluster_is_flushed_between_tests(cluster):
    assert sum(p.client().dbsize() for p in cluster.primaries()) == 0


def test_fresh_cluster_failover_and_kill(fresh_cluster):
    c = fresh_cluster
    p = c.primaries()[0]
    r = c.replica_of(p)
    c.client().set(b"{x}a", b"1")
    c.failover(r)
    assert r.role() == "master"
    wait = harness.wait_until(lambda: p.role() == "slave", 15,
                              what="old primary demoted")
    assert wait
    assert len(c.primaries()) == 3 and len(c.replicas()) == 3

    victim = c.node_for_key(b"{x}a")
    standby = c.replica_of(victim)
    promoted = c.kill_primary(victim)
    assert promoted is standby
    assert not victim.alive()
    assert c.node_for_key(b"{x}a") is promoted
    assert promoted.client().get(b"{x}a") == b"1"
    assert len(c.primaries()) == 3 and len(c.replicas()) == 2
    # The killed node rejoins as a replica of the node that took over.
    c.restart_node(victim)
    assert victim.role() == "slave"
    assert c.primary_of(victim) is promoted
    assert len(c.primaries()) == 3 and len(c.replicas()) == 3


def _echo_server(port):
    """A tiny msgpack-rpc echo server run as a Daemon: answers every request
    with its params, and closes on the method "bye"."""
    code = textwrap.dedent(f"""
        import signal, socket, sys, msgpack
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", {port}))
        ls.listen(8)
        while True:
            conn, _ = ls.accept()
            up = msgpack.Unpacker(raw=False)
            open_ = True
            while open_:
                data = conn.recv(65536)
                if not data:
                    break
                up.feed(data)
                for m in up:
                    if m[0] == 0 and m[2] == "bye":
                        open_ = False
                        break
                    if m[0] == 0:
                        err = None if m[2] != "fail" else {{"code": "EINVAL",
                                                          "message": "no"}}
                        conn.sendall(msgpack.packb([2, "note", [m[1]]]))
                        conn.sendall(msgpack.packb([1, m[1], err, m[3]],
                                                   use_bin_type=True))
            conn.close()
    """)
    return [sys.executable, "-c", code]


def test_daemon_and_rpc_client(workdir):
    port = harness.free_port()
    d = Daemon(_echo_server(port), workdir, "echo", ready_port=port)
    assert d.alive() and d.port == port
    with RpcClient(HOST, port, timeout=5) as c:
        err, res = c.call("echo", 1, "two", b"three")
        assert err is None and res == [1, "two", b"three"]
        err, res = c.call("fail")
        assert err == {"code": "EINVAL", "message": "no"}
        # The notifications sent before each response were queued.
        assert c.read_message(1)[:2] == [2, "note"]
        c.request(77, "x", [])
        c.request(78, "y", [5])
        assert c.wait_response(78) == (None, [5])
        assert c.read_message(1)[0] == 2
        c.send_raw(msgpack.packb([0, 9, "bye", []]))
        assert c.closed(5)
    with RpcClient(HOST, port, timeout=1) as c:
        with pytest.raises(TimeoutError):
            c.read_message(0.3)
        assert not c.closed(0.3)
    pid = d.pid
    assert d.stop() == 0
    assert harness.pid_gone(pid)
    assert "echo" in d.log_path


def test_daemon_that_exits_early_is_reported(workdir):
    port = harness.free_port()
    with pytest.raises(harness.HarnessError) as exc:
        Daemon([sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
               workdir, "early", ready_port=port, ready_timeout=5)
    assert "exited with 3" in str(exc.value)
    assert "boom" in str(exc.value)


def test_daemon_stop_escalates_to_sigkill(workdir):
    d = Daemon([sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, "
                "signal.SIG_IGN); print('up', flush=True); time.sleep(60)"],
               workdir, "term-ignorer")
    harness.wait_until(lambda: "up" in d.log(), 10, what="term-ignorer up")
    t0 = time.monotonic()
    assert d.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - t0 < 5


def test_pid_files(workdir, monkeypatch, tmp_path):
    monkeypatch.setenv("INVAL_TEST_RUNDIR", str(tmp_path))
    s = RedisServer(workdir).start()
    pidfile = tmp_path / "pids" / f"redis-{s.port}-{s.pid}.pid"
    assert pidfile.read_text().split() == [str(s.pid), "redis-server"]
    s.stop()
    assert not pidfile.exists()


def test_fixtures_clean_up_their_processes(tmp_path):
    """Runs a small pytest session in a child interpreter that uses every
    fixture and records the PIDs; after it ends, none of them runs."""
    here = os.path.dirname(os.path.abspath(__file__))
    pidlog = tmp_path / "pids.txt"
    test = tmp_path / "test_inner.py"
    test.write_text(textwrap.dedent(f"""
        import sys
        import harness
        PIDLOG = {str(pidlog)!r}

        def note(*pids):
            with open(PIDLOG, "a") as f:
                for p in pids:
                    f.write(f"{{p}}\\n")

        def test_a(standalone, workdir):
            note(standalone.pid)
            d = harness.Daemon([sys.executable, "-c",
                                "import time; time.sleep(60)"], workdir, "sl")
            note(d.pid)  # left running on purpose: atexit must stop it

        def test_b(fresh_cluster):
            note(*[n.pid for n in fresh_cluster.nodes])
    """))
    env = dict(os.environ, PYTHONPATH=here)
    env.pop("INVAL_TEST_RUNDIR", None)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "--confcutdir", here, "-c", os.devnull,
         "-o", "python_files=test_*.py", str(test),
         "-p", "conftest"], cwd=here, env=env, capture_output=True,
        text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    pids = [int(x) for x in pidlog.read_text().split()]
    assert len(pids) == 1 + 1 + 6
    harness.wait_until(lambda: all(harness.pid_gone(p) for p in pids), 10,
                       what="every fixture process gone")


def test_concurrent_free_port_callers():
    got = []
    lock = threading.Lock()

    def grab():
        ps = [harness.free_port() for _ in range(20)]
        with lock:
            got.extend(ps)

    ts = [threading.Thread(target=grab) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert len(got) == 80 and len(set(got)) == 80
