#!/bin/sh
# inval's benchmark suite (not part of CI): ./tests/bench/run.sh [OPTIONS] [N...]
#
#   N...          scenarios to run (1-12; default all); e.g. `run.sh 3`
#   --scale F     multiply key and event counts by F (0.05 for a quick run)
#   --runs R      alternating runs per figure, median reported (default 3)
#   --shared TXT  a note, printed with the figures, on what else loaded
#                 the machine
#   --before-build DIR  the build tree of the code before the change (e.g.
#                 main's): scenarios 1, 2, 9, 10 and 11 run its programs and
#                 this tree's alternately on the same cluster
#   --no-report   print the results only; leave BENCHMARKS.md alone
#
# The programs come from $INVAL_BUILD_DIR (default: build/); build them with
# CMAKE_BUILD_TYPE=RelWithDebInfo or Release. Each scenario starts its own
# loopback Redis (a 3+3 cluster; 6+6 in scenario 9, one server in 12) and
# inval, and stops them when it ends.
# Results go to tests/bench/results/sN.json and BENCHMARKS.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${INVAL_BUILD_DIR:=$repo/build}"
# Absolute, since the daemons and tools are started from other directories.
if [ -d "$INVAL_BUILD_DIR" ]; then INVAL_BUILD_DIR=$(cd "$INVAL_BUILD_DIR" && pwd); fi
export INVAL_BUILD_DIR
if [ ! -x "$INVAL_BUILD_DIR/proto/invalctl" ]; then
  echo "error: no invalctl in $INVAL_BUILD_DIR (build first, or set INVAL_BUILD_DIR)" >&2
  exit 2
fi
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done
ulimit -n 20000 2>/dev/null || true
exec /usr/bin/python3 "$here/bench.py" "$@"
