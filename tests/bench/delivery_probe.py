"""Delivery of a log entry to its reader on one redis-server: SSUBSCRIBE
hints against one blocking XREADGROUP per stream.

    delivery_probe.py PORT MODE SHARDS RATE COUNT

MODE hint: one connection SSUBSCRIBEs to the SHARDS hint channels; on a
hint (the entry id, SPUBLISHed by the write script) a second connection
runs XREADGROUP ... STREAMS <stream> > (as the worker does). MODE block:
one connection per stream, each with XREADGROUP ... BLOCK 0 ... > always
outstanding (multiplexed with select in this one process). Either way the
reader XACKs an entry after it has it.

A child process (this script with --writer) writes COUNT entries at RATE
entries/s to random streams with the log's write script (XADD, then
SPUBLISH of the id; the block mode ignores the hint), each entry holding
the wall clock of its send in nanoseconds. The time from that send to the
reader having the entry is the figure. Prints one JSON line: p50, p99,
max (us), entries, and the reader's CPU seconds.
"""

import json
import os
import random
import resource
import selectors
import subprocess
import sys
import time

import redis

HOST = "127.0.0.1"
GROUP = "inval"
# The publisher's own script, from its one source.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "proto", "scripts", "log_append.lua"), "rb") as _f:
    SCRIPT = _f.read()


def stream(i):
    return f"probe:log:{{{i}}}"


def channel(i):
    return f"probe:shard:{{{i}}}"


def writer(port, shards, rate, count):
    r = redis.Redis(host=HOST, port=port)
    sha = r.script_load(SCRIPT)
    t0 = time.monotonic()
    for n in range(count):
        due = t0 + n / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        i = random.randrange(shards)
        r.evalsha(sha, 1, stream(i), 100000, str(time.time_ns()), channel(i))


def conn(port):
    c = redis.Connection(host=HOST, port=port, socket_timeout=None)
    c.connect()
    return c


def call(c, *args):
    c.send_command(*args)
    return c.read_response()


def take(c, reply, lat):
    """Records every entry of an XREADGROUP reply and XACKs it."""
    now = time.time_ns()
    for name, entries in reply or ():
        ids = []
        for eid, fields in entries:
            f = dict(zip(fields[::2], fields[1::2]))
            lat.append((now - int(f[b"p"])) / 1000)
            ids.append(eid)
        if ids:
            call(c, "XACK", name, GROUP, *ids)


def read_hint(port, shards, count, lat, start):
    sub, cmd = conn(port), conn(port)
    sub.send_command("SSUBSCRIBE", *[channel(i) for i in range(shards)])
    for _ in range(shards):
        sub.read_response()
    start()
    while len(lat) < count:
        msg = sub.read_response()
        if msg[0] != b"smessage":
            continue
        i = msg[1].decode().split("{", 1)[1].rstrip("}")
        reply = call(cmd, "XREADGROUP", "GROUP", GROUP, "worker", "COUNT",
                     100, "STREAMS", stream(int(i)), ">")
        take(cmd, reply, lat)


def read_block(port, shards, count, lat, start):
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(shards):
        c = conn(port)
        c.send_command("XREADGROUP", "GROUP", GROUP, "worker", "BLOCK", 0,
                       "COUNT", 100, "STREAMS", stream(i), ">")
        sel.register(c._sock, selectors.EVENT_READ, (c, i))
        conns.append(c)
    start()
    while len(lat) < count:
        for key, _ in sel.select():
            c, i = key.data
            take(c, c.read_response(), lat)
            c.send_command("XREADGROUP", "GROUP", GROUP, "worker", "BLOCK",
                           0, "COUNT", 100, "STREAMS", stream(i), ">")


def main():
    if sys.argv[1] == "--writer":
        writer(*map(int, sys.argv[2:6]))
        return
    port, mode = int(sys.argv[1]), sys.argv[2]
    shards, rate, count = map(int, sys.argv[3:6])
    r = redis.Redis(host=HOST, port=port)
    for i in range(shards):
        r.delete(stream(i))
        r.xgroup_create(stream(i), GROUP, "0", mkstream=True)
    lat = []
    procs = []

    def start():
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--writer", str(port), str(shards),
             str(rate), str(count)]))

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        (read_hint if mode == "hint" else read_block)(port, shards, count,
                                                      lat, start)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        procs[0].wait(60)
    finally:
        # The writer is this process's child: never leave it running.
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    lat.sort()
    print(json.dumps({
        "mode": mode, "entries": len(lat),
        "p50": round(lat[len(lat) // 2]),
        "p99": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))]),
        "max": round(lat[-1]),
        "reader_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime -
                              cpu0.ru_utime - cpu0.ru_stime, 3)}))


if __name__ == "__main__":
    main()
