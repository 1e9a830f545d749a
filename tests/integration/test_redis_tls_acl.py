"""TLS and ACL users toward Redis, against a real redis-server with
--tls-port and certificates made here with the openssl command.

- The whole pipeline over TLS (client certificates required) with the ACL
  users exactly as README.md's "Redis TLS and ACL users" section gives them:
  publish, the worker deletes, the C read path (invalctl get) reads, and
  invalctl tail authenticates; every other key survives.
- One permission removed from the publisher's rules: the error names it.
- An application's user, with the README's rules, reads and writes its own
  keys (and their lock and stale copy) but can neither PUBLISH nor SPUBLISH
  on the service's channels nor write the service's keys.
- A wrong CA, an expired and a mismatched server certificate, a wrong ACL
  password and an unknown user each give a clear error in the log, and the
  connection recovers once the server side is fixed.
- A 3+3 cluster with tls-cluster yes: CLUSTER SLOTS names TLS ports and the
  publisher and workers reach every node over TLS.
- invalctl bench --e2e over TLS as the README's inval-bench user sees every
  seeded key go and restores the notification flags; one rule removed
  stops it before any load with Redis's NOPERM; a wrong CA and a wrong
  password are named.
- The Python read path (inval.connect_redis + get_or_fill) as the README's
  app-orders user over TLS, the password from a file or the environment;
  a wrong CA, a server name the certificate lacks and a wrong password
  each raise a clear error and write nothing; bad settings are refused.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import redis

import harness
from harness import HOST, RedisCluster, RedisServer, RedisTls, RpcClient
from harness import wait_until
from pubtest import shard_channel, shard_key

sys.path.insert(0, os.path.join(harness.REPO_ROOT, "proto", "python"))
from inval import connect_redis, get_or_fill, lock_key  # noqa: E402
from inval import read_password  # noqa: E402

README = os.path.join(harness.REPO_ROOT, "README.md")
# A standalone server logs every event in shard 0.
LOG0 = shard_key(0).encode()
PW = {"inval-publisher": "pub-pw-1f3a", "inval-worker": "wrk-pw-8c2d",
      "inval-ops": "ops-pw-55e0", "app-orders": "app-pw-91b7",
      "inval-bench": "bench-pw-6d04"}


# ---------------------------------------------------------------------------
# Certificates.

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=30)


def _ca(d, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
             cwd=d)


def _signed(d, name, ca, san, start=None, end=None):
    """A key and a certificate signed by ca; start/end (YYMMDDHHMMSSZ) make
    a validity period in the past through `openssl ca`."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}",
             cwd=d)
    if start is None:
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt",
                 "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
                 "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
        return
    os.makedirs(os.path.join(d, "newcerts"), exist_ok=True)
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write(f"[ca]\ndefault_ca=d\n[d]\ndir={d}\ndatabase={d}/index.txt\n"
                f"new_certs_dir={d}/newcerts\nserial={d}/serial\n"
                "default_md=sha256\npolicy=p\ncopy_extensions=copy\n"
                "[p]\ncommonName=supplied\n")
    _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", f"{ca}.crt",
             "-keyfile", f"{ca}.key", "-in", f"{name}.csr", "-out",
             f"{name}.crt", "-startdate", start, "-enddate", end, "-notext",
             cwd=d)


@pytest.fixture(scope="module")
def certs(_module_dir):
    d = os.path.join(_module_dir, "certs")
    os.makedirs(d, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "otherca")
    ok_san = "IP:127.0.0.1,DNS:localhost"
    _signed(d, "server", "ca", ok_san)
    _signed(d, "client", "ca", "DNS:inval-client")
    _signed(d, "foreign", "otherca", ok_san)        # the wrong CA
    _signed(d, "wrongname", "ca", "DNS:elsewhere.example")  # mismatched
    _signed(d, "expired", "ca", ok_san, start="200101000000Z",
            end="200102000000Z")
    return lambda name: os.path.join(d, name)


def server_tls(certs, name="server", auth_clients="yes"):
    return RedisTls(certs("ca.crt"), certs(f"{name}.crt"),
                    certs(f"{name}.key"), certs("client.crt"),
                    certs("client.key"), auth_clients)


