"""The README's demo command (`make demo` runs `solutions demo`), end to end in a subprocess (slow: each
app's demo data size)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_trains_serves_and_answers_for_every_app(tmp_path):
    from solutions_core.registry import list_solutions

    environment = {**os.environ, "SOLUTIONS_CONTRACTS_DIR": str(REPO / "data_contracts"), "COLUMNS": "160"}
    completed = subprocess.run(
        [sys.executable, "-m", "solutions_core.cli", "demo", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=environment,
        cwd=tmp_path,
    )
    output = completed.stdout
    assert completed.returncode == 0, output[-4000:] + completed.stderr[-4000:]
    # Every app publishes on its generator's demo data: each beats the best baseline of its own run (the
    # gate says so), and is served and answers.
    for entry in list_solutions():
        assert (tmp_path / "models" / entry.name / "1" / "saved_model.pb").exists(), f"{entry.name} was not published:\n" + output[-6000:]
        assert f"/v1/models/{entry.name}:predict" in output
    assert output.count("→ HTTP 200") == len(list_solutions())
    assert "nothing published" not in output
    assert "baseline" in output.lower()
    assert "server has been stopped" in output
