"""The global forecaster on a tiny generated set: ordered, non-negative quantiles of the right shape,
per-series scaling inside the graph (a series 10× bigger gets a forecast 10× bigger), unknown history
handled in the graph, and requests built from rows equal to the training windows (no train/serve skew)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from demand_forecasting import model as forecaster
from demand_forecasting.config import ForecastConfig
from demand_forecasting.generate import generate_sales
from demand_forecasting.online import request_from_rows
from demand_forecasting.windows import backtest_layout, series_arrays, window_inputs

LOOKBACK, HORIZON = 28, 14


class RecordingTrainer:
    """The core's Trainer, remembering which Keras models went through its fit loop."""

    def __init__(self, config, log_dir):
        from solutions_core.strategy import make_runtime
        from solutions_core.training import Trainer

        self.trainer = Trainer(make_runtime("cpu", seed=config.seed), config.training, log_dir, "global_quantile_mlp")
        self.fitted: list[str] = []

    def fit(self, spec):
        self.fitted.append(spec.name)
        return self.trainer.fit(spec)


@pytest.fixture(scope="module")
def tables():
    return generate_sales(stores=2, products=8, days=200, seed=4)


@pytest.fixture(scope="module")
def trained(tables, tmp_path_factory):
    config = ForecastConfig(
        horizon=HORIZON,
        lookback=LOOKBACK,
        windows_per_series=16,
        network={"hidden_units": 32, "residual_blocks": 1},
        training={"epochs": 2, "batch_size": 64, "early_stopping_patience": 0},
    )
    data = series_arrays(tables["demand_sales"], tables["demand_series"], config.static_columns)
    layout = backtest_layout(data, HORIZON, config)
    trainer = RecordingTrainer(config, tmp_path_factory.mktemp("tensorboard"))
    model = forecaster.fit(trainer, data, layout.train_end, layout.valid, config, "D", LOOKBACK, HORIZON)
    assert trainer.fitted == ["member_0"], "the network is fitted by the core's loop"
    module = forecaster.serving_module(model, config, LOOKBACK, HORIZON, list(data.static))
    return model, module, data, layout


def predict(module, inputs):
    import tensorflow as tf

    return {name: np.asarray(value) for name, value in module.serve({k: tf.constant(v) for k, v in inputs.items()}).items()}


def test_forecasts_are_ordered_non_negative_quantiles(trained):
    _, module, data, layout = trained
    outputs = predict(module, window_inputs(data, *layout.test, LOOKBACK, HORIZON))
    assert set(outputs) == {"p10", "p50", "p90"}
    stacked = np.stack([outputs["p10"], outputs["p50"], outputs["p90"]], axis=-1)
    assert stacked.shape == (len(layout.test[0]), HORIZON, 3)
    assert np.all(stacked >= 0)
    assert np.all(np.diff(stacked, axis=-1) >= -1e-5), "quantiles crossed"


def test_scaling_lives_in_the_graph(trained):
    _, module, data, layout = trained
    inputs = window_inputs(data, *layout.test, LOOKBACK, HORIZON)
    base = predict(module, inputs)["p50"]
    scaled = predict(module, dict(inputs, history=inputs["history"] * 10.0))["p50"]
    assert np.allclose(scaled, 10.0 * base, rtol=1e-3, atol=1e-3)


