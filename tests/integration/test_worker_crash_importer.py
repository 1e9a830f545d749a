"""A worker killed just after its node gained slots loses nothing.

A private 3+3 cluster, one worker per node, one publisher. A chunk of slots
(the first of which is a log shard's home, so the shard's stream moves with
it) moves between two primaries while exact-key events stream to keys in
it; 0-0.5 s after the chunk's SETSLOT NODE the importing node's worker is
killed with SIGKILL and started again. Every acked key must be gone on its
final owner; keys of the chunk that were not named survive. The chunk moves
back and forth, one move per run (see chaoslib.py for the runs and the
seed).
"""

import random
import time

from chaoslib import (RUNS, WORKER_ARGS, acked_keys, chaos_seed,
                      restart_worker, wait_clean)
from workerlib import (SHARD_SLOTS, SlotMover, Streamer, Topo, key_events,
                       load_keys, poll,
                       tag_for_each_slot, wait_workers_live, worker_of,
                       worker_ready, wstats)


def test_importer_killed_after_slot_gain(fresh_cluster, worker_factory,
                                         publisher_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    rng = random.Random(chaos_seed("importer crash"))
    a, b = topo.quiet_primary()
    owners = topo.owners()
    home = next(s for s in range(0, len(owners), SHARD_SLOTS)
                if owners[s].port == a.port)
    chunk = [home, home + 1, home + 2, home + 3]
    tags = tag_for_each_slot()
    workers = [worker_factory(n, *WORKER_ARGS) for n in topo.nodes()]
    wait_workers_live(topo, workers)
    pub = publisher_factory(topo.seeds)
    src, dst = a, b
    moved_shard = 0
    for run in range(RUNS):
        named = [f"ic{run}:{{{tags[s]}}}:{i}" for s in chunk for i in range(30)]
        kept = [f"ic{run}:{{{tags[s]}}}:x{i}" for s in chunk for i in range(5)]
        rng.shuffle(named)
        # Every node agrees on the chunk's owner before it moves again: a
        # move started while the last one's assignment still spreads can
        # make a node take back the slots with an older epoch, and Redis
        # then drops their keys on the other one (not inval's doing).
        poll(lambda: len({tuple(n.slot_owners()[s] for s in chunk)
                          for n in cluster.running()}) == 1, 30,
             "every node agrees on the chunk's owner")
        load_keys(topo, named + kept)
        batches = [key_events(named[i:i + 3]) for i in range(0, len(named), 3)]
        stream = Streamer(pub, batches, pace=rng.uniform(0.002, 0.01),
                          window=2)
        stream.start()
        stream.wait_acked(rng.randrange(1, len(batches) // 3), 30)
        mover = SlotMover(cluster, src, dst)
        for s in chunk:
            mover.begin(s)
        for s in chunk:
            mover.migrate(s)
        for s in chunk:
            mover.finish(s)
        delay = rng.uniform(0.0, 0.5)
        time.sleep(delay)
        wdst = worker_of(workers, dst)
        wdst.kill()
        new = restart_worker(worker_factory, workers, wdst)
        ids = stream.finish(60)
        key_id = acked_keys(batches, ids)
        poll(lambda: worker_ready(new, dst), 30, "the restarted worker live")
        wait_clean(topo, f"ic{run}:*", set(key_id), set(kept), key_id,
                   [wdst, new, worker_of(workers, src)],
                   f"run {run} (delay {delay:.3f} s, {src.port} -> "
                   f"{dst.port})")
        st = wstats(new)
        assert st["gaps"] == 0 and st["shards"] >= 1, st
        moved_shard += st["events_received"] > 0
        src, dst = dst, src
    print(f"{RUNS} runs: the restarted importer read entries of the moved "
          f"shard in {moved_shard} (the others found them applied already)")
