"""The Redis client layer (common/redis/redis_conn.c, common/redis/redis_cluster.c)
against real Redis: tests/tools/redis_check runs one scenario per test, and
these tests play the part of the world around it (killing, restarting,
pausing, resharding and failing over servers) and then check both the
tool's verdict and what Redis holds afterwards."""

import os
import subprocess
import threading
import time

import pytest

import harness
from harness import HOST, NUM_SLOTS, RedisServer, key_slot

STOP_KEY = "redis_check:stop"


class Check:
    """redis_check running in the background. stdout is collected line by
    line (key=value lines, READY, FAIL: ...); stderr (the library's log)
    goes to workdir/redis_check-<scenario>.log."""

    def __init__(self, workdir, scenario, *args):
        self.scenario = scenario
        self.log_path = os.path.join(workdir, f"redis_check-{scenario}.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [harness.binary("redis_check"), scenario, *map(str, args)],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            text=True)
        self.lines = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self):
        with self._cond:
            text = "\n".join(self.lines)
        return f"{text}\n--- log ---\n{harness.tail(self.log_path, 30)}"

    def wait_line(self, want, timeout=30):
        """Waits until the tool prints the line want; fails the test when it
        exits or the time is up first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while want not in self.lines:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and
                                      not self._reader.is_alive()):
                    break
                self._cond.wait(min(remaining, 0.5))
            if want in self.lines:
                return
        pytest.fail(f"redis_check {self.scenario} did not print {want}:\n"
                    f"{self.output()}")

    def finish(self, timeout=120):
        """Waits for the exit; returns (exit code, {key: value})."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"redis_check {self.scenario} still running after "
                        f"{timeout}s:\n{self.output()}")
        self._reader.join(10)
        self._log.close()
        values = {}
        for line in self.lines:
            for word in line.split():
                if "=" in word and not line.startswith("FAIL"):
                    k, _, v = word.partition("=")
                    values[k] = v
        return code, values

    def expect_ok(self, timeout=120):
        code, values = self.finish(timeout)
        assert code == 0, f"redis_check {self.scenario} failed:\n" \
                          f"{self.output()}"
        assert "RESULT OK" in self.lines
        return values


def run(workdir, scenario, *args, timeout=120):
    return Check(workdir, scenario, *args).expect_ok(timeout)


def dead_addr():
    """An address where nothing listens."""
    return f"{HOST}:{harness.free_port()}"


# ---------------------------------------------------------------------------
# One connection (inv_redis_t).

def test_redirect_parsing(workdir):
    run(workdir, "parse")


def test_pipeline_one_write_for_many_commands(standalone, workdir):
    v = run(workdir, "pipeline", standalone.addr)
    assert v["final"] == "50000"
    assert int(v["commands"]) >= 50001
    # 50,000 INCRs issued in one loop pass go out in a single write (the
    # binary SET/GET that follows is the second).
    assert int(v["writes"]) <= 5
    assert v["over_max_pending"] == "EBUSY"
    c = standalone.client()
    assert c.get(b"pl:counter") == b"50000"
    assert c.get(b"pl:bin") == b"a\0b\r\n"
    assert c.get(b"pl:fmt") == b"ok"


def test_reconnect_after_server_restart(standalone, workdir):
    chk = Check(workdir, "reconnect", standalone.addr)
    chk.wait_line("READY")
    standalone.kill()
    time.sleep(1.0)  # commands fail with ECLOSED meanwhile
    standalone.start()
    v = chk.expect_ok(60)
    assert v["connects"] == "2" and v["reconnects"] == "1"
    assert int(v["ping_closed_sync"]) > 0  # refused while disconnected
    assert standalone.client().get(b"rc:key") == b"2"


def test_command_timeout_drops_and_recovers(standalone, workdir):
    v = run(workdir, "timeout", standalone.addr)
    assert v["first_err"] == "ETIMEDOUT"
    assert 450 <= int(v["elapsed_ms"]) <= 1200
    assert v["others_closed"] == "2"
    assert int(v["timeouts"]) >= 1
    assert standalone.client().ping()


def test_subscribe_mode(standalone, workdir):
    v = run(workdir, "subscribe", standalone.addr)
    assert v["messages"] == "1000" and v["pmessages"] == "10"
    assert v["order_errors"] == "0"
    assert v["normal_after_unsubscribe"] == "ok"
    # Every subscription was released on the server.
    assert standalone.client().execute_command("PUBSUB", "NUMPAT") == 0


def test_close_and_reset_from_callbacks(standalone, workdir):
    v = run(workdir, "reentrant", standalone.addr)
    assert v["a_ok"] == "10" and v["a_closed_err"] == "990"
    assert v["a_late"] == "0"
    assert v["g_msgs"] == "10"


def test_auth_before_connected(workdir):
    server = RedisServer(workdir).start()
    try:
        server.client().config_set("requirepass", "s3cret-pw")
        v = run(workdir, "auth", server.addr, "s3cret-pw")
        assert v["good_ok"] == "1"
        assert v["bad_events"] == "0" and v["bad_connects"] == "0"
        assert v["cluster_ok"] == "1"
        assert server.client().get(b"auth:key") == b"v"
    finally:
        server.stop()


# ---------------------------------------------------------------------------
# The cluster client (inv_cluster_t).

