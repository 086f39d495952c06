"""The global forecaster on a tiny generated set: ordered, non-negative quantiles of the right shape,
and per-series scaling inside the graph (a series 10× bigger gets a forecast 10× bigger)."""

from __future__ import annotations

import numpy as np
import pytest

from demand_forecasting import model as forecaster
from demand_forecasting.config import ForecastConfig
from demand_forecasting.generate import generate_sales


@pytest.fixture(scope="module")
def trained():
    tables = generate_sales(stores=2, products=8, days=200, seed=4)
    config = ForecastConfig(
        horizon=14,
        windows_per_series=16,
        network={"hidden_units": 32, "residual_blocks": 1},
        training={"epochs": 2, "batch_size": 64, "early_stopping_patience": 0},
    )
    data = forecaster.series_arrays(tables["demand_sales"], tables["demand_series"], config.static_columns)
    end = data.length - 14
    model, lookback, horizon = forecaster.fit(data, end, config, "D")
    return model, data, end, lookback, horizon


def test_forecasts_are_ordered_non_negative_quantiles(trained):
    model, data, end, lookback, horizon = trained
    forecast = forecaster.forecast(model, data, end, lookback, horizon)
    assert forecast.shape == (len(data.ids), horizon, 3)
    assert np.all(forecast >= 0)
    assert np.all(np.diff(forecast, axis=-1) >= -1e-5), "quantiles crossed"


def test_scaling_lives_in_the_graph(trained):
    model, data, end, lookback, horizon = trained
    rows = np.arange(len(data.ids))
    inputs = forecaster.windows(data, end, rows, lookback, horizon)
    base = np.asarray(model(inputs, training=False))
    bigger = dict(inputs, history=inputs["history"] * 10.0)
    scaled = np.asarray(model(bigger, training=False))
    assert np.allclose(scaled, 10.0 * base, rtol=1e-3, atol=1e-3)


def test_the_median_is_required():
    with pytest.raises(ValueError, match="median"):
        forecaster.build_network(ForecastConfig(quantiles=[0.1, 0.9]), 8, 4, {})
