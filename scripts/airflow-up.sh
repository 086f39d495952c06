#!/usr/bin/env bash
# Start Airflow locally: api-server (UI + REST on 127.0.0.1), scheduler, dag-processor and triggerer,
# SQLite, the DAGs of ./dags. Stop with scripts/airflow-down.sh (make airflow-down).
#
# Not `airflow standalone`: it binds its log servers on all interfaces. Every process here listens on
# 127.0.0.1 only or serves nothing (--skip-serve-logs). State lives in $AIRFLOW_HOME (default
# ./artifacts/airflow); trained models go where `make serve` reads them ($SOLUTIONS_HOME, ./artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
AIRFLOW="$REPO/.venv/bin/airflow"
PORT="${AIRFLOW_PORT:-8080}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/artifacts/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$PORT/execution/"
# A laptop instance: everyone who can reach 127.0.0.1 is admin, no login page.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS:-True}"
# No schedules locally (dags/orchestration.local.yaml): DAGs run when triggered, so they can start unpaused.
export SOLUTIONS_ORCHESTRATION_CONFIG="${SOLUTIONS_ORCHESTRATION_CONFIG:-$REPO/dags/orchestration.local.yaml}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-False}"
export SOLUTIONS_HOME="${SOLUTIONS_HOME:-$REPO/artifacts}"
export SOLUTIONS_CONTRACTS_DIR="${SOLUTIONS_CONTRACTS_DIR:-$REPO/data_contracts}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
PIDS="$AIRFLOW_HOME/pids"
LOGS="$AIRFLOW_HOME/process-logs"

if [ ! -x "$AIRFLOW" ]; then
  echo "No $AIRFLOW: run 'make install' first." >&2
  exit 1
fi
mkdir -p "$PIDS" "$LOGS"
for pid_file in "$PIDS"/*.pid; do
  if [ -e "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "Airflow is already running ($(basename "$pid_file" .pid) pid $(cat "$pid_file")); stop it with make airflow-down." >&2
    exit 1
  fi
done
rm -f "$PIDS"/*.pid

# The api-server signs the tokens tasks use to talk to it; one random secret per AIRFLOW_HOME.
if [ ! -s "$AIRFLOW_HOME/jwt_secret" ]; then
  python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$AIRFLOW_HOME/jwt_secret"
  chmod 600 "$AIRFLOW_HOME/jwt_secret"
fi
export AIRFLOW__API_AUTH__JWT_SECRET="$(cat "$AIRFLOW_HOME/jwt_secret")"

started=$(date +%s)
"$AIRFLOW" db migrate > "$LOGS/db-migrate.log" 2>&1 || { echo "airflow db migrate failed; see $LOGS/db-migrate.log" >&2; exit 1; }

start() {  # name, command...: each in its own session, so stopping it reaches its workers too
  local name="$1"; shift
  setsid "$@" > "$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}
start api-server "$AIRFLOW" api-server --host 127.0.0.1 --port "$PORT" --workers 1
start scheduler "$AIRFLOW" scheduler --skip-serve-logs
start dag-processor "$AIRFLOW" dag-processor
start triggerer "$AIRFLOW" triggerer --skip-serve-logs

for _ in $(seq 1 180); do
  if python3 - "$PORT" <<'PY' 2>/dev/null
import json, sys, urllib.request
health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v2/monitor/health", timeout=2))
sys.exit(0 if health["metadatabase"]["status"] == "healthy" else 1)
PY
  then
    echo "Airflow is up in $(( $(date +%s) - started )) s: http://127.0.0.1:$PORT (DAGs from $REPO/dags; they appear within a minute)"
    echo "  trigger: ▶ in the UI, or AIRFLOW_HOME=$AIRFLOW_HOME .venv/bin/airflow dags trigger train_fraud_detection --conf '{\"preset\": \"tiny\"}'"
    echo "  stop:    make airflow-down      logs: $LOGS/"
    exit 0
  fi
  for pid_file in "$PIDS"/*.pid; do
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      name=$(basename "$pid_file" .pid)
      echo "Airflow's $name exited; see $LOGS/$name.log. Stopping the rest." >&2
      "$REPO/scripts/airflow-down.sh" >&2 || true
      exit 1
    fi
  done
  sleep 1
done
echo "Airflow's api-server did not become healthy on 127.0.0.1:$PORT in 180 s; see $LOGS/. Stopping." >&2
"$REPO/scripts/airflow-down.sh" >&2 || true
exit 1
