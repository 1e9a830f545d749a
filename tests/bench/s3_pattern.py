"""Scenario 3: pattern invalidation. 1,000,000 keys in the cluster, 10% of
them matching user:*, removed three ways:

  inval      one invalidate event {pattern user:*} through the publisher;
             every primary's worker SCANs its node and UNLINKs, pipelined.
             Timed from the send to the last primary's DBSIZE reaching
             what must remain.
  redis-py   what many teams write: RedisCluster.scan_iter(match, count=
             1000) and delete() per key (tests/bench/redispy_delete.py).
  redis-cli  redis-cli --scan --pattern user:* | sed 's/^/UNLINK /' |
             redis-cli --pipe, one pipeline per primary, in parallel.

After every run, each primary must hold exactly its non-matching keys
(DBSIZE) and no key matching user:* (SCAN), so exactly the matching keys
are gone. The keys are loaded again before every run.
"""

import os
import resource
import time

import benchlib
from benchlib import HOST, PYTHON, Env, log, median

TITLE = "Pattern invalidation (user:* = 10% of 1M keys)"
HERE = os.path.dirname(os.path.abspath(__file__))


def make_keys(total):
    users = total // 10
    keys = [f"user:{i}" for i in range(users)]
    keys += [f"item:{i}" for i in range(total - users)]
    return keys, users


def prepare(env, keys):
    # Every run leaves the item:* keys in place; loading sets them again
    # and brings user:* back.
    benchlib.load_keys(env, keys)
    prim = env.topo.primaries()
    before = benchlib.dbsizes(prim)
    groups = benchlib.group_by_owner(env, [k for k in keys
                                           if k.startswith("user:")])
    expected = {n: before[n] - len(groups.get(n, ())) for n in prim}
    return prim, expected


def check(prim, expected):
    for n in prim:
        size = n.client(timeout=60).dbsize()
        left = list(n.client(timeout=60).scan_iter(match="user:*",
                                                   count=5000))
        if size != expected[n] or left:
            other = [k for k in n.client(timeout=60).scan_iter(count=5000)
                     if not k.startswith(b"item:")]
            raise AssertionError(f"{n.addr}: DBSIZE {size}, want "
                                 f"{expected[n]}; {len(left)} user:* keys "
                                 f"left, e.g. {left[:5]}; keys other than "
                                 f"item:*: {other[:10]}")


class Cpu:
    """CPU seconds used meanwhile by the Redis nodes, the workers, and our
    child processes (redis-py, redis-cli)."""

    def __init__(self, env):
        self.pids = [n.pid for n in env.redis.nodes] + \
            [w.pid for w in env.workers]
        self.t0 = self._now()

    def _now(self):
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (sum(benchlib.cpu_seconds(p) for p in self.pids) +
                ru.ru_utime + ru.ru_stime)

    def used(self):
        return self._now() - self.t0


def run_inval(env, keys):
    prim, expected = prepare(env, keys)
    cpu = Cpu(env)
    t0, _ = benchlib.invalidate(env, [{"kind": "pattern",
                                       "target": "user:*"}])
    dt = benchlib.wait_dbsize(prim, expected, t0)
    used = cpu.used()
    check(prim, expected)
    return dt, used


def run_redispy(env, keys):
    prim, expected = prepare(env, keys)
    argv = [PYTHON, os.path.join(HERE, "redispy_delete.py"),
            env.seeds[0], "user:*"]
    cpu = Cpu(env)
    res, _ = benchlib.run(argv, timeout=3600)
    used = cpu.used()
    dt = float(res.stdout.split()[0])
    check(prim, expected)
    return dt, used, argv


def run_redis_cli(env, keys):
    prim, expected = prepare(env, keys)
    cpu = Cpu(env)
    one = ("redis-cli -h {h} -p {p} --scan --pattern 'user:*' | "
           "sed 's/^/UNLINK /' | redis-cli -h {h} -p {p} --pipe >/dev/null")
    script = " & ".join(one.format(h=HOST, p=n.port) for n in prim) + \
        " & wait"
    t0 = time.monotonic()
    benchlib.run(["bash", "-c", script], timeout=3600)
    dt = time.monotonic() - t0
    used = cpu.used()
    check(prim, expected)
    return dt, used, one.format(h=HOST, p="PORT")


def run(ctx):
    total = max(10000, int(1000000 * ctx.scale))
    keys, users = make_keys(total)
    t_inval, t_py, t_cli = [], [], []
    c_inval, c_py, c_cli = [], [], []
    with Env(ctx.workdir("s3")) as env:
        # One event first, so that the log key and heartbeats exist before
        # DBSIZE figures are read.
        benchlib.warm_up(env)
        for i in range(ctx.runs):
            dt, used, py_argv = run_redispy(env, keys)
            t_py.append(dt)
            c_py.append(used)
            dt, used = run_inval(env, keys)
            t_inval.append(dt)
            c_inval.append(used)
            dt, used, cli_cmd = run_redis_cli(env, keys)
            t_cli.append(dt)
            c_cli.append(used)
            log(f"s3 run {i + 1}: inval {t_inval[-1]:.3f} s "
                f"({c_inval[-1]:.2f} CPU s), redis-py {t_py[-1]:.3f} s "
                f"({c_py[-1]:.2f}), redis-cli {t_cli[-1]:.3f} s "
                f"({c_cli[-1]:.2f})")
    mi, mp, mc = median(t_inval), median(t_py), median(t_cli)
    return {
        "id": 3, "title": TITLE,
        "rows": [
            {"figure": f"remove {users:,} user:* of {total:,} keys",
             "inval": f"{mi:.2f} s", "baseline": f"redis-py {mp:.2f} s",
             "ratio": mp / mi, "target": ">= 10x", "met": mp / mi >= 10},
            {"figure": "same", "inval": f"{mi:.2f} s",
             "baseline": f"redis-cli pipe {mc:.2f} s", "ratio": mc / mi,
             "target": ">= 1.5x", "met": mc / mi >= 1.5},
            {"figure": "CPU seconds used (Redis nodes + workers or "
                       "client processes)",
             "inval": f"{median(c_inval):.2f} s",
             "baseline": f"redis-py {median(c_py):.2f} s, redis-cli "
                         f"{median(c_cli):.2f} s",
             "ratio": median(c_cli) / median(c_inval), "target": "",
             "met": None}],
        "commands": [
            "invalctl invalidate --pattern 'user:*'  (timed from the send "
            "over the RPC port to the last primary's DBSIZE reaching its "
            "non-matching count)",
            benchlib.cmdline(py_argv),
            cli_cmd + "   # one per primary, all in parallel"],
        "notes": [f"Seconds per run (median of {ctx.runs}, alternating): "
                  f"inval {[round(x, 3) for x in t_inval]}, redis-py "
                  f"{[round(x, 2) for x in t_py]}, redis-cli "
                  f"{[round(x, 2) for x in t_cli]}. Checked after every "
                  "run: exactly the matching keys are gone. redis-cli 7.0 "
                  "has no --count for --scan, so it scans with SCAN's "
                  "default COUNT 10, as users of that version get."],
    }
