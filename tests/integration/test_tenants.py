"""Tenants on inval-publisher (tenants-file): a tenant may only touch keys
inside its namespaces, by key, prefix or pattern (EPERM otherwise, and
nothing of the request reaches the log); patterns are judged by what they
can match; a tenant's rate limit answers EBUSY with a retry-after hint and
leaves other tenants alone; stats counts events per tenant; SIGHUP reloads
the file without dropping connections."""

import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

import harness
from harness import HOST, RpcClient
from pubtest import LOG_KEY, decode, ev


def write_tenants(workdir, text, name="tenants.conf"):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


TENANTS = """\
# shop may touch shop: and cart: keys only, 20 events a second
tenant shop token shop-secret namespaces shop:,cart: rate 20
tenant blog token blog-secret namespace blog:
tenant ops token ops-secret
"""


@pytest.fixture
def pub(standalone, publisher_factory, workdir):
    path = write_tenants(workdir, TENANTS)
    # allow-flush: a flush is still EPERM for a tenant with namespaces.
    d = publisher_factory(standalone.addr, "--tenants-file", path,
                          "--allow-flush", metrics=True)
    d.tenants_path = path
    return d


def hello(c, token):
    return c.call("hello", {"proto": 1, "client": "test", "token": token})


def client_as(pub, token):
    c = RpcClient(HOST, pub.port)
    err, _ = hello(c, token)
    assert err is None, err
    return c


def logged_targets(standalone):
    r = standalone.client()
    out = []
    for _, fields in r.xrange(LOG_KEY, "-", "+"):
        out += [e["target"] for e in decode(fields[b"p"])["events"]]
    return out


def call(c, events):
    return c.call("invalidate", events)


def test_hello_needs_a_tenant_credential(pub):
    with RpcClient(HOST, pub.port) as c:
        err, _ = call(c, [ev("key", "shop:1")])
        assert err["code"] == "EAUTH"
        err, _ = hello(c, "nobody's token")
        assert err["code"] == "EAUTH" and "wrong token" in err["message"]
        err, _ = c.call("hello", {"proto": 1, "client": "x"})
        assert err["code"] == "EAUTH"
        err, _ = call(c, [ev("key", "shop:1")])
        assert err["code"] == "EAUTH"
        assert c.call("ping")[0] is None
        err, _ = hello(c, "shop-secret")
        assert err is None
        err, res = call(c, [ev("key", "shop:1")])
        assert err is None and res["accepted"] == 1


@pytest.mark.parametrize("kind,target", [
    ("key", "blog:1"),          # another tenant's key
    ("key", "shop"),            # the namespace without its separator
    ("key", "{shop:}1"),        # a hash tag does not count: the full name
    ("key", "x{shop:1}"),
    ("prefix", "shop"),         # a prefix reaching past the namespace
    ("prefix", "s"),
    ("pattern", "blog:*"),
    ("pattern", "shop*"),       # tricky patterns, judged by what they match
    ("pattern", "sho[p]:*"),
    ("pattern", "?hop:*"),
    ("pattern", "*"),
    ("pattern", "*shop:*"),
    ("pattern", "shop[:]x"),
])
def test_outside_the_namespace_is_eperm(pub, standalone, kind, target):
    with client_as(pub, "shop-secret") as c:
        # One bad event refuses the whole request; the good one is not
        # logged either.
        err, _ = call(c, [ev("key", "shop:good"), ev(kind, target)])
        assert err is not None and err["code"] == "EPERM", err
        assert "event 1" in err["message"], err
        assert f'({kind} "' in err["message"], err
        assert "tenant shop (shop:, cart:)" in err["message"], err
        assert logged_targets(standalone) == []
        # The session goes on, and its own keys still pass.
        err, res = call(c, [ev("key", "shop:after")])
        assert err is None and res["accepted"] == 1
    assert logged_targets(standalone) == ["shop:after"]


