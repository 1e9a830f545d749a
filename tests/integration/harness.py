"""Process harness for inval's integration tests.

Everything here starts real processes on 127.0.0.1: throwaway redis-server
instances (standalone or a Redis Cluster), the inval daemons, and a small
MessagePack-RPC client to talk to them. Every wait has a timeout, so a test
can fail but never hang, and every process the harness starts is stopped at
interpreter exit (atexit) and, if the Python process dies first, by the
kernel (PR_SET_PDEATHSIG) or by tests/run.sh from the PID files written under
$INVAL_TEST_RUNDIR/pids.

Public API (the tests and the benchmarks depend on it: helpers may be
added, none removed): free_port, build_dir, binary, RedisServer,
RedisCluster, Daemon, RpcClient, plus key_slot, invalctl, wait_until,
pid_gone, reap.
"""

import atexit
import ctypes
import os
import re
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
import threading
import time

import msgpack
import redis

HOST = "127.0.0.1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# The Python package of the tree (proto/python/inval) is where key slots
# are computed: tests use its CRC16, not a copy of their own.
sys.path.insert(0, os.path.join(REPO_ROOT, "proto", "python"))
from inval.keys import NUM_SLOTS, key_slot  # noqa: E402

# Every process the harness started and has not reaped yet, for atexit.
_live = []
_live_lock = threading.Lock()


class HarnessError(RuntimeError):
    """A process did not start, or a condition was not met in time."""


# --------------------------------------------------------------------------
# Small utilities.

def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns a true value, which is returned.

    Exceptions raised by predicate count as "not yet" (a server that is still
    starting refuses connections), except HarnessError, which predicate
    raises to give up at once (the process it waits for exited). Raises HarnessError after timeout seconds,
    naming what was awaited and the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except HarnessError:
            raise  # a definite failure (the process exited): stop waiting
        except Exception as exc:  # noqa: BLE001 - any failure means "retry"
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise HarnessError(f"timed out after {timeout}s waiting for "
                               f"{what}{detail}")
        time.sleep(interval)


def tail(path, lines=40):
    """Returns the last lines of a text file ("" when it does not exist)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def port_accepts(port, host=HOST, timeout=0.5):
    """True when a TCP connection to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def rundir():
    """$INVAL_TEST_RUNDIR, or None when tests run outside tests/run.sh."""
    d = os.environ.get("INVAL_TEST_RUNDIR")
    return d or None


# --------------------------------------------------------------------------
# Ports.
#
# Ports are drawn from below the kernel's ephemeral range, with the cluster
# bus port (port + 10000) also below it: an outgoing connection from any
# process on the machine can then never steal a port between the moment we
# pick it and the moment the server binds it. A process-wide set stops this
# process from handing a port out twice, and a reservation file (O_EXCL,
# holding our PID) stops concurrent test processes (ctest -j2, other users
# of the machine) from picking the same one. When that range is too small,
# the kernel picks (bind to port 0).

_used_ports = set()
_port_lock = threading.Lock()
_reserved_files = []
_RESERVE_DIR = os.path.join("/tmp", f"inval-test-ports-{os.getuid()}")


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
            return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _can_bind(port):
    if port <= 0 or port > 65535:
        return False
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def reap(popen):
    """Ends a subprocess.Popen a test started itself: kills it if it still
    runs, then waits for it and closes its pipes. Returns its exit code."""
    if popen.poll() is None:
        popen.kill()
        popen.communicate()
    return popen.returncode


