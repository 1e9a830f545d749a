"""Hostile ids: only the log moves a worker's position.

Anything that can reach Redis can PUBLISH on cache:invalidation, SPUBLISH on
a shard channel or write a state file, so a worker treats a live message as
a hint to read the log and never takes its id, prev or events on trust.

- A well-formed broadcast whose id is far beyond the log's end (the largest
  id Redis allows, too) is rejected: counted in hints_rejected and
  /metrics, logged; no worker's position (stats, heartbeat, state file)
  takes it, its events are not applied, and real invalidations sent after
  it through the publisher are applied on every owner. A worker restarted
  afterwards keeps working.
- A forged shard-channel copy (a future id, a prev equal to the worker's
  position, other keys as events) is rejected the same way.
- A state file holding a position beyond the log's last-generated-id (a
  poisoned file, or a log recreated behind it) is an error at start-up:
  the range is reported as a gap, the worker goes on from the log's last
  id and applies what comes next.
"""

import os
import time

import msgpack
import pytest

from workerlib import (CHANNEL, HB_KEY, LOG_KEY, Topo, assert_keyset, heartbeats,
                       key_events, keys_present, load_keys, metric, poll,
                       send_events, settle, sid, start_workers, wait_applied,
                       wait_gone, worker_of, worker_ready, wstats)

FAST = ("--heartbeat-interval", "200ms", "--state-save-interval", "100ms")
FUTURE_IDS = ["99999999999999-0",
              "18446744073709551615-18446744073709551615"]


@pytest.fixture(params=["standalone", "cluster"])
def topo(request):
    return Topo(request.getfixturevalue(request.param))


def forged(entry_id, keys, prev=None):
    """A well-formed payload as the log script publishes it (a shard copy
    when prev is given), naming keys that must survive."""
    body = {"v": 1, "ts": int(time.time() * 1000),
            "events": [dict(e, mode="hard") for e in key_events(keys)],
            "id": entry_id}
    if prev is not None:
        body["prev"] = prev
    return msgpack.packb(body)


def state_file(w):
    return os.path.join(w.state_dir,
                        "worker-" + w.node.replace(":", "_") + ".state")


def saved_position(w):
    """The position: the state file's first line (ownership records
    follow it)."""
    with open(state_file(w)) as f:
        return f.readline().strip()


def log_end(topo):
    return sid(topo.log_client().xinfo_stream(LOG_KEY)["last-generated-id"])


def assert_positions_real(topo, workers):
    """Every worker's position, in stats, heartbeat and state file, is an
    id of the log (not beyond its last-generated-id) and it is caught up."""
    end = log_end(topo)
    for w in workers:
        st = wstats(w)
        assert sid(st["last_applied_id"]) == end, (w.name, st)
        poll(lambda w=w: wstats(w)["behind"] == 0, 5,
             f"{w.name} not behind")
        poll(lambda w=w: sid(heartbeats(topo)[w.node]["last_id"]) == end, 5,
             f"{w.name}'s heartbeat at the log's end")
        poll(lambda w=w: sid(saved_position(w)) == end, 5,
             f"{w.name}'s state file at the log's end")


def invalidate_after(topo, pub, workers, prefix, gone, survivors):
    """Real invalidations sent through the publisher after a forgery: gone
    goes from every owner, survivors stay, and every position is real."""
    last = send_events(pub, key_events(gone), chunk=50)
    wait_gone(topo, f"{prefix}:*", set(gone), 30,
              "real invalidations applied after the forgery")
    wait_applied(workers, last)
    settle(workers)
    assert_keyset(keys_present(topo, f"{prefix}:*"), set(survivors),
                  f"{prefix}: keys (the forged events were not applied)")
    assert_positions_real(topo, workers)
    return last


