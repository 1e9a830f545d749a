#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine to a verdict:
#   1. installs missing packages (as root; otherwise says which are missing),
#   2. builds build/ (RelWithDebInfo) and build-asan/ (ASan + UBSan), with
#      warnings as errors (-DINV_WERROR=ON),
#   3. runs every CTest test (C unit tests and pytest integration tests, which
#      start their own throwaway Redis servers and clusters on free ports) in
#      both trees,
#   4. stops anything the tests left running (by the PIDs they recorded) and
#      removes its temporary directory, even on failure or Ctrl-C.
# Exits non-zero on any failure; the last line is "N passed, M failed".
#
# Usage: tests/run.sh [--fast] [-R REGEX] [-j JOBS]
#   --fast      skip the sanitizer build and its test run
#   -R REGEX    run only the CTest tests matching REGEX (passed to ctest -R)
#   -j JOBS     tests run in parallel (default 2; they use free ports)
# Environment: INVAL_KEEP_RUNDIR=1 keeps the run directory (logs of every
# process) when something failed; INVAL_RUN_BUILD and INVAL_RUN_ASAN_BUILD
# name the two build trees (default build and build-asan, under the root).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

FAST=0
REGEX=""
JOBS=${INVAL_TEST_JOBS:-2}
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) FAST=1 ;;
    -R) [ $# -ge 2 ] || { echo "run.sh: -R needs a regex" >&2; exit 2; }
        REGEX=$2; shift ;;
    -R*) REGEX=${1#-R} ;;
    -j) [ $# -ge 2 ] || { echo "run.sh: -j needs a number" >&2; exit 2; }
        JOBS=$2; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# build-essential brings cc, c++ (tests/consumers builds a C++ program) and
# binutils (nm, readelf).
PACKAGES=(build-essential cmake pkg-config libhiredis-dev libuv1-dev
          libmsgpack-dev libssl-dev libsystemd-dev systemd redis-server redis-tools python3-pytest
          python3-redis python3-msgpack python3-pip python3-setuptools
          python3-venv python3-yaml openssl valgrind prometheus
          clang-format)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
phase_start=0
phase() { phase_start=$(now); echo "==> $*"; }
phase_done() { echo "<== $1 ($(elapsed "$phase_start"))"; }

BUILD=${INVAL_RUN_BUILD:-build}
ASAN_BUILD=${INVAL_RUN_ASAN_BUILD:-build-asan}
SUITE_START=$(now)
RUNDIR=""
PASSED=0
FAILED=0
FAILURES=()

# True when process $1's argv[0] mentions $2 (a recycled PID does not).
runs_program() {
  local argv0=""
  IFS= read -r -d '' argv0 2>/dev/null < "/proc/$1/cmdline" || true
  [[ "$argv0" == *"$2"* ]]
}

# Stops every process the tests recorded in $RUNDIR/*/pids and still alive.
# A PID file holds the PID and the program name; a PID whose command line
# no longer mentions that name was recycled by someone else and is spared.
stop_leftovers() {
  [ -n "$RUNDIR" ] && [ -d "$RUNDIR" ] || return 0
  local f pid name victims=()
  for f in "$RUNDIR"/*/pids/*.pid; do
    [ -e "$f" ] || continue
    { read -r pid; read -r name; } < "$f" || true
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    if kill -0 "$pid" 2>/dev/null && runs_program "$pid" "$name"; then
      echo "run.sh: stopping leftover $name (pid $pid)" >&2
      kill -TERM "$pid" 2>/dev/null || true
      victims+=("$pid")
    fi
  done
  [ ${#victims[@]} -gt 0 ] || return 0
  local i
  for i in $(seq 1 50); do
    local any=0
    for pid in "${victims[@]}"; do
      kill -0 "$pid" 2>/dev/null && any=1
    done
    [ $any -eq 0 ] && return 0
    sleep 0.1
  done
  for pid in "${victims[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_leftovers
  if [ -n "$RUNDIR" ] && [ -d "$RUNDIR" ]; then
    if [ "${INVAL_KEEP_RUNDIR:-0}" = 1 ] && [ $rc -ne 0 ]; then
      echo "run.sh: kept $RUNDIR for inspection" >&2
    else
      rm -rf "$RUNDIR"
    fi
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Packages.
phase "packages"
if command -v dpkg >/dev/null 2>&1; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
      echo "installing: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update
      apt-get install -y --no-install-recommends "${missing[@]}"
    else
      echo "run.sh: missing packages: ${missing[*]}" >&2
      echo "run.sh: install them (sudo apt-get install ${missing[*]}) or run as root" >&2
      exit 1
    fi
  fi
else
  echo "run.sh: dpkg not found; assuming the dependencies are installed" >&2
fi
phase_done "packages"

RUNDIR=$(mktemp -d "${TMPDIR:-/tmp}/inval-run.XXXXXX")

# build_tree DIR CMAKE_ARGS...: configure and build; returns non-zero on error.
build_tree() {
  local dir=$1; shift
  cmake -S "$ROOT" -B "$ROOT/$dir" "$@" >"$RUNDIR/cmake-$dir.log" 2>&1 || {
    cat "$RUNDIR/cmake-$dir.log" >&2; return 1; }
  cmake --build "$ROOT/$dir" -j2
}

# test_tree DIR [ENV=VALUE...]: runs ctest in DIR and adds its counts.
test_tree() {
  local dir=$1; shift
  local log="$RUNDIR/ctest-$dir.log"
  local rd="$RUNDIR/$dir"
  mkdir -p "$rd"
  local args=(--test-dir "$ROOT/$dir" --output-on-failure -j "$JOBS")
  [ -n "$REGEX" ] && args+=(-R "$REGEX")
  local rc=0
  env INVAL_TEST_RUNDIR="$rd" "$@" ctest "${args[@]}" 2>&1 | tee "$log" || rc=$?
  stop_leftovers
  # "95% tests passed, 1 tests failed out of 20"
  local line total failed
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1 || true)
  if [ -n "$line" ]; then
    total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
    failed=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
    PASSED=$((PASSED + total - failed))
    FAILED=$((FAILED + failed))
  elif grep -q 'No tests were found' "$log"; then
    echo "run.sh: no tests matched in $dir" >&2
  else
    FAILED=$((FAILED + 1))
  fi
  [ "$rc" -eq 0 ] || FAILURES+=("tests in $dir")
}

# The C sources are formatted as .clang-format says (Debian's clang-format;
# fix with: clang-format -i $(git ls-files '*.c' '*.h' '*.cpp')).
phase "format"
if command -v clang-format >/dev/null && [ -d "$ROOT/.git" ]; then
  mapfile -t SOURCES < <(git -C "$ROOT" ls-files '*.c' '*.h' '*.cpp')
  if (cd "$ROOT" && clang-format --dry-run --Werror "${SOURCES[@]}"); then
    PASSED=$((PASSED + 1))
  else
    FAILED=$((FAILED + 1))
    FAILURES+=("format (clang-format --dry-run --Werror)")
  fi
else
  echo "run.sh: format check skipped (no clang-format, or not a git checkout)"
fi
phase_done "format"

# 2-3. The RelWithDebInfo tree.
phase "build $BUILD/ (RelWithDebInfo)"
if build_tree "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINV_SANITIZE=OFF -DINV_WERROR=ON; then
  phase_done "build $BUILD/"
  phase "ctest $BUILD/"
  # The ownership-crash chaos cases run 6 seeded runs each here (a
  # different seed every suite run; INVAL_CHAOS_SEED replays one, and
  # INVAL_CHAOS_RUNS=20 is their default when run by hand).
  test_tree "$BUILD" INVAL_CHAOS_RUNS=${INVAL_CHAOS_RUNS:-6}
  phase_done "ctest $BUILD/"
else
  FAILURES+=("build of $BUILD/")
  phase_done "build $BUILD/ FAILED"
fi

# The sanitizer tree.
if [ "$FAST" -eq 0 ]; then
  phase "build $ASAN_BUILD/ (ASan + UBSan)"
  if build_tree "$ASAN_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINV_SANITIZE=ON -DINV_WERROR=ON; then
    phase_done "build $ASAN_BUILD/"
    phase "ctest $ASAN_BUILD/"
    # Under the sanitizers 5 runs of each chaos case check memory and
    # undefined behaviour without doubling the suite's time.
    test_tree "$ASAN_BUILD" ASAN_OPTIONS=detect_leaks=1 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      INVAL_CHAOS_RUNS=${INVAL_CHAOS_RUNS:-5}
    phase_done "ctest $ASAN_BUILD/"
  else
    FAILURES+=("build of $ASAN_BUILD/")
    phase_done "build $ASAN_BUILD/ FAILED"
  fi
fi

echo "total time $(elapsed "$SUITE_START")"
if [ ${#FAILURES[@]} -gt 0 ]; then
  echo "FAILED: ${FAILURES[*]}"
fi
echo "$PASSED passed, $FAILED failed"
[ ${#FAILURES[@]} -eq 0 ] && [ "$FAILED" -eq 0 ]
