"""Checks of the deploy/ files against the real programs: redis.conf starts a
cluster node with the documented settings, the example configs name every
directive and pass --check-config, the Prometheus rules only use metrics the
daemons export, cluster.sh and quickstart.sh start, reuse and stop their
stack (and the quickstart's demo deletes its key), and `cmake --install`
yields binaries, units and a client library a program outside the tree can
link."""

import glob
import json
import os
import re
import subprocess

import pytest

import harness
import pubtest
from harness import HOST, Daemon

DEPLOY = os.path.join(harness.REPO_ROOT, "deploy")


def _needs(*names):
    missing = [n for n in names if not harness.have_binary(n)]
    if missing:
        pytest.skip(f"not built: {', '.join(missing)}")


def test_redis_conf_runs_a_cluster_node(workdir):
    port = harness.free_port()
    d = Daemon(["redis-server", os.path.join(DEPLOY, "redis.conf"),
                "--port", port, "--dir", workdir, "--logfile", "",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--daemonize", "no"], workdir, "redis-conf", ready_port=port)
    try:
        c = harness.RedisServer(workdir, port=port).client()
        harness.wait_until(lambda: c.ping(), 10, what="PING")
        cfg = lambda k: c.config_get(k)[k]  # noqa: E731
        assert cfg("cluster-enabled") == "yes"
        assert cfg("appendonly") == "yes"
        assert cfg("notify-keyspace-events") == ""
        assert cfg("maxmemory-policy") == "volatile-lfu"
        limits = cfg("client-output-buffer-limit").split()
        i = limits.index("pubsub")
        assert limits[i + 1:i + 4] == ["268435456", "67108864", "120"]
        assert c.info("cluster")["cluster_enabled"] == 1
    finally:
        assert d.stop() == 0


def _directives(prog):
    """Directive names from the daemon's --help (lines "  --name ...")."""
    out = subprocess.run([harness.binary(prog), "--help"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    names = set(re.findall(r"^\s+--([a-z][a-z0-9-]*)", out, re.M))
    return names - {"config", "check-config", "help", "version"}


def _commented_directives(path, names):
    """(name, value) of every "# name value" or "name value" line whose name
    is a directive (a required directive is shipped set)."""
    found = []
    with open(path) as f:
        for line in f:
            m = re.match(r"^(?:#\s?)?([a-z][a-z0-9-]*)\s+(\S.*)$",
                         line.rstrip())
            if m and m.group(1) in names:
                found.append((m.group(1), m.group(2)))
    return found


@pytest.mark.parametrize("prog,conf", [("inval-publisher", "publisher.conf"),
                                       ("inval-worker", "worker.conf")])
def test_example_config_covers_every_directive(prog, conf, workdir):
    _needs(prog)
    names = _directives(prog)
    assert names, "no directive in --help"
    path = os.path.join(DEPLOY, conf)
    found = _commented_directives(path, names)
    assert {n for n, _ in found} == names
    # Every example value is valid: uncomment them all (TLS files do not
    # exist here) and let the daemon check the file.
    active = os.path.join(workdir, conf)
    with open(active, "w") as f:
        for name, value in found:
            if not name.startswith("tls-"):
                f.write(f"{name} {value}\n")
    res = subprocess.run([harness.binary(prog), "--config", active,
                          "--check-config"], capture_output=True, text=True,
                         timeout=10)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("prog,conf", [("inval-publisher", "publisher.conf"),
                                       ("inval-worker", "worker.conf")])
def test_shipped_config_passes_check_config(prog, conf):
    """Each example config, exactly as shipped, is a valid configuration."""
    _needs(prog)
    res = subprocess.run([harness.binary(prog), "--config",
                          os.path.join(DEPLOY, conf), "--check-config"],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stdout + res.stderr


def _metric_names(port):
    return {n for n in harness.metric_names(port) if n.startswith("inval_")}


def test_prometheus_rules_use_exported_metrics(standalone, publisher_factory,
                                               worker_factory):
    path = os.path.join(DEPLOY, "prometheus", "inval-rules.yml")
    with open(path) as f:
        text = f.read()
    alerts = re.findall(r"^\s+- alert: (\S+)$", text, re.M)
    import yaml  # python3-yaml (tests/run.sh installs it)
    rules = yaml.safe_load(text)
    parsed = [r for g in rules["groups"] for r in g["rules"]]
    exprs = [r["expr"] for r in parsed]
    assert alerts and len(set(alerts)) == len(alerts) == \
        len([r for r in parsed if "alert" in r])
    assert len(re.findall(r"^\s+severity: (warning|critical)$", text,
                          re.M)) == len(alerts)
    assert len(re.findall(r"^\s+summary: ", text, re.M)) == len(alerts)
    assert [r["alert"] for r in parsed if "alert" in r] == alerts
    used = set()
    for e in exprs:
        used |= set(re.findall(r"\b(inval_[a-z0-9_]+)", e))
    assert used
    _needs("inval-publisher", "inval-worker")
    pub = publisher_factory(standalone.addr, metrics=True)
    wrk = worker_factory(standalone, metrics=True)
    exported = set()
    for port in (pub.metrics_port, wrk.metrics_port):
        exported |= harness.wait_until(lambda p=port: _metric_names(p), 10,
                                       what="/metrics")
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def _register_pidfiles(pattern, name, program):
    for path in glob.glob(pattern):
        try:
            with open(path) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        harness.register_pid(pid, name, program)


def _pids(pattern):
    pids = []
    for path in glob.glob(pattern):
        with open(path) as f:
            pids.append(int(f.read().split()[0]))
    return pids


def _run(argv, env=None, timeout=180):
    res = subprocess.run(argv, capture_output=True, text=True,
                         timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return res.returncode, res.stdout + res.stderr


def _base_and_bus_offset():
    """A free range of 6 ports and an offset to another free range above
    it, for the nodes and their cluster bus."""
    for _ in range(20):
        base, bus = harness.free_port_range(6), harness.free_port_range(6)
        if bus > base + 6:
            return base, bus - base
    pytest.skip("no free port range above another one")


def test_cluster_sh_start_reuse_stop(workdir):
    base, offset = _base_and_bus_offset()
    data = os.path.join(workdir, "cluster")
    sh = [os.path.join(DEPLOY, "cluster.sh")]
    opts = ["--dir", data, "--base-port", str(base)]
    try:
        rc, out = _run(sh + ["start"] + opts + ["--bus-offset", str(offset)])
        _register_pidfiles(f"{data}/*/redis.pid", "cluster-sh", "redis-server")
        assert rc == 0, out
        assert "cluster created" in out
        # Each node's cluster bus listens on its port plus the offset.
        c0 = harness.RedisServer(workdir, port=base).client()
        assert c0.config_get("cluster-port")["cluster-port"] == str(
            base + offset)
        assert harness.port_accepts(base + 5 + offset)
        # Starting the same directory with another shape is refused.
        rc, out = _run(sh + ["start", "--dir", data, "--base-port",
                             str(base + 1)])
        assert rc != 0 and "created with BASE=" in out, out
        rc, out = _run(sh + ["status"] + opts)
        assert rc == 0, out
        assert out.count("master") == 3 and out.count("slave") == 3
        pids = _pids(f"{data}/*/redis.pid")
        assert len(pids) == 6
        # A second start reuses the running cluster.
        rc, out = _run(sh + ["start"] + opts)
        assert rc == 0 and "cluster up" in out, out
        assert sorted(_pids(f"{data}/*/redis.pid")) == sorted(pids)
        # stop and status act on the recorded shape, whatever the options
        # say: a wrong --base-port still stops the six nodes.
        rc, out = _run(sh + ["stop", "--dir", data, "--base-port", "7000"])
        assert rc == 0, out
        assert "cluster stopped: 6 nodes" in out, out
        harness.wait_until(lambda: all(harness.pid_gone(p) for p in pids), 10,
                           what="nodes stopped")
        rc, out = _run(sh + ["status", "--dir", data])
        assert rc != 0 and out.count("stopped") == 6, out
        rc, out = _run(sh + ["stop"] + opts)
        assert rc == 0 and "no node was running" in out, out
        # Started again, the nodes rejoin with their saved identities.
        rc, out = _run(sh + ["start"] + opts)
        _register_pidfiles(f"{data}/*/redis.pid", "cluster-sh", "redis-server")
        assert rc == 0 and "cluster up" in out, out
        c = harness.RedisServer(workdir, port=base).client()
        assert c.execute_command("CLUSTER", "INFO").find(
            b"cluster_state:ok") >= 0
    finally:
        _run(sh + ["reset"] + opts)
    assert not os.path.exists(data)


def _exists(port, key):
    """EXISTS key on the cluster whose node listens on port (following
    MOVED), through redis-cli as a user would."""
    res = subprocess.run(["redis-cli", "-c", "-h", HOST, "-p", str(port),
                          "EXISTS", key], capture_output=True, text=True,
                         timeout=10, check=True)
    return int(res.stdout.strip())


def _workers_in_stats(pub_port):
    """(id, role, stale) of every worker in the publisher's stats."""
    res = harness.invalctl("-H", f"{HOST}:{pub_port}", "stats", "--json",
                           check=True)
    return sorted((w["id"], w["role"], w["stale"])
                  for w in json.loads(res.stdout)["workers"])


def test_quickstart_up_reuse_down(workdir):
    _needs("inval-publisher", "inval-worker", "invalctl")
    local = os.path.join(workdir, "local")
    base = harness.free_port_range(6)
    pub_port = harness.free_port()
    env = dict(os.environ,
               INVAL_BASE_PORT=str(base),
               INVAL_PUBLISHER_PORT=str(pub_port),
               INVAL_PUBLISHER_METRICS_PORT=str(harness.free_port()),
               INVAL_WORKER_BASE_PORT=str(harness.free_port_range(6)),
               INVAL_WORKER_METRICS_BASE_PORT=str(harness.free_port_range(6)),
               INVAL_LOCAL_DIR=local,
               INVAL_QUICKSTART_BUILD=harness.build_dir())
    qs = [os.path.join(DEPLOY, "quickstart.sh")]
    demo_key, bystander = "quickstart:user:42", "quickstart:user:43"
    nodes = [str(p) for p in range(base, base + 6)]

    def register():
        _register_pidfiles(f"{local}/cluster/*/redis.pid", "quickstart",
                           "redis-server")
        _register_pidfiles(f"{local}/run/publisher.pid", "quickstart",
                           "inval-publisher")
        _register_pidfiles(f"{local}/run/worker-*.pid", "quickstart",
                           "inval-worker")

    def all_pids():
        return sorted(_pids(f"{local}/run/*.pid") +
                      _pids(f"{local}/cluster/*/redis.pid"))

    try:
        rc, out = _run(qs + ["up", "--no-build"], env)
        register()
        assert rc == 0, out
        assert "cluster created" in out, out
        assert "started publisher" in out, out
        assert sorted(re.findall(r"started worker-(\d+) ", out)) == nodes, out
        # The demo: the key existed, was invalidated, and is gone.
        assert "the key is gone" in out, out
        assert _exists(base, demo_key) == 0
        # The stats printed list all six workers with their roles, and the
        # publisher's stats agree: three primaries, three standbys, fresh.
        table = out[out.index("workers (6):"):]
        assert len(re.findall(r"^  \S+ +\S+ +primary .* ok \(", table,
                              re.M)) == 3, out
        assert len(re.findall(r"^  \S+ +\S+ +replica .* ok \(", table,
                              re.M)) == 3, out
        workers = _workers_in_stats(pub_port)
        assert [w[0] for w in workers] == [f"{HOST}:{p}" for p in nodes]
        assert sorted(w[1] for w in workers) == ["primary"] * 3 + [
            "replica"] * 3
        assert not any(w[2] for w in workers)
        assert "Stop everything" in out and "quickstart.sh down" in out
        rc, out = _run(qs + ["status"], env)
        assert rc == 0, out
        pids = all_pids()
        assert len(pids) == 13  # 6 nodes, 6 workers, the publisher
        # A second up reuses the healthy stack: same processes, and its
        # demo deletes the demo key again but not a key it does not name.
        subprocess.run(["redis-cli", "-c", "-h", HOST, "-p", str(base), "SET",
                        bystander, "x"], check=True, capture_output=True,
                       timeout=10)
        rc, out = _run(qs + ["up", "--no-build"], env)
        assert rc == 0, out
        assert "cluster up" in out, out
        assert "publisher already running" in out, out
        assert out.count("already running") == 7, out
        assert "the key is gone" in out, out
        assert all_pids() == pids
        assert _exists(base, demo_key) == 0
        assert _exists(base, bystander) == 1
        # down and status need no port variables: they act on what up
        # recorded, so a shell without up's environment stops it all.
        bare = {k: v for k, v in env.items()
                if k not in ("INVAL_BASE_PORT", "INVAL_PUBLISHER_PORT",
                             "INVAL_PUBLISHER_METRICS_PORT",
                             "INVAL_WORKER_BASE_PORT",
                             "INVAL_WORKER_METRICS_BASE_PORT")}
        rc, out = _run(qs + ["status"], bare)
        assert rc == 0, out
        rc, out = _run(qs + ["down"], bare)
        assert rc == 0, out
        assert len(re.findall(r"stopped worker-\d+ ", out)) == 6, out
        assert "stopped publisher" in out and "cluster stopped: 6 nodes" in out
        assert "nothing of the stack runs any more" in out, out
        harness.wait_until(lambda: all(harness.pid_gone(p) for p in pids), 30,
                           what="stack stopped")
        assert not glob.glob(f"{local}/run/*.pid")
        assert not any(harness.port_accepts(int(p)) for p in nodes)
        assert not harness.port_accepts(pub_port)
        rc, out = _run(qs + ["status"], bare)
        assert rc != 0 and out.count("stopped") == 13, out
        # A second down finds nothing to stop and says so, without claiming
        # to have stopped anything.
        rc, out = _run(qs + ["down"], bare)
        assert rc == 0 and "stopped " not in out.replace(
            "cluster: no node was running", ""), out
    finally:
        _run(qs + ["reset"], env)
    assert not os.path.exists(local)


_CLIENT_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <inval/client.h>
#include <inval/errors.h>

int main(int argc, char **argv) {
  inv_client_t *c = NULL;
  char err[256];
  inv_event_t ev = {INV_KIND_KEY, INV_MODE_HARD, "installed:key", 13};
  inv_client_ack_t ack;
  int rc = inv_client_connect("127.0.0.1", atoi(argv[argc - 1]), NULL, &c,
                              err, sizeof(err));
  if (rc < 0) {
    printf("%s: %s\n", inv_err_name(rc), err);
    return 1;
  }
  rc = inv_client_invalidate(c, &ev, 1, &ack);
  if (rc < 0)
    printf("%s: %s\n", inv_err_name(rc), inv_client_errstr(c));
  else
    printf("acked %llu in %zu shard entry, shard %u\n",
           (unsigned long long)ack.accepted, ack.nids,
           ack.nids > 0 ? ack.ids[0].shard : 99u);
  inv_client_close(c);
  return rc < 0;
}
"""


def test_cmake_install_then_link_the_client(workdir, standalone,
                                            publisher_factory):
    _needs("inval-publisher", "inval-worker", "invalctl")
    prefix = os.path.join(workdir, "prefix")
    rc, out = _run(["cmake", "--install", harness.build_dir(), "--prefix",
                    prefix], timeout=120)
    assert rc == 0, out
    for path in ["bin/inval-publisher", "bin/inval-worker", "bin/invalctl",
                 "lib/libinval_client.a", "lib/libinval_client.so",
                 "include/inval/client.h", "include/inval/event.h",
                 "include/inval/errors.h",
                 "share/inval/publisher.conf", "share/inval/worker.conf",
                 "share/inval/redis.conf",
                 "share/inval/prometheus/inval-rules.yml"]:
        assert os.path.isfile(os.path.join(prefix, path)), path
    # The installed units start the installed binaries.
    for unit, prog in [("inval-publisher.service", "inval-publisher"),
                       ("inval-worker@.service", "inval-worker")]:
        with open(os.path.join(prefix, "lib/systemd/system", unit)) as f:
            starts = re.findall(r"^ExecStart\S*=(\S+)", f.read(), re.M)
        assert starts == [os.path.join(prefix, "bin", prog)] * 2, starts
    res = subprocess.run([os.path.join(prefix, "bin", "invalctl"),
                          "--version"], capture_output=True, text=True,
                         timeout=10)
    assert res.returncode == 0 and "invalctl" in res.stdout
    # A program outside the tree compiles and links with the installed
    # headers and libraries (flags from the installed pkg-config file) and
    # gets an ack from a real publisher.
    src = os.path.join(workdir, "client.c")
    with open(src, "w") as f:
        f.write(_CLIENT_PROGRAM)
    env = dict(os.environ,
               PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs",
                            "inval-client"], capture_output=True, text=True,
                           env=env, timeout=10, check=True).stdout.split()
    with open(os.path.join(harness.build_dir(), "CMakeCache.txt")) as f:
        if re.search(r"^INV_SANITIZE:BOOL=ON$", f.read(), re.M):
            flags.append("-fsanitize=address,undefined")
    exe = os.path.join(workdir, "client")
    rc, out = _run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", src,
                    "-o", exe] + flags, timeout=120)
    assert rc == 0, out
    pub = publisher_factory(standalone.addr)
    rc, out = _run([exe, str(pub.port)], timeout=30,
                   env=dict(os.environ,
                            LD_LIBRARY_PATH=os.path.join(prefix, "lib")))
    # Standalone, the one event is logged in shard 0.
    assert rc == 0 and out.strip() == "acked 1 in 1 shard entry, shard 0", out
    assert standalone.client().xlen(pubtest.shard_key(0)) == 1
