"""pytest fixtures for inval's integration tests (see harness.py).

Fixtures:
  workdir            a fresh directory per test
  redis_standalone   module-scoped RedisServer
  standalone         the module's RedisServer, running and flushed
  redis_cluster      module-scoped 3 primaries + 3 replicas RedisCluster
  cluster            the module's cluster, healthy and flushed on every primary
  fresh_cluster      a private 3+3 cluster for one test (kill, failover, reshard)
  publisher_factory  publisher_factory(seeds, *extra_args, **kw) -> Daemon
  worker_factory     worker_factory(node_addr, *extra_args, **kw) -> Daemon

Daemons started through the factories are stopped with SIGTERM at the end of
the test; one that does not exit with status 0 fails the test (unless the
test stopped or killed it itself). When a test fails, the tails of the logs
of every process it started are added to the report.
"""

import os
import re
import shutil
import tempfile

import pytest

import harness
from harness import HOST, Daemon, RedisCluster, RedisServer

_session_base = None


def _base_dir():
    """Root of every directory the fixtures make: $INVAL_TEST_RUNDIR/work
    when tests/run.sh runs us, else one temporary directory per session."""
    global _session_base
    if _session_base is None:
        rd = harness.rundir()
        if rd:
            os.makedirs(os.path.join(rd, "work"), exist_ok=True)
            _session_base = tempfile.mkdtemp(prefix="pytest-",
                                             dir=os.path.join(rd, "work"))
        else:
            _session_base = tempfile.mkdtemp(prefix="inval-test-")
    return _session_base


def _safe(name, limit=80):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:limit]


def _track(request, obj):
    """Remembers a process object on the test item for failure reports."""
    node = request.node
    if not hasattr(node, "_inval_procs"):
        node._inval_procs = []
    node._inval_procs.append(obj)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for obj in getattr(item, "_inval_procs", []):
            path = getattr(obj, "log_path", None)
            if path:
                text = harness.tail(path, 60)
                rep.sections.append((f"log {path} (tail)", text or "(empty)"))


def pytest_sessionfinish(session, exitstatus):
    # Keep the directories of a failed run for inspection, remove them
    # otherwise (tests/run.sh removes its whole run directory anyway).
    if _session_base and exitstatus == 0:
        shutil.rmtree(_session_base, ignore_errors=True)


@pytest.fixture
def workdir(request):
    path = os.path.join(_base_dir(), _safe(request.node.nodeid))
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


@pytest.fixture(scope="module")
def _module_dir(request):
    path = os.path.join(_base_dir(), _safe(request.module.__name__) + ".mod")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def redis_standalone(_module_dir):
    server = RedisServer(_module_dir).start()
    yield server
    server.stop()


@pytest.fixture
def standalone(redis_standalone, request):
    """The module's standalone Redis, started again if a previous test
    stopped it, and flushed."""
    if not redis_standalone.alive():
        redis_standalone.start()
    redis_standalone.client().flushall()
    _track(request, redis_standalone)
    return redis_standalone


def _started_cluster(workdir, extra_args=()):
    """A started RedisCluster in workdir, stopped again if starting fails."""
    c = RedisCluster(workdir, extra_args=extra_args)
    try:
        c.start()
    except Exception:
        c.stop()
        raise
    return c


@pytest.fixture(scope="module")
def redis_cluster(_module_dir):
    c = _started_cluster(_module_dir)
    yield c
    c.stop()


@pytest.fixture
def cluster(redis_cluster):
    """The module's cluster: stopped nodes restarted, healthy, flushed."""
    for n in redis_cluster.nodes:
        if not n.alive():
            n.start()
    redis_cluster.wait_ok(60)
    redis_cluster.flushall()
    return redis_cluster


@pytest.fixture
def fresh_cluster(workdir):
    """A private 3+3 cluster for a test that kills, fails over or reshards."""
    c = _started_cluster(workdir)
    yield c
    c.stop()


