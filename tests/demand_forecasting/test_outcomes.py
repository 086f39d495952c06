"""Performance over time for forecasting: a logged forecast against the demand realized since."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demand_forecasting import SOLUTION
from solutions_core.contracts import load_contract
from solutions_core.solution import Context

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"

DAYS = pd.date_range("2026-11-01", periods=20, freq="D")
QUANTITY = np.array([3, 5, 4, 6, 2, 8, 7, 3, 6, 5, 4, 9, 1, 7, 5, 6, 4, 8, 2, 6], dtype=float)


def _sales(stockout_day: int | None = None) -> pd.DataFrame:
    sales = pd.DataFrame({"series_id": "s1", "date": DAYS, "quantity": QUANTITY, "price": 1.0, "promotion": 0,
                          "holiday": None, "store_open": 1, "stockout": 0})
    if stockout_day is not None:
        sales.loc[stockout_day, "stockout"] = 1
    return sales


def _logged() -> pd.DataFrame:
    return pd.DataFrame({
        "series_id": ["s1", "s1", "s-unknown"],
        "forecast_start": [DAYS[15].isoformat(), (DAYS[-1] + pd.Timedelta(days=1)).isoformat(), DAYS[15].isoformat()],
        "p10": [[3.0, 2.0, 4.0]] * 3,
        "p50": [[5.0, 5.0, 5.0]] * 3,
        "p90": [[8.0, 8.0, 9.0]] * 3,
        "logged_at": pd.Timestamp("2026-11-15 09:00"),
    })


def _context():
    contracts = {name: load_contract(name, CONTRACTS) for name in SOLUTION.contracts}
    return Context(SOLUTION.name, SOLUTION.make_config({"quantiles": [0.1, 0.5, 0.9]}), contracts)


def test_a_logged_forecast_is_scored_on_the_realized_days_as_the_backtest_scores_it():
    context = _context()
    joined = SOLUTION.evaluation.outcomes(context, _logged(), _sales(stockout_day=16))
    # The forecast from day 20 has nothing realized yet, the unknown series nothing at all.
    assert len(joined) == 1 and joined["series_id"].iloc[0] == "s1"
    np.testing.assert_allclose(joined["actual"].iloc[0], QUANTITY[15:18])
    np.testing.assert_allclose(joined["weight"].iloc[0], [1.0, 0.0, 1.0])  # the stock-out day does not count
    history = QUANTITY[:15]
    scale = np.mean(np.abs(history[7:] - history[:-7]))  # daily: season 7
    assert joined["scale"].iloc[0] == pytest.approx(scale)

    answers = {name: np.stack(joined[name].to_numpy()) for name in ("p10", "p50", "p90")}
    metrics = SOLUTION.evaluation.evaluate(context, joined, answers)
    errors = np.abs(QUANTITY[[15, 17]] - 5.0)
    assert metrics["mase"] == pytest.approx(errors.mean() / scale)


def test_forecasts_still_waiting_for_their_days_are_left_out():
    early = _sales().iloc[:15]  # nothing sold since the forecasts were made
    joined = SOLUTION.evaluation.outcomes(_context(), _logged(), early)
    assert joined.empty
