"""Regeneration while a slot moves between primaries, on a
private cluster: the read path's synchronous router (proto/client/cache_redis.c),
and the worker's invalidation of names split between two nodes.

Readers (cache_check readers: threads, each with its own router) keep
reading a key whose value, lock, stale copy and source all live in one
slot, while the test moves that slot by hand: IMPORTING/MIGRATING, MIGRATE
of its keys, SETSLOT NODE. The routers meet ASK while the slot migrates
and MOVED after it moved, follow them, and no read fails. Invalidations
keep going during the
move, and after the move the cache holds nothing older than the source.
(Invalidations are sent here as single-key UNLINKs, lock first, through
redis-py's cluster client, so that they follow ASK themselves.)
"""

import subprocess
import time

import redis

import harness
from regenlib import Invalidator, ev, names, parse, seeds_arg
from workerlib import (SlotMover, Topo, key_slot, poll, start_workers,
                       wait_applied, wstats)


def test_readers_follow_ask_and_moved(fresh_cluster):
    topo = Topo(fresh_cluster)
    key, src = "{mv}:item", "{mv}:src"
    lock, stale = names(key)
    slot = key_slot(key)
    srcnode = fresh_cluster.slot_owner(slot)
    dst = next(p for p in fresh_cluster.primaries() if p.port != srcnode.port)
    rc = fresh_cluster.client()
    rc.set(src, "0")
    argv = [harness.binary("cache_check"), "readers", "-r", seeds_arg(topo),
            "-k", key, "-s", src, "--threads", "4", "--regen-max-ms", "3",
            "--wait-ms", "5000"]
    readers = subprocess.Popen(argv, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    version = 0

    def write_and_invalidate():
        nonlocal version
        version += 1
        rc.set(src, str(version))
        # A hard invalidation, one key at a time: while the slot migrates,
        # a multi-key UNLINK of keys split between the nodes would get
        # TRYAGAIN (the worker retries it; here the point is the readers).
        for k in (lock, key, stale):
            rc.unlink(k)

    try:
        for _ in range(20):
            write_and_invalidate()
            time.sleep(0.01)
        mover = SlotMover(fresh_cluster, srcnode, dst)
        mover.begin(slot)
        # Part of the slot's keys moved: ASK for those, the rest served
        # by the source; keep invalidating meanwhile.
        mover.migrate(slot, limit=2)
        for _ in range(20):
            write_and_invalidate()
            time.sleep(0.01)
        mover.migrate(slot)
        mover.finish(slot)
        for _ in range(30):
            write_and_invalidate()
            time.sleep(0.01)
        out, err = readers.communicate("", timeout=60)
    finally:
        if readers.poll() is None:
            readers.kill()
            readers.wait()
    res = parse(out)
    assert readers.returncode == 0 and not res["errors"], (out, err)
    assert res["redirects"] > 0, out
    assert res["stat.hits"] + res["stat.misses"] > 100, out
    assert fresh_cluster.slot_owner(slot).port == dst.port
    assert srcnode.client().execute_command("CLUSTER", "COUNTKEYSINSLOT",
                                            slot) == 0
    v = rc.get(key)
    assert v is None or int(v) == version, (v, version)


def test_worker_invalidates_split_keys_mid_migration(fresh_cluster,
                                                     worker_factory,
                                                     publisher_factory):
    """While a slot migrates, K, L(K) and S(K) may sit on two nodes: the
    worker that consumes the slot's log shard gets TRYAGAIN for its
    multi-key UNLINK (or soft.lua), resends single-key UNLINKs, and sends
    the names that moved through its cluster client, which follows ASK.
    Every name goes; a soft invalidation of split names becomes a hard one,
    one of whole names stays soft."""
    topo = Topo(fresh_cluster)
    keys = [f"{{mw}}:k{i}" for i in range(1, 6)]
    slot = key_slot(keys[0])
    src = fresh_cluster.slot_owner(slot)
    dst = next(p for p in fresh_cluster.primaries() if p.port != src.port)
    s = src.client()
    for k in keys:
        lock, stale = names(k)
        s.set(k, "v:" + k)
        s.set(lock, "a" * 32, px=60000)
        s.set(stale, "older")
    workers = start_workers(topo, worker_factory, "--stale-grace", "40s")
    pub = publisher_factory(topo.seeds)
    mover = SlotMover(fresh_cluster, src, dst)
    mover.begin(slot)
    # k1: value moved; k2: stale copy moved; k5: value moved (soft).
    mover.migrate_keys([keys[0], names(keys[1])[1], keys[4]])
    wdst = next(w for w in workers if w.node == dst.addr)
    poll(lambda: wstats(wdst)["importing_slots"] == 1, 30,
         "the importing node's worker sees the import")
    inv = Invalidator(pub)
    last = inv.send(ev("key", keys[0]), ev("key", keys[1]), ev("key", keys[2]),
                    ev("key", keys[3], "soft"), ev("key", keys[4], "soft"))
    wait_applied(workers, last)
    inv.close()
    d = dst.client()

    def held(name):
        """Ports of the nodes holding name (mid-migration: the source
        answers ASK for a name it lacks; the target needs ASKING)."""
        out = []
        try:
            if s.exists(name):
                out.append(src.port)
        except redis.exceptions.ResponseError as exc:
            assert str(exc).startswith("ASK "), exc
        pipe = d.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.exists(name)
        if pipe.execute()[1]:
            out.append(dst.port)
        return out

    for k in keys[:3] + keys[4:]:
        for name in (k, *names(k)):
            assert held(name) == [], (name, held(name))
    # The split path ran: the three names that had moved were deleted
    # through a cluster client (following ASK), by the worker of the
    # slot's shard; the importing node's own worker took no part unless it
    # holds that shard.
    stats = {w.node: wstats(w) for w in workers}
    assert sum(st["remote_unlinks"] for st in stats.values()) >= 3, stats
    home = topo.owners()[slot - slot % 256]
    if home.port != dst.port:
        assert stats[dst.addr]["keys_unlinked"] == 0, stats[dst.addr]
    k4 = keys[3]
    assert held(k4) == [] and held(names(k4)[0]) == []
    assert s.get(names(k4)[1]) == ("v:" + k4).encode()
    assert 0 < s.pttl(names(k4)[1]) <= 40000
    mover.migrate(slot)
    mover.finish(slot)
