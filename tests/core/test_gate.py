"""The champion gate: bad data and worse models never replace what is serving."""

from __future__ import annotations

import pytest

from solutions_core.contracts import ContractViolation
from solutions_core.model_registry import ModelRegistry
from solutions_core.registry import get_solution
from solutions_core.training import run_training

APP = "fraud_detection"


def published(settings) -> list[int]:
    return [v.version for v in ModelRegistry(settings.resolved_models_dir()).versions(APP)]


def test_contract_violation_stops_the_run_and_keeps_the_champion(trained, settings):
    solution = get_solution(APP)
    config = solution.tiny_config()
    before = published(settings)
    tables = solution.generate(config)
    bad = tables["fraud_transactions"].copy()
    bad.loc[:9, "amount"] = -1.0
    bad.loc[:4, "channel"] = "fax"
    with pytest.raises(ContractViolation) as raised:
        run_training(solution, config, settings, tables={"fraud_transactions": bad}, verbose=0)
    message = str(raised.value)
    assert "amount" in message and "min" in message and "10" in message
    assert "channel" in message and "allowed" in message
    assert published(settings) == before


def test_a_model_that_does_not_beat_the_champion_is_not_published(trained, settings):
    solution = get_solution(APP)
    before = published(settings)
    # Demand an improvement no model can make: the run must be rejected and the champion kept.
    result = run_training(solution, solution.tiny_config(), settings, verbose=0, min_delta=1.0)
    assert result.status == "rejected" and result.version is None
    assert result.champion_before["version"] == before[-1]
    assert result.champion_before["how"] == "re-scored on this test split"
    assert published(settings) == before
    assert (result.run_dir / "report.json").exists()
