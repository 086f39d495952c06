"""Performance over time for fraud: chargebacks joined to the served transactions by transaction id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_detection import SOLUTION
from solutions_core.contracts import load_contract
from solutions_core.solution import Context

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"


def _context():
    return Context(SOLUTION.name, SOLUTION.tiny_config(), {name: load_contract(name, CONTRACTS) for name in SOLUTION.contracts})


def test_chargebacks_join_by_the_unique_transaction_id_not_by_the_card():
    logged = pd.DataFrame({"transaction_id": ["t1", "t2", "t3"], "card_id": ["c1", "c1", "c2"],
                           "probability": [0.9, 0.2, 0.4], "logged_at": pd.Timestamp("2026-12-01")})
    # Card c1's second transaction was charged back, its first was not: joined by card both would get one label.
    outcomes = pd.DataFrame({"transaction_id": ["t2", "t1"], "card_id": ["c1", "c1"], "is_fraud": [1, 0]})
    joined = SOLUTION.evaluation.outcomes(_context(), logged, outcomes)
    assert dict(zip(joined["transaction_id"], joined["is_fraud"])) == {"t1": 0, "t2": 1}  # t3: no outcome yet
    np.testing.assert_allclose(joined.set_index("transaction_id").loc[["t1", "t2"], "probability"], [0.9, 0.2])


def test_requests_without_a_unique_id_cannot_be_joined():
    logged = pd.DataFrame({"card_id": ["c1"], "probability": [0.9]})
    with pytest.raises(ValueError, match="No unique id column.*transaction_id"):
        SOLUTION.evaluation.outcomes(_context(), logged, pd.DataFrame({"card_id": ["c1"], "is_fraud": [1]}))
