"""Forecast metrics on hand-checked cases."""

from __future__ import annotations

import numpy as np
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
