"""Real Airflow for the DAG tests: a temporary AIRFLOW_HOME with a migrated SQLite database, and
``airflow dags test`` (the whole DAG in one process, no scheduler) run as a subprocess, so Airflow's
logging and settings never leak into the rest of the suite. Every subprocess is waited for (or killed
on timeout) before the helper returns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")


def airflow_environment(airflow_home: Path, solutions_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SOLUTIONS_HOME": str(solutions_home),
        "SOLUTIONS_CONTRACTS_DIR": str(REPO / "data_contracts"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("airflow")
    env = airflow_environment(root / "airflow_home", root / "solutions_home")
    migrated = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    return env


@pytest.fixture(scope="session")
def dags_test(airflow_env):
    """``dags_test(dag_id, date, conf, env=...)`` runs ``airflow dags test DAG DATE --conf JSON`` (with
    ``env`` over the Airflow environment) and returns (the finished process, seconds)."""

    def run(
        dag_id: str, logical_date: str, conf: dict | None = None, timeout: float = 900, env: dict[str, str] | None = None
    ) -> tuple[subprocess.CompletedProcess, float]:
        command = [str(AIRFLOW), "dags", "test", dag_id, logical_date, "--conf", json.dumps(conf or {})]
        started = time.perf_counter()
        finished = subprocess.run(command, env={**airflow_env, **(env or {})}, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - started
        print(f"airflow dags test {dag_id} {logical_date}: rc={finished.returncode} in {seconds:.1f} s")
        return finished, seconds

    return run


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
