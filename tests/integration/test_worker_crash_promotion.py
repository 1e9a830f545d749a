"""A promoted replica's worker killed just after the promotion loses
nothing.

A private 3+3 cluster, one worker per node, one publisher. A primary is
killed with SIGKILL while events stream to its keys; 0-0.5 s after its
replica is promoted, the promoted node's worker is killed and started again;
it resumes the node's log shards from their consumer groups, which the
replica held. Every acked key must be gone. The old primary comes back as
a replica, and the next run kills the other one of the pair (see
chaoslib.py for the runs and the seed).
"""

import random
import time

from chaoslib import (RUNS, WORKER_ARGS, acked_keys, chaos_seed,
                      restart_worker, wait_clean)
from workerlib import (HB_KEY, Streamer, Topo, key_events, key_slot,
                       load_keys, poll, wait_workers_live, worker_of,
                       worker_ready, wstats)


def test_promoted_worker_killed_after_promotion(fresh_cluster, worker_factory,
                                                publisher_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    rng = random.Random(chaos_seed("promotion crash"))
    owners = topo.owners()
    victim = next(p for p in topo.primaries()
                  if p.port != owners[key_slot(HB_KEY)].port)
    workers = [worker_factory(n, *WORKER_ARGS) for n in topo.nodes()]
    wait_workers_live(topo, workers)
    pub = publisher_factory(topo.seeds)
    takeovers = 0
    for run in range(RUNS):
        heir = cluster.replica_of(victim)
        owners = topo.owners()
        slots = [s for s in range(len(owners)) if owners[s].port == victim.port]
        tags = [f"pc{run}:{i}" for i in range(2000)]
        named = [k for k in tags if owners[key_slot(k)].port == victim.port]
        named = named[:200]
        kept = [f"{k}:x" for k in named[:40]]
        load_keys(topo, named + kept)
        assert victim.client().execute_command("WAIT", 1, 5000) >= 1
        batches = [key_events(named[i:i + 2]) for i in range(0, len(named), 2)]
        stream = Streamer(pub, batches, pace=0.01, window=2, deadline_s=90)
        stream.start()
        stream.wait_acked(rng.randrange(5, 30), 30)
        victim.kill()
        poll(lambda: heir.role() == "master", 30,
             f"{heir.addr} promoted", interval=0.02)
        delay = rng.uniform(0.0, 0.5)
        time.sleep(delay)
        wheir = worker_of(workers, heir)
        wheir.kill()
        new = restart_worker(worker_factory, workers, wheir)
        cluster.wait_ok(60)
        ids = stream.finish(90)
        key_id = acked_keys(batches, ids)
        cluster.restart_node(victim, timeout=60)
        poll(lambda: worker_ready(new, heir), 30, "the restarted worker live")
        wait_clean(topo, f"pc{run}:*", set(key_id), set(kept), key_id,
                   [wheir, new],
                   f"run {run} (delay {delay:.3f} s, {victim.port} killed, "
                   f"{heir.port} promoted; {len(slots)} slots)")
        takeovers += wstats(new)["events_received"] > 0
        # The old primary is a replica now: it is the next heir.
        poll(lambda: victim.role() == "slave", 30, f"{victim.addr} a replica")
        poll(lambda: worker_ready(worker_of(workers, victim), victim), 30,
             "the old primary's worker a standby")
        victim = heir
    print(f"{RUNS} runs: the restarted worker read entries in {takeovers} "
          f"(in the others its predecessor had applied them all)")
