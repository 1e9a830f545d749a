"""Scenario 5: exact-key apply rate of one worker under a flood.

M keys {T}:key:0..M-1 all live on one primary A (T is a hash tag A owns).
invalctl bench floods the publisher with key events for them (100 per
request) and the time from the start of the flood to A's DBSIZE showing all
M gone gives the keys A's worker unlinked per second. Baseline on the same
node: redis-benchmark -P 16 with 50 connections running UNLINK on keys of
the same shape ({T}:b:__rand_int__ with -r M, over M loaded keys; random
picks repeat, so about a third of its UNLINKs find no key, which flatters
the baseline).

Backlog. The live flood shares the two cores with everything that produces
it (publisher, log node, the five other workers decoding what they drop).
Two further figures (one slot, spread) stop A's worker, send and log a
flood, then start the worker and time its catch-up from the log until
DBSIZE shows the keys gone, without the flood's production on the cores
(the node still serves the worker's reads of its shards).

Layouts. In the figure above every key shares one hash tag, so all are in
one slot, and the worker sends consecutive keys of one slot as one
multi-key UNLINK. A second figure spreads the M keys over every slot A
owns ({t_s}:key:i, each key in the next slot, so no two consecutive keys
share one): the worker then sends one command per key. invalctl bench can
only name keys <prefix>key:<N>, so that flood is sent by the harness's
pipelined client instead (workerlib.Sender, 100 keys per request, 16
requests in flight), from Python, and the same client also sends the
one-tag layout, so that the two layouts compare with the same load tool.
"""

import subprocess
import threading
import time

import benchlib
from benchlib import HOST, Env, log, median

PER_REQUEST = 100  # keys per invalidate request, as with invalctl bench
WINDOW = 16        # requests in flight, as invalctl bench -P 16

TITLE = "Exact-key apply rate per worker (keys unlinked/s)"


def run_inval(env, node, tag, m):
    keys = [f"{{{tag}}}:key:{i}" for i in range(m)]
    benchlib.load_keys(env, keys)
    before = node.client(timeout=60).dbsize()
    worker = [w for w, n in env.primary_workers() if n.port == node.port][0]
    cpu0 = (benchlib.cpu_seconds(node.pid), benchlib.cpu_seconds(worker.pid))
    busy0 = benchlib.machine_busy()
    argv = [benchlib.harness.binary("invalctl"), "bench", "-H",
            f"{HOST}:{env.publisher.port}", "-c", "8", "-P", "16",
            "--keys-per-event", "100", "-n", m, "--keyspace", m,
            "--key-prefix", f"{{{tag}}}:", "--json"]
    t0 = time.monotonic()
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        dt = benchlib.wait_dbsize([node], {node: before - m}, t0)
    finally:
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out, err)
    cpu = (benchlib.cpu_seconds(node.pid) - cpu0[0],
           benchlib.cpu_seconds(worker.pid) - cpu0[1])
    busy = benchlib.busy_share(busy0, benchlib.machine_busy())
    return (m / dt, argv, benchlib.json.loads(out)["events_per_sec"],
            (round(dt, 2), round(cpu[0], 2), round(cpu[1], 2),
             f"{busy:.0%}"))


