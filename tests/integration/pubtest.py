"""Helpers shared by the inval-publisher integration tests
(test_publisher*.py): a backend fixture that runs a test against standalone
Redis and against the 6-node cluster, and small readers for what Redis holds
(the log, the broadcast)."""

import time

import msgpack
import pytest

import harness
from harness import HOST, RpcClient

LOG_KEY = "cache:invalidation:log"
CHANNEL = "cache:invalidation"


def ev(kind, target, mode=None):
    """An event map as a client sends it."""
    e = {"kind": kind, "target": target}
    if mode is not None:
        e["mode"] = mode
    return e


def expect_event(e):
    """The event as the publisher relays it: a str target when its bytes are
    UTF-8, else bin (bytes), and an explicit mode."""
    t = e["target"]
    if isinstance(t, bytes):
        try:
            t = t.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"kind": e["kind"], "target": t, "mode": e.get("mode", "hard")}


def decode(payload):
    return msgpack.unpackb(payload, raw=False, strict_map_key=False,
                           unicode_errors="surrogateescape")


class Backend:
    """Standalone Redis or a cluster, seen the way the tests need it."""

    def __init__(self, kind, target):
        self.kind = kind
        self.target = target  # RedisServer or RedisCluster

    def __repr__(self):
        return f"Backend({self.kind})"

    @property
    def is_cluster(self):
        return self.kind == "cluster"

    @property
    def seeds(self):
        return self.target.seeds if self.is_cluster else [self.target.addr]

    def nodes(self):
        return self.target.running() if self.is_cluster else [self.target]

    def log_node(self):
        """The node that owns the log key (the whole server standalone)."""
        if self.is_cluster:
            return self.target.node_for_key(LOG_KEY)
        return self.target

    def other_node(self):
        """A node that does not own the log key (standalone: the server)."""
        if not self.is_cluster:
            return self.target
        owner = self.log_node()
        for n in self.target.running():
            if n.port != owner.port and n.role() == "master":
                return n
        raise harness.HarnessError("no second primary")

    def log_entries(self):
        """[(id str, decoded payload)] of the whole log, oldest first."""
        r = self.log_node().client()
        out = []
        for eid, fields in r.xrange(LOG_KEY, "-", "+"):
            out.append((eid.decode(), decode(fields[b"p"])))
        return out

    def pause_log_node(self, ms, mode="WRITE"):
        self.log_node().client().execute_command("CLIENT", "PAUSE", ms, mode)

    def unpause_log_node(self):
        self.log_node().client().execute_command("CLIENT", "UNPAUSE")


@pytest.fixture(params=["standalone", "cluster"])
def backend(request):
    """Runs the test once against standalone Redis and once against the
    module's 3+3 cluster (both flushed)."""
    if request.param == "standalone":
        return Backend("standalone", request.getfixturevalue("standalone"))
    return Backend("cluster", request.getfixturevalue("cluster"))


class Subscriber:
    """A SUBSCRIBE on cache:invalidation on one node, confirmed before use."""

    def __init__(self, node):
        self.node = node
        self.ps = node.client().pubsub()
        self.ps.subscribe(CHANNEL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = self.ps.get_message(timeout=0.5)
            if m and m["type"] == "subscribe":
                return
        raise harness.HarnessError(f"no SUBSCRIBE confirmation on {node.addr}")

    def collect(self, n, timeout=10):
        """The next n broadcast payloads (decoded); fewer on timeout."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            m = self.ps.get_message(timeout=0.2)
            if m and m["type"] == "message":
                out.append(decode(m["data"]))
        return out

    def quiet(self, seconds):
        """True when no message arrives for seconds."""
        return not self.collect(1, timeout=seconds)

    def close(self):
        try:
            self.ps.close()
        except Exception:  # noqa: BLE001 - closing after a node died
            pass


def connect(pub, **kw):
    return RpcClient(HOST, pub.port, **kw)


def invalidate(client, events, timeout=None):
    return client.call("invalidate", events, timeout=timeout)


def stats(pub):
    with connect(pub) as c:
        err, res = c.call("stats")
        assert err is None, err
        return res


def ack_with_retry(client_factory, events, deadline_s, retry_codes=("EUNAVAIL",)):
    """Sends events until acked; retries on the given error codes (and on a
    dropped connection) until deadline_s seconds passed. Returns (result,
    number of retryable errors seen)."""
    deadline = time.monotonic() + deadline_s
    retries = 0
    last = None
    while time.monotonic() < deadline:
        try:
            with client_factory() as c:
                err, res = invalidate(c, events, timeout=15)
        except (ConnectionError, OSError, TimeoutError) as exc:
            last = exc
            retries += 1
            time.sleep(0.2)
            continue
        if err is None:
            return res, retries
        last = err
        assert err["code"] in retry_codes, err
        retries += 1
        time.sleep(0.2)
    raise AssertionError(f"not acked within {deadline_s}s; last: {last}")
