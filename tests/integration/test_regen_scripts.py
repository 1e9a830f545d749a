"""The regeneration scripts of proto/scripts/, run directly with EVAL from
redis-py (standalone and cluster), the C read path's NOSCRIPT fallback, and
`invalctl get`.

- commit.lua writes K (with or without TTL) and removes L(K) and S(K) only
  for the holder of the lock's token; otherwise it returns 0 and touches
  nothing.
- unlock.lua removes L(K) only for its holder.
- soft.lua moves K to S(K) with the grace TTL (replacing an older stale
  copy) and removes L(K); with K absent it removes only L(K).
- The SHA1 of each file is what SCRIPT LOAD answers (the C side embeds the
  file's SHA1 for EVALSHA).
- `invalctl get KEY` shows the value, the stale copy and the lock holder
  with their TTLs, and the note for a key without lock or stale copy.
"""

import hashlib
import os
import re

import pytest

import harness
from regenlib import cache_check, client, names, seeds_arg
from workerlib import Topo

SCRIPTS = os.path.join(harness.REPO_ROOT, "proto", "scripts")
TOKEN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def source(name):
    with open(os.path.join(SCRIPTS, name), "rb") as f:
        return f.read()


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def run(r, name, key, *args):
    lock, stale = names(key)
    if name == "unlock.lua":
        return r.eval(source(name), 1, lock, *args)
    return r.eval(source(name), 3, key, lock, stale, *args)


def test_commit(topo):
    r = client(topo)
    key = "sc:commit"
    lock, stale = names(key)
    # The holder commits: K written with its TTL, L and S gone.
    r.set(lock, TOKEN)
    r.set(stale, "old")
    assert run(r, "commit.lua", key, TOKEN, "fresh", 60000) == 1
    assert r.get(key) == b"fresh" and 0 < r.pttl(key) <= 60000
    assert r.exists(lock) == 0 and r.exists(stale) == 0
    # TTL 0: no TTL.
    r.set(lock, TOKEN)
    assert run(r, "commit.lua", key, TOKEN, "forever", 0) == 1
    assert r.get(key) == b"forever" and r.pttl(key) == -1
    # Fenced: another token, or no lock at all. Nothing is touched.
    r.set(lock, OTHER)
    r.set(stale, "old")
    assert run(r, "commit.lua", key, TOKEN, "late", 60000) == 0
    assert r.get(key) == b"forever"
    assert r.get(lock) == OTHER.encode() and r.get(stale) == b"old"
    r.delete(lock, key)
    assert run(r, "commit.lua", key, TOKEN, "late", 60000) == 0
    assert r.exists(key) == 0 and r.get(stale) == b"old"
    # Binary values survive byte for byte.
    r.set(lock, TOKEN)
    blob = bytes(range(256))
    assert run(r, "commit.lua", key, TOKEN, blob, 0) == 1
    assert r.get(key) == blob


def test_unlock(topo):
    r = client(topo)
    key = "{sc}:unlock"
    lock, _ = names(key)
    assert lock == "{sc}:unlock:lock"
    r.set(lock, OTHER)
    assert run(r, "unlock.lua", key, TOKEN) == 0
    assert r.get(lock) == OTHER.encode()
    r.set(lock, TOKEN)
    assert run(r, "unlock.lua", key, TOKEN) == 1
    assert r.exists(lock) == 0
    assert run(r, "unlock.lua", key, TOKEN) == 0


def test_soft(topo):
    r = client(topo)
    key = "sc:soft"
    lock, stale = names(key)
    r.set(key, "v2", px=600000)
    r.set(lock, TOKEN)
    r.set(stale, "v1")
    assert run(r, "soft.lua", key, 30000) == 1
    assert r.exists(key) == 0 and r.exists(lock) == 0
    assert r.get(stale) == b"v2" and 0 < r.pttl(stale) <= 30000
    # K absent: only the lock goes; the stale copy keeps value and TTL.
    r.set(lock, TOKEN)
    assert run(r, "soft.lua", key, 5000) == 0
    assert r.exists(lock) == 0
    assert r.get(stale) == b"v2" and 5000 < r.pttl(stale) <= 30000


