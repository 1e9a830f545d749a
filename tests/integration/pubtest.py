"""Helpers shared by the integration tests of the publisher and of what
reads its log (test_publisher*.py, and through workerlib the worker tests):
the log's names (shard streams, hint channels, the consumer group), Topo
(standalone Redis or the cluster, with readers for what Redis holds: the 64
log shard streams, the groups' progress), a backend fixture that runs a test
against both, and a subscriber of the broadcast."""

import functools
import time

import msgpack
import pytest

import harness
from harness import HOST, RpcClient

CHANNEL = "cache:invalidation"
SHARDS = 64
SHARD_SLOTS = harness.NUM_SLOTS // SHARDS
GROUP = "inval"
HB_KEY = "cache:invalidation:workers"


@functools.lru_cache(maxsize=None)
def _slot_tags():
    """slot -> the smallest decimal number whose slot it is (inv_slot_tag),
    for the 64 shards' home slots."""
    want = {i * SHARD_SLOTS for i in range(SHARDS)}
    tags = {}
    n = 0
    while want:
        s = harness.key_slot(str(n))
        if s in want:
            tags[s] = n
            want.discard(s)
        n += 1
    return tags


def shard_key(shard):
    """The stream of log shard shard: cache:invalidation:log:{<tag>}."""
    return f"cache:invalidation:log:{{{_slot_tags()[shard * SHARD_SLOTS]}}}"


def shard_channel(shard):
    """The hint channel of log shard shard."""
    return f"cache:invalidation:shard:{{{_slot_tags()[shard * SHARD_SLOTS]}}}"


def shard_of_key(key):
    """The shard an exact key is logged in (in a cluster)."""
    return harness.key_slot(key) // SHARD_SLOTS


def route(e):
    """The shard of an event in a cluster (inv_log_event_shard), or None for
    every shard: exact keys and prefixes with a complete hash tag by slot,
    patterns that start with a literal "{tag}" by the tag's slot."""
    t = e["target"]
    if isinstance(t, str):
        t = t.encode()
    if e["kind"] == "key":
        return shard_of_key(t)
    start = t.find(b"{")
    end = t.find(b"}", start + 1) if start >= 0 else -1
    if start < 0 or end <= start + 1:
        return None
    if e["kind"] == "prefix":
        return shard_of_key(t)
    if start == 0 and not any(c in t[:end] for c in b"*?[\\"):
        return shard_of_key(t)
    return None


def sid(text):
    """A stream id "ms-seq" (str or bytes) as a comparable pair."""
    if isinstance(text, bytes):
        text = text.decode()
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


# The first shard's stream: standalone, every entry is there.
LOG_KEY = shard_key(0)


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


