"""Shared plumbing of the benchmark scenarios (tests/bench/run.sh).

Each scenario gets its own Env: a loopback Redis Cluster of 3 primaries and
3 replicas (or a standalone server), one inval-publisher and one
inval-worker per Redis node, all started through the integration tests'
harness (tests/integration/harness.py) so that every process is stopped
when the scenario ends, however it ends. Measurements are taken with the
real programs only: invalctl bench, redis-benchmark, redis-cli, redis-py.
"""

import json
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402
import workerlib  # noqa: E402
from harness import HOST, Daemon, RedisCluster, RedisServer  # noqa: E402

PYTHON = "/usr/bin/python3"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(values):
    return statistics.median(values) if values else float("nan")


def medians(runs):
    """The median of each column of runs (equal-length tuples), as a
    tuple: the figure of several runs of a multi-figure measurement."""
    return tuple(median(col) for col in zip(*runs))


def builds(ctx):
    """(label, build tree) of the builds a before/after scenario runs in
    turn: this tree, and the one before the change when run.sh was given
    --before-build."""
    out = [("this build", None)]
    if ctx.before:
        out.append(("before", ctx.before))
    return out


def cmdline(argv):
    """A shell-quoted command line, with build paths shortened to their
    program name and other paths of the tree made relative to its root, so
    that BENCHMARKS.md shows what a user would type in any checkout."""
    short = []
    for a in argv:
        a = str(a)
        if a.startswith(harness.build_dir()):
            a = os.path.basename(a)
        elif a.startswith(harness.REPO_ROOT + os.sep):
            a = os.path.relpath(a, harness.REPO_ROOT)
        short.append(a)
    return " ".join(shlex.quote(a) for a in short)


def run(argv, timeout=600, check=True, input=None):
    """Runs argv; returns (CompletedProcess, seconds)."""
    t0 = time.monotonic()
    res = subprocess.run([str(a) for a in argv], capture_output=True,
                         text=True, timeout=timeout, input=input)
    dt = time.monotonic() - t0
    if check and res.returncode != 0:
        raise RuntimeError(f"{cmdline(argv)} exited with {res.returncode}:\n"
                           f"{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return res, dt


def machine_busy():
    """(busy, total) jiffies of all CPUs so far, from /proc/stat; the busy
    share between two readings is how loaded the machine was."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + vals[4]  # idle + iowait
    return sum(vals) - idle, sum(vals)


def busy_share(before, after):
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def _status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_rss_kb(pid):
    """VmHWM (peak resident set) of a running process, in KiB."""
    return _status_kb(pid, "VmHWM")


def rss_kb(pid):
    """VmRSS (resident set now) of a running process, in KiB."""
    return _status_kb(pid, "VmRSS")


def cpu_seconds(pid):
    """User + system CPU time a process has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_binary(build, name):
    """The path of program name in build tree build (None: the tree under
    test, $INVAL_BUILD_DIR)."""
    if build is None:
        return harness.binary(name)
    return os.path.join(build, harness._BINARY_PATHS[name])


def legacy_worker(build):
    """True when build's worker is the central log's (it keeps a position
    file and takes --state-dir); the sharded log's worker has no such
    option."""
    res = subprocess.run([build_binary(build, "inval-worker"), "--help"],
                         capture_output=True, text=True, timeout=30)
    return "state-dir" in res.stdout + res.stderr


class Env:
    """A Redis deployment plus inval on it. cluster=True: primaries
    primaries with one replica each (3+3 by default); redis_args go to every
    redis-server. build names the build tree of the inval programs (None:
    $INVAL_BUILD_DIR), so that one cluster can run another build's programs
    in turn (use_build)."""

    def __init__(self, workdir, cluster=True, workers=True,
                 publisher_args=(), worker_args=(), primaries=3,
                 redis_args=(), build=None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.cluster = cluster
        self.nprimaries = primaries
        if cluster:
            self.redis = RedisCluster(workdir, primaries=primaries,
                                      extra_args=redis_args)
        else:
            self.redis = RedisServer(workdir, extra_args=redis_args)
        self.build = build
        self.topo = workerlib.Topo(self.redis)
        self.publisher = None
        self.workers = []
        self.want_workers = workers
        self.publisher_args = list(publisher_args)
        self.worker_args = list(worker_args)

    def __enter__(self):
        n = self.nprimaries
        log(f"starting {f'{n}+{n} cluster' if self.cluster else 'standalone'} "
            f"Redis in {self.workdir}")
        self.redis.start()
        self.start_publisher()
        if self.want_workers:
            self.start_workers()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def seeds(self):
        return self.topo.seeds

    def start_publisher(self):
        port = harness.free_port()
        argv = [build_binary(self.build, "inval-publisher"), "--listen",
                f"{HOST}:{port}", "--log-level", "warn"]
        for s in self.seeds:
            argv += ["--redis", s]
        argv += self.publisher_args
        self.publisher = Daemon(argv, self.workdir, "publisher",
                                ready_port=port, valgrind=False)
        return self.publisher

    def start_workers(self):
        legacy = legacy_worker(self.build)
        for n in self.topo.nodes():
            port = harness.free_port()
            argv = [build_binary(self.build, "inval-worker"), "--redis",
                    n.addr, "--listen", f"{HOST}:{port}", "--log-level",
                    "warn"] + self.worker_args
            if legacy:
                state = os.path.join(self.workdir, f"worker-{n.port}")
                os.makedirs(state, exist_ok=True)
                argv += ["--state-dir", state]
            d = Daemon(argv, self.workdir, f"worker-{n.port}",
                       ready_port=port, valgrind=False)
            d.node = n.addr
            self.workers.append(d)
        workerlib.wait_workers_live(self.topo, self.workers, timeout=60)
        # The heartbeat record appears a moment after a worker is live;
        # scenarios that count keys with DBSIZE need it there first.
        workerlib.poll(lambda: len(workerlib.heartbeats(self.topo)) >=
                       len(self.workers), 30, "every worker's heartbeat")

    def primary_workers(self):
        """Workers whose node is a primary, with their node."""
        prim = {n.addr: n for n in self.topo.primaries()}
        return [(w, prim[w.node]) for w in self.workers if w.node in prim]

    def stop_inval(self):
        """Stops the publisher and the workers (Redis keeps running)."""
        for d in self.workers + ([self.publisher] if self.publisher else []):
            if d.alive():
                d.stop()
        self.workers = []
        self.publisher = None

    def use_build(self, build, publisher_args=None):
        """Replaces the publisher (and the workers, when this Env has them)
        with those of build tree build (None: the tree under test)."""
        self.stop_inval()
        self.build = build
        if publisher_args is not None:
            self.publisher_args = list(publisher_args)
        self.start_publisher()
        if self.want_workers:
            self.start_workers()

    def stop(self):
        self.stop_inval()
        self.redis.stop()

    def flush(self):
        for p in self.topo.primaries():
            p.client(timeout=60).flushall()

    def bench(self, *args, timeout=600):
        """Runs invalctl bench against the publisher with --json; returns
        (parsed figures, argv)."""
        argv = [harness.binary("invalctl"), "bench", "-H",
                f"{HOST}:{self.publisher.port}", *map(str, args), "--json"]
        res, _ = run(argv, timeout=timeout, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{cmdline(argv)} exited with "
                               f"{res.returncode}:\n{res.stdout[-2000:]}\n"
                               f"{res.stderr[-2000:]}")
        return json.loads(res.stdout), argv


# --------------------------------------------------------------------------
# Keys: bulk loading and watching them go.

def group_by_owner(env, keys):
    """{primary RedisServer: [key, ...]} by slot owner."""
    owners = env.topo.owners()
    out = {}
    for k in keys:
        out.setdefault(owners[workerlib.key_slot(k)], []).append(k)
    return out


def _resp_sets(keys, value=b"v"):
    parts = []
    vhead = b"$%d\r\n%s\r\n" % (len(value), value)
    for k in keys:
        kb = k.encode() if isinstance(k, str) else k
        parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s" % (len(kb), kb,
                                                             vhead))
    return b"".join(parts)


