"""inv_key_slot() and inv_glob_match() agree with a live Redis.

slot_tool prints our slot for each stdin line; it is compared with CLUSTER
KEYSLOT on a cluster-enabled node (which answers without any slot assigned)
for 20,000 generated keys. glob_tool prints our match result for each
"pattern<TAB>key" line; it is compared with KEYS on a standalone server
holding a universe of keys, for hand-written and random patterns.
"""

import random
import subprocess

import pytest

import harness
from harness import RedisServer

N_SLOT_KEYS = 20000


def _run_tool(name, lines):
    """Feeds lines (bytes without '\\n') to a tool; returns its output lines."""
    data = b"".join(line + b"\n" for line in lines)
    proc = subprocess.run([harness.binary(name)], input=data,
                          capture_output=True, timeout=60, check=True)
    out = proc.stdout.decode().splitlines()
    assert len(out) == len(lines), proc.stderr.decode(errors="replace")
    return out


# ---- slots -----------------------------------------------------------------

def _random_bytes(rng, lo, hi):
    """Mostly printable bytes, sometimes any byte but '\\n' (slot_tool's
    line separator): high bytes, NUL, '\\r' and TAB included."""
    n = rng.randint(lo, hi)
    out = bytearray()
    for _ in range(n):
        r = rng.random()
        if r < 0.85:
            out.append(rng.randint(0x20, 0x7E))
        elif r < 0.95:
            out.append(rng.randint(0x80, 0xFF))
        else:
            out.append(rng.choice([0x00, 0x09, 0x0D, 0x7F, 0x01]))
    return bytes(out)


def _slot_keys(rng, n):
    keys = [b"", b"123456789", b"{}", b"{", b"}", b"}{", b"{}{}", b"{{}}",
            b"{a}", b"{{a}}", b"a{}b{c}", b"{user:42}:profile",
            b"foo{bar}{zap}", b"foo{{bar}}zap", b"\xff\x00\x80"]
    kinds = ["plain", "tag", "empty_tag", "nested", "unclosed", "multi",
             "close_first", "braces_only"]
    while len(keys) < n:
        kind = rng.choice(kinds)
        a = _random_bytes(rng, 0, 12)
        b = _random_bytes(rng, 0, 8)
        c = _random_bytes(rng, 0, 12)
        if kind == "plain":
            k = _random_bytes(rng, 1, 40)
        elif kind == "tag":
            k = a + b"{" + b + b"}" + c
        elif kind == "empty_tag":
            k = a + b"{}" + c + rng.choice([b"", b"{" + b + b"}"])
        elif kind == "nested":
            k = a + b"{{" + b + b"}}" + c
        elif kind == "unclosed":
            k = a + b"{" + b + c.replace(b"}", b"")
        elif kind == "multi":
            k = a + b"{" + b + b"}{" + c + b"}"
        elif kind == "close_first":
            k = a + b"}" + b + b"{" + c + b"}"
        else:
            k = bytes(rng.choice(b"{}ab") for _ in range(rng.randint(1, 8)))
        keys.append(k)
    return keys


@pytest.fixture
def cluster_node(workdir):
    node = RedisServer(workdir, cluster=True).start()
    yield node
    node.stop()


def test_key_slots_match_cluster_keyslot(cluster_node):
    rng = random.Random(20261125)
    keys = _slot_keys(rng, N_SLOT_KEYS)
    assert all(b"\n" not in k for k in keys)
    ours = [int(x) for x in _run_tool("slot_tool", keys)]

    client = cluster_node.client()
    theirs = []
    for i in range(0, len(keys), 2000):
        pipe = client.pipeline(transaction=False)
        for k in keys[i:i + 2000]:
            pipe.execute_command("CLUSTER", "KEYSLOT", k)
        theirs.extend(int(x) for x in pipe.execute())

    assert len(theirs) == len(keys)
    bad = [(k, o, t) for k, o, t in zip(keys, ours, theirs) if o != t]
    assert not bad, f"{len(bad)} slot mismatches, first: {bad[:5]}"
    assert ours[1] == 0x31C3 % 16384
    # The generated keys cover the slot space broadly.
    assert len(set(ours)) > 10000


# ---- glob ------------------------------------------------------------------

