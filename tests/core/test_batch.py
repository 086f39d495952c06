"""The batch seam (``Solution.batch`` + ``solutions_core.batch.run_batch``) without TensorFlow: inputs
are validated first, outputs land per logical date, a re-run replaces them, a failure keeps them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraud_detection.solution import FraudDetection
from solutions_core.batch import run_batch
from solutions_core.contracts import ContractViolation
from solutions_core.data import DataStore
from solutions_core.registry import get_solution
from solutions_core.settings import Settings
from solutions_core.solution import BatchContext

REPO = Path(__file__).resolve().parents[2]
DAY = dt.date(2025, 1, 5)


class CountingFraud(FraudDetection):
    """Fraud's contract and data, with batch work that only counts the day's rows (no model call)."""

    def __init__(self, fail: bool = False, label: str = "first"):
        self.fail, self.label = fail, label

    def batch(self, context: BatchContext) -> list[Path]:
        frame = context.tables["fraud_transactions"]
        rows = int((pd.to_datetime(frame["timestamp"]).dt.date == context.logical_date).sum())
        path = context.output_dir / "counts.parquet"
        pd.DataFrame({"rows": [rows], "label": [self.label], "champion": [context.champion.version]}).to_parquet(path)
        if self.fail:
            raise RuntimeError("the batch job broke half way")
        return [path]


@pytest.fixture()
def batch_home(tmp_path) -> Settings:
    settings = Settings(home=tmp_path, contracts_dir=REPO / "data_contracts")
    solution = get_solution("fraud_detection")
    tables = solution.generate(solution.make_config({"size": 600, "days": 10}))
    DataStore(settings.resolved_data_dir()).write("fraud_detection", "fraud_transactions", tables["fraud_transactions"])
    champion = settings.resolved_models_dir() / "fraud_detection" / "3"
    (champion / "assets.extra").mkdir(parents=True)
    (champion / "saved_model.pb").write_bytes(b"")  # the registry only needs the file to list the version
    (champion / "assets.extra" / "solution_metadata.json").write_text(json.dumps({"version": 3}))
    return settings


def test_outputs_are_per_date_and_a_rerun_replaces_them(batch_home):
    solution = CountingFraud()
    first = run_batch(solution, solution.make_config(), batch_home, logical_date=DAY)
    assert first.folder == batch_home.resolved_batch_dir() / "fraud_detection" / "date=2025-01-05"
    assert first.champion_version == 3 and [f.name for f in first.files] == ["counts.parquet"]
    assert pd.read_parquet(first.files[0])["rows"].iloc[0] > 0

    again = CountingFraud(label="second")
    run_batch(again, again.make_config(), batch_home, logical_date=DAY)
    app_folder = batch_home.resolved_batch_dir() / "fraud_detection"
    assert sorted(p.name for p in app_folder.iterdir()) == ["batch.duckdb", "date=2025-01-05"]
    assert pd.read_parquet(first.files[0])["label"].tolist() == ["second"]

    run_batch(solution, solution.make_config(), batch_home, logical_date=DAY + dt.timedelta(days=1))
    with duckdb.connect(str(app_folder / "batch.duckdb"), read_only=True) as connection:
        rows = connection.execute("select cast(date as varchar), label from counts order by 1").fetchall()
    assert rows == [("2025-01-05", "second"), ("2025-01-06", "first")]


def test_a_failed_batch_keeps_the_previous_outputs(batch_home):
    run_batch(CountingFraud(), CountingFraud().make_config(), batch_home, logical_date=DAY)
    with pytest.raises(RuntimeError, match="half way"):
        run_batch(CountingFraud(fail=True, label="broken"), CountingFraud().make_config(), batch_home, logical_date=DAY)
    app_folder = batch_home.resolved_batch_dir() / "fraud_detection"
    assert pd.read_parquet(app_folder / "date=2025-01-05" / "counts.parquet")["label"].tolist() == ["first"]
    assert not [p for p in app_folder.iterdir() if p.name.startswith(".")]


def test_contract_violating_input_writes_nothing(batch_home, tmp_path):
    bad = DataStore(batch_home.resolved_data_dir()).read("fraud_detection", "fraud_transactions")
    bad.loc[:4, "amount"] = -1.0
    source = tmp_path / "day.parquet"
    bad.to_parquet(source)
    solution = CountingFraud()
    with pytest.raises(ContractViolation, match="amount"):
        run_batch(solution, solution.make_config({"source": str(source)}), batch_home, logical_date=DAY)
    assert not (batch_home.resolved_batch_dir() / "fraud_detection" / "date=2025-01-05").exists()


def test_no_champion_or_no_batch_work_is_a_clear_error(batch_home, tmp_path):
    empty = Settings(home=tmp_path / "empty", contracts_dir=REPO / "data_contracts")
    with pytest.raises(FileNotFoundError, match="train one first"):
        run_batch(CountingFraud(), CountingFraud().make_config(), empty, logical_date=DAY)
    vision = get_solution("vision_qc")
    assert not vision.has_batch and get_solution("fraud_detection").has_batch and get_solution("recommendation").has_batch and get_solution("demand_forecasting").has_batch
    with pytest.raises(ValueError, match="no batch work"):
        run_batch(vision, vision.make_config(), batch_home, logical_date=DAY)


def test_cli_batch_says_when_an_app_has_no_batch_work():
    from solutions_core.cli import app

    result = CliRunner().invoke(app, ["batch", "vision_qc", "--date", "2025-01-05"])
    assert result.exit_code == 2 and "no batch work" in result.output
    assert "batch" in CliRunner().invoke(app, ["--help"]).output
