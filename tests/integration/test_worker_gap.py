"""Gaps in the log and where a worker starts (issue 3, test 7).

Standalone Redis, one worker, events sent through a real publisher.

- Entries removed past a stopped worker's position (XDEL of the entries
  after it, or XTRIM MAXLEN 0) are a gap: on restart it is counted in
  `stats` and /metrics and logged as an error. The entries still in the log
  after the position are applied; the lost ones are lost (their keys stay).
- --on-gap rescan re-runs the prefix and pattern events still in the log,
  even those applied before the stop (keys written since that match them
  go), never their exact keys, and says exact keys may be stale. With the
  default (alert) nothing is re-run.
- A worker without state starts at the log's end (older entries are not
  applied); with --from-start it applies the whole log.
"""

import pytest

from workerlib import (LOG_KEY, Topo, assert_keyset, ev, key_events,
                       keys_present, load_keys, metric, poll, send_events,
                       settle, sid, wait_applied, wait_gone, worker_ready,
                       wstats)

FAST = ("--state-save-interval", "100ms")


def start(topo, worker_factory, *extra):
    w = worker_factory(topo.target, *FAST, *extra, metrics=True)
    poll(lambda: worker_ready(w, topo.target), 30, "worker live")
    return w


def stop_at(w, entry_id):
    """Waits until w applied entry_id, then stops it (state saved)."""
    wait_applied([w], entry_id)
    assert w.stop() == 0


@pytest.mark.parametrize("mode", ["alert", "rescan"])
def test_xdel_gap(standalone, worker_factory, publisher_factory, mode):
    topo = Topo(standalone)
    pub = publisher_factory(topo.seeds)
    w = start(topo, worker_factory, "--on-gap", mode)
    # Applied before the stop: a prefix, a pattern and an exact key.
    e0 = send_events(pub, [ev("prefix", "old:"), ev("pattern", "oldp:*:x"),
                           ev("key", "oldk")])
    stop_at(w, e0)
    assert "GAP" not in w.log()

    # Written after e0 was applied: only a re-run of e0 removes old:*.
    old = [f"old:{i}" for i in range(500)] + \
        [f"oldp:{i}:x" for i in range(300)]
    old_kept = [f"oldp:{i}:y" for i in range(300)] + ["oldk", "olde"]
    lost = [f"lost:{i}" for i in range(100)] + \
        [f"lostp:{i}" for i in range(100)]
    after = [f"after:{i}" for i in range(100)] + \
        [f"afterp:{i}" for i in range(100)]
    load_keys(topo, old + old_kept + lost + after)
    e1 = send_events(pub, key_events(lost[:100]) + [ev("prefix", "lostp:")])
    e2 = send_events(pub, key_events(after[:100]) + [ev("prefix", "afterp:")])
    r = standalone.client()
    between = [eid for eid, _ in r.xrange(LOG_KEY, min=e0, max=e2)
               if eid.decode() not in (e0, e2)]
    assert between and sid(e1) == max(sid(e) for e in between)
    assert r.xdel(LOG_KEY, *between) == len(between)

    w = start(topo, worker_factory, "--on-gap", mode)
    wait_gone(topo, "after*", set(after), 30, "entries after the gap applied")
    settle([w])
    st = wstats(w)
    assert st["gaps"] == 1, st
    assert metric(w, "inval_worker_gaps_total") == 1
    log = w.log()
    assert "ERROR" in log and "GAP" in log, w.log_tail(20)
    # The lost entries are lost; the exact key of e0 is never re-run.
    kept = set(lost) | set(old_kept)
    if mode == "rescan":
        wait_gone(topo, "old*", set(old), 30, "e0's patterns re-run")
        assert "exact keys named in lost entries may be stale" in log
        assert st["replays"] == 1, st
    else:
        kept |= set(old)
        assert "rescan" not in log
        assert st["replays"] == 0, st
    assert_keyset({k for k in keys_present(topo, "*")
                   if not k.startswith("cache:")}, kept,
                  f"keys after the gap ({mode})")
    assert sid(st["last_applied_id"]) >= sid(e2)


def test_trimmed_empty(standalone, worker_factory, publisher_factory):
    """XTRIM MAXLEN 0 past the position leaves an empty log: still a gap;
    events published after the restart are applied."""
    topo = Topo(standalone)
    pub = publisher_factory(topo.seeds)
    w = start(topo, worker_factory)
    e0 = send_events(pub, [ev("key", "t0")])
    stop_at(w, e0)
    lost = [f"tl:{i}" for i in range(200)]
    later = [f"tn:{i}" for i in range(200)]
    load_keys(topo, lost + later)
    send_events(pub, key_events(lost))
    r = standalone.client()
    assert r.xtrim(LOG_KEY, maxlen=0, approximate=False) >= 1
    assert r.xlen(LOG_KEY) == 0

    w = start(topo, worker_factory)
    poll(lambda: wstats(w)["gaps"] == 1, 20, "gap counted")
    assert metric(w, "inval_worker_gaps_total") == 1
    assert "GAP" in w.log()
    last = send_events(pub, key_events(later))
    wait_gone(topo, "t*", set(later), 30, "events after the restart applied")
    wait_applied([w], last)
    settle([w])
    assert_keyset(keys_present(topo, "t*"), set(lost), "lost keys stay")
    assert wstats(w)["gaps"] == 1


def test_fresh_worker_start_position(standalone, worker_factory,
                                     publisher_factory, workdir):
    topo = Topo(standalone)
    pub = publisher_factory(topo.seeds)
    early = [f"fe:{i}" for i in range(300)]
    late = [f"fl:{i}" for i in range(300)]
    load_keys(topo, early + late)
    e_early = send_events(pub, key_events(early) + [ev("prefix", "fp:")])
    load_keys(topo, [f"fp:{i}" for i in range(100)])

    # No state: start at the log's end; the early entry is not applied.
    w = start(topo, worker_factory)
    st = wstats(w)
    assert st["catchup_events"] == 0, st
    assert sid(st["last_applied_id"]) == sid(e_early)
    e_late = send_events(pub, key_events(late))
    wait_gone(topo, "fl:*", set(late), 30, "live events applied")
    wait_applied([w], e_late)
    assert_keyset(keys_present(topo, "f[ep]:*"),
                  set(early) | {f"fp:{i}" for i in range(100)},
                  "older entries not applied")
    assert w.stop() == 0

    # --from-start, no state (another state dir): the whole log.
    w2 = worker_factory(standalone, *FAST, "--from-start",
                        state_dir=f"{workdir}/from-start")
    wait_gone(topo, "f*", set(early) | {f"fp:{i}" for i in range(100)}, 30,
              "the whole log applied")
    wait_applied([w2], e_late)
    settle([w2])
    st = wstats(w2)
    assert st["catchup_events"] == len(early) + 1 + len(late), st
    assert st["gaps"] == 0, st
    assert "from-start" in w2.log()
