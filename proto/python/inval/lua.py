"""The Lua scripts of the regeneration contract, as shipped in the package.

The single source of the scripts is proto/scripts/*.lua in the inval
source tree; inval/scripts is a link to that directory, so the package
works from the source tree, and pip copies the files into an installed
package. They run through redis-py's Script objects: EVALSHA,
with SCRIPT LOAD and a retry when the server answers NOSCRIPT.
"""

import importlib.resources

from redis.commands.core import Script

NAMES = ("commit", "unlock", "soft")

_cache = {}
_scripts = {}


def source(name):
    """The bytes of scripts/<name>.lua. Raises ValueError for a name that is
    not one of NAMES."""
    if name not in NAMES:
        raise ValueError(f"unknown script {name!r} (expected one of "
                         f"{', '.join(NAMES)})")
    data = _cache.get(name)
    if data is None:
        res = importlib.resources.files(__package__) / "scripts"
        data = (res / f"{name}.lua").read_bytes()
        _cache[name] = data
    return data


def script(name):
    """A redis-py Script for scripts/<name>.lua that is not tied to one
    client: call it as script(name)(keys=..., args=..., client=redis).

    The source is passed as bytes, so the SHA1 is computed without asking
    a client for its encoder (redis.cluster.RedisCluster has no connection
    pool to ask). Works with redis.Redis and redis.cluster.RedisCluster as
    long as every key of the call hashes to one slot. The object is made
    once per name and shared, which is safe across threads: a call only
    ever rewrites its SHA1 with the same value."""
    obj = _scripts.get(name)
    if obj is None:
        obj = _scripts.setdefault(name, Script(None, source(name)))
    return obj