class Topo:
    """The Redis a test runs against: standalone (a RedisServer) or a
    cluster (a RedisCluster), seen the way the publisher and worker tests
    need it. Slot owners are read straight from the nodes, so that they stay
    right across failovers and resharding."""

    def __init__(self, target):
        self.target = target
        self.is_cluster = isinstance(target, harness.RedisCluster)

    def __repr__(self):
        return f"Topo({self.kind})"

    @property
    def kind(self):
        return "cluster" if self.is_cluster else "standalone"

    @property
    def seeds(self):
        return self.target.seeds if self.is_cluster else [self.target.addr]

    def client(self):
        """A redis-py client of the standalone server or the cluster."""
        return self.target.client()

    # Nodes and slots.

    def nodes(self):
        return self.target.running() if self.is_cluster else [self.target]

    def primaries(self):
        return self.target.primaries() if self.is_cluster else [self.target]

    def node(self, addr):
        if self.is_cluster:
            return self.target.node(addr)
        return self.target

    def owners(self):
        """A list of NUM_SLOTS RedisServer: the primary of every slot (all
        the one server when standalone), read from a running node."""
        if not self.is_cluster:
            return [self.target] * harness.NUM_SLOTS
        last = None
        for n in self.target.running():
            try:
                ports = n.slot_owners()
            except Exception as exc:  # noqa: BLE001 - try the next node
                last = exc
                continue
            by_port = {}
            out = []
            for p in ports:
                if p not in by_port:
                    by_port[p] = self.target.node(p)
                out.append(by_port[p])
            return out
        raise harness.HarnessError(
            f"no node answered CLUSTER SLOTS ({last!r})")

    def owner_of(self, key):
        return self.owners()[harness.key_slot(key)]

    def any_node_client(self):
        """A plain client of one node, for SUBSCRIBE (classic PUBLISH
        reaches every node of a cluster)."""
        if self.is_cluster:
            return self.target.primaries()[-1].client()
        return self.target.client()

    def any_node_addr(self):
        if self.is_cluster:
            return self.target.primaries()[-1].addr
        return self.target.addr

    def quiet_primary(self):
        """(src, dst): a primary that does not own the heartbeats' slot
        (moving its slots or stopping it leaves them in place) and another
        primary. Cluster only."""
        owners = self.owners()
        prims = self.primaries()
        hb = owners[harness.key_slot(HB_KEY)].port
        src = next(p for p in prims if p.port != hb)
        return src, next(p for p in prims if p.port != src.port)

    # Log shards.

    def shard_for(self, key):
        """The shard an exact key's events are logged in on this backend."""
        return shard_of_key(key) if self.is_cluster else 0

    def shard_node(self, shard):
        """The primary that holds log shard shard (the server standalone)."""
        return self.owners()[shard * SHARD_SLOTS]

    def log_node(self, shard=0):
        """The node of log shard shard (0 by default, where every entry of
        a standalone server is)."""
        return self.shard_node(shard)

    def other_node(self, shard=0):
        """A primary that does not hold log shard shard (standalone: the
        server)."""
        if not self.is_cluster:
            return self.target
        owner = self.shard_node(shard)
        for n in self.target.running():
            if n.port != owner.port and n.role() == "master":
                return n
        raise harness.HarnessError("no second primary")

    def expected_entries(self, events):
        """{shard: [event as relayed]} for one batch of events."""
        out = {}
        for e in events:
            shard = route(e) if self.is_cluster else 0
            for k in range(SHARDS) if shard is None else [shard]:
                out.setdefault(k, []).append(expect_event(e))
        return out

    def shard_entries(self):
        """[(shard, id str, decoded payload)] of every log shard, by shard,
        then oldest first."""
        out = []
        for shard in range(SHARDS):
            r = self.shard_node(shard).client()
            for eid, fields in r.xrange(shard_key(shard), "-", "+"):
                out.append((shard, eid.decode(), decode(fields[b"p"])))
        return out

    def log_entries(self):
        """[(id str, decoded payload)] of every shard entry, oldest first
        (an unpinned prefix or pattern is in all 64 shards' entries of a
        cluster; use batches() to see each batch once)."""
        rows = self.shard_entries()
        rows.sort(key=lambda r: (sid(r[1]), r[0]))
        return [(eid, p) for _, eid, p in rows]

    def entries_of(self, ack):
        """{shard: payload} of the entries an ack's "ids" name; asserts that
        each is in its shard's stream."""
        out = {}
        for shard, eid in ack["ids"]:
            rows = self.shard_node(shard).client().xrange(
                shard_key(shard), eid, eid)
            assert len(rows) == 1, (shard, eid)
            out[shard] = decode(rows[0][1][b"p"])
        return out

    def events(self):
        """Every logged event once: the shard entries' events, where the
        copies of an event fanned out to every shard of a cluster count
        once per batch (same ts, same event)."""
        seen = set()
        out = []
        for _, eid, p in sorted(self.shard_entries(),
                                key=lambda r: (sid(r[1]), r[0])):
            for i, e in enumerate(p["events"]):
                fan = (p["ts"], e["kind"], repr(e["target"]), e["mode"])
                if e["kind"] != "key" and fan in seen:
                    continue
                seen.add(fan)
                out.append(e)
        return out

    def shard_state(self):
        """{shard: (entries logged, entries delivered to the group and
        acknowledged)} for every shard stream that exists, read from the
        primary that holds it: (last-generated-id, last-delivered-id,
        pending)."""
        out = {}
        owners = self.owners()
        for s in range(SHARDS):
            key = shard_key(s)
            c = owners[harness.key_slot(key)].client()
            if not c.exists(key):
                continue
            last = c.xinfo_stream(key)["last-generated-id"]
            groups = {g["name"]: g for g in c.xinfo_groups(key)}
            g = groups.get(GROUP.encode()) or groups.get(GROUP)
            out[s] = (sid(last), sid(g["last-delivered-id"]) if g else (0, 0),
                      g["pending"] if g else -1)
        return out

    def drained(self):
        """True when every shard's group has been delivered every entry and
        has none pending: every logged invalidation was applied."""
        return all(last == delivered and pending == 0
                   for last, delivered, pending in self.shard_state().values())

    def pause_log_node(self, ms, mode="WRITE", shard=0):
        self.shard_node(shard).client().execute_command("CLIENT", "PAUSE", ms,
                                                        mode)

    def unpause_log_node(self, shard=0):
        self.shard_node(shard).client().execute_command("CLIENT", "UNPAUSE")


@pytest.fixture(params=["standalone", "cluster"])
def backend(request):
    """Runs the test once against standalone Redis and once against the
    module's 3+3 cluster (both flushed)."""
    return Topo(request.getfixturevalue(request.param))


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