@pytest.fixture
def partial_cluster(workdir):
    """A private 3+3 cluster whose nodes keep serving the slots they own
    while another node's slots are down (cluster-require-full-coverage no,
    as deploy/redis.conf sets it: with the default, every node answers
    CLUSTERDOWN from a failure's detection to the promotion)."""
    c = _started_cluster(
        workdir, extra_args=("--cluster-require-full-coverage", "no"))
    yield c
    c.stop()


def seed_list(seeds):
    """Normalizes seeds (a "host:port" string, a RedisServer, a RedisCluster
    or a list of those) to a list of "host:port" strings."""
    if isinstance(seeds, (str, RedisServer, RedisCluster)):
        seeds = [seeds]
    out = []
    for s in seeds:
        if isinstance(s, RedisCluster):
            out.extend(s.seeds)
        elif isinstance(s, RedisServer):
            out.append(s.addr)
        else:
            out.append(str(s))
    return out


def _stop_all(daemons):
    """Stops every daemon the test left running; returns failure texts."""
    problems = []
    for d in daemons:
        if d.stopped:
            continue
        code = d.stop()
        if code != 0:
            problems.append(f"{d.name} (pid {d.pid}) exited with {code} at "
                            f"teardown:\n{d.log_tail(30)}")
    return problems


@pytest.fixture
def publisher_factory(workdir, request):
    """publisher_factory(seeds, *extra_args, name=None, port=None,
    metrics=False, env=None, ready_timeout=20, valgrind=None) -> Daemon.

    Starts inval-publisher with --listen 127.0.0.1:<free port> (.port),
    one --redis per seed, --metrics-listen on a free port when metrics is
    true (.metrics_port), then extra_args; waits until the port accepts."""
    started = []

    def factory(seeds, *extra_args, name=None, port=None, metrics=False,
                env=None, ready_timeout=20, valgrind=None):
        port = port or harness.free_port()
        argv = [harness.binary("inval-publisher"), "--listen",
                f"{HOST}:{port}"]
        for s in seed_list(seeds):
            argv += ["--redis", s]
        metrics_port = None
        if metrics:
            metrics_port = harness.free_port()
            argv += ["--metrics-listen", f"{HOST}:{metrics_port}"]
        argv += [str(a) for a in extra_args]
        name = name or f"publisher-{len(started) + 1}"
        d = Daemon(argv, workdir, name, ready_port=port, env=env,
                   ready_timeout=ready_timeout, valgrind=valgrind)
        d.metrics_port = metrics_port
        started.append(d)
        _track(request, d)
        return d

    yield factory
    problems = _stop_all(started)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def worker_factory(workdir, request):
    """worker_factory(node_addr, *extra_args, name=None, port=None,
    metrics=False, env=None, ready_timeout=20, valgrind=None) -> Daemon.

    Starts inval-worker for one Redis node (a "host:port" or RedisServer)
    with --listen on a free port (.port), --metrics-listen on a free port
    when metrics is true (.metrics_port), then extra_args; waits until the
    admin port accepts. A worker keeps no state of its own: its position
    in each log shard lives in the shard's consumer group."""
    started = []
    counts = {}

    def factory(node_addr, *extra_args, name=None, port=None,
                metrics=False, env=None, ready_timeout=20, valgrind=None):
        node = seed_list(node_addr)[0]
        node_port = node.rpartition(":")[2]
        port = port or harness.free_port()
        argv = [harness.binary("inval-worker"), "--redis", node, "--listen",
                f"{HOST}:{port}"]
        metrics_port = None
        if metrics:
            metrics_port = harness.free_port()
            argv += ["--metrics-listen", f"{HOST}:{metrics_port}"]
        argv += [str(a) for a in extra_args]
        if name is None:
            counts[node_port] = counts.get(node_port, 0) + 1
            name = f"worker-{node_port}"
            if counts[node_port] > 1:
                name += f"-{counts[node_port]}"
        d = Daemon(argv, workdir, name, ready_port=port, env=env,
                   ready_timeout=ready_timeout, valgrind=valgrind)
        d.metrics_port = metrics_port
        d.node = node
        started.append(d)
        _track(request, d)
        return d

    yield factory
    problems = _stop_all(started)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
