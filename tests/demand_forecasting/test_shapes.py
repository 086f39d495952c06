"""Data shapes a client brings, through contract and config only: short series (padded and masked, never
dropped), series indexed by period number instead of dates, lookback and season from the frequency,
contracts with only the client's columns, flat series, and histories checked against the contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from demand_forecasting.config import ForecastConfig
from demand_forecasting.windows import backtest_layout, series_arrays, training_origins, window_inputs, window_targets


def long_tables(lengths: dict[str, int], start: str = "2000-01-01", freq: str = "QS") -> dict[str, pd.DataFrame]:
    rows = []
    for number, (series_id, length) in enumerate(lengths.items()):
        values = 100.0 + 10 * number + np.tile([5.0, -3.0, 8.0, -10.0], length)[:length]
        rows.append(pd.DataFrame({"series_id": series_id, "date": pd.date_range(start, periods=length, freq=freq), "quantity": values}))
    sales = pd.concat(rows, ignore_index=True).assign(price=np.nan, promotion=0, holiday=None, store_open=1, stockout=0)
    series = pd.DataFrame({"series_id": list(lengths), "frequency": "Q"})
    return {"demand_sales": sales, "demand_series": series}


def test_a_series_shorter_than_lookback_plus_horizon_still_trains():
    horizon, lookback = 8, 16
    tables = long_tables({"long": 60, "short": 20})
    data = series_arrays(tables["demand_sales"], tables["demand_series"], [])
    layout = backtest_layout(data, horizon, ForecastConfig(backtest_origins=1))
    short = list(data.ids).index("short")
    assert layout.train_end[short] == 20 - 2 * horizon  # 4 steps before its validation window
    rows, origins = training_origins(data, layout.train_end, horizon, 50, np.random.default_rng(0))
    assert (rows == short).sum() == 50, "the short series gets its training windows"
    mine = rows == short
    _, weight = window_targets(data, rows[mine], origins[mine], horizon, end=layout.train_end[rows[mine]])
    steps = origins[mine][:, None] + np.arange(horizon)[None, :]
    assert weight.sum() > 0
    assert np.all(weight[steps >= layout.train_end[short]] == 0), "targets at or after the validation start are masked"
    inputs = window_inputs(data, rows[mine], origins[mine], lookback, horizon)
    assert np.isnan(inputs["history"]).any(axis=1).all(), "history before the first row is unknown (padded)"
    assert np.all(inputs["future_store_open"] == 1), "no plan past the series' end reads as 'closed'"
    # And it is forecast in the test (its history padded too).
    test_rows, _ = layout.test
    assert short in set(test_rows)
