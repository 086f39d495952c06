"""Performance over time for recommendation: a served list against what its user did next."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recommendation import SOLUTION
from solutions_core.contracts import load_contract
from solutions_core.solution import Context

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"

T0 = pd.Timestamp("2026-12-01 10:00")


def _context(**overrides):
    contracts = {name: load_contract(name, CONTRACTS) for name in SOLUTION.contracts}
    return Context(SOLUTION.name, SOLUTION.make_config({"top_k": 3, "eval_k": [1, 3], **overrides}), contracts)


def _logged():
    return pd.DataFrame({
        "user_id": ["u1", "u2", "u3"],
        "exclude": ["a b", "", ""],
        "item_ids": [["c", "d", "e"], ["x", "a", "q"], ["z", "y", "w"]],
        "scores": [[0.9, 0.5, 0.1]] * 3,
        "logged_at": [T0, T0, T0 + pd.Timedelta(days=1)],
    })


def test_targets_are_the_users_next_interactions_within_the_window_less_what_was_excluded():
    interactions = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u9"],
        "item_id": ["a", "c", "d", "x", "a", "c"],
        "timestamp": [T0 + pd.Timedelta(hours=1), T0 + pd.Timedelta(hours=2), T0 + pd.Timedelta(days=10),
                      T0 - pd.Timedelta(hours=1), T0 + pd.Timedelta(days=1), T0 + pd.Timedelta(hours=1)],
    })
    context = _context()
    joined = SOLUTION.evaluation.outcomes(context, _logged(), interactions)
    # u1: "a" was excluded (seen), "d" came after the 7-day window; u2: "x" came before the request;
    # u3 did nothing since, so it is left out (its recall would be undefined).
    assert joined["user_id"].tolist() == ["u1", "u2"]
    assert joined["targets"].tolist() == [["c"], ["a"]]
    metrics = SOLUTION.evaluation.evaluate(context, joined, {"item_ids": joined["item_ids"].tolist()})
    assert metrics["recall_at_1"] == pytest.approx(0.5)  # u1's first item is its target, u2's is second
    assert metrics["recall_at_3"] == pytest.approx(1.0)

    wider = SOLUTION.evaluation.outcomes(_context(outcome_days=30), _logged(), interactions)
    assert wider["targets"].tolist() == [["c", "d"], ["a"]]


def test_outcomes_without_the_interaction_columns_are_refused_by_name():
    with pytest.raises(ValueError, match="must hold 'item_id'"):
        SOLUTION.evaluation.outcomes(_context(), _logged(), pd.DataFrame({"user_id": ["u1"], "timestamp": [T0]}))