def test_unknown_history_is_masked_not_zero(trained):
    _, module, data, layout = trained
    inputs = window_inputs(data, *layout.test, LOOKBACK, HORIZON)
    short = dict(inputs, history=inputs["history"].copy())
    short["history"][:, : LOOKBACK // 2] = np.nan  # a product launched two weeks ago
    zeros = dict(inputs, history=np.nan_to_num(short["history"]))
    unknown, zero = predict(module, short)["p50"], predict(module, zeros)["p50"]
    assert np.all(np.isfinite(unknown))
    assert not np.allclose(unknown, zero), "unknown history must not read as zero sales"


def test_requests_from_rows_equal_the_training_windows(tables, trained):
    """The online path (dated rows → request) builds exactly the windows the model trained on."""
    _, module, data, layout = trained
    rows, origins = layout.test
    expected = window_inputs(data, rows[:3], origins[:3], LOOKBACK, HORIZON)
    sales = tables["demand_sales"]
    series = tables["demand_series"].set_index("series_id")
    for index, (row, origin) in enumerate(zip(rows[:3], origins[:3])):
        series_id = data.ids[row]
        frame = sales[sales["series_id"] == series_id].sort_values("date")
        start = frame["date"].iloc[origin]
        request = request_from_rows(
            frame[frame["date"] < start], frame[frame["date"] >= start], series.loc[series_id].to_dict(),
            lookback=LOOKBACK, horizon=HORIZON, frequency="D", start=start,
        )
        for name, values in expected.items():
            got = request[name]
            if name == "forecast_start":
                assert pd.Timestamp(got) == pd.to_datetime(values[index], unit="s")
            elif isinstance(got, list):
                np.testing.assert_allclose(np.asarray(got, dtype=float), values[index], equal_nan=True, err_msg=name)
            else:
                assert got == values[index], name


def test_the_backtest_never_trains_on_what_it_scores(trained):
    _, _, data, layout = trained
    valid_rows, valid_origins = layout.valid
    test_rows, test_origins = layout.test
    first_test = pd.Series(test_origins).groupby(test_rows).min()
    for row, origin in zip(valid_rows, valid_origins):
        assert layout.train_end[row] <= origin  # training targets end where validation starts
        assert origin + HORIZON <= first_test[row]  # validation targets end where the test starts
    assert np.all(test_origins + HORIZON <= data.length[test_rows])


def test_the_median_is_required():
    with pytest.raises(ValueError, match="median"):
        forecaster.build_network(ForecastConfig(quantiles=[0.1, 0.9]), 8, 4, "D", {})


def test_an_ensemble_averages_members_that_read_their_own_span_of_history(tables, tmp_path):
    config = ForecastConfig(
        horizon=HORIZON,
        lookback=LOOKBACK,
        ensemble_members=2,
        windows_per_series=4,
        network={"hidden_units": 16, "residual_blocks": 1},
        training={"epochs": 1, "batch_size": 64, "early_stopping_patience": 0},
    )
    data = series_arrays(tables["demand_sales"], tables["demand_series"], config.static_columns)
    layout = backtest_layout(data, HORIZON, config)
    spans = forecaster.member_lookbacks(config, LOOKBACK, "D", HORIZON)
    assert spans == [LOOKBACK, LOOKBACK // 2]
    trainer = RecordingTrainer(config, tmp_path)
    model = forecaster.fit(trainer, data, layout.train_end, layout.valid, config, "D", LOOKBACK, HORIZON)
    assert trainer.fitted == ["member_0", "member_1"], "every member is fitted by the core's loop"
    inputs = forecaster.model_inputs(window_inputs(data, *layout.test, LOOKBACK, HORIZON))
    combined = np.asarray(model(inputs, training=False))
    members = [layer for layer in model.layers if layer.name.startswith("member_")]
    assert len(members) == 2
    expected = np.mean(
        [
            np.asarray(member({k: (v[:, -span:] if k.startswith("history") else v) for k, v in inputs.items()}, training=False))
            for member, span in zip(members, spans)
        ],
        axis=0,
    )
    np.testing.assert_allclose(combined, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(combined, axis=-1) >= -1e-5)
    # Both members and the spans differ, so the average is not just one of them.
    assert not np.allclose(combined, np.asarray(members[0]({k: v for k, v in inputs.items()}, training=False)))


def test_a_step_pushed_below_zero_still_learns(tables):
    """Regression (M3 quarterly, seed 2: two of the 8 steps were 0 for every series): when one update
    pushes a horizon step's quantiles below 0 for every window, training must still pull it back. A
    ReLU at the network's output had no gradient there, so the step stayed 0 for good."""
    import tensorflow as tf

    config = ForecastConfig(horizon=HORIZON, lookback=LOOKBACK, network={"hidden_units": 16, "residual_blocks": 1})
    data = series_arrays(tables["demand_sales"], tables["demand_series"], config.static_columns)
    layout = backtest_layout(data, HORIZON, config)
    vocabularies = {column: sorted(set(values) - {""}) for column, values in data.static.items()}
    network = forecaster.build_network(config, LOOKBACK, HORIZON, "D", vocabularies)
    decoder = network.get_layer("decoder")
    kernel, bias = decoder.get_weights()
    bias = bias.reshape(HORIZON, 3)
    bias[2, 0] = -1e3  # step 2's median (and so all its quantiles) far below 0 for every series
    decoder.set_weights([kernel, bias.reshape(-1)])
    inputs = forecaster.model_inputs(window_inputs(data, *layout.test, LOOKBACK, HORIZON))
    from demand_forecasting.windows import window_targets

    actual, _ = window_targets(data, *layout.test, HORIZON)
    with tf.GradientTape() as tape:
        forecast = network(inputs, training=False)
        loss = tf.reduce_mean(forecaster.quantile_loss(config.quantiles)(actual, forecast))
    assert np.all(np.asarray(forecast)[:, 2, :] <= 0)
    gradient = np.asarray(tape.gradient(loss, decoder.bias)).reshape(HORIZON, 3)
    assert gradient[2, 0] < 0, "no gradient pulls the dead step back up"
    # What is served is still never negative.
    module = forecaster.serving_module(network, config, LOOKBACK, HORIZON, list(data.static))
    served = predict(module, window_inputs(data, *layout.test, LOOKBACK, HORIZON))
    assert np.all(served["p90"][:, 2] == 0) and np.all(served["p50"] >= 0)
