"""The champion gate: bad data and worse models never replace what is serving."""

from __future__ import annotations

import pytest

from solutions_core.contracts import ContractViolation
from solutions_core.model_registry import ModelRegistry
from solutions_core.solution import Context
from solutions_core.training import run_training
from tiny_app import APP


def published(settings) -> list[int]:
    return [v.version for v in ModelRegistry(settings.resolved_models_dir()).versions(APP.name)]


def test_contract_violation_stops_the_run_and_keeps_the_champion(tiny_run, tiny_settings, tmp_path):
    config = APP.tiny_config()
    before = published(tiny_settings)
    bad = APP.data.generate(Context(APP.name, config, {}), tmp_path)["tiny_points"]
    bad.loc[:9, "x"] = -50.0
    bad.loc[:4, "color"] = "purple"
    with pytest.raises(ContractViolation) as raised:
        run_training(APP, config, tiny_settings, tables={"tiny_points": bad}, verbose=0)
    message = str(raised.value)
    assert "x" in message and "min" in message and "10" in message
    assert "color" in message and "allowed" in message
    assert published(tiny_settings) == before


def test_a_model_that_does_not_beat_the_champion_is_not_published(tiny_run, tiny_settings):
    before = published(tiny_settings)
    # Demand an improvement no model can make: the run must be rejected and the champion kept.
    result = run_training(APP, APP.tiny_config(), tiny_settings, verbose=0, min_delta=1.0)
    assert result.status == "rejected" and result.version is None
    assert result.champion_before["version"] == before[-1]
    assert result.champion_before["how"] == "re-scored on this test split"
    assert f"champion v{before[-1]}" in result.reason and "does not beat" in result.reason
    assert published(tiny_settings) == before
    assert (result.run_dir / "report.json").exists()
    assert not (result.run_dir / "artifacts" / "publish.pkl").exists()


def test_a_model_that_loses_to_the_best_baseline_is_not_published_even_on_a_first_run(tmp_path):
    from solutions_core.settings import Settings
    from tiny_app import CONTRACTS

    settings = Settings(home=tmp_path, contracts_dir=CONTRACTS)  # no champion: a first run
    # A margin no model can reach over the baseline: the run loses to "x_alone" and publishes nothing.
    config = APP.make_config({**APP.tiny_config().model_dump(), "gate": {"baseline_margin": 5.0}})
    result = run_training(APP, config, settings, verbose=0)
    assert result.status == "rejected" and result.version is None
    assert result.champion_before is None
    assert "best baseline of this run, x_alone" in result.reason and "by more than 5" in result.reason
    assert ModelRegistry(settings.resolved_models_dir()).versions(APP.name) == []
    report = (result.run_dir / "artifacts" / "gate.json").read_text()
    assert '"baseline": "x_alone"' in report


def test_the_report_has_a_paired_bootstrap_interval_against_each_baseline(tiny_run):
    comparison = tiny_run.comparisons["x_alone"]
    assert comparison["rounds"] > 100
    assert comparison["low"] <= comparison["difference"] <= comparison["high"]
    # The network sees x, y and the colour; x alone cannot rank as well.
    assert comparison["difference"] > 0 and comparison["model_better"] > 0.5
    assert "x_alone" in tiny_run.reason and "bootstrap" in tiny_run.reason


def test_paired_bootstrap_and_best_baseline():
    import numpy as np
    import pandas as pd

    from solutions_core.training import Scores, best_baseline, paired_bootstrap

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    frame = pd.DataFrame({"label": labels})
    good = {"score": labels + rng.normal(0, 0.5, 400)}
    noise = {"score": rng.normal(0, 1, 400)}

    def accuracy(examples, outputs):
        return float(np.mean((outputs["score"] > 0.5) == examples["label"].to_numpy()))

    interval = paired_bootstrap(accuracy, frame, good, noise, 300, higher_is_better=True)
    assert interval["rounds"] == 300 and interval["low"] > 0.2 and interval["model_better"] == 1.0
    flipped = paired_bootstrap(accuracy, frame, noise, good, 300, higher_is_better=True)
    assert flipped["high"] < -0.2 and flipped["model_better"] == 0.0

    scores = {"a": Scores({"mase": 1.2}, "mase", False), "b": Scores({"mase": 0.9}, "mase", False), "c": Scores({"mase": float("nan")}, "mase", False)}
    assert best_baseline(scores, higher_is_better=False) == ("b", 0.9)
    assert best_baseline({"c": scores["c"]}, higher_is_better=False) is None