@pytest.mark.parametrize("future", FUTURE_IDS)
def test_future_broadcast_rejected(topo, worker_factory, publisher_factory,
                                   future):
    workers = start_workers(topo, worker_factory, *FAST)
    pub = publisher_factory(topo.seeds)
    bait = [f"hb:bait:{i}" for i in range(50)]
    gone = [f"hb:g:{i}" for i in range(300)]
    kept = [f"hb:k:{i}" for i in range(100)]
    load_keys(topo, bait + gone + kept)
    e0 = send_events(pub, key_events(["hb:warm"]))
    wait_applied(workers, e0)

    topo.client().publish(CHANNEL, forged(future, bait))
    poll(lambda: all(wstats(w)["hints_rejected"] >= 1 for w in workers), 10,
         "every worker rejected the forged broadcast")
    for w in workers:
        st = wstats(w)
        assert st["hints_rejected"] == 1, (w.name, st)
        assert sid(st["last_applied_id"]) == sid(e0), (w.name, st)
        assert "the log does not have" in w.log(), w.log_tail(20)

    last = invalidate_after(topo, pub, workers, "hb", gone, bait + kept)

    # A worker restarted from its state file keeps working.
    victim = workers[0]
    assert victim.stop() == 0
    assert sid(saved_position(victim)) == sid(last)
    again = worker_factory(victim.node, *FAST)
    workers = [w for w in workers if w is not victim] + [again]
    node = topo.node(victim.node) if topo.is_cluster else topo.target
    poll(lambda: worker_ready(again, node), 30, "restarted worker live")
    more = [f"hb:m:{i}" for i in range(100)]
    load_keys(topo, more)
    last = send_events(pub, key_events(more))
    wait_gone(topo, "hb:m:*", set(more), 30, "applied after the restart")
    wait_applied(workers, last)
    settle(workers)
    assert_keyset(keys_present(topo, "hb:*"), set(bait) | set(kept),
                  "hb: keys after the restart")
    assert wstats(again)["gaps"] == 0


def test_forged_shard_copy_rejected(cluster, worker_factory,
                                    publisher_factory):
    topo = Topo(cluster)
    workers = [worker_factory(n, *FAST, metrics=True) for n in topo.nodes()]
    poll(lambda: all(worker_ready(w, topo.node(w.node)) for w in workers),
         40, "workers live")
    pub = publisher_factory(topo.seeds)
    log_port = topo.log_node().port
    p = next(q for q in topo.primaries() if q.port != log_port)
    w = worker_of(workers, p)
    channel = None

    def listening():
        nonlocal channel
        chans = p.client().execute_command("PUBSUB", "SHARDCHANNELS")
        channel = chans[0].decode() if chans else None
        return channel is not None
    poll(listening, 15, "the worker listening on its shard channel")
    bait = [f"sh:bait:{i}" for i in range(50)]
    gone = [f"sh:g:{i}" for i in range(300)]
    kept = [f"sh:k:{i}" for i in range(100)]
    load_keys(topo, bait + gone + kept)
    e0 = send_events(pub, key_events(["sh:warm"]))
    wait_applied(workers, e0)
    b = wstats(w)

    # prev is the worker's own position: the old fast path would have
    # taken this copy. One id far ahead, one only a minute ahead (which
    # the log's clock will pass: it must not hold back later entries).
    soon = f"{int(time.time() * 1000) + 60000}-0"
    for future in ("99999999999999-0", soon):
        p.client().execute_command("SPUBLISH", channel,
                                   forged(future, bait, prev=e0))
    poll(lambda: wstats(w)["hints_rejected"] >= b["hints_rejected"] + 2, 10,
         "both forged copies rejected")
    st = wstats(w)
    assert sid(st["last_applied_id"]) == sid(e0), st
    assert metric(w, "inval_worker_hints_rejected_total") == \
        st["hints_rejected"]

    invalidate_after(topo, pub, workers, "sh", gone, bait + kept)
    for x in workers:
        if x is not w:
            assert wstats(x)["hints_rejected"] == 0, x.name


def start_one(topo, worker_factory):
    w = worker_factory(topo.target, *FAST, metrics=True)
    poll(lambda: worker_ready(w, topo.target), 30, "worker live")
    return w


