"""Helpers shared by the inval-worker integration tests (test_worker_*.py).

- Topo (pubtest's, with the log's names): standalone Redis or a cluster,
  seen the way these tests need it (running nodes, primaries, the slot owner
  of a key, read straight from the nodes so that it stays right across
  failovers and resharding).
- start_workers / wait_workers_live: one inval-worker per node, waited for
  until each is subscribed, caught up, and reports its node's real role.
- load_keys / keys_present / assert_keyset: bulk SETs pipelined per owning
  node, and the exact key set held by the primaries (SCAN on every primary
  directly, no cluster redirections), compared with a short readable diff.
- Sender / Streamer: invalidate through the real publisher, pipelined, with
  retries on the retryable codes (EUNAVAIL, EBUSY, ESHUTDOWN) and on a
  dropped connection; the Streamer does it from a thread, paced, so that a
  test can kill or move things while events flow.
- poll: wait_until with a deadline and a message that says what was awaited.

Nothing here sleeps in the hope that something happened: every wait polls a
condition against a deadline.
"""

import collections
import threading
import time

import msgpack
import redis

import harness
from harness import (HOST, NUM_SLOTS, HarnessError, RpcClient,  # noqa: F401
                     key_slot, wait_until)
# The log's names and the backend class are pubtest's; the worker tests
# import them from here too.
from pubtest import (CHANNEL, GROUP, HB_KEY, SHARD_SLOTS, SHARDS,  # noqa: F401
                     Topo, ev, shard_key, shard_of_key, sid)

RETRY_CODES = ("EUNAVAIL", "EBUSY", "ESHUTDOWN")

ROLE_NAMES = {"master": "primary", "slave": "replica"}


def key_events(keys):
    return [ev("key", k) for k in keys]


def tag_for_each_slot():
    """A list of NUM_SLOTS short strings: entry s hashes to slot s, so that
    "{" + tag + "}..." lands in slot s."""
    tags = [None] * NUM_SLOTS
    missing = NUM_SLOTS
    i = 0
    while missing:
        t = f"t{i}"
        s = key_slot(t)
        if tags[s] is None:
            tags[s] = t
            missing -= 1
        i += 1
    return tags


def shard_keys():
    return [shard_key(s) for s in range(SHARDS)]


def poll(predicate, timeout, what, interval=0.1):
    """wait_until with the argument order these tests use."""
    return wait_until(predicate, timeout, interval=interval, what=what)


# --------------------------------------------------------------------------
# Topology.

def flushed_topo(request, kind):
    """The module's standalone Redis ("standalone", started if it was
    stopped) or cluster ("cluster", once every slot is served), flushed,
    as a Topo: for a test parametrized over both backends."""
    if kind == "standalone":
        target = request.getfixturevalue("redis_standalone")
        if not target.alive():
            target.start()
        target.client().flushall()
    else:
        target = request.getfixturevalue("redis_cluster")
        target.wait_ok(60)
        target.flushall()
    return Topo(target)


def role_name(node):
    """"primary" or "replica": the node's ROLE as the worker names it."""
    return ROLE_NAMES.get(node.role(), "unknown")


# --------------------------------------------------------------------------
# Workers.

def wstats(worker, timeout=5):
    """The worker's stats map (raises on an error reply)."""
    with RpcClient(HOST, worker.port, timeout=timeout) as c:
        err, st = c.call("stats")
    if err is not None:
        raise HarnessError(f"stats of {worker.name} failed: {err}")
    return st


def worker_ready(worker, node):
    """True when worker is subscribed, caught up (live), and reports the
    role its node really has (a primary with its slots known)."""
    st = wstats(worker)
    if not (st["connected"] and st["subscribed"] and st["live"]):
        return False
    want = role_name(node)
    if st["role"] != want:
        return False
    if want == "primary" and st["owned_slots"] == 0:
        return False
    return True


def wait_workers_live(topo, workers, timeout=40):
    def ready():
        return all(worker_ready(w, topo.node(w.node)) for w in workers)
    poll(ready, timeout, f"{len(workers)} workers live with their roles")
    return workers


def start_workers(topo, worker_factory, *extra, timeout=40):
    """One worker per running node of topo (extra flags appended), waited
    for until every one is live with its node's role."""
    workers = [worker_factory(n, *extra) for n in topo.nodes()]
    return wait_workers_live(topo, workers, timeout)