def client_args(certs, **over):
    """The publisher's and the worker's TLS directives."""
    d = {"--redis-tls": "yes", "--redis-tls-ca-cert-file": certs("ca.crt"),
         "--redis-tls-cert-file": certs("client.crt"),
         "--redis-tls-key-file": certs("client.key")}
    d.update(over)
    out = []
    for k, v in d.items():
        out += [k, v]
    return out


# ---------------------------------------------------------------------------
# ACL rules, read from the README so that the documented rules are the
# tested ones.

def readme_acl(user):
    with open(README) as f:
        text = f.read()
    m = re.search(r"^ACL SETUSER " + re.escape(user) + r" (.*)$", text,
                  re.M)
    assert m, f"README.md gives no ACL SETUSER line for {user}"
    return m.group(1).split()


def set_user(node, user, rules=None, password=None):
    rules = readme_acl(user) if rules is None else rules
    password = password or PW[user]
    rules = [r.replace("<password>", password) for r in rules]
    node.client().execute_command("ACL", "SETUSER", user, "reset", *rules)


def password_file(workdir, user, password=None):
    path = os.path.join(workdir, f"{user}.pw")
    with open(path, "w") as f:
        f.write((password or PW[user]) + "\n")
    os.chmod(path, 0o600)
    return path


def invalidate(pub, keys, timeout=10):
    with RpcClient(HOST, pub.port, timeout=timeout) as c:
        err, res = c.call("invalidate",
                          [{"kind": "key", "target": k} for k in keys])
    return err, res


def worker_live(w):
    with RpcClient(HOST, w.port) as c:
        err, st = c.call("stats")
    return err is None and st["connected"] and st["live"]


@pytest.fixture
def tls_redis(workdir, certs):
    node = RedisServer(workdir, tls=server_tls(certs)).start()
    yield node
    node.stop()


# ---------------------------------------------------------------------------
# Tests.

