"""Targets that are not UTF-8 travel as msgpack bin, on a standalone Redis
with the real publisher and worker.

A standard decoder (Python's msgpack.unpackb(raw=False), which turns str
into text) reads the log entry and the broadcast of a batch that holds a
binary key and a UTF-8 key: the binary target comes back as the same
bytes (bin), the UTF-8 one as text (str). The worker deletes the binary
key and the UTF-8 key, and a neighbour key that no event names survives.
"""

import msgpack

import pubtest
from harness import HOST, RpcClient, rpc_ok
from workerlib import poll, wstats

# Standalone, every log entry is in shard 0's stream.
LOG_KEY = pubtest.LOG_KEY
CHANNEL = "cache:invalidation"
BIN_KEY = b"bin:\xff\xfe\x80key"
TEXT_KEY = "text:caf\u00e9"


def test_binary_target_is_bin_on_the_log_and_broadcast(
        standalone, worker_factory, publisher_factory):
    r = standalone.client()
    r.set(BIN_KEY, b"v")
    r.set(TEXT_KEY.encode(), b"v")
    r.set(b"bin:\xff\xfe\x80kez", b"keep")  # one byte away: must survive
    w = worker_factory(standalone)
    poll(lambda: wstats(w)["live"] == 1, 20, "the worker live")
    pub = publisher_factory(standalone)
    sub = r.pubsub()
    sub.subscribe(CHANNEL)
    poll(lambda: sub.get_message(timeout=0.1) is not None, 10, "subscribed")
    with RpcClient(HOST, pub.port) as c:
        rpc_ok(c, "hello", {"proto": 1, "client": "pytest"})
        # Both are sent as bin: the publisher decides by the bytes.
        rpc_ok(c, "invalidate", [{"kind": "key", "target": BIN_KEY},
                                 {"kind": "key", "target": TEXT_KEY.encode()}])

    msg = poll(lambda: sub.get_message(timeout=0.2), 10, "the broadcast")
    assert msg["type"] == "message", msg
    entries = r.xrange(LOG_KEY)
    assert len(entries) == 1, entries
    for raw in (msg["data"], entries[0][1][b"p"]):
        body = msgpack.unpackb(raw, raw=False)  # must not raise
        targets = [e["target"] for e in body["events"]]
        assert targets == [BIN_KEY, TEXT_KEY], targets
        assert isinstance(targets[0], bytes) and isinstance(targets[1], str)
    sub.close()

    poll(lambda: r.exists(BIN_KEY, TEXT_KEY.encode()) == 0, 20,
         "the binary and the UTF-8 key deleted")
    assert r.get(b"bin:\xff\xfe\x80kez") == b"keep"
    assert wstats(w)["decode_errors"] == 0