def run_backlog(env, node, keys):
    """The worker's apply rate on a backlog: A's worker is stopped, a flood
    of hard key events for keys (loaded first, all on node) is sent and
    logged (the other workers apply their share), then the worker is
    started again and catches up from the log. Timed from its start to A's
    DBSIZE showing every key gone: the cores are not shared with the
    flood's production (publisher, load tool, the other workers), as when
    it is produced elsewhere; its node serves the reads of its shards.
    Returns
    (keys/s, (wall s, node CPU s, worker CPU s, cores busy))."""
    benchlib.load_keys(env, keys)
    before = node.client(timeout=60).dbsize()
    i = next(j for j, w in enumerate(env.workers) if w.node == node.addr)
    old = env.workers[i]
    assert old.stop() == 0, old.log_tail(20)
    send_all(env, keys)
    assert node.client(timeout=60).dbsize() == before
    cpu0 = benchlib.cpu_seconds(node.pid)
    busy0 = benchlib.machine_busy()
    t0 = time.monotonic()
    new = benchlib.Daemon(old.argv, env.workdir, f"{old.name}-restarted",
                          ready_port=old.port, valgrind=False)
    new.node = old.node
    env.workers[i] = new
    dt = benchlib.wait_dbsize([node], {node: before - len(keys)}, t0)
    cpu = (benchlib.cpu_seconds(node.pid) - cpu0, benchlib.cpu_seconds(new.pid))
    busy = benchlib.busy_share(busy0, benchlib.machine_busy())
    # The keys went by the restarted worker's reading of its shards'
    # groups, not by another worker's.
    caught_up = benchlib.workerlib.wstats(new)["events_received"]
    assert caught_up >= len(keys), caught_up
    return len(keys) / dt, (round(dt, 2), round(cpu[0], 2), round(cpu[1], 2),
                            f"{busy:.0%}")


def spread_keys(env, node, m):
    """m keys over every slot node owns, consecutive keys in different
    slots."""
    tags = benchlib.workerlib.tag_for_each_slot()
    owners = env.topo.owners()
    slots = [s for s in range(len(owners)) if owners[s].port == node.port]
    return [f"{{{tags[slots[i % len(slots)]]}}}:key:{i}" for i in range(m)]


def send_all(env, keys):
    """Sends hard key events for keys through the publisher with the
    harness's pipelined client (PER_REQUEST keys per request, WINDOW in
    flight); returns once every request is acked."""
    batches = [[{"kind": "key", "target": k} for k in keys[i:i + PER_REQUEST]]
               for i in range(0, len(keys), PER_REQUEST)]
    sender = benchlib.workerlib.Sender(env.publisher.port, window=WINDOW)
    try:
        sender.send(batches, deadline_s=600)
    finally:
        sender.close()


def run_sent(env, node, keys):
    """Floods the publisher with hard key events for keys (loaded first, all
    on node) from the harness's pipelined client; returns (keys/s of node's
    worker, (wall s, node CPU s, worker CPU s, cores busy))."""
    benchlib.load_keys(env, keys)
    before = node.client(timeout=60).dbsize()
    worker = [w for w, n in env.primary_workers() if n.port == node.port][0]
    failed = []

    def send():
        try:
            send_all(env, keys)
        except BaseException as exc:  # noqa: BLE001 - raised below
            failed.append(exc)

    cpu0 = (benchlib.cpu_seconds(node.pid), benchlib.cpu_seconds(worker.pid))
    busy0 = benchlib.machine_busy()
    thread = threading.Thread(target=send, daemon=True)
    t0 = time.monotonic()
    thread.start()
    try:
        dt = benchlib.wait_dbsize([node], {node: before - len(keys)}, t0)
    finally:
        thread.join(600)
    if failed:
        raise failed[0]
    cpu = (benchlib.cpu_seconds(node.pid) - cpu0[0],
           benchlib.cpu_seconds(worker.pid) - cpu0[1])
    busy = benchlib.busy_share(busy0, benchlib.machine_busy())
    return len(keys) / dt, (round(dt, 2), round(cpu[0], 2), round(cpu[1], 2),
                            f"{busy:.0%}")


def clear_slot(node, tag):
    """Removes what is left in the tag's slot (the keys the baseline's
    random picks missed), leaving the rest of the node alone."""
    r = node.client(timeout=60)
    slot = benchlib.workerlib.key_slot(tag)
    while True:
        keys = r.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10000)
        if not keys:
            return
        r.unlink(*keys)


