"""A worker killed just after its node's ownership changed still replays.

A private 3+3 cluster, one worker per node, one publisher. What a worker
owes after its node gains slots (a replay of the takeover window for them)
or is promoted (a takeover replay) must survive a kill -9 at any moment: the
state file keeps the owed replay, the role and the slots with the position.

1. Importer crash. A chunk of slots moves between two primaries while
   exact-key events stream to keys in it; 0-0.5 s after the chunk's
   SETSLOT NODE the importing node's worker is killed with SIGKILL and
   started again on its state dir. Every acked key must be gone on its
   final owner; keys of the chunk that were not named survive. The chunk
   moves back and forth, one move per run.
2. Promotion crash. A primary is killed with SIGKILL while events stream to
   its keys; 0-0.5 s after its replica is promoted, the promoted node's
   worker is killed and started again. Every acked key must be gone. The
   old primary comes back as a replica, and the next run kills the other
   one of the pair.

Each case runs INVAL_CHAOS_RUNS times (default 20) from a seed
(INVAL_CHAOS_SEED, default random), printed, so that a failure can be
replayed. A stale key is reported with its slot, the log id of its event and
the tail of the workers' logs.
"""

import os
import random
import time

from workerlib import (HB_KEY, LOG_KEY, SlotMover, Streamer, Topo,
                       key_events, key_slot, keys_present, load_keys, poll,
                       tag_for_each_slot, wait_workers_live, worker_of,
                       worker_ready, wstats)

RUNS = int(os.environ.get("INVAL_CHAOS_RUNS", "20"))
WORKER_ARGS = ("--role-poll", "200ms", "--heartbeat-interval", "200ms",
               "--state-save-interval", "100ms")


def chaos_seed(case):
    seed = os.environ.get("INVAL_CHAOS_SEED")
    seed = int(seed) if seed else random.SystemRandom().randrange(1 << 32)
    print(f"{case}: seed {seed} (INVAL_CHAOS_SEED={seed} replays it), "
          f"{RUNS} runs")
    return seed


def restart_worker(worker_factory, workers, old):
    """Starts a worker for old's node on old's state dir in its place."""
    new = worker_factory(old.node, *WORKER_ARGS, state_dir=old.state_dir)
    workers[workers.index(old)] = new
    return new


def stale_report(topo, stale, key_id, logs, what):
    lines = [f"{what}: {len(stale)} acked keys still present"]
    for k in sorted(stale)[:10]:
        owner = topo.owner_of(k)
        lines.append(f"  {k}: slot {key_slot(k)} on {owner.addr}, "
                     f"log id {key_id.get(k)}")
    for w in logs:
        lines.append(f"--- {w.name} ---\n{w.log_tail(25)}")
    return "\n".join(lines)


def wait_clean(topo, match, gone, kept, key_id, logs, what, timeout=30):
    """Waits until no key of gone is left and every key of kept is; on a
    timeout fails with the stale keys' slots, log ids and the logs."""
    deadline = time.monotonic() + timeout
    while True:
        present = keys_present(topo, match)
        stale = present & gone
        if not stale:
            break
        if time.monotonic() > deadline:
            raise AssertionError(stale_report(topo, stale, key_id, logs, what))
        time.sleep(0.1)
    lost = kept - present
    assert not lost, f"{what}: keys not named were removed: {sorted(lost)[:10]}"


def acked_keys(batches, ids):
    """{key: log id} of the batches that were acked."""
    out = {}
    for b, i in zip(batches, ids):
        if i is not None:
            for e in b:
                out[e["target"]] = i
    return out


def test_importer_killed_after_slot_gain(fresh_cluster, worker_factory,
                                         publisher_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    rng = random.Random(chaos_seed("importer crash"))
    a, b = topo.quiet_primary()
    owners = topo.owners()
    chunk = [s for s in range(len(owners)) if owners[s].port == a.port][:4]
    tags = tag_for_each_slot()
    workers = [worker_factory(n, *WORKER_ARGS) for n in topo.nodes()]
    wait_workers_live(topo, workers)
    pub = publisher_factory(topo.seeds)
    src, dst = a, b
    gained_replays = 0
    for run in range(RUNS):
        named = [f"ic{run}:{{{tags[s]}}}:{i}" for s in chunk for i in range(30)]
        kept = [f"ic{run}:{{{tags[s]}}}:x{i}" for s in chunk for i in range(5)]
        rng.shuffle(named)
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
        assert st["replay_owed"] in (0, 1), st
        gained_replays += "slots gained" in new.log()
        src, dst = dst, src
    print(f"{RUNS} runs: the restarted importer replayed gained slots in "
          f"{gained_replays} (the others had saved the replay already, or "
          f"caught up with it before the kill)")


def test_promoted_worker_killed_after_promotion(fresh_cluster, worker_factory,
                                                publisher_factory):
    cluster = fresh_cluster
    topo = Topo(cluster)
    rng = random.Random(chaos_seed("promotion crash"))
    owners = topo.owners()
    special = {owners[key_slot(LOG_KEY)].port, owners[key_slot(HB_KEY)].port}
    victim = next(p for p in topo.primaries() if p.port not in special)
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
        takeovers += "promoted: taking over" in new.log()
        # The old primary is a replica now: it is the next heir.
        poll(lambda: victim.role() == "slave", 30, f"{victim.addr} a replica")
        poll(lambda: worker_ready(worker_of(workers, victim), victim), 30,
             "the old primary's worker a standby")
        victim = heir
    print(f"{RUNS} runs: the restarted worker took over in {takeovers}")
