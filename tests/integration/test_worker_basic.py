"""inval-worker smoke tests against real Redis, standalone and the 6-node
cluster: one worker per node, events sent through a real inval-publisher
(and once through the publisher's Redis path by hand: XADD + PUBLISH in one
MULTI), and assertions on what Redis holds afterwards. Exact keys, prefixes
and patterns remove exactly their matches; everything else survives. A
hash-tag-pinned pattern is handled by its slot's owner only. The `stats`
key set equals the table in workers/STATS.md."""

import os
import re
import time

import msgpack
import pytest

import harness
from harness import HOST, RpcClient, wait_until
from workerlib import Topo, shard_key, shard_of_key, sid

STATS_MD = os.path.join(harness.REPO_ROOT, "workers", "STATS.md")


@pytest.fixture(params=["standalone", "cluster"])
def backend(request):
    return Topo(request.getfixturevalue(request.param))


def ev(kind, target):
    return {"kind": kind, "target": target}


def worker_stats(w):
    with RpcClient(HOST, w.port) as c:
        err, st = c.call("stats")
    assert err is None, err
    return st


def start_workers(backend, worker_factory, *extra):
    """One worker per node; waits until each has caught up and is live."""
    workers = [worker_factory(n, *extra) for n in backend.nodes()]

    def live():
        for w in workers:
            st = worker_stats(w)
            if not (st["connected"] and st["live"] and st["role"] != "unknown"):
                return False
            if st["role"] == "primary" and st["owned_slots"] == 0:
                return False
        return True

    wait_until(live, 30, interval=0.1, what="workers live")
    return workers


def fill(backend, keys):
    """SETs every key (pipelined)."""
    pipe = backend.client().pipeline()
    for i, k in enumerate(keys):
        pipe.set(k, b"v")
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def existing(backend, keys):
    """The subset of keys that exist."""
    c = backend.client()
    pipe = c.pipeline()
    for k in keys:
        pipe.exists(k)
    return {k for k, n in zip(keys, pipe.execute()) if n}


def invalidate(pub, events, chunk=500):
    with RpcClient(HOST, pub.port) as c:
        for i in range(0, len(events), chunk):
            err, res = c.call("invalidate", events[i:i + chunk])
            assert err is None, err
            assert res["accepted"] == len(events[i:i + chunk])


def wait_gone(backend, keys, timeout=30):
    wait_until(lambda: not existing(backend, keys), timeout, interval=0.1,
               what=f"{len(keys)} keys removed")


def settle(workers, timeout=30):
    """Waits until no worker has work outstanding."""
    def idle():
        for w in workers:
            st = worker_stats(w)
            if st["pending_keys"] or st["scans_running"] or st["scans_pending"]:
                return False
        return True
    wait_until(idle, timeout, interval=0.1, what="workers idle")


def test_exact_keys(backend, worker_factory, publisher_factory):
    workers = start_workers(backend, worker_factory)
    pub = publisher_factory(backend.seeds)
    named = [f"user:{i}" for i in range(3000)]
    # Same prefix, not named: must survive.
    kept = [f"user:{i}:profile" for i in range(1000)] + \
           [f"user:{i}" for i in range(3000, 4000)]
    fill(backend, named + kept)
    invalidate(pub, [ev("key", k) for k in named])
    wait_gone(backend, named)
    settle(workers)
    assert existing(backend, kept) == set(kept)
    # Each key was deleted once: on the node of its log shard, or (a shard
    # whose range two primaries share) on its own node through the cluster.
    total = sum(worker_stats(w)["keys_unlinked"] + worker_stats(w)["remote_unlinks"]
                for w in workers)
    assert total == len(named)
    for w in workers:
        st = worker_stats(w)
        if st["role"] == "replica":
            assert st["keys_unlinked"] == 0 and st["unlinks_sent"] == 0


def test_prefix_and_pattern(backend, worker_factory, publisher_factory):
    workers = start_workers(backend, worker_factory, "--scan-count", "200")
    pub = publisher_factory(backend.seeds)
    gone_prefix = [f"sess:a:{i}" for i in range(2000)]
    kept_prefix = [f"sess:b:{i}" for i in range(1000)] + \
                  [f"sess:{i}" for i in range(500)]
    gone_pattern = [f"rep:{i}:2026" for i in range(1500)]
    kept_pattern = [f"rep:{i}:2025" for i in range(1000)] + \
                   [f"rep:{i}:20261" for i in range(300)]
    fill(backend, gone_prefix + kept_prefix + gone_pattern + kept_pattern)
    invalidate(pub, [ev("prefix", "sess:a:"), ev("pattern", "rep:*:2026"),
                     ev("pattern", "rep:*:2026")])
    wait_gone(backend, gone_prefix + gone_pattern)
    settle(workers)
    kept = kept_prefix + kept_pattern
    assert existing(backend, kept) == set(kept)
    for w in workers:
        st = worker_stats(w)
        assert st["scans_running"] == 0 and st["scans_pending"] == 0
        if st["role"] == "primary":
            assert st["scans_done"] >= 1