# redis_check cluster sets key:0..9999 plus one key per slot, then small:0..99.
CLUSTER_KEYS = 10000 + NUM_SLOTS + 100


def test_cluster_every_slot(cluster, workdir):
    v = run(workdir, "cluster", *cluster.seeds)
    assert v["mode"] == "cluster"
    assert v["set_ok"] == v["get_ok"] == str(10000 + NUM_SLOTS)
    assert v["ready_at_start"] == "0"  # all of it was queued before the map
    assert v["small_refused_at"] == "100" and v["rc"] == "EBUSY"
    assert v["publish"] == "ok"
    assert int(v["errors"]) == 0
    total = sum(p.client().dbsize() for p in cluster.primaries())
    assert total == CLUSTER_KEYS
    rc = cluster.client()
    for i in range(0, 10000, 97):
        assert rc.get(f"key:{i}") == f"val:key:{i}".encode()
    for slot in range(0, NUM_SLOTS, 331):
        owner = cluster.slot_owner(slot)
        assert owner.client().execute_command(
            "CLUSTER", "COUNTKEYSINSLOT", slot) >= 1


def test_cluster_client_on_standalone(standalone, workdir):
    v = run(workdir, "cluster", standalone.addr)
    assert v["mode"] == "standalone"
    assert v["get_ok"] == str(10000 + NUM_SLOTS)
    assert standalone.client().dbsize() == CLUSTER_KEYS


def test_cluster_dead_seed_is_skipped(cluster, workdir):
    v = run(workdir, "cluster", dead_addr(), cluster.seeds[0])
    assert v["mode"] == "cluster"
    assert v["get_ok"] == str(10000 + NUM_SLOTS)


def test_cluster_close_with_commands_outstanding(cluster, workdir):
    v = run(workdir, "cluster_close", *cluster.seeds)
    assert v["early_closed"] == "1000"
    assert int(v["mid_ok"]) >= 1
    assert int(v["mid_ok"]) + int(v["mid_closed"]) == 1000
    assert v["late"] == "0"


def _node_id(node):
    return node.client().execute_command("CLUSTER", "MYID").decode()


def test_slot_migration_ask_and_moved(fresh_cluster, workdir):
    chk = Check(workdir, "migrate", *fresh_cluster.seeds)
    chk.wait_line("READY")
    slot = key_slot("{mig}")
    src = fresh_cluster.slot_owner(slot)
    dst = next(p for p in fresh_cluster.primaries() if p.port != src.port)
    src_id, dst_id = _node_id(src), _node_id(dst)
    s, d = src.client(), dst.client()
    d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    assert len(keys) >= 200
    # Half the keys first: the client now meets ASK for the moved ones
    # while the rest are still served by the source.
    half = keys[:len(keys) // 2]
    s.execute_command("MIGRATE", HOST, dst.port, "", 0, 5000, "KEYS", *half)
    time.sleep(1.5)
    while True:
        rest = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if not rest:
            break
        s.execute_command("MIGRATE", HOST, dst.port, "", 0, 5000, "KEYS",
                          *rest)
    for p in fresh_cluster.primaries():
        p.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    # Now the source answers MOVED until the client's map has caught up.
    time.sleep(1.5)
    fresh_cluster.node_for_key(STOP_KEY).client().set(STOP_KEY, b"1")
    v = chk.expect_ok()
    assert v["reads_bad"] == "0" and v["incr_bad"] == "0"
    assert int(v["redirects"]) > 0
    assert int(v["rounds"]) >= 5
    assert d.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 201
    assert s.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    assert int(d.get("{mig}:counter")) == int(v["incr_ok"])


def _publish_calls(node):
    stats = node.client().info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


def test_failover_then_all_nodes_down(fresh_cluster, workdir):
    chk = Check(workdir, "failover", *fresh_cluster.seeds)
    chk.wait_line("READY")
    time.sleep(0.5)
    # Kill the primary that carries the tool's keyless PUBLISHes, so both
    # the keys it owns and the keyless traffic have to move.
    victim = harness.wait_until(
        lambda: next((p for p in fresh_cluster.primaries()
                      if _publish_calls(p) > 0), None),
        10, what="the primary used for PUBLISH")
    promoted = fresh_cluster.kill_primary(victim)
    fresh_cluster.node_for_key(STOP_KEY).client().set(STOP_KEY, b"1")
    v = chk.expect_ok(150)
    assert v["other"] == "0"
    assert v["final_ok"] == "100" and v["verify_ok"] == "100"
    assert v["final_pub_ok"] == "1"
    last = v["rounds"].encode()
    assert promoted.client().dbsize() > 0
    rc = fresh_cluster.client()
    for i in range(100):
        assert rc.get(f"fo:{i}") == last

    # Then every node goes away: commands fail with EUNAVAIL by their
    # deadline (1 s in this scenario) instead of hanging.
    chk = Check(workdir, "down", *fresh_cluster.seeds)
    chk.wait_line("READY")
    assert "first=ok" in chk.lines
    for n in fresh_cluster.running():
        n.kill()
    v = chk.expect_ok(60)
    assert int(v["failures"]) >= 3


def test_no_reachable_seed_fails_within_deadline(workdir):
    v = run(workdir, "down", dead_addr(), dead_addr(), timeout=60)
    assert v["first"] == "EUNAVAIL"
    assert v["ready"] == "0"
