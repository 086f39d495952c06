"""A split the gate could not judge is refused when it is made, with what to change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud_detection import SOLUTION
from solutions_core.solution import Context


def _examples(fraud_days: list[int]) -> pd.DataFrame:
    days = np.repeat(np.arange(20), 10)
    return pd.DataFrame({
        "timestamp": pd.Timestamp("2026-01-01") + pd.to_timedelta(days, unit="D") + pd.to_timedelta(np.tile(np.arange(10), 20), unit="h"),
        "amount": 1.0,
        "is_fraud": np.isin(days, fraud_days).astype(int),
    })


def test_a_test_split_without_fraud_is_refused_naming_the_split_and_the_remedy():
    context = Context(SOLUTION.name, SOLUTION.tiny_config(), {})
    with pytest.raises(ValueError, match=r"test split \(\d+ rows, the latest rows by time\) holds no positive 'is_fraud'.*fraud_rate"):
        SOLUTION.data.split(context, _examples(fraud_days=[1, 5, 15]))  # nothing in the last days
    splits = SOLUTION.data.split(context, _examples(fraud_days=[1, 15, 19]))
    assert splits.test["is_fraud"].sum() > 0 and splits.valid["is_fraud"].sum() > 0
