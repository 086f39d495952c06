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
