"""inval: the Python client of the inval cache-invalidation service.

- inval.client: a client for inval-publisher (hello, invalidate, stats,
  ping over MessagePack-RPC, pipelined, TCP or TLS).
- inval.cache: the cache-aside read path with a stampede lock, stale
  copies and fenced commits, for redis.Redis and redis.cluster.RedisCluster.
- inval.redisconn: connect_redis(), a redis.Redis or RedisCluster for the
  read path with an ACL user (password from a file or
  $INVAL_REDIS_PASSWORD) and TLS (CA, client certificate, server name).
- inval.keys: the names of the regeneration contract (lock and stale copy
  of a value key) and the cluster hash slot.
- inval.apply, inval.keystate: the worker's rule for one key applied
  directly, and what Redis holds for a key (for tests and debugging).

The contract these follow is proto/PROTOCOL.md in the inval source tree.
"""

from .apply import apply_key
from .cache import COUNTERS, Counters, FillResult, get_or_fill
from .client import Client, Pending, key, pattern, prefix
from .errors import InvalConnectionError, InvalError, InvalTimeoutError
from .keys import key_slot, lock_key, same_slot, stale_key
from .keystate import KeyState, inspect
from .redisconn import connect_redis, read_password

__version__ = "0.1.0"

__all__ = [
    "COUNTERS", "Client", "Counters", "FillResult", "InvalConnectionError",
    "InvalError", "InvalTimeoutError", "KeyState", "Pending", "apply_key",
    "connect_redis", "get_or_fill", "inspect", "key", "key_slot",
    "lock_key", "pattern", "prefix", "read_password", "same_slot",
    "stale_key",
]
