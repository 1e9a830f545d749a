#!/usr/bin/env bash
# From a fresh clone to a running inval stack on this machine (loopback only):
# a 3+3 Redis Cluster (deploy/cluster.sh), inval-publisher, and one
# inval-worker per Redis node (the replicas' workers are hot standbys); then
# a demo: a cached key is invalidated through the publisher and disappears,
# and `invalctl stats` lists the workers with their roles.
#
# Usage: deploy/quickstart.sh [up|down|status|reset] [--no-build]
#   up      install missing packages with apt-get (as root), build Release
#           into build-release/, start or reuse the stack, run the demo
#           (default); --no-build skips packages and build and uses the
#           binaries already built
#   down    stop everything `up` started (by the PIDs in its pid files),
#           then the cluster; data is kept
#   status  show what runs; exit 0 when everything does
#   reset   down, then delete deploy/.local (Redis data, logs, worker state)
# Exit status of up: 0 when the stack runs and the demo key was deleted.
# Environment (defaults in brackets):
#   INVAL_BASE_PORT [7000]          first Redis port; nodes use 6 ports
#   INVAL_PUBLISHER_PORT [7700]     publisher MessagePack-RPC port
#   INVAL_PUBLISHER_METRICS_PORT [9700]   publisher /metrics
#   INVAL_WORKER_BASE_PORT [7800]   worker admin ports (one per node)
#   INVAL_WORKER_METRICS_BASE_PORT [9800] worker /metrics ports
#   INVAL_LOCAL_DIR [deploy/.local] data, logs and pid files
#   INVAL_QUICKSTART_BUILD [build-release]  build directory
#   INVAL_CLUSTER_BUS_OFFSET [10000] cluster bus port = node port + this
# up records the ports it used in $INVAL_LOCAL_DIR/stack.env; down and
# status act on that record and on the pid files, whatever the environment
# says, so they reach what really runs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/lib.sh
. "$HERE/lib.sh"
ROOT=$(cd "$HERE/.." && pwd)
LOCAL=${INVAL_LOCAL_DIR:-$HERE/.local}
BASE=${INVAL_BASE_PORT:-7000}
PUB_PORT=${INVAL_PUBLISHER_PORT:-7700}
PUB_METRICS=${INVAL_PUBLISHER_METRICS_PORT:-9700}
WORKER_BASE=${INVAL_WORKER_BASE_PORT:-7800}
WORKER_METRICS_BASE=${INVAL_WORKER_METRICS_BASE_PORT:-9800}
# Not build/: tests/run.sh builds RelWithDebInfo there, and sharing one
# tree would rebuild everything each time the other script runs.
BUILD=${INVAL_QUICKSTART_BUILD:-$ROOT/build-release}
BUS_OFFSET=${INVAL_CLUSTER_BUS_OFFSET:-10000}
NODES=6
HOST=127.0.0.1
RECORD=$LOCAL/stack.env
RECORDED_KEYS=(BASE PUB_PORT PUB_METRICS WORKER_BASE WORKER_METRICS_BASE BUS_OFFSET)

PACKAGES=(build-essential cmake pkg-config libhiredis-dev libuv1-dev
          libmsgpack-dev libssl-dev libsystemd-dev redis-server redis-tools)

PUBLISHER=$BUILD/service/inval-publisher
WORKER=$BUILD/workers/inval-worker
INVALCTL=$BUILD/proto/invalctl
RUN=$LOCAL/run
LOGS=$LOCAL/logs

CMD=up
UP_STARTED=0  # set once up starts processes: die then says how to stop them

say() { echo "quickstart: $*"; }
die() {
  echo "quickstart: $*" >&2
  if [ "$UP_STARTED" -eq 1 ]; then
    echo "quickstart: what did start keeps running; stop it with: $0 down" >&2
  fi
  exit 1
}

cluster() {
  "$HERE/cluster.sh" "$@" --dir "$LOCAL/cluster" --base-port "$BASE" \
    --bus-offset "$BUS_OFFSET"
}

