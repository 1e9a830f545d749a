"""Scenario 5: exact-key apply rate of one worker under a flood.

M keys {T}:key:0..M-1 all live on one primary A (T is a hash tag A owns).
invalctl bench floods the publisher with key events for them (100 per
request) and the time from the start of the flood to A's DBSIZE showing all
M gone gives the keys A's worker unlinked per second. Baseline on the same
node: redis-benchmark -P 16 with 50 connections running UNLINK on keys of
the same shape ({T}:b:__rand_int__ with -r M, over M loaded keys; random
picks repeat, so about a third of its UNLINKs find no key, which flatters
the baseline).
"""

import subprocess
import time

import benchlib
from benchlib import HOST, Env, log, median

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
    with Env(ctx.workdir("s5")) as env:
        benchlib.invalidate(env, [{"kind": "key", "target": "warm-up"}])
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
    mi, mb, mb3 = median(inval), median(base), median(base3)
    return {
        "id": 5, "title": TITLE,
        "rows": [{"figure": f"{m:,} keys on one primary",
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
                  f"inval run: {cpu}."],
    }
