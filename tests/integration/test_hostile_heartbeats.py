"""Hostile values in the heartbeat hash cache:invalidation:workers.

Anything that can reach Redis can write a field of that hash, and the
publisher decodes every value once a second. Values whose msgpack headers
declare far more than their bytes hold (an array or a map of 4 billion
entries, a bin or str of 4 GiB) once made the publisher ask for a huge
allocation and abort; deep nesting and a 1 MB string must cost nothing
either. Each is skipped and counted (heartbeat_bad_records) while the real
worker stays listed, `stats` and `invalctl stats` keep answering, the worker
keeps invalidating, and the hostile fields themselves are left in Redis
(the publisher only reads the hash).
"""

import msgpack

from pubtest import stats
from workerlib import HB_KEY, ev, invalctl_stats, invalctl_worker_lines, poll, \
    send_events, wait_applied, worker_ready

MB = 1 << 20

# field -> value; every value is refused by inv_heartbeat_decode.
HOSTILE = {
    # The five bytes: an array32 header declaring 2^32-1 elements.
    "evil-array": b"\xdd\xff\xff\xff\xff",
    "evil-map": b"\xdf\xff\xff\xff\xff",
    "evil-bin": b"\xc6\xff\xff\xff\xff",
    # A record whose id claims 4 GiB.
    "evil-id-str": b"\x81\xa2id\xdb\xff\xff\xff\xff",
    # The huge count inside an otherwise plausible record.
    "evil-nested-array": msgpack.packb({"id": "x"})[:-2] + b"\xdd\xff\xff\xff\xff",
    "evil-deep": b"\x81\xa2id" + b"\x91" * 100000 + b"\xc0",
    "evil-1mb-str": b"\xdb" + MB.to_bytes(4, "big") + b"x" * MB,
    "evil-1mb-record": msgpack.packb({"id": "w" * MB, "node": "1.2.3.4:5",
                                      "role": "primary", "ts_ms": 1,
                                      "ttl_ms": 1}),
    "evil-not-msgpack": b"\xc1 not msgpack",
    "evil-trailing": msgpack.packb({"id": "t"}) + b"\x80",
    "evil-empty": b"",
}


def test_hostile_records_are_skipped_and_counted(standalone, worker_factory,
                                                 publisher_factory):
    r = standalone.client()
    worker = worker_factory(standalone, "--heartbeat-interval", "200ms")
    poll(lambda: worker_ready(worker, standalone), 20, "worker live")
    pub = publisher_factory(standalone)
    st = poll(lambda: (lambda s: s if s["workers_known"] == 1 else None)(
        stats(pub)), 20, "the worker listed by the publisher")
    assert st["heartbeat_bad_records"] == 0, st

    r.hset(HB_KEY, mapping=HOSTILE)

    def counted():
        s = stats(pub)
        return s if s["heartbeat_bad_records"] == len(HOSTILE) else None
    st = poll(counted, 20, "every hostile record counted")
    # The real worker, and only it, is listed; it is fresh.
    assert st["workers_known"] == 1 and st["workers_stale"] == 0, st
    assert [w["id"] for w in st["workers"]] == [standalone.addr], st["workers"]
    assert st["workers"][0]["role"] == "primary"

    out = invalctl_stats(pub.port)
    assert out.returncode == 0, out.stderr
    assert "workers (1):" in out.stdout, out.stdout
    assert list(invalctl_worker_lines(out.stdout)) == [standalone.addr]

    # The worker keeps invalidating: what is named goes, the rest stays.
    r.mset({"hostile:gone": "1", "hostile:kept": "1"})
    last = send_events(pub, [ev("key", "hostile:gone")])
    wait_applied([worker], last)
    assert r.exists("hostile:gone") == 0
    assert r.get("hostile:kept") == b"1"

    # The publisher only reads the hash: the hostile fields are still there,
    # next to the worker's own record.
    fields = set(r.hkeys(HB_KEY))
    assert {f.encode() for f in HOSTILE} <= fields
    assert standalone.addr.encode() in fields
    assert pub.alive() and worker.alive()

    # Once they are removed the count goes back to zero.
    r.hdel(HB_KEY, *HOSTILE)
    st = poll(lambda: (lambda s: s if s["heartbeat_bad_records"] == 0
                       else None)(stats(pub)), 20, "the count cleared")
    assert st["workers_known"] == 1, st
    # Said once in the log when the number changed, not once a second.
    log = pub.log()
    assert log.count("values of cache:invalidation:workers are not") == 1, log