def worker_of(workers, node):
    for w in workers:
        if w.node == node.addr and w.alive():
            return w
    raise KeyError(node.addr)


def settle(workers, timeout=60):
    """Waits until no running worker has exact keys or scans outstanding
    and every one is live again."""
    def idle():
        for w in workers:
            if not w.alive():
                continue
            st = wstats(w)
            if st["pending_keys"] or st["scans_running"] or \
                    st["scans_pending"] or not st["live"]:
                return False
        return True
    poll(idle, timeout, "workers idle")


def _node_shards(addr, asking=False):
    """{shard: (last-generated-id, last-delivered-id, pending)} of the shard
    streams held by the node at addr ("host:port"), asked of that node
    only (a stream of a slot it does not own answers MOVED: skipped). With
    asking, ASKING goes before each command, so that a node importing a
    stream's slot answers for the stream (a test counting ASKING calls
    leaves it off)."""
    host, _, port = addr.rpartition(":")
    c = redis.Redis(host=host, port=int(port), socket_timeout=5)
    try:
        pipe = c.pipeline(transaction=False)
        for k in shard_keys():
            if asking:
                pipe.execute_command("ASKING")
            pipe.xinfo_stream(k)
            if asking:
                pipe.execute_command("ASKING")
            pipe.xinfo_groups(k)
        replies = pipe.execute(raise_on_error=False)
    finally:
        c.close()
    if asking:
        replies = [r for i, r in enumerate(replies) if i % 2 == 1]
    out = {}
    for s in range(SHARDS):
        info, groups = replies[2 * s], replies[2 * s + 1]
        if isinstance(info, Exception) or isinstance(groups, Exception):
            continue
        g = next((g for g in groups if g["name"] in (b"inval", "inval")), None)
        out[s] = (sid(info["last-generated-id"]),
                  sid(g["last-delivered-id"]) if g else (0, 0),
                  g["pending"] if g else -1)
    return out


def wait_applied(workers, entry_id=None, timeout=60, asking=False):
    """Waits until the log shards on every running worker's node are
    drained (every entry delivered to the group "inval" and acknowledged,
    as Redis itself counts them) and, when entry_id is given (an ack's
    "id", the largest of its batch's entry ids), until some shard has
    delivered an entry at or after it."""
    want = sid(entry_id) if entry_id is not None else None

    def applied():
        top = (0, 0)
        for w in workers:
            if not w.alive():
                continue
            for last, delivered, pending in _node_shards(w.node,
                                                         asking).values():
                if last != delivered or pending != 0:
                    return False
                top = max(top, delivered)
        return want is None or top >= want
    poll(applied, timeout, f"every worker's shards drained"
         f"{'' if entry_id is None else ' past ' + str(entry_id)}",
         interval=0.05)


def wait_drained(topo, timeout=60):
    """Waits until every log shard's consumer group has every entry
    delivered and acknowledged (Redis's own account: nothing logged is
    left unapplied)."""
    poll(topo.drained, timeout, "every log shard drained", interval=0.05)


def metric(worker, name):
    """The value of one sample of worker's /metrics (it must have been
    started with metrics=True)."""
    body = harness.scrape(worker.metrics_port)
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"{name} not in /metrics:\n{body[:2000]}")


def heartbeats(topo):
    """{worker id: decoded record} of cache:invalidation:workers."""
    if topo.is_cluster:
        r = topo.owner_of(HB_KEY).client()
    else:
        r = topo.target.client()
    out = {}
    for k, v in r.hgetall(HB_KEY).items():
        out[k.decode()] = msgpack.unpackb(v, raw=False)
    return out


# --------------------------------------------------------------------------
# Keys.

def load_keys(topo, keys, value=b"v", batch=10000):
    """SETs every key on the primary owning its slot: one pipeline per node,
    sent in batches. Returns the number of keys written."""
    owners = topo.owners()
    by_node = collections.defaultdict(list)
    for k in keys:
        by_node[owners[key_slot(k)].port].append(k)
    for port, ks in by_node.items():
        client = (topo.target.node(port) if topo.is_cluster
                  else topo.target).client(timeout=30)
        for i in range(0, len(ks), batch):
            pipe = client.pipeline(transaction=False)
            for k in ks[i:i + batch]:
                pipe.set(k, value)
            pipe.execute()
    return len(keys)


