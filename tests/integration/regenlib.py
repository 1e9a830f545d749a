"""Helpers shared by the regeneration tests (test_regen_*.py: the key
contract, scripts and read path of proto/PROTOCOL.md, "Regeneration").

- names(key): the lock and stale names of a value key, per the contract in
  proto/PROTOCOL.md, written here independently of the C code so that the
  tests check the C side against the document.
- cache_check(...): runs the C read-path driver (tests/tools/cache_check.c)
  and parses its "name value" lines.
- Invalidator: invalidate through a real publisher and wait until the
  worker of the key's node has applied the entry.
- client(topo): a redis-py client for standalone Redis or the cluster.
"""

import subprocess

import harness
from harness import HOST, RpcClient
from workerlib import key_slot, poll, sid, wstats


def hash_tag(key):
    """The non-empty hash tag of key (bytes) or None."""
    start = key.find(b"{")
    if start < 0:
        return None
    end = key.find(b"}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1:end]


def names(key):
    """(lock, stale) of value key (str or bytes, returned as str), or None
    when the names cannot keep the key's slot (then K has neither)."""
    k = key.encode() if isinstance(key, str) else key
    base = k if hash_tag(k) is not None else b"{" + k + b"}"
    lock, stale = base + b":lock", base + b":stale"
    if not key_slot(lock) == key_slot(stale) == key_slot(k):
        return None
    return lock.decode("utf-8", "surrogateescape"), \
        stale.decode("utf-8", "surrogateescape")


def seeds_arg(topo):
    return ",".join(topo.seeds)


def client(topo):
    """redis-py client of standalone Redis, or the cluster client."""
    return topo.target.client()


def parse(text):
    """{"name": value} of cache_check's lines; "got" lines are gathered in
    out["got"] as {(source, value): count}; stat.* values are ints."""
    out = {"got": {}, "errors": []}
    for line in text.splitlines():
        parts = line.split(" ")
        if parts[0] == "got":
            out["got"][(parts[1], parts[2])] = int(parts[3])
        elif parts[0] == "error":
            out["errors"].append(parts[1])
        elif parts[0].startswith("stat.") or parts[0] in ("regenerations",
                                                           "redirects"):
            out[parts[0]] = int(parts[1])
        elif len(parts) >= 2:
            out[parts[0]] = " ".join(parts[1:])
    return out


def cache_check(mode, topo, key, *args, timeout=120):
    """Runs cache_check MODE against topo for key; returns (returncode,
    parsed output)."""
    argv = [harness.binary("cache_check"), mode, "-r", seeds_arg(topo),
            "-k", key, *map(str, args)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert p.returncode in (0, 1), (argv, p.returncode, p.stderr)
    return p.returncode, parse(p.stdout)


class Invalidator:
    """Sends invalidations through one publisher and waits for a worker."""

    def __init__(self, pub, timeout=20):
        self.rpc = RpcClient(HOST, pub.port, timeout=timeout)

    def close(self):
        self.rpc.close()

    def send(self, *events):
        """Sends one batch; returns its log entry id."""
        err, res = self.rpc.call("invalidate", list(events))
        assert err is None, err
        assert res["accepted"] == len(events), res
        return res["id"]

    @staticmethod
    def wait(worker, entry_id, timeout=30, interval=0.002):
        """Waits until worker's last_applied_id >= entry_id."""
        want = sid(entry_id)
        poll(lambda: sid(wstats(worker)["last_applied_id"]) >= want, timeout,
             f"{worker.name} applied {entry_id}", interval=interval)


def ev(kind, target, mode="hard"):
    return {"kind": kind, "target": target, "mode": mode}


def worker_for(topo, workers, key):
    """The worker of the primary that owns key's slot."""
    owner = topo.owner_of(key)
    for w in workers:
        if w.node == owner.addr:
            return w
    raise KeyError(key)
