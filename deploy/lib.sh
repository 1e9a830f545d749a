# Shell functions shared by quickstart.sh and cluster.sh (sourced, not run).

# wait_for_exit PID...: returns once none of the PIDs runs any more, or after
# 10 s, whichever comes first. The caller signals them before and decides
# what to do with the ones still alive after.
wait_for_exit() {
  local i pid any
  for i in $(seq 1 100); do
    any=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && any=1; done
    [ $any -eq 0 ] && return 0
    sleep 0.1
  done
}