def node_keys(node, match="*", count=5000):
    """Every key of one node (SCAN MATCH on that node only), as str."""
    client = node.client(timeout=30)
    return {k.decode("utf-8", "surrogateescape")
            for k in client.scan_iter(match=match, count=count)}


def keys_present(topo, match="*"):
    """The union of the keys matching match held by the primaries."""
    out = set()
    for p in topo.primaries():
        out |= node_keys(p, match)
    return out


def keyset_diff(got, expected, sample=8):
    """A short description of how got differs from expected (None when
    equal)."""
    missing = expected - got
    extra = got - expected
    if not missing and not extra:
        return None
    return (f"{len(missing)} expected keys missing (e.g. "
            f"{sorted(missing)[:sample]}), {len(extra)} unexpected keys "
            f"present (e.g. {sorted(extra)[:sample]})")


def assert_keyset(got, expected, what):
    diff = keyset_diff(got, expected)
    assert diff is None, f"{what}: {diff}"


def wait_keyset(topo, match, expected, timeout, what):
    """Polls until the primaries hold exactly expected among the keys
    matching match; raises AssertionError with the last diff otherwise."""
    state = {"diff": "not checked"}

    def ok():
        state["diff"] = keyset_diff(keys_present(topo, match), expected)
        return state["diff"] is None
    try:
        poll(ok, timeout, what, interval=0.25)
    except HarnessError as exc:
        raise AssertionError(f"{exc}: {state['diff']}") from None


def wait_gone(topo, match, gone, timeout, what):
    """Polls until none of the keys in gone (a set) is held by a primary."""
    state = {"left": None}

    def ok():
        left = keys_present(topo, match) & gone
        state["left"] = left
        return not left
    try:
        poll(ok, timeout, what, interval=0.25)
    except HarnessError as exc:
        left = state["left"] or set()
        raise AssertionError(f"{exc}: {len(left)} keys still present, e.g. "
                             f"{sorted(left)[:8]}") from None


# --------------------------------------------------------------------------
# Sending invalidations.

class Sender:
    """invalidate through one publisher, pipelined (window requests in
    flight), each batch retried until acked. Retries happen on the
    retryable codes and on a dropped or silent connection (the request may
    have been carried out: deletes are idempotent). A non-retryable error
    raises AssertionError."""

    def __init__(self, port, window=4, reply_timeout=20):
        self.port = port
        self.window = window
        self.reply_timeout = reply_timeout
        self.client = None
        self.retries = 0
        self.errors = collections.Counter()

    def _connect(self):
        if self.client is None:
            self.client = RpcClient(HOST, self.port,
                                    timeout=self.reply_timeout,
                                    connect_timeout=3)
        return self.client

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def send(self, batches, deadline_s=120, on_ack=None, pace=0.0,
             stop=None):
        """Sends every batch (a list of events) until acked. Returns the
        acked entry ids, in batch order. on_ack(index, id) is called as
        each batch is acked; pace seconds pass between two sends; stop (a
        threading.Event) makes it return early (ids of unsent batches are
        None)."""
        deadline = time.monotonic() + deadline_s
        ids = [None] * len(batches)
        pending = collections.deque(range(len(batches)))
        inflight = {}
        while pending or inflight:
            if stop is not None and stop.is_set():
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(pending) + len(inflight)} batches not acked in "
                    f"{deadline_s}s ({self.retries} retries: "
                    f"{dict(self.errors)})")
            try:
                c = self._connect()
                while pending and len(inflight) < self.window:
                    idx = pending.popleft()
                    msgid = c.next_msgid()
                    inflight[msgid] = idx
                    c.request(msgid, "invalidate", [batches[idx]])
                    if pace:
                        time.sleep(pace)
                msg = c.read_message(timeout=self.reply_timeout)
            except (ConnectionError, OSError, TimeoutError) as exc:
                self.errors[type(exc).__name__] += 1
                self.retries += 1
                self.close()
                pending.extendleft(sorted(inflight.values(), reverse=True))
                inflight.clear()
                time.sleep(0.1)  # reconnect backoff
                continue
            if msg[0] == harness.NOTIFY:
                # The server is about to close this connection (EBUSY
                # on max-clients, say): the next read sees the close.
                self.errors[f"notify:{msg[2]}"] += 1
                continue
            if msg[0] != harness.RESPONSE or msg[1] not in inflight:
                continue
            idx = inflight.pop(msg[1])
            err, res = msg[2], msg[3]
            if err is None:
                assert res["accepted"] == len(batches[idx]), res
                ids[idx] = res["id"]
                if on_ack is not None:
                    on_ack(idx, res["id"])
                continue
            assert err["code"] in RETRY_CODES, \
                f"batch {idx} refused: {err}"
            self.errors[err["code"]] += 1
            self.retries += 1
            pending.appendleft(idx)
            time.sleep(0.05)  # backoff before the retry
        return ids


