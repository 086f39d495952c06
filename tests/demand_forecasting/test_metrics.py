"""Forecast metrics on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from demand_forecasting.evaluate import (
    evaluate_forecasts,
    pinball,
    seasonal_naive_forecast,
    seasonal_naive_scale,
    series_metrics,
    smape,
)


def test_mase_scales_by_the_in_sample_seasonal_naive_error():
    history = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 5.0])  # season 3: |1-1|,|2-2|,|5-3| -> mean 2/3
    assert seasonal_naive_scale(history, 3) == pytest.approx(2 / 3)
    metrics = series_metrics(history, np.array([2.0, 2.0]), {0.5: np.array([1.0, 3.0])}, season=3)
    assert metrics["mase"] == pytest.approx(1.0 / (2 / 3))
    assert np.isnan(seasonal_naive_scale(np.ones(10), 3)), "a constant history cannot scale errors"


def test_smape_pinball_and_coverage():
    assert smape(np.array([100.0, 0.0]), np.array([50.0, 0.0])) == pytest.approx((200 * 50 / 150 + 0) / 2)
    assert pinball(np.array([10.0]), np.array([8.0]), 0.9) == pytest.approx(0.9 * 2)
    assert pinball(np.array([10.0]), np.array([12.0]), 0.9) == pytest.approx(0.1 * 2)
    metrics = series_metrics(
        np.arange(10.0),
        np.array([1.0, 5.0, 9.0]),
        {0.1: np.array([0.0, 0.0, 0.0]), 0.5: np.array([1.0, 5.0, 9.0]), 0.9: np.array([2.0, 6.0, 8.0])},
        season=1,
    )
    assert metrics["coverage_p10_p90"] == pytest.approx(2 / 3) and metrics["mase"] == 0.0
    with pytest.raises(ValueError, match="median"):
        series_metrics(np.arange(5.0), np.ones(2), {0.1: np.ones(2)}, season=1)


def test_volume_weighting_favours_big_series():
    histories = {"big": np.array([100.0, 110.0, 100.0, 110.0]), "small": np.array([1.0, 2.0, 1.0, 2.0])}
    actuals = {"big": np.array([100.0]), "small": np.array([1.0])}
    forecasts = {"big": {0.5: np.array([100.0])}, "small": {0.5: np.array([3.0])}}  # big perfect, small off
    table, totals = evaluate_forecasts(histories, actuals, forecasts, season=1, recent=2)
    assert table.loc["big", "mase"] == 0.0 and table.loc["small", "mase"] == pytest.approx(2.0)
    assert totals["mase"] == pytest.approx(1.0)
    assert totals["weighted_mase"] == pytest.approx(2.0 * 3 / 213)
    with pytest.raises(ValueError, match="No forecast"):
        evaluate_forecasts(histories, actuals, {"big": forecasts["big"]}, season=1)


def test_seasonal_naive_repeats_the_last_season():
    assert seasonal_naive_forecast(np.array([1.0, 2.0, 3.0, 4.0]), 5, 2).tolist() == [3.0, 4.0, 3.0, 4.0, 3.0]
    assert seasonal_naive_forecast(np.array([7.0]), 2, 12).tolist() == [7.0, 7.0]


def test_window_metrics_match_the_per_series_metrics_and_skip_censored_steps():
    from demand_forecasting.evaluate import aggregate_windows, series_metrics, window_metrics

    history = np.array([3.0, 5, 4, 6, 3, 5, 4, 6])
    actual = np.array([4.0, 6, 3, 100])  # the last step is a stock-out: censored, not scored
    quantiles = {0.1: np.array([3.0, 4, 2, 1]), 0.5: np.array([4.5, 5, 4, 2]), 0.9: np.array([6.0, 7, 5, 3])}
    examples = pd.DataFrame(
        {
            "series_id": ["a"],
            "origin": [pd.Timestamp("2024-01-09")],
            "history": [history],
            "actual": [actual],
            "weight": [np.array([1.0, 1, 1, 0])],
            "scale": [seasonal_naive_scale(history, 2)],
            "volume": [history.sum()],
        }
    )
    table = window_metrics(examples, {q: v[None, :] for q, v in quantiles.items()})
    expected = series_metrics(history, actual[:3], {q: v[:3] for q, v in quantiles.items()}, season=2)
    for name, value in expected.items():
        assert table[name].iloc[0] == pytest.approx(value), name
    totals = aggregate_windows(table)
    assert totals["windows"] == 1 and totals["weighted_mase"] == pytest.approx(expected["mase"])


def test_statistical_baselines_follow_a_trend_that_seasonal_naive_misses():
    from demand_forecasting.baselines import statistical_forecasts
    from demand_forecasting.windows import series_arrays

    days = pd.date_range("2024-01-01", periods=120, freq="D")
    trend = 10 + 0.5 * np.arange(120) + 3 * np.sin(2 * np.pi * np.arange(120) / 7)
    sales = pd.DataFrame({"series_id": "t", "date": days, "quantity": trend, "price": 1.0, "promotion": 0, "holiday": None, "store_open": 1, "stockout": 0})
    data = series_arrays(sales, pd.DataFrame({"series_id": ["t"]}), [])
    rows, origins = np.array([0]), np.array([100])
    forecasts = statistical_forecasts(data, rows, origins, 14, 7, ["ets", "theta"], 100)
    actual = trend[100:114]
    naive = np.resize(trend[93:100], 14)
    for name in ("ets", "theta"):
        grid = forecasts[name]
        assert grid[0.5].shape == (1, 14)
        assert np.all(grid[0.1] <= grid[0.5] + 1e-9) and np.all(grid[0.5] <= grid[0.9] + 1e-9)
        assert np.abs(grid[0.5][0] - actual).mean() < 0.75 * np.abs(naive - actual).mean(), name
