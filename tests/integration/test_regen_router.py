"""The read path's synchronous router (proto/cache_redis.c) while a slot
moves between primaries (issue 4), on a private cluster.

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

import harness
from regenlib import names, parse, seeds_arg
from workerlib import SlotMover, Topo, key_slot


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