def load_keys(env, keys, value=b"v"):
    """SETs keys on their owning primaries with redis-cli --pipe, one
    process per primary, in parallel. Returns {primary: count}."""
    groups = group_by_owner(env, keys)
    procs = []
    for node, ks in groups.items():
        p = subprocess.Popen(["redis-cli", "-h", HOST, "-p", str(node.port),
                              "--pipe"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append((node, p, _resp_sets(ks, value)))
    for node, p, data in procs:
        out, err = p.communicate(data, timeout=600)
        if p.returncode != 0 or b"errors: 0" not in out:
            raise RuntimeError(f"loading keys on {node.addr} failed: "
                               f"{out[-500:]!r} {err[-500:]!r}")
    return {node: len(ks) for node, ks in groups.items()}


def dbsizes(nodes):
    return {n: n.client(timeout=60).dbsize() for n in nodes}


def wait_dbsize(nodes, expected, t0, timeout=600, interval=0.002):
    """Polls DBSIZE on nodes until each equals expected[node]; returns the
    seconds since t0 (time.monotonic()) at which the last one got there."""
    clients = {n: n.client(timeout=60) for n in nodes}
    left = set(nodes)
    done_at = t0
    deadline = time.monotonic() + timeout
    while left:
        for n in list(left):
            if clients[n].dbsize() <= expected[n]:
                left.discard(n)
                done_at = time.monotonic()
        if not left:
            break
        if time.monotonic() > deadline:
            got = {n.addr: clients[n].dbsize() for n in left}
            want = {n.addr: expected[n] for n in left}
            raise RuntimeError(f"keys not gone in {timeout}s: DBSIZE {got}, "
                               f"want {want}")
        time.sleep(interval)
    return done_at - t0


def invalidate(env, events, timeout=60):
    """Sends one invalidate request through the publisher's protocol (no
    process start in the timing); returns (t0, ack id)."""
    with harness.RpcClient(HOST, env.publisher.port, timeout=timeout) as c:
        c.call("ping")
        t0 = time.monotonic()
        res = harness.rpc_ok(c, "invalidate", events)
    return t0, res["id"]


def warm_up(env):
    """Sends one request with an exact key in every log shard (64 in a
    cluster), so that every shard stream and the workers' heartbeats exist
    before a scenario counts keys with DBSIZE: a stream created during the
    measurement would count as a key. Exact keys, not a pattern, so that
    no worker starts a SCAN that would overlap the measurement."""
    seen, events, i = set(), [], 0
    while len(seen) < workerlib.SHARDS:
        k = f"warm-up:{i}"
        shard = workerlib.key_slot(k) // workerlib.SHARD_SLOTS
        if shard not in seen:
            seen.add(shard)
            events.append({"kind": "key", "target": k})
        i += 1
    invalidate(env, events)


def tag_on(env, node):
    """A short hash tag whose slot node owns."""
    owners = env.topo.owners()
    i = 0
    while True:
        t = f"t{i}"
        if owners[workerlib.key_slot(t)].port == node.port:
            return t
        i += 1