# Writes the ports up uses to $RECORD (KEY=NUMBER lines).
write_record() {
  local key
  for key in "${RECORDED_KEYS[@]}"; do printf '%s=%s\n' "$key" "${!key}"; done >"$RECORD"
}

# For down and status: the ports recorded by up win over the environment
# (the lines are read as numbers, never executed). Says when they differ.
read_record() {
  [ -f "$RECORD" ] || return 0
  local key val
  while IFS='=' read -r key val; do
    case "$val" in ''|*[!0-9]*) continue ;; esac
    [[ " ${RECORDED_KEYS[*]} " == *" $key "* ]] || continue
    if [ "${!key}" != "$val" ]; then
      say "using $key=$val as recorded by up in $RECORD"
      printf -v "$key" '%s' "$val"
    fi
  done <"$RECORD"
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
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DINV_SANITIZE=OFF \
    -DINV_TESTS=OFF >/dev/null
  # Everything but the tests, so that `cmake --install` works on this tree.
  cmake --build "$BUILD" -j"$(nproc 2>/dev/null || echo 2)"
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

# The PID of daemon NAME if it runs. Its pid file holds the PID and, on a
# second line, the program it runs (which wins over PROGRAM, so that a
# daemon started from another build directory is still found).
daemon_pid() {
  local name=$1 prog=$2 f="$RUN/$1.pid" pid recorded=""
  [ -f "$f" ] || return 0
  { read -r pid; read -r recorded; } 2>/dev/null < "$f" || true
  [ -n "$recorded" ] && prog=$recorded
  case "$pid" in ''|*[!0-9]*) return 0 ;; esac
  if kill -0 "$pid" 2>/dev/null && runs_program "$pid" "${prog##*/}"; then
    echo "$pid"
  fi
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# stop_daemons NAME PROGRAM [NAME PROGRAM]...: sends SIGTERM to each daemon
# that runs, waits up to 10 s for all of them (they save state and exit 0),
# then SIGKILLs what is left. Only PIDs from our pid files are signalled.
stop_daemons() {
  local names=() pids=() name prog pid n
  while [ $# -ge 2 ]; do
    name=$1 prog=$2; shift 2
    pid=$(daemon_pid "$name" "$prog")
    if [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      names+=("$name") pids+=("$pid")
    fi
    rm -f "$RUN/$name.pid"
  done
  [ ${#pids[@]} -eq 0 ] || wait_for_exit "${pids[@]}"
  for n in "${!pids[@]}"; do
    if kill -0 "${pids[$n]}" 2>/dev/null; then
      say "${names[$n]} (pid ${pids[$n]}) ignored SIGTERM for 10 s; killing it"
      kill -KILL "${pids[$n]}" 2>/dev/null || true
      sleep 0.2
      if kill -0 "${pids[$n]}" 2>/dev/null; then
        STILL_RUNNING+=("${names[$n]} (pid ${pids[$n]})")
        continue
      fi
    fi
    say "stopped ${names[$n]} (pid ${pids[$n]})"
  done
}
STILL_RUNNING=()

stop_daemon() { stop_daemons "$1" "$2"; }

# Prints "NAME PID" for every daemon of $RUN that still runs.
running_daemons() {
  local f name pid
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    pid=$(daemon_pid "$name" "$name")
    [ -z "$pid" ] || echo "$name $pid"
  done
}

# Stops every daemon that has a pid file in $RUN (the workers, then the
# publisher), whatever ports the environment names now.
stop_all_daemons() {
  local f name list=() last=()
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    case "$name" in
      publisher) last=(publisher "$PUBLISHER") ;;
      worker-*) list+=("$name" "$WORKER") ;;
      *) list+=("$name" "$name") ;;
    esac
  done
  list+=("${last[@]}")
  [ ${#list[@]} -eq 0 ] || stop_daemons "${list[@]}"
}

# start_daemon NAME PORT METRICS_PORT PROGRAM ARGS...: reuses a running
# instance that answers ping on PORT and whose program was not rebuilt since
# it started; otherwise (re)starts it, after checking that nobody else uses
# its two ports, and waits until it answers.
start_daemon() {
  local name=$1 port=$2 mport=$3 prog=$4; shift 4
  local pid i p
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
  for p in "$port" "$mport"; do
    if port_open "$p"; then
      die "port $p (for $name) is used by another process; set the INVAL_*_PORT variables (see --help)"
    fi
  done
  mkdir -p "$RUN" "$LOGS"
  nohup "$prog" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  pid=$!
  printf '%s\n%s\n' "$pid" "$prog" >"$RUN/$name.pid"
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

start_publisher() {
  local args=(--listen "$HOST:$PUB_PORT" --metrics-listen "$HOST:$PUB_METRICS")
  local p
  for p in $(node_ports); do args+=(--redis "$HOST:$p"); done
  start_daemon publisher "$PUB_PORT" "$PUB_METRICS" "$PUBLISHER" "${args[@]}"
}

start_workers() {
  local i=0 p
  for p in $(node_ports); do
    start_daemon "worker-$p" $((WORKER_BASE + i)) \
      $((WORKER_METRICS_BASE + i)) "$WORKER" \
      --redis "$HOST:$p" --listen "$HOST:$((WORKER_BASE + i))" \
      --metrics-listen "$HOST:$((WORKER_METRICS_BASE + i))"
    i=$((i + 1))
  done
}

# -------------------------------------------------------------------- demo

# Polls until every worker reports live (subscribed and caught up with the
# log), so the demo's event cannot arrive before a worker is listening.
wait_workers_live() {
  local i p n deadline=$((SECONDS + 60))
  while :; do
    n=0 i=0
    for p in $(node_ports); do
      if "$INVALCTL" -H "$HOST:$((WORKER_BASE + i))" --timeout 2000 stats --json \
           2>/dev/null | grep -q '"live": 1'; then
        n=$((n + 1))
      fi
      i=$((i + 1))
    done
    [ $n -eq $NODES ] && return 0
    [ $SECONDS -ge $deadline ] && die "only $n of $NODES workers are live after 60 s; see $LOGS/worker-*.log"
    sleep 0.2
  done
}

# Polls until the publisher's stats list a fresh heartbeat of every worker
# (the publisher re-reads them about once a second).
wait_heartbeats() {
  local json fresh deadline=$((SECONDS + 30))
  while :; do
    json=$("$INVALCTL" -H "$HOST:$PUB_PORT" stats --json 2>/dev/null || true)
    fresh=$(grep -c '"stale": false' <<<"$json" || true)
    [ "$fresh" -ge $NODES ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      say "warning: after 30 s, $fresh of $NODES worker heartbeats are fresh"
      return 0
    fi
    sleep 0.2
  done
}

rcli() { redis-cli -c -h "$HOST" -p "$BASE" "$@"; }

# Returns 0 when the demo key was deleted by its node's worker.
demo() {
  local key="quickstart:user:42" i
  echo
  say "demo: cache a value, invalidate it through the publisher, see it gone"
  echo "\$ redis-cli -c -p $BASE SET $key '{\"name\":\"Ada\"}'"
  rcli SET "$key" '{"name":"Ada"}'
  echo "\$ redis-cli -c -p $BASE EXISTS $key"
  rcli EXISTS "$key"
  # The ack means logged in the key's log shard (and replicated) and
  # broadcast; --wait then waits until the worker of the node holding that
  # shard has applied and acknowledged it.
  echo "\$ invalctl -H $HOST:$PUB_PORT invalidate --wait $key"
  "$INVALCTL" -H "$HOST:$PUB_PORT" --timeout 10000 invalidate --wait "$key" || return 1
  for i in $(seq 1 50); do
    [ "$(rcli EXISTS "$key")" = 0 ] && break
    sleep 0.1
  done
  echo "\$ redis-cli -c -p $BASE EXISTS $key"
  rcli EXISTS "$key"
  if [ "$(rcli EXISTS "$key")" = 0 ]; then
    say "the key is gone: the worker of its node deleted it"
    return 0
  fi
  say "error: the key is still there after 5 s; see $LOGS/worker-*.log"
  return 1
}

show_stats() {
  wait_heartbeats
  echo
  echo "\$ invalctl -H $HOST:$PUB_PORT stats"
  "$INVALCTL" -H "$HOST:$PUB_PORT" stats
}

usage_hint() {
  cat <<EOT

The stack is up:
  Redis Cluster     $HOST:$BASE-$((BASE + NODES - 1))   (3 primaries + 3 replicas, data in $LOCAL/cluster)
  inval-publisher   $HOST:$PUB_PORT   metrics http://$HOST:$PUB_METRICS/metrics
  inval-worker      one per node: admin $HOST:$WORKER_BASE-$((WORKER_BASE + NODES - 1)), metrics $HOST:$WORKER_METRICS_BASE-$((WORKER_METRICS_BASE + NODES - 1))
  logs              $LOGS

Try:
  $INVALCTL -H $HOST:$PUB_PORT invalidate KEY...
  $INVALCTL -H $HOST:$PUB_PORT invalidate --prefix user:42:
  $INVALCTL -H $HOST:$PUB_PORT invalidate --pattern 'user:*:profile'
  $INVALCTL -H $HOST:$PUB_PORT stats
  $INVALCTL -H $HOST:$WORKER_BASE stats      # one worker's own counters
  $INVALCTL tail -r $HOST:$BASE        # watch cache:invalidation live
  curl -s http://$HOST:$PUB_METRICS/metrics

Stop everything:  $0 down
Status:           $0 status
EOT
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local out p ok=0
  if [ "$NO_BUILD" -eq 0 ]; then
    install_packages
    build
  fi
  for p in "$PUBLISHER" "$WORKER" "$INVALCTL"; do
    [ -x "$p" ] || die "$p was not built (run without --no-build)"
  done
  mkdir -p "$LOCAL" "$RUN" "$LOGS"
  if [ -f "$RECORD" ] && [ -n "$(running_daemons)" ]; then
    # A stack that runs with other ports must be stopped before this one.
    local key val
    while IFS='=' read -r key val; do
      [[ " ${RECORDED_KEYS[*]} " == *" $key "* ]] || continue
      [ "${!key}" = "$val" ] ||
        die "the stack in $LOCAL runs with $key=$val, not ${!key}; stop it first ($0 down)"
    done <"$RECORD"
  fi
  write_record
  UP_STARTED=1
  out=$(cluster start) || { echo "$out"; die "the cluster did not start"; }
  echo "$out"
  if grep -q "cluster created" <<<"$out"; then
    # A new cluster has a new, empty log: daemons still attached to the
    # old one restart, and the workers' positions in the old log go.
    stop_all_daemons
    for p in $(node_ports); do rm -rf "${LOCAL:?}/worker-$p"; done
  fi
  start_publisher
  start_workers
  wait_workers_live
  demo && ok=1
  show_stats
  usage_hint
  [ $ok -eq 1 ] || die "the demo key was not deleted"
}

# Stops what up started and says what it stopped; exits non-zero when
# something it started still runs afterwards.
cmd_down() {
  local name pid left=()
  read_record
  stop_all_daemons
  if [ -d "$LOCAL/cluster" ]; then cluster stop || left+=("cluster nodes"); fi
  left+=("${STILL_RUNNING[@]}")
  while read -r name pid; do
    left+=("$name (pid $pid)")
  done < <(running_daemons)
  if [ ${#left[@]} -gt 0 ]; then
    echo "quickstart: still running: ${left[*]}" >&2
    exit 1
  fi
  say "nothing of the stack runs any more"
}

cmd_status() {
  local pid p i=0 rc=0
  read_record
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
    else
      echo "worker-$p      stopped"; rc=1
    fi
    i=$((i + 1))
  done
  if [ -d "$LOCAL/cluster" ]; then cluster status || rc=1; else echo "cluster: not created"; rc=1; fi
  return $rc
}

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
  reset) (cmd_down) || die "not everything stopped; $LOCAL was kept"
         rm -rf "${LOCAL:?}"; say "removed $LOCAL" ;;
  help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" ;;
  *) die "unknown command $CMD (see --help)" ;;
esac
