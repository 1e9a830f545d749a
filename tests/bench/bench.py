"""Runs the benchmark scenarios and writes BENCHMARKS.md (see run.sh), and
the same headline table into README.md between its bench-headline markers.

Each scenario module (sN_*.py) has run(ctx) returning a result: rows of
(figure, inval, baseline, ratio, target, met), the exact commands and
notes. Results are kept in tests/bench/results/sN.json so that running one
scenario again rewrites its section and keeps the others.
"""

import argparse
import datetime
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(HERE, "results")
README_BEGIN = "<!-- bench-headline: written by tests/bench/run.sh -->"
README_END = "<!-- /bench-headline -->"
SCENARIOS = {1: "s1_throughput", 2: "s2_latency", 3: "s3_pattern",
             4: "s4_pinned", 5: "s5_apply", 6: "s6_stampede",
             7: "s7_memory", 8: "s8_flood", 9: "s9_node_cpu",
             10: "s10_failover", 11: "s11_fanout", 12: "s12_delivery"}


class Ctx:
    def __init__(self, scale, runs, root, ack_replicas=None, before=None):
        self.scale = scale
        # A build tree of the code before the change (e.g. main's), whose
        # programs scenarios 1, 2, 9, 10 and 11 run in turn with this
        # tree's on the same cluster; None: this tree only.
        self.before = before
        self.runs = runs
        self.root = root
        self.ack_replicas = ack_replicas
        # Flags every publisher of scenarios 1 and 11 gets (their figures
        # depend on how many replicas an ack waits for).
        self.pub_args = ([] if ack_replicas is None
                         else ["--ack-replicas", ack_replicas])

    def workdir(self, name):
        path = os.path.join(self.root, name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    redis = subprocess.run(["redis-server", "--version"], capture_output=True,
                           text=True).stdout.split()[2]
    return (f"{os.cpu_count()} cores ({model}), Linux "
            f"{platform.release()}, Redis {redis.replace('v=', '')}")


def fmt_ratio(r):
    if r is None:
        return ""
    return f"{r:.1f}x" if r < 100 else f"{r:,.0f}x"


def fmt_met(m):
    return {True: "yes", False: "**no**", None: ""}[m]


def update_readme(table):
    """Replaces the table between README.md's bench-headline markers."""
    path = os.path.join(REPO, "README.md")
    with open(path) as f:
        text = f.read()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        benchlib.log("README.md has no bench-headline markers: not updated")
        return
    text = (text[:begin + len(README_BEGIN)] + "\n" + "\n".join(table) +
            "\n" + text[end:])
    with open(path, "w") as f:
        f.write(text)


def write_report(path, shared_note):
    results = {}
    for name in sorted(os.listdir(RESULTS)) if os.path.isdir(RESULTS) else ():
        if name.endswith(".json"):
            with open(os.path.join(RESULTS, name)) as f:
                r = json.load(f)
            results[r["id"]] = r
    out = ["# inval benchmarks", "",
           "Written by `tests/bench/run.sh` (not part of CI). Every scenario "
           "starts its own loopback Redis Cluster (3 primaries + 3 replicas), "
           "one inval-publisher and one inval-worker per node, and runs inval "
           "and the baseline(s) alternately in one run; each figure is the "
           "median of the runs shown in the notes. Ratios compare runs made "
           "minutes apart on the same cluster, so they hold better than the "
           "absolute figures.", ""]
    head = ["| # | figure | inval | baseline | ratio | target | met |",
            "|---|---|---|---|---|---|---|"]
    table = []
    for sid in sorted(SCENARIOS):
        r = results.get(sid)
        if r is None:
            table.append(f"| {sid} | {SCENARIOS[sid]} | not yet measured | "
                         "| | | |")
            continue
        for row in r["rows"]:
            table.append(f"| {sid} | {row['figure']} | {row['inval']} | "
                         f"{row['baseline']} | {fmt_ratio(row['ratio'])} | "
                         f"{row['target']} | {fmt_met(row['met'])} |")
    out += ["## Headline", ""] + head + table + [""]
    update_readme(head + table)
    for sid in sorted(SCENARIOS):
        r = results.get(sid)
        if r is None:
            continue
        out += [f"## {sid}. {r['title']}", "",
                f"Measured {r['when']} on {r['machine']}; scale "
                f"{r['scale']}, {r['runs']} runs." +
                (f" {r['shared']}" if r.get("shared") else ""), ""]
        out += head[:1] + head[1:] + [
            f"| {sid} | {row['figure']} | {row['inval']} | {row['baseline']} "
            f"| {fmt_ratio(row['ratio'])} | {row['target']} | "
            f"{fmt_met(row['met'])} |" for row in r["rows"]] + [""]
        out += ["Commands:", "", "```"] + r["commands"] + ["```", ""]
        out += [n for note in r["notes"] for n in (note, "")]
    extra = os.path.join(HERE, "NOTES.md")
    if os.path.exists(extra):
        with open(extra) as f:
            out += [f.read().rstrip(), ""]
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("scenarios", nargs="*", type=int,
                    help="scenario numbers (default: all)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply key and event counts (0.1 for a quick run)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shared", default="",
                    help="a note on what else ran on the machine")
    ap.add_argument("--ack-replicas", default=None,
                    help="the publisher's --ack-replicas in scenarios 1 and "
                    "11 (default: the publisher's default; scenario 2 runs "
                    "1 and 0)")
    ap.add_argument("--before-build", default=None, metavar="DIR",
                    help="build tree of the code before the change (e.g. "
                    "main's): scenarios 1, 2, 9, 10 and 11 run its programs "
                    "and this tree's alternately on the same cluster")
    ap.add_argument("--no-report", action="store_true",
                    help="print results, leave BENCHMARKS.md alone")
    args = ap.parse_args()
    wanted = args.scenarios or sorted(SCENARIOS)
    for s in wanted:
        if s not in SCENARIOS:
            ap.error(f"no scenario {s} (have {sorted(SCENARIOS)})")
    os.makedirs(RESULTS, exist_ok=True)
    root = tempfile.mkdtemp(prefix="inval-bench-",
                            dir=os.environ.get("INVAL_TEST_RUNDIR"))
    before = (os.path.abspath(args.before_build) if args.before_build
              else None)
    ctx = Ctx(args.scale, args.runs, root, args.ack_replicas, before)
    failed = []
    for sid in wanted:
        mod = importlib.import_module(SCENARIOS[sid])
        benchlib.log(f"scenario {sid}: {mod.TITLE}")
        try:
            r = mod.run(ctx)
        except Exception:  # noqa: BLE001 - report and go on
            traceback.print_exc()
            failed.append(sid)
            continue
        if r is None:
            continue
        r.update(when=datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"), machine=machine(), scale=args.scale,
            runs=args.runs, shared=args.shared)
        if ctx.ack_replicas is not None and sid in (1, 11):
            r["shared"] = (f"publisher --ack-replicas {ctx.ack_replicas}. " +
                           r["shared"]).strip()
        print(json.dumps(r, indent=1))
        if not args.no_report:
            with open(os.path.join(RESULTS, f"s{sid}.json"), "w") as f:
                json.dump(r, f, indent=1)
    if not args.no_report:
        write_report(os.path.join(REPO, "BENCHMARKS.md"), args.shared)
    shutil.rmtree(root, ignore_errors=True)
    if failed:
        print(f"failed scenarios: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
