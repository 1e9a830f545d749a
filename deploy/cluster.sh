#!/usr/bin/env bash
# A local Redis Cluster on loopback for development and the quickstart:
# 3 primaries + 3 replicas on ports 7000-7005 by default, each node with
# deploy/redis.conf plus per-node overrides, data and logs under
# deploy/.local/cluster (or --dir).
#
# Usage: deploy/cluster.sh [start|stop|status|reset] [options]
#   start    start the nodes and create the cluster; a healthy cluster is
#            reused, a stopped one restarted with its data, a broken one
#            recreated from scratch (default command)
#   stop     stop the nodes this script started (by the PIDs in their pid
#            files); data is kept for the next start
#   status   print each node's role and the cluster state; exit 0 when healthy
#   reset    stop, then delete the data directory
# Options:
#   --dir DIR          data directory (default $INVAL_CLUSTER_DIR or
#                      deploy/.local/cluster)
#   --base-port PORT   first port (default $INVAL_BASE_PORT or 7000)
#   --bus-offset N     each node's cluster bus port is its port + N (default
#                      $INVAL_CLUSTER_BUS_OFFSET or 10000, Redis's own)
#   --primaries N      default 3
#   --replicas N       replicas per primary, default 1
#   --timeout SEC      how long start waits for a healthy cluster (default 60)
# start records the shape it used in DIR/cluster.env; stop, status and reset
# act on that record (and stop on every pid file in DIR), whatever the
# options or the environment say, so they reach the nodes that really run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/lib.sh
. "$HERE/lib.sh"
DIR=${INVAL_CLUSTER_DIR:-$HERE/.local/cluster}
BASE=${INVAL_BASE_PORT:-7000}
BUS_OFFSET=${INVAL_CLUSTER_BUS_OFFSET:-10000}
PRIMARIES=3
REPLICAS=1
# The settings given by an option or the environment (not defaults).
GIVEN=" ${INVAL_BASE_PORT:+BASE} ${INVAL_CLUSTER_BUS_OFFSET:+BUS_OFFSET} "
TIMEOUT=60
CMD=start

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() { echo "cluster.sh: $*" >&2; exit 1; }

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then CMD=$1; shift; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=$2; shift ;;
    --dir=*) DIR=${1#*=} ;;
    --base-port) BASE=$2; GIVEN+=" BASE "; shift ;;
    --base-port=*) BASE=${1#*=}; GIVEN+=" BASE " ;;
    --bus-offset) BUS_OFFSET=$2; GIVEN+=" BUS_OFFSET "; shift ;;
    --bus-offset=*) BUS_OFFSET=${1#*=}; GIVEN+=" BUS_OFFSET " ;;
    --primaries) PRIMARIES=$2; GIVEN+=" PRIMARIES "; shift ;;
    --replicas) REPLICAS=$2; GIVEN+=" REPLICAS "; shift ;;
    --timeout) TIMEOUT=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
case "$BASE$BUS_OFFSET$PRIMARIES$REPLICAS$TIMEOUT" in *[!0-9]*|'') die "ports and counts are numbers" ;; esac
[ "$PRIMARIES" -ge 3 ] || die "a Redis Cluster needs at least 3 primaries"
[ "$BUS_OFFSET" -ge 1 ] || die "--bus-offset must be at least 1"

command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools)"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
RECORD="$DIR/cluster.env"

