"""A training DAG on contract-violating data, through the real CLI (``airflow dags test``, SQLite, no
scheduler): the validate task fails with the violation report in its log, nothing is trained or
published. (The runs that train are in test_dag_runs_slow.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from solutions_core.model_registry import ModelRegistry
from solutions_core.settings import Settings


def settings_of(airflow_env: dict[str, str]) -> Settings:
    return Settings(home=Path(airflow_env["SOLUTIONS_HOME"]))


def test_contract_violating_data_fails_at_validation_and_publishes_nothing(airflow_env, dags_test, tmp_path):
    from fraud_detection.generate import generate_transactions

    bad = generate_transactions(600, days=10, fraud_rate=0.03, seed=3)
    bad.loc[:9, "amount"] = -1.0
    bad.loc[:4, "channel"] = "fax"
    source = tmp_path / "bad.parquet"
    bad.to_parquet(source)
    settings = settings_of(airflow_env)
    before = ModelRegistry(settings.resolved_models_dir()).versions("fraud_detection")

    finished, _ = dags_test("train_fraud_detection", "2026-11-01", {"preset": "tiny", "source": str(source)})
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0, output[-3000:]
    # The violation report is in the validate task's log, every broken rule named.
    assert "Data contract violated" in output
    assert "amount" in output and "channel" in output and "fax" in output
    assert "[DAG TEST] starting task_id=validate_data " in output and "[DAG TEST] starting task_id=split_data " not in output
    assert ModelRegistry(settings.resolved_models_dir()).versions("fraud_detection") == before
    run_dir = settings.resolved_runs_dir() / "fraud_detection" / "scheduled-20261101T000000"
    report = json.loads((run_dir / "validation.json").read_text())
    assert report and not (run_dir / "export").exists()
