#!/usr/bin/env bash
# From a fresh clone to a running inval stack on this machine (loopback only):
# a 3+3 Redis Cluster (deploy/cluster.sh), inval-publisher, and one
# inval-worker per Redis node when the worker is built; then a demo
# invalidation and `invalctl stats`.
#
# Usage: deploy/quickstart.sh [up|down|status|reset] [--no-build]
#   up      install missing packages (as root), build Release into build/,
#           start or reuse the stack, run the demo (default); --no-build
#           skips packages and build and uses the binaries already built
#   down    stop everything `up` started (by the PIDs in its pid files),
#           then the cluster; data is kept
#   status  show what runs
#   reset   down, then delete deploy/.local (Redis data, logs, worker state)
# Environment (defaults in brackets):
#   INVAL_BASE_PORT [7000]          first Redis port; nodes use 6 ports
#   INVAL_PUBLISHER_PORT [7700]     publisher MessagePack-RPC port
#   INVAL_PUBLISHER_METRICS_PORT [9700]   publisher /metrics
#   INVAL_WORKER_BASE_PORT [7800]   worker admin ports (one per node)
#   INVAL_WORKER_METRICS_BASE_PORT [9800] worker /metrics ports
#   INVAL_LOCAL_DIR [deploy/.local] data, logs and pid files
#   INVAL_QUICKSTART_BUILD [build]  build directory
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
LOCAL=${INVAL_LOCAL_DIR:-$HERE/.local}
BASE=${INVAL_BASE_PORT:-7000}
PUB_PORT=${INVAL_PUBLISHER_PORT:-7700}
PUB_METRICS=${INVAL_PUBLISHER_METRICS_PORT:-9700}
WORKER_BASE=${INVAL_WORKER_BASE_PORT:-7800}
WORKER_METRICS_BASE=${INVAL_WORKER_METRICS_BASE_PORT:-9800}
BUILD=${INVAL_QUICKSTART_BUILD:-$ROOT/build}
NODES=6
HOST=127.0.0.1

PACKAGES=(build-essential cmake pkg-config libhiredis-dev libuv1-dev
          libmsgpack-dev libssl-dev redis-server redis-tools)

PUBLISHER=$BUILD/service/inval-publisher
WORKER=$BUILD/workers/inval-worker
INVALCTL=$BUILD/proto/invalctl
RUN=$LOCAL/run
LOGS=$LOCAL/logs

say() { echo "quickstart: $*"; }
die() { echo "quickstart: $*" >&2; exit 1; }

cluster() {
  "$HERE/cluster.sh" "$@" --dir "$LOCAL/cluster" --base-port "$BASE"
}

node_ports() { local i; for i in $(seq 0 $((NODES - 1))); do echo $((BASE + i)); done; }

# ---------------------------------------------------------------- packages

install_packages() {
  command -v dpkg >/dev/null 2>&1 || { say "dpkg not found; assuming the dependencies are installed"; return 0; }
  local p missing=()
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing packages: ${missing[*]}
run as root, or: sudo apt-get install ${missing[*]}"
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
}

# ------------------------------------------------------------------- build

build() {
  say "building Release into $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DINV_SANITIZE=OFF >/dev/null
  local targets=(inval-publisher invalctl)
  # The worker is built when its target exists (workers/ defines it).
  if cmake --build "$BUILD" --target help 2>/dev/null | grep -qw inval-worker; then
    targets+=(inval-worker)
  fi
  cmake --build "$BUILD" -j"$(nproc 2>/dev/null || echo 2)" --target "${targets[@]}"
}

# ----------------------------------------------------------------- daemons
# Each daemon has $RUN/NAME.pid (its PID) and $LOGS/NAME.log (stdout and
# stderr). A pid file counts only while its process runs the same program,
# so a recycled PID is never signalled.

# True when process $1's argv[0] mentions $2 (a recycled PID does not).
runs_program() {
  local argv0=""
  IFS= read -r -d '' argv0 2>/dev/null < "/proc/$1/cmdline" || true
  [[ "$argv0" == *"$2"* ]]
}