HAND_PATTERNS = [
    b"*", b"**", b"?", b"??", b"*?*", b"", b"a", b"a*", b"*a", b"*a*",
    b"a*b", b"a?b", b"*b*a*", b"h?llo", b"h*llo", b"h[ae]llo", b"h[^e]llo",
    b"h[a-b]llo", b"[a-z]*", b"[z-a]*", b"[0-9]", b"[^0-9]*", b"[]", b"[]]",
    b"[^]", b"[a-]", b"[a-]]", b"[abc", b"a[", b"a[^", b"[", b"[\\]]",
    b"[\\-]", b"[a\\-z]", b"[\\^a]*", b"\\*", b"\\?", b"\\[a]", b"\\\\",
    b"a\\", b"\\", b"*\\", b"a\\*b*", b"{user:42}:*", b"{*}", b"\\{*\\}",
    b"[\x80-\xff]*", b"[a-\xff]", b"*\xff", b"user:[0-9][0-9]", b"*:*:*",
    b"[[]", b"[*]", b"[?]*", b"*[", b"a**b", b"a*b**", b"*a*a*a*a*b",
]

HAND_KEYS = [
    b"", b"a", b"b", b"ab", b"ba", b"aab", b"abb", b"a*b", b"a?b", b"axb",
    b"hello", b"hallo", b"hbllo", b"hillo", b"hllo", b"heeello", b"*", b"?",
    b"[", b"]", b"[a]", b"\\", b"a\\", b"-", b"^", b"_", b"0", b"5", b"9x",
    b"m", b"A", b"Z", b"{user:42}:a", b"{user:42}:", b"{}", b"{x}",
    b"user:42", b"user:4", b"user:x2", b"a:b:c", b"::", b"\x80", b"\xff",
    b"\x90abc", b"x\xff", b"aaaaab", b"aaaaa", b"abababab", b"a\tb",
    b"\x00", b"a\x00b", b"\r",
]


def _random_patterns_and_keys(rng, npat, nkey):
    palpha = b"ab*?[]^-\\\x80\xff"
    kalpha = b"ab[]^-\\*?\x80\xff"
    pats = {bytes(rng.choice(palpha) for _ in range(rng.randint(1, 8)))
            for _ in range(npat)}
    keys = {bytes(rng.choice(kalpha) for _ in range(rng.randint(1, 7)))
            for _ in range(nkey)}
    return sorted(pats), sorted(keys)


def _keys_results(client, patterns):
    pipe = client.pipeline(transaction=False)
    for p in patterns:
        pipe.execute_command("KEYS", p)
    return [set(r) for r in pipe.execute()]


def _compare(client, patterns, keys):
    """Sets keys, runs KEYS for every pattern and compares with glob_tool
    for every pattern/key pair. Returns (pairs checked, mismatches)."""
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.set(k, b"1")
    pipe.execute()
    assert client.dbsize() == len(keys)
    matched = _keys_results(client, patterns)
    lines = [p + b"\t" + k for p in patterns for k in keys]
    ours = _run_tool("glob_tool", lines)
    bad = []
    i = 0
    for p, m in zip(patterns, matched):
        for k in keys:
            want = k in m
            got = ours[i] == "1"
            i += 1
            if got != want:
                bad.append((p, k, got, want))
    return len(lines), bad


def test_glob_matches_redis_keys_hand_written(standalone):
    keys = sorted(set(HAND_KEYS))
    patterns = sorted(set(HAND_PATTERNS))
    assert not any(b"\t" in p or b"\n" in p for p in patterns)
    n, bad = _compare(standalone.client(), patterns, keys)
    assert n == len(patterns) * len(keys) > 3000
    assert not bad, f"{len(bad)} mismatches (pattern, key, ours, redis): {bad[:8]}"


def test_glob_matches_redis_keys_random(standalone):
    rng = random.Random(7)
    patterns, keys = _random_patterns_and_keys(rng, 300, 300)
    patterns = [p for p in patterns if b"\t" not in p]
    n, bad = _compare(standalone.client(), patterns, keys + [b""])
    assert n > 50000
    assert not bad, f"{len(bad)} mismatches (pattern, key, ours, redis): {bad[:8]}"


def test_glob_nesting_limit_matches_redis(standalone):
    # Redis gives up on a match that needs more than 1000 '*' runs; so do we.
    key = b"a" * 1001
    patterns = [b"*a" * 1000, b"*a" * 1001, b"*a" * 1000 + b"*",
                b"*a" * 1001 + b"*", b"*a*a*a*a*a*a*a*a*a*a*a*a*a*b"]
    n, bad = _compare(standalone.client(), patterns, [key])
    assert n == len(patterns)
    assert not bad, bad
    ours = _run_tool("glob_tool", [p + b"\t" + key for p in patterns])
    assert ours == ["1", "0", "1", "0", "0"]
