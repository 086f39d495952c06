"""A training DAG on contract-violating data, through the real CLI (``airflow dags test``, SQLite, no
scheduler): the validate task fails with the violation report in its log, nothing is trained or
published. (The runs that train are in test_dag_runs_slow.py.)

Any installed app will do (a fork may keep only some): its own tiny data is made to break its primary
contract by a stricter copy of that contract, which the run finds first (SOLUTIONS_CONTRACTS_DIR)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from solutions_core.model_registry import ModelRegistry
from solutions_core.registry import get_solution, list_solutions
from solutions_core.settings import Settings

APP = "fraud_detection" if "fraud_detection" in [e.name for e in list_solutions()] else list_solutions()[0].name


def settings_of(airflow_env: dict[str, str]) -> Settings:
    return Settings(home=Path(airflow_env["SOLUTIONS_HOME"]))


def stricter_contract(repo: Path, folder: Path) -> tuple[str, list[str]]:
    """A copy of the app's primary contract that its data cannot meet: every required number must be
    at least 10^15, every required string one value no row has. Returns the contract's name and the
    broken columns."""
    name = get_solution(APP).contracts[0]
    contract = yaml.safe_load((repo / "data_contracts" / f"{name}.yaml").read_text())
    broken = []
    for column, spec in contract["columns"].items():
        if spec.get("nullable") or spec.get("role") == "label":
            continue
        if spec.get("type") in ("float", "integer") and len(broken) < 2:
            spec.pop("max", None)
            spec["min"] = 10**15
            broken.append(column)
        elif spec.get("type") == "string" and not spec.get("unique") and len(broken) < 2:
            spec.pop("pattern", None)
            spec["allowed"] = ["no-row-has-this"]
            broken.append(column)
    assert broken, f"{name} has no required number or string column to break"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    return name, broken


def test_contract_violating_data_fails_at_validation_and_publishes_nothing(airflow_env, dags_test, repo, tmp_path):
    _, broken = stricter_contract(repo, tmp_path / "contracts")
    settings = settings_of(airflow_env)
    before = ModelRegistry(settings.resolved_models_dir()).versions(APP)

    finished, _ = dags_test(f"train_{APP}", "2026-11-01", {"preset": "tiny"}, env={"SOLUTIONS_CONTRACTS_DIR": str(tmp_path / "contracts")})
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0, output[-3000:]
    # The violation report is in the validate task's log, every broken rule named.
    assert "Data contract violated" in output
    assert all(column in output for column in broken), (broken, output[-3000:])
    assert "[DAG TEST] starting task_id=validate_data " in output and "[DAG TEST] starting task_id=split_data " not in output
    assert ModelRegistry(settings.resolved_models_dir()).versions(APP) == before
    run_dir = settings.resolved_runs_dir() / APP / "scheduled-20261101T000000"
    report = json.loads((run_dir / "validation.json").read_text())
    assert report and not (run_dir / "export").exists()