def check_goes_on(topo, w, pub, end, prefix):
    """w reported its position beyond the log's end `end` as a gap, stands
    at `end`, and applies what is sent next."""
    poll(lambda: wstats(w)["gaps"] == 1, 10, "the gap counted")
    assert metric(w, "inval_worker_gaps_total") == 1
    log = w.log()
    assert "beyond the log's last id" in log, w.log_tail(20)
    assert "GAP" in log, w.log_tail(20)
    assert sid(wstats(w)["last_applied_id"]) == sid(end)
    gone = [f"{prefix}:g:{i}" for i in range(200)]
    kept = [f"{prefix}:k:{i}" for i in range(50)]
    load_keys(topo, gone + kept)
    last = send_events(pub, key_events(gone))
    wait_gone(topo, f"{prefix}:*", set(gone), 30, "applied after the gap")
    wait_applied([w], last)
    settle([w])
    assert_keyset(keys_present(topo, f"{prefix}:*"), set(kept),
                  f"{prefix}: keys")
    poll(lambda: sid(saved_position(w)) == sid(last), 5, "state saved")
    st = wstats(w)
    assert st["gaps"] == 1 and st["hints_rejected"] == 0, st


@pytest.mark.parametrize("poison", FUTURE_IDS)
def test_poisoned_state_file(standalone, worker_factory, publisher_factory,
                             poison):
    topo = Topo(standalone)
    pub = publisher_factory(topo.seeds)
    w = start_one(topo, worker_factory)
    e0 = send_events(pub, key_events(["ps:warm"]))
    wait_applied([w], e0)
    assert w.stop() == 0
    with open(state_file(w), "w") as f:
        f.write(poison + "\n")

    w = start_one(topo, worker_factory)
    check_goes_on(topo, w, pub, e0, "ps")


def test_log_recreated_behind_the_position(standalone, worker_factory,
                                           publisher_factory):
    """A log deleted and written again with older ids (as a restore from an
    older backup leaves it) lies behind a stopped worker's position."""
    topo = Topo(standalone)
    pub = publisher_factory(topo.seeds)
    w = start_one(topo, worker_factory)
    wait_applied([w], send_events(pub, key_events(["lr:warm"])))
    assert w.stop() == 0
    r = standalone.client()
    r.delete(LOG_KEY)
    restored = r.xadd(LOG_KEY, {"p": msgpack.packb(
        {"v": 1, "ts": 1000, "events": []})}, id="1000-0").decode()

    w = start_one(topo, worker_factory)
    check_goes_on(topo, w, pub, restored, "lr")


def test_hostile_heartbeat_at_takeover(fresh_cluster, worker_factory,
                                       publisher_factory):
    """A heartbeat record that claims the old primary's worker stood beyond
    the log's end never moves the heir's position: it is rejected, and the
    heir replays from the real record and its own position."""
    topo = Topo(fresh_cluster)
    workers = start_workers(topo, worker_factory, *FAST)
    pub = publisher_factory(topo.seeds)
    victim, _ = topo.quiet_primary()
    heir = fresh_cluster.replica_of(victim)
    wv, wh = worker_of(workers, victim), worker_of(workers, heir)
    gone = [f"to:g:{i}" for i in range(400)]
    kept = [f"to:k:{i}" for i in range(100)]
    load_keys(topo, gone + kept)
    e0 = send_events(pub, key_events(["to:warm"]))
    wait_applied(workers, e0)
    poll(lambda: sid(heartbeats(topo)[victim.addr]["last_id"]) == sid(e0), 5,
         "the victim's heartbeat at e0")
    assert wv.stop() == 0
    hb = topo.owner_of(HB_KEY).client()
    rec = dict(heartbeats(topo)[victim.addr], id="forged",
               last_id="99999999999999-0", ts_ms=int(time.time() * 1000))
    hb.hset(HB_KEY, "forged", msgpack.packb(rec))
    before = wstats(wh)["hints_rejected"]

    fresh_cluster.failover(heir)
    poll(lambda: wstats(wh)["role"] == "primary", 10, "heir's worker acting")
    poll(lambda: wstats(wh)["hints_rejected"] == before + 1, 10,
         "the forged heartbeat rejected")
    assert "the log does not have" in wh.log(), wh.log_tail(20)
    workers = [w for w in workers if w is not wv]
    invalidate_after(topo, pub, workers, "to", gone, kept)
