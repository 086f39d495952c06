"""The generator's own drift, replayed through a real server and caught by the monitor.

One generated period (seed fixed): the fraud app trains on its first 30 days; its champion serves the
next two days as they were generated (stable), then the two days after as the same generator makes them
with 150 % inflation over the period instead of 6 % (every column but ``amount`` identical). The
monitor passes the stable days, fails on the drifted ones naming ``amount`` and no stable column, and
the server keeps serving throughout."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow
CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"
START = pd.Timestamp("2026-01-01")


def post(url: str, rows: pd.DataFrame) -> int:
    instances = json.loads(rows.to_json(orient="records", date_format="iso"))
    request = urllib.request.Request(url, data=json.dumps({"instances": instances}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status


def replay(url: str, day: pd.DataFrame) -> None:
    for start in range(0, len(day), 50):  # in time order, as a day's traffic arrives
        assert post(url, day.iloc[start : start + 50]) == 200


def wait_logged(data_dir: Path, rows: int) -> None:
    from solutions_core.serving.request_log import read_day

    today = dt.datetime.now(dt.timezone.utc).date()
    deadline = time.monotonic() + 60  # written every second, off the request path
    while time.monotonic() < deadline:
        try:
            if len(read_day(data_dir, "fraud_detection", today)) >= rows:
                return
        except FileNotFoundError:
            pass
        time.sleep(1)
    raise AssertionError(f"the request log did not reach {rows} rows")


def monitor(home: Path) -> tuple[int, dict]:
    from solutions_core.cli import app

    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    result = CliRunner().invoke(app, ["monitor", "fraud_detection", "--date", today, "--home", str(home)], env={"COLUMNS": "200"})
    report = home / "runs" / "fraud_detection" / "monitor" / today / "drift.json"
    assert report.exists(), result.output
    return result.exit_code, json.loads(report.read_text())


def test_the_monitor_passes_the_generators_stable_days_and_flags_its_inflated_ones(tmp_path):
    from fraud_detection import SOLUTION
    from fraud_detection.generate import generate_transactions
    from solutions_core.demo import ServerProcess
    from solutions_core.serving.request_log import log_folder
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    arguments = dict(n_transactions=12_000, start=str(START.date()), days=34, fraud_rate=0.03, seed=5)
    period = generate_transactions(**arguments)
    inflated = generate_transactions(**arguments, inflation=1.5)
    assert period.drop(columns="amount").equals(inflated.drop(columns="amount")), "only prices drift"
    day = (period["timestamp"] - START).dt.days
    training, stable, drifted = period[day < 30], period[day.isin([30, 31])], inflated[day.isin([32, 33])]
    assert (drifted["amount"].median() / stable["amount"].median()) > 1.5

    home = tmp_path / "home"
    source = tmp_path / "training.parquet"
    training.to_parquet(source)
    config = SOLUTION.tiny_config().model_copy(update={"source": str(source)})
    champion = run_training(SOLUTION, config, Settings(home=home, contracts_dir=CONTRACTS), verbose=0)
    assert champion.version is not None, champion.reason

    served_fields = [column for column in period.columns if column != "is_fraud"]
    with ServerProcess(home) as server:
        server.wait_ready(["fraud_detection"])
        url = f"{server.url}/v1/models/fraud_detection:predict"

        replay(url, stable[served_fields])
        wait_logged(home / "data", len(stable))
        code, report = monitor(home)
        assert code == 0 and report["drifted"] == [], report["drifted"]
        compared = {column["name"] for column in report["columns"] if column["part"] == "column"}
        assert {"amount", "merchant_category", "channel"} <= compared

        # The stable days become yesterday's log (the test stands in for the clock: the server files
        # each answer under the date it was served), so today's holds the inflated days alone.
        log = log_folder(home / "data", "fraud_detection")
        today = dt.datetime.now(dt.timezone.utc).date()
        (log / f"date={today}").rename(log / f"date={today - dt.timedelta(days=1)}")
        replay(url, drifted[served_fields])
        wait_logged(home / "data", len(drifted))
        code, report = monitor(home)
        assert code == 1 and "column:amount" in report["drifted"], report["drifted"]
        stable_columns = compared - {"amount"}
        assert not [name for name in report["drifted"] if name.removeprefix("column:") in stable_columns], report["drifted"]
        assert post(url, drifted[served_fields].iloc[:1]) == 200  # the server keeps serving
