"""Runs several DAGs one after another in ONE process with ``dag.test()`` (what ``airflow dags test``
does), so Airflow and TensorFlow are imported once for all of them; prints one JSON line per run.

Usage: run_dags.py DAGS_FOLDER RUNS_JSON, where each run is {"dag_id", "date", "conf", "touch"}: "date" is
YYYY-MM-DD or "last-day-of:<app>/<table>[/<column>]" (the last day of the column, default "timestamp",
in the stored table), "touch" a file to create
first (the tests use it to see that a re-run replaced its folder).
"""

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from airflow.models import DagBag

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
for run in json.loads(sys.argv[2]):
    date = run["date"]
    if date.startswith("last-day-of:"):
        import pandas as pd

        app, table, *column = date.split(":", 1)[1].split("/")
        column = column[0] if column else "timestamp"
        stored = pd.read_parquet(Path(os.environ["SOLUTIONS_HOME"]) / "data" / app / f"{table}.parquet", columns=[column])
        date = pd.to_datetime(stored[column]).max().date().isoformat()
    if run.get("touch"):
        Path(run["touch"]).write_text("")
    started = time.perf_counter()
    dag_run = bag.get_dag(run["dag_id"]).test(
        logical_date=dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc), run_conf=run.get("conf") or {}
    )
    print(json.dumps({"dag_id": run["dag_id"], "date": date, "state": str(getattr(dag_run.state, "value", dag_run.state)),
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)