# Reads the shape that start recorded (plain KEY=NUMBER lines, nothing is
# executed). The record wins over defaults, and for stop, status and reset
# over the options too: it names the nodes that were started. For start, a
# differing option is an error, since a created cluster cannot change shape
# in place.
read_record() {
  [ -f "$RECORD" ] || return 0
  local key val name
  while IFS='=' read -r key val; do
    case "$val" in ''|*[!0-9]*) continue ;; esac
    case "$key" in
      BASE|BUS_OFFSET|PRIMARIES|REPLICAS) ;;
      *) continue ;;
    esac
    name=$key
    if [ "${!name}" != "$val" ]; then
      if [[ "$GIVEN" == *" $key "* ]]; then
        if [ "$CMD" = start ] && [ -f "$DIR/created" ]; then
          die "the cluster in $DIR was created with $key=$val, not ${!name}; use those settings, or reset it first"
        fi
        echo "cluster.sh: using $key=$val as recorded in $RECORD" >&2
      fi
      printf -v "$name" '%s' "$val"
    fi
  done <"$RECORD"
}
read_record
NODES=$((PRIMARIES * (1 + REPLICAS)))
PORTS=()
for i in $(seq 0 $((NODES - 1))); do PORTS+=($((BASE + i))); done

cli() { local port=$1; shift; timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null; }
pidfile() { echo "$DIR/$1/redis.pid"; }

# True when process $1's argv[0] mentions $2 (a recycled PID does not).
runs_program() {
  local argv0=""
  IFS= read -r -d '' argv0 2>/dev/null < "/proc/$1/cmdline" || true
  [[ "$argv0" == *"$2"* ]]
}

# The PID of our node on port, or nothing. A pid file whose process is gone
# or is no longer a redis-server is ignored (the PID may have been reused).
node_pid() {
  local f pid
  f=$(pidfile "$1")
  [ -f "$f" ] || return 0
  read -r pid 2>/dev/null < "$f" || true
  case "$pid" in ''|*[!0-9]*) return 0 ;; esac
  if kill -0 "$pid" 2>/dev/null && runs_program "$pid" redis-server; then
    echo "$pid"
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_node() {
  local port=$1 d="$DIR/$1"
  mkdir -p "$d"
  if [ -n "$(node_pid "$port")" ]; then return 0; fi
  if port_busy "$port" || port_busy $((port + BUS_OFFSET)); then
    die "port $port or $((port + BUS_OFFSET)) is used by another process; pick another --base-port or --bus-offset"
  fi
  # deploy/redis.conf is the production-minded base; the overrides make it
  # a loopback node of this cluster, daemonized, with its own files.
  redis-server "$HERE/redis.conf" \
    --port "$port" --cluster-port $((port + BUS_OFFSET)) --bind 127.0.0.1 --dir "$d" \
    --cluster-config-file "nodes-$port.conf" \
    --daemonize yes --pidfile "$(pidfile "$port")" --logfile "$d/redis.log" \
    --repl-diskless-sync-delay 0 --maxmemory 256mb \
  || die "redis-server on port $port failed to start; see $d/redis.log"
}

wait_ping() {
  local port=$1 i
  for i in $(seq 1 100); do
    [ "$(cli "$port" ping)" = PONG ] && return 0
    sleep 0.1
  done
  die "node $port does not answer PING; see $DIR/$port/redis.log"
}

# Empty output when every node reports cluster_state:ok, knows every node
# and every replica's link is up; otherwise what is wrong.
health() {
  local port info known
  for port in "${PORTS[@]}"; do
    # One redis-cli run per node: CLUSTER INFO and INFO replication.
    info=$(printf 'CLUSTER INFO\nINFO replication\n' |
           timeout 5 redis-cli -h 127.0.0.1 -p "$port" 2>/dev/null | tr -d '\r') ||
      { echo "$port down"; return; }
    grep -q '^cluster_state:ok' <<<"$info" || { echo "$port state not ok"; return; }
    known=$(sed -n 's/^cluster_known_nodes://p' <<<"$info")
    [ "$known" = "$NODES" ] || { echo "$port knows $known/$NODES nodes"; return; }
    if grep -q '^role:slave' <<<"$info"; then
      grep -q '^master_link_status:up' <<<"$info" || { echo "$port link down"; return; }
    fi
  done
}

wait_healthy() {
  local deadline=$((SECONDS + TIMEOUT)) why
  while :; do
    why=$(health)
    [ -z "$why" ] && return 0
    [ $SECONDS -ge $deadline ] && { echo "cluster.sh: not healthy after ${TIMEOUT}s: $why" >&2; return 1; }
    sleep 0.2
  done
}