@pytest.mark.parametrize("kind,target,logged", [
    ("key", "shop:1", "shop:1"),
    ("key", "cart:9", "cart:9"),
    ("key", "shop:{user:1}", "shop:{user:1}"),
    ("prefix", "shop:", "shop:"),
    ("prefix", "cart:x", "cart:x"),
    ("pattern", "shop:*", "shop:*"),   # the tenant's own flush: allowed
    ("pattern", r"\s\h\o\p:x*", r"\s\h\o\p:x*"),  # shop:x* once read
    ("pattern", "shop:?[ab]", "shop:?[ab]"),
])
def test_inside_the_namespace_is_accepted(pub, standalone, kind, target,
                                          logged):
    with client_as(pub, "shop-secret") as c:
        err, res = call(c, [ev(kind, target)])
        assert err is None and res["accepted"] == 1, err
    assert logged_targets(standalone) == [logged]


def test_admin_and_per_tenant_stats(pub, standalone):
    with client_as(pub, "ops-secret") as ops, \
            client_as(pub, "shop-secret") as shop:
        # An admin has no namespace: anything but the service's own keys.
        err, res = call(ops, [ev("key", "blog:1"), ev("prefix", "x")])
        assert err is None and res["accepted"] == 2
        err, _ = call(ops, [ev("key", "cache:invalidation:log")])
        assert err["code"] == "EINVAL"
        assert call(shop, [ev("key", "shop:1")])[0] is None
        err, _ = call(shop, [ev("key", "a"), ev("key", "b"), ev("key", "c")])
        assert err["code"] == "EPERM"
        err, st = shop.call("stats")
        assert err is None
    assert logged_targets(standalone) == ["blog:1", "x", "shop:1"]
    assert st["tenants"]["shop"] == {"accepted": 1, "refused": 3,
                                     "limited": 0}
    assert st["tenants"]["ops"] == {"accepted": 2, "refused": 0, "limited": 0}
    assert st["tenants"]["blog"] == {"accepted": 0, "refused": 0,
                                     "limited": 0}
    assert st["errors"]["EPERM"] == 1
    body = urllib.request.urlopen(
        f"http://{HOST}:{pub.metrics_port}/metrics", timeout=5).read().decode()
    assert ('inval_publisher_tenant_events_total{tenant="shop",'
            'outcome="refused"} 3') in body
    assert ('inval_publisher_tenant_events_total{tenant="ops",'
            'outcome="accepted"} 2') in body


def test_rate_limit_spares_the_other_tenant(pub, standalone):
    """shop (20 events/s) floods; blog (no limit) keeps being served at its
    usual latency while shop is answered EBUSY with a retry-after hint."""
    with client_as(pub, "shop-secret") as noisy, \
            client_as(pub, "blog-secret") as quiet:
        def quiet_once(i):
            t0 = time.monotonic()
            err, res = call(quiet, [ev("key", f"blog:{i}")])
            assert err is None and res["accepted"] == 1, err
            return time.monotonic() - t0

        before = sorted(quiet_once(i) for i in range(20))
        busy = accepted = 0
        during = []
        deadline = time.monotonic() + 1.5
        i = 0
        while time.monotonic() < deadline:
            # Pipelined: 50 requests of 5 events each, then the quiet one.
            ids = []
            for _ in range(50):
                msgid = noisy.next_msgid()
                noisy.request(msgid, "invalidate",
                              [[ev("key", f"shop:{i}:{k}") for k in range(5)]])
                ids.append(msgid)
            during.append(quiet_once(100 + i))
            for msgid in ids:
                err, _ = noisy.wait_response(msgid)
                if err is None:
                    accepted += 1
                else:
                    assert err["code"] == "EBUSY", err
                    m = re.search(r"retry after (\d+) ms", err["message"])
                    assert m and 1 <= int(m.group(1)) <= 1000, err
                    busy += 1
            i += 1
        err, st = quiet.call("stats")
    during.sort()
    print(f"quiet tenant latency: median before {before[10] * 1e3:.2f} ms, "
          f"median during the flood {during[len(during) // 2] * 1e3:.2f} ms, "
          f"max during {during[-1] * 1e3:.2f} ms; noisy: {accepted} requests "
          f"accepted, {busy} EBUSY")
    # 20 events/s with a burst of 20 over about 1.5 s: at most ~50 events.
    assert busy > 0 and accepted * 5 <= 20 + 20 * 3
    assert st["tenants"]["shop"]["limited"] == busy * 5
    assert st["tenants"]["shop"]["accepted"] == accepted * 5
    assert st["tenants"]["blog"]["limited"] == 0
    assert during[-1] < 1.0
    targets = logged_targets(standalone)
    assert sum(t.startswith("blog:") for t in targets) == 20 + len(during)
    assert sum(t.startswith("shop:") for t in targets) == accepted * 5


