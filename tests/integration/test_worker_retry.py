"""An UNLINK that Redis refuses keeps its log entry open until it succeeds.

The worker runs as the README's inval-worker ACL user, narrowed so that it
may not touch the keys named "no:*" (their UNLINK gets NOPERM) while it may
delete "ok:*". An entry naming no:1 is followed by one naming ok:1. The
later entry's work is done at once (ok:1 goes), but while no:1 is denied the
worker must neither delete it nor acknowledge its entry (the entry stays
pending in the shard's consumer group, and stats and heartbeat stay before
it); it must keep trying (unlink_retries).
Once the ACL allows the key, no:1 goes and the position reaches the last
entry. Keys that were never named survive throughout.
"""

import os
import re

from workerlib import (Topo, heartbeats, key_events, poll, send_events,
                       shard_key, sid, wait_applied, wstats)

PASSWORD = "retry-test-password"
README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                      "README.md")


def worker_rules(keys):
    """The README's inval-worker rules with its key patterns replaced."""
    with open(README) as f:
        text = f.read()
    m = re.search(r"^ACL SETUSER inval-worker (.*)$", text, re.M)
    assert m, "README.md gives no ACL SETUSER line for inval-worker"
    rules = [r.replace("<password>", PASSWORD) for r in m.group(1).split()]
    assert "~*" in rules, rules
    i = rules.index("~*")
    return rules[:i] + keys + rules[i + 1:]


def set_worker_user(node, keys):
    node.client().execute_command("ACL", "SETUSER", "inval-worker", "reset",
                                  *worker_rules(keys))


def pending_ids(node):
    """The ids pending in shard 0's consumer group (standalone Redis)."""
    rows = node.client().xpending_range(shard_key(0), "inval", "-", "+", 100)
    return [r["message_id"].decode() for r in rows]


def test_denied_unlink_holds_position_until_allowed(standalone, workdir,
                                                    worker_factory,
                                                    publisher_factory):
    node = standalone
    topo = Topo(node)
    # The worker's own keys, and the keys whose names contain "ok:" (a value
    # key ok:K, its lock and its stale copy), but not "no:*".
    set_worker_user(node, ["~cache:invalidation*", "~*ok:*"])
    pw = os.path.join(workdir, "inval-worker.pw")
    with open(pw, "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(pw, 0o600)
    r = node.client()
    r.mset({"no:1": "v", "ok:1": "v", "no:2": "kept", "ok:2": "kept"})

    w = worker_factory(node, "--redis-user", "inval-worker",
                       "--redis-password-file", pw, "--heartbeat-interval",
                       "100ms")
    poll(lambda: wstats(w)["live"], 30, "worker live")
    pub = publisher_factory(node.addr)

    denied_id = send_events(pub, key_events(["no:1"]))
    last_id = send_events(pub, key_events(["ok:1"]))
    assert sid(denied_id) < sid(last_id)

    # The later entry's work is done; the denied one is retried, not passed.
    poll(lambda: not r.exists("ok:1"), 20, "ok:1 removed")
    poll(lambda: wstats(w)["unlink_retries"] >= 3, 20, "UNLINK retried")
    st = wstats(w)
    assert st["pending_keys"] == 1, st
    assert sid(st["last_applied_id"]) < sid(denied_id), st
    hb = heartbeats(topo)[w.node]
    assert sid(hb["last_id"]) < sid(denied_id), hb
    assert denied_id in pending_ids(node)
    assert r.exists("no:1") == 1
    assert r.mget("no:2", "ok:2") == [b"kept", b"kept"]

    # Allowed again: the key goes at the next retry, the position moves on.
    set_worker_user(node, ["~*"])
    poll(lambda: not r.exists("no:1"), 20, "no:1 removed once allowed")
    wait_applied([w], last_id, timeout=20)
    poll(lambda: pending_ids(node) == [], 10, "nothing pending in the group")
    poll(lambda: sid(heartbeats(topo)[w.node]["last_id"]) >= sid(last_id), 10,
         "heartbeat past the last entry")
    st = wstats(w)
    assert st["pending_keys"] == 0, st
    assert r.mget("no:2", "ok:2") == [b"kept", b"kept"]