def pid_gone(pid):
    """True when process pid has exited: no such process, or a zombie that
    its parent has yet to reap (it runs no more and holds nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: it exists
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _reserve(port):
    """Claims port across processes. False when another live process has."""
    try:
        os.makedirs(_RESERVE_DIR, exist_ok=True)
    except OSError:
        return True  # no shared directory: the per-process set must do
    path = os.path.join(_RESERVE_DIR, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    owner = int(f.read().strip() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and not pid_gone(owner):
                return False
            if owner == os.getpid():
                return False  # ours already: handed out before
            try:
                os.unlink(path)  # stale: its owner is gone
            except OSError:
                return False
            continue
        except OSError:
            return True
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        _reserved_files.append(path)
        return True
    return False


def _release_reservations():
    for path in _reserved_files:
        try:
            os.unlink(path)
        except OSError:
            pass
    _reserved_files.clear()


def free_port():
    """Returns a loopback TCP port that is free now, never returned before
    by this process, with port + 10000 free too (for a cluster bus)."""
    lo, _ = _ephemeral_range()
    first, last = 15000, lo - 10001
    with _port_lock:
        if last - first >= 1000:
            for _ in range(2000):
                port = random.randint(first, last)
                if port in _used_ports:
                    continue
                if not (_can_bind(port) and _can_bind(port + 10000)):
                    continue
                if not _reserve(port):
                    continue
                _used_ports.add(port)
                return port
        for _ in range(2000):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port in _used_ports or port + 10000 > 65535:
                continue
            if not _can_bind(port + 10000) or not _reserve(port):
                continue
            _used_ports.add(port)
            return port
    raise HarnessError("no free port found")


def free_port_range(count):
    """Returns the first of count consecutive free ports (each with its
    port + 10000 free too), for tools that take a base port such as
    deploy/cluster.sh and deploy/quickstart.sh."""
    lo, _ = _ephemeral_range()
    first, last = 15000, lo - 10001 - count
    with _port_lock:
        for _ in range(2000):
            base = random.randint(first, max(first, last))
            ports = range(base, base + count)
            if any(p in _used_ports for p in ports):
                continue
            if not all(_can_bind(p) and _can_bind(p + 10000) for p in ports):
                continue
            taken = []
            for p in ports:
                if not _reserve(p):
                    break
                taken.append(p)
            if len(taken) < count:
                continue  # the reservations made stay unused: harmless
            _used_ports.update(ports)
            return base
    raise HarnessError(f"no {count} consecutive free ports found")


def register_pid(pid, name, program):
    """Records a process the harness did not start itself (a daemonized
    redis-server, say) under $INVAL_TEST_RUNDIR/pids, so that tests/run.sh
    stops it if the test does not. Returns the PID file path or None."""
    d = rundir()
    if not d:
        return None
    piddir = os.path.join(d, "pids")
    os.makedirs(piddir, exist_ok=True)
    path = os.path.join(piddir, f"{name}-{pid}.pid")
    with open(path, "w") as f:
        f.write(f"{pid}\n{program}\n")
    return path


# --------------------------------------------------------------------------
# Binaries.

def scrape(port):
    """The text of GET /metrics on 127.0.0.1:port."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics",
                                timeout=5) as r:
        return r.read().decode()


def metric_names(port):
    """The names of every sample on 127.0.0.1:port's /metrics."""
    return set(re.findall(r"^([a-z_:][a-z0-9_:]*)", scrape(port), re.M))


def build_dir():
    """The build tree holding the binaries: $INVAL_BUILD_DIR or <repo>/build."""
    return os.environ.get("INVAL_BUILD_DIR") or os.path.join(REPO_ROOT,
                                                             "build")


def sanitized_build():
    """True when the build under test uses ASan (valgrind cannot run it)."""
    cache = os.path.join(build_dir(), "CMakeCache.txt")
    try:
        with open(cache) as f:
            return "INV_SANITIZE:BOOL=ON" in f.read()
    except OSError:
        return False


_BINARY_PATHS = {
    "inval-publisher": "service/inval-publisher",
    "inval-worker": "workers/inval-worker",
    "invalctl": "proto/invalctl",
}


def binary(name):
    """Path of a built program (inval-publisher, inval-worker, invalctl, or
    any other executable in the build tree). Raises FileNotFoundError."""
    root = build_dir()
    candidates = []
    if name in _BINARY_PATHS:
        candidates.append(os.path.join(root, _BINARY_PATHS[name]))
    candidates.append(os.path.join(root, name))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "CMakeFiles"]
        if name in filenames:
            path = os.path.join(dirpath, name)
            if os.access(path, os.X_OK):
                return path
    raise FileNotFoundError(f"{name} is not built in {root} "
                            "(set INVAL_BUILD_DIR to the build directory)")


def have_binary(name):
    """True when binary(name) would find the program."""
    try:
        binary(name)
        return True
    except FileNotFoundError:
        return False


