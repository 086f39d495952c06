"""Theta inside the exported graph: it forecasts like the reference implementation (statsforecast's
Theta) from a request's history alone, and the served module serves it alone or averaged with the
network, so a data set on which Theta wins is served Theta."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from demand_forecasting.config import ForecastConfig
from demand_forecasting.theta import theta_forecast


def seasonal_series(count: int, length: int, season: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = np.arange(length)
    rows = []
    for _ in range(count):
        level, trend = rng.uniform(50, 500), rng.uniform(-0.5, 2.0)
        pattern = 1.0 + 0.3 * np.sin(2 * np.pi * steps / season + rng.uniform(0, 6))
        rows.append((level + trend * steps) * pattern * rng.lognormal(0, 0.05, length))
    return np.asarray(rows, dtype=np.float32)


def test_in_graph_theta_forecasts_like_statsforecast_theta():
    from statsforecast import StatsForecast
    from statsforecast.models import Theta

    season, horizon = 4, 8
    history = seasonal_series(30, 40, season)
    ours = np.asarray(theta_forecast(history, horizon, season, [0.1, 0.5, 0.9]))
    assert ours.shape == (30, horizon, 3)
    assert np.all(np.diff(ours, axis=-1) >= 0), "quantiles are ordered"
    frame = pd.DataFrame(
        {"unique_id": np.repeat(np.arange(30), 40), "ds": np.tile(np.arange(40), 30), "y": history.ravel().astype(np.float64)}
    )
    reference = StatsForecast(models=[Theta(season_length=season)], freq=1).forecast(df=frame, h=horizon)
    reference = reference.sort_values(["unique_id", "ds"])["Theta"].to_numpy().reshape(30, horizon)
    # statsforecast optimizes α continuously, ours picks it from a grid: close, not equal.
    relative = np.abs(ours[..., 1] - reference) / np.abs(reference)
    assert np.median(relative) < 0.02 and relative.max() < 0.15, (np.median(relative), relative.max())


def test_unknown_history_is_skipped_and_an_empty_one_forecasts_zero():
    season, horizon = 4, 6
    history = seasonal_series(2, 24, season, seed=1)
    padded = np.concatenate([np.full((2, 8), np.nan, np.float32), history[:, 8:]], axis=1)
    forecast = np.asarray(theta_forecast(padded, horizon, season, [0.1, 0.5, 0.9]))
    assert np.isfinite(forecast).all()
    empty = np.asarray(theta_forecast(np.full((1, 24), np.nan, np.float32), horizon, season, [0.5]))
    np.testing.assert_array_equal(empty, 0.0)


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_served_module_serves_theta_alone_or_averaged_with_the_network(weight):
    import keras
    import tensorflow as tf

    from demand_forecasting.model import request_specs, serving_module

    lookback, horizon, season = 16, 4, 4
    config = ForecastConfig(quantiles=[0.1, 0.5, 0.9], static_columns=[])
    history = seasonal_series(3, lookback, season, seed=2)
    inputs = {name: tf.zeros([3, spec.shape[1]]) for name, spec in request_specs(lookback, horizon, []).items() if name != "forecast_start"}
    inputs["history"] = tf.constant(history)
    inputs["forecast_start"] = tf.constant([0.0, 86400.0, 172800.0], tf.float64)

    network = None
    if weight < 1:
        # A stand-in network that forecasts a constant 7 for every step and quantile.
        fields = {name: keras.Input(tensor.shape[1:], name=name) for name, tensor in inputs.items() if name != "forecast_start"}
        fields["start_day"] = keras.Input((), name="start_day")
        constant = keras.layers.Lambda(lambda h: keras.ops.zeros((keras.ops.shape(h)[0], horizon, 3)) + 7.0)(fields["history"])
        network = keras.Model(fields, constant)
    module = serving_module(network, config, lookback, horizon, [], theta_weight=weight, season=season)
    served = module.serve(inputs)
    theta = np.maximum(np.asarray(theta_forecast(history, horizon, season, config.quantiles)), 0.0)
    expected = theta if weight == 1 else 0.5 * theta + 0.5 * 7.0
    for index, name in enumerate(["p10", "p50", "p90"]):
        np.testing.assert_allclose(served[name].numpy(), expected[..., index], rtol=1e-5, atol=1e-4)


def test_a_forecaster_without_a_network_must_serve_theta_alone():
    from demand_forecasting.model import serving_module

    with pytest.raises(ValueError, match="Theta alone"):
        serving_module(None, ForecastConfig(), 16, 4, [], theta_weight=0.5, season=4)


def test_theta_and_the_blend_are_candidates_chosen_on_validation(tmp_path):
    """Through the pipeline: the network, Theta and their average are each scored on validation, the best
    is exported, and the published version answers with its forecasts."""
    from demand_forecasting import SOLUTION
    from solutions_core.export import load_signature, predict_frame
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    names = ["global_quantile_mlp", "theta", "mlp_theta_blend_25", "mlp_theta_blend_50", "mlp_theta_blend_75"]
    config = SOLUTION.tiny_config().model_copy(update={"candidates": names})
    result = run_training(SOLUTION, config, Settings(home=tmp_path), verbose=0)
    scored = {candidate.name: candidate.valid.gate_value for candidate in result.candidates}
    assert set(scored) == set(names)
    assert all(np.isfinite(value) for value in scored.values())
    assert result.candidate == min(scored, key=scored.__getitem__), "the lowest validation MASE is chosen"
    comparison = result.comparisons["seasonal_naive"]  # baselines answer as the model does: bootstrapped
    assert comparison["low"] <= comparison["difference"] <= comparison["high"]
    signature = load_signature(result.version.path)
    outputs = predict_frame(signature, pd.DataFrame(result.golden_instances), 64)
    np.testing.assert_allclose(outputs["p50"], result.golden_outputs["p50"], rtol=1e-5, atol=1e-5)