def send_events(pub, events, chunk=1000, window=4, deadline_s=120):
    """Sends events in chunks through pub; returns the last acked id (the
    highest, since chunks may share entries)."""
    batches = [events[i:i + chunk] for i in range(0, len(events), chunk)]
    s = Sender(pub.port, window=window)
    try:
        ids = s.send(batches, deadline_s=deadline_s)
    finally:
        s.close()
    return max(ids, key=sid)


class Streamer(threading.Thread):
    """Sends batches from a thread, paced, so that a test can break things
    while events flow. .acked counts acked batches; .ids holds their entry
    ids once done; .error holds what went wrong in the thread."""

    def __init__(self, pub, batches, pace=0.01, window=2, deadline_s=180):
        super().__init__(daemon=True)
        self.pub = pub
        self.batches = batches
        self.pace = pace
        self.window = window
        self.deadline_s = deadline_s
        self.acked = 0
        self.ack_times = [None] * len(batches)
        self.ids = None
        self.error = None
        self.sender = Sender(pub.port, window=window)
        self._lock = threading.Lock()

    def _on_ack(self, idx, _id):
        with self._lock:
            self.acked += 1
            self.ack_times[idx] = time.monotonic()

    def run(self):
        try:
            self.ids = self.sender.send(self.batches,
                                        deadline_s=self.deadline_s,
                                        on_ack=self._on_ack, pace=self.pace)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            self.sender.close()

    def wait_acked(self, n, timeout):
        """Waits until n batches are acked (or the stream failed)."""
        def enough():
            if self.error is not None:
                raise HarnessError(f"stream failed: {self.error!r}")
            return self.acked >= n or not self.is_alive()
        poll(enough, timeout, f"{n} batches acked", interval=0.02)

    def finish(self, timeout):
        """Joins the thread; raises what went wrong in it. Returns the ids."""
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"stream still running after {timeout}s "
                                 f"({self.acked}/{len(self.batches)} acked)")
        if self.error is not None:
            raise self.error
        return self.ids


def chunks(items, n):
    return [items[i:i + n] for i in range(0, len(items), n)]


def invalctl_stats(port, *args):
    """`invalctl -H 127.0.0.1:port stats` as a CompletedProcess."""
    return harness.invalctl("-H", f"{HOST}:{port}", "stats", *args,
                            timeout=20)


def invalctl_worker_lines(text):
    """{worker id: line} from the workers section of `invalctl stats`."""
    out = {}
    in_section = False
    for line in text.splitlines():
        if line.startswith("workers ("):
            in_section = True
            continue
        if not in_section:
            continue
        if not line.startswith("  "):
            in_section = False  # the next section (nodes) begins
            continue
        if line.strip().startswith("ID "):
            continue
        parts = line.split()
        if parts:
            out[parts[0]] = line
    return out


# --------------------------------------------------------------------------
# Moving slots by hand (what `redis-cli --cluster reshard` does, step by
# step, so that a test can stop in the middle of a slot's migration).

