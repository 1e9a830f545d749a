"""The glob rules judged against a real Redis.

- Differential: random patterns from a grammar (literals, binary bytes, '*',
  '?', classes with ranges, negation and escapes, unclosed classes, trailing
  backslashes) against random keys loaded in a standalone Redis. For every
  pattern, SCAN MATCH (a full iteration) and the local matcher (glob_tool
  --batch, the C code itself) agree on every key. Every pattern the
  publisher accepts without --allow-flush (well-formed, no flush) leaves its
  witness (the key of inv_glob_unmatched_byte()'s bytes) unmatched in Redis;
  every flush matches a key exactly when Redis matches the key of 'a's of
  the same length. Seeded: INVAL_GLOB_SEED overrides the random seed, which
  every failure message names.
- Through the real publisher and a worker: disguised match-alls and
  malformed patterns are refused with EINVAL and delete nothing; selective
  patterns are acked and delete exactly what SCAN MATCH names; a key or a
  prefix inside the service's namespace is refused even with --allow-flush,
  while the prefix "cache:" is accepted and deletes cache:user:1.
"""

import os
import random
import subprocess

import pytest

import harness
from harness import RpcClient, HOST
from workerlib import (Topo, keys_present, load_keys, send_events, shard_key,
                       start_workers, settle, wait_applied)

N_KEYS = 1500
N_PATTERNS = 700
WITNESS_LENGTHS = (1, 2, 3, 5, 8)

# Bytes the grammar draws literals from: glob metacharacters as literals,
# NUL, high bytes (signed-char ranges), and a few letters so that matches
# are frequent.
LITERALS = b"ab:-^]\\[*?{}\x00\x01\x7f\x80\xfe\xff\n"
KEY_BYTES = b"ab:-^]\\[*?{}\x00\x7f\x80\xff\n"


def _seed():
    env = os.environ.get("INVAL_GLOB_SEED")
    return int(env) if env else random.SystemRandom().randrange(1 << 32)


def _literal(rng):
    return bytes([rng.choice(LITERALS)])


def _class(rng):
    out = bytearray(b"[")
    if rng.random() < 0.4:
        out += b"^"
    for _ in range(rng.randint(0, 3)):
        r = rng.random()
        if r < 0.4:
            out += _literal(rng)
        elif r < 0.75:
            out += _literal(rng) + b"-" + _literal(rng)
        else:
            out += b"\\" + _literal(rng)
    if rng.random() < 0.9:
        out += b"]"  # else unclosed: runs to the end of the pattern
    return bytes(out)


def _pattern(rng):
    out = bytearray()
    for _ in range(rng.randint(1, 6)):
        r = rng.random()
        if r < 0.3:
            out += _literal(rng)
        elif r < 0.5:
            out += b"*"
        elif r < 0.62:
            out += b"?"
        elif r < 0.88:
            out += _class(rng)
        else:
            out += b"\\" + _literal(rng)
    if rng.random() < 0.04:
        out += b"\\"  # a trailing lone backslash
    return bytes(out)


def _key(rng):
    return bytes(rng.choice(KEY_BYTES) for _ in range(rng.randint(1, 8)))


# Disguised match-alls and other spellings worth pinning down every run.
HAND_PATTERNS = [
    b"*", b"**", b"?", b"??*", b"*?*", b"*[^]*", b"[^]*", b"*[^]", b"[^]",
    b"[", b"*[", b"[^", b"*[^", b"*\\", b"\\", b"[\\]", b"[a-]", b"[a-]]",
    b"[^a-a][^]*", b"*[\x80-\x7f]*", b"*[\x00-\xff]*", b"[\x01-\x7f\x80-\xff\\\x00]*",
    b"[]*", b"[]]*", b"user:*", b"[ab]*", b"*x*", b"\\*", b"[^\\\x00]*",
]