def test_match_everything_refused(backend, worker_factory):
    """A pattern matching every key, written to the log by hand (the
    publisher refuses it too), is refused by the worker."""
    workers = start_workers(backend, worker_factory)
    keys = [f"k{i}" for i in range(100)]
    fill(backend, keys)
    publish_raw(backend, [ev("pattern", "*"), ev("prefix", "")])
    primaries = [w for w in workers if worker_stats(w)["role"] == "primary"]
    # Each primary refuses both events once per shard it holds.
    wait_until(lambda: all(worker_stats(w)["events_refused"] ==
                           2 * worker_stats(w)["shards"]
                           for w in primaries), 10, what="refusals")
    assert all(worker_stats(w)["shards"] >= 1 for w in primaries)
    assert existing(backend, keys) == set(keys)


def publish_raw(backend, events):
    """What the publisher's script does, by hand, as a client written in
    another language would (proto/PROTOCOL.md 10): each key's event goes
    to the shard of its slot (shard 0 on standalone Redis); per shard, the
    group is made with the stream, the entry is added and its id is sent
    on the shard's hint channel. Returns {shard: entry id}."""
    by_shard = {}
    for e in events:
        if not backend.is_cluster:
            shards = [0]
        elif e["kind"] == "key":
            shards = [shard_of_key(e["target"])]
        else:
            shards = range(64)  # unpinned here: every shard
        for shard in shards:
            by_shard.setdefault(shard, []).append(dict(e, mode="hard"))
    ids = {}
    for shard, evs in by_shard.items():
        key = shard_key(shard)
        channel = key.replace(":log:", ":shard:")
        r = backend.owner_of(key).client()
        if not r.exists(key):
            r.xgroup_create(key, "inval", id="0", mkstream=True)
        body = {"v": 2, "ts": int(time.time() * 1000), "events": evs}
        eid = r.xadd(key, {"p": msgpack.packb(body)}).decode()
        r.execute_command("SPUBLISH", channel, eid)
        ids[shard] = eid
    return ids


def test_raw_publish_path(backend, worker_factory):
    workers = start_workers(backend, worker_factory)
    keys = [f"raw:{i}" for i in range(200)]
    kept = [f"raw:{i}" for i in range(200, 300)]
    fill(backend, keys + kept)
    ids = publish_raw(backend, [ev("key", k) for k in keys[:100]])
    ids2 = publish_raw(backend, [ev("key", k) for k in keys[100:]])
    wait_gone(backend, keys)
    settle(workers)
    assert existing(backend, kept) == set(kept)
    # Each event reached one worker, the one of the node holding its
    # shard; standbys take in nothing.
    def received():
        return sum(worker_stats(w)["events_received"] for w in workers)
    wait_until(lambda: received() >= 200, 30, what="both entries taken in")
    assert received() == 200
    for w in workers:
        st = worker_stats(w)
        if st["role"] != "primary":
            assert st["events_received"] == 0, (w.name, st)
    # Redis holds the cursor: every entry delivered and acknowledged.
    for shard, eid in {**ids, **ids2}.items():
        key = shard_key(shard)
        r = backend.owner_of(key).client()
        wait_until(lambda r=r, key=key: r.xinfo_groups(key)[0]["pending"] == 0,
                   10, what=f"{key} acknowledged")
        g = r.xinfo_groups(key)[0]
        assert g["last-delivered-id"].decode() == max(
            (ids.get(shard, "0-0"), ids2.get(shard, "0-0")), key=sid), g