class SlotMover:
    """Moves hash slots from src to dst (two primaries of cluster) with
    CLUSTER SETSLOT IMPORTING/MIGRATING, GETKEYSINSLOT + MIGRATE ... KEYS,
    and SETSLOT NODE on both ends and on every other primary. .moved_keys
    counts the keys MIGRATE carried."""

    def __init__(self, cluster, src, dst, batch=100):
        self.cluster = cluster
        self.src = src
        self.dst = dst
        self.batch = batch
        self.src_id = src.node_id()
        self.dst_id = dst.node_id()
        self.moved_keys = 0

    def begin(self, slot):
        """Marks slot importing on dst, then migrating on src (the order
        redis-cli uses, so that no ASK points at a node not importing)."""
        self.dst.client().execute_command("CLUSTER", "SETSLOT", slot,
                                          "IMPORTING", self.src_id)
        self.src.client().execute_command("CLUSTER", "SETSLOT", slot,
                                          "MIGRATING", self.dst_id)

    def migrate(self, slot, limit=None):
        """Carries up to limit keys of slot (all when None) from src to dst.
        Returns the keys moved."""
        s = self.src.client(timeout=30)
        moved = []
        while limit is None or len(moved) < limit:
            want = self.batch if limit is None else \
                min(self.batch, limit - len(moved))
            keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, want)
            if not keys:
                break
            s.execute_command("MIGRATE", HOST, self.dst.port, "", 0, 10000,
                              "KEYS", *keys)
            moved += [k.decode() for k in keys]
        self.moved_keys += len(moved)
        return moved

    def migrate_keys(self, keys):
        """Carries exactly keys (of slots being migrated) from src to dst."""
        keys = list(keys)
        s = self.src.client(timeout=30)
        for i in range(0, len(keys), self.batch):
            s.execute_command("MIGRATE", HOST, self.dst.port, "", 0, 10000,
                              "KEYS", *keys[i:i + self.batch])
        self.moved_keys += len(keys)

    def finish(self, slot):
        """Assigns slot to dst: dst first, then src, then the others."""
        self.dst.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE",
                                          self.dst_id)
        self.src.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE",
                                          self.dst_id)
        for p in self.cluster.primaries():
            if p.port not in (self.src.port, self.dst.port):
                p.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE",
                                           self.dst_id)

    def move(self, slot):
        self.begin(slot)
        self.migrate(slot)
        self.finish(slot)


def wait_maps_current(topo, workers, timeout=30):
    """Waits until every running primary's worker reports the number of
    slots its node really owns (its slot map caught up with a reshard)."""
    def current():
        owners = topo.owners()
        for w in workers:
            if not w.alive():
                continue
            node = topo.node(w.node)
            st = wstats(w)
            if role_name(node) == "primary" and \
                    st["owned_slots"] != sum(1 for o in owners
                                             if o.port == node.port):
                return False
        return True
    poll(current, timeout, "worker slot maps current", interval=0.2)


def command_calls(node, name):
    """calls= of INFO commandstats for one command on node (0 if never
    called since the last CONFIG RESETSTAT)."""
    stats = node.client().info("commandstats")
    entry = stats.get(f"cmdstat_{name.lower()}")
    return int(entry["calls"]) if entry else 0


def log_entry(topo, events, publish=True):
    """What the publisher does for one batch, by hand: XADD the entry to the
    log and (unless publish is false, which is what a message dropped on
    its way looks like) PUBLISH it with its id, in one MULTI on the log's
    node. Returns the entry id."""
    r = topo.log_client()
    ts = int(time.time() * 1000)
    last = r.xinfo_stream(LOG_KEY)["last-generated-id"] \
        if r.exists(LOG_KEY) else b"0-0"
    lms, lseq = sid(last)
    eid = f"{ts}-0" if ts > lms else f"{lms}-{lseq + 1}"
    body = {"v": 1, "ts": ts,
            "events": [dict(e, mode="hard") for e in events]}
    pipe = r.pipeline(transaction=True)
    pipe.xadd(LOG_KEY, {"p": msgpack.packb(body)}, id=eid)
    if publish:
        pipe.publish(CHANNEL, msgpack.packb(dict(body, id=eid)))
    pipe.execute()
    return eid


def send_past_window(pub, standby, events, window_ms, tick_key):
    """Sends events through pub while their node's worker is out of play,
    so that at a promotion they lie beyond the takeover window of the
    standby's own position: waits until the standby saw them, until they
    are older than three windows, and until it saw one later event (on
    tick_key, a key no test holds), which moves its position past them.
    Returns the last id of events."""
    last = send_events(pub, events, chunk=100)
    poll(lambda: sid(wstats(standby)["last_applied_id"]) >= sid(last), 30,
         "the standby saw the events")
    poll(lambda: time.time() * 1000 > sid(last)[0] + 3 * window_ms, 10,
         "the events older than the takeover window")
    tick = send_events(pub, key_events([tick_key]))
    poll(lambda: sid(wstats(standby)["last_applied_id"]) >= sid(tick), 30,
         "the standby saw a later event")
    return last
