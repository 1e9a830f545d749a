"""Scenario 7: memory. Peak RSS (VmHWM) of the publisher while 1,000
connections keep requests in flight, and of every primary's worker while it
removes user:* from a 1,000,000-key cluster (a full SCAN of its node).
The baseline column is the same process's RSS at rest just before.
"""

import benchlib
from benchlib import Env, log, median

TITLE = "Memory: peak RSS"

BOUNDS = (
    "Design bounds. Publisher: its memory does not grow with traffic "
    "beyond max-pending-events (default 100,000) accepted-but-unacked "
    "events (each at most max-key-len), plus per connection a read buffer "
    "of at most one frame (max-message-bytes) and unsent output of at most "
    "4 MiB before reading from it stops; at rest a connection costs a few "
    "KiB. Worker: memory does not grow with the keyspace; a scan holds one "
    "SCAN page (scan-count keys) and at most scan-inflight UNLINKs per job "
    "for max-scans jobs, and exact keys queue up to max-pending-keys "
    "(default 100,000) before the worker stops reading the log.")


def run(ctx):
    total = max(10000, int(1000000 * ctx.scale))
    conns = 1000
    pub_idle, pub_peak, wk_idle, wk_peak = [], [], [], []
    for i in range(ctx.runs):
        with Env(ctx.workdir(f"s7-{i}")) as env:
            pid = env.publisher.pid
            pub_idle.append(benchlib.rss_kb(pid))
            fig, pub_argv = env.bench("-c", conns, "-P", 4, "-n",
                                      max(50000, int(400000 * ctx.scale)))
            assert fig["acked_events"] > 0 and not fig["errors"], fig
            pub_peak.append(benchlib.peak_rss_kb(pid))
            users = total // 10
            keys = [f"user:{j}" for j in range(users)]
            keys += [f"item:{j}" for j in range(total - users)]
            benchlib.warm_up(env)
            benchlib.load_keys(env, keys)
            prim = env.topo.primaries()
            pw = env.primary_workers()
            idle = [benchlib.rss_kb(w.pid) for w, _ in pw]
            before = benchlib.dbsizes(prim)
            groups = benchlib.group_by_owner(
                env, [k for k in keys if k.startswith("user:")])
            expected = {n: before[n] - len(groups.get(n, ())) for n in prim}
            t0, _ = benchlib.invalidate(env, [{"kind": "pattern",
                                               "target": "user:*"}])
            benchlib.wait_dbsize(prim, expected, t0)
            wk_idle.append(max(idle))
            wk_peak.append(max(benchlib.peak_rss_kb(w.pid) for w, _ in pw))
            log(f"s7 run {i + 1}: publisher {pub_idle[-1]} -> "
                f"{pub_peak[-1]} KiB, worker {wk_idle[-1]} -> "
                f"{wk_peak[-1]} KiB")
    return {
        "id": 7, "title": TITLE,
        "rows": [
            {"figure": f"publisher, {conns:,} connections x 4 in flight",
             "inval": f"{median(pub_peak) / 1024:.1f} MiB peak",
             "baseline": f"{median(pub_idle) / 1024:.1f} MiB at rest",
             "ratio": None, "target": "bounded", "met": None},
            {"figure": f"worker, pattern scan of {total:,} keys (largest "
                       f"of the 3 primaries' workers)",
             "inval": f"{median(wk_peak) / 1024:.1f} MiB peak",
             "baseline": f"{median(wk_idle) / 1024:.1f} MiB at rest",
             "ratio": None, "target": "bounded", "met": None}],
        "commands": [benchlib.cmdline(pub_argv) +
                     "  (publisher VmHWM afterwards)",
                     "invalctl invalidate --pattern 'user:*' on 1M keys "
                     "(workers' VmHWM afterwards)"],
        "notes": [BOUNDS, f"Per run (KiB): publisher at rest {pub_idle}, "
                  f"peak {pub_peak}; worker at rest {wk_idle}, peak "
                  f"{wk_peak}. Each run has fresh processes."],
    }