def _scan_sets(client, patterns):
    """{pattern: set of keys} from a full SCAN MATCH iteration each."""
    return {p: set(client.scan_iter(match=p, count=5000)) for p in patterns}


def _local(patterns, keys):
    """glob_tool --batch: [(well_formed, flush, byte, [match per key])]."""
    data = [f"{len(patterns)} {len(keys)}".encode()]
    data += [x.hex().encode() for x in patterns + keys]
    proc = subprocess.run([harness.binary("glob_tool"), "--batch"],
                          input=b"\n".join(data) + b"\n", capture_output=True,
                          timeout=60, check=True)
    out = []
    for line in proc.stdout.decode().splitlines():
        check, flush, byte, row = line.split(" ")
        out.append((check == "1", flush == "1", int(byte),
                    [c == "1" for c in row]))
    assert len(out) == len(patterns), proc.stderr.decode(errors="replace")
    return out


def test_glob_differential_scan(standalone):
    seed = _seed()
    print(f"glob differential seed: {seed} (set INVAL_GLOB_SEED to replay)")
    rng = random.Random(seed)
    keys = {_key(rng) for _ in range(N_KEYS)}
    # Witnesses: every byte repeated, so each pattern's witness is loaded,
    # and the 'a' keys of every length that the flush check compares with.
    keys |= {bytes([b]) * n for b in range(256) for n in WITNESS_LENGTHS}
    keys |= {b"a" * n for n in range(1, 9)}
    keys = sorted(keys)
    patterns = sorted(set(HAND_PATTERNS) |
                      {_pattern(rng) for _ in range(N_PATTERNS)})

    client = standalone.client()
    load_keys(Topo(standalone), keys)
    assert client.dbsize() == len(keys)

    theirs = _scan_sets(client, patterns)
    ours = _local(patterns, keys)
    where = f"(seed {seed})"
    mismatches = []
    accepted = flushes = malformed = 0
    for p, (ok, flush, byte, row) in zip(patterns, ours):
        got = {k for k, m in zip(keys, row) if m}
        if got != theirs[p]:
            mismatches.append((p, sorted(got ^ theirs[p])[:4]))
            continue
        if not ok:
            malformed += 1
            continue
        if flush:
            flushes += 1
            # Only lengths decide: a key matches iff the 'a' key of its
            # length does (the empty key is not stored).
            for k in keys:
                assert (k in theirs[p]) == (b"a" * len(k) in theirs[p]), \
                    f"flush {p!r} tells {k!r} from a's {where}"
            continue
        accepted += 1
        assert byte >= 0, f"{p!r} is no flush yet has no witness byte {where}"
        for n in WITNESS_LENGTHS:
            w = bytes([byte]) * n
            assert w not in theirs[p], \
                f"accepted {p!r}: Redis matches its witness {w!r} {where}"
    assert not mismatches, \
        f"{len(mismatches)} patterns where SCAN MATCH and the matcher " \
        f"differ {where}, e.g. (pattern, keys that differ): {mismatches[:5]}"
    # The grammar reaches every verdict.
    assert accepted > 100 and flushes > 5 and malformed > 20, \
        (accepted, flushes, malformed)


# --------------------------------------------------------------------------
# Through the publisher.

REFUSED_FLUSHES = [b"*", b"?*", b"??", b"?", b"*?*", b"*[^]*", b"[^]*",
                   b"*[^]", b"[^]?*", b"*[\x80-\x7f]*",
                   b"[\x01-\x7f\x80-\xff\\\x00]*"]
REFUSED_MALFORMED = [b"[", b"*[", b"[^", b"*[^", b"*\\", b"\\", b"[\\]",
                     b"[a-]", b"user:[", b"*[^]*["]
SELECTIVE = [b"user:*", b"[ab]*", b"*x*", b"\\*", b"*[\x00-\xff]*",
             b"[^a-a][^]*"]
