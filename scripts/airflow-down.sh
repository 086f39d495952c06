#!/usr/bin/env bash
# Stop what scripts/airflow-up.sh started, by the process ids it recorded: SIGINT first (Airflow's
# clean shutdown), then SIGTERM, then SIGKILL, each to the process's own session (its workers too).
set -uo pipefail
cd "$(dirname "$0")/.."
AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/artifacts/airflow}"
PIDS="$AIRFLOW_HOME/pids"
shopt -s nullglob
pid_files=("$PIDS"/*.pid)
if [ ${#pid_files[@]} -eq 0 ]; then
  echo "Airflow is not running (no pid files in $PIDS)."
  exit 0
fi

alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }
signal_all() {
  for pid_file in "${pid_files[@]}"; do
    pid=$(cat "$pid_file")
    alive "$pid" && { kill "-$1" -- "-$pid" 2>/dev/null || kill "-$1" "$pid" 2>/dev/null; }
  done
}
wait_all() {  # seconds
  for _ in $(seq 1 "$1"); do
    any=0
    for pid_file in "${pid_files[@]}"; do alive "$(cat "$pid_file")" && any=1; done
    [ $any -eq 0 ] && return 0
    sleep 1
  done
  return 1
}

signal_all INT
wait_all 30 || { signal_all TERM; wait_all 10 || { signal_all KILL; wait_all 5; }; }
for pid_file in "${pid_files[@]}"; do
  pid=$(cat "$pid_file")
  if alive "$pid"; then
    echo "$(basename "$pid_file" .pid) (pid $pid) is still running." >&2
    exit 1
  fi
  rm -f "$pid_file"
done
echo "Airflow stopped."