def invalctl(*args, timeout=30, check=False, input=None):
    """Runs build/proto/invalctl with args; returns a CompletedProcess with
    text stdout and stderr. Raises subprocess.TimeoutExpired after timeout,
    CalledProcessError when check is true and it exits non-zero."""
    return subprocess.run([binary("invalctl"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          check=check, input=input)


# --------------------------------------------------------------------------
# Process plumbing shared by RedisServer and Daemon.

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None


def _child_setup():
    # Runs in the child between fork and exec: if the test process dies
    # (killed by ctest's timeout, say), the kernel kills the child too.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Proc:
    """One child process with a log file and a PID file."""

    def __init__(self, argv, log_path, name, cwd=None, env=None):
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.name = name
        self.pidfile = None
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        full_env = dict(os.environ)
        if env:
            full_env.update({k: str(v) for k, v in env.items()})
        logf = open(log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, cwd=cwd, env=full_env,
                preexec_fn=_child_setup, close_fds=True)
        finally:
            logf.close()
        self.pid = self.popen.pid
        with _live_lock:
            _live.append(self)
        self._write_pidfile()

    def _write_pidfile(self):
        d = rundir()
        if not d:
            return
        piddir = os.path.join(d, "pids")
        try:
            os.makedirs(piddir, exist_ok=True)
            path = os.path.join(piddir, f"{self.name}-{self.pid}.pid")
            # Line 1: the PID; line 2: the program name, which tests/run.sh
            # checks against /proc/PID/cmdline so a recycled PID is spared.
            with open(path, "w") as f:
                f.write(f"{self.pid}\n{os.path.basename(self.argv[0])}\n")
            self.pidfile = path
        except OSError:
            self.pidfile = None

    def _reaped(self):
        with _live_lock:
            if self in _live:
                _live.remove(self)
        if self.pidfile:
            try:
                os.unlink(self.pidfile)
            except OSError:
                pass
            self.pidfile = None

    def alive(self):
        return self.popen.poll() is None

    def returncode(self):
        return self.popen.poll()

    def wait(self, timeout):
        """Exit code, or None when still running after timeout seconds."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reaped()
        return code

    def signal(self, sig):
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def terminate(self, timeout):
        """SIGTERM, then SIGKILL after timeout. Returns the exit code
        (negative signal number when killed by a signal)."""
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.signal(signal.SIGKILL)
            code = self.wait(10)
        return code

    def kill(self):
        self.signal(signal.SIGKILL)
        return self.wait(10)


def _cleanup_all():
    with _live_lock:
        procs = list(_live)
    for p in procs:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    for p in procs:
        if p.wait(max(0.0, deadline - time.monotonic())) is None:
            p.kill()
    _release_reservations()


atexit.register(_cleanup_all)


# --------------------------------------------------------------------------
# Redis.

def _redis_client(port, timeout=5.0, tls=None):
    extra = tls.client_kwargs() if tls is not None else {}
    return redis.Redis(host=HOST, port=port, decode_responses=False,
                       socket_timeout=timeout, socket_connect_timeout=timeout,
                       **extra)


class RedisTls:
    """The files of a TLS setup for redis-server: a CA, a server certificate
    and key (for 127.0.0.1 and localhost), and a client certificate and key
    that the CA signed (for tls-auth-clients yes). Made by the test (see
    test_redis_tls_acl.py); the harness only passes them on."""

    def __init__(self, ca, cert, key, client_cert=None, client_key=None,
                 auth_clients="optional"):
        self.ca, self.cert, self.key = ca, cert, key
        self.client_cert, self.client_key = client_cert, client_key
        self.auth_clients = auth_clients

    def server_args(self, port, cluster=False):
        args = ["--port", "0", "--tls-port", str(port),
                "--tls-cert-file", self.cert, "--tls-key-file", self.key,
                "--tls-ca-cert-file", self.ca,
                "--tls-auth-clients", self.auth_clients,
                "--tls-replication", "yes"]
        if cluster:
            args += ["--tls-cluster", "yes"]
        return args

    def client_kwargs(self):
        kw = {"ssl": True, "ssl_ca_certs": self.ca}
        if self.client_cert:
            kw.update(ssl_certfile=self.client_cert,
                      ssl_keyfile=self.client_key)
        return kw

    def cli_args(self):
        args = ["--tls", "--cacert", self.ca]
        if self.client_cert:
            args += ["--cert", self.client_cert, "--key", self.client_key]
        return args


class RedisServer:
    """One throwaway redis-server on 127.0.0.1 (no persistence).

    Data and the log live in workdir/redis-PORT. With cluster=True the node
    runs in cluster mode with its nodes-PORT.conf in that directory, so a
    restart keeps its cluster identity.
    """

    def __init__(self, workdir, port=None, cluster=False, extra_args=(),
                 tls=None):
        self.workdir = workdir
        self.port = port or free_port()
        self.cluster = cluster
        self.tls = tls  # a RedisTls: the port speaks TLS only
        self.extra_args = [str(a) for a in extra_args]
        self.dir = os.path.join(workdir, f"redis-{self.port}")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = None
        self._client = None

    def __repr__(self):
        return f"RedisServer({self.addr})"

    @property
    def addr(self):
        return f"{HOST}:{self.port}"

    def argv(self):
        args = [shutil.which("redis-server") or "redis-server",
                "--port", str(self.port), "--bind", HOST,
                "--dir", self.dir, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--protected-mode", "no",
                "--logfile", "",
                # Replicas sync at once instead of after the 5 s default
                # delay for diskless replication.
                "--repl-diskless-sync-delay", "0"]
        if self.tls is not None:
            args += self.tls.server_args(self.port, self.cluster)
        if self.cluster:
            args += ["--cluster-enabled", "yes",
                     "--cluster-config-file", f"nodes-{self.port}.conf",
                     "--cluster-node-timeout", "2000",
                     # A replica may always take over, however long it was
                     # disconnected: tests kill primaries on purpose.
                     "--cluster-replica-validity-factor", "0",
                     # A primary pings its replicas every second rather
                     # than every 10 s: the ping moves the replication
                     # offset, and CLUSTER SLOTS lists a replica only once
                     # its offset is not 0 (a fresh cluster has no writes).
                     "--repl-ping-replica-period", "1"]
        return args + self.extra_args

    def start(self, timeout=15):
        """Starts the server and waits until it answers PING. Raises
        HarnessError (with the log's tail) when it exits or stays silent."""
        if self.proc is not None and self.proc.alive():
            return self
        os.makedirs(self.dir, exist_ok=True)
        self._client = None
        self.proc = _Proc(self.argv(), self.log_path,
                          f"redis-{self.port}", cwd=self.dir)

        def ready():
            if not self.proc.alive():
                raise HarnessError(
                    f"redis-server on {self.port} exited with "
                    f"{self.proc.returncode()}:\n{tail(self.log_path)}")
            return _redis_client(self.port, 1.0, self.tls).ping()

        try:
            wait_until(ready, timeout, what=f"redis-server {self.addr}")
        except HarnessError:
            self.proc.kill()
            raise
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def stop(self, timeout=10):
        """SIGTERM (SIGKILL after timeout); returns the exit code or None
        when it was not running."""
        if self.proc is None:
            return None
        code = self.proc.terminate(timeout)
        self._client = None
        return code

    def kill(self):
        """SIGKILL, as a crash would; returns once the process is gone."""
        if self.proc is None:
            return None
        code = self.proc.kill()
        self._client = None
        return code

    def restart(self, timeout=15):
        self.stop()
        return self.start(timeout)

    def client(self, timeout=5.0):
        """A redis.Redis to this node (bytes replies, timeouts set)."""
        if self._client is None:
            self._client = _redis_client(self.port, timeout, self.tls)
        return self._client

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # Cluster and replication introspection (raw replies, parsed here).

    def info(self, section=None):
        args = ["INFO"] + ([section] if section else [])
        return self.client().execute_command(*args)

    def role(self):
        """b"master" or b"slave" (ROLE's first element) as a str."""
        reply = self.client().execute_command("ROLE")
        return reply[0].decode()

    def cluster_info(self):
        raw = self.client().execute_command("CLUSTER", "INFO")
        if isinstance(raw, bytes):
            raw = raw.decode()
        out = {}
        for line in raw.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                out[k.strip()] = v.strip()
        return out

    def cluster_nodes(self):
        """CLUSTER NODES as a list of dicts: id, addr, port, flags (set),
        master (id or None), slots (list of (lo, hi))."""
        raw = self.client().execute_command("CLUSTER", "NODES")
        if isinstance(raw, bytes):
            raw = raw.decode()
        nodes = []
        for line in raw.splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            addr = parts[1].split("@")[0]
            host, _, port = addr.rpartition(":")
            slots = []
            for s in parts[8:]:
                if s.startswith("["):
                    continue  # a slot being migrated or imported
                lo, _, hi = s.partition("-")
                slots.append((int(lo), int(hi or lo)))
            nodes.append({
                "id": parts[0], "addr": addr, "host": host,
                "port": int(port) if port.isdigit() else 0,
                "flags": set(parts[2].split(",")),
                "master": None if parts[3] == "-" else parts[3],
                "link": parts[7], "slots": slots})
        return nodes

    def node_id(self):
        return self.client().execute_command("CLUSTER", "MYID").decode()

    def slot_replicas(self):
        """CLUSTER SLOTS as {primary port: set of the replica ports listed
        with its slots}. Redis lists a replica only once it is not failed
        and has heard of its replication offset (7.0's isReplicaAvailable),
        which a fresh replica may not have yet."""
        out = {}
        for entry in self.client().execute_command("CLUSTER", "SLOTS"):
            out.setdefault(int(entry[2][1]), set()).update(
                int(r[1]) for r in entry[3:])
        return out

    def slot_owners(self):
        """CLUSTER SLOTS as a list of NUM_SLOTS primary ports (0: unowned)."""
        owners = [0] * NUM_SLOTS
        for entry in self.client().execute_command("CLUSTER", "SLOTS"):
            lo, hi, primary = int(entry[0]), int(entry[1]), entry[2]
            port = int(primary[1])
            for slot in range(lo, hi + 1):
                owners[slot] = port
        return owners


class RedisCluster:
    """A throwaway Redis Cluster: primaries x (1 + replicas) nodes on free
    loopback ports, created with `redis-cli --cluster create`.

    Roles change under failover, so primaries(), replicas(), replica_of()
    and node_for_key() ask the running nodes every time.
    """

    def __init__(self, workdir, primaries=3, replicas=1, extra_args=(),
                 tls=None):
        self.workdir = os.path.join(workdir, "cluster")
        self.nprimaries = primaries
        self.nreplicas = replicas
        self.tls = tls
        self.nodes = [RedisServer(self.workdir, cluster=True,
                                  extra_args=extra_args, tls=tls)
                      for _ in range(primaries * (1 + replicas))]
        self._client = None

    def __repr__(self):
        return f"RedisCluster({', '.join(self.seeds)})"

    @property
    def seeds(self):
        return [n.addr for n in self.nodes]

    @property
    def ports(self):
        return [n.port for n in self.nodes]

    def node(self, port):
        """The RedisServer listening on port (int or "host:port")."""
        if isinstance(port, str):
            port = int(port.rpartition(":")[2])
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    def running(self):
        return [n for n in self.nodes if n.alive()]

    def start(self, timeout=90):
        """Starts every node, creates the cluster and waits (wait_ok) until
        it is fully formed and every replica is in sync."""
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            n.start()
        cmd = [shutil.which("redis-cli") or "redis-cli",
               *(self.tls.cli_args() if self.tls is not None else []),
               "--cluster", "create", *self.seeds, "--cluster-replicas",
               str(self.nreplicas), "--cluster-yes"]
        res = subprocess.run(cmd, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL,
                             timeout=max(5.0, deadline - time.monotonic()))
        with open(os.path.join(self.workdir, "create.log"), "w") as f:
            f.write(res.stdout + res.stderr)
        if res.returncode != 0 or "[OK] All 16384 slots covered" not in \
                res.stdout:
            raise HarnessError(f"redis-cli --cluster create failed "
                               f"({res.returncode}):\n{res.stdout[-2000:]}"
                               f"{res.stderr[-2000:]}")
        self.wait_ok(max(5.0, deadline - time.monotonic()))
        return self

    def stop(self, timeout=10):
        """Stops every node (SIGTERM, SIGKILL after timeout)."""
        self._close_client()
        for n in self.nodes:
            if n.proc is not None:
                n.proc.signal(signal.SIGTERM)
        for n in self.nodes:
            if n.proc is not None:
                n.stop(timeout)

    def _close_client(self):
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing a dead client
                pass
            self._client = None

    def client(self):
        """A redis.cluster.RedisCluster over the running nodes (cached; a
        new one is made after a failover helper ran)."""
        if self._client is None:
            from redis.cluster import ClusterNode, RedisCluster as RC
            startup = [ClusterNode(HOST, n.port) for n in self.running()]
            extra = self.tls.client_kwargs() if self.tls is not None else {}
            self._client = RC(startup_nodes=startup, decode_responses=False,
                              socket_timeout=5, socket_connect_timeout=5,
                              cluster_error_retry_attempts=5, **extra)
        return self._client

    # Health.

    def health(self):
        """Returns None when the running nodes form a healthy cluster, or a
        string saying what is not right yet. Healthy means, for every
        running node: cluster_state:ok, a view of the other running nodes
        without fail/pfail/handshake flags, the same slot -> primary map as
        every other node covering all 16384 slots with running primaries;
        every running replica linked to its primary (master_link_status:up,
        no sync in progress); every primary with a running replica has it
        connected."""
        running = self.running()
        if not running:
            return "no node is running"
        running_ports = {n.port for n in running}
        # What each node says of itself: its role and, for a replica, the
        # port of its primary. Every node's cluster view must agree.
        roles = {}
        for n in running:
            reply = n.client().execute_command("ROLE")
            role = reply[0].decode()
            roles[n.port] = (role, int(reply[2]) if role == "slave" else 0)
        reference = None
        for n in running:
            info = n.cluster_info()
            if info.get("cluster_state") != "ok":
                return f"{n.addr}: cluster_state {info.get('cluster_state')}"
            for entry in n.cluster_nodes():
                if entry["port"] not in running_ports:
                    continue
                bad = entry["flags"] & {"fail", "fail?", "handshake",
                                        "noaddr"}
                if bad:
                    return f"{n.addr} sees {entry['addr']} as {bad}"
                if entry["link"] != "connected" and \
                        "myself" not in entry["flags"]:
                    return f"{n.addr}: link to {entry['addr']} not connected"
            view = n.cluster_nodes()
            ids = {e["id"]: e["port"] for e in view}
            for entry in view:
                if entry["port"] not in running_ports:
                    continue
                seen = "slave" if "slave" in entry["flags"] else "master"
                if seen != roles[entry["port"]][0]:
                    return (f"{n.addr} sees {entry['addr']} as {seen}, "
                            f"not {roles[entry['port']][0]}")
                if seen == "slave" and \
                        ids.get(entry["master"]) != roles[entry["port"]][1]:
                    return (f"{n.addr} sees {entry['addr']} replicating "
                            f"another primary")
            owners = n.slot_owners()
            if reference is None:
                reference = owners
                if 0 in owners:
                    return f"{n.addr}: slot {owners.index(0)} is unowned"
                dead = set(owners) - running_ports
                if dead:
                    return f"slots still owned by stopped nodes {dead}"
            elif owners != reference:
                return f"{n.addr} disagrees on slot ownership"
        primaries = set(reference)
        for n in running:
            repl = n.info("replication")
            if repl.get("role") == "slave":
                if repl.get("master_link_status") != "up":
                    return f"{n.addr}: master link down"
                if repl.get("master_sync_in_progress") not in (0, "0", None):
                    return f"{n.addr}: sync in progress"
                if int(repl.get("master_port", 0)) not in primaries:
                    return f"{n.addr}: replicates a node that owns no slots"
            elif n.port not in primaries:
                return f"{n.addr}: primary with no slots"
        for n in running:
            if n.port in primaries:
                expect = sum(1 for r in running
                             if r.port not in primaries and
                             int(r.info("replication").get("master_port", 0))
                             == n.port)
                got = int(n.info("replication").get("connected_slaves", 0))
                if got < expect:
                    return f"{n.addr}: {got}/{expect} replicas connected"
        # Clients learn replicas from CLUSTER SLOTS (the publisher's default
        # ack-replicas among them): every node must list every running one.
        replicas = {}
        for port, (role, primary) in roles.items():
            if role == "slave":
                replicas.setdefault(primary, set()).add(port)
        for n in running:
            listed = n.slot_replicas()
            for primary, ports in replicas.items():
                if not ports <= listed.get(primary, set()):
                    return (f"{n.addr}: CLUSTER SLOTS does not list every "
                            f"replica of {primary} yet")
        return None

    def wait_ok(self, timeout=60):
        """Waits until health() is None, then until every primary's replicas
        have acknowledged its replication offset (WAIT). Raises
        HarnessError naming the last problem seen."""
        state = {"why": "not checked"}

        def healthy():
            state["why"] = self.health()
            return state["why"] is None

        start = time.monotonic()
        try:
            wait_until(healthy, timeout, interval=0.1, what="cluster health")
        except HarnessError as exc:
            raise HarnessError(f"{exc}: {state['why']}") from None
        remaining = max(1.0, timeout - (time.monotonic() - start))
        for p in self.primaries():
            want = len(self.replicas_of(p))
            if want:
                wait_until(lambda p=p, want=want: p.client().execute_command(
                    "WAIT", want, 200) >= want, remaining, interval=0.05,
                    what=f"replicas of {p.addr} in sync")
        return self

    def cluster_check(self):
        """Runs `redis-cli --cluster check` on the first node, as operators
        do before and after a deployment or a reshard, and raises
        HarnessError with its output unless it passes: every slot covered,
        no open (importing or migrating) slot, all nodes agree."""
        res = subprocess.run(["redis-cli", "--cluster", "check",
                              self.nodes[0].addr], capture_output=True,
                             text=True, timeout=60)
        out = res.stdout + res.stderr
        if (res.returncode != 0 or "[OK] All 16384 slots covered." not in out
                or "[ERR]" in out or "[WARNING]" in out):
            raise HarnessError(f"redis-cli --cluster check failed:\n{out}")
        return out

    # Topology.

    def primaries(self):
        """Running nodes whose role is master, in node order."""
        return [n for n in self.running() if n.role() == "master"]

    def replicas(self):
        """Running nodes whose role is slave, in node order."""
        return [n for n in self.running() if n.role() == "slave"]

    def primary_of(self, replica):
        """The node replica replicates from (None when unknown or gone)."""
        port = int(replica.info("replication").get("master_port", 0))
        try:
            return self.node(port)
        except KeyError:
            return None

    def replicas_of(self, node):
        """Running replicas of node."""
        out = []
        for r in self.replicas():
            port = int(r.info("replication").get("master_port", 0))
            if port == node.port:
                out.append(r)
        return out

    def replica_of(self, node):
        """One running replica of node (None when it has none)."""
        rs = self.replicas_of(node)
        return rs[0] if rs else None

    def slot_owner(self, slot):
        """The primary that owns slot, per a running node's CLUSTER SLOTS."""
        for n in self.running():
            try:
                return self.node(n.slot_owners()[slot])
            except (KeyError, redis.RedisError):
                continue
        raise HarnessError(f"no running node knows the owner of slot {slot}")

    def node_for_key(self, key):
        """The primary that owns key's slot."""
        return self.slot_owner(key_slot(key))

    def flushall(self):
        """FLUSHALL on every primary (replicas follow)."""
        for p in self.primaries():
            p.client().flushall()

    # Failover.

    def failover(self, replica, timeout=30, force=False):
        """Promotes replica with CLUSTER FAILOVER [FORCE] and waits until it
        is a primary and the cluster is healthy. Returns replica."""
        args = ["CLUSTER", "FAILOVER"] + (["FORCE"] if force else [])
        deadline = time.monotonic() + timeout
        # A manual failover gives up after 5 s when the primary does not
        # answer in time (it may not know its replica yet): ask again.
        while True:
            replica.client().execute_command(*args)
            try:
                wait_until(lambda: replica.role() == "master",
                           min(7.0, max(0.5, deadline - time.monotonic())),
                           what=f"{replica.addr} promoted")
                break
            except HarnessError:
                if time.monotonic() >= deadline:
                    raise
        self._close_client()
        self.wait_ok(timeout)
        return replica

    def kill_primary(self, primary, timeout=30):
        """SIGKILLs primary, waits until one of its replicas is promoted and
        the remaining nodes are healthy. Returns the promoted node."""
        candidates = self.replicas_of(primary)
        if not candidates:
            raise HarnessError(f"{primary.addr} has no running replica")
        primary.kill()
        self._close_client()

        def promoted():
            for r in candidates:
                if r.alive() and r.role() == "master":
                    return r
            return None

        new = wait_until(promoted, timeout, interval=0.1,
                         what=f"a replica of {primary.addr} promoted")
        self.wait_ok(timeout)
        return new

    def restart_node(self, node, timeout=30):
        """Starts a stopped node again (it rejoins with its saved identity;
        a former primary comes back as a replica) and waits for health."""
        node.start()
        self._close_client()
        self.wait_ok(timeout)
        return node


# --------------------------------------------------------------------------
# Daemons.

class Daemon:
    """A daemon process whose stdout and stderr go to workdir/<name>.log.

    The constructor starts it and, with ready_port, waits until that port
    accepts TCP (raising HarnessError with the log's tail if the process
    exits first or ready_timeout passes). With valgrind=True (or
    INVAL_TEST_VALGRIND=1 in the environment) the program runs under
    valgrind --leak-check=full with exit code 99 on any error.
    """

    VALGRIND_EXIT = 99

    def __init__(self, argv, workdir, name, ready_port=None, env=None,
                 ready_timeout=20, valgrind=None):
        if valgrind is None:
            valgrind = os.environ.get("INVAL_TEST_VALGRIND") == "1"
        self.workdir = workdir
        self.name = name
        self.port = ready_port
        self.ready_port = ready_port
        self.valgrind = bool(valgrind)
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.argv = [str(a) for a in argv]
        run = self.argv
        if self.valgrind:
            run = ["valgrind", "--quiet", "--leak-check=full",
                   "--show-leak-kinds=definite,indirect",
                   "--errors-for-leak-kinds=definite,indirect",
                   f"--error-exitcode={self.VALGRIND_EXIT}"] + run
            ready_timeout *= 5
        self.exit_code = None
        self.stopped = False  # stop() or kill() was called
        self.proc = _Proc(run, self.log_path, name, cwd=workdir, env=env)
        self.pid = self.proc.pid
        if ready_port is not None:
            try:
                self.wait_ready(ready_port, ready_timeout)
            except HarnessError:
                self.kill()
                raise

    def __repr__(self):
        return f"Daemon({self.name}, pid={self.pid}, port={self.port})"

    @property
    def addr(self):
        return f"{HOST}:{self.port}"

    def wait_ready(self, port, timeout=20):
        """Waits until port accepts TCP while the process runs."""
        def ready():
            if not self.proc.alive():
                raise HarnessError(
                    f"{self.name} exited with {self.proc.returncode()} "
                    f"before {HOST}:{port} accepted:\n{tail(self.log_path)}")
            return port_accepts(port)

        try:
            wait_until(ready, timeout, what=f"{self.name} on port {port}")
        except HarnessError as exc:
            if not self.proc.alive():
                raise HarnessError(
                    f"{self.name} exited with {self.proc.returncode()} "
                    f"before {HOST}:{port} accepted:\n"
                    f"{tail(self.log_path)}") from None
            raise HarnessError(f"{exc}\n{tail(self.log_path)}") from None

    def alive(self):
        return self.proc.alive()

    def returncode(self):
        """The exit code once it exited, else None."""
        return self.proc.returncode()

    def wait(self, timeout):
        """Waits for the process to exit; its code, or None on timeout."""
        code = self.proc.wait(timeout)
        if code is not None:
            self.exit_code = code
        return code

    def signal(self, sig):
        self.proc.signal(sig)

    def stop(self, timeout=10):
        """SIGTERM and wait; returns the exit code. A daemon still running
        after timeout seconds is SIGKILLed and -9 is returned (a failure)."""
        self.stopped = True
        if self.valgrind:
            timeout *= 5
        if not self.proc.alive():
            code = self.proc.wait(5)
        else:
            code = self.proc.terminate(timeout)
        self.exit_code = code
        return code

    def kill(self):
        """SIGKILL, as a crash would; returns once the process is gone."""
        self.stopped = True
        self.exit_code = self.proc.kill()
        return self.exit_code

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=40):
        return tail(self.log_path, lines)


# --------------------------------------------------------------------------
# MessagePack-RPC client.

REQUEST, RESPONSE, NOTIFY = 0, 1, 2


def pack(obj):
    """msgpack with str as str and bytes as bin (the wire's convention)."""
    return msgpack.packb(obj, use_bin_type=True)


class RpcClient:
    """A blocking MessagePack-RPC client over TCP or TLS, for tests.

    Replies are decoded with str for msgpack str and bytes for bin. Messages
    that arrive while call() waits for its own reply (other responses,
    notifications) are queued for read_message(). Every read has a timeout:
    read_message raises TimeoutError, and ConnectionError when the peer
    closed.
    """

    def __init__(self, host=HOST, port=None, timeout=5, tls=False,
                 cafile=None, server_hostname=None, connect_timeout=None):
        self.host = host
        self.port = port
        self.timeout = timeout
        sock = socket.create_connection(
            (host, port), timeout=connect_timeout or timeout)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if cafile:
                ctx.load_verify_locations(cafile)
                ctx.check_hostname = server_hostname is not None
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                          max_buffer_size=256 * 1024 * 1024)
        self._queue = []
        self._next_id = 1
        self._eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def next_msgid(self):
        msgid = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        return msgid

    def send_raw(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def request(self, msgid, method, params):
        """Sends [0, msgid, method, params] without waiting."""
        self.send_raw(pack([REQUEST, msgid, method, params]))

    def notify(self, method, params):
        """Sends [2, method, params] (no reply is expected)."""
        self.send_raw(pack([NOTIFY, method, params]))

    def _fill(self, deadline):
        """Reads more bytes into the unpacker; False on EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no message from server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            raise TimeoutError("no message from server in time") from None
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError,
                BrokenPipeError):
            data = b""
        if not data:
            self._eof = True
            return False
        self._unpacker.feed(data)
        return True

    def _next_decoded(self):
        try:
            return next(self._unpacker)
        except StopIteration:
            return None

    def read_message(self, timeout=None):
        """The next message (a list) from the server. Raises TimeoutError
        after timeout (default: the client's), ConnectionError when the
        server closed the connection."""
        if self._queue:
            return self._queue.pop(0)
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            msg = self._next_decoded()
            if msg is not None:
                return msg
            if self._eof or not self._fill(deadline):
                raise ConnectionError("server closed the connection")

    def call(self, method, *params, timeout=None):
        """Sends a request and waits for its response. Returns (error,
        result): error is None or the {"code", "message"} map."""
        msgid = self.next_msgid()
        self.request(msgid, method, list(params))
        return self.wait_response(msgid, timeout)

    def wait_response(self, msgid, timeout=None):
        """Waits for the response to msgid; returns (error, result). Other
        messages seen meanwhile are queued for read_message()."""
        for i, m in enumerate(self._queue):
            if _is_response(m, msgid):
                del self._queue[i]
                return m[2], m[3]
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            msg = self._next_decoded()
            if msg is None:
                if self._eof or not self._fill(deadline):
                    raise ConnectionError(
                        f"server closed the connection before answering "
                        f"msgid {msgid}")
                continue
            if _is_response(msg, msgid):
                return msg[2], msg[3]
            self._queue.append(msg)

    def closed(self, timeout=5):
        """True when the server closes the connection within timeout
        seconds (data received meanwhile is queued); False otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next_decoded()
            if msg is not None:
                self._queue.append(msg)
                continue
            if self._eof:
                return True
            try:
                if not self._fill(deadline):
                    return True
            except TimeoutError:
                return False
            except ValueError:
                return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _is_response(msg, msgid):
    return (isinstance(msg, (list, tuple)) and len(msg) == 4 and
            msg[0] == RESPONSE and msg[1] == msgid)


def rpc_ok(client, method, *params, timeout=None):
    """Calls method and returns its result; raises HarnessError on an error
    reply."""
    err, result = client.call(method, *params, timeout=timeout)
    if err is not None:
        raise HarnessError(f"{method} failed: {err}")
    return result


__all__ = [
    "HOST", "NUM_SLOTS", "REPO_ROOT", "HarnessError", "wait_until", "tail",
    "port_accepts", "rundir", "free_port", "free_port_range",
    "register_pid", "pid_gone", "reap", "build_dir", "binary",
    "have_binary", "invalctl", "RedisServer", "key_slot", "RedisCluster",
    "Daemon", "pack", "RpcClient", "rpc_ok", "REQUEST", "RESPONSE", "NOTIFY",
]