def test_script_sha_and_read_path_noscript(topo):
    r = client(topo)
    for name in ("commit.lua", "unlock.lua", "soft.lua"):
        body = source(name)
        assert r.script_load(body) == hashlib.sha1(body).hexdigest()
    # The C read path after SCRIPT FLUSH: EVALSHA fails with NOSCRIPT and
    # the call is made again with EVAL, which also loads the script.
    for n in topo.primaries():
        n.client().script_flush()
    sha = hashlib.sha1(source("commit.lua")).hexdigest()
    key = "sc:noscript"
    rc, out = cache_check("get", topo, key, "-v", "filled-after-flush")
    assert rc == 0 and out["source"] == "filled", out
    assert r.get(key) == b"filled-after-flush"
    owner = topo.owner_of(key).client()
    assert owner.script_exists(sha) == [True]


def ctl_get(topo, key, *extra):
    return harness.invalctl("get", "-r", seeds_arg(topo), *extra, key)


def test_invalctl_get(topo):
    r = client(topo)
    key = "user:{7}:card"
    lock, stale = names(key)
    assert lock == "user:{7}:card:lock"
    r.set(key, "fresh value", px=90000)
    r.set(stale, "old", px=20000)
    r.set(lock, TOKEN, px=5000)
    p = ctl_get(topo, key)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f"slot  {harness.key_slot(key)}"
    m = re.fullmatch(r"value user:\{7\}:card fresh\\x20value ttl=(\d+)ms",
                     lines[1])
    assert m and 80000 < int(m.group(1)) <= 90000, lines
    m = re.fullmatch(r"stale user:\{7\}:card:stale old ttl=(\d+)ms", lines[2])
    assert m and 0 < int(m.group(1)) <= 20000, lines
    m = re.fullmatch(rf"lock  user:\{{7\}}:card:lock holder={TOKEN} "
                     r"ttl=(\d+)ms", lines[3])
    assert m and 0 < int(m.group(1)) <= 5000, lines
    assert len(lines) == 4

    # Absent pieces, and a value without TTL.
    r.delete(lock, stale)
    r.persist(key)
    p = ctl_get(topo, key)
    assert p.returncode == 0
    assert p.stdout.splitlines()[1:] == [
        "value user:{7}:card fresh\\x20value ttl=none",
        "stale user:{7}:card:stale (absent)",
        "lock  user:{7}:card:lock (absent)"]
    p = ctl_get(topo, "nothing:here")
    assert p.stdout.splitlines()[1:] == [
        "value nothing:here (absent)",
        "stale {nothing:here}:stale (absent)",
        "lock  {nothing:here}:lock (absent)"]
    # No lock or stale copy for a key whose names would leave its slot.
    p = ctl_get(topo, "a}{b")
    assert p.returncode == 0
    assert p.stdout.splitlines()[1] == "value a}{b (absent)"
    assert p.stdout.splitlines()[2].startswith("note  this key has no lock")
    # A key of another type is reported, exit 1.
    r.rpush("sc:list", "x")
    p = ctl_get(topo, "sc:list")
    assert p.returncode == 1 and "(unreadable: WRONGTYPE" in p.stdout


def test_invalctl_get_errors(standalone):
    p = harness.invalctl("get", "-r", standalone.addr)
    assert p.returncode == 2 and "KEY is required" in p.stderr
    p = harness.invalctl("get", "-r", "nohostport", "k")
    assert p.returncode == 2 and "bad Redis address" in p.stderr
    p = harness.invalctl("get", "-r", standalone.addr, "k1", "k2")
    assert p.returncode == 2 and "unexpected argument k2" in p.stderr
    port = harness.free_port()
    p = harness.invalctl("get", "-r", f"127.0.0.1:{port}", "k")
    assert p.returncode == 3 and "cannot connect" in p.stderr
    p = harness.invalctl("help", "get")
    assert p.returncode == 0 and "holder=TOKEN" in p.stdout