def run_baseline(env, node, tag, m, fenced):
    """redis-benchmark UNLINK over m loaded keys. fenced: UNLINK K K:lock
    K:stale, the three keys the worker's hard invalidation removes (the
    lock and stale copy do not exist, as in the inval run)."""
    keys = [f"{{{tag}}}:b:{i:012d}" for i in range(m)]
    benchlib.load_keys(env, keys)
    k = f"{{{tag}}}:b:__rand_int__"
    argv = ["redis-benchmark", "-h", HOST, "-p", node.port, "-c", "50",
            "-n", m, "-r", m, "-P", "16", "--csv", "UNLINK", k]
    if fenced:
        argv += [k + ":lock", k + ":stale"]
    cpu0 = benchlib.cpu_seconds(node.pid)
    res, _ = benchlib.run(argv)
    cpu_us = (benchlib.cpu_seconds(node.pid) - cpu0) / m * 1e6
    line = [ln for ln in res.stdout.strip().splitlines()
            if ln.startswith('"UNLINK')][-1]
    clear_slot(node, tag)
    return float(line.split(",")[1].strip('"')), argv, cpu_us


def run(ctx):
    m = max(20000, int(500000 * ctx.scale))
    inval, base, base3, sent, cpu = [], [], [], [], []
    node_us = {0: [], 1: [], 3: []}  # Redis CPU us per key: inval, 1, 3
    py = {"tag": [], "spread": []}   # harness-sent floods: (keys/s, cpu)
    backlog = {"tag": [], "spread": []}  # catch-ups: (keys/s, cpu)
    with Env(ctx.workdir("s5")) as env:
        benchlib.warm_up(env)
        node = env.topo.primaries()[0]
        tag = benchlib.tag_on(env, node)
        for i in range(ctx.runs):
            rps, base_argv, cpu1 = run_baseline(env, node, tag, m, False)
            base.append(rps)
            node_us[1].append(cpu1)
            rate, inval_argv, send_rate, c = run_inval(env, node, tag, m)
            inval.append(rate)
            sent.append(send_rate)
            cpu.append(c)
            rps3, base3_argv, cpu3 = run_baseline(env, node, tag, m, True)
            base3.append(rps3)
            node_us[3].append(cpu3)
            node_us[0].append(c[1] / m * 1e6)
            log(f"s5 run {i + 1}: worker {rate:.0f} keys/s (publisher acked "
                f"{send_rate:.0f}/s; wall s, node CPU s, worker CPU s, cores "
                f"busy: {c}), "
                f"redis-benchmark UNLINK {rps:.0f}/s, 3-key UNLINK "
                f"{rps3:.0f}/s")
            for layout in ("tag", "spread"):
                keys = ([f"{{{tag}}}:py:{j}" for j in range(m)]
                        if layout == "tag" else spread_keys(env, node, m))
                py[layout].append(run_sent(env, node, keys))
                log(f"s5 run {i + 1}, harness-sent, {layout} layout: worker "
                    f"{py[layout][-1][0]:.0f} keys/s (wall s, node CPU s, "
                    f"worker CPU s, cores busy: {py[layout][-1][1]})")
                keys = [f"b{k}" for k in keys]
                backlog[layout].append(run_backlog(env, node, keys))
                log(f"s5 run {i + 1}, backlog, {layout} layout: worker "
                    f"{backlog[layout][-1][0]:.0f} keys/s (wall s, node CPU "
                    f"s, worker CPU s, cores busy: {backlog[layout][-1][1]})")
    mi, mb, mb3 = median(inval), median(base), median(base3)
    pt = median([r for r, _ in py["tag"]])
    ps = median([r for r, _ in py["spread"]])
    node_py = {k: median([c[1] / m * 1e6 for _, c in v]) for k, v in py.items()}
    mbl = {k: median([r for r, _ in v]) for k, v in backlog.items()}
    return {
        "id": 5, "title": TITLE,
        "rows": [{"figure": f"{m:,} keys on one primary, one hash tag "
                            "(one slot)",
                  "inval": f"{mi:,.0f} keys/s",
                  "baseline": f"{mb:,.0f} UNLINK/s", "ratio": mi / mb,
                  "target": ">= 0.8x", "met": mi / mb >= 0.8},
                 {"figure": "same, against UNLINK of the same 3 keys "
                            "(K, its lock, its stale copy)",
                  "inval": f"{mi:,.0f} keys/s",
                  "baseline": f"{mb3:,.0f} UNLINK K L S/s",
                  "ratio": mi / mb3, "target": "", "met": None},
                 {"figure": "the node's CPU per key removed",
                  "inval": f"{median(node_us[0]):.1f} us",
                  "baseline": f"UNLINK K {median(node_us[1]):.1f} us, "
                              f"UNLINK K L S {median(node_us[3]):.1f} us",
                  "ratio": median(node_us[1]) / median(node_us[0]),
                  "target": "", "met": None},
                 *[{"figure": f"backlog of {m:,} keys ({what}): flood "
                             "logged while the worker was stopped, then its "
                             "catch-up from the log (no flood production on "
                             "the cores)",
                   "inval": f"{mbl[k]:,.0f} keys/s",
                   "baseline": f"{mb:,.0f} UNLINK/s", "ratio": mbl[k] / mb,
                   "target": "", "met": None}
                   for k, what in (("tag", "one hash tag"),
                                   ("spread", "spread over every slot, one "
                                              "command per key"))],
                 {"figure": "one hash tag (one slot), sent by the harness's "
                            "client (Python)",
                  "inval": f"{pt:,.0f} keys/s, node "
                           f"{node_py['tag']:.1f} us/key",
                  "baseline": f"{mb:,.0f} UNLINK/s", "ratio": pt / mb,
                  "target": "", "met": None},
                 {"figure": "keys spread over every slot of the primary "
                            "(one command per key), sent by the harness's "
                            "client (Python)",
                  "inval": f"{ps:,.0f} keys/s, node "
                           f"{node_py['spread']:.1f} us/key",
                  "baseline": f"{mb:,.0f} UNLINK/s", "ratio": ps / mb,
                  "target": "", "met": None}],
        "commands": [benchlib.cmdline(inval_argv) +
                     "  (timed to the node's DBSIZE)",
                     benchlib.cmdline(base_argv),
                     benchlib.cmdline(base3_argv)],
        "notes": [f"Per run: worker {[round(x) for x in inval]} keys/s "
                  f"(the publisher acked {[round(x) for x in sent]} "
                  f"events/s meanwhile), redis-benchmark "
                  f"{[round(x) for x in base]} UNLINK/s, "
                  f"{[round(x) for x in base3]} 3-key UNLINK/s. The worker's "
                  "hard invalidation of K is UNLINK K K:lock K:stale (the "
                  "fence of the regeneration contract), so each key costs "
                  "Redis a 3-key command. Wall seconds, node CPU seconds, "
                  "worker CPU seconds and the share of all cores busy per "
                  f"inval run: {cpu}.",
                  "Layouts: the first three rows have every key in one slot "
                  "(one hash tag), which the worker sends as multi-key "
                  "UNLINKs of up to 64 keys; the last two are floods sent "
                  f"by workerlib.Sender ({PER_REQUEST} keys per request, "
                  f"{WINDOW} in flight) with the keys in one slot, then "
                  "spread over every slot of the primary (one UNLINK per "
                  "key). Per run (keys/s; wall s, node CPU s, worker CPU s, "
                  f"cores busy): one slot {py['tag']}, spread "
                  f"{py['spread']}.",
                  "Backlog: the worker of the primary is stopped (SIGTERM; "
                  "its shards' consumer groups keep what it has not "
                  "read), a flood of the same layout is sent by "
                  "workerlib.Sender and acked, then the worker is started "
                  "with the same arguments and timed from its start "
                  "(process start, connect, XREADGROUP of its shards' "
                  "groups) until DBSIZE shows "
                  "every key gone. Per run (keys/s; wall s, node CPU s, "
                  f"worker CPU s, cores busy): one slot {backlog['tag']}, "
                  f"spread {backlog['spread']}."],
    }