def test_pipeline_over_tls_with_readme_acl_users(tls_redis, certs, workdir,
                                                 publisher_factory,
                                                 worker_factory):
    node = tls_redis
    for user in ("inval-publisher", "inval-worker", "inval-ops"):
        set_user(node, user)
    admin = node.client()
    admin.set(b"doomed", b"v")
    admin.set(b"keeper", b"v")

    w = worker_factory(node.addr, *client_args(certs),
                       "--redis-user", "inval-worker", "--redis-password-file",
                       password_file(workdir, "inval-worker"))
    pub = publisher_factory([node.addr], *client_args(certs),
                            "--redis-user", "inval-publisher",
                            "--redis-password-file",
                            password_file(workdir, "inval-publisher"))
    wait_until(lambda: worker_live(w), 20, what="worker live over TLS")
    # invalctl tail as the read-only ops user, over TLS with a client
    # certificate; the password from the environment only.
    tls_flags = ["--redis-cacert", certs("ca.crt"), "--redis-cert",
                 certs("client.crt"), "--redis-key", certs("client.key")]
    env = dict(os.environ, INVAL_REDIS_PASSWORD=PW["inval-ops"])
    tail = subprocess.Popen(
        [harness.binary("invalctl"), "tail", "-r", node.addr, "--count", "1",
         "--redis-user", "inval-ops", *tls_flags],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Subscribed, not only connected: the broadcast's one subscriber
        # is tail (workers read the shard streams), and a message published
        # before tail's SUBSCRIBE would never reach it.
        wait_until(lambda: dict(admin.pubsub_numsub("cache:invalidation"))
                   .get(b"cache:invalidation", 0) >= 1, 10,
                   what="tail subscribed")
    except Exception:
        tail.kill()
        raise
    err, _ = invalidate(pub, [b"doomed"])
    assert err is None, err
    wait_until(lambda: admin.exists(b"doomed") == 0, 10,
               what="doomed deleted by the worker")
    assert admin.get(b"keeper") == b"v"
    assert admin.xlen(LOG0) >= 1
    # The worker consumed shard 0 with the README's rules: hints on the
    # shard channel, the entry read and acknowledged in group "inval".
    calls = admin.info("commandstats")
    for cmd in ("xreadgroup", "xack", "ssubscribe"):
        assert calls.get(f"cmdstat_{cmd}", {}).get("calls", 0) >= 1, cmd
    group = {g["name"]: g for g in admin.xinfo_groups(LOG0)}[b"inval"]
    wait_until(lambda: {g["name"]: g for g in admin.xinfo_groups(LOG0)}[
        b"inval"]["pending"] == 0, 10, what="the entry acknowledged")
    assert group["last-delivered-id"] == admin.xinfo_stream(LOG0)[
        "last-generated-id"]
    out, errout = tail.communicate(timeout=10)
    assert tail.returncode == 0, errout
    assert "key" in out and "doomed" in out, out
    # invalctl get through the C read path, same user and TLS.
    res = subprocess.run([harness.binary("invalctl"), "get", "-r", node.addr,
                          "--redis-user", "inval-ops", *tls_flags, "keeper"],
                         env=env, capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert "value keeper v" in res.stdout
    # Without the password it is refused, and says so.
    res = subprocess.run([harness.binary("invalctl"), "get", "-r", node.addr,
                          "--redis-user", "inval-ops", *tls_flags, "keeper"],
                         env=dict(env, INVAL_REDIS_PASSWORD="wrong"),
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 3
    assert 'AUTH as user "inval-ops" failed: WRONGPASS' in res.stderr
    assert "certificate" not in pub.log() and "NOPERM" not in pub.log()
    assert "NOPERM" not in w.log()
    # Nothing was refused along the way.
    denied = [e for e in admin.acl_log() if e.get("username") in
              ("inval-publisher", "inval-worker")]
    assert denied == []
    # The password never reaches a log.
    for d in (pub, w):
        assert PW["inval-publisher"] not in d.log()
        assert PW["inval-worker"] not in d.log()


def test_one_permission_removed_is_named(tls_redis, certs, workdir,
                                         publisher_factory):
    node = tls_redis
    rules = readme_acl("inval-publisher")
    set_user(node, "inval-publisher", rules + ["-evalsha"])
    pub = publisher_factory([node.addr], *client_args(certs),
                            "--redis-user", "inval-publisher",
                            "--redis-password", PW["inval-publisher"],
                            "--redis-timeout", "2s")
    err, _ = invalidate(pub, [b"k1"])
    assert err is not None
    expect = "NOPERM this user has no permissions to run the 'evalsha' command"
    wait_until(lambda: expect in pub.log(), 10, what=expect)
    assert node.client().exists(LOG0) == 0
    # Given the permission back, the same publisher acks.
    set_user(node, "inval-publisher", rules)
    wait_until(lambda: invalidate(pub, [b"k2"])[0] is None, 10,
               what="ack after the fix")
    assert node.client().xlen(LOG0) == 1


def test_application_user_is_walled_off(tls_redis):
    node = tls_redis
    set_user(node, "app-orders")
    app = redis.Redis(host=HOST, port=node.port, username="app-orders",
                      password=PW["app-orders"], **node.tls.client_kwargs())
    # Its own keys, with their lock and stale copy, read and write.
    app.set(b"orders:1", b"v")
    assert app.get(b"orders:1") == b"v"
    assert app.set(b"{orders:1}:lock", b"tok", nx=True, px=5000)
    app.set(b"{orders:1}:stale", b"old")
    assert app.get(b"{orders:1}:stale") == b"old"
    # The service's channels and keys are out of reach.
    for cmd in (("PUBLISH", "cache:invalidation", "x"),
                ("SPUBLISH", shard_channel(0), "x"),
                ("XADD", LOG0, "*", "p", "x"),
                ("XREADGROUP", "GROUP", "inval", "worker", "STREAMS", LOG0,
                 ">"),
                ("HSET", "cache:invalidation:workers", "w", "x"),
                ("DEL", LOG0),
                ("SET", "other:1", "x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.execute_command(*cmd)
    r = node.client()
    assert r.exists(LOG0, b"cache:invalidation:workers",
                    b"other:1") == 0
    assert r.get(b"orders:1") == b"v"


def use_cert(node, certs, name):
    """Makes the node present another certificate to new connections (the
    harness's own connection stays up)."""
    node.client().execute_command("CONFIG", "SET",
                                  "tls-cert-file", certs(f"{name}.crt"),
                                  "tls-key-file", certs(f"{name}.key"))


@pytest.mark.parametrize("bad,reason", [
    ("foreign", "certificate verify failed: unable to get local issuer "
                "certificate"),
    ("expired", "certificate verify failed: certificate has expired"),
    ("wrongname", "certificate verify failed: IP address mismatch"),
])
def test_bad_server_certificate_then_recovery(workdir, certs, bad, reason,
                                              publisher_factory):
    node = RedisServer(workdir, tls=server_tls(certs)).start()
    try:
        node.client().set(b"k", b"v")
        use_cert(node, certs, bad)
        pub = publisher_factory([node.addr], *client_args(certs),
                                "--redis-timeout", "2s")
        expect = f"TLS to {node.addr} (cluster): {reason}"
        wait_until(lambda: expect in pub.log(), 10, what=expect)
        err, _ = invalidate(pub, [b"k"], timeout=10)
        assert err is not None
        assert node.client().exists(LOG0) == 0
        # The server gets the right certificate: the next attempt works.
        use_cert(node, certs, "server")
        wait_until(lambda: invalidate(pub, [b"k"])[0] is None, 15,
                   what="ack after the certificate was fixed")
        assert node.client().xlen(LOG0) == 1
        assert node.client().get(b"k") == b"v"  # no worker: untouched
    finally:
        node.stop()


def test_client_certificate_required(tls_redis, certs, publisher_factory):
    pub = publisher_factory([tls_redis.addr], "--redis-tls", "yes",
                            "--redis-tls-ca-cert-file", certs("ca.crt"))
    wait_until(lambda: f"TLS to {tls_redis.addr} (cluster):" in pub.log(), 10,
               what="the missing client certificate reported")
    err, _ = invalidate(pub, [b"k"])
    assert err is not None
    assert tls_redis.client().exists(LOG0) == 0


@pytest.mark.parametrize("who", ["password", "user"])
def test_wrong_acl_credentials_then_recovery(tls_redis, certs, workdir, who,
                                             publisher_factory):
    node = tls_redis
    user = "inval-publisher" if who == "password" else "inval-pub-missing"
    if who == "password":
        set_user(node, user, password="not-the-one")
    pub = publisher_factory([node.addr], *client_args(certs),
                            "--redis-user", user, "--redis-password-file",
                            password_file(workdir, user, PW["inval-publisher"]))
    expect = f'AUTH as user "{user}" failed: WRONGPASS'
    wait_until(lambda: expect in pub.log(), 10, what=expect)
    assert PW["inval-publisher"] not in pub.log()
    err, _ = invalidate(pub, [b"k"])
    assert err is not None
    assert node.client().exists(LOG0) == 0
    # Fixed on the server: the user (with the right password) exists.
    rules = readme_acl("inval-publisher")
    set_user(node, "inval-publisher", rules, PW["inval-publisher"])
    if who == "user":
        node.client().execute_command(
            "ACL", "SETUSER", user, "reset",
            *[r.replace("<password>", PW["inval-publisher"]) for r in rules])
    wait_until(lambda: invalidate(pub, [b"k"])[0] is None, 15,
               what="ack after the ACL was fixed")
    assert node.client().xlen(LOG0) == 1


def test_password_file_checks(workdir, certs, tls_redis):
    pw = password_file(workdir, "inval-publisher")
    os.chmod(pw, 0o644)
    res = subprocess.run([harness.binary("inval-publisher"), "--redis",
                          tls_redis.addr, "--redis-password-file", pw,
                          "--redis-password", "x", "--listen",
                          f"{HOST}:{harness.free_port()}"],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode != 0
    assert "redis-password and redis-password-file" in res.stderr
    res = subprocess.run([harness.binary("inval-publisher"),
                          "--redis-password-file", pw, "--check-config"],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert PW["inval-publisher"] not in res.stdout


def test_cluster_over_tls(workdir, certs, publisher_factory, worker_factory):
    cl = RedisCluster(workdir, tls=server_tls(certs)).start()
    try:
        slots = cl.nodes[0].client().execute_command("CLUSTER", "SLOTS")
        ports = {int(r[2][1]) for r in slots}
        assert ports <= set(cl.ports)  # the TLS ports (there is no other)
        c = cl.client()
        keys = [f"k{i}".encode() for i in range(12)]
        for k in keys:
            c.set(k, b"v")
        c.set(b"keeper", b"v")
        workers = [worker_factory(n.addr, *client_args(certs))
                   for n in cl.primaries()]
        for w in workers:
            wait_until(lambda w=w: worker_live(w), 30, what="worker live")
        pub = publisher_factory(cl.seeds[:1], *client_args(certs))
        wait_until(lambda: invalidate(pub, keys)[0] is None, 20,
                   what="ack from the TLS cluster")
        wait_until(lambda: sum(c.exists(k) for k in keys) == 0, 15,
                   what="keys deleted on every primary")
        assert c.get(b"keeper") == b"v"
    finally:
        cl.stop()


def bench_e2e(pub, node, certs, user, *args):
    """invalctl bench --e2e against the TLS node as ACL user user, the
    password from the environment only."""
    env = dict(os.environ, INVAL_REDIS_PASSWORD=PW[user])
    return subprocess.run(
        [harness.binary("invalctl"), "-H", f"{HOST}:{pub.port}", "bench",
         "-c", "2", "-n", "50", "-P", "4", "--json", "--e2e", "--redis",
         node.addr, "--redis-user", user, "--redis-cacert", certs("ca.crt"),
         "--redis-cert", certs("client.crt"), "--redis-key",
         certs("client.key"), *args],
        env=env, capture_output=True, text=True, timeout=60)


def test_bench_e2e_over_tls_with_readme_acl_user(tls_redis, certs, workdir,
                                                 publisher_factory,
                                                 worker_factory):
    node = tls_redis
    for user in ("inval-publisher", "inval-worker", "inval-bench"):
        set_user(node, user)
    admin = node.client()
    admin.config_set("notify-keyspace-events", "Kx")
    admin.set(b"keeper", b"v")
    w = worker_factory(node.addr, *client_args(certs),
                       "--redis-user", "inval-worker", "--redis-password-file",
                       password_file(workdir, "inval-worker"))
    pub = publisher_factory([node.addr], *client_args(certs),
                            "--redis-user", "inval-publisher",
                            "--redis-password-file",
                            password_file(workdir, "inval-publisher"))
    wait_until(lambda: worker_live(w), 20, what="worker live over TLS")
    res = bench_e2e(pub, node, certs, "inval-bench", "--wait", "30")
    assert res.returncode == 0, res.stderr
    fig = json.loads(res.stdout)
    assert fig["acked_events"] == 50
    e2e = fig["e2e"]
    assert e2e["primaries"] == 1 and e2e["cluster"] is False
    assert e2e["gone"] == 50 and e2e["early"] == 0
    assert e2e["latency_us"]["count"] == 50
    # The seeded keys are gone, the rest stays, the flags are restored,
    # and the bench user was never refused anything.
    assert admin.keys(b"bench:e2e:*") == []
    assert admin.get(b"keeper") == b"v"
    flags = admin.config_get("notify-keyspace-events")["notify-keyspace-events"]
    assert sorted(flags) == sorted("Kx")
    assert [e for e in admin.acl_log()
            if e.get("username") == "inval-bench"] == []
    assert PW["inval-bench"] not in res.stdout + res.stderr


@pytest.mark.parametrize("removed,command", [
    ("+config|set", "config|set"),
    ("&__keyevent@0__:unlink", None),
    ("+cluster|slots", "cluster|slots"),
])
def test_bench_e2e_missing_rule_is_named(tls_redis, certs,
                                         publisher_factory, removed, command):
    node = tls_redis
    set_user(node, "inval-publisher")
    set_user(node, "inval-bench",
             [r for r in readme_acl("inval-bench") if r != removed])
    admin = node.client()
    admin.set(b"keeper", b"v")
    pub = publisher_factory([node.addr], *client_args(certs),
                            "--redis-user", "inval-publisher",
                            "--redis-password", PW["inval-publisher"])
    res = bench_e2e(pub, node, certs, "inval-bench")
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "NOPERM" in res.stderr, res.stderr
    if command is not None:
        assert command in res.stderr, res.stderr
    else:
        assert "channel" in res.stderr, res.stderr
    # Refused before any load: nothing seeded, logged or reconfigured.
    assert admin.keys(b"bench:e2e:*") == []
    assert admin.exists(LOG0) == 0
    assert admin.get(b"keeper") == b"v"
    assert "E" not in admin.config_get(
        "notify-keyspace-events")["notify-keyspace-events"]


def test_bench_e2e_wrong_ca_and_wrong_password(tls_redis, certs,
                                               publisher_factory):
    node = tls_redis
    set_user(node, "inval-bench")
    pub = publisher_factory([node.addr], *client_args(certs))
    use_cert(node, certs, "foreign")
    res = bench_e2e(pub, node, certs, "inval-bench")
    assert res.returncode == 3
    assert (f"TLS to {node.addr}: certificate verify failed: unable to get "
            "local issuer certificate") in res.stderr, res.stderr
    use_cert(node, certs, "server")
    set_user(node, "inval-bench", password="not-the-one")
    res = bench_e2e(pub, node, certs, "inval-bench")
    assert res.returncode == 3
    assert 'AUTH as user "inval-bench" failed: WRONGPASS' in res.stderr
    assert node.client().keys(b"bench:e2e:*") == []
    assert node.client().exists(LOG0) == 0


# ---------------------------------------------------------------------------
# The Python package's read path (inval.connect_redis + get_or_fill).

def py_tls(certs, ca="ca.crt"):
    return {"ssl_ca_certs": certs(ca), "ssl_certfile": certs("client.crt"),
            "ssl_keyfile": certs("client.key")}


def test_python_read_path_over_tls_as_app_user(tls_redis, certs, workdir,
                                               monkeypatch):
    node = tls_redis
    set_user(node, "app-orders")
    admin = node.client()
    admin.set(b"other:1", b"v")
    calls = []

    def regen():
        calls.append(1)
        return b"fresh"

    monkeypatch.delenv("INVAL_REDIS_PASSWORD", raising=False)
    r = connect_redis(HOST, node.port, username="app-orders",
                      password_file=password_file(workdir, "app-orders"),
                      **py_tls(certs))
    res = get_or_fill(r, "orders:{1}", 60, regen)
    assert res.source == "filled" and res.value == b"fresh"
    assert get_or_fill(r, "orders:{1}", 60, regen).source == "hit"
    assert calls == [1]
    # What Redis holds: the value with its TTL, no lock left behind, the
    # other application's key untouched; the user was refused nothing.
    assert admin.get(b"orders:{1}") == b"fresh"
    assert 0 < admin.ttl(b"orders:{1}") <= 60
    assert admin.exists(lock_key(b"orders:{1}")) == 0
    assert admin.get(b"other:1") == b"v"
    assert [e for e in admin.acl_log()
            if e.get("username") == "app-orders"] == []
    conns = [c for c in admin.client_list() if c.get("user") == "app-orders"]
    assert conns, "the read path did not authenticate as app-orders"
    # The password from $INVAL_REDIS_PASSWORD, and a server name that the
    # certificate holds (DNS:localhost) while connecting to the address.
    monkeypatch.setenv("INVAL_REDIS_PASSWORD", PW["app-orders"])
    r2 = connect_redis(HOST, node.port, username="app-orders",
                       ssl_server_name="localhost", **py_tls(certs))
    assert get_or_fill(r2, "orders:{1}", 60, regen).source == "hit"
    assert calls == [1]
    # A name the certificate does not hold is refused.
    r3 = connect_redis(HOST, node.port, username="app-orders",
                       ssl_server_name="elsewhere.example", **py_tls(certs))
    with pytest.raises(redis.ConnectionError, match="certificate verify "
                       "failed: Hostname mismatch"):
        get_or_fill(r3, "orders:{2}", 60, regen)
    assert admin.exists(b"orders:{2}", lock_key(b"orders:{2}")) == 0


def test_python_wrong_ca_and_wrong_password_are_named(tls_redis, certs,
                                                      workdir, monkeypatch):
    node = tls_redis
    set_user(node, "app-orders")
    admin = node.client()
    monkeypatch.setenv("INVAL_REDIS_PASSWORD", PW["app-orders"])
    # The server's certificate is signed by a CA the client does not trust.
    r = connect_redis(HOST, node.port, username="app-orders",
                      **py_tls(certs, ca="otherca.crt"))
    with pytest.raises(redis.ConnectionError) as ei:
        get_or_fill(r, "orders:{3}", 60, lambda: b"x")
    # (redis-server sends its CA along: OpenSSL names it self-signed.)
    assert str(ei.value) == (f"TLS to {HOST}:{node.port}: certificate verify "
                             "failed: self-signed certificate in certificate "
                             "chain")
    # The server presents a certificate of a CA the client does not know.
    use_cert(node, certs, "foreign")
    r = connect_redis(HOST, node.port, username="app-orders",
                      **py_tls(certs))
    with pytest.raises(redis.ConnectionError) as ei:
        get_or_fill(r, "orders:{3}", 60, lambda: b"x")
    assert str(ei.value) == (f"TLS to {HOST}:{node.port}: certificate verify "
                             "failed: unable to get local issuer certificate")
    use_cert(node, certs, "server")
    assert admin.exists(b"orders:{3}", lock_key(b"orders:{3}")) == 0
    # No verification only when asked for by name (tests only).
    r = connect_redis(HOST, node.port, username="app-orders",
                      ssl_insecure=True, **py_tls(certs, ca="otherca.crt"))
    assert get_or_fill(r, "orders:{3}", 60, lambda: b"x").source == "filled"
    assert admin.get(b"orders:{3}") == b"x"
    # A wrong password.
    monkeypatch.setenv("INVAL_REDIS_PASSWORD", "not-the-one")
    r = connect_redis(HOST, node.port, username="app-orders",
                      **py_tls(certs))
    with pytest.raises(redis.RedisError, match="WRONGPASS"):
        get_or_fill(r, "orders:{4}", 60, lambda: b"x")
    assert admin.exists(b"orders:{4}", lock_key(b"orders:{4}")) == 0
    assert admin.get(b"orders:{3}") == b"x"


def test_python_bad_settings_are_refused(certs, workdir, monkeypatch):
    monkeypatch.delenv("INVAL_REDIS_PASSWORD", raising=False)
    pw = password_file(workdir, "app-orders")
    cases = [
        (dict(username="app-orders"), "needs a password"),
        (dict(password="x", password_file=pw), "not both"),
        (dict(password_file=pw + ".missing"), "No such file"),
        (dict(ssl_ca_certs=certs("nope.crt")), "ssl_ca_certs .*no such file"),
        (dict(ssl_ca_path=certs("ca.crt")), "ssl_ca_path .*no such dir"),
        (dict(ssl_keyfile=certs("client.key")), "needs ssl_certfile"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            connect_redis(HOST, 1, **kw)
    empty = os.path.join(workdir, "empty.pw")
    open(empty, "w").close()
    with pytest.raises(ValueError, match="is empty"):
        read_password(password_file=empty)
    os.chmod(pw, 0o644)
    with pytest.warns(UserWarning, match="readable by others"):
        assert read_password(password_file=pw) == PW["app-orders"]
    assert read_password(env={"INVAL_REDIS_PASSWORD": "e"}) == "e"
    assert read_password(env={}) is None


def test_python_read_path_on_tls_cluster(workdir, certs, monkeypatch):
    cl = RedisCluster(workdir, primaries=3, replicas=0,
                      tls=server_tls(certs)).start()
    try:
        for n in cl.nodes:
            set_user(n, "app-orders")
        monkeypatch.setenv("INVAL_REDIS_PASSWORD", PW["app-orders"])
        # The CA as a directory (c_rehash-style link), which redis-py 4.3's
        # RedisCluster alone would drop on the way to its nodes.
        cadir = os.path.join(workdir, "cadir")
        os.makedirs(cadir)
        h = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in",
                            certs("ca.crt")], capture_output=True, text=True,
                           check=True).stdout.strip()
        os.symlink(certs("ca.crt"), os.path.join(cadir, f"{h}.0"))
        r = connect_redis(HOST, cl.nodes[0].port, cluster=True,
                          username="app-orders", ssl_ca_path=cadir,
                          ssl_certfile=certs("client.crt"),
                          ssl_keyfile=certs("client.key"))
        keys = [f"orders:{{{i}}}" for i in range(6)]
        for k in keys:
            assert get_or_fill(r, k, 60, lambda: b"v").source == "filled"
        c = cl.client()
        owners = {c.keyslot(k) for k in keys}
        assert len(owners) > 1
        assert [c.get(k) for k in keys] == [b"v"] * 6
        assert sum(c.exists(lock_key(k)) for k in keys) == 0
        assert get_or_fill(r, keys[0], 60, lambda: b"w").source == "hit"
        # Hostname checking reaches the nodes too: a name the nodes'
        # certificates lack is refused.
        # Discovery connects at once, and the reason is raised.
        with pytest.raises(redis.ConnectionError, match=(
                f"TLS to {HOST}:{cl.nodes[0].port}: certificate verify "
                "failed: Hostname mismatch")):
            connect_redis(HOST, cl.nodes[0].port, cluster=True,
                          username="app-orders", ssl_ca_path=cadir,
                          ssl_server_name="elsewhere.example",
                          ssl_certfile=certs("client.crt"),
                          ssl_keyfile=certs("client.key"))
        assert [c.get(k) for k in keys] == [b"v"] * 6
    finally:
        cl.stop()


def test_sighup_reloads_tls_toward_redis(tls_redis, certs, workdir,
                                         publisher_factory, worker_factory):
    """Redis moves to a certificate from a new CA. The daemons' trust file
    is updated in place; until SIGHUP their reconnects fail verification,
    after it they verify with the new CA, with no restart."""
    node = tls_redis
    trust = os.path.join(workdir, "trust.pem")
    shutil.copy(certs("ca.crt"), trust)
    args = client_args(certs, **{"--redis-tls-ca-cert-file": trust})
    admin = node.client()
    admin.set(b"rot:1", b"v")
    admin.set(b"rot:2", b"v")
    admin.set(b"rot:keep", b"v")
    w = worker_factory(node.addr, *args, "--redis-timeout", "2s")
    pub = publisher_factory([node.addr], *args, "--redis-timeout", "2s")
    wait_until(lambda: worker_live(w), 20, what="worker live over TLS")
    assert invalidate(pub, [b"rot:1"])[0] is None
    wait_until(lambda: admin.exists(b"rot:1") == 0, 10, what="rot:1 gone")

    # Rotation on the server: new connections get a certificate that the
    # daemons' current trust does not verify; drop their connections.
    use_cert(node, certs, "foreign")
    with open(certs("otherca.crt"), "rb") as src, open(trust, "wb") as dst:
        dst.write(src.read())
    for kind in ("normal", "pubsub"):
        admin.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")
    expect = "certificate verify failed"
    wait_until(lambda: expect in pub.log() and expect in w.log(), 15,
               what="reconnects refused with the old trust")

    pub.signal(signal.SIGHUP)
    w.signal(signal.SIGHUP)
    wait_until(lambda: "reload: TLS toward Redis" in pub.log() and
               "reload: TLS toward Redis" in w.log(), 10, what="reloads")
    wait_until(lambda: invalidate(pub, [b"rot:2"])[0] is None, 20,
               what="an ack after the reload")
    wait_until(lambda: admin.exists(b"rot:2") == 0, 20,
               what="rot:2 deleted by the worker over the new trust")
    assert admin.get(b"rot:keep") == b"v"
    assert pub.alive() and w.alive()
