"""What the ownership-crash tests share (test_worker_crash_importer.py and
test_worker_crash_promotion.py): a worker killed just after its node's
ownership changed loses nothing, since what it had read and acknowledged is
the consumer group of each log shard, in Redis.

Each case runs INVAL_CHAOS_RUNS times (default 20) from a seed
(INVAL_CHAOS_SEED, default random), printed, so that a failure can be
replayed. A stale key is reported with its slot, the log id of its event and
the tail of the workers' logs. The two cases are two files so that CTest
runs them side by side.
"""

import os
import random
import time

from workerlib import (key_slot, keys_present)

RUNS = int(os.environ.get("INVAL_CHAOS_RUNS", "20"))
WORKER_ARGS = ("--role-poll", "200ms", "--heartbeat-interval", "200ms")


def chaos_seed(case):
    seed = os.environ.get("INVAL_CHAOS_SEED")
    seed = int(seed) if seed else random.SystemRandom().randrange(1 << 32)
    print(f"{case}: seed {seed} (INVAL_CHAOS_SEED={seed} replays it), "
          f"{RUNS} runs")
    return seed


def restart_worker(worker_factory, workers, old):
    """Starts a worker for old's node in its place."""
    new = worker_factory(old.node, *WORKER_ARGS)
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