def test_sighup_reload_keeps_connections(pub, standalone):
    with client_as(pub, "shop-secret") as shop, \
            client_as(pub, "blog-secret") as blog, \
            client_as(pub, "ops-secret") as ops:
        assert call(shop, [ev("key", "shop:1")])[0] is None
        assert call(shop, [ev("key", "news:1")])[0]["code"] == "EPERM"
        # shop moves to news:, blog is removed, ops stays, feed is new.
        write_tenants(os.path.dirname(pub.tenants_path), """\
tenant shop token shop-secret namespace news:
tenant ops token ops-secret
tenant feed token feed-secret namespace feed:
""")
        pub.signal(signal.SIGHUP)
        harness.wait_until(lambda: "reload: tenants-file" in pub.log(), 5,
                           what="the reload's log line")
        log = pub.log()
        assert "3 tenants; added feed; removed blog; changed shop" in log
        assert "1 session signed out" in log
        assert "secret" not in log
        # The same connections, the new rules.
        err, _ = call(shop, [ev("key", "shop:2")])
        assert err["code"] == "EPERM" and "(news:)" in err["message"]
        assert call(shop, [ev("key", "news:1")])[0] is None
        assert call(ops, [ev("key", "any")])[0] is None
        assert call(blog, [ev("key", "blog:1")])[0]["code"] == "EAUTH"
        assert hello(blog, "blog-secret")[0]["code"] == "EAUTH"
        with client_as(pub, "feed-secret") as feed:
            assert call(feed, [ev("key", "feed:1")])[0] is None
        err, st = ops.call("stats")
        assert set(st["tenants"]) == {"shop", "ops", "feed"}
        # Counters carry over for the tenants that stayed.
        assert st["tenants"]["shop"]["accepted"] == 2
        assert st["tenants"]["shop"]["refused"] == 2
        # A broken file changes nothing and says why.
        write_tenants(os.path.dirname(pub.tenants_path),
                      "tenant shop token shop-secret\nbogus line\n")
        pub.signal(signal.SIGHUP)
        harness.wait_until(lambda: "keeping the tenants as they were"
                           in pub.log(), 5, what="the failed reload's line")
        assert "tenants.conf:2: unknown directive" in pub.log()
        assert call(shop, [ev("key", "shop:3")])[0]["code"] == "EPERM"
        assert call(shop, [ev("key", "news:2")])[0] is None
    assert pub.alive()
    assert logged_targets(standalone) == ["shop:1", "news:1", "any", "feed:1",
                                          "news:2"]


def test_bad_tenants_files_are_refused_at_start(standalone, workdir):
    path = write_tenants(workdir, "tenant a token x\ntenant b token x\n")
    out = subprocess.run([harness.binary("inval-publisher"), "--listen",
                          f"{HOST}:{harness.free_port()}", "--redis",
                          standalone.addr, "--tenants-file", path],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 1
    assert "tenants.conf:2: tenant b: that token already belongs to tenant a" \
        in out.stderr
    good = write_tenants(workdir, "tenant a token x\n", "good.conf")
    out = subprocess.run([harness.binary("inval-publisher"), "--listen",
                          f"{HOST}:{harness.free_port()}", "--redis",
                          standalone.addr, "--tenants-file", good,
                          "--auth-token", "y"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 1
    assert "auth-token and tenants-file are both set" in out.stderr