# Stops every node with a pid file in DIR (not only the ports computed from
# the options) and says how many it stopped. Returns non-zero when a node
# it signalled is still running afterwards.
stop_nodes() {
  local f port pid pids=() left=()
  for f in "$DIR"/*/redis.pid; do
    [ -e "$f" ] || continue
    port=$(basename "$(dirname "$f")")
    pid=$(node_pid "$port")
    [ -n "$pid" ] || { rm -f "$f"; continue; }
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  [ ${#pids[@]} -eq 0 ] || wait_for_exit "${pids[@]}"
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      kill -0 "$pid" 2>/dev/null && left+=("$pid")
    fi
  done
  for f in "$DIR"/*/redis.pid; do
    [ -e "$f" ] || continue
    port=$(basename "$(dirname "$f")")
    [ -n "$(node_pid "$port")" ] || rm -f "$f"
  done
  if [ ${#left[@]} -gt 0 ]; then
    echo "cluster.sh: still running after SIGKILL: pid ${left[*]}" >&2
    return 1
  fi
  STOPPED=${#pids[@]}
}
STOPPED=0

created() { [ -f "$DIR/created" ]; }

create_fresh() {
  local port addrs=()
  stop_nodes
  for port in "${PORTS[@]}"; do rm -rf "${DIR:?}/$port"; done
  rm -f "$DIR/created"
  for port in "${PORTS[@]}"; do start_node "$port"; done
  for port in "${PORTS[@]}"; do wait_ping "$port"; addrs+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$REPLICAS" \
    --cluster-yes >"$DIR/create.log" 2>&1 \
    || { cat "$DIR/create.log" >&2; die "redis-cli --cluster create failed"; }
  wait_healthy || die "the new cluster did not become healthy"
  date -u +%FT%TZ >"$DIR/created"
  printf 'BASE=%s\nBUS_OFFSET=%s\nPRIMARIES=%s\nREPLICAS=%s\n' \
    "$BASE" "$BUS_OFFSET" "$PRIMARIES" "$REPLICAS" >"$RECORD"
}

cmd_start() {
  local port
  if created; then
    for port in "${PORTS[@]}"; do start_node "$port"; done
    for port in "${PORTS[@]}"; do wait_ping "$port"; done
    if wait_healthy; then
      echo "cluster up: ${PORTS[0]}-${PORTS[-1]} (data in $DIR)"
      return 0
    fi
    echo "cluster.sh: recreating the cluster from scratch" >&2
  fi
  create_fresh
  echo "cluster created: ${PORTS[0]}-${PORTS[-1]} (data in $DIR)"
}

cmd_status() {
  local port pid role
  for port in "${PORTS[@]}"; do
    pid=$(node_pid "$port")
    if [ -z "$pid" ]; then
      printf '%s  stopped\n' "$port"
      continue
    fi
    role=$(cli "$port" role | head -1 || true)
    printf '%s  pid %-8s %s\n' "$port" "$pid" "${role:-not answering}"
  done
  local why
  why=$(health)
  if [ -z "$why" ]; then echo "cluster_state: ok"; return 0; fi
  echo "cluster: not healthy ($why)"
  return 1
}

case "$CMD" in
  start) cmd_start ;;
  stop)
    stop_nodes || die "some nodes could not be stopped"
    if [ "$STOPPED" -gt 0 ]; then
      echo "cluster stopped: $STOPPED nodes (data kept in $DIR)"
    else
      echo "cluster: no node was running (data in $DIR)"
    fi ;;
  status) cmd_status ;;
  reset) stop_nodes || die "some nodes could not be stopped; nothing removed"
         rm -rf "${DIR:?}"; echo "cluster removed ($DIR)" ;;
  help) usage ;;
  *) die "unknown command $CMD (see --help)" ;;
esac