daemon_pid() {
  local name=$1 prog=$2 f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 0
  read -r pid 2>/dev/null < "$f" || true
  case "$pid" in ''|*[!0-9]*) return 0 ;; esac
  if kill -0 "$pid" 2>/dev/null && runs_program "$pid" "${prog##*/}"; then
    echo "$pid"
  fi
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

stop_daemon() {
  local name=$1 prog=$2 pid i
  pid=$(daemon_pid "$name" "$prog")
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name (pid $pid) ignored SIGTERM for 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "stopped $name (pid $pid)"
  fi
  rm -f "$RUN/$name.pid"
}

# start_daemon NAME PORT PROGRAM ARGS...: reuses a running instance that
# answers ping on PORT and whose program was not rebuilt since it started;
# otherwise (re)starts it and waits until it answers.
start_daemon() {
  local name=$1 port=$2 prog=$3; shift 3
  local pid i
  pid=$(daemon_pid "$name" "$prog")
  if [ -n "$pid" ]; then
    if [ "$prog" -nt "$RUN/$name.pid" ]; then
      say "$name was rebuilt; restarting it"
    elif "$INVALCTL" -H "$HOST:$port" --timeout 2000 ping >/dev/null 2>&1; then
      say "$name already running (pid $pid, $HOST:$port)"
      return 0
    else
      say "$name (pid $pid) does not answer; restarting it"
    fi
    stop_daemon "$name" "$prog"
  fi
  if port_open "$port"; then
    die "port $port is used by another process; set the INVAL_*_PORT variables"
  fi
  mkdir -p "$RUN" "$LOGS"
  nohup "$prog" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$RUN/$name.pid"
  for i in $(seq 1 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$LOGS/$name.log" >&2 || true
      rm -f "$RUN/$name.pid"
      die "$name exited at start; see $LOGS/$name.log"
    fi
    if "$INVALCTL" -H "$HOST:$port" --timeout 1000 ping >/dev/null 2>&1; then
      say "started $name (pid $pid, $HOST:$port, log $LOGS/$name.log)"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$LOGS/$name.log" >&2 || true
  die "$name does not answer on $HOST:$port; see $LOGS/$name.log"
}

have_worker() { [ -x "$WORKER" ]; }

start_publisher() {
  local args=(--listen "$HOST:$PUB_PORT" --metrics-listen "$HOST:$PUB_METRICS")
  local p
  for p in $(node_ports); do args+=(--redis "$HOST:$p"); done
  start_daemon publisher "$PUB_PORT" "$PUBLISHER" "${args[@]}"
}

start_workers() {
  local i=0 p
  for p in $(node_ports); do
    mkdir -p "$LOCAL/worker-$p"
    start_daemon "worker-$p" $((WORKER_BASE + i)) "$WORKER" \
      --redis "$HOST:$p" --listen "$HOST:$((WORKER_BASE + i))" \
      --metrics-listen "$HOST:$((WORKER_METRICS_BASE + i))" \
      --state-dir "$LOCAL/worker-$p"
    i=$((i + 1))
  done
}

# -------------------------------------------------------------------- demo

demo() {
  local key="quickstart:user:42" i gone=0
  echo
  say "demo: cache a value, invalidate it through the publisher"
  echo "\$ redis-cli -c -p $BASE SET $key '{\"name\":\"Ada\"}'"
  redis-cli -c -h "$HOST" -p "$BASE" SET "$key" '{"name":"Ada"}'
  echo "\$ redis-cli -c -p $BASE EXISTS $key"
  redis-cli -c -h "$HOST" -p "$BASE" EXISTS "$key"
  echo "\$ invalctl -H $HOST:$PUB_PORT invalidate $key"
  "$INVALCTL" -H "$HOST:$PUB_PORT" invalidate "$key"
  if have_worker; then
    for i in $(seq 1 50); do
      if [ "$(redis-cli -c -h "$HOST" -p "$BASE" EXISTS "$key")" = 0 ]; then gone=1; break; fi
      sleep 0.1
    done
    echo "\$ redis-cli -c -p $BASE EXISTS $key"
    redis-cli -c -h "$HOST" -p "$BASE" EXISTS "$key"
    if [ $gone -eq 1 ]; then
      say "the worker of the key's node deleted it"
    else
      say "warning: the key is still there after 5 s; see $LOGS/worker-*.log"
    fi
  else
    say "(inval-worker is not built, so nothing deletes the key yet: the"
    say " event is in the log cache:invalidation:log and was broadcast on"
    say " cache:invalidation)"
  fi
  echo
  echo "\$ invalctl -H $HOST:$PUB_PORT stats"
  "$INVALCTL" -H "$HOST:$PUB_PORT" stats
}

usage_hint() {
  cat <<EOF

The stack is up:
  Redis Cluster     $HOST:$BASE-$((BASE + NODES - 1))   (data in $LOCAL/cluster)
  inval-publisher   $HOST:$PUB_PORT   metrics http://$HOST:$PUB_METRICS/metrics
EOF
  if have_worker; then
    echo "  inval-worker      admin $HOST:$WORKER_BASE-$((WORKER_BASE + NODES - 1)), metrics $HOST:$WORKER_METRICS_BASE-$((WORKER_METRICS_BASE + NODES - 1))"
  fi
  cat <<EOF
  logs              $LOGS

Try:
  $INVALCTL -H $HOST:$PUB_PORT invalidate KEY...
  $INVALCTL -H $HOST:$PUB_PORT invalidate --prefix user:42:
  $INVALCTL -H $HOST:$PUB_PORT invalidate --pattern 'user:*:profile'
  $INVALCTL -H $HOST:$PUB_PORT stats
  $INVALCTL tail -r $HOST:$BASE        # watch cache:invalidation live
  curl -s http://$HOST:$PUB_METRICS/metrics

Stop everything:  $0 down
Status:           $0 status
EOF
}

# ---------------------------------------------------------------- commands

cmd_up() {
  if [ "$NO_BUILD" -eq 0 ]; then
    install_packages
    build
  fi
  [ -x "$PUBLISHER" ] || die "$PUBLISHER was not built"
  [ -x "$INVALCTL" ] || die "$INVALCTL was not built"
  mkdir -p "$LOCAL" "$RUN" "$LOGS"
  cluster start
  start_publisher
  if have_worker; then
    start_workers
  else
    say "inval-worker is not built; starting the publisher only"
  fi
  demo
  usage_hint
}

cmd_down() {
  local p
  for p in $(node_ports); do stop_daemon "worker-$p" "$WORKER"; done
  stop_daemon publisher "$PUBLISHER"
  if [ -d "$LOCAL/cluster" ]; then cluster stop; fi
}

cmd_status() {
  local pid p i=0 rc=0
  pid=$(daemon_pid publisher "$PUBLISHER")
  if [ -n "$pid" ]; then
    echo "publisher        pid $pid  $HOST:$PUB_PORT"
  else
    echo "publisher        stopped"; rc=1
  fi
  for p in $(node_ports); do
    pid=$(daemon_pid "worker-$p" "$WORKER")
    if [ -n "$pid" ]; then
      echo "worker-$p      pid $pid  $HOST:$((WORKER_BASE + i))"
    elif have_worker; then
      echo "worker-$p      stopped"; rc=1
    fi
    i=$((i + 1))
  done
  if [ -d "$LOCAL/cluster" ]; then cluster status || rc=1; else echo "cluster: not created"; rc=1; fi
  return $rc
}

CMD=up
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then CMD=$1; shift; fi
NO_BUILD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) NO_BUILD=1 ;;
    -h|--help) CMD=help ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
case "$CMD" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_down; rm -rf "${LOCAL:?}"; say "removed $LOCAL" ;;
  help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" ;;
  *) die "unknown command $CMD (see --help)" ;;
esac