def test_pinned_pattern_owner_only(cluster, worker_factory,
                                   publisher_factory):
    backend = Topo(cluster)
    workers = start_workers(backend, worker_factory)
    pub = publisher_factory(backend.seeds)
    gone = [f"{{user:42}}:k{i}" for i in range(500)]
    kept = [f"{{user:42}}x{i}" for i in range(200)] + \
           [f"{{user:43}}:k{i}" for i in range(200)]
    fill(backend, gone + kept)
    invalidate(pub, [ev("pattern", "{user:42}:*")])
    wait_gone(backend, gone)
    settle(workers)
    assert existing(backend, kept) == set(kept)
    owner = cluster.node_for_key("{user:42}")
    for w in workers:
        st = worker_stats(w)
        if w.node == owner.addr:
            assert st["slot_scans"] == 1
            assert st["keys_scanned"] == 700  # every key of the slot
            assert st["keys_unlinked"] == 500
        else:
            assert st["keys_scanned"] == 0
            assert st["keys_unlinked"] == 0


def stats_md_keys():
    keys = []
    with open(STATS_MD) as f:
        for line in f:
            if line.startswith("## "):
                break  # sub-tables (the node map) follow
            m = re.match(r"^\|\s*`([a-z0-9_]+)`\s*\|", line)
            if m:
                keys.append(m.group(1))
    return keys


def test_stats_key_set(standalone, worker_factory):
    w = worker_factory(standalone, metrics=True)
    wait_until(lambda: worker_stats(w)["live"], 20, what="worker live")
    st = worker_stats(w)
    documented = stats_md_keys()
    assert len(documented) == len(set(documented))
    assert set(st) == set(documented)
    assert st["role"] == "primary" and st["owned_slots"] == 16384
    assert st["version"] == "0.1.0"
    assert st["worker_id"] == standalone.addr
    with RpcClient(HOST, w.port) as c:
        assert c.call("ping") == (None, "PONG")
        err, res = c.call("hello", {"proto": 1, "client": "pytest"})
        assert err is None and res["server"] == "inval-worker"
        err, _ = c.call("nope")
        assert err["code"] == "ENOMETHOD"
    import urllib.request
    body = urllib.request.urlopen(
        f"http://{HOST}:{w.metrics_port}/metrics", timeout=5).read().decode()
    assert "inval_worker_keys_unlinked_total" in body
    assert 'inval_worker_role{role="primary"} 1' in body


def test_heartbeat(standalone, worker_factory):
    w = worker_factory(standalone, "--heartbeat-interval", "100ms")
    wait_until(lambda: worker_stats(w)["live"], 20, what="worker live")
    backend = Topo(standalone)
    eid = publish_raw(backend, [ev("key", "x")])[0]
    r = standalone.client()

    def hb():
        raw = r.hget("cache:invalidation:workers", standalone.addr)
        return raw and msgpack.unpackb(raw, raw=False)

    rec = wait_until(lambda: (lambda h: h if h and h["last_id"] == eid
                              else None)(hb()), 10, what="heartbeat")
    assert set(rec) == {"id", "node", "role", "last_id", "lag_ms", "behind",
                        "ts_ms", "ttl_ms", "instance", "health", "shards"}
    # Standalone Redis: one shard, acknowledged up to the entry.
    assert rec["shards"] == [[0, eid]]
    assert rec["health"]["up"] == 1 and rec["health"]["used_memory"] > 0
    assert rec["role"] == "primary" and rec["node"] == standalone.addr
    assert rec["ttl_ms"] == 5000
    assert abs(rec["ts_ms"] - time.time() * 1000) < 5000
    assert w.stop() == 0


@pytest.mark.skipif(harness.sanitized_build(),
                    reason="valgrind cannot run an ASan build; ASan checks it")
def test_valgrind_clean(standalone, worker_factory, publisher_factory):
    """A worker under valgrind attaches its shard, applies exact keys, a
    prefix and a pinned pattern, and stops on SIGTERM with exit 0 and no
    leak (the harness makes valgrind exit 99 on any error)."""
    w = worker_factory(standalone, metrics=True, valgrind=True,
                       ready_timeout=60)
    wait_until(lambda: worker_stats(w)["live"], 60, what="worker live")
    backend = Topo(standalone)
    pub = publisher_factory(standalone.addr)
    keys = [f"vg:{i}" for i in range(50)] + [f"vgp:{i}" for i in range(50)] + \
        [f"{{vgt}}:{i}" for i in range(20)]
    fill(backend, keys + ["kept"])
    invalidate(pub, [ev("key", k) for k in keys[:50]] +
               [ev("prefix", "vgp:"), ev("pattern", "{vgt}:*")])
    wait_gone(backend, keys, timeout=60)
    assert existing(backend, ["kept"]) == {"kept"}
    import urllib.request
    urllib.request.urlopen(f"http://{HOST}:{w.metrics_port}/metrics",
                           timeout=20).read()
    assert w.stop() == 0