UNIVERSE = [b"user:1", b"user:2", b"user:", b"users", b"a", b"b", b"ab",
            b"ba", b"c", b"x", b"axb", b"yyx", b"*", b"**", b"[", b"\\",
            b"?", b"\x00", b"k\x00", b"\xff", b"k\xff", b"\x80", b"aa",
            b"a:1", b"cache:user:1", b"zzz"] + \
           [f"bulk:{i}".encode() for i in range(200)]


def _error(pub, events):
    with RpcClient(HOST, pub.port) as c:
        err, res = c.call("invalidate", events)
    return err, res


def _present(topo):
    """The keys held, as bytes, but for the service's own (the log and the
    heartbeats come and go as the daemons run)."""
    keys = {k.encode("utf-8", "surrogateescape") for k in keys_present(topo)}
    return {k for k in keys if not (k == b"cache:invalidation" or
                                    k.startswith(b"cache:invalidation:"))}


@pytest.fixture
def daemons(standalone, worker_factory, publisher_factory):
    """(topo, workers, publisher, publisher with --allow-flush)."""
    topo = Topo(standalone)
    workers = start_workers(topo, worker_factory)
    return (topo, workers, publisher_factory(topo.seeds),
            publisher_factory(topo.seeds, "--allow-flush"))


def test_publisher_refuses_disguised_flushes(standalone, daemons):
    topo, workers, pub, flusher = daemons
    load_keys(topo, UNIVERSE)
    before = _present(topo)
    assert before == set(UNIVERSE)

    for p in REFUSED_FLUSHES:
        err, _ = _error(pub, [{"kind": "pattern", "target": p}])
        assert err is not None and err["code"] == "EINVAL", (p, err)
        assert "matches every key" in err["message"], (p, err)
    for p in REFUSED_MALFORMED:
        for which in (pub, flusher):
            err, _ = _error(which, [{"kind": "pattern", "target": p}])
            assert err is not None and err["code"] == "EINVAL", (p, err)
            assert "malformed" in err["message"], (p, err)
    # Nothing was logged, so nothing can have been deleted: a selective
    # event sent after them is the first entry, and once it is applied
    # every other key is still there.
    last = send_events(pub, [{"kind": "key", "target": b"zzz"}])
    wait_applied(workers, last)
    settle(workers)
    assert _present(topo) == before - {b"zzz"}
    log = standalone.client().xrange(shard_key(0))
    assert len(log) == 1, log

    # Selective patterns delete exactly what SCAN MATCH names.
    client = standalone.client()
    for p in SELECTIVE:
        held = _present(topo)
        want = set(client.scan_iter(match=p, count=5000))
        assert want, f"{p!r} matches nothing here: a weak case"
        last = send_events(pub, [{"kind": "pattern", "target": p}])
        wait_applied(workers, last)
        settle(workers)
        assert _present(topo) == held - want, p


def test_publisher_refuses_reserved_targets(standalone, daemons):
    topo, workers, pub, flusher = daemons
    load_keys(topo, [b"cache:user:1", b"cache:invalidations", b"other:1"])
    reserved = [("key", "cache:invalidation:log"),
                ("key", "cache:invalidation:workers"),
                ("key", "cache:invalidation"),
                ("prefix", "cache:invalidation:"),
                ("prefix", "cache:invalidation:l"),
                ("prefix", "cache:invalidation")]
    for kind, target in reserved:
        for which in (pub, flusher):
            err, _ = _error(which, [{"kind": kind, "target": target}])
            assert err is not None and err["code"] == "EINVAL", \
                (kind, target, err)
            assert "own namespace" in err["message"], err
    client = standalone.client()
    assert not client.exists("cache:invalidation:log")  # nothing logged

    # The prefix "cache:" is ordinary: acked, and it deletes cache:user:1.
    last = send_events(pub, [{"kind": "prefix", "target": "cache:"}])
    wait_applied(workers, last)
    settle(workers)
    assert not client.exists("cache:user:1")
    assert not client.exists("cache:invalidations")
    assert client.exists("other:1")
