"""The redis-py way of deleting keys by pattern on a cluster, as many
teams write it: scan_iter(match=PATTERN, count=1000) on a RedisCluster
client (every primary is scanned) and delete() per key. Prints the seconds
it took and the keys deleted.

Usage: redispy_delete.py HOST:PORT PATTERN
"""

import sys
import time

from redis.cluster import ClusterNode, RedisCluster


def main():
    host, _, port = sys.argv[1].rpartition(":")
    pattern = sys.argv[2]
    rc = RedisCluster(startup_nodes=[ClusterNode(host, int(port))])
    t0 = time.monotonic()
    n = 0
    for key in rc.scan_iter(match=pattern, count=1000):
        rc.delete(key)
        n += 1
    print(f"{time.monotonic() - t0:.6f} {n}")


if __name__ == "__main__":
    main()
