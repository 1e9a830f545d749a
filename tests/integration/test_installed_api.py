"""The client library as an application gets it: `cmake --install` into a
temporary prefix, then programs built outside the tree against that prefix
only, each run against a real inval-publisher and inval-worker on
standalone Redis:
  - tests/consumers/cpp, C++ through find_package(inval), linked with the
    shared library (inval::client) and with the static one
    (inval::client_static): it fills keys through the read path and
    invalidates one of them through the publisher;
  - tests/consumers/c, C through pkg-config inval-client: ping and a
    pipelined prefix invalidation.
Redis must then have lost exactly the keys the programs invalidated. The
install holds the public headers and libinval_client only, and the shared
library exports exactly the functions that the public headers declare."""

import glob
import os
import re
import subprocess

import pytest

import harness
import pubtest
from harness import HOST
from workerlib import poll, wstats

CONSUMERS = os.path.join(harness.REPO_ROOT, "tests", "consumers")
PUBLIC_HEADERS = ["cache.h", "client.h", "errors.h", "event.h"]


def _run(argv, env=None, timeout=120):
    res = subprocess.run(argv, capture_output=True, text=True, env=env,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    return res.returncode, res.stdout + res.stderr


def _sanitize_flags():
    """The sanitizer build's libraries need the ASan runtime in the program
    that links them."""
    return ["-fsanitize=address,undefined"] if harness.sanitized_build() else []


@pytest.fixture(scope="module")
def prefix(_module_dir):
    if not harness.have_binary("inval-publisher"):
        pytest.skip("inval-publisher is not built")
    path = os.path.join(_module_dir, "prefix")
    rc, out = _run(["cmake", "--install", harness.build_dir(), "--prefix",
                    path])
    assert rc == 0, out
    return path


@pytest.fixture
def stack(standalone, worker_factory, publisher_factory):
    """A worker and a publisher on the standalone Redis; the worker live."""
    worker = worker_factory(standalone)
    poll(lambda: wstats(worker)["live"] == 1, 20, "the worker live")
    return standalone, publisher_factory(standalone)


def _declared_functions():
    """Every function that the installed headers declare."""
    names = set()
    for h in PUBLIC_HEADERS:
        with open(os.path.join(harness.REPO_ROOT, "include", "inval", h)) as f:
            text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
        text = re.sub(r"^#.*$", "", text, flags=re.M)
        names |= set(re.findall(r"\b(inv_\w+)\s*\(", text))
    return names


def test_install_holds_the_public_api_only(prefix):
    # Nothing but the public headers: no proto/ or common/ beside them.
    installed = sorted(os.path.relpath(os.path.join(d, f), prefix)
                       for d, _, files in os.walk(os.path.join(prefix,
                                                               "include"))
                       for f in files)
    assert installed == [f"include/inval/{h}" for h in PUBLIC_HEADERS], \
        installed
    libs = sorted(os.path.basename(p)
                  for p in glob.glob(os.path.join(prefix, "lib", "lib*")))
    assert libs == ["libinval_client.a", "libinval_client.so",
                    "libinval_client.so.0.1", "libinval_client.so.0.1.0"], libs
    for h in PUBLIC_HEADERS:
        with open(os.path.join(prefix, "include", "inval", h)) as f:
            text = f.read()
        includes = re.findall(r'^#include\s+[<"]([^>"]+)[>"]', text, re.M)
        assert all(i.startswith("inval/") or i in
                   ("stddef.h", "stdint.h", "msgpack.h") for i in includes), \
            (h, includes)
        assert 'extern "C" {' in text, h
    rc, out = _run(["readelf", "-d", os.path.join(prefix, "lib",
                                                  "libinval_client.so")])
    assert rc == 0 and "Library soname: [libinval_client.so.0.1]" in out, out
    rc, out = _run(["nm", "-D", "--defined-only",
                    os.path.join(prefix, "lib", "libinval_client.so")])
    assert rc == 0, out
    symbols = [line.split()[2] for line in out.splitlines()
               if len(line.split()) == 3 and line.split()[1] in "TW"]
    # Each carries the library's symbol version, from proto/client/client.map.
    assert all(s.endswith("@@INVAL_0") for s in symbols), symbols
    exported = {s.partition("@")[0] for s in symbols}
    declared = _declared_functions()
    assert "inv_client_connect" in declared and "inv_strerror" in declared
    # An internal function (the codec's framer) stays inside.
    assert "inv_framer_feed" not in exported and exported == declared, \
        (sorted(exported - declared), sorted(declared - exported))


def test_cpp_program_through_find_package(prefix, stack, workdir):
    redis, pub = stack
    build = os.path.join(workdir, "cpp")
    flags = " ".join(_sanitize_flags())
    rc, out = _run(["cmake", "-S", os.path.join(CONSUMERS, "cpp"), "-B", build,
                    f"-DCMAKE_PREFIX_PATH={prefix}",
                    "-DCMAKE_CXX_COMPILER=c++", "-DCMAKE_BUILD_TYPE=Debug",
                    f"-DCMAKE_CXX_FLAGS={flags}",
                    f"-DCMAKE_EXE_LINKER_FLAGS={flags}"])
    assert rc == 0, out
    rc, out = _run(["cmake", "--build", build, "-j2"])
    assert rc == 0, out
    r = redis.client()
    r.set("cpp-other", "neighbour")
    for variant in ("shared", "static"):
        exe = os.path.join(build, f"consumer_{variant}")
        rc, out = _run(["ldd", exe])
        assert ("libinval_client.so.0.1 => " + prefix in out) == \
            (variant == "shared"), out
        p = f"cpp-{variant}:"
        rc, out = _run([exe, HOST, str(redis.port), str(pub.port), p],
                       timeout=30)
        assert rc == 0, out
        lines = out.splitlines()
        assert lines[:4] == [f"filled {p}keep value of {p}keep",
                             f"filled {p}gone value of {p}gone",
                             f"hit {p}keep value of {p}keep",
                             "regenerations 2"], out
        m = re.fullmatch(r"acked 1 server inval-publisher shard 0 id (\S+)",
                         lines[4])
        assert m and len(lines) == 5, out
        # The ack names the log entry that holds the event.
        rows = r.xrange(pubtest.shard_key(0), m.group(1), m.group(1))
        assert [e["target"] for e in
                pubtest.decode(rows[0][1][b"p"])["events"]] == [f"{p}gone"]
        poll(lambda: r.exists(f"{p}gone") == 0, 20,
             f"the worker deleted {p}gone")
        assert r.get(f"{p}keep") == f"value of {p}keep".encode()
    assert r.get("cpp-other") == b"neighbour"


def test_c_program_through_pkg_config(prefix, stack, workdir):
    redis, pub = stack
    env = dict(os.environ,
               PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    rc, out = _run(["pkg-config", "--cflags", "--libs", "inval-client"],
                   env=env)
    assert rc == 0, out
    flags = out.split()
    assert flags[0] == "-I" + os.path.join(prefix, "include"), flags
    # The static library's own dependencies come with --static.
    rc, static = _run(["pkg-config", "--static", "--libs", "inval-client"],
                      env=env)
    assert rc == 0 and {"-lhiredis", "-lssl", "-lmsgpackc"} <= \
        set(static.split()), static
    exe = os.path.join(workdir, "consumer_c")
    rc, out = _run(["cc", "-std=c11", "-Wall", "-Wextra", "-pedantic",
                    "-Werror", os.path.join(CONSUMERS, "c", "consumer.c"),
                    "-o", exe] + flags + _sanitize_flags())
    assert rc == 0, out
    r = redis.client()
    for k in ("c:gone:1", "c:gone:2", "c:gone", "c:keep:1"):
        r.set(k, "v")
    run_env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(prefix, "lib"))
    rc, out = _run([exe, HOST, str(pub.port), "c:gone:"], env=run_env,
                   timeout=30)
    assert rc == 0, out
    assert out.splitlines() == ["ping ok", "empty request: EINVAL",
                                "acked 1 in 1 shard entry"], out
    poll(lambda: r.exists("c:gone:1", "c:gone:2") == 0, 20,
         "the worker deleted the prefix's keys")
    assert r.get("c:gone") == b"v" and r.get("c:keep:1") == b"v"
    events = [e for _, p in pubtest.Topo(redis).log_entries()
              for e in p["events"]]
    assert [(e["kind"], e["target"]) for e in events] == [("prefix",
                                                          "c:gone:")]
