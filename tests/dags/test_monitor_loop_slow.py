"""The monitoring loop end to end, for real: serve → log → monitor → trigger → gate.

The tiny app's champion serves a day of contract-valid but shifted requests over HTTP; the server logs
them; ``airflow dags test monitor_tiny_app`` compares the day with the champion's training statistics,
fails on the shifted column while the server keeps answering, and triggers ``train_tiny_app``; that
training run (as the scheduler would start it) is then gated against the champion and the baselines."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def shifted_day(size: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "point_id": [f"served-{i}" for i in range(size)],
        "x": rng.uniform(-3, 3, size) + 4.0,  # still inside the contract's [-10, 10]: valid, but moved
        "y": rng.uniform(-3, 3, size),
        "color": rng.choice(["red", "green", "blue"], size),
    })
    return frame.to_dict(orient="records")


def post(url: str, instances: list[dict]) -> int:
    request = urllib.request.Request(url, data=json.dumps({"instances": instances}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def test_a_shifted_day_fails_the_monitor_triggers_training_and_the_gate_judges_it(airflow_env, tmp_path):
    from solutions_core.demo import ServerProcess
    from solutions_core.model_registry import ModelRegistry
    from solutions_core.serving.request_log import read_day
    from solutions_core.settings import Settings
    from solutions_core.training import run_training
    from tiny_app import APP, CONTRACTS, server_environment

    home = tmp_path / "home"
    environment = {**airflow_env, **server_environment(), "SOLUTIONS_HOME": str(home)}
    champion = run_training(APP, APP.tiny_config(), Settings(home=home, contracts_dir=CONTRACTS), verbose=0)
    assert champion.version is not None

    today = dt.datetime.now(dt.timezone.utc).date()
    day = shifted_day(400, 11)
    with ServerProcess(home, extra_env=server_environment()) as server:
        server.wait_ready([APP.name])
        url = f"{server.url}/v1/models/{APP.name}:predict"
        for start in range(0, len(day), 100):
            assert post(url, day[start : start + 100]) == 200
        deadline = time.monotonic() + 60  # the log is written every second, off the request path
        while time.monotonic() < deadline:
            try:
                if len(read_day(home / "data", APP.name, today)) == len(day):
                    break
            except FileNotFoundError:
                pass
            time.sleep(1)
        assert len(read_day(home / "data", APP.name, today)) == len(day)

        monitored = subprocess.run([AIRFLOW, "dags", "test", f"monitor_{APP.name}", today.isoformat()],
                                   env=environment, capture_output=True, text=True, timeout=600)
        output = monitored.stdout + monitored.stderr
        assert "drifted" in output and "column:x" in output, output[-4000:]
        assert monitored.returncode == 1 and "dag_id=monitor_tiny_app" in output and "state=failed" in output, output[-4000:]  # the verdict failed the run
        assert post(url, day[:1]) == 200  # the server keeps serving

    report = json.loads((home / "runs" / APP.name / "monitor" / today.isoformat() / "drift.json").read_text())
    assert "column:x" in report["drifted"]
    assert "column:y" not in report["drifted"] and "column:color" not in report["drifted"]

    listed = subprocess.run([AIRFLOW, "dags", "list-runs", f"train_{APP.name}", "-o", "json"],
                            env=environment, capture_output=True, text=True, timeout=300)
    runs = json.loads(listed.stdout.strip().splitlines()[-1]) if listed.returncode == 0 and listed.stdout.strip() else []
    assert any(run["run_id"].startswith("drift__") for run in runs), (listed.stdout + listed.stderr)[-3000:]

    # The triggered run, as the scheduler would run it: the gate judges it against the champion.
    trained = subprocess.run(
        [AIRFLOW, "dags", "test", f"train_{APP.name}", today.isoformat(), "--conf", json.dumps({"preset": "tiny"})],
        env=environment, capture_output=True, text=True, timeout=900,
    )
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
    runs_dir = home / "runs" / APP.name
    reports = [json.loads(path.read_text()) for path in runs_dir.glob("scheduled-*/report.json")]
    assert reports and reports[0]["champion_before"]["version"] == champion.version.version
    assert reports[0]["status"] in ("promoted", "rejected") and reports[0]["reason"]
    assert len(ModelRegistry(home / "models").versions(APP.name)) in (1, 2)
