#!/usr/bin/env bash
# Fuzzes every libFuzzer target (tests/fuzz/fuzz_*.c) for SECONDS each.
#
# Usage: tests/fuzz/run.sh SECONDS [NAME...]
#   NAME    only these targets (codec, payload, ...); default: all of them
#
# Builds the libFuzzer tree build-fuzz/ (CC=clang, -DINV_FUZZ=ON, ASan and
# UBSan) when needed, then runs each fuzz_NAME on a copy of its committed
# corpus tests/fuzz/corpus/NAME/ in a scratch directory: new inputs and
# crash artifacts stay there (the path is printed), the committed corpus is
# never touched. Prints executions, new inputs and findings per target;
# exits 1 when a target crashed or broke an invariant.
#
# Not part of tests/run.sh: CTest replays the committed corpora
# (fuzz.NAME_replay) in every build tree instead. To keep a finding, copy
# it into tests/fuzz/corpus/NAME/ once the bug is fixed.
# Environment: INVAL_FUZZ_BUILD names the build tree (default build-fuzz),
# INVAL_FUZZ_JOBS the build's parallelism (default 2).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]] || [ "$1" -eq 0 ]; then
  echo "usage: tests/fuzz/run.sh SECONDS [NAME...]" >&2
  exit 2
fi
SECS=$1
shift
BUILD=${INVAL_FUZZ_BUILD:-build-fuzz}
JOBS=${INVAL_FUZZ_JOBS:-2}

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  TARGETS=()
  for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    TARGETS+=("${name#fuzz_}")
  done
fi
for t in "${TARGETS[@]}"; do
  if [ ! -d "tests/fuzz/corpus/$t" ]; then
    echo "run.sh: no corpus tests/fuzz/corpus/$t for target $t" >&2
    exit 2
  fi
done

command -v clang >/dev/null || { echo "run.sh: clang is not installed" >&2; exit 2; }
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  echo "==> configuring $BUILD (clang, INV_FUZZ=ON, ASan+UBSan)"
  CC=clang cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DINV_FUZZ=ON -DINV_SANITIZE=ON >/dev/null
fi
BINS=()
for t in "${TARGETS[@]}"; do BINS+=("fuzz_$t"); done
echo "==> building ${BINS[*]}"
cmake --build "$BUILD" -j "$JOBS" --target "${BINS[@]}" >/dev/null

SCRATCH=$(mktemp -d /tmp/inval-fuzz.XXXXXX)
echo "==> scratch directory $SCRATCH"
FAILED=()
printf '%-10s %12s %10s %8s  %s\n' target executions exec/s new result
for t in "${TARGETS[@]}"; do
  work=$SCRATCH/$t
  mkdir -p "$work/corpus" "$work/new" "$work/artifacts"
  cp "tests/fuzz/corpus/$t/"* "$work/corpus/"
  rc=0
  # New inputs go to the first directory; -max_len matches the replay
  # driver's cap so that a finding replays whole.
  "$BUILD/tests/fuzz_$t" -max_total_time="$SECS" -max_len=8192 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    "$work/new" "$work/corpus" >"$work/log" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units:/ { print $2 }' "$work/log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec:/ { print $2 }' "$work/log" | tail -1)
  fresh=$(find "$work/new" -type f | wc -l)
  found=$(find "$work/artifacts" -type f | wc -l)
  if [ "$rc" -ne 0 ] || [ "$found" -gt 0 ]; then
    result="FAILED (exit $rc, $found artifact(s) in $work/artifacts, log $work/log)"
    FAILED+=("$t")
  else
    result=ok
  fi
  printf '%-10s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$fresh" "$result"
done
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "==> findings in: ${FAILED[*]}"
  for t in "${FAILED[@]}"; do
    grep -m5 -E "ERROR|invariant failed|SUMMARY" "$SCRATCH/$t/log" || true
  done
  exit 1
fi
echo "==> no findings; new inputs are in $SCRATCH/*/new"
